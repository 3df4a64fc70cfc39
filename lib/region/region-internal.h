/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Lazy regions: a range of memory whose pages come from a store on demand.
 * A region is an engine target (engine-internal.h): the engine hands it
 * the faults and events of its ranges; everything a region knows (mapping,
 * page state, prefetch, statistics) stays here.
 */
#ifndef FL_REGION_INTERNAL_H
#define FL_REGION_INTERNAL_H

#include "engine-internal.h"

struct fl_region;
struct fl__region_hook;
struct fl__far;

/*
 * What faultline knows of one page cache (a memfd), shared by every region
 * that fills it: a template's, an address space segment's. A page in the
 * page cache is not proof that a fill of ours put it there: any holder of
 * a descriptor, a read-only one included, can map the file without
 * userfaultfd and fault a zero page into a hole. `filled` says which pages
 * a fill of ours put there (written since only through mappings we served,
 * which fault first); a page a fill finds present without its bit was
 * planted, and is overwritten with the right bytes before it is mapped.
 * A fill claims a page in `filling` before its UFFDIO_COPY, so that
 * between a COPY that succeeded and its bit being set, no other region
 * takes the page for planted and overwrites what a writer put there since.
 * The bits are shared with forks (they fill the same page cache).
 */
struct fl__pcache {
	_Atomic unsigned refs;
	uint64_t npages;
	_Atomic uint64_t *filled;
	_Atomic uint64_t *filling;
};

/*
 * Something that follows a region's faults or works on it (the working
 * set's recorder and replay): the region calls it, knowing nothing more.
 */
struct fl__region_hook_ops {
	/* A demand fault on `page`, before it is resolved: once the faulting
	 * access returns, the hook has seen it (fault path: be quick). */
	void (*fault)(struct fl__region_hook *h, struct fl_region *r, uint64_t page);
	/* A write-protect fault on `page`, before the page is unprotected
	 * (which wakes the writer): the hook may copy the page's bytes as
	 * they were before that write (fault path: be quick). Optional. */
	void (*write_protected)(struct fl__region_hook *h, struct fl_region *r, uint64_t page);
	/* The region is about to leave the index: stop working on it. */
	void (*stop)(struct fl__region_hook *h, struct fl_region *r);
	/* The region is freed (no fault can reach the hook any more). */
	void (*free)(struct fl__region_hook *h);
};

struct fl__region_hook {
	const struct fl__region_hook_ops *ops;
	struct fl__region_hook *next;
};

/*
 * Whether a reset should find written pages by tracking first writes or by
 * scanning page tables (clone.c decides, for clones and reset points): the
 * pages written by the last resets and the measured cost of a scan.
 */
#define FL__TRACK_WINDOW 16
struct fl__track_policy {
	uint64_t recent[FL__TRACK_WINDOW];
	uint64_t resets;
	unsigned in_mode;		/* resets since the last switch */
	double scan_ns;			/* smoothed; 0: never measured */
};

struct fl_region {
	struct fl__target t;		/* what the engine sees: ops, space, fill_done, dead */
	struct fl_engine *engine;
	char name[48];
	enum fl_mem_type mem;
	enum fl_region_mode mode;
	unsigned flags;
	uint8_t *addr;			/* current start in the space (follows REMAP) */
	size_t length, page_size, npages;
	bool mapped_here;		/* we mmapped it (not FOREIGN, not a fork clone) */
	bool owned_memfd;
	int memfd;
	uint8_t *alias;			/* MINOR: our MAP_SHARED alias, registered MISSING */
	uint64_t alias_ioctls;
	struct fl_store *store;
	uint64_t store_offset;
	uint64_t ioctls;
	unsigned prefetch_max, fill_batch;
	/* page state bitmaps, in region page units */
	_Atomic uint64_t *resolved;	/* mapped in the space (a hint: EEXIST is the truth) */
	_Atomic uint64_t *cached;	/* MINOR: page cache filled */
	struct fl__pcache *pc;		/* MINOR: the page cache's, shared; NULL: none */
	_Atomic uint64_t *discarded;	/* REMOVE: later faults get zeros */
	_Atomic uint64_t *poisoned;
	_Atomic uint64_t resolved_count;
	/* sequential-access detector for prefetch */
	_Atomic uint64_t last_end;	/* page after the last resolved window */
	_Atomic unsigned window;
	_Atomic uint64_t fill_cursor;
	/* statistics */
	_Atomic uint64_t faults_read, faults_write, faults_minor, faults_wp;
	_Atomic uint64_t pages_copy, pages_zero, pages_continue, pages_prefetch,
		pages_background, pages_poisoned, pages_exist, bytes_read, store_errors, pages_replayed;
	_Atomic uint64_t pages_rewritten;	/* planted pages given their bytes (resolve.c) */
	_Atomic uint64_t blocked_ns;
	struct fl__hist hist;
	/* hooks: pushed at the head under hooks_mu, read by faults without it */
	_Atomic(struct fl__region_hook *) hooks;
	pthread_mutex_t hooks_mu;
	_Atomic unsigned exact_faults;	/* > 0: no prefetch, every first touch faults */
	/* A clone that tracks its writes (fl__region_new(), track; then
	 * clone.c turns tracking on and off): its pages are mapped
	 * write-protected, and the first write to one is a WP fault that
	 * sets its bit here before letting the kernel copy the page, so a
	 * reset finds the private copies without a scan. */
	bool can_track;			/* made to track: the bitmaps exist */
	_Atomic bool track;		/* tracking now (clone.c turns it off and on) */
	_Atomic uint64_t *written, *written_sum;	/* fl__sbit_*() */
	struct fl__track_policy policy;	/* clone.c's: whether to track */
	/* Far memory (far.c): a resident limit, eviction, write-back. NULL:
	 * not a far region (fork copies never are). */
	struct fl__far *far;
};

static inline struct fl__space *fl__region_space(const struct fl_region *r)
{
	return r->t.space;
}

/* region.c */
/* fl_region_new(), and with `track` a clone that can track its writes
 * (see struct fl_region; clone.c turns it on): -EOPNOTSUPP where the
 * kernel cannot (no CONTINUE with MODE_WP, Linux 6.4, or no WP on
 * shmem/hugetlb). */
int fl__region_new(struct fl_engine *e, const struct fl_region_opts *opts, bool track,
		   struct fl_region **ret_region);
/* fl__region_new() for a MINOR region over the page cache `pc` describes
 * (a reference is taken; NULL: none, the page cache is trusted). */
int fl__region_new_pc(struct fl_engine *e, const struct fl_region_opts *opts, bool track, struct fl__pcache *pc,
		      struct fl_region **ret_region);

/* A page cache of `npages` pages, none filled yet. NULL: out of memory. */
struct fl__pcache *fl__pcache_new(uint64_t npages);
struct fl__pcache *fl__pcache_ref(struct fl__pcache *pc);
void fl__pcache_unref(struct fl__pcache *pc);
/*
 * Mark the pages present in `memfd` (pages of `psz` bytes) filled: for a
 * page cache taken over from another process, which kept no record. shmem
 * says which pages are present (SEEK_DATA/SEEK_HOLE); on hugetlbfs a
 * MINOR-registered mapping of our own finds them, and where the kernel
 * cannot, every page counts as present. 0 or -errno.
 */
int fl__pcache_adopt(struct fl__pcache *pc, int memfd, size_t psz);
/* Attach h, after start(h) (optional) succeeds; -EEXIST if a hook with
 * the same ops is attached already. A hook stays until the region is freed. */
int fl__region_hook_add(struct fl_region *r, struct fl__region_hook *h, int (*start)(struct fl__region_hook *h));
struct fl__region_hook *fl__region_hook_find(struct fl_region *r, const struct fl__region_hook_ops *ops);
/* A hook needs every first touch as a fault (on) or no longer (off). */
void fl__region_exact_faults(struct fl_region *r, bool on);

/* resolve.c */
#define FL_SRC_DEMAND 0
#define FL_SRC_PREFETCH 1
#define FL_SRC_BACKGROUND 2
#define FL_SRC_POPULATE 3
#define FL_SRC_REPLAY 4

/* Install region pages [first, first + count) in a space. */
struct fl__resolve_req {
	struct fl__space *space;	/* where: the region's, or its fork's */
	uint64_t base;			/* address of region byte 0 in that space */
	uint64_t first, count;		/* region pages */
	uint64_t fault_page;		/* a thread waits on it; UINT64_MAX: none */
	uint32_t tid;			/* that thread, for the SIGBUS fallback; 0: unknown */
	int source;			/* FL_SRC_*: statistics and the failure policy */
	bool dontwake;			/* install without waking (far memory: fl__far_park()) */
};
/* One attempt: 0 or the -errno fl__resolve_classify() reads. */
int fl__resolve_pages(struct fl_region *r, const struct fl__resolve_req *req, struct fl__worker *w);
/*
 * The one resolve-or-poison path: resolve, and when the kernel or store
 * says a page cannot be delivered (FL__POISON), narrow down and fail
 * closed as req->source's policy says (see resolve.c). Returns 0 or the
 * first attempt's -errno.
 */
int fl__resolve_or_poison(struct fl_region *r, const struct fl__resolve_req *req, struct fl__worker *w);
void fl__region_fault(struct fl__target *t, const struct fl__entry *ent, const struct uffd_msg *msg,
		      uint64_t t0, struct fl__worker *w);
int fl__region_fill_step(struct fl__target *t, struct fl__worker *w);
int64_t fl__region_poison_unresolved(struct fl__target *t);
void fl__region_discard(struct fl_region *r, uint64_t first, uint64_t count);

/*
 * far.c: far memory. A far region maps every page write-protected, so a
 * first write is a WP fault that marks the page dirty; an evictor thread
 * keeps the resident set (the `resolved` bits) under the high mark by
 * writing dirty pages back and dropping cold ones. See fl_region_new(3).
 */
/* Validate the far options of `o` (creation, before anything is made): 0,
 * -EINVAL, -EOPNOTSUPP (the kernel lacks a write-protect feature). */
int fl__far_check(const struct fl_engine *e, const struct fl_region_opts *o, bool track, const struct fl__pcache *pc);
/* Whether `o` asks for far memory. */
bool fl__far_wanted(const struct fl_region_opts *o);
/* Set up r->far and start its evictor (r's geometry and store are set): 0,
 * -EROFS (write-back over a store that cannot write), -ENOMEM, -errno. */
int fl__far_new(struct fl_region *r, const struct fl_region_opts *o);
/* Stop the evictor (before the region leaves the engine); idempotent. */
void fl__far_stop(struct fl_region *r);
void fl__far_free(struct fl_region *r);
/* Fill path: page became resident in the region's own space. */
void fl__far_filled(struct fl_region *r, uint64_t page);
/* Fill path: after a run's pages are counted (peak, kick the evictor). */
void fl__far_settle(struct fl_region *r);
/* Demand fault of thread `tid` (0: unknown): whether to install without
 * waking (the region is far past its high mark and the evictor works; never
 * the thread the evictor may wait for): then fl__far_park() the page. */
bool fl__far_defer(struct fl_region *r, uint32_t tid);
/* Wake the thread faulting on `page` once the evictor made room (at once
 * if it has, or if it cannot). Never leaves it asleep. */
void fl__far_park(struct fl_region *r, struct fl__space *sp, uint64_t base, uint64_t page);
/* Fill path: page is being written back or evicted (prefetch skips it). */
bool fl__far_busy(struct fl_region *r, uint64_t page);
/* A fill into `dst` (an address in the region's space or its alias) must
 * map the page write-protected. */
bool fl__far_fill_wp(const struct fl_region *r, uint64_t dst);
/* The region's pages are installed with COPY only (ZEROPAGE has no WP mode). */
bool fl__far_no_zeropage(const struct fl_region *r);
/* A write-protect fault on `page` (base: region byte 0 in sp). */
void fl__far_wp_fault(struct fl_region *r, struct fl__space *sp, uint64_t base, uint64_t page);
/* REMOVE over `page`: true when our own eviction dropped it (not a discard). */
bool fl__far_discard(struct fl_region *r, uint64_t page);
int fl__far_populate(struct fl_region *r, uint64_t offset, size_t len);
void fl__far_stats(const struct fl_region *r, struct fl_region_stats *s);
/* fl_region_populate() without the far-memory limit (region.c). */
int fl__region_populate_raw(struct fl_region *r, uint64_t offset, size_t len);

/* far-policy.c: the eviction order (not thread-safe; far.c locks). */
struct fl__far_policy;
/* NULL: out of memory, or npages too large (>= 2^32). budget: resident pages. */
struct fl__far_policy *fl__far_policy_new(uint64_t npages, uint64_t budget, enum fl_evict_policy kind);
void fl__far_policy_free(struct fl__far_policy *p);
/* page became resident; hot: protect it at once (2Q). Already queued: referenced. */
void fl__far_policy_insert(struct fl__far_policy *p, uint64_t page, bool hot);
/* page was seen in use (a first write, a MINOR re-fault). */
void fl__far_policy_touch(struct fl__far_policy *p, uint64_t page);
/* page is no longer resident (not by an eviction of ours). */
void fl__far_policy_remove(struct fl__far_policy *p, uint64_t page);
/* page goes first. */
void fl__far_policy_cold(struct fl__far_policy *p, uint64_t page);
/* page was evicted: remembered in the ghost history. */
void fl__far_policy_evicted(struct fl__far_policy *p, uint64_t page);
/* Take the next victim out of the queues; UINT64_MAX: none. */
uint64_t fl__far_policy_victim(struct fl__far_policy *p);
/* 2Q: record up to `cap` pages given a second chance (their mappings are
 * to be zapped: MINOR regions). 0, -ENOMEM; other policies: 0, no-op. */
int fl__far_policy_sample(struct fl__far_policy *p, size_t cap);
/* The pages recorded since the last call (at most max), into out. */
size_t fl__far_policy_take_samples(struct fl__far_policy *p, uint64_t *out, size_t max);
/* far.c: a MINOR fault on a page still in the page cache: it was used. */
void fl__far_touch(struct fl_region *r, uint64_t page);

#endif
