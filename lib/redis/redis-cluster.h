/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A Redis client for stores: connection pools per server node, pipelining,
 * and Redis Cluster routing on top of hiredis 0.14 (which has no cluster
 * support): CRC16 key slots, a slot map loaded with CLUSTER SLOTS, MOVED and
 * ASK redirects, retries with backoff and reconnects within a deadline.
 * A single redis-server is the same client with one node and no slot map;
 * a MOVED reply from it switches to cluster mode.
 *
 * hiredis parses replies and opens connections; commands are encoded here
 * and written with send(MSG_NOSIGNAL), so a server that went away gives an
 * error, never SIGPIPE.
 */
#ifndef FL_REDIS_CLUSTER_H
#define FL_REDIS_CLUSTER_H

#include "kernel.h"
#include <faultline/redis.h>

#include <hiredis/hiredis.h>

#define FL__CLUSTER_SLOTS 16384u

/* CRC16-CCITT (XMODEM: poly 0x1021, init 0), as the cluster spec uses. */
uint16_t fl__crc16(const void *buf, size_t len);
/* The cluster slot of a key: CRC16 of its hash tag (first {...}, non-empty) or of the key. */
unsigned fl__cluster_keyslot(const char *key, size_t len);

/* ---- RESP command encoding into a growable buffer ---------------------- */
struct fl__resp {
	char *buf;
	size_t len, cap;
	int err;		/* -ENOMEM once an append failed; later appends are no-ops */
};
void fl__resp_free(struct fl__resp *b);
/* "*argc\r\n" */
void fl__resp_array(struct fl__resp *b, unsigned argc);
/* One bulk-string argument; returns its offset in buf (of the '$'). */
size_t fl__resp_arg(struct fl__resp *b, const void *data, size_t len);
/* A bulk-string argument of `len` bytes to be filled by the caller: returns
 * the offset of its first data byte (valid until the next append). */
size_t fl__resp_arg_reserve(struct fl__resp *b, size_t len);

/* ---- the client ------------------------------------------------------- */
struct fl__cluster;

struct fl__cluster_opts {
	const char *host;
	int port;
	unsigned timeout_ms;		/* per fl__cluster_run() call */
	unsigned connections;		/* per node */
	bool require_cluster;
	struct fl__logger log;
};

/*
 * A sink takes the string elements of a command's array reply as they are
 * parsed, straight from the read buffer (MGET of pages: verify and copy into
 * place, no copy per element on the heap). Its return value (>= 0, or
 * -errno) replaces the string: the element comes back with type
 * FL__CLUSTER_REPLY_SUNK and that value in `integer`. Elements that are not
 * strings (nil...) come back as usual. A reply may be parsed more than once
 * (the connection failed mid-reply and the command was sent again); only
 * the final reply's elements count.
 */
#define FL__CLUSTER_REPLY_SUNK 100
struct fl__cluster_sink {
	long long (*string)(void *ctx, size_t idx, const char *str, size_t len);
	void *ctx;
};

struct fl__cluster_cmd {
	/* in */
	const char *buf;		/* the RESP-encoded command */
	size_t len;
	int slot;			/* key slot, or -1: any node */
	bool multi_key;			/* TRYAGAIN is returned to the caller (it can split) */
	bool fresh;			/* send on a new connection (a reply failed verification) */
	const struct fl__cluster_sink *sink;	/* optional, for array replies */
	/* out */
	redisReply *reply;		/* the reply (an error reply too): caller frees */
	int result;			/* 0 with a reply, or -errno (-ETIMEDOUT, -EPROTO, -ENOMEM) */
	/* private to fl__cluster_run */
	int ask_node;
	unsigned redirects;
};

/*
 * Connect to the seed node and detect a cluster (loading its slot map).
 * Retries until opts->timeout_ms; -ETIMEDOUT when the server never answered,
 * -EPROTO when it is not a cluster but one was required or it refused the
 * detection command.
 */
int fl__cluster_new(const struct fl__cluster_opts *opts, struct fl__cluster **ret);
void fl__cluster_free(struct fl__cluster *rc);
bool fl__cluster_is_cluster(const struct fl__cluster *rc);
/* The node index serving `slot` now (0 for a single server), -1 unknown. */
int fl__cluster_slot_node(struct fl__cluster *rc, unsigned slot);
#define FL__CLUSTER_MAX_NODES 64

/*
 * Run commands, pipelined per node (sent to every node first, then the
 * replies read). Each command gets a reply, or a result < 0 when none could
 * be had within the deadline. Redirects, reconnects and transient cluster
 * errors (CLUSTERDOWN, LOADING, TRYAGAIN on single-key commands) are
 * handled here. `urgent` may use a node's reserved connection. Returns 0
 * when every command has a reply, else the first command's error.
 * Thread-safe.
 */
int fl__cluster_run(struct fl__cluster *rc, struct fl__cluster_cmd *cmds, unsigned n, bool urgent);

/* Counters (fills the fields this layer knows). */
void fl__cluster_stats(const struct fl__cluster *rc, struct fl_redis_stats *st);

/* An error reply that starts with `word` (e.g. "TRYAGAIN"). */
bool fl__cluster_reply_is(const redisReply *r, const char *word);

/*
 * The decoders of what a server sends, apart from any connection (the
 * fuzz targets call them). "MOVED 3999 127.0.0.1:6381" or "ASK ...":
 * the slot, port and host (from_host when the reply names none, a
 * [v6addr] without brackets); -EPROTO when malformed or when the host does
 * not fit host_len (refused, never cut short).
 */
int fl__cluster_parse_redirect(const char *str, size_t len, const char *from_host, char *host, size_t host_len,
			       int *ret_port, int *ret_slot);
/* A reader that builds the client's reply objects (sinks through the
 * reader's privdata, arrays bounded): free with redisReaderFree. */
redisReader *fl__cluster_reader_new(void);
/*
 * store-redis.c: check the value fetched for page `page` of region `region`
 * of the image with content id `id`; a data page is copied into dst
 * (FL_PAGE_SIZE bytes), nothing is written otherwise. 0: data, 1: a zero
 * page, -EBADMSG: corrupt, or a value of another page, region or image.
 */
int fl__redis_value_check(const char *str, size_t len, const uint8_t id[FL_IMAGE_ID_LEN], unsigned region,
			  uint64_t page, uint8_t *dst);
/* An image description (the meta key's value), as the store and
 * fl_redis_regions check it: 0 with its id and region count, or -errno. */
int fl__redis_meta_check(const char *buf, size_t len, uint8_t ret_id[FL_IMAGE_ID_LEN], uint32_t *ret_nregions);

/*
 * store-redis.c: copy the caller's options (FL_OPTS_COPY), parse the URL
 * into host, port and prefix, and connect (fl__cluster_new()).
 */
int fl__redis_connect(const struct fl_redis_opts *opts, struct fl_redis_opts *o, char *host, size_t host_len,
		      int *port, char *prefix, size_t prefix_len, struct fl__cluster **ret_rc);

/*
 * Parse redis://HOST[:PORT][/PREFIX] ([v6addr] in brackets). Defaults: port
 * 6379, prefix "faultline". The prefix is 1..128 printable characters
 * without braces (they would change the hash tag) or spaces.
 */
int fl__redis_url_parse(const char *url, char *host, size_t host_len, int *port,
			char *prefix, size_t prefix_len);

#endif
