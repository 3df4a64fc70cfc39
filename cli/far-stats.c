// SPDX-License-Identifier: LGPL-2.1-or-later
/* Far-memory statistics of a region, for the commands that print region stats. */
#include "far-stats.h"

bool far_stats_any(const struct fl_region_stats *st)
{
	/* Not resident_pages and resident_peak alone: a region without a
	 * limit may count what it maps, and that is not far memory. */
	return st->dirty_pages || st->pages_evicted_clean || st->pages_evicted_dirty || st->pages_written_back ||
	       st->bytes_written || st->writeback_errors || st->refaults;
}

void far_stats_print(FILE *f, const struct fl_region_stats *st, size_t page_size, const char *indent,
		     int width, bool far)
{
	char a[32], b[32], c[32];

	if (!far && !far_stats_any(st))
		return;
	fprintf(f, "%s%-*s %s now, %s peak, %s dirty\n", indent, width, "far memory: resident",
		fmt_bytes(st->resident_pages * page_size, a, sizeof(a)),
		fmt_bytes(st->resident_peak * page_size, b, sizeof(b)),
		fmt_bytes(st->dirty_pages * page_size, c, sizeof(c)));
	fprintf(f, "%s%-*s %llu clean, %llu dirty (written back first)\n", indent, width, "far memory: evicted",
		(unsigned long long)st->pages_evicted_clean, (unsigned long long)st->pages_evicted_dirty);
	fprintf(f, "%s%-*s %llu pages, %s, %llu errors\n", indent, width, "far memory: written back",
		(unsigned long long)st->pages_written_back, fmt_bytes(st->bytes_written, a, sizeof(a)),
		(unsigned long long)st->writeback_errors);
	fprintf(f, "%s%-*s %llu (faults on pages evicted before)\n", indent, width, "far memory: refaults",
		(unsigned long long)st->refaults);
}

void far_stats_json(struct json *j, const char *key, const struct fl_region_stats *st, bool far)
{
	if (!far && !far_stats_any(st))
		return;
	json_begin(j, key);
	json_u64(j, "resident_pages", st->resident_pages);
	json_u64(j, "resident_peak_pages", st->resident_peak);
	json_u64(j, "dirty_pages", st->dirty_pages);
	json_u64(j, "pages_evicted_clean", st->pages_evicted_clean);
	json_u64(j, "pages_evicted_dirty", st->pages_evicted_dirty);
	json_u64(j, "pages_written_back", st->pages_written_back);
	json_u64(j, "bytes_written", st->bytes_written);
	json_u64(j, "writeback_errors", st->writeback_errors);
	json_u64(j, "refaults", st->refaults);
	json_end(j);
}
