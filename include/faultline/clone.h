/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Copy-on-write clones and fast resets.
 *
 * A template holds an image's bytes in a memfd (page cache), filled lazily
 * from a store: pages nobody touches are never read. A clone maps the
 * template MAP_PRIVATE, registered for MINOR faults, and is resolved with
 * UFFDIO_CONTINUE: every clone shares the template's physical pages until
 * it writes one, and then the kernel copies that page for it. Creating a
 * clone maps nothing and copies nothing, so it costs the same for 1 MiB and
 * for 1 GiB. Clones can live in other processes: send them
 * fl_template_fd() and let them open a template over it.
 *
 * fl_clone_reset() reverts a clone to its template in time proportional to
 * the pages it wrote: its private copies are found by tracking first
 * writes (Linux 6.4+, while few pages are written per reset) or by a
 * page-table scan (PAGEMAP_SCAN or /proc/self/pagemap), dropped with
 * MADV_DONTNEED, and the template's pages are mapped again with
 * UFFDIO_CONTINUE.
 *
 * A reset point (fl_reset_point_new()) does the same for any writable
 * memory, anonymous included: it saves a copy of the range and runs a write
 * watch (fl_watch_new(3)); a reset copies back exactly the pages written
 * since. It is the helper behind persistent-mode fuzzing: set it after the
 * target's initialisation, run an input, reset (see examples/fuzz-target.c).
 */
#ifndef FAULTLINE_CLONE_H
#define FAULTLINE_CLONE_H

#include <faultline/common.h>
#include <faultline/store.h>
#include <faultline/engine.h>
#include <faultline/region.h>
#include <faultline/watch.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_template;
struct fl_reset_point;

/*
 * fl_template_opts flags. Descriptor fields follow one rule across the API:
 * an fd field is read only when a flag says it is set (FL_TEMPLATE_MEMFD,
 * FL_REGION_MEMFD), because 0 is a valid descriptor and a zeroed struct
 * must mean "none".
 */
#define FL_TEMPLATE_MEMFD	(1u << 0)	/* use opts.memfd instead of creating one */

struct fl_template_opts {
	size_t sz;			/* sizeof(struct fl_template_opts) */
	enum fl_mem_type mem;		/* FL_MEM_SHMEM or FL_MEM_HUGETLB (FL_MEM_ANON means SHMEM) */
	struct fl_store *store;		/* where the bytes come from (a reference is taken) */
	uint64_t store_offset;		/* store byte of the template's first byte */
	size_t length;			/* bytes; 0: the store's size from store_offset */
	unsigned flags;			/* FL_TEMPLATE_* */
	int memfd;			/* with FL_TEMPLATE_MEMFD: the page cache of an existing
					 * template (fl_template_fd() from another process;
					 * dup'ed); without it, ignored: a new one is made */
	const char *name;
};

/*
 * Create a template. Nothing is read from the store here: pages enter the
 * page cache when a clone first touches them. Errors: -EINVAL (no store,
 * zero length, a memfd of the wrong size), memfd_create errors.
 */
FL_API int fl_template_new(const struct fl_template_opts *opts, struct fl_template **ret_template);
/* The template's memfd, to send to processes that make clones. */
FL_API int fl_template_fd(const struct fl_template *tpl);
FL_API size_t fl_template_length(const struct fl_template *tpl);
/* Clones keep what they need; the template may be freed before them. */
FL_API struct fl_template *fl_template_free(struct fl_template *tpl);

struct fl_clone_opts {
	size_t sz;			/* sizeof(struct fl_clone_opts) */
	unsigned flags;			/* FL_REGION_NO_PREFETCH, FL_REGION_BACKGROUND */
	unsigned prefetch_max;		/* pages per fault; 0: the region default */
	const char *name;
};

/*
 * A new clone of `tpl`, served by `engine`: a struct fl_region (MINOR mode,
 * FL_REGION_PRIVATE) whose memory is fl_region_addr(). Free it with
 * fl_region_free(). opts may be NULL.
 */
FL_API int fl_clone_new(struct fl_engine *engine, const struct fl_template *tpl,
			const struct fl_clone_opts *opts, struct fl_region **ret_clone);

struct fl_reset_stats {
	size_t sz;			/* sizeof(struct fl_reset_stats) */
	uint64_t pages_dirty;		/* 4 KiB pages found written: a clone's private
					 * copies, a reset point's pages written */
	uint64_t pages_dropped;		/* clones: of pages_dirty, the 4 KiB pages whose
					 * private copies were freed (all of them, unless
					 * the reset failed) */
	uint64_t pages_copied;		/* reset points: 4 KiB pages copied back */
	uint64_t runs;			/* spans handled (dirty runs less than 16 pages
					 * apart are one span) */
	uint64_t ns;			/* time taken */
};

/*
 * Revert a clone to its template: every page it wrote reads the template's
 * bytes again, and its private copies are freed (dropped with MADV_DONTNEED,
 * runs less than 16 pages apart as one span; the template's pages mapped
 * again at once with UFFDIO_CONTINUE). The pages written are found one of
 * two ways, chosen at every reset by what each costs for what the program
 * writes: tracking (Linux 6.4+: pages mapped write-protected, each first
 * write a WP fault to the engine, and a reset costs what was written,
 * whatever the clone's size) or scanning (first writes are plain
 * copy-on-write in the kernel, and a reset walks the clone's page tables).
 * The ranges reset are briefly unregistered from the engine's uffd: no
 * thread may touch the clone during a reset. stats (optional, set its sz)
 * says what was done. -EINVAL: not a clone (or a clone in another process).
 */
FL_API int fl_clone_reset(struct fl_region *clone, struct fl_reset_stats *stats);

/*
 * Save [addr, addr + len) (writable memory of one kind: anonymous, shmem,
 * hugetlb; page-aligned) as it is now, and start watching it for writes.
 * Memory: one copy of the range; of private anonymous memory, a copy of
 * the pages it holds (an untouched page reads zeros in both). Errors:
 * those of fl_watch_new(3).
 */
FL_API int fl_reset_point_new(void *addr, size_t len, struct fl_reset_point **ret_point);
/*
 * Copy back the saved bytes of exactly the pages written since the point
 * was set (or last reset). Call it while no thread writes the range.
 *
 * Cost: where the kernel has WP_ASYNC (Linux 6.7+) the point chooses, at
 * every reset, how it finds the written pages: tracking first writes as
 * they happen (FL_WATCH_SYNC: a reset costs what was written, whatever
 * the size of the range; each first write is a fault to a thread) or
 * scanning page tables at the reset (FL_WATCH_ASYNC: first writes cost
 * only the kernel's fault; a reset walks the whole range). It tracks while
 * few pages are written per reset and scans when many are; both are exact.
 */
FL_API int fl_reset_point_reset(struct fl_reset_point *point, struct fl_reset_stats *stats);
/* How the point finds written pages now: FL_WATCH_SYNC or _ASYNC (above),
 * or _MPROTECT; FL_WATCH_AUTO for NULL. */
FL_API enum fl_watch_backend fl_reset_point_backend(const struct fl_reset_point *point);
FL_API struct fl_reset_point *fl_reset_point_free(struct fl_reset_point *point);

#ifdef __cplusplus
}
#endif
#endif
