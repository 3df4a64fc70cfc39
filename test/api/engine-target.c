// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The engine alone, with a trivial target instead of a region: a target
 * that fills each page with a pattern through the engine's ops table. It
 * checks that the engine dispatches faults to the target that owns the
 * address (at the right offset, after REMAP too), delivers REMOVE / REMAP /
 * UNMAP to it, asks it for background fill, sums its statistics, and frees
 * it with the engine. Nothing here knows what a region is.
 */
#include "util.h"
#include "engine-internal.h"

#define PAGES 64
#define PSZ 4096ul

struct pattern_target {
	struct fl__target t;		/* first: the engine's part */
	struct fl_engine *e;
	_Atomic unsigned faults, discards, moves, fill_steps, frees;
	_Atomic uint64_t discard_off, discard_len, moved_to;
};

static uint8_t pattern(uint64_t page)
{
	return (uint8_t)(page * 7 + 0x5a);
}

static void pt_fault(struct fl__target *t, const struct fl__entry *ent, const struct uffd_msg *msg, uint64_t t0,
		     struct fl__worker *w)
{
	struct pattern_target *pt = (struct pattern_target *)t;
	uint64_t addr = msg->arg.pagefault.address & ~(PSZ - 1);
	uint64_t page = (addr - ent->start + ent->off) / PSZ;
	int r;

	(void)t0;
	/* Counted before the copy wakes the faulting thread. */
	atomic_fetch_add(&pt->faults, 1);
	/* The engine's per-thread scratch buffer is ours to use. */
	T_ASSERT(fl__worker_reserve(w, PSZ) == 0);
	memset(w->buf, pattern(page), PSZ);
	r = fl_uffd_copy(t->space->uffd, (void *)(uintptr_t)addr, w->buf, PSZ, 0, NULL);
	if (r == -EEXIST)
		fl_uffd_wake(t->space->uffd, (void *)(uintptr_t)addr, PSZ);
}

static void pt_discard(struct fl__target *t, uint64_t off, uint64_t len)
{
	struct pattern_target *pt = (struct pattern_target *)t;

	atomic_store(&pt->discard_off, off);
	atomic_store(&pt->discard_len, len);
	atomic_fetch_add(&pt->discards, 1);
}

static void pt_moved(struct fl__target *t, uint64_t addr)
{
	struct pattern_target *pt = (struct pattern_target *)t;

	atomic_store(&pt->moved_to, addr);
	atomic_fetch_add(&pt->moves, 1);
}

static struct fl__target *pt_fork(struct fl__target *t, struct fl__space *child)
{
	(void)t;
	(void)child;
	return NULL;
}

static int pt_fill_step(struct fl__target *t, struct fl__worker *w)
{
	(void)w;
	atomic_fetch_add(&((struct pattern_target *)t)->fill_steps, 1);
	return 0;	/* done: the engine asks no more */
}

static int pt_populate(struct fl__target *t)
{
	(void)t;
	return 0;
}

static int64_t pt_poison(struct fl__target *t)
{
	(void)t;
	return 0;
}

static void pt_stats(const struct fl__target *t, struct fl__target_stats *st)
{
	struct pattern_target *pt = (struct pattern_target *)t;

	st->faults += atomic_load(&pt->faults);
	st->pages_resolved += atomic_load(&pt->faults);
	st->bytes_read += 3;
}

static void pt_free(struct fl__target *t)
{
	struct pattern_target *pt = (struct pattern_target *)t;
	struct fl_range *ranges = NULL;

	fl__engine_remove_target(pt->e, t, &ranges);
	fl__forksafe_free(ranges);
	atomic_fetch_add(&pt->frees, 1);
}

static void pt_destroy(struct fl__target *t)
{
	(void)t;
}

static const struct fl__target_ops pattern_ops = {
	.fault = pt_fault, .discard = pt_discard, .moved = pt_moved, .fork = pt_fork,
	.fill_step = pt_fill_step, .populate = pt_populate, .poison_unresolved = pt_poison,
	.stats = pt_stats, .free = pt_free, .destroy = pt_destroy,
};

static void check_pages(const uint8_t *p, uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n; i++)
		for (size_t k = 0; k < PSZ; k += 512)
			T_ASSERT(p[i * PSZ + k] == pattern(i), "page %llu byte %zu: 0x%x", (unsigned long long)i, k,
				 p[i * PSZ + k]);
}

static uint64_t remaps(struct fl_engine *e)
{
	struct fl_engine_stats es = { .sz = sizeof(es) };

	T_OK(fl_engine_stats(e, &es));
	return es.events_remap;
}

static int c_pattern_target(void *arg)
{
	struct fl_engine_stats es = { .sz = sizeof(es) };
	struct fl_space_stats ss = { .sz = sizeof(ss) };
	static struct pattern_target pt;
	struct fl_engine *e;
	uint8_t *p, *q;
	(void)arg;

	t_require(fl_features_from_uffd(UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_UNMAP));
	e = u_engine(0, 1);
	p = mmap(NULL, PAGES * PSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(p != MAP_FAILED);
	fl__madvise(p, PAGES * PSZ, MADV_NOHUGEPAGE);
	T_OK(fl_uffd_register(fl_engine_fd(e), p, PAGES * PSZ, FL_REG_MISSING, NULL));
	pt = (struct pattern_target){ .e = e };
	pt.t.ops = &pattern_ops;
	pt.t.space = fl__engine_space(e, 0);
	pt.t.flags = FL__TARGET_FILL | FL__TARGET_LOCAL;
	T_OK(fl__engine_add_target(e, &pt.t, (uintptr_t)p, PAGES * PSZ));
	/* A second target over the same addresses is refused. */
	T_ASSERT_EQ(fl__engine_add_target(e, &pt.t, (uintptr_t)p + PSZ, PSZ), -EEXIST);

	/* Faults: one per page, each served by the target with its pattern. */
	check_pages(p, 0, PAGES);
	T_ASSERT_EQ(atomic_load(&pt.faults), PAGES);
	T_OK(fl_engine_stats(e, &es));
	T_ASSERT_EQ(es.faults, PAGES);
	T_ASSERT_EQ(es.unowned_faults, 0);
	/* Statistics: the space's are what the target reports. */
	T_OK(fl_engine_space_stats(e, 0, &ss));
	T_ASSERT_EQ(ss.regions, 1);
	T_ASSERT_EQ(ss.faults, PAGES);
	T_ASSERT_EQ(ss.pages_resolved, PAGES);
	T_ASSERT_EQ(ss.bytes_read, 3);
	T_ASSERT_EQ(ss.bytes, PAGES * PSZ);
	/* Background fill: asked once, then marked done by the engine. */
	T_ASSERT(T_WAIT_FOR(atomic_load(&pt.fill_steps) == 1, 5000), "atomic_load(&pt.fill_steps) == 1");
	t_sleep_ms(50);
	T_ASSERT_EQ(atomic_load(&pt.fill_steps), 1);

	/* REMOVE: the target hears which of its bytes went. */
	T_ASSERT(madvise(p + 8 * PSZ, 8 * PSZ, MADV_DONTNEED) == 0);
	T_ASSERT(T_WAIT_FOR(atomic_load(&pt.discards) == 1, 5000), "atomic_load(&pt.discards) == 1");
	T_ASSERT_EQ(atomic_load(&pt.discard_off), 8 * PSZ);
	T_ASSERT_EQ(atomic_load(&pt.discard_len), 8 * PSZ);
	check_pages(p, 8, 1);
	T_ASSERT_EQ(atomic_load(&pt.faults), PAGES + 1);

	/* REMAP of the second half: faults there come at the moved address
	 * with the target's offset; the target hears nothing of byte 0 moving. */
	q = mmap(NULL, PAGES * PSZ, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(q != MAP_FAILED);
	T_ASSERT(mremap(p + 32 * PSZ, 32 * PSZ, 32 * PSZ, MREMAP_MAYMOVE | MREMAP_FIXED, q) == q);
	T_ASSERT(T_WAIT_FOR(remaps(e) == 1, 5000), "remaps(e) == 1");
	T_ASSERT_EQ(atomic_load(&pt.moves), 0);
	T_ASSERT(madvise(q, 4 * PSZ, MADV_DONTNEED) == 0);
	T_ASSERT(T_WAIT_FOR(atomic_load(&pt.discards) == 2, 5000), "atomic_load(&pt.discards) == 2");
	T_ASSERT_EQ(atomic_load(&pt.discard_off), 32 * PSZ);
	for (uint64_t i = 0; i < 4; i++)
		T_ASSERT(q[i * PSZ] == pattern(32 + i), "moved page %llu", (unsigned long long)i);
	T_ASSERT_EQ(atomic_load(&pt.faults), PAGES + 5);
	/* REMAP of the first half, byte 0 included: the target is told. */
	T_ASSERT(mremap(p, 32 * PSZ, 32 * PSZ, MREMAP_MAYMOVE | MREMAP_FIXED, q + 32 * PSZ) == q + 32 * PSZ);
	T_ASSERT(T_WAIT_FOR(atomic_load(&pt.moves) == 1, 5000), "atomic_load(&pt.moves) == 1");
	T_ASSERT(atomic_load(&pt.moved_to) == (uintptr_t)q + 32 * PSZ);
	T_OK(fl_engine_space_stats(e, 0, &ss));
	T_ASSERT_EQ(ss.bytes, PAGES * PSZ);

	/* UNMAP of everything: the target is dead, still the engine's. */
	T_ASSERT(munmap(q, PAGES * PSZ) == 0);
	T_ASSERT(T_WAIT_FOR(atomic_load(&pt.t.dead), 5000), "atomic_load(&pt.t.dead)");
	T_OK(fl_engine_space_stats(e, 0, &ss));
	T_ASSERT_EQ(ss.bytes, 0);
	T_ASSERT_EQ(ss.regions, 1);
	T_ASSERT_EQ(atomic_load(&pt.frees), 0);
	fl_engine_free(e);
	T_ASSERT_EQ(atomic_load(&pt.frees), 1);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "pattern-target", c_pattern_target, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
