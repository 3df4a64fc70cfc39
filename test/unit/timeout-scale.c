// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * FAULTLINE_TIMEOUT_SCALE is honoured: t_scaled_ms() and t_deadline_ms(),
 * t_wait_pid(), and a case's own timeout (t_case.timeout_s), each checked
 * in this program run again with the variable set (the factor is read once
 * per process, before the first case is forked).
 */
#include "harness.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run this program again as `argv1 [argv2]` with FAULTLINE_TIMEOUT_SCALE=scale; its wait status. */
static int rerun(const char *scale, const char *argv1, const char *argv2)
{
	int st;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		if (scale)
			setenv("FAULTLINE_TIMEOUT_SCALE", scale, 1);
		else
			unsetenv("FAULTLINE_TIMEOUT_SCALE");
		/* The inner cases are not this suite's: no verdict lines. */
		unsetenv("FL_TEST_RESULTS");
		if (!freopen("/dev/null", "w", stdout))
			_exit(126);
		execl("/proc/self/exe", "timeout-scale", argv1, argv2, (char *)NULL);
		_exit(127);
	}
	T_ASSERT(waitpid(pid, &st, 0) == pid);
	return st;
}

/* Inner: the factor and the helpers, as the outer case says they must be. */
static int inner_values(const char *want)
{
	double w = strtod(want, NULL);
	uint64_t t0 = t_now_ns(), d = t_deadline_ms(1000);
	pid_t pid;
	int st;

	if (t_timeout_scale() != w)
		return 10;
	if (t_scaled_ms(1000) != (unsigned)(1000 * w + 0.999) || t_scaled_ms(0) != 0)
		return 11;
	if (d < t0 + (uint64_t)(1000 * w) * 1000000ull || d > t_now_ns() + (uint64_t)(1000 * w + 1) * 1000000ull)
		return 12;
	/*
	 * t_wait_pid(100 ms) sees a child that takes 200 ms exit only when
	 * scaled: never unscaled (it cannot exit sooner), and surely at 20
	 * (2 s, a margin for a loaded machine); between, either may happen.
	 */
	pid = fork();
	if (pid == 0) {
		usleep(200000);
		_exit(0);
	}
	st = t_wait_pid(pid, 100, NULL);
	if ((w == 1 && st == 0) || (w >= 20 && st != 0))
		return 13;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return 0;
}

static int slow_case(void *arg)
{
	(void)arg;
	t_sleep_ms(1500);
	return T_PASS;
}

/* Inner: one case of 1.5 s with a timeout of 1 s. */
static const struct t_case inner_cases[] = {
	{ "slow", slow_case, NULL, 1 },
};

static int test_values(void *arg)
{
	int st;

	(void)arg;
	st = rerun(NULL, "inner-values", "1");
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "unset: status 0x%x", st);
	st = rerun("2.5", "inner-values", "2.5");
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "2.5: status 0x%x", st);
	st = rerun("20", "inner-values", "20");
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "20: status 0x%x", st);
	/* Below 1, or not a number: 1. */
	st = rerun("0.5", "inner-values", "1");
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "0.5: status 0x%x", st);
	st = rerun("fast", "inner-values", "1");
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fast: status 0x%x", st);
	return T_PASS;
}

static int test_case_timeout(void *arg)
{
	int st;

	(void)arg;
	/* 1 s is too short for the 1.5 s case... */
	st = rerun(NULL, "inner-cases", NULL);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1, "unscaled: status 0x%x", st);
	/* ...and 4 s (scale 4) is enough, even on a loaded machine. */
	st = rerun("4", "inner-cases", NULL);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "scaled: status 0x%x", st);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "values", test_values, NULL, 0 },
	{ "case_timeout", test_case_timeout, NULL, 0 },
};

int main(int argc, char **argv)
{
	if (argc > 2 && strcmp(argv[1], "inner-values") == 0)
		return inner_values(argv[2]);
	if (argc > 1 && strcmp(argv[1], "inner-cases") == 0)
		return t_main(1, argv, inner_cases, 1);
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
