// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Resolving faults: prefetch windows, store reads, zero-page detection,
 * COPY/ZEROPAGE/CONTINUE runs, background fill, and failing closed.
 *
 * Every path ends in one of: the page mapped with the store's bytes, the
 * page mapped with zeros the store (or a REMOVE event) vouched for, the page
 * poisoned, or the faulting thread sent SIGBUS. Never an unvouched zero.
 */
#include "engine-internal.h"
#include "store-internal.h"

#include <signal.h>
#include <unistd.h>

/* Zero runs shorter than this (inside data) are copied, not ZEROPAGEd. */
#define ZERO_RUN_MIN 16

static bool page_is_zero(const uint8_t *p, size_t len)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;
	for (size_t i = 0; i < len / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

/* Fail closed for one page: poison it, else SIGBUS the faulting thread. */
static void fail_page(struct fl_engine *e, struct fl__space *sp, uint64_t addr, size_t psz, uint32_t tid)
{
	int r = fl_uffd_poison(sp->uffd, (void *)(uintptr_t)addr, psz, 0, NULL);

	if (r == 0 || r == -EEXIST) {
		if (r == -EEXIST)
			fl_uffd_wake(sp->uffd, (void *)(uintptr_t)addr, psz);
		return;
	}
	if (r == -ESRCH || r == -ENOENT)
		return;
	/* No POISON (old kernel, or masked): SIGBUS the faulting thread. The
	 * signal interrupts its wait on the fault; if the application
	 * handles SIGBUS and retries, the fault comes back and fails again. */
	if (tid) {
		pid_t tgid = sp->pid ? sp->pid : (sp->id == 0 ? getpid() : 0);
		fl__log(&e->log, FL_LOG_ERROR, "cannot poison 0x%llx (%s): SIGBUS to thread %u",
			(unsigned long long)addr, strerror(-r), tid);
		fl__tkill(tgid, (pid_t)tid, SIGBUS);
	} else {
		pid_t pid = sp->pid ? sp->pid : (sp->id == 0 ? getpid() : 0);
		fl__log(&e->log, FL_LOG_ERROR, "cannot poison 0x%llx (%s) and no thread id: SIGBUS to process %d",
			(unsigned long long)addr, strerror(-r), (int)pid);
		if (pid)
			fl__tkill(0, pid, SIGBUS);
	}
}

void fl__fail_unowned(struct fl_engine *e, struct fl__space *sp, const struct uffd_msg *msg, bool stale)
{
	uint64_t addr = msg->arg.pagefault.address & ~(uint64_t)(FL_PAGE_SIZE - 1);
	int r;

	if (stale) {
		/* Queued before a region went away: the thread may already
		 * have its page, or its memory is gone. Waking it makes it
		 * fault again against the current layout. */
		fl_uffd_wake(sp->uffd, (void *)(uintptr_t)addr, FL_PAGE_SIZE);
		return;
	}
	atomic_fetch_add_explicit(&e->unowned_faults, 1, memory_order_relaxed);
	/* A hugetlbfs range only accepts huge-page-sized poison. */
	r = fl_uffd_poison(sp->uffd, (void *)(uintptr_t)addr, FL_PAGE_SIZE, 0, NULL);
	if (r == -EINVAL) {
		uint64_t haddr = msg->arg.pagefault.address & ~(uint64_t)(FL_HPAGE_SIZE - 1);
		r = fl_uffd_poison(sp->uffd, (void *)(uintptr_t)haddr, FL_HPAGE_SIZE, 0, NULL);
	}
	if (r == 0 || r == -EEXIST) {
		if (r == -EEXIST)
			fl_uffd_wake(sp->uffd, (void *)(uintptr_t)addr, FL_PAGE_SIZE);
		fl__log(&e->log, FL_LOG_WARN, "fault at 0x%llx outside every region of space %d: poisoned",
			(unsigned long long)msg->arg.pagefault.address, sp->id);
		return;
	}
	fl__log(&e->log, FL_LOG_WARN, "fault at 0x%llx outside every region of space %d: failing it closed",
		(unsigned long long)msg->arg.pagefault.address, sp->id);
	fail_page(e, sp, addr, FL_PAGE_SIZE, fl_msg_fault_tid(msg));
}

static void mark_resolved(struct fl_region *r, uint64_t first, uint64_t count)
{
	uint64_t added = 0;
	for (uint64_t p = first; p < first + count; p++)
		added += !fl__bit_set(r->resolved, p);
	atomic_fetch_add_explicit(&r->resolved_count, added, memory_order_relaxed);
}

enum run_kind { RUN_DATA, RUN_ZERO, RUN_CONTINUE };

/*
 * Resolve `count` pages from `first` (region pages) with one kind of ioctl,
 * skipping pages that turn out to exist (EEXIST). `dst` is the address of
 * page `first` in the target mapping; `src` the data for RUN_DATA.
 * Returns 0, or -EAGAIN / -ENOENT / -ESRCH / other -errno.
 */
static int run_ioctl(struct fl_region *r, int uffd, enum run_kind kind, uint64_t dst,
		     const uint8_t *src, uint64_t count, uint64_t *ret_exist)
{
	size_t psz = r->page_size;
	uint64_t done_pages = 0;

	while (done_pages < count) {
		size_t done = 0, len = (count - done_pages) * psz;
		uint64_t off = done_pages * psz;
		int ret;

		switch (kind) {
		case RUN_DATA:
			ret = fl_uffd_copy(uffd, (void *)(uintptr_t)(dst + off), src + off, len, 0, &done);
			break;
		case RUN_ZERO:
			ret = fl_uffd_zeropage(uffd, (void *)(uintptr_t)(dst + off), len, 0, &done);
			break;
		default:
			ret = fl_uffd_continue(uffd, (void *)(uintptr_t)(dst + off), len, 0, &done);
			break;
		}
		done_pages += done / psz;
		if (!ret)
			break;
		if (ret != -EEXIST)
			return ret;
		/* Someone (a filler, another handler) mapped this page first. */
		(*ret_exist)++;
		done_pages++;
	}
	return 0;
}

static int resolve_error(struct fl_region *r, struct fl__space *sp, int ret)
{
	if (ret == -ESRCH) {
		atomic_store(&sp->dead, true);
		fl__log(&r->engine->log, FL_LOG_INFO, "space %d: process gone", sp->id);
	}
	return ret;
}

int fl__resolve_pages(struct fl_region *r, struct fl__space *sp, uint64_t base, uint64_t first,
		      uint64_t count, uint64_t fault_page, struct fl__worker *w, int source)
{
	struct fl_engine *e = r->engine;
	size_t psz = r->page_size;
	uint64_t store_pages, exist = 0, zero_pages = 0, data_pages = 0, run_exist;
	struct fl_store_iov iov;
	bool minor = r->mode == FL_MODE_MINOR;
	int main_uffd = e->spaces[0]->uffd;
	int ret;

	if (first >= r->npages)
		return -ERANGE;
	count = FL_MIN(count, r->npages - first);
	ret = fl__worker_reserve(w, count * psz);
	if (ret)
		return ret;

	/* Pages past the end of the store cannot be delivered. */
	store_pages = r->store->size > r->store_offset ? (r->store->size - r->store_offset) / psz : 0;
	if (first >= store_pages) {
		if (fault_page >= first && fault_page < first + count)
			return -ERANGE;
		return 0;
	}
	count = FL_MIN(count, store_pages - first);

	/* MINOR regions whose page cache already holds every page: map it. */
	if (minor) {
		bool all_cached = true;
		for (uint64_t p = first; p < first + count && all_cached; p++)
			all_cached = fl__bit_test(r->cached, p);
		if (all_cached)
			goto map_continue;
	}

	iov = (struct fl_store_iov){
		.offset = r->store_offset + first * psz,
		.buf = w->buf,
		.len = count * psz,
		.flags_in = (source == FL_SRC_DEMAND || source == FL_SRC_POPULATE) ? FL_STORE_IN_URGENT : 0,
	};
	ret = fl_store_read(r->store, &iov, 1);
	if (ret) {
		atomic_fetch_add_explicit(&r->store_errors, 1, memory_order_relaxed);
		fl__log(&e->log, FL_LOG_WARN, "%s: store read at %llu (%llu pages) failed: %s", r->name,
			(unsigned long long)iov.offset, (unsigned long long)count, strerror(-ret));
		/* ENOENT/EAGAIN/ESRCH mean "layout changed" or "process gone"
		 * only when the kernel says them; from a store they mean the
		 * data cannot be had, which fails closed. */
		if (ret == -ENOENT || ret == -EAGAIN || ret == -ESRCH || ret == -EEXIST)
			ret = -EIO;
		return ret;
	}
	atomic_fetch_add_explicit(&r->bytes_read, iov.len, memory_order_relaxed);
	if ((iov.flags_out & FL_STORE_OUT_ZERO) && (r->mem == FL_MEM_HUGETLB))
		memset(w->buf, 0, iov.len); /* hugetlbfs has no ZEROPAGE: copy zeros */

	/* Walk runs of data / zero pages. Discarded pages (REMOVE) are zeros
	 * by the application's own request. */
	for (uint64_t p = first; p < first + count; p++) {
		uint8_t *pg = w->buf + (p - first) * psz;
		bool disc = fl__bit_test(r->discarded, p);
		if (disc)
			memset(pg, 0, psz);
		w->zero[p - first] = disc || (iov.flags_out & FL_STORE_OUT_ZERO) || page_is_zero(pg, psz);
	}
	/* A short zero run inside data costs two more ioctls than copying the
	 * zeros we already hold: ZEROPAGE only long runs, or a whole request. */
	for (uint64_t i = 0; i < count;) {
		uint64_t j = i;
		while (j < count && w->zero[j] == w->zero[i])
			j++;
		if (w->zero[i] && j - i < ZERO_RUN_MIN && j - i < count)
			memset(&w->zero[i], 0, j - i);
		i = j;
	}
	for (uint64_t p = first; p < first + count;) {
		bool zero = w->zero[p - first];
		uint64_t q = p;
		uint8_t *src = w->buf + (p - first) * psz;
		uint64_t dst;
		int uffd;

		while (q < first + count && w->zero[q - first] == zero)
			q++;
		if (minor) {
			/* Skip pages whose page cache is already filled. */
			while (p < q && fl__bit_test(r->cached, p))
				p++;
			if (p == q)
				continue;
			src = w->buf + (p - first) * psz;
			dst = (uintptr_t)r->alias + p * psz;
			uffd = main_uffd;
		} else {
			dst = base + p * psz;
			uffd = sp->uffd;
		}
		/* hugetlbfs cannot ZEROPAGE: copy the zeros we hold. */
		run_exist = exist;
		ret = run_ioctl(r, uffd, (zero && r->mem != FL_MEM_HUGETLB) ? RUN_ZERO : RUN_DATA,
				dst, src, q - p, &exist);
		run_exist = exist - run_exist;	/* pages someone else installed */
		if (ret)
			return resolve_error(r, sp, ret);
		if (minor) {
			for (uint64_t k = p; k < q; k++)
				fl__bit_set(r->cached, k);
		}
		if (zero)
			zero_pages += q - p - run_exist;
		else
			data_pages += q - p - run_exist;
		p = q;
	}

	/* pages_copy/pages_zero count how data was installed (into the page
	 * cache for MINOR regions); pages_continue counts mappings made. */
	atomic_fetch_add_explicit(&r->pages_copy, data_pages, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->pages_zero, zero_pages, memory_order_relaxed);
	if (!minor)
		goto done;
map_continue:
	ret = run_ioctl(r, sp->uffd, RUN_CONTINUE, base + first * psz, NULL, count, &exist);
	if (ret)
		return resolve_error(r, sp, ret);
	atomic_fetch_add_explicit(&r->pages_continue, count, memory_order_relaxed);
done:
	if (sp == r->space)
		mark_resolved(r, first, count);
	atomic_fetch_add_explicit(&r->pages_exist, exist, memory_order_relaxed);
	if (source == FL_SRC_BACKGROUND)
		atomic_fetch_add_explicit(&r->pages_background, count > exist ? count - exist : 0, memory_order_relaxed);
	else if (source == FL_SRC_REPLAY)
		atomic_fetch_add_explicit(&r->pages_replayed, count > exist ? count - exist : 0, memory_order_relaxed);
	else if (count > 1 + exist)
		atomic_fetch_add_explicit(&r->pages_prefetch, count - 1 - exist, memory_order_relaxed);
	/* A page that existed may have a thread asleep on it. */
	if (exist && fault_page >= first && fault_page < first + count)
		fl_uffd_wake(sp->uffd, (void *)(uintptr_t)(base + fault_page * psz), psz);
	return 0;
}

/* Pick the prefetch window: grow on sequential access, shrink on random. */
static uint64_t prefetch_window(struct fl_region *r, uint64_t page)
{
	uint64_t last_end = atomic_load_explicit(&r->last_end, memory_order_relaxed);
	unsigned win = atomic_load_explicit(&r->window, memory_order_relaxed);
	unsigned max = (unsigned)FL_MAX(1, (uint64_t)r->prefetch_max * FL_PAGE_SIZE / r->page_size);

	/* Recording a working set: every first touch must be a fault. */
	if ((r->flags & FL_REGION_NO_PREFETCH) ||
	    atomic_load_explicit(&r->recording, memory_order_relaxed))
		return 1;
	if (page >= last_end && page <= last_end + win)
		win = win * 2 > max ? max : win * 2;
	else
		win = win / 2 ? win / 2 : 1;
	atomic_store_explicit(&r->window, win, memory_order_relaxed);
	return win;
}

void fl__handle_fault(struct fl_engine *e, struct fl__space *sp, const struct fl__entry *ent,
		      const struct uffd_msg *msg, uint64_t t0, struct fl__worker *w)
{
	struct fl_region *r = ent->region;
	uint64_t addr = msg->arg.pagefault.address;
	size_t psz = r->page_size;
	uint64_t base = ent->start - ent->region_off;	/* address of region byte 0 here */
	uint64_t page = (addr - base) / psz;
	uint64_t win, end_page, t1;
	int ret;

	if (fl_msg_fault_wp(msg)) {
		/* Regions do not write-protect; a WP fault here means someone
		 * else did. Never leave the thread asleep. */
		atomic_fetch_add_explicit(&r->faults_wp, 1, memory_order_relaxed);
		fl_uffd_writeprotect(sp->uffd, (void *)(uintptr_t)(base + page * psz), psz, 0);
		return;
	}
	if (fl_msg_fault_minor(msg))
		atomic_fetch_add_explicit(&r->faults_minor, 1, memory_order_relaxed);
	else if (fl_msg_fault_write(msg))
		atomic_fetch_add_explicit(&r->faults_write, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&r->faults_read, 1, memory_order_relaxed);

	/* Noted before the resolve wakes the thread: once its access
	 * returns, the page is in the recording. */
	if (atomic_load_explicit(&r->recording, memory_order_relaxed))
		fl__ws_note_fault(r, page);
	win = prefetch_window(r, page);
	/* Stay inside this index entry (REMAP/UNMAP may have split the region). */
	end_page = FL_MIN(page + win, (ent->end - base) / psz);
	/* Stop the window at the first page already resolved (a hint). */
	for (uint64_t p = page + 1; p < end_page; p++) {
		if (fl__bit_test(r->resolved, p) || fl__bit_test(r->poisoned, p)) {
			end_page = p;
			break;
		}
	}
	ret = fl__resolve_pages(r, sp, base, page, end_page - page, page, w, FL_SRC_DEMAND);
	if (ret && ret != -EAGAIN && ret != -ENOENT && ret != -ESRCH && end_page - page > 1)
		/* The window failed: try the faulting page alone. */
		ret = fl__resolve_pages(r, sp, base, page, 1, page, w, FL_SRC_DEMAND);
	atomic_store_explicit(&r->last_end, end_page, memory_order_relaxed);

	switch (ret) {
	case 0:
		break;
	case -EAGAIN:
		/* An event (fork, mremap...) is queued and the mm is changing.
		 * Wake the thread: it faults again and the fault comes back to
		 * us after the event has been read. */
	case -ENOENT:
		/* The range moved or went away: waking lets the thread fault
		 * on whatever is there now. */
		fl_uffd_wake(sp->uffd, (void *)(uintptr_t)(base + page * psz), psz);
		break;
	case -ESRCH:
		break;
	default:
		fl__bit_set(r->poisoned, page);
		atomic_fetch_add_explicit(&r->pages_poisoned, 1, memory_order_relaxed);
		fl__log(&e->log, FL_LOG_ERROR, "%s: page %llu cannot be delivered (%s): failing closed",
			r->name, (unsigned long long)page, strerror(-ret));
		fail_page(e, sp, base + page * psz, psz, fl_msg_fault_tid(msg));
		break;
	}
	t1 = fl__now_ns();
	fl__hist_add(&r->hist, t1 - t0);
	atomic_fetch_add_explicit(&r->blocked_ns, t1 - t0, memory_order_relaxed);
}

int fl__fill_step(struct fl_region *r, struct fl__worker *w)
{
	uint64_t p = atomic_load(&r->fill_cursor), end;
	int ret;

	while (p < r->npages && (fl__bit_test(r->resolved, p) || fl__bit_test(r->poisoned, p)))
		p++;
	if (p >= r->npages) {
		atomic_store(&r->fill_done, true);
		return 0;
	}
	end = FL_MIN(p + FL_MAX(1, (uint64_t)r->fill_batch * FL_PAGE_SIZE / r->page_size), r->npages);
	for (uint64_t q = p + 1; q < end; q++) {
		if (fl__bit_test(r->resolved, q) || fl__bit_test(r->poisoned, q)) {
			end = q;
			break;
		}
	}
	ret = fl__resolve_pages(r, r->space, (uintptr_t)r->addr, p, end - p, UINT64_MAX, w, FL_SRC_BACKGROUND);
	if (ret == -EAGAIN)
		return ret; /* retry the same batch after events */
	/* Errors are left for demand faults to fail closed, page by page. */
	atomic_store(&r->fill_cursor, end);
	if (end >= r->npages)
		atomic_store(&r->fill_done, true);
	return ret;
}

void fl__poison_page(struct fl_region *r, struct fl__space *sp, uint64_t base, uint64_t page)
{
	int ret = fl_uffd_poison(sp->uffd, (void *)(uintptr_t)(base + page * r->page_size), r->page_size, 0, NULL);
	if (ret == 0 && !fl__bit_set(r->poisoned, page))
		atomic_fetch_add_explicit(&r->pages_poisoned, 1, memory_order_relaxed);
}

int64_t fl__poison_unresolved(struct fl_region *r)
{
	int64_t total = 0;
	for (uint64_t p = 0; p < r->npages; p++) {
		int ret;
		if (fl__bit_test(r->resolved, p) || fl__bit_test(r->poisoned, p))
			continue;
		ret = fl_uffd_poison(r->space->uffd, r->addr + p * r->page_size, r->page_size, 0, NULL);
		if (ret == 0) {
			fl__bit_set(r->poisoned, p);
			total++;
		} else if (ret != -EEXIST) {
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
