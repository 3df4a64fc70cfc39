// SPDX-License-Identifier: LGPL-2.1-or-later
/* A file store: pread(2), one call per request however large. */
#include "kernel.h"
#include "store-internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct file_store {
	int fd;
	uint64_t base;
};

static int file_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct file_store *f = ctx;
	int err = 0;
	for (unsigned i = 0; i < n; i++) {
		iov[i].result = fl__pread_full(f->fd, iov[i].buf, iov[i].len, f->base + iov[i].offset);
		if (iov[i].result && !err)
			err = iov[i].result;
	}
	return err;
}

static int file_write(void *ctx, const struct fl_store_iov *iov, unsigned n)
{
	struct file_store *f = ctx;
	for (unsigned i = 0; i < n; i++) {
		int r = fl__pwrite_full(f->fd, iov[i].buf, iov[i].len, f->base + iov[i].offset);
		if (r)
			return r;
	}
	return 0;
}

static int file_flush(void *ctx)
{
	struct file_store *f = ctx;
	return fl__fdatasync(f->fd);
}

static void file_destroy(void *ctx)
{
	struct file_store *f = ctx;
	fl__close(f->fd);
	free(f);
}

static const struct fl_store_ops file_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "file",
	.read = file_read,
	.write = file_write,
	.flush = file_flush,
	.destroy = file_destroy,
};

int fl_store_file_new(int fd, uint64_t offset, uint64_t size, struct fl_store **ret_store)
{
	struct file_store *f;
	uint64_t fsize;
	int r;

	if (fd < 0 || !ret_store)
		return -EINVAL;
	r = fl__fstat_size(fd, &fsize);
	if (r)
		return r;
	if (offset > fsize)
		return -ERANGE;
	if (!size)
		size = fsize - offset;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->base = offset;
	r = fl__dup_cloexec(fd, &f->fd);
	if (r) {
		free(f);
		return r;
	}
	r = fl_store_new(&file_ops, f, size, ret_store);
	if (r) {
		file_destroy(f);
		return r;
	}
	/* Known now, told at creation of a writable far-memory region
	 * rather than at its first eviction. */
	(*ret_store)->read_only = fl__fd_read_only(f->fd) == 1;
	return 0;
}

int fl_store_file_open(const char *path, struct fl_store **ret_store)
{
	char head[FL__IMAGE_MAGIC_LEN];
	int fd, r;

	if (!path || !ret_store)
		return -EINVAL;
	r = fl__open(path, O_RDONLY, &fd);
	if (r)
		return r;
	/*
	 * A faultline image is not memory: its header, checksums and index
	 * would be served as the region's bytes. There is no flag to say
	 * "really", so it is refused; fl_store_file_new() on a descriptor the
	 * caller opened is the way to the raw bytes (fl_store_file_new(3)).
	 * A file shorter than the magic cannot be an image.
	 */
	if (fl__pread_full(fd, head, sizeof(head), 0) == 0 && !memcmp(head, FL__IMAGE_MAGIC, sizeof(head))) {
		close(fd);
		return -EMEDIUMTYPE;
	}
	r = fl_store_file_new(fd, 0, 0, ret_store);
	close(fd);
	return r;
}
