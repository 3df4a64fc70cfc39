// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Run-time feature probing. Never decided from the build machine's headers:
 * a throwaway uffd asks the running kernel, and FAULTLINE_MASK_FEATURES can
 * hide features so the fallbacks are exercised on a kernel that has
 * everything.
 */
#include "kernel.h"

#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * The one table that maps faultline's feature numbers to the kernel: an
 * entry's uffd_bit is its UFFD_FEATURE_* bit, 0 for a feature the kernel
 * does not report through UFFDIO_API. Indexed by enum fl_feature (checked
 * below), in the order `faultline check` prints.
 */
struct feature_entry {
	uint64_t uffd_bit;
	const char *name;	/* as accepted by FAULTLINE_MASK_FEATURES */
	const char *since;	/* first Linux version that has it */
	const char *purpose;	/* what faultline uses it for */
	bool newer_than_6_1;	/* hidden by FAULTLINE_MASK_FEATURES=new */
};

#define FEATURE(f, bit, nm, ver, why, new_) [FL_FEATURE_##f] = { bit, nm, ver, why, new_ }
static const struct feature_entry feature_table[] = {
	FEATURE(SYSCALL, 0, "syscall", "4.3", "userfaultfd(2) catching kernel-mode faults (privileged or sysctl)", false),
	FEATURE(DEV_USERFAULTFD, 0, "dev_userfaultfd", "6.1", "/dev/userfaultfd: uffds without the syscall (works under valgrind)", false),
	FEATURE(MISSING_SHMEM, UFFD_FEATURE_MISSING_SHMEM, "missing_shmem", "4.11", "lazy shmem/memfd regions", false),
	FEATURE(MISSING_HUGETLBFS, UFFD_FEATURE_MISSING_HUGETLBFS, "missing_hugetlbfs", "4.11", "lazy hugetlbfs regions", false),
	FEATURE(MINOR_SHMEM, UFFD_FEATURE_MINOR_SHMEM, "minor_shmem", "5.14", "MINOR regions over memfd/shmem: shared page cache, clones", false),
	FEATURE(MINOR_HUGETLBFS, UFFD_FEATURE_MINOR_HUGETLBFS, "minor_hugetlbfs", "5.13", "MINOR regions over hugetlbfs (CONTINUE)", false),
	FEATURE(WP, UFFD_FEATURE_PAGEFAULT_FLAG_WP, "wp", "5.7", "write-protect faults: dirty tracking, copy-before-write snapshots", false),
	FEATURE(WP_HUGETLBFS_SHMEM, UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "wp_hugetlbfs_shmem", "5.19", "write-protect shmem and hugetlbfs", false),
	FEATURE(WP_UNPOPULATED, UFFD_FEATURE_WP_UNPOPULATED, "wp_unpopulated", "6.4", "write-protect unpopulated anon ptes without pre-faulting", true),
	FEATURE(WP_ASYNC, UFFD_FEATURE_WP_ASYNC, "wp_async", "6.7", "kernel-resolved write-protect: write watches without messages", true),
	FEATURE(EVENT_FORK, UFFD_FEATURE_EVENT_FORK, "event_fork", "4.11", "follow fork(): serve the child's lazy memory", false),
	FEATURE(EVENT_REMAP, UFFD_FEATURE_EVENT_REMAP, "event_remap", "4.11", "follow mremap() of lazy regions", false),
	FEATURE(EVENT_REMOVE, UFFD_FEATURE_EVENT_REMOVE, "event_remove", "4.11", "MADV_DONTNEED/REMOVE: later faults get zeros, as the application asked", false),
	FEATURE(EVENT_UNMAP, UFFD_FEATURE_EVENT_UNMAP, "event_unmap", "4.11", "munmap(): stop serving the range", false),
	FEATURE(SIGBUS, UFFD_FEATURE_SIGBUS, "sigbus", "4.14", "fail-fast mode: faults raise SIGBUS instead of waiting", false),
	FEATURE(THREAD_ID, UFFD_FEATURE_THREAD_ID, "thread_id", "4.14", "faulting thread id: targeted SIGBUS when POISON is missing", false),
	FEATURE(EXACT_ADDRESS, UFFD_FEATURE_EXACT_ADDRESS, "exact_address", "5.18", "exact fault address (sub-page access patterns)", false),
	FEATURE(POISON, UFFD_FEATURE_POISON, "poison", "6.6", "fail closed: an undeliverable page raises SIGBUS", true),
	FEATURE(MOVE, UFFD_FEATURE_MOVE, "move", "6.8", "UFFDIO_MOVE: zero-copy page moves", true),
	FEATURE(IOCTL_POISON, 0, "ioctl_poison", "6.6", "UFFDIO_POISON ioctl available on registered ranges", true),
	FEATURE(IOCTL_MOVE, 0, "ioctl_move", "6.8", "UFFDIO_MOVE ioctl available on the fd", true),
	FEATURE(PAGEMAP_SCAN, 0, "pagemap_scan", "6.7", "PAGEMAP_SCAN: find written/present pages in one ioctl", true),
	FEATURE(CONTINUE_MODE_WP, 0, "continue_mode_wp", "6.4", "CONTINUE mapping pages write-protected (fl_uffd_continue FL_MODE_WP)", true),
};
#undef FEATURE

/* A hole in the designated initialisers would be an entry without a name;
 * a set must fit in 64 bits. */
static_assert(FL_ARRAY_SIZE(feature_table) == FL_FEATURE_CONTINUE_MODE_WP + 1,
	      "feature_table covers enum fl_feature");
static_assert(FL_ARRAY_SIZE(feature_table) <= 64, "feature sets are 64 bits");

static const struct feature_entry *entry(enum fl_feature f)
{
	if ((unsigned)f >= FL_ARRAY_SIZE(feature_table))
		return NULL;
	return &feature_table[f];
}

const char *fl_feature_name(enum fl_feature feature)
{
	const struct feature_entry *e = entry(feature);
	return e ? e->name : NULL;
}

const char *fl_feature_since(enum fl_feature feature)
{
	const struct feature_entry *e = entry(feature);
	return e ? e->since : NULL;
}

const char *fl_feature_purpose(enum fl_feature feature)
{
	const struct feature_entry *e = entry(feature);
	return e ? e->purpose : NULL;
}

uint64_t fl_feature_uffd_bit(enum fl_feature feature)
{
	const struct feature_entry *e = entry(feature);
	return e ? e->uffd_bit : 0;
}

int fl_feature_from_name(const char *name, enum fl_feature *ret_feature)
{
	if (!name)
		return -EINVAL;
	for (size_t i = 0; i < FL_ARRAY_SIZE(feature_table); i++) {
		if (strcasecmp(feature_table[i].name, name) == 0) {
			*ret_feature = (enum fl_feature)i;
			return 0;
		}
	}
	return -EINVAL;
}

uint64_t fl_features_to_uffd(uint64_t features)
{
	uint64_t bits = 0;

	for (size_t i = 0; i < FL_ARRAY_SIZE(feature_table); i++)
		if (features & FL_FEATURE_BIT(i))
			bits |= feature_table[i].uffd_bit;
	return bits;
}

uint64_t fl_features_from_uffd(uint64_t uffd_bits)
{
	uint64_t set = 0;

	for (size_t i = 0; i < FL_ARRAY_SIZE(feature_table); i++)
		if (feature_table[i].uffd_bit & uffd_bits)
			set |= FL_FEATURE_BIT(i);
	return set;
}

uint64_t fl__features_newer_than_6_1(void)
{
	uint64_t set = 0;

	for (size_t i = 0; i < FL_ARRAY_SIZE(feature_table); i++)
		if (feature_table[i].newer_than_6_1)
			set |= FL_FEATURE_BIT(i);
	return set;
}

int fl_features_parse(const char *spec, uint64_t *ret_features)
{
	uint64_t mask = 0;
	char name[64];

	if (!spec)
		return -EINVAL;
	while (*spec) {
		size_t n = strcspn(spec, ", ");
		enum fl_feature f;

		if (n == 0) {
			spec++;
			continue;
		}
		if (n >= sizeof(name))
			return -EINVAL;
		memcpy(name, spec, n);
		name[n] = '\0';
		spec += n;
		if (strcasecmp(name, "new") == 0) {
			mask |= fl__features_newer_than_6_1();
			continue;
		}
		if (strcasecmp(name, "none") == 0)
			continue;
		if (strncasecmp(name, "0x", 2) == 0) {
			/* Kernel UFFD_FEATURE_* bits, as UFFDIO_API reports
			 * them: what someone reading a kernel log has. */
			char *end;
			uint64_t bits;

			if (!name[2])
				return -EINVAL;
			errno = 0;
			bits = strtoull(name, &end, 16);
			if (*end || errno)
				return -EINVAL;
			mask |= fl_features_from_uffd(bits);
			continue;
		}
		if (fl_feature_from_name(name, &f) < 0)
			return -EINVAL;
		mask |= FL_FEATURE_BIT(f);
	}
	/* Masking a feature masks the ioctl that goes with it. */
	if (mask & FL_FEATURE_BIT(FL_FEATURE_MOVE))
		mask |= FL_FEATURE_BIT(FL_FEATURE_IOCTL_MOVE);
	if (mask & FL_FEATURE_BIT(FL_FEATURE_POISON))
		mask |= FL_FEATURE_BIT(FL_FEATURE_IOCTL_POISON);
	*ret_features = mask;
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

/* A throwaway uffd for a probe; -1 when none can be made. */
static int probe_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	/* User-mode-only is enough: a probe takes no faults. */
	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
		}
	}
	return fd;
}

/*
 * UFFDIO_CONTINUE_MODE_WP is a mode bit, which UFFDIO_API does not report:
 * Linux 6.1 to 6.3 answer EINVAL. Try it on one page-cache page of a memfd
 * registered MINOR | WP (which needs MINOR_SHMEM and WP_HUGETLBFS_SHMEM).
 */
static bool probe_continue_mode_wp(uint64_t uffd_features)
{
	const uint64_t need = UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	struct uffdio_api api = { .api = UFFD_API, .features = need };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP };
	struct uffdio_continue cont = { .mode = UFFDIO_CONTINUE_MODE_WP };
	bool ok = false;
	void *area = MAP_FAILED;
	int uffd = -1, memfd;

	if ((uffd_features & need) != need)
		return false;
	memfd = memfd_create("faultline-probe", MFD_CLOEXEC);
	if (memfd < 0)
		return false;
	if (pwrite(memfd, "", 1, 0) != 1)	/* one page in the page cache */
		goto out;
	area = mmap(NULL, FL_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (area == MAP_FAILED)
		goto out;
	uffd = probe_uffd();
	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api))
		goto out;
	reg.range = (struct uffdio_range){ .start = (uintptr_t)area, .len = FL_PAGE_SIZE };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		goto out;
	cont.range = reg.range;
	ok = ioctl(uffd, UFFDIO_CONTINUE, &cont) == 0;
out:
	if (uffd >= 0)
		close(uffd);
	if (area != MAP_FAILED)
		munmap(area, FL_PAGE_SIZE);
	close(memfd);
	return ok;
}

int fl_features_probe(uint64_t *ret_features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	uint64_t feats = 0;
	int fd;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		feats |= FL_FEATURE_BIT(FL_FEATURE_SYSCALL);
	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	{
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			int u = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			if (u >= 0) {
				feats |= FL_FEATURE_BIT(FL_FEATURE_DEV_USERFAULTFD);
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
	feats |= fl_features_from_uffd(api.features);
	/* The kernel offers the ioctl with the feature (both since 6.6 and
	 * 6.8); separate names so that the ioctl can be masked alone. */
	if (api.features & UFFD_FEATURE_MOVE)
		feats |= FL_FEATURE_BIT(FL_FEATURE_IOCTL_MOVE);
	if (api.features & UFFD_FEATURE_POISON)
		feats |= FL_FEATURE_BIT(FL_FEATURE_IOCTL_POISON);
	if (probe_pagemap_scan())
		feats |= FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN);
	if (probe_continue_mode_wp(api.features))
		feats |= FL_FEATURE_BIT(FL_FEATURE_CONTINUE_MODE_WP);
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

bool fl_feature_has(enum fl_feature feature)
{
	if ((unsigned)feature >= FL_ARRAY_SIZE(feature_table))
		return false;
	return (fl_features() & FL_FEATURE_BIT(feature)) != 0;
}
