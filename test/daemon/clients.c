// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultlined with real clients: shared templates (Pss of 16 clients about
 * one image), images and zero memory, the non-cooperative events under
 * fault load (fork with and without a claim, mremap, MADV_DONTNEED, munmap,
 * exit), the uid policy and the limits (a failed ATTACH is undone whole),
 * hostile and malformed messages
 * (refused without disturbing a client that reads meanwhile), detach, and
 * the statistics.
 */
#include "dutil.h"

#include <fcntl.h>
#include <jansson.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#define IMG_LEN (32u << 20)
#define IMG_PAGES (IMG_LEN / U_PAGE)
#define SEED 0xd1

static uint8_t *expected(void)
{
	return u_image(IMG_LEN, 0, SEED);
}

/* A daemon with one image "a.img", for the cases that need nothing else. */
static void setup(struct d_env *e, const char *const *extra)
{
	d_env_init(e);
	d_image(e, "a.img", IMG_LEN, SEED);
	d_start_argv(e, extra);
}

/* ---- sharing ----------------------------------------------------------------- */

#define NCLIENTS 16

struct share {
	pthread_barrier_t read_done;	/* process-shared */
	_Atomic int bad, ready;
	uint64_t addr[NCLIENTS];
};

static int share_client(struct d_env *e, struct share *sh, int i, const uint8_t *img)
{
	struct fl_client *c = d_client(e, 0, 0);
	uint8_t *p = d_map(c, FL_SOURCE_TEMPLATE, "a.img", 0);

	T_OK(fl_client_attach(c));
	u_read_threads(p, img, U_PAGE, IMG_PAGES, 2, 1);
	sh->addr[i] = (uintptr_t)p;
	atomic_fetch_add(&sh->ready, 1);
	pthread_barrier_wait(&sh->read_done);	/* the parent measures Pss now */
	pthread_barrier_wait(&sh->read_done);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	return T_PASS;
}

static int test_share(void *arg)
{
	struct d_env e;
	struct share *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pthread_barrierattr_t ba;
	uint8_t *img = expected();
	pid_t pids[NCLIENTS];
	long pss = 0;
	char *json;
	json_t *root;

	(void)arg;
	T_ASSERT(sh != MAP_FAILED);
	pthread_barrierattr_init(&ba);
	pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
	pthread_barrier_init(&sh->read_done, &ba, NCLIENTS + 1);
	setup(&e, NULL);
	for (int i = 0; i < NCLIENTS; i++) {
		fflush(NULL);
		pids[i] = fork();
		T_ASSERT(pids[i] >= 0);
		if (pids[i] == 0)
			_exit(share_client(&e, sh, i, img));
	}
	pthread_barrier_wait(&sh->read_done);
	for (int i = 0; i < NCLIENTS; i++)
		pss += t_pss_kib(pids[i], sh->addr[i], IMG_LEN, NULL);
	/* The daemon maps the template too (it fills it through an alias):
	 * its share of the pages counts. */
	pss += t_pss_kib(e.pid, 0, 0, "/memfd:");
	T_OK(fl_manager_stats(e.sock, t_scaled_ms(10000), &json));
	root = json_loads(json, 0, NULL);
	T_ASSERT(root, "stats are not JSON: %.200s", json);
	T_ASSERT_EQ(json_integer_value(json_object_get(json_object_get(root, "daemon"), "clients")), NCLIENTS);
	json_decref(root);
	free(json);
	pthread_barrier_wait(&sh->read_done);
	for (int i = 0; i < NCLIENTS; i++) {
		int st;
		T_ASSERT(waitpid(pids[i], &st, 0) == pids[i]);
		T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d: status 0x%x", i, st);
	}
	t_log("%d clients of a %u MiB template: total Pss %ld KiB with the daemon's (%.2f images)", NCLIENTS,
	      IMG_LEN >> 20, pss, (double)pss / (IMG_LEN >> 10));
	/* One physical copy for all (16 copies would be 16 images). */
	T_ASSERT(pss < (long)(IMG_LEN >> 10) * 5 / 4, "Pss %ld KiB for %d clients of %u KiB", pss, NCLIENTS,
		 IMG_LEN >> 10);
	T_ASSERT(pss > (long)(IMG_LEN >> 10) * 9 / 10, "Pss %ld KiB: the pages are not all there", pss);
	d_env_free(&e);
	return T_PASS;
}

/* ---- images, zero memory, writes --------------------------------------------- */

static int test_image_zero(void *arg)
{
	struct d_env e;
	uint8_t *img = expected(), *a, *z, *t;
	struct fl_client *c;

	(void)arg;
	setup(&e, NULL);
	c = d_client(&e, 0, 0);
	a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	z = d_map(c, FL_SOURCE_ZERO, NULL, 8u << 20);
	T_OK(fl_client_attach(c));
	t = d_map(c, FL_SOURCE_TEMPLATE, "a.img", 0);	/* after attach: registered at once */
	u_read_threads(a, img, U_PAGE, IMG_PAGES, 3, 1);
	u_read_threads(t, img, U_PAGE, IMG_PAGES, 2, 1);
	T_ASSERT(u_all_zero(z, 8u << 20));
	memset(a + 5 * U_PAGE, 0xab, U_PAGE);
	memset(t + 7 * U_PAGE, 0xcd, U_PAGE);
	z[100] = 1;
	T_ASSERT(a[5 * U_PAGE + 17] == 0xab && t[7 * U_PAGE] == 0xcd && z[100] == 1);
	/* A clone's write is its own: a second client still reads the image. */
	{
		struct fl_client *c2 = d_client(&e, 0, 0);
		uint8_t *t2 = d_map(c2, FL_SOURCE_TEMPLATE, "a.img", 0);
		T_OK(fl_client_attach(c2));
		U_CHECK(t2, img, IMG_LEN, U_PAGE);
		T_OK(fl_client_detach(c2));
		fl_client_free(c2);
	}
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&e);
	return T_PASS;
}

/* Requests the daemon must refuse with a clear error, the session going on. */
static int test_bad_requests(void *arg)
{
	struct fl_client_map_opts m = { .sz = sizeof(m), .source = FL_SOURCE_IMAGE };
	struct d_env e;
	struct fl_client *c;
	void *p;

	(void)arg;
	setup(&e, NULL);
	symlink("/etc", e.images);	/* fails: exists; the symlink below escapes */
	{
		char link[400];
		snprintf(link, sizeof(link), "%s/escape", e.images);
		T_ASSERT(symlink("/etc/passwd", link) == 0);
	}
	c = d_client(&e, 0, 0);
	m.image = "missing.img";
	T_ASSERT_EQ(fl_client_map(c, &m, &p), -ENOENT);
	m.image = "../a.img";
	T_ASSERT_EQ(fl_client_map(c, &m, &p), -EACCES);
	m.image = "/etc/passwd";
	T_ASSERT_EQ(fl_client_map(c, &m, &p), -EACCES);
	m.image = "escape";
	T_ASSERT_EQ(fl_client_map(c, &m, &p), -EACCES);
	m.image = "a.img";
	m.region = 3;
	T_ASSERT_EQ(fl_client_map(c, &m, &p), -ERANGE);
	m.region = 0;
	m.offset = IMG_LEN;
	T_ASSERT_EQ(fl_client_map(c, &m, &p), -ERANGE);
	m.offset = 4096;
	m.length = IMG_LEN;
	T_ASSERT_EQ(fl_client_map(c, &m, &p), -ERANGE);
	m.length = 0;
	m.source = FL_SOURCE_ZERO;
	T_ASSERT_EQ(fl_client_map(c, &m, &p), -EINVAL);	/* zero memory needs a length */
	/* After all that, the session still works. */
	m = (struct fl_client_map_opts){ .sz = sizeof(m), .source = FL_SOURCE_IMAGE, .image = "a.img",
					 .offset = 1u << 20, .length = 1u << 20 };
	T_OK(fl_client_map(c, &m, &p));
	T_OK(fl_client_attach(c));
	{
		uint8_t *x = u_image(1u << 20, 1u << 20, SEED);
		U_CHECK(p, x, 1u << 20, U_PAGE);
	}
	T_ASSERT_EQ(fl_client_attach(c), -EALREADY);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&e);
	return T_PASS;
}

/* ---- events under load ---------------------------------------------------------- */

struct bg_readers {
	struct u_reader rd[2];
	pthread_barrier_t bar;
};

static void bg_start(struct bg_readers *b, const uint8_t *base, const uint8_t *img, size_t npages)
{
	pthread_barrier_init(&b->bar, NULL, 2);
	for (int i = 0; i < 2; i++) {
		b->rd[i] = (struct u_reader){ .base = base, .expect = img, .psz = U_PAGE, .npages = npages,
					      .order = U_RANDOM, .rseed = 31u * (unsigned)(i + 1), .bar = &b->bar };
		T_ASSERT(pthread_create(&b->rd[i].tid, NULL, u_reader_main, &b->rd[i]) == 0);
	}
}

static void bg_join(struct bg_readers *b)
{
	for (int i = 0; i < 2; i++) {
		pthread_join(b->rd[i].tid, NULL);
		T_ASSERT(b->rd[i].bad_page < 0, "reader %d: page %ld differs%s", i, b->rd[i].bad_page,
			 b->rd[i].bad_zero ? " (all zeros)" : "");
	}
	pthread_barrier_destroy(&b->bar);
}

/*
 * fork() while two threads fault: the child sees its parent's memory as it
 * was at the fork (the parent's writes before it, none after), lazily, with
 * and without claiming its uffd; a grandchild too.
 */
static int fork_child(struct fl_client *c, uint8_t *a, uint8_t *t, const uint8_t *img, bool claim, int depth)
{
	uint8_t *mine = malloc(IMG_LEN);

	T_ASSERT(mine);
	if (claim)
		T_OK(fl_client_after_fork(c));
	memcpy(mine, img, IMG_LEN);
	memset(mine + 3 * U_PAGE, 0x33, U_PAGE);	/* written by the parent before the fork */
	if (depth > 0)
		memset(mine + 9 * U_PAGE, 0x99, U_PAGE);	/* and by the child before the next */
	U_CHECK(a, mine, IMG_LEN, U_PAGE);
	memcpy(mine, img, IMG_LEN);
	memset(mine + 4 * U_PAGE, 0x44, U_PAGE);
	U_CHECK(t, mine, IMG_LEN, U_PAGE);
	memset(a + 9 * U_PAGE, 0x99, U_PAGE);		/* the child's own, the parent never sees it */
	if (depth == 0) {
		pid_t g;
		int st;
		fflush(NULL);
		g = fork();
		T_ASSERT(g >= 0);
		if (g == 0)
			_exit(fork_child(c, a, t, img, claim, depth + 1));
		T_ASSERT(waitpid(g, &st, 0) == g);
		T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "grandchild: status 0x%x", st);
	}
	if (claim)
		T_OK(fl_client_detach(c));
	return T_PASS;
}

static int test_fork(void *arg)
{
	bool claim = arg != NULL;
	struct bg_readers bg;
	struct d_env e;
	uint8_t *img = expected(), *a, *t;
	struct fl_client *c;
	pid_t kid;
	int st;

	setup(&e, NULL);
	c = d_client(&e, 0, 0);
	a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	t = d_map(c, FL_SOURCE_TEMPLATE, "a.img", 0);
	T_OK(fl_client_attach(c));
	memset(a + 3 * U_PAGE, 0x33, U_PAGE);
	memset(t + 4 * U_PAGE, 0x44, U_PAGE);
	memcpy(img + 3 * U_PAGE, a + 3 * U_PAGE, U_PAGE);
	bg_start(&bg, t + 8 * U_PAGE, img + 8 * U_PAGE, IMG_PAGES - 8);
	{
		/* fork_child expects the pristine image: give it a copy. */
		uint8_t *pristine = expected();
		fflush(NULL);
		kid = fork();
		T_ASSERT(kid >= 0);
		if (kid == 0)
			_exit(fork_child(c, a, t, pristine, claim, 0));
	}
	memset(a + 10 * U_PAGE, 0x10, U_PAGE);	/* after the fork: the child never sees it */
	T_ASSERT(waitpid(kid, &st, 0) == kid);
	T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status 0x%x", st);
	bg_join(&bg);
	memcpy(img + 10 * U_PAGE, a + 10 * U_PAGE, U_PAGE);
	T_ASSERT(a[9 * U_PAGE] != 0x99, "the child's write reached the parent");
	U_CHECK(a, img, IMG_LEN, U_PAGE);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&e);
	return T_PASS;
}

static int test_mremap(void *arg)
{
	struct bg_readers bg;
	struct d_env e;
	uint8_t *img = expected(), *a, *dst, *moved;
	struct fl_client *c;
	size_t half = IMG_LEN / 2;

	(void)arg;
	setup(&e, NULL);
	c = d_client(&e, 0, 0);
	a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	T_OK(fl_client_attach(c));
	bg_start(&bg, a, img, half / U_PAGE);		/* the first half stays */
	memset(a + half + 2 * U_PAGE, 0x5a, U_PAGE);	/* resolved, then written, before the move */
	memcpy(img + half + 2 * U_PAGE, a + half + 2 * U_PAGE, U_PAGE);
	dst = u_free_addr(half, U_PAGE);
	moved = mremap(a + half, half, half, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	T_ASSERT(moved == dst, "mremap: %s", strerror(errno));
	U_CHECK(moved, img + half, half, U_PAGE);	/* faults at the new address */
	bg_join(&bg);
	U_CHECK(a, img, half, U_PAGE);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&e);
	return T_PASS;
}

/* MADV_DONTNEED: discarded anonymous pages read zeros afterwards, whether
 * they had been read or not; a clone's show the template again. */
static int test_dontneed(void *arg)
{
	struct bg_readers bg;
	struct d_env e;
	uint8_t *img = expected(), *a, *t;
	struct fl_client *c;
	size_t q = IMG_LEN / 4;

	(void)arg;
	setup(&e, NULL);
	c = d_client(&e, 0, 0);
	a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	t = d_map(c, FL_SOURCE_TEMPLATE, "a.img", 0);
	T_OK(fl_client_attach(c));
	bg_start(&bg, a, img, q / U_PAGE);		/* the first quarter, meanwhile */
	U_CHECK(a + q, img + q, q / 2, U_PAGE);		/* half of the second quarter resolved */
	memset(t + q, 0x77, U_PAGE);
	T_ASSERT(madvise(a + q, q, MADV_DONTNEED) == 0);
	T_ASSERT(madvise(t + q, q, MADV_DONTNEED) == 0);
	T_ASSERT(u_all_zero(a + q, q), "discarded pages are not zeros");
	U_CHECK(t + q, img + q, q, U_PAGE);
	U_CHECK(a + 2 * q, img + 2 * q, 2 * q, U_PAGE);
	bg_join(&bg);
	T_OK(fl_client_detach(c));
	T_ASSERT(u_all_zero(a + q, q));
	fl_client_free(c);
	d_env_free(&e);
	return T_PASS;
}

static int test_munmap(void *arg)
{
	struct bg_readers bg;
	struct d_env e;
	uint8_t *img = expected(), *a;
	struct fl_client *c;
	size_t half = IMG_LEN / 2;
	char *json;

	(void)arg;
	setup(&e, NULL);
	c = d_client(&e, 0, 0);
	a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	T_OK(fl_client_attach(c));
	bg_start(&bg, a, img, half / U_PAGE);
	U_CHECK(a + half, img + half, U_PAGE * 16, U_PAGE);
	T_ASSERT(munmap(a + half, half) == 0);
	/* Something else may live there now: it is not the daemon's. */
	T_ASSERT(mmap(a + half, half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		 a + half);
	T_ASSERT(u_all_zero(a + half, half));
	bg_join(&bg);
	/* munmap returns once the event is read; it is counted just after. */
	for (uint64_t end = t_deadline_ms(2000);;) {
		T_OK(fl_manager_stats(e.sock, t_scaled_ms(10000), &json));
		if (strstr(json, "\"events_unmap\":1") || t_now_ns() > end)
			break;
		free(json);
		t_sleep_ms(10);
	}
	T_ASSERT(strstr(json, "\"events_unmap\":1"), "%.300s", json);
	free(json);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&e);
	return T_PASS;
}

/* A client killed while its threads fault: torn down quietly; the daemon
 * serves the next one. */
static int test_exit(void *arg)
{
	struct d_env e;
	uint8_t *img = expected();
	int p[2];
	pid_t kid;
	char ch, *json;

	(void)arg;
	setup(&e, NULL);
	for (int round = 0; round < 3; round++) {
		T_ASSERT(pipe(p) == 0);
		fflush(NULL);
		kid = fork();
		T_ASSERT(kid >= 0);
		if (kid == 0) {
			struct fl_client *c = d_client(&e, FL_CLIENT_NO_GUARD, 0);
			uint8_t *a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
			struct bg_readers bg;
			T_OK(fl_client_attach(c));
			bg_start(&bg, a, img, IMG_PAGES);
			u_write_full(p[1], "r", 1);
			bg_join(&bg);
			_exit(0);
		}
		close(p[1]);
		T_ASSERT(u_read_full(p[0], &ch, 1, 20000));
		t_sleep_ms(5 + 20 * (unsigned)round);
		kill(kid, SIGKILL);
		T_ASSERT(waitpid(kid, NULL, 0) == kid);
		close(p[0]);
	}
	{
		struct fl_client *c = d_client(&e, 0, 0);
		uint8_t *a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
		T_OK(fl_client_attach(c));
		U_CHECK(a, img, IMG_LEN, U_PAGE);
		T_OK(fl_client_detach(c));
		fl_client_free(c);
	}
	/* Give the daemon a moment to see the exits, then no client is left. */
	for (uint64_t end = t_deadline_ms(2000); t_now_ns() < end;) {
		T_OK(fl_manager_stats(e.sock, t_scaled_ms(10000), &json));
		if (strstr(json, "\"clients\":0"))
			break;
		free(json);
		json = NULL;
		t_sleep_ms(10);
	}
	T_ASSERT(json, "killed clients still listed");
	free(json);
	T_ASSERT(kill(e.pid, 0) == 0, "faultlined died");
	d_env_free(&e);
	return T_PASS;
}

/* A client that closes its session without detaching (its uffd stays
 * open): what was not delivered is poisoned, never zeros. */
static int test_closed_session(void *arg)
{
	struct d_env e;
	uint8_t *img = expected(), *a;
	struct fl_client *c;
	int ufd;
	long ok = 0, bus = 0;

	(void)arg;
	t_require(FL_FEATURE_BIT(FL_FEATURE_POISON));
	setup(&e, NULL);
	c = d_client(&e, FL_CLIENT_NO_GUARD, 0);
	a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	T_OK(fl_client_attach(c));
	U_CHECK(a, img, IMG_LEN / 4, U_PAGE);
	ufd = dup(fl_client_uffd(c));	/* keeps the uffd alive past fl_client_free() */
	fl_client_free(c);
	t_sleep_ms(t_scaled_ms(300));
	/* The process lives on: the daemon still reads its uffd, so neither
	 * its faults nor its events (this munmap, that mremap) wait forever. */
	T_ASSERT(munmap(a + IMG_LEN - (1u << 20), 1u << 20) == 0);
	T_ASSERT(mremap(a + IMG_LEN - (2u << 20), 1u << 20, 1u << 20, MREMAP_MAYMOVE | MREMAP_FIXED,
			a + IMG_LEN - (1u << 20)) != MAP_FAILED);
	u_bus_install();
	for (size_t pg = 0; pg < IMG_PAGES - 512; pg++) {
		int r = u_probe_cmp(a + pg * U_PAGE, img + pg * U_PAGE, U_PAGE);
		T_ASSERT(r <= 0, "page %zu is wrong%s", pg, u_all_zero(a + pg * U_PAGE, U_PAGE) ? " (zeros)" : "");
		if (r == 0)
			ok++;
		else
			bus++;
	}
	for (size_t pg = IMG_PAGES - 256; pg < IMG_PAGES; pg++) {	/* moved here */
		int r = u_probe_cmp(a + pg * U_PAGE, img + (pg - 256) * U_PAGE, U_PAGE);
		T_ASSERT(r <= 0, "moved page %zu is wrong", pg);
		ok += r == 0;
		bus += r < 0;
	}
	t_log("after the session closed: %ld pages intact, %ld SIGBUS", ok, bus);
	T_ASSERT(ok >= (long)IMG_PAGES / 4 && bus > 0);
	close(ufd);
	d_env_free(&e);
	return T_PASS;
}

/* ---- policy and limits --------------------------------------------------------- */

static int connect_as(const struct d_env *e, uid_t uid)
{
	pid_t kid;
	int st;

	fflush(NULL);
	kid = fork();
	T_ASSERT(kid >= 0);
	if (kid == 0) {
		struct fl_client_opts o = { .sz = sizeof(o), .socket = e->sock };
		struct fl_client *c;
		int r;
		/* The socket's directory is the daemon's, 0700: a foreign
		 * user cannot even reach it; open it up to test the policy. */
		if (setresuid(uid, uid, uid))
			_exit(99);
		r = fl_client_connect(&o, &c);
		if (!r)
			fl_client_free(c);
		_exit(r == 0 ? 0 : r == -EPERM ? 1 : r == -EACCES ? 2 : 3);
	}
	T_ASSERT(waitpid(kid, &st, 0) == kid && WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int test_foreign_uid(void *arg)
{
	const char *allow[] = { "--allow-uid", "0", "--allow-uid", "4242", NULL };
	struct d_env e;
	char dir[400];

	(void)arg;
	if (geteuid() != 0)
		t_skip_resource("needs root to become another uid");
	setup(&e, NULL);
	/* The directory keeps strangers out (0700)... */
	T_ASSERT_EQ(connect_as(&e, 65534), 2);
	/* ... and the policy refuses those who get through. */
	snprintf(dir, sizeof(dir), "%s/run", e.dir);
	T_ASSERT(chmod(dir, 0755) == 0 && chmod(e.sock, 0666) == 0 && chmod(e.dir, 0755) == 0);
	T_ASSERT_EQ(connect_as(&e, 65534), 1);
	T_ASSERT_EQ(connect_as(&e, 0), 0);
	d_stop(&e, SIGTERM);
	/* A directory that exists is the administrator's: the daemon leaves
	 * its mode alone. Removed, it is the daemon's to create again. */
	T_ASSERT(rmdir(dir) == 0, "rmdir %s: %s", dir, strerror(errno));
	/* A policy that admits another uid creates the directory 0711 and
	 * opens the socket itself; SO_PEERCRED decides who stays. */
	d_start_argv(&e, allow);
	{
		struct stat st;
		T_ASSERT(stat(dir, &st) == 0);
		T_ASSERT_EQ(st.st_mode & 07777, 0711);
	}
	T_ASSERT_EQ(connect_as(&e, 4242), 0);
	T_ASSERT_EQ(connect_as(&e, 65534), 1);
	{
		char *json;
		T_OK(fl_manager_stats(e.sock, t_scaled_ms(10000), &json));
		T_ASSERT(strstr(json, "\"refused\":1"), "%.300s", json);
		free(json);
	}
	d_env_free(&e);
	return T_PASS;
}

/*
 * A daemon that dies during the greeting (it accepted, read HELLO, and the
 * connection closed with no answer) is -ECONNRESET: a policy refusal, which
 * is always said, stays -EPERM (foreign-uid). Both used to be -EPERM.
 */
static int test_greeting_cut(void *arg)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct fl_client_opts o;
	struct fl_client *c = NULL;
	struct d_env e;
	int ls, r;
	pid_t kid;

	(void)arg;
	d_env_init(&e);
	snprintf(e.sock, sizeof(e.sock), "%s/cut.sock", e.dir);
	ls = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", e.sock);
	T_ASSERT(ls >= 0 && bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(ls, 4) == 0);
	fflush(NULL);
	kid = fork();
	T_ASSERT(kid >= 0);
	if (kid == 0) {
		/* The "daemon": takes the HELLO, then dies without a word. */
		uint8_t buf[256];
		int s = accept(ls, NULL, NULL);
		if (s < 0 || recv(s, buf, sizeof(buf), 0) <= 0)
			_exit(1);
		_exit(0);
	}
	o = (struct fl_client_opts){ .sz = sizeof(o), .socket = e.sock, .timeout_ms = t_scaled_ms(5000) };
	r = fl_client_connect(&o, &c);
	T_ASSERT_EQ(r, -ECONNRESET);
	T_ASSERT(c == NULL);
	{
		int st;
		T_ASSERT(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	close(ls);
	d_env_free(&e);
	return T_PASS;
}

static int test_limits(void *arg)
{
	const char *lim[] = { "--max-ranges", "3", "--max-memory", "40M", "--max-clients", "2", NULL };
	struct fl_client_map_opts m = { .sz = sizeof(m), .source = FL_SOURCE_ZERO, .length = 4u << 20 };
	struct fl_client_opts o;
	struct d_env e;
	struct fl_client *c, *c2, *c3;
	void *p;

	(void)arg;
	setup(&e, lim);
	c = d_client(&e, 0, 0);
	d_map(c, FL_SOURCE_IMAGE, "a.img", 0);		/* 32 MiB */
	T_OK(fl_client_attach(c));			/* + the beacon page: 2 ranges */
	T_OK(fl_client_map(c, &m, &p));			/* 3 ranges, 36 MiB */
	T_ASSERT_EQ(fl_client_map(c, &m, &p), -EDQUOT);	/* a 4th range */
	c2 = d_client(&e, 0, 0);
	m.length = 48u << 20;
	T_OK(fl_client_map(c2, &m, &p));
	T_ASSERT_EQ(fl_client_attach(c2), -EDQUOT);	/* over 40 MiB */
	o = (struct fl_client_opts){ .sz = sizeof(o), .socket = e.sock };
	T_ASSERT_EQ(fl_client_connect(&o, &c3), -EUSERS);	/* a 3rd client */
	fl_client_free(c2);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&e);
	return T_PASS;
}

/* ---- hostile and malformed messages ----------------------------------------------- */

/* Send raw bytes as one packet (optionally with an fd). */
static void raw_send(int s, const void *buf, size_t len, int fd)
{
	struct iovec iov = { (void *)buf, len };
	size_t sent = 0;
	int r = fl__send_fd(s, &iov, 1, fd, &sent);

	T_ASSERT(r == 0 && sent == len, "sendmsg: %s", strerror(-r));
}

static int hello(int s)
{
	uint8_t p[FL_MGR_HDR_SIZE + 16];
	struct fl__mgr_hello h = { .role = FL_MGR_ROLE_CLIENT };
	int err = 0;

	fl__mgr_hdr_encode(p, FL_MGR_HELLO, 16, 1);
	fl__mgr_hello_encode(p + FL_MGR_HDR_SIZE, &h);
	raw_send(s, p, sizeof(p), -1);
	return d_raw_reply(s, &err, 5000);
}

/* One hostile message: the daemon answers ERROR `want_errno` and closes. */
static void expect_refused(const struct d_env *e, bool say_hello, const void *msg, size_t len, int fd,
			   int want_errno, const char *what)
{
	int s = d_raw_connect(e), err = 0, type;

	if (say_hello)
		T_ASSERT_EQ(hello(s), FL_MGR_WELCOME);
	raw_send(s, msg, len, fd);
	type = d_raw_reply(s, &err, 5000);
	T_ASSERT(type == FL_MGR_ERROR, "%s: reply type %d", what, type);
	T_ASSERT(err == want_errno, "%s: errno %d (%s), want %d", what, err, strerror(err), want_errno);
	T_ASSERT(d_raw_closed(s, 5000), "%s: the session was not closed", what);
	close(s);
}

/* The client's "serving" object in the stats: the engine's own count. */
static long long serving_stat(const struct d_env *e, pid_t pid, const char *key)
{
	json_t *root, *clients, *c;
	long long v = -1;
	size_t i;
	char *json;

	T_OK(fl_manager_stats(e->sock, t_scaled_ms(10000), &json));
	root = json_loads(json, 0, NULL);
	T_ASSERT(root, "stats are not JSON");
	clients = json_object_get(root, "clients");
	json_array_foreach(clients, i, c) {
		if (json_integer_value(json_object_get(c, "pid")) == pid)
			v = json_integer_value(json_object_get(json_object_get(c, "serving"), key));
	}
	json_decref(root);
	free(json);
	return v;
}

/*
 * An ATTACH that fails part-way is undone whole: repeating an ATTACH of one
 * good range and one bad one used to leave the good one served with no
 * accounting, memory for free past --max-memory. And sums that wrap are
 * refused.
 */
static int test_attach_accounting(void *arg)
{
	const char *lim[] = { "--max-memory", "8M", NULL };
	struct uffdio_api api = { .api = UFFD_API };
	struct fl__mgr_range r[2];
	struct fl__mgr_attach at = { .ranges = r };
	uint8_t m[512];
	uint8_t *mem;
	struct d_env e;
	int s, ufd, err = 0, n;
	const size_t chunk = 4u << 20;

	(void)arg;
	setup(&e, lim);
	ufd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	T_ASSERT(ufd >= 0 && ioctl(ufd, UFFDIO_API, &api) == 0, "userfaultfd: %s", strerror(errno));
	mem = mmap(NULL, 8 * chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_ASSERT(mem != MAP_FAILED);
	s = d_raw_connect(&e);
	T_ASSERT_EQ(hello(s), FL_MGR_WELCOME);
	for (int i = 0; i < 5; i++) {
		/* A good zero-fill range, then the same range again: the
		 * second cannot be served (it overlaps the first). */
		r[0] = (struct fl__mgr_range){ .addr = (uintptr_t)mem + (size_t)i * chunk, .len = chunk };
		r[1] = r[0];
		at.nranges = 2;
		n = fl__mgr_attach_encode(m + FL_MGR_HDR_SIZE, sizeof(m) - FL_MGR_HDR_SIZE, &at);
		T_ASSERT(n > 0);
		fl__mgr_hdr_encode(m, FL_MGR_ATTACH, (uint32_t)n, 2 + (uint32_t)i);
		raw_send(s, m, FL_MGR_HDR_SIZE + (size_t)n, i == 0 ? ufd : -1);
		T_ASSERT_EQ(d_raw_reply(s, &err, 5000), FL_MGR_ERROR);
		T_ASSERT(err != 0);
	}
	T_ASSERT_EQ(serving_stat(&e, getpid(), "regions"), 0);
	T_ASSERT_EQ(serving_stat(&e, getpid(), "bytes"), 0);
	/* Lengths that wrap the sum: refused, not counted as small. */
	r[0] = (struct fl__mgr_range){ .addr = (uintptr_t)mem, .len = 1ull << 63 };
	r[1] = (struct fl__mgr_range){ .addr = (uintptr_t)mem + chunk, .len = 1ull << 63 };
	n = fl__mgr_attach_encode(m + FL_MGR_HDR_SIZE, sizeof(m) - FL_MGR_HDR_SIZE, &at);
	fl__mgr_hdr_encode(m, FL_MGR_ATTACH, (uint32_t)n, 10);
	raw_send(s, m, FL_MGR_HDR_SIZE + (size_t)n, -1);
	T_ASSERT_EQ(d_raw_reply(s, &err, 5000), FL_MGR_ERROR);
	T_ASSERT(err == EOVERFLOW || err == EDQUOT, "a wrapping sum got errno %d", err);
	/* The whole budget is still there: two good ranges fill it... */
	r[0] = (struct fl__mgr_range){ .addr = (uintptr_t)mem, .len = chunk };
	r[1] = (struct fl__mgr_range){ .addr = (uintptr_t)mem + chunk, .len = chunk };
	n = fl__mgr_attach_encode(m + FL_MGR_HDR_SIZE, sizeof(m) - FL_MGR_HDR_SIZE, &at);
	fl__mgr_hdr_encode(m, FL_MGR_ATTACH, (uint32_t)n, 11);
	raw_send(s, m, FL_MGR_HDR_SIZE + (size_t)n, -1);
	T_ASSERT_EQ(d_raw_reply(s, &err, 5000), FL_MGR_ATTACHED);
	T_ASSERT_EQ(serving_stat(&e, getpid(), "regions"), 2);
	T_ASSERT_EQ(serving_stat(&e, getpid(), "bytes"), 2 * chunk);
	/* ... and one page more is over it. */
	r[0] = (struct fl__mgr_range){ .addr = (uintptr_t)mem + 2 * chunk, .len = 4096 };
	at.nranges = 1;
	n = fl__mgr_attach_encode(m + FL_MGR_HDR_SIZE, sizeof(m) - FL_MGR_HDR_SIZE, &at);
	fl__mgr_hdr_encode(m, FL_MGR_ATTACH, (uint32_t)n, 12);
	raw_send(s, m, FL_MGR_HDR_SIZE + (size_t)n, -1);
	T_ASSERT_EQ(d_raw_reply(s, &err, 5000), FL_MGR_ERROR);
	T_ASSERT_EQ(err, EDQUOT);
	close(s);
	close(ufd);
	munmap(mem, 8 * chunk);
	d_env_free(&e);
	return T_PASS;
}

static int test_malformed(void *arg)
{
	static uint8_t big[FL_MGR_HDR_SIZE + FL_MGR_MAX_PAYLOAD + 4096];
	struct bg_readers bg;
	struct d_env e;
	uint8_t *img = expected(), *a, m[256];
	struct fl_client *c;
	int pfd[2];

	(void)arg;
	setup(&e, NULL);
	/* A well-behaved client reads all along. */
	c = d_client(&e, 0, 0);
	a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	T_OK(fl_client_attach(c));
	bg_start(&bg, a, img, IMG_PAGES);

	memset(m, 0x41, sizeof(m));
	expect_refused(&e, false, m, 16, -1, EBADMSG, "bad magic");
	fl__mgr_hdr_encode(m, FL_MGR_HELLO, 16, 1);
	m[4] = 2;	/* version 2 */
	expect_refused(&e, false, m, 32, -1, EBADMSG, "another version");
	fl__mgr_hdr_encode(m, FL_MGR_HELLO, 100, 1);
	expect_refused(&e, false, m, 32, -1, EBADMSG, "truncated");
	fl__mgr_hdr_encode(m, FL_MGR_HELLO, 16, 1);
	expect_refused(&e, false, m, 10, -1, EBADMSG, "short header");
	fl__mgr_hdr_encode(big, FL_MGR_OPEN, FL_MGR_MAX_PAYLOAD + 4096, 1);
	expect_refused(&e, true, big, sizeof(big), -1, EMSGSIZE, "oversized");
	fl__mgr_hdr_encode(m, 999, 0, 1);
	expect_refused(&e, true, m, 16, -1, EBADMSG, "unknown type");
	fl__mgr_hdr_encode(m, FL_MGR_STATS, 0, 1);
	expect_refused(&e, false, m, 16, -1, EBADMSG, "no HELLO first");
	fl__mgr_hdr_encode(m, FL_MGR_WELCOME, 0, 1);
	expect_refused(&e, true, m, 16, -1, EBADMSG, "a daemon's message");
	{
		struct fl__mgr_range r = { .addr = 0x10000000, .len = 4096 };
		struct fl__mgr_attach at = { .nranges = 1, .ranges = &r };
		int n = fl__mgr_attach_encode(m + FL_MGR_HDR_SIZE, sizeof(m) - FL_MGR_HDR_SIZE, &at);
		fl__mgr_hdr_encode(m, FL_MGR_ATTACH, (uint32_t)n, 2);
		expect_refused(&e, true, m, FL_MGR_HDR_SIZE + (size_t)n, -1, EBADMSG, "ATTACH without a uffd");
		m[FL_MGR_HDR_SIZE + 8] = 0xff;	/* nranges far past the packet */
		expect_refused(&e, true, m, FL_MGR_HDR_SIZE + (size_t)n, -1, EBADMSG, "ATTACH count");
	}
	{
		/* OPEN with a name that climbs out: refused as a request (the
		 * decoder rejects it: protocol error). */
		uint8_t o[64];
		fl__mgr_hdr_encode(o, FL_MGR_OPEN, 12 + 9, 3);
		memset(o + FL_MGR_HDR_SIZE, 0, 12);
		o[FL_MGR_HDR_SIZE] = FL_MGR_SRC_IMAGE;
		o[FL_MGR_HDR_SIZE + 8] = 9;
		memcpy(o + FL_MGR_HDR_SIZE + 12, "../x.img", 9);
		o[FL_MGR_HDR_SIZE + 8] = 8;
		fl__mgr_hdr_encode(o, FL_MGR_OPEN, 12 + 8, 3);
		expect_refused(&e, true, o, FL_MGR_HDR_SIZE + 20, -1, EBADMSG, "OPEN ../");
	}
	{
		/* ATTACH with an fd that is not a userfaultfd: a request error,
		 * the session lives on. */
		struct fl__mgr_range r = { .addr = 0x10000000, .len = 4096 };
		struct fl__mgr_attach at = { .nranges = 1, .ranges = &r };
		int s = d_raw_connect(&e), err = 0;
		int n = fl__mgr_attach_encode(m + FL_MGR_HDR_SIZE, sizeof(m) - FL_MGR_HDR_SIZE, &at);
		T_ASSERT(pipe(pfd) == 0);
		T_ASSERT_EQ(hello(s), FL_MGR_WELCOME);
		fl__mgr_hdr_encode(m, FL_MGR_ATTACH, (uint32_t)n, 2);
		raw_send(s, m, FL_MGR_HDR_SIZE + (size_t)n, pfd[0]);
		T_ASSERT_EQ(d_raw_reply(s, &err, 5000), FL_MGR_ERROR);
		T_ASSERT_EQ(err, EBADF);
		fl__mgr_hdr_encode(m, FL_MGR_STATS, 0, 3);
		raw_send(s, m, FL_MGR_HDR_SIZE, -1);
		T_ASSERT_EQ(d_raw_reply(s, &err, 5000), FL_MGR_STATS_JSON);
		close(s);
		close(pfd[0]);
		close(pfd[1]);
	}
	/* Many connections that say nothing, or hang up mid-way. */
	for (int i = 0; i < 50; i++) {
		int s = d_raw_connect(&e);
		if (i % 2)
			raw_send(s, m, 7, -1);
		close(s);
	}
	bg_join(&bg);
	U_CHECK(a, img, IMG_LEN, U_PAGE);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	{
		char *json;
		T_OK(fl_manager_stats(e.sock, t_scaled_ms(10000), &json));
		t_log("%.200s", json);
		T_ASSERT(!strstr(json, "\"bad_messages\":0,"), "bad messages not counted");
		free(json);
	}
	T_ASSERT(kill(e.pid, 0) == 0, "faultlined died");
	d_env_free(&e);
	return T_PASS;
}

/* After detach the memory is the client's: complete, and it outlives the daemon. */
static int test_detach(void *arg)
{
	struct d_env e;
	uint8_t *img = expected(), *a, *t;
	struct fl_client *c;

	(void)arg;
	setup(&e, NULL);
	c = d_client(&e, 0, 0);
	a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	t = d_map(c, FL_SOURCE_TEMPLATE, "a.img", 0);
	T_OK(fl_client_attach(c));
	U_CHECK(a, img, U_PAGE * 10, U_PAGE);
	T_OK(fl_client_detach(c));
	T_ASSERT_EQ(fl_client_uffd(c), -1);
	d_stop(&e, SIGKILL);
	U_CHECK(a, img, IMG_LEN, U_PAGE);
	U_CHECK(t, img, IMG_LEN, U_PAGE);
	fl_client_free(c);
	d_env_free(&e);
	return T_PASS;
}

/*
 * fl_client_map()'s options follow faultline(7) like every other opts
 * struct (the rest are checked in test/api/opts.c, which has no daemon):
 * sz 0 -EINVAL, a larger struct with a zero tail maps, a non-zero tail
 * byte is -E2BIG, NULL is -EINVAL; a refused call maps nothing.
 */
static int test_map_opts(void *arg)
{
	static union {
		max_align_t align;
		unsigned char b[sizeof(struct fl_client_map_opts) + 24];
	} big;
	struct fl_client_map_opts m = { .sz = sizeof(m), .source = FL_SOURCE_ZERO, .length = 1u << 20 };
	const size_t size = sizeof(m);
	uint8_t *img = expected();
	struct d_env e;
	struct fl_client *c;
	void *p = NULL;

	(void)arg;
	setup(&e, NULL);
	c = d_client(&e, 0, 0);
	T_ASSERT_EQ(fl_client_map(c, NULL, &p), -EINVAL);
	memcpy(big.b, &m, size);
	((struct fl_client_map_opts *)big.b)->sz = 0;
	T_ASSERT_EQ(fl_client_map(c, (void *)big.b, &p), -EINVAL);
	((struct fl_client_map_opts *)big.b)->sz = sizeof(big.b);
	big.b[sizeof(big.b) - 1] = 1;
	T_ASSERT_EQ(fl_client_map(c, (void *)big.b, &p), -E2BIG);
	big.b[sizeof(big.b) - 1] = 0;
	big.b[size] = 1;
	T_ASSERT_EQ(fl_client_map(c, (void *)big.b, &p), -E2BIG);
	T_ASSERT(p == NULL, "ret_addr written on failure");
	big.b[size] = 0;
	T_OK(fl_client_map(c, (void *)big.b, &p));
	T_ASSERT(p != NULL && u_all_zero(p, 1u << 20));
	/* An image mapping through a larger struct reads the image. */
	m = (struct fl_client_map_opts){ .sz = sizeof(m), .source = FL_SOURCE_IMAGE, .image = "a.img" };
	memcpy(big.b, &m, size);
	((struct fl_client_map_opts *)big.b)->sz = sizeof(big.b);
	T_OK(fl_client_map(c, (void *)big.b, &p));
	T_OK(fl_client_attach(c));
	U_CHECK((uint8_t *)p, img, IMG_LEN, U_PAGE);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	d_env_free(&e);
	return T_PASS;
}

static int test_stats(void *arg)
{
	struct d_env e;
	uint8_t *img = expected(), *a;
	struct fl_client *c;
	json_t *root, *cl, *srv;
	char *json;

	(void)arg;
	setup(&e, NULL);
	c = d_client(&e, 0, 0);
	a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	T_OK(fl_client_attach(c));
	U_CHECK(a, img, IMG_LEN, U_PAGE);
	/* A handler counts a page just after the ioctl that woke the reader:
	 * the last few may lag by a moment. */
	for (uint64_t end = t_deadline_ms(2000);;) {
		T_OK(fl_manager_stats(e.sock, t_scaled_ms(10000), &json));
		root = json_loads(json, 0, NULL);
		T_ASSERT(root, "%.200s", json);
		cl = json_array_get(json_object_get(root, "clients"), 0);
		T_ASSERT(cl);
		srv = json_object_get(cl, "serving");
		if (json_integer_value(json_object_get(srv, "pages_resolved")) == IMG_PAGES || t_now_ns() > end)
			break;
		json_decref(root);
		free(json);
		t_sleep_ms(10);
	}
	T_ASSERT_EQ(json_integer_value(json_object_get(cl, "pid")), getpid());
	T_ASSERT(json_integer_value(json_object_get(srv, "faults")) > 0);
	T_ASSERT_EQ(json_integer_value(json_object_get(srv, "pages_resolved")), IMG_PAGES);
	T_ASSERT(json_real_value(json_object_get(srv, "lat_p50_us")) > 0);
	T_ASSERT(json_array_size(json_object_get(srv, "latency_hist_ns")) > 0);
	json_decref(root);
	free(json);
	T_ASSERT_EQ(fl_manager_stats("/nonexistent/sock", 0, &json), -ENOENT);
	T_OK(fl_client_detach(c));
	fl_client_free(c);
	/* The client is gone: the daemon-wide figures still describe the
	 * faults it had served, and agree with each other. */
	for (uint64_t end = t_deadline_ms(2000);;) {
		json_t *d, *h, *pair;
		long long faults, timed, sum = 0;
		size_t k;

		T_OK(fl_manager_stats(e.sock, t_scaled_ms(10000), &json));
		root = json_loads(json, 0, NULL);
		T_ASSERT(root, "%.200s", json);
		d = json_object_get(root, "daemon");
		if (json_array_size(json_object_get(root, "clients")) && t_now_ns() < end) {
			json_decref(root);
			free(json);
			t_sleep_ms(10);
			continue;
		}
		T_ASSERT_EQ(json_array_size(json_object_get(root, "clients")), 0);
		faults = json_integer_value(json_object_get(d, "faults"));
		timed = json_integer_value(json_object_get(d, "faults_timed"));
		h = json_object_get(d, "latency_hist_ns");
		json_array_foreach(h, k, pair)
			sum += json_integer_value(json_array_get(pair, 1));
		t_log("after detach: faults %lld, timed %lld, histogram %lld", faults, timed, sum);
		T_ASSERT(faults > 0);
		T_ASSERT(timed > 0 && timed <= faults, "faults_timed %lld of %lld faults", timed, faults);
		T_ASSERT_EQ(sum, timed);
		T_ASSERT(json_real_value(json_object_get(d, "lat_p50_us")) > 0);
		json_decref(root);
		free(json);
		break;
	}
	d_env_free(&e);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "share-16-templates", test_share, NULL, 240 },
	{ "image-zero-template", test_image_zero, NULL, 120 },
	{ "bad-requests", test_bad_requests, NULL, 60 },
	{ "fork-claimed", test_fork, (void *)1, 120 },
	{ "fork-unclaimed", test_fork, NULL, 120 },
	{ "mremap", test_mremap, NULL, 120 },
	{ "madv-dontneed", test_dontneed, NULL, 120 },
	{ "munmap", test_munmap, NULL, 120 },
	{ "exit-while-faulting", test_exit, NULL, 120 },
	{ "closed-session-poisons", test_closed_session, NULL, 60, T_POISON },
	{ "foreign-uid", test_foreign_uid, NULL, 60 },
	{ "greeting-cut", test_greeting_cut, NULL, 30 },
	{ "limits", test_limits, NULL, 60 },
	{ "attach-accounting", test_attach_accounting, NULL, 60 },
	{ "malformed", test_malformed, NULL, 120 },
	{ "detach", test_detach, NULL, 60 },
	{ "stats", test_stats, NULL, 60 },
	{ "map-opts", test_map_opts, NULL, 60 },
};

int main(int argc, char **argv)
{
	u_inner_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
