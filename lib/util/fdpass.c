// SPDX-License-Identifier: LGPL-2.1-or-later
/* Unix sockets: listening and connecting on a path, and passing file
 * descriptors (SCM_RIGHTS): one sender and one receiver for the uffd
 * hand-off, the manager protocol and the Firecracker handshake. */
#include "flutil.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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

int fl__unix_connect(const char *path, int type, int *ret_fd)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	int fd, r;

	if (n >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, path, n + 1);
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/*
 * A listening unix socket at path with the file's mode set before listen(),
 * so that no connect() is ever accepted under a looser mode. A socket file
 * already there is replaced only when nobody listens on it (a stale one
 * left by a process that died); anything else there is -EEXIST, a socket
 * someone listens on -EADDRINUSE. Close-on-exec and non-blocking.
 */
int fl__unix_path_clear(const char *path, int type)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	struct stat st;
	int fd, e;

	if (n == 0 || n >= sizeof(a.sun_path))
		return n ? -ENAMETOOLONG : -EINVAL;
	memcpy(a.sun_path, path, n + 1);
	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	e = connect(fd, (const struct sockaddr *)&a, sizeof(a)) == 0 ? 0 : errno;
	close(fd);
	if (e == 0 || e == EAGAIN || e == EPROTOTYPE)
		return -EADDRINUSE;
	if (unlink(path) && errno != ENOENT)
		return -errno;
	return 0;
}

int fl__unix_listen(const char *path, unsigned mode, int backlog, int *ret_fd)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	int fd, r;

	if (n == 0 || n >= sizeof(a.sun_path))
		return n ? -ENAMETOOLONG : -EINVAL;
	memcpy(a.sun_path, path, n + 1);
	r = fl__unix_path_clear(path, SOCK_STREAM);
	if (r)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	if (chmod(path, mode) < 0 || listen(fd, backlog) < 0) {
		r = -errno;
		unlink(path);
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int fl__unix_accept(int lfd, int *ret_fd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

ssize_t fl__recv_nb(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(fd, buf, len, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

ssize_t fl__send_nb(int fd, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/* The device and inode of path (not followed), to tell our file from a
 * later one of the same name. */
int fl__lstat_id(const char *path, uint64_t *ret_dev, uint64_t *ret_ino)
{
	struct stat sb;

	if (lstat(path, &sb) < 0)
		return -errno;
	*ret_dev = sb.st_dev;
	*ret_ino = sb.st_ino;
	return 0;
}
