/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The parts of `faultline demo` that live in their own files. */
#ifndef FL_CLI_DEMO_H
#define FL_CLI_DEMO_H

#include <stdint.h>

/*
 * Live snapshots of a copy of `src` (size bytes) while threads write it:
 * COW stall beside fork()'s, then an incremental snapshot. Images go to
 * `dir` and are removed. Returns an exit code.
 */
int demo_snapshot(const uint8_t *src, uint64_t size, const char *dir);

/*
 * Copy-on-write clones of an image of `src`: 8 clones' total Pss beside 8
 * private copies, a reset loop beside fork(), a cold start with and without
 * a working set. The image goes to `dir` and is removed. Exit code.
 */
int demo_clones(const uint8_t *src, uint64_t size, const char *dir);

/*
 * faultlined serving 8 client processes from one image: their Pss through
 * the template beside private copies, then a kill -9 and restart of the
 * daemon while they read. Exit code.
 */
int demo_daemon(void);

#endif
