/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Working sets: record the order in which a restore first touches its
 * pages, and replay it on the next restore (as REAP does for serverless
 * cold starts).
 *
 * Recording: fl_region_record() makes a region note every page on its first
 * demand fault, in fault order. While it records, the region resolves
 * exactly the faulting page (no prefetch), so every first touch is a fault
 * and nothing is guessed. fl_region_record_stop() returns the order as a
 * working set; fl_working_set_save() writes it to a small file, normally
 * beside the image (IMAGE.ws): 4 bytes per page plus a 64-byte header that
 * names the image (its content id), the region, and checksums.
 *
 * Replay: fl_region_replay() starts a thread that installs the set's pages
 * in recorded order, in batches of up to 512 pages (sorted and merged into
 * runs within a batch), while the application runs; pages it has not
 * reached yet are served lazily by demand faults as usual, and pages
 * outside the set stay lazy. A replay only ever installs the store's bytes,
 * so a wrong working set costs time, never correctness.
 *
 * fl_working_set_load() validates a file completely: a file that is not a
 * working set (-EPROTO), is corrupt (-EBADMSG) or was recorded against
 * another image, region or page size (-ESTALE) is refused; the caller should
 * warn and restore without it (the CLI does).
 */
#ifndef FAULTLINE_WORKINGSET_H
#define FAULTLINE_WORKINGSET_H

#include <faultline/common.h>
#include <faultline/region.h>
#include <faultline/image.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_working_set;

/*
 * Start recording first touches of `region`. Record on a region restored
 * without FL_REGION_BACKGROUND and without fl_region_populate(): pages that
 * never fault are never seen. Errors: -EINVAL, -EALREADY (this region has
 * recorded already), -EFBIG (more than 2^32 - 1 pages), -ENOMEM.
 */
FL_API int fl_region_record(struct fl_region *region);
/*
 * Stop recording and return what was recorded (pages in first-touch order).
 * The region goes back to its normal prefetching. -EINVAL when the region
 * was not recording.
 */
FL_API int fl_region_record_stop(struct fl_region *region, struct fl_working_set **ret_ws);

/*
 * Write `ws` to `path` atomically (a temporary file, fsync, rename). `img`
 * and `img_region` name the image it belongs to (img may be NULL: the file is
 * then bound only to the region's size and page size).
 */
FL_API int fl_working_set_save(const struct fl_working_set *ws, const char *path,
			       const struct fl_image *img, unsigned img_region);
/*
 * Read and validate a working-set file against `img` and `img_region` (img
 * NULL: no image check). Errors: -ENOENT and other open/read errors,
 * -EPROTO (not a working-set file, or a version this library does not
 * read), -EBADMSG (corrupt: size, checksum, or a page out of range),
 * -ESTALE (recorded against another image, region or page size).
 */
FL_API int fl_working_set_load(const char *path, const struct fl_image *img, unsigned img_region,
			       struct fl_working_set **ret_ws);
/* Pages in the set, and its page size. */
FL_API size_t fl_working_set_pages(const struct fl_working_set *ws);
FL_API size_t fl_working_set_page_size(const struct fl_working_set *ws);
FL_API struct fl_working_set *fl_working_set_free(struct fl_working_set *ws);

/*
 * Start replaying `ws` into `region` in the background (a thread owned by
 * the region; ws may be freed on return). Call it right after
 * fl_region_new(), before the application touches the memory. Errors:
 * -EINVAL, -ESTALE (the set's page size or region size differs from the
 * region's), -EBUSY (a replay already runs), thread creation errors.
 * Store errors during replay are left to demand faults, which fail closed.
 */
FL_API int fl_region_replay(struct fl_region *region, const struct fl_working_set *ws);
/*
 * Wait until the replay has installed the whole set (or stopped), and
 * return how many pages it installed (pages already present are not
 * counted). 0 when no replay was started. fl_region_free() stops a replay
 * that still runs.
 */
FL_API int64_t fl_region_replay_wait(struct fl_region *region);

#ifdef __cplusplus
}
#endif
#endif
