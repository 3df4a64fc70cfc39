// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target: what a Redis server sends the Redis store (lib/redis).
 *
 * The first byte picks the decoder, the rest is its input:
 *  - a page value (fl__redis_value_check): it must deliver a page only when
 *    the value is whole and right — the header names the page, region and
 *    image asked for, both checksums match — and write nothing otherwise.
 *    Bits 2 and 3 of the first byte recompute the header's and the page's
 *    checksums after mutation, so the checks behind them are reached.
 *  - a MOVED/ASK redirect (fl__cluster_parse_redirect): an accepted one
 *    names a slot, a port, and exactly the host the reply spelled (or the
 *    node asked, when it spelled none) — never a host cut short.
 *  - a stream of replies, fed in pieces (the second byte says how big)
 *    through a reader with the client's reply objects and a sink that
 *    checks MGET values as they arrive (fl__cluster_reader_new): every
 *    string of a top-level array goes to the sink and comes back with the
 *    sink's verdict, nothing nested does, arrays stay within their bound.
 *  - an image description (fl__redis_meta_check), bit 2 recomputing its
 *    checksum: an accepted one is exactly its header and regions, each
 *    region a whole number of pages with a terminated name.
 */
#include "redis-cluster.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                            \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			fprintf(stderr, "fuzz-redis: invariant failed: %s (line %d)\n", #cond, \
				__LINE__);                                                     \
			abort();                                                               \
		}                                                                              \
	} while (0)

/* A page value's header (store-redis.c struct rs_value_hdr): offsets the
 * fix-up and the oracle use; make_seeds() checks they still hold. */
#define V_HDR 56
#define V_KIND 5
#define V_REGION 8
#define V_PAGE 16
#define V_CSUM 24
#define V_ID 32
#define V_HDR_CSUM 48

#define MAX_SUNK 64
#define RC_MAX_ELEMENTS (1 << 20)	/* redis-cluster.c */

static const uint8_t want_id[FL_IMAGE_ID_LEN] = { 0xfa, 0x17, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 };
static const unsigned want_region = 3;
static const uint64_t want_page = 42;
static uint8_t dst[FL_PAGE_SIZE];
static long long sunk[MAX_SUNK];
static bool sunk_set[MAX_SUNK];
static unsigned long n_delivered, n_refused, n_redirects, n_replies, n_metas;

static uint64_t hdr_csum(const uint8_t *v)
{
	uint8_t h[V_HDR];
	memcpy(h, v, V_HDR);
	memset(h + V_HDR_CSUM, 0, 8);
	return XXH3_64bits(h, V_HDR);
}

static void fix_up(uint8_t *v, size_t n, bool page, bool hdr)
{
	uint64_t c;
	if (n < V_HDR)
		return;
	if (page && n == V_HDR + FL_PAGE_SIZE) {
		c = XXH3_64bits(v + V_HDR, FL_PAGE_SIZE);
		memcpy(v + V_CSUM, &c, 8);
	}
	if (hdr) {
		c = hdr_csum(v);
		memcpy(v + V_HDR_CSUM, &c, 8);
	}
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static bool untouched(void)
{
	for (size_t i = 0; i < sizeof(dst); i++)
		if (dst[i] != 0xa5)
			return false;
	return true;
}

static void one_value(const uint8_t *in, size_t n, uint8_t ctl)
{
	uint8_t *v = malloc(n + 1);
	uint32_t region;
	int r;

	if (!v)
		return;
	memcpy(v, in, n);
	fix_up(v, n, ctl & 4, ctl & 8);
	memset(dst, 0xa5, sizeof(dst));
	r = fl__redis_value_check((const char *)v, n, want_id, want_region, want_page, dst);
	if (r == 0 || r == 1) {
		n_delivered++;
		CHECK(n >= V_HDR && memcmp(v, "FLRP", 4) == 0 && v[4] == 1 && !v[6] && !v[7]);
		memcpy(&region, v + V_REGION, 4);
		CHECK(region == want_region && get64(v + V_PAGE) == want_page && !memcmp(v + V_ID, want_id, 16));
		CHECK(!v[12] && !v[13] && !v[14] && !v[15]);	/* reserved2 */
		CHECK(hdr_csum(v) == get64(v + V_HDR_CSUM));
	}
	if (r == 0) {
		CHECK(v[V_KIND] == FL_PAGE_DATA && n == V_HDR + FL_PAGE_SIZE);
		CHECK(XXH3_64bits(v + V_HDR, FL_PAGE_SIZE) == get64(v + V_CSUM));
		CHECK(memcmp(dst, v + V_HDR, FL_PAGE_SIZE) == 0);
	} else if (r == 1) {
		CHECK(v[V_KIND] == FL_PAGE_ZERO && n == V_HDR && !get64(v + V_CSUM));
		CHECK(untouched());
	} else {
		CHECK(r == -EBADMSG && untouched());
		n_refused++;
	}
	free(v);
}

/* An image description's layout (store-redis.c struct rs_meta_hdr, rs_meta_region). */
#define M_HDR 104
#define M_REGION 88

static void one_meta(const uint8_t *in, size_t n, uint8_t ctl)
{
	uint8_t *m = malloc(n + 1), id[FL_IMAGE_ID_LEN];
	uint32_t nregions = UINT32_MAX, hdr_nregions;
	uint64_t c;
	int r;

	if (!m)
		return;
	memcpy(m, in, n);
	if ((ctl & 4) && n >= 8) {
		c = XXH3_64bits(m, n - 8);
		memcpy(m + n - 8, &c, 8);
	}
	r = fl__redis_meta_check((const char *)m, n, id, &nregions);
	if (r == 0) {
		n_metas++;
		CHECK(n >= M_HDR + 8 && memcmp(m, "FLRDMETA", 8) == 0);
		memcpy(&hdr_nregions, m + 16, 4);
		CHECK(nregions == hdr_nregions && n == M_HDR + (size_t)nregions * M_REGION + 8);
		CHECK(memcmp(id, m + 24, FL_IMAGE_ID_LEN) == 0 && XXH3_64bits(m, n - 8) == get64(m + n - 8));
		for (uint32_t i = 0; i < nregions; i++) {
			const uint8_t *g = m + M_HDR + (size_t)i * M_REGION;
			CHECK(get64(g + 8) % FL_PAGE_SIZE == 0 && memchr(g + 24, 0, 64));
		}
	} else {
		CHECK(r == -EBADMSG || r == -EPROTO);
		n_refused++;
	}
	free(m);
}

static void one_redirect(const uint8_t *in, size_t n)
{
	char host[256], field[400];
	const char *s = (const char *)in, *colon;
	char *sp;
	size_t m;
	int port = -1, slot = -1;

	if (fl__cluster_parse_redirect(s, n, "from.example", host, sizeof(host), &port, &slot))
		return;
	n_redirects++;
	CHECK(slot >= 0 && slot < (int)FL__CLUSTER_SLOTS && port >= 1 && port <= 65535);
	CHECK(memchr(host, 0, sizeof(host)) && host[0]);
	/* The host as the reply spelled it: after the slot, before the last ':'. */
	m = strnlen(s, n);
	CHECK(m < sizeof(field));
	memcpy(field, s, m);
	field[m] = '\0';
	sp = strchr(field, ' ');
	CHECK(sp);
	CHECK(strtol(sp + 1, &sp, 10) == slot && *sp == ' ');
	colon = strrchr(sp + 1, ':');
	CHECK(colon);
	field[colon - field] = '\0';
	sp++;
	if (!*sp)
		CHECK(strcmp(host, "from.example") == 0);
	else if (sp[0] == '[' && strlen(sp) > 2 && sp[strlen(sp) - 1] == ']')
		CHECK(strlen(host) == strlen(sp) - 2 && memcmp(host, sp + 1, strlen(host)) == 0);
	else
		CHECK(strcmp(host, sp) == 0);
}

static long long sink_value(void *ctx, size_t idx, const char *str, size_t len)
{
	int r;
	(void)ctx;
	r = fl__redis_value_check(str, len, want_id, want_region, want_page + idx, dst);
	if (idx < MAX_SUNK) {
		sunk[idx] = r;
		sunk_set[idx] = true;
	}
	return r;
}

static void check_reply(const redisReply *r, unsigned depth)
{
	CHECK(r);
	switch (r->type) {
	case REDIS_REPLY_STRING:
		/* Every string of a top-level array is sunk. */
		CHECK(depth != 1);
		/* fallthrough */
	case REDIS_REPLY_STATUS:
	case REDIS_REPLY_ERROR:
		CHECK(r->str && r->str[r->len] == '\0');
		break;
	case REDIS_REPLY_ARRAY:
		CHECK(r->elements <= RC_MAX_ELEMENTS);
		for (size_t i = 0; i < r->elements; i++) {
			check_reply(r->element[i], depth + 1);
			if (depth == 0 && i < MAX_SUNK && r->element[i]->type == FL__CLUSTER_REPLY_SUNK)
				CHECK(sunk_set[i] && r->element[i]->integer == sunk[i]);
		}
		break;
	case FL__CLUSTER_REPLY_SUNK:
		CHECK(depth == 1);
		CHECK(r->integer == 0 || r->integer == 1 || r->integer == -EBADMSG);
		break;
	case REDIS_REPLY_INTEGER:
	case REDIS_REPLY_NIL:
		break;
	default:
		CHECK(!"a reply of unknown type");
	}
}

static void one_stream(const uint8_t *in, size_t n, size_t piece)
{
	struct fl__cluster_sink sink = { .string = sink_value };
	redisReader *rd = fl__cluster_reader_new();
	size_t at = 0;

	if (!rd)
		return;
	rd->privdata = &sink;
	memset(sunk_set, 0, sizeof(sunk_set));
	while (at < n) {
		size_t k = n - at < piece ? n - at : piece;
		void *reply = NULL;
		if (redisReaderFeed(rd, (const char *)in + at, k) != REDIS_OK)
			break;
		at += k;
		while (redisReaderGetReply(rd, &reply) == REDIS_OK && reply) {
			n_replies++;
			check_reply(reply, 0);
			freeReplyObject(reply);
			reply = NULL;
			memset(sunk_set, 0, sizeof(sunk_set));
		}
		if (rd->err)
			break;
	}
	redisReaderFree(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	switch (data[0] % 4) {
	case 0:
		one_value(data + 1, size - 1, data[0]);
		break;
	case 1:
		one_redirect(data + 1, size - 1);
		break;
	case 3:
		one_meta(data + 1, size - 1, data[0]);
		break;
	default:
		one_stream(data + 2, size - 2, 1 + (size_t)data[1] * 64);
	}
	return 0;
}

#ifdef FL_FUZZ_STANDALONE
/* ---- a driver for compilers without libFuzzer ------------------------------ */

#include "standalone.h"

#define NSEEDS 19

static struct fz_input seeds[NSEEDS];
static const unsigned nseeds = NSEEDS;

/* A value as the push writes it (data NULL: a zero page). */
static size_t make_value(uint8_t *v, const uint8_t *id, uint32_t region, uint64_t page, const uint8_t *data)
{
	memset(v, 0, V_HDR);
	memcpy(v, "FLRP", 4);
	v[4] = 1;
	v[V_KIND] = data ? FL_PAGE_DATA : FL_PAGE_ZERO;
	memcpy(v + V_REGION, &region, 4);
	memcpy(v + V_PAGE, &page, 8);
	memcpy(v + V_ID, id, 16);
	if (data)
		memcpy(v + V_HDR, data, FL_PAGE_SIZE);
	fix_up(v, data ? V_HDR + FL_PAGE_SIZE : V_HDR, true, true);
	return data ? V_HDR + FL_PAGE_SIZE : V_HDR;
}

static void text(struct fz_input *in, uint8_t sel, const char *s)
{
	in->b[0] = sel;
	in->b[1] = 0;
	in->n = 1 + strlen(s);
	memcpy(in->b + 1, s, strlen(s));
}

static void make_seeds(void)
{
	static uint8_t page[FL_PAGE_SIZE];
	static const uint8_t other_id[16] = { 9 };
	char longhost[400];
	struct fz_input *in;
	unsigned s = 0;
	size_t n;

	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 7 + 3);
	/* values: data, zero, another page's, another image's (fix-ups on and off) */
	in = &seeds[s++];
	in->b[0] = 0 | 4 | 8;
	in->n = 1 + make_value(in->b + 1, want_id, want_region, want_page, page);
	/* The layout the oracle assumes is the library's: a value made by it is accepted. */
	if (fl__redis_value_check((const char *)in->b + 1, in->n - 1, want_id, want_region, want_page, dst)) {
		fprintf(stderr, "# the value layout changed: update fuzz-redis.c\n");
		exit(99);
	}
	in = &seeds[s++];
	in->b[0] = 0 | 8;
	in->n = 1 + make_value(in->b + 1, want_id, want_region, want_page, NULL);
	in = &seeds[s++];
	in->b[0] = 0;
	in->n = 1 + make_value(in->b + 1, want_id, want_region, want_page, page);
	in = &seeds[s++];
	in->b[0] = 0 | 4 | 8;
	in->n = 1 + make_value(in->b + 1, want_id, want_region, want_page + 1, page);
	in = &seeds[s++];
	in->b[0] = 0 | 4 | 8;
	in->n = 1 + make_value(in->b + 1, other_id, want_region, want_page, page);
	/* redirects */
	text(&seeds[s++], 1, "MOVED 3999 127.0.0.1:6381");
	text(&seeds[s++], 1, "ASK 12 [::1]:7000");
	text(&seeds[s++], 1, "MOVED 16383 :6379");
	text(&seeds[s++], 1, "ASK 1 []:6379");
	memset(longhost, 'h', sizeof(longhost));
	snprintf(longhost, 11, "MOVED 1 ");
	longhost[8] = 'h';
	snprintf(longhost + 8 + 255, 20, ":6380");	/* a 255-character host: the longest that fits */
	text(&seeds[s++], 1, longhost);
	longhost[8 + 255] = 'h';
	snprintf(longhost + 8 + 256, 20, ":6380");	/* 256: refused */
	text(&seeds[s++], 1, longhost);
	/* replies: an MGET of a value, a zero page and a nil; nested; errors */
	in = &seeds[s++];
	in->b[0] = 2;
	in->b[1] = 3;
	n = (size_t)sprintf((char *)in->b + 2, "*3\r\n$%d\r\n", V_HDR + FL_PAGE_SIZE);
	n += make_value(in->b + 2 + n, want_id, want_region, want_page, page);
	n += (size_t)sprintf((char *)in->b + 2 + n, "\r\n$%d\r\n", V_HDR);
	n += make_value(in->b + 2 + n, want_id, want_region, want_page + 1, NULL);
	n += (size_t)sprintf((char *)in->b + 2 + n, "\r\n$-1\r\n");
	in->n = 2 + n;
	in = &seeds[s++];
	in->b[0] = 2;
	in->b[1] = 0;
	n = (size_t)sprintf((char *)in->b + 2, "*2\r\n$%d\r\n", V_HDR);
	n += make_value(in->b + 2 + n, want_id, want_region, want_page, NULL);
	n += (size_t)sprintf((char *)in->b + 2 + n, "\r\n$5\r\nhello\r\n");
	in->n = 2 + n;
	text(&seeds[s++], 2, "*3\r\n*2\r\n$3\r\nabc\r\n:5\r\n$-1\r\n+OK\r\n-MOVED 1 h:1\r\n:42\r\n");
	text(&seeds[s++], 2, "*2\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$4\r\nnode\r\n*0\r\n");
	text(&seeds[s++], 2, "-ASK 77 [fe80::1]:6379\r\n+PONG\r\n$0\r\n\r\n*-1\r\n*1\r\n*1\r\n*1\r\n$1\r\nx\r\n");
	text(&seeds[s++], 2, "*2000000\r\n$1\r\n");
	/* image descriptions: two regions (checksum recomputed after mutation, or not) */
	for (int k = 0; k < 2; k++) {
		uint32_t v32;
		uint64_t v64;
		uint8_t *m;
		in = &seeds[s++];
		in->b[0] = k ? 3 : 3 | 4;
		m = in->b + 1;
		memset(m, 0, M_HDR + 2 * M_REGION + 8);
		memcpy(m, "FLRDMETA", 8);
		v32 = 1;
		memcpy(m + 8, &v32, 4);
		v32 = FL_PAGE_SIZE;
		memcpy(m + 12, &v32, 4);
		v32 = 2;
		memcpy(m + 16, &v32, 4);
		v32 = 512;
		memcpy(m + 20, &v32, 4);
		memcpy(m + 24, want_id, 16);
		for (int i = 0; i < 2; i++) {
			v64 = 0x7f0000000000ull + (uint64_t)i * (1 << 20);
			memcpy(m + M_HDR + i * M_REGION, &v64, 8);
			v64 = (uint64_t)(i + 1) * 16 * FL_PAGE_SIZE;
			memcpy(m + M_HDR + i * M_REGION + 8, &v64, 8);
			m[M_HDR + i * M_REGION + 24] = (uint8_t)('a' + i);
		}
		v64 = XXH3_64bits(m, M_HDR + 2 * M_REGION);
		memcpy(m + M_HDR + 2 * M_REGION, &v64, 8);
		in->n = 1 + M_HDR + 2 * M_REGION + 8;
		if (!k) {
			uint8_t id[FL_IMAGE_ID_LEN];
			uint32_t nr;
			if (fl__redis_meta_check((const char *)m, in->n - 1, id, &nr)) {
				fprintf(stderr, "# the description layout changed: update fuzz-redis.c\n");
				exit(99);
			}
		}
	}
	if (s != NSEEDS)
		exit(99);
}

static void finish(unsigned long iterations)
{
	fprintf(stderr, "# %lu mutated inputs: %lu values delivered, %lu refused, %lu redirects, %lu replies, %lu descriptions\n",
		iterations, n_delivered, n_refused, n_redirects, n_replies, n_metas);
	if (!n_delivered || !n_refused || !n_redirects || !n_replies || !n_metas)
		exit(1);	/* a run that reaches one side only tests nothing */
}

static const uint8_t interesting[] = { '*', '$', ':', '+', '-', '\r', '\n', '0', '1', '9', ' ', '[', ']', 0, 0xff };
static const uint32_t boundaries[] = { 0, 1, 2, 3, 42, 43, 16383, 16384, 0xffffffff };
static const struct fz_dict dict = { interesting, sizeof(interesting), NULL, 0,
				     boundaries, sizeof(boundaries) / sizeof(boundaries[0]) };

int main(int argc, char **argv)
{
	return fz_main(argc, argv, "redis", seeds, &nseeds, make_seeds, &dict, finish);
}
#endif
