// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Far memory: a resident limit on a region, eviction of cold pages, and
 * write-back of dirty ones to the store.
 *
 * Page states, per region page (bitmaps; `resolved` is region.c's and is
 * the resident set):
 *   dirty     written since its last write-back (a WP fault said so)
 *   busy      being written back or evicted (under wb_mu): a write to it
 *             waits, its WP fault is parked in `waiter`
 *   waiter    a writer sleeps in a WP fault on a busy page: whoever clears
 *             busy wakes it
 *   evicting  dropped by us right now: the REMOVE event our MADV_DONTNEED
 *             raises is not the application's discard (taken off by
 *             that event: a second one is the application's)
 *   evicted   dropped by an eviction and not filled since (refaults)
 *
 * Every page a far region maps is mapped write-protected (fills use
 * UFFDIO_COPY/CONTINUE with MODE_WP, zeros are copied: ZEROPAGE has no WP
 * mode). A write-back sets busy and clears dirty under the page's stripe
 * lock, write-protects, copies the page (consistent: writers now fault and
 * wait), lets writers go again, and then writes the copy to the store. A
 * WP fault takes the same stripe lock to check busy and to set dirty and
 * unprotect, so a wakeup is never lost and a write never escapes a copy.
 *
 * The handler threads never wait for a store here: the fault path only
 * sets bits, queues the page and kicks the evictor (overshooting the high
 * mark is allowed; the evictor catches up). Far past the mark a demand
 * fault is served without waking its thread, which the evictor wakes once
 * it took a batch off (fl__far_defer(), fl__far_park()): the faulting
 * threads wait, never the handlers.
 *
 * Lock order: wb_mu > (engine lock | space read_mu) > stripe > pol_mu, and
 * ev_mu, park_mu: leaves held for a few instructions or a few ioctls.
 */
#include "region-internal.h"
#include "store-internal.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define STRIPES 64
#define BATCH_BYTES (1u << 20)		/* one write-back batch */
#define BG_MIN_BYTES (64u << 10)	/* background batches are at least this */
#define MIN_PAGES 4			/* resident_max of fewer pages is refused */
#define BACKOFF_MIN_NS 10000000ull	/* a failing store: retry after 10 ms... */
#define BACKOFF_MAX_NS 1000000000ull	/* ...doubling up to 1 s */
#define LOG_EVERY_NS 1000000000ull	/* write-back errors: one log line a second */
#define HARD_SLACK_MIN 8		/* pages over the high mark before fills are throttled */
#define SAMPLES_MAX 64			/* mappings zapped per eviction pass */
#define PARK_MAX 256			/* faulting threads waiting for the evictor */

struct fl__far {
	struct fl_region *r;
	uint64_t high, low;		/* pages */
	uint64_t rate;			/* background write-back, bytes/s */
	bool writeback;
	bool remove_events;		/* the engine reads REMOVE events (MADV_DONTNEED raises one) */
	bool anon_events;		/* dropping anon pages raises REMOVE: wait for it */
	bool sampling;			/* MINOR, 2Q: zap mappings to see reuse (far-policy.c) */
	uint64_t *samples;		/* SAMPLES_MAX: pages to zap */
	_Atomic uint64_t *dirty, *busy, *waiter, *evicting, *evicted;
	_Atomic uint64_t dirty_count;
	pthread_mutex_t stripe[STRIPES];
	pthread_mutex_t pol_mu;
	struct fl__far_policy *pol;
	/* Sequential advice: pages this far behind a fill in the range are cold. */
	_Atomic uint64_t seq_first, seq_end;
	/* One write-back or eviction at a time; flush waits for the one in flight. */
	pthread_mutex_t wb_mu;
	_Atomic uint32_t wb_tid;	/* its holder (wb_lock()) */
	uint8_t *buf;			/* batch_pages pages */
	struct fl_store_iov *iovs;
	uint64_t *pages, *dirty_pages, *keep;	/* batch_pages each */
	uint64_t batch_pages;
	uint64_t bg_cursor;		/* background write-back goes round from here */
	double tokens;			/* token bucket of writeback_rate, bytes */
	uint64_t tokens_ns;
	/* the evictor */
	pthread_mutex_t ev_mu;
	pthread_cond_t ev_cv;
	uint64_t hard;			/* pages: over this, faulting threads wait (fl__far_defer()) */
	/* threads whose fault was served without waking them (fl__far_park()) */
	pthread_mutex_t park_mu;
	struct parked {
		int uffd;
		uint64_t addr;
	} parked[PARK_MAX];
	unsigned nparked;
	_Atomic bool stopped;		/* fl__far_stop(): park nobody any more */
	bool kick, stop, running;
	pthread_t thread;
	uint64_t backoff_ns, retry_ns;	/* under wb_mu */
	_Atomic bool backing_off;
	uint64_t log_ns, log_suppressed;
	/* statistics */
	_Atomic uint64_t resident_peak, evicted_clean, evicted_dirty, written_back, bytes_written, wb_errors,
		refaults;
};

/*
 * wb_mu, and who holds it: a thread holding it may fault on the region
 * (a page the application discarded, copied for a write-back) and must
 * then be woken at once, never parked for the evictor (fl__far_defer()).
 */
static void wb_lock(struct fl__far *f)
{
	pthread_mutex_lock(&f->wb_mu);
	atomic_store(&f->wb_tid, (uint32_t)gettid());
}

static void wb_unlock(struct fl__far *f)
{
	atomic_store(&f->wb_tid, 0);
	pthread_mutex_unlock(&f->wb_mu);
}

static pthread_mutex_t *stripe(struct fl__far *f, uint64_t page)
{
	return &f->stripe[page % STRIPES];
}

static uint8_t *page_addr(const struct fl_region *r, uint64_t page)
{
	return r->addr + page * r->page_size;
}

static int space_uffd(const struct fl_region *r)
{
	return fl__region_space(r)->uffd;
}

/* ---- creation ----------------------------------------------------------- */

bool fl__far_wanted(const struct fl_region_opts *o)
{
	return o->resident_max || (o->flags & FL_REGION_WRITEBACK);
}

int fl__far_check(const struct fl_engine *e, const struct fl_region_opts *o, bool track, const struct fl__pcache *pc)
{
	size_t psz = o->mem == FL_MEM_HUGETLB ? FL_HPAGE_SIZE : FL_PAGE_SIZE;
	uint64_t need = UFFD_FEATURE_PAGEFAULT_FLAG_WP;

	if (!fl__far_wanted(o)) {
		/* The far options mean nothing without a limit or write-back:
		 * refuse them rather than ignore them. */
		if (o->resident_low || o->writeback_rate || o->evict_policy)
			return -EINVAL;
		return 0;
	}
	if (o->evict_policy > FL_EVICT_2Q)
		return -EINVAL;
	if (o->resident_max && o->resident_max < MIN_PAGES * psz)
		return -EINVAL;
	if (o->resident_low > o->resident_max)
		return -EINVAL;
	/* Background fill would fill the whole region past any limit; clones
	 * and adopted memory are not ours to write back or drop; a memfd of
	 * the caller's may be mapped by others, whose pages eviction would
	 * punch out from under them. */
	if (o->flags & (FL_REGION_BACKGROUND | FL_REGION_FOREIGN | FL_REGION_PRIVATE | FL_REGION_MEMFD))
		return -EINVAL;
	if (track || pc)
		return -EINVAL;
	if (o->mem != FL_MEM_ANON)
		need |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	if ((e->features & need) != need)
		return -EOPNOTSUPP;
	if (o->mode == FL_MODE_MINOR && !fl_feature_has(FL_FEATURE_CONTINUE_MODE_WP))
		return -EOPNOTSUPP;
	return 0;
}

static _Atomic uint64_t *bits_new(uint64_t n)
{
	return calloc((n + 63) / 64 + 1, sizeof(uint64_t));
}

static void *evictor_main(void *arg);
static void wake_parked(struct fl__far *f);

int fl__far_new(struct fl_region *r, const struct fl_region_opts *o)
{
	struct fl__far *f;
	size_t psz = r->page_size;
	int ret;

	if ((o->flags & FL_REGION_WRITEBACK) && fl__store_writable(r->store)) {
		fl__log(&r->engine->log, FL_LOG_ERROR, "%s: store '%s' cannot write: a writable far-memory region "
			"needs a writable store", r->name, fl_store_name(r->store));
		return -EROFS;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->r = r;
	/* Write-back alone (no limit): the whole region may stay resident. */
	f->high = o->resident_max ? FL_MAX(o->resident_max / psz, 1) : r->npages;
	f->low = o->resident_low ? o->resident_low / psz : f->high * 7 / 8;
	f->low = FL_MIN(f->low, f->high);
	f->hard = f->high + FL_MAX(f->high / 8, HARD_SLACK_MIN);
	f->rate = o->writeback_rate;
	f->writeback = o->flags & FL_REGION_WRITEBACK;
	f->remove_events = r->engine->features & UFFD_FEATURE_EVENT_REMOVE;
	f->anon_events = r->mem == FL_MEM_ANON && f->remove_events;
	f->batch_pages = FL_MAX(BATCH_BYTES / psz, 2);
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_init(&f->stripe[i], NULL);
	pthread_mutex_init(&f->pol_mu, NULL);
	pthread_mutex_init(&f->wb_mu, NULL);
	pthread_mutex_init(&f->ev_mu, NULL);
	pthread_mutex_init(&f->park_mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&f->ev_cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	r->far = f;
	f->dirty = bits_new(r->npages);
	f->busy = bits_new(r->npages);
	f->waiter = bits_new(r->npages);
	f->evicting = bits_new(r->npages);
	f->evicted = bits_new(r->npages);
	f->pol = fl__far_policy_new(r->npages, f->high, o->evict_policy);
	/* Page-aligned: a store that writes with O_DIRECT takes the pages
	 * as they are instead of bouncing them. */
	if (posix_memalign((void **)&f->buf, psz, f->batch_pages * psz))
		f->buf = NULL;
	f->iovs = calloc(f->batch_pages, sizeof(*f->iovs));
	f->pages = calloc(f->batch_pages, sizeof(*f->pages));
	f->dirty_pages = calloc(f->batch_pages, sizeof(*f->dirty_pages));
	f->keep = calloc(f->batch_pages, sizeof(*f->keep));
	if (!f->dirty || !f->busy || !f->waiter || !f->evicting || !f->evicted || !f->buf || !f->iovs ||
	    !f->pages || !f->dirty_pages || !f->keep)
		return -ENOMEM;	/* fl__far_free() (region_destroy()) frees the rest */
	if (!f->pol)
		return r->npages >= UINT32_MAX ? -EINVAL : -ENOMEM;
	if (r->mode == FL_MODE_MINOR && r->mem == FL_MEM_SHMEM) {
		/* The page cache keeps a zapped page: its next access is a
		 * MINOR fault, the one access bit userfaultfd offers. Not on
		 * hugetlbfs: a sample there zaps 2 MiB, and there are few
		 * pages to choose among (measured: the resident set overshot
		 * its mark while the zaps' events were read). */
		f->samples = calloc(SAMPLES_MAX, sizeof(*f->samples));
		if (!f->samples || fl__far_policy_sample(f->pol, SAMPLES_MAX))
			return -ENOMEM;
		f->sampling = o->evict_policy != FL_EVICT_FIFO;
	}
	f->tokens_ns = fl__now_ns();
	ret = -pthread_create(&f->thread, NULL, evictor_main, f);
	if (ret)
		return ret;
	f->running = true;
	return 0;
}

void fl__far_stop(struct fl_region *r)
{
	struct fl__far *f = r->far;

	if (!f || !f->running)
		return;
	atomic_store(&f->stopped, true);
	pthread_mutex_lock(&f->ev_mu);
	f->stop = true;
	pthread_cond_signal(&f->ev_cv);
	pthread_mutex_unlock(&f->ev_mu);
	if (f->anon_events || (f->sampling && f->remove_events)) {
		/* The evictor may be in an MADV_DONTNEED waiting for its
		 * REMOVE event to be read, which on an embedded engine only
		 * fl_engine_process() does (the application may have stopped
		 * calling it), and on a stopped engine nobody does (it may
		 * have stopped after the evictor checked it was running).
		 * Read events here until the evictor is out. */
		struct timespec ts;

		for (;;) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 5000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			if (!pthread_timedjoin_np(f->thread, NULL, &ts))
				break;
			if ((r->engine->opts.flags & FL_ENGINE_EMBEDDED) || !r->engine->running ||
			    atomic_load(&r->engine->stopping))
				fl__engine_service(r->engine, fl__region_space(r)->id);
		}
	} else {
		pthread_join(f->thread, NULL);
	}
	f->running = false;
	wake_parked(f);	/* nobody else will */
}

void fl__far_free(struct fl_region *r)
{
	struct fl__far *f = r->far;

	if (!f)
		return;
	fl__far_stop(r);
	for (int i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&f->stripe[i]);
	pthread_mutex_destroy(&f->pol_mu);
	pthread_mutex_destroy(&f->wb_mu);
	pthread_mutex_destroy(&f->ev_mu);
	pthread_cond_destroy(&f->ev_cv);
	pthread_mutex_destroy(&f->park_mu);
	fl__far_policy_free(f->pol);
	free((void *)f->dirty);
	free((void *)f->busy);
	free((void *)f->waiter);
	free((void *)f->evicting);
	free((void *)f->evicted);
	free(f->buf);
	free(f->iovs);
	free(f->pages);
	free(f->dirty_pages);
	free(f->keep);
	free(f->samples);
	free(f);
	r->far = NULL;
}

/* ---- the fault path ------------------------------------------------------ */

static void kick(struct fl__far *f)
{
	pthread_mutex_lock(&f->ev_mu);
	f->kick = true;
	pthread_cond_signal(&f->ev_cv);
	pthread_mutex_unlock(&f->ev_mu);
}

/* Under the page's stripe lock. */
static void set_dirty(struct fl__far *f, uint64_t page)
{
	if (!fl__bit_set(f->dirty, page))
		atomic_fetch_add_explicit(&f->dirty_count, 1, memory_order_relaxed);
}

static bool clear_dirty(struct fl__far *f, uint64_t page)
{
	if (!fl__bit_test(f->dirty, page))
		return false;
	fl__bit_clear(f->dirty, page);
	atomic_fetch_sub_explicit(&f->dirty_count, 1, memory_order_relaxed);
	return true;
}

void fl__far_filled(struct fl_region *r, uint64_t page)
{
	struct fl__far *f = r->far;
	uint64_t seq_first = atomic_load_explicit(&f->seq_first, memory_order_relaxed);
	uint64_t seq_end = atomic_load_explicit(&f->seq_end, memory_order_relaxed);
	uint64_t behind = FL_MAX(1, (uint64_t)r->prefetch_max * FL_PAGE_SIZE / r->page_size);

	if (fl__bit_test(f->evicted, page)) {
		fl__bit_clear(f->evicted, page);
		atomic_fetch_add_explicit(&f->refaults, 1, memory_order_relaxed);
	}
	if (fl__bit_test(r->discarded, page)) {
		/* The application discarded it (zeros from now on): the
		 * store still has the old bytes, which an eviction must not
		 * bring back. Dirty: the zeros are written back first. */
		pthread_mutex_lock(stripe(f, page));
		set_dirty(f, page);
		pthread_mutex_unlock(stripe(f, page));
	}
	pthread_mutex_lock(&f->pol_mu);
	fl__far_policy_insert(f->pol, page, false);
	if (page >= seq_first && page < seq_end && page >= seq_first + behind)
		fl__far_policy_cold(f->pol, page - behind);
	pthread_mutex_unlock(&f->pol_mu);
}

void fl__far_settle(struct fl_region *r)
{
	struct fl__far *f = r->far;
	uint64_t res = atomic_load_explicit(&r->resolved_count, memory_order_relaxed);
	uint64_t peak = atomic_load_explicit(&f->resident_peak, memory_order_relaxed);

	while (res > peak &&
	       !atomic_compare_exchange_weak_explicit(&f->resident_peak, &peak, res, memory_order_relaxed,
						      memory_order_relaxed))
		;
	/* Never wait here (a handler thread): the evictor catches up, and a
	 * fault far past the mark waits for it (fl__far_defer()). */
	if (res > f->high)
		kick(f);
}

bool fl__far_defer(struct fl_region *r, uint32_t tid)
{
	struct fl__far *f = r->far;

	/* Not a thread we cannot tell from the one the evictor waits for. */
	if (!tid || tid == atomic_load_explicit(&f->wb_tid, memory_order_relaxed))
		return false;
	return atomic_load_explicit(&r->resolved_count, memory_order_relaxed) > f->hard &&
	       !atomic_load(&f->stopped) && !atomic_load_explicit(&f->backing_off, memory_order_relaxed);
}

/* Wake every parked thread. */
static void wake_parked(struct fl__far *f)
{
	pthread_mutex_lock(&f->park_mu);
	for (unsigned i = 0; i < f->nparked; i++)
		fl_uffd_wake(f->parked[i].uffd, (void *)(uintptr_t)f->parked[i].addr, f->r->page_size);
	f->nparked = 0;
	pthread_mutex_unlock(&f->park_mu);
}

void fl__far_park(struct fl_region *r, struct fl__space *sp, uint64_t base, uint64_t page)
{
	struct fl__far *f = r->far;
	uint64_t addr = base + page * r->page_size;
	bool now;

	pthread_mutex_lock(&f->park_mu);
	/* Checked after the fill counted, under the lock wake_parked()
	 * takes after the evictor's count went down: a wakeup is never
	 * missed. A full list, a stopping evictor: wake now. */
	now = f->nparked == PARK_MAX || atomic_load(&r->resolved_count) <= f->hard || atomic_load(&f->stopped) ||
	      atomic_load(&f->backing_off);
	if (!now)
		f->parked[f->nparked++] = (struct parked){ sp->uffd, addr };
	pthread_mutex_unlock(&f->park_mu);
	if (now)
		fl_uffd_wake(sp->uffd, (void *)(uintptr_t)addr, r->page_size);
}

void fl__far_touch(struct fl_region *r, uint64_t page)
{
	struct fl__far *f = r->far;

	pthread_mutex_lock(&f->pol_mu);
	fl__far_policy_touch(f->pol, page);
	pthread_mutex_unlock(&f->pol_mu);
}

bool fl__far_busy(struct fl_region *r, uint64_t page)
{
	return r->far && fl__bit_test(r->far->busy, page);
}

bool fl__far_fill_wp(const struct fl_region *r, uint64_t dst)
{
	/* The MINOR alias fills the page cache: it is not registered for
	 * write-protection and nobody writes through it. Every other fill
	 * is the region's, wherever the application moved it (mremap of a
	 * piece: the piece is not at r->addr). */
	return r->far && !(r->alias && dst - (uintptr_t)r->alias < r->length);
}

bool fl__far_no_zeropage(const struct fl_region *r)
{
	return r->far && r->mode == FL_MODE_MISSING;
}

void fl__far_wp_fault(struct fl_region *r, struct fl__space *sp, uint64_t base, uint64_t page)
{
	struct fl__far *f = r->far;
	void *addr = (void *)(uintptr_t)(base + page * r->page_size);
	bool fresh;

	pthread_mutex_lock(stripe(f, page));
	if (fl__bit_test(f->busy, page)) {
		/* Being copied for a write-back, or evicted: the thread
		 * sleeps until the busy page is let go (unbusy()). */
		fl__bit_set(f->waiter, page);
		pthread_mutex_unlock(stripe(f, page));
		return;
	}
	if (!fl__bit_test(r->resolved, page)) {
		/* A fault read before the page was evicted, or before its fill
		 * was counted: not ours to mark. The thread faults again and
		 * finds whatever is there now. */
		pthread_mutex_unlock(stripe(f, page));
		fl_uffd_wake(sp->uffd, addr, r->page_size);
		return;
	}
	fresh = !fl__bit_test(f->dirty, page);
	set_dirty(f, page);
	/* Unprotected under the lock: a write-back cannot set busy and
	 * protect in between, then see this page clean and writable. */
	if (fl_uffd_writeprotect(sp->uffd, addr, r->page_size, 0))
		fl_uffd_wake(sp->uffd, addr, r->page_size);	/* it faults again */
	pthread_mutex_unlock(stripe(f, page));
	if (fresh) {
		pthread_mutex_lock(&f->pol_mu);
		fl__far_policy_touch(f->pol, page);
		pthread_mutex_unlock(&f->pol_mu);
	}
}

bool fl__far_discard(struct fl_region *r, uint64_t page)
{
	struct fl__far *f = r->far;

	/* Our own MADV_DONTNEED raises one REMOVE event per page: the first
	 * event while the page is `evicting` is ours (the store has the
	 * bytes), taken off the bit, so that the application's own discard
	 * of the same page (its event before or after ours) still counts. */
	if (fl__bit_take(f->evicting, page))
		return true;
	pthread_mutex_lock(stripe(f, page));
	clear_dirty(f, page);	/* gone: the zeros are written back once refilled */
	pthread_mutex_unlock(stripe(f, page));
	pthread_mutex_lock(&f->pol_mu);
	fl__far_policy_remove(f->pol, page);
	pthread_mutex_unlock(&f->pol_mu);
	return false;
}

/* ---- write-back ---------------------------------------------------------- */

/*
 * Let a busy page go. With a writer parked on it and the page still
 * mapped (`keep`): the writer's write is coming, so the page is dirty
 * again; unprotect (which wakes it). Dropped: wake it, it faults the page
 * in again (MISSING) with the bytes the store now holds.
 */
static void unbusy(struct fl__far *f, uint64_t page, bool keep)
{
	struct fl_region *r = f->r;
	void *addr = page_addr(r, page);

	pthread_mutex_lock(stripe(f, page));
	fl__bit_clear(f->busy, page);
	fl__bit_clear(f->evicting, page);
	if (fl__bit_test(f->waiter, page)) {
		fl__bit_clear(f->waiter, page);
		if (keep) {
			set_dirty(f, page);
			if (fl_uffd_writeprotect(space_uffd(r), addr, r->page_size, 0))
				fl_uffd_wake(space_uffd(r), addr, r->page_size);
		} else {
			fl_uffd_wake(space_uffd(r), addr, r->page_size);
		}
	}
	pthread_mutex_unlock(stripe(f, page));
}

/* The end of the run of consecutive pages starting at pages[i] (sorted). */
static size_t run_end(const uint64_t *pages, size_t n, size_t i)
{
	size_t j = i + 1;

	while (j < n && pages[j] == pages[j - 1] + 1)
		j++;
	return j;
}

static void log_wb_error(struct fl__far *f, uint64_t pages, int err)
{
	struct fl_region *r = f->r;
	uint64_t now = fl__now_ns();

	atomic_fetch_add_explicit(&f->wb_errors, pages, memory_order_relaxed);
	if (f->log_ns && now - f->log_ns < LOG_EVERY_NS) {
		f->log_suppressed += pages;
		return;
	}
	fl__log(&r->engine->log, FL_LOG_ERROR, "%s: write-back of %llu pages to store '%s' failed: %s; they stay "
		"resident and dirty%s", r->name, (unsigned long long)pages, fl_store_name(r->store), strerror(-err),
		f->log_suppressed ? " (and more failures since the last report)" : "");
	f->log_ns = now;
	f->log_suppressed = 0;
}

/*
 * Write back the busy pages pages[0..n) (sorted; their dirty bits cleared
 * by the caller, who set busy). Protect, copy, let go of them unless
 * `keep_busy` (an eviction drops them next), write the copy. On failure
 * the pages are dirty again (and stay resident). Under wb_mu.
 */
static int write_pages(struct fl__far *f, const uint64_t *pages, size_t n, bool keep_busy)
{
	struct fl_region *r = f->r;
	size_t psz = r->page_size;
	unsigned niov = 0;
	int ret = 0;

	if (!n)
		return 0;
	for (size_t i = 0, j; i < n; i = j) {
		j = run_end(pages, n, i);
		/* EAGAIN: the mm is changing (the application's madvise,
		 * mremap or fork raised an event the handlers have yet to
		 * read): give them 100 us at a time, 50 ms in all. */
		for (int tries = 0; tries < 500; tries++) {
			struct timespec ts = { 0, 100000 };

			ret = fl_uffd_writeprotect(space_uffd(r), page_addr(r, pages[i]), (j - i) * psz, FL_WP_PROTECT);
			if (ret != -EAGAIN)
				break;
			nanosleep(&ts, NULL);
		}
		if (ret)
			break;
	}
	if (!ret) {
		/* Consistent now: a writer faults and waits while busy.
		 * MINOR: from the page cache through the alias, which never
		 * faults on a cached page (a sampled page is not mapped in
		 * the region: reading it there would be a MINOR fault). */
		for (size_t i = 0; i < n; i++)
			memcpy(f->buf + i * psz, r->alias ? r->alias + pages[i] * psz : page_addr(r, pages[i]), psz);
		for (size_t i = 0, j; i < n; i = j) {
			j = run_end(pages, n, i);
			f->iovs[niov++] = (struct fl_store_iov){
				.offset = r->store_offset + pages[i] * psz, .buf = f->buf + i * psz, .len = (j - i) * psz,
			};
		}
	}
	if (!keep_busy)
		for (size_t i = 0; i < n; i++)
			unbusy(f, pages[i], true);
	if (!ret)
		ret = fl_store_write(r->store, f->iovs, niov);
	if (ret) {
		for (size_t i = 0; i < n; i++) {
			pthread_mutex_lock(stripe(f, pages[i]));
			set_dirty(f, pages[i]);
			pthread_mutex_unlock(stripe(f, pages[i]));
		}
		log_wb_error(f, n, ret);
		return ret;
	}
	for (size_t i = 0; i < n; i++) {
		/* The store has what the application wrote after its discard,
		 * if the page is still mapped: discarded since the copy (not
		 * resident), the store has bytes from before the discard. */
		pthread_mutex_lock(stripe(f, pages[i]));
		if (fl__bit_test(r->resolved, pages[i]))
			fl__bit_clear(r->discarded, pages[i]);
		pthread_mutex_unlock(stripe(f, pages[i]));
	}
	atomic_fetch_add_explicit(&f->written_back, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&f->bytes_written, n * psz, memory_order_relaxed);
	return 0;
}

/* Take a dirty resident page for a write-back: busy, clean. */
static bool claim_dirty(struct fl__far *f, uint64_t page)
{
	bool ok;

	pthread_mutex_lock(stripe(f, page));
	ok = !fl__bit_test(f->busy, page) && fl__bit_test(f->dirty, page) && fl__bit_test(f->r->resolved, page);
	if (ok) {
		fl__bit_set(f->busy, page);
		clear_dirty(f, page);
	}
	pthread_mutex_unlock(stripe(f, page));
	return ok;
}

/*
 * Write back the dirty pages of [*cursor, end), at most max_pages, in
 * batches; *cursor advances past what was looked at. Returns pages
 * written (>= 0) or the first error (the cursor is past the failed batch).
 */
static int64_t writeback_range(struct fl__far *f, uint64_t *cursor, uint64_t end, uint64_t max_pages,
			       _Atomic uint64_t *written)
{
	uint64_t p = *cursor, done = 0;
	int ret = 0;

	while (p < end && done < max_pages) {
		size_t n = 0;

		for (; p < end && n < f->batch_pages && done + n < max_pages; p++) {
			/* Whole clean words at a time. */
			if ((p % 64) == 0 && p + 64 <= end && !atomic_load_explicit(&f->dirty[p / 64], memory_order_relaxed)) {
				p += 63;
				continue;
			}
			if (claim_dirty(f, p))
				f->pages[n++] = p;
		}
		if (!n)
			continue;
		ret = write_pages(f, f->pages, n, false);
		if (ret)
			break;
		if (written)
			for (size_t i = 0; i < n; i++)
				fl__bit_set(written, f->pages[i]);
		done += n;
	}
	*cursor = p;
	return ret ? ret : (int64_t)done;
}

/* ---- eviction ------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void requeue(struct fl__far *f, const uint64_t *pages, size_t n)
{
	pthread_mutex_lock(&f->pol_mu);
	for (size_t i = 0; i < n; i++)
		fl__far_policy_insert(f->pol, pages[i], true);
	pthread_mutex_unlock(&f->pol_mu);
}

/*
 * Whether anonymous pages can be dropped now. MADV_DONTNEED waits until a
 * handler reads the REMOVE event it raises; an engine that is stopping or
 * stopped reads none, and the evictor would wait forever (and whoever
 * frees the region, for the evictor). An embedded engine reads events
 * when the application calls fl_engine_process(): then it waits for that.
 */
static bool can_dontneed(const struct fl__far *f)
{
	const struct fl_engine *e = f->r->engine;

	if (!f->remove_events || (e->opts.flags & FL_ENGINE_EMBEDDED))
		return true;
	return e->running && !atomic_load(&e->stopping);
}

/*
 * Whether pages [first, first + count) are still at r->addr + first *
 * page_size in the index: after the application's mremap of a piece of
 * the region (REMAP) or munmap (UNMAP), those addresses may be another
 * mapping of the application's, which an MADV_DONTNEED would zap.
 */
static bool in_place(struct fl__far *f, uint64_t first, uint64_t count)
{
	struct fl_region *r = f->r;
	struct fl_engine *e = r->engine;
	struct fl__space *sp = fl__region_space(r);
	bool ok = true;

	pthread_rwlock_rdlock(&e->lock);
	for (uint64_t a = (uintptr_t)page_addr(r, first), end = a + count * r->page_size; a < end;) {
		const struct fl__entry *ent = fl__index_find(&sp->index, a);

		if (!ent || ent->target != &r->t || ent->start - ent->off != (uintptr_t)r->addr) {
			ok = false;
			break;
		}
		a = ent->end;
	}
	pthread_rwlock_unlock(&e->lock);
	return ok;
}

/* Drop resident pages [first, first + count) (busy, evicting). */
static int drop_run(struct fl__far *f, uint64_t first, uint64_t count)
{
	struct fl_region *r = f->r;
	size_t psz = r->page_size;

	/* Moved or unmapped by the application: not ours to drop there (they
	 * stay resident wherever they went). */
	if (!in_place(f, first, count))
		return -ENOENT;
	if (r->mem == FL_MEM_ANON)
		return can_dontneed(f) ? fl__madvise(page_addr(r, first), count * psz, MADV_DONTNEED) : -ESHUTDOWN;
	/* No uffd event: the page cache goes, and every mapping of it. */
	return fl__punch_hole(r->memfd, first * psz, count * psz);
}

/*
 * Evict the pages pages[0..n) (taken out of the policy by the caller;
 * n <= batch_pages). Dirty ones are written back first (without
 * FL_REGION_WRITEBACK they are not evicted); a page whose write fails
 * stays. Returns pages evicted; *ret_err: the first error. Under wb_mu.
 */
static int64_t evict_pages(struct fl__far *f, uint64_t *pages, size_t n, int *ret_err)
{
	struct fl_region *r = f->r;
	size_t nv = 0, nd = 0, nkeep = 0;
	uint64_t evicted = 0, dirty_evicted = 0;
	int err = 0;

	qsort(pages, n, sizeof(*pages), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		uint64_t p = pages[i];
		bool take = false, was_dirty = false;

		pthread_mutex_lock(stripe(f, p));
		if (fl__bit_test(f->busy, p) || !fl__bit_test(r->resolved, p)) {
			/* Busy cannot happen under wb_mu; not resident: a stale entry. */
		} else if (fl__bit_test(f->dirty, p) && !f->writeback) {
			f->keep[nkeep++] = p;	/* dirty stays resident without write-back */
		} else {
			fl__bit_set(f->busy, p);
			was_dirty = clear_dirty(f, p);
			take = true;
		}
		pthread_mutex_unlock(stripe(f, p));
		if (take) {
			pages[nv++] = p;	/* nv <= i: compacting in place */
			if (was_dirty)
				f->dirty_pages[nd++] = p;
		}
	}
	if (nkeep)
		requeue(f, f->keep, nkeep);
	if (nd) {
		err = write_pages(f, f->dirty_pages, nd, true);
		if (err) {
			/* Dirty again (write_pages()): they stay, back in the
			 * queue. The clean ones are still evicted. */
			size_t k = 0;
			for (size_t i = 0, d = 0; i < nv; i++) {
				if (d < nd && pages[i] == f->dirty_pages[d]) {
					d++;
					unbusy(f, pages[i], true);
					continue;
				}
				pages[k++] = pages[i];
			}
			requeue(f, f->dirty_pages, nd);
			nv = k;
			nd = 0;
		}
	}
	if (!nv) {
		*ret_err = err;
		return 0;
	}
	for (size_t i = 0; i < nv; i++) {
		uint64_t p = pages[i];
		/* Not resident from here: a fill after the drop counts anew.
		 * Prefetch skips busy pages, so no fill marks it resident
		 * between here and the drop. */
		fl__bit_set(f->evicting, p);
		fl__bit_set(f->evicted, p);
		/* Off the count once: the application may have discarded it
		 * since it was taken (fl__region_discard() counted it off). */
		if (fl__bit_take(r->resolved, p))
			atomic_fetch_sub_explicit(&r->resolved_count, 1, memory_order_relaxed);
		if (r->mode == FL_MODE_MINOR)
			fl__bit_clear(r->cached, p);
	}
	pthread_mutex_lock(&f->pol_mu);
	for (size_t i = 0; i < nv; i++)
		fl__far_policy_evicted(f->pol, pages[i]);
	pthread_mutex_unlock(&f->pol_mu);
	/* Off the count: parked threads may go (before the drops, which on
	 * anonymous memory need handlers to read their REMOVE events). */
	if (atomic_load(&r->resolved_count) <= f->hard)
		wake_parked(f);
	for (size_t i = 0, j, d = 0; i < nv; i = j) {
		int dr;

		j = run_end(pages, nv, i);
		dr = drop_run(f, pages[i], j - i);
		if (dr) {
			/* Still mapped: resident again. Its bytes are in the store
			 * (clean or just written), so nothing is lost either way. */
			fl__log(&r->engine->log, FL_LOG_ERROR, "%s: cannot drop pages %llu-%llu: %s", r->name,
				(unsigned long long)pages[i], (unsigned long long)pages[j - 1], strerror(-dr));
			for (size_t k = i; k < j; k++) {
				fl__bit_clear(f->evicted, pages[k]);
				if (r->mode == FL_MODE_MINOR)
					fl__bit_set(r->cached, pages[k]);
				if (!fl__bit_set(r->resolved, pages[k]))
					atomic_fetch_add_explicit(&r->resolved_count, 1, memory_order_relaxed);
			}
			requeue(f, pages + i, j - i);
			if (!err)
				err = dr;
			continue;
		}
		for (size_t k = i; k < j; k++) {
			while (d < nd && f->dirty_pages[d] < pages[k])
				d++;
			dirty_evicted += d < nd && f->dirty_pages[d] == pages[k];
		}
		evicted += j - i;
	}
	/* MADV_DONTNEED returned once a handler read our REMOVE event; wait
	 * until it is handled, so fl__far_discard() still sees `evicting`. */
	if (f->anon_events)
		fl__engine_events_barrier(r->engine, fl__region_space(r)->id);
	for (size_t i = 0; i < nv; i++)
		unbusy(f, pages[i], false);
	atomic_fetch_add_explicit(&f->evicted_dirty, dirty_evicted, memory_order_relaxed);
	atomic_fetch_add_explicit(&f->evicted_clean, evicted - dirty_evicted, memory_order_relaxed);
	*ret_err = err;
	return (int64_t)evicted;
}

/*
 * Sampling: zap the mappings of pages[0..n) (given a second chance by the
 * CLOCK hand), keeping their page cache, so that their next access is a
 * MINOR fault that marks them referenced (fl__far_touch()). Their REMOVE
 * events are ours (`evicting`), as for an eviction. Under wb_mu.
 */
static void zap_samples(struct fl__far *f, uint64_t *pages, size_t n)
{
	struct fl_region *r = f->r;
	size_t k = 0;

	if (!n || !can_dontneed(f))
		return;
	qsort(pages, n, sizeof(*pages), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		uint64_t p = pages[i];

		if (k && pages[k - 1] == p)
			continue;
		pthread_mutex_lock(stripe(f, p));
		if (!fl__bit_test(f->busy, p) && fl__bit_test(r->resolved, p)) {
			fl__bit_set(f->evicting, p);
			pages[k++] = p;
		}
		pthread_mutex_unlock(stripe(f, p));
	}
	for (size_t i = 0, j; i < k; i = j) {
		j = run_end(pages, k, i);
		if (in_place(f, pages[i], j - i))
			fl__madvise(page_addr(r, pages[i]), (j - i) * r->page_size, MADV_DONTNEED);
	}
	if (f->remove_events)
		fl__engine_events_barrier(r->engine, fl__region_space(r)->id);
	for (size_t i = 0; i < k; i++)
		fl__bit_clear(f->evicting, pages[i]);
}

/*
 * Evict until the resident set is at `target` pages; under wb_mu. Returns
 * the first error (0: none); *ret_evicted: pages evicted.
 */
static int evict_to(struct fl__far *f, uint64_t target, uint64_t *ret_evicted)
{
	struct fl_region *r = f->r;
	/* Every queued page is looked at a bounded number of times: dirty
	 * pages without write-back go round without ever leaving. */
	uint64_t budget = 2 * r->npages + 16, evicted = 0;
	size_t ns = 0;
	int first_err = 0;

	while (atomic_load(&r->resolved_count) > target && budget) {
		uint64_t want = FL_MIN(atomic_load(&r->resolved_count) - target, f->batch_pages);
		size_t n = 0;
		int64_t got;
		int err = 0;

		pthread_mutex_lock(&f->pol_mu);
		while (n < want) {
			uint64_t v = fl__far_policy_victim(f->pol);
			if (v == UINT64_MAX)
				break;
			f->pages[n++] = v;
		}
		if (f->sampling)
			ns += fl__far_policy_take_samples(f->pol, f->samples + ns, SAMPLES_MAX - ns);
		pthread_mutex_unlock(&f->pol_mu);
		if (!n)
			break;
		budget = budget > n ? budget - n : 0;
		got = evict_pages(f, f->pages, n, &err);
		evicted += (uint64_t)got;
		if (err && !first_err)
			first_err = err;
		if (err && !got)
			break;	/* a failing store: back off */
	}
	/* Zapped once the set is down: the zaps' REMOVE events need the
	 * handlers, which do not wait for the evictor meanwhile. */
	zap_samples(f, f->samples, ns);
	if (ret_evicted)
		*ret_evicted = evicted;
	return first_err;
}

/* ---- the evictor thread ---------------------------------------------------- */

/* Write back what the token bucket allows: pages written, or -errno. */
static int64_t background_writeback(struct fl__far *f)
{
	struct fl_region *r = f->r;
	uint64_t now = fl__now_ns(), min_bytes = FL_MAX(BG_MIN_BYTES, r->page_size);
	double cap = (double)FL_MAX(f->rate, min_bytes);
	int64_t got;

	f->tokens += (double)f->rate * (double)(now - f->tokens_ns) / 1e9;
	f->tokens_ns = now;
	if (f->tokens > cap)
		f->tokens = cap;
	if (f->tokens < (double)min_bytes || !atomic_load(&f->dirty_count))
		return 0;
	if (f->bg_cursor >= r->npages)
		f->bg_cursor = 0;
	got = writeback_range(f, &f->bg_cursor, r->npages, (uint64_t)f->tokens / r->page_size, NULL);
	if (got > 0)
		f->tokens -= (double)got * (double)r->page_size;
	return got;
}

static void timed_wait(struct fl__far *f, uint64_t until_ns)
{
	struct timespec ts = { (time_t)(until_ns / 1000000000ull), (long)(until_ns % 1000000000ull) };

	pthread_cond_timedwait(&f->ev_cv, &f->ev_mu, &ts);
}

/*
 * The evictor: wakes on a kick (a fill over the high mark), every 50 ms
 * while background write-back has dirty pages to write, and to stop.
 * When a pass leaves the region over its mark without evicting anything
 * (a failing store, only dirty pages without write-back) it backs off,
 * 10 ms doubling to 1 s, kicks ignored: it never spins.
 */
static void *evictor_main(void *arg)
{
	struct fl__far *f = arg;
	struct fl_region *r = f->r;

	pthread_mutex_lock(&f->ev_mu);
	while (!f->stop) {
		uint64_t now = fl__now_ns(), evicted = 0;
		bool due = f->rate && f->writeback && atomic_load(&f->dirty_count);
		bool stuck;
		int err = 0;

		if (f->retry_ns > now) {
			timed_wait(f, f->retry_ns);
			continue;
		}
		if (!f->kick && atomic_load(&r->resolved_count) <= f->high) {
			timed_wait(f, now + (due ? 50000000ull : 1000000000ull));
			if (f->stop)
				break;
			due = f->rate && f->writeback && atomic_load(&f->dirty_count);
			if (!f->kick && atomic_load(&r->resolved_count) <= f->high && !due)
				continue;
		}
		f->kick = false;
		pthread_mutex_unlock(&f->ev_mu);

		wb_lock(f);
		f->retry_ns = 0;
		/* Unmapped by the application (UNMAP): nothing left to touch. */
		if (atomic_load(&r->t.dead)) {
			/* A thread parked after the last pass would sleep
			 * until fl_region_free(): let it go now. */
			wake_parked(f);
			wb_unlock(f);
			pthread_mutex_lock(&f->ev_mu);
			break;
		}
		if (atomic_load(&r->resolved_count) > f->high)
			err = evict_to(f, f->low, &evicted);
		stuck = err || (!evicted && atomic_load(&r->resolved_count) > f->high);
		if (due && !err)
			stuck |= background_writeback(f) < 0;
		if (stuck) {
			fl__log(&r->engine->log, FL_LOG_DEBUG, "%s: evictor stuck (resident %llu, evicted %llu, %s): backing off",
				r->name, (unsigned long long)atomic_load(&r->resolved_count), (unsigned long long)evicted,
				err ? strerror(-err) : "no error");
			f->backoff_ns = f->backoff_ns ? FL_MIN(f->backoff_ns * 2, BACKOFF_MAX_NS) : BACKOFF_MIN_NS;
			f->retry_ns = fl__now_ns() + f->backoff_ns;
		} else {
			f->backoff_ns = 0;
		}
		atomic_store(&f->backing_off, stuck);
		/* Room made, or none can be: nobody waits past a pass. */
		wake_parked(f);
		wb_unlock(f);
		pthread_mutex_lock(&f->ev_mu);
	}
	pthread_mutex_unlock(&f->ev_mu);
	return NULL;
}

/* ---- the public calls --------------------------------------------------------- */

int fl_region_flush(struct fl_region *r)
{
	struct fl__far *f;
	uint64_t cursor = 0;
	_Atomic uint64_t *written;
	int first_err = 0, ret;

	if (!r)
		return -EINVAL;
	f = r->far;
	if (!f || !f->writeback)
		return -EOPNOTSUPP;
	/* The pages this flush writes: dirty again if the store's flush
	 * fails (not known to be durable; a retry writes them again). */
	written = bits_new(r->npages);
	if (!written)
		return -ENOMEM;
	wb_lock(f);
	/* Every page dirty now: one pass from the start. A failed batch is
	 * dirty again; the pass goes on, so that as much as can be is
	 * written, and returns the first error. */
	while (cursor < r->npages) {
		int64_t got = writeback_range(f, &cursor, r->npages, UINT64_MAX, written);
		if (got < 0 && !first_err)
			first_err = (int)got;
	}
	ret = fl_store_flush(r->store);
	if (ret && ret != -EOPNOTSUPP) {	/* a store without flush: written is stored */
		/* Under wb_mu all along: nothing written here was evicted
		 * since; a page the application discarded since is zeros. */
		for (uint64_t p = 0; p < r->npages; p++) {
			if (!fl__bit_test(written, p))
				continue;
			pthread_mutex_lock(stripe(f, p));
			if (fl__bit_test(r->resolved, p))
				set_dirty(f, p);
			pthread_mutex_unlock(stripe(f, p));
		}
		if (!first_err)
			first_err = ret;
	}
	wb_unlock(f);
	free((void *)written);
	return first_err;
}

int fl__far_populate(struct fl_region *r, uint64_t offset, size_t len)
{
	struct fl__far *f = r->far;
	size_t psz = r->page_size;
	uint64_t first, last, chunk;
	int ret = 0;

	if (offset > r->length || len > r->length - offset)
		return -EINVAL;
	first = offset / psz;
	last = (offset + len + psz - 1) / psz;
	/* Room is made before each chunk, so the set stays under the high
	 * mark; a range larger than the limit keeps its last pages. */
	chunk = FL_MAX(f->high - f->low, 1);
	wb_lock(f);
	for (uint64_t p = first; p < last && !ret; p += chunk) {
		uint64_t n = FL_MIN(chunk, last - p);
		uint64_t res = atomic_load(&r->resolved_count);

		if (res + n > f->high) {
			/* Embedded engine: the REMOVE event of an anonymous drop,
			 * or of a shmem sample's zap, waits for this very thread
			 * to read it. Leave the eviction to the evictor thread. */
			if ((f->anon_events || (f->sampling && f->remove_events)) && (r->engine->opts.flags & FL_ENGINE_EMBEDDED))
				kick(f);
			else
				ret = evict_to(f, f->high > n ? FL_MIN(f->low, f->high - n) : 0, NULL);
		}
		if (!ret)
			ret = fl__region_populate_raw(r, p * psz, n * psz);
	}
	wb_unlock(f);
	return ret;
}

static int advise_dontneed(struct fl__far *f, uint64_t first, uint64_t last)
{
	struct fl_region *r = f->r;
	int first_err = 0;

	if (f->anon_events && (r->engine->opts.flags & FL_ENGINE_EMBEDDED))
		return -EDEADLK;	/* our REMOVE event would wait for this thread */
	wb_lock(f);
	for (uint64_t p = first; p < last;) {
		size_t n = 0;
		int err = 0;

		pthread_mutex_lock(&f->pol_mu);
		for (; p < last && n < f->batch_pages; p++) {
			if (!fl__bit_test(r->resolved, p))
				continue;
			fl__far_policy_remove(f->pol, p);
			f->pages[n++] = p;
		}
		pthread_mutex_unlock(&f->pol_mu);
		if (!n)
			continue;
		evict_pages(f, f->pages, n, &err);
		if (err && !first_err)
			first_err = err;
	}
	wb_unlock(f);
	return first_err;
}

int fl_region_advise(struct fl_region *r, uint64_t offset, size_t len, unsigned advice)
{
	struct fl__far *f;
	uint64_t first, last;

	if (!r || !len || offset > r->length || len > r->length - offset)
		return -EINVAL;
	if (advice != FL_ADVISE_WILLNEED && advice != FL_ADVISE_DONTNEED && advice != FL_ADVISE_COLD &&
	    advice != FL_ADVISE_SEQUENTIAL)
		return -EINVAL;
	f = r->far;
	if (!f)
		return -EOPNOTSUPP;
	first = offset / r->page_size;
	last = (offset + len + r->page_size - 1) / r->page_size;
	switch (advice) {
	case FL_ADVISE_WILLNEED:
		return fl__far_populate(r, offset, len);
	case FL_ADVISE_DONTNEED:
		return advise_dontneed(f, first, last);
	case FL_ADVISE_SEQUENTIAL: {
		unsigned max = (unsigned)FL_MAX(1, (uint64_t)r->prefetch_max * FL_PAGE_SIZE / r->page_size);
		/* The prefetch window starts wide; fills in the range make
		 * the pages a window behind them cold (fl__far_filled()). */
		atomic_store(&r->window, max);
		atomic_store(&f->seq_first, first);
		atomic_store(&f->seq_end, last);
		return 0;
	}
	default:
		pthread_mutex_lock(&f->pol_mu);
		for (uint64_t p = first; p < last; p++)
			if (fl__bit_test(r->resolved, p))
				fl__far_policy_cold(f->pol, p);
		pthread_mutex_unlock(&f->pol_mu);
		return 0;
	}
}

void fl__far_stats(const struct fl_region *r, struct fl_region_stats *s)
{
	const struct fl__far *f = r->far;

	s->resident_pages = atomic_load(&r->resolved_count);
	if (!f)
		return;
	s->resident_peak = atomic_load(&f->resident_peak);
	s->dirty_pages = atomic_load(&f->dirty_count);
	s->pages_evicted_clean = atomic_load(&f->evicted_clean);
	s->pages_evicted_dirty = atomic_load(&f->evicted_dirty);
	s->pages_written_back = atomic_load(&f->written_back);
	s->bytes_written = atomic_load(&f->bytes_written);
	s->writeback_errors = atomic_load(&f->wb_errors);
	s->refaults = atomic_load(&f->refaults);
}
