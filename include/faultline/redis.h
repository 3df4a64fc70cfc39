/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Images in Redis: push an image's pages to a Redis server or a Redis
 * Cluster, and restore lazily from there (see fl_store_redis_new(3)).
 *
 * Layout under a key prefix (binary values, little-endian):
 *
 *   PREFIX:meta                      the image last pushed under the prefix
 *   PREFIX:IMAGEID:meta              the same description, by image id
 *   PREFIX:{IMAGEID:REGION:CHUNK}:PAGE   one page
 *
 * IMAGEID is the image's content id in 32 hex digits, REGION the region
 * index, PAGE the page index in the region and CHUNK = PAGE / 512. The hash
 * tag {...} names one 2 MiB chunk, so every page of a chunk lives in one
 * cluster slot and a prefetch window is one MGET per chunk. A page value is
 * a 56-byte header (magic, page kind, region, page, image id, the XXH3-64
 * of the page bytes, a header checksum) followed by the page bytes; a zero
 * page is the header alone. Pages absent from the image have no key.
 *
 * Reads verify everything: the header's magic and checksum, that region,
 * page and image id are the ones asked for (a value stored under the wrong
 * key is caught), the length, and the page checksum. A value that fails (or
 * a missing key, or a reply of the wrong shape) is read again on a new
 * connection, twice; then the read fails with -EBADMSG (-ENODATA for a
 * missing key), so the engine poisons the page: never wrong data, never
 * zeros the image does not hold.
 *
 * Servers: a single redis-server, or a Redis Cluster (detected with
 * CLUSTER SLOTS). Commands are routed by the CRC16 key slot over a slot map,
 * follow MOVED (the map is updated and refreshed) and ASK (ASKING on the
 * importing node) redirects, and fall back from MGET to single GETs when a
 * slot is half-migrated (TRYAGAIN). A dropped connection or a restarted
 * server is reconnected with backoff and the command retried until
 * timeout_ms has passed (then -ETIMEDOUT). Once a server has been failing
 * for a whole timeout, later reads give up after a short retry, until it
 * answers again. Each node gets a small pool of connections, one of them
 * kept for urgent reads (FL_STORE_IN_URGENT: demand faults) so prefetch and
 * background fill do not queue ahead of a blocked thread.
 *
 * Needs: Redis 3.0 or newer (Cluster: 3.0; tested with 7.0). No AUTH, no
 * TLS, no Unix sockets yet.
 *
 * A library built without Redis support (-Dredis=disabled, or hiredis not
 * found) still exports every function here; each returns -EOPNOTSUPP.
 */
#ifndef FAULTLINE_REDIS_H
#define FAULTLINE_REDIS_H

#include <faultline/common.h>
#include <faultline/store.h>
#include <faultline/image.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_redis_opts {
	size_t sz;			/* sizeof(struct fl_redis_opts) */
	const char *url;		/* redis://HOST[:PORT][/PREFIX]; port 6379, prefix "faultline" */
	unsigned region;		/* fl_store_redis_new(): the image region the store serves */
	unsigned timeout_ms;		/* bound on retrying one read (reconnects, redirects); 0 = 5000 */
	bool cluster;			/* require a Redis Cluster (default: detect) */
	unsigned connections;		/* connections per server node; 0 = 4 */
	const uint8_t *image_id;	/* FL_IMAGE_ID_LEN bytes: require this image; NULL = the prefix's latest */
	fl_log_fn log;			/* NULL: silent */
	void *log_ctx;
	enum fl_log_level log_level;	/* highest level passed to `log` */
};

/*
 * Upload every region of `img` (resolving its parent chain: the pushed
 * image is complete) under the URL's prefix, pipelined, one MSET per 2 MiB
 * chunk; the description keys are written last, so a reader never finds
 * an image whose pages are not all stored. Pages absent from the whole
 * chain are not stored (reading them fails). Pushing the same image again
 * overwrites its keys. `progress` (optional) is called with pages done /
 * total. opts->region and opts->image_id are ignored.
 *
 * Returns 0; -EINVAL (bad URL or options), -EBADMSG (a page of the image is
 * corrupt: nothing is published), -ETIMEDOUT (the server could not be
 * reached or kept failing for timeout_ms), -EPROTO (the server refused a
 * command or is not a cluster although opts->cluster), -ENOMEM.
 */
FL_API int fl_redis_push(struct fl_image *img, const struct fl_redis_opts *opts,
			 fl_progress_fn progress, void *ctx);

/*
 * A store over region opts->region of the image stored under the URL's
 * prefix (the latest one pushed, or opts->image_id). Its size is the
 * region's length. Connects, reads and checks the image description now.
 * Thread-safe: reads from any number of threads share the connection pools.
 * The store's name is "redis"; fl_store_ctl(FL_REDIS_CTL_STATS) reads its
 * counters.
 *
 * Returns 0; -EINVAL (bad URL or options), -ENOENT (no image under the
 * prefix, or no such region), -ESTALE (the prefix holds another image than
 * opts->image_id), -EBADMSG (the description is corrupt), -ETIMEDOUT,
 * -EPROTO, -ENOMEM.
 */
FL_API int fl_store_redis_new(const struct fl_redis_opts *opts, struct fl_store **ret_store);

/*
 * Describe the image stored under the URL's prefix (opts->image_id, or the
 * latest): writes up to `max` region descriptors to `regions` (may be NULL
 * when max is 0) and the image's content id to `ret_id` (optional).
 * Returns the number of regions (>= 0; may exceed max), or the errors of
 * fl_store_redis_new().
 */
FL_API int fl_redis_regions(const struct fl_redis_opts *opts, struct fl_image_region *regions,
			    unsigned max, uint8_t ret_id[FL_IMAGE_ID_LEN]);

/*
 * Far memory in Redis: a writable store of `size` bytes (a nonzero
 * multiple of 4096) under the URL's prefix, for far-memory regions
 * (FL_REGION_WRITEBACK) and any other writer of pages.
 *
 *   PREFIX:far:meta                      the store's size (checked on open)
 *   PREFIX:far:{PREFIX:CHUNK}:PAGE       one page, CHUNK = PAGE / 512
 *   PREFIX:far:{PREFIX:CHUNK}:flush      a marker written by flush
 *
 * A page value is a 32-byte header (magic "FLRW", version, kind, the page
 * index, a generation, an XXH3-64 over the header and the bytes) and the
 * page's 4096 bytes (none for a page of zeros). Every write of a page
 * stores the generation after the one this store last wrote or read for
 * it; a read checks the checksum (a mismatch, or a value that is not one,
 * fails with -EIO: the region fails closed, never zeros) and the
 * generation (one this store did not write: another writer, or a write
 * the server lost, fails with -ESTALE). A page that has no key reads as
 * zeros only with FL_REDIS_FAR_ZERO_MISSING and only if this store never
 * wrote it; otherwise -ENODATA, or -EIO for a page this store wrote and
 * the server no longer has.
 *
 * Writes are one SET per page, pipelined per node; in a Cluster they
 * follow MOVED and ASK like reads, so they land during a slot migration.
 * Each request's result is its own (-ETIMEDOUT when the server did not
 * answer within timeout_ms, -EROFS for a read-only replica, -ENOSPC when
 * Redis is out of memory, -EIO for other refusals). A failed write may or
 * may not have reached the server; writing the page again settles it.
 *
 * fl_store_flush(): for every primary written since the last flush that
 * had replicas when the store first flushed to it (INFO replication),
 * WAIT for as many replicas to acknowledge (at most timeout_ms / 2); fewer
 * acknowledgements fail the flush with -EIO (and the next flush waits for
 * those primaries again). A server without replicas flushes at once:
 * durability is then its persistence configuration (appendonly,
 * appendfsync). FL_STORE_CTL_WRITABLE answers 0 when the server is a
 * read-only replica. The store's name is "redis-far"; FL_REDIS_CTL_STATS
 * works as for fl_store_redis_new().
 *
 * opts: url, timeout_ms, cluster, connections and the log are used;
 * region and image_id must be 0 / NULL. Returns 0; -EINVAL (bad URL,
 * options or size, or the prefix holds a far store of another size),
 * -ETIMEDOUT, -EPROTO, -ENOMEM; -EOPNOTSUPP in a build without Redis.
 */
#define FL_REDIS_FAR_ZERO_MISSING	(1u << 0)	/* pages never written read as zeros (a new store) */
FL_API int fl_store_redis_far_new(const struct fl_redis_opts *opts, uint64_t size, unsigned flags,
				  struct fl_store **ret_store);

/* Counters of a Redis store: fl_store_ctl(store, FL_REDIS_CTL_STATS, &stats). */
struct fl_redis_stats {
	size_t sz;			/* sizeof(struct fl_redis_stats) */
	uint64_t commands;		/* commands sent, retries and redirects included */
	uint64_t pages_read;		/* pages delivered (verified) */
	uint64_t moved;			/* MOVED redirects followed */
	uint64_t ask;			/* ASK redirects followed */
	uint64_t tryagain;		/* TRYAGAIN / CLUSTERDOWN / LOADING replies retried or split */
	uint64_t map_refreshes;		/* slot maps loaded with CLUSTER SLOTS */
	uint64_t connects;		/* connections opened */
	uint64_t connect_errors;	/* connection attempts that failed */
	uint64_t io_errors;		/* connections dropped on an I/O or protocol error */
	uint64_t timeouts;		/* commands given up after timeout_ms */
	uint64_t bad_values;		/* values that failed verification (-EBADMSG) */
	uint64_t missing;		/* keys that did not exist (-ENODATA) */
	uint32_t nodes;			/* server nodes known */
	bool cluster;			/* talking to a Redis Cluster */
	uint64_t pages_written;		/* far stores: pages the server acknowledged */
	uint64_t write_errors;		/* far stores: pages whose write failed */
	uint64_t stale;			/* far stores: reads refused for their generation (-ESTALE) */
	uint64_t waits;			/* far stores: WAIT commands answered */
};
#define FL_REDIS_CTL_STATS	0x300	/* unique across stores: see store.h */

#ifdef __cplusplus
}
#endif
#endif
