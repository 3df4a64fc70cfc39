// SPDX-License-Identifier: LGPL-2.1-or-later
#include "kt.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t kt_features_for(enum fl_mem_type mem, unsigned modes)
{
	return fl_features_to_uffd(t_needs_features(KT_NEEDS(mem, modes)));
}

int kt_uffd_for(enum fl_mem_type mem, unsigned modes, uint64_t extra_features)
{
	uint64_t f = kt_features_for(mem, modes) | extra_features;

	t_require(fl_features_from_uffd(f));
	return t_uffd(f);
}

void kt_read_msg(int uffd, struct uffd_msg *msg, int timeout_ms)
{
	struct pollfd pfd = { .fd = uffd, .events = POLLIN };
	int r;

	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	T_ASSERT(r == 1, "no uffd message within %d ms (poll %d)", timeout_ms, r);
	T_ASSERT(pfd.revents & POLLIN, "poll revents 0x%x", pfd.revents);
	r = fl_uffd_read(uffd, msg, 1);
	T_ASSERT_EQ(r, 1);
}

void kt_expect_fault(int uffd, struct uffd_msg *msg, void *addr, size_t page)
{
	kt_read_msg(uffd, msg, KT_TIMEOUT_MS);
	T_ASSERT(fl_msg_is_fault(msg), "expected a page fault, got event %s",
		 fl_msg_event_name(msg));
	T_ASSERT_EQ(fl_msg_fault_addr(msg) & ~(uint64_t)(page - 1),
		    (uintptr_t)addr & ~(uintptr_t)(page - 1));
}

void kt_expect_no_msg(int uffd, int timeout_ms)
{
	struct pollfd pfd = { .fd = uffd, .events = POLLIN };
	int r;

	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	T_ASSERT(r == 0, "unexpected uffd message (poll %d, revents 0x%x)", r,
		 pfd.revents);
}

long kt_uffd_pending(int uffd)
{
	char path[64], line[128];
	long pending = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", uffd);
	f = fopen(path, "r");
	T_ASSERT(f != NULL, "%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "pending: %ld", &pending) == 1)
			break;
	fclose(f);
	T_ASSERT(pending >= 0, "no 'pending:' line in %s", path);
	return pending;
}

void kt_wait_pending(int uffd, long n, int timeout_ms)
{
	uint64_t deadline = t_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	long have;

	while ((have = kt_uffd_pending(uffd)) < n) {
		T_ASSERT(t_now_ns() < deadline,
			 "only %ld of %ld faults pending after %d ms", have, n,
			 timeout_ms);
		t_sleep_ms(1);
	}
}

bool kt_is_uffd(int fd)
{
	char path[64], target[128];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[userfaultfd]") == 0;
}

bool kt_page_present(const void *addr)
{
	uint64_t entry = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	T_ASSERT(fd >= 0, "open pagemap: %s", strerror(errno));
	n = pread(fd, &entry, sizeof(entry),
		  (off_t)((uintptr_t)addr / (uintptr_t)sysconf(_SC_PAGESIZE) *
			  sizeof(entry)));
	close(fd);
	T_ASSERT(n == (ssize_t)sizeof(entry), "pread pagemap: %zd", n);
	return (entry >> 63) & 1;
}

/* ---- SIGBUS catching --------------------------------------------------- */
static __thread sigjmp_buf *sigbus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	if (sigbus_jmp)
		siglongjmp(*sigbus_jmp, 1);
	/* Not expected here: die by SIGBUS so the harness reports it. */
	signal(SIGBUS, SIG_DFL);
	raise(SIGBUS);
}

bool kt_catch_sigbus(void (*fn)(void *), void *arg)
{
	struct sigaction sa;
	sigjmp_buf jb;
	bool caught;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigemptyset(&sa.sa_mask);
	T_ASSERT(sigaction(SIGBUS, &sa, NULL) == 0);
	if (sigsetjmp(jb, 1)) {
		caught = true;
	} else {
		sigbus_jmp = &jb;
		fn(arg);
		caught = false;
	}
	sigbus_jmp = NULL;
	return caught;
}

/* ---- toucher threads --------------------------------------------------- */
static void do_access(void *arg)
{
	struct kt_toucher *t = arg;

	if (t->access == KT_WRITE)
		*t->addr = t->write_value;
	else
		t->read_value = *t->addr;
}

static void *toucher_main(void *arg)
{
	struct kt_toucher *t = arg;

	atomic_store(&t->tid, (int)syscall(SYS_gettid));
	atomic_store(&t->started, 1);
	if (kt_catch_sigbus(do_access, t))
		atomic_store(&t->sigbus, 1);
	atomic_store(&t->done, 1);
	return NULL;
}

void kt_touch_start(struct kt_toucher *t, void *addr, enum kt_access access,
		    uint8_t write_value)
{
	uint64_t deadline = t_now_ns() + KT_TIMEOUT_MS * 1000000ull;

	memset(t, 0, sizeof(*t));
	t->addr = addr;
	t->access = access;
	t->write_value = write_value;
	T_ASSERT(pthread_create(&t->thread, NULL, toucher_main, t) == 0);
	while (!atomic_load(&t->started)) {
		T_ASSERT(t_now_ns() < deadline, "toucher thread did not start");
		t_sleep_ms(1);
	}
}

void kt_touch_join(struct kt_toucher *t, int timeout_ms)
{
	uint64_t deadline = t_now_ns() + (uint64_t)timeout_ms * 1000000ull;

	while (!atomic_load(&t->done)) {
		T_ASSERT(t_now_ns() < deadline,
			 "faulting thread still blocked after %d ms", timeout_ms);
		t_sleep_ms(1);
	}
	T_ASSERT(pthread_join(t->thread, NULL) == 0);
}

void kt_touch_still_blocked(struct kt_toucher *t, int ms)
{
	t_sleep_ms(ms);
	T_ASSERT(!atomic_load(&t->done),
		 "faulting thread woke up although nothing woke it");
}

/* ---- data -------------------------------------------------------------- */
void kt_assert_pattern(const void *p, size_t len, uint64_t offset, uint32_t seed)
{
	long long bad = t_check_pattern(p, len, offset, seed);

	T_ASSERT(bad < 0, "pattern mismatch at byte %lld of %zu", bad, len);
}

void kt_assert_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		T_ASSERT(b[i] == 0, "byte %zu is 0x%02x, expected 0", i, b[i]);
}
