// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Write watches: every semantic of watch.h on every backend and memory
 * kind, with exact expected answers, so the fallbacks are held to the same
 * answers as the ASYNC backend.
 */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define NG 64		/* granules per watched range */

/* The mappings a watch is made on beyond t_map()'s (private anon, shared
 * memfd, shared hugetlb memfd): the same kernel memory types, mapped the
 * other way, take other paths (shmem without a file, private hugetlb COW). */
enum mkind {
	K_TMAP = 0,		/* t_map(mem) */
	K_SHARED_ANON,		/* MAP_SHARED | MAP_ANONYMOUS: shmem */
	K_PRIVATE_HUGE,		/* MAP_PRIVATE | MAP_HUGETLB */
};

struct wcase {
	enum fl_watch_backend backend;
	enum fl_mem_type mem;
	bool nobody;		/* run as uid 65534 */
	bool handler_after;	/* app-protect: the test's SIGSEGV handler comes after the watch */
	enum mkind kind;
};

static uint8_t *wmap(const struct wcase *c, size_t len)
{
	uint8_t *p;

	switch (c->kind) {
	case K_SHARED_ANON:
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		break;
	case K_PRIVATE_HUGE:
		t_need_huge(len);
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		break;
	default:
		return t_map(c->mem, len, NULL);
	}
	T_ASSERT(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

/* MAP_SHARED: MADV_REMOVE is valid, and a forced write cannot COW. */
static bool is_shared(const struct wcase *c)
{
	return c->mem != FL_MEM_ANON && c->kind != K_PRIVATE_HUGE;
}

static const char *backend_name(enum fl_watch_backend b)
{
	return b == FL_WATCH_ASYNC ? "async" : b == FL_WATCH_SYNC ? "sync" : b == FL_WATCH_MPROTECT ? "mprotect" : "auto";
}

/* What watching `mem` with `backend` needs (enum t_need; a constant expression for the table). */
#define BACKEND_NEEDS(backend, mem)                                                            \
	(((backend) == FL_WATCH_ASYNC ? T_WATCH_ASYNC : (backend) == FL_WATCH_SYNC ? T_WP : 0u) | \
	 ((backend) != FL_WATCH_MPROTECT && (mem) != FL_MEM_ANON ? T_WP_SHMEM_HUGETLB : 0u) |     \
	 ((mem) == FL_MEM_HUGETLB ? T_HUGE_PAGES : 0u))

static void require_backend(const struct wcase *c)
{
	t_require_needs(BACKEND_NEEDS(c->backend, c->mem));
}

/* Whether this process may have a userfaultfd that sees the kernel's own
 * faults (privilege, vm.unprivileged_userfaultfd=1 or an accessible
 * /dev/userfaultfd): what a watch can get, found out independently of it. */
static bool full_uffd_allowed(void)
{
	int fd;

	if (fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_USE_SYSCALL, &fd) &&
	    fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_USE_DEV, &fd))
		return false;
	close(fd);
	return true;
}

/*
 * What the watch must do with a kernel write (read(2), recv, a
 * process_vm_writev) and another process's write: written down here, so
 * the query and the behaviour are both checked against the documented
 * table (fl_watch_new(3)). The user-mode-only flag is checked against
 * what this process may have, so the expectations hold wherever the tests
 * run unprivileged (also with vm.unprivileged_userfaultfd=1).
 */
static enum fl_watch_fate expected_kernel_fate(const struct wcase *c, const struct fl_watch_info *info)
{
	T_ASSERT_EQ(!!(info->flags & FL_WATCH_INFO_USER_MODE_ONLY),
		    c->backend != FL_WATCH_MPROTECT && !full_uffd_allowed());
	if (c->backend == FL_WATCH_ASYNC)
		return FL_WATCH_COUNTED;
	if (c->backend == FL_WATCH_SYNC)
		return info->flags & FL_WATCH_INFO_USER_MODE_ONLY ? FL_WATCH_FAILS : FL_WATCH_COUNTED;
	return FL_WATCH_FAILS;
}

static enum fl_watch_fate expected_remote_fate(const struct wcase *c)
{
	if (c->backend == FL_WATCH_ASYNC)
		return FL_WATCH_COUNTED;
	if (c->backend == FL_WATCH_SYNC)
		return FL_WATCH_FAILS;
	return is_shared(c) ? FL_WATCH_FAILS : FL_WATCH_NOT_SEEN;
}

struct env {
	uint8_t *mem;
	size_t g;	/* granule */
	size_t len;
	struct fl_watch *w;
};

static void setup(const struct wcase *c, struct env *e)
{
	struct fl_watch_opts o = { .sz = sizeof(o), .backend = c->backend, .log = t_log_cb };

	require_backend(c);
	if (c->nobody)
		t_drop_privileges();
	e->g = t_page_size(c->mem);
	e->len = NG * e->g;
	e->mem = wmap(c, e->len);
	/* Populate every other granule: both populated and never-touched
	 * pages must be caught. */
	for (size_t i = 0; i < NG; i += 2)
		e->mem[i * e->g + 1] = 1;
	T_OK(fl_watch_new(e->mem, e->len, &o, &e->w));
	T_ASSERT_EQ(fl_watch_backend(e->w), c->backend);
	T_ASSERT_EQ(fl_watch_granularity(e->w), e->g);
}

/* The indices reported over the whole range, in a bitmap; returns count. */
static uint64_t get_set(struct env *e, unsigned flags, bool *seen)
{
	void *pages[NG];
	uint64_t n = NG;
	size_t gran = 0;

	T_OK(fl_watch_get(e->w, e->mem, e->len, flags, pages, &n, &gran));
	T_ASSERT_EQ(gran, e->g);
	memset(seen, 0, NG * sizeof(bool));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = (uint64_t)((uint8_t *)pages[i] - e->mem);
		T_ASSERT(off % e->g == 0 && off < e->len, "bad address %p", pages[i]);
		if (i)
			T_ASSERT(pages[i] > pages[i - 1], "not ascending");
		seen[off / e->g] = true;
	}
	return n;
}

static void expect(struct env *e, unsigned flags, const int *idx, size_t n)
{
	bool seen[NG], want[NG] = { false };

	for (size_t i = 0; i < n; i++)
		want[idx[i]] = true;
	uint64_t got = get_set(e, flags, seen);
	for (int i = 0; i < NG; i++)
		T_ASSERT(seen[i] == want[i], "granule %d: reported %d, expected %d", i, seen[i], want[i]);
	T_ASSERT_EQ(got, n);
}

static int test_basic(void *arg)
{
	struct env e;
	static const int w[] = { 0, 3, 7, 8, NG - 1 };

	setup(arg, &e);
	expect(&e, 0, NULL, 0);
	for (size_t i = 0; i < 5; i++)
		e.mem[w[i] * e.g + 100] = 7;
	expect(&e, 0, w, 5);	/* without reset: still there */
	expect(&e, FL_WATCH_RESET, w, 5);
	expect(&e, 0, NULL, 0);
	/* Written again after the reset: caught again. */
	e.mem[3 * e.g] = 9;
	expect(&e, FL_WATCH_RESET, (int[]){ 3 }, 1);
	/* Reads do not count. */
	volatile uint8_t sink = 0;
	for (int i = 0; i < NG; i++)
		sink += e.mem[i * e.g + 5];
	(void)sink;
	expect(&e, 0, NULL, 0);
	fl_watch_free(e.w);
	return T_PASS;
}

static int test_reset_returned(void *arg)
{
	struct env e;
	void *pages[4];
	uint64_t n = 4;

	setup(arg, &e);
	for (int i = 10; i < 20; i++)
		e.mem[i * e.g + 3] = 1;
	T_OK(fl_watch_get(e.w, e.mem, e.len, FL_WATCH_RESET, pages, &n, NULL));
	T_ASSERT_EQ(n, 4);
	for (int i = 0; i < 4; i++)
		T_ASSERT(pages[i] == e.mem + (10 + i) * e.g);
	/* The six not returned are still written; the four are reset. */
	expect(&e, FL_WATCH_RESET, (int[]){ 14, 15, 16, 17, 18, 19 }, 6);
	expect(&e, 0, NULL, 0);
	/* A zero count is an error (as GetWriteWatch's), and resets nothing. */
	e.mem[2 * e.g] = 1;
	n = 0;
	T_ASSERT_EQ(fl_watch_get(e.w, e.mem, e.len, FL_WATCH_RESET, pages, &n, NULL), -EINVAL);
	T_ASSERT_EQ(n, 0);
	expect(&e, 0, (int[]){ 2 }, 1);
	fl_watch_free(e.w);
	return T_PASS;
}

static int test_subrange(void *arg)
{
	struct env e;
	void *pages[NG];
	uint64_t n = NG;

	setup(arg, &e);
	for (int i = 0; i < 10; i++)
		e.mem[i * e.g + 3] = 1;
	T_OK(fl_watch_reset(e.w, e.mem, 5 * e.g));
	expect(&e, 0, (int[]){ 5, 6, 7, 8, 9 }, 5);
	/* get over a sub-range sees only it, and resets only it. */
	T_OK(fl_watch_get(e.w, e.mem + 6 * e.g, 2 * e.g, FL_WATCH_RESET, pages, &n, NULL));
	T_ASSERT_EQ(n, 2);
	T_ASSERT(pages[0] == e.mem + 6 * e.g && pages[1] == e.mem + 7 * e.g);
	expect(&e, 0, (int[]){ 5, 8, 9 }, 3);
	fl_watch_free(e.w);
	return T_PASS;
}

/* How the kernel is made to write into watched memory. */
enum kwrite {
	KW_PIPE,		/* read(2) from a pipe */
	KW_FILE,		/* pread(2) from a file */
	KW_SOCKET,		/* recvmsg(2) from a socketpair */
	KW_PVWRITEV,		/* process_vm_writev(2) into this process */
	KW_PVWRITEV_CHILD,	/* process_vm_writev(2) by a child into its parent */
};

/* Write src[0 .. n) to dst through `via`: the bytes written, or -errno. */
static ssize_t kernel_write(enum kwrite via, uint8_t *dst, const uint8_t *src, size_t n)
{
	struct iovec local = { (void *)src, n }, remote = { dst, n };
	int fds[2], status;
	ssize_t r;
	pid_t parent = getpid(), child;

	switch (via) {
	case KW_PIPE:
		T_ASSERT(pipe2(fds, O_CLOEXEC) == 0);
		T_ASSERT(write(fds[1], src, n) == (ssize_t)n);
		r = read(fds[0], dst, n);
		break;
	case KW_FILE: {
		char path[] = "/tmp/fl-watch-XXXXXX";
		fds[0] = mkstemp(path);
		T_ASSERT(fds[0] >= 0);
		unlink(path);
		T_ASSERT(pwrite(fds[0], src, n, 0) == (ssize_t)n);
		fds[1] = -1;
		r = pread(fds[0], dst, n, 0);
		break;
	}
	case KW_SOCKET: {
		struct msghdr msg = { .msg_iov = &remote, .msg_iovlen = 1 };
		T_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
		T_ASSERT(send(fds[1], src, n, 0) == (ssize_t)n);
		r = recvmsg(fds[0], &msg, MSG_WAITALL | MSG_DONTWAIT);
		break;
	}
	case KW_PVWRITEV:
		return process_vm_writev(parent, &local, 1, &remote, 1, 0) < 0 ? -errno : (ssize_t)n;
	default:
		child = fork();
		T_ASSERT(child >= 0);
		if (child == 0) {
			r = process_vm_writev(parent, &local, 1, &remote, 1, 0);
			_exit(r == (ssize_t)n ? 0 : r < 0 && errno < 100 ? 100 + errno : 1);
		}
		T_OK(t_wait_pid(child, 20000, &status));
		T_ASSERT(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) >= 100),
			 "child: status %d", status);
		return WEXITSTATUS(status) ? -(WEXITSTATUS(status) - 100) : (ssize_t)n;
	}
	if (r < 0)
		r = -errno;
	close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	return r;
}

/* Kernel writes into watched memory: what the query says, and what happens. */
static int test_kernel_write(void *arg, enum kwrite via)
{
	const struct wcase *c = arg;
	struct env e;
	size_t n = 2 * 4096;
	uint8_t *src = malloc(n);
	ssize_t r;

	setup(c, &e);
	memset(src, 0xab, n);
	/* Land across the end of granule 4 and the start of granule 5 (for
	 * 4 KiB granules: exactly those two pages). */
	uint8_t *dst = e.mem + 5 * e.g - 4096;
	struct fl_watch_info info = { .sz = sizeof(info) };
	T_OK(fl_watch_query(e.w, &info));
	T_ASSERT_EQ(info.kernel_writes, expected_kernel_fate(c, &info));
	r = kernel_write(via, dst, src, n);
	if (info.kernel_writes == FL_WATCH_FAILS) {
		/* Documented: the kernel's write into a clean page fails
		 * loudly (MPROTECT; SYNC without privilege), nothing written. */
		T_ASSERT_EQ(r, -EFAULT);
		for (size_t i = 0; i < n; i++)
			T_ASSERT(dst[i] != 0xab, "byte %zu written", i);
		expect(&e, 0, NULL, 0);
	} else {
		T_ASSERT_EQ(r, (ssize_t)n);
		T_ASSERT(memcmp(dst, src, n) == 0);
		expect(&e, FL_WATCH_RESET, (int[]){ 4, 5 }, 2);
	}
	/* A read that transfers nothing writes nothing. */
	if (via == KW_PIPE || via == KW_FILE) {
		int fds[2];
		T_ASSERT(pipe2(fds, O_CLOEXEC) == 0);
		close(fds[1]);
		T_ASSERT_EQ(read(fds[0], e.mem + 9 * e.g, 4096), 0);
		close(fds[0]);
		expect(&e, 0, NULL, 0);
	}
	fl_watch_free(e.w);
	free(src);
	return T_PASS;
}

/*
 * fl_watch_prepare_write(): a kernel write lands in a prepared buffer on
 * every backend (also where the query says it fails) and is reported;
 * the contents of a prepared granule are kept, the application's
 * protection is respected (-EACCES, nothing touched), and a range outside
 * the watch is refused.
 */
static int test_kernel_prepared(void *arg)
{
	const struct wcase *c = arg;
	static const enum kwrite vias[] = { KW_PIPE, KW_SOCKET, KW_PVWRITEV };
	struct env e;
	size_t n = 2 * 4096;
	uint8_t *src = malloc(n), *dst;

	T_ASSERT(src);
	setup(c, &e);
	dst = e.mem + 5 * e.g - 4096;	/* across granules 4 and 5 */
	for (size_t v = 0; v < sizeof(vias) / sizeof(vias[0]); v++) {
		memset(src, 0x31 + (int)v, n);
		T_OK(fl_watch_prepare_write(e.w, dst, n));
		T_ASSERT_EQ(kernel_write(vias[v], dst, src, n), (ssize_t)n);
		T_ASSERT(memcmp(dst, src, n) == 0);
		expect(&e, FL_WATCH_RESET, (int[]){ 4, 5 }, 2);
	}
	/* A few bytes prepare their whole granule, its contents unchanged
	 * (granule 8 was populated at setup, 9 never). */
	T_OK(fl_watch_prepare_write(e.w, e.mem + 8 * e.g + 10, 3));
	T_OK(fl_watch_prepare_write(e.w, e.mem + 9 * e.g + e.g - 1, 1));
	T_ASSERT_EQ(e.mem[8 * e.g + 1], 1);
	T_ASSERT_EQ(e.mem[9 * e.g + 1], 0);
	expect(&e, FL_WATCH_RESET, (int[]){ 8, 9 }, 2);
	/* The application made granule 12 read-only: a prepare over 11-12
	 * is refused whole, as the kernel's write would be. */
	T_OK(fl_watch_protect(e.w, e.mem + 12 * e.g, e.g, PROT_READ));
	T_ASSERT_EQ(fl_watch_prepare_write(e.w, e.mem + 11 * e.g, 2 * e.g), -EACCES);
	expect(&e, 0, NULL, 0);
	T_OK(fl_watch_protect(e.w, e.mem + 12 * e.g, e.g, PROT_READ | PROT_WRITE));
	T_ASSERT_EQ(fl_watch_prepare_write(e.w, e.mem + e.len - 1, 2), -EINVAL);
	T_ASSERT_EQ(fl_watch_prepare_write(e.w, e.mem - 1, 2), -EINVAL);
	T_ASSERT_EQ(fl_watch_prepare_write(e.w, e.mem, 0), -EINVAL);
	T_ASSERT_EQ(fl_watch_prepare_write(NULL, e.mem, 1), -EINVAL);
	expect(&e, 0, NULL, 0);
	fl_watch_free(e.w);
	free(src);
	return T_PASS;
}

/* How another process writes into the watched memory. */
enum rwrite {
	RW_PROC_MEM,	/* pwrite(2) to /proc/PID/mem */
	RW_POKEDATA,	/* PTRACE_POKEDATA from a tracer (WriteProcessMemory) */
};

/* In a child: write 0x5a bytes at a and b in `target`; exits 0 when both
 * land, 100 + errno when both fail alike, 2 when they differ, 3 when the
 * child cannot reach the target at all. */
static void remote_child(enum rwrite via, pid_t target, uint8_t *a, uint8_t *b)
{
	uint8_t buf[sizeof(long)];
	int ea = 0, eb = 0;

	memset(buf, 0x5a, sizeof(buf));
	if (via == RW_PROC_MEM) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)target);
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			_exit(3);
		ea = pwrite(fd, buf, sizeof(buf), (off_t)(uintptr_t)a) == (ssize_t)sizeof(buf) ? 0 : errno;
		eb = pwrite(fd, buf, sizeof(buf), (off_t)(uintptr_t)b) == (ssize_t)sizeof(buf) ? 0 : errno;
	} else {
		long word;
		int st;
		memcpy(&word, buf, sizeof(word));
		/* SEIZE + INTERRUPT stops only the target thread (an ATTACH's
		 * SIGSTOP would group-stop the watch's service thread too, and
		 * leave it stopped after the detach). */
		if (ptrace(PTRACE_SEIZE, target, 0, 0) || ptrace(PTRACE_INTERRUPT, target, 0, 0) ||
		    waitpid(target, &st, __WALL) != target)
			_exit(3);
		ea = ptrace(PTRACE_POKEDATA, target, a, word) ? errno : 0;
		eb = ptrace(PTRACE_POKEDATA, target, b, word) ? errno : 0;
		ptrace(PTRACE_DETACH, target, 0, 0);
	}
	_exit(!ea && !eb ? 0 : ea && ea == eb && ea < 100 ? 100 + ea : 2);
}

/* A second process writes into the watched memory (what a debugger or an
 * emulator's WriteProcessMemory does). */
static int test_remote_write(void *arg, enum rwrite via)
{
	const struct wcase *c = arg;
	struct env e;
	struct fl_watch_info info = { .sz = sizeof(info) };
	pid_t self = getpid(), child;
	int status;

	setup(c, &e);
	T_OK(fl_watch_query(e.w, &info));
	T_ASSERT_EQ(info.remote_writes, expected_remote_fate(c));
	/* Where Yama restricts ptrace to descendants, let the child in. */
	(void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
	child = fork();
	T_ASSERT(child >= 0);
	/* One populated granule (6) and one never touched (7). */
	if (child == 0)
		remote_child(via, self, e.mem + 6 * e.g + 64, e.mem + 7 * e.g + 64);
	T_OK(t_wait_pid(child, 20000, &status));
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) != 3, "child could not reach the parent: %d", status);
	switch (info.remote_writes) {
	case FL_WATCH_COUNTED:
		T_ASSERT_EQ(WEXITSTATUS(status), 0);
		T_ASSERT_EQ(e.mem[6 * e.g + 64], 0x5a);
		T_ASSERT_EQ(e.mem[7 * e.g + 64], 0x5a);
		expect(&e, 0, (int[]){ 6, 7 }, 2);
		break;
	case FL_WATCH_FAILS:
		/* The errno fl_watch_query(3) documents for a remote write. */
		T_ASSERT(WEXITSTATUS(status) == 100 + EIO, "child status %d, expected both EIO", WEXITSTATUS(status));
		T_ASSERT_EQ(e.mem[6 * e.g + 64], 0);
		T_ASSERT_EQ(e.mem[7 * e.g + 64], 0);
		expect(&e, 0, NULL, 0);
		break;
	default:
		/* Declared: the write is not reported. It lands, except on
		 * private hugetlb under kernels that refuse a forced write
		 * there (Linux 6.0 to at least 6.1 disallow FOLL_FORCE |
		 * FOLL_WRITE on hugetlb: EIO, nothing written). */
		if (c->kind == K_PRIVATE_HUGE && WEXITSTATUS(status) == 100 + EIO) {
			T_ASSERT_EQ(e.mem[6 * e.g + 64], 0);
			T_ASSERT_EQ(e.mem[7 * e.g + 64], 0);
		} else {
			T_ASSERT_EQ(WEXITSTATUS(status), 0);
			T_ASSERT_EQ(e.mem[6 * e.g + 64], 0x5a);
			T_ASSERT_EQ(e.mem[7 * e.g + 64], 0x5a);
		}
		expect(&e, 0, NULL, 0);
		break;
	}
	fl_watch_free(e.w);
	return T_PASS;
}

static int test_remote_proc_mem(void *arg)
{
	return test_remote_write(arg, RW_PROC_MEM);
}

static int test_remote_poke(void *arg)
{
	return test_remote_write(arg, RW_POKEDATA);
}

static int test_kernel_pipe(void *arg)
{
	return test_kernel_write(arg, KW_PIPE);
}

static int test_kernel_file(void *arg)
{
	return test_kernel_write(arg, KW_FILE);
}

static int test_kernel_socket(void *arg)
{
	return test_kernel_write(arg, KW_SOCKET);
}

static int test_kernel_pvwritev(void *arg)
{
	return test_kernel_write(arg, KW_PVWRITEV);
}

static int test_kernel_pvwritev_child(void *arg)
{
	return test_kernel_write(arg, KW_PVWRITEV_CHILD);
}

static int test_spanning(void *arg)
{
	struct env e;
	uint64_t v = 0x1122334455667788ull;

	setup(arg, &e);
	/* One unaligned 8-byte store across the boundary of granules 2 and 3. */
	memcpy(e.mem + 3 * e.g - 4, &v, sizeof(v));
	expect(&e, 0, (int[]){ 2, 3 }, 2);
	fl_watch_free(e.w);
	return T_PASS;
}

static int test_mprotect(void *arg)
{
	const struct wcase *c = arg;
	struct env e;

	setup(c, &e);
	e.mem[1 * e.g] = 1;
	T_ASSERT(mprotect(e.mem, e.len, PROT_READ) == 0);
	T_ASSERT(mprotect(e.mem, e.len, PROT_READ | PROT_WRITE) == 0);
	e.mem[2 * e.g] = 1;
	if (c->backend == FL_WATCH_MPROTECT) {
		/* Documented limit: making the pages writable loses their
		 * tracking; what was recorded before stays. */
		expect(&e, 0, (int[]){ 1 }, 1);
	} else {
		expect(&e, FL_WATCH_RESET, (int[]){ 1, 2 }, 2);
		/* Clean pages are still caught after the round trip. */
		e.mem[6 * e.g] = 1;
		expect(&e, 0, (int[]){ 6 }, 1);
	}
	fl_watch_free(e.w);
	return T_PASS;
}

/*
 * Discards change contents: MADV_DONTNEED (and MADV_REMOVE on shared
 * memory) count as writes, before and after a reset, on every memory type.
 * MPROTECT cannot see them (no event reaches it): documented, it reports
 * the page when it is next written.
 */
static int test_dontneed(void *arg)
{
	const struct wcase *c = arg;
	struct env e;
	bool shared = is_shared(c);

	setup(c, &e);
	/* Written, then discarded: still written. */
	e.mem[2 * e.g + 1] = 9;
	T_ASSERT(madvise(e.mem + 2 * e.g, e.g, MADV_DONTNEED) == 0);
	e.mem[4 * e.g + 1] = 9;
	expect(&e, FL_WATCH_RESET, (int[]){ 2, 4 }, 2);
	/* Clean, then discarded: now written (its contents are zeros). */
	T_ASSERT(madvise(e.mem + 4 * e.g, e.g, MADV_DONTNEED) == 0);
	if (shared) {
		T_ASSERT(madvise(e.mem + 8 * e.g, e.g, MADV_REMOVE) == 0);
		T_ASSERT_EQ(e.mem[8 * e.g + 1], 0);
	}
	if (c->backend == FL_WATCH_MPROTECT) {
		/* Documented: seen only when next written. */
		expect(&e, 0, NULL, 0);
		e.mem[4 * e.g] = 1;
		if (shared)
			e.mem[8 * e.g] = 1;
	}
	expect(&e, FL_WATCH_RESET, (int[]){ 4, 8 }, shared ? 2 : 1);
	expect(&e, 0, NULL, 0);
	/* Discarded pages are caught when written again after the reset. */
	e.mem[4 * e.g + 3] = 1;
	expect(&e, 0, (int[]){ 4 }, 1);
	fl_watch_free(e.w);
	return T_PASS;
}

/* Private hugetlb (MAP_PRIVATE | MAP_HUGETLB): a discard after a reset
 * turns the contents to zeros, which must be reported. */
static int test_dontneed_private_huge(void *arg)
{
	const struct wcase *c = arg;
	struct fl_watch_opts o = { .sz = sizeof(o), .backend = c->backend };
	size_t g = t_page_size(FL_MEM_HUGETLB), len = 8 * g;
	struct env e = { .g = g, .len = len };

	require_backend(c);
	if (c->nobody)
		t_drop_privileges();
	t_need_huge(len);
	e.mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	T_ASSERT(e.mem != MAP_FAILED, "mmap: %s", strerror(errno));
	e.len = len;
	for (size_t i = 0; i < 8; i++)
		e.mem[i * g] = 1;
	T_OK(fl_watch_new(e.mem, len, &o, &e.w));
	e.mem[3 * g + 5] = 7;
	T_ASSERT(madvise(e.mem + 1 * g, g, MADV_DONTNEED) == 0);
	T_ASSERT(madvise(e.mem + 3 * g, g, MADV_DONTNEED) == 0);
	T_ASSERT_EQ(e.mem[1 * g], 0);
	void *pages[8];
	uint64_t n = 8;
	T_OK(fl_watch_get(e.w, e.mem, len, FL_WATCH_RESET, pages, &n, NULL));
	if (c->backend == FL_WATCH_MPROTECT) {
		/* Documented: a discard is seen only when next written. */
		T_ASSERT_EQ(n, 1);
		T_ASSERT(pages[0] == e.mem + 3 * g);
	} else {
		T_ASSERT_EQ(n, 2);
		T_ASSERT(pages[0] == e.mem + 1 * g && pages[1] == e.mem + 3 * g);
	}
	n = 8;
	T_OK(fl_watch_get(e.w, e.mem, len, 0, pages, &n, NULL));
	T_ASSERT_EQ(n, 0);
	fl_watch_free(e.w);
	munmap(e.mem, len);
	return T_PASS;
}

/* ---- the application's own protection (VirtualProtect) ------------------ */

static sigjmp_buf app_jmp;
static volatile sig_atomic_t app_faults;
static volatile uintptr_t app_lo, app_hi;	/* the page whose protection the application owns now */
static struct sigaction app_prev;

/* The application's SIGSEGV handler: owns the faults on the page it is
 * probing, passes every other one to the handler it replaced (the
 * watch's, when installed after the watch), as fl_watch_new(3) asks. */
static void app_handler(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;

	if (a >= app_lo && a < app_hi) {
		app_lo = app_hi = 0;
		app_faults++;
		siglongjmp(app_jmp, 1);
	}
	if ((app_prev.sa_flags & SA_SIGINFO) && app_prev.sa_sigaction)
		app_prev.sa_sigaction(sig, si, uc);
	else
		signal(sig, SIG_DFL);
}

static void app_install(void)
{
	struct sigaction sa = { .sa_sigaction = app_handler, .sa_flags = SA_SIGINFO | SA_NODEFER };
	sigemptyset(&sa.sa_mask);
	T_ASSERT(sigaction(SIGSEGV, &sa, &app_prev) == 0);
}

/* Access *p (write if `write`); true when the application's handler got
 * the fault instead. */
static bool faults(volatile uint8_t *p, bool write)
{
	int before = app_faults;

	app_lo = (uintptr_t)p & ~(uintptr_t)4095;
	app_hi = app_lo + 4096;
	if (sigsetjmp(app_jmp, 1) == 0) {
		if (write)
			*p = 0x77;
		else
			(void)*p;
	}
	app_lo = app_hi = 0;
	return app_faults != before;
}

/* An access the application does not expect to fault: should it reach
 * the application's handler anyway, that counts as a fault (the handler
 * is then told it owns the page). */
static bool faults_unowned(volatile uint8_t *p, bool write)
{
	int before = app_faults;

	if (sigsetjmp(app_jmp, 1) == 0) {
		if (write)
			*p = 0x77;
		else
			(void)*p;
	}
	return app_faults != before;
}

static int test_app_protect(void *arg)
{
	const struct wcase *c = arg;
	struct env e;

	if (!c->handler_after)
		app_install();
	setup(c, &e);
	if (c->handler_after)
		app_install();
	/* mprotect(2) behind the watch's back: a read of a PROT_NONE page is
	 * the application's fault, not a write. */
	T_ASSERT(mprotect(e.mem + 3 * e.g, e.g, PROT_NONE) == 0);
	T_ASSERT(faults(e.mem + 3 * e.g, false), "read of a PROT_NONE page did not fault");
	T_OK(fl_watch_protect(e.w, e.mem + 3 * e.g, e.g, PROT_READ | PROT_WRITE));
	/* A written page made read-only: a write faults to the application. */
	e.mem[4 * e.g] = 1;
	T_ASSERT(mprotect(e.mem + 4 * e.g, e.g, PROT_READ) == 0);
	T_ASSERT(faults(e.mem + 4 * e.g, true), "write to a PROT_READ page did not fault");
	T_OK(fl_watch_protect(e.w, e.mem + 4 * e.g, e.g, PROT_READ | PROT_WRITE));
	/* Through the hook, clean pages too. */
	T_OK(fl_watch_protect(e.w, e.mem + 6 * e.g, 2 * e.g, PROT_READ));
	T_ASSERT(faults(e.mem + 6 * e.g, true), "write to a PROT_READ page did not fault");
	T_ASSERT(!faults_unowned(e.mem + 7 * e.g, false), "read of a PROT_READ page faulted");
	T_OK(fl_watch_protect(e.w, e.mem + 6 * e.g, e.g, PROT_NONE));
	T_ASSERT(faults(e.mem + 6 * e.g, false), "read of a PROT_NONE page did not fault");
	expect(&e, 0, (int[]){ 4 }, 1);
	T_OK(fl_watch_protect(e.w, e.mem + 6 * e.g, 2 * e.g, PROT_READ | PROT_WRITE));
	T_ASSERT(!faults_unowned(e.mem + 6 * e.g, true), "write after VirtualProtect faulted");
	/* The watch's own faults never reach the application. */
	T_ASSERT(!faults_unowned(e.mem + 9 * e.g, true), "a watch write reached the application");
	expect(&e, FL_WATCH_RESET, (int[]){ 4, 6, 9 }, 3);
	T_ASSERT_EQ(e.mem[6 * e.g], 0x77);
	/* Written then read-only through the hook: still reported, and a
	 * write faults. */
	e.mem[10 * e.g] = 1;
	T_OK(fl_watch_protect(e.w, e.mem + 10 * e.g, e.g, PROT_READ));
	T_ASSERT(faults(e.mem + 10 * e.g, true), "write to a PROT_READ page did not fault");
	expect(&e, 0, (int[]){ 10 }, 1);
	fl_watch_free(e.w);
	/* The watch is gone; the application's handler still works, and its
	 * pages have the protection it set. */
	T_ASSERT(faults(e.mem + 10 * e.g, true), "PROT_READ lost at fl_watch_free");
	T_ASSERT(!faults_unowned(e.mem + 11 * e.g, true), "a page left protected");
	T_ASSERT(mprotect(e.mem, e.g, PROT_NONE) == 0);
	T_ASSERT(faults(e.mem, false), "application handler gone");
	return T_PASS;
}

/*
 * MPROTECT and a plain mprotect(2) on *clean* pages, the limit
 * fl_watch_protect(3) documents: a read of a page made PROT_NONE is told
 * apart (the application's); a write to a page made PROT_READ cannot be
 * (it looks like the watch's own protection), so it lands and is
 * reported. The same through fl_watch_protect() reaches the application.
 */
static int test_mprotect_plain(void *arg)
{
	const struct wcase *c = arg;
	struct env e;

	app_install();
	setup(c, &e);
#if defined(__x86_64__)
	/* Documented for x86-64, where the handler reads the fault's error
	 * code; elsewhere such a read is taken as a write. */
	T_ASSERT(mprotect(e.mem + 3 * e.g, e.g, PROT_NONE) == 0);
	T_ASSERT(faults(e.mem + 3 * e.g, false), "read of a PROT_NONE page did not reach the application");
#endif
	T_ASSERT(mprotect(e.mem + 5 * e.g, e.g, PROT_READ) == 0);
	T_ASSERT(!faults_unowned(e.mem + 5 * e.g, true), "documented: taken as a watch write");
	T_ASSERT_EQ(e.mem[5 * e.g], 0x77);
	expect(&e, FL_WATCH_RESET, (int[]){ 5 }, 1);
	/* Through the hook the application's protection is known. */
	T_OK(fl_watch_protect(e.w, e.mem + 7 * e.g, e.g, PROT_READ));
	T_ASSERT(faults(e.mem + 7 * e.g, true), "write to a PROT_READ page did not reach the application");
	T_ASSERT_EQ(e.mem[7 * e.g], 0);
	T_OK(fl_watch_protect(e.w, e.mem + 9 * e.g, e.g, PROT_NONE));
	T_ASSERT(faults(e.mem + 9 * e.g, true), "write to a PROT_NONE page did not reach the application");
	T_ASSERT(faults(e.mem + 9 * e.g, false), "read of a PROT_NONE page did not reach the application");
	expect(&e, 0, NULL, 0);
	fl_watch_free(e.w);
	return T_PASS;
}

/* ---- a range over several VMAs ------------------------------------------------ */

/*
 * The watched range is split into three VMAs (MADV_DONTFORK on its middle
 * changes the flags there) before the watch is made and between resets:
 * before Linux 6.4 UFFDIO_WRITEPROTECT fails with ENOENT over several
 * VMAs, and every write went unseen.
 */
static int test_split_vmas(void *arg)
{
	const struct wcase *c = arg;
	struct fl_watch_opts o = { .sz = sizeof(o), .backend = c->backend, .log = t_log_cb };
	struct env e;

	require_backend(c);
	if (c->nobody)
		t_drop_privileges();
	e.g = t_page_size(c->mem);
	e.len = NG * e.g;
	e.mem = t_map(c->mem, e.len, NULL);
	for (size_t i = 0; i < NG; i += 2)
		e.mem[i * e.g + 1] = 1;
	T_ASSERT(madvise(e.mem + 16 * e.g, 16 * e.g, MADV_DONTFORK) == 0);
	T_OK(fl_watch_new(e.mem, e.len, &o, &e.w));
	expect(&e, 0, NULL, 0);
	e.mem[3 * e.g] = 1;		/* first VMA, populated before */
	e.mem[17 * e.g + 5] = 2;	/* second, never populated */
	e.mem[40 * e.g] = 3;		/* third, populated before */
	expect(&e, 0, (int[]){ 3, 17, 40 }, 3);
	/* A reset over the whole range: all three VMAs protected again. */
	T_OK(fl_watch_reset(e.w, e.mem, e.len));
	expect(&e, 0, NULL, 0);
	e.mem[3 * e.g + 1] = 4;
	e.mem[20 * e.g] = 5;
	e.mem[41 * e.g] = 6;
	expect(&e, 0, (int[]){ 3, 20, 41 }, 3);
	fl_watch_free(e.w);
	return T_PASS;
}

/* ---- reserved memory (PROT_NONE, committed later) ------------------------ */

static int test_reserved(void *arg)
{
	const struct wcase *c = arg;
	struct fl_watch_opts o = { .sz = sizeof(o), .backend = c->backend };
	struct env e;

	require_backend(c);
	if (c->nobody)
		t_drop_privileges();
	e.g = t_page_size(c->mem);
	e.len = NG * e.g;
	e.mem = t_map(c->mem, e.len, NULL);
	T_ASSERT(mprotect(e.mem, e.len, PROT_NONE) == 0);
	T_OK(fl_watch_new(e.mem, e.len, &o, &e.w));
	/* Commit part of it (VirtualAlloc MEM_COMMIT); the rest stays reserved. */
	T_OK(fl_watch_protect(e.w, e.mem + 8 * e.g, 16 * e.g, PROT_READ | PROT_WRITE));
	expect(&e, 0, NULL, 0);
	e.mem[9 * e.g] = 1;
	e.mem[20 * e.g + 100] = 2;
	volatile uint8_t sink = e.mem[12 * e.g];
	(void)sink;
	expect(&e, FL_WATCH_RESET, (int[]){ 9, 20 }, 2);
	e.mem[9 * e.g + 1] = 3;
	expect(&e, 0, (int[]){ 9 }, 1);
	if (c->backend != FL_WATCH_MPROTECT) {
		/* On the userfaultfd backends a plain mprotect(2) commits too. */
		T_ASSERT(mprotect(e.mem + 30 * e.g, e.g, PROT_READ | PROT_WRITE) == 0);
		e.mem[30 * e.g] = 1;
		expect(&e, 0, (int[]){ 9, 30 }, 2);
	}
	fl_watch_free(e.w);
	return T_PASS;
}

static int test_free_restores(void *arg)
{
	struct env e;

	setup(arg, &e);
	for (int i = 0; i < NG; i += 3)
		e.mem[i * e.g + 7] = (uint8_t)i;
	fl_watch_free(e.w);
	/* Contents intact, and writable without anyone watching. */
	for (int i = 0; i < NG; i++) {
		T_ASSERT_EQ(e.mem[i * e.g + 7], i % 3 == 0 ? i : 0);
		T_ASSERT_EQ(e.mem[i * e.g + 1], i % 2 == 0 ? 1 : 0);
		e.mem[i * e.g + 8] = 1;
	}
	return T_PASS;
}

/* ---- concurrency: no write lost between report and re-protect ---------- */

#define CW 4
#define CPAGES 4096

struct conc {
	uint8_t *mem;
	_Atomic bool stop;
	_Atomic uint8_t written[CPAGES];
	_Atomic uint8_t reported[CPAGES];
	struct fl_watch *w;
};

static void *conc_writer(void *arg)
{
	struct conc *c = arg;
	uint64_t x = (uint64_t)(uintptr_t)pthread_self() | 1;

	for (int i = 0; i < 20000 && !atomic_load(&c->stop); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t p = x % CPAGES;
		/* Record first, then write: a report can never come before the record. */
		atomic_store(&c->written[p], 1);
		c->mem[p * 4096 + (x >> 40) % 4096] = (uint8_t)x;
	}
	return NULL;
}

static void conc_collect(struct conc *c, unsigned flags)
{
	static void *pages[CPAGES];
	uint64_t n = 97;	/* small on purpose: many partial resets */

	do {
		n = 97;
		T_OK(fl_watch_get(c->w, c->mem, CPAGES * 4096, flags, pages, &n, NULL));
		for (uint64_t i = 0; i < n; i++) {
			size_t p = (size_t)((uint8_t *)pages[i] - c->mem) / 4096;
			T_ASSERT(atomic_load(&c->written[p]), "page %zu reported but never written", p);
			atomic_store(&c->reported[p], 1);
		}
	} while (n == 97);
}

static int test_concurrent(void *arg)
{
	const struct wcase *wc = arg;
	struct conc *c = calloc(1, sizeof(*c));
	struct fl_watch_opts o = { .sz = sizeof(o), .backend = wc->backend };
	pthread_t th[CW];

	require_backend(wc);
	if (wc->nobody)
		t_drop_privileges();
	c->mem = t_map(FL_MEM_ANON, CPAGES * 4096, NULL);
	T_OK(fl_watch_new(c->mem, CPAGES * 4096, &o, &c->w));
	for (int i = 0; i < CW; i++)
		T_ASSERT(pthread_create(&th[i], NULL, conc_writer, c) == 0);
	for (int round = 0; round < 200; round++)
		conc_collect(c, FL_WATCH_RESET);
	for (int i = 0; i < CW; i++)
		pthread_join(th[i], NULL);
	conc_collect(c, FL_WATCH_RESET);
	for (size_t p = 0; p < CPAGES; p++)
		T_ASSERT(atomic_load(&c->written[p]) == atomic_load(&c->reported[p]),
			 "page %zu: written %d, reported %d", p, c->written[p], c->reported[p]);
	fl_watch_free(c->w);
	return T_PASS;
}

/* ---- the same script on every backend ------------------------------------- */

static int test_same_answers(void *arg)
{
	const struct wcase *wc = arg;
	static const enum fl_watch_backend all[] = { FL_WATCH_ASYNC, FL_WATCH_SYNC, FL_WATCH_MPROTECT };
	bool answers[3][5][NG];
	bool shared = is_shared(wc);
	int nb = 0;

	if (wc->nobody)
		t_drop_privileges();
	for (int b = 0; b < 3; b++) {
		struct wcase c = *wc;
		struct env e;
		struct fl_watch_opts o = { .sz = sizeof(o), .backend = all[b] };

		c.backend = all[b];
		if (!t_has(t_needs_features(BACKEND_NEEDS(all[b], c.mem) & ~T_HUGE_PAGES)))
			continue;
		e.g = t_page_size(c.mem);
		e.len = NG * e.g;
		e.mem = wmap(&c, e.len);
		for (size_t i = 0; i < NG; i += 5)
			e.mem[i * e.g] = 1;
		T_OK(fl_watch_new(e.mem, e.len, &o, &e.w));
		/* Step 1: scattered writes, get with reset. */
		for (int i = 0; i < NG; i += 7)
			e.mem[i * e.g + 11] = 2;
		get_set(&e, FL_WATCH_RESET, answers[nb][0]);
		/* Step 2: more writes, a partial reset, get without reset. */
		for (int i = 1; i < NG; i += 3)
			e.mem[i * e.g + 12] = 3;
		T_OK(fl_watch_reset(e.w, e.mem, 16 * e.g));
		get_set(&e, 0, answers[nb][1]);
		/* Step 3: spanning store and a rewrite, get with reset. */
		memcpy(e.mem + 40 * e.g - 2, "abcd", 4);
		get_set(&e, FL_WATCH_RESET, answers[nb][2]);
		/* Step 4: MADV_DONTNEED of a written and of a clean (reset)
		 * granule. MPROTECT sees a discard only at the next write
		 * (documented): its answer is checked against that, the others
		 * against each other. */
		e.mem[50 * e.g + 1] = 4;
		T_ASSERT(madvise(e.mem + 50 * e.g, e.g, MADV_DONTNEED) == 0);
		T_ASSERT(madvise(e.mem + 45 * e.g, e.g, MADV_DONTNEED) == 0);
		/* On a shared mapping MADV_DONTNEED only drops the page table
		 * entries: the contents stay, and the report is an over-report
		 * (fl_watch_new(3)); private memory reads zeros. */
		T_ASSERT_EQ(e.mem[45 * e.g], shared ? 1 : 0);
		get_set(&e, FL_WATCH_RESET, answers[nb][3]);
		for (int i = 0; i < NG; i++)
			T_ASSERT(answers[nb][3][i] == (i == 50 || (i == 45 && all[b] != FL_WATCH_MPROTECT)),
				 "%s step 4: granule %d reported %d", backend_name(all[b]), i, answers[nb][3][i]);
		/* Step 5 (shared memory): MADV_REMOVE of a written and of a
		 * clean granule; both are zeros now, in every mapping. */
		memset(answers[nb][4], 0, sizeof(answers[nb][4]));
		if (shared) {
			e.mem[55 * e.g + 1] = 5;
			T_ASSERT(madvise(e.mem + 55 * e.g, e.g, MADV_REMOVE) == 0);
			T_ASSERT(madvise(e.mem + 58 * e.g, e.g, MADV_REMOVE) == 0);
			T_ASSERT_EQ(e.mem[55 * e.g + 1], 0);
			get_set(&e, FL_WATCH_RESET, answers[nb][4]);
			for (int i = 0; i < NG; i++)
				T_ASSERT(answers[nb][4][i] == (i == 55 || (i == 58 && all[b] != FL_WATCH_MPROTECT)),
					 "%s step 5: granule %d reported %d", backend_name(all[b]), i,
					 answers[nb][4][i]);
		}
		fl_watch_free(e.w);
		munmap(e.mem, e.len);
		if (nb)
			for (int s = 0; s < (all[b] == FL_WATCH_MPROTECT ? 3 : 5); s++)
				T_ASSERT(memcmp(answers[nb][s], answers[0][s], sizeof(answers[0][s])) == 0,
					 "%s differs from %s at step %d", backend_name(all[b]),
					 backend_name(all[0]), s + 1);
		nb++;
	}
	T_ASSERT(nb >= 2, "fewer than two backends to compare");
	return T_PASS;
}

/* ---- the manager: many ranges, one uffd, at most one thread ------------- */

static int count_threads(void)
{
	char path[64];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)getpid());
	DIR *d = opendir(path);
	T_ASSERT(d);
	for (struct dirent *de; (de = readdir(d));)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Open fds whose link contains `what` (NULL: all of them). */
static int count_fds(const char *what)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	T_ASSERT(d);
	for (struct dirent *de; (de = readdir(d));) {
		char link[256], path[300];
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		ssize_t r = readlink(path, link, sizeof(link) - 1);
		if (r > 0) {
			link[r] = 0;
			n += !what || strstr(link, what) != NULL;
		}
	}
	closedir(d);
	return n;
}

static int count_uffds(void)
{
	return count_fds("userfaultfd");
}

/* Indices of granules written in [from, from + n) granules of mem, via the manager. */
static uint64_t mgr_set(struct fl_watch_manager *m, uint8_t *mem, size_t g, int from, int n, unsigned flags,
			bool *seen)
{
	void *pages[NG];
	uint64_t cnt = NG;

	T_OK(fl_watch_manager_get(m, mem + (size_t)from * g, (size_t)n * g, flags, pages, &cnt, NULL));
	memset(seen, 0, NG * sizeof(bool));
	for (uint64_t i = 0; i < cnt; i++) {
		size_t off = (size_t)((uint8_t *)pages[i] - mem);
		T_ASSERT(off % g == 0 && off / g < NG, "bad page %p", pages[i]);
		if (i)
			T_ASSERT(pages[i] > pages[i - 1], "not ascending");
		seen[off / g] = true;
	}
	return cnt;
}

static void mgr_expect(struct fl_watch_manager *m, uint8_t *mem, size_t g, int from, int n, unsigned flags,
		       const int *idx, size_t k)
{
	bool seen[NG], want[NG] = { false };
	for (size_t i = 0; i < k; i++)
		want[idx[i]] = true;
	uint64_t got = mgr_set(m, mem, g, from, n, flags, seen);
	for (int i = 0; i < NG; i++)
		T_ASSERT(seen[i] == want[i], "granule %d: reported %d, expected %d", i, seen[i], want[i]);
	T_ASSERT_EQ(got, k);
}

static int test_manager(void *arg)
{
	const struct wcase *c = arg;
	struct fl_watch_manager_opts o = { .sz = sizeof(o), .backend = c->backend, .log = t_log_cb };
	struct fl_watch_manager *m;
	size_t g = t_page_size(c->mem);
	uint8_t *mem;
	void *pages[NG];
	uint64_t n = NG;
	int threads, uffds;

	require_backend(c);
	if (c->nobody)
		t_drop_privileges();
	mem = t_map(c->mem, NG * g, NULL);
	for (int i = 0; i < NG; i += 2)
		mem[i * g + 1] = 1;
	threads = count_threads();
	uffds = count_uffds();
	T_OK(fl_watch_manager_new(&o, &m));
	T_ASSERT_EQ(fl_watch_manager_backend(m), c->backend);
	/* Ranges [0, 8) and [8, 16) adjacent, [20, 30) apart, [40, 64). */
	T_OK(fl_watch_manager_add(m, mem, 8 * g));
	T_OK(fl_watch_manager_add(m, mem + 8 * g, 8 * g));
	T_OK(fl_watch_manager_add(m, mem + 20 * g, 10 * g));
	T_OK(fl_watch_manager_add(m, mem + 40 * g, 24 * g));
	T_ASSERT_EQ(fl_watch_manager_add(m, mem + 6 * g, 4 * g), -EBUSY);
	T_ASSERT_EQ(fl_watch_manager_add(m, mem + 29 * g, 2 * g), -EBUSY);
	/* One uffd and at most one thread for all of them. */
	T_ASSERT(count_uffds() - uffds <= (c->backend == FL_WATCH_MPROTECT ? 0 : 1), "uffds: %d", count_uffds() - uffds);
	T_ASSERT(count_threads() - threads <= (c->backend == FL_WATCH_MPROTECT ? 0 : 1), "threads: %d",
		 count_threads() - threads);
	mgr_expect(m, mem, g, 0, 16, 0, NULL, 0);
	static const int w1[] = { 3, 7, 8, 9, 15, 21, 29, 45 };
	for (size_t i = 0; i < 8; i++)
		mem[w1[i] * g + 100] = 7;
	/* A get across two adjacent ranges, then each range alone. */
	mgr_expect(m, mem, g, 0, 16, 0, w1, 5);
	mgr_expect(m, mem, g, 20, 10, FL_WATCH_RESET, (int[]){ 21, 29 }, 2);
	mgr_expect(m, mem, g, 20, 10, 0, NULL, 0);
	/* Gaps and unwatched memory. */
	T_ASSERT_EQ(fl_watch_manager_get(m, mem, 20 * g, 0, pages, &n, NULL), -EINVAL);
	T_ASSERT_EQ(fl_watch_manager_get(m, mem + 16 * g, g, 0, pages, &n, NULL), -EINVAL);
	n = 0;
	T_ASSERT_EQ(fl_watch_manager_get(m, mem, g, 0, pages, &n, NULL), -EINVAL);
	/* A count-limited get+reset across ranges resets exactly what it returned. */
	n = 3;
	T_OK(fl_watch_manager_get(m, mem, 16 * g, FL_WATCH_RESET, pages, &n, NULL));
	T_ASSERT_EQ(n, 3);
	T_ASSERT(pages[0] == mem + 3 * g && pages[1] == mem + 7 * g && pages[2] == mem + 8 * g);
	mgr_expect(m, mem, g, 0, 16, 0, (int[]){ 9, 15 }, 2);
	/* Remove a sub-range out of the middle of [8, 16): the rest keeps its
	 * state and stays watched; the cut part is plain memory. */
	T_OK(fl_watch_manager_remove(m, mem + 10 * g, 2 * g));
	mem[10 * g + 5] = 1;
	mem[11 * g + 5] = 1;
	T_ASSERT_EQ(fl_watch_manager_get(m, mem + 8 * g, 8 * g, 0, pages, &n, NULL), -EINVAL);
	mgr_expect(m, mem, g, 8, 2, 0, (int[]){ 9 }, 1);
	mgr_expect(m, mem, g, 12, 4, 0, (int[]){ 15 }, 1);
	mem[13 * g] = 1;
	mem[8 * g] = 1;
	mgr_expect(m, mem, g, 12, 4, FL_WATCH_RESET, (int[]){ 13, 15 }, 2);
	mgr_expect(m, mem, g, 0, 10, FL_WATCH_RESET, (int[]){ 8, 9 }, 2);
	/* Remove a range's head, then a span across a range and a gap. */
	T_OK(fl_watch_manager_remove(m, mem + 40 * g, 4 * g));
	mem[41 * g] = 1;
	mgr_expect(m, mem, g, 44, 20, 0, (int[]){ 45 }, 1);
	T_OK(fl_watch_manager_remove(m, mem + 14 * g, 10 * g));	/* [14,16) and [20,24) */
	mem[22 * g] = 1;
	mem[25 * g] = 1;
	mgr_expect(m, mem, g, 24, 6, 0, (int[]){ 25 }, 1);
	T_ASSERT_EQ(fl_watch_manager_remove(m, mem + 16 * g, 4 * g), -ENOENT);
	if (g > 4096)
		T_ASSERT_EQ(fl_watch_manager_remove(m, mem + 24 * g + 4096, 4096), -EINVAL);
	/* Removed whole, then added again: starts clean. */
	T_OK(fl_watch_manager_remove(m, mem + 24 * g, 6 * g));
	T_OK(fl_watch_manager_add(m, mem + 20 * g, 10 * g));
	mgr_expect(m, mem, g, 20, 10, 0, NULL, 0);
	mem[27 * g] = 1;
	mgr_expect(m, mem, g, 20, 10, 0, (int[]){ 27 }, 1);
	/* Kernel writes as the query says. */
	struct fl_watch_info info = { .sz = sizeof(info) };
	T_OK(fl_watch_manager_query(m, &info));
	T_ASSERT_EQ(info.kernel_writes, expected_kernel_fate(c, &info));
	fl_watch_manager_free(m);
	/* Everything writable again. */
	for (int i = 0; i < NG; i++)
		mem[i * g + 9] = 1;
	return T_PASS;
}

/*
 * The manager's reset and protect, and discards seen through its one
 * service thread: the calls a GC (reset one region of its heap) and an
 * emulator (VirtualProtect) make on a range among several.
 */
static int test_manager_ops(void *arg)
{
	const struct wcase *c = arg;
	struct fl_watch_manager_opts o = { .sz = sizeof(o), .backend = c->backend, .log = t_log_cb };
	struct fl_watch_manager *m;
	size_t g = t_page_size(c->mem);
	bool shared = is_shared(c);
	uint8_t *mem;

	require_backend(c);
	if (c->nobody)
		t_drop_privileges();
	app_install();
	mem = wmap(c, NG * g);
	for (int i = 0; i < NG; i += 2)
		mem[i * g + 1] = 1;
	T_OK(fl_watch_manager_new(&o, &m));
	/* [0, 8), [8, 16) adjacent, [20, 30) apart. */
	T_OK(fl_watch_manager_add(m, mem, 8 * g));
	T_OK(fl_watch_manager_add(m, mem + 8 * g, 8 * g));
	T_OK(fl_watch_manager_add(m, mem + 20 * g, 10 * g));
	static const int w1[] = { 2, 5, 9, 14, 21, 28 };
	for (size_t i = 0; i < 6; i++)
		mem[w1[i] * g + 100] = 7;
	/* Resetting one range leaves the others' written pages. */
	T_OK(fl_watch_manager_reset(m, mem + 8 * g, 8 * g));
	mgr_expect(m, mem, g, 0, 16, 0, (int[]){ 2, 5 }, 2);
	mgr_expect(m, mem, g, 20, 10, 0, (int[]){ 21, 28 }, 2);
	/* A reset across two adjacent ranges' boundary, then a write in the
	 * reset part is caught again. */
	T_OK(fl_watch_manager_reset(m, mem + 4 * g, 8 * g));
	mgr_expect(m, mem, g, 0, 16, 0, (int[]){ 2 }, 1);
	mem[9 * g] = 1;
	mgr_expect(m, mem, g, 0, 16, 0, (int[]){ 2, 9 }, 2);
	T_ASSERT_EQ(fl_watch_manager_reset(m, mem + 14 * g, 8 * g), -EINVAL);	/* a gap */
	/* Protect through the manager keeps the watch exact, as
	 * fl_watch_protect(): a written page made read-only stays reported
	 * and a write to it reaches the application; a clean page made
	 * read-only faults to the application and is not reported; once
	 * writable again its write is caught. */
	T_OK(fl_watch_manager_protect(m, mem + 20 * g, 4 * g, PROT_READ));
	T_ASSERT(faults(mem + 21 * g, true), "write to a PROT_READ page did not fault");
	T_ASSERT(faults(mem + 22 * g, true), "write to a PROT_READ page did not fault");
	T_ASSERT(!faults_unowned(mem + 23 * g, false), "read of a PROT_READ page faulted");
	mgr_expect(m, mem, g, 20, 10, 0, (int[]){ 21, 28 }, 2);
	T_OK(fl_watch_manager_protect(m, mem + 20 * g, 4 * g, PROT_NONE));
	T_ASSERT(faults(mem + 23 * g, false), "read of a PROT_NONE page did not fault");
	T_OK(fl_watch_manager_protect(m, mem + 20 * g, 4 * g, PROT_READ | PROT_WRITE));
	T_ASSERT(!faults_unowned(mem + 22 * g, true), "write after protect faulted");
	mgr_expect(m, mem, g, 20, 10, FL_WATCH_RESET, (int[]){ 21, 22, 28 }, 3);
	T_ASSERT_EQ(mem[22 * g], 0x77);
	/* A kernel write across two adjacent ranges' boundary lands once
	 * prepared, and both granules are reported; a gap is refused. */
	{
		int fds[2];
		uint8_t buf[64];
		memset(buf, 0x42, sizeof(buf));
		mgr_expect(m, mem, g, 0, 16, FL_WATCH_RESET, (int[]){ 2, 9 }, 2);
		T_OK(fl_watch_manager_prepare_write(m, mem + 8 * g - 32, sizeof(buf)));
		T_ASSERT(pipe2(fds, O_CLOEXEC) == 0);
		T_ASSERT(write(fds[1], buf, sizeof(buf)) == (ssize_t)sizeof(buf));
		T_ASSERT_EQ(read(fds[0], mem + 8 * g - 32, sizeof(buf)), (ssize_t)sizeof(buf));
		close(fds[0]);
		close(fds[1]);
		T_ASSERT(memcmp(mem + 8 * g - 32, buf, sizeof(buf)) == 0);
		mgr_expect(m, mem, g, 0, 16, 0, (int[]){ 7, 8 }, 2);
		T_ASSERT_EQ(fl_watch_manager_prepare_write(m, mem + 16 * g - 1, 2), -EINVAL);
		T_ASSERT_EQ(fl_watch_manager_prepare_write(m, mem + 17 * g, 1), -EINVAL);
		T_ASSERT_EQ(fl_watch_manager_prepare_write(m, mem, 0), -EINVAL);
		mgr_expect(m, mem, g, 0, 16, FL_WATCH_RESET, (int[]){ 7, 8 }, 2);
		mem[2 * g] = 1;
		mem[9 * g] = 1;
	}
	/* Discards on a clean granule of two ranges (one service thread
	 * for all of them): the uffd backends report them, MPROTECT when
	 * next written (documented). */
	mgr_expect(m, mem, g, 0, 16, FL_WATCH_RESET, (int[]){ 2, 9 }, 2);
	T_ASSERT(madvise(mem + 4 * g, g, MADV_DONTNEED) == 0);
	if (shared)
		T_ASSERT(madvise(mem + 24 * g, g, MADV_REMOVE) == 0);
	else
		T_ASSERT(madvise(mem + 24 * g, g, MADV_DONTNEED) == 0);
	T_ASSERT_EQ(mem[24 * g + 1], 0);
	if (c->backend == FL_WATCH_MPROTECT) {
		mgr_expect(m, mem, g, 0, 16, 0, NULL, 0);
		mgr_expect(m, mem, g, 20, 10, 0, NULL, 0);
		mem[4 * g] = 1;
		mem[24 * g] = 1;
	}
	mgr_expect(m, mem, g, 0, 16, FL_WATCH_RESET, (int[]){ 4 }, 1);
	mgr_expect(m, mem, g, 20, 10, FL_WATCH_RESET, (int[]){ 24 }, 1);
	fl_watch_manager_free(m);
	return T_PASS;
}

/* New memory of kind `mem` at the hole `at` (mmap may put it there). */
static void map_at(enum fl_mem_type mem, uint8_t *at, size_t len)
{
	uint8_t *p = t_map(mem, len, NULL);

	if (p != at) {
		void *q = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, at);
		T_ASSERT(q == at, "mremap: %s", strerror(errno));
	}
}

/* The program unmaps watched memory without telling the manager, maps
 * other memory there and adds it: the manager forgot the unmapped parts
 * (UFFD_EVENT_UNMAP), and kept the rest. */
static int test_manager_unmap(void *arg)
{
	const struct wcase *c = arg;
	struct fl_watch_manager_opts o = { .sz = sizeof(o), .backend = c->backend };
	struct fl_watch_manager *m;
	size_t g = t_page_size(c->mem);
	uint8_t *mem;

	require_backend(c);
	if (c->nobody)
		t_drop_privileges();
	mem = t_map(c->mem, 32 * g, NULL);	/* room for the remaps' huge pages */
	T_OK(fl_watch_manager_new(&o, &m));
	T_OK(fl_watch_manager_add(m, mem, 8 * g));
	T_OK(fl_watch_manager_add(m, mem + 8 * g, 8 * g));
	T_OK(fl_watch_manager_add(m, mem + 20 * g, 4 * g));
	mem[2 * g] = 1;
	mem[13 * g] = 1;
	/* Unmap across both ranges' boundary, and the whole third range. */
	T_ASSERT(munmap(mem + 4 * g, 8 * g) == 0);
	T_ASSERT(munmap(mem + 20 * g, 4 * g) == 0);
	/* Same memory kind again, at the same place. */
	map_at(c->mem, mem + 4 * g, 8 * g);
	T_OK(fl_watch_manager_add(m, mem + 4 * g, 8 * g));
	map_at(c->mem, mem + 20 * g, 4 * g);
	T_OK(fl_watch_manager_add(m, mem + 20 * g, 4 * g));
	/* The kept parts kept their state; the new ranges start clean. */
	mgr_expect(m, mem, g, 0, 16, 0, (int[]){ 2, 13 }, 2);
	mgr_expect(m, mem, g, 20, 4, 0, NULL, 0);
	mem[6 * g] = 1;
	mem[21 * g] = 1;
	mgr_expect(m, mem, g, 0, 16, FL_WATCH_RESET, (int[]){ 2, 6, 13 }, 3);
	mgr_expect(m, mem, g, 20, 4, FL_WATCH_RESET, (int[]){ 21 }, 1);
	fl_watch_manager_free(m);
	return T_PASS;
}

/* Thousands of ranges: removal of every other one, gets over the rest. */
static int test_manager_many(void *arg)
{
	const struct wcase *c = arg;
	struct fl_watch_manager_opts o = { .sz = sizeof(o), .backend = c->backend };
	struct fl_watch_manager *m;
	enum { NR = 2000, RP = 16 };	/* ranges, pages per range */
	size_t rl = RP * 4096;
	uint8_t *mem;
	static void *pages[NR];
	uint64_t n;
	int fds, pagemaps;

	require_backend(c);
	if (c->nobody)
		t_drop_privileges();
	mem = t_map(FL_MEM_ANON, NR * rl, NULL);
	pagemaps = count_fds("pagemap");
	T_OK(fl_watch_manager_new(&o, &m));
	T_OK(fl_watch_manager_add(m, mem, rl));
	fds = count_fds(NULL);
	for (int r = 1; r < NR; r++)
		T_OK(fl_watch_manager_add(m, mem + r * rl, rl));
	/* One uffd, one pagemap fd (ASYNC), whatever the number of ranges. */
	T_ASSERT(count_fds(NULL) == fds, "%d fds more for %d ranges", count_fds(NULL) - fds, NR - 1);
	T_ASSERT(count_fds("pagemap") - pagemaps == (c->backend == FL_WATCH_ASYNC), "pagemap fds: %d",
		 count_fds("pagemap") - pagemaps);
	for (int r = 0; r < NR; r += 3)
		mem[r * rl + (r % RP) * 4096] = 1;
	n = NR;
	T_OK(fl_watch_manager_get(m, mem, NR * rl, FL_WATCH_RESET, pages, &n, NULL));
	T_ASSERT_EQ(n, (NR + 2) / 3);
	for (uint64_t i = 0; i < n; i++)
		T_ASSERT(pages[i] == mem + i * 3 * rl + ((i * 3) % RP) * 4096, "page %llu", (unsigned long long)i);
	for (int r = 1; r < NR; r += 2)
		T_OK(fl_watch_manager_remove(m, mem + r * rl, rl));
	for (int r = 0; r < NR; r++)
		mem[r * rl + 5 * 4096] = 2;	/* removed ones are plain memory now */
	for (int r = 0; r < NR; r += 2) {
		n = 4;
		T_OK(fl_watch_manager_get(m, mem + r * rl, rl, FL_WATCH_RESET, pages, &n, NULL));
		T_ASSERT_EQ(n, 1);
		T_ASSERT(pages[0] == mem + r * rl + 5 * 4096);
	}
	fl_watch_manager_free(m);
	return T_PASS;
}

/* ---- AUTO and bad input --------------------------------------------------------- */

static int test_auto(void *arg)
{
	uint8_t *m = t_map(FL_MEM_ANON, 16 * 4096, NULL);
	struct fl_watch *w;

	(void)arg;
	T_OK(fl_watch_new(m, 16 * 4096, NULL, &w));
	if (t_has(t_needs_features(T_WATCH_ASYNC)))
		T_ASSERT_EQ(fl_watch_backend(w), FL_WATCH_ASYNC);
	else
		T_ASSERT_EQ(fl_watch_backend(w), FL_WATCH_SYNC);
	fl_watch_free(w);
	/* Masked features make an explicit request fail, never silently degrade. */
	if (!t_has(FL_FEATURE_BIT(FL_FEATURE_WP_ASYNC))) {
		struct fl_watch_opts o = { .sz = sizeof(o), .backend = FL_WATCH_ASYNC };
		T_ASSERT_EQ(fl_watch_new(m, 16 * 4096, &o, &w), -EOPNOTSUPP);
	}
	return T_PASS;
}

static int test_bad_input(void *arg)
{
	size_t len = 16 * 4096;
	uint8_t *m = t_map(FL_MEM_ANON, len, NULL);
	struct fl_watch *w;
	void *pages[4];
	uint64_t n = 4;
	int uffd;

	(void)arg;
	T_ASSERT_EQ(fl_watch_new(m + 1, len - 4096, NULL, &w), -EINVAL);
	T_ASSERT_EQ(fl_watch_new(m, 100, NULL, &w), -EINVAL);
	T_ASSERT_EQ(fl_watch_new(NULL, len, NULL, &w), -EINVAL);
	T_ASSERT_EQ(fl_watch_new(m, len, NULL, NULL), -EINVAL);
	struct fl_watch_opts bad = { .sz = sizeof(bad), .backend = (enum fl_watch_backend)9 };
	T_ASSERT_EQ(fl_watch_new(m, len, &bad, &w), -EINVAL);
	/* Memory that can never be written (no VM_MAYWRITE: a shared mapping
	 * of a file opened read-only): nothing to watch. */
	{
		char path[] = "/tmp/fl-watch-ro-XXXXXX";
		int fd = mkstemp(path);
		T_ASSERT(fd >= 0 && ftruncate(fd, 4096) == 0);
		int rofd = open(path, O_RDONLY | O_CLOEXEC);
		unlink(path);
		uint8_t *ro = mmap(NULL, 4096, PROT_READ, MAP_SHARED, rofd, 0);
		T_ASSERT(ro != MAP_FAILED);
		T_ASSERT_EQ(fl_watch_new(ro, 4096, NULL, &w), -EINVAL);
		close(fd);
		close(rofd);
	}
	/* An unmapped hole. */
	T_ASSERT(munmap(m + 8 * 4096, 4096) == 0);
	T_ASSERT_EQ(fl_watch_new(m, len, NULL, &w), -EINVAL);
	T_OK(fl_watch_new(m, 8 * 4096, NULL, &w));
	/* Outside the watch, unaligned, unknown flags. */
	T_ASSERT_EQ(fl_watch_get(w, m + 4 * 4096, 8 * 4096, 0, pages, &n, NULL), -EINVAL);
	T_ASSERT_EQ(fl_watch_get(w, m + 1, 4096, 0, pages, &n, NULL), -EINVAL);
	T_ASSERT_EQ(fl_watch_get(w, m, 4096, 0x80, pages, &n, NULL), -EINVAL);
	T_ASSERT_EQ(fl_watch_get(w, m, 4096, 0, NULL, &n, NULL), -EINVAL);
	T_ASSERT_EQ(fl_watch_reset(w, m, 9 * 4096), -EINVAL);
	T_ASSERT_EQ(fl_watch_reset(NULL, m, 4096), -EINVAL);
	/* Watching twice. */
	{
		struct fl_watch *w2;
		int r = fl_watch_new(m, 8 * 4096, NULL, &w2);
		T_ASSERT_EQ(r, -EBUSY);
	}
	fl_watch_free(w);
	T_ASSERT(fl_watch_free(NULL) == NULL);
	/* A second MPROTECT watch over an MPROTECT-watched range is busy, not
	 * "read-only memory" (the first made it PROT_READ); so is any other. */
	{
		struct fl_watch_opts mo = { .sz = sizeof(mo), .backend = FL_WATCH_MPROTECT };
		struct fl_watch *w1, *w2;
		T_OK(fl_watch_new(m, 8 * 4096, &mo, &w1));
		T_ASSERT_EQ(fl_watch_new(m, 8 * 4096, &mo, &w2), -EBUSY);
		T_ASSERT_EQ(fl_watch_new(m + 4096, 4096, &mo, &w2), -EBUSY);
		T_ASSERT_EQ(fl_watch_new(m, 8 * 4096, NULL, &w2), -EBUSY);
		fl_watch_free(w1);
	}
	/* Bad arguments to the new calls. */
	T_OK(fl_watch_new(m, 8 * 4096, NULL, &w));
	T_ASSERT_EQ(fl_watch_protect(w, m, 4096, 0x100), -EINVAL);
	T_ASSERT_EQ(fl_watch_protect(w, m + 4 * 4096, 8 * 4096, PROT_READ), -EINVAL);
	T_ASSERT_EQ(fl_watch_protect(NULL, m, 4096, PROT_READ), -EINVAL);
	T_ASSERT_EQ(fl_watch_query(w, NULL), -EINVAL);
	T_ASSERT_EQ(fl_watch_query(NULL, &(struct fl_watch_info){ .sz = sizeof(struct fl_watch_info) }), -EINVAL);
	fl_watch_free(w);
	/* A range someone's userfaultfd already handles. */
	uffd = t_uffd(0);
	T_OK(fl_uffd_register(uffd, m, 8 * 4096, FL_REG_MISSING, NULL));
	struct fl_watch_opts so = { .sz = sizeof(so), .backend = FL_WATCH_SYNC };
	T_ASSERT_EQ(fl_watch_new(m, 8 * 4096, &so, &w), -EBUSY);
	close(uffd);
	return T_PASS;
}

/* Every backend on every t_map() memory type, as root and as uid 65534 ("-nobody"). */
#define WCX(b, m, n, a) (&(struct wcase){ b, m, n, a })
#define ALLMEMX(name, fn, b, bn, n, a, sfx)                                                        \
	{ name "-" bn "-anon" sfx, fn, WCX(b, FL_MEM_ANON, n, a), 60, BACKEND_NEEDS(b, FL_MEM_ANON) },    \
	{ name "-" bn "-shmem" sfx, fn, WCX(b, FL_MEM_SHMEM, n, a), 60, BACKEND_NEEDS(b, FL_MEM_SHMEM) }, \
	{ name "-" bn "-hugetlb" sfx, fn, WCX(b, FL_MEM_HUGETLB, n, a), 60, BACKEND_NEEDS(b, FL_MEM_HUGETLB) }
#define ALLBX(name, fn, n, a, sfx)                                                       \
	ALLMEMX(name, fn, FL_WATCH_ASYNC, "async", n, a, sfx), ALLMEMX(name, fn, FL_WATCH_SYNC, "sync", n, a, sfx), \
	ALLMEMX(name, fn, FL_WATCH_MPROTECT, "mprotect", n, a, sfx)
#define ALLBU(name, fn) ALLBX(name, fn, false, false, ""), ALLBX(name, fn, true, false, "-nobody")
/* The two other mappings (enum mkind) of one backend. */
#define WCK(b, m, n, k) (&(struct wcase){ b, m, n, false, k })
#define SHANON(name, fn, b, bn, n, sfx) \
	{ name "-" bn "-shared-anon" sfx, fn, WCK(b, FL_MEM_SHMEM, n, K_SHARED_ANON), 60, BACKEND_NEEDS(b, FL_MEM_SHMEM) }
#define PRIVHUGEK(name, fn, b, bn, n, sfx)                                                          \
	{ name "-" bn "-private-hugetlb" sfx, fn, WCK(b, FL_MEM_HUGETLB, n, K_PRIVATE_HUGE), 60, \
	  BACKEND_NEEDS(b, FL_MEM_HUGETLB) }
/* Every backend on all five mappings, as root and as uid 65534. */
#define MEM5(name, fn, b, bn, n, sfx) \
	ALLMEMX(name, fn, b, bn, n, false, sfx), SHANON(name, fn, b, bn, n, sfx), PRIVHUGEK(name, fn, b, bn, n, sfx)
#define ALLB5X(name, fn, n, sfx) \
	MEM5(name, fn, FL_WATCH_ASYNC, "async", n, sfx), MEM5(name, fn, FL_WATCH_SYNC, "sync", n, sfx), \
	MEM5(name, fn, FL_WATCH_MPROTECT, "mprotect", n, sfx)
#define CONC(b, bn, n, sfx) \
	{ "concurrent-" bn sfx, test_concurrent, WCX(b, FL_MEM_ANON, n, false), 120, BACKEND_NEEDS(b, FL_MEM_ANON) }
#define MANY(b, bn, n, sfx) \
	{ "manager-many-" bn sfx, test_manager_many, WCX(b, FL_MEM_ANON, n, false), 120, BACKEND_NEEDS(b, FL_MEM_ANON) }
/* same-answers runs every backend the kernel has on one mapping. */
#define SAME(mn, m, k, n, sfx, needs) \
	{ "same-answers-" mn sfx, test_same_answers, WCK(FL_WATCH_AUTO, m, n, k), 60, needs }
#define ALLBU5(name, fn) ALLB5X(name, fn, false, ""), ALLB5X(name, fn, true, "-nobody")
#define PRIVHUGE(b, bn, n, sfx) \
	{ "dontneed-" bn "-private-hugetlb" sfx, test_dontneed_private_huge, WCX(b, FL_MEM_HUGETLB, n, false), 60, \
	  BACKEND_NEEDS(b, FL_MEM_HUGETLB) }

static const struct t_case cases[] = {
	ALLBU("basic", test_basic),
	ALLBU("reset-returned", test_reset_returned),
	ALLBU("subrange", test_subrange),
	ALLBU("split-vmas", test_split_vmas),
	ALLBU5("kernel-pipe", test_kernel_pipe),
	ALLBU5("kernel-file", test_kernel_file),
	ALLBU5("kernel-socket", test_kernel_socket),
	ALLBU5("kernel-pvwritev", test_kernel_pvwritev),
	ALLBU5("kernel-pvwritev-child", test_kernel_pvwritev_child),
	ALLBU5("kernel-prepared", test_kernel_prepared),
	ALLBU5("remote-write", test_remote_proc_mem),
	ALLBU5("remote-poke", test_remote_poke),
	ALLBU("app-protect", test_app_protect),
	ALLBX("app-protect-handler-after", test_app_protect, false, true, ""),
	ALLMEMX("mprotect-plain", test_mprotect_plain, FL_WATCH_MPROTECT, "mprotect", false, false, ""),
	ALLMEMX("mprotect-plain", test_mprotect_plain, FL_WATCH_MPROTECT, "mprotect", true, false, "-nobody"),
	ALLBU("reserved", test_reserved),
	ALLBU("dontneed", test_dontneed),
	SHANON("dontneed", test_dontneed, FL_WATCH_ASYNC, "async", false, ""),
	SHANON("dontneed", test_dontneed, FL_WATCH_SYNC, "sync", false, ""),
	SHANON("dontneed", test_dontneed, FL_WATCH_MPROTECT, "mprotect", false, ""),
	SHANON("dontneed", test_dontneed, FL_WATCH_ASYNC, "async", true, "-nobody"),
	SHANON("dontneed", test_dontneed, FL_WATCH_SYNC, "sync", true, "-nobody"),
	SHANON("dontneed", test_dontneed, FL_WATCH_MPROTECT, "mprotect", true, "-nobody"),
	ALLBU("manager", test_manager),
	ALLMEMX("manager-unmap", test_manager_unmap, FL_WATCH_ASYNC, "async", false, false, ""),
	ALLMEMX("manager-unmap", test_manager_unmap, FL_WATCH_SYNC, "sync", false, false, ""),
	ALLMEMX("manager-unmap", test_manager_unmap, FL_WATCH_ASYNC, "async", true, false, "-nobody"),
	ALLMEMX("manager-unmap", test_manager_unmap, FL_WATCH_SYNC, "sync", true, false, "-nobody"),
	ALLBU("manager-ops", test_manager_ops),
	SHANON("manager-ops", test_manager_ops, FL_WATCH_ASYNC, "async", false, ""),
	SHANON("manager-ops", test_manager_ops, FL_WATCH_SYNC, "sync", false, ""),
	SHANON("manager-ops", test_manager_ops, FL_WATCH_MPROTECT, "mprotect", false, ""),
	MANY(FL_WATCH_ASYNC, "async", false, ""), MANY(FL_WATCH_SYNC, "sync", false, ""),
	MANY(FL_WATCH_MPROTECT, "mprotect", false, ""), MANY(FL_WATCH_ASYNC, "async", true, "-nobody"),
	MANY(FL_WATCH_SYNC, "sync", true, "-nobody"), MANY(FL_WATCH_MPROTECT, "mprotect", true, "-nobody"),
	PRIVHUGE(FL_WATCH_ASYNC, "async", false, ""), PRIVHUGE(FL_WATCH_SYNC, "sync", false, ""),
	PRIVHUGE(FL_WATCH_MPROTECT, "mprotect", false, ""), PRIVHUGE(FL_WATCH_ASYNC, "async", true, "-nobody"),
	ALLBU("spanning", test_spanning),
	ALLBU("mprotect", test_mprotect),
	ALLBU("free", test_free_restores),
	CONC(FL_WATCH_ASYNC, "async", false, ""), CONC(FL_WATCH_SYNC, "sync", false, ""),
	CONC(FL_WATCH_MPROTECT, "mprotect", false, ""), CONC(FL_WATCH_ASYNC, "async", true, "-nobody"),
	CONC(FL_WATCH_SYNC, "sync", true, "-nobody"), CONC(FL_WATCH_MPROTECT, "mprotect", true, "-nobody"),
	SAME("anon", FL_MEM_ANON, K_TMAP, false, "", 0),
	SAME("shmem", FL_MEM_SHMEM, K_TMAP, false, "", 0),
	SAME("hugetlb", FL_MEM_HUGETLB, K_TMAP, false, "", T_HUGE_PAGES),
	SAME("shared-anon", FL_MEM_SHMEM, K_SHARED_ANON, false, "", 0),
	SAME("private-hugetlb", FL_MEM_HUGETLB, K_PRIVATE_HUGE, false, "", T_HUGE_PAGES),
	SAME("anon", FL_MEM_ANON, K_TMAP, true, "-nobody", 0),
	SAME("shmem", FL_MEM_SHMEM, K_TMAP, true, "-nobody", 0),
	SAME("hugetlb", FL_MEM_HUGETLB, K_TMAP, true, "-nobody", T_HUGE_PAGES),
	SAME("shared-anon", FL_MEM_SHMEM, K_SHARED_ANON, true, "-nobody", 0),
	SAME("private-hugetlb", FL_MEM_HUGETLB, K_PRIVATE_HUGE, true, "-nobody", T_HUGE_PAGES),
	{ "auto", test_auto, NULL, 30 },
	{ "bad-input", test_bad_input, NULL, 30 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
