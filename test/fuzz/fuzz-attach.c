// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target: faultlined's ATTACH, as far as it goes before anything is
 * served: the payload decoded (fl__mgr_attach_decode) and its ranges
 * checked (daemon/checks.c fld_attach_check) against a session made up
 * from the input — its sources (images and templates of some length), the
 * ranges and bytes it already has, its beacon — and the daemon's limits.
 * No uffd, no engine: an accepted ATTACH would be handed to add_region as
 * it is, so the oracle states what add_region may assume.
 *
 * Input: a 48-byte session header (below), then the ATTACH payload.
 */
#include "faultlined.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                            \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			fprintf(stderr, "fuzz-attach: invariant failed: %s (line %d)\n", #cond, \
				__LINE__);                                                     \
			abort();                                                               \
		}                                                                              \
	} while (0)

/*
 * Session header:
 *   0  u8  bits 0-1 sources (0..3), bits 2-4 which are templates, bit 5 a beacon is set
 *   1  u16 max_ranges    3  u16 ranges already attached
 *   5  u8  max_bytes: 0 none, else 1 << (n % 64)
 *   6  u8  bytes already attached: 1 << (n % 64), 0 none
 *   8  3 x u64 source lengths (low 40 bits, page-aligned unless bit 0 of byte 7)
 *  32  reserved
 */
#define SESSION_HDR 48

static struct fl__mgr_range ranges[FL_MGR_MAX_RANGES];
static struct fld_template some_template;
static unsigned long n_accepted, n_refused;

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fld_config cfg = { 0 };
	struct fld_source sources[3] = { { 0 } };
	struct fld_session s = { .kind = FLD_CLIENT, .space = -1, .sources = sources };
	struct fl__mgr_attach a;
	uint64_t bytes = ~0ull, sum = 0;
	unsigned beacons = 0;
	char why[FL_MGR_MAX_ERRMSG + 1] = "";
	int r;

	if (size < SESSION_HDR)
		return 0;
	s.nsources = data[0] & 3;
	for (unsigned i = 0; i < 3; i++) {
		sources[i].id = i + 1;
		sources[i].tpl = data[0] & (4u << i) ? &some_template : NULL;
		sources[i].length = get64(data + 8 + 8 * i) & ((1ull << 40) - 1);
		if (!(data[7] & 1))
			sources[i].length &= ~4095ull;
	}
	s.beacon = data[0] & 0x20 ? 0x10000 : 0;
	cfg.max_ranges = (unsigned)(data[1] | data[2] << 8);
	s.nranges = (unsigned)(data[3] | data[4] << 8);
	cfg.max_bytes = data[5] ? 1ull << (data[5] % 64) : 0;
	s.bytes = data[6] ? 1ull << (data[6] % 64) : 0;
	if (fl__mgr_attach_decode(data + SESSION_HDR, size - SESSION_HDR, ranges, &a))
		return 0;
	CHECK(a.nranges <= FL_MGR_MAX_RANGES);
	r = fld_attach_check(&cfg, &s, ranges, a.nranges, &bytes, why, sizeof(why));
	if (r) {
		CHECK(r == -EINVAL || r == -ENOENT || r == -ERANGE || r == -EDQUOT || r == -EOVERFLOW);
		CHECK(why[0]);
		n_refused++;
		return 0;
	}
	n_accepted++;
	CHECK(s.nranges + a.nranges <= cfg.max_ranges);
	for (uint32_t i = 0; i < a.nranges; i++) {
		const struct fl__mgr_range *g = &ranges[i];
		CHECK(g->addr % 4096 == 0 && g->len % 4096 == 0 && g->offset % 4096 == 0);
		if (g->flags & FL_MGR_RANGE_BEACON) {
			CHECK(!g->source && g->len == 4096 && !s.beacon);
			CHECK(++beacons == 1);
		}
		if (!g->source) {
			CHECK(!g->mem && !g->offset);
		} else {
			const struct fld_source *src;
			CHECK(g->source <= s.nsources);
			src = &sources[g->source - 1];
			CHECK(g->offset <= src->length && g->len <= src->length - g->offset);
			if (src->tpl)
				CHECK(g->mem == 1 && !g->offset);
			else
				CHECK(!g->mem);
		}
		CHECK(sum + g->len >= sum);
		sum += g->len;
	}
	CHECK(bytes == sum);
	CHECK(s.bytes + sum >= s.bytes);
	CHECK(!cfg.max_bytes || s.bytes + sum <= cfg.max_bytes);
	return 0;
}

#ifdef FL_FUZZ_STANDALONE
/* ---- a driver for compilers without libFuzzer ------------------------------ */

#include "standalone.h"

#define NSEEDS 6

static struct fz_input seeds[NSEEDS];
static const unsigned nseeds = NSEEDS;

static void session(struct fz_input *in, uint8_t bits, unsigned max_ranges, unsigned nranges, uint8_t max_bytes,
		    uint8_t bytes, uint64_t len0, uint64_t len1, uint64_t len2)
{
	memset(in->b, 0, SESSION_HDR);
	in->b[0] = bits;
	in->b[1] = (uint8_t)max_ranges;
	in->b[2] = (uint8_t)(max_ranges >> 8);
	in->b[3] = (uint8_t)nranges;
	in->b[4] = (uint8_t)(nranges >> 8);
	in->b[5] = max_bytes;
	in->b[6] = bytes;
	memcpy(in->b + 8, &len0, 8);
	memcpy(in->b + 16, &len1, 8);
	memcpy(in->b + 24, &len2, 8);
}

static void attach(struct fz_input *in, const struct fl__mgr_range *rs, unsigned n)
{
	struct fl__mgr_attach m = { .features = 0, .nranges = n, .ranges = (struct fl__mgr_range *)rs };
	int len = fl__mgr_attach_encode(in->b + SESSION_HDR, FZ_MAX_INPUT - SESSION_HDR, &m);

	if (len < 0) {
		fprintf(stderr, "# cannot encode a seed\n");
		exit(99);
	}
	in->n = SESSION_HDR + (size_t)len;
}

static void make_seeds(void)
{
	/* An image source, a template and a zero-fill range with a beacon. */
	const struct fl__mgr_range good[4] = {
		{ .addr = 0x7f0000000000, .len = 64 << 12, .offset = 16 << 12, .source = 1 },
		{ .addr = 0x7f0000100000, .len = 32 << 12, .source = 2, .mem = 1 },
		{ .addr = 0x7f0000200000, .len = 1 << 30 },
		{ .addr = 0x7f0000010000, .len = 4096, .flags = FL_MGR_RANGE_BEACON },
	};
	/* Refused: past its source, a second beacon, a sum that wraps. */
	const struct fl__mgr_range bad[3] = {
		{ .addr = 0x10000, .len = 128 << 12, .offset = 4096, .source = 1 },
		{ .addr = 0x20000, .len = 4096, .flags = FL_MGR_RANGE_BEACON },
		{ .addr = 0x30000, .len = 0xfffffffffffff000ull },
	};
	unsigned s = 0;

	session(&seeds[s], 2 | 8, 256, 0, 40, 0, 128 << 12, 64 << 12, 0);
	attach(&seeds[s++], good, 4);
	session(&seeds[s], 3 | 8, 256, 10, 0, 20, 80 << 12, 32 << 12, 1 << 20);
	attach(&seeds[s++], good, 3);
	session(&seeds[s], 1, 8, 7, 0, 0, 128 << 12, 0, 0);
	attach(&seeds[s++], good, 2);
	session(&seeds[s], 1 | 0x20, 256, 0, 0, 0, 64 << 12, 0, 0);
	attach(&seeds[s++], bad, 2);
	session(&seeds[s], 0, 256, 0, 0, 63, 0, 0, 0);
	attach(&seeds[s++], bad + 2, 1);
	session(&seeds[s], 2, 1024, 0, 33, 0, 128 << 12, 128 << 12, 0);
	attach(&seeds[s++], good, 4);
}

static void finish(unsigned long iterations)
{
	fprintf(stderr, "# %lu mutated ATTACHes: %lu accepted, %lu refused\n", iterations, n_accepted, n_refused);
	if (!n_accepted || !n_refused)
		exit(1);	/* a run that reaches one side only tests nothing */
}

static const uint8_t interesting[] = { 0, 1, 2, 3, 4, 0x10, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xff };
static const uint32_t boundaries[] = { 0, 1, 2, 3, 4096, 4095, 0x1000000, 0x7fffffff, 0xfffff000, 0xffffffff };
static const struct fz_dict dict = { interesting, sizeof(interesting), NULL, 0,
				     boundaries, sizeof(boundaries) / sizeof(boundaries[0]) };

int main(int argc, char **argv)
{
	return fz_main(argc, argv, "attach", seeds, &nseeds, make_seeds, &dict, finish);
}
#endif
