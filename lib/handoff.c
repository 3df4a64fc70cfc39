// SPDX-License-Identifier: LGPL-2.1-or-later
/* Handing a uffd between processes: SCM_RIGHTS, and pidfd_getfd(2). */
#include "internal.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

int fl__send_fd(int sock, struct iovec *iov, int niov, int fd, size_t *ret_sent)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)niov };
	ssize_t n;

	if (fd >= 0) {
		struct cmsghdr *c;
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	*ret_sent = (size_t)n;
	return 0;
}

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

int fl__cmsg_take_fd(struct msghdr *msg)
{
	int fd = -1;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t nfds;
		int fds[8];

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		nfds = FL_MIN((c->cmsg_len - CMSG_LEN(0)) / sizeof(int), FL_ARRAY_SIZE(fds));
		memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
		/* Keep the first fd; a hostile peer's extras are closed. */
		for (size_t i = 0; i < nfds; i++) {
			if (fd < 0)
				fd = fds[i];
			else
				close(fds[i]);
		}
	}
	return fd;
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
