// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The control loop: one epoll set for the listening sockets, every
 * session's socket and pidfd, signals and a one-second timer. Faults never
 * pass through here: the engine's handler threads serve them.
 */
#include "faultlined.h"
#include "flutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

/* epoll tags: the listening sockets and fds are small ints, sessions are
 * pointers with the low bit telling the socket (0) from the pidfd (1). */
enum { TAG_LISTEN = 1, TAG_FC_LISTEN = 2, TAG_SIGNAL = 3, TAG_TIMER = 4, TAG_MAX = 16 };

void fld_space_set(struct fld *d, int space, uint64_t client_id, uint64_t beacon)
{
	if (space < 0)
		return;
	pthread_mutex_lock(&d->mu);
	if ((size_t)space >= d->nspaces) {
		size_t n = (size_t)space * 2 + 16;
		struct fld_space *ns = realloc(d->spaces, n * sizeof(*ns));
		if (!ns) {
			pthread_mutex_unlock(&d->mu);
			return;	/* only the logs lose the client id */
		}
		memset(ns + d->nspaces, 0, (n - d->nspaces) * sizeof(*ns));
		d->spaces = ns;
		d->nspaces = n;
	}
	d->spaces[space] = (struct fld_space){ client_id, beacon };
	pthread_mutex_unlock(&d->mu);
}

void fld_space_get(struct fld *d, int space, uint64_t *ret_client_id, uint64_t *ret_beacon)
{
	pthread_mutex_lock(&d->mu);
	if (space >= 0 && (size_t)space < d->nspaces) {
		*ret_client_id = d->spaces[space].client;
		*ret_beacon = d->spaces[space].beacon;
	}
	pthread_mutex_unlock(&d->mu);
}

int fld_reply_error(struct fld_session *s, uint32_t seq, int err, const char *fmt, ...)
{
	char msg[FL_MGR_MAX_ERRMSG + 1];
	uint8_t p[8 + FL_MGR_MAX_ERRMSG];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fld_log(seq ? 1 : 0, "client %llu (pid %d): error %s: %s", (unsigned long long)s->id, s->pid,
		strerror(err), msg);
	n = fl__mgr_error_encode(p, err > 0 && err < 4096 ? err : EPROTO, msg);
	if (n > 0)
		fl__mgr_send(s->sock, FL_MGR_ERROR, seq, p, (size_t)n, -1);
	/* A request error leaves the session as it was; a protocol error
	 * (seq 0) ends it, and the caller returns that. */
	return seq ? 0 : -EBADMSG;
}

static bool process_gone(const struct fld_session *s)
{
	struct pollfd p = { .fd = s->pidfd, .events = POLLIN };

	if (s->pidfd < 0)
		return kill(s->pid, 0) != 0 && errno == ESRCH;
	return poll(&p, 1, 0) > 0;
}

void fld_session_close(struct fld *d, struct fld_session *s, const char *why)
{
	bool gone;

	if (s->closed)
		return;	/* closed already in this batch */
	gone = process_gone(s);
	/* A Firecracker's record stays while it lives and the daemon merely
	 * exits: the next daemon re-takes its uffd. */
	if (s->kind == FLD_FIRECRACKER && (gone || !d->stopping))
		fld_firecracker_forget(s);
	free(s->fc_buf);
	s->fc_buf = NULL;
	fl__close(s->fc_fd);
	s->fc_fd = -1;
	if (s->space >= 0) {
		struct fl_space_stats st = { .sz = sizeof(st) };
		int r;

		fl_engine_space_stats(d->engine, s->space, &st);
		fld_segments_absorb(s);
		if (gone) {
			/* Nothing left to protect (a draining session ends here too). */
			fl_engine_release(d->engine, s->space, 0);
			fld_space_set(d, s->space, 0, 0);
			s->space = -1;
			s->draining = false;
			fld_log(0, "client %llu (pid %d): %s; process gone, space released after %llu faults",
				(unsigned long long)s->id, s->pid, why, (unsigned long long)st.faults);
		} else {
			/* A live process that lost its session gets SIGBUS on
			 * what was not delivered, never the zeros our close
			 * could bring; and its uffd is still read until it exits
			 * (DRAIN): a later fault is failed closed there (SIGBUS
			 * to the thread where POISON is missing), and no munmap,
			 * mremap or fork waits forever on an unread event. */
			r = fl_engine_release(d->engine, s->space, FL_RELEASE_POISON | FL_RELEASE_DRAIN);
			s->draining = true;
			fld_log(0, "client %llu (pid %d): %s; undelivered pages %s after %llu faults",
				(unsigned long long)s->id, s->pid, why,
				r ? "fail closed as they are touched (cannot poison)" : "poisoned",
				(unsigned long long)st.faults);
		}
	} else if (s->kind != FLD_OBSERVER) {
		fld_log(1, "client %llu (pid %d): %s", (unsigned long long)s->id, s->pid, why);
	}
	for (unsigned i = 0; i < s->nsources; i++) {
		fld_segment_put(&s->sources[i]);
		fld_template_put(d, s->sources[i].tpl);
		fld_image_put(d, s->sources[i].image);
	}
	free(s->sources);
	s->sources = NULL;
	s->nsources = 0;
	fld_session_spaces_free(s);
	/* Unread packets would turn our last words (an ERROR) into an
	 * ECONNRESET for the peer: drop them first (their fds with them). */
	for (int i = 0; s->sock >= 0 && i < 64 && recv(s->sock, d->buf, 1, MSG_DONTWAIT | MSG_TRUNC) > 0; i++)
		;
	if (s->sock >= 0)
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, s->sock, NULL);
	fl__close(s->sock);
	s->sock = -1;
	if (s->draining && s->space >= 0)
		return;	/* until its process exits: the pidfd says when */
	if (s->pidfd >= 0)
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, s->pidfd, NULL);
	fl__close(s->pidfd);
	s->pidfd = -1;
	s->closed = true;
}

static void free_closed(struct fld *d)
{
	for (struct fld_session **pp = &d->sessions; *pp;) {
		struct fld_session *s = *pp;
		if (s->closed) {
			*pp = s->next;
			d->nsessions--;
			free(s);
		} else {
			pp = &s->next;
		}
	}
}

bool fld_others_allowed(const struct fld_config *cfg)
{
	for (unsigned i = 0; i < cfg->nallowed; i++)
		if (cfg->allowed_uids[i] != geteuid())
			return true;
	return false;
}

static bool uid_allowed(const struct fld *d, uid_t uid)
{
	if (!d->cfg.nallowed)
		return uid == 0 || uid == geteuid();
	for (unsigned i = 0; i < d->cfg.nallowed; i++)
		if (d->cfg.allowed_uids[i] == uid)
			return true;
	return false;
}

static void on_accept(struct fld *d, int lfd, enum fld_kind kind)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct fld_session *s;
	struct epoll_event ev;
	int fd;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	s = calloc(1, sizeof(*s));
	if (!s || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
		free(s);
		close(fd);
		return;
	}
	*s = (struct fld_session){ .d = d, .id = ++d->next_id, .kind = kind, .sock = fd, .pidfd = -1,
				   .pid = cred.pid, .uid = cred.uid, .gid = cred.gid, .space = -1, .started_ns = fl__now_ns(),
				   .fc_fd = -1 };
	s->next = d->sessions;
	d->sessions = s;
	d->nsessions++;
	/* A refusal answers the first message: closing a socket whose peer's
	 * message is still unread makes the peer see ECONNRESET, not why. */
	if (!uid_allowed(d, cred.uid)) {
		d->refused++;
		s->refuse_err = EPERM;
		snprintf(s->refuse_msg, sizeof(s->refuse_msg), "uid %u is not allowed", (unsigned)cred.uid);
	} else if (d->nsessions > d->cfg.max_clients) {
		d->refused++;
		s->refuse_err = EUSERS;
		snprintf(s->refuse_msg, sizeof(s->refuse_msg), "more than %u clients", d->cfg.max_clients);
	}
	if (s->refuse_err) {
		fld_log(0, "client %llu (pid %d uid %u): refused: %s", (unsigned long long)s->id, s->pid,
			(unsigned)s->uid, s->refuse_msg);
		ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = s };
		epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev);
		return;
	}
	if (fl__pidfd_open(cred.pid, &s->pidfd)) {
		fld_session_close(d, s, "gone before it spoke");
		return;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = s };
	epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = (char *)s + 1 };
	epoll_ctl(d->epfd, EPOLL_CTL_ADD, s->pidfd, &ev);
	fld_log(1, "client %llu: connected: pid %d uid %u%s", (unsigned long long)s->id, s->pid, (unsigned)s->uid,
		kind == FLD_FIRECRACKER ? " (Firecracker handshake)" : "");
}

static void on_timer(struct fld *d)
{
	int n = fl_engine_reap(d->engine);
	uint64_t now = fl__now_ns();

	/* Connections that never said HELLO (or were refused and never
	 * spoke) do not hold a session slot for long. */
	for (struct fld_session *s = d->sessions; s; s = s->next) {
		if (!s->closed && !s->hello && s->kind != FLD_FIRECRACKER && now - s->started_ns > 10000000000ull)
			fld_session_close(d, s, "said nothing for 10 s");
		if (!s->closed && s->kind == FLD_FIRECRACKER && s->space < 0 && now - s->started_ns > 2000000000ull) {
			d->bad_messages++;
			fld_session_close(d, s, "Firecracker handshake not complete in 2 s");
		}
	}

	if (n > 0)
		fld_log(1, "%d spaces of exited processes released", n);
	/* Unclaimed forks whose child is gone. */
	pthread_mutex_lock(&d->mu);
	for (struct fld_fork **pp = &d->forks; *pp;) {
		struct fld_fork *f = *pp;
		if (fl_engine_space_fd(d->engine, f->space) < 0) {
			*pp = f->next;
			free(f);
		} else {
			pp = &f->next;
		}
	}
	pthread_mutex_unlock(&d->mu);
}

static void on_session(struct fld *d, struct fld_session *s, bool pid_event, uint32_t events)
{
	int r;

	if (s->closed)
		return;
	if (pid_event) {
		fld_session_close(d, s, "exited");
		return;
	}
	if (s->draining)
		return;
	if (s->kind == FLD_FIRECRACKER) {
		if (s->space < 0) {
			if (fld_firecracker_accept(d, s) < 0)
				fld_session_close(d, s, "bad Firecracker handshake");
		} else {
			/* Firecracker sends nothing more; its exit is the pidfd. */
			char b[64];
			if (recv(s->sock, b, sizeof(b), MSG_DONTWAIT) <= 0) {
				epoll_ctl(d->epfd, EPOLL_CTL_DEL, s->sock, NULL);
			}
		}
		return;
	}
	(void)events;
	r = fld_session_message(d, s);
	if (r == -ECONNRESET)
		fld_session_close(d, s, "closed its session");
	else if (r < 0)
		fld_session_close(d, s, "protocol error");
}

/*
 * The socket's directory. One we create is ours and 0700, so that nobody
 * else can even reach the socket; 0711 when the policy admits other uids
 * (--allow-uid): they can then connect, and SO_PEERCRED decides. A
 * directory that exists already is the administrator's (/run, /tmp, a
 * shared 1777 directory): its mode is left as it is, the socket's own mode
 * (0600, or 0666 with --allow-uid) guards access.
 */
static int make_socket_dir(const char *path, bool others)
{
	mode_t want = others ? 0711 : 0700;
	char *copy = strdup(path), *dir;
	struct stat st;
	int r = 0;

	if (!copy)
		return -ENOMEM;
	dir = dirname(copy);
	if (mkdir(dir, 0700) == 0) {
		if (chmod(dir, want))	/* mkdir's mode went through the umask */
			r = -errno;
	} else if (errno != EEXIST) {
		r = -errno;
	} else if (stat(dir, &st)) {
		r = -errno;
	} else if (!S_ISDIR(st.st_mode)) {
		r = -ENOTDIR;
	} else if (others && !(st.st_mode & 0001)) {
		fld_log(0, "warning: socket directory %s (mode %o) is not searchable by other users: the uids "
			"--allow-uid admits cannot reach the socket", dir, (unsigned)(st.st_mode & 07777));
	}
	if (r)
		fld_log(0, "socket directory %s: %s", dir, strerror(-r));
	free(copy);
	return r;
}

/*
 * What is at the socket's path already: nothing, or a socket nobody answers
 * on (a daemon that died: removed). Anything else is refused and left
 * untouched: a file or a directory someone named by mistake is never
 * deleted, and a live daemon is not taken over.
 */
static int clear_socket_path(const char *path)
{
	int r = fl__unix_path_clear(path, SOCK_SEQPACKET);

	switch (r) {
	case 0:
		break;
	case -EISDIR:
		fld_log(0, "%s is a directory: name the socket to create in it (e.g. %s/faultlined.sock)", path,
			path);
		break;
	case -EEXIST:
		fld_log(0, "%s exists and is not a socket: refusing to replace it", path);
		break;
	case -EADDRINUSE:
		fld_log(0, "%s: another faultlined is serving there", path);
		break;
	default:
		fld_log(0, "%s: %s", path, strerror(-r));
	}
	return r;
}

int fld_listen(const char *path, int type, bool others, int *ret_fd)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, path, strlen(path) + 1);
	r = clear_socket_path(path);
	if (r)
		return r;
	r = make_socket_dir(path, others);
	if (r)
		return r;
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || chmod(path, others ? 0666 : 0600) || listen(fd, 128)) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/*
 * Exit without failing anyone: every space is let go untouched (a bare
 * fl_engine_free() would poison what is undelivered), so that a new
 * faultlined can resume the clients, which hold their own uffds. Only the
 * uffds of unclaimed forked children have no other holder: the kernel
 * zero-fills those, which faultlined(8) documents.
 */
static void shutdown_quietly(struct fld *d)
{
	if (d->engine)
		fl_engine_stop(d->engine);
	/* Every space we ever saw has a slot in d->spaces (forks included). */
	for (struct fld_session *s = d->sessions; s; s = s->next)
		fld_segments_absorb(s);
	for (size_t sp = 1; sp < d->nspaces; sp++)
		fl_engine_release(d->engine, (int)sp, 0);
	for (struct fld_session *s = d->sessions; s; s = s->next) {
		s->space = -1;
		s->draining = false;
		fld_session_close(d, s, "daemon exiting");
	}
	free_closed(d);
	while (d->forks) {
		struct fld_fork *f = d->forks;
		d->forks = f->next;
		free(f);
	}
	d->engine = fl_engine_free(d->engine);
	/* After the engine: its regions read the spaces' stores. */
	fld_shared_free_all(d);
	fl_store_unref(d->mem_store);
	fl__close(d->epfd);
	fl__close(d->sigfd);
	fl__close(d->timerfd);
	fl__close(d->lfd);
	fl__close(d->fc_lfd);
	free(d->spaces);
	free(d->buf);
	free(d->ranges);
	free(d->added);
	pthread_mutex_destroy(&d->mu);
}

/* A session for a Firecracker found in a state record: no socket, a pidfd. */
static struct fld_session *recovered_session(struct fld *d, pid_t pid)
{
	struct fld_session *s = calloc(1, sizeof(*s));
	struct epoll_event ev;

	if (!s)
		return NULL;
	*s = (struct fld_session){ .d = d, .id = ++d->next_id, .kind = FLD_FIRECRACKER, .sock = -1, .pidfd = -1,
				   .pid = pid, .space = -1, .started_ns = fl__now_ns(), .fc_fd = -1, .hello = true };
	if (fl__pidfd_open(pid, &s->pidfd)) {
		free(s);
		return NULL;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = (char *)s + 1 };
	epoll_ctl(d->epfd, EPOLL_CTL_ADD, s->pidfd, &ev);
	s->next = d->sessions;
	d->sessions = s;
	d->nsessions++;
	return s;
}

static int add_fd(struct fld *d, int fd, uintptr_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = (void *)tag };

	return epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

static int serve(struct fld *d)
{
	struct fl_engine_opts eo = {
		.sz = sizeof(eo), .threads = d->cfg.threads, .flags = FL_ENGINE_NO_FILLER,
		.log = fld_log_cb, .log_level = fld_verbose >= 2 ? FL_LOG_INFO : FL_LOG_WARN,
		.on_event = fld_on_event, .event_ctx = d,
	};
	struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	struct epoll_event evs[64];
	sigset_t mask;
	int r;

	/* Blocked before any thread exists (the engine's inherit the mask):
	 * they arrive through the signalfd, in the loop. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	d->started_ns = fl__now_ns();
	pthread_mutex_init(&d->mu, NULL);
	d->buf = malloc(FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD);
	d->ranges = calloc(FL_MGR_MAX_RANGES, sizeof(*d->ranges));
	d->added = calloc(FL_MGR_MAX_RANGES, sizeof(*d->added));
	if (!d->buf || !d->ranges || !d->added)
		return -ENOMEM;
	r = fl_engine_new(&eo, &d->engine);
	if (r) {
		fld_log(0, "fault engine: %s", strerror(-r));
		return r;
	}
	if (d->cfg.mem_file) {
		r = fl_store_file_open(d->cfg.mem_file, &d->mem_store);
		if (r) {
			fld_log(0, "%s: %s", d->cfg.mem_file, strerror(-r));
			return r;
		}
	}
	d->lfd = d->cfg.listen_fd;
	d->fc_lfd = d->cfg.fc_listen_fd;
	if (d->lfd < 0 && d->cfg.socket && (r = fld_listen(d->cfg.socket, SOCK_SEQPACKET, fld_others_allowed(&d->cfg), &d->lfd)))
		return r;
	if (d->fc_lfd < 0 && d->cfg.fc_socket &&
	    (r = fld_listen(d->cfg.fc_socket, SOCK_STREAM, fld_others_allowed(&d->cfg), &d->fc_lfd)))
		return r;
	r = fl_engine_start(d->engine);
	if (r)
		return r;
	d->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	d->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->sigfd < 0 || d->timerfd < 0 || d->epfd < 0 || timerfd_settime(d->timerfd, 0, &its, NULL))
		return -errno;
	if (d->cfg.fc_socket) {
		int n = fld_firecracker_recover(d, recovered_session);
		if (n > 0)
			fld_log(0, "%d Firecracker VMs resumed from %s", n, d->cfg.state_dir);
	}
	if (d->lfd >= 0)
		r = add_fd(d, d->lfd, TAG_LISTEN);
	if (!r && d->fc_lfd >= 0)
		r = add_fd(d, d->fc_lfd, TAG_FC_LISTEN);
	if (!r)
		r = add_fd(d, d->sigfd, TAG_SIGNAL);
	if (!r)
		r = add_fd(d, d->timerfd, TAG_TIMER);
	if (r)
		return r;
	fld_log(0, "serving %s%s%s%s with %u fault threads (images in %s)", d->cfg.socket ? d->cfg.socket : "",
		d->cfg.socket && d->cfg.fc_socket ? " and " : "", d->cfg.fc_socket ? "Firecracker on " : "",
		d->cfg.fc_socket ? d->cfg.fc_socket : "", d->cfg.threads, d->cfg.images);
	fld_ready_notify(d);
	while (!d->stopping) {
		int n = epoll_wait(d->epfd, evs, FL_ARRAY_SIZE(evs), -1);
		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++) {
			uintptr_t tag = (uintptr_t)evs[i].data.ptr;
			uint64_t v;
			if (tag == TAG_LISTEN) {
				on_accept(d, d->lfd, FLD_CLIENT);
			} else if (tag == TAG_FC_LISTEN) {
				on_accept(d, d->fc_lfd, FLD_FIRECRACKER);
			} else if (tag == TAG_SIGNAL) {
				struct signalfd_siginfo si;
				if (read(d->sigfd, &si, sizeof(si)) == sizeof(si)) {
					fld_log(0, "signal %u: exiting; clients wait for the next faultlined",
						si.ssi_signo);
					d->stopping = true;
				}
			} else if (tag == TAG_TIMER) {
				if (read(d->timerfd, &v, sizeof(v)) < 0)
					(void)0;
				on_timer(d);
			} else if (tag > TAG_MAX) {
				on_session(d, (struct fld_session *)(tag & ~(uintptr_t)1), tag & 1, evs[i].events);
			}
		}
		free_closed(d);
	}
	return 0;
}

int fld_run(struct fld *d)
{
	int r;

	/* Every exit, a refusal at start included, goes through here: what
	 * was made is freed and a socket we bound is removed. */
	d->epfd = d->sigfd = d->timerfd = d->lfd = d->fc_lfd = -1;
	r = serve(d);
	if (d->cfg.socket && d->cfg.listen_fd < 0 && d->lfd >= 0)
		unlink(d->cfg.socket);
	if (!d->cfg.supervisor_pid)
		fld_ready_stopping(&d->cfg);
	shutdown_quietly(d);
	return r;
}
