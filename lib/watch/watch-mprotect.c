// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The MPROTECT write-watch backend: the range is made read-only, and a
 * SIGSEGV handler records the page and makes it writable again.
 *
 * A signal handler cannot be given a context, so the watches live in a
 * process-wide table: the one piece of global mutable state in the
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

#define MP_SLOTS 64

static struct fl_watch *_Atomic mp_table[MP_SLOTS];
static _Atomic int mp_inflight;
static pthread_mutex_t mp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction mp_old;
static unsigned mp_count;

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

static void mp_handler(int sig, siginfo_t *si, void *uc)
{
	uint64_t a = (uintptr_t)si->si_addr;
	int saved_errno = errno;

	for (;;) {
		struct fl_watch *hit = NULL;

		atomic_fetch_add(&mp_inflight, 1);
		if (si->si_code == SEGV_ACCERR) {
			for (int i = 0; i < MP_SLOTS && !hit; i++) {
				struct fl_watch *w = atomic_load(&mp_table[i]);
				if (w && a >= w->start && a < w->start + w->len)
					hit = w;
			}
		}
		if (!hit) {
			atomic_fetch_sub(&mp_inflight, 1);
			mp_chain(sig, si, uc);
			break;
		}
		if (atomic_load(&hit->mp_resetting)) {
			atomic_fetch_sub(&mp_inflight, 1);
			sched_yield();
			continue;
		}
		uint64_t page = a & ~(uint64_t)(hit->gran - 1);
		fl__watch_mark(hit, (page - hit->start) / hit->gran);
		mprotect((void *)(uintptr_t)page, hit->gran, hit->prot);
		atomic_fetch_sub(&mp_inflight, 1);
		break;
	}
	errno = saved_errno;
}

static void mp_quiesce(void)
{
	while (atomic_load(&mp_inflight))
		sched_yield();
}

int fl__watch_mp_protect(struct fl_watch *w, uint64_t addr, uint64_t len)
{
	return mprotect((void *)(uintptr_t)addr, len, w->prot & ~PROT_WRITE) ? -errno : 0;
}

int fl__watch_mp_start(struct fl_watch *w)
{
	int ret = 0, slot = -1;

	pthread_mutex_lock(&mp_lock);
	for (int i = 0; i < MP_SLOTS && !ret; i++) {
		struct fl_watch *o = atomic_load(&mp_table[i]);
		if (!o && slot < 0)
			slot = i;
		/* Two watches over one page would fight over its protection. */
		if (o && o->start < w->start + w->len && w->start < o->start + o->len)
			ret = -EBUSY;
	}
	if (!ret && slot < 0)
		ret = -ENOSPC;
	if (!ret && !mp_count) {
		struct sigaction sa = { .sa_sigaction = mp_handler, .sa_flags = SA_SIGINFO | SA_RESTART };
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, &sa, &mp_old))
			ret = -errno;
	}
	if (!ret) {
		mp_count++;
		w->mp_slot = slot;
		atomic_store(&mp_table[slot], w);
	}
	pthread_mutex_unlock(&mp_lock);
	if (ret)
		return ret;
	ret = fl__watch_mp_protect(w, w->start, w->len);
	if (ret)
		fl__watch_mp_stop(w);
	return ret;
}

void fl__watch_mp_stop(struct fl_watch *w)
{
	if (w->mp_slot < 0)
		return;
	pthread_mutex_lock(&mp_lock);
	atomic_store(&mp_table[w->mp_slot], NULL);
	mp_quiesce();
	mprotect((void *)(uintptr_t)w->start, w->len, w->prot);
	w->mp_slot = -1;
	if (--mp_count == 0)
		sigaction(SIGSEGV, &mp_old, NULL);
	pthread_mutex_unlock(&mp_lock);
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
