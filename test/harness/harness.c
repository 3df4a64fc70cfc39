// SPDX-License-Identifier: LGPL-2.1-or-later
#include "harness.h"
#include "flutil.h"
/* UFFD_FEATURE_* newer than the system headers (POISON, MOVE, ...). */
#include "compat/uffd-compat.h"

#include <fcntl.h>
#include <limits.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/file.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const enum fl_mem_type t_mem_types[3] = { FL_MEM_ANON, FL_MEM_SHMEM, FL_MEM_HUGETLB };

void t_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("# ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void t_log_cb(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	t_log("[lib %d] %s", (int)level, msg);
}

static void tmpdirs_end(int verdict);

void t_fail_at(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "# %s:%d: assertion failed: %s", file, line, expr);
	if (fmt && fmt[0] == ' ' && fmt[1] == '\0')
		fmt = NULL;
	if (fmt && *fmt) {
		fputs(":", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	fflush(stderr);
	tmpdirs_end(T_FAIL);
	_exit(T_FAIL);
}

/* Print why the case stops, end its temporary dirs and exit with `code`. */
__attribute__((noreturn, format(printf, 3, 0)))
static void skip_exit(int code, const char *prefix, const char *fmt, va_list ap)
{
	fputs(prefix, stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	fflush(stderr);
	tmpdirs_end(code);
	_exit(code);
}

void t_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	skip_exit(T_SKIP, "# skip: ", fmt, ap);
}

void t_skip_resource(const char *fmt, ...)
{
	bool strict = t_strict();
	va_list ap;

	va_start(ap, fmt);
	skip_exit(strict ? T_FAIL : T_SKIP,
		  strict ? "# a skip for this machine is a failure under FAULTLINE_REQUIRE_FEATURES: " : "# skip: ",
		  fmt, ap);
}

/* ---- features --------------------------------------------------------- */

static const struct {
	unsigned need;
	const char *name;
	uint64_t feats;		/* a feature set: FL_FEATURE_BIT(FL_FEATURE_*) */
} need_table[] = {
	{ T_MISSING_SHMEM, "MISSING_SHMEM", FL_FEATURE_BIT(FL_FEATURE_MISSING_SHMEM) },
	{ T_MISSING_HUGETLB, "MISSING_HUGETLBFS", FL_FEATURE_BIT(FL_FEATURE_MISSING_HUGETLBFS) },
	{ T_MINOR_SHMEM, "MINOR_SHMEM", FL_FEATURE_BIT(FL_FEATURE_MINOR_SHMEM) },
	{ T_MINOR_HUGETLB, "MINOR_HUGETLBFS", FL_FEATURE_BIT(FL_FEATURE_MINOR_HUGETLBFS) },
	{ T_WP, "WP", FL_FEATURE_BIT(FL_FEATURE_WP) },
	{ T_WP_SHMEM_HUGETLB, "WP_HUGETLBFS_SHMEM", FL_FEATURE_BIT(FL_FEATURE_WP_HUGETLBFS_SHMEM) },
	{ T_WP_ASYNC, "WP_ASYNC", FL_FEATURE_BIT(FL_FEATURE_WP_ASYNC) },
	{ T_WP_UNPOPULATED, "WP_UNPOPULATED", FL_FEATURE_BIT(FL_FEATURE_WP_UNPOPULATED) },
	{ T_PAGEMAP_SCAN, "PAGEMAP_SCAN", FL_FEATURE_BIT(FL_FEATURE_PAGEMAP_SCAN) },
	{ T_POISON, "POISON", FL_FEATURE_BIT(FL_FEATURE_POISON) },
	{ T_MOVE, "MOVE", FL_FEATURE_BIT(FL_FEATURE_MOVE) },
	{ T_EVENT_FORK, "EVENT_FORK", FL_FEATURE_BIT(FL_FEATURE_EVENT_FORK) },
	{ T_EVENT_REMAP, "EVENT_REMAP", FL_FEATURE_BIT(FL_FEATURE_EVENT_REMAP) },
	{ T_EVENT_REMOVE, "EVENT_REMOVE", FL_FEATURE_BIT(FL_FEATURE_EVENT_REMOVE) },
	{ T_EVENT_UNMAP, "EVENT_UNMAP", FL_FEATURE_BIT(FL_FEATURE_EVENT_UNMAP) },
	{ T_THREAD_ID, "THREAD_ID", FL_FEATURE_BIT(FL_FEATURE_THREAD_ID) },
	{ T_SIGBUS, "SIGBUS", FL_FEATURE_BIT(FL_FEATURE_SIGBUS) },
	{ T_EXACT_ADDRESS, "EXACT_ADDRESS", FL_FEATURE_BIT(FL_FEATURE_EXACT_ADDRESS) },
	{ T_DEV_USERFAULTFD, "DEV_USERFAULTFD", FL_FEATURE_BIT(FL_FEATURE_DEV_USERFAULTFD) },
	{ T_SYSCALL, "SYSCALL", FL_FEATURE_BIT(FL_FEATURE_SYSCALL) },
	{ T_IOCTL_POISON, "IOCTL_POISON", FL_FEATURE_BIT(FL_FEATURE_IOCTL_POISON) },
	{ T_IOCTL_MOVE, "IOCTL_MOVE", FL_FEATURE_BIT(FL_FEATURE_IOCTL_MOVE) },
	{ T_HUGE_PAGES, "hugepages", 0 },
};

uint64_t t_needs_features(unsigned needs)
{
	uint64_t feats = 0;

	for (size_t i = 0; i < sizeof(need_table) / sizeof(need_table[0]); i++)
		if (needs & need_table[i].need)
			feats |= need_table[i].feats;
	return feats;
}

void t_needs_str(unsigned needs, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(need_table) / sizeof(need_table[0]); i++) {
		if (!(needs & need_table[i].need) || off >= len)
			continue;
		off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
					need_table[i].name);
	}
}

/*
 * The library's feature API, asked in one place: which of the feature set
 * `feats` the running kernel lacks, and which of those only
 * FAULTLINE_MASK_FEATURES hides.
 */
static uint64_t features_missing(uint64_t feats, uint64_t *ret_unmasked)
{
	uint64_t missing = feats & ~fl_features();

	*ret_unmasked = missing & ~fl_features_masked();
	/* For test/unit/require-mode.c only: masked features stand for
	 * features this kernel lacks, so that the strict modes can be
	 * checked on a kernel that has everything. */
	if (getenv("FL_TEST_MASK_AS_KERNEL"))
		*ret_unmasked = missing;
	return missing;
}

bool t_has(uint64_t feats)
{
	uint64_t unmasked;

	return features_missing(feats, &unmasked) == 0;
}

/*
 * FAULTLINE_REQUIRE_FEATURES: "all" (every feature faultline knows must be
 * there: a machine whose kernel has everything), "kernel" (every feature
 * the running kernel reports must be exercised; one it lacks is a skip).
 * Both make a missing resource (huge pages, a tool) a failure.
 */
static const char *require_mode(void)
{
	const char *r = getenv("FAULTLINE_REQUIRE_FEATURES");

	return r ? r : "";
}

bool t_require_all(void)
{
	return strcmp(require_mode(), "all") == 0;
}

bool t_strict(void)
{
	return t_require_all() || strcmp(require_mode(), "kernel") == 0;
}

/* "poison,move": the names of a feature set, for skip messages. */
static void feature_names(uint64_t feats, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned f = 0; f < 64 && off < len; f++) {
		const char *name = fl_feature_name((enum fl_feature)f);

		if (!(feats & FL_FEATURE_BIT(f)))
			continue;
		off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
					name ? name : "(unknown)");
	}
}

/*
 * Why a case needing the feature set `feats` cannot run: NULL when it can;
 * else the reason, with *ret_fail set when it is a failure
 * (FAULTLINE_REQUIRE_FEATURES=all and the kernel itself lacks one). Under
 * FAULTLINE_REQUIRE_FEATURES=kernel a feature the kernel lacks is an
 * honest skip: test/kernel/kernel-version.c checks that the probe does not
 * call a feature missing that the kernel's version has.
 */
static const char *lacking(uint64_t feats, char *buf, size_t len, bool *ret_fail)
{
	uint64_t unmasked, missing = features_missing(feats, &unmasked);
	char names[256];

	*ret_fail = false;
	if (!missing)
		return NULL;
	if (!unmasked) {
		feature_names(missing, names, sizeof(names));
		snprintf(buf, len, "features %s masked by FAULTLINE_MASK_FEATURES", names);
	} else if (t_require_all()) {
		*ret_fail = true;
		feature_names(unmasked, names, sizeof(names));
		snprintf(buf, len, "kernel lacks required features %s (FAULTLINE_REQUIRE_FEATURES=all)", names);
	} else {
		feature_names(unmasked, names, sizeof(names));
		snprintf(buf, len, "kernel lacks features %s", names);
	}
	return buf;
}

void t_require(uint64_t feats)
{
	char why[320];
	bool fail;

	if (!lacking(feats, why, sizeof(why), &fail))
		return;
	if (fail) {
		fprintf(stderr, "# %s\n", why);
		_exit(T_FAIL);
	}
	t_skip("%s", why);
}

void t_require_needs(unsigned needs)
{
	t_require(t_needs_features(needs));
}

const char *t_mem_name(enum fl_mem_type mem)
{
	switch (mem) {
	case FL_MEM_ANON: return "anon";
	case FL_MEM_SHMEM: return "shmem";
	case FL_MEM_HUGETLB: return "hugetlb";
	}
	return "?";
}

size_t t_page_size(enum fl_mem_type mem)
{
	return mem == FL_MEM_HUGETLB ? 2u << 20 : (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- huge pages --------------------------------------------------------- */

long t_free_huge_pages(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "re");
	long n = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &n) != 1)
		n = 0;
	fclose(f);
	return n;
}

/*
 * The reserved pool is shared by every test program, and meson runs two at
 * once: without a lock, one program's hugetlb case takes the pages another
 * just counted as free and the second gets -ENOMEM. flock() on one file
 * serialises the hugetlb cases of all programs. The descriptor is inherited
 * by the case's children (a flock belongs to the open file description), so
 * the lock lasts until the last process of the case is gone. It is inherited
 * across exec too, named in $FL_TEST_HUGE_LOCK_FD, so a program the case
 * re-executes (u_run_masked) knows it holds the lock instead of waiting for
 * its own parent.
 */
#define HUGE_LOCK_PATH "/dev/shm/faultline-test-hugetlb.lock"
#define HUGE_LOCK_ENV "FL_TEST_HUGE_LOCK_FD"
static int huge_lock_fd = -1;

/* Held through a descriptor inherited across exec? */
static bool huge_lock_inherited(void)
{
	const char *v = getenv(HUGE_LOCK_ENV);
	struct stat a, b;
	int fd;

	if (!v || sscanf(v, "%d", &fd) != 1 || fd < 0)
		return false;
	return fstat(fd, &a) == 0 && stat(HUGE_LOCK_PATH, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

static bool huge_lock_held(void)
{
	return huge_lock_fd >= 0 || huge_lock_inherited();
}

static int huge_lock_take(void)
{
	int fd = open(HUGE_LOCK_PATH, O_RDWR | O_CREAT, 0666);
	char v[16];

	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			int e = errno;
			close(fd);
			return -e;
		}
	}
	snprintf(v, sizeof(v), "%d", fd);
	setenv(HUGE_LOCK_ENV, v, 1);
	return fd;
}

void t_huge_lock(void)
{
	uint64_t t0;
	int fd;

	if (huge_lock_held())
		return;
	t0 = t_now_ns();
	fd = huge_lock_take();
	T_ASSERT(fd >= 0, "%s: %s", HUGE_LOCK_PATH, strerror(-fd));
	huge_lock_fd = fd;
	if (t_now_ns() - t0 > 100000000ull)
		t_log("waited %llu ms for the hugetlb lock (declare T_HUGE_PAGES in the case table)",
		      (unsigned long long)((t_now_ns() - t0) / 1000000));
}

void t_need_huge(size_t len)
{
	long need = (long)((len + (2u << 20) - 1) / (2u << 20));
	long have;

	t_huge_lock();
	have = t_free_huge_pages();
	if (have >= need)
		return;
	if (t_strict())
		t_fail_at(__FILE__, __LINE__, "huge pages",
			  " %ld free, %ld needed (FAULTLINE_REQUIRE_FEATURES=%s; echo 64 > /proc/sys/vm/nr_hugepages)",
			  have, need, getenv("FAULTLINE_REQUIRE_FEATURES"));
	t_skip("%ld free huge pages, %ld needed (echo 64 > /proc/sys/vm/nr_hugepages)", have, need);
}

void *t_map(enum fl_mem_type mem, size_t len, int *ret_memfd)
{
	void *p;
	int fd = -1;

	if (mem == FL_MEM_ANON) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		T_ASSERT(p != MAP_FAILED, "mmap anon: %s", strerror(errno));
		madvise(p, len, MADV_NOHUGEPAGE);
	} else {
		unsigned flags = MFD_CLOEXEC;
		if (mem == FL_MEM_HUGETLB) {
			t_need_huge(len);
			flags |= MFD_HUGETLB;
		}
		fd = memfd_create("fl-test", flags);
		T_ASSERT(fd >= 0, "memfd_create: %s", strerror(errno));
		T_ASSERT(ftruncate(fd, (off_t)len) == 0, "ftruncate: %s", strerror(errno));
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		T_ASSERT(p != MAP_FAILED, "mmap memfd: %s", strerror(errno));
	}
	if (ret_memfd)
		*ret_memfd = fd;
	else if (fd >= 0)
		close(fd);
	return p;
}

int t_uffd(uint64_t features)
{
	int fd, r;
	r = fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK, &fd);
	T_ASSERT(r == 0, "fl_uffd_create: %d", r);
	r = fl_uffd_api(fd, features, NULL, NULL);
	if (r == -EOPNOTSUPP) {
		close(fd);
		t_require(features);
	}
	T_ASSERT(r == 0, "fl_uffd_api(0x%llx): %d", (unsigned long long)features, r);
	return fd;
}

static inline uint8_t pattern_byte(uint64_t pos, uint32_t seed)
{
	uint64_t x = (pos >> 3) * 0x9E3779B97F4A7C15ull + seed;
	x ^= x >> 29;
	return (uint8_t)(x >> ((pos & 7) * 8));
}

void t_fill_pattern(void *buf, size_t len, uint64_t offset, uint32_t seed)
{
	uint8_t *b = buf;
	for (size_t i = 0; i < len; i++)
		b[i] = pattern_byte(offset + i, seed);
}

long long t_check_pattern(const void *buf, size_t len, uint64_t offset, uint32_t seed)
{
	const uint8_t *b = buf;
	for (size_t i = 0; i < len; i++)
		if (b[i] != pattern_byte(offset + i, seed))
			return (long long)i;
	return -1;
}

void *t_pattern_buf(size_t len, uint64_t offset, uint32_t seed)
{
	void *p = malloc(len ? len : 1);

	T_ASSERT(p != NULL);
	t_fill_pattern(p, len, offset, seed);
	return p;
}

int t_fork_wait(int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0)
		_exit(fn(arg));
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	return status;
}

/* t_wait_pid() without the scale: the harness scales the case timeout itself. */
static int wait_pid_ns(pid_t pid, uint64_t deadline, int *ret_status);

int t_wait_pid(pid_t pid, unsigned timeout_ms, int *ret_status)
{
	return wait_pid_ns(pid, t_deadline_ms(timeout_ms), ret_status);
}

static int wait_pid_ns(pid_t pid, uint64_t deadline, int *ret_status)
{
	int status;

	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		T_ASSERT(w == 0, "waitpid(%d): %s", (int)pid, strerror(errno));
		if (t_now_ns() > deadline)
			return -ETIMEDOUT;
		usleep(2000);
	}
	if (ret_status)
		*ret_status = status;
	return 0;
}

uint64_t t_now_ns(void)
{
	return fl__now_ns();
}

/*
 * FAULTLINE_TIMEOUT_SCALE: one factor for every deadline of the tests (a
 * VM without KVM is 10-40x slower on fault-heavy work). A value that does
 * not parse, or is below 1, counts as 1 (and says so once).
 */
double t_timeout_scale(void)
{
	static double scale;
	const char *v;
	char *end;
	double d;

	if (scale >= 1)
		return scale;
	v = getenv("FAULTLINE_TIMEOUT_SCALE");
	scale = 1;
	if (!v || !*v)
		return scale;
	errno = 0;
	d = strtod(v, &end);
	if (errno || *end || !(d >= 1) || d > 1000)
		fprintf(stderr, "# FAULTLINE_TIMEOUT_SCALE=\"%s\" is not a number from 1 to 1000: 1 is used\n", v);
	else
		scale = d;
	return scale;
}

unsigned t_scaled_ms(unsigned ms)
{
	double v = (double)ms * t_timeout_scale();

	return v >= (double)UINT_MAX ? UINT_MAX : (unsigned)(v + 0.999);
}

uint64_t t_scaled_ns(unsigned ms)
{
	return (uint64_t)t_scaled_ms(ms) * 1000000ull;
}

uint64_t t_deadline_ms(unsigned ms)
{
	return t_now_ns() + t_scaled_ns(ms);
}

void t_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* ---- files ---------------------------------------------------------------- */

/* The case's scratch directories, removed when it passes or skips (a
 * failed case's stay, for a look, and are named). Per process: a case runs
 * in a child of its own. */
static char tmpdirs[16][256];
static pid_t tmpdirs_pid[16];
static unsigned ntmpdirs;

void t_tmpdir(char *out, size_t len, const char *prefix)
{
	int n = snprintf(out, len, "%s-XXXXXX", prefix);

	T_ASSERT(n > 0 && (size_t)n < len, "t_tmpdir: %s: name too long", prefix);
	T_ASSERT(mkdtemp(out), "mkdtemp %s: %s", out, strerror(errno));
	if (ntmpdirs < sizeof(tmpdirs) / sizeof(tmpdirs[0])) {
		tmpdirs_pid[ntmpdirs] = getpid();
		snprintf(tmpdirs[ntmpdirs++], sizeof(tmpdirs[0]), "%s", out);
	}
}

static void tmpdirs_end(int verdict)
{
	for (unsigned i = 0; i < ntmpdirs; i++) {
		/* A directory the program made before forking this case is
		 * the program's, shared with the other cases. */
		if (tmpdirs_pid[i] != getpid())
			continue;
		if (verdict == T_FAIL)
			fprintf(stderr, "# scratch directory kept: %s\n", tmpdirs[i]);
		else
			t_rmtree(tmpdirs[i]);
	}
	ntmpdirs = 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) ? -errno : 0;
}

int t_rmtree(const char *dir)
{
	int r = nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return r < 0 && errno ? -errno : r;
}

char *t_path_in(const char *dir, const char *name)
{
	static char buf[8][512];
	static unsigned k;
	char *p = buf[k++ & 7];

	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

void t_write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t done = 0;

	T_ASSERT(fd >= 0, "%s: %s", path, strerror(errno));
	while (done < len) {
		ssize_t n = write(fd, (const uint8_t *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		T_ASSERT(n > 0, "write %s: %s", path, strerror(errno));
		done += (size_t)n;
	}
	close(fd);
}

uint8_t *t_read_file(const char *path, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *b;
	size_t done = 0;

	T_ASSERT(fd >= 0, "%s: %s", path, strerror(errno));
	T_ASSERT(fstat(fd, &st) == 0);
	b = malloc((size_t)st.st_size ? (size_t)st.st_size : 1);
	T_ASSERT(b != NULL);
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, b + done, (size_t)st.st_size - done);
		if (n < 0 && errno == EINTR)
			continue;
		T_ASSERT(n > 0, "read %s: %s", path, n ? strerror(errno) : "short");
		done += (size_t)n;
	}
	close(fd);
	*ret_len = done;
	return b;
}

/* ---- /proc ---------------------------------------------------------------- */

long t_pss_kib(pid_t pid, uint64_t start, uint64_t len, const char *name)
{
	uint64_t kib = 0;
	int r = fl__pss_kib(pid, start, len, name, &kib);

	T_ASSERT(r == 0, "/proc/%d/smaps: %s", (int)pid, strerror(-r));
	return (long)kib;
}

static void record(const char *prog, const char *verdict, const char *name)
{
	const char *path = getenv("FL_TEST_RESULTS");
	printf("%s %s/%s\n", verdict, prog, name);
	fflush(stdout);
	if (path) {
		FILE *f = fopen(path, "a");
		if (f) {
			fprintf(f, "%s %s/%s\n", verdict, prog, name);
			fclose(f);
		}
	}
}

static int run_case(const struct t_case *c)
{
	/* In ms: the case's own deadlines scale with it. */
	unsigned timeout = t_scaled_ms((c->timeout_s ? c->timeout_s : 30) * 1000u);
	int status = 0;
	char why[160];
	bool fail;
	pid_t pid;

	if (lacking(t_needs_features(c->needs), why, sizeof(why), &fail)) {
		fprintf(stderr, "# %s: %s\n", c->name, why);
		return fail ? T_FAIL : T_SKIP;
	}
	/*
	 * Taken before the fork, so waiting for another program's hugetlb
	 * case does not count against this case's timeout.
	 */
	if ((c->needs & T_HUGE_PAGES) && !huge_lock_held()) {
		huge_lock_fd = huge_lock_take();
		if (huge_lock_fd < 0) {
			fprintf(stderr, "# %s: %s: %s\n", c->name, HUGE_LOCK_PATH, strerror(-huge_lock_fd));
			return T_FAIL;
		}
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int verdict;
		setpgid(0, 0);
		verdict = c->fn(c->arg);
		tmpdirs_end(verdict);
		_exit(verdict);
	}
	setpgid(pid, pid);
	/*
	 * Closed, not unlocked: a stray grandchild still holding the pages
	 * keeps the lock until SIGKILL below has reaped it.
	 */
	if (huge_lock_fd >= 0) {
		close(huge_lock_fd);
		huge_lock_fd = -1;
		unsetenv(HUGE_LOCK_ENV);
	}
	if (wait_pid_ns(pid, t_now_ns() + (uint64_t)timeout * 1000000ull, &status) < 0) {
		fprintf(stderr, "# %s: timed out after %.1fs (FAULTLINE_TIMEOUT_SCALE %g)\n", c->name,
			timeout / 1000.0, t_timeout_scale());
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return T_FAIL;
	}
	kill(-pid, SIGKILL); /* reap stray grandchildren */
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	fprintf(stderr, "# %s: killed by signal %d\n", c->name, WTERMSIG(status));
	return T_FAIL;
}

int t_main(int argc, char **argv, const struct t_case *cases, size_t n)
{
	const char *prog = strrchr(argv[0], '/');
	const char *filter = argc > 1 ? argv[1] : NULL;
	size_t passed = 0, failed = 0, skipped = 0;

	prog = prog ? prog + 1 : argv[0];
	if (filter && strcmp(filter, "-l") == 0) {
		for (size_t i = 0; i < n; i++) {
			char needs[512];
			t_needs_str(cases[i].needs, needs, sizeof(needs));
			printf("%s%s%s\n", cases[i].name, needs[0] ? "  needs: " : "", needs);
		}
		return 0;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	fl_features(); /* probe once before forking */
	for (size_t i = 0; i < n; i++) {
		int r;
		if (filter && !strstr(cases[i].name, filter))
			continue;
		r = run_case(&cases[i]);
		if (r == T_PASS) {
			passed++;
			record(prog, "PASS", cases[i].name);
		} else if (r == T_SKIP) {
			skipped++;
			record(prog, "SKIP", cases[i].name);
		} else {
			failed++;
			record(prog, "FAIL", cases[i].name);
		}
	}
	fprintf(stderr, "# %s: %zu passed, %zu failed, %zu skipped\n", prog,
		passed, failed, skipped);
	if (failed)
		return 1;
	if (!passed && skipped)
		return 77;
	return 0;
}

void t_drop_privileges(void)
{
	/* Groups first: once the uid changes, setgroups is not allowed. */
	if (setgroups(0, NULL) || setgid(T_NOBODY) || setuid(T_NOBODY))
		t_fail_at(__FILE__, __LINE__, "t_drop_privileges", " %s", strerror(errno));
	/* A uid change clears the dumpable flag, which makes /proc/<pid>
	 * root's: set it again so the process (and its children) can open
	 * its own /proc files as it could had it started unprivileged. */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
		t_fail_at(__FILE__, __LINE__, "PR_SET_DUMPABLE", " %s", strerror(errno));
}

/* ---- commands and certificates ----------------------------------------------- */

void t_run(const char *cmd)
{
	int r = system(cmd);

	T_ASSERT(r == 0, "%s: exit %d", cmd, r);
}

void t_need_certtool(void)
{
	if (system("command -v certtool >/dev/null 2>&1") != 0)
		t_skip_resource("certtool not installed (apt-get install gnutls-bin)");
}

void t_make_ca(const char *dir, const char *name)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && "
		 "printf 'cn = \"faultline test %s\"\\nca\\ncert_signing_key\\nexpiration_days = 2\\n' > %s.tmpl && "
		 "certtool --generate-privkey --key-type=ecdsa --outfile %s.key >/dev/null 2>&1 && "
		 "certtool --generate-self-signed --load-privkey %s.key --template %s.tmpl "
		 "--outfile %s.pem >/dev/null 2>&1",
		 dir, name, name, name, name, name, name);
	t_run(cmd);
}

void t_make_cert(const char *dir, const char *name, const char *ca, const char *usage, const char *validity)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && printf 'cn = \"%s\"\\ndns_name = \"localhost\"\\nip_address = \"127.0.0.1\"\\n%s\\n"
		 "signing_key\\nencryption_key\\n%s\\n' > %s.tmpl && "
		 "certtool --generate-privkey --key-type=ecdsa --outfile %s.key >/dev/null 2>&1 && "
		 "certtool --generate-certificate --load-privkey %s.key --load-ca-certificate %s.pem "
		 "--load-ca-privkey %s.key --template %s.tmpl --outfile %s.pem >/dev/null 2>&1",
		 dir, name, usage, validity, name, name, name, ca, ca, name, name);
	t_run(cmd);
}

char t_logged[4096];

void t_log_keep(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)level;
	(void)ctx;
	strncat(t_logged, msg, sizeof(t_logged) - strlen(t_logged) - 2);
	strcat(t_logged, "\n");
}
