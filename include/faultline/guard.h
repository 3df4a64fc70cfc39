/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Guards: fail closed when a page-fault handler in another process dies.
 *
 * The process whose memory is lazy keeps its own reference to its uffd, so
 * the kernel never zero-fills its missing pages when the handler goes away;
 * its faulting threads just wait. A guard, running in that process, watches
 * the handler through a pidfd. When the handler dies it waits `timeout_ms`
 * for a new one (which re-takes the uffd with fl_uffd_recv() or
 * fl_uffd_take(), adopts it with fl_engine_adopt() and calls
 * fl_engine_wake_all(), so every waiting fault is re-delivered), announced
 * to the guard with fl_guard_watch(). If none arrives in time, the guard
 * poisons every page of its ranges that is not present (UFFDIO_POISON), so
 * waiting and later accesses get SIGBUS; without POISON it raises SIGBUS in
 * the process. Either way: never zeros.
 */
#ifndef FAULTLINE_GUARD_H
#define FAULTLINE_GUARD_H

#include <faultline/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_guard;

struct fl_guard_opts {
	size_t sz;			/* sizeof(struct fl_guard_opts) */
	int uffd;			/* required: the process's own uffd (the guard dups it);
					 * no "none" value, 0 is descriptor 0 */
	uint64_t features;		/* features enabled on uffd (UFFD_FEATURE_POISON?) */
	const struct fl_range *ranges;	/* registered lazy ranges (copied) */
	unsigned nr_ranges;
	unsigned timeout_ms;		/* grace period for a new handler; 0 = 5000 */
	/*
	 * Optional: while waiting for a new handler, called from the guard
	 * thread every reconnect_ms (0 = 50) to find one (e.g. reconnect to
	 * a restarted daemon and resume); returns the new handler's pid to
	 * watch, or 0 to keep waiting.
	 */
	pid_t (*reconnect)(void *ctx);
	void *reconnect_ctx;
	unsigned reconnect_ms;
};

enum fl_guard_state {
	FL_GUARD_IDLE = 0,	/* no handler announced yet */
	FL_GUARD_WATCHING = 1,	/* a live handler is being watched */
	FL_GUARD_WAITING = 2,	/* handler died; waiting for a new one */
	FL_GUARD_FAILED = 3,	/* timed out: lazy pages poisoned (SIGBUS) */
};

/* Start the guard thread; it runs when this returns (a fork may follow at once). */
FL_API int fl_guard_new(const struct fl_guard_opts *opts,
			struct fl_guard **ret_guard);
/* Watch handler process `pid` (replacing any previous one). */
FL_API int fl_guard_watch(struct fl_guard *guard, pid_t pid);
FL_API enum fl_guard_state fl_guard_state(const struct fl_guard *guard);
/* Stop the guard thread; does not poison anything. */
FL_API struct fl_guard *fl_guard_free(struct fl_guard *guard);

/*
 * Poison every non-present page of `ranges` in the calling process through
 * `uffd` (what the guard does on timeout). Returns pages poisoned, -errno.
 */
FL_API int64_t fl_poison_absent(int uffd, const struct fl_range *ranges,
				unsigned nr_ranges);

#ifdef __cplusplus
}
#endif
#endif
