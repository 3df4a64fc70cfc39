// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The migration control socket: a unix socket a program embeds so that an
 * operator (faultline migrate) can start, watch and cancel its migration.
 * One thread polls the listening socket and a few connections, each of
 * which sends one request line and gets one reply line.
 */
#include "flutil.h"

#include <faultline/migrate.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct ctl_client {
	int fd;				/* -1: a free slot */
	size_t len;
	uint64_t deadline_ns;
	char line[FL_MIGRATE_CTL_LINE_MAX + 1];	/* the line and a NUL */
};

struct fl_migrate_ctl {
	struct fl_migrate_ctl_opts opts;
	struct fl__logger log;
	char *path;
	uint64_t dev, ino;		/* the socket file we made */
	int lfd, stop_fd;
	pthread_t thr;
	/* Held while a request uses src or dst, so that detaching waits. */
	pthread_mutex_t lock;
	struct fl_migrate_source *src;
	struct fl_migrate_dest *dst;
	int mode;			/* the last start request's; -1: none */
	uint64_t accept_after_ns;	/* out of descriptors: accept again then */
	struct ctl_client clients[FL_MIGRATE_CTL_CLIENTS];
};

const char *fl_migrate_state_name(int state)
{
	static const char *const names[] = {
		[FL_MIGRATE_STATE_IDLE] = "idle",
		[FL_MIGRATE_STATE_PRECOPY] = "precopy",
		[FL_MIGRATE_STATE_SWITCHOVER] = "switchover",
		[FL_MIGRATE_STATE_POSTCOPY] = "postcopy",
		[FL_MIGRATE_STATE_RECOVERING] = "recovering",
		[FL_MIGRATE_STATE_DONE] = "done",
		[FL_MIGRATE_STATE_FAILED] = "failed",
		[FL_MIGRATE_STATE_CANCELLED] = "cancelled",
	};

	if (state < 0 || (size_t)state >= FL_ARRAY_SIZE(names))
		return "unknown";
	return names[state];
}

static const char *const mode_names[] = { "precopy", "postcopy", "hybrid" };

static bool state_final(int state)
{
	return state == FL_MIGRATE_STATE_DONE || state == FL_MIGRATE_STATE_FAILED ||
	       state == FL_MIGRATE_STATE_CANCELLED;
}

static void client_close(struct ctl_client *c)
{
	if (c->fd >= 0)
		fl__close(c->fd);
	c->fd = -1;
	c->len = 0;
}

/* One reply line. The connection is new and the line short, so the socket
 * buffer takes it whole; a client that does not read loses it. */
static void reply(struct ctl_client *c, const char *text)
{
	(void)fl__send_nb(c->fd, text, strlen(text));
	client_close(c);
}

static void reply_error(struct ctl_client *c, int err, const char *text)
{
	char buf[160];

	snprintf(buf, sizeof(buf), "error %d %s\n", err, text);
	reply(c, buf);
}

/* The status line: every field fits (about 600 bytes of 1024), and a
 * field that would not is cut, never overrun. */
struct line {
	char buf[1024];
	size_t len;
};

__attribute__((format(printf, 2, 3)))
static void add(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->len >= sizeof(l->buf) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->buf + l->len, sizeof(l->buf) - l->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->len = FL_MIN(l->len + (size_t)n, sizeof(l->buf) - 1);
}

static void do_status(struct fl_migrate_ctl *ctl, struct ctl_client *c)
{
	struct fl_migrate_stats st = { .sz = sizeof(st) };
	const char *role = "none";
	struct line l = { .len = 0 };
	int r = 0;

	pthread_mutex_lock(&ctl->lock);
	if (ctl->src) {
		role = "source";
		r = fl_migrate_source_stats(ctl->src, &st);
	} else if (ctl->dst) {
		role = "dest";
		r = fl_migrate_dest_stats(ctl->dst, &st);
	}
	add(&l, "ok proto=1 role=%s state=%s", role, fl_migrate_state_name(st.state));
	if (ctl->src && ctl->mode >= 0)
		add(&l, " mode=%s", mode_names[ctl->mode]);
	pthread_mutex_unlock(&ctl->lock);
	if (r) {
		reply_error(c, r, "cannot read the statistics");
		return;
	}
	/* New fields go at the end; readers skip the keys they do not know. */
	add(&l, " pages_total=%" PRIu64 " pages_remaining=%" PRIu64, st.pages_total, st.pages_remaining);
	add(&l, " rounds=%u pages_sent=%" PRIu64 " bytes_sent=%" PRIu64 " zero_pages=%" PRIu64, st.rounds,
	    st.pages_sent, st.bytes_sent, st.zero_pages);
	add(&l, " requests=%" PRIu64 " pushed=%" PRIu64 " pages_received=%" PRIu64, st.requests, st.pushed,
	    st.pages_received);
	add(&l, " downtime_ns=%" PRIu64 " total_ns=%" PRIu64, st.downtime_ns, st.total_ns);
	add(&l, " request_p50_ns=%" PRIu64 " request_p99_ns=%" PRIu64 " request_max_ns=%" PRIu64,
	    st.request_p50_ns, st.request_p99_ns, st.request_max_ns);
	add(&l, " pages_moved=%" PRIu64, st.pages_moved);
	add(&l, " recoveries=%u recovery_ns=%" PRIu64 " blocked_ns=%" PRIu64, st.recoveries, st.recovery_ns,
	    st.blocked_ns);
	add(&l, " error=%d\n", st.error);
	reply(c, l.buf);
}

static void do_start(struct fl_migrate_ctl *ctl, struct ctl_client *c, char *args)
{
	char *save = NULL, *to = strtok_r(args, " ", &save), *mode_s = strtok_r(NULL, " ", &save);
	int mode = -1, r;

	if (!to || !mode_s || strtok_r(NULL, " ", &save)) {
		reply_error(c, -EINVAL, "usage: start TO MODE");
		return;
	}
	for (int i = 0; i < (int)FL_ARRAY_SIZE(mode_names); i++)
		if (!strcmp(mode_s, mode_names[i]))
			mode = i;
	if (mode < 0) {
		reply_error(c, -EINVAL, "mode: precopy, postcopy or hybrid");
		return;
	}
	if (!ctl->opts.start) {
		reply_error(c, -EOPNOTSUPP, "this program does not start migrations");
		return;
	}
	pthread_mutex_lock(&ctl->lock);
	if (ctl->dst) {
		pthread_mutex_unlock(&ctl->lock);
		reply_error(c, -EBUSY, "this program is a migration's destination");
		return;
	}
	if (ctl->src) {
		struct fl_migrate_stats st = { .sz = sizeof(st) };

		if (fl_migrate_source_stats(ctl->src, &st) == 0 && !state_final(st.state)) {
			pthread_mutex_unlock(&ctl->lock);
			reply_error(c, -EALREADY, "a migration is running");
			return;
		}
	}
	pthread_mutex_unlock(&ctl->lock);
	/* Unlocked: the callback attaches its source, which takes the lock. */
	fl__log(&ctl->log, FL_LOG_INFO, "migrate control: start %s %s", to, mode_s);
	/* "-": wherever the program is configured to go. */
	r = ctl->opts.start(ctl->opts.start_ctx, strcmp(to, "-") ? to : NULL, (enum fl_migrate_mode)mode);
	if (r < 0) {
		char text[128];

		snprintf(text, sizeof(text), "start failed: %s", strerror(-r));
		reply_error(c, r, text);
		return;
	}
	pthread_mutex_lock(&ctl->lock);
	ctl->mode = mode;
	pthread_mutex_unlock(&ctl->lock);
	reply(c, "ok\n");
}

static void do_cancel(struct fl_migrate_ctl *ctl, struct ctl_client *c)
{
	int r = -ENOENT;

	pthread_mutex_lock(&ctl->lock);
	if (ctl->src)
		r = fl_migrate_source_cancel(ctl->src);
	else if (ctl->dst)
		r = -EOPNOTSUPP;
	pthread_mutex_unlock(&ctl->lock);
	if (r == -EBUSY)
		reply_error(c, r, "too late: switchover has begun");
	else if (r == -ENOENT)
		reply_error(c, r, "no migration to cancel");
	else if (r == -EOPNOTSUPP)
		reply_error(c, r, "a destination cannot cancel; cancel at the source");
	else if (r)
		reply_error(c, r, "cancel failed");
	else
		reply(c, "ok\n");
}

static void serve_line(struct fl_migrate_ctl *ctl, struct ctl_client *c)
{
	char *line = c->line;
	size_t n = strlen(line);

	if (n && line[n - 1] == '\r')	/* from a hand-typed socat, say */
		line[--n] = 0;
	if (!strcmp(line, "status"))
		do_status(ctl, c);
	else if (!strcmp(line, "cancel"))
		do_cancel(ctl, c);
	else if (!strncmp(line, "start ", 6))
		do_start(ctl, c, line + 6);
	else
		reply_error(c, -EINVAL, "unknown request (start TO MODE, status, cancel)");
}

/* Read what the client sent; serve it when its line is complete. */
static void client_read(struct fl_migrate_ctl *ctl, struct ctl_client *c)
{
	ssize_t n = fl__recv_nb(c->fd, c->line + c->len, sizeof(c->line) - 1 - c->len);
	char *nl;

	if (n == -EAGAIN)
		return;
	if (n <= 0) {		/* gone before its line was complete */
		client_close(c);
		return;
	}
	c->len += (size_t)n;
	c->line[c->len] = 0;
	nl = memchr(c->line, '\n', c->len);
	if (nl) {
		*nl = 0;
		if (memchr(c->line, 0, (size_t)(nl - c->line)))
			reply_error(c, -EINVAL, "a NUL byte in the request");
		else
			serve_line(ctl, c);
	} else if (c->len == sizeof(c->line) - 1) {
		reply_error(c, -EMSGSIZE, "request line too long");
	}
}

static void accept_client(struct fl_migrate_ctl *ctl)
{
	struct ctl_client *slot = NULL;
	int fd, r;

	r = fl__unix_accept(ctl->lfd, &fd);
	if (r) {
		/* Out of descriptors: the connection stays queued and the
		 * socket readable; poll it again in a while, not at once. */
		if (r != -EAGAIN && r != -EINTR && r != -ECONNABORTED) {
			fl__log(&ctl->log, FL_LOG_WARN, "migrate control: accept: %s", strerror(-r));
			ctl->accept_after_ns = fl__now_ns() + 100000000ull;
		}
		return;
	}
	for (unsigned i = 0; i < FL_MIGRATE_CTL_CLIENTS; i++) {
		struct ctl_client *c = &ctl->clients[i];

		if (c->fd < 0) {
			slot = c;
			break;
		}
		if (!slot || c->deadline_ns < slot->deadline_ns)
			slot = c;
	}
	if (slot->fd >= 0) {
		/* Full: the oldest has had the longest to speak. */
		fl__log(&ctl->log, FL_LOG_WARN, "migrate control: too many connections, closing the oldest");
		reply_error(slot, -EBUSY, "too many connections");
	}
	slot->fd = fd;
	slot->len = 0;
	slot->deadline_ns = fl__now_ns() + ctl->opts.timeout_ms * 1000000ull;
}

static void *ctl_main(void *arg)
{
	struct fl_migrate_ctl *ctl = arg;

	/* Held by fl_migrate_ctl_new() until the caller has its pointer: a
	 * start callback may use it at once (fl_migrate_ctl_set_source()). */
	pthread_mutex_lock(&ctl->lock);
	pthread_mutex_unlock(&ctl->lock);

	for (;;) {
		struct pollfd p[2 + FL_MIGRATE_CTL_CLIENTS];
		struct ctl_client *polled[FL_MIGRATE_CTL_CLIENTS];
		unsigned n = 2;
		uint64_t now = fl__now_ns(), next = UINT64_MAX;
		int timeout = -1, r;

		p[0] = (struct pollfd){ .fd = ctl->stop_fd, .events = POLLIN };
		/* A negative fd is skipped by poll. */
		p[1] = (struct pollfd){ .fd = now < ctl->accept_after_ns ? -1 : ctl->lfd, .events = POLLIN };
		if (now < ctl->accept_after_ns)
			next = ctl->accept_after_ns;
		for (unsigned i = 0; i < FL_MIGRATE_CTL_CLIENTS; i++) {
			struct ctl_client *c = &ctl->clients[i];

			if (c->fd < 0)
				continue;
			if (c->deadline_ns <= now) {
				reply_error(c, -ETIMEDOUT, "no request line in time");
				continue;
			}
			next = FL_MIN(next, c->deadline_ns);
			polled[n - 2] = c;
			p[n++] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
		}
		if (next != UINT64_MAX)
			timeout = (int)FL_MIN((next - now) / 1000000 + 1, 60000);
		r = fl__poll(p, n, timeout);
		if (r < 0 && r != -EINTR) {
			fl__log(&ctl->log, FL_LOG_ERROR, "migrate control: poll: %s", strerror(-r));
			break;
		}
		if (r <= 0)
			continue;
		if (p[0].revents)
			break;
		for (unsigned i = 2; i < n; i++)
			if (p[i].revents)
				client_read(ctl, polled[i - 2]);
		if (p[1].revents)
			accept_client(ctl);
	}
	return NULL;
}

static void release(struct fl_migrate_ctl *ctl)
{
	for (unsigned i = 0; i < FL_MIGRATE_CTL_CLIENTS; i++)
		client_close(&ctl->clients[i]);
	if (ctl->lfd >= 0) {
		uint64_t dev, ino;

		fl__close(ctl->lfd);
		/* Only our own file: another program may have replaced it. */
		if (fl__lstat_id(ctl->path, &dev, &ino) == 0 && dev == ctl->dev && ino == ctl->ino)
			(void)fl__unlink(ctl->path);
	}
	if (ctl->stop_fd >= 0)
		fl__close(ctl->stop_fd);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl->path);
	free(ctl);
}

int fl_migrate_ctl_new(const struct fl_migrate_ctl_opts *opts, struct fl_migrate_ctl **ret_ctl)
{
	struct fl_migrate_ctl *ctl;
	int r;

	if (!opts || !ret_ctl)
		return -EINVAL;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	ctl->lfd = ctl->stop_fd = -1;
	ctl->mode = -1;
	pthread_mutex_init(&ctl->lock, NULL);
	for (unsigned i = 0; i < FL_MIGRATE_CTL_CLIENTS; i++)
		ctl->clients[i].fd = -1;
	r = FL_OPTS_COPY(ctl->opts, opts);
	if (r)
		goto fail;
	r = -EINVAL;
	if (!ctl->opts.path || !ctl->opts.path[0])
		goto fail;
	if (!ctl->opts.timeout_ms)
		ctl->opts.timeout_ms = 2000;
	ctl->log = (struct fl__logger){ ctl->opts.log, ctl->opts.log_ctx, FL_LOG_DEBUG };
	ctl->path = strdup(ctl->opts.path);
	if (!ctl->path) {
		r = -ENOMEM;
		goto fail;
	}
	ctl->opts.path = ctl->path;
	r = fl__eventfd(&ctl->stop_fd);
	if (r)
		goto fail;
	r = fl__unix_listen(ctl->path, 0600, 16, &ctl->lfd);
	if (r) {
		fl__log(&ctl->log, FL_LOG_ERROR, "migrate control: cannot listen on %s: %s", ctl->path,
			strerror(-r));
		goto fail;
	}
	r = fl__lstat_id(ctl->path, &ctl->dev, &ctl->ino);
	if (r)
		goto fail;
	pthread_mutex_lock(&ctl->lock);
	r = -pthread_create(&ctl->thr, NULL, ctl_main, ctl);
	if (!r)
		*ret_ctl = ctl;
	pthread_mutex_unlock(&ctl->lock);
	if (r)
		goto fail;
	return 0;
fail:
	release(ctl);
	return r;
}

int fl_migrate_ctl_set_source(struct fl_migrate_ctl *ctl, struct fl_migrate_source *source)
{
	if (!ctl)
		return -EINVAL;
	pthread_mutex_lock(&ctl->lock);
	/* The mode stays the start request's, which may come before or
	 * after the program attaches the source it started. */
	ctl->src = source;
	if (source)
		ctl->dst = NULL;
	else
		ctl->mode = -1;
	pthread_mutex_unlock(&ctl->lock);
	return 0;
}

int fl_migrate_ctl_set_dest(struct fl_migrate_ctl *ctl, struct fl_migrate_dest *dest)
{
	if (!ctl)
		return -EINVAL;
	pthread_mutex_lock(&ctl->lock);
	ctl->dst = dest;
	if (dest) {
		ctl->src = NULL;
		ctl->mode = -1;
	}
	pthread_mutex_unlock(&ctl->lock);
	return 0;
}

struct fl_migrate_ctl *fl_migrate_ctl_free(struct fl_migrate_ctl *ctl)
{
	if (!ctl)
		return NULL;
	fl__eventfd_signal(ctl->stop_fd);
	pthread_join(ctl->thr, NULL);
	release(ctl);
	return NULL;
}
