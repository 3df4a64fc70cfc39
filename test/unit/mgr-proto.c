// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * lib/mgr-proto.c: the manager protocol (faultlined <-> clients). The
 * encoders write the layout mgr-proto.h documents (checked byte by byte),
 * every message round-trips, every decoder refuses what the header comment
 * rules out (wrong lengths, reserved bits, bad kinds, zero and oversized
 * counts, names that leave the image directory or hide bytes), and
 * fl__mgr_send / fl__mgr_recv over a SOCK_SEQPACKET pair pass a working
 * fd, refuse truncated, padded and oversized packets without leaking
 * the fds they carried, close a hostile peer's extra fds, and report EOF
 * and timeouts.
 */
#include "harness.h"
#include "mgr-proto.h"
#include "le.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXP FL_MGR_MAX_PAYLOAD
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static uint8_t buf[FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD + 64];	/* encoders write here */
static uint8_t rbuf[FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD];	/* fl__mgr_recv's buffer */
static struct fl__mgr_range ranges[FL_MGR_MAX_RANGES];

/* ---- helpers ------------------------------------------------------------- */

static void seqpacket_pair(int sv[2])
{
	int sz = 1 << 20;

	T_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %s",
		 strerror(errno));
	/* Room for a packet over FL_MGR_MAX_PAYLOAD whatever wmem_default is. */
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	(void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

/* One packet of len bytes with nfds fds as one SCM_RIGHTS message. */
static ssize_t raw_send(int sock, const void *data, size_t len, const int *fds, unsigned nfds)
{
	struct iovec iov = { (void *)data, len };
	union {
		char b[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	T_ASSERT(nfds <= 16);
	if (nfds) {
		struct cmsghdr *c;
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.b;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

/* Open file descriptors of this process (the case's forked child). */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	T_ASSERT(d, "/proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool same_file(int a, int b)
{
	struct stat sa, sb;

	T_ASSERT(fstat(a, &sa) == 0 && fstat(b, &sb) == 0);
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A full packet: a header saying `length`, then `n` payload bytes. */
static size_t packet(uint8_t *out, uint16_t type, uint32_t length, uint32_t seq, size_t n)
{
	fl__mgr_hdr_encode(out, type, length, seq);
	memset(out + FL_MGR_HDR_SIZE, 0x5a, n);
	return FL_MGR_HDR_SIZE + n;
}

/* An OPEN payload of the given name bytes (n of them, NULs and all). */
static int open_decode_name(const char *name, size_t n, struct fl__mgr_open *m)
{
	uint8_t p[12 + 512];

	T_ASSERT(n <= 512);
	st32(p, FL_MGR_SRC_IMAGE);
	st32(p + 4, 0);
	st16(p + 8, (uint16_t)n);
	st16(p + 10, 0);
	memcpy(p + 12, name, n);
	return fl__mgr_open_decode(p, 12 + n, m);
}

static const struct fl__mgr_range range0 = {
	.addr = 0x7f0000000000ull, .len = 1u << 21, .offset = 4096, .source = 1, .mem = 1,
};

/* ---- encoding: the documented layout --------------------------------------- */

static int test_layout(void *arg)
{
	static const uint8_t w_hdr[16] = { 'F', 'L', 'M', 'D', 1, 0, 5, 0,
					 0x34, 0x12, 0, 0, 0xd4, 0xc3, 0xb2, 0xa1 };
	static const uint8_t w_hello[16] = { 1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1 };
	static const uint8_t w_welcome[24] = { 0x39, 0x30, 0, 0, 0, 4, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
					     0, 0, 0, 0x40, 0, 0, 0, 0 };
	static const uint8_t w_open[15] = { 2, 0, 0, 0, 9, 0, 0, 0, 3, 0, 1, 0, 'a', '/', 'b' };
	static const uint8_t w_source[24] = { 7, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0,
					    0, 0, 0x20, 0, 0, 0, 0, 0 };
	static const uint8_t w_error[11] = { 2, 0, 0, 0, 0, 0, 0, 0, 'n', 'o', 'p' };
	struct fl__mgr_hello mh = { .role = FL_MGR_ROLE_OBSERVER, .token = 0x0102030405060708ull };
	struct fl__mgr_welcome mw = { .pid = 12345, .max_ranges = 1024, .token = 2, .max_bytes = 1ull << 30 };
	struct fl__mgr_open mo = { .kind = FL_MGR_SRC_TEMPLATE, .region = 9, .flags = FL_MGR_OPEN_RESUME,
				   .name = "a/b" };
	struct fl__mgr_source ms = { .id = 7, .mem = 2, .length = 4ull << 20, .page_size = 2u << 20 };
	struct fl__mgr_range r = { .addr = 0x1111111111111111ull, .len = 0x2222ull, .offset = 0x3333ull,
				   .source = 0x44444444u, .mem = 2, .flags = FL_MGR_RANGE_BEACON };
	struct fl__mgr_attach ma = { .features = 0xf0e0d0c0b0a09080ull, .nranges = 1, .ranges = &r };

	T_ASSERT_EQ(FL_MGR_MAGIC, 'F' | 'L' << 8 | 'M' << 16 | 'D' << 24);
	fl__mgr_hdr_encode(buf, FL_MGR_ATTACH, 0x1234, 0xa1b2c3d4u);
	T_ASSERT(memcmp(buf, w_hdr, 16) == 0);
	T_ASSERT_EQ(fl__mgr_hello_encode(buf, &mh), 16);
	T_ASSERT(memcmp(buf, w_hello, 16) == 0);
	T_ASSERT_EQ(fl__mgr_welcome_encode(buf, &mw), 24);
	T_ASSERT(memcmp(buf, w_welcome, 24) == 0);
	T_ASSERT_EQ(fl__mgr_open_encode(buf, &mo), 15);
	T_ASSERT(memcmp(buf, w_open, 15) == 0);
	memset(buf, 0xff, 24);	/* the reserved word is written as 0 */
	T_ASSERT_EQ(fl__mgr_source_encode(buf, &ms), 24);
	T_ASSERT(memcmp(buf, w_source, 24) == 0);
	memset(buf, 0xff, 56);
	T_ASSERT_EQ(fl__mgr_attach_encode(buf, 56, &ma), 56);
	T_ASSERT_EQ(ld64(buf), 0xf0e0d0c0b0a09080ull);
	T_ASSERT_EQ(ld32(buf + 8), 1);
	T_ASSERT_EQ(ld32(buf + 12), 0);
	T_ASSERT(ld64(buf + 16) == 0x1111111111111111ull);
	T_ASSERT_EQ(ld64(buf + 24), 0x2222);
	T_ASSERT_EQ(ld64(buf + 32), 0x3333);
	T_ASSERT_EQ(ld32(buf + 40), 0x44444444u);
	T_ASSERT_EQ(ld16(buf + 44), 2);
	T_ASSERT_EQ(ld16(buf + 46), FL_MGR_RANGE_BEACON);
	T_ASSERT_EQ(ld64(buf + 48), 0);
	T_ASSERT_EQ(fl__mgr_u64_encode(buf, 0x8877665544332211ull), 8);
	T_ASSERT(buf[0] == 0x11 && buf[7] == 0x88);
	memset(buf, 0xff, 16);
	T_ASSERT_EQ(fl__mgr_error_encode(buf, ENOENT, "nop"), 11);
	T_ASSERT(memcmp(buf, w_error, 11) == 0);
	return T_PASS;
}

/* ---- round trips ------------------------------------------------------------- */

static int test_roundtrip_hdr(void *arg)
{
	struct fl__mgr_hdr h;

	for (uint16_t t = FL_MGR_HELLO; t <= FL_MGR_TYPE_MAX; t++) {
		const uint32_t lens[] = { 0, 1, 24, MAXP - 1, MAXP };
		for (unsigned i = 0; i < ARRAY_SIZE(lens); i++) {
			memset(&h, 0, sizeof(h));
			fl__mgr_hdr_encode(buf, t, lens[i], 0xfffffff0u + t);
			T_ASSERT_EQ(fl__mgr_hdr_decode(buf, FL_MGR_HDR_SIZE, &h), 0);
			T_ASSERT_EQ(h.magic, FL_MGR_MAGIC);
			T_ASSERT_EQ(h.version, FL_MGR_VERSION);
			T_ASSERT_EQ(h.type, t);
			T_ASSERT_EQ(h.length, lens[i]);
			T_ASSERT_EQ(h.seq, 0xfffffff0u + t);
			/* More bytes behind the header are the payload's business. */
			T_ASSERT_EQ(fl__mgr_hdr_decode(buf, sizeof(buf), &h), 0);
		}
	}
	return T_PASS;
}

static int test_roundtrip_hello_welcome(void *arg)
{
	const uint64_t tokens[] = { 0, 1, 0x8000000000000000ull, UINT64_MAX };

	for (unsigned role = 0; role <= FL_MGR_ROLE_OBSERVER; role++)
		for (unsigned i = 0; i < ARRAY_SIZE(tokens); i++) {
			struct fl__mgr_hello a = { .role = role, .token = tokens[i] }, b;
			int n = fl__mgr_hello_encode(buf, &a);
			T_ASSERT_EQ(n, 16);
			memset(&b, 0xee, sizeof(b));
			T_ASSERT_EQ(fl__mgr_hello_decode(buf, (size_t)n, &b), 0);
			T_ASSERT(b.role == a.role && b.flags == 0 && b.token == a.token);
		}
	for (unsigned i = 1; i < ARRAY_SIZE(tokens); i++) {
		struct fl__mgr_welcome a = { .pid = (uint32_t)(i == 3 ? UINT32_MAX : i), .max_ranges = FL_MGR_MAX_RANGES,
					     .token = tokens[i], .max_bytes = tokens[4 - i] },
				       b;
		int n = fl__mgr_welcome_encode(buf, &a);
		T_ASSERT_EQ(n, 24);
		T_ASSERT_EQ(fl__mgr_welcome_decode(buf, (size_t)n, &b), 0);
		T_ASSERT(b.pid == a.pid && b.max_ranges == a.max_ranges && b.token == a.token &&
			 b.max_bytes == a.max_bytes);
	}
	return T_PASS;
}

static int test_roundtrip_open(void *arg)
{
	const char *names[] = { "a", "db.img", "images/2024/db.img", "...", "..a", "a..", "a/.../b",
				"./a", ".hidden/x", "with space", "caf\xc3\xa9" };
	struct fl__mgr_open a = { 0 }, b;

	for (unsigned i = 0; i < ARRAY_SIZE(names) + 1; i++) {
		if (i < ARRAY_SIZE(names)) {
			strcpy(a.name, names[i]);
		} else {
			memset(a.name, 'n', FL_MGR_MAX_NAME);	/* the longest name */
			a.name[FL_MGR_MAX_NAME] = 0;
		}
		for (uint32_t kind = FL_MGR_SRC_IMAGE; kind <= FL_MGR_SRC_TEMPLATE; kind++) {
			int n;
			a.kind = kind;
			a.region = 0xabcdef01u + kind;
			a.flags = kind == FL_MGR_SRC_TEMPLATE ? FL_MGR_OPEN_RESUME : 0;
			n = fl__mgr_open_encode(buf, &a);
			T_ASSERT_EQ(n, 12 + strlen(a.name));
			memset(&b, 0xee, sizeof(b));
			T_ASSERT_EQ(fl__mgr_open_decode(buf, (size_t)n, &b), 0);
			T_ASSERT(b.kind == a.kind && b.region == a.region && b.flags == a.flags);
			T_ASSERT(strcmp(b.name, a.name) == 0, "'%s' came back as '%s'", a.name, b.name);
		}
	}
	/* The encoder refuses an empty name. */
	a.name[0] = 0;
	T_ASSERT_EQ(fl__mgr_open_encode(buf, &a), -EINVAL);
	return T_PASS;
}

static int test_roundtrip_source(void *arg)
{
	for (uint32_t mem = 0; mem <= 2; mem++)
		for (unsigned big = 0; big <= 1; big++) {
			struct fl__mgr_source a = { .id = big ? UINT32_MAX : 1, .mem = mem,
						    .length = big ? UINT64_MAX : 4096,
						    .page_size = big ? 2u << 20 : 4096 },
					      b;
			int n = fl__mgr_source_encode(buf, &a);
			T_ASSERT_EQ(n, 24);
			T_ASSERT_EQ(fl__mgr_source_decode(buf, (size_t)n, &b), 0);
			T_ASSERT(b.id == a.id && b.mem == a.mem && b.length == a.length &&
				 b.page_size == a.page_size);
		}
	return T_PASS;
}

static int test_roundtrip_attach(void *arg)
{
	static struct fl__mgr_range in[FL_MGR_MAX_RANGES];
	const uint32_t counts[] = { 1, 2, 7, FL_MGR_MAX_RANGES };
	struct fl__mgr_attach a = { .features = 0x1ffff, .ranges = in }, b;

	for (uint32_t i = 0; i < FL_MGR_MAX_RANGES; i++) {
		in[i].addr = 0x100000000ull + (uint64_t)i * (4u << 20);
		in[i].len = (uint64_t)(i + 1) * 4096;
		in[i].offset = i == 5 ? UINT64_MAX - in[i].len : (uint64_t)i << 30;	/* just fits */
		in[i].source = i % 5;
		in[i].mem = (uint16_t)(i % 3);
		in[i].flags = i % 11 == 1 ? FL_MGR_RANGE_BEACON : 0;
	}
	in[3].addr = UINT64_MAX - in[3].len;	/* ends at the top of the address space */
	for (unsigned c = 0; c < ARRAY_SIZE(counts); c++) {
		size_t need = 16 + (size_t)counts[c] * FL_MGR_RANGE_SIZE;
		int n;
		a.nranges = counts[c];
		T_ASSERT_EQ(fl__mgr_attach_encode(buf, need - 1, &a), -EINVAL);
		n = fl__mgr_attach_encode(buf, need, &a);
		T_ASSERT_EQ(n, need);
		T_ASSERT((size_t)n <= MAXP);
		memset(&b, 0, sizeof(b));
		T_ASSERT_EQ(fl__mgr_attach_decode(buf, (size_t)n, ranges, &b), 0);
		T_ASSERT(b.features == a.features && b.nranges == a.nranges && b.flags == 0);
		T_ASSERT(b.ranges == ranges);
		for (uint32_t i = 0; i < b.nranges; i++)
			T_ASSERT(memcmp(&b.ranges[i], &in[i], sizeof(in[i])) == 0, "range %u", i);
	}
	/* The encoder refuses no ranges, too many, and a short buffer. */
	a.nranges = 0;
	T_ASSERT_EQ(fl__mgr_attach_encode(buf, sizeof(buf), &a), -EINVAL);
	a.nranges = FL_MGR_MAX_RANGES + 1;
	T_ASSERT_EQ(fl__mgr_attach_encode(buf, sizeof(buf), &a), -EINVAL);
	a.nranges = 1;
	T_ASSERT_EQ(fl__mgr_attach_encode(buf, 0, &a), -EINVAL);
	return T_PASS;
}

static int test_roundtrip_u64_error(void *arg)
{
	const uint64_t vals[] = { 0, 1, 0xfeedfacecafebeefull, UINT64_MAX };
	char msg[FL_MGR_MAX_ERRMSG + 1], longmsg[FL_MGR_MAX_ERRMSG + 50];
	uint64_t v;
	int e, n;

	for (unsigned i = 0; i < ARRAY_SIZE(vals); i++) {
		T_ASSERT_EQ(fl__mgr_u64_encode(buf, vals[i]), 8);
		T_ASSERT_EQ(fl__mgr_u64_decode(buf, 8, &v), 0);
		T_ASSERT(v == vals[i]);
	}
	n = fl__mgr_error_encode(buf, ENOENT, "no such image");
	T_ASSERT_EQ(n, 8 + 13);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, (size_t)n, &e, msg), 0);
	T_ASSERT(e == ENOENT && strcmp(msg, "no such image") == 0);
	/* no message, and the edges of errno */
	n = fl__mgr_error_encode(buf, 1, NULL);
	T_ASSERT_EQ(n, 8);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, (size_t)n, &e, msg), 0);
	T_ASSERT(e == 1 && msg[0] == 0);
	n = fl__mgr_error_encode(buf, 4095, "");
	T_ASSERT_EQ(n, 8);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, (size_t)n, &e, msg), 0);
	T_ASSERT_EQ(e, 4095);
	/* a message over the limit is cut to FL_MGR_MAX_ERRMSG */
	memset(longmsg, 'm', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = 0;
	n = fl__mgr_error_encode(buf, EIO, longmsg);
	T_ASSERT_EQ(n, 8 + FL_MGR_MAX_ERRMSG);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, (size_t)n, &e, msg), 0);
	T_ASSERT(e == EIO && strlen(msg) == FL_MGR_MAX_ERRMSG && msg[0] == 'm');
	/* the encoder refuses errno values outside 1..4095 */
	T_ASSERT_EQ(fl__mgr_error_encode(buf, 0, "x"), -EINVAL);
	T_ASSERT_EQ(fl__mgr_error_encode(buf, -EIO, "x"), -EINVAL);
	T_ASSERT_EQ(fl__mgr_error_encode(buf, 4096, "x"), -EINVAL);
	return T_PASS;
}

/* ---- the header refuses ------------------------------------------------------- */

static int test_hdr_reject(void *arg)
{
	struct fl__mgr_hdr h = { .seq = 0x1234 }, keep;

	fl__mgr_hdr_encode(buf, FL_MGR_HELLO, 16, 1);
	for (size_t n = 0; n < FL_MGR_HDR_SIZE; n++)
		T_ASSERT_EQ(fl__mgr_hdr_decode(buf, n, &h), -EPROTO);
	keep = h;
	/* magic */
	buf[0] = 'X';
	T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EPROTO);
	fl__mgr_hdr_encode(buf, FL_MGR_HELLO, 16, 1);
	st32(buf, 0x444d4c47u);
	T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EPROTO);
	st32(buf, 0x464c4d44u);	/* "FLMD" big-endian */
	T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EPROTO);
	/* version: another one is EPROTONOSUPPORT, the magic being right */
	fl__mgr_hdr_encode(buf, FL_MGR_HELLO, 16, 1);
	for (unsigned v = 0; v < 4; v++) {
		if (v == FL_MGR_VERSION)
			continue;
		st16(buf + 4, (uint16_t)v);
		T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EPROTONOSUPPORT);
	}
	st16(buf + 4, 0x0100);	/* 1 as big-endian */
	T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EPROTONOSUPPORT);
	/* type: 0 and anything past ERROR */
	fl__mgr_hdr_encode(buf, 0, 0, 1);
	T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EPROTO);
	fl__mgr_hdr_encode(buf, FL_MGR_TYPE_MAX + 1, 0, 1);
	T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EPROTO);
	fl__mgr_hdr_encode(buf, 0xffff, 0, 1);
	T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EPROTO);
	/* length */
	fl__mgr_hdr_encode(buf, FL_MGR_STATS_JSON, MAXP + 1, 1);
	T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EMSGSIZE);
	fl__mgr_hdr_encode(buf, FL_MGR_STATS_JSON, UINT32_MAX, 1);
	T_ASSERT_EQ(fl__mgr_hdr_decode(buf, 16, &h), -EMSGSIZE);
	/* A refused header leaves *ret alone. */
	T_ASSERT(memcmp(&h, &keep, sizeof(h)) == 0);
	return T_PASS;
}

/* ---- payload decoders refuse -------------------------------------------------- */

static int test_hello_reject(void *arg)
{
	struct fl__mgr_hello a = { .role = FL_MGR_ROLE_CLIENT, .token = 5 }, b;

	fl__mgr_hello_encode(buf, &a);
	T_ASSERT_EQ(fl__mgr_hello_decode(buf, 16, &b), 0);
	for (size_t n = 0; n < 40; n++)
		if (n != 16)
			T_ASSERT_EQ(fl__mgr_hello_decode(buf, n, &b), -EBADMSG);
	st32(buf, 2);	/* role */
	T_ASSERT_EQ(fl__mgr_hello_decode(buf, 16, &b), -EBADMSG);
	st32(buf, UINT32_MAX);
	T_ASSERT_EQ(fl__mgr_hello_decode(buf, 16, &b), -EBADMSG);
	st32(buf, 0);
	for (unsigned bit = 0; bit < 32; bit++) {	/* flags: all reserved */
		st32(buf + 4, 1u << bit);
		T_ASSERT_EQ(fl__mgr_hello_decode(buf, 16, &b), -EBADMSG);
	}
	return T_PASS;
}

static int test_welcome_reject(void *arg)
{
	struct fl__mgr_welcome a = { .pid = 10, .max_ranges = 1, .token = 3, .max_bytes = 0 }, b;

	fl__mgr_welcome_encode(buf, &a);
	T_ASSERT_EQ(fl__mgr_welcome_decode(buf, 24, &b), 0);
	for (size_t n = 0; n < 48; n++)
		if (n != 24)
			T_ASSERT_EQ(fl__mgr_welcome_decode(buf, n, &b), -EBADMSG);
	st32(buf, 0);	/* pid */
	T_ASSERT_EQ(fl__mgr_welcome_decode(buf, 24, &b), -EBADMSG);
	st32(buf, 10);
	st64(buf + 8, 0);	/* token */
	T_ASSERT_EQ(fl__mgr_welcome_decode(buf, 24, &b), -EBADMSG);
	return T_PASS;
}

static int test_open_reject(void *arg)
{
	struct fl__mgr_open a = { .kind = FL_MGR_SRC_IMAGE, .name = "img/a.fl" }, b;
	uint8_t p[12 + 300];
	int n;

	memset(p, 'q', sizeof(p));
	n = fl__mgr_open_encode(p, &a);

	T_ASSERT_EQ(n, 20);
	T_ASSERT_EQ(fl__mgr_open_decode(p, 20, &b), 0);
	/* lengths: short, and not 12 + name_len either way */
	for (size_t len = 0; len < sizeof(p); len++)
		if (len != 20)
			T_ASSERT_EQ(fl__mgr_open_decode(p, len, &b), -EBADMSG);
	/* name_len 0 and over the limit */
	st16(p + 8, 0);
	T_ASSERT_EQ(fl__mgr_open_decode(p, 12, &b), -EBADMSG);
	T_ASSERT_EQ(fl__mgr_open_decode(p, 13, &b), -EBADMSG);
	memset(p + 12, 'a', 256);
	st16(p + 8, 256);
	T_ASSERT_EQ(fl__mgr_open_decode(p, 12 + 256, &b), -EBADMSG);
	st16(p + 8, 255);
	T_ASSERT_EQ(fl__mgr_open_decode(p, 12 + 255, &b), 0);
	T_ASSERT_EQ(strlen(b.name), 255);
	st16(p + 8, 0xffff);
	T_ASSERT_EQ(fl__mgr_open_decode(p, sizeof(p), &b), -EBADMSG);
	/* kind */
	n = fl__mgr_open_encode(p, &a);
	for (uint32_t kind = 0; kind < 8; kind++) {
		st32(p, kind);
		T_ASSERT_EQ(fl__mgr_open_decode(p, (size_t)n, &b),
			    kind >= FL_MGR_SRC_IMAGE && kind <= FL_MGR_SRC_SEGMENT ? 0 : -EBADMSG);
	}
	st32(p, UINT32_MAX);
	T_ASSERT_EQ(fl__mgr_open_decode(p, (size_t)n, &b), -EBADMSG);
	st32(p, FL_MGR_SRC_IMAGE);
	/* flags: all but RESUME reserved */
	for (unsigned bit = 0; bit < 16; bit++) {
		st16(p + 10, (uint16_t)(1u << bit));
		T_ASSERT_EQ(fl__mgr_open_decode(p, (size_t)n, &b),
			    (1u << bit) == FL_MGR_OPEN_RESUME ? 0 : -EBADMSG);
	}
	return T_PASS;
}

static int test_open_names(void *arg)
{
	static const struct {
		const char *s;
		size_t n;
	} bad[] = {
#define N(x) { x, sizeof(x) - 1 }
		N(".."), N("../a"), N("a/.."), N("a/../b"), N("x/y/../../z"), N("a/b/.."),
		N("/abs"), N("/"), N("/a/b"),
		N("a//b"), N("a//"), N("a///b"),
		N("\x01" "a"), N("a\nb"), N("a\tb"), N("a\rb"), N("a\x1f"), N("a\x7f" "b"), N("\x1b[31m"),
		N("a\0b"), N("\0abc"), N("abc\0"), N("a/\0/b"),
#undef N
	};
	static const char *good[] = { "a", "...", "..a", "a..", "a/.../b", "./a", "a/./b", ".a/..b",
				      "x-1_2.img", "caf\xc3\xa9", "~/x", "a b" };
	struct fl__mgr_open m;
	char longname[FL_MGR_MAX_NAME + 2];

	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = open_decode_name(bad[i].s, bad[i].n, &m);
		T_ASSERT_EQ(r, -EBADMSG);
		if (!memchr(bad[i].s, 0, bad[i].n))
			T_ASSERT(!fl__mgr_name_ok(bad[i].s), "name_ok accepts bad name #%u", i);
	}
	for (unsigned i = 0; i < ARRAY_SIZE(good); i++) {
		T_ASSERT(fl__mgr_name_ok(good[i]), "'%s' refused", good[i]);
		T_ASSERT_EQ(open_decode_name(good[i], strlen(good[i]), &m), 0);
		T_ASSERT(strcmp(m.name, good[i]) == 0);
	}
	/* the empty name, and one over FL_MGR_MAX_NAME */
	T_ASSERT(!fl__mgr_name_ok(""));
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	T_ASSERT(!fl__mgr_name_ok(longname));
	longname[FL_MGR_MAX_NAME] = 0;
	T_ASSERT(fl__mgr_name_ok(longname));
	return T_PASS;
}

static int test_source_reject(void *arg)
{
	struct fl__mgr_source a = { .id = 1, .mem = 1, .length = 8192, .page_size = 4096 }, b;
	const uint32_t pages[] = { 0, 1, 2048, 8192, 1u << 20, 4u << 20, 1u << 30, UINT32_MAX };

	fl__mgr_source_encode(buf, &a);
	T_ASSERT_EQ(fl__mgr_source_decode(buf, 24, &b), 0);
	for (size_t n = 0; n < 48; n++)
		if (n != 24)
			T_ASSERT_EQ(fl__mgr_source_decode(buf, n, &b), -EBADMSG);
#define REJECT(stmt)                                                              \
	do {                                                                      \
		fl__mgr_source_encode(buf, &a);                                   \
		stmt;                                                             \
		T_ASSERT_EQ(fl__mgr_source_decode(buf, 24, &b), -EBADMSG);        \
	} while (0)
	REJECT(st32(buf, 0));			/* id 0 */
	REJECT(st32(buf + 4, 3));		/* mem */
	REJECT(st32(buf + 4, UINT32_MAX));
	REJECT(st64(buf + 8, 0));		/* length 0 */
	REJECT(st32(buf + 20, 1));		/* reserved */
	REJECT(st32(buf + 20, 0x80000000u));
	for (unsigned i = 0; i < ARRAY_SIZE(pages); i++)
		REJECT(st32(buf + 16, pages[i]));
#undef REJECT
	return T_PASS;
}

static int test_attach_reject(void *arg)
{
	struct fl__mgr_range two[2] = { range0, range0 };
	struct fl__mgr_attach a = { .features = 1, .nranges = 2, .ranges = two }, b;
	const size_t len = 16 + 2 * FL_MGR_RANGE_SIZE;

	two[1].addr += two[0].len;
	T_ASSERT_EQ(fl__mgr_attach_encode(buf, sizeof(buf), &a), len);
	T_ASSERT_EQ(fl__mgr_attach_decode(buf, len, ranges, &b), 0);
	/* lengths: short of the fixed part, and not 16 + 40 * nranges */
	for (size_t n = 0; n < len + 2 * FL_MGR_RANGE_SIZE; n++)
		if (n != len)
			T_ASSERT_EQ(fl__mgr_attach_decode(buf, n, ranges, &b), -EBADMSG);
#define REJECT(stmt)                                                                      \
	do {                                                                              \
		fl__mgr_attach_encode(buf, sizeof(buf), &a);                              \
		stmt;                                                                     \
		T_ASSERT_EQ(fl__mgr_attach_decode(buf, len, ranges, &b), -EBADMSG);       \
	} while (0)
	/* counts: 0, one off either way, over the limit, huge */
	REJECT(st32(buf + 8, 0));
	REJECT(st32(buf + 8, 1));
	REJECT(st32(buf + 8, 3));
	REJECT(st32(buf + 8, UINT32_MAX));
	for (unsigned bit = 0; bit < 32; bit++)	/* attach flags: all reserved */
		REJECT(st32(buf + 12, 1u << bit));
	/* per range, in the first and in the last */
	for (unsigned r = 0; r < 2; r++) {
		uint8_t *q = buf + 16 + r * FL_MGR_RANGE_SIZE;
		REJECT(st64(q + 8, 0));						/* len 0 */
		REJECT(st64(q, UINT64_MAX - 4095));				/* addr + len wraps */
		REJECT(st64(q + 16, UINT64_MAX - 4095));			/* offset + len wraps */
		REJECT(st16(q + 28, 3));					/* mem */
		REJECT(st16(q + 28, 0xffff));
		for (unsigned bit = 1; bit < 16; bit++)				/* range flags */
			REJECT(st16(q + 30, (uint16_t)(1u << bit)));
		for (unsigned k = 0; k < 8; k++)				/* reserved u64 */
			REJECT(q[32 + k] = 1);
	}
#undef REJECT
	/* Too many ranges, the length agreeing. */
	{
		size_t big = 16 + (size_t)(FL_MGR_MAX_RANGES + 1) * FL_MGR_RANGE_SIZE;
		static struct fl__mgr_range many[FL_MGR_MAX_RANGES];
		for (unsigned i = 0; i < FL_MGR_MAX_RANGES; i++)
			many[i] = range0;
		a.ranges = many;
		a.nranges = FL_MGR_MAX_RANGES;
		T_ASSERT_EQ(fl__mgr_attach_encode(buf, sizeof(buf), &a), big - FL_MGR_RANGE_SIZE);
		T_ASSERT_EQ(fl__mgr_attach_decode(buf, big - FL_MGR_RANGE_SIZE, ranges, &b), 0);
		memcpy(buf + big - FL_MGR_RANGE_SIZE, buf + 16, FL_MGR_RANGE_SIZE);
		st32(buf + 8, FL_MGR_MAX_RANGES + 1);
		T_ASSERT(big <= sizeof(buf));
		T_ASSERT_EQ(fl__mgr_attach_decode(buf, big, ranges, &b), -EBADMSG);
	}
	/* addr + len may not wrap: a range reaching 2^64 is refused, one short of it is not. */
	a.ranges = two;
	a.nranges = 2;
	two[0].addr = UINT64_MAX - two[0].len + 1;
	fl__mgr_attach_encode(buf, sizeof(buf), &a);
	T_ASSERT_EQ(fl__mgr_attach_decode(buf, len, ranges, &b), -EBADMSG);
	two[0].addr = UINT64_MAX - two[0].len;
	fl__mgr_attach_encode(buf, sizeof(buf), &a);
	T_ASSERT_EQ(fl__mgr_attach_decode(buf, len, ranges, &b), 0);
	return T_PASS;
}

static int test_u64_error_reject(void *arg)
{
	char msg[FL_MGR_MAX_ERRMSG + 1];
	uint64_t v;
	int e;

	fl__mgr_u64_encode(buf, 1);
	for (size_t n = 0; n < 20; n++)
		if (n != 8)
			T_ASSERT_EQ(fl__mgr_u64_decode(buf, n, &v), -EBADMSG);

	memset(buf, 'x', 8 + FL_MGR_MAX_ERRMSG + 8);
	st32(buf, EINVAL);
	st32(buf + 4, 0);
	for (size_t n = 0; n < 8; n++)
		T_ASSERT_EQ(fl__mgr_error_decode(buf, n, &e, msg), -EBADMSG);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 8 + FL_MGR_MAX_ERRMSG, &e, msg), 0);
	T_ASSERT_EQ(strlen(msg), FL_MGR_MAX_ERRMSG);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 8 + FL_MGR_MAX_ERRMSG + 1, &e, msg), -EBADMSG);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 8 + FL_MGR_MAX_ERRMSG + 8, &e, msg), -EBADMSG);
	st32(buf, 0);		/* errno */
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 10, &e, msg), -EBADMSG);
	st32(buf, 4096);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 10, &e, msg), -EBADMSG);
	st32(buf, (uint32_t)-EIO);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 10, &e, msg), -EBADMSG);
	st32(buf, 4095);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 10, &e, msg), 0);
	T_ASSERT_EQ(e, 4095);
	st32(buf + 4, 1);	/* reserved */
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 10, &e, msg), -EBADMSG);
	st32(buf + 4, 0x01000000u);
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 10, &e, msg), -EBADMSG);
	/* The text: control characters and NULs are shown as '?', it is terminated. */
	st32(buf + 4, 0);
	memcpy(buf + 8, "a\0b\nc\x1b\x7f" "d", 8);
	memset(msg, 'z', sizeof(msg));
	T_ASSERT_EQ(fl__mgr_error_decode(buf, 16, &e, msg), 0);
	T_ASSERT(memcmp(msg, "a?b?c?\x7f" "d", 9) == 0, "got '%s'", msg);
	return T_PASS;
}

/* ---- packets over SOCK_SEQPACKET ------------------------------------------------ */

static int test_send_recv_fd(void *arg)
{
	struct fl__mgr_source s = { .id = 3, .mem = 1, .length = 1u << 20, .page_size = 4096 }, got;
	struct fl__mgr_hdr h;
	uint8_t p[24];
	char rd[8] = { 0 };
	int sv[2], pp[2], fd, n;

	seqpacket_pair(sv);
	T_ASSERT(pipe2(pp, O_CLOEXEC) == 0);
	T_ASSERT_EQ(fl__mgr_source_encode(p, &s), 24);
	T_ASSERT_EQ(fl__mgr_send(sv[0], FL_MGR_SOURCE, 0xc0ffee, p, 24, pp[0]), 0);
	n = fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000);
	T_ASSERT_EQ(n, 24);
	T_ASSERT(h.type == FL_MGR_SOURCE && h.seq == 0xc0ffee && h.length == 24);
	T_ASSERT_EQ(fl__mgr_source_decode(rbuf + FL_MGR_HDR_SIZE, (size_t)n, &got), 0);
	T_ASSERT(got.id == 3 && got.length == 1u << 20);
	/* A new descriptor of the same pipe, close-on-exec, that works. */
	T_ASSERT(fd >= 0 && fd != pp[0]);
	T_ASSERT(same_file(fd, pp[0]));
	T_ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(pp[0]);
	T_ASSERT_EQ(write(pp[1], "ping", 4), 4);
	T_ASSERT_EQ(read(fd, rd, sizeof(rd)), 4);
	T_ASSERT(memcmp(rd, "ping", 4) == 0);
	close(fd);

	/* A memfd: the receiver sees what the sender wrote. */
	{
		int mfd = memfd_create("mgr-proto-test", MFD_CLOEXEC);
		char *map;
		T_ASSERT(mfd >= 0 && ftruncate(mfd, 4096) == 0);
		T_ASSERT_EQ(pwrite(mfd, "template", 8, 100), 8);
		T_ASSERT_EQ(fl__mgr_send(sv[1], FL_MGR_SOURCE, 2, p, 24, mfd), 0);
		close(mfd);
		T_ASSERT_EQ(fl__mgr_recv(sv[0], rbuf, &h, &fd, 1000), 24);
		T_ASSERT(fd >= 0);
		map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
		T_ASSERT(map != MAP_FAILED);
		T_ASSERT(memcmp(map + 100, "template", 8) == 0);
		munmap(map, 4096);
		close(fd);
	}

	/* No fd: *ret_fd is -1; an empty payload is length 0. */
	fd = 1234;
	T_ASSERT_EQ(fl__mgr_send(sv[0], FL_MGR_DETACH, 9, NULL, 0, -1), 0);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, -1), 0);
	T_ASSERT(h.type == FL_MGR_DETACH && h.seq == 9 && h.length == 0);
	T_ASSERT_EQ(fd, -1);
	close(sv[0]);
	close(sv[1]);
	return T_PASS;
}

/* The largest message, and messages in order (one per packet). */
static int test_send_recv_large(void *arg)
{
	static uint8_t big[MAXP + 1];
	static struct fl__mgr_range in[FL_MGR_MAX_RANGES];
	struct fl__mgr_attach a = { .features = 7, .nranges = FL_MGR_MAX_RANGES, .ranges = in }, b;
	struct fl__mgr_hdr h;
	int sv[2], fd, n, before;

	seqpacket_pair(sv);
	before = count_fds();
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31 + 7);
	T_ASSERT_EQ(fl__mgr_send(sv[0], FL_MGR_STATS_JSON, 1, big, MAXP, -1), 0);
	for (uint32_t i = 0; i < FL_MGR_MAX_RANGES; i++) {
		in[i] = range0;
		in[i].addr += (uint64_t)i << 21;
	}
	n = fl__mgr_attach_encode(buf, sizeof(buf), &a);
	T_ASSERT(n > 0);
	T_ASSERT_EQ(fl__mgr_send(sv[0], FL_MGR_ATTACH, 2, buf, (size_t)n, -1), 0);
	/* Over the limit: refused before anything is sent. */
	T_ASSERT_EQ(fl__mgr_send(sv[0], FL_MGR_STATS_JSON, 3, big, MAXP + 1, -1), -EMSGSIZE);

	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), MAXP);
	T_ASSERT(h.type == FL_MGR_STATS_JSON && h.seq == 1 && fd == -1);
	T_ASSERT(memcmp(rbuf + FL_MGR_HDR_SIZE, big, MAXP) == 0);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), n);
	T_ASSERT(h.type == FL_MGR_ATTACH && h.seq == 2);
	T_ASSERT_EQ(fl__mgr_attach_decode(rbuf + FL_MGR_HDR_SIZE, (size_t)n, ranges, &b), 0);
	T_ASSERT(b.nranges == FL_MGR_MAX_RANGES && b.ranges[1023].addr == in[1023].addr);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 0), -ETIMEDOUT);	/* nothing more */
	T_ASSERT_EQ(count_fds(), before);
	return T_PASS;
}

/* A packet larger than the receive buffer is EMSGSIZE, and its fd is closed. */
static int test_recv_oversized(void *arg)
{
	static uint8_t pkt[FL_MGR_HDR_SIZE + MAXP + 100];
	struct fl__mgr_hdr h;
	int sv[2], fd, before, nul;

	seqpacket_pair(sv);
	nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	T_ASSERT(nul >= 0);
	before = count_fds();
	/* the header claims the largest length; the packet is a byte longer */
	packet(pkt, FL_MGR_STATS_JSON, MAXP, 1, MAXP + 1);
	T_ASSERT_EQ(raw_send(sv[0], pkt, FL_MGR_HDR_SIZE + MAXP + 1, NULL, 0),
		    FL_MGR_HDR_SIZE + MAXP + 1);
	fd = 1234;
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), -EMSGSIZE);
	T_ASSERT_EQ(fd, -1);
	T_ASSERT_EQ(raw_send(sv[0], pkt, sizeof(pkt), &nul, 1), sizeof(pkt));
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), -EMSGSIZE);
	T_ASSERT_EQ(fd, -1);
	T_ASSERT_EQ(count_fds(), before);
	/* The rest of an oversized packet is gone: the next one reads cleanly. */
	T_ASSERT_EQ(fl__mgr_send(sv[0], FL_MGR_STATS, 5, NULL, 0, -1), 0);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), 0);
	T_ASSERT(h.type == FL_MGR_STATS && h.seq == 5);
	return T_PASS;
}

/* The header's length disagrees with the packet: EBADMSG, fd closed. */
static int test_recv_length_mismatch(void *arg)
{
	static const struct {
		uint32_t says;
		size_t has;
	} tc[] = { { 8, 4 }, { 8, 0 }, { 0, 4 }, { 8, 9 }, { 24, 23 }, { MAXP, 100 } };
	uint8_t pkt[FL_MGR_HDR_SIZE + 128];
	struct fl__mgr_hdr h;
	int sv[2], fd, before, nul;

	seqpacket_pair(sv);
	nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	T_ASSERT(nul >= 0);
	before = count_fds();
	for (unsigned i = 0; i < ARRAY_SIZE(tc); i++) {
		size_t n = packet(pkt, FL_MGR_CLAIM, tc[i].says, i, tc[i].has);
		for (unsigned withfd = 0; withfd <= 1; withfd++) {
			T_ASSERT_EQ(raw_send(sv[0], pkt, n, &nul, withfd), n);
			fd = 1234;
			T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), -EBADMSG);
			T_ASSERT_EQ(fd, -1);
			T_ASSERT_EQ(count_fds(), before);
		}
	}
	return T_PASS;
}

/* A packet whose header is bad: the header decoder's error, fd closed. */
static int test_recv_bad_header(void *arg)
{
	uint8_t pkt[FL_MGR_HDR_SIZE + 8];
	struct fl__mgr_hdr h;
	int sv[2], fd, before, nul;

	seqpacket_pair(sv);
	nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
	T_ASSERT(nul >= 0);
	before = count_fds();
#define EXPECT(len, err)                                                        \
	do {                                                                    \
		T_ASSERT_EQ(raw_send(sv[0], pkt, len, &nul, 1), len);           \
		fd = 1234;                                                      \
		T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), err);     \
		T_ASSERT_EQ(fd, -1);                                            \
		T_ASSERT_EQ(count_fds(), before);                               \
	} while (0)
	packet(pkt, FL_MGR_CLAIM, 8, 1, 8);
	EXPECT(8, -EPROTO);		/* shorter than a header */
	EXPECT(15, -EPROTO);
	pkt[3] = 'X';
	EXPECT(24, -EPROTO);		/* magic */
	packet(pkt, FL_MGR_CLAIM, 8, 1, 8);
	st16(pkt + 4, 2);
	EXPECT(24, -EPROTONOSUPPORT);	/* version */
	packet(pkt, FL_MGR_TYPE_MAX + 1, 8, 1, 8);
	EXPECT(24, -EPROTO);		/* type */
	packet(pkt, FL_MGR_CLAIM, MAXP + 1, 1, 8);
	EXPECT(24, -EMSGSIZE);		/* length over the limit */
#undef EXPECT
	return T_PASS;
}

/* Three fds on one packet: the first is returned, the others closed. */
static int test_recv_extra_fds(void *arg)
{
	struct fl__mgr_hdr h;
	uint8_t pkt[FL_MGR_HDR_SIZE + 8];
	int sv[2], pp[2], fds[3], fd, before;

	seqpacket_pair(sv);
	T_ASSERT(pipe2(pp, O_CLOEXEC) == 0);
	fds[0] = pp[0];
	fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	fds[2] = memfd_create("extra", MFD_CLOEXEC);
	T_ASSERT(fds[1] >= 0 && fds[2] >= 0);
	before = count_fds();
	packet(pkt, FL_MGR_CLAIMED, 8, 77, 8);
	T_ASSERT_EQ(raw_send(sv[0], pkt, sizeof(pkt), fds, 3), sizeof(pkt));
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), 8);
	T_ASSERT(h.type == FL_MGR_CLAIMED && h.seq == 77);
	T_ASSERT(fd >= 0);
	T_ASSERT(same_file(fd, pp[0]), "the fd returned is not the first one sent");
	T_ASSERT_EQ(count_fds(), before + 1);	/* only it was kept */
	close(fd);
	T_ASSERT_EQ(count_fds(), before);

	/* More than the receiver has room for: refused (MSG_CTRUNC), nothing kept. */
	{
		int many[12];
		for (unsigned i = 0; i < ARRAY_SIZE(many); i++)
			many[i] = fds[i % 3];
		T_ASSERT_EQ(raw_send(sv[0], pkt, sizeof(pkt), many, ARRAY_SIZE(many)), sizeof(pkt));
		fd = 1234;
		T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), -EMSGSIZE);
		T_ASSERT_EQ(fd, -1);
		T_ASSERT_EQ(count_fds(), before);
	}
	return T_PASS;
}

/* The peer gone: ECONNRESET (after what it sent before going); sending is EPIPE, no SIGPIPE. */
static int test_eof(void *arg)
{
	struct fl__mgr_hdr h;
	uint8_t p[8];
	int sv[2], fd;

	signal(SIGPIPE, SIG_DFL);
	seqpacket_pair(sv);
	fl__mgr_u64_encode(p, 42);
	T_ASSERT_EQ(fl__mgr_send(sv[0], FL_MGR_CLAIM, 1, p, 8, -1), 0);
	close(sv[0]);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), 8);
	T_ASSERT(h.type == FL_MGR_CLAIM);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 1000), -ECONNRESET);
	T_ASSERT_EQ(fd, -1);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, -1), -ECONNRESET);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 0), -ECONNRESET);
	T_ASSERT_EQ(fl__mgr_send(sv[1], FL_MGR_CLAIMED, 1, p, 8, -1), -EPIPE);
	close(sv[1]);
	return T_PASS;
}

static int test_timeout(void *arg)
{
	struct fl__mgr_hdr h;
	uint64_t t0, ms;
	int sv[2], fd = 1234;

	seqpacket_pair(sv);
	t0 = t_now_ns();
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 150), -ETIMEDOUT);
	ms = (t_now_ns() - t0) / 1000000;
	T_ASSERT(ms >= 140 && ms < t_scaled_ms(5000), "waited %llu ms for a 150 ms timeout", (unsigned long long)ms);
	T_ASSERT_EQ(fd, -1);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 0), -ETIMEDOUT);
	/* A message that arrives in time is read. */
	T_ASSERT_EQ(fl__mgr_send(sv[0], FL_MGR_DETACHED, 4, NULL, 0, -1), 0);
	T_ASSERT_EQ(fl__mgr_recv(sv[1], rbuf, &h, &fd, 150), 0);
	T_ASSERT(h.type == FL_MGR_DETACHED && h.seq == 4);
	return T_PASS;
}

/* Shared spaces: round trips, and every field a hostile peer could bend. */
static int test_space(void *arg)
{
	static struct fl__mgr_space m, back;
	struct fl__mgr_space_open so = { .version = 7, .flags = FL_MGR_SPACE_RDONLY, .name = "graph.v2_x-1" }, so2;
	uint8_t p[16 + 24 * FL_MGR_MAX_SEGMENTS + 56 * FL_MGR_MAX_ROOTS];
	char name[FL_MGR_MAX_SPACE_NAME + 1];
	int n;

	(void)arg;
	n = fl__mgr_space_open_encode(p, &so);
	T_ASSERT_EQ(n, 16 + 12);
	T_OK(fl__mgr_space_open_decode(p, (size_t)n, &so2));
	T_ASSERT(so2.version == 7 && so2.flags == FL_MGR_SPACE_RDONLY && !strcmp(so2.name, so.name));
	st32(p + 8, 4);		/* an unknown flag */
	T_ASSERT_EQ(fl__mgr_space_open_decode(p, (size_t)n, &so2), -EBADMSG);
	st32(p + 8, 0);
	T_ASSERT_EQ(fl__mgr_space_open_decode(p, (size_t)n - 1, &so2), -EBADMSG);
	/* Names: the space name rule, whatever the transport. */
	{
		const char *bad[] = { "..", ".", "../x", "a/b", "a b", "x\x01", "" };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			T_ASSERT(!fl__mgr_space_name_ok(bad[i]), "'%s' accepted", bad[i]);
			memcpy(p, bad[i], strlen(bad[i]));
			/* Well formed but not a name: the request is refused,
			 * not the session (an empty name is malformed). */
			T_ASSERT_EQ(fl__mgr_space_name_decode(p, strlen(bad[i]), name), *bad[i] ? -EINVAL : -EBADMSG);
		}
		memset(p, 'a', 48);
		T_ASSERT_EQ(fl__mgr_space_name_decode(p, 48, name), -EBADMSG);
		T_ASSERT_EQ(fl__mgr_space_name_decode(p, 47, name), 0);
		p[3] = 0;
		T_ASSERT_EQ(fl__mgr_space_name_decode(p, 47, name), -EBADMSG);
	}
	/* SPACE */
	m.version = 3;
	m.nsegments = 2;
	m.segments[0] = (struct fl__mgr_segment){ 0x10000000, 1 << 20, 1 };
	m.segments[1] = (struct fl__mgr_segment){ 0x20000000, 4 << 20, 2 };
	m.nroots = 1;
	snprintf(m.roots[0].name, sizeof(m.roots[0].name), "top");
	m.roots[0].value = 0x10000040;
	n = fl__mgr_space_encode(p, &m);
	T_ASSERT_EQ(n, 16 + 2 * 24 + 56);
	T_OK(fl__mgr_space_decode(p, (size_t)n, &back));
	T_ASSERT(back.version == 3 && back.nsegments == 2 && back.nroots == 1);
	T_ASSERT(back.segments[1].base == 0x20000000 && back.segments[1].length == 4 << 20 &&
		 back.segments[1].mem == 2);
	T_ASSERT(!strcmp(back.roots[0].name, "top") && back.roots[0].value == 0x10000040);
	T_ASSERT_EQ(fl__mgr_space_decode(p, (size_t)n - 1, &back), -EBADMSG);
	st32(p + 16 + 16, 3);	/* segment 0's mem */
	T_ASSERT_EQ(fl__mgr_space_decode(p, (size_t)n, &back), -EBADMSG);
	st32(p + 16 + 16, 1);
	p[16] = 1;		/* an unaligned base */
	T_ASSERT_EQ(fl__mgr_space_decode(p, (size_t)n, &back), -EBADMSG);
	p[16] = 0;
	p[16 + 48] = '/';	/* a root name */
	T_ASSERT_EQ(fl__mgr_space_decode(p, (size_t)n, &back), -EBADMSG);
	m.nsegments = 0;
	T_ASSERT_EQ(fl__mgr_space_encode(p, &m), -EINVAL);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "space", test_space, NULL, 0 },
	{ "layout", test_layout, NULL, 0 },
	{ "roundtrip_hdr", test_roundtrip_hdr, NULL, 0 },
	{ "roundtrip_hello_welcome", test_roundtrip_hello_welcome, NULL, 0 },
	{ "roundtrip_open", test_roundtrip_open, NULL, 0 },
	{ "roundtrip_source", test_roundtrip_source, NULL, 0 },
	{ "roundtrip_attach", test_roundtrip_attach, NULL, 0 },
	{ "roundtrip_u64_error", test_roundtrip_u64_error, NULL, 0 },
	{ "hdr_reject", test_hdr_reject, NULL, 0 },
	{ "hello_reject", test_hello_reject, NULL, 0 },
	{ "welcome_reject", test_welcome_reject, NULL, 0 },
	{ "open_reject", test_open_reject, NULL, 0 },
	{ "open_names", test_open_names, NULL, 0 },
	{ "source_reject", test_source_reject, NULL, 0 },
	{ "attach_reject", test_attach_reject, NULL, 0 },
	{ "u64_error_reject", test_u64_error_reject, NULL, 0 },
	{ "send_recv_fd", test_send_recv_fd, NULL, 0 },
	{ "send_recv_large", test_send_recv_large, NULL, 0 },
	{ "recv_oversized", test_recv_oversized, NULL, 0 },
	{ "recv_length_mismatch", test_recv_length_mismatch, NULL, 0 },
	{ "recv_bad_header", test_recv_bad_header, NULL, 0 },
	{ "recv_extra_fds", test_recv_extra_fds, NULL, 0 },
	{ "eof", test_eof, NULL, 0 },
	{ "timeout", test_timeout, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
