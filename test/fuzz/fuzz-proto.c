// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target: the page-server wire-protocol decoders (lib/proto.c).
 *
 * The input is a byte stream as a peer would send it: messages are decoded
 * one after another the way the server and the client do (header, then
 * the payload of its type, DATA in its three steps), until the stream ends
 * or a decoder refuses it. Whatever a decoder accepts must re-encode to
 * the same bytes, and no decoder may read past what it is given (ASan,
 * and the payload is copied to an exact-size buffer to make that visible).
 *
 * With clang, this builds as a libFuzzer target (-fsanitize=fuzzer). With
 * any other compiler, FL_FUZZ_STANDALONE adds a main() that runs the same
 * function over a generated corpus of valid messages and random mutations
 * of them: fuzz-proto [ITERATIONS [SEED]].
 */
#include "proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "fuzz-proto: invariant failed: %s (line %d)\n", #cond, __LINE__); \
			abort();                                                      \
		}                                                                     \
	} while (0)

static uint8_t scratch[FL_PROTO_HDR_SIZE + FL_PROTO_DATA_MAX];
static uint8_t kinds[FL_PROTO_MAX_PAGES];
static uint64_t csums[FL_PROTO_MAX_PAGES];

/* Decode one message's payload (exactly h->length bytes at p). */
static void payload(const struct fl__proto_hdr *h, const uint8_t *p, size_t len)
{
	switch (h->type) {
	case FL_MSG_HELLO: {
		struct fl__proto_hello m;
		if (fl__proto_hello_decode(h, p, len, &m) == 0) {
			int n = fl__proto_hello_encode(scratch, sizeof(scratch), &m);
			CHECK(n == (int)(FL_PROTO_HDR_SIZE + len));
			CHECK(memcmp(scratch + FL_PROTO_HDR_SIZE, p, len) == 0);
		}
		break;
	}
	case FL_MSG_HELLO_ACK: {
		struct fl__proto_ack a;
		if (fl__proto_ack_decode(h, p, len, &a) == 0) {
			CHECK(a.nregions >= 1 && a.nregions <= FL_PROTO_MAX_REGIONS);
			CHECK(a.max_pages >= 1 && a.max_pages <= FL_PROTO_MAX_PAGES);
			for (uint32_t i = 0; i < a.nregions; i++) {
				struct fl__proto_region r;
				if (fl__proto_ack_region(&a, i, &r) == 0)
					CHECK(r.length % a.page_size == 0);
			}
		}
		break;
	}
	case FL_MSG_READ: {
		struct fl__proto_read m;
		if (fl__proto_read_decode(h, p, len, &m) == 0) {
			int n = fl__proto_read_encode(scratch, sizeof(scratch), h->id, h->flags & FL_MSG_F_URGENT, &m);
			CHECK(m.npages >= 1 && m.npages <= FL_PROTO_MAX_PAGES);
			CHECK(n == (int)(FL_PROTO_HDR_SIZE + len));
			CHECK(memcmp(scratch + FL_PROTO_HDR_SIZE, p, len) == 0);
		}
		break;
	}
	case FL_MSG_DATA: {
		struct fl__proto_data d;
		size_t klen, tlen;
		int status;
		if (fl__proto_data_prefix(h, p, len, &d))
			break;
		klen = FL_PROTO_KINDS_LEN(d.npages);
		tlen = FL_PROTO_TRAILER_LEN(d.ndata);
		CHECK(d.ndata <= d.npages);
		CHECK(h->length == FL_PROTO_DATA_PREFIX + klen + (size_t)d.ndata * FL_PROTO_PAGE_SIZE + tlen);
		if (len >= FL_PROTO_DATA_PREFIX + klen &&
		    fl__proto_data_kinds(&d, p + FL_PROTO_DATA_PREFIX, klen, kinds) == 0) {
			struct fl__proto_read m = { .region = d.region, .npages = d.npages, .first = d.first };
			size_t total;
			int n = fl__proto_data_encode(scratch, sizeof(scratch), h->id ? h->id : 1, &m, kinds, &total);
			CHECK(n == (int)(FL_PROTO_HDR_SIZE + FL_PROTO_DATA_PREFIX + klen));
			CHECK(total == FL_PROTO_HDR_SIZE + h->length);
			CHECK(memcmp(scratch + FL_PROTO_HDR_SIZE, p, FL_PROTO_DATA_PREFIX + klen) == 0);
		}
		if (len == h->length &&
		    fl__proto_data_trailer(&d, p + len - tlen, tlen, csums, &status) == 0) {
			int n = fl__proto_trailer_encode(scratch, sizeof(scratch), csums, d.ndata, status);
			CHECK(status >= 0 && status <= 4095);
			CHECK(n == (int)tlen && memcmp(scratch, p + len - tlen, tlen) == 0);
		}
		break;
	}
	case FL_MSG_ERROR: {
		int e;
		if (fl__proto_error_decode(h, p, len, &e) == 0)
			CHECK(e >= 1 && e <= 4095);
		break;
	}
	case FL_MSG_BYE:
		CHECK(fl__proto_bye_decode(h, len) == 0);
		break;
	case FL_MSG_WRITE: {
		struct fl__proto_read m;
		const uint8_t *pages;
		if (fl__proto_write_decode(h, p, len, &m, &pages, csums) == 0) {
			size_t at = FL_PROTO_WRITE_PREFIX + (size_t)m.npages * FL_PROTO_PAGE_SIZE;
			int n = fl__proto_write_encode(scratch, sizeof(scratch), h->id, &m);
			CHECK(m.npages >= 1 && m.npages <= FL_PROTO_MAX_PAGES);
			CHECK(len == FL_PROTO_WRITE_LEN(m.npages) && pages == p + FL_PROTO_WRITE_PREFIX);
			CHECK(n == (int)(FL_PROTO_HDR_SIZE + FL_PROTO_WRITE_PREFIX));
			CHECK(memcmp(scratch + FL_PROTO_HDR_SIZE, p, FL_PROTO_WRITE_PREFIX) == 0);
			n = fl__proto_trailer_encode(scratch, sizeof(scratch), csums, m.npages, 0);
			CHECK(n == (int)(len - at) && memcmp(scratch, p + at, len - at) == 0);
		}
		break;
	}
	case FL_MSG_DONE: {
		struct fl__proto_read m;
		if (fl__proto_done_decode(h, p, len, &m) == 0) {
			int n = fl__proto_done_encode(scratch, sizeof(scratch), h->id, m.npages ? &m : NULL);
			CHECK(n == (int)(FL_PROTO_HDR_SIZE + len));
			CHECK(memcmp(scratch + FL_PROTO_HDR_SIZE, p, len) == 0);
		}
		break;
	}
	case FL_MSG_FLUSH:
		CHECK(len == 0 && h->id);
		break;
	default:
		CHECK(!"a header of unknown type was accepted");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	while (size >= FL_PROTO_HDR_SIZE) {
		struct fl__proto_hdr h;
		uint8_t *copy;
		size_t len;

		if (fl__proto_hdr_decode(data, size, &h))
			return 0;
		CHECK(h.length <= FL_PROTO_MAX_PAYLOAD);
		data += FL_PROTO_HDR_SIZE;
		size -= FL_PROTO_HDR_SIZE;
		/* A truncated stream: decode what there is (DATA in steps does). */
		len = h.length < size ? h.length : size;
		copy = malloc(len ? len : 1);
		if (!copy)
			return 0;
		memcpy(copy, data, len);
		if (len == h.length || h.type == FL_MSG_DATA)
			payload(&h, copy, len);
		free(copy);
		data += len;
		size -= len;
	}
	return 0;
}

#ifdef FL_FUZZ_STANDALONE
/* ---- a driver for compilers without libFuzzer ------------------------------ */

#include "standalone.h"

#define NSEEDS 12

static struct fz_input seeds[NSEEDS];
static const unsigned nseeds = NSEEDS;

/* Valid messages of every type, and a stream of several. */
static void make_seeds(void)
{
	struct fl__proto_hello hello = { .session = 42, .role = FL_ROLE_BULK };
	struct fl__proto_region regs[2] = { { 4096 * 16, 3, 0 }, { 4096 * 4, 1, 1 } };
	struct fl__proto_read rd = { .region = 1, .npages = 4, .first = 8 };
	uint8_t id[16] = { 1, 2, 3 }, k[4] = { 2, 1, 2, 1 };
	uint64_t c[4] = { 111, 333, 0, 0 };
	unsigned s = 0;
	size_t n;

	seeds[s].n = (size_t)fl__proto_hello_encode(seeds[s].b, FZ_MAX_INPUT, &hello);
	s++;
	seeds[s].n = (size_t)fl__proto_ack_encode(seeds[s].b, FZ_MAX_INPUT, id, 4096, 512, regs, 2);
	s++;
	seeds[s].n = (size_t)fl__proto_read_encode(seeds[s].b, FZ_MAX_INPUT, 7, true, &rd);
	s++;
	n = (size_t)fl__proto_data_encode(seeds[s].b, FZ_MAX_INPUT, 7, &rd, k, NULL);
	memset(seeds[s].b + n, 0xa5, 2 * 4096);
	n += 2 * 4096;
	n += (size_t)fl__proto_trailer_encode(seeds[s].b + n, FZ_MAX_INPUT - n, c, 2, 0);
	seeds[s].n = n;
	s++;
	seeds[s].n = (size_t)fl__proto_error_encode(seeds[s].b, FZ_MAX_INPUT, 7, EBADMSG);
	s++;
	seeds[s].n = (size_t)fl__proto_bye_encode(seeds[s].b, FZ_MAX_INPUT);
	s++;
	/* a DATA of zero pages only, and a stream: HELLO, READ x2, DATA, ERROR, BYE */
	k[0] = k[2] = 1;
	n = (size_t)fl__proto_data_encode(seeds[s].b, FZ_MAX_INPUT, 9, &rd, k, NULL);
	n += (size_t)fl__proto_trailer_encode(seeds[s].b + n, FZ_MAX_INPUT - n, c, 0, EBADMSG);
	seeds[s].n = n;
	s++;
	for (unsigned i = 0; i < 6; i++) {
		const unsigned order[6] = { 0, 2, 2, 6, 4, 5 };
		memcpy(seeds[s].b + seeds[s].n, seeds[order[i]].b, seeds[order[i]].n);
		seeds[s].n += seeds[order[i]].n;
	}
	s++;
	while (s < NSEEDS) {
		/* random bytes behind a valid magic and version */
		seeds[s].n = 24 + fz_rnd() % 200;
		for (size_t i = 0; i < seeds[s].n; i++)
			seeds[s].b[i] = (uint8_t)fz_rnd();
		memcpy(seeds[s].b, seeds[0].b, 6);
		s++;
	}
}

static const uint8_t interesting[] = { 0, 1, 0x7f, 0x80, 0xff, 0x10, 0x02, 0x04 };
static const uint32_t boundaries[] = { 0, 1, 511, 512, 513, 4096, 0x7fffffff, 0xffffffff,
				       FL_PROTO_MAX_PAYLOAD, FL_PROTO_DATA_MAX };
static const struct fz_dict dict = { interesting, sizeof(interesting), NULL, 0,
				     boundaries, sizeof(boundaries) / sizeof(boundaries[0]) };

int main(int argc, char **argv)
{
	return fz_main(argc, argv, "proto", seeds, &nseeds, make_seeds, &dict, NULL);
}
#endif
