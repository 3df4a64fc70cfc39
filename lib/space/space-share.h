/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What faultlined needs of a space it shares between processes
 * (daemon/spaces.c): the page cache of each segment, and a way to take
 * back the page cache clients kept while an earlier faultlined died.
 * Public types only, so the daemon includes this and nothing internal.
 */
#ifndef FL_SPACE_SHARE_H
#define FL_SPACE_SHARE_H

#include <faultline/space.h>

/* The memfd of segment `index` (the space keeps it): >= 0, or -ENOENT. */
int fl__space_segment_fd(const struct fl_space *sp, unsigned index);

/*
 * What a region serving segment `index` in another process needs: the
 * page cache, and the store (with its offset) its unfilled pages come
 * from. The space keeps both. -ENOENT: no such segment.
 */
int fl__space_segment_source(const struct fl_space *sp, unsigned index, int *ret_memfd,
			     struct fl_store **ret_store, uint64_t *ret_store_offset);

/* Root `i` of the table (name: FL_SPACE_NAME_MAX + 1 bytes). -ENOENT past the end. */
int fl__space_root_at(const struct fl_space *sp, unsigned i, char *ret_name, uint64_t *ret_value);

/*
 * Make `memfd` (dup'ed; tmpfs or hugetlbfs, the segment's length) the page
 * cache of segment `index`, its unfilled pages still coming from the same
 * image: for a restarted daemon, whose clients hold the page cache with
 * their uncommitted shared writes. Only before anything maps the segment:
 * -EBUSY when the space is attached here or the segment is shared with
 * another space; -ENOENT (no such segment); errors of fl_template_new()
 * (-EINVAL: a memfd of the wrong size).
 */
int fl__space_segment_adopt(struct fl_space *sp, unsigned index, int memfd);

/*
 * What region `r` (serving segment `index` in another process, over its
 * page cache) brought into the page cache, recorded as the segment's own
 * (its filled record): a commit saves those pages from the page cache.
 * The daemon's space is never attached, so without this a hugetlb page a
 * client overwrote with zeros reads as a hole and the commit takes the
 * previous version's bytes. Call while `r` lives.
 */
struct fl_region;
void fl__space_segment_absorb(struct fl_space *sp, unsigned index, const struct fl_region *r);

#endif
