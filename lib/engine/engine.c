// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The fault engine: uffds ("spaces"), the address index, handler threads,
 * event handling and the background filler's thread.
 */
#include "engine-internal.h"

#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#define DEFAULT_BATCH 64
#define WORKER_BUF (4u << 20)

int fl__worker_init(struct fl__worker *w, size_t cap, unsigned batch)
{
	memset(w, 0, sizeof(*w));
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
	/* one flag per 4 KiB page the buffer can hold */
	z = fl__forksafe_calloc(cap / FL_PAGE_SIZE + 1, 1);
	/* Page-aligned (mmap) so COPY sources never straddle needlessly. */
	p = z ? fl__forksafe_calloc(1, cap) : NULL;
	if (!p) {
		fl__forksafe_free(z);
		return -ENOMEM;
	}
	fl__forksafe_free(w->buf);
	fl__forksafe_free(w->zero);
	w->buf = p;
	w->zero = z;
	w->cap = cap;
	return 0;
}

void fl__worker_fini(struct fl__worker *w)
{
	fl__forksafe_free(w->buf);
	fl__forksafe_free(w->zero);
	fl__forksafe_free(w->msgs);
	memset(w, 0, sizeof(*w));
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

/* Index of the first entry whose end is > addr. Caller holds the lock. */
static size_t index_lower(const struct fl__space *sp, uint64_t addr)
{
	size_t lo = 0, hi = sp->nentries;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sp->entries[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int index_insert(struct fl__space *sp, const struct fl__entry *ent)
{
	size_t i = index_lower(sp, ent->start);

	if (i < sp->nentries && sp->entries[i].start < ent->end)
		return -EEXIST;
	if (sp->nentries == sp->cap) {
		size_t cap = sp->cap ? sp->cap * 2 : 16;
		struct fl__entry *n = fl__forksafe_realloc(sp->entries, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		sp->entries = n;
		sp->cap = cap;
	}
	memmove(&sp->entries[i + 1], &sp->entries[i], (sp->nentries - i) * sizeof(*ent));
	sp->entries[i] = *ent;
	sp->nentries++;
	return 0;
}

static void index_remove_at(struct fl__space *sp, size_t i)
{
	memmove(&sp->entries[i], &sp->entries[i + 1], (sp->nentries - i - 1) * sizeof(sp->entries[0]));
	sp->nentries--;
}

/* Split entries so that `addr` is an entry boundary. */
static int index_split(struct fl__space *sp, uint64_t addr)
{
	size_t i = index_lower(sp, addr);
	struct fl__entry tail;

	if (i >= sp->nentries || sp->entries[i].start >= addr)
		return 0;
	tail = sp->entries[i];
	tail.region_off += addr - tail.start;
	tail.start = addr;
	sp->entries[i].end = addr;
	return index_insert(sp, &tail);
}

static bool lookup(struct fl__space *sp, uint64_t addr, struct fl__entry *ret)
{
	size_t i = index_lower(sp, addr);
	if (i < sp->nentries && sp->entries[i].start <= addr) {
		*ret = sp->entries[i];
		return true;
	}
	return false;
}

int fl__engine_add_region(struct fl_engine *e, struct fl__space *sp, struct fl_region *r)
{
	struct fl__entry ent = {
		.start = (uintptr_t)r->addr,
		.end = (uintptr_t)r->addr + r->length,
		.region = r,
		.region_off = 0,
	};
	int ret;

	pthread_rwlock_wrlock(&e->lock);
	if (e->nregions == e->regions_cap) {
		size_t cap = e->regions_cap ? e->regions_cap * 2 : 16;
		struct fl_region **n = fl__forksafe_realloc(e->regions, cap * sizeof(*n));
		if (!n) {
			pthread_rwlock_unlock(&e->lock);
			return -ENOMEM;
		}
		e->regions = n;
		e->regions_cap = cap;
	}
	ret = index_insert(sp, &ent);
	if (!ret)
		e->regions[e->nregions++] = r;
	atomic_fetch_add(&e->index_gen, 1);
	pthread_rwlock_unlock(&e->lock);
	if (!ret && (r->flags & FL_REGION_BACKGROUND))
		fl__engine_kick_filler(e);
	return ret;
}

size_t fl__engine_remove_region(struct fl_engine *e, struct fl_region *r, struct fl_range **ret)
{
	struct fl_range *ranges = NULL;
	size_t n = 0, cap = 0;

	pthread_rwlock_wrlock(&e->lock);
	for (size_t i = 0; i < e->nregions; i++) {
		if (e->regions[i] == r) {
			e->regions[i] = e->regions[--e->nregions];
			break;
		}
	}
	for (size_t i = 0; i < r->space->nentries;) {
		if (r->space->entries[i].region == r) {
			if (n == cap) {
				struct fl_range *g = fl__forksafe_realloc(ranges, (cap * 2 + 4) * sizeof(*g));
				if (g) {
					ranges = g;
					cap = cap * 2 + 4;
				}
			}
			if (n < cap)
				ranges[n++] = (struct fl_range){ r->space->entries[i].start,
					r->space->entries[i].end - r->space->entries[i].start };
			index_remove_at(r->space, i);
		} else {
			i++;
		}
	}
	atomic_fetch_add(&e->index_gen, 1);
	pthread_rwlock_unlock(&e->lock);
	*ret = ranges;
	return n;
}

/* ---- events ------------------------------------------------------------ */

static void wake_threads(struct fl_engine *e)
{
	for (unsigned i = 0; i < e->nthreads; i++)
		fl__eventfd_signal(e->threads[i].wake_fd);
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
	/* The child starts with a copy of the parent's layout. Each region
	 * gets a clone with its own page state: pages the parent resolves
	 * later are still missing in the child. */
	for (size_t i = 0; i < parent->nentries; i++) {
		struct fl__entry ent = parent->entries[i];
		struct fl_region *clone = NULL;
		for (size_t j = 0; j < sp->nentries; j++)
			if (sp->entries[j].region->store == ent.region->store &&
			    sp->entries[j].region->addr == ent.region->addr)
				clone = sp->entries[j].region;
		if (!clone) {
			clone = fl__region_clone(ent.region, sp);
			if (!clone)
				continue;
			if (e->nregions == e->regions_cap) {
				size_t cap = e->regions_cap * 2 + 16;
				struct fl_region **n = fl__forksafe_realloc(e->regions, cap * sizeof(*n));
				if (!n) {
					fl__region_destroy(clone);
					continue;
				}
				e->regions = n;
				e->regions_cap = cap;
			}
			e->regions[e->nregions++] = clone;
		}
		ent.region = clone;
		index_insert(sp, &ent);
	}
	pthread_rwlock_unlock(&e->lock);
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
	struct fl__entry *moved = NULL;
	size_t nmoved = 0;

	pthread_rwlock_wrlock(&e->lock);
	if (index_split(sp, from) == 0 && index_split(sp, from + len) == 0) {
		size_t i = index_lower(sp, from);
		size_t j = i;
		while (j < sp->nentries && sp->entries[j].start < from + len)
			j++;
		nmoved = j - i;
		moved = nmoved ? fl__forksafe_calloc(nmoved, sizeof(*moved)) : NULL;
		if (moved) {
			memcpy(moved, &sp->entries[i], nmoved * sizeof(*moved));
			for (size_t k = 0; k < nmoved; k++)
				index_remove_at(sp, i);
			for (size_t k = 0; k < nmoved; k++) {
				struct fl_region *r = moved[k].region;
				moved[k].start = moved[k].start - from + to;
				moved[k].end = moved[k].end - from + to;
				if (moved[k].region_off == 0)
					r->addr = (uint8_t *)(uintptr_t)moved[k].start;
				index_insert(sp, &moved[k]);
			}
		}
	}
	pthread_rwlock_unlock(&e->lock);
	fl__forksafe_free(moved);
	atomic_fetch_add(&e->ev_remap, 1);
	fl__log(&e->log, FL_LOG_INFO, "remap: space %d 0x%llx -> 0x%llx (%llu bytes)", sp->id,
		(unsigned long long)from, (unsigned long long)to, (unsigned long long)len);
}

static void handle_remove(struct fl_engine *e, struct fl__space *sp, uint64_t start, uint64_t end, bool unmap)
{
	pthread_rwlock_wrlock(&e->lock);
	if (unmap && index_split(sp, start) == 0 && index_split(sp, end) == 0) {
		size_t i = index_lower(sp, start);
		while (i < sp->nentries && sp->entries[i].start < end) {
			struct fl_region *r = sp->entries[i].region;
			bool left = false;
			index_remove_at(sp, i);
			for (size_t k = 0; k < sp->nentries && !left; k++)
				left = sp->entries[k].region == r;
			if (!left)
				atomic_store(&r->dead, true);
		}
	} else if (!unmap) {
		for (size_t i = index_lower(sp, start); i < sp->nentries && sp->entries[i].start < end; i++) {
			struct fl__entry *ent = &sp->entries[i];
			uint64_t s = FL_MAX(start, ent->start), t = FL_MIN(end, ent->end);
			struct fl_region *r = ent->region;
			uint64_t first = (s - ent->start + ent->region_off) / r->page_size;
			uint64_t last = (t - ent->start + ent->region_off + r->page_size - 1) / r->page_size;
			fl__region_discard(r, first, last - first);
		}
	}
	pthread_rwlock_unlock(&e->lock);
	atomic_fetch_add(unmap ? &e->ev_unmap : &e->ev_remove, 1);
	fl__log(&e->log, FL_LOG_INFO, "%s: space %d 0x%llx-0x%llx", unmap ? "unmap" : "remove", sp->id,
		(unsigned long long)start, (unsigned long long)end);
}

static void dispatch(struct fl_engine *e, struct fl__space *sp, const struct uffd_msg *m,
		     uint64_t t0, uint64_t gen, struct fl__worker *w)
{
	struct fl__entry ent;
	bool found;

	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		atomic_fetch_add_explicit(&e->faults, 1, memory_order_relaxed);
		/* The read lock is held while the fault is served, so the
		 * region cannot be freed (or re-indexed) under the handler. */
		pthread_rwlock_rdlock(&e->lock);
		found = lookup(sp, m->arg.pagefault.address, &ent);
		if (found)
			fl__handle_fault(e, sp, &ent, m, t0, w);
		else
			fl__fail_unowned(e, sp, m, gen != atomic_load(&e->index_gen));
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

/* Read and handle one batch from a space. Returns messages handled, or -errno. */
static int service_space(struct fl_engine *e, struct fl__space *sp, struct fl__worker *w)
{
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
	n = atomic_load(&sp->dead) ? 0 : fl_uffd_read(sp->uffd, w->msgs, w->batch);
	if (n <= 0) {
		pthread_mutex_unlock(&sp->read_mu);
		return n == -EAGAIN ? 0 : n;
	}
	t0 = fl__now_ns();
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

static void *handler_main(void *arg)
{
	struct fl__thread *t = arg;
	struct fl_engine *e = t->engine;
	struct fl__worker w;
	struct pollfd *pfd = NULL;
	struct fl__space **sps = NULL;
	size_t cap = 0;
	bool busy = e->opts.flags & FL_ENGINE_BUSY_POLL;

	pin_to(t->cpu);
	if (fl__worker_init(&w, WORKER_BUF, e->opts.batch)) {
		fl__log(&e->log, FL_LOG_ERROR, "handler thread: out of memory");
		return NULL;
	}
	/* The poll set changes only when a space is added, unpaused or dies;
	 * those wake wake_fd, so it is rebuilt then, not on every fault. */
	bool rebuild = true;
	size_t n = 0;

	while (!atomic_load(&e->stopping)) {
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
		r = fl__poll(pfd, (unsigned)n, -1);
		if (r < 0)
			continue;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents) {
			uint64_t v;
			if (read(t->wake_fd, &v, sizeof(v)) < 0)
				(void)0;
			rebuild = true;
		}
		for (size_t i = 2; i < n; i++) {
			if (pfd[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
				atomic_store(&sps[i]->dead, true);
				rebuild = true;
				continue;
			}
			if (pfd[i].revents & POLLIN)
				service_space(e, sps[i], &w);
		}
	}
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

/* One batch for the first region that still needs filling; false when none. */
static bool fill_one(struct fl_engine *e, struct fl__worker *w)
{
	struct fl_region *target = NULL;

	pthread_rwlock_rdlock(&e->lock);
	for (size_t i = 0; i < e->nregions; i++) {
		struct fl_region *r = e->regions[i];
		if ((r->flags & FL_REGION_BACKGROUND) && !atomic_load(&r->fill_done) &&
		    !atomic_load(&r->dead) && !atomic_load(&r->space->dead)) {
			target = r;
			break;
		}
	}
	if (target)
		fl__fill_step(target, w);
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

	if (!ret_engine || (opts && opts->sz == 0))
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	FL_OPTS_COPY(e->opts, opts);
	e->opts.sz = sizeof(e->opts);
	if (e->opts.placement > FL_PLACE_PER_CPU || e->opts.threads > 256) {
		free(e);
		return -EINVAL;
	}
	e->log = (struct fl__logger){ e->opts.log, e->opts.log_ctx, e->opts.log_level };
	e->stop_fd = -1;
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
	while (e->nregions) {
		struct fl_region *r = e->regions[e->nregions - 1];
		if (!r->mapped_here && !atomic_load(&r->space->dead))
			fl__poison_unresolved(r);
		/* fl_region_free() unregisters before unmapping, so munmap
		 * raises no UNMAP event nobody is left to read. */
		fl_region_free(r);
	}
	for (size_t i = 0; i < e->nspaces; i++) {
		fl__close(e->spaces[i]->uffd);
		fl__forksafe_free(e->spaces[i]->entries);
		pthread_mutex_destroy(&e->spaces[i]->read_mu);
		fl__forksafe_free(e->spaces[i]);
	}
	fl__forksafe_free(e->spaces);
	fl__forksafe_free(e->regions);
	fl__close(e->stop_fd);
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

int fl_engine_process(struct fl_engine *e, int timeout_ms)
{
	struct pollfd pfd[64];
	struct fl__space *sps[64];
	unsigned n = 0;
	int total = 0, r;

	if (!e)
		return -EINVAL;
	pthread_mutex_lock(&e->embedded_mu);
	pthread_rwlock_rdlock(&e->lock);
	for (size_t i = 0; i < e->nspaces && n < FL_ARRAY_SIZE(pfd); i++) {
		if (atomic_load(&e->spaces[i]->dead) || atomic_load(&e->spaces[i]->paused))
			continue;
		sps[n] = e->spaces[i];
		pfd[n++] = (struct pollfd){ .fd = e->spaces[i]->uffd, .events = POLLIN };
	}
	pthread_rwlock_unlock(&e->lock);
	r = fl__poll(pfd, n, timeout_ms);
	if (r < 0 && r != -EINTR) {
		pthread_mutex_unlock(&e->embedded_mu);
		return r;
	}
	for (unsigned i = 0; r > 0 && i < n; i++) {
		if (!(pfd[i].revents & POLLIN))
			continue;
		for (;;) {
			int k = service_space(e, sps[i], &e->embedded_worker);
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
	for (size_t i = 0; i < sp->nentries && !r; i++)
		r = fl_uffd_wake(sp->uffd, (void *)(uintptr_t)sp->entries[i].start,
				 sp->entries[i].end - sp->entries[i].start);
	pthread_rwlock_unlock(&e->lock);
	wake_threads(e);
	return r;
}

int fl_engine_stats(const struct fl_engine *e, struct fl_engine_stats *st)
{
	struct fl_engine_stats s = { 0 };
	size_t n;

	if (!e || !st || !st->sz)
		return -EINVAL;
	s.sz = st->sz;
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
	pthread_rwlock_unlock((pthread_rwlock_t *)&e->lock);
	n = st->sz < sizeof(s) ? st->sz : sizeof(s);
	memcpy(st, &s, n);
	return 0;
}

/* ---- spaces of other processes: release, reap, per-space statistics ------- */

/* The regions of `sp`, in one pass over the engine's list (fs-allocated;
 * NULL with *ret_n 0 when there are none or memory is short). Only the
 * caller adds regions to an adopted space; a forked one gets none later. */
static struct fl_region **regions_of(struct fl_engine *e, struct fl__space *sp, size_t *ret_n)
{
	struct fl_region **v = NULL;
	size_t n = 0;

	pthread_rwlock_rdlock(&e->lock);
	for (size_t i = 0; i < e->nregions; i++)
		n += e->regions[i]->space == sp;
	v = n ? fl__forksafe_calloc(n, sizeof(*v)) : NULL;
	n = 0;
	for (size_t i = 0; v && i < e->nregions; i++)
		if (e->regions[i]->space == sp)
			v[n++] = e->regions[i];
	pthread_rwlock_unlock(&e->lock);
	*ret_n = n;
	return v;
}

int fl_engine_release(struct fl_engine *e, int space, unsigned flags)
{
	struct fl__space *sp;
	struct fl_region **regs;
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
	regs = regions_of(e, sp, &nregs);
	if (!regs && nregs)
		return -ENOMEM;
	for (size_t k = 0; k < nregs; k++) {
		struct fl_region *r = regs[k];
		bool alive = !atomic_load(&sp->dead);
		if (alive && (flags & FL_RELEASE_POPULATE)) {
			int pr = fl_region_populate(r, 0, r->length);
			if (pr && pr != -ESRCH && !ret)
				ret = pr;
		}
		/* A region whose pages cannot all be delivered fails closed:
		 * what is still missing raises SIGBUS, never reads zeros. */
		if (alive && (flags & (FL_RELEASE_POISON | FL_RELEASE_POPULATE))) {
			int64_t pr = fl__poison_unresolved(r);
			if (pr < 0 && pr != -ESRCH && !ret)
				ret = (int)pr;
			if (pr > 0)
				poisoned += pr;
		}
		fl_region_free(r);
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
	fl__forksafe_free(sp->entries);
	sp->entries = NULL;
	sp->nentries = sp->cap = 0;
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
	if (!sp->nentries)
		return false;
	addr = sp->entries[0].start;
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
	struct fl_space_stats s = { 0 };
	struct fl__hist *h;
	struct fl__space *sp;
	size_t n;

	if (!e || !st || !st->sz)
		return -EINVAL;
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
	s.sz = st->sz;
	s.pid = sp->pid;
	s.parent = sp->parent;
	s.dead = atomic_load(&sp->dead);
	s.paused = atomic_load(&sp->paused);
	for (size_t i = 0; i < sp->nentries; i++)
		s.bytes += sp->entries[i].end - sp->entries[i].start;
	for (size_t i = 0; i < me->nregions; i++) {
		struct fl_region *r = me->regions[i];
		if (r->space != sp)
			continue;
		s.regions++;
		s.faults += atomic_load(&r->faults_read) + atomic_load(&r->faults_write) +
			    atomic_load(&r->faults_minor) + atomic_load(&r->faults_wp);
		s.pages_resolved += atomic_load(&r->resolved_count);
		s.pages_poisoned += atomic_load(&r->pages_poisoned);
		s.bytes_read += atomic_load(&r->bytes_read);
		s.blocked_ns += atomic_load(&r->blocked_ns);
		fl__hist_merge(h, &r->hist);
	}
	pthread_rwlock_unlock(&me->lock);
	s.lat_count = atomic_load(&h->count);
	s.lat_p50_ns = fl__hist_quantile(h, 0.50);
	s.lat_p99_ns = fl__hist_quantile(h, 0.99);
	s.lat_max_ns = atomic_load(&h->max);
	for (unsigned b = 0; b < FL_LAT_BUCKETS; b++)
		s.lat_hist[b] = atomic_load(&h->bucket[b]);
	free(h);
	n = st->sz < sizeof(s) ? st->sz : sizeof(s);
	memcpy(st, &s, n);
	return 0;
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
