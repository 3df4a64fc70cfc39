// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Stores (include/faultline/store.h): vtable validation, a custom store
 * used by a region, reference counting, memory stores with and without
 * FL_STORE_MEM_COPY, file stores with an offset and a size, bounds (never
 * zeros past the end), write and flush, and the fault-injection controls.
 */
#include "util.h"

#include <sys/stat.h>

#define LEN (4 * U_MIB)

/* ---- a custom store: the pattern, computed on the fly ----------------------------- */

struct custom {
	uint32_t seed;
	_Atomic long reads, iovs;
	_Atomic int destroyed;
	_Atomic int ctl_op;
	uint64_t zero_from;	/* pages at or past this offset are reported as zeros */
};

static int custom_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct custom *c = ctx;
	atomic_fetch_add(&c->reads, 1);
	for (unsigned i = 0; i < n; i++) {
		atomic_fetch_add(&c->iovs, 1);
		if (iov[i].offset >= c->zero_from) {
			iov[i].flags_out |= FL_STORE_OUT_ZERO;	/* buf left untouched */
		} else {
			uint64_t data = c->zero_from - iov[i].offset;
			if (data > iov[i].len)
				data = iov[i].len;
			t_fill_pattern(iov[i].buf, data, iov[i].offset, c->seed);
			memset((uint8_t *)iov[i].buf + data, 0, iov[i].len - data);
		}
		iov[i].result = 0;
	}
	return 0;
}

static int custom_ctl(void *ctx, int op, void *arg)
{
	struct custom *c = ctx;
	(void)arg;
	if (op == 0x7777) {
		atomic_store(&c->ctl_op, op);
		return 42;
	}
	return -ENOTTY;
}

static void custom_destroy(void *ctx)
{
	struct custom *c = ctx;
	atomic_store(&c->destroyed, 1);
}

static const struct fl_store_ops custom_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "custom-pattern",
	.read = custom_read,
	.ctl = custom_ctl,
	.destroy = custom_destroy,
};

static int c_vtable_validation(void *arg)
{
	struct fl_store_ops ops = custom_ops;
	struct custom ctx = { .seed = 1, .zero_from = UINT64_MAX };
	struct fl_store *sentinel = (struct fl_store *)(uintptr_t)0x1, *s = sentinel;
	(void)arg;

	T_ASSERT_EQ(fl_store_new(NULL, &ctx, LEN, &s), -EINVAL);
	T_ASSERT_EQ(fl_store_new(&ops, &ctx, LEN, NULL), -EINVAL);
	ops.sz = 0;
	T_ASSERT_EQ(fl_store_new(&ops, &ctx, LEN, &s), -EINVAL);
	ops.sz = offsetof(struct fl_store_ops, read);	/* too old to hold read */
	T_ASSERT_EQ(fl_store_new(&ops, &ctx, LEN, &s), -EINVAL);
	ops = custom_ops;
	ops.version = FL_STORE_OPS_VERSION + 1;
	T_ASSERT_EQ(fl_store_new(&ops, &ctx, LEN, &s), -EINVAL);
	ops.version = 0;
	T_ASSERT_EQ(fl_store_new(&ops, &ctx, LEN, &s), -EINVAL);
	ops = custom_ops;
	ops.read = NULL;
	T_ASSERT_EQ(fl_store_new(&ops, &ctx, LEN, &s), -EINVAL);
	T_ASSERT(s == sentinel, "ret_store written on failure");
	T_ASSERT_EQ(atomic_load(&ctx.destroyed), 0);

	/* Good ops; name NULL is allowed. */
	ops = custom_ops;
	ops.name = NULL;
	s = NULL;
	T_OK(fl_store_new(&ops, &ctx, LEN, &s));
	T_ASSERT(s != NULL);
	T_ASSERT(fl_store_name(s) != NULL);
	T_ASSERT_EQ(fl_store_size(s), LEN);
	T_ASSERT(fl_store_unref(s) == NULL);
	T_ASSERT_EQ(atomic_load(&ctx.destroyed), 1);
	T_ASSERT(fl_store_unref(NULL) == NULL);
	T_ASSERT(fl_store_ref(NULL) == NULL);
	return T_PASS;
}

/* A region over the custom store: bytes, zero reports, the vtable's ctl, destroy. */
static int c_custom_region(void *arg)
{
	const struct u_cfg *c = arg;
	struct custom ctx = { .seed = 0xc0, .zero_from = LEN * 3 / 4 };
	struct fl_engine *e;
	struct fl_store *s = NULL;
	struct fl_region *r;
	struct fl_region_stats st;
	uint8_t *img, *base;
	size_t psz = u_cfg_psz(c);

	u_require_cfg(c, LEN);
	e = u_engine(0, 2);
	T_OK(fl_store_new(&custom_ops, &ctx, LEN, &s));
	T_ASSERT(strcmp(fl_store_name(s), "custom-pattern") == 0);
	T_ASSERT_EQ(fl_store_ctl(s, 0x7777, NULL), 42);
	T_ASSERT_EQ(atomic_load(&ctx.ctl_op), 0x7777);
	T_ASSERT_EQ(fl_store_ctl(s, 0x1234, NULL), -EOPNOTSUPP);
	img = u_image(LEN, 0, ctx.seed);
	memset(img + ctx.zero_from, 0, LEN - ctx.zero_from);
	r = u_region(e, c, LEN, s, 0);
	base = fl_region_addr(r);
	u_read_threads(base, img, psz, LEN / psz, 4, 1);
	U_CHECK(base, img, LEN, psz);
	st = u_rstats_settled(r);
	T_ASSERT(atomic_load(&ctx.reads) > 0);
	/* The zero tail is ZEROPAGE'd, except short zero runs at the edge of a
	 * prefetch window that also holds data: those are copied (region.h). */
	T_ASSERT(st.pages_zero >= (LEN - ctx.zero_from) / psz / 2 || c->mode == FL_MODE_MINOR,
		 "%llu ZEROPAGE'd of %zu zero pages", (unsigned long long)st.pages_zero,
		 (size_t)((LEN - ctx.zero_from) / psz));
	/* The region holds a reference: dropping ours does not destroy the store. */
	fl_store_unref(s);
	T_ASSERT_EQ(atomic_load(&ctx.destroyed), 0);
	fl_region_free(r);
	T_ASSERT_EQ(atomic_load(&ctx.destroyed), 1);
	fl_engine_free(e);
	return T_PASS;
}

static int c_refcount(void *arg)
{
	struct custom ctx = { .seed = 3, .zero_from = UINT64_MAX };
	struct fl_engine *e;
	struct fl_store *s = NULL;
	struct fl_region *r1, *r2;
	static const struct u_cfg anon = { "anon", FL_MEM_ANON, FL_MODE_MISSING };
	uint8_t *img;
	(void)arg;

	T_OK(fl_store_new(&custom_ops, &ctx, LEN, &s));
	T_ASSERT(fl_store_ref(s) == s);		/* 2 */
	T_ASSERT(fl_store_unref(s) == NULL);	/* 1 */
	T_ASSERT_EQ(atomic_load(&ctx.destroyed), 0);
	e = u_engine(0, 1);
	img = u_image(LEN, 0, ctx.seed);
	r1 = u_region(e, &anon, LEN, s, 0);	/* 2 */
	r2 = u_region(e, &anon, LEN, s, 0);	/* 3 */
	fl_store_unref(s);			/* 2 */
	U_CHECK(fl_region_addr(r1), img, LEN, U_PAGE);
	fl_region_free(r1);			/* 1 */
	T_ASSERT_EQ(atomic_load(&ctx.destroyed), 0);
	U_CHECK(fl_region_addr(r2), img, LEN, U_PAGE);
	fl_region_free(r2);			/* 0 */
	T_ASSERT_EQ(atomic_load(&ctx.destroyed), 1);
	fl_engine_free(e);
	return T_PASS;
}

/* ---- memory stores ------------------------------------------------------------------ */

static void read_one(struct fl_store *s, uint64_t off, void *buf, size_t len, int want)
{
	struct fl_store_iov iov = { .offset = off, .buf = buf, .len = len };
	int r = fl_store_read(s, &iov, 1);
	T_ASSERT(r == want, "read(%llu, %zu) = %d, want %d", (unsigned long long)off, len, r, want);
}

static int c_memory(void *arg)
{
	uint8_t *buf = u_image(LEN, 0, 0x3e3), *out = malloc(LEN), *page = malloc(U_PAGE);
	struct fl_store *view = NULL, *copy = NULL, *s = (struct fl_store *)(uintptr_t)0x1;
	struct fl_store_iov wr;
	(void)arg;

	T_ASSERT(out && page);
	T_ASSERT_EQ(fl_store_memory_new(NULL, LEN, 0, &s), -EINVAL);
	T_ASSERT_EQ(fl_store_memory_new(buf, LEN, 0x80, &s), -EINVAL);
	T_ASSERT_EQ(fl_store_memory_new(buf, LEN, 0, NULL), -EINVAL);
	T_ASSERT(s == (struct fl_store *)(uintptr_t)0x1);
	T_OK(fl_store_memory_new(buf, LEN, 0, &view));
	T_OK(fl_store_memory_new(buf, LEN, FL_STORE_MEM_COPY, &copy));
	T_ASSERT(strcmp(fl_store_name(view), "memory") == 0);
	T_ASSERT_EQ(fl_store_size(view), LEN);
	T_ASSERT_EQ(fl_store_size(copy), LEN);
	read_one(view, 0, out, LEN, 0);
	T_ASSERT(memcmp(out, buf, LEN) == 0);
	read_one(copy, 0, out, LEN, 0);
	T_ASSERT(memcmp(out, buf, LEN) == 0);
	/* Without COPY the store is a view of the caller's buffer; with COPY a snapshot. */
	memset(buf + 8 * U_PAGE, 0x5a, U_PAGE);
	read_one(view, 8 * U_PAGE, page, U_PAGE, 0);
	T_ASSERT(page[0] == 0x5a && page[U_PAGE - 1] == 0x5a);
	read_one(copy, 8 * U_PAGE, page, U_PAGE, 0);
	T_ASSERT(t_check_pattern(page, U_PAGE, 8 * U_PAGE, 0x3e3) == -1);
	/* Writes land in the buffer (view) or the store's copy. */
	memset(page, 0xc3, U_PAGE);
	wr = (struct fl_store_iov){ .offset = 3 * U_PAGE, .buf = page, .len = U_PAGE };
	T_OK(fl_store_write(view, &wr, 1));
	T_ASSERT(buf[3 * U_PAGE] == 0xc3 && buf[4 * U_PAGE - 1] == 0xc3);
	T_OK(fl_store_write(copy, &wr, 1));
	read_one(copy, 3 * U_PAGE, out, U_PAGE, 0);
	T_ASSERT(out[0] == 0xc3 && out[U_PAGE - 1] == 0xc3);
	/* Memory stores have nothing to flush. */
	T_ASSERT_EQ(fl_store_flush(view), -EOPNOTSUPP);
	/* Beyond the end: -ERANGE, for reads and writes. */
	memset(out, 0xee, U_PAGE);
	read_one(view, LEN, out, U_PAGE, -ERANGE);
	read_one(view, LEN - U_PAGE / 2, out, U_PAGE, -ERANGE);
	read_one(view, UINT64_MAX - 10, out, U_PAGE, -ERANGE);
	T_ASSERT(out[0] == 0xee, "a failed read wrote the buffer");
	wr.offset = LEN - 100;
	T_ASSERT_EQ(fl_store_write(view, &wr, 1), -ERANGE);
	/* An empty batch is fine. */
	T_OK(fl_store_read(view, NULL, 0));
	fl_store_unref(view);
	fl_store_unref(copy);
	return T_PASS;
}

/* ---- file stores --------------------------------------------------------------------- */

static int c_file(void *arg)
{
	size_t flen = LEN + 5 * U_PAGE + 123;
	uint8_t *img = u_image(flen, 0, 0xf1f1), *out = malloc(LEN), *page = malloc(U_PAGE);
	char path[64];
	struct fl_store *part = NULL, *tail = NULL, *ro = NULL, *s = (struct fl_store *)(uintptr_t)0x1;
	struct fl_store_iov iov[3], wr;
	int fd, rofd;
	(void)arg;

	T_ASSERT(out && page);
	fd = u_tmpfile(img, flen, path, sizeof(path));
	T_ASSERT_EQ(fl_store_file_new(-1, 0, 0, &s), -EINVAL);
	T_ASSERT_EQ(fl_store_file_new(fd, flen + 1, 0, &s), -ERANGE);
	T_ASSERT_EQ(fl_store_file_open("/nonexistent/faultline", &s), -ENOENT);
	T_ASSERT_EQ(fl_store_file_open(NULL, &s), -EINVAL);
	T_ASSERT(s == (struct fl_store *)(uintptr_t)0x1);

	/* The whole file, by path (read-only). */
	T_OK(fl_store_file_open(path, &ro));
	T_ASSERT_EQ(fl_store_size(ro), flen);
	T_ASSERT(strcmp(fl_store_name(ro), "file") == 0);
	read_one(ro, flen - 123, page, 123, 0);
	T_ASSERT(memcmp(page, img + flen - 123, 123) == 0);
	/* Read-only: writing fails (not silently dropped). */
	wr = (struct fl_store_iov){ .offset = 0, .buf = page, .len = 16 };
	T_ASSERT(fl_store_write(ro, &wr, 1) < 0);

	/* An offset and a size; the store dups the fd, so ours may close. */
	T_OK(fl_store_file_new(fd, 2 * U_PAGE, LEN, &part));
	T_OK(fl_store_file_new(fd, 4 * U_PAGE, 0, &tail));	/* size 0: to the end of the file */
	rofd = dup(fd);
	close(fd);
	T_ASSERT_EQ(fl_store_size(part), LEN);
	T_ASSERT_EQ(fl_store_size(tail), flen - 4 * U_PAGE);
	read_one(part, 0, out, LEN, 0);
	T_ASSERT(memcmp(out, img + 2 * U_PAGE, LEN) == 0);
	read_one(tail, fl_store_size(tail) - U_PAGE, page, U_PAGE, 0);
	T_ASSERT(memcmp(page, img + flen - U_PAGE, U_PAGE) == 0);
	/* A batch: every request filled, every result 0. */
	iov[0] = (struct fl_store_iov){ .offset = 0, .buf = out, .len = U_PAGE };
	iov[1] = (struct fl_store_iov){ .offset = 7 * U_PAGE, .buf = out + U_PAGE, .len = 2 * U_PAGE };
	iov[2] = (struct fl_store_iov){ .offset = LEN - U_PAGE, .buf = out + 3 * U_PAGE, .len = U_PAGE };
	T_OK(fl_store_read(part, iov, 3));
	for (int i = 0; i < 3; i++) {
		T_ASSERT_EQ(iov[i].result, 0);
		T_ASSERT(memcmp(iov[i].buf, img + 2 * U_PAGE + iov[i].offset, iov[i].len) == 0, "iov %d", i);
	}
	/* Bounds are the store's size, not the file's. */
	read_one(part, LEN, page, U_PAGE, -ERANGE);
	read_one(part, LEN - 10, page, U_PAGE, -ERANGE);
	read_one(ro, flen - 100, page, U_PAGE, -ERANGE);

	/* Write and flush go to the file at the store's offset. */
	memset(page, 0x77, U_PAGE);
	wr = (struct fl_store_iov){ .offset = U_PAGE, .buf = page, .len = U_PAGE };
	T_OK(fl_store_write(part, &wr, 1));
	T_OK(fl_store_flush(part));
	T_ASSERT(pread(rofd, out, U_PAGE, (off_t)(3 * U_PAGE)) == (ssize_t)U_PAGE);
	T_ASSERT(memcmp(out, page, U_PAGE) == 0, "write did not reach the file at offset + 4096");
	read_one(tail, 0, out, U_PAGE, 0);	/* file page 4 is untouched */
	T_ASSERT(memcmp(out, img + 4 * U_PAGE, U_PAGE) == 0);
	wr.offset = LEN;
	T_ASSERT_EQ(fl_store_write(part, &wr, 1), -ERANGE);
	close(rofd);
	unlink(path);
	fl_store_unref(part);
	fl_store_unref(tail);
	fl_store_unref(ro);
	return T_PASS;
}

/*
 * A raw file store over a faultline image would serve its header and index
 * as memory: fl_store_file_open() refuses a file that starts with the image
 * magic (-EMEDIUMTYPE), valid image or not, and takes any other file, one
 * that starts with most of the magic included. fl_store_file_new() on the
 * caller's descriptor still gives the raw bytes, on purpose.
 */
static int c_file_refuses_image(void *arg)
{
	uint8_t *mem = u_image(2 * U_PAGE, 0, 0x1a1a), head[16];
	struct fl_range range = { (uintptr_t)mem, 2 * U_PAGE };
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_NO_SYNC };
	struct fl_store *s = (struct fl_store *)(uintptr_t)0x1, *raw = NULL;
	char path[64], imgpath[128];
	int fd;
	(void)arg;

	/* A real image, as `faultline image create` or a snapshot writes it. */
	fd = u_tmpfile("x", 1, path, sizeof(path));
	close(fd);
	snprintf(imgpath, sizeof(imgpath), "%s.img", path);
	T_OK(fl_image_write_ranges(imgpath, &range, 1, &wo));
	T_ASSERT_EQ(fl_store_file_open(imgpath, &s), -EMEDIUMTYPE);
	T_ASSERT(s == (struct fl_store *)(uintptr_t)0x1, "*ret_store written on failure");
	/* The raw bytes, asked for with a descriptor of one's own. */
	fd = open(imgpath, O_RDONLY | O_CLOEXEC);
	T_ASSERT(fd >= 0);
	T_OK(fl_store_file_new(fd, 0, 0, &raw));
	close(fd);
	read_one(raw, 0, head, 8, 0);
	T_ASSERT(memcmp(head, "FLTIMAGE", 8) == 0);
	fl_store_unref(raw);
	unlink(imgpath);

	/* Just the magic, then garbage: still refused (not memory either way). */
	memcpy(head, "FLTIMAGEgarbage!", 16);
	fd = u_tmpfile(head, 16, imgpath, sizeof(imgpath));
	close(fd);
	T_ASSERT_EQ(fl_store_file_open(imgpath, &s), -EMEDIUMTYPE);
	unlink(imgpath);

	/* Ordinary files are served: most of the magic, and a short file. */
	memcpy(head, "FLTIMAGxgarbage!", 16);
	fd = u_tmpfile(head, 16, imgpath, sizeof(imgpath));
	close(fd);
	T_OK(fl_store_file_open(imgpath, &s));
	T_ASSERT_EQ(fl_store_size(s), 16);
	fl_store_unref(s);
	unlink(imgpath);
	T_OK(fl_store_file_open(path, &s));	/* one byte */
	T_ASSERT_EQ(fl_store_size(s), 1);
	fl_store_unref(s);
	unlink(path);
	munmap(mem, 2 * U_PAGE);
	return T_PASS;
}

/* ---- zero stores ------------------------------------------------------------------------ */

static int c_zero(void *arg)
{
	struct fl_store *z = NULL;
	struct fl_store_iov iov;
	uint8_t page[256];
	(void)arg;

	T_OK(fl_store_zero_new(LEN, &z));
	T_ASSERT_EQ(fl_store_size(z), LEN);
	memset(page, 0xee, sizeof(page));
	iov = (struct fl_store_iov){ .offset = 0, .buf = page, .len = sizeof(page) };
	T_OK(fl_store_read(z, &iov, 1));
	T_ASSERT(iov.flags_out & FL_STORE_OUT_ZERO);
	T_ASSERT_EQ(iov.result, 0);
	iov = (struct fl_store_iov){ .offset = LEN, .buf = page, .len = sizeof(page) };
	T_ASSERT_EQ(fl_store_read(z, &iov, 1), -ERANGE);
	T_ASSERT(!(iov.flags_out & FL_STORE_OUT_ZERO), "past the end reported as zeros");
	/* Zero stores cannot be written or flushed. */
	iov = (struct fl_store_iov){ .offset = 0, .buf = page, .len = sizeof(page) };
	T_ASSERT_EQ(fl_store_write(z, &iov, 1), -EOPNOTSUPP);
	T_ASSERT_EQ(fl_store_flush(z), -EOPNOTSUPP);
	/* Unknown ctl, and other stores' ops: refused, arg never read. */
	T_ASSERT_EQ(fl_store_ctl(z, 0x4242, NULL), -EOPNOTSUPP);
	T_ASSERT_EQ(fl_store_ctl(z, FL_REMOTE_CTL_STATS, (void *)page), -EOPNOTSUPP);
	T_ASSERT_EQ(fl_store_ctl(z, FL_REDIS_CTL_STATS, (void *)page), -EOPNOTSUPP);
	/* In and out flags never share a bit: an out flag in flags_in (or an
	 * unknown one) is refused rather than read as FL_STORE_IN_URGENT. */
	_Static_assert((FL_STORE_IN_URGENT & FL_STORE_OUT_ZERO) == 0, "in/out flags overlap");
	_Static_assert((FL_STORE_OUT_ZERO & FL_STORE_IN_MASK) == 0, "out flag inside the in mask");
	iov = (struct fl_store_iov){ .offset = 0, .buf = page, .len = sizeof(page), .flags_in = FL_STORE_OUT_ZERO };
	T_ASSERT_EQ(fl_store_read(z, &iov, 1), -EINVAL);
	iov = (struct fl_store_iov){ .offset = 0, .buf = page, .len = sizeof(page),
				     .flags_in = FL_STORE_IN_URGENT, .flags_out = FL_STORE_OUT_ZERO };
	T_OK(fl_store_read(z, &iov, 1));
	T_ASSERT_EQ(iov.flags_in, FL_STORE_IN_URGENT);
	fl_store_unref(z);
	return T_PASS;
}

/* ---- fault injection --------------------------------------------------------------------- */

static int c_ctl(void *arg)
{
	uint8_t *buf = u_image(LEN, 0, 0xc71), *out = malloc(3 * U_PAGE);
	struct fl_store *s[3] = { NULL, NULL, NULL };
	char path[64];
	int fd;
	(void)arg;

	T_ASSERT(out);
	T_OK(fl_store_memory_new(buf, LEN, 0, &s[0]));
	fd = u_tmpfile(buf, LEN, path, sizeof(path));
	unlink(path);
	T_OK(fl_store_file_new(fd, 0, 0, &s[1]));
	close(fd);
	T_OK(fl_store_zero_new(LEN, &s[2]));
	for (int k = 0; k < 3; k++) {
		uint64_t fail[2] = { 10 * U_PAGE + 100, 10 };	/* bytes inside page 10 */
		uint64_t delay = 30000, none[2] = { 0, 0 }, zero = 0;
		struct fl_store_iov iov[3];
		uint64_t t0;

		T_ASSERT_EQ(fl_store_ctl(s[k], FL_STORE_CTL_FAIL_AT, NULL), -EINVAL);
		T_ASSERT_EQ(fl_store_ctl(s[k], FL_STORE_CTL_DELAY_US, NULL), -EINVAL);
		T_ASSERT_EQ(fl_store_ctl(s[k], 0x5555, NULL), -EOPNOTSUPP);
		T_OK(fl_store_ctl(s[k], FL_STORE_CTL_FAIL_AT, fail));
		/* A batch with the failing page in the middle: only it fails. */
		iov[0] = (struct fl_store_iov){ .offset = 9 * U_PAGE, .buf = out, .len = U_PAGE };
		iov[1] = (struct fl_store_iov){ .offset = 10 * U_PAGE, .buf = out + U_PAGE, .len = U_PAGE };
		iov[2] = (struct fl_store_iov){ .offset = 11 * U_PAGE, .buf = out + 2 * U_PAGE, .len = U_PAGE };
		T_ASSERT_EQ(fl_store_read(s[k], iov, 3), -EIO);
		T_ASSERT_EQ(iov[0].result, 0);
		T_ASSERT_EQ(iov[1].result, -EIO);
		T_ASSERT_EQ(iov[2].result, 0);
		if (k < 2) {
			T_ASSERT(memcmp(out, buf + 9 * U_PAGE, U_PAGE) == 0);
			T_ASSERT(memcmp(out + 2 * U_PAGE, buf + 11 * U_PAGE, U_PAGE) == 0);
		}
		/* A range overlapping the failing bytes fails; one ending just before does not. */
		read_one(s[k], 0, out, 3 * U_PAGE, 0);
		read_one(s[k], 8 * U_PAGE, out, 2 * U_PAGE + 101, -EIO);
		read_one(s[k], 8 * U_PAGE, out, 2 * U_PAGE + 100, 0);
		/* len 0 clears the injection. */
		T_OK(fl_store_ctl(s[k], FL_STORE_CTL_FAIL_AT, none));
		read_one(s[k], 10 * U_PAGE, out, U_PAGE, 0);
		/* Every read sleeps the delay. */
		T_OK(fl_store_ctl(s[k], FL_STORE_CTL_DELAY_US, &delay));
		t0 = t_now_ns();
		read_one(s[k], 0, out, U_PAGE, 0);
		read_one(s[k], U_PAGE, out, U_PAGE, 0);
		T_ASSERT(t_now_ns() - t0 >= 2 * delay * 1000, "two reads took %llu ns",
			 (unsigned long long)(t_now_ns() - t0));
		T_OK(fl_store_ctl(s[k], FL_STORE_CTL_DELAY_US, &zero));
		fl_store_unref(s[k]);
	}
	return T_PASS;
}

/* A custom store whose read fails (without the injection control) fails the page closed. */
struct failing {
	uint64_t bad_off;
};

static int failing_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct failing *f = ctx;
	int err = 0;
	for (unsigned i = 0; i < n; i++) {
		if (iov[i].offset <= f->bad_off && f->bad_off < iov[i].offset + iov[i].len) {
			iov[i].result = -EIO;
			err = -EIO;
			continue;
		}
		t_fill_pattern(iov[i].buf, iov[i].len, iov[i].offset, 0xfa);
	}
	return err;
}

static const struct fl_store_ops failing_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "failing",
	.read = failing_read,
};

static int c_custom_failing(void *arg)
{
	static const struct u_cfg anon = { "anon", FL_MEM_ANON, FL_MODE_MISSING };
	struct failing f = { .bad_off = 37 * U_PAGE + 5 };
	struct fl_engine *e;
	struct fl_store *s = NULL;
	struct fl_region *r;
	struct fl_region_stats st;
	uint8_t *img, *base;
	(void)arg;

	u_bus_install();
	e = u_engine(0, 1);
	T_OK(fl_store_new(&failing_ops, &f, LEN, &s));
	img = u_image(LEN, 0, 0xfa);
	r = u_region(e, &anon, LEN, s, 0);
	fl_store_unref(s);
	base = fl_region_addr(r);
	for (size_t p = 0; p < LEN / U_PAGE; p++) {
		int got = u_probe_cmp(base + p * U_PAGE, img + p * U_PAGE, U_PAGE);
		T_ASSERT(got == (p == 37 ? -1 : 0), "page %zu: %d", p, got);
	}
	st = u_rstats_settled(r);
	T_ASSERT(st.store_errors >= 1);
	T_ASSERT_EQ(st.pages_poisoned, 1);
	fl_region_free(r);
	fl_engine_free(e);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "vtable-validation", c_vtable_validation, NULL, 0 },
	{ "custom-store-region-anon", c_custom_region, (void *)&u_cfgs[0], 0 },
	{ "custom-store-region-shmem-minor", c_custom_region, (void *)&u_cfgs[2], 0, U_NEEDS_SHMEM_MINOR },
	{ "custom-store-region-hugetlb", c_custom_region, (void *)&u_cfgs[3], 0, U_NEEDS_HUGETLB },
	{ "custom-store-read-error", c_custom_failing, NULL, 0 },
	{ "refcount", c_refcount, NULL, 0 },
	{ "memory", c_memory, NULL, 0 },
	{ "file-offset-size", c_file, NULL, 0 },
	{ "file-refuses-image", c_file_refuses_image, NULL, 0 },
	{ "zero", c_zero, NULL, 0 },
	{ "ctl-fail-at-delay", c_ctl, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
