// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * --supervise: a parent process that holds the listening sockets and runs
 * the daemon in a child, restarting it when it dies. Clients that connect
 * while the daemon restarts wait in the socket's backlog; their guards
 * resume their sessions with the new daemon. A daemon that keeps dying
 * (more than max_restarts in restart_window_s) is given up on: the
 * supervisor exits, and each client's guard fails it closed when its grace
 * period ends.
 */
#include "faultlined.h"
#include "flutil.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

int fld_supervise(struct fld_config *cfg, int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_stop };
	uint64_t window_start = fl__now_ns();
	unsigned restarts = 0;
	int r;

	(void)argc;
	(void)argv;
	if (cfg->socket && (r = fld_listen(cfg->socket, SOCK_SEQPACKET, fld_others_allowed(cfg), &cfg->listen_fd)))
		return r;
	if (cfg->fc_socket && (r = fld_listen(cfg->fc_socket, SOCK_STREAM, fld_others_allowed(cfg), &cfg->fc_listen_fd)))
		return r;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	for (;;) {
		int status;
		pid_t child = fork();

		if (child < 0)
			return -errno;
		if (child == 0) {
			struct fld d = { .cfg = *cfg };
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			_exit(fld_run(&d) ? 1 : 0);
		}
		fld_log(0, "supervisor: faultlined running as pid %d", child);
		while (waitpid(child, &status, 0) < 0) {
			if (errno != EINTR)
				return -errno;
			if (stop_signal)
				kill(child, stop_signal);
		}
		if (stop_signal) {
			fld_log(0, "supervisor: stopped by signal %d", (int)stop_signal);
			break;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			fld_log(0, "supervisor: faultlined exited");
			break;
		}
		if (fl__now_ns() - window_start > (uint64_t)cfg->restart_window_s * 1000000000ull) {
			window_start = fl__now_ns();
			restarts = 0;
		}
		if (++restarts > cfg->max_restarts) {
			fld_log(0, "supervisor: faultlined died %u times in %u s: giving up; clients fail closed "
				"when their grace period ends", restarts, cfg->restart_window_s);
			return -ECHILD;
		}
		fld_log(0, "supervisor: faultlined (pid %d) died (%s %d): restarting", child,
			WIFSIGNALED(status) ? "signal" : "exit status",
			WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
	}
	if (cfg->socket)
		unlink(cfg->socket);
	if (cfg->fc_socket)
		unlink(cfg->fc_socket);
	return 0;
}
