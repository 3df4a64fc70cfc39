/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The address index of one space: sorted, non-overlapping entries, each a
 * range of addresses served by an opaque target (lib/engine/engine-internal.h)
 * from byte `off` of it. REMAP and UNMAP split entries, so one target may
 * own several. Not locked: the engine holds its lock around every call.
 *
 * Every operation that changes the index either completes or returns
 * -errno with the index unchanged: a half-applied REMAP or fork would leave
 * memory that no target serves.
 */
#ifndef FL_ENGINE_INDEX_H
#define FL_ENGINE_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fl__target;
struct fl_range;

struct fl__entry {
	uint64_t start, end;
	struct fl__target *target;
	uint64_t off;			/* target byte at `start` */
};

struct fl__index {
	struct fl__entry *entries;	/* sorted by start, non-overlapping */
	size_t n, cap;
	/* realloc(3)-like, (ptr, 0) frees; NULL: fl__forksafe_realloc.
	 * Tests inject allocation failures here. */
	void *(*alloc)(void *ptr, size_t size);
};

void fl__index_fini(struct fl__index *ix);
/* Position of the first entry whose end is > addr. */
size_t fl__index_lower(const struct fl__index *ix, uint64_t addr);
/* The entry holding addr, or NULL. */
const struct fl__entry *fl__index_find(const struct fl__index *ix, uint64_t addr);
/* Room for `more` entries, so that the inserts that follow cannot fail. */
int fl__index_reserve(struct fl__index *ix, size_t more);
/* -EEXIST: overlaps an entry; -ENOMEM. */
int fl__index_insert(struct fl__index *ix, const struct fl__entry *ent);
/* Make addr an entry boundary (no-op if it is one, or in no entry). */
int fl__index_split(struct fl__index *ix, uint64_t addr);
/* REMAP: the entries of [from, from+len) now start at `to`. -EEXIST if
 * that lands on other entries. */
int fl__index_move(struct fl__index *ix, uint64_t from, uint64_t to, uint64_t len);
/* UNMAP: drop [start, end), cutting entries at the bounds. `removed` is
 * called for each dropped piece's target after the index is consistent. */
int fl__index_remove_range(struct fl__index *ix, uint64_t start, uint64_t end,
			   void (*removed)(struct fl__target *t, void *ctx), void *ctx);
/* Drop every entry of `t`. The ranges they covered go to *ret (malloc'd
 * with fl__forksafe_calloc, caller frees; best effort: fewer if memory is
 * short). Returns how many ranges *ret holds. */
size_t fl__index_remove_target(struct fl__index *ix, const struct fl__target *t, struct fl_range **ret);
bool fl__index_has_target(const struct fl__index *ix, const struct fl__target *t);

#endif
