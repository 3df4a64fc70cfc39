// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The page server: serves one image's pages to remote stores over the wire
 * protocol of proto.h, optionally over TLS.
 *
 * Threads: fl_server_run() accepts connections; each connection is served
 * by its own thread, so a client's urgent connection never waits behind
 * its (or anyone's) bulk stream. Within a connection, requests that have
 * already arrived are queued and urgent ones are served first; non-urgent
 * DATA is throttled to opts.bulk_rate over the whole server, urgent DATA
 * never is.
 *
 * Every wait polls the stop eventfd too, so fl_server_stop() ends every
 * thread promptly. Clients are counted by the session id of their HELLO
 * (a client holds an urgent and a bulk connection); the client past
 * max_clients gets ERROR EBUSY and is closed.
 *
 * The server trusts nothing it receives: requests are decoded by proto.c,
 * ranges checked against the image, and a malformed message ends the
 * connection with ERROR EPROTO.
 *
 * A server over a store (fl_server_new_store(), far memory) serves it as
 * an image of one region, and with FL_SERVER_WRITABLE takes WRITE and
 * FLUSH from connections that asked for writes in their HELLO. A WRITE is
 * checked whole (range, every page's checksum) before a byte of it reaches
 * the store, and executed in order with the connection's reads: the reads
 * that arrived before it are answered first.
 */
#include "kernel.h"
#include "proto.h"
#include "tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELLO_TIMEOUT_MS	10000	/* TLS handshake + HELLO */
#define MSG_TIMEOUT_MS		30000	/* the rest of a message once its header arrived */
#define SEND_TIMEOUT_MS		60000	/* a client that reads nothing for this long is dropped */
#define MAX_CONNS_PER_CLIENT	8
#define QUEUE_CAP		64	/* requests read ahead per connection */
#define CHUNK_PAGES		64	/* pages read and sent at a time */
#define DEFAULT_MAX_CLIENTS	64

struct srv_session {
	uint64_t id;
	unsigned conns;
	struct srv_session *next;
	/*
	 * Writes: a client resends the WRITEs a lost connection cut off on
	 * its next connection, while the old connection's thread may still
	 * hold one it read and has not applied yet. Applied late, that old
	 * copy would overwrite what the client wrote since. So each
	 * connection granted writes takes the next epoch of its role, and a
	 * WRITE is applied, under wmu, only by the connection of the latest
	 * epoch: the client resends only once its new connection is
	 * attached, so an old copy either lands first or not at all.
	 */
	pthread_mutex_t wmu;
	uint64_t write_epoch[2];	/* by role */
};

struct srv_conn {
	struct fl_server *srv;
	pthread_t tid;
	int fd;
	_Atomic bool done;
	char peer[64];
	struct srv_conn *next;
};

struct fl_server {
	struct fl__logger log;
	struct fl_image *img;		/* the image served, or NULL ... */
	struct fl_store *store;		/* ... the store served as region 0 */
	bool writable;			/* FL_SERVER_WRITABLE over a writable store */
	uint8_t *ack_write;		/* the ack granting writes (ack with FEAT_WRITE) */
	unsigned max_clients;
	uint64_t bulk_rate;
	struct fl__tls_cfg *tls;
	int lfd, port, stop_fd, reap_fd;
	_Atomic bool ran;
	uint8_t image_id[FL_IMAGE_ID_LEN];
	uint32_t nregions;
	uint64_t *region_pages;
	uint8_t *ack;
	size_t ack_len;

	pthread_mutex_t mu;		/* sessions, conns */
	struct srv_session *sessions;
	unsigned nsessions;
	struct srv_conn *conns;
	unsigned nconns;

	pthread_mutex_t rate_mu;
	uint64_t rate_next_ns;		/* when the bulk stream may send next */

	_Atomic uint64_t st_connections, st_refused, st_requests, st_urgent, st_pages_data,
		st_pages_zero, st_bytes, st_errors, st_pages_written, st_flushes;
};

struct queued {
	uint32_t id;
	bool urgent;
	struct fl__proto_read rd;
};

/* Per-connection state of the serving thread. */
struct conn_ctx {
	struct fl_server *srv;
	struct srv_conn *c;
	struct fl__link link;
	uint8_t *buf;			/* one outgoing message: header + DATA payload */
	struct queued q[QUEUE_CAP];
	unsigned nq;
	uint8_t kinds[FL_PROTO_MAX_PAGES];
	uint64_t csums[FL_PROTO_MAX_PAGES];
	bool can_write;			/* asked in its HELLO and granted */
	struct srv_session *session;	/* this client's (alive while the connection is) */
	uint32_t role;
	uint64_t write_epoch;		/* this connection's, when can_write */
	uint8_t *stage;			/* FL_PROTO_WRITE_MAX: a WRITE's payload, a store read; on first use */
};

static uint64_t after_ms(unsigned ms)
{
	return fl__now_ns() + (uint64_t)ms * 1000000ull;
}

static void peer_name(int fd, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
			port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
			port = ntohs(a->sin6_port);
		}
	}
	snprintf(out, len, "%s:%u", host, port);
}

static int send_error(struct conn_ctx *x, uint32_t id, int err)
{
	uint8_t m[FL_PROTO_HDR_SIZE + FL_PROTO_ERROR_SIZE];
	int n = fl__proto_error_encode(m, sizeof(m), id, err);
	return fl__link_write(&x->link, m, (size_t)n, x->srv->stop_fd, after_ms(SEND_TIMEOUT_MS));
}

static int stage_alloc(struct conn_ctx *x)
{
	if (!x->stage)
		x->stage = malloc(FL_PROTO_WRITE_MAX);
	return x->stage ? 0 : -ENOMEM;
}

/*
 * Read one message: header (waiting up to header_deadline), then its
 * payload into buf. A WRITE's payload (the only long message a client
 * sends; its length was bounded by the header's decoder) is left on the
 * wire for read_write_payload(): the reads queued before it are answered
 * first, and a store-backed server stages their pages in x->stage.
 */
static int read_msg(struct conn_ctx *x, uint64_t header_deadline, struct fl__proto_hdr *h, uint8_t *payload,
		    size_t cap)
{
	uint8_t hb[FL_PROTO_HDR_SIZE];
	int r;

	r = fl__link_read(&x->link, hb, sizeof(hb), x->srv->stop_fd, header_deadline, 0);
	if (r)
		return r;
	r = fl__proto_hdr_decode(hb, sizeof(hb), h);
	if (r)
		return r;
	if (h->type == FL_MSG_WRITE)
		return 0;
	/* Clients send HELLO, READ, BYE, ERROR, FLUSH: none longer than this. */
	if (h->length > cap)
		return -EPROTO;
	return fl__link_read(&x->link, payload, h->length, x->srv->stop_fd, after_ms(MSG_TIMEOUT_MS), 0);
}

/* The payload of the WRITE whose header read_msg() returned, into x->stage. */
static int read_write_payload(struct conn_ctx *x, const struct fl__proto_hdr *h)
{
	int r = stage_alloc(x);

	if (r)
		return r;
	if (h->length > FL_PROTO_WRITE_MAX)
		return -EPROTO;
	return fl__link_read(&x->link, x->stage, h->length, x->srv->stop_fd, after_ms(MSG_TIMEOUT_MS), 0);
}

/* ---- sessions (clients) ------------------------------------------------- */

static int session_attach(struct fl_server *srv, uint64_t id, struct srv_session **ret)
{
	struct srv_session *s;
	int r = 0;

	pthread_mutex_lock(&srv->mu);
	for (s = srv->sessions; s && s->id != id; s = s->next)
		;
	if (s) {
		if (s->conns >= MAX_CONNS_PER_CLIENT)
			r = -EBUSY;
		else
			s->conns++;
	} else if (srv->nsessions >= srv->max_clients) {
		r = -EBUSY;
	} else {
		s = calloc(1, sizeof(*s));
		if (!s) {
			r = -ENOMEM;
		} else {
			s->id = id;
			s->conns = 1;
			pthread_mutex_init(&s->wmu, NULL);
			s->next = srv->sessions;
			srv->sessions = s;
			srv->nsessions++;
		}
	}
	if (!r)
		*ret = s;
	pthread_mutex_unlock(&srv->mu);
	return r;
}

static void session_detach(struct fl_server *srv, uint64_t id)
{
	pthread_mutex_lock(&srv->mu);
	for (struct srv_session **pp = &srv->sessions; *pp; pp = &(*pp)->next) {
		struct srv_session *s = *pp;
		if (s->id != id)
			continue;
		if (--s->conns == 0) {
			*pp = s->next;
			pthread_mutex_destroy(&s->wmu);
			free(s);
			srv->nsessions--;
		}
		break;
	}
	pthread_mutex_unlock(&srv->mu);
}

/* ---- serving reads -------------------------------------------------------- */

/* Hold a non-urgent reply of `bytes` until the bulk rate allows it. */
static int throttle(struct fl_server *srv, size_t bytes)
{
	uint64_t now, start;

	if (!srv->bulk_rate)
		return 0;
	pthread_mutex_lock(&srv->rate_mu);
	now = fl__now_ns();
	start = FL_MAX(now, srv->rate_next_ns);
	srv->rate_next_ns = start + (uint64_t)((double)bytes * 1e9 / (double)srv->bulk_rate);
	pthread_mutex_unlock(&srv->rate_mu);
	return start > now ? fl__sleep_until(start, srv->stop_fd) : 0;
}

/*
 * The DATA header and kinds of a READ's answer into x->buf (*ret_total:
 * the whole message's length), after the background rate limit for a
 * request that is not urgent: the header's length, or -errno.
 */
static int data_head(struct conn_ctx *x, const struct queued *q, const struct fl__proto_read *rd, size_t *ret_total)
{
	int r = fl__proto_data_encode(x->buf, FL_PROTO_HDR_SIZE + FL_PROTO_DATA_MAX, q->id, rd, x->kinds, ret_total);

	if (r < 0 || q->urgent)
		return r;
	return throttle(x->srv, *ret_total) ?: r;
}

/*
 * Answer a READ (in range) from the store: read the run whole into the
 * stage, send pages of zeros as zero pages and the rest as data. A store
 * error fails the request (ERROR), never sends zeros for it.
 */
static int serve_store_read(struct conn_ctx *x, const struct queued *q)
{
	struct fl_server *srv = x->srv;
	const struct fl__proto_read *rd = &q->rd;
	struct fl_store_iov iov;
	size_t total, at, ndata = 0;
	int r;

	r = stage_alloc(x);
	if (r)
		return r;
	iov = (struct fl_store_iov){ .offset = rd->first * FL_PROTO_PAGE_SIZE, .buf = x->stage,
				     .len = (size_t)rd->npages * FL_PROTO_PAGE_SIZE,
				     .flags_in = q->urgent ? FL_STORE_IN_URGENT : 0 };
	r = fl_store_read(srv->store, &iov, 1);
	if (r) {
		atomic_fetch_add_explicit(&srv->st_errors, 1, memory_order_relaxed);
		fl__log(&srv->log, FL_LOG_ERROR, "%s: store read, pages %llu+%u: %s", x->c->peer,
			(unsigned long long)rd->first, rd->npages, strerror(-r));
		return send_error(x, q->id, r);
	}
	for (uint32_t i = 0; i < rd->npages; i++) {
		const uint8_t *pg = x->stage + (size_t)i * FL_PROTO_PAGE_SIZE;
		bool zero = iov.flags_out & FL_STORE_OUT_ZERO;
		if (!zero)
			zero = pg[0] == 0 && !memcmp(pg, pg + 1, FL_PROTO_PAGE_SIZE - 1);
		x->kinds[i] = zero ? FL_PROTO_KIND_ZERO : FL_PROTO_KIND_DATA;
	}
	r = data_head(x, q, rd, &total);
	if (r < 0)
		return r;
	at = (size_t)r;
	for (uint32_t i = 0; i < rd->npages; i++) {
		if (x->kinds[i] != FL_PROTO_KIND_DATA)
			continue;
		memcpy(x->buf + at, x->stage + (size_t)i * FL_PROTO_PAGE_SIZE, FL_PROTO_PAGE_SIZE);
		x->csums[ndata++] = fl__proto_page_csum(x->buf + at);
		at += FL_PROTO_PAGE_SIZE;
	}
	r = fl__proto_trailer_encode(x->buf + at, FL_PROTO_HDR_SIZE + FL_PROTO_DATA_MAX - at, x->csums,
				     (uint32_t)ndata, 0);
	if (r < 0)
		return r;
	at += (size_t)r;
	r = fl__link_write(&x->link, x->buf, at, srv->stop_fd, after_ms(SEND_TIMEOUT_MS));
	if (r)
		return r;
	atomic_fetch_add_explicit(&srv->st_pages_data, ndata, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv->st_pages_zero, rd->npages - ndata, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv->st_bytes, total - FL_PROTO_HDR_SIZE, memory_order_relaxed);
	return 0;
}

/*
 * Answer one READ: DATA with every page's kind, the data pages' bytes and
 * their checksums, or ERROR for the request (bad range, a page absent from
 * the whole chain). The bytes are streamed in chunks as they are read, so
 * the client receives one chunk while the next is read and checksummed. A
 * page found corrupt mid-stream voids the DATA (trailer status EBADMSG).
 * Returns 0, or -errno when the connection is lost.
 */
static int serve_read(struct conn_ctx *x, const struct queued *q)
{
	struct fl_server *srv = x->srv;
	const struct fl__proto_read *rd = &q->rd;
	size_t total, at, sent = 0, ndata = 0;
	int r, err = 0, status = 0;

	atomic_fetch_add_explicit(&srv->st_requests, 1, memory_order_relaxed);
	if (q->urgent)
		atomic_fetch_add_explicit(&srv->st_urgent, 1, memory_order_relaxed);
	if (rd->region >= srv->nregions || rd->first > srv->region_pages[rd->region] ||
	    rd->npages > srv->region_pages[rd->region] - rd->first) {
		err = -ERANGE;
		goto error;
	}
	if (srv->store)
		return serve_store_read(x, q);
	for (uint32_t i = 0; i < rd->npages; i++) {
		int k = fl_image_page_kind(srv->img, rd->region, rd->first + i);
		if (k < 0) {
			err = k;
			goto error;
		}
		if (k == FL_PAGE_ABSENT) {
			err = -ENOENT;
			goto error;
		}
		x->kinds[i] = k == FL_PAGE_ZERO ? FL_PROTO_KIND_ZERO : FL_PROTO_KIND_DATA;
	}
	r = data_head(x, q, rd, &total);
	if (r < 0)
		return r;
	at = (size_t)r;
	/* Runs of data pages, in chunks: read, checksum, send. */
	for (uint32_t i = 0; i < rd->npages;) {
		uint32_t run = 0;
		uint64_t bad = 0;

		if (x->kinds[i] != FL_PROTO_KIND_DATA) {
			i++;
			continue;
		}
		while (i + run < rd->npages && run < CHUNK_PAGES && x->kinds[i + run] == FL_PROTO_KIND_DATA)
			run++;
		if (!status) {
			/* fl_image_read verifies each page against the image's checksum. */
			status = fl_image_read(srv->img, rd->region, rd->first + i, run, x->buf + at, &bad);
			if (status)
				fl__log(&srv->log, FL_LOG_ERROR, "%s: region %u page %llu: %s", x->c->peer, rd->region,
					(unsigned long long)(status == -EBADMSG ? bad : rd->first + i),
					strerror(-status));
		}
		if (status) {
			/* The promised bytes still go out; the trailer voids them. */
			memset(x->buf + at, 0, (size_t)run * FL_PROTO_PAGE_SIZE);
		} else {
			for (uint32_t k = 0; k < run; k++)
				x->csums[ndata + k] = fl__proto_page_csum(x->buf + at + (size_t)k * FL_PROTO_PAGE_SIZE);
		}
		at += (size_t)run * FL_PROTO_PAGE_SIZE;
		ndata += run;
		i += run;
		r = fl__link_write(&x->link, x->buf + sent, at - sent, srv->stop_fd, after_ms(SEND_TIMEOUT_MS));
		if (r)
			return r;
		sent = at;
	}
	if (status)
		memset(x->csums, 0, ndata * sizeof(x->csums[0]));
	r = fl__proto_trailer_encode(x->buf + at, FL_PROTO_HDR_SIZE + FL_PROTO_DATA_MAX - at, x->csums,
				     (uint32_t)ndata, status);
	if (r < 0)
		return r;
	at += (size_t)r;
	r = fl__link_write(&x->link, x->buf + sent, at - sent, srv->stop_fd, after_ms(SEND_TIMEOUT_MS));
	if (r)
		return r;
	if (status) {
		atomic_fetch_add_explicit(&srv->st_errors, 1, memory_order_relaxed);
		return 0;
	}
	atomic_fetch_add_explicit(&srv->st_pages_data, ndata, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv->st_pages_zero, rd->npages - ndata, memory_order_relaxed);
	atomic_fetch_add_explicit(&srv->st_bytes, total - FL_PROTO_HDR_SIZE, memory_order_relaxed);
	return 0;
error:
	atomic_fetch_add_explicit(&srv->st_errors, 1, memory_order_relaxed);
	fl__log(&srv->log, FL_LOG_DEBUG, "%s: READ %u (region %u, pages %llu+%u): %s", x->c->peer, q->id,
		rd->region, (unsigned long long)rd->first, rd->npages, strerror(-err));
	return send_error(x, q->id, err);
}

static int serve_read(struct conn_ctx *x, const struct queued *q);


/* Take the next queued READ off the queue (x->nq > 0): the first urgent
 * one, else the oldest. */
static struct queued dequeue(struct conn_ctx *x)
{
	unsigned pick = 0;
	struct queued q;

	for (unsigned i = 0; i < x->nq; i++) {
		if (x->q[i].urgent) {
			pick = i;
			break;
		}
	}
	q = x->q[pick];
	memmove(&x->q[pick], &x->q[pick + 1], (x->nq - pick - 1) * sizeof(x->q[0]));
	x->nq--;
	return q;
}

/* Answer every queued READ, urgent ones first. */
static int drain(struct conn_ctx *x)
{
	while (x->nq) {
		struct queued q;
		int r;

		q = dequeue(x);
		r = serve_read(x, &q);
		if (r)
			return r;
	}
	return 0;
}

static int send_done(struct conn_ctx *x, uint32_t id, const struct fl__proto_read *m)
{
	uint8_t b[FL_PROTO_HDR_SIZE + FL_PROTO_DONE_SIZE];
	int n = fl__proto_done_encode(b, sizeof(b), id, m);
	return n < 0 ? n : fl__link_write(&x->link, b, (size_t)n, x->srv->stop_fd, after_ms(SEND_TIMEOUT_MS));
}

/*
 * A WRITE whose payload is in x->stage (read_write_payload()). A malformed one (-EPROTO) ends
 * the connection: its framing cannot be trusted. A well-formed one that
 * may not be written (not granted, out of range, a checksum mismatch) is
 * refused with ERROR for its id, before anything is written, and the
 * connection goes on. Returns 0, or -errno to close the connection.
 */
static int serve_write(struct conn_ctx *x, const struct fl__proto_hdr *h)
{
	struct fl_server *srv = x->srv;
	struct fl__proto_read w;
	struct fl_store_iov iov;
	const uint8_t *pages;
	int err = 0, r;

	r = fl__proto_write_decode(h, x->stage, h->length, &w, &pages, x->csums);
	if (r)
		return r;
	atomic_fetch_add_explicit(&srv->st_requests, 1, memory_order_relaxed);
	if (!x->can_write) {
		err = -EROFS;
	} else if (w.region >= srv->nregions || w.first > srv->region_pages[w.region] ||
		   w.npages > srv->region_pages[w.region] - w.first) {
		err = -ERANGE;
	} else {
		for (uint32_t i = 0; i < w.npages && !err; i++)
			if (fl__proto_page_csum(pages + (size_t)i * FL_PROTO_PAGE_SIZE) != x->csums[i])
				err = -EBADMSG;
	}
	if (!err) {
		bool superseded;

		iov = (struct fl_store_iov){ .offset = w.first * FL_PROTO_PAGE_SIZE, .buf = (void *)pages,
					     .len = (size_t)w.npages * FL_PROTO_PAGE_SIZE };
		pthread_mutex_lock(&x->session->wmu);
		superseded = x->write_epoch != x->session->write_epoch[x->role];
		if (!superseded)
			err = fl_store_write(srv->store, &iov, 1);
		pthread_mutex_unlock(&x->session->wmu);
		if (superseded) {
			/* The client has moved on to a newer connection and will
			 * send this again there, if it still wants it. */
			fl__log(&srv->log, FL_LOG_INFO, "%s: WRITE %u dropped: the client reconnected", x->c->peer,
				h->id);
			return -ECONNRESET;
		}
	}
	if (err) {
		atomic_fetch_add_explicit(&srv->st_errors, 1, memory_order_relaxed);
		fl__log(&srv->log, err == -EROFS || err == -ERANGE || err == -EBADMSG ? FL_LOG_WARN : FL_LOG_ERROR,
			"%s: WRITE %u (region %u, pages %llu+%u): %s", x->c->peer, h->id, w.region,
			(unsigned long long)w.first, w.npages, strerror(-err));
		return send_error(x, h->id, err);
	}
	atomic_fetch_add_explicit(&srv->st_pages_written, w.npages, memory_order_relaxed);
	return send_done(x, h->id, &w);
}

static int serve_flush(struct conn_ctx *x, const struct fl__proto_hdr *h)
{
	struct fl_server *srv = x->srv;
	int err = x->can_write ? fl_store_flush(srv->store) : -EROFS;

	if (err) {
		atomic_fetch_add_explicit(&srv->st_errors, 1, memory_order_relaxed);
		fl__log(&srv->log, FL_LOG_ERROR, "%s: FLUSH %u: %s", x->c->peer, h->id, strerror(-err));
		return send_error(x, h->id, err);
	}
	atomic_fetch_add_explicit(&srv->st_flushes, 1, memory_order_relaxed);
	return send_done(x, h->id, NULL);
}

/*
 * Read requests: wait for the first one when the queue is empty, then take
 * whatever else has already arrived (so an urgent request queued behind
 * bulk ones is seen before they are served). Returns 0, 1 on BYE, or -errno.
 */
static int fill_queue(struct conn_ctx *x)
{
	uint8_t payload[FL_PROTO_HELLO_SIZE];

	while (x->nq < QUEUE_CAP && (x->nq == 0 || fl__link_readable(&x->link))) {
		struct fl__proto_hdr h;
		struct queued *q = &x->q[x->nq];
		int r = read_msg(x, 0, &h, payload, sizeof(payload));

		if (r == -EPROTO || r == -EMSGSIZE || r == -EPROTONOSUPPORT) {
			send_error(x, 0, r);
			return r;
		}
		if (r)
			return r;
		switch (h.type) {
		case FL_MSG_READ:
			r = fl__proto_read_decode(&h, payload, h.length, &q->rd);
			if (r) {
				send_error(x, 0, r);
				return r;
			}
			q->id = h.id;
			q->urgent = h.flags & FL_MSG_F_URGENT;
			x->nq++;
			break;
		case FL_MSG_WRITE:
		case FL_MSG_FLUSH:
			/* In order: what was asked before it is answered first
			 * (and x->stage is free again for the WRITE's payload). */
			r = drain(x);
			if (!r && h.type == FL_MSG_WRITE)
				r = read_write_payload(x, &h);
			if (!r)
				r = h.type == FL_MSG_WRITE ? serve_write(x, &h) : serve_flush(x, &h);
			if (r == -EPROTO)
				send_error(x, 0, r);
			if (r)
				return r;
			break;
		case FL_MSG_BYE:
			return 1;
		default:
			/* HELLO twice, or a server's message from a client. */
			send_error(x, 0, -EPROTO);
			return -EPROTO;
		}
	}
	return 0;
}

static void serve(struct conn_ctx *x)
{
	for (;;) {
		struct queued q;
		int r = fill_queue(x);

		if (r) {
			if (r < 0 && r != -ECANCELED && r != -ECONNRESET)
				fl__log(&x->srv->log, FL_LOG_INFO, "%s: closing: %s", x->c->peer, strerror(-r));
			return;
		}
		q = dequeue(x);
		r = serve_read(x, &q);
		if (r) {
			if (r != -ECANCELED && r != -ECONNRESET)
				fl__log(&x->srv->log, FL_LOG_INFO, "%s: closing: %s", x->c->peer, strerror(-r));
			return;
		}
	}
}

static void *conn_main(void *arg)
{
	struct srv_conn *c = arg;
	struct fl_server *srv = c->srv;
	struct conn_ctx *x;
	struct fl__proto_hdr h;
	struct fl__proto_hello hello;
	uint8_t payload[FL_PROTO_HELLO_SIZE];
	static const uint8_t any_id[FL_IMAGE_ID_LEN];
	const char *why;
	bool attached = false;
	int r;

	x = calloc(1, sizeof(*x));
	if (!x) {
		fl__log(&srv->log, FL_LOG_ERROR, "%s: out of memory", c->peer);
		fl__close(c->fd);
		goto out;
	}
	x->srv = srv;
	x->c = c;
	r = fl__link_open(&x->link, c->fd, srv->tls, true, NULL, srv->stop_fd, after_ms(HELLO_TIMEOUT_MS), &why);
	if (r) {
		if (r != -ECANCELED) {
			atomic_fetch_add(&srv->st_refused, 1);
			fl__log(&srv->log, FL_LOG_WARN, "%s: TLS handshake failed: %s%s%s", c->peer, strerror(-r),
				*why ? ": " : "", why);
		}
		goto out;
	}
	r = read_msg(x, after_ms(HELLO_TIMEOUT_MS), &h, payload, sizeof(payload));
	if (!r && h.type != FL_MSG_HELLO)
		r = -EPROTO;
	if (!r)
		r = fl__proto_hello_decode(&h, payload, h.length, &hello);
	if (!r && memcmp(hello.image_id, any_id, sizeof(any_id)) &&
	    memcmp(hello.image_id, srv->image_id, sizeof(srv->image_id)))
		r = -ESTALE;
	if (!r) {
		r = session_attach(srv, hello.session, &x->session);
		attached = !r;
	}
	/* The 2 MiB answer buffer only for clients that got this far. */
	if (!r) {
		x->buf = malloc(FL_PROTO_HDR_SIZE + FL_PROTO_DATA_MAX);
		r = x->buf ? 0 : -ENOMEM;
	}
	if (r) {
		if (r != -ECANCELED) {
			atomic_fetch_add(&srv->st_refused, 1);
			fl__log(&srv->log, r == -EBUSY ? FL_LOG_WARN : FL_LOG_INFO, "%s: refused: %s", c->peer,
				r == -EBUSY ? "client limit reached" : strerror(-r));
			if (r != -ECONNRESET && r != -ETIMEDOUT)
				send_error(x, 0, r);
		}
		goto close;
	}
	/* Writes only for a client that asked: one that did not never sees
	 * a features field it may not know. */
	x->can_write = srv->writable && (hello.features & FL_PROTO_FEAT_WRITE);
	x->role = hello.role;
	if (x->can_write) {
		pthread_mutex_lock(&x->session->wmu);
		x->write_epoch = ++x->session->write_epoch[x->role];
		pthread_mutex_unlock(&x->session->wmu);
	}
	r = fl__link_write(&x->link, x->can_write ? srv->ack_write : srv->ack, srv->ack_len, srv->stop_fd,
			   after_ms(SEND_TIMEOUT_MS));
	if (r)
		goto close;
	fl__log(&srv->log, FL_LOG_INFO, "%s: client %016llx connected (%s%s)", c->peer,
		(unsigned long long)hello.session, hello.role == FL_ROLE_URGENT ? "urgent" : "bulk",
		x->link.tls ? ", TLS" : "");
	serve(x);
	fl__log(&srv->log, FL_LOG_INFO, "%s: client %016llx disconnected", c->peer,
		(unsigned long long)hello.session);
close:
	if (attached)
		session_detach(srv, hello.session);
	fl__link_close(&x->link);
out:
	if (x) {
		free(x->buf);
		free(x->stage);
	}
	free(x);
	atomic_store(&c->done, true);
	fl__eventfd_signal(srv->reap_fd);
	return NULL;
}

/* ---- the accept loop ---------------------------------------------------------- */

static void reap(struct fl_server *srv, bool all)
{
	struct srv_conn **pp = &srv->conns;

	while (*pp) {
		struct srv_conn *c = *pp;
		if (all || atomic_load(&c->done)) {
			pthread_join(c->tid, NULL);
			*pp = c->next;
			free(c);
			pthread_mutex_lock(&srv->mu);
			srv->nconns--;
			pthread_mutex_unlock(&srv->mu);
		} else {
			pp = &c->next;
		}
	}
}

static void accept_all(struct fl_server *srv)
{
	/* Clients in their handshake count too: bound the threads a flood can start. */
	unsigned hard_cap = srv->max_clients * 4 + 16;

	for (;;) {
		struct srv_conn *c;
		int fd, r = fl__tcp_accept(srv->lfd, &fd);

		if (r == -EAGAIN || r == -ECONNABORTED || r == -EINTR)
			return;
		if (r) {
			/* Out of descriptors: back off instead of spinning. */
			fl__log(&srv->log, FL_LOG_ERROR, "accept: %s", strerror(-r));
			fl__sleep_until(after_ms(100), srv->stop_fd);
			return;
		}
		atomic_fetch_add(&srv->st_connections, 1);
		c = calloc(1, sizeof(*c));
		if (!c || srv->nconns >= hard_cap) {
			atomic_fetch_add(&srv->st_refused, 1);
			fl__log(&srv->log, FL_LOG_WARN, "refusing a connection: %s",
				c ? "too many connections" : "out of memory");
			free(c);
			fl__close(fd);
			continue;
		}
		c->srv = srv;
		c->fd = fd;
		peer_name(fd, c->peer, sizeof(c->peer));
		r = pthread_create(&c->tid, NULL, conn_main, c);
		if (r) {
			atomic_fetch_add(&srv->st_refused, 1);
			fl__log(&srv->log, FL_LOG_ERROR, "%s: cannot start a thread: %s", c->peer, strerror(r));
			fl__close(fd);
			free(c);
			continue;
		}
		pthread_mutex_lock(&srv->mu);
		srv->nconns++;
		pthread_mutex_unlock(&srv->mu);
		c->next = srv->conns;
		srv->conns = c;
	}
}

int fl_server_run(struct fl_server *srv)
{
	int r = 0;

	if (!srv)
		return -EINVAL;
	if (atomic_exchange(&srv->ran, true))
		return -EALREADY;
	fl__log(&srv->log, FL_LOG_INFO, "serving %u region(s) on port %d%s", srv->nregions, srv->port,
		srv->writable ? ", writable" : "");
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = srv->stop_fd, .events = POLLIN },
			{ .fd = srv->lfd, .events = POLLIN },
			{ .fd = srv->reap_fd, .events = POLLIN },
		};
		r = fl__poll(p, 3, -1);
		if (r == -EINTR)
			continue;
		if (r < 0)
			break;
		r = 0;
		if (p[0].revents)
			break;
		if (p[2].revents) {
			uint64_t v;
			if (read(srv->reap_fd, &v, sizeof(v)) < 0)
				(void)0;
			reap(srv, false);
		}
		if (p[1].revents & (POLLERR | POLLNVAL)) {
			r = -EIO;
			break;
		}
		if (p[1].revents)
			accept_all(srv);
	}
	/* The stop fd stays readable: every connection thread sees it. */
	fl__eventfd_signal(srv->stop_fd);
	reap(srv, true);
	fl__log(&srv->log, FL_LOG_INFO, "stopped");
	return r;
}

int fl_server_stop(struct fl_server *srv)
{
	if (!srv)
		return -EINVAL;
	return fl__eventfd_signal(srv->stop_fd);
}

int fl_server_port(const struct fl_server *srv)
{
	return srv ? srv->port : -EINVAL;
}

int fl_server_stats(const struct fl_server *srv, struct fl_server_stats *st)
{
	struct fl_server_stats s = { .sz = sizeof(s) };
	struct fl_server *m = (struct fl_server *)srv;
	int r;

	if (!srv)
		return -EINVAL;
	r = fl__opts_out_check(st);
	if (r)
		return r;
	s.connections = atomic_load(&srv->st_connections);
	s.refused = atomic_load(&srv->st_refused);
	pthread_mutex_lock(&m->mu);
	s.clients = srv->nsessions;
	pthread_mutex_unlock(&m->mu);
	s.requests = atomic_load(&srv->st_requests);
	s.requests_urgent = atomic_load(&srv->st_urgent);
	s.pages_data = atomic_load(&srv->st_pages_data);
	s.pages_zero = atomic_load(&srv->st_pages_zero);
	s.bytes_sent = atomic_load(&srv->st_bytes);
	s.errors = atomic_load(&srv->st_errors);
	s.pages_written = atomic_load(&srv->st_pages_written);
	s.flushes = atomic_load(&srv->st_flushes);
	return FL_OPTS_OUT(st, s);
}

/* ---- creation ------------------------------------------------------------------ */

static int build_ack(struct fl_server *srv)
{
	struct fl__proto_region *regions;
	int r = 0;

	regions = calloc(srv->nregions, sizeof(*regions));
	srv->region_pages = calloc(srv->nregions, sizeof(*srv->region_pages));
	srv->ack_len = FL_PROTO_HDR_SIZE + FL_PROTO_ACK_FIXED + (size_t)srv->nregions * FL_PROTO_ACK_REGION;
	srv->ack = malloc(srv->ack_len);
	if (!regions || !srv->region_pages || !srv->ack) {
		free(regions);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < srv->nregions && !r; i++) {
		struct fl_image_region rg = { .sz = sizeof(rg) };
		if (srv->store) {
			/* One region, read-write anonymous memory. */
			rg.length = fl_store_size(srv->store);
			rg.prot = 3;
		} else {
			r = fl_image_region(srv->img, i, &rg);
		}
		regions[i] = (struct fl__proto_region){ .length = rg.length, .prot = rg.prot, .mem = rg.mem };
		srv->region_pages[i] = rg.length / FL_PROTO_PAGE_SIZE;
	}
	if (!r) {
		r = fl__proto_ack_encode(srv->ack, srv->ack_len, srv->image_id, FL_PROTO_PAGE_SIZE,
					 FL_PROTO_MAX_PAGES, regions, srv->nregions);
		r = r < 0 ? r : 0;
	}
	if (!r && srv->writable) {
		srv->ack_write = malloc(srv->ack_len);
		if (srv->ack_write) {
			memcpy(srv->ack_write, srv->ack, srv->ack_len);
			fl__proto_ack_set_features(srv->ack_write, FL_PROTO_FEAT_WRITE);
		} else {
			r = -ENOMEM;
		}
	}
	free(regions);
	return r;
}

/* What fl_server_new() and fl_server_new_store() share: srv->img or srv->store is set. */
static int server_init(struct fl_server *srv, const struct fl_server_opts *o)
{
	struct fl__tls_params tp;
	int r;

	srv->lfd = srv->stop_fd = srv->reap_fd = -1;
	srv->log = (struct fl__logger){ .fn = o->log, .ctx = o->log_ctx, .level = o->log_level };
	srv->max_clients = o->max_clients ? o->max_clients : DEFAULT_MAX_CLIENTS;
	srv->bulk_rate = o->bulk_rate;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_mutex_init(&srv->rate_mu, NULL);
	r = build_ack(srv);
	if (r)
		return r;
	tp = (struct fl__tls_params){
		.mode = o->tls, .psk_identity = o->psk_identity, .psk_key_hex = o->psk_key_hex,
		.cert_file = o->cert_file, .key_file = o->key_file, .ca_file = o->ca_file,
	};
	r = fl__tls_cfg_new(&tp, true, &srv->tls);
	if (r == -EOPNOTSUPP)
		fl__log(&srv->log, FL_LOG_ERROR, "%s", FL__TLS_DISABLED_WHY);
	if (r)
		return r;
	r = fl__eventfd(&srv->stop_fd);
	if (!r)
		r = fl__eventfd(&srv->reap_fd);
	if (!r)
		r = fl__tcp_listen(o->listen, 128, &srv->lfd, &srv->port);
	return r;
}

static int opts_check(const struct fl_server_opts *o)
{
	if (!o->listen || (o->tls != FL_TLS_NONE && o->tls != FL_TLS_PSK && o->tls != FL_TLS_X509) ||
	    (o->flags & ~FL_SERVER_WRITABLE))
		return -EINVAL;
	return 0;
}

int fl_server_new(struct fl_image *img, const struct fl_server_opts *uopts, struct fl_server **ret)
{
	struct fl_server_opts o;
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_server *srv;
	int r;

	if (!img || !uopts || !ret)
		return -EINVAL;
	r = FL_OPTS_COPY(o, uopts);
	if (r)
		return r;
	r = opts_check(&o);
	if (r)
		return r;
	/* Images are written once, by the image writer: never by clients. */
	if (o.flags & FL_SERVER_WRITABLE)
		return -EROFS;
	r = fl_image_info(img, &info);
	if (r)
		return r;
	if (info.page_size != FL_PROTO_PAGE_SIZE || info.nregions < 1 || info.nregions > FL_PROTO_MAX_REGIONS)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->lfd = srv->stop_fd = srv->reap_fd = -1;
	srv->img = fl_image_ref(img);	/* dropped by fl_server_free() */
	srv->nregions = info.nregions;
	memcpy(srv->image_id, info.id, sizeof(srv->image_id));
	r = server_init(srv, &o);
	if (r)
		goto fail;
	*ret = srv;
	return 0;
fail:
	fl_server_free(srv);
	return r;
}

int fl_server_new_store(struct fl_store *store, const struct fl_server_opts *uopts, struct fl_server **ret)
{
	struct fl_server_opts o;
	struct fl_server *srv;
	uint64_t size;
	int r;

	if (!store || !uopts || !ret)
		return -EINVAL;
	r = FL_OPTS_COPY(o, uopts);
	if (r)
		return r;
	r = opts_check(&o);
	if (r)
		return r;
	size = fl_store_size(store);
	if (!size || size % FL_PROTO_PAGE_SIZE || size > (1ull << 52))
		return -EINVAL;
	if (o.flags & FL_SERVER_WRITABLE) {
		r = fl_store_ctl(store, FL_STORE_CTL_WRITABLE, NULL);
		if (r <= 0)
			return r < 0 ? r : -EROFS;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->lfd = srv->stop_fd = srv->reap_fd = -1;
	srv->store = fl_store_ref(store);	/* dropped by fl_server_free() */
	srv->writable = o.flags & FL_SERVER_WRITABLE;
	srv->nregions = 1;
	/* Not a content id: a fresh one per server, so a client never takes a
	 * restarted server (which may have lost writes) for this one. */
	r = fl__random(srv->image_id, sizeof(srv->image_id));
	if (!r)
		r = server_init(srv, &o);
	if (r)
		goto fail;
	*ret = srv;
	return 0;
fail:
	fl_server_free(srv);
	return r;
}

struct fl_server *fl_server_free(struct fl_server *srv)
{
	if (!srv)
		return NULL;
	reap(srv, true);
	fl__close(srv->lfd);
	fl__close(srv->stop_fd);
	fl__close(srv->reap_fd);
	fl__tls_cfg_free(srv->tls);
	while (srv->sessions) {
		struct srv_session *s = srv->sessions;
		srv->sessions = s->next;
		pthread_mutex_destroy(&s->wmu);
		free(s);
	}
	pthread_mutex_destroy(&srv->mu);
	pthread_mutex_destroy(&srv->rate_mu);
	free(srv->ack);
	free(srv->ack_write);
	free(srv->region_pages);
	fl_image_unref(srv->img);
	fl_store_unref(srv->store);
	free(srv);
	return NULL;
}
