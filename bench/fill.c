// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench fill: lazy-restore throughput of a page-cached file, from
 * region creation to the last page touched by a thread that reads one word
 * of every 4 KiB page in order (and checks it).
 *
 * A: faultline: an anonymous MISSING region over fl_store_file_open() with
 *    FL_REGION_BACKGROUND and the default prefetch, one engine with its
 *    default handler thread and background filler.
 * B: a raw baseline over the same file: a handler thread (poll + read of one
 *    message, on an O_NONBLOCK uffd like the engine's) serves a demand fault
 *    with the faulting page's 2 MiB block (pread + UFFDIO_COPY, from the
 *    faulting page to the block's end, then the block's head), or with the
 *    single page when the filler already owns that block; a filler thread
 *    preads and copies every other block in 2 MiB steps. Pages that exist
 *    already (EEXIST) are skipped.
 * Context: "eager": read the whole file into a malloc'd buffer and touch it.
 *
 * Runs alternate A B (eager) A B (eager) ...; reported are the medians and
 * min-max of GB/s, and ratio = the median over pairs of A/B.
 */
#include "bench.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u
#define BLOCK (2u << 20)
#define DEFAULT_SIZE (1ull << 30)
#define DEFAULT_PAIRS 5
#define GOAL_RATIO 0.90

static inline uint64_t FL_MIN_U64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static const char fill_usage[] =
	"Usage: faultline bench fill [--json] [--size BYTES] [--pairs N]\n"
	"\n"
	"Lazy-restore throughput: a file of SIZE pattern bytes (default 1G) is\n"
	"written to $TMPDIR (default /var/tmp) and read once so it is page-cached.\n"
	"Then, alternately:\n"
	"  faultline  an anonymous region over fl_store_file_open() with background\n"
	"             fill and the default prefetch, default engine;\n"
	"  raw        a hand-written handler: demand faults are served first with\n"
	"             the faulting page's 2 MiB block, a filler thread copies the\n"
	"             other blocks in 2 MiB steps (pread + UFFDIO_COPY);\n"
	"and, for context, eager: read(2) the file into malloc'd memory.\n"
	"Each run is timed from region creation to the last page touched by a\n"
	"thread that reads one word of every 4 KiB page in order (and checks it).\n"
	"Reported: fl_gbps, raw_gbps, eager_gbps (medians, with min and max) and\n"
	"ratio = the median over pairs of faultline / raw. Goal: ratio >= 0.90.\n"
	"\n"
	"Options:\n"
	"  --size BYTES   file and region size, e.g. 256M, 1G (default 1G)\n"
	"  --pairs N      faultline/raw pairs (default 5)\n"
	"  --json         print one JSON object\n"
	"  -h, --help     show this help\n";

/* Touch every page in order, reading one word; returns the number of wrong words. */
static uint64_t touch_all(const uint8_t *base, uint64_t size)
{
	uint64_t bad = 0;

	for (uint64_t off = 0; off < size; off += PAGE)
		bad += *(const volatile uint64_t *)(base + off) != pattern_word(off);
	return bad;
}

struct run {
	double gbps;
	uint64_t faults, prefetched, background;	/* faultline */
	uint64_t handler_blocks, single_pages, filler_blocks;	/* raw */
};

/* ---- A: faultline ----------------------------------------------------------- */

static int run_faultline(struct fl_store *store, uint64_t size, struct run *out)
{
	struct fl_engine_opts eo = { .sz = sizeof(eo) };
	struct fl_region_opts ro = {
		.sz = sizeof(ro),
		.length = size,
		.mem = FL_MEM_ANON,
		.mode = FL_MODE_MISSING,
		.flags = FL_REGION_BACKGROUND,
		.store = store,
		.memfd = -1,
		.name = "bench-fill",
	};
	struct fl_region_stats st = { .sz = sizeof(st) };
	struct fl_engine *e = NULL;
	struct fl_region *reg = NULL;
	uint64_t t0, t1, bad;
	int r;

	r = fl_engine_new(&eo, &e);
	if (r)
		return cli_fail("bench fill: fl_engine_new", r);
	r = fl_engine_start(e);
	if (r) {
		fl_engine_free(e);
		return cli_fail("bench fill: fl_engine_start", r);
	}
	t0 = fl__now_ns();
	r = fl_region_new(e, &ro, &reg);
	if (r) {
		fl_engine_free(e);
		return cli_fail("bench fill: fl_region_new", r);
	}
	bad = touch_all(fl_region_addr(reg), size);
	t1 = fl__now_ns();
	fl_region_stats(reg, &st);
	fl_region_free(reg);
	fl_engine_free(e);
	if (bad) {
		cli_error("bench fill: faultline: %llu pages with wrong bytes", (unsigned long long)bad);
		return EXIT_ERR;
	}
	out->gbps = (double)size / (double)(t1 - t0);
	out->faults = st.faults_read + st.faults_write;
	out->prefetched = st.pages_prefetch;
	out->background = st.pages_background;
	return 0;
}

/* ---- B: the raw baseline ---------------------------------------------------------- */

struct raw_fill {
	int uffd, fd;
	uint8_t *base;			/* size bytes, then the sentinel page */
	uint64_t size;
	uint8_t *sentinel;		/* touching it stops the handler */
	size_t nblocks;
	_Atomic uint8_t *claimed;	/* per 2 MiB block: someone copies (or copied) it */
	uint8_t *hbuf, *fbuf;		/* handler's and filler's read buffers */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool go;
	_Atomic int err;
	uint64_t faults, handler_blocks, single_pages;	/* handler thread only */
	uint64_t filler_blocks;				/* filler thread only */
};

static void raw_error(struct raw_fill *f, int err)
{
	int expected = 0;
	struct uffdio_range range = { (uintptr_t)f->base, f->size + PAGE };

	atomic_compare_exchange_strong(&f->err, &expected, err);
	/* Unregistering wakes every waiting thread: nothing hangs. */
	ioctl(f->uffd, UFFDIO_UNREGISTER, &range);
}

/*
 * UFFDIO_COPY [dst, dst+len) from src, skipping pages that exist already.
 * Returns 0, or -errno; *ret_exist counts the skipped pages.
 */
static int copy_skip_exist(int uffd, uint8_t *dst, const uint8_t *src, size_t len, uint64_t *ret_exist)
{
	size_t done = 0;

	while (done < len) {
		struct uffdio_copy c = {
			.dst = (uintptr_t)(dst + done),
			.src = (uintptr_t)(src + done),
			.len = len - done,
		};
		if (ioctl(uffd, UFFDIO_COPY, &c) == 0)
			return 0;
		if (c.copy > 0)
			done += (size_t)c.copy;
		if (errno == EEXIST) {
			done += PAGE;
			(*ret_exist)++;
		} else if (errno != EAGAIN) {
			return -errno;
		}
	}
	return 0;
}

static void *raw_fill_handler(void *arg)
{
	struct raw_fill *f = arg;

	for (;;) {
		struct pollfd pfd = { .fd = f->uffd, .events = POLLIN };
		uint64_t addr, off, blk, exist = 0;
		struct uffd_msg msg;
		ssize_t n;
		int r;

		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			raw_error(f, -errno);
			return NULL;
		}
		if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) {
			raw_error(f, -EIO);
			return NULL;
		}
		n = read(f->uffd, &msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n != sizeof(msg)) {
			raw_error(f, n < 0 ? -errno : -EIO);
			return NULL;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		addr = msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1);
		if (addr == (uintptr_t)f->sentinel) {
			memset(f->hbuf, 0, PAGE);
			copy_skip_exist(f->uffd, f->sentinel, f->hbuf, PAGE, &exist);
			return NULL;
		}
		off = addr - (uintptr_t)f->base;
		blk = off / BLOCK;
		f->faults++;
		if (!atomic_exchange(&f->claimed[blk], 1)) {
			/* Ours: the whole block, the faulting page first. */
			uint64_t start = blk * BLOCK, len = FL_MIN_U64(BLOCK, f->size - start);
			uint64_t head = off - start;

			r = fl__pread_full(f->fd, f->hbuf, len, start);
			if (!r)
				r = copy_skip_exist(f->uffd, f->base + off, f->hbuf + head, len - head, &exist);
			if (!r && head)
				r = copy_skip_exist(f->uffd, f->base + start, f->hbuf, head, &exist);
			f->handler_blocks++;
		} else {
			/* The filler is copying this block: just the faulting page. */
			r = fl__pread_full(f->fd, f->hbuf, PAGE, off);
			if (!r)
				r = copy_skip_exist(f->uffd, f->base + off, f->hbuf, PAGE, &exist);
			f->single_pages++;
		}
		if (r) {
			raw_error(f, r);
			return NULL;
		}
		if (exist) {
			/* The page may have been mapped by the other thread's
			 * copy, which woke the faulter; waking again is harmless. */
			struct uffdio_range range = { addr, PAGE };
			ioctl(f->uffd, UFFDIO_WAKE, &range);
		}
	}
}

static void *raw_fill_filler(void *arg)
{
	struct raw_fill *f = arg;

	pthread_mutex_lock(&f->mu);
	while (!f->go)
		pthread_cond_wait(&f->cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
	for (size_t blk = 0; blk < f->nblocks; blk++) {
		uint64_t start = blk * BLOCK, len = FL_MIN_U64(BLOCK, f->size - start), exist = 0;
		int r;

		if (atomic_load(&f->err))
			break;
		if (atomic_exchange(&f->claimed[blk], 1))
			continue;
		r = fl__pread_full(f->fd, f->fbuf, len, start);
		if (!r)
			r = copy_skip_exist(f->uffd, f->base + start, f->fbuf, len, &exist);
		if (r) {
			raw_error(f, r);
			break;
		}
		f->filler_blocks++;
	}
	return NULL;
}

static int run_raw(int fd, uint64_t size, struct run *out)
{
	struct raw_fill f = { .uffd = -1, .fd = fd, .size = size };
	pthread_t handler, filler;
	bool handler_started = false, filler_started = false;
	uint64_t t0, t1, bad = 0;
	void *p = MAP_FAILED;
	int r, status = EXIT_ERR;

	pthread_mutex_init(&f.mu, NULL);
	pthread_cond_init(&f.cv, NULL);
	f.nblocks = (size_t)((size + BLOCK - 1) / BLOCK);
	f.claimed = calloc(f.nblocks, 1);
	if (!f.claimed || posix_memalign((void **)&f.hbuf, BLOCK, BLOCK) ||
	    posix_memalign((void **)&f.fbuf, BLOCK, BLOCK)) {
		cli_fail("bench fill: raw", -ENOMEM);
		goto out;
	}
	r = fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK, &f.uffd);
	if (!r)
		r = fl_uffd_api(f.uffd, 0, NULL, NULL);
	if (r) {
		cli_fail("bench fill: raw: creating a userfaultfd", r);
		goto out;
	}
	/* Threads first, like the engine's, which exist before its region. */
	if (pthread_create(&filler, NULL, raw_fill_filler, &f)) {
		cli_fail("bench fill: raw: pthread_create", -EAGAIN);
		goto out;
	}
	filler_started = true;

	t0 = fl__now_ns();
	p = mmap(NULL, size + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		cli_fail("bench fill: raw: mmap", -errno);
		goto out;
	}
	f.base = p;
	f.sentinel = f.base + size;
	r = fl_uffd_register(f.uffd, p, size + PAGE, FL_REG_MISSING, NULL);
	if (r) {
		cli_fail("bench fill: raw: UFFDIO_REGISTER", r);
		goto out;
	}
	if (pthread_create(&handler, NULL, raw_fill_handler, &f)) {
		cli_fail("bench fill: raw: pthread_create", -EAGAIN);
		goto out;
	}
	handler_started = true;
	pthread_mutex_lock(&f.mu);
	f.go = true;
	pthread_cond_signal(&f.cv);
	pthread_mutex_unlock(&f.mu);
	bad = touch_all(f.base, size);
	t1 = fl__now_ns();
	status = EXIT_OK;
	out->gbps = (double)size / (double)(t1 - t0);
out:
	if (filler_started) {
		pthread_mutex_lock(&f.mu);
		f.go = true;
		pthread_cond_signal(&f.cv);
		pthread_mutex_unlock(&f.mu);
		pthread_join(filler, NULL);
	}
	if (handler_started) {
		(void)*(volatile uint8_t *)f.sentinel;
		pthread_join(handler, NULL);
	}
	if (p != MAP_FAILED)
		munmap(p, size + PAGE);
	if (f.uffd >= 0)
		close(f.uffd);
	free((void *)f.claimed);
	free(f.hbuf);
	free(f.fbuf);
	pthread_mutex_destroy(&f.mu);
	pthread_cond_destroy(&f.cv);
	if (status == EXIT_OK && atomic_load(&f.err))
		status = cli_fail("bench fill: raw handler", atomic_load(&f.err));
	if (status == EXIT_OK && bad) {
		cli_error("bench fill: raw: %llu pages with wrong bytes", (unsigned long long)bad);
		status = EXIT_ERR;
	}
	out->faults = f.faults;
	out->handler_blocks = f.handler_blocks;
	out->single_pages = f.single_pages;
	out->filler_blocks = f.filler_blocks;
	return status;
}

/* ---- context: eager read ---------------------------------------------------------- */

static int run_eager(int fd, uint64_t size, struct run *out)
{
	const size_t chunk = 64u << 20;
	uint64_t t0, t1, bad;
	uint8_t *buf;
	int r = 0;

	t0 = fl__now_ns();
	buf = malloc(size);
	if (!buf)
		return cli_fail("bench fill: eager: malloc", -ENOMEM);
	for (uint64_t off = 0; off < size && !r; off += chunk)
		r = fl__pread_full(fd, buf + off, (size_t)FL_MIN_U64(chunk, size - off), off);
	bad = r ? 0 : touch_all(buf, size);
	t1 = fl__now_ns();
	free(buf);
	if (r)
		return cli_fail("bench fill: eager: read", r);
	if (bad) {
		cli_error("bench fill: eager: %llu pages with wrong bytes", (unsigned long long)bad);
		return EXIT_ERR;
	}
	out->gbps = (double)size / (double)(t1 - t0);
	return 0;
}

/* ---- report ----------------------------------------------------------------------- */

/* Median over runs of one uint64_t counter of struct run, by offset. */
static uint64_t median_counter(const struct run *runs, size_t n, size_t field)
{
	uint64_t *v = malloc(n * sizeof(*v)), m;

	if (!v)
		return 0;
	for (size_t i = 0; i < n; i++)
		memcpy(&v[i], (const char *)&runs[i] + field, sizeof(*v));
	m = quantile_u64(v, n, 0.5);
	free(v);
	return m;
}
#define MEDIAN(runs, n, member) median_counter(runs, n, offsetof(struct run, member))

int bench_fill_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "size", required_argument, NULL, 's' },
		{ "pairs", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	uint64_t size = DEFAULT_SIZE, pairs = DEFAULT_PAIRS, v;
	double *fl = NULL, *raw = NULL, *eager = NULL, *ratio = NULL;
	struct run *fl_runs = NULL, *raw_runs = NULL;
	struct fl_store *store = NULL;
	struct progress prog;
	char path[4200] = "", sz[32];
	int c, fd = -1, r, status = EXIT_ERR, file_slot = -1;
	bool json = false;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 's':
			if (fl__parse_size(optarg, &v) || v < PAGE || v > (64ull << 30))
				return cli_usage_error("bench fill: --size wants a size from 4K to 64G (like 256M or 1G), not '%s'",
						       optarg);
			size = (v + PAGE - 1) / PAGE * PAGE;
			break;
		case 'p':
			if (fl__parse_uint(optarg, 1, 1000, &v))
				return cli_usage_error("bench fill: --pairs wants a number from 1 to 1000, not '%s'", optarg);
			pairs = v;
			break;
		case 'h':
			fputs(fill_usage, stdout);
			return EXIT_OK;
		default:
			if (optopt && strchr("sp", optopt))
				return cli_usage_error("bench fill: %s needs a value", argv[optind - 1]);
			return cli_usage_error("bench fill: unknown option '%s' (see 'faultline bench fill --help')",
					       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("bench fill: unexpected argument '%s'", argv[optind]);

	fl = calloc(pairs, sizeof(*fl));
	raw = calloc(pairs, sizeof(*raw));
	eager = calloc(pairs, sizeof(*eager));
	ratio = calloc(pairs, sizeof(*ratio));
	fl_runs = calloc(pairs, sizeof(*fl_runs));
	raw_runs = calloc(pairs, sizeof(*raw_runs));
	if (!fl || !raw || !eager || !ratio || !fl_runs || !raw_runs) {
		cli_fail("bench fill", -ENOMEM);
		goto out;
	}

	snprintf(path, sizeof(path), "%s/faultline-fill.XXXXXX", temp_dir());
	cleanup_block();
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		file_slot = cleanup_add_file(path);
	cleanup_unblock();
	if (fd < 0) {
		cli_error("bench fill: creating a file in %s: %s", temp_dir(), strerror(errno));
		path[0] = '\0';
		goto out;
	}
	r = write_pattern_file(fd, size, false, "writing file");
	if (r) {
		cli_error("bench fill: writing %s: %s", path, strerror(-r));
		goto out;
	}
	/* Read it once: every run then starts from the page cache. */
	{
		struct run warm;
		r = run_eager(fd, size, &warm);
		if (r)
			goto out;
	}
	r = fl_store_file_open(path, &store);
	if (r) {
		cli_fail("bench fill: fl_store_file_open", r);
		goto out;
	}

	progress_begin(&prog, "bench fill", pairs, false);
	for (uint64_t i = 0; i < pairs; i++) {
		struct run e = { 0 };

		if (run_faultline(store, size, &fl_runs[i]) || run_raw(fd, size, &raw_runs[i]) ||
		    run_eager(fd, size, &e))
			goto out;
		fl[i] = fl_runs[i].gbps;
		raw[i] = raw_runs[i].gbps;
		eager[i] = e.gbps;
		ratio[i] = fl[i] / raw[i];
		progress_update(&prog, i + 1, NULL);
	}
	progress_end(&prog, pairs, NULL);

	{
		struct stat3 sf = stat_of(fl, pairs), sr = stat_of(raw, pairs), se = stat_of(eager, pairs);
		struct stat3 sq = stat_of(ratio, pairs);

		if (json) {
			struct json j;

			json_init(&j, stdout);
			json_begin(&j, NULL);
			json_str(&j, "benchmark", "fill");
			json_str(&j, "version", fl_version());
			json_u64(&j, "size", size);
			json_u64(&j, "pairs", pairs);
			json_stat(&j, "fl_gbps", sf, 3);
			json_stat(&j, "raw_gbps", sr, 3);
			json_stat(&j, "ratio", sq, 3);
			json_stat(&j, "eager_gbps", se, 3);
			json_str(&j, "ratio_method", "median over pairs of faultline/raw");
			json_num(&j, "goal_ratio", GOAL_RATIO, 2);
			json_bool(&j, "goal_met", sq.med >= GOAL_RATIO);
			json_begin(&j, "fl_medians");
			json_u64(&j, "faults", MEDIAN(fl_runs, pairs, faults));
			json_u64(&j, "pages_prefetch", MEDIAN(fl_runs, pairs, prefetched));
			json_u64(&j, "pages_background", MEDIAN(fl_runs, pairs, background));
			json_end(&j);
			json_begin(&j, "raw_medians");
			json_u64(&j, "faults", MEDIAN(raw_runs, pairs, faults));
			json_u64(&j, "handler_blocks", MEDIAN(raw_runs, pairs, handler_blocks));
			json_u64(&j, "single_pages", MEDIAN(raw_runs, pairs, single_pages));
			json_u64(&j, "filler_blocks", MEDIAN(raw_runs, pairs, filler_blocks));
			json_end(&j);
			json_end(&j);
			json_finish(&j);
		} else {
			printf("faultline bench fill: %s page-cached file, %llu pairs; GB/s median (min-max)\n\n",
			       fmt_bytes(size, sz, sizeof(sz)), (unsigned long long)pairs);
			printf("  %-10s %6.3f  (%.3f-%.3f)   %llu faults, %llu pages prefetched, %llu background-filled\n",
			       "faultline", sf.med, sf.min, sf.max, (unsigned long long)MEDIAN(fl_runs, pairs, faults),
			       (unsigned long long)MEDIAN(fl_runs, pairs, prefetched),
			       (unsigned long long)MEDIAN(fl_runs, pairs, background));
			printf("  %-10s %6.3f  (%.3f-%.3f)   %llu faults, %llu blocks on demand, %llu single pages, %llu blocks by the filler\n",
			       "raw", sr.med, sr.min, sr.max, (unsigned long long)MEDIAN(raw_runs, pairs, faults),
			       (unsigned long long)MEDIAN(raw_runs, pairs, handler_blocks), (unsigned long long)MEDIAN(raw_runs, pairs, single_pages),
			       (unsigned long long)MEDIAN(raw_runs, pairs, filler_blocks));
			printf("  %-10s %6.3f  (%.3f-%.3f)   read(2) into malloc'd memory, for context\n", "eager",
			       se.med, se.min, se.max);
			printf("\n  ratio faultline/raw: %.3f (%.3f-%.3f); goal >= %.2f: %s\n", sq.med, sq.min, sq.max,
			       GOAL_RATIO, sq.med >= GOAL_RATIO ? "met" : "MISSED");
		}
	}
	status = EXIT_OK;
out:
	fl_store_unref(store);
	if (fd >= 0)
		close(fd);
	if (path[0]) {
		unlink(path);
		cleanup_drop(file_slot);
	}
	free(fl);
	free(raw);
	free(eager);
	free(ratio);
	free(fl_runs);
	free(raw_runs);
	return status;
}
