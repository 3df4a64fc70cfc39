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
 */
#include "dutil.h"

#include <fcntl.h>

/* Run faultlined with `argv` (after the program name) until it exits
 * (10 s at most); its exit status, and its stderr in `err`. */
static int run_refused(const char *const *args, char *err, size_t errlen)
{
	const char *argv[24] = { d_faultlined() };
	uint64_t end = t_now_ns() + 10000000000ull;
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
		u_sleep_ms(5);
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

static const struct t_case cases[] = {
	{ "socket-regular-file", case_socket_regular_file, NULL, 30 },
	{ "socket-is-directory", case_socket_is_directory, NULL, 30 },
	{ "socket-live-daemon", case_socket_live_daemon, NULL, 30 },
	{ "socket-stale", case_socket_stale, NULL, 30 },
	{ "shared-dir-mode-kept", case_shared_dir_mode_kept, NULL, 30 },
	{ "images-missing", case_images, NULL, 30 },
	{ "images-file", case_images, (void *)1, 30 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
