// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultlined dies: kill -9 at random points while clients fault, over many
 * trials. With a restart (by hand or by --supervise) every client resumes
 * its session and completes with every byte right; without one, each
 * client's guard fails it closed when its grace period ends (SIGBUS on
 * what was not delivered). Never a zero page, never a wrong byte.
 */
#include "dutil.h"

#include <setjmp.h>
#include <sys/prctl.h>
#include <sys/mman.h>

#define LEN (16u << 20)
#define NPAGES (LEN / U_PAGE)
#define SEED 0x7e
#define NCLIENTS 3

/* Per client, in shared memory: what its readers saw. */
struct verdicts {
	struct u_verdicts v[NCLIENTS];
	_Atomic int ready;
	_Atomic int poison;	/* the clients' uffds have POISON */
};

static struct verdicts *shared(void)
{
	struct verdicts *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	T_ASSERT(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	return sh;
}

/*
 * A client: a template mapping and an image mapping, two probe readers on
 * each (each reader a quarter... of the pages: each page read once), then
 * a clean detach. `fork_too`: it also forks a child that claims its uffd
 * and reads a copy the same way.
 */
static int client_main(struct d_env *e, struct verdicts *sh, int i, unsigned grace_ms, bool fork_too)
{
	struct fl_client *c = d_client(e, 0, grace_ms);
	uint8_t *img = u_image(LEN, 0, SEED);
	uint8_t *t = d_map(c, FL_SOURCE_TEMPLATE, "a.img", 0);
	uint8_t *a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	struct u_probe_reader rd[4];
	pid_t kid = -1;

	T_OK(fl_client_attach(c));
	u_bus_install();
	if (fork_too) {
		fflush(NULL);
		kid = fork();
		T_ASSERT(kid >= 0);
		if (kid == 0) {
			T_OK(fl_client_after_fork(c));
			i = NCLIENTS - 1;	/* the child counts in the last slot */
		}
	}
	if (kid != 0)
		atomic_fetch_add(&sh->ready, 1);
	for (int k = 0; k < 4; k++) {
		rd[k] = (struct u_probe_reader){ .base = k < 2 ? t : a, .img = img,
						 .first = (size_t)(k % 2) * NPAGES / 2, .count = NPAGES / 2,
						 .v = &sh->v[i] };
		T_ASSERT(pthread_create(&rd[k].tid, NULL, u_probe_reader_main, &rd[k]) == 0);
	}
	for (int k = 0; k < 4; k++)
		pthread_join(rd[k].tid, NULL);
	if (kid > 0) {
		int st;
		T_ASSERT(waitpid(kid, &st, 0) == kid);
		T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "forked child: status 0x%x", st);
	}
	/* Detach needs a daemon; a client that failed closed has none. */
	if (fl_client_guard_state(c) != FL_GUARD_FAILED)
		fl_client_detach(c);
	fl_client_free(c);
	return T_PASS;
}

static void start_clients(struct d_env *e, struct verdicts *sh, pid_t *pids, int n, unsigned grace_ms,
			  bool fork_too)
{
	uint64_t end = t_deadline_ms(20000);

	atomic_store(&sh->poison, t_has(FL_FEATURE_BIT(FL_FEATURE_POISON)));
	for (int i = 0; i < n; i++) {
		fflush(NULL);
		pids[i] = fork();
		T_ASSERT(pids[i] >= 0);
		if (pids[i] == 0)
			_exit(client_main(e, sh, i, grace_ms, fork_too));
	}
	while (atomic_load(&sh->ready) < n) {
		T_ASSERT(t_now_ns() < end, "clients not attached in 20 s");
		t_sleep_ms(1);
	}
}

/* Wait for the clients; returns how many died by SIGBUS (failed closed
 * without POISON). Any other death fails the case. */
static int wait_clients(const pid_t *pids, int n)
{
	int bus = 0;

	for (int i = 0; i < n; i++) {
		int st;
		T_ASSERT(waitpid(pids[i], &st, 0) == pids[i]);
		if (WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS) {
			bus++;
			continue;
		}
		T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d: status 0x%x", i, st);
	}
	return bus;
}

static long total(const struct verdicts *sh, int field)
{
	long s = 0;

	for (int i = 0; i < NCLIENTS; i++) {
		const struct u_verdicts *v = &sh->v[i];
		s += field == 0 ? atomic_load(&v->ok) : field == 1 ? atomic_load(&v->sigbus) :
		     field == 2 ? atomic_load(&v->bad) : atomic_load(&v->zero);
	}
	return s;
}

/* kill -9 at a random moment, restart after a random pause: many trials. */
static int test_kill_restart(void *arg)
{
	unsigned trials = (unsigned)(uintptr_t)arg, seed = (unsigned)getpid();
	struct d_env e;

	d_env_init(&e);
	d_image(&e, "a.img", LEN, SEED);
	for (unsigned trial = 0; trial < trials; trial++) {
		struct verdicts *sh = shared();
		pid_t pids[NCLIENTS];
		unsigned before = (unsigned)rand_r(&seed) % 120, pause = (unsigned)rand_r(&seed) % 400;
		long want = NCLIENTS * 2L * NPAGES;

		d_start(&e);
		start_clients(&e, sh, pids, NCLIENTS, 20000, false);
		t_sleep_ms(before);
		T_ASSERT(d_stop(&e, SIGKILL) != 0 || 1);
		t_sleep_ms(pause);
		d_start(&e);
		T_ASSERT_EQ(wait_clients(pids, NCLIENTS), 0);
		t_log("trial %u: killed after %u ms, restarted after %u ms: ok %ld, SIGBUS %ld, wrong %ld (zero %ld)",
		      trial, before, pause, total(sh, 0), total(sh, 1), total(sh, 2), total(sh, 3));
		T_ASSERT_EQ(total(sh, 3), 0);
		T_ASSERT_EQ(total(sh, 2), 0);
		T_ASSERT_EQ(total(sh, 1), 0);
		T_ASSERT_EQ(total(sh, 0), want);
		d_stop(&e, SIGTERM);
		munmap(sh, sizeof(*sh));
	}
	d_env_free(&e);
	return T_PASS;
}

/* No daemon comes back: every client fails closed when its grace ends. */
static int test_kill_no_restart(void *arg)
{
	unsigned seed = (unsigned)getpid();
	struct d_env e;

	/* One page per fault: the clients are still reading when it dies. */
	const char *slow[] = { "--max-inflight", "1", NULL };

	(void)arg;
	d_env_init(&e);
	d_image(&e, "a.img", LEN, SEED);
	for (unsigned trial = 0; trial < 3; trial++) {
		struct verdicts *sh = shared();
		pid_t pids[NCLIENTS];
		unsigned before = (unsigned)rand_r(&seed) % 40;
		int bus;

		d_start_argv(&e, slow);
		start_clients(&e, sh, pids, NCLIENTS, 300, false);
		t_sleep_ms(before);
		d_stop(&e, SIGKILL);
		bus = wait_clients(pids, NCLIENTS);
		t_log("trial %u: killed after %u ms, no restart: ok %ld, SIGBUS %ld, wrong %ld (zero %ld), %d clients "
		      "stopped by SIGBUS", trial, before, total(sh, 0), total(sh, 1), total(sh, 2), total(sh, 3), bus);
		T_ASSERT_EQ(total(sh, 3), 0);
		T_ASSERT_EQ(total(sh, 2), 0);
		if (atomic_load(&sh->poison)) {
			/* Poisoned: each page either arrived or raised SIGBUS. */
			T_ASSERT_EQ(bus, 0);
			T_ASSERT_EQ(total(sh, 0) + total(sh, 1), NCLIENTS * 2L * NPAGES);
			T_ASSERT(total(sh, 1) > 0, "the kill came after every page was served");
		} else {
			/* Without POISON the process itself is stopped by SIGBUS. */
			T_ASSERT(bus > 0);
		}
		munmap(sh, sizeof(*sh));
	}
	d_env_free(&e);
	return T_PASS;
}

/* The pid of the supervisor's child (the daemon), waiting for a new one. */
static pid_t daemon_child(pid_t sup, pid_t not_this)
{
	uint64_t end = t_deadline_ms(10000);
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)sup, (int)sup);
	for (;;) {
		FILE *f = fopen(path, "re");
		int pid = 0;
		T_ASSERT(f, "%s: %s", path, strerror(errno));
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
		if (pid > 0 && pid != not_this)
			return pid;
		T_ASSERT(t_now_ns() < end, "the supervisor started no daemon");
		t_sleep_ms(5);
	}
}

static int test_supervise(void *arg)
{
	const char *sup[] = { "--supervise", NULL };
	struct verdicts *sh = shared();
	pid_t pids[NCLIENTS], d1, d2;
	struct d_env e;
	char *json;

	(void)arg;
	d_env_init(&e);
	d_image(&e, "a.img", LEN, SEED);
	d_start_argv(&e, sup);
	d1 = daemon_child(e.pid, 0);
	start_clients(&e, sh, pids, NCLIENTS, 20000, false);
	t_sleep_ms(30);
	kill(d1, SIGKILL);
	d2 = daemon_child(e.pid, d1);
	t_sleep_ms(40);
	kill(d2, SIGKILL);
	daemon_child(e.pid, d2);
	T_ASSERT_EQ(wait_clients(pids, NCLIENTS), 0);
	t_log("two daemons killed under the supervisor: ok %ld, SIGBUS %ld, wrong %ld", total(sh, 0), total(sh, 1),
	      total(sh, 2));
	T_ASSERT_EQ(total(sh, 2), 0);
	T_ASSERT_EQ(total(sh, 1), 0);
	T_ASSERT_EQ(total(sh, 0), NCLIENTS * 2L * NPAGES);
	T_OK(fl_manager_stats(e.sock, t_scaled_ms(10000), &json));
	free(json);
	T_ASSERT(kill(e.pid, 0) == 0, "the supervisor died");
	d_env_free(&e);
	return T_PASS;
}

/*
 * A forked child that claimed its uffd survives the daemon's death too.
 * The kill comes from outside after a fixed pause, not at a crash point:
 * fork-crash-* (below) stop the daemon at each named stage of the
 * hand-off; this case kills it wherever it happens to be with both
 * sessions live, usually serving the parent's and the child's faults from
 * eight reader threads, sometimes in the child's greeting, and asks that
 * both resume with the restarted daemon.
 */
static int test_fork_kill(void *arg)
{
	struct verdicts *sh = shared();
	pid_t pids[1];
	struct d_env e;

	(void)arg;
	d_env_init(&e);
	d_image(&e, "a.img", LEN, SEED);
	d_start(&e);
	start_clients(&e, sh, pids, 1, 20000, true);
	t_sleep_ms(20);
	d_stop(&e, SIGKILL);
	t_sleep_ms(t_scaled_ms(100));
	d_start(&e);
	T_ASSERT_EQ(wait_clients(pids, 1), 0);
	t_log("parent and child: ok %ld/%ld, SIGBUS %ld, wrong %ld", atomic_load(&sh->v[0].ok),
	      atomic_load(&sh->v[NCLIENTS - 1].ok), total(sh, 1), total(sh, 2));
	T_ASSERT_EQ(total(sh, 2), 0);
	T_ASSERT_EQ(total(sh, 1), 0);
	T_ASSERT_EQ(atomic_load(&sh->v[0].ok), 2L * NPAGES);
	T_ASSERT_EQ(atomic_load(&sh->v[NCLIENTS - 1].ok), 2L * NPAGES);
	d_env_free(&e);
	return T_PASS;
}

/*
 * The hand-off of a forked child's uffd, with the daemon killed at each of
 * its stages (FAULTLINED_CRASH_AT): before the claim token is written
 * (fork-event), with the fork unclaimed (fork-listed), in the middle of the
 * claim (claim), and just after the child's uffd was sent (claimed). With
 * a restart, fl_client_after_fork() returns 0 and every page of the child
 * (and of the parent) is right; without one, the child either fails with
 * its lazy memory inaccessible (SIGSEGV) or, having its uffd, is failed
 * closed by its guard (SIGBUS). Never a zero page, never a wrong byte.
 */
#define FK_LEN (2u << 20)
#define FK_NPAGES (FK_LEN / U_PAGE)

struct fork_crash {
	const char *point;
	bool restart;
	int after_fork;		/* what fl_client_after_fork(3) documents for this point */
};

struct fork_verdicts {
	_Atomic int after_fork;		/* fl_client_after_fork()'s result */
	_Atomic pid_t kid;		/* the forked child */
	_Atomic int kid_status;		/* its wait status, when the client reaped it */
	_Atomic bool kid_reaped;
	_Atomic long ok, zero, bad, segv, bus;	/* the child's pages */
	_Atomic long parent_ok;
};

static sigjmp_buf fk_jb;
static volatile sig_atomic_t fk_sig;

static void fk_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (si->si_code == SI_USER) {
		/* The guard's kill(SIGBUS) without POISON: the process is
		 * stopped, as it would be without this handler. */
		signal(sig, SIG_DFL);
		raise(sig);
	}
	fk_sig = sig;
	siglongjmp(fk_jb, 1);
}

/* 0: the page equals want; 1: it differs; -SIGSEGV / -SIGBUS: the access faulted. */
static int fk_probe(const uint8_t *p, const uint8_t *want)
{
	if (sigsetjmp(fk_jb, 1))
		return -fk_sig;
	return memcmp(p, want, U_PAGE) != 0;
}

static void fk_read(struct fork_verdicts *sh, const uint8_t *base, const uint8_t *img)
{
	struct sigaction sa = { .sa_sigaction = fk_handler, .sa_flags = SA_SIGINFO | SA_NODEFER };

	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	for (size_t p = 0; p < FK_NPAGES; p++) {
		int r = fk_probe(base + p * U_PAGE, img + p * U_PAGE);

		if (r == 0)
			atomic_fetch_add(&sh->ok, 1);
		else if (r == -SIGSEGV)
			atomic_fetch_add(&sh->segv, 1);
		else if (r == -SIGBUS)
			atomic_fetch_add(&sh->bus, 1);
		else if (u_all_zero(base + p * U_PAGE, U_PAGE))
			atomic_fetch_add(&sh->zero, 1);
		else
			atomic_fetch_add(&sh->bad, 1);
	}
}

static int fk_client(struct d_env *e, struct fork_verdicts *sh, const struct fork_crash *fc)
{
	struct fl_client *c = d_client(e, 0, fc->restart ? 20000 : 500);
	uint8_t *img = u_image(FK_LEN, 0, SEED);
	uint8_t *a = d_map(c, FL_SOURCE_IMAGE, "a.img", 0);
	uint8_t *t = d_map(c, FL_SOURCE_TEMPLATE, "a.img", 0);
	pid_t kid;

	T_OK(fl_client_attach(c));
	/* A quarter of the image's pages are the parent's before the fork:
	 * the child's copies of those are there already. */
	T_ASSERT(memcmp(a, img, FK_LEN / 4) == 0);
	fflush(NULL);
	kid = fork();
	T_ASSERT(kid >= 0);
	if (kid == 0) {
		int r = fl_client_after_fork(c);

		atomic_store(&sh->after_fork, r);
		fk_read(sh, a, img);
		fk_read(sh, t, img);
		if (r == 0 && fc->restart)
			T_OK(fl_client_detach(c));
		fl_client_free(c);
		_exit(0);
	}
	atomic_store(&sh->kid, kid);
	{
		/* Record the child's status before reaping it: the guard may
		 * stop this process (SIGBUS) at any instant, and a child reaped
		 * but not recorded would be lost to the test (waitpid: ECHILD). */
		siginfo_t si = { 0 };
		int kst;

		T_ASSERT(waitid(P_PID, (id_t)kid, &si, WEXITED | WNOWAIT) == 0);
		kst = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0) :
						 W_EXITCODE(0, si.si_status) | (si.si_code == CLD_DUMPED ? WCOREFLAG : 0);
		atomic_store(&sh->kid_status, kst);
		atomic_store(&sh->kid_reaped, true);
		waitpid(kid, NULL, 0);
	}
	if (fc->restart) {
		/* The parent's session resumed with the new daemon. */
		for (size_t p = 0; p < FK_NPAGES; p++)
			if (!memcmp(a + p * U_PAGE, img + p * U_PAGE, U_PAGE) &&
			    !memcmp(t + p * U_PAGE, img + p * U_PAGE, U_PAGE))
				atomic_fetch_add(&sh->parent_ok, 1);
		T_OK(fl_client_detach(c));
	}
	fl_client_free(c);
	return T_PASS;
}

/* Each thread of `pid`: its state and kernel stack, into the test log. */
static void fk_dump(const char *who, pid_t pid)
{
	char cmd[1024];

	if (pid <= 0)
		return;
	snprintf(cmd, sizeof(cmd),
		 "for t in /proc/%d/task/*; do echo \"# %s %d thread ${t##*/}: $(grep State: $t/status)\"; "
		 "sed 's/^/#   /' $t/stack 2>/dev/null; done; "
		 "command -v gdb >/dev/null && gdb -p %d -batch -ex 'thread apply all bt' 2>/dev/null | "
		 "grep -E '^(#|Thread)' | sed 's/^/#   /'", (int)pid, who, (int)pid, (int)pid);
	fflush(NULL);
	if (system(cmd) != 0)
		t_log("%s %d: no longer there", who, (int)pid);
}

static int test_fork_crash(void *arg)
{
	const struct fork_crash *fc = arg;
	struct fork_verdicts *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct d_env e;
	pid_t client;
	int st, kst, r;

	T_ASSERT(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	/* A client stopped by its guard (no restart, no POISON) leaves the
	 * child to us. */
	T_ASSERT(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
	d_env_init(&e);
	d_image(&e, "a.img", FK_LEN, SEED);
	setenv("FAULTLINED_CRASH_AT", fc->point, 1);
	d_start(&e);
	unsetenv("FAULTLINED_CRASH_AT");
	fflush(NULL);
	client = fork();
	T_ASSERT(client >= 0);
	if (client == 0)
		_exit(fk_client(&e, sh, fc));
	/* The daemon kills itself at the point, once. */
	T_ASSERT(t_wait_pid(e.pid, 20000, &st) == 0, "faultlined did not reach crash point %s", fc->point);
	T_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "faultlined: status 0x%x", st);
	e.pid = 0;
	if (fc->restart)
		d_start(&e);
	if (t_wait_pid(client, 30000, &st)) {
		/* Say where they wait: the kernel stacks of every thread. */
		fk_dump("client", client);
		fk_dump("forked child", atomic_load(&sh->kid));
		T_ASSERT(0, "the client did not finish (child reaped: %d, after_fork %d, child ok %ld)",
			 (int)atomic_load(&sh->kid_reaped), (int)atomic_load(&sh->after_fork), atomic_load(&sh->ok));
	}
	if (atomic_load(&sh->kid_reaped)) {
		kst = atomic_load(&sh->kid_status);
		/* Recorded, and perhaps not reaped before the client stopped:
		 * then it is ours now (the subreaper's). */
		waitpid(atomic_load(&sh->kid), NULL, WNOHANG);
	} else {
		T_ASSERT(!fc->restart && WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "client: status 0x%x", st);
		T_ASSERT(atomic_load(&sh->kid) > 0, "the client died before it forked");
		T_ASSERT(t_wait_pid(atomic_load(&sh->kid), 30000, &kst) == 0, "the forked child did not finish");
	}
	r = atomic_load(&sh->after_fork);
	t_log("crash at %s, %s: fl_client_after_fork %d (%s); child: status 0x%x, ok %ld, SIGSEGV %ld, SIGBUS "
	      "%ld, zero %ld, wrong %ld; parent: status 0x%x, ok %ld", fc->point,
	      fc->restart ? "restarted" : "no restart", r, strerror(-r), kst, atomic_load(&sh->ok),
	      atomic_load(&sh->segv), atomic_load(&sh->bus), atomic_load(&sh->zero), atomic_load(&sh->bad), st,
	      atomic_load(&sh->parent_ok));
	T_ASSERT_EQ(atomic_load(&sh->zero), 0);
	T_ASSERT_EQ(atomic_load(&sh->bad), 0);
	if (fc->restart) {
		T_ASSERT_EQ(r, 0);
		T_ASSERT(WIFEXITED(kst) && WEXITSTATUS(kst) == 0, "child: status 0x%x", kst);
		T_ASSERT_EQ(atomic_load(&sh->ok), 2L * FK_NPAGES);
		T_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "parent: status 0x%x", st);
		T_ASSERT_EQ(atomic_load(&sh->parent_ok), FK_NPAGES);
	} else if (r < 0) {
		/* The error fl_client_after_fork(3) documents for the point. */
		T_ASSERT(r == fc->after_fork, "after_fork %d (%s), documented %d (%s)", r, strerror(-r),
			 fc->after_fork, strerror(-fc->after_fork));
		/* Failed closed: every page with a source is out of reach. */
		T_ASSERT(WIFEXITED(kst) && WEXITSTATUS(kst) == 0, "child: status 0x%x", kst);
		T_ASSERT_EQ(atomic_load(&sh->segv), 2L * FK_NPAGES);
	} else {
		/* The child had its uffd (sent before the crash): its guard
		 * failed it closed (POISON: SIGBUS for the missing pages;
		 * without: the process stopped by SIGBUS). */
		T_ASSERT(fc->after_fork == 0, "after_fork succeeded with no daemon at %s, documented %d (%s)",
			 fc->point, fc->after_fork, strerror(-fc->after_fork));
		if (WIFEXITED(kst)) {
			T_ASSERT_EQ(WEXITSTATUS(kst), 0);
			T_ASSERT(atomic_load(&sh->bus) > 0);
			T_ASSERT_EQ(atomic_load(&sh->ok) + atomic_load(&sh->bus), 2L * FK_NPAGES);
		} else {
			T_ASSERT(WIFSIGNALED(kst) && WTERMSIG(kst) == SIGBUS, "child: status 0x%x", kst);
			T_ASSERT(!t_has(FL_FEATURE_BIT(FL_FEATURE_POISON)));
		}
	}
	d_env_free(&e);
	munmap(sh, sizeof(*sh));
	return T_PASS;
}

/*
 * Without a restart, the ERRORS of fl_client_after_fork(3): no claim token
 * yet (-ENOENT); the fork listed but no daemon to connect to
 * (-ECONNREFUSED); the daemon gone mid-claim (-ECONNRESET); the uffd
 * received before the crash (0, then the guard fails it closed).
 */
static const struct fork_crash fork_crashes[] = {
	{ "fork-event", true, 0 }, { "fork-listed", true, 0 }, { "claim", true, 0 }, { "claimed", true, 0 },
	{ "fork-event", false, -ENOENT }, { "fork-listed", false, -ECONNREFUSED },
	{ "claim", false, -ECONNRESET }, { "claimed", false, 0 },
};

static const struct t_case cases[] = {
	{ "kill9-restart-trials", test_kill_restart, (void *)(uintptr_t)8, 300 },
	{ "kill9-no-restart", test_kill_no_restart, NULL, 120 },
	{ "kill9-supervised", test_supervise, NULL, 120 },
	{ "kill9-forked-child", test_fork_kill, NULL, 120 },
	{ "fork-crash-event-restart", test_fork_crash, (void *)&fork_crashes[0], 120, T_EVENT_FORK },
	{ "fork-crash-listed-restart", test_fork_crash, (void *)&fork_crashes[1], 120, T_EVENT_FORK },
	{ "fork-crash-claim-restart", test_fork_crash, (void *)&fork_crashes[2], 120, T_EVENT_FORK },
	{ "fork-crash-claimed-restart", test_fork_crash, (void *)&fork_crashes[3], 120, T_EVENT_FORK },
	{ "fork-crash-event-no-restart", test_fork_crash, (void *)&fork_crashes[4], 120, T_EVENT_FORK },
	{ "fork-crash-listed-no-restart", test_fork_crash, (void *)&fork_crashes[5], 120, T_EVENT_FORK },
	{ "fork-crash-claim-no-restart", test_fork_crash, (void *)&fork_crashes[6], 120, T_EVENT_FORK },
	{ "fork-crash-claimed-no-restart", test_fork_crash, (void *)&fork_crashes[7], 120, T_EVENT_FORK },
};

int main(int argc, char **argv)
{
	u_inner_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
