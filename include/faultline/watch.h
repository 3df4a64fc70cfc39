/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Write watches: which pages of a range were written since the last reset,
 * with the semantics of Windows' GetWriteWatch/ResetWriteWatch.
 *
 * A watch covers one range of the calling process's memory: private
 * anonymous memory, a MAP_SHARED mapping of a memfd or other shmem, or
 * hugetlb memory. The range must be mapped and must not already be
 * registered with a userfaultfd (-EBUSY). A new watch starts clean: every
 * page is "not written".
 *
 * What counts as a write: any store through this mapping by any thread.
 * Kernel writes into the range (read(2), recv, process_vm_writev) and
 * other processes' writes (/proc/PID/mem, PTRACE_POKEDATA) are counted,
 * fail loudly, or are not seen depending on the backend and privileges:
 * fl_watch_query() says which (table in fl_watch_new(3)). A read(2) that
 * transfers zero bytes does not write. A store that spans two pages marks
 * both. fl_watch_protect() (VirtualProtect) changes the application's
 * protection without losing or inventing watch state. MADV_DONTNEED (and
 * MADV_REMOVE) on a watched page counts as a write (MPROTECT sees it only
 * at the next write): the contents turn to zeros, except for MADV_DONTNEED
 * on a MAP_SHARED mapping, which keeps the page cache (an over-report,
 * harmless). Writes through a
 * different mapping of the same shmem object are not seen.
 *
 * The range may be PROT_NONE or read-only (reserved memory committed
 * later); it must be memory that can be made writable (VM_MAYWRITE).
 *
 * Granularity: page-exact by default. On anonymous memory the watch turns
 * transparent huge pages off for the range (MADV_NOHUGEPAGE) so a write
 * reports one page, not 2 MiB; FL_WATCH_ALLOW_THP keeps them, and then a
 * write to a huge-page-backed area reports the whole 2 MiB. hugetlb memory
 * is always tracked per huge page. fl_watch_granularity() says which.
 *
 * Backends, best first (FL_WATCH_AUTO picks the first the kernel has, see
 * FAULTLINE_MASK_FEATURES in faultline(7)); all give the same answers
 * except where noted:
 *  - ASYNC: userfaultfd write-protect in asynchronous mode (WP_ASYNC,
 *    WP_UNPOPULATED) and PAGEMAP_SCAN. Writes are resolved by the kernel
 *    without a message; a scan reports PAGE_IS_WRITTEN and re-protects.
 *  - SYNC: synchronous userfaultfd write-protect faults served by a thread
 *    owned by the watch, which records the page and unprotects it.
 *    Unpopulated pages are caught through MISSING registration, so nothing
 *    is pre-faulted.
 *  - MPROTECT: the application's protection minus PROT_WRITE on clean
 *    pages, plus a SIGSEGV handler that records a write the application
 *    allows and restores the page's protection. Faults the application's
 *    own protection causes go to the handler installed before (or the
 *    default action); an application handler installed after must pass on
 *    the faults it does not own. The application must change protections
 *    through fl_watch_protect(). Kernel writes fail (EFAULT). This backend
 *    keeps a process-wide table of watches (the only process-wide state in
 *    the library, forced by signals).
 *
 * A watch is thread-safe: several threads may call fl_watch_get() and
 * fl_watch_reset() on it; each call is atomic with respect to the others.
 */
#ifndef FAULTLINE_WATCH_H
#define FAULTLINE_WATCH_H

#include <faultline/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_watch;

enum fl_watch_backend {
	FL_WATCH_AUTO = 0,
	FL_WATCH_ASYNC = 1,	/* WP_ASYNC + WP_UNPOPULATED + PAGEMAP_SCAN */
	FL_WATCH_SYNC = 2,	/* synchronous uffd WP faults + MISSING */
	FL_WATCH_MPROTECT = 3,	/* mprotect + SIGSEGV */
};

/* Watch flags (struct fl_watch_opts.flags). */
#define FL_WATCH_ALLOW_THP	(1u << 0)	/* anon: keep THP; writes report 2 MiB */

struct fl_watch_opts {
	size_t sz;			/* sizeof(struct fl_watch_opts) */
	enum fl_watch_backend backend;	/* FL_WATCH_AUTO: best available */
	unsigned flags;			/* FL_WATCH_* */
	fl_log_fn log;			/* NULL: silent */
	void *log_ctx;
};

/*
 * Start watching [addr, addr + len). addr and len must be aligned to the
 * memory's page size (the huge page size for hugetlb). opts may be NULL.
 * Errors: -EINVAL (alignment, unmapped, never writable or mixed memory
 * types), -EBUSY (already registered with a userfaultfd, or overlapping an
 * MPROTECT watch), -EOPNOTSUPP (the requested
 * backend is unavailable: the kernel lacks it or it is masked).
 */
FL_API int fl_watch_new(void *addr, size_t len, const struct fl_watch_opts *opts,
			struct fl_watch **ret_watch);

/* fl_watch_get() flags. */
#define FL_WATCH_RESET		(1u << 0)	/* reset exactly the pages returned */

/*
 * GetWriteWatch: store the addresses of pages in [addr, addr + len) written
 * since their last reset, in ascending order, into pages[0 .. *count). On
 * entry *count is the capacity of `pages` (0 is -EINVAL, as Windows'); on
 * return the number stored.
 * With FL_WATCH_RESET, exactly the pages returned are reset: when there are
 * more written pages than `pages` holds, the rest stay written and are
 * returned by the next call. [addr, addr + len) must lie inside the watch
 * and be aligned to the granularity. *ret_granularity (optional) receives
 * the size of each reported unit (fl_watch_granularity()).
 * Returns 0 or -errno (-EINVAL for a range outside the watch).
 */
FL_API int fl_watch_get(struct fl_watch *watch, void *addr, size_t len, unsigned flags,
			void **pages, uint64_t *count, size_t *ret_granularity);

/* ResetWriteWatch: mark every page of [addr, addr + len) as not written. */
FL_API int fl_watch_reset(struct fl_watch *watch, void *addr, size_t len);

/* The backend in use (never FL_WATCH_AUTO). */
FL_API enum fl_watch_backend fl_watch_backend(const struct fl_watch *watch);
/* Size of one reported unit: the page size, or the huge page size. */
FL_API size_t fl_watch_granularity(const struct fl_watch *watch);

/*
 * VirtualProtect: set the application's protection (PROT_READ, PROT_WRITE,
 * PROT_EXEC or PROT_NONE) of [addr, addr + len), which must lie inside the
 * watch and be aligned to the granularity, keeping the watch exact: pages
 * written stay reported, clean pages made writable are caught when
 * written, and a fault the application's protection causes (a read of a
 * PROT_NONE page, a write to a PROT_READ one) reaches the application's
 * SIGSEGV handler, never the watch. On the userfaultfd backends it is
 * mprotect(2) (their state survives it); on MPROTECT the application must
 * use it instead of mprotect(2), see fl_watch_protect(3).
 * Returns 0 or -errno (-EINVAL: range or prot; mprotect(2)'s errors).
 */
FL_API int fl_watch_protect(struct fl_watch *watch, void *addr, size_t len, int prot);

/* What happens to a kind of write into the watched range. */
enum fl_watch_fate {
	FL_WATCH_COUNTED = 1,	/* it succeeds and is reported */
	FL_WATCH_FAILS = 2,	/* it fails (EFAULT, EIO); nothing is written */
	FL_WATCH_NOT_SEEN = 3,	/* it succeeds and is NOT reported */
};

/* fl_watch_info.flags */
#define FL_WATCH_INFO_USER_MODE_ONLY	(1u << 0)	/* unprivileged: a user-mode-only uffd */

struct fl_watch_info {
	size_t sz;				/* sizeof(struct fl_watch_info) */
	/* read(2), recv(2), process_vm_writev(2) into the range */
	enum fl_watch_fate kernel_writes;
	/* another process's /proc/PID/mem write or PTRACE_POKEDATA */
	enum fl_watch_fate remote_writes;
	unsigned flags;				/* FL_WATCH_INFO_* */
};

/*
 * Ask before you rely: what this watch, on this kernel, with this
 * process's privileges, does with writes that are not the process's own
 * stores. info->sz must be set. Returns 0 or -EINVAL.
 */
FL_API int fl_watch_query(const struct fl_watch *watch, struct fl_watch_info *info);

/*
 * Before a write the watch would fail or not see — the kernel writing into
 * the range (read(2), recv(2), process_vm_writev(2)) where fl_watch_query()
 * says kernel_writes is FL_WATCH_FAILS (MPROTECT; SYNC on a user-mode-only
 * userfaultfd) — make [addr, addr + len) (any bytes inside the watch;
 * whole granules are touched) written and writable: every granule is
 * reported written, as if the process had stored to it, and stays
 * present and writable until it is reset, so the kernel's write then
 * lands. What an emulator does before a system call writes into a
 * watched buffer (Wine does it for its write watches). A write fault per
 * clean granule on SYNC and MPROTECT; on ASYNC, where kernel writes are
 * counted anyway, a page touch. Returns 0, -EINVAL (not inside the
 * watch) or -EACCES (the application's protection forbids writing some of
 * it: fl_watch_protect() or mprotect(2) made it read-only or PROT_NONE;
 * nothing touched).
 */
FL_API int fl_watch_prepare_write(struct fl_watch *watch, void *addr, size_t len);

/* Stop watching: unprotects the range. Accepts NULL; returns NULL. */
FL_API struct fl_watch *fl_watch_free(struct fl_watch *watch);

/*
 * The watch manager: one per process, for many ranges (a GC heap's
 * regions, an emulator's allocations) on one userfaultfd, one pagemap fd
 * and at most one service thread. Ranges are added and removed (whole or
 * in part) cheaply; get/reset/protect take any range that watched ranges
 * cover without a gap, with one granularity. Semantics per range are those
 * of a struct fl_watch of the same backend (above). The uffd backends
 * forget what the program unmaps; under MPROTECT remove a range before
 * unmapping it. Thread-safe. See fl_watch_manager_new(3).
 */
struct fl_watch_manager;

struct fl_watch_manager_opts {
	size_t sz;			/* sizeof(struct fl_watch_manager_opts) */
	enum fl_watch_backend backend;	/* FL_WATCH_AUTO: best available */
	unsigned flags;			/* FL_WATCH_ALLOW_THP */
	fl_log_fn log;			/* NULL: silent */
	void *log_ctx;
};

/* opts may be NULL. Errors: -EINVAL, -EOPNOTSUPP (backend unavailable). */
FL_API int fl_watch_manager_new(const struct fl_watch_manager_opts *opts,
				struct fl_watch_manager **ret_manager);
/* Watch [addr, addr + len) (aligned to its page size; one kind of memory).
 * -EBUSY when it overlaps a watched range or another userfaultfd's. */
FL_API int fl_watch_manager_add(struct fl_watch_manager *manager, void *addr, size_t len);
/* Stop watching the watched parts of [addr, addr + len): whole ranges or
 * parts of them (the rest stays watched, state kept). -ENOENT: nothing
 * watched there; -EINVAL: a cut not aligned to a range's granularity. */
FL_API int fl_watch_manager_remove(struct fl_watch_manager *manager, void *addr, size_t len);
/* fl_watch_get(), fl_watch_reset(), fl_watch_protect() over watched ranges. */
FL_API int fl_watch_manager_get(struct fl_watch_manager *manager, void *addr, size_t len, unsigned flags,
				void **pages, uint64_t *count, size_t *ret_granularity);
FL_API int fl_watch_manager_reset(struct fl_watch_manager *manager, void *addr, size_t len);
FL_API int fl_watch_manager_protect(struct fl_watch_manager *manager, void *addr, size_t len, int prot);
/* fl_watch_prepare_write() over watched ranges (every byte watched). */
FL_API int fl_watch_manager_prepare_write(struct fl_watch_manager *manager, void *addr, size_t len);
/* fl_watch_query() for the manager's ranges (MPROTECT: as for private memory). */
FL_API int fl_watch_manager_query(const struct fl_watch_manager *manager, struct fl_watch_info *info);
FL_API enum fl_watch_backend fl_watch_manager_backend(const struct fl_watch_manager *manager);
/* Stop watching every range. Accepts NULL; returns NULL. */
FL_API struct fl_watch_manager *fl_watch_manager_free(struct fl_watch_manager *manager);

#ifdef __cplusplus
}
#endif
#endif
