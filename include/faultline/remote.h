/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The page server and the remote store: an image's pages served over TCP
 * (optionally TLS) to lazy regions in other processes or on other hosts.
 *
 * The server (fl_server_*) serves one open image to any number of clients up
 * to a limit, each connection in its own thread. The client
 * (fl_store_remote_new) is a store: a lazy region whose store is remote
 * fetches its pages from the server on fault, prefetch and background fill.
 *
 * Wire protocol v1 (documented in fl_server_new(3)): a 24-byte header
 * {magic "FLPS", version, type, length, request id, flags, reserved} and a
 * payload; HELLO / HELLO_ACK (image id, page size, region table), READ (a
 * run of at most 512 pages; the URGENT flag marks a demand fault), DATA
 * (the kind of every page, the bytes of the data pages only, then an
 * XXH3-64 checksum per data page and a status, so it can be streamed as
 * the server reads), ERROR (an errno value) and BYE; and the write
 * extension, negotiated in HELLO / HELLO_ACK (a features field): WRITE (a
 * run of pages with a checksum each), FLUSH, and DONE answering them.
 *
 * Urgent path: the client keeps two connections, one for demand faults
 * (FL_STORE_IN_URGENT reads) and one for prefetch and background fill, and the
 * server serves urgent requests first and never throttles them, so a demand
 * fault never waits behind background streaming.
 *
 * Failing closed: the client checks every response (request id, region,
 * page numbers, kinds, lengths, checksum of every data page, the image id
 * after a reconnect). Anything wrong drops the connection; the client
 * reconnects (with backoff) and asks again for what it still needs. A read
 * that cannot be completed within timeout_ms fails (-ETIMEDOUT), so the
 * engine poisons the page: the faulting access gets SIGBUS, never wrong
 * data and never zeros the server did not vouch for.
 *
 * TLS (GnuTLS): FL_TLS_PSK (a pre-shared key; both sides must hold the same
 * identity and key) or FL_TLS_X509 (the server presents a certificate the
 * client verifies against ca_file; with ca_file on the server, clients must
 * present a certificate signed by it). Mismatched credentials fail the
 * handshake: -EACCES. A library built without TLS support (-Dtls=disabled)
 * speaks plain TCP only: fl_server_new() and fl_store_remote_new() refuse
 * FL_TLS_PSK and FL_TLS_X509 with -EOPNOTSUPP (and say so to the log
 * callback).
 */
#ifndef FAULTLINE_REMOTE_H
#define FAULTLINE_REMOTE_H

#include <faultline/common.h>
#include <faultline/store.h>
#include <faultline/image.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_server;

enum fl_tls_mode {
	FL_TLS_NONE = 0,	/* plain TCP */
	FL_TLS_PSK = 1,		/* TLS with a pre-shared key */
	FL_TLS_X509 = 2,	/* TLS with certificates */
};

struct fl_server_opts {
	size_t sz;			/* sizeof(struct fl_server_opts) */
	const char *listen;		/* "ADDR:PORT", "[V6ADDR]:PORT" or ":PORT"; port 0 = ephemeral */
	unsigned max_clients;		/* concurrent clients (a client may hold several connections); 0 = 64 */
	enum fl_tls_mode tls;
	const char *psk_identity;	/* FL_TLS_PSK: the identity clients must present */
	const char *psk_key_hex;	/* FL_TLS_PSK: the key, hex (16 to 64 bytes) */
	const char *cert_file;		/* FL_TLS_X509: the server's certificate chain (PEM) */
	const char *key_file;		/* FL_TLS_X509: its private key (PEM) */
	const char *ca_file;		/* FL_TLS_X509, optional: require client certificates signed by this CA */
	uint64_t bulk_rate;		/* bytes/s for non-urgent reads over all clients; 0 = unlimited */
	fl_log_fn log;			/* NULL: silent */
	void *log_ctx;
	enum fl_log_level log_level;
	unsigned flags;			/* FL_SERVER_* */
};

/*
 * Accept WRITE and FLUSH from clients that ask (fl_remote_opts.flags
 * FL_REMOTE_WRITABLE): only for a server over a writable store
 * (fl_server_new_store()); fl_server_new() (an image: read-only) and a
 * store that is not writable refuse it with -EROFS. A server without it
 * answers every WRITE with ERROR EROFS.
 */
#define FL_SERVER_WRITABLE	(1u << 0)

/*
 * Create a page server for `img` and bind its listening socket (so
 * fl_server_port() is known before fl_server_run()). The server holds a
 * reference to the image (fl_image_ref()) until fl_server_free(). Strings in opts are copied. Returns -EINVAL
 * (bad options or address), -EADDRINUSE, -EACCES, -ENOENT (a TLS file is
 * missing), -EBADMSG (a TLS file cannot be parsed), -ENOMEM.
 */
FL_API int fl_server_new(struct fl_image *img, const struct fl_server_opts *opts,
			 struct fl_server **ret_server);
/*
 * A page server over a store instead of an image: far memory. The store is
 * served as an image of one region (region 0, the store's size, which must
 * be a nonzero multiple of 4096: -EINVAL otherwise), under an image id
 * drawn at random now, so a client that reconnects to a restarted server
 * fails with -ESTALE instead of reading what another server holds. Pages
 * that read as zeros are sent as zero pages. With FL_SERVER_WRITABLE in
 * opts->flags, clients that ask may write pages (fl_store_write() on
 * their remote store goes to fl_store_write() on this one) and flush
 * (fl_store_flush()); the store must say it is writable
 * (FL_STORE_CTL_WRITABLE), else -EROFS. The server holds a reference to
 * the store. Other errors as fl_server_new().
 */
FL_API int fl_server_new_store(struct fl_store *store, const struct fl_server_opts *opts,
			       struct fl_server **ret_server);
/* The TCP port the server listens on (the ephemeral one when asked for 0). */
FL_API int fl_server_port(const struct fl_server *srv);
/*
 * Accept and serve clients until fl_server_stop(). Blocks; every connection
 * is served by its own thread, all joined before this returns. Returns 0,
 * or -errno when the listening socket fails.
 */
FL_API int fl_server_run(struct fl_server *srv);
/*
 * Make fl_server_run() return: connections are closed and their threads
 * joined. Thread-safe and async-signal-safe (it writes an eventfd). A
 * stopped server cannot be run again.
 */
FL_API int fl_server_stop(struct fl_server *srv);
/* Free a server that is not running. Accepts NULL; returns NULL. */
FL_API struct fl_server *fl_server_free(struct fl_server *srv);

struct fl_server_stats {
	size_t sz;			/* sizeof(struct fl_server_stats) */
	uint64_t connections;		/* accepted */
	uint64_t refused;		/* refused: client limit, bad handshake, TLS failure */
	uint64_t clients;		/* clients connected now */
	uint64_t requests, requests_urgent;
	uint64_t pages_data, pages_zero;	/* pages sent, by kind */
	uint64_t bytes_sent;		/* payload bytes of DATA messages */
	uint64_t errors;		/* ERROR replies to requests (bad range, corrupt image page, refused write) */
	uint64_t pages_written;		/* pages written to the store (WRITE) */
	uint64_t flushes;		/* FLUSH requests answered DONE */
};
FL_API int fl_server_stats(const struct fl_server *srv, struct fl_server_stats *stats);

struct fl_remote_opts {
	size_t sz;			/* sizeof(struct fl_remote_opts) */
	const char *addr;		/* "HOST:PORT" or "[V6ADDR]:PORT" of the server */
	unsigned region;		/* which region of the served image */
	enum fl_tls_mode tls;
	const char *psk_identity;	/* FL_TLS_PSK */
	const char *psk_key_hex;	/* FL_TLS_PSK */
	const char *ca_file;		/* FL_TLS_X509: CAs to verify the server with (NULL: system trust) */
	const char *cert_file;		/* FL_TLS_X509, optional: client certificate */
	const char *key_file;		/* FL_TLS_X509, optional: its private key */
	/* FL_TLS_X509: the name the server's certificate must carry (NULL: the
	 * HOST of addr; "": names not checked, the chain still is) */
	const char *server_name;
	unsigned timeout_ms;		/* fail a read after this long without the data; 0 = 5000 */
	unsigned connections;		/* 1: one connection for everything; 0 or 2: urgent + bulk */
	fl_log_fn log;			/* NULL: silent */
	void *log_ctx;
	enum fl_log_level log_level;
	unsigned flags;			/* FL_REMOTE_* */
};

/*
 * Ask the server for writes (far memory): fl_store_write() and
 * fl_store_flush() then work, on the bulk connection. Creation fails with
 * -EROFS when the server does not grant them (not started writable, or
 * serving an image) and -EOPNOTSUPP when it predates the write extension
 * of the protocol (it refuses the HELLO; the log says so). Without it the
 * store is read-only: writes fail with -EROFS and FL_STORE_CTL_WRITABLE
 * answers 0.
 */
#define FL_REMOTE_WRITABLE	(1u << 0)

/*
 * A store over region `opts->region` of the image a page server serves.
 * Connects and handshakes once (bounded by timeout_ms) to learn the image
 * id and the region's length (the store's size). Reads are thread-safe.
 * Returns -ECONNREFUSED / -EHOSTUNREACH / -ETIMEDOUT (no server), -EACCES
 * (TLS credentials refused), -EBUSY (the server's client limit), -ENOENT
 * (no such region), -EPROTO (not a faultline page server),
 * -EPROTONOSUPPORT (protocol version), -EINVAL (bad options).
 *
 * Read errors: -ETIMEDOUT (no data within timeout_ms: server gone, or
 * every answer was wrong), -ESTALE (the server now serves a different
 * image), -EBADMSG (the server reports the page corrupt in its image, or
 * kept sending pages that fail their checksum), -ENOENT (the page is in
 * no image of the server's chain). Once a read has timed out, later reads
 * make one connection attempt each (bounded by timeout_ms, at most 1 s) and
 * fail at once if it does not succeed, so a dead server costs one timeout,
 * not one per page; the first successful connection ends that.
 *
 * Writes (FL_REMOTE_WRITABLE): each request is sent as WRITE messages of
 * at most max_pages pages with a checksum per page, pipelined; every
 * request's result is the server's answer: 0 once the server's store
 * wrote it, -EROFS, -ERANGE, -EBADMSG (the pages arrived corrupt: nothing
 * written), the server store's error, or -ETIMEDOUT. A write cut by a
 * lost connection is sent again after the reconnect (writing a page twice
 * is harmless). fl_store_flush() returns once the server's store flushed
 * every write acknowledged before it.
 *
 * Sequential reads of more than a page (background fill, a thread reading
 * in order) are read ahead: the next run is requested while the engine
 * maps this one.
 */
FL_API int fl_store_remote_new(const struct fl_remote_opts *opts, struct fl_store **ret_store);

/* fl_store_ctl() operations of remote stores (the 0x200 block: see store.h). */
#define FL_REMOTE_CTL_STATS	0x200	/* arg: struct fl_remote_stats * (sz set) */
#define FL_REMOTE_CTL_DROP	0x201	/* arg: NULL; drop the connections now (drills, tests) */

struct fl_remote_stats {
	size_t sz;			/* sizeof(struct fl_remote_stats) */
	uint8_t image_id[FL_IMAGE_ID_LEN];
	uint32_t page_size;
	uint32_t nregions;		/* regions the served image has */
	uint64_t requests, requests_urgent;	/* READ messages sent (re-sends included) */
	uint64_t bytes_received;	/* page bytes received and verified */
	uint64_t connects;		/* successful connections (the first included) */
	uint64_t reconnects;		/* connections re-established after a failure */
	uint64_t resent;		/* requests sent again after a reconnect */
	uint64_t bad_responses;		/* responses rejected (checksum, page numbers, protocol) */
	uint64_t timeouts;		/* reads failed with -ETIMEDOUT */
	uint64_t readahead;		/* runs requested ahead of sequential bulk reads */
	uint64_t readahead_hits;	/* ... that the next read used */
};

#ifdef __cplusplus
}
#endif
#endif
