// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The watch manager (fl_watch_manager_new(3)): many watched ranges of one
 * process on one userfaultfd, one pagemap fd and at most one service
 * thread, with ranges added and removed (whole or in part) as the program
 * allocates and frees.
 *
 * Each range is an ordinary struct fl_watch ("piece") sharing the
 * manager's svc, kept in an array sorted by address. The rwlock guards the
 * array: the service thread and get/reset/protect read it, add and remove
 * write it. Removing part of a piece cuts it into pieces that keep its
 * state (the kernel's write-protection stays in the page tables; bitmaps
 * and protections are copied).
 */
#include "kernel.h"
#include "watch-internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>

struct fl_watch_manager {
	enum fl_watch_backend backend;
	bool allow_thp;
	struct fl__logger log;
	struct fl__watch_svc svc;	/* ASYNC, SYNC */
	bool svc_ready;
	int maps_fd;			/* /proc/self/maps, for PROCMAP_QUERY */
	bool no_procmap_query;		/* the kernel lacks it: read smaps */
	pthread_rwlock_t lock;
	struct fl_watch **w;		/* sorted by start, disjoint */
	size_t n, cap;
	/* Serialises one-scan gets and resets over several ASYNC pieces. */
	pthread_mutex_t span_lock;
	/* Ranges the program unmapped (UFFD_EVENT_UNMAP), noted by the
	 * service thread and forgotten by the next call that takes the
	 * write lock: the thread cannot take it (a get holding the read
	 * lock waits for the thread to settle). */
	pthread_mutex_t unmap_lock;
	struct unmapped { uint64_t start, end; } *unmaps;
	size_t n_unmaps, cap_unmaps;
	_Atomic bool unmaps_pending;
};

/* First piece ending after addr (lock held). */
static size_t first_after(const struct fl_watch_manager *m, uint64_t addr)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->w[mid]->start + m->w[mid]->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void mgr_unmapped(void *ctx, uint64_t start, uint64_t end)
{
	struct fl_watch_manager *m = ctx;

	pthread_mutex_lock(&m->unmap_lock);
	if (m->n_unmaps == m->cap_unmaps) {
		size_t cap = m->cap_unmaps ? m->cap_unmaps * 2 : 16;
		struct unmapped *n = realloc(m->unmaps, cap * sizeof(*n));
		if (n) {
			m->unmaps = n;
			m->cap_unmaps = cap;
		}
	}
	if (m->n_unmaps < m->cap_unmaps) {
		m->unmaps[m->n_unmaps++] = (struct unmapped){ start, end };
		atomic_store(&m->unmaps_pending, true);
	} else {
		fl__log(&m->log, FL_LOG_ERROR, "watch manager: no memory to note an unmap of %#llx-%#llx",
			(unsigned long long)start, (unsigned long long)end);
	}
	pthread_mutex_unlock(&m->unmap_lock);
}

static void mgr_each(void *ctx, uint64_t start, uint64_t end, void (*fn)(struct fl_watch *w, void *arg), void *arg)
{
	struct fl_watch_manager *m = ctx;

	pthread_rwlock_rdlock(&m->lock);
	for (size_t i = first_after(m, start); i < m->n && m->w[i]->start < end; i++)
		fn(m->w[i], arg);
	pthread_rwlock_unlock(&m->lock);
}

int fl_watch_manager_new(const struct fl_watch_manager_opts *opts, struct fl_watch_manager **ret_manager)
{
	struct fl_watch_manager_opts o;
	struct fl_watch_manager *m;
	int ret;

	ret = FL_OPTS_COPY(o, opts);
	if (ret)
		return ret;
	if (!ret_manager || o.backend > FL_WATCH_MPROTECT || (o.flags & ~FL_WATCH_ALLOW_THP))
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->backend = fl__watch_pick_backend(o.backend);
	m->allow_thp = o.flags & FL_WATCH_ALLOW_THP;
	m->log = (struct fl__logger){ .fn = o.log, .ctx = o.log_ctx, .level = FL_LOG_DEBUG };
	m->svc.uffd = m->svc.stop_fd = m->svc.pagemap_fd = -1;
	m->maps_fd = -1;
	pthread_rwlock_init(&m->lock, NULL);
	pthread_mutex_init(&m->span_lock, NULL);
	pthread_mutex_init(&m->unmap_lock, NULL);
	ret = fl__open("/proc/self/maps", O_RDONLY | O_CLOEXEC, &m->maps_fd);
	/* PROCMAP_QUERY is 6.11: with the features newer than 6.1 masked
	 * (FAULTLINE_MASK_FEATURES=new), take the path an older kernel takes. */
	{
		uint64_t newer = fl__features_newer_than_6_1();
		m->no_procmap_query = newer && (fl_features_masked() & newer) == newer;
	}
	if (!ret && m->backend != FL_WATCH_MPROTECT) {
		uint64_t feat;
		m->svc.each = mgr_each;
		m->svc.unmapped = mgr_unmapped;
		m->svc.each_ctx = m;
		ret = fl__watch_svc_features(m->backend, &feat);
		if (!ret)
			ret = fl__watch_svc_init(&m->svc, m->backend, feat);
		m->svc_ready = !ret;
	}
	if (ret) {
		fl_watch_manager_free(m);
		return ret;
	}
	*ret_manager = m;
	return 0;
}

/*
 * What [start, start + len) is: one kind of memory throughout. Through
 * PROCMAP_QUERY, a few ioctls (one per mapping) instead of reading the
 * whole of smaps, whose cost grows with the number of mappings the
 * process has: a manager of thousands of ranges would pay it on each add.
 */
static int describe(struct fl_watch_manager *m, uint64_t start, uint64_t len, struct fl__watch_desc *d)
{
	uint64_t cur = start, end = start + len;
	bool first = true;
	int ret;

	d->prot = -1;
	while (!m->no_procmap_query && cur < end) {
		struct fl__vma v;
		enum fl_mem_type mem;

		ret = fl__vma_query(m->maps_fd, cur, &v);
		if (ret == -EOPNOTSUPP) {
			m->no_procmap_query = true;
			break;
		}
		if (ret == -ENOENT || (!ret && v.start > cur))
			return -EINVAL;	/* a hole */
		if (ret)
			return ret;
		mem = v.page_size > FL_PAGE_SIZE ? FL_MEM_HUGETLB : v.shared ? FL_MEM_SHMEM : FL_MEM_ANON;
		if (first) {
			d->mem = mem;
			d->shared = v.shared;
			d->gran = v.page_size;
			d->prot = v.prot;
			first = false;
		} else if (mem != d->mem || v.shared != d->shared) {
			return -EINVAL;
		} else if (v.prot != d->prot) {
			d->prot = -1;
		}
		cur = v.end;
	}
	if (m->no_procmap_query) {
		bool maywrite;
		d->prot = -1;
		ret = fl__range_scan(start, len, &d->mem, &d->gran, &d->shared, &maywrite, NULL, NULL);
		if (ret)
			return ret;
		if (!maywrite)
			return -EINVAL;
	}
	return start % d->gran || len % d->gran ? -EINVAL : 0;
}

static int insert_at(struct fl_watch_manager *m, size_t i, struct fl_watch *w)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct fl_watch **n = realloc(m->w, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		m->w = n;
		m->cap = cap;
	}
	memmove(&m->w[i + 1], &m->w[i], (m->n - i) * sizeof(*m->w));
	m->w[i] = w;
	m->n++;
	return 0;
}

static void delete_at(struct fl_watch_manager *m, size_t i)
{
	memmove(&m->w[i], &m->w[i + 1], (m->n - i - 1) * sizeof(*m->w));
	m->n--;
}

static int cut_piece(struct fl_watch_manager *m, size_t i, uint64_t cs, uint64_t ce, bool gone);

/* Forget the pieces (parts of pieces) the program unmapped (write lock
 * held). A part that cannot be cut off for want of memory stays, and is
 * tried again next time. */
static void forget_unmapped(struct fl_watch_manager *m)
{
	size_t kept = 0;

	if (!atomic_load(&m->unmaps_pending))
		return;
	pthread_mutex_lock(&m->unmap_lock);
	for (size_t u = 0; u < m->n_unmaps; u++) {
		uint64_t start = m->unmaps[u].start, end = m->unmaps[u].end;
		int ret = 0;

		for (size_t i = first_after(m, start); !ret && i < m->n && m->w[i]->start < end;) {
			struct fl_watch *w = m->w[i];
			uint64_t cs = FL_MAX(start, w->start), ce = FL_MIN(end, w->start + w->len);
			size_t left = (cs > w->start) + (ce < w->start + w->len);

			if (!left) {
				w->registered = false;	/* nothing left to unregister */
				fl_watch_free(w);
				delete_at(m, i);
				continue;
			}
			ret = cut_piece(m, i, cs, ce, true);
			i += left;
		}
		if (ret)
			m->unmaps[kept++] = m->unmaps[u];
	}
	m->n_unmaps = kept;
	atomic_store(&m->unmaps_pending, kept > 0);
	pthread_mutex_unlock(&m->unmap_lock);
}

/* Before a call that only reads the array: take in the unmaps read so far. */
static void settle_unmapped(struct fl_watch_manager *m)
{
	if (!m->svc_ready)
		return;
	fl__watch_svc_settle(&m->svc);
	if (atomic_load(&m->unmaps_pending)) {
		pthread_rwlock_wrlock(&m->lock);
		forget_unmapped(m);
		pthread_rwlock_unlock(&m->lock);
	}
}

int fl_watch_manager_add(struct fl_watch_manager *m, void *addr, size_t len)
{
	uint64_t start = (uintptr_t)addr;
	struct fl__watch_desc d = { 0 };
	struct fl_watch *w;
	size_t i;
	int ret;

	if (!m || !addr || !len || start % FL_PAGE_SIZE || len % FL_PAGE_SIZE || start + len < start)
		return -EINVAL;
	fl__watch_svc_settle(m->svc_ready ? &m->svc : NULL);
	pthread_rwlock_wrlock(&m->lock);
	forget_unmapped(m);
	i = first_after(m, start);
	if (i < m->n && m->w[i]->start < start + len) {
		ret = -EBUSY;
		goto out;
	}
	ret = describe(m, start, len, &d);
	if (!ret)
		ret = fl__watch_mp_overlaps(start, len);
	if (ret)
		goto out;
	d.backend = m->backend;
	d.allow_thp = m->allow_thp;
	d.log = m->log;
	d.svc = m->svc_ready ? &m->svc : NULL;
	ret = fl__watch_create(start, len, &d, &w);
	if (ret)
		goto out;
	ret = insert_at(m, i, w);
	if (ret)
		fl_watch_free(w);
out:
	pthread_rwlock_unlock(&m->lock);
	return ret;
}

/* Cut [cs, ce) out of piece i (which it overlaps, not entirely); `gone`:
 * that part is no longer mapped (nothing to unregister or unprotect). */
static int cut_piece(struct fl_watch_manager *m, size_t i, uint64_t cs, uint64_t ce, bool gone)
{
	struct fl_watch *w = m->w[i], *pieces[2];
	uint64_t end = w->start + w->len;
	unsigned n = 0;
	int ret = 0;

	if (cs > w->start)
		pieces[n++] = fl__watch_piece(w, w->start, cs - w->start);
	if (ce < end)
		pieces[n++] = fl__watch_piece(w, ce, end - ce);
	for (unsigned k = 0; k < n; k++)
		if (!pieces[k])
			ret = -ENOMEM;
	if (!ret && m->n + n - 1 > m->cap) {
		size_t cap = m->cap * 2;
		struct fl_watch **nw = realloc(m->w, cap * sizeof(*nw));
		if (nw) {
			m->w = nw;
			m->cap = cap;
		} else {
			ret = -ENOMEM;
		}
	}
	if (!ret && w->backend == FL_WATCH_MPROTECT)
		ret = fl__watch_mp_replace(w, pieces, n, cs, gone ? 0 : ce - cs);
	if (ret) {
		for (unsigned k = 0; k < n; k++) {
			if (pieces[k]) {
				pieces[k]->registered = false;
				fl__watch_release(pieces[k]);
			}
		}
		return ret;
	}
	if (gone)
		w->registered = false;
	if (w->registered) {
		/* The pieces keep the registration and the kernel's
		 * protection of their pages; the cut part loses both. */
		fl_uffd_unregister(w->svc->uffd, (void *)(uintptr_t)cs, ce - cs);
		if (w->backend == FL_WATCH_SYNC)
			fl_uffd_wake(w->svc->uffd, (void *)(uintptr_t)cs, ce - cs);
		w->registered = false;
	}
	fl__watch_release(w);
	delete_at(m, i);
	for (unsigned k = 0; k < n; k++)
		insert_at(m, i + k, pieces[k]);	/* room was made above */
	return 0;
}

int fl_watch_manager_remove(struct fl_watch_manager *m, void *addr, size_t len)
{
	uint64_t start = (uintptr_t)addr, end = start + len;
	bool found = false;
	int ret = 0;

	if (!m || !len || end < start)
		return -EINVAL;
	fl__watch_svc_settle(m->svc_ready ? &m->svc : NULL);
	pthread_rwlock_wrlock(&m->lock);
	forget_unmapped(m);
	/* Check every piece's alignment first: all or nothing. */
	for (size_t i = first_after(m, start); i < m->n && m->w[i]->start < end; i++) {
		struct fl_watch *w = m->w[i];
		if ((start > w->start && (start - w->start) % w->gran) ||
		    (end < w->start + w->len && (end - w->start) % w->gran))
			ret = -EINVAL;
		found = true;
	}
	if (!ret && !found)
		ret = -ENOENT;
	for (size_t i = first_after(m, start); !ret && i < m->n && m->w[i]->start < end;) {
		struct fl_watch *w = m->w[i];
		uint64_t cs = FL_MAX(start, w->start), ce = FL_MIN(end, w->start + w->len);
		size_t left = (cs > w->start) + (ce < w->start + w->len);	/* pieces it leaves */

		if (!left) {
			fl_watch_free(w);	/* unregisters its range; the svc stays */
			delete_at(m, i);
			continue;
		}
		ret = cut_piece(m, i, cs, ce, false);
		i += left;
	}
	pthread_rwlock_unlock(&m->lock);
	return ret;
}

/*
 * The pieces covering [start, start + len) without a gap, all of one
 * granularity: index of the first in *ret_first, number in *ret_n
 * (lock held). -EINVAL otherwise, or when misaligned.
 */
static int covering(const struct fl_watch_manager *m, uint64_t start, uint64_t len, size_t *ret_first, size_t *ret_n,
		    bool *ret_one_scan)
{
	size_t i = first_after(m, start), k = i;
	uint64_t cur = start, end = start + len;
	bool one_scan = m->backend == FL_WATCH_ASYNC;

	if (!len || end < start)
		return -EINVAL;
	for (; k < m->n && cur < end; k++) {
		const struct fl_watch *w = m->w[k];
		if (w->start > cur || w->gran != m->w[i]->gran || (cur - w->start) % w->gran)
			return -EINVAL;
		one_scan &= !w->dirty;	/* discards to merge: piece by piece */
		cur = w->start + w->len;
	}
	if (cur < end || k == i || (end - m->w[k - 1]->start) % m->w[k - 1]->gran)
		return -EINVAL;
	*ret_first = i;
	*ret_n = k - i;
	*ret_one_scan = one_scan && k - i > 1;
	return 0;
}

int fl_watch_manager_get(struct fl_watch_manager *m, void *addr, size_t len, unsigned flags, void **pages,
			 uint64_t *count, size_t *ret_granularity)
{
	uint64_t start = (uintptr_t)addr, end = start + len, cap, got = 0;
	size_t first, n;
	bool one_scan;
	int ret;

	if (!m || !pages || !count || !*count || (flags & ~FL_WATCH_RESET))
		return -EINVAL;
	cap = *count;
	settle_unmapped(m);
	pthread_rwlock_rdlock(&m->lock);
	ret = covering(m, start, len, &first, &n, &one_scan);
	if (ret)
		goto out;
	if (ret_granularity)
		*ret_granularity = m->w[first]->gran;
	if (one_scan) {
		/* Adjacent anonymous ASYNC ranges: one PAGEMAP_SCAN over all of
		 * them, as cheap as over one range. */
		pthread_mutex_lock(&m->span_lock);
		got = cap;
		ret = fl__watch_span_get(m->w[first], start, len, flags & FL_WATCH_RESET, pages, &got);
		pthread_mutex_unlock(&m->span_lock);
		goto out;
	}
	for (size_t k = first; k < first + n && got < cap && !ret; k++) {
		struct fl_watch *w = m->w[k];
		uint64_t s = FL_MAX(start, w->start), e = FL_MIN(end, w->start + w->len), c = cap - got;

		ret = fl_watch_get(w, (void *)(uintptr_t)s, e - s, flags, pages + got, &c, NULL);
		if (!ret)
			got += c;
	}
out:
	pthread_rwlock_unlock(&m->lock);
	if (!ret)
		*count = got;
	return ret;
}

int fl_watch_manager_reset(struct fl_watch_manager *m, void *addr, size_t len)
{
	uint64_t start = (uintptr_t)addr, end = start + len;
	size_t first, n;
	bool one_scan;
	int ret;

	if (!m)
		return -EINVAL;
	settle_unmapped(m);
	pthread_rwlock_rdlock(&m->lock);
	ret = covering(m, start, len, &first, &n, &one_scan);
	if (!ret && one_scan) {
		pthread_mutex_lock(&m->span_lock);
		ret = fl__watch_span_reset(m->w[first], start, len);
		pthread_mutex_unlock(&m->span_lock);
	} else {
		for (size_t k = first; !ret && k < first + n; k++) {
			struct fl_watch *w = m->w[k];
			uint64_t s = FL_MAX(start, w->start), e = FL_MIN(end, w->start + w->len);
			ret = fl_watch_reset(w, (void *)(uintptr_t)s, e - s);
		}
	}
	pthread_rwlock_unlock(&m->lock);
	return ret;
}

int fl_watch_manager_protect(struct fl_watch_manager *m, void *addr, size_t len, int prot)
{
	uint64_t start = (uintptr_t)addr, end = start + len;
	size_t first, n;
	bool one_scan;
	int ret;

	if (!m)
		return -EINVAL;
	settle_unmapped(m);
	pthread_rwlock_rdlock(&m->lock);
	ret = covering(m, start, len, &first, &n, &one_scan);
	for (size_t k = first; !ret && k < first + n; k++) {
		struct fl_watch *w = m->w[k];
		uint64_t s = FL_MAX(start, w->start), e = FL_MIN(end, w->start + w->len);
		ret = fl_watch_protect(w, (void *)(uintptr_t)s, e - s, prot);
	}
	pthread_rwlock_unlock(&m->lock);
	return ret;
}

int fl_watch_manager_prepare_write(struct fl_watch_manager *m, void *addr, size_t len)
{
	uint64_t start = (uintptr_t)addr, end = start + len, gs, ge;
	size_t first, n, i, gran = 0;
	bool one_scan;
	int ret;

	if (!m || !len || end < start)
		return -EINVAL;
	settle_unmapped(m);
	pthread_rwlock_rdlock(&m->lock);
	i = first_after(m, start);
	ret = i < m->n && m->w[i]->start <= start ? 0 : -EINVAL;
	if (!ret) {
		/* Out to whole granules, then every byte must be watched. */
		gran = m->w[i]->gran;
		gs = start - (start - m->w[i]->start) % gran;
		ge = end + (gran - (end - m->w[i]->start) % gran) % gran;
		ret = covering(m, gs, ge - gs, &first, &n, &one_scan);
	}
	for (size_t k = first; !ret && k < first + n; k++) {
		struct fl_watch *w = m->w[k];
		ret = fl__watch_writable(w, m->maps_fd, FL_MAX(gs, w->start), FL_MIN(ge, w->start + w->len));
	}
	pthread_rwlock_unlock(&m->lock);
	/* Touched without the lock: the faults it takes are served by the
	 * service thread or the SIGSEGV handler, which take it too. */
	if (!ret)
		fl__watch_touch(gs, end, gran);
	return ret;
}

int fl_watch_manager_query(const struct fl_watch_manager *m, struct fl_watch_info *info)
{
	struct fl_watch_info i = { .sz = sizeof(i) };
	int ret = fl__opts_out_check(info);

	if (!m)
		return -EINVAL;
	if (ret)
		return ret;
	if (m->svc_ready && m->svc.user_mode_only)
		i.flags |= FL_WATCH_INFO_USER_MODE_ONLY;
	/* As fl_watch_query() for a watch of this backend; MPROTECT answers
	 * for private memory, the weaker case. */
	switch (m->backend) {
	case FL_WATCH_ASYNC:
		i.kernel_writes = i.remote_writes = FL_WATCH_COUNTED;
		break;
	case FL_WATCH_SYNC:
		i.kernel_writes = m->svc.user_mode_only ? FL_WATCH_FAILS : FL_WATCH_COUNTED;
		i.remote_writes = FL_WATCH_FAILS;
		break;
	default:
		i.kernel_writes = FL_WATCH_FAILS;
		i.remote_writes = FL_WATCH_NOT_SEEN;
		break;
	}
	return FL_OPTS_OUT(info, i);
}

enum fl_watch_backend fl_watch_manager_backend(const struct fl_watch_manager *m)
{
	return m ? m->backend : FL_WATCH_AUTO;
}

struct fl_watch_manager *fl_watch_manager_free(struct fl_watch_manager *m)
{
	if (!m)
		return NULL;
	/* The thread first: it may be inside a piece's handlers. */
	fl__watch_svc_stop(&m->svc);
	for (size_t i = 0; i < m->n; i++)
		fl_watch_free(m->w[i]);
	fl__watch_svc_close(&m->svc);
	if (m->maps_fd >= 0)
		fl__close(m->maps_fd);
	pthread_rwlock_destroy(&m->lock);
	pthread_mutex_destroy(&m->span_lock);
	pthread_mutex_destroy(&m->unmap_lock);
	free(m->unmaps);
	free(m->w);
	free(m);
	return NULL;
}
