// SPDX-License-Identifier: LGPL-2.1-or-later
#include "redis-local.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

bool redis_local_available(void)
{
	static const char *dirs[] = { "/usr/bin", "/usr/local/bin", "/usr/sbin" };
	char p[64];
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(p, sizeof(p), "%s/redis-server", dirs[i]);
		if (access(p, X_OK) == 0)
			return true;
	}
	return false;
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool port_free(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;
	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

/* A cluster node also listens on its bus port, port + 10000: both free,
 * the bus port below 65536 (an ephemeral port from free_port() may not
 * leave room). */
static int free_cluster_port(void)
{
	uint64_t st = (uint64_t)getpid() << 32 ^ fl__now_ns();
	for (int i = 0; i < 1000; i++) {
		int port = 20000 + (int)(splitmix64(&st) % 30000);
		if (port_free(port) && port_free(port + 10000))
			return port;
	}
	return -EADDRINUSE;
}

static bool answers(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char buf[16];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = false;
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && write(fd, "PING\r\n", 6) == 6 &&
	    read(fd, buf, sizeof(buf)) > 0)
		ok = buf[0] == '+';
	close(fd);
	return ok;
}

static int start(struct redis_local *r, const char *prefix, bool cluster)
{
	char port[16], log[300];
	const char *args[] = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
			       "--appendonly", "no", "--protected-mode", "no", "--maxmemory", "0",
			       "--logfile", log, "--dir", r->dir, NULL, NULL, NULL, NULL, NULL };
	const size_t base = 17;
	pid_t parent = getpid();
	int p, e;

	memset(r, 0, sizeof(*r));
	r->pid_slot = r->dir_slot = -1;
	e = scratch_dir(temp_dir(), "fl-redis", r->dir, sizeof(r->dir), &r->dir_slot);
	if (e) {
		r->dir[0] = '\0';
		return e;
	}
	p = cluster ? free_cluster_port() : free_port();
	if (p < 0) {
		redis_local_stop(r);
		return p;
	}
	r->port = p;
	snprintf(port, sizeof(port), "%d", p);
	snprintf(log, sizeof(log), "%s/redis.log", r->dir);
	if (cluster) {
		/* nodes.conf lives in --dir, one per server. */
		args[base] = "--cluster-enabled";
		args[base + 1] = "yes";
		args[base + 2] = "--cluster-node-timeout";
		args[base + 3] = "5000";
	}
	/* fork and exec rather than posix_spawn: the server must die with
	 * us (PR_SET_PDEATHSIG), which posix_spawn cannot ask for. */
	fflush(NULL);
	r->pid = fork();
	if (r->pid < 0) {
		e = errno;
		r->pid = 0;
		redis_local_stop(r);
		return -e;
	}
	if (r->pid == 0) {
		int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

		cleanup_child(parent);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		if (devnull >= 0) {
			dup2(devnull, STDIN_FILENO);
			dup2(devnull, STDOUT_FILENO);
			dup2(devnull, STDERR_FILENO);
		}
		execvp(args[0], (char *const *)args);
		_exit(127);
	}
	r->pid_slot = cleanup_add_pid(r->pid);
	/* 5 s for redis-server to answer, times FAULTLINE_TIMEOUT_SCALE. */
	for (unsigned i = 0, n = cli_scaled_ms(5000) / 10; i < n; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		if (answers(p)) {
			snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/%s", p, prefix);
			return 0;
		}
		if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
			r->pid = 0;
			cleanup_drop(r->pid_slot);
			r->pid_slot = -1;
			break;
		}
		nanosleep(&ts, NULL);
	}
	redis_local_stop(r);
	return -ETIMEDOUT;
}

int redis_local_start(struct redis_local *r, const char *prefix)
{
	return start(r, prefix, false);
}

/* Send one inline command, read one reply (up to len - 1 bytes). */
static bool ask(int port, const char *cmd, char *buf, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ssize_t n = -1;
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd))
		n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

int redis_local_cluster_start(struct redis_local *nodes, unsigned n, const char *prefix)
{
	char addr[8][32], log[300];
	const char *args[16];
	unsigned k = 0;
	pid_t pid, parent = getpid();
	int status, e = 0;

	if (n < 3 || n > 8)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		nodes[i].pid = 0, nodes[i].dir[0] = '\0', nodes[i].pid_slot = nodes[i].dir_slot = -1;
	for (unsigned i = 0; i < n && !e; i++) {
		/* A port taken between the pick and the server's bind: again. */
		for (int attempt = 0; attempt < 5; attempt++) {
			e = start(&nodes[i], prefix, true);
			if (e != -ETIMEDOUT)
				break;
		}
		snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", nodes[i].port);
	}
	if (e)
		goto fail;
	args[k++] = "redis-cli";
	args[k++] = "--cluster";
	args[k++] = "create";
	for (unsigned i = 0; i < n; i++)
		args[k++] = addr[i];
	args[k++] = "--cluster-replicas";
	args[k++] = "0";
	args[k++] = "--cluster-yes";
	args[k] = NULL;
	snprintf(log, sizeof(log), "%s/cluster-create.log", nodes[0].dir);
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		e = -errno;
		goto fail;
	}
	if (pid == 0) {
		int out = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		cleanup_child(parent);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		if (out >= 0) {
			dup2(out, STDOUT_FILENO);
			dup2(out, STDERR_FILENO);
		}
		execvp(args[0], (char *const *)args);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		unlink(log);
		e = -EPROTO;
		goto fail;
	}
	unlink(log);
	/* Every node agrees the cluster is up (30 s, times the scale). */
	for (unsigned t = 0, tries = cli_scaled_ms(30000) / 50; t < tries; t++) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		char buf[4096];
		unsigned ok = 0;
		for (unsigned i = 0; i < n; i++)
			ok += ask(nodes[i].port, "CLUSTER INFO\r\n", buf, sizeof(buf)) &&
			      strstr(buf, "cluster_state:ok") != NULL;
		if (ok == n)
			return 0;
		nanosleep(&ts, NULL);
	}
	e = -ETIMEDOUT;
fail:
	for (unsigned i = 0; i < n; i++)
		redis_local_stop(&nodes[i]);
	return e;
}

void redis_local_stop(struct redis_local *r)
{
	char path[300];
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		waitpid(r->pid, NULL, 0);
		r->pid = 0;
		cleanup_drop(r->pid_slot);
		r->pid_slot = -1;
	}
	if (r->dir[0]) {
		snprintf(path, sizeof(path), "%s/redis.log", r->dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/dump.rdb", r->dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/nodes.conf", r->dir);
		unlink(path);
		rmdir(r->dir);
		r->dir[0] = '\0';
		cleanup_drop(r->dir_slot);
		r->dir_slot = -1;
	}
}
