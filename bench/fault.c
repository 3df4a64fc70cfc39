// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench fault: demand-fault service latency seen by the faulting
 * thread.
 *
 * A: the faultline engine: one handler thread pinned with FL_PLACE_CPU, no
 *    background filler, a region over a memory store with
 *    FL_REGION_NO_PREFETCH, so every first touch is one fault resolved with
 *    one 4 KiB UFFDIO_COPY.
 * B: a minimal raw handler: a thread pinned the same way that sleeps in
 *    poll(2), then read(2)s one uffd_msg and UFFDIO_COPYs the one faulting
 *    page from the same source buffer. Its uffd is O_NONBLOCK like the
 *    engine's: on a blocking uffd poll() always reports POLLERR at once
 *    and the thread would sleep in read() instead.
 *
 * The faulting thread is pinned to the first allowed CPU and times each
 * first touch with clock_gettime(). Same-CPU placement runs the handler on
 * that CPU (a wake-up on the same CPU is the fast case on these VMs);
 * cross-CPU runs it on the next allowed CPU. Blocks alternate A B A B ...
 * (after one discarded warm-up round), each block with a fresh region, and
 * the report gives, per placement, the median over blocks of each block's
 * p50 and p99, their min-max, and the median of the per-pair ratios A/B.
 */
#include "bench.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u
#define DEFAULT_ITERATIONS 2000
#define DEFAULT_PAIRS 7
#define GOAL_P50 1.05
#define GOAL_P99 1.25
#define GOAL_OVERHEAD_NS 300

static const char fault_usage[] =
	"Usage: faultline bench fault [--json] [--iterations N] [--pairs N]\n"
	"                             [--placement same|cross|both]\n"
	"\n"
	"Demand-fault service latency measured by the faulting thread (the time\n"
	"around the first touch of each page): the faultline engine (one pinned\n"
	"handler thread, a region over a memory store, no prefetch, no background\n"
	"fill) against a minimal raw handler (blocking poll + read of one message,\n"
	"UFFDIO_COPY of the one page), pinned the same way. The faulting thread\n"
	"runs on the first allowed CPU; same-CPU placement puts the handler there\n"
	"too, cross-CPU on the next CPU (skipped with a single CPU).\n"
	"\n"
	"Blocks alternate faultline, raw, faultline, raw ... with a fresh region\n"
	"each, after one discarded warm-up round. Reported per placement: the\n"
	"median over blocks of each block's p50 and p99 (with min and max), and\n"
	"ratio_p50 / ratio_p99 = the median over A/B pairs of faultline / raw,\n"
	"and fl_overhead_ns = the median over pairs of faultline p50 - raw p50\n"
	"(the engine's own cost per fault). The top-level keys are those of the\n"
	"default placement, same-CPU (the fast one on VMs), or the only placement\n"
	"run. Goal: ratio_p50 <= 1.05, ratio_p99 <= 1.25, fl_overhead_ns <= 300.\n"
	"\n"
	"Options:\n"
	"  --iterations N   faults per block (default 2000)\n"
	"  --pairs N        A/B pairs per placement (default 7)\n"
	"  --placement P    same, cross or both (default both)\n"
	"  --json           print one JSON object\n"
	"  -h, --help       show this help\n";

/* ---- the raw baseline handler ------------------------------------------------ */

struct raw_handler {
	int uffd;
	int cpu;
	uint8_t *base;		/* registered range: npages + 1 sentinel page */
	size_t len;
	const uint8_t *src;
	const uint8_t *sentinel;	/* the extra last page: touching it stops the handler */
	int err;		/* first error, read after join */
	pthread_t tid;
};

/*
 * On an error the handler cannot recover from, unregister the range: that
 * wakes any thread waiting on a fault there (it then gets an ordinary page
 * and the byte check reports the error), so nothing hangs.
 */
static void raw_give_up(struct raw_handler *h, int err)
{
	struct uffdio_range range = { (uintptr_t)h->base, h->len };

	if (!h->err)
		h->err = err;
	ioctl(h->uffd, UFFDIO_UNREGISTER, &range);
}

static void *raw_main(void *arg)
{
	struct raw_handler *h = arg;

	if (pin_self(h->cpu)) {
		raw_give_up(h, -EINVAL);
		return NULL;
	}
	for (;;) {
		struct pollfd pfd = { .fd = h->uffd, .events = POLLIN };
		struct uffdio_copy copy;
		struct uffd_msg msg;
		uint64_t addr;
		ssize_t n;

		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			raw_give_up(h, -errno);
			break;
		}
		if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) {
			raw_give_up(h, -EIO);
			break;
		}
		n = read(h->uffd, &msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n != sizeof(msg)) {
			raw_give_up(h, n < 0 ? -errno : -EIO);
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		addr = msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1);
		copy = (struct uffdio_copy){
			.dst = addr,
			.src = (uintptr_t)(h->src + (addr - (uintptr_t)h->base)),
			.len = PAGE,
		};
		if (ioctl(h->uffd, UFFDIO_COPY, &copy) && errno != EEXIST) {
			raw_give_up(h, -errno);
			break;
		}
		/* Only the sentinel page ends the loop: `stop` alone would race
		 * with the last real fault's wake-up. */
		if (addr == (uintptr_t)h->sentinel)
			break;
	}
	return NULL;
}

/* ---- one measurement block --------------------------------------------------- */

/*
 * First-touch every page in order, timing each touch; returns the number of
 * pages whose first byte is not the source's.
 */
static size_t touch_pages(const uint8_t *base, const uint8_t *src, size_t npages, uint64_t *samples)
{
	size_t bad = 0;

	for (size_t i = 0; i < npages; i++) {
		const volatile uint8_t *p = base + i * PAGE;
		uint64_t t0, t1;
		uint8_t v;

		t0 = fl__now_ns();
		v = *p;
		t1 = fl__now_ns();
		samples[i] = t1 - t0;
		bad += v != src[i * PAGE];
	}
	return bad;
}

struct block {
	double p50_us, p99_us;
	double service_p50_us;	/* faultline only: the engine's own histogram */
};

static void block_quantiles(uint64_t *samples, size_t n, struct block *b)
{
	b->p50_us = (double)quantile_u64(samples, n, 0.50) / 1000.0;
	b->p99_us = (double)quantile_u64(samples, n, 0.99) / 1000.0;
}

static int run_raw_block(const uint8_t *src, size_t npages, int cpu, uint64_t *samples, struct block *b)
{
	struct raw_handler h = { .uffd = -1, .cpu = cpu, .src = src };
	size_t bad;
	void *p;
	int r;

	h.len = (npages + 1) * PAGE;
	r = fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK, &h.uffd);
	if (r)
		return cli_fail("bench fault: raw handler: creating a userfaultfd", r);
	r = fl_uffd_api(h.uffd, 0, NULL, NULL);
	if (r) {
		close(h.uffd);
		return cli_fail("bench fault: raw handler: UFFDIO_API", r);
	}
	p = mmap(NULL, h.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		r = -errno;
		close(h.uffd);
		return cli_fail("bench fault: raw handler: mmap", r);
	}
	h.base = p;
	h.sentinel = h.base + npages * PAGE;
	r = fl_uffd_register(h.uffd, p, h.len, FL_REG_MISSING, NULL);
	if (!r)
		r = -pthread_create(&h.tid, NULL, raw_main, &h);
	if (r) {
		munmap(p, h.len);
		close(h.uffd);
		return cli_fail("bench fault: raw handler: setup", r);
	}
	bad = touch_pages(h.base, src, npages, samples);
	/* The sentinel page: the handler serves its fault and exits. */
	(void)*(volatile uint8_t *)h.sentinel;
	pthread_join(h.tid, NULL);
	munmap(p, h.len);
	close(h.uffd);
	if (h.err)
		return cli_fail("bench fault: raw handler", h.err);
	if (bad) {
		cli_error("bench fault: raw handler: %zu pages with wrong bytes", bad);
		return EXIT_ERR;
	}
	block_quantiles(samples, npages, b);
	return 0;
}

static int run_fl_block(struct fl_store *store, const uint8_t *src, size_t npages, int cpu,
			uint64_t *samples, struct block *b)
{
	struct fl_engine_opts eo = {
		.sz = sizeof(eo),
		.flags = FL_ENGINE_NO_FILLER,
		.threads = 1,
		.placement = FL_PLACE_CPU,
		.cpu = cpu,
	};
	struct fl_region_opts ro = {
		.sz = sizeof(ro),
		.length = npages * PAGE,
		.mem = FL_MEM_ANON,
		.mode = FL_MODE_MISSING,
		.flags = FL_REGION_NO_PREFETCH,
		.store = store,
		.memfd = -1,
		.name = "bench-fault",
	};
	struct fl_region_stats st = { .sz = sizeof(st) };
	struct fl_engine *e = NULL;
	struct fl_region *reg = NULL;
	size_t bad;
	int r;

	r = fl_engine_new(&eo, &e);
	if (r)
		return cli_fail("bench fault: fl_engine_new", r);
	r = fl_engine_start(e);
	if (r) {
		fl_engine_free(e);
		return cli_fail("bench fault: fl_engine_start", r);
	}
	r = fl_region_new(e, &ro, &reg);
	if (r) {
		fl_engine_free(e);
		return cli_fail("bench fault: fl_region_new", r);
	}
	bad = touch_pages(fl_region_addr(reg), src, npages, samples);
	fl_region_stats(reg, &st);
	fl_region_free(reg);
	fl_engine_free(e);
	if (bad) {
		cli_error("bench fault: faultline: %zu pages with wrong bytes", bad);
		return EXIT_ERR;
	}
	if (st.faults_read + st.faults_write != npages || st.pages_prefetch) {
		cli_error("bench fault: faultline: expected %zu faults and no prefetch, saw %llu faults, %llu prefetched",
			  npages, (unsigned long long)(st.faults_read + st.faults_write),
			  (unsigned long long)st.pages_prefetch);
		return EXIT_ERR;
	}
	block_quantiles(samples, npages, b);
	b->service_p50_us = (double)st.lat_p50_ns / 1000.0;
	return 0;
}

/* ---- results --------------------------------------------------------------------- */

enum { SAME = 0, CROSS = 1 };
static const char *const placement_key[] = { "same_cpu", "cross_cpu" };
static const char *const placement_label[] = { "same-CPU", "cross-CPU" };

struct placement_result {
	bool run;
	int handler_cpu;
	unsigned n;		/* pairs measured */
	double *fl_p50, *fl_p99, *raw_p50, *raw_p99, *r_p50, *r_p99, *svc_p50;
	double *over_ns;	/* per pair: faultline p50 - raw p50, in ns */
};

/* The keys shared by the top level and the per-placement objects. */
static void json_placement_keys(struct json *j, const struct placement_result *p)
{
	json_stat(j, "fl_p50_us", stat_of(p->fl_p50, p->n), 2);
	json_stat(j, "fl_p99_us", stat_of(p->fl_p99, p->n), 2);
	json_stat(j, "raw_p50_us", stat_of(p->raw_p50, p->n), 2);
	json_stat(j, "raw_p99_us", stat_of(p->raw_p99, p->n), 2);
	json_stat(j, "ratio_p50", stat_of(p->r_p50, p->n), 3);
	json_stat(j, "ratio_p99", stat_of(p->r_p99, p->n), 3);
	json_num(j, "fl_service_p50_us", stat_of(p->svc_p50, p->n).med, 2);
	json_stat(j, "fl_overhead_ns", stat_of(p->over_ns, p->n), 0);
}

static bool goal_met(const struct placement_result *p)
{
	return stat_of(p->r_p50, p->n).med <= GOAL_P50 && stat_of(p->r_p99, p->n).med <= GOAL_P99 &&
	       stat_of(p->over_ns, p->n).med <= GOAL_OVERHEAD_NS;
}

static void print_text(const struct placement_result *res, int def, unsigned iterations, unsigned pairs,
		       int fault_cpu)
{
	printf("faultline bench fault: %u faults per block, %u A/B pairs per placement, faulting thread on CPU %d\n",
	       iterations, pairs, fault_cpu);
	printf("medians over blocks (min-max); ratio = median over pairs of faultline / raw\n\n");
	printf("%-10s %-4s %-21s %-21s %-21s %-21s\n", "placement", "cpu", "faultline p50 us", "raw p50 us",
	       "ratio p50", "ratio p99");
	for (int k = SAME; k <= CROSS; k++) {
		const struct placement_result *p = &res[k];
		struct stat3 a, b, c, d;
		char s1[32], s2[32], s3[32], s4[32];

		if (!p->run)
			continue;
		a = stat_of(p->fl_p50, p->n);
		b = stat_of(p->raw_p50, p->n);
		c = stat_of(p->r_p50, p->n);
		d = stat_of(p->r_p99, p->n);
		snprintf(s1, sizeof(s1), "%.1f (%.1f-%.1f)", a.med, a.min, a.max);
		snprintf(s2, sizeof(s2), "%.1f (%.1f-%.1f)", b.med, b.min, b.max);
		snprintf(s3, sizeof(s3), "%.3f (%.2f-%.2f)", c.med, c.min, c.max);
		snprintf(s4, sizeof(s4), "%.3f (%.2f-%.2f)", d.med, d.min, d.max);
		printf("%-10s %-4d %-21s %-21s %-21s %-21s\n", placement_label[k], p->handler_cpu, s1, s2, s3, s4);
	}
	printf("\n%-10s %-4s %-21s %-21s %-21s\n", "placement", "", "faultline p99 us", "raw p99 us",
	       "engine service p50");
	for (int k = SAME; k <= CROSS; k++) {
		const struct placement_result *p = &res[k];
		struct stat3 a, b, c;
		char s1[32], s2[32], s3[32];

		if (!p->run)
			continue;
		a = stat_of(p->fl_p99, p->n);
		b = stat_of(p->raw_p99, p->n);
		c = stat_of(p->svc_p50, p->n);
		snprintf(s1, sizeof(s1), "%.1f (%.1f-%.1f)", a.med, a.min, a.max);
		snprintf(s2, sizeof(s2), "%.1f (%.1f-%.1f)", b.med, b.min, b.max);
		snprintf(s3, sizeof(s3), "%.1f us", c.med);
		printf("%-10s %-4s %-21s %-21s %-21s\n", placement_label[k], "", s1, s2, s3);
	}
	if (!res[CROSS].run && res[SAME].run)
		printf("\ncross-CPU: not run\n");
	printf("\n%-10s %-4s %-21s\n", "placement", "", "fl_overhead_ns");
	for (int k = SAME; k <= CROSS; k++) {
		const struct placement_result *p = &res[k];
		struct stat3 a;

		if (!p->run)
			continue;
		a = stat_of(p->over_ns, p->n);
		printf("%-10s %-4s %.0f (%.0f-%.0f)\n", placement_label[k], "", a.med, a.min, a.max);
	}
	printf("\ngoal (%s): ratio_p50 <= %.2f, ratio_p99 <= %.2f, fl_overhead_ns <= %d: %s\n", placement_label[def],
	       GOAL_P50, GOAL_P99, GOAL_OVERHEAD_NS, goal_met(&res[def]) ? "met" : "MISSED");
}

static void print_json(const struct placement_result *res, int def, unsigned iterations, unsigned pairs,
		       int fault_cpu, const char *cross_skipped)
{
	struct json j;

	json_init(&j, stdout);
	json_begin(&j, NULL);
	json_str(&j, "benchmark", "fault");
	json_str(&j, "version", fl_version());
	json_str(&j, "placement", placement_key[def]);
	json_placement_keys(&j, &res[def]);
	json_bool(&j, "goal_met", goal_met(&res[def]));
	json_num(&j, "goal_ratio_p50", GOAL_P50, 2);
	json_num(&j, "goal_ratio_p99", GOAL_P99, 2);
	json_num(&j, "goal_overhead_ns", GOAL_OVERHEAD_NS, 0);
	json_u64(&j, "iterations", iterations);
	json_u64(&j, "pairs", pairs);
	json_i64(&j, "fault_cpu", fault_cpu);
	json_str(&j, "ratio_method", "median over A/B pairs of faultline/raw");
	for (int k = SAME; k <= CROSS; k++) {
		const struct placement_result *p = &res[k];

		if (!p->run) {
			json_null(&j, placement_key[k]);
			continue;
		}
		json_begin(&j, placement_key[k]);
		json_i64(&j, "handler_cpu", p->handler_cpu);
		json_placement_keys(&j, p);
		json_bool(&j, "goal_met", goal_met(p));
		json_end(&j);
	}
	if (cross_skipped)
		json_str(&j, "cross_cpu_skipped", cross_skipped);
	json_end(&j);
	json_finish(&j);
}

/* ---- main ---------------------------------------------------------------------- */

static int alloc_result(struct placement_result *p, unsigned pairs)
{
	double **arrays[] = { &p->fl_p50, &p->fl_p99, &p->raw_p50, &p->raw_p99, &p->r_p50, &p->r_p99,
			      &p->svc_p50, &p->over_ns };

	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
		*arrays[i] = calloc(pairs, sizeof(double));
		if (!*arrays[i])
			return -ENOMEM;
	}
	return 0;
}

static void free_result(struct placement_result *p)
{
	free(p->fl_p50);
	free(p->fl_p99);
	free(p->raw_p50);
	free(p->raw_p99);
	free(p->r_p50);
	free(p->r_p99);
	free(p->svc_p50);
	free(p->over_ns);
}

int bench_fault_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "pairs", required_argument, NULL, 'p' },
		{ "placement", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct placement_result res[2] = { { 0 } };
	const char *cross_skipped = NULL;
	uint64_t iterations = DEFAULT_ITERATIONS, pairs = DEFAULT_PAIRS, v;
	bool json = false, want[2] = { true, true };
	struct fl_store *store = NULL;
	uint64_t *samples = NULL;
	uint8_t *src = NULL;
	int cpus[2], ncpu, c, def, status = EXIT_ERR, r;
	cpu_set_t saved_affinity;
	struct progress prog;
	bool pinned = false;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'n':
			if (fl__parse_uint(optarg, 1, 10000000, &v))
				return cli_usage_error("bench fault: --iterations wants a number from 1 to 10000000, not '%s'",
						       optarg);
			iterations = v;
			break;
		case 'p':
			if (fl__parse_uint(optarg, 1, 1000, &v))
				return cli_usage_error("bench fault: --pairs wants a number from 1 to 1000, not '%s'",
						       optarg);
			pairs = v;
			break;
		case 'P':
			if (strcmp(optarg, "same") == 0) {
				want[SAME] = true;
				want[CROSS] = false;
			} else if (strcmp(optarg, "cross") == 0) {
				want[SAME] = false;
				want[CROSS] = true;
			} else if (strcmp(optarg, "both") == 0) {
				want[SAME] = want[CROSS] = true;
			} else {
				return cli_usage_error("bench fault: --placement wants same, cross or both, not '%s'",
						       optarg);
			}
			break;
		case 'h':
			fputs(fault_usage, stdout);
			return EXIT_OK;
		default:
			if (optopt && strchr("npP", optopt))
				return cli_usage_error("bench fault: %s needs a value", argv[optind - 1]);
			return cli_usage_error("bench fault: unknown option '%s' (see 'faultline bench fault --help')",
					       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("bench fault: unexpected argument '%s'", argv[optind]);

	ncpu = allowed_cpus(cpus, 2);
	if (ncpu < 1)
		return cli_fail("bench fault: sched_getaffinity", ncpu < 0 ? ncpu : -ENODEV);
	if (ncpu < 2 && want[CROSS]) {
		cross_skipped = "only one CPU";
		want[CROSS] = false;
		if (!want[SAME]) {
			cli_error("bench fault: cross-CPU placement needs two CPUs; this process may use one");
			return EXIT_ERR;
		}
	}
	def = want[SAME] ? SAME : CROSS;
	for (int k = SAME; k <= CROSS; k++) {
		res[k].run = want[k];
		res[k].handler_cpu = k == SAME ? cpus[0] : (ncpu > 1 ? cpus[1] : -1);
		if (want[k] && alloc_result(&res[k], (unsigned)pairs)) {
			cli_fail("bench fault", -ENOMEM);
			goto out;
		}
	}

	/* The source: every page a different non-zero byte, so a page served
	 * from the wrong offset is caught. One extra page for the sentinel. */
	samples = calloc(iterations, sizeof(*samples));
	src = mmap(NULL, (iterations + 1) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!samples || src == MAP_FAILED) {
		src = NULL;
		cli_fail("bench fault: allocating the source buffer", -ENOMEM);
		goto out;
	}
	for (uint64_t i = 0; i <= iterations; i++)
		memset(src + i * PAGE, (int)(i % 251) + 1, PAGE);
	r = fl_store_memory_new(src, (iterations + 1) * PAGE, 0, &store);
	if (r) {
		cli_fail("bench fault: fl_store_memory_new", r);
		goto out;
	}

	if (sched_getaffinity(0, sizeof(saved_affinity), &saved_affinity) == 0)
		pinned = true;
	r = pin_self(cpus[0]);
	if (r) {
		cli_fail("bench fault: pinning the faulting thread", r);
		goto out;
	}

	/* Round 0 warms up (page tables, caches, the allocator) and is not
	 * counted. Each later round: for each placement, A then B. */
	progress_begin(&prog, "bench fault", pairs + 1, false);
	for (uint64_t round = 0; round <= pairs; round++) {
		for (int k = SAME; k <= CROSS; k++) {
			struct placement_result *p = &res[k];
			struct block a = { 0 }, b = { 0 };

			if (!p->run)
				continue;
			if (run_fl_block(store, src, iterations, p->handler_cpu, samples, &a) ||
			    run_raw_block(src, iterations, p->handler_cpu, samples, &b))
				goto out;
			if (round == 0)
				continue;
			p->fl_p50[p->n] = a.p50_us;
			p->fl_p99[p->n] = a.p99_us;
			p->svc_p50[p->n] = a.service_p50_us;
			p->raw_p50[p->n] = b.p50_us;
			p->raw_p99[p->n] = b.p99_us;
			p->r_p50[p->n] = a.p50_us / b.p50_us;
			p->r_p99[p->n] = a.p99_us / b.p99_us;
			p->over_ns[p->n] = (a.p50_us - b.p50_us) * 1000.0;
			p->n++;
		}
		progress_update(&prog, round + 1, NULL);
	}
	progress_end(&prog, pairs + 1, NULL);

	if (json)
		print_json(res, def, (unsigned)iterations, (unsigned)pairs, cpus[0], cross_skipped);
	else
		print_text(res, def, (unsigned)iterations, (unsigned)pairs, cpus[0]);
	status = EXIT_OK;
out:
	if (pinned)
		sched_setaffinity(0, sizeof(saved_affinity), &saved_affinity);
	fl_store_unref(store);
	if (src)
		munmap(src, (iterations + 1) * PAGE);
	free(samples);
	free_result(&res[SAME]);
	free_result(&res[CROSS]);
	return status;
}
