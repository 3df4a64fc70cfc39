/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Touching lazy memory from the CLI's client commands (`image restore
 * --from`, `daemon map`) and the common parts of their reports.
 *
 * A page its store or daemon could not deliver is poisoned: touching it
 * raises SIGBUS. A client command must report such pages, not die on the
 * first one, so touch_pages() catches SIGBUS, marks the page bad and goes
 * on with the next.
 */
#ifndef FL_CLI_TOUCH_H
#define FL_CLI_TOUCH_H

#include <stdint.h>
#include <stddef.h>

struct touch_result {
	uint64_t pages;			/* pages touched (every page of the range) */
	uint64_t bad;			/* pages that raised SIGBUS (poisoned: not delivered) */
	uint64_t first_bad;		/* the first of them (valid when bad > 0) */
	uint64_t first_access_ns;	/* the first touch of page 0: one demand fault, end to end */
	uint64_t ns;			/* touching every page */
};

/*
 * Read one byte of each of `pages` pages of `page_size` bytes at `mem`, in
 * order. bad_map (optional, `pages` bytes) gets 1 for each page that raised
 * SIGBUS. Only for the calling thread's own accesses: SIGBUS is restored
 * to what it was before on return.
 */
void touch_pages(const uint8_t *mem, uint64_t pages, size_t page_size, uint8_t *bad_map,
		 struct touch_result *res);

/*
 * Compare the first `pages` 4 KiB pages at `mem` with region `region` of
 * `ref`, skipping the pages bad_map marks (already reported). Returns the
 * number that differ (or cannot be read from ref), or -ENOMEM.
 */
struct fl_image;
int64_t compare_pages(struct fl_image *ref, unsigned region, const uint8_t *mem, uint64_t pages,
		      const uint8_t *bad_map);

/*
 * Write `len` bytes at `mem` to PATH atomically: a temporary file in the
 * same directory, renamed over PATH when complete, removed on an error or
 * on SIGINT/SIGTERM/SIGHUP. Returns 0 or -errno.
 */
int write_atomically(const char *path, const uint8_t *mem, uint64_t len);

#endif
