// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The MPROTECT write-watch backend: the range is made read-only, and a
 * SIGSEGV handler records the page and makes it writable again.
 *
 * A signal handler cannot be given a context, so the watches live in a
 * process-wide table (any number of them; a handler looks through it): the one piece of global mutable state in the
 * library, forced by signals. The handler is async-signal-safe: it reads
 * the table with atomics, sets a bit, calls mprotect().
 *
 * Get+reset must not lose a write that lands between re-protecting a page
 * and clearing its bit. So a reset raises the watch's `mp_resetting` flag
 * and waits until no handler is running; handlers that see the flag step
 * back and retry once it drops (their write faults again afterwards).
 */
#include "watch-internal.h"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

/*
 * The table grows: a handler reads the current one between raising and
 * dropping mp_inflight, so an old table is freed only after a quiesce.
 */
struct mp_tab {
	unsigned cap;
	struct fl_watch *_Atomic slot[];
};
static struct mp_tab *_Atomic mp_table;
static _Atomic int mp_inflight;
static pthread_mutex_t mp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction mp_old;
static unsigned mp_count;
/* Our handler is in the SIGSEGV chain. It stays there (passing everything
 * on) when the application installed its own handler over it, which then
 * calls ours for faults it does not own: removing ours would break that
 * chain, and installing it again would make a loop. */
static bool mp_installed;
/*
 * A write fault on a granule already recorded is either stale (another
 * thread unprotected it meanwhile: retry) or the application's own
 * protection set by mprotect(2) behind the watch's back (the retry faults
 * again: pass it on). Told apart by retrying once per address while no
 * granule anywhere was unprotected in between and no other handler runs
 * (it may be between recording and unprotecting): mp_unprotects counts those,
 * and each thread remembers its last retry. Initial-exec TLS: no
 * allocation inside a signal handler.
 */
static _Atomic uint64_t mp_unprotects;
static __thread uint64_t mp_retried_addr __attribute__((tls_model("initial-exec")));
static __thread uint64_t mp_retried_seq __attribute__((tls_model("initial-exec")));

static void mp_chain(int sig, siginfo_t *si, void *uc)
{
	if (mp_old.sa_flags & SA_SIGINFO) {
		if (mp_old.sa_sigaction) {
			mp_old.sa_sigaction(sig, si, uc);
			return;
		}
	} else if (mp_old.sa_handler != SIG_DFL && mp_old.sa_handler != SIG_IGN) {
		mp_old.sa_handler(sig);
		return;
	}
	/* Default action: restore it and return; the access faults again and
	 * the process dies as it would have without us. */
	signal(sig, SIG_DFL);
}

/* Whether the faulting access was a write. Where the architecture does not
 * say, a fault on a granule the watch protected is taken as one. */
static bool fault_is_write(const void *ucp)
{
#if defined(__x86_64__)
	const ucontext_t *uc = ucp;
	return uc->uc_mcontext.gregs[REG_ERR] & 2;	/* X86_PF_WRITE */
#else
	(void)ucp;
	return true;
#endif
}

static bool mp_dirty(const struct fl_watch *w, uint64_t g)
{
	return (atomic_load_explicit(&w->dirty[g / 64], memory_order_acquire) >> (g % 64)) & 1;
}

static void mp_handler(int sig, siginfo_t *si, void *uc)
{
	uint64_t a = (uintptr_t)si->si_addr;
	int saved_errno = errno;

	for (;;) {
		struct fl_watch *hit = NULL;

		atomic_fetch_add(&mp_inflight, 1);
		struct mp_tab *t = atomic_load(&mp_table);
		if (si->si_code == SEGV_ACCERR && t) {
			for (unsigned i = 0; i < t->cap && !hit; i++) {
				struct fl_watch *w = atomic_load(&t->slot[i]);
				if (w && a >= w->start && a < w->start + w->len)
					hit = w;
			}
		}
		if (hit && atomic_load(&hit->mp_resetting)) {
			atomic_fetch_sub(&mp_inflight, 1);
			sched_yield();
			continue;
		}
		bool ours = false;
		if (hit && fault_is_write(uc)) {
			uint64_t page = a & ~(uint64_t)(hit->gran - 1);
			uint64_t g = (page - hit->start) / hit->gran;
			int prot = atomic_load(&hit->app_prot[g]);

			/* Only a write the application allows, to a granule the
			 * watch protected; anything else is the application's. */
			if ((prot & PROT_WRITE) && !mp_dirty(hit, g)) {
				fl__watch_mark(hit, g);
				mprotect((void *)(uintptr_t)page, hit->gran, prot);
				atomic_fetch_add(&mp_unprotects, 1);
				ours = true;
			} else if (prot & PROT_WRITE) {
				uint64_t seq = atomic_load(&mp_unprotects);
				/* Another handler in flight may be between
				 * recording and unprotecting this granule. */
				ours = mp_retried_addr != a || mp_retried_seq != seq ||
				       atomic_load(&mp_inflight) > 1;
				mp_retried_addr = a;
				mp_retried_seq = seq;
			}
		}
		atomic_fetch_sub(&mp_inflight, 1);
		if (!ours) {
			mp_retried_addr = 0;
			mp_chain(sig, si, uc);
		}
		break;
	}
	errno = saved_errno;
}

static void mp_quiesce(void)
{
	while (atomic_load(&mp_inflight))
		sched_yield();
}

void fl__watch_mp_init_prot(void *ctx, uint64_t lo, uint64_t hi, int prot)
{
	struct fl_watch *w = ctx;

	for (uint64_t a = lo; a < hi; a += w->gran)
		atomic_store(&w->app_prot[(a - w->start) / w->gran], (uint8_t)prot);
}

/* Map granules [first, first + n) as the watch wants them: the
 * application's protection, without PROT_WRITE where not written (clean)
 * or everywhere (protect_all). By runs of equal protection. */
static int mp_apply(struct fl_watch *w, uint64_t first, uint64_t n, bool protect_all, bool restore)
{
	uint64_t end = first + n;

	for (uint64_t g = first; g < end;) {
		int want = -1;
		uint64_t h = g;
		for (; h < end; h++) {
			int p = atomic_load(&w->app_prot[h]);
			if (!restore && (protect_all || !mp_dirty(w, h)))
				p &= ~PROT_WRITE;
			if (want >= 0 && p != want)
				break;
			want = p;
		}
		int ret = fl__mprotect((void *)(uintptr_t)(w->start + g * w->gran), (h - g) * w->gran, want);
		atomic_fetch_add(&mp_unprotects, 1);
		if (ret)
			return ret;
		g = h;
	}
	return 0;
}

int fl__watch_mp_protect(struct fl_watch *w, uint64_t addr, uint64_t len)
{
	return mp_apply(w, (addr - w->start) / w->gran, len / w->gran, true, false);
}

/* A free slot, growing the table when full (mp_lock held); -1: ENOMEM. */
static int mp_free_slot(void)
{
	struct mp_tab *t = atomic_load(&mp_table), *n;
	unsigned cap = t ? t->cap : 0;

	for (unsigned i = 0; i < cap; i++)
		if (!atomic_load(&t->slot[i]))
			return (int)i;
	n = calloc(1, sizeof(*n) + (cap ? cap * 2 : 16) * sizeof(n->slot[0]));
	if (!n)
		return -1;
	n->cap = cap ? cap * 2 : 16;
	for (unsigned i = 0; i < cap; i++)
		atomic_store(&n->slot[i], atomic_load(&t->slot[i]));
	atomic_store(&mp_table, n);
	mp_quiesce();	/* no handler reads the old table any more */
	free(t);
	return (int)cap;
}

static void mp_set_slot(int i, struct fl_watch *w)
{
	atomic_store(&atomic_load(&mp_table)->slot[i], w);
}

int fl__watch_mp_overlaps(uint64_t start, uint64_t len)
{
	struct mp_tab *t;
	int ret = 0;

	pthread_mutex_lock(&mp_lock);
	t = atomic_load(&mp_table);
	for (unsigned i = 0; t && i < t->cap && !ret; i++) {
		struct fl_watch *o = atomic_load(&t->slot[i]);
		/* Two watches over one page would fight over its protection. */
		if (o && o->start < start + len && start < o->start + o->len)
			ret = -EBUSY;
	}
	pthread_mutex_unlock(&mp_lock);
	return ret;
}

int fl__watch_mp_start(struct fl_watch *w)
{
	struct mp_tab *t;
	int ret = 0, slot = -1;

	pthread_mutex_lock(&mp_lock);
	t = atomic_load(&mp_table);
	for (unsigned i = 0; t && i < t->cap && !ret; i++) {
		struct fl_watch *o = atomic_load(&t->slot[i]);
		if (o && o->start < w->start + w->len && w->start < o->start + o->len)
			ret = -EBUSY;
	}
	if (!ret) {
		slot = mp_free_slot();
		if (slot < 0)
			ret = -ENOMEM;
	}
	if (!ret && !mp_installed) {
		struct sigaction sa = { .sa_sigaction = mp_handler, .sa_flags = SA_SIGINFO | SA_RESTART };
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, &sa, &mp_old))
			ret = -errno;
		else
			mp_installed = true;
	}
	if (!ret) {
		mp_count++;
		w->mp_slot = slot;
		mp_set_slot(slot, w);
	}
	pthread_mutex_unlock(&mp_lock);
	if (ret)
		return ret;
	ret = mp_apply(w, 0, w->ngran, true, false);
	if (ret)
		fl__watch_mp_stop(w);
	return ret;
}

void fl__watch_mp_stop(struct fl_watch *w)
{
	if (w->mp_slot < 0)
		return;
	pthread_mutex_lock(&mp_lock);
	mp_set_slot(w->mp_slot, NULL);
	mp_quiesce();
	mp_apply(w, 0, w->ngran, false, true);
	w->mp_slot = -1;
	if (--mp_count == 0) {
		struct sigaction cur;
		/* Leave only if nobody chained behind us since. */
		if (!sigaction(SIGSEGV, NULL, &cur) && (cur.sa_flags & SA_SIGINFO) &&
		    cur.sa_sigaction == mp_handler) {
			sigaction(SIGSEGV, &mp_old, NULL);
			mp_installed = false;
		}
	}
	pthread_mutex_unlock(&mp_lock);
}

int fl__watch_mp_set_prot(struct fl_watch *w, uint64_t first, uint64_t n, int prot)
{
	int ret;

	pthread_mutex_lock(&w->lock);
	atomic_store(&w->mp_resetting, 1);
	mp_quiesce();
	for (uint64_t g = first; g < first + n; g++)
		atomic_store(&w->app_prot[g], (uint8_t)prot);
	ret = mp_apply(w, first, n, false, false);
	atomic_store(&w->mp_resetting, 0);
	pthread_mutex_unlock(&w->lock);
	return ret;
}

int fl__watch_mp_get(struct fl_watch *w, uint64_t first, uint64_t n, bool reset, void **pages, uint64_t *count,
		     fl__watch_get_fn get)
{
	int ret;

	pthread_mutex_lock(&w->lock);
	if (reset) {
		atomic_store(&w->mp_resetting, 1);
		mp_quiesce();
	}
	ret = get(w, first, n, reset, pages, count);
	atomic_store(&w->mp_resetting, 0);
	pthread_mutex_unlock(&w->lock);
	return ret;
}

int fl__watch_mp_reset(struct fl_watch *w, uint64_t first, uint64_t n, fl__watch_reset_fn reset)
{
	int ret;

	pthread_mutex_lock(&w->lock);
	atomic_store(&w->mp_resetting, 1);
	mp_quiesce();
	ret = reset(w, first, n);
	atomic_store(&w->mp_resetting, 0);
	pthread_mutex_unlock(&w->lock);
	return ret;
}

int fl__watch_mp_replace(struct fl_watch *old, struct fl_watch **pieces, unsigned n, uint64_t cut_start,
			 uint64_t cut_len)
{
	int ret = 0;

	pthread_mutex_lock(&mp_lock);
	/* Handlers that find `old` wait while the pieces take its place. */
	atomic_store(&old->mp_resetting, 1);
	mp_quiesce();
	for (unsigned i = 0; i < n && !ret; i++) {
		int slot = mp_free_slot();
		if (slot < 0) {
			ret = -ENOMEM;
			break;
		}
		pieces[i]->mp_slot = slot;
		mp_set_slot(slot, pieces[i]);
		mp_count++;
	}
	if (ret) {
		for (unsigned i = 0; i < n; i++) {
			if (pieces[i]->mp_slot >= 0) {
				mp_set_slot(pieces[i]->mp_slot, NULL);
				pieces[i]->mp_slot = -1;
				mp_count--;
			}
		}
	} else {
		mp_set_slot(old->mp_slot, NULL);
		old->mp_slot = -1;
		mp_count--;
		mp_quiesce();
		/* The cut part gets the application's protection back. */
		mp_apply(old, (cut_start - old->start) / old->gran, cut_len / old->gran, false, true);
	}
	atomic_store(&old->mp_resetting, 0);
	pthread_mutex_unlock(&mp_lock);
	return ret;
}
