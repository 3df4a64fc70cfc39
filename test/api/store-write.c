// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Writable stores, the generic side and the file store: per-request
 * results of a batch write, FL_STORE_CTL_WRITABLE (custom stores with and
 * without a write op, file stores over read-only and writable
 * descriptors, the memory store), and a file
 * store that runs out of space (a 64 KiB tmpfs in a private mount
 * namespace): the requests that did not fit fail with -ENOSPC each, the
 * others are in the file, and a later write after space is freed works.
 */
#include "util.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

static int noop_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	(void)ctx;
	for (unsigned i = 0; i < n; i++)
		iov[i].flags_out |= FL_STORE_OUT_ZERO;
	return 0;
}

/* A write op that fails without saying which request (results left 0). */
static int vague_write(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	(void)ctx;
	(void)iov;
	(void)n;
	return -EIO;
}

/* Fails the request at page 1 with -ENOSPC, writes the others. */
static int picky_write(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	int err = 0;
	(void)ctx;
	for (unsigned i = 0; i < n; i++) {
		iov[i].result = iov[i].offset == U_PAGE ? -ENOSPC : 0;
		err = err ? err : iov[i].result;
	}
	return err;
}

static int c_writable_ctl(void *arg)
{
	static const struct fl_store_ops ro_ops = {
		.sz = sizeof(struct fl_store_ops), .version = FL_STORE_OPS_VERSION, .read = noop_read,
	};
	static const struct fl_store_ops rw_ops = {
		.sz = sizeof(struct fl_store_ops), .version = FL_STORE_OPS_VERSION, .read = noop_read,
		.write = vague_write,
	};
	uint8_t page[U_PAGE] = { 0 };
	struct fl_store *ro, *rw, *mem, *z;
	struct fl_store_iov w[3];
	(void)arg;

	T_OK(fl_store_new(&ro_ops, NULL, 16 * U_PAGE, &ro));
	T_OK(fl_store_new(&rw_ops, NULL, 16 * U_PAGE, &rw));
	T_OK(fl_store_memory_new(page, U_PAGE, FL_STORE_MEM_COPY, &mem));
	T_OK(fl_store_zero_new(U_PAGE, &z));
	T_ASSERT_EQ(fl_store_ctl(ro, FL_STORE_CTL_WRITABLE, NULL), 0);
	T_ASSERT_EQ(fl_store_ctl(z, FL_STORE_CTL_WRITABLE, NULL), 0);
	T_ASSERT_EQ(fl_store_ctl(rw, FL_STORE_CTL_WRITABLE, NULL), 1);
	T_ASSERT_EQ(fl_store_ctl(mem, FL_STORE_CTL_WRITABLE, NULL), 1);

	/* A store that fails a batch without per-request results: every
	 * request is reported failed, none believed written. */
	for (int i = 0; i < 3; i++)
		w[i] = (struct fl_store_iov){ .offset = (uint64_t)i * U_PAGE, .buf = page, .len = U_PAGE, .result = 7 };
	T_ASSERT_EQ(fl_store_write(rw, w, 3), -EIO);
	for (int i = 0; i < 3; i++)
		T_ASSERT_EQ(w[i].result, -EIO);

	/* A store that says which request failed: exactly that one is
	 * reported, the others are 0. */
	{
		static const struct fl_store_ops picky_ops = {
			.sz = sizeof(struct fl_store_ops), .version = FL_STORE_OPS_VERSION, .read = noop_read,
			.write = picky_write,
		};
		struct fl_store *picky;
		T_OK(fl_store_new(&picky_ops, NULL, 16 * U_PAGE, &picky));
		for (int i = 0; i < 3; i++)
			w[i] = (struct fl_store_iov){ .offset = (uint64_t)i * U_PAGE, .buf = page, .len = U_PAGE,
						      .result = 9 };
		T_ASSERT_EQ(fl_store_write(picky, w, 3), -ENOSPC);
		T_ASSERT_EQ(w[0].result, 0);
		T_ASSERT_EQ(w[1].result, -ENOSPC);
		T_ASSERT_EQ(w[2].result, 0);
		/* Bounds are checked before anything is written. */
		w[2].offset = 16 * U_PAGE;
		T_ASSERT_EQ(fl_store_write(picky, w, 3), -ERANGE);
		fl_store_unref(picky);
	}
	fl_store_unref(ro);
	fl_store_unref(rw);
	fl_store_unref(mem);
	fl_store_unref(z);
	return T_PASS;
}

static int c_file_readonly_fd(void *arg)
{
	uint8_t *img = u_image(8 * U_PAGE, 0, 0x5151), page[U_PAGE];
	char path[64];
	struct fl_store *ro, *rw, *opened;
	struct fl_store_iov w;
	int fd, rofd, wofd;
	(void)arg;

	fd = u_tmpfile(img, 8 * U_PAGE, path, sizeof(path));
	rofd = open(path, O_RDONLY | O_CLOEXEC);
	wofd = open(path, O_WRONLY | O_CLOEXEC);
	T_ASSERT(rofd >= 0 && wofd >= 0);
	T_OK(fl_store_file_new(rofd, 0, 0, &ro));
	T_OK(fl_store_file_new(fd, 0, 0, &rw));
	T_OK(fl_store_file_open(path, &opened));
	/* Said up front, before any write is tried. */
	T_ASSERT_EQ(fl_store_ctl(ro, FL_STORE_CTL_WRITABLE, NULL), 0);
	T_ASSERT_EQ(fl_store_ctl(opened, FL_STORE_CTL_WRITABLE, NULL), 0);
	T_ASSERT_EQ(fl_store_ctl(rw, FL_STORE_CTL_WRITABLE, NULL), 1);
	{
		struct fl_store *wo;
		T_OK(fl_store_file_new(wofd, 0, 8 * U_PAGE, &wo));
		T_ASSERT_EQ(fl_store_ctl(wo, FL_STORE_CTL_WRITABLE, NULL), 1);
		fl_store_unref(wo);
	}
	memset(page, 0xab, sizeof(page));
	w = (struct fl_store_iov){ .offset = U_PAGE, .buf = page, .len = U_PAGE };
	T_ASSERT_EQ(fl_store_write(ro, &w, 1), -EROFS);
	T_ASSERT_EQ(w.result, -EROFS);
	T_ASSERT_EQ(fl_store_flush(ro), -EROFS);
	T_OK(fl_store_write(rw, &w, 1));
	T_OK(fl_store_flush(rw));
	{
		uint8_t back[U_PAGE];
		struct fl_store_iov r = { .offset = U_PAGE, .buf = back, .len = U_PAGE };
		T_OK(fl_store_read(ro, &r, 1));
		T_ASSERT(memcmp(back, page, U_PAGE) == 0);
	}
	fl_store_unref(ro);
	fl_store_unref(rw);
	fl_store_unref(opened);
	close(fd);
	close(rofd);
	close(wofd);
	unlink(path);
	munmap(img, 8 * U_PAGE);
	return T_PASS;
}

/*
 * A file store on a 64 KiB tmpfs. The file is sized (sparse) to 64 pages,
 * far more than fits: writes of the first pages succeed, then the batch
 * runs out of space. Each request carries its own result: those that
 * failed are -ENOSPC, those that succeeded are in the file byte for byte,
 * and after the file is shrunk (space freed) the failed ones can be
 * written again.
 */
static int c_file_enospc(void *arg)
{
	enum { NPAGES = 64 };
	char dir[256], path[300];
	struct fl_store *s;
	struct fl_store_iov w[NPAGES];
	uint8_t *data = malloc((size_t)NPAGES * U_PAGE), back[U_PAGE];
	unsigned ok = 0, nospc = 0;
	int fd, r;
	(void)arg;

	T_ASSERT(data);
	if (unshare(CLONE_NEWNS))
		t_skip_resource("unshare(CLONE_NEWNS): %s (needs CAP_SYS_ADMIN)", strerror(errno));
	/* Keep the mount in this namespace (the case runs in its own child). */
	T_ASSERT(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "%s", strerror(errno));
	t_tmpdir(dir, sizeof(dir), "/tmp/fl-enospc");
	r = mount("tmpfs", dir, "tmpfs", 0, "size=64k");
	if (r) {
		rmdir(dir);
		t_skip_resource("mount tmpfs: %s", strerror(errno));
	}
	snprintf(path, sizeof(path), "%s/store", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	T_ASSERT(fd >= 0);
	T_ASSERT(ftruncate(fd, (off_t)NPAGES * U_PAGE) == 0);
	T_OK(fl_store_file_new(fd, 0, 0, &s));
	for (unsigned i = 0; i < NPAGES; i++) {
		memset(data + (size_t)i * U_PAGE, (int)(i + 1), U_PAGE);
		w[i] = (struct fl_store_iov){ .offset = (uint64_t)i * U_PAGE, .buf = data + (size_t)i * U_PAGE,
					      .len = U_PAGE };
	}
	r = fl_store_write(s, w, NPAGES);
	T_ASSERT_EQ(r, -ENOSPC);
	for (unsigned i = 0; i < NPAGES; i++) {
		if (w[i].result == 0) {
			struct fl_store_iov rd = { .offset = w[i].offset, .buf = back, .len = U_PAGE };
			ok++;
			T_OK(fl_store_read(s, &rd, 1));
			T_ASSERT(memcmp(back, w[i].buf, U_PAGE) == 0, "page %u reported written but differs", i);
		} else {
			T_ASSERT_EQ(w[i].result, -ENOSPC);
			nospc++;
		}
	}
	T_ASSERT(ok >= 1 && nospc >= 1, "%u written, %u ENOSPC", ok, nospc);
	/* Free space (drop the pages that were written), write a failed one again. */
	T_ASSERT(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)ok * U_PAGE) == 0, "%s",
		 strerror(errno));
	for (unsigned i = 0; i < NPAGES; i++) {
		if (w[i].result) {
			struct fl_store_iov again = w[i], rd = { .offset = w[i].offset, .buf = back, .len = U_PAGE };
			T_OK(fl_store_write(s, &again, 1));
			T_OK(fl_store_flush(s));
			T_OK(fl_store_read(s, &rd, 1));
			T_ASSERT(memcmp(back, w[i].buf, U_PAGE) == 0);
			break;
		}
	}
	fl_store_unref(s);
	close(fd);
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	free(data);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "writable-ctl-and-results", c_writable_ctl, NULL, 0 },
	{ "file-readonly-fd", c_file_readonly_fd, NULL, 0 },
	{ "file-enospc", c_file_enospc, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
