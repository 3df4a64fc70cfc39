/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers for the faultlined tests: a scratch directory per case with an
 * image directory and the socket, a real faultlined process started from
 * the build tree ($FAULTLINED, set by meson), images written with the
 * library's writer from the harness pattern, and raw protocol packets for
 * the hostile-client cases.
 */
#ifndef FL_TEST_DUTIL_H
#define FL_TEST_DUTIL_H

#include "util.h"
#include "flutil.h"
#include "mgr-proto.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

struct d_env {
	char dir[64];		/* scratch directory */
	char images[80];	/* image directory */
	char sock[100];		/* manager socket (fits sun_path) */
	pid_t pid;		/* the faultlined process (0: not running) */
};

/* A scratch directory under /tmp for one case; d_env_free() removes it. */
U_FN void d_env_init(struct d_env *e)
{
	t_tmpdir(e->dir, sizeof(e->dir), "/tmp/fld-test");
	snprintf(e->images, sizeof(e->images), "%s/images", e->dir);
	T_ASSERT(mkdir(e->images, 0755) == 0);
	snprintf(e->sock, sizeof(e->sock), "%s/run/faultlined.sock", e->dir);
	e->pid = 0;
}

/* An image `name` of one region of `len` bytes of pattern `seed`. */
U_FN void d_image(const struct d_env *e, const char *name, size_t len, uint32_t seed)
{
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_NO_SYNC };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = len, .prot = 3, .mem = FL_MEM_ANON };
	struct fl_image_writer *w;
	char path[600];
	uint8_t *buf = malloc(1u << 20);

	T_ASSERT(buf);
	snprintf(path, sizeof(path), "%s/%s", e->images, name);
	T_OK(fl_image_writer_new(path, &wo, &w));
	T_ASSERT_EQ(fl_image_writer_add_region(w, &reg), 0);
	for (size_t off = 0; off < len; off += 1u << 20) {
		size_t n = len - off < (1u << 20) ? len - off : 1u << 20;
		t_fill_pattern(buf, n, off, seed);
		T_OK(fl_image_writer_put(w, 0, off / U_PAGE, n / U_PAGE, buf));
	}
	T_OK(fl_image_writer_finish(w, NULL));
	free(buf);
}

U_FN const char *d_faultlined(void)
{
	const char *p = getenv("FAULTLINED");
	return p && *p ? p : "faultlined";
}

U_FN bool d_socket_ready(const char *path)
{
	int s;

	if (fl__unix_connect(path, SOCK_SEQPACKET, &s))
		return false;
	close(s);
	return true;
}

/*
 * Start faultlined on e->sock serving e->images, with extra arguments
 * (NULL-terminated), and wait until it accepts. Its log goes to the
 * case's stderr (the harness keeps it).
 */
U_FN pid_t d_start_argv(struct d_env *e, const char *const *extra)
{
	const char *argv[40] = { d_faultlined(), "--socket", e->sock, "--images", e->images };
	size_t n = 5;
	uint64_t end = t_deadline_ms(10000);
	pid_t pid;

	for (; extra && *extra && n < 38; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		/* The harness kills the case's process group on timeout. */
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (!d_socket_ready(e->sock)) {
		int st;
		T_ASSERT(waitpid(pid, &st, WNOHANG) == 0, "faultlined exited before accepting (status 0x%x)", st);
		T_ASSERT(t_now_ns() < end, "faultlined did not accept in 10 s");
		t_sleep_ms(5);
	}
	e->pid = pid;
	return pid;
}

U_FN pid_t d_start(struct d_env *e)
{
	return d_start_argv(e, NULL);
}

/* Stop faultlined with `sig` and reap it; returns its wait status. */
U_FN int d_stop(struct d_env *e, int sig)
{
	int st = 0;

	if (e->pid > 0) {
		kill(e->pid, sig);
		T_ASSERT(waitpid(e->pid, &st, 0) == e->pid);
	}
	e->pid = 0;
	return st;
}

U_FN void d_env_free(struct d_env *e)
{
	bool running = e->pid > 0;
	int st = d_stop(e, SIGTERM);

	/* A clean exit: under ASan this is where the daemon's own errors and
	 * leaks show. */
	T_ASSERT(!running || (WIFEXITED(st) && WEXITSTATUS(st) == 0), "faultlined exited with status 0x%x", st);
	t_rmtree(e->dir);
}

/*
 * A connected client with the default options plus `flags`; the grace
 * period and the library's 10 s answer timeout scaled
 * (FAULTLINE_TIMEOUT_SCALE).
 */
U_FN struct fl_client *d_client(const struct d_env *e, unsigned flags, unsigned grace_ms)
{
	struct fl_client_opts o = { .sz = sizeof(o), .socket = e->sock, .flags = flags,
				    .grace_ms = t_scaled_ms(grace_ms ? grace_ms : 5000),
				    .timeout_ms = t_scaled_ms(10000) };
	struct fl_client *c = NULL;

	T_OK(fl_client_connect(&o, &c));
	return c;
}

U_FN void *d_map(struct fl_client *c, enum fl_client_source src, const char *image, size_t len)
{
	struct fl_client_map_opts m = { .sz = sizeof(m), .source = src, .image = image, .length = len };
	void *p = NULL;

	T_OK(fl_client_map(c, &m, &p));
	return p;
}

/* ---- raw protocol, for hostile clients ----------------------------------- */

U_FN int d_raw_connect(const struct d_env *e)
{
	int s = -1, r = fl__unix_connect(e->sock, SOCK_SEQPACKET, &s);

	T_ASSERT(r == 0, "connect %s: %s", e->sock, strerror(-r));
	return s;
}

/* Receive one reply: its type (and errno for ERROR), -1 at EOF/timeout. */
U_FN int d_raw_reply(int s, int *ret_errno, int timeout_ms)
{
	static uint8_t buf[FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD];
	struct fl__mgr_hdr h;
	int fd = -1, n = fl__mgr_recv(s, buf, &h, &fd,
				      timeout_ms > 0 ? (int)t_scaled_ms((unsigned)timeout_ms) : timeout_ms);

	if (fd >= 0)
		close(fd);
	if (n < 0)
		return -1;
	if (h.type == FL_MGR_ERROR && ret_errno) {
		char msg[FL_MGR_MAX_ERRMSG + 1];
		*ret_errno = 0;
		fl__mgr_error_decode(buf + FL_MGR_HDR_SIZE, (size_t)n, ret_errno, msg);
	}
	return h.type;
}

/* True when the daemon closed `s` (EOF within timeout_ms). */
U_FN bool d_raw_closed(int s, int timeout_ms)
{
	struct pollfd p = { .fd = s, .events = POLLIN };
	char b[64];

	for (;;) {
		if (poll(&p, 1, timeout_ms > 0 ? (int)t_scaled_ms((unsigned)timeout_ms) : timeout_ms) <= 0)
			return false;
		ssize_t n = recv(s, b, sizeof(b), MSG_DONTWAIT);
		if (n == 0)
			return true;
		if (n < 0 && errno != EAGAIN)
			return true;
	}
}

#endif
