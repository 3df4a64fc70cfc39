// SPDX-License-Identifier: LGPL-2.1-or-later
/* Lazy regions: mapping, registration, page state, statistics, hooks. */
#include "region-internal.h"
#include "store-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

static const struct fl__target_ops region_ops;
static void region_destroy(struct fl_region *r);

static _Atomic uint64_t *bitmap_new(size_t bits)
{
	return fl__forksafe_calloc((bits + 63) / 64 + 1, sizeof(uint64_t));
}

static int map_alias(struct fl_region *r, struct fl_engine *e)
{
	void *p;
	int ret;

	/* The alias is where we fill the page cache: UFFDIO_COPY into a
	 * MISSING-registered shared mapping inserts a complete page
	 * atomically, so a concurrent MINOR fault never maps a half-written
	 * page. Nobody but us touches it. */
	ret = fl__mmap(NULL, r->length, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0, &p);
	if (ret)
		return ret;
	ret = fl_uffd_register(fl__engine_main_uffd(e), p, r->length, FL_REG_MISSING, &r->alias_ioctls);
	if (ret) {
		fl__munmap(p, r->length);
		return ret;
	}
	r->alias = p;
	return 0;
}

static int alloc_state(struct fl_region *r)
{
	r->resolved = bitmap_new(r->npages);
	r->cached = bitmap_new(r->npages);
	r->discarded = bitmap_new(r->npages);
	r->poisoned = bitmap_new(r->npages);
	if (!r->resolved || !r->cached || !r->discarded || !r->poisoned)
		return -ENOMEM;
	return 0;
}

/* The bits live in shared anonymous memory: a process forked after the
 * page cache was made (an address space attached in each of several
 * forks) fills the same page cache, so it must share the record too. */
static size_t pcache_bytes(uint64_t npages)
{
	size_t b = ((npages + 63) / 64 + 1) * sizeof(uint64_t);

	return (b + FL_PAGE_SIZE - 1) / FL_PAGE_SIZE * FL_PAGE_SIZE;
}

struct fl__pcache *fl__pcache_new(uint64_t npages)
{
	struct fl__pcache *pc = fl__forksafe_calloc(1, sizeof(*pc));
	void *m;

	if (!pc)
		return NULL;
	atomic_init(&pc->refs, 1);
	pc->npages = npages;
	/* Both bitmaps in one mapping: filled, then filling. */
	if (fl__mmap(NULL, 2 * pcache_bytes(npages), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0,
		     &m)) {
		fl__forksafe_free(pc);
		return NULL;
	}
	pc->filled = m;
	pc->filling = (_Atomic uint64_t *)(void *)((uint8_t *)m + pcache_bytes(npages));
	return pc;
}

struct fl__pcache *fl__pcache_ref(struct fl__pcache *pc)
{
	if (pc)
		atomic_fetch_add(&pc->refs, 1);
	return pc;
}

void fl__pcache_unref(struct fl__pcache *pc)
{
	if (!pc || atomic_fetch_sub(&pc->refs, 1) != 1)
		return;
	fl__munmap((void *)pc->filled, 2 * pcache_bytes(pc->npages));
	fl__forksafe_free(pc);
}

/*
 * hugetlbfs answers SEEK_DATA with "all data". A MINOR-registered mapping
 * of our own tells: UFFDIO_CONTINUE maps a page the page cache has and
 * says EFAULT for a hole, allocating nothing. MAP_NORESERVE: the holes
 * need no huge page reserved. -errno when the kernel cannot (the caller
 * then counts every page).
 */
static int hugetlb_present(struct fl__pcache *pc, int memfd, size_t psz, uint64_t size)
{
	uint64_t npages = FL_MIN(size / psz, pc->npages);
	int uffd = -1, ret;
	void *m = NULL;

	ret = fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK | FL_UFFD_USER_MODE_ONLY, &uffd);
	if (!ret)
		ret = fl_uffd_api(uffd, UFFD_FEATURE_MINOR_HUGETLBFS, NULL, NULL);
	if (!ret)
		ret = fl__mmap(NULL, npages * psz, PROT_READ, MAP_SHARED | MAP_NORESERVE, memfd, 0, &m);
	if (!ret)
		ret = fl_uffd_register(uffd, m, npages * psz, FL_REG_MINOR, NULL);
	for (uint64_t p = 0; !ret && p < npages; p++) {
		int r = fl_uffd_continue(uffd, (uint8_t *)m + p * psz, psz, 0, NULL);
		if (!r || r == -EEXIST)
			fl__bit_set(pc->filled, p);
		else if (r != -EFAULT)
			ret = r;
	}
	if (m)
		fl__munmap(m, npages * psz);
	fl__close(uffd);
	return ret;
}

int fl__pcache_adopt(struct fl__pcache *pc, int memfd, size_t psz)
{
	uint64_t off = 0, end, size;
	int ret = fl__fstat_size(memfd, &size);

	if (!ret && psz == FL_HPAGE_SIZE && hugetlb_present(pc, memfd, psz, size)) {
		for (uint64_t p = 0; p < pc->npages; p++)
			fl__bit_set(pc->filled, p);
		return 0;
	}
	if (!ret && psz == FL_HPAGE_SIZE)
		return 0;
	while (!ret && off < size) {
		ret = fl__lseek(memfd, off, SEEK_DATA, &off);
		if (ret == -ENXIO)
			return 0;	/* no data past off */
		if (!ret)
			ret = fl__lseek(memfd, off, SEEK_HOLE, &end);
		for (uint64_t p = off / psz; !ret && p < (end + psz - 1) / psz && p < pc->npages; p++)
			fl__bit_set(pc->filled, p);
		off = end;
	}
	return ret;
}

int fl_region_new(struct fl_engine *e, const struct fl_region_opts *opts, struct fl_region **ret_region)
{
	return fl__region_new_pc(e, opts, false, NULL, ret_region);
}

int fl__region_new(struct fl_engine *e, const struct fl_region_opts *opts, bool track,
		   struct fl_region **ret_region)
{
	return fl__region_new_pc(e, opts, track, NULL, ret_region);
}

int fl__region_new_pc(struct fl_engine *e, const struct fl_region_opts *opts, bool track, struct fl__pcache *pc,
		      struct fl_region **ret_region)
{
	struct fl_region_opts o;
	struct fl_region *r;
	struct fl__space *sp;
	bool foreign;
	int ret;

	if (!e || !opts || !ret_region)
		return -EINVAL;
	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	foreign = o.flags & FL_REGION_FOREIGN;
	if (!o.length || o.mem > FL_MEM_HUGETLB || o.mode > FL_MODE_MINOR)
		return -EINVAL;
	if (o.mode == FL_MODE_MINOR && o.mem == FL_MEM_ANON)
		return -EINVAL;	/* MINOR needs a page cache: shmem or hugetlbfs */
	if ((o.flags & FL_REGION_PRIVATE) && o.mode != FL_MODE_MINOR)
		return -EINVAL;
	if (!(o.flags & FL_REGION_MEMFD))
		o.memfd = -1;
	else if (o.memfd < 0 || o.mem == FL_MEM_ANON)
		return -EINVAL;
	if (foreign && (!o.addr || o.space <= 0 || (o.mode == FL_MODE_MINOR && o.memfd < 0)))
		return -EINVAL;
	if (o.mode == FL_MODE_MINOR) {
		uint64_t need = o.mem == FL_MEM_HUGETLB ? UFFD_FEATURE_MINOR_HUGETLBFS : UFFD_FEATURE_MINOR_SHMEM;
		if (!(e->features & need))
			return -EOPNOTSUPP;
	} else if (o.mem == FL_MEM_SHMEM && !(e->features & UFFD_FEATURE_MISSING_SHMEM)) {
		return -EOPNOTSUPP;
	} else if (o.mem == FL_MEM_HUGETLB && !(e->features & UFFD_FEATURE_MISSING_HUGETLBFS)) {
		return -EOPNOTSUPP;
	}
	if (track && (o.mode != FL_MODE_MINOR || !(o.flags & FL_REGION_PRIVATE) || foreign))
		return -EINVAL;
	if (pc && (o.mode != FL_MODE_MINOR || o.memfd < 0))
		return -EINVAL;
	ret = fl__far_check(e, &o, track, pc);
	if (ret)
		return ret;
	if (track && (!fl_feature_has(FL_FEATURE_CONTINUE_MODE_WP) ||
		      !(e->features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) ||
		      !(e->features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)))
		return -EOPNOTSUPP;

	pthread_rwlock_rdlock(&e->lock);
	sp = fl__engine_space(e, foreign ? o.space : 0);
	pthread_rwlock_unlock(&e->lock);
	if (!sp)
		return -ENOENT;

	r = fl__forksafe_calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->engine = e;
	r->t.ops = &region_ops;
	r->t.space = sp;
	r->t.flags = (o.flags & FL_REGION_BACKGROUND) ? FL__TARGET_FILL : 0;
	pthread_mutex_init(&r->hooks_mu, NULL);
	r->mem = o.mem;
	r->mode = o.mode;
	r->flags = o.flags;
	r->memfd = -1;
	r->page_size = o.mem == FL_MEM_HUGETLB ? FL_HPAGE_SIZE : FL_PAGE_SIZE;
	r->length = (o.length + r->page_size - 1) / r->page_size * r->page_size;
	r->npages = r->length / r->page_size;
	snprintf(r->name, sizeof(r->name), "%s", o.name ? o.name : "region");
	r->prefetch_max = o.prefetch_max ? o.prefetch_max : 256;
	r->fill_batch = o.fill_batch ? o.fill_batch : 512;
	atomic_init(&r->window, 1);
	ret = -EINVAL;
	if (o.addr && ((uintptr_t)o.addr % r->page_size))
		goto fail;
	ret = alloc_state(r);
	if (!ret && track) {
		r->written = bitmap_new(r->npages);
		r->written_sum = bitmap_new((r->npages + 63) / 64);
		/* Scanning first: the first resets measure what a scan costs
		 * (clone.c turns tracking on when it pays). */
		r->can_track = true;
		if (!r->written || !r->written_sum)
			ret = -ENOMEM;
	}
	if (ret)
		goto fail;
	if (o.store) {
		r->store = fl_store_ref(o.store);
	} else {
		ret = fl_store_zero_new(r->length, &r->store);
		if (ret)
			goto fail;
	}
	r->store_offset = o.store_offset;
	if (pc && pc->npages < r->npages) {
		ret = -EINVAL;
		goto fail;
	}
	r->pc = fl__pcache_ref(pc);
	if (fl__far_wanted(&o)) {
		ret = fl__far_new(r, &o);
		if (ret)
			goto fail;
	}

	if (o.mem != FL_MEM_ANON) {
		if (o.memfd >= 0) {
			ret = fl__dup_cloexec(o.memfd, &r->memfd);
		} else if (!foreign) {
			ret = fl__memfd(r->name, o.mem == FL_MEM_HUGETLB ? MFD_HUGETLB : 0, r->length, &r->memfd);
			r->owned_memfd = true;
		}
		if (ret && r->memfd < 0)
			goto fail;
		ret = 0;
	}

	if (foreign) {
		r->addr = o.addr;
		r->ioctls = ~0ull;	/* the owner registered it; the kernel will tell us */
	} else {
		int flags, prot = PROT_READ | PROT_WRITE;
		void *p;
		if (o.mem == FL_MEM_ANON)
			flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
		else
			flags = (o.flags & FL_REGION_PRIVATE) ? MAP_PRIVATE : MAP_SHARED;
		if (o.addr)
			flags |= MAP_FIXED_NOREPLACE;
		ret = fl__mmap(o.addr, r->length, prot, flags, r->memfd, 0, &p);
		if (ret)
			goto fail;
		if (o.addr && p != o.addr) {
			fl__munmap(p, r->length);
			ret = -EEXIST;
			goto fail;
		}
		r->addr = p;
		r->mapped_here = true;
		r->t.flags |= FL__TARGET_LOCAL;
		if (o.mem == FL_MEM_ANON && (o.flags & FL_REGION_NO_THP))
			fl__madvise(p, r->length, MADV_NOHUGEPAGE);
		/* Far memory maps every page write-protected: a first write
		 * is a WP fault that marks it dirty (far.c). */
		ret = fl_uffd_register(sp->uffd, p, r->length,
				       (o.mode == FL_MODE_MINOR ? (FL_REG_MISSING | FL_REG_MINOR) : FL_REG_MISSING) |
					       (r->far ? FL_REG_WP : 0),
				       &r->ioctls);
		if (ret == -EINVAL && o.mem != FL_MEM_ANON)
			ret = -EOPNOTSUPP;
		if (ret)
			goto fail;
	}
	if (o.mode == FL_MODE_MINOR) {
		ret = map_alias(r, e);
		if (ret)
			goto fail;
	}
	ret = fl__engine_add_target(e, &r->t, (uintptr_t)r->addr, r->length);
	if (ret)
		goto fail;
	*ret_region = r;
	return 0;
fail:
	r->engine = NULL;
	region_destroy(r);
	return ret;
}

static struct fl__target *region_fork(struct fl__target *t, struct fl__space *sp)
{
	struct fl_region *src = (struct fl_region *)t;
	struct fl_region *r = fl__forksafe_calloc(1, sizeof(*r));
	size_t words = (src->npages + 63) / 64;

	if (!r)
		return NULL;
	r->engine = src->engine;
	r->t.ops = src->t.ops;
	r->t.space = sp;
	pthread_mutex_init(&r->hooks_mu, NULL);
	memcpy(r->name, src->name, sizeof(r->name));
	r->mem = src->mem;
	r->mode = src->mode;
	r->flags = (src->flags & ~FL_REGION_BACKGROUND) | FL_REGION_FOREIGN;
	r->addr = src->addr;
	r->length = src->length;
	r->page_size = src->page_size;
	r->npages = src->npages;
	r->memfd = -1;
	r->ioctls = src->ioctls;
	r->prefetch_max = src->prefetch_max;
	r->fill_batch = src->fill_batch;
	r->store = fl_store_ref(src->store);
	r->store_offset = src->store_offset;
	r->pc = fl__pcache_ref(src->pc);
	atomic_init(&r->window, 1);
	if (alloc_state(r))
		goto fail;
	/* The page cache is shared with the parent; pages discarded or
	 * poisoned before the fork stay so in the child. What was mapped in
	 * the parent is not a promise about the child: start unresolved. */
	for (size_t i = 0; i < words; i++) {
		r->cached[i] = atomic_load(&src->cached[i]);
		r->discarded[i] = atomic_load(&src->discarded[i]);
		r->poisoned[i] = atomic_load(&src->poisoned[i]);
	}
	if (src->memfd >= 0) {
		if (fl__dup_cloexec(src->memfd, &r->memfd))
			goto fail;
		if (src->mode == FL_MODE_MINOR && map_alias(r, src->engine))
			goto fail;
	}
	return &r->t;
fail:
	r->engine = NULL;
	region_destroy(r);
	return NULL;
}

static void region_destroy(struct fl_region *r)
{
	struct fl__region_hook *h, *next;

	if (!r)
		return;
	for (h = atomic_exchange(&r->hooks, NULL); h; h = next) {
		next = h->next;
		h->ops->free(h);
	}
	pthread_mutex_destroy(&r->hooks_mu);
	/* The evictor works on the mapping: it stops before it goes. */
	fl__far_free(r);
	if (r->alias) {
		if (r->engine)
			fl_uffd_unregister(fl__engine_main_uffd(r->engine), r->alias, r->length);
		fl__munmap(r->alias, r->length);
	}
	if (r->mapped_here) {
		if (r->engine)
			fl_uffd_unregister(fl__region_space(r)->uffd, r->addr, r->length);
		fl__munmap(r->addr, r->length);
	}
	fl__close(r->memfd);
	fl_store_unref(r->store);
	fl__pcache_unref(r->pc);
	fl__forksafe_free(r->resolved);
	fl__forksafe_free(r->cached);
	fl__forksafe_free(r->discarded);
	fl__forksafe_free(r->poisoned);
	fl__forksafe_free(r->written);
	fl__forksafe_free(r->written_sum);
	fl__forksafe_free(r);
}

/* Unregister and unmap exactly these ranges (what is left after REMAP/UNMAP). */
static void unmap_ranges(struct fl_region *r, const struct fl_range *ranges, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		void *p = (void *)(uintptr_t)ranges[i].start;
		fl_uffd_unregister(fl__region_space(r)->uffd, p, ranges[i].len);
		fl__munmap(p, ranges[i].len);
	}
	r->mapped_here = false;
}

struct fl_region *fl_region_free(struct fl_region *r)
{
	struct fl_range *ranges = NULL;
	size_t n;

	if (!r)
		return NULL;
	/* Hooks stop working on the region while it is still served; so
	 * does the evictor (its drops and write-backs need the handlers). */
	for (struct fl__region_hook *h = atomic_load(&r->hooks); h; h = h->next)
		if (h->ops->stop)
			h->ops->stop(h, r);
	fl__far_stop(r);
	if (r->engine) {
		/* After mremap/munmap by the application only the ranges still
		 * in the index are ours to unmap: the rest may be reused. */
		n = fl__engine_remove_target(r->engine, &r->t, &ranges);
		if (r->mapped_here)
			unmap_ranges(r, ranges, n);
		fl__forksafe_free(ranges);
	}
	region_destroy(r);
	return NULL;
}

void *fl_region_addr(const struct fl_region *r)
{
	return r ? r->addr : NULL;
}

size_t fl_region_length(const struct fl_region *r)
{
	return r ? r->length : 0;
}

size_t fl_region_page_size(const struct fl_region *r)
{
	return r ? r->page_size : 0;
}

int fl_region_memfd(const struct fl_region *r)
{
	return r ? r->memfd : -1;
}

uint64_t fl_region_resolved_pages(const struct fl_region *r)
{
	return r ? atomic_load(&r->resolved_count) : 0;
}

int fl_region_populate(struct fl_region *r, uint64_t offset, size_t len)
{
	if (r && r->far && r->engine)
		return fl__far_populate(r, offset, len);	/* within the resident limit */
	return fl__region_populate_raw(r, offset, len);
}

int fl__region_populate_raw(struct fl_region *r, uint64_t offset, size_t len)
{
	struct fl__worker w;
	uint64_t first, last;
	int ret = 0;

	if (!r || !r->engine || offset > r->length || len > r->length - offset)
		return -EINVAL;
	first = offset / r->page_size;
	last = (offset + len + r->page_size - 1) / r->page_size;
	ret = fl__worker_init(&w, (size_t)FL_MIN(last - first, 512) * r->page_size, 1);
	if (ret)
		return ret;
	for (uint64_t p = first; p < last;) {
		struct fl__resolve_req req = {
			.space = fl__region_space(r), .base = (uintptr_t)r->addr, .first = p,
			.count = FL_MIN(last - p, 512), .fault_page = p, .source = FL_SRC_POPULATE,
		};
		enum fl__resolve_verdict v;
		int rr;

		/* Deliver what can be, poison what cannot. */
		pthread_rwlock_rdlock(&r->engine->lock);
		rr = fl__resolve_or_poison(r, &req, &w);
		pthread_rwlock_unlock(&r->engine->lock);
		if (rr && !ret)
			ret = rr;
		/* No one to wake here, and the events are the handlers' to
		 * read: a batch that raced with one (EAGAIN) is not retried. */
		v = fl__resolve_classify(rr);
		if (v == FL__CLIENT_GONE || v == FL__LAYOUT_CHANGED)
			break;
		p += req.count;
	}
	fl__worker_fini(&w);
	return ret;
}

/* ---- the engine's view: a target ------------------------------------------ */

static void region_discard_bytes(struct fl__target *t, uint64_t off, uint64_t len)
{
	struct fl_region *r = (struct fl_region *)t;
	uint64_t first = off / r->page_size;
	uint64_t last = (off + len + r->page_size - 1) / r->page_size;

	fl__region_discard(r, first, last - first);
}

static void region_moved(struct fl__target *t, uint64_t addr)
{
	((struct fl_region *)t)->addr = (uint8_t *)(uintptr_t)addr;
}

static int region_populate_all(struct fl__target *t)
{
	struct fl_region *r = (struct fl_region *)t;

	return fl_region_populate(r, 0, r->length);
}

static void region_target_stats(const struct fl__target *t, struct fl__target_stats *st)
{
	const struct fl_region *r = (const struct fl_region *)t;

	st->faults += atomic_load(&r->faults_read) + atomic_load(&r->faults_write) +
		      atomic_load(&r->faults_minor) + atomic_load(&r->faults_wp);
	st->pages_resolved += atomic_load(&r->resolved_count);
	st->pages_poisoned += atomic_load(&r->pages_poisoned);
	st->bytes_read += atomic_load(&r->bytes_read);
	st->blocked_ns += atomic_load(&r->blocked_ns);
	fl__hist_merge(st->hist, &r->hist);
}

static void region_target_free(struct fl__target *t)
{
	fl_region_free((struct fl_region *)t);
}

static void region_target_destroy(struct fl__target *t)
{
	region_destroy((struct fl_region *)t);
}

static const struct fl__target_ops region_ops = {
	.fault = fl__region_fault,
	.discard = region_discard_bytes,
	.moved = region_moved,
	.fork = region_fork,
	.fill_step = fl__region_fill_step,
	.populate = region_populate_all,
	.poison_unresolved = fl__region_poison_unresolved,
	.stats = region_target_stats,
	.free = region_target_free,
	.destroy = region_target_destroy,
};

/* ---- hooks ------------------------------------------------------------------ */

struct fl__region_hook *fl__region_hook_find(struct fl_region *r, const struct fl__region_hook_ops *ops)
{
	for (struct fl__region_hook *h = atomic_load(&r->hooks); h; h = h->next)
		if (h->ops == ops)
			return h;
	return NULL;
}

int fl__region_hook_add(struct fl_region *r, struct fl__region_hook *h, int (*start)(struct fl__region_hook *h))
{
	int ret = 0;

	pthread_mutex_lock(&r->hooks_mu);
	if (fl__region_hook_find(r, h->ops))
		ret = -EEXIST;
	else if (start)
		ret = start(h);
	if (!ret) {
		/* Complete before it is published: faults read without the lock. */
		h->next = atomic_load(&r->hooks);
		atomic_store_explicit(&r->hooks, h, memory_order_release);
	}
	pthread_mutex_unlock(&r->hooks_mu);
	return ret;
}

void fl__region_exact_faults(struct fl_region *r, bool on)
{
	if (on)
		atomic_fetch_add(&r->exact_faults, 1);
	else
		atomic_fetch_sub(&r->exact_faults, 1);
}

int fl_region_stats(const struct fl_region *r, struct fl_region_stats *st)
{
	struct fl_region_stats s = { .sz = sizeof(s) };
	int ret;

	if (!r)
		return -EINVAL;
	ret = fl__opts_out_check(st);
	if (ret)
		return ret;
	s.faults_read = atomic_load(&r->faults_read);
	s.faults_write = atomic_load(&r->faults_write);
	s.faults_minor = atomic_load(&r->faults_minor);
	s.faults_wp = atomic_load(&r->faults_wp);
	s.pages_copy = atomic_load(&r->pages_copy);
	s.pages_zero = atomic_load(&r->pages_zero);
	s.pages_continue = atomic_load(&r->pages_continue);
	s.pages_prefetch = atomic_load(&r->pages_prefetch);
	s.pages_background = atomic_load(&r->pages_background);
	s.pages_poisoned = atomic_load(&r->pages_poisoned);
	s.pages_exist = atomic_load(&r->pages_exist);
	s.bytes_read = atomic_load(&r->bytes_read);
	s.store_errors = atomic_load(&r->store_errors);
	s.lat_count = atomic_load(&r->hist.count);
	s.lat_p50_ns = fl__hist_quantile(&r->hist, 0.50);
	s.lat_p99_ns = fl__hist_quantile(&r->hist, 0.99);
	s.lat_max_ns = atomic_load(&r->hist.max);
	s.blocked_ns = atomic_load(&r->blocked_ns);
	s.pages_replayed = atomic_load(&r->pages_replayed);
	fl__far_stats(r, &s);
	return FL_OPTS_OUT(st, s);
}
