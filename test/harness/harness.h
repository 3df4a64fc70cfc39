/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test harness: every case runs in its own forked child (its own process
 * group) under a timeout, so a hung fault handler fails one case, not the
 * suite. A case returns T_PASS, T_FAIL or T_SKIP (or fails through T_ASSERT,
 * which exits the child).
 *
 * Skips: t_require() skips a case when a feature is missing. A feature masked
 * by FAULTLINE_MASK_FEATURES is an honest skip; a feature the kernel lacks is
 * a failure when FAULTLINE_REQUIRE_FEATURES=all (CI on kernels that have
 * everything).
 *
 * Output: one line per case, "PASS name", "FAIL name", "SKIP name: why",
 * also appended to $FL_TEST_RESULTS when set. Exit: 0 all passed (or
 * skipped), 1 any failure, 77 all skipped, 99 harness error.
 */
#ifndef FL_TEST_HARNESS_H
#define FL_TEST_HARNESS_H

#include <faultline/faultline.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#define T_PASS 0
#define T_FAIL 1
#define T_SKIP 77

struct t_case {
	const char *name;
	int (*fn)(void *arg);
	void *arg;
	unsigned timeout_s;	/* 0 = 30 */
};

/* Run the cases; argv[1] (optional) is a substring filter, "-l" lists. */
int t_main(int argc, char **argv, const struct t_case *cases, size_t n);

#define T_ASSERT(cond, ...)                                                   \
	do {                                                                  \
		if (!(cond)) {                                                \
			t_fail_at(__FILE__, __LINE__, #cond, " " __VA_ARGS__); \
		}                                                             \
	} while (0)
#define T_ASSERT_EQ(a, b)                                                      \
	do {                                                                   \
		long long _a = (long long)(a), _b = (long long)(b);            \
		if (_a != _b)                                                  \
			t_fail_at(__FILE__, __LINE__, #a " == " #b,            \
				  " %lld != %lld", _a, _b);                     \
	} while (0)
/* Assert a faultline call returned >= 0; prints strerror on failure. */
#define T_OK(expr)                                                             \
	do {                                                                   \
		long long _r = (long long)(expr);                              \
		if (_r < 0)                                                    \
			t_fail_at(__FILE__, __LINE__, #expr, " returned %lld (%s)", \
				  _r, strerror((int)-_r));                     \
	} while (0)

__attribute__((noreturn, format(printf, 4, 5)))
void t_fail_at(const char *file, int line, const char *expr, const char *fmt, ...);
__attribute__((format(printf, 1, 2)))
void t_log(const char *fmt, ...);

/*
 * Skip (or, under FAULTLINE_REQUIRE_FEATURES=all, fail) unless all of
 * `feats`, a feature set (FL_FEATURE_BIT(FL_FEATURE_*), not kernel bits:
 * fl_features_from_uffd() converts those). Exits the case.
 */
void t_require(uint64_t feats);
/* Skip the case with a reason (exits the case). */
__attribute__((noreturn, format(printf, 1, 2))) void t_skip(const char *fmt, ...);
/* True if every feature is present and not masked (no exit). */
bool t_has(uint64_t feats);

/* ---- memory helpers --------------------------------------------------- */
extern const enum fl_mem_type t_mem_types[3];
const char *t_mem_name(enum fl_mem_type mem);
/* Page size used by a memory type (huge page size for hugetlb). */
size_t t_page_size(enum fl_mem_type mem);
/*
 * Map `len` bytes of `mem` memory (MAP_SHARED for memfds). For hugetlb,
 * skips the case if no huge pages are reserved. *ret_memfd = -1 for anon.
 */
void *t_map(enum fl_mem_type mem, size_t len, int *ret_memfd);
/* Create a uffd with API done and `features` requested (asserts on error). */
int t_uffd(uint64_t features);
/* Deterministic page pattern: byte i of page p of seed s. */
void t_fill_pattern(void *buf, size_t len, uint64_t offset, uint32_t seed);
/* Returns the offset of the first mismatch, or -1 when buf matches. */
long long t_check_pattern(const void *buf, size_t len, uint64_t offset, uint32_t seed);
/* Run fn in a forked child; returns its wait status. */
int t_fork_wait(int (*fn)(void *), void *arg);
/* Monotonic nanoseconds. */
uint64_t t_now_ns(void);
/* Log callback that forwards to t_log (for engines under test). */
void t_log_cb(enum fl_log_level level, const char *msg, void *ctx);

#endif
