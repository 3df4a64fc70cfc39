/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers of the migration tests (header-only, included once per program,
 * which links peer.c for the memory primitives): the wire messages a
 * hand-written peer sends and the channels it sends them on; a source
 * process with writers and a shadow at quiesce, a destination's checks
 * against that shadow, and a TCP relay between the two that can throttle
 * the bulk channel, hold the urgent one, and cut a channel's connections
 * with a reset (SO_LINGER 0) so that both sides see the cut at once.
 */
#ifndef MIG_UTIL_H
#define MIG_UTIL_H

#include "peer.h"
#include "fl-config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#define M_FN static __attribute__((unused))
#define M_BLK 4096u
#define M_MAGIC 0x474d4c46u
#define M_VER 2

M_FN void m_put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);	/* x86: little-endian, as the wire */
}

M_FN void m_put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* A message header, every field as given (hostile peers get them wrong). */
M_FN void m_hdr_raw(uint8_t *h, uint32_t magic, uint16_t version, uint16_t type, uint32_t len, uint32_t flags)
{
	m_put32(h, magic);
	memcpy(h + 4, &version, 2);
	memcpy(h + 6, &type, 2);
	m_put32(h + 8, len);
	m_put32(h + 12, flags);
}

M_FN void m_hdr(uint8_t *h, uint16_t type, uint32_t len)
{
	m_hdr_raw(h, M_MAGIC, M_VER, type, len, 0);
}

/* HELLO (32 bytes at m): session, channel (0 bulk, 1 urgent), epoch. */
M_FN void m_hello(uint8_t *m, uint64_t session, uint32_t ch, uint32_t epoch)
{
	m_hdr(m, 10, 16);
	m_put64(m + 16, session);
	m_put32(m + 24, ch);
	m_put32(m + 28, epoch);
}

/* LAYOUT of one range (48 bytes at m). */
M_FN void m_layout1(uint8_t *m, uint64_t addr, uint64_t len, enum fl_mem_type mem, uint32_t pgsz)
{
	m_hdr(m, 1, 32);
	m_put32(m + 16, 1);
	m_put32(m + 20, 0);
	m_put64(m + 24, addr);
	m_put64(m + 32, len);
	m_put32(m + 40, (uint32_t)mem);
	m_put32(m + 44, pgsz);
}

/* Callbacks of a peer that must never resume, and of a source whose
 * application needs nothing done at quiesce. */
M_FN void never_resume(const void *blob, size_t blob_len, void *ctx)
{
	(void)blob;
	(void)blob_len;
	(void)ctx;
	T_ASSERT(0, "resumed by a hostile peer");
}

M_FN int quiesce_nop(enum fl_migrate_quiesce action, void *ctx)
{
	(void)action;
	(void)ctx;
	return 0;
}

/* Blocks 0..nblk: a counter in the first and last words of every block
 * but every 8th (left zero, elided on the wire). */
M_FN bool m_block_hot(size_t b)
{
	return b % 8 != 7;
}

/* ---- the source process ------------------------------------------------ */

#define M_WRITERS 4

enum m_reconnect {
	M_RECONNECT_NONE,	/* a cut after switchover is final */
	M_RECONNECT_RELAY,	/* fl_migrate_connect() to the relay again */
	M_RECONNECT_FAIL,	/* always -ECONNREFUSED */
};

struct m_src_cfg {
	uint64_t addr;
	size_t len;
	enum fl_mem_type mem;
	enum fl_migrate_mode mode;
	char connect[64];		/* "127.0.0.1:PORT" */
	char reconnect_to[64];		/* reconnections go here instead, when set */
	enum m_reconnect reconnect;
	unsigned recovery_ms, timeout_ms;
	bool small_sndbuf;		/* keep the push from running far ahead of the relay */
	struct fl_migrate_source_opts tls;	/* only its TLS fields are used */
	int expect;			/* run()'s result */
	int expect_recoveries;		/* -1: any */
};

struct m_world {
	uint8_t *mem;
	size_t nblk;
	pthread_rwlock_t lock;
	pthread_t th[M_WRITERS];
	_Atomic bool stop;
	uint64_t *hashes;
	bool paused;
	const struct m_src_cfg *cfg;
};

struct m_writer {
	struct m_world *w;
	unsigned id;
};

M_FN void *m_writer_main(void *arg)
{
	struct m_world *w = ((struct m_writer *)arg)->w;
	unsigned id = ((struct m_writer *)arg)->id;
	uint64_t x = (uint64_t)(uintptr_t)pthread_self() | 1;

	while (!atomic_load(&w->stop)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t b = (x % (w->nblk / M_WRITERS)) * M_WRITERS + id;

		if (!m_block_hot(b))
			continue;
		pthread_rwlock_rdlock(&w->lock);
		mig_block_write(w->mem + b * M_BLK);
		pthread_rwlock_unlock(&w->lock);
	}
	return NULL;
}

M_FN int m_quiesce(enum fl_migrate_quiesce action, void *ctx)
{
	struct m_world *w = ctx;

	if (action == FL_MIGRATE_PAUSE) {
		pthread_rwlock_wrlock(&w->lock);
		w->paused = true;
		for (size_t b = 0; b < w->nblk; b++)
			w->hashes[b] = XXH3_64bits(w->mem + b * M_BLK, M_BLK);
	} else {
		w->paused = false;
		pthread_rwlock_unlock(&w->lock);
	}
	return 0;
}

M_FN void m_src_log(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level <= FL_LOG_INFO || getenv("M_DEBUG"))
		t_log("source: %s", msg);
}

M_FN int m_connect_src(const struct m_src_cfg *c, int *ret_bulk, int *ret_urgent)
{
	int r = fl_migrate_connect(c->connect, 1000, ret_bulk, ret_urgent);
	if (!r && c->small_sndbuf) {
		int sz = 32768;

		setsockopt(*ret_bulk, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	return r;
}

M_FN int m_reconnect_src(void *ctx, int *ret_bulk, int *ret_urgent)
{
	const struct m_src_cfg *c = ctx;

	if (c->reconnect == M_RECONNECT_FAIL)
		return -ECONNREFUSED;
	if (c->reconnect_to[0])
		return fl_migrate_connect(c->reconnect_to, 1000, ret_bulk, ret_urgent);
	return m_connect_src(c, ret_bulk, ret_urgent);
}

/* The source process: writers run from the start until quiesce. Exit 0
 * when run() returned c->expect (and the recoveries match). */
M_FN int m_source_main(const struct m_src_cfg *c)
{
	struct m_world w = { .cfg = c };
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	struct fl_migrate_range range;
	struct fl_migrate_source *src;
	struct m_writer wa[M_WRITERS];
	struct fl_migrate_source_opts o;
	int bulk, urgent, r;

	w.mem = mig_map_at(c->addr, c->mem, c->len);
	w.nblk = c->len / M_BLK;
	w.hashes = calloc(w.nblk, sizeof(uint64_t));
	T_ASSERT(w.hashes != NULL);
	pthread_rwlock_init(&w.lock, NULL);
	for (size_t b = 0; b < w.nblk; b++)
		if (m_block_hot(b))
			mig_block_write(w.mem + b * M_BLK);
	for (unsigned i = 0; i < M_WRITERS; i++) {
		wa[i] = (struct m_writer){ &w, i };
		T_ASSERT(pthread_create(&w.th[i], NULL, m_writer_main, &wa[i]) == 0);
	}
	T_OK(m_connect_src(c, &bulk, &urgent));
	range = (struct fl_migrate_range){ w.mem, c->len, c->mem };
	o = c->tls;
	o.sz = sizeof(o);
	o.ranges = &range;
	o.nranges = 1;
	o.bulk_fd = bulk;
	o.urgent_fd = urgent;
	o.mode = c->mode;
	o.quiesce = m_quiesce;
	o.quiesce_ctx = &w;
	o.blob = w.hashes;
	o.blob_len = w.nblk * sizeof(uint64_t);
	o.log = m_src_log;
	o.timeout_ms = c->timeout_ms;
	o.recovery_ms = c->recovery_ms;
	if (c->reconnect != M_RECONNECT_NONE) {
		o.reconnect = m_reconnect_src;
		o.reconnect_ctx = (void *)c;
	}
	r = fl_migrate_source_new(&o, &src);
	if (r) {
		T_ASSERT(r == c->expect, "source_new: %d (%s), want %d", r, strerror(-r), c->expect);
		return 0;
	}
	r = fl_migrate_source_run(src);
	T_OK(fl_migrate_source_stats(src, &st));
	T_ASSERT(r == c->expect, "source run: %d (%s), want %d (%s)", r, strerror(-r), c->expect,
		 strerror(-c->expect));
	if (c->expect_recoveries >= 0)
		T_ASSERT(st.recoveries == (unsigned)c->expect_recoveries, "source: %u recoveries, want %d",
			 st.recoveries, c->expect_recoveries);
	if (st.recoveries)
		T_ASSERT(st.recovery_ns > 0);
	if (r && r != -ETIMEDOUT && !w.paused) {
		/* Refused before switchover: resumed, intact, writable. */
		atomic_store(&w.stop, true);
		for (unsigned i = 0; i < M_WRITERS; i++)
			pthread_join(w.th[i], NULL);
		memset(w.mem, 0x5a, c->len);
	}
	if (r == -ETIMEDOUT)
		T_ASSERT(w.paused, "the source resumed the application after switchover");
	fl_migrate_source_free(src);
	return 0;
}

M_FN void m_source_reap(pid_t pid)
{
	int status;

	T_OK(t_wait_pid(pid, t_scaled_ms(60000), &status));
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "source status 0x%x", status);
}

/* ---- the destination ---------------------------------------------------- */

struct m_dst {
	uint8_t *mem;
	size_t nblk;
	uint64_t *hashes;
	_Atomic bool resumed;
	char log[8192];
	pthread_mutex_t log_lock;
};

M_FN void m_on_resume(const void *blob, size_t blob_len, void *ctx)
{
	struct m_dst *d = ctx;

	T_ASSERT_EQ(blob_len, d->nblk * sizeof(uint64_t));
	memcpy(d->hashes, blob, blob_len);
	atomic_store(&d->resumed, true);
}

M_FN void m_dst_init(struct m_dst *d, uint64_t addr, size_t len)
{
	memset(d, 0, sizeof(*d));
	d->mem = (uint8_t *)(uintptr_t)addr;
	d->nblk = len / M_BLK;
	d->hashes = calloc(d->nblk, sizeof(uint64_t));
	T_ASSERT(d->hashes != NULL);
	pthread_mutex_init(&d->log_lock, NULL);
}

/* Keeps what the destination logs, for the cases that check a cause. */
M_FN void m_dst_log(enum fl_log_level level, const char *msg, void *ctx)
{
	struct m_dst *d = ctx;

	if (level <= FL_LOG_INFO || getenv("M_DEBUG"))
		t_log("destination: %s", msg);
	if (d) {
		pthread_mutex_lock(&d->log_lock);
		size_t n = strlen(d->log);

		snprintf(d->log + n, sizeof(d->log) - n, "%s\n", msg);
		pthread_mutex_unlock(&d->log_lock);
	}
}

M_FN bool m_dst_logged(struct m_dst *d, const char *what)
{
	bool r;

	pthread_mutex_lock(&d->log_lock);
	r = strstr(d->log, what) != NULL;
	pthread_mutex_unlock(&d->log_lock);
	return r;
}

M_FN void m_listen(int *ret_fd, int *ret_port)
{
	T_OK(fl_migrate_listen("127.0.0.1:0", ret_fd, ret_port));
}

/*
 * Two connected TCP channels on loopback for a hand-written peer: the fake
 * peer's ends (blocking) and those of the engine under test (bulk first, as
 * fl_migrate_connect() and fl_migrate_accept() pair them).
 */
struct m_chans {
	int peer_bulk, peer_urgent;
	int bulk, urgent;
};

M_FN void m_chans_open(struct m_chans *ch)
{
	char addr[64];
	int lfd, port;

	m_listen(&lfd, &port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	T_OK(fl_migrate_connect(addr, t_scaled_ms(5000), &ch->peer_bulk, &ch->peer_urgent));
	T_OK(fl_migrate_accept(lfd, t_scaled_ms(5000), &ch->bulk, &ch->urgent));
	close(lfd);
	/* The fake peer reads and writes blocking. */
	T_ASSERT(fcntl(ch->peer_bulk, F_SETFL, fcntl(ch->peer_bulk, F_GETFL) & ~O_NONBLOCK) == 0);
	T_ASSERT(fcntl(ch->peer_urgent, F_SETFL, fcntl(ch->peer_urgent, F_GETFL) & ~O_NONBLOCK) == 0);
}

/* Close every end not yet closed (and set to -1) by the case. */
M_FN void m_chans_close(struct m_chans *ch)
{
	int *fds[] = { &ch->peer_bulk, &ch->peer_urgent, &ch->bulk, &ch->urgent };

	for (unsigned i = 0; i < 4; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

/* Is the page at addr present (pagemap bit 63)? Reading pagemap does not
 * fault it in. */
M_FN bool m_present(const void *addr)
{
	static int fd = -1;
	uint64_t e = 0;

	if (fd < 0)
		fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	T_ASSERT(fd >= 0);
	T_ASSERT(pread(fd, &e, 8, (off_t)((uintptr_t)addr / 4096 * 8)) == 8);
	return e >> 63;
}

/* ---- the relay ---------------------------------------------------------- */

#define M_RELAY_MAX 64

struct m_relay;

struct m_pair {
	struct m_relay *r;
	int down, up;			/* source side, destination side */
	unsigned kind;			/* 0 bulk, 1 urgent: the order of connection */
	_Atomic bool cut;
	pthread_t th;
};

struct m_relay {
	int lfd, port;
	int target_port;		/* the destination's port on 127.0.0.1 */
	pthread_t th;
	_Atomic bool stop;
	_Atomic unsigned bulk_rate;	/* bytes/s source->destination on bulk; 0: unlimited */
	_Atomic bool hold_urgent;	/* forward nothing on urgent */
	_Atomic bool hold_bulk;		/* forward nothing on bulk */
	_Atomic uint64_t bulk_limit;	/* forward at most this many bytes source->destination on bulk (0: no limit) */
	_Atomic unsigned accepted;
	_Atomic uint64_t session;	/* the first bulk HELLO's session id */
	pthread_mutex_t lock;
	struct m_pair *pairs[M_RELAY_MAX];
	unsigned npairs;
};

M_FN void m_reset_close(int fd)
{
	struct linger l = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

M_FN void *m_pair_main(void *arg)
{
	struct m_pair *p = arg;
	struct m_relay *r = p->r;
	static _Thread_local uint8_t buf[65536];
	uint64_t first = 0, forwarded = 0;
	bool hello_seen = false;

	for (;;) {
		bool hold = p->kind == 1 ? atomic_load(&r->hold_urgent) : atomic_load(&r->hold_bulk);
		uint64_t limit = p->kind == 0 ? atomic_load(&r->bulk_limit) : 0;
		bool hold_down = hold || (limit && forwarded >= limit);
		struct pollfd f[2] = {
			{ .fd = p->down, .events = hold_down ? 0 : POLLIN },
			{ .fd = p->up, .events = hold ? 0 : POLLIN },
		};

		if (atomic_load(&p->cut) || atomic_load(&r->stop))
			break;
		if (poll(f, 2, 10) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			int from = i ? p->up : p->down, to = i ? p->down : p->up;
			size_t want = sizeof(buf);
			unsigned rate = atomic_load(&r->bulk_rate);
			ssize_t n;

			if (!(f[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (i == 0 && p->kind == 0 && rate)
				want = 4096;
			if (i == 0 && limit)
				want = want < limit - forwarded ? want : (size_t)(limit - forwarded);
			n = read(from, buf, want);
			if (n <= 0)
				goto out;
			if (i == 0 && p->kind == 0 && !hello_seen && n >= 32) {
				unsigned npairs;

				pthread_mutex_lock(&r->lock);
				npairs = r->npairs;
				pthread_mutex_unlock(&r->lock);
				if (npairs <= 2) {
					memcpy(&first, buf + 16, 8);
					atomic_store(&r->session, first);
					hello_seen = true;
				}
			}
			if (i == 0)
				forwarded += (uint64_t)n;
			for (ssize_t off = 0; off < n;) {
				ssize_t k = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

				if (k <= 0)
					goto out;
				off += k;
			}
			if (i == 0 && p->kind == 0 && rate)
				usleep((useconds_t)((uint64_t)n * 1000000 / rate));
		}
	}
out:
	/* A reset, not a FIN: both peers see the connection cut at once. */
	m_reset_close(p->down);
	m_reset_close(p->up);
	return NULL;
}

M_FN void *m_relay_main(void *arg)
{
	struct m_relay *r = arg;

	while (!atomic_load(&r->stop)) {
		struct pollfd f = { .fd = r->lfd, .events = POLLIN };
		struct m_pair *p;
		int fd, one = 1;

		if (poll(&f, 1, 20) <= 0)
			continue;
		fd = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		p = calloc(1, sizeof(*p));
		T_ASSERT(p != NULL);
		p->r = r;
		p->down = fd;
		p->kind = atomic_fetch_add(&r->accepted, 1) % 2;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		/* Blocking onward connection: the destination listens already. */
		{
			struct sockaddr_in a = { .sin_family = AF_INET };

			a.sin_port = htons((uint16_t)r->target_port);
			a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			p->up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (p->up < 0 || connect(p->up, (struct sockaddr *)&a, sizeof(a))) {
				m_reset_close(fd);
				if (p->up >= 0)
					close(p->up);
				free(p);
				continue;
			}
			setsockopt(p->up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		pthread_mutex_lock(&r->lock);
		T_ASSERT(r->npairs < M_RELAY_MAX);
		r->pairs[r->npairs++] = p;
		pthread_mutex_unlock(&r->lock);
		T_ASSERT(pthread_create(&p->th, NULL, m_pair_main, p) == 0);
	}
	return NULL;
}

/* A relay on bind_ip (an ephemeral port) to target "127.0.0.1:PORT";
 * m_relay_run() starts it.
 * Small receive buffers, so that a throttled bulk channel holds back the
 * source instead of buffering megabytes. */
M_FN void m_relay_start_on(struct m_relay *r, const char *bind_ip, int target_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int one = 1, sz = 32768;

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->target_port = target_port;
	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	T_ASSERT(r->lfd >= 0);
	setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(r->lfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	T_ASSERT(inet_pton(AF_INET, bind_ip, &a.sin_addr) == 1, "address %s", bind_ip);
	T_ASSERT(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(r->lfd, 16) == 0);
	T_ASSERT(getsockname(r->lfd, (struct sockaddr *)&a, &al) == 0);
	r->port = ntohs(a.sin_port);
}

/* The same on 127.0.0.1. */
M_FN void m_relay_start(struct m_relay *r, int target_port)
{
	m_relay_start_on(r, "127.0.0.1", target_port);
}

/* Its thread, after the source is forked: a fork with threads running
 * can copy an allocator lock held by one of them (ASan's is not reset in
 * the child), and the child's first allocation then waits forever. */
M_FN void m_relay_run(struct m_relay *r)
{
	T_ASSERT(pthread_create(&r->th, NULL, m_relay_main, r) == 0);
}

/* Reset every live connection of one channel kind (0 bulk, 1 urgent). */
M_FN void m_relay_cut(struct m_relay *r, unsigned kind)
{
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->npairs; i++)
		if (r->pairs[i]->kind == kind)
			atomic_store(&r->pairs[i]->cut, true);
	pthread_mutex_unlock(&r->lock);
}

M_FN void m_relay_stop(struct m_relay *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->th, NULL);
	for (unsigned i = 0; i < r->npairs; i++) {
		pthread_join(r->pairs[i]->th, NULL);
		free(r->pairs[i]);
	}
	close(r->lfd);
}

/* ---- the destination's side of a recovery ------------------------------ */

struct m_reaccept {
	int lfd;
	unsigned calls;
};

/* The destination's reconnect: the next pair on the listening socket. */
M_FN int m_reaccept(void *ctx, int *ret_bulk, int *ret_urgent)
{
	struct m_reaccept *a = ctx;

	a->calls++;
	return fl_migrate_accept(a->lfd, 300, ret_bulk, ret_urgent);
}

M_FN pid_t m_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* The application at the destination while cuts come: M_APP_THREADS
 * threads check blocks against the shadow and write them. */
#define M_APP_THREADS 4

struct m_app {
	struct m_dst *d;
	unsigned id;
	_Atomic bool *phase2;
	pid_t tid;
	uint64_t *expected;		/* per block: the counter after our write (0: untouched) */
	_Atomic uint64_t wrong;
	_Atomic bool first_half_done;
};

/* Check a block against the shadow, then write it (its counter + 1). */
M_FN void m_touch(struct m_app *a, size_t b)
{
	uint8_t *blk = a->d->mem + b * M_BLK;
	uint64_t v;

	if (XXH3_64bits(blk, M_BLK) != a->d->hashes[b]) {
		atomic_fetch_add(&a->wrong, 1);
		return;
	}
	v = *(volatile uint64_t *)(void *)blk;
	mig_block_write(blk);
	a->expected[b] = v + 1;
}

/* Thread id of the application's threads: blocks b % M_APP_THREADS == id,
 * the first half at once, the rest after both cuts. The last hot block
 * is the held faulter's. */
M_FN void *m_app_main(void *arg)
{
	struct m_app *a = arg;
	size_t nblk = a->d->nblk;

	a->tid = m_gettid();
	for (size_t b = a->id; b < nblk / 2; b += M_APP_THREADS)
		m_touch(a, b);
	atomic_store(&a->first_half_done, true);
	while (!atomic_load(a->phase2))
		usleep(1000);
	for (size_t b = nblk / 2 + a->id; b < nblk - 2; b += M_APP_THREADS)
		m_touch(a, b);
	return NULL;
}

struct m_faulter {
	struct m_dst *d;
	size_t block;
	_Atomic pid_t tid;
	_Atomic bool done;
	bool right;
};

M_FN void *m_faulter_main(void *arg)
{
	struct m_faulter *f = arg;

	f->tid = m_gettid();
	f->right = XXH3_64bits(f->d->mem + f->block * M_BLK, M_BLK) == f->d->hashes[f->block];
	atomic_store(&f->done, true);
	return NULL;
}

/* Every block of the destination as at the pause instant. */
M_FN void m_dst_check_all(const struct m_dst *d)
{
	for (size_t b = 0; b < d->nblk; b++)
		T_ASSERT(XXH3_64bits(d->mem + b * M_BLK, M_BLK) == d->hashes[b], "block %zu lost or wrong", b);
}

/* The end of a case through the relay: the destination freed, the relay
 * stopped, the listening socket and the first pair closed. */
M_FN void m_case_end(struct fl_migrate_dest *dst, struct m_relay *relay, int lfd, int bulk, int urgent)
{
	fl_migrate_dest_free(dst);
	m_relay_stop(relay);
	close(lfd);
	close(bulk);
	close(urgent);
}

/* Page requests the destination has sent. */
M_FN uint64_t m_requests(struct fl_migrate_dest *dst)
{
	struct fl_migrate_stats st = { .sz = sizeof(st) };

	T_OK(fl_migrate_dest_stats(dst, &st));
	return st.requests;
}

/* ---- recovery scenarios, over loopback or between namespaces ------------ */

/*
 * Where a scenario runs. NULL or zeroed: both sides and the relay on
 * 127.0.0.1 in this process's network namespace, plaintext. The relay
 * always forwards to the destination on 127.0.0.1 of the calling
 * process's namespace; the source reaches it at relay_ip.
 */
struct m_net {
	const char *relay_ip;		/* where the relay listens (NULL: 127.0.0.1) */
	void (*in_source)(void *arg);	/* run first in the forked source process */
	void *in_source_arg;
	const char *psk_key_hex;	/* TLS with this pre-shared key on both sides */
	unsigned dst_timeout_ms;	/* the destination's timeout_ms (0: 5 s, scaled) */
};

M_FN const char *m_net_relay_ip(const struct m_net *net)
{
	return net && net->relay_ip ? net->relay_ip : "127.0.0.1";
}

/* Point c at the relay and set its TLS from net. */
M_FN void m_net_source(const struct m_net *net, struct m_src_cfg *c, int relay_port)
{
	snprintf(c->connect, sizeof(c->connect), "%s:%d", m_net_relay_ip(net), relay_port);
	if (net && net->psk_key_hex) {
		c->tls.tls = FL_TLS_PSK;
		c->tls.psk_identity = "migration-1";
		c->tls.psk_key_hex = net->psk_key_hex;
	}
}

M_FN pid_t m_net_source_fork(const struct m_net *net, const struct m_src_cfg *c)
{
	pid_t pid = fork();

	T_ASSERT(pid >= 0);
	if (pid == 0) {
		if (net && net->in_source)
			net->in_source(net->in_source_arg);
		_exit(m_source_main(c));
	}
	return pid;
}

/* The source process on loopback. */
M_FN pid_t m_source_fork(const struct m_src_cfg *c)
{
	return m_net_source_fork(NULL, c);
}

/*
 * The source forked (into net's namespace, if any; net NULL: loopback),
 * the relay r running, both channels accepted on lfd into *bulk and
 * *urgent; with ra, *ra set to reaccept on lfd. The relay's knobs are the
 * caller's, set before. Returns the source's pid.
 */
M_FN pid_t m_relay_go(const struct m_net *net, const struct m_src_cfg *c, struct m_relay *r, int lfd, int *bulk,
		      int *urgent, struct m_reaccept *ra)
{
	pid_t pid = m_net_source_fork(net, c);

	m_relay_run(r);
	T_OK(fl_migrate_accept(lfd, t_scaled_ms(30000), bulk, urgent));
	if (ra)
		*ra = (struct m_reaccept){ .lfd = lfd };
	return pid;
}

M_FN struct fl_migrate_dest *m_dst_start(const struct m_net *net, struct m_dst *d, int bulk, int urgent, struct m_reaccept *ra,
							unsigned recovery_ms)
{
	struct fl_migrate_dest *dst;

	T_OK(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = bulk, .urgent_fd = urgent,
		.resume = m_on_resume, .resume_ctx = d,
		.timeout_ms = net && net->dst_timeout_ms ? net->dst_timeout_ms : t_scaled_ms(5000),
		.log = m_dst_log, .log_ctx = d, .reconnect = ra ? m_reaccept : NULL, .reconnect_ctx = ra,
		.recovery_ms = recovery_ms, .tls = net && net->psk_key_hex ? FL_TLS_PSK : FL_TLS_NONE,
		.psk_identity = net && net->psk_key_hex ? "migration-1" : NULL,
		.psk_key_hex = net ? net->psk_key_hex : NULL }, &dst));
	T_OK(fl_migrate_dest_start(dst));
	return dst;
}

M_FN unsigned m_recoveries(struct fl_migrate_dest *dst)
{
	struct fl_migrate_stats st = { .sz = sizeof(st) };

	T_OK(fl_migrate_dest_stats(dst, &st));
	return st.recoveries;
}

/* The source is through its recovery too once a page arrives on the new
 * connections (it pushes only after the destination's RECEIVED), or when
 * nothing is missing any more. */
M_FN bool m_source_recovered(struct fl_migrate_dest *dst, uint64_t received_before)
{
	struct fl_migrate_stats st = { .sz = sizeof(st) };

	T_OK(fl_migrate_dest_stats(dst, &st));
	return st.pages_received > received_before || st.pages_remaining == 0;
}

M_FN uint64_t m_received(struct fl_migrate_dest *dst)
{
	struct fl_migrate_stats st = { .sz = sizeof(st) };

	T_OK(fl_migrate_dest_stats(dst, &st));
	return st.pages_received;
}

/*
 * Postcopy through a relay that throttles the push, with M_APP_THREADS
 * application threads at the destination (the calling process): the relay
 * cuts the bulk channel, then the urgent one with a faulter waiting on it.
 * Both cuts recovered (2 recoveries on both sides), zero lost or wrong
 * blocks, the faulter gets the right bytes, per-thread blocked time.
 * c: the source's configuration but for its address to connect to.
 */
M_FN int m_cut_twice(const struct m_net *net, struct m_src_cfg *c)
{
	enum fl_mem_type mem = c->mem;
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	struct fl_migrate_thread_stats ts[64];
	struct m_app apps[M_APP_THREADS];
	pthread_t th[M_APP_THREADS], fth;
	_Atomic bool phase2 = false;
	struct m_faulter f = { 0 };
	struct m_relay relay;
	struct m_reaccept ra;
	struct m_dst d;
	struct fl_migrate_dest *dst;
	uint64_t *expected;
	unsigned n;
	int lfd, port, bulk, urgent;
	pid_t pid;

	m_listen(&lfd, &port);
	m_relay_start_on(&relay, m_net_relay_ip(net), port);
	/* Slow enough that the push is far from done when the cuts come. */
	atomic_store(&relay.bulk_rate, mem == FL_MEM_HUGETLB ? (1u << 20) : (2u << 20));
	c->expect_recoveries = 2;
	m_dst_init(&d, c->addr, c->len);
	m_net_source(net, c, relay.port);
	pid = m_relay_go(net, c, &relay, lfd, &bulk, &urgent, &ra);
	dst = m_dst_start(net, &d, bulk, urgent, &ra, t_scaled_ms(10000));
	T_ASSERT(T_WAIT_FOR(atomic_load(&d.resumed), 30000), "never resumed");
	expected = calloc(d.nblk, sizeof(uint64_t));
	T_ASSERT(expected != NULL);
	for (unsigned i = 0; i < M_APP_THREADS; i++) {
		apps[i] = (struct m_app){ .d = &d, .id = i, .phase2 = &phase2, .expected = expected };
		T_ASSERT(pthread_create(&th[i], NULL, m_app_main, &apps[i]) == 0);
	}

	/* Cut 1: the bulk channel. */
	usleep(150000);
	m_relay_cut(&relay, 0);
	T_ASSERT(T_WAIT_FOR(m_recoveries(dst) >= 1, 15000), "no recovery after the bulk cut");
	/* Not before the source has its HELLO_ACKs: holding the urgent
	 * channel earlier would cut the source's recovery, not the postcopy. */
	uint64_t before = m_received(dst);
	T_ASSERT(T_WAIT_FOR(m_source_recovered(dst, before), 15000), "the source did not resume its push");

	/* The application's first half done (before any hold: its faults
	 * need both channels): from here on, the faulter's is the only
	 * request. */
	for (unsigned i = 0; i < M_APP_THREADS; i++)
		T_ASSERT(T_WAIT_FOR(atomic_load(&apps[i].first_half_done), 30000), "thread %u still in its first half", i);
	/* Cut 2: the urgent channel, with a faulter waiting on it. Bulk held
	 * too meanwhile, so that the push cannot bring the faulter's page.
	 * Held 300 ms from the moment the library has read its fault (it sent
	 * the request): so it blocks at least that long, however late the
	 * threads were scheduled. */
	uint64_t requests = m_requests(dst);

	atomic_store(&relay.hold_urgent, true);
	atomic_store(&relay.hold_bulk, true);
	f = (struct m_faulter){ .d = &d, .block = d.nblk - 2 };
	T_ASSERT(pthread_create(&fth, NULL, m_faulter_main, &f) == 0);
	T_ASSERT(T_WAIT_FOR(m_requests(dst) > requests, 10000), "the faulter's fault was never read");
	usleep(300000);
	T_ASSERT(!atomic_load(&f.done), "the faulter was served through a held channel");
	m_relay_cut(&relay, 1);
	usleep(50000);
	atomic_store(&relay.hold_urgent, false);
	atomic_store(&relay.hold_bulk, false);
	T_ASSERT(T_WAIT_FOR(m_recoveries(dst) >= 2, 15000), "no recovery after the urgent cut");
	T_ASSERT(T_WAIT_FOR(atomic_load(&f.done), 15000), "the faulter still waits after recovery");
	pthread_join(fth, NULL);
	T_ASSERT(f.right, "the faulter blocked across the cut read wrong bytes");

	atomic_store(&phase2, true);
	atomic_store(&relay.bulk_rate, 0);
	for (unsigned i = 0; i < M_APP_THREADS; i++)
		pthread_join(th[i], NULL);
	T_ASSERT_EQ(fl_migrate_dest_wait(dst), 0);
	for (unsigned i = 0; i < M_APP_THREADS; i++)
		T_ASSERT(atomic_load(&apps[i].wrong) == 0, "thread %u read %llu blocks unlike the shadow", i,
			 (unsigned long long)atomic_load(&apps[i].wrong));
	/* Every block: ours as written, the rest as at the pause. */
	for (size_t b = 0; b < d.nblk; b++) {
		const uint64_t *q = (const uint64_t *)(const void *)(d.mem + b * M_BLK);

		if (expected[b])
			T_ASSERT(q[0] == expected[b] && q[M_BLK / 8 - 1] == expected[b],
				 "block %zu: counter %llu/%llu, want %llu", b, (unsigned long long)q[0],
				 (unsigned long long)q[M_BLK / 8 - 1], (unsigned long long)expected[b]);
		else
			T_ASSERT(XXH3_64bits(q, M_BLK) == d.hashes[b], "block %zu lost or wrong", b);
	}
	T_OK(fl_migrate_dest_stats(dst, &st));
	T_ASSERT_EQ(st.recoveries, 2);
	T_ASSERT(st.recovery_ns > 0 && st.blocked_ns > 0);
	/* Per thread: each application thread and the faulter, blocked. */
	T_OK(fl_migrate_dest_threads(dst, (ts[0].sz = sizeof(ts[0]), ts), 64, &n));
	if (!fl_feature_has(FL_FEATURE_THREAD_ID)) {
		/* Without the faulting thread's id every fault counts for 0. */
		T_ASSERT(n == 1 && ts[0].tid == 0 && ts[0].blocked_ns > 0, "%u threads, tid %d", n, ts[0].tid);
		n = 0;
	} else {
		/* The faulter and one application thread at least. */
		T_ASSERT(n >= 2, "%u threads in the per-thread statistics", n);
	}
	/* With 4 KiB pages each application thread has pages of its own, so
	 * each faults; with huge pages the threads share 2 MiB pages, and a
	 * thread that comes to a page another one's fault brought in never
	 * faults: then one application thread at least, and the faulter. */
	unsigned app_found = 0;

	for (unsigned i = 0; n && i <= M_APP_THREADS; i++) {
		pid_t tid = i < M_APP_THREADS ? apps[i].tid : f.tid;
		unsigned k;

		for (k = 0; k < (n < 64u ? n : 64u) && ts[k].tid != tid; k++)
			;
		if (k == (n < 64u ? n : 64u) && mem == FL_MEM_HUGETLB && tid != f.tid)
			continue;
		T_ASSERT(k < (n < 64u ? n : 64u), "thread %d not in the per-thread statistics (%u threads)", tid, n);
		app_found += tid != f.tid;
		T_ASSERT(ts[k].faults > 0 && ts[k].blocked_ns > 0 && ts[k].max_blocked_ns <= ts[k].blocked_ns);
		if (tid == f.tid)
			T_ASSERT(ts[k].max_blocked_ns >= 300000000ull, "the faulter blocked %llu ns",
				 (unsigned long long)ts[k].max_blocked_ns);
	}
	if (fl_feature_has(FL_FEATURE_THREAD_ID))
		T_ASSERT(app_found >= 1, "no application thread in the per-thread statistics");
	m_source_reap(pid);
	m_case_end(dst, &relay, lfd, bulk, urgent);
	return T_PASS;
}

enum m_lost {
	M_LOST_RECONNECT_FAILS,	/* the source's reconnect() always fails */
	M_LOST_SOURCE_KILLED,	/* SIGKILL to the source in postcopy */
};

/*
 * Recovery that never comes: the destination keeps a faulter blocked while
 * it tries to recover for its recovery_ms, then poisons: SIGBUS, never
 * zeros; -ETIMEDOUT on both sides, the source's application never resumed.
 * c: the source's configuration but for its address to connect to.
 */
M_FN int m_recovery_lost(const struct m_net *net, struct m_src_cfg *c, enum m_lost kind)
{
	struct m_relay relay;
	struct m_reaccept ra;
	struct m_dst d;
	struct fl_migrate_dest *dst;
	uint64_t v = 0, t0, waited;
	int lfd, port, bulk, urgent, status, bus;
	size_t far;
	pid_t pid;

	m_listen(&lfd, &port);
	m_relay_start_on(&relay, m_net_relay_ip(net), port);
	atomic_store(&relay.bulk_rate, 1u << 20);
	c->recovery_ms = t_scaled_ms(3000);
	if (kind == M_LOST_RECONNECT_FAILS) {
		c->reconnect = M_RECONNECT_FAIL;
		c->expect = -ETIMEDOUT;
		c->expect_recoveries = 0;
	}
	m_dst_init(&d, c->addr, c->len);
	m_net_source(net, c, relay.port);
	/* Nobody connects again: each reconnect() times out. */
	pid = m_relay_go(net, c, &relay, lfd, &bulk, &urgent, &ra);
	if (kind == M_LOST_SOURCE_KILLED) {
		close(lfd);
		m_listen(&ra.lfd, &port);
	}
	/* 3 s: time for several reconnect() calls also on a loaded machine. */
	dst = m_dst_start(net, &d, bulk, urgent, &ra, t_scaled_ms(3000));
	T_ASSERT(T_WAIT_FOR(atomic_load(&d.resumed), 30000), "never resumed");
	/* Served before the cut, over the urgent channel. */
	T_ASSERT_EQ(mig_read_or_sigbus((const volatile uint64_t *)(const void *)d.mem, &v), 0);
	T_ASSERT(XXH3_64bits(d.mem, M_BLK) == d.hashes[0], "block 0 differs");
	t0 = t_now_ns();
	if (kind == M_LOST_SOURCE_KILLED) {
		kill(pid, SIGKILL);
		T_OK(t_wait_pid(pid, 10000, &status));
	} else {
		m_relay_cut(&relay, 0);
		m_relay_cut(&relay, 1);
	}
	/* Far from what the push reached: missing. Blocked while the
	 * destination tries to recover, then SIGBUS, never zeros. */
	far = d.nblk - 2;
	bus = mig_read_or_sigbus((const volatile uint64_t *)(const void *)(d.mem + far * M_BLK), &v);
	waited = t_now_ns() - t0;
	T_ASSERT(bus == 1, "a missing page read as %llu instead of SIGBUS", (unsigned long long)v);
	T_ASSERT(waited >= t_scaled_ns(2000), "SIGBUS after %llu ms: recovery was not waited for",
		 (unsigned long long)(waited / 1000000));
	T_ASSERT_EQ(fl_migrate_dest_wait(dst), -ETIMEDOUT);
	T_ASSERT(ra.calls >= 2, "reconnect called %u times", ra.calls);
	T_ASSERT_EQ(m_recoveries(dst), 0);
	/* What arrived stays; a later thread finds SIGBUS too. */
	T_ASSERT(XXH3_64bits(d.mem, M_BLK) == d.hashes[0], "block 0 changed after the failure");
	T_ASSERT_EQ(mig_read_or_sigbus((const volatile uint64_t *)(const void *)(d.mem + (far - 8) * M_BLK), &v),
		    1);
	if (kind == M_LOST_RECONNECT_FAILS)
		m_source_reap(pid);
	fl_migrate_dest_free(dst);
	m_relay_stop(&relay);
	close(ra.lfd);
	if (kind == M_LOST_RECONNECT_FAILS)
		close(lfd);
	close(bulk);
	close(urgent);
	return T_PASS;
}

#endif
