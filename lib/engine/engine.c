// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The fault engine: uffds ("spaces"), handler threads, dispatch to targets,
 * event handling and the background filler's thread.
 */
#include "engine-internal.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#define DEFAULT_BATCH 64
#define WORKER_BUF (4u << 20)

int fl__worker_init(struct fl__worker *w, size_t cap, unsigned batch)
{
	memset(w, 0, sizeof(*w));
	w->pagemap_fd = -1;
	w->batch = batch ? batch : DEFAULT_BATCH;
	w->msgs = fl__forksafe_calloc(w->batch, sizeof(*w->msgs));
	if (!w->msgs)
		return -ENOMEM;
	return fl__worker_reserve(w, cap);
}

int fl__worker_reserve(struct fl__worker *w, size_t cap)
{
	void *p;
	uint8_t *z;
	if (cap <= w->cap)
		return 0;
	cap = (cap + FL_PAGE_SIZE - 1) / FL_PAGE_SIZE * FL_PAGE_SIZE;
	/* one flag per 4 KiB page the buffer can hold */
	z = fl__forksafe_calloc(cap / FL_PAGE_SIZE + 1, 1);
	/* A mapping of its own, page-aligned, so COPY sources never straddle
	 * needlessly (fl__forksafe_calloc's header would put every page of
	 * it across two). mmap, not malloc: fork-safe like the rest. */
	if (!z || fl__mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &p)) {
		fl__forksafe_free(z);
		return -ENOMEM;
	}
	if (w->buf)
		fl__munmap(w->buf, w->cap);
	fl__forksafe_free(w->zero);
	w->buf = p;
	w->zero = z;
	w->cap = cap;
	return 0;
}

void fl__worker_fini(struct fl__worker *w)
{
	if (w->buf)
		fl__munmap(w->buf, w->cap);
	if (w->stage)
		fl__munmap(w->stage, FL_HPAGE_SIZE);
	fl__close(w->pagemap_fd);
	fl__forksafe_free(w->zero);
	fl__forksafe_free(w->msgs);
	memset(w, 0, sizeof(*w));
	w->pagemap_fd = -1;
}

/* ---- spaces and the index ---------------------------------------------- */

static int add_space(struct fl_engine *e, int uffd, pid_t pid, uint64_t features,
		     bool forked, struct fl__space **ret)
{
	struct fl__space *sp;

	if (e->nspaces == e->spaces_cap) {
		size_t cap = e->spaces_cap ? e->spaces_cap * 2 : 4;
		struct fl__space **n = fl__forksafe_realloc(e->spaces, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		e->spaces = n;
		e->spaces_cap = cap;
	}
	sp = fl__forksafe_calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	pthread_mutex_init(&sp->read_mu, NULL);
	sp->id = (int)e->nspaces;
	sp->uffd = uffd;
	sp->pid = pid;
	sp->features = features;
	sp->forked = forked;
	sp->parent = -1;
	e->spaces[e->nspaces++] = sp;
	*ret = sp;
	return 0;
}

struct fl__space *fl__engine_space(struct fl_engine *e, int id)
{
	if (id < 0 || (size_t)id >= e->nspaces)
		return NULL;
	return e->spaces[id];
}

int fl__engine_events_barrier(struct fl_engine *e, int id)
{
	struct fl__space *sp;

	pthread_rwlock_rdlock(&e->lock);
	sp = fl__engine_space(e, id);
	pthread_rwlock_unlock(&e->lock);
	if (!sp)
		return -ENOENT;
	/* A batch's events are handled before read_mu is let go
	 * (service_space()): taking it waits for any batch read so far. */
	pthread_mutex_lock(&sp->read_mu);
	pthread_mutex_unlock(&sp->read_mu);
	return 0;
}

static int targets_reserve(struct fl_engine *e)
{
	struct fl__target **n;
	size_t cap;

	if (e->ntargets < e->targets_cap)
		return 0;
	cap = e->targets_cap ? e->targets_cap * 2 : 16;
	n = fl__forksafe_realloc(e->targets, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	e->targets = n;
	e->targets_cap = cap;
	return 0;
}

int fl__engine_add_target(struct fl_engine *e, struct fl__target *t, uint64_t start, uint64_t len)
{
	struct fl__entry ent = { .start = start, .end = start + len, .target = t, .off = 0 };
	int ret;

	pthread_rwlock_wrlock(&e->lock);
	ret = targets_reserve(e);
	if (!ret)
		ret = fl__index_insert(&t->space->index, &ent);
	if (!ret)
		e->targets[e->ntargets++] = t;
	atomic_fetch_add(&e->index_gen, 1);
	pthread_rwlock_unlock(&e->lock);
	if (!ret && (t->flags & FL__TARGET_FILL))
		fl__engine_kick_filler(e);
	return ret;
}

size_t fl__engine_remove_target(struct fl_engine *e, struct fl__target *t, struct fl_range **ret)
{
	size_t n;

	pthread_rwlock_wrlock(&e->lock);
	for (size_t i = 0; i < e->ntargets; i++) {
		if (e->targets[i] == t) {
			/* What it served stays in fl_engine_stats(): the
			 * engine's fault count does not forget it either. */
			struct fl__target_stats ts = { .hist = &e->retired };
			t->ops->stats(t, &ts);
			e->targets[i] = e->targets[--e->ntargets];
			break;
		}
	}
	n = fl__index_remove_target(&t->space->index, t, ret);
	atomic_fetch_add(&e->index_gen, 1);
	pthread_rwlock_unlock(&e->lock);
	return n;
}

/* ---- events ------------------------------------------------------------ */

static void wake_threads(struct fl_engine *e)
{
	for (unsigned i = 0; i < e->nthreads; i++)
		fl__eventfd_signal(e->threads[i].wake_fd);
}

/*
 * The child starts with a copy of the parent's layout. Each target gets a
 * fork copy with its own page state: pages the parent resolves later are
 * still missing in the child. Write lock held. Returns the first error.
 */
static int fork_targets(struct fl_engine *e, struct fl__space *parent, struct fl__space *child)
{
	struct fl__target **from, **to;
	size_t ncopies = 0;
	int ret;

	/* Room for the whole layout first: inserts below cannot fail. */
	ret = fl__index_reserve(&child->index, parent->index.n);
	if (ret)
		return ret;
	from = fl__forksafe_calloc(parent->index.n + 1, 2 * sizeof(*from));
	if (!from)
		return -ENOMEM;
	to = from + parent->index.n + 1;
	for (size_t i = 0; i < parent->index.n; i++) {
		struct fl__entry ent = parent->index.entries[i];
		struct fl__target *copy = NULL;
		int r = 0;

		for (size_t k = 0; k < ncopies && !copy; k++)
			if (from[k] == ent.target)
				copy = to[k];
		if (!copy) {
			copy = ent.target->ops->fork(ent.target, child);
			if (!copy) {
				r = -ENOMEM;
			} else if ((r = targets_reserve(e))) {
				copy->ops->destroy(copy);
				copy = NULL;
			} else {
				e->targets[e->ntargets++] = copy;
				from[ncopies] = ent.target;
				to[ncopies++] = copy;
			}
		}
		if (copy) {
			ent.target = copy;
			r = fl__index_insert(&child->index, &ent);
		}
		if (r && !ret)
			ret = r;
	}
	fl__forksafe_free(from);
	return ret;
}

static void handle_fork(struct fl_engine *e, struct fl__space *parent, int child_uffd)
{
	struct fl__space *sp;
	int r;

	/* The child's uffd gets the flags its parent's was created with, not
	 * the ones set later with fcntl: an adopted uffd made blocking by its
	 * owner yields a blocking child, which poll(2) reports as POLLERR. */
	r = fcntl(child_uffd, F_GETFL);
	if (r >= 0 && !(r & O_NONBLOCK))
		fcntl(child_uffd, F_SETFL, r | O_NONBLOCK);
	pthread_rwlock_wrlock(&e->lock);
	r = add_space(e, child_uffd, 0, parent->features, true, &sp);
	if (!r)
		sp->parent = parent->id;
	if (r) {
		pthread_rwlock_unlock(&e->lock);
		fl__log(&e->log, FL_LOG_ERROR, "fork: cannot track child uffd: %s", strerror(-r));
		/* Closing would zero-fill the child's lazy pages: keep the fd
		 * open (leaked) so the child blocks instead of reading zeros. */
		return;
	}
	r = fork_targets(e, parent, sp);
	pthread_rwlock_unlock(&e->lock);
	if (r)
		/* What is not indexed fails closed in the child (unowned
		 * faults are poisoned), but say so: it is not served. */
		fl__log(&e->log, FL_LOG_ERROR, "fork: space %d: child not fully served: %s", sp->id, strerror(-r));
	atomic_fetch_add(&e->ev_fork, 1);
	fl__log(&e->log, FL_LOG_INFO, "fork: space %d follows a child of space %d", sp->id, parent->id);
	/* Before the handler threads poll the child: the callback may install
	 * pages in it (a beacon) without racing its faults. */
	if (e->opts.on_event)
		e->opts.on_event(e->opts.event_ctx, parent->id,
				 &(struct fl_event){ .kind = FL_EVENT_FORK, .new_space = sp->id });
	wake_threads(e);
}

static void handle_remap(struct fl_engine *e, struct fl__space *sp, uint64_t from, uint64_t to, uint64_t len)
{
	int r;

	pthread_rwlock_wrlock(&e->lock);
	r = fl__index_move(&sp->index, from, to, len);
	/* A fault read with this event, on the old range, finds nothing
	 * there now: it is stale (woken to fault again), not unowned. */
	atomic_fetch_add(&e->index_gen, 1);
	/* The piece that holds a target's byte 0 tells the target where it
	 * now starts (fl_region_addr() follows mremap). */
	for (size_t i = fl__index_lower(&sp->index, to); !r && i < sp->index.n; i++) {
		struct fl__entry *ent = &sp->index.entries[i];
		if (ent->start >= to + len)
			break;
		if (ent->off == 0 && ent->target->ops->moved)
			ent->target->ops->moved(ent->target, ent->start);
	}
	pthread_rwlock_unlock(&e->lock);
	if (r)
		/* Left where it was: faults at the new address fail closed. */
		fl__log(&e->log, FL_LOG_ERROR, "remap: space %d: cannot follow 0x%llx -> 0x%llx: %s", sp->id,
			(unsigned long long)from, (unsigned long long)to, strerror(-r));
	atomic_fetch_add(&e->ev_remap, 1);
	fl__log(&e->log, FL_LOG_INFO, "remap: space %d 0x%llx -> 0x%llx (%llu bytes)", sp->id,
		(unsigned long long)from, (unsigned long long)to, (unsigned long long)len);
}

/* UNMAP took a piece of t: with none left, t is dead. */
static void unmapped(struct fl__target *t, void *ctx)
{
	struct fl__space *sp = ctx;

	if (!fl__index_has_target(&sp->index, t))
		atomic_store(&t->dead, true);
}

static void handle_remove(struct fl_engine *e, struct fl__space *sp, uint64_t start, uint64_t end, bool unmap)
{
	int r = 0;

	pthread_rwlock_wrlock(&e->lock);
	if (unmap) {
		r = fl__index_remove_range(&sp->index, start, end, unmapped, sp);
		/* A fault read in the same batch, queued before the unmap,
		 * is stale: the range may already be another mapping's
		 * (mremap over it, a space switch), which an unowned-fault
		 * poison would hit (the kernel checks that a range is
		 * registered, not with which uffd). */
		atomic_fetch_add(&e->index_gen, 1);
	} else {
		for (size_t i = fl__index_lower(&sp->index, start);
		     i < sp->index.n && sp->index.entries[i].start < end; i++) {
			struct fl__entry *ent = &sp->index.entries[i];
			uint64_t s = FL_MAX(start, ent->start), t = FL_MIN(end, ent->end);
			ent->target->ops->discard(ent->target, s - ent->start + ent->off, t - s);
		}
	}
	pthread_rwlock_unlock(&e->lock);
	if (r)
		fl__log(&e->log, FL_LOG_ERROR, "unmap: space %d: cannot drop 0x%llx-0x%llx: %s", sp->id,
			(unsigned long long)start, (unsigned long long)end, strerror(-r));
	atomic_fetch_add(unmap ? &e->ev_unmap : &e->ev_remove, 1);
	fl__log(&e->log, FL_LOG_INFO, "%s: space %d 0x%llx-0x%llx", unmap ? "unmap" : "remove", sp->id,
		(unsigned long long)start, (unsigned long long)end);
}

static void dispatch(struct fl_engine *e, struct fl__space *sp, const struct uffd_msg *m,
		     uint64_t t0, uint64_t gen, struct fl__worker *w)
{
	const struct fl__entry *ent;

	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		atomic_fetch_add_explicit(&e->faults, 1, memory_order_relaxed);
		/* The read lock is held while the fault is served, so the
		 * target cannot be freed (or re-indexed) under the handler. */
		pthread_rwlock_rdlock(&e->lock);
		ent = fl__index_find(&sp->index, m->arg.pagefault.address);
		if (ent) {
			struct fl__entry copy = *ent;
			copy.target->ops->fault(copy.target, &copy, m, t0, w);
		} else {
			fl__fail_unowned(e, sp, m, gen != atomic_load(&e->index_gen));
		}
		pthread_rwlock_unlock(&e->lock);
		break;
	case UFFD_EVENT_FORK:
		handle_fork(e, sp, (int)m->arg.fork.ufd);
		break;
	case UFFD_EVENT_REMAP:
		handle_remap(e, sp, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
		break;
	case UFFD_EVENT_REMOVE:
		handle_remove(e, sp, m->arg.remove.start, m->arg.remove.end, false);
		break;
	case UFFD_EVENT_UNMAP:
		handle_remove(e, sp, m->arg.remove.start, m->arg.remove.end, true);
		break;
	default:
		fl__log(&e->log, FL_LOG_WARN, "unknown uffd event 0x%x", m->event);
		return;
	}
	if (m->event != UFFD_EVENT_PAGEFAULT && m->event != UFFD_EVENT_FORK && e->opts.on_event) {
		struct fl_event ev = { .new_space = -1 };

		if (m->event == UFFD_EVENT_REMAP) {
			ev = (struct fl_event){ FL_EVENT_REMAP, -1, m->arg.remap.from,
						m->arg.remap.from + m->arg.remap.len, m->arg.remap.to };
		} else {
			ev.kind = m->event == UFFD_EVENT_REMOVE ? FL_EVENT_REMOVE : FL_EVENT_UNMAP;
			ev.start = m->arg.remove.start;
			ev.end = m->arg.remove.end;
		}
		e->opts.on_event(e->opts.event_ctx, sp->id, &ev);
	}
}

/*
 * How many messages to ask the kernel for. Asking for more than are queued
 * costs it a second look for one more on every read (~120 ns here), which
 * is every read when faults come one at a time: so after SINGLES_MAX reads
 * in a row that found one message, ask for one. Every PROBE_EVERY-th read
 * still asks for a whole batch, and one that finds more goes back to
 * batches: a burst is read one message per wait for at most that long.
 */
#define SINGLES_MAX 8
#define PROBE_EVERY 16

static unsigned read_want(struct fl__worker *w)
{
	if (w->singles < SINGLES_MAX)
		return w->batch;
	return ++w->probe % PROBE_EVERY ? 1 : w->batch;
}

static void read_seen(struct fl__worker *w, int n)
{
	if (n > 1)
		w->singles = 0;
	else if (n == 1 && w->singles < SINGLES_MAX)
		w->singles++;
}

/* Read and handle one batch from a space. Returns messages handled, or -errno. */
static int service_space(struct fl_engine *e, struct fl__space *sp, struct fl__worker *w)
{
	bool filler = !(e->opts.flags & FL_ENGINE_NO_FILLER);
	uint64_t t0, gen;
	int n;

	if (atomic_load_explicit(&sp->dead, memory_order_relaxed) ||
	    atomic_load_explicit(&sp->paused, memory_order_relaxed))
		return 0;
	/* The index generation before the read: a fault that finds no region
	 * may have been queued before a region went away (stale). */
	gen = atomic_load(&e->index_gen);
	/* Under read_mu: fl_engine_release() closes a space's uffd holding
	 * it, and the number may be reused at once for another process's. */
	pthread_mutex_lock(&sp->read_mu);
	n = atomic_load(&sp->dead) ? 0 : fl_uffd_read(sp->uffd, w->msgs, read_want(w));
	read_seen(w, n);
	if (n <= 0) {
		pthread_mutex_unlock(&sp->read_mu);
		return n == -EAGAIN ? 0 : n;
	}
	t0 = fl__now_ns();
	/* Only a background filler reads demand_inflight (it yields to
	 * demand faults): without one, two locked operations less per read. */
	if (filler)
		atomic_fetch_add_explicit(&e->demand_inflight, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->reads, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->messages, (uint64_t)n, memory_order_relaxed);
	/* Events before the next read: the kernel lets madvise() return once
	 * its REMOVE is read, and the fault that follows may be read by
	 * another thread; it must find the range discarded, not serve the
	 * old bytes. Faults of this batch go after its events (they raced
	 * with them anyway). */
	for (int i = 0; i < n; i++)
		if (w->msgs[i].event != UFFD_EVENT_PAGEFAULT)
			dispatch(e, sp, &w->msgs[i], t0, gen, w);
	pthread_mutex_unlock(&sp->read_mu);
	for (int i = 0; i < n; i++)
		if (w->msgs[i].event == UFFD_EVENT_PAGEFAULT)
			dispatch(e, sp, &w->msgs[i], t0, gen, w);
	if (filler)
		atomic_fetch_sub_explicit(&e->demand_inflight, 1, memory_order_relaxed);
	return n;
}

/* ---- handler threads ---------------------------------------------------- */

static void pin_to(int cpu)
{
	cpu_set_t set;
	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/*
 * The thread's epoll set over pfd[0..n) (stop, wake, the live spaces'
 * uffds), each entry's data its index: -1 when it cannot be made (the
 * thread polls pfd instead). Waiting in epoll costs one wait-queue entry
 * per wait where poll(2) adds and removes one per fd on every call (on
 * these VMs each is an irq-saving lock round trip, on the fault path). Made
 * afresh on each rebuild: a fresh set holds no entry for a uffd closed
 * meanwhile (fl_engine_release()) whose file lives on in the process that
 * handed it over, which epoll would go on reporting.
 */
static int epoll_set(const struct pollfd *pfd, size_t n)
{
	int epfd;

	if (fl__epoll_create(&epfd))
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = i };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, pfd[i].fd, &ev)) {
			fl__close(epfd);
			return -1;
		}
	}
	return epfd;
}

/* What poll or epoll reported for pfd[i]: false when the thread stops. */
static bool handle_ready(struct fl_engine *e, struct fl__thread *t, struct fl__space **sps, size_t i,
			 unsigned revents, struct fl__worker *w, bool *rebuild)
{
	uint64_t v;

	if (i == 0)
		return !revents;
	if (i == 1) {
		if (revents && read(t->wake_fd, &v, sizeof(v)) < 0)
			(void)0;
		*rebuild |= revents != 0;
		return true;
	}
	if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
		atomic_store(&sps[i]->dead, true);
		*rebuild = true;
		return true;
	}
	if (revents & POLLIN)
		service_space(e, sps[i], w);
	return true;
}

#define EPOLL_BATCH 16

static void *handler_main(void *arg)
{
	struct fl__thread *t = arg;
	struct fl_engine *e = t->engine;
	struct fl__worker w;
	struct pollfd *pfd = NULL;
	struct fl__space **sps = NULL;
	struct epoll_event evs[EPOLL_BATCH];
	size_t cap = 0;
	int epfd = -1;
	bool busy = e->opts.flags & FL_ENGINE_BUSY_POLL, stop = false;

	pin_to(t->cpu);
	if (fl__worker_init(&w, WORKER_BUF, e->opts.batch)) {
		fl__log(&e->log, FL_LOG_ERROR, "handler thread: out of memory");
		return NULL;
	}
	/* The poll set changes only when a space is added, unpaused or dies;
	 * those wake wake_fd, so it is rebuilt then, not on every fault. */
	bool rebuild = true;
	size_t n = 0;

	while (!stop && !atomic_load(&e->stopping)) {
		int r;

		if (rebuild) {
			pthread_rwlock_rdlock(&e->lock);
			if (cap < e->nspaces + 2) {
				size_t ncap = e->nspaces + 8;
				struct pollfd *np = fl__forksafe_realloc(pfd, ncap * sizeof(*pfd));
				struct fl__space **ns = np ? fl__forksafe_realloc(sps, ncap * sizeof(*sps)) : NULL;
				if (np)
					pfd = np;
				if (ns)
					sps = ns;
				if (!np || !ns) {
					pthread_rwlock_unlock(&e->lock);
					fl__log(&e->log, FL_LOG_ERROR, "handler thread: out of memory");
					continue;	/* faults wait; retried on the next loop */
				}
				cap = ncap;
			}
			n = 0;
			pfd[n++] = (struct pollfd){ .fd = e->stop_fd, .events = POLLIN };
			pfd[n++] = (struct pollfd){ .fd = t->wake_fd, .events = POLLIN };
			for (size_t i = 0; i < e->nspaces; i++) {
				if (atomic_load(&e->spaces[i]->dead) || atomic_load(&e->spaces[i]->paused))
					continue;
				sps[n] = e->spaces[i];
				pfd[n++] = (struct pollfd){ .fd = e->spaces[i]->uffd, .events = POLLIN };
			}
			/* Under the lock: no uffd of the set is closed meanwhile. */
			fl__close(epfd);
			epfd = busy ? -1 : epoll_set(pfd, n);
			pthread_rwlock_unlock(&e->lock);
			rebuild = false;
		}

		if (busy) {
			/* Spin until the set of spaces changes or we stop. */
			uint64_t v;
			while (!atomic_load_explicit(&e->stopping, memory_order_relaxed)) {
				for (size_t i = 2; i < n; i++)
					service_space(e, sps[i], &w);
				if (read(t->wake_fd, &v, sizeof(v)) == sizeof(v))
					break;
			}
			rebuild = true;
			continue;
		}
		if (epfd >= 0) {
			r = fl__epoll_wait(epfd, evs, EPOLL_BATCH, -1);
			for (int k = 0; k < r && !stop; k++)
				stop = !handle_ready(e, t, sps, (size_t)evs[k].data.u64, evs[k].events, &w, &rebuild);
			continue;
		}
		r = fl__poll(pfd, (unsigned)n, -1);
		if (r < 0)
			continue;
		for (size_t i = 0; i < n && !stop; i++)
			stop = !handle_ready(e, t, sps, i, (unsigned)pfd[i].revents, &w, &rebuild);
	}
	fl__close(epfd);
	fl__forksafe_free(pfd);
	fl__forksafe_free(sps);
	fl__worker_fini(&w);
	return NULL;
}

/* ---- background filler --------------------------------------------------- */

void fl__engine_kick_filler(struct fl_engine *e)
{
	pthread_mutex_lock(&e->filler_mu);
	atomic_fetch_add(&e->filler_gen, 1);
	pthread_cond_signal(&e->filler_cv);
	pthread_mutex_unlock(&e->filler_mu);
}

/* One batch for the first target that still needs filling; false when none. */
static bool fill_one(struct fl_engine *e, struct fl__worker *w)
{
	struct fl__target *target = NULL;

	pthread_rwlock_rdlock(&e->lock);
	for (size_t i = 0; i < e->ntargets; i++) {
		struct fl__target *t = e->targets[i];
		if ((t->flags & FL__TARGET_FILL) && !atomic_load(&t->fill_done) &&
		    !atomic_load(&t->dead) && !atomic_load(&t->space->dead)) {
			target = t;
			break;
		}
	}
	if (target && target->ops->fill_step(target, w) == 0)
		atomic_store(&target->fill_done, true);
	pthread_rwlock_unlock(&e->lock);
	return target != NULL;
}

static void *filler_main(void *arg)
{
	struct fl_engine *e = arg;
	struct fl__worker w;

	if (fl__worker_init(&w, WORKER_BUF, 1))
		return NULL;
	while (!atomic_load(&e->stopping)) {
		uint64_t gen = atomic_load(&e->filler_gen);
		/* Demand faults first: yield while handlers are busy. */
		if (atomic_load_explicit(&e->demand_inflight, memory_order_relaxed)) {
			/* Sleep, not spin: on two CPUs a spinning filler takes
			 * the CPU the faulting threads need. */
			struct timespec ts = { 0, 50 * 1000 };
			nanosleep(&ts, NULL);
			continue;
		}
		if (fill_one(e, &w))
			continue;
		pthread_mutex_lock(&e->filler_mu);
		while (!atomic_load(&e->stopping) && gen == atomic_load(&e->filler_gen))
			pthread_cond_wait(&e->filler_cv, &e->filler_mu);
		pthread_mutex_unlock(&e->filler_mu);
	}
	fl__worker_fini(&w);
	return NULL;
}

/* ---- public API ----------------------------------------------------------- */

int fl_engine_new(const struct fl_engine_opts *opts, struct fl_engine **ret_engine)
{
	struct fl_engine *e;
	struct fl__space *sp;
	uint64_t want, avail = fl_features_to_uffd(fl_features()), got = 0;
	int uffd = -1, r;

	if (!ret_engine)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	r = FL_OPTS_COPY(e->opts, opts);
	if (r) {
		free(e);
		return r;
	}
	if (e->opts.placement > FL_PLACE_PER_CPU || e->opts.threads > 256) {
		free(e);
		return -EINVAL;
	}
	e->log = (struct fl__logger){ e->opts.log, e->opts.log_ctx, e->opts.log_level };
	e->stop_fd = -1;
	e->embedded_epfd = -1;
	pthread_rwlock_init(&e->lock, NULL);
	pthread_mutex_init(&e->filler_mu, NULL);
	pthread_cond_init(&e->filler_cv, NULL);
	pthread_mutex_init(&e->embedded_mu, NULL);

	r = fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK | e->opts.uffd_flags, &uffd);
	if (r)
		goto fail;
	want = UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EXACT_ADDRESS | UFFD_FEATURE_POISON |
	       UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MISSING_HUGETLBFS |
	       UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_MINOR_HUGETLBFS |
	       UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
	       UFFD_FEATURE_MOVE | e->opts.features;
	if (!(e->opts.flags & FL_ENGINE_NO_EVENTS))
		want |= UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
	want &= avail;
	r = fl_uffd_api(uffd, want, &got, NULL);
	if (r == -EPERM && (want & UFFD_FEATURE_EVENT_FORK)) {
		/* EVENT_FORK needs CAP_SYS_PTRACE. UFFDIO_API may be tried
		 * again after a refused handshake; without the event a
		 * child's copy of lazy memory is left unregistered, so warn. */
		want &= ~(uint64_t)UFFD_FEATURE_EVENT_FORK;
		fl__log(&e->log, FL_LOG_WARN, "EVENT_FORK refused (no CAP_SYS_PTRACE): forked children "
			"will not be served");
		r = fl_uffd_api(uffd, want, &got, NULL);
	}
	if (r)
		goto fail;
	e->features = want;
	r = fl__eventfd(&e->stop_fd);
	if (!r)
		r = fl__epoll_create(&e->embedded_epfd);
	if (r)
		goto fail;
	r = add_space(e, uffd, 0, want, false, &sp);
	if (r)
		goto fail;
	uffd = -1;
	r = fl__worker_init(&e->embedded_worker, WORKER_BUF, e->opts.batch);
	if (r)
		goto fail;
	*ret_engine = e;
	return 0;
fail:
	fl__close(uffd);
	fl_engine_free(e);
	return r;
}

int fl_engine_start(struct fl_engine *e)
{
	unsigned n;
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);

	if (!e)
		return -EINVAL;
	if (e->running || (e->opts.flags & FL_ENGINE_EMBEDDED))
		return 0;
	atomic_store(&e->stopping, false);
	if (e->opts.placement == FL_PLACE_PER_CPU)
		n = ncpu > 0 ? (unsigned)ncpu : 1;
	else
		n = e->opts.threads ? e->opts.threads : 1;
	e->threads = calloc(n, sizeof(*e->threads));
	if (!e->threads)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct fl__thread *t = &e->threads[i];
		int r;
		t->engine = e;
		t->cpu = e->opts.placement == FL_PLACE_CPU ? e->opts.cpu :
			 e->opts.placement == FL_PLACE_PER_CPU ? (int)i : -1;
		r = fl__eventfd(&t->wake_fd);
		if (!r)
			r = -pthread_create(&t->tid, NULL, handler_main, t);
		if (r) {
			fl__close(t->wake_fd);
			atomic_store(&e->stopping, true);
			fl__eventfd_signal(e->stop_fd);
			for (unsigned j = 0; j < i; j++) {
				pthread_join(e->threads[j].tid, NULL);
				fl__close(e->threads[j].wake_fd);
			}
			free(e->threads);
			e->threads = NULL;
			return r;
		}
		e->nthreads = i + 1;
	}
	if (!(e->opts.flags & FL_ENGINE_NO_FILLER)) {
		if (pthread_create(&e->filler, NULL, filler_main, e) == 0)
			e->filler_running = true;
	}
	e->running = true;
	return 0;
}

int fl_engine_stop(struct fl_engine *e)
{
	uint64_t v;
	if (!e)
		return -EINVAL;
	if (!e->running)
		return 0;
	atomic_store(&e->stopping, true);
	fl__eventfd_signal(e->stop_fd);
	fl__engine_kick_filler(e);
	for (unsigned i = 0; i < e->nthreads; i++) {
		pthread_join(e->threads[i].tid, NULL);
		fl__close(e->threads[i].wake_fd);
	}
	if (e->filler_running)
		pthread_join(e->filler, NULL);
	e->filler_running = false;
	free(e->threads);
	e->threads = NULL;
	e->nthreads = 0;
	/* Drain the stop eventfd so a restart blocks again. */
	if (read(e->stop_fd, &v, sizeof(v)) < 0)
		(void)0;
	atomic_store(&e->stopping, false);
	e->running = false;
	return 0;
}

struct fl_engine *fl_engine_free(struct fl_engine *e)
{
	if (!e)
		return NULL;
	fl_engine_stop(e);
	/* Fail closed: anything still registered in another mm gets SIGBUS on
	 * access rather than the zero pages closing the uffd would give. */
	while (e->ntargets) {
		struct fl__target *t = e->targets[e->ntargets - 1];
		if (!(t->flags & FL__TARGET_LOCAL) && !atomic_load(&t->space->dead))
			t->ops->poison_unresolved(t);
		/* A target unregisters before unmapping, so munmap raises no
		 * UNMAP event nobody is left to read. */
		t->ops->free(t);
	}
	for (size_t i = 0; i < e->nspaces; i++) {
		fl__close(e->spaces[i]->uffd);
		fl__index_fini(&e->spaces[i]->index);
		pthread_mutex_destroy(&e->spaces[i]->read_mu);
		fl__forksafe_free(e->spaces[i]);
	}
	fl__forksafe_free(e->spaces);
	fl__forksafe_free(e->targets);
	fl__close(e->stop_fd);
	fl__close(e->embedded_epfd);
	fl__worker_fini(&e->embedded_worker);
	pthread_rwlock_destroy(&e->lock);
	pthread_mutex_destroy(&e->filler_mu);
	pthread_cond_destroy(&e->filler_cv);
	pthread_mutex_destroy(&e->embedded_mu);
	free(e);
	return NULL;
}

int fl_engine_fd(const struct fl_engine *e)
{
	return e && e->nspaces ? e->spaces[0]->uffd : -EINVAL;
}

uint64_t fl_engine_features(const struct fl_engine *e)
{
	return e ? e->features : 0;
}

/*
 * Bring the embedded epoll set in line with the spaces that are served:
 * any number of them (a fixed poll array once left the 65th unread).
 * Caller holds embedded_mu and the read lock.
 */
static void embedded_sync(struct fl_engine *e)
{
	for (size_t i = 0; i < e->nspaces; i++) {
		struct fl__space *sp = e->spaces[i];
		bool want = !atomic_load(&sp->dead) && !atomic_load(&sp->paused) && sp->uffd >= 0;
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)i };

		if (want == sp->polled)
			continue;
		if (epoll_ctl(e->embedded_epfd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, sp->uffd, &ev) == 0 ||
		    !want)
			sp->polled = want;
	}
}

/*
 * Serve what is queued on space `id` now, from the calling thread: for a
 * thread that must see an event read that nobody else will read (the
 * engine is stopped, or embedded and its application is not calling
 * fl_engine_process()). Returns the messages served, or -ENOENT.
 */
int fl__engine_service(struct fl_engine *e, int id)
{
	struct fl__space *sp;
	int total = 0, k;

	pthread_rwlock_rdlock(&e->lock);
	sp = fl__engine_space(e, id);
	pthread_rwlock_unlock(&e->lock);
	if (!sp)
		return -ENOENT;
	pthread_mutex_lock(&e->embedded_mu);
	while ((k = service_space(e, sp, &e->embedded_worker)) > 0)
		total += k;
	pthread_mutex_unlock(&e->embedded_mu);
	return total;
}

int fl_engine_process(struct fl_engine *e, int timeout_ms)
{
	struct epoll_event ev[64];
	int total = 0, r;

	if (!e)
		return -EINVAL;
	pthread_mutex_lock(&e->embedded_mu);
	pthread_rwlock_rdlock(&e->lock);
	embedded_sync(e);
	pthread_rwlock_unlock(&e->lock);
	r = fl__epoll_wait(e->embedded_epfd, ev, (int)FL_ARRAY_SIZE(ev), timeout_ms);
	if (r < 0 && r != -EINTR) {
		pthread_mutex_unlock(&e->embedded_mu);
		return r;
	}
	/* More than 64 ready come back on the next call: epoll rotates. */
	for (int i = 0; i < r; i++) {
		struct fl__space *sp;

		pthread_rwlock_rdlock(&e->lock);
		sp = fl__engine_space(e, (int)ev[i].data.u64);
		pthread_rwlock_unlock(&e->lock);
		if (!sp)
			continue;
		if (!(ev[i].events & EPOLLIN)) {
			/* POLLERR/HUP, as the handler threads treat it */
			atomic_store(&sp->dead, true);
			continue;
		}
		for (;;) {
			int k = service_space(e, sp, &e->embedded_worker);
			if (k <= 0)
				break;
			total += k;
		}
	}
	if (!total && !(e->opts.flags & FL_ENGINE_NO_FILLER))
		fill_one(e, &e->embedded_worker);
	pthread_mutex_unlock(&e->embedded_mu);
	return total;
}

int fl_engine_adopt(struct fl_engine *e, int uffd, pid_t pid, uint64_t features)
{
	struct fl__space *sp;
	int r, flags;

	if (!e || uffd < 0)
		return -EINVAL;
	/* Our handler threads poll: the fd must not block reads. */
	flags = fcntl(uffd, F_GETFL);
	if (flags >= 0 && !(flags & O_NONBLOCK))
		fcntl(uffd, F_SETFL, flags | O_NONBLOCK);
	pthread_rwlock_wrlock(&e->lock);
	r = add_space(e, uffd, pid, features, false, &sp);
	if (!r)
		atomic_store(&sp->paused, true);
	pthread_rwlock_unlock(&e->lock);
	if (r)
		return r;
	return sp->id;
}

int fl_engine_wake_all(struct fl_engine *e, int space)
{
	struct fl__space *sp;
	int r = 0;

	if (!e)
		return -EINVAL;
	pthread_rwlock_rdlock(&e->lock);
	sp = fl__engine_space(e, space);
	if (!sp) {
		pthread_rwlock_unlock(&e->lock);
		return -ENOENT;
	}
	/* Serve first, then wake: every re-delivered fault finds its region. */
	atomic_store(&sp->paused, false);
	for (size_t i = 0; i < sp->index.n && !r; i++)
		r = fl_uffd_wake(sp->uffd, (void *)(uintptr_t)sp->index.entries[i].start,
				 sp->index.entries[i].end - sp->index.entries[i].start);
	pthread_rwlock_unlock(&e->lock);
	wake_threads(e);
	return r;
}


/* The latency part of the engine's and a space's statistics (two structs
 * with the same fields), from the histogram their targets' were summed
 * into. */
static void latency_summary(struct fl__hist *h, uint64_t *ret_count, uint64_t *ret_p50, uint64_t *ret_p99,
			    uint64_t *ret_max, uint64_t *ret_hist)
{
	*ret_count = atomic_load(&h->count);
	*ret_p50 = fl__hist_quantile(h, 0.50);
	*ret_p99 = fl__hist_quantile(h, 0.99);
	*ret_max = atomic_load(&h->max);
	for (unsigned b = 0; b < FL_LAT_BUCKETS; b++)
		ret_hist[b] = atomic_load(&h->bucket[b]);
}

int fl_engine_stats(const struct fl_engine *e, struct fl_engine_stats *st)
{
	struct fl_engine_stats s = { .sz = sizeof(s) };
	struct fl__hist *h;
	int r;

	if (!e)
		return -EINVAL;
	r = fl__opts_out_check(st);
	if (r)
		return r;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	s.messages = atomic_load(&e->messages);
	s.reads = atomic_load(&e->reads);
	s.faults = atomic_load(&e->faults);
	s.unowned_faults = atomic_load(&e->unowned_faults);
	s.events_fork = atomic_load(&e->ev_fork);
	s.events_remap = atomic_load(&e->ev_remap);
	s.events_remove = atomic_load(&e->ev_remove);
	s.events_unmap = atomic_load(&e->ev_unmap);
	pthread_rwlock_rdlock((pthread_rwlock_t *)&e->lock);
	for (size_t i = 0; i < e->nspaces; i++)
		s.spaces += !atomic_load(&e->spaces[i]->dead);
	/* Latency: the targets served now and every one removed before. */
	fl__hist_merge(h, &e->retired);
	for (size_t i = 0; i < e->ntargets; i++) {
		struct fl__target_stats ts = { .hist = h };
		e->targets[i]->ops->stats(e->targets[i], &ts);
	}
	pthread_rwlock_unlock((pthread_rwlock_t *)&e->lock);
	latency_summary(h, &s.lat_count, &s.lat_p50_ns, &s.lat_p99_ns, &s.lat_max_ns, s.lat_hist);
	free(h);
	return FL_OPTS_OUT(st, s);
}

/* ---- spaces of other processes: release, reap, per-space statistics ------- */

/* The targets of `sp`, in one pass over the engine's list (fs-allocated;
 * NULL with *ret_n 0 when there are none or memory is short). Only the
 * caller adds targets to an adopted space; a forked one gets none later. */
static struct fl__target **targets_of(struct fl_engine *e, struct fl__space *sp, size_t *ret_n)
{
	struct fl__target **v = NULL;
	size_t n = 0;

	pthread_rwlock_rdlock(&e->lock);
	for (size_t i = 0; i < e->ntargets; i++)
		n += e->targets[i]->space == sp;
	v = n ? fl__forksafe_calloc(n, sizeof(*v)) : NULL;
	n = 0;
	for (size_t i = 0; v && i < e->ntargets; i++)
		if (e->targets[i]->space == sp)
			v[n++] = e->targets[i];
	pthread_rwlock_unlock(&e->lock);
	*ret_n = n;
	return v;
}

int fl_engine_release(struct fl_engine *e, int space, unsigned flags)
{
	struct fl__space *sp;
	struct fl__target **regs;
	int64_t poisoned = 0;
	size_t nregs;
	int fd, ret = 0;

	if (!e || space <= 0 || (flags & ~(FL_RELEASE_POISON | FL_RELEASE_POPULATE | FL_RELEASE_DRAIN)))
		return -EINVAL;
	pthread_rwlock_rdlock(&e->lock);
	sp = fl__engine_space(e, space);
	pthread_rwlock_unlock(&e->lock);
	if (!sp || sp->released)
		return -ENOENT;
	regs = targets_of(e, sp, &nregs);
	if (!regs && nregs)
		return -ENOMEM;
	for (size_t k = 0; k < nregs; k++) {
		struct fl__target *t = regs[k];
		bool alive = !atomic_load(&sp->dead);
		if (alive && (flags & FL_RELEASE_POPULATE)) {
			int pr = t->ops->populate(t);
			if (pr && pr != -ESRCH && !ret)
				ret = pr;
		}
		/* A region whose pages cannot all be delivered fails closed:
		 * what is still missing raises SIGBUS, never reads zeros. */
		if (alive && (flags & (FL_RELEASE_POISON | FL_RELEASE_POPULATE))) {
			int64_t pr = t->ops->poison_unresolved(t);
			if (pr < 0 && pr != -ESRCH && !ret)
				ret = (int)pr;
			if (pr > 0)
				poisoned += pr;
		}
		t->ops->free(t);
	}
	fl__forksafe_free(regs);
	if (flags & FL_RELEASE_DRAIN) {
		/* Keep reading: with no region left, a fault is failed closed
		 * (poison or SIGBUS) and an event acknowledged, so that no
		 * thread of the process ever waits on a uffd nobody reads. */
		atomic_fetch_add(&e->index_gen, 1);
		if (poisoned)
			fl__log(&e->log, FL_LOG_INFO, "release: space %d: %lld pages poisoned, draining", space,
				(long long)poisoned);
		return ret;
	}
	/* read_mu first, as service_space() takes them: no read is under way
	 * on this uffd when it is closed. */
	pthread_mutex_lock(&sp->read_mu);
	pthread_rwlock_wrlock(&e->lock);
	atomic_store(&sp->dead, true);
	sp->released = true;
	fd = sp->uffd;
	sp->uffd = -1;
	/* Out of the embedded set before the close: the file lives on in
	 * the process that handed it over, and epoll would keep it. */
	if (sp->polled)
		epoll_ctl(e->embedded_epfd, EPOLL_CTL_DEL, fd, NULL);
	sp->polled = false;
	fl__index_fini(&sp->index);
	atomic_fetch_add(&e->index_gen, 1);
	pthread_rwlock_unlock(&e->lock);
	fl__close(fd);
	pthread_mutex_unlock(&sp->read_mu);
	wake_threads(e);
	if (poisoned)
		fl__log(&e->log, FL_LOG_INFO, "release: space %d: %lld pages poisoned", space, (long long)poisoned);
	return ret;
}

/* Is the mm behind a space gone? UFFDIO_WRITEPROTECT checks the mm before
 * anything else: ESRCH for a dead one, and mode 0 (unprotect) of a range
 * that is not registered for WP changes nothing in a live one. */
static bool space_gone(struct fl__space *sp)
{
	uint64_t addr;

	if (atomic_load(&sp->dead))
		return true;
	if (!sp->index.n)
		return false;
	addr = sp->index.entries[0].start;
	return fl_uffd_writeprotect(sp->uffd, (void *)(uintptr_t)addr, FL_PAGE_SIZE, false) == -ESRCH;
}

int fl_engine_reap(struct fl_engine *e)
{
	int reaped = 0;

	if (!e)
		return -EINVAL;
	for (size_t i = 1;; i++) {
		struct fl__space *sp;
		bool gone;

		pthread_rwlock_rdlock(&e->lock);
		if (i >= e->nspaces) {
			pthread_rwlock_unlock(&e->lock);
			break;
		}
		sp = e->spaces[i];
		gone = !sp->released && space_gone(sp);
		pthread_rwlock_unlock(&e->lock);
		if (gone) {
			atomic_store(&sp->dead, true);
			if (fl_engine_release(e, (int)i, 0) == 0)
				reaped++;
		}
	}
	return reaped;
}

int fl_engine_space_stats(const struct fl_engine *e, int space, struct fl_space_stats *st)
{
	struct fl_engine *me = (struct fl_engine *)e;
	struct fl_space_stats s = { .sz = sizeof(s) };
	struct fl__hist *h;
	struct fl__space *sp;
	int ret;

	if (!e)
		return -EINVAL;
	ret = fl__opts_out_check(st);
	if (ret)
		return ret;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_rwlock_rdlock(&me->lock);
	sp = fl__engine_space(me, space);
	if (!sp || sp->released) {
		pthread_rwlock_unlock(&me->lock);
		free(h);
		return -ENOENT;
	}
	s.pid = sp->pid;
	s.parent = sp->parent;
	s.dead = atomic_load(&sp->dead);
	s.paused = atomic_load(&sp->paused);
	for (size_t i = 0; i < sp->index.n; i++)
		s.bytes += sp->index.entries[i].end - sp->index.entries[i].start;
	for (size_t i = 0; i < me->ntargets; i++) {
		struct fl__target *t = me->targets[i];
		struct fl__target_stats ts = { .hist = h };
		if (t->space != sp)
			continue;
		s.regions++;
		t->ops->stats(t, &ts);
		s.faults += ts.faults;
		s.pages_resolved += ts.pages_resolved;
		s.pages_poisoned += ts.pages_poisoned;
		s.bytes_read += ts.bytes_read;
		s.blocked_ns += ts.blocked_ns;
	}
	pthread_rwlock_unlock(&me->lock);
	latency_summary(h, &s.lat_count, &s.lat_p50_ns, &s.lat_p99_ns, &s.lat_max_ns, s.lat_hist);
	free(h);
	return FL_OPTS_OUT(st, s);
}

int fl_engine_space_fd(const struct fl_engine *e, int space)
{
	struct fl_engine *me = (struct fl_engine *)e;
	struct fl__space *sp;
	int fd;

	if (!e)
		return -EINVAL;
	pthread_rwlock_rdlock(&me->lock);
	sp = fl__engine_space(me, space);
	fd = !sp || sp->released ? -ENOENT : sp->uffd;
	pthread_rwlock_unlock(&me->lock);
	return fd;
}
