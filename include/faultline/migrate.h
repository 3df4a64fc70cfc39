/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration of memory: move ranges of a running process's
 * memory to another process, on this host or another, with precopy rounds
 * over a write watch, a short switchover, and postcopy fetch on demand.
 *
 * Roles. The SOURCE process owns the memory and the application; the
 * DESTINATION process maps the same ranges at the same addresses and
 * resumes the application there. Each side gets two connected stream
 * sockets from its caller, the BULK channel (layout, precopy pages,
 * switchover, background push) and the URGENT channel (page requests of
 * faulting threads and their answers, completion). fl_migrate_listen(),
 * fl_migrate_accept() and fl_migrate_connect() make them over TCP (bulk
 * first); any connected stream sockets do. The library makes the sockets
 * it is given non-blocking, and never closes the caller's (it closes those
 * a reconnect callback handed over, below).
 *
 * TLS (opts.tls, as the page server's: <faultline/remote.h>) runs on both
 * channels over the caller's sockets: the source is the TLS client, the
 * destination the TLS server, with a pre-shared key (FL_TLS_PSK) or X.509
 * (FL_TLS_X509: the source verifies the destination's certificate against
 * ca_file and server_name; a destination with ca_file requires a source
 * certificate signed by it: mutual authentication). Credentials refused
 * either way: -EACCES on both sides, the cause logged. A plaintext peer to
 * a TLS side, or a TLS peer to a plaintext side: -EPROTO on both sides.
 * Neither waits longer than timeout_ms. A build without TLS (-Dtls=disabled)
 * refuses FL_TLS_PSK and FL_TLS_X509 in the _new functions with
 * -EOPNOTSUPP and logs why.
 *
 * HELLO. After TLS, on each channel in turn (bulk, then urgent), the source
 * sends HELLO (a random session id per migration, the channel, an epoch:
 * 0 at first) and waits for the destination's HELLO_ACK, which echoes it.
 * The destination refuses with -EPROTO (logged): a HELLO for the other
 * channel (sockets swapped), a first epoch that is not 0, an urgent HELLO
 * of another session or epoch than the bulk one; on a reconnection, another
 * session id, or an epoch not newer than the last it accepted.
 *
 * Memory: each range is private anonymous memory, a MAP_SHARED mapping of
 * a memfd/shmem object, or hugetlb memory (private or a MAP_SHARED memfd),
 * readable and writable, page-aligned (2 MiB for hugetlb). The destination
 * maps anonymous ranges as private anonymous memory and shmem and hugetlb
 * ranges as MAP_SHARED mappings of a memfd of its own (MFD_HUGETLB for
 * hugetlb), at the same addresses with MAP_FIXED_NOREPLACE: an address in
 * use is -EEXIST. A place callback (struct fl_migrate_dest_opts) maps
 * ranges elsewhere instead; the wire keeps the source's addresses and the
 * destination translates; fl_migrate_dest_ranges() says where they are.
 *
 * Modes:
 *  - FL_MIGRATE_PRECOPY: rounds (below), then stop-and-copy: the
 *    application is paused, the pages written since the last round are
 *    sent, then the destination resumes with every page present.
 *  - FL_MIGRATE_POSTCOPY: no rounds: the application is paused at once,
 *    the destination resumes with no page present, and fetches each
 *    page when it faults, while the source pushes the rest in the
 *    background.
 *  - FL_MIGRATE_HYBRID: rounds, then switchover as in POSTCOPY: the pages
 *    written since the last round are fetched on demand and pushed.
 * Rounds: round 1 sends every page while a write watch (<faultline/watch.h>)
 * records what the application writes meanwhile; each later round sends the
 * pages written since the previous one. Rounds stop when the written set
 * stops shrinking, when it is empty, after max_rounds, or when they have
 * run max_precopy_ms (no round starts after it).
 *
 * Switchover: the source calls quiesce(FL_MIGRATE_PAUSE) (the application
 * must stop writing the ranges before it returns), reads the final written
 * set, and sends it with the application blob, which is read AFTER the
 * pause returns, so the callback may fill it with the application's state
 * at that instant. The destination discards its copy of every page in the
 * final set (those fault and are fetched again), calls resume(blob), then
 * serves faults. Downtime is pause -> destination resumed, measured at the
 * source up to the arrival of the destination's RESUMED message.
 *
 * After switchover the source's memory is only read. The source never
 * resumes the application itself after the switchover message is sent (the
 * destination may be running it): when fl_migrate_source_run() returns 0
 * the destination holds every page and the source may exit or unmap the
 * ranges; on an error after switchover the source sends ERROR on the
 * urgent channel and shuts both sockets down (shutdown(2): they stay open
 * for the caller to close), so that the destination fails closed at once,
 * and the caller decides what to do with its application (the
 * destination's fail-closed rules, below, keep it from running on wrong
 * memory). Before switchover — an error, or fl_migrate_source_cancel() —
 * the source frees its watches, calls quiesce(FL_MIGRATE_RESUME) if it had
 * paused, and its memory is intact and writable. A destination that fails
 * sends ERROR on the urgent channel; before switchover the source looks
 * for it between pages, and while a bulk send is blocked, so it stops with
 * the destination's reason and does not pause.
 *
 * Source timeout (timeout_ms, 0: 10000): the destination's silence while
 * the source waits for it is -ETIMEDOUT: a send that makes no progress
 * for that long (before switchover the source then resumes the
 * application), HELLO_ACK, RESUMED after switchover, DONE after the push
 * has sent everything (with FL_MIGRATE_NO_PUSH, DONE waits for the
 * application's faults and is not timed). After switchover, with a
 * reconnect callback, the timeout is a cut to recover from.
 *
 * Cuts around switchover. Until SWITCHOVER is written in full, a failure
 * is "before switchover": the source resumes the application (its memory
 * is intact), the destination unmaps. Once the source has written
 * SWITCHOVER in full it treats the destination as possibly running and
 * never resumes the application, even if the destination never read the
 * message; with a reconnect callback it goes into recovery, which fails
 * with -ETIMEDOUT when the destination did not switch over (it failed and
 * unmapped, and never answers again). The caller must then find out
 * outside the library whether the destination runs the application; it
 * does not when its fl_migrate_dest_wait() returned an error while
 * nothing had been resumed.
 *
 * Destination page installation: a page arriving for a page not yet
 * present is installed with UFFDIO_COPY (atomic for concurrent faulters),
 * or, with FL_MIGRATE_DEST_MOVE, an anonymous page received into a
 * staging page and checked is moved into place with UFFDIO_MOVE (COPY
 * when MOVE is missing, masked or fails other than with EEXIST).
 * Before switchover the application does not run at the destination, so a
 * page sent again by a later round is copied over the present page in
 * place (by the library's own thread: it is present, so no fault). After
 * switchover pages are only ever installed with UFFDIO_COPY, never written
 * over: a late or duplicate page (urgent answer and background push racing)
 * is EEXIST and harmless, and never overwrites what the application wrote.
 * Discarding at switchover is MADV_DONTNEED (anonymous) or MADV_REMOVE
 * (shmem, hugetlb), so the page is missing again and faults. The
 * application at the destination must not discard (MADV_DONTNEED) pages of
 * the ranges before fl_migrate_dest_wait() returns.
 *
 * Fail closed (destination): when, after switchover, a channel is cut
 * (EOF, reset: immediate), a peer message is malformed, or a page request
 * stays unanswered, with nothing else answered either, for timeout_ms (a
 * hung source, a partition that never resets the connection), every page
 * not yet present
 * is poisoned: UFFDIO_POISON where the kernel has it, otherwise the page is
 * replaced by a mapping of an empty memfd (both make the access raise
 * SIGBUS), and the waiting faulters are woken, so they get SIGBUS, never
 * zeros and never a hang. fl_migrate_dest_wait() then returns the error.
 * The userfaultfd stays open until every page is present or poisoned
 * (closing it would zero-fill missing pages). Without a reconnect
 * callback a cut after switchover is final, as above. Before switchover an
 * error unmaps the destination's ranges (the application never ran there);
 * a cut before switchover is never recovered from.
 *
 * Recovery (QEMU's postcopy recovery), when both sides have a reconnect
 * callback (opts.reconnect). After switchover a cut (EOF, a reset, a
 * message cut short by EOF, a send or a request unanswered for timeout_ms)
 * pauses both sides; a malformed message or a peer's ERROR is not a cut
 * and still fails closed. Whoever sees the cut shuts both channels down,
 * so the peer sees it too. At the destination the faulting threads stay
 * blocked (never woken with zeros, never killed: their faults are read and
 * noted); each side calls reconnect() again and again (20 ms, then twice
 * as long each time up to 500 ms, between failures) until a new pair of
 * connections passes TLS and HELLO (the same session, the next epoch), or
 * until recovery_ms (0: 60000) has passed since the cut. Then the
 * destination sends RECEIVED on bulk (the pages it holds), sends its
 * outstanding page requests again on urgent, and RESUMED again if it had
 * resumed; the source drops the pages the destination holds from what it
 * must send, serves the requests first, then pushes only the missing
 * pages, and the migration completes. Any number of cuts recover the same
 * way (stats.recoveries, stats.recovery_ns: time paused). A reconnection
 * refused by HELLO (another session, a stale epoch) is closed and the
 * destination calls reconnect() again: recovery continues until
 * recovery_ms. When recovery_ms passes without a working connection the
 * destination poisons every missing page and wakes the faulters (SIGBUS),
 * and fl_migrate_dest_wait() returns -ETIMEDOUT; fl_migrate_source_run()
 * returns -ETIMEDOUT too; both log it. The library owns the fds a
 * reconnect returns (it closes them when they are replaced, or at free),
 * unlike the caller's first pair. A DONE lost in a cut leaves the
 * destination complete and the source in recovery until -ETIMEDOUT.
 *
 * Background push priority: when a request for page p arrives, the push
 * goes on from p + 1 (up to 64 pages, in p's range) before returning to
 * where it was, so a thread scanning memory faults once and finds the next
 * pages there. Requests are still answered first.
 *
 * Wire protocol, version 2 (1 had no HELLO), all integers little-endian.
 * Every message is a 16-byte header and `length` payload bytes (length <=
 * 64 MiB), inside TLS records with TLS:
 *   u32 magic "FLMG"   u16 version (2)   u16 type   u32 length   u32 flags
 * HELLO      src->dst, first on each channel: u64 session, u32 channel
 *            (0 bulk, 1 urgent), u32 epoch (0, then newer per reconnection).
 * HELLO_ACK  dst->src, the HELLO's 16 bytes echoed.
 * LAYOUT     src->dst bulk: u32 nranges (1..256), u32 reserved (0), then per
 *            range: u64 addr, u64 len, u32 mem (enum fl_mem_type),
 *            u32 page_size (4096, or 2 MiB for hugetlb).
 * PAGE       src->dst bulk or urgent: u64 addr, u64 xxh3 (XXH3-64 of the
 *            page's bytes; 0 for a zero page), then page_size bytes, or
 *            nothing when flags has ZERO (1): a page of zeros is elided.
 *            The source writes up to 16 PAGE messages (64 KiB of pages)
 *            at once; a receiver parses messages out of whatever it reads.
 * ROUND      src->dst bulk: u32 round, u32 pages (the round's end).
 * SWITCHOVER src->dst bulk: u64 npages (the layout's total), u64 blob_len,
 *            ceil(npages / 8) bytes of bitmap (page i of the layout, ranges
 *            in order, is bit i % 8 of byte i / 8: its copy is stale), then
 *            the blob. Flag NONE_STALE (1): the bitmap is left out, no
 *            copy is stale (POSTCOPY, PRECOPY, HYBRID with nothing written
 *            since the last round); then length is 16 + blob_len.
 * REQUEST    dst->src urgent: u64 addr (a page the destination faulted on).
 * RESUMED    dst->src urgent, empty: resume() returned.
 * DONE       dst->src urgent, empty: every page is present.
 * CANCEL     src->dst bulk, empty: the source cancelled before switchover.
 * ERROR      either way, u32 errno: the sender failed (then it closes).
 * RECEIVED   dst->src bulk, after a reconnection's HELLOs: u64 npages, then
 *            the bitmap (as SWITCHOVER's) of the pages present.
 * Refusals (returned, and logged with the cause): another magic or version,
 * an unknown type, a reserved field not zero or a type on the wrong channel
 * -EPROTO; a length that does not fit the type (checked from the header,
 * before the payload is read), a bad checksum or a message cut short by
 * EOF -EBADMSG; a page outside the layout or misaligned, a layout of more
 * than 8 x (64 MiB - 16) pages (its bitmaps would not fit a message)
 * -ERANGE; EOF between messages -ECONNRESET; a message begun and not
 * complete within timeout_ms (10 s when none) for each MiB of its length,
 * and once more, -ETIMEDOUT (a peer trickling bytes holds no thread past
 * its timeouts).
 *
 * Threads: the source runs in the thread that calls fl_migrate_source_run()
 * plus one thread serving urgent requests after switchover; its
 * reconnect() runs in the first. The destination runs two threads (bulk,
 * and faults + urgent, which also runs reconnect()). Callbacks run in
 * those threads. Nothing here is global; objects are not shared between
 * calls except as documented (fl_migrate_source_cancel() may be called
 * from any thread).
 *
 * Kernel features: the source needs a write watch for PRECOPY and HYBRID
 * (any backend). The destination needs userfaultfd MISSING on the
 * memory types it receives (shmem: MISSING_SHMEM, hugetlb:
 * MISSING_HUGETLBFS; -EOPNOTSUPP otherwise); POISON is used when present,
 * THREAD_ID (the faulting thread of fl_migrate_dest_threads()) too.
 */
#ifndef FAULTLINE_MIGRATE_H
#define FAULTLINE_MIGRATE_H

#include <faultline/common.h>
#include <faultline/region.h>
#include <faultline/remote.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_migrate_source;
struct fl_migrate_dest;

enum fl_migrate_mode {
	FL_MIGRATE_PRECOPY = 0,
	FL_MIGRATE_POSTCOPY = 1,
	FL_MIGRATE_HYBRID = 2,
};

/* quiesce() actions. */
enum fl_migrate_quiesce {
	FL_MIGRATE_PAUSE = 0,	/* stop writing the ranges; return when stopped */
	FL_MIGRATE_RESUME = 1,	/* migration failed or was cancelled before switchover */
};

/* Return 0, or -errno to fail the migration (before switchover only). */
typedef int (*fl_migrate_quiesce_fn)(enum fl_migrate_quiesce action, void *ctx);
/* Called at the destination at switchover. Faults are served from just
 * before it is called, so it may touch the ranges; but a cut while it waits
 * on a missing page is not recovered from: that page fails closed (SIGBUS)
 * once recovery_ms has passed. */
typedef void (*fl_migrate_resume_fn)(const void *blob, size_t blob_len, void *ctx);
/*
 * Recovery: make a new pair of connected stream sockets (bulk, urgent) to
 * the peer, e.g. with fl_migrate_connect() at the source and
 * fl_migrate_accept() on a listening socket the caller kept at the
 * destination. Return 0 with both fds set (the library then owns them and
 * closes them), or -errno (the library waits a little and calls again,
 * until recovery_ms has passed since the cut). Called from a library
 * thread; it should not block much longer than a second per call.
 */
typedef int (*fl_migrate_reconnect_fn)(void *ctx, int *ret_bulk_fd, int *ret_urgent_fd);

struct fl_migrate_range {
	void *addr;
	size_t len;
	enum fl_mem_type mem;
};

#define FL_MIGRATE_MAX_RANGES	256u
#define FL_MIGRATE_MAX_ROUNDS	32u
#define FL_MIGRATE_MAX_BLOB	(16u << 20)

/* struct fl_migrate_source_opts.flags */
#define FL_MIGRATE_NO_PUSH	(1u << 0)	/* postcopy: no background push, on demand only */
/*
 * struct fl_migrate_dest_opts.flags: install anonymous pages with
 * UFFDIO_MOVE (Linux 6.8, FL_FEATURE_MOVE) instead of UFFDIO_COPY: the
 * bytes are received into a staging page that is then moved into place,
 * which saves UFFDIO_COPY's copy of each page. Off by default: on the
 * paravirtualised machines this was measured on, where changing a page
 * table entry costs more than copying 4 KiB, MOVE was 10-40 % slower.
 * Without MOVE in the kernel (or masked), and for shmem and hugetlb
 * pages, pages are copied as without the flag.
 */
#define FL_MIGRATE_DEST_MOVE	(1u << 0)

struct fl_migrate_source_opts {
	size_t sz;				/* sizeof(struct fl_migrate_source_opts) */
	const struct fl_migrate_range *ranges;	/* read during fl_migrate_source_new() */
	unsigned nranges;			/* 1..FL_MIGRATE_MAX_RANGES */
	int bulk_fd, urgent_fd;			/* connected stream sockets; not closed */
	enum fl_migrate_mode mode;
	unsigned max_rounds;			/* 0: 8; at most FL_MIGRATE_MAX_ROUNDS */
	unsigned flags;				/* FL_MIGRATE_NO_PUSH */
	fl_migrate_quiesce_fn quiesce;		/* required */
	void *quiesce_ctx;
	const void *blob;			/* read after quiesce(PAUSE) returns */
	size_t blob_len;			/* at most FL_MIGRATE_MAX_BLOB */
	fl_log_fn log;
	void *log_ctx;
	/* Rounds' time limit, from the start of round 1 (0: none): no round
	 * starts after it; switchover follows (PRECOPY: stop-and-copy of the
	 * rest; HYBRID: postcopy). Ignored by POSTCOPY. */
	unsigned max_precopy_ms;
	/* TLS on both channels, the source being the TLS client (as struct
	 * fl_remote_opts): FL_TLS_NONE, FL_TLS_PSK (psk_identity,
	 * psk_key_hex) or FL_TLS_X509 (ca_file verifies the destination's
	 * certificate, NULL: the system's trust; cert_file and key_file: the
	 * source's certificate, for a destination that requires one;
	 * server_name: the name the destination's certificate must carry,
	 * NULL: not checked). */
	enum fl_tls_mode tls;
	const char *psk_identity, *psk_key_hex, *cert_file, *key_file, *ca_file;
	const char *server_name;
	/* The destination's silence while the source waits for it (a send
	 * making no progress, RESUMED, DONE after the push): -ETIMEDOUT,
	 * or a cut to recover from. 0: 10000 */
	unsigned timeout_ms;
	fl_migrate_reconnect_fn reconnect;	/* NULL: a cut after switchover is final */
	void *reconnect_ctx;
	unsigned recovery_ms;			/* give up recovering after this; 0: 60000 */
};

/*
 * Where the destination maps a range: called once per range (index in the
 * layout's order) in the destination's bulk thread when the layout
 * arrives, before any page. source_range has the source's address,
 * length and memory type. Return the address to map the range at (aligned
 * to the range's page size, 2 MiB for hugetlb), or NULL to let the
 * library choose a free address.
 */
typedef void *(*fl_migrate_place_fn)(void *ctx, unsigned index,
				     const struct fl_migrate_range *source_range);

struct fl_migrate_dest_opts {
	size_t sz;				/* sizeof(struct fl_migrate_dest_opts) */
	int bulk_fd, urgent_fd;			/* connected stream sockets; not closed */
	fl_migrate_resume_fn resume;		/* required */
	void *resume_ctx;
	/* Silence that fails the migration: of the bulk channel before
	 * switchover, of the answers to page requests after. 0: 10000 */
	unsigned timeout_ms;
	fl_log_fn log;
	void *log_ctx;
	/* NULL: every range at the source's address. Otherwise each range
	 * where place() says (see fl_migrate_place_fn); the wire keeps the
	 * source's addresses, the destination translates. A placed address
	 * in use fails with -EEXIST, a misaligned one -EINVAL; nothing stays
	 * mapped then. */
	fl_migrate_place_fn place;
	void *place_ctx;
	unsigned flags;				/* FL_MIGRATE_DEST_MOVE */
	/* TLS on both channels, the destination being the TLS server (as
	 * struct fl_server_opts): FL_TLS_PSK (psk_identity, psk_key_hex) or
	 * FL_TLS_X509 (cert_file, key_file; ca_file: require a source
	 * certificate signed by it, mutual authentication). */
	enum fl_tls_mode tls;
	const char *psk_identity, *psk_key_hex, *cert_file, *key_file, *ca_file;
	fl_migrate_reconnect_fn reconnect;	/* NULL: a cut after switchover is final */
	void *reconnect_ctx;
	unsigned recovery_ms;			/* give up recovering after this; 0: 60000 */
};

/*
 * State and progress (struct fl_migrate_stats.state, pages_total,
 * pages_remaining, error), readable from any thread while the migration
 * runs, the operator's view of it (fl_migrate_ctl_new(3), faultline
 * migrate):
 *  IDLE        not started (the destination: no layout received yet).
 *  PRECOPY     source: layout and rounds (in POSTCOPY mode only the
 *              layout, briefly); destination: the layout is mapped and
 *              precopy pages arrive.
 *  SWITCHOVER  source: the application is being paused and the final
 *              state sent (in PRECOPY mode, also the stop-and-copy of the
 *              last written pages, and then until the destination says
 *              DONE: a PRECOPY migration never enters POSTCOPY at the
 *              source); destination: the switchover message is being
 *              applied and resume() runs.
 *  POSTCOPY    the destination runs the application; its faults are
 *              served and the rest pushed.
 *  RECOVERING  after a cut in postcopy, with a reconnect callback: both
 *              sides paused, reconnecting (back to POSTCOPY once
 *              recovered; FAILED when recovery_ms passes).
 *  DONE        the destination has every page (final).
 *  FAILED      the migration ended with `error` (final).
 *  CANCELLED   fl_migrate_source_cancel() before switchover, or, at the
 *              destination, the source's CANCEL (final).
 * pages_total: the layout's pages. pages_remaining: at the source, during
 * a round (or the stop-and-copy) the pages of that round not sent yet;
 * after switchover the pages the destination still needs that were sent
 * neither by the push nor as an answer; 0 at DONE. At the destination,
 * the pages not present yet (pages discarded at switchover count again).
 */
enum fl_migrate_state {
	FL_MIGRATE_STATE_IDLE = 0,
	FL_MIGRATE_STATE_PRECOPY = 1,
	FL_MIGRATE_STATE_SWITCHOVER = 2,
	FL_MIGRATE_STATE_POSTCOPY = 3,
	FL_MIGRATE_STATE_RECOVERING = 4,
	FL_MIGRATE_STATE_DONE = 5,
	FL_MIGRATE_STATE_FAILED = 6,
	FL_MIGRATE_STATE_CANCELLED = 7,
};

/*
 * Statistics. Source: downtime_ns, total_ns, rounds, pages_per_round,
 * pages_sent, bytes_sent, zero_pages, requests (served), pushed. The
 * destination: total_ns, pages_received, zero_pages, requests (sent),
 * request latency (fault read -> page installed) p50/p99/max, blocked_ns
 * (sum over the faults of fault read -> page present), pages_moved. Both:
 * state, pages_total, pages_remaining, error (see "State and progress"
 * above), recoveries, recovery_ns. After a recovery downtime_ns may
 * include it (RESUMED lost in the cut arrives again afterwards).
 */
struct fl_migrate_stats {
	size_t sz;				/* sizeof(struct fl_migrate_stats) */
	uint64_t downtime_ns;			/* pause -> destination's RESUMED arrived */
	uint64_t total_ns;
	unsigned rounds;			/* precopy rounds run */
	uint64_t pages_per_round[FL_MIGRATE_MAX_ROUNDS];
	uint64_t pages_sent;			/* every PAGE message, both channels */
	uint64_t bytes_sent;			/* every byte written, both channels */
	uint64_t zero_pages;			/* pages elided as zeros */
	uint64_t requests;			/* urgent page requests */
	uint64_t pushed;			/* pages of the background push */
	uint64_t pages_received;		/* destination: PAGE messages */
	uint64_t request_p50_ns, request_p99_ns, request_max_ns;
	uint64_t pages_moved;			/* destination: installed by UFFDIO_MOVE */
	/* Appended; read by callers whose sz covers them (see state below). */
	int state;				/* enum fl_migrate_state */
	uint64_t pages_total;			/* pages of the layout (0 before it is known) */
	uint64_t pages_remaining;		/* see "Progress" above */
	int error;				/* FAILED: the -errno it ended with; else 0 */
	unsigned recoveries;			/* cuts after switchover recovered from */
	uint64_t recovery_ns;			/* time paused in recovery (both sides) */
	uint64_t blocked_ns;			/* destination: total time faulting threads waited */
};

/*
 * The name of a state: "idle", "precopy", "switchover", "postcopy",
 * "recovering", "done", "failed", "cancelled"; "unknown" for any other
 * value. Never NULL; a static string.
 */
FL_API const char *fl_migrate_state_name(int state);

/*
 * Per-thread fault statistics of a destination (UFFD_FEATURE_THREAD_ID
 * names the faulting thread; without it every fault counts for tid 0).
 * blocked_ns: from the library reading the fault to the page installed.
 */
struct fl_migrate_thread_stats {
	size_t sz;				/* sizeof(struct fl_migrate_thread_stats) */
	pid_t tid;
	uint64_t faults;
	uint64_t blocked_ns;
	uint64_t max_blocked_ns;
};

/* Threads a destination keeps statistics for; the faults of threads past
 * it count in struct fl_migrate_stats.blocked_ns only. */
#define FL_MIGRATE_MAX_THREADS	256u

/*
 * Prepare a source. Validates the ranges (aligned, non-overlapping,
 * anonymous ranges private anonymous memory) and copies them, and loads
 * the TLS credentials. Errors: -EINVAL (opts, ranges, fds, mode, TLS
 * parameters), -E2BIG (sz), -ENOMEM, -ENOENT / -EACCES / -EBADMSG (a
 * credentials file missing, unreadable, unparsable), -EOPNOTSUPP (TLS
 * asked of a build without it).
 */
FL_API int fl_migrate_source_new(const struct fl_migrate_source_opts *opts,
				 struct fl_migrate_source **ret_source);
/*
 * Run the migration to its end. Returns 0 when the destination has every
 * page, -ECANCELED after fl_migrate_source_cancel(), a peer ERROR's
 * errno, a refusal of the table above, a channel's -errno
 * (-ECONNRESET, -EPIPE), -ETIMEDOUT (the destination silent for
 * timeout_ms; or no recovery within recovery_ms), -EACCES / -EPROTO (TLS
 * refused, above), a watch's error (-EOPNOTSUPP, -EBUSY), or quiesce()'s
 * error. Once only (-EALREADY the second time).
 */
FL_API int fl_migrate_source_run(struct fl_migrate_source *source);
/*
 * Cancel a migration before its switchover (any thread): run returns
 * -ECANCELED after telling the destination, and the application keeps
 * running with its memory intact. Returns 0, or -EBUSY when switchover has
 * begun (too late: the migration completes or fails).
 */
FL_API int fl_migrate_source_cancel(struct fl_migrate_source *source);
/* Statistics so far (stats->sz set by the caller), also from another thread
 * while run runs (total_ns is set when it returns). 0 or -EINVAL. */
FL_API int fl_migrate_source_stats(const struct fl_migrate_source *source,
				   struct fl_migrate_stats *stats);
/* Accepts NULL; returns NULL. Not while run is running. */
FL_API struct fl_migrate_source *fl_migrate_source_free(struct fl_migrate_source *source);

/*
 * Prepare a destination (loads the TLS credentials). Errors: -EINVAL
 * (opts, TLS parameters), -E2BIG, -ENOMEM, -ENOENT / -EACCES / -EBADMSG
 * (credentials files), -EOPNOTSUPP (TLS asked of a build without it).
 */
FL_API int fl_migrate_dest_new(const struct fl_migrate_dest_opts *opts,
			       struct fl_migrate_dest **ret_dest);
/*
 * Start the destination's threads: they receive the layout, map and
 * register the ranges, install pages, switch over and serve faults.
 * Returns 0 or -errno (thread creation); -EALREADY the second time.
 */
FL_API int fl_migrate_dest_start(struct fl_migrate_dest *dest);
/*
 * Wait for the end: 0 when every page is present (the source was told,
 * the ranges are unregistered and the userfaultfd closed; the memory is
 * the application's), or the error (the table above; -ECANCELED: the
 * source cancelled; -EEXIST: a range's address is in use; -EOPNOTSUPP:
 * the kernel cannot register a memory type; -ETIMEDOUT: timeout_ms of
 * silence, or no recovery within recovery_ms; -EACCES / -EPROTO: TLS or
 * HELLO refused), -EINVAL (not started). After an error before switchover the
 * ranges are unmapped; after switchover missing pages are poisoned (SIGBUS).
 */
FL_API int fl_migrate_dest_wait(struct fl_migrate_dest *dest);
FL_API int fl_migrate_dest_stats(const struct fl_migrate_dest *dest,
				 struct fl_migrate_stats *stats);

/* Where a range of the layout lives at the destination. */
struct fl_migrate_placed {
	void *source_addr;		/* the range's address at the source */
	void *addr;			/* its address here */
	size_t len;
	enum fl_mem_type mem;
};
/*
 * The destination's ranges, in the layout's order: fills arr with up to
 * cap entries and sets *ret_n to the number of ranges (more than cap: call
 * again with a larger array; arr may be NULL when cap is 0). Valid once
 * the layout is mapped, so from the resume callback on (any thread; the
 * resume callback reaches the destination through its ctx: store the
 * pointer fl_migrate_dest_new() returned in the struct passed as
 * resume_ctx before fl_migrate_dest_start()), until fl_migrate_dest_free().
 * Errors: -EINVAL, -EAGAIN (the layout is not mapped yet, or was unmapped
 * by a failure before switchover).
 */
FL_API int fl_migrate_dest_ranges(const struct fl_migrate_dest *dest,
				  struct fl_migrate_placed *arr, unsigned cap,
				  unsigned *ret_n);
/*
 * Accepts NULL; returns NULL. Waits for the threads. A destination that
 * failed after switchover keeps its poisoned ranges mapped (the
 * application may still hold pointers into them).
 */
FL_API struct fl_migrate_dest *fl_migrate_dest_free(struct fl_migrate_dest *dest);

/*
 * Control socket: operators drive and watch a migration of a running
 * program from outside (`faultline migrate`, faultline(1)), the way a VMM's
 * monitor does. The program embeds one with fl_migrate_ctl_new(); it
 * listens on a unix socket, created mode 0600 so that only the socket's
 * owner (and root) can connect: the file's permission is the access
 * control, there is no other authentication. An existing socket file at
 * the path is replaced only when nobody listens on it.
 *
 * Protocol (fl_migrate_ctl_new(3) has it in full): one request line per
 * connection, at most FL_MIGRATE_CTL_LINE_MAX bytes with its newline, and
 * one reply line, then the control socket closes the connection.
 *   start TO MODE   calls start(ctx, TO, MODE), MODE "precopy", "postcopy"
 *                   or "hybrid"; TO is the program's business (host:port),
 *                   "-" for its configured destination.
 *   status          the attached migration's statistics.
 *   cancel          fl_migrate_source_cancel() of the attached source.
 * Replies: "ok" followed by space-separated key=value pairs (values
 * never hold spaces; keys may be added later, readers skip unknown ones),
 * or "error ERRNO TEXT" (ERRNO a negative errno number, TEXT a message).
 *
 * Threads: one thread of its own serves up to FL_MIGRATE_CTL_CLIENTS
 * connections at once; a connection that has not sent its line within
 * timeout_ms is closed, and when every slot is taken the oldest is closed
 * for a new one, so a silent or flooding client never stops others for
 * longer than that. Callbacks run in that thread, never before
 * fl_migrate_ctl_new() has stored *ret_ctl (so they may use it).
 */
#define FL_MIGRATE_CTL_LINE_MAX	256u
#define FL_MIGRATE_CTL_CLIENTS	8u

struct fl_migrate_ctl;

/*
 * Start a migration: the program connects to `to` (NULL when the request
 * said "-": the program's own configured destination, or -EDESTADDRREQ),
 * creates the source
 * (fl_migrate_source_new()), attaches it (fl_migrate_ctl_set_source()) and
 * runs it in a thread of its own, then returns 0; or -errno, which the
 * requester gets. Runs in the control thread: it must not wait for the
 * migration. The control socket itself refuses a start with -EALREADY
 * while an attached source is not in a final state, and with -EBUSY while
 * a destination is attached; a program that attaches its source later (in
 * its own thread) refuses a second start itself.
 */
typedef int (*fl_migrate_start_fn)(void *ctx, const char *to, enum fl_migrate_mode mode);

struct fl_migrate_ctl_opts {
	size_t sz;			/* sizeof(struct fl_migrate_ctl_opts) */
	const char *path;		/* the unix socket's path, copied; required */
	fl_migrate_start_fn start;	/* NULL: start requests get -EOPNOTSUPP */
	void *start_ctx;
	unsigned timeout_ms;		/* per connection; 0: 2000 */
	fl_log_fn log;
	void *log_ctx;
};

/*
 * Create the socket and start serving. Errors: -EINVAL (opts, path empty),
 * -E2BIG (sz), -ENAMETOOLONG (path too long for a unix socket), -EEXIST
 * (the path exists and is not a socket), -EADDRINUSE (someone listens on
 * it), -ENOMEM, a socket or thread error.
 */
FL_API int fl_migrate_ctl_new(const struct fl_migrate_ctl_opts *opts, struct fl_migrate_ctl **ret_ctl);
/*
 * Attach the migration that status and cancel refer to (NULL detaches).
 * A source and a destination exclude each other: attaching one detaches
 * the other. The program must detach an object before it frees it; the
 * call waits for a request being served to finish with it, so afterwards
 * the control thread never touches it. 0 or -EINVAL.
 */
FL_API int fl_migrate_ctl_set_source(struct fl_migrate_ctl *ctl, struct fl_migrate_source *source);
FL_API int fl_migrate_ctl_set_dest(struct fl_migrate_ctl *ctl, struct fl_migrate_dest *dest);
/* Stop the thread, close the connections, remove the socket file (if it
 * is still the one created). Accepts NULL; returns NULL. */
FL_API struct fl_migrate_ctl *fl_migrate_ctl_free(struct fl_migrate_ctl *ctl);

/*
 * Per-thread statistics of a destination: the first min(cap, n) threads
 * that faulted, in the order they first faulted, each with arr[i].sz set
 * by the caller (the same for every element); *ret_n gets how many threads
 * there are (at most FL_MIGRATE_MAX_THREADS). Any thread, any time after
 * fl_migrate_dest_new(). 0, or -EINVAL (arr NULL with cap > 0, a bad sz).
 */
FL_API int fl_migrate_dest_threads(const struct fl_migrate_dest *dest,
				   struct fl_migrate_thread_stats *arr, unsigned cap,
				   unsigned *ret_n);

/*
 * Connection helpers. fl_migrate_listen() binds and listens on addr
 * ("HOST:PORT", "[V6]:PORT", ":PORT" for every address; port 0 takes an
 * ephemeral port, returned in *ret_port, which may be NULL).
 * fl_migrate_accept() accepts two connections within timeout_ms (0: no
 * limit): the first is the bulk channel, the second the urgent one (once
 * the first is in, the second is waited for at least 5 s, so that a short
 * timeout never splits a pair; with no limit, a first connection without a
 * second within 5 s is closed and the wait starts again); connections their
 * peer closed already are skipped.
 * fl_migrate_connect() connects to addr twice, bulk first, each connection
 * established before the next is begun, within timeout_ms (0: 10000).
 * Returned sockets are non-blocking, close-on-exec, TCP_NODELAY; the
 * caller owns them (except those a reconnect callback hands over).
 * Errors: -EINVAL (arguments, a malformed address), -ETIMEDOUT, a socket's
 * -errno (-ECONNREFUSED, -EADDRINUSE, ...), -EHOSTUNREACH (no such host).
 */
FL_API int fl_migrate_listen(const char *addr, int *ret_fd, int *ret_port);
FL_API int fl_migrate_accept(int listen_fd, unsigned timeout_ms, int *ret_bulk_fd,
			     int *ret_urgent_fd);
FL_API int fl_migrate_connect(const char *addr, unsigned timeout_ms, int *ret_bulk_fd,
			      int *ret_urgent_fd);

#ifdef __cplusplus
}
#endif
#endif
