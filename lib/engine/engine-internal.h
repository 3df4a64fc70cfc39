/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine's internals: spaces (a uffd and its mm), handler threads,
 * per-thread scratch, and the targets faults are dispatched to.
 *
 * The engine does not know what serves memory: an index entry points to an
 * opaque target with an ops table (regions implement it, lib/region/). It
 * reads messages, finds the target, and hands it the fault or the event.
 */
#ifndef FL_ENGINE_INTERNAL_H
#define FL_ENGINE_INTERNAL_H

#include "kernel.h"
#include "index.h"
#include <pthread.h>

/* A uffd and the address space (mm) behind it. */
struct fl__space {
	int id;
	int uffd;
	pid_t pid;			/* owner, for SIGBUS fallbacks; 0 = us */
	uint64_t features;
	_Atomic bool dead;		/* ESRCH seen: the mm is gone */
	bool forked;			/* created by a FORK event: owns its targets */
	bool released;			/* fl_engine_release(): uffd closed, targets freed */
	bool polled;			/* in the embedded epoll set (embedded_mu + lock) */
	int parent;			/* forked: the parent's space id; else -1 */
	pthread_mutex_t read_mu;	/* a read and the events it returned, as one */
	_Atomic bool paused;		/* adopted: not served until fl_engine_wake_all() */
	struct fl__index index;
};

/* Per-thread scratch: a store buffer and a message batch. */
struct fl__worker {
	uint8_t *buf;
	size_t cap;
	uint8_t *zero;			/* per page of buf: all zeros? */
	struct uffd_msg *msgs;
	unsigned batch;
	/* how many messages to ask for (engine.c read_want()) */
	unsigned singles;		/* reads in a row that found one message */
	unsigned probe;
	/* A target's 2 MiB-aligned staging buffer (lib/region/hugefill.c),
	 * mapped on first use; the engine only unmaps it. NULL: none. */
	uint8_t *stage;
	int pagemap_fd;			/* /proc/self/pagemap, opened on first use; -1: not yet */
};

/* Counters a target adds into a space's statistics. */
struct fl__target_stats {
	uint64_t faults, pages_resolved, pages_poisoned, bytes_read, blocked_ns;
	struct fl__hist *hist;		/* the target's latencies are merged here */
};

struct fl__target;

/*
 * What a target does for the engine. "read lock" / "write lock": the
 * engine's lock is held that way around the call, so the target cannot
 * leave the index meanwhile (and, for write, no fault is being served).
 */
struct fl__target_ops {
	/* A page fault in `ent` (read lock). Must answer it: resolve, wake,
	 * or fail closed; never leave the thread waiting. t0: read time. */
	void (*fault)(struct fl__target *t, const struct fl__entry *ent, const struct uffd_msg *msg,
		      uint64_t t0, struct fl__worker *w);
	/* REMOVE: target bytes [off, off + len) were discarded (write lock). */
	void (*discard)(struct fl__target *t, uint64_t off, uint64_t len);
	/* REMAP: target byte 0 is now at addr in its space (write lock). */
	void (*moved)(struct fl__target *t, uint64_t addr);
	/* FORK: a copy for the child space with its own page state, not yet
	 * in the engine; NULL if it cannot be made (write lock). */
	struct fl__target *(*fork)(struct fl__target *t, struct fl__space *child);
	/* One batch of background fill (read lock): 0 when nothing is left. */
	int (*fill_step)(struct fl__target *t, struct fl__worker *w);
	/* Install every page now (no lock held). */
	int (*populate)(struct fl__target *t);
	/* Poison every page not delivered: how many, or -errno (no lock). */
	int64_t (*poison_unresolved)(struct fl__target *t);
	/* Add the counters into st (read lock). */
	void (*stats)(const struct fl__target *t, struct fl__target_stats *st);
	/* Leave the engine (fl__engine_remove_target()) and free (no lock). */
	void (*free)(struct fl__target *t);
	/* Free a fork copy that never entered the engine (write lock). */
	void (*destroy)(struct fl__target *t);
};

#define FL__TARGET_FILL (1u << 0)	/* wants background fill steps */
#define FL__TARGET_LOCAL (1u << 1)	/* memory we mapped: freeing unmaps it */

/* The part of a target the engine owns; implementations embed it. */
struct fl__target {
	const struct fl__target_ops *ops;
	struct fl__space *space;	/* whose mm holds the memory */
	unsigned flags;			/* FL__TARGET_* */
	_Atomic bool fill_done;
	_Atomic bool dead;		/* every entry unmapped (UNMAP) */
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
	pthread_rwlock_t lock;		/* spaces, their indexes, the target list */
	struct fl__space **spaces;
	size_t nspaces, spaces_cap;
	struct fl__target **targets;	/* every target (user and fork copies) */
	size_t ntargets, targets_cap;
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
	int embedded_epfd;		/* every served space, for fl_engine_process() */
	/* counters */
	struct fl__hist retired;	/* latencies of targets no longer in the engine */
	_Atomic uint64_t messages, reads, faults, unowned_faults;
	_Atomic uint64_t ev_fork, ev_remap, ev_remove, ev_unmap;
};

/* engine.c */
void fl__engine_kick_filler(struct fl_engine *e);
int fl__worker_init(struct fl__worker *w, size_t cap, unsigned batch);
void fl__worker_fini(struct fl__worker *w);
int fl__worker_reserve(struct fl__worker *w, size_t cap);
/* Serve [start, start + len) of t->space from target byte 0. */
int fl__engine_add_target(struct fl_engine *e, struct fl__target *t, uint64_t start, uint64_t len);
/* Remove from the index; returns the ranges it still covered (fs-allocated, caller frees). */
size_t fl__engine_remove_target(struct fl_engine *e, struct fl__target *t, struct fl_range **ret);
struct fl__space *fl__engine_space(struct fl_engine *e, int id);
/* Serve the events and faults queued on space `id` from this thread
 * (engine.c): 0 or more messages served, or -ENOENT. */
int fl__engine_service(struct fl_engine *e, int id);
/* Wait until the events read from space `id` so far are handled (0, -ENOENT). */
int fl__engine_events_barrier(struct fl_engine *e, int id);
static inline int fl__engine_main_uffd(const struct fl_engine *e)
{
	return e->spaces[0]->uffd;
}

/* fault-rules.c: the fault path's error table (kernel-facts.md), once. */
enum fl__resolve_verdict {
	FL__RESOLVED,		/* 0: done */
	FL__RETRY,		/* EAGAIN: an event is queued; process events, then retry */
	FL__ALREADY_THERE,	/* EEXIST: someone mapped it; wake the faulter */
	FL__LAYOUT_CHANGED,	/* ENOENT: unmapped or moved; wake, it faults again */
	FL__CLIENT_GONE,	/* ESRCH (ENOSPC on 4.11-4.13): the mm is gone */
	FL__POISON,		/* anything else: the page cannot be delivered */
};
enum fl__resolve_verdict fl__resolve_classify(int err);
/*
 * Fail one page closed: poison it, else (no POISON) SIGBUS the waiting
 * thread `tid` (0: the process) when `waiter`. Returns the poison result:
 * 0 (or -EEXIST, woken) when the page is poisoned.
 */
int fl__fail_closed(struct fl_engine *e, struct fl__space *sp, uint64_t addr, size_t psz, bool waiter,
		    uint32_t tid);
/* A fault no target owns. */
void fl__fail_unowned(struct fl_engine *e, struct fl__space *sp, const struct uffd_msg *msg, bool stale);

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
/* Clear bit i; whether it was set (one of two racing clearers sees true). */
static inline bool fl__bit_take(_Atomic uint64_t *map, uint64_t i)
{
	uint64_t m = 1ull << (i % 64);
	return (atomic_fetch_and_explicit(&map[i / 64], ~m, memory_order_acq_rel) & m) != 0;
}

#endif
