// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline demo: lazily restore a memory image and check every byte.
 *
 * Writes an image file (a pattern with single zero pages and 2 MiB zero
 * runs) to a temporary directory, opens it as a file store, and restores it
 * into an anonymous region with prefetch and background fill. Worker
 * threads touch the region while it is being restored: half of them read
 * their slice sequentially and check every word, the others pick random
 * pages, touch each with a write that keeps its value (an atomic add of 0,
 * so the first touch is a write fault) and check the whole page. The main
 * thread draws progress and notes when the region is fully populated, then
 * prints the engine's statistics.
 *
 * Exit: 0 when every page matched, 1 on a mismatch or an error.
 */
#include "cli.h"
#include "util.h"
#include "fl-config.h"
#include "redis-local.h"
#include "demo.h"
#include "far-stats.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define DEFAULT_SIZE (1ull << 30)
#define DEFAULT_THREADS 4
#define MAX_THREADS 64
/* Times FAULTLINE_TIMEOUT_SCALE (cli_scaled_ms()). */
#define POPULATE_TIMEOUT_MS 40000u

static const char demo_usage[] =
	"Usage: faultline demo [--size BYTES] [--threads N] [--dir DIR]\n"
	"\n"
	"Write a memory image (a pattern with zero pages) to a temporary file,\n"
	"then restore it lazily into an anonymous region: pages come from the file\n"
	"on first touch, with prefetch, while a background filler copies the rest.\n"
	"Half the threads read their share sequentially, the others touch random\n"
	"pages (first with a write that keeps the value); every page touched is\n"
	"checked word by word. Prints fault, prefetch, background-fill and latency\n"
	"statistics. Then it writes an image of the region and restores it from a\n"
	"local file, a page server and Redis; and takes live snapshots of a copy\n"
	"while threads keep writing it (copy-on-write stall beside fork()'s, then an\n"
	"incremental snapshot); copy-on-write clones of it; and client processes\n"
	"served by faultlined (started from beside this program), which is killed\n"
	"and restarted while they read. The temporary directory is removed at the\n"
	"end.\n"
	"\n"
	"Options:\n"
	"  --size BYTES   image size, e.g. 256M, 1G (default 1G)\n"
	"  --threads N    threads touching the region, 1-64 (default 4)\n"
	"  --dir DIR      where to create the temporary directory for the image\n"
	"                 (default $TMPDIR, else /var/tmp)\n"
	"  -h, --help     show this help\n"
	"\n"
	"Exit status: 0 when every byte matched, 1 on a mismatch or an error,\n"
	"2 on a usage error.\n";

struct demo {
	uint8_t *base;
	uint64_t npages;
	unsigned seq_threads, rand_threads;
	_Atomic uint64_t verified;		/* pages checked */
	_Atomic uint64_t mismatches;		/* pages with a wrong word */
	_Atomic uint64_t first_bad_off;		/* offset+1 of the first wrong word; 0: none */
	_Atomic uint64_t first_access_ns;	/* earliest first touch, absolute; 0: none yet */
};

struct worker {
	struct demo *d;
	unsigned index;			/* among threads of its kind */
	bool sequential;
	uint64_t seed;
	pthread_t tid;
};

static void note_first_access(struct demo *d)
{
	uint64_t t = fl__now_ns(), cur = 0;

	while (!atomic_compare_exchange_weak(&d->first_access_ns, &cur, t))
		if (cur && cur <= t)
			return;
}

/* Check one page word by word; returns true if it matches the image. */
static bool check_page(struct demo *d, uint64_t page)
{
	const uint64_t *w = (const uint64_t *)(const void *)(d->base + page * PAGE);
	uint64_t off = page * PAGE;

	for (unsigned i = 0; i < PAGE / 8; i++) {
		if (w[i] != pattern_expected(off + i * 8u, true)) {
			uint64_t none = 0;
			atomic_compare_exchange_strong(&d->first_bad_off, &none, off + i * 8u + 1);
			atomic_fetch_add(&d->mismatches, 1);
			return false;
		}
	}
	return true;
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct demo *d = w->d;
	bool first = true;

	if (w->sequential) {
		uint64_t per = d->npages / d->seq_threads;
		uint64_t start = w->index * per;
		uint64_t end = w->index + 1 == d->seq_threads ? d->npages : start + per;

		for (uint64_t p = start; p < end; p++) {
			/* The first word alone is the first touch: a read fault. */
			(void)*(const volatile uint64_t *)(d->base + p * PAGE);
			if (first) {
				note_first_access(d);
				first = false;
			}
			check_page(d, p);
			atomic_fetch_add_explicit(&d->verified, 1, memory_order_relaxed);
		}
	} else {
		/* Random pages: a quarter of the region over all random threads. */
		uint64_t count = d->npages / 4 / d->rand_threads + 1, seed = w->seed;

		for (uint64_t i = 0; i < count; i++) {
			uint64_t p = xorshift64(&seed) % d->npages;
			uint64_t *word = (uint64_t *)(void *)(d->base + p * PAGE + (xorshift64(&seed) % (PAGE / 8)) * 8);

			/* A write that keeps the value: the first touch is a write fault. */
			__atomic_fetch_add(word, 0, __ATOMIC_RELAXED);
			if (first) {
				note_first_access(d);
				first = false;
			}
			check_page(d, p);
			atomic_fetch_add_explicit(&d->verified, 1, memory_order_relaxed);
		}
	}
	return NULL;
}

/* Library log messages (warnings and errors only) go to stderr. */
static void demo_log(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	fprintf(stderr, "\nfaultline: engine %s: %s\n", level == FL_LOG_ERROR ? "error" : "warning", msg);
}

/* ---- 5. restoring an image of the demo region from each store ---------- */

struct restore_result {
	const char *source;
	int err;
	uint64_t first_ns, full_ns, mismatches;
};

static void restore_from(struct fl_engine *engine, struct fl_store *store, uint64_t size,
			 struct restore_result *res)
{
	struct fl_region_opts ro = { .sz = sizeof(ro), .length = size, .store = store,
				     .flags = FL_REGION_BACKGROUND };
	struct fl_region *rg;
	const volatile uint8_t *p;
	uint64_t t0 = fl__now_ns(), acc = 0;

	res->err = fl_region_new(engine, &ro, &rg);
	if (res->err)
		return;
	p = fl_region_addr(rg);
	acc += p[0];
	res->first_ns = fl__now_ns() - t0;
	for (uint64_t off = 0; off < size; off += 4096)
		acc += p[off];
	res->full_ns = fl__now_ns() - t0;
	for (uint64_t off = 0; off < size; off += 4096 + 64) {
		uint64_t o = off & ~7ull, v;
		memcpy(&v, (const uint8_t *)p + o, 8);
		res->mismatches += v != pattern_expected(o, true);
	}
	(void)acc;
	fl_region_free(rg);
}

static void *serve_thread(void *arg)
{
	fl_server_run(arg);
	return NULL;
}

static int demo_images(struct fl_engine *engine, const uint8_t *base, uint64_t size, const char *dir)
{
	struct restore_result res[3] = { { "local image" }, { "page server (loopback)" }, { "Redis (loopback)" } };
	struct fl_range range = { (uintptr_t)base, size };
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .creator = "faultline demo" };
	struct fl_image *img = NULL;
	struct fl_store *st;
	char path[4300], a[32], b[32];
	uint64_t t0;
	int r, status = EXIT_OK;

	/* In the demo's scratch directory, which is removed if interrupted. */
	snprintf(path, sizeof(path), "%s/demo.img", dir);
	t0 = fl__now_ns();
	r = fl_image_write_ranges(path, &range, 1, &wo);
	if (r)
		return cli_fail("demo: writing the image", r);
	fmt_ns(fl__now_ns() - t0, a, sizeof(a));
	printf("\nimage of the region written in %s (%s)\n", a, path);
	r = fl_image_open(path, 0, &img);
	if (r)
		goto out;
	/* local image */
	res[0].err = fl_image_store_new(img, 0, &st);
	if (!res[0].err) {
		restore_from(engine, st, size, &res[0]);
		fl_store_unref(st);
	}
	/* page server over loopback */
	{
		struct fl_server_opts so = { .sz = sizeof(so), .listen = "127.0.0.1:0" };
		struct fl_server *srv;
		pthread_t th;
		res[1].err = fl_server_new(img, &so, &srv);
		if (!res[1].err) {
			char addr[64];
			/* The library's 5 s default, times the scale: a slow VM takes longer per read. */
			struct fl_remote_opts ro = { .sz = sizeof(ro), .addr = addr,
						     .timeout_ms = cli_scaled_ms(5000) };
			snprintf(addr, sizeof(addr), "127.0.0.1:%d", fl_server_port(srv));
			pthread_create(&th, NULL, serve_thread, srv);
			res[1].err = fl_store_remote_new(&ro, &st);
			if (!res[1].err) {
				restore_from(engine, st, size, &res[1]);
				fl_store_unref(st);
			}
			fl_server_stop(srv);
			pthread_join(th, NULL);
			fl_server_free(srv);
		}
	}
	/* Redis, with a private redis-server when one is installed */
	if (!FL_HAVE_REDIS) {
		res[2].err = -EOPNOTSUPP;
	} else if (redis_local_available()) {
		struct redis_local rl;
		res[2].err = redis_local_start(&rl, "demo");
		if (!res[2].err) {
			struct fl_redis_opts ro = { .sz = sizeof(ro), .url = rl.url,
						    .timeout_ms = cli_scaled_ms(5000) };
			res[2].err = fl_redis_push(img, &ro, NULL, NULL);
			if (!res[2].err)
				res[2].err = fl_store_redis_new(&ro, &st);
			if (!res[2].err) {
				restore_from(engine, st, size, &res[2]);
				fl_store_unref(st);
			}
			redis_local_stop(&rl);
		}
	} else {
		res[2].err = -ENOENT;
	}
	printf("lazy restores of that image (background fill on, one thread touching every page):\n");
	printf("  %-24s %18s %22s  %s\n", "source", "first access", "full population", "check");
	for (int i = 0; i < 3; i++) {
		if (res[i].err) {
			bool skipped = i == 2 && (res[i].err == -ENOENT || res[i].err == -EOPNOTSUPP);

			printf("  %-24s %s\n", res[i].source,
			       !skipped ? strerror(-res[i].err) :
			       res[i].err == -ENOENT ? "skipped: redis-server is not installed" :
						       "skipped: built without Redis support (-Dredis=disabled)");
			if (!skipped)
				status = EXIT_ERR;
			continue;
		}
		fmt_ns(res[i].first_ns, a, sizeof(a));
		fmt_ns(res[i].full_ns, b, sizeof(b));
		printf("  %-24s %18s %22s  %s\n", res[i].source, a, b, res[i].mismatches ? "MISMATCH" : "ok");
		if (res[i].mismatches)
			status = EXIT_ERR;
	}
out:
	fl_image_close(img);
	unlink(path);
	if (r)
		return cli_fail("demo: image", r);
	return status;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

int cmd_demo(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 't' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	uint64_t size = DEFAULT_SIZE, nthreads = DEFAULT_THREADS, v;
	uint64_t t_start, t_full = 0, zero_expected = 0;
	const char *dir = temp_dir();
	struct fl_engine_opts eo = {
		.sz = sizeof(eo),
		.log = demo_log,
		.log_level = FL_LOG_WARN,
	};
	struct fl_region_opts ro = {
		.sz = sizeof(ro),
		.mem = FL_MEM_ANON,
		.mode = FL_MODE_MISSING,
		.flags = FL_REGION_BACKGROUND,
		.memfd = -1,
		.name = "demo",
	};
	struct fl_region_stats st = { .sz = sizeof(st) };
	struct fl_engine *engine = NULL;
	struct fl_region *region = NULL;
	struct fl_store *store = NULL;
	struct worker *workers = NULL;
	struct demo d = { 0 };
	struct progress prog;
	char tmpdir[4200] = "", path[4300] = "", a[32], b[32], c3[32];
	unsigned started = 0;
	int c, fd = -1, r, status = EXIT_ERR, dir_slot = -1;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (fl__parse_size(optarg, &v) || v < PAGE || v > (64ull << 30))
				return cli_usage_error("demo: --size wants a size from 4K to 64G (like 256M or 1G), not '%s'",
						       optarg);
			size = (v + PAGE - 1) / PAGE * PAGE;
			break;
		case 't':
			if (fl__parse_uint(optarg, 1, MAX_THREADS, &v))
				return cli_usage_error("demo: --threads wants a number from 1 to %d, not '%s'",
						       MAX_THREADS, optarg);
			nthreads = v;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'h':
			fputs(demo_usage, stdout);
			return EXIT_OK;
		default:
			if (optopt && strchr("std", optopt))
				return cli_usage_error("demo: %s needs a value", argv[optind - 1]);
			return cli_usage_error("demo: unknown option '%s' (see 'faultline demo --help')",
					       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("demo: unexpected argument '%s'", argv[optind]);

	d.npages = size / PAGE;
	d.rand_threads = (unsigned)nthreads / 2;
	d.seq_threads = (unsigned)nthreads - d.rand_threads;
	for (uint64_t p = 0; p < d.npages; p++)
		zero_expected += pattern_page_is_zero(p);

	/* 1. The image, in a temporary directory of its own. */
	/* Everything the demo writes lives in it: removed whole if interrupted. */
	r = scratch_dir(dir, "faultline-demo", tmpdir, sizeof(tmpdir), &dir_slot);
	if (r) {
		cli_error("demo: creating a temporary directory in %s: %s", dir, strerror(-r));
		tmpdir[0] = '\0';
		goto out;
	}
	snprintf(path, sizeof(path), "%s/image", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		cli_error("demo: creating %s: %s", path, strerror(errno));
		path[0] = '\0';
		goto out;
	}
	printf("faultline demo: %s image in %s, %llu threads (%u sequential, %u random)\n",
	       fmt_bytes(size, a, sizeof(a)), tmpdir, (unsigned long long)nthreads, d.seq_threads, d.rand_threads);
	fflush(stdout);
	r = write_pattern_file(fd, size, true, "writing image");
	if (r) {
		cli_error("demo: writing %s: %s", path, strerror(-r));
		goto out;
	}
	close(fd);
	fd = -1;
	r = fl_store_file_open(path, &store);
	if (r) {
		cli_fail("demo: fl_store_file_open", r);
		goto out;
	}

	/* 2. The engine and the lazy region. */
	r = fl_engine_new(&eo, &engine);
	if (r) {
		cli_fail("demo: fl_engine_new", r);
		goto out;
	}
	r = fl_engine_start(engine);
	if (r) {
		cli_fail("demo: fl_engine_start", r);
		goto out;
	}
	ro.length = size;
	ro.store = store;
	t_start = fl__now_ns();
	r = fl_region_new(engine, &ro, &region);
	if (r) {
		cli_fail("demo: fl_region_new", r);
		goto out;
	}
	d.base = fl_region_addr(region);

	/* 3. The threads, while it is restored. */
	workers = calloc(nthreads, sizeof(*workers));
	if (!workers) {
		cli_fail("demo", -ENOMEM);
		goto out;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		struct worker *w = &workers[i];

		w->d = &d;
		w->sequential = i < d.seq_threads;
		w->index = w->sequential ? i : i - d.seq_threads;
		w->seed = 0x9E3779B97F4A7C15ull * (i + 1) ^ t_start;
		if (!w->seed)
			w->seed = 1;
		r = pthread_create(&w->tid, NULL, worker_main, w);
		if (r) {
			cli_fail("demo: pthread_create", -r);
			goto join;
		}
		started++;
	}

	progress_begin(&prog, "restoring", d.npages, false);
	for (;;) {
		uint64_t resolved = fl_region_resolved_pages(region);
		uint64_t verified = atomic_load(&d.verified);
		uint64_t verify_goal = d.npages + (d.rand_threads ? (d.npages / 4 / d.rand_threads + 1) * d.rand_threads : 0);
		char extra[64];

		if (!t_full && resolved >= d.npages)
			t_full = fl__now_ns();
		snprintf(extra, sizeof(extra), "pages resolved, %.0f%% checked",
			 100.0 * (double)verified / (double)verify_goal);
		progress_update(&prog, resolved, extra);
		if (t_full && verified >= verify_goal)
			break;
		if (fl__now_ns() - t_start > cli_scaled_ms(POPULATE_TIMEOUT_MS) * 1000000ull) {
			progress_end(&prog, resolved, extra);
			cli_error("demo: not restored after %llu s: %llu of %llu pages resolved, %llu checked",
				  cli_scaled_ms(POPULATE_TIMEOUT_MS) / 1000ull, (unsigned long long)resolved,
				  (unsigned long long)d.npages, (unsigned long long)verified);
			/* Threads may be waiting on faults that will not be
			 * served: do not join them, end the process. */
			unlink(path);
			rmdir(tmpdir);
			exit(EXIT_ERR);
		}
		sleep_ms(1);
	}
	progress_end(&prog, d.npages, "pages resolved, 100% checked");
	status = EXIT_OK;
join:
	for (unsigned i = 0; i < started; i++)
		pthread_join(workers[i].tid, NULL);
	if (status != EXIT_OK)
		goto out;

	/* 4. The summary. */
	fl_region_stats(region, &st);
	printf("\n");
	printf("  %-26s %llu read, %llu write, %llu minor\n", "faults",
	       (unsigned long long)st.faults_read, (unsigned long long)st.faults_write,
	       (unsigned long long)st.faults_minor);
	printf("  %-26s %llu\n", "prefetched pages", (unsigned long long)st.pages_prefetch);
	printf("  %-26s %llu\n", "background-filled pages", (unsigned long long)st.pages_background);
	printf("  %-26s %llu huge (2 MiB), %llu 4 KiB pages\n", "moved in (UFFDIO_MOVE)",
	       (unsigned long long)st.huge_moves, (unsigned long long)st.pages_moved);
	printf("  %-26s %llu (the image has %llu; short zero runs are copied)\n", "ZEROPAGE pages", (unsigned long long)st.pages_zero,
	       (unsigned long long)zero_expected);
	printf("  %-26s %s\n", "bytes read from the store", fmt_bytes(st.bytes_read, a, sizeof(a)));
	fmt_ns(atomic_load(&d.first_access_ns) - t_start, a, sizeof(a));
	printf("  %-26s %s\n", "time to first access", a);
	fmt_ns(t_full - t_start, a, sizeof(a));
	printf("  %-26s %s\n", "time to full population", a);
	fmt_ns(st.lat_p50_ns, a, sizeof(a));
	fmt_ns(st.lat_p99_ns, b, sizeof(b));
	fmt_ns(st.lat_max_ns, c3, sizeof(c3));
	printf("  %-26s p50 %s, p99 %s, max %s (handler service time, %llu faults)\n", "fault latency", a, b, c3,
	       (unsigned long long)st.lat_count);
	fmt_ns(st.blocked_ns, a, sizeof(a));
	printf("  %-26s %s (summed over faults)\n", "blocked time", a);
	far_stats_print(stdout, &st, PAGE, "  ", 26, false);
	if (st.pages_poisoned || st.store_errors)
		printf("  %-26s %llu poisoned pages, %llu store errors\n", "errors",
		       (unsigned long long)st.pages_poisoned, (unsigned long long)st.store_errors);
	printf("\npages verified: %llu, mismatches: %llu\n", (unsigned long long)atomic_load(&d.verified),
	       (unsigned long long)atomic_load(&d.mismatches));
	fflush(stdout);
	if (atomic_load(&d.mismatches)) {
		uint64_t off = atomic_load(&d.first_bad_off) - 1;
		cli_error("demo: %llu pages do not match the image (first at byte %llu: 0x%016llx, expected 0x%016llx)",
			  (unsigned long long)atomic_load(&d.mismatches), (unsigned long long)off,
			  (unsigned long long)*(const uint64_t *)(const void *)(d.base + off),
			  (unsigned long long)pattern_expected(off, true));
		status = EXIT_ERR;
	} else if (st.pages_poisoned || st.store_errors) {
		cli_error("demo: %llu pages could not be delivered", (unsigned long long)st.pages_poisoned);
		status = EXIT_ERR;
	}
	if (status == EXIT_OK)
		status = demo_images(engine, d.base, size, tmpdir);
	if (status == EXIT_OK)
		status = demo_snapshot(d.base, size, tmpdir);
	if (status == EXIT_OK)
		status = demo_clones(d.base, size, tmpdir);
	if (status == EXIT_OK)
		status = demo_daemon();
out:
	fl_region_free(region);
	fl_engine_free(engine);
	fl_store_unref(store);
	free(workers);
	if (fd >= 0)
		close(fd);
	if (path[0])
		unlink(path);
	if (tmpdir[0])
		rmdir(tmpdir);
	cleanup_drop(dir_slot);
	return status;
}
