/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the snapshot code needs from a write watch beyond the public API:
 * a hook that runs in the SYNC backend's fault thread before a written page
 * is made writable, so a copy-on-write snapshot can save the page's old
 * contents first (copy-before-write).
 */
#ifndef FL_WATCH_INTERNAL_H
#define FL_WATCH_INTERNAL_H

#include <faultline/watch.h>

#include "kernel.h"

#include <pthread.h>

/*
 * Called with [addr, addr + len) still write-protected (len is the
 * granularity: one page, or one huge page), before the watch records the
 * page as written and unprotects it. The faulting thread is blocked until
 * the hook returns. A negative return does not block the writer: the watch
 * still unprotects and wakes it (never leave a thread hanging); the hook's
 * owner records the error itself. For a write to an unpopulated page the
 * page reads as zeros when the hook runs.
 */
typedef int (*fl__watch_hook_fn)(void *ctx, uint64_t addr, uint64_t len);

/*
 * Install (fn != NULL) or remove (fn == NULL) the hook. SYNC backend only
 * (-EOPNOTSUPP otherwise). Removing returns only once no hook call is
 * running, so the caller may free ctx afterwards.
 */
int fl__watch_set_hook(struct fl_watch *watch, fl__watch_hook_fn fn, void *ctx);

/*
 * SYNC only: get and reset written granules of the whole watch like
 * fl_watch_get(FL_WATCH_RESET), calling fn(ctx, addr) for each while the
 * fault thread is held off, before they are re-protected. The hook runs
 * under the same lock, so it sees what fn did.
 */
int fl__watch_get_mark(struct fl_watch *watch, void **pages, uint64_t *count,
		       void (*fn)(void *ctx, uint64_t addr), void *ctx);

/*
 * What the userfaultfd backends share between the watches of one manager
 * (fl_watch_manager_new(3)), or own alone: one uffd, one pagemap fd, at
 * most one thread serving faults (SYNC) and REMOVE events (SYNC; ASYNC on
 * shmem and hugetlb).
 */
struct fl__watch_svc {
	int uffd;
	int pagemap_fd;
	int stop_fd;
	bool user_mode_only;		/* UFFD_USER_MODE_ONLY (unprivileged) */
	pthread_t thread;
	bool thread_started;
	_Atomic uint64_t batches_started, batches_done;	/* messages read / handled */
	/* Calls fn(w, arg) for each watch overlapping [start, end), holding
	 * whatever keeps those watches alive meanwhile. */
	void (*each)(void *ctx, uint64_t start, uint64_t end, void (*fn)(struct fl_watch *w, void *arg),
		     void *arg);
	/* [start, end) was unmapped (UFFD_EVENT_UNMAP; a manager's svc). Must
	 * not wait for anything a get or reset holds (they wait for it). */
	void (*unmapped)(void *ctx, uint64_t start, uint64_t end);
	void *each_ctx;
};

struct fl_watch {
	enum fl_watch_backend backend;
	uint64_t start, len;
	size_t gran;			/* page or huge page */
	uint64_t ngran;
	enum fl_mem_type mem;
	bool shared;			/* MAP_SHARED (memfd, shmem, shared hugetlb) */
	struct fl__logger log;
	/* Serialises get/reset with each other and (SYNC) with the fault
	 * thread's record-and-unprotect. */
	pthread_mutex_t lock;
	/* SYNC, MPROTECT: one bit per granule written since its reset.
	 * ASYNC: granules discarded (REMOVE events) since their reset, which
	 * PAGEMAP_SCAN does not report on shmem and hugetlb. */
	_Atomic uint64_t *dirty;
	/* dirty's summary (fl__sbit_next()): a get over a clean gigabyte
	 * reads 4 words, not 4096, so its cost follows the pages written,
	 * not the size of the range. */
	_Atomic uint64_t *dirty_sum;
	/* ASYNC, SYNC: the userfaultfd, pagemap fd and service thread, the
	 * watch's own (own_svc) or its manager's, shared by many watches. */
	struct fl__watch_svc *svc;
	struct fl__watch_svc own_svc;
	bool registered;
	bool missing_reg;		/* SYNC without WP_UNPOPULATED */
	void *zero_buf;			/* a zero granule, for MISSING faults */
	pthread_rwlock_t hook_lock;
	fl__watch_hook_fn hook;
	void *hook_ctx;
	/* MPROTECT */
	int mp_slot;			/* index in the process-wide table, -1 */
	_Atomic int mp_resetting;
	/* The application's protection of each granule (PROT_* bits), as
	 * fl_watch_protect() last set it: a clean granule is mapped with it
	 * minus PROT_WRITE, a written one with it. */
	_Atomic uint8_t *app_prot;
};

/* The service of a uffd: create it (UFFDIO_API with feat; a pagemap fd
 * for ASYNC), start and stop its thread, close it. */
int fl__watch_svc_init(struct fl__watch_svc *svc, enum fl_watch_backend backend, uint64_t feat);
int fl__watch_svc_start(struct fl__watch_svc *svc);
void fl__watch_svc_stop(struct fl__watch_svc *svc);
/* Wait until every message read before this call has been handled. */
void fl__watch_svc_settle(struct fl__watch_svc *svc);
void fl__watch_svc_close(struct fl__watch_svc *svc);
/* What a new watch is: backend (not AUTO), memory, and the svc to share
 * (NULL: its own). */
struct fl__watch_desc {
	enum fl_watch_backend backend;
	enum fl_mem_type mem;
	bool shared;
	bool allow_thp;
	size_t gran;
	int prot;		/* MPROTECT: the range's protection, -1: read it from smaps */
	struct fl__logger log;
	struct fl__watch_svc *svc;
};
enum fl_watch_backend fl__watch_pick_backend(enum fl_watch_backend b);
/* The uffd features a manager's svc needs for every memory kind. */
int fl__watch_svc_features(enum fl_watch_backend backend, uint64_t *ret_feat);
/* Watch [start, start + len), validated by the caller. */
int fl__watch_create(uint64_t start, uint64_t len, const struct fl__watch_desc *d, struct fl_watch **ret_watch);
/* A copy of part of w (registration, bits, protections), for splitting;
 * NULL on ENOMEM. Not registered anywhere (MPROTECT: not in the table). */
struct fl_watch *fl__watch_piece(struct fl_watch *w, uint64_t start, uint64_t len);
/* ASYNC without discard bitmaps (anon): get / reset [start, start + len),
 * which may reach past `first` into adjacent watches on the same svc (the
 * caller checked they cover it): one PAGEMAP_SCAN for all of them. */
int fl__watch_span_get(struct fl_watch *first, uint64_t start, uint64_t len, bool reset, void **pages,
		       uint64_t *count);
int fl__watch_span_reset(struct fl_watch *first, uint64_t start, uint64_t len);
/* fl_watch_prepare_write(), in two steps (a manager checks its ranges
 * under its lock and touches after): -EACCES unless the application's
 * protection lets it write all of [start, end) (maps_fd: an open
 * /proc/self/maps for PROCMAP_QUERY, or -1 to open one); then a
 * value-preserving write to each granule from start (granule-aligned). */
int fl__watch_writable(const struct fl_watch *w, int maps_fd, uint64_t start, uint64_t end);
void fl__watch_touch(uint64_t start, uint64_t end, size_t gran);
/* Register w's range on w->svc's uffd and write-protect it. */
int fl__watch_register(struct fl_watch *w);
/* Unregister (or unprotect) w's range and free w; the svc stays. */
void fl__watch_release(struct fl_watch *w);

/* Memory type, page size and protection (-1 when it varies) of a range that
 * one kind of memory covers completely (-EINVAL: a hole, or mixed kinds). */
int fl__range_info(uint64_t addr, uint64_t len, enum fl_mem_type *ret_mem, size_t *ret_psz,
		   int *ret_prot);

/* Like fl__range_info(), and also: each(ctx, lo, hi, prot) for every mapping
 * piece of the range (clipped to it), and *ret_shared, and *ret_maywrite
 * (every mapping could be made writable: VM_MAYWRITE). */
int fl__range_scan(uint64_t addr, uint64_t len, enum fl_mem_type *ret_mem, size_t *ret_psz, bool *ret_shared,
		   bool *ret_maywrite, void (*each)(void *ctx, uint64_t lo, uint64_t hi, int prot), void *ctx);

void fl__watch_mark(struct fl_watch *w, uint64_t granule);

/* watch-mprotect.c */
typedef int (*fl__watch_get_fn)(struct fl_watch *w, uint64_t first, uint64_t n, bool reset,
				void **pages, uint64_t *count);
typedef int (*fl__watch_reset_fn)(struct fl_watch *w, uint64_t first, uint64_t n);
int fl__watch_mp_start(struct fl_watch *w);
void fl__watch_mp_stop(struct fl_watch *w);
int fl__watch_mp_protect(struct fl_watch *w, uint64_t addr, uint64_t len);
int fl__watch_mp_get(struct fl_watch *w, uint64_t first, uint64_t n, bool reset, void **pages,
		     uint64_t *count, fl__watch_get_fn get);
int fl__watch_mp_reset(struct fl_watch *w, uint64_t first, uint64_t n, fl__watch_reset_fn reset);
/* The granules' initial protections; before fl__watch_mp_start(). */
void fl__watch_mp_init_prot(void *w, uint64_t lo, uint64_t hi, int prot);
int fl__watch_mp_set_prot(struct fl_watch *w, uint64_t first, uint64_t n, int prot);
/* Put pieces (from fl__watch_piece()) in old's place in the table and give
 * [cut_start, cut_start + cut_len) the application's protection back; old
 * then holds no slot. */
int fl__watch_mp_replace(struct fl_watch *old, struct fl_watch **pieces, unsigned n, uint64_t cut_start,
			 uint64_t cut_len);
/* -EBUSY when [start, start + len) overlaps an MPROTECT watch. */
int fl__watch_mp_overlaps(uint64_t start, uint64_t len);

#endif
