/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Address spaces (space.h): the objects shared by space.c (segments,
 * attach, switch, forks), manifest.c (the directory's manifest) and
 * commit.c (versions).
 */
#ifndef FL_SPACE_INTERNAL_H
#define FL_SPACE_INTERNAL_H

#include "region-internal.h"

#include <faultline/clone.h>
#include <faultline/image.h>
#include <faultline/space.h>

#include <limits.h>

/*
 * A segment: a template (memfd page cache, filled lazily from its store)
 * at a fixed address. Reference-counted: spaces that share it hold one
 * each. `filled` records the pages known to be in the page cache (the
 * cached bitmaps of attachments that are gone, OR'ed in at detach): a
 * commit saves those, the rest are still the store's bytes.
 */
struct fl__seg {
	_Atomic unsigned refs;		/* spaces in different threads may share it */
	char name[FL_SPACE_NAME_MAX + 1];
	uint64_t base, length;
	enum fl_mem_type mem;
	size_t psz;
	uint64_t npages;
	struct fl_template *tpl;
	uint64_t *filled;
	/* The caller's store it was made over (fl_segment_opts.store), or
	 * NULL: until a first commit saves them, its unfilled pages are that
	 * store's, not zeros. */
	struct fl_store *store;
};

/* A segment as one space has it: the image its unfilled pages come from
 * (absolute path; "" for a segment that started as zeros). */
struct fl__link {
	struct fl__seg *seg;
	char parent[PATH_MAX];
	/* attached: the region mapping it here, and for a version attach the
	 * template made for it */
	struct fl_region *region;
	struct fl_template *vtpl;
	bool wp;			/* region registered for WP faults too (live commits) */
	bool wp_able;			/* shared read-write, live: a live commit registers WP */
};

struct fl__root {
	char name[FL_SPACE_NAME_MAX + 1];
	uint64_t value;
};

/* One version of the manifest: its segments (image paths as written:
 * relative to the directory, or absolute) and roots. */
struct fl__mseg {
	char name[FL_SPACE_NAME_MAX + 1];
	uint64_t base, length;
	enum fl_mem_type mem;
	char image[PATH_MAX];
};

struct fl__version {
	uint64_t number;
	struct fl__mseg *segs;
	unsigned nsegs;
	struct fl__root roots[FL_SPACE_ROOTS_MAX];
	unsigned nroots;
};

struct fl__manifest {
	char name[FL_SPACE_NAME_MAX + 1];
	struct fl__version *versions;
	unsigned nversions;
};

struct fl_space {
	struct fl__logger log;
	char name[FL_SPACE_NAME_MAX + 1];
	char dir[PATH_MAX];		/* absolute; "" when transient */
	unsigned flags;
	struct fl__link *links;
	unsigned nlinks;
	struct fl__root roots[FL_SPACE_ROOTS_MAX];
	unsigned nroots;
	struct fl__manifest man;	/* persistent: what is on disk */
	struct fl_engine *engine;	/* made at the first attach */
	pid_t engine_pid;		/* the process the engine serves */
	bool attached;
	unsigned attach_flags;
	uint64_t attached_version;
};

/* space.c */
bool fl__space_name_ok(const char *name);
/* Pages of the segment in the page cache now: filled, or cached by the
 * current attachment's region (NULL: none). */
bool fl__seg_page_filled(const struct fl__seg *s, const struct fl_region *r, uint64_t page);
/* Write pages [first, first + n) of the segment (its page size), which
 * are not in its page cache, to region 0 of w as what they are without a
 * parent image: the segment's store's bytes, or zeros. buf holds n pages. */
int fl__seg_put_unfilled(const struct fl__seg *s, struct fl_image_writer *w, uint64_t first, uint64_t n,
			 uint8_t *buf);
/* Absolute path of a manifest image path: 0 or -ENAMETOOLONG. */
int fl__space_image_path(const struct fl_space *sp, const char *image, char *out, size_t len);

/*
 * live.c: a live commit (FL_COMMIT_LIVE), see there. The caller computes
 * maps[i], the pages of link i in the page cache; fl__live_arm() adds the
 * ones this process brought in since and makes that the commit instant.
 * The copier then claims runs of pages to read itself (fl__live_claim(),
 * then fl__live_claimed_saved() once read), and takes the copy a fault
 * handler made of a page it could not claim (fl__live_take(); the copy is
 * the caller's to free).
 */
struct fl__live;
struct fl__live_seg;
bool fl__live_needed(const struct fl_space *sp);
int fl__live_new(struct fl_space *sp, uint64_t **maps, struct fl__live **ret_live);
/* Register link l's region for WP faults too, if it may be (once); true when it is. */
bool fl__space_link_wp(struct fl_space *sp, struct fl__link *l);
int fl__live_arm(struct fl__live *live, uint64_t **maps);
struct fl__live_seg *fl__live_seg(struct fl__live *live, unsigned index);
int fl__live_claim(struct fl__live_seg *ls, uint64_t first, uint64_t max);
void fl__live_claimed_saved(struct fl__live_seg *ls, uint64_t first, uint64_t count);
int fl__live_take(struct fl__live_seg *ls, uint64_t page, uint8_t **ret_copy);
/* Disarm (every page writable again), fill st's live fields (st may be NULL), free. */
void fl__live_free(struct fl__live *live, struct fl_commit_stats *st);

/* manifest.c */
int fl__manifest_read(const char *dir, const struct fl__logger *log, struct fl__manifest *ret_man);
int fl__manifest_write(const char *dir, const struct fl__manifest *man, bool sync, const struct fl__logger *log);
/* Append a copy of v (its segs are copied). */
int fl__manifest_add_version(struct fl__manifest *man, const struct fl__version *v);
const struct fl__version *fl__manifest_find(const struct fl__manifest *man, uint64_t number);
void fl__manifest_clear(struct fl__manifest *man);

#endif
