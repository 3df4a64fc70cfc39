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
	struct fl__tls_cfg *tls;	/* NULL: plain TCP */
	uint64_t session;		/* HELLO: the source's migration */
	uint32_t epoch;			/* HELLO: the last one accepted */
	/* Recovery: whoever sees a cut sets `cut` and shuts both channels
	 * down; the bulk thread parks, the post thread reconnects. */
	pthread_mutex_t rec_lock;
	pthread_cond_t rec_cond;
	bool cut, bulk_parked;
	_Atomic unsigned recoveries;
	_Atomic uint64_t recovery_ns;
	/* Faults read and not yet resolved (post thread), and per-thread
	 * totals (under stats_lock: fl_migrate_dest_threads() reads them). */
	struct pending_fault { pid_t tid; uint64_t idx, t; } *pending;
	unsigned npending;
	pthread_mutex_t stats_lock;
	struct thread_acct { pid_t tid; uint64_t faults, blocked_ns, max_blocked_ns; } threads[FL_MIGRATE_MAX_THREADS];
	unsigned nthreads;
	uint64_t blocked_ns;
};

#define STAGING_PAGES	64u

/* Faults waiting at once: each thread waits on one at a time, so this many
 * threads; the faults of more are not timed. */
#define MAX_PENDING 4096u

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
	if (!d->opts.recovery_ms)
		d->opts.recovery_ms = 60000;
	d->log = (struct fl__logger){ d->opts.log, d->opts.log_ctx, FL_LOG_DEBUG };
	r = fl__tls_cfg_new(&(struct fl__tls_params){ .mode = d->opts.tls, .psk_identity = d->opts.psk_identity,
						      .psk_key_hex = d->opts.psk_key_hex,
						      .cert_file = d->opts.cert_file, .key_file = d->opts.key_file,
						      .ca_file = d->opts.ca_file },
			    true, &d->tls);
	if (r) {
		fl__log(&d->log, FL_LOG_ERROR, "migrate: destination TLS: %s",
			r == -EOPNOTSUPP ? FL__TLS_DISABLED_WHY : strerror(-r));
		goto fail;
	}
	r = fl__eventfd(&d->stop_fd);
	if (!r)
		r = fl__eventfd(&d->wake_fd);
	if (r)
		goto fail;
	d->zero_page = calloc(1, FL_HPAGE_SIZE);
	d->pending = calloc(MAX_PENDING, sizeof(*d->pending));
	if (!d->zero_page || !d->pending) {
		r = -ENOMEM;
		goto fail;
	}
	fl__mig_chan_init(&d->bulk, d->opts.bulk_fd, d->stop_fd, "bulk", &d->log);
	fl__mig_chan_init(&d->urgent, d->opts.urgent_fd, d->stop_fd, "urgent", &d->log);
	d->bulk.timeout_ms = d->urgent.timeout_ms = d->opts.timeout_ms;
	pthread_rwlock_init(&d->install_lock, NULL);
	pthread_mutex_init(&d->rec_lock, NULL);
	pthread_cond_init(&d->rec_cond, NULL);
	pthread_mutex_init(&d->stats_lock, NULL);
	pthread_mutex_init(&d->end_lock, NULL);
	pthread_cond_init(&d->end_cond, NULL);
	*ret_dest = d;
	return 0;
fail:
	fl__tls_cfg_free(d->tls);
	fl__close(d->stop_fd);
	fl__close(d->wake_fd);
	free(d->zero_page);
	free(d->pending);
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
				int64_t n = 0;

				r = fl__uffd_poison_run(d->uffd, (uintptr_t)addr,
							(uintptr_t)addr + run * rg->page_size, &n);
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
	/* A parked bulk thread waits for the end as for a recovery. */
	pthread_mutex_lock(&d->rec_lock);
	pthread_cond_broadcast(&d->rec_cond);
	pthread_mutex_unlock(&d->rec_lock);
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
	/* Names the faulting thread, for fl_migrate_dest_threads(). */
	if (fl_feature_has(FL_FEATURE_THREAD_ID))
		features |= fl_feature_uffd_bit(FL_FEATURE_THREAD_ID);
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

	if (h->flags & ~FL_MIG_SWITCH_NONE_STALE)
		return fl__mig_refuse(&d->bulk, -EPROTO, "SWITCHOVER flags 0x%x", h->flags);
	if (h->length < 16)
		return fl__mig_refuse(&d->bulk, -EBADMSG, "SWITCHOVER of %u bytes", h->length);
	npages = fl__mig_get64(buf);
	blob_len = fl__mig_get64(buf + 8);
	if (npages != d->total)
		return fl__mig_refuse(&d->bulk, -EPROTO, "SWITCHOVER for %llu pages, the layout has %llu",
				      (unsigned long long)npages, (unsigned long long)d->total);
	bitmap_len = h->flags & FL_MIG_SWITCH_NONE_STALE ? 0 : (npages + 7) / 8;
	if (blob_len > FL_MIGRATE_MAX_BLOB || h->length != 16 + bitmap_len + blob_len)
		return fl__mig_refuse(&d->bulk, -EBADMSG, "SWITCHOVER of %u bytes, blob %llu", h->length,
				      (unsigned long long)blob_len);
	bits = buf + 16;
	for (unsigned i = 0; i < d->nranges && bitmap_len; i++) {
		const struct fl__mig_range *rg = &d->ranges[i];
		uint64_t end = rg->first + rg->npages;

		for (uint64_t idx = rg->first; idx < end; idx++) {
			uint64_t run = 0;
			int r;

			/* Down time: the clear stretches go a word at a time. */
			if (idx % 64 == 0) {
				uint64_t w;

				while (idx + 64 <= end && (memcpy(&w, bits + idx / 8, 8), w == 0))
					idx += 64;
				if (idx >= end)
					break;
			}
			while (idx + run < end && (bits[(idx + run) / 8] >> ((idx + run) % 8) & 1))
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

/*
 * TLS (as the server), then each channel's HELLO, bulk first. At first
 * (epoch 0 expected) the session is learnt; on a reconnection it must be
 * the same and the epoch newer than the last accepted.
 */
static int open_channels(struct fl_migrate_dest *d, bool reconnect, unsigned timeout_ms)
{
	uint64_t deadline = fl__now_ns() + timeout_ms * 1000000ull;
	struct fl__mig_chan *chans[2] = { &d->bulk, &d->urgent };
	struct fl__mig_hello hello[2];
	int r;

	for (unsigned i = 0; i < 2; i++) {
		struct fl__mig_hello *h = &hello[i];

		r = fl__mig_set_nonblock(chans[i]->fd);
		if (!r)
			r = fl__mig_chan_tls(chans[i], d->tls, true, NULL, deadline);
		if (!r)
			r = fl__mig_hello_recv(chans[i], timeout_ms, h);
		if (r)
			return r;
		if (h->channel != i)
			return fl__mig_refuse(chans[i], -EPROTO, "HELLO for the %s channel on the %s one",
					      h->channel == FL_MIG_CHAN_URGENT ? "urgent" :
					      h->channel == FL_MIG_CHAN_BULK ? "bulk" : "unknown", chans[i]->name);
		if (i == 1 && (h->session != hello[0].session || h->epoch != hello[0].epoch))
			return fl__mig_refuse(chans[i], -EPROTO, "HELLO of another session or epoch than bulk's");
		if (i == 0 && !reconnect && h->epoch != 0)
			return fl__mig_refuse(chans[i], -EPROTO, "first HELLO with epoch %u", h->epoch);
		if (i == 0 && reconnect && h->session != d->session)
			return fl__mig_refuse(chans[i], -EPROTO, "reconnection from another migration (session "
					      "%016llx, ours %016llx)", (unsigned long long)h->session,
					      (unsigned long long)d->session);
		if (i == 0 && reconnect && h->epoch <= d->epoch)
			return fl__mig_refuse(chans[i], -EPROTO, "reconnection with a stale epoch %u (last %u)",
					      h->epoch, d->epoch);
		r = fl__mig_hello_ack(chans[i], h);
		if (r)
			return r;
	}
	d->session = hello[0].session;
	d->epoch = hello[0].epoch;
	return 0;
}

/* A cut after switchover: stop using both channels; shutting them down
 * wakes our own blocked I/O and tells the source. */
static void note_cut(struct fl_migrate_dest *d, int why)
{
	pthread_mutex_lock(&d->rec_lock);
	if (!d->cut) {
		fl__log(&d->log, FL_LOG_ERROR, "migrate: connection cut after switchover (%s): recovering",
			strerror(-why));
		d->cut = true;
		fl__mig_chan_shutdown(&d->bulk);
		fl__mig_chan_shutdown(&d->urgent);
	}
	pthread_cond_broadcast(&d->rec_cond);
	pthread_mutex_unlock(&d->rec_lock);
	fl__eventfd_signal(d->wake_fd);
}

static bool is_cut(struct fl_migrate_dest *d)
{
	bool cut;

	pthread_mutex_lock(&d->rec_lock);
	cut = d->cut;
	pthread_mutex_unlock(&d->rec_lock);
	return cut;
}

/* The bulk thread's wait while the post thread recovers: true to go on,
 * false when the migration ended meanwhile. */
static bool bulk_park(struct fl_migrate_dest *d)
{
	bool go;

	pthread_mutex_lock(&d->rec_lock);
	d->bulk_parked = true;
	pthread_cond_broadcast(&d->rec_cond);
	while (d->cut && atomic_load(&d->state) != DST_OVER)
		pthread_cond_wait(&d->rec_cond, &d->rec_lock);
	d->bulk_parked = false;
	go = !d->cut && atomic_load(&d->state) != DST_OVER;
	pthread_mutex_unlock(&d->rec_lock);
	return go;
}

static void account_thread(struct fl_migrate_dest *d, pid_t tid, uint64_t blocked)
{
	unsigned i;

	pthread_mutex_lock(&d->stats_lock);
	d->blocked_ns += blocked;
	for (i = 0; i < d->nthreads && d->threads[i].tid != tid; i++)
		;
	if (i == d->nthreads && i < FL_MIGRATE_MAX_THREADS)
		d->threads[d->nthreads++] = (struct thread_acct){ .tid = tid };
	if (i < d->nthreads) {
		d->threads[i].faults++;
		d->threads[i].blocked_ns += blocked;
		d->threads[i].max_blocked_ns = FL_MAX(d->threads[i].max_blocked_ns, blocked);
	}
	pthread_mutex_unlock(&d->stats_lock);
}

/* Account the waiting faults whose page arrived. */
static void settle_pending(struct fl_migrate_dest *d)
{
	uint64_t now = fl__now_ns();

	for (unsigned i = 0; i < d->npending;) {
		struct pending_fault *f = &d->pending[i];

		if (!is_present(d, f->idx)) {
			i++;
			continue;
		}
		account_thread(d, f->tid, now - f->t);
		*f = d->pending[--d->npending];
	}
}


static int bulk_run(struct fl_migrate_dest *d)
{
	struct fl__mig_hdr h;
	bool complete;
	int64_t idx;
	int r;

	r = open_channels(d, false, d->opts.timeout_ms);
	if (r) {
		/* The source waits on bulk (its TLS handshake or HELLO_ACK):
		 * tell it there. Plain text when TLS failed, but not to a TLS
		 * peer we refused: the TLS alert told it already. */
		if (!d->tls || d->bulk.tls || r == -EPROTO)
			fl__mig_send_error(&d->bulk, r);
		return r;
	}
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
		if (r && d->post_started && d->opts.reconnect && (fl__mig_is_cut(&d->bulk, r) || is_cut(d))) {
			/* Recovery: the post thread reconnects; bulk goes on
			 * over the new connection. */
			note_cut(d, r);
			if (!bulk_park(d))
				return r;
			continue;
		}
		if (r)
			return r;
		switch (h.type) {
		case FL_MIG_PAGE:
			r = install_page(d, &d->bulk, &h, &idx, &complete);
			if (r)
				return r;
			/* A faulting thread may wait for this one: time it. */
			if (d->post_started && (complete || (atomic_load(&d->requested[idx / 64]) &
							     (1ull << (idx % 64)))))
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
			/* Resumed all the same: after a recovery RESUMED goes again. */
			atomic_store(&d->resumed, true);
			if (r && d->opts.reconnect && fl__mig_is_cut(&d->urgent, r)) {
				note_cut(d, r);
				r = 0;
			}
			if (r)
				return r;
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

/* Ask for page idx of range ri; the wire speaks the source's addresses. */
static int send_request(struct fl_migrate_dest *d, unsigned ri, uint64_t idx)
{
	const struct fl__mig_range *rg = &d->ranges[ri];
	uint8_t p[8];
	int r;

	fl__mig_put64(p, (uint64_t)(uintptr_t)page_addr(rg, idx) - rg->start + d->src_start[ri]);
	r = fl__mig_send(&d->urgent, FL_MIG_REQUEST, 0, p, sizeof(p), NULL, 0);
	if (!r)
		atomic_fetch_add(&d->requests, 1);
	return r;
}

/* A fault: note who waits, and ask for the page unless it is here or asked
 * for already. During a recovery (send false) it is only noted: the
 * requests go again once reconnected. */
static int request_page(struct fl_migrate_dest *d, const struct uffd_msg *msg, bool send)
{
	uint64_t addr = fl_msg_fault_addr(msg);
	unsigned ri;
	int64_t idx = -1;

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
	if (d->npending < MAX_PENDING)
		d->pending[d->npending++] = (struct pending_fault){
			.tid = (pid_t)fl_msg_fault_tid(msg), .idx = (uint64_t)idx, .t = fl__now_ns() };
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
	return send ? send_request(d, ri, (uint64_t)idx) : 0;
}

static int read_faults(struct fl_migrate_dest *d, bool send)
{
	struct uffd_msg msgs[16];
	int r = fl_uffd_read(d->uffd, msgs, FL_ARRAY_SIZE(msgs));

	if (r < 0 && r != -EAGAIN && r != -EINTR) {
		fl__log(&d->log, FL_LOG_ERROR, "migrate: cannot read faults: %s", strerror(-r));
		return r;
	}
	/* Every fault read is noted, also after a failed send: a fault
	 * dropped here would be asked for by nobody, after a recovery too. */
	int err = 0;

	for (int i = 0; i < r; i++) {
		if (!fl_msg_is_fault(&msgs[i]))
			continue;
		int e = request_page(d, &msgs[i], send && !err);

		if (e && !err)
			err = e;
	}
	return err;
}

/* After a reconnection: what is here (RECEIVED on bulk), then every
 * outstanding request again (urgent), then RESUMED again if it was sent. */
static int after_reconnect(struct fl_migrate_dest *d)
{
	size_t bitmap_len = (d->total + 7) / 8;
	uint8_t *msg = calloc(1, 8 + bitmap_len);
	int r;

	if (!msg)
		return -ENOMEM;
	fl__mig_put64(msg, d->total);
	for (uint64_t idx = 0; idx < d->total; idx++)
		if (is_present(d, idx))
			msg[8 + idx / 8] |= (uint8_t)(1u << (idx % 8));
	r = fl__mig_send(&d->bulk, FL_MIG_RECEIVED, 0, msg, 8 + bitmap_len, NULL, 0);
	free(msg);
	for (unsigned i = 0; !r && i < d->nranges; i++) {
		const struct fl__mig_range *rg = &d->ranges[i];

		for (uint64_t idx = rg->first; !r && idx < rg->first + rg->npages; idx++) {
			if (!d->request_ns[idx])
				continue;	/* not asked for, or answered */
			if (is_present(d, idx)) {
				/* Its answer was lost, the page came anyway. */
				d->request_ns[idx] = 0;
				d->outstanding--;
				continue;
			}
			r = send_request(d, i, idx);
		}
	}
	if (!r && atomic_load(&d->resumed))
		r = fl__mig_send(&d->urgent, FL_MIG_RESUMED, 0, NULL, 0, NULL, 0);
	return r;
}

/*
 * Recovery (post thread): the bulk thread parks; faults are read and noted
 * meanwhile, their threads stay blocked. reconnect() until a new pair of
 * connections passes TLS and HELLO (same session, newer epoch) or
 * recovery_ms has passed since the cut: -ETIMEDOUT, and the caller fails
 * closed.
 */
static int recover(struct fl_migrate_dest *d)
{
	uint64_t t0 = fl__now_ns(), deadline = t0 + d->opts.recovery_ms * 1000000ull;
	unsigned backoff_ms = 20;
	int r, pub = FL_MIGRATE_STATE_POSTCOPY;

	if (!atomic_compare_exchange_strong(&d->pub_state, &pub, FL_MIGRATE_STATE_RECOVERING) &&
	    pub == FL_MIGRATE_STATE_SWITCHOVER)
		atomic_compare_exchange_strong(&d->pub_state, &pub, FL_MIGRATE_STATE_RECOVERING);
	pthread_mutex_lock(&d->rec_lock);
	while (!d->bulk_parked && atomic_load(&d->state) != DST_OVER) {
		pthread_mutex_unlock(&d->rec_lock);
		/* The bulk thread may be inside resume(), itself waiting on a
		 * missing page: it cannot park, so this gives up in time and
		 * the fault fails closed. */
		if (fl__now_ns() >= deadline) {
			fl__log(&d->log, FL_LOG_ERROR,
				"migrate: no recovery within %u ms (the bulk thread did not come to a stop)",
				d->opts.recovery_ms);
			return -ETIMEDOUT;
		}
		(void)read_faults(d, false);
		(void)fl__sleep_until(fl__now_ns() + 5000000, d->stop_fd);
		pthread_mutex_lock(&d->rec_lock);
	}
	pthread_mutex_unlock(&d->rec_lock);
	for (;;) {
		int bulk = -1, urgent = -1;

		if (atomic_load(&d->state) == DST_OVER)
			return -ECANCELED;
		r = read_faults(d, false);
		if (r)
			return r;
		if (fl__now_ns() >= deadline) {
			fl__log(&d->log, FL_LOG_ERROR, "migrate: no recovery within %u ms", d->opts.recovery_ms);
			return -ETIMEDOUT;
		}
		r = d->opts.reconnect(d->opts.reconnect_ctx, &bulk, &urgent);
		if (!r && (bulk < 0 || urgent < 0 || bulk == urgent)) {
			fl__close(bulk);
			fl__close(urgent);
			r = -EINVAL;
		}
		if (!r) {
			unsigned left = (unsigned)FL_MAX((deadline - FL_MIN(fl__now_ns(), deadline)) / 1000000, 1);

			fl__mig_chan_replace(&d->bulk, bulk, true);
			fl__mig_chan_replace(&d->urgent, urgent, true);
			r = open_channels(d, true, FL_MIN(left, d->opts.timeout_ms));
			if (!r)
				r = after_reconnect(d);
			if (!r)
				break;
			fl__mig_chan_replace(&d->bulk, -1, false);
			fl__mig_chan_replace(&d->urgent, -1, false);
		}
		fl__log(&d->log, FL_LOG_DEBUG, "migrate: reconnection failed: %s", strerror(-r));
		(void)fl__sleep_until(FL_MIN(fl__now_ns() + backoff_ms * 1000000ull, deadline), d->stop_fd);
		backoff_ms = FL_MIN(backoff_ms * 2, 500u);
	}
	atomic_fetch_add(&d->recoveries, 1);
	atomic_fetch_add(&d->recovery_ns, fl__now_ns() - t0);
	fl__log(&d->log, FL_LOG_INFO, "migrate: recovered (epoch %u)", d->epoch);
	pub = FL_MIGRATE_STATE_RECOVERING;
	atomic_compare_exchange_strong(&d->pub_state, &pub,
				       atomic_load(&d->resumed) ? FL_MIGRATE_STATE_POSTCOPY : FL_MIGRATE_STATE_SWITCHOVER);
	d->last_progress_ns = fl__now_ns();
	pthread_mutex_lock(&d->rec_lock);
	d->cut = false;
	pthread_cond_broadcast(&d->rec_cond);
	pthread_mutex_unlock(&d->rec_lock);
	return 0;
}

static int post_step(struct fl_migrate_dest *d)
{
	struct pollfd p[4] = {
		{ .fd = d->uffd, .events = POLLIN },
		{ .fd = d->urgent.fd, .events = POLLIN },
		{ .fd = d->stop_fd, .events = POLLIN },
		{ .fd = d->wake_fd, .events = POLLIN },
	};
	int r;

	/* Bytes already buffered: no wait, but faults and stop are still
	 * looked at, so a stream of answers never starves new faults. */
	bool buffered = fl__mig_chan_readable(&d->urgent);

	r = fl__poll(p, 4, buffered ? 0 : 100);
	if (r < 0 && r != -EINTR)
		return r;
	if (buffered)
		p[1].revents |= POLLIN;
	if (p[2].revents)
		return 2;
	if (p[3].revents) {
		uint64_t v;

		(void)!read(d->wake_fd, &v, sizeof(v));
	}
	if (p[0].revents & POLLIN) {
		r = read_faults(d, true);
		if (r)
			return r;
	}
	if (p[1].revents) {
		struct fl__mig_hdr h;
		bool complete;
		int64_t idx = -1;

		r = fl__mig_recv(&d->urgent, d->opts.timeout_ms, &h);
		if (r)
			return r;
		if (h.type != FL_MIG_PAGE)
			return fl__mig_refuse(&d->urgent, -EPROTO, "message %u on the urgent channel", h.type);
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
	settle_pending(d);
	/* A request unanswered for timeout_ms: the source hangs, or the
	 * network drops without a reset. */
	if (d->outstanding && fl__now_ns() - d->last_progress_ns > d->opts.timeout_ms * 1000000ull) {
		fl__log(&d->log, FL_LOG_ERROR, "migrate: %llu page requests unanswered for %u ms",
			(unsigned long long)d->outstanding, d->opts.timeout_ms);
		return -ETIMEDOUT;
	}
	return 0;
}

static int post_run(struct fl_migrate_dest *d)
{
	for (;;) {
		int r;

		/* Not before RESUMED is out: DONE must follow it. Nor before
		 * every request has its answer, also when the push brought the
		 * page first: the source's urgent thread, blocked sending an
		 * answer nobody reads any more (a 2 MiB page fills a socket
		 * buffer), would never read DONE. */
		if (atomic_load(&d->resumed) && atomic_load(&d->present_count) == d->total && !d->outstanding &&
		    !is_cut(d)) {
			settle_pending(d);
			return 1;
		}
		r = post_step(d);
		if (r == 2)
			return 0;
		if (!r && !is_cut(d))
			continue;
		if (r && (!d->opts.reconnect || !(fl__mig_is_cut(&d->urgent, r) || is_cut(d))))
			return r;
		note_cut(d, r ? r : -ECONNRESET);
		r = recover(d);
		if (r)
			return r;
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
	st.recoveries = atomic_load(&d->recoveries);
	st.recovery_ns = atomic_load(&d->recovery_ns);
	pthread_mutex_lock(&d->stats_lock);
	st.blocked_ns = d->blocked_ns;
	pthread_mutex_unlock(&d->stats_lock);
	return FL_OPTS_OUT(stats, st);
}

int fl_migrate_dest_threads(const struct fl_migrate_dest *dst, struct fl_migrate_thread_stats *arr,
			    unsigned cap, unsigned *ret_n)
{
	struct fl_migrate_dest *d = (struct fl_migrate_dest *)dst;
	size_t sz;

	if (!d || !ret_n || (cap && !arr))
		return -EINVAL;
	sz = cap ? arr[0].sz : 0;
	if (cap && (sz < offsetof(struct fl_migrate_thread_stats, tid) + sizeof(pid_t) ||
		    sz > sizeof(struct fl_migrate_thread_stats) + 4096))
		return -EINVAL;
	pthread_mutex_lock(&d->stats_lock);
	for (unsigned i = 0; i < cap && i < d->nthreads; i++) {
		struct fl_migrate_thread_stats t = {
			.sz = sz, .tid = d->threads[i].tid, .faults = d->threads[i].faults,
			.blocked_ns = d->threads[i].blocked_ns, .max_blocked_ns = d->threads[i].max_blocked_ns,
		};
		uint8_t *out = (uint8_t *)arr + (size_t)i * sz;

		/* Elements are sz apart: a caller built against another
		 * version of the struct gets what both know, zeros after. */
		memset(out, 0, sz);
		memcpy(out, &t, FL_MIN(sz, sizeof(t)));
	}
	*ret_n = d->nthreads;
	pthread_mutex_unlock(&d->stats_lock);
	return 0;
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
	pthread_mutex_destroy(&d->rec_lock);
	pthread_cond_destroy(&d->rec_cond);
	pthread_mutex_destroy(&d->stats_lock);
	fl__tls_cfg_free(d->tls);
	free(d->pending);
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
