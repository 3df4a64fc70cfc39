// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The engine's address index (lib/engine/index.c) alone: ordering, lookup,
 * splits, REMAP moves, UNMAP cuts, and allocation failures injected through
 * the index's allocator, which must leave the index exactly as it was (a
 * half-applied REMAP once lost entries: memory nobody served).
 */
#include "harness.h"
#include "flutil.h"
#include "index.h"

#include <stdlib.h>

/* Targets are opaque to the index: any distinct addresses do. */
static char ta, tb, tc;
#define TA ((struct fl__target *)&ta)
#define TB ((struct fl__target *)&tb)
#define TC ((struct fl__target *)&tc)

/* An allocator that fails after `budget` more calls (frees always work). */
struct budget {
	int left;
};
static struct budget *cur_budget;

static void *budget_alloc(void *ptr, size_t size)
{
	if (!size) {
		free(ptr);
		return NULL;
	}
	if (cur_budget && cur_budget->left-- <= 0)
		return NULL;
	return realloc(ptr, size);
}

static void add(struct fl__index *ix, uint64_t start, uint64_t end, struct fl__target *t, uint64_t off)
{
	struct fl__entry e = { start, end, t, off };
	T_OK(fl__index_insert(ix, &e));
}

static void expect(const struct fl__index *ix, size_t i, uint64_t start, uint64_t end, struct fl__target *t,
		   uint64_t off)
{
	T_ASSERT(i < ix->n, "entry %zu of %zu", i, ix->n);
	T_ASSERT_EQ(ix->entries[i].start, start);
	T_ASSERT_EQ(ix->entries[i].end, end);
	T_ASSERT(ix->entries[i].target == t, "entry %zu target", i);
	T_ASSERT_EQ(ix->entries[i].off, off);
}

static int test_insert_find(void *arg)
{
	struct fl__index ix = { 0 };
	struct fl__entry e = { 0x1800, 0x2800, TC, 0 };

	(void)arg;
	add(&ix, 0x3000, 0x4000, TB, 0);
	add(&ix, 0x1000, 0x2000, TA, 0);
	T_ASSERT_EQ(fl__index_insert(&ix, &e), -EEXIST);
	e = (struct fl__entry){ 0x2000, 0x2000, TC, 0 };
	T_ASSERT_EQ(fl__index_insert(&ix, &e), -EINVAL);
	T_ASSERT_EQ(ix.n, 2);
	expect(&ix, 0, 0x1000, 0x2000, TA, 0);
	expect(&ix, 1, 0x3000, 0x4000, TB, 0);
	T_ASSERT(fl__index_find(&ix, 0x1fff)->target == TA);
	T_ASSERT(fl__index_find(&ix, 0x3000)->target == TB);
	T_ASSERT(fl__index_find(&ix, 0x2000) == NULL);
	T_ASSERT(fl__index_find(&ix, 0x4000) == NULL);
	T_ASSERT(fl__index_find(&ix, 0xfff) == NULL);
	/* many entries: grows, stays sorted */
	for (uint64_t k = 100; k > 10; k--)
		add(&ix, k << 16, (k << 16) + 0x1000, TC, k);
	for (size_t i = 1; i < ix.n; i++)
		T_ASSERT(ix.entries[i - 1].end <= ix.entries[i].start);
	T_ASSERT_EQ(fl__index_find(&ix, (50 << 16) + 5)->off, 50);
	fl__index_fini(&ix);
	return T_PASS;
}

static int test_split_move(void *arg)
{
	struct fl__index ix = { 0 };

	(void)arg;
	add(&ix, 0x10000, 0x20000, TA, 0);
	T_OK(fl__index_split(&ix, 0x14000));
	T_OK(fl__index_split(&ix, 0x14000));	/* a boundary already */
	T_OK(fl__index_split(&ix, 0x90000));	/* in no entry */
	T_ASSERT_EQ(ix.n, 2);
	expect(&ix, 1, 0x14000, 0x20000, TA, 0x4000);
	/* mremap of the middle of the region: [0x12000, 0x16000) -> 0x50000 */
	T_OK(fl__index_move(&ix, 0x12000, 0x50000, 0x4000));
	T_ASSERT_EQ(ix.n, 4);
	expect(&ix, 0, 0x10000, 0x12000, TA, 0);
	expect(&ix, 1, 0x16000, 0x20000, TA, 0x6000);
	expect(&ix, 2, 0x50000, 0x52000, TA, 0x2000);
	expect(&ix, 3, 0x52000, 0x54000, TA, 0x4000);
	T_ASSERT(fl__index_find(&ix, 0x13000) == NULL);
	/* onto entries that stay: refused, nothing changed */
	add(&ix, 0x60000, 0x61000, TB, 0);
	T_ASSERT_EQ(fl__index_move(&ix, 0x50000, 0x5e000, 0x4000), -EEXIST);
	T_ASSERT_EQ(ix.n, 5);
	expect(&ix, 2, 0x50000, 0x52000, TA, 0x2000);
	fl__index_fini(&ix);
	return T_PASS;
}

struct removed_log {
	int n;
	struct fl__target *last;
};

static void on_removed(struct fl__target *t, void *ctx)
{
	struct removed_log *l = ctx;
	l->n++;
	l->last = t;
}

static int test_remove(void *arg)
{
	struct fl__index ix = { 0 };
	struct removed_log log = { 0 };
	struct fl_range *ranges;
	size_t n;

	(void)arg;
	add(&ix, 0x10000, 0x20000, TA, 0);
	add(&ix, 0x20000, 0x30000, TB, 0);
	T_OK(fl__index_remove_range(&ix, 0x18000, 0x24000, on_removed, &log));
	T_ASSERT_EQ(log.n, 2);
	T_ASSERT_EQ(ix.n, 2);
	expect(&ix, 0, 0x10000, 0x18000, TA, 0);
	expect(&ix, 1, 0x24000, 0x30000, TB, 0x4000);
	T_ASSERT(fl__index_has_target(&ix, TA));
	T_OK(fl__index_split(&ix, 0x12000));
	n = fl__index_remove_target(&ix, TA, &ranges);
	T_ASSERT_EQ(n, 2);
	T_ASSERT_EQ(ranges[0].start, 0x10000);
	T_ASSERT_EQ(ranges[0].len, 0x2000);
	T_ASSERT_EQ(ranges[1].start, 0x12000);
	T_ASSERT_EQ(ranges[1].len, 0x6000);
	fl__forksafe_free(ranges);
	T_ASSERT(!fl__index_has_target(&ix, TA));
	T_ASSERT_EQ(ix.n, 1);
	fl__index_fini(&ix);
	return T_PASS;
}

/*
 * Every change under a failing allocator returns -ENOMEM and leaves the
 * index as it was; with room reserved first, the same changes succeed
 * without allocating.
 */
static int test_alloc_failure(void *arg)
{
	struct fl__index ix = { .alloc = budget_alloc };
	struct budget none = { 0 };
	struct fl__entry e = { 0x90000, 0x91000, TC, 0 };

	(void)arg;
	add(&ix, 0x10000, 0x20000, TA, 0);
	for (uint64_t k = 1; k < 16; k++)
		add(&ix, 0x100000 * k, 0x100000 * k + 0x1000, TB, 0);
	T_ASSERT_EQ(ix.n, ix.cap);	/* full: the next entry allocates */
	cur_budget = &none;
	T_ASSERT_EQ(fl__index_insert(&ix, &e), -ENOMEM);
	T_ASSERT_EQ(fl__index_split(&ix, 0x14000), -ENOMEM);
	T_ASSERT_EQ(fl__index_move(&ix, 0x12000, 0x50000, 0x4000), -ENOMEM);
	T_ASSERT_EQ(fl__index_remove_range(&ix, 0x12000, 0x14000, NULL, NULL), -ENOMEM);
	T_ASSERT_EQ(fl__index_reserve(&ix, 1), -ENOMEM);
	T_ASSERT_EQ(ix.n, 16);
	expect(&ix, 0, 0x10000, 0x20000, TA, 0);
	T_ASSERT(fl__index_find(&ix, 0x13000)->target == TA);
	T_ASSERT(fl__index_find(&ix, 0x50000) == NULL);
	/* with room reserved, nothing allocates */
	cur_budget = NULL;
	T_OK(fl__index_reserve(&ix, 4));
	cur_budget = &none;
	T_OK(fl__index_move(&ix, 0x12000, 0x50000, 0x4000));
	T_OK(fl__index_insert(&ix, &e));
	T_ASSERT(fl__index_find(&ix, 0x51000)->target == TA);
	T_ASSERT_EQ(fl__index_find(&ix, 0x51000)->off, 0x2000);
	T_ASSERT_EQ(fl__index_reserve(&ix, SIZE_MAX / 2), -ENOMEM);
	cur_budget = NULL;
	fl__index_fini(&ix);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "insert_find", test_insert_find, NULL, 0 },
	{ "split_move", test_split_move, NULL, 0 },
	{ "remove", test_remove, NULL, 0 },
	{ "alloc_failure", test_alloc_failure, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, FL_ARRAY_SIZE(cases));
}
