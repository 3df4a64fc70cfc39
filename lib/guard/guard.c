// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The guard: runs in the process whose memory is lazy and fails it closed
 * if its (out-of-process) handler dies and no new one arrives in time.
 */
#include "guard-internal.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

struct fl_guard {
	int uffd;
	uint64_t features;
	struct fl_range *ranges;
	unsigned nr_ranges;
	unsigned timeout_ms;
	int ctl_fd;			/* eventfd: new handler or stop */
	pthread_t thread;
	pthread_mutex_t mu;
	pid_t pending_pid;		/* announced by fl_guard_watch() */
	pid_t (*reconnect)(void *ctx);
	void *reconnect_ctx;
	unsigned reconnect_ms;
	bool stop;
	_Atomic int state;
	sem_t started;			/* posted once the thread runs its own code */
};

/* Absent pages by PAGEMAP_SCAN when available, else page by page (EEXIST = present). */
struct poison_ctx {
	int uffd;
	int64_t total;
	int err;
};

static int poison_cb(const struct fl_page_region *reg, void *arg)
{
	struct poison_ctx *c = arg;
	return fl__uffd_poison_run(c->uffd, reg->start, reg->end, &c->total);
}

int64_t fl_poison_absent(int uffd, const struct fl_range *ranges, unsigned nr_ranges)
{
	struct poison_ctx c = { .uffd = uffd };
	int pm = -1;

	if (!ranges && nr_ranges)
		return -EINVAL;
	if (fl_feature_has(FL_FEATURE_PAGEMAP_SCAN))
		fl_pagemap_open(0, &pm);
	for (unsigned i = 0; i < nr_ranges; i++) {
		int64_t r;
		if (pm >= 0) {
			struct fl_scan_opts o = {
				.sz = sizeof(o),
				.start = ranges[i].start,
				.end = ranges[i].start + ranges[i].len,
				.category_inverted = FL_PAGE_IS_PRESENT,
				.category_mask = FL_PAGE_IS_PRESENT,
				.return_mask = FL_PAGE_IS_PRESENT,
			};
			r = fl_pagemap_scan_all(pm, &o, poison_cb, &c);
		} else {
			r = fl__uffd_poison_run(uffd, ranges[i].start, ranges[i].start + ranges[i].len, &c.total);
		}
		if (r < 0) {
			fl__close(pm);
			return r;
		}
	}
	fl__close(pm);
	return c.total;
}

static void fail_closed(struct fl_guard *g)
{
	int64_t r = -EOPNOTSUPP;

	pthread_mutex_lock(&g->mu);
	if (g->features & UFFD_FEATURE_POISON)
		r = fl_poison_absent(g->uffd, g->ranges, g->nr_ranges);
	pthread_mutex_unlock(&g->mu);
	if (r < 0) {
		/* Without POISON the only closed failure left is to stop the
		 * process: its lazy memory will never be correct. */
		kill(getpid(), SIGBUS);
	}
	atomic_store(&g->state, FL_GUARD_FAILED);
}

static void *guard_main(void *arg)
{
	struct fl_guard *g = arg;
	int pidfd = -1;
	uint64_t deadline = 0;

	sem_post(&g->started);
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = g->ctl_fd, .events = POLLIN },
			{ .fd = pidfd, .events = POLLIN },
		};
		int timeout = -1, r;
		pid_t pid;
		bool stop;

		if (atomic_load(&g->state) == FL_GUARD_WAITING) {
			uint64_t now = fl__now_ns();
			timeout = now >= deadline ? 0 : (int)((deadline - now) / 1000000) + 1;
			if (g->reconnect && timeout > (int)g->reconnect_ms)
				timeout = (int)g->reconnect_ms;
		}
		r = fl__poll(pfd, pidfd >= 0 ? 2 : 1, timeout);
		if (r < 0)
			continue;
		pthread_mutex_lock(&g->mu);
		stop = g->stop;
		pid = g->pending_pid;
		g->pending_pid = 0;
		pthread_mutex_unlock(&g->mu);
		if (stop)
			break;
		if (pfd[0].revents) {
			uint64_t v;
			if (read(g->ctl_fd, &v, sizeof(v)) < 0)
				(void)0;
		}
		if (pid > 0) {
			int nfd;
			fl__close(pidfd);
			pidfd = -1;
			if (fl__pidfd_open(pid, &nfd) == 0) {
				pidfd = nfd;
				atomic_store(&g->state, FL_GUARD_WATCHING);
			} else {
				/* Already gone: as if it had just died. */
				atomic_store(&g->state, FL_GUARD_WAITING);
				deadline = fl__now_ns() + (uint64_t)g->timeout_ms * 1000000ull;
			}
			continue;
		}
		if (pidfd >= 0 && pfd[1].revents) {
			/* The handler exited: start the grace period. */
			fl__close(pidfd);
			pidfd = -1;
			atomic_store(&g->state, FL_GUARD_WAITING);
			deadline = fl__now_ns() + (uint64_t)g->timeout_ms * 1000000ull;
			continue;
		}
		if (atomic_load(&g->state) == FL_GUARD_WAITING && g->reconnect) {
			pid_t np = g->reconnect(g->reconnect_ctx);
			if (np > 0) {
				int nfd;
				if (fl__pidfd_open(np, &nfd) == 0) {
					pidfd = nfd;
					atomic_store(&g->state, FL_GUARD_WATCHING);
					continue;
				}
			}
		}
		if (atomic_load(&g->state) == FL_GUARD_WAITING && fl__now_ns() >= deadline)
			fail_closed(g);
	}
	fl__close(pidfd);
	return NULL;
}

int fl_guard_new(const struct fl_guard_opts *opts, struct fl_guard **ret_guard)
{
	struct fl_guard_opts o;
	struct fl_guard *g;
	int r;

	if (!opts || !ret_guard)
		return -EINVAL;
	r = FL_OPTS_COPY(o, opts);
	if (r)
		return r;
	if (o.uffd < 0 || (o.nr_ranges && !o.ranges))
		return -EINVAL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->uffd = -1;
	g->ctl_fd = -1;
	g->features = o.features;
	g->timeout_ms = o.timeout_ms ? o.timeout_ms : 5000;
	g->reconnect = o.reconnect;
	g->reconnect_ctx = o.reconnect_ctx;
	g->reconnect_ms = o.reconnect_ms ? o.reconnect_ms : 50;
	g->nr_ranges = o.nr_ranges;
	pthread_mutex_init(&g->mu, NULL);
	g->ranges = calloc(o.nr_ranges ? o.nr_ranges : 1, sizeof(*g->ranges));
	r = g->ranges ? 0 : -ENOMEM;
	if (!r && o.nr_ranges)
		memcpy(g->ranges, o.ranges, o.nr_ranges * sizeof(*g->ranges));
	if (!r)
		r = fl__dup_cloexec(o.uffd, &g->uffd);
	if (!r)
		r = fl__eventfd(&g->ctl_fd);
	if (!r)
		r = sem_init(&g->started, 0, 0) ? -errno : 0;
	if (!r)
		r = -pthread_create(&g->thread, NULL, guard_main, g);
	/*
	 * Return once the thread runs: a process that forks right after (a
	 * client's fork hand-off) must not fork while the new thread is still
	 * being set up. Its setup allocates; with an allocator that does not
	 * take its locks around fork (AddressSanitizer's, before GCC 14), the
	 * child would inherit a held lock and hang on its first allocation.
	 */
	while (!r && sem_wait(&g->started) && errno == EINTR)
		;
	if (r) {
		fl__close(g->uffd);
		fl__close(g->ctl_fd);
		free(g->ranges);
		free(g);
		return r;
	}
	*ret_guard = g;
	return 0;
}

int fl_guard_watch(struct fl_guard *g, pid_t pid)
{
	if (!g || pid <= 0)
		return -EINVAL;
	if (atomic_load(&g->state) == FL_GUARD_FAILED)
		return -ESTALE;
	pthread_mutex_lock(&g->mu);
	g->pending_pid = pid;
	pthread_mutex_unlock(&g->mu);
	/* Watching starts now, not when the thread wakes: a handler that
	 * arrives within the grace period cancels the failure. */
	atomic_store(&g->state, FL_GUARD_WATCHING);
	return fl__eventfd_signal(g->ctl_fd);
}

enum fl_guard_state fl_guard_state(const struct fl_guard *g)
{
	return g ? (enum fl_guard_state)atomic_load(&((struct fl_guard *)g)->state) : FL_GUARD_IDLE;
}

struct fl_guard *fl_guard_free(struct fl_guard *g)
{
	if (!g)
		return NULL;
	pthread_mutex_lock(&g->mu);
	g->stop = true;
	pthread_mutex_unlock(&g->mu);
	fl__eventfd_signal(g->ctl_fd);
	pthread_join(g->thread, NULL);
	fl__close(g->uffd);
	fl__close(g->ctl_fd);
	free(g->ranges);
	pthread_mutex_destroy(&g->mu);
	sem_destroy(&g->started);
	free(g);
	return NULL;
}

int fl__guard_set_ranges(struct fl_guard *g, const struct fl_range *ranges, unsigned n)
{
	struct fl_range *nr = calloc(n ? n : 1, sizeof(*nr)), *old;

	if (!g || !nr) {
		free(nr);
		return -ENOMEM;
	}
	if (n)
		memcpy(nr, ranges, n * sizeof(*nr));
	/* The guard thread reads the ranges only when it fails closed, under
	 * the mutex, like this swap. */
	pthread_mutex_lock(&g->mu);
	old = g->ranges;
	g->ranges = nr;
	g->nr_ranges = n;
	pthread_mutex_unlock(&g->mu);
	free(old);
	return 0;
}

void fl__guard_forget(struct fl_guard *g)
{
	/* In a forked child: the thread is not there to stop or join. */
	fl__close(g->uffd);
	fl__close(g->ctl_fd);
	free(g->ranges);
	free(g);
}
