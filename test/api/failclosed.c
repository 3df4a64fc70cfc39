// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Failing closed: a page faultline cannot deliver is SIGBUS for the access,
 * never zeros, never a hang.
 *  (a) store read errors poison the failing pages, other pages stay right;
 *  (b) the same with POISON masked (SIGBUS sent to the faulting thread);
 *  (c) the handler process is killed mid-way: without recovery the guard
 *      fails the process closed; with a new handler that re-takes the uffd,
 *      every page ends up right;
 *  (d) fl_engine_free poisons what it leaves unresolved in other processes;
 *  (e) fl_poison_absent keeps present pages and poisons the others;
 *  plus populate with a failing store, and the guard's state machine.
 */
#include "util.h"

#define LEN (16 * U_MIB)

/* ---- (a)/(b): store read errors -------------------------------------------------------- */

struct se_cfg {
	const struct u_cfg *cfg;
	unsigned rflags;
};

struct probe_thr {
	pthread_t tid;
	const uint8_t *p, *expect;
	size_t len;
	int got;
};

static void *probe_main(void *arg)
{
	struct probe_thr *pt = arg;
	pt->got = u_probe_cmp(pt->p, pt->expect, pt->len);
	return NULL;
}

/* Wait until the background filler has stopped making progress. */
static void wait_fill_settled(struct fl_region *r)
{
	uint64_t last = UINT64_MAX, end = t_deadline_ms(20000);
	while (t_now_ns() < end) {
		uint64_t now = fl_region_resolved_pages(r);
		if (now == last)
			return;
		last = now;
		t_sleep_ms(t_scaled_ms(100));
	}
}

static int c_store_error(void *arg)
{
	const struct se_cfg *sc = arg;
	const struct u_cfg *c = sc->cfg;
	size_t psz = u_cfg_psz(c), npages = LEN / psz;
	size_t bad_first = npages / 4, nbad = c->mem == FL_MEM_HUGETLB ? 1 : 4;
	uint64_t fail[2] = { bad_first * psz + 10, nbad * psz - 20 };
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_region_stats st;
	struct probe_thr pt;
	uint8_t *img, *base;
	bool poison;

	u_require_cfg(c, LEN);
	u_bus_install();
	e = u_engine(0, 1);
	poison = fl_engine_features(e) & UFFD_FEATURE_POISON;
	if (getenv("FL_TEST_EXPECT_NO_POISON"))
		T_ASSERT(!poison, "POISON masked, but the engine enabled it");
	img = u_image(LEN, 0, 0xe770);
	store = u_mem_store(img, LEN);
	T_OK(fl_store_ctl(store, FL_STORE_CTL_FAIL_AT, fail));
	r = u_region(e, c, LEN, store, sc->rflags);
	base = fl_region_addr(r);
	if (sc->rflags & FL_REGION_BACKGROUND)
		wait_fill_settled(r);
	for (size_t p = 0; p < npages; p++) {
		bool bad = p >= bad_first && p < bad_first + nbad;
		int got = u_probe_cmp(base + p * psz, img + p * psz, psz);
		T_ASSERT(got == (bad ? -1 : 0), "page %zu: %s", p,
			 got < 0 ? "SIGBUS" : got ? (u_all_zero(base + p * psz, psz) ? "zeros" : "wrong bytes")
				  : "read fine");
	}
	st = u_rstats_settled(r);
	u_log_rstats(c->name, &st);
	T_ASSERT(st.store_errors >= 1);
	T_ASSERT_EQ(st.pages_poisoned, nbad);
	/* Still failing on a second touch, from another thread too. */
	T_ASSERT_EQ(u_probe_byte(base + bad_first * psz), -1);
	pt = (struct probe_thr){ .p = base + (bad_first + nbad - 1) * psz,
				 .expect = img + (bad_first + nbad - 1) * psz, .len = psz };
	T_ASSERT(pthread_create(&pt.tid, NULL, probe_main, &pt) == 0);
	pthread_join(pt.tid, NULL);
	T_ASSERT_EQ(pt.got, -1);
	/* The pages around the failing ones are intact. */
	U_CHECK(base, img, bad_first * psz, psz);
	U_CHECK(base + (bad_first + nbad) * psz, img + (bad_first + nbad) * psz,
		LEN - (bad_first + nbad) * psz, psz);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

static const struct se_cfg se_cfgs[] = {
	{ &u_cfgs[0], 0 },
	{ &u_cfgs[1], 0 },
	{ &u_cfgs[2], 0 },
	{ &u_cfgs[3], 0 },
	{ &u_cfgs[4], 0 },
	{ &u_cfgs[0], FL_REGION_BACKGROUND },
	{ &u_cfgs[2], FL_REGION_BACKGROUND },
};

/* (b): rerun an (a) case in a process where POISON is masked from the start. */
static int c_nopoison(void *arg)
{
	setenv("FL_TEST_EXPECT_NO_POISON", "1", 1);
	return u_run_masked("poison", arg);
}

/* ---- populate with a failing store ---------------------------------------------------------- */

static int c_populate_error(void *arg)
{
	static const struct u_cfg anon = { "anon", FL_MEM_ANON, FL_MODE_MISSING };
	size_t npages = 1024, bad = 300;
	uint64_t fail[2] = { bad * U_PAGE, U_PAGE };
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_region_stats st;
	uint8_t *img, *base;
	int ret;
	(void)arg;

	u_bus_install();
	e = u_engine(0, 1);
	img = u_image(npages * U_PAGE, 0, 0x909e);
	store = u_mem_store(img, npages * U_PAGE);
	T_OK(fl_store_ctl(store, FL_STORE_CTL_FAIL_AT, fail));
	r = u_region(e, &anon, npages * U_PAGE, store, 0);
	base = fl_region_addr(r);
	ret = fl_region_populate(r, 0, npages * U_PAGE);
	st = u_rstats_settled(r);
	t_log("populate: %d, resolved %llu of %zu, poisoned %llu", ret,
	      (unsigned long long)fl_region_resolved_pages(r), npages,
	      (unsigned long long)st.pages_poisoned);
	T_ASSERT_EQ(ret, -EIO);
	/* region.h: "failed pages are poisoned", the others resolved. Without
	 * POISON the failed page stays missing and its fault fails closed
	 * (SIGBUS to the faulting thread) when it is touched. */
	T_ASSERT_EQ(st.pages_poisoned, t_has(FL_FEATURE_BIT(FL_FEATURE_POISON)) ? 1 : 0);
	T_ASSERT_EQ(fl_region_resolved_pages(r), npages - 1);
	for (size_t p = 0; p < npages; p++)
		T_ASSERT(u_probe_cmp(base + p * U_PAGE, img + p * U_PAGE, U_PAGE) == (p == bad ? -1 : 0),
			 "page %zu", p);
	st = u_rstats_settled(r);
	/* nothing was left for demand faults but the failed page without POISON */
	T_ASSERT_EQ(u_faults(&st), t_has(FL_FEATURE_BIT(FL_FEATURE_POISON)) ? 0 : 1);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- (c): the handler process is killed --------------------------------------------------------- */

#define HK_LEN (32 * U_MIB)
#define HK_NPAGES (HK_LEN / U_PAGE)
#define HK_SEED 0x4b11

struct hk_info {		/* A -> handler */
	uint64_t addr, len, features;
	int32_t pid, fdnum;
};

struct hk_shared {		/* between the case process and A */
	struct u_verdicts v;
	_Atomic long killed_at;
	_Atomic int guard_state;
	_Atomic int poison;
};

struct hk_arg {
	int kill_pct;
	bool recover;
	bool take;		/* the new handler uses pidfd_getfd instead of SCM_RIGHTS */
	bool running;		/* the new handler's engine is already running when it adopts */
};

/*
 * A handler process: receive (or take) A's uffd, adopt it, serve a foreign
 * region. `running`: the engine runs before the uffd arrives (a daemon that
 * serves many clients), and some time passes between fl_engine_adopt() and
 * fl_region_new() (the daemon builds the region from the client's map).
 * Otherwise the engine is started once the region is in place.
 */
static int hk_handler(int sock, bool take, bool wake, bool running)
{
	struct fl_engine_opts eo = { .sz = sizeof(eo), .threads = 1, .flags = FL_ENGINE_NO_FILLER,
				     .log = t_log_cb, .log_level = u_log_level() };
	struct hk_info inf;
	struct fl_region_opts ro;
	struct fl_engine *e = NULL;
	struct fl_store *store;
	uint64_t delay = 150;
	uint8_t *img;
	int ufd = -1, space;
	char ch;

	T_OK(fl_engine_new(&eo, &e));
	if (running)
		T_OK(fl_engine_start(e));

	if (take) {
		T_ASSERT(u_read_full(sock, &inf, sizeof(inf), 60000), "no handover message");
		T_OK(fl_uffd_take(inf.pid, inf.fdnum, &ufd));
	} else {
		int n = fl_uffd_recv(sock, &inf, sizeof(inf), &ufd);
		T_ASSERT(n == (int)sizeof(inf), "fl_uffd_recv: %d", n);
	}
	img = u_image(inf.len, 0, HK_SEED);	/* the handler builds the same image */
	store = u_mem_store(img, inf.len);
	T_OK(fl_store_ctl(store, FL_STORE_CTL_DELAY_US, &delay));
	space = fl_engine_adopt(e, ufd, inf.pid, inf.features);
	T_ASSERT(space >= 1, "fl_engine_adopt: %d", space);
	if (running)
		t_sleep_ms(50);
	ro = (struct fl_region_opts){
		.sz = sizeof(ro), .length = inf.len, .mem = FL_MEM_ANON, .mode = FL_MODE_MISSING,
		.flags = FL_REGION_FOREIGN, .addr = (void *)(uintptr_t)inf.addr, .store = store,
		.prefetch_max = 8, .memfd = -1, .space = space, .name = take ? "taken" : "received",
	};
	u_region_opts(e, &ro);
	T_OK(fl_engine_start(e));
	/* An adopted space is served from fl_engine_wake_all() on; for a
	 * recovering handler the wake also re-delivers waiting faults. */
	(void)wake;
	T_OK(fl_engine_wake_all(e, space));
	u_write_full(sock, "R", 1);
	while (read(sock, &ch, 1) > 0)
		;
	fl_engine_free(e);
	return 0;
}

/* Process A: owns the lazy memory and its uffd, runs the guard and four readers. */
static int hk_proc_a(const struct hk_arg *ha, struct hk_shared *sh)
{
	int sb[2], sc[2] = { -1, -1 }, ufd;
	pid_t b, c = -1;
	uint64_t feats = UFFD_FEATURE_THREAD_ID;
	struct hk_info inf;
	struct fl_guard_opts go;
	struct fl_range range;
	struct fl_guard *g = NULL;
	struct u_probe_reader rd[4];
	uint8_t *base, *img;
	uint64_t end;
	char ch;
	int status;

	/* The handlers are forked before the uffd exists: they inherit nothing of it. */
	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sb) == 0);
	if (ha->recover)
		T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sc) == 0);
	b = fork();
	T_ASSERT(b >= 0);
	if (b == 0) {
		close(sb[0]);
		if (ha->recover) {
			close(sc[0]);
			close(sc[1]);
		}
		_exit(hk_handler(sb[1], false, false, false));
	}
	close(sb[1]);
	if (ha->recover) {
		c = fork();
		T_ASSERT(c >= 0);
		if (c == 0) {
			close(sb[0]);
			close(sc[0]);
			_exit(hk_handler(sc[1], ha->take, true, ha->running));
		}
		close(sc[1]);
	}

	base = mmap(NULL, HK_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	T_ASSERT(base != MAP_FAILED);
	madvise(base, HK_LEN, MADV_NOHUGEPAGE);
	img = u_image(HK_LEN, 0, HK_SEED);
	if (t_has(FL_FEATURE_BIT(FL_FEATURE_POISON)))
		feats |= UFFD_FEATURE_POISON;
	atomic_store(&sh->poison, (feats & UFFD_FEATURE_POISON) != 0);
	T_OK(fl_uffd_create(FL_UFFD_CLOEXEC, &ufd));
	T_OK(fl_uffd_api(ufd, feats, NULL, NULL));
	T_OK(fl_uffd_register(ufd, base, HK_LEN, FL_REG_MISSING, NULL));
	inf = (struct hk_info){ .addr = (uintptr_t)base, .len = HK_LEN, .features = feats,
				.pid = getpid(), .fdnum = ufd };
	T_OK(fl_uffd_send(sb[0], ufd, &inf, sizeof(inf)));
	T_ASSERT(u_read_full(sb[0], &ch, 1, 20000), "handler B not ready");

	range = (struct fl_range){ (uintptr_t)base, HK_LEN };
	go = (struct fl_guard_opts){ .sz = sizeof(go), .uffd = ufd, .features = feats,
				     .ranges = &range, .nr_ranges = 1, .timeout_ms = t_scaled_ms(500) };
	T_OK(fl_guard_new(&go, &g));
	T_ASSERT_EQ(fl_guard_state(g), FL_GUARD_IDLE);
	T_OK(fl_guard_watch(g, b));
	T_ASSERT_EQ(fl_guard_state(g), FL_GUARD_WATCHING);

	u_bus_install();
	for (int i = 0; i < 4; i++) {
		rd[i] = (struct u_probe_reader){ .base = base, .img = img, .first = (size_t)i * HK_NPAGES / 4,
					    .count = HK_NPAGES / 4, .v = &sh->v };
		T_ASSERT(pthread_create(&rd[i].tid, NULL, u_probe_reader_main, &rd[i]) == 0);
	}
	end = t_deadline_ms(30000);
	while (atomic_load(&sh->v.ok) < (long)HK_NPAGES * ha->kill_pct / 100) {
		T_ASSERT(t_now_ns() < end, "only %ld pages served in 30 s", atomic_load(&sh->v.ok));
		usleep(200);
	}
	kill(b, SIGKILL);
	T_ASSERT(waitpid(b, &status, 0) == b);
	atomic_store(&sh->killed_at, atomic_load(&sh->v.ok));
	if (ha->recover) {
		/* A new handler takes over within the guard's grace period. */
		if (ha->take)
			u_write_full(sc[0], &inf, sizeof(inf));
		else
			T_OK(fl_uffd_send(sc[0], ufd, &inf, sizeof(inf)));
		T_OK(fl_guard_watch(g, c));
		T_ASSERT(u_read_full(sc[0], &ch, 1, 20000), "handler C not ready");
	}
	for (int i = 0; i < 4; i++)
		pthread_join(rd[i].tid, NULL);
	/* The guard poisons first and says FAILED after: readers that met the
	 * poison can be done before it says so. */
	if (!ha->recover)
		(void)T_WAIT_FOR(fl_guard_state(g) != FL_GUARD_WAITING, 5000);
	atomic_store(&sh->guard_state, fl_guard_state(g));
	if (ha->recover) {
		close(sc[0]);
		T_ASSERT(waitpid(c, &status, 0) == c);
		T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "handler C: status 0x%x", status);
	}
	fl_guard_free(g);
	return T_PASS;
}

static int c_handler_killed(void *arg)
{
	const struct hk_arg *ha = arg;
	struct hk_shared *sh;
	int status;
	pid_t a;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	fflush(NULL);
	a = fork();
	T_ASSERT(a >= 0);
	if (a == 0)
		_exit(hk_proc_a(ha, sh));
	T_ASSERT(waitpid(a, &status, 0) == a);
	t_log("kill at %d%%: %ld pages read before the kill; ok %ld, SIGBUS %ld, wrong %ld (zeros %ld); "
	      "guard state %d; A %s %d", ha->kill_pct, atomic_load(&sh->killed_at), atomic_load(&sh->v.ok),
	      atomic_load(&sh->v.sigbus), atomic_load(&sh->v.bad), atomic_load(&sh->v.zero),
	      atomic_load(&sh->guard_state), WIFSIGNALED(status) ? "killed by signal" : "exited",
	      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	/* Never a wrong page, never a zero page where the image has data. */
	T_ASSERT_EQ(atomic_load(&sh->v.zero), 0);
	T_ASSERT_EQ(atomic_load(&sh->v.bad), 0);
	T_ASSERT(atomic_load(&sh->killed_at) > 0);
	if (WIFSIGNALED(status)) {
		/* Without POISON the guard's only closed failure is SIGBUS to the process. */
		T_ASSERT(WTERMSIG(status) == SIGBUS, "A killed by signal %d", WTERMSIG(status));
		T_ASSERT(!ha->recover, "A died although a new handler took over");
		T_ASSERT(!atomic_load(&sh->poison), "with POISON the guard must poison, not kill");
		return T_PASS;
	}
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "A: status 0x%x", status);
	if (ha->recover) {
		T_ASSERT_EQ(atomic_load(&sh->v.sigbus), 0);
		T_ASSERT_EQ(atomic_load(&sh->v.ok), HK_NPAGES);
		T_ASSERT_EQ(atomic_load(&sh->guard_state), FL_GUARD_WATCHING);
	} else {
		T_ASSERT(atomic_load(&sh->poison), "without POISON A should have died by SIGBUS");
		T_ASSERT(atomic_load(&sh->v.sigbus) > 0);
		T_ASSERT_EQ(atomic_load(&sh->v.ok) + atomic_load(&sh->v.sigbus), HK_NPAGES);
		T_ASSERT_EQ(atomic_load(&sh->guard_state), FL_GUARD_FAILED);
	}
	return T_PASS;
}

static const struct hk_arg hk_c1_10 = { 10, false, false, false };
static const struct hk_arg hk_c1_40 = { 40, false, false, false };
static const struct hk_arg hk_c1_75 = { 75, false, false, false };
static const struct hk_arg hk_c2_10 = { 10, true, false, false };
static const struct hk_arg hk_c2_40 = { 40, true, true, false };
static const struct hk_arg hk_c2_75 = { 75, true, false, false };
static const struct hk_arg hk_c2_90 = { 90, true, true, false };
static const struct hk_arg hk_c2_run = { 30, true, false, true };

/* ---- (d): fl_engine_free poisons unresolved foreign pages ------------------------------------------- */

static int fe_handler(int sock)
{
	struct hk_info inf;
	struct fl_engine *e;
	struct fl_region_opts ro;
	struct fl_store *store;
	uint8_t *img;
	int ufd, space, n;
	char cmd;

	n = fl_uffd_recv(sock, &inf, sizeof(inf), &ufd);
	T_ASSERT(n == (int)sizeof(inf), "fl_uffd_recv: %d", n);
	img = u_image(inf.len, 0, HK_SEED);
	store = u_mem_store(img, inf.len);
	e = u_engine(0, 1);
	space = fl_engine_adopt(e, ufd, inf.pid, inf.features);
	T_ASSERT(space >= 1);
	ro = (struct fl_region_opts){
		.sz = sizeof(ro), .length = inf.len, .mem = FL_MEM_ANON, .mode = FL_MODE_MISSING,
		.flags = FL_REGION_FOREIGN | FL_REGION_NO_PREFETCH, .addr = (void *)(uintptr_t)inf.addr,
		.store = store, .memfd = -1, .space = space,
	};
	u_region_opts(e, &ro);
	T_OK(fl_engine_wake_all(e, space));
	u_write_full(sock, "R", 1);
	while (read(sock, &cmd, 1) == 1) {
		if (cmd == 's') {
			T_OK(fl_engine_stop(e));
			u_write_full(sock, "S", 1);
		} else if (cmd == 'f') {
			T_ASSERT(fl_engine_free(e) == NULL);
			u_write_full(sock, "F", 1);
			return 0;
		}
	}
	return 2;
}

static int c_free_poisons_foreign(void *arg)
{
	size_t npages = 256, len = npages * U_PAGE;
	struct hk_info inf;
	struct probe_thr w;
	int sk[2], ufd, status;
	uint8_t *base, *img;
	pid_t h;
	char ch;
	(void)arg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_POISON));
	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM, 0, sk) == 0);
	fflush(NULL);
	h = fork();
	T_ASSERT(h >= 0);
	if (h == 0) {
		close(sk[0]);
		_exit(fe_handler(sk[1]));
	}
	close(sk[1]);
	u_bus_install();
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(base != MAP_FAILED);
	img = u_image(len, 0, HK_SEED);
	T_OK(fl_uffd_create(FL_UFFD_CLOEXEC, &ufd));
	T_OK(fl_uffd_api(ufd, UFFD_FEATURE_POISON | UFFD_FEATURE_THREAD_ID, NULL, NULL));
	T_OK(fl_uffd_register(ufd, base, len, FL_REG_MISSING, NULL));
	inf = (struct hk_info){ .addr = (uintptr_t)base, .len = len,
				.features = UFFD_FEATURE_POISON | UFFD_FEATURE_THREAD_ID, .pid = getpid(), .fdnum = ufd };
	T_OK(fl_uffd_send(sk[0], ufd, &inf, sizeof(inf)));
	T_ASSERT(u_read_full(sk[0], &ch, 1, 20000));
	U_CHECK(base, img, 10 * U_PAGE, U_PAGE);	/* served by the handler */

	/* Stop the handler's engine: a fault now waits, unread. */
	u_write_full(sk[0], "s", 1);
	T_ASSERT(u_read_full(sk[0], &ch, 1, 20000) && ch == 'S');
	w = (struct probe_thr){ .p = base + 100 * U_PAGE, .expect = img + 100 * U_PAGE, .len = U_PAGE, .got = 9 };
	T_ASSERT(pthread_create(&w.tid, NULL, probe_main, &w) == 0);
	t_sleep_ms(t_scaled_ms(200));
	T_ASSERT_EQ(w.got, 9);
	/* Freeing the engine poisons every unresolved page, waking the waiter with SIGBUS. */
	u_write_full(sk[0], "f", 1);
	T_ASSERT(u_read_full(sk[0], &ch, 1, 20000) && ch == 'F');
	T_ASSERT(waitpid(h, &status, 0) == h);
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "handler status 0x%x", status);
	pthread_join(w.tid, NULL);
	T_ASSERT_EQ(w.got, -1);
	for (size_t p = 0; p < npages; p++)
		T_ASSERT(u_probe_cmp(base + p * U_PAGE, img + p * U_PAGE, U_PAGE) == (p < 10 ? 0 : -1),
			 "page %zu", p);
	close(ufd);
	return T_PASS;
}

/* fl_engine_free in the parent poisons what a forked child has not been served. */
static int c_free_poisons_fork_child(void *arg)
{
	static const struct u_cfg anon = { "anon", FL_MEM_ANON, FL_MODE_MISSING };
	size_t npages = 256, len = npages * U_PAGE;
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	uint8_t *base, *img;
	int go[2], status;
	pid_t pid;
	(void)arg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_POISON) | FL_FEATURE_BIT(FL_FEATURE_EVENT_FORK));
	u_bus_install();
	e = u_engine(0, 1);
	img = u_image(len, 0, 0xc41d);
	store = u_mem_store(img, len);
	r = u_region(e, &anon, len, store, FL_REGION_NO_PREFETCH);
	base = fl_region_addr(r);
	U_CHECK(base, img, 10 * U_PAGE, U_PAGE);
	T_ASSERT(pipe(go) == 0);
	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		char ch;
		close(go[1]);
		if (read(go[0], &ch, 1) != 1)
			_exit(3);
		for (size_t p = 0; p < npages; p++) {
			int got = u_probe_cmp(base + p * U_PAGE, img + p * U_PAGE, U_PAGE);
			if (got != (p < 10 ? 0 : -1)) {
				fprintf(stderr, "# child: page %zu: %d\n", p, got);
				_exit(1);
			}
		}
		_exit(0);
	}
	close(go[0]);
	U_WAIT_ESTAT(e, events_fork, 1);
	fl_region_free(r);	/* the parent's own region */
	T_ASSERT(fl_engine_free(e) == NULL);
	u_write_full(go[1], "g", 1);
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
	fl_store_unref(store);
	return T_PASS;
}

/* ---- (e): fl_poison_absent ----------------------------------------------------------------------- */

static int c_poison_absent(void *arg)
{
	const struct u_cfg *c = arg;
	static const size_t present[] = { 0, 3, 4, 9, 15 };
	size_t psz = u_cfg_psz(c), npages = 16, len = npages * psz, nabsent = npages - 5;
	uint64_t feats = UFFD_FEATURE_POISON | u_cfg_features(c), ioctls = 0;
	struct fl_range range;
	uint8_t *p, *img;
	int64_t n;
	int ufd, memfd;

	t_require(fl_features_from_uffd(feats));
	if (c->mem == FL_MEM_HUGETLB)
		t_need_huge(len);
	u_bus_install();
	ufd = t_uffd(feats);
	p = t_map(c->mem, len, &memfd);
	T_OK(fl_uffd_register(ufd, p, len, FL_REG_MISSING, &ioctls));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_POISON));
	img = u_image(len, 0, 0xab5e);
	for (size_t i = 0; i < sizeof(present) / sizeof(present[0]); i++)
		T_OK(fl_uffd_copy(ufd, p + present[i] * psz, img + present[i] * psz, psz, 0, NULL));
	range = (struct fl_range){ (uintptr_t)p, len };
	T_ASSERT_EQ(fl_poison_absent(ufd, NULL, 1), -EINVAL);
	T_ASSERT_EQ(fl_poison_absent(ufd, &range, 0), 0);
	n = fl_poison_absent(ufd, &range, 1);
	t_log("%s: fl_poison_absent = %lld (absent pages %zu)", c->name, (long long)n, nabsent);
	T_ASSERT(n == (int64_t)nabsent || (c->mem == FL_MEM_HUGETLB && n == (int64_t)(nabsent * psz / U_PAGE)),
		 "poisoned %lld, %zu pages were absent", (long long)n, nabsent);
	for (size_t i = 0; i < npages; i++) {
		bool is_present = false;
		for (size_t k = 0; k < sizeof(present) / sizeof(present[0]); k++)
			is_present |= present[k] == i;
		T_ASSERT_EQ(u_probe_cmp(p + i * psz, img + i * psz, psz), is_present ? 0 : -1);
	}
	/* Nothing left to poison the second time. */
	n = fl_poison_absent(ufd, &range, 1);
	T_ASSERT_EQ(n, 0);
	T_OK(fl_uffd_unregister(ufd, p, len));
	munmap(p, len);
	close(ufd);
	return T_PASS;
}

static int c_poison_absent_noscan(void *arg)
{
	return u_run_masked("pagemap_scan", arg);
}

/* ---- the guard's state machine -------------------------------------------------------------------- */

static int guard_proc(void)
{
	struct fl_guard_opts go;
	struct fl_guard *g = NULL, *sentinel = (struct fl_guard *)(uintptr_t)0x1, *g2 = sentinel;
	struct fl_range range;
	uint64_t feats = t_has(FL_FEATURE_BIT(FL_FEATURE_POISON)) ? UFFD_FEATURE_POISON : 0, end;
	size_t len = 8 * U_PAGE;
	uint8_t *p, *img;
	bool seen_waiting = false;
	int ufd, st;
	pid_t h;

	ufd = t_uffd(feats);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(p != MAP_FAILED);
	T_OK(fl_uffd_register(ufd, p, len, FL_REG_MISSING, NULL));
	img = u_image(len, 0, 0x6a);
	T_OK(fl_uffd_copy(ufd, p, img, U_PAGE, 0, NULL));	/* page 0 present */
	range = (struct fl_range){ (uintptr_t)p, len };

	go = (struct fl_guard_opts){ .sz = sizeof(go), .uffd = ufd, .features = feats,
				     .ranges = &range, .nr_ranges = 1, .timeout_ms = t_scaled_ms(300) };
	T_ASSERT_EQ(fl_guard_new(NULL, &g2), -EINVAL);
	go.sz = 0;
	T_ASSERT_EQ(fl_guard_new(&go, &g2), -EINVAL);
	go.sz = sizeof(go);
	go.uffd = -1;
	T_ASSERT_EQ(fl_guard_new(&go, &g2), -EINVAL);
	go.uffd = ufd;
	go.ranges = NULL;
	T_ASSERT_EQ(fl_guard_new(&go, &g2), -EINVAL);
	go.ranges = &range;
	T_ASSERT(g2 == sentinel, "ret_guard written on failure");
	T_ASSERT(fl_guard_free(NULL) == NULL);
	T_ASSERT_EQ(fl_guard_state(NULL), FL_GUARD_IDLE);

	T_OK(fl_guard_new(&go, &g));
	T_ASSERT_EQ(fl_guard_state(g), FL_GUARD_IDLE);
	T_ASSERT_EQ(fl_guard_watch(g, 0), -EINVAL);
	T_ASSERT_EQ(fl_guard_watch(NULL, getpid()), -EINVAL);
	h = fork();
	T_ASSERT(h >= 0);
	if (h == 0) {
		pause();
		_exit(0);
	}
	T_OK(fl_guard_watch(g, h));
	T_ASSERT_EQ(fl_guard_state(g), FL_GUARD_WATCHING);
	t_sleep_ms(t_scaled_ms(100));
	T_ASSERT_EQ(fl_guard_state(g), FL_GUARD_WATCHING);
	kill(h, SIGKILL);
	T_ASSERT(waitpid(h, &st, 0) == h);
	end = t_deadline_ms(5000);
	while (fl_guard_state(g) != FL_GUARD_FAILED) {
		seen_waiting |= fl_guard_state(g) == FL_GUARD_WAITING;
		T_ASSERT(t_now_ns() < end, "guard state %d 5 s after the handler died", fl_guard_state(g));
		usleep(500);
	}
	/* Without POISON the guard raised SIGBUS in this process before getting here. */
	T_ASSERT(feats & UFFD_FEATURE_POISON, "guard failed without POISON and the process survived");
	T_ASSERT(seen_waiting, "the guard never reported WAITING during the grace period");
	T_ASSERT_EQ(fl_guard_watch(g, getppid()), -ESTALE);
	/* Absent pages poisoned, the present one intact. */
	T_ASSERT_EQ(u_probe_cmp(p, img, U_PAGE), 0);
	for (size_t i = 1; i < len / U_PAGE; i++)
		T_ASSERT_EQ(u_probe_byte(p + i * U_PAGE), -1);
	fl_guard_free(g);
	return 0;
}

static int c_guard_states(void *arg)
{
	int status;
	pid_t pid;
	(void)arg;

	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		u_bus_install();
		_exit(guard_proc());
	}
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	if (t_has(FL_FEATURE_BIT(FL_FEATURE_POISON)))
		T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "guard process: status 0x%x", status);
	else
		T_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
			 "without POISON the failed guard must raise SIGBUS: status 0x%x", status);
	return T_PASS;
}

/* A guard whose handler stays alive does nothing; freeing it poisons nothing. */
static int c_guard_free_no_poison(void *arg)
{
	struct fl_guard_opts go;
	struct fl_guard *g = NULL;
	struct fl_range range;
	size_t len = 4 * U_PAGE;
	uint8_t *p, *img;
	int ufd;
	pid_t h;
	(void)arg;

	u_bus_install();
	ufd = t_uffd(0);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(p != MAP_FAILED);
	T_OK(fl_uffd_register(ufd, p, len, FL_REG_MISSING, NULL));
	range = (struct fl_range){ (uintptr_t)p, len };
	go = (struct fl_guard_opts){ .sz = sizeof(go), .uffd = ufd, .ranges = &range, .nr_ranges = 1,
				     .timeout_ms = t_scaled_ms(100) };
	T_OK(fl_guard_new(&go, &g));
	h = fork();
	T_ASSERT(h >= 0);
	if (h == 0) {
		pause();
		_exit(0);
	}
	T_OK(fl_guard_watch(g, h));
	t_sleep_ms(t_scaled_ms(300));
	T_ASSERT_EQ(fl_guard_state(g), FL_GUARD_WATCHING);
	fl_guard_free(g);
	kill(h, SIGKILL);
	waitpid(h, NULL, 0);
	t_sleep_ms(t_scaled_ms(200));
	/* Still lazy: resolve it ourselves and read the data. */
	img = u_image(len, 0, 5);
	T_OK(fl_uffd_copy(ufd, p, img, len, 0, NULL));
	T_ASSERT_EQ(u_probe_cmp(p, img, len), 0);
	close(ufd);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "store-error-anon-missing", c_store_error, (void *)&se_cfgs[0], 0 },
	{ "store-error-shmem-missing", c_store_error, (void *)&se_cfgs[1], 0, U_NEEDS_SHMEM },
	{ "store-error-shmem-minor", c_store_error, (void *)&se_cfgs[2], 0, U_NEEDS_SHMEM_MINOR },
	{ "store-error-hugetlb-missing", c_store_error, (void *)&se_cfgs[3], 0, U_NEEDS_HUGETLB },
	{ "store-error-hugetlb-minor", c_store_error, (void *)&se_cfgs[4], 0, U_NEEDS_HUGETLB_MINOR },
	{ "store-error-anon-background", c_store_error, (void *)&se_cfgs[5], 0 },
	{ "store-error-shmem-minor-background", c_store_error, (void *)&se_cfgs[6], 0, U_NEEDS_SHMEM_MINOR },
	{ "store-error-nopoison-anon-missing", c_nopoison, (void *)"store-error-anon-missing", 0 },
	{ "store-error-nopoison-shmem-minor", c_nopoison, (void *)"store-error-shmem-minor", 0, U_NEEDS_SHMEM_MINOR },
	{ "store-error-nopoison-hugetlb-missing", c_nopoison, (void *)"store-error-hugetlb-missing", 0, U_NEEDS_HUGETLB },
	{ "store-error-nopoison-anon-background", c_nopoison, (void *)"store-error-anon-background", 0 },
	{ "populate-store-error", c_populate_error, NULL, 0 },
	{ "handler-killed-c1-kill10", c_handler_killed, (void *)&hk_c1_10, 60 },
	{ "handler-killed-c1-kill40", c_handler_killed, (void *)&hk_c1_40, 60 },
	{ "handler-killed-c1-kill75", c_handler_killed, (void *)&hk_c1_75, 60 },
	{ "handler-killed-c2-kill10-send", c_handler_killed, (void *)&hk_c2_10, 60 },
	{ "handler-killed-c2-kill40-take", c_handler_killed, (void *)&hk_c2_40, 60 },
	{ "handler-killed-c2-kill75-send", c_handler_killed, (void *)&hk_c2_75, 60 },
	{ "handler-killed-c2-kill90-take", c_handler_killed, (void *)&hk_c2_90, 60 },
	{ "handler-killed-c2-kill30-adopt-into-running-engine", c_handler_killed, (void *)&hk_c2_run, 60 },
	{ "engine-free-poisons-foreign", c_free_poisons_foreign, NULL, 0, T_POISON },
	{ "engine-free-poisons-fork-child", c_free_poisons_fork_child, NULL, 0, T_POISON | T_EVENT_FORK },
	{ "poison-absent-anon", c_poison_absent, (void *)&u_cfgs[0], 0, T_POISON },
	{ "poison-absent-shmem", c_poison_absent, (void *)&u_cfgs[1], 0, T_POISON | U_NEEDS_SHMEM },
	{ "poison-absent-hugetlb", c_poison_absent, (void *)&u_cfgs[3], 0, T_POISON | U_NEEDS_HUGETLB },
	{ "poison-absent-noscan-anon", c_poison_absent_noscan, (void *)"poison-absent-anon", 0, T_POISON },
	{ "poison-absent-noscan-shmem", c_poison_absent_noscan, (void *)"poison-absent-shmem", 0, T_POISON | U_NEEDS_SHMEM },
	{ "poison-absent-noscan-hugetlb", c_poison_absent_noscan, (void *)"poison-absent-hugetlb", 0, T_POISON | U_NEEDS_HUGETLB },
	{ "guard-states", c_guard_states, NULL, 0 },
	{ "guard-free-poisons-nothing", c_guard_free_no_poison, NULL, 0 },
};

int main(int argc, char **argv)
{
	u_inner_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
