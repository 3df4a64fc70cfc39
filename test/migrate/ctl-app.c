// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A program that embeds the migration control socket, for the tests of
 * fl_migrate_ctl_new() (test/migrate/control.c) and of `faultline migrate`
 * (test/cli/migrate.sh): what a VMM or a database does, in small.
 *
 *   ctl-app source --control PATH [--pages N] [--rate BYTES_PER_S]
 *	Anonymous memory of N pages (default 4096) at a fixed address and a
 *	writer thread bumping per-page counters until quiesce. `start TO
 *	MODE` on the control socket connects to TO (IP:PORT) twice (bulk,
 *	urgent), the bulk socket paced to --rate so a test can watch the
 *	phases, and runs the source in a thread. SIGTERM ends the program:
 *	exit 0 when the memory is as it should be (migrated: the source ran
 *	to DONE; not migrated: every page whole and the writer still
 *	running), 1 otherwise.
 *   ctl-app dest --port-file FILE [--control PATH]
 *	Listens on 127.0.0.1 (the port written to FILE), receives the
 *	migration and checks every page against the counters the source
 *	sent as its blob at the pause. With --control, waits for SIGTERM
 *	after the end (so its status can be read). Exit 0: migrated and
 *	every page right; 3: the source cancelled; 1: anything else.
 *
 * Page i holds i in its first word and its counter in its second and last.
 */
#include <faultline/faultline.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ADDR 0x5d0000000000ull
#define PAGE 4096u
#define WORDS (PAGE / 8)

static size_t npages = 4096;
static uint64_t rate;

struct app {
	uint64_t *mem;
	pthread_rwlock_t lock;
	pthread_t writer;
	_Atomic bool stop;
	_Atomic uint64_t ops;
	bool paused;
	uint64_t *blob;			/* counters at the pause */
	struct fl_migrate_ctl *ctl;
	pthread_mutex_t mig_lock;	/* the fields below, between start and main */
	struct fl_migrate_source *src;
	pthread_t runner;
	bool running, ran;
	int result;
	int bulk, urgent;
};

static void app_log(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level <= FL_LOG_WARN)
		fprintf(stderr, "ctl-app[%d]: %s\n", getpid(), msg);
}

static void *writer(void *arg)
{
	struct app *a = arg;
	uint64_t x = 88172645463325252ull;

	while (!atomic_load(&a->stop)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* A hot quarter: the rounds converge, the last ones stay busy. */
		size_t i = x % (npages / 4 ? npages / 4 : 1);
		uint64_t *p = a->mem + i * WORDS;

		pthread_rwlock_rdlock(&a->lock);
		p[1]++;
		p[WORDS - 1] = p[1];
		pthread_rwlock_unlock(&a->lock);
		if ((atomic_fetch_add(&a->ops, 1) & 63) == 0)
			usleep(100);	/* leave the CPUs to the migration */
	}
	return NULL;
}

static int quiesce(enum fl_migrate_quiesce action, void *ctx)
{
	struct app *a = ctx;

	if (action == FL_MIGRATE_PAUSE) {
		pthread_rwlock_wrlock(&a->lock);
		a->paused = true;
		for (size_t i = 0; i < npages; i++)
			a->blob[i] = a->mem[i * WORDS + 1];
	} else {
		a->paused = false;
		pthread_rwlock_unlock(&a->lock);
	}
	return 0;
}

static int connect_to(const char *to, int *ret_fd)
{
	char host[256];
	const char *colon = strrchr(to, ':');
	/* Numeric only: no resolver wait in the control thread. */
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV }, *ai;
	int fd, r, one = 1;

	if (!colon || colon == to || (size_t)(colon - to) >= sizeof(host))
		return -EINVAL;
	memcpy(host, to, (size_t)(colon - to));
	host[colon - to] = 0;
	if (getaddrinfo(host, colon + 1, &hints, &ai))
		return -EHOSTUNREACH;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	r = fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) ? -errno : 0;
	freeaddrinfo(ai);
	if (r) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*ret_fd = fd;
	return 0;
}

static void *runner(void *arg)
{
	struct app *a = arg;
	int r = fl_migrate_source_run(a->src);

	fprintf(stderr, "ctl-app[%d]: source run: %d (%s)\n", getpid(), r, r ? strerror(-r) : "done");
	pthread_mutex_lock(&a->mig_lock);
	a->result = r;
	a->ran = true;
	pthread_mutex_unlock(&a->mig_lock);
	return NULL;
}

/* The control socket's start: connect, create, attach, run in a thread. */
static int start(void *ctx, const char *to, enum fl_migrate_mode mode)
{
	struct app *a = ctx;
	char role;
	int r;

	if (!to)
		return -EDESTADDRREQ;	/* no configured destination */
	pthread_mutex_lock(&a->mig_lock);
	if (a->running && !a->ran) {
		r = -EALREADY;
		goto out;
	}
	if (a->running) {
		/* A migration that ended before switchover leaves the program
		 * running here: it may try again. One that switched over does not. */
		if (a->paused || a->result == 0) {
			r = -EALREADY;
			goto out;
		}
		pthread_join(a->runner, NULL);
		fl_migrate_ctl_set_source(a->ctl, NULL);
		a->src = fl_migrate_source_free(a->src);
		close(a->bulk);
		close(a->urgent);
		a->running = a->ran = false;
	}
	r = connect_to(to, &a->bulk);
	if (r)
		goto out;
	r = connect_to(to, &a->urgent);
	if (r) {
		close(a->bulk);
		goto out;
	}
	if (rate)
		setsockopt(a->bulk, SOL_SOCKET, SO_MAX_PACING_RATE, &rate, sizeof(rate));
	role = 'B';
	if (write(a->bulk, &role, 1) != 1)
		r = -EPIPE;
	role = 'U';
	if (!r && write(a->urgent, &role, 1) != 1)
		r = -EPIPE;
	if (!r)
		r = fl_migrate_source_new(&(struct fl_migrate_source_opts){
			.sz = sizeof(struct fl_migrate_source_opts),
			.ranges = &(struct fl_migrate_range){ a->mem, npages * PAGE, FL_MEM_ANON }, .nranges = 1,
			.bulk_fd = a->bulk, .urgent_fd = a->urgent, .mode = mode, .quiesce = quiesce,
			.quiesce_ctx = a, .blob = a->blob, .blob_len = npages * 8, .log = app_log }, &a->src);
	if (r) {
		close(a->bulk);
		close(a->urgent);
		goto out;
	}
	fl_migrate_ctl_set_source(a->ctl, a->src);
	r = -pthread_create(&a->runner, NULL, runner, a);
	if (r) {
		fl_migrate_ctl_set_source(a->ctl, NULL);
		a->src = fl_migrate_source_free(a->src);
		close(a->bulk);
		close(a->urgent);
		goto out;
	}
	a->running = true;
out:
	pthread_mutex_unlock(&a->mig_lock);
	return r;
}

static int wait_term(void)
{
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigwait(&set, &sig);
	return sig;
}

static int source_main(const char *control)
{
	struct app a = { .bulk = -1, .urgent = -1 };
	int r, rc = 0;

	a.mem = mmap((void *)(uintptr_t)ADDR, npages * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	a.blob = calloc(npages, 8);
	if (a.mem != (void *)(uintptr_t)ADDR || !a.blob) {
		fprintf(stderr, "ctl-app: cannot map the memory\n");
		return 1;
	}
	for (size_t i = 0; i < npages; i++) {
		a.mem[i * WORDS] = i;
		a.mem[i * WORDS + 1] = a.mem[i * WORDS + WORDS - 1] = 1;
	}
	pthread_rwlock_init(&a.lock, NULL);
	pthread_mutex_init(&a.mig_lock, NULL);
	r = fl_migrate_ctl_new(&(struct fl_migrate_ctl_opts){ .sz = sizeof(struct fl_migrate_ctl_opts),
							    .path = control, .start = start, .start_ctx = &a,
							    .log = app_log }, &a.ctl);
	if (r) {
		fprintf(stderr, "ctl-app: control socket %s: %s\n", control, strerror(-r));
		return 1;
	}
	pthread_create(&a.writer, NULL, writer, &a);
	fprintf(stderr, "ctl-app[%d]: source ready on %s\n", getpid(), control);
	wait_term();
	pthread_mutex_lock(&a.mig_lock);
	bool running = a.running;
	pthread_mutex_unlock(&a.mig_lock);
	if (running) {
		pthread_join(a.runner, NULL);
		fl_migrate_ctl_set_source(a.ctl, NULL);
	}
	if (!running || !a.paused) {
		/* Not migrated (never started, cancelled, failed before
		 * switchover): the program runs on, its memory whole. */
		uint64_t ops = atomic_load(&a.ops);

		for (int k = 0; k < 2000 && atomic_load(&a.ops) < ops + 100; k++)
			usleep(1000);
		if (atomic_load(&a.ops) < ops + 100) {
			fprintf(stderr, "ctl-app: the writer does not run\n");
			rc = 1;
		}
		atomic_store(&a.stop, true);
		pthread_join(a.writer, NULL);
		for (size_t i = 0; i < npages; i++) {
			const uint64_t *p = a.mem + i * WORDS;

			if (p[0] != i || p[1] != p[WORDS - 1] || !p[1]) {
				fprintf(stderr, "ctl-app: page %zu damaged\n", i);
				rc = 1;
				break;
			}
		}
	} else if (a.result != 0) {
		rc = 1;
	}
	if (running)
		fl_migrate_source_free(a.src);
	fl_migrate_ctl_free(a.ctl);
	fprintf(stderr, "ctl-app[%d]: source exits %d\n", getpid(), rc);
	_exit(rc);	/* the writer may still wait on the paused lock */
}

struct dest_ctx {
	uint64_t *blob;
};

static void on_resume(const void *blob, size_t len, void *ctx)
{
	struct dest_ctx *d = ctx;

	if (len == npages * 8)
		memcpy(d->blob, blob, len);
	else	/* then every counter mismatches: the check fails */
		fprintf(stderr, "ctl-app: a blob of %zu bytes for %zu pages (--pages differs?)\n", len, npages);
}

static int dest_main(const char *port_file, const char *control)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct dest_ctx d = { .blob = calloc(npages, 8) };
	struct fl_migrate_ctl *ctl = NULL;
	struct fl_migrate_dest *dst = NULL;
	int lfd, fds[2] = { -1, -1 }, r, rc = 0;
	char tmp[4096];
	FILE *f;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 4) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl)) {
		perror("ctl-app: listen");
		return 1;
	}
	if (control) {
		r = fl_migrate_ctl_new(&(struct fl_migrate_ctl_opts){ .sz = sizeof(struct fl_migrate_ctl_opts),
								    .path = control, .log = app_log }, &ctl);
		if (r) {
			fprintf(stderr, "ctl-app: control socket %s: %s\n", control, strerror(-r));
			return 1;
		}
	}
	/* Written whole, then renamed: a reader never sees half a port. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%u\n", ntohs(sa.sin_port)) < 0 || fclose(f) || rename(tmp, port_file)) {
		perror("ctl-app: port file");
		return 1;
	}
	for (int k = 0; k < 2; k++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		char role = 0;

		if (fd < 0 || read(fd, &role, 1) != 1 || (role != 'B' && role != 'U')) {
			fprintf(stderr, "ctl-app: a bad connection\n");
			return 1;
		}
		fds[role == 'U'] = fd;
	}
	r = fl_migrate_dest_new(&(struct fl_migrate_dest_opts){ .sz = sizeof(struct fl_migrate_dest_opts),
								.bulk_fd = fds[0], .urgent_fd = fds[1],
								.resume = on_resume, .resume_ctx = &d,
								.log = app_log }, &dst);
	if (!r) {
		fl_migrate_ctl_set_dest(ctl, dst);
		r = fl_migrate_dest_start(dst);
	}
	if (!r)
		r = fl_migrate_dest_wait(dst);
	fprintf(stderr, "ctl-app[%d]: dest wait: %d (%s)\n", getpid(), r, r ? strerror(-r) : "done");
	if (r == 0) {
		const uint64_t *mem = (const uint64_t *)(uintptr_t)ADDR;

		for (size_t i = 0; i < npages; i++) {
			const uint64_t *p = mem + i * WORDS;

			if (p[0] != i || p[1] != d.blob[i] || p[WORDS - 1] != d.blob[i]) {
				fprintf(stderr, "ctl-app: page %zu is wrong at the destination: %llu %llu %llu, "
					"want %zu %llu\n", i, (unsigned long long)p[0], (unsigned long long)p[1],
					(unsigned long long)p[WORDS - 1], i, (unsigned long long)d.blob[i]);
				rc = 1;
				break;
			}
		}
		if (!rc)
			fprintf(stderr, "ctl-app[%d]: dest verified %zu pages\n", getpid(), npages);
	} else {
		rc = r == -ECANCELED ? 3 : 1;
	}
	if (ctl)
		wait_term();
	fl_migrate_ctl_set_dest(ctl, NULL);
	fl_migrate_dest_free(dst);
	fl_migrate_ctl_free(ctl);
	close(fds[0]);
	close(fds[1]);
	close(lfd);
	free(d.blob);
	return rc;
}

int main(int argc, char **argv)
{
	const char *control = NULL, *port_file = NULL;
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--control") && i + 1 < argc)
			control = argv[++i];
		else if (!strcmp(argv[i], "--port-file") && i + 1 < argc)
			port_file = argv[++i];
		else if (!strcmp(argv[i], "--pages") && i + 1 < argc)
			npages = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--rate") && i + 1 < argc)
			rate = strtoull(argv[++i], NULL, 0);
		else
			goto usage;
	}
	/* Blocked in every thread (inherited): only sigwait takes them. A
	 * destination without a control socket never waits for them: they
	 * end it (before any migration, or while it runs). */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (control)
		pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (argc >= 2 && !strcmp(argv[1], "source") && control && npages)
		return source_main(control);
	if (argc >= 2 && !strcmp(argv[1], "dest") && port_file && npages)
		return dest_main(port_file, control);
usage:
	fprintf(stderr, "usage: ctl-app source --control PATH [--pages N] [--rate B/s]\n"
			"       ctl-app dest --port-file FILE [--control PATH]\n");
	return 2;
}
