/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stores: where a lazy region's pages come from.
 *
 * A store is a versioned vtable plus a context pointer. The engine calls
 * `read` from fault-service and background-fill threads, possibly several at
 * once, so implementations must be thread-safe. Offsets are bytes from the
 * start of the store; a region maps its first byte to `store_offset`.
 */
#ifndef FAULTLINE_STORE_H
#define FAULTLINE_STORE_H

#include <faultline/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One read request in a batch. */
struct fl_store_iov {
	uint64_t offset;	/* byte offset in the store (page-aligned) */
	void *buf;		/* destination, `len` bytes */
	size_t len;
	uint32_t flags_in;	/* FL_STORE_IN_*: what the caller asks; the store never writes it */
	uint32_t flags_out;	/* FL_STORE_OUT_*: what the store reports; cleared before each read */
	int result;		/* per-request result: 0, or -errno */
};
/*
 * The two sets never share a bit, so a flag put in the wrong field is
 * caught (fl_store_read() rejects unknown flags_in bits with -EINVAL)
 * instead of being read as the other set's flag.
 */
/* flags_in. Demand faults are urgent; prefetch and background fill are
 * not. Remote stores serve urgent reads ahead of queued background work. */
#define FL_STORE_IN_URGENT	(1u << 0)
#define FL_STORE_IN_MASK	0x0000ffffu	/* bits the caller may set */
/* flags_out: the store knows the range is all zeros (buf left untouched). */
#define FL_STORE_OUT_ZERO	(1u << 16)

#define FL_STORE_OPS_VERSION 1

struct fl_store;

struct fl_store_ops {
	size_t sz;		/* sizeof(struct fl_store_ops) */
	unsigned version;	/* FL_STORE_OPS_VERSION */
	const char *name;	/* "zero", "memory", "file", ... */
	/*
	 * Read a batch. Fill each iov's buf (or set FL_STORE_OUT_ZERO and leave buf
	 * untouched) and set its result. Return 0 if every request succeeded,
	 * otherwise a negative errno (the per-request results say which).
	 * Reads beyond the end of the store must fail with -ERANGE, never
	 * return zeros.
	 */
	int (*read)(void *ctx, struct fl_store_iov *iov, unsigned n);
	/* Optional: write pages back (eviction, snapshots). */
	int (*write)(void *ctx, const struct fl_store_iov *iov, unsigned n);
	/* Optional: make writes durable. */
	int (*flush)(void *ctx);
	/* Optional escape hatch for store-specific operations (numbers: see
	 * FL_STORE_CTL_* below); -EOPNOTSUPP for an op it does not know. */
	int (*ctl)(void *ctx, int op, void *arg);
	/* Optional: release ctx when the store's last reference goes away. */
	void (*destroy)(void *ctx);
};

/*
 * Wrap a custom implementation. `ops` must outlive the store. `size` is the
 * store's length in bytes (reads beyond it fail). Returns -EINVAL when
 * ops->sz or ops->version are unknown or read is NULL.
 */
FL_API int fl_store_new(const struct fl_store_ops *ops, void *ctx,
			uint64_t size, struct fl_store **ret_store);
/* Stores are reference counted: a region holds a reference. */
FL_API struct fl_store *fl_store_ref(struct fl_store *store);
FL_API struct fl_store *fl_store_unref(struct fl_store *store);

FL_API uint64_t fl_store_size(const struct fl_store *store);
FL_API const char *fl_store_name(const struct fl_store *store);

/* Batched read through the store's vtable (what the engine calls). */
FL_API int fl_store_read(struct fl_store *store, struct fl_store_iov *iov,
			 unsigned n);
/* Optional operations; -EOPNOTSUPP when the store lacks them (for ctl:
 * when the store does not know that op). */
FL_API int fl_store_write(struct fl_store *store,
			  const struct fl_store_iov *iov, unsigned n);
FL_API int fl_store_flush(struct fl_store *store);
FL_API int fl_store_ctl(struct fl_store *store, int op, void *arg);

/* A store of `size` zero bytes (every read reports FL_STORE_OUT_ZERO). */
FL_API int fl_store_zero_new(uint64_t size, struct fl_store **ret_store);

/*
 * A store over a caller's memory buffer. With FL_STORE_MEM_COPY the bytes
 * are copied at creation; otherwise `buf` must stay valid and unchanged
 * while the store lives. Supports write.
 */
#define FL_STORE_MEM_COPY (1u << 0)
FL_API int fl_store_memory_new(const void *buf, size_t size, unsigned flags,
			       struct fl_store **ret_store);

/*
 * A store over a file read with pread(2) (large reads are passed through
 * as one call). The store dups `fd`; `offset` is where the store's byte 0
 * lives in the file. size 0 means "to the end of the file". Supports write
 * and flush (fdatasync) if the fd is writable.
 */
FL_API int fl_store_file_new(int fd, uint64_t offset, uint64_t size,
			     struct fl_store **ret_store);
/*
 * Open `path` read-only and make a file store over all of it: raw memory
 * bytes. A file that starts with the faultline image magic ("FLTIMAGE") is
 * refused with -EMEDIUMTYPE: its header and index would be served as
 * memory. Open an image with fl_image_open() + fl_image_store_new()
 * instead; a caller that really wants an image's raw bytes opens the file
 * itself and uses fl_store_file_new() (there is no flag here to ask for
 * them).
 */
FL_API int fl_store_file_open(const char *path, struct fl_store **ret_store);

/*
 * ctl op numbers are unique across all stores, so an op sent to the wrong
 * kind of store is -EOPNOTSUPP and its arg is never read as another
 * store's struct. Each kind owns a block of 0x100:
 *   0x100  every store (handled by fl_store_ctl() itself)
 *   0x200  remote stores (FL_REMOTE_CTL_*, remote.h)
 *   0x300  Redis stores (FL_REDIS_CTL_*, redis.h)
 *   from FL_STORE_CTL_USER: custom stores (fl_store_new())
 *
 * Fault injection for tests and fallback drills, understood by every
 * store. FL_STORE_CTL_FAIL_AT: arg is a `const uint64_t[2]` {offset, len};
 * reads overlapping that byte range fail with -EIO. FL_STORE_CTL_DELAY_US:
 * arg is `const uint64_t *` microseconds to sleep in every read.
 * FL_STORE_CTL_FAIL_WRITES: arg is a `const uint64_t[2]` {offset, len};
 * a fl_store_write() batch with a request overlapping that byte range
 * fails with -EIO and writes nothing. {0, 0} turns either off.
 */
#define FL_STORE_CTL_FAIL_AT	0x100
#define FL_STORE_CTL_DELAY_US	0x101
#define FL_STORE_CTL_FAIL_WRITES	0x102
#define FL_STORE_CTL_USER	0x10000

#ifdef __cplusplus
}
#endif
#endif
