// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The page server's transport (see tls.h): non-blocking TCP sockets with
 * deadlines, and the links over them, plain or TLS. The TLS session itself
 * is the backend's (tls.c with GnuTLS, tls-disabled.c without): this file
 * is the same in every build, so plain TCP works the same with or without
 * TLS support.
 *
 * Sockets are non-blocking and every wait is a poll(2) on the socket and an
 * optional stop eventfd, so no thread ever blocks past its deadline or past
 * a stop.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- waiting ------------------------------------------------------------- */

static int poll_timeout(uint64_t deadline_ns, uint64_t idle_end_ns)
{
	uint64_t end = deadline_ns, now;

	if (idle_end_ns && (!end || idle_end_ns < end))
		end = idle_end_ns;
	if (!end)
		return -1;
	now = fl__now_ns();
	if (end <= now)
		return 0;
	return (int)FL_MIN((end - now + 999999) / 1000000, (uint64_t)INT_MAX);
}

int fl__wait_fd(int fd, short events, int stop_fd, uint64_t deadline_ns, uint64_t idle_end_ns)
{
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = fd, .events = events },
			{ .fd = stop_fd, .events = POLLIN },
		};
		int timeout = poll_timeout(deadline_ns, idle_end_ns);
		int r = fl__poll(p, stop_fd >= 0 ? 2 : 1, timeout);

		if (r == -EINTR)
			continue;
		if (r < 0)
			return r;
		if (stop_fd >= 0 && p[1].revents)
			return -ECANCELED;
		if (p[0].revents)
			return 0;
		if (r == 0 && timeout >= 0 && poll_timeout(deadline_ns, idle_end_ns) == 0)
			return -ETIMEDOUT;
	}
}

int fl__sleep_until(uint64_t deadline_ns, int stop_fd)
{
	for (;;) {
		struct pollfd p = { .fd = stop_fd, .events = POLLIN };
		int timeout = poll_timeout(deadline_ns, 0);
		int r;

		if (timeout == 0)
			return 0;
		r = fl__poll(&p, stop_fd >= 0 ? 1 : 0, timeout);
		if (r == -EINTR)
			continue;
		if (r > 0)
			return -ECANCELED;
		if (r < 0)
			return r;
	}
}

int fl__random(void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- addresses and sockets ------------------------------------------------ */

int fl__addr_split(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon, *h = addr;
	size_t hl;

	if (!addr)
		return -EINVAL;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		h = addr + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - addr);
		if (memchr(addr, ':', hl))
			return -EINVAL; /* a bare IPv6 address: needs [brackets] */
	}
	if (hl >= hlen || strlen(colon + 1) >= plen || !colon[1] || strlen(colon + 1) > 5)
		return -EINVAL;
	for (const char *c = colon + 1; *c; c++)
		if (*c < '0' || *c > '9')
			return -EINVAL;
	if (atoi(colon + 1) > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

static int eai_errno(int e, int sys_errno)
{
	switch (e) {
	case EAI_SYSTEM:
		return sys_errno ? -sys_errno : -EIO;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_FAMILY:
	case EAI_SERVICE:
	case EAI_BADFLAGS:
		return -EINVAL;
	default:
		return -EHOSTUNREACH; /* no such host */
	}
}

static int resolve(const char *host, const char *port, bool passive, struct addrinfo **ret)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
	};
	int e;

	errno = 0;
	e = getaddrinfo(host && host[0] ? host : NULL, port, &hints, ret);
	return e ? eai_errno(e, errno) : 0;
}

static void tune_socket(int fd)
{
	int one = 1;
	/* Requests and page runs are latency bound: never wait to coalesce. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

int fl__tcp_listen(const char *addr, int backlog, int *ret_fd, int *ret_port)
{
	char host[256], port[8];
	struct addrinfo *ai, *a;
	int r, err = -EADDRNOTAVAIL;

	r = fl__addr_split(addr, host, sizeof(host), port, sizeof(port));
	if (r)
		return r;
	r = resolve(host, port, true, &ai);
	if (r)
		return r == -EHOSTUNREACH ? -EADDRNOTAVAIL : r;
	/* Without a host, prefer the IPv6 wildcard: dual stack serves both. */
	for (int pass = 0; pass < 2; pass++) {
		for (a = ai; a; a = a->ai_next) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			int fd, one = 1, zero = 0;

			if (!host[0] && (pass == 0) != (a->ai_family == AF_INET6))
				continue;
			if (host[0] && pass == 1)
				continue;
			fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
			if (fd < 0) {
				err = -errno;
				continue;
			}
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (a->ai_family == AF_INET6 && !host[0])
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
			if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, backlog) ||
			    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
				err = -errno;
				close(fd);
				continue;
			}
			freeaddrinfo(ai);
			*ret_fd = fd;
			*ret_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
							     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
			return 0;
		}
	}
	freeaddrinfo(ai);
	return err;
}

int fl__tcp_accept(int lfd, int *ret_fd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	tune_socket(fd);
	*ret_fd = fd;
	return 0;
}

static int connect_one(const struct addrinfo *a, uint64_t deadline_ns, int *ret_fd)
{
	socklen_t sl = sizeof(int);
	int fd, r, soerr = 0;

	fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
	if (fd < 0)
		return -errno;
	tune_socket(fd);
	if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
		goto done;
	if (errno != EINPROGRESS) {
		r = -errno;
		close(fd);
		return r;
	}
	r = fl__wait_fd(fd, POLLOUT, -1, deadline_ns, 0);
	if (r) {
		close(fd);
		return r;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
		r = soerr ? -soerr : -errno;
		close(fd);
		return r;
	}
done:
	*ret_fd = fd;
	return 0;
}

int fl__tcp_connect(const char *addr, uint64_t deadline_ns, int *ret_fd)
{
	char host[256], port[8];
	struct addrinfo *ai;
	int r, err = -EHOSTUNREACH;

	r = fl__addr_split(addr, host, sizeof(host), port, sizeof(port));
	if (r)
		return r;
	if (!host[0] || atoi(port) == 0)
		return -EINVAL;
	r = resolve(host, port, false, &ai);
	if (r)
		return r;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		err = connect_one(a, deadline_ns, ret_fd);
		if (!err || err == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(ai);
	return err;
}

/* ---- links ------------------------------------------------------------------ */

int fl__link_open(struct fl__link *l, int fd, struct fl__tls_cfg *cfg, bool server,
		  const char *server_name, int stop_fd, uint64_t deadline_ns, const char **ret_why)
{
	int r;

	if (ret_why)
		*ret_why = "";
	l->fd = fd;
	l->tls = NULL;
	if (!cfg)
		return 0;
	r = fl__tls_handshake(l, cfg, server, server_name, stop_fd, deadline_ns, ret_why);
	if (r)
		fl__link_close(l);
	return r;
}

int fl__link_read(struct fl__link *l, void *buf, size_t len, int stop_fd, uint64_t deadline_ns,
		  unsigned idle_ms)
{
	uint8_t *p = buf;
	uint64_t idle_end = idle_ms ? fl__now_ns() + idle_ms * 1000000ull : 0;

	if (l->fd < 0)
		return -ENOTCONN;
	while (len) {
		ssize_t n;
		int r;

		if (l->tls) {
			n = fl__tls_recv(l->tls, p, len);
		} else {
			n = recv(l->fd, p, len, 0);
			if (n < 0)
				n = errno == EWOULDBLOCK ? -EAGAIN : -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN) {
			r = fl__wait_fd(l->fd, POLLIN, stop_fd, deadline_ns, idle_end);
			if (r)
				return r;
			continue;
		}
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
		if (idle_ms)
			idle_end = fl__now_ns() + idle_ms * 1000000ull;
	}
	return 0;
}

int fl__link_write(struct fl__link *l, const void *buf, size_t len, int stop_fd, uint64_t deadline_ns)
{
	const uint8_t *p = buf;

	if (l->fd < 0)
		return -ENOTCONN;
	while (len) {
		ssize_t n;
		int r;

		if (l->tls) {
			n = fl__tls_send(l->tls, p, len);
		} else {
			n = send(l->fd, p, len, MSG_NOSIGNAL);
			if (n < 0)
				n = errno == EWOULDBLOCK ? -EAGAIN : errno == EPIPE ? -ECONNRESET : -errno;
		}
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN) {
			r = fl__wait_fd(l->fd, POLLOUT, stop_fd, deadline_ns, 0);
			if (r)
				return r;
			continue;
		}
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool fl__link_readable(struct fl__link *l)
{
	struct pollfd p = { .fd = l->fd, .events = POLLIN };

	if (l->fd < 0)
		return false;
	if (l->tls && fl__tls_pending(l->tls))
		return true;
	return fl__poll(&p, 1, 0) > 0;
}

void fl__link_shutdown(struct fl__link *l)
{
	if (l->fd >= 0)
		shutdown(l->fd, SHUT_RDWR);
}

void fl__link_close(struct fl__link *l)
{
	if (l->tls) {
		fl__tls_sess_free(l->tls);
		l->tls = NULL;
	}
	if (l->fd >= 0)
		fl__close(l->fd);
	l->fd = -1;
}
