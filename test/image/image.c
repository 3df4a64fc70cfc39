// SPDX-License-Identifier: LGPL-2.1-or-later
/* Image format v1: round trips, chains, damaged images, atomic writes, lazy restore. */
#include "harness.h"
#include "fl-config.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#define PS 4096u

static char dir[256];

/* npages of pattern with every 7th page zero. */
static uint8_t *make_mem(size_t npages, uint32_t seed)
{
	uint8_t *m = malloc(npages * PS);
	T_ASSERT(m != NULL);
	t_fill_pattern(m, npages * PS, 0, seed);
	for (size_t p = 0; p < npages; p += 7)
		memset(m + p * PS, 0, PS);
	return m;
}

static void write_image(const char *path, const uint8_t *m, size_t npages, unsigned flags, const char *parent)
{
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = flags | FL_IMAGE_NO_SYNC, .parent = parent };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = npages * PS, .prot = 3, .mem = FL_MEM_ANON, .name = "mem" };
	struct fl_image_writer *w;
	T_OK(fl_image_writer_new(path, &o, &w));
	T_ASSERT_EQ(fl_image_writer_add_region(w, &reg), 0);
	T_OK(fl_image_writer_put(w, 0, 0, npages, m));
	T_OK(fl_image_writer_finish(w, NULL));
}

static int t_roundtrip(void *arg)
{
	bool lz4 = arg != NULL;
	size_t np = 1024;
	uint8_t *m, *out;
	struct fl_image *img;
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_image_region reg = { .sz = sizeof(reg) };
	uint64_t bad = 99;

	if (lz4 && !FL_HAVE_LZ4)
		t_skip("built without LZ4 support (-Dlz4=disabled): lz4-fixture checks -EOPNOTSUPP instead");
	m = make_mem(np, 1);
	out = malloc(np * PS);
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	if (lz4) /* make the data pages compressible */
		for (size_t pg = 1; pg < np; pg++)
			if (pg % 7)
				memset(m + pg * PS, 0x5a, PS / 2);
	write_image(t_path_in(dir, "a.img"), m, np, lz4 ? FL_IMAGE_LZ4 : 0, NULL);
	T_OK(fl_image_open(t_path_in(dir, "a.img"), FL_IMAGE_OPEN_VERIFY, &img));
	T_OK(fl_image_info(img, &info));
	T_ASSERT_EQ(info.version, 1);
	T_ASSERT_EQ(info.nregions, 1);
	T_ASSERT_EQ(info.pages_total, np);
	T_ASSERT_EQ(info.pages_zero, (np + 6) / 7);
	T_ASSERT_EQ(info.pages_data, np - (np + 6) / 7);
	T_ASSERT_EQ(info.chain_depth, 0);
	if (lz4)
		T_ASSERT(info.pages_lz4 > 0 && info.data_bytes < info.pages_data * PS);
	else
		T_ASSERT_EQ(info.data_bytes, info.pages_data * PS);
	T_OK(fl_image_region(img, 0, &reg));
	T_ASSERT_EQ(reg.length, np * PS);
	T_ASSERT(strcmp(reg.name, "mem") == 0);
	T_ASSERT_EQ(fl_image_region(img, 1, &reg), -ENOENT);
	T_OK(fl_image_restore(img, 0, out));
	T_ASSERT(memcmp(out, m, np * PS) == 0);
	T_ASSERT_EQ(fl_image_verify(img, &bad, NULL, NULL), 0);
	T_ASSERT_EQ(bad, 0);
	T_ASSERT_EQ(fl_image_page_kind(img, 0, 0), FL_PAGE_ZERO);
	T_ASSERT_EQ(fl_image_page_kind(img, 0, 1), FL_PAGE_DATA);
	fl_image_close(img);
	return T_PASS;
}

/*
 * Images are reference counted: an image store and a child image keep what
 * they use alive after the caller closed its own reference, and the data
 * read through them is still the image's.
 */
static int t_refcount(void *arg)
{
	size_t np = 64;
	uint8_t *m = make_mem(np, 5), *m2 = make_mem(np, 6), *out = malloc(np * PS);
	struct fl_image *img, *child, *parent;
	struct fl_store *st;
	struct fl_store_iov iov;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	write_image(t_path_in(dir, "r.img"), m, np, 0, NULL);
	T_OK(fl_image_open(t_path_in(dir, "r.img"), 0, &img));
	T_ASSERT(fl_image_ref(img) == img);
	T_ASSERT(fl_image_unref(img) == NULL);	/* back to one reference: still open */
	T_OK(fl_image_info(img, &(struct fl_image_info){ .sz = sizeof(struct fl_image_info) }));
	T_OK(fl_image_store_new(img, 0, &st));
	T_ASSERT(fl_image_close(img) == NULL);	/* the store holds the image now */
	iov = (struct fl_store_iov){ .offset = 0, .buf = out, .len = np * PS };
	T_OK(fl_store_read(st, &iov, 1));
	T_ASSERT(memcmp(out, m, np * PS) == 0, "read through a store whose image was closed");
	fl_store_unref(st);	/* the last reference: the image is closed */

	/* A parent taken with fl_image_ref() outlives its child. */
	write_image(t_path_in(dir, "c.img"), m2, np, 0, t_path_in(dir, "r.img"));
	T_OK(fl_image_open(t_path_in(dir, "c.img"), 0, &child));
	parent = fl_image_ref(fl_image_parent(child));
	T_ASSERT(parent != NULL);
	fl_image_close(child);
	T_OK(fl_image_read(parent, 0, 0, np, out, NULL));
	T_ASSERT(memcmp(out, m, np * PS) == 0);
	T_ASSERT(fl_image_unref(parent) == NULL);
	T_ASSERT(fl_image_ref(NULL) == NULL && fl_image_unref(NULL) == NULL);
	free(out);
	return T_PASS;
}

static int t_chain(void *arg)
{
	size_t np = 512;
	uint8_t *m = make_mem(np, 2), *snap[4], *out = malloc(np * PS);
	const char *names[4] = { "c0.img", "c1.img", "c2.img", "c3.img" };

	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	for (int level = 0; level < 4; level++) {
		struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC,
						  .parent = level ? t_path_in(dir, names[level - 1]) : NULL };
		struct fl_image_region reg = { .sz = sizeof(reg), .length = np * PS };
		struct fl_image_writer *w;
		if (level) /* dirty some pages, including one that becomes zero */
			for (int k = 0; k < 20; k++) {
				size_t p = (size_t)(k * 37 + level * 11) % np;
				m[p * PS + (size_t)k] ^= (uint8_t)(level * 13 + 1);
			}
		if (level == 2)
			memset(m + 5 * PS, 0, PS);
		snap[level] = malloc(np * PS);
		memcpy(snap[level], m, np * PS);
		T_OK(fl_image_writer_new(t_path_in(dir, names[level]), &o, &w));
		T_OK(fl_image_writer_add_region(w, &reg));
		if (!level) {
			T_OK(fl_image_writer_put(w, 0, 0, np, m));
		} else {
			/* only the pages that differ from the parent's snapshot */
			for (size_t p = 0; p < np; p++)
				if (memcmp(m + p * PS, snap[level - 1] + p * PS, PS))
					T_OK(fl_image_writer_put(w, 0, p, 1, m + p * PS));
		}
		T_OK(fl_image_writer_finish(w, NULL));
	}
	for (int level = 0; level < 4; level++) {
		struct fl_image *img;
		struct fl_image_info info = { .sz = sizeof(info) };
		T_OK(fl_image_open(t_path_in(dir, names[level]), FL_IMAGE_OPEN_VERIFY, &img));
		fl_image_info(img, &info);
		T_ASSERT_EQ(info.chain_depth, (unsigned)level);
		if (level)
			T_ASSERT(info.pages_absent > np / 2);
		T_OK(fl_image_restore(img, 0, out));
		T_ASSERT(memcmp(out, snap[level], np * PS) == 0, "level %d differs", level);
		fl_image_close(img);
	}
	return T_PASS;
}

static int t_parent_mismatch(void *arg)
{
	size_t np = 64;
	uint8_t *m = make_mem(np, 3);
	struct fl_image *img;

	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	write_image(t_path_in(dir, "p.img"), m, np, 0, NULL);
	m[100] ^= 1;
	write_image(t_path_in(dir, "c.img"), m, np, 0, t_path_in(dir, "p.img"));
	T_OK(fl_image_open(t_path_in(dir, "c.img"), 0, &img));
	fl_image_close(img);
	/* Replace the parent with different content: the child must refuse it. */
	m[200] ^= 1;
	write_image(t_path_in(dir, "p.img"), m, np, 0, NULL);
	T_ASSERT_EQ(fl_image_open(t_path_in(dir, "c.img"), 0, &img), -ESTALE);
	/* Parent missing altogether. */
	unlink(t_path_in(dir, "p.img"));
	T_ASSERT_EQ(fl_image_open(t_path_in(dir, "c.img"), 0, &img), -ENOENT);
	T_OK(fl_image_open(t_path_in(dir, "c.img"), FL_IMAGE_OPEN_NO_PARENT, &img));
	fl_image_close(img);
	/* An incremental image with a different layout is refused at write. */
	{
		struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC, .parent = t_path_in(dir, "c.img") };
		struct fl_image_writer *w;
		struct fl_image_region reg = { .sz = sizeof(reg), .length = 2 * np * PS };
		write_image(t_path_in(dir, "p.img"), m, np, 0, NULL); /* (c.img still names the old one) */
		o.parent = t_path_in(dir, "p.img");
		T_OK(fl_image_writer_new(t_path_in(dir, "bad.img"), &o, &w));
		T_OK(fl_image_writer_add_region(w, &reg));
		T_ASSERT_EQ(fl_image_writer_put(w, 0, 0, 1, m), -ESTALE);
		fl_image_writer_abort(w);
	}
	return T_PASS;
}

/* Flip one byte at every offset of the metadata (header block, region
 * table, index, end record) and a sample of data bytes: open must fail
 * cleanly for metadata, reads must fail for data. Never a crash. */
static int t_damage_sweep(void *arg)
{
	size_t np = 16, len, data_end, meta_start;
	uint8_t *m = make_mem(np, 4), *orig, *b, out[16 * PS];
	struct fl_image *img;
	unsigned opened = 0, refused = 0;

	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	write_image(t_path_in(dir, "a.img"), m, np, 0, NULL);
	orig = t_read_file(t_path_in(dir, "a.img"), &len);
	b = malloc(len);
	/* metadata: header block, then from the end of data to the end */
	data_end = 4096 + (np - (np + 6) / 7) * PS;
	meta_start = data_end;
	for (size_t off = 0; off < len; off++) {
		int r;
		bool meta = off < 4096 || off >= meta_start;
		if (!meta && off % 509)
			continue; /* sample the data area */
		memcpy(b, orig, len);
		b[off] ^= (uint8_t)(1u << (off % 8));
		t_write_file(t_path_in(dir, "d.img"), b, len);
		r = fl_image_open(t_path_in(dir, "d.img"), 0, &img);
		if (meta) {
			T_ASSERT(r == -EBADMSG || r == -EPROTO, "flip at %zu: open returned %d", off, r);
			refused++;
			continue;
		}
		T_OK(r);
		opened++;
		r = fl_image_read(img, 0, 0, np, out, NULL);
		T_ASSERT_EQ(r, -EBADMSG);
		T_ASSERT(fl_image_verify(img, NULL, NULL, NULL) == -EBADMSG);
		fl_image_close(img);
	}
	t_log("%u metadata flips refused, %u data flips caught on read", refused, opened);
	T_ASSERT(refused > 4096 && opened > 0);
	/* truncation at every 97th length and the last bytes */
	for (size_t cut = 0; cut < len; cut += (cut > len - 80 ? 1 : 97)) {
		int r;
		t_write_file(t_path_in(dir, "t.img"), orig, cut);
		r = fl_image_open(t_path_in(dir, "t.img"), 0, &img);
		T_ASSERT(r == -EBADMSG || r == -EPROTO, "truncated to %zu: %d", cut, r);
	}
	/* wrong magic, wrong version */
	memcpy(b, orig, len);
	memcpy(b, "NOTANIMG", 8);
	t_write_file(t_path_in(dir, "m.img"), b, len);
	T_ASSERT_EQ(fl_image_open(t_path_in(dir, "m.img"), 0, &img), -EPROTO);
	memcpy(b, orig, len);
	b[8] = 2;
	t_write_file(t_path_in(dir, "v.img"), b, len);
	T_ASSERT_EQ(fl_image_open(t_path_in(dir, "v.img"), 0, &img), -EPROTO);
	/* not a file we can read */
	T_ASSERT_EQ(fl_image_open(t_path_in(dir, "missing.img"), 0, &img), -ENOENT);
	return T_PASS;
}

static int count_entries(const char *d)
{
	DIR *dd = opendir(d);
	struct dirent *de;
	int n = 0;
	T_ASSERT(dd != NULL);
	while ((de = readdir(dd)))
		if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
			n++;
	closedir(dd);
	return n;
}

static int t_full_disk(void *arg)
{
	size_t np = 2048; /* 8 MiB */
	uint8_t *m = make_mem(np, 5);
	struct fl_image_writer_opts o = { .sz = sizeof(o) };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = np * PS };
	struct fl_image_writer *w;
	int r;

	if (geteuid() != 0)
		t_skip_resource("needs root to mount a small tmpfs");
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	T_ASSERT(unshare(CLONE_NEWNS) == 0, "unshare: %s", strerror(errno));
	T_ASSERT(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
	T_ASSERT(mount("tmpfs", dir, "tmpfs", 0, "size=2m") == 0, "mount: %s", strerror(errno));
	/* a pre-existing image at the target must survive a failed write */
	t_write_file(t_path_in(dir, "a.img"), (const uint8_t *)"old", 3);
	r = fl_image_writer_new(t_path_in(dir, "a.img"), &o, &w);
	T_OK(r);
	T_OK(fl_image_writer_add_region(w, &reg));
	r = fl_image_writer_put(w, 0, 0, np, m);
	if (r == 0)
		r = fl_image_writer_finish(w, NULL);
	else
		fl_image_writer_abort(w);
	T_ASSERT_EQ(r, -ENOSPC);
	T_ASSERT_EQ(count_entries(dir), 1); /* only the old file, no temp, no partial */
	{
		size_t len;
		uint8_t *b = t_read_file(t_path_in(dir, "a.img"), &len);
		T_ASSERT(len == 3 && memcmp(b, "old", 3) == 0);
	}
	/* abort leaves nothing either */
	T_OK(fl_image_writer_new(t_path_in(dir, "b.img"), &o, &w));
	fl_image_writer_abort(w);
	T_ASSERT_EQ(count_entries(dir), 1);
	return T_PASS;
}

struct put_arg {
	struct fl_image_writer *w;
	const uint8_t *m;
	size_t np;
	int id;
};

static void *putter(void *p)
{
	struct put_arg *a = p;
	/* every thread writes its stride of pages, backwards */
	for (size_t i = a->np; i-- > 0;)
		if ((int)(i % 4) == a->id)
			T_OK(fl_image_writer_put(a->w, 0, i, 1, a->m + i * PS));
	return NULL;
}

static int t_any_order_threads(void *arg)
{
	size_t np = 4096;
	uint8_t *m = make_mem(np, 6), *out = malloc(np * PS);
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = np * PS };
	struct fl_image_writer *w;
	struct fl_image *img;
	pthread_t th[4];
	struct put_arg a[4];

	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	T_OK(fl_image_writer_new(t_path_in(dir, "a.img"), &o, &w));
	T_OK(fl_image_writer_add_region(w, &reg));
	T_ASSERT_EQ(fl_image_writer_add_region(w, &reg) >= 0 ? 0 : 1, 0); /* second region ok before pages */
	for (int i = 0; i < 4; i++) {
		a[i] = (struct put_arg){ w, m, np, i };
		pthread_create(&th[i], NULL, putter, &a[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	/* a page written twice keeps the last copy */
	{
		uint8_t page[PS];
		memset(page, 0xab, PS);
		T_OK(fl_image_writer_put(w, 0, 3, 1, page));
		memcpy(m + 3 * PS, page, PS);
	}
	T_ASSERT_EQ(fl_image_writer_add_region(w, &reg), -EBUSY);
	T_ASSERT_EQ(fl_image_writer_put(w, 0, np, 1, m), -ERANGE);
	T_ASSERT_EQ(fl_image_writer_put(w, 7, 0, 1, m), -EINVAL);
	T_OK(fl_image_writer_finish(w, NULL));
	T_OK(fl_image_open(t_path_in(dir, "a.img"), 0, &img));
	T_OK(fl_image_restore(img, 0, out));
	T_ASSERT(memcmp(out, m, np * PS) == 0);
	/* region 1 was never written: absent, never zeros */
	T_ASSERT_EQ(fl_image_read(img, 1, 0, 1, out, NULL), -ENOENT);
	fl_image_close(img);
	return T_PASS;
}

static sigjmp_buf jb;
static void on_sigbus(int sig)
{
	siglongjmp(jb, 1);
}

/* A lazy region over region 0 of the image at `path` (its store, an engine
 * of its own), with SIGBUS caught into jb: the image as a program sees it. */
struct lazy {
	struct fl_image *img;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *rg;
};

static volatile uint8_t *lazy_open(struct lazy *l, const char *path, size_t len)
{
	struct fl_engine_opts eo = { .sz = sizeof(eo) };
	struct fl_region_opts ro = { .sz = sizeof(ro), .length = len, .memfd = -1 };

	T_OK(fl_image_open(path, 0, &l->img));
	T_OK(fl_image_store_new(l->img, 0, &l->st));
	T_OK(fl_engine_new(&eo, &l->e));
	T_OK(fl_engine_start(l->e));
	ro.store = l->st;
	T_OK(fl_region_new(l->e, &ro, &l->rg));
	signal(SIGBUS, on_sigbus);
	return fl_region_addr(l->rg);
}

static void lazy_close(struct lazy *l)
{
	fl_region_free(l->rg);
	fl_engine_free(l->e);
	fl_store_unref(l->st);
	fl_image_close(l->img);
}

static int t_lazy_corrupt_page(void *arg)
{
	size_t np = 256, len;
	uint8_t *m = make_mem(np, 7), *b;
	struct lazy l;
	volatile uint8_t *p;
	size_t bad_page = 10; /* data page (10 % 7 != 0) */
	uint64_t off;
	unsigned sigbus = 0;

	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	write_image(t_path_in(dir, "a.img"), m, np, 0, NULL);
	b = t_read_file(t_path_in(dir, "a.img"), &len);
	/* page 10 is the 9th data page written (pages 0 and 7 are zero) */
	off = 4096 + 8 * PS + 100;
	b[off] ^= 0xff;
	t_write_file(t_path_in(dir, "a.img"), b, len);
	p = lazy_open(&l, t_path_in(dir, "a.img"), np * PS);
	for (size_t pg = 0; pg < np; pg++) {
		if (sigsetjmp(jb, 1)) {
			sigbus++;
			T_ASSERT_EQ(pg, bad_page);
			continue;
		}
		uint8_t v = p[pg * PS + 100];
		T_ASSERT_EQ(v, m[pg * PS + 100]);
		T_ASSERT(memcmp((const void *)(p + pg * PS), m + pg * PS, PS) == 0, "page %zu", pg);
	}
	T_ASSERT_EQ(sigbus, 1);
	lazy_close(&l);
	return T_PASS;
}

/*
 * test/image/lz4-pages.img, a fixture an LZ4 build wrote (FL_IMAGE_WRITE_FIXTURE
 * makes lz4-fixture write it again): one region of FIX_PAGES pages, where
 * pages 0 and 3 are LZ4-compressed, page 1 is stored plain (it does not
 * compress) and page 2 is a zero page. A fixture, because a build without
 * LZ4 cannot write such an image and must still be tested reading one.
 */
#define FIX_PAGES 4

static uint8_t fixture_byte(size_t page, size_t i)
{
	switch (page) {
	case 0:
		return (uint8_t)(i / 64);
	case 1: {
		uint32_t x = (uint32_t)i * 2654435761u + 12345u;
		x ^= x >> 15;
		x *= 0x2c1b3c6dU;
		x ^= x >> 12;
		return (uint8_t)x;
	}
	case 2:
		return 0;
	default:
		return (uint8_t)('A' + i % 26);
	}
}

static bool fixture_lz4(size_t page)
{
	return page == 0 || page == 3;
}

static int t_lz4_fixture(void *arg)
{
	const char *fixture = getenv("FL_IMAGE_FIXTURE"), *remake = getenv("FL_IMAGE_WRITE_FIXTURE");
	uint8_t *m = malloc(FIX_PAGES * PS), *out = malloc(FIX_PAGES * PS);
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_LZ4 | FL_IMAGE_NO_SYNC };
	struct fl_image_writer *w = NULL;
	struct fl_image *img;
	uint64_t bad = 99;

	(void)arg;
	T_ASSERT(m && out);
	T_ASSERT(fixture && *fixture, "FL_IMAGE_FIXTURE is not set (meson test sets it)");
	for (size_t p = 0; p < FIX_PAGES; p++)
		for (size_t i = 0; i < PS; i++)
			m[p * PS + i] = fixture_byte(p, i);
	if (remake && *remake) {
		T_ASSERT(FL_HAVE_LZ4, "only an LZ4 build can write the fixture");
		write_image(remake, m, FIX_PAGES, FL_IMAGE_LZ4, NULL);
		fixture = remake;
	}
	T_OK(fl_image_open(fixture, 0, &img));
	T_OK(fl_image_info(img, &info));
	T_ASSERT_EQ(info.pages_total, FIX_PAGES);
	T_ASSERT_EQ(info.pages_lz4, 2);
	T_ASSERT_EQ(info.pages_zero, 1);
	for (size_t p = 0; p < FIX_PAGES; p++)
		T_ASSERT_EQ(fl_image_page_kind(img, 0, p), p == 2 ? FL_PAGE_ZERO : FL_PAGE_DATA);

	if (FL_HAVE_LZ4) {
		/* The fixture holds what fixture_byte() says. */
		T_OK(fl_image_restore(img, 0, out));
		T_ASSERT(memcmp(out, m, FIX_PAGES * PS) == 0);
		T_OK(fl_image_verify(img, &bad, NULL, NULL));
		fl_image_close(img);
		free(m);
		free(out);
		return T_PASS;
	}

	/* Without LZ4: writing compressed pages is refused up front... */
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	T_ASSERT_EQ(fl_image_writer_new(t_path_in(dir, "c.img"), &wo, &w), -EOPNOTSUPP);
	T_ASSERT(w == NULL);
	/* ...every LZ4 page fails to read with -EOPNOTSUPP and leaves the
	 * buffer alone, the others read as they are... */
	for (size_t p = 0; p < FIX_PAGES; p++) {
		uint64_t at = 99;
		memset(out, 0xee, PS);
		if (fixture_lz4(p)) {
			T_ASSERT_EQ(fl_image_read(img, 0, p, 1, out, &at), -EOPNOTSUPP);
			T_ASSERT_EQ(at, p);
			for (size_t i = 0; i < PS; i++)
				T_ASSERT_EQ(out[i], 0xee);
		} else {
			T_OK(fl_image_read(img, 0, p, 1, out, NULL));
			T_ASSERT(memcmp(out, m + p * PS, PS) == 0, "page %zu", p);
		}
	}
	T_ASSERT_EQ(fl_image_read(img, 0, 0, FIX_PAGES, out, NULL), -EOPNOTSUPP);
	T_ASSERT_EQ(fl_image_restore(img, 0, out), -EOPNOTSUPP);
	/* ...and the image is not called corrupt: nothing is. */
	T_ASSERT_EQ(fl_image_verify(img, &bad, NULL, NULL), -EOPNOTSUPP);
	T_ASSERT_EQ(bad, 0);
	fl_image_close(img);
	T_ASSERT_EQ(fl_image_open(fixture, FL_IMAGE_OPEN_VERIFY, &img), -EOPNOTSUPP);

	/* A lazy region over it: an access to an LZ4 page gets SIGBUS, never
	 * bytes; the other pages are served. */
	{
		struct lazy l;
		volatile uint8_t *p = lazy_open(&l, fixture, FIX_PAGES * PS);
		unsigned sigbus = 0;

		for (size_t pg = 0; pg < FIX_PAGES; pg++) {
			if (sigsetjmp(jb, 1)) {
				sigbus++;
				T_ASSERT(fixture_lz4(pg), "SIGBUS on page %zu, which is not LZ4", pg);
				continue;
			}
			uint8_t v = p[pg * PS + 100];
			T_ASSERT(!fixture_lz4(pg), "LZ4 page %zu read as %u without LZ4", pg, v);
			T_ASSERT(memcmp((const void *)(p + pg * PS), m + pg * PS, PS) == 0, "page %zu", pg);
		}
		T_ASSERT_EQ(sigbus, 2);
		lazy_close(&l);
	}
	free(m);
	free(out);
	return T_PASS;
}

static int t_bad_args(void *arg)
{
	struct fl_image_writer *w;
	struct fl_image *img;
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = 1u << 20 };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = 100 };

	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	T_ASSERT_EQ(fl_image_writer_new(NULL, NULL, &w), -EINVAL);
	T_ASSERT_EQ(fl_image_writer_new(t_path_in(dir, "x.img"), &o, &w), -EINVAL);
	T_ASSERT_EQ(fl_image_open(NULL, 0, &img), -EINVAL);
	T_ASSERT_EQ(fl_image_open(t_path_in(dir, "x.img"), 1u << 20, &img), -EINVAL);
	T_OK(fl_image_writer_new(t_path_in(dir, "x.img"), NULL, &w));
	T_ASSERT_EQ(fl_image_writer_add_region(w, &reg), -EINVAL); /* not page-multiple */
	T_ASSERT_EQ(fl_image_writer_put(w, 0, 0, 1, NULL), -EINVAL);
	fl_image_writer_abort(w);
	T_ASSERT(fl_image_writer_abort(NULL) == NULL);
	T_ASSERT(fl_image_close(NULL) == NULL);
	/* a directory is not an image */
	T_ASSERT(fl_image_open(dir, 0, &img) < 0);
	return T_PASS;
}

/*
 * The temporary file a signal handler may unlink (the library installs
 * none): beside the target, hidden, there while writing, gone after finish
 * (renamed) and after abort; and a size past what the format describes is
 * refused when the region is added, before anything is allocated.
 */
static int t_temp_path_and_limits(void *arg)
{
	struct fl_image_writer *w;
	struct fl_image_region reg = { .sz = sizeof(reg), .length = 1ull << 63 };
	struct stat st;
	char tmp[4096], prefix[512];
	uint8_t page[PS];
	unsigned added = 0;
	int r;

	(void)arg;
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	T_ASSERT(fl_image_writer_temp_path(NULL) == NULL);
	T_OK(fl_image_writer_new(t_path_in(dir, "t.img"), NULL, &w));
	snprintf(tmp, sizeof(tmp), "%s", fl_image_writer_temp_path(w));
	snprintf(prefix, sizeof(prefix), "%s/.t.img.tmp.", dir);
	T_ASSERT(strncmp(tmp, prefix, strlen(prefix)) == 0, "temp path %s", tmp);
	T_ASSERT(stat(tmp, &st) == 0 && S_ISREG(st.st_mode));
	reg.length = PS;
	T_ASSERT_EQ(fl_image_writer_add_region(w, &reg), 0);
	memset(page, 0x5a, sizeof(page));
	T_OK(fl_image_writer_put(w, 0, 0, 1, page));
	T_OK(fl_image_writer_finish(w, NULL));
	T_ASSERT(stat(tmp, &st) != 0 && errno == ENOENT, "temp file left after finish");
	T_ASSERT(stat(t_path_in(dir, "t.img"), &st) == 0);

	T_OK(fl_image_writer_new(t_path_in(dir, "u.img"), NULL, &w));
	snprintf(tmp, sizeof(tmp), "%s", fl_image_writer_temp_path(w));
	/* 2^52 pages a region: the 64th would pass 2^58 pages in all. */
	reg.length = UINT64_MAX / PS * PS;
	do {
		r = fl_image_writer_add_region(w, &reg);
	} while (r >= 0 && ++added < 1000);
	T_ASSERT_EQ(r, -EFBIG);
	T_ASSERT(added > 0 && added < 1000, "%u regions added", added);
	fl_image_writer_abort(w);
	T_ASSERT(stat(tmp, &st) != 0 && errno == ENOENT, "temp file left after abort");
	T_ASSERT(stat(t_path_in(dir, "u.img"), &st) != 0);
	return T_PASS;
}

/*
 * Pages saved again (as precopy rounds do) keep one copy in the image: the
 * file holds the live data, the header, table, index and end record, and
 * nothing else, and reads back the last bytes put. Every way a copy can be
 * replaced: the same kind in place, data that became zeros, zeros that
 * became data, an LZ4 page that no longer compresses (or compresses
 * worse), an uncompressed page that now compresses.
 */
static int t_resave_one_copy(void *arg)
{
	bool lz4 = arg != NULL;
	size_t np = 512;
	uint8_t *m = make_mem(np, 3), *out = malloc(np * PS);
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC | (lz4 ? FL_IMAGE_LZ4 : 0) };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = np * PS, .prot = 3, .mem = FL_MEM_ANON, .name = "mem" };
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_image_writer *w;
	struct fl_image *img;
	uint64_t overhead, bad = 99;

	if (lz4 && !FL_HAVE_LZ4)
		t_skip("built without LZ4 support (-Dlz4=disabled)");
	T_ASSERT(out != NULL);
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-image");
	if (lz4) /* half the pages compress */
		for (size_t pg = 0; pg < np; pg += 2)
			if (pg % 7)
				memset(m + pg * PS, 0x5a, PS / 2);
	T_OK(fl_image_writer_new(t_path_in(dir, "r.img"), &o, &w));
	T_ASSERT_EQ(fl_image_writer_add_region(w, &reg), 0);
	T_OK(fl_image_writer_put(w, 0, 0, np, m));
	for (int round = 0; round < 4; round++) {
		/* Change a third of the pages each round, every way. */
		for (size_t pg = (size_t)round; pg < np; pg += 3) {
			uint8_t *p = m + pg * PS;
			switch ((pg / 3 + (size_t)round) % 4) {
			case 0: memset(p, 0, PS); break;				/* now zeros */
			case 1: t_fill_pattern(p, PS, pg * PS, 100 + (uint32_t)round); break;	/* incompressible */
			case 2: t_fill_pattern(p, PS, pg * PS, 200 + (uint32_t)round);
				memset(p, 0x33, PS - 64); break;			/* very compressible */
			default: p[100] ^= 0xff; break;				/* a byte */
			}
		}
		for (size_t pg = (size_t)round; pg < np; pg += 3 * 5)
			T_OK(fl_image_writer_put(w, 0, pg, np - pg < 15 ? np - pg : 15, m + pg * PS));
	}
	T_OK(fl_image_writer_finish(w, NULL));
	T_OK(fl_image_open(t_path_in(dir, "r.img"), FL_IMAGE_OPEN_VERIFY, &img));
	T_OK(fl_image_info(img, &info));
	T_OK(fl_image_restore(img, 0, out));
	T_ASSERT(memcmp(out, m, np * PS) == 0, "not the last bytes put");
	T_ASSERT_EQ(fl_image_verify(img, &bad, NULL, NULL), 0);
	T_ASSERT_EQ(bad, 0);
	/* Header, region table, index, end record, and at most a page of
	 * alignment before the table and per switch back to uncompressed
	 * data (LZ4 pages are packed; uncompressed ones page-aligned). */
	overhead = 4096 + 128 + np * 24 + 64 + PS;
	if (lz4)
		overhead += info.pages_lz4 * PS;
	t_log("file %llu bytes, data %llu bytes (%llu pages, %llu LZ4)", (unsigned long long)info.file_bytes,
	      (unsigned long long)info.data_bytes, (unsigned long long)info.pages_data,
	      (unsigned long long)info.pages_lz4);
	T_ASSERT(info.file_bytes <= info.data_bytes + overhead, "file %llu bytes for %llu bytes of data: dead copies",
		 (unsigned long long)info.file_bytes, (unsigned long long)info.data_bytes);
	fl_image_close(img);
	unlink(t_path_in(dir, "r.img"));
	free(m);
	free(out);
	return T_PASS;
}

int main(int argc, char **argv)
{
	static const struct t_case cases[] = {
		{ "roundtrip", t_roundtrip, NULL, 60 },
		{ "roundtrip-lz4", t_roundtrip, (void *)1, 60 },
		{ "incremental-chain", t_chain, NULL, 60 },
		{ "refcount", t_refcount, NULL, 60 },
		{ "parent-mismatch", t_parent_mismatch, NULL, 60 },
		{ "damage-sweep", t_damage_sweep, NULL, 120 },
		{ "full-disk-atomic", t_full_disk, NULL, 60 },
		{ "any-order-threads", t_any_order_threads, NULL, 60 },
		{ "lazy-corrupt-page-sigbus", t_lazy_corrupt_page, NULL, 60 },
		{ "lz4-fixture", t_lz4_fixture, NULL, 60 },
		{ "bad-args", t_bad_args, NULL, 30 },
		{ "temp-path-and-limits", t_temp_path_and_limits, NULL, 30 },
		{ "resave-one-copy", t_resave_one_copy, NULL, 60 },
		{ "resave-one-copy-lz4", t_resave_one_copy, (void *)1, 60 },
	};
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
