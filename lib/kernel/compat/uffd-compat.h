/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kernel ABI newer than the system headers (Debian 12 ships Linux 6.1
 * headers). Each definition is guarded so the day the system headers have it
 * the static_asserts below check ours against theirs.
 */
#ifndef FL_COMPAT_UFFD_H
#define FL_COMPAT_UFFD_H

#include <assert.h>
#include <stddef.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

/* The feature bits and UFFDIO_CONTINUE_MODE_WP are public: users name them
 * too. They live in <faultline/uffd.h>, checked below like the rest. */
#include <faultline/uffd.h>

#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)
struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif
#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD (1 << 8)
#endif

/* Values, sizes and layouts from kernel-facts.md (Linux 6.18 uapi). */
/* PROCMAP_QUERY (Linux 6.11): one VMA of /proc/<pid>/maps by address,
 * without reading the whole file. */
#ifndef PROCMAP_QUERY
#define PROCMAP_QUERY_VMA_READABLE 0x01
#define PROCMAP_QUERY_VMA_WRITABLE 0x02
#define PROCMAP_QUERY_VMA_EXECUTABLE 0x04
#define PROCMAP_QUERY_VMA_SHARED 0x08
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10
struct procmap_query {
	__u64 size;
	__u64 query_flags;
	__u64 query_addr;
	__u64 vma_start;
	__u64 vma_end;
	__u64 vma_flags;
	__u64 vma_page_size;
	__u64 vma_offset;
	__u64 inode;
	__u32 dev_major;
	__u32 dev_minor;
	__u32 vma_name_size;
	__u32 build_id_size;
	__u64 vma_name_addr;
	__u64 build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#endif

static_assert(UFFD_FEATURE_WP_UNPOPULATED == (1 << 13), "WP_UNPOPULATED");
static_assert(UFFD_FEATURE_POISON == (1 << 14), "POISON");
static_assert(UFFD_FEATURE_WP_ASYNC == (1 << 15), "WP_ASYNC");
static_assert(UFFD_FEATURE_MOVE == (1 << 16), "MOVE");
static_assert(UFFDIO_CONTINUE_MODE_WP == (1 << 1), "CONTINUE_MODE_WP");
static_assert(UFFDIO_MOVE == 0xc028aa05, "UFFDIO_MOVE");
static_assert(sizeof(struct uffdio_move) == 40, "uffdio_move size");
static_assert(offsetof(struct uffdio_move, mode) == 24, "uffdio_move.mode");
static_assert(offsetof(struct uffdio_move, move) == 32, "uffdio_move.move");
static_assert(UFFDIO_MOVE_MODE_DONTWAKE == 1 && UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES == 2, "MOVE modes");
static_assert(UFFDIO_POISON == 0xc020aa08, "UFFDIO_POISON");
static_assert(sizeof(struct uffdio_poison) == 32, "uffdio_poison size");
static_assert(offsetof(struct uffdio_poison, mode) == 16, "uffdio_poison.mode");
static_assert(offsetof(struct uffdio_poison, updated) == 24, "uffdio_poison.updated");
static_assert(UFFDIO_POISON_MODE_DONTWAKE == 1, "POISON mode");
static_assert(PAGEMAP_SCAN == 0xc0606610, "PAGEMAP_SCAN");
static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg size");
static_assert(offsetof(struct pm_scan_arg, walk_end) == 32, "pm_scan_arg.walk_end");
static_assert(offsetof(struct pm_scan_arg, max_pages) == 56, "pm_scan_arg.max_pages");
static_assert(offsetof(struct pm_scan_arg, return_mask) == 88, "pm_scan_arg.return_mask");
static_assert(sizeof(struct page_region) == 24, "page_region size");
static_assert(PM_SCAN_WP_MATCHING == 1 && PM_SCAN_CHECK_WPASYNC == 2, "PM_SCAN flags");
static_assert(PAGE_IS_WRITTEN == 2 && PAGE_IS_PRESENT == 8 && PAGE_IS_GUARD == 256, "PAGE_IS_*");
static_assert(sizeof(struct uffd_msg) == 32, "uffd_msg size");
static_assert(PROCMAP_QUERY == 0xc0686611, "PROCMAP_QUERY");
static_assert(sizeof(struct procmap_query) == 104, "procmap_query size");
static_assert(offsetof(struct procmap_query, vma_page_size) == 48, "procmap_query.vma_page_size");
static_assert(offsetof(struct procmap_query, dev_major) == 72, "procmap_query.dev_major");
static_assert(offsetof(struct procmap_query, vma_name_addr) == 88, "procmap_query.vma_name_addr");
static_assert(PROCMAP_QUERY_VMA_SHARED == 8 && PROCMAP_QUERY_COVERING_OR_NEXT_VMA == 0x10, "PROCMAP_QUERY flags");

#endif
