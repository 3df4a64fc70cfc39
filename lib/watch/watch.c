// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Write watches (see watch.h): the common part and the two userfaultfd
 * backends. ASYNC keeps no state of its own: the kernel's uffd-wp bits are
 * the dirty set and PAGEMAP_SCAN reads and re-arms them. SYNC keeps a
 * bitmap that its fault thread fills. MPROTECT lives in watch-mprotect.c.
 */
#include "kernel.h"
#include "watch-internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define MSG_BATCH 64
#define SCAN_VEC 512

/* ---- memory layout -------------------------------------------------------- */

int fl__range_scan(uint64_t addr, uint64_t len, enum fl_mem_type *ret_mem, size_t *ret_psz, bool *ret_shared,
		   bool *ret_maywrite, void (*each)(void *ctx, uint64_t lo, uint64_t hi, int prot), void *ctx)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	uint64_t cur = addr, end = addr + len, vlo = 0, vhi = 0;
	bool in = false, first = true, shared = false, vshared = false, maywrite = true, mixed = false;
	enum fl_mem_type mem = FL_MEM_ANON, m = FL_MEM_ANON;
	size_t psz = 0;
	int vprot = 0, ret = -EINVAL;

	if (!f)
		return -EIO;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, kps;
		char perms[8];

		/* A mapping's header: "lo-hi perms offset dev inode path". */
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && strlen(perms) == 4 &&
		    strchr("r-", perms[0]) && strchr("ps", perms[3])) {
			in = cur >= lo && cur < hi;
			if (in) {
				vshared = perms[3] == 's';
				vprot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
					(perms[2] == 'x' ? PROT_EXEC : 0);
				vlo = cur;
				vhi = FL_MIN((uint64_t)hi, end);
				cur = hi;
			} else if (lo > cur) {
				break;	/* a hole */
			}
			continue;
		}
		if (in && sscanf(line, "KernelPageSize: %lu kB", &kps) == 1) {
			m = kps * 1024 > FL_PAGE_SIZE ? FL_MEM_HUGETLB : vshared ? FL_MEM_SHMEM : FL_MEM_ANON;
			if (first) {
				mem = m;
				shared = vshared;
				psz = (size_t)kps * 1024;
				first = false;
			} else if (m != mem || vshared != shared) {
				mixed = true;
				break;
			}
			continue;
		}
		/* VmFlags is a mapping's last line: "mw" is VM_MAYWRITE, what
		 * userfaultfd registration needs (a PROT_NONE reservation has it). */
		if (in && !strncmp(line, "VmFlags:", 8)) {
			if (!strstr(line, " mw"))
				maywrite = false;
			if (each)
				each(ctx, vlo, vhi, vprot);
			in = false;
			if (cur >= end)
				break;
		}
	}
	fclose(f);
	if (!first && !mixed && cur >= end && !in) {
		*ret_mem = mem;
		*ret_psz = psz;
		if (ret_shared)
			*ret_shared = shared;
		if (ret_maywrite)
			*ret_maywrite = maywrite;
		ret = 0;
	}
	return ret;
}

struct prot_acc {
	int prot;
	bool first;
};

static void prot_acc(void *ctx, uint64_t lo, uint64_t hi, int prot)
{
	struct prot_acc *p = ctx;

	(void)lo;
	(void)hi;
	p->prot = p->first || p->prot == prot ? prot : -1;
	p->first = false;
}

int fl__range_info(uint64_t addr, uint64_t len, enum fl_mem_type *ret_mem, size_t *ret_psz, int *ret_prot)
{
	struct prot_acc p = { .first = true };
	int ret = fl__range_scan(addr, len, ret_mem, ret_psz, NULL, NULL, prot_acc, &p);

	if (!ret)
		*ret_prot = p.prot;
	return ret;
}

/* ---- common --------------------------------------------------------------- */

static bool bit_test(const _Atomic uint64_t *bm, uint64_t i)
{
	return (atomic_load_explicit(&bm[i / 64], memory_order_acquire) >> (i % 64)) & 1;
}

void fl__watch_mark(struct fl_watch *w, uint64_t g)
{
	fl__sbit_set(w->dirty, w->dirty_sum, g);
}

/* The first dirty granule in [g, end), or end. */
static uint64_t next_dirty(struct fl_watch *w, uint64_t g, uint64_t end)
{
	return fl__sbit_next(w->dirty, w->dirty_sum, g, end);
}

static void bit_clear(_Atomic uint64_t *bm, uint64_t i)
{
	atomic_fetch_and_explicit(&bm[i / 64], ~(1ull << (i % 64)), memory_order_release);
}

static int check_sub(const struct fl_watch *w, void *addr, size_t len, uint64_t *first, uint64_t *n)
{
	uint64_t a = (uintptr_t)addr;

	if (!len || a < w->start || a + len > w->start + w->len || a + len < a || (a - w->start) % w->gran ||
	    len % w->gran)
		return -EINVAL;
	*first = (a - w->start) / w->gran;
	*n = len / w->gran;
	return 0;
}

/* ---- ASYNC ---------------------------------------------------------------- */

/*
 * get merges two ascending sources: PAGEMAP_SCAN's written pages and, on
 * shmem and hugetlb, the granules discarded since their reset (REMOVE
 * events: PAGEMAP_SCAN does not see those, kernel-facts.md).
 */
struct async_get {
	struct fl_watch *w;
	void **pages;
	uint64_t cap, count;
	uint64_t bm_next, bm_end;	/* discarded granules not yet merged */
};

static void emit_discarded_below(struct async_get *g, uint64_t limit)
{
	struct fl_watch *w = g->w;

	for (; g->bm_next < g->bm_end && g->count < g->cap; g->bm_next++) {
		uint64_t a = w->start + g->bm_next * w->gran;
		if (a >= limit)
			break;
		if (bit_test(w->dirty, g->bm_next))
			g->pages[g->count++] = (void *)(uintptr_t)a;
	}
}

static int async_collect(const struct fl_page_region *r, void *ctx)
{
	struct async_get *g = ctx;
	struct fl_watch *w = g->w;

	for (uint64_t a = r->start; a < r->end && g->count < g->cap; a += w->gran) {
		emit_discarded_below(g, a);
		if (g->count >= g->cap)
			break;
		g->pages[g->count++] = (void *)(uintptr_t)a;
		if (g->bm_next < g->bm_end && w->start + g->bm_next * w->gran == a)
			g->bm_next++;	/* both written and discarded: once */
	}
	return 0;
}

static bool bitmap_any(struct fl_watch *w, uint64_t first, uint64_t n)
{
	return w->dirty && next_dirty(w, first, first + n) < first + n;
}

static int ignore_region(const struct fl_page_region *r, void *ctx)
{
	(void)r;
	(void)ctx;
	return 0;
}

static int async_reset(struct fl_watch *w, uint64_t start, uint64_t len)
{
	/* Re-protect only what was written: far cheaper than protecting
	 * every pte of the range again. */
	struct fl_scan_opts so = {
		.sz = sizeof(so),
		.start = start,
		.end = start + len,
		.flags = FL_SCAN_WP_MATCHING | FL_SCAN_CHECK_WPASYNC,
		.category_mask = FL_PAGE_IS_WRITTEN,
		.return_mask = FL_PAGE_IS_WRITTEN,
	};
	int64_t n = fl_pagemap_scan_all(w->svc->pagemap_fd, &so, ignore_region, NULL);

	if (n < 0)
		return (int)n;
	if (w->dirty) {
		for (uint64_t a = start; a < start + len; a += w->gran)
			bit_clear(w->dirty, (a - w->start) / w->gran);
	}
	return 0;
}

static int async_get(struct fl_watch *w, uint64_t start, uint64_t len, bool reset, void **pages, uint64_t *count)
{
	uint64_t first = (start - w->start) / w->gran;
	bool merge = bitmap_any(w, first, len / w->gran);
	struct async_get g = { .w = w, .pages = pages, .cap = *count };
	struct fl_scan_opts so = {
		.sz = sizeof(so),
		.start = start,
		.end = start + len,
		/* Without discards to merge, one scan reports and re-protects. */
		.flags = reset && !merge ? (FL_SCAN_WP_MATCHING | FL_SCAN_CHECK_WPASYNC) : 0,
		/* Bounds what is reported and, with WP_MATCHING, exactly what
		 * is re-protected: the caller's capacity. A buffer that holds
		 * the whole range needs no bound (and the kernel walks faster
		 * without one). */
		.max_pages = *count >= len / w->gran ? 0 : *count * (w->gran / FL_PAGE_SIZE),
		.category_mask = FL_PAGE_IS_WRITTEN,
		.return_mask = FL_PAGE_IS_WRITTEN,
	};
	int64_t n;
	int ret = 0;

	if (merge) {
		g.bm_next = first;
		g.bm_end = first + len / w->gran;
	}
	n = fl_pagemap_scan_all(w->svc->pagemap_fd, &so, async_collect, &g);
	if (n < 0)
		return (int)n;
	emit_discarded_below(&g, start + len);
	if (merge && reset) {
		/* Reset exactly the runs returned: a page written after the scan
		 * inside a run was written before this re-protect, so it is
		 * rightly part of what was reported. */
		for (uint64_t i = 0; i < g.count && !ret;) {
			uint64_t j = i + 1, a = (uintptr_t)pages[i];
			while (j < g.count && (uintptr_t)pages[j] == a + (j - i) * w->gran)
				j++;
			ret = async_reset(w, a, (j - i) * w->gran);
			i = j;
		}
	}
	*count = g.count;
	return ret;
}

/* ---- SYNC ------------------------------------------------------------------ */

static int writeprotect(int uffd, uint64_t addr, uint64_t len, unsigned mode)
{
	int ret;

	do
		ret = fl_uffd_writeprotect(uffd, (void *)(uintptr_t)addr, len, mode);
	while (ret == -EAGAIN);
	return ret;
}

/*
 * Before Linux 6.4, UFFDIO_WRITEPROTECT works within one VMA and fails with
 * ENOENT over a range that spans several: an application's own mprotect()
 * inside a watched range, or a manager range added again over VMAs that
 * removing it had split, is enough. Taken for "unmapped", that left the
 * whole range unprotected and its writes unseen. So protect VMA by VMA, as
 * /proc/self/maps lists them (a watch is always of this process's memory);
 * parts no VMA covers are unmapped and have nothing to protect.
 */
static int writeprotect_each_vma(int uffd, uint64_t addr, uint64_t len, unsigned mode)
{
	FILE *f = fopen("/proc/self/maps", "re");
	uint64_t end = addr + len;
	char *line = NULL;
	size_t cap = 0;
	int ret = 0;

	if (!f)
		return -errno;
	while (!ret && getline(&line, &cap, f) > 0) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) != 2 || hi <= addr)
			continue;
		if (lo >= end)
			break;
		ret = writeprotect(uffd, FL_MAX((uint64_t)lo, addr), FL_MIN((uint64_t)hi, end) - FL_MAX((uint64_t)lo, addr),
				   mode);
		if (ret == -ENOENT)
			ret = 0;	/* unmapped meanwhile */
	}
	free(line);
	fclose(f);
	return ret;
}

static int protect(struct fl_watch *w, uint64_t addr, uint64_t len, bool on)
{
	unsigned mode = on ? FL_WP_PROTECT : 0;
	int ret = writeprotect(w->svc->uffd, addr, len, mode);

	if (ret == -ENOENT && len > w->gran)
		ret = writeprotect_each_vma(w->svc->uffd, addr, len, mode);
	/* ENOENT: unmapped under us; nothing left to protect or wake. */
	return ret == -ENOENT ? 0 : ret;
}

static void call_hook(struct fl_watch *w, uint64_t addr)
{
	pthread_rwlock_rdlock(&w->hook_lock);
	if (w->hook)
		w->hook(w->hook_ctx, addr, w->gran);
	pthread_rwlock_unlock(&w->hook_lock);
}

/*
 * A first write to a protected granule: let the hook see the old bytes,
 * then record and unprotect under the lock that get+reset holds while it
 * re-protects and clears, so a write is never lost between the two.
 */
static void sync_written(struct fl_watch *w, uint64_t addr)
{
	uint64_t g = (addr - w->start) / w->gran;
	int ret;

	/* The hook runs under the lock too: a fault message can be stale (two
	 * threads faulted on one page; the first unprotect woke both), and a
	 * get that re-protects and hands pages to its caller must not be cut
	 * in two by one (see fl__watch_get_mark()). */
	pthread_mutex_lock(&w->lock);
	call_hook(w, addr);
	fl__watch_mark(w, g);
	ret = protect(w, addr, w->gran, false);
	pthread_mutex_unlock(&w->lock);
	if (ret) {
		fl__log(&w->log, FL_LOG_ERROR, "watch: unprotecting %#llx failed: %s", (unsigned long long)addr,
			strerror(-ret));
		fl_uffd_wake(w->svc->uffd, (void *)(uintptr_t)addr, w->gran);
	}
}

/* MISSING (no WP_UNPOPULATED): a never-populated page is zeros. */
static void sync_missing(struct fl_watch *w, uint64_t addr, bool write)
{
	int ret;

	/* Install it protected first, so a write is then an ordinary first
	 * write (and the hook reads zeros without faulting into us). */
	ret = fl_uffd_copy(w->svc->uffd, (void *)(uintptr_t)addr, w->zero_buf, w->gran, FL_MODE_WP | (write ? FL_DONTWAKE : 0),
			   NULL);
	if (ret && ret != -EEXIST && ret != -ENOENT) {
		fl__log(&w->log, FL_LOG_ERROR, "watch: installing a zero page at %#llx failed: %s",
			(unsigned long long)addr, strerror(-ret));
	}
	if (ret == -ENOENT)
		return;
	if (write)
		sync_written(w, addr);
	else if (ret)
		fl_uffd_wake(w->svc->uffd, (void *)(uintptr_t)addr, w->gran);
}

static void sync_remove(struct fl_watch *w, uint64_t start, uint64_t end)
{
	/* MADV_DONTNEED and friends change the contents: a write. */
	start = FL_MAX(start, w->start);
	end = FL_MIN(end, w->start + w->len);
	pthread_mutex_lock(&w->lock);
	for (uint64_t a = start & ~(uint64_t)(w->gran - 1); a < end; a += w->gran)
		fl__watch_mark(w, (a - w->start) / w->gran);
	pthread_mutex_unlock(&w->lock);
}

static void on_fault(struct fl_watch *w, void *arg)
{
	const struct uffd_msg *m = arg;
	uint64_t addr = fl_msg_fault_addr(m) & ~(uint64_t)(w->gran - 1);

	if (w->backend != FL_WATCH_SYNC)
		return;
	if (fl_msg_fault_wp(m))
		sync_written(w, addr);
	else
		sync_missing(w, addr, fl_msg_fault_write(m));
}

static void on_remove(struct fl_watch *w, void *arg)
{
	const struct uffd_msg *m = arg;

	if (w->dirty)
		sync_remove(w, m->arg.remove.start, m->arg.remove.end);
}

/* The service thread of one uffd: SYNC faults and REMOVE events, handed to
 * the watch (of a manager: the watches) they concern. */
static void *svc_thread(void *arg)
{
	struct fl__watch_svc *svc = arg;
	struct uffd_msg msgs[MSG_BATCH];

	for (;;) {
		struct pollfd pfd[2] = { { .fd = svc->uffd, .events = POLLIN }, { .fd = svc->stop_fd, .events = POLLIN } };
		int n = fl__poll(pfd, 2, -1);

		if (n < 0 && n != -EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & (POLLERR | POLLHUP))
			break;
		atomic_fetch_add(&svc->batches_started, 1);
		n = fl_uffd_read(svc->uffd, msgs, MSG_BATCH);
		if (n == -EAGAIN || n == -EINTR) {
			atomic_fetch_add(&svc->batches_done, 1);
			continue;
		}
		if (n < 0) {
			atomic_fetch_add(&svc->batches_done, 1);
			break;
		}
		for (int i = 0; i < n; i++) {
			struct uffd_msg *m = &msgs[i];
			if (fl_msg_is_fault(m))
				svc->each(svc->each_ctx, fl_msg_fault_addr(m), fl_msg_fault_addr(m) + 1, on_fault, m);
			else if (m->event == UFFD_EVENT_REMOVE)
				svc->each(svc->each_ctx, m->arg.remove.start, m->arg.remove.end, on_remove, m);
			else if (m->event == UFFD_EVENT_UNMAP && svc->unmapped)
				svc->unmapped(svc->each_ctx, m->arg.remove.start, m->arg.remove.end);
		}
		atomic_fetch_add(&svc->batches_done, 1);
	}
	return NULL;
}

/*
 * A REMOVE event releases madvise() as soon as the thread has read it, so
 * the caller may ask before the thread has recorded it: wait for every
 * batch read before this call to be processed.
 */
void fl__watch_svc_settle(struct fl__watch_svc *svc)
{
	uint64_t started;

	if (!svc)
		return;
	started = atomic_load(&svc->batches_started);
	while (atomic_load(&svc->batches_done) < started && svc->thread_started)
		sched_yield();
}

static void sync_settle(struct fl_watch *w)
{
	fl__watch_svc_settle(w->svc);
}

/* Get (and reset) granules [first, first + n) from the bitmap. */
static int bitmap_get_fn(struct fl_watch *w, uint64_t first, uint64_t n, bool reset, void **pages, uint64_t *count,
			 void (*fn)(void *ctx, uint64_t addr), void *ctx);

static int bitmap_get(struct fl_watch *w, uint64_t first, uint64_t n, bool reset, void **pages, uint64_t *count)
{
	return bitmap_get_fn(w, first, n, reset, pages, count, NULL, NULL);
}

int fl__watch_get_mark(struct fl_watch *w, void **pages, uint64_t *count, void (*fn)(void *ctx, uint64_t addr),
		       void *ctx)
{
	int ret;

	if (!w || w->backend != FL_WATCH_SYNC)
		return -EOPNOTSUPP;
	sync_settle(w);
	pthread_mutex_lock(&w->lock);
	ret = bitmap_get_fn(w, 0, w->ngran, true, pages, count, fn, ctx);
	pthread_mutex_unlock(&w->lock);
	return ret;
}

static int bitmap_get_fn(struct fl_watch *w, uint64_t first, uint64_t n, bool reset, void **pages, uint64_t *count,
			 void (*fn)(void *ctx, uint64_t addr), void *ctx)
{
	uint64_t cap = *count, c = 0, end = first + n;
	int ret = 0;

	for (uint64_t g = next_dirty(w, first, end); g < end && c < cap; g = next_dirty(w, g + 1, end))
		pages[c++] = (void *)(uintptr_t)(w->start + g * w->gran);
	for (uint64_t i = 0; fn && i < c; i++)
		fn(ctx, (uintptr_t)pages[i]);
	if (reset) {
		/* Re-protect runs of returned granules, then clear their bits. */
		for (uint64_t i = 0; i < c && !ret;) {
			uint64_t j = i + 1;
			uint64_t a = (uintptr_t)pages[i];
			while (j < c && (uintptr_t)pages[j] == a + (j - i) * w->gran)
				j++;
			ret = w->backend == FL_WATCH_SYNC ? protect(w, a, (j - i) * w->gran, true) :
							    fl__watch_mp_protect(w, a, (j - i) * w->gran);
			for (uint64_t k = i; k < j && !ret; k++)
				bit_clear(w->dirty, ((uintptr_t)pages[k] - w->start) / w->gran);
			i = j;
		}
	}
	*count = c;
	return ret;
}

static int bitmap_reset(struct fl_watch *w, uint64_t first, uint64_t n)
{
	int ret = 0;

	for (uint64_t g = next_dirty(w, first, first + n); g < first + n && !ret; g = next_dirty(w, g, first + n)) {
		uint64_t h = g;
		while (h < first + n && bit_test(w->dirty, h))
			h++;
		ret = w->backend == FL_WATCH_SYNC ? protect(w, w->start + g * w->gran, (h - g) * w->gran, true) :
						    fl__watch_mp_protect(w, w->start + g * w->gran, (h - g) * w->gran);
		for (uint64_t k = g; k < h && !ret; k++)
			bit_clear(w->dirty, k);
		g = h;
	}
	return ret;
}

int fl__watch_set_hook(struct fl_watch *w, fl__watch_hook_fn fn, void *ctx)
{
	if (!w)
		return -EINVAL;
	if (w->backend != FL_WATCH_SYNC)
		return -EOPNOTSUPP;
	/* The write lock waits for a running hook call to return. */
	pthread_rwlock_wrlock(&w->hook_lock);
	w->hook = fn;
	w->hook_ctx = fn ? ctx : NULL;
	pthread_rwlock_unlock(&w->hook_lock);
	return 0;
}

/* ---- setup ---------------------------------------------------------------- */

/* The async backend: the kernel resolves WP faults, PAGEMAP_SCAN reports
 * what was written, and unpopulated ptes are protected without a fault-in. */
static bool async_usable(void)
{
	return fl_feature_has(FL_FEATURE_WP_ASYNC) && fl_feature_has(FL_FEATURE_WP_UNPOPULATED) &&
	       fl_feature_has(FL_FEATURE_PAGEMAP_SCAN);
}

/* The features a uffd serving `backend` over `mem` needs; -EOPNOTSUPP if
 * the kernel (or the mask) lacks them. mem < 0: every kind (a manager). */
static int svc_features(enum fl_watch_backend backend, int mem, uint64_t *ret_feat)
{
	uint64_t feat;
	bool any = mem < 0;

	if (backend == FL_WATCH_ASYNC) {
		if (!async_usable())
			return -EOPNOTSUPP;
		feat = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
		/* PAGEMAP_SCAN misses discards on shmem and hugetlb: take them
		 * from REMOVE events (a thread reads them: madvise waits). */
		if (mem != FL_MEM_ANON) {
			if (!fl_feature_has(FL_FEATURE_EVENT_REMOVE))
				return -EOPNOTSUPP;
			feat |= UFFD_FEATURE_EVENT_REMOVE;
		}
	} else {
		feat = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_EVENT_REMOVE;
		if (!fl_feature_has(FL_FEATURE_WP) || !fl_feature_has(FL_FEATURE_EVENT_REMOVE))
			return -EOPNOTSUPP;
		if ((mem == FL_MEM_ANON || any) && fl_feature_has(FL_FEATURE_WP_UNPOPULATED))
			feat |= UFFD_FEATURE_WP_UNPOPULATED;
	}
	/* A manager forgets ranges the program unmaps (it may map other
	 * memory there and add that). */
	if (any && fl_feature_has(FL_FEATURE_EVENT_UNMAP))
		feat |= UFFD_FEATURE_EVENT_UNMAP;
	if (mem != FL_MEM_ANON) {
		if (fl_feature_has(FL_FEATURE_WP_HUGETLBFS_SHMEM))
			feat |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
		else if (!any)
			return -EOPNOTSUPP;
	}
	*ret_feat = feat;
	return 0;
}

int fl__watch_svc_init(struct fl__watch_svc *svc, enum fl_watch_backend backend, uint64_t feat)
{
	int ret;

	svc->uffd = svc->stop_fd = svc->pagemap_fd = -1;
	if (backend == FL_WATCH_ASYNC) {
		ret = fl_pagemap_open(0, &svc->pagemap_fd);
		if (ret)
			return ret;
	}
	/* Not USER_MODE_ONLY when it can be helped: the kernel's own writes
	 * into the range (read(2)) must fault into us too. Without privilege
	 * only a user-mode-only uffd can be had; the watch remembers, because
	 * then the SYNC backend makes kernel writes fail (fl_watch_query()). */
	ret = fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK | FL_UFFD_USE_SYSCALL, &svc->uffd);
	if (ret == -EPERM || ret == -EOPNOTSUPP)
		ret = fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK | FL_UFFD_USE_DEV, &svc->uffd);
	if (ret == -EPERM || ret == -EACCES || ret == -EOPNOTSUPP) {
		ret = fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK | FL_UFFD_USER_MODE_ONLY, &svc->uffd);
		svc->user_mode_only = !ret;
	}
	if (ret)
		return ret;
	return fl_uffd_api(svc->uffd, feat, NULL, NULL);
}

int fl__watch_svc_start(struct fl__watch_svc *svc)
{
	int ret;

	if (svc->thread_started)
		return 0;
	ret = svc->stop_fd >= 0 ? 0 : fl__eventfd(&svc->stop_fd);
	if (!ret) {
		ret = -pthread_create(&svc->thread, NULL, svc_thread, svc);
		svc->thread_started = !ret;
	}
	return ret;
}

void fl__watch_svc_stop(struct fl__watch_svc *svc)
{
	if (svc->thread_started) {
		fl__eventfd_signal(svc->stop_fd);
		pthread_join(svc->thread, NULL);
		svc->thread_started = false;
	}
}

void fl__watch_svc_close(struct fl__watch_svc *svc)
{
	fl__watch_svc_stop(svc);
	if (svc->uffd >= 0)
		fl__close(svc->uffd);
	if (svc->stop_fd >= 0)
		fl__close(svc->stop_fd);
	if (svc->pagemap_fd >= 0)
		fl__close(svc->pagemap_fd);
	svc->uffd = svc->stop_fd = svc->pagemap_fd = -1;
}

/* Register the watch's range on its svc's uffd and protect it all. */
int fl__watch_register(struct fl_watch *w)
{
	uint64_t modes = FL_REG_WP;
	int ret;

	if (w->mem != FL_MEM_ANON && !fl_feature_has(FL_FEATURE_WP_HUGETLBFS_SHMEM))
		return -EOPNOTSUPP;
	/* Without WP_UNPOPULATED, catch never-populated anon pages through
	 * MISSING faults (SYNC; ASYNC requires WP_UNPOPULATED). */
	if (w->backend == FL_WATCH_SYNC && w->mem == FL_MEM_ANON && !fl_feature_has(FL_FEATURE_WP_UNPOPULATED))
		modes |= FL_REG_MISSING;
	if (modes & FL_REG_MISSING) {
		w->zero_buf = calloc(1, w->gran);
		if (!w->zero_buf)
			return -ENOMEM;
	}
	ret = fl_uffd_register(w->svc->uffd, (void *)(uintptr_t)w->start, w->len, (unsigned)modes, NULL);
	if (ret == -EINVAL && w->mem != FL_MEM_ANON)
		ret = -EOPNOTSUPP;
	if (ret == -EPERM)
		ret = -EINVAL;	/* no VM_MAYWRITE: checked before, but raced */
	if (ret)
		return ret;
	w->registered = true;
	w->missing_reg = modes & FL_REG_MISSING;
	/* A new watch starts clean: protect everything (unpopulated ptes get
	 * markers with WP_UNPOPULATED; nothing is faulted in). */
	return protect(w, w->start, w->len, true);
}

static void single_each(void *ctx, uint64_t start, uint64_t end, void (*fn)(struct fl_watch *w, void *arg), void *arg)
{
	struct fl_watch *w = ctx;

	if (start < w->start + w->len && w->start < end)
		fn(w, arg);
}

enum fl_watch_backend fl__watch_pick_backend(enum fl_watch_backend b)
{
	if (b != FL_WATCH_AUTO)
		return b;
	return async_usable() ? FL_WATCH_ASYNC : fl_feature_has(FL_FEATURE_WP) ? FL_WATCH_SYNC : FL_WATCH_MPROTECT;
}

int fl__watch_svc_features(enum fl_watch_backend backend, uint64_t *ret_feat)
{
	return svc_features(backend, -1, ret_feat);
}

static struct fl_watch *watch_alloc(uint64_t start, uint64_t len, const struct fl__watch_desc *d)
{
	struct fl_watch *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->mp_slot = -1;
	w->start = start;
	w->len = len;
	w->backend = d->backend;
	w->mem = d->mem;
	w->shared = d->shared;
	w->gran = d->gran;
	w->ngran = len / d->gran;
	w->log = d->log;
	w->svc = d->svc;
	pthread_mutex_init(&w->lock, NULL);
	pthread_rwlock_init(&w->hook_lock, NULL);
	if (w->backend != FL_WATCH_ASYNC || w->mem != FL_MEM_ANON) {
		w->dirty = calloc((w->ngran + 63) / 64, sizeof(uint64_t));
		w->dirty_sum = calloc((w->ngran + 4095) / 4096, sizeof(uint64_t));
		if (!w->dirty || !w->dirty_sum) {
			fl__watch_release(w);
			return NULL;
		}
	}
	if (w->backend == FL_WATCH_MPROTECT) {
		w->app_prot = calloc(w->ngran, sizeof(*w->app_prot));
		if (!w->app_prot) {
			fl__watch_release(w);
			return NULL;
		}
	}
	return w;
}

int fl__watch_create(uint64_t start, uint64_t len, const struct fl__watch_desc *d, struct fl_watch **ret_watch)
{
	struct fl_watch *w = watch_alloc(start, len, d);
	int ret = 0;

	if (!w)
		return -ENOMEM;
	if (w->mem == FL_MEM_ANON && !d->allow_thp)
		fl__madvise((void *)(uintptr_t)start, len, MADV_NOHUGEPAGE);
	switch (w->backend) {
	case FL_WATCH_ASYNC:
	case FL_WATCH_SYNC:
		if (!w->svc) {
			uint64_t feat;
			w->svc = &w->own_svc;
			w->svc->each = single_each;
			w->svc->each_ctx = w;
			ret = svc_features(w->backend, (int)w->mem, &feat);
			if (!ret)
				ret = fl__watch_svc_init(w->svc, w->backend, feat);
		}
		if (!ret)
			ret = fl__watch_register(w);
		/* A manager's uffd takes REMOVE events for every kind of
		 * memory: its thread must run whatever is added. */
		if (!ret && (w->backend == FL_WATCH_SYNC || w->mem != FL_MEM_ANON || d->svc))
			ret = fl__watch_svc_start(w->svc);
		break;
	default: {
		enum fl_mem_type mem;
		size_t psz;
		if (d->prot >= 0)
			fl__watch_mp_init_prot(w, start, start + len, d->prot);
		else
			ret = fl__range_scan(start, len, &mem, &psz, NULL, NULL, fl__watch_mp_init_prot, w);
		if (!ret)
			ret = fl__watch_mp_start(w);
		break;
	}
	}
	if (ret) {
		fl_watch_free(w);
		return ret;
	}
	*ret_watch = w;
	return 0;
}

/* A piece [start, start + len) of w, sharing its svc and registration,
 * with its state (written, discarded, protections) copied. */
struct fl_watch *fl__watch_piece(struct fl_watch *w, uint64_t start, uint64_t len)
{
	struct fl__watch_desc d = { .backend = w->backend, .mem = w->mem, .shared = w->shared, .gran = w->gran,
				    .log = w->log, .svc = w->svc };
	struct fl_watch *p = watch_alloc(start, len, &d);
	uint64_t off = (start - w->start) / w->gran;

	if (!p)
		return NULL;
	p->registered = w->registered;
	p->missing_reg = w->missing_reg;
	if (w->zero_buf) {
		p->zero_buf = calloc(1, w->gran);
		if (!p->zero_buf) {
			p->registered = false;
			fl__watch_release(p);
			return NULL;
		}
	}
	for (uint64_t g = 0; w->dirty && g < p->ngran; g++)
		if (bit_test(w->dirty, off + g))
			fl__watch_mark(p, g);
	for (uint64_t g = 0; w->app_prot && g < p->ngran; g++)
		atomic_store(&p->app_prot[g], atomic_load(&w->app_prot[off + g]));
	return p;
}

int fl_watch_new(void *addr, size_t len, const struct fl_watch_opts *opts, struct fl_watch **ret_watch)
{
	struct fl_watch_opts o;
	struct fl__watch_desc d = { .prot = -1 };
	uint64_t start = (uintptr_t)addr;
	bool maywrite;
	int ret;

	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	if (!addr || !len || !ret_watch || o.backend > FL_WATCH_MPROTECT || (o.flags & ~FL_WATCH_ALLOW_THP))
		return -EINVAL;
	/* Any protection, PROT_NONE included (reserved memory committed
	 * later by mprotect): what matters is that it could be written. */
	ret = fl__range_scan(start, len, &d.mem, &d.gran, &d.shared, &maywrite, NULL, NULL);
	if (ret)
		return ret;
	if (start % d.gran || len % d.gran || !maywrite)
		return -EINVAL;
	/* Another MPROTECT watch has made the range read-only: it is busy,
	 * whichever backend asks. */
	ret = fl__watch_mp_overlaps(start, len);
	if (ret)
		return ret;
	d.backend = fl__watch_pick_backend(o.backend);
	d.allow_thp = o.flags & FL_WATCH_ALLOW_THP;
	d.log = (struct fl__logger){ .fn = o.log, .ctx = o.log_ctx, .level = FL_LOG_DEBUG };
	return fl__watch_create(start, len, &d, ret_watch);
}

int fl_watch_get(struct fl_watch *w, void *addr, size_t len, unsigned flags, void **pages, uint64_t *count,
		 size_t *ret_granularity)
{
	uint64_t first, n;
	int ret;

	/* A zero count is an error, as GetWriteWatch's is. */
	if (!w || !pages || !count || !*count || (flags & ~FL_WATCH_RESET))
		return -EINVAL;
	ret = check_sub(w, addr, len, &first, &n);
	if (ret)
		return ret;
	if (ret_granularity)
		*ret_granularity = w->gran;
	if (w->backend == FL_WATCH_ASYNC) {
		sync_settle(w);
		pthread_mutex_lock(&w->lock);
		ret = async_get(w, (uintptr_t)addr, len, flags & FL_WATCH_RESET, pages, count);
		pthread_mutex_unlock(&w->lock);
		return ret;
	}
	if (w->backend == FL_WATCH_MPROTECT)
		return fl__watch_mp_get(w, first, n, flags & FL_WATCH_RESET, pages, count, bitmap_get);
	sync_settle(w);
	pthread_mutex_lock(&w->lock);
	ret = bitmap_get(w, first, n, flags & FL_WATCH_RESET, pages, count);
	pthread_mutex_unlock(&w->lock);
	return ret;
}

int fl_watch_reset(struct fl_watch *w, void *addr, size_t len)
{
	uint64_t first, n;
	int ret;

	if (!w)
		return -EINVAL;
	ret = check_sub(w, addr, len, &first, &n);
	if (ret)
		return ret;
	if (w->backend == FL_WATCH_MPROTECT)
		return fl__watch_mp_reset(w, first, n, bitmap_reset);
	sync_settle(w);
	pthread_mutex_lock(&w->lock);
	ret = w->backend == FL_WATCH_ASYNC ? async_reset(w, (uintptr_t)addr, len) : bitmap_reset(w, first, n);
	pthread_mutex_unlock(&w->lock);
	return ret;
}

enum fl_watch_backend fl_watch_backend(const struct fl_watch *w)
{
	return w ? w->backend : FL_WATCH_AUTO;
}

size_t fl_watch_granularity(const struct fl_watch *w)
{
	return w ? w->gran : 0;
}

/* Stop watching w's range; its svc stays (a manager's is shared). */
void fl__watch_release(struct fl_watch *w)
{
	if (w->backend == FL_WATCH_MPROTECT)
		fl__watch_mp_stop(w);
	if (w->registered) {
		/* Unregistering drops the protection; wake whoever waits on
		 * a SYNC fault there, to retry on plain memory (ASYNC faults
		 * never wait: no wake, one system call less per remove). */
		fl_uffd_unregister(w->svc->uffd, (void *)(uintptr_t)w->start, w->len);
		if (w->backend == FL_WATCH_SYNC)
			fl_uffd_wake(w->svc->uffd, (void *)(uintptr_t)w->start, w->len);
		w->registered = false;
	}
	pthread_rwlock_destroy(&w->hook_lock);
	pthread_mutex_destroy(&w->lock);
	free(w->zero_buf);
	free((void *)w->dirty);
	free((void *)w->dirty_sum);
	free((void *)w->app_prot);
	free(w);
}

struct fl_watch *fl_watch_free(struct fl_watch *w)
{
	if (!w)
		return NULL;
	/* The thread first: it may be inside this watch's handlers. */
	if (w->svc == &w->own_svc)
		fl__watch_svc_stop(w->svc);
	if (w->svc == &w->own_svc) {
		struct fl__watch_svc svc = w->own_svc;
		fl__watch_release(w);
		fl__watch_svc_close(&svc);
	} else {
		fl__watch_release(w);
	}
	return NULL;
}

int fl_watch_protect(struct fl_watch *w, void *addr, size_t len, int prot)
{
	uint64_t first, n;
	int ret;

	if (!w || (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
		return -EINVAL;
	ret = check_sub(w, addr, len, &first, &n);
	if (ret)
		return ret;
	if (w->backend == FL_WATCH_MPROTECT)
		return fl__watch_mp_set_prot(w, first, n, prot);
	/* userfaultfd's write-protect bits live in the ptes (or markers) and
	 * survive mprotect(2): the watch's state and the application's
	 * protection are independent. */
	return fl__mprotect(addr, len, prot);
}

/*
 * Is [start, end) writable by the application's own protection? MPROTECT
 * keeps it per granule (the ptes hold the watch's); the userfaultfd
 * backends leave it in the VMAs: PROCMAP_QUERY where there is one, else a
 * read of /proc/self/maps.
 */
static bool app_writable(const struct fl_watch *w, int maps_fd, uint64_t start, uint64_t end)
{
	uint64_t cur = start;
	int fd = maps_fd, ret = 0;

	if (w->backend == FL_WATCH_MPROTECT) {
		for (uint64_t g = (start - w->start) / w->gran; g * w->gran + w->start < end; g++)
			if (!(atomic_load(&w->app_prot[g]) & PROT_WRITE))
				return false;
		return true;
	}
	if (fd < 0 && fl__open("/proc/self/maps", O_RDONLY | O_CLOEXEC, &fd))
		fd = -1;
	while (fd >= 0 && cur < end) {
		struct fl__vma v;
		ret = fl__vma_query(fd, cur, &v);
		if (ret)
			break;
		if (v.start > cur || !(v.prot & PROT_WRITE))
			break;
		cur = v.end;
	}
	if (fd >= 0 && fd != maps_fd)
		fl__close(fd);
	if (fd < 0 || ret == -EOPNOTSUPP)
		return fl__range_has_prot(start, end - start, PROT_WRITE);
	return cur >= end;
}

int fl__watch_writable(const struct fl_watch *w, int maps_fd, uint64_t start, uint64_t end)
{
	return app_writable(w, maps_fd, start, end) ? 0 : -EACCES;
}

void fl__watch_touch(uint64_t start, uint64_t end, size_t gran)
{
	/* A write of the process's own to each granule, changing nothing
	 * (an atomic OR of 0: a concurrent store is not undone): the fault
	 * it takes is the one any first write takes, served, counted and
	 * unprotected by the watch. Afterwards the kernel's own write finds
	 * the pages present and writable. */
	for (uint64_t a = start; a < end; a += gran)
		(void)__atomic_fetch_or((volatile uint8_t *)(uintptr_t)a, 0, __ATOMIC_RELAXED);
}

int fl_watch_prepare_write(struct fl_watch *w, void *addr, size_t len)
{
	uint64_t a = (uintptr_t)addr;
	int ret;

	if (!w || !len || a < w->start || a + len < a || a + len > w->start + w->len)
		return -EINVAL;
	a -= (a - w->start) % w->gran;
	ret = fl__watch_writable(w, -1, a, (uintptr_t)addr + len);
	if (!ret)
		fl__watch_touch(a, (uintptr_t)addr + len, w->gran);
	return ret;
}

int fl_watch_query(const struct fl_watch *w, struct fl_watch_info *info)
{
	struct fl_watch_info i = { .sz = sizeof(i) };
	int ret = fl__opts_out_check(info);

	if (!w)
		return -EINVAL;
	if (ret)
		return ret;
	if (w->svc && w->svc->user_mode_only)
		i.flags |= FL_WATCH_INFO_USER_MODE_ONLY;
	switch (w->backend) {
	case FL_WATCH_ASYNC:
		/* The kernel resolves WP_ASYNC faults itself, for any
		 * accessor: no userfault is raised, user-mode-only or not. */
		i.kernel_writes = FL_WATCH_COUNTED;
		i.remote_writes = FL_WATCH_COUNTED;
		break;
	case FL_WATCH_SYNC:
		/* A user-mode-only uffd does not see the kernel's faults, and
		 * remote GUP never retries a userfault: both fail. */
		i.kernel_writes = w->svc && w->svc->user_mode_only ? FL_WATCH_FAILS : FL_WATCH_COUNTED;
		i.remote_writes = FL_WATCH_FAILS;
		break;
	default:
		/* A read-only pte: the kernel's own copy fails (EFAULT), and
		 * so does a forced write into a shared mapping; a forced write
		 * (FOLL_FORCE) into a private one breaks COW without a fault. */
		i.kernel_writes = FL_WATCH_FAILS;
		i.remote_writes = w->shared ? FL_WATCH_FAILS : FL_WATCH_NOT_SEEN;
		break;
	}
	return FL_OPTS_OUT(info, i);
}

int fl__watch_span_get(struct fl_watch *first, uint64_t start, uint64_t len, bool reset, void **pages,
		       uint64_t *count)
{
	sync_settle(first);
	return async_get(first, start, len, reset, pages, count);
}

int fl__watch_span_reset(struct fl_watch *first, uint64_t start, uint64_t len)
{
	sync_settle(first);
	return async_reset(first, start, len);
}
