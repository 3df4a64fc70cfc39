// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Resolving faults: COPY, ZEROPAGE, CONTINUE, WRITEPROTECT, WAKE, POISON and
 * MOVE over the memory types each applies to, with DONTWAKE and MODE_WP, and
 * the error table every resolving call shares (EEXIST and ENOENT with the
 * progress made before them, EFAULT, EINVAL, masked features).
 *
 * A toucher thread takes the fault; the case's main thread reads the message
 * and resolves it, then checks what the toucher saw.
 */
#include "kt.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct env {
	enum fl_mem_type mem;
	size_t page, len;
	unsigned npages;
	int uffd, memfd;
	char *area;
};

/* Small pages per case; huge pages are scarcer. */
static unsigned npages_for(enum fl_mem_type mem, unsigned small)
{
	return mem == FL_MEM_HUGETLB ? 2 : small;
}

static void setup(struct env *e, enum fl_mem_type mem, unsigned npages, unsigned modes,
		  uint64_t extra_features)
{
	e->mem = mem;
	e->page = t_page_size(mem);
	e->npages = npages;
	e->len = npages * e->page;
	e->uffd = kt_uffd_for(mem, modes, extra_features);
	e->area = t_map(mem, e->len, &e->memfd);
	if (modes)
		T_OK(fl_uffd_register(e->uffd, e->area, e->len, modes, NULL));
}

/* Write pattern `seed` into the page cache behind a memfd mapping. */
static void fill_page_cache(struct env *e, uint32_t seed)
{
	void *alias = mmap(NULL, e->len, PROT_READ | PROT_WRITE, MAP_SHARED, e->memfd, 0);

	T_ASSERT(alias != MAP_FAILED, "mmap alias: %s", strerror(errno));
	t_fill_pattern(alias, e->len, 0, seed);
	munmap(alias, e->len);
}

static const enum fl_mem_type mem_anon = FL_MEM_ANON, mem_shmem = FL_MEM_SHMEM,
			      mem_hugetlb = FL_MEM_HUGETLB;
#define MEM(arg) (*(const enum fl_mem_type *)(arg))

/* ---- COPY -------------------------------------------------------------- */

static int test_copy(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;
	size_t done = 0;
	uint8_t *src;

	setup(&e, MEM(arg), npages_for(MEM(arg), 4), FL_REG_MISSING, 0);
	src = t_pattern_buf(e.len, 0, 21);
	kt_touch_start(&t, e.area + e.page + 33, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area + e.page, e.page);
	T_OK(fl_uffd_copy(e.uffd, e.area, src, e.len, 0, &done));
	T_ASSERT_EQ(done, e.len);
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ(t.read_value, src[e.page + 33]);
	kt_assert_pattern(e.area, e.len, 0, 21);
	return T_PASS;
}

static int test_copy_dontwake(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;
	size_t done = 0;
	uint8_t *src;

	setup(&e, MEM(arg), npages_for(MEM(arg), 2), FL_REG_MISSING, 0);
	src = t_pattern_buf(e.page, 0, 22);
	kt_touch_start(&t, e.area + 9, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_OK(fl_uffd_copy(e.uffd, e.area, src, e.page, FL_DONTWAKE, &done));
	T_ASSERT_EQ(done, e.page);
	/* The page is mapped (we can read it), but its faulter sleeps. */
	kt_assert_pattern(e.area, e.page, 0, 22);
	kt_touch_still_blocked(&t, 100);
	T_OK(fl_uffd_wake(e.uffd, e.area, e.page));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ(t.read_value, src[9]);
	return T_PASS;
}

static int test_copy_wp(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;
	uint8_t *src;

	setup(&e, MEM(arg), npages_for(MEM(arg), 2), FL_REG_MISSING | FL_REG_WP, 0);
	src = t_pattern_buf(e.page, 0, 23);
	kt_touch_start(&t, e.area + 40, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_ASSERT(!fl_msg_fault_wp(&msg));
	T_OK(fl_uffd_copy(e.uffd, e.area, src, e.page, FL_MODE_WP, NULL));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ(t.read_value, src[40]);
	/* Mapped write-protected: a write is a WP fault. */
	kt_touch_start(&t, e.area + 40, KT_WRITE, 0x5c);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_ASSERT(fl_msg_fault_wp(&msg) && fl_msg_fault_write(&msg), "flags 0x%llx",
		 (unsigned long long)msg.arg.pagefault.flags);
	kt_touch_still_blocked(&t, 20);
	T_ASSERT_EQ((uint8_t)e.area[40], src[40]);
	T_OK(fl_uffd_writeprotect(e.uffd, e.area, e.page, 0));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ((uint8_t)e.area[40], 0x5c);
	kt_assert_pattern(e.area, 40, 0, 23);
	kt_assert_pattern(e.area + 41, e.page - 41, 41, 23);
	return T_PASS;
}

/* ---- ZEROPAGE ---------------------------------------------------------- */

static int test_zeropage(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;
	size_t done = 12345;
	uint8_t *src;

	setup(&e, MEM(arg), npages_for(MEM(arg), 2), FL_REG_MISSING, 0);
	src = t_pattern_buf(e.page, 0, 24);
	kt_touch_start(&t, e.area + e.page + 3, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area + e.page, e.page);
	if (e.mem == FL_MEM_HUGETLB) {
		/* No zero-fill for huge pages: the kernel refuses, and
		 * nothing is mapped (a COPY still resolves the fault). */
		int r = fl_uffd_zeropage(e.uffd, e.area + e.page, e.page, 0, &done);
		T_ASSERT(r == -EINVAL || r == -EOPNOTSUPP, "zeropage on hugetlb: %d", r);
		T_ASSERT_EQ(done, 0);
		kt_touch_still_blocked(&t, 20);
		T_OK(fl_uffd_copy(e.uffd, e.area + e.page, src, e.page, 0, NULL));
		kt_touch_join(&t, KT_TIMEOUT_MS);
		T_ASSERT_EQ(t.read_value, src[3]);
		return T_PASS;
	}
	T_OK(fl_uffd_zeropage(e.uffd, e.area + e.page, e.page, 0, &done));
	T_ASSERT_EQ(done, e.page);
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ(t.read_value, 0);
	kt_assert_zero(e.area + e.page, e.page);
	/* A page is really there: a COPY onto it finds it. */
	done = 12345;
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area + e.page, src, e.page, 0, &done), -EEXIST);
	T_ASSERT_EQ(done, 0);
	kt_assert_zero(e.area + e.page, e.page);
	return T_PASS;
}

/* ---- CONTINUE ---------------------------------------------------------- */

static int test_continue(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;
	size_t done = 0;

	setup(&e, MEM(arg), npages_for(MEM(arg), 4), FL_REG_MINOR, 0);
	fill_page_cache(&e, 25);
	kt_touch_start(&t, e.area + e.page + 77, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area + e.page, e.page);
	T_ASSERT(fl_msg_fault_minor(&msg), "flags 0x%llx",
		 (unsigned long long)msg.arg.pagefault.flags);
	/* One CONTINUE maps the whole range. */
	T_OK(fl_uffd_continue(e.uffd, e.area, e.len, 0, &done));
	T_ASSERT_EQ(done, e.len);
	kt_touch_join(&t, KT_TIMEOUT_MS);
	kt_assert_pattern(e.area, e.len, 0, 25);
	T_ASSERT_EQ(kt_uffd_pending(e.uffd), 0);
	/* It is the page cache, not a copy: a write shows through the fd. */
	e.area[5] = 0x42;
	{
		uint8_t *alias = mmap(NULL, e.page, PROT_READ, MAP_SHARED, e.memfd, 0);
		T_ASSERT(alias != MAP_FAILED);
		T_ASSERT_EQ(alias[5], 0x42);
	}
	return T_PASS;
}

static int test_continue_dontwake(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;

	setup(&e, MEM(arg), npages_for(MEM(arg), 2), FL_REG_MINOR, 0);
	fill_page_cache(&e, 26);
	kt_touch_start(&t, e.area + 8, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_OK(fl_uffd_continue(e.uffd, e.area, e.page, FL_DONTWAKE, NULL));
	kt_assert_pattern(e.area, e.page, 0, 26);
	kt_touch_still_blocked(&t, 100);
	T_OK(fl_uffd_wake(e.uffd, e.area, e.page));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	kt_assert_pattern((const void *)&t.read_value, 1, 8, 26);
	return T_PASS;
}

static int test_continue_wp(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;

	t_require(FL_FEATURE_BIT(FL_FEATURE_CONTINUE_MODE_WP));
	setup(&e, MEM(arg), npages_for(MEM(arg), 2), FL_REG_MINOR | FL_REG_WP, 0);
	fill_page_cache(&e, 27);
	kt_touch_start(&t, e.area + 8, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_ASSERT(fl_msg_fault_minor(&msg));
	T_OK(fl_uffd_continue(e.uffd, e.area, e.page, FL_MODE_WP, NULL));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	kt_touch_start(&t, e.area + 8, KT_WRITE, 0x99);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_ASSERT(fl_msg_fault_wp(&msg) && fl_msg_fault_write(&msg), "flags 0x%llx",
		 (unsigned long long)msg.arg.pagefault.flags);
	kt_touch_still_blocked(&t, 20);
	kt_assert_pattern(e.area, e.page, 0, 27);
	T_OK(fl_uffd_writeprotect(e.uffd, e.area, e.page, 0));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ((uint8_t)e.area[8], 0x99);
	return T_PASS;
}

/* CONTINUE needs a page in the page cache; without one the kernel says EFAULT. */
static int test_continue_no_page(void *arg)
{
	struct env e;
	size_t done = 12345;

	setup(&e, MEM(arg), npages_for(MEM(arg), 2), FL_REG_MINOR, 0);
	T_ASSERT_EQ(fl_uffd_continue(e.uffd, e.area, e.page, 0, &done), -EFAULT);
	T_ASSERT_EQ(done, 0);
	return T_PASS;
}

/* ---- WRITEPROTECT ------------------------------------------------------ */

static int test_writeprotect(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;

	setup(&e, MEM(arg), npages_for(MEM(arg), 2), 0, kt_features_for(MEM(arg), FL_REG_WP));
	memset(e.area, 0x33, e.len);	/* present pages: no WP_UNPOPULATED needed */
	T_OK(fl_uffd_register(e.uffd, e.area, e.len, FL_REG_WP, NULL));
	T_OK(fl_uffd_writeprotect(e.uffd, e.area, e.len, FL_WP_PROTECT));
	/* Reads are not faults. */
	T_ASSERT_EQ((uint8_t)e.area[e.page + 1], 0x33);
	T_ASSERT_EQ(kt_uffd_pending(e.uffd), 0);

	kt_touch_start(&t, e.area + e.page + 1, KT_WRITE, 0x44);
	kt_expect_fault(e.uffd, &msg, e.area + e.page, e.page);
	T_ASSERT(fl_msg_fault_wp(&msg) && fl_msg_fault_write(&msg), "flags 0x%llx",
		 (unsigned long long)msg.arg.pagefault.flags);
	T_ASSERT(!fl_msg_fault_minor(&msg));
	kt_touch_still_blocked(&t, 20);
	T_ASSERT_EQ((uint8_t)e.area[e.page + 1], 0x33);
	T_OK(fl_uffd_writeprotect(e.uffd, e.area + e.page, e.page, 0));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ((uint8_t)e.area[e.page + 1], 0x44);
	/* The first page is still protected. */
	kt_touch_start(&t, e.area, KT_WRITE, 0x55);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_ASSERT(fl_msg_fault_wp(&msg));
	T_OK(fl_uffd_writeprotect(e.uffd, e.area, e.page, 0));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ((uint8_t)e.area[0], 0x55);
	/* Unprotected pages are written without faults. */
	e.area[2] = 0x66;
	T_ASSERT_EQ(kt_uffd_pending(e.uffd), 0);
	return T_PASS;
}

static int test_writeprotect_dontwake(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;

	setup(&e, MEM(arg), npages_for(MEM(arg), 1), 0, kt_features_for(MEM(arg), FL_REG_WP));
	memset(e.area, 0x33, e.len);
	T_OK(fl_uffd_register(e.uffd, e.area, e.len, FL_REG_WP, NULL));
	T_OK(fl_uffd_writeprotect(e.uffd, e.area, e.len, FL_WP_PROTECT));
	kt_touch_start(&t, e.area + 1, KT_WRITE, 0x44);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_OK(fl_uffd_writeprotect(e.uffd, e.area, e.page, FL_DONTWAKE));
	kt_touch_still_blocked(&t, 100);
	/* Unprotected: our own write goes through without a fault. */
	e.area[2] = 0x77;
	T_OK(fl_uffd_wake(e.uffd, e.area, e.page));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ((uint8_t)e.area[1], 0x44);
	T_ASSERT_EQ((uint8_t)e.area[2], 0x77);
	T_ASSERT_EQ(kt_uffd_pending(e.uffd), 0);
	return T_PASS;
}

/* WRITEPROTECT on a range registered without WP: ENOENT. */
static int test_writeprotect_not_wp(void *arg)
{
	struct env e;

	setup(&e, FL_MEM_ANON, 2, FL_REG_MISSING, kt_features_for(FL_MEM_ANON, FL_REG_WP));
	T_ASSERT_EQ(fl_uffd_writeprotect(e.uffd, e.area, e.len, FL_WP_PROTECT), -ENOENT);
	return T_PASS;
}

/* ---- WAKE -------------------------------------------------------------- */

/* WAKE without resolving: the faulter retries and the fault comes again. */
static int test_wake(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;
	uint8_t *src;

	setup(&e, MEM(arg), npages_for(MEM(arg), 2), FL_REG_MISSING, 0);
	src = t_pattern_buf(e.page, 0, 28);
	kt_touch_start(&t, e.area + e.page + 5, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area + e.page, e.page);
	T_ASSERT_EQ(kt_uffd_pending(e.uffd), 0);
	T_OK(fl_uffd_wake(e.uffd, e.area + e.page, e.page));
	kt_expect_fault(e.uffd, &msg, e.area + e.page, e.page);
	/* Waking another range does nothing. */
	T_OK(fl_uffd_wake(e.uffd, e.area, e.page));
	kt_expect_no_msg(e.uffd, 50);
	T_ASSERT(!atomic_load(&t.done));
	T_OK(fl_uffd_copy(e.uffd, e.area + e.page, src, e.page, 0, NULL));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ(t.read_value, src[5]);
	return T_PASS;
}

/* ---- POISON ------------------------------------------------------------ */

static void read_byte(void *arg)
{
	(void)*(volatile uint8_t *)arg;
}

static void write_byte(void *arg)
{
	*(volatile uint8_t *)arg = 1;
}

static int test_poison(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;
	size_t done = 0;
	uint8_t *src;

	t_require(FL_FEATURE_BIT(FL_FEATURE_POISON));
	setup(&e, MEM(arg), 3, FL_REG_MISSING, UFFD_FEATURE_POISON);
	src = t_pattern_buf(e.page, 0, 29);
	/* Poisoning the faulting page wakes the faulter with SIGBUS. */
	kt_touch_start(&t, e.area + 10, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_OK(fl_uffd_poison(e.uffd, e.area, e.page, 0, &done));
	T_ASSERT_EQ(done, e.page);
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT(atomic_load(&t.sigbus), "faulter woke without SIGBUS");
	/* And every later access, read or write, from any thread. */
	T_ASSERT(kt_catch_sigbus(read_byte, e.area), "read of a poisoned page");
	T_ASSERT(kt_catch_sigbus(write_byte, e.area + e.page - 1), "write to a poisoned page");
	/* Poison ahead of any fault: no message, SIGBUS at once. */
	T_OK(fl_uffd_poison(e.uffd, e.area + e.page, e.page, 0, NULL));
	T_ASSERT(kt_catch_sigbus(read_byte, e.area + e.page + 1));
	T_ASSERT_EQ(kt_uffd_pending(e.uffd), 0);
	/* Other pages are unaffected. */
	T_OK(fl_uffd_copy(e.uffd, e.area + 2 * e.page, src, e.page, 0, NULL));
	T_ASSERT(!kt_catch_sigbus(read_byte, e.area + 2 * e.page));
	kt_assert_pattern(e.area + 2 * e.page, e.page, 0, 29);
	/* A mapped page cannot be poisoned. */
	done = 12345;
	T_ASSERT_EQ(fl_uffd_poison(e.uffd, e.area + 2 * e.page, e.page, 0, &done), -EEXIST);
	T_ASSERT_EQ(done, 0);
	return T_PASS;
}

/* In a forked child, an access to a poisoned page kills it with SIGBUS. */
static int poisoned_child(void *arg)
{
	struct env e;

	setup(&e, FL_MEM_ANON, 1, FL_REG_MISSING, UFFD_FEATURE_POISON);
	T_OK(fl_uffd_poison(e.uffd, e.area, e.page, 0, NULL));
	signal(SIGBUS, SIG_DFL);
	read_byte(e.area);
	return 42;
}

static int test_poison_kills(void *arg)
{
	int status;

	t_require(FL_FEATURE_BIT(FL_FEATURE_POISON));
	status = t_fork_wait(poisoned_child, NULL);
	T_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		 "child status 0x%x, expected death by SIGBUS", status);
	return T_PASS;
}

/* ---- MOVE -------------------------------------------------------------- */

static char *map_src(size_t len, uint32_t seed)
{
	char *src = t_map(FL_MEM_ANON, len, NULL);

	t_fill_pattern(src, len, 0, seed);
	return src;
}

static int test_move(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;
	size_t done = 0;
	char *src;

	t_require(FL_FEATURE_BIT(FL_FEATURE_MOVE));
	setup(&e, FL_MEM_ANON, 4, FL_REG_MISSING, UFFD_FEATURE_MOVE);
	src = map_src(e.len, 30);
	kt_touch_start(&t, e.area + 2 * e.page + 6, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area + 2 * e.page, e.page);
	T_OK(fl_uffd_move(e.uffd, e.area, src, e.len, 0, &done));
	T_ASSERT_EQ(done, e.len);
	kt_touch_join(&t, KT_TIMEOUT_MS);
	kt_assert_pattern((const void *)&t.read_value, 1, 2 * e.page + 6, 30);
	kt_assert_pattern(e.area, e.len, 0, 30);
	/* Moved, not copied: the source pages are gone. */
	for (unsigned i = 0; i < e.npages; i++)
		T_ASSERT(!kt_page_present(src + i * e.page), "source page %u still mapped", i);
	kt_assert_zero(src, e.len);
	return T_PASS;
}

static int test_move_src_holes(void *arg)
{
	struct env e;
	size_t done = 12345;
	char *src;

	t_require(FL_FEATURE_BIT(FL_FEATURE_MOVE));
	setup(&e, FL_MEM_ANON, 4, FL_REG_MISSING, UFFD_FEATURE_MOVE);
	src = map_src(e.len, 31);
	/* A hole at source page 2. */
	T_ASSERT(madvise(src + 2 * e.page, e.page, MADV_DONTNEED) == 0);
	T_ASSERT(!kt_page_present(src + 2 * e.page));

	/* Without ALLOW_SRC_HOLES: ENOENT at the hole, after two pages. */
	T_ASSERT_EQ(fl_uffd_move(e.uffd, e.area, src, e.len, 0, &done), -ENOENT);
	T_ASSERT_EQ(done, 2 * e.page);
	kt_assert_pattern(e.area, 2 * e.page, 0, 31);
	T_ASSERT(!kt_page_present(src) && !kt_page_present(src + e.page));
	T_ASSERT(kt_page_present(src + 3 * e.page));

	/* With it: the hole is skipped, the rest moves. */
	done = 12345;
	T_OK(fl_uffd_move(e.uffd, e.area + 2 * e.page, src + 2 * e.page, 2 * e.page,
			  FL_ALLOW_SRC_HOLES, &done));
	T_ASSERT_EQ(done, 2 * e.page);
	T_ASSERT(!kt_page_present(e.area + 2 * e.page), "a hole was moved in");
	kt_assert_pattern(e.area + 3 * e.page, e.page, 3 * e.page, 31);
	T_ASSERT(!kt_page_present(src + 3 * e.page));
	/* The destination hole is still missing: it faults. */
	{
		struct kt_toucher t;
		struct uffd_msg msg;
		kt_touch_start(&t, e.area + 2 * e.page, KT_READ, 0);
		kt_expect_fault(e.uffd, &msg, e.area + 2 * e.page, e.page);
		T_OK(fl_uffd_zeropage(e.uffd, e.area + 2 * e.page, e.page, 0, NULL));
		kt_touch_join(&t, KT_TIMEOUT_MS);
	}
	return T_PASS;
}

static int test_move_dontwake(void *arg)
{
	struct env e;
	struct kt_toucher t;
	struct uffd_msg msg;
	char *src;

	t_require(FL_FEATURE_BIT(FL_FEATURE_MOVE));
	setup(&e, FL_MEM_ANON, 1, FL_REG_MISSING, UFFD_FEATURE_MOVE);
	src = map_src(e.len, 32);
	kt_touch_start(&t, e.area + 7, KT_READ, 0);
	kt_expect_fault(e.uffd, &msg, e.area, e.page);
	T_OK(fl_uffd_move(e.uffd, e.area, src, e.page, FL_DONTWAKE, NULL));
	kt_assert_pattern(e.area, e.page, 0, 32);
	kt_touch_still_blocked(&t, 100);
	T_OK(fl_uffd_wake(e.uffd, e.area, e.page));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	kt_assert_pattern((const void *)&t.read_value, 1, 7, 32);
	return T_PASS;
}

/* MOVE is for private anonymous memory only. */
static int test_move_shmem(void *arg)
{
	struct env e;
	size_t done = 12345;
	char *src;

	t_require(FL_FEATURE_BIT(FL_FEATURE_MOVE));
	setup(&e, FL_MEM_SHMEM, 1, FL_REG_MISSING, UFFD_FEATURE_MOVE);
	src = map_src(e.len, 33);
	T_ASSERT_EQ(fl_uffd_move(e.uffd, e.area, src, e.len, 0, &done), -EINVAL);
	T_ASSERT_EQ(done, 0);
	kt_assert_pattern(src, e.len, 0, 33);
	return T_PASS;
}

/* ---- the error table --------------------------------------------------- */

/* COPY over a range whose last page is mapped: EEXIST, after the others. */
static int test_copy_eexist(void *arg)
{
	struct env e;
	size_t done = 12345, last;
	uint8_t *src;

	setup(&e, MEM(arg), npages_for(MEM(arg), 4), FL_REG_MISSING, 0);
	last = (e.npages - 1) * e.page;
	src = t_pattern_buf(e.len, 0, 34);
	T_OK(fl_uffd_copy(e.uffd, e.area + last, src, e.page, 0, NULL));	/* "another thread won" */
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.len, 0, &done), -EEXIST);
	T_ASSERT_EQ(done, last);
	kt_assert_pattern(e.area, last, 0, 34);
	/* The page that was there is untouched. */
	kt_assert_pattern(e.area + last, e.page, 0, 34);
	/* EEXIST on the first page: nothing done. */
	done = 12345;
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.len, 0, &done), -EEXIST);
	T_ASSERT_EQ(done, 0);
	return T_PASS;
}

/* A bad page in the middle of the source: EFAULT after the good ones. */
static int test_copy_partial_efault(void *arg)
{
	struct env e;
	size_t done = 12345;
	char *src;

	setup(&e, FL_MEM_ANON, 4, FL_REG_MISSING, 0);
	src = map_src(e.len, 35);
	T_ASSERT(mprotect(src + 2 * e.page, e.page, PROT_NONE) == 0);
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.len, 0, &done), -EFAULT);
	T_ASSERT_EQ(done, 2 * e.page);
	kt_assert_pattern(e.area, 2 * e.page, 0, 35);
	T_ASSERT(!kt_page_present(e.area + 2 * e.page));
	T_ASSERT(!kt_page_present(e.area + 3 * e.page));
	/* The rest can be resolved once the source is fixed. */
	T_ASSERT(mprotect(src + 2 * e.page, e.page, PROT_READ | PROT_WRITE) == 0);
	done = 12345;
	T_OK(fl_uffd_copy(e.uffd, e.area + 2 * e.page, src + 2 * e.page, 2 * e.page, 0, &done));
	T_ASSERT_EQ(done, 2 * e.page);
	kt_assert_pattern(e.area, e.len, 0, 35);
	return T_PASS;
}

static int test_copy_bad_src(void *arg)
{
	struct env e;
	size_t done = 12345;
	char *src;

	setup(&e, FL_MEM_ANON, 2, FL_REG_MISSING, 0);
	src = t_map(FL_MEM_ANON, e.len, NULL);
	T_ASSERT(munmap(src, e.len) == 0);
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.len, 0, &done), -EFAULT);
	T_ASSERT_EQ(done, 0);
	T_ASSERT(!kt_page_present(e.area));
	return T_PASS;
}

static int test_copy_unaligned(void *arg)
{
	struct env e;
	size_t done = 12345, small = t_page_size(FL_MEM_ANON);
	uint8_t *src;

	setup(&e, MEM(arg), npages_for(MEM(arg), 2), FL_REG_MISSING, 0);
	src = t_pattern_buf(e.len, 0, 36);
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area + 1, src, e.page, 0, &done), -EINVAL);
	T_ASSERT_EQ(done, 0);
	done = 12345;
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.page + 1, 0, &done), -EINVAL);
	T_ASSERT_EQ(done, 0);
	if (e.mem == FL_MEM_HUGETLB) {
		done = 12345;
		T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area + small, src, e.page, 0, &done), -EINVAL);
		T_ASSERT_EQ(done, 0);
		done = 12345;
		T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, small, 0, &done), -EINVAL);
		T_ASSERT_EQ(done, 0);
	} else {
		done = 12345;
		T_ASSERT_EQ(fl_uffd_zeropage(e.uffd, e.area + 1, e.page, 0, &done), -EINVAL);
		T_ASSERT_EQ(done, 0);
	}
	/* Nothing was mapped by the refused calls. */
	T_OK(fl_uffd_copy(e.uffd, e.area, src, e.len, 0, NULL));
	return T_PASS;
}

/* COPY outside any registered range: ENOENT. */
static int test_copy_unregistered(void *arg)
{
	struct env e;
	size_t done = 12345;
	uint8_t *src;
	char *other;

	setup(&e, FL_MEM_ANON, 1, FL_REG_MISSING, 0);
	src = t_pattern_buf(e.page, 0, 37);
	other = t_map(FL_MEM_ANON, e.page, NULL);
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, other, src, e.page, 0, &done), -ENOENT);
	T_ASSERT_EQ(done, 0);
	/* Registered, then unregistered: the same. */
	T_OK(fl_uffd_unregister(e.uffd, e.area, e.len));
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.page, 0, &done), -ENOENT);
	return T_PASS;
}

/* COPY with MODE_WP on a range registered without WP: EINVAL. */
static int test_copy_wp_not_registered(void *arg)
{
	struct env e;
	size_t done = 12345;
	uint8_t *src;

	setup(&e, FL_MEM_ANON, 1, FL_REG_MISSING, 0);
	src = t_pattern_buf(e.page, 0, 38);
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.page, FL_MODE_WP, &done), -EINVAL);
	T_ASSERT_EQ(done, 0);
	return T_PASS;
}

/* Flags a call does not accept: EINVAL, nothing done. */
static int test_invalid_flags(void *arg)
{
	struct env e;
	uint8_t *src;
	char *msrc;

	setup(&e, FL_MEM_ANON, 1, FL_REG_MISSING | FL_REG_WP, 0);
	src = t_pattern_buf(e.page, 0, 39);
	msrc = map_src(e.page, 39);
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.page, 1u << 7, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.page, FL_ALLOW_SRC_HOLES, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.page, FL_WP_PROTECT, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_zeropage(e.uffd, e.area, e.page, FL_MODE_WP, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_zeropage(e.uffd, e.area, e.page, 1u << 7, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_continue(e.uffd, e.area, e.page, FL_ALLOW_SRC_HOLES, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_poison(e.uffd, e.area, e.page, FL_MODE_WP, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_move(e.uffd, e.area, msrc, e.page, FL_MODE_WP, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_move(e.uffd, e.area, msrc, e.page, FL_WP_PROTECT, NULL), -EINVAL);
	T_ASSERT_EQ(fl_uffd_writeprotect(e.uffd, e.area, e.page, FL_MODE_WP), -EINVAL);
	T_ASSERT_EQ(fl_uffd_writeprotect(e.uffd, e.area, e.page, 1u << 7), -EINVAL);
	/* Nothing was resolved, moved or poisoned. */
	T_ASSERT(!kt_page_present(e.area));
	kt_assert_pattern(msrc, e.page, 0, 39);
	T_OK(fl_uffd_copy(e.uffd, e.area, src, e.page, 0, NULL));
	kt_assert_pattern(e.area, e.page, 0, 39);
	return T_PASS;
}

/*
 * uffd.h: "*ret_done (optional) always receives the number of bytes
 * resolved, also on error". Refused flags are an error too.
 */
static int test_done_on_invalid_flags(void *arg)
{
	struct env e;
	size_t done;
	uint8_t *src;

	setup(&e, FL_MEM_ANON, 1, FL_REG_MISSING, 0);
	src = t_pattern_buf(e.page, 0, 40);
	done = 12345;
	T_ASSERT_EQ(fl_uffd_copy(e.uffd, e.area, src, e.page, 1u << 7, &done), -EINVAL);
	T_ASSERT(done == 0, "fl_uffd_copy left *ret_done = %zu", done);
	done = 12345;
	T_ASSERT_EQ(fl_uffd_zeropage(e.uffd, e.area, e.page, 1u << 7, &done), -EINVAL);
	T_ASSERT(done == 0, "fl_uffd_zeropage left *ret_done = %zu", done);
	done = 12345;
	T_ASSERT_EQ(fl_uffd_continue(e.uffd, e.area, e.page, 1u << 7, &done), -EINVAL);
	T_ASSERT(done == 0, "fl_uffd_continue left *ret_done = %zu", done);
	done = 12345;
	T_ASSERT_EQ(fl_uffd_poison(e.uffd, e.area, e.page, 1u << 7, &done), -EINVAL);
	T_ASSERT(done == 0, "fl_uffd_poison left *ret_done = %zu", done);
	done = 12345;
	T_ASSERT_EQ(fl_uffd_move(e.uffd, e.area, src, e.page, 1u << 7, &done), -EINVAL);
	T_ASSERT(done == 0, "fl_uffd_move left *ret_done = %zu", done);
	return T_PASS;
}

/* ---- masked features --------------------------------------------------- */

static int test_poison_masked(void *arg)
{
	struct env e;
	size_t done = 12345;
	uint8_t *src;

	t_require(FL_FEATURE_BIT(FL_FEATURE_POISON));
	setup(&e, FL_MEM_ANON, 1, FL_REG_MISSING, UFFD_FEATURE_POISON);
	setenv("FAULTLINE_MASK_FEATURES", "poison", 1);
	T_ASSERT_EQ(fl_uffd_poison(e.uffd, e.area, e.page, 0, &done), -EOPNOTSUPP);
	T_ASSERT_EQ(done, 0);
	/* Nothing was poisoned: the page is still missing. */
	src = t_pattern_buf(e.page, 0, 41);
	T_OK(fl_uffd_copy(e.uffd, e.area, src, e.page, 0, NULL));
	T_ASSERT(!kt_catch_sigbus(read_byte, e.area));
	kt_assert_pattern(e.area, e.page, 0, 41);
	return T_PASS;
}

static int test_move_masked(void *arg)
{
	struct env e;
	size_t done = 12345;
	char *src;

	t_require(FL_FEATURE_BIT(FL_FEATURE_MOVE));
	setup(&e, FL_MEM_ANON, 1, FL_REG_MISSING, UFFD_FEATURE_MOVE);
	src = map_src(e.page, 42);
	setenv("FAULTLINE_MASK_FEATURES", "move", 1);
	T_ASSERT_EQ(fl_uffd_move(e.uffd, e.area, src, e.page, 0, &done), -EOPNOTSUPP);
	T_ASSERT_EQ(done, 0);
	T_ASSERT(kt_page_present(src));
	T_ASSERT(!kt_page_present(e.area));
	kt_assert_pattern(src, e.page, 0, 42);
	/* The same call works once unmasked. */
	unsetenv("FAULTLINE_MASK_FEATURES");
	T_OK(fl_uffd_move(e.uffd, e.area, src, e.page, 0, &done));
	kt_assert_pattern(e.area, e.page, 0, 42);
	return T_PASS;
}

/* CONTINUE with MODE_WP masked: -EOPNOTSUPP, nothing mapped; unmasked it works. */
static int test_continue_wp_masked(void *arg)
{
	struct env e;
	size_t done = 12345;

	t_require(FL_FEATURE_BIT(FL_FEATURE_CONTINUE_MODE_WP));
	setup(&e, FL_MEM_SHMEM, 1, FL_REG_MINOR | FL_REG_WP, 0);
	fill_page_cache(&e, 43);
	setenv("FAULTLINE_MASK_FEATURES", "continue_mode_wp", 1);
	T_ASSERT_EQ(fl_uffd_continue(e.uffd, e.area, e.page, FL_MODE_WP, &done), -EOPNOTSUPP);
	T_ASSERT_EQ(done, 0);
	T_ASSERT(!kt_page_present(e.area));
	/* Without the mode bit CONTINUE is not affected by the mask. */
	T_OK(fl_uffd_continue(e.uffd, e.area, e.page, 0, &done));
	T_ASSERT_EQ(done, e.page);
	unsetenv("FAULTLINE_MASK_FEATURES");
	return T_PASS;
}

/*
 * CONTINUE with MODE_WP on a kernel without the mode (before 6.4): the
 * kernel's EINVAL is -EOPNOTSUPP, nothing mapped. The mask cannot stand in
 * for that kernel (continue_wp_masked tests the mask's own early return):
 * the case runs only where the kernel itself lacks the mode, e.g. Debian
 * 12's 6.1 in tools/vm-check.sh, which CI runs the kernel suite in. On a
 * kernel with the mode it skips, saying so, in every mode: the kernel does
 * not lack a feature this case would exercise.
 */
static int test_continue_wp_unsupported(void *arg)
{
	const uint64_t mode_wp = FL_FEATURE_BIT(FL_FEATURE_CONTINUE_MODE_WP);
	struct env e;
	size_t done = 12345;

	(void)arg;
	if (fl_features() & mode_wp)
		t_skip("the kernel has continue_mode_wp (continue_wp_* test it): this case needs one "
		       "without it (Linux < 6.4, tools/vm-check.sh --kernel 6.1)");
	if (fl_features_masked() & mode_wp)
		t_skip("continue_mode_wp masked by FAULTLINE_MASK_FEATURES, the kernel has it "
		       "(continue_wp_masked tests the mask)");
	setup(&e, FL_MEM_SHMEM, 1, FL_REG_MINOR | FL_REG_WP, 0);
	fill_page_cache(&e, 44);
	T_ASSERT_EQ(fl_uffd_continue(e.uffd, e.area, e.page, FL_MODE_WP, &done), -EOPNOTSUPP);
	T_ASSERT_EQ(done, 0);
	T_ASSERT(!kt_page_present(e.area));
	/* CONTINUE without the mode still maps the page. */
	T_OK(fl_uffd_continue(e.uffd, e.area, e.page, 0, &done));
	T_ASSERT_EQ(done, e.page);
	kt_assert_pattern(e.area, e.page, 0, 44);
	return T_PASS;
}

/* `modes`: what the case registers; `extra`: what else it needs (enum t_need). */
#define PER_MEM(name, fn, modes, extra)                                                         \
	{ name "_anon", fn, (void *)&mem_anon, 0, KT_NEEDS(FL_MEM_ANON, modes) | (extra) },      \
	PER_FILE_MEM(name, fn, modes, extra)
#define PER_FILE_MEM(name, fn, modes, extra)                                                    \
	{ name "_shmem", fn, (void *)&mem_shmem, 0, KT_NEEDS(FL_MEM_SHMEM, modes) | (extra) },   \
	{ name "_hugetlb", fn, (void *)&mem_hugetlb, 0, KT_NEEDS(FL_MEM_HUGETLB, modes) | (extra) }

static const struct t_case cases[] = {
	PER_MEM("copy", test_copy, FL_REG_MISSING, 0),
	PER_MEM("copy_dontwake", test_copy_dontwake, FL_REG_MISSING, 0),
	PER_MEM("copy_wp", test_copy_wp, FL_REG_MISSING | FL_REG_WP, 0),
	PER_MEM("zeropage", test_zeropage, FL_REG_MISSING, 0),
	PER_FILE_MEM("continue", test_continue, FL_REG_MINOR, 0),
	PER_FILE_MEM("continue_dontwake", test_continue_dontwake, FL_REG_MINOR, 0),
	PER_FILE_MEM("continue_wp", test_continue_wp, FL_REG_MINOR | FL_REG_WP, 0),
	PER_FILE_MEM("continue_no_page", test_continue_no_page, FL_REG_MINOR, 0),
	PER_MEM("writeprotect", test_writeprotect, FL_REG_WP, 0),
	PER_MEM("writeprotect_dontwake", test_writeprotect_dontwake, FL_REG_WP, 0),
	{ "writeprotect_not_wp", test_writeprotect_not_wp, NULL, 0, T_WP },
	PER_MEM("wake", test_wake, FL_REG_MISSING, 0),
	PER_MEM("poison", test_poison, FL_REG_MISSING, T_POISON),
	{ "poison_kills", test_poison_kills, NULL, 0, T_POISON },
	{ "move_anon", test_move, NULL, 0, T_MOVE },
	{ "move_src_holes_anon", test_move_src_holes, NULL, 0, T_MOVE },
	{ "move_dontwake_anon", test_move_dontwake, NULL, 0, T_MOVE },
	{ "move_shmem", test_move_shmem, NULL, 0, T_MOVE | T_MISSING_SHMEM },
	PER_MEM("copy_eexist", test_copy_eexist, FL_REG_MISSING, 0),
	{ "copy_partial_efault", test_copy_partial_efault, NULL, 0 },
	{ "copy_bad_src", test_copy_bad_src, NULL, 0 },
	PER_MEM("copy_unaligned", test_copy_unaligned, FL_REG_MISSING, 0),
	{ "copy_unregistered", test_copy_unregistered, NULL, 0 },
	{ "copy_wp_not_registered", test_copy_wp_not_registered, NULL, 0 },
	{ "invalid_flags", test_invalid_flags, NULL, 0, T_WP },
	{ "done_on_invalid_flags", test_done_on_invalid_flags, NULL, 0 },
	{ "poison_masked", test_poison_masked, NULL, 0, T_POISON },
	{ "move_masked", test_move_masked, NULL, 0, T_MOVE },
	{ "continue_wp_masked", test_continue_wp_masked, NULL, 0, T_MINOR_SHMEM | T_WP_SHMEM_HUGETLB },
	{ "continue_wp_unsupported", test_continue_wp_unsupported, NULL, 0, T_MINOR_SHMEM | T_WP_SHMEM_HUGETLB },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
