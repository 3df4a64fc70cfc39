// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The remote store: a store whose pages come from a page server (server.c)
 * over the wire protocol of proto.h.
 *
 * Connections: one for urgent reads (demand faults, populate) and one for
 * the rest (prefetch, background fill), so a demand fault never queues
 * behind a 2 MiB background run, on the wire or in the server.
 *
 * No receiver thread: the threads that wait for answers take turns reading
 * the connection (one "owner" at a time), and the owner hands each message
 * to the request it answers, writing page bytes straight into that
 * request's buffer. The common case (one faulting thread) therefore costs
 * one wake-up per round trip, not two. The owner is also the one that
 * reconnects when the connection is down.
 *
 * Failing closed: a response is accepted only if its id names a request in
 * flight on this connection, its region and pages are the request's, every
 * kind is valid, the lengths add up and every data page's XXH3-64 matches
 * the checksum the server sent (which the server checked against the
 * image's). Anything else drops the connection; requests in flight go back
 * to the queue and are sent again after a reconnect. A request that keeps
 * getting bad pages fails with -EBADMSG; one that cannot be answered within
 * timeout_ms fails with -ETIMEDOUT. The engine then poisons the page.
 *
 * Writes (FL_REMOTE_WRITABLE) are requests of the same machinery, sent on
 * the bulk connection: a WRITE carries its pages and their checksums and
 * is answered DONE or ERROR; a FLUSH follows the writes on that connection
 * (the server serves a connection in order). A lost connection sends them
 * again after the reconnect: writing the same bytes twice is harmless. A
 * write makes any read-ahead over its pages stale, so it is never used.
 *
 * Lock order: send_mu before mu. The link is replaced only by the owner
 * holding both; it is shut down (never closed) by anyone who sees it fail,
 * so no thread ever uses a closed or reused descriptor.
 */
#include "kernel.h"
#include "proto.h"
#include "store-internal.h"
#include "tls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define DEFAULT_TIMEOUT_MS	5000
#define QUICK_ATTEMPT_MS	1000	/* budget of one attempt after a long outage */
#define BACKOFF_MIN_MS		10
#define BACKOFF_MAX_MS		500
#define MAX_INFLIGHT		32	/* READs in flight per connection (64 MiB) */
#define MAX_BAD			3	/* bad answers to one request before it fails */
#define STACK_REQS		8

enum req_state { REQ_UNSENT, REQ_SENT, REQ_RECEIVING, REQ_DONE };
enum req_op { OP_READ, OP_WRITE, OP_FLUSH };

struct rreq {
	uint32_t id;
	enum req_op op;
	const uint64_t *csums;		/* OP_WRITE: one per page of rd, computed once */
	struct fl__proto_read rd;	/* OP_WRITE: the pages written, from buf */
	uint8_t *buf;
	enum req_state state;
	int result;
	bool all_zero;
	bool sent_before;
	bool sending;			/* picked by the send_mine() in progress */
	unsigned bad;
	uint64_t gen;			/* connection generation it was sent on */
	struct rreq *next;		/* in the connection's pending list */
};

/*
 * Read-ahead for sequential reads (the background filler asks for one 2 MiB
 * run after another; a thread reading in order faults in growing windows):
 * the next run is requested as soon as one is answered, so the server reads
 * and sends it while the engine maps this one. If the next read asks for
 * exactly that run, the request in flight is adopted: retargeted to the
 * caller's buffer if its answer has not started arriving, else copied from
 * ours. On the urgent connection read-ahead is sent without the URGENT
 * flag, so the server serves any real demand fault queued with it first.
 */
#define RA_MAX_BYTES	(4u << 20)
#define RA_MAX_REQS	8

struct readahead {
	pthread_mutex_t mu;		/* taken before the connection's mu */
	bool active;
	bool busy;			/* being adopted (mu not held meanwhile) */
	bool stale;			/* a write overlapped it: never adopted */
	uint64_t offset, last_end;
	size_t len;
	unsigned n;
	struct rreq reqs[RA_MAX_REQS];
	bool copy[RA_MAX_REQS];
	uint8_t *buf;			/* RA_MAX_BYTES, allocated on first use */
};

struct remote;

struct rconn {
	struct remote *rs;
	enum fl__proto_role role;
	pthread_mutex_t mu;		/* everything below but the link's I/O */
	pthread_cond_t cv;
	pthread_mutex_t send_mu;	/* writers of the link, and replacing it */
	struct fl__link link;
	bool up;
	uint64_t gen;
	bool owned;			/* a thread is reading or reconnecting */
	struct rreq *pending;		/* SENT and RECEIVING requests of this gen */
	unsigned inflight;
	bool given_up;			/* a read timed out: until a connect succeeds, one attempt per read */
	uint64_t next_attempt_ns;
	unsigned backoff_ms;
	int last_err;
	bool ever_up;
	struct readahead ra;
	/* the owner's scratch for DATA messages */
	uint8_t rx[FL_PROTO_TRAILER_LEN(FL_PROTO_MAX_PAGES)];
	uint8_t kinds[FL_PROTO_MAX_PAGES];
	uint64_t csums[FL_PROTO_MAX_PAGES];	/* as sent */
	uint64_t got[FL_PROTO_MAX_PAGES];	/* as received */
};

struct remote {
	struct fl__logger log;
	char addr[300];
	char server_name[256];
	bool check_name;
	unsigned region;
	unsigned timeout_ms;
	unsigned nconns;
	struct fl__tls_cfg *tls;
	uint64_t session;
	/* learned from the first HELLO_ACK, checked on every later one */
	uint8_t image_id[FL_IMAGE_ID_LEN];
	uint32_t nregions;
	uint32_t max_pages;
	uint64_t region_length;
	bool want_write;		/* FL_REMOTE_WRITABLE */
	bool can_write;			/* ... and the server granted it */
	_Atomic uint32_t next_id;
	struct rconn conn[2];
	_Atomic uint64_t st_readahead, st_readahead_hits;
	_Atomic uint64_t st_requests, st_urgent, st_bytes, st_connects, st_reconnects, st_resent, st_bad,
		st_timeouts;
};

static uint64_t ms_ns(unsigned ms)
{
	return (uint64_t)ms * 1000000ull;
}

/* ---- connecting ------------------------------------------------------------ */

/*
 * Connect, handshake and check the server's answer. With `known`, the image
 * and region must be those learned before (-ESTALE otherwise).
 */
static int do_connect(struct remote *rs, enum fl__proto_role role, bool known, uint64_t deadline,
		      struct fl__link *ret)
{
	uint8_t hello[FL_PROTO_HDR_SIZE + FL_PROTO_HELLO_SIZE], hb[FL_PROTO_HDR_SIZE];
	struct fl__proto_hello h = { .session = rs->session, .role = role,
				     .features = rs->want_write ? FL_PROTO_FEAT_WRITE : 0 };
	struct fl__proto_hdr hdr;
	struct fl__proto_ack ack;
	struct fl__proto_region reg;
	struct fl__link l;
	uint8_t *payload = NULL;
	const char *why;
	int fd, r, err;

	r = fl__tcp_connect(rs->addr, deadline, &fd);
	if (r)
		return r;
	r = fl__link_open(&l, fd, rs->tls, false, rs->check_name ? rs->server_name : NULL, -1, deadline, &why);
	if (r) {
		if (*why)
			fl__log(&rs->log, FL_LOG_WARN, "%s: TLS handshake failed: %s", rs->addr, why);
		return r;
	}
	if (known)
		memcpy(h.image_id, rs->image_id, sizeof(h.image_id));
	fl__proto_hello_encode(hello, sizeof(hello), &h);
	r = fl__link_write(&l, hello, sizeof(hello), -1, deadline);
	if (!r)
		r = fl__link_read(&l, hb, sizeof(hb), -1, deadline, 0);
	if (!r)
		r = fl__proto_hdr_decode(hb, sizeof(hb), &hdr);
	if (!r && hdr.type != FL_MSG_HELLO_ACK && hdr.type != FL_MSG_ERROR)
		r = -EPROTO;
	if (!r) {
		payload = malloc(hdr.length);
		r = payload ? fl__link_read(&l, payload, hdr.length, -1, deadline, 0) : -ENOMEM;
	}
	if (!r && hdr.type == FL_MSG_ERROR) {
		/* The server refused us: its reason is the error. */
		r = fl__proto_error_decode(&hdr, payload, hdr.length, &err);
		r = r ? r : -err;
		/* A server from before the write extension takes the HELLO's
		 * features for a reserved field and refuses it as malformed. */
		if (r == -EPROTO && rs->want_write) {
			fl__log(&rs->log, FL_LOG_ERROR, "%s: the server does not know the protocol's write "
				"extension (an older faultline): it cannot take writes", rs->addr);
			r = -EOPNOTSUPP;
		}
		goto out;
	}
	if (!r)
		r = fl__proto_ack_decode(&hdr, payload, hdr.length, &ack);
	if (r)
		goto out;
	if (rs->region >= ack.nregions) {
		r = -ENOENT;
		goto out;
	}
	r = fl__proto_ack_region(&ack, rs->region, &reg);
	if (r)
		goto out;
	if (rs->want_write && !(ack.features & FL_PROTO_FEAT_WRITE)) {
		fl__log(&rs->log, FL_LOG_ERROR, "%s: the server does not accept writes (it serves an image, or "
			"was not started writable)", rs->addr);
		r = -EROFS;
		goto out;
	}
	if (known) {
		/* Requests already split by max_pages must still be taken. */
		if (memcmp(ack.image_id, rs->image_id, sizeof(rs->image_id)) || reg.length != rs->region_length ||
		    ack.nregions != rs->nregions || ack.max_pages < rs->max_pages) {
			r = -ESTALE;
			goto out;
		}
	} else {
		memcpy(rs->image_id, ack.image_id, sizeof(rs->image_id));
		rs->can_write = rs->want_write;
		rs->nregions = ack.nregions;
		rs->region_length = reg.length;
		rs->max_pages = ack.max_pages;
	}
out:
	free(payload);
	if (r) {
		fl__link_close(&l);
		return r;
	}
	*ret = l;
	return 0;
}

/* ---- connection state (called with c->mu held) ----------------------------- */

static void conn_fail(struct rconn *c, uint64_t gen, int err)
{
	struct rreq **pp = &c->pending;

	if (c->gen != gen || !c->up)
		return;
	c->up = false;
	c->last_err = err;
	fl__link_shutdown(&c->link);
	c->next_attempt_ns = 0;
	/* In-flight requests go back to the queue; the one being received
	 * is put back by its owner once its read fails. */
	while (*pp) {
		struct rreq *q = *pp;
		if (q->state == REQ_SENT) {
			q->state = REQ_UNSENT;
			*pp = q->next;
			c->inflight--;
		} else {
			pp = &q->next;
		}
	}
	fl__log(&c->rs->log, FL_LOG_WARN, "%s (%s): connection lost: %s", c->rs->addr,
		c->role == FL_ROLE_URGENT ? "urgent" : "bulk", strerror(-err));
	pthread_cond_broadcast(&c->cv);
}

static struct rreq *find_pending(struct rconn *c, uint32_t id)
{
	for (struct rreq *q = c->pending; q; q = q->next)
		if (q->id == id)
			return q;
	return NULL;
}

static void unlink_pending(struct rconn *c, struct rreq *q)
{
	for (struct rreq **pp = &c->pending; *pp; pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			c->inflight--;
			return;
		}
	}
}

static void finish(struct rconn *c, struct rreq *q, int result)
{
	q->state = REQ_DONE;
	q->result = result;
}

/* ---- sending ------------------------------------------------------------------- */

/*
 * Send one WRITE (header and prefix, its pages, the trailer of checksums)
 * or FLUSH. Called with send_mu held, not mu.
 */
static int send_write(struct rconn *c, const struct rreq *q, uint64_t deadline)
{
	uint8_t head[FL_PROTO_HDR_SIZE + FL_PROTO_WRITE_PREFIX];
	uint8_t *trailer;
	size_t tlen;
	int n, r;

	if (q->op == OP_FLUSH) {
		n = fl__proto_flush_encode(head, sizeof(head), q->id);
		return n < 0 ? n : fl__link_write(&c->link, head, (size_t)n, -1, deadline);
	}
	n = fl__proto_write_encode(head, sizeof(head), q->id, &q->rd);
	if (n < 0)
		return n;
	tlen = FL_PROTO_TRAILER_LEN(q->rd.npages);
	trailer = malloc(tlen);
	if (!trailer)
		return -ENOMEM;
	fl__proto_trailer_encode(trailer, tlen, q->csums, q->rd.npages, 0);
	r = fl__link_write(&c->link, head, (size_t)n, -1, deadline);
	if (!r)
		r = fl__link_write(&c->link, q->buf, (size_t)q->rd.npages * FL_PROTO_PAGE_SIZE, -1, deadline);
	if (!r)
		r = fl__link_write(&c->link, trailer, tlen, -1, deadline);
	free(trailer);
	return r;
}

/* Send this caller's queued requests. Called and returns with c->mu held. */
static void send_mine(struct rconn *c, struct rreq *reqs, unsigned n, bool urgent, uint64_t deadline)
{
	struct remote *rs = c->rs;
	uint8_t stackbuf[32 * (FL_PROTO_HDR_SIZE + FL_PROTO_READ_SIZE)];
	uint8_t *buf = stackbuf;
	size_t len = 0, cap = sizeof(stackbuf);
	/* WRITE/FLUSH requests picked, in order, with where they go among the READs. */
	struct rreq *writes[MAX_INFLIGHT];
	size_t write_at[MAX_INFLIGHT];
	unsigned nwrites = 0;
	uint64_t gen = c->gen;
	unsigned marked = 0;
	int r = 0;

	for (unsigned i = 0; i < n && c->inflight < MAX_INFLIGHT; i++) {
		struct rreq *q = &reqs[i];
		if (q->state != REQ_UNSENT)
			continue;
		q->state = REQ_SENT;
		q->sending = true;
		q->gen = gen;
		q->next = c->pending;
		c->pending = q;
		c->inflight++;
		marked++;
	}
	if (!marked)
		return;
	if (marked > 32) {
		cap = (size_t)marked * (FL_PROTO_HDR_SIZE + FL_PROTO_READ_SIZE);
		buf = malloc(cap);
		if (!buf) {
			for (unsigned i = 0; i < n; i++)
				reqs[i].sending = false;
			conn_fail(c, gen, -ENOMEM);
			return;
		}
	}
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_lock(&c->send_mu);
	pthread_mutex_lock(&c->mu);
	/* The connection may have failed (and even come back) meanwhile:
	 * send only what we picked that is still in flight on this
	 * generation (requests sent by an earlier call are not sent twice). */
	for (unsigned i = 0; i < n; i++) {
		struct rreq *q = &reqs[i];
		bool picked = q->sending;

		q->sending = false;
		if (picked && c->up && c->gen == gen && q->state == REQ_SENT && q->gen == gen) {
			if (q->op == OP_READ) {
				len += (size_t)fl__proto_read_encode(buf + len, cap - len, q->id, urgent, &q->rd);
			} else {
				writes[nwrites] = q;
				write_at[nwrites++] = len;
			}
			atomic_fetch_add_explicit(&rs->st_requests, 1, memory_order_relaxed);
			if (urgent)
				atomic_fetch_add_explicit(&rs->st_urgent, 1, memory_order_relaxed);
			if (q->sent_before)
				atomic_fetch_add_explicit(&rs->st_resent, 1, memory_order_relaxed);
			q->sent_before = true;
		}
	}
	pthread_mutex_unlock(&c->mu);
	{
		size_t done = 0;
		/* The caller's requests stay alive while it is here; their
		 * bytes and checksums never change once made. */
		for (unsigned w = 0; w < nwrites && !r; w++) {
			if (write_at[w] > done)
				r = fl__link_write(&c->link, buf + done, write_at[w] - done, -1, deadline);
			done = write_at[w];
			if (!r)
				r = send_write(c, writes[w], deadline);
		}
		if (!r && len > done)
			r = fl__link_write(&c->link, buf + done, len - done, -1, deadline);
	}
	pthread_mutex_unlock(&c->send_mu);
	pthread_mutex_lock(&c->mu);
	if (r)
		conn_fail(c, gen, r == -ETIMEDOUT ? -ETIMEDOUT : r);
	if (buf != stackbuf)
		free(buf);
}

/* ---- receiving (the owner, without c->mu) ------------------------------------ */

static int bad_response(struct rconn *c, const char *why)
{
	atomic_fetch_add_explicit(&c->rs->st_bad, 1, memory_order_relaxed);
	fl__log(&c->rs->log, FL_LOG_WARN, "%s: bad response: %s", c->rs->addr, why);
	return -EPROTO;
}

/*
 * Receive a DATA message for request q (state RECEIVING): the kinds, the
 * data pages straight into q->buf (checksummed as they arrive, while they
 * are in cache), zero pages written as zeros, then the trailer. Returns 0
 * (*ret_status: 0, or the errno the server failed the request with),
 * -EBADMSG (a page fails its checksum), -EPROTO (malformed), or an I/O error.
 */
#define RECV_CHUNK_PAGES 64

static int recv_data(struct rconn *c, struct rreq *q, const struct fl__proto_data *d, uint64_t deadline,
		     int *ret_status)
{
	size_t klen = FL_PROTO_KINDS_LEN(d->npages), tlen = FL_PROTO_TRAILER_LEN(d->ndata);
	uint32_t nd = 0;
	int r;

	r = fl__link_read(&c->link, c->rx, klen, -1, deadline, 0);
	if (r)
		return r;
	if (fl__proto_data_kinds(d, c->rx, klen, c->kinds))
		return bad_response(c, "malformed page kinds");
	for (uint32_t i = 0; i < d->npages;) {
		uint32_t run = 0;
		uint8_t *dst = q->buf + (size_t)i * FL_PROTO_PAGE_SIZE;

		if (c->kinds[i] == FL_PROTO_KIND_ZERO) {
			memset(dst, 0, FL_PROTO_PAGE_SIZE);
			i++;
			continue;
		}
		while (i + run < d->npages && run < RECV_CHUNK_PAGES && c->kinds[i + run] == FL_PROTO_KIND_DATA)
			run++;
		r = fl__link_read(&c->link, dst, (size_t)run * FL_PROTO_PAGE_SIZE, -1, deadline, 0);
		if (r)
			return r;
		for (uint32_t k = 0; k < run; k++)
			c->got[nd++] = fl__proto_page_csum(dst + (size_t)k * FL_PROTO_PAGE_SIZE);
		i += run;
	}
	r = fl__link_read(&c->link, c->rx, tlen, -1, deadline, 0);
	if (r)
		return r;
	if (fl__proto_data_trailer(d, c->rx, tlen, c->csums, ret_status))
		return bad_response(c, "malformed DATA trailer");
	if (*ret_status)
		return 0;
	for (uint32_t i = 0, k = 0; i < d->npages; i++) {
		if (c->kinds[i] != FL_PROTO_KIND_DATA)
			continue;
		if (c->got[k] != c->csums[k]) {
			atomic_fetch_add_explicit(&c->rs->st_bad, 1, memory_order_relaxed);
			fl__log(&c->rs->log, FL_LOG_WARN, "%s: page %llu of region %u fails its checksum",
				c->rs->addr, (unsigned long long)(d->first + i), d->region);
			return -EBADMSG;
		}
		k++;
	}
	q->all_zero = d->ndata == 0;
	atomic_fetch_add_explicit(&c->rs->st_bytes, (uint64_t)d->ndata * FL_PROTO_PAGE_SIZE, memory_order_relaxed);
	return 0;
}

/*
 * Read and dispatch one message. Called with c->mu held and c->owned set;
 * drops the lock for the I/O. Any failure fails the connection.
 */
static void recv_one(struct rconn *c, uint64_t deadline)
{
	uint64_t gen = c->gen;
	uint8_t hb[FL_PROTO_HDR_SIZE], prefix[FL_PROTO_DATA_PREFIX];
	struct fl__proto_hdr h;
	struct fl__proto_data d;
	struct rreq *q;
	int r, err;

	pthread_mutex_unlock(&c->mu);
	r = fl__link_read(&c->link, hb, sizeof(hb), -1, deadline, 0);
	if (!r && fl__proto_hdr_decode(hb, sizeof(hb), &h))
		r = bad_response(c, "malformed header");
	if (r)
		goto fail;
	switch (h.type) {
	case FL_MSG_DATA:
		r = fl__link_read(&c->link, prefix, sizeof(prefix), -1, deadline, 0);
		if (r)
			goto fail;
		if (fl__proto_data_prefix(&h, prefix, sizeof(prefix), &d)) {
			r = bad_response(c, "malformed DATA");
			goto fail;
		}
		pthread_mutex_lock(&c->mu);
		if (c->gen != gen || !c->up) {
			/* Dropped under us (the message was already buffered). */
			pthread_mutex_unlock(&c->mu);
			r = -ECONNRESET;
			goto fail;
		}
		q = find_pending(c, h.id);
		if (!q || q->state != REQ_SENT || q->op != OP_READ) {
			pthread_mutex_unlock(&c->mu);
			r = bad_response(c, "DATA for no request");
			goto fail;
		}
		if (q->rd.region != d.region || q->rd.first != d.first || q->rd.npages != d.npages) {
			/* The wrong pages: ask again elsewhere, but not forever. */
			if (++q->bad >= MAX_BAD) {
				unlink_pending(c, q);
				finish(c, q, -EBADMSG);
			}
			pthread_mutex_unlock(&c->mu);
			r = bad_response(c, "DATA for other pages than asked");
			goto fail;
		}
		q->state = REQ_RECEIVING;
		pthread_mutex_unlock(&c->mu);
		r = recv_data(c, q, &d, deadline, &err);
		pthread_mutex_lock(&c->mu);
		unlink_pending(c, q);
		if (!r) {
			if (err)
				fl__log(&c->rs->log, FL_LOG_WARN, "%s: region %u pages %llu+%u: server says %s",
					c->rs->addr, q->rd.region, (unsigned long long)q->rd.first, q->rd.npages,
					strerror(err));
			finish(c, q, -err);
		} else {
			/* Asked again after the reconnect, unless it keeps failing. */
			if (r == -EBADMSG || r == -EPROTO)
				q->bad++;
			q->state = REQ_UNSENT;
			if (q->bad >= MAX_BAD)
				finish(c, q, -EBADMSG);
			conn_fail(c, gen, r);
		}
		pthread_cond_broadcast(&c->cv);
		return;
	case FL_MSG_ERROR: {
		uint8_t p[FL_PROTO_ERROR_SIZE];
		r = fl__link_read(&c->link, p, sizeof(p), -1, deadline, 0);
		if (!r && fl__proto_error_decode(&h, p, sizeof(p), &err))
			r = bad_response(c, "malformed ERROR");
		if (r)
			goto fail;
		if (!h.id) {
			r = -err;
			goto fail;
		}
		pthread_mutex_lock(&c->mu);
		if (c->gen != gen || !c->up) {
			pthread_mutex_unlock(&c->mu);
			r = -ECONNRESET;
			goto fail;
		}
		q = find_pending(c, h.id);
		if (!q || q->state != REQ_SENT) {
			pthread_mutex_unlock(&c->mu);
			r = bad_response(c, "ERROR for no request");
			goto fail;
		}
		unlink_pending(c, q);
		fl__log(&c->rs->log, FL_LOG_WARN, "%s: region %u pages %llu+%u: server says %s", c->rs->addr,
			q->rd.region, (unsigned long long)q->rd.first, q->rd.npages, strerror(err));
		finish(c, q, -err);
		pthread_cond_broadcast(&c->cv);
		return;
	}
	case FL_MSG_DONE: {
		uint8_t p[FL_PROTO_DONE_SIZE];
		struct fl__proto_read done;
		r = fl__link_read(&c->link, p, sizeof(p), -1, deadline, 0);
		if (!r && fl__proto_done_decode(&h, p, sizeof(p), &done))
			r = bad_response(c, "malformed DONE");
		if (r)
			goto fail;
		pthread_mutex_lock(&c->mu);
		if (c->gen != gen || !c->up) {
			pthread_mutex_unlock(&c->mu);
			r = -ECONNRESET;
			goto fail;
		}
		q = find_pending(c, h.id);
		/* A DONE must name exactly what was written (nothing for a FLUSH). */
		if (!q || q->state != REQ_SENT || q->op == OP_READ ||
		    (q->op == OP_WRITE && (done.region != q->rd.region || done.first != q->rd.first ||
					   done.npages != q->rd.npages)) ||
		    (q->op == OP_FLUSH && done.npages)) {
			pthread_mutex_unlock(&c->mu);
			r = bad_response(c, "DONE for no write");
			goto fail;
		}
		unlink_pending(c, q);
		finish(c, q, 0);
		pthread_cond_broadcast(&c->cv);
		return;
	}
	case FL_MSG_BYE:
		r = -ECONNRESET;
		goto fail;
	default:
		r = bad_response(c, "unexpected message type");
		goto fail;
	}
fail:
	pthread_mutex_lock(&c->mu);
	conn_fail(c, gen, r);
}

/* ---- reconnecting (the owner) ------------------------------------------------- */

/* Called with c->mu held and c->owned set; drops it while connecting. */
static int reconnect(struct rconn *c, uint64_t deadline)
{
	struct remote *rs = c->rs;
	struct fl__link l;
	int r;

	pthread_mutex_unlock(&c->mu);
	r = do_connect(rs, c->role, true, deadline, &l);
	if (!r) {
		pthread_mutex_lock(&c->send_mu);
		pthread_mutex_lock(&c->mu);
		fl__link_close(&c->link);
		c->link = l;
		c->gen++;
		c->up = true;
		c->given_up = false;
		c->backoff_ms = 0;
		pthread_mutex_unlock(&c->send_mu);
		atomic_fetch_add(&rs->st_connects, 1);
		if (c->ever_up) {
			atomic_fetch_add(&rs->st_reconnects, 1);
			fl__log(&rs->log, FL_LOG_INFO, "%s (%s): reconnected", rs->addr,
				c->role == FL_ROLE_URGENT ? "urgent" : "bulk");
		}
		c->ever_up = true;
		return 0;
	}
	pthread_mutex_lock(&c->mu);
	c->last_err = r;
	c->backoff_ms = c->backoff_ms ? FL_MIN(c->backoff_ms * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
	c->next_attempt_ns = fl__now_ns() + ms_ns(c->backoff_ms);
	fl__log(&rs->log, FL_LOG_DEBUG, "%s (%s): connect failed: %s", rs->addr,
		c->role == FL_ROLE_URGENT ? "urgent" : "bulk", strerror(-r));
	return r;
}

/* ---- a batch ------------------------------------------------------------------- */

static void timed_wait(struct rconn *c, uint64_t until)
{
	struct timespec ts = { .tv_sec = (time_t)(until / 1000000000ull), .tv_nsec = (long)(until % 1000000000ull) };
	pthread_cond_timedwait(&c->cv, &c->mu, &ts);
}

/* Give up on the caller's unfinished requests; none stays linked or being received. */
static void abandon(struct rconn *c, struct rreq *reqs, unsigned n, int err)
{
	for (;;) {
		bool receiving = false, in_flight = false;

		for (unsigned i = 0; i < n; i++) {
			receiving |= reqs[i].state == REQ_RECEIVING;
			in_flight |= reqs[i].state == REQ_SENT;
		}
		/* An answer may still come for them: the stream would desync. */
		if (in_flight || receiving)
			conn_fail(c, c->gen, err);
		if (!receiving)
			break;
		timed_wait(c, fl__now_ns() + ms_ns(100));
	}
	for (unsigned i = 0; i < n; i++)
		if (reqs[i].state != REQ_DONE)
			finish(c, &reqs[i], err);
}

static int run_requests(struct rconn *c, struct rreq *reqs, unsigned n, bool urgent)
{
	struct remote *rs = c->rs;
	uint64_t now = fl__now_ns(), deadline = now + ms_ns(rs->timeout_ms);
	bool one_attempt = false;

	pthread_mutex_lock(&c->mu);
	/* An earlier read already waited the whole timeout for this
	 * connection: one attempt, then fail, so a dead server costs one
	 * timeout, not one per page. */
	if (!c->up && c->given_up) {
		one_attempt = true;
		deadline = now + ms_ns(FL_MIN(rs->timeout_ms, QUICK_ATTEMPT_MS));
	}
	for (;;) {
		bool mine_done = true;

		for (unsigned i = 0; i < n; i++)
			mine_done &= reqs[i].state == REQ_DONE;
		if (mine_done)
			break;
		now = fl__now_ns();
		if (now >= deadline) {
			atomic_fetch_add(&rs->st_timeouts, 1);
			fl__log(&rs->log, FL_LOG_ERROR, "%s: no answer within %u ms (%s)", rs->addr, rs->timeout_ms,
				c->last_err ? strerror(-c->last_err) : "no error");
			abandon(c, reqs, n, -ETIMEDOUT);
			c->given_up = true;
			break;
		}
		if (c->up) {
			bool unsent = false;
			for (unsigned i = 0; i < n; i++)
				unsent |= reqs[i].state == REQ_UNSENT;
			if (unsent && c->inflight < MAX_INFLIGHT) {
				send_mine(c, reqs, n, urgent, deadline);
				continue;
			}
		}
		if (!c->owned && c->up && c->pending) {
			c->owned = true;
			recv_one(c, deadline);
			c->owned = false;
			pthread_cond_broadcast(&c->cv);
			continue;
		}
		if (!c->owned && !c->up && (one_attempt || now >= c->next_attempt_ns)) {
			int r;
			c->owned = true;
			r = reconnect(c, deadline);
			c->owned = false;
			pthread_cond_broadcast(&c->cv);
			if (r && (one_attempt || r == -ESTALE || r == -EACCES || r == -EROFS)) {
				/* Another image, credentials or writes refused: waiting will not help. */
				bool final = r == -ESTALE || r == -EACCES || r == -EROFS;
				if (r == -ESTALE || r == -EACCES)
					fl__log(&rs->log, FL_LOG_ERROR, "%s: %s", rs->addr, r == -ESTALE ?
						"the server now serves a different image" : "TLS credentials refused");
				else if (!final)
					atomic_fetch_add(&rs->st_timeouts, 1);
				abandon(c, reqs, n, final ? r : -ETIMEDOUT);
				break;
			}
			if (!r && one_attempt) {
				/* Back after an outage: the read gets its full time. */
				one_attempt = false;
				deadline = fl__now_ns() + ms_ns(rs->timeout_ms);
			}
			continue;
		}
		if (!c->owned && !c->up)
			timed_wait(c, FL_MIN(c->next_attempt_ns, deadline));
		else
			timed_wait(c, deadline);
	}
	pthread_mutex_unlock(&c->mu);
	return 0;
}

/* Requests for [offset, offset+len) into buf, at most max_pages each. */
static unsigned make_reqs(struct remote *rs, uint64_t offset, size_t len, uint8_t *buf, struct rreq *reqs)
{
	uint64_t first = offset / FL_PROTO_PAGE_SIZE, left = len / FL_PROTO_PAGE_SIZE;
	unsigned k = 0;

	while (left) {
		uint32_t np = (uint32_t)FL_MIN(left, (uint64_t)rs->max_pages);
		uint32_t id;
		do
			id = atomic_fetch_add_explicit(&rs->next_id, 1, memory_order_relaxed);
		while (!id);
		reqs[k++] = (struct rreq){
			.id = id, .rd = { .region = rs->region, .npages = np, .first = first }, .buf = buf,
		};
		first += np;
		left -= np;
		buf += (size_t)np * FL_PROTO_PAGE_SIZE;
	}
	return k;
}

static unsigned nchunks(const struct remote *rs, size_t len)
{
	return (unsigned)((len / FL_PROTO_PAGE_SIZE + rs->max_pages - 1) / rs->max_pages);
}

/* Set iov's result and zero flag from its requests. */
static void gather(struct fl_store_iov *iov, const struct rreq *reqs, unsigned n)
{
	bool zero = true;

	for (unsigned k = 0; k < n; k++) {
		if (reqs[k].result && !iov->result)
			iov->result = reqs[k].result;
		zero &= reqs[k].all_zero;
	}
	if (!iov->result && zero && iov->len)
		iov->flags_out |= FL_STORE_OUT_ZERO;
}

/* Called with c->ra.mu held: ask for the run after this one, without waiting. */
static void ra_issue(struct rconn *c, uint64_t offset, size_t len)
{
	struct readahead *ra = &c->ra;
	struct remote *rs = c->rs;
	uint64_t size = rs->region_length;

	if (ra->active || offset >= size)
		return;
	len = (size_t)FL_MIN((uint64_t)len, size - offset);
	if (len > RA_MAX_BYTES || nchunks(rs, len) > RA_MAX_REQS)
		return;
	if (!ra->buf) {
		ra->buf = malloc(RA_MAX_BYTES);
		if (!ra->buf)
			return;
	}
	ra->n = make_reqs(rs, offset, len, ra->buf, ra->reqs);
	ra->stale = false;
	ra->offset = offset;
	ra->len = len;
	ra->active = true;
	atomic_fetch_add_explicit(&rs->st_readahead, 1, memory_order_relaxed);
	pthread_mutex_lock(&c->mu);
	/* Down: the requests stay queued and go out if they are adopted. */
	if (c->up)
		send_mine(c, ra->reqs, ra->n, false, fl__now_ns() + ms_ns(rs->timeout_ms));
	pthread_mutex_unlock(&c->mu);
}

/* Called with c->ra.mu held, the read-ahead active and not busy: forget it if idle. */
static void ra_drop_idle(struct rconn *c)
{
	struct readahead *ra = &c->ra;
	bool idle = true;

	pthread_mutex_lock(&c->mu);
	for (unsigned k = 0; k < ra->n; k++)
		idle &= ra->reqs[k].state != REQ_SENT && ra->reqs[k].state != REQ_RECEIVING;
	pthread_mutex_unlock(&c->mu);
	/* Until then an answer may still land in its buffer. */
	if (idle)
		ra->active = false;
}

/* The read-ahead (marked busy by the caller, ra.mu not held) serves iov. */
static void ra_adopt(struct rconn *c, struct fl_store_iov *iov, bool urgent)
{
	struct readahead *ra = &c->ra;

	pthread_mutex_lock(&c->mu);
	for (unsigned k = 0; k < ra->n; k++) {
		struct rreq *q = &ra->reqs[k];
		ra->copy[k] = q->state == REQ_RECEIVING || q->state == REQ_DONE;
		if (!ra->copy[k])
			q->buf = (uint8_t *)iov->buf + (size_t)(q->rd.first * FL_PROTO_PAGE_SIZE - iov->offset);
	}
	pthread_mutex_unlock(&c->mu);
	run_requests(c, ra->reqs, ra->n, urgent);
	for (unsigned k = 0; k < ra->n; k++) {
		struct rreq *q = &ra->reqs[k];
		if (ra->copy[k] && !q->result)
			memcpy((uint8_t *)iov->buf + (size_t)(q->rd.first * FL_PROTO_PAGE_SIZE - iov->offset), q->buf,
			       (size_t)q->rd.npages * FL_PROTO_PAGE_SIZE);
	}
	gather(iov, ra->reqs, ra->n);
	atomic_fetch_add_explicit(&c->rs->st_readahead_hits, 1, memory_order_relaxed);
}

/*
 * Serve a single read from the connection's read-ahead when it is that run
 * (returns true), and note whether the read continues the last one.
 */
static bool ra_try(struct rconn *c, struct fl_store_iov *iov, bool urgent, bool *ret_sequential)
{
	struct readahead *ra = &c->ra;
	bool hit;

	pthread_mutex_lock(&ra->mu);
	*ret_sequential = iov->offset == ra->last_end;
	ra->last_end = iov->offset + iov->len;
	hit = ra->active && !ra->busy && !ra->stale && ra->offset == iov->offset && ra->len == iov->len;
	if (ra->active && !ra->busy && !hit)
		ra_drop_idle(c);
	if (!hit) {
		pthread_mutex_unlock(&ra->mu);
		return false;
	}
	ra->busy = true;
	pthread_mutex_unlock(&ra->mu);
	ra_adopt(c, iov, urgent);
	pthread_mutex_lock(&ra->mu);
	ra->busy = false;
	ra->active = false;
	if (!iov->result)
		ra_issue(c, iov->offset + iov->len, iov->len);
	pthread_mutex_unlock(&ra->mu);
	return true;
}

static int remote_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct remote *rs = ctx;
	struct rreq stack_reqs[STACK_REQS], *reqs = stack_reqs;
	struct rconn *c;
	unsigned nreq = 0, k = 0;
	bool urgent = false, sequential = false;
	int err = 0;

	for (unsigned i = 0; i < n; i++) {
		if (iov[i].offset % FL_PROTO_PAGE_SIZE || iov[i].len % FL_PROTO_PAGE_SIZE) {
			iov[i].result = -EINVAL;
			continue;
		}
		nreq += nchunks(rs, iov[i].len);
		urgent |= iov[i].flags_in & FL_STORE_IN_URGENT;
	}
	c = &rs->conn[urgent || rs->nconns == 1 ? 0 : 1];
	/* Sequential runs of more than a page: read ahead (not with one
	 * connection for everything: it would hold up demand faults). */
	if (n == 1 && !iov[0].result && iov[0].len > FL_PROTO_PAGE_SIZE && rs->nconns == 2 &&
	    ra_try(c, &iov[0], urgent, &sequential))
		return iov[0].result;
	if (nreq > STACK_REQS) {
		reqs = calloc(nreq, sizeof(*reqs));
		if (!reqs)
			return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++)
		if (!iov[i].result)
			k += make_reqs(rs, iov[i].offset, iov[i].len, iov[i].buf, reqs + k);
	if (k)
		run_requests(c, reqs, k, urgent);
	k = 0;
	for (unsigned i = 0; i < n; i++) {
		unsigned chunks;
		if (iov[i].result) {
			err = err ? err : iov[i].result;
			continue;
		}
		chunks = nchunks(rs, iov[i].len);
		gather(&iov[i], reqs + k, chunks);
		k += chunks;
		if (iov[i].result && !err)
			err = iov[i].result;
	}
	if (reqs != stack_reqs)
		free(reqs);
	if (sequential && !err) {
		pthread_mutex_lock(&c->ra.mu);
		if (!c->ra.busy)
			ra_issue(c, iov[0].offset + iov[0].len, iov[0].len);
		pthread_mutex_unlock(&c->ra.mu);
	}
	return err;
}

/* ---- writing ------------------------------------------------------------------- */

/* Called before a write of [offset, offset+len) is sent: read-ahead of those pages is stale. */
static void ra_invalidate(struct remote *rs, uint64_t offset, size_t len)
{
	for (unsigned i = 0; i < rs->nconns; i++) {
		struct readahead *ra = &rs->conn[i].ra;
		pthread_mutex_lock(&ra->mu);
		if (ra->active && offset < ra->offset + ra->len && ra->offset < offset + len)
			ra->stale = true;
		pthread_mutex_unlock(&ra->mu);
	}
}

static struct rconn *write_conn(struct remote *rs)
{
	return &rs->conn[rs->nconns == 1 ? 0 : 1];
}

static int remote_write(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct remote *rs = ctx;
	struct rreq stack_reqs[STACK_REQS], *reqs = stack_reqs;
	uint64_t *csums = NULL;
	size_t npages = 0, at = 0;
	unsigned nreq = 0, k = 0;
	int err = 0;

	for (unsigned i = 0; i < n; i++) {
		if (!rs->can_write)
			iov[i].result = -EROFS;
		else if (iov[i].offset % FL_PROTO_PAGE_SIZE || iov[i].len % FL_PROTO_PAGE_SIZE)
			iov[i].result = -EINVAL;
		if (iov[i].result)
			continue;
		nreq += nchunks(rs, iov[i].len);
		npages += iov[i].len / FL_PROTO_PAGE_SIZE;
	}
	if (nreq > STACK_REQS)
		reqs = calloc(nreq, sizeof(*reqs));
	if (npages)
		csums = malloc(npages * sizeof(*csums));
	if (!reqs || (npages && !csums)) {
		if (reqs != stack_reqs)
			free(reqs);
		free(csums);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		unsigned made;
		if (iov[i].result)
			continue;
		ra_invalidate(rs, iov[i].offset, iov[i].len);
		made = make_reqs(rs, iov[i].offset, iov[i].len, iov[i].buf, reqs + k);
		for (unsigned j = k; j < k + made; j++) {
			reqs[j].op = OP_WRITE;
			reqs[j].csums = csums + at;
			for (uint32_t p = 0; p < reqs[j].rd.npages; p++)
				csums[at++] = fl__proto_page_csum(reqs[j].buf + (size_t)p * FL_PROTO_PAGE_SIZE);
		}
		k += made;
	}
	if (k)
		run_requests(write_conn(rs), reqs, k, false);
	/* Again: a read-ahead issued while the write was on its way (on the
	 * urgent connection, or on this one before the WRITE went out) may
	 * hold the pages from before it. One issued from now on cannot. */
	for (unsigned i = 0; i < n; i++)
		if (!iov[i].result)
			ra_invalidate(rs, iov[i].offset, iov[i].len);
	k = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!iov[i].result) {
			unsigned chunks = nchunks(rs, iov[i].len);
			for (unsigned j = k; j < k + chunks; j++)
				if (reqs[j].result && !iov[i].result)
					iov[i].result = reqs[j].result;
			k += chunks;
		}
		if (iov[i].result && !err)
			err = iov[i].result;
	}
	if (reqs != stack_reqs)
		free(reqs);
	free(csums);
	return err;
}

static int remote_flush(void *ctx)
{
	struct remote *rs = ctx;
	struct rreq q = { .op = OP_FLUSH };

	if (!rs->can_write)
		return -EROFS;
	do
		q.id = atomic_fetch_add_explicit(&rs->next_id, 1, memory_order_relaxed);
	while (!q.id);
	run_requests(write_conn(rs), &q, 1, false);
	return q.result;
}

/* ---- ctl, lifetime ------------------------------------------------------------- */

static int remote_ctl(void *ctx, int op, void *arg)
{
	struct remote *rs = ctx;

	switch (op) {
	case FL_REMOTE_CTL_STATS: {
		struct fl_remote_stats s = { .sz = sizeof(s) }, *out = arg;
		int r = fl__opts_out_check(out);

		if (r)
			return r;
		memcpy(s.image_id, rs->image_id, sizeof(s.image_id));
		s.page_size = FL_PROTO_PAGE_SIZE;
		s.nregions = rs->nregions;
		s.requests = atomic_load(&rs->st_requests);
		s.requests_urgent = atomic_load(&rs->st_urgent);
		s.bytes_received = atomic_load(&rs->st_bytes);
		s.connects = atomic_load(&rs->st_connects);
		s.reconnects = atomic_load(&rs->st_reconnects);
		s.resent = atomic_load(&rs->st_resent);
		s.bad_responses = atomic_load(&rs->st_bad);
		s.timeouts = atomic_load(&rs->st_timeouts);
		s.readahead = atomic_load(&rs->st_readahead);
		s.readahead_hits = atomic_load(&rs->st_readahead_hits);
		return FL_OPTS_OUT(out, s);
	}
	case FL_STORE_CTL_WRITABLE:
		return rs->can_write;
	case FL_REMOTE_CTL_DROP:
		for (unsigned i = 0; i < rs->nconns; i++) {
			struct rconn *c = &rs->conn[i];
			pthread_mutex_lock(&c->mu);
			conn_fail(c, c->gen, -ECONNRESET);
			pthread_mutex_unlock(&c->mu);
		}
		return 0;
	}
	return -EOPNOTSUPP;
}

static void remote_destroy(void *ctx)
{
	struct remote *rs = ctx;

	for (unsigned i = 0; i < 2; i++) {
		struct rconn *c = &rs->conn[i];
		if (c->link.fd >= 0 && c->up) {
			uint8_t bye[FL_PROTO_HDR_SIZE];
			int n = fl__proto_bye_encode(bye, sizeof(bye));
			fl__link_write(&c->link, bye, (size_t)n, -1, fl__now_ns() + ms_ns(100));
		}
		fl__link_close(&c->link);
		pthread_mutex_destroy(&c->mu);
		pthread_mutex_destroy(&c->send_mu);
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->ra.mu);
		free(c->ra.buf);
	}
	fl__tls_cfg_free(rs->tls);
	free(rs);
}

static const struct fl_store_ops remote_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "remote",
	.read = remote_read,
	.write = remote_write,
	.flush = remote_flush,
	.ctl = remote_ctl,
	.destroy = remote_destroy,
};

static void conn_init(struct remote *rs, struct rconn *c, enum fl__proto_role role)
{
	pthread_condattr_t ca;

	c->rs = rs;
	c->role = role;
	c->link.fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->send_mu, NULL);
	pthread_mutex_init(&c->ra.mu, NULL);
	c->ra.last_end = UINT64_MAX;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
}

int fl_store_remote_new(const struct fl_remote_opts *uopts, struct fl_store **ret_store)
{
	struct fl_remote_opts o;
	struct fl__tls_params tp;
	struct remote *rs;
	char host[256], port[8];
	int r;

	if (!uopts || !ret_store)
		return -EINVAL;
	r = FL_OPTS_COPY(o, uopts);
	if (r)
		return r;
	if (!o.addr || strlen(o.addr) >= sizeof(rs->addr) || o.connections > 2 ||
	    fl__addr_split(o.addr, host, sizeof(host), port, sizeof(port)) || !host[0] || atoi(port) == 0)
		return -EINVAL;
	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	rs->log = (struct fl__logger){ .fn = o.log, .ctx = o.log_ctx, .level = o.log_level };
	snprintf(rs->addr, sizeof(rs->addr), "%s", o.addr);
	rs->region = o.region;
	rs->timeout_ms = o.timeout_ms ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
	rs->nconns = o.connections == 1 ? 1 : 2;
	if (o.flags & ~FL_REMOTE_WRITABLE) {
		free(rs);
		return -EINVAL;
	}
	rs->want_write = o.flags & FL_REMOTE_WRITABLE;
	atomic_init(&rs->next_id, 1);
	conn_init(rs, &rs->conn[0], FL_ROLE_URGENT);
	conn_init(rs, &rs->conn[1], FL_ROLE_BULK);
	if (o.tls == FL_TLS_X509) {
		const char *name = o.server_name ? o.server_name : host;
		rs->check_name = name[0] != '\0';
		snprintf(rs->server_name, sizeof(rs->server_name), "%s", name);
	}
	tp = (struct fl__tls_params){
		.mode = o.tls, .psk_identity = o.psk_identity, .psk_key_hex = o.psk_key_hex,
		.cert_file = o.cert_file, .key_file = o.key_file, .ca_file = o.ca_file,
	};
	r = fl__tls_cfg_new(&tp, false, &rs->tls);
	if (r == -EOPNOTSUPP)
		fl__log(&rs->log, FL_LOG_ERROR, "%s", FL__TLS_DISABLED_WHY);
	if (!r)
		r = fl__random(&rs->session, sizeof(rs->session));
	if (r)
		goto fail;
	/* The first connection tells us what we serve: image, region, size. */
	r = do_connect(rs, FL_ROLE_URGENT, false, fl__now_ns() + ms_ns(rs->timeout_ms), &rs->conn[0].link);
	if (r)
		goto fail;
	rs->conn[0].up = true;
	rs->conn[0].ever_up = true;
	atomic_store(&rs->st_connects, 1);
	r = fl_store_new(&remote_ops, rs, rs->region_length, ret_store);
	if (r)
		goto fail;
	return 0;
fail:
	remote_destroy(rs);
	return r;
}
