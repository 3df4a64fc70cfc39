// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The fault engine (include/faultline/engine.h): options, thread placement,
 * busy polling, stop/start, embedded mode, thousands of regions, statistics,
 * faults outside every region, the non-cooperative events (fork, mremap,
 * MADV_DONTNEED, munmap), and teardown with regions still live or faults
 * still queued.
 */
#include "util.h"

#define LEN (16 * U_MIB)

static const struct u_cfg anon_cfg = { "anon", FL_MEM_ANON, FL_MODE_MISSING };
static const struct u_cfg shmem_cfg = { "shmem", FL_MEM_SHMEM, FL_MODE_MISSING };

/* ---- options -------------------------------------------------------------------- */

static int c_new_options(void *arg)
{
	struct fl_engine_opts o = { .sz = sizeof(o) };
	struct fl_engine *sentinel = (struct fl_engine *)(uintptr_t)0x1, *e = sentinel;
	uint64_t f, events = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			     UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
	(void)arg;

	T_ASSERT_EQ(fl_engine_new(&o, NULL), -EINVAL);
	o.sz = 0;
	T_ASSERT_EQ(fl_engine_new(&o, &e), -EINVAL);
	o = (struct fl_engine_opts){ .sz = sizeof(o), .placement = (enum fl_placement)9 };
	T_ASSERT_EQ(fl_engine_new(&o, &e), -EINVAL);
	o = (struct fl_engine_opts){ .sz = sizeof(o), .threads = 100000 };
	T_ASSERT_EQ(fl_engine_new(&o, &e), -EINVAL);
	T_ASSERT(e == sentinel, "ret_engine written on failure");
	T_ASSERT(fl_engine_free(NULL) == NULL);
	T_ASSERT_EQ(fl_engine_start(NULL), -EINVAL);
	T_ASSERT_EQ(fl_engine_stop(NULL), -EINVAL);
	T_ASSERT_EQ(fl_engine_process(NULL, 0), -EINVAL);
	T_ASSERT(fl_engine_fd(NULL) < 0);

	/* NULL options: defaults. */
	e = NULL;
	T_OK(fl_engine_new(NULL, &e));
	T_ASSERT(e != NULL);
	T_ASSERT(fl_engine_fd(e) >= 0);
	f = fl_engine_features(e);
	T_ASSERT((f & ~fl_features_to_uffd(fl_features())) == 0, "engine features 0x%llx beyond the probed 0x%llx",
		 (unsigned long long)f, (unsigned long long)fl_features_to_uffd(fl_features()));
	if (t_has(FL_FEATURE_BIT(FL_FEATURE_THREAD_ID)))
		T_ASSERT(f & UFFD_FEATURE_THREAD_ID);
	if (t_has(FL_FEATURE_BIT(FL_FEATURE_POISON)))
		T_ASSERT(f & UFFD_FEATURE_POISON);
	else
		T_ASSERT(!(f & UFFD_FEATURE_POISON));
	T_ASSERT_EQ(f & events, fl_features_to_uffd(fl_features()) & events);
	/* The uffd is non-blocking (for poll loops) and close-on-exec. */
	T_ASSERT(fcntl(fl_engine_fd(e), F_GETFL) & O_NONBLOCK);
	T_ASSERT(fcntl(fl_engine_fd(e), F_GETFD) & FD_CLOEXEC);
	T_OK(fl_engine_start(e));
	T_OK(fl_engine_start(e));	/* already running: no-op */
	T_OK(fl_engine_stop(e));
	T_OK(fl_engine_stop(e));	/* already stopped: no-op */
	fl_engine_free(e);

	/* NO_EVENTS: none of the event features are requested. */
	o = (struct fl_engine_opts){ .sz = sizeof(o), .flags = FL_ENGINE_NO_EVENTS };
	T_OK(fl_engine_new(&o, &e));
	T_ASSERT_EQ(fl_engine_features(e) & events, 0);
	fl_engine_free(e);

	/* An older, smaller options struct is accepted. */
	o = (struct fl_engine_opts){ .sz = offsetof(struct fl_engine_opts, batch), .threads = 2 };
	T_OK(fl_engine_new(&o, &e));
	fl_engine_free(e);
	return T_PASS;
}

/* ---- placement ------------------------------------------------------------------- */

struct place {
	enum fl_placement placement;
	int cpu;
	unsigned threads;
	unsigned flags;
};

static bool contains(const pid_t *v, int n, pid_t x)
{
	for (int i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/* Serve a 16 MiB region to four reader threads and check every byte. */
static void serve_and_check(struct fl_engine *e, uint32_t seed)
{
	uint8_t *img = u_image(LEN, 0, seed);
	struct fl_store *store = u_mem_store(img, LEN);
	struct fl_region *r = u_region(e, &anon_cfg, LEN, store, 0);
	struct fl_region_stats st;

	u_read_threads(fl_region_addr(r), img, U_PAGE, LEN / U_PAGE, 4, 1);
	U_CHECK(fl_region_addr(r), img, LEN, U_PAGE);
	st = u_rstats_settled(r);
	T_ASSERT(u_faults(&st) > 0);
	T_ASSERT_EQ(fl_region_resolved_pages(r), LEN / U_PAGE);
	fl_region_free(r);
	fl_store_unref(store);
	munmap(img, LEN);
}

static int c_placement(void *arg)
{
	const struct place *pl = arg;
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	struct fl_engine_opts o = { .sz = sizeof(o), .flags = FL_ENGINE_NO_FILLER | pl->flags,
				    .threads = pl->threads, .placement = pl->placement, .cpu = pl->cpu };
	pid_t before[256], after[256], handlers[256];
	int nb, na, nh = 0, expect;
	cpu_set_t allowed;
	struct fl_engine *e;

	T_ASSERT(sched_getaffinity(0, sizeof(allowed), &allowed) == 0);
	if (pl->placement == FL_PLACE_CPU && (pl->cpu >= ncpu || !CPU_ISSET(pl->cpu, &allowed)))
		t_skip_resource("CPU %d not available (%d online)", pl->cpu, ncpu);
	if (pl->placement == FL_PLACE_PER_CPU && CPU_COUNT(&allowed) != ncpu)
		t_skip_resource("test process restricted to %d of %d CPUs", CPU_COUNT(&allowed), ncpu);
	expect = pl->placement == FL_PLACE_PER_CPU ? ncpu : (int)(pl->threads ? pl->threads : 1);

	nb = u_tasks(before, 256);
	e = u_engine_opts(&o);
	na = u_tasks(after, 256);
	for (int i = 0; i < na; i++)
		if (!contains(before, nb, after[i]))
			handlers[nh++] = after[i];
	T_ASSERT_EQ(nh, expect);

	serve_and_check(e, 0x91ace + (uint32_t)pl->placement);

	/* Pinning happens as each thread starts: allow it a moment. */
	for (int i = 0; i < nh; i++) {
		uint64_t end = t_deadline_ms(2000);
		cpu_set_t set;
		for (;;) {
			bool ok;
			T_ASSERT(sched_getaffinity(handlers[i], sizeof(set), &set) == 0,
				 "sched_getaffinity(%d): %s", handlers[i], strerror(errno));
			if (pl->placement == FL_PLACE_CPU)
				ok = CPU_COUNT(&set) == 1 && CPU_ISSET(pl->cpu, &set);
			else if (pl->placement == FL_PLACE_PER_CPU)
				ok = CPU_COUNT(&set) == 1;
			else
				ok = CPU_EQUAL(&set, &allowed);
			if (ok)
				break;
			T_ASSERT(t_now_ns() < end, "handler thread %d: %d CPUs in its affinity mask",
				 handlers[i], CPU_COUNT(&set));
			t_sleep_ms(5);
		}
	}
	if (pl->placement == FL_PLACE_PER_CPU) {
		/* One handler on each CPU. */
		cpu_set_t seen;
		CPU_ZERO(&seen);
		for (int i = 0; i < nh; i++) {
			cpu_set_t set;
			T_ASSERT(sched_getaffinity(handlers[i], sizeof(set), &set) == 0);
			CPU_OR(&seen, &seen, &set);
		}
		T_ASSERT_EQ(CPU_COUNT(&seen), ncpu);
	}
	T_OK(fl_engine_stop(e));
	U_ASSERT_TASKS(nb);
	fl_engine_free(e);
	return T_PASS;
}

static const struct place pl_any3 = { FL_PLACE_ANY, 0, 3, 0 };
static const struct place pl_cpu0 = { FL_PLACE_CPU, 0, 2, 0 };
static const struct place pl_cpu1 = { FL_PLACE_CPU, 1, 1, 0 };
static const struct place pl_percpu = { FL_PLACE_PER_CPU, 0, 0, 0 };
static const struct place pl_busy = { FL_PLACE_ANY, 0, 1, FL_ENGINE_BUSY_POLL };
static const struct place pl_busy_cpu = { FL_PLACE_CPU, 1, 2, FL_ENGINE_BUSY_POLL };

/* ---- stop / start ------------------------------------------------------------------ */

struct toucher {
	pthread_t tid;
	const uint8_t *p, *expect;
	size_t len;
	_Atomic int done;	/* 1 = matched, 2 = differed */
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;
	int ok = memcmp(t->p, t->expect, t->len) == 0;
	atomic_store(&t->done, ok ? 1 : 2);
	return NULL;
}

static int c_stop_start(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct toucher t;
	struct fl_engine_stats es;
	uint8_t *img, *base;
	int base_tasks;
	(void)arg;

	base_tasks = u_task_count();
	e = u_engine(0, 2);
	T_ASSERT(u_task_count() > base_tasks);
	img = u_image(LEN, 0, 0x5757);
	store = u_mem_store(img, LEN);
	r = u_region(e, &anon_cfg, LEN, store, FL_REGION_NO_PREFETCH);
	base = fl_region_addr(r);
	U_CHECK(base, img, 16 * U_PAGE, U_PAGE);

	T_OK(fl_engine_stop(e));
	U_ASSERT_TASKS(base_tasks);
	/* A fault while stopped waits... */
	t = (struct toucher){ .p = base + 100 * U_PAGE, .expect = img + 100 * U_PAGE, .len = U_PAGE };
	T_ASSERT(pthread_create(&t.tid, NULL, toucher_main, &t) == 0);
	t_sleep_ms(t_scaled_ms(300));
	T_ASSERT_EQ(atomic_load(&t.done), 0);
	/* ...and is served after a restart. */
	T_OK(fl_engine_start(e));
	pthread_join(t.tid, NULL);
	T_ASSERT_EQ(atomic_load(&t.done), 1);
	U_CHECK(base, img, LEN / 2, U_PAGE);
	T_OK(fl_engine_stop(e));
	U_ASSERT_TASKS(base_tasks);
	/* Stopped twice over, started again: still serving. */
	t = (struct toucher){ .p = base + LEN / 2, .expect = img + LEN / 2, .len = LEN / 2 };
	T_ASSERT(pthread_create(&t.tid, NULL, toucher_main, &t) == 0);
	t_sleep_ms(t_scaled_ms(100));
	T_ASSERT_EQ(atomic_load(&t.done), 0);
	T_OK(fl_engine_start(e));
	pthread_join(t.tid, NULL);
	T_ASSERT_EQ(atomic_load(&t.done), 1);
	U_CHECK(base, img, LEN, U_PAGE);
	es = u_estats(e);
	T_ASSERT(es.faults >= LEN / U_PAGE);
	T_OK(fl_engine_stop(e));
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	U_ASSERT_TASKS(base_tasks);
	return T_PASS;
}

/* ---- embedded mode ------------------------------------------------------------------ */

struct loop {
	pthread_t tid;
	struct fl_engine *e;
	_Atomic bool stop;
	_Atomic long handled;
	_Atomic int err;
};

static void *loop_main(void *arg)
{
	struct loop *l = arg;
	while (!atomic_load(&l->stop)) {
		struct pollfd p = { .fd = fl_engine_fd(l->e), .events = POLLIN };
		int r;
		poll(&p, 1, 5);
		r = fl_engine_process(l->e, 0);
		if (r < 0) {
			atomic_store(&l->err, r);
			break;
		}
		atomic_fetch_add(&l->handled, r);
	}
	return NULL;
}

static int c_embedded(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r, *bg;
	struct fl_region_stats st;
	struct loop l;
	uint8_t *img;
	int base_tasks;
	uint64_t t0;
	(void)arg;

	img = u_image(LEN, 0, 0xeb);
	store = u_mem_store(img, LEN);
	base_tasks = u_task_count();
	e = u_engine(FL_ENGINE_EMBEDDED, 4);
	T_OK(fl_engine_start(e));	/* a no-op when embedded */
	r = u_region(e, &anon_cfg, LEN, store, 0);
	bg = u_region(e, &anon_cfg, LEN, store, FL_REGION_BACKGROUND);
	U_ASSERT_TASKS(base_tasks);

	l = (struct loop){ .e = e };
	T_ASSERT(pthread_create(&l.tid, NULL, loop_main, &l) == 0);
	u_read_threads(fl_region_addr(r), img, U_PAGE, LEN / U_PAGE, 3, 1);
	U_CHECK(fl_region_addr(r), img, LEN, U_PAGE);
	/* Only our loop thread besides this one: the engine made none. */
	U_ASSERT_TASKS(base_tasks + 1);
	/* The background region fills from the loop when it is idle. */
	t0 = t_now_ns();
	while (fl_region_resolved_pages(bg) < LEN / U_PAGE && t_now_ns() - t0 < t_scaled_ns(20000))
		t_sleep_ms(5);
	T_ASSERT_EQ(fl_region_resolved_pages(bg), LEN / U_PAGE);
	atomic_store(&l.stop, true);
	pthread_join(l.tid, NULL);
	T_ASSERT_EQ(atomic_load(&l.err), 0);
	T_ASSERT(atomic_load(&l.handled) > 0);
	st = u_rstats_settled(bg);
	T_ASSERT_EQ(st.pages_background, LEN / U_PAGE);
	U_CHECK(fl_region_addr(bg), img, LEN, U_PAGE);
	st = u_rstats_settled(bg);
	T_ASSERT_EQ(u_faults(&st), 0);
	/* Nothing pending: process() waits for its timeout and handles nothing. */
	t0 = t_now_ns();
	T_ASSERT_EQ(fl_engine_process(e, 50), 0);
	T_ASSERT(t_now_ns() - t0 >= 40000000ull);
	T_ASSERT_EQ(fl_engine_process(e, 0), 0);
	U_ASSERT_TASKS(base_tasks);
	fl_region_free(r);
	fl_region_free(bg);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* Embedded mode driven from the faulting process's main loop with timeouts. */
static int c_embedded_main_loop(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct toucher t;
	uint8_t *img;
	uint64_t t0;
	(void)arg;

	img = u_image(LEN, 0, 0xeb2);
	store = u_mem_store(img, LEN);
	e = u_engine(FL_ENGINE_EMBEDDED | FL_ENGINE_NO_FILLER, 0);
	r = u_region(e, &anon_cfg, LEN, store, 0);
	t = (struct toucher){ .p = fl_region_addr(r), .expect = img, .len = LEN };
	T_ASSERT(pthread_create(&t.tid, NULL, toucher_main, &t) == 0);
	t0 = t_now_ns();
	while (!atomic_load(&t.done)) {
		int n = fl_engine_process(e, 100);
		T_ASSERT(n >= 0, "fl_engine_process: %d", n);
		T_ASSERT(t_now_ns() - t0 < t_scaled_ns(20000), "toucher not served");
	}
	pthread_join(t.tid, NULL);
	T_ASSERT_EQ(atomic_load(&t.done), 1);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/*
 * Embedded mode with more spaces than fit in a fixed poll array (it once
 * polled only the first 64, and a fault in the 65th was never read: its
 * thread hung). Spaces 1..70 are uffds of this process, adopted; the
 * region lives in the last one.
 */
#define MANY_SPACES 70

static int c_embedded_many_spaces(void *arg)
{
	struct fl_space_stats sst = { .sz = sizeof(sst) };
	int fds[MANY_SPACES], ids[MANY_SPACES];
	struct fl_region_opts o = { .sz = sizeof(o) };
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct toucher t;
	const size_t len = 2 * U_MIB;
	uint8_t *img;
	uint64_t t0;
	void *p;
	(void)arg;

	img = u_image(len, 0, 0xe65);
	store = u_mem_store(img, len);
	e = u_engine(FL_ENGINE_EMBEDDED | FL_ENGINE_NO_FILLER, 0);
	for (int i = 0; i < MANY_SPACES; i++) {
		T_OK(fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK, &fds[i]));
		T_OK(fl_uffd_api(fds[i], 0, NULL, NULL));
		ids[i] = fl_engine_adopt(e, fds[i], getpid(), 0);
		T_OK(ids[i]);
	}
	T_ASSERT(ids[MANY_SPACES - 1] >= 64, "space id %d", ids[MANY_SPACES - 1]);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(p != MAP_FAILED);
	T_OK(fl_uffd_register(fds[MANY_SPACES - 1], p, len, FL_REG_MISSING, NULL));
	o.length = len;
	o.mem = FL_MEM_ANON;
	o.mode = FL_MODE_MISSING;
	o.flags = FL_REGION_FOREIGN | FL_REGION_NO_PREFETCH;
	o.addr = p;
	o.store = store;
	o.space = ids[MANY_SPACES - 1];
	T_OK(fl_region_new(e, &o, &r));
	for (int i = 0; i < MANY_SPACES; i++)
		T_OK(fl_engine_wake_all(e, ids[i]));

	t = (struct toucher){ .p = p, .expect = img, .len = len };
	T_ASSERT(pthread_create(&t.tid, NULL, toucher_main, &t) == 0);
	t0 = t_now_ns();
	while (!atomic_load(&t.done)) {
		int n = fl_engine_process(e, 100);
		T_ASSERT(n >= 0, "fl_engine_process: %d", n);
		T_ASSERT(t_now_ns() - t0 < t_scaled_ns(10000), "faults in space %d not served", o.space);
	}
	pthread_join(t.tid, NULL);
	T_ASSERT_EQ(atomic_load(&t.done), 1);
	T_OK(fl_engine_space_stats(e, o.space, &sst));
	T_ASSERT_EQ(sst.faults, len / U_PAGE);
	T_ASSERT_EQ(sst.pages_resolved, len / U_PAGE);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	munmap(p, len);
	return T_PASS;
}

/* ---- thousands of regions ------------------------------------------------------------- */

#define MANY 4000
#define MANY_LEN (16 * 1024)

struct many {
	struct fl_region **r;
	const uint8_t *img;
	unsigned seed;
	long bad;
	unsigned touches;
};

static void *many_main(void *arg)
{
	struct many *m = arg;
	m->bad = -1;
	for (unsigned i = 0; i < m->touches; i++) {
		unsigned k = (unsigned)rand_r(&m->seed) % MANY;
		unsigned p = (unsigned)rand_r(&m->seed) % (MANY_LEN / U_PAGE);
		const uint8_t *a = (const uint8_t *)fl_region_addr(m->r[k]) + p * U_PAGE;
		if (memcmp(a, m->img + (size_t)k * MANY_LEN + p * U_PAGE, U_PAGE) != 0) {
			m->bad = (long)k;
			break;
		}
	}
	return NULL;
}

static int c_many_regions(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region **r;
	struct many m[4];
	pthread_t tid[4];
	struct fl_engine_stats es;
	uint64_t sum_faults = 0, sum_lat = 0;
	uint8_t *img;
	(void)arg;

	img = u_image((size_t)MANY * MANY_LEN, 0, 0x3a11);
	store = u_mem_store(img, (size_t)MANY * MANY_LEN);
	e = u_engine(0, 2);
	r = calloc(MANY, sizeof(*r));
	T_ASSERT(r);
	for (unsigned i = 0; i < MANY; i++) {
		struct fl_region_opts o = u_ropts(&anon_cfg, MANY_LEN, store, 0);
		char name[32];
		snprintf(name, sizeof(name), "r%u", i);
		o.name = name;
		o.store_offset = (uint64_t)i * MANY_LEN;
		r[i] = u_region_opts(e, &o);
	}
	for (int i = 0; i < 4; i++) {
		m[i] = (struct many){ .r = r, .img = img, .seed = 17u + (unsigned)i, .touches = 4000 };
		T_ASSERT(pthread_create(&tid[i], NULL, many_main, &m[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		T_ASSERT(m[i].bad < 0, "thread %d: region %ld served wrong bytes", i, m[i].bad);
	}
	for (unsigned i = 0; i < MANY; i++) {
		struct fl_region_stats st = u_rstats_settled(r[i]);
		sum_faults += u_faults(&st);
		sum_lat += st.lat_count;
	}
	es = u_estats(e);
	t_log("%llu faults over %u regions", (unsigned long long)es.faults, MANY);
	T_ASSERT(es.faults > MANY / 4);
	T_ASSERT_EQ(es.faults, sum_faults);
	T_ASSERT_EQ(sum_lat, sum_faults);
	T_ASSERT_EQ(es.unowned_faults, 0);
	/* Free every other region; the rest still serve, all of their bytes. */
	for (unsigned i = 0; i < MANY; i += 2)
		r[i] = fl_region_free(r[i]);
	for (unsigned i = 1; i < MANY; i += 2)
		T_ASSERT(memcmp(fl_region_addr(r[i]), img + (size_t)i * MANY_LEN, MANY_LEN) == 0,
			 "region %u", i);
	es = u_estats(e);
	T_ASSERT_EQ(es.unowned_faults, 0);
	for (unsigned i = 1; i < MANY; i += 2)
		fl_region_free(r[i]);
	free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- statistics ------------------------------------------------------------------------ */

static int c_engine_stats(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r1, *r2;
	struct fl_engine_stats es, part;
	struct fl_region_stats s1, s2;
	uint8_t *img;
	(void)arg;

	e = u_engine(0, 1);
	es = u_estats(e);
	T_ASSERT_EQ(es.faults, 0);
	T_ASSERT_EQ(es.messages, 0);
	T_ASSERT_EQ(es.spaces, 1);
	img = u_image(LEN, 0, 0x57);
	store = u_mem_store(img, LEN);
	r1 = u_region(e, &anon_cfg, LEN, store, FL_REGION_NO_PREFETCH);
	r2 = u_region(e, &anon_cfg, LEN, store, 0);
	U_CHECK(fl_region_addr(r1), img, LEN / 4, U_PAGE);
	U_CHECK(fl_region_addr(r2), img, LEN, U_PAGE);
	s1 = u_rstats_settled(r1);
	s2 = u_rstats_settled(r2);
	es = u_estats(e);
	T_ASSERT_EQ(u_faults(&s1), LEN / 4 / U_PAGE);
	T_ASSERT_EQ(es.faults, u_faults(&s1) + u_faults(&s2));
	T_ASSERT(es.messages >= es.faults);
	T_ASSERT(es.reads >= 1 && es.reads <= es.messages);
	T_ASSERT_EQ(es.unowned_faults, 0);
	T_ASSERT_EQ(es.events_fork + es.events_remap + es.events_remove + es.events_unmap, 0);
	T_ASSERT_EQ(es.spaces, 1);
	/* An older, smaller struct gets only the fields it knows. */
	memset(&part, 0xa5, sizeof(part));
	part.sz = offsetof(struct fl_engine_stats, faults);
	T_OK(fl_engine_stats(e, &part));
	T_ASSERT_EQ(part.messages, es.messages);
	T_ASSERT_EQ(part.faults, 0xa5a5a5a5a5a5a5a5ull);
	T_ASSERT_EQ(fl_engine_stats(e, NULL), -EINVAL);
	T_ASSERT_EQ(fl_engine_stats(NULL, &es), -EINVAL);
	part.sz = 0;
	T_ASSERT_EQ(fl_engine_stats(e, &part), -EINVAL);
	/* Latency: every fault the regions resolved, kept when they are freed
	 * (as the fault count is). */
	{
		uint64_t sum = 0;
		T_ASSERT_EQ(es.lat_count, s1.lat_count + s2.lat_count);
		T_ASSERT(es.lat_count > 0 && es.lat_p50_ns > 0 && es.lat_max_ns >= es.lat_p99_ns);
		fl_region_free(r1);
		fl_region_free(r2);
		part = u_estats(e);
		T_ASSERT_EQ(part.faults, es.faults);
		T_ASSERT_EQ(part.lat_count, es.lat_count);
		T_ASSERT_EQ(part.lat_p50_ns, es.lat_p50_ns);
		for (unsigned b = 0; b < FL_LAT_BUCKETS; b++)
			sum += part.lat_hist[b];
		T_ASSERT_EQ(sum, es.lat_count);
	}
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- faults outside every region ------------------------------------------------------------ */

static int c_unowned(void *arg)
{
	const struct u_cfg *c = arg;
	size_t psz = u_cfg_psz(c), len = 4 * psz;
	struct fl_engine *e;
	struct fl_engine_stats es;
	uint8_t *p;
	int memfd;
	bool poison;

	t_require(fl_features_from_uffd(u_cfg_features(c)));
	if (c->mem == FL_MEM_HUGETLB)
		t_need_huge(len);
	u_bus_install();
	e = u_engine(0, 1);
	poison = fl_engine_features(e) & UFFD_FEATURE_POISON;
	p = t_map(c->mem, len, &memfd);
	T_OK(fl_uffd_register(fl_engine_fd(e), p, len, FL_REG_MISSING, NULL));
	T_ASSERT_EQ(u_probe_byte(p + psz + 10), -1);
	es = u_estats(e);
	T_ASSERT_EQ(es.unowned_faults, 1);
	T_ASSERT_EQ(es.faults, 1);
	/* Again: poisoned, the access fails without a new fault; without
	 * POISON each access is a new fault failed by tgkill(SIGBUS). */
	T_ASSERT_EQ(u_probe_byte(p + psz), -1);
	es = u_estats(e);
	T_ASSERT_EQ(es.unowned_faults, poison ? 1 : 2);
	T_OK(fl_uffd_unregister(fl_engine_fd(e), p, len));
	munmap(p, len);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- events: fork ------------------------------------------------------------------------------ */

static int c_event_fork(void *arg)
{
	const struct u_cfg *c = arg;
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_engine_stats es;
	int c2p[2], p2c[2], status;
	uint64_t faults_before;
	uint8_t *img, *base;
	long child_result = -2;
	pid_t pid;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_FORK) | fl_features_from_uffd(u_cfg_features(c)));
	e = u_engine(0, 1);
	img = u_image(LEN, 0, 0xf0f);
	store = u_mem_store(img, LEN);
	r = u_region(e, c, LEN, store, 0);
	base = fl_region_addr(r);
	U_CHECK(base, img, LEN / 4, U_PAGE);	/* the parent touches a quarter */
	faults_before = u_estats(e).faults;
	T_ASSERT(pipe(c2p) == 0 && pipe(p2c) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		/* The child: only the forking thread, no engine of its own.
		 * Untouched pages come through the fork event's uffd. */
		long bad = -1;
		char go;
		for (size_t off = 0; off < LEN; off += U_PAGE) {
			if (memcmp(base + off, img + off, U_PAGE) != 0) {
				bad = (long)(off / U_PAGE);
				break;
			}
		}
		if (write(c2p[1], &bad, sizeof(bad)) != sizeof(bad))
			_exit(3);
		if (read(p2c[0], &go, 1) != 1)
			_exit(4);
		_exit(bad < 0 ? 0 : 1);
	}
	T_ASSERT(u_read_full(c2p[0], &child_result, sizeof(child_result), 20000),
		 "child not served within 20 s");
	T_ASSERT(child_result == -1, "child: page %ld differs", child_result);
	U_WAIT_ESTAT(e, events_fork, 1);
	es = u_estats(e);
	T_ASSERT_EQ(es.spaces, 2);
	T_ASSERT(es.faults > faults_before, "the child's faults went through the engine");
	u_write_full(p2c[1], "x", 1);
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
	/* The parent's own pages are still served, untouched by the child's. */
	U_CHECK(base, img, LEN, U_PAGE);
	es = u_estats(e);
	T_ASSERT_EQ(es.events_fork, 1);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/*
 * Forks one after another while earlier children live: glibc's fork()
 * holds the malloc locks while the kernel waits for the FORK event to be
 * read, so a handler thread that allocates (adopting the previous child,
 * rebuilding its poll set) must not use malloc. It did: the third or fourth
 * fork hung for good.
 */
static int c_event_fork_many(void *arg)
{
	const struct u_cfg *c = arg;
	enum { KIDS = 12 };
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	int go[2], res[2], status;
	uint8_t *img, *base;
	pid_t kids[KIDS];

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_FORK) | fl_features_from_uffd(u_cfg_features(c)));
	e = u_engine(0, 1);
	img = u_image(LEN, 0, 0xf0f2);
	store = u_mem_store(img, LEN);
	r = u_region(e, c, LEN, store, 0);
	base = fl_region_addr(r);
	U_CHECK(base, img, LEN / 2, U_PAGE);
	T_ASSERT(pipe(go) == 0 && pipe(res) == 0);
	for (int i = 0; i < KIDS; i++) {
		kids[i] = fork();
		T_ASSERT(kids[i] >= 0);
		if (kids[i] == 0) {
			long bad = -1;
			char ch;
			close(go[1]);
			if (read(go[0], &ch, 1) < 0)
				_exit(4);
			/* Every page, also those the parent never touched. */
			for (size_t off = 0; off < LEN; off += U_PAGE)
				if (memcmp(base + off, img + off, U_PAGE) != 0) {
					bad = (long)(off / U_PAGE);
					break;
				}
			_exit(bad < 0 ? 0 : 1);
		}
	}
	close(go[1]);	/* all read at once */
	for (int i = 0; i < KIDS; i++) {
		T_ASSERT(waitpid(kids[i], &status, 0) == kids[i]);
		T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d: status 0x%x", i, status);
	}
	U_CHECK(base, img, LEN, U_PAGE);
	T_ASSERT_EQ(u_estats(e).events_fork, KIDS);
	close(go[0]);
	close(res[0]);
	close(res[1]);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- events: mremap ------------------------------------------------------------------------------ */

static int c_event_mremap(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_engine_stats es;
	uint8_t *img, *old, *to, *q;
	(void)arg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_REMAP));
	e = u_engine(0, 1);
	img = u_image(LEN, 0, 0x4e3a);
	store = u_mem_store(img, LEN);
	r = u_region(e, &anon_cfg, LEN, store, FL_REGION_NO_PREFETCH);
	old = fl_region_addr(r);
	for (size_t p = 0; p < LEN / U_PAGE; p += 3)
		T_ASSERT(memcmp(old + p * U_PAGE, img + p * U_PAGE, U_PAGE) == 0);
	to = mmap(NULL, LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	T_ASSERT(to != MAP_FAILED);
	q = mremap(old, LEN, LEN, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	T_ASSERT(q == to, "mremap: %s", strerror(errno));
	U_CHECK(to, img, LEN, U_PAGE);
	U_WAIT_ESTAT(e, events_remap, 1);
	es = u_estats(e);
	T_ASSERT_EQ(es.unowned_faults, 0);
	T_ASSERT(fl_region_addr(r) == to, "fl_region_addr %p after the move to %p", fl_region_addr(r),
		 (void *)to);
	u_rstats_settled(r);
	T_ASSERT_EQ(fl_region_resolved_pages(r), LEN / U_PAGE);
	fl_region_free(r);
	T_ASSERT(!u_mapped(to, LEN), "region not unmapped at its new address");
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* Move the second half of a region: both halves keep being served. */
static int c_event_mremap_partial(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_engine_stats es;
	uint8_t *img, *base, *to, *q;
	(void)arg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_REMAP));
	e = u_engine(0, 1);
	img = u_image(LEN, 0, 0x4e3b);
	store = u_mem_store(img, LEN);
	r = u_region(e, &anon_cfg, LEN, store, FL_REGION_NO_PREFETCH);
	base = fl_region_addr(r);
	for (size_t p = 0; p < LEN / U_PAGE; p += 5)
		T_ASSERT(memcmp(base + p * U_PAGE, img + p * U_PAGE, U_PAGE) == 0);
	to = mmap(NULL, LEN / 2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	T_ASSERT(to != MAP_FAILED);
	q = mremap(base + LEN / 2, LEN / 2, LEN / 2, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	T_ASSERT(q == to, "mremap: %s", strerror(errno));
	U_CHECK(to, img + LEN / 2, LEN / 2, U_PAGE);
	U_CHECK(base, img, LEN / 2, U_PAGE);
	U_WAIT_ESTAT(e, events_remap, 1);
	es = u_estats(e);
	T_ASSERT_EQ(es.unowned_faults, 0);
	T_ASSERT(fl_region_addr(r) == base);
	fl_region_free(r);
	T_ASSERT(!u_mapped(base, LEN / 2), "region not unmapped");
	T_ASSERT(!u_mapped(to, LEN / 2), "moved half of the region left mapped after fl_region_free");
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- events: the on_event callback ---------------------------------------------------------------- */

struct ev_log {
	pthread_mutex_t mu;
	struct fl_engine *engine;
	struct fl_event ev[16];
	int space[16];
	int child_fd;		/* fl_engine_space_fd(new_space) inside the FORK call */
	unsigned n;
};

static void ev_record(void *ctx, int space, const struct fl_event *event)
{
	struct ev_log *log = ctx;

	pthread_mutex_lock(&log->mu);
	if (log->n < 16) {
		log->ev[log->n] = *event;
		log->space[log->n] = space;
		log->n++;
	}
	if (event->kind == FL_EVENT_FORK)
		log->child_fd = fl_engine_space_fd(log->engine, event->new_space);
	pthread_mutex_unlock(&log->mu);
}

/*
 * The callback runs after the engine handled the event: wait for the event
 * of `kind` at `start` (the kernel may add others, e.g. an UNMAP of the old
 * range around a REMAP).
 */
static struct fl_event ev_find(struct ev_log *log, enum fl_event_kind kind, uint64_t start, int *ret_space)
{
	uint64_t end = t_deadline_ms(3000);
	struct fl_event ev = { 0 };
	bool found = false;

	while (!found) {
		pthread_mutex_lock(&log->mu);
		for (unsigned i = 0; i < log->n && !found; i++) {
			if (log->ev[i].kind == kind && log->ev[i].start == start) {
				ev = log->ev[i];
				*ret_space = log->space[i];
				found = true;
			}
		}
		pthread_mutex_unlock(&log->mu);
		if (found || t_now_ns() >= end)
			break;
		t_sleep_ms(1);
	}
	if (!found)
		for (unsigned i = 0; i < log->n; i++)
			t_log("event %u: kind %d space %d start 0x%llx end 0x%llx to 0x%llx", i, log->ev[i].kind,
			      log->space[i], (unsigned long long)log->ev[i].start,
			      (unsigned long long)log->ev[i].end, (unsigned long long)log->ev[i].remap_to);
	T_ASSERT(found, "no event of kind %d at 0x%llx reported", kind, (unsigned long long)start);
	return ev;
}

/* on_event gets faultline's struct fl_event, with the kernel's addresses. */
static int c_event_callback(void *arg)
{
	static struct ev_log log = { .mu = PTHREAD_MUTEX_INITIALIZER, .child_fd = -1 };
	struct fl_engine_opts o = { .sz = sizeof(o), .threads = 1, .on_event = ev_record, .event_ctx = &log };
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_event ev;
	size_t np = LEN / U_PAGE;
	uint8_t *img, *base, *to, *q;
	int space = -2, status;
	pid_t pid;
	(void)arg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_REMOVE) | FL_FEATURE_BIT(FL_FEATURE_EVENT_REMAP) |
		  FL_FEATURE_BIT(FL_FEATURE_EVENT_UNMAP) | FL_FEATURE_BIT(FL_FEATURE_EVENT_FORK));
	e = log.engine = u_engine_opts(&o);
	img = u_image(LEN, 0, 0xe7e);
	store = u_mem_store(img, LEN);
	r = u_region(e, &anon_cfg, LEN, store, FL_REGION_NO_PREFETCH);
	base = fl_region_addr(r);
	U_CHECK(base, img, LEN / 2, U_PAGE);

	T_ASSERT(madvise(base + U_PAGE, 2 * U_PAGE, MADV_DONTNEED) == 0);
	ev = ev_find(&log, FL_EVENT_REMOVE, (uintptr_t)base + U_PAGE, &space);
	T_ASSERT_EQ(space, 0);
	T_ASSERT_EQ(ev.new_space, -1);
	T_ASSERT_EQ(ev.start, (uintptr_t)base + U_PAGE);
	T_ASSERT_EQ(ev.end, (uintptr_t)base + 3 * U_PAGE);
	T_ASSERT_EQ(ev.remap_to, 0);

	to = mmap(NULL, LEN / 2, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	T_ASSERT(to != MAP_FAILED);
	q = mremap(base + LEN / 2, LEN / 2, LEN / 2, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	T_ASSERT(q == to, "mremap: %s", strerror(errno));
	ev = ev_find(&log, FL_EVENT_REMAP, (uintptr_t)base + LEN / 2, &space);
	T_ASSERT_EQ(space, 0);
	T_ASSERT_EQ(ev.new_space, -1);
	T_ASSERT_EQ(ev.start, (uintptr_t)base + LEN / 2);
	T_ASSERT_EQ(ev.end, (uintptr_t)base + LEN);
	T_ASSERT_EQ(ev.remap_to, (uintptr_t)to);

	T_ASSERT(munmap(base + (np / 4) * U_PAGE, U_PAGE) == 0);
	ev = ev_find(&log, FL_EVENT_UNMAP, (uintptr_t)base + (np / 4) * U_PAGE, &space);
	T_ASSERT_EQ(space, 0);
	T_ASSERT_EQ(ev.new_space, -1);
	T_ASSERT_EQ(ev.start, (uintptr_t)base + (np / 4) * U_PAGE);
	T_ASSERT_EQ(ev.end, (uintptr_t)base + (np / 4 + 1) * U_PAGE);

	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0)
		_exit(0);
	T_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ev = ev_find(&log, FL_EVENT_FORK, 0, &space);
	T_ASSERT_EQ(space, 0);
	T_ASSERT(ev.new_space >= 1, "new_space %d", ev.new_space);
	T_ASSERT_EQ(ev.start, 0);
	T_ASSERT_EQ(ev.end, 0);
	pthread_mutex_lock(&log.mu);
	T_ASSERT(log.child_fd >= 0, "the child's uffd was not available in the FORK callback");
	pthread_mutex_unlock(&log.mu);

	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- events: MADV_DONTNEED ------------------------------------------------------------------------ */

static int c_event_dontneed(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_engine_stats es;
	size_t np = LEN / U_PAGE, a = np / 4, b = 3 * np / 4;
	uint8_t *img, *base, *zeros;
	(void)arg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_REMOVE));
	e = u_engine(0, 1);
	img = u_image(LEN, 0, 0xd0e);
	store = u_mem_store(img, LEN);
	r = u_region(e, &anon_cfg, LEN, store, 0);
	base = fl_region_addr(r);
	zeros = calloc(1, LEN);
	T_ASSERT(zeros);
	U_CHECK(base, img, LEN / 2, U_PAGE);	/* the first half is resolved */
	/* Discard [a, b): half resolved, half never touched. */
	T_ASSERT(madvise(base + a * U_PAGE, (b - a) * U_PAGE, MADV_DONTNEED) == 0);
	U_CHECK(base, img, a * U_PAGE, U_PAGE);
	U_CHECK(base + a * U_PAGE, zeros, (b - a) * U_PAGE, U_PAGE);
	U_CHECK(base + b * U_PAGE, img + b * U_PAGE, (np - b) * U_PAGE, U_PAGE);
	U_WAIT_ESTAT(e, events_remove, 1);
	es = u_estats(e);
	T_ASSERT_EQ(es.unowned_faults, 0);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- events: munmap -------------------------------------------------------------------------------- */

static int c_event_munmap(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	struct fl_engine_stats es;
	size_t np = LEN / U_PAGE, a = np / 4, b = np / 2;
	uint8_t *img, *base;
	(void)arg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_UNMAP));
	e = u_engine(0, 1);
	img = u_image(LEN, 0, 0x3a3);
	store = u_mem_store(img, LEN);
	r = u_region(e, &anon_cfg, LEN, store, FL_REGION_BACKGROUND);
	base = fl_region_addr(r);
	U_CHECK(base, img, 64 * U_PAGE, U_PAGE);
	T_ASSERT(munmap(base + a * U_PAGE, (b - a) * U_PAGE) == 0);
	U_WAIT_ESTAT(e, events_unmap, 1);
	/* The rest is still served, correctly (the filler skips the hole). */
	u_read_threads(base, img, U_PAGE, a, 2, 1);
	u_read_threads(base + b * U_PAGE, img + b * U_PAGE, U_PAGE, np - b, 2, 1);
	es = u_estats(e);
	T_ASSERT_EQ(es.unowned_faults, 0);
	fl_region_free(r);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* After the application unmapped part of a region and reused the hole,
 * fl_region_free must not unmap the application's new mapping. */
static int c_event_munmap_reuse(void *arg)
{
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r;
	size_t np = LEN / U_PAGE, a = np / 4, b = np / 2;
	uint8_t *img, *base, *hole;
	(void)arg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_UNMAP));
	e = u_engine(0, 1);
	img = u_image(LEN, 0, 0x3a4);
	store = u_mem_store(img, LEN);
	r = u_region(e, &anon_cfg, LEN, store, 0);
	base = fl_region_addr(r);
	U_CHECK(base, img, LEN, U_PAGE);
	T_ASSERT(munmap(base + a * U_PAGE, (b - a) * U_PAGE) == 0);
	U_WAIT_ESTAT(e, events_unmap, 1);
	hole = mmap(base + a * U_PAGE, (b - a) * U_PAGE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	T_ASSERT(hole == base + a * U_PAGE, "mmap in the hole: %s", strerror(errno));
	memset(hole, 0xab, (b - a) * U_PAGE);
	fl_region_free(r);
	T_ASSERT(u_mapped(hole, (b - a) * U_PAGE),
		 "fl_region_free unmapped the application's mapping in the region's unmapped hole");
	T_ASSERT(hole[0] == 0xab && hole[(b - a) * U_PAGE - 1] == 0xab);
	munmap(hole, (b - a) * U_PAGE);
	fl_store_unref(store);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- teardown ----------------------------------------------------------------------------------------- */

/* fl_engine_free with regions still live frees them (and returns). */
static int c_free_live_regions(void *arg)
{
	const unsigned *flags = arg;
	struct fl_engine *e;
	struct fl_store *store;
	struct fl_region *r1, *r2;
	uint8_t *img, *a1, *a2;

	t_require(FL_FEATURE_BIT(FL_FEATURE_MISSING_SHMEM));
	e = u_engine(*flags, 1);
	img = u_image(LEN, 0, 0xf4);
	store = u_mem_store(img, LEN);
	r1 = u_region(e, &anon_cfg, LEN, store, 0);
	r2 = u_region(e, &shmem_cfg, LEN, store, FL_REGION_BACKGROUND);
	fl_store_unref(store);
	a1 = fl_region_addr(r1);
	a2 = fl_region_addr(r2);
	U_CHECK(a1, img, LEN / 2, U_PAGE);
	U_CHECK(a2, img, LEN / 4, U_PAGE);
	T_ASSERT(fl_engine_free(e) == NULL);
	T_ASSERT(!u_mapped(a1, U_PAGE), "region memory still mapped after fl_engine_free");
	T_ASSERT(!u_mapped(a2, U_PAGE), "region memory still mapped after fl_engine_free");
	return T_PASS;
}

static const unsigned flags_default = 0, flags_no_events = FL_ENGINE_NO_EVENTS;

/*
 * Several threads fault on one page at once: each waiter is one message,
 * and the handler reads them all; the first resolves the page and wakes
 * everyone, the others are stale. The application then frees the region
 * (no thread touches it any more) and maps a new one at the same address.
 * The stale messages must neither touch freed memory (ASan), nor poison the
 * new region, nor send SIGBUS to the threads that faulted.
 */
struct stale {
	pthread_t tid;
	const uint8_t *p, *expect;
	pthread_barrier_t *bar;
	_Atomic int *woke;
	int ok;
};

static void *stale_main(void *arg)
{
	struct stale *s = arg;
	pthread_barrier_wait(s->bar);
	s->ok = memcmp(s->p, s->expect, U_PAGE) == 0;
	atomic_fetch_add(s->woke, 1);
	t_sleep_ms(t_scaled_ms(400));	/* stay alive: a stray SIGBUS would kill the process */
	return NULL;
}

static int c_free_stale_faults(void *arg)
{
	const unsigned *pause_ms = arg;
	enum { N = 8 };
	struct fl_engine *e;
	struct fl_store *s1, *s2;
	struct fl_region *r;
	struct fl_region_opts o;
	struct stale st[N];
	pthread_barrier_t bar;
	_Atomic int woke = 0;
	uint8_t *img1, *img2, *addr;
	uint64_t delay = 20000;

	u_bus_install();
	e = u_engine(0, 1);
	img1 = u_image(U_MIB, 0, 1);
	img2 = u_image(U_MIB, 0, 2);
	s1 = u_mem_store(img1, U_MIB);
	s2 = u_mem_store(img2, U_MIB);
	T_OK(fl_store_ctl(s1, FL_STORE_CTL_DELAY_US, &delay));
	r = u_region(e, &anon_cfg, U_MIB, s1, FL_REGION_NO_PREFETCH);
	addr = fl_region_addr(r);
	pthread_barrier_init(&bar, NULL, N);
	for (int i = 0; i < N; i++) {
		st[i] = (struct stale){ .p = addr, .expect = img1, .bar = &bar, .woke = &woke };
		T_ASSERT(pthread_create(&st[i].tid, NULL, stale_main, &st[i]) == 0);
	}
	while (atomic_load(&woke) < N)
		t_sleep_ms(1);
	fl_region_free(r);
	/* With a pause, the stale messages are handled while nothing is mapped there. */
	t_sleep_ms(*pause_ms);
	o = u_ropts(&anon_cfg, U_MIB, s2, FL_REGION_NO_PREFETCH);
	o.addr = addr;
	r = u_region_opts(e, &o);
	t_sleep_ms(t_scaled_ms(250));	/* the stale messages are handled meanwhile */
	for (size_t p = 0; p < U_MIB / U_PAGE; p++)
		T_ASSERT(u_probe_cmp(addr + p * U_PAGE, img2 + p * U_PAGE, U_PAGE) == 0,
			 "new region at the same address: page %zu %s", p,
			 u_probe_byte(addr + p * U_PAGE) < 0 ? "poisoned" : "differs");
	for (int i = 0; i < N; i++) {
		pthread_join(st[i].tid, NULL);
		T_ASSERT(st[i].ok, "thread %d read wrong bytes", i);
	}
	T_ASSERT_EQ(atomic_load(&u_sigbus_caught), 0);
	fl_region_free(r);
	fl_store_unref(s1);
	fl_store_unref(s2);
	fl_engine_free(e);
	return T_PASS;
}

static const unsigned pause_0 = 0, pause_100 = 100;
static const struct u_cfg huge_cfg = { "hugetlb", FL_MEM_HUGETLB, FL_MODE_MISSING };

static const struct t_case cases[] = {
	{ "new-options", c_new_options, NULL, 0 },
	{ "placement-any-3threads", c_placement, (void *)&pl_any3, 0 },
	{ "placement-cpu0", c_placement, (void *)&pl_cpu0, 0 },
	{ "placement-cpu1", c_placement, (void *)&pl_cpu1, 0 },
	{ "placement-per-cpu", c_placement, (void *)&pl_percpu, 0 },
	{ "busy-poll", c_placement, (void *)&pl_busy, 0 },
	{ "busy-poll-cpu1-2threads", c_placement, (void *)&pl_busy_cpu, 0 },
	{ "stop-start-stop", c_stop_start, NULL, 0 },
	{ "embedded-loop-thread", c_embedded, NULL, 0 },
	{ "embedded-main-loop", c_embedded_main_loop, NULL, 0 },
	{ "embedded-70-spaces", c_embedded_many_spaces, NULL, 0 },
	{ "many-regions", c_many_regions, NULL, 60 },
	{ "stats", c_engine_stats, NULL, 0 },
	{ "unowned-fault-anon", c_unowned, (void *)&anon_cfg, 0 },
	{ "unowned-fault-shmem", c_unowned, (void *)&shmem_cfg, 0, U_NEEDS_SHMEM },
	{ "unowned-fault-hugetlb", c_unowned, (void *)&huge_cfg, 0, U_NEEDS_HUGETLB },
	{ "event-fork-anon", c_event_fork, (void *)&anon_cfg, 0, T_EVENT_FORK },
	{ "event-fork-shmem", c_event_fork, (void *)&shmem_cfg, 0, T_EVENT_FORK | U_NEEDS_SHMEM },
	{ "event-fork-many-anon", c_event_fork_many, (void *)&anon_cfg, 30, T_EVENT_FORK },
	{ "event-fork-many-shmem", c_event_fork_many, (void *)&shmem_cfg, 30, T_EVENT_FORK | U_NEEDS_SHMEM },
	{ "event-mremap", c_event_mremap, NULL, 0, T_EVENT_REMAP },
	{ "event-mremap-partial", c_event_mremap_partial, NULL, 0, T_EVENT_REMAP },
	{ "event-callback", c_event_callback, NULL, 0, T_EVENT_FORK | T_EVENT_REMAP | T_EVENT_REMOVE | T_EVENT_UNMAP },
	{ "event-madv-dontneed", c_event_dontneed, NULL, 0, T_EVENT_REMOVE },
	{ "event-munmap-partial", c_event_munmap, NULL, 0, T_EVENT_UNMAP },
	{ "event-munmap-then-free-keeps-new-mapping", c_event_munmap_reuse, NULL, 0, T_EVENT_UNMAP },
	{ "free-with-live-regions", c_free_live_regions, (void *)&flags_default, 15, T_MISSING_SHMEM },
	{ "free-with-live-regions-no-events", c_free_live_regions, (void *)&flags_no_events, 15, T_MISSING_SHMEM },
	{ "region-free-with-stale-faults", c_free_stale_faults, (void *)&pause_0, 0 },
	{ "region-free-with-stale-faults-pause", c_free_stale_faults, (void *)&pause_100, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
