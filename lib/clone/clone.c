// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Templates, copy-on-write clones and resets (see clone.h). A clone is a
 * MINOR-mode region over the template's memfd mapped MAP_PRIVATE: the
 * region code already fills the page cache through a shared alias and maps
 * it with CONTINUE; here are the template object, the clone constructor and
 * the two resets.
 */
#include "kernel.h"
#include "region-internal.h"
#include "clone-internal.h"

#include <faultline/clone.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

struct fl_template {
	int memfd;
	enum fl_mem_type mem;
	size_t length;
	struct fl_store *store;
	uint64_t store_offset;
	char name[64];
	struct fl__pcache *pc;		/* which pages our fills put in memfd */
};

int fl_template_new(const struct fl_template_opts *opts, struct fl_template **ret_template)
{
	struct fl_template_opts o;
	struct fl_template *t;
	size_t psz;
	int ret;

	if (!opts || !ret_template)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	if (!o.store || o.mem > FL_MEM_HUGETLB || (o.flags & ~FL_TEMPLATE_MEMFD))
		return -EINVAL;
	if (o.mem == FL_MEM_ANON)
		o.mem = FL_MEM_SHMEM;
	psz = o.mem == FL_MEM_HUGETLB ? FL_HPAGE_SIZE : FL_PAGE_SIZE;
	if (!o.length)
		o.length = fl_store_size(o.store) > o.store_offset ? fl_store_size(o.store) - o.store_offset : 0;
	if (!o.length)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->memfd = -1;
	t->mem = o.mem;
	t->length = (o.length + psz - 1) / psz * psz;
	t->store = fl_store_ref(o.store);
	t->store_offset = o.store_offset;
	snprintf(t->name, sizeof(t->name), "%s", o.name ? o.name : "template");
	if (o.flags & FL_TEMPLATE_MEMFD) {
		uint64_t size;
		ret = fl__fstat_size(o.memfd, &size);
		if (!ret && size != t->length)
			ret = -EINVAL;	/* not this template's page cache */
		if (!ret)
			ret = fl__dup_cloexec(o.memfd, &t->memfd);
	} else {
		ret = fl__memfd(t->name, o.mem == FL_MEM_HUGETLB ? MFD_HUGETLB : 0, t->length, &t->memfd);
	}
	t->pc = ret ? NULL : fl__pcache_new(t->length / psz);
	if (!ret && !t->pc)
		ret = -ENOMEM;
	/* A page cache brought by the caller holds what they put there:
	 * every page present counts as filled. */
	if (!ret && (o.flags & FL_TEMPLATE_MEMFD))
		ret = fl__pcache_adopt(t->pc, t->memfd, psz);
	if (ret) {
		fl_template_free(t);
		return ret;
	}
	*ret_template = t;
	return 0;
}

int fl_template_fd(const struct fl_template *t)
{
	return t ? t->memfd : -EINVAL;
}

size_t fl_template_length(const struct fl_template *t)
{
	return t ? t->length : 0;
}

struct fl_template *fl_template_free(struct fl_template *t)
{
	if (!t)
		return NULL;
	if (t->memfd >= 0)
		fl__close(t->memfd);
	fl_store_unref(t->store);
	fl__pcache_unref(t->pc);
	free(t);
	return NULL;
}

int fl_clone_new(struct fl_engine *e, const struct fl_template *t, const struct fl_clone_opts *opts,
		 struct fl_region **ret_clone)
{
	struct fl_clone_opts o;
	struct fl_region_opts ro = { .sz = sizeof(ro) };

	int ret = FL_OPTS_COPY(o, opts);

	if (ret)
		return ret;
	if (!e || !t || !ret_clone || (o.flags & ~(FL_REGION_NO_PREFETCH | FL_REGION_BACKGROUND)))
		return -EINVAL;
	ro.length = t->length;
	ro.mem = t->mem;
	ro.mode = FL_MODE_MINOR;
	ro.flags = o.flags | FL_REGION_PRIVATE | FL_REGION_MEMFD;
	ro.memfd = t->memfd;
	ro.store = t->store;
	ro.store_offset = t->store_offset;
	ro.prefetch_max = o.prefetch_max;
	ro.name = o.name ? o.name : t->name;
	/* Tracking writes where the kernel can (Linux 6.4+): resets then
	 * cost what was written; elsewhere they scan. */
	ret = fl__region_new_pc(e, &ro, true, t->pc, ret_clone);
	if (ret == -EOPNOTSUPP)
		ret = fl__region_new_pc(e, &ro, false, t->pc, ret_clone);
	return ret;
}

/* ---- tracking or scanning --------------------------------------------------- */

/*
 * Clones and reset points find the pages written since the last reset in
 * one of two ways, both exact, and choose at every reset the one that
 * costs less for what the program writes:
 *  tracking  every first write after a reset is a write-protect fault to
 *            a thread of ours, and a reset reads a bitmap: its cost
 *            follows the pages written, whatever the size of the memory;
 *  scanning  a first write costs only the kernel (copy-on-write, or the
 *            WP_ASYNC fault of a reset point's watch), and a reset walks
 *            every page-table entry (PAGEMAP_SCAN or /proc/self/pagemap):
 *            its cost follows the memory.
 * A tracked first write costs TRACK_EXTRA_NS more (machine.md: a
 * synchronous WP round trip is 19-58 us, an asynchronous first write 13
 * us), so tracking pays while (pages written per reset) x TRACK_EXTRA_NS
 * stays below the measured cost of a scan; the pages written per reset are
 * the mean of the last FL__TRACK_WINDOW resets, so a rare reset after many
 * writes weighs what it would cost tracked (a fuzzer's occasional large
 * input). A factor TRACK_HYSTERESIS either way, and TRACK_MIN_RESETS resets
 * in a mode before leaving it, keep a program near the line from flipping.
 * A switch happens inside a reset, after the copy back, when every page
 * equals its reference and (the caller's promise) nobody writes.
 */
#define TRACK_EXTRA_NS 20000.0
#define TRACK_HYSTERESIS 2.0
#define TRACK_MIN_RESETS 4

/* After a reset that found `dirty` pages: track from now on? `scan_ns`:
 * what its scan took (when scanning). */
static bool policy_track(struct fl__track_policy *pl, bool tracking, uint64_t dirty, uint64_t scan_ns)
{
	uint64_t sum = 0, n;
	double track_ns;

	pl->recent[pl->resets++ % FL__TRACK_WINDOW] = dirty;
	if (!tracking)
		pl->scan_ns = pl->scan_ns > 0 ? 0.75 * pl->scan_ns + 0.25 * (double)scan_ns : (double)scan_ns;
	if (++pl->in_mode < TRACK_MIN_RESETS || pl->scan_ns <= 0)
		return tracking;
	n = FL_MIN(pl->resets, (uint64_t)FL__TRACK_WINDOW);
	for (uint64_t i = 0; i < n; i++)
		sum += pl->recent[i];
	track_ns = (double)sum / (double)n * TRACK_EXTRA_NS;
	if (tracking ? track_ns <= pl->scan_ns * TRACK_HYSTERESIS : track_ns * TRACK_HYSTERESIS >= pl->scan_ns)
		return tracking;
	pl->in_mode = 0;
	return !tracking;
}

struct fl__pcache *fl__template_pcache(const struct fl_template *t)
{
	return t->pc;
}

struct fl_store *fl__template_store(const struct fl_template *t, uint64_t *ret_offset)
{
	*ret_offset = t->store_offset;
	return t->store;
}

int fl__template_with_memfd(const struct fl_template *t, int memfd, struct fl_template **ret_template)
{
	struct fl_template_opts o = {
		.sz = sizeof(o), .mem = t->mem, .store = t->store, .store_offset = t->store_offset,
		.length = t->length, .flags = FL_TEMPLATE_MEMFD, .memfd = memfd, .name = t->name,
	};

	return fl_template_new(&o, ret_template);
}

int fl__template_region_new(struct fl_engine *e, const struct fl_template *t, unsigned flags, void *addr,
			    const char *name, struct fl_region **ret_region)
{
	struct fl_region_opts ro = { .sz = sizeof(ro) };

	if (flags & ~FL_REGION_PRIVATE)
		return -EINVAL;
	ro.length = t->length;
	ro.mem = t->mem;
	ro.mode = FL_MODE_MINOR;
	ro.flags = flags | FL_REGION_MEMFD;
	ro.memfd = t->memfd;
	ro.addr = addr;
	ro.store = t->store;
	ro.store_offset = t->store_offset;
	ro.name = name ? name : t->name;
	return fl__region_new_pc(e, &ro, false, t->pc, ret_region);
}

/* ---- finding private copies ----------------------------------------------- */

typedef int (*run_fn)(uint64_t start, uint64_t end, void *ctx);

struct private_scan {
	run_fn fn;
	void *ctx;
};

static int private_region(const struct fl_page_region *pr, void *ctx)
{
	struct private_scan *ps = ctx;
	return ps->fn(pr->start, pr->end, ps->ctx);
}

/*
 * Call fn for every run of pages in [start, end) that are present (or
 * swapped out) and, with `private_only`, not file pages: in a private file
 * mapping, exactly the copies the kernel made on write. PAGEMAP_SCAN when
 * there is one, else /proc/self/pagemap (bit 63 present, 62 swapped, 61
 * file page or shared anonymous).
 */
static int scan_runs(uint64_t start, uint64_t end, bool private_only, run_fn fn, void *ctx)
{
	struct private_scan ps = { fn, ctx };
	uint64_t ent[512];
	int fd, ret;

	ret = fl_pagemap_open(0, &fd);
	if (ret)
		return ret;
	if (fl_feature_has(FL_FEATURE_PAGEMAP_SCAN)) {
		struct fl_scan_opts so = {
			.sz = sizeof(so),
			.start = start,
			.end = end,
			.category_inverted = private_only ? FL_PAGE_IS_FILE : 0,
			.category_mask = private_only ? FL_PAGE_IS_FILE | FL_PAGE_IS_PRESENT : 0,
			.category_anyof_mask = private_only ? 0 : FL_PAGE_IS_PRESENT | FL_PAGE_IS_SWAPPED,
			.return_mask = private_only ? FL_PAGE_IS_PRESENT : FL_PAGE_IS_PRESENT | FL_PAGE_IS_SWAPPED,
		};
		int64_t n = fl_pagemap_scan_all(fd, &so, private_region, &ps);
		fl__close(fd);
		return n < 0 ? (int)n : 0;
	}
	for (uint64_t a = start; a < end && !ret;) {
		uint64_t n = FL_MIN((end - a) / FL_PAGE_SIZE, (uint64_t)FL_ARRAY_SIZE(ent));
		ret = fl__pread_full(fd, ent, n * sizeof(ent[0]), a / FL_PAGE_SIZE * 8);
		for (uint64_t i = 0; i < n && !ret;) {
			uint64_t j = i;
			while (j < n && (private_only ? (ent[j] >> 63) && !((ent[j] >> 61) & 1) : (ent[j] >> 62) != 0))
				j++;
			if (j > i) {
				ret = fn(a + i * FL_PAGE_SIZE, a + j * FL_PAGE_SIZE, ctx);
				i = j;
			} else {
				i++;
			}
		}
		a += n * FL_PAGE_SIZE;
	}
	fl__close(fd);
	return ret;
}

/* Dirty runs closer than this many pages are reset as one span: unmapping
 * and re-mapping a few clean pages costs less than two more syscalls. */
#define MERGE_GAP 16

/* A span to reset, and how many private copies (4 KiB pages) it holds: a
 * span also covers the clean pages between merged runs. */
struct run {
	uint64_t start, len;		/* bytes */
	uint64_t dirty;			/* pages */
};

struct run_list {
	struct run *v;
	size_t n, cap;
	uint64_t gap;			/* bytes */
	struct fl_reset_stats *st;
	size_t psz;
};

static int run_push(struct run_list *l, struct run run)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct run *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = run;
	return 0;
}

static int collect_run(uint64_t start, uint64_t end, void *ctx)
{
	struct run_list *l = ctx;
	/* hugetlb: whole huge pages (a private copy is one). */
	uint64_t s = start / l->psz * l->psz, e = (end + l->psz - 1) / l->psz * l->psz;

	l->st->pages_dirty += (end - start) / FL_PAGE_SIZE;
	if (l->n && s <= l->v[l->n - 1].start + l->v[l->n - 1].len + l->gap) {
		struct run *last = &l->v[l->n - 1];
		if (e > last->start + last->len)
			last->len = e - last->start;
		last->dirty += (end - start) / FL_PAGE_SIZE;
		return 0;
	}
	return run_push(l, (struct run){ s, e - s, (end - start) / FL_PAGE_SIZE });
}

/*
 * Map region pages [p, end) again from the page cache after their copies
 * were dropped (mode: 0, or FL_MODE_WP for a tracking clone); pages not in
 * the page cache fault later.
 */
static void remap(struct fl_region *r, int uffd, uint64_t p, uint64_t end, unsigned mode)
{
	while (p < end) {
		uint64_t q = p;
		size_t done = 0;
		while (q < end && fl__bit_test(r->cached, q))
			q++;
		if (q > p) {
			fl_uffd_continue(uffd, r->addr + p * r->page_size, (q - p) * r->page_size, mode, &done);
			done /= r->page_size;
		}
		/* Not mapped again: the engine must not think it is. */
		fl__region_discard(r, p + done, (q > p ? q : q + 1) - p - done);
		p = q > p ? q : q + 1;
	}
}

/*
 * Drop the private copies of `runs` and map the template's pages there
 * again. The range is unregistered meanwhile: MADV_DONTNEED on a range
 * registered with a uffd that asks for REMOVE events waits until the engine
 * has read one, a round trip per run. Unregistered, nothing can be served,
 * which is why no thread may touch a clone during its reset. The pages are
 * then mapped again with CONTINUE (read-only: the next write is an ordinary
 * copy-on-write in the kernel, with no fault to userspace).
 */
static int reset_runs(struct fl_region *r, const struct run_list *l, struct fl_reset_stats *st)
{
	int uffd = fl__region_space(r)->uffd, ret, first_err = 0;
	uint64_t base = (uintptr_t)r->addr;

	ret = fl_uffd_unregister(uffd, r->addr, r->length);
	if (ret)
		return ret;
	for (size_t i = 0; i < l->n; i++) {
		ret = fl__madvise((void *)(uintptr_t)l->v[i].start, l->v[i].len, MADV_DONTNEED);
		if (ret && !first_err)
			first_err = ret;
		if (!ret)
			st->pages_dropped += l->v[i].dirty;
	}
	ret = fl_uffd_register(uffd, r->addr, r->length, FL_REG_MISSING | FL_REG_MINOR, NULL);
	if (ret) {
		/* Unregistered, a clone would read zeros into the template where
		 * the page cache is not filled yet: make it inaccessible. */
		fl__log(&r->engine->log, FL_LOG_ERROR,
			"%s: cannot register the clone again after a reset (%s): making it inaccessible",
			r->name, strerror(-ret));
		mprotect(r->addr, r->length, PROT_NONE);
		return ret;
	}
	for (size_t i = 0; i < l->n; i++) {
		uint64_t p = (l->v[i].start - base) / r->page_size;
		uint64_t end = p + l->v[i].len / r->page_size;

		st->runs++;
		remap(r, uffd, p, end, 0);
	}
	return first_err;
}

/*
 * A tracking clone: the written pages are in its bitmap, and only their
 * spans are unregistered while their copies are dropped. (Unregistering the
 * whole clone would also clear the write protection of every page it has
 * mapped, and its next writes would go unseen.) Each span is registered
 * again, and its template pages mapped again write-protected.
 */
static int reset_tracked(struct fl_region *r, struct run_list *l, struct fl_reset_stats *st)
{
	int uffd = fl__region_space(r)->uffd, ret = 0;
	uint64_t base = (uintptr_t)r->addr;

	for (uint64_t p = fl__sbit_next(r->written, r->written_sum, 0, r->npages); p < r->npages && !ret;) {
		uint64_t q = p;

		while (q < r->npages && fl__bit_test(r->written, q))
			q++;
		ret = collect_run(base + p * r->page_size, base + q * r->page_size, l);
		p = fl__sbit_next(r->written, r->written_sum, q, r->npages);
	}
	for (size_t i = 0; i < l->n && !ret; i++) {
		struct run *run = &l->v[i];
		uint64_t p = (run->start - base) / r->page_size, end = p + run->len / r->page_size;
		void *a = (void *)(uintptr_t)run->start;

		ret = fl_uffd_unregister(uffd, a, run->len);
		if (!ret && !(ret = fl__madvise(a, run->len, MADV_DONTNEED)))
			st->pages_dropped += run->dirty;
		{
			int r2 = fl_uffd_register(uffd, a, run->len, FL_REG_MISSING | FL_REG_MINOR | FL_REG_WP, NULL);
			if (r2) {
				/* Unregistered, the span would read zeros where the
				 * template's page cache is not filled yet. */
				fl__log(&r->engine->log, FL_LOG_ERROR,
					"%s: cannot register a span again after a reset (%s): making the clone "
					"inaccessible", r->name, strerror(-r2));
				mprotect(r->addr, r->length, PROT_NONE);
				return r2;
			}
		}
		st->runs++;
		for (uint64_t k = p; k < end; k++)
			fl__bit_clear(r->written, k);
		remap(r, uffd, p, end, FL_MODE_WP);
	}
	return ret;
}

/*
 * The scan reads every page-table entry of the clone and, to tell a private
 * copy from a file page, each mapped page's struct page: memory-bound, about
 * 30 ns a page here. Big clones are scanned in slices by up to 4 threads.
 */
#define SLICE_MIN (128ull << 20)
#define SLICES_MAX 4

struct slice {
	pthread_t tid;
	uint64_t start, end;
	struct run_list l;
	struct fl_reset_stats st;
	int ret;
};

static void *slice_main(void *arg)
{
	struct slice *sl = arg;
	sl->ret = scan_runs(sl->start, sl->end, true, collect_run, &sl->l);
	return NULL;
}

static int scan_dirty(struct fl_region *r, struct run_list *l)
{
	struct slice sl[SLICES_MAX];
	uint64_t start = (uintptr_t)r->addr, len = r->length, step;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = (unsigned)FL_MIN((uint64_t)FL_MIN(cpus > 0 ? cpus : 1, SLICES_MAX), len / SLICE_MIN);
	int ret = 0;

	if (n <= 1)
		return scan_runs(start, start + len, true, collect_run, l);
	step = (len / n + r->page_size - 1) / r->page_size * r->page_size;
	for (unsigned i = 0; i < n; i++) {
		sl[i] = (struct slice){ .start = start + i * step, .end = FL_MIN(start + (i + 1) * step, start + len) };
		sl[i].l = (struct run_list){ .gap = l->gap, .psz = l->psz, .st = &sl[i].st };
		/* Slice 0 runs here: n - 1 threads, and a fallback if one cannot start. */
		if (i && pthread_create(&sl[i].tid, NULL, slice_main, &sl[i]))
			sl[i].tid = 0;
	}
	slice_main(&sl[0]);
	for (unsigned i = 1; i < n; i++) {
		if (sl[i].tid)
			pthread_join(sl[i].tid, NULL);
		else
			slice_main(&sl[i]);
	}
	for (unsigned i = 0; i < n; i++) {
		if (sl[i].ret && !ret)
			ret = sl[i].ret;
		l->st->pages_dirty += sl[i].st.pages_dirty;
		for (size_t k = 0; k < sl[i].l.n && !ret; k++)
			ret = run_push(l, sl[i].l.v[k]);
		free(sl[i].l.v);
	}
	return ret;
}

/*
 * Turn tracking on or off, right after a reset: every private copy is gone
 * and the mapped pages are the template's. On: register the clone for WP
 * too, and write-protect what is mapped (CONTINUE maps the rest protected
 * from now on). Off: register it without WP; the protection left on pages
 * is then ignored by the kernel, and writes are plain copy-on-write again.
 * Not on while a background fill may still map pages unprotected.
 */
static int clone_track(struct fl_region *r, bool on)
{
	int uffd = fl__region_space(r)->uffd, ret;

	if (on && (r->flags & FL_REGION_BACKGROUND) && atomic_load(&r->fill_cursor) < r->npages)
		return 0;
	/*
	 * The order keeps every CONTINUE legal: one with MODE_WP on a range
	 * not registered for WP fails (EINVAL), which a fault would take for
	 * a page it cannot deliver. So WP is registered before the resolver
	 * may ask for it, and the resolver stops asking before it goes.
	 */
	if (on) {
		/* Nothing is written now; bits a fault set while tracking was
		 * being turned off are stale. */
		memset((void *)r->written, 0, (r->npages + 63) / 64 * sizeof(uint64_t));
		memset((void *)r->written_sum, 0, (r->npages + 4095) / 4096 * sizeof(uint64_t));
		ret = fl_uffd_register(uffd, r->addr, r->length, FL_REG_MISSING | FL_REG_MINOR | FL_REG_WP, NULL);
		if (!ret)
			atomic_store(&r->track, true);
		/* After the flag: what was mapped unprotected before it is
		 * protected now, and CONTINUE protects the rest. */
		if (!ret)
			ret = fl_uffd_writeprotect(uffd, r->addr, r->length, FL_WP_PROTECT);
	} else {
		atomic_store(&r->track, false);
		ret = fl_uffd_register(uffd, r->addr, r->length, FL_REG_MISSING | FL_REG_MINOR, NULL);
	}
	if (ret) {
		/* Still registered for MISSING and MINOR at least: scanning
		 * is always right. */
		fl__log(&r->engine->log, FL_LOG_WARN, "%s: cannot turn write tracking %s (%s): resets scan",
			r->name, on ? "on" : "off", strerror(-ret));
		atomic_store(&r->track, false);
		fl_uffd_register(uffd, r->addr, r->length, FL_REG_MISSING | FL_REG_MINOR, NULL);
		r->can_track = false;
	}
	return 0;
}

int fl_clone_reset(struct fl_region *r, struct fl_reset_stats *stats)
{
	struct fl_reset_stats st = { .sz = sizeof(st) };
	struct run_list l = { .st = &st };
	uint64_t t0 = fl__now_ns(), scan_ns = 0;
	bool tracking;
	int ret;

	if (!r || r->mode != FL_MODE_MINOR || !(r->flags & FL_REGION_PRIVATE) || (r->flags & FL_REGION_FOREIGN))
		return -EINVAL;
	/* optional; a bad sz fails before anything is reset */
	if (stats && (ret = fl__opts_out_check(stats)))
		return ret;
	l.psz = r->page_size;
	l.gap = r->page_size == FL_PAGE_SIZE ? MERGE_GAP * FL_PAGE_SIZE : 0;
	tracking = atomic_load(&r->track);
	if (tracking) {
		ret = reset_tracked(r, &l, &st);
	} else {
		ret = scan_dirty(r, &l);
		if (!ret && l.n)
			ret = reset_runs(r, &l, &st);
		/* What scanning costs is the whole reset: the walk, and the
		 * clone unregistered and registered again around the drops. */
		scan_ns = fl__now_ns() - t0;
	}
	if (!ret && r->can_track &&
	    policy_track(&r->policy, tracking, st.pages_dirty / (r->page_size / FL_PAGE_SIZE), scan_ns) != tracking)
		ret = clone_track(r, !tracking);
	free(l.v);
	st.ns = fl__now_ns() - t0;
	if (stats)
		FL_OPTS_OUT(stats, st);	/* its sz was checked before the reset */
	return ret;
}

/* ---- reset points ---------------------------------------------------------- */

/*
 * A reset point tracks with a synchronous watch (FL_WATCH_SYNC) and scans
 * with the asynchronous one (FL_WATCH_ASYNC). Without WP_ASYNC (before
 * Linux 6.7) there is nothing to choose: the automatic backend is the
 * synchronous one, and the point stays on it.
 */
#define RP_BATCH 4096

struct fl_reset_point {
	uint8_t *addr;
	size_t len;
	uint8_t *saved;
	struct fl_watch *watch;
	size_t gran;
	void **pages;
	bool can_scan;			/* the asynchronous watch works here */
	struct fl__track_policy policy;
};

/*
 * Watch the range with backend b instead of the current watch (a range is
 * registered with one userfaultfd at a time: the old one goes first). If
 * b cannot start, the old backend again; an error only if neither can.
 */
static int rp_watch(struct fl_reset_point *p, enum fl_watch_backend b)
{
	struct fl_watch_opts wo = { .sz = sizeof(wo), .backend = b };
	enum fl_watch_backend old = p->watch ? fl_watch_backend(p->watch) : b;
	int ret;

	p->watch = fl_watch_free(p->watch);
	ret = fl_watch_new(p->addr, p->len, &wo, &p->watch);
	if (ret && old != b) {
		wo.backend = old;
		if (fl_watch_new(p->addr, p->len, &wo, &p->watch) == 0)
			ret = 0;
	}
	if (ret) {
		p->watch = NULL;
		return ret;
	}
	p->gran = fl_watch_granularity(p->watch);
	return 0;
}

/* The runs of pages a private anonymous range holds (see private_anon()). */
struct held {
	uint64_t (*v)[2];
	size_t n, cap;
};

static int held_run(uint64_t start, uint64_t end, void *ctx)
{
	struct held *h = ctx;

	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 64;
		uint64_t (*v)[2] = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	h->v[h->n][0] = start;
	h->v[h->n][1] = end;
	h->n++;
	return 0;
}

int fl_reset_point_new(void *addr, size_t len, struct fl_reset_point **ret_point)
{
	struct fl_reset_point *p;
	struct held held = { 0 };
	bool sparse;
	int ret;

	if (!addr || !len || !ret_point)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->addr = addr;
	p->len = len;
	p->pages = calloc(RP_BATCH, sizeof(void *));
	ret = p->pages ? fl__mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				  -1, 0, (void **)&p->saved) : -ENOMEM;
	/* Private anonymous memory: a page never touched (neither present
	 * nor swapped) reads zeros, which an untouched page of the saved copy
	 * also reads, so only present pages need copying and a sparse heap of
	 * gigabytes costs what it holds. (A private file mapping's absent
	 * pages read the file, and shared memory's the page cache.) Which
	 * pages it holds is read before the watch: an asynchronous watch
	 * marks every empty entry, and a marker reads as swapped. */
	sparse = !ret && fl__range_private_anon((uintptr_t)addr, len);
	if (sparse)
		ret = scan_runs((uintptr_t)addr, (uintptr_t)addr + len, false, held_run, &held);
	/* Start on the automatic backend: asynchronous where the kernel has
	 * it, and the first resets measure what a scan costs. */
	if (!ret)
		ret = rp_watch(p, FL_WATCH_AUTO);
	if (!ret) {
		p->can_scan = fl_watch_backend(p->watch) == FL_WATCH_ASYNC;
		/* Watch first, then copy: nothing written after the copy escapes. */
		if (sparse && fl_watch_backend(p->watch) != FL_WATCH_MPROTECT) {
			for (size_t i = 0; i < held.n; i++)
				memcpy(p->saved + (held.v[i][0] - (uintptr_t)addr), (uint8_t *)(uintptr_t)held.v[i][0],
				       held.v[i][1] - held.v[i][0]);
		} else {
			memcpy(p->saved, addr, len);
		}
		ret = fl_watch_reset(p->watch, addr, len);
	}
	free(held.v);
	if (ret) {
		fl_reset_point_free(p);
		return ret;
	}
	*ret_point = p;
	return 0;
}

/* After a reset: track or scan from now on (see policy_track()). */
static int rp_choose(struct fl_reset_point *p, uint64_t dirty, uint64_t get_ns)
{
	bool tracking = fl_watch_backend(p->watch) == FL_WATCH_SYNC;
	int ret;

	if (!p->can_scan || policy_track(&p->policy, tracking, dirty, get_ns) == tracking)
		return 0;
	/* Every page equals the saved bytes now: a new watch starts clean. */
	ret = rp_watch(p, tracking ? FL_WATCH_ASYNC : FL_WATCH_SYNC);
	if (!ret)
		ret = fl_watch_reset(p->watch, p->addr, p->len);
	return ret;
}

int fl_reset_point_reset(struct fl_reset_point *p, struct fl_reset_stats *stats)
{
	struct fl_reset_stats st = { .sz = sizeof(st) };
	uint64_t t0 = fl__now_ns(), get_ns = 0, n;
	int ret;

	if (!p)
		return -EINVAL;
	if (stats && (ret = fl__opts_out_check(stats)))
		return ret;
	if (!p->watch)
		return -ENOTRECOVERABLE;	/* a switch could start no watch at all */
	do {
		/* Look, copy back, then re-arm exactly what was copied: our own
		 * copying is a write the watch must not keep. */
		uint64_t g0 = fl__now_ns();

		n = RP_BATCH;
		ret = fl_watch_get(p->watch, p->addr, p->len, 0, p->pages, &n, NULL);
		get_ns += fl__now_ns() - g0;
		for (uint64_t i = 0; i < n && !ret;) {
			uint64_t j = i + 1;
			uint8_t *a = p->pages[i];
			while (j < n && (uint8_t *)p->pages[j] == a + (j - i) * p->gran)
				j++;
			memcpy(a, p->saved + (a - p->addr), (j - i) * p->gran);
			ret = fl_watch_reset(p->watch, a, (j - i) * p->gran);
			st.pages_dirty += (j - i) * (p->gran / FL_PAGE_SIZE);
			st.pages_copied += (j - i) * (p->gran / FL_PAGE_SIZE);
			st.runs++;
			i = j;
		}
	} while (!ret && n == RP_BATCH);
	if (!ret)
		ret = rp_choose(p, st.pages_dirty, get_ns);
	st.ns = fl__now_ns() - t0;
	if (stats)
		FL_OPTS_OUT(stats, st);	/* its sz was checked before the reset */
	return ret;
}

enum fl_watch_backend fl_reset_point_backend(const struct fl_reset_point *p)
{
	return p && p->watch ? fl_watch_backend(p->watch) : FL_WATCH_AUTO;
}

struct fl_reset_point *fl_reset_point_free(struct fl_reset_point *p)
{
	if (!p)
		return NULL;
	fl_watch_free(p->watch);
	if (p->saved)
		fl__munmap(p->saved, p->len);
	free(p->pages);
	free(p);
	return NULL;
}
