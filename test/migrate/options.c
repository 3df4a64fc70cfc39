// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Migration options over TCP on 127.0.0.1 (peer.h does the migration and
 * the checks): the destination placing ranges elsewhere (place), UFFDIO_MOVE
 * installs of anonymous pages (and the COPY fallback under
 * FAULTLINE_MASK_FEATURES), and the source's precopy time limit.
 */
#include "peer.h"

#include <sys/mman.h>
#include <unistd.h>

#define LEN (8u << 20)

/* One address slot per case: far from where mmap places things. */
#define SLOT(n) (0x5d0000000000ull + (uint64_t)(n) * (256ull << 20))

#define PLACE(n, m, where, err) \
	{ .mode = FL_MIGRATE_HYBRID, .mem = (m), .len = LEN, .addr = SLOT(n), .place = (where), .expect = (err) }

static const struct mig_case c_place_anon = PLACE(0, FL_MEM_ANON, PLACE_RELOCATE, 0);
static const struct mig_case c_place_shmem = PLACE(1, FL_MEM_SHMEM, PLACE_RELOCATE, 0);
static const struct mig_case c_place_hugetlb = PLACE(2, FL_MEM_HUGETLB, PLACE_RELOCATE, 0);
/* With MOVE installs of the anonymous range, at its new address. */
static const struct mig_case c_place_mixed = {
	.mode = FL_MIGRATE_HYBRID, .mem = MIG_MIXED, .len = LEN, .addr = SLOT(3), .place = PLACE_RELOCATE,
	.move = true,
};
static const struct mig_case c_place_anywhere = PLACE(4, MIG_MIXED, PLACE_ANYWHERE, 0);
static const struct mig_case c_place_in_use = PLACE(5, MIG_MIXED, PLACE_IN_USE, -EEXIST);
static const struct mig_case c_place_misaligned = PLACE(6, MIG_MIXED, PLACE_MISALIGNED, -EINVAL);
/* Every page on demand, at the new addresses: faults there are served. */
static const struct mig_case c_place_ondemand = {
	.mode = FL_MIGRATE_POSTCOPY, .mem = MIG_MIXED, .len = LEN, .addr = SLOT(7), .place = PLACE_RELOCATE,
	.src_flags = FL_MIGRATE_NO_PUSH, .move = true,
};
/* The source killed after switchover, ranges placed: SIGBUS at the new
 * addresses. */
static const struct mig_case c_place_killed = {
	.mode = FL_MIGRATE_POSTCOPY, .mem = MIG_MIXED, .len = LEN, .addr = SLOT(8), .place = PLACE_RELOCATE,
	.src_flags = FL_MIGRATE_NO_PUSH, .kill_source = true,
};

/* Anonymous memory with FL_MIGRATE_DEST_MOVE: moved where the kernel has
 * MOVE, copied when it is masked. */
static const struct mig_case c_move_precopy = { .mode = FL_MIGRATE_PRECOPY, .mem = FL_MEM_ANON, .len = LEN,
						.addr = SLOT(9), .move = true };
static const struct mig_case c_move_postcopy = { .mode = FL_MIGRATE_POSTCOPY, .mem = FL_MEM_ANON, .len = LEN,
						 .addr = SLOT(10), .move = true };
static const struct mig_case c_move_hybrid = { .mode = FL_MIGRATE_HYBRID, .mem = FL_MEM_ANON, .len = LEN,
					       .addr = SLOT(11), .move = true };
static const struct mig_case c_move_ondemand = { .mode = FL_MIGRATE_POSTCOPY, .mem = FL_MEM_ANON, .len = LEN,
						 .addr = SLOT(12), .src_flags = FL_MIGRATE_NO_PUSH,
						 .move = true };

static int test_migration(void *arg)
{
	const struct mig_case *c = arg;

	mig_require(c);
	return mig_run(c, "127.0.0.1", NULL, NULL, NULL);
}

/*
 * Precopy time limit. 4 writers dirty all the time, a set that shrinks by
 * one block a round and is written whole every round (peer.h: shrinking),
 * so every round's written set is one smaller than the one before: without
 * a limit the rounds run to max_rounds (32). The 40 ms limit ends them
 * after a few rounds; the pause comes within the limit plus the round that
 * ran over it, and the memory is the pause instant's.
 */
#define TL_MS 40u
static const struct mig_case c_limit_precopy = { .mode = FL_MIGRATE_PRECOPY, .mem = FL_MEM_ANON,
						 .len = 8u << 20, .addr = SLOT(13), .max_rounds = 32,
						 .max_precopy_ms = TL_MS, .shrinking = true };
static const struct mig_case c_limit_hybrid = { .mode = FL_MIGRATE_HYBRID, .mem = FL_MEM_ANON,
						.len = 8u << 20, .addr = SLOT(14), .max_rounds = 32,
						.max_precopy_ms = TL_MS, .shrinking = true };
/* The control: the same writers without the limit run all 32 rounds. */
static const struct mig_case c_limit_none = { .mode = FL_MIGRATE_PRECOPY, .mem = FL_MEM_ANON,
					      .len = 8u << 20, .addr = SLOT(15), .max_rounds = 32,
					      .shrinking = true };

static int test_time_limit(void *arg)
{
	const struct mig_case *c = arg;
	struct mig_report rep = { 0 };

	mig_require(c);
	T_ASSERT(mig_run(c, "127.0.0.1", NULL, NULL, &rep) == T_PASS);
	t_log("rounds %u, paused after %.1f ms, longest round %.1f ms", rep.rounds, rep.pause_ns / 1e6,
	      rep.longest_round_ns / 1e6);
	if (!c->max_precopy_ms) {
		T_ASSERT(!rep.time_limit);
		T_ASSERT_EQ(rep.rounds, 32);
		return T_PASS;
	}
	T_ASSERT(rep.time_limit, "the rounds did not end on the time limit (%u rounds)", rep.rounds);
	T_ASSERT(rep.rounds >= 1 && rep.rounds < 32);
	/* Past the limit no round starts: the pause follows the round that
	 * ran over it (plus the switchover's own start). */
	T_ASSERT(rep.pause_ns <= TL_MS * 1000000ull + rep.longest_round_ns + t_scaled_ns(50),
		 "paused %.1f ms after the start, limit %u ms, longest round %.1f ms", rep.pause_ns / 1e6, TL_MS,
		 rep.longest_round_ns / 1e6);
	return T_PASS;
}

static void no_resume(const void *blob, size_t blob_len, void *ctx)
{
	(void)blob;
	(void)blob_len;
	(void)ctx;
	T_ASSERT(0, "resumed without a source");
}

/* The new options' and fl_migrate_dest_ranges()'s argument checks. */
static int test_args(void *arg)
{
	struct fl_migrate_dest_opts o = { .sz = sizeof(o), .bulk_fd = 0, .urgent_fd = 1 };
	struct fl_migrate_placed pl[1];
	struct fl_migrate_dest *dst = NULL;
	unsigned n = 7;

	(void)arg;
	o.resume = no_resume;
	o.flags = FL_MIGRATE_DEST_MOVE << 1;
	T_ASSERT_EQ(fl_migrate_dest_new(&o, &dst), -EINVAL);
	o.flags = FL_MIGRATE_DEST_MOVE;
	T_OK(fl_migrate_dest_new(&o, &dst));
	T_ASSERT_EQ(fl_migrate_dest_ranges(NULL, pl, 1, &n), -EINVAL);
	T_ASSERT_EQ(fl_migrate_dest_ranges(dst, pl, 1, NULL), -EINVAL);
	T_ASSERT_EQ(fl_migrate_dest_ranges(dst, NULL, 1, &n), -EINVAL);
	/* Not started: no layout yet. */
	T_ASSERT_EQ(fl_migrate_dest_ranges(dst, pl, 1, &n), -EAGAIN);
	T_ASSERT_EQ(n, 7);
	fl_migrate_dest_free(dst);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "args", test_args, NULL, 30, 0 },
	{ "place-anon", test_migration, (void *)&c_place_anon, 120, 0 },
	{ "place-shmem", test_migration, (void *)&c_place_shmem, 120, 0 },
	{ "place-hugetlb", test_migration, (void *)&c_place_hugetlb, 120, T_HUGE_PAGES },
	{ "place-mixed", test_migration, (void *)&c_place_mixed, 120, T_HUGE_PAGES },
	{ "place-anywhere", test_migration, (void *)&c_place_anywhere, 120, T_HUGE_PAGES },
	{ "place-in-use", test_migration, (void *)&c_place_in_use, 120, T_HUGE_PAGES },
	{ "place-misaligned", test_migration, (void *)&c_place_misaligned, 120, T_HUGE_PAGES },
	{ "place-ondemand", test_migration, (void *)&c_place_ondemand, 120, T_HUGE_PAGES },
	{ "place-source-killed", test_migration, (void *)&c_place_killed, 120, T_HUGE_PAGES },
	{ "move-precopy-anon", test_migration, (void *)&c_move_precopy, 120, 0 },
	{ "move-postcopy-anon", test_migration, (void *)&c_move_postcopy, 120, 0 },
	{ "move-hybrid-anon", test_migration, (void *)&c_move_hybrid, 120, 0 },
	{ "move-ondemand-anon", test_migration, (void *)&c_move_ondemand, 120, 0 },
	{ "time-limit-precopy", test_time_limit, (void *)&c_limit_precopy, 120, 0 },
	{ "time-limit-hybrid", test_time_limit, (void *)&c_limit_hybrid, 120, 0 },
	{ "time-limit-none", test_time_limit, (void *)&c_limit_none, 120, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
