// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target: an incremental image and its parent, read the ways users of
 * images read them: the parent chain (fl_image_open without NO_PARENT),
 * verify-on-open (FL_IMAGE_OPEN_VERIFY), multi-page reads (the page
 * server's path, which coalesces contiguous pages into one pread),
 * fl_image_restore, and the image store (fl_image_store_new +
 * fl_store_read).
 *
 * Input: [ctl][child length, u16 LE][child image][parent image]. The two
 * images are written to child.img and parent.img in a scratch directory,
 * so a child's relative parent path finds the parent (or the child itself,
 * or nothing). Every structure is checksummed; `ctl` says which checksums
 * the target recomputes ("fixes up") after mutation, and whether the
 * content ids are recomputed too. Inputs where an id is left stale are what
 * reaches the content-id and parent-id checks; inputs left alone reach the
 * checksum checks.
 *
 * The oracle reads the images' own bytes: whatever a read returns must be,
 * page by page, zeros for a zero page or bytes whose XXH3 is the checksum
 * the owning image's index records; a page absent from the whole chain must
 * not read at all. An open that succeeds must have a content id that
 * matches its table and index. After a successful verify every page that
 * exists must read. Anything else is garbage presented as valid.
 */
#include "image-format.h"
#include "image-fixup.h"
#include "fl-config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz-image-chain: invariant failed: %s (line %d)\n", #cond, \
				__LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* ctl bits */
#define C_FIX_CHILD (1u << 0)		/* recompute the child's checksums */
#define C_FIX_CHILD_ID (1u << 1)	/* ... and its content id */
#define C_FIX_PARENT (1u << 2)
#define C_FIX_PARENT_ID (1u << 3)
#define C_LINK (1u << 4)		/* child's parent_id := parent's id (before the child's fix-up) */
#define C_VERIFY (1u << 5)		/* FL_IMAGE_OPEN_VERIFY */
#define C_NO_PARENT (1u << 6)

#define MAX_PAGES 64			/* pages per region the target reads */

/* What the run reached (the standalone driver prints it, and fails a run
 * that never opened a chain or read a page: a target that reaches nothing
 * cannot fail). */
static unsigned long n_open, n_chain, n_pages_ok, n_read_fail, n_verified;

static char dir[64], child_path[96], parent_path[96];
static uint8_t rbuf[MAX_PAGES * FL_PAGE_SIZE];

static void cleanup(void)
{
	unlink(child_path);
	unlink(parent_path);
	rmdir(dir);
}

static int scratch_dir(void)
{
	if (dir[0])
		return 0;
	snprintf(dir, sizeof(dir), "%s/fl-fuzz-chain-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(child_path, sizeof(child_path), "%s/child.img", dir);
	snprintf(parent_path, sizeof(parent_path), "%s/parent.img", dir);
	atexit(cleanup);
	return 0;
}

static int put_file(const char *path, const uint8_t *b, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int ok;

	if (fd < 0)
		return -1;
	ok = n == 0 || write(fd, b, n) == (ssize_t)n;
	close(fd);
	return ok ? 0 : -1;
}

/* ---- one image's bytes, as the oracle reads them ------------------------------ */

struct view {
	const uint8_t *b;
	size_t n;
	struct fl__img_header h;
	bool ok;			/* header present */
};

static void view_init(struct view *v, const uint8_t *b, size_t n)
{
	v->b = b;
	v->n = n;
	v->ok = n >= FL_IMG_HEADER_SIZE;
	if (v->ok)
		memcpy(&v->h, b, sizeof(v->h));
}

/* The accessors CHECK their bounds: an image the reader accepted must have them. */
static struct fl__img_region view_region(const struct view *v, unsigned r)
{
	struct fl__img_region out;
	CHECK(v->ok && r < v->h.nregions);
	CHECK(v->h.table_off <= v->n && (uint64_t)(r + 1) * sizeof(out) <= v->n - v->h.table_off);
	memcpy(&out, v->b + v->h.table_off + (uint64_t)r * sizeof(out), sizeof(out));
	return out;
}

static struct fl__img_page view_page(const struct view *v, uint64_t p)
{
	struct fl__img_page out;
	CHECK(p < v->h.total_pages);
	CHECK(v->h.index_off <= v->n && (p + 1) * sizeof(out) <= v->n - v->h.index_off);
	memcpy(&out, v->b + v->h.index_off + p * sizeof(out), sizeof(out));
	return out;
}

/* What an accepted image must satisfy whatever the reader's checks are. */
static void view_accepted(const struct view *v)
{
	uint8_t id[16];
	struct fl__img_region *table;
	struct fl__img_page *index;

	CHECK(v->ok && fl__img_header_csum(v->b) == v->h.header_csum);
	CHECK(v->h.nregions <= 4096 && v->h.total_pages <= v->n / sizeof(*index));
	table = calloc(v->h.nregions + 1, sizeof(*table));
	index = calloc(v->h.total_pages + 1, sizeof(*index));
	CHECK(table && index);
	for (unsigned r = 0; r < v->h.nregions; r++)
		table[r] = view_region(v, r);
	for (uint64_t p = 0; p < v->h.total_pages; p++)
		index[p] = view_page(v, p);
	fl__img_content_id(table, v->h.nregions, index, v->h.total_pages, id);
	CHECK(memcmp(id, v->h.id, 16) == 0);
	free(table);
	free(index);
}

/*
 * `buf` holds pages [first, first + n) of `region` as read through the chain
 * chain[0..depth): check each against the index of the image that owns it.
 * `zero_ok`: the store said the range is zeros (buf untouched).
 */
static void check_pages(const struct view *const *chain, unsigned depth, unsigned region, uint64_t first,
			uint64_t n, const uint8_t *buf, bool store_zero)
{
	n_pages_ok += n;
	for (uint64_t k = 0; k < n; k++) {
		struct fl__img_page pg = { .kind = FL_PAGE_ABSENT };
		const uint8_t *page = buf + k * FL_PAGE_SIZE;
		unsigned l;

		for (l = 0; l < depth; l++) {
			struct fl__img_region rg = view_region(chain[l], region);
			CHECK(first + k < rg.npages);
			pg = view_page(chain[l], rg.first_page + first + k);
			if (pg.kind != FL_PAGE_ABSENT)
				break;
		}
		CHECK(l < depth);	/* a page no image holds was "read" */
		if (store_zero) {
			CHECK(pg.kind == FL_PAGE_ZERO);
		} else if (pg.kind == FL_PAGE_ZERO) {
			for (unsigned i = 0; i < FL_PAGE_SIZE; i++)
				CHECK(page[i] == 0);
		} else {
			CHECK(pg.kind == FL_PAGE_DATA);
			CHECK(XXH3_64bits(page, FL_PAGE_SIZE) == pg.csum);
		}
	}
}

static void read_all(struct fl_image *img, const struct view *const *chain, unsigned depth, bool verified)
{
	struct fl_image_info info = { .sz = sizeof(info) };

	CHECK(fl_image_info(img, &info) == 0);
	for (unsigned r = 0; r < info.nregions && r < 4; r++) {
		uint64_t np = view_region(chain[0], r).npages;
		struct fl_store *st;
		int ret;

		/* Out of range is refused, never read. */
		CHECK(fl_image_read(img, r, np, 1, rbuf, NULL) < 0);
		CHECK(fl_image_read(img, r, 0, np + 1, rbuf, NULL) < 0);
		if (np > MAX_PAGES)
			continue;
		ret = fl_image_restore(img, r, rbuf);
		if (ret == 0)
			check_pages(chain, depth, r, 0, np, rbuf, false);
		else if (verified)
			/* Verified: every page that exists reads (LZ4 without LZ4 fails the verify). */
			CHECK(ret == -ENOENT);
		/* Multi-page reads at every offset, two and three pages long. */
		for (uint64_t first = 0; first < np; first++) {
			for (uint64_t n = 2; n <= 3 && first + n <= np; n++) {
				uint64_t bad = UINT64_MAX;
				ret = fl_image_read(img, r, first, n, rbuf, &bad);
				if (ret == 0) {
					check_pages(chain, depth, r, first, n, rbuf, false);
				} else {
					CHECK(bad >= first && bad < first + n);
					n_read_fail++;
				}
			}
		}
		if (fl_image_store_new(img, r, &st) == 0) {
			struct fl_store_iov iov[2] = {
				{ .offset = 0, .buf = rbuf, .len = np * FL_PAGE_SIZE },
				{ .offset = FL_PAGE_SIZE, .buf = rbuf + np * FL_PAGE_SIZE,
				  .len = np > 1 ? (np - 1) * FL_PAGE_SIZE : 0 },
			};
			unsigned niov = np > 1 && np <= MAX_PAGES / 2 ? 2 : 1;
			fl_store_read(st, iov, niov);
			for (unsigned i = 0; i < niov; i++) {
				if (iov[i].result == 0)
					check_pages(chain, depth, r, iov[i].offset / FL_PAGE_SIZE,
						    iov[i].len / FL_PAGE_SIZE, iov[i].buf,
						    iov[i].flags_out & FL_STORE_OUT_ZERO);
			}
			fl_store_unref(st);
		}
	}
}

/* A recorded parent path that leaves the scratch directory is not followed. */
static bool path_stays(const uint8_t *b, size_t n)
{
	return n < FL_IMG_HEADER_SIZE ||
	       !memchr(b + offsetof(struct fl__img_header, parent_path), '/',
		       sizeof(((struct fl__img_header *)0)->parent_path));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct view vc, vp;
	const struct view *chain[2];
	struct fl_image *img;
	uint8_t *copy, ctl;
	size_t clen, plen;
	unsigned flags = 0, depth = 1;
	int r;

	if (size < 3 || size > (1u << 20) || scratch_dir())
		return 0;
	ctl = data[0];
	clen = (size_t)data[1] | (size_t)data[2] << 8;
	data += 3;
	size -= 3;
	if (clen > size)
		clen = size;
	plen = size - clen;
	copy = malloc(size + 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (ctl & C_FIX_PARENT)
		fix_up(copy + clen, plen, ctl & C_FIX_PARENT_ID);
	if ((ctl & C_LINK) && clen >= FL_IMG_HEADER_SIZE && plen >= FL_IMG_HEADER_SIZE)
		memcpy(copy + offsetof(struct fl__img_header, parent_id),
		       copy + clen + offsetof(struct fl__img_header, id), 16);
	if (ctl & C_FIX_CHILD)
		fix_up(copy, clen, ctl & C_FIX_CHILD_ID);
	if (put_file(child_path, copy, clen) || put_file(parent_path, copy + clen, plen))
		goto out;
	view_init(&vc, copy, clen);
	view_init(&vp, copy + clen, plen);
	if (ctl & C_VERIFY)
		flags |= FL_IMAGE_OPEN_VERIFY;
	if ((ctl & C_NO_PARENT) || !path_stays(copy, clen) || !path_stays(copy + clen, plen))
		flags |= FL_IMAGE_OPEN_NO_PARENT;
	r = fl_image_open(child_path, flags, &img);
	if (r)
		goto out;
	n_open++;
	n_verified += (flags & FL_IMAGE_OPEN_VERIFY) != 0;
	chain[0] = &vc;
	view_accepted(&vc);
	if (fl_image_parent(img)) {
		struct fl_image_info pi = { .sz = sizeof(pi) };
		/* Two files, each incremental one naming one of them: a chain of
		 * three would have to loop, and a loop is refused (-ELOOP). */
		CHECK(!(flags & FL_IMAGE_OPEN_NO_PARENT));
		CHECK(!fl_image_parent(fl_image_parent(img)));
		CHECK(fl_image_info(fl_image_parent(img), &pi) == 0);
		CHECK(vp.ok && memcmp(pi.id, vp.h.id, 16) == 0 && memcmp(vc.h.parent_id, vp.h.id, 16) == 0);
		view_accepted(&vp);
		chain[1] = &vp;
		depth = 2;
		n_chain++;
	} else {
		CHECK((flags & FL_IMAGE_OPEN_NO_PARENT) || !(vc.h.flags & FL_IMG_F_INCREMENTAL));
	}
	read_all(img, chain, depth, (flags & FL_IMAGE_OPEN_VERIFY) != 0);
	{
		uint64_t bad = 0;
		if (fl_image_verify(img, &bad, NULL, NULL) == 0)
			read_all(img, chain, depth, true);
	}
	fl_image_close(img);
out:
	free(copy);
	return 0;
}

#ifdef FL_FUZZ_STANDALONE
/* ---- a driver for compilers without libFuzzer ------------------------------ */

#include "standalone.h"

#define NSEEDS 8

static struct fz_input seeds[NSEEDS];
static const unsigned nseeds = NSEEDS;

static size_t load(const char *path, uint8_t *b, size_t max)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f)
		return 0;
	n = fread(b, 1, max, f);
	fclose(f);
	return n;
}

/* Parent: two regions of data, zero and (with LZ4) compressed pages.
 * Child: some pages of its own, the rest absent (read from the parent). */
static int write_pair(unsigned wflags)
{
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC | wflags };
	struct fl_image_region r0 = { .sz = sizeof(r0), .length = 5 * 4096, .prot = 3, .name = "a" };
	struct fl_image_region r1 = { .sz = sizeof(r1), .length = 3 * 4096, .prot = 1, .mem = 1, .name = "b" };
	static uint8_t pages[5 * 4096];
	struct fl_image_writer *w;

	for (size_t i = 0; i < sizeof(pages); i++)
		pages[i] = (uint8_t)(i % 4096 < 3000 ? i / 4096 + 1 : i * 131);
	memset(pages + 2 * 4096, 0, 4096);
	if (fl_image_writer_new(parent_path, &o, &w))
		return -1;
	fl_image_writer_add_region(w, &r0);
	fl_image_writer_add_region(w, &r1);
	fl_image_writer_put(w, 0, 0, 5, pages);
	fl_image_writer_put(w, 1, 0, 2, pages + 4096);
	if (fl_image_writer_finish(w, NULL))
		return -1;
	o.parent = parent_path;
	for (size_t i = 0; i < sizeof(pages); i++)
		pages[i] ^= 0x5a;
	memset(pages + 4096, 0, 4096);
	if (fl_image_writer_new(child_path, &o, &w))
		return -1;
	fl_image_writer_add_region(w, &r0);
	fl_image_writer_add_region(w, &r1);
	fl_image_writer_put(w, 0, 0, 2, pages);		/* a data and a zero page over the parent's */
	fl_image_writer_put(w, 0, 3, 1, pages + 3 * 4096);
	fl_image_writer_put(w, 1, 2, 1, pages);		/* absent in the parent */
	return fl_image_writer_finish(w, NULL) ? -1 : 0;
}

static unsigned pack(struct fz_input *in, uint8_t ctl)
{
	size_t c, p;

	in->b[0] = ctl;
	c = load(child_path, in->b + 3, FZ_MAX_INPUT - 3);
	p = load(parent_path, in->b + 3 + c, FZ_MAX_INPUT - 3 - c);
	in->b[1] = (uint8_t)c;
	in->b[2] = (uint8_t)(c >> 8);
	in->n = 3 + c + p;
	return c && p && c < 65536 ? 1 : 0;
}

static void make_seeds(void)
{
	/* The same pair under different controls: mutations of ctl move between them. */
	static const uint8_t ctls[NSEEDS] = {
		0,
		C_FIX_CHILD | C_FIX_CHILD_ID | C_FIX_PARENT | C_FIX_PARENT_ID | C_LINK,
		C_FIX_CHILD | C_FIX_CHILD_ID | C_FIX_PARENT | C_FIX_PARENT_ID | C_LINK | C_VERIFY,
		C_FIX_CHILD | C_FIX_PARENT,			/* ids left stale */
		C_FIX_CHILD | C_FIX_CHILD_ID | C_FIX_PARENT | C_FIX_PARENT_ID, /* parent id stale */
		C_FIX_CHILD | C_FIX_CHILD_ID | C_NO_PARENT,
		C_FIX_CHILD | C_FIX_CHILD_ID | C_FIX_PARENT | C_FIX_PARENT_ID | C_LINK,
		C_FIX_CHILD | C_FIX_CHILD_ID | C_FIX_PARENT | C_FIX_PARENT_ID | C_LINK | C_VERIFY,
	};
	unsigned ok = 1;

	if (scratch_dir() || write_pair(0)) {
		fprintf(stderr, "# cannot make seed images\n");
		exit(99);
	}
	for (unsigned s = 0; s < NSEEDS; s++) {
		/* The last two: with LZ4 pages (or, without LZ4, the same uncompressed). */
		if (s == NSEEDS - 2 && write_pair(FL_HAVE_LZ4 ? FL_IMAGE_LZ4 : 0))
			exit(99);
		ok &= pack(&seeds[s], ctls[s]);
	}
	if (!ok) {
		fprintf(stderr, "# seed images too large\n");
		exit(99);
	}
}

static const uint8_t interesting[] = { 0, 1, 2, 0x7f, 0x80, 0xff, '/', '.', 'a', 0x3f, 0x7f };
static const uint32_t boundaries[] = { 0, 1, 2, 3, 5, 4096, 8192, 0x7fffffff, 0xffffffff };
static const struct fz_dict dict = { interesting, sizeof(interesting), NULL, 0,
				     boundaries, sizeof(boundaries) / sizeof(boundaries[0]) };

static void finish(unsigned long iterations)
{
	fprintf(stderr, "# %lu mutated inputs: %lu opened (%lu with a parent, %lu verified), %lu pages read and checked, %lu reads refused\n",
		iterations, n_open, n_chain, n_verified, n_pages_ok, n_read_fail);
	if (!n_chain || !n_pages_ok || !n_read_fail) {
		fprintf(stderr, "# the seeds no longer reach the chain\n");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	return fz_main(argc, argv, "image-chain", seeds, &nseeds, make_seeds, &dict, finish);
}
#endif
