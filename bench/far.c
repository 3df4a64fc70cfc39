// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench far: far memory against the kernel's page cache.
 *
 * (a) Out of core: a file several times the resident limit, read (and
 *     written) through a far-memory region (resident_max = the limit, an
 *     O_DIRECT file store, so the store's reads grow no second cache) and
 *     through the kernel's mmap(MAP_SHARED) of the same file. Each side runs
 *     in a child process placed in a fresh memory cgroup (v1) whose limit is
 *     the resident limit plus a fixed allowance for the process itself, with
 *     the file's page cache dropped before, so neither starts warm. The two
 *     alternate (mmap, faultline, faultline FIFO, mmap, ...) with the same
 *     seeded access sequence; ratios are medians of per-repetition ratios.
 * (b) Write-back: fl_region_flush() of dirty pages against pwrite(2) of the
 *     same pages to the same file in 1 MiB chunks, each with fdatasync.
 * (d) Redis Cluster as the far tier: see redis_part().
 *
 * An access is one 4 KiB page: its first cache line (words 0 and 2..7) and
 * its last word are read and checked against the file's pattern; in the
 * write workload 30 % of accesses also write word 1 of the page (a tag
 * checked in the file after the run: write-back lost nothing).
 */
#include "bench.h"
#include "far-env.h"
#include "far-stats.h"
#include "fl-config.h"
#include "redis-local.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096u
#define REDIS_STORE_NAME "redis far store (fl_store_redis_far_new), the file's pages written into it"
#define MAX_THREADS 16
#define MAX_REPS 16
#define ZIPF_THETA 0.99
#define WRITE_PERCENT 30

static const char far_usage[] =
	"Usage: faultline bench far [--json] [--size BYTES] [--limit BYTES] [--seconds S | --ops N]\n"
	"                           [--workloads seq,uniform,zipf,zipfw] [--threads N] [--reps N]\n"
	"                           [--file PATH] [--keep] [--wb-size BYTES] [--no-writeback]\n"
	"                           [--redis-size BYTES] [--no-redis] [--seed N] [--overhead BYTES]\n"
	"                           [--warmup S] [--mem shmem|anon]\n"
	"\n"
	"Far memory against the kernel's page cache. A file of SIZE bytes (default\n"
	"4G) is read through a far-memory region whose resident limit is LIMIT\n"
	"(default SIZE/4; an O_DIRECT file store) and through mmap(MAP_SHARED) of\n"
	"the same file, each in a child process in a fresh memory cgroup (v1)\n"
	"limited to LIMIT + an allowance for the process, caches dropped before\n"
	"each run. The random workloads also run mmap with MADV_RANDOM.\n"
	"Workloads: seq (sequential scan), uniform (random pages), zipf (Zipf 0.99\n"
	"over pages scattered across the file), zipfw (zipf, 30% of accesses also\n"
	"write 8 bytes; mmap side ends with msync, faultline's with\n"
	"fl_region_flush, both timed). An access reads a page's first cache line\n"
	"and last word and checks them. Also: write-back throughput\n"
	"(fl_region_flush vs pwrite + fdatasync) and Redis Cluster (3 primaries on\n"
	"loopback) as the far tier for zipf.\n"
	"\n"
	"Options:\n"
	"  --size BYTES        the file (default 4G; a multiple of 4 KiB, >= 1M)\n"
	"  --limit BYTES       resident limit (default SIZE/4)\n"
	"  --seconds S         run each workload S seconds (default: seq one pass,\n"
	"                      the others 10 s); seq stops after one pass anyway\n"
	"  --ops N             run each workload N accesses instead (seq wraps)\n"
	"  --workloads LIST    comma-separated subset of seq,uniform,zipf,zipfw\n"
	"                      (empty: only the write-back and Redis parts)\n"
	"  --threads N         accessing threads (default 1; 1..16)\n"
	"  --reps N            repetitions (default 3; 1..16), medians reported\n"
	"  --file PATH         the file (default a temporary file in $TMPDIR or\n"
	"                      /var/tmp); created if missing, reused if it is one\n"
	"                      this benchmark wrote; removed at the end only when\n"
	"                      the benchmark created it and --keep is not given\n"
	"  --keep              keep the file\n"
	"  --wb-size BYTES     pages dirtied for the write-back part (default 256M,\n"
	"                      at most SIZE)\n"
	"  --no-writeback      skip the write-back part\n"
	"  --redis-size BYTES  the Redis part's size (default min(SIZE, 256M)); its\n"
	"                      limit keeps LIMIT/SIZE\n"
	"  --no-redis          skip the Redis part\n"
	"  --mem shmem|anon    the far region's memory (default shmem: its pages\n"
	"                      are evicted by punching the memfd, with no userfaultfd\n"
	"                      event; anonymous pages are dropped with MADV_DONTNEED,\n"
	"                      whose REMOVE event makes fills retry meanwhile)\n"
	"  --seed N            the access sequences' seed (default 1)\n"
	"  --warmup S          before each timed random run, the same accesses until\n"
	"                      the side holds 7/8 of LIMIT, at most S seconds\n"
	"                      (default 60; 0: none)\n"
	"  --overhead BYTES    the cgroups' allowance for the process beyond LIMIT\n"
	"                      (default LIMIT/32, at least 8M, at most 32M)\n"
	"  --json              one JSON object on stdout\n"
	"\n"
	"Keys: size_bytes, limit_bytes, cgroup, cgroup_limit_bytes, cgroup_overhead_bytes,\n"
	"kernel, threads, reps, store, workloads.<w>.{fl_mbps, mmap_mbps, ratio,\n"
	"hit_rate, mmap_hit_rate, fifo_hit_rate, fifo_mbps, ...}, writeback.{wb_mbps,\n"
	"pwrite_mbps, wb_ratio}, redis.{redis_mbps, fl_mbps, redis_ratio}, goals\n"
	"(see faultline(1)).\n";

enum workload { WL_SEQ, WL_UNIFORM, WL_ZIPF, WL_ZIPFW, WL_COUNT };
static const char *const wl_names[WL_COUNT] = { "seq", "uniform", "zipf", "zipfw" };

enum side { SIDE_MMAP, SIDE_MMAP_RANDOM, SIDE_FL, SIDE_FL_FIFO };

struct cfg {
	uint64_t size, limit, ops, npages;
	double seconds;
	unsigned threads, reps;
	uint64_t seed;
	const char *path;
	const char *redis_url;		/* faultline side reads from Redis instead of the file */
	bool cgroup;			/* cgroup v1 memory controller usable */
	uint64_t overhead;		/* the cgroups' allowance beyond the limit */
	double warmup;			/* most seconds of warm-up (random workloads) */
	bool root;
	enum fl_mem_type mem;		/* the far region's memory (--mem) */
	/* Zipf: cdf[i] = P(rank <= i); perm[rank] = the page it lands on. */
	double *cdf;
	uint32_t *perm;
};

/* ---- the access sequence ------------------------------------------------ */

struct gen {
	enum workload wl;
	uint64_t rng;
	uint64_t next, begin, end;	/* seq: this thread's slice */
};

static void gen_init(struct gen *g, const struct cfg *c, enum workload wl, uint64_t seed, unsigned thread)
{
	g->wl = wl;
	g->rng = seed * 0x9E3779B97F4A7C15ull + thread + 1;
	g->begin = c->npages * thread / c->threads;
	g->end = c->npages * (thread + 1) / c->threads;
	g->next = g->begin;
}

static uint64_t zipf_rank(const double *cdf, uint64_t n, double u)
{
	uint64_t lo = 0, hi = n - 1;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (cdf[mid] >= u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static uint64_t gen_next(struct gen *g, const struct cfg *c, bool *ret_write)
{
	uint64_t x, page;

	*ret_write = false;
	switch (g->wl) {
	case WL_SEQ:
		page = g->next++;
		if (g->next >= g->end)
			g->next = g->begin;
		return page;
	case WL_UNIFORM:
		return splitmix64(&g->rng) % c->npages;
	default:
		x = splitmix64(&g->rng);
		page = c->perm[zipf_rank(c->cdf, c->npages, (double)(x >> 11) * 0x1.0p-53)];
		if (g->wl == WL_ZIPFW)
			*ret_write = splitmix64(&g->rng) % 100 < WRITE_PERCENT;
		return page;
	}
}

static int zipf_setup(struct cfg *c)
{
	uint64_t n = c->npages, st = c->seed ^ 0x5A17ull;
	double sum = 0;

	c->cdf = malloc(n * sizeof(*c->cdf));
	c->perm = malloc(n * sizeof(*c->perm));
	if (!c->cdf || !c->perm)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		sum += 1.0 / pow((double)(i + 1), ZIPF_THETA);
		c->cdf[i] = sum;
	}
	for (uint64_t i = 0; i < n; i++)
		c->cdf[i] /= sum;
	c->cdf[n - 1] = 1.0;
	/* Hot pages scattered over the file: a seeded shuffle. */
	for (uint64_t i = 0; i < n; i++)
		c->perm[i] = (uint32_t)i;
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t k = splitmix64(&st) % (i + 1);
		uint32_t t = c->perm[i];
		c->perm[i] = c->perm[k];
		c->perm[k] = t;
	}
	return 0;
}

/* ---- the workload -------------------------------------------------------- */

struct run_shared {
	const struct cfg *c;
	enum workload wl;
	uint8_t *base;
	uint64_t seed, tag;
	uint64_t ops_per_thread;	/* 0: until the deadline */
	uint64_t deadline_ns;		/* 0: none */
	uint64_t *written;		/* zipfw: bitmap of pages written */
	const char *cg;			/* the child's cgroup, NULL without */
	_Atomic int stop;		/* the warm-up is over */
};

struct run_thread {
	struct run_shared *sh;
	unsigned idx;
	pthread_t tid;
	uint64_t accesses, writes, mismatches, checksum;
};

/* The tag written to word 1 of `page` by the run tagged `tag`. */
static inline uint64_t write_tag(uint64_t tag, uint64_t page)
{
	return tag ^ (page * 0xD6E8FEB86659FD93ull);
}

static void *run_thread_main(void *arg)
{
	struct run_thread *t = arg;
	struct run_shared *sh = t->sh;
	const struct cfg *c = sh->c;
	struct gen g;
	uint64_t sum = 0, mism = 0, writes = 0, n = 0;

	gen_init(&g, c, sh->wl, sh->seed, t->idx);
	for (;;) {
		bool wr;
		uint64_t page, off;
		volatile uint64_t *w;
		uint64_t w0, last;

		if (sh->ops_per_thread && n >= sh->ops_per_thread)
			break;
		if ((n & 63) == 0 && (atomic_load_explicit(&sh->stop, memory_order_relaxed) ||
				      (sh->deadline_ns && fl__now_ns() >= sh->deadline_ns)))
			break;
		page = gen_next(&g, c, &wr);
		off = page * PAGE;
		w = (volatile uint64_t *)(void *)(sh->base + off);
		w0 = w[0];
		sum += w0 + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
		last = w[PAGE / 8 - 1];
		sum += last;
		if (w0 != pattern_word(off) || last != pattern_word(off + PAGE - 8))
			mism++;
		if (wr && sh->written) {
			w[1] = write_tag(sh->tag, page);
			__atomic_fetch_or(&sh->written[page / 64], 1ull << (page % 64), __ATOMIC_RELAXED);
			writes++;
		}
		n++;
	}
	t->accesses = n;
	t->writes = writes;
	t->mismatches = mism;
	t->checksum = sum;
	return NULL;
}

/* What a child reports to the parent through a pipe. */
struct run_result {
	int err;			/* 0 or -errno */
	char what[96];			/* the step that failed */
	double secs;
	uint64_t accesses, writes, mismatches, checksum;
	uint64_t verified, verify_bad;	/* zipfw: written pages checked in the file */
	uint64_t majflt;		/* mmap side */
	struct fl_region_stats st;	/* faultline side */
	uint64_t bounced;		/* store requests that needed a bounce buffer */
	uint64_t fl_faults;		/* faultline: demand faults of the timed run */
	double warmup_s;		/* the warm-up's length */
	bool warmed;			/* it filled the resident set */
	/* filled by the parent */
	uint64_t cg_peak, cg_failcnt;
};

static void fail(struct run_result *res, int err, const char *what)
{
	if (!res->err) {
		res->err = err ? err : -EIO;
		snprintf(res->what, sizeof(res->what), "%s", what);
	}
}

/* Start the accessing threads; returns how many started. */
static unsigned run_start(struct run_shared *sh, struct run_thread *th)
{
	unsigned started = 0;

	memset(th, 0, sizeof(*th) * MAX_THREADS);
	for (unsigned i = 0; i < sh->c->threads; i++) {
		th[i].sh = sh;
		th[i].idx = i;
		if (pthread_create(&th[i].tid, NULL, run_thread_main, &th[i]))
			break;
		started++;
	}
	return started;
}

static void run_join(struct run_thread *th, unsigned started, struct run_result *res)
{
	for (unsigned i = 0; i < started; i++) {
		pthread_join(th[i].tid, NULL);
		res->accesses += th[i].accesses;
		res->writes += th[i].writes;
		res->mismatches += th[i].mismatches;
		res->checksum += th[i].checksum;
	}
}

static int run_workload(struct run_shared *sh, struct run_result *res)
{
	struct run_thread th[MAX_THREADS];
	unsigned started = run_start(sh, th);

	run_join(th, started, res);
	return started == sh->c->threads ? 0 : -EAGAIN;
}

/*
 * Before the timed run of a random workload: the same kind of accesses
 * (reads only; another seed) until the side's resident set is nearly full
 * (`warm`), or for at most --warmup seconds, so the timed run measures the
 * out-of-core steady state, not the cold start. seq is one cold pass and
 * has none.
 */
static void warm_up(struct run_shared *sh, bool (*warm)(void *ctx), void *ctx, struct run_result *res)
{
	const struct cfg *c = sh->c;
	struct run_shared w;
	struct run_thread th[MAX_THREADS];
	struct run_result scratch = { 0 };
	uint64_t t0 = fl__now_ns();
	unsigned started;

	if (sh->wl == WL_SEQ || c->warmup <= 0)
		return;
	memcpy(&w, sh, sizeof(w));
	w.wl = sh->wl == WL_ZIPFW ? WL_ZIPF : sh->wl;
	w.seed = sh->seed ^ 0x3A3A3A3Aull;
	w.ops_per_thread = 0;
	w.deadline_ns = t0 + (uint64_t)(c->warmup * 1e9);
	w.written = NULL;
	atomic_store(&w.stop, 0);
	started = run_start(&w, th);
	while (started && fl__now_ns() < w.deadline_ns && !warm(ctx)) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	atomic_store(&w.stop, 1);
	run_join(th, started, &scratch);
	res->warmup_s = (double)(fl__now_ns() - t0) / 1e9;
	res->warmed = warm(ctx);
	res->mismatches += scratch.mismatches;
	if (started != c->threads)
		fail(res, -EAGAIN, "pthread_create");
}

/* After a write run: every page written holds the run's tag in the file. */
static int verify_written(const struct cfg *c, const uint64_t *written, uint64_t tag, struct run_result *res)
{
	int fd = open(c->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (uint64_t p = 0; p < c->npages; p++) {
		uint64_t v;
		if (!(written[p / 64] & (1ull << (p % 64))))
			continue;
		if (fl__pread_full(fd, &v, 8, p * PAGE + 8)) {
			close(fd);
			return -EIO;
		}
		res->verified++;
		res->verify_bad += v != write_tag(tag, p);
	}
	/* The check read pages into the page cache: not the next run's. */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	return 0;
}

/* ---- the two sides, each in a child -------------------------------------- */

static bool wl_random(enum workload wl)
{
	return wl != WL_SEQ;
}

struct mmap_warm {
	const char *cg;
	uint64_t limit;
};

/* The page cache this side holds (its cgroup's usage; without one, what it
 * has mapped) has reached 7/8 of the limit. */
static bool mmap_warm(void *ctx)
{
	const struct mmap_warm *m = ctx;
	uint64_t used;

	if (m->cg) {
		used = far_memcg_usage(m->cg);
	} else {
		unsigned long long size = 0, resident = 0;
		FILE *f = fopen("/proc/self/statm", "re");
		if (f) {
			if (fscanf(f, "%llu %llu", &size, &resident) != 2)
				resident = 0;
			fclose(f);
		}
		used = (uint64_t)resident * PAGE;
	}
	return used >= m->limit / 8 * 7;
}

struct fl_warm {
	struct fl_region *rg;
	uint64_t limit;
};

/* The region holds 7/8 of its limit (its default low mark), or evicted. */
static bool fl_warm(void *ctx)
{
	const struct fl_warm *fw = ctx;
	struct fl_region_stats st = { .sz = sizeof(st) };

	if (fl_region_stats(fw->rg, &st))
		return false;
	return st.pages_evicted_clean + st.pages_evicted_dirty > 0 || st.resident_pages * PAGE >= fw->limit / 8 * 7;
}

static void side_mmap(struct run_shared *sh, struct run_result *res, bool random)
{
	struct mmap_warm mw = { .cg = sh->cg, .limit = sh->c->limit };
	const struct cfg *c = sh->c;
	bool wr = sh->wl == WL_ZIPFW;
	struct rusage ru0, ru1;
	uint64_t t0;
	void *p;
	int fd = open(c->path, (wr ? O_RDWR : O_RDONLY) | O_CLOEXEC);

	if (fd < 0) {
		fail(res, -errno, "open");
		return;
	}
	p = mmap(NULL, c->size, wr ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		fail(res, -errno, "mmap");
		close(fd);
		return;
	}
	/* The kernel's defaults read around every major fault, which a
	 * random workload pays for in a tight cgroup; MADV_RANDOM is what a
	 * program that knows its access pattern would say. */
	if (random)
		madvise(p, c->size, MADV_RANDOM);
	sh->base = p;
	warm_up(sh, mmap_warm, &mw, res);
	getrusage(RUSAGE_SELF, &ru0);
	t0 = fl__now_ns();
	if (sh->deadline_ns)
		sh->deadline_ns += t0;
	if (run_workload(sh, res))
		fail(res, -EAGAIN, "pthread_create");
	if (wr && msync(p, c->size, MS_SYNC))
		fail(res, -errno, "msync");
	res->secs = (double)(fl__now_ns() - t0) / 1e9;
	getrusage(RUSAGE_SELF, &ru1);
	res->majflt = (uint64_t)(ru1.ru_majflt - ru0.ru_majflt);
	munmap(p, c->size);
	close(fd);
}

static void side_fl(struct run_shared *sh, struct run_result *res, enum fl_evict_policy policy)
{
	const struct cfg *c = sh->c;
	bool wr = sh->wl == WL_ZIPFW;
	struct far_direct_store *ds = NULL;
	struct fl_engine_opts eo = { .sz = sizeof(eo) };
	struct fl_region_opts ro = {
		.sz = sizeof(ro),
		.length = c->size,
		.mem = c->mem,
		.flags = wr ? FL_REGION_WRITEBACK : 0,
		/* The region may pass its high mark by 1/8 while the evictor
		 * catches up (fl_region_new(3)): 8/9 of the cgroup's limit
		 * keeps that slack inside it, so the kernel never reclaims
		 * (or OOM-kills) under faultline as it does under mmap. */
		.resident_max = c->limit / 9 * 8 / PAGE * PAGE,
		.evict_policy = policy,
		.name = "bench-far",
	};
	struct fl_engine *e = NULL;
	struct fl_region *rg = NULL;
	struct fl_store *st = NULL;
	struct fl_region_stats st0;
	uint64_t t0;
	int r;

	res->st.sz = sizeof(res->st);
	if (c->redis_url) {
		struct fl_redis_opts rdo = { .sz = sizeof(rdo), .url = c->redis_url, .cluster = true };
		r = fl_store_redis_far_new(&rdo, c->size, 0, &st);
		if (r) {
			fail(res, r, "fl_store_redis_far_new");
			return;
		}
	} else {
		ds = calloc(1, sizeof(*ds));
		if (!ds) {
			fail(res, -ENOMEM, "calloc");
			return;
		}
		ds->fd = open(c->path, (wr ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC);
		if (ds->fd < 0) {
			fail(res, -errno, "open O_DIRECT");
			free(ds);
			return;
		}
		r = fl_store_new(&far_direct_ops, ds, c->size, &st);
		if (r) {
			fail(res, r, "fl_store_new");
			goto out;
		}
	}
	ro.store = st;
	r = fl_engine_new(&eo, &e);
	if (!r)
		r = fl_engine_start(e);
	if (r) {
		fail(res, r, "fl_engine_new");
		goto out;
	}
	r = fl_region_new(e, &ro, &rg);
	if (r) {
		fail(res, r, "fl_region_new");
		goto out;
	}
	sh->base = fl_region_addr(rg);
	{
		struct fl_warm fw = { .rg = rg, .limit = c->limit };
		warm_up(sh, fl_warm, &fw, res);
	}
	st0.sz = sizeof(st0);
	fl_region_stats(rg, &st0);
	t0 = fl__now_ns();
	if (sh->deadline_ns)
		sh->deadline_ns += t0;
	if (run_workload(sh, res))
		fail(res, -EAGAIN, "pthread_create");
	if (wr) {
		r = fl_region_flush(rg);
		if (r)
			fail(res, r, "fl_region_flush");
	}
	res->secs = (double)(fl__now_ns() - t0) / 1e9;
	fl_region_stats(rg, &res->st);
	res->fl_faults = res->st.faults_read + res->st.faults_write - st0.faults_read - st0.faults_write;
out:
	fl_region_free(rg);
	fl_engine_free(e);
	fl_store_unref(st);
	if (ds) {
		res->bounced = atomic_load(&ds->bounced);
		close(ds->fd);
		free(ds);
	}
}

/* ---- running a side in a child ------------------------------------------- */

/* The file's pages out of the page cache (and every clean page if root). */
static void drop_caches(const struct cfg *c)
{
	far_drop_cache(c->path, c->root);
}

static unsigned cg_serial;

/*
 * Run one side in a child: in a fresh memory cgroup limited to the resident
 * limit plus the allowance (when cgroups are usable), its result sent back
 * through a pipe. A child killed (the cgroup's OOM killer) is an error.
 */
static int run_child(struct cfg *c, enum workload wl, enum side side, uint64_t seed, uint64_t tag,
		     struct run_result *res)
{
	struct run_shared sh = { .c = c, .wl = wl, .seed = seed, .tag = tag };
	char cg[128] = "";
	int pfd[2], status, cg_slot = -1, pid_slot;
	uint64_t words = (c->npages + 63) / 64;
	pid_t pid, parent = getpid();
	ssize_t n;

	memset(res, 0, sizeof(*res));
	if (c->ops)
		sh.ops_per_thread = (c->ops + c->threads - 1) / c->threads;
	else if (wl == WL_SEQ)
		sh.ops_per_thread = c->npages / c->threads;
	if (c->seconds > 0 || (!c->ops && wl != WL_SEQ))
		sh.deadline_ns = (uint64_t)((c->seconds > 0 ? c->seconds : 10.0) * 1e9);
	drop_caches(c);
	if (c->cgroup) {
		int r = far_memcg_create(cg, sizeof(cg), parent, cg_serial++, c->limit + c->overhead, &cg_slot);
		if (r)
			return r;
	}
	if (pipe2(pfd, O_CLOEXEC)) {
		int e = -errno;
		if (cg[0])
			far_memcg_remove(cg, cg_slot, NULL, NULL);
		return e;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(pfd[0]);
		close(pfd[1]);
		if (cg[0])
			far_memcg_remove(cg, cg_slot, NULL, NULL);
		return e;
	}
	if (pid == 0) {
		struct run_result rr = { 0 };
		cleanup_child(parent);
		sh.cg = cg[0] ? cg : NULL;
		close(pfd[0]);
		if (cg[0] && far_memcg_join(cg))
			fail(&rr, -EIO, "joining the cgroup");
		sh.written = calloc(words, sizeof(uint64_t));
		if (!sh.written)
			fail(&rr, -ENOMEM, "calloc");
		if (!rr.err) {
			if (side == SIDE_MMAP || side == SIDE_MMAP_RANDOM)
				side_mmap(&sh, &rr, side == SIDE_MMAP_RANDOM);
			else
				side_fl(&sh, &rr, side == SIDE_FL_FIFO ? FL_EVICT_FIFO : FL_EVICT_AUTO);
		}
		if (!rr.err && wl == WL_ZIPFW) {
			int r = verify_written(c, sh.written, tag, &rr);
			if (r)
				fail(&rr, r, "reading the file back");
		}
		if (write(pfd[1], &rr, sizeof(rr)) != (ssize_t)sizeof(rr))
			_exit(1);
		_exit(0);
	}
	pid_slot = cleanup_add_pid(pid);
	close(pfd[1]);
	n = read(pfd[0], res, sizeof(*res));
	close(pfd[0]);
	waitpid(pid, &status, 0);
	cleanup_drop(pid_slot);
	if (n != (ssize_t)sizeof(*res))
		memset(res, 0, sizeof(*res));
	if (cg[0])
		far_memcg_remove(cg, cg_slot, &res->cg_peak, &res->cg_failcnt);
	if (n != (ssize_t)sizeof(*res)) {
		res->err = -ECHILD;
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && res->cg_failcnt)
			snprintf(res->what, sizeof(res->what),
				 "was killed (SIGKILL) after its cgroup hit its limit %llu times: the OOM killer",
				 (unsigned long long)res->cg_failcnt);
		else if (WIFSIGNALED(status))
			snprintf(res->what, sizeof(res->what), "was killed by signal %d", WTERMSIG(status));
		else
			snprintf(res->what, sizeof(res->what), "exited without a result");
	}
	return 0;
}

/* ---- (a) per workload ------------------------------------------------------ */

struct wl_result {
	bool run;
	unsigned n;			/* reps done */
	double fl_mbps[MAX_REPS], mmap_mbps[MAX_REPS], fifo_mbps[MAX_REPS], ratio[MAX_REPS];
	double hit[MAX_REPS], mmap_hit[MAX_REPS], fifo_hit[MAX_REPS];
	double rnd_mbps[MAX_REPS], rnd_hit[MAX_REPS], rnd_ratio[MAX_REPS];	/* mmap with MADV_RANDOM */
	double fl_warmup_s[MAX_REPS], mmap_warmup_s[MAX_REPS];
	bool cold;			/* a side's warm-up ended before its resident set was full */
	unsigned cold_sides;		/* which: 1 << enum side */
	uint64_t accesses, writes, verified;
	uint64_t fl_cg_peak, mmap_cg_peak, resident_peak_pages, bounced;
	struct fl_region_stats last;	/* the last faultline run's statistics */
};

static double mbps(const struct run_result *r)
{
	return r->secs > 0 ? (double)r->accesses * PAGE / r->secs / 1e6 : 0;
}

static double hit_rate(const struct run_result *r, bool fl)
{
	uint64_t misses = fl ? r->fl_faults : r->majflt;
	if (!r->accesses)
		return NAN;
	return misses >= r->accesses ? 0.0 : 1.0 - (double)misses / (double)r->accesses;
}

static const char *side_name(enum side s)
{
	return s == SIDE_MMAP ? "mmap" : s == SIDE_MMAP_RANDOM ? "mmap (MADV_RANDOM)" :
	       s == SIDE_FL ? "faultline" : "faultline (FIFO)";
}

/* A run that failed, or read wrong data, or lost a write, stops the benchmark. */
static int check_run(enum workload wl, enum side s, const struct run_result *r)
{
	if (r->err == -ECHILD) {
		cli_error("bench far: %s, %s: the child %s", wl_names[wl], side_name(s), r->what);
		return r->err;
	}
	if (r->err) {
		cli_error("bench far: %s, %s: %s: %s", wl_names[wl], side_name(s), r->what, strerror(-r->err));
		return r->err;
	}
	if (r->mismatches) {
		cli_error("bench far: %s, %s: %llu accesses read data that is not the file's", wl_names[wl],
			  side_name(s), (unsigned long long)r->mismatches);
		return -EIO;
	}
	if (r->verify_bad) {
		cli_error("bench far: %s, %s: %llu of %llu written pages do not hold the write in the file",
			  wl_names[wl], side_name(s), (unsigned long long)r->verify_bad,
			  (unsigned long long)r->verified);
		return -EIO;
	}
	if ((s == SIDE_FL || s == SIDE_FL_FIFO) && r->st.writeback_errors) {
		cli_error("bench far: %s, %s: %llu write-back errors", wl_names[wl], side_name(s),
			  (unsigned long long)r->st.writeback_errors);
		return -EIO;
	}
	return 0;
}

static int run_wl(struct cfg *c, enum workload wl, uint64_t *tagstate, bool json, struct wl_result *w)
{
	bool fifo = wl == WL_ZIPF || wl == WL_ZIPFW, rnd = wl_random(wl);

	w->run = true;
	for (unsigned rep = 0; rep < c->reps; rep++) {
		struct run_result rm, rr, rf, rq;
		uint64_t seed = c->seed + rep;
		int r;

		/* Alternated: mmap, mmap MADV_RANDOM, faultline, FIFO. */
		r = run_child(c, wl, SIDE_MMAP, seed, splitmix64(tagstate), &rm);
		if (!r)
			r = check_run(wl, SIDE_MMAP, &rm);
		if (!r && rnd) {
			r = run_child(c, wl, SIDE_MMAP_RANDOM, seed, splitmix64(tagstate), &rr);
			if (!r)
				r = check_run(wl, SIDE_MMAP_RANDOM, &rr);
		}
		if (!r)
			r = run_child(c, wl, SIDE_FL, seed, splitmix64(tagstate), &rf);
		if (!r)
			r = check_run(wl, SIDE_FL, &rf);
		if (!r && fifo) {
			r = run_child(c, wl, SIDE_FL_FIFO, seed, splitmix64(tagstate), &rq);
			if (!r)
				r = check_run(wl, SIDE_FL_FIFO, &rq);
		}
		if (r)
			return r;
		w->mmap_mbps[rep] = mbps(&rm);
		w->fl_mbps[rep] = mbps(&rf);
		w->ratio[rep] = w->mmap_mbps[rep] > 0 ? w->fl_mbps[rep] / w->mmap_mbps[rep] : NAN;
		w->hit[rep] = hit_rate(&rf, true);
		w->mmap_hit[rep] = hit_rate(&rm, false);
		w->rnd_mbps[rep] = rnd ? mbps(&rr) : NAN;
		w->rnd_hit[rep] = rnd ? hit_rate(&rr, false) : NAN;
		w->rnd_ratio[rep] = rnd && w->rnd_mbps[rep] > 0 ? w->fl_mbps[rep] / w->rnd_mbps[rep] : NAN;
		w->fifo_hit[rep] = fifo ? hit_rate(&rq, true) : NAN;
		w->fifo_mbps[rep] = fifo ? mbps(&rq) : NAN;
		w->fl_warmup_s[rep] = rf.warmup_s;
		w->mmap_warmup_s[rep] = rm.warmup_s;
		if (rnd && c->warmup > 0) {
			w->cold_sides |= (!rm.warmed) << SIDE_MMAP | (!rr.warmed) << SIDE_MMAP_RANDOM |
					 (!rf.warmed) << SIDE_FL | (fifo && !rq.warmed) << SIDE_FL_FIFO;
			w->cold = w->cold_sides != 0;
		}
		w->accesses = rf.accesses;
		w->writes = rf.writes;
		w->verified = rf.verified;
		w->fl_cg_peak = FL_MAX(w->fl_cg_peak, rf.cg_peak);
		w->mmap_cg_peak = FL_MAX(w->mmap_cg_peak, rm.cg_peak);
		w->resident_peak_pages = FL_MAX(w->resident_peak_pages, rf.st.resident_peak);
		w->bounced += rf.bounced;
		w->last = rf.st;
		w->n = rep + 1;
		if (!json) {
			fprintf(stderr, "# %s rep %u: mmap %.1f MB/s (hit %.3f), faultline %.1f MB/s (hit %.3f)\n",
				wl_names[wl], rep, w->mmap_mbps[rep], w->mmap_hit[rep], w->fl_mbps[rep], w->hit[rep]);
			if (rnd)
				fprintf(stderr, "#   mmap MADV_RANDOM %.1f MB/s (hit %.3f)\n", w->rnd_mbps[rep],
					w->rnd_hit[rep]);
			if (fifo)
				fprintf(stderr, "#   faultline FIFO %.1f MB/s (hit %.3f)\n", w->fifo_mbps[rep],
					w->fifo_hit[rep]);
		}
	}
	return 0;
}

/* ---- (b) write-back ------------------------------------------------------- */

struct wb_result {
	bool run;
	uint64_t size;
	unsigned n;
	double wb_mbps[MAX_REPS], pwrite_mbps[MAX_REPS], ratio[MAX_REPS];
	struct fl_region_stats last;
};

/* Check the first `len` bytes of the file: every page is the pattern, word 1
 * of page p holds write_tag(tag, p). */
static int wb_verify(int fd, uint64_t len, uint64_t tag, const char *who)
{
	for (uint64_t p = 0; p < len / PAGE; p++) {
		uint64_t v[2];
		if (fl__pread_full(fd, v, sizeof(v), p * PAGE))
			return -EIO;
		if (v[0] != pattern_word(p * PAGE) || v[1] != write_tag(tag, p)) {
			cli_error("bench far: write-back (%s): page %llu of the file does not hold what was written",
				  who, (unsigned long long)p);
			return -EIO;
		}
	}
	return 0;
}

/*
 * The natural way a program writes a buffer it loaded from a file back:
 * pwrite in 1 MiB chunks, then fdatasync. Both sides start with the range
 * read (the region populated, the buffer pread) and the time covers the
 * writes and fdatasync.
 */
static int wb_pwrite(const struct cfg *c, uint64_t len, uint64_t tag, double *ret_mbps)
{
	uint8_t *buf = NULL;
	uint64_t t0;
	int fd = open(c->path, O_RDWR | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	if (posix_memalign((void **)&buf, PAGE, len)) {
		close(fd);
		return -ENOMEM;
	}
	r = fl__pread_full(fd, buf, len, 0);
	for (uint64_t p = 0; !r && p < len / PAGE; p++) {
		uint64_t v = write_tag(tag, p);
		memcpy(buf + p * PAGE + 8, &v, 8);
	}
	t0 = fl__now_ns();
	for (uint64_t off = 0; !r && off < len; off += 1u << 20)
		r = fl__pwrite_full(fd, buf + off, FL_MIN(1u << 20, len - off), off);
	if (!r)
		r = fl__fdatasync(fd);
	*ret_mbps = (double)len / ((double)(fl__now_ns() - t0) / 1e9) / 1e6;
	if (!r)
		r = wb_verify(fd, len, tag, "pwrite");
	free(buf);
	close(fd);
	return r;
}

static int wb_flush(const struct cfg *c, uint64_t len, uint64_t tag, double *ret_mbps, struct fl_region_stats *st)
{
	struct fl_engine_opts eo = { .sz = sizeof(eo) };
	struct fl_region_opts ro = {
		.sz = sizeof(ro),
		.length = len,
		.mem = c->mem,
		.flags = FL_REGION_WRITEBACK,
		/* A far region that holds the whole range: nothing is evicted,
		 * the flush writes every page. */
		.resident_max = len,
		.name = "bench-far-wb",
	};
	struct fl_engine *e = NULL;
	struct fl_region *rg = NULL;
	struct fl_store *store = NULL;
	uint8_t *p;
	uint64_t t0;
	int fd = open(c->path, O_RDWR | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = fl_store_file_new(fd, 0, len, &store);
	ro.store = store;
	if (!r)
		r = fl_engine_new(&eo, &e);
	if (!r)
		r = fl_engine_start(e);
	if (!r)
		r = fl_region_new(e, &ro, &rg);
	if (!r)
		r = fl_region_populate(rg, 0, len);
	if (r)
		goto out;
	p = fl_region_addr(rg);
	for (uint64_t pg = 0; pg < len / PAGE; pg++) {
		uint64_t v = write_tag(tag, pg);
		memcpy(p + pg * PAGE + 8, &v, 8);
	}
	t0 = fl__now_ns();
	r = fl_region_flush(rg);
	*ret_mbps = (double)len / ((double)(fl__now_ns() - t0) / 1e9) / 1e6;
	st->sz = sizeof(*st);
	fl_region_stats(rg, st);
	if (r) {
		cli_fail("bench far: write-back: fl_region_flush", r);
		goto out;
	}
	if (st->bytes_written < len) {
		cli_error("bench far: write-back: the flush wrote %llu bytes of %llu dirty",
			  (unsigned long long)st->bytes_written, (unsigned long long)len);
		r = -EIO;
		goto out;
	}
	r = wb_verify(fd, len, tag, "fl_region_flush");
out:
	fl_region_free(rg);
	fl_engine_free(e);
	fl_store_unref(store);
	close(fd);
	return r;
}

static int run_wb(const struct cfg *c, uint64_t len, uint64_t *tagstate, bool json, struct wb_result *w)
{
	w->run = true;
	w->size = len;
	for (unsigned rep = 0; rep < c->reps; rep++) {
		int r;
		drop_caches(c);
		r = wb_pwrite(c, len, splitmix64(tagstate), &w->pwrite_mbps[rep]);
		if (r) {
			if (r != -EIO)
				cli_fail("bench far: write-back: pwrite", r);
			return r;
		}
		drop_caches(c);
		r = wb_flush(c, len, splitmix64(tagstate), &w->wb_mbps[rep], &w->last);
		if (r)
			return r;
		w->ratio[rep] = w->wb_mbps[rep] / w->pwrite_mbps[rep];
		w->n = rep + 1;
		if (!json)
			fprintf(stderr, "# write-back rep %u: pwrite %.1f MB/s, fl_region_flush %.1f MB/s\n", rep,
				w->pwrite_mbps[rep], w->wb_mbps[rep]);
	}
	return 0;
}

/* ---- (d) Redis Cluster --------------------------------------------------- */

struct redis_result {
	bool run;
	const char *reason;		/* why it did not run */
	uint64_t size, limit;
	unsigned n;
	double redis_mbps[MAX_REPS], fl_mbps[MAX_REPS], ratio[MAX_REPS];
};

/* The file's first `len` bytes into a far store under url, made durable. */
static int redis_far_load(const struct cfg *c, uint64_t len, const char *url)
{
	struct fl_redis_opts ro = { .sz = sizeof(ro), .url = url, .cluster = true };
	struct fl_store_iov *iov = calloc(512, sizeof(*iov));
	uint8_t *buf = malloc(2u << 20);
	struct fl_store *st = NULL;
	int fd = open(c->path, O_RDONLY | O_CLOEXEC), r;

	if (!iov || !buf || fd < 0) {
		r = fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	r = fl_store_redis_far_new(&ro, len, FL_REDIS_FAR_ZERO_MISSING, &st);
	for (uint64_t off = 0; !r && off < len; off += 2u << 20) {
		unsigned n = (unsigned)(FL_MIN(2u << 20, len - off) / PAGE);
		r = fl__pread_full(fd, buf, (size_t)n * PAGE, off);
		for (unsigned i = 0; !r && i < n; i++)
			iov[i] = (struct fl_store_iov){ .offset = off + (uint64_t)i * PAGE, .buf = buf + (size_t)i * PAGE,
							.len = PAGE };
		if (!r)
			r = fl_store_write(st, iov, n);
	}
	if (!r)
		r = fl_store_flush(st);
out:
	fl_store_unref(st);
	if (fd >= 0)
		close(fd);
	free(buf);
	free(iov);
	return r;
}

/*
 * (d) Redis Cluster as the far tier: the file's first `len` bytes pushed to
 * a 3-primary cluster on loopback, the zipf workload through a far region
 * over the Redis store, against the same region over the O_DIRECT file store
 * at the same size and limit (alternated).
 */
static int redis_part(const struct cfg *c0, uint64_t len, uint64_t *tagstate, bool json, struct redis_result *rd)
{
	static char reason[160];
	struct redis_local nodes[3];
	struct cfg c = *c0;
	char url[160];
	int r;

	if (!FL_HAVE_REDIS) {
		rd->reason = "not run (built without Redis support, -Dredis=disabled)";
		return 0;
	}
	if (!redis_local_available()) {
		rd->reason = "not run (redis-server is not installed)";
		return 0;
	}
	c.size = len;
	c.npages = len / PAGE;
	/* The same limit / size proportion as (a). */
	c.limit = FL_MAX((uint64_t)((double)c0->limit * (double)len / (double)c0->size) / PAGE * PAGE, 64ull * PAGE);
	if (c.threads > c.npages)
		c.threads = 1;
	c.cdf = NULL;
	c.perm = NULL;
	r = zipf_setup(&c);
	if (r)
		goto out;
	r = redis_local_cluster_start(nodes, 3, "far");
	if (r) {
		/* Not the library's doing: reported, not fatal. */
		snprintf(reason, sizeof(reason), "not run (starting a 3-primary cluster: %s)", strerror(-r));
		rd->reason = reason;
		r = 0;
		goto out;
	}
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d/far", nodes[0].port);
	r = redis_far_load(&c, len, url);
	if (r)
		cli_fail("bench far: redis: writing the pages into the far store", r);
	rd->size = len;
	rd->limit = c.limit;
	for (unsigned rep = 0; !r && rep < c.reps; rep++) {
		struct run_result rf, rr;
		uint64_t seed = c.seed + rep;
		c.redis_url = NULL;
		r = run_child(&c, WL_ZIPF, SIDE_FL, seed, splitmix64(tagstate), &rf);
		if (!r)
			r = check_run(WL_ZIPF, SIDE_FL, &rf);
		c.redis_url = url;
		if (!r)
			r = run_child(&c, WL_ZIPF, SIDE_FL, seed, splitmix64(tagstate), &rr);
		if (!r)
			r = check_run(WL_ZIPF, SIDE_FL, &rr);
		if (r)
			break;
		rd->fl_mbps[rep] = mbps(&rf);
		rd->redis_mbps[rep] = mbps(&rr);
		rd->ratio[rep] = rd->redis_mbps[rep] / rd->fl_mbps[rep];
		rd->n = rep + 1;
		if (!json)
			fprintf(stderr, "# redis rep %u: file store %.1f MB/s, Redis Cluster %.1f MB/s\n", rep,
				rd->fl_mbps[rep], rd->redis_mbps[rep]);
	}
	rd->run = rd->n > 0;
	for (unsigned i = 0; i < 3; i++)
		redis_local_stop(&nodes[i]);
out:
	free(c.cdf);
	free(c.perm);
	return r;
}

/* ---- output --------------------------------------------------------------- */

struct goal {
	const char *name, *text;
	double value, bound;
	bool greater;			/* value > bound instead of >= */
	bool measured;
	/* ratio goals of the random workloads: the same against mmap with
	 * MADV_RANDOM, the stronger baseline there */
	bool has_random;
	double value_random;
};

static bool goal_met(const struct goal *g)
{
	return g->greater ? g->value > g->bound : g->value >= g->bound;
}

static void json_wl(struct json *j, const struct cfg *c, enum workload wl, const struct wl_result *w)
{
	struct stat3 fl = stat_of(w->fl_mbps, w->n), mm = stat_of(w->mmap_mbps, w->n), ra = stat_of(w->ratio, w->n);
	bool fifo = wl == WL_ZIPF || wl == WL_ZIPFW;

	json_begin(j, wl_names[wl]);
	json_u64(j, "accesses", w->accesses);
	json_u64(j, "writes", w->writes);
	json_stat(j, "fl_mbps", fl, 1);
	json_stat(j, "mmap_mbps", mm, 1);
	json_stat(j, "ratio", ra, 3);
	json_num(j, "hit_rate", stat_of(w->hit, w->n).med, 4);
	json_num(j, "mmap_hit_rate", stat_of(w->mmap_hit, w->n).med, 4);
	if (wl_random(wl)) {
		json_stat(j, "mmap_random_mbps", stat_of(w->rnd_mbps, w->n), 1);
		json_num(j, "mmap_random_hit_rate", stat_of(w->rnd_hit, w->n).med, 4);
		json_stat(j, "ratio_random", stat_of(w->rnd_ratio, w->n), 3);
	} else {
		json_null(j, "mmap_random_mbps");
		json_null(j, "mmap_random_hit_rate");
		json_null(j, "ratio_random");
	}
	if (fifo) {
		json_num(j, "fifo_hit_rate", stat_of(w->fifo_hit, w->n).med, 4);
		json_stat(j, "fifo_mbps", stat_of(w->fifo_mbps, w->n), 1);
	} else {
		json_null(j, "fifo_hit_rate");
		json_null(j, "fifo_mbps");
	}
	if (wl_random(wl) && c->warmup > 0) {
		json_bool(j, "warm", !w->cold);
		json_num(j, "fl_warmup_s", stat_of(w->fl_warmup_s, w->n).med, 2);
		json_num(j, "mmap_warmup_s", stat_of(w->mmap_warmup_s, w->n).med, 2);
	} else {
		json_null(j, "warm");
		json_null(j, "fl_warmup_s");
		json_null(j, "mmap_warmup_s");
	}
	json_u64(j, "resident_peak_bytes", w->resident_peak_pages * PAGE);
	json_u64(j, "fl_cgroup_peak_bytes", w->fl_cg_peak);
	json_u64(j, "mmap_cgroup_peak_bytes", w->mmap_cg_peak);
	json_u64(j, "store_bounced", w->bounced);
	if (wl == WL_ZIPFW)
		json_u64(j, "written_pages_verified", w->verified);
	{
		/* The last faultline run's region statistics. */
		const struct fl_region_stats *st = &w->last;
		json_begin(j, "fl_region");
		json_u64(j, "faults_read", st->faults_read);
		json_u64(j, "faults_write", st->faults_write);
		json_u64(j, "pages_prefetch", st->pages_prefetch);
		json_u64(j, "bytes_read", st->bytes_read);
		far_stats_json(j, "far", st, true);
		json_end(j);
	}
	json_end(j);
}

int bench_far_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "size", required_argument, NULL, 's' },
		{ "limit", required_argument, NULL, 'l' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "ops", required_argument, NULL, 'o' },
		{ "workloads", required_argument, NULL, 'w' },
		{ "threads", required_argument, NULL, 't' },
		{ "reps", required_argument, NULL, 'r' },
		{ "file", required_argument, NULL, 'f' },
		{ "keep", no_argument, NULL, 'k' },
		{ "wb-size", required_argument, NULL, 'W' },
		{ "no-writeback", no_argument, NULL, 'B' },
		{ "redis-size", required_argument, NULL, 'R' },
		{ "no-redis", no_argument, NULL, 'D' },
		{ "seed", required_argument, NULL, 'e' },
		{ "overhead", required_argument, NULL, 'O' },
		{ "warmup", required_argument, NULL, 'U' },
		{ "mem", required_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct cfg c = { .size = 4ull << 30, .threads = 1, .reps = 3, .seed = 1, .warmup = 60, .mem = FL_MEM_SHMEM };
	bool json = false, keep = false, writeback = true, redis = true, want[WL_COUNT] = { true, true, true, true };
	bool created = false;
	uint64_t wb_size = 256ull << 20, redis_size = 0, v, tagstate;
	char path[4200] = "", kernel[128] = "?", a[32], b[32];
	struct wl_result wr[WL_COUNT];
	struct wb_result wb = { 0 };
	struct redis_result rd = { 0 };
	struct goal goals[8];
	unsigned ngoals = 0;
	struct utsname un;
	int ch, r = 0, fd = -1, file_slot = -1;

	memset(wr, 0, sizeof(wr));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'j': json = true; break;
		case 's':
			if (fl__parse_size(optarg, &c.size) || c.size < (1u << 20) || c.size % PAGE ||
			    c.size > (16ull << 30))
				return cli_usage_error("bench far: --size must be a multiple of 4 KiB from 1M to 16G");
			break;
		case 'l':
			if (fl__parse_size(optarg, &c.limit) || c.limit < (256u << 10) || c.limit % PAGE)
				return cli_usage_error("bench far: --limit must be a multiple of 4 KiB, at least 256K");
			break;
		case 'S':
			c.seconds = strtod(optarg, NULL);
			if (!(c.seconds > 0 && c.seconds <= 3600))
				return cli_usage_error("bench far: --seconds must be more than 0, at most 3600");
			break;
		case 'o':
			if (fl__parse_uint(optarg, 1, 1ull << 40, &c.ops))
				return cli_usage_error("bench far: --ops must be a positive number");
			break;
		case 'w': {
			char *s = strdup(optarg), *save = NULL;
			if (!s)
				return cli_fail("bench far", -ENOMEM);
			memset(want, 0, sizeof(want));
			for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				unsigned i;
				for (i = 0; i < WL_COUNT && strcmp(t, wl_names[i]); i++)
					;
				if (i == WL_COUNT) {
					int e = cli_usage_error("bench far: unknown workload '%s' (seq, uniform, zipf, zipfw)", t);
					free(s);
					return e;
				}
				want[i] = true;
			}
			free(s);
			break;
		}
		case 't':
			if (fl__parse_uint(optarg, 1, MAX_THREADS, &v))
				return cli_usage_error("bench far: --threads must be 1..%d", MAX_THREADS);
			c.threads = (unsigned)v;
			break;
		case 'r':
			if (fl__parse_uint(optarg, 1, MAX_REPS, &v))
				return cli_usage_error("bench far: --reps must be 1..%d", MAX_REPS);
			c.reps = (unsigned)v;
			break;
		case 'f': snprintf(path, sizeof(path), "%s", optarg); break;
		case 'k': keep = true; break;
		case 'W':
			if (fl__parse_size(optarg, &wb_size) || wb_size < PAGE || wb_size % PAGE)
				return cli_usage_error("bench far: --wb-size must be a multiple of 4 KiB");
			break;
		case 'B': writeback = false; break;
		case 'R':
			if (fl__parse_size(optarg, &redis_size) || redis_size < (1u << 20) || redis_size % (2u << 20))
				return cli_usage_error("bench far: --redis-size must be a multiple of 2 MiB");
			break;
		case 'D': redis = false; break;
		case 'M':
			if (!strcmp(optarg, "shmem"))
				c.mem = FL_MEM_SHMEM;
			else if (!strcmp(optarg, "anon"))
				c.mem = FL_MEM_ANON;
			else
				return cli_usage_error("bench far: --mem is shmem or anon");
			break;
		case 'e':
			if (fl__parse_uint(optarg, 0, UINT64_MAX, &c.seed))
				return cli_usage_error("bench far: --seed must be a number");
			break;
		case 'U':
			c.warmup = strtod(optarg, NULL);
			if (!(c.warmup >= 0 && c.warmup <= 3600))
				return cli_usage_error("bench far: --warmup must be 0..3600 seconds");
			break;
		case 'O':
			if (fl__parse_size(optarg, &c.overhead) || c.overhead < (1u << 20))
				return cli_usage_error("bench far: --overhead must be at least 1M");
			break;
		case 'h': fputs(far_usage, stdout); return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return cli_usage_error("bench far: unexpected argument '%s'", argv[optind]);
	if (c.ops && c.seconds > 0)
		return cli_usage_error("bench far: --ops and --seconds exclude each other");
	if (!c.limit)
		c.limit = c.size / 4 / PAGE * PAGE;
	if (c.limit >= c.size)
		return cli_usage_error("bench far: --limit must be below --size (out of core)");
	/* What the process itself needs beside the limit. Both sides get the
	 * same; whatever the mmap side does not need is page cache for it, so
	 * the allowance stays small against the limit. */
	if (!c.overhead)
		c.overhead = FL_MIN(FL_MAX(c.limit / 32, 8ull << 20), 32ull << 20);
	c.npages = c.size / PAGE;
	if (c.threads > c.npages)
		c.threads = 1;
	wb_size = FL_MIN(wb_size, c.size);
	if (!redis_size)
		redis_size = FL_MIN(c.size, 256ull << 20) / (2u << 20) * (2u << 20);
	c.root = geteuid() == 0;
	c.cgroup = far_memcg_usable();
	if (c.cgroup)
		far_memcg_remove_stale();
	if (uname(&un) == 0)
		snprintf(kernel, sizeof(kernel), "%s", un.release);
	tagstate = c.seed ^ 0xFA12ull ^ (uint64_t)getpid() << 20;

	/* The file: ours (the pattern at its start), or made now. */
	if (!path[0]) {
		snprintf(path, sizeof(path), "%s/fl-bench-far-%d.dat", temp_dir(), (int)getpid());
		unlink(path);
	}
	c.path = path;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		uint64_t w0 = 0, fsize = 0;
		struct stat sb;
		if (fstat(fd, &sb) == 0)
			fsize = (uint64_t)sb.st_size;
		if (fl__pread_full(fd, &w0, 8, 0) || w0 != pattern_word(0)) {
			close(fd);
			return cli_usage_error("bench far: --file %s exists and is not a file this benchmark wrote", path);
		}
		if (fsize < c.size)
			r = write_pattern_file(fd, c.size, false, "far: writing the file");
	} else {
		cleanup_block();
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd >= 0) {
			created = true;
			file_slot = cleanup_add_file(path);
		}
		cleanup_unblock();
		if (fd < 0)
			return cli_fail(path, -errno);
		r = write_pattern_file(fd, c.size, false, "far: writing the file");
	}
	if (!r && fsync(fd))
		r = -errno;
	close(fd);
	if (r) {
		cli_fail("bench far: writing the file", r);
		goto out;
	}
	if (want[WL_ZIPF] || want[WL_ZIPFW]) {
		r = zipf_setup(&c);
		if (r) {
			cli_fail("bench far: Zipf table", r);
			goto out;
		}
	}
	if (!json)
		fprintf(stderr, "# %s file, %s limit, cgroup %s\n", fmt_bytes(c.size, a, sizeof(a)),
			fmt_bytes(c.limit, b, sizeof(b)), c.cgroup ? "v1" : "none (limits not enforced for mmap)");

	for (unsigned i = 0; i < WL_COUNT && !r; i++)
		if (want[i])
			r = run_wl(&c, i, &tagstate, json, &wr[i]);
	if (!r && writeback)
		r = run_wb(&c, wb_size, &tagstate, json, &wb);
	if (r)
		goto out;
	if (!redis)
		rd.reason = "not run (--no-redis)";
	else
		r = redis_part(&c, redis_size, &tagstate, json, &rd);
	if (r)
		goto out;

	/* The goals of the issue. */
	{
		static const struct { enum workload wl; double bound; const char *name, *text; } rg[] = {
			{ WL_SEQ, 1.25, "seq_ratio", "seq: ratio >= 1.25" },
			{ WL_UNIFORM, 1.0, "uniform_ratio", "uniform: ratio >= 1.0" },
			{ WL_ZIPF, 1.25, "zipf_ratio", "zipf: ratio >= 1.25" },
			{ WL_ZIPFW, 1.0, "zipfw_ratio", "zipfw: ratio >= 1.0" },
		};
		for (unsigned i = 0; i < 4; i++)
			goals[ngoals++] = (struct goal){ .name = rg[i].name, .text = rg[i].text, .bound = rg[i].bound,
							 .measured = wr[rg[i].wl].run,
							 .value = stat_of(wr[rg[i].wl].ratio, wr[rg[i].wl].n).med,
							 .has_random = wl_random(rg[i].wl),
							 .value_random = stat_of(wr[rg[i].wl].rnd_ratio, wr[rg[i].wl].n).med };
		goals[ngoals++] = (struct goal){ .name = "zipf_hit_rate", .text = "zipf: hit_rate > fifo_hit_rate",
						 .measured = wr[WL_ZIPF].run, .greater = true,
						 .value = stat_of(wr[WL_ZIPF].hit, wr[WL_ZIPF].n).med,
						 .bound = stat_of(wr[WL_ZIPF].fifo_hit, wr[WL_ZIPF].n).med };
		goals[ngoals++] = (struct goal){ .name = "wb_ratio", .text = "write-back: wb_ratio >= 0.8",
						 .measured = wb.run, .bound = 0.8,
						 .value = stat_of(wb.ratio, wb.n).med };
	}

	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_u64(&j, "size_bytes", c.size);
		json_u64(&j, "limit_bytes", c.limit);
		json_str(&j, "cgroup", c.cgroup ? "v1" : "none");
		if (c.cgroup)
			json_u64(&j, "cgroup_limit_bytes", c.limit + c.overhead);
		else
			json_null(&j, "cgroup_limit_bytes");
		json_u64(&j, "cgroup_overhead_bytes", c.overhead);
		json_str(&j, "kernel", kernel);
		json_str(&j, "mem", c.mem == FL_MEM_ANON ? "anon" : "shmem");
		json_u64(&j, "threads", c.threads);
		json_u64(&j, "reps", c.reps);
		json_num(&j, "warmup_max_s", c.warmup, 1);
		if (c.ops)
			json_u64(&j, "ops", c.ops);
		else
			json_null(&j, "ops");
		json_num(&j, "seconds", c.seconds > 0 ? c.seconds : (double)NAN, 3);
		json_str(&j, "store", "O_DIRECT file (the benchmark's store over fl_store_new, aligned requests direct)");
		json_str(&j, "mmap", "mmap(MAP_SHARED) of the file, kernel readahead defaults (and MADV_RANDOM: mmap_random_*)");
		json_bool(&j, "caches_dropped", c.root);
		json_begin(&j, "workloads");
		for (unsigned i = 0; i < WL_COUNT; i++)
			if (wr[i].run)
				json_wl(&j, &c, i, &wr[i]);
		json_end(&j);
		json_begin(&j, "writeback");
		json_bool(&j, "run", wb.run);
		if (wb.run) {
			json_u64(&j, "size_bytes", wb.size);
			json_stat(&j, "wb_mbps", stat_of(wb.wb_mbps, wb.n), 1);
			json_stat(&j, "pwrite_mbps", stat_of(wb.pwrite_mbps, wb.n), 1);
			json_stat(&j, "wb_ratio", stat_of(wb.ratio, wb.n), 3);
			far_stats_json(&j, "far", &wb.last, true);
		}
		json_end(&j);
		json_begin(&j, "redis");
		json_bool(&j, "run", rd.run);
		if (rd.run) {
			json_u64(&j, "nodes", 3);
			json_u64(&j, "size_bytes", rd.size);
			json_u64(&j, "limit_bytes", rd.limit);
			json_str(&j, "workload", "zipf");
			json_str(&j, "store", REDIS_STORE_NAME);
			json_stat(&j, "redis_mbps", stat_of(rd.redis_mbps, rd.n), 1);
			json_stat(&j, "fl_mbps", stat_of(rd.fl_mbps, rd.n), 1);
			json_stat(&j, "redis_ratio", stat_of(rd.ratio, rd.n), 3);
		} else {
			json_str(&j, "reason", rd.reason);
		}
		json_end(&j);
		json_begin(&j, "goals");
		for (unsigned i = 0; i < ngoals; i++) {
			json_begin(&j, goals[i].name);
			json_str(&j, "goal", goals[i].text);
			if (goals[i].measured) {
				json_num(&j, "value", goals[i].value, 4);
				json_num(&j, "bound", goals[i].bound, 4);
				json_bool(&j, "met", goal_met(&goals[i]));
				if (goals[i].has_random) {
					json_num(&j, "value_random", goals[i].value_random, 4);
					json_bool(&j, "met_random", goals[i].value_random >= goals[i].bound);
				}
			} else {
				json_null(&j, "value");
				json_null(&j, "bound");
				json_null(&j, "met");
				if (goals[i].has_random) {
					json_null(&j, "value_random");
					json_null(&j, "met_random");
				}
			}
			json_end(&j);
		}
		json_end(&j);
		json_end(&j);
		json_finish(&j);
	} else {
		printf("far memory: a %s file, resident limit %s, %s memory, kernel %s\n", fmt_bytes(c.size, a, sizeof(a)),
		       fmt_bytes(c.limit, b, sizeof(b)), c.mem == FL_MEM_ANON ? "anonymous" : "shmem", kernel);
		if (c.cgroup)
			printf("each side in a memory cgroup (v1) limited to the limit + %s for the process\n",
			       fmt_bytes(c.overhead, a, sizeof(a)));
		else
			printf("cgroup: none (no cgroup v1 memory controller): limits were not enforced for mmap\n");
		printf("%u thread(s), medians of %u reps; faultline's store: O_DIRECT file%s\n\n", c.threads, c.reps,
		       c.root ? "; caches dropped before each run" : "; page cache of the file dropped before each run");
		printf("  %-8s %9s %9s %6s %7s %7s %7s %9s %6s %7s\n", "workload", "fl MB/s", "mmap MB/s", "ratio",
		       "hit", "mmap hit", "FIFO hit", "rnd MB/s", "ratio", "hit");
		for (unsigned i = 0; i < WL_COUNT; i++) {
			const struct wl_result *w = &wr[i];
			if (!w->run)
				continue;
			printf("  %-8s %9.1f %9.1f %6.2f %7.4f %7.4f", wl_names[i], stat_of(w->fl_mbps, w->n).med,
			       stat_of(w->mmap_mbps, w->n).med, stat_of(w->ratio, w->n).med, stat_of(w->hit, w->n).med,
			       stat_of(w->mmap_hit, w->n).med);
			if (i == WL_ZIPF || i == WL_ZIPFW)
				printf(" %7.4f", stat_of(w->fifo_hit, w->n).med);
			else
				printf(" %7s", "-");
			if (wl_random(i))
				printf(" %9.1f %6.2f %7.4f\n", stat_of(w->rnd_mbps, w->n).med, stat_of(w->rnd_ratio, w->n).med,
				       stat_of(w->rnd_hit, w->n).med);
			else
				printf(" %9s %6s %7s\n", "-", "-", "-");
		}
		printf("  (ratio: faultline / mmap; rnd: mmap with MADV_RANDOM, faultline / it, its hit rate)\n");
		if (c.warmup > 0)
			printf("  random workloads timed after a warm-up to 7/8 of the limit (at most %g s)\n", c.warmup);
		for (unsigned i = 0; i < WL_COUNT; i++)
			if (wr[i].run && wr[i].cold) {
				printf("  %s: the warm-up ended before the resident set was full:", wl_names[i]);
				const char *sep = " ";
				for (unsigned sd = SIDE_MMAP; sd <= SIDE_FL_FIFO; sd++)
					if (wr[i].cold_sides & (1u << sd)) {
						printf("%s%s", sep, side_name(sd));
						sep = ", ";
					}
				printf(" (a cold start in part)\n");
			}
		if (wb.run)
			printf("\n  write-back of %s: fl_region_flush %.1f MB/s, pwrite + fdatasync %.1f MB/s, wb_ratio %.2f\n",
			       fmt_bytes(wb.size, a, sizeof(a)), stat_of(wb.wb_mbps, wb.n).med,
			       stat_of(wb.pwrite_mbps, wb.n).med, stat_of(wb.ratio, wb.n).med);
		if (rd.run)
			printf("  Redis Cluster (3 primaries, loopback), zipf, %s with a %s limit: %.1f MB/s, %.2f x the file store\n",
			       fmt_bytes(rd.size, a, sizeof(a)), fmt_bytes(rd.limit, b, sizeof(b)),
			       stat_of(rd.redis_mbps, rd.n).med, stat_of(rd.ratio, rd.n).med);
		else
			printf("  redis: %s\n", rd.reason);
		printf("\n  goals:\n");
		for (unsigned i = 0; i < ngoals; i++) {
			if (goals[i].measured && goals[i].has_random)
				printf("    %-36s %-8s (%.3f); against MADV_RANDOM %-8s (%.3f)\n", goals[i].text,
				       goal_met(&goals[i]) ? "met" : "NOT MET", goals[i].value,
				       goals[i].value_random >= goals[i].bound ? "met" : "NOT MET", goals[i].value_random);
			else if (goals[i].measured)
				printf("    %-36s %-8s (%.3f)\n", goals[i].text, goal_met(&goals[i]) ? "met" : "NOT MET",
				       goals[i].value);
			else
				printf("    %-36s not measured\n", goals[i].text);
		}
	}
out:
	free(c.cdf);
	free(c.perm);
	if (created && !keep) {
		unlink(path);
		cleanup_drop(file_slot);
	} else if (created) {
		cleanup_drop(file_slot);
		if (!json)
			fprintf(stderr, "# kept %s\n", path);
	}
	return r ? EXIT_ERR : EXIT_OK;
}
