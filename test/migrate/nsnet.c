// SPDX-License-Identifier: LGPL-2.1-or-later
/* Network namespaces joined by a veth pair (nsnet.h). */
#include "nsnet.h"
#include "harness.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run an ip/tc command line quietly: its exit status (-1: not run). */
__attribute__((format(printf, 1, 2)))
static int run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd) - 32, fmt, ap);
	va_end(ap);
	strcat(cmd, " >/dev/null 2>&1");
	st = system(cmd);
	return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

void nsnet_setup(struct nsnet *n)
{
	const char *ip[2] = { NSNET_IP0, NSNET_IP1 };
	int pid = (int)getpid();

	memset(n, 0, sizeof(*n));
	if (geteuid() != 0)
		t_skip_resource("network namespaces need root");
	if (run("ip -V") != 0)
		t_skip_resource("ip(8) (iproute2) is not installed");
	for (int s = 0; s < 2; s++) {
		snprintf(n->ns[s], sizeof(n->ns[s]), "flmig-%d-%d", pid, s);
		snprintf(n->dev[s], sizeof(n->dev[s]), "flm%d%c", pid, 'a' + s);
		(void)run("ip netns del %s", n->ns[s]);	/* a dead process's, same pid */
		if (run("ip netns add %s", n->ns[s]) != 0) {
			nsnet_teardown(n);
			t_skip_resource("cannot create a network namespace (ip netns add %s)", n->ns[s]);
		}
		n->made[s] = true;
	}
	if (run("ip link add %s netns %s type veth peer name %s netns %s", n->dev[0], n->ns[0], n->dev[1],
		n->ns[1]) != 0) {
		nsnet_teardown(n);
		t_skip_resource("cannot create a veth pair between network namespaces");
	}
	for (int s = 0; s < 2; s++) {
		if (run("ip -n %s addr add %s/24 dev %s", n->ns[s], ip[s], n->dev[s]) != 0 ||
		    run("ip -n %s link set %s up", n->ns[s], n->dev[s]) != 0 ||
		    run("ip -n %s link set lo up", n->ns[s]) != 0) {
			nsnet_teardown(n);
			T_ASSERT(0, "cannot configure %s in %s", n->dev[s], n->ns[s]);
		}
	}
}

void nsnet_teardown(struct nsnet *n)
{
	for (int s = 0; s < 2; s++) {
		if (n->made[s] && run("ip netns del %s", n->ns[s]) != 0)
			t_log("nsnet: cannot remove network namespace %s", n->ns[s]);
		n->made[s] = false;
	}
}

void nsnet_enter(const struct nsnet *n, int side)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/run/netns/%s", n->ns[side]);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	T_ASSERT(fd >= 0, "%s: %s", path, strerror(errno));
	T_ASSERT(setns(fd, CLONE_NEWNET) == 0, "setns %s: %s", path, strerror(errno));
	close(fd);
}

int nsnet_qdisc(const struct nsnet *n, int side, const char *qdisc)
{
	return run("ip netns exec %s tc qdisc add dev %s root %s", n->ns[side], n->dev[side], qdisc) ? -1 : 0;
}

uint64_t nsnet_rx_bytes(const struct nsnet *n, int side)
{
	char cmd[256];
	unsigned long long v = 0;
	FILE *f;
	int ok;

	/* ip netns exec mounts the namespace's own /sys. */
	snprintf(cmd, sizeof(cmd), "ip netns exec %s cat /sys/class/net/%s/statistics/rx_bytes", n->ns[side],
		 n->dev[side]);
	f = popen(cmd, "r");
	if (!f)
		return UINT64_MAX;
	ok = fscanf(f, "%llu", &v) == 1;
	pclose(f);
	return ok ? v : UINT64_MAX;
}

int nsnet_run(struct nsnet *n, int (*fn)(struct nsnet *n, void *arg), void *arg, unsigned timeout_ms)
{
	int status = 0, r;
	pid_t pid = fork();

	if (pid < 0) {
		nsnet_teardown(n);
		T_ASSERT(0, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		setpgid(0, 0);
		_exit(fn(n, arg));
	}
	setpgid(pid, pid);
	r = t_wait_pid(pid, timeout_ms, &status);
	if (r) {
		t_log("nsnet: the case did not end within %u ms: killed", timeout_ms);
		kill(-pid, SIGKILL);
		(void)waitpid(pid, &status, 0);
	}
	/* Whatever is left of its process group (a source process). */
	kill(-pid, SIGKILL);
	nsnet_teardown(n);
	if (r)
		return T_FAIL;
	if (WIFEXITED(status) && (WEXITSTATUS(status) == T_PASS || WEXITSTATUS(status) == T_SKIP))
		return WEXITSTATUS(status);
	t_log("nsnet: the case ended with status 0x%x", status);
	return T_FAIL;
}
