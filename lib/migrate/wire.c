// SPDX-License-Identifier: LGPL-2.1-or-later
/* Migration wire protocol: framing, checks, and blocking I/O with a stop fd. */
#include "wire.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
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
	fl__mig_chan_replace(ch, -1, false);
	pthread_mutex_destroy(&ch->send_lock);
	free(ch->buf);
	ch->buf = NULL;
	ch->cap = 0;
	free(ch->rbuf);
	ch->rbuf = NULL;
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

	/* A signal is not the peer's doing: wait again (the callers bound
	 * the whole by their deadlines). */
	do
		r = fl__poll(p, ch->stop_fd >= 0 ? 2 : 1, timeout_ms ? (int)timeout_ms : -1);
	while (r == -EINTR);
	if (r < 0)
		return r;
	if (r == 0)
		return -ETIMEDOUT;
	if (ch->stop_fd >= 0 && (p[1].revents & POLLIN))
		return -ECANCELED;
	return 0;
}

/* Wait until fd is writable, abort_fd readable (-EPIPE) or the channel's
 * send timeout passes without progress (-ETIMEDOUT). */
static int wait_writable(struct fl__mig_chan *ch)
{
	struct pollfd p[2] = {
		{ .fd = ch->fd, .events = POLLOUT },
		{ .fd = ch->abort_fd, .events = POLLIN },
	};
	int r = fl__poll(p, ch->abort_fd >= 0 ? 2 : 1, ch->timeout_ms ? (int)ch->timeout_ms : -1);

	if (r < 0)
		return r == -EINTR ? 0 : r;
	if (r == 0)
		return fl__mig_refuse(ch, -ETIMEDOUT, "the peer took nothing for %u ms", ch->timeout_ms);
	if (ch->abort_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) && !(p[0].revents & POLLOUT))
		return -EPIPE;
	return 0;
}

/* Send the iovecs in full: sendmsg on a plain socket, record by record
 * through the session with TLS. */
static int send_iov(struct fl__mig_chan *ch, struct iovec *iov, int cnt)
{
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };

	while (msg.msg_iovlen) {
		ssize_t n;
		int r;

		if (!msg.msg_iov->iov_len) {
			msg.msg_iov++;
			msg.msg_iovlen--;
			continue;
		}
		if (ch->fd < 0)
			return -ENOTCONN;
		if (ch->tls) {
			/* After EAGAIN GnuTLS wants the same buffer again: it is. */
			n = fl__tls_send(ch->tls, msg.msg_iov->iov_base, msg.msg_iov->iov_len);
		} else {
			n = sendmsg(ch->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0)
				n = errno == EWOULDBLOCK ? -EAGAIN : errno == EPIPE ? -ECONNRESET : -errno;
		}
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN) {
			/* No stop fd here: a message is never left half sent by
			 * our choice, only when the peer failed or went silent. */
			r = wait_writable(ch);
			if (r)
				return r;
			continue;
		}
		if (n < 0)
			return (int)n;
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
	return 0;
}

void fl__mig_put_hdr(uint8_t *hdr, uint16_t type, uint32_t length, uint32_t flags)
{
	fl__mig_put32(hdr, FL_MIG_MAGIC);
	hdr[4] = FL_MIG_VERSION & 0xff;
	hdr[5] = FL_MIG_VERSION >> 8;
	hdr[6] = (uint8_t)type;
	hdr[7] = (uint8_t)(type >> 8);
	fl__mig_put32(hdr + 8, length);
	fl__mig_put32(hdr + 12, flags);
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
	int r;

	if (a_len + b_len > FL_MIG_MAX_PAYLOAD)
		return -EMSGSIZE;
	fl__mig_put_hdr(hdr, type, (uint32_t)(a_len + b_len), flags);
	pthread_mutex_lock(&ch->send_lock);
	r = send_iov(ch, iov, 3);
	pthread_mutex_unlock(&ch->send_lock);
	return r;
}

int fl__mig_send_iov(struct fl__mig_chan *ch, struct iovec *iov, int cnt)
{
	int r;

	pthread_mutex_lock(&ch->send_lock);
	r = send_iov(ch, iov, cnt);
	pthread_mutex_unlock(&ch->send_lock);
	return r;
}

void fl__mig_send_error(struct fl__mig_chan *ch, int err)
{
	uint8_t m[FL_MIG_HDR_SIZE + 4];

	/* One try, no wait: the peer may be gone or hung, and the caller is
	 * on its way out. 20 bytes fit any socket buffer that is not full. A
	 * send in progress (maybe blocked) is not waited for: ERROR in the
	 * middle of its message would garble the stream anyway. */
	fl__mig_put_hdr(m, FL_MIG_ERROR, 4, 0);
	fl__mig_put32(m + 16, (uint32_t)(err < 0 ? -err : err));
	if (pthread_mutex_trylock(&ch->send_lock))
		return;
	if (ch->fd >= 0) {
		if (ch->tls)
			(void)fl__tls_send(ch->tls, m, sizeof(m));
		else
			(void)!send(ch->fd, m, sizeof(m), MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	pthread_mutex_unlock(&ch->send_lock);
}

/* 256 KiB: 60 PAGE messages per recv(), several 16 KiB TLS records. */
#define RBUF_SIZE (256u << 10)

/* How long a message of `length` bytes may take once its first byte came:
 * the channel's timeout (10 s when it has none) for every MiB, and once. */
static uint64_t msg_budget_ns(unsigned timeout_ms, uint64_t length)
{
	return (uint64_t)(timeout_ms ? timeout_ms : 10000) * 1000000ull * (1 + length / (1u << 20));
}

/* The largest payload a type may have: checked before the payload is
 * read, so that a peer cannot make this side allocate or wait for 64 MiB
 * it had no reason to send. */
static uint32_t max_length(uint16_t type)
{
	switch (type) {
	case FL_MIG_LAYOUT:
		return 8 + FL_MIGRATE_MAX_RANGES * FL_MIG_RANGE_SIZE;
	case FL_MIG_PAGE:
		return FL_MIG_PAGE_PREFIX + FL_HPAGE_SIZE;
	case FL_MIG_ROUND:
		return 8;
	case FL_MIG_REQUEST:
		return 8;
	case FL_MIG_RESUMED:
	case FL_MIG_DONE:
	case FL_MIG_CANCEL:
		return 0;
	case FL_MIG_ERROR:
		return 4;
	case FL_MIG_HELLO:
	case FL_MIG_HELLO_ACK:
		return FL_MIG_HELLO_SIZE;
	default:	/* SWITCHOVER, RECEIVED: bitmaps, checked with the layout */
		return FL_MIG_MAX_PAYLOAD;
	}
}

/* Read exactly len bytes, from what an earlier recv() brought first. A
 * remainder as large as the buffer goes straight to its place. first: EOF
 * before any byte is -ECONNRESET (a close between messages), otherwise a
 * message cut short: -EBADMSG. */
static int recv_full(struct fl__mig_chan *ch, void *buf, size_t len, unsigned timeout_ms, bool first)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		bool direct = len - got >= RBUF_SIZE;
		uint8_t *into;
		size_t want;
		ssize_t n;
		int r;

		if (ch->rpos < ch->rlen) {
			size_t take = FL_MIN(len - got, ch->rlen - ch->rpos);

			memcpy(p + got, ch->rbuf + ch->rpos, take);
			ch->rpos += take;
			got += take;
			continue;
		}
		if (ch->fd < 0)
			return -ENOTCONN;
		if (!direct && !ch->rbuf && !(ch->rbuf = malloc(RBUF_SIZE)))
			direct = true;
		into = direct ? p + got : ch->rbuf;
		want = direct ? len - got : RBUF_SIZE;
		if (ch->tls) {
			n = fl__tls_recv(ch->tls, into, want);
		} else {
			n = recv(ch->fd, into, want, MSG_DONTWAIT);
			if (n < 0)
				n = errno == EWOULDBLOCK ? -EAGAIN : -errno;
		}
		if (n > 0) {
			if (!ch->msg_deadline_ns)
				ch->msg_deadline_ns = fl__now_ns() + msg_budget_ns(timeout_ms, 0);
			if (direct) {
				got += (size_t)n;
			} else {
				ch->rpos = 0;
				ch->rlen = (size_t)n;
			}
			continue;
		}
		if (n == 0) {
			if (first && got == 0)
				return -ECONNRESET;
			ch->cut = true;
			return fl__mig_refuse(ch, -EBADMSG, "message cut short: %zu of %zu bytes", got, len);
		}
		if (n == -EINTR)
			continue;
		if (n != -EAGAIN)
			return (int)n;
		/* timeout_ms bounds the peer's silence between messages; a
		 * message begun must be complete by its deadline. */
		if (first && got == 0 && !ch->msg_deadline_ns) {
			r = wait_ready(ch, POLLIN, timeout_ms);
		} else {
			uint64_t now = fl__now_ns();

			if (!ch->msg_deadline_ns)	/* begun from the buffer */
				ch->msg_deadline_ns = now + msg_budget_ns(timeout_ms, 0);
			if (now >= ch->msg_deadline_ns)
				return fl__mig_refuse(ch, -ETIMEDOUT, "a message still incomplete after %llu ms",
						      (unsigned long long)(msg_budget_ns(timeout_ms, len) / 1000000));
			r = wait_ready(ch, POLLIN,
				       (unsigned)FL_MIN((ch->msg_deadline_ns - now) / 1000000 + 1, UINT32_MAX));
			if (r == -ETIMEDOUT)
				continue;	/* refused above, with the cause */
		}
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

	ch->cut = ch->peer_failed = false;
	ch->msg_deadline_ns = 0;
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
	if (type < FL_MIG_LAYOUT || type > FL_MIG_TYPE_MAX)
		return fl__mig_refuse(ch, -EPROTO, "unknown message type %u", type);
	if (length > FL_MIG_MAX_PAYLOAD)
		return fl__mig_refuse(ch, -EBADMSG, "message of %u bytes, more than %u", length,
				      FL_MIG_MAX_PAYLOAD);
	if (length > max_length(type))
		return fl__mig_refuse(ch, -EBADMSG, "message %u of %u bytes, more than its type holds (%u)",
				      type, length, max_length(type));
	/* From the header's arrival, the payload's own budget. */
	if (length)
		ch->msg_deadline_ns = fl__now_ns() + msg_budget_ns(timeout_ms, length);
	if (length > ch->cap) {
		uint8_t *nb = realloc(ch->buf, length);

		if (!nb)
			return -ENOMEM;
		ch->buf = nb;
		ch->cap = length;
	}
	r = recv_payload(ch, type, length, timeout_ms);
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
		/* Its reason, whatever it is, is not a cut of ours. */
		ch->peer_failed = true;
		return -(int)e;
	}
	return 0;
}

bool fl__mig_is_cut(const struct fl__mig_chan *ch, int err)
{
	if (ch && ch->peer_failed)
		return false;
	return err == -ECONNRESET || err == -EPIPE || err == -ETIMEDOUT || err == -ENOTCONN ||
	       err == -ECONNABORTED || err == -EHOSTUNREACH || err == -ENETUNREACH || (ch && ch->cut);
}

void fl__mig_chan_replace(struct fl__mig_chan *ch, int fd, bool owned)
{
	pthread_mutex_lock(&ch->send_lock);
	if (ch->tls) {
		fl__tls_sess_free(ch->tls);
		ch->tls = NULL;
	}
	if (ch->owned && ch->fd >= 0)
		fl__close(ch->fd);
	ch->fd = fd;
	ch->owned = owned;
	ch->cut = ch->peer_failed = false;
	/* What the old connection brought is not the new one's. */
	ch->rpos = ch->rlen = 0;
	pthread_mutex_unlock(&ch->send_lock);
}

int fl__mig_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
		return -errno;
	return 0;
}

void fl__mig_chan_shutdown(struct fl__mig_chan *ch)
{
	int fd = ch->fd;

	if (fd >= 0)
		(void)shutdown(fd, SHUT_RDWR);
}

bool fl__mig_chan_readable(struct fl__mig_chan *ch)
{
	struct pollfd p = { .fd = ch->fd, .events = POLLIN };

	if (ch->rpos < ch->rlen)
		return true;
	if (ch->fd < 0)
		return false;
	if (ch->tls && fl__tls_pending(ch->tls))
		return true;
	return fl__poll(&p, 1, 0) > 0;
}

int fl__mig_chan_tls(struct fl__mig_chan *ch, struct fl__tls_cfg *cfg, bool server,
		     const char *server_name, uint64_t deadline_ns)
{
	struct fl__link l = { .fd = ch->fd };
	const char *why = "";
	int r;

	if (!cfg)
		return 0;
	r = fl__tls_handshake(&l, cfg, server, server_name, ch->stop_fd, deadline_ns, &why);
	if (r) {
		/* The session goes, the fd stays: it is the caller's (or the
		 * channel's, closed when replaced). */
		if (l.tls)
			fl__tls_sess_free(l.tls);
		if (r == -ECANCELED)
			return r;
		if (r != -EACCES && r != -EPROTO && r != -ETIMEDOUT && r != -ECONNRESET && r != -ENOMEM)
			r = -EPROTO;
		return fl__mig_refuse(ch, r, "TLS handshake as %s failed: %s", server ? "server" : "client",
				      why && *why ? why : r == -ETIMEDOUT ? "timed out" : strerror(-r));
	}
	ch->tls = l.tls;
	return 0;
}

static void put_hello(uint8_t *p, const struct fl__mig_hello *h)
{
	fl__mig_put64(p, h->session);
	fl__mig_put32(p + 8, h->channel);
	fl__mig_put32(p + 12, h->epoch);
}

static int get_hello(struct fl__mig_chan *ch, const struct fl__mig_hdr *h, uint16_t want,
		     struct fl__mig_hello *ret)
{
	if (h->type != want)
		return fl__mig_refuse(ch, -EPROTO, "message %u where %s was due", h->type,
				      want == FL_MIG_HELLO ? "HELLO" : "HELLO_ACK");
	if (h->flags || h->length != FL_MIG_HELLO_SIZE)
		return fl__mig_refuse(ch, -EPROTO, "a bad %s (%u bytes, flags 0x%x)",
				      want == FL_MIG_HELLO ? "HELLO" : "HELLO_ACK", h->length, h->flags);
	ret->session = fl__mig_get64(ch->buf);
	ret->channel = fl__mig_get32(ch->buf + 8);
	ret->epoch = fl__mig_get32(ch->buf + 12);
	return 0;
}

int fl__mig_hello_client(struct fl__mig_chan *ch, const struct fl__mig_hello *hello, unsigned timeout_ms)
{
	uint8_t p[FL_MIG_HELLO_SIZE];
	struct fl__mig_hello ack;
	struct fl__mig_hdr h;
	int r;

	put_hello(p, hello);
	r = fl__mig_send(ch, FL_MIG_HELLO, 0, p, sizeof(p), NULL, 0);
	if (!r)
		r = fl__mig_recv(ch, timeout_ms, &h);
	if (!r)
		r = get_hello(ch, &h, FL_MIG_HELLO_ACK, &ack);
	if (!r && memcmp(&ack, hello, sizeof(ack)))
		r = fl__mig_refuse(ch, -EPROTO, "HELLO_ACK does not echo the HELLO");
	return r;
}

int fl__mig_hello_recv(struct fl__mig_chan *ch, unsigned timeout_ms, struct fl__mig_hello *ret)
{
	struct fl__mig_hdr h;
	int r = fl__mig_recv(ch, timeout_ms, &h);

	return r ? r : get_hello(ch, &h, FL_MIG_HELLO, ret);
}

int fl__mig_hello_ack(struct fl__mig_chan *ch, const struct fl__mig_hello *hello)
{
	uint8_t p[FL_MIG_HELLO_SIZE];

	put_hello(p, hello);
	return fl__mig_send(ch, FL_MIG_HELLO_ACK, 0, p, sizeof(p), NULL, 0);
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
	/* Its bitmaps (SWITCHOVER, RECEIVED) must fit in a message. */
	if (total > 8ull * (FL_MIG_MAX_PAYLOAD - 16))
		return -ERANGE;
	*ret_total = total;
	return 0;
}
