// SPDX-License-Identifier: LGPL-2.1-or-later
#include "kernel.h"
#include "store-internal.h"

#include <stdlib.h>

struct mem_store {
	uint8_t *buf;
	size_t size;
	bool owned;
};

static int mem_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct mem_store *m = ctx;
	for (unsigned i = 0; i < n; i++)
		memcpy(iov[i].buf, m->buf + iov[i].offset, iov[i].len);
	return 0;
}

static int mem_write(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	struct mem_store *m = ctx;
	for (unsigned i = 0; i < n; i++)
		memcpy(m->buf + iov[i].offset, iov[i].buf, iov[i].len);
	return 0;
}

static void mem_destroy(void *ctx)
{
	struct mem_store *m = ctx;
	if (m->owned)
		free(m->buf);
	free(m);
}

static const struct fl_store_ops mem_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "memory",
	.read = mem_read,
	.write = mem_write,
	.destroy = mem_destroy,
};

int fl_store_memory_new(const void *buf, size_t size, unsigned flags, struct fl_store **ret_store)
{
	struct mem_store *m;
	int r;

	if (!buf || (flags & ~FL_STORE_MEM_COPY) || !ret_store)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->size = size;
	if (flags & FL_STORE_MEM_COPY) {
		m->buf = malloc(size ? size : 1);
		if (!m->buf) {
			free(m);
			return -ENOMEM;
		}
		memcpy(m->buf, buf, size);
		m->owned = true;
	} else {
		m->buf = (uint8_t *)buf;
	}
	r = fl_store_new(&mem_ops, m, size, ret_store);
	if (r) {
		mem_destroy(m);
		return r;
	}
	/* Regions copy from it in place (fl__store_direct()). */
	(*ret_store)->direct = m->buf;
	return 0;
}
