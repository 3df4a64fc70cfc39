// SPDX-License-Identifier: LGPL-2.1-or-later
/* The fault-injecting TCP relay behind `faultline proxy` (see relay.h). */
#include "relay.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_MAX (64u << 10)
/* Bytes a direction holds before it stops reading: enough for 1 ms at
 * memory speed, small enough that backpressure reaches the sender. */
#define QUEUE_CAP (16u << 20)
/* How long a cut_after reset waits for the relayed bytes to be acked. */
#define DRAIN_NS (2000ull * 1000000ull)

struct chunk {
	struct chunk *next;
	uint64_t release_ns;		/* not written before this */
	uint32_t len, off;
	char data[];
};

/* One direction of a connection: read `from`, delay, write `to`. */
struct dir {
	int from, to;
	struct chunk *head, *tail;
	size_t queued;
	uint64_t last_release;		/* release times never go backwards */
	double tokens;
	uint64_t tokens_ns;
	bool eof;			/* `from` said EOF */
	bool shut;			/* the EOF was passed on */
	bool blocked;			/* `to` said EAGAIN */
	_Atomic uint64_t *bytes;	/* the relay's counter for this way */
};

struct conn {
	struct relay *relay;
	struct conn *next;
	int fd[2];			/* accepted, target */
	int cut_fd;			/* eventfd: relay_cut() */
	uint64_t rng;
	uint64_t relayed;		/* both ways, for cut_after */
	/* A peer reset (or failed): the other peer learns it delay_ns later,
	 * after what that peer sent before (0: no reset pending). */
	uint64_t reset_at;
	int failed;			/* the side that did */
	struct dir dir[2];
};

struct relay {
	struct relay_opts opts;
	int listen_fd, stop_fd;
	struct sockaddr_storage local;
	pthread_t accept_thr;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	struct conn *conns;
	unsigned live;			/* connection threads running */
	_Atomic uint64_t bytes_up, bytes_down, connections, cuts, stalls, refused;
};

int relay_parse_addr(const char *spec, struct sockaddr_storage *ret_addr, socklen_t *ret_len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV }, *res;
	char host[256];
	const char *colon = strrchr(spec, ':'), *h = spec;
	size_t hl;
	uint64_t port;

	if (!colon || colon == spec || fl__parse_uint(colon + 1, 0, 65535, &port))
		return -EINVAL;
	hl = (size_t)(colon - spec);
	if (spec[0] == '[') {
		if (hl < 3 || spec[hl - 1] != ']')
			return -EINVAL;
		h = spec + 1;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	if (getaddrinfo(host, colon + 1, &hints, &res) || !res)
		return -EINVAL;
	memcpy(ret_addr, res->ai_addr, res->ai_addrlen);
	*ret_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

const char *relay_format_addr(const struct sockaddr_storage *addr, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)addr;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)addr;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
	}
	return buf;
}

static void set_nodelay_nonblock(int fd)
{
	int one = 1;

	/* The relay writes what it got when it may: Nagle would add its own
	 * delay to the one asked for. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Close with an RST instead of a FIN: the peer sees a cut connection. */
static void reset_close(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static uint64_t rand_u64(uint64_t *state)
{
	return splitmix64(state);
}

/* ---- one connection --------------------------------------------------- */

static void dir_free(struct dir *d)
{
	while (d->head) {
		struct chunk *c = d->head;
		d->head = c->next;
		free(c);
	}
	d->tail = NULL;
	d->queued = 0;
}

/* Read one chunk from d->from: 1 read, 0 EAGAIN / queue full, -errno. */
static int dir_read(struct conn *c, struct dir *d, uint64_t now)
{
	const struct relay_opts *o = &c->relay->opts;
	struct chunk *ch;
	ssize_t n;
	uint64_t release;

	if (d->eof || d->queued >= QUEUE_CAP)
		return 0;
	ch = malloc(sizeof(*ch) + CHUNK_MAX);
	if (!ch)
		return -ENOMEM;
	n = read(d->from, ch->data, CHUNK_MAX);
	if (n <= 0) {
		int e = n < 0 ? errno : 0;

		free(ch);
		if (n < 0 && (e == EAGAIN || e == EINTR))
			return 0;
		if (n < 0)
			return -e;
		d->eof = true;
		return 1;
	}
	/* A small read keeps a small chunk: a chatty peer behind a long
	 * delay must not hold 64 KiB per message. */
	if ((size_t)n < CHUNK_MAX / 2) {
		struct chunk *small = realloc(ch, sizeof(*ch) + (size_t)n);

		if (small)
			ch = small;
	}
	release = now + o->delay_ns;
	if (o->loss_pct > 0 && (double)(rand_u64(&c->rng) >> 11) * (100.0 / 9007199254740992.0) < o->loss_pct) {
		release += RELAY_STALL_NS;
		atomic_fetch_add(&c->relay->stalls, 1);
	}
	/* In order: a chunk never overtakes a stalled one. */
	if (release < d->last_release)
		release = d->last_release;
	d->last_release = release;
	ch->next = NULL;
	ch->release_ns = release;
	ch->len = (uint32_t)n;
	ch->off = 0;
	if (d->tail)
		d->tail->next = ch;
	else
		d->head = ch;
	d->tail = ch;
	d->queued += (size_t)n + sizeof(*ch);	/* the cap counts the chunk too */
	return 1;
}

/*
 * Write what is due. Returns 0, or -errno of the write. *ret_wait_ns: how
 * long until more is due (UINT64_MAX: nothing queued or blocked on POLLOUT).
 */
static int dir_write(struct conn *c, struct dir *d, uint64_t now, uint64_t *ret_wait_ns)
{
	const struct relay_opts *o = &c->relay->opts;

	*ret_wait_ns = UINT64_MAX;
	d->blocked = false;
	while (d->head) {
		struct chunk *ch = d->head;
		size_t want = ch->len - ch->off;
		ssize_t n;

		if (ch->release_ns > now) {
			*ret_wait_ns = ch->release_ns - now;
			return 0;
		}
		if (o->rate) {
			/* A bucket of 10 ms worth (at least 16 KiB) keeps a
			 * busy link near the rate without bursts past it. */
			double burst = FL_MAX((double)o->rate / 100.0, 16384.0);

			d->tokens += (double)(now - d->tokens_ns) * (double)o->rate / 1e9;
			if (d->tokens > burst)
				d->tokens = burst;
			d->tokens_ns = now;
			if (d->tokens < 1.0) {
				*ret_wait_ns = (uint64_t)((1.0 - d->tokens) * 1e9 / (double)o->rate) + 1000;
				return 0;
			}
			if ((double)want > d->tokens)
				want = (size_t)d->tokens;
		}
		if (o->cut_after) {
			if (c->relayed >= o->cut_after)
				return 0;
			want = (size_t)FL_MIN((uint64_t)want, o->cut_after - c->relayed);
		}
		n = send(d->to, ch->data + ch->off, want, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				d->blocked = true;
				return 0;
			}
			return -errno;
		}
		ch->off += (uint32_t)n;
		d->queued -= (size_t)n;
		c->relayed += (uint64_t)n;
		atomic_fetch_add(d->bytes, (uint64_t)n);
		if (o->rate)
			d->tokens -= (double)n;
		if (ch->off == ch->len) {
			d->queued -= sizeof(*ch);
			d->head = ch->next;
			if (!d->head)
				d->tail = NULL;
			free(ch);
		}
	}
	if (d->eof && !d->shut) {
		/* Everything before the EOF is out: pass the half-close on. */
		shutdown(d->to, SHUT_WR);
		d->shut = true;
	}
	return 0;
}

/* cut_after reached: let the peers' kernels ack what was relayed (it
 * counts as delivered), then reset. */
static void drain(struct conn *c)
{
	uint64_t end = fl__now_ns() + DRAIN_NS;

	for (;;) {
		int q0 = 0, q1 = 0;

		if (ioctl(c->fd[0], SIOCOUTQ, &q0) || ioctl(c->fd[1], SIOCOUTQ, &q1) || (q0 == 0 && q1 == 0) ||
		    fl__now_ns() > end)
			return;
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
	}
}

enum conn_end { END_CLOSE, END_RESET, END_CUT };

/*
 * Socket `side` (0 accepted, 1 target) failed at `now`: its reset travels
 * through the delay line like data, so the other peer first gets what the
 * failed one sent before it; what was on its way to the failed one is lost.
 */
static void peer_failed(struct conn *c, int side, uint64_t now)
{
	struct dir *from = &c->dir[side], *to = &c->dir[!side];

	if (c->reset_at)
		return;
	c->reset_at = FL_MAX(now + c->relay->opts.delay_ns, from->last_release);
	c->failed = side;
	from->eof = true;
	from->shut = true;	/* no FIN: a reset follows */
	to->eof = true;
	to->shut = true;
	dir_free(to);
}

static enum conn_end conn_loop(struct conn *c)
{
	const struct relay_opts *o = &c->relay->opts;

	for (;;) {
		uint64_t now = fl__now_ns(), wait = UINT64_MAX;
		struct pollfd p[4];
		struct timespec ts, *tsp = NULL;

		for (int i = 0; i < 2; i++) {
			uint64_t w;

			/* Direction i writes socket !i. */
			if (dir_write(c, &c->dir[i], now, &w))
				peer_failed(c, !i, now);
			wait = FL_MIN(wait, w);
		}
		if (c->reset_at) {
			if (now >= c->reset_at)
				return END_RESET;
			wait = FL_MIN(wait, c->reset_at - now);
		}
		if (o->cut_after && c->relayed >= o->cut_after) {
			drain(c);
			return END_CUT;
		}
		if (c->dir[0].shut && c->dir[1].shut && !c->reset_at)
			return END_CLOSE;
		for (int i = 0; i < 2; i++) {
			struct dir *d = &c->dir[i];

			/* p[i]: the socket read by direction i, written by the
			 * other; its events are both of theirs. */
			p[i].fd = d->from;
			p[i].events = 0;
			p[i].revents = 0;
			if (!d->eof && d->queued < QUEUE_CAP)
				p[i].events |= POLLIN;
			if (c->dir[!i].blocked)
				p[i].events |= POLLOUT;
			/* Read to its end and not written to: nothing to wait
			 * for (a hung-up socket would wake us at once). A reset
			 * pending: only the survivor's writes matter. */
			if ((d->eof && !(p[i].events & POLLOUT)) ||
			    (c->reset_at && (i == c->failed || !(p[i].events & POLLOUT))))
				p[i].fd = -1;
		}
		p[2] = (struct pollfd){ .fd = c->cut_fd, .events = POLLIN };
		p[3] = (struct pollfd){ .fd = c->relay->stop_fd, .events = POLLIN };
		if (wait != UINT64_MAX) {
			ts.tv_sec = (time_t)(wait / 1000000000ull);
			ts.tv_nsec = (long)(wait % 1000000000ull);
			tsp = &ts;
		}
		if (ppoll(p, 4, tsp, NULL) < 0 && errno != EINTR)
			return END_RESET;
		if (p[2].revents)
			return END_CUT;
		if (p[3].revents)
			return END_RESET;
		now = fl__now_ns();
		for (int i = 0; i < 2; i++) {
			if (c->reset_at && (p[i].revents & POLLERR))
				return END_RESET;	/* the survivor failed too */
			if (c->dir[i].eof && (p[i].revents & POLLERR)) {
				/* Reset after its EOF, or while we wrote to it. */
				peer_failed(c, i, now);
				continue;
			}
			if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				/* Up to a few chunks per wake-up: fewer polls at
				 * high rates, the queue cap still holds. */
				for (int k = 0; k < 8; k++) {
					int r = dir_read(c, &c->dir[i], now);

					if (r < 0)
						peer_failed(c, i, now);
					if (r <= 0 || c->dir[i].eof)
						break;
				}
			}
		}
	}
}

static void conn_unlink(struct conn *c)
{
	struct relay *r = c->relay;

	pthread_mutex_lock(&r->lock);
	for (struct conn **pp = &r->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
}

/* The target's connect completed: 0, or -errno (refused, unreachable,
 * or the relay stopped or cut meanwhile). */
static int connect_wait(struct conn *c)
{
	struct pollfd p[3] = { { .fd = c->fd[1], .events = POLLOUT }, { .fd = c->cut_fd, .events = POLLIN },
			       { .fd = c->relay->stop_fd, .events = POLLIN } };
	char b;

	while (poll(p, 3, -1) < 0)
		if (errno != EINTR)
			return -errno;
	if (p[1].revents || p[2].revents)
		return -ECANCELED;
	/* A peek, not SO_ERROR: a target that accepted, sent and reset at
	 * once has its data read first and its reset passed on in order. */
	if (recv(c->fd[1], &b, 1, MSG_PEEK | MSG_DONTWAIT) >= 0 || errno == EAGAIN || errno == ECONNRESET)
		return 0;
	return -errno;
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct relay *r = c->relay;
	enum conn_end end = END_RESET;
	int e = connect_wait(c);

	if (e && e != -ECANCELED)
		atomic_fetch_add(&r->refused, 1);
	if (!e)
		end = conn_loop(c);

	conn_unlink(c);
	if (end == END_CLOSE) {
		close(c->fd[0]);
		close(c->fd[1]);
	} else {
		/* A peer reset or failed: the other peer sees a cut too. */
		reset_close(c->fd[0]);
		reset_close(c->fd[1]);
		if (end == END_CUT)
			atomic_fetch_add(&r->cuts, 1);
	}
	close(c->cut_fd);
	dir_free(&c->dir[0]);
	dir_free(&c->dir[1]);
	free(c);
	pthread_mutex_lock(&r->lock);
	if (--r->live == 0)
		pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* ---- accepting --------------------------------------------------------- */

static void serve(struct relay *r, int cfd)
{
	struct conn *c = calloc(1, sizeof(*c));
	pthread_attr_t attr;
	pthread_t thr;
	int tfd = -1;

	atomic_fetch_add(&r->connections, 1);
	if (c)
		c->cut_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c && c->cut_fd >= 0)
		tfd = socket(r->opts.to_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	/* The connection's thread waits for the connect to complete, so an
	 * unreachable target never holds up the accepting. */
	if (tfd < 0 || (connect(tfd, (const struct sockaddr *)&r->opts.to_addr, r->opts.to_len) &&
			errno != EINPROGRESS)) {
		/* The target refused: so does the relay, with a reset. */
		atomic_fetch_add(&r->refused, 1);
		if (tfd >= 0)
			close(tfd);
		if (c && c->cut_fd >= 0)
			close(c->cut_fd);
		free(c);
		reset_close(cfd);
		return;
	}
	set_nodelay_nonblock(cfd);
	set_nodelay_nonblock(tfd);
	c->relay = r;
	c->fd[0] = cfd;
	c->fd[1] = tfd;
	c->rng = r->opts.seed ^ (atomic_load(&r->connections) * 0x9E3779B97F4A7C15ull);
	c->dir[0] = (struct dir){ .from = cfd, .to = tfd, .bytes = &r->bytes_up, .tokens_ns = fl__now_ns() };
	c->dir[1] = (struct dir){ .from = tfd, .to = cfd, .bytes = &r->bytes_down, .tokens_ns = fl__now_ns() };
	pthread_mutex_lock(&r->lock);
	c->next = r->conns;
	r->conns = c;
	r->live++;
	pthread_mutex_unlock(&r->lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thr, &attr, conn_main, c)) {
		conn_unlink(c);
		pthread_mutex_lock(&r->lock);
		r->live--;
		pthread_mutex_unlock(&r->lock);
		reset_close(cfd);
		reset_close(tfd);
		close(c->cut_fd);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

static void *accept_main(void *arg)
{
	struct relay *r = arg;

	for (;;) {
		struct pollfd p[2] = { { .fd = r->listen_fd, .events = POLLIN }, { .fd = r->stop_fd, .events = POLLIN } };
		int cfd;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		cfd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd >= 0)
			serve(r, cfd);
	}
	return NULL;
}

int relay_new(const struct relay_opts *opts, struct relay **ret_relay)
{
	struct relay *r = calloc(1, sizeof(*r));
	socklen_t len = sizeof(r->local);
	int one = 1, e;

	if (!r)
		return -ENOMEM;
	r->opts = *opts;
	r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->listen_fd = socket(opts->listen_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r->stop_fd < 0 || r->listen_fd < 0)
		goto fail;
	setsockopt(r->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(r->listen_fd, (const struct sockaddr *)&opts->listen_addr, opts->listen_len) ||
	    listen(r->listen_fd, 64) || getsockname(r->listen_fd, (struct sockaddr *)&r->local, &len))
		goto fail;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->idle, NULL);
	*ret_relay = r;
	return 0;
fail:
	e = -errno;
	if (r->listen_fd >= 0)
		close(r->listen_fd);
	if (r->stop_fd >= 0)
		close(r->stop_fd);
	free(r);
	return e;
}

void relay_local(const struct relay *r, struct sockaddr_storage *ret_addr)
{
	*ret_addr = r->local;
}

int relay_start(struct relay *r)
{
	int e = pthread_create(&r->accept_thr, NULL, accept_main, r);

	if (e)
		return -e;
	r->started = true;
	return 0;
}

unsigned relay_cut(struct relay *r)
{
	unsigned n = 0;
	uint64_t one = 1;

	pthread_mutex_lock(&r->lock);
	for (struct conn *c = r->conns; c; c = c->next, n++)
		(void)!write(c->cut_fd, &one, sizeof(one));
	pthread_mutex_unlock(&r->lock);
	return n;
}

void relay_stats(const struct relay *relay, struct relay_stats *s)
{
	struct relay *r = (struct relay *)relay;

	*s = (struct relay_stats){
		.bytes_up = atomic_load(&r->bytes_up), .bytes_down = atomic_load(&r->bytes_down),
		.connections = atomic_load(&r->connections), .cuts = atomic_load(&r->cuts),
		.stalls = atomic_load(&r->stalls), .refused = atomic_load(&r->refused),
	};
}

void relay_free(struct relay *r)
{
	uint64_t one = 1;

	if (!r)
		return;
	/* The stop eventfd is never read: it stays readable for every
	 * thread, the accept thread and each connection's. */
	(void)!write(r->stop_fd, &one, sizeof(one));
	if (r->started)
		pthread_join(r->accept_thr, NULL);
	pthread_mutex_lock(&r->lock);
	while (r->live)
		pthread_cond_wait(&r->idle, &r->lock);
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->idle);
	close(r->listen_fd);
	close(r->stop_fd);
	free(r);
}
