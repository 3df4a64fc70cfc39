// SPDX-License-Identifier: LGPL-2.1-or-later
/* Migration wire protocol: framing, checks, and blocking I/O with a stop fd. */
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <xxhash.h>

void fl__mig_chan_init(struct fl__mig_chan *ch, int fd, int stop_fd, const char *name,
		       const struct fl__logger *log)
{
	memset(ch, 0, sizeof(*ch));
	ch->fd = fd;
	ch->stop_fd = stop_fd;
	ch->abort_fd = -1;
	ch->name = name;
	ch->log = log;
	pthread_mutex_init(&ch->send_lock, NULL);
}

void fl__mig_chan_fini(struct fl__mig_chan *ch)
{
	pthread_mutex_destroy(&ch->send_lock);
	free(ch->buf);
	ch->buf = NULL;
	ch->cap = 0;
}

int fl__mig_refuse(struct fl__mig_chan *ch, int err, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fl__log(ch->log, FL_LOG_ERROR, "migrate: %s channel: %s (%s)", ch->name, why, strerror(-err));
	return err;
}

uint64_t fl__mig_csum(const void *page, size_t len)
{
	return XXH3_64bits(page, len);
}

bool fl__mig_is_zero(const void *page, size_t len)
{
	const uint64_t *w = page;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* Wait until fd is ready for `events`, or stop_fd is readable (-ECANCELED),
 * or timeout_ms (0: none) passes (-ETIMEDOUT). */
static int wait_ready(struct fl__mig_chan *ch, short events, unsigned timeout_ms)
{
	struct pollfd p[2] = {
		{ .fd = ch->fd, .events = events },
		{ .fd = ch->stop_fd, .events = POLLIN },
	};
	int r;

	r = fl__poll(p, ch->stop_fd >= 0 ? 2 : 1, timeout_ms ? (int)timeout_ms : -1);
	if (r < 0)
		return r;
	if (r == 0)
		return -ETIMEDOUT;
	if (ch->stop_fd >= 0 && (p[1].revents & POLLIN))
		return -ECANCELED;
	return 0;
}

int fl__mig_send(struct fl__mig_chan *ch, uint16_t type, uint32_t flags,
		 const void *a, size_t a_len, const void *b, size_t b_len)
{
	uint8_t hdr[FL_MIG_HDR_SIZE];
	struct iovec iov[3] = {
		{ hdr, sizeof(hdr) },
		{ (void *)a, a_len },
		{ (void *)b, b_len },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 3 };
	size_t left = sizeof(hdr) + a_len + b_len;
	int r = 0;

	if (a_len + b_len > FL_MIG_MAX_PAYLOAD)
		return -EMSGSIZE;
	fl__mig_put32(hdr, FL_MIG_MAGIC);
	hdr[4] = FL_MIG_VERSION & 0xff;
	hdr[5] = FL_MIG_VERSION >> 8;
	hdr[6] = (uint8_t)type;
	hdr[7] = (uint8_t)(type >> 8);
	fl__mig_put32(hdr + 8, (uint32_t)(a_len + b_len));
	fl__mig_put32(hdr + 12, flags);
	pthread_mutex_lock(&ch->send_lock);
	while (left) {
		ssize_t n = sendmsg(ch->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				/* No stop fd here: a message is never left half sent
				 * by our choice, only when the peer says it failed. */
				struct pollfd p[2] = {
					{ .fd = ch->fd, .events = POLLOUT },
					{ .fd = ch->abort_fd, .events = POLLIN },
				};

				r = fl__poll(p, ch->abort_fd >= 0 ? 2 : 1, -1);
				if (r < 0)
					break;
				r = 0;
				if (ch->abort_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
				    !(p[0].revents & POLLOUT)) {
					r = -EPIPE;
					break;
				}
				continue;
			}
			r = errno == EPIPE ? -ECONNRESET : -errno;
			break;
		}
		left -= (size_t)n;
		atomic_fetch_add(&ch->bytes_sent, (uint64_t)n);
		while (n > 0 && msg.msg_iovlen) {
			if ((size_t)n >= msg.msg_iov->iov_len) {
				n -= (ssize_t)msg.msg_iov->iov_len;
				msg.msg_iov++;
				msg.msg_iovlen--;
			} else {
				msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + n;
				msg.msg_iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	pthread_mutex_unlock(&ch->send_lock);
	return r;
}

void fl__mig_send_error(struct fl__mig_chan *ch, int err)
{
	uint8_t m[FL_MIG_HDR_SIZE + 4];

	/* One try, no wait: the peer may be gone or hung, and the caller is
	 * on its way out. 20 bytes fit any socket buffer that is not full. */
	fl__mig_put32(m, FL_MIG_MAGIC);
	m[4] = FL_MIG_VERSION & 0xff;
	m[5] = FL_MIG_VERSION >> 8;
	m[6] = FL_MIG_ERROR;
	m[7] = 0;
	fl__mig_put32(m + 8, 4);
	fl__mig_put32(m + 12, 0);
	fl__mig_put32(m + 16, (uint32_t)(err < 0 ? -err : err));
	pthread_mutex_lock(&ch->send_lock);
	(void)!send(ch->fd, m, sizeof(m), MSG_NOSIGNAL | MSG_DONTWAIT);
	pthread_mutex_unlock(&ch->send_lock);
}

/* Read exactly len bytes. first: EOF before any byte is -ECONNRESET (a
 * close between messages), otherwise a message cut short: -EBADMSG. */
static int recv_full(struct fl__mig_chan *ch, void *buf, size_t len, unsigned timeout_ms, bool first)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(ch->fd, p + got, len - got, MSG_DONTWAIT);
		int r;

		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0) {
			if (first && got == 0)
				return -ECONNRESET;
			return fl__mig_refuse(ch, -EBADMSG, "message cut short: %zu of %zu bytes", got, len);
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		/* The deadline is for the peer's silence between messages; a
		 * message begun is waited for as long, again. */
		r = wait_ready(ch, POLLIN, timeout_ms);
		if (r)
			return r;
	}
	return 0;
}

/* A PAGE's bytes may go to the page sink: the prefix first, to say where. */
static int recv_payload(struct fl__mig_chan *ch, uint16_t type, uint32_t length, unsigned timeout_ms)
{
	void *sink = NULL;
	int r;

	ch->staged = NULL;
	if (type != FL_MIG_PAGE || !ch->page_sink || length <= FL_MIG_PAGE_PREFIX)
		return recv_full(ch, ch->buf, length, timeout_ms, false);
	r = recv_full(ch, ch->buf, FL_MIG_PAGE_PREFIX, timeout_ms, false);
	if (r)
		return r;
	sink = ch->page_sink(ch->page_sink_ctx, ch->buf, length - FL_MIG_PAGE_PREFIX);
	r = recv_full(ch, sink ? sink : ch->buf + FL_MIG_PAGE_PREFIX, length - FL_MIG_PAGE_PREFIX,
		      timeout_ms, false);
	if (!r)
		ch->staged = sink;
	return r;
}

int fl__mig_recv(struct fl__mig_chan *ch, unsigned timeout_ms, struct fl__mig_hdr *ret_hdr)
{
	uint8_t hdr[FL_MIG_HDR_SIZE];
	uint32_t magic, length;
	uint16_t version, type;
	int r;

	r = recv_full(ch, hdr, sizeof(hdr), timeout_ms, true);
	if (r)
		return r;
	magic = fl__mig_get32(hdr);
	version = (uint16_t)(hdr[4] | hdr[5] << 8);
	type = (uint16_t)(hdr[6] | hdr[7] << 8);
	length = fl__mig_get32(hdr + 8);
	if (magic != FL_MIG_MAGIC)
		return fl__mig_refuse(ch, -EPROTO, "bad magic 0x%08x: not a faultline migration peer", magic);
	if (version != FL_MIG_VERSION)
		return fl__mig_refuse(ch, -EPROTO, "protocol version %u, this side speaks %u", version,
				      FL_MIG_VERSION);
	if (type < FL_MIG_LAYOUT || type > FL_MIG_ERROR)
		return fl__mig_refuse(ch, -EPROTO, "unknown message type %u", type);
	if (length > FL_MIG_MAX_PAYLOAD)
		return fl__mig_refuse(ch, -EBADMSG, "message of %u bytes, more than %u", length,
				      FL_MIG_MAX_PAYLOAD);
	if (length > ch->cap) {
		uint8_t *nb = realloc(ch->buf, length);

		if (!nb)
			return -ENOMEM;
		ch->buf = nb;
		ch->cap = length;
	}
	r = recv_payload(ch, type, length, timeout_ms);
	if (r == -ECONNRESET)
		r = -EBADMSG;
	if (r)
		return r;
	ret_hdr->type = type;
	ret_hdr->length = length;
	ret_hdr->flags = fl__mig_get32(hdr + 12);
	if (type == FL_MIG_ERROR) {
		uint32_t e;

		if (length != 4)
			return fl__mig_refuse(ch, -EBADMSG, "ERROR of %u bytes", length);
		e = fl__mig_get32(ch->buf);
		if (e == 0 || e > 4095)
			return fl__mig_refuse(ch, -EPROTO, "ERROR with errno %u", e);
		fl__log(ch->log, FL_LOG_ERROR, "migrate: %s channel: the peer failed: %s", ch->name,
			strerror((int)e));
		return -(int)e;
	}
	return 0;
}

int64_t fl__mig_page_index(const struct fl__mig_range *ranges, unsigned n, uint64_t addr,
			   unsigned *ret_range)
{
	for (unsigned i = 0; i < n; i++) {
		const struct fl__mig_range *rg = &ranges[i];

		if (addr < rg->start || addr - rg->start >= rg->len)
			continue;
		if ((addr - rg->start) % rg->page_size)
			return -ERANGE;
		if (ret_range)
			*ret_range = i;
		return (int64_t)(rg->first + (addr - rg->start) / rg->page_size);
	}
	return -ERANGE;
}

int fl__mig_layout_check(struct fl__mig_range *ranges, unsigned n, uint64_t *ret_total)
{
	uint64_t total = 0;

	if (n == 0 || n > FL_MIGRATE_MAX_RANGES)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		struct fl__mig_range *rg = &ranges[i];
		uint64_t want = rg->mem == FL_MEM_HUGETLB ? FL_HPAGE_SIZE : FL_PAGE_SIZE;

		if (rg->mem != FL_MEM_ANON && rg->mem != FL_MEM_SHMEM && rg->mem != FL_MEM_HUGETLB)
			return -EINVAL;
		if (rg->page_size != want)
			return -EINVAL;
		if (!rg->len || rg->start % want || rg->len % want || rg->start + rg->len < rg->start ||
		    rg->start + rg->len > (1ull << 56))
			return -ERANGE;
		if (i && rg->start < ranges[i - 1].start + ranges[i - 1].len)
			return -ERANGE;
		rg->first = total;
		rg->npages = rg->len / want;
		total += rg->npages;
	}
	*ret_total = total;
	return 0;
}
