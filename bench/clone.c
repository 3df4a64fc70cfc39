// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench clone: what copy-on-write clones, resets and working sets
 * buy, each against what a program does without them.
 *
 * (a) sharing: N worker processes (default 8) each make a clone of one
 *     image (default 256 MiB) and read every page. faultline clones map the
 *     template (a memfd the workers receive) MAP_PRIVATE; the baseline
 *     workers fill private memory with UFFDIO_COPY (a lazy restore each).
 *     Keys: clones_pss_mib, copy_pss_mib (the growth of the workers' Pss in
 *     /proc/<pid>/smaps_rollup, summed, with all workers alive), image_mib,
 *     pss_ratio = clones_pss_mib / image_mib (goal <= 1.1).
 * (b) reset: a clone of a 1 GiB image, every page mapped, in a loop of "write
 *     K distinct pages, fl_clone_reset()", against fork() + exit + wait of
 *     a process holding the same bytes in ordinary anonymous memory, whose
 *     child writes the same K pages. K = 10, 1000, 100000. Keys per K:
 *     reset_per_s, fork_per_s, ratio = reset_per_s / fork_per_s (goals:
 *     >= 10 at K = 10, >= 2 at K = 1000).
 * (c) cold start: a workload that reads 20 % of a 1 GiB image's pages in a
 *     fixed random order, restored lazily, against the same restore with a
 *     working set recorded once and replayed. Keys: lazy_faults, ws_faults,
 *     lazy_s, ws_s, fault_ratio, speedup (goals: >= 3 and >= 2).
 * Runs alternate (A B A B ...); medians and min-max over --reps.
 */
#include "bench.h"
#include "coldstart.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096u
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MIB (1024.0 * 1024.0)
#define GOAL_PSS 1.1
#define GOAL_RESET_10 10.0
#define GOAL_RESET_1000 2.0
#define GOAL_FAULTS 3.0
#define GOAL_SPEEDUP 2.0

static const char clone_usage[] =
	"Usage: faultline bench clone [--json] [--part a|b|c] [--clones N]\n"
	"                             [--clone-size BYTES] [--size BYTES] [--reps N]\n"
	"\n"
	"(a) sharing: N worker processes (default 8) each clone one image (default\n"
	"    256M, --clone-size) and read every page: faultline clones of a template\n"
	"    against workers filled by their own UFFDIO_COPY. Keys clones_pss_mib,\n"
	"    copy_pss_mib, image_mib, pss_ratio (clones / image, goal <= 1.1).\n"
	"(b) reset: a clone of a 1G image (--size) writes K pages and is reset,\n"
	"    against fork() + exit + wait of a process with the same memory whose\n"
	"    child writes the same K pages; K = 10, 1000, 100000. Keys per K\n"
	"    reset_per_s, fork_per_s, ratio (goals >= 10 at K = 10, >= 2 at 1000).\n"
	"    Then one reset's cost after K = 1, 10, 100 written pages on a dense\n"
	"    512 MiB heap and a sparse 8 GiB one (one page in 16 held), for clones\n"
	"    and for reset points (anonymous memory): keys under latency:\n"
	"    reset_us_512m_k10, reset_us_8g_k10, ..., reset_flat (8g / 512m at\n"
	"    K = 10), point_reset_us_*, point_reset_flat, point_backend_* (goals:\n"
	"    <= 100 us at K = 10, flat <= 1.5).\n"
	"(c) cold start: reading 20% of a 1G image in a fixed order, lazily and\n"
	"    with a recorded working set replayed. Keys lazy_faults, ws_faults,\n"
	"    lazy_s, ws_s, fault_ratio (goal >= 3), speedup (goal >= 2).\n"
	"Runs alternate; medians and min-max over --reps (default 3). The images\n"
	"are written to $TMPDIR (default /var/tmp) and removed.\n";

int clone_make_image(const char *path, uint64_t size)
{
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_NO_SYNC, .creator = "faultline bench" };
	struct fl_range range;
	uint64_t *p, s = 0xc10e;
	int r;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Data everywhere: no zero page to make anything cheaper. */
	for (uint64_t i = 0; i < size / 8; i++)
		p[i] = splitmix64(&s) | 1;
	range = (struct fl_range){ (uintptr_t)p, size };
	r = fl_image_write_ranges(path, &range, 1, &wo);
	munmap(p, size);
	return r;
}

/* ---- (a) sharing ------------------------------------------------------------ */

struct worker {
	pid_t pid;
	int to[2], from[2];
	uint64_t base_pss;
};

static bool rd1(int fd, void *b, size_t n)
{
	return read(fd, b, n) == (ssize_t)n;
}

static bool wr1(int fd, const void *b, size_t n)
{
	return write(fd, b, n) == (ssize_t)n;
}

/* A worker: measure, wait for the start, clone (or copy), read every page,
 * say so, wait to be told to exit. */
static int share_worker(const char *image_path, uint64_t size, int tpl_fd, int in, int out)
{
	struct fl_engine_opts eo = { .sz = sizeof(eo), .flags = FL_ENGINE_NO_FILLER };
	struct fl_engine *engine = NULL;
	struct fl_region *region = NULL;
	struct fl_template *tpl = NULL;
	struct fl_image *img = NULL;
	struct fl_store *store = NULL;
	uint64_t pss = proc_kb("/proc/self/smaps_rollup", "Pss");
	volatile uint64_t sink = 0;
	char c = 1;
	int r;

	if (!wr1(out, &pss, sizeof(pss)) || !rd1(in, &c, 1))
		return 1;
	r = fl_image_open(image_path, 0, &img);
	if (!r)
		r = fl_image_store_new(img, 0, &store);
	if (!r)
		r = fl_engine_new(&eo, &engine);
	if (!r)
		r = fl_engine_start(engine);
	if (!r && tpl_fd >= 0) {
		struct fl_template_opts to = { .sz = sizeof(to), .mem = FL_MEM_SHMEM, .store = store,
					       .length = size, .flags = FL_TEMPLATE_MEMFD,
					       .memfd = tpl_fd, .name = "bench" };
		r = fl_template_new(&to, &tpl);
		if (!r)
			r = fl_clone_new(engine, tpl, NULL, &region);
	} else if (!r) {
		struct fl_region_opts ro = { .sz = sizeof(ro), .length = size, .mem = FL_MEM_ANON,
					     .mode = FL_MODE_MISSING, .store = store, .name = "copy" };
		r = fl_region_new(engine, &ro, &region);
	}
	if (!r) {
		const uint8_t *m = fl_region_addr(region);
		for (uint64_t off = 0; off < size; off += PAGE)
			sink += *(const volatile uint64_t *)(m + off);
	}
	(void)sink;
	{
		/* Status, then where the memory is (the Pss of those mappings). */
		uint64_t where[3] = { r ? 1 : 0, r ? 0 : (uintptr_t)fl_region_addr(region), size };
		wr1(out, where, sizeof(where));
	}
	rd1(in, &c, 1);
	fl_region_free(region);
	fl_template_free(tpl);
	fl_engine_free(engine);
	fl_store_unref(store);
	fl_image_close(img);
	return r ? 1 : 0;
}

/*
 * Pss (bytes) of the mappings of a process that overlap [start, end) or map
 * a file whose name contains `name`: the memory itself, without what the
 * process shares with its parent.
 */
uint64_t mappings_pss(pid_t pid, uint64_t start, uint64_t end, const char *name)
{
	uint64_t kib = 0;

	if (fl__pss_kib(pid, start, end - start, name, &kib))
		return 0;
	return kib * 1024;
}

/* The growth of N workers' Pss, summed, while all are alive (rollup), and
 * the Pss of the clones' (or copies') own mappings (mapped). */
int clone_share(const char *image_path, uint64_t size, unsigned n, bool copy, double *ret_mib,
		double *ret_mapped_mib)
{
	double mapped = 0;
	struct worker *w = calloc(n, sizeof(*w));
	int tpl_fd = -1, status, ret = 0;
	unsigned started = 0;
	double total = 0;
	pid_t parent = getpid();
	char c = 0;

	if (!w)
		return -ENOMEM;
	if (!copy) {
		/* The template's page cache: the workers receive this fd. */
		tpl_fd = memfd_create("bench-template", MFD_CLOEXEC);
		if (tpl_fd < 0 || ftruncate(tpl_fd, (off_t)size)) {
			ret = -errno;
			goto out;
		}
	}
	fflush(NULL);
	for (; started < n; started++) {
		struct worker *k = &w[started];
		if (pipe(k->to) || pipe(k->from)) {
			ret = -errno;
			goto out;
		}
		k->pid = fork();
		if (k->pid < 0) {
			ret = -errno;
			goto out;
		}
		if (k->pid == 0) {
			cleanup_child(parent);
			/* Not the other workers' pipes: their EOF is their exit. */
			for (unsigned i = 0; i < started; i++) {
				close(w[i].to[1]);
				close(w[i].from[0]);
			}
			close(k->to[1]);
			close(k->from[0]);
			_exit(share_worker(image_path, size, tpl_fd, k->to[0], k->from[1]));
		}
		close(k->to[0]);
		close(k->from[1]);
	}
	for (unsigned i = 0; i < n; i++)
		if (!rd1(w[i].from[0], &w[i].base_pss, sizeof(w[i].base_pss)))
			ret = -EIO;
	/* All at once, as a pool of workers starting together would. */
	for (unsigned i = 0; i < n && !ret; i++)
		wr1(w[i].to[1], &c, 1);
	for (unsigned i = 0; i < n && !ret; i++) {
		uint64_t where[3];
		char path[64];
		if (!rd1(w[i].from[0], where, sizeof(where)) || where[0]) {
			ret = -EIO;
			break;
		}
		mapped += (double)mappings_pss(w[i].pid, where[1], where[1] + where[2],
					       copy ? NULL : "memfd:bench-template") / MIB;
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)w[i].pid);
		{
			uint64_t pss = proc_kb(path, "Pss");
			total += (double)(pss - MIN(pss, w[i].base_pss)) / MIB;
		}
	}
out:
	for (unsigned i = 0; i < started; i++) {
		close(w[i].to[1]);	/* EOF: exit */
		close(w[i].from[0]);
	}
	for (unsigned i = 0; i < started; i++)
		waitpid(w[i].pid, &status, 0);
	if (tpl_fd >= 0)
		close(tpl_fd);
	free(w);
	*ret_mib = total;
	if (ret_mapped_mib)
		*ret_mapped_mib = mapped;
	return ret;
}

/* ---- (b) reset rates ----------------------------------------------------------- */

struct reset_env {
	uint64_t size, npages;
	uint32_t *perm;			/* a random permutation of the pages */
	uint64_t cursor;
	uint8_t *clone_mem, *anon;
	struct fl_region *clone;
};

/* Write K distinct pages: the next K of a random permutation. */
static void dirty(struct reset_env *re, uint8_t *mem, uint64_t k)
{
	for (uint64_t i = 0; i < k; i++) {
		uint64_t p = re->perm[(re->cursor + i) % re->npages];
		((volatile uint64_t *)(mem + p * PAGE))[1] ^= 1;
	}
	re->cursor = (re->cursor + k) % re->npages;
}

static double run_resets(struct reset_env *re, uint64_t k, double secs)
{
	uint64_t t0 = fl__now_ns(), n = 0;
	double el;

	do {
		dirty(re, re->clone_mem, k);
		if (fl_clone_reset(re->clone, NULL))
			return -1;
		n++;
		el = (double)(fl__now_ns() - t0) / 1e9;
	} while (el < secs || n < 3);
	return (double)n / el;
}

static double run_forks(struct reset_env *re, uint64_t k, double secs)
{
	uint64_t t0 = fl__now_ns(), n = 0;
	double el;

	do {
		int status;
		pid_t parent = getpid(), pid = fork();
		if (pid < 0)
			return -1;
		if (pid == 0) {
			cleanup_child(parent);
			dirty(re, re->anon, k);
			_exit(0);
		}
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
			return -1;
		re->cursor = (re->cursor + k) % re->npages;
		n++;
		el = (double)(fl__now_ns() - t0) / 1e9;
	} while (el < secs || n < 3);
	return (double)n / el;
}

struct reset_rates {
	struct fl_engine *engine;
	struct fl_image *img;
	struct fl_store *store;
	struct fl_template *tpl;
	struct reset_env re;
};

static void reset_fini(struct reset_rates *rr)
{
	fl_region_free(rr->re.clone);
	fl_template_free(rr->tpl);
	fl_engine_free(rr->engine);
	fl_store_unref(rr->store);
	fl_image_close(rr->img);
	if (rr->re.anon && rr->re.anon != MAP_FAILED)
		munmap(rr->re.anon, rr->re.size);
	free(rr->re.perm);
}

/* A mapped clone of the image, and the same bytes in anonymous memory. */
static int reset_init(struct reset_rates *rr, const char *image_path, uint64_t size)
{
	struct fl_engine_opts eo = { .sz = sizeof(eo), .flags = FL_ENGINE_NO_FILLER };
	struct fl_template_opts to = { .sz = sizeof(to), .mem = FL_MEM_SHMEM, .length = size, .memfd = -1,
				       .name = "bench" };
	uint64_t s = 42;
	int r;

	memset(rr, 0, sizeof(*rr));
	rr->re.size = size;
	rr->re.npages = size / PAGE;
	rr->re.perm = malloc(rr->re.npages * sizeof(*rr->re.perm));
	if (!rr->re.perm)
		return -ENOMEM;
	for (uint64_t i = 0; i < rr->re.npages; i++)
		rr->re.perm[i] = (uint32_t)i;
	for (uint64_t i = rr->re.npages - 1; i > 0; i--) {
		uint64_t j = splitmix64(&s) % (i + 1);
		uint32_t t = rr->re.perm[i];
		rr->re.perm[i] = rr->re.perm[j];
		rr->re.perm[j] = t;
	}
	r = fl_image_open(image_path, 0, &rr->img);
	if (!r)
		r = fl_image_store_new(rr->img, 0, &rr->store);
	if (!r)
		r = fl_engine_new(&eo, &rr->engine);
	if (!r)
		r = fl_engine_start(rr->engine);
	to.store = rr->store;
	if (!r)
		r = fl_template_new(&to, &rr->tpl);
	if (!r)
		r = fl_clone_new(rr->engine, rr->tpl, NULL, &rr->re.clone);
	if (r)
		return r;
	rr->re.clone_mem = fl_region_addr(rr->re.clone);
	/* The fork baseline's process holds the same bytes, every page
	 * present (THP as the system sets it for anonymous memory). */
	rr->re.anon = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (rr->re.anon == MAP_FAILED)
		return -errno;
	memcpy(rr->re.anon, rr->re.clone_mem, size);	/* maps every page of the clone too */
	return fl_clone_reset(rr->re.clone, NULL);
}

int clone_reset_rates(const char *image_path, uint64_t size, uint64_t k, unsigned reps, double secs,
		      double *ret_reset, double *ret_fork)
{
	struct reset_rates rr;
	double a[16], b[16];
	int r;

	if (reps > 16)
		reps = 16;
	r = reset_init(&rr, image_path, size);
	for (unsigned i = 0; i < reps && !r; i++) {
		a[i] = run_resets(&rr.re, k, secs);
		b[i] = run_forks(&rr.re, k, secs);
		if (a[i] < 0 || b[i] < 0)
			r = -EIO;
	}
	if (!r) {
		*ret_reset = median_d(a, reps);
		*ret_fork = median_d(b, reps);
	}
	reset_fini(&rr);
	return r;
}

/* ---- (b) reset latency against the heap's size ------------------------------------ */

/*
 * What one reset costs after K written pages, on a dense 512 MiB heap and
 * on a sparse 8 GiB one holding as much (one page in 16): a reset that
 * costs what was written costs the same on both. Clones (a template over a
 * zero store, every held page mapped) and reset points (private anonymous
 * memory) alike.
 */
#define LAT_RESETS 60			/* measured, after LAT_WARMUP */
#define LAT_WARMUP 12			/* a reset point settles on its way */
#define GOAL_RESET_US 100.0
#define GOAL_FLAT 1.5

struct lat_heap {
	const char *name;		/* key part: 512m, 8g */
	uint64_t size, stride;		/* bytes; one held page every stride */
};

static const struct lat_heap lat_heaps[] = {
	{ "512m", 512ull << 20, PAGE },
	{ "8g", 8ull << 30, 16 * PAGE },
};
static const uint64_t lat_ks[] = { 1, 10, 100 };

/* Write K distinct held pages, from a random start in the held set. */
static void lat_dirty(uint8_t *mem, const struct lat_heap *h, uint64_t k, uint64_t *seed)
{
	uint64_t held = h->size / h->stride, first = splitmix64(seed) % held, step = held / k;

	for (uint64_t i = 0; i < k; i++)
		((volatile uint64_t *)(mem + (first + i * step) % held * h->stride))[3] ^= 1;
}

static double lat_median_us(uint64_t *ns, unsigned n)
{
	double d[LAT_RESETS];

	for (unsigned i = 0; i < n; i++)
		d[i] = (double)ns[i] / 1000.0;
	return median_d(d, n);
}

static int lat_clone(struct fl_engine *e, const struct lat_heap *h, double *ret_us)
{
	struct fl_template_opts to = { .sz = sizeof(to), .mem = FL_MEM_SHMEM, .length = h->size, .memfd = -1,
				       .name = "bench-reset" };
	struct fl_template *tpl = NULL;
	struct fl_region *c = NULL;
	uint64_t ns[LAT_RESETS], seed = 99;
	uint8_t *m;
	int r = fl_store_zero_new(h->size, &to.store);

	if (!r)
		r = fl_template_new(&to, &tpl);
	fl_store_unref(to.store);
	if (!r)
		r = fl_clone_new(e, tpl, NULL, &c);
	if (r)
		goto out;
	m = fl_region_addr(c);
	for (uint64_t off = 0; off < h->size; off += h->stride)
		(void)*(volatile uint8_t *)(m + off);	/* every held page mapped */
	for (size_t ki = 0; ki < sizeof(lat_ks) / sizeof(lat_ks[0]) && !r; ki++) {
		for (unsigned i = 0; i < LAT_WARMUP + LAT_RESETS && !r; i++) {
			struct fl_reset_stats st = { .sz = sizeof(st) };
			lat_dirty(m, h, lat_ks[ki], &seed);
			r = fl_clone_reset(c, &st);
			if (i >= LAT_WARMUP)
				ns[i - LAT_WARMUP] = st.ns;
		}
		ret_us[ki] = lat_median_us(ns, LAT_RESETS);
	}
out:
	fl_region_free(c);
	fl_template_free(tpl);
	return r;
}

static int lat_point(const struct lat_heap *h, double *ret_us, enum fl_watch_backend *ret_backend)
{
	struct fl_reset_point *rp = NULL;
	uint64_t ns[LAT_RESETS], seed = 77;
	uint8_t *m = mmap(NULL, h->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int r;

	if (m == MAP_FAILED)
		return -errno;
	/* THP "always" would make the sparse heap dense (2 MiB per page held). */
	madvise(m, h->size, MADV_NOHUGEPAGE);
	for (uint64_t off = 0; off < h->size; off += h->stride)
		memset(m + off, (int)(off / h->stride) | 1, PAGE);
	r = fl_reset_point_new(m, h->size, &rp);
	for (size_t ki = 0; ki < sizeof(lat_ks) / sizeof(lat_ks[0]) && !r; ki++) {
		for (unsigned i = 0; i < LAT_WARMUP + LAT_RESETS && !r; i++) {
			struct fl_reset_stats st = { .sz = sizeof(st) };
			lat_dirty(m, h, lat_ks[ki], &seed);
			r = fl_reset_point_reset(rp, &st);
			if (i >= LAT_WARMUP)
				ns[i - LAT_WARMUP] = st.ns;
		}
		ret_us[ki] = lat_median_us(ns, LAT_RESETS);
		ret_backend[ki] = fl_reset_point_backend(rp);
	}
	fl_reset_point_free(rp);
	munmap(m, h->size);
	return r;
}

static int reset_latency(struct json *j, bool json)
{
	enum { NH = sizeof(lat_heaps) / sizeof(lat_heaps[0]), NK = sizeof(lat_ks) / sizeof(lat_ks[0]) };
	struct fl_engine_opts eo = { .sz = sizeof(eo), .flags = FL_ENGINE_NO_FILLER };
	struct fl_engine *e = NULL;
	double cl[NH][NK], pt[NH][NK];
	enum fl_watch_backend be[NH][NK];
	int r = fl_engine_new(&eo, &e);

	if (!r)
		r = fl_engine_start(e);
	for (size_t hi = 0; hi < NH && !r; hi++) {
		r = lat_clone(e, &lat_heaps[hi], cl[hi]);
		if (!r)
			r = lat_point(&lat_heaps[hi], pt[hi], be[hi]);
	}
	fl_engine_free(e);
	if (r)
		return r;
	for (int kind = 0; kind < 2; kind++) {
		double (*us)[NK] = kind ? pt : cl;
		double flat = us[1][1] / us[0][1];
		bool met = us[0][1] <= GOAL_RESET_US && us[1][1] <= GOAL_RESET_US && flat <= GOAL_FLAT;
		const char *pre = kind ? "point_" : "";
		char key[64];

		if (json) {
			for (size_t hi = 0; hi < NH; hi++)
				for (size_t ki = 0; ki < NK; ki++) {
					snprintf(key, sizeof(key), "%sreset_us_%s_k%llu", pre, lat_heaps[hi].name,
						 (unsigned long long)lat_ks[ki]);
					json_num(j, key, us[hi][ki], 1);
					if (kind) {
						snprintf(key, sizeof(key), "point_backend_%s_k%llu", lat_heaps[hi].name,
							 (unsigned long long)lat_ks[ki]);
						json_str(j, key, be[hi][ki] == FL_WATCH_SYNC ? "sync" :
								 be[hi][ki] == FL_WATCH_ASYNC ? "async" : "mprotect");
					}
				}
			snprintf(key, sizeof(key), "%sreset_flat", pre);
			json_num(j, key, flat, 2);
			snprintf(key, sizeof(key), "%sreset_goal_met", pre);
			json_bool(j, key, met);
		} else {
			printf("    %s after K written pages, median of %d (us):\n", kind ? "reset point" : "clone reset",
			       LAT_RESETS);
			for (size_t hi = 0; hi < NH; hi++) {
				printf("      %-4s heap:", lat_heaps[hi].name);
				for (size_t ki = 0; ki < NK; ki++)
					printf("  K=%-3llu %8.1f%s", (unsigned long long)lat_ks[ki], us[hi][ki],
					       !kind ? "" : be[hi][ki] == FL_WATCH_SYNC ? " (sync) " : " (async)");
				printf("\n");
			}
			printf("      K=10: 8g/512m %.2f (goal <= %.1f), <= %.0f us on both: %s\n", flat, GOAL_FLAT,
			       GOAL_RESET_US, met ? "ok" : "MISSED");
		}
	}
	return 0;
}

/* ---- the command ----------------------------------------------------------------- */

int bench_clone_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "part", required_argument, NULL, 'p' },
		{ "clones", required_argument, NULL, 'n' },
		{ "clone-size", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 's' },
		{ "reps", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	static const uint64_t ks[] = { 10, 1000, 100000 };
	uint64_t size = 1ull << 30, csize = 256ull << 20, clones = 8, reps = 3, v;
	bool json = false, pa = true, pb = true, pc = true;
	char dir[4096], img_big[4200], img_small[4200], ws[4300];
	struct json j;
	int c, r = 0, status = EXIT_OK, dir_slot;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'p':
			pa = strchr(optarg, 'a') != NULL;
			pb = strchr(optarg, 'b') != NULL;
			pc = strchr(optarg, 'c') != NULL;
			if (!(pa || pb || pc) || strspn(optarg, "abc,") != strlen(optarg))
				return cli_usage_error("bench clone: --part wants a, b, c or a list (a,c), not '%s'",
						       optarg);
			break;
		case 'n':
			if (fl__parse_uint(optarg, 1, 64, &v))
				return cli_usage_error("bench clone: --clones wants 1-64, not '%s'", optarg);
			clones = v;
			break;
		case 'c':
		case 's':
			if (fl__parse_size(optarg, &v) || v < (4u << 20) || v > (64ull << 30))
				return cli_usage_error("bench clone: --%s wants 4M to 64G, not '%s'",
						       c == 'c' ? "clone-size" : "size", optarg);
			*(c == 'c' ? &csize : &size) = v / (2u << 20) * (2u << 20);
			break;
		case 'r':
			if (fl__parse_uint(optarg, 1, 16, &v))
				return cli_usage_error("bench clone: --reps wants 1-16, not '%s'", optarg);
			reps = v;
			break;
		case 'h':
			fputs(clone_usage, stdout);
			return EXIT_OK;
		default:
			return cli_usage_error("bench clone: unknown option '%s'", argv[optind - 1]);
		}
	}
	/* The images (and the writer's temporary files) live in it: an
	 * interrupted run removes it whole. */
	r = scratch_dir(temp_dir(), "faultline-bench-clone", dir, sizeof(dir), &dir_slot);
	if (r)
		return cli_fail(temp_dir(), r);
	snprintf(img_big, sizeof(img_big), "%s/big.img", dir);
	snprintf(img_small, sizeof(img_small), "%s/small.img", dir);
	snprintf(ws, sizeof(ws), "%s/big.img.ws", dir);

	if (json) {
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "benchmark", "clone");
		json_str(&j, "version", fl_version());
		json_u64(&j, "reps", reps);
	}
	if (pa) {
		double cl[16], cp[16], ml[16], mp[16];
		r = clone_make_image(img_small, csize);
		for (unsigned i = 0; i < reps && !r; i++) {
			r = clone_share(img_small, csize, (unsigned)clones, false, &cl[i], &ml[i]);
			if (!r)
				r = clone_share(img_small, csize, (unsigned)clones, true, &cp[i], &mp[i]);
		}
		unlink(img_small);
		if (r)
			goto fail;
		{
			struct stat3 sc = stat_of(cl, reps), sp = stat_of(cp, reps);
			double image_mib = (double)csize / MIB, ratio = sc.med / image_mib;
			if (json) {
				json_begin(&j, "sharing");
				json_u64(&j, "clones", clones);
				json_num(&j, "image_mib", image_mib, 1);
				json_stat(&j, "clones_pss_mib", sc, 1);
				json_stat(&j, "copy_pss_mib", sp, 1);
				json_stat(&j, "clones_mapped_pss_mib", stat_of(ml, reps), 1);
				json_stat(&j, "copy_mapped_pss_mib", stat_of(mp, reps), 1);
				json_num(&j, "pss_ratio", ratio, 3);
				json_num(&j, "copy_ratio", sp.med / image_mib, 3);
				json_num(&j, "goal_pss_ratio", GOAL_PSS, 2);
				json_bool(&j, "goal_met", ratio <= GOAL_PSS);
				json_end(&j);
			} else {
				printf("(a) %llu clones of a %.0f MiB image, every page read:\n"
				       "    faultline clones: %.1f MiB Pss in total (pss_ratio %.3f, goal <= %.1f) %s\n"
				       "    UFFDIO_COPY per clone: %.1f MiB (%.2fx the image)\n",
				       (unsigned long long)clones, image_mib, sc.med, ratio, GOAL_PSS,
				       ratio <= GOAL_PSS ? "ok" : "MISSED", sp.med, sp.med / image_mib);
			}
		}
	}
	if (pb || pc) {
		if (!json)
			fprintf(stderr, "writing a %llu MiB image...\n", (unsigned long long)(size >> 20));
		r = clone_make_image(img_big, size);
		if (r)
			goto fail;
	}
	if (pb) {
		if (json)
			json_begin(&j, "reset");
		else
			printf("(b) reset of a %llu MiB clone after K written pages, against fork + exit + wait:\n",
			       (unsigned long long)(size >> 20));
		for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
			double rs, fk, ratio, goal = ks[i] == 10 ? GOAL_RESET_10 : ks[i] == 1000 ? GOAL_RESET_1000 : 0;
			char key[32];
			r = clone_reset_rates(img_big, size, MIN(ks[i], size / PAGE), (unsigned)reps, 0.5, &rs, &fk);
			if (r)
				goto fail;
			ratio = rs / fk;
			if (json) {
				snprintf(key, sizeof(key), "k%llu", (unsigned long long)ks[i]);
				json_begin(&j, key);
				json_u64(&j, "dirtied_pages", MIN(ks[i], size / PAGE));
				json_num(&j, "reset_per_s", rs, 1);
				json_num(&j, "fork_per_s", fk, 1);
				json_num(&j, "ratio", ratio, 2);
				if (goal > 0) {
					json_num(&j, "goal_ratio", goal, 0);
					json_bool(&j, "goal_met", ratio >= goal);
				}
				json_end(&j);
			} else {
				printf("    K = %-6llu reset %9.1f/s   fork %7.1f/s   ratio %6.2f", (unsigned long long)ks[i],
				       rs, fk, ratio);
				if (goal > 0)
					printf("  (goal >= %.0f) %s", goal, ratio >= goal ? "ok" : "MISSED");
				printf("\n");
			}
		}
		if (!json)
			printf("(b) reset latency, dense 512 MiB and sparse 8 GiB (one page in 16) heaps:\n");
		else
			json_begin(&j, "latency");
		r = reset_latency(&j, json);
		if (json)
			json_end(&j);
		if (r)
			goto fail;
		if (json)
			json_end(&j);
	}
	if (pc) {
		struct cold_opts o = { .image_path = img_big, .touch = 0.2, .seed = 7, .quiet = true };
		struct cold_result res;
		double lf[16], wf[16], ls[16], wsec[16];
		r = fl_image_open(img_big, 0, &o.img);
		if (!r) {
			o.record_path = ws;
			r = cold_start(&o, &res);
			o.record_path = NULL;
		}
		for (unsigned i = 0; i < reps && !r; i++) {
			o.ws_path = NULL;
			r = cold_start(&o, &res);
			lf[i] = (double)res.faults;
			ls[i] = res.seconds;
			if (!r && res.mismatches)
				r = -EIO;
			o.ws_path = ws;
			if (!r)
				r = cold_start(&o, &res);
			wf[i] = (double)res.faults;
			wsec[i] = res.seconds;
			if (!r && (res.mismatches || res.ws_err))
				r = res.ws_err ? res.ws_err : -EIO;
		}
		fl_image_close(o.img);
		if (r)
			goto fail;
		{
			struct stat3 a = stat_of(lf, reps), b = stat_of(wf, reps), x = stat_of(ls, reps),
				     y = stat_of(wsec, reps);
			double fr = a.med / (b.med > 0 ? b.med : 1), sp = x.med / y.med;
			if (json) {
				json_begin(&j, "cold_start");
				json_num(&j, "touch_pct", 20, 0);
				json_u64(&j, "touched_pages", res.touched);
				json_stat(&j, "lazy_faults", a, 0);
				json_stat(&j, "ws_faults", b, 0);
				json_stat(&j, "lazy_s", x, 4);
				json_stat(&j, "ws_s", y, 4);
				json_num(&j, "fault_ratio", fr, 2);
				json_num(&j, "speedup", sp, 2);
				json_num(&j, "goal_fault_ratio", GOAL_FAULTS, 0);
				json_num(&j, "goal_speedup", GOAL_SPEEDUP, 0);
				json_bool(&j, "goal_met", fr >= GOAL_FAULTS && sp >= GOAL_SPEEDUP);
				json_end(&j);
			} else {
				printf("(c) cold start reading 20%% of a %llu MiB image (%llu pages):\n"
				       "    lazy:        %8.0f demand faults  %.3f s\n"
				       "    working set: %8.0f demand faults  %.3f s\n"
				       "    %.1fx fewer faults (goal >= %.0f) %s, %.1fx faster (goal >= %.0f) %s\n",
				       (unsigned long long)(size >> 20), (unsigned long long)res.touched, a.med, x.med,
				       b.med, y.med, fr, GOAL_FAULTS, fr >= GOAL_FAULTS ? "ok" : "MISSED", sp,
				       GOAL_SPEEDUP, sp >= GOAL_SPEEDUP ? "ok" : "MISSED");
			}
		}
	}
	if (json) {
		json_end(&j);
		json_finish(&j);
	}
	goto out;
fail:
	if (json) {
		json_end(&j);
		json_finish(&j);
	}
	cli_fail("bench clone", r);
	status = EXIT_ERR;
out:
	unlink(ws);
	unlink(img_big);
	unlink(img_small);
	rmdir(dir);
	cleanup_drop(dir_slot);
	return status;
}
