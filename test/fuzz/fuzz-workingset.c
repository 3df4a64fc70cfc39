// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target: the working-set loader (fl_working_set_load, lib/region/
 * workingset.c), the file a replay trusts for which pages to install.
 *
 * Input: [ctl][working-set file]. ctl bit 0: recompute the file's checksum
 * after mutation (without it nearly every input stops at the checksum);
 * bit 1: load it bound to an image (a small two-region image made at
 * start), bit 2: to that image's second region. A file that loads must be
 * what the format allows — its size exactly the header and `count` page
 * numbers, each below the region's page count, a power-of-two page size,
 * the checksum right, and when bound, the image's id, region and size —
 * and saving it again must give back the same page list.
 */
#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz-workingset: invariant failed: %s (line %d)\n", #cond, \
				__LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define WS_HEADER 64u

static char dir[64], img_path[96], ws_path[96];
static struct fl_image *img;
static unsigned long n_loaded, n_refused;

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The format's checksum: XXH3-64 seeded with the version, over the first
 * 56 header bytes and the payload (faultline-workingset, workingset.c). */
static uint64_t ws_csum(const uint8_t *b, size_t n)
{
	XXH3_state_t *st = XXH3_createState();
	uint64_t h;

	CHECK(st);
	XXH3_64bits_reset_withSeed(st, 1);
	XXH3_64bits_update(st, b, 56);
	XXH3_64bits_update(st, b + WS_HEADER, n - WS_HEADER);
	h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return h;
}

static void cleanup(void)
{
	fl_image_close(img);
	unlink(img_path);
	unlink(ws_path);
	rmdir(dir);
}

/* Two regions: 16 pages and 3 pages. */
static int setup(void)
{
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC };
	struct fl_image_region r0 = { .sz = sizeof(r0), .length = 16 * 4096, .prot = 3, .name = "a" };
	struct fl_image_region r1 = { .sz = sizeof(r1), .length = 3 * 4096, .prot = 3, .name = "b" };
	struct fl_image_writer *w;
	static uint8_t page[4096];

	if (img)
		return 0;
	snprintf(dir, sizeof(dir), "%s/fl-fuzz-ws-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(img_path, sizeof(img_path), "%s/a.img", dir);
	snprintf(ws_path, sizeof(ws_path), "%s/a.ws", dir);
	atexit(cleanup);
	memset(page, 0x42, sizeof(page));
	if (fl_image_writer_new(img_path, &o, &w))
		return -1;
	fl_image_writer_add_region(w, &r0);
	fl_image_writer_add_region(w, &r1);
	fl_image_writer_put(w, 0, 5, 1, page);
	if (fl_image_writer_finish(w, NULL))
		return -1;
	return fl_image_open(img_path, 0, &img);
}

static void check_loaded(const uint8_t *b, size_t n, struct fl_working_set *ws, bool bound, unsigned region)
{
	uint64_t count = get64(b + 48), pages = get64(b + 16);
	uint32_t psz = get32(b + 12);
	uint8_t *again;
	int fd;

	CHECK(n >= WS_HEADER && memcmp(b, "FLWSET\0\0", 8) == 0 && get32(b + 8) == 1);
	CHECK(fl_working_set_pages(ws) == count && fl_working_set_page_size(ws) == psz);
	CHECK(count <= pages && pages < UINT32_MAX && n == WS_HEADER + 4 * count);
	CHECK(psz && !(psz & (psz - 1)));
	CHECK(ws_csum(b, n) == get64(b + 56));
	for (uint64_t i = 0; i < count; i++)
		CHECK(get32(b + WS_HEADER + 4 * i) < pages);
	if (bound) {
		struct fl_image_info info = { .sz = sizeof(info) };
		struct fl_image_region reg = { .sz = sizeof(reg) };
		CHECK(fl_image_info(img, &info) == 0 && fl_image_region(img, region, &reg) == 0);
		CHECK((get32(b + 28) & 1) && get32(b + 24) == region && memcmp(b + 32, info.id, 16) == 0);
		CHECK(reg.length == pages * psz);
	}
	/* Saved again, the same geometry and page list. */
	CHECK(fl_working_set_save(ws, ws_path, bound ? img : NULL, region) == 0);
	again = malloc(n + 1);
	fd = open(ws_path, O_RDONLY | O_CLOEXEC);
	CHECK(again && fd >= 0 && read(fd, again, n + 1) == (ssize_t)n);
	close(fd);
	/* The binding fields (and so the checksum) are rewritten from the
	 * arguments: an unbound load ignores whatever they held. */
	CHECK(memcmp(again, b, 24) == 0 && memcmp(again + 48, b + 48, 8) == 0 &&
	      memcmp(again + WS_HEADER, b + WS_HEADER, n - WS_HEADER) == 0);
	if (bound && get32(b + 28) == 1)
		CHECK(memcmp(again, b, n) == 0);
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fl_working_set *ws = NULL;
	char path[64];
	uint8_t *b;
	bool bound;
	unsigned region;
	size_t n;
	int fd, r;

	if (size < 1 || setup())
		return 0;
	bound = data[0] & 2;
	region = data[0] & 4 ? 1 : 0;
	n = size - 1;
	b = malloc(n + 1);
	if (!b)
		return 0;
	memcpy(b, data + 1, n);
	if ((data[0] & 1) && n >= WS_HEADER) {
		uint64_t c = ws_csum(b, n);
		memcpy(b + 56, &c, 8);
	}
	fd = memfd_create("fuzz-ws", MFD_CLOEXEC);
	if (fd < 0 || (n && write(fd, b, n) != (ssize_t)n))
		goto out;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = fl_working_set_load(path, bound ? img : NULL, region, &ws);
	if (r == 0) {
		n_loaded++;
		check_loaded(b, n, ws, bound, region);
		fl_working_set_free(ws);
	} else {
		CHECK(r == -EPROTO || r == -EBADMSG || r == -ESTALE || r == -ENOENT);
		n_refused++;
	}
out:
	if (fd >= 0)
		close(fd);
	free(b);
	return 0;
}

#ifdef FL_FUZZ_STANDALONE
/* ---- a driver for compilers without libFuzzer ------------------------------ */

#include "standalone.h"

#define NSEEDS 5

static struct fz_input seeds[NSEEDS];
static const unsigned nseeds = NSEEDS;

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* A file as fl_working_set_save writes it (bound: to region `region` of img). */
static void seed(struct fz_input *in, uint8_t ctl, uint32_t psz, uint64_t pages, unsigned region, bool bound,
		 const uint32_t *list, unsigned count)
{
	uint8_t *b = in->b + 1;

	memset(in->b, 0, 1 + WS_HEADER);
	in->b[0] = ctl;
	memcpy(b, "FLWSET\0\0", 8);
	put32(b + 8, 1);
	put32(b + 12, psz);
	put64(b + 16, pages);
	put32(b + 24, bound ? region : 0);
	put32(b + 28, bound ? 1 : 0);
	if (bound) {
		struct fl_image_info info = { .sz = sizeof(info) };
		fl_image_info(img, &info);
		memcpy(b + 32, info.id, 16);
	}
	put64(b + 48, count);
	for (unsigned i = 0; i < count; i++)
		put32(b + WS_HEADER + 4 * i, list[i]);
	in->n = 1 + WS_HEADER + 4 * (size_t)count;
	put64(b + 56, ws_csum(b, in->n - 1));
}

static void make_seeds(void)
{
	static const uint32_t list[] = { 5, 0, 15, 7, 8, 9, 1, 2 };
	static const uint32_t small[] = { 2, 0 };

	if (setup()) {
		fprintf(stderr, "# cannot make the image\n");
		exit(99);
	}
	seed(&seeds[0], 1, 4096, 16, 0, false, list, 8);
	seed(&seeds[1], 1 | 2, 4096, 16, 0, true, list, 8);
	seed(&seeds[2], 1 | 2 | 4, 4096, 3, 1, true, small, 2);
	seed(&seeds[3], 0, 4096, 16, 0, false, list, 4);		/* checksum kept: mutations break it */
	seed(&seeds[4], 1 | 2, 2u << 20, 1, 0, true, small + 1, 1);	/* huge pages: refused for this image */
}

static void finish(unsigned long iterations)
{
	fprintf(stderr, "# %lu mutated files: %lu loaded, %lu refused\n", iterations, n_loaded, n_refused);
	if (!n_loaded || !n_refused)
		exit(1);	/* a run that reaches one side only tests nothing */
}

static const uint8_t interesting[] = { 0, 1, 2, 3, 15, 16, 0x10, 0x7f, 0x80, 0xff };
static const uint32_t boundaries[] = { 0, 1, 2, 3, 15, 16, 17, 4096, 8192, 2u << 20, 0xfffffffe, 0xffffffff };
static const struct fz_dict dict = { interesting, sizeof(interesting), NULL, 0,
				     boundaries, sizeof(boundaries) / sizeof(boundaries[0]) };

int main(int argc, char **argv)
{
	return fz_main(argc, argv, "workingset", seeds, &nseeds, make_seeds, &dict, finish);
}
#endif
