/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Templates for the layers above lib/clone (address spaces). */
#ifndef FL_CLONE_INTERNAL_H
#define FL_CLONE_INTERNAL_H

#include <faultline/clone.h>

/*
 * A MINOR region over template t at `addr` (NULL: anywhere; else
 * MAP_FIXED_NOREPLACE), its page cache filled from the template's store:
 * shared (writes go to the template's page cache) unless `flags` has
 * FL_REGION_PRIVATE (a clone). Errors of fl_region_new().
 */
int fl__template_region_new(struct fl_engine *e, const struct fl_template *t, unsigned flags, void *addr,
			    const char *name, struct fl_region **ret_region);

/*
 * A template like t (same store, offset, length, memory type and name)
 * whose page cache is `memfd` (dup'ed): a page cache some other process
 * kept while the one that made it died. Errors of fl_template_new().
 */
int fl__template_with_memfd(const struct fl_template *t, int memfd, struct fl_template **ret_template);

/* Which pages of t's page cache a fill of ours put there, shared by the
 * regions over it (region-internal.h; t keeps the reference). */
struct fl__pcache;
struct fl__pcache *fl__template_pcache(const struct fl_template *t);

/* The store t's unfilled pages come from, and its offset there (t keeps the reference). */
struct fl_store *fl__template_store(const struct fl_template *t, uint64_t *ret_offset);

#endif
