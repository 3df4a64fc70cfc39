// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Huge fills: a 2 MiB chunk of an anonymous region, read from the store
 * into a THP staging buffer and moved into place with UFFDIO_MOVE.
 *
 * UFFDIO_COPY installs 4 KiB ptes only, and every first access to one
 * costs a trap here; a THP moved into an empty PMD costs one move and no
 * trap per page. The kernel moves the THP whole only when the
 * destination PMD is empty (no page of the chunk present, no page table)
 * and source and destination are 2 MiB aligned; otherwise it splits the
 * THP and moves pte by pte, and answers EEXIST for a destination page that
 * is present: a page the application has (or wrote) is never replaced.
 *
 * The staged pages must be exclusive anonymous pages for MOVE: the
 * staging buffer is MADV_DONTFORK, so a fork of the application never
 * shares it. A page the kernel still refuses to move (EBUSY: pinned or
 * shared; EINVAL: VMAs it will not move between) is copied instead.
 */
#include "region-internal.h"
#include "store-internal.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

/*
 * How long a demand fault waits for another worker that is staging its
 * chunk (~0.2-0.5 ms for a local image here) before it takes the 4 KiB
 * path, which costs the chunk its PMD (the page table it allocates stays).
 */
#define BUSY_WAIT_NS (20ull * 1000 * 1000)

/*
 * What a huge page costs. A huge fill takes a free 2 MiB block for its
 * staging THP, which the kernel clears. On these VMs that costs 0.18-0.26
 * ms when the block held a huge page freed recently, but 5-25 ms when it
 * held 4 KiB pages or was free long enough for the balloon to report it to
 * the host (measured: THPs faulted in right after 1 GiB of THPs was freed,
 * even 1 s later: 0/64 slow; right after 1 GiB of 4 KiB pages was freed:
 * 10/64, 1 s later 59/64, 11 ms each on average). 4 KiB fills never pay it:
 * UFFDIO_COPY takes order-0 pages. A 4 KiB fill of a whole chunk costs
 * ~0.65 ms here (bench fill, 3.2 GB/s), so a staging THP slower than that
 * to fault in means huge fills lose, 10-40x, for as long as the kernel has
 * only such blocks: a machine whose last large frees were 4 KiB pages (like
 * bench fill, whose baseline runs in between) stays there.
 *
 * Which blocks the kernel will hand out cannot be asked beforehand, so the
 * region learns it: each staging THP is faulted in by MADV_POPULATE_WRITE
 * and timed. One no slower than huge_slow_ns (HUGE_SLOW_NS, or
 * FAULTLINE_HUGE_SLOW_US) earns the region HUGE_GAIN_NS of credit (what a
 * huge fill saves over 4 KiB fills of the chunk here: bench fill ran
 * 0.39 ms a chunk with fast huge pages, 0.65 ms with COPY), up to
 * HUGE_CREDIT_MAX_NS; a slower one costs its time. When the credit runs
 * out the region's huge fills pause for HUGE_PAUSE_NS (4 KiB fills
 * meanwhile), and the first huge fill after that is a probe, with no
 * credit. So a lone slow page among fast ones (after an eager restore
 * freed its huge pages, 1 in 100-250 here, 1-26 ms) is absorbed, while a
 * machine that has only slow blocks pauses at its first or second. Only
 * one probe runs at a time (the others fill 4 KiB pages meanwhile), and in
 * a region with a background filler only the filler and populate probe, so
 * that a slow probe costs a demand fault nothing. A slow page is used all
 * the same: a probe costs its slowness minus ~0.65 ms, once per pause at
 * most. Per region, not per process: a restore made right after huge pages
 * were freed (another restore, an eager one) must not inherit a pause
 * learnt before them.
 */
#define HUGE_SLOW_NS (1000ull * 1000)
#define HUGE_GAIN_NS (250ll * 1000)
#define HUGE_CREDIT_MAX_NS (25ll * 1000 * 1000)
#define HUGE_PAUSE_NS (1000ull * 1000 * 1000)


void fl__huge_init(struct fl_region *r)
{
	const char *env = getenv("FAULTLINE_HUGE_SLOW_US");
	uint64_t us;

	r->huge_slow_ns = HUGE_SLOW_NS;
	if (env && !fl__parse_uint(env, 0, UINT64_MAX / 1000, &us))
		r->huge_slow_ns = us * 1000;
	atomic_init(&r->huge_state, FL__HUGE_UNKNOWN);
	atomic_init(&r->huge_slow_until, 0);
	atomic_init(&r->huge_credit, 0);
}

/* May this caller start a huge fill now? `may_probe`: it may also be the
 * one that finds out what a huge page costs. */
static bool huge_allowed(struct fl_region *r, bool may_probe)
{
	switch (atomic_load_explicit(&r->huge_state, memory_order_acquire)) {
	case FL__HUGE_FAST:
		return true;
	case FL__HUGE_UNKNOWN:
		return may_probe;
	case FL__HUGE_SLOW:
		return may_probe && fl__now_ns() >= atomic_load_explicit(&r->huge_slow_until, memory_order_relaxed);
	default:
		return false;	/* another worker is probing */
	}
}

void fl__huge_cost(struct fl_region *r, uint64_t dt, bool probe)
{
	if (dt <= r->huge_slow_ns) {
		/* Racing workers may overshoot the cap by a gain or two. */
		if (atomic_fetch_add_explicit(&r->huge_credit, HUGE_GAIN_NS, memory_order_relaxed) + HUGE_GAIN_NS >
		    HUGE_CREDIT_MAX_NS)
			atomic_store_explicit(&r->huge_credit, HUGE_CREDIT_MAX_NS, memory_order_relaxed);
		if (probe)
			atomic_store_explicit(&r->huge_state, FL__HUGE_FAST, memory_order_release);
		return;
	}
	if (atomic_fetch_sub_explicit(&r->huge_credit, (int64_t)dt, memory_order_relaxed) - (int64_t)dt >= 0) {
		if (probe)
			atomic_store_explicit(&r->huge_state, FL__HUGE_FAST, memory_order_release);
		return;
	}
	atomic_store_explicit(&r->huge_credit, 0, memory_order_relaxed);
	/* In a MADV_HUGEPAGE range a first write to an untouched chunk makes
	 * the kernel clear a huge page before it delivers the fault
	 * (advise_stream()): at these blocks' price, milliseconds a write.
	 * Undo the advice for the pause; the next stream gives it again. */
	if (atomic_exchange(&r->thp_advised, false)) {
		uint64_t from = atomic_load_explicit(&r->thp_from, memory_order_relaxed);
		uint64_t to = atomic_load_explicit(&r->thp_to, memory_order_relaxed);

		/* Exactly the range advised: after a REMAP the region's
		 * old addresses may be someone else's mapping. */
		if (from < to)
			fl__madvise((void *)(uintptr_t)from, to - from, MADV_NOHUGEPAGE);
	}
	atomic_store_explicit(&r->huge_slow_until, fl__now_ns() + HUGE_PAUSE_NS, memory_order_relaxed);
	atomic_store_explicit(&r->huge_state, FL__HUGE_SLOW, memory_order_release);
	fl__log(&r->engine->log, FL_LOG_DEBUG, "%s: a staging huge page took %llu us to fault in: 4 KiB fills for %llu ms",
		r->name, (unsigned long long)(dt / 1000), (unsigned long long)(HUGE_PAUSE_NS / 1000000));
}

/*
 * Fault the worker's staging THP in, timed (see above). Returns false when
 * another worker is probing: decline, and fill 4 KiB pages meanwhile.
 */
static bool stage_populate(struct fl_region *r, struct fl__worker *w)
{
	int state = atomic_load_explicit(&r->huge_state, memory_order_acquire);
	bool probe = state != FL__HUGE_FAST;
	uint64_t t0;

	if (probe && (state == FL__HUGE_PROBING ||
		      !atomic_compare_exchange_strong(&r->huge_state, &state, FL__HUGE_PROBING)))
		return false;
	t0 = fl__now_ns();
	/* MADV_POPULATE_WRITE: Linux 5.14 (MOVE needs 6.8). */
	if (fl__madvise(w->stage, FL_HPAGE_SIZE, MADV_POPULATE_WRITE)) {
		if (probe)
			atomic_store_explicit(&r->huge_state, state, memory_order_release);
		return true;	/* the store read faults it in */
	}
	fl__huge_cost(r, fl__now_ns() - t0, probe);
	return true;
}

/* 2 MiB, 2 MiB-aligned, THP-advised; empty (no page table) when made. */
static int stage_map(struct fl__worker *w)
{
	uintptr_t p0, a, end;
	void *p;
	int ret;

	if (w->stage)
		return 0;
	ret = fl__mmap(NULL, 2 * FL_HPAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0, &p);
	if (ret)
		return ret;
	p0 = (uintptr_t)p;
	a = (p0 + FL_HPAGE_SIZE - 1) & ~(uintptr_t)(FL_HPAGE_SIZE - 1);
	end = p0 + 2 * FL_HPAGE_SIZE;
	if (a > p0)
		fl__munmap(p, a - p0);
	if (end > a + FL_HPAGE_SIZE)
		fl__munmap((void *)(a + FL_HPAGE_SIZE), end - (a + FL_HPAGE_SIZE));
	/* THP is often "madvise" only; and a fork must not share the staged
	 * pages (MOVE needs them exclusive: EBUSY otherwise). */
	fl__madvise((void *)a, FL_HPAGE_SIZE, MADV_HUGEPAGE);
	fl__madvise((void *)a, FL_HPAGE_SIZE, MADV_DONTFORK);
	w->stage = (uint8_t *)a;
	return 0;
}

/*
 * After a use that did not move the whole PMD, pages may be left in the
 * buffer and the THP split into a page table, which MADV_DONTNEED would
 * keep (and a page table under the PMD means no THP on the next fault):
 * unmap it, and map a fresh one next time.
 */
static void stage_drop(struct fl__worker *w)
{
	if (!w->stage)
		return;
	fl__munmap(w->stage, FL_HPAGE_SIZE);
	w->stage = NULL;
}

uint64_t fl__chunk_end(const struct fl_region *r, uint64_t base, uint64_t page)
{
	uint64_t next = ((base + page * FL_PAGE_SIZE) | (FL_HPAGE_SIZE - 1)) + 1;

	(void)r;
	return (next - base) / FL_PAGE_SIZE;
}

/* A chunk a huge fill may take: no page poisoned or discarded, and not
 * every page resolved; with `partial` false, no page resolved at all. */
static bool chunk_fillable(struct fl_region *r, uint64_t first, bool partial)
{
	uint64_t resolved = 0;

	for (uint64_t p = first; p < first + FL_CHUNK_PAGES; p++) {
		if (fl__bit_test(r->poisoned, p) || fl__bit_test(r->discarded, p))
			return false;
		resolved += fl__bit_test(r->resolved, p);
	}
	return partial ? resolved < FL_CHUNK_PAGES : resolved == 0;
}

bool fl__chunk_staging(struct fl_region *r, uint64_t base, uint64_t page)
{
	uint64_t start = (base + page * FL_PAGE_SIZE) & ~(uint64_t)(FL_HPAGE_SIZE - 1);

	return start >= base && fl__bit_test(r->chunk_busy, (start - base) / FL_PAGE_SIZE / FL_CHUNK_PAGES);
}

static bool chunk_resolved(struct fl_region *r, uint64_t first)
{
	for (uint64_t p = first; p < first + FL_CHUNK_PAGES; p++)
		if (!fl__bit_test(r->resolved, p))
			return false;
	return true;
}

uint64_t fl__huge_chunk(struct fl_region *r, uint64_t base, uint64_t page, uint64_t lo, uint64_t hi, bool partial)
{
	uint64_t start = (base + page * FL_PAGE_SIZE) & ~(uint64_t)(FL_HPAGE_SIZE - 1);
	uint64_t first, store_pages;

	/* A working-set recorder needs every first touch as a fault. */
	if (!r->huge_fill || atomic_load_explicit(&r->exact_faults, memory_order_relaxed))
		return UINT64_MAX;
	if (start < base || start < lo || start + FL_HPAGE_SIZE > hi)
		return UINT64_MAX;
	first = (start - base) / FL_PAGE_SIZE;
	/* Demand faults probe only where no background filler can. A chunk
	 * being staged (by the probe, say) is waited for all the same: a
	 * 4 KiB page now would cost it its PMD. */
	if (!huge_allowed(r, partial || !(r->t.flags & FL__TARGET_FILL)) &&
	    !fl__bit_test(r->chunk_busy, first / FL_CHUNK_PAGES))
		return UINT64_MAX;
	store_pages = r->store->size > r->store_offset ? (r->store->size - r->store_offset) / FL_PAGE_SIZE : 0;
	if (first + FL_CHUNK_PAGES > r->npages || first + FL_CHUNK_PAGES > store_pages)
		return UINT64_MAX;
	return chunk_fillable(r, first, partial) ? first : UINT64_MAX;
}

/* Is [dst, dst + 2 MiB) of our own mm mapped by one huge PMD? (PAGEMAP_SCAN,
 * Linux 6.7; without it we cannot tell, and do not claim it.) */
static bool placed_huge(struct fl__worker *w, uint64_t dst)
{
	struct fl_scan_opts o = {
		.sz = sizeof(o), .start = dst, .end = dst + FL_HPAGE_SIZE,
		.category_mask = FL_PAGE_IS_HUGE, .return_mask = FL_PAGE_IS_HUGE,
	};
	struct fl_page_region reg;

	if (w->pagemap_fd < 0 && fl_pagemap_open(0, &w->pagemap_fd))
		return false;
	return fl_pagemap_scan(w->pagemap_fd, &o, &reg, 1, NULL) == 1 && reg.start == dst &&
	       reg.end == dst + FL_HPAGE_SIZE;
}

int fl__move_pages(int uffd, uint64_t dst, uint64_t src, uint64_t npages, unsigned flags,
		   struct fl__move_result *res)
{
	for (uint64_t i = 0; i < npages;) {
		uint64_t off = i * FL_PAGE_SIZE, n;
		size_t len = (npages - i) * FL_PAGE_SIZE, done = 0;
		bool copy = res->copying;
		int ret;

		if (copy)
			ret = fl_uffd_copy(uffd, (void *)(uintptr_t)(dst + off), (const void *)(uintptr_t)(src + off),
					   len, 0, &done);
		else
			ret = fl_uffd_move(uffd, (void *)(uintptr_t)(dst + off), (void *)(uintptr_t)(src + off), len, 0,
					   &done);
		n = done / FL_PAGE_SIZE;
		if (n && res->done)
			res->done(res, i, n, copy);
		*(copy ? &res->copied : &res->moved) += n;
		i += n;
		if (!ret)
			break;
		switch (fl__resolve_classify(ret)) {
		case FL__ALREADY_THERE:
			/* Someone's page: it stays. */
			if (res->exist)
				res->exist(res, i);
			res->existed++;
			i++;
			continue;
		case FL__POISON:
			if (!copy && (flags & FL__MOVE_OR_COPY)) {
				res->copying = true;
				res->refused = ret;
				continue;
			}
			return ret;
		default:
			return ret;
		}
	}
	return 0;
}

/* What placing a chunk did, for the statistics. */
struct placed {
	struct fl__move_result mr;	/* first: the callbacks get it */
	const struct fl__resolve_req *req;
	uint64_t from;			/* chunk page of the current run's first page */
	uint64_t zero;
	uint64_t zero_map[FL_CHUNK_PAGES / 64];	/* staged pages that are zeros */
	uint64_t there_map[FL_CHUNK_PAGES / 64];	/* pages placed, or found there */
	bool fault_placed;			/* the faulting page was placed by us */
};

static void placed_run(struct fl__move_result *mr, uint64_t i, uint64_t n, bool copied)
{
	struct placed *pl = (struct placed *)mr;

	(void)copied;
	for (uint64_t k = pl->from + i; k < pl->from + i + n; k++) {
		pl->there_map[k / 64] |= 1ull << (k % 64);
		pl->zero += (pl->zero_map[k / 64] >> (k % 64)) & 1;
		pl->fault_placed |= pl->req->first + k == pl->req->fault_page;
	}
}

static void placed_exist(struct fl__move_result *mr, uint64_t i)
{
	struct placed *pl = (struct placed *)mr;
	uint64_t k = pl->from + i;

	pl->there_map[k / 64] |= 1ull << (k % 64);
}

/* Every page of the chunk not known to be there, in runs (the resolved
 * bitmap is a hint; EEXIST is the truth). An untouched chunk is one run:
 * one ioctl, and one PMD when the kernel can. */
static int place(struct fl_region *r, const struct fl__resolve_req *req, struct fl__worker *w, struct placed *pl)
{
	pl->req = req;
	pl->mr.done = placed_run;
	pl->mr.exist = placed_exist;
	for (uint64_t i = 0; i < FL_CHUNK_PAGES;) {
		uint64_t j;
		int ret;

		while (i < FL_CHUNK_PAGES && fl__bit_test(r->resolved, req->first + i))
			i++;
		for (j = i; j < FL_CHUNK_PAGES && !fl__bit_test(r->resolved, req->first + j); j++)
			;
		if (i == j)
			break;
		pl->from = i;
		ret = fl__move_pages(req->space->uffd, req->base + (req->first + i) * FL_PAGE_SIZE,
				     (uintptr_t)(w->stage + i * FL_PAGE_SIZE), j - i, FL__MOVE_OR_COPY, &pl->mr);
		if (pl->mr.refused) {
			fl__log(&r->engine->log, FL_LOG_DEBUG, "%s: UFFDIO_MOVE refused (%s): copying the rest",
				r->name, strerror(-pl->mr.refused));
			pl->mr.refused = 0;
		}
		if (ret)
			return ret;
		i = j;
	}
	return 0;
}

static void account(struct fl_region *r, const struct fl__resolve_req *req, const struct placed *pl, bool huge)
{
	uint64_t n = pl->mr.moved + pl->mr.copied;

	if (n - pl->zero)
		atomic_fetch_add_explicit(&r->pages_copy, n - pl->zero, memory_order_relaxed);
	if (pl->zero)
		atomic_fetch_add_explicit(&r->pages_zero, pl->zero, memory_order_relaxed);
	if (pl->mr.existed)
		atomic_fetch_add_explicit(&r->pages_exist, pl->mr.existed, memory_order_relaxed);
	if (huge)
		atomic_fetch_add_explicit(&r->huge_moves, 1, memory_order_relaxed);
	else if (pl->mr.moved)
		atomic_fetch_add_explicit(&r->pages_moved, pl->mr.moved, memory_order_relaxed);
	if (req->source == FL_SRC_BACKGROUND)
		atomic_fetch_add_explicit(&r->pages_background, n, memory_order_relaxed);
	else if (n > pl->fault_placed)
		atomic_fetch_add_explicit(&r->pages_prefetch, n - pl->fault_placed, memory_order_relaxed);
	/* Last: a reader that sees the pages resolved sees them counted. */
	for (uint64_t i = 0; i < FL_CHUNK_PAGES; i++)
		if ((pl->there_map[i / 64] >> (i % 64)) & 1)
			fl__mark_resolved(r, req->first + i, 1);
}

/*
 * Another worker is staging the chunk. The background filler leaves it to
 * that worker (0); a demand fault (or populate) waits for it, and is done
 * when its page (populate: every page) has been placed; otherwise the
 * 4 KiB path takes over.
 */
static int chunk_busy(struct fl_region *r, const struct fl__resolve_req *req, uint64_t chunk)
{
	uint64_t deadline = fl__now_ns() + BUSY_WAIT_NS;

	if (req->source == FL_SRC_BACKGROUND)
		return 0;
	while (fl__bit_test(r->chunk_busy, chunk) && fl__now_ns() < deadline) {
		struct timespec ts = { 0, 20 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (req->source != FL_SRC_DEMAND)
		return chunk_resolved(r, req->first) ? 0 : FL__HUGE_DECLINED;
	if (fl__bit_test(r->resolved, req->fault_page)) {
		/* The other worker's move woke the range; a wake costs less
		 * than finding out whether this thread's fault came after. */
		fl_uffd_wake(req->space->uffd, (void *)(uintptr_t)(req->base + req->fault_page * FL_PAGE_SIZE),
			     FL_PAGE_SIZE);
		return 0;
	}
	return FL__HUGE_DECLINED;
}

static int stage_read(struct fl_region *r, const struct fl__resolve_req *req, struct fl__worker *w,
		      struct placed *pl)
{
	struct fl_store_iov iov = {
		.offset = r->store_offset + req->first * FL_PAGE_SIZE,
		.buf = w->stage,
		.len = FL_HPAGE_SIZE,
		.flags_in = req->source == FL_SRC_BACKGROUND ? 0 : FL_STORE_IN_URGENT,
	};
	const uint8_t *direct = fl__store_direct(r->store, iov.offset, iov.len);
	int ret;

	if (direct) {
		memcpy(w->stage, direct, FL_HPAGE_SIZE);
	} else {
		ret = fl_store_read(r->store, &iov, 1);
		if (ret) {
			atomic_fetch_add_explicit(&r->store_errors, 1, memory_order_relaxed);
			fl__log(&r->engine->log, FL_LOG_WARN,
				"%s: store read at %llu (2 MiB chunk) failed: %s; filling it page by page", r->name,
				(unsigned long long)iov.offset, strerror(-ret));
			return ret;
		}
		/* The store vouched for zeros and wrote nothing. */
		if (iov.flags_out & FL_STORE_OUT_ZERO)
			memset(w->stage, 0, FL_HPAGE_SIZE);
	}
	if (!(iov.flags_out & FL_STORE_OUT_ZERO))
		atomic_fetch_add_explicit(&r->bytes_read, FL_HPAGE_SIZE, memory_order_relaxed);
	for (uint64_t i = 0; i < FL_CHUNK_PAGES; i++)
		if ((iov.flags_out & FL_STORE_OUT_ZERO) || fl__page_is_zero(w->stage + i * FL_PAGE_SIZE, FL_PAGE_SIZE))
			pl->zero_map[i / 64] |= 1ull << (i % 64);
	return 0;
}

int fl__huge_fill(struct fl_region *r, const struct fl__resolve_req *req, struct fl__worker *w)
{
	uint64_t chunk = req->first / FL_CHUNK_PAGES;
	uint64_t dst = req->base + req->first * FL_PAGE_SIZE;
	struct placed pl = { 0 };
	bool huge = false;
	int ret;

	if (fl__bit_set(r->chunk_busy, chunk))
		return chunk_busy(r, req, chunk);
	/* A demand fill continues a stream (resolve.c): after the busy bit,
	 * so that another handler's fault in this chunk finds one or the
	 * other, and before the move wakes the stream's threads, whose next
	 * fault (in the next chunk) must find that it continues the stream. */
	if (req->source == FL_SRC_DEMAND)
		atomic_store_explicit(&r->last_end, req->first + FL_CHUNK_PAGES, memory_order_relaxed);
	/* Checked again now that the chunk is ours: another worker may have
	 * filled it between the caller's look and here. */
	if (!chunk_fillable(r, req->first, req->source != FL_SRC_DEMAND) || stage_map(w)) {
		ret = FL__HUGE_DECLINED;
		goto out;
	}
	if (!stage_populate(r, w)) {
		ret = FL__HUGE_DECLINED;
		goto out;
	}
	ret = stage_read(r, req, w, &pl);
	if (ret) {
		/* The 4 KiB path reads again, narrows the failure down to
		 * the bad pages and fails them closed. */
		stage_drop(w);
		ret = FL__HUGE_DECLINED;
		goto out;
	}
	ret = place(r, req, w, &pl);
	if (pl.mr.moved == FL_CHUNK_PAGES)
		huge = placed_huge(w, dst);
	/* Anything but a whole PMD moved out leaves pages or a page table. */
	if (!huge)
		stage_drop(w);
	account(r, req, &pl, huge);
	if (ret && fl__resolve_classify(ret) == FL__CLIENT_GONE) {
		atomic_store(&req->space->dead, true);
		fl__log(&r->engine->log, FL_LOG_INFO, "space %d: process gone", req->space->id);
	}
	/* A page that existed may have a thread asleep on it. */
	if (!ret && req->fault_page != UINT64_MAX && !pl.fault_placed)
		fl_uffd_wake(req->space->uffd, (void *)(uintptr_t)(req->base + req->fault_page * FL_PAGE_SIZE),
			     FL_PAGE_SIZE);
out:
	fl__bit_clear(r->chunk_busy, chunk);
	return ret;
}

/*
 * Does this fault continue a stream: the last window (prefetch_window()'s
 * test, before it changes the window), which has grown to STREAM_WINDOW
 * pages (the window doubles with each fault in sequence, halves with each
 * other one)? Scattered faults land next to the last window now and then;
 * four or more in a row do not. The first fault of a region never does.
 */
#define STREAM_WINDOW 16

static bool sequential(struct fl_region *r, uint64_t page)
{
	uint64_t last_end = atomic_load_explicit(&r->last_end, memory_order_relaxed);
	unsigned win = atomic_load_explicit(&r->window, memory_order_relaxed);

	return last_end && win >= STREAM_WINDOW && page >= last_end && page <= last_end + win;
}

/*
 * Only a THP-eligible VMA delivers a missing fault with the PMD still
 * empty; elsewhere the kernel allocates the page table before it asks us,
 * and MOVE can then place 4 KiB pages only. But in a THP-eligible VMA the
 * kernel also allocates (and clears, and drops) a huge page before it
 * delivers a first *write* in an empty PMD: ~50 us more per fault here,
 * 3x a scattered 4 KiB write fault. So the region becomes MADV_HUGEPAGE
 * only once a sequential stream shows, from the next chunk on, once. The
 * filler and populate need none of it: nothing has faulted in the chunks
 * they take, so their PMDs are empty anyway.
 */
static void advise_stream(struct fl_region *r, uint64_t base, uint64_t page, const struct fl__entry *ent)
{
	uint64_t from = base + fl__chunk_end(r, base, page) * FL_PAGE_SIZE;

	/* Not during a pause (stage_populate() undid it). */
	if (atomic_load_explicit(&r->thp_advised, memory_order_relaxed) || !huge_allowed(r, true) ||
	    atomic_exchange(&r->thp_advised, true))
		return;
	if (from < ent->end) {
		atomic_store_explicit(&r->thp_from, from, memory_order_relaxed);
		atomic_store_explicit(&r->thp_to, ent->end, memory_order_relaxed);
		fl__madvise((void *)(uintptr_t)from, ent->end - from, MADV_HUGEPAGE);
	}
}

/*
 * Called by resolve.c for a demand fault in a region with huge fills. A
 * sequential stream that reaches an untouched 2 MiB chunk takes it whole,
 * as one huge page: one wait of a 2 MiB read (~0.3-0.6 ms here) instead of
 * two 1 MiB prefetch windows, and no trap for each of its pages
 * afterwards. Any other fault (the first of a region, a random one) is
 * answered at once with its 4 KiB page: waiting for 2 MiB was 3-10x slower
 * for that thread, and the background filler moves the rest of its chunk
 * in. Unless its chunk is being staged already: then a 4 KiB page would
 * cost the chunk its PMD, and the wait for the move is shorter than a read
 * of its own.
 */
int fl__huge_fault(struct fl_region *r, const struct fl__entry *ent, struct fl__space *sp, uint64_t base,
		   uint64_t page, const struct uffd_msg *msg, struct fl__worker *w)
{
	bool seq = sequential(r, page);
	struct fl__resolve_req req;
	uint64_t chunk;
	int ret;

	if (seq)
		advise_stream(r, base, page, ent);
	if (!seq && !fl__chunk_staging(r, base, page))
		return FL__HUGE_DECLINED;
	chunk = fl__huge_chunk(r, base, page, ent->start, ent->end, false);
	if (chunk == UINT64_MAX)
		return FL__HUGE_DECLINED;
	req = (struct fl__resolve_req){
		.space = sp, .base = base, .first = chunk, .count = FL_CHUNK_PAGES,
		.fault_page = page, .tid = fl_msg_fault_tid(msg), .source = FL_SRC_DEMAND,
	};
	ret = fl__huge_fill(r, &req, w);
	/* The kernel could not place the faulting page: the 4 KiB path
	 * answers it. */
	if (ret < 0 && fl__resolve_classify(ret) == FL__POISON)
		return FL__HUGE_DECLINED;
	return ret;
}

int fl__huge_fill_step(struct fl_region *r, struct fl__space *sp, struct fl__worker *w, uint64_t page)
{
	uint64_t base = (uintptr_t)r->addr, chunk = fl__huge_chunk(r, base, page, base, base + r->length, true);
	struct fl__resolve_req req;
	int ret;

	if (chunk == UINT64_MAX)
		return -1;
	req = (struct fl__resolve_req){
		.space = sp, .base = base, .first = chunk, .count = FL_CHUNK_PAGES,
		.fault_page = UINT64_MAX, .source = FL_SRC_BACKGROUND,
	};
	ret = fl__huge_fill(r, &req, w);
	if (ret < 0 && fl__resolve_classify(ret) == FL__RETRY)
		return 1;
	/* Failed: demand faults fail closed what cannot be had, page by
	 * page. Declined: 4 KiB batches. */
	if (ret > 0)
		return -1;
	atomic_store(&r->fill_cursor, chunk + FL_CHUNK_PAGES);
	return chunk + FL_CHUNK_PAGES < r->npages;
}
