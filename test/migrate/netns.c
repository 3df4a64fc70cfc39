// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Live migration over real TCP between two network namespaces joined by a
 * veth pair (nsnet.h): the source process in one, the destination in the
 * other, as two hosts. peer.h migrates and checks: 4 source threads write
 * per-block counters until quiesce, which takes a hash of every block at
 * the pause instant; the destination's memory must equal it, with zero
 * torn blocks, also while the application reads it during postcopy.
 */
#include "nsnet.h"
#include "peer.h"

#define LEN (8u << 20)
#define SLOT(n) (0x5c0000000000ull + (uint64_t)(n) * (256ull << 20))

#define MC(n, m, mem_) { .mode = (m), .mem = (mem_), .len = LEN, .addr = SLOT(n) }

static const struct mig_case c_modes[] = {
	MC(0, FL_MIGRATE_PRECOPY, FL_MEM_ANON),
	MC(1, FL_MIGRATE_POSTCOPY, FL_MEM_ANON),
	MC(2, FL_MIGRATE_HYBRID, FL_MEM_ANON),
	MC(3, FL_MIGRATE_PRECOPY, FL_MEM_SHMEM),
	MC(4, FL_MIGRATE_POSTCOPY, FL_MEM_SHMEM),
	MC(5, FL_MIGRATE_HYBRID, FL_MEM_SHMEM),
	MC(6, FL_MIGRATE_PRECOPY, FL_MEM_HUGETLB),
	MC(7, FL_MIGRATE_POSTCOPY, FL_MEM_HUGETLB),
	MC(8, FL_MIGRATE_HYBRID, FL_MEM_HUGETLB),
	/* [9] over a link limited to 1 Gbit/s, one range of each type */
	MC(9, FL_MIGRATE_HYBRID, MIG_MIXED),
	/* [10] the source killed during postcopy, every page on demand */
	{ .mode = FL_MIGRATE_POSTCOPY, .mem = MIG_MIXED, .len = LEN, .addr = SLOT(10),
	  .src_flags = FL_MIGRATE_NO_PUSH, .kill_source = true },
};

struct netns_case {
	const struct mig_case *mc;
	bool tbf;
};

static void enter_source_side(void *arg)
{
	nsnet_enter(arg, 0);
}

/* In the forked child of nsnet_run(): the destination's namespace. */
static int run_in_namespaces(struct nsnet *n, void *arg)
{
	const struct netns_case *nc = arg;
	uint64_t rx;
	int r;

	uint64_t t0 = t_now_ns();

	nsnet_enter(n, 1);
	r = mig_run(nc->mc, NSNET_IP1, enter_source_side, n, NULL);
	if (r != T_PASS || nc->mc->kill_source)
		return r;
	t_log("migrated %zu MiB in %.1f ms%s", mig_bytes(nc->mc) >> 20, (t_now_ns() - t0) / 1e6,
	      nc->tbf ? " over 1 Gbit/s" : "");
	/* The pages crossed the veth pair: its destination end received at
	 * least the written quarter-and-more of the memory. */
	rx = nsnet_rx_bytes(n, 1);
	T_ASSERT(rx != UINT64_MAX, "cannot read the veth's statistics");
	T_ASSERT(rx >= mig_bytes(nc->mc) / 4, "the destination's veth received %llu bytes of %zu",
		 (unsigned long long)rx, mig_bytes(nc->mc));
	if (nc->tbf) {
		/* The limit held: what crossed took at least 80 % of its
		 * time at 1 Gbit/s (the source sent what the veth received). */
		uint64_t ns = t_now_ns() - t0, floor_ns = rx * 8 * 8 / 10;

		T_ASSERT(ns >= floor_ns, "%llu bytes in %.1f ms: faster than 1 Gbit/s",
			 (unsigned long long)rx, ns / 1e6);
	}
	return T_PASS;
}

static int test_netns(void *arg)
{
	const struct netns_case *nc = arg;
	struct nsnet n;

	mig_require(nc->mc);
	nsnet_setup(&n);
	if (nc->tbf) {
		/* Both directions: pages one way, requests the other. */
		for (int s = 0; s < 2; s++)
			if (nsnet_qdisc(&n, s, "tbf rate 1gbit burst 256kb latency 50ms")) {
				nsnet_teardown(&n);
				t_skip_resource("tc(8) cannot add a tbf qdisc");
			}
	}
	return nsnet_run(&n, run_in_namespaces, (void *)nc, t_scaled_ms(100000));
}

#define NC(i, tbf) (&(const struct netns_case){ &c_modes[i], tbf })
#define HUGE(i) (c_modes[i].mem == FL_MEM_ANON || c_modes[i].mem == FL_MEM_SHMEM ? 0 : T_HUGE_PAGES)

static const struct t_case cases[] = {
	{ "precopy-anon", test_netns, (void *)NC(0, false), 120, 0 },
	{ "postcopy-anon", test_netns, (void *)NC(1, false), 120, 0 },
	{ "hybrid-anon", test_netns, (void *)NC(2, false), 120, 0 },
	{ "precopy-shmem", test_netns, (void *)NC(3, false), 120, 0 },
	{ "postcopy-shmem", test_netns, (void *)NC(4, false), 120, 0 },
	{ "hybrid-shmem", test_netns, (void *)NC(5, false), 120, 0 },
	{ "precopy-hugetlb", test_netns, (void *)NC(6, false), 120, T_HUGE_PAGES },
	{ "postcopy-hugetlb", test_netns, (void *)NC(7, false), 120, T_HUGE_PAGES },
	{ "hybrid-hugetlb", test_netns, (void *)NC(8, false), 120, T_HUGE_PAGES },
	{ "tbf-1gbit-hybrid-mixed", test_netns, (void *)NC(9, true), 120, T_HUGE_PAGES },
	{ "source-killed-mixed", test_netns, (void *)NC(10, false), 120, T_HUGE_PAGES },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
