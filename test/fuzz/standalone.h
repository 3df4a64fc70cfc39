/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The driver the fuzz targets share when built without libFuzzer
 * (FL_FUZZ_STANDALONE): a xorshift generator, a mutator over a target's
 * seeds (bit flips, bytes and 16/32-bit fields from the target's
 * dictionary, truncation, deletion, insertion, splices of other seeds), and
 * main(): TARGET [ITERATIONS [SEED]] runs every seed, then ITERATIONS
 * mutations, and reports "PASS fuzz/NAME" (also to $FL_TEST_RESULTS).
 */
#ifndef FL_FUZZ_STANDALONE_H
#define FL_FUZZ_STANDALONE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FZ_MAX_INPUT (64 * 1024)

struct fz_input {
	uint8_t b[FZ_MAX_INPUT];
	size_t n;
};

/* Values worth planting: bytes, and 16/32-bit fields (either may be empty). */
struct fz_dict {
	const uint8_t *bytes;
	size_t nbytes;
	const uint16_t *u16;
	size_t nu16;
	const uint32_t *u32;
	size_t nu32;
};

static uint64_t fz_state;

static uint32_t fz_rnd(void)
{
	fz_state ^= fz_state << 13;
	fz_state ^= fz_state >> 7;
	fz_state ^= fz_state << 17;
	return (uint32_t)(fz_state >> 16);
}

static void fz_mutate(struct fz_input *in, const struct fz_input *seeds, unsigned nseeds, const struct fz_dict *d)
{
	unsigned rounds = 1 + fz_rnd() % 4;

	for (unsigned r = 0; r < rounds && in->n; r++) {
		size_t at = fz_rnd() % in->n;
		switch (fz_rnd() % 8) {
		case 0:
			in->b[at] ^= (uint8_t)(1u << (fz_rnd() % 8));
			break;
		case 1:
			in->b[at] = d->nbytes ? d->bytes[fz_rnd() % d->nbytes] : (uint8_t)fz_rnd();
			break;
		case 2: /* a 32-bit field set to a boundary value */
			if (d->nu32 && (at & ~(size_t)3) + 4 <= in->n) {
				uint32_t x = d->u32[fz_rnd() % d->nu32];
				memcpy(in->b + (at & ~(size_t)3), &x, 4);
			}
			break;
		case 3: /* a 16-bit field */
			if (d->nu16 && (at & ~(size_t)1) + 2 <= in->n) {
				uint16_t x = d->u16[fz_rnd() % d->nu16];
				memcpy(in->b + (at & ~(size_t)1), &x, 2);
			}
			break;
		case 4: /* truncate */
			in->n = at;
			break;
		case 5: /* delete a byte */
			memmove(in->b + at, in->b + at + 1, in->n - at - 1);
			in->n--;
			break;
		case 6: /* insert a byte */
			if (in->n < FZ_MAX_INPUT) {
				memmove(in->b + at + 1, in->b + at, in->n - at);
				in->b[at] = d->nbytes ? d->bytes[fz_rnd() % d->nbytes] : (uint8_t)fz_rnd();
				in->n++;
			}
			break;
		default: { /* splice in part of another seed */
			const struct fz_input *o = &seeds[fz_rnd() % nseeds];
			size_t from = o->n ? fz_rnd() % o->n : 0, k = o->n - from;
			if (k > FZ_MAX_INPUT - at)
				k = FZ_MAX_INPUT - at;
			memcpy(in->b + at, o->b + from, k);
			if (at + k > in->n)
				in->n = at + k;
			break;
		}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * make_seeds() fills seeds[0..*nseeds) (it may use fz_rnd()); finish()
 * (optional) checks the run as a whole once it is over.
 */
static int fz_main(int argc, char **argv, const char *name, struct fz_input *seeds, const unsigned *nseeds,
		   void (*make_seeds)(void), const struct fz_dict *d, void (*finish)(unsigned long iterations))
{
	unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
	static struct fz_input in;
	const char *results = getenv("FL_TEST_RESULTS");

	fz_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x9e3779b97f4a7c15ull;
	if (!fz_state)
		fz_state = 1;
	make_seeds();
	for (unsigned i = 0; i < *nseeds; i++)
		LLVMFuzzerTestOneInput(seeds[i].b, seeds[i].n);
	for (unsigned long it = 0; it < iterations; it++) {
		in = seeds[fz_rnd() % *nseeds];
		fz_mutate(&in, seeds, *nseeds, d);
		LLVMFuzzerTestOneInput(in.b, in.n);
	}
	if (finish)
		finish(iterations);
	else
		fprintf(stderr, "# %lu mutated inputs\n", iterations);
	printf("PASS fuzz/%s\n", name);
	if (results && *results) {
		FILE *f = fopen(results, "a");
		if (f) {
			fprintf(f, "PASS fuzz/%s\n", name);
			fclose(f);
		}
	}
	return 0;
}

#endif
