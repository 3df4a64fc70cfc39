// SPDX-License-Identifier: LGPL-2.1-or-later
#include "kernel.h"

static int zero_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		iov[i].flags_out |= FL_STORE_OUT_ZERO;
	return 0;
}

static const struct fl_store_ops zero_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "zero",
	.read = zero_read,
};

int fl_store_zero_new(uint64_t size, struct fl_store **ret_store)
{
	return fl_store_new(&zero_ops, NULL, size, ret_store);
}
