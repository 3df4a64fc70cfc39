/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * First-class address spaces (SpaceJMP; the Linux "VAS" RFC), in process.
 *
 * An address space is an object that lives apart from the processes that
 * use it: a named set of *segments*, each a range [base, base + length) at
 * a fixed virtual address, plus named *roots* (name -> pointer) so a
 * program finds its data after attaching. Because every segment sits at
 * the same address wherever it is attached, pointer-rich data (trees,
 * graphs, hash tables) needs no serialisation and no pointer swizzling:
 * attach, read a root, follow pointers.
 *
 * A segment is a memfd page cache (shmem, or hugetlbfs with 2 MiB pages)
 * filled lazily from a store: zeros for a new segment, the segment's
 * image for a saved one, or any store the caller gives (a page server's,
 * Redis: see fl_segment_opts.store). fl_space_export() writes a version
 * as one image, one region per segment, for the tools that take images. It is the template of <faultline/clone.h>; an
 * attachment is a MINOR-mode region of <faultline/region.h> over it, so
 * attaching costs O(segments), never O(bytes): a page enters the page
 * cache on first touch (filled atomically, then mapped with
 * UFFDIO_CONTINUE). A segment can belong to several spaces.
 *
 * Lifetime: a transient space (opts.dir NULL) is gone when freed; a
 * persistent space is a directory holding a manifest (segments and, per
 * version, the roots and one image per segment) and the images, written
 * atomically (temporary file, fsync, rename). fl_space_commit() adds a
 * version; fl_space_open() opens a directory at its latest version.
 *
 * Attach (fl_space_attach()) maps every segment at its base with
 * MAP_FIXED_NOREPLACE: a range already in use is -EEXIST and nothing is
 * mapped. FL_ATTACH_PRIVATE maps copy-on-write (writes stay in this
 * attachment and are dropped at detach), otherwise shared (writes go to
 * the segment: every attachment of it sees them, at once);
 * FL_ATTACH_RDONLY maps read-only. Faults are served by an engine
 * (<faultline/engine.h>) the space creates at its first attach, with one
 * handler thread (see fl_space_switch() for why one).
 *
 * Switch (fl_space_switch()) replaces the attached space by another whose
 * segments cover the same ranges, segment by segment: the new mapping is
 * made and registered elsewhere, then moved over the old one with
 * mremap(MREMAP_FIXED), which carries the userfaultfd registration along
 * (a plain MAP_FIXED would leave a moment in which the range is mapped but
 * not registered, and a fault there would put a zero page into the
 * segment). Another thread reading a segment sees the old mapping or the
 * new one, never a hole and never zeros: a fault in between waits for the
 * engine. On Linux a switch is per process, not per thread: every thread
 * of the process sees the new space after the call (the kernel has one
 * page-table root per process; a per-thread root needs the kernel changes
 * the VAS RFC proposed). A thread may read a mix of old and new segments
 * during the call (each segment is replaced atomically, not all at once).
 *
 * Versions (persistent spaces): fl_space_commit() saves the segments as
 * version N + 1: one image per segment, incremental against version N
 * (pages never brought into the page cache since the space was opened, by
 * this process or another sharing it, are the previous version's and are
 * not written again), then the manifest, atomically. A plain commit is
 * consistent when no thread writes the space during the copy: pass a
 * `quiesce` callback that pauses the writers (the pause lasts for the copy
 * of the pages in memory, not the whole space), or stop them yourself.
 * FL_COMMIT_LIVE saves the space as it was at one instant while the
 * writers of this process keep running (copy-before-write on userfaultfd
 * write-protect faults); writers in other processes that share the
 * segments are not covered (see fl_space_commit()). A crash at any point
 * leaves the previous version intact. fl_space_attach() with opts.version attaches an older version,
 * read-only or private. fl_space_fork() makes a new space that starts as a
 * version of another: nothing is copied at fork; a page is read from the
 * origin's image on first touch, and writes stay in the fork.
 *
 * Sharing between processes of any user goes through faultlined(8): see
 * fl_client_space_attach(3) in <faultline/client.h>. The daemon opens a
 * persistent space (a directory of its --spaces directory) once, owns its
 * segments' page caches and serves every attached process, checks the
 * space directory's owner and mode like a file's (read-only, read-write,
 * commit), and commits with fl_space_commit() on the client's behalf.
 *
 * Thread safety: the functions of one space are not to be called
 * concurrently; the attached memory may be used by any thread.
 */
#ifndef FAULTLINE_SPACE_H
#define FAULTLINE_SPACE_H

#include <faultline/common.h>
#include <faultline/image.h>
#include <faultline/region.h>
#include <faultline/store.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_space;

#define FL_SPACE_NAME_MAX 47	/* name bytes: segments, roots, spaces */
#define FL_SPACE_ROOTS_MAX 64

struct fl_space_opts {
	size_t sz;			/* sizeof(struct fl_space_opts) */
	const char *name;		/* [A-Za-z0-9._-], 1 to FL_SPACE_NAME_MAX bytes */
	const char *dir;		/* NULL: transient; else a new directory (persistent) */
	unsigned flags;			/* FL_SPACE_* */
	fl_log_fn log;			/* NULL: silent; says why a call failed */
	void *log_ctx;
};

#define FL_SPACE_NO_SYNC	(1u << 0)	/* persistent: no fsync (tests, scratch spaces) */

/*
 * Create an empty space. With opts->dir, a persistent one: the directory
 * is created (its parent must exist) with a manifest of no version.
 * Errors: -EINVAL (bad name or flags), -EEXIST (dir exists), mkdir and
 * write errors.
 */
FL_API int fl_space_new(const struct fl_space_opts *opts, struct fl_space **ret_space);

/*
 * Open the persistent space in `dir` at its latest version: the manifest
 * is read and checked (format, version, checksum), every segment's image
 * of that version is opened (header, index and chain checked), and the
 * segments are made, empty: their pages come from the images on first
 * touch. opts may be NULL (its name and dir are ignored: the manifest's
 * are used). Errors: -ENOENT (no manifest, or a segment image missing),
 * -EBADMSG (a corrupt or truncated manifest or image), -EPROTONOSUPPORT
 * (a manifest format this build does not know), -EINVAL (the manifest
 * describes overlapping or unaligned segments).
 */
FL_API int fl_space_open(const char *dir, const struct fl_space_opts *opts, struct fl_space **ret_space);

/* Detach (if attached) and free. Committed versions stay on disk. Accepts NULL. */
FL_API struct fl_space *fl_space_free(struct fl_space *space);

struct fl_segment_opts {
	size_t sz;			/* sizeof(struct fl_segment_opts) */
	const char *name;		/* unique in the space; as a space name */
	uint64_t base;			/* page-aligned (2 MiB for hugetlb), in the user range */
	uint64_t length;		/* bytes, a multiple of the page size */
	enum fl_mem_type mem;		/* FL_MEM_SHMEM (or ANON, meaning SHMEM) or FL_MEM_HUGETLB */
	unsigned flags;			/* none yet: 0 */
	/* NULL: the segment starts as zeros. Else its pages come from this
	 * store on first touch: byte i of the segment is byte i of the store,
	 * which must be at least `length` bytes long. The segment takes a
	 * reference. Any store: an image's, a page server's
	 * (fl_store_remote_new()), Redis (fl_store_redis_new()), a file. */
	struct fl_store *store;
};

/*
 * Add a new segment to a space that is not attached: all zeros, or filled
 * on first touch from opts->store. Returns its index (>= 0). A persistent
 * space's next commit saves every page of a store-backed segment into its
 * image (read from the store when nobody touched it), so later versions
 * and fl_space_open() no longer need the store. Errors: -EINVAL (a bad
 * name, a base or length not aligned, a range outside the user address
 * range [64 KiB, 128 TiB), a range that overlaps another segment of the
 * space, a store shorter than length), -EEXIST (a segment of that name),
 * -EBUSY (the space is attached), memfd errors (-ENOMEM for hugetlb
 * without reserved pages happens at first touch: SIGBUS).
 */
FL_API int fl_space_segment_add(struct fl_space *space, const struct fl_segment_opts *opts);

/*
 * Add segment `name` of `src` to `dst` as well: the same page cache, so
 * every attachment of either space sees the other's shared writes.
 * Errors as fl_space_segment_add(), and -ENOENT (no such segment in src).
 */
FL_API int fl_space_segment_share(struct fl_space *dst, const struct fl_space *src, const char *name);

struct fl_segment_info {
	size_t sz;			/* sizeof(struct fl_segment_info) */
	char name[FL_SPACE_NAME_MAX + 1];
	uint64_t base, length;
	enum fl_mem_type mem;
	uint64_t pages_cached;		/* pages in the page cache (filled or written) */
};

struct fl_space_info {
	size_t sz;			/* sizeof(struct fl_space_info) */
	char name[FL_SPACE_NAME_MAX + 1];
	bool persistent;
	bool attached;
	unsigned nsegments;
	unsigned nroots;
	uint64_t version;		/* latest committed version; 0: none */
	uint64_t attached_version;	/* attached at this version (0: the live segments) */
};

/* Describe the space, or its segment `index`. -ENOENT: no such segment. */
FL_API int fl_space_info(const struct fl_space *space, struct fl_space_info *info);
FL_API int fl_space_segment_info(const struct fl_space *space, unsigned index, struct fl_segment_info *info);

/*
 * Roots: a small table (at most FL_SPACE_ROOTS_MAX) of name -> pointer,
 * saved with every version. A pointer is stored as a number: it means
 * something only inside the space's segments. ptr NULL removes the root.
 * fl_space_root_get: -ENOENT (no such root). fl_space_root_set: -EINVAL
 * (bad name), -ENOSPC (table full).
 */
FL_API int fl_space_root_set(struct fl_space *space, const char *name, const void *ptr);
FL_API int fl_space_root_get(const struct fl_space *space, const char *name, void **ret_ptr);

#define FL_ATTACH_PRIVATE	(1u << 0)	/* copy-on-write: writes stay in this attachment */
#define FL_ATTACH_RDONLY	(1u << 1)	/* map read-only (a write is SIGSEGV) */

struct fl_attach_opts {
	size_t sz;			/* sizeof(struct fl_attach_opts) */
	unsigned flags;			/* FL_ATTACH_* */
	uint64_t version;		/* 0: the live segments; else this committed
					 * version (needs PRIVATE or RDONLY) */
};

/*
 * Map every segment at its base in this process. opts may be NULL
 * (shared, read-write, live). Errors: -EALREADY (attached already),
 * -EEXIST (a segment's range is in use in this process: nothing is
 * mapped), -ENOENT (no such version), -EINVAL (a version attached
 * read-write and shared, a space with no segment), -EOPNOTSUPP (the
 * kernel lacks MINOR faults for the memory), engine errors.
 */
FL_API int fl_space_attach(struct fl_space *space, const struct fl_attach_opts *opts);

/*
 * Unmap every segment. Shared writes stay in the segments (and in the next
 * commit); private ones are dropped. No thread may touch the segments
 * during or after the call. -ENOTCONN: not attached.
 */
FL_API int fl_space_detach(struct fl_space *space);

/*
 * Replace attached space `from` by `to`, which is not attached and whose
 * segments have the same bases, lengths and memory types as those of
 * `from` (same count, any order). `to` is attached with opts (NULL:
 * shared, read-write, live) and `from` ends up detached. Each segment is
 * replaced atomically (see the top of this header: per process, not per
 * thread). Needs the REMAP and UNMAP events and UFFDIO_POISON (Linux
 * 6.6): POISON's EAGAIN is how the engine tells a fault racing the move
 * from one outside every region (and the space's engine has one handler
 * thread, so the events of a read are handled before the next read: a
 * fault read after the move finds the segment where the move put it).
 * Errors: -ENOTCONN (from not attached),
 * -EALREADY (to attached), -EINVAL (the segments differ), -EOPNOTSUPP
 * (the kernel lacks those), and those of fl_space_attach(); `from` is
 * then unchanged. -EIO: mremap(2) failed after some segments moved (only
 * when the kernel runs out of memory): the moved ones are `to`'s, the
 * others still `from`'s, and both count as attached (detach both).
 */
FL_API int fl_space_switch(struct fl_space *from, struct fl_space *to, const struct fl_attach_opts *opts);

/* Pause (pause = true) or resume the writers of a space. */
typedef int (*fl_space_quiesce_fn)(bool pause, void *ctx);

/*
 * What a commit did (fl_commit_opts.stats, optional). Pages are segment
 * pages: 4 KiB for shmem, 2 MiB for hugetlb.
 */
struct fl_commit_stats {
	size_t sz;			/* sizeof(struct fl_commit_stats) */
	uint64_t bytes_saved;		/* of page-cache pages written into the version */
	/* FL_COMMIT_LIVE: pages a writer of this process touched before the
	 * copier reached them, saved by the fault handler ahead of the write */
	uint64_t pages_copied_before_write;
	/* FL_COMMIT_LIVE: the handler's time for one such fault (the copy, or
	 * waiting for the copier's read of the page): longest and total */
	uint64_t fault_wait_max_ns;
	uint64_t fault_wait_total_ns;
};

/*
 * Commit while this process's writers keep running (see fl_space_commit()).
 * Needs write-protect faults on the segments' memory
 * (FL_FEATURE_WP_HUGETLBFS_SHMEM, Linux 5.19).
 */
#define FL_COMMIT_LIVE		(1u << 0)

struct fl_commit_opts {
	size_t sz;			/* sizeof(struct fl_commit_opts) */
	unsigned flags;			/* FL_COMMIT_* */
	/* Without FL_COMMIT_LIVE: pauses the writers for the whole copy of
	 * the pages in memory (NULL: nobody writes during the commit). With
	 * it: pauses them only for the commit instant (optional) */
	fl_space_quiesce_fn quiesce;
	void *quiesce_ctx;
	struct fl_commit_stats *stats;	/* optional out (its sz set) */
};

/*
 * Save the segments and roots as a new version (see the top of this
 * header): one image per segment (faultline-image(5)), incremental against
 * the previous version, then the manifest, atomically. opts may be NULL.
 * *ret_version (optional) gets the new version number (1, 2, ...).
 *
 * Consistency. Without FL_COMMIT_LIVE the version is what the page cache
 * holds while the pages are copied: consistent only if nobody writes
 * during the copy (opts->quiesce pauses the writers for it). With
 * FL_COMMIT_LIVE the version is the segments as they were at one instant
 * (the commit instant) although this process's writers keep running: at
 * that instant the attachment is write-protected (a pause of the fault
 * handler, not of the writers), then a write to a page not yet saved
 * waits only for that page's copy (copy-before-write), a first touch of
 * a page not mapped yet likewise. A write in flight at the instant may be
 * partly in the version, as in a crash at that instant; pass `quiesce`
 * too and the writers are paused for the instant only (microseconds), so
 * no write is half in. Live consistency covers the writers of this
 * process's attachment only: the kernel write-protects this process's
 * page tables, so a process that shares the segments (a fork that
 * attached, another space sharing them) writes the page cache unseen:
 * stop those, or commit without FL_COMMIT_LIVE under a quiesce that
 * pauses them. Not attached, or attached read-only or private, there is
 * no writer here and FL_COMMIT_LIVE commits as without. The memory a live
 * commit needs is a copy of each page written before the copier reached
 * it. With a user-mode-only userfaultfd (unprivileged), a system call
 * writing into a segment during a live commit may fail with EFAULT
 * instead of waiting (the kernel's own accesses raise no userfault).
 *
 * Errors: -EINVAL (a transient space, unknown flags, FL_COMMIT_LIVE in a
 * fork of the process that attached the space), -EROFS (attached at
 * an older version), -EOPNOTSUPP (FL_COMMIT_LIVE on a shared read-write
 * attachment whose memory the kernel cannot write-protect: the log names
 * the missing feature), a quiesce callback's error, image writer errors
 * (-ENOSPC, -EIO), -ENOMEM (a copy before write could not be made: the
 * writer went on, the commit failed). On error, and after a crash at any
 * point, the previous version is intact.
 */
FL_API int fl_space_commit(struct fl_space *space, const struct fl_commit_opts *opts, uint64_t *ret_version);

/*
 * Versions of a persistent space: fills up to `n` version numbers (oldest
 * first) into ret_versions and returns how many there are (may be more
 * than n). 0 for a transient space.
 */
FL_API int fl_space_versions(const struct fl_space *space, uint64_t *ret_versions, unsigned n);

/*
 * A new space starting as `version` of persistent space `origin` (0: its
 * latest): same segments, roots of that version, pages read from the
 * origin's images on first touch. opts: the new space's name and dir
 * (persistent forks name the origin's images as their first version, by
 * absolute path, and commit incrementally against them). Errors: -EINVAL
 * (origin transient or with no version), -ENOENT (no such version), and
 * those of fl_space_new().
 */
FL_API int fl_space_fork(const struct fl_space *origin, uint64_t version, const struct fl_space_opts *opts,
			 struct fl_space **ret_space);

#define FL_SPACE_EXPORT_NO_SYNC	(1u << 0)	/* no fsync (tests, scratch files) */
#define FL_SPACE_EXPORT_LZ4	(1u << 1)	/* compress data pages with LZ4 */

struct fl_space_export_opts {
	size_t sz;			/* sizeof(struct fl_space_export_opts) */
	unsigned flags;			/* FL_SPACE_EXPORT_* */
	fl_progress_fn progress;	/* optional: pages done / total */
	void *progress_ctx;
};

/*
 * Write `version` (0: the latest) of persistent space `space` as one
 * self-contained image (faultline-image(5)) at `path`: no parent (the
 * version's image chain is flattened), one region per segment in the
 * manifest's order, each carrying the segment's name, base (the region's
 * start), length and memory type. Every tool that reads images takes it:
 * `faultline image info|verify`, the page server (fl_server_new()),
 * fl_redis_push(), and fl_space_segment_add() with a store over one of
 * its regions. What is exported is what the version holds on disk, not
 * the segments' pages in memory (commit first). Every page read is
 * checked against its checksum. The file is written beside `path` under a
 * temporary name, synced and renamed to `path` without replacing
 * anything: on error nothing is left at `path`. opts may be NULL.
 *
 * Errors: -EINVAL (a transient space, bad flags), -ENOENT (no such
 * version, a segment image missing, or no directory for path), -EEXIST
 * (something is at path),
 * -EBADMSG (a segment image, or an image of its chain, is corrupt or
 * incomplete), -EOPNOTSUPP (FL_SPACE_EXPORT_LZ4, or an LZ4 page, in a
 * library built without LZ4), write errors (-ENOSPC, -EIO).
 * Thread safety: as the other functions of a space; the space may be
 * attached (the pages come from its images, not from memory).
 */
FL_API int fl_space_export(const struct fl_space *space, uint64_t version, const char *path,
			   const struct fl_space_export_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
