// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Live migration (lib/migrate): two processes over TCP on 127.0.0.1. The
 * case process is the destination; it forks the source, which maps the
 * memory at a fixed address and keeps 4 writer threads going until
 * quiesce (peer.c runs both sides). Loopback, not network namespaces with
 * a veth pair: the protocol and the memory semantics are what these cases
 * check.
 *
 * The source's quiesce takes a shadow of the memory at the pause instant
 * and sends its per-block hashes as the application blob, so the
 * destination checks its memory against that instant, block by block.
 * Then hostile peers on either side, hand-written on the wire.
 */
#include "mig-util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#define LEN (8u << 20)
#define MIXED MIG_MIXED		/* mcase.mem: anon, shmem and hugetlb ranges, LEN each */

enum scenario {
	S_MIGRATE,		/* complete, compare with the pause instant */
	S_NOPUSH,		/* postcopy on demand only: every page requested */
	S_KILL,			/* source SIGKILLed after switchover */
	S_CANCEL,		/* source cancels during round 1 */
	S_DEST_FAILS,		/* the destination's address is taken: -EEXIST on both sides */
};

struct mcase {
	enum scenario scenario;
	enum fl_migrate_mode mode;
	enum fl_mem_type mem;
};

static uint64_t case_addr(const struct mcase *c)
{
	/* Far from where mmap places things, one slot per case; the
	 * destination's NOREPLACE would say -EEXIST, never overwrite. */
	return 0x5f0000000000ull + ((uint64_t)c->scenario * 16 + (uint64_t)c->mode * 4 + c->mem) * (64ull << 20);
}

/* ---- migrations (peer.c) ------------------------------------------------ */

static int test_migrate(void *arg)
{
	const struct mcase *m = arg;
	struct mig_case c = { .mode = m->mode, .mem = (int)m->mem, .len = LEN, .addr = case_addr(m) };

	switch (m->scenario) {
	case S_MIGRATE:
		break;
	case S_NOPUSH:
		c.src_flags = FL_MIGRATE_NO_PUSH;
		break;
	case S_KILL:
		c.src_flags = FL_MIGRATE_NO_PUSH;
		c.kill_source = true;
		break;
	case S_CANCEL:
		c.cancel = true;
		c.expect = -ECANCELED;
		break;
	case S_DEST_FAILS:
		c.addr_taken = true;
		c.expect = -EEXIST;
		break;
	}
	mig_require(&c);
	return mig_run(&c, "127.0.0.1", NULL, NULL, NULL);
}

/* ---- helpers of the hostile cases ------------------------------------------ */

static void dst_log(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level <= FL_LOG_WARN)
		t_log("destination: %s", msg);
}

/* ---- hostile peers ----------------------------------------------------- */

static void read_full(int fd, uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = read(fd, p, n);

		T_ASSERT(k > 0, "read: %zd (%s)", k, strerror(errno));
		p += k;
		n -= (size_t)k;
	}
}

/* A fake destination's side of HELLO on one channel: echo it as HELLO_ACK. */
static void ack_hello(int fd)
{
	uint8_t m[32];

	read_full(fd, m, sizeof(m));
	T_ASSERT(m[6] == 10 && m[8] == 16, "not a HELLO: type %u, %u bytes", m[6], m[8]);
	m[6] = 11;
	T_ASSERT(write(fd, m, sizeof(m)) == (ssize_t)sizeof(m));
}

/* A fake source's HELLO on both channels (session 42, epoch 0); the acks
 * stay unread in the socket buffers. */
static void send_hellos(int bulk_peer, int urgent_peer)
{
	uint8_t m[32];

	for (uint32_t ch = 0; ch < 2; ch++) {
		m_hello(m, 42, ch, 0);
		T_ASSERT(write(ch ? urgent_peer : bulk_peer, m, 32) == 32);
	}
}
#define HOSTILE_ADDR 0x5e0000000000ull

enum hostile {
	H_MAGIC, H_VERSION, H_TYPE, H_RANGE, H_CSUM, H_TRUNC, H_HUGE_LEN,
	H_IN_USE,		/* not hostile: the layout's address is taken here */
	H_SECOND_HELLO,		/* a valid layout and page, then HELLO again on bulk */
	H_OVERSIZE,		/* a PAGE header longer than any page, and no payload */
	H_TRICKLE,		/* a PAGE whose bytes come one every 100 ms */
};

struct trickle {
	int fd;
	_Atomic bool stop;
};

/* One byte of a page every 100 ms: within any silence timeout, never done. */
static void *trickle_main(void *arg)
{
	struct trickle *t = arg;

	for (unsigned i = 0; i < 4096 && !atomic_load(&t->stop); i++) {
		if (send(t->fd, "x", 1, MSG_NOSIGNAL) != 1)
			break;
		usleep(100000);
	}
	return NULL;
}

static int test_hostile_dest(void *arg)
{
	enum hostile h = (enum hostile)(uintptr_t)arg;
	struct m_chans chan;
	int r, want;
	struct fl_migrate_dest *dst;
	uint8_t m[48 + 32 + 4096 + 32];
	size_t n = 0;
	void *p;

	uint8_t *taken = NULL;
	struct trickle tr = { .fd = -1 };
	pthread_t tth;
	uint64_t t0;

	if (h == H_IN_USE) {
		taken = mmap((void *)(uintptr_t)HOSTILE_ADDR + 4096, 4096, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		T_ASSERT(taken == (void *)(uintptr_t)(HOSTILE_ADDR + 4096));
		memset(taken, 0x77, 4096);
	}
	m_chans_open(&chan);
	T_OK(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = chan.bulk, .urgent_fd = chan.urgent,
		.resume = never_resume, .timeout_ms = h == H_TRICKLE ? 500 : t_scaled_ms(10000),
		.log = dst_log }, &dst));
	T_OK(fl_migrate_dest_start(dst));
	/* A valid layout first (one anon range of 16 pages), except where
	 * the header itself is the fault. */
	if (h == H_MAGIC || h == H_VERSION || h == H_TYPE || h == H_HUGE_LEN) {
		m_hdr_raw(m, h == H_MAGIC ? 0x53504c46u : M_MAGIC, h == H_VERSION ? 1 : M_VER, h == H_TYPE ? 77 : 1,
		    h == H_HUGE_LEN ? 0xfffffff0u : 32, 0);
		n = 16;
		want = h == H_HUGE_LEN ? -EBADMSG : -EPROTO;
	} else {
		m_layout1(m, HOSTILE_ADDR, 16 * 4096, FL_MEM_ANON, 4096);
		n = 48;
		uint8_t *pg = m + n;

		memset(pg + 32, 0xab, 4096);
		m_hdr(pg, 2, 16 + 4096);
		m_put64(pg + 16, h == H_RANGE ? HOSTILE_ADDR + 16 * 4096 : HOSTILE_ADDR);
		m_put64(pg + 24, XXH3_64bits(pg + 32, 4096) ^ (h == H_CSUM ? 1 : 0));
		n += h == H_TRUNC ? 16 + 16 + 100 : 16 + 16 + 4096;
		want = h == H_RANGE ? -ERANGE : -EBADMSG;
		if (h == H_IN_USE) {
			n = 48;
			want = -EEXIST;
		}
		if (h == H_OVERSIZE || h == H_TRICKLE) {
			/* The page's header only: its payload never comes
			 * (OVERSIZE: a length no PAGE has) or comes by the byte. */
			m_hdr(pg, 2, h == H_OVERSIZE ? 16 + (4u << 20) : 16 + 4096);
			n = 48 + 16;
			want = h == H_OVERSIZE ? -EBADMSG : -ETIMEDOUT;
		}
		if (h == H_SECOND_HELLO) {
			/* The same session's HELLO, as a reconnection would
			 * send it, in the middle of the live bulk stream. */
			m_hello(m + n, 42, 0, 1);
			n += 32;
			want = -EPROTO;
		}
	}
	send_hellos(chan.peer_bulk, chan.peer_urgent);
	T_ASSERT(write(chan.peer_bulk, m, n) == (ssize_t)n);
	if (h == H_TRUNC || h == H_HUGE_LEN)
		shutdown(chan.peer_bulk, SHUT_WR);
	t0 = t_now_ns();
	if (h == H_TRICKLE) {
		tr.fd = chan.peer_bulk;
		T_ASSERT(pthread_create(&tth, NULL, trickle_main, &tr) == 0);
	}
	r = fl_migrate_dest_wait(dst);
	T_ASSERT(r == want, "wait: %d (%s), want %d", r, strerror(-r), want);
	if (h == H_OVERSIZE)	/* refused from the header, not after a timeout */
		T_ASSERT(t_now_ns() - t0 < t_scaled_ns(5000), "refused after %llu ms",
			 (unsigned long long)((t_now_ns() - t0) / 1000000));
	if (h == H_TRICKLE) {
		/* The page's budget (timeout_ms: 500), not 4096 x 100 ms. */
		T_ASSERT(t_now_ns() - t0 < t_scaled_ns(5000), "a trickle held the destination %llu ms",
			 (unsigned long long)((t_now_ns() - t0) / 1000000));
		atomic_store(&tr.stop, true);
		pthread_join(tth, NULL);
	}
	if (taken) {
		/* What was there is untouched, and nothing was added. */
		for (size_t i = 0; i < 4096; i++)
			T_ASSERT(taken[i] == 0x77, "byte %zu of the mapping in the way changed", i);
		T_ASSERT(munmap(taken, 4096) == 0);
	}
	/* Refused before switchover: nothing of the layout is left mapped. */
	p = mmap((void *)(uintptr_t)HOSTILE_ADDR, 16 * 4096, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	T_ASSERT(p == (void *)(uintptr_t)HOSTILE_ADDR, "layout left mapped");
	munmap(p, 16 * 4096);
	fl_migrate_dest_free(dst);
	m_chans_close(&chan);
	return T_PASS;
}

static void resume_flag(const void *blob, size_t blob_len, void *ctx)
{
	(void)blob;
	T_ASSERT_EQ(blob_len, 3);
	atomic_store((_Atomic bool *)ctx, true);
}

/*
 * A source that switches over and then hangs: alive, connected, silent.
 * The faulting thread must not wait forever: after timeout_ms the page is
 * poisoned (SIGBUS) and wait says -ETIMEDOUT.
 */
static int test_silent_source(void *arg)
{
	struct m_chans chan;
	int r;
	struct fl_migrate_dest *dst;
	_Atomic bool resumed = false;
	uint8_t m[48 + 16 + 16 + 2 + 3];
	uint64_t v = 0, t0;
	uint8_t *mem = (uint8_t *)(uintptr_t)(HOSTILE_ADDR + (1ull << 30));

	(void)arg;
	m_chans_open(&chan);
	T_OK(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = chan.bulk, .urgent_fd = chan.urgent,
		.resume = resume_flag, .resume_ctx = &resumed, .timeout_ms = t_scaled_ms(300), .log = dst_log }, &dst));
	T_OK(fl_migrate_dest_start(dst));
	m_layout1(m, (uint64_t)(uintptr_t)mem, 16 * 4096, FL_MEM_ANON, 4096);
	m_hdr(m + 48, 4, 16 + 2 + 3);	/* SWITCHOVER: nothing present, blob "abc" */
	m_put64(m + 64, 16);
	m_put64(m + 72, 3);
	m[80] = m[81] = 0;
	memcpy(m + 82, "abc", 3);
	send_hellos(chan.peer_bulk, chan.peer_urgent);
	T_ASSERT(write(chan.peer_bulk, m, sizeof(m)) == (ssize_t)sizeof(m));
	T_ASSERT(T_WAIT_FOR(atomic_load(&resumed), 10000), "never resumed");
	t0 = t_now_ns();
	T_ASSERT(mig_read_or_sigbus((const volatile uint64_t *)(const void *)(mem + 5 * 4096), &v) == 1,
		 "read %llu from a page its source never sent", (unsigned long long)v);
	/* Not before the timeout: the request was waited for. */
	T_ASSERT(t_now_ns() - t0 >= t_scaled_ns(250), "SIGBUS after %llu ns", (unsigned long long)(t_now_ns() - t0));
	r = fl_migrate_dest_wait(dst);
	T_ASSERT_EQ(r, -ETIMEDOUT);
	/* Every other page too, also for a thread that comes later. */
	T_ASSERT(mig_read_or_sigbus((const volatile uint64_t *)(const void *)(mem + 15 * 4096), &v) == 1);
	fl_migrate_dest_free(dst);
	m_chans_close(&chan);
	return T_PASS;
}

struct drain_arg {
	int bulk, urgent;	/* urgent -1: someone else acks it */
	int hostile_kind0;	/* then a request before switchover */
};

static void hostile_request(int fd, int kind, uint64_t addr);

/* A fake destination's bulk side: HELLOs acked, then everything read. */
static void *drain(void *arg)
{
	struct drain_arg *a = arg;
	char buf[65536];

	ack_hello(a->bulk);
	if (a->urgent >= 0)
		ack_hello(a->urgent);
	if (a->hostile_kind0)
		hostile_request(a->urgent, 0, (uint64_t)a->hostile_kind0);
	while (read(a->bulk, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

struct hostile_src {
	int kind;
	int urgent_peer;
	bool paused;
};

static void hostile_request(int fd, int kind, uint64_t addr)
{
	uint8_t m[24];

	m_hdr_raw(m, kind == 1 ? M_MAGIC : 0xdeadbeef, M_VER, 5, 8, 0);
	m_put64(m + 16, addr);
	T_ASSERT(write(fd, m, 24) == 24);
}

/* At the pause: what the destination "sends" next arrives after switchover. */
static int quiesce_hostile(enum fl_migrate_quiesce action, void *ctx)
{
	struct hostile_src *h = ctx;

	T_ASSERT(action == FL_MIGRATE_PAUSE, "resumed after switchover");
	h->paused = true;
	if (h->kind != 0)
		hostile_request(h->urgent_peer, h->kind, 0x1000);	/* outside the layout */
	return 0;
}

/* A destination that speaks garbage before switchover (kind 0: the source
 * never pauses), or after it: a bad magic (2), a page outside the layout
 * (1). The source refuses, without crashing. */
static int test_hostile_source(void *arg)
{
	int kind = (int)(uintptr_t)arg;
	struct hostile_src hs = { .kind = kind };
	struct m_chans chan;
	int r;
	struct fl_migrate_range range;
	struct fl_migrate_source *src;
	pthread_t thr;
	uint8_t *mem = t_map(FL_MEM_ANON, 64 * 4096, NULL);

	memset(mem, 1, 64 * 4096);
	m_chans_open(&chan);
	struct drain_arg da = { chan.peer_bulk, chan.peer_urgent, kind == 0 ? (int)1 : 0 };

	T_ASSERT(pthread_create(&thr, NULL, drain, &da) == 0);
	range = (struct fl_migrate_range){ mem, 64 * 4096, FL_MEM_ANON };
	T_OK(fl_migrate_source_new(&(struct fl_migrate_source_opts){
		.sz = sizeof(struct fl_migrate_source_opts), .ranges = &range, .nranges = 1,
		.bulk_fd = chan.bulk, .urgent_fd = chan.urgent, .mode = FL_MIGRATE_POSTCOPY,
		.flags = FL_MIGRATE_NO_PUSH, .quiesce = quiesce_hostile, .quiesce_ctx = &hs,
		.log = dst_log }, &src));
	hs.urgent_peer = chan.peer_urgent;
	r = fl_migrate_source_run(src);
	T_ASSERT(r == (kind == 1 ? -ERANGE : -EPROTO), "run: %d", r);
	T_ASSERT(hs.paused == (kind != 0));
	memset(mem, 2, 64 * 4096);	/* still the application's, and writable */
	fl_migrate_source_free(src);
	close(chan.bulk);
	chan.bulk = -1;
	pthread_join(thr, NULL);
	m_chans_close(&chan);
	return T_PASS;
}

#define FLOOD 20000

struct flood {
	int fd;
	uint64_t base;
	uint64_t answered_bytes;
};

/* 20000 requests as fast as the socket takes them, then DONE. */
static void *flood_requests(void *arg)
{
	struct flood *f = arg;
	uint8_t m[24];

	for (unsigned i = 0; i < FLOOD; i++) {
		m_hdr(m, 5, 8);
		m_put64(m + 16, f->base + (i % 64) * 4096);
		T_ASSERT(write(f->fd, m, sizeof(m)) == (ssize_t)sizeof(m));
	}
	m_hdr(m, 7, 0);
	T_ASSERT(write(f->fd, m, 16) == 16);
	return NULL;
}

static void *flood_answers(void *arg)
{
	struct flood *f = arg;
	static uint8_t buf[1 << 16];
	/* Every answer is a whole page: header, prefix, 4096 bytes. */
	uint64_t want = (uint64_t)FLOOD * (16 + 16 + 4096);

	ack_hello(f->fd);
	while (f->answered_bytes < want) {
		ssize_t n = read(f->fd, buf, sizeof(buf));

		T_ASSERT(n > 0, "answers stopped after %llu bytes", (unsigned long long)f->answered_bytes);
		f->answered_bytes += (uint64_t)n;
	}
	return NULL;
}

struct flood_src {
	struct flood f;
	pthread_t requester;
};

static int quiesce_flood(enum fl_migrate_quiesce action, void *ctx)
{
	struct flood_src *fs = ctx;

	T_ASSERT(action == FL_MIGRATE_PAUSE);
	T_ASSERT(pthread_create(&fs->requester, NULL, flood_requests, &fs->f) == 0);
	return 0;
}

/* A destination that floods the source with requests (every page many
 * times over): each is answered, the source neither crashes nor stalls,
 * and ends on DONE. */
static int test_flood(void *arg)
{
	struct m_chans chan;
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	struct fl_migrate_range range;
	struct fl_migrate_source *src;
	struct flood_src fs = { 0 };
	struct flood answers = { 0 };
	pthread_t drainer, answerer;
	uint8_t *mem = t_map(FL_MEM_ANON, 64 * 4096, NULL);

	(void)arg;
	memset(mem, 1, 64 * 4096);
	m_chans_open(&chan);
	struct drain_arg da = { chan.peer_bulk, -1, 0 };

	T_ASSERT(pthread_create(&drainer, NULL, drain, &da) == 0);
	fs.f = (struct flood){ .fd = chan.peer_urgent, .base = (uint64_t)(uintptr_t)mem };
	answers.fd = chan.peer_urgent;
	T_ASSERT(pthread_create(&answerer, NULL, flood_answers, &answers) == 0);
	range = (struct fl_migrate_range){ mem, 64 * 4096, FL_MEM_ANON };
	T_OK(fl_migrate_source_new(&(struct fl_migrate_source_opts){
		.sz = sizeof(struct fl_migrate_source_opts), .ranges = &range, .nranges = 1,
		.bulk_fd = chan.bulk, .urgent_fd = chan.urgent, .mode = FL_MIGRATE_POSTCOPY,
		.flags = FL_MIGRATE_NO_PUSH, .quiesce = quiesce_flood, .quiesce_ctx = &fs,
		.log = dst_log }, &src));
	T_OK(fl_migrate_source_run(src));
	T_OK(fl_migrate_source_stats(src, &st));
	T_ASSERT_EQ(st.requests, FLOOD);
	T_ASSERT_EQ(st.pushed, 0);
	pthread_join(fs.requester, NULL);
	pthread_join(answerer, NULL);
	T_ASSERT_EQ(answers.answered_bytes, (uint64_t)FLOOD * (16 + 16 + 4096));
	fl_migrate_source_free(src);
	/* The source only read its memory to answer: untouched. */
	for (size_t i = 0; i < 64 * 4096; i++)
		T_ASSERT(mem[i] == 1, "byte %zu of the source's memory is %u after the flood", i, mem[i]);
	close(chan.bulk);
	chan.bulk = -1;
	pthread_join(drainer, NULL);
	m_chans_close(&chan);
	return T_PASS;
}

static int test_bad_opts(void *arg)
{
	struct fl_migrate_source *src;
	struct fl_migrate_dest *dst;
	uint8_t *mem = t_map(FL_MEM_ANON, 4 * 4096, NULL);
	struct fl_migrate_range range = { mem + 1, 4096, FL_MEM_ANON };
	struct fl_migrate_source_opts so = { .sz = sizeof(so), .ranges = &range, .nranges = 1,
					     .bulk_fd = 3, .urgent_fd = 4, .quiesce = quiesce_nop };

	(void)arg;
	T_ASSERT_EQ(fl_migrate_source_new(&so, &src), -EINVAL);	/* misaligned */
	range.addr = mem;
	so.quiesce = NULL;
	T_ASSERT_EQ(fl_migrate_source_new(&so, &src), -EINVAL);
	so.quiesce = quiesce_nop;
	so.urgent_fd = 3;
	T_ASSERT_EQ(fl_migrate_source_new(&so, &src), -EINVAL);
	so.urgent_fd = 4;
	so.sz = 0;
	T_ASSERT_EQ(fl_migrate_source_new(&so, &src), -EINVAL);
	so.sz = sizeof(so);
	T_OK(fl_migrate_source_new(&so, &src));
	T_OK(fl_migrate_source_cancel(src));
	T_ASSERT_EQ(fl_migrate_source_run(src), -ECANCELED);
	fl_migrate_source_free(src);
	T_ASSERT_EQ(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){ .sz = sizeof(struct fl_migrate_dest_opts),
		.bulk_fd = 3, .urgent_fd = 4 }, &dst), -EINVAL);
	T_ASSERT(fl_migrate_source_free(NULL) == NULL && fl_migrate_dest_free(NULL) == NULL);
	return T_PASS;
}

/* The sz rules of faultline(7) "Conventions", in and out. */
static int test_opts(void *arg)
{
	uint8_t *mem = t_map(FL_MEM_ANON, 4 * 4096, NULL);
	struct fl_migrate_range range = { mem, 4 * 4096, FL_MEM_ANON };
	struct {
		struct fl_migrate_source_opts o;
		uint8_t tail[24];
	} so = { .o = { .ranges = &range, .nranges = 1, .bulk_fd = 3, .urgent_fd = 4,
			.quiesce = quiesce_nop } };
	struct {
		struct fl_migrate_dest_opts o;
		uint8_t tail[24];
	} dso = { .o = { .bulk_fd = 3, .urgent_fd = 4, .resume = never_resume } };
	struct {
		struct fl_migrate_stats s;
		uint8_t tail[24];
	} st;
	struct fl_migrate_source *src;
	struct fl_migrate_dest *dst;

	(void)arg;
	so.o.sz = sizeof(so);		/* a newer caller, zero tail: accepted */
	T_OK(fl_migrate_source_new(&so.o, &src));
	memset(&st, 0xee, sizeof(st));
	st.s.sz = sizeof(st);
	T_OK(fl_migrate_source_stats(src, &st.s));
	T_ASSERT_EQ(st.s.sz, sizeof(st));
	for (size_t i = 0; i < sizeof(st.tail); i++)
		T_ASSERT_EQ(st.tail[i], 0);
	T_ASSERT_EQ(st.s.pages_sent, 0);
	/* An older caller's smaller struct: nothing written past its sz. */
	memset(&st, 0xee, sizeof(st));
	st.s.sz = offsetof(struct fl_migrate_stats, rounds);
	T_OK(fl_migrate_source_stats(src, &st.s));
	T_ASSERT_EQ(st.s.downtime_ns, 0);
	T_ASSERT_EQ(st.s.rounds, 0xeeeeeeeeu);
	st.s.sz = 0;
	T_ASSERT_EQ(fl_migrate_source_stats(src, &st.s), -EINVAL);
	fl_migrate_source_free(src);
	so.tail[5] = 1;			/* a field this build does not know */
	T_ASSERT_EQ(fl_migrate_source_new(&so.o, &src), -E2BIG);
	so.tail[5] = 0;
	so.o.sz = 8192;
	T_ASSERT_EQ(fl_migrate_source_new(&so.o, &src), -E2BIG);
	T_ASSERT_EQ(fl_migrate_source_new(NULL, &src), -EINVAL);

	dso.o.sz = sizeof(dso);
	T_OK(fl_migrate_dest_new(&dso.o, &dst));
	memset(&st, 0xee, sizeof(st));
	st.s.sz = sizeof(st);
	T_OK(fl_migrate_dest_stats(dst, &st.s));
	T_ASSERT_EQ(st.tail[0], 0);
	T_ASSERT_EQ(st.s.requests, 0);
	T_ASSERT_EQ(fl_migrate_dest_wait(dst), -EINVAL);	/* not started */
	fl_migrate_dest_free(dst);
	dso.tail[23] = 1;
	T_ASSERT_EQ(fl_migrate_dest_new(&dso.o, &dst), -E2BIG);
	dso.tail[23] = 0;
	dso.o.sz = 0;
	T_ASSERT_EQ(fl_migrate_dest_new(&dso.o, &dst), -EINVAL);
	T_ASSERT_EQ(fl_migrate_dest_new(NULL, &dst), -EINVAL);
	return T_PASS;
}

#define MC(sc, mode, mem) (&(struct mcase){ sc, mode, mem })
#define HUGE(mem) ((mem) == FL_MEM_HUGETLB || (mem) == MIXED ? T_HUGE_PAGES : 0u)
#define MODES(sc, name, mem, memname)                                                              \
	{ name "-precopy-" memname, test_migrate, MC(sc, FL_MIGRATE_PRECOPY, mem), 120, HUGE(mem) }, \
	{ name "-postcopy-" memname, test_migrate, MC(sc, FL_MIGRATE_POSTCOPY, mem), 120, HUGE(mem) }, \
	{ name "-hybrid-" memname, test_migrate, MC(sc, FL_MIGRATE_HYBRID, mem), 120, HUGE(mem) }
#define PER_MEM(mem, memname)                                                                       \
	MODES(S_MIGRATE, "migrate", mem, memname),                                                  \
	{ "ondemand-postcopy-" memname, test_migrate, MC(S_NOPUSH, FL_MIGRATE_POSTCOPY, mem), 120, HUGE(mem) }, \
	{ "ondemand-hybrid-" memname, test_migrate, MC(S_NOPUSH, FL_MIGRATE_HYBRID, mem), 120, HUGE(mem) }, \
	{ "source-killed-" memname, test_migrate, MC(S_KILL, FL_MIGRATE_POSTCOPY, mem), 120, HUGE(mem) }, \
	{ "cancel-" memname, test_migrate, MC(S_CANCEL, FL_MIGRATE_HYBRID, mem), 120, HUGE(mem) }, \
	{ "dest-fails-" memname, test_migrate, MC(S_DEST_FAILS, FL_MIGRATE_HYBRID, mem), 120, HUGE(mem) }

static const struct t_case cases[] = {
	PER_MEM(FL_MEM_ANON, "anon"),
	PER_MEM(FL_MEM_SHMEM, "shmem"),
	PER_MEM(FL_MEM_HUGETLB, "hugetlb"),
	/* One layout of three ranges, one of each type: pages numbered across
	 * ranges, the switchover bitmap over all of them. */
	MODES(S_MIGRATE, "migrate", MIXED, "mixed"),
	{ "ondemand-postcopy-mixed", test_migrate, MC(S_NOPUSH, FL_MIGRATE_POSTCOPY, MIXED), 120, T_HUGE_PAGES },
	{ "source-killed-mixed", test_migrate, MC(S_KILL, FL_MIGRATE_POSTCOPY, MIXED), 120, T_HUGE_PAGES },
	{ "hostile-dest-magic", test_hostile_dest, (void *)(uintptr_t)H_MAGIC, 30, 0 },
	{ "hostile-dest-version", test_hostile_dest, (void *)(uintptr_t)H_VERSION, 30, 0 },
	{ "hostile-dest-type", test_hostile_dest, (void *)(uintptr_t)H_TYPE, 30, 0 },
	{ "hostile-dest-length", test_hostile_dest, (void *)(uintptr_t)H_HUGE_LEN, 30, 0 },
	{ "hostile-dest-range", test_hostile_dest, (void *)(uintptr_t)H_RANGE, 30, 0 },
	{ "hostile-dest-checksum", test_hostile_dest, (void *)(uintptr_t)H_CSUM, 30, 0 },
	{ "hostile-dest-truncated", test_hostile_dest, (void *)(uintptr_t)H_TRUNC, 30, 0 },
	{ "hostile-dest-second-hello", test_hostile_dest, (void *)(uintptr_t)H_SECOND_HELLO, 30, 0 },
	{ "hostile-dest-oversize", test_hostile_dest, (void *)(uintptr_t)H_OVERSIZE, 30, 0 },
	{ "hostile-dest-trickle", test_hostile_dest, (void *)(uintptr_t)H_TRICKLE, 30, 0 },
	{ "hostile-source-before-switchover", test_hostile_source, (void *)(uintptr_t)0, 30, 0 },
	{ "hostile-source-range", test_hostile_source, (void *)(uintptr_t)1, 30, 0 },
	{ "hostile-source-magic", test_hostile_source, (void *)(uintptr_t)2, 30, 0 },
	{ "address-in-use", test_hostile_dest, (void *)(uintptr_t)H_IN_USE, 30, 0 },
	{ "silent-source", test_silent_source, NULL, 30, 0 },
	{ "hostile-source-flood", test_flood, NULL, 60, 0 },
	{ "bad-opts", test_bad_opts, NULL, 30, 0 },
	{ "opts", test_opts, NULL, 30, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
