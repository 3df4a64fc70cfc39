// SPDX-License-Identifier: LGPL-2.1-or-later
/* Image format v1: round trips, chains, damaged images, atomic writes, lazy restore. */
#include "harness.h"

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

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fl-image-XXXXXX");
	T_ASSERT(mkdtemp(dir) != NULL);
}

static char *path_in(const char *name)
{
	static char buf[4][512];
	static int k;
	char *p = buf[k++ & 3];
	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

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
	uint8_t *m = make_mem(np, 1), *out = malloc(np * PS);
	struct fl_image *img;
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_image_region reg = { .sz = sizeof(reg) };
	uint64_t bad = 99;

	mkdir_tmp();
	if (lz4) /* make the data pages compressible */
		for (size_t pg = 1; pg < np; pg++)
			if (pg % 7)
				memset(m + pg * PS, 0x5a, PS / 2);
	write_image(path_in("a.img"), m, np, lz4 ? FL_IMAGE_LZ4 : 0, NULL);
	T_OK(fl_image_open(path_in("a.img"), FL_IMAGE_OPEN_VERIFY, &img));
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
	mkdir_tmp();
	write_image(path_in("r.img"), m, np, 0, NULL);
	T_OK(fl_image_open(path_in("r.img"), 0, &img));
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
	write_image(path_in("c.img"), m2, np, 0, path_in("r.img"));
	T_OK(fl_image_open(path_in("c.img"), 0, &child));
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

	mkdir_tmp();
	for (int level = 0; level < 4; level++) {
		struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC,
						  .parent = level ? path_in(names[level - 1]) : NULL };
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
		T_OK(fl_image_writer_new(path_in(names[level]), &o, &w));
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
		T_OK(fl_image_open(path_in(names[level]), FL_IMAGE_OPEN_VERIFY, &img));
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

	mkdir_tmp();
	write_image(path_in("p.img"), m, np, 0, NULL);
	m[100] ^= 1;
	write_image(path_in("c.img"), m, np, 0, path_in("p.img"));
	T_OK(fl_image_open(path_in("c.img"), 0, &img));
	fl_image_close(img);
	/* Replace the parent with different content: the child must refuse it. */
	m[200] ^= 1;
	write_image(path_in("p.img"), m, np, 0, NULL);
	T_ASSERT_EQ(fl_image_open(path_in("c.img"), 0, &img), -ESTALE);
	/* Parent missing altogether. */
	unlink(path_in("p.img"));
	T_ASSERT_EQ(fl_image_open(path_in("c.img"), 0, &img), -ENOENT);
	T_OK(fl_image_open(path_in("c.img"), FL_IMAGE_OPEN_NO_PARENT, &img));
	fl_image_close(img);
	/* An incremental image with a different layout is refused at write. */
	{
		struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC, .parent = path_in("c.img") };
		struct fl_image_writer *w;
		struct fl_image_region reg = { .sz = sizeof(reg), .length = 2 * np * PS };
		write_image(path_in("p.img"), m, np, 0, NULL); /* (c.img still names the old one) */
		o.parent = path_in("p.img");
		T_OK(fl_image_writer_new(path_in("bad.img"), &o, &w));
		T_OK(fl_image_writer_add_region(w, &reg));
		T_ASSERT_EQ(fl_image_writer_put(w, 0, 0, 1, m), -ESTALE);
		fl_image_writer_abort(w);
	}
	return T_PASS;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *b;
	T_ASSERT(fd >= 0);
	fstat(fd, &st);
	b = malloc((size_t)st.st_size);
	T_ASSERT(read(fd, b, (size_t)st.st_size) == st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void write_file(const char *path, const uint8_t *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	T_ASSERT(fd >= 0);
	T_ASSERT(write(fd, b, len) == (ssize_t)len);
	close(fd);
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

	mkdir_tmp();
	write_image(path_in("a.img"), m, np, 0, NULL);
	orig = read_file(path_in("a.img"), &len);
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
		write_file(path_in("d.img"), b, len);
		r = fl_image_open(path_in("d.img"), 0, &img);
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
		write_file(path_in("t.img"), orig, cut);
		r = fl_image_open(path_in("t.img"), 0, &img);
		T_ASSERT(r == -EBADMSG || r == -EPROTO, "truncated to %zu: %d", cut, r);
	}
	/* wrong magic, wrong version */
	memcpy(b, orig, len);
	memcpy(b, "NOTANIMG", 8);
	write_file(path_in("m.img"), b, len);
	T_ASSERT_EQ(fl_image_open(path_in("m.img"), 0, &img), -EPROTO);
	memcpy(b, orig, len);
	b[8] = 2;
	write_file(path_in("v.img"), b, len);
	T_ASSERT_EQ(fl_image_open(path_in("v.img"), 0, &img), -EPROTO);
	/* not a file we can read */
	T_ASSERT_EQ(fl_image_open(path_in("missing.img"), 0, &img), -ENOENT);
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
		t_skip("needs root to mount a small tmpfs");
	mkdir_tmp();
	T_ASSERT(unshare(CLONE_NEWNS) == 0, "unshare: %s", strerror(errno));
	T_ASSERT(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0);
	T_ASSERT(mount("tmpfs", dir, "tmpfs", 0, "size=2m") == 0, "mount: %s", strerror(errno));
	/* a pre-existing image at the target must survive a failed write */
	write_file(path_in("a.img"), (const uint8_t *)"old", 3);
	r = fl_image_writer_new(path_in("a.img"), &o, &w);
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
		uint8_t *b = read_file(path_in("a.img"), &len);
		T_ASSERT(len == 3 && memcmp(b, "old", 3) == 0);
	}
	/* abort leaves nothing either */
	T_OK(fl_image_writer_new(path_in("b.img"), &o, &w));
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

	mkdir_tmp();
	T_OK(fl_image_writer_new(path_in("a.img"), &o, &w));
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
	T_OK(fl_image_open(path_in("a.img"), 0, &img));
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

static int t_lazy_corrupt_page(void *arg)
{
	size_t np = 256, len;
	uint8_t *m = make_mem(np, 7), *b;
	struct fl_image *img;
	struct fl_store *st;
	struct fl_engine *e;
	struct fl_region *rg;
	struct fl_engine_opts eo = { .sz = sizeof(eo) };
	struct fl_region_opts ro = { .sz = sizeof(ro), .length = np * PS, .memfd = -1 };
	volatile uint8_t *p;
	size_t bad_page = 10; /* data page (10 % 7 != 0) */
	uint64_t off;
	unsigned sigbus = 0;

	mkdir_tmp();
	write_image(path_in("a.img"), m, np, 0, NULL);
	b = read_file(path_in("a.img"), &len);
	/* page 10 is the 9th data page written (pages 0 and 7 are zero) */
	off = 4096 + 8 * PS + 100;
	b[off] ^= 0xff;
	write_file(path_in("a.img"), b, len);
	T_OK(fl_image_open(path_in("a.img"), 0, &img));
	T_OK(fl_image_store_new(img, 0, &st));
	T_OK(fl_engine_new(&eo, &e));
	T_OK(fl_engine_start(e));
	ro.store = st;
	T_OK(fl_region_new(e, &ro, &rg));
	p = fl_region_addr(rg);
	signal(SIGBUS, on_sigbus);
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
	fl_region_free(rg);
	fl_engine_free(e);
	fl_store_unref(st);
	fl_image_close(img);
	return T_PASS;
}

static int t_bad_args(void *arg)
{
	struct fl_image_writer *w;
	struct fl_image *img;
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = 1u << 20 };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = 100 };

	mkdir_tmp();
	T_ASSERT_EQ(fl_image_writer_new(NULL, NULL, &w), -EINVAL);
	T_ASSERT_EQ(fl_image_writer_new(path_in("x.img"), &o, &w), -EINVAL);
	T_ASSERT_EQ(fl_image_open(NULL, 0, &img), -EINVAL);
	T_ASSERT_EQ(fl_image_open(path_in("x.img"), 1u << 20, &img), -EINVAL);
	T_OK(fl_image_writer_new(path_in("x.img"), NULL, &w));
	T_ASSERT_EQ(fl_image_writer_add_region(w, &reg), -EINVAL); /* not page-multiple */
	T_ASSERT_EQ(fl_image_writer_put(w, 0, 0, 1, NULL), -EINVAL);
	fl_image_writer_abort(w);
	T_ASSERT(fl_image_writer_abort(NULL) == NULL);
	T_ASSERT(fl_image_close(NULL) == NULL);
	/* a directory is not an image */
	T_ASSERT(fl_image_open(dir, 0, &img) < 0);
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
		{ "bad-args", t_bad_args, NULL, 30 },
	};
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
