// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Live snapshots: consistency under concurrent writers (the image equals
 * memory at the pause, no torn pages), incremental chains, failures that
 * must release blocked writers, bad input.
 *
 * The writers increment a counter at the head and at the tail of random
 * pages under a read lock; the quiesce callback takes the write lock and,
 * at that instant, copies memory to a shadow. An image page whose head and
 * tail differ was torn; any difference from the shadow is an inconsistency.
 */
#include "harness.h"
#include "fl-config.h"

#include <faultline/snapshot.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define PS 4096u
#define NWRITERS 4

static char dir[256];

struct world {
	uint8_t *mem;
	size_t len;
	size_t npages;
	size_t hot;			/* writers touch pages [0, hot) */
	uint8_t *shadow;
	pthread_rwlock_t lock;
	_Atomic bool stop;
	_Atomic uint64_t ops;
	pthread_t th[NWRITERS];
	unsigned nthreads;
	unsigned pauses;
};

/*
 * One write to a page, under the read lock: head first, tail last. Writers
 * share that lock, so two can update one page at once, and a write-protect
 * fault between head and tail makes the window long. With a plain
 * read-modify-write of head and a plain store to tail, a writer resuming
 * after a faster one has finished stores an older value into the tail, and
 * memory itself is torn at the pause: the image would be right to show it.
 * So head is incremented atomically and the tail only moves up to the
 * largest value handed out; with no write in flight (the pause) head ==
 * tail, and a torn image page can only be a copy taken mid-write.
 */
static uint64_t page_write(uint8_t *page)
{
	_Atomic uint64_t *head = (_Atomic uint64_t *)(void *)page;
	_Atomic uint64_t *tail = (_Atomic uint64_t *)(void *)(page + PS - 8);
	uint64_t v = atomic_fetch_add(head, 1) + 1, t = atomic_load(tail);

	/* Something in between, so a copy can catch a half-done page. */
	((volatile uint8_t *)page)[64 + (v % 1024)] = (uint8_t)v;
	while (t < v && !atomic_compare_exchange_weak(tail, &t, v))
		;
	return v;
}

static void *writer(void *arg)
{
	struct world *w = arg;
	uint64_t x = (uint64_t)(uintptr_t)pthread_self() | 1;

	while (!atomic_load(&w->stop)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t pg = x % w->hot;

		pthread_rwlock_rdlock(&w->lock);
		uint64_t v = page_write(w->mem + pg * PS);
		pthread_rwlock_unlock(&w->lock);
		atomic_fetch_add(&w->ops, 1);
		if ((v & 15) == 0)
			sched_yield();
	}
	return NULL;
}

static void world_init(struct world *w, enum fl_mem_type mem, size_t len)
{
	pthread_rwlockattr_t a;

	memset(w, 0, sizeof(*w));
	w->mem = t_map(mem, len, NULL);
	w->len = len;
	w->npages = len / PS;
	w->hot = w->npages;
	w->shadow = malloc(len);
	T_ASSERT(w->shadow != NULL);
	/* Touch half of the pages; the rest stay unpopulated until written. */
	for (size_t p = 0; p < w->npages; p += 2)
		memset(w->mem + p * PS + 8, (int)(p & 0xff), 32);
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&w->lock, &a);
}

static void world_start(struct world *w, unsigned n)
{
	atomic_store(&w->stop, false);
	w->nthreads = n;
	for (unsigned i = 0; i < n; i++)
		T_ASSERT(pthread_create(&w->th[i], NULL, writer, w) == 0);
	/* Let them get going. */
	uint64_t o = atomic_load(&w->ops);
	while (atomic_load(&w->ops) < o + 1000)
		sched_yield();
}

static void world_stop(struct world *w)
{
	atomic_store(&w->stop, true);
	for (unsigned i = 0; i < w->nthreads; i++)
		pthread_join(w->th[i], NULL);
	w->nthreads = 0;
}

static int quiesce_cb(bool pause, void *ctx)
{
	struct world *w = ctx;

	if (pause) {
		pthread_rwlock_wrlock(&w->lock);
		memcpy(w->shadow, w->mem, w->len);
		w->pauses++;
	} else {
		pthread_rwlock_unlock(&w->lock);
	}
	return 0;
}

/* The image (with its chain) must equal `expect` byte for byte, untorn. */
static void check_image_torn(const char *path, const uint8_t *expect, size_t len, bool untorn)
{
	struct fl_image *img;
	uint8_t *buf = malloc(len);
	size_t torn = 0, diff = 0, torn_mem = 0;

	T_ASSERT(buf != NULL);
	T_OK(fl_image_open(path, FL_IMAGE_OPEN_VERIFY, &img));
	T_OK(fl_image_read(img, 0, 0, len / PS, buf, NULL));
	for (size_t p = 0; p < len / PS; p++) {
		const uint64_t *pg = (const uint64_t *)(const void *)(buf + p * PS);
		const uint64_t *ex = (const uint64_t *)(const void *)(expect + p * PS);
		if (untorn && pg[0] != pg[PS / 8 - 1])
			torn++;
		if (untorn && ex[0] != ex[PS / 8 - 1])
			torn_mem++;
		if (memcmp(buf + p * PS, expect + p * PS, PS))
			diff++;
	}
	/* Memory at the instant first: torn there, the writers are to blame
	 * (see page_write()), not the snapshot. */
	T_ASSERT(torn_mem == 0, "%zu pages torn in memory at the instant", torn_mem);
	T_ASSERT(torn == 0, "%zu torn pages", torn);
	T_ASSERT(diff == 0, "%zu pages differ from memory at the instant", diff);
	fl_image_close(img);
	free(buf);
}

static void check_image(const char *path, const uint8_t *expect, size_t len)
{
	check_image_torn(path, expect, len, true);
}

struct snap_case {
	enum fl_mem_type mem;
	enum fl_snapshot_strategy strategy;
	bool explicit_api;
};

static int test_consistency(void *arg)
{
	const struct snap_case *c = arg;
	size_t len = c->mem == FL_MEM_HUGETLB ? 16u << 20 : 8u << 20;
	struct world w;
	uint64_t cow_pages = 0;

	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	world_init(&w, c->mem, len);
	world_start(&w, NWRITERS);
	for (int it = 0; it < 6; it++) {
		struct fl_range r = { (uintptr_t)w.mem, len };
		struct fl_snapshot_opts o = {
			.sz = sizeof(o),
			.strategy = c->strategy,
			.ranges = &r,
			.nr_ranges = 1,
			/* every other image compressed, when the build has LZ4 */
			.image_flags = FL_IMAGE_NO_SYNC | ((it & 1) && FL_HAVE_LZ4 ? FL_IMAGE_LZ4 : 0),
			.quiesce = c->explicit_api ? NULL : quiesce_cb,
			.quiesce_ctx = &w,
			.max_rounds = 4,
			.log = t_log_cb,
		};
		struct fl_snapshot_progress p = { .sz = sizeof(p) };
		struct fl_snapshot *s;
		char *path = t_path_in(dir, "img");
		unsigned pauses = w.pauses;

		T_OK(fl_snapshot_new(path, &o, &s));
		if (c->explicit_api) {
			if (c->strategy == FL_SNAPSHOT_PRECOPY) {
				T_OK(fl_snapshot_start(s));
				T_OK(fl_snapshot_wait_ready(s, -1));
			}
			quiesce_cb(true, &w);
			T_OK(fl_snapshot_begin(s));
			quiesce_cb(false, &w);
			if (c->strategy == FL_SNAPSHOT_COW) {
				/* Nothing is saved before start: this write must
				 * wait for copy-before-write, deterministically. */
				pthread_rwlock_rdlock(&w.lock);
				page_write(w.mem + 5 * PS);
				pthread_rwlock_unlock(&w.lock);
				T_OK(fl_snapshot_start(s));
			}
		} else {
			T_OK(fl_snapshot_start(s));
		}
		/* Not in place before completion. */
		T_OK(fl_snapshot_wait(s, -1, NULL));
		T_OK(fl_snapshot_progress(s, &p));
		T_ASSERT_EQ(p.phase, FL_SNAP_DONE);
		T_ASSERT_EQ(w.pauses, pauses + 1);
		cow_pages += p.pages_cow;
		if (c->strategy == FL_SNAPSHOT_PRECOPY)
			T_ASSERT(p.rounds >= 1);
		fl_snapshot_free(s);
		/* Writers ran all along; the image is the shadow. */
		check_image(path, w.shadow, len);
		unlink(path);
	}
	world_stop(&w);
	t_log("copy-before-write pages over all iterations: %llu", (unsigned long long)cow_pages);
	/* The explicit variant writes an unsaved page itself every time; with
	 * the callback it depends on scheduling, so it is only logged. */
	if (c->strategy == FL_SNAPSHOT_COW && c->explicit_api)
		T_ASSERT(cow_pages >= 6, "%llu pages saved before a write, expected one per iteration",
			 (unsigned long long)cow_pages);
	rmdir(dir);
	return T_PASS;
}

/* ---- incremental chains ---------------------------------------------------- */

struct chain_case {
	enum fl_mem_type mem;
	enum fl_snapshot_strategy strategy;
	enum fl_watch_backend backend;
	bool writers;
};

static int test_chain(void *arg)
{
	const struct chain_case *c = arg;
	size_t len = c->mem == FL_MEM_HUGETLB ? 16u << 20 : 4u << 20;
	struct world w;
	struct fl_watch *watch;
	struct fl_watch_opts wo = { .sz = sizeof(wo), .backend = c->backend };
	uint8_t *shadows[4];
	char paths[4][512];

	if (c->backend == FL_WATCH_ASYNC)
		t_require_needs(T_WATCH_ASYNC);
	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	world_init(&w, c->mem, len);
	T_OK(fl_watch_new(w.mem, len, &wo, &watch));
	/* Writers on a quarter of the pages, so later snapshots are partial. */
	w.hot = w.npages / 4;
	if (c->writers)
		world_start(&w, 2);
	for (int i = 0; i < 4; i++) {
		struct fl_range r = { (uintptr_t)w.mem, len };
		struct fl_watch *ws[1] = { watch };
		struct fl_snapshot_opts o = {
			.sz = sizeof(o),
			.strategy = c->strategy,
			.ranges = &r,
			.nr_ranges = 1,
			.image_flags = FL_IMAGE_NO_SYNC,
			.parent = i ? paths[i - 1] : NULL,
			.watches = ws,
			.quiesce = quiesce_cb,
			.quiesce_ctx = &w,
		};
		struct fl_snapshot_progress p = { .sz = sizeof(p) };
		struct fl_snapshot *s;
		snprintf(paths[i], sizeof(paths[i]), "%s/snap%d", dir, i);
		/* A full COW snapshot cannot hold writers back with an async watch. */
		if (i == 0 && c->strategy == FL_SNAPSHOT_COW && fl_watch_backend(watch) != FL_WATCH_SYNC) {
			T_ASSERT_EQ(fl_snapshot_new(paths[i], &o, &s), -EMEDIUMTYPE);
			o.strategy = FL_SNAPSHOT_PRECOPY;
		}
		if (!c->writers) {
			/* Deterministic changes: 1 page in 16, offset by the step. */
			size_t stride = c->mem == FL_MEM_HUGETLB ? 2 * 512 : 16;
			for (size_t pg = (size_t)i; pg < w.npages; pg += stride)
				w.mem[pg * PS + 100] ^= (uint8_t)(0x5a + i);
		}
		T_OK(fl_snapshot_new(paths[i], &o, &s));
		T_OK(fl_snapshot_start(s));
		T_OK(fl_snapshot_wait(s, -1, NULL));
		T_OK(fl_snapshot_progress(s, &p));
		fl_snapshot_free(s);
		shadows[i] = malloc(len);
		T_ASSERT(shadows[i] != NULL);
		memcpy(shadows[i], w.shadow, len);
		if (i > 0) {
			struct fl_image *img;
			struct fl_image_info info = { .sz = sizeof(info) };
			T_OK(fl_image_open(paths[i], 0, &img));
			T_OK(fl_image_info(img, &info));
			T_ASSERT_EQ(info.chain_depth, (unsigned)i);
			/* Incremental: most pages come from the parent. */
			T_ASSERT(info.pages_absent > 0, "nothing absent: not incremental");
			if (!c->writers && c->mem != FL_MEM_HUGETLB)
				T_ASSERT(info.pages_data + info.pages_zero <= w.npages / 16 + 1,
					 "%llu pages saved, expected about %zu",
					 (unsigned long long)(info.pages_data + info.pages_zero), w.npages / 16);
			fl_image_close(img);
		}
		if (!c->writers) {
			/* No pause callback raced with anything: memory is the truth. */
			T_ASSERT(memcmp(shadows[i], w.mem, len) == 0);
		}
	}
	if (c->writers)
		world_stop(&w);
	/* Every point in the chain restores byte-identical. */
	for (int i = 0; i < 4; i++) {
		check_image(paths[i], shadows[i], len);
		free(shadows[i]);
	}
	fl_watch_free(watch);
	for (int i = 3; i >= 0; i--)
		unlink(paths[i]);
	rmdir(dir);
	return T_PASS;
}

/* ---- failures release writers ---------------------------------------------- */

static int test_disk_full(void *arg)
{
	enum fl_snapshot_strategy strategy = (enum fl_snapshot_strategy)(uintptr_t)arg;
	size_t len = 16u << 20;
	struct world w;
	struct fl_range r;
	struct fl_snapshot *s;
	struct fl_snapshot_progress p = { .sz = sizeof(p) };
	struct stat st;

	if (geteuid() != 0)
		t_skip_resource("needs root to mount a small tmpfs");
	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	T_ASSERT(unshare(CLONE_NEWNS) == 0);
	T_ASSERT(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
	T_ASSERT(mount("tmpfs", dir, "tmpfs", 0, "size=1m") == 0, "mount: %s", strerror(errno));
	world_init(&w, FL_MEM_ANON, len);
	world_start(&w, NWRITERS);
	r = (struct fl_range){ (uintptr_t)w.mem, len };
	struct fl_snapshot_opts o = {
		.sz = sizeof(o),
		.strategy = strategy,
		.ranges = &r,
		.nr_ranges = 1,
		.image_flags = FL_IMAGE_NO_SYNC,
		.quiesce = quiesce_cb,
		.quiesce_ctx = &w,
	};
	T_OK(fl_snapshot_new(t_path_in(dir, "img"), &o, &s));
	T_OK(fl_snapshot_start(s));
	T_ASSERT_EQ(fl_snapshot_wait(s, -1, NULL), -ENOSPC);
	T_OK(fl_snapshot_progress(s, &p));
	T_ASSERT_EQ(p.phase, FL_SNAP_FAILED);
	T_ASSERT_EQ(p.error, -ENOSPC);
	/* The writers were never left blocked: they keep making progress. */
	uint64_t o1 = atomic_load(&w.ops);
	while (atomic_load(&w.ops) < o1 + 10000)
		sched_yield();
	fl_snapshot_free(s);
	world_stop(&w);
	/* Nothing at the path, and memory is intact (every page untorn). */
	T_ASSERT(stat(t_path_in(dir, "img"), &st) != 0 && errno == ENOENT);
	for (size_t pg = 0; pg < w.npages; pg++) {
		const uint64_t *q = (const uint64_t *)(const void *)(w.mem + pg * PS);
		T_ASSERT(q[0] == q[PS / 8 - 1], "page %zu torn in memory", pg);
	}
	umount(dir);
	rmdir(dir);
	return T_PASS;
}

static int test_cancel(void *arg)
{
	enum fl_snapshot_strategy strategy = (enum fl_snapshot_strategy)(uintptr_t)arg;
	size_t len = 64u << 20;
	struct world w;
	struct fl_range r;
	struct fl_snapshot *s;
	struct fl_snapshot_progress p = { .sz = sizeof(p) };
	struct stat st;

	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	world_init(&w, FL_MEM_ANON, len);
	/* Populate everything so there is a lot to save. */
	for (size_t pg = 0; pg < w.npages; pg++)
		w.mem[pg * PS + 2000] = 1;
	world_start(&w, NWRITERS);
	r = (struct fl_range){ (uintptr_t)w.mem, len };
	struct fl_snapshot_opts o = {
		.sz = sizeof(o),
		.strategy = strategy,
		.ranges = &r,
		.nr_ranges = 1,
		.image_flags = FL_IMAGE_NO_SYNC,
		.quiesce = quiesce_cb,
		.quiesce_ctx = &w,
	};
	T_OK(fl_snapshot_new(t_path_in(dir, "img"), &o, &s));
	T_OK(fl_snapshot_start(s));
	T_OK(fl_snapshot_cancel(s));
	T_OK(fl_snapshot_progress(s, &p));
	/* It may have finished first; otherwise it is cancelled. */
	T_ASSERT(p.phase == FL_SNAP_CANCELLED || p.phase == FL_SNAP_DONE, "phase %d", p.phase);
	uint64_t o1 = atomic_load(&w.ops);
	while (atomic_load(&w.ops) < o1 + 10000)
		sched_yield();
	fl_snapshot_free(s);
	world_stop(&w);
	if (p.phase == FL_SNAP_CANCELLED)
		T_ASSERT(stat(t_path_in(dir, "img"), &st) != 0 && errno == ENOENT);
	unlink(t_path_in(dir, "img"));
	rmdir(dir);
	return T_PASS;
}

/* ---- bad input ------------------------------------------------------------------- */

static int test_bad_input(void *arg)
{
	size_t len = 1u << 20;
	uint8_t *m = t_map(FL_MEM_ANON, len, NULL);
	struct fl_range r = { (uintptr_t)m, len };
	struct fl_snapshot_opts o = { .sz = sizeof(o), .ranges = &r, .nr_ranges = 1,
				      .image_flags = FL_IMAGE_NO_SYNC };
	struct fl_snapshot *s;
	int uffd;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	/* Unaligned range. */
	r.start += 1;
	T_ASSERT_EQ(fl_snapshot_new(t_path_in(dir, "a"), &o, &s), -EINVAL);
	r.start -= 1;
	r.len = 100;
	T_ASSERT_EQ(fl_snapshot_new(t_path_in(dir, "a"), &o, &s), -EINVAL);
	r.len = len;
	/* Incremental without watches: nothing says what changed. */
	o.parent = t_path_in(dir, "none");
	T_ASSERT_EQ(fl_snapshot_new(t_path_in(dir, "a"), &o, &s), -ENODATA);
	o.parent = NULL;
	/* Unknown strategy. */
	o.strategy = (enum fl_snapshot_strategy)7;
	T_ASSERT_EQ(fl_snapshot_new(t_path_in(dir, "a"), &o, &s), -EINVAL);
	o.strategy = FL_SNAPSHOT_COW;
	/* COW without a way to pause: start refuses. */
	T_OK(fl_snapshot_new(t_path_in(dir, "a"), &o, &s));
	T_ASSERT_EQ(fl_snapshot_start(s), -EDEADLK);
	/* Nothing was started or begun: waiting would never end. */
	T_ASSERT_EQ(fl_snapshot_wait(s, -1, NULL), -ESRCH);
	fl_snapshot_free(s);
	/* take() needs quiesce. */
	T_ASSERT_EQ(fl_snapshot_take(t_path_in(dir, "a"), &o, NULL), -EDEADLK);
	/* PRECOPY: begin before start has no rounds to end. */
	o.strategy = FL_SNAPSHOT_PRECOPY;
	T_OK(fl_snapshot_new(t_path_in(dir, "a"), &o, &s));
	T_ASSERT_EQ(fl_snapshot_begin(s), -ESRCH);
	T_ASSERT_EQ(fl_snapshot_wait(s, 0, NULL), -ESRCH);
	fl_snapshot_free(s);
	o.strategy = FL_SNAPSHOT_COW;
	/* A full COW snapshot on a watch that cannot hold writers back. */
	{
		struct fl_watch_opts wo = { .sz = sizeof(wo), .backend = FL_WATCH_MPROTECT };
		struct fl_watch *watch, *ws[1];
		T_OK(fl_watch_new(m, len, &wo, &watch));
		ws[0] = watch;
		o.watches = ws;
		T_ASSERT_EQ(fl_snapshot_new(t_path_in(dir, "a"), &o, &s), -EMEDIUMTYPE);
		o.watches = NULL;
		fl_watch_free(watch);
	}
	/* A range someone else's userfaultfd already handles. */
	uffd = t_uffd(0);
	T_OK(fl_uffd_register(uffd, m, len, FL_REG_MISSING, NULL));
	T_ASSERT_EQ(fl_snapshot_new(t_path_in(dir, "a"), &o, &s), -EBUSY);
	close(uffd);
	/* A missing parent image. */
	{
		struct fl_watch *watch, *ws[1];
		T_OK(fl_watch_new(m, len, NULL, &watch));
		ws[0] = watch;
		o.parent = t_path_in(dir, "none");
		o.watches = ws;
		o.strategy = FL_SNAPSHOT_PRECOPY;
		T_ASSERT_EQ(fl_snapshot_new(t_path_in(dir, "a"), &o, &s), -ENOENT);
		fl_watch_free(watch);
	}
	struct stat st;
	T_ASSERT(stat(t_path_in(dir, "a"), &st) != 0);
	rmdir(dir);
	return T_PASS;
}

/*
 * The COW recipe exactly as <faultline/snapshot.h> shows it:
 *   new; [pause]; begin; [resume]; wait
 * with writers running: the image equals memory at the pause.
 */
static int test_cow_recipe(void *arg)
{
	size_t len = 4u << 20;
	struct world w;
	struct fl_range r;
	struct fl_snapshot_progress p = { .sz = sizeof(p) };
	struct fl_snapshot *s;
	uint8_t id[FL_IMAGE_ID_LEN], zero[FL_IMAGE_ID_LEN] = { 0 };

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	world_init(&w, FL_MEM_ANON, len);
	world_start(&w, 2);
	r = (struct fl_range){ (uintptr_t)w.mem, len };
	struct fl_snapshot_opts o = { .sz = sizeof(o), .strategy = FL_SNAPSHOT_COW, .ranges = &r,
				      .nr_ranges = 1, .image_flags = FL_IMAGE_NO_SYNC, .log = t_log_cb };

	T_OK(fl_snapshot_new(t_path_in(dir, "img"), &o, &s));
	quiesce_cb(true, &w);
	T_OK(fl_snapshot_begin(s));
	quiesce_cb(false, &w);
	T_OK(fl_snapshot_wait(s, -1, id));
	T_ASSERT(memcmp(id, zero, sizeof(id)) != 0);
	T_OK(fl_snapshot_progress(s, &p));
	T_ASSERT_EQ(p.phase, FL_SNAP_DONE);
	/* Started by the wait: a later start has nothing left to do. */
	T_ASSERT_EQ(fl_snapshot_start(s), -EALREADY);
	fl_snapshot_free(s);
	world_stop(&w);
	check_image(t_path_in(dir, "img"), w.shadow, len);
	unlink(t_path_in(dir, "img"));
	rmdir(dir);
	return T_PASS;
}

/*
 * stall_ns is the time the writers were held: from the pause callback's
 * return to the resume call. A pause callback that takes long to reach its
 * safe point (here 30 ms), and a resume that takes long, are not stall.
 */
struct slow_quiesce {
	uint64_t paused_at, held_ns;
};

static int quiesce_slow(bool pause, void *ctx)
{
	struct slow_quiesce *q = ctx;
	struct timespec ts = { 0, 30 * 1000 * 1000 };

	if (pause) {
		nanosleep(&ts, NULL);
		q->paused_at = t_now_ns();
	} else {
		q->held_ns = t_now_ns() - q->paused_at;
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int test_stall(void *arg)
{
	enum fl_snapshot_strategy strategy = (enum fl_snapshot_strategy)(uintptr_t)arg;
	size_t len = 4u << 20;
	uint8_t *m = t_map(FL_MEM_ANON, len, NULL);
	struct fl_range r = { (uintptr_t)m, len };
	struct slow_quiesce q = { 0 };
	struct fl_snapshot_opts o = { .sz = sizeof(o), .strategy = strategy, .ranges = &r, .nr_ranges = 1,
				      .image_flags = FL_IMAGE_NO_SYNC, .quiesce = quiesce_slow, .quiesce_ctx = &q };
	struct fl_snapshot_progress p = { .sz = sizeof(p) };
	struct fl_snapshot *s;

	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	t_fill_pattern(m, len, 0, 11);
	T_OK(fl_snapshot_new(t_path_in(dir, "img"), &o, &s));
	T_OK(fl_snapshot_start(s));
	T_OK(fl_snapshot_wait(s, -1, NULL));
	T_OK(fl_snapshot_progress(s, &p));
	t_log("stall %llu ns, writers held %llu ns", (unsigned long long)p.stall_ns, (unsigned long long)q.held_ns);
	T_ASSERT(q.held_ns > 0);
	T_ASSERT(p.stall_ns > 0 && p.stall_ns <= q.held_ns, "stall_ns %llu, writers held %llu ns",
		 (unsigned long long)p.stall_ns, (unsigned long long)q.held_ns);
	fl_snapshot_free(s);
	unlink(t_path_in(dir, "img"));
	rmdir(dir);
	return T_PASS;
}

/*
 * A precopy snapshot under writes saves pages again in every round, and the
 * image still holds each page once: as many data pages as the memory has
 * non-zero pages at the pause, a file of those bytes plus the metadata, and
 * the memory at the pause byte for byte. With an mprotect watch too, whose
 * granules make a round re-save more.
 */
static int test_precopy_one_copy(void *arg)
{
	enum fl_watch_backend backend = (enum fl_watch_backend)(uintptr_t)arg;
	size_t len = 8u << 20;
	struct world w;
	struct fl_range r;
	struct fl_watch_opts wo = { .sz = sizeof(wo), .backend = backend };
	struct fl_watch *watch, *ws[1];
	struct fl_snapshot_progress p = { .sz = sizeof(p) };
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_snapshot *s;
	struct fl_image *img;
	uint64_t nonzero = 0, overhead;

	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	world_init(&w, FL_MEM_ANON, len);
	r = (struct fl_range){ (uintptr_t)w.mem, len };
	T_OK(fl_watch_new(w.mem, len, &wo, &watch));
	ws[0] = watch;
	world_start(&w, 2);
	struct fl_snapshot_opts o = { .sz = sizeof(o), .strategy = FL_SNAPSHOT_PRECOPY, .ranges = &r,
				      .nr_ranges = 1, .image_flags = FL_IMAGE_NO_SYNC, .watches = ws,
				      .quiesce = quiesce_cb, .quiesce_ctx = &w, .max_rounds = 6,
				      .converge_pages = 1, .log = t_log_cb };
	/* The writers must write during the rounds; on a loaded machine they
	 * may get no CPU for a whole save: then take it again (the shadow is
	 * the memory at the last pause). */
	for (int attempt = 1; attempt <= 5; attempt++) {
		unlink(t_path_in(dir, "img"));
		T_OK(fl_snapshot_new(t_path_in(dir, "img"), &o, &s));
		T_OK(fl_snapshot_start(s));
		T_OK(fl_snapshot_wait(s, -1, NULL));
		T_OK(fl_snapshot_progress(s, &p));
		fl_snapshot_free(s);
		t_log("attempt %d: pages saved %llu for %llu pages, %u rounds", attempt,
		      (unsigned long long)p.pages_saved, (unsigned long long)p.pages_total, p.rounds);
		if (p.pages_saved > p.pages_total)
			break;
		t_sleep_ms(20);
	}
	world_stop(&w);
	fl_watch_free(watch);
	/* Pages were saved again: otherwise there is nothing to check. */
	T_ASSERT(p.pages_saved > p.pages_total, "no page saved twice (%llu saved)", (unsigned long long)p.pages_saved);
	for (size_t pg = 0; pg < w.npages; pg++) {
		const uint64_t *q = (const uint64_t *)(const void *)(w.shadow + pg * PS);
		bool z = true;
		for (size_t i = 0; i < PS / 8 && z; i++)
			z = !q[i];
		nonzero += !z;
	}
	T_OK(fl_image_open(t_path_in(dir, "img"), 0, &img));
	T_OK(fl_image_info(img, &info));
	fl_image_close(img);
	T_ASSERT_EQ(info.pages_data, nonzero);
	overhead = 4096 + 128 + info.pages_total * 24 + 64 + PS;
	t_log("file %llu bytes, data %llu bytes", (unsigned long long)info.file_bytes,
	      (unsigned long long)info.data_bytes);
	T_ASSERT(info.file_bytes <= info.data_bytes + overhead, "file %llu bytes for %llu bytes of data: dead copies",
		 (unsigned long long)info.file_bytes, (unsigned long long)info.data_bytes);
	check_image(t_path_in(dir, "img"), w.shadow, len);
	unlink(t_path_in(dir, "img"));
	rmdir(dir);
	return T_PASS;
}

/*
 * Precopy on a watch that cannot hold writers back (asynchronous, mprotect):
 * the final dirty set is copied into memory during the pause and written
 * to the image after the writers resume. Pages written after the instant,
 * before that write, must still be saved as they were at the instant:
 * writers run throughout, the test writes pages of its own before the pause
 * (so the final set is not empty) and again right after the instant, with
 * the snapshot thread still to write them out.
 */
static int test_pause_copy(void *arg)
{
	enum fl_watch_backend backend = (enum fl_watch_backend)(uintptr_t)arg;
	size_t len = 8u << 20, mine = 64;
	struct world w;
	struct fl_range r;
	struct fl_watch_opts wo = { .sz = sizeof(wo), .backend = backend };
	struct fl_watch *watch, *ws[1];

	if (backend == FL_WATCH_ASYNC)
		t_require_needs(T_WATCH_ASYNC);
	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	world_init(&w, FL_MEM_ANON, len);
	r = (struct fl_range){ (uintptr_t)w.mem, len };
	T_OK(fl_watch_new(w.mem, len, &wo, &watch));
	ws[0] = watch;
	w.hot = w.npages / 2;	/* the writers' half; the test writes in the other */
	world_start(&w, 2);
	for (int it = 0; it < 4; it++) {
		struct fl_snapshot_opts o = { .sz = sizeof(o), .strategy = FL_SNAPSHOT_PRECOPY, .ranges = &r,
					      .nr_ranges = 1, .image_flags = FL_IMAGE_NO_SYNC, .watches = ws,
					      .max_rounds = 3, .log = t_log_cb };
		struct fl_snapshot_progress p = { .sz = sizeof(p) };
		struct fl_snapshot *s;

		T_OK(fl_snapshot_new(t_path_in(dir, "img"), &o, &s));
		T_OK(fl_snapshot_start(s));
		T_OK(fl_snapshot_wait_ready(s, -1));
		for (size_t k = 0; k < mine; k++)
			page_write(w.mem + (w.hot + k * 3 + (size_t)it) * PS);
		quiesce_cb(true, &w);	/* writers paused, memory to the shadow */
		T_OK(fl_snapshot_begin(s));
		/* After the instant: this thread holds the writers off, its own
		 * writes land before the snapshot thread writes the pause's copy. */
		for (size_t k = 0; k < mine; k++)
			page_write(w.mem + (w.hot + k * 3 + (size_t)it) * PS);
		memset(w.mem + (w.hot + 1) * PS, 0xee, PS);
		quiesce_cb(false, &w);
		T_OK(fl_snapshot_wait(s, -1, NULL));
		T_OK(fl_snapshot_progress(s, &p));
		t_log("final set %llu pages, %llu saved, %u rounds", (unsigned long long)p.pages_final,
		      (unsigned long long)p.pages_saved, p.rounds);
		T_ASSERT(p.pages_final >= mine, "final set %llu pages, the test wrote %zu before the pause",
			 (unsigned long long)p.pages_final, mine);
		fl_snapshot_free(s);
		check_image(t_path_in(dir, "img"), w.shadow, len);
		unlink(t_path_in(dir, "img"));
	}
	world_stop(&w);
	fl_watch_free(watch);
	rmdir(dir);
	return T_PASS;
}

static int quiesce_nothing(bool pause, void *ctx)
{
	(void)pause;
	(void)ctx;
	return 0;
}

/* The API sequence with no writers at all: every page saved once. */
static int test_quiet(void *arg)
{
	enum fl_mem_type mem = (enum fl_mem_type)(uintptr_t)arg;
	size_t len = mem == FL_MEM_HUGETLB ? 8u << 20 : 4u << 20;
	uint8_t *m = t_map(mem, len, NULL);
	struct fl_range r = { (uintptr_t)m, len };
	uint8_t *expect = calloc(1, len);
	struct fl_snapshot_opts o = { .sz = sizeof(o), .ranges = &r, .nr_ranges = 1,
				      .image_flags = FL_IMAGE_NO_SYNC, .quiesce = quiesce_nothing };
	uint8_t id[FL_IMAGE_ID_LEN], zero[FL_IMAGE_ID_LEN] = { 0 };

	T_ASSERT(expect != NULL);
	t_tmpdir(dir, sizeof(dir), "/var/tmp/fl-snap");
	t_fill_pattern(m, len / 2, 0, 7);	/* second half never touched */
	memcpy(expect, m, len / 2);
	T_OK(fl_snapshot_take(t_path_in(dir, "img"), &o, id));
	T_ASSERT(memcmp(id, zero, sizeof(id)) != 0);
	check_image_torn(t_path_in(dir, "img"), expect, len, false);
	/* Untouched anonymous memory stays unpopulated: zeros were written
	 * without reading (and so allocating) those pages. */
	if (mem == FL_MEM_ANON) {
		unsigned char vec[512];
		T_ASSERT(mincore(m + len / 2, len / 2, vec) == 0);
		for (size_t i = 0; i < len / 2 / PS; i++)
			T_ASSERT(!(vec[i] & 1), "page %zu of the untouched half was populated", i);
	}
	unlink(t_path_in(dir, "img"));
	rmdir(dir);
	return T_PASS;
}

#define CONS(memname, mem, stratname, strat, expl, suffix)                                   \
	{ "consistency-" stratname "-" memname suffix, test_consistency,                      \
	  &(struct snap_case){ mem, strat, expl }, 120, (mem) == FL_MEM_HUGETLB ? T_HUGE_PAGES : 0u }
#define CHAIN(name, mem, strat, backend, wr)                                                 \
	{ "chain-" name, test_chain, &(struct chain_case){ mem, strat, backend, wr }, 120,            \
	  ((backend) == FL_WATCH_ASYNC ? T_WATCH_ASYNC : 0u) | ((mem) == FL_MEM_HUGETLB ? T_HUGE_PAGES : 0u) }

static const struct t_case cases[] = {
	CONS("anon", FL_MEM_ANON, "cow", FL_SNAPSHOT_COW, false, ""),
	CONS("shmem", FL_MEM_SHMEM, "cow", FL_SNAPSHOT_COW, false, ""),
	CONS("hugetlb", FL_MEM_HUGETLB, "cow", FL_SNAPSHOT_COW, false, ""),
	CONS("anon", FL_MEM_ANON, "precopy", FL_SNAPSHOT_PRECOPY, false, ""),
	CONS("shmem", FL_MEM_SHMEM, "precopy", FL_SNAPSHOT_PRECOPY, false, ""),
	CONS("hugetlb", FL_MEM_HUGETLB, "precopy", FL_SNAPSHOT_PRECOPY, false, ""),
	CONS("anon", FL_MEM_ANON, "cow", FL_SNAPSHOT_COW, true, "-explicit"),
	CONS("anon", FL_MEM_ANON, "precopy", FL_SNAPSHOT_PRECOPY, true, "-explicit"),
	CHAIN("cow-sync-anon", FL_MEM_ANON, FL_SNAPSHOT_COW, FL_WATCH_SYNC, false),
	CHAIN("cow-sync-shmem", FL_MEM_SHMEM, FL_SNAPSHOT_COW, FL_WATCH_SYNC, false),
	CHAIN("cow-sync-hugetlb", FL_MEM_HUGETLB, FL_SNAPSHOT_COW, FL_WATCH_SYNC, false),
	CHAIN("cow-async-anon", FL_MEM_ANON, FL_SNAPSHOT_COW, FL_WATCH_ASYNC, false),
	CHAIN("precopy-auto-anon", FL_MEM_ANON, FL_SNAPSHOT_PRECOPY, FL_WATCH_AUTO, false),
	CHAIN("precopy-async-shmem", FL_MEM_SHMEM, FL_SNAPSHOT_PRECOPY, FL_WATCH_ASYNC, false),
	CHAIN("precopy-mprotect-anon", FL_MEM_ANON, FL_SNAPSHOT_PRECOPY, FL_WATCH_MPROTECT, false),
	CHAIN("cow-mprotect-anon-writers", FL_MEM_ANON, FL_SNAPSHOT_COW, FL_WATCH_MPROTECT, true),
	CHAIN("cow-sync-anon-writers", FL_MEM_ANON, FL_SNAPSHOT_COW, FL_WATCH_SYNC, true),
	CHAIN("precopy-auto-anon-writers", FL_MEM_ANON, FL_SNAPSHOT_PRECOPY, FL_WATCH_AUTO, true),
	CHAIN("precopy-async-anon-writers", FL_MEM_ANON, FL_SNAPSHOT_PRECOPY, FL_WATCH_ASYNC, true),
	{ "disk-full-cow", test_disk_full, (void *)(uintptr_t)FL_SNAPSHOT_COW, 60 },
	{ "disk-full-precopy", test_disk_full, (void *)(uintptr_t)FL_SNAPSHOT_PRECOPY, 60 },
	{ "cancel-cow", test_cancel, (void *)(uintptr_t)FL_SNAPSHOT_COW, 60 },
	{ "cancel-precopy", test_cancel, (void *)(uintptr_t)FL_SNAPSHOT_PRECOPY, 60 },
	{ "bad-input", test_bad_input, NULL, 30 },
	{ "cow-recipe", test_cow_recipe, NULL, 60 },
	{ "precopy-one-copy", test_precopy_one_copy, (void *)(uintptr_t)FL_WATCH_AUTO, 120 },
	{ "precopy-one-copy-mprotect", test_precopy_one_copy, (void *)(uintptr_t)FL_WATCH_MPROTECT, 120 },
	{ "pause-copy-async", test_pause_copy, (void *)(uintptr_t)FL_WATCH_ASYNC, 120, T_WATCH_ASYNC },
	{ "pause-copy-mprotect", test_pause_copy, (void *)(uintptr_t)FL_WATCH_MPROTECT, 120 },
	{ "stall-cow", test_stall, (void *)(uintptr_t)FL_SNAPSHOT_COW, 60 },
	{ "stall-precopy", test_stall, (void *)(uintptr_t)FL_SNAPSHOT_PRECOPY, 60 },
	{ "quiet-anon", test_quiet, (void *)(uintptr_t)FL_MEM_ANON, 30 },
	{ "quiet-shmem", test_quiet, (void *)(uintptr_t)FL_MEM_SHMEM, 30 },
	{ "quiet-hugetlb", test_quiet, (void *)(uintptr_t)FL_MEM_HUGETLB, 30, T_HUGE_PAGES },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
