// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Run-time feature probing. Never decided from the build machine's headers:
 * a throwaway uffd asks the running kernel, and FAULTLINE_MASK_FEATURES can
 * hide features so the fallbacks are exercised on a kernel that has
 * everything.
 */
#include "kernel.h"

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const struct fl_feature_info feature_table[] = {
	{ UFFD_FEATURE_PAGEFAULT_FLAG_WP, "wp", "5.7", "write-protect faults: dirty tracking, copy-before-write snapshots" },
	{ UFFD_FEATURE_EVENT_FORK, "event_fork", "4.11", "follow fork(): serve the child's lazy memory" },
	{ UFFD_FEATURE_EVENT_REMAP, "event_remap", "4.11", "follow mremap() of lazy regions" },
	{ UFFD_FEATURE_EVENT_REMOVE, "event_remove", "4.11", "MADV_DONTNEED/REMOVE: later faults get zeros, as the application asked" },
	{ UFFD_FEATURE_MISSING_HUGETLBFS, "missing_hugetlbfs", "4.11", "lazy hugetlbfs regions" },
	{ UFFD_FEATURE_MISSING_SHMEM, "missing_shmem", "4.11", "lazy shmem/memfd regions" },
	{ UFFD_FEATURE_EVENT_UNMAP, "event_unmap", "4.11", "munmap(): stop serving the range" },
	{ UFFD_FEATURE_SIGBUS, "sigbus", "4.14", "fail-fast mode: faults raise SIGBUS instead of waiting" },
	{ UFFD_FEATURE_THREAD_ID, "thread_id", "4.14", "faulting thread id: targeted SIGBUS when POISON is missing" },
	{ UFFD_FEATURE_MINOR_HUGETLBFS, "minor_hugetlbfs", "5.13", "MINOR regions over hugetlbfs (CONTINUE)" },
	{ UFFD_FEATURE_MINOR_SHMEM, "minor_shmem", "5.14", "MINOR regions over memfd/shmem: shared page cache, clones" },
	{ UFFD_FEATURE_EXACT_ADDRESS, "exact_address", "5.18", "exact fault address (sub-page access patterns)" },
	{ UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "wp_hugetlbfs_shmem", "5.19", "write-protect shmem and hugetlbfs" },
	{ UFFD_FEATURE_WP_UNPOPULATED, "wp_unpopulated", "6.4", "write-protect unpopulated anon ptes without pre-faulting" },
	{ UFFD_FEATURE_POISON, "poison", "6.6", "fail closed: an undeliverable page raises SIGBUS" },
	{ UFFD_FEATURE_WP_ASYNC, "wp_async", "6.7", "kernel-resolved write-protect: write watches without messages" },
	{ UFFD_FEATURE_MOVE, "move", "6.8", "UFFDIO_MOVE: zero-copy page moves" },
	{ FL_FEAT_PAGEMAP_SCAN, "pagemap_scan", "6.7", "PAGEMAP_SCAN: find written/present pages in one ioctl" },
	{ FL_FEAT_DEV_USERFAULTFD, "dev_userfaultfd", "6.1", "/dev/userfaultfd: uffds without the syscall (works under valgrind)" },
	{ FL_FEAT_SYSCALL, "syscall", "4.3", "userfaultfd(2) catching kernel-mode faults (privileged or sysctl)" },
	{ FL_FEAT_IOCTL_MOVE, "ioctl_move", "6.8", "UFFDIO_MOVE ioctl available on the fd" },
	{ FL_FEAT_IOCTL_POISON, "ioctl_poison", "6.6", "UFFDIO_POISON ioctl available on registered ranges" },
};

int fl_feature_table(const struct fl_feature_info **ret_table)
{
	*ret_table = feature_table;
	return (int)FL_ARRAY_SIZE(feature_table);
}

const char *fl_feature_name(uint64_t bit)
{
	for (size_t i = 0; i < FL_ARRAY_SIZE(feature_table); i++)
		if (feature_table[i].bit == bit)
			return feature_table[i].name;
	return NULL;
}

uint64_t fl__features_newer_than_6_1(void)
{
	return UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_POISON |
	       UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_MOVE | FL_FEAT_PAGEMAP_SCAN |
	       FL_FEAT_IOCTL_MOVE | FL_FEAT_IOCTL_POISON;
}

int fl_features_parse(const char *spec, uint64_t *ret_mask)
{
	uint64_t mask = 0;
	char name[64];

	if (!spec)
		return -EINVAL;
	while (*spec) {
		size_t n = strcspn(spec, ", ");
		bool found = false;

		if (n == 0) {
			spec++;
			continue;
		}
		if (n >= sizeof(name))
			return -EINVAL;
		memcpy(name, spec, n);
		name[n] = '\0';
		spec += n;
		for (char *c = name; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		if (strcmp(name, "new") == 0) {
			mask |= fl__features_newer_than_6_1();
			continue;
		}
		if (strcmp(name, "none") == 0)
			continue;
		if (strncmp(name, "0x", 2) == 0) {
			char *end;
			mask |= strtoull(name, &end, 16);
			if (*end)
				return -EINVAL;
			continue;
		}
		for (size_t i = 0; i < FL_ARRAY_SIZE(feature_table); i++) {
			if (strcmp(feature_table[i].name, name) == 0) {
				mask |= feature_table[i].bit;
				found = true;
			}
		}
		if (!found)
			return -EINVAL;
	}
	/* Masking a feature masks the ioctl that goes with it. */
	if (mask & UFFD_FEATURE_MOVE)
		mask |= FL_FEAT_IOCTL_MOVE;
	if (mask & UFFD_FEATURE_POISON)
		mask |= FL_FEAT_IOCTL_POISON;
	*ret_mask = mask;
	return 0;
}

uint64_t fl_features_masked(void)
{
	/* getenv per call: a test may set the variable before probing. An
	 * unparsable value masks nothing; `faultline check` reports it. */
	const char *spec = getenv("FAULTLINE_MASK_FEATURES");
	uint64_t mask = 0;
	if (!spec || fl_features_parse(spec, &mask) < 0)
		return 0;
	return mask;
}

static bool probe_pagemap_scan(void)
{
	struct page_region vec[1];
	static const char page[FL_PAGE_SIZE] __attribute__((aligned(FL_PAGE_SIZE)));
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = (uintptr_t)page,
		.end = (uintptr_t)page + FL_PAGE_SIZE,
		.vec = (uintptr_t)vec,
		.vec_len = 1,
		.category_anyof_mask = PAGE_IS_PRESENT,
		.return_mask = PAGE_IS_PRESENT,
	};
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	bool ok;
	if (fd < 0)
		return false;
	ok = ioctl(fd, PAGEMAP_SCAN, &arg) >= 0;
	close(fd);
	return ok;
}

int fl_features_probe(uint64_t *ret_features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	uint64_t feats = 0;
	int fd;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		feats |= FL_FEAT_SYSCALL;
	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	{
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			int u = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			if (u >= 0) {
				feats |= FL_FEAT_DEV_USERFAULTFD;
				if (fd < 0)
					fd = u;
				else
					close(u);
			}
			close(dev);
		}
	}
	if (fd < 0)
		return errno == ENOSYS ? -EOPNOTSUPP : -errno;
	if (ioctl(fd, UFFDIO_API, &api)) {
		int r = -errno;
		close(fd);
		return r;
	}
	close(fd);
	feats |= api.features & 0xffffffffffffull;
	if (api.features & UFFD_FEATURE_MOVE)
		feats |= FL_FEAT_IOCTL_MOVE;
	if (api.features & UFFD_FEATURE_POISON)
		feats |= FL_FEAT_IOCTL_POISON;
	if (probe_pagemap_scan())
		feats |= FL_FEAT_PAGEMAP_SCAN;
	*ret_features = feats & ~fl_features_masked();
	return 0;
}

/* A write-once cache of a fact about the running kernel: not mutable state. */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static uint64_t probed_features;

static void probe_cached(void)
{
	uint64_t f = 0;
	if (fl_features_probe(&f) == 0)
		probed_features = f;
}

uint64_t fl_features(void)
{
	pthread_once(&probe_once, probe_cached);
	return probed_features;
}

bool fl_has_features(uint64_t want)
{
	return (fl_features() & want) == want;
}
