/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel interface: one function per userfaultfd operation, plus feature
 * probing and PAGEMAP_SCAN. These are thin, but they share one error table
 * (see fl_uffd_copy()) and they report the kernel's partial progress.
 *
 * Every function here is thread-safe in the sense the kernel is: several
 * threads may issue resolving ioctls on one uffd at once.
 */
#ifndef FAULTLINE_UFFD_H
#define FAULTLINE_UFFD_H

#include <faultline/common.h>
#include <linux/userfaultfd.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Kernel constants newer than Linux 6.1 headers, so that programs built on
 * older system headers can name them (values are the kernel's ABI).
 */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

/* ---- features ---------------------------------------------------------- */

/*
 * What the running kernel (and this process) can do, probed at run time.
 * faultline names each feature with its own number, stable across releases
 * (new features are only appended): the kernel's UFFD_FEATURE_* bits are one
 * source of answers, but some features are not UFFDIO_API bits at all (the
 * PAGEMAP_SCAN ioctl, the ways to create a uffd, the ioctls that follow a
 * feature), and the kernel's bit numbers are not ours to extend. The
 * numbers are deliberately not the kernel's bit numbers: use
 * fl_feature_uffd_bit() or fl_features_to_uffd() where kernel bits are
 * needed (fl_uffd_api(), fl_engine_adopt(), struct fl_guard_opts).
 */
enum fl_feature {
	/* Creating a uffd. */
	FL_FEATURE_SYSCALL = 0,		/* userfaultfd(2) without USER_MODE_ONLY, 4.3 */
	FL_FEATURE_DEV_USERFAULTFD = 1,	/* /dev/userfaultfd usable, 6.1 */
	/* Registration (UFFD_FEATURE_*). */
	FL_FEATURE_MISSING_SHMEM = 2,	/* 4.11 */
	FL_FEATURE_MISSING_HUGETLBFS = 3, /* 4.11 */
	FL_FEATURE_MINOR_SHMEM = 4,	/* 5.14 */
	FL_FEATURE_MINOR_HUGETLBFS = 5,	/* 5.13 */
	FL_FEATURE_WP = 6,		/* UFFD_FEATURE_PAGEFAULT_FLAG_WP, 5.7 */
	FL_FEATURE_WP_HUGETLBFS_SHMEM = 7, /* 5.19 */
	FL_FEATURE_WP_UNPOPULATED = 8,	/* 6.4 */
	FL_FEATURE_WP_ASYNC = 9,	/* 6.7 */
	/* Non-cooperative events (UFFD_FEATURE_EVENT_*). */
	FL_FEATURE_EVENT_FORK = 10,	/* 4.11 */
	FL_FEATURE_EVENT_REMAP = 11,	/* 4.11 */
	FL_FEATURE_EVENT_REMOVE = 12,	/* 4.11 */
	FL_FEATURE_EVENT_UNMAP = 13,	/* 4.11 */
	/* How faults are delivered (UFFD_FEATURE_*). */
	FL_FEATURE_SIGBUS = 14,		/* 4.14 */
	FL_FEATURE_THREAD_ID = 15,	/* 4.14 */
	FL_FEATURE_EXACT_ADDRESS = 16,	/* 5.18 */
	/* Resolving. */
	FL_FEATURE_POISON = 17,		/* UFFD_FEATURE_POISON, 6.6 */
	FL_FEATURE_MOVE = 18,		/* UFFD_FEATURE_MOVE, 6.8 */
	FL_FEATURE_IOCTL_POISON = 19,	/* UFFDIO_POISON on registered ranges, 6.6 */
	FL_FEATURE_IOCTL_MOVE = 20,	/* UFFDIO_MOVE on the fd, 6.8 */
	/* Beyond userfaultfd. */
	FL_FEATURE_PAGEMAP_SCAN = 21,	/* PAGEMAP_SCAN on /proc/pid/pagemap, 6.7 */
	/* A mode bit, not a feature bit: fl_uffd_continue() with FL_MODE_WP. */
	FL_FEATURE_CONTINUE_MODE_WP = 22, /* UFFDIO_CONTINUE_MODE_WP, 6.4 */
};

/*
 * A feature set is a uint64_t with bit FL_FEATURE_BIT(f) for each feature
 * f: fl_features_probe(), fl_features(), fl_features_masked() and
 * fl_features_parse() speak in such sets, never in kernel bits.
 */
#define FL_FEATURE_BIT(f) ((uint64_t)1 << (unsigned)(f))

/*
 * Probe the running kernel: opens a throwaway uffd, runs UFFDIO_API with
 * features = 0, reads back what the kernel offers, and checks PAGEMAP_SCAN,
 * UFFDIO_CONTINUE_MODE_WP and the ways of creating a uffd. The answer is then reduced by the
 * FAULTLINE_MASK_FEATURES environment variable (see faultline(7)): a
 * comma-separated list of feature names ("poison,move"), "new" (everything
 * newer than Linux 6.1), or a hex mask of kernel UFFD_FEATURE_* bits.
 * fl_features() caches the first answer for the life of the process; this
 * function always probes anew.
 *
 * Returns 0 and writes the feature set (FL_FEATURE_BIT()s), or -errno
 * (-EOPNOTSUPP: no userfaultfd at all).
 */
FL_API int fl_features_probe(uint64_t *ret_features);

/* Cached fl_features_probe(); returns 0 if nothing could be probed. */
FL_API uint64_t fl_features(void);

/* The features masked off by FAULTLINE_MASK_FEATURES (0 when unset). */
FL_API uint64_t fl_features_masked(void);

/* True if `feature` is in fl_features() (known, present and not masked). */
FL_API bool fl_feature_has(enum fl_feature feature);

/*
 * About one feature, from faultline's static table (no probing): its short
 * name as accepted by FAULTLINE_MASK_FEATURES and printed by `faultline
 * check`, the first Linux version that has it, and what faultline uses it
 * for. Each returns NULL for a value that is not a known feature, so
 * `for (f = 0; fl_feature_name(f); f++)` walks every feature this build of
 * the library knows.
 */
FL_API const char *fl_feature_name(enum fl_feature feature);
FL_API const char *fl_feature_since(enum fl_feature feature);
FL_API const char *fl_feature_purpose(enum fl_feature feature);

/* The feature called `name` (any case). -EINVAL: no such feature. */
FL_API int fl_feature_from_name(const char *name, enum fl_feature *ret_feature);

/*
 * The kernel's UFFD_FEATURE_* bit of a feature, for the UFFDIO_API
 * handshake; 0 for a feature that is not a UFFDIO_API bit (SYSCALL,
 * DEV_USERFAULTFD, IOCTL_*, PAGEMAP_SCAN, CONTINUE_MODE_WP) or not known.
 */
FL_API uint64_t fl_feature_uffd_bit(enum fl_feature feature);

/*
 * The UFFD_FEATURE_* bits of the features in `features` (a feature set);
 * features that are not UFFDIO_API bits are dropped. For example
 * fl_features_to_uffd(fl_features()) is everything a handshake may ask for.
 */
FL_API uint64_t fl_features_to_uffd(uint64_t features);
/*
 * The reverse: the feature set named by UFFD_FEATURE_* bits (for example
 * what fl_uffd_api() reported); bits faultline does not know are dropped.
 */
FL_API uint64_t fl_features_from_uffd(uint64_t uffd_features);

/*
 * Parse a FAULTLINE_MASK_FEATURES-style string into a feature set.
 * -EINVAL on an unknown name or a malformed hex mask (hex masks are kernel
 * UFFD_FEATURE_* bits; bits faultline does not know are ignored).
 */
FL_API int fl_features_parse(const char *spec, uint64_t *ret_features);

/* ---- creating and handshaking ----------------------------------------- */

/* Flags for fl_uffd_create(). */
#define FL_UFFD_CLOEXEC		(1u << 0)
#define FL_UFFD_NONBLOCK	(1u << 1)
#define FL_UFFD_USER_MODE_ONLY	(1u << 2)	/* catch only user-mode faults */
#define FL_UFFD_USE_DEV		(1u << 3)	/* only /dev/userfaultfd */
#define FL_UFFD_USE_SYSCALL	(1u << 4)	/* only userfaultfd(2) */

/*
 * Create a userfaultfd. Without USE_DEV/USE_SYSCALL the syscall is tried
 * first, then /dev/userfaultfd (USERFAULTFD_IOC_NEW), then, when both are
 * refused with EPERM, the syscall with UFFD_USER_MODE_ONLY (such a uffd does
 * not catch faults the kernel takes on the process's behalf, e.g. read(2)
 * into a lazy page then fails with EFAULT).
 *
 * Returns 0 and the fd, -EPERM when not allowed, -EOPNOTSUPP when the
 * kernel has no userfaultfd.
 */
FL_API int fl_uffd_create(unsigned flags, int *ret_fd);

/*
 * UFFDIO_API handshake, allowed once per uffd. `features` are the kernel's
 * UFFD_FEATURE_* bits to enable: this is the raw kernel interface, so it
 * speaks kernel bits (fl_feature_uffd_bit() and fl_features_to_uffd()
 * translate). Returns 0 and what the kernel reports in the same bits (all
 * features it supports, minus masked ones, and the ioctls usable on the
 * fd); -EOPNOTSUPP if a requested feature is missing or masked; -EINVAL on
 * a second call. ret_features and ret_ioctls may be NULL.
 */
FL_API int fl_uffd_api(int uffd, uint64_t features, uint64_t *ret_features,
		       uint64_t *ret_ioctls);

/* Registration modes (combine with |). */
#define FL_REG_MISSING	(1u << 0)
#define FL_REG_WP	(1u << 1)
#define FL_REG_MINOR	(1u << 2)

/*
 * Register [addr, addr+len) for the given modes. On success *ret_ioctls
 * (optional) receives the set of resolving ioctls usable on the range; test
 * it with fl_ioctls_has(). Errors: -EINVAL (bad range, a hole in the range,
 * or mode unsupported for this memory, e.g. MINOR on anonymous memory),
 * -EBUSY (registered to another uffd), -ENOMEM (no mapping at or above the
 * range), -EPERM.
 */
FL_API int fl_uffd_register(int uffd, void *addr, size_t len, unsigned modes,
			    uint64_t *ret_ioctls);
FL_API int fl_uffd_unregister(int uffd, void *addr, size_t len);

/* Named ioctl bits for the ioctl sets returned above. */
enum fl_ioctl {
	FL_IOCTL_REGISTER = 0x00,
	FL_IOCTL_UNREGISTER = 0x01,
	FL_IOCTL_WAKE = 0x02,
	FL_IOCTL_COPY = 0x03,
	FL_IOCTL_ZEROPAGE = 0x04,
	FL_IOCTL_MOVE = 0x05,
	FL_IOCTL_WRITEPROTECT = 0x06,
	FL_IOCTL_CONTINUE = 0x07,
	FL_IOCTL_POISON = 0x08,
	FL_IOCTL_API = 0x3f,
};
static inline bool fl_ioctls_has(uint64_t ioctls, enum fl_ioctl which)
{
	return (ioctls >> (unsigned)which) & 1;
}

/* ---- resolving --------------------------------------------------------- */

/* Flags for the resolving calls (each documents which it accepts). */
#define FL_DONTWAKE		(1u << 0)	/* do not wake faulting threads */
#define FL_MODE_WP		(1u << 1)	/* COPY/CONTINUE: map write-protected */
#define FL_ALLOW_SRC_HOLES	(1u << 2)	/* MOVE: skip holes in the source */
#define FL_WP_PROTECT		(1u << 3)	/* WRITEPROTECT: protect (else unprotect) */

/*
 * The error table, implemented once for every resolving call:
 *  0           the whole range was resolved.
 *  -EAGAIN     an event (fork, mremap, ...) is queued and the mm is
 *              changing. Partial progress has already been retried
 *              internally; what was done is in *ret_done. Read and process
 *              events, then retry the rest.
 *  -EEXIST     a page in the range is already mapped (another thread, or a
 *              background fill, won). *ret_done counts the bytes resolved
 *              before it. The faulting thread may need fl_uffd_wake().
 *  -ENOENT     the layout changed (range unmapped or moved), or a MOVE
 *              source hole without FL_ALLOW_SRC_HOLES.
 *  -ESRCH      the process that owns the mm is gone (-ENOSPC from 4.11-4.13
 *              kernels is mapped to -ESRCH).
 *  -EFAULT     the source buffer is bad (a bug in the caller); for CONTINUE,
 *              no page in the page cache.
 *  -EINVAL     bad alignment, zero length, or mode (ZEROPAGE on hugetlbfs).
 *  -EOPNOTSUPP the ioctl is unsupported (kernel, memory type, or mask).
 * *ret_done (optional) always receives the number of bytes resolved, also on
 * error: this is the one out-parameter in faultline written on failure.
 */
FL_API int fl_uffd_copy(int uffd, void *dst, const void *src, size_t len,
			unsigned flags, size_t *ret_done);
FL_API int fl_uffd_zeropage(int uffd, void *dst, size_t len, unsigned flags,
			    size_t *ret_done);
/*
 * CONTINUE: map existing page-cache pages into a MINOR-registered range.
 * FL_MODE_WP maps them write-protected (needs FL_FEATURE_CONTINUE_MODE_WP,
 * Linux 6.4: -EOPNOTSUPP without it, where the kernel says EINVAL).
 */
FL_API int fl_uffd_continue(int uffd, void *dst, size_t len, unsigned flags,
			    size_t *ret_done);
/* POISON: later accesses raise SIGBUS. Needs UFFD_FEATURE_POISON. */
FL_API int fl_uffd_poison(int uffd, void *dst, size_t len, unsigned flags,
			  size_t *ret_done);
/*
 * MOVE: move pages from src to dst (both in the uffd's mm, anonymous,
 * private). Needs UFFD_FEATURE_MOVE. Flags: FL_DONTWAKE, FL_ALLOW_SRC_HOLES.
 */
FL_API int fl_uffd_move(int uffd, void *dst, void *src, size_t len,
			unsigned flags, size_t *ret_done);
/* WRITEPROTECT: FL_WP_PROTECT to protect, otherwise unprotect; FL_DONTWAKE. */
FL_API int fl_uffd_writeprotect(int uffd, void *addr, size_t len,
				unsigned flags);
/* WAKE: wake threads waiting on faults in the range (re-delivers faults). */
FL_API int fl_uffd_wake(int uffd, void *addr, size_t len);

/* ---- messages ---------------------------------------------------------- */

/*
 * Read up to `max` messages in one read(2). Returns the number read (>= 1),
 * -EAGAIN when nothing is pending on a non-blocking uffd (or another reader
 * took it), -EINTR, or -errno.
 *
 * Messages are the kernel's struct uffd_msg, on purpose: this is the raw
 * kernel interface layer, and struct uffd_msg is exactly what read(2) on a
 * uffd returns (32 bytes, a kernel ABI that only ever grew inside its
 * unions); a faultline copy would cost a translation per message on the
 * fault path and could never carry a field the kernel adds. What varies
 * between kernel header versions is the naming of the fields (feat.ptid
 * appeared in 4.14), so decode through the helpers below rather than by
 * field. The higher layers do not expose the struct: the engine's on_event
 * callback gets a struct fl_event (engine.h).
 */
FL_API int fl_uffd_read(int uffd, struct uffd_msg *msgs, unsigned max);

static inline bool fl_msg_is_fault(const struct uffd_msg *m)
{ return m->event == UFFD_EVENT_PAGEFAULT; }
static inline bool fl_msg_fault_write(const struct uffd_msg *m)
{ return (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0; }
static inline bool fl_msg_fault_wp(const struct uffd_msg *m)
{ return (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) != 0; }
static inline bool fl_msg_fault_minor(const struct uffd_msg *m)
{ return (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) != 0; }
static inline uint64_t fl_msg_fault_addr(const struct uffd_msg *m)
{ return m->arg.pagefault.address; }
/* Faulting thread id; 0 unless UFFD_FEATURE_THREAD_ID was enabled. */
static inline uint32_t fl_msg_fault_tid(const struct uffd_msg *m)
{ return m->arg.pagefault.feat.ptid; }
/* Name of a message's event ("pagefault", "fork", ...). */
FL_API const char *fl_msg_event_name(const struct uffd_msg *m);

/* ---- PAGEMAP_SCAN ------------------------------------------------------ */

/* Page categories (bit numbers as in the kernel's PAGE_IS_*). */
#define FL_PAGE_IS_WPALLOWED	(1ULL << 0)
#define FL_PAGE_IS_WRITTEN	(1ULL << 1)
#define FL_PAGE_IS_FILE		(1ULL << 2)
#define FL_PAGE_IS_PRESENT	(1ULL << 3)
#define FL_PAGE_IS_SWAPPED	(1ULL << 4)
#define FL_PAGE_IS_PFNZERO	(1ULL << 5)
#define FL_PAGE_IS_HUGE		(1ULL << 6)
#define FL_PAGE_IS_SOFT_DIRTY	(1ULL << 7)
#define FL_PAGE_IS_GUARD	(1ULL << 8)

/* Scan flags. */
#define FL_SCAN_WP_MATCHING	(1ULL << 0)	/* write-protect what is reported */
#define FL_SCAN_CHECK_WPASYNC	(1ULL << 1)	/* fail unless the range is WP_ASYNC */

/* Same layout as the kernel's struct page_region. */
struct fl_page_region {
	uint64_t start;
	uint64_t end;
	uint64_t categories;
};

struct fl_scan_opts {
	size_t sz;			/* sizeof(struct fl_scan_opts) */
	uint64_t start, end;		/* page-aligned range to walk */
	uint64_t flags;			/* FL_SCAN_* */
	uint64_t max_pages;		/* 0: no limit; bounds reported AND re-protected pages */
	uint64_t category_inverted;
	uint64_t category_mask;
	uint64_t category_anyof_mask;
	uint64_t return_mask;
};

/* Open /proc/<pid>/pagemap (pid 0: self) for scanning. */
FL_API int fl_pagemap_open(pid_t pid, int *ret_fd);

/*
 * One PAGEMAP_SCAN call. Returns the number of regions written to vec
 * (>= 0) and the address where the walk stopped in *ret_walk_end (optional;
 * == opts->end when the range was walked completely). Continue by calling
 * again with start = walk_end. -EOPNOTSUPP when the kernel lacks
 * PAGEMAP_SCAN or it is masked; -EINVAL on bad flags or categories.
 */
FL_API int fl_pagemap_scan(int pagemap_fd, const struct fl_scan_opts *opts,
			   struct fl_page_region *vec, size_t vec_len,
			   uint64_t *ret_walk_end);

/*
 * Walk [opts->start, opts->end) completely, following walk_end, calling
 * `fn` for every region found. max_pages, if set, bounds the total over the
 * whole walk. Returns the total number of pages reported, or -errno (a
 * negative return from fn stops the walk and is returned).
 */
typedef int (*fl_scan_fn)(const struct fl_page_region *region, void *ctx);
FL_API int64_t fl_pagemap_scan_all(int pagemap_fd,
				   const struct fl_scan_opts *opts,
				   fl_scan_fn fn, void *ctx);

/* ---- handing a uffd between processes ---------------------------------- */

/*
 * Send `uffd` over a unix socket with SCM_RIGHTS, with `len` bytes of data
 * (at least one byte is sent). Returns 0 or -errno.
 */
FL_API int fl_uffd_send(int sock, int uffd, const void *data, size_t len);
/*
 * Receive a uffd sent by fl_uffd_send(). Returns the number of data bytes
 * received (>= 0) and the fd (made CLOEXEC), -EBADMSG when no fd came with
 * the data, -ECONNRESET on EOF.
 */
FL_API int fl_uffd_recv(int sock, void *data, size_t len, int *ret_fd);
/*
 * Take a copy of fd number `fd` from process `pid` (pidfd_getfd(2); needs
 * ptrace permission over pid). Used by a restarted handler to re-take a
 * process's uffd.
 */
FL_API int fl_uffd_take(pid_t pid, int fd, int *ret_fd);

#ifdef __cplusplus
}
#endif
#endif
