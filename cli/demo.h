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

#endif
