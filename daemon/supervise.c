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

int fld_supervise(struct fld_config *cfg, int argc, char **argv)
{
	uint64_t window_start = fl__now_ns();
	unsigned restarts = 0;
	sigset_t waited, old;
	int r = 0, stop_signal = 0;

	(void)argc;
	(void)argv;
	bool own_socket = cfg->socket && cfg->listen_fd < 0, own_fc = cfg->fc_socket && cfg->fc_listen_fd < 0;

	if (own_socket && (r = fld_listen(cfg->socket, SOCK_SEQPACKET, fld_others_allowed(cfg), &cfg->listen_fd)))
		return r;
	if (own_fc && (r = fld_listen(cfg->fc_socket, SOCK_STREAM, fld_others_allowed(cfg), &cfg->fc_listen_fd)))
		return r;
	cfg->supervisor_pid = getpid();
	/* The signals are waited for, never handled: a SIGTERM that came
	 * between a check and a blocking waitpid() was lost (the supervisor
	 * then waited for a child nobody told to stop). */
	sigemptyset(&waited);
	sigaddset(&waited, SIGTERM);
	sigaddset(&waited, SIGINT);
	sigaddset(&waited, SIGCHLD);
	sigprocmask(SIG_BLOCK, &waited, &old);
	for (;;) {
		int status = 0;
		pid_t child = fork();

		if (child < 0) {
			r = -errno;
			break;
		}
		if (child == 0) {
			struct fld d = { .cfg = *cfg };
			sigprocmask(SIG_SETMASK, &old, NULL);
			_exit(fld_run(&d) ? 1 : 0);
		}
		fld_log(0, "supervisor: faultlined running as pid %d", child);
		/* Readiness is the first child's to say (a restart is no new
		 * start): the only copy of --ready-fd left is that child's. */
		fl__close(cfg->ready_fd);
		cfg->ready_fd = -1;
		for (;;) {
			siginfo_t si;
			int sig = sigwaitinfo(&waited, &si);

			if (sig == SIGCHLD) {
				if (waitpid(child, &status, WNOHANG) == child)
					break;
			} else if (sig > 0) {
				stop_signal = sig;
				kill(child, sig);
			}
		}
		if (stop_signal) {
			fld_log(0, "supervisor: stopped by signal %d", stop_signal);
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
			r = -ECHILD;
			break;
		}
		fld_log(0, "supervisor: faultlined (pid %d) died (%s %d): restarting", child,
			WIFSIGNALED(status) ? "signal" : "exit status",
			WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
	}
	if (own_socket)
		unlink(cfg->socket);
	if (own_fc)
		unlink(cfg->fc_socket);
	fld_ready_stopping(cfg);
	return r;
}
