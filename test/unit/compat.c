// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * lib/compat/uffd-compat.h: the kernel ABI newer than the system headers.
 * The header checks itself with static_asserts; this program checks the
 * same facts again at run time (so a wrong value is reported, not just a
 * build failure, and so a header that lost an assert is still caught),
 * checks that the public constants agree with the kernel's, and asks the
 * running kernel whether it recognises the ioctl numbers and struct sizes.
 */
#include "harness.h"
#include "compat/uffd-compat.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Read a constant through a volatile so the compiler cannot fold the check. */
#define RT(x) (*(volatile uint64_t *)&(uint64_t){ (uint64_t)(x) })

#define CHECK_VAL(expr, want)                                                  \
	T_ASSERT(RT(expr) == (uint64_t)(want), "%s = 0x%llx, want 0x%llx", #expr, \
		 (unsigned long long)RT(expr), (unsigned long long)(want))
#define CHECK_OFF(type, field, want) CHECK_VAL(offsetof(type, field), want)
#define CHECK_SIZE(type, want) CHECK_VAL(sizeof(type), want)

static int test_feature_values(void *arg)
{
	CHECK_VAL(UFFD_API, 0xaa);
	CHECK_VAL(UFFD_FEATURE_PAGEFAULT_FLAG_WP, 1u << 0);
	CHECK_VAL(UFFD_FEATURE_EVENT_FORK, 1u << 1);
	CHECK_VAL(UFFD_FEATURE_EVENT_REMAP, 1u << 2);
	CHECK_VAL(UFFD_FEATURE_EVENT_REMOVE, 1u << 3);
	CHECK_VAL(UFFD_FEATURE_MISSING_HUGETLBFS, 1u << 4);
	CHECK_VAL(UFFD_FEATURE_MISSING_SHMEM, 1u << 5);
	CHECK_VAL(UFFD_FEATURE_EVENT_UNMAP, 1u << 6);
	CHECK_VAL(UFFD_FEATURE_SIGBUS, 1u << 7);
	CHECK_VAL(UFFD_FEATURE_THREAD_ID, 1u << 8);
	CHECK_VAL(UFFD_FEATURE_MINOR_HUGETLBFS, 1u << 9);
	CHECK_VAL(UFFD_FEATURE_MINOR_SHMEM, 1u << 10);
	CHECK_VAL(UFFD_FEATURE_EXACT_ADDRESS, 1u << 11);
	CHECK_VAL(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, 1u << 12);
	CHECK_VAL(UFFD_FEATURE_WP_UNPOPULATED, 1u << 13);
	CHECK_VAL(UFFD_FEATURE_POISON, 1u << 14);
	CHECK_VAL(UFFD_FEATURE_WP_ASYNC, 1u << 15);
	CHECK_VAL(UFFD_FEATURE_MOVE, 1u << 16);
	return T_PASS;
}

/*
 * faultline's feature numbers are its own and stable (an application may
 * store them): pin each, and pin the one table that maps them to the
 * kernel's UFFD_FEATURE_* bits, written here as numbers so that a typo in
 * either the compat header or the table shows.
 */
static int test_feature_enum(void *arg)
{
	static const struct {
		enum fl_feature f;
		unsigned number;
		uint64_t uffd_bit;
	} want[] = {
		{ FL_FEATURE_SYSCALL, 0, 0 },
		{ FL_FEATURE_DEV_USERFAULTFD, 1, 0 },
		{ FL_FEATURE_MISSING_SHMEM, 2, 1u << 5 },
		{ FL_FEATURE_MISSING_HUGETLBFS, 3, 1u << 4 },
		{ FL_FEATURE_MINOR_SHMEM, 4, 1u << 10 },
		{ FL_FEATURE_MINOR_HUGETLBFS, 5, 1u << 9 },
		{ FL_FEATURE_WP, 6, 1u << 0 },
		{ FL_FEATURE_WP_HUGETLBFS_SHMEM, 7, 1u << 12 },
		{ FL_FEATURE_WP_UNPOPULATED, 8, 1u << 13 },
		{ FL_FEATURE_WP_ASYNC, 9, 1u << 15 },
		{ FL_FEATURE_EVENT_FORK, 10, 1u << 1 },
		{ FL_FEATURE_EVENT_REMAP, 11, 1u << 2 },
		{ FL_FEATURE_EVENT_REMOVE, 12, 1u << 3 },
		{ FL_FEATURE_EVENT_UNMAP, 13, 1u << 6 },
		{ FL_FEATURE_SIGBUS, 14, 1u << 7 },
		{ FL_FEATURE_THREAD_ID, 15, 1u << 8 },
		{ FL_FEATURE_EXACT_ADDRESS, 16, 1u << 11 },
		{ FL_FEATURE_POISON, 17, 1u << 14 },
		{ FL_FEATURE_MOVE, 18, 1u << 16 },
		{ FL_FEATURE_IOCTL_POISON, 19, 0 },
		{ FL_FEATURE_IOCTL_MOVE, 20, 0 },
		{ FL_FEATURE_PAGEMAP_SCAN, 21, 0 },
		{ FL_FEATURE_CONTINUE_MODE_WP, 22, 0 },
	};
	uint64_t all_uffd = 0, all = 0;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		T_ASSERT_EQ((unsigned)want[i].f, want[i].number);
		T_ASSERT(fl_feature_name(want[i].f), "feature %u has no name", want[i].number);
		T_ASSERT_EQ(fl_feature_uffd_bit(want[i].f), want[i].uffd_bit);
		T_ASSERT_EQ(fl_features_to_uffd(FL_FEATURE_BIT(want[i].f)), want[i].uffd_bit);
		T_ASSERT_EQ(fl_features_from_uffd(want[i].uffd_bit),
			    want[i].uffd_bit ? FL_FEATURE_BIT(want[i].f) : 0);
		all_uffd |= want[i].uffd_bit;
		all |= FL_FEATURE_BIT(want[i].f);
	}
	/* Every feature is pinned above, and each kernel bit is named once. */
	T_ASSERT(fl_feature_name((enum fl_feature)(sizeof(want) / sizeof(want[0]))) == NULL,
		 "a feature was added without pinning it here");
	T_ASSERT_EQ(all_uffd, 0x1ffff);
	T_ASSERT_EQ(fl_features_to_uffd(all), 0x1ffff);
	T_ASSERT_EQ(fl_features_from_uffd(0x1ffff), all & ~(FL_FEATURE_BIT(FL_FEATURE_SYSCALL) |
							   FL_FEATURE_BIT(FL_FEATURE_DEV_USERFAULTFD) |
							   FL_FEATURE_BIT(FL_FEATURE_IOCTL_POISON) |
							   FL_FEATURE_BIT(FL_FEATURE_IOCTL_MOVE) |
							   FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN) |
							   FL_FEATURE_BIT(FL_FEATURE_CONTINUE_MODE_WP)));
	/* Kernel bits faultline does not know (yet) name no feature. */
	T_ASSERT_EQ(fl_features_from_uffd(1ULL << 40), 0);
	T_ASSERT_EQ(fl_feature_uffd_bit((enum fl_feature)63), 0);
	T_ASSERT_EQ(fl_feature_uffd_bit((enum fl_feature)-1), 0);
	return T_PASS;
}

static int test_mode_values(void *arg)
{
	CHECK_VAL(UFFDIO_REGISTER_MODE_MISSING, 1u << 0);
	CHECK_VAL(UFFDIO_REGISTER_MODE_WP, 1u << 1);
	CHECK_VAL(UFFDIO_REGISTER_MODE_MINOR, 1u << 2);
	CHECK_VAL(UFFDIO_COPY_MODE_DONTWAKE, 1u << 0);
	CHECK_VAL(UFFDIO_COPY_MODE_WP, 1u << 1);
	CHECK_VAL(UFFDIO_ZEROPAGE_MODE_DONTWAKE, 1u << 0);
	CHECK_VAL(UFFDIO_WRITEPROTECT_MODE_WP, 1u << 0);
	CHECK_VAL(UFFDIO_WRITEPROTECT_MODE_DONTWAKE, 1u << 1);
	CHECK_VAL(UFFDIO_CONTINUE_MODE_DONTWAKE, 1u << 0);
	CHECK_VAL(UFFDIO_CONTINUE_MODE_WP, 1u << 1);
	CHECK_VAL(UFFDIO_MOVE_MODE_DONTWAKE, 1u << 0);
	CHECK_VAL(UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, 1u << 1);
	CHECK_VAL(UFFDIO_POISON_MODE_DONTWAKE, 1u << 0);
	CHECK_VAL(UFFD_USER_MODE_ONLY, 1u << 0);
	CHECK_VAL(UFFD_PAGEFAULT_FLAG_WRITE, 1u << 0);
	CHECK_VAL(UFFD_PAGEFAULT_FLAG_WP, 1u << 1);
	CHECK_VAL(UFFD_PAGEFAULT_FLAG_MINOR, 1u << 2);
	CHECK_VAL(UFFD_EVENT_PAGEFAULT, 0x12);
	CHECK_VAL(UFFD_EVENT_FORK, 0x13);
	CHECK_VAL(UFFD_EVENT_REMAP, 0x14);
	CHECK_VAL(UFFD_EVENT_REMOVE, 0x15);
	CHECK_VAL(UFFD_EVENT_UNMAP, 0x16);
	return T_PASS;
}

static int test_ioctl_numbers(void *arg)
{
	CHECK_VAL(_UFFDIO_MOVE, 0x05);
	CHECK_VAL(_UFFDIO_POISON, 0x08);
	CHECK_VAL(UFFDIO_MOVE, 0xc028aa05);
	CHECK_VAL(UFFDIO_POISON, 0xc020aa08);
	CHECK_VAL(PAGEMAP_SCAN, 0xc0606610);
	/* The older ones, from the system headers, for completeness. */
	CHECK_VAL(UFFDIO_API, 0xc018aa3f);
	CHECK_VAL(UFFDIO_REGISTER, 0xc020aa00);
	CHECK_VAL(UFFDIO_UNREGISTER, 0x8010aa01);
	CHECK_VAL(UFFDIO_WAKE, 0x8010aa02);
	CHECK_VAL(UFFDIO_COPY, 0xc028aa03);
	CHECK_VAL(UFFDIO_ZEROPAGE, 0xc020aa04);
	CHECK_VAL(UFFDIO_WRITEPROTECT, 0xc018aa06);
	CHECK_VAL(UFFDIO_CONTINUE, 0xc020aa07);
	CHECK_VAL(USERFAULTFD_IOC_NEW, 0xaa00);
	return T_PASS;
}

static int test_struct_layouts(void *arg)
{
	CHECK_SIZE(struct uffdio_move, 40);
	CHECK_OFF(struct uffdio_move, dst, 0);
	CHECK_OFF(struct uffdio_move, src, 8);
	CHECK_OFF(struct uffdio_move, len, 16);
	CHECK_OFF(struct uffdio_move, mode, 24);
	CHECK_OFF(struct uffdio_move, move, 32);

	CHECK_SIZE(struct uffdio_poison, 32);
	CHECK_OFF(struct uffdio_poison, range, 0);
	CHECK_OFF(struct uffdio_poison, range.len, 8);
	CHECK_OFF(struct uffdio_poison, mode, 16);
	CHECK_OFF(struct uffdio_poison, updated, 24);

	CHECK_SIZE(struct uffdio_continue, 32);
	CHECK_OFF(struct uffdio_continue, mode, 16);
	CHECK_OFF(struct uffdio_continue, mapped, 24);

	CHECK_SIZE(struct pm_scan_arg, 96);
	CHECK_OFF(struct pm_scan_arg, size, 0);
	CHECK_OFF(struct pm_scan_arg, flags, 8);
	CHECK_OFF(struct pm_scan_arg, start, 16);
	CHECK_OFF(struct pm_scan_arg, end, 24);
	CHECK_OFF(struct pm_scan_arg, walk_end, 32);
	CHECK_OFF(struct pm_scan_arg, vec, 40);
	CHECK_OFF(struct pm_scan_arg, vec_len, 48);
	CHECK_OFF(struct pm_scan_arg, max_pages, 56);
	CHECK_OFF(struct pm_scan_arg, category_inverted, 64);
	CHECK_OFF(struct pm_scan_arg, category_mask, 72);
	CHECK_OFF(struct pm_scan_arg, category_anyof_mask, 80);
	CHECK_OFF(struct pm_scan_arg, return_mask, 88);

	CHECK_SIZE(struct page_region, 24);
	CHECK_OFF(struct page_region, start, 0);
	CHECK_OFF(struct page_region, end, 8);
	CHECK_OFF(struct page_region, categories, 16);

	CHECK_SIZE(struct uffd_msg, 32);
	CHECK_OFF(struct uffd_msg, event, 0);
	CHECK_OFF(struct uffd_msg, arg, 8);
	CHECK_OFF(struct uffd_msg, arg.pagefault.flags, 8);
	CHECK_OFF(struct uffd_msg, arg.pagefault.address, 16);
	CHECK_OFF(struct uffd_msg, arg.pagefault.feat.ptid, 24);
	CHECK_OFF(struct uffd_msg, arg.fork.ufd, 8);
	CHECK_OFF(struct uffd_msg, arg.remap.from, 8);
	CHECK_OFF(struct uffd_msg, arg.remap.to, 16);
	CHECK_OFF(struct uffd_msg, arg.remap.len, 24);
	CHECK_OFF(struct uffd_msg, arg.remove.start, 8);
	CHECK_OFF(struct uffd_msg, arg.remove.end, 16);
	return T_PASS;
}

/* The public constants are the kernel's. */
static int test_public_matches_kernel(void *arg)
{
	CHECK_VAL(FL_PAGE_IS_WPALLOWED, PAGE_IS_WPALLOWED);
	CHECK_VAL(FL_PAGE_IS_WRITTEN, PAGE_IS_WRITTEN);
	CHECK_VAL(FL_PAGE_IS_FILE, PAGE_IS_FILE);
	CHECK_VAL(FL_PAGE_IS_PRESENT, PAGE_IS_PRESENT);
	CHECK_VAL(FL_PAGE_IS_SWAPPED, PAGE_IS_SWAPPED);
	CHECK_VAL(FL_PAGE_IS_PFNZERO, PAGE_IS_PFNZERO);
	CHECK_VAL(FL_PAGE_IS_HUGE, PAGE_IS_HUGE);
	CHECK_VAL(FL_PAGE_IS_SOFT_DIRTY, PAGE_IS_SOFT_DIRTY);
	CHECK_VAL(FL_PAGE_IS_GUARD, PAGE_IS_GUARD);
	CHECK_VAL(PAGE_IS_GUARD, 1u << 8);
	CHECK_VAL(PAGE_IS_SOFT_DIRTY, 1u << 7);
	CHECK_VAL(PAGE_IS_HUGE, 1u << 6);
	CHECK_VAL(PAGE_IS_PFNZERO, 1u << 5);
	CHECK_VAL(PAGE_IS_SWAPPED, 1u << 4);
	CHECK_VAL(PAGE_IS_PRESENT, 1u << 3);
	CHECK_VAL(PAGE_IS_FILE, 1u << 2);
	CHECK_VAL(PAGE_IS_WRITTEN, 1u << 1);
	CHECK_VAL(PAGE_IS_WPALLOWED, 1u << 0);
	CHECK_VAL(FL_SCAN_WP_MATCHING, PM_SCAN_WP_MATCHING);
	CHECK_VAL(FL_SCAN_CHECK_WPASYNC, PM_SCAN_CHECK_WPASYNC);
	CHECK_VAL(PM_SCAN_WP_MATCHING, 1u << 0);
	CHECK_VAL(PM_SCAN_CHECK_WPASYNC, 1u << 1);

	CHECK_SIZE(struct fl_page_region, sizeof(struct page_region));
	CHECK_OFF(struct fl_page_region, start, offsetof(struct page_region, start));
	CHECK_OFF(struct fl_page_region, end, offsetof(struct page_region, end));
	CHECK_OFF(struct fl_page_region, categories, offsetof(struct page_region, categories));

	CHECK_VAL(FL_IOCTL_REGISTER, _UFFDIO_REGISTER);
	CHECK_VAL(FL_IOCTL_UNREGISTER, _UFFDIO_UNREGISTER);
	CHECK_VAL(FL_IOCTL_WAKE, _UFFDIO_WAKE);
	CHECK_VAL(FL_IOCTL_COPY, _UFFDIO_COPY);
	CHECK_VAL(FL_IOCTL_ZEROPAGE, _UFFDIO_ZEROPAGE);
	CHECK_VAL(FL_IOCTL_MOVE, _UFFDIO_MOVE);
	CHECK_VAL(FL_IOCTL_WRITEPROTECT, _UFFDIO_WRITEPROTECT);
	CHECK_VAL(FL_IOCTL_CONTINUE, _UFFDIO_CONTINUE);
	CHECK_VAL(FL_IOCTL_POISON, _UFFDIO_POISON);
	CHECK_VAL(FL_IOCTL_API, _UFFDIO_API);
	/* fl_ioctls_has() tests the named bit. */
	T_ASSERT(fl_ioctls_has(1ULL << _UFFDIO_MOVE, FL_IOCTL_MOVE));
	T_ASSERT(!fl_ioctls_has(1ULL << _UFFDIO_MOVE, FL_IOCTL_COPY));
	T_ASSERT(fl_ioctls_has(1ULL << _UFFDIO_API, FL_IOCTL_API));
	return T_PASS;
}

/* ---- the running kernel agrees ------------------------------------------ */

static int raw_uffd(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	T_ASSERT(fd >= 0, "userfaultfd: %s", strerror(errno));
	T_ASSERT(ioctl(fd, UFFDIO_API, &api) == 0, "UFFDIO_API: %s", strerror(errno));
	return fd;
}

/*
 * UFFDIO_MOVE: the kernel knows the number (a MOVE from a hole is ENOENT,
 * not ENOTTY) and writes its result where our struct has `move`.
 */
static int test_kernel_move(void *arg)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct {
		struct uffdio_move m;
		uint64_t canary;
	} a;
	char *dst, *src;
	int fd;

	t_require(FL_FEATURE_BIT(FL_FEATURE_MOVE));
	fd = raw_uffd(UFFD_FEATURE_MOVE);
	dst = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	src = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(dst != MAP_FAILED && src != MAP_FAILED);
	src[page] = 1;	/* a page table for the source, its first page a hole */
	reg.range.start = (uintptr_t)dst;
	reg.range.len = page;
	T_ASSERT(ioctl(fd, UFFDIO_REGISTER, &reg) == 0);
	memset(&a, 0, sizeof(a));
	a.canary = 0x1234;
	a.m.dst = (uintptr_t)dst;
	a.m.src = (uintptr_t)src;
	a.m.len = page;
	T_ASSERT(ioctl(fd, UFFDIO_MOVE, &a.m) == -1);
	T_ASSERT(errno == ENOENT, "UFFDIO_MOVE: %s", strerror(errno));
	T_ASSERT_EQ(a.m.move, -ENOENT);
	T_ASSERT_EQ(a.canary, 0x1234);
	/* And a real move reports its length there. */
	a.m.src = (uintptr_t)src + page;
	a.m.move = 0;
	T_ASSERT(ioctl(fd, UFFDIO_MOVE, &a.m) == 0, "UFFDIO_MOVE: %s", strerror(errno));
	T_ASSERT_EQ(a.m.move, (int64_t)page);
	T_ASSERT_EQ(dst[0], 1);
	return T_PASS;
}

/* UFFDIO_POISON: known number, result in `updated`. */
static int test_kernel_poison(void *arg)
{
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct {
		struct uffdio_poison p;
		uint64_t canary;
	} a;
	char *dst;
	int fd;

	t_require(FL_FEATURE_BIT(FL_FEATURE_POISON));
	fd = raw_uffd(UFFD_FEATURE_POISON);
	dst = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(dst != MAP_FAILED);
	reg.range.start = (uintptr_t)dst;
	reg.range.len = 2 * page;
	T_ASSERT(ioctl(fd, UFFDIO_REGISTER, &reg) == 0);
	T_ASSERT(reg.ioctls & (1ULL << _UFFDIO_POISON), "POISON not offered");
	memset(&a, 0, sizeof(a));
	a.canary = 0x1234;
	a.p.range.start = (uintptr_t)dst;
	a.p.range.len = 2 * page;
	T_ASSERT(ioctl(fd, UFFDIO_POISON, &a.p) == 0, "UFFDIO_POISON: %s", strerror(errno));
	T_ASSERT_EQ(a.p.updated, (int64_t)(2 * page));
	T_ASSERT_EQ(a.canary, 0x1234);
	/* A bad mode bit: the kernel checks the mode field where we put it. */
	a.p.mode = 1ULL << 5;
	T_ASSERT(ioctl(fd, UFFDIO_POISON, &a.p) == -1 && errno == EINVAL);
	return T_PASS;
}

/* PAGEMAP_SCAN: the kernel insists on size == sizeof(struct pm_scan_arg). */
static int test_kernel_pagemap_scan(void *arg)
{
	static char page[4096] __attribute__((aligned(4096)));
	struct page_region vec[2];
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.start = (uintptr_t)page,
		.end = (uintptr_t)page + sizeof(page),
		.vec = (uintptr_t)vec,
		.vec_len = 2,
		.category_mask = PAGE_IS_PRESENT,
		.return_mask = PAGE_IS_PRESENT,
	};
	int fd, n;

	t_require(FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN));
	page[0] = 1;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	T_ASSERT(fd >= 0);
	n = ioctl(fd, PAGEMAP_SCAN, &a);
	T_ASSERT_EQ(n, 1);
	T_ASSERT_EQ(vec[0].start, (uintptr_t)page);
	T_ASSERT_EQ(vec[0].end, (uintptr_t)page + sizeof(page));
	T_ASSERT_EQ(vec[0].categories, PAGE_IS_PRESENT);
	T_ASSERT_EQ(a.walk_end, (uintptr_t)page + sizeof(page));
	a.size = sizeof(a) - 8;
	T_ASSERT(ioctl(fd, PAGEMAP_SCAN, &a) == -1 && errno == EINVAL);
	a.size = sizeof(a);
	a.return_mask = PAGE_IS_GUARD << 1;	/* bit 9: no such category */
	T_ASSERT(ioctl(fd, PAGEMAP_SCAN, &a) == -1 && errno == EINVAL);
	close(fd);
	return T_PASS;
}

/*
 * FAULTLINE_REQUIRE_FEATURES=all: a machine whose kernel has every feature
 * through Linux 6.8. (tools/check.sh uses =kernel, which runs on any kernel;
 * kernel/kernel-version checks the probe against the kernel's version.)
 */
static int test_all_features(void *arg)
{
	const char *req = getenv("FAULTLINE_REQUIRE_FEATURES");
	uint64_t f = fl_features();

	if (!req || strcmp(req, "all") != 0)
		t_skip("FAULTLINE_REQUIRE_FEATURES is not 'all' (kernel/kernel-version checks this kernel's features)");
	if (getenv("FAULTLINE_MASK_FEATURES"))
		t_skip("FAULTLINE_MASK_FEATURES is set");
	/* Every UFFDIO_API bit through 6.8, and what follows from them. */
	T_ASSERT_EQ(fl_features_to_uffd(f), 0x1ffff);
	for (unsigned i = 0; fl_feature_name((enum fl_feature)i); i++) {
		enum fl_feature feat = (enum fl_feature)i;

		if (feat == FL_FEATURE_SYSCALL || feat == FL_FEATURE_DEV_USERFAULTFD)
			continue;	/* privilege, not the kernel */
		T_ASSERT(fl_feature_has(feat), "feature %s missing from fl_features() 0x%llx",
			 fl_feature_name(feat), (unsigned long long)f);
	}
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "feature_values", test_feature_values, NULL, 0 },
	{ "feature_enum", test_feature_enum, NULL, 0 },
	{ "mode_values", test_mode_values, NULL, 0 },
	{ "ioctl_numbers", test_ioctl_numbers, NULL, 0 },
	{ "struct_layouts", test_struct_layouts, NULL, 0 },
	{ "public_matches_kernel", test_public_matches_kernel, NULL, 0 },
	{ "kernel_move", test_kernel_move, NULL, 0, T_MOVE },
	{ "kernel_poison", test_kernel_poison, NULL, 0, T_POISON },
	{ "kernel_pagemap_scan", test_kernel_pagemap_scan, NULL, 0, T_PAGEMAP_SCAN },
	{ "all_features", test_all_features, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
