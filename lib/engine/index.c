// SPDX-License-Identifier: LGPL-2.1-or-later
/* The sorted address index of a space (see index.h). */
#include "index.h"
#include "flutil.h"

#include <errno.h>
#include <string.h>

static void *index_alloc(struct fl__index *ix, void *ptr, size_t size)
{
	return ix->alloc ? ix->alloc(ptr, size) : fl__forksafe_realloc(ptr, size);
}

void fl__index_fini(struct fl__index *ix)
{
	if (ix->alloc)
		ix->alloc(ix->entries, 0);
	else
		fl__forksafe_free(ix->entries);
	ix->entries = NULL;
	ix->n = ix->cap = 0;
}

size_t fl__index_lower(const struct fl__index *ix, uint64_t addr)
{
	size_t lo = 0, hi = ix->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ix->entries[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const struct fl__entry *fl__index_find(const struct fl__index *ix, uint64_t addr)
{
	size_t i = fl__index_lower(ix, addr);

	return i < ix->n && ix->entries[i].start <= addr ? &ix->entries[i] : NULL;
}

int fl__index_reserve(struct fl__index *ix, size_t more)
{
	struct fl__entry *n;
	size_t cap = ix->cap ? ix->cap : 16;

	if (more > SIZE_MAX / sizeof(*n) - ix->n)
		return -ENOMEM;
	if (ix->n + more <= ix->cap)
		return 0;
	while (cap < ix->n + more)
		cap = cap > SIZE_MAX / sizeof(*n) / 2 ? ix->n + more : cap * 2;
	n = index_alloc(ix, ix->entries, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	ix->entries = n;
	ix->cap = cap;
	return 0;
}

static void insert_at(struct fl__index *ix, size_t i, const struct fl__entry *ent)
{
	memmove(&ix->entries[i + 1], &ix->entries[i], (ix->n - i) * sizeof(*ent));
	ix->entries[i] = *ent;
	ix->n++;
}

static void remove_at(struct fl__index *ix, size_t i)
{
	memmove(&ix->entries[i], &ix->entries[i + 1], (ix->n - i - 1) * sizeof(ix->entries[0]));
	ix->n--;
}

int fl__index_insert(struct fl__index *ix, const struct fl__entry *ent)
{
	size_t i = fl__index_lower(ix, ent->start);
	int r;

	if (ent->end <= ent->start)
		return -EINVAL;
	if (i < ix->n && ix->entries[i].start < ent->end)
		return -EEXIST;
	r = fl__index_reserve(ix, 1);
	if (r)
		return r;
	insert_at(ix, i, ent);
	return 0;
}

int fl__index_split(struct fl__index *ix, uint64_t addr)
{
	size_t i = fl__index_lower(ix, addr);
	struct fl__entry tail;
	int r;

	if (i >= ix->n || ix->entries[i].start >= addr)
		return 0;
	r = fl__index_reserve(ix, 1);
	if (r)
		return r;
	tail = ix->entries[i];
	tail.off += addr - tail.start;
	tail.start = addr;
	ix->entries[i].end = addr;
	insert_at(ix, i + 1, &tail);
	return 0;
}

/* Entries [i, j) cover [start, end) once both bounds are boundaries. */
static void span(const struct fl__index *ix, uint64_t start, uint64_t end, size_t *ret_i, size_t *ret_j)
{
	size_t i = fl__index_lower(ix, start), j = i;

	while (j < ix->n && ix->entries[j].start < end)
		j++;
	*ret_i = i;
	*ret_j = j;
}

int fl__index_move(struct fl__index *ix, uint64_t from, uint64_t to, uint64_t len)
{
	struct fl__entry *moved;
	size_t i, j, n;
	int r;

	if (!len || from + len < from || to + len < to)
		return -EINVAL;
	/* Room for both splits first: after them, nothing below can fail
	 * but the overlap check, which is made before anything moves. */
	r = fl__index_reserve(ix, 2);
	if (r)
		return r;
	span(ix, from, from + len, &i, &j);
	n = j - i;
	if (!n)
		return 0;
	moved = fl__forksafe_calloc(n, sizeof(*moved));
	if (!moved)
		return -ENOMEM;
	/* Would the moved entries land on what stays (an entry, or the part
	 * of one outside the moved range)? Checked before anything changes. */
	for (size_t k = 0; k < ix->n; k++) {
		const struct fl__entry *e = &ix->entries[k];
		uint64_t piece[2][2] = { { e->start, FL_MIN(e->end, from) },
					 { FL_MAX(e->start, from + len), e->end } };
		for (int p = 0; p < 2; p++) {
			if (piece[p][0] < piece[p][1] && piece[p][0] < to + len && piece[p][1] > to) {
				fl__forksafe_free(moved);
				return -EEXIST;
			}
		}
	}
	fl__index_split(ix, from);
	fl__index_split(ix, from + len);
	span(ix, from, from + len, &i, &j);
	n = j - i;	/* splitting at the bounds keeps the count */
	memcpy(moved, &ix->entries[i], n * sizeof(*moved));
	memmove(&ix->entries[i], &ix->entries[j], (ix->n - j) * sizeof(*moved));
	ix->n -= n;
	for (size_t k = 0; k < n; k++) {
		moved[k].start = moved[k].start - from + to;
		moved[k].end = moved[k].end - from + to;
		insert_at(ix, fl__index_lower(ix, moved[k].start), &moved[k]);
	}
	fl__forksafe_free(moved);
	return 0;
}

int fl__index_remove_range(struct fl__index *ix, uint64_t start, uint64_t end,
			   void (*removed)(struct fl__target *t, void *ctx), void *ctx)
{
	size_t i, j;
	int r;

	if (end <= start)
		return -EINVAL;
	r = fl__index_reserve(ix, 2);
	if (r)
		return r;
	fl__index_split(ix, start);
	fl__index_split(ix, end);
	span(ix, start, end, &i, &j);
	while (j > i) {
		struct fl__target *t = ix->entries[i].target;
		remove_at(ix, i);
		j--;
		if (removed)
			removed(t, ctx);
	}
	return 0;
}

bool fl__index_has_target(const struct fl__index *ix, const struct fl__target *t)
{
	for (size_t k = 0; k < ix->n; k++)
		if (ix->entries[k].target == t)
			return true;
	return false;
}

size_t fl__index_remove_target(struct fl__index *ix, const struct fl__target *t, struct fl_range **ret)
{
	struct fl_range *ranges = NULL;
	size_t n = 0, want = 0;

	for (size_t k = 0; k < ix->n; k++)
		want += ix->entries[k].target == t;
	if (want)
		ranges = fl__forksafe_calloc(want, sizeof(*ranges));
	for (size_t k = 0; k < ix->n;) {
		if (ix->entries[k].target != t) {
			k++;
			continue;
		}
		if (ranges)
			ranges[n++] = (struct fl_range){ ix->entries[k].start,
							 ix->entries[k].end - ix->entries[k].start };
		remove_at(ix, k);
	}
	*ret = ranges;
	return n;
}
