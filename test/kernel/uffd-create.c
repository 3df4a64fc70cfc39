// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Creating a uffd and the UFFDIO_API handshake: fl_uffd_create() flags and
 * paths, fl_uffd_api(), and the feature probe / table / parser.
 */
#include "kt.h"

#include <ctype.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* A feature set of one feature, for brevity. */
#define B(name) FL_FEATURE_BIT(FL_FEATURE_##name)

/* ---- fl_uffd_create ---------------------------------------------------- */

struct create_flags_case {
	unsigned flags;
	uint64_t needs;		/* feature set (FL_FEATURE_BIT) the path needs */
	bool cloexec, nonblock;
};

static int test_create_flags(void *arg)
{
	const struct create_flags_case *c = arg;
	uint64_t ioctls = 0;
	int fd = -1, fdflags, flflags;

	if (c->needs)
		t_require(c->needs);
	T_ASSERT_EQ(fl_uffd_create(c->flags, &fd), 0);
	T_ASSERT(fd >= 0);
	T_ASSERT(kt_is_uffd(fd), "fd %d is not a userfaultfd", fd);
	fdflags = fcntl(fd, F_GETFD);
	flflags = fcntl(fd, F_GETFL);
	T_ASSERT(fdflags >= 0 && flflags >= 0);
	T_ASSERT_EQ(!!(fdflags & FD_CLOEXEC), c->cloexec);
	T_ASSERT_EQ(!!(flflags & O_NONBLOCK), c->nonblock);
	/* A usable uffd: the handshake works and offers the basic ioctls. */
	T_OK(fl_uffd_api(fd, 0, NULL, &ioctls));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_REGISTER));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_UNREGISTER));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_API));
	if (c->nonblock) {
		struct uffd_msg msg;
		T_ASSERT_EQ(fl_uffd_read(fd, &msg, 1), -EAGAIN);
	}
	close(fd);
	return T_PASS;
}

static const struct create_flags_case cf_default = { 0, 0, false, false };
static const struct create_flags_case cf_cloexec = { FL_UFFD_CLOEXEC, 0, true, false };
static const struct create_flags_case cf_nonblock = { FL_UFFD_NONBLOCK, 0, false, true };
static const struct create_flags_case cf_both = { FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK, 0, true, true };
static const struct create_flags_case cf_dev = { FL_UFFD_USE_DEV | FL_UFFD_CLOEXEC,
						 B(DEV_USERFAULTFD), true, false };
static const struct create_flags_case cf_dev_nonblock = { FL_UFFD_USE_DEV | FL_UFFD_NONBLOCK,
							  B(DEV_USERFAULTFD), false, true };
static const struct create_flags_case cf_syscall = { FL_UFFD_USE_SYSCALL | FL_UFFD_NONBLOCK,
						     B(SYSCALL), false, true };
static const struct create_flags_case cf_umo = { FL_UFFD_USER_MODE_ONLY | FL_UFFD_CLOEXEC,
						 0, true, false };

/*
 * Kernel-mode faults: read(2) from a pipe into a registered missing page.
 * A normal uffd catches the kernel's copy_to_user fault (the read waits for
 * the handler); a USER_MODE_ONLY uffd does not, and read(2) fails with EFAULT.
 */
struct kfault_case {
	unsigned flags;
	uint64_t needs;
	bool user_mode_only;
};

struct pipe_reader {
	int fd;
	void *buf;
	size_t len;
	ssize_t ret;
	int err;
	atomic_int done;
};

static void *pipe_reader_main(void *arg)
{
	struct pipe_reader *r = arg;

	r->ret = read(r->fd, r->buf, r->len);
	r->err = errno;
	atomic_store(&r->done, 1);
	return NULL;
}

static int test_kernel_fault(void *arg)
{
	const struct kfault_case *c = arg;
	const size_t page = t_page_size(FL_MEM_ANON);
	static const char data[] = "kernel-mode copy";
	struct pipe_reader rd = { 0 };
	pthread_t th;
	uint64_t deadline;
	int fd, pipefd[2];
	char *area, *src;

	if (c->needs)
		t_require(c->needs);
	else if (!c->user_mode_only && !t_has(B(DEV_USERFAULTFD)))
		t_require(B(SYSCALL));
	T_ASSERT_EQ(fl_uffd_create(c->flags | FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK, &fd), 0);
	T_OK(fl_uffd_api(fd, 0, NULL, NULL));
	area = t_map(FL_MEM_ANON, page, NULL);
	T_OK(fl_uffd_register(fd, area, page, FL_REG_MISSING, NULL));
	T_ASSERT(pipe(pipefd) == 0);
	T_ASSERT(write(pipefd[1], data, sizeof(data)) == (ssize_t)sizeof(data));

	rd.fd = pipefd[0];
	rd.buf = area + 100;
	rd.len = sizeof(data);
	T_ASSERT(pthread_create(&th, NULL, pipe_reader_main, &rd) == 0);

	if (c->user_mode_only) {
		/* The read must fail by itself; a message means the uffd caught
		 * a kernel-mode fault it should not see. */
		deadline = t_now_ns() + KT_TIMEOUT_MS * 1000000ull;
		while (!atomic_load(&rd.done)) {
			T_ASSERT(kt_uffd_pending(fd) == 0,
				 "user-mode-only uffd caught the kernel's fault");
			T_ASSERT(t_now_ns() < deadline, "read(2) neither failed nor faulted");
			t_sleep_ms(1);
		}
		pthread_join(th, NULL);
		T_ASSERT_EQ(rd.ret, -1);
		T_ASSERT_EQ(rd.err, EFAULT);
		/* A user-mode access still faults to this uffd. */
		{
			struct kt_toucher t;
			struct uffd_msg msg;
			src = t_pattern_buf(page, 0, 7);
			kt_touch_start(&t, area + 5, KT_READ, 0);
			kt_expect_fault(fd, &msg, area, page);
			T_OK(fl_uffd_copy(fd, area, src, page, 0, NULL));
			kt_touch_join(&t, KT_TIMEOUT_MS);
			T_ASSERT_EQ(t.read_value, ((uint8_t *)src)[5]);
		}
	} else {
		struct uffd_msg msg;

		kt_expect_fault(fd, &msg, area, page);
		T_ASSERT(fl_msg_fault_write(&msg), "copy_to_user is a write fault");
		T_ASSERT(!atomic_load(&rd.done), "read(2) finished before the fault was resolved");
		src = t_pattern_buf(page, 0, 8);
		T_OK(fl_uffd_copy(fd, area, src, page, 0, NULL));
		deadline = t_now_ns() + KT_TIMEOUT_MS * 1000000ull;
		while (!atomic_load(&rd.done)) {
			T_ASSERT(t_now_ns() < deadline, "read(2) not woken");
			t_sleep_ms(1);
		}
		pthread_join(th, NULL);
		T_ASSERT_EQ(rd.ret, (ssize_t)sizeof(data));
		/* The page: our pattern, overwritten by the pipe's bytes. */
		kt_assert_pattern(area, 100, 0, 8);
		T_ASSERT(memcmp(area + 100, data, sizeof(data)) == 0);
		kt_assert_pattern(area + 100 + sizeof(data), page - 100 - sizeof(data),
				  100 + sizeof(data), 8);
	}
	return T_PASS;
}

/* The default path catches kernel faults when either the syscall (without
 * USER_MODE_ONLY) or the device is usable. */
static const struct kfault_case kf_default = { 0, 0, false };
static const struct kfault_case kf_dev = { FL_UFFD_USE_DEV, B(DEV_USERFAULTFD), false };
static const struct kfault_case kf_syscall = { FL_UFFD_USE_SYSCALL, B(SYSCALL), false };
static const struct kfault_case kf_umo = { FL_UFFD_USER_MODE_ONLY, 0, true };

static int test_create_invalid(void *arg)
{
	static const unsigned bad[] = {
		1u << 5,
		1u << 31,
		FL_UFFD_USE_DEV | FL_UFFD_USE_SYSCALL,
		FL_UFFD_USE_DEV | FL_UFFD_USER_MODE_ONLY,
		FL_UFFD_CLOEXEC | FL_UFFD_USE_DEV | FL_UFFD_USE_SYSCALL,
	};
	int fd;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd = -12345;
		T_ASSERT(fl_uffd_create(bad[i], &fd) == -EINVAL, "flags 0x%x", bad[i]);
		T_ASSERT(fd == -12345, "fd written on failure (flags 0x%x)", bad[i]);
	}
	T_ASSERT_EQ(fl_uffd_create(0, NULL), -EINVAL);
	return T_PASS;
}

static int test_create_dev_masked(void *arg)
{
	int fd = -12345;

	t_require(B(DEV_USERFAULTFD));
	setenv("FAULTLINE_MASK_FEATURES", "dev_userfaultfd", 1);
	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_USE_DEV, &fd), -EOPNOTSUPP);
	T_ASSERT_EQ(fd, -12345);
	/* The default path does not need the device. */
	if (t_has(B(SYSCALL))) {
		T_ASSERT_EQ(fl_uffd_create(FL_UFFD_CLOEXEC, &fd), 0);
		T_ASSERT(kt_is_uffd(fd));
	}
	return T_PASS;
}

/*
 * Without the syscall (valgrind does not know it; seccomp sandboxes may
 * refuse it): a seccomp filter makes userfaultfd(2) fail with ENOSYS. The
 * device path must still work, and be what USE_DEV and the default use.
 */
static void block_userfaultfd_syscall(void)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(filter) / sizeof(filter[0]), filter };

	T_ASSERT(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	T_ASSERT(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0,
		 "seccomp: %s", strerror(errno));
	T_ASSERT(syscall(SYS_userfaultfd, O_CLOEXEC) == -1 && errno == ENOSYS);
}

static int test_create_without_syscall(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	uint64_t f = 0;
	int fd = -12345;

	t_require(B(DEV_USERFAULTFD));
	block_userfaultfd_syscall();
	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_USE_SYSCALL, &fd), -EOPNOTSUPP);
	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_USER_MODE_ONLY, &fd), -EOPNOTSUPP);
	T_ASSERT_EQ(fd, -12345);
	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_USE_DEV | FL_UFFD_CLOEXEC, &fd), 0);
	T_ASSERT(kt_is_uffd(fd));
	T_OK(fl_uffd_api(fd, 0, NULL, NULL));
	close(fd);
	/* The default falls back to the device. */
	fd = -1;
	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK, &fd), 0);
	T_ASSERT(kt_is_uffd(fd));
	T_OK(fl_uffd_api(fd, 0, NULL, NULL));
	{
		char *area = t_map(FL_MEM_ANON, page, NULL);
		struct kt_toucher t;
		struct uffd_msg msg;
		T_OK(fl_uffd_register(fd, area, page, FL_REG_MISSING, NULL));
		kt_touch_start(&t, area, KT_READ, 0);
		kt_expect_fault(fd, &msg, area, page);
		T_OK(fl_uffd_zeropage(fd, area, page, 0, NULL));
		kt_touch_join(&t, KT_TIMEOUT_MS);
	}
	/* The probe sees the same: no syscall, a device. */
	T_OK(fl_features_probe(&f));
	T_ASSERT(!(f & B(SYSCALL)), "probe reports the blocked syscall");
	T_ASSERT(f & B(DEV_USERFAULTFD));
	T_ASSERT(f & B(MISSING_SHMEM), "probe lost the kernel's features");
	return T_PASS;
}

/* ---- fl_uffd_api ------------------------------------------------------- */

static int test_api_reports(void *arg)
{
	uint64_t feats = 0, ioctls = 0;
	int fd;

	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_CLOEXEC, &fd), 0);
	T_OK(fl_uffd_api(fd, 0, &feats, &ioctls));
	/* What the kernel offers, less the mask: what the probe found. */
	T_ASSERT_EQ(feats, fl_features_to_uffd(fl_features()));
	T_ASSERT_EQ(feats & fl_features_to_uffd(fl_features_masked()), 0);
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_API));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_REGISTER));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_UNREGISTER));
	/* ret_features / ret_ioctls may be NULL. */
	close(fd);
	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_CLOEXEC, &fd), 0);
	T_OK(fl_uffd_api(fd, 0, NULL, NULL));
	close(fd);
	return T_PASS;
}

static int test_api_request_all(void *arg)
{
	/* Every feature the kernel offers (and the mask allows) at once. */
	uint64_t want = fl_features_to_uffd(fl_features()), feats = 0;
	int fd;

	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_CLOEXEC, &fd), 0);
	T_OK(fl_uffd_api(fd, want, &feats, NULL));
	T_ASSERT((feats & want) == want, "reported 0x%llx lacks requested 0x%llx",
		 (unsigned long long)feats, (unsigned long long)want);
	close(fd);
	return T_PASS;
}

static void touch_read(void *arg)
{
	(void)*(volatile char *)arg;
}

/* A requested feature takes effect: with SIGBUS a missing fault raises
 * SIGBUS at once instead of waiting for a handler. */
static int test_api_request_sigbus(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	char *area;
	int fd;

	t_require(FL_FEATURE_BIT(FL_FEATURE_SIGBUS));
	fd = t_uffd(UFFD_FEATURE_SIGBUS);
	area = t_map(FL_MEM_ANON, 2 * page, NULL);
	T_OK(fl_uffd_register(fd, area, 2 * page, FL_REG_MISSING, NULL));
	T_ASSERT(kt_catch_sigbus(touch_read, area), "missing fault did not raise SIGBUS");
	T_ASSERT_EQ(kt_uffd_pending(fd), 0);
	/* Resolved pages are plain memory. */
	{
		char *src = t_pattern_buf(page, 0, 3);
		T_OK(fl_uffd_copy(fd, area + page, src, page, 0, NULL));
		T_ASSERT(!kt_catch_sigbus(touch_read, area + page));
		kt_assert_pattern(area + page, page, 0, 3);
	}
	return T_PASS;
}

static int test_api_twice(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	uint64_t feats = 0xdead;
	void *area;
	int fd;

	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_CLOEXEC, &fd), 0);
	T_OK(fl_uffd_api(fd, 0, NULL, NULL));
	T_ASSERT_EQ(fl_uffd_api(fd, 0, &feats, NULL), -EINVAL);
	T_ASSERT_EQ(feats, 0xdead);
	if (t_has(FL_FEATURE_BIT(FL_FEATURE_THREAD_ID)))
		T_ASSERT_EQ(fl_uffd_api(fd, UFFD_FEATURE_THREAD_ID, NULL, NULL), -EINVAL);
	/* The first handshake still stands. */
	area = t_map(FL_MEM_ANON, page, NULL);
	T_OK(fl_uffd_register(fd, area, page, FL_REG_MISSING, NULL));
	close(fd);
	return T_PASS;
}

static int test_api_unknown_feature(void *arg)
{
	uint64_t feats = 0xdead;
	int fd;

	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_CLOEXEC, &fd), 0);
	T_ASSERT_EQ(fl_uffd_api(fd, 1ULL << 40, &feats, NULL), -EOPNOTSUPP);
	T_ASSERT_EQ(feats, 0xdead);
	T_ASSERT_EQ(fl_uffd_api(fd, UFFD_FEATURE_EVENT_FORK | (1ULL << 47), NULL, NULL),
		    -EOPNOTSUPP);
	/* A refused handshake leaves the uffd uninitialised: it can still
	 * be done once. */
	T_OK(fl_uffd_api(fd, 0, &feats, NULL));
	T_ASSERT_EQ(feats, fl_features_to_uffd(fl_features()));
	close(fd);
	return T_PASS;
}

static int test_api_masked_feature(void *arg)
{
	uint64_t feats = 0;
	int fd;

	t_require(FL_FEATURE_BIT(FL_FEATURE_POISON));
	setenv("FAULTLINE_MASK_FEATURES", "poison", 1);
	T_ASSERT(fl_features_masked() & B(POISON));

	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_CLOEXEC, &fd), 0);
	T_ASSERT_EQ(fl_uffd_api(fd, UFFD_FEATURE_POISON, NULL, NULL), -EOPNOTSUPP);
	T_ASSERT_EQ(fl_uffd_api(fd, UFFD_FEATURE_POISON | UFFD_FEATURE_THREAD_ID, NULL, NULL),
		    -EOPNOTSUPP);
	/* Nothing reached the kernel: the handshake is still possible, and
	 * the report hides the masked feature. */
	T_OK(fl_uffd_api(fd, 0, &feats, NULL));
	T_ASSERT(!(feats & UFFD_FEATURE_POISON), "masked feature reported");
	T_ASSERT(feats & UFFD_FEATURE_MISSING_SHMEM, "unmasked feature hidden");
	close(fd);
	return T_PASS;
}

static int test_api_bad_fd(void *arg)
{
	int p[2];

	T_ASSERT_EQ(fl_uffd_api(-1, 0, NULL, NULL), -EBADF);
	T_ASSERT(pipe(p) == 0);
	T_ASSERT(fl_uffd_api(p[0], 0, NULL, NULL) < 0);
	return T_PASS;
}

/* ---- features ---------------------------------------------------------- */

static uint64_t raw_kernel_features(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	T_ASSERT(fd >= 0, "userfaultfd: %s", strerror(errno));
	T_ASSERT(ioctl(fd, UFFDIO_API, &api) == 0, "UFFDIO_API: %s", strerror(errno));
	close(fd);
	return api.features;
}

static int test_features_probe(void *arg)
{
	uint64_t f = 0, masked = fl_features_masked(), kernel = raw_kernel_features();
	bool syscall_ok, dev_ok;
	int fd;

	T_OK(fl_features_probe(&f));
	/* Kernel bits the table does not know (newer kernels) are dropped. */
	T_ASSERT_EQ(fl_features_to_uffd(f), kernel & 0x1ffff & ~fl_features_to_uffd(masked));
	T_ASSERT_EQ(f & masked, 0);
	/* The cached answer is the same probe. */
	T_ASSERT_EQ(fl_features(), f);

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	syscall_ok = fd >= 0;
	if (fd >= 0)
		close(fd);
	fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	dev_ok = fd >= 0;
	if (fd >= 0)
		close(fd);
	T_ASSERT_EQ(!!(f & B(SYSCALL)), syscall_ok && !(masked & B(SYSCALL)));
	T_ASSERT_EQ(!!(f & B(DEV_USERFAULTFD)),
		    dev_ok && !(masked & B(DEV_USERFAULTFD)));
	T_ASSERT_EQ(!!(f & B(IOCTL_MOVE)), !!(f & B(MOVE)));
	T_ASSERT_EQ(!!(f & B(IOCTL_POISON)), !!(f & B(POISON)));
	/* PAGEMAP_SCAN: the probe agrees with a real scan. */
	{
		struct fl_page_region vec[1];
		static char page[4096] __attribute__((aligned(4096)));
		struct fl_scan_opts o = {
			.sz = sizeof(o),
			.start = (uintptr_t)page,
			.end = (uintptr_t)page + sizeof(page),
			.category_anyof_mask = FL_PAGE_IS_PRESENT,
			.return_mask = FL_PAGE_IS_PRESENT,
		};
		int pm, r;
		T_OK(fl_pagemap_open(0, &pm));
		r = fl_pagemap_scan(pm, &o, vec, 1, NULL);
		T_ASSERT_EQ(r >= 0, !!(f & B(PAGEMAP_SCAN)));
		close(pm);
	}
	return T_PASS;
}

static int test_features_probe_masked(void *arg)
{
	const uint64_t pm = B(POISON) | B(MOVE) | B(IOCTL_POISON) | B(IOCTL_MOVE);
	const uint64_t newer = B(WP_UNPOPULATED) | B(POISON) | B(WP_ASYNC) | B(MOVE) |
			       B(PAGEMAP_SCAN) | B(IOCTL_MOVE) | B(IOCTL_POISON) | B(CONTINUE_MODE_WP);
	uint64_t base = 0, f = 0;

	unsetenv("FAULTLINE_MASK_FEATURES");
	T_ASSERT_EQ(fl_features_masked(), 0);
	T_OK(fl_features_probe(&base));

	setenv("FAULTLINE_MASK_FEATURES", "poison,move", 1);
	T_ASSERT_EQ(fl_features_masked(), pm);
	T_OK(fl_features_probe(&f));
	T_ASSERT_EQ(f, base & ~pm);

	setenv("FAULTLINE_MASK_FEATURES", "0x10000", 1);
	T_OK(fl_features_probe(&f));
	T_ASSERT_EQ(f, base & ~(B(MOVE) | B(IOCTL_MOVE)));

	setenv("FAULTLINE_MASK_FEATURES", "new", 1);
	T_ASSERT_EQ(fl_features_masked(), newer);
	T_OK(fl_features_probe(&f));
	/* Exactly the newer features go, by enum value and by kernel bit. */
	T_ASSERT_EQ(f, base & ~newer);
	for (unsigned i = 0; fl_feature_name((enum fl_feature)i); i++) {
		enum fl_feature feat = (enum fl_feature)i;
		bool is_new = feat == FL_FEATURE_WP_UNPOPULATED || feat == FL_FEATURE_POISON ||
			      feat == FL_FEATURE_WP_ASYNC || feat == FL_FEATURE_MOVE ||
			      feat == FL_FEATURE_PAGEMAP_SCAN || feat == FL_FEATURE_IOCTL_MOVE ||
			      feat == FL_FEATURE_IOCTL_POISON || feat == FL_FEATURE_CONTINUE_MODE_WP;

		T_ASSERT_EQ(!!(f & FL_FEATURE_BIT(feat)), !is_new && !!(base & FL_FEATURE_BIT(feat)));
	}
	/* Features Linux 6.1 had stay: the UFFDIO_API bits 0..12. */
	T_ASSERT_EQ(fl_features_to_uffd(f), fl_features_to_uffd(base) & 0x1fff);

	/* An unparsable mask masks nothing. */
	setenv("FAULTLINE_MASK_FEATURES", "no_such_feature", 1);
	T_ASSERT_EQ(fl_features_masked(), 0);
	T_OK(fl_features_probe(&f));
	T_ASSERT_EQ(f, base);
	return T_PASS;
}

static int test_has_features(void *arg)
{
	uint64_t f = fl_features();

	for (unsigned i = 0; i < 64; i++)
		T_ASSERT_EQ(fl_feature_has((enum fl_feature)i), !!(f & FL_FEATURE_BIT(i)));
	/* Nothing beyond the known features is ever reported. */
	T_ASSERT(!fl_feature_has((enum fl_feature)47));
	T_ASSERT(!fl_feature_has((enum fl_feature)-1));
	T_ASSERT(!fl_feature_has((enum fl_feature)1000));
	T_ASSERT_EQ(f & ~(B(CONTINUE_MODE_WP) * 2 - 1), 0);
	/* The kernel (6.1+) always has these. */
	T_ASSERT(fl_feature_has(FL_FEATURE_MISSING_SHMEM));
	T_ASSERT(fl_feature_has(FL_FEATURE_EVENT_FORK));
	return T_PASS;
}

/* Masking hides exactly the masked enum values from fl_feature_has(): run
 * in a fresh process (t_run_masked-style) because fl_features() caches. */
static int test_feature_has_masked(void *arg)
{
	const char *spec = getenv("FAULTLINE_MASK_FEATURES");
	uint64_t masked = fl_features_masked(), unmasked = 0, f = fl_features();

	if (!spec) {
		/* fl_features() is cached from process start (t_main probes
		 * first): run this case again in a fresh process, masked.
		 * argv[1] is t_main's case filter. */
		int status;
		pid_t pid;

		fflush(NULL);
		pid = fork();
		T_ASSERT(pid >= 0);
		if (pid == 0) {
			setenv("FAULTLINE_MASK_FEATURES", "new,thread_id", 1);
			unsetenv("FL_TEST_RESULTS");
			execl("/proc/self/exe", "uffd-create", "feature_has_masked", (char *)NULL);
			_exit(99);
		}
		T_ASSERT(waitpid(pid, &status, 0) == pid);
		T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			 "masked run of feature_has_masked failed (status 0x%x)", status);
		return T_PASS;
	}
	T_ASSERT(masked != 0, "mask \"%s\" masks nothing", spec);
	/* What the kernel offers without the mask. */
	unsetenv("FAULTLINE_MASK_FEATURES");
	T_OK(fl_features_probe(&unmasked));
	setenv("FAULTLINE_MASK_FEATURES", spec, 1);
	for (unsigned i = 0; fl_feature_name((enum fl_feature)i); i++) {
		enum fl_feature feat = (enum fl_feature)i;
		bool want = (unmasked & FL_FEATURE_BIT(feat)) && !(masked & FL_FEATURE_BIT(feat));

		T_ASSERT_EQ(fl_feature_has(feat), want);
	}
	T_ASSERT_EQ(f, unmasked & ~masked);
	return T_PASS;
}

static int test_feature_table(void *arg)
{
	uint64_t seen_uffd = 0;
	unsigned n = 0;

	while (fl_feature_name((enum fl_feature)n))
		n++;
	T_ASSERT(n >= 23, "n = %u", n);
	T_ASSERT(n <= 64, "a feature set holds 64 features");
	for (unsigned i = 0; i < n; i++) {
		enum fl_feature f = (enum fl_feature)i, back = (enum fl_feature)-1;
		const char *name = fl_feature_name(f);
		uint64_t bit = fl_feature_uffd_bit(f), mask = 0;
		char upper[64];

		T_ASSERT(name[0], "feature %u has no name", i);
		T_ASSERT(fl_feature_since(f) && fl_feature_since(f)[0], "%s: no version", name);
		T_ASSERT(fl_feature_purpose(f) && fl_feature_purpose(f)[0], "%s: no use", name);
		for (unsigned j = 0; j < i; j++)
			T_ASSERT(strcmp(name, fl_feature_name((enum fl_feature)j)) != 0, "%s twice", name);
		/* A kernel bit is one bit, and no two features share one. */
		T_ASSERT(!(bit & (bit - 1)), "%s: 0x%llx", name, (unsigned long long)bit);
		T_ASSERT(!(seen_uffd & bit), "%s: kernel bit twice", name);
		seen_uffd |= bit;
		/* Names round-trip, in any case, and through the parser. */
		T_OK(fl_feature_from_name(name, &back));
		T_ASSERT_EQ(back, f);
		for (size_t k = 0; k <= strlen(name); k++)
			upper[k] = (char)toupper((unsigned char)name[k]);
		back = (enum fl_feature)-1;
		T_OK(fl_feature_from_name(upper, &back));
		T_ASSERT_EQ(back, f);
		T_ASSERT(fl_features_parse(name, &mask) == 0, "%s", name);
		T_ASSERT(mask & FL_FEATURE_BIT(f), "%s", name);
	}
	/* Every kernel feature bit through Linux 6.8. */
	T_ASSERT_EQ(seen_uffd, 0x1ffff);
	T_ASSERT_EQ(strcmp(fl_feature_name(FL_FEATURE_POISON), "poison"), 0);
	T_ASSERT_EQ(strcmp(fl_feature_name(FL_FEATURE_MOVE), "move"), 0);
	T_ASSERT_EQ(strcmp(fl_feature_name(FL_FEATURE_WP), "wp"), 0);
	T_ASSERT_EQ(strcmp(fl_feature_name(FL_FEATURE_PAGEMAP_SCAN), "pagemap_scan"), 0);
	T_ASSERT_EQ(strcmp(fl_feature_since(FL_FEATURE_MOVE), "6.8"), 0);
	/* Out of range: NULL, 0, -EINVAL. */
	T_ASSERT(fl_feature_name((enum fl_feature)n) == NULL);
	T_ASSERT(fl_feature_name((enum fl_feature)-1) == NULL);
	T_ASSERT(fl_feature_since((enum fl_feature)n) == NULL);
	T_ASSERT(fl_feature_purpose((enum fl_feature)n) == NULL);
	T_ASSERT_EQ(fl_feature_uffd_bit((enum fl_feature)n), 0);
	{
		enum fl_feature back = FL_FEATURE_MOVE;

		T_ASSERT_EQ(fl_feature_from_name("no_such_feature", &back), -EINVAL);
		T_ASSERT_EQ(fl_feature_from_name("", &back), -EINVAL);
		T_ASSERT_EQ(fl_feature_from_name(NULL, &back), -EINVAL);
		T_ASSERT_EQ(back, FL_FEATURE_MOVE);
	}
	return T_PASS;
}

static int test_features_parse(void *arg)
{
	const uint64_t newer = B(WP_UNPOPULATED) | B(POISON) | B(WP_ASYNC) | B(MOVE) |
			       B(PAGEMAP_SCAN) | B(IOCTL_MOVE) | B(IOCTL_POISON) | B(CONTINUE_MODE_WP);
	uint64_t m;

	T_OK(fl_features_parse("new", &m));
	T_ASSERT_EQ(m, newer);
	T_OK(fl_features_parse("poison", &m));
	T_ASSERT_EQ(m, B(POISON) | B(IOCTL_POISON));
	T_OK(fl_features_parse("poison,move", &m));
	T_ASSERT_EQ(m, B(POISON) | B(MOVE) | B(IOCTL_POISON) | B(IOCTL_MOVE));
	T_OK(fl_features_parse("thread_id,pagemap_scan", &m));
	T_ASSERT_EQ(m, B(THREAD_ID) | B(PAGEMAP_SCAN));
	T_OK(fl_features_parse("Thread_ID", &m));
	T_ASSERT_EQ(m, B(THREAD_ID));
	T_OK(fl_features_parse("ioctl_move", &m));
	T_ASSERT_EQ(m, B(IOCTL_MOVE));
	/* Hex masks are the kernel's UFFD_FEATURE_* bits. */
	T_OK(fl_features_parse("0x100", &m));
	T_ASSERT_EQ(m, B(THREAD_ID));
	T_OK(fl_features_parse("0x4000", &m));
	T_ASSERT_EQ(m, B(POISON) | B(IOCTL_POISON));
	T_OK(fl_features_parse("0x1,sigbus", &m));
	T_ASSERT_EQ(m, B(WP) | B(SIGBUS));
	T_OK(fl_features_parse("0x1c000", &m));
	T_ASSERT_EQ(m, B(POISON) | B(WP_ASYNC) | B(MOVE) | B(IOCTL_POISON) | B(IOCTL_MOVE));
	T_OK(fl_features_parse("0x10000000000", &m));	/* a bit no kernel has yet */
	T_ASSERT_EQ(m, 0);
	T_OK(fl_features_parse("new,wp", &m));
	T_ASSERT_EQ(m, newer | B(WP));
	T_OK(fl_features_parse("", &m));
	T_ASSERT_EQ(m, 0);
	T_OK(fl_features_parse("none", &m));
	T_ASSERT_EQ(m, 0);

	/* Errors leave *ret_mask alone. */
	static const char *const bad[] = {
		"bogus", "poison,bogus", "0xzz", "0x", "new,", "newer",
		"poison_", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r;
		m = 0x5a5a;
		r = fl_features_parse(bad[i], &m);
		if (strcmp(bad[i], "new,") == 0) {
			/* A trailing separator is harmless. */
			T_ASSERT_EQ(r, 0);
			T_ASSERT_EQ(m, newer);
			continue;
		}
		T_ASSERT(r == -EINVAL, "\"%s\" -> %d", bad[i], r);
		T_ASSERT(m == 0x5a5a, "\"%s\" wrote the mask", bad[i]);
	}
	T_ASSERT_EQ(fl_features_parse(NULL, &m), -EINVAL);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "create_default", test_create_flags, (void *)&cf_default, 0 },
	{ "create_cloexec", test_create_flags, (void *)&cf_cloexec, 0 },
	{ "create_nonblock", test_create_flags, (void *)&cf_nonblock, 0 },
	{ "create_cloexec_nonblock", test_create_flags, (void *)&cf_both, 0 },
	{ "create_use_dev", test_create_flags, (void *)&cf_dev, 0, T_DEV_USERFAULTFD },
	{ "create_use_dev_nonblock", test_create_flags, (void *)&cf_dev_nonblock, 0, T_DEV_USERFAULTFD },
	{ "create_use_syscall", test_create_flags, (void *)&cf_syscall, 0, T_SYSCALL },
	{ "create_user_mode_only", test_create_flags, (void *)&cf_umo, 0 },
	{ "create_invalid", test_create_invalid, NULL, 0 },
	{ "create_use_dev_masked", test_create_dev_masked, NULL, 0, T_DEV_USERFAULTFD },
	{ "create_without_syscall", test_create_without_syscall, NULL, 0, T_DEV_USERFAULTFD },
	{ "kernel_fault_default", test_kernel_fault, (void *)&kf_default, 10 },
	{ "kernel_fault_use_dev", test_kernel_fault, (void *)&kf_dev, 10, T_DEV_USERFAULTFD },
	{ "kernel_fault_use_syscall", test_kernel_fault, (void *)&kf_syscall, 10, T_SYSCALL },
	{ "kernel_fault_user_mode_only", test_kernel_fault, (void *)&kf_umo, 10 },
	{ "api_reports", test_api_reports, NULL, 0 },
	{ "api_request_all", test_api_request_all, NULL, 0 },
	{ "api_request_sigbus", test_api_request_sigbus, NULL, 0, T_SIGBUS },
	{ "api_twice", test_api_twice, NULL, 0 },
	{ "api_unknown_feature", test_api_unknown_feature, NULL, 0 },
	{ "api_masked_feature", test_api_masked_feature, NULL, 0, T_POISON },
	{ "api_bad_fd", test_api_bad_fd, NULL, 0 },
	{ "features_probe", test_features_probe, NULL, 0 },
	{ "features_probe_masked", test_features_probe_masked, NULL, 0 },
	{ "has_features", test_has_features, NULL, 0 },
	{ "feature_table", test_feature_table, NULL, 0 },
	{ "feature_has_masked", test_feature_has_masked, NULL, 0 },
	{ "features_parse", test_features_parse, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
