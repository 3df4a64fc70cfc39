/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef FL_STORE_INTERNAL_H
#define FL_STORE_INTERNAL_H

#include "kernel.h"

/*
 * The first 8 bytes of a faultline image file, defined here, below the
 * image layer, because the raw file store refuses a file that starts with
 * them (fl_store_file_open(): a newcomer would get the header as memory);
 * lib/image/image-format.h takes its FL_IMG_MAGIC from this one.
 */
#define FL__IMAGE_MAGIC "FLTIMAGE"
#define FL__IMAGE_MAGIC_LEN 8

struct fl_store {
	struct fl_store_ops ops;	/* copied from the caller at creation */
	void *ctx;
	uint64_t size;
	_Atomic unsigned refs;
	/* fault injection (FL_STORE_CTL_*) */
	_Atomic uint64_t fail_off, fail_len, delay_us;
	/* The store's bytes, when they are plain memory a region may copy
	 * from in place (the memory store); NULL for every other store. */
	const uint8_t *direct;
};

/*
 * The bytes [off, off + len) in place, for a UFFDIO_COPY straight from the
 * store (no copy into a buffer on the fault path), or NULL: the store has
 * no such memory, the range is out of bounds, or fault injection applies
 * (a delay, or a failure overlapping the range): then fl_store_read().
 */
const uint8_t *fl__store_direct(struct fl_store *s, uint64_t off, uint64_t len);

#endif
