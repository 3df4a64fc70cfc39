// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Far memory (fl_region_new(3) "Far memory"): regions larger than their
 * resident limit, eviction, write-back, flush, advice, and the failures
 * that must never lose a page: a store that cannot write, a full disk,
 * the process killed in the middle of write-back.
 */
#include <faultline/faultline.h>

#include "util.h"

#include <sys/mount.h>
#include <sys/resource.h>
#include <math.h>

#define MAXU(a, b) ((a) > (b) ? (a) : (b))

/* ---- pages that say what they should hold ------------------------------- */

/*
 * A page: {index, counter} then a pattern of both over the first 4 KiB,
 * and the counter again in its last 8 bytes (hugetlb pages are 2 MiB: a
 * write must reach the end of the page too).
 */
struct hdr {
	uint64_t index, counter;
};

static uint8_t pat_byte(uint64_t index, uint64_t counter, size_t i)
{
	return (uint8_t)(index * 131 + counter * 29 + i * 7 + (i >> 8));
}

static void page_write(uint8_t *pg, size_t psz, uint64_t index, uint64_t counter)
{
	struct hdr h = { index, counter };

	for (size_t i = sizeof(h); i < U_PAGE - 8; i++)
		pg[i] = pat_byte(index, counter, i);
	memcpy(pg + psz - 8, &counter, 8);
	memcpy(pg, &h, sizeof(h));
}

/* 0 when pg holds (index, counter); else a description in why. */
static int page_check(const uint8_t *pg, size_t psz, uint64_t index, uint64_t counter, char *why, size_t len)
{
	struct hdr h;
	uint64_t tail;

	memcpy(&h, pg, sizeof(h));
	memcpy(&tail, pg + psz - 8, 8);
	if (h.index != index || h.counter != counter || tail != counter) {
		snprintf(why, len, "page %llu: header {%llu, %llu} tail %llu, want counter %llu",
			 (unsigned long long)index, (unsigned long long)h.index, (unsigned long long)h.counter,
			 (unsigned long long)tail, (unsigned long long)counter);
		return -1;
	}
	for (size_t i = sizeof(h); i < U_PAGE - 8; i++) {
		if (pg[i] != pat_byte(index, counter, i)) {
			snprintf(why, len, "page %llu counter %llu: byte %zu is %u, want %u", (unsigned long long)index,
				 (unsigned long long)counter, i, pg[i], pat_byte(index, counter, i));
			return -1;
		}
	}
	return 0;
}

/* A store file in /tmp holding every page at counter 0; O_RDWR fd. */
static int make_store_file(size_t npages, size_t psz)
{
	uint8_t *pg = calloc(1, psz);
	int fd = u_tmpfile(NULL, 0, NULL, 0);

	T_ASSERT(pg);
	T_OK(ftruncate(fd, (off_t)(npages * psz)));
	for (size_t p = 0; p < npages; p++) {
		page_write(pg, psz, p, 0);
		T_ASSERT(pwrite(fd, pg, psz, (off_t)(p * psz)) == (ssize_t)psz);
	}
	free(pg);
	return fd;
}

static struct fl_region_opts far_opts(const struct u_cfg *c, size_t len, struct fl_store *s, uint64_t resident_max)
{
	struct fl_region_opts o = u_ropts(c, len, s, FL_REGION_WRITEBACK);

	o.resident_max = resident_max;
	return o;
}

/* MINOR far regions need CONTINUE with MODE_WP (Linux 6.4): skip without. */
static void require_far(const struct u_cfg *c)
{
	t_require(FL_FEATURE_BIT(FL_FEATURE_WP));
	if (c->mem != FL_MEM_ANON)
		t_require(FL_FEATURE_BIT(FL_FEATURE_WP_HUGETLBFS_SHMEM));
	if (c->mode == FL_MODE_MINOR)
		t_require(FL_FEATURE_BIT(FL_FEATURE_CONTINUE_MODE_WP));
}

static void log_far(const char *what, const struct fl_region_stats *s)
{
	t_log("%s: resident %llu peak %llu dirty %llu evicted clean %llu dirty %llu, written %llu (%llu B), "
	      "errors %llu, refaults %llu, faults r/w/minor/wp %llu/%llu/%llu/%llu", what,
	      (unsigned long long)s->resident_pages, (unsigned long long)s->resident_peak,
	      (unsigned long long)s->dirty_pages, (unsigned long long)s->pages_evicted_clean,
	      (unsigned long long)s->pages_evicted_dirty, (unsigned long long)s->pages_written_back,
	      (unsigned long long)s->bytes_written, (unsigned long long)s->writeback_errors,
	      (unsigned long long)s->refaults, (unsigned long long)s->faults_read,
	      (unsigned long long)s->faults_write, (unsigned long long)s->faults_minor,
	      (unsigned long long)s->faults_wp);
}

/* ---- 4 threads, random reads and writes, 4x the limit ------------------ */

#define THREADS 4

struct shared {
	uint8_t *base;
	size_t psz, npages;
	uint64_t *counter;		/* what each page holds */
	pthread_mutex_t *mu;		/* per page: the test's, so counters are exact */
	unsigned ops;
	_Atomic int failed;
	_Atomic int finished;
	char why[256];
};

struct worker {
	struct shared *sh;
	unsigned seed;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	char why[200];

	for (unsigned i = 0; i < sh->ops && !atomic_load(&sh->failed); i++) {
		size_t p = (size_t)rand_r(&w->seed) % sh->npages;
		uint8_t *pg = sh->base + p * sh->psz;

		pthread_mutex_lock(&sh->mu[p]);
		if (page_check(pg, sh->psz, p, sh->counter[p], why, sizeof(why))) {
			if (!atomic_exchange(&sh->failed, 1))
				snprintf(sh->why, sizeof(sh->why), "read: %s", why);
		} else if (rand_r(&w->seed) & 1) {
			page_write(pg, sh->psz, p, ++sh->counter[p]);
		}
		pthread_mutex_unlock(&sh->mu[p]);
	}
	atomic_fetch_add(&sh->finished, 1);
	return NULL;
}

/* The store's bytes (the backing file) equal the memory's, page by page. */
static void assert_store_matches(int fd, const uint8_t *base, size_t psz, size_t npages, const uint64_t *counter)
{
	uint8_t *pg = malloc(psz);
	char why[256];

	T_ASSERT(pg);
	for (size_t p = 0; p < npages; p++) {
		T_ASSERT(pread(fd, pg, psz, (off_t)(p * psz)) == (ssize_t)psz);
		T_ASSERT(page_check(pg, psz, p, counter[p], why, sizeof(why)) == 0, "store: %s", why);
		/* Reading the memory may fault it in and evict others: clean
		 * now, so the file does not change under the comparison. */
		T_ASSERT(memcmp(pg, base + p * psz, psz) == 0, "page %zu: store and memory differ", p);
	}
	free(pg);
}

static int c_stress(void *arg)
{
	const struct u_cfg *c = arg;
	size_t psz = u_cfg_psz(c);
	size_t npages = c->mem == FL_MEM_HUGETLB ? 32 : 1024;
	size_t len = npages * psz;
	uint64_t high_pages = npages / 4, max_seen = 0;
	struct shared sh = { .psz = psz, .npages = npages, .ops = c->mem == FL_MEM_HUGETLB ? 1500 : 6000 };
	struct worker w[THREADS];
	pthread_t th[THREADS];
	struct fl_region_opts o;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	int fd;

	require_far(c);
	fd = make_store_file(npages, psz);
	T_OK(fl_store_file_new(fd, 0, 0, &s));
	e = u_engine(0, 2);
	o = far_opts(c, len, s, high_pages * psz);
	r = u_region_opts(e, &o);
	sh.base = fl_region_addr(r);
	sh.counter = calloc(npages, sizeof(*sh.counter));
	sh.mu = calloc(npages, sizeof(*sh.mu));
	T_ASSERT(sh.counter && sh.mu);
	for (size_t p = 0; p < npages; p++)
		pthread_mutex_init(&sh.mu[p], NULL);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ &sh, 1234u + (unsigned)i * 7919u };
		T_ASSERT(pthread_create(&th[i], NULL, worker_main, &w[i]) == 0);
	}
	/* Sample the resident set while they run. */
	while (atomic_load(&sh.finished) < THREADS) {
		st = u_rstats(r);
		max_seen = MAXU(max_seen, st.resident_pages);
		t_sleep_ms(1);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	T_ASSERT(!atomic_load(&sh.failed), "%s", sh.why);
	st = u_rstats(r);
	log_far(c->name, &st);
	/* The evictor runs after the fills that take the set over the mark;
	 * past high + max(high / 8, 8) a faulting thread waits for it, once
	 * its fill (a prefetch window at most) is in. */
	{
		uint64_t slack = MAXU(high_pages / 8, 8) + THREADS * ((c->mem == FL_MEM_HUGETLB ? 1 : 16) + 1);
		T_ASSERT(max_seen <= high_pages + slack && st.resident_peak <= high_pages + slack,
			 "resident sampled max %llu, peak %llu, high mark %llu + slack %llu", (unsigned long long)max_seen,
			 (unsigned long long)st.resident_peak, (unsigned long long)high_pages, (unsigned long long)slack);
	}
	T_ASSERT(st.pages_evicted_clean + st.pages_evicted_dirty > 0);
	T_ASSERT(st.pages_evicted_dirty > 0 && st.pages_written_back > 0 && st.refaults > 0);
	T_ASSERT_EQ(st.writeback_errors, 0);
	T_OK(fl_region_flush(r));
	st = u_rstats(r);
	T_ASSERT_EQ(st.dirty_pages, 0);
	assert_store_matches(fd, sh.base, psz, npages, sh.counter);
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	close(fd);
	free(sh.counter);
	free(sh.mu);
	return T_PASS;
}

/* ---- write failures ------------------------------------------------------------ */

static const struct u_cfg anon = { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING };

/* Write every page, with counter `gen`. */
static void write_all(uint8_t *base, size_t npages, uint64_t gen)
{
	for (size_t p = 0; p < npages; p++)
		page_write(base + p * U_PAGE, U_PAGE, p, gen);
}

static void check_all(const uint8_t *base, size_t npages, uint64_t gen)
{
	char why[256];

	for (size_t p = 0; p < npages; p++)
		T_ASSERT(page_check(base + p * U_PAGE, U_PAGE, p, gen, why, sizeof(why)) == 0, "%s", why);
}

static int c_write_fail(void *arg)
{
	size_t npages = 256, len = npages * U_PAGE;
	uint64_t all[2] = { 0, len }, none[2] = { 0, 0 };
	struct fl_region_opts o;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	uint8_t *img = calloc(1, len), *base;
	char why[256];

	(void)arg;
	require_far(&anon);
	T_ASSERT(img);
	for (size_t p = 0; p < npages; p++)
		page_write(img + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_memory_new(img, len, FL_STORE_MEM_COPY, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 64 * U_PAGE);
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	T_OK(fl_store_ctl(s, FL_STORE_CTL_FAIL_WRITES, all));
	write_all(base, npages, 1);
	/* The evictor tries, fails, keeps the pages: more resident than the
	 * mark, every byte intact. */
	T_ASSERT(T_WAIT_FOR(u_rstats(r).writeback_errors > 0, 5000));
	st = u_rstats(r);
	log_far("failing store", &st);
	T_ASSERT(st.resident_pages > 64, "resident %llu", (unsigned long long)st.resident_pages);
	T_ASSERT_EQ(st.pages_evicted_dirty, 0);
	T_ASSERT_EQ(fl_region_flush(r), -EIO);
	check_all(base, npages, 1);
	T_ASSERT_EQ(u_rstats(r).dirty_pages, npages);
	/* The store comes back: everything is written, then evicted. */
	T_OK(fl_store_ctl(s, FL_STORE_CTL_FAIL_WRITES, none));
	T_OK(fl_region_flush(r));
	for (size_t p = 0; p < npages; p++) {
		uint8_t pg[U_PAGE];
		struct fl_store_iov iov = { .offset = p * U_PAGE, .buf = pg, .len = U_PAGE };
		T_OK(fl_store_read(s, &iov, 1));
		T_ASSERT(page_check(pg, U_PAGE, p, 1, why, sizeof(why)) == 0, "store: %s", why);
	}
	T_ASSERT(T_WAIT_FOR(u_rstats(r).resident_pages <= 64, 5000), "the evictor catches up once the store writes");
	check_all(base, npages, 1);
	st = u_rstats(r);
	log_far("store back", &st);
	T_ASSERT(st.refaults > 0);
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	free(img);
	return T_PASS;
}

/* A file store on a 512 KiB tmpfs (in a mount namespace of this case's own): -ENOSPC. */
static int c_enospc(void *arg)
{
	size_t npages = 512, len = npages * U_PAGE;
	char dir[256];
	struct fl_region_opts o;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	uint8_t *base;
	int fd, ret;

	(void)arg;
	require_far(&anon);
	if (geteuid() != 0)
		t_skip_resource("a tmpfs of its own needs root");
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		t_skip_resource("no mount namespace: %s", strerror(errno));
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-far-enospc");
	T_ASSERT(mount("tmpfs", dir, "tmpfs", 0, "size=512k") == 0, "mount: %s", strerror(errno));
	fd = open(t_path_in(dir, "store"), O_RDWR | O_CREAT, 0600);
	T_ASSERT(fd >= 0);
	T_OK(ftruncate(fd, (off_t)len));	/* sparse: reads are zeros until written */
	T_OK(fl_store_file_new(fd, 0, 0, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 64 * U_PAGE);
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	write_all(base, npages, 7);
	ret = fl_region_flush(r);
	T_ASSERT_EQ(ret, -ENOSPC);
	st = u_rstats(r);
	log_far("full disk", &st);
	T_ASSERT(st.writeback_errors > 0 && st.dirty_pages > 0);
	check_all(base, npages, 7);
	T_ASSERT(mount(NULL, dir, NULL, MS_REMOUNT, "size=8m") == 0, "remount: %s", strerror(errno));
	T_OK(fl_region_flush(r));
	{
		uint64_t counter[512];
		for (size_t p = 0; p < npages; p++)
			counter[p] = 7;
		assert_store_matches(fd, base, U_PAGE, npages, counter);
	}
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	close(fd);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	return T_PASS;
}

/* ---- kill -9 in the middle of write-back ---------------------------------------- */

/*
 * Each page holds a generation: every 8-byte word is gen * 2^20 + the
 * page's index * 2^8 + the word's index % 256, so a page mixing two
 * generations is recognised. Writers bump pages; the child flushes in a
 * loop and, after each flush that returned 0, sends the generations the
 * pages had when the flush was called: the store must have each page at
 * that generation or a later one.
 */
#define K_PAGES 256
#define K_WORDS (U_PAGE / 8)

static uint64_t k_word(uint64_t page, uint64_t gen, size_t i)
{
	return gen << 20 | page << 8 | (i % 256);
}

struct kshared {
	uint8_t *base;
	_Atomic uint64_t gen[K_PAGES];
};

static void *k_writer(void *arg)
{
	struct kshared *k = arg;
	unsigned seed = (unsigned)(uintptr_t)pthread_self();

	for (;;) {
		size_t p = (size_t)rand_r(&seed) % K_PAGES;
		uint64_t *w = (uint64_t *)(void *)(k->base + p * U_PAGE);
		uint64_t g;

		g = atomic_load(&k->gen[p]) + 1;
		for (size_t i = 0; i < K_WORDS; i++)
			w[i] = k_word(p, g, i);
		atomic_store(&k->gen[p], g);
	}
	return NULL;
}

static void k_child(int wfd, const char *path)
{
	static struct kshared k;
	struct fl_region_opts o;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	pthread_t th;
	int fd = open(path, O_RDWR);

	if (fd < 0 || fl_store_file_new(fd, 0, 0, &s))
		_exit(3);
	e = u_engine(0, 1);
	o = far_opts(&anon, K_PAGES * U_PAGE, s, 64 * U_PAGE);
	o.writeback_rate = 64 << 20;	/* heavy background write-back too */
	if (fl_region_new(e, &o, &r))
		_exit(4);
	k.base = fl_region_addr(r);
	/* One writer: a page's generations then only go up by one at a time. */
	if (pthread_create(&th, NULL, k_writer, &k))
		_exit(5);
	for (;;) {
		uint64_t snap[K_PAGES];
		for (size_t p = 0; p < K_PAGES; p++)
			snap[p] = atomic_load(&k.gen[p]);
		if (fl_region_flush(r))
			_exit(6);
		if (write(wfd, snap, sizeof(snap)) != (ssize_t)sizeof(snap))
			_exit(7);
	}
}

static int c_kill9(void *arg)
{
	char path[128];
	uint64_t flushed[K_PAGES] = { 0 }, snap[K_PAGES];
	unsigned snaps = 0, torn = 0;
	int pfd[2], fd, status;
	pid_t pid;

	(void)arg;
	require_far(&anon);
	fd = u_tmpfile(NULL, 0, path, sizeof(path));
	T_OK(ftruncate(fd, K_PAGES * U_PAGE));
	{
		/* Generation 0 everywhere. */
		uint64_t w[K_WORDS];
		for (size_t p = 0; p < K_PAGES; p++) {
			for (size_t i = 0; i < K_WORDS; i++)
				w[i] = k_word(p, 0, i);
			T_ASSERT(pwrite(fd, w, U_PAGE, (off_t)(p * U_PAGE)) == (ssize_t)U_PAGE);
		}
	}
	T_OK(pipe(pfd));
	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		k_child(pfd[1], path);
		_exit(0);
	}
	close(pfd[1]);
	/* Let it flush a few times, then kill it in the middle of one. */
	while (snaps < 5 && u_read_full(pfd[0], snap, sizeof(snap), (int)t_scaled_ms(20000))) {
		memcpy(flushed, snap, sizeof(snap));
		snaps++;
	}
	T_ASSERT(snaps == 5, "the child flushed %u times", snaps);
	t_sleep_ms(3);
	kill(pid, SIGKILL);
	/* Flushes that completed before the kill count too. */
	while (u_read_full(pfd[0], snap, sizeof(snap), 1000))
		memcpy(flushed, snap, sizeof(snap));
	T_OK(t_wait_pid(pid, 10000, &status));
	T_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status 0x%x", status);
	for (size_t p = 0; p < K_PAGES; p++) {
		uint64_t w[K_WORDS], g;
		size_t k = 0;

		T_ASSERT(pread(fd, w, U_PAGE, (off_t)(p * U_PAGE)) == (ssize_t)U_PAGE);
		g = w[0] >> 20;
		while (k < K_WORDS && w[k] == k_word(p, g, k))
			k++;
		/* A writer in the middle of its page when a write-back
		 * protected it: memory held words of g, then of g - 1, and a
		 * write-back copies what memory holds (msync does the same).
		 * Nothing else: no other mix, no zeros, nothing older than
		 * what was flushed. */
		for (size_t i = k; i < K_WORDS; i++)
			T_ASSERT(g > 0 && w[i] == k_word(p, g - 1, i),
				 "page %zu word %zu: 0x%llx, the page starts with generation %llu (%zu words of it)", p,
				 i, (unsigned long long)w[i], (unsigned long long)g, k);
		torn += k < K_WORDS;
		T_ASSERT((k < K_WORDS ? g - 1 : g) >= flushed[p], "page %zu: generation %llu in the store, %llu was flushed",
			 p, (unsigned long long)(k < K_WORDS ? g - 1 : g), (unsigned long long)flushed[p]);
	}
	t_log("%u flushes seen; %u pages caught by a write-back in the middle of the writer's update", snaps, torn);
	close(fd);
	unlink(path);
	close(pfd[0]);
	return T_PASS;
}

/* ---- refusals ---------------------------------------------------------------- */

static int c_refusals(void *arg)
{
	struct fl_region_opts o;
	struct fl_engine *e;
	struct fl_region *r = NULL;
	struct fl_store *zero, *ro;
	char path[256];
	int fd, rofd;
	uint8_t img[16 * U_PAGE] = { 0 };

	(void)arg;
	require_far(&anon);
	e = u_engine(0, 1);
	T_OK(fl_store_zero_new(64 * U_PAGE, &zero));
	o = far_opts(&anon, 64 * U_PAGE, zero, 16 * U_PAGE);
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EROFS);
	o.store = NULL;		/* the default store is the zero store */
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EROFS);
	/* A read-only zero-backed region may still have a limit. */
	o.flags = 0;
	o.store = zero;
	T_OK(fl_region_new(e, &o, &r));
	T_ASSERT_EQ(fl_region_flush(r), -EOPNOTSUPP);
	T_ASSERT_EQ(fl_region_advise(r, 0, U_PAGE, FL_ADVISE_COLD | FL_ADVISE_DONTNEED), -EINVAL);
	T_ASSERT_EQ(fl_region_advise(r, 0, 0, FL_ADVISE_COLD), -EINVAL);
	T_ASSERT_EQ(fl_region_advise(r, 63 * U_PAGE, 2 * U_PAGE, FL_ADVISE_COLD), -EINVAL);
	T_OK(fl_region_advise(r, 0, U_PAGE, FL_ADVISE_COLD));
	r = fl_region_free(r);

	/* A file store over a read-only descriptor. */
	fd = u_tmpfile(img, sizeof(img), path, sizeof(path));
	rofd = open(path, O_RDONLY);
	unlink(path);
	T_ASSERT(rofd >= 0);
	T_OK(fl_store_file_new(rofd, 0, 0, &ro));
	o = far_opts(&anon, sizeof(img), ro, 4 * U_PAGE);
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EROFS);
	fl_store_unref(ro);
	close(rofd);

	/* Marks and flags. */
	T_OK(fl_store_file_new(fd, 0, 0, &ro));
	o = far_opts(&anon, sizeof(img), ro, 4 * U_PAGE);
	o.resident_low = 5 * U_PAGE;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	o = far_opts(&anon, sizeof(img), ro, 3 * U_PAGE);	/* fewer than 4 pages */
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	o = far_opts(&anon, sizeof(img), ro, 8 * U_PAGE);
	o.flags |= FL_REGION_BACKGROUND;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	o = far_opts(&anon, sizeof(img), ro, 8 * U_PAGE);
	o.evict_policy = (enum fl_evict_policy)7;
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	o = u_ropts(&anon, sizeof(img), ro, 0);
	o.resident_low = U_PAGE;	/* far options without a limit or write-back */
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EINVAL);
	/* Write-back without a limit: flush-only. */
	o = u_ropts(&anon, sizeof(img), ro, FL_REGION_WRITEBACK);
	T_OK(fl_region_new(e, &o, &r));
	((volatile uint8_t *)fl_region_addr(r))[5] = 42;
	T_OK(fl_region_flush(r));
	T_ASSERT(pread(fd, img, 8, 0) == 8 && img[5] == 42);
	fl_region_free(r);
	fl_store_unref(ro);
	fl_store_unref(zero);
	close(fd);
	fl_engine_free(e);
	return T_PASS;
}

/* MINOR far memory where CONTINUE cannot map write-protected (< 6.4). */
static int inner_minor_masked(void *arg)
{
	static const struct u_cfg shm = { "shmem-minor", FL_MEM_SHMEM, FL_MODE_MINOR };
	struct fl_region_opts o;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	uint8_t img[16 * U_PAGE] = { 0 };
	int fd = u_tmpfile(img, sizeof(img), NULL, 0);

	(void)arg;
	T_OK(fl_store_file_new(fd, 0, 0, &s));
	e = u_engine(0, 1);
	o = far_opts(&shm, sizeof(img), s, 4 * U_PAGE);
	T_ASSERT_EQ(fl_region_new(e, &o, &r), -EOPNOTSUPP);
	fl_engine_free(e);
	fl_store_unref(s);
	close(fd);
	return T_PASS;
}

static const struct t_case inner_cases[] = {
	{ "minor-masked", inner_minor_masked, NULL, 0 },
};

static int c_minor_masked(void *arg)
{
	(void)arg;
	return u_run_masked("continue_mode_wp", "minor-masked");
}

/* ---- 2Q against FIFO on a skewed workload ------------------------------------ */

/* Zipf(s) over n ranks: the cumulative distribution, for a binary search. */
static double *zipf_cdf(size_t n, double s)
{
	double *cdf = malloc(n * sizeof(*cdf)), sum = 0;

	T_ASSERT(cdf);
	for (size_t i = 0; i < n; i++)
		sum += 1.0 / pow((double)(i + 1), s);
	for (size_t i = 0; i < n; i++) {
		cdf[i] = (i ? cdf[i - 1] : 0) + 1.0 / pow((double)(i + 1), s) / sum;
	}
	return cdf;
}

static size_t zipf_draw(const double *cdf, size_t n, unsigned *seed)
{
	double u = (double)rand_r(seed) / ((double)RAND_MAX + 1.0);
	size_t lo = 0, hi = n - 1;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

#define Z_PAGES 2048
#define Z_ACCESSES 40000

/* Hit rate (per mille) of one policy: 1 - faults / accesses. */
static unsigned zipf_hits(const struct u_cfg *c, struct fl_engine *e, struct fl_store *s, enum fl_evict_policy pol,
			  const double *cdf, const uint32_t *perm)
{
	struct fl_region_opts o = u_ropts(c, Z_PAGES * U_PAGE, s, FL_REGION_NO_PREFETCH);
	struct fl_region_stats st;
	struct fl_region *r;
	volatile uint8_t *base;
	unsigned seed = 42;
	uint64_t sum = 0, fills0;

	o.resident_max = Z_PAGES / 4 * U_PAGE;
	o.evict_policy = pol;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	/* Warm up, then count. */
	for (unsigned i = 0; i < Z_ACCESSES / 4; i++)
		sum += base[perm[zipf_draw(cdf, Z_PAGES, &seed)] * U_PAGE];
	/* Misses are pages filled (one per miss without prefetch), not
	 * faults: a fault that races with an eviction's REMOVE event is
	 * answered "try again" and counts twice, and a MINOR fault after a
	 * sampling zap finds the page in the page cache. */
	st = u_rstats_settled(r);
	fills0 = st.pages_copy + st.pages_zero;
	for (unsigned i = 0; i < Z_ACCESSES; i++) {
		sum += base[perm[zipf_draw(cdf, Z_PAGES, &seed)] * U_PAGE];
		/* The evictor keeps up with one thread's faults. */
		if (!(i % 64))
			T_WAIT_FOR(u_rstats(r).resident_pages <= Z_PAGES / 4, 1000);
	}
	st = u_rstats_settled(r);
	log_far(pol == FL_EVICT_FIFO ? "fifo" : "2q", &st);
	if (c->mode == FL_MODE_MINOR)
		t_log("%s: %llu MINOR faults (sampling)", pol == FL_EVICT_FIFO ? "fifo" : "2q",
		      (unsigned long long)st.faults_minor);
	(void)sum;
	fl_region_free(r);
	return (unsigned)(1000 - (st.pages_copy + st.pages_zero - fills0) * 1000 / Z_ACCESSES);
}

static int c_2q_vs_fifo(void *arg)
{
	const struct u_cfg *c = arg;
	uint8_t *img = u_image(Z_PAGES * U_PAGE, 0, 5);
	struct fl_store *s = u_mem_store(img, Z_PAGES * U_PAGE);
	double *cdf = zipf_cdf(Z_PAGES, 0.99);
	uint32_t *perm = u_perm(Z_PAGES, U_RANDOM, 7);
	struct fl_engine *e;
	unsigned fifo, twoq;

	require_far(c);
	e = u_engine(0, 1);
	fifo = zipf_hits(c, e, s, FL_EVICT_FIFO, cdf, perm);
	twoq = zipf_hits(c, e, s, FL_EVICT_2Q, cdf, perm);
	t_log("%s: Zipf(0.99), %d pages, resident limit %d: hit rate FIFO %u.%u%%, 2Q %u.%u%%", c->name, Z_PAGES,
	      Z_PAGES / 4, fifo / 10, fifo % 10, twoq / 10, twoq % 10);
	T_ASSERT(twoq > fifo, "2Q %u per mille, FIFO %u", twoq, fifo);
	fl_engine_free(e);
	fl_store_unref(s);
	free(cdf);
	free(perm);
	munmap(img, Z_PAGES * U_PAGE);
	return T_PASS;
}

/* ---- advice ---------------------------------------------------------------- */

static size_t resident_in(const uint8_t *p, size_t npages)
{
	unsigned char vec[1024];
	size_t n = 0;

	T_ASSERT(npages <= sizeof(vec));
	T_OK(mincore((void *)p, npages * U_PAGE, vec));
	for (size_t i = 0; i < npages; i++)
		n += vec[i] & 1;
	return n;
}

static int c_advise(void *arg)
{
	size_t npages = 512, len = npages * U_PAGE;
	uint8_t *img = calloc(1, len), *base;
	struct fl_region_opts o;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	uint64_t faults;

	(void)arg;
	require_far(&anon);
	T_ASSERT(img);
	for (size_t p = 0; p < npages; p++)
		page_write(img + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_memory_new(img, len, FL_STORE_MEM_COPY, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 128 * U_PAGE);
	o.flags |= FL_REGION_NO_PREFETCH;
	o.resident_low = 120 * U_PAGE;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);

	/* WILLNEED: in without faults. */
	T_OK(fl_region_advise(r, 0, 64 * U_PAGE, FL_ADVISE_WILLNEED));
	T_ASSERT_EQ(resident_in(base, 64), 64);
	st = u_rstats_settled(r);
	faults = u_faults(&st);
	check_all(base, 64, 0);
	st = u_rstats_settled(r);
	T_ASSERT_EQ(u_faults(&st) - faults, 0);

	/* DONTNEED: dirty pages written back, then dropped. */
	for (size_t p = 0; p < 16; p++)
		page_write(base + p * U_PAGE, U_PAGE, p, 3);
	T_OK(fl_region_advise(r, 0, 32 * U_PAGE, FL_ADVISE_DONTNEED));
	T_ASSERT_EQ(resident_in(base, 32), 0);
	st = u_rstats(r);
	T_ASSERT_EQ(st.resident_pages, 32);
	T_ASSERT_EQ(st.pages_evicted_dirty, 16);
	T_ASSERT_EQ(st.pages_evicted_clean, 16);
	check_all(base, 16, 3);
	{
		char why[256];
		for (size_t p = 16; p < 32; p++)
			T_ASSERT(page_check(base + p * U_PAGE, U_PAGE, p, 0, why, sizeof(why)) == 0, "%s", why);
	}

	/* COLD: those go first when the set is over the mark. Resident now:
	 * 0..63. Pages 40..47 cold, then 80 new pages push it to 144. */
	T_OK(fl_region_advise(r, 40 * U_PAGE, 8 * U_PAGE, FL_ADVISE_COLD));
	for (size_t p = 200; p < 280; p++)
		(void)*(volatile uint8_t *)(base + p * U_PAGE);
	T_ASSERT(T_WAIT_FOR(u_rstats(r).resident_pages <= 128, 5000));
	T_ASSERT_EQ(resident_in(base + 40 * U_PAGE, 8), 0);
	t_log("after COLD: %zu of pages 0..39 and %zu of 48..63 still resident", resident_in(base, 40),
	      resident_in(base + 48 * U_PAGE, 16));
	T_ASSERT(resident_in(base, 40) + resident_in(base + 48 * U_PAGE, 16) > 0, "only the cold pages had to go");
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	free(img);
	return T_PASS;
}


/* ---- background write-back, the application's discards, sequential advice ---- */

/* writeback_rate: dirty pages reach the store without a flush, never faster than the rate allows. */
static int c_background(void *arg)
{
	size_t npages = 128, len = npages * U_PAGE;
	uint64_t rate = 1 << 20, t0, elapsed_ns;
	uint8_t *img = calloc(1, len), *base;
	struct fl_region_opts o;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	char why[256];

	(void)arg;
	require_far(&anon);
	T_ASSERT(img);
	for (size_t p = 0; p < npages; p++)
		page_write(img + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_memory_new(img, len, FL_STORE_MEM_COPY, &s));
	e = u_engine(0, 1);
	/* Write-back without a limit, in the background at 1 MiB/s. */
	o = u_ropts(&anon, len, s, FL_REGION_WRITEBACK);
	o.writeback_rate = rate;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	t0 = t_now_ns();
	write_all(base, npages, 9);
	/* dirty_pages falls when a write starts, pages_written_back grows when it is done. */
	T_ASSERT(T_WAIT_FOR((st = u_rstats(r)).dirty_pages == 0 && st.pages_written_back >= npages, 10000),
		 "background write-back wrote everything");
	elapsed_ns = t_now_ns() - t0;
	st = u_rstats(r);
	log_far("background", &st);
	T_ASSERT(st.pages_written_back >= npages);
	T_ASSERT_EQ(st.pages_evicted_clean + st.pages_evicted_dirty, 0);
	/* The bucket holds one second's worth at most: an upper bound, not a
	 * timing (a slow machine only writes less). */
	T_ASSERT(st.bytes_written <= rate + (uint64_t)((double)rate * (double)elapsed_ns / 1e9) + (64 << 10),
		 "%llu bytes in %llu ms at %llu B/s", (unsigned long long)st.bytes_written,
		 (unsigned long long)(elapsed_ns / 1000000), (unsigned long long)rate);
	for (size_t p = 0; p < npages; p++) {
		uint8_t pg[U_PAGE];
		struct fl_store_iov iov = { .offset = p * U_PAGE, .buf = pg, .len = U_PAGE };
		T_OK(fl_store_read(s, &iov, 1));
		T_ASSERT(page_check(pg, U_PAGE, p, 9, why, sizeof(why)) == 0, "store: %s", why);
	}
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	free(img);
	return T_PASS;
}

/* The application discards a page: zeros, also after it was evicted and read back. */
static int c_app_discard(void *arg)
{
	size_t npages = 64, len = npages * U_PAGE;
	uint8_t *img = calloc(1, len), *base;
	struct fl_region_opts o;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;

	(void)arg;
	require_far(&anon);
	t_require_needs(T_EVENT_REMOVE);
	T_ASSERT(img);
	for (size_t p = 0; p < npages; p++)
		page_write(img + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_memory_new(img, len, FL_STORE_MEM_COPY, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 16 * U_PAGE);
	o.flags |= FL_REGION_NO_PREFETCH;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	check_all(base, 4, 0);
	T_OK(madvise(base, 2 * U_PAGE, MADV_DONTNEED));
	T_ASSERT(T_WAIT_FOR(u_estats(e).events_remove >= 1, 3000));
	T_ASSERT(u_all_zero(base, 2 * U_PAGE), "discarded pages read as zeros");
	/* Evicted and read back: still zeros, not the store's old bytes. */
	T_OK(fl_region_advise(r, 0, 4 * U_PAGE, FL_ADVISE_DONTNEED));
	T_ASSERT(u_all_zero(base, 2 * U_PAGE), "zeros after the eviction too");
	{
		char why[256];
		for (size_t p = 2; p < 4; p++)
			T_ASSERT(page_check(base + p * U_PAGE, U_PAGE, p, 0, why, sizeof(why)) == 0, "%s", why);
	}
	/* Our own evictions raised REMOVE events too: none made a page zero. */
	for (size_t p = 4; p < npages; p++)
		(void)*(volatile uint8_t *)(base + p * U_PAGE);
	T_ASSERT(T_WAIT_FOR(u_rstats(r).resident_pages <= 16, 5000));
	{
		char why[256];
		for (size_t p = 2; p < npages; p++)
			T_ASSERT(page_check(base + p * U_PAGE, U_PAGE, p, 0, why, sizeof(why)) == 0, "%s", why);
	}
	T_ASSERT(u_all_zero(base, 2 * U_PAGE));
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	free(img);
	return T_PASS;
}

/* ---- a store whose writes wait at a gate ------------------------------------------------------ */

struct gate {
	uint8_t *mem;
	size_t len;
	_Atomic int in_write;	/* writes that reached the gate */
	_Atomic bool open;
	_Atomic int fail_from;	/* requests with index >= this fail (-EIO); -1: none */
	_Atomic int flush_fail;	/* the next flushes that fail (-EIO) */
	_Atomic int writes;	/* requests written */
};

static int gate_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct gate *g = ctx;

	for (unsigned i = 0; i < n; i++) {
		if (iov[i].offset + iov[i].len > g->len)
			return iov[i].result = -ERANGE;
		memcpy(iov[i].buf, g->mem + iov[i].offset, iov[i].len);
		iov[i].result = 0;
	}
	return 0;
}

static int gate_write(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct gate *g = ctx;
	int ret = 0;

	atomic_fetch_add(&g->in_write, 1);
	while (!atomic_load(&g->open))
		usleep(1000);
	for (unsigned i = 0; i < n; i++) {
		int fail_from = atomic_load(&g->fail_from);
		if (fail_from >= 0 && (int)i >= fail_from) {
			iov[i].result = -EIO;
			ret = ret ? ret : -EIO;
			continue;
		}
		memcpy(g->mem + iov[i].offset, iov[i].buf, iov[i].len);
		iov[i].result = 0;
		atomic_fetch_add(&g->writes, 1);
	}
	return ret;
}

static int gate_flush(void *ctx)
{
	struct gate *g = ctx;

	if (atomic_load(&g->flush_fail) > 0) {
		atomic_fetch_sub(&g->flush_fail, 1);
		return -EIO;
	}
	return 0;
}

static const struct fl_store_ops gate_ops = {
	.sz = sizeof(struct fl_store_ops), .version = FL_STORE_OPS_VERSION, .name = "gate",
	.read = gate_read, .write = gate_write, .flush = gate_flush,
};

struct flusher {
	struct fl_region *r;
	int ret;
};

static void *flush_main(void *arg)
{
	struct flusher *fa = arg;

	fa->ret = fl_region_flush(fa->r);
	return NULL;
}

/*
 * The application discards a page while its write-back is between the copy
 * and the store write: the page must read as zeros afterwards, not as the
 * bytes the write-back copied before the discard.
 */
static int c_discard_during_wb(void *arg)
{
	size_t npages = 16, len = npages * U_PAGE;
	struct gate g = { .len = len, .open = false, .fail_from = -1 };
	struct flusher fa = { 0 };
	struct fl_region_opts o;
	struct fl_engine *e;
	struct fl_store *s;
	uint8_t *base;
	pthread_t th;

	(void)arg;
	require_far(&anon);
	t_require_needs(T_EVENT_REMOVE);
	g.mem = calloc(1, len);
	T_ASSERT(g.mem);
	for (size_t p = 0; p < npages; p++)
		page_write(g.mem + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_new(&gate_ops, &g, len, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 0);	/* write-back alone */
	o.flags |= FL_REGION_NO_PREFETCH;
	fa.r = u_region_opts(e, &o);
	base = fl_region_addr(fa.r);
	page_write(base, U_PAGE, 0, 1);
	T_ASSERT(pthread_create(&th, NULL, flush_main, &fa) == 0);
	T_ASSERT(T_WAIT_FOR(atomic_load(&g.in_write) >= 1, 3000), "the flush reaches the store");
	/* The copy is taken; the application discards the page. */
	T_OK(madvise(base, U_PAGE, MADV_DONTNEED));
	T_ASSERT(T_WAIT_FOR(u_estats(e).events_remove >= 1, 3000));
	usleep(20000);
	atomic_store(&g.open, true);
	pthread_join(th, NULL);
	T_OK(fa.ret);
	T_ASSERT(u_all_zero(base, U_PAGE), "a page discarded during its write-back reads as zeros");
	fl_region_free(fa.r);
	fl_engine_free(e);
	fl_store_unref(s);
	free(g.mem);
	return T_PASS;
}

/* SEQUENTIAL: a reader going through the range leaves cold pages behind it, evicted first. */
static int c_sequential(void *arg)
{
	size_t npages = 512, len = npages * U_PAGE;
	uint8_t *img = u_image(len, 0, 3), *base;
	struct fl_store *s = u_mem_store(img, len);
	struct fl_region_opts o;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;

	(void)arg;
	require_far(&anon);
	e = u_engine(0, 1);
	o = u_ropts(&anon, len, s, 0);
	o.resident_max = 128 * U_PAGE;
	o.prefetch_max = 16;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	/* A hot set first, touched in random order (windows stay small). */
	for (size_t i = 0; i < 32; i++)
		(void)*(volatile uint8_t *)(base + ((i * 37) % 32 + 480) * U_PAGE);
	T_OK(fl_region_advise(r, 0, 448 * U_PAGE, FL_ADVISE_SEQUENTIAL));
	T_ASSERT_EQ(u_probe_cmp(base, img, 448 * U_PAGE), 0);
	T_ASSERT(T_WAIT_FOR(u_rstats(r).resident_pages <= 128, 5000));
	st = u_rstats(r);
	log_far("sequential", &st);
	/* The pages behind the reader went, the hot set stayed. */
	T_ASSERT(resident_in(base + 480 * U_PAGE, 32) == 32, "hot pages resident: %zu of 32",
		 resident_in(base + 480 * U_PAGE, 32));
	T_ASSERT(st.pages_prefetch > 0);
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	munmap(img, len);
	return T_PASS;
}


/* A child forked with a far region gets a plain copy: it writes without hanging; the parent's pages stay its own. */
static int c_fork(void *arg)
{
	size_t npages = 64, len = npages * U_PAGE;
	uint8_t *img = calloc(1, len), *base;
	struct fl_region_opts o;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	int status;
	pid_t pid;

	(void)arg;
	require_far(&anon);
	T_ASSERT(img);
	for (size_t p = 0; p < npages; p++)
		page_write(img + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_memory_new(img, len, FL_STORE_MEM_COPY, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 16 * U_PAGE);
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	write_all(base, 16, 1);		/* resident, dirty, then write-protected by a flush */
	T_OK(fl_region_flush(r));
	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		/* No mapping in the child (MADV_DONTFORK): mincore() says the
		 * range is unmapped (ENOMEM), resident pages and others alike.
		 * (Not a probing access: a sanitizer's SIGSEGV handler would
		 * turn the fault into an abort.) */
		unsigned char vec[64];
		_exit(mincore(base, len, vec) == -1 && errno == ENOMEM ? 0 : 2);
	}
	T_OK(t_wait_pid(pid, 20000, &status));
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "child status 0x%x (2: the far region is mapped in the child)", status);
	check_all(base, 16, 1);
	{
		char why[256];
		for (size_t p = 16; p < npages; p++)
			T_ASSERT(page_check(base + p * U_PAGE, U_PAGE, p, 0, why, sizeof(why)) == 0, "%s", why);
	}
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	free(img);
	return T_PASS;
}


/* An embedded engine: the evictor waits for fl_engine_process() to read its REMOVE events; DONTNEED refuses to deadlock. */
struct pump {
	struct fl_engine *e;
	_Atomic bool stop;
};

static void *pump_main(void *arg)
{
	struct pump *pm = arg;

	while (!atomic_load(&pm->stop))
		fl_engine_process(pm->e, 10);
	return NULL;
}

static int c_embedded(void *arg)
{
	size_t npages = 256, len = npages * U_PAGE;
	uint8_t *img = calloc(1, len), *base;
	struct pump pm = { 0 };
	struct fl_region_opts o;
	struct fl_region_stats st;
	struct fl_region *r;
	struct fl_store *s;
	pthread_t th;

	(void)arg;
	require_far(&anon);
	T_ASSERT(img);
	for (size_t p = 0; p < npages; p++)
		page_write(img + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_memory_new(img, len, FL_STORE_MEM_COPY, &s));
	pm.e = u_engine(FL_ENGINE_EMBEDDED, 0);
	o = far_opts(&anon, len, s, 32 * U_PAGE);
	r = u_region_opts(pm.e, &o);
	base = fl_region_addr(r);
	T_ASSERT(pthread_create(&th, NULL, pump_main, &pm) == 0);
	write_all(base, npages, 4);
	check_all(base, npages, 4);
	T_ASSERT(T_WAIT_FOR(u_rstats(r).resident_pages <= 32, 5000));
	st = u_rstats(r);
	log_far("embedded", &st);
	T_ASSERT(st.pages_evicted_dirty > 0);
	if (u_estats(pm.e).events_remove || fl_engine_features(pm.e) & UFFD_FEATURE_EVENT_REMOVE)
		T_ASSERT_EQ(fl_region_advise(r, 0, len, FL_ADVISE_DONTNEED), -EDEADLK);
	T_OK(fl_region_flush(r));
	check_all(base, npages, 4);
	atomic_store(&pm.stop, true);
	pthread_join(th, NULL);
	fl_region_free(r);
	fl_engine_free(pm.e);
	fl_store_unref(s);
	free(img);
	return T_PASS;
}

struct discarder {
	uint8_t *addr;
	_Atomic bool done;
};

static void *discard_main(void *arg)
{
	struct discarder *d = arg;

	madvise(d->addr, U_PAGE, MADV_DONTNEED);
	atomic_store(&d->done, true);
	return NULL;
}

/*
 * The application discards a page the evictor is dropping (its REMOVE event
 * comes while ours is pending): the page must read as zeros afterwards, not
 * as the store's bytes. An embedded engine holds both events until the
 * application reads them.
 */
static int c_discard_during_evict(void *arg)
{
	size_t npages = 16, len = npages * U_PAGE;
	uint8_t *img = calloc(1, len), *base;
	struct discarder d = { 0 };
	struct pump pm = { 0 };
	struct fl_region_opts o;
	struct fl_region *r;
	struct fl_store *s;
	pthread_t th, dt;
	char why[256];

	(void)arg;
	require_far(&anon);
	t_require_needs(T_EVENT_REMOVE);
	T_ASSERT(img);
	for (size_t p = 0; p < npages; p++)
		page_write(img + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_memory_new(img, len, FL_STORE_MEM_COPY, &s));
	pm.e = u_engine(FL_ENGINE_EMBEDDED, 0);
	o = far_opts(&anon, len, s, 4 * U_PAGE);
	o.resident_low = 2 * U_PAGE;
	o.evict_policy = FL_EVICT_FIFO;
	o.flags |= FL_REGION_NO_PREFETCH;
	r = u_region_opts(pm.e, &o);
	base = fl_region_addr(r);
	T_ASSERT(pthread_create(&th, NULL, pump_main, &pm) == 0);
	check_all(base, 4, 0);
	atomic_store(&pm.stop, true);
	pthread_join(th, NULL);
	/* Over the mark with nobody reading events: the evictor drops pages 0-2
	 * (the oldest) and waits in MADV_DONTNEED for its REMOVE event. */
	T_OK(fl_region_advise(r, 4 * U_PAGE, U_PAGE, FL_ADVISE_WILLNEED));
	usleep(100000);
	d.addr = base;
	T_ASSERT(pthread_create(&dt, NULL, discard_main, &d) == 0);
	usleep(100000);
	T_ASSERT(!atomic_load(&d.done), "the application's MADV_DONTNEED waits for its event");
	pm.stop = false;
	T_ASSERT(pthread_create(&th, NULL, pump_main, &pm) == 0);
	pthread_join(dt, NULL);
	T_ASSERT(T_WAIT_FOR(u_rstats(r).resident_pages <= 2, 3000));
	T_ASSERT(u_all_zero(base, U_PAGE), "a page discarded during its eviction reads as zeros");
	for (size_t p = 1; p < 5; p++)
		T_ASSERT(page_check(base + p * U_PAGE, U_PAGE, p, 0, why, sizeof(why)) == 0, "%s", why);
	atomic_store(&pm.stop, true);
	pthread_join(th, NULL);
	fl_region_free(r);
	fl_engine_free(pm.e);
	fl_store_unref(s);
	free(img);
	return T_PASS;
}

/*
 * The application discards a page the evictor has taken (its write-back
 * waiting for the store): the page leaves the resident count once, not
 * twice (the count would drift under what is mapped, and the limit with it).
 */
static int c_discard_evict_count(void *arg)
{
	size_t npages = 16, len = npages * U_PAGE;
	struct gate g = { .len = len, .open = false, .fail_from = -1 };
	struct fl_region_opts o;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	uint8_t *base;

	(void)arg;
	require_far(&anon);
	t_require_needs(T_EVENT_REMOVE);
	g.mem = calloc(1, len);
	T_ASSERT(g.mem);
	for (size_t p = 0; p < npages; p++)
		page_write(g.mem + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_new(&gate_ops, &g, len, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 4 * U_PAGE);
	o.resident_low = 2 * U_PAGE;
	o.evict_policy = FL_EVICT_FIFO;
	o.flags |= FL_REGION_NO_PREFETCH;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	/* Pages 0-4 dirty: the evictor takes 0-2 and waits at the gate. */
	for (size_t p = 0; p < 5; p++)
		page_write(base + p * U_PAGE, U_PAGE, p, 1);
	T_ASSERT(T_WAIT_FOR(atomic_load(&g.in_write) >= 1, 3000), "the eviction reaches the store");
	T_OK(madvise(base, U_PAGE, MADV_DONTNEED));
	T_ASSERT(T_WAIT_FOR(u_estats(e).events_remove >= 1, 3000));
	usleep(20000);
	atomic_store(&g.open, true);
	T_ASSERT(T_WAIT_FOR(u_rstats(r).resident_pages <= 2, 3000));
	usleep(50000);
	st = u_rstats(r);
	log_far("discarded while evicted", &st);
	T_ASSERT_EQ(st.resident_pages, resident_in(base, npages));
	T_ASSERT(u_all_zero(base, U_PAGE), "the discarded page reads as zeros");
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	free(g.mem);
	return T_PASS;
}

/*
 * The application moves pages out of the middle of a far region (mremap)
 * and maps memory of its own where they were: the evictor must not drop
 * pages at the old addresses, which are now the application's mapping.
 */
static int c_mremap_middle(void *arg)
{
	size_t npages = 16, len = npages * U_PAGE;
	uint8_t *img = calloc(1, len), *base, *moved, *mine;
	struct fl_region_opts o;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	char why[256];

	(void)arg;
	require_far(&anon);
	t_require_needs(T_EVENT_REMAP);
	T_ASSERT(img);
	for (size_t p = 0; p < npages; p++)
		page_write(img + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_memory_new(img, len, FL_STORE_MEM_COPY, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 4 * U_PAGE);
	o.resident_low = 2 * U_PAGE;
	o.evict_policy = FL_EVICT_FIFO;
	o.flags |= FL_REGION_NO_PREFETCH;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	check_all(base, 4, 0);
	/* Pages 1-2 elsewhere; memory of the application's own where they were. */
	moved = mmap(NULL, 2 * U_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(moved != MAP_FAILED);
	T_ASSERT(mremap(base + U_PAGE, 2 * U_PAGE, 2 * U_PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, moved) == moved);
	T_ASSERT(T_WAIT_FOR(u_estats(e).events_remap >= 1, 3000));
	mine = mmap(base + U_PAGE, 2 * U_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	T_ASSERT(mine == base + U_PAGE);
	memset(mine, 0xab, 2 * U_PAGE);
	/* Over the mark: the oldest pages (0-2) are the victims. */
	for (size_t p = 4; p < 8; p++)
		T_ASSERT(page_check(base + p * U_PAGE, U_PAGE, p, 0, why, sizeof(why)) == 0, "%s", why);
	usleep(200000);
	for (size_t i = 0; i < 2 * U_PAGE; i++)
		T_ASSERT(mine[i] == 0xab, "byte %zu of the application's own mapping is %u: dropped by the evictor", i,
			 mine[i]);
	for (size_t p = 1; p < 3; p++)
		T_ASSERT(page_check(moved + (p - 1) * U_PAGE, U_PAGE, p, 0, why, sizeof(why)) == 0, "moved: %s", why);
	check_all(base, 1, 0);
	fl_region_free(r);
	munmap(moved, 2 * U_PAGE);
	munmap(mine, 2 * U_PAGE);
	fl_engine_free(e);
	fl_store_unref(s);
	free(img);
	return T_PASS;
}

/*
 * A piece of a far region moved by the application (mremap) and written
 * there: its pages are filled write-protected like any other, so a flush
 * either writes them or says it could not; never 0 with the store stale.
 */
static int c_mremap_write_flush(void *arg)
{
	size_t npages = 16, len = npages * U_PAGE;
	uint8_t *img = calloc(1, len), *base, *moved;
	struct fl_region_opts o;
	struct fl_region_stats st;
	struct fl_engine *e;
	struct fl_region *r;
	struct fl_store *s;
	char why[256];
	uint8_t pg[U_PAGE];
	struct fl_store_iov iov = { .offset = 9 * U_PAGE, .buf = pg, .len = U_PAGE };
	int ret;

	(void)arg;
	require_far(&anon);
	t_require_needs(T_EVENT_REMAP);
	T_ASSERT(img);
	for (size_t p = 0; p < npages; p++)
		page_write(img + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_memory_new(img, len, FL_STORE_MEM_COPY, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 0);	/* write-back alone */
	o.flags |= FL_REGION_NO_PREFETCH;
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	moved = mmap(NULL, 4 * U_PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(moved != MAP_FAILED);
	T_ASSERT(mremap(base + 8 * U_PAGE, 4 * U_PAGE, 4 * U_PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, moved) == moved);
	T_ASSERT(T_WAIT_FOR(u_estats(e).events_remap >= 1, 3000));
	page_write(moved + U_PAGE, U_PAGE, 9, 1);	/* region page 9, never filled before */
	T_ASSERT(page_check(moved + U_PAGE, U_PAGE, 9, 1, why, sizeof(why)) == 0, "%s", why);
	st = u_rstats(r);
	log_far("moved piece written", &st);
	ret = fl_region_flush(r);
	T_OK(fl_store_read(s, &iov, 1));
	T_ASSERT(ret != 0 || page_check(pg, U_PAGE, 9, 1, why, sizeof(why)) == 0,
		 "flush returned 0 but the store does not have the write: %s", why);
	fl_region_free(r);
	munmap(moved, 4 * U_PAGE);
	fl_engine_free(e);
	fl_store_unref(s);
	free(img);
	return T_PASS;
}

/*
 * The store's flush fails: the pages that flush wrote are not known to be
 * durable, so they stay dirty and the next flush writes them again (a
 * retry returning 0 must mean they are durable).
 */
static int c_flush_fails(void *arg)
{
	size_t npages = 16, len = npages * U_PAGE;
	struct gate g = { .len = len, .open = true, .fail_from = -1, .flush_fail = 1 };
	struct fl_region_opts o;
	struct fl_region *r;
	struct fl_engine *e;
	struct fl_store *s;
	uint8_t *base;
	int before;

	(void)arg;
	require_far(&anon);
	g.mem = calloc(1, len);
	T_ASSERT(g.mem);
	for (size_t p = 0; p < npages; p++)
		page_write(g.mem + p * U_PAGE, U_PAGE, p, 0);
	T_OK(fl_store_new(&gate_ops, &g, len, &s));
	e = u_engine(0, 1);
	o = far_opts(&anon, len, s, 0);	/* write-back alone */
	r = u_region_opts(e, &o);
	base = fl_region_addr(r);
	write_all(base, 4, 1);
	T_ASSERT_EQ(fl_region_flush(r), -EIO);
	T_ASSERT(u_rstats(r).dirty_pages == 4, "the pages of a failed flush stay dirty");
	before = atomic_load(&g.writes);
	T_OK(fl_region_flush(r));
	T_ASSERT(atomic_load(&g.writes) > before, "the retry writes them again");
	T_ASSERT_EQ(u_rstats(r).dirty_pages, 0);
	check_all(base, 4, 1);
	fl_region_free(r);
	fl_engine_free(e);
	fl_store_unref(s);
	free(g.mem);
	return T_PASS;
}

/* ---- the table -------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	struct t_case cases[U_NCFGS + 32];
	size_t n = 0;

	u_inner_main(argc, argv, inner_cases, sizeof(inner_cases) / sizeof(inner_cases[0]));
	for (size_t i = 0; i < U_NCFGS; i++) {
		char *name;
		if (asprintf(&name, "%s/stress-4threads", u_cfgs[i].name) < 0)
			return 99;
		cases[n++] = (struct t_case){ name, c_stress, (void *)&u_cfgs[i], 60,
					      U_NEEDS(u_cfgs[i].mem, u_cfgs[i].mode) };
	}
	cases[n++] = (struct t_case){ "write-fail", c_write_fail, NULL, 30 };
	cases[n++] = (struct t_case){ "enospc", c_enospc, NULL, 30 };
	cases[n++] = (struct t_case){ "kill9", c_kill9, NULL, 60 };
	cases[n++] = (struct t_case){ "refusals", c_refusals, NULL, 0 };
	cases[n++] = (struct t_case){ "minor-masked-eopnotsupp", c_minor_masked, NULL, 0, U_NEEDS_SHMEM_MINOR };
	cases[n++] = (struct t_case){ "2q-beats-fifo", c_2q_vs_fifo, (void *)&anon, 60 };
	/* MINOR: 2Q also samples (zaps mappings, MINOR faults mark reuse). */
	cases[n++] = (struct t_case){ "shmem-minor/2q-beats-fifo", c_2q_vs_fifo, (void *)&u_cfgs[2], 60,
				      U_NEEDS_SHMEM_MINOR };
	cases[n++] = (struct t_case){ "advise", c_advise, NULL, 30 };
	cases[n++] = (struct t_case){ "background-writeback", c_background, NULL, 30 };
	cases[n++] = (struct t_case){ "app-discard-stays-zero", c_app_discard, NULL, 30 };
	cases[n++] = (struct t_case){ "sequential", c_sequential, NULL, 30 };
	cases[n++] = (struct t_case){ "discard-during-writeback", c_discard_during_wb, NULL, 10 };
	cases[n++] = (struct t_case){ "discard-during-eviction", c_discard_during_evict, NULL, 10 };
	cases[n++] = (struct t_case){ "discard-during-eviction-count", c_discard_evict_count, NULL, 10 };
	cases[n++] = (struct t_case){ "mremap-middle", c_mremap_middle, NULL, 10 };
	cases[n++] = (struct t_case){ "mremap-piece-write-flush", c_mremap_write_flush, NULL, 10 };
	cases[n++] = (struct t_case){ "store-flush-fails", c_flush_fails, NULL, 10 };
	cases[n++] = (struct t_case){ "fork-child-no-mapping", c_fork, NULL, 30, T_EVENT_FORK };
	cases[n++] = (struct t_case){ "embedded-engine", c_embedded, NULL, 30 };
	{
		int r = t_main(argc, argv, cases, n);
		for (size_t i = 0; i < U_NCFGS; i++)
			free((char *)cases[i].name);
		return r;
	}
}
