// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The fault path's rules, in one place: what a resolve error means
 * (kernel-facts.md, "the error table"), and how a page that cannot be
 * delivered fails closed (poison, else SIGBUS; never an unvouched zero).
 */
#include "engine-internal.h"

#include <signal.h>
#include <unistd.h>

enum fl__resolve_verdict fl__resolve_classify(int err)
{
	switch (err) {
	case 0:
		return FL__RESOLVED;
	case -EAGAIN:
		/* Partial progress is advanced over where the ioctl is
		 * issued; what is left here is "no progress": an event
		 * (fork, mremap...) is queued and the mm is changing. */
		return FL__RETRY;
	case -EEXIST:
		return FL__ALREADY_THERE;
	case -ENOENT:
		return FL__LAYOUT_CHANGED;
	case -ESRCH:
	case -ENOSPC:
		return FL__CLIENT_GONE;
	default:
		return FL__POISON;
	}
}

/*
 * What a failed poison (or its success) means for the faulting thread, by
 * the same table: delivered or already there, wake it; the layout changed
 * or an event is queued, wake it to fault again against the current
 * layout (a page still undeliverable comes back and fails again); the mm
 * is gone, nothing to do; anything else (no POISON: an old kernel, or
 * masked), SIGBUS the faulting thread.
 */
static int settle_poison(struct fl_engine *e, struct fl__space *sp, uint64_t addr, size_t psz, int r, bool waiter,
			 uint32_t tid)
{
	pid_t pid;

	switch (fl__resolve_classify(r)) {
	case FL__RESOLVED:
		return 0;
	case FL__ALREADY_THERE:
	case FL__RETRY:
	case FL__LAYOUT_CHANGED:
		fl_uffd_wake(sp->uffd, (void *)(uintptr_t)addr, psz);
		return r;
	case FL__CLIENT_GONE:
		return r;
	case FL__POISON:
		break;
	}
	if (!waiter)
		return r;
	/* The signal interrupts the thread's wait on the fault; if the
	 * application handles SIGBUS and retries, the fault comes back and
	 * fails again. */
	pid = sp->pid ? sp->pid : (sp->id == 0 ? getpid() : 0);
	if (tid) {
		fl__log(&e->log, FL_LOG_ERROR, "cannot poison 0x%llx (%s): SIGBUS to thread %u",
			(unsigned long long)addr, strerror(-r), tid);
		fl__tkill(pid, (pid_t)tid, SIGBUS);
	} else {
		fl__log(&e->log, FL_LOG_ERROR, "cannot poison 0x%llx (%s) and no thread id: SIGBUS to process %d",
			(unsigned long long)addr, strerror(-r), (int)pid);
		if (pid)
			fl__tkill(0, pid, SIGBUS);
	}
	return r;
}

int fl__fail_closed(struct fl_engine *e, struct fl__space *sp, uint64_t addr, size_t psz, bool waiter,
		    uint32_t tid)
{
	int r = fl_uffd_poison(sp->uffd, (void *)(uintptr_t)addr, psz, 0, NULL);

	return settle_poison(e, sp, addr, psz, r, waiter, tid);
}

void fl__fail_unowned(struct fl_engine *e, struct fl__space *sp, const struct uffd_msg *msg, bool stale)
{
	uint64_t addr = msg->arg.pagefault.address & ~(uint64_t)(FL_PAGE_SIZE - 1);
	size_t psz = FL_PAGE_SIZE;
	int r;

	if (stale) {
		/* Queued before a target went away: the thread may already
		 * have its page, or its memory is gone. Waking it makes it
		 * fault again against the current layout. */
		fl_uffd_wake(sp->uffd, (void *)(uintptr_t)addr, FL_PAGE_SIZE);
		return;
	}
	atomic_fetch_add_explicit(&e->unowned_faults, 1, memory_order_relaxed);
	/* No region says what this memory is: a hugetlbfs range only
	 * accepts huge-page-sized poison. */
	r = fl_uffd_poison(sp->uffd, (void *)(uintptr_t)addr, psz, 0, NULL);
	if (r == -EINVAL) {
		addr = msg->arg.pagefault.address & ~(uint64_t)(FL_HPAGE_SIZE - 1);
		psz = FL_HPAGE_SIZE;
		r = fl_uffd_poison(sp->uffd, (void *)(uintptr_t)addr, psz, 0, NULL);
	}
	fl__log(&e->log, FL_LOG_WARN, "fault at 0x%llx outside every region of space %d: %s",
		(unsigned long long)msg->arg.pagefault.address, sp->id,
		r == 0 || r == -EEXIST ? "poisoned" : "failing it closed");
	settle_poison(e, sp, addr, psz, r, true, fl_msg_fault_tid(msg));
}
