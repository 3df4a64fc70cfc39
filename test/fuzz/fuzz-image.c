// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target for the image parser (fl_image_open, fl_image_read,
 * fl_image_verify). Every structure of an image is checksummed, so random
 * bytes would only ever reach the checksum checks: when the input is long
 * enough to hold a header, the target also tries a copy whose checksums and
 * content id are recomputed ("fixed up"), so the structural validation
 * behind them is fuzzed as well, and one whose checksums are recomputed but
 * whose content id is left, so the content-id check is. Either way the
 * parser must refuse or read cleanly, never crash or read out of bounds,
 * and an image it opens names its own content id. The parent chain,
 * multi-page reads, restore, the image store and VERIFY are
 * fuzz-image-chain's.
 */
#include "image-format.h"
#include "image-fixup.h"
#include "fl-config.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An image the reader accepted names the content id of its own table and index. */
static void check_id(const uint8_t *b, size_t size)
{
	struct fl__img_header h;
	uint64_t tb, ib;
	uint8_t id[16];
	void *table, *index;

	if (size < sizeof(h))
		abort();
	memcpy(&h, b, sizeof(h));
	tb = (uint64_t)h.nregions * sizeof(struct fl__img_region);
	ib = h.total_pages * sizeof(struct fl__img_page);
	if (h.table_off > size || tb > size - h.table_off || h.index_off > size || ib > size - h.index_off)
		abort();
	table = malloc(tb + 1);
	index = malloc(ib + 1);
	if (!table || !index)
		abort();
	memcpy(table, b + h.table_off, tb);
	memcpy(index, b + h.index_off, ib);
	fl__img_content_id(table, h.nregions, index, h.total_pages, id);
	if (memcmp(id, h.id, 16)) {
		fprintf(stderr, "fuzz-image: an image whose content id is not its content was opened\n");
		abort();
	}
	free(table);
	free(index);
}

static void try_image(const uint8_t *data, size_t size)
{
	char path[64];
	struct fl_image *img;
	int fd = memfd_create("fuzz-image", MFD_CLOEXEC);

	if (fd < 0)
		return;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (fl_image_open(path, FL_IMAGE_OPEN_NO_PARENT, &img) == 0) {
		struct fl_image_info info = { .sz = sizeof(info) };
		uint8_t page[4096];
		check_id(data, size);
		fl_image_info(img, &info);
		for (unsigned r = 0; r < info.nregions && r < 4; r++) {
			struct fl_image_region reg = { .sz = sizeof(reg) };
			fl_image_region(img, r, &reg);
			for (uint64_t p = 0; p < reg.length / 4096 && p < 64; p++)
				fl_image_read(img, r, p, 1, page, NULL);
		}
		fl_image_verify(img, NULL, NULL, NULL);
		fl_image_close(img);
	}
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	try_image(data, size);
	if (size >= FL_IMG_HEADER_SIZE + sizeof(struct fl__img_end) && size < (1u << 22)) {
		uint8_t *copy = malloc(size);
		if (copy) {
			memcpy(copy, data, size);
			fix_up(copy, size, true);
			try_image(copy, size);
			/* The same with the id left as it was (a changed table or index:
			 * refused by the content-id check alone). */
			memcpy(copy, data, size);
			fix_up(copy, size, false);
			try_image(copy, size);
			free(copy);
		}
	}
	return 0;
}

#ifdef FL_FUZZ_STANDALONE
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

static uint8_t *load(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b;
	long n;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc((size_t)n);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* A small valid image of two regions, some LZ4, zero and data pages. */
static uint8_t *make_seed(int lz4, size_t *len)
{
	char dir[] = "/tmp/fl-fuzz-XXXXXX", path[64];
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC | (lz4 ? FL_IMAGE_LZ4 : 0) };
	struct fl_image_region r0 = { .sz = sizeof(r0), .length = 8 * 4096, .prot = 3, .name = "a" };
	struct fl_image_region r1 = { .sz = sizeof(r1), .length = 4 * 4096, .prot = 1, .mem = 1, .name = "b" };
	struct fl_image_writer *w;
	uint8_t pages[8 * 4096];
	uint8_t *b;

	if (!mkdtemp(dir))
		return NULL;
	snprintf(path, sizeof(path), "%s/seed.img", dir);
	for (size_t i = 0; i < sizeof(pages); i++)
		pages[i] = (uint8_t)(i % 4096 < 2048 ? 7 : i * 31);
	memset(pages + 2 * 4096, 0, 4096);
	if (fl_image_writer_new(path, &o, &w))
		return NULL;
	fl_image_writer_add_region(w, &r0);
	fl_image_writer_add_region(w, &r1);
	fl_image_writer_put(w, 0, 0, 8, pages);
	fl_image_writer_put(w, 1, 1, 2, pages + 3 * 4096);
	if (fl_image_writer_finish(w, NULL))
		return NULL;
	b = load(path, len);
	unlink(path);
	rmdir(dir);
	return b;
}

int main(int argc, char **argv)
{
	unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
	size_t len[2];
	const char *res = getenv("FL_TEST_RESULTS"), *fixture = getenv("FL_IMAGE_FIXTURE");
	/* Without LZ4 (-Dlz4=disabled) no LZ4 image can be written: the second
	 * seed is then test/image/lz4-pages.img, so the refusal to read its
	 * LZ4 pages (-EOPNOTSUPP) is fuzzed as well. */
	uint8_t *seed[2] = { make_seed(0, &len[0]),
			     FL_HAVE_LZ4 || !fixture ? make_seed(1, &len[1]) : load(fixture, &len[1]) };

	if (!seed[0] || !seed[1]) {
		fprintf(stderr, "# cannot make seed images\n");
		return 99;
	}
	for (unsigned long it = 0; it < iterations; it++) {
		int s = (int)(rnd() % 2);
		size_t n = len[s];
		uint8_t *in = malloc(n);
		unsigned flips = 1 + rnd() % 4;
		memcpy(in, seed[s], n);
		for (unsigned k = 0; k < flips; k++) {
			/* bias towards metadata: header, table, index, end */
			size_t at = (rnd() % 2) ? rnd() % 512 : n - 1 - rnd() % (n < 2048 ? n : 2048);
			switch (rnd() % 4) {
			case 0: in[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
			case 1: in[at] = (uint8_t)rnd(); break;
			case 2: in[at] = 0xff; break;
			default: n = at ? at : 1; break; /* truncate */
			}
		}
		LLVMFuzzerTestOneInput(in, n);
		free(in);
	}
	free(seed[0]);
	free(seed[1]);
	printf("PASS fuzz/image\n");
	fprintf(stderr, "# %lu mutated images\n", iterations);
	if (res && *res) {
		FILE *f = fopen(res, "a");
		if (f) {
			fputs("PASS fuzz/image\n", f);
			fclose(f);
		}
	}
	return 0;
}
#endif
