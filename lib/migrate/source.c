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

/*
 * PAGE messages gathered for one sendmsg(): one syscall for up to
 * BATCH_PAGES pages instead of one each. Bounded so that a batch is a
 * short stretch of CPU and of socket buffer (64 KiB, 0.5 ms at 1 Gbit/s):
 * the push yields to urgent answers between pages, never in a batch's
 * send. A huge page goes alone.
 */
#define BATCH_PAGES 16u
#define BATCH_BYTES (BATCH_PAGES * FL_PAGE_SIZE)
#define BATCH_HEAD (FL_MIG_HDR_SIZE + FL_MIG_PAGE_PREFIX)

struct fl_migrate_source {
	struct fl_migrate_source_opts opts;
	struct fl__logger log;
	struct fl__mig_range *ranges;
	unsigned nranges;
	uint64_t total;			/* pages in the layout */
	struct fl__mig_chan bulk, urgent;
	int stop_fd;			/* eventfd: wakes the urgent thread at the end */
	_Atomic int state;
	uint8_t *page_buf;		/* copies of the pages being sent (main thread) */
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
	struct fl__tls_cfg *tls;	/* NULL: plain TCP */
	uint64_t session;		/* HELLO: this migration */
	uint32_t epoch;			/* HELLO: 0, then one more per reconnection attempt */
	/* Recovery after switchover: whoever sees the cut sets `cut` and
	 * shuts both channels down; the urgent thread parks, the main thread
	 * reconnects and clears `cut`. */
	pthread_mutex_t rec_lock;
	pthread_cond_t rec_cond;
	bool cut, urgent_parked, stopping;
	_Atomic bool push_done;		/* no push pending: DONE is due */
	_Atomic uint64_t hint;		/* push priority: the page after a request (+1; 0 none) */
	_Atomic unsigned recoveries;
	_Atomic uint64_t recovery_ns;
};

/* What fl_migrate_source_new() allocates (also when it fails half-way). */
static void release(struct fl_migrate_source *s)
{
	fl__tls_cfg_free(s->tls);
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
	if (!s->opts.timeout_ms)
		s->opts.timeout_ms = 10000;
	if (!s->opts.recovery_ms)
		s->opts.recovery_ms = 60000;
	s->log = (struct fl__logger){ s->opts.log, s->opts.log_ctx, FL_LOG_DEBUG };
	r = fl__tls_cfg_new(&(struct fl__tls_params){ .mode = s->opts.tls, .psk_identity = s->opts.psk_identity,
						      .psk_key_hex = s->opts.psk_key_hex,
						      .cert_file = s->opts.cert_file, .key_file = s->opts.key_file,
						      .ca_file = s->opts.ca_file },
			    false, &s->tls);
	if (r) {
		fl__log(&s->log, FL_LOG_ERROR, "migrate: source TLS: %s",
			r == -EOPNOTSUPP ? FL__TLS_DISABLED_WHY : strerror(-r));
		goto fail;
	}
	r = fl__random(&s->session, sizeof(s->session));
	if (r)
		goto fail;
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
	s->page_buf = malloc(FL_MAX(max_page, BATCH_BYTES));
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
	s->bulk.timeout_ms = s->urgent.timeout_ms = s->opts.timeout_ms;
	pthread_mutex_init(&s->rec_lock, NULL);
	pthread_cond_init(&s->rec_cond, NULL);
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
	pthread_mutex_destroy(&s->rec_lock);
	pthread_cond_destroy(&s->rec_cond);
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

/* Send one page, the answer to a request: after switchover the memory is
 * only read, so its bytes go as they are (the rounds copy first: see
 * batch_add()). */
static int send_page(struct fl_migrate_source *s, struct fl__mig_chan *ch, const struct fl__mig_range *rg,
		     uint64_t idx)
{
	uint8_t prefix[FL_MIG_PAGE_PREFIX];
	uint64_t addr = (uintptr_t)page_addr(rg, idx);
	const uint8_t *bytes = (const uint8_t *)(uintptr_t)addr;
	int r;

	fl__mig_put64(prefix, addr);
	if (fl__mig_is_zero(bytes, rg->page_size)) {
		fl__mig_put64(prefix + 8, 0);
		r = fl__mig_send(ch, FL_MIG_PAGE, FL_MIG_PAGE_ZERO, prefix, sizeof(prefix), NULL, 0);
		if (!r)
			atomic_fetch_add(&s->zero_pages, 1);
	} else {
		fl__mig_put64(prefix + 8, fl__mig_csum(bytes, rg->page_size));
		r = fl__mig_send(ch, FL_MIG_PAGE, 0, prefix, sizeof(prefix), bytes, rg->page_size);
	}
	if (!r)
		atomic_fetch_add(&s->pages_sent, 1);
	return r;
}

struct page_batch {
	struct fl_migrate_source *s;
	struct fl__mig_chan *ch;
	uint8_t *copy;		/* copies of the pages (before switchover); NULL: sent from memory */
	size_t bytes;		/* page bytes in the batch */
	unsigned n, niov;
	uint64_t zeros;
	uint8_t head[BATCH_PAGES][BATCH_HEAD];
	struct iovec iov[2 * BATCH_PAGES];
};

static void batch_init(struct page_batch *b, struct fl_migrate_source *s, struct fl__mig_chan *ch, uint8_t *copy)
{
	b->s = s;
	b->ch = ch;
	b->copy = copy;
	b->bytes = 0;
	b->n = b->niov = 0;
	b->zeros = 0;
}

static int batch_flush(struct page_batch *b)
{
	int r;

	if (!b->n)
		return 0;
	r = fl__mig_send_iov(b->ch, b->iov, (int)b->niov);
	if (!r) {
		atomic_fetch_add(&b->s->pages_sent, b->n);
		atomic_fetch_add(&b->s->zero_pages, b->zeros);
	}
	b->bytes = 0;
	b->n = b->niov = 0;
	b->zeros = 0;
	return r;
}

/* Add a page, sending the batch first when the page does not fit. */
static int batch_add(struct page_batch *b, const struct fl__mig_range *rg, uint64_t idx)
{
	uint64_t addr = (uintptr_t)page_addr(rg, idx);
	const uint8_t *bytes = (const uint8_t *)(uintptr_t)addr;
	uint8_t *h;
	int r;

	if (b->n == BATCH_PAGES || (b->n && b->bytes + rg->page_size > BATCH_BYTES)) {
		r = batch_flush(b);
		if (r)
			return r;
	}
	if (b->copy) {
		memcpy(b->copy + b->bytes, bytes, rg->page_size);
		bytes = b->copy + b->bytes;
	}
	h = b->head[b->n++];
	fl__mig_put64(h + FL_MIG_HDR_SIZE, addr);
	b->iov[b->niov++] = (struct iovec){ h, BATCH_HEAD };
	if (fl__mig_is_zero(bytes, rg->page_size)) {
		fl__mig_put_hdr(h, FL_MIG_PAGE, FL_MIG_PAGE_PREFIX, FL_MIG_PAGE_ZERO);
		fl__mig_put64(h + FL_MIG_HDR_SIZE + 8, 0);
		b->zeros++;
	} else {
		fl__mig_put_hdr(h, FL_MIG_PAGE, FL_MIG_PAGE_PREFIX + rg->page_size, 0);
		fl__mig_put64(h + FL_MIG_HDR_SIZE + 8, fl__mig_csum(bytes, rg->page_size));
		b->iov[b->niov++] = (struct iovec){ (void *)bytes, rg->page_size };
		b->bytes += rg->page_size;
	}
	return 0;
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
	struct fl__mig_hdr h;
	int r;

	if (s->peer_error)
		return s->peer_error;	/* the rest of its bytes mean nothing */
	if (!fl__mig_chan_readable(&s->urgent))
		return 0;
	/* A message begun is a message sent: a second is plenty. */
	r = fl__mig_recv(&s->urgent, 1000, &h);
	if (!r)
		r = fl__mig_refuse(&s->urgent, -EPROTO, "message %u before switchover", h.type);
	s->peer_error = r;
	return r;
}

/* Pages marked: the bits past the layout's last page are never set. */
static uint64_t count_bits(const uint8_t *bits, size_t len)
{
	uint64_t n = 0;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, bits + i, 8);
		n += (uint64_t)__builtin_popcountll(w);
	}
	for (; i < len; i++)
		n += (uint64_t)__builtin_popcount(bits[i]);
	return n;
}

/* Send the n pages marked in bits; copy: the application may be writing
 * them. */
static int send_marked(struct fl_migrate_source *s, const uint8_t *bits, uint64_t n, bool copy)
{
	struct page_batch b;
	unsigned ri = 0, sent = 0;

	batch_init(&b, s, &s->bulk, copy ? s->page_buf : NULL);
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
		r = batch_add(&b, &s->ranges[ri], idx);
		if (r)
			return r;
		atomic_fetch_sub(&s->remaining, 1);
	}
	return batch_flush(&b);
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
	if (s->total % 8)
		dirty[(s->total + 7) / 8 - 1] = (uint8_t)((1u << (s->total % 8)) - 1);
	uint64_t t_rounds = fl__now_ns();

	for (unsigned round = 1;; round++) {
		uint8_t rp[8];
		uint64_t n = count_bits(dirty, (s->total + 7) / 8);

		r = send_marked(s, dirty, n, true);
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

/*
 * TLS, then HELLO on each channel, bulk first: the destination answers in
 * the same order. epoch 0 at first, a new one for every reconnection.
 */
static int open_channels(struct fl_migrate_source *s, uint32_t epoch, unsigned timeout_ms)
{
	uint64_t deadline = fl__now_ns() + timeout_ms * 1000000ull;
	struct fl__mig_chan *chans[2] = { &s->bulk, &s->urgent };
	int r;

	/* Channel by channel: a TLS 1.3 server's refusal of our certificate
	 * arrives after our handshake, and is read while HELLO_ACK is due. */
	for (unsigned i = 0; i < 2; i++) {
		struct fl__mig_hello hello = { .session = s->session, .channel = i, .epoch = epoch };

		r = fl__mig_set_nonblock(chans[i]->fd);
		if (!r)
			r = fl__mig_chan_tls(chans[i], s->tls, false, s->opts.server_name, deadline);
		if (!r)
			r = fl__mig_hello_client(chans[i], &hello, timeout_ms);
		if (r)
			return r;
	}
	return 0;
}

/* A cut after switchover: both sides stop using the channels. Shutting them
 * down wakes our own blocked sends and receives and tells the peer. */
static void note_cut(struct fl_migrate_source *s, int why)
{
	pthread_mutex_lock(&s->rec_lock);
	if (!s->cut) {
		fl__log(&s->log, FL_LOG_ERROR, "migrate: connection cut after switchover (%s)%s", strerror(-why),
			s->opts.reconnect ? ": recovering" : "");
		s->cut = true;
		fl__mig_chan_shutdown(&s->bulk);
		fl__mig_chan_shutdown(&s->urgent);
	}
	pthread_cond_broadcast(&s->rec_cond);
	pthread_mutex_unlock(&s->rec_lock);
}

/* Answer requests, note RESUMED, end on DONE. Answers go first: the push
 * yields while one is being sent. The destination is allowed silence except
 * while RESUMED is due, or DONE after the push ended. */
static int serve_urgent(struct fl_migrate_source *s)
{
	uint64_t quiet_since = fl__now_ns();
	bool no_push = s->opts.mode != FL_MIGRATE_PRECOPY && (s->opts.flags & FL_MIGRATE_NO_PUSH);

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = s->urgent.fd, .events = POLLIN },
			{ .fd = s->stop_fd, .events = POLLIN },
		};
		bool due = !atomic_load(&s->downtime_ns) || (atomic_load(&s->push_done) && !no_push);
		struct fl__mig_hdr h;
		int r;

		if (!fl__mig_chan_readable(&s->urgent)) {
			r = fl__poll(p, 2, 100);
			if (r < 0 && r != -EINTR)
				return r;
			if (p[1].revents)
				return -ECANCELED;
			if (!(p[0].revents)) {
				if (due && fl__now_ns() - quiet_since > s->opts.timeout_ms * 1000000ull)
					return fl__mig_refuse(&s->urgent, -ETIMEDOUT, "the destination silent for %u ms",
							      s->opts.timeout_ms);
				if (!due)
					quiet_since = fl__now_ns();
				continue;
			}
		}
		r = fl__mig_recv(&s->urgent, s->opts.timeout_ms, &h);
		if (r)
			return r;
		quiet_since = fl__now_ns();
		if (h.flags)
			return fl__mig_refuse(&s->urgent, -EPROTO, "flags 0x%x on message %u", h.flags, h.type);
		if (h.type == FL_MIG_REQUEST) {
			const struct fl__mig_range *rg;
			unsigned ri;
			int64_t idx;

			if (h.length != 8)
				return fl__mig_refuse(&s->urgent, -EBADMSG, "REQUEST of %u bytes", h.length);
			idx = fl__mig_page_index(s->ranges, s->nranges, fl__mig_get64(s->urgent.buf), &ri);
			if (idx < 0)
				return fl__mig_refuse(&s->urgent, -ERANGE, "REQUEST for 0x%llx, outside the layout",
						      (unsigned long long)fl__mig_get64(s->urgent.buf));
			rg = &s->ranges[ri];
			/* A thread that faulted here is likely to go on to the
			 * next pages: the push goes there next. */
			if ((uint64_t)idx + 1 < rg->first + rg->npages)
				atomic_store(&s->hint, (uint64_t)idx + 2);
			atomic_store(&s->urgent_busy, 1);
			if (!(atomic_fetch_or(&s->sent[idx / 64], 1ull << (idx % 64)) & (1ull << (idx % 64))) &&
			    (s->need[idx / 8] & (1u << (idx % 8))))
				atomic_fetch_sub(&s->remaining, 1);
			r = send_page(s, &s->urgent, rg, (uint64_t)idx);
			atomic_store(&s->urgent_busy, 0);
			atomic_fetch_add(&s->requests, 1);
			if (r)
				return r;
		} else if (h.type == FL_MIG_RESUMED && h.length == 0) {
			uint64_t zero = 0;

			/* Once: after a recovery the destination says it again. */
			atomic_compare_exchange_strong(&s->downtime_ns, &zero, fl__now_ns() - s->t_pause);
		} else if (h.type == FL_MIG_DONE && h.length == 0) {
			return 0;
		} else {
			return fl__mig_refuse(&s->urgent, h.length ? -EBADMSG : -EPROTO,
					      "message %u of %u bytes on the urgent channel", h.type, h.length);
		}
	}
}

static void *urgent_main(void *arg)
{
	struct fl_migrate_source *s = arg;
	int r;

	for (;;) {
		r = serve_urgent(s);
		if (r == 0 || r == -ECANCELED || !s->opts.reconnect || !fl__mig_is_cut(&s->urgent, r))
			break;
		note_cut(s, r);
		/* Parked until the main thread reconnected (or gave up). */
		pthread_mutex_lock(&s->rec_lock);
		s->urgent_parked = true;
		pthread_cond_broadcast(&s->rec_cond);
		while (s->cut && !s->stopping)
			pthread_cond_wait(&s->rec_cond, &s->rec_lock);
		s->urgent_parked = false;
		bool stop = s->stopping;
		pthread_mutex_unlock(&s->rec_lock);
		if (stop)
			break;
	}
	pthread_mutex_lock(&s->rec_lock);
	atomic_store(&s->urgent_result, r);
	pthread_cond_broadcast(&s->rec_cond);
	pthread_mutex_unlock(&s->rec_lock);
	/* Ends a push blocked on a bulk channel the destination no longer
	 * reads (it stops once it has every page, or failed). */
	fl__eventfd_signal(s->stop_fd);
	return NULL;
}

static bool is_cut(struct fl_migrate_source *s)
{
	bool cut;

	pthread_mutex_lock(&s->rec_lock);
	cut = s->cut;
	pthread_mutex_unlock(&s->rec_lock);
	return cut;
}

/*
 * The background push: every needed page not sent yet, in order, except
 * that after a request for page p the push first goes on from p + 1 (64
 * pages at most, in p's range), so a thread scanning memory finds them
 * there. Returns 0 at the end (or when the urgent thread ended), -EPIPE on
 * a cut, or a send's error.
 */
#define PUSH_NEIGHBOURS 64
static int push(struct fl_migrate_source *s)
{
	uint64_t cursor = 0, burst = 0, burst_end = 0;
	struct page_batch b;

	/* After switchover the memory is only read: no copies. */
	batch_init(&b, s, &s->bulk, NULL);
	for (;;) {
		uint64_t h = atomic_exchange(&s->hint, 0), idx;
		unsigned ri = 0;
		int r;

		if (h) {
			burst = h - 1;
			while (burst >= s->ranges[ri].first + s->ranges[ri].npages)
				ri++;
			burst_end = FL_MIN(burst + PUSH_NEIGHBOURS, s->ranges[ri].first + s->ranges[ri].npages);
			/* The pages a faulting thread goes on to leave before
			 * what was gathered for elsewhere. */
			r = batch_flush(&b);
			if (r)
				return r;
		}
		if (burst < burst_end) {
			idx = burst++;
		} else {
			if (cursor >= s->total)
				return batch_flush(&b);
			idx = cursor++;
		}
		if (!(s->need[idx / 8] & (1u << (idx % 8))))
			continue;
		if (atomic_load(&s->urgent_result) != 1)
			return 0;
		if (is_cut(s))
			return -EPIPE;
		while (atomic_load(&s->urgent_busy))
			sched_yield();
		if (atomic_fetch_or(&s->sent[idx / 64], 1ull << (idx % 64)) & (1ull << (idx % 64)))
			continue;
		ri = 0;
		while (idx >= s->ranges[ri].first + s->ranges[ri].npages)
			ri++;
		r = batch_add(&b, &s->ranges[ri], idx);
		if (r)
			return r;
		atomic_fetch_sub(&s->remaining, 1);
		atomic_fetch_add(&s->pushed, 1);
	}
}

/* After a reconnection: the destination's RECEIVED bitmap. What it has is
 * needed no more; what it lacks is sent again. */
static int receive_received(struct fl_migrate_source *s, unsigned timeout_ms)
{
	size_t bitmap_len = (s->total + 7) / 8;
	struct fl__mig_hdr h;
	const uint8_t *bits;
	uint64_t missing = 0;
	int r;

	r = fl__mig_recv(&s->bulk, timeout_ms, &h);
	if (r)
		return r;
	if (h.type != FL_MIG_RECEIVED || h.flags)
		return fl__mig_refuse(&s->bulk, -EPROTO, "message %u where RECEIVED was due", h.type);
	if (h.length != 8 + bitmap_len || fl__mig_get64(s->bulk.buf) != s->total)
		return fl__mig_refuse(&s->bulk, -EBADMSG, "RECEIVED of %u bytes", h.length);
	bits = s->bulk.buf + 8;
	for (uint64_t idx = 0; idx < s->total; idx++) {
		uint64_t bit = 1ull << (idx % 64);

		if (bits[idx / 8] & (1u << (idx % 8))) {
			s->need[idx / 8] &= (uint8_t)~(1u << (idx % 8));
			atomic_fetch_or(&s->sent[idx / 64], bit);
		} else {
			s->need[idx / 8] |= (uint8_t)(1u << (idx % 8));
			atomic_fetch_and(&s->sent[idx / 64], ~bit);
			missing++;
		}
	}
	atomic_store(&s->remaining, missing);
	fl__log(&s->log, FL_LOG_INFO, "migrate: the destination misses %llu pages",
		(unsigned long long)missing);
	return 0;
}

/*
 * Recovery (the urgent thread is parked): call reconnect() until a new
 * pair of connections passes TLS, HELLO with a new epoch and delivers
 * RECEIVED, or recovery_ms has passed since the cut (-ETIMEDOUT).
 */
static int recover(struct fl_migrate_source *s)
{
	uint64_t t0 = fl__now_ns(), deadline = t0 + s->opts.recovery_ms * 1000000ull;
	unsigned backoff_ms = 20;
	int r;

	pthread_mutex_lock(&s->rec_lock);
	while (!s->urgent_parked && atomic_load(&s->urgent_result) == 1)
		pthread_cond_wait(&s->rec_cond, &s->rec_lock);
	pthread_mutex_unlock(&s->rec_lock);
	if (atomic_load(&s->urgent_result) != 1)
		return atomic_load(&s->urgent_result);
	for (;;) {
		uint64_t now = fl__now_ns();
		int bulk = -1, urgent = -1;

		if (now >= deadline) {
			fl__log(&s->log, FL_LOG_ERROR, "migrate: no recovery within %u ms", s->opts.recovery_ms);
			return -ETIMEDOUT;
		}
		r = s->opts.reconnect(s->opts.reconnect_ctx, &bulk, &urgent);
		if (!r && (bulk < 0 || urgent < 0 || bulk == urgent)) {
			fl__close(bulk);
			fl__close(urgent);
			r = -EINVAL;
		}
		if (!r) {
			unsigned left = (unsigned)FL_MAX((deadline - FL_MIN(fl__now_ns(), deadline)) / 1000000, 1);

			fl__mig_chan_replace(&s->bulk, bulk, true);
			fl__mig_chan_replace(&s->urgent, urgent, true);
			r = open_channels(s, ++s->epoch, FL_MIN(left, s->opts.timeout_ms));
			if (!r)
				r = receive_received(s, FL_MIN(left, s->opts.timeout_ms));
			if (!r)
				break;
			fl__mig_chan_replace(&s->bulk, -1, false);
			fl__mig_chan_replace(&s->urgent, -1, false);
		}
		fl__log(&s->log, FL_LOG_DEBUG, "migrate: reconnection failed: %s", strerror(-r));
		(void)fl__sleep_until(FL_MIN(fl__now_ns() + backoff_ms * 1000000ull, deadline), s->stop_fd);
		backoff_ms = FL_MIN(backoff_ms * 2, 500u);
	}
	atomic_fetch_add(&s->recoveries, 1);
	atomic_fetch_add(&s->recovery_ns, fl__now_ns() - t0);
	fl__log(&s->log, FL_LOG_INFO, "migrate: recovered (epoch %u)", s->epoch);
	pthread_mutex_lock(&s->rec_lock);
	s->cut = false;
	pthread_cond_broadcast(&s->rec_cond);
	pthread_mutex_unlock(&s->rec_lock);
	return 0;
}

/* Set bits, a word at a time (the bits past the last page are clear). */

static void free_watches(struct fl_migrate_source *s)
{
	for (unsigned i = 0; i < s->nranges; i++)
		s->ranges[i].watch = fl_watch_free(s->ranges[i].watch);
}

/* Postcopy, after SWITCHOVER was written: push beside the urgent thread;
 * recover from cuts. */
static int postcopy(struct fl_migrate_source *s)
{
	bool pushing = s->opts.mode != FL_MIGRATE_PRECOPY && !(s->opts.flags & FL_MIGRATE_NO_PUSH);
	pthread_t thr;
	int r;

	atomic_store(&s->push_done, !pushing);
	if (s->opts.mode != FL_MIGRATE_PRECOPY)
		atomic_store(&s->pub_state, FL_MIGRATE_STATE_POSTCOPY);
	r = -pthread_create(&thr, NULL, urgent_main, s);
	if (r)
		return r;
	for (;;) {
		r = 0;
		if (pushing && !atomic_load(&s->push_done)) {
			r = push(s);
			if (!r)
				atomic_store(&s->push_done, true);
			else if (s->opts.reconnect && fl__mig_is_cut(&s->bulk, r) &&
				 atomic_load(&s->urgent_result) == 1)	/* not the end's abort */
				note_cut(s, r);
		}
		if (r && !is_cut(s))
			break;
		pthread_mutex_lock(&s->rec_lock);
		while (atomic_load(&s->urgent_result) == 1 && !s->cut)
			pthread_cond_wait(&s->rec_cond, &s->rec_lock);
		bool cut = s->cut && atomic_load(&s->urgent_result) == 1;
		pthread_mutex_unlock(&s->rec_lock);
		if (!cut) {
			r = 0;
			break;
		}
		atomic_store(&s->pub_state, FL_MIGRATE_STATE_RECOVERING);
		r = recover(s);
		if (r)
			break;
		atomic_store(&s->pub_state, s->opts.mode != FL_MIGRATE_PRECOPY ? FL_MIGRATE_STATE_POSTCOPY
									: FL_MIGRATE_STATE_SWITCHOVER);
		atomic_store(&s->push_done, !pushing);
	}
	pthread_mutex_lock(&s->rec_lock);
	s->stopping = true;
	pthread_cond_broadcast(&s->rec_cond);
	pthread_mutex_unlock(&s->rec_lock);
	if (r)	/* the urgent thread waits for nothing more */
		fl__eventfd_signal(s->stop_fd);
	pthread_join(thr, NULL);
	/* DONE is the destination's word that it has every page, whatever
	 * became of a push it stopped reading. */
	if (!r || atomic_load(&s->urgent_result) == 0)
		r = atomic_load(&s->urgent_result);
	return r;
}

/* Switchover and postcopy; the application is paused on entry. */
static int after_pause(struct fl_migrate_source *s, uint8_t *dirty, bool *ret_switched)
{
	size_t bitmap_len = (s->total + 7) / 8;
	uint8_t *msg;
	int r;

	if (s->opts.mode != FL_MIGRATE_POSTCOPY) {
		void *pages[512];
		int64_t w = collect_written(s, dirty, pages, FL_ARRAY_SIZE(pages));

		if (w < 0)
			return (int)w;
		fl__log(&s->log, FL_LOG_DEBUG, "migrate: switchover, %lld pages written since the last round",
			(long long)w);
	}
	/* The watches stay until SWITCHOVER is out: removing write
	 * protection costs time in proportion to the ranges' size (tens of ms
	 * per GiB of 4 KiB ptes), and nothing writes while paused. */
	if (s->opts.mode == FL_MIGRATE_PRECOPY) {
		/* Stop-and-copy: the destination is complete at switchover.
		 * Paused: the pages are sent from memory, no copy. */
		r = send_marked(s, dirty, count_bits(dirty, bitmap_len), false);
		if (r)
			return r;
		memset(dirty, 0, bitmap_len);
	} else if (s->opts.mode == FL_MIGRATE_POSTCOPY) {
		memset(s->need, 0xff, bitmap_len);
		if (s->total % 8)
			s->need[bitmap_len - 1] = (uint8_t)((1u << (s->total % 8)) - 1);
		atomic_store(&s->remaining, s->total);
	} else {
		memcpy(s->need, dirty, bitmap_len);
		atomic_store(&s->remaining, count_bits(s->need, bitmap_len));
	}
	/* dirty has no bit past the last page: collect_written() sets
	 * only pages of the layout. */
	if (s->opts.mode == FL_MIGRATE_HYBRID && atomic_load(&s->remaining)) {
		msg = malloc(16 + bitmap_len);
		if (!msg)
			return -ENOMEM;
		fl__mig_put64(msg, s->total);
		fl__mig_put64(msg + 8, s->opts.blob_len);
		memcpy(msg + 16, dirty, bitmap_len);
		r = fl__mig_send(&s->bulk, FL_MIG_SWITCHOVER, 0, msg, 16 + bitmap_len, s->opts.blob,
				 s->opts.blob_len);
		free(msg);
	} else {
		uint8_t head[16];

		/* Nothing the destination holds is stale (always so in
		 * POSTCOPY and PRECOPY): no bitmap, for the destination no
		 * scan of one, both in proportion to the memory's size. */
		fl__mig_put64(head, s->total);
		fl__mig_put64(head + 8, s->opts.blob_len);
		r = fl__mig_send(&s->bulk, FL_MIG_SWITCHOVER, FL_MIG_SWITCH_NONE_STALE, head, sizeof(head),
				 s->opts.blob, s->opts.blob_len);
	}
	if (r)
		return r;
	free_watches(s);
	/* Written in full: the destination may be running the application
	 * now, so from here the source never resumes it, whatever happens. */
	*ret_switched = true;
	/* Requests now: the push gives up a blocked send only at the end. */
	s->bulk.abort_fd = s->stop_fd;
	atomic_store(&s->state, SRC_POSTCOPY);
	return postcopy(s);
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
	r = open_channels(s, 0, s->opts.timeout_ms);
	if (r) {
		/* Nothing of the destination's to read yet: its refusal was
		 * what the handshake saw. */
		s->peer_error = r;
		goto out;
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
	} else if (r && switched) {
		/* Say so and hang up, so that the destination fails closed now
		 * instead of after its timeouts (the caller may keep the fds
		 * open long after this returns). */
		fl__mig_send_error(&s->urgent, r);
		fl__mig_chan_shutdown(&s->bulk);
		fl__mig_chan_shutdown(&s->urgent);
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
	st.recoveries = atomic_load(&s->recoveries);
	st.recovery_ns = atomic_load(&s->recovery_ns);
	return FL_OPTS_OUT(stats, st);
}
