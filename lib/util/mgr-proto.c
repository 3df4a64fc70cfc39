// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The manager protocol (see mgr-proto.h): encoders and decoders over byte
 * buffers, and one-packet send/receive over a SOCK_SEQPACKET socket. The
 * decoders are what a hostile client talks to: fuzzed in test/fuzz.
 */
#include "flutil.h"
#include "mgr-proto.h"
#include "le.h"

#include <poll.h>
#include <unistd.h>
#include <sys/socket.h>

void fl__mgr_hdr_encode(uint8_t *out, uint16_t type, uint32_t length, uint32_t seq)
{
	st32(out, FL_MGR_MAGIC);
	st16(out + 4, FL_MGR_VERSION);
	st16(out + 6, type);
	st32(out + 8, length);
	st32(out + 12, seq);
}

int fl__mgr_hdr_decode(const uint8_t *in, size_t len, struct fl__mgr_hdr *ret)
{
	struct fl__mgr_hdr h;

	if (len < FL_MGR_HDR_SIZE)
		return -EPROTO;
	h.magic = ld32(in);
	h.version = ld16(in + 4);
	h.type = ld16(in + 6);
	h.length = ld32(in + 8);
	h.seq = ld32(in + 12);
	if (h.magic != FL_MGR_MAGIC)
		return -EPROTO;
	if (h.version != FL_MGR_VERSION)
		return -EPROTONOSUPPORT;
	if (h.type < FL_MGR_HELLO || h.type > FL_MGR_TYPE_MAX)
		return -EPROTO;
	if (h.length > FL_MGR_MAX_PAYLOAD)
		return -EMSGSIZE;
	*ret = h;
	return 0;
}

int fl__mgr_hello_encode(uint8_t *out, const struct fl__mgr_hello *m)
{
	st32(out, m->role);
	st32(out + 4, m->flags);
	st64(out + 8, m->token);
	return 16;
}

int fl__mgr_hello_decode(const uint8_t *p, size_t len, struct fl__mgr_hello *ret)
{
	if (len != 16)
		return -EBADMSG;
	ret->role = ld32(p);
	ret->flags = ld32(p + 4);
	ret->token = ld64(p + 8);
	if (ret->role > FL_MGR_ROLE_OBSERVER || ret->flags)
		return -EBADMSG;
	return 0;
}

int fl__mgr_welcome_encode(uint8_t *out, const struct fl__mgr_welcome *m)
{
	st32(out, m->pid);
	st32(out + 4, m->max_ranges);
	st64(out + 8, m->token);
	st64(out + 16, m->max_bytes);
	return 24;
}

int fl__mgr_welcome_decode(const uint8_t *p, size_t len, struct fl__mgr_welcome *ret)
{
	if (len != 24)
		return -EBADMSG;
	ret->pid = ld32(p);
	ret->max_ranges = ld32(p + 4);
	ret->token = ld64(p + 8);
	ret->max_bytes = ld64(p + 16);
	if (!ret->pid || !ret->token)
		return -EBADMSG;
	return 0;
}

bool fl__mgr_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > FL_MGR_MAX_NAME || name[0] == '/' || name[n - 1] == '/')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch < 0x20 || ch == 0x7f)
			return false;
		if (ch == '/' && name[i + 1] == '/')
			return false;
	}
	/* No ".." path component anywhere. */
	for (const char *c = name; c; c = strchr(c, '/')) {
		if (*c == '/')
			c++;
		if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == 0))
			return false;
	}
	return true;
}

int fl__mgr_open_encode(uint8_t *out, const struct fl__mgr_open *m)
{
	size_t n = strnlen(m->name, sizeof(m->name));

	if (!n || n > FL_MGR_MAX_NAME)
		return -EINVAL;
	st32(out, m->kind);
	st32(out + 4, m->region);
	st16(out + 8, (uint16_t)n);
	st16(out + 10, m->flags);
	memcpy(out + 12, m->name, n);
	return (int)(12 + n);
}

int fl__mgr_open_decode(const uint8_t *p, size_t len, struct fl__mgr_open *ret)
{
	size_t n;

	if (len < 13)
		return -EBADMSG;
	ret->kind = ld32(p);
	ret->region = ld32(p + 4);
	n = ld16(p + 8);
	ret->flags = ld16(p + 10);
	if (n == 0 || n > FL_MGR_MAX_NAME || len != 12 + n)
		return -EBADMSG;
	if (ret->kind != FL_MGR_SRC_IMAGE && ret->kind != FL_MGR_SRC_TEMPLATE && ret->kind != FL_MGR_SRC_SEGMENT)
		return -EBADMSG;
	if (ret->flags & ~FL_MGR_OPEN_RESUME)
		return -EBADMSG;
	if (memchr(p + 12, 0, n))
		return -EBADMSG;
	memcpy(ret->name, p + 12, n);
	ret->name[n] = 0;
	return fl__mgr_name_ok(ret->name) ? 0 : -EBADMSG;
}

int fl__mgr_source_encode(uint8_t *out, const struct fl__mgr_source *m)
{
	st32(out, m->id);
	st32(out + 4, m->mem);
	st64(out + 8, m->length);
	st32(out + 16, m->page_size);
	st32(out + 20, 0);
	return 24;
}

int fl__mgr_source_decode(const uint8_t *p, size_t len, struct fl__mgr_source *ret)
{
	if (len != 24)
		return -EBADMSG;
	ret->id = ld32(p);
	ret->mem = ld32(p + 4);
	ret->length = ld64(p + 8);
	ret->page_size = ld32(p + 16);
	if (!ret->id || ret->mem > 2 || !ret->length || ld32(p + 20) ||
	    (ret->page_size != 4096 && ret->page_size != (2u << 20)))
		return -EBADMSG;
	return 0;
}

int fl__mgr_attach_encode(uint8_t *out, size_t cap, const struct fl__mgr_attach *m)
{
	size_t need = 16 + (size_t)m->nranges * FL_MGR_RANGE_SIZE;

	if (!m->nranges || m->nranges > FL_MGR_MAX_RANGES || need > cap)
		return -EINVAL;
	st64(out, m->features);
	st32(out + 8, m->nranges);
	st32(out + 12, m->flags);
	for (uint32_t i = 0; i < m->nranges; i++) {
		uint8_t *q = out + 16 + (size_t)i * FL_MGR_RANGE_SIZE;
		const struct fl__mgr_range *r = &m->ranges[i];
		st64(q, r->addr);
		st64(q + 8, r->len);
		st64(q + 16, r->offset);
		st32(q + 24, r->source);
		st16(q + 28, r->mem);
		st16(q + 30, r->flags);
		st64(q + 32, 0);
	}
	return (int)need;
}

int fl__mgr_attach_decode(const uint8_t *p, size_t len, struct fl__mgr_range *ranges,
			  struct fl__mgr_attach *ret)
{
	if (len < 16)
		return -EBADMSG;
	ret->features = ld64(p);
	ret->nranges = ld32(p + 8);
	ret->flags = ld32(p + 12);
	if (!ret->nranges || ret->nranges > FL_MGR_MAX_RANGES || ret->flags ||
	    len != 16 + (size_t)ret->nranges * FL_MGR_RANGE_SIZE)
		return -EBADMSG;
	for (uint32_t i = 0; i < ret->nranges; i++) {
		const uint8_t *q = p + 16 + (size_t)i * FL_MGR_RANGE_SIZE;
		struct fl__mgr_range *r = &ranges[i];
		r->addr = ld64(q);
		r->len = ld64(q + 8);
		r->offset = ld64(q + 16);
		r->source = ld32(q + 24);
		r->mem = ld16(q + 28);
		r->flags = ld16(q + 30);
		if ((r->flags & ~FL_MGR_RANGE_BEACON) || ld64(q + 32) || r->mem > 2 || !r->len ||
		    r->addr + r->len < r->addr || r->offset + r->len < r->offset)
			return -EBADMSG;
	}
	ret->ranges = ranges;
	return 0;
}

int fl__mgr_u64_encode(uint8_t *out, uint64_t v)
{
	st64(out, v);
	return 8;
}

int fl__mgr_u64_decode(const uint8_t *p, size_t len, uint64_t *ret)
{
	if (len != 8)
		return -EBADMSG;
	*ret = ld64(p);
	return 0;
}

int fl__mgr_error_encode(uint8_t *out, int err, const char *msg)
{
	size_t n = msg ? strnlen(msg, FL_MGR_MAX_ERRMSG) : 0;

	if (err <= 0 || err > 4095)
		return -EINVAL;
	st32(out, (uint32_t)err);
	st32(out + 4, 0);
	memcpy(out + 8, msg ? msg : "", n);
	return (int)(8 + n);
}

int fl__mgr_error_decode(const uint8_t *p, size_t len, int *ret_err, char *msg)
{
	uint32_t e;
	size_t n;

	if (len < 8 || len > 8 + FL_MGR_MAX_ERRMSG)
		return -EBADMSG;
	e = ld32(p);
	if (!e || e > 4095 || ld32(p + 4))
		return -EBADMSG;
	n = len - 8;
	memcpy(msg, p + 8, n);
	msg[n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)msg[i] < 0x20)
			msg[i] = '?';
	*ret_err = (int)e;
	return 0;
}

/* ---- packets ------------------------------------------------------------------ */

int fl__mgr_send(int sock, uint16_t type, uint32_t seq, const void *payload, size_t len, int fd)
{
	uint8_t hdr[FL_MGR_HDR_SIZE];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, len } };
	size_t sent;
	int r;

	if (len > FL_MGR_MAX_PAYLOAD)
		return -EMSGSIZE;
	fl__mgr_hdr_encode(hdr, type, (uint32_t)len, seq);
	r = fl__send_fd(sock, iov, len ? 2 : 1, fd, &sent);
	if (r)
		return r;
	return sent == sizeof(hdr) + len ? 0 : -EMSGSIZE;
}

int fl__mgr_recv(int sock, uint8_t *buf, struct fl__mgr_hdr *ret_hdr, int *ret_fd, int timeout_ms)
{
	struct iovec iov = { buf, FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			      .msg_controllen = sizeof(u.buf) };
	int fd = -1, r;
	ssize_t n;

	*ret_fd = -1;
	{
		struct pollfd pfd = { .fd = sock, .events = POLLIN };
		do
			r = fl__poll(&pfd, 1, timeout_ms);	/* -1: wait as long as it takes */
		while (r == -EINTR);
		if (r < 0)
			return r;
		if (r == 0)
			return -ETIMEDOUT;
	}
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	fd = fl__cmsg_take_fd(&msg);
	if (n == 0) {
		fl__close(fd);
		return -ECONNRESET;
	}
	r = 0;
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		r = -EMSGSIZE;
	else if ((r = fl__mgr_hdr_decode(buf, (size_t)n, ret_hdr)) == 0 &&
		 (size_t)n != FL_MGR_HDR_SIZE + ret_hdr->length)
		r = -EBADMSG;	/* a truncated or padded message */
	if (r) {
		fl__close(fd);
		return r;
	}
	*ret_fd = fd;
	return (int)ret_hdr->length;
}

/* ---- shared spaces ------------------------------------------------------- */

bool fl__mgr_space_name_ok(const char *name)
{
	size_t n = strnlen(name, FL_MGR_MAX_SPACE_NAME + 1);

	if (!n || n > FL_MGR_MAX_SPACE_NAME || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* A name of n bytes at p (no NUL inside) into ret (n + 1 bytes);
 * -EINVAL: well formed, but not a space name. */
static int take_name(const uint8_t *p, size_t n, char *ret)
{
	if (!n || n > FL_MGR_MAX_SPACE_NAME || memchr(p, 0, n))
		return -EBADMSG;
	memcpy(ret, p, n);
	ret[n] = 0;
	return fl__mgr_space_name_ok(ret) ? 0 : -EINVAL;
}

int fl__mgr_space_open_encode(uint8_t *out, const struct fl__mgr_space_open *m)
{
	size_t n = strnlen(m->name, sizeof(m->name));

	if (!n || n > FL_MGR_MAX_SPACE_NAME)
		return -EINVAL;
	st64(out, m->version);
	st32(out + 8, m->flags);
	st16(out + 12, (uint16_t)n);
	st16(out + 14, 0);
	memcpy(out + 16, m->name, n);
	return (int)(16 + n);
}

int fl__mgr_space_open_decode(const uint8_t *p, size_t len, struct fl__mgr_space_open *ret)
{
	size_t n;

	if (len < 17)
		return -EBADMSG;
	ret->version = ld64(p);
	ret->flags = ld32(p + 8);
	n = ld16(p + 12);
	if (ld16(p + 14) || len != 16 + n || (ret->flags & ~(FL_MGR_SPACE_RDONLY | FL_MGR_SPACE_PRIVATE)))
		return -EBADMSG;
	return take_name(p + 16, n, ret->name);
}

int fl__mgr_space_encode(uint8_t *out, const struct fl__mgr_space *m)
{
	uint8_t *q = out + 16;

	if (!m->nsegments || m->nsegments > FL_MGR_MAX_SEGMENTS || m->nroots > FL_MGR_MAX_ROOTS)
		return -EINVAL;
	st64(out, m->version);
	st16(out + 8, (uint16_t)m->nsegments);
	st16(out + 10, (uint16_t)m->nroots);
	st32(out + 12, 0);
	for (uint32_t i = 0; i < m->nsegments; i++, q += 24) {
		st64(q, m->segments[i].base);
		st64(q + 8, m->segments[i].length);
		st32(q + 16, m->segments[i].mem);
		st32(q + 20, 0);
	}
	for (uint32_t i = 0; i < m->nroots; i++, q += 56) {
		memset(q, 0, 48);
		memcpy(q, m->roots[i].name, strnlen(m->roots[i].name, FL_MGR_MAX_SPACE_NAME));
		st64(q + 48, m->roots[i].value);
	}
	return (int)(q - out);
}

int fl__mgr_space_decode(const uint8_t *p, size_t len, struct fl__mgr_space *ret)
{
	const uint8_t *q = p + 16;

	if (len < 16)
		return -EBADMSG;
	ret->version = ld64(p);
	ret->nsegments = ld16(p + 8);
	ret->nroots = ld16(p + 10);
	if (ld32(p + 12) || !ret->nsegments || ret->nsegments > FL_MGR_MAX_SEGMENTS ||
	    ret->nroots > FL_MGR_MAX_ROOTS || len != 16 + 24 * (size_t)ret->nsegments + 56 * (size_t)ret->nroots)
		return -EBADMSG;
	for (uint32_t i = 0; i < ret->nsegments; i++, q += 24) {
		ret->segments[i].base = ld64(q);
		ret->segments[i].length = ld64(q + 8);
		ret->segments[i].mem = ld32(q + 16);
		if (ld32(q + 20) || (ret->segments[i].mem != 1 && ret->segments[i].mem != 2) ||
		    !ret->segments[i].length || ret->segments[i].base % 4096 || ret->segments[i].length % 4096 ||
		    ret->segments[i].base + ret->segments[i].length < ret->segments[i].base)
			return -EBADMSG;
	}
	for (uint32_t i = 0; i < ret->nroots; i++, q += 56) {
		/* After the name, only NUL padding. */
		size_t n = strnlen((const char *)q, 48);
		for (size_t k = n; k < 48; k++)
			if (q[k])
				return -EBADMSG;
		if (take_name(q, n, ret->roots[i].name))
			return -EBADMSG;
		ret->roots[i].value = ld64(q + 48);
	}
	return 0;
}

int fl__mgr_space_name_encode(uint8_t *out, const char *name)
{
	size_t n = strnlen(name, FL_MGR_MAX_SPACE_NAME + 1);

	if (!n || n > FL_MGR_MAX_SPACE_NAME)
		return -EINVAL;
	memcpy(out, name, n);
	return (int)n;
}

int fl__mgr_space_name_decode(const uint8_t *p, size_t len, char *ret_name)
{
	return take_name(p, len, ret_name);
}
