// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target: the manager-protocol decoders (lib/mgr-proto.c), what a
 * hostile client of faultlined talks to.
 *
 * The input is used twice. First as it is: every payload decoder (HELLO,
 * WELCOME, OPEN, SOURCE, ATTACH, the u64 messages, ERROR) and the name
 * check get the whole input, so the decoders are reached without a header
 * in front. Then as a byte stream of messages the way the daemon reads
 * them: a header (its verdict checked against an independent statement
 * of the header rule), then that many payload bytes, again handed to every
 * decoder, and to the one decoder the header's type names, which must
 * accept or say -EBADMSG; until the stream ends or a header is refused.
 *
 * Whatever a decoder accepts must lie within the bounds mgr-proto.h
 * documents, and must re-encode to the same bytes (ERROR: with control
 * characters shown as '?', as the decoder promises). No decoder may read
 * past what it is given: each gets an exact-size heap copy, so ASan sees
 * an overread. fl__mgr_name_ok() is checked against an independent
 * statement of its rule.
 *
 * With clang, this builds as a libFuzzer target (-fsanitize=fuzzer). With
 * any other compiler, FL_FUZZ_STANDALONE adds a main() that runs the same
 * function over a generated corpus of valid messages and random mutations
 * of them: fuzz-mgr [ITERATIONS [SEED]].
 */
#include "mgr-proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "fuzz-mgr: invariant failed: %s (line %d)\n", #cond, __LINE__); \
			abort();                                                      \
		}                                                                     \
	} while (0)

static uint8_t scratch[FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD];
static struct fl__mgr_range ranges[FL_MGR_MAX_RANGES];

/* How often each decoder accepted: the standalone driver insists on all. */
enum { D_HELLO, D_WELCOME, D_OPEN, D_SOURCE, D_ATTACH, D_U64, D_ERROR, D_NAME, D_HDR, D_N };
static unsigned long accepted[D_N];

/* The rule of fl__mgr_name_ok(), stated component by component. */
static bool name_rule(const char *name)
{
	size_t n = strlen(name);
	const char *c = name;

	if (n < 1 || n > FL_MGR_MAX_NAME || name[0] == '/')
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] == 0x7f)
			return false;
	for (;;) {
		const char *end = strchr(c, '/');
		size_t k = end ? (size_t)(end - c) : strlen(c);
		if (end && k == 0)
			return false;	/* "//" */
		if (k == 2 && c[0] == '.' && c[1] == '.')
			return false;
		if (!end)
			return k > 0;	/* no trailing "/" */
		c = end + 1;
	}
}

static void check_name(const uint8_t *p, size_t len)
{
	char name[FL_MGR_MAX_NAME + 64];
	size_t n = len < sizeof(name) - 1 ? len : sizeof(name) - 1;

	memcpy(name, p, n);
	name[n] = 0;
	CHECK(fl__mgr_name_ok(name) == name_rule(name));
	accepted[D_NAME] += fl__mgr_name_ok(name);
}

static void check_hello(const uint8_t *p, size_t len)
{
	struct fl__mgr_hello m;

	if (fl__mgr_hello_decode(p, len, &m))
		return;
	accepted[D_HELLO]++;
	CHECK(len == 16);
	CHECK(m.role == FL_MGR_ROLE_CLIENT || m.role == FL_MGR_ROLE_OBSERVER);
	CHECK(m.flags == 0);
	CHECK(fl__mgr_hello_encode(scratch, &m) == (int)len);
	CHECK(memcmp(scratch, p, len) == 0);
}

static void check_welcome(const uint8_t *p, size_t len)
{
	struct fl__mgr_welcome m;

	if (fl__mgr_welcome_decode(p, len, &m))
		return;
	accepted[D_WELCOME]++;
	CHECK(len == 24);
	CHECK(m.pid != 0 && m.token != 0);
	CHECK(fl__mgr_welcome_encode(scratch, &m) == (int)len);
	CHECK(memcmp(scratch, p, len) == 0);
}

static void check_open(const uint8_t *p, size_t len)
{
	struct fl__mgr_open m;
	size_t n;

	memset(&m, 0xa5, sizeof(m));	/* a missing terminator would show */
	if (fl__mgr_open_decode(p, len, &m))
		return;
	accepted[D_OPEN]++;
	CHECK(m.kind == FL_MGR_SRC_IMAGE || m.kind == FL_MGR_SRC_TEMPLATE || m.kind == FL_MGR_SRC_SEGMENT);
	CHECK((m.flags & ~FL_MGR_OPEN_RESUME) == 0);
	n = strnlen(m.name, sizeof(m.name));
	CHECK(n < sizeof(m.name));	/* NUL-terminated */
	CHECK(n >= 1 && n <= FL_MGR_MAX_NAME);
	CHECK(len == 12 + n);
	CHECK(fl__mgr_name_ok(m.name));
	CHECK(name_rule(m.name));
	CHECK(memcmp(m.name, p + 12, n) == 0);
	CHECK(fl__mgr_open_encode(scratch, &m) == (int)len);
	CHECK(memcmp(scratch, p, len) == 0);
}

static void check_source(const uint8_t *p, size_t len)
{
	struct fl__mgr_source m;

	if (fl__mgr_source_decode(p, len, &m))
		return;
	accepted[D_SOURCE]++;
	CHECK(len == 24);
	CHECK(m.id >= 1);
	CHECK(m.mem <= 2);
	CHECK(m.length > 0);
	CHECK(m.page_size == 4096 || m.page_size == (2u << 20));
	CHECK(fl__mgr_source_encode(scratch, &m) == (int)len);
	CHECK(memcmp(scratch, p, len) == 0);
}

static void check_attach(const uint8_t *p, size_t len)
{
	struct fl__mgr_attach m;

	if (fl__mgr_attach_decode(p, len, ranges, &m))
		return;
	accepted[D_ATTACH]++;
	CHECK(m.nranges >= 1 && m.nranges <= FL_MGR_MAX_RANGES);
	CHECK(m.flags == 0);
	CHECK(m.ranges == ranges);
	CHECK(len == 16 + (size_t)m.nranges * FL_MGR_RANGE_SIZE);
	for (uint32_t i = 0; i < m.nranges; i++) {
		const struct fl__mgr_range *r = &m.ranges[i];
		CHECK(r->len > 0);
		CHECK(r->addr + r->len >= r->addr);	/* no wrap */
		CHECK(r->offset + r->len >= r->offset);
		CHECK(r->mem <= 2);
		CHECK((r->flags & ~FL_MGR_RANGE_BEACON) == 0);
	}
	/* A buffer one byte short is refused, an exact one round-trips. */
	CHECK(fl__mgr_attach_encode(scratch, len - 1, &m) == -EINVAL);
	CHECK(fl__mgr_attach_encode(scratch, len, &m) == (int)len);
	CHECK(memcmp(scratch, p, len) == 0);
}

static void check_u64(const uint8_t *p, size_t len)
{
	uint64_t v;

	if (fl__mgr_u64_decode(p, len, &v))
		return;
	accepted[D_U64]++;
	CHECK(len == 8);
	CHECK(fl__mgr_u64_encode(scratch, v) == 8);
	CHECK(memcmp(scratch, p, len) == 0);
}

static void check_error(const uint8_t *p, size_t len)
{
	char msg[FL_MGR_MAX_ERRMSG + 1];
	size_t n;
	int e = 0;

	memset(msg, 0xa5, sizeof(msg));
	if (fl__mgr_error_decode(p, len, &e, msg))
		return;
	accepted[D_ERROR]++;
	CHECK(e >= 1 && e <= 4095);
	CHECK(len >= 8 && len <= 8 + FL_MGR_MAX_ERRMSG);
	n = strnlen(msg, sizeof(msg));
	CHECK(n == len - 8);	/* terminated, and no NUL inside */
	for (size_t i = 0; i < n; i++) {
		uint8_t want = p[8 + i] < 0x20 ? '?' : p[8 + i];
		CHECK((uint8_t)msg[i] == want);
	}
	CHECK(fl__mgr_error_encode(scratch, e, msg) == (int)len);
	CHECK(memcmp(scratch, p, 8) == 0);
	CHECK(memcmp(scratch + 8, msg, n) == 0);
}

/* Shared spaces: what decodes is a valid name (and space), and encodes
 * back to the same bytes. */
static void check_space(const uint8_t *p, size_t len)
{
	static struct fl__mgr_space sp;
	struct fl__mgr_space_open so;
	char name[FL_MGR_MAX_SPACE_NAME + 1];

	if (!fl__mgr_space_open_decode(p, len, &so)) {
		CHECK(fl__mgr_space_name_ok(so.name));
		CHECK((so.flags & ~(FL_MGR_SPACE_RDONLY | FL_MGR_SPACE_PRIVATE)) == 0);
		CHECK(fl__mgr_space_open_encode(scratch, &so) == (int)len);
		CHECK(memcmp(scratch, p, len) == 0);
	}
	if (!fl__mgr_space_name_decode(p, len, name)) {
		CHECK(fl__mgr_space_name_ok(name));
		CHECK(fl__mgr_space_name_encode(scratch, name) == (int)len);
		CHECK(memcmp(scratch, p, len) == 0);
	}
	if (!fl__mgr_space_decode(p, len, &sp)) {
		CHECK(sp.nsegments >= 1 && sp.nsegments <= FL_MGR_MAX_SEGMENTS && sp.nroots <= FL_MGR_MAX_ROOTS);
		for (uint32_t i = 0; i < sp.nsegments; i++)
			CHECK(sp.segments[i].length && sp.segments[i].base % 4096 == 0 &&
			      (sp.segments[i].mem == 1 || sp.segments[i].mem == 2));
		for (uint32_t i = 0; i < sp.nroots; i++)
			CHECK(fl__mgr_space_name_ok(sp.roots[i].name));
		CHECK(fl__mgr_space_encode(scratch, &sp) == (int)len);
		CHECK(memcmp(scratch, p, len) == 0);
	}
}

/* Every decoder over the same len bytes at p (an exact-size copy). */
static void all_decoders(const uint8_t *p, size_t len)
{
	check_space(p, len);
	check_hello(p, len);
	check_welcome(p, len);
	check_open(p, len);
	check_source(p, len);
	check_attach(p, len);
	check_u64(p, len);
	check_error(p, len);
	check_name(p, len);
}

/* The decoder of the header's type accepts the payload or says -EBADMSG. */
static void typed_decoder(const struct fl__mgr_hdr *h, const uint8_t *p, size_t len)
{
	union {
		struct fl__mgr_hello hello;
		struct fl__mgr_welcome welcome;
		struct fl__mgr_open open;
		struct fl__mgr_source source;
		struct fl__mgr_attach attach;
		struct fl__mgr_space_open space_open;
		uint64_t u64;
	} u;
	static struct fl__mgr_space space;
	char msg[FL_MGR_MAX_ERRMSG + 1];
	int r, e;

	switch (h->type) {
	case FL_MGR_HELLO:
		r = fl__mgr_hello_decode(p, len, &u.hello);
		break;
	case FL_MGR_WELCOME:
		r = fl__mgr_welcome_decode(p, len, &u.welcome);
		break;
	case FL_MGR_OPEN:
		r = fl__mgr_open_decode(p, len, &u.open);
		break;
	case FL_MGR_SOURCE:
		r = fl__mgr_source_decode(p, len, &u.source);
		break;
	case FL_MGR_ATTACH:
		r = fl__mgr_attach_decode(p, len, ranges, &u.attach);
		break;
	case FL_MGR_ATTACHED:
	case FL_MGR_CLAIM:
	case FL_MGR_CLAIMED:
		r = fl__mgr_u64_decode(p, len, &u.u64);
		break;
	case FL_MGR_ERROR:
		r = fl__mgr_error_decode(p, len, &e, msg);
		break;
	case FL_MGR_SPACE_OPEN:
		r = fl__mgr_space_open_decode(p, len, &u.space_open);
		r = r == -EINVAL ? 0 : r;	/* a well-formed bad name */
		break;
	case FL_MGR_SPACE:
		r = fl__mgr_space_decode(p, len, &space);
		break;
	case FL_MGR_SPACE_CLOSE:
	case FL_MGR_SPACE_COMMIT:
		r = fl__mgr_space_name_decode(p, len, msg);
		r = r == -EINVAL ? 0 : r;
		break;
	case FL_MGR_COMMITTED:
		r = fl__mgr_u64_decode(p, len, &u.u64);
		break;
	case FL_MGR_DETACH:
	case FL_MGR_DETACHED:
	case FL_MGR_SPACE_CLOSED:
	case FL_MGR_STATS:
	case FL_MGR_STATS_JSON:
		return;	/* no payload decoder */
	default:
		CHECK(!"a header of unknown type was accepted");
		return;
	}
	CHECK(r == 0 || r == -EBADMSG);
}

/* The header rule of mgr-proto.h, from the raw bytes: what decode must say. */
static int hdr_rule(const uint8_t *d, size_t size)
{
	uint32_t magic, length;
	uint16_t version, type;

	if (size < FL_MGR_HDR_SIZE)
		return -EPROTO;
	magic = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
	version = (uint16_t)(d[4] | d[5] << 8);
	type = (uint16_t)(d[6] | d[7] << 8);
	length = (uint32_t)d[8] | (uint32_t)d[9] << 8 | (uint32_t)d[10] << 16 | (uint32_t)d[11] << 24;
	if (memcmp(d, "FLMD", 4) != 0 || magic != FL_MGR_MAGIC)
		return -EPROTO;
	if (version != FL_MGR_VERSION)
		return -EPROTONOSUPPORT;
	if (type < FL_MGR_HELLO || type > FL_MGR_TYPE_MAX)
		return -EPROTO;
	if (length > FL_MGR_MAX_PAYLOAD)
		return -EMSGSIZE;
	return 0;
}

static void check_hdr(const uint8_t *data, size_t size, struct fl__mgr_hdr *h, int r)
{
	uint8_t again[FL_MGR_HDR_SIZE];
	struct fl__mgr_hdr h2;

	CHECK(r == hdr_rule(data, size));
	if (r)
		return;
	accepted[D_HDR]++;
	CHECK(h->magic == FL_MGR_MAGIC);
	CHECK(h->version == FL_MGR_VERSION);
	CHECK(h->type >= FL_MGR_HELLO && h->type <= FL_MGR_TYPE_MAX);
	CHECK(h->length <= FL_MGR_MAX_PAYLOAD);
	fl__mgr_hdr_encode(again, h->type, h->length, h->seq);
	CHECK(memcmp(again, data, FL_MGR_HDR_SIZE) == 0);
	CHECK(fl__mgr_hdr_decode(again, sizeof(again), &h2) == 0);
	CHECK(memcmp(&h2, h, sizeof(h2)) == 0);
}

static void decode_copy(const uint8_t *data, size_t len, const struct fl__mgr_hdr *h)
{
	uint8_t *copy = malloc(len ? len : 1);

	if (!copy)
		return;
	memcpy(copy, data, len);
	all_decoders(copy, len);
	if (h)
		typed_decoder(h, copy, len);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The input as one payload. */
	decode_copy(data, size, NULL);

	/* The input as a stream of messages. */
	for (;;) {
		struct fl__mgr_hdr h;
		size_t len;
		int r;

		r = fl__mgr_hdr_decode(data, size, &h);
		check_hdr(data, size, &h, r);
		if (r)
			return 0;
		data += FL_MGR_HDR_SIZE;
		size -= FL_MGR_HDR_SIZE;
		if (h.length > size)	/* a truncated message: a bad packet */
			return 0;
		len = h.length;
		decode_copy(data, len, &h);
		data += len;
		size -= len;
	}
}

#ifdef FL_FUZZ_STANDALONE
/* ---- a driver for compilers without libFuzzer ------------------------------ */

#include "standalone.h"

#define NSEEDS 26

static struct fz_input seeds[NSEEDS];
static unsigned nseeds;

/* A seed: header + payload (or the bare payload when type is 0). */
static void add(uint16_t type, const uint8_t *payload, int len)
{
	struct fz_input *s = &seeds[nseeds++];

	CHECK(len >= 0 && nseeds <= NSEEDS);
	s->n = 0;
	if (type) {
		fl__mgr_hdr_encode(s->b, type, (uint32_t)len, 7 + nseeds);
		s->n = FL_MGR_HDR_SIZE;
	}
	memcpy(s->b + s->n, payload, (size_t)len);
	s->n += (size_t)len;
}

/* Valid messages of every type, bare payloads, and a stream of several. */
static void make_seeds(void)
{
	static uint8_t p[FL_MGR_MAX_PAYLOAD];
	static struct fl__mgr_range rs[40], many[FL_MGR_MAX_RANGES + 1];
	struct fl__mgr_hello hello = { .role = FL_MGR_ROLE_OBSERVER, .token = 0x1122334455667788ull };
	struct fl__mgr_welcome welcome = { .pid = 4242, .max_ranges = FL_MGR_MAX_RANGES,
					   .token = 99, .max_bytes = 1ull << 30 };
	struct fl__mgr_open op = { .kind = FL_MGR_SRC_TEMPLATE, .region = 3, .flags = FL_MGR_OPEN_RESUME };
	struct fl__mgr_source source = { .id = 1, .mem = 2, .length = 8u << 20, .page_size = 2u << 20 };
	struct fl__mgr_attach attach = { .features = 0x1ff, .nranges = 3, .ranges = rs };
	struct fz_input *s;

	for (unsigned i = 0; i < 40; i++) {
		rs[i].addr = 0x7f0000000000ull + (uint64_t)i * (1u << 21);
		rs[i].len = 4096ull << (i % 4);
		rs[i].offset = (uint64_t)i * 4096;
		rs[i].source = i % 3;
		rs[i].mem = (uint16_t)(i % 3);
		rs[i].flags = i == 1 ? FL_MGR_RANGE_BEACON : 0;
	}
	strcpy(op.name, "images/db-2024.img");

	add(FL_MGR_HELLO, p, fl__mgr_hello_encode(p, &hello));
	add(FL_MGR_WELCOME, p, fl__mgr_welcome_encode(p, &welcome));
	add(FL_MGR_OPEN, p, fl__mgr_open_encode(p, &op));
	add(FL_MGR_SOURCE, p, fl__mgr_source_encode(p, &source));
	add(FL_MGR_ATTACH, p, fl__mgr_attach_encode(p, sizeof(p), &attach));
	add(FL_MGR_ATTACHED, p, fl__mgr_u64_encode(p, 3));
	add(FL_MGR_CLAIM, p, fl__mgr_u64_encode(p, 0xdeadbeefcafef00dull));
	add(FL_MGR_CLAIMED, p, fl__mgr_u64_encode(p, 17));
	add(FL_MGR_ERROR, p, fl__mgr_error_encode(p, ENOENT, "no such image: images/db-2024.img"));
	add(FL_MGR_DETACH, p, 0);
	add(FL_MGR_STATS_JSON, (const uint8_t *)"{\"sessions\":1}", 14);
	/* names at the edges of the rule */
	op.kind = FL_MGR_SRC_IMAGE;
	op.flags = 0;
	strcpy(op.name, "a/..b/.../c./.d");
	add(FL_MGR_OPEN, p, fl__mgr_open_encode(p, &op));
	memset(op.name, 'x', FL_MGR_MAX_NAME);
	op.name[FL_MGR_MAX_NAME] = 0;
	add(FL_MGR_OPEN, p, fl__mgr_open_encode(p, &op));
	attach.nranges = 40;
	add(FL_MGR_ATTACH, p, fl__mgr_attach_encode(p, sizeof(p), &attach));
	/* the most ranges, and one more than that (refused, the length agreeing) */
	attach.ranges = many;
	attach.nranges = FL_MGR_MAX_RANGES;
	for (unsigned i = 0; i <= FL_MGR_MAX_RANGES; i++)
		many[i] = rs[i % 40];
	add(FL_MGR_ATTACH, p, fl__mgr_attach_encode(p, sizeof(p), &attach));
	memcpy(p + 16 + FL_MGR_MAX_RANGES * FL_MGR_RANGE_SIZE, p + 16, FL_MGR_RANGE_SIZE);
	p[8] = (uint8_t)(FL_MGR_MAX_RANGES + 1);
	p[9] = (uint8_t)((FL_MGR_MAX_RANGES + 1) >> 8);
	add(FL_MGR_ATTACH, p, 16 + (FL_MGR_MAX_RANGES + 1) * FL_MGR_RANGE_SIZE);
	attach.ranges = rs;
	/* bare payloads, for the decoders fed the whole input */
	add(0, p, fl__mgr_hello_encode(p, &hello));
	add(0, p, fl__mgr_source_encode(p, &source));
	attach.nranges = 2;
	add(0, p, fl__mgr_attach_encode(p, sizeof(p), &attach));
	add(0, p, fl__mgr_error_encode(p, 4095, "bad\tthing"));
	add(0, (const uint8_t *)"\x01\0\0\0\0\0\0\0\x07\0\0\0a/b/c.i", 19);
	/* a session: HELLO, OPEN, ATTACH, ATTACHED, ERROR, DETACH */
	s = &seeds[nseeds++];
	s->n = 0;
	for (unsigned i = 0; i < 6; i++) {
		const unsigned order[6] = { 0, 2, 4, 5, 8, 9 };
		memcpy(s->b + s->n, seeds[order[i]].b, seeds[order[i]].n);
		s->n += seeds[order[i]].n;
	}
	while (nseeds < NSEEDS) {
		/* random bytes behind a valid magic and version */
		s = &seeds[nseeds++];
		s->n = 24 + fz_rnd() % 200;
		for (size_t i = 0; i < s->n; i++)
			s->b[i] = (uint8_t)fz_rnd();
		memcpy(s->b, seeds[0].b, 6);
	}
}

static const uint8_t interesting[] = { 0, 1, 2, 0x7f, 0x80, 0xff, 0x1f, 0x20, '.', '/', 13 };
static const uint16_t fields16[] = { 0, 1, 2, 12, 13, 14, 254, 255, 256, 0xffff };	/* name_len, version, type, mem, flags */
static const uint32_t fields32[] = { 0, 1, 2, 3, 4095, 4096, 8192, 2u << 20, FL_MGR_MAX_RANGES,
				     FL_MGR_MAX_RANGES + 1, FL_MGR_MAX_PAYLOAD, FL_MGR_MAX_PAYLOAD + 1,
				     0x7fffffff, 0xffffffff, FL_MGR_MAGIC };
static const struct fz_dict dict = { interesting, sizeof(interesting), fields16,
				     sizeof(fields16) / sizeof(fields16[0]), fields32,
				     sizeof(fields32) / sizeof(fields32[0]) };

static void finish(unsigned long iterations)
{
	fprintf(stderr, "# %lu mutated inputs; accepted: hello %lu welcome %lu open %lu source %lu "
		"attach %lu u64 %lu error %lu name %lu header %lu\n", iterations,
		accepted[D_HELLO], accepted[D_WELCOME], accepted[D_OPEN], accepted[D_SOURCE],
		accepted[D_ATTACH], accepted[D_U64], accepted[D_ERROR], accepted[D_NAME], accepted[D_HDR]);
	for (unsigned d = 0; d < D_N; d++)
		CHECK(accepted[d] > 0);	/* every accept path was reached */
}

int main(int argc, char **argv)
{
	return fz_main(argc, argv, "mgr", seeds, &nseeds, make_seeds, &dict, finish);
}
#endif
