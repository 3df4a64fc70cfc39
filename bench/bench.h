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

#endif
