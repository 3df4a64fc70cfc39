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

#endif
