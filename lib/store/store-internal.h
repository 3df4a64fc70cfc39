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
	_Atomic uint64_t wfail_off, wfail_len;	/* FL_STORE_CTL_FAIL_WRITES */
	/* Known at creation not to take writes although ops.write exists
	 * (a file store over a descriptor opened read-only). */
	bool read_only;
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

/*
 * Whether writes can succeed, as far as can be known without writing:
 * 0, or -EROFS (no write op, or a file store over a read-only
 * descriptor). A writable far-memory region checks it at creation.
 */
int fl__store_writable(const struct fl_store *s);

#endif
