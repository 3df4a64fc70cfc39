/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live snapshots: save memory ranges of the calling process into an image
 * (faultline-image(5)) while the application keeps running, without fork().
 *
 * Two strategies:
 *
 *  FL_SNAPSHOT_COW (copy-before-write). The writers are paused once, for a
 *  stall proportional to the pages written since fl_snapshot_new() (the
 *  expensive write-protection of the whole range happens before the pause).
 *  At that instant every page is write-protected; the writers resume; a
 *  background thread streams the pages into the image, and a write to a page
 *  not yet saved blocks until that page has been saved, then proceeds. The
 *  image equals memory at the pause. Extra memory: none beyond the page
 *  cache of the image (a page is saved straight to the image before it is
 *  changed). Built on a synchronous write watch (FL_WATCH_SYNC).
 *
 *  FL_SNAPSHOT_PRECOPY. Everything is copied while the writers run, with a
 *  write watch on; then what was written during that round is copied again,
 *  and so on while the dirty set shrinks (at most max_rounds rounds, or
 *  until a round leaves at most converge_pages written). Finally the
 *  writers are paused for the last dirty set. The image equals memory at
 *  that final pause. With a synchronous watch, the final dirty set is only
 *  write-protected during the pause and saved copy-before-write after it;
 *  otherwise it is copied into memory during the pause (up to 256 MiB,
 *  the rest straight to the image) and written to the image after the
 *  writers resume; its pages are left marked written in the watches (not
 *  re-protected during the pause: that costs more than the copy), so the
 *  next incremental snapshot saves them again. Either way the stall follows
 *  the final dirty set, not the size of memory.
 *
 * Pausing the writers: supply `quiesce` (called with pause = true, then
 * false; from the thread that calls fl_snapshot_start() for COW, from the
 * snapshot's thread for PRECOPY), or pause them yourself around
 * fl_snapshot_begin().
 *
 *   COW, explicit:      new; [pause]; begin; [resume]; wait   (wait starts the
 *                       streaming; or start, then wait)
 *   PRECOPY, explicit:  new; start; wait_ready; [pause]; begin; [resume]; wait
 *   with quiesce:       new; start; wait        (or fl_snapshot_take())
 *
 * The image file appears only when the snapshot completes: a failed or
 * cancelled snapshot leaves nothing at the path. A writer that faults on a
 * page while the snapshot fails (disk full, I/O error, cancel) is released
 * and the write proceeds; the snapshot reports the error. Threads are never
 * left blocked.
 *
 * Incremental snapshots: with `parent` set and a write watch per range
 * (`watches`) that has run since the parent was taken, only the pages
 * written since then are saved; the rest are ABSENT and read from the
 * parent (the image chain; see fl_image_open()). Every snapshot that is
 * given watches resets them at its consistent instant, so the next
 * incremental snapshot picks up from there: take the first (full)
 * snapshot with the watches too. A COW snapshot needs FL_WATCH_SYNC
 * watches for copy-before-write; with another backend it copies the pages
 * written since the parent into memory during the pause (and a full COW
 * snapshot with such watches is refused with -EMEDIUMTYPE: use PRECOPY,
 * or FL_WATCH_SYNC watches).
 *
 * Discarding memory during a snapshot (MADV_DONTNEED, munmap, or a write
 * through another mapping of the same shmem) bypasses write protection:
 * pages discarded before they are saved are saved as they then read
 * (zeros). Do not discard snapshotted ranges until the snapshot is done.
 *
 * Memory: private anonymous, shared memfd/shmem and hugetlb ranges. The
 * ranges must not be registered with another userfaultfd while the
 * snapshot runs (-EBUSY), except through the watches given.
 */
#ifndef FAULTLINE_SNAPSHOT_H
#define FAULTLINE_SNAPSHOT_H

#include <faultline/common.h>
#include <faultline/image.h>
#include <faultline/watch.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_snapshot;

enum fl_snapshot_strategy {
	FL_SNAPSHOT_COW = 0,
	FL_SNAPSHOT_PRECOPY = 1,
};

enum fl_snapshot_phase {
	FL_SNAP_PREPARED = 0,	/* set up; not started */
	FL_SNAP_COPYING = 1,	/* precopy rounds running */
	FL_SNAP_READY = 2,	/* precopy converged: waiting for fl_snapshot_begin() */
	FL_SNAP_STREAMING = 3,	/* consistent instant taken; saving the rest */
	FL_SNAP_DONE = 4,	/* the image is complete and in place */
	FL_SNAP_FAILED = 5,	/* error; nothing at the path */
	FL_SNAP_CANCELLED = 6,
};

struct fl_snapshot_progress {
	size_t sz;			/* sizeof(struct fl_snapshot_progress) */
	enum fl_snapshot_phase phase;
	int error;			/* -errno once FAILED/CANCELLED, else 0 */
	uint64_t pages_total;		/* pages in the ranges */
	uint64_t pages_saved;		/* page copies written to the image (all rounds) */
	uint64_t pages_cow;		/* saved by copy-before-write (a writer waited) */
	uint64_t pages_final;		/* pages in the consistent set at the pause */
	unsigned rounds;		/* precopy rounds done */
	uint64_t dirty_last;		/* pages written during the last round */
	uint64_t stall_ns;		/* time the writers were held inside faultline: from
					 * the pause callback's return to the resume call
					 * (explicit: the time fl_snapshot_begin() took) */
	uint64_t elapsed_ns;		/* start to completion (so far) */
};

/* Pause (pause = true) or resume the writers of the ranges. */
typedef int (*fl_quiesce_fn)(bool pause, void *ctx);
/* Progress, from the snapshot's thread, at most every few milliseconds. */
typedef void (*fl_snapshot_progress_fn)(const struct fl_snapshot_progress *progress, void *ctx);

struct fl_snapshot_opts {
	size_t sz;			/* sizeof(struct fl_snapshot_opts) */
	enum fl_snapshot_strategy strategy;
	const struct fl_range *ranges;	/* page-aligned, one image region each (copied) */
	unsigned nr_ranges;
	unsigned image_flags;		/* FL_IMAGE_LZ4, FL_IMAGE_NO_SYNC */
	const char *parent;		/* incremental: the parent image's path, or NULL */
	struct fl_watch **watches;	/* nr_ranges watches (one per range, covering it), or NULL */
	fl_quiesce_fn quiesce;		/* NULL: the caller pauses around fl_snapshot_begin() */
	void *quiesce_ctx;
	fl_snapshot_progress_fn progress;	/* optional */
	void *progress_ctx;
	unsigned max_rounds;		/* precopy: 0 = 8 */
	uint64_t converge_pages;	/* precopy: 0 = 256 */
	const char *creator;		/* stored in the image header */
	fl_log_fn log;			/* NULL: silent */
	void *log_ctx;
};

/*
 * Prepare a snapshot of opts->ranges into the image at `path`: opens the
 * image writer (temporary file) and, for COW, write-protects the ranges.
 * Errors (each refusal its own, so the code says what to change):
 * -EINVAL (a NULL argument, an unknown strategy, a range not page-aligned
 * or empty), -EMEDIUMTYPE (a full COW snapshot with watches that are not
 * FL_WATCH_SYNC: use PRECOPY or synchronous watches), -ENODATA (`parent`
 * without `watches`), -EBUSY (a range is registered with another
 * userfaultfd), -EOPNOTSUPP (the kernel cannot write-protect this memory),
 * image writer errors (-ENOENT, -ESTALE, -EBADMSG for the parent).
 */
FL_API int fl_snapshot_new(const char *path, const struct fl_snapshot_opts *opts,
			   struct fl_snapshot **ret_snapshot);

/*
 * Start the background work. COW: requires opts->quiesce (which it calls
 * around fl_snapshot_begin()), or that fl_snapshot_begin() was called
 * (-EDEADLK otherwise: nobody can pause the writers).
 * PRECOPY: starts the copy rounds; with opts->quiesce the final pause is
 * taken by the snapshot's thread, otherwise the snapshot waits in
 * FL_SNAP_READY for fl_snapshot_begin(). -EALREADY: started already.
 */
FL_API int fl_snapshot_start(struct fl_snapshot *snap);

/*
 * The writers are paused: take the consistent instant (COW: protect what
 * was written since fl_snapshot_new(); PRECOPY: collect the final dirty
 * set). Returns once the writers may resume. -ESRCH: a PRECOPY snapshot
 * not started yet; -EALREADY: begun already.
 */
FL_API int fl_snapshot_begin(struct fl_snapshot *snap);

/* PRECOPY without quiesce: wait until FL_SNAP_READY (or an error). timeout_ms < 0: forever; -ETIMEDOUT. */
FL_API int fl_snapshot_wait_ready(struct fl_snapshot *snap, int timeout_ms);

/*
 * Wait for completion. A COW snapshot begun (fl_snapshot_begin()) but not
 * started is started first. Returns 0 when the image is in place (its
 * content id in ret_id, optional); -ETIMEDOUT (the snapshot keeps
 * running); -EINVAL (snap NULL); -ESRCH (never started nor begun: nothing
 * would finish); or the snapshot's error: -ECANCELED, -ENOSPC, -EIO or
 * another error of the image writer or the watches, a quiesce callback's
 * error, -ENOMEM, -EAGAIN (its thread could not be created).
 * timeout_ms < 0: forever.
 */
FL_API int fl_snapshot_wait(struct fl_snapshot *snap, int timeout_ms, uint8_t ret_id[FL_IMAGE_ID_LEN]);

/* Stop: blocked writers are released, nothing is left at the path. */
FL_API int fl_snapshot_cancel(struct fl_snapshot *snap);

FL_API int fl_snapshot_progress(const struct fl_snapshot *snap, struct fl_snapshot_progress *progress);

/* Cancels if still running, then frees. Accepts NULL; returns NULL. */
FL_API struct fl_snapshot *fl_snapshot_free(struct fl_snapshot *snap);

/* new + start (+ begin) + wait + free, in one call; needs opts->quiesce
 * (-EDEADLK without). */
FL_API int fl_snapshot_take(const char *path, const struct fl_snapshot_opts *opts,
			    uint8_t ret_id[FL_IMAGE_ID_LEN]);

#ifdef __cplusplus
}
#endif
#endif
