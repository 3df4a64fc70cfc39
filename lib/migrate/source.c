// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Migration source: layout, precopy rounds over write watches, switchover,
 * then urgent requests (a thread of their own) beside the background push.
 */
#include "wire.h"
#include "kernel.h"

#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>

enum src_state {
	SRC_IDLE = 0,
	SRC_PRECOPY,
	SRC_CANCELLED,
	SRC_SWITCHING,
	SRC_POSTCOPY,
	SRC_OVER,
};

struct fl_migrate_source {
	struct fl_migrate_source_opts opts;
	struct fl__logger log;
	struct fl__mig_range *ranges;
	unsigned nranges;
	uint64_t total;			/* pages in the layout */
	struct fl__mig_chan bulk, urgent;
	int stop_fd;			/* eventfd: wakes the urgent thread at the end */
	_Atomic int state;
	uint8_t *page_buf;		/* a copy of the page being sent (main thread) */
	/* After switchover: the pages the destination still needs, and which
	 * of them were sent (by the push or an answer). */
	uint8_t *need;
	_Atomic uint64_t *sent;
	int peer_error;			/* before switchover: the destination failed */
	_Atomic int urgent_result;	/* 1 running, 0 DONE, < 0 error */
	_Atomic int urgent_busy;	/* an answer is being sent: the push yields */
	uint64_t t_start, t_pause;
	_Atomic uint64_t downtime_ns;
	_Atomic uint64_t pages_sent, zero_pages, requests, pushed;
	/* Atomics: fl_migrate_source_stats() may read them while run runs. */
	_Atomic uint64_t total_ns;
	_Atomic unsigned rounds;
	_Atomic uint64_t pages_per_round[FL_MIGRATE_MAX_ROUNDS];
	/* The operator's view (enum fl_migrate_state), apart from `state`,
	 * whose values serve cancel's compare-and-swap. */
	_Atomic int pub_state, error;
	_Atomic uint64_t remaining;
};

/* What fl_migrate_source_new() allocates (also when it fails half-way). */
static void release(struct fl_migrate_source *s)
{
	if (s->stop_fd >= 0)
		fl__close(s->stop_fd);
	free(s->page_buf);
	free(s->need);
	free(s->sent);
	free(s->ranges);
	free(s);
}

int fl_migrate_source_new(const struct fl_migrate_source_opts *opts,
			  struct fl_migrate_source **ret_source)
{
	struct fl_migrate_source *s;
	uint64_t total;
	size_t max_page = FL_PAGE_SIZE;
	int r;

	if (!opts || !ret_source)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->stop_fd = -1;
	r = FL_OPTS_COPY(s->opts, opts);
	if (r)
		goto fail;
	r = -EINVAL;
	if (!s->opts.ranges || !s->opts.nranges || s->opts.nranges > FL_MIGRATE_MAX_RANGES ||
	    s->opts.bulk_fd < 0 || s->opts.urgent_fd < 0 || s->opts.bulk_fd == s->opts.urgent_fd ||
	    !s->opts.quiesce || s->opts.mode > FL_MIGRATE_HYBRID ||
	    s->opts.max_rounds > FL_MIGRATE_MAX_ROUNDS || s->opts.blob_len > FL_MIGRATE_MAX_BLOB ||
	    (s->opts.blob_len && !s->opts.blob) || (s->opts.flags & ~FL_MIGRATE_NO_PUSH))
		goto fail;
	if (!s->opts.max_rounds)
		s->opts.max_rounds = 8;
	s->log = (struct fl__logger){ s->opts.log, s->opts.log_ctx, FL_LOG_DEBUG };
	s->nranges = s->opts.nranges;
	s->ranges = calloc(s->nranges, sizeof(*s->ranges));
	if (!s->ranges) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < s->nranges; i++) {
		const struct fl_migrate_range *in = &s->opts.ranges[i];

		s->ranges[i] = (struct fl__mig_range){
			.start = (uint64_t)(uintptr_t)in->addr, .len = in->len, .mem = in->mem,
			.page_size = in->mem == FL_MEM_HUGETLB ? FL_HPAGE_SIZE : FL_PAGE_SIZE,
			.memfd = -1,
		};
		if (in->mem == FL_MEM_ANON && in->len && !fl__range_private_anon((uintptr_t)in->addr, in->len))
			goto fail;
		if (in->len && !fl__range_has_prot((uintptr_t)in->addr, in->len, PROT_READ | PROT_WRITE))
			goto fail;
		max_page = FL_MAX(max_page, s->ranges[i].page_size);
	}
	/* The caller's array is not read again. */
	s->opts.ranges = NULL;
	r = fl__mig_layout_check(s->ranges, s->nranges, &total);
	if (r) {
		r = -EINVAL;
		goto fail;
	}
	s->total = total;
	s->page_buf = malloc(max_page);
	s->need = calloc(1, (total + 7) / 8);
	s->sent = calloc((total + 63) / 64, sizeof(*s->sent));
	if (!s->page_buf || !s->need || !s->sent) {
		r = -ENOMEM;
		goto fail;
	}
	r = fl__eventfd(&s->stop_fd);
	if (r)
		goto fail;
	fl__mig_chan_init(&s->bulk, s->opts.bulk_fd, -1, "bulk", &s->log);
	fl__mig_chan_init(&s->urgent, s->opts.urgent_fd, s->stop_fd, "urgent", &s->log);
	/* Before switchover the destination writes on the urgent channel only
	 * to fail: then it stops reading the bulk one, and a send blocked on
	 * it would wait forever. */
	s->bulk.abort_fd = s->opts.urgent_fd;
	atomic_store(&s->urgent_result, 1);
	*ret_source = s;
	return 0;
fail:
	release(s);
	return r;
}

struct fl_migrate_source *fl_migrate_source_free(struct fl_migrate_source *s)
{
	if (!s)
		return NULL;
	for (unsigned i = 0; i < s->nranges; i++)
		s->ranges[i].watch = fl_watch_free(s->ranges[i].watch);
	fl__mig_chan_fini(&s->bulk);
	fl__mig_chan_fini(&s->urgent);
	release(s);
	return NULL;
}

int fl_migrate_source_cancel(struct fl_migrate_source *s)
{
	int st;

	if (!s)
		return -EINVAL;
	st = atomic_load(&s->state);
	while (st == SRC_IDLE || st == SRC_PRECOPY) {
		if (atomic_compare_exchange_weak(&s->state, &st, SRC_CANCELLED)) {
			/* Not running: run will return at once, nothing to wait for. */
			if (st == SRC_IDLE)
				atomic_store(&s->pub_state, FL_MIGRATE_STATE_CANCELLED);
			return 0;
		}
	}
	return st == SRC_CANCELLED ? 0 : -EBUSY;
}

static void *page_addr(const struct fl__mig_range *rg, uint64_t idx)
{
	return (void *)(uintptr_t)(rg->start + (idx - rg->first) * rg->page_size);
}

/*
 * Send one page. The page is copied first: during precopy the application
 * writes on, and the checksum must be of the bytes sent (a torn copy is
 * harmless: the write that tore it also marked the page for a later round).
 * buf is the calling thread's own.
 */
static int send_page(struct fl_migrate_source *s, struct fl__mig_chan *ch, const struct fl__mig_range *rg,
		     uint64_t idx, uint8_t *buf)
{
	uint8_t prefix[FL_MIG_PAGE_PREFIX];
	uint64_t addr = (uintptr_t)page_addr(rg, idx);
	int r;

	memcpy(buf, (void *)(uintptr_t)addr, rg->page_size);
	fl__mig_put64(prefix, addr);
	if (fl__mig_is_zero(buf, rg->page_size)) {
		fl__mig_put64(prefix + 8, 0);
		r = fl__mig_send(ch, FL_MIG_PAGE, FL_MIG_PAGE_ZERO, prefix, sizeof(prefix), NULL, 0);
		if (!r)
			atomic_fetch_add(&s->zero_pages, 1);
	} else {
		fl__mig_put64(prefix + 8, fl__mig_csum(buf, rg->page_size));
		r = fl__mig_send(ch, FL_MIG_PAGE, 0, prefix, sizeof(prefix), buf, rg->page_size);
	}
	if (!r)
		atomic_fetch_add(&s->pages_sent, 1);
	return r;
}

static bool cancelled(struct fl_migrate_source *s)
{
	return atomic_load(&s->state) == SRC_CANCELLED;
}

static int send_layout(struct fl_migrate_source *s)
{
	size_t len = 8 + (size_t)s->nranges * FL_MIG_RANGE_SIZE;
	uint8_t *p = calloc(1, len);
	int r;

	if (!p)
		return -ENOMEM;
	fl__mig_put32(p, s->nranges);
	for (unsigned i = 0; i < s->nranges; i++) {
		uint8_t *e = p + 8 + (size_t)i * FL_MIG_RANGE_SIZE;

		fl__mig_put64(e, s->ranges[i].start);
		fl__mig_put64(e + 8, s->ranges[i].len);
		fl__mig_put32(e + 16, (uint32_t)s->ranges[i].mem);
		fl__mig_put32(e + 20, s->ranges[i].page_size);
	}
	r = fl__mig_send(&s->bulk, FL_MIG_LAYOUT, 0, p, len, NULL, 0);
	free(p);
	return r;
}

/* The written pages of every range since the last call (reset as
 * returned), as bits of `bits` (layout indices). Returns how many. */
static int64_t collect_written(struct fl_migrate_source *s, uint8_t *bits, void **pages, uint64_t cap)
{
	int64_t n = 0;

	for (unsigned i = 0; i < s->nranges; i++) {
		struct fl__mig_range *rg = &s->ranges[i];
		int r;

		/* More written pages than the array holds stay written and
		 * come back on the next call. */
		for (;;) {
			uint64_t count = cap;

			r = fl_watch_get(rg->watch, (void *)(uintptr_t)rg->start, rg->len, FL_WATCH_RESET,
					 pages, &count, NULL);
			if (r)
				return r;
			for (uint64_t k = 0; k < count; k++) {
				uint64_t idx = rg->first + ((uintptr_t)pages[k] - rg->start) / rg->page_size;

				if (!(bits[idx / 8] & (1u << (idx % 8)))) {
					bits[idx / 8] |= (uint8_t)(1u << (idx % 8));
					n++;
				}
			}
			if (count < cap)
				break;
		}
	}
	return n;
}

/*
 * Before switchover the destination speaks only to fail: an ERROR on the
 * urgent channel (anything else there is a protocol error). Checked
 * between pages, without waiting, so that a destination that failed stops
 * the rounds with its reason, before the application is paused.
 */
static int peer_failed(struct fl_migrate_source *s)
{
	struct pollfd p = { .fd = s->urgent.fd, .events = POLLIN };
	struct fl__mig_hdr h;
	int r;

	if (s->peer_error)
		return s->peer_error;	/* the rest of its bytes mean nothing */
	if (fl__poll(&p, 1, 0) <= 0)
		return 0;
	/* A message begun is a message sent: a second is plenty. */
	r = fl__mig_recv(&s->urgent, 1000, &h);
	if (!r)
		r = fl__mig_refuse(&s->urgent, -EPROTO, "message %u before switchover", h.type);
	s->peer_error = r;
	return r;
}

static int send_marked(struct fl_migrate_source *s, const uint8_t *bits)
{
	unsigned ri = 0, sent = 0;
	uint64_t n = 0;

	for (uint64_t idx = 0; idx < s->total; idx++)
		n += (bits[idx / 8] >> (idx % 8)) & 1;
	atomic_store(&s->remaining, n);
	for (uint64_t idx = 0; idx < s->total; idx++) {
		int r;

		if (!(bits[idx / 8] & (1u << (idx % 8))))
			continue;
		if (cancelled(s))
			return -ECANCELED;
		if (++sent % 64 == 0 && (r = peer_failed(s)))
			return r;
		while (idx >= s->ranges[ri].first + s->ranges[ri].npages)
			ri++;
		r = send_page(s, &s->bulk, &s->ranges[ri], idx, s->page_buf);
		if (r)
			return r;
		atomic_fetch_sub(&s->remaining, 1);
	}
	return 0;
}

/*
 * Precopy rounds. Round 1 sends everything; each later one what was written
 * during the previous. `dirty` ends holding the pages written since the
 * last round sent (they go at switchover).
 */
static int precopy(struct fl_migrate_source *s, uint8_t *dirty)
{
	uint64_t max_npages = 0;
	void **pages;
	int r;

	for (unsigned i = 0; i < s->nranges; i++) {
		struct fl__mig_range *rg = &s->ranges[i];

		r = fl_watch_new((void *)(uintptr_t)rg->start, rg->len,
				 &(struct fl_watch_opts){ .sz = sizeof(struct fl_watch_opts),
							  .log = s->opts.log, .log_ctx = s->opts.log_ctx },
				 &rg->watch);
		if (r) {
			fl__log(&s->log, FL_LOG_ERROR, "migrate: cannot watch range %u: %s", i, strerror(-r));
			return r;
		}
		max_npages = FL_MAX(max_npages, rg->npages);
	}
	pages = calloc(FL_MIN(max_npages, 65536), sizeof(*pages));
	if (!pages)
		return -ENOMEM;
	memset(dirty, 0xff, (s->total + 7) / 8);
	uint64_t t_rounds = fl__now_ns();

	for (unsigned round = 1;; round++) {
		uint8_t rp[8];
		uint64_t n = 0;

		for (uint64_t idx = 0; idx < s->total; idx++)
			n += (dirty[idx / 8] >> (idx % 8)) & 1;
		r = send_marked(s, dirty);
		if (r)
			break;
		atomic_store(&s->pages_per_round[round - 1], n);
		atomic_store(&s->rounds, round);
		fl__mig_put32(rp, round);
		fl__mig_put32(rp + 4, (uint32_t)FL_MIN(n, UINT32_MAX));
		r = fl__mig_send(&s->bulk, FL_MIG_ROUND, 0, rp, sizeof(rp), NULL, 0);
		if (r)
			break;
		fl__log(&s->log, FL_LOG_DEBUG, "migrate: round %u sent %llu pages", round,
			(unsigned long long)n);
		memset(dirty, 0, (s->total + 7) / 8);
		/* What the application wrote while the round was sent. */
		int64_t w = collect_written(s, dirty, pages, FL_MIN(max_npages, 65536));

		if (w < 0) {
			r = (int)w;
			break;
		}
		/* Stop when another round would not shrink what is left for
		 * the switchover, or nothing is. */
		if (w == 0 || (uint64_t)w >= n || round >= s->opts.max_rounds)
			break;
		/* Writers that outpace the link never let the set shrink to
		 * nothing: past the time limit, what is left goes at switchover. */
		if (s->opts.max_precopy_ms &&
		    fl__now_ns() - t_rounds >= s->opts.max_precopy_ms * 1000000ull) {
			fl__log(&s->log, FL_LOG_INFO, "migrate: precopy time limit (%u ms) after round %u",
				s->opts.max_precopy_ms, round);
			break;
		}
	}
	free(pages);
	return r;
}

/* Urgent channel after switchover: answer requests, note RESUMED, end on
 * DONE. Answers go first: the push yields while one is being sent. */
static void *urgent_main(void *arg)
{
	struct fl_migrate_source *s = arg;
	uint8_t *buf = malloc(FL_HPAGE_SIZE);
	int r;

	if (!buf) {
		atomic_store(&s->urgent_result, -ENOMEM);
		return NULL;
	}
	for (;;) {
		struct fl__mig_hdr h;

		r = fl__mig_recv(&s->urgent, 0, &h);
		if (r)
			break;
		if (h.flags) {
			r = fl__mig_refuse(&s->urgent, -EPROTO, "flags 0x%x on message %u", h.flags, h.type);
			break;
		}
		if (h.type == FL_MIG_REQUEST) {
			unsigned ri;
			int64_t idx;

			if (h.length != 8) {
				r = fl__mig_refuse(&s->urgent, -EBADMSG, "REQUEST of %u bytes", h.length);
				break;
			}
			idx = fl__mig_page_index(s->ranges, s->nranges, fl__mig_get64(s->urgent.buf), &ri);
			if (idx < 0) {
				r = fl__mig_refuse(&s->urgent, -ERANGE, "REQUEST for 0x%llx, outside the layout",
						   (unsigned long long)fl__mig_get64(s->urgent.buf));
				break;
			}
			atomic_store(&s->urgent_busy, 1);
			if (!(atomic_fetch_or(&s->sent[idx / 64], 1ull << (idx % 64)) & (1ull << (idx % 64))) &&
			    (s->need[idx / 8] & (1u << (idx % 8))))
				atomic_fetch_sub(&s->remaining, 1);
			r = send_page(s, &s->urgent, &s->ranges[ri], (uint64_t)idx, buf);
			atomic_store(&s->urgent_busy, 0);
			atomic_fetch_add(&s->requests, 1);
			if (r)
				break;
		} else if (h.type == FL_MIG_RESUMED && h.length == 0) {
			atomic_store(&s->downtime_ns, fl__now_ns() - s->t_pause);
		} else if (h.type == FL_MIG_DONE && h.length == 0) {
			r = 0;
			break;
		} else {
			r = fl__mig_refuse(&s->urgent, h.length ? -EBADMSG : -EPROTO,
					   "message %u of %u bytes on the urgent channel", h.type, h.length);
			break;
		}
	}
	free(buf);
	atomic_store(&s->urgent_result, r);
	/* Ends a push blocked on a bulk channel the destination no longer
	 * reads (it stops once it has every page, or failed). */
	fl__eventfd_signal(s->stop_fd);
	return NULL;
}

/* The background push: every needed page not sent yet, in order. */
static int push(struct fl_migrate_source *s)
{
	unsigned ri = 0;

	for (uint64_t idx = 0; idx < s->total; idx++) {
		int r;

		if (!(s->need[idx / 8] & (1u << (idx % 8))))
			continue;
		if (atomic_load(&s->urgent_result) != 1)
			return 0;
		while (atomic_load(&s->urgent_busy))
			sched_yield();
		if (atomic_fetch_or(&s->sent[idx / 64], 1ull << (idx % 64)) & (1ull << (idx % 64)))
			continue;
		while (idx >= s->ranges[ri].first + s->ranges[ri].npages)
			ri++;
		r = send_page(s, &s->bulk, &s->ranges[ri], idx, s->page_buf);
		if (r)
			return r;
		atomic_fetch_sub(&s->remaining, 1);
		atomic_fetch_add(&s->pushed, 1);
	}
	return 0;
}

static void free_watches(struct fl_migrate_source *s)
{
	for (unsigned i = 0; i < s->nranges; i++)
		s->ranges[i].watch = fl_watch_free(s->ranges[i].watch);
}

/* Switchover and postcopy; the application is paused on entry. */
static int after_pause(struct fl_migrate_source *s, uint8_t *dirty, bool *ret_switched)
{
	size_t bitmap_len = (s->total + 7) / 8;
	uint8_t *msg;
	pthread_t thr;
	int r;

	if (s->opts.mode != FL_MIGRATE_POSTCOPY) {
		void *pages[512];
		int64_t w = collect_written(s, dirty, pages, FL_ARRAY_SIZE(pages));

		if (w < 0)
			return (int)w;
		fl__log(&s->log, FL_LOG_DEBUG, "migrate: switchover, %lld pages written since the last round",
			(long long)w);
	}
	free_watches(s);
	if (s->opts.mode == FL_MIGRATE_PRECOPY) {
		/* Stop-and-copy: the destination is complete at switchover. */
		r = send_marked(s, dirty);
		if (r)
			return r;
		memset(dirty, 0, bitmap_len);
	} else if (s->opts.mode == FL_MIGRATE_POSTCOPY) {
		memset(s->need, 0xff, bitmap_len);
	} else {
		memcpy(s->need, dirty, bitmap_len);
	}
	if (s->opts.mode != FL_MIGRATE_PRECOPY) {
		uint64_t n = 0;

		for (uint64_t idx = 0; idx < s->total; idx++)
			n += (s->need[idx / 8] >> (idx % 8)) & 1;
		atomic_store(&s->remaining, n);
	}
	msg = malloc(16 + bitmap_len);
	if (!msg)
		return -ENOMEM;
	fl__mig_put64(msg, s->total);
	fl__mig_put64(msg + 8, s->opts.blob_len);
	memcpy(msg + 16, dirty, bitmap_len);
	if (s->total % 8)
		msg[16 + bitmap_len - 1] &= (uint8_t)((1u << (s->total % 8)) - 1);
	r = fl__mig_send(&s->bulk, FL_MIG_SWITCHOVER, 0, msg, 16 + bitmap_len, s->opts.blob, s->opts.blob_len);
	free(msg);
	if (r)
		return r;
	*ret_switched = true;
	/* Requests now: the push gives up a blocked send only at the end. */
	s->bulk.abort_fd = s->stop_fd;
	atomic_store(&s->state, SRC_POSTCOPY);
	if (s->opts.mode != FL_MIGRATE_PRECOPY)
		atomic_store(&s->pub_state, FL_MIGRATE_STATE_POSTCOPY);
	r = -pthread_create(&thr, NULL, urgent_main, s);
	if (r)
		return r;
	if (s->opts.mode != FL_MIGRATE_PRECOPY && !(s->opts.flags & FL_MIGRATE_NO_PUSH))
		r = push(s);
	if (r)	/* the urgent thread waits for nothing more */
		fl__eventfd_signal(s->stop_fd);
	pthread_join(thr, NULL);
	/* DONE is the destination's word that it has every page, whatever
	 * became of a push it stopped reading. */
	if (!r || atomic_load(&s->urgent_result) == 0)
		r = atomic_load(&s->urgent_result);
	return r;
}

int fl_migrate_source_run(struct fl_migrate_source *s)
{
	int expect = SRC_IDLE, r;
	bool paused = false, switched = false;
	uint8_t *dirty;

	if (!s)
		return -EINVAL;
	if (!atomic_compare_exchange_strong(&s->state, &expect, SRC_PRECOPY))
		return expect == SRC_CANCELLED ? -ECANCELED : -EALREADY;
	s->t_start = fl__now_ns();
	atomic_store(&s->pub_state, FL_MIGRATE_STATE_PRECOPY);
	dirty = calloc(1, (s->total + 7) / 8);
	if (!dirty) {
		atomic_store(&s->error, -ENOMEM);
		atomic_store(&s->pub_state, FL_MIGRATE_STATE_FAILED);
		return -ENOMEM;
	}
	r = send_layout(s);
	if (!r && s->opts.mode != FL_MIGRATE_POSTCOPY)
		r = precopy(s, dirty);
	if (!r)
		r = peer_failed(s);
	if (r)
		goto out;
	expect = SRC_PRECOPY;
	if (!atomic_compare_exchange_strong(&s->state, &expect, SRC_SWITCHING)) {
		r = -ECANCELED;
		goto out;
	}
	atomic_store(&s->pub_state, FL_MIGRATE_STATE_SWITCHOVER);
	r = s->opts.quiesce(FL_MIGRATE_PAUSE, s->opts.quiesce_ctx);
	if (r) {
		fl__log(&s->log, FL_LOG_ERROR, "migrate: quiesce(PAUSE) failed: %s", strerror(-r));
		goto out;
	}
	paused = true;
	s->t_pause = fl__now_ns();
	r = after_pause(s, dirty, &switched);
out:
	if (r && !switched) {
		int why;

		/* A destination that failed sent ERROR, then stopped reading
		 * and closes: its reason beats what our send saw. */
		if (!cancelled(s) && (why = peer_failed(s)) < 0)
			r = why;
		free_watches(s);
		if (cancelled(s)) {
			r = -ECANCELED;
			(void)fl__mig_send(&s->bulk, FL_MIG_CANCEL, 0, NULL, 0, NULL, 0);
		} else {
			fl__mig_send_error(&s->bulk, r);
		}
		if (paused)
			(void)s->opts.quiesce(FL_MIGRATE_RESUME, s->opts.quiesce_ctx);
	}
	if (r && r != -ECANCELED)
		fl__log(&s->log, FL_LOG_ERROR, "migrate: source failed %s switchover: %s",
			switched ? "after" : "before", strerror(-r));
	atomic_store(&s->total_ns, fl__now_ns() - s->t_start);
	if (!r) {
		atomic_store(&s->remaining, 0);
		atomic_store(&s->pub_state, FL_MIGRATE_STATE_DONE);
	} else if (r == -ECANCELED && !switched && cancelled(s)) {
		atomic_store(&s->pub_state, FL_MIGRATE_STATE_CANCELLED);
	} else {
		atomic_store(&s->error, r);
		atomic_store(&s->pub_state, FL_MIGRATE_STATE_FAILED);
	}
	atomic_store(&s->state, SRC_OVER);
	free(dirty);
	return r;
}

int fl_migrate_source_stats(const struct fl_migrate_source *src, struct fl_migrate_stats *stats)
{
	struct fl_migrate_source *s = (struct fl_migrate_source *)src;
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	int r;

	if (!s)
		return -EINVAL;
	r = fl__opts_out_check(stats);
	if (r)
		return r;
	st.downtime_ns = atomic_load(&s->downtime_ns);
	st.total_ns = atomic_load(&s->total_ns);
	st.rounds = atomic_load(&s->rounds);
	for (unsigned i = 0; i < FL_MIGRATE_MAX_ROUNDS; i++)
		st.pages_per_round[i] = atomic_load(&s->pages_per_round[i]);
	st.pages_sent = atomic_load(&s->pages_sent);
	st.bytes_sent = atomic_load(&s->bulk.bytes_sent) + atomic_load(&s->urgent.bytes_sent);
	st.zero_pages = atomic_load(&s->zero_pages);
	st.requests = atomic_load(&s->requests);
	st.pushed = atomic_load(&s->pushed);
	st.state = atomic_load(&s->pub_state);
	st.pages_total = s->total;
	st.pages_remaining = atomic_load(&s->remaining);
	st.error = atomic_load(&s->error);
	return FL_OPTS_OUT(stats, st);
}
