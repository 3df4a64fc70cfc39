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
 * fl_region_new(3) for a region serving segment `index` (in another
 * process: o is FL_REGION_FOREIGN): o's memfd, store and store offset are
 * the segment's, set here. Its fills share the segment's record of which
 * pages of the page cache a fill put there (see struct fl__pcache), which
 * is what tells a page planted by a process mapping the page cache
 * without being served from one of ours. -ENOENT: no such segment.
 */
int fl__space_segment_region_new(const struct fl_space *sp, unsigned index, struct fl_engine *e,
				 const struct fl_region_opts *o, struct fl_region **ret_region);

/*
 * (lib/engine) Wait until the events the engine has read from space `id`
 * (a client's uffd) so far are handled. A client's munmap(2) returns once
 * its UNMAP event is read, not handled: a request that follows (detach,
 * then attach at the same addresses) must find the range gone from the
 * engine's index. 0, or -ENOENT (no such space).
 */
int fl__engine_events_barrier(struct fl_engine *e, int id);

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
