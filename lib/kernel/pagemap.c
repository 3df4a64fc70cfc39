// SPDX-License-Identifier: LGPL-2.1-or-later
/* PAGEMAP_SCAN (Linux 6.7) on /proc/<pid>/pagemap. */
#include "kernel.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static_assert(sizeof(struct fl_page_region) == sizeof(struct page_region), "page_region");
static_assert(offsetof(struct fl_page_region, categories) == offsetof(struct page_region, categories), "categories");

int fl_pagemap_open(pid_t pid, int *ret_fd)
{
	char path[64];
	int fd;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/pagemap");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int fl__vma_query(int maps_fd, uint64_t addr, struct fl__vma *ret)
{
	struct procmap_query q = { .size = sizeof(q), .query_addr = addr };

	if (ioctl(maps_fd, PROCMAP_QUERY, &q))
		return errno == ENOTTY ? -EOPNOTSUPP : -errno;
	ret->start = q.vma_start;
	ret->end = q.vma_end;
	ret->prot = (q.vma_flags & PROCMAP_QUERY_VMA_READABLE ? PROT_READ : 0) |
		    (q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE ? PROT_WRITE : 0) |
		    (q.vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE ? PROT_EXEC : 0);
	ret->shared = q.vma_flags & PROCMAP_QUERY_VMA_SHARED;
	ret->page_size = q.vma_page_size;
	return 0;
}

int fl_pagemap_scan(int pagemap_fd, const struct fl_scan_opts *opts,
		    struct fl_page_region *vec, size_t vec_len, uint64_t *ret_walk_end)
{
	struct fl_scan_opts o;
	struct pm_scan_arg arg;
	int r;

	if (!opts)
		return -EINVAL;
	r = FL_OPTS_COPY(o, opts);
	if (r)
		return r;
	if (fl_features_masked() & FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN))
		return -EOPNOTSUPP;
	arg = (struct pm_scan_arg){
		.size = sizeof(arg),
		.flags = o.flags,
		.start = o.start,
		.end = o.end,
		.vec = (uintptr_t)vec,
		/* See fl_pagemap_scan_all(): past 512 regions per call this
		 * kernel repeats regions; walk_end lets the caller go on. */
		.vec_len = FL_MIN(vec_len, (size_t)512),
		.max_pages = o.max_pages,
		.category_inverted = o.category_inverted,
		.category_mask = o.category_mask,
		.category_anyof_mask = o.category_anyof_mask,
		.return_mask = o.return_mask,
	};
	r = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);
	if (r < 0) {
		int e = errno;
		return e == ENOTTY ? -EOPNOTSUPP : -e;
	}
	if (ret_walk_end)
		*ret_walk_end = arg.walk_end;
	return r;
}

int64_t fl_pagemap_scan_all(int pagemap_fd, const struct fl_scan_opts *opts,
			    fl_scan_fn fn, void *ctx)
{
	/* As large as the kernel's own bounce buffer (512 regions) and no
	 * larger: each call restarts the walk, so fewer calls are cheaper, but
	 * with a longer vector this kernel (6.18) reports the regions past the
	 * first 512 twice in one call. */
	enum { VEC = 512 };
	struct fl_page_region *vec;
	struct fl_scan_opts o;
	int64_t total = 0;
	int r;

	if (!opts || !fn)
		return -EINVAL;
	r = FL_OPTS_COPY(o, opts);
	if (r)
		return r;
	vec = malloc(VEC * sizeof(*vec));
	if (!vec)
		return -ENOMEM;
	while (o.start < o.end) {
		uint64_t walk_end = o.end;
		int n = fl_pagemap_scan(pagemap_fd, &o, vec, VEC, &walk_end);
		if (n < 0) {
			total = n;
			break;
		}
		for (int i = 0; i < n; i++) {
			r = fn(&vec[i], ctx);
			total += (int64_t)((vec[i].end - vec[i].start) / FL_PAGE_SIZE);
			if (r < 0) {
				free(vec);
				return r;
			}
		}
		if (o.max_pages) {
			uint64_t used = 0;
			for (int i = 0; i < n; i++)
				used += (vec[i].end - vec[i].start) / FL_PAGE_SIZE;
			if (used >= o.max_pages)
				break;
			o.max_pages -= used;
		}
		if (walk_end <= o.start)
			break;
		o.start = walk_end;
	}
	free(vec);
	return total;
}
