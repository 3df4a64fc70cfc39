// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The Redis client under the Redis store (see redis-cluster.h): per-node
 * connection pools, pipelined commands, and Redis Cluster routing on top of
 * hiredis 0.14.
 *
 * Failure model. Every fl__cluster_run() call has a deadline (timeout_ms). A
 * connection that fails to connect, to send, or to deliver a well-formed
 * reply in time is dropped, never reused: after an error its reply stream
 * may be out of step with the commands. The commands that did not get a
 * reply are sent again, after a backoff, on a fresh connection, until the
 * deadline. A node that has failed for a whole timeout gets only a short
 * retry per call until it answers again, so a dead server costs each read a
 * moment, not timeout_ms.
 *
 * Cluster routing follows the cluster spec: the slot of a command's keys is
 * looked up in a slot map loaded with CLUSTER SLOTS; MOVED updates that
 * slot and asks for a reload of the whole map (rate-limited); ASK sends the
 * command once to the importing node, preceded by ASKING, without touching
 * the map. Connections to nodes are acquired in node order, so threads that
 * hold connections to several nodes at once cannot deadlock.
 */
#include "redis-cluster.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define RC_MAX_NODES FL__CLUSTER_MAX_NODES
#define RC_MAX_REDIRECTS 16		/* per command per call, before backing off */
#define RC_BACKOFF_MIN_MS 2
#define RC_BACKOFF_MAX_MS 200
#define RC_REFRESH_MIN_NS (100 * 1000000ull)	/* between slot map reloads */
#define RC_READER_MAX ((size_t)512 << 20)	/* unparsed reply bytes: beyond, a broken server */
#define NS_PER_MS 1000000ull

/* ---- CRC16 and key slots --------------------------------------------- */

static const uint16_t crc16_table[256] = {
	0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
	0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
	0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
	0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
	0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
	0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
	0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
	0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
	0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
	0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
	0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
	0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
	0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
	0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
	0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
	0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
	0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
	0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
	0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
	0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
	0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
	0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
	0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
	0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
	0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
	0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
	0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
	0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
	0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
	0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
	0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
	0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

uint16_t fl__crc16(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint16_t crc = 0;
	for (size_t i = 0; i < len; i++)
		crc = (uint16_t)((crc << 8) ^ crc16_table[((crc >> 8) ^ p[i]) & 0xff]);
	return crc;
}

unsigned fl__cluster_keyslot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len), *close;

	if (open) {
		size_t rest = len - (size_t)(open - key) - 1;
		close = memchr(open + 1, '}', rest);
		/* Only a non-empty tag counts: "foo{}{bar}" hashes the whole key. */
		if (close && close > open + 1)
			return fl__crc16(open + 1, (size_t)(close - open - 1)) & (FL__CLUSTER_SLOTS - 1);
	}
	return fl__crc16(key, len) & (FL__CLUSTER_SLOTS - 1);
}

/* ---- RESP encoding ----------------------------------------------------- */

static bool resp_grow(struct fl__resp *b, size_t more)
{
	size_t cap;
	char *nb;

	if (b->err)
		return false;
	if (b->len + more <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	nb = realloc(b->buf, cap);
	if (!nb) {
		b->err = -ENOMEM;
		return false;
	}
	b->buf = nb;
	b->cap = cap;
	return true;
}

void fl__resp_free(struct fl__resp *b)
{
	free(b->buf);
	*b = (struct fl__resp){ 0 };
}

static void resp_header(struct fl__resp *b, char kind, size_t n)
{
	char tmp[32], *p = tmp + sizeof(tmp);
	size_t k;

	/* By hand: this runs for every key and value of a push. */
	*--p = '\n';
	*--p = '\r';
	do {
		*--p = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	*--p = kind;
	k = (size_t)(tmp + sizeof(tmp) - p);
	if (resp_grow(b, k)) {
		memcpy(b->buf + b->len, p, k);
		b->len += k;
	}
}

void fl__resp_array(struct fl__resp *b, unsigned argc)
{
	resp_header(b, '*', argc);
}

size_t fl__resp_arg_reserve(struct fl__resp *b, size_t len)
{
	size_t off;
	resp_header(b, '$', len);
	if (!resp_grow(b, len + 2))
		return 0;
	off = b->len;
	b->len += len;
	b->buf[b->len++] = '\r';
	b->buf[b->len++] = '\n';
	return off;
}

size_t fl__resp_arg(struct fl__resp *b, const void *data, size_t len)
{
	size_t start = b->len, off = fl__resp_arg_reserve(b, len);
	if (!b->err)
		memcpy(b->buf + off, data, len);
	return start;
}

/* ---- URLs -------------------------------------------------------------- */

int fl__redis_url_parse(const char *url, char *host, size_t host_len, int *port, char *prefix,
			size_t prefix_len)
{
	static const char scheme[] = "redis://";
	const char *p, *h_end, *rest;
	size_t hl;
	long pt = 6379;

	if (!url || strncmp(url, scheme, sizeof(scheme) - 1))
		return -EINVAL;
	p = url + sizeof(scheme) - 1;
	if (strpbrk(p, "@?#"))
		return -EINVAL;	/* credentials and query options are not supported */
	if (*p == '[') {
		h_end = strchr(p, ']');
		if (!h_end)
			return -EINVAL;
		p++;
		hl = (size_t)(h_end - p);
		rest = h_end + 1;
	} else {
		h_end = p + strcspn(p, ":/");
		hl = (size_t)(h_end - p);
		rest = h_end;
	}
	if (hl == 0 || hl >= host_len)
		return -EINVAL;
	memcpy(host, p, hl);
	host[hl] = '\0';
	if (*rest == ':') {
		char *end;
		rest++;
		if (*rest < '0' || *rest > '9')
			return -EINVAL;
		pt = strtol(rest, &end, 10);
		if (pt < 1 || pt > 65535)
			return -EINVAL;
		rest = end;
	}
	if (*rest && *rest != '/')
		return -EINVAL;
	if (*rest == '/')
		rest++;
	if (!*rest)
		rest = "faultline";
	if (strlen(rest) >= prefix_len || strlen(rest) > 128)
		return -EINVAL;
	for (const char *c = rest; *c; c++)
		if (*c <= ' ' || *c >= 0x7f || *c == '{' || *c == '}')
			return -EINVAL;
	strcpy(prefix, rest);
	*port = (int)pt;
	return 0;
}

/* ---- nodes and connections --------------------------------------------- */

struct rc_conn {
	redisContext *ctx;		/* NULL: not connected */
	bool busy;
	unsigned io_timeout_ms;		/* SO_RCVTIMEO / SO_SNDTIMEO in force */
};

struct rc_node {
	char host[256];
	int port;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned busy;
	struct rc_conn *conns;
	_Atomic uint64_t failing_since;	/* fl__now_ns() of the first failure in a row; 0: answering */
};

struct fl__cluster {
	struct fl__cluster_opts opts;
	char seed_host[256];
	uint64_t timeout_ns;
	pthread_mutex_t nodes_mu;	/* adding nodes */
	struct rc_node *_Atomic nodes[RC_MAX_NODES];
	_Atomic unsigned nnodes;
	_Atomic uint8_t slot_node[FL__CLUSTER_SLOTS];	/* node index + 1; 0: unknown */
	_Atomic bool cluster;
	pthread_mutex_t refresh_mu;
	_Atomic uint64_t last_refresh_ns;
	_Atomic bool refresh_wanted;
	_Atomic uint64_t st_commands, st_moved, st_ask, st_tryagain, st_refreshes, st_connects,
		st_connect_errors, st_io_errors, st_timeouts;
};

static const char asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";
static const char slots_cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";

static inline void stat_inc(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static struct rc_node *node_at(struct fl__cluster *rc, unsigned i)
{
	return atomic_load_explicit(&rc->nodes[i], memory_order_acquire);
}

static unsigned node_count(struct fl__cluster *rc)
{
	return atomic_load_explicit(&rc->nnodes, memory_order_acquire);
}

static void node_free(struct rc_node *nd, unsigned nconns)
{
	if (!nd)
		return;
	for (unsigned i = 0; nd->conns && i < nconns; i++)
		if (nd->conns[i].ctx)
			redisFree(nd->conns[i].ctx);
	free(nd->conns);
	pthread_cond_destroy(&nd->cv);
	pthread_mutex_destroy(&nd->mu);
	free(nd);
}

/* The index of host:port, added if new; -ENOSPC when the table is full. */
static int node_find_or_add(struct fl__cluster *rc, const char *host, int port)
{
	unsigned n = node_count(rc);
	struct rc_node *nd;
	pthread_condattr_t ca;
	int idx = -ENOSPC;

	for (unsigned i = 0; i < n; i++) {
		nd = node_at(rc, i);
		if (nd->port == port && strcmp(nd->host, host) == 0)
			return (int)i;
	}
	if (strlen(host) >= sizeof(nd->host) || port < 1 || port > 65535)
		return -EINVAL;
	pthread_mutex_lock(&rc->nodes_mu);
	n = node_count(rc);
	for (unsigned i = 0; i < n; i++) {
		nd = node_at(rc, i);
		if (nd->port == port && strcmp(nd->host, host) == 0) {
			idx = (int)i;
			goto out;
		}
	}
	if (n >= RC_MAX_NODES)
		goto out;
	nd = calloc(1, sizeof(*nd));
	if (!nd) {
		idx = -ENOMEM;
		goto out;
	}
	nd->conns = calloc(rc->opts.connections, sizeof(*nd->conns));
	if (!nd->conns) {
		free(nd);
		idx = -ENOMEM;
		goto out;
	}
	strcpy(nd->host, host);
	nd->port = port;
	pthread_mutex_init(&nd->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&nd->cv, &ca);
	pthread_condattr_destroy(&ca);
	atomic_store_explicit(&rc->nodes[n], nd, memory_order_release);
	atomic_store_explicit(&rc->nnodes, n + 1, memory_order_release);
	idx = (int)n;
out:
	pthread_mutex_unlock(&rc->nodes_mu);
	return idx;
}

static void node_failed(struct fl__cluster *rc, struct rc_node *nd, const char *what, const char *detail)
{
	uint64_t zero = 0;
	if (atomic_compare_exchange_strong(&nd->failing_since, &zero, fl__now_ns()))
		fl__log(&rc->opts.log, FL_LOG_WARN, "redis %s:%d: %s%s%s", nd->host, nd->port, what,
			detail ? ": " : "", detail ? detail : "");
	else
		fl__log(&rc->opts.log, FL_LOG_DEBUG, "redis %s:%d: %s%s%s", nd->host, nd->port, what,
			detail ? ": " : "", detail ? detail : "");
}

static void node_answered(struct fl__cluster *rc, struct rc_node *nd)
{
	if (atomic_load_explicit(&nd->failing_since, memory_order_relaxed) &&
	    atomic_exchange(&nd->failing_since, 0))
		fl__log(&rc->opts.log, FL_LOG_INFO, "redis %s:%d: answering again", nd->host, nd->port);
}

static struct timeval ms_to_tv(uint64_t ms)
{
	return (struct timeval){ .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
}

static uint64_t remaining_ms(uint64_t deadline)
{
	uint64_t now = fl__now_ns();
	return now >= deadline ? 0 : (deadline - now + NS_PER_MS - 1) / NS_PER_MS;
}

/*
 * The socket timeouts bound each blocking send/read; the deadline is checked
 * between them. Re-set only when they are longer than what is left or much
 * shorter (a setsockopt per command batch is not free).
 */
static int conn_set_timeout(struct rc_conn *c, uint64_t deadline)
{
	uint64_t rem = remaining_ms(deadline);
	if (!rem)
		return -ETIMEDOUT;
	if (c->io_timeout_ms && c->io_timeout_ms <= rem && (uint64_t)c->io_timeout_ms * 2 >= rem)
		return 0;
	if (redisSetTimeout(c->ctx, ms_to_tv(rem)) != REDIS_OK)
		return -EIO;
	c->io_timeout_ms = (unsigned)FL_MIN(rem, (uint64_t)UINT_MAX);
	return 0;
}

/*
 * Reply objects: hiredis's layout and allocation (freeReplyObject frees
 * them), plus sinks (see redis-cluster.h) and a bound on array sizes, so a
 * broken server's "*2000000000" is a protocol error, not a huge calloc.
 */
#define RC_MAX_ELEMENTS (1 << 20)

static void *reply_new(const redisReadTask *task, int type)
{
	redisReply *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->type = type;
	if (task->parent) {
		redisReply *parent = task->parent->obj;
		if (!parent || parent->type != REDIS_REPLY_ARRAY || task->idx < 0 ||
		    (size_t)task->idx >= parent->elements) {
			free(r);
			return NULL;
		}
		parent->element[task->idx] = r;
	}
	return r;
}

static void *reply_string(const redisReadTask *task, char *str, size_t len)
{
	const struct fl__cluster_sink *sink = task->privdata;
	redisReply *r;

	if (sink && task->type == REDIS_REPLY_STRING && task->parent && !task->parent->parent) {
		long long v = sink->string(sink->ctx, (size_t)task->idx, str, len);
		r = reply_new(task, FL__CLUSTER_REPLY_SUNK);
		if (r)
			r->integer = v;
		return r;
	}
	r = reply_new(task, task->type);
	if (!r)
		return NULL;
	r->str = malloc(len + 1);
	if (!r->str) {
		if (task->parent)
			((redisReply *)task->parent->obj)->element[task->idx] = NULL;
		free(r);
		return NULL;
	}
	memcpy(r->str, str, len);
	r->str[len] = '\0';
	r->len = len;
	return r;
}

static void *reply_array(const redisReadTask *task, int elements)
{
	redisReply *r;
	if (elements > RC_MAX_ELEMENTS)
		return NULL;
	r = reply_new(task, REDIS_REPLY_ARRAY);
	if (!r)
		return NULL;
	if (elements > 0) {
		r->element = calloc((size_t)elements, sizeof(*r->element));
		if (!r->element) {
			if (task->parent)
				((redisReply *)task->parent->obj)->element[task->idx] = NULL;
			free(r);
			return NULL;
		}
	}
	r->elements = (size_t)(elements > 0 ? elements : 0);
	return r;
}

static void *reply_integer(const redisReadTask *task, long long value)
{
	redisReply *r = reply_new(task, REDIS_REPLY_INTEGER);
	if (r)
		r->integer = value;
	return r;
}

static void *reply_nil(const redisReadTask *task)
{
	return reply_new(task, REDIS_REPLY_NIL);
}

static redisReplyObjectFunctions reply_fns = {
	.createString = reply_string,
	.createArray = reply_array,
	.createInteger = reply_integer,
	.createNil = reply_nil,
	.freeObject = freeReplyObject,
};

redisReader *fl__cluster_reader_new(void)
{
	return redisReaderCreateWithFunctions(&reply_fns);
}

static int conn_open(struct fl__cluster *rc, struct rc_node *nd, struct rc_conn *c, uint64_t deadline)
{
	uint64_t rem = remaining_ms(deadline);
	redisContext *ctx;

	if (!rem)
		return -ETIMEDOUT;
	ctx = redisConnectWithTimeout(nd->host, nd->port, ms_to_tv(rem));
	if (!ctx)
		return -ENOMEM;
	if (ctx->err) {
		stat_inc(&rc->st_connect_errors, 1);
		node_failed(rc, nd, "cannot connect", ctx->errstr);
		redisFree(ctx);
		return -ECONNREFUSED;
	}
	/* hiredis 0.14 opens sockets without SOCK_CLOEXEC. */
	fcntl(ctx->fd, F_SETFD, FD_CLOEXEC);
	ctx->reader->fn = &reply_fns;
	ctx->reader->privdata = NULL;
	stat_inc(&rc->st_connects, 1);
	c->ctx = ctx;
	c->io_timeout_ms = 0;
	return 0;
}

/*
 * An idle pooled connection must have nothing to say: bytes waiting (more
 * replies than commands) would answer the next command, and EOF means the
 * server went away (restarted) since. Either way it is replaced.
 */
static bool conn_idle_ok(struct rc_conn *c)
{
	char b;
	ssize_t n;

	if (c->ctx->err || c->ctx->reader->pos < c->ctx->reader->len)
		return false;
	n = recv(c->ctx->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/*
 * Take a connection of node `nd` (connecting it if needed; `fresh`: always
 * a new one). Non-urgent callers leave the last connection of the pool to
 * urgent ones.
 */
static int conn_acquire(struct fl__cluster *rc, struct rc_node *nd, bool urgent, bool fresh, uint64_t deadline,
			struct rc_conn **ret)
{
	unsigned max = rc->opts.connections, limit = urgent || max == 1 ? max : max - 1;
	struct rc_conn *c = NULL;
	struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000ull),
			       .tv_nsec = (long)(deadline % 1000000000ull) };
	int r;

	pthread_mutex_lock(&nd->mu);
	while (nd->busy >= limit) {
		if (pthread_cond_timedwait(&nd->cv, &nd->mu, &ts) == ETIMEDOUT && nd->busy >= limit) {
			pthread_mutex_unlock(&nd->mu);
			return -ETIMEDOUT;
		}
	}
	for (unsigned i = 0; i < max; i++) {
		if (nd->conns[i].busy)
			continue;
		if (!c || (!c->ctx && nd->conns[i].ctx))
			c = &nd->conns[i];
		if (c->ctx)
			break;
	}
	c->busy = true;
	nd->busy++;
	pthread_mutex_unlock(&nd->mu);

	if (c->ctx && (fresh || !conn_idle_ok(c))) {
		redisFree(c->ctx);
		c->ctx = NULL;
	}
	r = c->ctx ? 0 : conn_open(rc, nd, c, deadline);
	if (!r)
		r = conn_set_timeout(c, deadline);
	if (r) {
		if (c->ctx)
			redisFree(c->ctx);
		c->ctx = NULL;
		pthread_mutex_lock(&nd->mu);
		c->busy = false;
		nd->busy--;
		pthread_cond_broadcast(&nd->cv);
		pthread_mutex_unlock(&nd->mu);
		return r;
	}
	*ret = c;
	return 0;
}

/* Give a connection back; `drop` closes it (its reply stream is no longer trusted). */
static void conn_release(struct rc_node *nd, struct rc_conn *c, bool drop)
{
	if (drop && c->ctx) {
		redisFree(c->ctx);
		c->ctx = NULL;
	}
	pthread_mutex_lock(&nd->mu);
	c->busy = false;
	nd->busy--;
	/* All waiters: urgent and non-urgent ones wait for different counts. */
	pthread_cond_broadcast(&nd->cv);
	pthread_mutex_unlock(&nd->mu);
}

/*
 * Write iovecs in full. send(2) with MSG_NOSIGNAL: a peer that closed gives
 * EPIPE here instead of killing the process with SIGPIPE (hiredis would
 * write(2)). This and conn_idle_ok() are the only places this client reads
 * errno (hiredis reports its own errors in the context).
 */
static int send_all(int fd, struct iovec *iov, size_t n, uint64_t deadline)
{
	while (n) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = FL_MIN(n, (size_t)IOV_MAX) };
		ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
		size_t done;

		if (w < 0) {
			int e = errno;
			if (e == EINTR)
				continue;
			if ((e == EAGAIN || e == EWOULDBLOCK) && fl__now_ns() < deadline)
				continue;
			return e == EAGAIN || e == EWOULDBLOCK ? -ETIMEDOUT : -e;
		}
		done = (size_t)w;
		while (n && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n && done) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return 0;
}

/*
 * One reply, within the deadline, its string elements given to `sink`
 * (optional). -ETIMEDOUT, -ECONNRESET (EOF), -EIO, -EPROTO.
 */
static int read_reply(struct rc_conn *c, uint64_t deadline, const struct fl__cluster_sink *sink, redisReply **ret)
{
	c->ctx->reader->privdata = (void *)sink;
	for (;;) {
		void *reply = NULL;
		if (redisGetReplyFromReader(c->ctx, &reply) != REDIS_OK)
			return -EPROTO;
		if (reply) {
			*ret = reply;
			return 0;
		}
		if (fl__now_ns() >= deadline)
			return -ETIMEDOUT;
		if (c->ctx->reader->len > RC_READER_MAX)
			return -EPROTO;
		if (redisBufferRead(c->ctx) != REDIS_OK)
			return c->ctx->err == REDIS_ERR_EOF ? -ECONNRESET : fl__now_ns() >= deadline ? -ETIMEDOUT : -EIO;
	}
}

bool fl__cluster_reply_is(const redisReply *r, const char *word)
{
	size_t n = strlen(word);
	return r && r->type == REDIS_REPLY_ERROR && r->len >= n && memcmp(r->str, word, n) == 0 &&
	       (r->len == n || r->str[n] == ' ');
}

/* ---- the slot map ------------------------------------------------------ */

static bool reply_int(const redisReply *r, long long min, long long max, long long *v)
{
	if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < min || r->integer > max)
		return false;
	*v = r->integer;
	return true;
}

/*
 * Parse a CLUSTER SLOTS reply into map (node index + 1 per slot). An empty
 * host means "the node you asked" (`asked`). Returns 0 or -EPROTO.
 */
static int parse_slots(struct fl__cluster *rc, const redisReply *r, const struct rc_node *asked, uint8_t *map)
{
	if (r->type != REDIS_REPLY_ARRAY)
		return -EPROTO;
	memset(map, 0, FL__CLUSTER_SLOTS);
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i], *nd;
		long long lo, hi, port;
		char host[256];
		int idx;

		if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    !reply_int(e->element[0], 0, FL__CLUSTER_SLOTS - 1, &lo) ||
		    !reply_int(e->element[1], lo, FL__CLUSTER_SLOTS - 1, &hi))
			return -EPROTO;
		nd = e->element[2];
		if (!nd || nd->type != REDIS_REPLY_ARRAY || nd->elements < 2 || !nd->element[0] ||
		    nd->element[0]->type != REDIS_REPLY_STRING || nd->element[0]->len >= sizeof(host) ||
		    !reply_int(nd->element[1], 1, 65535, &port))
			return -EPROTO;
		if (nd->element[0]->len == 0) {
			snprintf(host, sizeof(host), "%s", asked->host);
		} else if (nd->element[0]->len == 1 && nd->element[0]->str[0] == '?') {
			continue;	/* endpoint unknown: route there through MOVED later */
		} else {
			memcpy(host, nd->element[0]->str, nd->element[0]->len);
			host[nd->element[0]->len] = '\0';
		}
		idx = node_find_or_add(rc, host, (int)port);
		if (idx < 0)
			return -EPROTO;
		for (long long s = lo; s <= hi; s++)
			map[s] = (uint8_t)(idx + 1);
	}
	return 0;
}

static void apply_map(struct fl__cluster *rc, const uint8_t *map)
{
	for (unsigned s = 0; s < FL__CLUSTER_SLOTS; s++)
		atomic_store_explicit(&rc->slot_node[s], map[s], memory_order_relaxed);
	atomic_store(&rc->last_refresh_ns, fl__now_ns());
	stat_inc(&rc->st_refreshes, 1);
}

/* Ask one node for CLUSTER SLOTS. Returns 0 (map filled), -EPROTONOSUPPORT
 * (not a cluster), -EACCES, or a transient error. */
static int ask_slots(struct fl__cluster *rc, unsigned idx, uint64_t deadline, uint8_t *map)
{
	struct rc_node *nd = node_at(rc, idx);
	struct iovec iov = { .iov_base = (void *)slots_cmd, .iov_len = sizeof(slots_cmd) - 1 };
	struct rc_conn *c;
	redisReply *reply = NULL;
	int r = conn_acquire(rc, nd, true, false, deadline, &c);

	if (r)
		return r;
	stat_inc(&rc->st_commands, 1);
	r = send_all(c->ctx->fd, &iov, 1, deadline);
	if (!r)
		r = read_reply(c, deadline, NULL, &reply);
	if (r) {
		stat_inc(&rc->st_io_errors, 1);
		node_failed(rc, nd, "CLUSTER SLOTS failed", strerror(-r));
		conn_release(nd, c, true);
		return r;
	}
	node_answered(rc, nd);
	if (reply->type == REDIS_REPLY_ERROR) {
		if (strstr(reply->str, "cluster support disabled"))
			r = -EPROTONOSUPPORT;
		else if (fl__cluster_reply_is(reply, "NOAUTH") || fl__cluster_reply_is(reply, "NOPERM"))
			r = -EACCES;
		else if (fl__cluster_reply_is(reply, "LOADING") || fl__cluster_reply_is(reply, "BUSY"))
			r = -EAGAIN;
		else
			r = -EPROTONOSUPPORT;	/* a server or proxy without CLUSTER: treat as single */
		if (r != -EAGAIN)
			fl__log(&rc->opts.log, FL_LOG_DEBUG, "redis %s:%d: CLUSTER SLOTS: %s", nd->host,
				nd->port, reply->str);
	} else {
		r = parse_slots(rc, reply, nd, map);
		if (r)
			fl__log(&rc->opts.log, FL_LOG_WARN, "redis %s:%d: malformed CLUSTER SLOTS reply",
				nd->host, nd->port);
	}
	freeReplyObject(reply);
	conn_release(nd, c, r == -EPROTO);
	return r;
}

/* Reload the slot map from any node that answers (one thread at a time, rate-limited). */
static void refresh_map(struct fl__cluster *rc, uint64_t deadline)
{
	uint8_t *map;
	unsigned n;

	uint64_t now = fl__now_ns();

	if (now - atomic_load(&rc->last_refresh_ns) < RC_REFRESH_MIN_NS)
		return;
	if (pthread_mutex_trylock(&rc->refresh_mu))
		return;
	/* A hung node or a busy pool must not eat the caller's whole budget. */
	deadline = FL_MIN(deadline, now + FL_MAX(rc->timeout_ns / 4, 100 * NS_PER_MS));
	map = malloc(FL__CLUSTER_SLOTS);
	atomic_store(&rc->refresh_wanted, false);
	n = node_count(rc);
	/* Nodes that answer first; failing ones only if no other does. */
	for (int pass = 0; map && pass < 2; pass++) {
		for (unsigned i = 0; i < n; i++) {
			bool failing = atomic_load(&node_at(rc, i)->failing_since) != 0;
			if (failing != (pass == 1))
				continue;
			if (ask_slots(rc, i, deadline, map) == 0) {
				apply_map(rc, map);
				goto done;
			}
			if (fl__now_ns() >= deadline)
				goto done;
		}
	}
	atomic_store(&rc->last_refresh_ns, fl__now_ns());	/* failed: do not hammer */
done:
	free(map);
	pthread_mutex_unlock(&rc->refresh_mu);
}

/* ---- running commands -------------------------------------------------- */

/* The node for a command, among the first n nodes. */
static int route(struct fl__cluster *rc, const struct fl__cluster_cmd *c, unsigned n)
{
	if (c->ask_node >= 0 && (unsigned)c->ask_node < n)
		return c->ask_node;
	if (c->slot >= 0 && atomic_load_explicit(&rc->cluster, memory_order_relaxed)) {
		unsigned v = atomic_load_explicit(&rc->slot_node[c->slot], memory_order_relaxed);
		if (v && v <= n)
			return (int)v - 1;
	}
	/* Unknown slot (or a single server): any node that answers; it redirects. */
	for (unsigned i = 0; i < n; i++)
		if (!atomic_load_explicit(&node_at(rc, i)->failing_since, memory_order_relaxed))
			return (int)i;
	return 0;
}

int fl__cluster_parse_redirect(const char *str, size_t len, const char *from_host, char *host, size_t host_len,
			       int *ret_port, int *ret_slot)
{
	char buf[320], *sp, *colon, *end;
	long s, port;
	int n;

	if (len >= sizeof(buf))
		return -EPROTO;
	memcpy(buf, str, len);
	buf[len] = '\0';
	sp = strchr(buf, ' ');
	if (!sp)
		return -EPROTO;
	s = strtol(sp + 1, &end, 10);
	if (end == sp + 1 || *end != ' ' || s < 0 || s >= (long)FL__CLUSTER_SLOTS)
		return -EPROTO;
	colon = strrchr(end + 1, ':');
	if (!colon)
		return -EPROTO;
	port = strtol(colon + 1, &sp, 10);
	if (sp == colon + 1 || *sp || port < 1 || port > 65535)
		return -EPROTO;
	*colon = '\0';
	/* A host that does not fit is refused, never cut short: a cut name
	 * could be another host (one an attacker's reply chose). So is an
	 * empty one ("[]:6379", found by fuzz-redis): no node is named "". */
	if (!end[1])
		n = snprintf(host, host_len, "%s", from_host);
	else if (end[1] == '[' && colon > end + 2 && colon[-1] == ']')
		n = snprintf(host, host_len, "%.*s", (int)(colon - end - 3), end + 2);
	else
		n = snprintf(host, host_len, "%s", end + 1);
	if (n <= 0 || (size_t)n >= host_len)
		return -EPROTO;
	*ret_port = (int)port;
	*ret_slot = (int)s;
	return 0;
}

/* A redirect's slot and the index of the node it names. */
static int parse_redirect(struct fl__cluster *rc, const redisReply *r, const struct rc_node *from, int *slot)
{
	char host[256];
	int port, ret;

	ret = fl__cluster_parse_redirect(r->str, r->len, from->host, host, sizeof(host), &port, slot);
	return ret ? ret : node_find_or_add(rc, host, port);
}

enum outcome { DONE, RETRY_NOW, RETRY_LATER };

/* Look at one reply: hand it to the caller, or act on a redirect or a transient error. */
static enum outcome classify(struct fl__cluster *rc, struct rc_node *nd, struct fl__cluster_cmd *c, redisReply *reply)
{
	if (reply->type == REDIS_REPLY_ERROR) {
		bool moved = fl__cluster_reply_is(reply, "MOVED"), ask = fl__cluster_reply_is(reply, "ASK");
		if (moved || ask) {
			int slot, idx = parse_redirect(rc, reply, nd, &slot);
			if (idx >= 0) {
				freeReplyObject(reply);
				c->redirects++;
				if (moved) {
					stat_inc(&rc->st_moved, 1);
					atomic_store(&rc->slot_node[slot], (uint8_t)(idx + 1));
					if (!atomic_exchange(&rc->cluster, true))
						fl__log(&rc->opts.log, FL_LOG_INFO,
							"redis %s:%d: MOVED: switching to cluster mode",
							nd->host, nd->port);
					atomic_store(&rc->refresh_wanted, true);
					c->ask_node = -1;
				} else {
					stat_inc(&rc->st_ask, 1);
					c->ask_node = idx;
				}
				return c->redirects > RC_MAX_REDIRECTS ? RETRY_LATER : RETRY_NOW;
			}
			/* Unparseable redirect: the caller sees the error reply. */
		} else if (fl__cluster_reply_is(reply, "CLUSTERDOWN") || fl__cluster_reply_is(reply, "LOADING") ||
			   fl__cluster_reply_is(reply, "MASTERDOWN") || fl__cluster_reply_is(reply, "BUSY") ||
			   (fl__cluster_reply_is(reply, "TRYAGAIN") && !c->multi_key)) {
			stat_inc(&rc->st_tryagain, 1);
			fl__log(&rc->opts.log, FL_LOG_DEBUG, "redis %s:%d: %s (retrying)", nd->host, nd->port,
				reply->str);
			freeReplyObject(reply);
			c->ask_node = -1;
			return RETRY_LATER;
		} else if (fl__cluster_reply_is(reply, "TRYAGAIN")) {
			stat_inc(&rc->st_tryagain, 1);
		}
	}
	c->reply = reply;
	c->result = 0;
	return DONE;
}

static void sleep_ms(uint64_t ms, uint64_t deadline)
{
	uint64_t rem = remaining_ms(deadline);
	struct timespec ts;
	ms = FL_MIN(ms, rem);
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

struct group {
	struct rc_conn *conn;
	unsigned first, count;		/* in the order array */
	bool sent;
};

int fl__cluster_run(struct fl__cluster *rc, struct fl__cluster_cmd *cmds, unsigned n, bool urgent)
{
	uint64_t now = fl__now_ns(), deadline = now + rc->timeout_ns;
	uint64_t fast_ns = FL_MIN(FL_MAX(rc->timeout_ns / 10, 50 * NS_PER_MS), 500 * NS_PER_MS);
	unsigned backoff_ms = RC_BACKOFF_MIN_MS, *order, *node_of;
	struct group groups[RC_MAX_NODES];
	struct iovec *iov;
	int ret = 0;

	if (!n)
		return 0;
	order = malloc(n * sizeof(*order));
	node_of = malloc(n * sizeof(*node_of));
	iov = malloc(2 * (size_t)n * sizeof(*iov));
	if (!order || !node_of || !iov) {
		free(order);
		free(node_of);
		free(iov);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		cmds[i].reply = NULL;
		cmds[i].result = -EINPROGRESS;
		cmds[i].ask_node = -1;
		cmds[i].redirects = 0;
	}

	for (;;) {
		unsigned pending = 0, nn = node_count(rc), pos = 0;
		bool later = false;

		now = fl__now_ns();
		for (unsigned i = 0; i < n; i++)
			pending += cmds[i].result == -EINPROGRESS;
		if (!pending)
			break;
		if (now >= deadline) {
			for (unsigned i = 0; i < n; i++)
				if (cmds[i].result == -EINPROGRESS)
					cmds[i].result = -ETIMEDOUT;
			stat_inc(&rc->st_timeouts, pending);
			fl__log(&rc->opts.log, FL_LOG_WARN, "redis: %u command(s) timed out", pending);
			break;
		}
		/* Group pending commands by node (counting sort keeps their order). */
		memset(groups, 0, sizeof(groups));
		for (unsigned i = 0; i < n; i++) {
			if (cmds[i].result != -EINPROGRESS)
				continue;
			node_of[i] = (unsigned)route(rc, &cmds[i], nn);
			groups[node_of[i]].count++;
		}
		for (unsigned k = 0; k < nn; k++) {
			groups[k].first = pos;
			pos += groups[k].count;
			groups[k].count = 0;
		}
		for (unsigned i = 0; i < n; i++)
			if (cmds[i].result == -EINPROGRESS)
				order[groups[node_of[i]].first + groups[node_of[i]].count++] = i;

		/* Send to every node first (in node order: no deadlock between
		 * threads holding several pools), then read the replies. */
		for (unsigned k = 0; k < nn; k++) {
			struct group *g = &groups[k];
			struct rc_node *nd = node_at(rc, k);
			uint64_t since = atomic_load(&nd->failing_since);
			size_t niov = 0;
			bool fresh = false;
			int r;

			if (!g->count)
				continue;
			/* A node failing for a whole timeout gets a short try. */
			if (since && now - since >= rc->timeout_ns && deadline > now + fast_ns)
				deadline = now + fast_ns;
			for (unsigned j = 0; j < g->count; j++)
				fresh |= cmds[order[g->first + j]].fresh;
			r = conn_acquire(rc, nd, urgent, fresh, deadline, &g->conn);
			if (r) {
				later = true;
				continue;
			}
			for (unsigned j = 0; j < g->count; j++) {
				struct fl__cluster_cmd *c = &cmds[order[g->first + j]];
				if (c->ask_node >= 0)
					iov[niov++] = (struct iovec){ (void *)asking_cmd, sizeof(asking_cmd) - 1 };
				iov[niov++] = (struct iovec){ (void *)c->buf, c->len };
			}
			stat_inc(&rc->st_commands, g->count);
			r = send_all(g->conn->ctx->fd, iov, niov, deadline);
			if (r) {
				stat_inc(&rc->st_io_errors, 1);
				node_failed(rc, nd, "send failed", strerror(-r));
				conn_release(nd, g->conn, true);
				later = true;
				continue;
			}
			g->sent = true;
		}
		for (unsigned k = 0; k < nn; k++) {
			struct group *g = &groups[k];
			struct rc_node *nd = node_at(rc, k);
			int r = 0;

			if (!g->sent)
				continue;
			for (unsigned j = 0; j < g->count && !r; j++) {
				struct fl__cluster_cmd *c = &cmds[order[g->first + j]];
				redisReply *reply = NULL;
				enum outcome o;

				if (c->ask_node >= 0) {
					r = read_reply(g->conn, deadline, NULL, &reply);
					if (r)
						break;
					/* ASKING answers +OK; anything else is out of step. */
					if (reply->type != REDIS_REPLY_STATUS)
						r = -EPROTO;
					freeReplyObject(reply);
					if (r)
						break;
				}
				r = read_reply(g->conn, deadline, c->sink, &reply);
				if (r)
					break;
				o = classify(rc, nd, c, reply);
				later |= o == RETRY_LATER;
			}
			if (r) {
				stat_inc(&rc->st_io_errors, 1);
				node_failed(rc, nd, "reply failed", strerror(-r));
				later = true;
			} else {
				node_answered(rc, nd);
			}
			conn_release(nd, g->conn, r != 0);
		}
		if (atomic_load_explicit(&rc->refresh_wanted, memory_order_relaxed) ||
		    (later && atomic_load_explicit(&rc->cluster, memory_order_relaxed)))
			refresh_map(rc, deadline);
		if (later) {
			sleep_ms(backoff_ms, deadline);
			backoff_ms = FL_MIN(backoff_ms * 2, RC_BACKOFF_MAX_MS);
		}
	}
	for (unsigned i = 0; i < n && !ret; i++)
		ret = cmds[i].result;
	free(order);
	free(node_of);
	free(iov);
	return ret;
}

/* ---- lifetime ---------------------------------------------------------- */

int fl__cluster_new(const struct fl__cluster_opts *opts, struct fl__cluster **ret)
{
	struct fl__cluster *rc;
	uint64_t deadline;
	unsigned backoff_ms = RC_BACKOFF_MIN_MS;
	uint8_t *map;
	int r;

	if (!opts || !opts->host || strlen(opts->host) >= sizeof(rc->seed_host) || !ret)
		return -EINVAL;
	rc = calloc(1, sizeof(*rc));
	map = malloc(FL__CLUSTER_SLOTS);
	if (!rc || !map) {
		free(rc);
		free(map);
		return -ENOMEM;
	}
	rc->opts = *opts;
	snprintf(rc->seed_host, sizeof(rc->seed_host), "%s", opts->host);
	rc->opts.host = rc->seed_host;
	if (!rc->opts.timeout_ms)
		rc->opts.timeout_ms = 5000;
	if (!rc->opts.connections)
		rc->opts.connections = 4;
	rc->timeout_ns = (uint64_t)rc->opts.timeout_ms * NS_PER_MS;
	pthread_mutex_init(&rc->nodes_mu, NULL);
	pthread_mutex_init(&rc->refresh_mu, NULL);
	r = node_find_or_add(rc, rc->seed_host, opts->port);
	if (r < 0)
		goto fail;

	/* Detect a cluster: CLUSTER SLOTS answers with the map, or an error. */
	deadline = fl__now_ns() + rc->timeout_ns;
	for (;;) {
		r = ask_slots(rc, 0, deadline, map);
		if (r == 0 || r == -EPROTONOSUPPORT || r == -EACCES || r == -EPROTO || r == -ENOMEM)
			break;
		if (fl__now_ns() >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		sleep_ms(backoff_ms, deadline);
		backoff_ms = FL_MIN(backoff_ms * 2, RC_BACKOFF_MAX_MS);
	}
	if (r == 0) {
		atomic_store(&rc->cluster, true);
		apply_map(rc, map);
		fl__log(&rc->opts.log, FL_LOG_INFO, "redis %s:%d: cluster of %u node(s)", opts->host,
			opts->port, node_count(rc));
	} else if (r == -EPROTONOSUPPORT && !opts->require_cluster) {
		r = 0;
		fl__log(&rc->opts.log, FL_LOG_INFO, "redis %s:%d: single server", opts->host, opts->port);
	} else if (r == -EPROTONOSUPPORT) {
		fl__log(&rc->opts.log, FL_LOG_ERROR, "redis %s:%d: not a cluster", opts->host, opts->port);
		r = -EPROTO;
	}
	if (r)
		goto fail;
	free(map);
	*ret = rc;
	return 0;
fail:
	free(map);
	fl__cluster_free(rc);
	return r;
}

void fl__cluster_free(struct fl__cluster *rc)
{
	if (!rc)
		return;
	for (unsigned i = 0; i < node_count(rc); i++)
		node_free(node_at(rc, i), rc->opts.connections);
	pthread_mutex_destroy(&rc->nodes_mu);
	pthread_mutex_destroy(&rc->refresh_mu);
	free(rc);
}

int fl__cluster_slot_node(struct fl__cluster *rc, unsigned slot)
{
	unsigned v;

	if (slot >= FL__CLUSTER_SLOTS)
		return -1;
	if (!atomic_load_explicit(&rc->cluster, memory_order_relaxed))
		return 0;
	v = atomic_load_explicit(&rc->slot_node[slot], memory_order_relaxed);
	return v ? (int)v - 1 : -1;
}

bool fl__cluster_is_cluster(const struct fl__cluster *rc)
{
	return atomic_load(&rc->cluster);
}

void fl__cluster_stats(const struct fl__cluster *rc, struct fl_redis_stats *st)
{
	st->commands = atomic_load(&rc->st_commands);
	st->moved = atomic_load(&rc->st_moved);
	st->ask = atomic_load(&rc->st_ask);
	st->tryagain = atomic_load(&rc->st_tryagain);
	st->map_refreshes = atomic_load(&rc->st_refreshes);
	st->connects = atomic_load(&rc->st_connects);
	st->connect_errors = atomic_load(&rc->st_connect_errors);
	st->io_errors = atomic_load(&rc->st_io_errors);
	st->timeouts = atomic_load(&rc->st_timeouts);
	st->nodes = atomic_load(&rc->nnodes);
	st->cluster = atomic_load(&rc->cluster);
}
