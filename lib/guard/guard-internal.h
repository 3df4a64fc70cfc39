/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef FL_GUARD_INTERNAL_H
#define FL_GUARD_INTERNAL_H

#include "kernel.h"

/* Replace the ranges a guard poisons (the client adds ranges). */
int fl__guard_set_ranges(struct fl_guard *g, const struct fl_range *ranges, unsigned n);
/* Free a guard inherited through fork(2): its thread is not in this process. */
void fl__guard_forget(struct fl_guard *g);

#endif
