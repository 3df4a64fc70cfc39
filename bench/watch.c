// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench watch: the cost of tracking dirty pages.
 *
 * Over a populated anonymous range (THP off), a fraction of the pages
 * (1 %, 10 %, 100 %; distinct, in ascending order) is written once each,
 * then the written set is collected and re-armed. Per dirty page:
 *
 * A: faultline: fl_watch_new() (AUTO backend), the writes, then
 *    fl_watch_get() with FL_WATCH_RESET until empty.
 * B: mprotect + SIGSEGV, hand-written: the range read-only, a handler that
 *    records the page and makes it writable, then the re-protection of each
 *    recorded page (what a GC or an emulator does without userfaultfd).
 * C: the raw PAGEMAP_SCAN ioctl over a hand-made WP_ASYNC userfaultfd, for
 *    the same writes: only its get+reset scan is compared with A's.
 *
 * ratio = A per page / B per page; scan_overhead = A's get+reset time / C's.
 * Runs alternate A B C A B C ...; medians and min-max are reported.
 *
 * The watch manager (fl_watch_manager_new(3)), 1,000 ranges of 64 KiB:
 * M1: fl_watch_manager_add + _remove of one more 64 KiB range, against the
 *     mmap + munmap that creates and destroys such a range;
 * M2: one fl_watch_manager_get with FL_WATCH_RESET over all 1,000 adjacent
 *     ranges (1 % of their pages written), against one raw PAGEMAP_SCAN
 *     get+reset over the same pages; and the same done range by range
 *     (1,000 calls), for context.
 */
#include "bench.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096u
#define DEFAULT_SIZE (1ull << 30)
#define DEFAULT_REPS 3
#define GOAL_RATIO 0.75
#define GOAL_SCAN 1.10
#define GOAL_ADD_REMOVE 2.0
#define GOAL_MANAGER_SCAN 1.5
#define MGR_RANGES 1000
#define MGR_RANGE (64u << 10)

static const char watch_usage[] =
	"Usage: faultline bench watch [--json] [--size BYTES] [--reps N]\n"
	"\n"
	"Per-dirty-page cost of dirty tracking over a populated anonymous range\n"
	"(default 1G, THP off) with 1%, 10% and 100% of its pages written once:\n"
	"  faultline  fl_watch_new (AUTO backend), the writes, fl_watch_get with\n"
	"             FL_WATCH_RESET;\n"
	"  mprotect   a hand-written mprotect + SIGSEGV tracker: writes fault,\n"
	"             the handler records and unprotects, then every recorded\n"
	"             page is re-protected;\n"
	"  raw scan   the PAGEMAP_SCAN ioctl over a hand-made WP_ASYNC uffd,\n"
	"             for the same writes (only the get+reset scan is compared).\n"
	"Keys per fraction: fl_us_per_page, mprotect_us_per_page, ratio (goal\n"
	"<= 0.75), scan_overhead (faultline get+reset / raw ioctl, goal <= 1.1).\n"
	"Runs alternate; medians and min-max over --reps (default 3).\n"
	"Watch manager, 1000 ranges of 64K (key \"manager\"): add_remove_us vs\n"
	"mmap_munmap_us per range, add_remove_ratio (goal <= 2); get_reset_us (one\n"
	"call over all ranges, 1% written) vs raw_scan_us (one PAGEMAP_SCAN),\n"
	"get_reset_ratio (goal <= 1.5); per_range_get_reset_us (1000 calls).\n";

/* ---- B: the hand-written mprotect tracker --------------------------------- */

static uint8_t *mp_base;
static uint64_t mp_len;
static _Atomic uint64_t *mp_bits;

static void mp_handler(int sig, siginfo_t *si, void *uc)
{
	uint64_t a = (uintptr_t)si->si_addr & ~(uint64_t)(PAGE - 1);

	(void)sig;
	(void)uc;
	if (a < (uintptr_t)mp_base || a >= (uintptr_t)mp_base + mp_len) {
		signal(SIGSEGV, SIG_DFL);
		return;
	}
	uint64_t p = (a - (uintptr_t)mp_base) / PAGE;
	atomic_fetch_or(&mp_bits[p / 64], 1ull << (p % 64));
	mprotect((void *)(uintptr_t)a, PAGE, PROT_READ | PROT_WRITE);
}

static int run_mprotect(uint8_t *mem, uint64_t size, const uint64_t *pg, uint64_t n, double *us_per_page)
{
	struct sigaction sa = { .sa_sigaction = mp_handler, .sa_flags = SA_SIGINFO }, old;
	uint64_t npages = size / PAGE, t0, found = 0;

	mp_base = mem;
	mp_len = size;
	mp_bits = calloc((npages + 63) / 64, sizeof(uint64_t));
	if (!mp_bits)
		return -ENOMEM;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	if (mprotect(mem, size, PROT_READ))
		return -errno;
	t0 = fl__now_ns();
	for (uint64_t i = 0; i < n; i++)
		mem[pg[i] * PAGE + 8]++;
	for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
		uint64_t bits = atomic_exchange(&mp_bits[w], 0);
		while (bits) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			mprotect(mem + p * PAGE, PAGE, PROT_READ);
			found++;
		}
	}
	*us_per_page = (double)(fl__now_ns() - t0) / 1e3 / (double)n;
	mprotect(mem, size, PROT_READ | PROT_WRITE);
	sigaction(SIGSEGV, &old, NULL);
	free((void *)mp_bits);
	return found == n ? 0 : -EIO;
}

/* ---- A: faultline ------------------------------------------------------------ */

/* The caller's buffer holds the whole range, as GetWriteWatch users size it. */
static int run_faultline(uint8_t *mem, uint64_t size, const uint64_t *pg, uint64_t n, void **buf,
			 double *us_per_page, double *scan_us, enum fl_watch_backend *backend)
{
	struct fl_watch *w;
	uint64_t t0, t1, found = 0, cnt;
	int ret = fl_watch_new(mem, size, NULL, &w);

	if (ret)
		return ret;
	*backend = fl_watch_backend(w);
	t0 = fl__now_ns();
	for (uint64_t i = 0; i < n; i++)
		mem[pg[i] * PAGE + 8]++;
	t1 = fl__now_ns();
	do {
		cnt = size / PAGE;
		ret = fl_watch_get(w, mem, size, FL_WATCH_RESET, buf, &cnt, NULL);
		found += cnt;
	} while (!ret && cnt == size / PAGE);
	*scan_us = (double)(fl__now_ns() - t1) / 1e3;
	*us_per_page = (double)(fl__now_ns() - t0) / 1e3 / (double)n;
	fl_watch_free(w);
	if (ret)
		return ret;
	return found == n ? 0 : -EIO;
}

/* ---- C: the raw ioctl ------------------------------------------------------ */

struct raw_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct raw_page_region {
	uint64_t start, end, categories;
};
#define RAW_PAGEMAP_SCAN 0xc0606610ul
#define RAW_WP_MATCHING 1ull
#define RAW_CHECK_WPASYNC 2ull
#define RAW_IS_WRITTEN (1ull << 1)

static int run_raw(uint8_t *mem, uint64_t size, const uint64_t *pg, uint64_t n, struct raw_page_region *vec,
		   double *scan_us)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };
	struct uffdio_register reg = { .range = { (uintptr_t)mem, size }, .mode = UFFDIO_REGISTER_MODE_WP };
	struct uffdio_writeprotect wp = { .range = { (uintptr_t)mem, size }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), pm, ret = 0;
	uint64_t t1, found = 0;

	if (uffd < 0)
		return -errno;
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0 || ioctl(uffd, UFFDIO_API, &api) || ioctl(uffd, UFFDIO_REGISTER, &reg) ||
	    ioctl(uffd, UFFDIO_WRITEPROTECT, &wp)) {
		ret = -errno;
		goto out;
	}
	for (uint64_t i = 0; i < n; i++)
		mem[pg[i] * PAGE + 8]++;
	t1 = fl__now_ns();
	for (uint64_t start = (uintptr_t)mem; start < (uintptr_t)mem + size;) {
		struct raw_pm_scan_arg a = {
			.size = sizeof(a),
			.flags = RAW_WP_MATCHING | RAW_CHECK_WPASYNC,
			.start = start,
			.end = (uintptr_t)mem + size,
			.vec = (uintptr_t)vec,
			.vec_len = 512,
			.category_mask = RAW_IS_WRITTEN,
			.return_mask = RAW_IS_WRITTEN,
		};
		long r = ioctl(pm, RAW_PAGEMAP_SCAN, &a);
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		for (long i = 0; i < r; i++)
			found += (vec[i].end - vec[i].start) / PAGE;
		start = a.walk_end;
	}
	*scan_us = (double)(fl__now_ns() - t1) / 1e3;
	if (found != n)
		ret = -EIO;
out:
	if (pm >= 0)
		close(pm);
	close(uffd);	/* unregisters: the range is plain memory again */
	return ret;
}

/* ---- M: the watch manager ------------------------------------------------- */

/* Per range: add+remove of one more range to a manager holding `base`'s
 * MGR_RANGES ranges (A), and mmap+munmap of such a range (B), alternating
 * in blocks of 100. */
static int mgr_add_remove(struct fl_watch_manager *m, uint8_t *extra, double *add_rm_us, double *mmap_us)
{
	uint64_t ta = 0, tb = 0;
	int ret = 0;

	for (int blk = 0; blk < 10 && !ret; blk++) {
		uint64_t t0 = fl__now_ns();
		for (int i = 0; i < 100 && !ret; i++) {
			ret = fl_watch_manager_add(m, extra, MGR_RANGE);
			if (!ret)
				ret = fl_watch_manager_remove(m, extra, MGR_RANGE);
		}
		uint64_t t1 = fl__now_ns();
		for (int i = 0; i < 100 && !ret; i++) {
			void *p = mmap(NULL, MGR_RANGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				ret = -errno;
			else
				munmap(p, MGR_RANGE);
		}
		ta += t1 - t0;
		tb += fl__now_ns() - t1;
	}
	*add_rm_us = (double)ta / 1e3 / 1000;
	*mmap_us = (double)tb / 1e3 / 1000;
	return ret;
}

static void mgr_write(uint8_t *mem, uint64_t npages, uint64_t seed)
{
	for (uint64_t p = seed % 100; p < npages; p += 100)
		mem[p * PAGE + 8]++;	/* 1 % */
}

static int mgr_scans(uint8_t *mem, void **buf, struct raw_page_region *vec, uint64_t seed, double *get_us,
		     double *per_range_us, double *raw_us)
{
	uint64_t size = (uint64_t)MGR_RANGES * MGR_RANGE, npages = size / PAGE, want = 0, cnt, t0;
	struct fl_watch_manager *m;
	int ret;

	for (uint64_t p = seed % 100; p < npages; p += 100)
		want++;
	ret = fl_watch_manager_new(NULL, &m);
	for (int r = 0; r < MGR_RANGES && !ret; r++)
		ret = fl_watch_manager_add(m, mem + (uint64_t)r * MGR_RANGE, MGR_RANGE);
	if (!ret) {
		/* One call over every range. */
		mgr_write(mem, npages, seed);
		cnt = npages;
		t0 = fl__now_ns();
		ret = fl_watch_manager_get(m, mem, size, FL_WATCH_RESET, buf, &cnt, NULL);
		*get_us = (double)(fl__now_ns() - t0) / 1e3;
		if (!ret && cnt != want)
			ret = -EIO;
	}
	if (!ret) {
		/* Range by range, as a program that tracks allocations asks. */
		uint64_t found = 0;
		mgr_write(mem, npages, seed + 1);
		t0 = fl__now_ns();
		for (int r = 0; r < MGR_RANGES && !ret; r++) {
			cnt = MGR_RANGE / PAGE;
			ret = fl_watch_manager_get(m, mem + (uint64_t)r * MGR_RANGE, MGR_RANGE, FL_WATCH_RESET, buf, &cnt,
						   NULL);
			found += cnt;
		}
		*per_range_us = (double)(fl__now_ns() - t0) / 1e3;
		if (!ret && found != want)
			ret = -EIO;
	}
	fl_watch_manager_free(m);
	if (!ret) {
		/* The same pages under the raw ioctl (its own uffd). */
		uint64_t *pg = malloc(want * sizeof(*pg)), k = 0;
		if (!pg)
			return -ENOMEM;
		for (uint64_t p = (seed + 2) % 100; p < npages && k < want; p += 100)
			pg[k++] = p;
		ret = run_raw(mem, size, pg, k, vec, raw_us);
		free(pg);
	}
	return ret;
}

static int bench_manager(bool json, struct json *j, uint64_t reps)
{
	uint64_t size = (uint64_t)MGR_RANGES * MGR_RANGE;
	uint8_t *mem = mmap(NULL, size + MGR_RANGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void **buf = malloc(size / PAGE * sizeof(*buf));
	struct raw_page_region *vec = malloc(512 * sizeof(*vec));
	double *ar = calloc(reps, sizeof(double)), *mm = calloc(reps, sizeof(double));
	double *ratio1 = calloc(reps, sizeof(double)), *gr = calloc(reps, sizeof(double));
	double *pr = calloc(reps, sizeof(double)), *raw = calloc(reps, sizeof(double));
	double *ratio2 = calloc(reps, sizeof(double));
	struct fl_watch_manager *m = NULL;
	int ret = 0;

	if (mem == MAP_FAILED || !buf || !vec || !ar || !mm || !ratio1 || !gr || !pr || !raw || !ratio2)
		ret = -ENOMEM;
	if (!ret) {
		madvise(mem, size + MGR_RANGE, MADV_NOHUGEPAGE);
		for (uint64_t p = 0; p < (size + MGR_RANGE) / PAGE; p++)
			mem[p * PAGE] = 1;
	}
	for (uint64_t r = 0; r < reps && !ret; r++) {
		/* M1 with MGR_RANGES ranges watched. */
		ret = fl_watch_manager_new(NULL, &m);
		for (int i = 0; i < MGR_RANGES && !ret; i++)
			ret = fl_watch_manager_add(m, mem + (uint64_t)i * MGR_RANGE, MGR_RANGE);
		if (!ret)
			ret = mgr_add_remove(m, mem + size, &ar[r], &mm[r]);
		m = fl_watch_manager_free(m);
		if (!ret)
			ret = mgr_scans(mem, buf, vec, 7 * r + 3, &gr[r], &pr[r], &raw[r]);
		if (!ret) {
			ratio1[r] = ar[r] / mm[r];
			ratio2[r] = gr[r] / raw[r];
		}
	}
	if (!ret) {
		struct stat3 s1 = stat_of(ratio1, reps), s2 = stat_of(ratio2, reps);
		if (json) {
			json_begin(j, "manager");
			json_u64(j, "ranges", MGR_RANGES);
			json_u64(j, "range_bytes", MGR_RANGE);
			json_stat(j, "add_remove_us", stat_of(ar, reps), 2);
			json_stat(j, "mmap_munmap_us", stat_of(mm, reps), 2);
			json_stat(j, "add_remove_ratio", s1, 3);
			json_stat(j, "get_reset_us", stat_of(gr, reps), 1);
			json_stat(j, "raw_scan_us", stat_of(raw, reps), 1);
			json_stat(j, "get_reset_ratio", s2, 3);
			json_stat(j, "per_range_get_reset_us", stat_of(pr, reps), 1);
			json_bool(j, "goal_add_remove_met", s1.med <= GOAL_ADD_REMOVE);
			json_bool(j, "goal_get_reset_met", s2.med <= GOAL_MANAGER_SCAN);
			json_end(j);
		} else {
			printf("  manager, %d ranges of %u KiB: add+remove %.2f us vs mmap+munmap %.2f us, ratio %.3f "
			       "(goal <= %.1f); get+reset %.0f us vs raw scan %.0f us, ratio %.3f (goal <= %.1f); "
			       "range by range %.0f us\n",
			       MGR_RANGES, MGR_RANGE >> 10, stat_of(ar, reps).med, stat_of(mm, reps).med, s1.med,
			       GOAL_ADD_REMOVE, stat_of(gr, reps).med, stat_of(raw, reps).med, s2.med,
			       GOAL_MANAGER_SCAN, stat_of(pr, reps).med);
		}
	}
	if (mem != MAP_FAILED)
		munmap(mem, size + MGR_RANGE);
	free(buf);
	free(vec);
	free(ar);
	free(mm);
	free(ratio1);
	free(gr);
	free(pr);
	free(raw);
	free(ratio2);
	return ret;
}

/* A random subset of n of the npages pages, in ascending order. */
static void pick(uint64_t *pg, uint64_t n, uint64_t npages, uint64_t seed)
{
	uint64_t x = seed | 1, k = 0;

	/* Selection sampling (Knuth's algorithm S): ascending, distinct. */
	for (uint64_t p = 0; p < npages && k < n; p++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if ((x >> 11) % (npages - p) < n - k)
			pg[k++] = p;
	}
}

int bench_watch_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "size", required_argument, NULL, 's' },
		{ "reps", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	static const double fractions[] = { 0.01, 0.10, 1.00 };
	static const char *const names[] = { "1pct", "10pct", "100pct" };
	uint64_t size = DEFAULT_SIZE, reps = DEFAULT_REPS, v, npages;
	enum fl_watch_backend backend = FL_WATCH_AUTO;
	bool json = false;
	uint8_t *mem;
	uint64_t *pg;
	void **buf;
	struct raw_page_region *vec;
	struct json j;
	int c, ret = 0, status = EXIT_OK;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 's':
			if (fl__parse_size(optarg, &v) || v < (1u << 20) || v > (64ull << 30))
				return cli_usage_error("bench watch: --size wants 1M to 64G, not '%s'", optarg);
			size = v / PAGE * PAGE;
			break;
		case 'r':
			if (fl__parse_uint(optarg, 1, 100, &v))
				return cli_usage_error("bench watch: --reps wants 1-100, not '%s'", optarg);
			reps = v;
			break;
		case 'h':
			fputs(watch_usage, stdout);
			return EXIT_OK;
		default:
			return cli_usage_error("bench watch: unknown option '%s'", argv[optind - 1]);
		}
	}
	npages = size / PAGE;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pg = malloc(npages * sizeof(*pg));
	buf = malloc(npages * sizeof(*buf));
	vec = malloc(512 * sizeof(*vec));
	if (mem == MAP_FAILED || !pg || !buf || !vec)
		return cli_fail("bench watch", -ENOMEM);
	madvise(mem, size, MADV_NOHUGEPAGE);
	for (uint64_t p = 0; p < npages; p++)
		mem[p * PAGE] = 1;

	if (json) {
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "benchmark", "watch");
		json_str(&j, "version", fl_version());
		json_u64(&j, "size", size);
		json_u64(&j, "reps", reps);
	} else {
		printf("bench watch: %llu MiB, THP off, %llu reps per fraction\n", (unsigned long long)(size >> 20),
		       (unsigned long long)reps);
	}
	for (int f = 0; f < 3 && !ret; f++) {
		uint64_t n = (uint64_t)((double)npages * fractions[f]);
		double *fl = calloc(reps, sizeof(double)), *mp = calloc(reps, sizeof(double));
		double *fs = calloc(reps, sizeof(double)), *rs = calloc(reps, sizeof(double));
		double *ratio = calloc(reps, sizeof(double)), *over = calloc(reps, sizeof(double));

		if (!n)
			n = 1;
		for (uint64_t r = 0; r < reps && !ret; r++) {
			pick(pg, n, npages, 0x9E3779B97F4A7C15ull * (r + 1) + (uint64_t)f);
			ret = run_faultline(mem, size, pg, n, buf, &fl[r], &fs[r], &backend);
			if (!ret)
				ret = run_mprotect(mem, size, pg, n, &mp[r]);
			if (!ret)
				ret = run_raw(mem, size, pg, n, vec, &rs[r]);
			if (!ret) {
				ratio[r] = fl[r] / mp[r];
				over[r] = fs[r] / rs[r];
			}
		}
		if (!ret) {
			struct stat3 sr = stat_of(ratio, reps), so = stat_of(over, reps);
			if (json) {
				json_begin(&j, names[f]);
				json_u64(&j, "dirty_pages", n);
				json_stat(&j, "fl_us_per_page", stat_of(fl, reps), 3);
				json_stat(&j, "mprotect_us_per_page", stat_of(mp, reps), 3);
				json_stat(&j, "ratio", sr, 3);
				json_stat(&j, "fl_scan_us", stat_of(fs, reps), 1);
				json_stat(&j, "raw_scan_us", stat_of(rs, reps), 1);
				json_stat(&j, "scan_overhead", so, 3);
				json_bool(&j, "goal_ratio_met", sr.med <= GOAL_RATIO);
				json_bool(&j, "goal_scan_met", so.med <= GOAL_SCAN);
				json_end(&j);
			} else {
				printf("  %3.0f%% written (%llu pages): faultline %.2f us/page, mprotect %.2f us/page, "
				       "ratio %.3f (goal <= %.2f); scan %.0f us vs raw %.0f us, overhead %.3f (goal <= %.2f)\n",
				       fractions[f] * 100, (unsigned long long)n, stat_of(fl, reps).med,
				       stat_of(mp, reps).med, sr.med, GOAL_RATIO, stat_of(fs, reps).med,
				       stat_of(rs, reps).med, so.med, GOAL_SCAN);
			}
		}
		free(fl);
		free(mp);
		free(fs);
		free(rs);
		free(ratio);
		free(over);
	}
	if (!ret)
		ret = bench_manager(json, &j, reps);
	if (ret) {
		status = cli_fail("bench watch", ret);
	} else if (json) {
		json_str(&j, "fl_backend", backend == FL_WATCH_ASYNC ? "async" : backend == FL_WATCH_SYNC ? "sync" : "mprotect");
		json_num(&j, "goal_ratio", GOAL_RATIO, 2);
		json_num(&j, "goal_scan_overhead", GOAL_SCAN, 2);
		json_end(&j);
		json_finish(&j);
	}
	munmap(mem, size);
	free(pg);
	free(buf);
	free(vec);
	return status;
}
