// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Live snapshots (see snapshot.h): copy-before-write on a synchronous write
 * watch, and precopy rounds on any write watch, both feeding one image
 * writer.
 *
 * Every granule (a page, or a huge page) to be saved at the consistent
 * instant has a state: NEEDED, CLAIMED (someone is copying it), SAVED, or
 * SKIP (not part of this snapshot: unchanged since the parent). Whoever
 * moves a granule NEEDED -> CLAIMED copies it while it is still
 * write-protected, so its bytes are those of the instant; a writer that
 * faults on a CLAIMED granule waits in the watch's hook until it is SAVED.
 */
#include "kernel.h"
#include "watch-internal.h"

#include <faultline/snapshot.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

enum { G_NEEDED = 0, G_CLAIMED = 1, G_SAVED = 2, G_SKIP = 3 };

/* Granules per background step: 2 MiB of 4 KiB pages. */
#define SAVE_BATCH 512
/* Capacity of one fl_watch_get() call. */
#define GET_BATCH 65536
/* At most this much of a final dirty set is held in memory (see stash_map()). */
#define STASH_MAX_BYTES (256ull << 20)

struct snap_range {
	struct fl_snapshot *snap;
	uint64_t start, len;
	size_t gran;			/* granule: watch granularity */
	uint64_t ngran;
	enum fl_mem_type mem;
	unsigned region;		/* image region index */
	struct fl_watch *watch;
	bool own_watch;
	bool hooked;
	_Atomic uint8_t *state;		/* per granule, during the save */
	uint8_t *bounce;		/* see save_run(); saver threads only */
};

/*
 * A run of granules copied while the writers were paused, waiting in the
 * stash (at byte `off`) to be written to the image once they run again.
 */
struct stash_run {
	struct snap_range *r;
	uint64_t g, n;
	uint64_t off;
};

struct fl_snapshot {
	struct fl_snapshot_opts o;	/* the caller's, copied; pointers into its memory cleared */
	bool incremental;		/* o.parent was set */
	struct fl__logger log;
	struct fl_image_writer *writer;
	char *path;
	struct snap_range *r;
	unsigned nr;
	int pagemap_fd;
	bool sync_watch;		/* every range's watch is FL_WATCH_SYNC */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool thread_started;
	bool starting;			/* fl_snapshot_start() under way */
	bool begun;			/* fl_snapshot_begin() ran */
	bool begin_requested;		/* precopy: the caller is paused in begin() */
	bool final_done;		/* precopy: the final set is taken */
	enum fl_snapshot_phase phase;
	int error;
	uint8_t id[FL_IMAGE_ID_LEN];

	_Atomic bool failed;		/* hooks stop saving, writers pass */
	_Atomic uint64_t pages_saved, pages_cow, pages_final;
	unsigned rounds;
	uint64_t dirty_last;
	uint64_t stall_ns;
	uint64_t t_start, t_end;
	uint64_t last_progress;
	uint64_t needed_pages;		/* pages marked NEEDED for this instant */
	void **getbuf;
	uint8_t *present;		/* scratch for presence checks */
	/* Taken during the pause, written after it (take_instant()); only
	 * the thread taking the instant, then the snapshot thread, use it. */
	struct stash_run *stash;
	size_t nstash, stash_cap;
	uint8_t *stash_mem;		/* STASH_MAX_BYTES of address space, or NULL */
	uint64_t stash_bytes;		/* used */
};

static void set_error(struct fl_snapshot *s, int err)
{
	pthread_mutex_lock(&s->lock);
	if (!s->error)
		s->error = err;
	atomic_store(&s->failed, true);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void set_phase(struct fl_snapshot *s, enum fl_snapshot_phase ph)
{
	pthread_mutex_lock(&s->lock);
	s->phase = ph;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int fl_snapshot_progress(const struct fl_snapshot *cs, struct fl_snapshot_progress *p)
{
	struct fl_snapshot *s = (struct fl_snapshot *)cs;
	struct fl_snapshot_progress out = { .sz = sizeof(out) };
	int r;

	if (!s)
		return -EINVAL;
	r = fl__opts_out_check(p);
	if (r)
		return r;
	pthread_mutex_lock(&s->lock);
	out.phase = s->phase;
	out.error = s->error;
	out.rounds = s->rounds;
	out.dirty_last = s->dirty_last;
	out.stall_ns = s->stall_ns;
	out.elapsed_ns = s->t_start ? (s->t_end ? s->t_end : fl__now_ns()) - s->t_start : 0;
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->nr; i++)
		out.pages_total += s->r[i].len / FL_PAGE_SIZE;
	out.pages_saved = atomic_load(&s->pages_saved);
	out.pages_cow = atomic_load(&s->pages_cow);
	out.pages_final = atomic_load(&s->pages_final);
	return FL_OPTS_OUT(p, out);
}

static void report(struct fl_snapshot *s, bool force)
{
	struct fl_snapshot_progress p = { .sz = sizeof(p) };
	uint64_t now;

	if (!s->o.progress)
		return;
	now = fl__now_ns();
	if (!force && now - s->last_progress < 5000000)
		return;
	s->last_progress = now;
	fl_snapshot_progress(s, &p);
	s->o.progress(&p, s->o.progress_ctx);
}

/* ---- memory layout ------------------------------------------------------ */

/*
 * Which granules of [first, first + n) hold data anyone could read back: a
 * page that is neither mapped nor (shmem) in the page cache reads as zeros,
 * and copying it would allocate memory just to store zeros.
 */
static int granules_present(struct fl_snapshot *s, struct snap_range *r, uint64_t first,
			    uint64_t n, uint8_t *out)
{
	uint64_t addr = r->start + first * r->gran;
	uint64_t ent[SAVE_BATCH];
	int ret;

	if (r->mem == FL_MEM_HUGETLB) {
		/* A shared hugetlb page can sit in the page cache without being
		 * mapped here, and mincore() only sees mappings: read them all. */
		memset(out, 1, n);
		return 0;
	}
	if (r->mem == FL_MEM_SHMEM) {
		/* mincore() reports page-cache residency of shared mappings. */
		unsigned char vec[SAVE_BATCH];
		if (mincore((void *)(uintptr_t)addr, n * r->gran, vec) != 0)
			return -errno;
		for (uint64_t i = 0; i < n; i++)
			out[i] = vec[i] & 1;
		return 0;
	}
	/* Anonymous: one pagemap entry per 4 KiB page (the granule here).
	 * Bit 63: present; bit 62: a swap entry, which is data only for a real
	 * swap device: uffd-wp markers on unpopulated ptes (WP_UNPOPULATED)
	 * are swap entries of the last type number (all five type bits set),
	 * and reading them would allocate pages just to save zeros. */
	ret = fl__pread_full(s->pagemap_fd, ent, n * sizeof(ent[0]), addr / FL_PAGE_SIZE * 8);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < n; i++)
		out[i] = (ent[i] >> 63) || ((ent[i] >> 62) & 1 && (ent[i] & 0x1f) != 0x1f);
	return 0;
}

/* Write granules [g, g + n) of r from memory (or as zeros) into the image. */
static int save_run(struct fl_snapshot *s, struct snap_range *r, uint64_t g, uint64_t n, bool present)
{
	size_t ppg = r->gran / FL_PAGE_SIZE;
	const void *src = (const void *)(uintptr_t)(r->start + g * r->gran);
	int ret;

	/* Without WP_UNPOPULATED the watch catches never-populated anonymous
	 * pages as missing faults, served by its thread, which may be waiting
	 * in our hook for the image writer's lock. Reading the application's
	 * memory under that lock could then deadlock if a page went missing
	 * (MADV_DONTNEED) since it was found present: read it first. The
	 * hook itself (bounce NULL) reads a page the watch just installed. */
	if (present && r->bounce) {
		memcpy(r->bounce, src, n * r->gran);
		src = r->bounce;
	}
	if (present)
		ret = fl_image_writer_put(s->writer, r->region, g * ppg, n * ppg, src);
	else
		ret = fl_image_writer_put_zero(s->writer, r->region, g * ppg, n * ppg);
	if (ret < 0)
		return ret;
	atomic_fetch_add(&s->pages_saved, n * ppg);
	return 0;
}

/* One granule from the watch's thread (the hook): never through the bounce
 * buffer, which belongs to the saving thread. */
static int save_run_direct(struct fl_snapshot *s, struct snap_range *r, uint64_t g)
{
	size_t ppg = r->gran / FL_PAGE_SIZE;
	int ret = fl_image_writer_put(s->writer, r->region, g * ppg, ppg,
				      (const void *)(uintptr_t)(r->start + g * r->gran));

	if (ret < 0)
		return ret;
	atomic_fetch_add(&s->pages_saved, ppg);
	return 0;
}

static int copy_granules(struct fl_snapshot *s, struct snap_range *r, uint64_t first, uint64_t n);

/*
 * The stash: the final dirty set of a snapshot on watches that cannot hold
 * writers back is copied here while the writers are paused (a memcpy),
 * where writing to the image (its content hash, compression, the page
 * cache, its lock) and checking every page's presence would keep them
 * paused many times longer. Huge pages, and populated before the pause
 * for the size the last round suggests: a 4 KiB first-touch fault per
 * page would cost more than the copy. Beyond STASH_MAX_BYTES, or without
 * memory, granules go straight to the image, as before.
 */
static int stash_map(struct fl_snapshot *s)
{
	void *m;

	if (s->stash_mem)
		return 0;
	m = mmap(NULL, STASH_MAX_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	(void)madvise(m, STASH_MAX_BYTES, MADV_HUGEPAGE);	/* a hint: 4 KiB pages work too */
	s->stash_mem = m;
	return 0;
}

/* Before the pause: fault in room for about `pages` 4 KiB pages. */
static void stash_prepare(struct fl_snapshot *s, uint64_t pages)
{
	uint64_t bytes = FL_MIN(pages * 2 * FL_PAGE_SIZE + (2u << 20), STASH_MAX_BYTES);

	if (stash_map(s))
		return;
	bytes = (bytes + (2u << 20) - 1) & ~(uint64_t)((2u << 20) - 1);
	(void)madvise(s->stash_mem, FL_MIN(bytes, STASH_MAX_BYTES), MADV_POPULATE_WRITE);
}

/* take_dirty() callback during the pause: copy granule g of r into the stash. */
static int stash_one(struct fl_snapshot *s, struct snap_range *r, uint64_t g, void *ctx)
{
	struct stash_run *last = s->nstash ? &s->stash[s->nstash - 1] : NULL;

	(void)ctx;
	if (stash_map(s) || s->stash_bytes + r->gran > STASH_MAX_BYTES)
		return copy_granules(s, r, g, 1);
	memcpy(s->stash_mem + s->stash_bytes, (const void *)(uintptr_t)(r->start + g * r->gran), r->gran);
	if (last && last->r == r && last->g + last->n == g && last->off + last->n * r->gran == s->stash_bytes) {
		last->n++;
	} else {
		if (s->nstash == s->stash_cap) {
			size_t cap = s->stash_cap ? s->stash_cap * 2 : 1024;
			struct stash_run *ns = realloc(s->stash, cap * sizeof(*ns));
			if (!ns)
				return copy_granules(s, r, g, 1);
			s->stash = ns;
			s->stash_cap = cap;
		}
		s->stash[s->nstash++] = (struct stash_run){ r, g, 1, s->stash_bytes };
	}
	s->stash_bytes += r->gran;
	return 0;
}

/* Write what the pause stashed; it is later than every copy a precopy
 * round made of the same pages, and a page put twice keeps the last. A
 * page read as zeros (discarded since it was written) is stored as ZERO by
 * the writer. */
static int flush_stash(struct fl_snapshot *s)
{
	int ret = 0;

	for (size_t i = 0; i < s->nstash && !ret; i++) {
		struct stash_run *st = &s->stash[i];
		size_t ppg = st->r->gran / FL_PAGE_SIZE;
		if (atomic_load(&s->failed))
			ret = -ECANCELED;
		else
			ret = fl_image_writer_put(s->writer, st->r->region, st->g * ppg, st->n * ppg,
						  s->stash_mem + st->off);
		if (ret > 0)
			ret = 0;
		if (!ret)
			atomic_fetch_add(&s->pages_saved, st->n * ppg);
		report(s, false);
	}
	s->nstash = 0;
	s->stash_bytes = 0;
	if (s->stash_mem) {
		munmap(s->stash_mem, STASH_MAX_BYTES);
		s->stash_mem = NULL;
	}
	return ret;
}

/*
 * Copy granules [first, first + n) as they are now. Used by precopy rounds
 * (the watch was reset before, so a concurrent write re-dirties the
 * granule), and during the pause when the stash is full.
 */
static int copy_granules(struct fl_snapshot *s, struct snap_range *r, uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t step = FL_MIN(n, (uint64_t)SAVE_BATCH);
		int ret = granules_present(s, r, first, step, s->present);
		if (ret)
			return ret;
		for (uint64_t i = 0; i < step;) {
			uint64_t j = i;
			while (j < step && s->present[j] == s->present[i])
				j++;
			ret = save_run(s, r, first + i, j - i, s->present[i]);
			if (ret)
				return ret;
			i = j;
		}
		first += step;
		n -= step;
	}
	return 0;
}

/* ---- copy-before-write ------------------------------------------------- */

static void wait_saved(struct fl_snapshot *s, struct snap_range *r, uint64_t g)
{
	/* The claimer copies at most SAVE_BATCH granules before marking them:
	 * a short wait, and the writer is blocked in a fault anyway. */
	while (atomic_load(&r->state[g]) == G_CLAIMED && !atomic_load(&s->failed))
		sched_yield();
}

static int cow_hook(void *ctx, uint64_t addr, uint64_t len)
{
	struct snap_range *r = ctx;
	struct fl_snapshot *s = r->snap;
	uint64_t g;
	uint8_t st = G_NEEDED;
	int ret;

	(void)len;
	if (atomic_load(&s->failed))
		return -ECANCELED;
	if (addr < r->start || addr >= r->start + r->len)
		return 0;
	g = (addr - r->start) / r->gran;
	if (!atomic_compare_exchange_strong(&r->state[g], &st, G_CLAIMED)) {
		if (st == G_CLAIMED)
			wait_saved(s, r, g);
		return 0;
	}
	/* Still protected: these are the bytes of the consistent instant. A
	 * page nobody populated reads as zeros here, which is what it held. */
	ret = save_run_direct(s, r, g);
	if (ret) {
		set_error(s, ret);
		atomic_store(&r->state[g], G_SAVED);
		return ret;
	}
	atomic_fetch_add(&s->pages_cow, r->gran / FL_PAGE_SIZE);
	atomic_store(&r->state[g], G_SAVED);
	return 0;
}

/* Background side of copy-before-write: every NEEDED granule, in order. */
static int save_needed(struct fl_snapshot *s)
{
	for (unsigned i = 0; i < s->nr; i++) {
		struct snap_range *r = &s->r[i];
		for (uint64_t g = 0; g < r->ngran;) {
			uint64_t n = FL_MIN(r->ngran - g, (uint64_t)SAVE_BATCH), claimed = 0;
			uint8_t claim[SAVE_BATCH];
			int ret;

			if (atomic_load(&s->failed))
				return -ECANCELED;
			for (uint64_t k = 0; k < n; k++) {
				uint8_t st = G_NEEDED;
				claim[k] = atomic_compare_exchange_strong(&r->state[g + k], &st, G_CLAIMED);
				claimed += claim[k];
			}
			if (claimed) {
				ret = granules_present(s, r, g, n, s->present);
				for (uint64_t k = 0; k < n && !ret;) {
					uint64_t j = k;
					if (!claim[k]) {
						k++;
						continue;
					}
					while (j < n && claim[j] && s->present[j] == s->present[k])
						j++;
					ret = save_run(s, r, g + k, j - k, s->present[k]);
					k = j;
				}
				for (uint64_t k = 0; k < n; k++)
					if (claim[k])
						atomic_store(&r->state[g + k], G_SAVED);
				if (ret)
					return ret;
			}
			g += n;
			report(s, false);
		}
	}
	return 0;
}

static void unhook_all(struct fl_snapshot *s)
{
	for (unsigned i = 0; i < s->nr; i++) {
		if (s->r[i].hooked)
			fl__watch_set_hook(s->r[i].watch, NULL, NULL);
		s->r[i].hooked = false;
	}
}

static int hook_all(struct fl_snapshot *s)
{
	for (unsigned i = 0; i < s->nr; i++) {
		int ret = fl__watch_set_hook(s->r[i].watch, cow_hook, &s->r[i]);
		if (ret) {
			unhook_all(s);
			return ret;
		}
		s->r[i].hooked = true;
	}
	return 0;
}

/* ---- dirty sets ----------------------------------------------------------- */

/*
 * Get and reset the written granules of every range; `fn` sees each one.
 * Resetting re-protects exactly what was returned, so a write after this
 * point shows up in the next call.
 */
static int64_t take_dirty(struct fl_snapshot *s, int (*fn)(struct fl_snapshot *, struct snap_range *, uint64_t, void *),
			  void *ctx)
{
	int64_t total = 0;

	for (unsigned i = 0; i < s->nr; i++) {
		struct snap_range *r = &s->r[i];
		uint64_t count;

		do {
			int ret;
			count = GET_BATCH;
			ret = fl_watch_get(r->watch, (void *)(uintptr_t)r->start, r->len, FL_WATCH_RESET,
					   s->getbuf, &count, NULL);
			if (ret)
				return ret;
			for (uint64_t k = 0; k < count; k++) {
				ret = fn(s, r, ((uint64_t)(uintptr_t)s->getbuf[k] - r->start) / r->gran, ctx);
				if (ret)
					return ret;
			}
			total += (int64_t)count;
		} while (count == GET_BATCH);
	}
	return total;
}

/*
 * The written granules of every range, without resetting them: `fn` sees
 * each. For the pause on watches that cannot hold writers back: getting is
 * a page-table scan, while resetting re-protects page by page (PAGEMAP_SCAN
 * with WP_MATCHING: microseconds per page on a VM, most of the pause). So
 * the final set stays marked written: the next incremental snapshot saves
 * it again, which is correct, only not minimal. Pages are not reset, so a
 * full batch is followed by the next from the address after its last.
 */
static int64_t take_dirty_keep(struct fl_snapshot *s,
			       int (*fn)(struct fl_snapshot *, struct snap_range *, uint64_t, void *), void *ctx)
{
	int64_t total = 0;

	for (unsigned i = 0; i < s->nr; i++) {
		struct snap_range *r = &s->r[i];
		uint64_t at = r->start, end = r->start + r->len, count;

		while (at < end) {
			int ret;
			count = GET_BATCH;
			ret = fl_watch_get(r->watch, (void *)(uintptr_t)at, end - at, 0, s->getbuf, &count, NULL);
			if (ret)
				return ret;
			for (uint64_t k = 0; k < count; k++) {
				ret = fn(s, r, ((uint64_t)(uintptr_t)s->getbuf[k] - r->start) / r->gran, ctx);
				if (ret)
					return ret;
			}
			total += (int64_t)count;
			if (count < GET_BATCH)
				break;
			at = (uint64_t)(uintptr_t)s->getbuf[count - 1] + r->gran;
		}
	}
	return total;
}

/* At the instant: marked under the watch's lock (fl__watch_get_mark()),
 * before the page is re-protected, so a stale fault message handled by
 * the hook either comes before (and the page is taken here) or after (and
 * the hook sees NEEDED and saves it first). */
static void mark_locked(void *ctx, uint64_t addr)
{
	struct snap_range *r = ctx;

	if (addr >= r->start && addr < r->start + r->len &&
	    atomic_exchange_explicit(&r->state[(addr - r->start) / r->gran], G_NEEDED, memory_order_relaxed) !=
		    G_NEEDED)
		r->snap->needed_pages += r->gran / FL_PAGE_SIZE;
}

static int take_dirty_marked(struct fl_snapshot *s)
{
	for (unsigned i = 0; i < s->nr; i++) {
		uint64_t count;
		do {
			int ret;
			count = GET_BATCH;
			ret = fl__watch_get_mark(s->r[i].watch, s->getbuf, &count, mark_locked, &s->r[i]);
			if (ret)
				return ret;
		} while (count == GET_BATCH);
	}
	return 0;
}

static int mark_needed(struct fl_snapshot *s, struct snap_range *r, uint64_t g, void *ctx)
{
	(void)ctx;
	/* Only the thread taking the instant (or its pre-pass) marks, before
	 * any hook or saver runs: no race on the count. */
	if (atomic_exchange_explicit(&r->state[g], G_NEEDED, memory_order_relaxed) != G_NEEDED)
		s->needed_pages += r->gran / FL_PAGE_SIZE;
	return 0;
}

/* Granules come in ascending order: coalesce them into runs. */
struct copy_acc {
	struct snap_range *r;
	uint64_t first, n;
};

static int flush_acc(struct fl_snapshot *s, struct copy_acc *a)
{
	int ret = 0;
	if (a->n)
		ret = copy_granules(s, a->r, a->first, a->n);
	a->n = 0;
	return ret;
}

static int copy_one(struct fl_snapshot *s, struct snap_range *r, uint64_t g, void *ctx)
{
	struct copy_acc *a = ctx;
	int ret;

	if (a->n && a->r == r && a->first + a->n == g && a->n < SAVE_BATCH) {
		a->n++;
		return 0;
	}
	ret = flush_acc(s, a);
	a->r = r;
	a->first = g;
	a->n = 1;
	return ret;
}

static int64_t copy_dirty(struct fl_snapshot *s)
{
	struct copy_acc a = { 0 };
	int64_t n = take_dirty(s, copy_one, &a);
	int ret;

	if (n < 0)
		return n;
	ret = flush_acc(s, &a);
	return ret ? ret : n;
}

/* Every granule NEEDED (a full COW snapshot). Nothing else touches the
 * states yet, so plain stores and one fence do. */
static void set_all_needed(struct fl_snapshot *s)
{
	s->needed_pages = 0;
	for (unsigned i = 0; i < s->nr; i++) {
		memset((void *)s->r[i].state, G_NEEDED, s->r[i].ngran);
		s->needed_pages += s->r[i].len / FL_PAGE_SIZE;
	}
	atomic_thread_fence(memory_order_seq_cst);
}

/*
 * Before the pause (COW with a quiesce callback): re-protect what the
 * writers dirtied since the watches were armed, a few times while that
 * shrinks, so the pause only has to deal with the last few pages. Marking
 * them NEEDED is right for full and incremental snapshots alike.
 */
static int cow_prepass(struct fl_snapshot *s)
{
	int64_t prev = INT64_MAX;

	for (int i = 0; i < 4; i++) {
		int64_t n = take_dirty(s, mark_needed, NULL);
		if (n < 0)
			return (int)n;
		if (n <= 64 || n >= prev)
			break;
		prev = n;
	}
	return 0;
}

/* ---- the consistent instant -------------------------------------------- */

/*
 * Called with the writers paused. COW: protect what was written since the
 * watches were set up (everything else still is), and arm copy-before-write
 * for the granules of this snapshot. PRECOPY: the final dirty set, armed
 * for copy-before-write on sync watches, copied right here otherwise.
 */
static int take_instant(struct fl_snapshot *s)
{
	bool incremental = s->incremental;
	int64_t n;

	if (s->o.strategy == FL_SNAPSHOT_COW && !incremental) {
		/* Everything is saved; the dirty set only needs re-protecting.
		 * Hooks first: see mark_locked(). */
		set_all_needed(s);
		n = hook_all(s);
		if (!n)
			n = take_dirty_marked(s);
		if (n < 0)
			return (int)n;
		atomic_store(&s->pages_final, s->needed_pages);
		return 0;
	}
	/* Incremental COW, or the end of precopy: the dirty set is what this
	 * snapshot still has to save. */
	if (s->sync_watch) {
		/* States start SKIP; the pre-pass may have marked some. */
		n = hook_all(s);
		if (!n)
			n = take_dirty_marked(s);
		if (n < 0)
			return (int)n;
		atomic_store(&s->pages_final, s->needed_pages);
		return 0;
	}
	/* Watches that cannot hold a writer back: copy while paused, into
	 * memory; the snapshot thread writes it out (flush_stash()). After
	 * precopy rounds (each reset what it took) the final set is small and
	 * is left marked written; an incremental COW snapshot takes everything
	 * written since the parent here, and not resetting it would carry all
	 * of it into every later snapshot of the chain. */
	n = s->o.strategy == FL_SNAPSHOT_PRECOPY ? take_dirty_keep(s, stash_one, NULL)
						  : take_dirty(s, stash_one, NULL);
	if (n < 0)
		return (int)n;
	atomic_store(&s->pages_final, (uint64_t)n);
	return 0;
}

int fl_snapshot_begin(struct fl_snapshot *s)
{
	uint64_t t0 = fl__now_ns();
	int ret;

	if (!s)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (s->begun || s->error) {
		ret = s->error ? s->error : -EALREADY;
		pthread_mutex_unlock(&s->lock);
		return ret;
	}
	if (s->o.strategy == FL_SNAPSHOT_PRECOPY) {
		if (!s->thread_started) {
			pthread_mutex_unlock(&s->lock);
			return -ESRCH;	/* precopy rounds come first: fl_snapshot_start() */
		}
		/* Hand the instant to the snapshot thread, which owns the
		 * watches during rounds, and wait for it. */
		s->begin_requested = true;
		pthread_cond_broadcast(&s->cond);
		while (!s->final_done && !s->error)
			pthread_cond_wait(&s->cond, &s->lock);
		s->begun = true;
		s->stall_ns = fl__now_ns() - t0;
		ret = s->error;
		pthread_mutex_unlock(&s->lock);
		return ret;
	}
	s->begun = true;
	pthread_mutex_unlock(&s->lock);
	ret = take_instant(s);
	pthread_mutex_lock(&s->lock);
	s->stall_ns = fl__now_ns() - t0;
	if (ret && !s->error)
		s->error = ret;
	if (ret)
		atomic_store(&s->failed, true);
	if (!ret)
		s->phase = FL_SNAP_STREAMING;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* ---- the snapshot thread ------------------------------------------------ */

static int quiesce(struct fl_snapshot *s, bool pause)
{
	int ret = s->o.quiesce(pause, s->o.quiesce_ctx);
	return ret > 0 ? -EINVAL : ret;
}

static int precopy_rounds(struct fl_snapshot *s)
{
	unsigned max_rounds = s->o.max_rounds ? s->o.max_rounds : 8;
	uint64_t converge = s->o.converge_pages ? s->o.converge_pages : 256;
	uint64_t prev = UINT64_MAX;
	int64_t n;

	set_phase(s, FL_SNAP_COPYING);
	if (!s->incremental) {
		/* Round 0: everything. Watches given by the caller are reset
		 * first so that what changes from here on is re-copied. */
		for (unsigned i = 0; i < s->nr; i++) {
			struct snap_range *r = &s->r[i];
			int ret;
			if (!r->own_watch) {
				ret = fl_watch_reset(r->watch, (void *)(uintptr_t)r->start, r->len);
				if (ret)
					return ret;
			}
			ret = copy_granules(s, r, 0, r->ngran);
			if (ret)
				return ret;
			report(s, false);
		}
		s->rounds = 1;
	}
	for (;;) {
		if (atomic_load(&s->failed))
			return -ECANCELED;
		if (s->rounds >= max_rounds)
			break;
		pthread_mutex_lock(&s->lock);
		bool paused = s->begin_requested;	/* the caller is waiting: finish now */
		pthread_mutex_unlock(&s->lock);
		if (paused)
			break;
		n = copy_dirty(s);
		if (n < 0)
			return (int)n;
		pthread_mutex_lock(&s->lock);
		s->rounds++;
		s->dirty_last = (uint64_t)n;
		pthread_mutex_unlock(&s->lock);
		report(s, true);
		/* Stop when small enough, or when another round would not
		 * shrink it (the writers dirty as fast as we copy). */
		if ((uint64_t)n <= converge || (uint64_t)n >= prev)
			break;
		prev = (uint64_t)n;
	}
	return 0;
}

static int precopy_final(struct fl_snapshot *s)
{
	int ret;

	/* Room for the final set, faulted in while the writers still run. */
	if (!s->sync_watch)
		stash_prepare(s, s->dirty_last);
	if (s->o.quiesce) {
		uint64_t t0, stall;
		/* The stall is the time the writers are held: from the pause
		 * callback's return to the resume call. The callbacks' own time
		 * (waiting for writers to reach a safe point, waking them) is
		 * the application's. */
		ret = quiesce(s, true);
		if (ret)
			return ret;
		t0 = fl__now_ns();
		ret = take_instant(s);
		stall = fl__now_ns() - t0;
		int r2 = quiesce(s, false);
		pthread_mutex_lock(&s->lock);
		s->stall_ns = stall;
		s->begun = true;
		pthread_mutex_unlock(&s->lock);
		return ret ? ret : r2;
	}
	pthread_mutex_lock(&s->lock);
	s->phase = FL_SNAP_READY;
	pthread_cond_broadcast(&s->cond);
	while (!s->begin_requested && !s->error)
		pthread_cond_wait(&s->cond, &s->lock);
	ret = s->error;
	pthread_mutex_unlock(&s->lock);
	if (ret)
		return ret;
	ret = take_instant(s);
	pthread_mutex_lock(&s->lock);
	s->final_done = true;
	if (ret && !s->error)
		s->error = ret;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* Our own watches are done once nothing is hooked: writers then run
 * without faults (freeing unprotects). */
static void free_own_watches(struct fl_snapshot *s)
{
	for (unsigned i = 0; i < s->nr; i++) {
		if (s->r[i].own_watch)
			s->r[i].watch = fl_watch_free(s->r[i].watch);
		s->r[i].own_watch = false;
	}
}

static void *snapshot_thread(void *arg)
{
	struct fl_snapshot *s = arg;
	int ret = 0;

	if (s->o.strategy == FL_SNAPSHOT_PRECOPY) {
		ret = precopy_rounds(s);
		if (!ret)
			ret = precopy_final(s);
	}
	if (!ret) {
		set_phase(s, FL_SNAP_STREAMING);
		ret = flush_stash(s);
	}
	if (!ret)
		ret = save_needed(s);
	/* Writers stop waiting on us before the image is sealed (on error:
	 * `failed` first, so a hook waiting on a claimed granule returns). */
	if (ret)
		set_error(s, ret);
	unhook_all(s);
	free_own_watches(s);
	if (!ret && atomic_load(&s->failed))
		ret = -ECANCELED;
	pthread_mutex_lock(&s->lock);
	if (!ret && s->error)
		ret = s->error;
	pthread_mutex_unlock(&s->lock);
	if (!ret) {
		ret = fl_image_writer_finish(s->writer, s->id);
		s->writer = NULL;
	}
	if (ret) {
		set_error(s, ret);
		fl__log(&s->log, FL_LOG_ERROR, "snapshot %s failed: %s", s->path, strerror(-ret));
	}
	pthread_mutex_lock(&s->lock);
	s->t_end = fl__now_ns();
	s->phase = s->error == -ECANCELED ? FL_SNAP_CANCELLED : s->error ? FL_SNAP_FAILED : FL_SNAP_DONE;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	report(s, true);
	return NULL;
}

static int start_thread(struct fl_snapshot *s);

int fl_snapshot_start(struct fl_snapshot *s)
{
	int ret;

	if (!s)
		return -EINVAL;
	/* `starting` is claimed under the lock: fl_snapshot_wait() may start
	 * a begun COW snapshot while another thread calls this, and two
	 * snapshot threads must never run. */
	pthread_mutex_lock(&s->lock);
	ret = s->thread_started || s->starting ? -EALREADY : s->error;
	if (!ret)
		s->starting = true;
	pthread_mutex_unlock(&s->lock);
	if (ret)
		return ret;
	ret = start_thread(s);
	pthread_mutex_lock(&s->lock);
	s->starting = false;
	pthread_cond_broadcast(&s->cond);	/* a waiter that found it starting */
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static int start_thread(struct fl_snapshot *s)
{
	int ret;

	if (s->o.strategy == FL_SNAPSHOT_COW && !s->begun) {
		if (!s->o.quiesce)
			return -EDEADLK;	/* nobody can pause the writers */
		if (s->sync_watch) {
			ret = cow_prepass(s);
			if (ret)
				return ret;
		}
		ret = quiesce(s, true);
		if (ret)
			return ret;
		ret = fl_snapshot_begin(s);
		int r2 = quiesce(s, false);
		if (ret)
			return ret;
		if (r2)
			return r2;
	}
	s->t_start = s->t_start ? s->t_start : fl__now_ns();
	ret = -pthread_create(&s->thread, NULL, snapshot_thread, s);
	if (ret) {
		set_error(s, ret);
		unhook_all(s);
		return ret;
	}
	pthread_mutex_lock(&s->lock);
	s->thread_started = true;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int wait_until(struct fl_snapshot *s, int timeout_ms, bool ready)
{
	struct timespec dl;
	int ret = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	if (timeout_ms >= 0) {
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (dl.tv_nsec >= 1000000000) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&s->lock);
	for (;;) {
		bool done = s->phase >= FL_SNAP_DONE || (!s->thread_started && s->error);
		if (done || (ready && (s->phase == FL_SNAP_READY || s->error))) {
			ret = s->error;
			break;
		}
		if (!s->thread_started && !s->starting && !ready) {
			ret = -ESRCH;	/* never started: nothing will finish */
			break;
		}
		if (timeout_ms < 0)
			pthread_cond_wait(&s->cond, &s->lock);
		else if (pthread_cond_timedwait(&s->cond, &s->lock, &dl) == ETIMEDOUT) {
			ret = -ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int fl_snapshot_wait_ready(struct fl_snapshot *s, int timeout_ms)
{
	if (!s || s->o.strategy != FL_SNAPSHOT_PRECOPY || s->o.quiesce)
		return -EINVAL;
	return wait_until(s, timeout_ms, true);
}

int fl_snapshot_wait(struct fl_snapshot *s, int timeout_ms, uint8_t ret_id[FL_IMAGE_ID_LEN])
{
	bool start;
	int ret;

	if (!s)
		return -EINVAL;
	/* COW, explicit: the instant is taken (fl_snapshot_begin()), only the
	 * streaming is left, and waiting for it is asking for it. */
	pthread_mutex_lock(&s->lock);
	start = s->o.strategy == FL_SNAPSHOT_COW && s->begun && !s->thread_started && !s->error;
	pthread_mutex_unlock(&s->lock);
	if (start) {
		ret = fl_snapshot_start(s);
		if (ret && ret != -EALREADY)
			return ret;
	}
	ret = wait_until(s, timeout_ms, false);
	if (!ret && ret_id)
		memcpy(ret_id, s->id, FL_IMAGE_ID_LEN);
	return ret;
}

int fl_snapshot_cancel(struct fl_snapshot *s)
{
	bool started;

	if (!s)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	started = s->thread_started;
	if (s->phase >= FL_SNAP_DONE) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	pthread_mutex_unlock(&s->lock);
	set_error(s, -ECANCELED);
	if (started) {
		wait_until(s, -1, false);
	} else {
		unhook_all(s);
		set_phase(s, FL_SNAP_CANCELLED);
	}
	return 0;
}

/* ---- setup and teardown -------------------------------------------------- */

struct fl_snapshot *fl_snapshot_free(struct fl_snapshot *s)
{
	if (!s)
		return NULL;
	fl_snapshot_cancel(s);
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	unhook_all(s);
	free_own_watches(s);
	for (unsigned i = 0; i < s->nr; i++) {
		free((void *)s->r[i].state);
		free(s->r[i].bounce);
	}
	fl_image_writer_abort(s->writer);
	if (s->pagemap_fd >= 0)
		fl__close(s->pagemap_fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	if (s->stash_mem)
		munmap(s->stash_mem, STASH_MAX_BYTES);
	free(s->stash);
	free(s->getbuf);
	free(s->present);
	free(s->r);
	free(s->path);
	free(s);
	return NULL;
}

static int setup_range(struct fl_snapshot *s, unsigned i, const struct fl_range *rg, struct fl_watch *given)
{
	struct snap_range *r = &s->r[i];
	struct fl_image_region ir = { .sz = sizeof(ir) };
	int ret;

	r->snap = s;
	r->start = rg->start;
	r->len = rg->len;
	if (!rg->len || rg->start % FL_PAGE_SIZE || rg->len % FL_PAGE_SIZE)
		return -EINVAL;
	{
		size_t psz;
		int prot;
		ret = fl__range_info(rg->start, rg->len, &r->mem, &psz, &prot);
		if (ret)
			return ret;
	}
	if (given) {
		r->watch = given;
	} else {
		struct fl_watch_opts wo = {
			.sz = sizeof(wo),
			/* SYNC even for precopy: the final dirty set is then
			 * saved copy-before-write after the pause instead of
			 * copied during it. */
			.backend = s->o.strategy == FL_SNAPSHOT_COW || fl_feature_has(FL_FEATURE_WP) ?
					   FL_WATCH_SYNC : FL_WATCH_AUTO,
			/* Leave the application's huge pages alone: a write
			 * into one just marks more granules to save. */
			.flags = FL_WATCH_ALLOW_THP,
			.log = s->o.log,
			.log_ctx = s->o.log_ctx,
		};
		ret = fl_watch_new((void *)(uintptr_t)rg->start, rg->len, &wo, &r->watch);
		if (ret == -EBUSY)
			fl__log(&s->log, FL_LOG_ERROR,
				"snapshot: range %u (%#llx, %llu bytes) is registered with another userfaultfd "
				"(a lazy faultline region, or a watch): it cannot be write-protected",
				i, (unsigned long long)rg->start, (unsigned long long)rg->len);
		if (ret)
			return ret;
		r->own_watch = true;
	}
	r->gran = fl_watch_granularity(r->watch);
	if (r->mem == FL_MEM_ANON && r->watch->missing_reg) {
		r->bounce = malloc((size_t)SAVE_BATCH * r->gran);
		if (!r->bounce)
			return -ENOMEM;
	}
	if (!r->gran || r->len % r->gran)
		return -EINVAL;
	r->ngran = r->len / r->gran;
	r->state = malloc(r->ngran);
	if (!r->state)
		return -ENOMEM;
	memset((void *)r->state, G_SKIP, r->ngran);
	ir.start = rg->start;
	ir.length = rg->len;
	ir.prot = PROT_READ | PROT_WRITE;
	ir.mem = r->mem;
	snprintf(ir.name, sizeof(ir.name), "range%u", i);
	ret = fl_image_writer_add_region(s->writer, &ir);
	if (ret < 0)
		return ret;
	r->region = (unsigned)ret;
	return 0;
}

int fl_snapshot_new(const char *path, const struct fl_snapshot_opts *opts, struct fl_snapshot **ret_snapshot)
{
	struct fl_image_writer_opts wo = { .sz = sizeof(wo) };
	struct fl_snapshot_opts o;
	struct fl_snapshot *s;
	int ret;

	if (!path || !opts || !ret_snapshot)
		return -EINVAL;
	/* Only the copy is read from here on: the caller's struct may change
	 * or go away (and a second read could see different values). */
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	if (!o.ranges || !o.nr_ranges || o.strategy > FL_SNAPSHOT_PRECOPY)
		return -EINVAL;
	if (o.parent && !o.watches)
		return -ENODATA;	/* nothing says what changed since the parent */
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = o;
	s->incremental = o.parent != NULL;
	/* Pointers into the caller's memory are valid only during this call:
	 * the ranges are copied into s->r, the strings into the writer, and
	 * the watches are held in s->r[i].watch. */
	s->o.ranges = NULL;
	s->o.watches = NULL;
	s->o.parent = NULL;
	s->o.creator = NULL;
	s->pagemap_fd = -1;
	s->log = (struct fl__logger){ .fn = o.log, .ctx = o.log_ctx, .level = FL_LOG_INFO };
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->path = strdup(path);
	s->r = calloc(o.nr_ranges, sizeof(*s->r));
	s->getbuf = calloc(GET_BATCH, sizeof(void *));
	s->present = calloc(SAVE_BATCH, 1);
	if (!s->path || !s->r || !s->getbuf || !s->present) {
		fl_snapshot_free(s);
		return -ENOMEM;
	}
	s->nr = o.nr_ranges;
	ret = fl__open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC, &s->pagemap_fd);
	if (ret)
		goto fail;
	wo.flags = o.image_flags;
	wo.parent = o.parent;
	wo.creator = o.creator ? o.creator : "faultline snapshot";
	ret = fl_image_writer_new(path, &wo, &s->writer);
	if (ret)
		goto fail;
	s->sync_watch = true;
	for (unsigned i = 0; i < s->nr; i++) {
		ret = setup_range(s, i, &o.ranges[i], o.watches ? o.watches[i] : NULL);
		if (ret)
			goto fail;
		if (fl_watch_backend(s->r[i].watch) != FL_WATCH_SYNC)
			s->sync_watch = false;
	}
	/* A full COW snapshot must hold writers back on every page. Its own
	 * errno, since the log is silent by default: the caller must be able
	 * to tell "use FL_WATCH_SYNC watches, or PRECOPY" from a bad range. */
	if (o.strategy == FL_SNAPSHOT_COW && !s->incremental && !s->sync_watch) {
		fl__log(&s->log, FL_LOG_ERROR,
			"snapshot: a full COW snapshot needs FL_WATCH_SYNC watches; use PRECOPY");
		ret = -EMEDIUMTYPE;
		goto fail;
	}
	s->phase = FL_SNAP_PREPARED;
	*ret_snapshot = s;
	return 0;
fail:
	fl_snapshot_free(s);	/* tears down the ranges set up so far */
	return ret;
}

int fl_snapshot_take(const char *path, const struct fl_snapshot_opts *opts, uint8_t ret_id[FL_IMAGE_ID_LEN])
{
	struct fl_snapshot_opts o;
	struct fl_snapshot *s;
	int ret;

	/* Refused before anything is set up (a temporary file, watches,
	 * write-protection of the caller's ranges) when nobody can pause the
	 * writers. */
	ret = opts ? FL_OPTS_COPY(o, opts) : -EINVAL;
	if (ret)
		return ret;
	if (!o.quiesce)
		return -EDEADLK;
	o.sz = sizeof(o);	/* validated: the copy is what this build knows */
	ret = fl_snapshot_new(path, &o, &s);
	if (ret)
		return ret;
	ret = fl_snapshot_start(s);
	if (!ret)
		ret = fl_snapshot_wait(s, -1, ret_id);
	fl_snapshot_free(s);
	return ret;
}
