/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Far-memory statistics of a region (struct fl_region_stats: resident,
 * peak, dirty, evicted clean/dirty, written back, bytes written, write-back
 * errors, refaults), as the commands that print region statistics show
 * them: only when the region has far memory (any of them nonzero).
 */
#ifndef FL_CLI_FAR_STATS_H
#define FL_CLI_FAR_STATS_H

#include "util.h"

#include <faultline/region.h>

#include <stdbool.h>
#include <stdio.h>

/* True when the region evicted, wrote back or refaulted anything, or holds
 * dirty pages (resident counts alone do not say a region has far memory). */
bool far_stats_any(const struct fl_region_stats *st);
/*
 * Print the far-memory lines, each starting with `indent` and a label
 * padded to `width` columns (the caller's table), when `far` (the region
 * was made with a resident limit or write-back) or far_stats_any().
 * page_size converts page counts to bytes.
 */
void far_stats_print(FILE *f, const struct fl_region_stats *st, size_t page_size, const char *indent,
		     int width, bool far);
/*
 * The same as a JSON object named `key` (resident_pages, resident_peak_pages,
 * dirty_pages, pages_evicted_clean, pages_evicted_dirty, pages_written_back,
 * bytes_written, writeback_errors, refaults), under the same condition;
 * nothing otherwise.
 */
void far_stats_json(struct json *j, const char *key, const struct fl_region_stats *st, bool far);

#endif
