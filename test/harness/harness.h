/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test harness: every case runs in its own forked child (its own process
 * group) under a timeout, so a hung fault handler fails one case, not the
 * suite. A case returns T_PASS, T_FAIL or T_SKIP (or fails through T_ASSERT,
 * which exits the child).
 *
 * Skips: a case declares what it needs in its table entry (t_case.needs,
 * enum t_need) and the harness checks before forking it; t_require() does
 * the same from inside a case. A feature masked by FAULTLINE_MASK_FEATURES
 * is an honest skip; a feature the kernel lacks is a failure when
 * FAULTLINE_REQUIRE_FEATURES=all (a kernel that has everything) and a skip
 * otherwise. A missing resource (huge pages, a tool) is a failure under
 * both strict values, "all" and "kernel" (t_strict()); "kernel" is what
 * tools/check.sh uses, so that a kernel's every feature is exercised and
 * one it lacks is named in the skip.
 * "-l" lists the cases with their needs.
 *
 * Huge pages: cases that declare T_HUGE_PAGES (or call t_need_huge()) run
 * under one lock shared by all test programs, so two programs run at once
 * never see each other's hugetlb pages vanish (see t_huge_lock()).
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
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define T_PASS 0
#define T_FAIL 1
#define T_SKIP 77

/*
 * What a case needs from the running kernel, declared in its table entry
 * (t_case.needs). Before forking the case the harness checks them against
 * the kernel (after FAULTLINE_MASK_FEATURES): a masked one is a skip, a
 * missing one a skip, or a failure under FAULTLINE_REQUIRE_FEATURES=all
 * (a skip under =kernel).
 * `-l` prints them next to the case name. The names are the harness's own;
 * t_needs_features() is the one place that maps them to the library's
 * feature API.
 */
enum t_need {
	T_MISSING_SHMEM = 1u << 0,
	T_MISSING_HUGETLB = 1u << 1,
	T_MINOR_SHMEM = 1u << 2,
	T_MINOR_HUGETLB = 1u << 3,
	T_WP = 1u << 4,			/* PAGEFAULT_FLAG_WP (anon) */
	T_WP_SHMEM_HUGETLB = 1u << 5,	/* WP_HUGETLBFS_SHMEM */
	T_WP_ASYNC = 1u << 6,
	T_WP_UNPOPULATED = 1u << 7,
	T_PAGEMAP_SCAN = 1u << 8,
	T_POISON = 1u << 9,
	T_MOVE = 1u << 10,
	T_EVENT_FORK = 1u << 11,
	T_EVENT_REMAP = 1u << 12,
	T_EVENT_REMOVE = 1u << 13,
	T_EVENT_UNMAP = 1u << 14,
	T_THREAD_ID = 1u << 15,
	T_SIGBUS = 1u << 16,
	T_EXACT_ADDRESS = 1u << 17,
	T_DEV_USERFAULTFD = 1u << 18,
	T_SYSCALL = 1u << 19,
	T_IOCTL_POISON = 1u << 20,
	T_IOCTL_MOVE = 1u << 21,
	/*
	 * Reserved huge pages: the case runs holding the cross-program
	 * hugetlb lock (see t_huge_lock()), so two test programs run in
	 * parallel never take each other's pages.
	 */
	T_HUGE_PAGES = 1u << 31,
};
/* What the asynchronous watch (WP_ASYNC + PAGEMAP_SCAN) needs. */
#define T_WATCH_ASYNC (T_WP_ASYNC | T_WP_UNPOPULATED | T_PAGEMAP_SCAN)

struct t_case {
	const char *name;
	int (*fn)(void *arg);
	void *arg;
	unsigned timeout_s;	/* 0 = 30; times FAULTLINE_TIMEOUT_SCALE */
	unsigned needs;		/* enum t_need bits */
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
/*
 * Skip the case with a reason (exits the case): for a part left out of
 * this build (-Dtls=disabled...), or a reason t_strict() allows. A skip
 * because this machine lacks something is t_skip_resource().
 */
__attribute__((noreturn, format(printf, 1, 2))) void t_skip(const char *fmt, ...);
/*
 * Skip the case because this machine lacks a resource it needs (root, a
 * CPU, a tool, an environment variable meson sets): a failure under
 * t_strict(), whose promise is that only a feature the kernel lacks is
 * skipped. Exits the case.
 */
__attribute__((noreturn, format(printf, 1, 2))) void t_skip_resource(const char *fmt, ...);
/* True if every feature is present and not masked (no exit). */
bool t_has(uint64_t feats);
/* The feature set (FL_FEATURE_BIT(FL_FEATURE_*)) that `needs` (enum t_need) stand for. */
uint64_t t_needs_features(unsigned needs);
/* Skip or fail (as t_require) unless the kernel has `needs` (enum t_need); exits the case. */
void t_require_needs(unsigned needs);
/* Writes the names of `needs` ("POISON,MOVE,hugepages") to buf. */
void t_needs_str(unsigned needs, char *buf, size_t len);
/* FAULTLINE_REQUIRE_FEATURES=all: a missing feature or resource is a failure. */
bool t_require_all(void);
/*
 * FAULTLINE_REQUIRE_FEATURES=all or =kernel: a missing resource (huge
 * pages, a tool the test runs) is a failure, not a skip.
 */
bool t_strict(void);

/* ---- huge pages --------------------------------------------------------- */
/* Free 2 MiB huge pages in the pool now. */
long t_free_huge_pages(void);
/*
 * Take the cross-program hugetlb lock (flock on a file in /dev/shm) for the
 * rest of this case; a no-op when held (the harness takes it before forking
 * a case that declares T_HUGE_PAGES). Blocks while another test program's
 * hugetlb case runs.
 */
void t_huge_lock(void);
/*
 * Take the hugetlb lock, then skip the case (fail under t_strict())
 * unless `len` bytes of huge pages are free.
 */
void t_need_huge(size_t len);

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
/* A malloc'ed buffer of `len` bytes holding pattern `seed` from `offset`. */
void *t_pattern_buf(size_t len, uint64_t offset, uint32_t seed);
/* Run fn in a forked child; returns its wait status. */
int t_fork_wait(int (*fn)(void *), void *arg);
/*
 * Wait at most timeout_ms (scaled by FAULTLINE_TIMEOUT_SCALE) for child
 * `pid` to exit: 0 and *ret_status set (ret_status may be NULL), or
 * -ETIMEDOUT (the child is left running).
 */
int t_wait_pid(pid_t pid, unsigned timeout_ms, int *ret_status);
/*
 * Become uid/gid 65534 (nobody, no supplementary groups) for the rest of
 * the case, which runs in its own forked child: for cases that check what
 * an unprivileged process gets (e.g. a user-mode-only userfaultfd). Keeps
 * the process dumpable so its /proc files stay its own. Asserts.
 */
#define T_NOBODY 65534
void t_drop_privileges(void);
/* Monotonic nanoseconds. */
uint64_t t_now_ns(void);
/*
 * Deadlines that scale. FAULTLINE_TIMEOUT_SCALE (a number from 1 to 1000,
 * default 1) multiplies every deadline of the tests: each case's timeout
 * (t_case.timeout_s), t_wait_pid(), T_WAIT_FOR(), and every in-test
 * deadline, which goes through t_scaled_ms() or t_deadline_ms(). It is
 * for slow machines (a VM without KVM); whoever sets it also passes the
 * same factor to `meson test --timeout-multiplier` (meson's own per-test
 * timeouts), as the VM runner does. harness.sh's t_scale is the same for
 * the shell tests. A duration a test measures as an upper bound ("freed
 * within 2 s") is a deadline too; a sleep that only paces a loop is not.
 */
double t_timeout_scale(void);
/* ms * FAULTLINE_TIMEOUT_SCALE, rounded up. */
unsigned t_scaled_ms(unsigned ms);
/* t_scaled_ms(ms) in ns: a bound on a measured duration. */
uint64_t t_scaled_ns(unsigned ms);
/* t_now_ns() + t_scaled_ns(ms): an absolute deadline. */
uint64_t t_deadline_ms(unsigned ms);
/* Sleep ms milliseconds (restarted on EINTR). */
void t_sleep_ms(unsigned ms);
/*
 * Poll `cond` every millisecond until it is true or timeout_ms (scaled)
 * passes; evaluates to its last value. For counters bumped asynchronously.
 */
#define T_WAIT_FOR(cond, timeout_ms)                                          \
	({                                                                    \
		uint64_t _t_end = t_deadline_ms((unsigned)(timeout_ms));      \
		bool _t_ok;                                                   \
		while (!(_t_ok = (cond)) && t_now_ns() < _t_end)              \
			t_sleep_ms(1);                                        \
		_t_ok;                                                        \
	})

/* ---- files ---------------------------------------------------------------- */
/* mkdtemp of "<prefix>-XXXXXX" into out (e.g. prefix "/tmp/fl-image"); asserts. */
void t_tmpdir(char *out, size_t len, const char *prefix);
/* Remove a directory tree (a case's t_tmpdir): 0, or -errno of the first failure. */
int t_rmtree(const char *dir);
/* "dir/name" in one of 8 rotating static buffers. */
char *t_path_in(const char *dir, const char *name);
/* system(cmd), asserting its exit status 0. */
void t_run(const char *cmd);

/* ---- certificates (certtool from gnutls-bin) ---------------------------------- */
/* t_skip_resource() unless certtool is installed: a failure under t_strict(). */
void t_need_certtool(void);
/* A CA named `name` in dir: name.key, name.pem (ECDSA, 2 days); asserts. */
void t_make_ca(const char *dir, const char *name);
/*
 * A certificate `name` in dir (name.key, name.pem) for 127.0.0.1 and
 * localhost, signed by the CA `ca` (ca.key, ca.pem in dir). usage:
 * "tls_www_server" or "tls_www_client"; validity: template lines such as
 * "expiration_days = 2" or activation_date/expiration_date ("\\n" between
 * lines, as printf reads them). Asserts.
 */
void t_make_cert(const char *dir, const char *name, const char *ca, const char *usage, const char *validity);

/* Create (truncate) `path` holding buf; asserts. */
void t_write_file(const char *path, const void *buf, size_t len);
/* The whole of `path`, malloc'ed; *ret_len its size; asserts. */
uint8_t *t_read_file(const char *path, size_t *ret_len);

/* ---- /proc ---------------------------------------------------------------- */
/*
 * Pss (KiB) of process `pid`'s mappings that overlap [start, start+len) or,
 * with `name`, that map a file whose name contains it ("/memfd:").
 */
long t_pss_kib(pid_t pid, uint64_t start, uint64_t len, const char *name);
/* Log callback that forwards to t_log (for engines under test). */
void t_log_cb(enum fl_log_level level, const char *msg, void *ctx);
/* Log callback that appends each line (and a newline) to t_logged, as
 * much as fits: to check that an error comes with its reason. A case
 * empties it with t_logged[0] = '\0'. */
extern char t_logged[4096];
void t_log_keep(enum fl_log_level level, const char *msg, void *ctx);

#endif
