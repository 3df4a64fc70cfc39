// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultlined's start-up with the paths it is given: what is already at
 * --socket, the directory around it, --images. Nothing the daemon did not
 * create may be deleted or have its mode changed, and every refusal says
 * what was wrong.
 *
 *   socket-regular-file   --socket names a regular file: refused, the file
 *                         and its bytes kept
 *   socket-is-directory   --socket names a directory: a clear message, not
 *                         "Address already in use"
 *   socket-live-daemon    another daemon answers there: refused, it keeps
 *                         serving
 *   socket-stale          a socket nobody answers on: replaced, served
 *   shared-dir-mode-kept  an existing 1777 directory keeps its mode; one
 *                         the daemon creates is 0700
 *   images-missing        --images names nothing: refused at start
 *   images-file           --images names a file: refused at start
 *   ready-fd              --ready-fd: READY=1 then EOF once clients can
 *                         connect, no probing; --pid-file written, removed
 *                         at exit
 *   ready-supervised      the same under --supervise: the pid file holds
 *                         the supervisor's pid
 *   sd-notify             $NOTIFY_SOCKET: READY=1 with MAINPID, STOPPING=1
 *   socket-activation     $LISTEN_FDS: clients served on the socket
 *                         handed over, which is neither bound nor removed
 */
#include "dutil.h"

#include <fcntl.h>
#include <poll.h>

/* Run faultlined with `argv` (after the program name) until it exits
 * (10 s at most); its exit status, and its stderr in `err`. */
static int run_refused(const char *const *args, char *err, size_t errlen)
{
	const char *argv[24] = { d_faultlined() };
	uint64_t end = t_deadline_ms(10000);
	int pipefd[2], st = 0;
	size_t n = 1, got = 0;
	pid_t pid, w;

	for (; *args && n < 22; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	T_ASSERT(pipe2(pipefd, O_CLOEXEC) == 0);
	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	while ((w = waitpid(pid, &st, WNOHANG)) == 0) {
		if (t_now_ns() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			close(pipefd[0]);
			T_ASSERT(0, "faultlined %s did not exit in 10 s: it should have refused", argv[1]);
		}
		t_sleep_ms(5);
	}
	for (;;) {
		ssize_t k = read(pipefd[0], err + got, errlen - 1 - got);
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	err[got] = 0;
	close(pipefd[0]);
	t_log("faultlined said: %s", err);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) != 0, "faultlined did not refuse (status 0x%x)", st);
	return WEXITSTATUS(st);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	T_ASSERT(lstat(path, &st) == 0, "%s: %s", path, strerror(errno));
	return st.st_mode;
}

static int case_socket_regular_file(void *arg)
{
	static const char keep[] = "somebody's notes, not a socket\n";
	struct d_env e;
	char path[200], buf[128] = "", err[2048];
	int fd;

	(void)arg;
	d_env_init(&e);
	snprintf(path, sizeof(path), "%s/notes.txt", e.dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	T_ASSERT(fd >= 0);
	T_ASSERT(write(fd, keep, sizeof(keep) - 1) == (ssize_t)sizeof(keep) - 1);
	close(fd);
	run_refused((const char *const[]){ "--socket", path, "--images", e.images, NULL }, err, sizeof(err));
	T_ASSERT(strstr(err, "not a socket"), "the refusal does not say why: %s", err);
	T_ASSERT(S_ISREG(mode_of(path)), "the file at --socket was replaced");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	T_ASSERT(fd >= 0 && read(fd, buf, sizeof(buf)) == (ssize_t)sizeof(keep) - 1);
	close(fd);
	T_ASSERT(!strcmp(buf, keep), "the file's bytes changed");
	d_env_free(&e);
	return T_PASS;
}

static int case_socket_is_directory(void *arg)
{
	struct d_env e;
	char path[200], err[2048];

	(void)arg;
	d_env_init(&e);
	snprintf(path, sizeof(path), "%s/sockdir", e.dir);
	T_ASSERT(mkdir(path, 0755) == 0);
	run_refused((const char *const[]){ "--socket", path, "--images", e.images, NULL }, err, sizeof(err));
	T_ASSERT(strstr(err, "is a directory"), "no clear message for a directory: %s", err);
	T_ASSERT(!strstr(err, "Address already in use"), "still the bind error: %s", err);
	T_ASSERT(S_ISDIR(mode_of(path)) && (mode_of(path) & 07777) == 0755, "the directory changed");
	d_env_free(&e);
	return T_PASS;
}

static int case_socket_live_daemon(void *arg)
{
	struct d_env e;
	struct fl_client *c;
	char err[2048];

	(void)arg;
	d_env_init(&e);
	d_start(&e);
	run_refused((const char *const[]){ "--socket", e.sock, "--images", e.images, NULL }, err, sizeof(err));
	T_ASSERT(strstr(err, "another faultlined"), "the refusal does not say why: %s", err);
	T_ASSERT(S_ISSOCK(mode_of(e.sock)));
	c = d_client(&e, 0, 0);	/* the first daemon still serves */
	fl_client_free(c);
	d_stop(&e, SIGTERM);
	d_env_free(&e);
	return T_PASS;
}

static int case_socket_stale(void *arg)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct d_env e;
	struct fl_client *c;
	char run[120];
	int s;

	(void)arg;
	d_env_init(&e);
	snprintf(run, sizeof(run), "%s/run", e.dir);
	T_ASSERT(mkdir(run, 0700) == 0);
	/* A socket bound and closed: what a daemon killed -9 leaves. */
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", e.sock);
	T_ASSERT(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
	close(s);
	T_ASSERT(S_ISSOCK(mode_of(e.sock)));
	d_start(&e);
	c = d_client(&e, 0, 0);
	fl_client_free(c);
	d_stop(&e, SIGTERM);
	d_env_free(&e);
	return T_PASS;
}

static int case_shared_dir_mode_kept(void *arg)
{
	struct d_env e;
	struct fl_client *c;
	char shared[80], run[80];

	(void)arg;
	d_env_init(&e);
	/* The default socket's directory, run/, is the daemon's to create: 0700. */
	d_start(&e);
	snprintf(run, sizeof(run), "%s/run", e.dir);
	T_ASSERT_EQ(mode_of(run) & 07777, 0700);
	d_stop(&e, SIGTERM);
	/* An existing shared directory, like /tmp, keeps its mode. */
	snprintf(shared, sizeof(shared), "%s/shared", e.dir);
	T_ASSERT(mkdir(shared, 0700) == 0 && chmod(shared, 01777) == 0);
	snprintf(e.sock, sizeof(e.sock), "%s/fl.sock", shared);
	d_start(&e);
	T_ASSERT_EQ(mode_of(shared) & 07777, 01777);
	T_ASSERT_EQ(mode_of(e.sock) & 0777, 0600);
	c = d_client(&e, 0, 0);
	fl_client_free(c);
	d_stop(&e, SIGTERM);
	T_ASSERT_EQ(mode_of(shared) & 07777, 01777);
	d_env_free(&e);
	return T_PASS;
}

static int case_images(void *arg)
{
	bool file = arg != NULL;
	struct d_env e;
	char images[200], err[2048], sock[160];
	int fd;

	d_env_init(&e);
	snprintf(images, sizeof(images), "%s/%s", e.dir, file ? "images.txt" : "no-such-dir");
	if (file) {
		fd = open(images, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		T_ASSERT(fd >= 0);
		close(fd);
	}
	snprintf(sock, sizeof(sock), "%s", e.sock);
	run_refused((const char *const[]){ "--socket", sock, "--images", images, NULL }, err, sizeof(err));
	T_ASSERT(strstr(err, "--images"), "the refusal does not name --images: %s", err);
	T_ASSERT(strstr(err, file ? "not a directory" : "No such file"), "unclear refusal: %s", err);
	T_ASSERT(access(e.sock, F_OK) != 0, "a refused daemon left a socket behind");
	d_env_free(&e);
	return T_PASS;
}

/* ---- readiness ------------------------------------------------------------ */

#define READY_FD 20		/* where the ready pipe is in the daemon */

/*
 * Start faultlined with `args`, its end of a ready pipe at READY_FD (when
 * ready_pipe) and a listening socket at fd 3 with LISTEN_FDS (when
 * listen_fd >= 0). Nothing probes its sockets.
 */
static pid_t spawn_daemon(const char *const *args, int *ret_ready, int listen_fd, const char *fdname)
{
	const char *argv[24] = { d_faultlined() };
	int p[2] = { -1, -1 };
	size_t n = 1;
	pid_t pid;

	for (; *args && n < 22; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	if (ret_ready)
		T_ASSERT(pipe2(p, O_CLOEXEC) == 0);
	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		char num[16];
		if (ret_ready && dup2(p[1], READY_FD) < 0)
			_exit(126);
		if (listen_fd >= 0) {
			/* dup2() onto itself would keep O_CLOEXEC. */
			if (listen_fd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(listen_fd, 3) < 0)
				_exit(126);
			snprintf(num, sizeof(num), "%d", (int)getpid());
			setenv("LISTEN_PID", num, 1);
			setenv("LISTEN_FDS", "1", 1);
			if (fdname)
				setenv("LISTEN_FDNAMES", fdname, 1);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (ret_ready) {
		close(p[1]);
		*ret_ready = p[0];
	}
	return pid;
}

/* Everything the daemon writes to the ready pipe, until EOF (10 s at most). */
static void read_ready(int fd, char *buf, size_t len)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	size_t got = 0;

	for (;;) {
		ssize_t k;
		T_ASSERT(poll(&pf, 1, (int)t_scaled_ms(10000)) == 1, "no EOF on the ready fd in 10 s (got '%.*s')",
			 (int)got, buf);
		k = read(fd, buf + got, len - 1 - got);
		T_ASSERT(k >= 0);
		if (k == 0)
			break;
		got += (size_t)k;
	}
	buf[got] = 0;
	close(fd);
}

static pid_t pid_in(const char *path)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	T_ASSERT(fd >= 0, "%s: %s", path, strerror(errno));
	T_ASSERT(read(fd, buf, sizeof(buf) - 1) > 0);
	close(fd);
	return (pid_t)atoi(buf);
}

static void stop_spawned(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	T_ASSERT(waitpid(pid, &st, 0) == pid);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "faultlined ended with status 0x%x", st);
}

static int case_ready_fd(void *arg)
{
	bool supervised = arg != NULL;
	struct d_env e;
	struct fl_client *c;
	char pidfile[120], ready[64];
	pid_t pid;
	int rfd;

	d_env_init(&e);
	snprintf(pidfile, sizeof(pidfile), "%s/faultlined.pid", e.dir);
	pid = spawn_daemon((const char *const[]){ "--socket", e.sock, "--images", e.images, "--ready-fd", "20",
					    "--pid-file", pidfile, supervised ? "--supervise" : "-v", NULL },
			   &rfd, -1, NULL);
	read_ready(rfd, ready, sizeof(ready));
	T_ASSERT(!strcmp(ready, "READY=1\n"), "the ready fd got '%s'", ready);
	/* Ready means ready: the first connection succeeds, no retry. */
	c = d_client(&e, 0, 0);
	fl_client_free(c);
	T_ASSERT_EQ(pid_in(pidfile), pid);
	stop_spawned(pid);
	T_ASSERT(access(pidfile, F_OK) != 0, "the pid file outlived the daemon");
	T_ASSERT(access(e.sock, F_OK) != 0, "the socket outlived the daemon");
	d_env_free(&e);
	return T_PASS;
}

/* Was this faultlined built with libsystemd? ("faultlined V (+systemd)") */
static bool built_with_systemd(void)
{
	char cmd[600], line[200] = "";
	FILE *f;

	snprintf(cmd, sizeof(cmd), "'%s' --version", d_faultlined());
	f = popen(cmd, "r");
	T_ASSERT(f);
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	pclose(f);
	return strstr(line, "(+systemd)") != NULL;
}

static int case_sd_notify(void *arg)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct pollfd pf;
	struct d_env e;
	struct fl_client *c;
	char msg[512], want[64];
	ssize_t n;
	pid_t pid;
	int ns;

	(void)arg;
	if (!built_with_systemd())
		t_skip("faultlined built without libsystemd (-Dsystemd=disabled)");
	d_env_init(&e);
	ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify", e.dir);
	T_ASSERT(ns >= 0 && bind(ns, (struct sockaddr *)&a, sizeof(a)) == 0);
	T_ASSERT(setenv("NOTIFY_SOCKET", a.sun_path, 1) == 0);
	pid = spawn_daemon((const char *const[]){ "--socket", e.sock, "--images", e.images, NULL }, NULL, -1, NULL);
	T_ASSERT(unsetenv("NOTIFY_SOCKET") == 0);
	pf = (struct pollfd){ .fd = ns, .events = POLLIN };
	T_ASSERT(poll(&pf, 1, (int)t_scaled_ms(10000)) == 1, "no notification in 10 s");
	n = recv(ns, msg, sizeof(msg) - 1, 0);
	T_ASSERT(n > 0);
	msg[n] = 0;
	t_log("sd_notify: %s", msg);
	snprintf(want, sizeof(want), "MAINPID=%d", (int)pid);
	T_ASSERT(strstr(msg, "READY=1") && strstr(msg, want), "not READY=1 with %s: %s", want, msg);
	c = d_client(&e, 0, 0);
	fl_client_free(c);
	kill(pid, SIGTERM);
	T_ASSERT(poll(&pf, 1, (int)t_scaled_ms(10000)) == 1, "no STOPPING=1 in 10 s");
	n = recv(ns, msg, sizeof(msg) - 1, 0);
	T_ASSERT(n > 0);
	msg[n] = 0;
	T_ASSERT(strstr(msg, "STOPPING=1"), "%s", msg);
	{
		int st;
		T_ASSERT(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	close(ns);
	d_env_free(&e);
	return T_PASS;
}

static int case_socket_activation(void *arg)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct d_env e;
	struct fl_client *c;
	char ready[64], run[80];
	pid_t pid;
	int ls, rfd;

	(void)arg;
	if (!built_with_systemd())
		t_skip("faultlined built without libsystemd (-Dsystemd=disabled)");
	d_env_init(&e);
	snprintf(run, sizeof(run), "%s/run", e.dir);
	T_ASSERT(mkdir(run, 0700) == 0);
	/* What systemd does for a .socket unit: bind and listen, then start. */
	ls = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", e.sock);
	T_ASSERT(ls >= 0 && bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(ls, 16) == 0);
	pid = spawn_daemon((const char *const[]){ "--socket", e.sock, "--images", e.images, "--ready-fd", "20",
					    NULL }, &rfd, ls, "manager");
	read_ready(rfd, ready, sizeof(ready));
	T_ASSERT(!strcmp(ready, "READY=1\n"), "the ready fd got '%s'", ready);
	c = d_client(&e, 0, 0);
	fl_client_free(c);
	stop_spawned(pid);
	T_ASSERT(S_ISSOCK(mode_of(e.sock)), "the daemon removed the socket systemd owns");
	/* It was never re-bound: the socket we listen on still takes connections. */
	{
		int s = d_raw_connect(&e);
		close(s);
	}
	close(ls);
	d_env_free(&e);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "socket-regular-file", case_socket_regular_file, NULL, 30 },
	{ "socket-is-directory", case_socket_is_directory, NULL, 30 },
	{ "socket-live-daemon", case_socket_live_daemon, NULL, 30 },
	{ "socket-stale", case_socket_stale, NULL, 30 },
	{ "shared-dir-mode-kept", case_shared_dir_mode_kept, NULL, 30 },
	{ "images-missing", case_images, NULL, 30 },
	{ "images-file", case_images, (void *)1, 30 },
	{ "ready-fd", case_ready_fd, NULL, 30 },
	{ "ready-supervised", case_ready_fd, (void *)1, 30 },
	{ "sd-notify", case_sd_notify, NULL, 30 },
	{ "socket-activation", case_socket_activation, NULL, 30 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
