// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Handing a uffd between processes: fl_uffd_send() / fl_uffd_recv() over a
 * unix socket (SCM_RIGHTS) and fl_uffd_take() (pidfd_getfd). In each case a
 * forked child owns the memory and faults; the case's process, holding the
 * child's uffd, resolves the child's faults from its own buffers.
 */
#include "kt.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_PAGES 4
#define SEED 61

struct range_info {
	uint64_t addr, len;
	int32_t uffd_number;	/* the child's fd number, for fl_uffd_take() */
};

/* The child: register a range, hand over the uffd (by socket or by
 * number), then read every page and check the data the parent put there. */
static int child_main(int sock, bool send_fd)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	struct range_info info;
	char *area = t_map(FL_MEM_ANON, CHILD_PAGES * page, NULL);
	int uffd = t_uffd(0);
	char go;

	T_OK(fl_uffd_register(uffd, area, CHILD_PAGES * page, FL_REG_MISSING, NULL));
	info.addr = (uintptr_t)area;
	info.len = CHILD_PAGES * page;
	info.uffd_number = uffd;
	if (send_fd) {
		T_OK(fl_uffd_send(sock, uffd, &info, sizeof(info)));
	} else {
		T_ASSERT(write(sock, &info, sizeof(info)) == (ssize_t)sizeof(info));
	}
	/* Keep our own reference (closing it would turn faults into zeros);
	 * wait until the parent holds the uffd. */
	T_ASSERT(read(sock, &go, 1) == 1);
	for (unsigned i = 0; i < CHILD_PAGES; i++) {
		long long bad = t_check_pattern(area + i * page, page, i * page, SEED);
		if (bad >= 0) {
			fprintf(stderr, "# child: page %u wrong at byte %lld\n", i, bad);
			return T_FAIL;
		}
	}
	return T_PASS;
}

/*
 * Serve the child's faults on `uffd` until it exits; returns the child's
 * wait status. Resolves with COPY from our own pattern buffer.
 */
static int serve_child(int uffd, pid_t pid, const struct range_info *info, unsigned *ret_faults)
{
	uint8_t *src = t_pattern_buf(info->len, 0, SEED);
	uint64_t deadline = t_now_ns() + KT_TIMEOUT_MS * 1000000ull;
	const size_t page = t_page_size(FL_MEM_ANON);
	unsigned faults = 0;
	int status;

	for (;;) {
		struct pollfd pfd = { .fd = uffd, .events = POLLIN };
		struct uffd_msg msgs[8];
		pid_t w = waitpid(pid, &status, WNOHANG);
		int n;

		if (w == pid)
			break;
		T_ASSERT(t_now_ns() < deadline, "child did not finish");
		if (poll(&pfd, 1, 10) <= 0)
			continue;
		n = fl_uffd_read(uffd, msgs, 8);
		if (n == -EAGAIN)
			continue;
		T_ASSERT(n > 0, "fl_uffd_read: %d", n);
		for (int i = 0; i < n; i++) {
			uint64_t addr = fl_msg_fault_addr(&msgs[i]) & ~(uint64_t)(page - 1);
			uint64_t off = addr - info->addr;

			T_ASSERT(fl_msg_is_fault(&msgs[i]));
			T_ASSERT(off < info->len, "fault outside the child's range");
			T_OK(fl_uffd_copy(uffd, (void *)(uintptr_t)addr, src + off, page, 0, NULL));
			faults++;
		}
	}
	free(src);
	*ret_faults = faults;
	return status;
}

static int test_send_recv(void *arg)
{
	struct range_info info;
	unsigned faults = 0;
	int sv[2], uffd = -1, status, n;
	pid_t pid;

	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		_exit(child_main(sv[1], true));
	}
	close(sv[1]);
	n = fl_uffd_recv(sv[0], &info, sizeof(info), &uffd);
	T_ASSERT_EQ(n, (int)sizeof(info));
	T_ASSERT(uffd >= 0 && kt_is_uffd(uffd), "received fd %d is not a uffd", uffd);
	T_ASSERT(fcntl(uffd, F_GETFD) & FD_CLOEXEC, "received uffd not CLOEXEC");
	T_ASSERT(write(sv[0], "g", 1) == 1);
	status = serve_child(uffd, pid, &info, &faults);
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
	T_ASSERT(faults >= 1 && faults <= CHILD_PAGES, "%u faults served", faults);
	/* The mm is gone: resolving into it now fails with ESRCH. */
	{
		void *src = calloc(1, info.len);
		size_t done = 12345;
		T_ASSERT(src);
		T_ASSERT_EQ(fl_uffd_copy(uffd, (void *)(uintptr_t)info.addr, src, 4096, 0, &done),
			    -ESRCH);
		T_ASSERT_EQ(done, 0);
	}
	return T_PASS;
}

/* No data: one byte still goes, and the receiver may ask for none. */
static int test_send_recv_no_data(void *arg)
{
	int sv[2], uffd, got = -1;

	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	uffd = t_uffd(0);
	T_OK(fl_uffd_send(sv[0], uffd, NULL, 0));
	T_ASSERT_EQ(fl_uffd_recv(sv[1], NULL, 0, &got), 0);
	T_ASSERT(got >= 0 && got != uffd && kt_is_uffd(got));
	/* Same uffd: a registration through one is seen through the other. */
	{
		const size_t page = t_page_size(FL_MEM_ANON);
		char *area = t_map(FL_MEM_ANON, page, NULL);
		T_OK(fl_uffd_register(uffd, area, page, FL_REG_MISSING, NULL));
		T_OK(fl_uffd_unregister(got, area, page));
		T_OK(fl_uffd_register(t_uffd(0), area, page, FL_REG_MISSING, NULL));
	}
	return T_PASS;
}

static int test_recv_no_fd(void *arg)
{
	struct range_info info = { 1, 2, 3 }, got;
	int sv[2], fd = -12345;

	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	T_ASSERT(write(sv[0], &info, sizeof(info)) == (ssize_t)sizeof(info));
	T_ASSERT_EQ(fl_uffd_recv(sv[1], &got, sizeof(got), &fd), -EBADMSG);
	T_ASSERT_EQ(fd, -12345);
	return T_PASS;
}

static int test_recv_peer_closed(void *arg)
{
	char buf[8];
	int sv[2], fd = -12345;

	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	close(sv[0]);
	T_ASSERT_EQ(fl_uffd_recv(sv[1], buf, sizeof(buf), &fd), -ECONNRESET);
	T_ASSERT_EQ(fd, -12345);
	/* Sending to a closed peer fails (and does not raise SIGPIPE). */
	T_ASSERT(fl_uffd_send(sv[1], t_uffd(0), "x", 1) == -EPIPE);
	return T_PASS;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	T_ASSERT(d != NULL);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* A peer that sends several fds: the first is kept, the rest closed. */
static int test_recv_extra_fds(void *arg)
{
	int sv[2], fds[3], got = -1, before;
	char byte = 'x';
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c;

	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	fds[0] = t_uffd(0);
	fds[1] = t_uffd(0);
	fds[2] = t_uffd(0);
	memset(&u, 0, sizeof(u));
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	T_ASSERT(sendmsg(sv[0], &msg, 0) == 1);
	before = count_fds();
	T_ASSERT_EQ(fl_uffd_recv(sv[1], &byte, 1, &got), 1);
	T_ASSERT(kt_is_uffd(got));
	T_ASSERT_EQ(count_fds(), before + 1);
	return T_PASS;
}

/* fl_uffd_take(): a restarted handler takes the uffd by pid and number. */
static int test_take(void *arg)
{
	struct range_info info;
	unsigned faults = 0;
	int sv[2], uffd = -1, status;
	pid_t pid;

	T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		_exit(child_main(sv[1], false));
	}
	close(sv[1]);
	T_ASSERT(read(sv[0], &info, sizeof(info)) == (ssize_t)sizeof(info));
	T_OK(fl_uffd_take(pid, info.uffd_number, &uffd));
	T_ASSERT(kt_is_uffd(uffd), "taken fd %d is not a uffd", uffd);
	T_ASSERT(write(sv[0], "g", 1) == 1);
	status = serve_child(uffd, pid, &info, &faults);
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
	T_ASSERT(faults >= 1, "no faults served");
	return T_PASS;
}

static int test_take_errors(void *arg)
{
	int fd = -12345, p[2];
	pid_t pid;

	T_ASSERT(pipe(p) == 0);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		char c;
		close(p[1]);
		(void)!read(p[0], &c, 1);
		_exit(0);
	}
	close(p[0]);
	/* No such fd in the child. */
	T_ASSERT_EQ(fl_uffd_take(pid, 1000, &fd), -EBADF);
	T_ASSERT_EQ(fd, -12345);
	close(p[1]);
	T_ASSERT(waitpid(pid, NULL, 0) == pid);
	/* No such process. */
	T_ASSERT_EQ(fl_uffd_take(pid, 0, &fd), -ESRCH);
	T_ASSERT_EQ(fd, -12345);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "send_recv", test_send_recv, NULL, 0 },
	{ "send_recv_no_data", test_send_recv_no_data, NULL, 0 },
	{ "recv_no_fd", test_recv_no_fd, NULL, 0 },
	{ "recv_peer_closed", test_recv_peer_closed, NULL, 0 },
	{ "recv_extra_fds", test_recv_extra_fds, NULL, 0 },
	{ "take", test_take, NULL, 0 },
	{ "take_errors", test_take_errors, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
