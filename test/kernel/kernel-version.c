// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The probe against the kernel's version. Under
 * FAULTLINE_REQUIRE_FEATURES=kernel (what tools/check.sh uses) a feature the
 * probe calls missing makes its cases skip, so a probe that wrongly reports
 * a feature missing would turn real tests into quiet skips. This program
 * holds the other end: the first mainline version of every feature (the
 * table below, from kernel-facts.md, written independently of the
 * library's own), and a kernel whose version implies a feature must report
 * it.
 *
 * The comparison is made only for plain mainline or Debian releases
 * ("6.1.0-28-amd64", "6.18.44", "6.18.44-<localversion>") on x86_64, where
 * every feature below is built in with the distributions' usual
 * configuration. Vendor kernels ("4.18.0-477.el8", "-uek", Android) backport
 * and leave out features independently of their version: for those the
 * case skips and says so. Features that need hugetlbfs are only expected
 * when /proc/filesystems lists it. syscall and dev_userfaultfd depend on
 * privilege and /dev, not on the version: not compared.
 */
#include "kt.h"

#include <sys/utsname.h>

static const struct {
	enum fl_feature f;
	unsigned major, minor;
	bool hugetlb;	/* needs CONFIG_HUGETLBFS */
} since[] = {
	{ FL_FEATURE_SYSCALL, 4, 3, false },
	{ FL_FEATURE_DEV_USERFAULTFD, 6, 1, false },
	{ FL_FEATURE_MISSING_SHMEM, 4, 11, false },
	{ FL_FEATURE_MISSING_HUGETLBFS, 4, 11, true },
	{ FL_FEATURE_MINOR_SHMEM, 5, 14, false },
	{ FL_FEATURE_MINOR_HUGETLBFS, 5, 13, true },
	{ FL_FEATURE_WP, 5, 7, false },
	{ FL_FEATURE_WP_HUGETLBFS_SHMEM, 5, 19, false },
	{ FL_FEATURE_WP_UNPOPULATED, 6, 4, false },
	{ FL_FEATURE_WP_ASYNC, 6, 7, false },
	{ FL_FEATURE_EVENT_FORK, 4, 11, false },
	{ FL_FEATURE_EVENT_REMAP, 4, 11, false },
	{ FL_FEATURE_EVENT_REMOVE, 4, 11, false },
	{ FL_FEATURE_EVENT_UNMAP, 4, 11, false },
	{ FL_FEATURE_SIGBUS, 4, 14, false },
	{ FL_FEATURE_THREAD_ID, 4, 14, false },
	{ FL_FEATURE_EXACT_ADDRESS, 5, 18, false },
	{ FL_FEATURE_POISON, 6, 6, false },
	{ FL_FEATURE_MOVE, 6, 8, false },
	{ FL_FEATURE_IOCTL_POISON, 6, 6, false },
	{ FL_FEATURE_IOCTL_MOVE, 6, 8, false },
	{ FL_FEATURE_PAGEMAP_SCAN, 6, 7, false },
	{ FL_FEATURE_CONTINUE_MODE_WP, 6, 4, false },
};
#define NSINCE (sizeof(since) / sizeof(since[0]))

/*
 * "6.1.0-28-amd64" -> 6, 1: true when the release is a plain mainline or
 * Debian one (see the top of the file), false for a vendor kernel or a
 * string that does not start with a version.
 */
static bool plain_release(const char *rel, unsigned *ret_major, unsigned *ret_minor)
{
	static const char *const vendor[] = { ".el", "-el", "el7", "el8", "el9", "uek",
					      "android", "-rh", "chromeos" };
	unsigned major, minor;
	int n = 0;

	if (sscanf(rel, "%u.%u%n", &major, &minor, &n) != 2 || n == 0)
		return false;
	for (size_t i = 0; i < sizeof(vendor) / sizeof(vendor[0]); i++)
		if (strstr(rel + n, vendor[i]))
			return false;
	*ret_major = major;
	*ret_minor = minor;
	return true;
}

/*
 * The features a kernel of version major.minor must report that `have`
 * lacks (syscall and dev_userfaultfd left out; the hugetlbfs ones only
 * when `hugetlbfs`).
 */
static uint64_t implied_missing(unsigned major, unsigned minor, uint64_t have, bool hugetlbfs)
{
	uint64_t missing = 0;

	for (size_t i = 0; i < NSINCE; i++) {
		if (since[i].f == FL_FEATURE_SYSCALL || since[i].f == FL_FEATURE_DEV_USERFAULTFD)
			continue;
		if (since[i].hugetlb && !hugetlbfs)
			continue;
		if (major > since[i].major || (major == since[i].major && minor >= since[i].minor))
			if (!(have & FL_FEATURE_BIT(since[i].f)))
				missing |= FL_FEATURE_BIT(since[i].f);
	}
	return missing;
}

static bool have_hugetlbfs(void)
{
	FILE *f = fopen("/proc/filesystems", "re");
	char line[128];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "hugetlbfs") != NULL;
	fclose(f);
	return found;
}

static void names(uint64_t set, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned f = 0; f < 64 && off < len; f++)
		if (set & FL_FEATURE_BIT(f))
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
						fl_feature_name((enum fl_feature)f));
}

/* The test's table and the library's (fl_feature_since(), `faultline check`) agree. */
static int test_since_table(void *arg)
{
	unsigned nfeat = 0;

	(void)arg;
	while (fl_feature_name((enum fl_feature)nfeat))
		nfeat++;
	T_ASSERT_EQ(nfeat, NSINCE);	/* a new feature needs its row here */
	for (size_t i = 0; i < NSINCE; i++) {
		char want[16];

		T_ASSERT_EQ(since[i].f, i);
		snprintf(want, sizeof(want), "%u.%u", since[i].major, since[i].minor);
		T_ASSERT(strcmp(fl_feature_since(since[i].f), want) == 0, "%s: library says %s, kernel-facts %s",
			 fl_feature_name(since[i].f), fl_feature_since(since[i].f), want);
	}
	return T_PASS;
}

/* The release parser and the comparison, on made-up kernels: the guard can fail. */
static int test_implied(void *arg)
{
	uint64_t all = 0, r61, newer;
	unsigned ma = 0, mi = 0;

	(void)arg;
	T_OK(fl_features_parse("new", &newer));
	for (size_t i = 0; i < NSINCE; i++)
		all |= FL_FEATURE_BIT(since[i].f);
	T_ASSERT(plain_release("6.1.0-28-amd64", &ma, &mi) && ma == 6 && mi == 1);
	T_ASSERT(plain_release("6.18.44-fc-v1272", &ma, &mi) && ma == 6 && mi == 18);
	T_ASSERT(plain_release("6.8.0", &ma, &mi) && ma == 6 && mi == 8);
	T_ASSERT(!plain_release("4.18.0-477.27.1.el8_8.x86_64", &ma, &mi));
	T_ASSERT(!plain_release("5.15.0-200.131.27.el9uek.x86_64", &ma, &mi));
	T_ASSERT(!plain_release("unknown", &ma, &mi));

	/* 6.1 has everything but the features newer than it... */
	r61 = all & ~newer;
	T_ASSERT_EQ(implied_missing(6, 1, r61, true), 0);
	/* ...and a 6.1 probe that lost MISSING_SHMEM is caught, */
	T_ASSERT_EQ(implied_missing(6, 1, r61 & ~FL_FEATURE_BIT(FL_FEATURE_MISSING_SHMEM), true),
		    FL_FEATURE_BIT(FL_FEATURE_MISSING_SHMEM));
	/* as is a 6.8 one that lost MOVE, or 6.7 one without WP_ASYNC. */
	T_ASSERT_EQ(implied_missing(6, 8, all & ~FL_FEATURE_BIT(FL_FEATURE_MOVE), true),
		    FL_FEATURE_BIT(FL_FEATURE_MOVE));
	T_ASSERT_EQ(implied_missing(6, 7, r61, true),
		    FL_FEATURE_BIT(FL_FEATURE_WP_ASYNC) | FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN) |
			    FL_FEATURE_BIT(FL_FEATURE_POISON) | FL_FEATURE_BIT(FL_FEATURE_IOCTL_POISON) |
			    FL_FEATURE_BIT(FL_FEATURE_WP_UNPOPULATED) |
			    FL_FEATURE_BIT(FL_FEATURE_CONTINUE_MODE_WP));
	/* Without hugetlbfs its features are not expected. */
	T_ASSERT_EQ(implied_missing(6, 1, r61 & ~FL_FEATURE_BIT(FL_FEATURE_MINOR_HUGETLBFS), false), 0);
	return T_PASS;
}

/* The running kernel reports every feature its version has. */
static int test_running_kernel(void *arg)
{
	struct utsname u;
	unsigned major, minor;
	uint64_t have = 0, missing;
	char buf[512];
	int r;

	(void)arg;
	T_ASSERT(uname(&u) == 0);
	if (strcmp(u.machine, "x86_64") != 0)
		t_skip("%s: which features are built in depends on the architecture; compared on x86_64 only",
		       u.machine);
	if (!plain_release(u.release, &major, &minor))
		t_skip("kernel %s is not a plain mainline or Debian release (a vendor kernel backports "
		       "and leaves out features independently of its version): not compared",
		       u.release);
	/* The kernel's own answer: the mask hides features on purpose. */
	unsetenv("FAULTLINE_MASK_FEATURES");
	r = fl_features_probe(&have);
	T_ASSERT(r == 0, "fl_features_probe: %s", strerror(-r));
	missing = implied_missing(major, minor, have, have_hugetlbfs());
	names(missing, buf, sizeof(buf));
	T_ASSERT(missing == 0, "kernel %s (%u.%u) has %s, the probe reports them missing (probe 0x%llx)",
		 u.release, major, minor, buf, (unsigned long long)have);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "since_table", test_since_table, NULL, 0 },
	{ "implied", test_implied, NULL, 0 },
	{ "running_kernel", test_running_kernel, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
