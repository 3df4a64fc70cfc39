// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * UFFDIO_REGISTER / UNREGISTER through fl_uffd_register(): every mode and
 * combination over anon, shmem and hugetlb; the resolving ioctls the kernel
 * offers for each (tested by named bit); that a registration catches the
 * faults it should; and the errors (MINOR on anon, bad ranges, a second
 * uffd, registration before the handshake).
 */
#include "kt.h"

#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 2	/* pages per case (huge pages on hugetlb) */

struct reg_case {
	enum fl_mem_type mem;
	unsigned modes;
};

static const char *const ioctl_names[] = {
	[FL_IOCTL_REGISTER] = "REGISTER", [FL_IOCTL_UNREGISTER] = "UNREGISTER",
	[FL_IOCTL_WAKE] = "WAKE", [FL_IOCTL_COPY] = "COPY",
	[FL_IOCTL_ZEROPAGE] = "ZEROPAGE", [FL_IOCTL_MOVE] = "MOVE",
	[FL_IOCTL_WRITEPROTECT] = "WRITEPROTECT", [FL_IOCTL_CONTINUE] = "CONTINUE",
	[FL_IOCTL_POISON] = "POISON",
};

/* The resolving ioctls Linux offers on a range (fs/userfaultfd.c). */
static bool ioctl_expected(enum fl_ioctl which, enum fl_mem_type mem, unsigned modes)
{
	switch (which) {
	case FL_IOCTL_WAKE:
	case FL_IOCTL_COPY:
		return true;
	case FL_IOCTL_ZEROPAGE:
		return mem != FL_MEM_HUGETLB;	/* no huge zero page fill */
	case FL_IOCTL_MOVE:
		return mem != FL_MEM_HUGETLB && t_has(FL_FEATURE_BIT(FL_FEATURE_IOCTL_MOVE));
	case FL_IOCTL_WRITEPROTECT:
		return modes & FL_REG_WP;
	case FL_IOCTL_CONTINUE:
		return modes & FL_REG_MINOR;
	case FL_IOCTL_POISON:
		return t_has(FL_FEATURE_BIT(FL_FEATURE_IOCTL_POISON));
	default:
		return false;
	}
}

static void check_ioctls(uint64_t ioctls, enum fl_mem_type mem, unsigned modes)
{
	for (unsigned i = FL_IOCTL_REGISTER; i <= FL_IOCTL_POISON; i++) {
		bool want = ioctl_expected((enum fl_ioctl)i, mem, modes);
		T_ASSERT(fl_ioctls_has(ioctls, (enum fl_ioctl)i) == want,
			 "%s: UFFDIO_%s %s (ioctls 0x%llx)", t_mem_name(mem),
			 ioctl_names[i], want ? "missing" : "unexpected",
			 (unsigned long long)ioctls);
	}
}

/* A second mapping of the memfd, to fill the page cache behind the
 * registered mapping's back (what a MINOR fault then finds). */
static void fill_page_cache(int memfd, size_t len, uint32_t seed)
{
	void *alias = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);

	T_ASSERT(alias != MAP_FAILED, "mmap alias: %s", strerror(errno));
	t_fill_pattern(alias, len, 0, seed);
	munmap(alias, len);
}

/*
 * The registration catches the faults it should: a missing fault when
 * MISSING is registered, otherwise a minor fault (MINOR), otherwise a
 * write-protect fault (WP only). Each is resolved and its data checked.
 */
static void check_catches(int uffd, enum fl_mem_type mem, char *area, unsigned modes)
{
	const size_t page = t_page_size(mem);
	struct kt_toucher t;
	struct uffd_msg msg;

	if (modes & FL_REG_MISSING) {
		void *src = t_pattern_buf(page, 0, 11);

		kt_touch_start(&t, area + 17, KT_READ, 0);
		kt_expect_fault(uffd, &msg, area, page);
		T_ASSERT(!fl_msg_fault_wp(&msg) && !fl_msg_fault_minor(&msg) &&
			 !fl_msg_fault_write(&msg), "flags 0x%llx",
			 (unsigned long long)msg.arg.pagefault.flags);
		T_OK(fl_uffd_copy(uffd, area, src, page, 0, NULL));
		kt_touch_join(&t, KT_TIMEOUT_MS);
		T_ASSERT_EQ(t.read_value, ((uint8_t *)src)[17]);
		free(src);
	} else if (modes & FL_REG_MINOR) {
		kt_touch_start(&t, area + 17, KT_READ, 0);
		kt_expect_fault(uffd, &msg, area, page);
		T_ASSERT(fl_msg_fault_minor(&msg), "flags 0x%llx",
			 (unsigned long long)msg.arg.pagefault.flags);
		T_OK(fl_uffd_continue(uffd, area, page, 0, NULL));
		kt_touch_join(&t, KT_TIMEOUT_MS);
		kt_assert_pattern(area, page, 0, 12);
	} else {
		T_OK(fl_uffd_writeprotect(uffd, area, page, FL_WP_PROTECT));
		kt_touch_start(&t, area + 17, KT_WRITE, 0xa5);
		kt_expect_fault(uffd, &msg, area, page);
		T_ASSERT(fl_msg_fault_wp(&msg) && fl_msg_fault_write(&msg), "flags 0x%llx",
			 (unsigned long long)msg.arg.pagefault.flags);
		T_OK(fl_uffd_writeprotect(uffd, area, page, 0));
		kt_touch_join(&t, KT_TIMEOUT_MS);
		T_ASSERT_EQ((uint8_t)area[17], 0xa5);
	}
}

static int test_register(void *arg)
{
	const struct reg_case *c = arg;
	const size_t page = t_page_size(c->mem), len = NPAGES * page;
	uint64_t ioctls = 0xdead;
	int uffd, memfd, r;
	char *area;

	uffd = kt_uffd_for(c->mem, c->modes, 0);
	area = t_map(c->mem, len, &memfd);
	/* MINOR without MISSING: the page cache must hold the pages. */
	if ((c->modes & (FL_REG_MINOR | FL_REG_MISSING)) == FL_REG_MINOR && memfd >= 0)
		fill_page_cache(memfd, len, 12);
	if (!(c->modes & (FL_REG_MISSING | FL_REG_MINOR)))
		memset(area, 0x11, len);	/* WP only: protect present pages */

	r = fl_uffd_register(uffd, area, len, c->modes, &ioctls);
	if ((c->modes & FL_REG_MINOR) && c->mem == FL_MEM_ANON) {
		/* MINOR needs a page cache: shmem or hugetlbfs only. */
		T_ASSERT_EQ(r, -EINVAL);
		T_ASSERT_EQ(ioctls, 0xdead);
		return T_PASS;
	}
	T_ASSERT_EQ(r, 0);
	check_ioctls(ioctls, c->mem, c->modes);
	check_catches(uffd, c->mem, area, c->modes);
	/* NULL ret_ioctls is fine. */
	T_OK(fl_uffd_unregister(uffd, area, len));
	T_OK(fl_uffd_register(uffd, area, len, c->modes, NULL));
	return T_PASS;
}

#define REG(m, modes) { m, modes }
static const struct reg_case reg_cases[3][7] = {
#define MODES(m)                                                               \
	{ REG(m, FL_REG_MISSING), REG(m, FL_REG_WP), REG(m, FL_REG_MINOR),      \
	  REG(m, FL_REG_MISSING | FL_REG_WP), REG(m, FL_REG_MISSING | FL_REG_MINOR), \
	  REG(m, FL_REG_WP | FL_REG_MINOR),                                     \
	  REG(m, FL_REG_MISSING | FL_REG_WP | FL_REG_MINOR) }
	MODES(FL_MEM_ANON), MODES(FL_MEM_SHMEM), MODES(FL_MEM_HUGETLB),
#undef MODES
};

/* ---- errors ------------------------------------------------------------ */

static int test_bad_modes(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	uint64_t ioctls = 0xdead;
	char *area = t_map(FL_MEM_ANON, page, NULL);
	int uffd = t_uffd(0);

	T_ASSERT_EQ(fl_uffd_register(uffd, area, page, 0, &ioctls), -EINVAL);
	T_ASSERT_EQ(fl_uffd_register(uffd, area, page, 1u << 3, &ioctls), -EINVAL);
	T_ASSERT_EQ(fl_uffd_register(uffd, area, page, FL_REG_MISSING | (1u << 7), &ioctls),
		    -EINVAL);
	T_ASSERT_EQ(ioctls, 0xdead);
	/* Nothing was registered: another uffd can take the range. */
	T_OK(fl_uffd_register(t_uffd(0), area, page, FL_REG_MISSING, NULL));
	return T_PASS;
}

static int test_bad_range(void *arg)
{
	enum fl_mem_type mem = *(const enum fl_mem_type *)arg;
	const size_t page = t_page_size(mem), small = t_page_size(FL_MEM_ANON);
	int uffd = kt_uffd_for(mem, FL_REG_MISSING, 0);
	char *area = t_map(mem, 2 * page, NULL);

	T_ASSERT_EQ(fl_uffd_register(uffd, area + 1, page, FL_REG_MISSING, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_register(uffd, area, page + 1, FL_REG_MISSING, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_register(uffd, area, page - 1, FL_REG_MISSING, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_register(uffd, area, 0, FL_REG_MISSING, NULL), -EINVAL);
	if (mem == FL_MEM_HUGETLB) {
		/* Base-page alignment is not enough for huge pages. */
		T_ASSERT_EQ(fl_uffd_register(uffd, area + small, page, FL_REG_MISSING, NULL),
			    -EINVAL);
		T_ASSERT_EQ(fl_uffd_register(uffd, area, small, FL_REG_MISSING, NULL), -EINVAL);
	}
	/* None of it registered anything. */
	T_OK(fl_uffd_register(kt_uffd_for(mem, FL_REG_MISSING, 0), area, 2 * page,
			      FL_REG_MISSING, NULL));
	return T_PASS;
}

static const enum fl_mem_type mem_anon = FL_MEM_ANON, mem_shmem = FL_MEM_SHMEM,
			      mem_hugetlb = FL_MEM_HUGETLB;

static int test_unmapped(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	int uffd = t_uffd(0), r;
	char *area = t_map(FL_MEM_ANON, 4 * page, NULL);

	T_ASSERT(munmap(area, 4 * page) == 0);
	r = fl_uffd_register(uffd, area, 4 * page, FL_REG_MISSING, NULL);
	/* Linux says ENOMEM only when no mapping lies above the range,
	 * EINVAL when the range is a hole below one. */
	T_ASSERT(r == -EINVAL || r == -ENOMEM, "register of an unmapped range: %d", r);
	return T_PASS;
}

static int test_ebusy(void *arg)
{
	enum fl_mem_type mem = *(const enum fl_mem_type *)arg;
	const size_t page = t_page_size(mem);
	int uffd1 = kt_uffd_for(mem, FL_REG_MISSING, 0);
	int uffd2 = kt_uffd_for(mem, FL_REG_MISSING, 0);
	char *area = t_map(mem, 2 * page, NULL);
	uint64_t ioctls = 0xdead;

	T_OK(fl_uffd_register(uffd1, area, 2 * page, FL_REG_MISSING, NULL));
	T_ASSERT_EQ(fl_uffd_register(uffd2, area, 2 * page, FL_REG_MISSING, &ioctls), -EBUSY);
	T_ASSERT_EQ(fl_uffd_register(uffd2, area + page, page, FL_REG_MISSING, &ioctls), -EBUSY);
	T_ASSERT_EQ(ioctls, 0xdead);
	/* Re-registering with the same uffd is allowed. */
	T_OK(fl_uffd_register(uffd1, area, page, FL_REG_MISSING, NULL));
	/* Faults still go to the first uffd. */
	{
		struct kt_toucher t;
		struct uffd_msg msg;
		void *zeros;

		kt_touch_start(&t, area + page, KT_READ, 0);
		kt_expect_fault(uffd1, &msg, area + page, page);
		T_ASSERT_EQ(kt_uffd_pending(uffd2), 0);
		zeros = calloc(1, page);
		T_ASSERT(zeros != NULL);
		T_OK(fl_uffd_copy(uffd1, area + page, zeros, page, 0, NULL));
		kt_touch_join(&t, KT_TIMEOUT_MS);
		T_ASSERT_EQ(t.read_value, 0);
	}
	/* After unregistering, the second uffd can have it. */
	T_OK(fl_uffd_unregister(uffd1, area, 2 * page));
	T_OK(fl_uffd_register(uffd2, area, 2 * page, FL_REG_MISSING, NULL));
	return T_PASS;
}

static int test_before_api(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	char *area = t_map(FL_MEM_ANON, page, NULL);
	int fd;

	T_ASSERT_EQ(fl_uffd_create(FL_UFFD_CLOEXEC, &fd), 0);
	T_ASSERT_EQ(fl_uffd_register(fd, area, page, FL_REG_MISSING, NULL), -EINVAL);
	T_OK(fl_uffd_api(fd, 0, NULL, NULL));
	T_OK(fl_uffd_register(fd, area, page, FL_REG_MISSING, NULL));
	return T_PASS;
}

/*
 * After unregistering, faults are the kernel's again: a thread touching the
 * range is served (zeros, or the page cache) without a message.
 */
static void expect_not_caught(int uffd, char *addr, uint8_t expect)
{
	struct kt_toucher t;
	uint64_t deadline = t_now_ns() + KT_TIMEOUT_MS * 1000000ull;

	kt_touch_start(&t, addr, KT_READ, 0);
	while (!atomic_load(&t.done)) {
		T_ASSERT(kt_uffd_pending(uffd) == 0,
			 "fault on an unregistered range reached the uffd");
		T_ASSERT(t_now_ns() < deadline, "touch of an unregistered page hangs");
		t_sleep_ms(1);
	}
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ(t.read_value, expect);
}

static int test_unregister(void *arg)
{
	enum fl_mem_type mem = *(const enum fl_mem_type *)arg;
	const size_t page = t_page_size(mem);
	int uffd = kt_uffd_for(mem, FL_REG_MISSING, 0), memfd;
	char *area = t_map(mem, 2 * page, &memfd);

	T_OK(fl_uffd_register(uffd, area, 2 * page, FL_REG_MISSING, NULL));
	T_OK(fl_uffd_unregister(uffd, area, 2 * page));
	expect_not_caught(uffd, area, 0);
	expect_not_caught(uffd, area + page + 5, 0);
	T_ASSERT_EQ(kt_uffd_pending(uffd), 0);
	/* And another uffd may now register it. */
	T_OK(fl_uffd_register(kt_uffd_for(mem, FL_REG_MISSING, 0), area, 2 * page,
			      FL_REG_MISSING, NULL));
	return T_PASS;
}

/* Unregistering part of a range leaves the rest registered. */
static int test_unregister_partial(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	int uffd = t_uffd(0);
	char *area = t_map(FL_MEM_ANON, 4 * page, NULL);
	struct kt_toucher t;
	struct uffd_msg msg;

	T_OK(fl_uffd_register(uffd, area, 4 * page, FL_REG_MISSING, NULL));
	T_OK(fl_uffd_unregister(uffd, area + 2 * page, 2 * page));
	expect_not_caught(uffd, area + 3 * page, 0);
	kt_touch_start(&t, area + page, KT_READ, 0);
	kt_expect_fault(uffd, &msg, area + page, page);
	T_OK(fl_uffd_zeropage(uffd, area + page, page, 0, NULL));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	return T_PASS;
}

/* The mask hides the POISON and MOVE ioctls of a registration. */
static int test_ioctls_masked(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	int uffd = t_uffd(0);
	char *area = t_map(FL_MEM_ANON, 2 * page, NULL);
	uint64_t ioctls = 0;

	t_require(FL_FEATURE_BIT(FL_FEATURE_IOCTL_POISON) | FL_FEATURE_BIT(FL_FEATURE_IOCTL_MOVE));
	T_OK(fl_uffd_register(uffd, area, page, FL_REG_MISSING, &ioctls));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_POISON));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_MOVE));

	setenv("FAULTLINE_MASK_FEATURES", "poison", 1);
	T_OK(fl_uffd_register(uffd, area + page, page, FL_REG_MISSING, &ioctls));
	T_ASSERT(!fl_ioctls_has(ioctls, FL_IOCTL_POISON));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_MOVE));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_COPY));

	setenv("FAULTLINE_MASK_FEATURES", "move", 1);
	T_OK(fl_uffd_register(uffd, area + page, page, FL_REG_MISSING, &ioctls));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_POISON));
	T_ASSERT(!fl_ioctls_has(ioctls, FL_IOCTL_MOVE));
	T_ASSERT(fl_ioctls_has(ioctls, FL_IOCTL_ZEROPAGE));
	return T_PASS;
}

static const char *const mode_names[] = {
	"missing", "wp", "minor", "missing_wp", "missing_minor", "wp_minor", "all",
};

int main(int argc, char **argv)
{
	struct t_case cases[3 * 7 + 16];
	static char names[3 * 7][48];
	size_t n = 0;

	for (int m = 0; m < 3; m++) {
		for (int i = 0; i < 7; i++) {
			char *name = names[m * 7 + i];
			snprintf(name, sizeof(names[0]), "register_%s_%s", mode_names[i],
				 t_mem_name(t_mem_types[m]));
			cases[n++] = (struct t_case){ name, test_register, (void *)&reg_cases[m][i], 0,
						      KT_NEEDS(reg_cases[m][i].mem, reg_cases[m][i].modes) };
		}
	}
	cases[n++] = (struct t_case){ "register_bad_modes", test_bad_modes, NULL, 0 };
	cases[n++] = (struct t_case){ "register_bad_range_anon", test_bad_range, (void *)&mem_anon, 0 };
	cases[n++] = (struct t_case){ "register_bad_range_shmem", test_bad_range, (void *)&mem_shmem, 0, KT_NEEDS(FL_MEM_SHMEM, FL_REG_MISSING) };
	cases[n++] = (struct t_case){ "register_bad_range_hugetlb", test_bad_range, (void *)&mem_hugetlb, 0, KT_NEEDS(FL_MEM_HUGETLB, FL_REG_MISSING) };
	cases[n++] = (struct t_case){ "register_unmapped", test_unmapped, NULL, 0 };
	cases[n++] = (struct t_case){ "register_ebusy_anon", test_ebusy, (void *)&mem_anon, 0 };
	cases[n++] = (struct t_case){ "register_ebusy_shmem", test_ebusy, (void *)&mem_shmem, 0, KT_NEEDS(FL_MEM_SHMEM, FL_REG_MISSING) };
	cases[n++] = (struct t_case){ "register_ebusy_hugetlb", test_ebusy, (void *)&mem_hugetlb, 0, KT_NEEDS(FL_MEM_HUGETLB, FL_REG_MISSING) };
	cases[n++] = (struct t_case){ "register_before_api", test_before_api, NULL, 0 };
	cases[n++] = (struct t_case){ "unregister_anon", test_unregister, (void *)&mem_anon, 0 };
	cases[n++] = (struct t_case){ "unregister_shmem", test_unregister, (void *)&mem_shmem, 0, KT_NEEDS(FL_MEM_SHMEM, FL_REG_MISSING) };
	cases[n++] = (struct t_case){ "unregister_hugetlb", test_unregister, (void *)&mem_hugetlb, 0, KT_NEEDS(FL_MEM_HUGETLB, FL_REG_MISSING) };
	cases[n++] = (struct t_case){ "unregister_partial", test_unregister_partial, NULL, 0 };
	cases[n++] = (struct t_case){ "register_ioctls_masked", test_ioctls_masked, NULL, 0, T_IOCTL_POISON | T_IOCTL_MOVE };
	return t_main(argc, argv, cases, n);
}
