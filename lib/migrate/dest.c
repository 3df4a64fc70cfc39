// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Migration destination: map the layout, install precopy pages, switch
 * over, then serve faults from the urgent channel while the bulk channel's
 * push fills the rest. Fails closed: a page that cannot come is poisoned.
 */
#include "wire.h"
#include "kernel.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

enum dst_state {
	DST_IDLE = 0,
	DST_PRECOPY,		/* layout received; the application does not run here */
	DST_POSTCOPY,		/* resumed: pages only through UFFDIO_COPY */
	DST_OVER,
};

struct fl_migrate_dest {
	struct fl_migrate_dest_opts opts;
	struct fl__logger log;
	struct fl__mig_range *ranges;
	unsigned nranges;
	uint64_t total;
	int uffd;
	bool have_poison;
	struct fl__mig_chan bulk, urgent;
	int stop_fd;			/* eventfd: the end, every thread leaves */
	int wake_fd;			/* eventfd: the bulk thread completed the set */
	_Atomic int state;
	_Atomic bool resumed;		/* RESUMED sent */
	/* Installs take it shared; poisoning and teardown exclusive, so that
	 * they never race a UFFDIO_COPY or a present bit. */
	pthread_rwlock_t install_lock;
	_Atomic uint64_t *present;
	_Atomic uint64_t present_count;
	_Atomic uint64_t *requested;	/* post thread only, atomics for clarity */
	uint64_t *request_ns;		/* when each outstanding request was sent */
	uint64_t outstanding;
	uint64_t last_progress_ns;
	void *zero_page;		/* a huge page of zeros: the source of zero fills */
	pthread_t bulk_thr, post_thr;
	bool started, post_started;
	pthread_mutex_t end_lock;
	pthread_cond_t end_cond;
	bool ended;
	int result;
	uint64_t t_start;
	_Atomic uint64_t total_ns;	/* set at the end; stats may read it before */
	_Atomic uint64_t pages_received, zero_pages, requests;
	struct fl__hist lat;
	/* Placement: ranges[i].start is where range i is mapped HERE once
	 * mapped; src_start[i] its address at the source, which the wire
	 * keeps using (PAGE, REQUEST). */
	uint64_t *src_start;
	_Atomic bool mapped;		/* fl_migrate_dest_ranges() may read the ranges */
	/* UFFDIO_MOVE installs of anonymous pages: each channel receives page
	 * bytes into a ring of staging pages that are moved into place. */
	_Atomic bool have_move;
	struct dst_staging {
		struct fl_migrate_dest *d;
		uint8_t *mem;		/* STAGING_PAGES private anonymous pages */
		unsigned next;
	} stage[2];			/* bulk, urgent */
	_Atomic uint64_t pages_moved;
	_Atomic int pub_state, error;	/* the operator's view: enum fl_migrate_state */
};

#define STAGING_PAGES	64u

int fl_migrate_dest_new(const struct fl_migrate_dest_opts *opts, struct fl_migrate_dest **ret_dest)
{
	struct fl_migrate_dest *d;
	int r;

	if (!opts || !ret_dest)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->uffd = d->stop_fd = d->wake_fd = -1;
	r = FL_OPTS_COPY(d->opts, opts);
	if (r)
		goto fail;
	r = -EINVAL;
	if (d->opts.bulk_fd < 0 || d->opts.urgent_fd < 0 || d->opts.bulk_fd == d->opts.urgent_fd ||
	    !d->opts.resume || (d->opts.flags & ~FL_MIGRATE_DEST_MOVE))
		goto fail;
	if (!d->opts.timeout_ms)
		d->opts.timeout_ms = 10000;
	d->log = (struct fl__logger){ d->opts.log, d->opts.log_ctx, FL_LOG_DEBUG };
	r = fl__eventfd(&d->stop_fd);
	if (!r)
		r = fl__eventfd(&d->wake_fd);
	if (r)
		goto fail;
	d->zero_page = calloc(1, FL_HPAGE_SIZE);
	if (!d->zero_page) {
		r = -ENOMEM;
		goto fail;
	}
	fl__mig_chan_init(&d->bulk, d->opts.bulk_fd, d->stop_fd, "bulk", &d->log);
	fl__mig_chan_init(&d->urgent, d->opts.urgent_fd, d->stop_fd, "urgent", &d->log);
	pthread_rwlock_init(&d->install_lock, NULL);
	pthread_mutex_init(&d->end_lock, NULL);
	pthread_cond_init(&d->end_cond, NULL);
	*ret_dest = d;
	return 0;
fail:
	fl__close(d->stop_fd);
	fl__close(d->wake_fd);
	free(d);
	return r;
}

static bool is_present(struct fl_migrate_dest *d, uint64_t idx)
{
	return atomic_load(&d->present[idx / 64]) & (1ull << (idx % 64));
}

/* Mark present; true when this completed the set. */
static bool mark_present(struct fl_migrate_dest *d, uint64_t idx)
{
	if (atomic_fetch_or(&d->present[idx / 64], 1ull << (idx % 64)) & (1ull << (idx % 64)))
		return false;
	return atomic_fetch_add(&d->present_count, 1) + 1 == d->total;
}

static void *page_addr(const struct fl__mig_range *rg, uint64_t idx)
{
	return (void *)(uintptr_t)(rg->start + (idx - rg->first) * rg->page_size);
}

static void unmap_ranges(struct fl_migrate_dest *d)
{
	atomic_store(&d->mapped, false);
	for (unsigned i = 0; i < d->nranges; i++) {
		struct fl__mig_range *rg = &d->ranges[i];

		if (rg->first == UINT64_MAX)	/* not mapped by us */
			continue;
		(void)fl__munmap((void *)(uintptr_t)rg->start, rg->len);
		rg->first = UINT64_MAX;
	}
}

/*
 * Every page not present becomes SIGBUS for whoever touches it, and every
 * thread waiting on a fault in the ranges is woken to find that out. Under
 * the exclusive install lock: no copy is in flight, the present bits are
 * final.
 */
static void poison_missing(struct fl_migrate_dest *d)
{
	int empty_fd = -1;
	uint64_t poisoned = 0;

	for (unsigned i = 0; i < d->nranges; i++) {
		struct fl__mig_range *rg = &d->ranges[i];

		for (uint64_t idx = rg->first; idx < rg->first + rg->npages; idx++) {
			uint64_t run = 1;
			void *addr = page_addr(rg, idx), *p;
			int r = -EOPNOTSUPP;

			if (is_present(d, idx))
				continue;
			while (idx + run < rg->first + rg->npages && !is_present(d, idx + run))
				run++;
			if (d->have_poison) {
				/* Page by page: an EEXIST would stop a run midway. */
				for (uint64_t k = 0; k < run; k++) {
					r = fl_uffd_poison(d->uffd, (uint8_t *)addr + k * rg->page_size,
							   rg->page_size, FL_DONTWAKE, NULL);
					if (r && r != -EEXIST)
						break;
					r = 0;
				}
			}
			if (r) {
				/*
				 * No UFFDIO_POISON (before 6.6, or masked): a shared
				 * mapping of an empty memfd raises SIGBUS on every access
				 * (beyond its end) and replaces the registered pages,
				 * so no fault of theirs can ever be zero-filled.
				 */
				if (empty_fd < 0 && fl__memfd("faultline-migrate-poison", 0, 0, &empty_fd) < 0)
					empty_fd = -1;
				r = empty_fd < 0 ? -ENOMEM
						 : fl__mmap(addr, run * rg->page_size, PROT_READ | PROT_WRITE,
							    MAP_SHARED | MAP_FIXED, empty_fd, 0, &p);
				if (r)	/* the last resort: no mapping at all is SIGSEGV, never zeros */
					(void)fl__mmap(addr, run * rg->page_size, PROT_NONE,
						       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0, &p);
			}
			poisoned += run;
			idx += run - 1;
		}
	}
	for (unsigned i = 0; i < d->nranges; i++)
		(void)fl_uffd_wake(d->uffd, (void *)(uintptr_t)d->ranges[i].start, d->ranges[i].len);
	if (empty_fd >= 0)
		fl__close(empty_fd);
	fl__log(&d->log, FL_LOG_ERROR, "migrate: %llu pages poisoned (%s): their accesses raise SIGBUS",
		(unsigned long long)poisoned, d->have_poison ? "UFFDIO_POISON" : "empty mapping");
}

/* The end, first caller wins: success tears the uffd down, failure after
 * switchover poisons, failure before it unmaps. */
static void finish(struct fl_migrate_dest *d, int result)
{
	int st;

	pthread_mutex_lock(&d->end_lock);
	if (d->ended) {
		pthread_mutex_unlock(&d->end_lock);
		return;
	}
	pthread_rwlock_wrlock(&d->install_lock);
	/* Complete is complete, whatever a channel says afterwards (the
	 * source closes as soon as it reads DONE). */
	st = atomic_exchange(&d->state, DST_OVER);
	if (st == DST_POSTCOPY && atomic_load(&d->resumed) && atomic_load(&d->present_count) == d->total)
		result = 0;
	if (result == 0) {
		/* Every page is present: closing the uffd cannot zero-fill. */
		for (unsigned i = 0; i < d->nranges; i++)
			(void)fl_uffd_unregister(d->uffd, (void *)(uintptr_t)d->ranges[i].start,
						 d->ranges[i].len);
		fl__close(d->uffd);
		d->uffd = -1;
		for (unsigned i = 0; i < d->nranges; i++)
			if (d->ranges[i].memfd >= 0) {
				fl__close(d->ranges[i].memfd);
				d->ranges[i].memfd = -1;
			}
	} else if (st == DST_POSTCOPY) {
		poison_missing(d);
		/* The uffd stays open (until fl_migrate_dest_free()): every page
		 * is present or poisoned, nothing is left for a close to zero. */
	} else {
		unmap_ranges(d);
		if (d->uffd >= 0)
			fl__close(d->uffd);
		d->uffd = -1;
	}
	pthread_rwlock_unlock(&d->install_lock);
	/* The source learns why (it reads the urgent channel between pages
	 * before switchover, and all the time after). */
	if (result < 0)
		fl__mig_send_error(&d->urgent, result);
	d->result = result;
	atomic_store(&d->total_ns, fl__now_ns() - d->t_start);
	if (result == 0) {
		atomic_store(&d->pub_state, FL_MIGRATE_STATE_DONE);
	} else if (result == -ECANCELED && st != DST_POSTCOPY) {
		atomic_store(&d->pub_state, FL_MIGRATE_STATE_CANCELLED);
	} else {
		atomic_store(&d->error, result);
		atomic_store(&d->pub_state, FL_MIGRATE_STATE_FAILED);
	}
	d->ended = true;
	fl__eventfd_signal(d->stop_fd);
	pthread_cond_broadcast(&d->end_cond);
	pthread_mutex_unlock(&d->end_lock);
}

static int receive_layout(struct fl_migrate_dest *d)
{
	struct fl__mig_hdr h;
	uint32_t n;
	int r;

	r = fl__mig_recv(&d->bulk, d->opts.timeout_ms, &h);
	if (r)
		return r;
	if (h.type != FL_MIG_LAYOUT)
		return fl__mig_refuse(&d->bulk, -EPROTO, "message %u before the layout", h.type);
	if (h.flags)
		return fl__mig_refuse(&d->bulk, -EPROTO, "LAYOUT flags 0x%x", h.flags);
	if (h.length < 8)
		return fl__mig_refuse(&d->bulk, -EBADMSG, "LAYOUT of %u bytes", h.length);
	n = fl__mig_get32(d->bulk.buf);
	if (n == 0 || n > FL_MIGRATE_MAX_RANGES || fl__mig_get32(d->bulk.buf + 4))
		return fl__mig_refuse(&d->bulk, -EPROTO, "LAYOUT of %u ranges", n);
	if (h.length != 8 + n * FL_MIG_RANGE_SIZE)
		return fl__mig_refuse(&d->bulk, -EBADMSG, "LAYOUT of %u ranges in %u bytes", n, h.length);
	d->ranges = calloc(n, sizeof(*d->ranges));
	if (!d->ranges)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = d->bulk.buf + 8 + i * FL_MIG_RANGE_SIZE;

		d->ranges[i] = (struct fl__mig_range){
			.start = fl__mig_get64(e), .len = fl__mig_get64(e + 8),
			.mem = (enum fl_mem_type)fl__mig_get32(e + 16), .page_size = fl__mig_get32(e + 20),
			.memfd = -1,
		};
	}
	r = fl__mig_layout_check(d->ranges, n, &d->total);
	if (r) {
		free(d->ranges);
		d->ranges = NULL;
		return fl__mig_refuse(&d->bulk, r == -EINVAL ? -EPROTO : -ERANGE, "LAYOUT: a bad range");
	}
	d->nranges = n;
	for (uint32_t i = 0; i < n; i++)
		d->ranges[i].first = UINT64_MAX;	/* not mapped yet; numbered below */
	return 0;
}

/*
 * Where range i goes: the source's address, or what place() says (NULL:
 * anywhere, *want = NULL). Misaligned is -EINVAL, before anything is mapped.
 */
static int place_range(struct fl_migrate_dest *d, unsigned i, void **want)
{
	const struct fl__mig_range *rg = &d->ranges[i];
	struct fl_migrate_range src = { (void *)(uintptr_t)d->src_start[i], rg->len, rg->mem };

	if (!d->opts.place)
		return 0;
	*want = d->opts.place(d->opts.place_ctx, i, &src);
	if ((uintptr_t)*want % rg->page_size) {
		fl__log(&d->log, FL_LOG_ERROR, "migrate: place() put range %u at %p, not aligned to %u", i,
			*want, rg->page_size);
		return -EINVAL;
	}
	return 0;
}

/*
 * Staging for UFFDIO_MOVE (FL_MIGRATE_DEST_MOVE), when the kernel has it
 * (not masked) and the layout has anonymous ranges: a page received into
 * a staging page is moved into place, which saves UFFDIO_COPY's copy of
 * its bytes. Shmem and hugetlb pages live in a page cache that MOVE cannot
 * fill: they are copied. Returns whether MOVE is on.
 */
static void *staging_sink(void *ctx, const uint8_t *prefix, uint32_t page_len);

static bool staging_init(struct fl_migrate_dest *d)
{
	bool anon = false;

	for (unsigned i = 0; i < d->nranges; i++)
		anon |= d->ranges[i].mem == FL_MEM_ANON;
	if (!anon || !(d->opts.flags & FL_MIGRATE_DEST_MOVE) || !fl_feature_has(FL_FEATURE_MOVE) ||
	    !fl_feature_has(FL_FEATURE_IOCTL_MOVE))
		return false;
	for (unsigned c = 0; c < 2; c++) {
		struct dst_staging *st = &d->stage[c];
		struct fl__mig_chan *ch = c ? &d->urgent : &d->bulk;
		void *p;

		if (fl__mmap(NULL, STAGING_PAGES * FL_PAGE_SIZE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &p))
			return false;	/* COPY then; freed with the destination */
		st->mem = p;
		st->d = d;
		/* MOVE takes single 4 KiB ptes: a huge page here would be split
		 * on every move. */
		(void)fl__madvise(p, STAGING_PAGES * FL_PAGE_SIZE, MADV_NOHUGEPAGE);
		(void)fl__madvise(p, STAGING_PAGES * FL_PAGE_SIZE, MADV_POPULATE_WRITE);
		ch->page_sink = staging_sink;
		ch->page_sink_ctx = st;
	}
	atomic_store(&d->have_move, true);
	return true;
}

/* The range and index of the page at a source address, and its address
 * here; -ERANGE outside the layout or misaligned. */
static int64_t wire_page(const struct fl_migrate_dest *d, uint64_t addr, unsigned *ret_range,
			 uint64_t *ret_local)
{
	for (unsigned i = 0; i < d->nranges; i++) {
		const struct fl__mig_range *rg = &d->ranges[i];
		uint64_t off = addr - d->src_start[i];

		if (addr < d->src_start[i] || off >= rg->len)
			continue;
		if (off % rg->page_size)
			return -ERANGE;
		*ret_range = i;
		*ret_local = rg->start + off;
		return (int64_t)(rg->first + off / rg->page_size);
	}
	return -ERANGE;
}

static void *staging_sink(void *ctx, const uint8_t *prefix, uint32_t page_len)
{
	struct dst_staging *st = ctx;
	struct fl_migrate_dest *d = st->d;
	uint64_t local;
	unsigned ri;
	void *slot;

	if (!atomic_load(&d->have_move) || page_len != FL_PAGE_SIZE ||
	    wire_page(d, fl__mig_get64(prefix), &ri, &local) < 0 || d->ranges[ri].mem != FL_MEM_ANON)
		return NULL;
	slot = st->mem + st->next * FL_PAGE_SIZE;
	if (++st->next == STAGING_PAGES) {
		st->next = 0;
		/* The moved pages left holes: refill them in one call rather
		 * than one fault each inside recv(). */
		(void)fl__madvise(st->mem, STAGING_PAGES * FL_PAGE_SIZE, MADV_POPULATE_WRITE);
	}
	return slot;
}

/* Map and register the layout at its addresses. */
static int map_layout(struct fl_migrate_dest *d)
{
	uint64_t features = 0, first = 0;
	int r;

	d->src_start = calloc(d->nranges, sizeof(*d->src_start));
	if (!d->src_start)
		return -ENOMEM;
	for (unsigned i = 0; i < d->nranges; i++)
		d->src_start[i] = d->ranges[i].start;

	for (unsigned i = 0; i < d->nranges; i++) {
		struct fl__mig_range *rg = &d->ranges[i];
		enum fl_feature need = rg->mem == FL_MEM_SHMEM ? FL_FEATURE_MISSING_SHMEM
						  : FL_FEATURE_MISSING_HUGETLBFS;
		void *want = (void *)(uintptr_t)rg->start, *p;
		int fixed = MAP_FIXED_NOREPLACE;

		r = place_range(d, i, &want);
		if (r)
			return r;
		if (!want)
			fixed = 0;	/* anywhere; hugetlbfs aligns to its page size */
		if (rg->mem != FL_MEM_ANON) {
			if (!fl_feature_has(need))
				return -EOPNOTSUPP;
			features |= fl_feature_uffd_bit(need);
			r = fl__memfd("faultline-migrate", rg->mem == FL_MEM_HUGETLB ? MFD_HUGETLB : 0,
				      rg->len, &rg->memfd);
			if (r)
				return r;
			r = fl__mmap(want, rg->len, PROT_READ | PROT_WRITE, MAP_SHARED | fixed,
				     rg->memfd, 0, &p);
		} else {
			r = fl__mmap(want, rg->len, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | fixed, -1, 0, &p);
		}
		if (!r && fixed && p != want) {
			/* A kernel older than 4.17 takes NOREPLACE as a hint. */
			(void)fl__munmap(p, rg->len);
			r = -EEXIST;
		}
		if (r) {
			fl__log(&d->log, FL_LOG_ERROR, "migrate: cannot map range %u at 0x%llx: %s", i,
				(unsigned long long)(uintptr_t)want, strerror(-r));
			return r;
		}
		rg->start = (uint64_t)(uintptr_t)p;
		rg->first = 0;	/* mapped by us */
		if (!fixed && (uintptr_t)p % rg->page_size) {
			/* Never seen (hugetlbfs aligns its mappings), but the
			 * page arithmetic depends on it. */
			fl__log(&d->log, FL_LOG_ERROR, "migrate: range %u mapped misaligned at %p", i, p);
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < d->nranges; i++) {
		d->ranges[i].first = first;
		first += d->ranges[i].npages;
	}
	d->have_poison = fl_feature_has(FL_FEATURE_POISON) && fl_feature_has(FL_FEATURE_IOCTL_POISON);
	if (d->have_poison)
		features |= fl_feature_uffd_bit(FL_FEATURE_POISON);
	if (staging_init(d))
		features |= fl_feature_uffd_bit(FL_FEATURE_MOVE);
	r = fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK, &d->uffd);
	if (r)
		return r;
	r = fl_uffd_api(d->uffd, features, NULL, NULL);
	if (r)
		return r;
	for (unsigned i = 0; i < d->nranges; i++) {
		struct fl__mig_range *rg = &d->ranges[i];
		uint64_t ioctls = 0;

		r = fl_uffd_register(d->uffd, (void *)(uintptr_t)rg->start, rg->len, FL_REG_MISSING, &ioctls);
		if (!r && !fl_ioctls_has(ioctls, FL_IOCTL_COPY))
			r = -EOPNOTSUPP;
		if (r)
			return r;
		if (rg->mem == FL_MEM_ANON && !fl_ioctls_has(ioctls, FL_IOCTL_MOVE))
			atomic_store(&d->have_move, false);
	}
	d->present = calloc((d->total + 63) / 64, sizeof(*d->present));
	d->requested = calloc((d->total + 63) / 64, sizeof(*d->requested));
	d->request_ns = calloc(d->total, sizeof(*d->request_ns));
	if (!d->present || !d->requested || !d->request_ns)
		return -ENOMEM;
	atomic_store(&d->mapped, true);
	return 0;
}

/*
 * Move a staged page into place: 0, -EEXIST (present already: the staged
 * page stays staged), or another error, after which the caller copies
 * (the staged bytes are intact: MOVE moves all of the page or nothing).
 * -EOPNOTSUPP turns MOVE off for good.
 */
static int move_page(struct fl_migrate_dest *d, uint64_t local, void *staged)
{
	int r = fl_uffd_move(d->uffd, (void *)(uintptr_t)local, staged, FL_PAGE_SIZE, 0, NULL);

	if (!r) {
		atomic_fetch_add(&d->pages_moved, 1);
	} else if (r == -EOPNOTSUPP || r == -EINVAL) {
		if (atomic_exchange(&d->have_move, false))
			fl__log(&d->log, FL_LOG_INFO, "migrate: UFFDIO_MOVE: %s; copying instead",
				strerror(-r));
	}
	return r;
}

/*
 * Check a PAGE message and install it. Before switchover a page already
 * present is written in place (nothing else runs here); after it, only
 * UFFDIO_COPY, whose EEXIST leaves whatever is there. *ret_idx: the page.
 */
static int install_page(struct fl_migrate_dest *d, struct fl__mig_chan *ch, const struct fl__mig_hdr *h,
			int64_t *ret_idx, bool *ret_complete)
{
	const uint8_t *buf = ch->buf;
	const struct fl__mig_range *rg;
	bool zero = h->flags & FL_MIG_PAGE_ZERO;
	uint64_t addr, csum, local;
	const void *src;
	unsigned ri;
	int64_t idx;
	int r = 0;

	*ret_complete = false;
	if (h->flags & ~FL_MIG_PAGE_ZERO)
		return fl__mig_refuse(ch, -EPROTO, "PAGE flags 0x%x", h->flags);
	if (h->length < FL_MIG_PAGE_PREFIX)
		return fl__mig_refuse(ch, -EBADMSG, "PAGE of %u bytes", h->length);
	addr = fl__mig_get64(buf);
	csum = fl__mig_get64(buf + 8);
	idx = wire_page(d, addr, &ri, &local);
	if (idx < 0)
		return fl__mig_refuse(ch, -ERANGE, "PAGE at 0x%llx, outside the layout",
				      (unsigned long long)addr);
	rg = &d->ranges[ri];
	if (h->length != FL_MIG_PAGE_PREFIX + (zero ? 0 : rg->page_size))
		return fl__mig_refuse(ch, -EBADMSG, "PAGE at 0x%llx of %u bytes", (unsigned long long)addr,
				      h->length);
	src = zero ? d->zero_page : ch->staged ? ch->staged : buf + FL_MIG_PAGE_PREFIX;
	if (zero ? csum != 0 : fl__mig_csum(src, rg->page_size) != csum)
		return fl__mig_refuse(ch, -EBADMSG, "PAGE at 0x%llx: checksum mismatch",
				      (unsigned long long)addr);
	atomic_fetch_add(&d->pages_received, 1);
	if (zero)
		atomic_fetch_add(&d->zero_pages, 1);
	*ret_idx = idx;
	pthread_rwlock_rdlock(&d->install_lock);
	if (atomic_load(&d->state) == DST_OVER) {
		pthread_rwlock_unlock(&d->install_lock);
		return 0;
	}
	if (atomic_load(&d->state) == DST_PRECOPY && is_present(d, (uint64_t)idx)) {
		memcpy((void *)(uintptr_t)local, src, rg->page_size);
	} else {
		r = -EOPNOTSUPP;
		if (!zero && ch->staged)
			r = move_page(d, local, ch->staged);
		if (r && r != -EEXIST)
			r = fl_uffd_copy(d->uffd, (void *)(uintptr_t)local, src, rg->page_size, 0, NULL);
		if (r == -EEXIST) {
			/* Another channel's copy won; make sure its faulter runs. */
			(void)fl_uffd_wake(d->uffd, (void *)(uintptr_t)local, rg->page_size);
			r = 0;
		}
		if (!r)
			*ret_complete = mark_present(d, (uint64_t)idx);
	}
	pthread_rwlock_unlock(&d->install_lock);
	if (r)
		fl__log(&d->log, FL_LOG_ERROR, "migrate: UFFDIO_COPY at 0x%llx: %s", (unsigned long long)local,
			strerror(-r));
	return r;
}

/* Discard the stale copies the switchover names, so that they fault. */
static int switchover(struct fl_migrate_dest *d, const struct fl__mig_hdr *h, const void **ret_blob,
		      size_t *ret_blob_len)
{
	const uint8_t *buf = d->bulk.buf, *bits;
	uint64_t npages, blob_len, bitmap_len;

	if (h->flags)
		return fl__mig_refuse(&d->bulk, -EPROTO, "SWITCHOVER flags 0x%x", h->flags);
	if (h->length < 16)
		return fl__mig_refuse(&d->bulk, -EBADMSG, "SWITCHOVER of %u bytes", h->length);
	npages = fl__mig_get64(buf);
	blob_len = fl__mig_get64(buf + 8);
	if (npages != d->total)
		return fl__mig_refuse(&d->bulk, -EPROTO, "SWITCHOVER for %llu pages, the layout has %llu",
				      (unsigned long long)npages, (unsigned long long)d->total);
	bitmap_len = (npages + 7) / 8;
	if (blob_len > FL_MIGRATE_MAX_BLOB || h->length != 16 + bitmap_len + blob_len)
		return fl__mig_refuse(&d->bulk, -EBADMSG, "SWITCHOVER of %u bytes, blob %llu", h->length,
				      (unsigned long long)blob_len);
	bits = buf + 16;
	for (unsigned i = 0; i < d->nranges; i++) {
		const struct fl__mig_range *rg = &d->ranges[i];

		for (uint64_t idx = rg->first; idx < rg->first + rg->npages; idx++) {
			uint64_t run = 0;
			int r;

			while (idx + run < rg->first + rg->npages && (bits[(idx + run) / 8] >> ((idx + run) % 8) & 1))
				run++;
			if (!run)
				continue;
			/* MADV_DONTNEED keeps a shared page in the page cache:
			 * only MADV_REMOVE makes shmem and hugetlb miss again. */
			r = fl__madvise(page_addr(rg, idx), run * rg->page_size,
					rg->mem == FL_MEM_ANON ? MADV_DONTNEED : MADV_REMOVE);
			if (r) {
				fl__log(&d->log, FL_LOG_ERROR, "migrate: cannot discard stale pages: %s",
					strerror(-r));
				return r;
			}
			for (uint64_t k = idx; k < idx + run; k++)
				if (atomic_fetch_and(&d->present[k / 64], ~(1ull << (k % 64))) & (1ull << (k % 64)))
					atomic_fetch_sub(&d->present_count, 1);
			idx += run - 1;
		}
	}
	*ret_blob = bits + bitmap_len;
	*ret_blob_len = blob_len;
	return 0;
}

static void *post_main(void *arg);

static int bulk_run(struct fl_migrate_dest *d)
{
	struct fl__mig_hdr h;
	bool complete;
	int64_t idx;
	int r;

	r = receive_layout(d);
	if (r)
		return r;
	/* Exclusive: a fl_migrate_dest_free() meanwhile must either come
	 * before anything is mapped or unmap all of it. */
	pthread_rwlock_wrlock(&d->install_lock);
	if (atomic_load(&d->state) == DST_OVER) {
		pthread_rwlock_unlock(&d->install_lock);
		return -ECANCELED;
	}
	r = map_layout(d);
	if (!r) {
		atomic_store(&d->state, DST_PRECOPY);
		atomic_store(&d->pub_state, FL_MIGRATE_STATE_PRECOPY);
	}
	pthread_rwlock_unlock(&d->install_lock);
	if (r)
		return r;
	for (;;) {
		/* Before switchover the source is always sending; after it the
		 * push may be over, and silence is the post thread's business. */
		r = fl__mig_recv(&d->bulk, d->post_started ? 0 : d->opts.timeout_ms, &h);
		if (r)
			return r;
		switch (h.type) {
		case FL_MIG_PAGE:
			r = install_page(d, &d->bulk, &h, &idx, &complete);
			if (r)
				return r;
			if (complete && d->post_started)
				fl__eventfd_signal(d->wake_fd);
			break;
		case FL_MIG_ROUND:
			if (h.length != 8 || h.flags || d->post_started)
				return fl__mig_refuse(&d->bulk, -EPROTO, "a bad ROUND");
			fl__log(&d->log, FL_LOG_DEBUG, "migrate: round %u: %u pages", fl__mig_get32(d->bulk.buf),
				fl__mig_get32(d->bulk.buf + 4));
			break;
		case FL_MIG_SWITCHOVER: {
			const void *blob = NULL;
			size_t blob_len = 0;

			if (d->post_started)
				return fl__mig_refuse(&d->bulk, -EPROTO, "a second SWITCHOVER");
			int pub = FL_MIGRATE_STATE_PRECOPY;

			/* Not over a final state that a failing thread set meanwhile. */
			atomic_compare_exchange_strong(&d->pub_state, &pub, FL_MIGRATE_STATE_SWITCHOVER);
			r = switchover(d, &h, &blob, &blob_len);
			if (r)
				return r;
			/* From here a failure poisons. */
			int expect = DST_PRECOPY;

			if (!atomic_compare_exchange_strong(&d->state, &expect, DST_POSTCOPY))
				return -ECANCELED;	/* freed meanwhile */
			d->last_progress_ns = fl__now_ns();
			r = -pthread_create(&d->post_thr, NULL, post_main, d);
			if (r)
				return r;
			d->post_started = true;
			d->opts.resume(blob, blob_len, d->opts.resume_ctx);
			r = fl__mig_send(&d->urgent, FL_MIG_RESUMED, 0, NULL, 0, NULL, 0);
			if (r)
				return r;
			atomic_store(&d->resumed, true);
			pub = FL_MIGRATE_STATE_SWITCHOVER;
			atomic_compare_exchange_strong(&d->pub_state, &pub, FL_MIGRATE_STATE_POSTCOPY);
			fl__eventfd_signal(d->wake_fd);	/* maybe complete already */
			break;
		}
		case FL_MIG_CANCEL:
			if (h.length || h.flags || d->post_started)
				return fl__mig_refuse(&d->bulk, -EPROTO, "a bad CANCEL");
			fl__log(&d->log, FL_LOG_INFO, "migrate: the source cancelled");
			return -ECANCELED;
		default:
			return fl__mig_refuse(&d->bulk, -EPROTO, "message %u on the bulk channel", h.type);
		}
	}
}

static void *bulk_main(void *arg)
{
	struct fl_migrate_dest *d = arg;
	finish(d, bulk_run(d));
	return NULL;
}

static int request_page(struct fl_migrate_dest *d, uint64_t addr)
{
	uint8_t p[8];
	unsigned ri;
	int64_t idx = -1;
	int r;

	/* A fault's address is exact or 4 KiB-aligned, also in hugetlb. */
	for (ri = 0; ri < d->nranges; ri++) {
		const struct fl__mig_range *rg = &d->ranges[ri];

		if (addr >= rg->start && addr - rg->start < rg->len) {
			idx = (int64_t)(rg->first + (addr - rg->start) / rg->page_size);
			break;
		}
	}
	if (idx < 0)
		return 0;	/* cannot be: only the layout is registered */
	if (is_present(d, (uint64_t)idx)) {
		/* Installed between the fault and its read. */
		(void)fl_uffd_wake(d->uffd, page_addr(&d->ranges[ri], (uint64_t)idx), d->ranges[ri].page_size);
		return 0;
	}
	if (atomic_fetch_or(&d->requested[idx / 64], 1ull << (idx % 64)) & (1ull << (idx % 64)))
		return 0;
	d->request_ns[idx] = fl__now_ns();
	if (!d->outstanding++)
		d->last_progress_ns = d->request_ns[idx];
	/* The wire speaks the source's addresses. */
	fl__mig_put64(p, (uint64_t)(uintptr_t)page_addr(&d->ranges[ri], (uint64_t)idx) - d->ranges[ri].start +
			 d->src_start[ri]);
	r = fl__mig_send(&d->urgent, FL_MIG_REQUEST, 0, p, sizeof(p), NULL, 0);
	if (!r)
		atomic_fetch_add(&d->requests, 1);
	return r;
}

static int post_run(struct fl_migrate_dest *d)
{
	for (;;) {
		struct pollfd p[4] = {
			{ .fd = d->uffd, .events = POLLIN },
			{ .fd = d->urgent.fd, .events = POLLIN },
			{ .fd = d->stop_fd, .events = POLLIN },
			{ .fd = d->wake_fd, .events = POLLIN },
		};
		int r;

		/* Not before RESUMED is out: DONE must follow it. Nor before
		 * every request has its answer, also when the push brought the
		 * page first: the source's urgent thread, blocked sending an
		 * answer nobody reads any more (a 2 MiB page fills a socket
		 * buffer), would never read DONE. */
		if (atomic_load(&d->resumed) && atomic_load(&d->present_count) == d->total && !d->outstanding)
			return 1;
		r = fl__poll(p, 4, 100);
		if (r < 0 && r != -EINTR)
			return r;
		if (p[2].revents)
			return 0;
		if (p[3].revents) {
			uint64_t v;

			(void)!read(d->wake_fd, &v, sizeof(v));
		}
		if (p[0].revents & POLLIN) {
			struct uffd_msg msgs[16];

			r = fl_uffd_read(d->uffd, msgs, FL_ARRAY_SIZE(msgs));
			for (int i = 0; i < r; i++) {
				if (!fl_msg_is_fault(&msgs[i]))
					continue;
				int e = request_page(d, fl_msg_fault_addr(&msgs[i]));

				if (e)
					return e;
			}
		}
		if (p[1].revents) {
			struct fl__mig_hdr h;
			bool complete;
			int64_t idx = -1;

			r = fl__mig_recv(&d->urgent, d->opts.timeout_ms, &h);
			if (r)
				return r;
			if (h.type != FL_MIG_PAGE)
				return fl__mig_refuse(&d->urgent, -EPROTO, "message %u on the urgent channel",
						      h.type);
			r = install_page(d, &d->urgent, &h, &idx, &complete);
			if (r)
				return r;
			if (d->request_ns[idx]) {
				fl__hist_add(&d->lat, fl__now_ns() - d->request_ns[idx]);
				d->request_ns[idx] = 0;
				d->outstanding--;
			}
			d->last_progress_ns = fl__now_ns();
		}
		/* A request unanswered for timeout_ms: the source hangs, or the
		 * network drops without a reset. Recovery is not built, so this
		 * is the end. */
		if (d->outstanding && fl__now_ns() - d->last_progress_ns > d->opts.timeout_ms * 1000000ull) {
			fl__log(&d->log, FL_LOG_ERROR, "migrate: %llu page requests unanswered for %u ms",
				(unsigned long long)d->outstanding, d->opts.timeout_ms);
			return -ETIMEDOUT;
		}
	}
}

static void *post_main(void *arg)
{
	struct fl_migrate_dest *d = arg;
	int r = post_run(d);

	if (r == 1) {
		/* Torn down first: once the source reads DONE it may close,
		 * and that close must find the end already reached. */
		finish(d, 0);
		(void)fl__mig_send(&d->urgent, FL_MIG_DONE, 0, NULL, 0, NULL, 0);
	} else if (r < 0)
		finish(d, r);
	return NULL;
}

int fl_migrate_dest_start(struct fl_migrate_dest *d)
{
	int r;

	if (!d)
		return -EINVAL;
	if (d->started)
		return -EALREADY;
	d->t_start = fl__now_ns();
	r = -pthread_create(&d->bulk_thr, NULL, bulk_main, d);
	if (r)
		return r;
	d->started = true;
	return 0;
}

int fl_migrate_dest_wait(struct fl_migrate_dest *d)
{
	if (!d || !d->started)
		return -EINVAL;
	pthread_mutex_lock(&d->end_lock);
	while (!d->ended)
		pthread_cond_wait(&d->end_cond, &d->end_lock);
	pthread_mutex_unlock(&d->end_lock);
	return d->result;
}

int fl_migrate_dest_stats(const struct fl_migrate_dest *dst, struct fl_migrate_stats *stats)
{
	struct fl_migrate_dest *d = (struct fl_migrate_dest *)dst;
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	int r;

	if (!d)
		return -EINVAL;
	r = fl__opts_out_check(stats);
	if (r)
		return r;
	st.total_ns = atomic_load(&d->total_ns);
	st.pages_received = atomic_load(&d->pages_received);
	st.zero_pages = atomic_load(&d->zero_pages);
	st.requests = atomic_load(&d->requests);
	st.bytes_sent = atomic_load(&d->bulk.bytes_sent) + atomic_load(&d->urgent.bytes_sent);
	st.request_p50_ns = fl__hist_quantile(&d->lat, 0.5);
	st.request_p99_ns = fl__hist_quantile(&d->lat, 0.99);
	st.request_max_ns = atomic_load(&d->lat.max);
	st.pages_moved = atomic_load(&d->pages_moved);
	st.state = atomic_load(&d->pub_state);
	/* total is written once, before the state leaves IDLE. */
	st.pages_total = st.state == FL_MIGRATE_STATE_IDLE ? 0 : d->total;
	st.pages_remaining = st.pages_total - FL_MIN(atomic_load(&d->present_count), st.pages_total);
	st.error = atomic_load(&d->error);
	return FL_OPTS_OUT(stats, st);
}

struct fl_migrate_dest *fl_migrate_dest_free(struct fl_migrate_dest *d)
{
	if (!d)
		return NULL;
	if (d->started) {
		/* Stop: a destination freed before its end fails closed. */
		finish(d, -ECANCELED);
		pthread_join(d->bulk_thr, NULL);
		if (d->post_started)
			pthread_join(d->post_thr, NULL);
	}
	if (d->uffd >= 0)
		fl__close(d->uffd);
	for (unsigned i = 0; i < d->nranges; i++)
		if (d->ranges[i].memfd >= 0)
			fl__close(d->ranges[i].memfd);
	fl__mig_chan_fini(&d->bulk);
	fl__mig_chan_fini(&d->urgent);
	pthread_rwlock_destroy(&d->install_lock);
	pthread_mutex_destroy(&d->end_lock);
	pthread_cond_destroy(&d->end_cond);
	fl__close(d->stop_fd);
	fl__close(d->wake_fd);
	free(d->present);
	free(d->requested);
	free(d->request_ns);
	free(d->zero_page);
	for (unsigned c = 0; c < 2; c++)
		if (d->stage[c].mem)
			(void)fl__munmap(d->stage[c].mem, STAGING_PAGES * FL_PAGE_SIZE);
	free(d->src_start);
	free(d->ranges);
	free(d);
	return NULL;
}

int fl_migrate_dest_ranges(const struct fl_migrate_dest *dst, struct fl_migrate_placed *arr, unsigned cap,
			   unsigned *ret_n)
{
	struct fl_migrate_dest *d = (struct fl_migrate_dest *)dst;

	if (!d || !ret_n || (cap && !arr))
		return -EINVAL;
	/* Set after the ranges are final; the ranges stay until free. */
	if (!atomic_load(&d->mapped))
		return -EAGAIN;
	for (unsigned i = 0; i < d->nranges && i < cap; i++)
		arr[i] = (struct fl_migrate_placed){
			.source_addr = (void *)(uintptr_t)d->src_start[i],
			.addr = (void *)(uintptr_t)d->ranges[i].start,
			.len = d->ranges[i].len, .mem = d->ranges[i].mem,
		};
	*ret_n = d->nranges;
	return 0;
}
