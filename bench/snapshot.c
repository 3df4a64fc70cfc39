// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench snapshot: how long a running program is stopped to save
 * its memory, fork() against faultline's live snapshots.
 *
 * A working set (1 GiB and 4 GiB, THP off and on) is populated, and writer
 * threads keep writing random pages under a read lock, at a bounded rate
 * (like a database serving writes). Then, alternately:
 *
 *  fork     the parent's time inside fork() (its threads are stopped while
 *           the page tables are copied); the child writes the memory to a
 *           file and reports its exclusive anonymous memory before exiting:
 *           the pages the parent's writes had to copy meanwhile.
 *  cow      fl_snapshot_new() with FL_SNAPSHOT_COW; the stall is the time
 *           the writers are held (the quiesce callback takes the write
 *           lock, faultline takes the instant, the lock is released).
 *  precopy  FL_SNAPSHOT_PRECOPY: rounds while the writers run, then the
 *           final pause, measured the same way.
 *
 * Images go to $TMPDIR (default /var/tmp) without fsync and are removed.
 * ratio_best = min(cow stall, precopy stall) / fork stall.
 */
#include "bench.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define DEFAULT_REPS 3
#define DEFAULT_WRITERS 2
#define GOAL_RATIO 0.10
#define MAX_WRITERS 16

static const char snapshot_usage[] =
	"Usage: faultline bench snapshot [--json] [--sizes LIST] [--thp LIST]\n"
	"                                [--writers N] [--reps N]\n"
	"\n"
	"Stall of saving a running program's memory: fork() (the parent's time\n"
	"in fork, the child writes the memory out) against faultline's live\n"
	"snapshots, copy-on-write and precopy, while writer threads keep writing\n"
	"random pages at a bounded rate. For each size and THP setting:\n"
	"fork_stall_ms, fork_total_ms, fork_extra_mib, cow_stall_ms, cow_total_ms,\n"
	"cow_extra_mib, precopy_stall_ms, precopy_total_ms, precopy_rounds and\n"
	"ratio_best (the better faultline stall / the fork stall; goal <= 0.1).\n"
	"\n"
	"Options:\n"
	"  --sizes LIST   working-set sizes (default 1G,4G); needs about twice\n"
	"                 the largest size in free memory (image page cache)\n"
	"  --thp LIST     off, on or off,on (default off,on)\n"
	"  --writers N    writer threads (default 2)\n"
	"  --reps N       repetitions, alternating the methods (default 3)\n"
	"  --json         print one JSON object\n";

struct ws {
	uint8_t *mem;
	uint64_t npages;
	pthread_rwlock_t lock;
	_Atomic bool stop;
	_Atomic uint64_t writes;
	uint64_t t_pause, t_resume;
};

static void *writer_main(void *arg)
{
	struct ws *w = arg;
	uint64_t x = (uint64_t)(uintptr_t)&x ^ fl__now_ns();
	struct timespec nap = { 0, 200000 };

	while (!atomic_load(&w->stop)) {
		pthread_rwlock_rdlock(&w->lock);
		for (int i = 0; i < 64; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			uint64_t *p = (uint64_t *)(void *)(w->mem + (x % w->npages) * PAGE);
			p[0]++;
			p[PAGE / 8 - 1] = p[0];
		}
		pthread_rwlock_unlock(&w->lock);
		atomic_fetch_add(&w->writes, 64);
		/* Bounded rate: at most 64 pages per 200 us per writer. */
		nanosleep(&nap, NULL);
	}
	return NULL;
}

static int quiesce(bool pause, void *ctx)
{
	struct ws *w = ctx;

	if (pause) {
		pthread_rwlock_wrlock(&w->lock);
		w->t_pause = fl__now_ns();
	} else {
		w->t_resume = fl__now_ns();
		pthread_rwlock_unlock(&w->lock);
	}
	return 0;
}

struct result {
	double stall_ms, total_ms, extra_mib, rounds;
};

static int run_fork(struct ws *w, const char *path, struct result *out)
{
	int pfd[2];
	uint64_t t0, t1, extra = 0;
	pid_t parent, pid;

	if (pipe(pfd))
		return -errno;
	parent = getpid();
	t0 = fl__now_ns();
	pid = fork();
	t1 = fl__now_ns();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		cleanup_child(parent);
		/* The child: save the memory as it was at fork, then say how
		 * much memory only it holds (pages the parent has since copied). */
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		uint64_t size = w->npages * PAGE, v;
		for (uint64_t off = 0; fd >= 0 && off < size; off += 64u << 20)
			if (fl__pwrite_full(fd, w->mem + off, size - off < (64u << 20) ? size - off : (64u << 20), off))
				_exit(1);
		v = proc_kb("/proc/self/smaps_rollup", "Private_Dirty");
		if (write(pfd[1], &v, sizeof(v)) != sizeof(v))
			_exit(1);
		_exit(fd < 0);
	}
	close(pfd[1]);
	if (read(pfd[0], &extra, sizeof(extra)) != sizeof(extra))
		extra = 0;
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	out->stall_ms = (double)(t1 - t0) / 1e6;
	out->total_ms = (double)(fl__now_ns() - t0) / 1e6;
	/* The child's exclusive pages beyond the parent's: what CoW copied. */
	out->extra_mib = (double)extra / (1 << 20);
	out->rounds = 0;
	unlink(path);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static int run_faultline(struct ws *w, const char *path, enum fl_snapshot_strategy strategy, struct result *out)
{
	struct fl_range r = { (uintptr_t)w->mem, w->npages * PAGE };
	struct fl_snapshot_opts o = {
		.sz = sizeof(o),
		.strategy = strategy,
		.ranges = &r,
		.nr_ranges = 1,
		.image_flags = FL_IMAGE_NO_SYNC,
		.quiesce = quiesce,
		.quiesce_ctx = w,
		.creator = "faultline bench snapshot",
	};
	struct fl_snapshot_progress p = { .sz = sizeof(p) };
	struct fl_snapshot *s;
	uint64_t rss0 = proc_kb("/proc/self/status", "RssAnon"), t0;
	int ret;

	t0 = fl__now_ns();
	ret = fl_snapshot_new(path, &o, &s);
	if (ret)
		return ret;
	ret = fl_snapshot_start(s);
	if (!ret)
		ret = fl_snapshot_wait(s, -1, NULL);
	out->total_ms = (double)(fl__now_ns() - t0) / 1e6;
	fl_snapshot_progress(s, &p);
	out->extra_mib = (double)(int64_t)(proc_kb("/proc/self/status", "RssAnon") - rss0) / (1 << 20);
	if (out->extra_mib < 0)
		out->extra_mib = 0;
	fl_snapshot_free(s);
	out->stall_ms = (double)(w->t_resume - w->t_pause) / 1e6;
	out->rounds = p.rounds;
	unlink(path);
	return ret;
}

static int parse_list(const char *s, uint64_t *v, int max, bool thp)
{
	char buf[128], *save = NULL, *tok;
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
		if (thp) {
			if (!strcmp(tok, "off"))
				v[n++] = 0;
			else if (!strcmp(tok, "on"))
				v[n++] = 1;
			else
				return -1;
		} else if (fl__parse_size(tok, &v[n]) || v[n] < (16u << 20)) {
			return -1;
		} else {
			v[n] = v[n] / (2u << 20) * (2u << 20);
			n++;
		}
	}
	return n ? n : -1;
}

int bench_snapshot_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "sizes", required_argument, NULL, 's' },
		{ "thp", required_argument, NULL, 't' },
		{ "writers", required_argument, NULL, 'w' },
		{ "reps", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	uint64_t sizes[4] = { 1ull << 30, 4ull << 30 }, thps[2] = { 0, 1 }, reps = DEFAULT_REPS;
	uint64_t writers = DEFAULT_WRITERS, v;
	int nsizes = 2, nthp = 2, c, ret = 0, dir_slot;
	bool json = false;
	char dir[4096], path[4200];
	struct json j;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 's':
			nsizes = parse_list(optarg, sizes, 4, false);
			if (nsizes < 0)
				return cli_usage_error("bench snapshot: --sizes wants sizes of 16M or more, like 1G,4G");
			break;
		case 't':
			nthp = parse_list(optarg, thps, 2, true);
			if (nthp < 0)
				return cli_usage_error("bench snapshot: --thp wants off, on or off,on");
			break;
		case 'w':
			if (fl__parse_uint(optarg, 1, MAX_WRITERS, &v))
				return cli_usage_error("bench snapshot: --writers wants 1-%d", MAX_WRITERS);
			writers = v;
			break;
		case 'r':
			if (fl__parse_uint(optarg, 1, 100, &v))
				return cli_usage_error("bench snapshot: --reps wants 1-100");
			reps = v;
			break;
		case 'h':
			fputs(snapshot_usage, stdout);
			return EXIT_OK;
		default:
			return cli_usage_error("bench snapshot: unknown option '%s'", argv[optind - 1]);
		}
	}
	/* A scratch directory: the image writer's temporary files land beside
	 * the image, and an interrupted run removes the directory whole. */
	ret = scratch_dir(temp_dir(), "faultline-bench-snapshot", dir, sizeof(dir), &dir_slot);
	if (ret)
		return cli_fail(temp_dir(), ret);
	snprintf(path, sizeof(path), "%s/snapshot.img", dir);
	if (json) {
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "benchmark", "snapshot");
		json_str(&j, "version", fl_version());
		json_u64(&j, "writers", writers);
		json_u64(&j, "reps", reps);
	} else {
		printf("bench snapshot: %llu writers, %llu reps\n", (unsigned long long)writers, (unsigned long long)reps);
	}
	for (int si = 0; si < nsizes && !ret; si++) {
		for (int ti = 0; ti < nthp && !ret; ti++) {
			struct ws w = { .npages = sizes[si] / PAGE };
			struct result *fk = calloc(reps, sizeof(*fk)), *cw = calloc(reps, sizeof(*cw)),
				      *pc = calloc(reps, sizeof(*pc));
			double a[8][100];
			pthread_t th[MAX_WRITERS];
			char key[64];

			w.mem = mmap(NULL, sizes[si], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (w.mem == MAP_FAILED || !fk || !cw || !pc) {
				ret = -ENOMEM;
				break;
			}
			madvise(w.mem, sizes[si], thps[ti] ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
			for (uint64_t p = 0; p < w.npages; p++)
				w.mem[p * PAGE] = 1;
			pthread_rwlock_init(&w.lock, NULL);
			for (unsigned i = 0; i < writers; i++)
				pthread_create(&th[i], NULL, writer_main, &w);
			for (uint64_t r = 0; r < reps && !ret; r++) {
				ret = run_fork(&w, path, &fk[r]);
				if (!ret)
					ret = run_faultline(&w, path, FL_SNAPSHOT_COW, &cw[r]);
				if (!ret)
					ret = run_faultline(&w, path, FL_SNAPSHOT_PRECOPY, &pc[r]);
			}
			atomic_store(&w.stop, true);
			for (unsigned i = 0; i < writers; i++)
				pthread_join(th[i], NULL);
			if (!ret) {
				for (uint64_t r = 0; r < reps; r++) {
					a[0][r] = fk[r].stall_ms;
					a[1][r] = fk[r].total_ms;
					a[2][r] = fk[r].extra_mib;
					a[3][r] = cw[r].stall_ms;
					a[4][r] = cw[r].total_ms;
					a[5][r] = cw[r].extra_mib;
					a[6][r] = pc[r].stall_ms;
					a[7][r] = pc[r].total_ms;
				}
				struct stat3 fs = stat_of(a[0], reps), cs = stat_of(a[3], reps), ps = stat_of(a[6], reps);
				double best = (cs.med < ps.med ? cs.med : ps.med) / fs.med;
				double rounds[100];
				for (uint64_t r = 0; r < reps; r++)
					rounds[r] = pc[r].rounds;
				snprintf(key, sizeof(key), "%llug_thp_%s", (unsigned long long)(sizes[si] >> 30),
					 thps[ti] ? "on" : "off");
				if (sizes[si] < (1ull << 30))
					snprintf(key, sizeof(key), "%llum_thp_%s", (unsigned long long)(sizes[si] >> 20),
						 thps[ti] ? "on" : "off");
				if (json) {
					json_begin(&j, key);
					json_u64(&j, "size", sizes[si]);
					json_bool(&j, "thp", thps[ti]);
					json_stat(&j, "fork_stall_ms", fs, 3);
					json_stat(&j, "fork_total_ms", stat_of(a[1], reps), 1);
					json_stat(&j, "fork_extra_mib", stat_of(a[2], reps), 1);
					json_stat(&j, "cow_stall_ms", cs, 3);
					json_stat(&j, "cow_total_ms", stat_of(a[4], reps), 1);
					json_stat(&j, "cow_extra_mib", stat_of(a[5], reps), 1);
					json_stat(&j, "precopy_stall_ms", ps, 3);
					json_stat(&j, "precopy_total_ms", stat_of(a[7], reps), 1);
					json_stat(&j, "precopy_rounds", stat_of(rounds, reps), 1);
					json_num(&j, "ratio_best", best, 4);
					json_bool(&j, "goal_met", best <= GOAL_RATIO);
					json_u64(&j, "writes", atomic_load(&w.writes));
					json_end(&j);
				} else {
					printf("  %s: fork stall %.2f ms (total %.0f ms, CoW copies %.1f MiB); "
					       "cow stall %.3f ms (total %.0f ms, +%.1f MiB); precopy stall %.3f ms "
					       "(total %.0f ms, %.0f rounds); ratio_best %.4f (goal <= %.2f)\n",
					       key, fs.med, stat_of(a[1], reps).med, stat_of(a[2], reps).med, cs.med,
					       stat_of(a[4], reps).med, stat_of(a[5], reps).med, ps.med,
					       stat_of(a[7], reps).med, stat_of(rounds, reps).med, best, GOAL_RATIO);
					fflush(stdout);
				}
			}
			munmap(w.mem, sizes[si]);
			free(fk);
			free(cw);
			free(pc);
		}
	}
	unlink(path);
	rmdir(dir);
	cleanup_drop(dir_slot);
	if (ret)
		return cli_fail("bench snapshot", ret);
	if (json) {
		json_num(&j, "goal_ratio_best", GOAL_RATIO, 2);
		json_end(&j);
		json_finish(&j);
	}
	return EXIT_OK;
}
