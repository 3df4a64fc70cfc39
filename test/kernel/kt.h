/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers shared by the kernel-interface tests (test/kernel/). The pattern is
 * the kernel's uffd-unit-tests one: the case's main thread is the fault
 * handler, a "toucher" thread (or a forked child) takes the faults.
 *
 * Every wait here has a deadline and fails the case when it passes, so a
 * fault that is never delivered (or never woken) fails fast and says where.
 */
#ifndef FL_TEST_KT_H
#define FL_TEST_KT_H

#include "harness.h"
/* UFFD_FEATURE_* / ioctl definitions newer than the system headers (the
 * public header does not name them). */
#include "compat/uffd-compat.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <sys/types.h>

/* Default deadline for things that should happen "at once". */
#define KT_TIMEOUT_MS t_scaled_ms(5000)

/*
 * What registering `modes` (FL_REG_*) on `mem` needs (enum t_need): a
 * constant expression, for case tables; hugetlb also takes T_HUGE_PAGES.
 */
#define KT_NEEDS(mem, modes)                                                   \
	((mem) == FL_MEM_ANON ? (((modes) & FL_REG_WP) ? T_WP : 0u) :          \
	 (mem) == FL_MEM_SHMEM ?                                               \
		((((modes) & FL_REG_MISSING) ? T_MISSING_SHMEM : 0u) |         \
		 (((modes) & FL_REG_WP) ? T_WP | T_WP_SHMEM_HUGETLB : 0u) |    \
		 (((modes) & FL_REG_MINOR) ? T_MINOR_SHMEM : 0u)) :            \
		(T_HUGE_PAGES |                                                \
		 (((modes) & FL_REG_MISSING) ? T_MISSING_HUGETLB : 0u) |       \
		 (((modes) & FL_REG_WP) ? T_WP | T_WP_SHMEM_HUGETLB : 0u) |    \
		 (((modes) & FL_REG_MINOR) ? T_MINOR_HUGETLB : 0u)))

/* Kernel feature bits a uffd should ask for to use `modes` (FL_REG_*) on `mem`. */
uint64_t kt_features_for(enum fl_mem_type mem, unsigned modes);
/* t_require() the features for `modes` on `mem`, and a uffd that has them. */
int kt_uffd_for(enum fl_mem_type mem, unsigned modes, uint64_t extra_features);

/* Poll for one message (fails the case after timeout_ms) and read it. */
void kt_read_msg(int uffd, struct uffd_msg *msg, int timeout_ms);
/* Read one message and assert it is a page fault at page `addr` (page-aligned compare). */
void kt_expect_fault(int uffd, struct uffd_msg *msg, void *addr, size_t page);
/* Assert nothing becomes readable on uffd within timeout_ms. */
void kt_expect_no_msg(int uffd, int timeout_ms);
/* Faults queued and not yet read, from /proc/self/fdinfo ("pending:"). */
long kt_uffd_pending(int uffd);
/* Wait until at least n faults are queued unread. */
void kt_wait_pending(int uffd, long n, int timeout_ms);
/* True if readlink(/proc/self/fd/N) names a userfaultfd. */
bool kt_is_uffd(int fd);
/* Page present in this process's page tables (pagemap bit 63). */
bool kt_page_present(const void *addr);

/* ---- toucher threads --------------------------------------------------- */
enum kt_access { KT_READ, KT_WRITE };

struct kt_toucher {
	pthread_t thread;
	volatile uint8_t *addr;
	enum kt_access access;
	uint8_t write_value;	/* KT_WRITE: stored at *addr */
	uint8_t read_value;	/* KT_READ: what *addr held */
	atomic_int started;
	atomic_int done;
	atomic_int sigbus;	/* the access raised SIGBUS */
	atomic_int tid;		/* gettid() of the thread */
};

/* Start a thread that does one access at addr. */
void kt_touch_start(struct kt_toucher *t, void *addr, enum kt_access access,
		    uint8_t write_value);
/* Wait (at most timeout_ms) for the access to finish; joins the thread. */
void kt_touch_join(struct kt_toucher *t, int timeout_ms);
/* Assert the thread is still blocked after ms milliseconds. */
void kt_touch_still_blocked(struct kt_toucher *t, int ms);

/*
 * Run fn(arg) with SIGBUS caught: returns true if it raised SIGBUS. Works
 * per thread (the jump buffer is thread-local).
 */
bool kt_catch_sigbus(void (*fn)(void *), void *arg);

/* Assert [p, p+len) holds pattern `seed` from `offset`. */
void kt_assert_pattern(const void *p, size_t len, uint64_t offset, uint32_t seed);
/* Assert [p, p+len) is all zeros. */
void kt_assert_zero(const void *p, size_t len);


#endif
