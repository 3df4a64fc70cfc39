// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Live commits (FL_COMMIT_LIVE): copy-before-write for the writers of
 * this process's attachment, so a commit saves the segments as they were
 * at one instant while the writers keep running.
 *
 * The commit instant: with the engine's lock held for writing (no fault
 * of this space is being served, none will be until it is released), the
 * pages to save are fixed (the page-cache pages; the others are the
 * previous version's) and the whole attachment is write-protected. A
 * write that lands on a protected page before the lock is released waits
 * for the engine, so the version is a consistent cut: no write in it
 * depends on one left out.
 *
 * After it, a page to save has one of three fates, decided once by a
 * compare-and-swap on its state: the copier claims it (and reads it from
 * the memfd: pread on the page cache, no page table involved), or a fault
 * handler claims it first and copies it into a stash the copier writes
 * later. The faults that can change a page before the copier reaches it:
 *  - a write-protect fault on a mapped page (the hook below runs before
 *    the region unprotects the page, which wakes the writer);
 *  - a MINOR fault on a page in the page cache that is not mapped here
 *    (never mapped, or zapped): UFFDIO_CONTINUE maps it writable (6.1 has
 *    no CONTINUE_MODE_WP, and the write-protect marker of a none pte
 *    does not survive CONTINUE), so it is saved before the CONTINUE.
 * Prefetch is off during the commit (exact faults): a fault's window
 * would CONTINUE neighbours nobody saved.
 *
 * Only pages: nothing here needs WP_UNPOPULATED (present ptes are what
 * UFFDIO_WRITEPROTECT protects on 6.1; an unmapped page comes through the
 * MINOR path whatever its pte holds).
 */
#include "space-internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { PAGE_UNSAVED, PAGE_CLAIMED, PAGE_SAVED };

/* How many times the instant is tried again while the mm is changing
 * (an mremap or fork in flight makes UFFDIO_WRITEPROTECT say EAGAIN). */
#define ARM_TRIES 1000

struct fl__live_seg {
	struct fl__live *live;
	struct fl_region *region;
	const uint64_t *need;		/* pages to save: those in the page cache at the instant */
	int fd;
	size_t psz;
	uint64_t npages;
	_Atomic uint8_t *state;		/* PAGE_* */
	uint8_t **stash;		/* a fault handler's copy, or NULL */
};

struct fl__live {
	struct fl_space *sp;
	struct fl__live_seg *segs;	/* one per link */
	unsigned nsegs;
	pthread_mutex_t mu;		/* with cv: a page's state becomes SAVED */
	pthread_cond_t cv;
	_Atomic int error;		/* a fault handler could not copy a page */
	_Atomic uint64_t copied_before_write, wait_max_ns, wait_total_ns;
	bool armed;
};

/* The region's hook: which live commit, if any, its faults must serve. */
struct live_hook {
	struct fl__region_hook h;
	/* Set and cleared with the engine's lock held for writing; faults
	 * read it with the lock held for reading. */
	_Atomic(struct fl__live_seg *) seg;
};

static bool need_test(const uint64_t *map, uint64_t p)
{
	return (map[p / 64] >> (p % 64)) & 1;
}

static void mark_saved(struct fl__live_seg *ls, uint64_t first, uint64_t count)
{
	pthread_mutex_lock(&ls->live->mu);
	for (uint64_t p = first; p < first + count; p++)
		atomic_store_explicit(&ls->state[p], PAGE_SAVED, memory_order_release);
	pthread_cond_broadcast(&ls->live->cv);
	pthread_mutex_unlock(&ls->live->mu);
}

static void wait_saved(struct fl__live_seg *ls, uint64_t page)
{
	if (atomic_load_explicit(&ls->state[page], memory_order_acquire) == PAGE_SAVED)
		return;
	pthread_mutex_lock(&ls->live->mu);
	while (atomic_load_explicit(&ls->state[page], memory_order_acquire) != PAGE_SAVED)
		pthread_cond_wait(&ls->live->cv, &ls->live->mu);
	pthread_mutex_unlock(&ls->live->mu);
}

/*
 * A fault (write-protect, or a first touch) on `page` during a live
 * commit: make sure the page's bytes of the instant are saved before the
 * faulting thread can change them. The writer waits for this page only:
 * its copy here, or the copier's read of the few pages it claimed.
 */
static void save_before_write(struct fl__region_hook *h, struct fl_region *r, uint64_t page)
{
	struct live_hook *lh = (struct live_hook *)h;
	struct fl__live_seg *ls = atomic_load_explicit(&lh->seg, memory_order_acquire);
	uint8_t unsaved = PAGE_UNSAVED;
	uint64_t t0, dt, max;
	struct fl__live *live;

	(void)r;
	if (!ls || page >= ls->npages || !need_test(ls->need, page))
		return;
	live = ls->live;
	t0 = fl__now_ns();
	if (atomic_compare_exchange_strong(&ls->state[page], &unsaved, PAGE_CLAIMED)) {
		uint8_t *copy = malloc(ls->psz);
		int ret = copy ? fl__pread_full(ls->fd, copy, ls->psz, page * ls->psz) : -ENOMEM;
		if (ret) {
			/* The writer must go on: fail the commit instead. */
			int none = 0;
			atomic_compare_exchange_strong(&live->error, &none, ret);
			free(copy);
			copy = NULL;
		}
		ls->stash[page] = copy;
		mark_saved(ls, page, 1);
		atomic_fetch_add_explicit(&live->copied_before_write, 1, memory_order_relaxed);
	} else {
		wait_saved(ls, page);
	}
	dt = fl__now_ns() - t0;
	atomic_fetch_add_explicit(&live->wait_total_ns, dt, memory_order_relaxed);
	max = atomic_load_explicit(&live->wait_max_ns, memory_order_relaxed);
	while (dt > max && !atomic_compare_exchange_weak(&live->wait_max_ns, &max, dt))
		;
}

static void hook_free(struct fl__region_hook *h)
{
	free(h);
}

static const struct fl__region_hook_ops live_hook_ops = {
	.fault = save_before_write,
	.write_protected = save_before_write,
	.free = hook_free,
};

static int hook_of(struct fl_region *r, struct live_hook **ret)
{
	struct fl__region_hook *h = fl__region_hook_find(r, &live_hook_ops);
	struct live_hook *lh;
	int ret_add;

	if (h) {
		*ret = (struct live_hook *)h;
		return 0;
	}
	lh = calloc(1, sizeof(*lh));
	if (!lh)
		return -ENOMEM;
	lh->h.ops = &live_hook_ops;
	atomic_init(&lh->seg, NULL);
	ret_add = fl__region_hook_add(r, &lh->h, NULL);
	if (ret_add) {
		free(lh);
		return ret_add;
	}
	*ret = lh;
	return 0;
}

bool fl__live_needed(const struct fl_space *sp)
{
	return sp->attached && !sp->attached_version && !(sp->attach_flags & (FL_ATTACH_PRIVATE | FL_ATTACH_RDONLY));
}

/* Why the attachment cannot be write-protected, for the log. */
static const char *missing_feature(const struct fl_space *sp)
{
	uint64_t f = sp->engine ? fl_engine_features(sp->engine) : 0;

	if (!(f & UFFD_FEATURE_PAGEFAULT_FLAG_WP))
		return "write-protect faults (wp, Linux 5.7)";
	if (!(f & UFFD_FEATURE_WP_HUGETLBFS_SHMEM))
		return "write-protect on shmem and hugetlbfs (wp_hugetlbfs_shmem, Linux 5.19)";
	return "write-protect registration of the segments (UFFDIO_REGISTER refused MODE_WP)";
}

int fl__live_new(struct fl_space *sp, uint64_t **maps, struct fl__live **ret_live)
{
	struct fl__live *live;
	int ret = 0;

	/* A fork's copy of the space shares the parent's userfaultfd: it
	 * would write-protect the parent's memory, for the parent's engine
	 * to serve, and nothing would serve the child's. */
	if (getpid() != sp->engine_pid) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s: a live commit runs in the process that attached it, "
			"not in a fork of it", sp->name);
		return -EINVAL;
	}
	for (unsigned i = 0; i < sp->nlinks; i++) {
		if (!fl__space_link_wp(sp, &sp->links[i])) {
			fl__log(&sp->log, FL_LOG_ERROR, "space %s: a live commit needs %s, which segment %s lacks",
				sp->name, missing_feature(sp), sp->links[i].seg->name);
			return -EOPNOTSUPP;
		}
	}
	live = calloc(1, sizeof(*live));
	if (!live)
		return -ENOMEM;
	live->sp = sp;
	pthread_mutex_init(&live->mu, NULL);
	pthread_cond_init(&live->cv, NULL);
	live->segs = calloc(sp->nlinks, sizeof(*live->segs));
	live->nsegs = sp->nlinks;
	if (!live->segs)
		ret = -ENOMEM;
	for (unsigned i = 0; i < live->nsegs && !ret; i++) {
		const struct fl__seg *s = sp->links[i].seg;
		struct fl__live_seg *ls = &live->segs[i];

		ls->live = live;
		ls->region = sp->links[i].region;
		ls->need = maps[i];
		ls->fd = fl_template_fd(s->tpl);
		ls->psz = s->psz;
		ls->npages = s->npages;
		ls->state = calloc(s->npages ? s->npages : 1, sizeof(*ls->state));
		ls->stash = calloc(s->npages ? s->npages : 1, sizeof(*ls->stash));
		if (!ls->state || !ls->stash)
			ret = -ENOMEM;
	}
	if (ret) {
		fl__live_free(live, NULL);
		return ret;
	}
	*ret_live = live;
	return 0;
}

struct fl__live_seg *fl__live_seg(struct fl__live *live, unsigned index)
{
	return live && index < live->nsegs ? &live->segs[index] : NULL;
}

static int protect_all(struct fl__live *live, unsigned flags, unsigned *ret_done)
{
	int ret = 0;

	for (unsigned i = 0; i < live->nsegs && !ret; i++) {
		struct fl_region *r = live->segs[i].region;
		ret = fl_uffd_writeprotect(fl__region_space(r)->uffd, fl_region_addr(r), fl_region_length(r), flags);
		if (!ret && ret_done)
			*ret_done = i + 1;
	}
	return ret;
}

int fl__live_arm(struct fl__live *live, uint64_t **maps)
{
	struct fl_space *sp = live->sp;
	struct fl_engine *e = sp->engine;
	int ret = 0;

	for (unsigned i = 0; i < live->nsegs && !ret; i++) {
		struct live_hook *lh;
		ret = hook_of(live->segs[i].region, &lh);
	}
	if (ret) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s: cannot follow the faults of the commit: %s", sp->name,
			strerror(-ret));
		return ret;
	}
	for (unsigned i = 0; i < live->nsegs; i++)
		fl__region_exact_faults(live->segs[i].region, true);
	for (unsigned tries = 0; tries < ARM_TRIES; tries++) {
		unsigned done = 0;

		pthread_rwlock_wrlock(&e->lock);
		/* Pages this process brought into the page cache since the
		 * caller looked: with the lock held, no more can come. */
		for (unsigned i = 0; i < live->nsegs; i++) {
			struct fl__live_seg *ls = &live->segs[i];
			for (uint64_t k = 0; k < (ls->npages + 63) / 64; k++)
				maps[i][k] |= atomic_load_explicit(&ls->region->cached[k], memory_order_relaxed);
		}
		ret = protect_all(live, FL_WP_PROTECT, &done);
		if (!ret) {
			for (unsigned i = 0; i < live->nsegs; i++) {
				struct live_hook *lh = (struct live_hook *)fl__region_hook_find(live->segs[i].region,
												&live_hook_ops);
				atomic_store_explicit(&lh->seg, &live->segs[i], memory_order_release);
			}
			live->armed = true;
		}
		pthread_rwlock_unlock(&e->lock);
		if (ret != -EAGAIN)
			break;
		/* An event is queued: the engine must read it before the
		 * mm settles. Pages protected by this try fault to the
		 * region, which unprotects them (no commit is armed). */
		fl__log(&sp->log, FL_LOG_DEBUG, "space %s: an event is pending: the commit instant again", sp->name);
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	if (ret) {
		fl__log(&sp->log, FL_LOG_ERROR, "space %s: cannot write-protect the attachment: %s", sp->name,
			strerror(-ret));
		protect_all(live, 0, NULL);
		for (unsigned i = 0; i < live->nsegs; i++)
			fl__region_exact_faults(live->segs[i].region, false);
	}
	return ret;
}

int fl__live_claim(struct fl__live_seg *ls, uint64_t first, uint64_t max)
{
	uint64_t n = 0;

	while (n < max) {
		uint8_t unsaved = PAGE_UNSAVED;
		if (!atomic_compare_exchange_strong(&ls->state[first + n], &unsaved, PAGE_CLAIMED))
			break;
		n++;
	}
	return (int)n;
}

void fl__live_claimed_saved(struct fl__live_seg *ls, uint64_t first, uint64_t count)
{
	mark_saved(ls, first, count);
}

int fl__live_take(struct fl__live_seg *ls, uint64_t page, uint8_t **ret_copy)
{
	int err;

	wait_saved(ls, page);
	*ret_copy = ls->stash[page];
	ls->stash[page] = NULL;
	err = atomic_load(&ls->live->error);
	if (!*ret_copy)
		return err ? err : -EIO;
	return 0;
}

void fl__live_free(struct fl__live *live, struct fl_commit_stats *st)
{
	int ret = 0;

	if (!live)
		return;
	if (live->armed) {
		struct fl_engine *e = live->sp->engine;

		/* No fault serves the commit once the lock is released; then
		 * every page is writable again (waking writers that wait). */
		pthread_rwlock_wrlock(&e->lock);
		for (unsigned i = 0; i < live->nsegs; i++) {
			struct live_hook *lh = (struct live_hook *)fl__region_hook_find(live->segs[i].region,
											&live_hook_ops);
			atomic_store_explicit(&lh->seg, NULL, memory_order_release);
		}
		pthread_rwlock_unlock(&e->lock);
		for (unsigned tries = 0; tries < ARM_TRIES; tries++) {
			ret = protect_all(live, 0, NULL);
			if (ret != -EAGAIN)
				break;
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		}
		/* Left protected, a page is unprotected by the region at its
		 * next write fault: slower, not wrong. */
		if (ret)
			fl__log(&live->sp->log, FL_LOG_WARN, "space %s: cannot unprotect the attachment: %s",
				live->sp->name, strerror(-ret));
		for (unsigned i = 0; i < live->nsegs; i++)
			fl__region_exact_faults(live->segs[i].region, false);
	}
	if (st) {
		st->pages_copied_before_write = atomic_load(&live->copied_before_write);
		st->fault_wait_max_ns = atomic_load(&live->wait_max_ns);
		st->fault_wait_total_ns = atomic_load(&live->wait_total_ns);
	}
	for (unsigned i = 0; live->segs && i < live->nsegs; i++) {
		struct fl__live_seg *ls = &live->segs[i];
		/* Only pages to save can have a copy: the arrays are touched
		 * there only, so a sparse 64 GiB segment costs what it holds. */
		for (uint64_t k = 0; ls->stash && k < (ls->npages + 63) / 64; k++)
			for (uint64_t bits = ls->need[k]; bits; bits &= bits - 1)
				free(ls->stash[k * 64 + (uint64_t)__builtin_ctzll(bits)]);
		free(ls->stash);
		free((void *)ls->state);
	}
	free(live->segs);
	pthread_cond_destroy(&live->cv);
	pthread_mutex_destroy(&live->mu);
	free(live);
}
