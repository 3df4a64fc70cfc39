// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * FAULTLINE_REQUIRE_FEATURES, as the harness applies it: unset, a feature
 * the kernel lacks and a missing resource (huge pages, or any skip for
 * this machine: t_skip_resource()) are skips; "kernel" (what
 * tools/check.sh sets) keeps the first a skip and makes the second a
 * failure; "all" fails both. A masked feature, and a part left out of the
 * build (t_skip()), are skips in every mode.
 * The kernel here has everything, so the inner runs pretend: with
 * FL_TEST_MASK_AS_KERNEL the features FAULTLINE_MASK_FEATURES hides count
 * as ones the kernel lacks.
 */
#include "harness.h"

#include <sys/wait.h>
#include <unistd.h>

static int needs_nothing(void *arg)
{
	(void)arg;
	return T_PASS;
}

static int require_poison(void *arg)
{
	(void)arg;
	t_require(FL_FEATURE_BIT(FL_FEATURE_POISON));
	return T_PASS;
}

static int too_many_huge_pages(void *arg)
{
	(void)arg;
	t_need_huge((size_t)1 << 50);	/* no machine reserves 1 PiB */
	return T_PASS;
}

static int no_root(void *arg)
{
	(void)arg;
	t_skip_resource("pretends to need root");
	return T_PASS;
}

static int left_out_of_build(void *arg)
{
	(void)arg;
	t_skip("pretends to be built without it (-Dpart=disabled)");
	return T_PASS;
}

/* The inner program's cases; the outer cases run one at a time by name. */
static const struct t_case inner_cases[] = {
	{ "needs-poison", needs_nothing, NULL, 0, T_POISON },
	{ "require-poison", require_poison, NULL, 0 },
	{ "huge-pages", too_many_huge_pages, NULL, 0, T_HUGE_PAGES },
	{ "no-root", no_root, NULL, 0 },
	{ "left-out", left_out_of_build, NULL, 0 },
};

/* Exit status of this program's inner case `name`, with `mode`, POISON masked. */
static int inner(const char *mode, bool as_kernel, const char *name)
{
	int st;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		setenv("FAULTLINE_MASK_FEATURES", "poison", 1);
		if (as_kernel)
			setenv("FL_TEST_MASK_AS_KERNEL", "1", 1);
		else
			unsetenv("FL_TEST_MASK_AS_KERNEL");
		if (mode)
			setenv("FAULTLINE_REQUIRE_FEATURES", mode, 1);
		else
			unsetenv("FAULTLINE_REQUIRE_FEATURES");
		unsetenv("FL_TEST_RESULTS");
		if (!freopen("/dev/null", "w", stdout))
			_exit(126);
		execl("/proc/self/exe", "require-mode", "inner", name, (char *)NULL);
		_exit(127);
	}
	T_ASSERT(waitpid(pid, &st, 0) == pid);
	T_ASSERT(WIFEXITED(st), "inner %s: status 0x%x", name, st);
	return WEXITSTATUS(st);
}

static int test_unset(void *arg)
{
	(void)arg;
	T_ASSERT_EQ(inner(NULL, true, "needs-poison"), T_SKIP);
	T_ASSERT_EQ(inner(NULL, true, "require-poison"), T_SKIP);
	T_ASSERT_EQ(inner(NULL, true, "huge-pages"), T_SKIP);
	T_ASSERT_EQ(inner(NULL, true, "no-root"), T_SKIP);
	T_ASSERT_EQ(inner(NULL, true, "left-out"), T_SKIP);
	return T_PASS;
}

static int test_kernel(void *arg)
{
	(void)arg;
	/* The kernel lacks it: a skip. */
	T_ASSERT_EQ(inner("kernel", true, "needs-poison"), T_SKIP);
	T_ASSERT_EQ(inner("kernel", true, "require-poison"), T_SKIP);
	/* A resource: a failure. */
	T_ASSERT_EQ(inner("kernel", true, "huge-pages"), T_FAIL);
	T_ASSERT_EQ(inner("kernel", true, "no-root"), T_FAIL);
	/* A part the build left out: a skip. */
	T_ASSERT_EQ(inner("kernel", true, "left-out"), T_SKIP);
	return T_PASS;
}

static int test_all(void *arg)
{
	(void)arg;
	T_ASSERT_EQ(inner("all", true, "needs-poison"), T_FAIL);
	T_ASSERT_EQ(inner("all", true, "require-poison"), T_FAIL);
	T_ASSERT_EQ(inner("all", true, "huge-pages"), T_FAIL);
	T_ASSERT_EQ(inner("all", true, "no-root"), T_FAIL);
	T_ASSERT_EQ(inner("all", true, "left-out"), T_SKIP);
	/* Masked on purpose: an honest skip even under "all". */
	T_ASSERT_EQ(inner("all", false, "needs-poison"), T_SKIP);
	T_ASSERT_EQ(inner("all", false, "require-poison"), T_SKIP);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "unset", test_unset, NULL, 0 },
	{ "kernel", test_kernel, NULL, 0 },
	{ "all", test_all, NULL, 0 },
};

int main(int argc, char **argv)
{
	if (argc > 2 && strcmp(argv[1], "inner") == 0)
		return t_main(2, argv + 1, inner_cases, sizeof(inner_cases) / sizeof(inner_cases[0]));
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
