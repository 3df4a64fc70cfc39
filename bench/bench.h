/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The benchmark programs behind `faultline bench`. Each compares faultline
 * with a minimal hand-written userfaultfd handler run in the same process,
 * alternating the two (A B A B ...) and reporting medians and ratios, as the
 * machine guide asks: absolute numbers on these VMs are context only.
 *
 * Each takes its own argv (argv[0] is the benchmark's name) and returns the
 * exit code (0, 1 error, 2 usage error).
 */
#ifndef FL_BENCH_H
#define FL_BENCH_H

int bench_fault_main(int argc, char **argv);
int bench_fill_main(int argc, char **argv);
int bench_restore_main(int argc, char **argv);
int bench_watch_main(int argc, char **argv);
int bench_snapshot_main(int argc, char **argv);
int bench_clone_main(int argc, char **argv);
int bench_daemon_main(int argc, char **argv);
int bench_kv_main(int argc, char **argv);
int bench_space_main(int argc, char **argv);
int bench_far_main(int argc, char **argv);
/* cli/bench-migrate.c: in cli/ beside the relay it runs in-process. */
int bench_migrate_main(int argc, char **argv);

/* Pieces of bench/clone.c that the demo reuses. */
#include <stdbool.h>
#include <stdint.h>
/* An image of `size` bytes of pseudo-random data (no zero page). */
int clone_make_image(const char *path, uint64_t size);
/* The growth of n worker processes' Pss (MiB, summed, all alive; from
 * smaps_rollup) when each clones the image (copy: fills its own memory with
 * UFFDIO_COPY instead) and reads every page; and the Pss of just the
 * clones' (copies') mappings, which does not depend on what the workers
 * share with their parent (ret_mapped_mib, may be NULL). */
int clone_share(const char *image_path, uint64_t size, unsigned n, bool copy, double *ret_mib,
		double *ret_mapped_mib);
/* Medians over reps of "write k pages + fl_clone_reset" per second and of
 * fork + exit + wait per second (the child writes the k pages), each run
 * lasting about secs. */
int clone_reset_rates(const char *image_path, uint64_t size, uint64_t k, unsigned reps, double secs,
		      double *ret_reset, double *ret_fork);

/*
 * Pss (bytes) of a process's mappings that overlap [start, end) or map a
 * file whose name contains `name` (NULL: none) (bench/clone.c).
 */
#include <sys/types.h>
uint64_t mappings_pss(pid_t pid, uint64_t start, uint64_t end, const char *name);

/* A piece of bench/daemon.c that the demo reuses: n client processes read
 * one 256 MiB image through faultlined (template, then private copies:
 * total Pss of their mappings, MiB), then the template again with the
 * daemon killed -9 40 ms in and restarted. Every page read is checked. */
struct daemon_demo_result {
	double image_mib, tpl_pss_mib, copy_pss_mib, killed_pss_mib;
	unsigned resumed;		/* sessions the restarted daemon resumed */
};
int daemon_demo(unsigned n, struct daemon_demo_result *res);

/*
 * A faultlined of the benchmark's own (bench/daemon.c): denv_setup() finds
 * the program and makes the scratch directory (images in e->images, the
 * image file e->image), denv_start() runs it with extra arguments and waits
 * until it accepts, denv_stop() stops it, denv_remove() removes the scratch
 * directory.
 */
#include <limits.h>
struct denv {
	char dir[64];			/* /tmp/faultline-bench-daemon-XXXXXX */
	char images[96], sock[96], log[96], image[128];
	char faultlined[PATH_MAX];
	pid_t pid;			/* the running faultlined, 0 when none */
	/* Interrupted (util.h cleanup_*): faultlined is killed and the
	 * scratch directory removed whole. */
	int pid_slot, dir_slot;
};
#define DENV_IMAGE_NAME "bench.img"	/* e->image's name under e->images */
int denv_setup(struct denv *e);
int denv_start(struct denv *e, const char *const *extra);
void denv_stop(struct denv *e);
void denv_remove(struct denv *e);

/* A regular file at path that this process may execute. */
bool bench_executable_at(const char *path);
/* The first executable `name` in $PATH's directories (the usual ones when
 * PATH is unset), written to out. */
bool bench_find_in_path(const char *name, char *out, size_t len);

#endif
