// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Readiness and socket activation: how whatever starts faultlined learns,
 * without probing its sockets, that it accepts clients — and how systemd
 * hands it sockets it bound itself.
 *
 *   --ready-fd N     "READY=1\n" is written to fd N, which is then closed
 *                    (the s6 / "notification fd" convention: a pipe the
 *                    starter reads until EOF)
 *   --pid-file PATH  written atomically once ready, removed at exit; it
 *                    holds the pid to signal (the supervisor's, with
 *                    --supervise)
 *   $NOTIFY_SOCKET   sd_notify(3): READY=1 with a STATUS line, STOPPING=1
 *   $LISTEN_FDS      sd_listen_fds(3): a SOCK_SEQPACKET socket (or one
 *                    named "manager") is the manager socket, a SOCK_STREAM
 *                    socket (or one named "firecracker") the Firecracker
 *                    socket; the daemon neither binds nor removes them
 *
 * --ready-fd is written once, by the first daemon process that serves (a
 * supervisor's later children are restarts, not starts: the supervisor
 * closes its copy of the fd). A restarted child says READY=1 again and
 * rewrites the pid file with the same (supervisor's) pid: both harmless,
 * and right if the first child died before it was ready.
 */
#include "faultlined.h"
#include "flutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef FLD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#ifdef FLD_HAVE_SYSTEMD
static int activated_socket(struct fld_config *cfg, int fd, const char *name)
{
	bool manager, firecracker;

	if (name && strcmp(name, "unknown")) {
		manager = !strcmp(name, "manager");
		firecracker = !strcmp(name, "firecracker");
	} else {
		manager = sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) > 0;
		firecracker = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0;
	}
	if (manager && cfg->listen_fd < 0 && sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) > 0) {
		cfg->listen_fd = fd;
		return 0;
	}
	if (firecracker && cfg->fc_listen_fd < 0 && sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
		cfg->fc_listen_fd = fd;
		return 0;
	}
	fprintf(stderr, "faultlined: socket activation: fd %d%s%s%s is neither a listening SOCK_SEQPACKET "
		"(manager) nor a listening SOCK_STREAM (firecracker) unix socket, or a second one of a kind\n",
		fd, name ? " (" : "", name ? name : "", name ? ")" : "");
	return -EINVAL;
}
#endif

int fld_ready_activation(struct fld_config *cfg)
{
#ifdef FLD_HAVE_SYSTEMD
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names), r = 0;

	if (n < 0) {
		fprintf(stderr, "faultlined: socket activation: %s\n", strerror(-n));
		return n;
	}
	for (int i = 0; i < n && !r; i++)
		r = activated_socket(cfg, SD_LISTEN_FDS_START + i, names ? names[i] : NULL);
	for (int i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
	if (r)
		return r;
	if (n > 0) {
		cfg->activated = true;
		if (cfg->fc_listen_fd >= 0 && (!cfg->fc_socket || !cfg->mem_file)) {
			fprintf(stderr, "faultlined: an activated Firecracker socket needs --firecracker-socket "
				"(its path) and --mem-file\n");
			return -EINVAL;
		}
	}
	return 0;
#else
	if (getenv("LISTEN_FDS")) {
		fprintf(stderr, "faultlined: LISTEN_FDS is set, but this faultlined was built without "
			"libsystemd (-Dsystemd=disabled): socket activation is not supported\n");
		return -EOPNOTSUPP;
	}
	(void)cfg;
	return 0;
#endif
}

static int write_pid_file(const char *path, pid_t pid)
{
	char tmp[4200], line[32];
	int fd, r, n = snprintf(line, sizeof(line), "%d\n", (int)pid);

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	r = fl__open(tmp, O_WRONLY | O_CREAT | O_EXCL, &fd);
	if (r)
		return r;
	/* A pid file is for anyone to read (fl__open creates 0600). */
	r = fchmod(fd, 0644) ? -errno : fl__pwrite_full(fd, line, (size_t)n, 0);
	if (!r)
		r = fl__close(fd);
	else
		fl__close(fd);
	if (!r && rename(tmp, path))
		r = -errno;
	if (r)
		unlink(tmp);
	return r;
}

void fld_ready_notify(struct fld *d)
{
	struct fld_config *cfg = &d->cfg;
	pid_t main_pid = cfg->supervisor_pid ? cfg->supervisor_pid : getpid();
	int r;

	if (cfg->announced)
		return;
	cfg->announced = true;
	if (cfg->pid_file && (r = write_pid_file(cfg->pid_file, main_pid)))
		fld_log(0, "--pid-file %s: %s", cfg->pid_file, strerror(-r));
	if (cfg->ready_fd >= 0) {
		static const char ready[] = "READY=1\n";
		ssize_t n;

		do
			n = write(cfg->ready_fd, ready, sizeof(ready) - 1);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof(ready) - 1)
			fld_log(0, "--ready-fd %d: %s", cfg->ready_fd, strerror(errno));
		fl__close(cfg->ready_fd);
		cfg->ready_fd = -1;
	}
#ifdef FLD_HAVE_SYSTEMD
	r = sd_pid_notifyf(0, 0, "READY=1\nMAINPID=%d\nSTATUS=serving %s%s%s%s", (int)main_pid,
			   cfg->socket ? cfg->socket : "", cfg->socket && cfg->fc_socket ? " and " : "",
			   cfg->fc_socket ? "Firecracker on " : "", cfg->fc_socket ? cfg->fc_socket : "");
	if (r < 0)
		fld_log(0, "sd_notify: %s", strerror(-r));
#else
	if (getenv("NOTIFY_SOCKET"))
		fld_log(0, "NOTIFY_SOCKET is set, but this faultlined was built without libsystemd: "
			"use Type=simple, or --ready-fd");
#endif
}

void fld_ready_stopping(const struct fld_config *cfg)
{
#ifdef FLD_HAVE_SYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
	/* The supervisor owns the pid file its children wrote (its pid is in it). */
	if (cfg->pid_file && (cfg->announced || cfg->supervisor_pid == getpid()))
		unlink(cfg->pid_file);
}
