/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef FL_ENGINE_INTERNAL_H
#define FL_ENGINE_INTERNAL_H

#include "kernel.h"
#include <pthread.h>

struct fl_region;

/* One index entry: [start, end) of a space's address range served by `region`
 * starting at byte `region_off` of the region. REMAP/UNMAP split entries. */
struct fl__entry {
	uint64_t start, end;
	struct fl_region *region;
	uint64_t region_off;
};

/* A uffd and the address space (mm) behind it. */
struct fl__space {
	int id;
	int uffd;
	pid_t pid;			/* owner, for SIGBUS fallbacks; 0 = us */
	uint64_t features;
	_Atomic bool dead;		/* ESRCH seen: the mm is gone */
	bool forked;			/* created by a FORK event: owns its regions */
	bool released;			/* fl_engine_release(): uffd closed, regions freed */
	int parent;			/* forked: the parent's space id; else -1 */
	pthread_mutex_t read_mu;	/* a read and the events it returned, as one */
	_Atomic bool paused;		/* adopted: not served until fl_engine_wake_all() */
	struct fl__entry *entries;	/* sorted by start, non-overlapping */
	size_t nentries, cap;
};

/* Per-thread scratch: a store buffer and a message batch. */
struct fl__worker {
	uint8_t *buf;
	size_t cap;
	uint8_t *zero;			/* per page of buf: all zeros? */
	struct uffd_msg *msgs;
	unsigned batch;
};

struct fl__thread {
	struct fl_engine *engine;
	pthread_t tid;
	int wake_fd;			/* "the set of spaces changed" */
	int cpu;			/* -1: not pinned */
};

struct fl_engine {
	struct fl_engine_opts opts;
	struct fl__logger log;
	uint64_t features;		/* enabled on the main uffd */
	pthread_rwlock_t lock;		/* spaces, their entries, region list */
	struct fl__space **spaces;
	size_t nspaces, spaces_cap;
	struct fl_region **regions;	/* every region (user and fork clones) */
	size_t nregions, regions_cap;
	int stop_fd;
	_Atomic bool stopping;
	bool running;
	struct fl__thread *threads;
	unsigned nthreads;
	pthread_t filler;
	bool filler_running;
	pthread_mutex_t filler_mu;
	pthread_cond_t filler_cv;
	_Atomic unsigned demand_inflight;	/* filler yields while > 0 */
	_Atomic uint64_t filler_gen;
	_Atomic uint64_t index_gen;	/* bumped on every index change */
	struct fl__worker embedded_worker;
	pthread_mutex_t embedded_mu;
	/* counters */
	_Atomic uint64_t messages, reads, faults, unowned_faults;
	_Atomic uint64_t ev_fork, ev_remap, ev_remove, ev_unmap;
};

struct fl_region {
	struct fl_engine *engine;
	struct fl__space *space;	/* the space whose mm holds the memory */
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
	_Atomic uint64_t *discarded;	/* REMOVE: later faults get zeros */
	_Atomic uint64_t *poisoned;
	_Atomic uint64_t resolved_count;
	/* sequential-access detector for prefetch */
	_Atomic uint64_t last_end;	/* page after the last resolved window */
	_Atomic unsigned window;
	_Atomic uint64_t fill_cursor;
	_Atomic bool fill_done;
	_Atomic bool dead;		/* fully unmapped */
	/* statistics */
	_Atomic uint64_t faults_read, faults_write, faults_minor, faults_wp;
	_Atomic uint64_t pages_copy, pages_zero, pages_continue, pages_prefetch,
		pages_background, pages_poisoned, pages_exist, bytes_read, store_errors;
	_Atomic uint64_t blocked_ns;
	struct fl__hist hist;
	/* working sets (workingset.c) */
	struct fl__ws_rec *rec;		/* set once by fl_region_record() */
	_Atomic bool recording;
	_Atomic(struct fl__replay *) replay;
	_Atomic uint64_t pages_replayed;
};

/* engine.c */
void fl__engine_kick_filler(struct fl_engine *e);
int fl__worker_init(struct fl__worker *w, size_t cap, unsigned batch);
void fl__worker_fini(struct fl__worker *w);
int fl__worker_reserve(struct fl__worker *w, size_t cap);
int fl__engine_add_region(struct fl_engine *e, struct fl__space *sp, struct fl_region *r);
/* Remove from the index; returns the ranges it still covered (malloc'd, caller frees). */
size_t fl__engine_remove_region(struct fl_engine *e, struct fl_region *r, struct fl_range **ret);
struct fl__space *fl__engine_space(struct fl_engine *e, int id);

/* region.c */
struct fl_region *fl__region_clone(struct fl_region *src, struct fl__space *sp);
void fl__region_destroy(struct fl_region *r);
/* Unregister and unmap exactly these ranges (what is left after REMAP/UNMAP). */
void fl__region_unmap_ranges(struct fl_region *r, const struct fl_range *ranges, size_t n);

/* workingset.c */
void fl__ws_note_fault(struct fl_region *r, uint64_t page);
void fl__ws_replay_stop(struct fl_region *r);	/* before the region leaves the index */
void fl__ws_region_fini(struct fl_region *r);	/* and free the recorder */

/* resolve.c */
void fl__handle_fault(struct fl_engine *e, struct fl__space *sp, const struct fl__entry *ent,
		      const struct uffd_msg *msg, uint64_t t0, struct fl__worker *w);
void fl__fail_unowned(struct fl_engine *e, struct fl__space *sp, const struct uffd_msg *msg, bool stale);
int fl__resolve_pages(struct fl_region *r, struct fl__space *sp, uint64_t base, uint64_t first, uint64_t count,
		      uint64_t fault_page, struct fl__worker *w, int source);
int fl__fill_step(struct fl_region *r, struct fl__worker *w);
int64_t fl__poison_unresolved(struct fl_region *r);
/* Poison one page of a region (no faulting thread to signal). */
void fl__poison_page(struct fl_region *r, struct fl__space *sp, uint64_t base, uint64_t page);
void fl__region_discard(struct fl_region *r, uint64_t first, uint64_t count);

/* bitmap helpers */
static inline bool fl__bit_test(_Atomic uint64_t *map, uint64_t i)
{
	return (atomic_load_explicit(&map[i / 64], memory_order_acquire) >> (i % 64)) & 1;
}
static inline bool fl__bit_set(_Atomic uint64_t *map, uint64_t i)
{
	uint64_t m = 1ull << (i % 64);
	return (atomic_fetch_or_explicit(&map[i / 64], m, memory_order_acq_rel) & m) != 0;
}
static inline void fl__bit_clear(_Atomic uint64_t *map, uint64_t i)
{
	atomic_fetch_and_explicit(&map[i / 64], ~(1ull << (i % 64)), memory_order_acq_rel);
}

#define FL_SRC_DEMAND 0
#define FL_SRC_PREFETCH 1
#define FL_SRC_BACKGROUND 2
#define FL_SRC_POPULATE 3
#define FL_SRC_REPLAY 4

#endif
