// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Messages: fl_uffd_read() batches, the page-fault flags and fields as the
 * fl_msg_* helpers decode them (WRITE/WP/MINOR, thread id, exact address),
 * EAGAIN on an empty uffd, and the non-cooperative events (FORK, REMAP,
 * REMOVE, UNMAP) with the features that enable them.
 */
#include "kt.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- batches ----------------------------------------------------------- */

static int test_read_batch(void *arg)
{
	enum { N = 4 };
	const size_t page = t_page_size(FL_MEM_ANON);
	struct kt_toucher t[N];
	struct uffd_msg msgs[8];
	unsigned seen = 0;
	int uffd = t_uffd(0), n;
	char *area = t_map(FL_MEM_ANON, N * page, NULL);
	uint8_t *src = t_pattern_buf(N * page, 0, 51);

	T_OK(fl_uffd_register(uffd, area, N * page, FL_REG_MISSING, NULL));
	for (int i = 0; i < N; i++)
		kt_touch_start(&t[i], area + i * page + i, i % 2 ? KT_WRITE : KT_READ,
			       (uint8_t)(0xf0 + i));
	/* All four wait in the kernel: one read takes them all. */
	kt_wait_pending(uffd, N, KT_TIMEOUT_MS);
	n = fl_uffd_read(uffd, msgs, 8);
	T_ASSERT_EQ(n, N);
	for (int i = 0; i < n; i++) {
		uint64_t off = fl_msg_fault_addr(&msgs[i]) - (uintptr_t)area;
		unsigned idx = (unsigned)(off / page);

		T_ASSERT(fl_msg_is_fault(&msgs[i]));
		T_ASSERT(off < N * page && off % page == 0, "address offset 0x%llx",
			 (unsigned long long)off);
		T_ASSERT(!(seen & (1u << idx)), "page %u reported twice", idx);
		seen |= 1u << idx;
		T_ASSERT_EQ(fl_msg_fault_write(&msgs[i]), idx % 2 == 1);
		T_ASSERT(!fl_msg_fault_wp(&msgs[i]) && !fl_msg_fault_minor(&msgs[i]));
	}
	T_ASSERT_EQ(seen, (1u << N) - 1);
	T_ASSERT_EQ(fl_uffd_read(uffd, msgs, 8), -EAGAIN);
	T_OK(fl_uffd_copy(uffd, area, src, N * page, 0, NULL));
	for (int i = 0; i < N; i++) {
		kt_touch_join(&t[i], KT_TIMEOUT_MS);
		if (i % 2)
			T_ASSERT_EQ((uint8_t)area[i * page + i], 0xf0 + i);
		else
			T_ASSERT_EQ(t[i].read_value, src[i * page + i]);
	}
	return T_PASS;
}

/* A read takes at most `max` messages; the rest stay queued. */
static int test_read_max(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	struct kt_toucher t[2];
	struct uffd_msg msgs[4];
	int uffd = t_uffd(0);
	char *area = t_map(FL_MEM_ANON, 2 * page, NULL);
	uint64_t first;

	T_OK(fl_uffd_register(uffd, area, 2 * page, FL_REG_MISSING, NULL));
	kt_touch_start(&t[0], area, KT_READ, 0);
	kt_touch_start(&t[1], area + page, KT_READ, 0);
	kt_wait_pending(uffd, 2, KT_TIMEOUT_MS);
	T_ASSERT_EQ(fl_uffd_read(uffd, msgs, 0), -EINVAL);
	T_ASSERT_EQ(fl_uffd_read(uffd, msgs, 1), 1);
	first = fl_msg_fault_addr(&msgs[0]);
	T_ASSERT_EQ(kt_uffd_pending(uffd), 1);
	T_ASSERT_EQ(fl_uffd_read(uffd, msgs, 4), 1);
	T_ASSERT(fl_msg_fault_addr(&msgs[0]) != first);
	T_OK(fl_uffd_zeropage(uffd, area, 2 * page, 0, NULL));
	kt_touch_join(&t[0], KT_TIMEOUT_MS);
	kt_touch_join(&t[1], KT_TIMEOUT_MS);
	return T_PASS;
}

static int test_read_empty(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	struct uffd_msg msg;
	struct kt_toucher t;
	int uffd = t_uffd(0);
	char *area = t_map(FL_MEM_ANON, page, NULL);

	T_ASSERT(fcntl(uffd, F_GETFL) & O_NONBLOCK);
	T_ASSERT_EQ(fl_uffd_read(uffd, &msg, 1), -EAGAIN);
	T_OK(fl_uffd_register(uffd, area, page, FL_REG_MISSING, NULL));
	T_ASSERT_EQ(fl_uffd_read(uffd, &msg, 1), -EAGAIN);
	kt_touch_start(&t, area, KT_READ, 0);
	kt_expect_fault(uffd, &msg, area, page);
	/* Read once: the message is not delivered twice. */
	T_ASSERT_EQ(fl_uffd_read(uffd, &msg, 1), -EAGAIN);
	T_OK(fl_uffd_zeropage(uffd, area, page, 0, NULL));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ(fl_uffd_read(uffd, &msg, 1), -EAGAIN);
	T_ASSERT_EQ(fl_uffd_read(-1, &msg, 1), -EBADF);
	return T_PASS;
}

/* ---- fault flags ------------------------------------------------------- */

struct flags_case {
	enum fl_mem_type mem;
	unsigned modes;
	enum kt_access access;
	bool write, wp, minor;
};

static int test_flags(void *arg)
{
	const struct flags_case *c = arg;
	const size_t page = t_page_size(c->mem);
	struct kt_toucher t;
	struct uffd_msg msg;
	int uffd = kt_uffd_for(c->mem, c->modes, 0), memfd;
	char *area = t_map(c->mem, page, &memfd);

	if (c->modes & FL_REG_MINOR) {
		/* Page cache populated through the fd's other mapping. */
		char *alias = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		T_ASSERT(alias != MAP_FAILED);
		t_fill_pattern(alias, page, 0, 52);
		munmap(alias, page);
	}
	if (c->modes == FL_REG_WP)
		t_fill_pattern(area, page, 0, 52);
	T_OK(fl_uffd_register(uffd, area, page, c->modes, NULL));
	if (c->modes == FL_REG_WP)
		T_OK(fl_uffd_writeprotect(uffd, area, page, FL_WP_PROTECT));

	kt_touch_start(&t, area + 3, c->access, 0xee);
	kt_expect_fault(uffd, &msg, area, page);
	T_ASSERT_EQ(fl_msg_fault_write(&msg), c->write);
	T_ASSERT_EQ(fl_msg_fault_wp(&msg), c->wp);
	T_ASSERT_EQ(fl_msg_fault_minor(&msg), c->minor);
	T_ASSERT_EQ(strcmp(fl_msg_event_name(&msg), "pagefault"), 0);

	if (c->modes & FL_REG_MINOR) {
		T_OK(fl_uffd_continue(uffd, area, page, 0, NULL));
	} else if (c->modes & FL_REG_WP) {
		T_OK(fl_uffd_writeprotect(uffd, area, page, 0));
	} else {
		void *src = t_pattern_buf(page, 0, 52);
		T_OK(fl_uffd_copy(uffd, area, src, page, 0, NULL));
	}
	kt_touch_join(&t, KT_TIMEOUT_MS);
	if (c->access == KT_WRITE)
		T_ASSERT_EQ((uint8_t)area[3], 0xee);
	else
		kt_assert_pattern((const void *)&t.read_value, 1, 3, 52);
	return T_PASS;
}

static const struct flags_case fc_missing_read = { FL_MEM_ANON, FL_REG_MISSING, KT_READ, false, false, false };
static const struct flags_case fc_missing_write = { FL_MEM_ANON, FL_REG_MISSING, KT_WRITE, true, false, false };
static const struct flags_case fc_missing_write_shmem = { FL_MEM_SHMEM, FL_REG_MISSING, KT_WRITE, true, false, false };
static const struct flags_case fc_wp_write = { FL_MEM_ANON, FL_REG_WP, KT_WRITE, true, true, false };
static const struct flags_case fc_wp_write_shmem = { FL_MEM_SHMEM, FL_REG_WP, KT_WRITE, true, true, false };
static const struct flags_case fc_minor_read = { FL_MEM_SHMEM, FL_REG_MINOR, KT_READ, false, false, true };
static const struct flags_case fc_minor_write = { FL_MEM_SHMEM, FL_REG_MINOR, KT_WRITE, true, false, true };
static const struct flags_case fc_minor_read_hugetlb = { FL_MEM_HUGETLB, FL_REG_MINOR, KT_READ, false, false, true };

/* ---- thread id, exact address ------------------------------------------ */

static int test_thread_id(void *arg)
{
	bool enabled = arg != NULL;
	const size_t page = t_page_size(FL_MEM_ANON);
	struct kt_toucher t;
	struct uffd_msg msg;
	int uffd;
	char *area = t_map(FL_MEM_ANON, page, NULL);

	if (enabled)
		t_require(FL_FEATURE_BIT(FL_FEATURE_THREAD_ID));
	uffd = t_uffd(enabled ? UFFD_FEATURE_THREAD_ID : 0);
	T_OK(fl_uffd_register(uffd, area, page, FL_REG_MISSING, NULL));
	kt_touch_start(&t, area, KT_READ, 0);
	kt_expect_fault(uffd, &msg, area, page);
	if (enabled) {
		T_ASSERT_EQ(fl_msg_fault_tid(&msg), atomic_load(&t.tid));
		T_ASSERT(fl_msg_fault_tid(&msg) != (uint32_t)getpid());
	} else {
		T_ASSERT_EQ(fl_msg_fault_tid(&msg), 0);
	}
	T_OK(fl_uffd_zeropage(uffd, area, page, 0, NULL));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	return T_PASS;
}

static int test_exact_address(void *arg)
{
	bool enabled = arg != NULL;
	const size_t page = t_page_size(FL_MEM_ANON);
	struct kt_toucher t;
	struct uffd_msg msg;
	int uffd;
	char *area = t_map(FL_MEM_ANON, 2 * page, NULL);
	char *addr = area + page + 0x123;

	if (enabled)
		t_require(FL_FEATURE_BIT(FL_FEATURE_EXACT_ADDRESS));
	uffd = t_uffd(enabled ? UFFD_FEATURE_EXACT_ADDRESS : 0);
	T_OK(fl_uffd_register(uffd, area, 2 * page, FL_REG_MISSING, NULL));
	kt_touch_start(&t, addr, KT_WRITE, 1);
	kt_expect_fault(uffd, &msg, addr, page);
	if (enabled)
		T_ASSERT_EQ(fl_msg_fault_addr(&msg), (uintptr_t)addr);
	else
		T_ASSERT_EQ(fl_msg_fault_addr(&msg), (uintptr_t)area + page);
	T_OK(fl_uffd_zeropage(uffd, area + page, page, 0, NULL));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ(*addr, 1);
	return T_PASS;
}

/* ---- events ------------------------------------------------------------ */

/*
 * The event-raising calls (fork, mremap, madvise, munmap) wait until the
 * manager has read the event, so they run in a helper thread while the
 * case's main thread reads.
 */
struct op_thread {
	pthread_t thread;
	void (*fn)(struct op_thread *);
	char *addr, *addr2;
	size_t len;
	long ret;
	int err;
	atomic_int done;
};

static void *op_main(void *arg)
{
	struct op_thread *o = arg;

	o->fn(o);
	atomic_store(&o->done, 1);
	return NULL;
}

static void op_start(struct op_thread *o, void (*fn)(struct op_thread *))
{
	o->fn = fn;
	atomic_store(&o->done, 0);
	T_ASSERT(pthread_create(&o->thread, NULL, op_main, o) == 0);
}

static void op_join(struct op_thread *o)
{
	uint64_t deadline = t_now_ns() + KT_TIMEOUT_MS * 1000000ull;

	while (!atomic_load(&o->done)) {
		T_ASSERT(t_now_ns() < deadline, "event-raising call did not return");
		t_sleep_ms(1);
	}
	pthread_join(o->thread, NULL);
}

/* The forked child: read the registered page, report whether it holds the
 * pattern the manager resolves it with. */
static void do_fork(struct op_thread *o)
{
	pid_t pid = fork();

	if (pid == 0) {
		volatile uint8_t *p = (volatile uint8_t *)o->addr;
		uint8_t v = p[100];
		uint8_t expect;
		t_fill_pattern(&expect, 1, 100, 53);
		_exit(v == expect && t_check_pattern(o->addr, o->len, 0, 53) < 0 ? 0 : 1);
	}
	o->ret = pid;
	o->err = errno;
}

static int test_event_fork(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	struct op_thread o = { 0 };
	struct uffd_msg msg;
	uint8_t *src = t_pattern_buf(page, 0, 53);
	int uffd, child_uffd, status;
	char *area;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_FORK));
	uffd = t_uffd(UFFD_FEATURE_EVENT_FORK);
	area = t_map(FL_MEM_ANON, page, NULL);
	T_OK(fl_uffd_register(uffd, area, page, FL_REG_MISSING, NULL));
	o.addr = area;
	o.len = page;
	op_start(&o, do_fork);
	kt_read_msg(uffd, &msg, KT_TIMEOUT_MS);
	T_ASSERT_EQ(msg.event, UFFD_EVENT_FORK);
	T_ASSERT_EQ(strcmp(fl_msg_event_name(&msg), "fork"), 0);
	child_uffd = (int)msg.arg.fork.ufd;
	T_ASSERT(child_uffd > 2 && child_uffd != uffd, "fork ufd %d", child_uffd);
	T_ASSERT(kt_is_uffd(child_uffd), "fork ufd %d is not a userfaultfd", child_uffd);
	op_join(&o);
	T_ASSERT(o.ret > 0, "fork: %s", strerror(o.err));

	/* The child's fault arrives on the new uffd, not ours. */
	kt_expect_fault(child_uffd, &msg, area, page);
	T_ASSERT_EQ(kt_uffd_pending(uffd), 0);
	T_OK(fl_uffd_copy(child_uffd, area, src, page, 0, NULL));
	T_ASSERT(waitpid((pid_t)o.ret, &status, 0) == (pid_t)o.ret);
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "child saw wrong data (status 0x%x)", status);
	/* Our own range is untouched and still ours. */
	T_ASSERT(!kt_page_present(area));
	close(child_uffd);
	return T_PASS;
}

/* Without EVENT_FORK the child's copy of the range is not registered. */
static int test_fork_without_event(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON);
	int uffd = t_uffd(0), status;
	char *area = t_map(FL_MEM_ANON, page, NULL);
	pid_t pid;

	T_OK(fl_uffd_register(uffd, area, page, FL_REG_MISSING, NULL));
	pid = fork();
	T_ASSERT(pid >= 0);
	if (pid == 0)
		_exit(*(volatile char *)area == 0 ? 0 : 1);
	T_ASSERT(waitpid(pid, &status, 0) == pid);
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
	T_ASSERT_EQ(kt_uffd_pending(uffd), 0);
	T_ASSERT_EQ(fl_uffd_read(uffd, &(struct uffd_msg){ 0 }, 1), -EAGAIN);
	return T_PASS;
}

static void do_mremap(struct op_thread *o)
{
	void *p = mremap(o->addr, o->len, o->len, MREMAP_MAYMOVE | MREMAP_FIXED, o->addr2);

	o->ret = p == MAP_FAILED ? -1 : (long)(uintptr_t)p;
	o->err = errno;
}

static int test_event_remap(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON), len = 4 * page;
	struct op_thread o = { 0 };
	struct kt_toucher t;
	struct uffd_msg msg;
	int uffd;
	char *area, *dest;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_REMAP));
	uffd = t_uffd(UFFD_FEATURE_EVENT_REMAP);
	area = t_map(FL_MEM_ANON, len, NULL);
	dest = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(dest != MAP_FAILED);
	T_OK(fl_uffd_register(uffd, area, len, FL_REG_MISSING, NULL));
	o.addr = area;
	o.addr2 = dest;
	o.len = len;
	op_start(&o, do_mremap);
	kt_read_msg(uffd, &msg, KT_TIMEOUT_MS);
	T_ASSERT_EQ(msg.event, UFFD_EVENT_REMAP);
	T_ASSERT_EQ(strcmp(fl_msg_event_name(&msg), "remap"), 0);
	T_ASSERT_EQ(msg.arg.remap.from, (uintptr_t)area);
	T_ASSERT_EQ(msg.arg.remap.to, (uintptr_t)dest);
	T_ASSERT_EQ(msg.arg.remap.len, len);
	op_join(&o);
	T_ASSERT_EQ(o.ret, (long)(uintptr_t)dest);
	/* The registration moved with the mapping. */
	kt_touch_start(&t, dest + page, KT_READ, 0);
	kt_expect_fault(uffd, &msg, dest + page, page);
	T_OK(fl_uffd_zeropage(uffd, dest + page, page, 0, NULL));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	return T_PASS;
}

static void do_dontneed(struct op_thread *o)
{
	o->ret = madvise(o->addr, o->len, MADV_DONTNEED);
	o->err = errno;
}

static void do_remove(struct op_thread *o)
{
	o->ret = madvise(o->addr, o->len, MADV_REMOVE);
	o->err = errno;
}

static int test_event_remove(void *arg)
{
	enum fl_mem_type mem = arg ? FL_MEM_SHMEM : FL_MEM_ANON;
	const size_t page = t_page_size(mem), len = 4 * page;
	struct op_thread o = { 0 };
	struct kt_toucher t;
	struct uffd_msg msg;
	uint8_t *src = t_pattern_buf(len, 0, 54);
	int uffd;
	char *area;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_REMOVE));
	uffd = kt_uffd_for(mem, FL_REG_MISSING, UFFD_FEATURE_EVENT_REMOVE);
	area = t_map(mem, len, NULL);
	T_OK(fl_uffd_register(uffd, area, len, FL_REG_MISSING, NULL));
	T_OK(fl_uffd_copy(uffd, area, src, len, 0, NULL));
	o.addr = area + page;
	o.len = 2 * page;
	op_start(&o, mem == FL_MEM_ANON ? do_dontneed : do_remove);
	kt_read_msg(uffd, &msg, KT_TIMEOUT_MS);
	T_ASSERT_EQ(msg.event, UFFD_EVENT_REMOVE);
	T_ASSERT_EQ(strcmp(fl_msg_event_name(&msg), "remove"), 0);
	T_ASSERT_EQ(msg.arg.remove.start, (uintptr_t)area + page);
	T_ASSERT_EQ(msg.arg.remove.end, (uintptr_t)area + 3 * page);
	op_join(&o);
	T_ASSERT(o.ret == 0, "madvise: %s", strerror(o.err));
	/* The removed pages fault again; the others kept their data. */
	kt_assert_pattern(area, page, 0, 54);
	kt_assert_pattern(area + 3 * page, page, 3 * page, 54);
	kt_touch_start(&t, area + 2 * page, KT_READ, 0);
	kt_expect_fault(uffd, &msg, area + 2 * page, page);
	T_OK(fl_uffd_zeropage(uffd, area + 2 * page, page, 0, NULL));
	kt_touch_join(&t, KT_TIMEOUT_MS);
	T_ASSERT_EQ(t.read_value, 0);
	return T_PASS;
}

static void do_munmap(struct op_thread *o)
{
	o->ret = munmap(o->addr, o->len);
	o->err = errno;
}

static int test_event_unmap(void *arg)
{
	const size_t page = t_page_size(FL_MEM_ANON), len = 4 * page;
	struct op_thread o = { 0 };
	struct uffd_msg msg;
	int uffd;
	char *area;

	t_require(FL_FEATURE_BIT(FL_FEATURE_EVENT_UNMAP));
	uffd = t_uffd(UFFD_FEATURE_EVENT_UNMAP);
	area = t_map(FL_MEM_ANON, len, NULL);
	T_OK(fl_uffd_register(uffd, area, len, FL_REG_MISSING, NULL));
	/* Part of the range first, then the rest. */
	o.addr = area + page;
	o.len = page;
	op_start(&o, do_munmap);
	kt_read_msg(uffd, &msg, KT_TIMEOUT_MS);
	T_ASSERT_EQ(msg.event, UFFD_EVENT_UNMAP);
	T_ASSERT_EQ(strcmp(fl_msg_event_name(&msg), "unmap"), 0);
	T_ASSERT_EQ(msg.arg.remove.start, (uintptr_t)area + page);
	T_ASSERT_EQ(msg.arg.remove.end, (uintptr_t)area + 2 * page);
	op_join(&o);
	T_ASSERT(o.ret == 0, "munmap: %s", strerror(o.err));

	o.addr = area;
	o.len = len;
	op_start(&o, do_munmap);
	kt_read_msg(uffd, &msg, KT_TIMEOUT_MS);
	T_ASSERT_EQ(msg.event, UFFD_EVENT_UNMAP);
	T_ASSERT_EQ(msg.arg.remove.start, (uintptr_t)area);
	T_ASSERT_EQ(msg.arg.remove.end, (uintptr_t)area + len);
	op_join(&o);
	T_ASSERT(o.ret == 0);
	/* Nothing else: the range is gone and resolving into it fails. */
	T_ASSERT_EQ(fl_uffd_read(uffd, &msg, 1), -EAGAIN);
	T_ASSERT_EQ(fl_uffd_zeropage(uffd, area, page, 0, NULL), -ENOENT);
	return T_PASS;
}

static int test_event_names(void *arg)
{
	static const struct {
		uint8_t event;
		const char *name;
	} names[] = {
		{ UFFD_EVENT_PAGEFAULT, "pagefault" }, { UFFD_EVENT_FORK, "fork" },
		{ UFFD_EVENT_REMAP, "remap" },         { UFFD_EVENT_REMOVE, "remove" },
		{ UFFD_EVENT_UNMAP, "unmap" },
	};
	struct uffd_msg msg;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		memset(&msg, 0, sizeof(msg));
		msg.event = names[i].event;
		T_ASSERT(strcmp(fl_msg_event_name(&msg), names[i].name) == 0, "event %u: %s",
			 names[i].event, fl_msg_event_name(&msg));
		T_ASSERT_EQ(fl_msg_is_fault(&msg), names[i].event == UFFD_EVENT_PAGEFAULT);
	}
	msg.event = 0x7f;
	T_ASSERT(fl_msg_event_name(&msg) != NULL);
	T_ASSERT_EQ(strcmp(fl_msg_event_name(&msg), "unknown"), 0);
	msg.event = 0;
	T_ASSERT_EQ(strcmp(fl_msg_event_name(&msg), "unknown"), 0);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "read_batch", test_read_batch, NULL, 0 },
	{ "read_max", test_read_max, NULL, 0 },
	{ "read_empty", test_read_empty, NULL, 0 },
	{ "flags_missing_read", test_flags, (void *)&fc_missing_read, 0 },
	{ "flags_missing_write", test_flags, (void *)&fc_missing_write, 0 },
	{ "flags_missing_write_shmem", test_flags, (void *)&fc_missing_write_shmem, 0, KT_NEEDS(FL_MEM_SHMEM, FL_REG_MISSING) },
	{ "flags_wp_write", test_flags, (void *)&fc_wp_write, 0, KT_NEEDS(FL_MEM_ANON, FL_REG_WP) },
	{ "flags_wp_write_shmem", test_flags, (void *)&fc_wp_write_shmem, 0, KT_NEEDS(FL_MEM_SHMEM, FL_REG_WP) },
	{ "flags_minor_read", test_flags, (void *)&fc_minor_read, 0, KT_NEEDS(FL_MEM_SHMEM, FL_REG_MINOR) },
	{ "flags_minor_write", test_flags, (void *)&fc_minor_write, 0, KT_NEEDS(FL_MEM_SHMEM, FL_REG_MINOR) },
	{ "flags_minor_read_hugetlb", test_flags, (void *)&fc_minor_read_hugetlb, 0, KT_NEEDS(FL_MEM_HUGETLB, FL_REG_MINOR) },
	{ "thread_id", test_thread_id, (void *)1, 0, T_THREAD_ID },
	{ "thread_id_off", test_thread_id, NULL, 0 },
	{ "exact_address", test_exact_address, (void *)1, 0, T_EXACT_ADDRESS },
	{ "exact_address_off", test_exact_address, NULL, 0 },
	{ "event_fork", test_event_fork, NULL, 0, T_EVENT_FORK },
	{ "fork_without_event", test_fork_without_event, NULL, 0 },
	{ "event_remap", test_event_remap, NULL, 0, T_EVENT_REMAP },
	{ "event_remove_anon", test_event_remove, NULL, 0, T_EVENT_REMOVE },
	{ "event_remove_shmem", test_event_remove, (void *)1, 0, T_EVENT_REMOVE | T_MISSING_SHMEM },
	{ "event_unmap", test_event_unmap, NULL, 0, T_EVENT_UNMAP },
	{ "event_names", test_event_names, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
