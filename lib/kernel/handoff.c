// SPDX-License-Identifier: LGPL-2.1-or-later
/* Handing a uffd between processes: SCM_RIGHTS, and pidfd_getfd(2). */
#include "kernel.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

int fl_uffd_send(int sock, int uffd, const void *data, size_t len)
{
	char dummy = 0;
	struct iovec iov = { .iov_base = len ? (void *)data : &dummy, .iov_len = len ? len : 1 };
	size_t sent;
	int r = fl__send_fd(sock, &iov, 1, uffd, &sent);

	if (r)
		return r;
	return sent == iov.iov_len ? 0 : -EMSGSIZE;
}

int fl_uffd_recv(int sock, void *data, size_t len, int *ret_fd)
{
	char dummy;
	struct iovec iov = { .iov_base = len ? data : &dummy, .iov_len = len ? len : 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	int fd = -1;
	ssize_t n;

	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	fd = fl__cmsg_take_fd(&msg);
	if (n == 0 && fd < 0)
		return -ECONNRESET;
	if (fd < 0)
		return -EBADMSG;
	if (msg.msg_flags & MSG_CTRUNC) {
		close(fd);
		return -EBADMSG;
	}
	*ret_fd = fd;
	return len ? (int)n : 0;
}

int fl_uffd_take(pid_t pid, int fd, int *ret_fd)
{
	int pidfd, r;
	long nfd;

	r = fl__pidfd_open(pid, &pidfd);
	if (r)
		return r;
	nfd = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	r = nfd < 0 ? -errno : 0;
	close(pidfd);
	if (r)
		return r == -ENOSYS ? -EOPNOTSUPP : r;
	*ret_fd = (int)nfd;
	return 0;
}
