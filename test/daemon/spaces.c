// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Address spaces shared between processes through faultlined
 * (fl_client_space_attach(3)), over shmem and hugetlb segments: processes
 * attached to one space see each other's writes and share its pages (one
 * copy in memory), private attachments keep their writes, read-only ones
 * cannot write, the space directory's owner and mode decide who may do
 * what, bad requests are refused with nothing mapped, a commit through the
 * daemon is a version fl_space_open(3) reads, a daemon killed with
 * SIGKILL is resumed (uncommitted shared writes kept) or fails closed, and
 * zero pages a read-only attacher plants by mapping its page cache itself
 * reach neither another attacher nor a commit.
 */
#include "dutil.h"

#include <faultline/space.h>

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/mman.h>

#define SEG_LEN (4u << 20)
#define NSEG 2
#define BASE 0x3e0000000000ull	/* free in every test process */
#define SEG_GAP (64ull << 20)
#define SEED 0x5a
#define MAXN 8

struct scase {
	enum fl_mem_type mem;
	int n;			/* processes */
};

static uint8_t *seg_addr(int k)
{
	return (uint8_t *)(uintptr_t)(BASE + (uint64_t)k * SEG_GAP);
}

/* A scratch daemon environment with a spaces directory. */
struct s_env {
	struct d_env e;
	char spaces[120];
};

static void s_need(enum fl_mem_type mem)
{
	if (mem == FL_MEM_HUGETLB)
		/* The in-process maker's copy, the daemon's, private copies. */
		t_need_huge((size_t)NSEG * SEG_LEN * 3);
}

/* Space `name` in the spaces directory: NSEG segments of `mem`, pattern
 * SEED, root "top", committed as version 1. Made in a child: the maker's
 * engine and mappings are gone when it returns. */
static int make_space_child(void *arg)
{
	const char *const *a = arg;
	char dir[512];
	struct fl_space_opts so = { .sz = sizeof(so), .name = a[1], .dir = dir, .flags = FL_SPACE_NO_SYNC };
	enum fl_mem_type mem = (enum fl_mem_type)atoi(a[2]);
	struct fl_space *sp;

	snprintf(dir, sizeof(dir), "%s/%s", a[0], a[1]);
	T_OK(fl_space_new(&so, &sp));
	for (int k = 0; k < NSEG; k++) {
		struct fl_segment_opts go = { .sz = sizeof(go), .name = k ? "b" : "a",
					      .base = (uintptr_t)seg_addr(k), .length = SEG_LEN, .mem = mem };
		T_OK(fl_space_segment_add(sp, &go));
	}
	T_OK(fl_space_attach(sp, NULL));
	for (int k = 0; k < NSEG; k++)
		t_fill_pattern(seg_addr(k), SEG_LEN, (uint64_t)k * SEG_LEN, SEED);
	T_OK(fl_space_root_set(sp, "top", seg_addr(0) + 123));
	T_OK(fl_space_commit(sp, NULL, NULL));
	T_OK(fl_space_detach(sp));
	fl_space_free(sp);
	return T_PASS;
}

static void make_space(struct s_env *s, const char *name, enum fl_mem_type mem)
{
	char m[8];
	const char *a[] = { s->spaces, name, m };
	int st;

	snprintf(m, sizeof(m), "%d", (int)mem);
	st = t_fork_wait(make_space_child, a);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == T_PASS, "making space %s: status 0x%x", name, st);
}

static void s_start(struct s_env *s, const char *const *extra)
{
	const char *argv[24] = { "--spaces", s->spaces };
	size_t n = 2;

	for (; extra && *extra && n < 22; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	d_start_argv(&s->e, argv);
}

static void s_init(struct s_env *s, enum fl_mem_type mem)
{
	s_need(mem);
	d_env_init(&s->e);
	snprintf(s->spaces, sizeof(s->spaces), "%s/spaces", s->e.dir);
	T_ASSERT(mkdir(s->spaces, 0755) == 0);
	make_space(s, "sp", mem);
}

/* Is anything mapped at [addr, addr + len) in this process? */
static bool mapped_at(const void *addr, size_t len)
{
	uint64_t a = (uintptr_t)addr, lo, hi;
	char line[512];
	bool found = false;
	FILE *f = fopen("/proc/self/maps", "re");

	T_ASSERT(f);
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%" SCNx64 "-%" SCNx64, &lo, &hi) == 2 && lo < a + len && a < hi)
			found = true;
	fclose(f);
	return found;
}

static bool nothing_mapped(void)
{
	for (int k = 0; k < NSEG; k++)
		if (mapped_at(seg_addr(k), SEG_LEN))
			return false;
	return true;
}

/* The daemon's last reason for a refusal, as the client's log got it. */
static char last_msg[512];

static void log_msg(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)level;
	(void)ctx;
	snprintf(last_msg, sizeof(last_msg), "%s", msg);
}

static struct fl_client *attached_client(struct s_env *s, unsigned grace_ms)
{
	struct fl_client_opts o = { .sz = sizeof(o), .socket = s->e.sock, .log = log_msg,
				    .grace_ms = t_scaled_ms(grace_ms ? grace_ms : 5000),
				    .timeout_ms = t_scaled_ms(10000) };
	struct fl_client *c = NULL;

	T_OK(fl_client_connect(&o, &c));
	T_OK(fl_client_attach(c));
	return c;
}

/* The last refusal named `what`. */
#define T_SAID(what) T_ASSERT(strstr(last_msg, (what)), "the reason given: '%s', not '%s'", last_msg, (what))

static int space_attach(struct fl_client *c, unsigned flags, uint64_t version)
{
	struct fl_client_space_opts o = { .sz = sizeof(o), .flags = flags, .version = version };

	return fl_client_space_attach(c, "sp", &o);
}

/* Every byte of the space is the pattern (the committed version 1). */
static void check_pattern(void)
{
	for (int k = 0; k < NSEG; k++) {
		long long bad = t_check_pattern(seg_addr(k), SEG_LEN, (uint64_t)k * SEG_LEN, SEED);
		T_ASSERT(bad < 0, "segment %d: byte %lld is not the image's", k, bad);
	}
}

static void *shared_page(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	T_ASSERT(p != MAP_FAILED);
	memset(p, 0, len);
	return p;
}

static void wait_kids(const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++) {
		int st = 0;
		T_ASSERT(t_wait_pid(pids[i], 60000, &st) == 0, "process %d did not finish", i);
		T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "process %d: status 0x%x", i, st);
	}
}

/* ---- shared-N: N writers, each sees every other's bytes; one copy ------ */

struct board {
	_Atomic int attached, written, checked, measured;
	long pss_kib[MAXN];
	long huge_free_before, huge_free_after;
};

/* Stripe i of segment k: the pages (of the memory's page size) i, i + n, ... */
static uint8_t stripe_byte(int i, int k)
{
	return (uint8_t)(0x11 * (i + 1) + k);
}

static int sharer(struct s_env *s, struct board *b, int i, int n)
{
	/* 4 KiB stripes over huge pages too: writers share each huge page. */
	size_t psz = U_PAGE, npages = SEG_LEN / psz;
	struct fl_client *c = attached_client(s, 0);
	uint64_t end;

	T_OK(space_attach(c, 0, 0));
	atomic_fetch_add(&b->attached, 1);
	/* Each writes the first 64 bytes of its pages (the rest stays the
	 * image's): shared writes, served lazily, interleaved pages. */
	for (int k = 0; k < NSEG; k++)
		for (size_t p = (size_t)i; p < npages; p += (size_t)n)
			memset(seg_addr(k) + p * psz, stripe_byte(i, k), 64);
	atomic_fetch_add(&b->written, 1);
	end = t_deadline_ms(30000);
	while (atomic_load(&b->written) < n)
		T_ASSERT(t_now_ns() < end, "writers did not finish");
	for (int k = 0; k < NSEG; k++) {
		uint8_t *img = t_pattern_buf(SEG_LEN, (uint64_t)k * SEG_LEN, SEED);
		for (size_t p = 0; p < npages; p++) {
			uint8_t *a = seg_addr(k) + p * psz, want = stripe_byte((int)(p % (size_t)n), k);
			for (int x = 0; x < 64; x++)
				T_ASSERT(a[x] == want, "process %d: segment %d page %zu byte %d: 0x%02x, not writer "
					 "%zu's 0x%02x", i, k, p, x, a[x], p % (size_t)n, want);
			T_ASSERT(!memcmp(a + 64, img + p * psz + 64, psz - 64),
				 "process %d: segment %d page %zu: the image's bytes changed", i, k, p);
		}
		free(img);
	}
	atomic_fetch_add(&b->checked, 1);
	/* Everyone holds every page now: measure while all are mapped. */
	end = t_deadline_ms(30000);
	while (atomic_load(&b->checked) < n)
		T_ASSERT(t_now_ns() < end, "readers did not finish");
	b->pss_kib[i] = t_pss_kib(getpid(), BASE, (size_t)(NSEG - 1) * SEG_GAP + SEG_LEN, NULL);
	atomic_fetch_add(&b->measured, 1);
	end = t_deadline_ms(30000);
	while (atomic_load(&b->measured) < n + 1)
		T_ASSERT(t_now_ns() < end, "the parent did not measure");
	T_OK(fl_client_space_detach(c, "sp"));
	T_ASSERT(nothing_mapped());
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	return T_PASS;
}

static int test_shared(void *arg)
{
	const struct scase *sc = arg;
	struct board *b = shared_page(sizeof(struct board));
	pid_t pids[MAXN];
	struct s_env s;
	uint64_t end;

	s_init(&s, sc->mem);
	s_start(&s, NULL);
	b->huge_free_before = t_free_huge_pages();
	for (int i = 0; i < sc->n; i++) {
		fflush(NULL);
		pids[i] = fork();
		T_ASSERT(pids[i] >= 0);
		if (pids[i] == 0)
			_exit(sharer(&s, b, i, sc->n));
	}
	end = t_deadline_ms(60000);
	while (atomic_load(&b->measured) < sc->n) {
		T_ASSERT(t_now_ns() < end, "processes did not finish (%d of %d measured)", atomic_load(&b->measured),
			 sc->n);
		t_sleep_ms(2);
	}
	b->huge_free_after = t_free_huge_pages();
	atomic_fetch_add(&b->measured, 1);
	wait_kids(pids, sc->n);
	if (sc->mem == FL_MEM_HUGETLB) {
		/* hugetlb is not in Pss: count the pool's pages instead. One
		 * copy is NSEG * SEG_LEN of huge pages (the daemon's page
		 * cache), however many processes map it. */
		long used = b->huge_free_before - b->huge_free_after;
		t_log("%d processes: %ld huge pages in use for %u of space", sc->n, used, NSEG * SEG_LEN / (2u << 20));
		T_ASSERT_EQ(used, NSEG * SEG_LEN / U_HPAGE);
	} else {
		long sum = 0, one = NSEG * SEG_LEN / 1024;
		for (int i = 0; i < sc->n; i++)
			sum += b->pss_kib[i];
		/* Each page is mapped by the N processes (and the daemon's
		 * alias that filled it): Pss sums to at most one copy; N
		 * copies would be N times that. */
		t_log("%d processes: total Pss %ld KiB for %ld KiB of space", sc->n, sum, one);
		T_ASSERT(sum <= one + one / 10, "total Pss %ld KiB: more than one copy (%ld KiB)", sum, one);
		T_ASSERT(sum >= one / 3, "total Pss %ld KiB: the pages are not mapped (%ld KiB)", sum, one);
	}
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- private: writes stay in the attachment ------------------------------ */

struct priv_board {
	_Atomic int phase;
};

static int private_child(struct s_env *s, struct priv_board *b)
{
	struct fl_client *c = attached_client(s, 0);
	uint8_t *a = seg_addr(0);
	uint64_t end = t_deadline_ms(30000);

	T_OK(space_attach(c, FL_CLIENT_SPACE_PRIVATE, 0));
	/* Page 0: written here, privately. */
	memset(a, 0xEE, 64);
	T_ASSERT(a[0] == 0xEE);
	atomic_store(&b->phase, 1);
	while (atomic_load(&b->phase) < 2)
		T_ASSERT(t_now_ns() < end, "the shared attacher did not write");
	/* Page 1 was written by the shared attacher before we touched it:
	 * a private attachment reads the page cache until it writes. */
	T_ASSERT(a[SEG_LEN / 2] == 0xDD, "the shared write is not seen: 0x%02x",
		 a[SEG_LEN / 2]);
	T_ASSERT(a[0] == 0xEE);
	T_OK(fl_client_space_detach(c, "sp"));
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	return T_PASS;
}

static int test_private(void *arg)
{
	const struct scase *sc = arg;
	struct priv_board *b = shared_page(sizeof(*b));
	struct fl_client *c;
	struct s_env s;
	uint8_t *a = seg_addr(0), *img = t_pattern_buf(SEG_LEN, 0, SEED);
	uint64_t end;
	pid_t kid;

	s_init(&s, sc->mem);
	s_start(&s, NULL);
	fflush(NULL);
	kid = fork();
	T_ASSERT(kid >= 0);
	if (kid == 0)
		_exit(private_child(&s, b));
	c = attached_client(&s, 0);
	T_OK(space_attach(c, 0, 0));
	end = t_deadline_ms(30000);
	while (atomic_load(&b->phase) < 1)
		T_ASSERT(t_now_ns() < end, "the private attacher did not write");
	/* Its private write is not in the page cache. */
	T_ASSERT(!memcmp(a, img, 64), "a private write reached the shared page cache: 0x%02x", a[0]);
	memset(a + SEG_LEN / 2, 0xDD, 64);
	atomic_store(&b->phase, 2);
	wait_kids(&kid, 1);
	/* A private attachment that detached took its writes along. */
	T_ASSERT(!memcmp(a, img, 64));
	T_OK(fl_client_space_detach(c, "sp"));
	/* Attached again: the daemon's page cache holds our shared write,
	 * and never the private one. */
	T_OK(space_attach(c, FL_CLIENT_SPACE_RDONLY, 0));
	T_ASSERT(a[SEG_LEN / 2] == 0xDD && !memcmp(a, img, 64));
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	free(img);
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- rdonly: reads the space, cannot write it ----------------------------- */

/*
 * The page-cache fds the client holds for a read-only attachment (found
 * as memfds of a segment's size in /proc/self/fd): each is read-only, the
 * kernel refuses a writable shared mapping of it, and (`reopen_refused`,
 * for a process that is not root) refuses to reopen it read-write through
 * /proc. Returns how many there are.
 */
/* This process's descriptors of segment page caches (memfds of SEG_LEN
 * bytes), in /proc/self/fd order: their fds and /proc paths; how many. */
#define MAX_SEG_FDS 16
static int segment_fds(int fds[MAX_SEG_FDS], char paths[MAX_SEG_FDS][300])
{
	char link[256], path[300];
	struct dirent *de;
	int n = 0;
	DIR *d = opendir("/proc/self/fd");

	T_ASSERT(d);
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);
		struct stat st;
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len < 0 || fd == dirfd(d))
			continue;
		link[len] = 0;
		if (strncmp(link, "/memfd:", 7) || fstat(fd, &st) || st.st_size != SEG_LEN)
			continue;
		T_ASSERT(n < MAX_SEG_FDS);
		fds[n] = fd;
		snprintf(paths[n], sizeof(paths[n]), "%s", path);
		n++;
	}
	closedir(d);
	return n;
}

static int check_ro_fds(bool reopen_refused)
{
	char paths[MAX_SEG_FDS][300];
	int fds[MAX_SEG_FDS], n = segment_fds(fds, paths);

	for (int i = 0; i < n; i++) {
		void *p;
		int nfd;

		T_ASSERT_EQ(fcntl(fds[i], F_GETFL) & O_ACCMODE, O_RDONLY);
		p = mmap(NULL, SEG_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
		T_ASSERT(p == MAP_FAILED && errno == EACCES, "a writable shared mapping of a read-only attachment's "
			 "page cache: %s", p == MAP_FAILED ? strerror(errno) : "made");
		if (reopen_refused) {
			nfd = open(paths[i], O_RDWR | O_CLOEXEC);
			T_ASSERT(nfd < 0 && errno == EACCES, "reopened read-write: %s", nfd < 0 ? strerror(errno) : "yes");
		}
	}
	return n;
}

static int writer_child(void *arg)
{
	volatile uint8_t *p = arg;

	/* The kernel's SIGSEGV, not a sanitizer's report of it. */
	signal(SIGSEGV, SIG_DFL);
	p[0] = 1;	/* SIGSEGV expected */
	return T_FAIL;
}

static int test_rdonly(void *arg)
{
	const struct scase *sc = arg;
	struct fl_client *c;
	struct s_env s;
	void *root = NULL;
	int st;

	s_init(&s, sc->mem);
	s_start(&s, NULL);
	c = attached_client(&s, 0);
	T_OK(space_attach(c, FL_CLIENT_SPACE_RDONLY, 0));
	check_pattern();
	T_OK(fl_client_space_root(c, "sp", "top", &root));
	T_ASSERT(root == seg_addr(0) + 123);
	T_ASSERT_EQ(fl_client_space_root(c, "sp", "nope", &root), -ENOENT);
	/* A write is SIGSEGV... */
	st = t_fork_wait(writer_child, seg_addr(0));
	T_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "a write to a read-only attachment: status 0x%x", st);
	/* ... and the kernel itself refuses a writable shared mapping of the
	 * page cache the client holds. */
	T_ASSERT_EQ(check_ro_fds(false), NSEG);
	T_ASSERT_EQ(fl_client_space_commit(c, "sp", NULL), 0);	/* root may commit, even read-only */
	T_OK(fl_client_space_detach(c, "sp"));
	T_ASSERT(nothing_mapped());
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- perms: the space directory's owner and mode ------------------------------ */

enum { P_RO_OK = 1, P_RW_EACCES = 2, P_COMMIT_EACCES = 4, P_RO_EACCES = 8, P_RW_OK = 16, P_COMMIT_OK = 32 };

struct perm_arg {
	struct s_env *s;
	unsigned expect;
	const char *rw_msg;	/* the reason a read-write attach is refused */
};

static int nobody_child(void *arg)
{
	struct perm_arg *pa = arg;
	struct fl_client *c;
	int r;

	t_drop_privileges();
	c = attached_client(pa->s, 0);
	if (pa->expect & P_RW_EACCES) {
		T_ASSERT_EQ(space_attach(c, 0, 0), -EACCES);
		T_SAID(pa->rw_msg);
		T_ASSERT(nothing_mapped(), "a refused attach left a mapping");
		/* A private (copy-on-write) attach needs only r. */
		T_ASSERT_EQ(space_attach(c, FL_CLIENT_SPACE_PRIVATE, 0), (pa->expect & P_RO_OK) ? 0 : -EACCES);
		if (pa->expect & P_RO_OK)
			T_OK(fl_client_space_detach(c, "sp"));
	}
	if (pa->expect & P_RO_EACCES) {
		T_ASSERT_EQ(space_attach(c, FL_CLIENT_SPACE_RDONLY, 0), -EACCES);
		T_SAID("space sp: uid 65534 may not attach (owner 0, mode 0600)");
		T_ASSERT(nothing_mapped(), "a refused attach left a mapping");
		T_ASSERT_EQ(fl_client_space_commit(c, "sp", NULL), -ENOENT);
	}
	if (pa->expect & P_RO_OK) {
		T_OK(space_attach(c, FL_CLIENT_SPACE_RDONLY, 0));
		check_pattern();
		T_ASSERT_EQ(check_ro_fds(true), NSEG);
		r = fl_client_space_commit(c, "sp", NULL);
		T_ASSERT_EQ(r, (pa->expect & P_COMMIT_EACCES) ? -EACCES : 0);
		if (r)
			T_SAID("uid 65534 may not commit");
		T_OK(fl_client_space_detach(c, "sp"));
	}
	if (pa->expect & P_RW_OK) {
		uint64_t v = 0;
		T_OK(space_attach(c, 0, 0));
		memset(seg_addr(1), 0x77, 100);
		T_OK(fl_client_space_commit(c, "sp", &v));
		T_ASSERT(v >= 2);
		T_OK(fl_client_space_detach(c, "sp"));
	}
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	return T_PASS;
}

static void as_nobody(struct s_env *s, unsigned expect, const char *rw_msg)
{
	struct perm_arg pa = { s, expect, rw_msg };
	int st = t_fork_wait(nobody_child, &pa);

	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == T_PASS, "uid %d case 0x%x: status 0x%x", T_NOBODY, expect, st);
}

static int test_perms(void *arg)
{
	const struct scase *sc = arg;
	const char *allow[] = { "--allow-uid", "0", "--allow-uid", "65534", NULL };
	char dir[600], run[200], man[700];
	uint8_t *before, *after;
	size_t before_len, after_len;
	struct s_env s;

	if (geteuid() != 0)
		t_skip_resource("needs root to become another uid");
	s_init(&s, sc->mem);
	snprintf(dir, sizeof(dir), "%s/sp", s.spaces);
	snprintf(run, sizeof(run), "%s/run", s.e.dir);
	/* Reachable by uid 65534: the scratch directory is mkdtemp's 0700. */
	T_ASSERT(chmod(s.e.dir, 0755) == 0);
	s_start(&s, allow);
	snprintf(man, sizeof(man), "%s/manifest", dir);
	before = t_read_file(man, &before_len);
	T_ASSERT(chown(dir, 0, 0) == 0 && chmod(dir, 0644) == 0);
	as_nobody(&s, P_RO_OK | P_RW_EACCES | P_COMMIT_EACCES,
		  "space sp: uid 65534 may not attach read-write (owner 0, mode 0644)");
	T_ASSERT(chmod(dir, 0600) == 0);
	as_nobody(&s, P_RO_EACCES | P_RW_EACCES, "(owner 0, mode 0600)");
	/* The group's bits for the group. */
	T_ASSERT(chown(dir, 0, T_NOBODY) == 0 && chmod(dir, 0640) == 0);
	as_nobody(&s, P_RO_OK | P_RW_EACCES | P_COMMIT_EACCES, "(owner 0, mode 0640)");
	/* Refused: nothing on disk changed. */
	after = t_read_file(man, &after_len);
	T_ASSERT(before_len == after_len && !memcmp(before, after, before_len), "a refused commit wrote the manifest");
	free(before);
	free(after);
	/* The owner's bits for the owner: mode 0700 owned by 65534. */
	T_ASSERT(chown(dir, T_NOBODY, T_NOBODY) == 0 && chmod(dir, 0700) == 0);
	as_nobody(&s, P_RW_OK, NULL);
	(void)run;
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- perms of the images a manifest names ------------------------------------- */

/* spaces/a[2]: a fork of spaces/a[1]'s last version, whose manifest names
 * the origin's images by absolute path. */
static int fork_space_child(void *arg)
{
	const char *const *a = arg;
	char from[512], to[512];
	struct fl_space_opts so = { .sz = sizeof(so), .name = a[2], .dir = to, .flags = FL_SPACE_NO_SYNC };
	struct fl_space *origin, *sp;

	snprintf(from, sizeof(from), "%s/%s", a[0], a[1]);
	snprintf(to, sizeof(to), "%s/%s", a[0], a[2]);
	T_OK(fl_space_open(from, NULL, &origin));
	T_OK(fl_space_fork(origin, 0, &so, &sp));
	fl_space_free(sp);
	fl_space_free(origin);
	return T_PASS;
}

static void fork_space(struct s_env *s, const char *origin, const char *name)
{
	const char *a[] = { s->spaces, origin, name };
	char path[600];
	int st = t_fork_wait(fork_space_child, a);

	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == T_PASS, "forking %s: status 0x%x", origin, st);
	/* uid 65534's own space directory, manifest and all. */
	snprintf(path, sizeof(path), "%s/%s", s->spaces, name);
	T_ASSERT(chown(path, T_NOBODY, T_NOBODY) == 0 && chmod(path, 0700) == 0);
	snprintf(path, sizeof(path), "%s/%s/manifest", s->spaces, name);
	T_ASSERT(chown(path, T_NOBODY, T_NOBODY) == 0);
}

static int images_child(void *arg)
{
	struct s_env *s = arg;
	struct fl_client_space_opts ro = { .sz = sizeof(ro), .flags = FL_CLIENT_SPACE_RDONLY };
	struct fl_client *c;

	t_drop_privileges();
	c = attached_client(s, 0);
	/* Its own directory, but the images are root's private space's. */
	T_ASSERT_EQ(fl_client_space_attach(c, "mine", &ro), -EACCES);
	T_SAID("may not read image");
	T_SAID("/secret/");
	T_ASSERT(nothing_mapped(), "a refused attach left a mapping");
	T_ASSERT_EQ(fl_client_space_attach(c, "secret", &ro), -EACCES);
	/* A symlink to the private space lends it nothing. */
	T_ASSERT_EQ(fl_client_space_attach(c, "lnk", &ro), -ENOENT);
	T_ASSERT(nothing_mapped(), "a refused attach left a mapping");
	/* A fork of a space it may read still attaches. */
	T_OK(fl_client_space_attach(c, "pub", &ro));
	check_pattern();
	T_OK(fl_client_space_detach(c, "pub"));
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	return T_PASS;
}

static int test_perms_images(void *arg)
{
	const struct scase *sc = arg;
	const char *allow[] = { "--allow-uid", "0", "--allow-uid", "65534", NULL };
	char path[600];
	struct s_env s;
	int st;

	if (geteuid() != 0)
		t_skip_resource("needs root to become another uid");
	s_init(&s, sc->mem);
	make_space(&s, "secret", sc->mem);
	fork_space(&s, "secret", "mine");
	fork_space(&s, "sp", "pub");
	snprintf(path, sizeof(path), "%s/sp", s.spaces);
	T_ASSERT(chown(path, 0, 0) == 0 && chmod(path, 0755) == 0);
	snprintf(path, sizeof(path), "%s/secret", s.spaces);
	T_ASSERT(chown(path, 0, 0) == 0 && chmod(path, 0700) == 0);
	snprintf(path, sizeof(path), "%s/lnk", s.spaces);
	T_ASSERT(symlink("secret", path) == 0);
	T_ASSERT(chmod(s.e.dir, 0755) == 0);
	s_start(&s, allow);
	st = t_fork_wait(images_child, &s);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == T_PASS, "uid %d: status 0x%x", T_NOBODY, st);
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- bad: each refusal a clear errno, nothing mapped --------------------------- */

static int test_bad(void *arg)
{
	const struct scase *sc = arg;
	struct fl_client_space_opts o = { .sz = sizeof(o) };
	struct fl_client *c;
	struct s_env s;
	char path[600];
	void *blocker;

	s_init(&s, sc->mem);
	make_space(&s, "corrupt", sc->mem);
	snprintf(path, sizeof(path), "%s/corrupt/manifest", s.spaces);
	{
		size_t len;
		uint8_t *m = t_read_file(path, &len);
		T_ASSERT(len > 40);
		m[len / 2] ^= 0xff;
		t_write_file(path, m, len);
		free(m);
	}
	s_start(&s, NULL);
	c = d_client(&s.e, 0, 0);
	/* Before fl_client_attach: nobody would serve the segments yet. */
	T_ASSERT_EQ(fl_client_space_attach(c, "sp", NULL), -ENOTCONN);
	fl_client_free(c);
	c = attached_client(&s, 0);
	T_ASSERT_EQ(fl_client_space_attach(c, "nope", NULL), -ENOENT);
	T_SAID("space nope: no such space in");
	/* A symlink (to a space even) or a file is not a space directory. */
	snprintf(path, sizeof(path), "%s/link", s.spaces);
	T_ASSERT(symlink("sp", path) == 0);
	T_ASSERT_EQ(fl_client_space_attach(c, "link", NULL), -ENOENT);
	T_SAID("is not a space directory");
	snprintf(path, sizeof(path), "%s/file", s.spaces);
	t_write_file(path, "x", 1);
	T_ASSERT_EQ(fl_client_space_attach(c, "file", NULL), -ENOENT);
	T_SAID("is not a space directory");
	T_ASSERT(nothing_mapped());
	T_ASSERT_EQ(fl_client_space_attach(c, "../x", NULL), -EINVAL);
	T_ASSERT_EQ(fl_client_space_attach(c, "..", NULL), -EINVAL);
	T_ASSERT_EQ(fl_client_space_attach(c, "", NULL), -EINVAL);
	T_ASSERT_EQ(fl_client_space_attach(c, "corrupt", NULL), -EBADMSG);
	T_SAID("corrupt/manifest");
	o.version = 9;
	o.flags = FL_CLIENT_SPACE_RDONLY;
	T_ASSERT_EQ(fl_client_space_attach(c, "sp", &o), -ENOENT);
	T_SAID("has no version 9");
	o.version = 1;
	o.flags = 0;
	T_ASSERT_EQ(fl_client_space_attach(c, "sp", &o), -EROFS);
	T_SAID("version 1 is attached read-only or private");
	o.flags = 1u << 7;
	o.version = 0;
	T_ASSERT_EQ(fl_client_space_attach(c, "sp", &o), -EINVAL);
	/* Options versioned by sz, as everywhere in the library. */
	{
		struct {
			struct fl_client_space_opts o;
			uint64_t newer;
		} big = { .o = { .sz = sizeof(big) }, .newer = 1 };
		struct fl_client_space_opts none = { 0 };
		T_ASSERT_EQ(fl_client_space_attach(c, "sp", &big.o), -E2BIG);
		T_ASSERT_EQ(fl_client_space_attach(c, "sp", &none), -EINVAL);
	}
	T_ASSERT(nothing_mapped());
	/* The second segment's range is in use: the first, mapped by this
	 * call already, goes again. */
	blocker = mmap(seg_addr(1) + SEG_LEN / 2, U_PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		       -1, 0);
	T_ASSERT(blocker == seg_addr(1) + SEG_LEN / 2);
	T_ASSERT_EQ(fl_client_space_attach(c, "sp", NULL), -EEXIST);
	T_ASSERT(!mapped_at(seg_addr(0), SEG_LEN), "the first segment stayed mapped");
	T_ASSERT(mapped_at(blocker, U_PAGE));
	munmap(blocker, U_PAGE);
	T_ASSERT_EQ(fl_client_space_detach(c, "sp"), -ENOENT);
	T_ASSERT_EQ(fl_client_space_commit(c, "sp", NULL), -ENOENT);
	/* After all that the space attaches, whole and right. */
	T_OK(fl_client_space_attach(c, "sp", NULL));
	T_ASSERT_EQ(fl_client_space_attach(c, "sp", NULL), -EALREADY);
	check_pattern();
	/* An older version, read-only, is its own page cache. */
	memset(seg_addr(0), 0x42, 10);
	T_OK(fl_client_space_detach(c, "sp"));
	o.flags = FL_CLIENT_SPACE_RDONLY;
	o.version = 1;
	T_OK(fl_client_space_attach(c, "sp", &o));
	check_pattern();
	T_ASSERT_EQ(fl_client_space_commit(c, "sp", NULL), -EROFS);
	T_OK(fl_client_space_detach(c, "sp"));
	/* The live one still has the write. */
	T_OK(fl_client_space_attach(c, "sp", NULL));
	T_ASSERT(seg_addr(0)[9] == 0x42);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&s.e);
	return T_PASS;
}

/* A raw SPACE_OPEN of `name` on session s: the reply's type and errno. */
static int raw_space_open(int s, const char *name, uint32_t seq, int *ret_err)
{
	uint8_t m[FL_MGR_HDR_SIZE + 16 + 64];
	size_t n = strlen(name);
	struct iovec iov = { m, FL_MGR_HDR_SIZE + 16 + n };
	size_t sent = 0;

	memset(m, 0, sizeof(m));
	fl__mgr_hdr_encode(m, FL_MGR_SPACE_OPEN, (uint32_t)(16 + n), seq);
	m[FL_MGR_HDR_SIZE + 12] = (uint8_t)n;
	memcpy(m + FL_MGR_HDR_SIZE + 16, name, n);
	T_ASSERT(fl__send_fd(s, &iov, 1, -1, &sent) == 0 && sent == iov.iov_len);
	return d_raw_reply(s, ret_err, 5000);
}

/* A peer that does not use the library: a hostile name is refused with
 * EINVAL and the session goes on. */
static int test_raw_names(void *arg)
{
	const struct scase *sc = arg;
	struct fl__mgr_hello h = { .role = FL_MGR_ROLE_CLIENT };
	uint8_t p[FL_MGR_HDR_SIZE + 16];
	struct iovec iov = { p, sizeof(p) };
	struct s_env s;
	size_t sent = 0;
	int sock, err = 0;

	s_init(&s, sc->mem);
	s_start(&s, NULL);
	sock = d_raw_connect(&s.e);
	fl__mgr_hdr_encode(p, FL_MGR_HELLO, 16, 1);
	fl__mgr_hello_encode(p + FL_MGR_HDR_SIZE, &h);
	T_ASSERT(fl__send_fd(sock, &iov, 1, -1, &sent) == 0);
	T_ASSERT_EQ(d_raw_reply(sock, &err, 5000), FL_MGR_WELCOME);
	T_ASSERT_EQ(raw_space_open(sock, "../x", 2, &err), FL_MGR_ERROR);
	T_ASSERT_EQ(err, EINVAL);
	T_ASSERT_EQ(raw_space_open(sock, "a/b", 3, &err), FL_MGR_ERROR);
	T_ASSERT_EQ(err, EINVAL);
	T_ASSERT_EQ(raw_space_open(sock, "nope", 4, &err), FL_MGR_ERROR);
	T_ASSERT_EQ(err, ENOENT);
	T_ASSERT_EQ(raw_space_open(sock, "sp", 5, &err), FL_MGR_SPACE);
	close(sock);
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- resume: only this segment's own page cache ------------------------------ */

/* token: a session to resume (anyone may claim one no live session has). */
static int raw_hello(struct s_env *s, uint64_t token)
{
	struct fl__mgr_hello h = { .role = FL_MGR_ROLE_CLIENT, .token = token };
	uint8_t p[FL_MGR_HDR_SIZE + 16];
	struct iovec iov = { p, sizeof(p) };
	size_t sent = 0;
	int sock = d_raw_connect(&s->e), err = 0;

	fl__mgr_hdr_encode(p, FL_MGR_HELLO, 16, 1);
	fl__mgr_hello_encode(p + FL_MGR_HDR_SIZE, &h);
	T_ASSERT(fl__send_fd(sock, &iov, 1, -1, &sent) == 0);
	T_ASSERT_EQ(d_raw_reply(sock, &err, 5000), FL_MGR_WELCOME);
	return sock;
}

/* A raw OPEN of segment `index` of `space` (RESUME with resume_fd >= 0):
 * the reply's type, its errno for ERROR and the fd it carries. */
static int raw_open_segment(int sock, const char *space, unsigned index, int resume_fd, uint32_t seq, int *ret_err,
			    int *ret_fd)
{
	static uint8_t buf[FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD];
	struct fl__mgr_open o = { .kind = FL_MGR_SRC_SEGMENT, .region = index,
				  .flags = resume_fd >= 0 ? FL_MGR_OPEN_RESUME : 0 };
	uint8_t m[FL_MGR_HDR_SIZE + 12 + FL_MGR_MAX_NAME];
	struct fl__mgr_hdr h;
	struct iovec iov;
	size_t sent = 0;
	int n, fd = -1;

	snprintf(o.name, sizeof(o.name), "%s", space);
	n = fl__mgr_open_encode(m + FL_MGR_HDR_SIZE, &o);
	T_ASSERT(n > 0);
	fl__mgr_hdr_encode(m, FL_MGR_OPEN, (uint32_t)n, seq);
	iov = (struct iovec){ m, FL_MGR_HDR_SIZE + (size_t)n };
	T_ASSERT(fl__send_fd(sock, &iov, 1, resume_fd, &sent) == 0 && sent == iov.iov_len);
	n = fl__mgr_recv(sock, buf, &h, &fd, (int)t_scaled_ms(5000));
	T_ASSERT(n >= 0, "no reply: %d", n);
	if (h.type == FL_MGR_ERROR) {
		char msg[FL_MGR_MAX_ERRMSG + 1];
		fl__mgr_error_decode(buf + FL_MGR_HDR_SIZE, (size_t)n, ret_err, msg);
		snprintf(last_msg, sizeof(last_msg), "%s", msg);
	}
	if (ret_fd)
		*ret_fd = fd;
	else if (fd >= 0)
		close(fd);
	return h.type;
}

/*
 * A client that can read space sp and holds another space's page cache of
 * the same length (a daemon-made memfd, owned by the daemon's uid) offers
 * it as sp's page cache on "resume": refused, and sp's bytes stay sp's.
 */
static int test_resume_foreign(void *arg)
{
	const struct scase *sc = arg;
	struct fl_client *c;
	struct s_env s;
	int sock, err = 0, afd = -1;
	uint8_t *p;

	s_init(&s, sc->mem);
	make_space(&s, "other", sc->mem);
	s_start(&s, NULL);
	/* As a resuming session would: any session may bring a page cache
	 * back (a forked child of a client takes over with a new one). */
	sock = raw_hello(&s, 0x1234567890abcdefull);
	T_ASSERT_EQ(raw_space_open(sock, "other", 2, &err), FL_MGR_SPACE);
	T_ASSERT_EQ(raw_open_segment(sock, "other", 0, -1, 3, &err, &afd), FL_MGR_SOURCE);
	T_ASSERT(afd >= 0);
	/* Other's bytes, in its page cache. */
	p = mmap(NULL, SEG_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, afd, 0);
	T_ASSERT(p != MAP_FAILED);
	memset(p, 0xEE, 4096);
	munmap(p, SEG_LEN);
	T_ASSERT_EQ(raw_space_open(sock, "sp", 4, &err), FL_MGR_SPACE);
	err = 0;
	T_ASSERT_EQ(raw_open_segment(sock, "sp", 0, afd, 5, &err, NULL), FL_MGR_ERROR);
	T_ASSERT_EQ(err, EINVAL);
	T_SAID("not this segment's");
	close(afd);
	/* The right name on the other memory type: only the daemon's uid
	 * (this test, root) could make one; refused all the same. */
	afd = memfd_create("fl-space:sp:0", MFD_CLOEXEC | (sc->mem == FL_MEM_HUGETLB ? 0 : MFD_HUGETLB));
	if (afd >= 0 && ftruncate(afd, SEG_LEN) == 0) {
		err = 0;
		T_ASSERT_EQ(raw_open_segment(sock, "sp", 0, afd, 6, &err, NULL), FL_MGR_ERROR);
		T_ASSERT_EQ(err, EINVAL);
		T_SAID("of its memory type");
	} else {
		t_log("no hugetlb memfd of %u bytes: the memory type check is not tried", SEG_LEN);
	}
	if (afd >= 0)
		close(afd);
	close(sock);
	c = attached_client(&s, 0);
	T_OK(space_attach(c, FL_CLIENT_SPACE_RDONLY, 0));
	check_pattern();
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- commit: through the daemon, read back in process ----------------------- */

static int reopen_child(void *arg)
{
	const char *dir = arg;
	struct fl_space_info info = { .sz = sizeof(info) };
	struct fl_space *sp;
	uint8_t *img = t_pattern_buf(SEG_LEN, SEG_LEN, SEED);

	T_OK(fl_space_open(dir, NULL, &sp));
	T_OK(fl_space_info(sp, &info));
	T_ASSERT_EQ(info.version, 2);
	T_OK(fl_space_attach(sp, NULL));
	for (size_t i = 0; i < SEG_LEN; i++) {
		uint8_t want = i < 1000 ? 0x3c : img[i];
		T_ASSERT(seg_addr(1)[i] == want, "byte %zu: 0x%02x, not 0x%02x", i, seg_addr(1)[i], want);
	}
	T_ASSERT(t_check_pattern(seg_addr(0), SEG_LEN, 0, SEED) < 0);
	T_OK(fl_space_detach(sp));
	fl_space_free(sp);
	free(img);
	return T_PASS;
}

static int test_commit(void *arg)
{
	const struct scase *sc = arg;
	struct fl_client *c;
	struct s_env s;
	char dir[600];
	uint64_t v = 0;
	int st;

	s_init(&s, sc->mem);
	s_start(&s, NULL);
	c = attached_client(&s, 0);
	T_OK(space_attach(c, 0, 0));
	memset(seg_addr(1), 0x3c, 1000);
	T_OK(fl_client_space_commit(c, "sp", &v));
	T_ASSERT_EQ(v, 2);
	/* Unmapped here: the reader below is forked from this process. */
	T_OK(fl_client_space_detach(c, "sp"));
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_stop(&s.e, SIGTERM);
	snprintf(dir, sizeof(dir), "%s/sp", s.spaces);
	st = t_fork_wait(reopen_child, dir);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == T_PASS, "status 0x%x", st);
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- commit: a page overwritten with zeros is saved as zeros ------------------ */

struct zero_arg {
	char dir[600];
	size_t psz;
};

static int zero_reopen_child(void *arg)
{
	const struct zero_arg *za = arg;
	const char *dir = za->dir;
	struct fl_space_info info = { .sz = sizeof(info) };
	struct fl_space *sp;
	size_t psz = za->psz;

	T_OK(fl_space_open(dir, NULL, &sp));
	T_OK(fl_space_info(sp, &info));
	T_ASSERT_EQ(info.version, 3);
	T_OK(fl_space_attach(sp, NULL));
	T_ASSERT(u_all_zero(seg_addr(0) + psz, psz), "the zeroed page reads 0x%02x", seg_addr(0)[psz]);
	for (size_t i = 0; i < psz; i++)
		T_ASSERT(seg_addr(0)[i] == 0x5b, "byte %zu of the first page: 0x%02x", i, seg_addr(0)[i]);
	T_OK(fl_space_detach(sp));
	fl_space_free(sp);
	return T_PASS;
}

/*
 * A client writes a page, commits (version 2), overwrites it with zeros and
 * commits again (version 3): version 3 has the zeros, not version 2's
 * bytes (hugetlbfs cannot tell a zeroed page from a hole).
 */
static int test_commit_zero(void *arg)
{
	const struct scase *sc = arg;
	struct fl_client *c;
	struct s_env s;
	struct zero_arg za;
	uint64_t v = 0;
	size_t psz;
	int st;

	s_init(&s, sc->mem);
	s_start(&s, NULL);
	psz = sc->mem == FL_MEM_HUGETLB ? U_HPAGE : U_PAGE;
	c = attached_client(&s, 0);
	T_OK(space_attach(c, 0, 0));
	memset(seg_addr(0), 0x5b, psz);
	memset(seg_addr(0) + psz, 0x5c, psz);
	T_OK(fl_client_space_commit(c, "sp", &v));
	T_ASSERT_EQ(v, 2);
	memset(seg_addr(0) + psz, 0, psz);
	T_OK(fl_client_space_commit(c, "sp", &v));
	T_ASSERT_EQ(v, 3);
	T_OK(fl_client_space_detach(c, "sp"));
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_stop(&s.e, SIGTERM);
	snprintf(za.dir, sizeof(za.dir), "%s/sp", s.spaces);
	za.psz = psz;
	st = t_fork_wait(zero_reopen_child, &za);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == T_PASS, "status 0x%x", st);
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- bounded: open and close in a loop, many versions, a limit ---------------- */

/* A raw SPACE_OPEN of `name` at `version` with `flags`: the reply's type. */
static int raw_space_open_v(int s, const char *name, uint64_t version, uint32_t flags, uint32_t seq, int *ret_err)
{
	uint8_t m[FL_MGR_HDR_SIZE + 16 + 64];
	size_t n = strlen(name);
	struct iovec iov = { m, FL_MGR_HDR_SIZE + 16 + n };
	size_t sent = 0;

	memset(m, 0, sizeof(m));
	fl__mgr_hdr_encode(m, FL_MGR_SPACE_OPEN, (uint32_t)(16 + n), seq);
	for (int i = 0; i < 8; i++)
		m[FL_MGR_HDR_SIZE + i] = (uint8_t)(version >> (8 * i));
	m[FL_MGR_HDR_SIZE + 8] = (uint8_t)flags;
	m[FL_MGR_HDR_SIZE + 12] = (uint8_t)n;
	memcpy(m + FL_MGR_HDR_SIZE + 16, name, n);
	T_ASSERT(fl__send_fd(s, &iov, 1, -1, &sent) == 0 && sent == iov.iov_len);
	return d_raw_reply(s, ret_err, 5000);
}

static int raw_space_close(int s, const char *name, uint32_t seq)
{
	uint8_t m[FL_MGR_HDR_SIZE + 64];
	size_t n = strlen(name);
	struct iovec iov = { m, 0 };
	size_t sent = 0;
	int len = fl__mgr_space_name_encode(m + FL_MGR_HDR_SIZE, name), err = 0;

	(void)n;
	T_ASSERT(len > 0);
	fl__mgr_hdr_encode(m, FL_MGR_SPACE_CLOSE, (uint32_t)len, seq);
	iov.iov_len = FL_MGR_HDR_SIZE + (size_t)len;
	T_ASSERT(fl__send_fd(s, &iov, 1, -1, &sent) == 0 && sent == iov.iov_len);
	return d_raw_reply(s, &err, 5000);
}

static int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	T_ASSERT(dir);
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

#define NVERS 24

static int test_bounded(void *arg)
{
	const struct scase *sc = arg;
	const char *limit[] = { "--max-ranges", "4", NULL };
	const char *names[] = { "s2", "s3", "s4", "s5" };
	struct fl_client *c;
	struct s_env s;
	uint64_t v = 0;
	int sock, err = 0, before, after;
	uint32_t seq = 2;

	s_init(&s, sc->mem);
	for (int i = 0; i < 4; i++)
		make_space(&s, names[i], sc->mem);
	s_start(&s, limit);
	/* Versions 2 to NVERS + 1. */
	c = attached_client(&s, 0);
	T_OK(space_attach(c, 0, 0));
	for (int i = 0; i < NVERS; i++) {
		seg_addr(0)[0] = (uint8_t)i;
		T_OK(fl_client_space_commit(c, "sp", &v));
	}
	T_ASSERT_EQ(v, NVERS + 1);
	T_OK(fl_client_space_detach(c, "sp"));
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	sock = raw_hello(&s, 0);
	T_ASSERT_EQ(raw_space_open_v(sock, "sp", 1, FL_MGR_SPACE_RDONLY, seq++, &err), FL_MGR_SPACE);
	T_ASSERT_EQ(raw_space_close(sock, "sp", seq++), FL_MGR_SPACE_CLOSED);
	before = count_fds(s.e.pid);
	/* 1000 opens in one session, every version in turn: neither the
	 * session's table (the limit is 4) nor the daemon's fds grow. */
	for (int i = 0; i < 1000; i++) {
		uint64_t ver = 1 + (uint64_t)(i % (NVERS + 1));
		int t = raw_space_open_v(sock, "sp", ver, FL_MGR_SPACE_RDONLY, seq++, &err);
		T_ASSERT(t == FL_MGR_SPACE, "open %d (version %" PRIu64 "): reply %d, errno %d", i, ver, t, err);
		T_ASSERT_EQ(raw_space_close(sock, "sp", seq++), FL_MGR_SPACE_CLOSED);
	}
	after = count_fds(s.e.pid);
	t_log("daemon fds: %d before, %d after", before, after);
	T_ASSERT(after <= before + 2, "the daemon's fds grew from %d to %d", before, after);
	/* At most --max-ranges spaces open at once in a session. */
	T_ASSERT_EQ(raw_space_open_v(sock, "sp", 0, FL_MGR_SPACE_RDONLY, seq++, &err), FL_MGR_SPACE);
	for (int i = 0; i < 3; i++)
		T_ASSERT_EQ(raw_space_open_v(sock, names[i], 0, FL_MGR_SPACE_RDONLY, seq++, &err), FL_MGR_SPACE);
	err = 0;
	T_ASSERT_EQ(raw_space_open_v(sock, names[3], 0, FL_MGR_SPACE_RDONLY, seq++, &err), FL_MGR_ERROR);
	T_ASSERT_EQ(err, EDQUOT);
	T_ASSERT_EQ(raw_space_close(sock, names[0], seq++), FL_MGR_SPACE_CLOSED);
	T_ASSERT_EQ(raw_space_open_v(sock, names[3], 0, FL_MGR_SPACE_RDONLY, seq++, &err), FL_MGR_SPACE);
	close(sock);
	d_env_free(&s.e);
	return T_PASS;
}

/* ---- kill -9 of the daemon with attached processes ---------------------------- */

struct kill_board {
	_Atomic int written, go, done;
	struct u_verdicts v[2];
};

/*
 * Two processes attached read-write: each writes the first page of its
 * half of segment 0 (uncommitted), then, after the kill, reads every page
 * of both segments: the other's write, its own, and pages nobody touched
 * before the kill (the image's, served by the new daemon).
 */
static int killed_client(struct s_env *s, struct kill_board *b, int i, bool restart)
{
	struct fl_client *c = attached_client(s, restart ? 20000 : 300);
	size_t psz = U_PAGE;
	uint64_t end = t_deadline_ms(60000);

	T_OK(space_attach(c, 0, 0));
	u_bus_install();
	memset(seg_addr(0) + (size_t)i * SEG_LEN / 2, 0xA0 + i, 32);
	atomic_fetch_add(&b->written, 1);
	while (!atomic_load(&b->go))
		T_ASSERT(t_now_ns() < end, "no go");
	for (int k = 0; k < NSEG; k++) {
		uint8_t *img = t_pattern_buf(SEG_LEN, (uint64_t)k * SEG_LEN, SEED);
		for (int w = 0; w < 2 && k == 0; w++)
			for (int x = 0; x < 32; x++)
				img[(size_t)w * SEG_LEN / 2 + x] = (uint8_t)(0xA0 + w);
		for (size_t p = 0; p < SEG_LEN / psz; p++) {
			int got = u_probe_cmp(seg_addr(k) + p * psz, img + p * psz, psz);
			if (got == 0) {
				atomic_fetch_add(&b->v[i].ok, 1);
			} else if (got < 0) {
				atomic_fetch_add(&b->v[i].sigbus, 1);
			} else {
				atomic_fetch_add(&b->v[i].bad, 1);
				if (u_all_zero(seg_addr(k) + p * psz, psz))
					atomic_fetch_add(&b->v[i].zero, 1);
			}
		}
		free(img);
	}
	atomic_fetch_add(&b->done, 1);
	if (restart) {
		/* Resumed on one page cache, not one each: a write now is
		 * seen by the other process. */
		volatile uint8_t *mine = seg_addr(1) + (size_t)i * SEG_LEN / 2 + 100;
		volatile uint8_t *theirs = seg_addr(1) + (size_t)(1 - i) * SEG_LEN / 2 + 100;
		end = t_deadline_ms(30000);
		while (atomic_load(&b->done) < 2)
			T_ASSERT(t_now_ns() < end, "the other process did not finish reading");
		*mine = (uint8_t)(0xC0 + i);
		end = t_deadline_ms(30000);
		while (*theirs != 0xC0 + (1 - i))
			T_ASSERT(t_now_ns() < end, "process %d: the other's write after the restart is not seen: 0x%02x",
				 i, *theirs);
	}
	/* Also after failing closed: the detach does not wait for a daemon. */
	T_OK(fl_client_space_detach(c, "sp"));
	T_ASSERT(nothing_mapped());
	if (fl_client_guard_state(c) != FL_GUARD_FAILED)
		T_OK(fl_client_detach(c));
	fl_client_free(c);
	return T_PASS;
}

static int test_kill(void *arg, bool restart)
{
	const struct scase *sc = arg;
	struct kill_board *b = shared_page(sizeof(*b));
	pid_t pids[2];
	struct s_env s;
	uint64_t end;
	long pages = NSEG * SEG_LEN / U_PAGE;
	bool bus[2], poison = t_has(FL_FEATURE_BIT(FL_FEATURE_POISON));

	s_init(&s, sc->mem);
	s_start(&s, NULL);
	for (int i = 0; i < 2; i++) {
		fflush(NULL);
		pids[i] = fork();
		T_ASSERT(pids[i] >= 0);
		if (pids[i] == 0)
			_exit(killed_client(&s, b, i, restart));
	}
	end = t_deadline_ms(30000);
	while (atomic_load(&b->written) < 2)
		T_ASSERT(t_now_ns() < end, "clients did not write");
	d_stop(&s.e, SIGKILL);
	/* The readers start while no daemon runs: their faults wait. */
	atomic_store(&b->go, 1);
	if (restart) {
		t_sleep_ms(200);
		s_start(&s, NULL);
	}
	for (int i = 0; i < 2; i++) {
		int st = 0;
		T_ASSERT(t_wait_pid(pids[i], 60000, &st) == 0, "process %d did not finish", i);
		bus[i] = WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS;
		T_ASSERT(bus[i] || (WIFEXITED(st) && WEXITSTATUS(st) == 0), "process %d: status 0x%x", i, st);
	}
	for (int i = 0; i < 2; i++) {
		t_log("client %d: ok %ld, SIGBUS %ld, wrong %ld (zero %ld)", i, atomic_load(&b->v[i].ok),
		      atomic_load(&b->v[i].sigbus), atomic_load(&b->v[i].bad), atomic_load(&b->v[i].zero));
		T_ASSERT_EQ(atomic_load(&b->v[i].zero), 0);
		T_ASSERT_EQ(atomic_load(&b->v[i].bad), 0);
		if (restart) {
			T_ASSERT(!bus[i]);
			T_ASSERT_EQ(atomic_load(&b->v[i].ok), pages);
		} else if (!poison) {
			/* Without POISON the guard stops the whole process with
			 * SIGBUS: what it read before that was right. */
			T_ASSERT(bus[i], "process %d was not stopped by SIGBUS", i);
		} else {
			T_ASSERT(!bus[i]);
			/* Only what was mapped before the kill is readable:
			 * every page never touched fails closed. */
			T_ASSERT(atomic_load(&b->v[i].sigbus) > 0);
			T_ASSERT_EQ(atomic_load(&b->v[i].ok) + atomic_load(&b->v[i].sigbus), pages);
		}
	}
	if (restart) {
		/* The restarted daemon took the page cache back: a third
		 * process attaching now sees the uncommitted writes. */
		struct fl_client *c = attached_client(&s, 0);
		T_OK(space_attach(c, FL_CLIENT_SPACE_RDONLY, 0));
		T_ASSERT(seg_addr(0)[0] == 0xA0 && seg_addr(0)[SEG_LEN / 2] == 0xA1, "0x%02x 0x%02x", seg_addr(0)[0],
			 seg_addr(0)[SEG_LEN / 2]);
		T_OK(fl_client_detach(c));
		fl_client_free(c);
	}
	d_env_free(&s.e);
	return T_PASS;
}

static int test_kill_restart(void *arg)
{
	return test_kill(arg, true);
}

static int test_kill_no_restart(void *arg)
{
	return test_kill(arg, false);
}

/* ---- planted: a read-only attacher's own mapping of the page cache -------- */

/*
 * A process with a read-only descriptor of a segment's page cache (the
 * client library keeps one per segment for a resume) can map it without
 * the daemon serving that mapping; a read fault there puts a zero page
 * into a hole of the page cache. Every other attacher must still see the
 * segment's bytes: the daemon gives such a page its bytes again before it
 * maps it (the planter's own mapping then shows them too: the page cache
 * itself is right again).
 */
struct plant_board {
	_Atomic int planted, written, checked;
};

/* Pages planted: the second half of each segment, never touched through the daemon. */
#define PLANT_OFF (SEG_LEN / 2)

static int planter(struct s_env *s, struct plant_board *b, enum fl_mem_type mem)
{
	uint8_t *maps[NSEG];
	char paths[MAX_SEG_FDS][300];
	int fds[MAX_SEG_FDS], n;
	struct fl_client *c;
	uint64_t end;

	t_drop_privileges();
	c = attached_client(s, 0);
	T_OK(space_attach(c, FL_CLIENT_SPACE_RDONLY, 0));
	n = segment_fds(fds, paths);
	T_ASSERT(n <= NSEG);
	for (int i = 0; i < n; i++) {
		/* hugetlb: a private mapping's read fault makes a private
		 * page, not a page of the file; shmem: both kinds plant. */
		void *p = mmap(NULL, SEG_LEN, PROT_READ, mem == FL_MEM_SHMEM && i == 0 ? MAP_PRIVATE : MAP_SHARED,
			       fds[i], 0);
		T_ASSERT(p != MAP_FAILED, "mapping the page cache read-only: %s", strerror(errno));
		maps[i] = p;
	}
	T_ASSERT_EQ(n, NSEG);
	for (int k = 0; k < NSEG; k++)
		for (size_t off = PLANT_OFF; off < SEG_LEN; off += U_PAGE)
			T_ASSERT(maps[k][off] == 0 && maps[k][off + U_PAGE - 1] == 0,
				 "page cache %d offset %zu: 0x%02x before anyone read it", k, off, maps[k][off]);
	atomic_store(&b->planted, 1);
	end = t_deadline_ms(60000);
	while (atomic_load(&b->checked) < 1)
		T_ASSERT(t_now_ns() < end, "the other attachers did not read");
	/* The page cache's own pages hold the bytes now, not only the
	 * other attachers' mappings. */
	for (int k = 0; k < NSEG; k++) {
		uint8_t *img = t_pattern_buf(SEG_LEN, 0, SEED);
		int seg = -1;
		/* Which segment this page cache is: its first planted page says. */
		for (int j = 0; j < NSEG && seg < 0; j++) {
			t_fill_pattern(img, SEG_LEN, (uint64_t)j * SEG_LEN, SEED);
			if (!memcmp(maps[k] + PLANT_OFF, img + PLANT_OFF, 64))
				seg = j;
		}
		T_ASSERT(seg >= 0, "page cache %d: not the image's bytes at the first planted page: 0x%02x", k,
			 maps[k][PLANT_OFF]);
		free(img);
	}
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	return T_PASS;
}

/* The third attacher: read-only, the pattern except the writer's 64 bytes. */
static int plant_reader(struct s_env *s, struct plant_board *b)
{
	struct fl_client *c;
	uint8_t *a = seg_addr(0) + PLANT_OFF + U_PAGE;
	uint64_t end = t_deadline_ms(60000);
	long long bad;

	t_drop_privileges();
	while (atomic_load(&b->written) < 1)
		T_ASSERT(t_now_ns() < end, "the writer did not write");
	c = attached_client(s, 0);
	T_OK(space_attach(c, FL_CLIENT_SPACE_RDONLY, 0));
	for (int x = 0; x < 64; x++)
		T_ASSERT(a[x] == 0xC3, "the writer's byte %d: 0x%02x", x, a[x]);
	bad = t_check_pattern(seg_addr(0), PLANT_OFF + U_PAGE, 0, SEED);
	T_ASSERT(bad < 0, "segment 0: byte %lld is not the image's", bad);
	bad = t_check_pattern(a + 64, SEG_LEN - PLANT_OFF - U_PAGE - 64, PLANT_OFF + U_PAGE + 64, SEED);
	T_ASSERT(bad < 0, "segment 0: byte %lld after the write is not the image's", bad);
	bad = t_check_pattern(seg_addr(1), SEG_LEN, SEG_LEN, SEED);
	T_ASSERT(bad < 0, "segment 1: byte %lld is not the image's", bad);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	return T_PASS;
}

/* Version 2, committed after the planting, read in process: the version's bytes everywhere. */
static int planted_version_child(void *arg)
{
	struct fl_space_info info = { .sz = sizeof(info) };
	struct fl_space *sp;

	T_OK(fl_space_open(arg, NULL, &sp));
	T_OK(fl_space_info(sp, &info));
	T_ASSERT_EQ(info.version, 2);
	T_OK(fl_space_attach(sp, NULL));
	check_pattern();
	T_OK(fl_space_detach(sp));
	fl_space_free(sp);
	return T_PASS;
}

static int test_planted(void *arg)
{
	const struct scase *sc = arg;
	const char *allow[] = { "--allow-uid", "0", "--allow-uid", "65534", NULL };
	struct plant_board *b = shared_page(sizeof(*b));
	struct fl_client *c;
	struct s_env s;
	char dir[600];
	uint64_t end, v = 0;
	pid_t kids[2];
	int st;

	if (geteuid() != 0)
		t_skip_resource("needs root to become another uid");
	s_init(&s, sc->mem);
	snprintf(dir, sizeof(dir), "%s/sp", s.spaces);
	T_ASSERT(chmod(s.e.dir, 0755) == 0);
	s_start(&s, allow);
	T_ASSERT(chown(dir, 0, 0) == 0 && chmod(dir, 0644) == 0);
	/* Both forked before anything is attached here (the segments' addresses). */
	for (int i = 0; i < 2; i++) {
		fflush(NULL);
		kids[i] = fork();
		T_ASSERT(kids[i] >= 0);
		if (kids[i] == 0)
			_exit(i ? plant_reader(&s, b) : planter(&s, b, sc->mem));
	}
	end = t_deadline_ms(30000);
	while (atomic_load(&b->planted) < 1) {
		T_ASSERT(t_now_ns() < end, "the read-only attacher did not map its page cache");
		t_sleep_ms(1);
	}
	/* A read-write attacher commits before anyone read a planted page:
	 * the version holds the segment's bytes there, not the zeros. Then
	 * it reads: the real bytes, never the planted zeros; then it writes
	 * into a planted page, which nothing may undo. */
	c = attached_client(&s, 0);
	T_OK(space_attach(c, 0, 0));
	T_OK(fl_client_space_commit(c, "sp", &v));
	T_ASSERT_EQ(v, 2);
	check_pattern();
	memset(seg_addr(0) + PLANT_OFF + U_PAGE, 0xC3, 64);
	/* A third, read-only, attacher sees the bytes and the write. */
	atomic_store(&b->written, 1);
	wait_kids(&kids[1], 1);
	atomic_store(&b->checked, 1);
	wait_kids(kids, 1);
	T_ASSERT(seg_addr(0)[PLANT_OFF + U_PAGE] == 0xC3);
	T_OK(fl_client_space_detach(c, "sp"));
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	st = t_fork_wait(planted_version_child, dir);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == T_PASS, "reading version 2: status 0x%x", st);
	d_env_free(&s.e);
	return T_PASS;
}

/*
 * planted-after-restart: the daemon is killed and restarted, a writer
 * resumes with the page cache it kept (the new daemon adopts it, with no
 * record of its fills: the pages present count as filled), then a
 * read-only attacher plants zero pages into the holes left. The writer
 * reads the segment's bytes there, and its own uncommitted write.
 */
struct restart_board {
	_Atomic int written, go, resumed, planted, read;
};

static int restart_writer(struct s_env *s, struct restart_board *b)
{
	struct fl_client *c = attached_client(s, 20000);
	uint64_t end = t_deadline_ms(60000);
	long long bad;

	T_OK(space_attach(c, 0, 0));
	memset(seg_addr(0), 0xA0, 32);
	atomic_store(&b->written, 1);
	while (!atomic_load(&b->go))
		T_ASSERT(t_now_ns() < end, "no go");
	/* A page never touched: served once the session is resumed. */
	T_ASSERT(t_check_pattern(seg_addr(1), 64, SEG_LEN, SEED) < 0);
	atomic_store(&b->resumed, 1);
	while (!atomic_load(&b->planted))
		T_ASSERT(t_now_ns() < end, "nothing planted");
	for (int x = 0; x < 32; x++)
		T_ASSERT(seg_addr(0)[x] == 0xA0, "the uncommitted write, byte %d: 0x%02x", x, seg_addr(0)[x]);
	bad = t_check_pattern(seg_addr(0) + 32, SEG_LEN - 32, 32, SEED);
	T_ASSERT(bad < 0, "segment 0: byte %lld is not the image's", bad + 32);
	bad = t_check_pattern(seg_addr(1), SEG_LEN, SEG_LEN, SEED);
	T_ASSERT(bad < 0, "segment 1: byte %lld is not the image's", bad);
	atomic_store(&b->read, 1);
	T_OK(fl_client_space_detach(c, "sp"));
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	return T_PASS;
}

static int test_planted_restart(void *arg)
{
	const struct scase *sc = arg;
	const char *allow[] = { "--allow-uid", "0", "--allow-uid", "65534", NULL };
	struct restart_board *b = shared_page(sizeof(*b));
	struct plant_board *pb = shared_page(sizeof(*pb));
	struct s_env s;
	char dir[600];
	uint64_t end;
	pid_t kids[2];

	if (geteuid() != 0)
		t_skip_resource("needs root to become another uid");
	s_init(&s, sc->mem);
	snprintf(dir, sizeof(dir), "%s/sp", s.spaces);
	T_ASSERT(chmod(s.e.dir, 0755) == 0);
	s_start(&s, allow);
	T_ASSERT(chown(dir, 0, 0) == 0 && chmod(dir, 0644) == 0);
	fflush(NULL);
	kids[0] = fork();
	T_ASSERT(kids[0] >= 0);
	if (kids[0] == 0)
		_exit(restart_writer(&s, b));
	end = t_deadline_ms(30000);
	while (!atomic_load(&b->written)) {
		T_ASSERT(t_now_ns() < end, "the writer did not write");
		t_sleep_ms(1);
	}
	d_stop(&s.e, SIGKILL);
	t_sleep_ms(200);
	s_start(&s, allow);
	atomic_store(&b->go, 1);
	while (!atomic_load(&b->resumed)) {
		T_ASSERT(t_now_ns() < end, "the writer did not resume");
		t_sleep_ms(1);
	}
	fflush(NULL);
	kids[1] = fork();
	T_ASSERT(kids[1] >= 0);
	if (kids[1] == 0)
		_exit(planter(&s, pb, sc->mem));
	end = t_deadline_ms(30000);
	while (!atomic_load(&pb->planted)) {
		T_ASSERT(t_now_ns() < end, "the read-only attacher did not map its page cache");
		t_sleep_ms(1);
	}
	atomic_store(&b->planted, 1);
	wait_kids(kids, 1);
	T_ASSERT(atomic_load(&b->read));
	atomic_store(&pb->checked, 1);
	wait_kids(&kids[1], 1);
	d_env_free(&s.e);
	return T_PASS;
}

static const struct scase sh2 = { FL_MEM_SHMEM, 2 }, sh8 = { FL_MEM_SHMEM, 8 };
static const struct scase hu2 = { FL_MEM_HUGETLB, 2 }, hu8 = { FL_MEM_HUGETLB, 8 };
static const struct scase shm = { FL_MEM_SHMEM, 1 }, huge = { FL_MEM_HUGETLB, 1 };

#define SHM U_NEEDS_SHMEM_MINOR
#define HUGE (U_NEEDS_HUGETLB_MINOR | T_HUGE_PAGES)

static const struct t_case cases[] = {
	{ "shared-2-shmem", test_shared, (void *)&sh2, 120, SHM },
	{ "shared-8-shmem", test_shared, (void *)&sh8, 120, SHM },
	{ "shared-2-hugetlb", test_shared, (void *)&hu2, 120, HUGE },
	{ "shared-8-hugetlb", test_shared, (void *)&hu8, 120, HUGE },
	{ "private-shmem", test_private, (void *)&shm, 60, SHM },
	{ "private-hugetlb", test_private, (void *)&huge, 60, HUGE },
	{ "rdonly-shmem", test_rdonly, (void *)&shm, 60, SHM },
	{ "rdonly-hugetlb", test_rdonly, (void *)&huge, 60, HUGE },
	{ "perms-shmem", test_perms, (void *)&shm, 60, SHM },
	{ "perms-hugetlb", test_perms, (void *)&huge, 60, HUGE },
	{ "planted-shmem", test_planted, (void *)&shm, 60, SHM },
	{ "planted-hugetlb", test_planted, (void *)&huge, 60, HUGE },
	{ "planted-after-restart-shmem", test_planted_restart, (void *)&shm, 120, SHM },
	{ "planted-after-restart-hugetlb", test_planted_restart, (void *)&huge, 120, HUGE },
	{ "perms-images-shmem", test_perms_images, (void *)&shm, 60, SHM },
	{ "perms-images-hugetlb", test_perms_images, (void *)&huge, 60, HUGE },
	{ "bad-shmem", test_bad, (void *)&shm, 60, SHM },
	{ "bad-hugetlb", test_bad, (void *)&huge, 60, HUGE },
	{ "raw-names-shmem", test_raw_names, (void *)&shm, 60, SHM },
	{ "resume-foreign-shmem", test_resume_foreign, (void *)&shm, 60, SHM },
	{ "resume-foreign-hugetlb", test_resume_foreign, (void *)&huge, 60, HUGE },
	{ "commit-shmem", test_commit, (void *)&shm, 60, SHM },
	{ "commit-hugetlb", test_commit, (void *)&huge, 60, HUGE },
	{ "commit-zero-shmem", test_commit_zero, (void *)&shm, 60, SHM },
	{ "commit-zero-hugetlb", test_commit_zero, (void *)&huge, 60, HUGE },
	{ "bounded-shmem", test_bounded, (void *)&shm, 120, SHM },
	{ "kill9-restart-shmem", test_kill_restart, (void *)&shm, 120, SHM },
	{ "kill9-restart-hugetlb", test_kill_restart, (void *)&huge, 120, HUGE },
	{ "kill9-no-restart-shmem", test_kill_no_restart, (void *)&shm, 120, SHM },
	{ "kill9-no-restart-hugetlb", test_kill_no_restart, (void *)&huge, 120, HUGE },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
