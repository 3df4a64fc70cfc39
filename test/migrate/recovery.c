// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Postcopy recovery (lib/migrate): the source process and the destination
 * (the case process) talk through a relay that throttles the bulk channel,
 * so postcopy lasts seconds, and that cuts a channel with a reset on
 * command. Cuts recovered from (zero lost or wrong pages, a faulter blocked
 * across a cut gets the right bytes), recovery that times out (SIGBUS on
 * missing pages, never zeros, -ETIMEDOUT on both sides), the source killed
 * with recovery configured, reconnections refused by HELLO, the push's
 * priority after a request, per-thread blocked time, and hostile HELLOs.
 */
#include "mig-util.h"

#include <sys/ioctl.h>

#define LEN (8u << 20)

static uint64_t case_addr(enum fl_mem_type mem, unsigned slot)
{
	return 0x5f8000000000ull + ((uint64_t)slot * 4 + mem) * (64ull << 20);
}

static void need_mem(enum fl_mem_type mem)
{
	if (mem == FL_MEM_SHMEM)
		t_require_needs(T_MISSING_SHMEM);
	if (mem == FL_MEM_HUGETLB) {
		t_require_needs(T_MISSING_HUGETLB);
		t_need_huge(2 * LEN);
	}
}

static void src_cfg(struct m_src_cfg *c, enum fl_mem_type mem, unsigned slot, int relay_port)
{
	memset(c, 0, sizeof(*c));
	c->addr = case_addr(mem, slot);
	c->len = LEN;
	c->mem = mem;
	c->mode = FL_MIGRATE_POSTCOPY;
	snprintf(c->connect, sizeof(c->connect), "127.0.0.1:%d", relay_port);
	c->reconnect = M_RECONNECT_RELAY;
	c->recovery_ms = t_scaled_ms(10000);
	c->timeout_ms = t_scaled_ms(5000);
	c->small_sndbuf = true;
	c->expect_recoveries = -1;
}

/* ---- cut twice, and recovery that never comes (mig-util.h) ---------------- */

static int test_cut_twice(void *arg)
{
	enum fl_mem_type mem = (enum fl_mem_type)(uintptr_t)arg;
	struct m_src_cfg c;

	need_mem(mem);
	src_cfg(&c, mem, 0, 0);
	return m_cut_twice(NULL, &c);
}

struct lost_case {
	enum m_lost kind;
	enum fl_mem_type mem;
};

static int test_lost(void *arg)
{
	const struct lost_case *lc = arg;
	struct m_src_cfg c;

	need_mem(lc->mem);
	src_cfg(&c, lc->mem, 1 + lc->kind, 0);
	return m_recovery_lost(NULL, &c, lc->kind);
}

/* ---- a cut at switchover ------------------------------------------------------ */

/*
 * The relay passes HELLO and LAYOUT on bulk and holds the rest: the source
 * writes SWITCHOVER in full (into the socket buffers), the destination
 * never reads it. Then both channels are cut. The destination had not
 * switched over: it fails (-ECONNRESET or -EBADMSG), unmaps, never resumed.
 * The source had written SWITCHOVER: it must not resume the application
 * (the destination might run it); it tries to recover, nobody answers,
 * and it returns -ETIMEDOUT with the application still paused (the
 * source process checks both).
 */
/* Bytes the source wrote on bulk that the relay holds unread. */
static int bulk_queued(struct m_relay *r)
{
	int most = 0;

	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->npairs; i++) {
		int q = 0;

		if (r->pairs[i]->kind == 0 && ioctl(r->pairs[i]->down, FIONREAD, &q) == 0 && q > most)
			most = q;
	}
	pthread_mutex_unlock(&r->lock);
	return most;
}

static int test_cut_at_switchover(void *arg)
{
	struct fl_migrate_dest *dst;
	struct m_src_cfg c;
	struct m_relay relay;
	struct m_reaccept ra;
	struct m_dst d;
	int lfd, port, bulk, urgent, r;
	pid_t pid;
	void *p;

	(void)arg;
	m_listen(&lfd, &port);
	m_relay_start(&relay, port);
	/* HELLO (32 bytes) and LAYOUT (16 + 8 + 24) only. */
	atomic_store(&relay.bulk_limit, 32 + 48);
	src_cfg(&c, FL_MEM_ANON, 5, relay.port);
	c.recovery_ms = t_scaled_ms(1500);
	c.expect = -ETIMEDOUT;
	c.expect_recoveries = 0;
	m_dst_init(&d, c.addr, c.len);
	pid = m_relay_go(NULL, &c, &relay, lfd, &bulk, &urgent, &ra);
	dst = m_dst_start(NULL, &d, bulk, urgent, &ra, t_scaled_ms(1500));
	/* The layout is mapped: the destination waits for the rest. */
	T_ASSERT(T_WAIT_FOR(({
		unsigned char v;
		mincore(d.mem, 4096, &v) == 0;
	}), 10000), "the layout was never mapped");
	/* SWITCHOVER written in full: all of it waits in the relay's receive
	 * queue (a fixed sleep was not enough on a loaded machine). */
	T_ASSERT(T_WAIT_FOR((size_t)bulk_queued(&relay) >= 16 + 8 + 8 + (d.nblk + 7) / 8 + d.nblk * 8, 10000),
		 "SWITCHOVER not written: %d bytes queued", bulk_queued(&relay));
	/* Urgent held first (and every relay thread past its poll): the
	 * destination's ERROR, sent when it sees the bulk cut, must not
	 * reach the source, which would then end with that error
	 * (documented) instead of recovering into silence. */
	atomic_store(&relay.hold_urgent, true);
	usleep(50000);
	m_relay_cut(&relay, 0);
	m_relay_cut(&relay, 1);
	r = fl_migrate_dest_wait(dst);
	T_ASSERT(r == -ECONNRESET || r == -EBADMSG, "destination: %d (%s)", r, strerror(-r));
	T_ASSERT(!atomic_load(&d.resumed), "resumed without a SWITCHOVER");
	T_ASSERT_EQ(ra.calls, 0);	/* before switchover: no recovery */
	p = mmap(d.mem, c.len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	T_ASSERT(p == d.mem, "the destination's range is still mapped");
	munmap(p, c.len);
	m_source_reap(pid);
	m_case_end(dst, &relay, lfd, bulk, urgent);
	return T_PASS;
}

/* ---- reconnections refused by HELLO ------------------------------------------ */

struct hostile_reaccept {
	struct m_reaccept ra;
	struct m_relay *relay;
	unsigned calls;
	int peers[8];
	unsigned npeers;
};

/* A pair of connected sockets whose far ends already said HELLO. */
static void fake_pair(struct hostile_reaccept *h, uint64_t session, uint32_t epoch, int *ret_bulk,
		      int *ret_urgent)
{
	for (uint32_t ch = 0; ch < 2; ch++) {
		uint8_t m[32];
		int sv[2];

		T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
		m_hello(m, session, ch, epoch);
		T_ASSERT(write(sv[1], m, 32) == 32);
		h->peers[h->npeers++] = sv[1];
		*(ch ? ret_urgent : ret_bulk) = sv[0];
	}
}

/* First another migration's session, then ours with a stale epoch, then
 * the real source. */
static int hostile_reaccept(void *ctx, int *ret_bulk, int *ret_urgent)
{
	struct hostile_reaccept *h = ctx;
	uint64_t session = atomic_load(&h->relay->session);

	switch (h->calls++) {
	case 0:
		fake_pair(h, session ^ 0x5a5a, 7, ret_bulk, ret_urgent);
		return 0;
	case 1:
		fake_pair(h, session, 0, ret_bulk, ret_urgent);
		return 0;
	default:
		return m_reaccept(&h->ra, ret_bulk, ret_urgent);
	}
}

static int test_hostile_reconnect(void *arg)
{
	struct hostile_reaccept h = { 0 };
	struct fl_migrate_dest *dst;
	struct m_src_cfg c;
	struct m_relay relay;
	struct m_dst d;
	int lfd, port, bulk, urgent;
	pid_t pid;

	(void)arg;
	m_listen(&lfd, &port);
	m_relay_start(&relay, port);
	atomic_store(&relay.bulk_rate, 2u << 20);
	src_cfg(&c, FL_MEM_ANON, 3, relay.port);
	c.expect_recoveries = 1;
	m_dst_init(&d, c.addr, c.len);
	pid = m_relay_go(NULL, &c, &relay, lfd, &bulk, &urgent, &h.ra);
	h.relay = &relay;
	T_OK(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = bulk, .urgent_fd = urgent,
		.resume = m_on_resume, .resume_ctx = &d, .timeout_ms = t_scaled_ms(5000),
		.log = m_dst_log, .log_ctx = &d, .reconnect = hostile_reaccept, .reconnect_ctx = &h,
		.recovery_ms = t_scaled_ms(10000) }, &dst));
	T_OK(fl_migrate_dest_start(dst));
	T_ASSERT(T_WAIT_FOR(atomic_load(&d.resumed), 30000), "never resumed");
	T_ASSERT(atomic_load(&relay.session) != 0);
	usleep(100000);
	m_relay_cut(&relay, 0);
	atomic_store(&relay.bulk_rate, 0);
	T_ASSERT_EQ(fl_migrate_dest_wait(dst), 0);
	T_ASSERT(m_dst_logged(&d, "another migration"), "the foreign session was not refused");
	T_ASSERT(m_dst_logged(&d, "stale epoch"), "the stale epoch was not refused");
	T_ASSERT(h.calls >= 3);
	T_ASSERT_EQ(m_recoveries(dst), 1);
	m_dst_check_all(&d);
	m_source_reap(pid);
	fl_migrate_dest_free(dst);
	m_relay_stop(&relay);
	for (unsigned i = 0; i < h.npeers; i++)
		close(h.peers[i]);
	close(lfd);
	close(bulk);
	close(urgent);
	return T_PASS;
}

/* ---- the source reconnected to a fake destination ------------------------------ */

/*
 * After a cut in postcopy the source's reconnect() leads it to a fake
 * destination (the real one waits in vain and times out). The fake reads
 * each HELLO and answers wrongly: another session in the HELLO_ACK,
 * another epoch, a correct handshake then a RECEIVED of the wrong length,
 * or garbage. The source must refuse each (close the pair), call
 * reconnect() again and again until recovery_ms, never resume the
 * application, and return -ETIMEDOUT (the source process checks the last
 * two).
 */
enum fake_answer { FA_SESSION, FA_EPOCH, FA_RECEIVED_LEN, FA_GARBAGE };

struct fake_dest {
	enum fake_answer answer;
	int lfd;
	_Atomic bool stop;
	unsigned bulk_hellos, urgent_hellos;
	unsigned kept_open;		/* pairs the source did not close after the answer */
	uint64_t session;		/* of the first HELLO */
	bool same_session, epochs_rise;
	uint32_t last_epoch;
	int open[64];			/* answered, not yet seen closed */
	unsigned nopen;
	pthread_t th;
};

/* The source closed (or reset) fd: EOF or an error within 500 ms. */
static bool closed_by_peer(int fd)
{
	uint64_t t0 = t_now_ns();

	while (t_now_ns() - t0 < 500000000ull) {
		struct pollfd f = { .fd = fd, .events = POLLIN };
		uint8_t buf[4096];

		if (poll(&f, 1, 50) <= 0)
			continue;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return true;
	}
	return false;
}

/* A new attempt: the pairs answered before must be closed by now. */
static void fake_check_closed(struct fake_dest *f)
{
	for (unsigned i = 0; i < f->nopen; i++) {
		if (!closed_by_peer(f->open[i]))
			f->kept_open++;
		close(f->open[i]);
	}
	f->nopen = 0;
}

static void fake_answer_hello(struct fake_dest *f, int fd)
{
	uint8_t m[32], out[64 + 16 + 8 + 256];
	struct timeval tv = { 1, 0 };
	uint32_t ch, epoch;
	size_t n = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (size_t k = 0; k < sizeof(m);) {
		ssize_t r = read(fd, m + k, sizeof(m) - k);

		if (r <= 0)
			return;		/* the source gave up this pair already */
		k += (size_t)r;
	}
	T_ASSERT(m[6] == 10, "not a HELLO: type %u", m[6]);
	memcpy(&ch, m + 24, 4);
	memcpy(&epoch, m + 28, 4);
	if (ch == 0) {
		uint64_t session;

		memcpy(&session, m + 16, 8);
		fake_check_closed(f);
		if (f->bulk_hellos++ == 0) {
			f->session = session;
			f->same_session = f->epochs_rise = true;
		} else {
			f->same_session &= session == f->session;
			f->epochs_rise &= epoch > f->last_epoch;
		}
		f->last_epoch = epoch;
		f->epochs_rise &= epoch >= 1;
	} else {
		f->urgent_hellos++;
	}
	memcpy(out, m, 32);
	out[6] = 11;
	n = 32;
	switch (f->answer) {
	case FA_SESSION:
		out[16] ^= 0x5a;
		break;
	case FA_EPOCH:
		m_put32(out + 28, epoch + 1);
		break;
	case FA_RECEIVED_LEN:
		if (ch == 0) {
			/* npages right, the bitmap 10 bytes instead of 256. */
			m_hdr(out + 32, 12, 8 + 10);
			m_put64(out + 48, LEN / M_BLK);
			memset(out + 56, 0xff, 10);
			n = 32 + 16 + 8 + 10;
		}
		break;
	case FA_GARBAGE:
		for (size_t i = 0; i < 64; i++)
			out[i] = (uint8_t)(0xa5 ^ (i * 37));
		n = 64;
		break;
	}
	if (write(fd, out, n) != (ssize_t)n)
		return;
	T_ASSERT(f->nopen < 64);
	f->open[f->nopen++] = dup(fd);
}

static void *fake_dest_main(void *arg)
{
	struct fake_dest *f = arg;

	while (!atomic_load(&f->stop)) {
		struct pollfd p = { .fd = f->lfd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, 20) <= 0)
			continue;
		fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		fake_answer_hello(f, fd);
		close(fd);
	}
	fake_check_closed(f);
	return NULL;
}

static int test_fake_dest_reconnect(void *arg)
{
	struct fake_dest f = { .answer = (enum fake_answer)(uintptr_t)arg };
	struct fl_migrate_dest *dst;
	struct m_src_cfg c;
	struct m_relay relay;
	struct m_reaccept ra;
	struct m_dst d;
	uint64_t t0, waited, v;
	int lfd, port, fport, bulk, urgent;
	pid_t pid;

	m_listen(&lfd, &port);
	m_listen(&f.lfd, &fport);
	m_relay_start(&relay, port);
	atomic_store(&relay.bulk_rate, 1u << 20);
	src_cfg(&c, FL_MEM_ANON, 6 + f.answer, relay.port);
	snprintf(c.reconnect_to, sizeof(c.reconnect_to), "127.0.0.1:%d", fport);
	c.recovery_ms = t_scaled_ms(3000);
	/* Longer than recovery_ms: a refusal must not wait for the timeout. */
	c.timeout_ms = t_scaled_ms(20000);
	c.expect = -ETIMEDOUT;
	c.expect_recoveries = 0;
	m_dst_init(&d, c.addr, c.len);
	T_ASSERT(pthread_create(&f.th, NULL, fake_dest_main, &f) == 0);
	pid = m_relay_go(NULL, &c, &relay, lfd, &bulk, &urgent, &ra);
	dst = m_dst_start(NULL, &d, bulk, urgent, &ra, t_scaled_ms(3000));
	T_ASSERT(T_WAIT_FOR(atomic_load(&d.resumed), 30000), "never resumed");
	T_ASSERT(XXH3_64bits(d.mem, M_BLK) == d.hashes[0], "block 0 differs");
	t0 = t_now_ns();
	m_relay_cut(&relay, 0);
	m_relay_cut(&relay, 1);
	m_source_reap(pid);
	waited = t_now_ns() - t0;
	/* It kept trying until recovery_ms, not stopped by the first fake. */
	T_ASSERT(waited >= t_scaled_ns(2800), "the source gave up after %llu ms", (unsigned long long)(waited / 1000000));
	atomic_store(&f.stop, true);
	pthread_join(f.th, NULL);
	t_log("fake destination: %u bulk and %u urgent HELLOs, %u kept open", f.bulk_hellos, f.urgent_hellos,
	      f.kept_open);
	/* Backoff 20, 40, ... 500 ms within 3 s: several attempts, each
	 * refused at once, each a new epoch of the same session. */
	T_ASSERT(f.bulk_hellos >= 3, "%u reconnections reached the fake", f.bulk_hellos);
	T_ASSERT_EQ(f.kept_open, 0);
	T_ASSERT(f.same_session && f.epochs_rise, "HELLOs of another session, or epochs not rising");
	/* Refused on the bulk HELLO_ACK: urgent never said HELLO. */
	if (f.answer == FA_RECEIVED_LEN)
		T_ASSERT(f.urgent_hellos >= f.bulk_hellos - 1, "urgent HELLOs %u", f.urgent_hellos);
	else
		T_ASSERT_EQ(f.urgent_hellos, 0);
	/* The real destination never got its source back: SIGBUS, never zeros. */
	T_ASSERT_EQ(fl_migrate_dest_wait(dst), -ETIMEDOUT);
	T_ASSERT_EQ(mig_read_or_sigbus((const volatile uint64_t *)(const void *)(d.mem + (d.nblk - 2) * M_BLK), &v),
		    1);
	T_ASSERT(XXH3_64bits(d.mem, M_BLK) == d.hashes[0], "block 0 changed after the failure");
	fl_migrate_dest_free(dst);
	m_relay_stop(&relay);
	close(f.lfd);
	close(lfd);
	close(bulk);
	close(urgent);
	return T_PASS;
}

/* ---- push priority ------------------------------------------------------------ */

/*
 * The push is throttled to 512 KiB/s, far behind page P when the
 * application faults there. Soon after, the pages after P are present (the
 * push went there next) while pages between the push's position and P are
 * not: the push jumped, it did not get there in order.
 */
static int test_push_priority(void *arg)
{
	const size_t P = 1500;
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	struct fl_migrate_dest *dst;
	struct m_src_cfg c;
	struct m_relay relay;
	struct m_dst d;
	uint64_t v;
	unsigned before = 0;
	int lfd, port, bulk, urgent;
	pid_t pid;

	(void)arg;
	m_listen(&lfd, &port);
	m_relay_start(&relay, port);
	atomic_store(&relay.bulk_rate, 512u << 10);
	src_cfg(&c, FL_MEM_ANON, 4, relay.port);
	c.reconnect = M_RECONNECT_NONE;
	m_dst_init(&d, c.addr, c.len);
	pid = m_relay_go(NULL, &c, &relay, lfd, &bulk, &urgent, NULL);
	dst = m_dst_start(NULL, &d, bulk, urgent, NULL, 0);
	T_ASSERT(T_WAIT_FOR(atomic_load(&d.resumed), 30000), "never resumed");
	T_ASSERT_EQ(mig_read_or_sigbus((const volatile uint64_t *)(const void *)(d.mem + P * M_BLK), &v), 0);
	T_ASSERT(T_WAIT_FOR(({
		bool all = true;
		for (size_t p = P + 1; p < P + 64; p++)
			all = all && m_present(d.mem + p * M_BLK);
		all;
	}), 8000), "the pages after the fault were not pushed first");
	for (size_t p = 1000; p < 1400; p++)
		before += m_present(d.mem + p * M_BLK);
	T_ASSERT(before == 0, "%u pages before the fault arrived too: the push did not jump", before);
	T_OK(fl_migrate_dest_stats(dst, &st));
	T_ASSERT_EQ(st.requests, 1);
	atomic_store(&relay.bulk_rate, 0);
	T_ASSERT_EQ(fl_migrate_dest_wait(dst), 0);
	m_dst_check_all(&d);
	m_source_reap(pid);
	m_case_end(dst, &relay, lfd, bulk, urgent);
	return T_PASS;
}

/* ---- hostile HELLOs --------------------------------------------------------- */

enum hello_fault { HF_CHANNEL, HF_VERSION, HF_SWAPPED, HF_EPOCH, HF_ACK };

static int quiesce_never(enum fl_migrate_quiesce action, void *ctx)
{
	(void)action;
	(void)ctx;
	T_ASSERT(0, "paused by a hostile peer");
	return 0;
}

/* A fake peer's HELLOs to the destination, each fault in turn; the
 * destination refuses with -EPROTO and its log says why. HF_ACK: a fake
 * destination whose HELLO_ACK does not echo the source's HELLO. */
static int test_hello(void *arg)
{
	enum hello_fault hf = (enum hello_fault)(uintptr_t)arg;
	struct m_chans chan;
	int r;
	const char *why = NULL;
	uint8_t m[64];

	m_chans_open(&chan);
	if (hf == HF_ACK) {
		uint8_t *mem = t_map(FL_MEM_ANON, 4 * 4096, NULL);
		struct fl_migrate_range range = { mem, 4 * 4096, FL_MEM_ANON };
		struct fl_migrate_source *src;
		size_t got = 0;

		T_OK(fl_migrate_source_new(&(struct fl_migrate_source_opts){
			.sz = sizeof(struct fl_migrate_source_opts), .ranges = &range, .nranges = 1,
			.bulk_fd = chan.bulk, .urgent_fd = chan.urgent, .mode = FL_MIGRATE_POSTCOPY,
			.quiesce = quiesce_never, .timeout_ms = t_scaled_ms(2000), .log = m_src_log }, &src));
		/* Our "ACK", of another session, is there before the HELLO. */
		m_hello(m, 12345, 0, 0);
		m[6] = 11;	/* HELLO_ACK */
		T_ASSERT(write(chan.peer_bulk, m, 32) == 32);
		r = fl_migrate_source_run(src);
		T_ASSERT_EQ(r, -EPROTO);
		while (got < 32) {
			ssize_t n = read(chan.peer_bulk, m + got, 32 - got);

			T_ASSERT(n > 0);
			got += (size_t)n;
		}
		T_ASSERT(m[6] == 10, "the source's first message is %u, not HELLO", m[6]);
		memset(mem, 1, 4 * 4096);	/* refused before switchover: its memory is intact */
		fl_migrate_source_free(src);
	} else {
		struct fl_migrate_dest *dst;
		struct m_dst d;

		m_dst_init(&d, 0x5e1000000000ull, 16 * 4096);
		T_OK(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
			.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = chan.bulk, .urgent_fd = chan.urgent,
			.resume = never_resume, .timeout_ms = t_scaled_ms(5000), .log = m_dst_log, .log_ctx = &d }, &dst));
		T_OK(fl_migrate_dest_start(dst));
		for (uint32_t ch = 0; ch < 2; ch++) {
			uint32_t kind = ch;

			if (hf == HF_CHANNEL && ch == 0)
				kind = 1;
			if (hf == HF_SWAPPED)
				kind = 1 - ch;
			m_hello(m, 99, kind, hf == HF_EPOCH ? 3 : 0);
			if (hf == HF_VERSION)
				m[4] = 1;
			T_ASSERT(write(ch ? chan.peer_urgent : chan.peer_bulk, m, 32) == 32);
		}
		r = fl_migrate_dest_wait(dst);
		T_ASSERT_EQ(r, -EPROTO);
		why = hf == HF_VERSION ? "protocol version 1" : hf == HF_EPOCH ? "first HELLO with epoch 3" :
									 "HELLO for the urgent channel on the bulk";
		T_ASSERT(m_dst_logged(&d, why), "the log does not say '%s': %s", why, d.log);
		/* The source is told why, on the bulk channel. */
		T_ASSERT(read(chan.peer_bulk, m, 64) >= 20);
		fl_migrate_dest_free(dst);
	}
	m_chans_close(&chan);
	return T_PASS;
}

/* ---- the source's own timeout ------------------------------------------------ */

struct fake_dst {
	int bulk, urgent;
	bool read_bulk;			/* false: never read after HELLO */
	_Atomic bool stop;
};

static void ack_one(int fd)
{
	uint8_t m[32];
	size_t got = 0;

	while (got < 32) {
		ssize_t n = read(fd, m + got, 32 - got);

		T_ASSERT(n > 0);
		got += (size_t)n;
	}
	T_ASSERT(m[6] == 10, "not a HELLO");
	m[6] = 11;
	T_ASSERT(write(fd, m, 32) == 32);
}

/* A destination that answers HELLO, then is silent: it reads the bulk
 * channel (and never says RESUMED), or reads nothing at all. */
static void *fake_dst_main(void *arg)
{
	struct fake_dst *f = arg;
	char buf[65536];

	ack_one(f->bulk);
	ack_one(f->urgent);
	while (!atomic_load(&f->stop)) {
		struct pollfd p = { .fd = f->bulk, .events = POLLIN };

		if (!f->read_bulk || poll(&p, 1, 20) <= 0) {
			usleep(20000);
			continue;
		}
		if (read(f->bulk, buf, sizeof(buf)) <= 0)
			break;
	}
	return NULL;
}

struct pause_seen {
	bool paused, resumed;
};

static int quiesce_note(enum fl_migrate_quiesce action, void *ctx)
{
	struct pause_seen *p = ctx;

	if (action == FL_MIGRATE_PAUSE)
		p->paused = true;
	else
		p->resumed = true;
	return 0;
}

/*
 * read_bulk: the destination takes every page but never says RESUMED:
 * after switchover the source waits timeout_ms for it, then -ETIMEDOUT
 * (and it does not resume the application: the destination may run it).
 * !read_bulk: a send blocked timeout_ms without progress before switchover
 * is -ETIMEDOUT, and the application is resumed, intact.
 */
static int test_source_timeout(void *arg)
{
	bool read_bulk = arg != NULL;
	size_t len = read_bulk ? 64 * 4096 : 64u << 20;
	uint8_t *mem = t_map(FL_MEM_ANON, len, NULL);
	struct fl_migrate_range range = { mem, len, FL_MEM_ANON };
	struct fake_dst f = { .read_bulk = read_bulk };
	struct pause_seen ps = { 0 };
	struct fl_migrate_source *src;
	int bulk, urgent, lfd, port, r;
	char addr[32];
	uint64_t t0, took;
	pthread_t th;

	memset(mem, 3, len);
	m_listen(&lfd, &port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	T_OK(fl_migrate_connect(addr, 5000, &bulk, &urgent));
	T_OK(fl_migrate_accept(lfd, 5000, &f.bulk, &f.urgent));
	/* The helpers' sockets are non-blocking; the fake reads block. */
	fcntl(f.bulk, F_SETFL, 0);
	fcntl(f.urgent, F_SETFL, 0);
	T_ASSERT(pthread_create(&th, NULL, fake_dst_main, &f) == 0);
	T_OK(fl_migrate_source_new(&(struct fl_migrate_source_opts){
		.sz = sizeof(struct fl_migrate_source_opts), .ranges = &range, .nranges = 1,
		.bulk_fd = bulk, .urgent_fd = urgent,
		.mode = read_bulk ? FL_MIGRATE_POSTCOPY : FL_MIGRATE_PRECOPY, .flags = FL_MIGRATE_NO_PUSH,
		.quiesce = quiesce_note, .quiesce_ctx = &ps, .timeout_ms = 500, .log = m_src_log }, &src));
	t0 = t_now_ns();
	r = fl_migrate_source_run(src);
	took = t_now_ns() - t0;
	T_ASSERT_EQ(r, -ETIMEDOUT);
	T_ASSERT(took >= 450000000ull && took < t_scaled_ns(10000), "timed out after %llu ms",
		 (unsigned long long)(took / 1000000));
	if (read_bulk) {
		T_ASSERT(ps.paused && !ps.resumed, "resumed after switchover");
	} else {
		T_ASSERT(!ps.paused && !ps.resumed, "paused before the rounds ended");
		memset(mem, 4, len);	/* intact and writable */
	}
	fl_migrate_source_free(src);
	atomic_store(&f.stop, true);
	pthread_join(th, NULL);
	close(f.bulk);
	close(f.urgent);
	close(bulk);
	close(urgent);
	close(lfd);
	return T_PASS;
}

#define HUGE(mem) ((mem) == FL_MEM_HUGETLB ? T_HUGE_PAGES : 0u)
#define LC(kind, mem) (&(struct lost_case){ kind, mem })
#define PER_MEM(mem, name)                                                                      \
	{ "cut-twice-" name, test_cut_twice, (void *)(uintptr_t)(mem), 120, HUGE(mem) },        \
	{ "recovery-timeout-" name, test_lost, LC(M_LOST_RECONNECT_FAILS, mem), 60, HUGE(mem) },     \
	{ "source-killed-recovering-" name, test_lost, LC(M_LOST_SOURCE_KILLED, mem), 60, HUGE(mem) }

static const struct t_case cases[] = {
	PER_MEM(FL_MEM_ANON, "anon"),
	PER_MEM(FL_MEM_SHMEM, "shmem"),
	PER_MEM(FL_MEM_HUGETLB, "hugetlb"),
	{ "hostile-reconnect", test_hostile_reconnect, NULL, 60, 0 },
	{ "fake-dest-reconnect-session", test_fake_dest_reconnect, (void *)(uintptr_t)FA_SESSION, 60, 0 },
	{ "fake-dest-reconnect-epoch", test_fake_dest_reconnect, (void *)(uintptr_t)FA_EPOCH, 60, 0 },
	{ "fake-dest-reconnect-received-length", test_fake_dest_reconnect, (void *)(uintptr_t)FA_RECEIVED_LEN,
	  60, 0 },
	{ "fake-dest-reconnect-garbage", test_fake_dest_reconnect, (void *)(uintptr_t)FA_GARBAGE, 60, 0 },
	{ "cut-at-switchover", test_cut_at_switchover, NULL, 60, 0 },
	{ "push-priority", test_push_priority, NULL, 60, 0 },
	{ "source-timeout-resumed", test_source_timeout, (void *)1, 30, 0 },
	{ "source-timeout-send", test_source_timeout, NULL, 30, 0 },
	{ "hello-wrong-channel", test_hello, (void *)(uintptr_t)HF_CHANNEL, 30, 0 },
	{ "hello-swapped-channels", test_hello, (void *)(uintptr_t)HF_SWAPPED, 30, 0 },
	{ "hello-wrong-version", test_hello, (void *)(uintptr_t)HF_VERSION, 30, 0 },
	{ "hello-first-epoch", test_hello, (void *)(uintptr_t)HF_EPOCH, 30, 0 },
	{ "hello-ack-mismatch", test_hello, (void *)(uintptr_t)HF_ACK, 30, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
