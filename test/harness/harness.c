// SPDX-License-Identifier: LGPL-2.1-or-later
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
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
	_exit(T_FAIL);
}

void t_skip(const char *fmt, ...)
{
	va_list ap;
	fputs("# skip: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	_exit(T_SKIP);
}

bool t_has(uint64_t feats)
{
	return (fl_features() & feats) == feats;
}

static bool require_all(void)
{
	const char *r = getenv("FAULTLINE_REQUIRE_FEATURES");
	return r && strcmp(r, "all") == 0;
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

void t_require(uint64_t feats)
{
	uint64_t have = fl_features();
	uint64_t missing = feats & ~have;
	char names[256];

	if (!missing)
		return;
	feature_names(missing, names, sizeof(names));
	if ((missing & ~fl_features_masked()) == 0)
		t_skip("features %s masked by FAULTLINE_MASK_FEATURES", names);
	if (require_all()) {
		fprintf(stderr, "# kernel lacks required features %s "
			"(FAULTLINE_REQUIRE_FEATURES=all)\n", names);
		_exit(T_FAIL);
	}
	t_skip("kernel lacks features %s", names);
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

static long free_huge_pages(void)
{
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
	long n = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &n) != 1)
		n = 0;
	fclose(f);
	return n;
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
			if (free_huge_pages() * (2L << 20) < (long)len) {
				if (require_all())
					t_fail_at(__FILE__, __LINE__, "hugetlb",
						  "no free huge pages reserved (FAULTLINE_REQUIRE_FEATURES=all)");
				t_skip("no free huge pages (echo N > /proc/sys/vm/nr_hugepages)");
			}
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

uint64_t t_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
	unsigned timeout = c->timeout_s ? c->timeout_s : 30;
	uint64_t deadline;
	int status = 0;
	pid_t pid, w;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		setpgid(0, 0);
		_exit(c->fn(c->arg));
	}
	setpgid(pid, pid);
	deadline = t_now_ns() + (uint64_t)timeout * 1000000000ull;
	for (;;) {
		w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (t_now_ns() > deadline) {
			fprintf(stderr, "# %s: timed out after %us\n", c->name, timeout);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return T_FAIL;
		}
		usleep(2000);
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
		for (size_t i = 0; i < n; i++)
			printf("%s\n", cases[i].name);
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
