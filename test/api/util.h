/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers shared by the api and stress tests (header-only; every program
 * includes it once): engines and regions with test defaults, pattern images
 * and stores, SIGBUS probes, reader threads, /proc helpers, and re-running a
 * case in a fresh process with FAULTLINE_MASK_FEATURES set from the start.
 */
#ifndef FL_TEST_API_UTIL_H
#define FL_TEST_API_UTIL_H

#include "harness.h"
/* UFFD_FEATURE_* newer than the system headers (POISON, MOVE, ...). */
#include "compat/uffd-compat.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define U_FN static __attribute__((unused))
#define U_PAGE ((size_t)4096)
#define U_HPAGE ((size_t)2 << 20)
#define U_MIB ((size_t)1 << 20)

/* ---- memory type x registration mode ------------------------------------ */

struct u_cfg {
	const char *name;
	enum fl_mem_type mem;
	enum fl_region_mode mode;
};

__attribute__((unused)) static const struct u_cfg u_cfgs[] = {
	{ "anon-missing", FL_MEM_ANON, FL_MODE_MISSING },
	{ "shmem-missing", FL_MEM_SHMEM, FL_MODE_MISSING },
	{ "shmem-minor", FL_MEM_SHMEM, FL_MODE_MINOR },
	{ "hugetlb-missing", FL_MEM_HUGETLB, FL_MODE_MISSING },
	{ "hugetlb-minor", FL_MEM_HUGETLB, FL_MODE_MINOR },
};
#define U_NCFGS (sizeof(u_cfgs) / sizeof(u_cfgs[0]))

/*
 * What a region of memory type `mem` in `mode` needs (enum t_need), as a
 * constant expression for case tables. MINOR fills the page cache through a
 * MISSING alias, so it needs MISSING too.
 */
#define U_NEEDS(mem, mode)                                                             \
	((mem) == FL_MEM_SHMEM ? T_MISSING_SHMEM | ((mode) == FL_MODE_MINOR ? T_MINOR_SHMEM : 0u) : \
	 (mem) == FL_MEM_HUGETLB ? T_HUGE_PAGES | T_MISSING_HUGETLB |                        \
					  ((mode) == FL_MODE_MINOR ? T_MINOR_HUGETLB : 0u) : \
	 0u)
#define U_NEEDS_SHMEM U_NEEDS(FL_MEM_SHMEM, FL_MODE_MISSING)
#define U_NEEDS_SHMEM_MINOR U_NEEDS(FL_MEM_SHMEM, FL_MODE_MINOR)
#define U_NEEDS_HUGETLB U_NEEDS(FL_MEM_HUGETLB, FL_MODE_MISSING)
#define U_NEEDS_HUGETLB_MINOR U_NEEDS(FL_MEM_HUGETLB, FL_MODE_MINOR)

/* Kernel feature bits (UFFD_FEATURE_*) a region of this configuration needs. */
U_FN uint64_t u_cfg_features(const struct u_cfg *c)
{
	return fl_features_to_uffd(t_needs_features(U_NEEDS(c->mem, c->mode)));
}

U_FN size_t u_cfg_psz(const struct u_cfg *c)
{
	return c->mem == FL_MEM_HUGETLB ? U_HPAGE : U_PAGE;
}

U_FN void u_require_cfg(const struct u_cfg *c, size_t len)
{
	t_require(fl_features_from_uffd(u_cfg_features(c)));
	if (c->mem == FL_MEM_HUGETLB)
		t_need_huge(len);
}

/* ---- engines and regions ------------------------------------------------ */

U_FN enum fl_log_level u_log_level(void)
{
	const char *v = getenv("FL_TEST_LOG");
	if (v && strcmp(v, "debug") == 0)
		return FL_LOG_DEBUG;
	if (v && strcmp(v, "info") == 0)
		return FL_LOG_INFO;
	return FL_LOG_WARN;
}

U_FN struct fl_engine *u_engine_opts(struct fl_engine_opts *o)
{
	struct fl_engine *e = NULL;
	int r;

	o->sz = sizeof(*o);
	if (!o->log) {
		o->log = t_log_cb;
		o->log_level = u_log_level();
	}
	r = fl_engine_new(o, &e);
	T_ASSERT(r == 0 && e, "fl_engine_new: %d (%s)", r, strerror(-r));
	if (!(o->flags & FL_ENGINE_EMBEDDED)) {
		r = fl_engine_start(e);
		T_ASSERT(r == 0, "fl_engine_start: %d (%s)", r, strerror(-r));
	}
	return e;
}

U_FN struct fl_engine *u_engine(unsigned flags, unsigned threads)
{
	struct fl_engine_opts o = { .sz = sizeof(o), .flags = flags, .threads = threads };
	return u_engine_opts(&o);
}

U_FN struct fl_region_opts u_ropts(const struct u_cfg *c, size_t len, struct fl_store *s, unsigned flags)
{
	struct fl_region_opts o = {
		.sz = sizeof(o), .length = len, .mem = c->mem, .mode = c->mode,
		.flags = flags, .store = s, .memfd = -1, .name = c->name,
	};
	return o;
}

U_FN struct fl_region *u_region_opts(struct fl_engine *e, const struct fl_region_opts *o)
{
	struct fl_region *reg = NULL;
	int r;

	/* Under the hugetlb lock no other test program takes the pages counted here. */
	if (o->mem == FL_MEM_HUGETLB)
		t_need_huge(o->length);
	r = fl_region_new(e, o, &reg);
	T_ASSERT(r == 0 && reg, "fl_region_new(%s): %d (%s)", o->name ? o->name : "?", r, strerror(-r));
	return reg;
}

U_FN struct fl_region *u_region(struct fl_engine *e, const struct u_cfg *c, size_t len,
				struct fl_store *s, unsigned flags)
{
	struct fl_region_opts o = u_ropts(c, len, s, flags);
	return u_region_opts(e, &o);
}

U_FN struct fl_region_stats u_rstats(const struct fl_region *r)
{
	struct fl_region_stats st = { .sz = sizeof(st) };
	T_OK(fl_region_stats(r, &st));
	return st;
}

/*
 * Wait (up to 3 s) for an engine counter to reach `want`, then assert it is
 * exactly `want`. Event counters are bumped after the handler has read and
 * handled the event; the process doing mmap/munmap only waits for the read.
 */
#define U_WAIT_ESTAT(e, field, want)                                                  \
	do {                                                                          \
		uint64_t _want = (want);                                              \
		struct fl_engine_stats _st;                                           \
		T_WAIT_FOR((_st = u_estats(e)).field >= _want, 3000);                 \
		T_ASSERT(_st.field == _want, #field " = %llu, want %llu",             \
			 (unsigned long long)_st.field, (unsigned long long)_want);   \
	} while (0)

U_FN uint64_t u_faults(const struct fl_region_stats *st);

/*
 * Region statistics once the handlers have finished accounting every fault
 * they took: the resolving ioctl wakes the faulting thread before the
 * handler updates its counters (resolved pages, pages by method, latency),
 * so a reader that just returned from a fault may see them a moment late.
 * A fault is fully accounted when its latency sample is in (lat_count).
 */
U_FN struct fl_region_stats u_rstats_settled(const struct fl_region *r)
{
	struct fl_region_stats st;

	T_WAIT_FOR((st = u_rstats(r)).lat_count == u_faults(&st), 3000);
	return st;
}

U_FN struct fl_engine_stats u_estats(const struct fl_engine *e)
{
	struct fl_engine_stats st = { .sz = sizeof(st) };
	T_OK(fl_engine_stats(e, &st));
	return st;
}

U_FN uint64_t u_faults(const struct fl_region_stats *st)
{
	return st->faults_read + st->faults_write + st->faults_minor;
}

U_FN void u_log_rstats(const char *what, const struct fl_region_stats *s)
{
	t_log("%s: faults r/w/minor %llu/%llu/%llu, pages copy %llu zero %llu continue %llu "
	      "prefetch %llu background %llu poisoned %llu exist %llu, store_errors %llu, "
	      "huge moves %llu moved %llu, lat n=%llu p50=%llu p99=%llu max=%llu ns, blocked %llu ns", what,
	      (unsigned long long)s->faults_read, (unsigned long long)s->faults_write,
	      (unsigned long long)s->faults_minor, (unsigned long long)s->pages_copy,
	      (unsigned long long)s->pages_zero, (unsigned long long)s->pages_continue,
	      (unsigned long long)s->pages_prefetch, (unsigned long long)s->pages_background,
	      (unsigned long long)s->pages_poisoned, (unsigned long long)s->pages_exist,
	      (unsigned long long)s->store_errors, (unsigned long long)s->huge_moves,
	      (unsigned long long)s->pages_moved, (unsigned long long)s->lat_count,
	      (unsigned long long)s->lat_p50_ns, (unsigned long long)s->lat_p99_ns,
	      (unsigned long long)s->lat_max_ns, (unsigned long long)s->blocked_ns);
}

/* ---- images and stores -------------------------------------------------- */

/* An anonymous buffer (prefaulted) holding the pattern of `seed` from byte `off`. */
U_FN uint8_t *u_image(size_t len, uint64_t off, uint32_t seed)
{
	void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(p != MAP_FAILED, "mmap image: %s", strerror(errno));
	t_fill_pattern(p, len, off, seed);
	return p;
}

/* A memory store over `img` (not copied: img must outlive the store). */
U_FN struct fl_store *u_mem_store(const uint8_t *img, size_t len)
{
	struct fl_store *s = NULL;
	T_OK(fl_store_memory_new(img, len, 0, &s));
	return s;
}

/* Write img to a temporary file in /tmp; returns an O_RDWR fd (file unlinked). */
U_FN int u_tmpfile(const void *img, size_t len, char *path_out, size_t path_len)
{
	char path[] = "/tmp/fl-test-XXXXXX";
	int fd = mkstemp(path);
	size_t done = 0;
	T_ASSERT(fd >= 0, "mkstemp: %s", strerror(errno));
	while (done < len) {
		ssize_t n = pwrite(fd, (const uint8_t *)img + done, len - done, (off_t)done);
		T_ASSERT(n > 0, "pwrite: %s", strerror(errno));
		done += (size_t)n;
	}
	if (path_out)
		snprintf(path_out, path_len, "%s", path);
	else
		unlink(path);
	return fd;
}

/* ---- SIGBUS probes ------------------------------------------------------- */

/*
 * A SIGBUS raised by the kernel for an access (poison: BUS_MCEERR_AR), or
 * sent to this thread with tgkill (SI_TKILL: faultline's fallback without
 * POISON), while a probe is armed in this thread, jumps out of the probe.
 * Anything else (a process-directed kill(SIGBUS), an unarmed thread) kills
 * the process with SIGBUS, as it would without a handler.
 */
static __thread sigjmp_buf u_jb;
static __thread volatile sig_atomic_t u_armed;
static _Atomic long u_sigbus_caught;

static void u_bus_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (u_armed && si->si_code != SI_USER) {
		u_armed = 0;
		atomic_fetch_add(&u_sigbus_caught, 1);
		siglongjmp(u_jb, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

U_FN void u_bus_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = u_bus_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	T_ASSERT(sigaction(SIGBUS, &sa, NULL) == 0);
}

/* Compare len bytes at p with expect: 0 equal, 1 different, -1 SIGBUS. */
U_FN int u_probe_cmp(const void *p, const void *expect, size_t len)
{
	int r;
	if (sigsetjmp(u_jb, 1))
		return -1;
	u_armed = 1;
	r = memcmp(p, expect, len) != 0;
	u_armed = 0;
	return r;
}

/* Read one byte: its value, or -1 on SIGBUS. */
U_FN int u_probe_byte(const volatile uint8_t *p)
{
	int v;
	if (sigsetjmp(u_jb, 1))
		return -1;
	u_armed = 1;
	v = *p;
	u_armed = 0;
	return v;
}

U_FN bool u_all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * Readers that race a handler's death: each probes its pages against the
 * image and counts what it got (kept in shared memory by the caller).
 */
struct u_verdicts {
	_Atomic long ok, sigbus, bad, zero;
};

struct u_probe_reader {
	pthread_t tid;
	const uint8_t *base, *img;
	size_t first, count;
	struct u_verdicts *v;
};

U_FN void *u_probe_reader_main(void *arg)
{
	struct u_probe_reader *rd = arg;
	for (size_t p = rd->first; p < rd->first + rd->count; p++) {
		const uint8_t *a = rd->base + p * U_PAGE;
		int got = u_probe_cmp(a, rd->img + p * U_PAGE, U_PAGE);
		if (got == 0) {
			atomic_fetch_add(&rd->v->ok, 1);
		} else if (got < 0) {
			atomic_fetch_add(&rd->v->sigbus, 1);
		} else {
			atomic_fetch_add(&rd->v->bad, 1);
			if (u_all_zero(a, U_PAGE))
				atomic_fetch_add(&rd->v->zero, 1);
		}
	}
	return NULL;
}

/* Assert [base, base+len) equals expect; names the first bad page. */
#define U_CHECK(base, expect, len, psz)                                              \
	do {                                                                          \
		const uint8_t *_b = (const uint8_t *)(base), *_x = (const uint8_t *)(expect); \
		size_t _l = (len), _ps = (psz);                                       \
		if (memcmp(_b, _x, _l) != 0) {                                        \
			for (size_t _o = 0; _o < _l; _o += _ps) {                     \
				if (memcmp(_b + _o, _x + _o, _ps) != 0)               \
					t_fail_at(__FILE__, __LINE__, "bytes match",  \
						  "page %zu (offset 0x%zx) differs%s", \
						  _o / _ps, _o,                         \
						  u_all_zero(_b + _o, _ps) ? " (all zeros)" : ""); \
			}                                                              \
		}                                                                      \
	} while (0)

/* ---- reader threads ------------------------------------------------------ */

enum u_order { U_SEQ, U_REV, U_RANDOM };

struct u_reader {
	pthread_t tid;
	const uint8_t *base;
	const uint8_t *expect;		/* region byte i must equal expect[i] */
	size_t psz, npages;
	enum u_order order;
	unsigned rseed;
	unsigned passes;		/* 0 = 1 */
	pthread_barrier_t *bar;
	long bad_page;			/* -1: none */
	bool bad_zero;
};

U_FN void u_shuffle(uint32_t *v, size_t n, unsigned *seed)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)rand_r(seed) % i;
		uint32_t t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

U_FN uint32_t *u_perm(size_t n, enum u_order order, unsigned seed)
{
	uint32_t *v = malloc(n * sizeof(*v));
	T_ASSERT(v);
	for (size_t i = 0; i < n; i++)
		v[i] = (uint32_t)(order == U_REV ? n - 1 - i : i);
	if (order == U_RANDOM)
		u_shuffle(v, n, &seed);
	return v;
}

U_FN void *u_reader_main(void *arg)
{
	struct u_reader *rd = arg;
	uint32_t *perm = u_perm(rd->npages, rd->order, rd->rseed);
	unsigned passes = rd->passes ? rd->passes : 1;

	rd->bad_page = -1;
	if (rd->bar)
		pthread_barrier_wait(rd->bar);
	for (unsigned pass = 0; pass < passes && rd->bad_page < 0; pass++) {
		for (size_t i = 0; i < rd->npages; i++) {
			size_t off = (size_t)perm[i] * rd->psz;
			if (memcmp(rd->base + off, rd->expect + off, rd->psz) != 0) {
				rd->bad_page = (long)perm[i];
				rd->bad_zero = u_all_zero(rd->base + off, rd->psz);
				break;
			}
		}
		if (rd->order == U_RANDOM)
			u_shuffle(perm, rd->npages, &rd->rseed);
	}
	free(perm);
	return NULL;
}

/*
 * n threads read the region at once (thread 0 forward, 1 backward, the rest
 * in random orders), each checking every page it touches.
 */
U_FN void u_read_threads(const uint8_t *base, const uint8_t *expect, size_t psz, size_t npages,
			 unsigned n, unsigned passes)
{
	struct u_reader rd[16];
	pthread_barrier_t bar;

	T_ASSERT(n <= 16);
	pthread_barrier_init(&bar, NULL, n);
	for (unsigned i = 0; i < n; i++) {
		rd[i] = (struct u_reader){
			.base = base, .expect = expect, .psz = psz, .npages = npages,
			.order = i == 0 ? U_SEQ : i == 1 ? U_REV : U_RANDOM,
			.rseed = 7919u * (i + 1), .passes = passes, .bar = &bar,
		};
		T_ASSERT(pthread_create(&rd[i].tid, NULL, u_reader_main, &rd[i]) == 0);
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(rd[i].tid, NULL);
	pthread_barrier_destroy(&bar);
	for (unsigned i = 0; i < n; i++)
		T_ASSERT(rd[i].bad_page < 0, "reader %u: page %ld differs%s", i, rd[i].bad_page,
			 rd[i].bad_zero ? " (all zeros)" : "");
}

/* ---- /proc, time, fds ----------------------------------------------------- */

/* Thread ids of this process; returns how many (at most max). */
U_FN int u_tasks(pid_t *tids, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;
	T_ASSERT(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (tids && n < max)
			tids[n] = (pid_t)atoi(de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

U_FN int u_task_count(void)
{
	return u_tasks(NULL, 0);
}


/*
 * Assert the process has `want` threads. pthread_join() returns when the
 * kernel clears the thread's tid, a moment before the task leaves
 * /proc/self/task, so allow it up to a second to get there.
 */
#define U_ASSERT_TASKS(want)                                                          \
	do {                                                                          \
		int _want = (want), _n;                                               \
		T_WAIT_FOR((_n = u_task_count()) == _want, 1000);                     \
		T_ASSERT(_n == _want, "%d threads, want %d", _n, _want);              \
	} while (0)

/* Is [p, p+len) mapped (without touching it)? */
U_FN bool u_mapped(const void *p, size_t len)
{
	unsigned char vec[64];
	size_t n = (len + U_PAGE - 1) / U_PAGE;
	for (size_t i = 0; i < n; i += 64) {
		size_t k = n - i < 64 ? n - i : 64;
		if (mincore((uint8_t *)(uintptr_t)p + i * U_PAGE, k * U_PAGE, vec) != 0)
			return false;
	}
	return true;
}

/* Reserve len bytes of address space aligned to `align`, then release it. */
U_FN void *u_free_addr(size_t len, size_t align)
{
	uint8_t *p = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *a;
	T_ASSERT(p != MAP_FAILED);
	a = (uint8_t *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	munmap(p, len + align);
	return a;
}

/* read() exactly len bytes within timeout_ms (scaled); false on timeout/EOF. */
U_FN bool u_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	size_t done = 0;
	while (done < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int r = poll(&p, 1, timeout_ms > 0 ? (int)t_scaled_ms((unsigned)timeout_ms) : timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		n = read(fd, (uint8_t *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

U_FN void u_write_full(int fd, const void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, (const uint8_t *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		T_ASSERT(n > 0, "write: %s", strerror(errno));
		done += (size_t)n;
	}
}

/* ---- re-running a case with a feature mask from process start ------------ */

/*
 * fl_features() is probed once per process (t_main probes it before any
 * case runs), so a case that needs FAULTLINE_MASK_FEATURES in effect for
 * the whole library re-executes this program with the variable set (added to
 * any mask already in force) and argv "--inner <case name>"; u_inner_main()
 * then runs just that case. Returns the inner case's result.
 */
U_FN int u_run_masked(const char *mask, const char *inner)
{
	char exe[4096], spec[512];
	const char *old = getenv("FAULTLINE_MASK_FEATURES");
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int status;
	pid_t pid;

	T_ASSERT(n > 0);
	exe[n] = '\0';
	snprintf(spec, sizeof(spec), "%s%s%s", old && *old ? old : "", old && *old ? "," : "", mask);
	fflush(NULL);
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0) {
		setenv("FAULTLINE_MASK_FEATURES", spec, 1);
		/* The magic link, not the path: it still names this binary if
		 * the file was rebuilt meanwhile. */
		execl("/proc/self/exe", exe, "--inner", inner, (char *)NULL);
		fprintf(stderr, "# exec /proc/self/exe (%s): %s\n", exe, strerror(errno));
		_exit(99);
	}
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	if (WIFSIGNALED(status)) {
		t_log("inner case %s killed by signal %d", inner, WTERMSIG(status));
		return T_FAIL;
	}
	return WEXITSTATUS(status);
}

/* In main(), before t_main(): runs "--inner <name>" and exits. */
U_FN void u_inner_main(int argc, char **argv, const struct t_case *cases, size_t n)
{
	if (argc < 3 || strcmp(argv[1], "--inner") != 0)
		return;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(cases[i].name, argv[2]) == 0)
			exit(cases[i].fn(cases[i].arg));
	fprintf(stderr, "# no inner case %s\n", argv[2]);
	exit(99);
}

#endif
