// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Connection helpers: the two TCP connections of a migration, made in a
 * fixed order (bulk, then urgent) so that the accepting side can tell them
 * apart; the HELLO that follows catches a mix-up.
 */
#include "wire.h"

#include <faultline/migrate.h>
#include <sys/socket.h>

int fl_migrate_listen(const char *addr, int *ret_fd, int *ret_port)
{
	int fd, port, r;

	if (!addr || !ret_fd)
		return -EINVAL;
	r = fl__tcp_listen(addr, 16, &fd, &port);
	if (r)
		return r;
	*ret_fd = fd;
	if (ret_port)
		*ret_port = port;
	return 0;
}

/* Closed already (its connector gave up: a failed attempt, a reset): such
 * a connection left in the queue would pair the next ones wrongly. */
static bool dead(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int accept_one(int listen_fd, uint64_t deadline_ns, int *ret_fd)
{
	for (;;) {
		int r = fl__tcp_accept(listen_fd, ret_fd);

		if (!r && dead(*ret_fd)) {
			fl__close(*ret_fd);
			continue;
		}
		if (r != -EAGAIN && r != -EINTR && r != -ECONNABORTED)
			return r;
		r = fl__wait_fd(listen_fd, POLLIN, -1, deadline_ns, 0);
		if (r)
			return r;
	}
}

/* Once the bulk connection is in, its urgent one follows at once; a short
 * timeout must not split the pair (the next call would take the urgent
 * connection for a bulk one). */
#define PAIR_WAIT_MS 5000u

int fl_migrate_accept(int listen_fd, unsigned timeout_ms, int *ret_bulk_fd, int *ret_urgent_fd)
{
	uint64_t deadline = timeout_ms ? fl__now_ns() + timeout_ms * 1000000ull : 0;
	int bulk, urgent, r;

	if (listen_fd < 0 || !ret_bulk_fd || !ret_urgent_fd)
		return -EINVAL;
	for (;;) {
		r = accept_one(listen_fd, deadline, &bulk);
		if (r)
			return r;
		r = accept_one(listen_fd, FL_MAX(deadline, fl__now_ns() + PAIR_WAIT_MS * 1000000ull), &urgent);
		if (!r)
			break;
		fl__close(bulk);
		/* Without a limit, a lone connection (a port scan, a peer that
		 * died between its two connects) is dropped, not waited on. */
		if (r != -ETIMEDOUT || deadline)
			return r;
	}
	*ret_bulk_fd = bulk;
	*ret_urgent_fd = urgent;
	return 0;
}

int fl_migrate_connect(const char *addr, unsigned timeout_ms, int *ret_bulk_fd, int *ret_urgent_fd)
{
	uint64_t deadline = fl__now_ns() + (timeout_ms ? timeout_ms : 10000) * 1000000ull;
	int bulk, urgent, r;

	if (!addr || !ret_bulk_fd || !ret_urgent_fd)
		return -EINVAL;
	/* In order, each connected before the next: the listener's queue
	 * then holds bulk first. */
	r = fl__tcp_connect(addr, deadline, &bulk);
	if (r)
		return r;
	r = fl__tcp_connect(addr, deadline, &urgent);
	if (r) {
		fl__close(bulk);
		return r;
	}
	*ret_bulk_fd = bulk;
	*ret_urgent_fd = urgent;
	return 0;
}
