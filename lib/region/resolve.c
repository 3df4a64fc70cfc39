// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Resolving faults: prefetch windows, store reads, zero-page detection,
 * COPY/ZEROPAGE/CONTINUE runs, background fill, and failing closed.
 *
 * Every path ends in one of: the page mapped with the store's bytes, the
 * page mapped with zeros the store (or a REMOVE event) vouched for, the page
 * poisoned, or the faulting thread sent SIGBUS. Never an unvouched zero.
 */
#include "region-internal.h"
#include "store-internal.h"

#include <sched.h>
#include <time.h>
#include <sys/mman.h>


/* Zero runs shorter than this (inside data) are copied, not ZEROPAGEd. */
#define ZERO_RUN_MIN 16

/* What w->zero[] says of a page read. */
enum {
	DATA_PAGE,
	ZERO_PAGE,			/* installed with ZEROPAGE */
	ZERO_COPIED,			/* zeros, copied with the data around them */
};

static bool page_is_zero(const uint8_t *p, size_t len)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;
	for (size_t i = 0; i < len / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

static void mark_resolved(struct fl_region *r, uint64_t first, uint64_t count)
{
	uint64_t added = 0;
	for (uint64_t p = first; p < first + count; p++) {
		bool fresh = !fl__bit_set(r->resolved, p);
		added += fresh;
		if (fresh && r->far)
			fl__far_filled(r, p);
	}
	if (added)
		atomic_fetch_add_explicit(&r->resolved_count, added, memory_order_relaxed);
	if (added && r->far)
		fl__far_settle(r);
}

enum run_kind { RUN_DATA, RUN_ZERO, RUN_CONTINUE };

/*
 * Resolve `count` pages from `first` (region pages) with one kind of ioctl,
 * skipping pages that turn out to exist (EEXIST: someone else won; the
 * kernel layer has already advanced over partial progress). `dst` is the
 * address of page `first` in the target mapping; `src` the data for
 * RUN_DATA. `exist_mask` (may be NULL, count <= 64): bit i set when page
 * first + i existed. `wake`: FL_DONTWAKE to leave the faulting threads
 * asleep (far memory parks them, fl__far_park()), or 0. Returns 0 or the
 * -errno fl__resolve_classify() reads.
 */
static int run_ioctl(struct fl_region *r, int uffd, enum run_kind kind, uint64_t dst,
		     const uint8_t *src, uint64_t count, uint64_t *ret_exist, uint64_t *exist_mask, unsigned wake)
{
	size_t psz = r->page_size;
	uint64_t done_pages = 0;

	while (done_pages < count) {
		size_t done = 0, len = (count - done_pages) * psz;
		uint64_t off = done_pages * psz;
		int ret;

		switch (kind) {
		case RUN_DATA:
			/* Far memory: mapped write-protected, so the first
			 * write comes to us (fl__far_wp_fault()). */
			ret = fl_uffd_copy(uffd, (void *)(uintptr_t)(dst + off), src + off, len,
					   (fl__far_fill_wp(r, dst) ? FL_MODE_WP : 0) | wake, &done);
			break;
		case RUN_ZERO:
			ret = fl_uffd_zeropage(uffd, (void *)(uintptr_t)(dst + off), len, wake, &done);
			break;
		default:
			/* Tracking: mapped write-protected, so the first write
			 * comes to us (fl__region_fault()). */
			ret = fl_uffd_continue(uffd, (void *)(uintptr_t)(dst + off), len,
					       ((atomic_load(&r->track) || r->far) ? FL_MODE_WP : 0) | wake,
					       &done);
			break;
		}
		done_pages += done / psz;
		if (!ret)
			break;
		if (fl__resolve_classify(ret) != FL__ALREADY_THERE)
			return ret;
		(*ret_exist)++;
		if (exist_mask && done_pages < 64)
			*exist_mask |= 1ull << done_pages;
		done_pages++;
	}
	return 0;
}

/* ---- the page cache's record (struct fl__pcache) ------------------------- */

enum { PC_FILLED, PC_CLAIMED, PC_BUSY };

/* Claim page p for a fill, unless it is filled (or being filled) already. */
static int pc_claim(struct fl__pcache *pc, uint64_t p)
{
	if (fl__bit_test(pc->filled, p))
		return PC_FILLED;
	if (fl__bit_set(pc->filling, p))
		return PC_BUSY;
	/* Filled (and its claim dropped) between the test and the claim. */
	if (fl__bit_test(pc->filled, p)) {
		fl__bit_clear(pc->filling, p);
		return PC_FILLED;
	}
	return PC_CLAIMED;
}

/* Filled before the claim goes: a claimer that finds no claim finds the bit. */
static void pc_release(struct fl__pcache *pc, uint64_t p, bool filled)
{
	if (filled)
		fl__bit_set(pc->filled, p);
	fl__bit_clear(pc->filling, p);
}

/*
 * Wait for another fill's claim of p to go. A fill holds its claims for
 * one ioctl and a rewrite, and waits for nobody while it holds them (we
 * hold none here). The record is shared with forks, though, and a process
 * killed in the middle of a fill never lets go: a claim held this long
 * is taken over (true).
 */
#define PC_STALE_NS 2000000000ull
static bool pc_wait(struct fl__pcache *pc, uint64_t p)
{
	uint64_t end = 0;

	for (unsigned i = 0; fl__bit_test(pc->filling, p); i++) {
		struct timespec ts = { 0, 20000 };

		if (i < 64) {
			sched_yield();
			continue;
		}
		if (!end)
			end = fl__now_ns() + PC_STALE_NS;
		else if (fl__now_ns() > end)
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

/*
 * Page p was in the page cache before our fill, with no fill of ours
 * behind it: someone mapped the file without us and faulted a zero page
 * in (a read-only descriptor is enough). It has never been mapped through
 * a region (those fill first, and our claim holds them off), so nothing
 * written is lost: give it the bytes it should have. Through a mapping of
 * our own, not the alias: the page may have been punched since, and a
 * fault on the alias would come to our own engine; hugetlbfs cannot
 * pwrite.
 */
static int rewrite_planted(struct fl_region *r, uint64_t p, const uint8_t *src)
{
	size_t psz = r->page_size;
	void *m;
	int ret = fl__mmap(NULL, psz, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, (off_t)(p * psz), &m);

	if (ret)
		return ret;
	if (src)
		memcpy(m, src, psz);
	else
		memset(m, 0, psz);
	fl__munmap(m, psz);
	if (!atomic_fetch_add_explicit(&r->pages_rewritten, 1, memory_order_relaxed))
		fl__log(&r->engine->log, FL_LOG_WARN, "%s: page %llu was in the page cache without a fill of ours "
			"(mapped by a process we do not serve): given its bytes again", r->name, (unsigned long long)p);
	return 0;
}

/*
 * Fill pages [p, q) of the page cache through the alias (`src`: their
 * bytes; NULL with RUN_ZERO), skipping the pages this region filled
 * already. *ret_tried: pages given to the kernel. With a shared record
 * (r->pc) each page is claimed first, at most 64 at a time, and never
 * while waiting for another region's claim (two fills each holding what
 * the other waits for would never end).
 */
static int fill_cache(struct fl_region *r, enum run_kind kind, uint64_t p, uint64_t q, const uint8_t *src,
		      uint64_t *ret_exist, uint64_t *ret_tried)
{
	struct fl__pcache *pc = r->pc;
	size_t psz = r->page_size;
	uint64_t p0 = p;
	int uffd = fl__engine_main_uffd(r->engine), ret = 0;

	while (p < q) {
		uint64_t e = p, mine = 0, exist = 0;

		if (fl__bit_test(r->cached, p)) {
			p++;
			continue;
		}
		if (!pc) {
			e = q;
		} else {
			while (e < q && e - p < 64) {
				int c = pc_claim(pc, e);
				if (c == PC_BUSY)
					break;
				if (c == PC_CLAIMED)
					mine |= 1ull << (e - p);
				e++;
			}
			if (e == p) {
				if (!pc_wait(pc, p))
					continue;
				/* Filled, its claim not yet dropped: nothing to take over. */
				e = p + 1;
				if (!fl__bit_test(pc->filled, p)) {
					fl__log(&r->engine->log, FL_LOG_WARN, "%s: page %llu: a fill's claim held for %llu s "
						"(a process died filling it?): taken over", r->name, (unsigned long long)p,
						PC_STALE_NS / 1000000000ull);
					mine = 1;
				}
			}
		}
		ret = run_ioctl(r, uffd, kind, (uintptr_t)r->alias + p * psz, src ? src + (p - p0) * psz : NULL,
				e - p, ret_exist, pc ? &exist : NULL, 0);
		*ret_tried += e - p;
		for (uint64_t k = p; !ret && k < e; k++) {
			/* Claims exist with a record only (and then e - p <= 64). */
			uint64_t bit = pc ? 1ull << (k - p) : 0;
			if (pc && (mine & exist & bit)) {
				int rr = rewrite_planted(r, k, kind == RUN_DATA ? src + (k - p0) * psz : NULL);
				if (rr) {
					ret = rr;
					break;
				}
			}
			if (pc && (mine & bit)) {
				pc_release(pc, k, true);
				mine &= ~bit;
			}
			fl__bit_set(r->cached, k);
		}
		/* On failure the claims left go unfilled: a page the COPY did
		 * put there is the store's, and nobody has mapped it. */
		for (uint64_t k = p; pc && mine && k < e; k++)
			if (mine & (1ull << (k - p)))
				pc_release(pc, k, false);
		if (ret)
			return ret;
		p = e;
	}
	return 0;
}

/* What one request installed, for the statistics. */
struct tally {
	uint64_t exist;			/* pages someone else had installed */
	uint64_t data_pages, zero_pages;
};

/* The pages of a request the store can deliver: *ret_count of them. */
static int clamp_request(const struct fl_region *r, const struct fl__resolve_req *req, uint64_t *ret_count)
{
	uint64_t count, store_pages;

	if (req->first >= r->npages)
		return -ERANGE;
	count = FL_MIN(req->count, r->npages - req->first);
	store_pages = r->store->size > r->store_offset ? (r->store->size - r->store_offset) / r->page_size : 0;
	if (req->first >= store_pages) {
		/* Past the end of the store: nothing can be delivered. */
		*ret_count = 0;
		return req->fault_page >= req->first && req->fault_page < req->first + count ? -ERANGE : 0;
	}
	*ret_count = FL_MIN(count, store_pages - req->first);
	return 0;
}

static bool all_cached(struct fl_region *r, uint64_t first, uint64_t count)
{
	for (uint64_t p = first; p < first + count; p++)
		if (!fl__bit_test(r->cached, p))
			return false;
	return true;
}

static bool any_discarded(struct fl_region *r, uint64_t first, uint64_t count)
{
	for (uint64_t p = first; p < first + count; p++)
		if (fl__bit_test(r->discarded, p))
			return true;
	return false;
}

/*
 * Read the pages and flag, per page, whether it is zeros. *ret_data: where
 * the bytes are: the store's own memory when it can be copied from in place
 * (fl__store_direct(): one copy on the fault path, the kernel's, instead of
 * two), else w->buf, read into.
 */
static int read_pages(struct fl_region *r, const struct fl__resolve_req *req, uint64_t count, struct fl__worker *w,
		      const uint8_t **ret_data)
{
	size_t psz = r->page_size;
	struct fl_store_iov iov = {
		.offset = r->store_offset + req->first * psz,
		.buf = w->buf,
		.len = count * psz,
		.flags_in = (req->source == FL_SRC_DEMAND || req->source == FL_SRC_POPULATE) ? FL_STORE_IN_URGENT : 0,
	};
	/* Discarded pages (REMOVE) are zeros by the application's own
	 * request: those need the buffer. */
	const uint8_t *direct = fl__store_direct(r->store, iov.offset, iov.len);
	int ret;

	if (direct && !any_discarded(r, req->first, count)) {
		atomic_fetch_add_explicit(&r->bytes_read, iov.len, memory_order_relaxed);
		for (uint64_t i = 0; i < count; i++)
			w->zero[i] = page_is_zero(direct + i * psz, psz) ? ZERO_PAGE : DATA_PAGE;
		*ret_data = direct;
		goto runs;
	}
	ret = fl_store_read(r->store, &iov, 1);
	if (ret) {
		atomic_fetch_add_explicit(&r->store_errors, 1, memory_order_relaxed);
		fl__log(&r->engine->log, FL_LOG_WARN, "%s: store read at %llu (%llu pages) failed: %s", r->name,
			(unsigned long long)iov.offset, (unsigned long long)count, strerror(-ret));
		/* ENOENT/EAGAIN/ESRCH mean "layout changed" or "process gone"
		 * only when the kernel says them; from a store they mean the
		 * data cannot be had, which fails closed. */
		return fl__resolve_classify(ret) == FL__POISON ? ret : -EIO;
	}
	/* A range the store reported as zeros was not read: its buffer holds
	 * nothing the store wrote. */
	if (!(iov.flags_out & FL_STORE_OUT_ZERO))
		atomic_fetch_add_explicit(&r->bytes_read, iov.len, memory_order_relaxed);
	if ((iov.flags_out & FL_STORE_OUT_ZERO) && (r->mem == FL_MEM_HUGETLB || fl__far_no_zeropage(r)))
		memset(w->buf, 0, iov.len); /* hugetlbfs (and far memory) cannot ZEROPAGE: copy zeros */

	for (uint64_t i = 0; i < count; i++) {
		uint8_t *pg = w->buf + i * psz;
		bool disc = fl__bit_test(r->discarded, req->first + i);
		if (disc)
			memset(pg, 0, psz);
		w->zero[i] = (disc || (iov.flags_out & FL_STORE_OUT_ZERO) || page_is_zero(pg, psz)) ? ZERO_PAGE : DATA_PAGE;
	}
	*ret_data = w->buf;
runs:
	/* A short zero run inside data costs two more ioctls than copying the
	 * zeros we already hold: ZEROPAGE only long runs, or a whole request.
	 * The pages stay zero pages for the statistics. */
	for (uint64_t i = 0; i < count;) {
		uint64_t j = i;
		while (j < count && w->zero[j] == w->zero[i])
			j++;
		if (w->zero[i] == ZERO_PAGE && j - i < ZERO_RUN_MIN && j - i < count)
			memset(&w->zero[i], ZERO_COPIED, j - i);
		i = j;
	}
	return 0;
}

/* Install what read_pages() found (at `data`), in runs of data and of zeros: into the
 * space, or (MINOR) into the page cache through the alias. */
static int install_runs(struct fl_region *r, const struct fl__resolve_req *req, uint64_t count,
			struct fl__worker *w, const uint8_t *data, struct tally *tl)
{
	size_t psz = r->page_size;
	uint64_t first = req->first, end = first + count;
	bool minor = r->mode == FL_MODE_MINOR;

	for (uint64_t p = first; p < end;) {
		bool zero = w->zero[p - first] == ZERO_PAGE;
		uint64_t q = p, before = tl->exist, installed, zeros = 0, tried = 0;
		/* hugetlbfs cannot ZEROPAGE, nor can it map write-protected
		 * (far memory): copy the zeros we hold. */
		enum run_kind kind = (zero && r->mem != FL_MEM_HUGETLB && !fl__far_no_zeropage(r)) ? RUN_ZERO : RUN_DATA;
		int ret;

		while (q < end && (w->zero[q - first] == ZERO_PAGE) == zero)
			q++;
		if (minor) {
			ret = fill_cache(r, kind, p, q, kind == RUN_DATA ? data + (p - first) * psz : NULL, &tl->exist,
					 &tried);
		} else {
			tried = q - p;
			ret = run_ioctl(r, req->space->uffd, kind, req->base + p * psz, data + (p - first) * psz,
					q - p, &tl->exist, NULL, req->dontwake ? FL_DONTWAKE : 0);
		}
		if (ret)
			return ret;
		/* Pages that existed are taken off the data pages first: which of
		 * a run's pages existed is not known, only how many. */
		installed = tried - (tl->exist - before);
		for (uint64_t k = p; k < q; k++)
			zeros += w->zero[k - first] != DATA_PAGE;
		zeros = FL_MIN(zeros, installed);
		tl->zero_pages += zeros;
		tl->data_pages += installed - zeros;
		p = q;
	}
	return 0;
}

static void account(struct fl_region *r, const struct fl__resolve_req *req, uint64_t count, const struct tally *tl)
{
	uint64_t fresh = count > tl->exist ? count - tl->exist : 0;

	/* pages_copy/pages_zero count how data was installed (into the page
	 * cache for MINOR regions); pages_continue counts mappings made.
	 * Counters that do not change are not touched: each add is a locked
	 * operation on the fault path. */
	if (tl->data_pages)
		atomic_fetch_add_explicit(&r->pages_copy, tl->data_pages, memory_order_relaxed);
	if (tl->zero_pages)
		atomic_fetch_add_explicit(&r->pages_zero, tl->zero_pages, memory_order_relaxed);
	if (req->space == fl__region_space(r))
		mark_resolved(r, req->first, count);
	if (tl->exist)
		atomic_fetch_add_explicit(&r->pages_exist, tl->exist, memory_order_relaxed);
	if (req->source == FL_SRC_BACKGROUND)
		atomic_fetch_add_explicit(&r->pages_background, fresh, memory_order_relaxed);
	else if (req->source == FL_SRC_REPLAY)
		atomic_fetch_add_explicit(&r->pages_replayed, fresh, memory_order_relaxed);
	else if (count > 1 + tl->exist)
		atomic_fetch_add_explicit(&r->pages_prefetch, count - 1 - tl->exist, memory_order_relaxed);
}

/* The kernel's answer, seen once: a gone mm marks its space dead. */
static int kernel_error(struct fl_region *r, const struct fl__resolve_req *req, int ret)
{
	if (fl__resolve_classify(ret) == FL__CLIENT_GONE) {
		atomic_store(&req->space->dead, true);
		fl__log(&r->engine->log, FL_LOG_INFO, "space %d: process gone", req->space->id);
	}
	return ret;
}

/*
 * One page of a MISSING region from a store that can be copied from in
 * place: copied straight away, and looked at for zeros after the copy, when
 * its first cache line is hot. Looked at before, the look takes the source's
 * cache and TLB miss (~130-180 ns a fault here) that the kernel's copy then
 * does not save. So a lone zero page is a copy of zeros, not
 * UFFDIO_ZEROPAGE's shared zero page, and counts in pages_zero all the same.
 * NULL: not such a page (the general path reads it).
 */
static const uint8_t *one_direct(struct fl_region *r, const struct fl__resolve_req *req, uint64_t count)
{
	if (count != 1 || r->mode != FL_MODE_MISSING || fl__bit_test(r->discarded, req->first))
		return NULL;
	return fl__store_direct(r->store, r->store_offset + req->first * r->page_size, r->page_size);
}

static int install_one_direct(struct fl_region *r, const struct fl__resolve_req *req, const uint8_t *src,
			      struct tally *tl)
{
	int ret = run_ioctl(r, req->space->uffd, RUN_DATA, req->base + req->first * r->page_size, src, 1, &tl->exist,
			    NULL, req->dontwake ? FL_DONTWAKE : 0);

	if (ret)
		return ret;
	atomic_fetch_add_explicit(&r->bytes_read, r->page_size, memory_order_relaxed);
	if (!tl->exist) {
		if (page_is_zero(src, r->page_size))
			tl->zero_pages++;
		else
			tl->data_pages++;
	}
	return 0;
}

int fl__resolve_pages(struct fl_region *r, const struct fl__resolve_req *req, struct fl__worker *w)
{
	struct tally tl = { 0 };
	bool minor = r->mode == FL_MODE_MINOR, refilled = false;
	const uint8_t *one;
	uint64_t count;
	int ret;

	ret = clamp_request(r, req, &count);
	if (ret || !count)
		return ret;
	one = one_direct(r, req, count);
	if (one) {
		ret = install_one_direct(r, req, one, &tl);
		if (ret)
			return kernel_error(r, req, ret);
		goto done;
	}
	ret = fl__worker_reserve(w, count * r->page_size);
	if (ret)
		return ret;
	/* MINOR regions whose page cache already holds every page only map it. */
again:
	if (!minor || !all_cached(r, req->first, count)) {
		const uint8_t *data;

		ret = read_pages(r, req, count, w, &data);
		if (ret)
			return ret;
		ret = install_runs(r, req, count, w, data, &tl);
		if (ret)
			return kernel_error(r, req, ret);
	}
	if (minor) {
		ret = run_ioctl(r, req->space->uffd, RUN_CONTINUE, req->base + req->first * r->page_size, NULL,
				count, &tl.exist, NULL, req->dontwake ? FL_DONTWAKE : 0);
		/* Far memory: an eviction punched the page cache after this
		 * fill saw it cached (a fault read before the eviction, served
		 * after it). Fill it again from the store, once. */
		if (ret == -EFAULT && r->far && !refilled) {
			for (uint64_t p = req->first; p < req->first + count; p++)
				fl__bit_clear(r->cached, p);
			refilled = true;
			tl = (struct tally){ 0 };
			goto again;
		}
		if (ret)
			return kernel_error(r, req, ret);
		atomic_fetch_add_explicit(&r->pages_continue, count, memory_order_relaxed);
	}
done:
	account(r, req, count, &tl);
	/* A page that existed may have a thread asleep on it. */
	if (tl.exist && req->fault_page >= req->first && req->fault_page < req->first + count)
		fl_uffd_wake(req->space->uffd, (void *)(uintptr_t)(req->base + req->fault_page * r->page_size),
			     r->page_size);
	return 0;
}

/* Fail one page closed. A waiting thread is signalled if the page cannot
 * be poisoned, so its page counts as failed either way; with nobody
 * waiting, only a poisoned page counts. */
static void fail_page(struct fl_region *r, const struct fl__resolve_req *req, uint64_t page, int err)
{
	bool waiter = req->source == FL_SRC_DEMAND;
	size_t psz = r->page_size;
	int pr;

	if (waiter) {
		fl__bit_set(r->poisoned, page);
		atomic_fetch_add_explicit(&r->pages_poisoned, 1, memory_order_relaxed);
		fl__log(&r->engine->log, FL_LOG_ERROR, "%s: page %llu cannot be delivered (%s): failing closed",
			r->name, (unsigned long long)page, strerror(-err));
	}
	pr = fl__fail_closed(r->engine, req->space, req->base + page * psz, psz, waiter, req->tid);
	if (!waiter && pr == 0 && !fl__bit_set(r->poisoned, page))
		atomic_fetch_add_explicit(&r->pages_poisoned, 1, memory_order_relaxed);
}

/*
 * When a request fails with FL__POISON (a store error, a bad page), the
 * pages that can still be delivered are, and the others fail closed; what
 * that means depends on who asked:
 *   demand      the faulting page alone is tried again; if it fails, it is
 *               poisoned (else its thread gets SIGBUS): a thread waits.
 *   populate    each page alone; a page that fails is poisoned.
 *   replay      each page alone; failures are left to demand faults.
 *   background  nothing more: demand faults fail closed page by page.
 * The other verdicts are not failures of the data: the caller wakes or
 * retries (see fl__resolve_classify()).
 */
int fl__resolve_or_poison(struct fl_region *r, const struct fl__resolve_req *req, struct fl__worker *w)
{
	struct fl__resolve_req one = *req;
	int ret = fl__resolve_pages(r, req, w);

	if (fl__resolve_classify(ret) != FL__POISON)
		return ret;
	one.count = 1;
	switch (req->source) {
	case FL_SRC_DEMAND:
		one.first = req->fault_page;
		if (req->count > 1)
			ret = fl__resolve_pages(r, &one, w);
		if (fl__resolve_classify(ret) == FL__POISON)
			fail_page(r, &one, one.first, ret);
		return ret;
	case FL_SRC_REPLAY:
		if (req->count == 1)
			return ret;
		/* fall through */
	case FL_SRC_POPULATE:
		for (uint64_t p = req->first; p < req->first + req->count; p++) {
			int pr;
			one.first = p;
			one.fault_page = req->fault_page == UINT64_MAX ? UINT64_MAX : p;
			pr = fl__resolve_pages(r, &one, w);
			if (fl__resolve_classify(pr) == FL__POISON && req->source == FL_SRC_POPULATE)
				fail_page(r, &one, p, pr);
		}
		return ret;
	default:
		return ret;
	}
}

/* Pick the prefetch window: grow on sequential access, shrink on random. */
static uint64_t prefetch_window(struct fl_region *r, uint64_t page)
{
	uint64_t last_end = atomic_load_explicit(&r->last_end, memory_order_relaxed);
	unsigned win = atomic_load_explicit(&r->window, memory_order_relaxed);
	unsigned max = (unsigned)FL_MAX(1, (uint64_t)r->prefetch_max * FL_PAGE_SIZE / r->page_size);

	/* A hook (a working-set recorder) needs every first touch as a fault. */
	if ((r->flags & FL_REGION_NO_PREFETCH) || atomic_load_explicit(&r->exact_faults, memory_order_relaxed))
		return 1;
	if (page >= last_end && page <= last_end + win)
		win = win * 2 > max ? max : win * 2;
	else
		win = win / 2 ? win / 2 : 1;
	atomic_store_explicit(&r->window, win, memory_order_relaxed);
	return win;
}

static void count_fault(struct fl_region *r, const struct uffd_msg *msg)
{
	if (fl_msg_fault_minor(msg))
		atomic_fetch_add_explicit(&r->faults_minor, 1, memory_order_relaxed);
	else if (fl_msg_fault_write(msg))
		atomic_fetch_add_explicit(&r->faults_write, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&r->faults_read, 1, memory_order_relaxed);
}

void fl__region_fault(struct fl__target *t, const struct fl__entry *ent, const struct uffd_msg *msg,
		      uint64_t t0, struct fl__worker *w)
{
	struct fl_region *r = (struct fl_region *)t;
	struct fl__space *sp = t->space;
	size_t psz = r->page_size;
	uint64_t base = ent->start - ent->off;	/* address of region byte 0 here */
	uint64_t page = (msg->arg.pagefault.address - base) / psz;
	uint64_t end_page, window, t1;
	struct fl__resolve_req req;
	int ret;

	if (fl_msg_fault_wp(msg)) {
		/* A tracking clone's first write to a page: note it, then
		 * unprotect (which wakes the thread, whose write then makes
		 * the private copy). A hook (an address space's live commit)
		 * may save the page first. Other regions do not write-protect:
		 * a WP fault means someone else did; never leave the thread
		 * asleep. */
		atomic_fetch_add_explicit(&r->faults_wp, 1, memory_order_relaxed);
		if (r->far && page < r->npages) {
			/* Far memory: the page's first write since its last
			 * write-back (hooks do not follow far regions). */
			fl__far_wp_fault(r, sp, base, page);
			return;
		}
		if (atomic_load(&r->track) && page < r->npages)
			fl__sbit_set(r->written, r->written_sum, page);
		for (struct fl__region_hook *h = atomic_load_explicit(&r->hooks, memory_order_acquire); h;
		     h = h->next)
			if (h->ops->write_protected && page < r->npages)
				h->ops->write_protected(h, r, page);
		if (fl_uffd_writeprotect(sp->uffd, (void *)(uintptr_t)(base + page * psz), psz, 0))
			fl_uffd_wake(sp->uffd, (void *)(uintptr_t)(base + page * psz), psz);	/* it faults again */
		return;
	}
	count_fault(r, msg);
	/* Far memory: a page whose mapping was zapped to sample it is in use. */
	if (r->far && fl_msg_fault_minor(msg) && page < r->npages)
		fl__far_touch(r, page);
	/* Before the resolve wakes the thread: once its access returns, the
	 * hooks have seen the page. */
	for (struct fl__region_hook *h = atomic_load_explicit(&r->hooks, memory_order_acquire); h; h = h->next)
		if (h->ops->fault)
			h->ops->fault(h, r, page);
	/* Stay inside this index entry (REMAP/UNMAP may have split the region).
	 * The window is taken once: FL_MIN() evaluates its arguments twice,
	 * and each prefetch_window() call moves the window. */
	window = prefetch_window(r, page);
	end_page = FL_MIN(page + window, (ent->end - base) / psz);
	/* Stop the window at the first page already resolved (a hint). */
	for (uint64_t p = page + 1; p < end_page; p++) {
		if (fl__bit_test(r->resolved, p) || fl__bit_test(r->poisoned, p) || fl__far_busy(r, p)) {
			end_page = p;
			break;
		}
	}
	req = (struct fl__resolve_req){
		.space = sp, .base = base, .first = page, .count = end_page - page,
		.fault_page = page, .tid = fl_msg_fault_tid(msg), .source = FL_SRC_DEMAND,
		/* Far past its mark: the thread waits for the evictor. */
		.dontwake = r->far && fl__far_defer(r, fl_msg_fault_tid(msg)),
	};
	ret = fl__resolve_or_poison(r, &req, w);
	if (req.dontwake)
		fl__far_park(r, sp, base, page);	/* woken by the evictor, whatever happened */
	atomic_store_explicit(&r->last_end, end_page, memory_order_relaxed);

	switch (fl__resolve_classify(ret)) {
	case FL__RETRY:
		/* An event (fork, mremap...) is queued and the mm is changing.
		 * Wake the thread: it faults again and the fault comes back to
		 * us after the event has been read. */
	case FL__LAYOUT_CHANGED:
		/* The range moved or went away: waking lets the thread fault
		 * on whatever is there now. */
		fl_uffd_wake(sp->uffd, (void *)(uintptr_t)(base + page * psz), psz);
		break;
	default:
		/* Resolved, gone, or failed closed by fl__resolve_or_poison(). */
		break;
	}
	t1 = fl__now_ns();
	fl__hist_add(&r->hist, t1 - t0);
	atomic_fetch_add_explicit(&r->blocked_ns, t1 - t0, memory_order_relaxed);
}

int fl__region_fill_step(struct fl__target *t, struct fl__worker *w)
{
	struct fl_region *r = (struct fl_region *)t;
	uint64_t p = atomic_load(&r->fill_cursor), end;
	struct fl__resolve_req req;
	int ret;

	while (p < r->npages && (fl__bit_test(r->resolved, p) || fl__bit_test(r->poisoned, p)))
		p++;
	if (p >= r->npages)
		return 0;
	end = FL_MIN(p + FL_MAX(1, (uint64_t)r->fill_batch * FL_PAGE_SIZE / r->page_size), r->npages);
	for (uint64_t q = p + 1; q < end; q++) {
		if (fl__bit_test(r->resolved, q) || fl__bit_test(r->poisoned, q)) {
			end = q;
			break;
		}
	}
	req = (struct fl__resolve_req){
		.space = t->space, .base = (uintptr_t)r->addr, .first = p, .count = end - p,
		.fault_page = UINT64_MAX, .source = FL_SRC_BACKGROUND,
	};
	ret = fl__resolve_or_poison(r, &req, w);
	if (fl__resolve_classify(ret) == FL__RETRY)
		return 1; /* the same batch again, after the events */
	/* Failures are left for demand faults to fail closed, page by page. */
	atomic_store(&r->fill_cursor, end);
	return end < r->npages;
}

int64_t fl__region_poison_unresolved(struct fl__target *t)
{
	struct fl_region *r = (struct fl_region *)t;
	int64_t total = 0;

	for (uint64_t p = 0; p < r->npages; p++) {
		int ret;
		if (fl__bit_test(r->resolved, p) || fl__bit_test(r->poisoned, p))
			continue;
		ret = fl_uffd_poison(t->space->uffd, r->addr + p * r->page_size, r->page_size, 0, NULL);
		if (ret == 0) {
			if (!fl__bit_set(r->poisoned, p))
				atomic_fetch_add_explicit(&r->pages_poisoned, 1, memory_order_relaxed);
			total++;
		} else if (fl__resolve_classify(ret) != FL__ALREADY_THERE) {
			return ret;
		}
	}
	return total;
}

void fl__region_discard(struct fl_region *r, uint64_t first, uint64_t count)
{
	/* A private mapping of a memfd (a clone) can only be discarded with
	 * MADV_DONTNEED (MADV_REMOVE needs a shared mapping): that drops the
	 * private copies, and the page cache (the template) shows through
	 * again. Not zeros: just no longer mapped. */
	bool revert = r->mode == FL_MODE_MINOR && (r->flags & FL_REGION_PRIVATE);

	for (uint64_t p = first; p < first + count && p < r->npages; p++) {
		if (r->far && fl__far_discard(r, p))
			continue;	/* our eviction's own drop */
		if (revert) {
			if (fl__bit_test(r->resolved, p)) {
				fl__bit_clear(r->resolved, p);
				atomic_fetch_sub_explicit(&r->resolved_count, 1, memory_order_relaxed);
			}
			continue;
		}
		fl__bit_set(r->discarded, p);
		/* MADV_REMOVE drops shmem page cache: fill it again (with zeros). */
		fl__bit_clear(r->cached, p);
		if (fl__bit_test(r->resolved, p)) {
			fl__bit_clear(r->resolved, p);
			atomic_fetch_sub_explicit(&r->resolved_count, 1, memory_order_relaxed);
		}
	}
}
