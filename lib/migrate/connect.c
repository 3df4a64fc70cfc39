// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Connection helpers: the two TCP connections of a migration, made in a
 * fixed order (bulk, then urgent) so that the accepting side can tell them
 * apart; the HELLO that follows catches a mix-up.
 */
#include "wire.h"

#include <faultline/migrate.h>

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

static int accept_one(int listen_fd, uint64_t deadline_ns, int *ret_fd)
{
	for (;;) {
		int r = fl__tcp_accept(listen_fd, ret_fd);

		if (r != -EAGAIN && r != -EINTR && r != -ECONNABORTED)
			return r;
		r = fl__wait_fd(listen_fd, POLLIN, -1, deadline_ns, 0);
		if (r)
			return r;
	}
}

int fl_migrate_accept(int listen_fd, unsigned timeout_ms, int *ret_bulk_fd, int *ret_urgent_fd)
{
	uint64_t deadline = timeout_ms ? fl__now_ns() + timeout_ms * 1000000ull : 0;
	int bulk, urgent, r;

	if (listen_fd < 0 || !ret_bulk_fd || !ret_urgent_fd)
		return -EINVAL;
	r = accept_one(listen_fd, deadline, &bulk);
	if (r)
		return r;
	r = accept_one(listen_fd, deadline, &urgent);
	if (r) {
		fl__close(bulk);
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
