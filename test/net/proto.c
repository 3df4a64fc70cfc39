// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The page-server wire protocol (lib/proto.c): every message type round
 * trips through its encoder and decoder, and every malformed field is
 * refused with the documented error.
 */
#include "harness.h"
#include "proto.h"

#include <errno.h>
#include <string.h>

static uint8_t buf[FL_PROTO_HDR_SIZE + FL_PROTO_DATA_MAX];

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static int hdr(uint16_t type, uint32_t length, uint32_t id, uint32_t flags)
{
	struct fl__proto_hdr h;
	uint8_t b[FL_PROTO_HDR_SIZE];

	put32(b, FL_PROTO_MAGIC);
	put16(b + 4, FL_PROTO_VERSION);
	put16(b + 6, type);
	put32(b + 20, 0);
	put32(b + 8, length);
	put32(b + 12, id);
	put32(b + 16, flags);
	return fl__proto_hdr_decode(b, sizeof(b), &h);
}

static int t_header(void *arg)
{
	struct fl__proto_hdr h;
	uint8_t b[FL_PROTO_HDR_SIZE];

	(void)arg;
	T_ASSERT_EQ(fl__proto_hdr_encode(b, sizeof(b), FL_MSG_READ, FL_PROTO_READ_SIZE, 7, FL_MSG_F_URGENT),
		    FL_PROTO_HDR_SIZE);
	T_ASSERT(memcmp(b, "FLPS", 4) == 0, "magic is \"FLPS\" on the wire");
	T_OK(fl__proto_hdr_decode(b, sizeof(b), &h));
	T_ASSERT_EQ(h.version, 1);
	T_ASSERT_EQ(h.type, FL_MSG_READ);
	T_ASSERT_EQ(h.length, FL_PROTO_READ_SIZE);
	T_ASSERT_EQ(h.id, 7);
	T_ASSERT_EQ(h.flags, FL_MSG_F_URGENT);

	/* short buffer, magic, version, reserved */
	T_ASSERT_EQ(fl__proto_hdr_decode(b, FL_PROTO_HDR_SIZE - 1, &h), -EPROTO);
	b[0] ^= 1;
	T_ASSERT_EQ(fl__proto_hdr_decode(b, sizeof(b), &h), -EPROTO);
	b[0] ^= 1;
	put16(b + 4, 2);
	T_ASSERT_EQ(fl__proto_hdr_decode(b, sizeof(b), &h), -EPROTONOSUPPORT);
	put16(b + 4, 0);
	T_ASSERT_EQ(fl__proto_hdr_decode(b, sizeof(b), &h), -EPROTONOSUPPORT);
	put16(b + 4, 1);
	put32(b + 20, 1);
	T_ASSERT_EQ(fl__proto_hdr_decode(b, sizeof(b), &h), -EPROTO);
	put32(b + 20, 0);
	/* unknown types */
	put16(b + 6, 0);
	T_ASSERT_EQ(fl__proto_hdr_decode(b, sizeof(b), &h), -EPROTO);
	put16(b + 6, 7);
	T_ASSERT_EQ(fl__proto_hdr_decode(b, sizeof(b), &h), -EPROTO);
	put16(b + 6, 0xffff);
	T_ASSERT_EQ(fl__proto_hdr_decode(b, sizeof(b), &h), -EPROTO);

	/* lengths: exact for fixed types, bounded for the others */
	T_ASSERT_EQ(hdr(FL_MSG_READ, FL_PROTO_READ_SIZE + 1, 1, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_READ, FL_PROTO_READ_SIZE - 1, 1, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_HELLO, 0, 0, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_BYE, 1, 0, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_ERROR, 4, 1, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_DATA, FL_PROTO_DATA_MAX, 1, 0), 0);
	T_ASSERT_EQ(hdr(FL_MSG_DATA, FL_PROTO_DATA_MAX + 1, 1, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_DATA, FL_PROTO_MAX_PAYLOAD + 1, 1, 0), -EMSGSIZE);
	T_ASSERT_EQ(hdr(FL_MSG_DATA, 0xffffffffu, 1, 0), -EMSGSIZE);
	T_ASSERT_EQ(hdr(FL_MSG_DATA, 8, 1, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_HELLO_ACK, FL_PROTO_ACK_FIXED + FL_PROTO_MAX_REGIONS * FL_PROTO_ACK_REGION + 1, 0, 0),
		    -EPROTO);
	/* flags only on READ; ids where they belong */
	T_ASSERT_EQ(hdr(FL_MSG_DATA, FL_PROTO_DATA_MAX, 1, FL_MSG_F_URGENT), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_READ, FL_PROTO_READ_SIZE, 1, 2), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_READ, FL_PROTO_READ_SIZE, 0, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_DATA, FL_PROTO_DATA_MAX, 0, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_HELLO, FL_PROTO_HELLO_SIZE, 3, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_BYE, 0, 3, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_ERROR, FL_PROTO_ERROR_SIZE, 0, 0), 0);

	/* encoder refuses what the decoder would */
	T_ASSERT_EQ(fl__proto_hdr_encode(b, sizeof(b), 10, 0, 0, 0), -EINVAL);
	/* the write extension: ids required, lengths bounded */
	T_ASSERT_EQ(hdr(FL_MSG_FLUSH, 0, 0, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_FLUSH, 0, 5, 0), 0);
	T_ASSERT_EQ(hdr(FL_MSG_FLUSH, 8, 5, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_WRITE, FL_PROTO_WRITE_LEN(1), 0, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_WRITE, FL_PROTO_WRITE_MAX, 1, 0), 0);
	T_ASSERT_EQ(hdr(FL_MSG_WRITE, FL_PROTO_WRITE_MAX + 1, 1, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_WRITE, FL_PROTO_WRITE_LEN(1) - 1, 1, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_WRITE, FL_PROTO_WRITE_LEN(1), 1, FL_MSG_F_URGENT), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_DONE, FL_PROTO_DONE_SIZE, 0, 0), -EPROTO);
	T_ASSERT_EQ(hdr(FL_MSG_DONE, FL_PROTO_DONE_SIZE, 1, 0), 0);
	T_ASSERT_EQ(fl__proto_hdr_encode(b, sizeof(b), FL_MSG_READ, 17, 1, 0), -EINVAL);
	T_ASSERT_EQ(fl__proto_hdr_encode(b, 23, FL_MSG_BYE, 0, 0, 0), -ENOBUFS);
	return T_PASS;
}

/* WRITE, DONE, FLUSH: the write extension's messages. */
static int t_write(void *arg)
{
	static uint8_t wb[FL_PROTO_HDR_SIZE + FL_PROTO_WRITE_LEN(3)];
	struct fl__proto_read m = { .region = 0, .npages = 3, .first = 77 }, d;
	struct fl__proto_hdr h;
	const uint8_t *pages;
	uint64_t cs[FL_PROTO_MAX_PAGES], got[FL_PROTO_MAX_PAGES];
	uint8_t *p = wb + FL_PROTO_HDR_SIZE, *tr;
	int n;

	(void)arg;
	n = fl__proto_write_encode(wb, sizeof(wb), 9, &m);
	T_ASSERT_EQ(n, FL_PROTO_HDR_SIZE + FL_PROTO_WRITE_PREFIX);
	for (unsigned i = 0; i < 3; i++) {
		memset(wb + n + (size_t)i * 4096, (int)i + 1, 4096);
		cs[i] = fl__proto_page_csum(wb + n + (size_t)i * 4096);
	}
	tr = wb + n + 3 * 4096;
	T_ASSERT_EQ(fl__proto_trailer_encode(tr, FL_PROTO_TRAILER_LEN(3), cs, 3, 0), (int)FL_PROTO_TRAILER_LEN(3));
	T_OK(fl__proto_hdr_decode(wb, sizeof(wb), &h));
	T_ASSERT(h.type == FL_MSG_WRITE && h.id == 9 && h.length == FL_PROTO_WRITE_LEN(3));
	T_OK(fl__proto_write_decode(&h, p, h.length, &d, &pages, got));
	T_ASSERT(d.region == 0 && d.npages == 3 && d.first == 77 && pages == p + FL_PROTO_WRITE_PREFIX);
	T_ASSERT(got[0] == cs[0] && got[2] == cs[2]);
	/* npages disagreeing with the length; 0 pages; a nonzero status; reserved */
	put32(p + 4, 2);
	T_ASSERT_EQ(fl__proto_write_decode(&h, p, h.length, &d, &pages, got), -EPROTO);
	put32(p + 4, 0);
	T_ASSERT_EQ(fl__proto_write_decode(&h, p, h.length, &d, &pages, got), -EPROTO);
	put32(p + 4, 3);
	put32(tr + 24, 5);
	T_ASSERT_EQ(fl__proto_write_decode(&h, p, h.length, &d, &pages, got), -EPROTO);
	put32(tr + 24, 0);
	put32(tr + 28, 1);
	T_ASSERT_EQ(fl__proto_write_decode(&h, p, h.length, &d, &pages, got), -EPROTO);
	put32(tr + 28, 0);
	T_ASSERT_EQ(fl__proto_write_decode(&h, p, h.length - 1, &d, &pages, got), -EPROTO);
	T_OK(fl__proto_write_decode(&h, p, h.length, &d, &pages, got));
	m.npages = 0;
	T_ASSERT_EQ(fl__proto_write_encode(wb, sizeof(wb), 9, &m), -EINVAL);
	m.npages = 3;
	T_ASSERT_EQ(fl__proto_write_encode(wb, sizeof(wb), 0, &m), -EINVAL);

	/* DONE: a write's prefix, or all zero for a flush */
	n = fl__proto_done_encode(buf, sizeof(buf), 9, &m);
	T_ASSERT_EQ(n, FL_PROTO_HDR_SIZE + FL_PROTO_DONE_SIZE);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_OK(fl__proto_done_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &d));
	T_ASSERT(d.npages == 3 && d.first == 77);
	n = fl__proto_done_encode(buf, sizeof(buf), 10, NULL);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_OK(fl__proto_done_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &d));
	T_ASSERT_EQ(d.npages, 0);
	put32(buf + FL_PROTO_HDR_SIZE, 1);	/* region without pages */
	T_ASSERT_EQ(fl__proto_done_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &d), -EPROTO);
	put32(buf + FL_PROTO_HDR_SIZE, 0);
	put32(buf + FL_PROTO_HDR_SIZE + 4, 513);
	T_ASSERT_EQ(fl__proto_done_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &d), -EPROTO);
	n = fl__proto_flush_encode(buf, sizeof(buf), 11);
	T_ASSERT_EQ(n, FL_PROTO_HDR_SIZE);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_ASSERT(h.type == FL_MSG_FLUSH && h.id == 11 && h.length == 0);
	T_ASSERT_EQ(fl__proto_flush_encode(buf, sizeof(buf), 0), -EINVAL);
	return T_PASS;
}

static int t_hello(void *arg)
{
	struct fl__proto_hello m = { .session = 0x1122334455667788ull, .role = FL_ROLE_BULK }, d;
	struct fl__proto_hdr h;
	int n;

	(void)arg;
	memset(m.image_id, 0xab, sizeof(m.image_id));
	n = fl__proto_hello_encode(buf, sizeof(buf), &m);
	T_ASSERT_EQ(n, FL_PROTO_HDR_SIZE + FL_PROTO_HELLO_SIZE);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_OK(fl__proto_hello_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &d));
	T_ASSERT(d.session == m.session && d.role == m.role && !memcmp(d.image_id, m.image_id, 16));
	/* truncated payload, wrong type, bad role, reserved */
	T_ASSERT_EQ(fl__proto_hello_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length - 1, &d), -EPROTO);
	h.type = FL_MSG_READ;
	T_ASSERT_EQ(fl__proto_hello_decode(&h, buf + FL_PROTO_HDR_SIZE, FL_PROTO_HELLO_SIZE, &d), -EPROTO);
	h.type = FL_MSG_HELLO;
	put32(buf + FL_PROTO_HDR_SIZE + 8, 2);
	T_ASSERT_EQ(fl__proto_hello_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &d), -EPROTO);
	put32(buf + FL_PROTO_HDR_SIZE + 8, 0);
	/* features: WRITE is known, any other bit is not */
	put32(buf + FL_PROTO_HDR_SIZE + 12, FL_PROTO_FEAT_WRITE);
	T_OK(fl__proto_hello_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &d));
	T_ASSERT_EQ(d.features, FL_PROTO_FEAT_WRITE);
	put32(buf + FL_PROTO_HDR_SIZE + 12, 2);
	T_ASSERT_EQ(fl__proto_hello_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &d), -EPROTO);
	m.role = 5;
	T_ASSERT_EQ(fl__proto_hello_encode(buf, sizeof(buf), &m), -EINVAL);
	return T_PASS;
}

static int t_ack(void *arg)
{
	const struct fl__proto_region regs[3] = {
		{ .length = 4096 * 10, .prot = 3, .mem = 0 },
		{ .length = 0, .prot = 1, .mem = 1 },
		{ .length = 1ull << 40, .prot = 7, .mem = 2 },
	};
	uint8_t id[16];
	struct fl__proto_hdr h;
	struct fl__proto_ack a;
	struct fl__proto_region r;
	uint8_t *p = buf + FL_PROTO_HDR_SIZE;
	int n;

	(void)arg;
	for (int i = 0; i < 16; i++)
		id[i] = (uint8_t)i;
	n = fl__proto_ack_encode(buf, sizeof(buf), id, 4096, 512, regs, 3);
	T_ASSERT_EQ(n, FL_PROTO_HDR_SIZE + FL_PROTO_ACK_FIXED + 3 * FL_PROTO_ACK_REGION);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_OK(fl__proto_ack_decode(&h, p, h.length, &a));
	T_ASSERT(!memcmp(a.image_id, id, 16) && a.page_size == 4096 && a.nregions == 3 && a.max_pages == 512);
	for (uint32_t i = 0; i < 3; i++) {
		T_OK(fl__proto_ack_region(&a, i, &r));
		T_ASSERT(r.length == regs[i].length && r.prot == regs[i].prot && r.mem == regs[i].mem);
	}
	T_ASSERT_EQ(fl__proto_ack_region(&a, 3, &r), -EPROTO);

	/* region count disagreeing with the length */
	put32(p + 20, 4);
	T_ASSERT_EQ(fl__proto_ack_decode(&h, p, h.length, &a), -EPROTO);
	put32(p + 20, 0);
	T_ASSERT_EQ(fl__proto_ack_decode(&h, p, h.length, &a), -EPROTO);
	put32(p + 20, 0x80000000u);
	T_ASSERT_EQ(fl__proto_ack_decode(&h, p, h.length, &a), -EPROTO);
	put32(p + 20, 3);
	/* page size, max pages, reserved */
	put32(p + 16, 8192);
	T_ASSERT_EQ(fl__proto_ack_decode(&h, p, h.length, &a), -EPROTO);
	put32(p + 16, 4096);
	put32(p + 24, 0);
	T_ASSERT_EQ(fl__proto_ack_decode(&h, p, h.length, &a), -EPROTO);
	put32(p + 24, 513);
	T_ASSERT_EQ(fl__proto_ack_decode(&h, p, h.length, &a), -EPROTO);
	put32(p + 24, 64);
	put32(p + 28, 2);
	T_ASSERT_EQ(fl__proto_ack_decode(&h, p, h.length, &a), -EPROTO);
	fl__proto_ack_set_features(buf, FL_PROTO_FEAT_WRITE);
	T_OK(fl__proto_ack_decode(&h, p, h.length, &a));
	T_ASSERT_EQ(a.features, FL_PROTO_FEAT_WRITE);
	put32(p + 28, 0);
	T_OK(fl__proto_ack_decode(&h, p, h.length, &a));
	T_ASSERT_EQ(a.max_pages, 64);
	/* a region length that is not a page multiple, or absurd; a bad memory type */
	put32(p + FL_PROTO_ACK_FIXED, 4097);
	T_ASSERT_EQ(fl__proto_ack_region(&a, 0, &r), -EPROTO);
	put32(p + FL_PROTO_ACK_FIXED, 4096);
	put32(p + FL_PROTO_ACK_FIXED + 4, 0x00200000u);
	T_ASSERT_EQ(fl__proto_ack_region(&a, 0, &r), -EPROTO);
	put32(p + FL_PROTO_ACK_FIXED + 4, 0);
	put32(p + FL_PROTO_ACK_FIXED + 12, 3);
	T_ASSERT_EQ(fl__proto_ack_region(&a, 0, &r), -EPROTO);

	T_ASSERT_EQ(fl__proto_ack_encode(buf, sizeof(buf), id, 4096, 512, regs, 0), -EINVAL);
	T_ASSERT_EQ(fl__proto_ack_encode(buf, sizeof(buf), id, 4096, 513, regs, 3), -EINVAL);
	T_ASSERT_EQ(fl__proto_ack_encode(buf, 40, id, 4096, 512, regs, 3), -ENOBUFS);
	return T_PASS;
}

static int t_read(void *arg)
{
	struct fl__proto_read m = { .region = 2, .npages = 512, .first = 123456789 }, d;
	struct fl__proto_hdr h;
	uint8_t *p = buf + FL_PROTO_HDR_SIZE;
	int n;

	(void)arg;
	n = fl__proto_read_encode(buf, sizeof(buf), 42, true, &m);
	T_ASSERT_EQ(n, FL_PROTO_HDR_SIZE + FL_PROTO_READ_SIZE);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_ASSERT(h.id == 42 && h.flags == FL_MSG_F_URGENT);
	T_OK(fl__proto_read_decode(&h, p, h.length, &d));
	T_ASSERT(d.region == 2 && d.npages == 512 && d.first == 123456789);
	put32(p + 4, 0);
	T_ASSERT_EQ(fl__proto_read_decode(&h, p, h.length, &d), -EPROTO);
	put32(p + 4, 513);
	T_ASSERT_EQ(fl__proto_read_decode(&h, p, h.length, &d), -EPROTO);
	put32(p + 4, 1);
	put32(p + 12, 0xffffffffu);
	T_ASSERT_EQ(fl__proto_read_decode(&h, p, h.length, &d), -EPROTO);
	m.npages = 0;
	T_ASSERT_EQ(fl__proto_read_encode(buf, sizeof(buf), 42, false, &m), -EINVAL);
	m.npages = 1;
	T_ASSERT_EQ(fl__proto_read_encode(buf, sizeof(buf), 0, false, &m), -EINVAL);
	return T_PASS;
}

static int t_data(void *arg)
{
	struct fl__proto_read m = { .region = 1, .npages = 5, .first = 10 };
	uint8_t kinds[5] = { 2, 1, 2, 2, 1 }, dk[FL_PROTO_MAX_PAGES];
	uint64_t csums[3] = { 11, 33, 44 }, dc[FL_PROTO_MAX_PAGES];
	struct fl__proto_hdr h;
	struct fl__proto_data d;
	uint8_t *p = buf + FL_PROTO_HDR_SIZE, *k = p + FL_PROTO_DATA_PREFIX, trailer[64];
	size_t klen = FL_PROTO_KINDS_LEN(5), total = 0;
	int n, status = -1;

	(void)arg;
	n = fl__proto_data_encode(buf, sizeof(buf), 9, &m, kinds, &total);
	T_ASSERT_EQ(n, FL_PROTO_HDR_SIZE + FL_PROTO_DATA_PREFIX + klen);
	T_ASSERT_EQ(klen, 8);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_ASSERT_EQ(h.length, FL_PROTO_DATA_PREFIX + klen + 3 * (4096 + 8) + 8);
	T_ASSERT_EQ(total, FL_PROTO_HDR_SIZE + h.length);
	T_OK(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX, &d));
	T_ASSERT(d.region == 1 && d.npages == 5 && d.first == 10 && d.ndata == 3);
	T_OK(fl__proto_data_kinds(&d, k, klen, dk));
	for (int i = 0; i < 5; i++)
		T_ASSERT(dk[i] == kinds[i], "kind %d", i);
	n = fl__proto_trailer_encode(trailer, sizeof(trailer), csums, 3, 0);
	T_ASSERT_EQ(n, FL_PROTO_TRAILER_LEN(3));
	T_OK(fl__proto_data_trailer(&d, trailer, (size_t)n, dc, &status));
	T_ASSERT(status == 0 && dc[0] == 11 && dc[1] == 33 && dc[2] == 44);
	/* a failed request's trailer; bad statuses */
	n = fl__proto_trailer_encode(trailer, sizeof(trailer), csums, 3, -EBADMSG);
	T_OK(fl__proto_data_trailer(&d, trailer, (size_t)n, dc, &status));
	T_ASSERT_EQ(status, EBADMSG);
	put32(trailer + 24, 5000);
	T_ASSERT_EQ(fl__proto_data_trailer(&d, trailer, (size_t)n, dc, &status), -EPROTO);
	put32(trailer + 24, 0);
	put32(trailer + 28, 1);
	T_ASSERT_EQ(fl__proto_data_trailer(&d, trailer, (size_t)n, dc, &status), -EPROTO);
	T_ASSERT_EQ(fl__proto_data_trailer(&d, trailer, (size_t)n - 8, dc, &status), -EPROTO);

	/* lengths that do not add up: one page more or less, half a page */
	h.length += 4096 + 8;
	T_OK(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX, &d));
	T_ASSERT_EQ(fl__proto_data_kinds(&d, k, klen, dk), -EPROTO);
	h.length -= 2 * (4096 + 8);
	T_OK(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX, &d));
	T_ASSERT_EQ(fl__proto_data_kinds(&d, k, klen, dk), -EPROTO);
	h.length += 4096;	/* a page without its checksum */
	T_ASSERT_EQ(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX, &d), -EPROTO);
	h.length = FL_PROTO_DATA_PREFIX + klen + 6 * (4096 + 8) + 8;	/* more data pages than pages */
	T_ASSERT_EQ(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX, &d), -EPROTO);
	h.length = FL_PROTO_DATA_PREFIX + klen;				/* no trailer */
	T_ASSERT_EQ(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX, &d), -EPROTO);
	h.length = FL_PROTO_DATA_PREFIX + klen + 3 * (4096 + 8) + 8;
	T_OK(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX, &d));
	/* kinds: length, values, padding */
	T_ASSERT_EQ(fl__proto_data_kinds(&d, k, klen - 1, dk), -EPROTO);
	k[1] = 3;
	T_ASSERT_EQ(fl__proto_data_kinds(&d, k, klen, dk), -EPROTO);
	k[1] = 0;
	T_ASSERT_EQ(fl__proto_data_kinds(&d, k, klen, dk), -EPROTO);
	k[1] = 1;
	k[6] = 1;	/* padding */
	T_ASSERT_EQ(fl__proto_data_kinds(&d, k, klen, dk), -EPROTO);
	k[6] = 0;
	k[1] = 2;	/* one data page more than the length carries */
	T_ASSERT_EQ(fl__proto_data_kinds(&d, k, klen, dk), -EPROTO);
	k[1] = 1;
	T_OK(fl__proto_data_kinds(&d, k, klen, dk));
	/* page counts */
	put32(p + 4, 0);
	T_ASSERT_EQ(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX, &d), -EPROTO);
	put32(p + 4, 513);
	T_ASSERT_EQ(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX, &d), -EPROTO);
	T_ASSERT_EQ(fl__proto_data_prefix(&h, p, FL_PROTO_DATA_PREFIX - 1, &d), -EPROTO);

	/* the largest DATA is the largest payload a DATA may have */
	m.npages = FL_PROTO_MAX_PAGES;
	memset(dk, 2, sizeof(dk));
	n = fl__proto_data_encode(buf, sizeof(buf), 9, &m, dk, NULL);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_ASSERT_EQ(h.length, FL_PROTO_DATA_MAX);
	kinds[0] = 3;
	m.npages = 5;
	T_ASSERT_EQ(fl__proto_data_encode(buf, sizeof(buf), 9, &m, kinds, NULL), -EINVAL);
	return T_PASS;
}

static int t_error_bye(void *arg)
{
	struct fl__proto_hdr h;
	int n, e = 0;

	(void)arg;
	n = fl__proto_error_encode(buf, sizeof(buf), 5, -EBUSY);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_OK(fl__proto_error_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &e));
	T_ASSERT_EQ(e, EBUSY);
	T_ASSERT_EQ(h.id, 5);
	put32(buf + FL_PROTO_HDR_SIZE, 0);
	T_ASSERT_EQ(fl__proto_error_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &e), -EPROTO);
	put32(buf + FL_PROTO_HDR_SIZE, 4096);
	T_ASSERT_EQ(fl__proto_error_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &e), -EPROTO);
	/* an out-of-range errno from our side is sent as EIO */
	n = fl__proto_error_encode(buf, sizeof(buf), 5, 100000);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_OK(fl__proto_error_decode(&h, buf + FL_PROTO_HDR_SIZE, h.length, &e));
	T_ASSERT_EQ(e, EIO);

	n = fl__proto_bye_encode(buf, sizeof(buf));
	T_ASSERT_EQ(n, FL_PROTO_HDR_SIZE);
	T_OK(fl__proto_hdr_decode(buf, (size_t)n, &h));
	T_OK(fl__proto_bye_decode(&h, 0));
	T_ASSERT_EQ(fl__proto_bye_decode(&h, 1), -EPROTO);
	return T_PASS;
}

/* The checksum is XXH3-64 of the page: the image format's, so the server can forward it. */
static int t_csum(void *arg)
{
	static uint8_t page[4096];
	uint64_t a, b;

	(void)arg;
	a = fl__proto_page_csum(page);
	page[4095] = 1;
	b = fl__proto_page_csum(page);
	T_ASSERT(a != b);
	page[4095] = 0;
	T_ASSERT(fl__proto_page_csum(page) == a);
	return T_PASS;
}

/* Random bytes and single-byte mutations of valid messages never crash a decoder. */
static int t_random(void *arg)
{
	unsigned seed = 12345;
	uint8_t kinds[FL_PROTO_MAX_PAGES];
	uint64_t csums[FL_PROTO_MAX_PAGES];
	unsigned accepted = 0;

	(void)arg;
	for (int iter = 0; iter < 200000; iter++) {
		struct fl__proto_hdr h;
		size_t len = 24 + (size_t)(rand_r(&seed) % 200);
		uint8_t *p = buf + FL_PROTO_HDR_SIZE;

		if (iter % 2) {
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rand_r(&seed);
		} else {
			struct fl__proto_read m = { .npages = 1 + (uint32_t)(rand_r(&seed) % 4), .first = 1 };
			size_t total;
			for (uint32_t i = 0; i < m.npages; i++)
				kinds[i] = 1 + (uint8_t)(rand_r(&seed) % 2);
			len = (size_t)fl__proto_data_encode(buf, sizeof(buf), 1, &m, kinds, &total);
			memset(buf + len, 0, total - len);
			len = total;
			buf[(size_t)rand_r(&seed) % 40] ^= (uint8_t)(1u << (rand_r(&seed) % 8));
		}
		put32(buf, FL_PROTO_MAGIC);
		put16(buf + 4, 1);
		if (fl__proto_hdr_decode(buf, len, &h))
			continue;
		accepted++;
		if (h.length > len - FL_PROTO_HDR_SIZE)
			h.length = (uint32_t)(len - FL_PROTO_HDR_SIZE);
		switch (h.type) {
		case FL_MSG_DATA: {
			struct fl__proto_data d;
			size_t klen;
			if (fl__proto_data_prefix(&h, p, h.length, &d))
				break;
			klen = FL_PROTO_KINDS_LEN(d.npages);
			if (h.length >= FL_PROTO_DATA_PREFIX + klen)
				fl__proto_data_kinds(&d, p + FL_PROTO_DATA_PREFIX, klen, kinds);
			if (h.length >= FL_PROTO_TRAILER_LEN(d.ndata)) {
				int status;
				fl__proto_data_trailer(&d, p + h.length - FL_PROTO_TRAILER_LEN(d.ndata),
						       FL_PROTO_TRAILER_LEN(d.ndata), csums, &status);
			}
			break;
		}
		default: {
			struct fl__proto_hello hello;
			struct fl__proto_read rd;
			int e;
			fl__proto_hello_decode(&h, p, h.length, &hello);
			fl__proto_read_decode(&h, p, h.length, &rd);
			fl__proto_error_decode(&h, p, h.length, &e);
			fl__proto_bye_decode(&h, h.length);
		}
		}
	}
	t_log("%u of 200000 headers decoded", accepted);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "proto/header", t_header, NULL, 0 },
	{ "proto/write", t_write, NULL, 0 },
	{ "proto/hello", t_hello, NULL, 0 },
	{ "proto/hello-ack", t_ack, NULL, 0 },
	{ "proto/read", t_read, NULL, 0 },
	{ "proto/data", t_data, NULL, 0 },
	{ "proto/error-bye", t_error_bye, NULL, 0 },
	{ "proto/checksum", t_csum, NULL, 0 },
	{ "proto/random", t_random, NULL, 60 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
