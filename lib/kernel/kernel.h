/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel interface layer (lib/kernel): uffd creation, the API handshake,
 * every ioctl, feature probing, PAGEMAP_SCAN, uffd hand-off. Above lib/util
 * only; the one place that knows the kernel's constants (compat/).
 */
#ifndef FL_KERNEL_H
#define FL_KERNEL_H

#include "flutil.h"
#include "compat/uffd-compat.h"

/* feature.c: the feature set FAULTLINE_MASK_FEATURES=new hides. */
uint64_t fl__features_newer_than_6_1(void);

/* pagemap.c: the VMA containing addr (or -ENOENT), through PROCMAP_QUERY
 * on an fd of /proc/self/maps (Linux 6.11; -EOPNOTSUPP before): one
 * mapping without reading the whole file. prot is PROT_* bits. */
struct fl__vma {
	uint64_t start, end;
	int prot;
	bool shared;
	size_t page_size;
};
int fl__vma_query(int maps_fd, uint64_t addr, struct fl__vma *ret);

/* uffd.c: poison the absent pages of [start, end), skipping present ones;
 * *total counts the pages poisoned. 0, or the first other error. */
int fl__uffd_poison_run(int uffd, uint64_t start, uint64_t end, int64_t *total);

#endif
