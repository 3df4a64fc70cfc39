/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Snapshot images (format v1, see faultline-image(5)).
 *
 * An image holds regions (start address, length, protection, memory type,
 * name) and, per page, one of: absent (incremental images: see the parent),
 * zero (takes no space), or data (an XXH3-64 checksum of the page, optional
 * LZ4 compression). Uncompressed data is page-aligned in the file so it can
 * be mapped straight from it. An end record carries a checksum over the
 * region table and the page index; the header carries its own checksum.
 *
 * Writing is atomic: pages go to a temporary file beside the target (space
 * reserved up front when the size is known), which is fsync'ed and renamed
 * over the target only by fl_image_writer_finish(). An error or
 * fl_image_writer_abort() leaves no partial image.
 *
 * Errors specific to images: -EBADMSG (corrupt: bad checksum, bad
 * structure), -EPROTO (wrong magic or unsupported version), -ESTALE (the
 * parent image does not match the content id the child names), -ENOSPC,
 * -EOPNOTSUPP (LZ4: a library built without LZ4 support, -Dlz4=disabled,
 * writes no compressed image and reads no compressed page; such a read
 * fails, it never returns other bytes).
 */
#ifndef FAULTLINE_IMAGE_H
#define FAULTLINE_IMAGE_H

#include <faultline/common.h>
#include <faultline/store.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_image;
struct fl_image_writer;

#define FL_IMAGE_ID_LEN 16

/* Page kinds in the index. */
enum fl_page_kind {
	FL_PAGE_ABSENT = 0,	/* not in this image: read the parent (or: not captured) */
	FL_PAGE_ZERO = 1,
	FL_PAGE_DATA = 2,
};

/* Writer flags. */
#define FL_IMAGE_LZ4		(1u << 0)	/* compress data pages with LZ4 when it saves space */
#define FL_IMAGE_NO_SYNC	(1u << 1)	/* skip fsync (tests, scratch images) */

struct fl_image_writer_opts {
	size_t sz;			/* sizeof(struct fl_image_writer_opts) */
	unsigned flags;			/* FL_IMAGE_* */
	const char *parent;		/* path of the parent image (incremental), or NULL */
	uint64_t reserve_bytes;		/* space to reserve up front (0: estimate from regions) */
	const char *creator;		/* free text stored in the header (tool, host) */
};

/*
 * Region descriptor, used for writing and returned when reading. It can
 * grow like an options struct: set sz before passing it, in both
 * directions (fl_image_region() fills at most sz bytes and zeroes the
 * bytes of a larger struct past what it knows).
 */
struct fl_image_region {
	size_t sz;			/* sizeof(struct fl_image_region) */
	uint64_t start;			/* address the region had (informational) */
	uint64_t length;		/* bytes, a multiple of the page size */
	uint32_t prot;			/* PROT_* */
	uint32_t mem;			/* enum fl_mem_type */
	char name[64];
};

/*
 * Start writing an image to `path` (created on finish). Regions must be
 * added before pages. With opts->parent, the new image is incremental:
 * pages never written are ABSENT and read from the parent, whose content
 * id is recorded (its region table must match).
 */
FL_API int fl_image_writer_new(const char *path, const struct fl_image_writer_opts *opts,
			       struct fl_image_writer **ret_writer);
/* Add a region; returns its index (>= 0). */
FL_API int fl_image_writer_add_region(struct fl_image_writer *w, const struct fl_image_region *region);
/*
 * Write `npages` pages starting at page `first` of region `region`, from
 * `data` (page-size bytes each). Pages may arrive in any order, and a page
 * written twice keeps the last copy. All-zero pages are stored as ZERO.
 * Thread-safe (a snapshot feeds it from several threads).
 */
FL_API int fl_image_writer_put(struct fl_image_writer *w, unsigned region, uint64_t first,
			       uint64_t npages, const void *data);
/* Mark pages as zero without data. */
FL_API int fl_image_writer_put_zero(struct fl_image_writer *w, unsigned region, uint64_t first,
				    uint64_t npages);
/*
 * Write the index and end record, fsync, and rename into place. On success
 * *ret_id (optional) receives the image's content id. The writer is freed
 * whatever the result; on failure nothing is left at `path` that was not
 * there before.
 */
FL_API int fl_image_writer_finish(struct fl_image_writer *w, uint8_t ret_id[FL_IMAGE_ID_LEN]);
/* Discard everything written; frees the writer. Accepts NULL. */
FL_API struct fl_image_writer *fl_image_writer_abort(struct fl_image_writer *w);
/*
 * The temporary file the writer writes to (beside the target, created by
 * fl_image_writer_new()), valid until finish or abort. The library installs
 * no signal handlers: a program that wants no temporary file left when a
 * signal ends it copies this path and unlink(2)s it from its handler
 * (async-signal-safe, unlike abort, which frees memory). After finish the
 * path no longer exists (it was renamed to the target). NULL for NULL.
 */
FL_API const char *fl_image_writer_temp_path(const struct fl_image_writer *w);

/*
 * Convenience: write one region per memory range of the calling process
 * (`ranges[i]` gives address and length), in one call.
 */
FL_API int fl_image_write_ranges(const char *path, const struct fl_range *ranges, unsigned n,
				 const struct fl_image_writer_opts *opts);

/* Open flags. */
#define FL_IMAGE_OPEN_NO_PARENT	(1u << 0)	/* do not resolve the parent chain */
#define FL_IMAGE_OPEN_VERIFY	(1u << 1)	/* verify every page checksum at open */

/*
 * Open an image for random access; checks the header, region table, index
 * and end-record checksums, and opens the parent chain (the parent path is
 * recorded relative to the child's directory). The image comes with one
 * reference, the caller's.
 */
FL_API int fl_image_open(const char *path, unsigned flags, struct fl_image **ret_image);
/*
 * Images are reference counted like stores: image stores and page servers
 * hold a reference, a child image holds one on its parent. The image is
 * closed (descriptor, tables) when the last reference goes. Both accept
 * NULL and unref returns NULL; the count is atomic (any thread).
 */
FL_API struct fl_image *fl_image_ref(struct fl_image *img);
FL_API struct fl_image *fl_image_unref(struct fl_image *img);
/* Drop the reference fl_image_open() gave (the same as fl_image_unref()). */
FL_API struct fl_image *fl_image_close(struct fl_image *img);

struct fl_image_info {
	size_t sz;			/* sizeof(struct fl_image_info) */
	uint32_t version;
	uint32_t page_size;
	uint32_t flags;
	uint32_t nregions;
	uint64_t created_ns;		/* CLOCK_REALTIME at creation */
	char creator[64];
	uint8_t id[FL_IMAGE_ID_LEN];
	uint8_t parent_id[FL_IMAGE_ID_LEN];	/* all zero when not incremental */
	char parent_path[256];
	uint64_t pages_total, pages_data, pages_zero, pages_absent, pages_lz4;
	uint64_t file_bytes, data_bytes;
	unsigned chain_depth;		/* 0: no parent */
};
FL_API int fl_image_info(const struct fl_image *img, struct fl_image_info *info);
FL_API int fl_image_region(const struct fl_image *img, unsigned index, struct fl_image_region *ret_region);
/* The parent image, or NULL: borrowed, valid while img is (take a
 * reference with fl_image_ref() to keep it longer). */
FL_API struct fl_image *fl_image_parent(const struct fl_image *img);

/*
 * Read pages [first, first+npages) of a region into buf, resolving the
 * chain, decompressing, and verifying every checksum. Returns 0, -EBADMSG
 * when a page's data is corrupt (*ret_bad_page, optional, gets its index),
 * -ENOENT when a page is absent from the whole chain, -EOPNOTSUPP when a
 * page is LZ4-compressed and the library was built without LZ4.
 */
FL_API int fl_image_read(const struct fl_image *img, unsigned region, uint64_t first,
			 uint64_t npages, void *buf, uint64_t *ret_bad_page);
/* Kind of one page after resolving the chain. */
FL_API int fl_image_page_kind(const struct fl_image *img, unsigned region, uint64_t page);

/*
 * Verify every checksum of the image and its chain. Returns 0, or -EBADMSG
 * with the number of bad pages in *ret_bad (optional). `progress` (optional)
 * is called with pages done / total.
 */
typedef void (*fl_progress_fn)(uint64_t done, uint64_t total, void *ctx);
FL_API int fl_image_verify(const struct fl_image *img, uint64_t *ret_bad,
			   fl_progress_fn progress, void *ctx);

/*
 * A store over one region of an image, for lazy regions. Runs of pages are
 * read in large batches; a page whose checksum fails makes the read fail
 * (-EBADMSG), so the engine poisons it: never wrong or zero data. The store
 * holds a reference to the image: the caller may close it at once.
 */
FL_API int fl_image_store_new(struct fl_image *img, unsigned region, struct fl_store **ret_store);

/* Eagerly copy a region's bytes into memory at `dst` (length of the region). */
FL_API int fl_image_restore(const struct fl_image *img, unsigned region, void *dst);

/* Format a content id as 32 hex characters plus NUL. */
FL_API void fl_image_id_format(const uint8_t id[FL_IMAGE_ID_LEN], char out[2 * FL_IMAGE_ID_LEN + 1]);

#ifdef __cplusplus
}
#endif
#endif
