// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The migration control socket (fl_migrate_ctl_new()) and the state and
 * progress statistics it reports. A source and a destination program
 * (ctl-app, $CTL_APP) migrate over TCP on 127.0.0.1, the source's bulk
 * channel paced so that each phase lasts long enough to be watched; the
 * case drives the source through its control socket as an operator would
 * and polls both sides' status.
 */
#include "harness.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#define PAGES 2048			/* 8 MiB */
#define RATE "8000000"			/* bytes/s on the bulk channel: ~1 s a round */

/* Connect to the control socket: the fd, or -errno. */
static int ctl_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	T_ASSERT(fd >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

/* Read the reply (up to EOF) within timeout_ms: its length, -ETIMEDOUT. */
static int read_reply(int fd, char *buf, size_t len, unsigned timeout_ms)
{
	uint64_t end = t_deadline_ms(timeout_ms);
	size_t got = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = (int64_t)(end - t_now_ns()) / 1000000;
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -ETIMEDOUT;
		n = read(fd, buf + got, len - 1 - got);
		if (n < 0 && errno == ECONNRESET)
			n = 0;
		T_ASSERT(n >= 0, "read: %s", strerror(errno));
		if (n == 0 || got + (size_t)n == len - 1) {
			got += (size_t)n;
			buf[got] = 0;
			return (int)got;
		}
		got += (size_t)n;
	}
}

/* One request of line_len bytes, its reply in buf (newline stripped). */
static void request_n(const char *path, const char *line, size_t line_len, char *buf, size_t len)
{
	int fd = ctl_connect(path), n;

	T_ASSERT(fd >= 0, "connect %s: %s", path, strerror(-fd));
	T_ASSERT(write(fd, line, line_len) == (ssize_t)line_len);
	n = read_reply(fd, buf, len, 5000);
	T_ASSERT(n > 0, "no reply to '%s' (%d)", line, n);
	T_ASSERT(buf[n - 1] == '\n', "reply without its newline: %s", buf);
	buf[n - 1] = 0;
	close(fd);
}

static void request(const char *path, const char *line, char *buf, size_t len)
{
	request_n(path, line, strlen(line), buf, len);
}

/* A key's value in a status reply ("" when absent), in a static buffer. */
static const char *field(const char *reply, const char *key)
{
	static char val[8][64];
	static unsigned slot;
	char *out = val[slot++ % 8];
	size_t kl = strlen(key);

	out[0] = 0;
	for (const char *p = reply; (p = strstr(p, key)); p += kl) {
		if ((p == reply || p[-1] == ' ') && p[kl] == '=') {
			size_t n = strcspn(p + kl + 1, " ");

			snprintf(out, 64, "%.*s", (int)n, p + kl + 1);
			break;
		}
	}
	return out;
}

static uint64_t num(const char *reply, const char *key)
{
	const char *v = field(reply, key);

	T_ASSERT(*v, "no %s in '%s'", key, reply);
	return strtoull(v, NULL, 10);
}

struct app {
	pid_t pid;
	char control[128];
	int port;
};

static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();

	T_ASSERT(pid >= 0);
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static const char *app_path(void)
{
	const char *p = getenv("CTL_APP");

	T_ASSERT(p && *p, "CTL_APP is not set (run through meson test)");
	return p;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* The file appears at bind(), a moment before listen(). */
static bool listening(const char *path)
{
	int fd = ctl_connect(path);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void start_source(struct app *a, const char *dir)
{
	snprintf(a->control, sizeof(a->control), "%s/source.sock", dir);
	a->pid = spawn((char *[]){ (char *)app_path(), "source", "--control", a->control, "--pages",
				   "2048", "--rate", RATE, NULL });
	T_ASSERT(T_WAIT_FOR(listening(a->control), 10000), "the source's control socket did not appear");
}

static void start_dest(struct app *a, const char *dir)
{
	char *port_file = t_path_in(dir, "port");
	uint8_t *txt;

	snprintf(a->control, sizeof(a->control), "%s/dest.sock", dir);
	a->pid = spawn((char *[]){ (char *)app_path(), "dest", "--port-file", port_file, "--control",
				   a->control, "--pages", "2048", NULL });
	T_ASSERT(T_WAIT_FOR(exists(port_file), 10000), "the destination did not listen");
	T_ASSERT(T_WAIT_FOR(listening(a->control), 10000), "the destination's control socket did not appear");
	size_t len;

	txt = t_read_file(port_file, &len);
	T_ASSERT(len > 0 && len < 16);
	a->port = (int)strtol((char *)txt, NULL, 10);	/* ends at its newline */
	free(txt);
	T_ASSERT(a->port > 0);
}

/* SIGTERM, then the exit status. */
static int stop(struct app *a)
{
	int status;

	kill(a->pid, SIGTERM);
	T_OK(t_wait_pid(a->pid, 30000, &status));
	T_ASSERT(WIFEXITED(status), "ctl-app %d died of signal %d", a->pid, WTERMSIG(status));
	return WEXITSTATUS(status);
}

static void send_start(const struct app *src, const struct app *dst, const char *mode, char *buf, size_t len)
{
	char line[128];

	snprintf(line, sizeof(line), "start 127.0.0.1:%d %s\n", dst->port, mode);
	request(src->control, line, buf, len);
}

/* A destination and a source program in a new directory, and a started
 * migration in mode between them. */
static void start_pair(struct app *src, struct app *dst, char *dir, size_t dir_len, const char *mode)
{
	char buf[1024];

	t_tmpdir(dir, dir_len, "/tmp/fl-migctl");
	start_dest(dst, dir);
	start_source(src, dir);
	send_start(src, dst, mode, buf, sizeof(buf));
	T_ASSERT(!strcmp(buf, "ok"), "start: %s", buf);
}

static bool state_is(const char *path, const char *state)
{
	char buf[1024];

	request(path, "status\n", buf, sizeof(buf));
	return !strcmp(field(buf, "state"), state);
}

static int state_rank(const char *s)
{
	static const char *const order[] = { "idle", "precopy", "switchover", "postcopy", "done" };

	for (int i = 0; i < 5; i++)
		if (!strcmp(s, order[i]))
			return i;
	return -1;
}

/*
 * A whole migration in each mode, watched: the states the source passes
 * through (never backwards), pages_remaining falling within a phase, and
 * at DONE: 0 remaining of the layout's pages, on both sides; both programs'
 * memory checks.
 */
static int test_states(void *arg)
{
	const char *mode = arg;
	struct app src, dst;
	char dir[256], buf[1024], seen[256] = "";
	bool fell = false, dst_missing = false, seen_rank[5] = { 0 };
	uint64_t last_remaining = UINT64_MAX;
	int last_rank = -1;
	const char *last_state = "";

	t_tmpdir(dir, sizeof(dir), "/tmp/fl-migctl");
	start_dest(&dst, dir);
	start_source(&src, dir);
	request(src.control, "status\n", buf, sizeof(buf));
	T_ASSERT(!strcmp(field(buf, "role"), "none") && !strcmp(field(buf, "state"), "idle"), "%s", buf);
	/* A destination's control socket does not start migrations. */
	request(dst.control, "start 127.0.0.1:1 precopy\n", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -", 7), "%s", buf);
	send_start(&src, &dst, mode, buf, sizeof(buf));
	T_ASSERT(!strcmp(buf, "ok"), "start: %s", buf);
	uint64_t end = t_deadline_ms(60000);

	for (;;) {
		const char *state;
		int rank;

		T_ASSERT(t_now_ns() < end, "no end in 60 s; states seen:%s", seen);
		request(src.control, "status\n", buf, sizeof(buf));
		T_ASSERT(!strcmp(field(buf, "role"), "source") && !strcmp(field(buf, "mode"), mode), "%s", buf);
		state = field(buf, "state");
		rank = state_rank(state);
		T_ASSERT(rank >= 0, "state %s: %s", state, buf);
		T_ASSERT(rank >= last_rank, "state went back from %s to %s", last_state, state);
		if (rank != last_rank) {
			snprintf(seen + strlen(seen), sizeof(seen) - strlen(seen), " %s", state);
			last_remaining = UINT64_MAX;
		}
		seen_rank[rank] = true;
		last_rank = rank;
		last_state = state;
		T_ASSERT_EQ(num(buf, "pages_total"), PAGES);
		if (rank == 4)
			break;
		uint64_t rem = num(buf, "pages_remaining");

		T_ASSERT(rem <= PAGES, "%s", buf);
		/* Within a round a later sample is never higher; a new round
		 * starts over, so compare only while it keeps falling. */
		if (rem < last_remaining && last_remaining != UINT64_MAX && rem > 0)
			fell = true;
		last_remaining = rem;
		if (!dst_missing) {
			char d[1024];

			request(dst.control, "status\n", d, sizeof(d));
			if (!strcmp(field(d, "role"), "dest") && num(d, "pages_remaining") > 0 &&
			    num(d, "pages_total") == PAGES)
				dst_missing = true;
		}
		t_sleep_ms(5);
	}
	t_log("%s: states seen:%s", mode, seen);
	T_ASSERT(fell, "pages_remaining never fell between two samples");
	T_ASSERT(dst_missing, "the destination never reported pages missing");
	T_ASSERT(!strcmp(field(buf, "error"), "0"), "%s", buf);
	T_ASSERT_EQ(num(buf, "pages_remaining"), 0);
	T_ASSERT(num(buf, "downtime_ns") > 0 && num(buf, "total_ns") >= num(buf, "downtime_ns"), "%s", buf);
	T_ASSERT(num(buf, "bytes_sent") > 0 && num(buf, "pages_sent") >= PAGES, "%s", buf);
	if (!strcmp(mode, "precopy")) {
		T_ASSERT(seen_rank[1] && seen_rank[2] && !seen_rank[3], "precopy:%s", seen);
		T_ASSERT(num(buf, "rounds") >= 1);
	} else if (!strcmp(mode, "postcopy")) {
		T_ASSERT(seen_rank[3], "postcopy:%s", seen);
		T_ASSERT_EQ(num(buf, "rounds"), 0);
	} else {
		T_ASSERT(seen_rank[1] && seen_rank[3], "hybrid:%s", seen);
	}
	/* The destination's own view of the end. */
	T_ASSERT(T_WAIT_FOR(state_is(dst.control, "done"), 10000), "the destination is not done");
	request(dst.control, "status\n", buf, sizeof(buf));
	T_ASSERT(!strcmp(field(buf, "role"), "dest"), "%s", buf);
	T_ASSERT_EQ(num(buf, "pages_remaining"), 0);
	T_ASSERT_EQ(num(buf, "pages_total"), PAGES);
	T_ASSERT(num(buf, "pages_received") > 0);
	/* Done is final: a cancel now is too late. */
	request(src.control, "cancel\n", buf, sizeof(buf));
	T_ASSERT(!strcmp(buf, "error -16 too late: switchover has begun"), "%s", buf);
	T_ASSERT_EQ(stop(&dst), 0);
	T_ASSERT_EQ(stop(&src), 0);
	T_ASSERT(!exists(src.control), "the control socket file outlived the program");
	t_rmtree(dir);
	return T_PASS;
}

static bool precopy_sending(const char *path)
{
	char buf[1024];

	request(path, "status\n", buf, sizeof(buf));
	return !strcmp(field(buf, "state"), "precopy") && num(buf, "pages_sent") > 0;
}

/*
 * Cancel during precopy: the source says cancelled (no error), the
 * destination that it was cancelled, the program runs on with its memory
 * whole (ctl-app checks at exit); then a second migration of the same
 * program completes. A second start while one runs is refused.
 */
static int test_cancel(void *arg)
{
	struct app src, dst, dst2;
	char dir[256], buf[1024];

	(void)arg;
	start_pair(&src, &dst, dir, sizeof(dir), "hybrid");
	T_ASSERT(T_WAIT_FOR(precopy_sending(src.control), 10000), "no precopy seen");
	send_start(&src, &dst, "hybrid", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -114 ", 11), "a second start: %s", buf);
	request(src.control, "cancel\n", buf, sizeof(buf));
	T_ASSERT(!strcmp(buf, "ok"), "cancel: %s", buf);
	T_ASSERT(T_WAIT_FOR(state_is(src.control, "cancelled"), 10000), "not cancelled");
	request(src.control, "status\n", buf, sizeof(buf));
	T_ASSERT(!strcmp(field(buf, "error"), "0"), "%s", buf);
	T_ASSERT(T_WAIT_FOR(state_is(dst.control, "cancelled"), 10000), "the destination is not cancelled");
	T_ASSERT_EQ(stop(&dst), 3);
	/* Again, to completion, from the same program. */
	unlink(t_path_in(dir, "port"));
	start_dest(&dst2, dir);
	send_start(&src, &dst2, "precopy", buf, sizeof(buf));
	T_ASSERT(!strcmp(buf, "ok"), "start again: %s", buf);
	T_ASSERT(T_WAIT_FOR(state_is(src.control, "done"), 60000), "the second migration did not end");
	T_ASSERT_EQ(stop(&dst2), 0);
	T_ASSERT_EQ(stop(&src), 0);
	t_rmtree(dir);
	return T_PASS;
}

/* The destination dies in precopy: the source ends FAILED with the
 * channel's error, and runs on with its memory whole. */
static int test_failed(void *arg)
{
	struct app src, dst;
	char dir[256], buf[1024];
	int status;

	(void)arg;
	start_pair(&src, &dst, dir, sizeof(dir), "hybrid");
	T_ASSERT(T_WAIT_FOR(precopy_sending(src.control), 10000), "no precopy seen");
	kill(dst.pid, SIGKILL);
	T_OK(t_wait_pid(dst.pid, 10000, &status));
	T_ASSERT(T_WAIT_FOR(state_is(src.control, "failed"), 20000), "not failed");
	request(src.control, "status\n", buf, sizeof(buf));
	T_ASSERT(atoi(field(buf, "error")) < 0, "no error in %s", buf);
	t_log("failed with: %s", field(buf, "error"));
	T_ASSERT_EQ(stop(&src), 0);
	t_rmtree(dir);
	return T_PASS;
}

/* Postcopy has begun: cancel is refused as too late, the migration ends. */
static int test_cancel_late(void *arg)
{
	struct app src, dst;
	char dir[256], buf[1024];

	(void)arg;
	start_pair(&src, &dst, dir, sizeof(dir), "postcopy");
	T_ASSERT(T_WAIT_FOR(state_is(src.control, "postcopy"), 10000), "no postcopy seen");
	request(src.control, "cancel\n", buf, sizeof(buf));
	T_ASSERT(!strcmp(buf, "error -16 too late: switchover has begun"), "%s", buf);
	T_ASSERT(T_WAIT_FOR(state_is(src.control, "done"), 60000), "did not end");
	T_ASSERT_EQ(stop(&dst), 0);
	T_ASSERT_EQ(stop(&src), 0);
	t_rmtree(dir);
	return T_PASS;
}

/* A well-formed status is answered at once (within 1 s). */
static void served(const char *path)
{
	char buf[1024];
	uint64_t t0 = t_now_ns();

	request(path, "status\n", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "ok ", 3), "%s", buf);
	T_ASSERT(t_now_ns() - t0 < t_scaled_ns(1000), "status took %llu ms",
		 (unsigned long long)(t_now_ns() - t0) / 1000000);
}

/* Garbage, an over-long line, NULs, silent and half-speaking clients, a
 * flood of connections: each gets an error or a close, and a good client
 * is served throughout. */
static int test_hostile(void *arg)
{
	struct app src;
	char dir[256], buf[1024], big[4096];
	int fds[40], fd, n;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-migctl");
	start_source(&src, dir);
	request(src.control, "hello world\n", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -22 ", 10), "%s", buf);
	request(src.control, "start\n", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -22 ", 10), "%s", buf);
	request(src.control, "start 127.0.0.1:1 sideways\n", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -22 ", 10), "%s", buf);
	request(src.control, "start 127.0.0.1:1 hybrid extra\n", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -22 ", 10), "%s", buf);
	/* Nobody listens on port 1: the program's own error comes back. */
	request(src.control, "start 127.0.0.1:1 hybrid\n", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -111 ", 11), "%s", buf);
	request(src.control, "cancel\n", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -2 ", 9), "%s", buf);
	request_n(src.control, "stat\0us\n", 8, buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -22 ", 10), "%s", buf);
	/* FL_MIGRATE_CTL_LINE_MAX bytes with the newline is a request (the
	 * program cannot resolve such a host); one more byte is too long. */
	char line[FL_MIGRATE_CTL_LINE_MAX + 2];

	for (int extra = 0; extra < 2; extra++) {
		size_t len = FL_MIGRATE_CTL_LINE_MAX + (size_t)extra, host = len - strlen("start :1 hybrid\n");

		memcpy(line, "start ", 6);
		memset(line + 6, 'h', host);
		memcpy(line + 6 + host, ":1 hybrid\n", strlen(":1 hybrid\n"));
		request_n(src.control, line, len, buf, sizeof(buf));
		T_ASSERT(extra ? !strncmp(buf, "error -90 ", 10) : strstr(buf, " start failed: ") != NULL,
			 "a line of %zu bytes: %s", len, buf);
	}
	/* An over-long line, without a newline. */
	memset(big, 'x', sizeof(big));
	fd = ctl_connect(src.control);
	T_ASSERT(fd >= 0);
	(void)!write(fd, big, sizeof(big));
	n = read_reply(fd, buf, sizeof(buf), 5000);
	T_ASSERT(n > 0 && !strncmp(buf, "error -90 ", 10), "over-long: %d %s", n, n > 0 ? buf : "");
	close(fd);
	/* Silent clients, and one that says half a line and stays: others
	 * are served meanwhile; they are closed after their timeout. */
	int silent = ctl_connect(src.control), half = ctl_connect(src.control);

	T_ASSERT(silent >= 0 && half >= 0);
	T_ASSERT(write(half, "sta", 3) == 3);
	served(src.control);
	n = read_reply(silent, buf, sizeof(buf), 5000);
	T_ASSERT(n > 0 && !strncmp(buf, "error -110 ", 11), "silent: %d", n);
	n = read_reply(half, buf, sizeof(buf), 5000);
	T_ASSERT(n > 0 && !strncmp(buf, "error -110 ", 11), "half: %d", n);
	close(silent);
	close(half);
	/* One that goes away mid-line. */
	fd = ctl_connect(src.control);
	T_ASSERT(fd >= 0 && write(fd, "can", 3) == 3);
	close(fd);
	/* A flood: more connections than slots, none speaking. The oldest
	 * make room; a good client is still served at once. */
	for (unsigned i = 0; i < 40; i++) {
		fds[i] = ctl_connect(src.control);
		T_ASSERT(fds[i] >= 0, "connection %u: %s", i, strerror(-fds[i]));
	}
	served(src.control);
	for (unsigned i = 0; i < 40; i++)
		close(fds[i]);
	served(src.control);
	T_ASSERT_EQ(stop(&src), 0);
	t_rmtree(dir);
	return T_PASS;
}

/* The API itself, in process: the socket file's rules and mode, attach and
 * detach, the state names. */
static int test_socket_file(void *arg)
{
	struct fl_migrate_ctl *ctl, *other;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char dir[256], path[300], buf[1024], longpath[200];
	struct stat sb;
	int fd;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-migctl");
	snprintf(path, sizeof(path), "%s/c.sock", dir);
#define OPTS(p) (&(struct fl_migrate_ctl_opts){ .sz = sizeof(struct fl_migrate_ctl_opts), .path = (p), \
						  .log = t_log_cb })
	T_ASSERT_EQ(fl_migrate_ctl_new(NULL, &ctl), -EINVAL);
	T_ASSERT_EQ(fl_migrate_ctl_new(OPTS(""), &ctl), -EINVAL);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	T_ASSERT_EQ(fl_migrate_ctl_new(OPTS(longpath), &ctl), -ENAMETOOLONG);
	/* A regular file is never replaced. */
	t_write_file(path, "x", 1);
	T_ASSERT_EQ(fl_migrate_ctl_new(OPTS(path), &ctl), -EEXIST);
	unlink(path);
	/* A stale socket (nobody listens) is. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	T_ASSERT(strlen(path) < sizeof(a.sun_path));
	memcpy(a.sun_path, path, strlen(path) + 1);
	T_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	close(fd);
	T_OK(fl_migrate_ctl_new(OPTS(path), &ctl));
	T_ASSERT(stat(path, &sb) == 0 && S_ISSOCK(sb.st_mode));
	T_ASSERT_EQ(sb.st_mode & 0777, 0600);
	/* A live one is not. */
	T_ASSERT_EQ(fl_migrate_ctl_new(OPTS(path), &other), -EADDRINUSE);
	request(path, "status\n", buf, sizeof(buf));
	T_ASSERT(!strcmp(buf, "ok proto=1 role=none state=idle pages_total=0 pages_remaining=0 rounds=0 "
			      "pages_sent=0 bytes_sent=0 zero_pages=0 requests=0 pushed=0 pages_received=0 "
			      "downtime_ns=0 total_ns=0 request_p50_ns=0 request_p99_ns=0 request_max_ns=0 pages_moved=0 "
			      "recoveries=0 recovery_ns=0 blocked_ns=0 "
			      "error=0"), "%s", buf);
	/* No start callback. */
	request(path, "start 127.0.0.1:1 precopy\n", buf, sizeof(buf));
	T_ASSERT(!strncmp(buf, "error -95 ", 10), "%s", buf);
	T_ASSERT_EQ(fl_migrate_ctl_set_source(NULL, NULL), -EINVAL);
	T_ASSERT_EQ(fl_migrate_ctl_set_dest(NULL, NULL), -EINVAL);
	T_OK(fl_migrate_ctl_set_source(ctl, NULL));
	T_ASSERT(fl_migrate_ctl_free(ctl) == NULL);
	T_ASSERT(!exists(path), "the socket file outlived fl_migrate_ctl_free()");
	T_ASSERT(fl_migrate_ctl_free(NULL) == NULL);
	/* Removed only if it is still ours. */
	T_OK(fl_migrate_ctl_new(OPTS(path), &ctl));
	unlink(path);
	t_write_file(path, "mine", 4);
	fl_migrate_ctl_free(ctl);
	T_ASSERT(exists(path), "fl_migrate_ctl_free() removed someone else's file");
	unlink(path);
#undef OPTS
	T_ASSERT(!strcmp(fl_migrate_state_name(FL_MIGRATE_STATE_IDLE), "idle"));
	T_ASSERT(!strcmp(fl_migrate_state_name(FL_MIGRATE_STATE_PRECOPY), "precopy"));
	T_ASSERT(!strcmp(fl_migrate_state_name(FL_MIGRATE_STATE_SWITCHOVER), "switchover"));
	T_ASSERT(!strcmp(fl_migrate_state_name(FL_MIGRATE_STATE_POSTCOPY), "postcopy"));
	T_ASSERT(!strcmp(fl_migrate_state_name(FL_MIGRATE_STATE_RECOVERING), "recovering"));
	T_ASSERT(!strcmp(fl_migrate_state_name(FL_MIGRATE_STATE_DONE), "done"));
	T_ASSERT(!strcmp(fl_migrate_state_name(FL_MIGRATE_STATE_FAILED), "failed"));
	T_ASSERT(!strcmp(fl_migrate_state_name(FL_MIGRATE_STATE_CANCELLED), "cancelled"));
	T_ASSERT(!strcmp(fl_migrate_state_name(-1), "unknown"));
	T_ASSERT(!strcmp(fl_migrate_state_name(8), "unknown"));
	t_rmtree(dir);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "states-precopy", test_states, "precopy", 120, 0 },
	{ "states-postcopy", test_states, "postcopy", 120, 0 },
	{ "states-hybrid", test_states, "hybrid", 120, 0 },
	{ "cancel", test_cancel, NULL, 120, 0 },
	{ "cancel-too-late", test_cancel_late, NULL, 120, 0 },
	{ "failed", test_failed, NULL, 60, 0 },
	{ "hostile-clients", test_hostile, NULL, 60, 0 },
	{ "socket-file", test_socket_file, NULL, 30, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
