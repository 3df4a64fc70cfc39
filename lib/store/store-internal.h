/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef FL_STORE_INTERNAL_H
#define FL_STORE_INTERNAL_H

#include "kernel.h"

struct fl_store {
	struct fl_store_ops ops;	/* copied from the caller at creation */
	void *ctx;
	uint64_t size;
	_Atomic unsigned refs;
	/* fault injection (FL_STORE_CTL_*) */
	_Atomic uint64_t fail_off, fail_len, delay_us;
};

#endif
