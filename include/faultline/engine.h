/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fault engine: owns one userfaultfd (plus any the kernel hands it for
 * forked children, or that are adopted from other processes), reads fault
 * messages in batches, dispatches each to the region that owns the address,
 * and resolves it.
 *
 * Threads: by default fl_engine_start() starts `threads` handler threads. In
 * embedded mode (FL_ENGINE_EMBEDDED) no thread is ever started: the
 * application polls fl_engine_fd() and calls fl_engine_process().
 *
 * Events: unless FL_ENGINE_NO_EVENTS, the engine asks for FORK, REMAP,
 * REMOVE and UNMAP events. The kernel makes fork(), mremap(), madvise
 * (DONTNEED/REMOVE) and munmap() of registered memory wait until the engine
 * has read the event, so keep the engine running (or keep calling
 * fl_engine_process() from another thread) while the process does those.
 * Do not turn events off lightly: without EVENT_FORK a forked child's lazy
 * pages are zero-filled by the kernel, which is exactly what faultline
 * exists to prevent.
 */
#ifndef FAULTLINE_ENGINE_H
#define FAULTLINE_ENGINE_H

#include <faultline/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_engine;

/* Where handler threads run. */
enum fl_placement {
	FL_PLACE_ANY = 0,	/* no pinning: the scheduler decides */
	FL_PLACE_CPU = 1,	/* pin every handler thread to opts.cpu (e.g. the faulting threads' CPU) */
	FL_PLACE_PER_CPU = 2,	/* one handler pinned to each online CPU, whichever runs first wins */
};

/* The non-cooperative events the engine reports to on_event. */
enum fl_event_kind {
	FL_EVENT_FORK = 1,	/* the process forked; new_space serves the child */
	FL_EVENT_REMAP = 2,	/* mremap(): [start, end) moved to remap_to */
	FL_EVENT_REMOVE = 3,	/* madvise(DONTNEED/REMOVE) of [start, end) */
	FL_EVENT_UNMAP = 4,	/* munmap() of [start, end) */
};

/*
 * An event, as the engine handled it. faultline's own struct rather than
 * the kernel's struct uffd_msg: the callback needs no kernel header, and
 * FORK (which the engine has already turned into a space) carries the
 * space rather than a uffd. Written by the library and only read by the
 * callback, so fields may be appended in later releases (compatible, but
 * tools/check-abi.sh asks for a deliberate baseline update).
 */
struct fl_event {
	enum fl_event_kind kind;
	int new_space;		/* FORK: the child's space; otherwise -1 */
	uint64_t start;		/* REMAP, REMOVE, UNMAP: first address */
	uint64_t end;		/* REMAP, REMOVE, UNMAP: end of the range (exclusive) */
	uint64_t remap_to;	/* REMAP: where start went (0 otherwise) */
};

/* Engine flags. */
#define FL_ENGINE_EMBEDDED	(1u << 0)	/* no threads: drive with fl_engine_process() */
#define FL_ENGINE_BUSY_POLL	(1u << 1)	/* handler threads spin on a non-blocking read */
#define FL_ENGINE_NO_FILLER	(1u << 2)	/* never start the background filler */
#define FL_ENGINE_NO_EVENTS	(1u << 3)	/* do not ask for FORK/REMAP/REMOVE/UNMAP events */

struct fl_engine_opts {
	size_t sz;			/* sizeof(struct fl_engine_opts) */
	unsigned flags;			/* FL_ENGINE_* */
	unsigned threads;		/* handler threads; 0 = 1 (ignored for PER_CPU) */
	enum fl_placement placement;
	int cpu;			/* for FL_PLACE_CPU */
	unsigned batch;			/* messages per read; 0 = 64 */
	unsigned uffd_flags;		/* extra FL_UFFD_* for fl_uffd_create() */
	uint64_t features;		/* extra UFFD_FEATURE_* to request (masked ones are dropped) */
	fl_log_fn log;			/* NULL: silent */
	void *log_ctx;
	enum fl_log_level log_level;	/* highest level passed to `log` */
	/*
	 * Optional: called from a handler thread after the engine handled a
	 * FORK, REMAP, REMOVE or UNMAP event of `space` (the event is only
	 * valid during the call). For FORK it runs before any handler serves
	 * the child's faults (event->new_space), so it may install pages
	 * there (fl_uffd_copy(3) on fl_engine_space_fd()). It must not call
	 * back into the engine, except fl_engine_space_fd() and
	 * fl_engine_space_stats(); keep it short: the process that caused
	 * the event waits for it.
	 */
	void (*on_event)(void *ctx, int space, const struct fl_event *event);
	void *event_ctx;
};

/*
 * Create an engine and its userfaultfd, requesting every feature the engine
 * can use that the kernel offers (THREAD_ID, EXACT_ADDRESS, POISON, the
 * events, MISSING/MINOR on shmem and hugetlbfs, WP). Returns -EOPNOTSUPP
 * without userfaultfd, -EPERM when not allowed.
 */
FL_API int fl_engine_new(const struct fl_engine_opts *opts,
			 struct fl_engine **ret_engine);
/* Start handler threads and the background filler (no-op when embedded). */
FL_API int fl_engine_start(struct fl_engine *engine);
/*
 * Stop handler threads (through an eventfd, no signals) and the filler.
 * Faults that arrive afterwards wait until the engine is started again, or
 * are failed closed by fl_engine_free().
 */
FL_API int fl_engine_stop(struct fl_engine *engine);
/*
 * Stop, poison the unresolved pages of every region that lives in another
 * process (adopted spaces and forked children: a thread that touches them
 * later gets SIGBUS, never zeros), free every region (local ones are
 * unregistered and unmapped, as fl_region_free() does) and close the uffds.
 */
FL_API struct fl_engine *fl_engine_free(struct fl_engine *engine);

/*
 * The main uffd, for poll(2) in embedded mode (it is non-blocking). Adopted
 * and forked-child uffds are not behind it: an embedded application that
 * uses them calls fl_engine_process() periodically as well.
 */
FL_API int fl_engine_fd(const struct fl_engine *engine);
/* UFFD_FEATURE_* bits enabled on the main uffd. */
FL_API uint64_t fl_engine_features(const struct fl_engine *engine);
/*
 * Embedded mode: read every pending message from every uffd the engine
 * owns, resolve faults, handle events, and do up to one batch of background
 * fill when nothing else is pending. Waits up to timeout_ms (-1: forever,
 * 0: do not wait) for the first message. Returns the number of messages
 * handled, or -errno.
 */
FL_API int fl_engine_process(struct fl_engine *engine, int timeout_ms);

/*
 * Adopt a uffd that belongs to another process (received with
 * fl_uffd_recv() or taken with fl_uffd_take()), already handshaken and
 * registered by its owner. `pid` is the owner (for SIGBUS fallbacks; 0 if
 * unknown). Regions for it are added with fl_region_opts.space. Returns a
 * space id >= 1; -EINVAL on bad arguments (the fd then stays the caller's).
 * On success the engine owns the fd and makes it non-blocking (the flag is
 * shared with the owner's copy of the file description).
 *
 * The space is not served until fl_engine_wake_all(engine, id): add its
 * regions first, so that no queued fault is read before its region exists.
 */
FL_API int fl_engine_adopt(struct fl_engine *engine, int uffd, pid_t pid,
			   uint64_t features);
/*
 * Start serving a space (adopted spaces wait for this), then wake every
 * range of it so the kernel re-delivers faults that were waiting on a
 * previous (dead) handler. Space 0 is the main uffd. -ENOENT: no such space.
 */
FL_API int fl_engine_wake_all(struct fl_engine *engine, int space);

/* fl_engine_release() flags. */
#define FL_RELEASE_POISON	(1u << 0)	/* poison what was not delivered (the process lives on) */
#define FL_RELEASE_POPULATE	(1u << 1)	/* deliver every missing page first (then poison failures) */
#define FL_RELEASE_DRAIN	(1u << 2)	/* free the regions but keep reading the uffd (see below) */

/*
 * Stop serving space `space` (>= 1: an adopted or forked one): free its
 * regions and close the engine's reference to its uffd. With
 * FL_RELEASE_POPULATE every page not yet delivered is resolved first; with
 * FL_RELEASE_POISON (or pages POPULATE could not deliver) the rest is
 * poisoned, so the process gets SIGBUS, never zeros, if its own reference
 * keeps the uffd alive. Without flags (the process is gone) nothing is
 * touched. Safe while handler threads run. Returns 0; -ENOENT: no such
 * space (or released already); the first populate/poison error otherwise
 * (the space is released all the same).
 *
 * With FL_RELEASE_DRAIN the regions go but the uffd stays and is still
 * read: a later fault there is failed closed (poisoned, or SIGBUS to the
 * thread) and events are acknowledged. A process that lives on after its
 * service ended must not block in munmap(2), mremap(2), madvise(2) or
 * fork(2) waiting for someone to read an event, nor in a fault. Call
 * fl_engine_release() again without DRAIN when the process exits (or let
 * fl_engine_reap() find it).
 */
FL_API int fl_engine_release(struct fl_engine *engine, int space, unsigned flags);
/*
 * Release every space whose process is gone: seen by a resolve (ESRCH), or
 * found by a probe (UFFDIO_WRITEPROTECT, mode 0, of one page of its first
 * range, which the kernel answers with ESRCH for an exited mm and which
 * changes nothing in a range not registered for WP). Forked children are
 * known to the engine only through their uffd: call this periodically to
 * let go of those that exited. Returns the number released.
 */
FL_API int fl_engine_reap(struct fl_engine *engine);

/*
 * The uffd of a space (0: the main one), borrowed: valid until the space
 * is released. For callers that act on the space directly (install a page
 * with fl_uffd_copy(3) from on_event, hand a forked child its uffd).
 * -ENOENT: no such space, or released.
 */
FL_API int fl_engine_space_fd(const struct fl_engine *engine, int space);

/* One space (a uffd and the process behind it). */
struct fl_space_stats {
	size_t sz;			/* sizeof(struct fl_space_stats) */
	pid_t pid;			/* owner as given to fl_engine_adopt(); 0 for forked children */
	int parent;			/* forked: the parent's space; else -1 */
	bool dead;			/* the process is gone (ESRCH) */
	bool paused;			/* adopted, not yet woken by fl_engine_wake_all() */
	uint64_t regions, bytes;	/* regions and bytes of address space served */
	uint64_t faults, pages_resolved, pages_poisoned, bytes_read;
	uint64_t blocked_ns;		/* sum of service latency (see fl_region_stats) */
	uint64_t lat_count, lat_p50_ns, lat_p99_ns, lat_max_ns;
	uint64_t lat_hist[FL_LAT_BUCKETS];	/* log2-linear, 8 sub-buckets per power of two */
};
/* Counters of one space, summed over its regions. -ENOENT: no such space. */
FL_API int fl_engine_space_stats(const struct fl_engine *engine, int space,
				 struct fl_space_stats *stats);

/* Engine-wide counters (sum over regions, plus events). */
struct fl_engine_stats {
	size_t sz;			/* sizeof(struct fl_engine_stats) */
	uint64_t messages;		/* messages read */
	uint64_t reads;			/* read(2) calls that returned messages */
	uint64_t faults;
	uint64_t unowned_faults;	/* faults outside every region (poisoned) */
	uint64_t events_fork, events_remap, events_remove, events_unmap;
	uint64_t spaces;		/* live uffds (main + forked + adopted) */
	/* Service latency of every fault a region resolved since the engine
	 * started, in every space: released spaces and freed regions
	 * included (faults outside every region have none). */
	uint64_t lat_count, lat_p50_ns, lat_p99_ns, lat_max_ns;
	uint64_t lat_hist[FL_LAT_BUCKETS];	/* log2-linear, 8 sub-buckets per power of two */
};
FL_API int fl_engine_stats(const struct fl_engine *engine,
			   struct fl_engine_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
