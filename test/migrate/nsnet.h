/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Two network namespaces joined by a veth pair, for migration tests over
 * real TCP between "hosts": side 0 at NSNET_IP0, side 1 at NSNET_IP1.
 * Names carry the test process's pid, so parallel test programs and
 * cases never share one. Uses ip(8) and tc(8) (iproute2), as root.
 */
#ifndef FL_TEST_MIGRATE_NSNET_H
#define FL_TEST_MIGRATE_NSNET_H

#include <stdbool.h>
#include <stdint.h>

#define NSNET_IP0	"10.77.0.1"
#define NSNET_IP1	"10.77.0.2"

struct nsnet {
	char ns[2][32];			/* namespace names (ip netns) */
	char dev[2][16];		/* each side's veth */
	bool made[2];
};

/*
 * Create both namespaces and the link, addresses up. Skips the case with
 * t_skip_resource() naming what is missing (ip, root, namespaces); what
 * was made before a failure is removed again.
 */
void nsnet_setup(struct nsnet *n);
/* Remove both namespaces (and with them the veth pair). Idempotent. */
void nsnet_teardown(struct nsnet *n);
/* Move the calling process (single-threaded) into side's namespace. */
void nsnet_enter(const struct nsnet *n, int side);
/* Run "tc qdisc add dev DEV root <qdisc>" on side's veth: 0 or -1. */
int nsnet_qdisc(const struct nsnet *n, int side, const char *qdisc);
/* Bytes side's veth received (its statistics), or UINT64_MAX. */
uint64_t nsnet_rx_bytes(const struct nsnet *n, int side);
/*
 * Run fn(arg) in a forked child (its own process group) while the
 * namespaces exist, and remove them afterwards whatever happened, also when
 * the child fails, hangs past timeout_ms (then its process group is
 * killed) or dies. Returns the child's T_PASS / T_FAIL / T_SKIP.
 */
int nsnet_run(struct nsnet *n, int (*fn)(struct nsnet *n, void *arg), void *arg, unsigned timeout_ms);

#endif
