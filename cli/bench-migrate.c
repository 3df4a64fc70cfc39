// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench migrate: live migration (<faultline/migrate.h>) between
 * two network namespaces on this host, joined by a veth pair, over TCP.
 * The source application runs in one namespace, the destination in the
 * other, each a forked process; the parent only sets up the link and
 * collects results. Issue 18's Performance section:
 *
 *  (a) downtime of postcopy with 2 writers at full speed until quiesce, at
 *      two sizes (1 GiB and 4 GiB), against stop-and-copy of the same
 *      memory: the application paused first, then every page sent
 *      (FL_MIGRATE_PRECOPY, one round, started after the pause; its
 *      downtime is our pause -> the destination's RESUMED).
 *  (b) page-request latency during the background push, over a link of
 *      1 Gbit/s (tbf on both veth ends) with 1 ms each way added by the
 *      relay of `faultline proxy` run in-process; against the round trip
 *      of small messages over the same path.
 *  (c) efficiency: the time to move 4 GiB of incompressible pages over the
 *      1 Gbit/s link against payload / bandwidth (nominal and measured).
 *  (d) writers dirtying memory faster than the link: precopy's rounds and
 *      downtime, and postcopy's downtime for the same workload.
 *
 * Namespaces are held by two idle child processes (no names in /run/netns):
 * when they die (also when this command is killed: PR_SET_PDEATHSIG), the
 * namespaces and the veth pair go with them; nothing is left behind.
 */
#include "bench.h"
#include "relay.h"
#include "util.h"

#include <faultline/faultline.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BASE 0x5c0000000000ull
#define ADDR_SRC "10.77.0.1"
#define ADDR_DST "10.77.0.2"
#define PORT_DST 7000		/* the destination, in its namespace */
#define PORT_PROXY 7001		/* the relay in front of it */
#define LINK_RATE "1gbit"
#define LINK_BPS 125000000.0	/* 1 Gbit/s in bytes per second */
/* tbf: a burst of 1 ms at the rate, a queue of at most 2 ms of it. */
#define TBF_BURST "128kb"
#define TBF_LATENCY "2ms"
#define RTT_MSG 64u
#define RTT_REPS 200u
#define WRITERS 2

#define GOAL_DOWNTIME_MS 5.0
#define GOAL_FLAT 1.5
#define GOAL_RATIO 0.01
#define GOAL_EFFICIENCY 0.85

static const char usage[] =
	"Usage: faultline bench migrate [--json] [--quick] [--reps N] [--part a|b|c|d]\n"
	"\n"
	"Live migration between two network namespaces joined by a veth pair:\n"
	"(a) postcopy downtime with 2 writers, 1 GiB and 4 GiB, vs stop-and-copy:\n"
	"    downtime_ms_1g, downtime_ms_4g, stopcopy_ms_*, downtime_flat,\n"
	"    downtime_ratio (goals <= 5 ms, <= 1.5, <= 0.01); as the application\n"
	"    feels it (stop asked -> first access at the destination done):\n"
	"    app_downtime_ms_*, app_stopcopy_ms_*;\n"
	"(b) page-request latency during the push, link 1 Gbit/s (tbf) + 1 ms\n"
	"    each way (relay): request_p50_us, request_p99_us, rtt_us (goals\n"
	"    p50 <= 3 rtt + 100 us, p99 <= 5 rtt); the destination's own timed\n"
	"    accesses touch_p50_us, touch_p99_us, touch_max_us; rtt_loaded_us\n"
	"    during the push;\n"
	"(c) 4 GiB over the 1 Gbit/s link: efficiency = payload / 1 Gbit/s over\n"
	"    the migration's time (goal >= 0.85), link_mbps measured;\n"
	"(d) writers dirtying faster than the link: precopy_rounds,\n"
	"    precopy_converged, precopy_downtime_ms, postcopy_downtime_ms.\n"
	"--quick: 32 MiB and 128 MiB instead of 1 GiB and 4 GiB (a smoke run).\n"
	"--reps N: runs of every part (default 3): medians, with _min and _max.\n"
	"Needs root (network namespaces), ip and tc; about 4 GiB of memory per\n"
	"side at full size; runs its parts one after the other.\n";

/* ---- what one migration run does --------------------------------------- */

struct run_params {
	uint64_t size;
	enum fl_migrate_mode mode;
	unsigned max_rounds;
	unsigned writers;
	bool pause_first;	/* stop-and-copy: pause, then migrate */
	bool nohuge;		/* page-granular dirty tracking */
	bool via_proxy;		/* through the relay, delay_ns each way */
	uint64_t delay_ns;
	bool measure_rtt;
	uint64_t link_bytes;	/* a bulk transfer first (0: none) */
	bool dest_touch;	/* the destination touches random pages */
};

struct src_result {
	int err;
	struct fl_migrate_stats st;
	uint64_t pause_ns;	/* our pause -> the library's (stop-and-copy) */
	/* CLOCK_MONOTONIC (one clock for both namespaces of this host): when
	 * the writers were asked to stop (quiesce(PAUSE) called, or our own
	 * pause for stop-and-copy), 0 if never. */
	uint64_t stop_req_ns;
	double rtt_us, link_mbps;
	double rtt_loaded_us;	/* median ping-pong while the migration ran, -1: none */
};

struct dst_result {
	int err;
	struct fl_migrate_stats st;
	uint64_t touches;
	/* CLOCK_MONOTONIC: the resume callback's start, and the end of the
	 * application's first access after it (0: none). */
	uint64_t resume_ns, first_access_ns;
	/* The toucher's own accesses, each timed (exact nearest-rank
	 * quantiles over every sample): */
	uint64_t touch_samples, touch_p50_ns, touch_p99_ns, touch_max_ns;
};

struct run_result {
	struct src_result src;
	struct dst_result dst;
};

static pid_t holder[2];	/* the processes holding namespace A (source) and B */

/* ---- namespaces and the link -------------------------------------------- */

static int enter_ns(pid_t pid)
{
	char path[64];
	int fd, r;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = setns(fd, CLONE_NEWNET) ? -errno : 0;
	close(fd);
	return r;
}

/* Run argv in the namespace of `pid`, once; its output goes to /dev/null
 * and its stderr to a pipe, shown when it fails (unless quiet_fail). */
static int ns_run(pid_t pid, const char *const *argv, bool quiet_fail)
{
	char err[2048];
	size_t got = 0;
	int st, e[2];
	pid_t c;

	if (pipe2(e, O_CLOEXEC))
		return -errno;
	c = fork();
	if (c < 0) {
		int r = -errno;
		close(e[0]);
		close(e[1]);
		return r;
	}
	if (c == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		if (enter_ns(pid))
			_exit(126);
		if (null >= 0)
			dup2(null, 1);
		dup2(e[1], 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(e[1]);
	/* Read to the end (a command that says more than err holds is
	 * drained, not blocked), then reap. */
	for (;;) {
		char drop[512];
		ssize_t n = got < sizeof(err) - 1 ? read(e[0], err + got, sizeof(err) - 1 - got)
						  : read(e[0], drop, sizeof(drop));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (got < sizeof(err) - 1)
			got += (size_t)n;
	}
	close(e[0]);
	err[got] = 0;
	while (got && err[got - 1] == '\n')
		err[--got] = 0;
	if (waitpid(c, &st, 0) != c)
		return -ECHILD;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (quiet_fail)
		return -EIO;
	fprintf(stderr, "faultline: bench migrate: failed:");
	for (int i = 0; argv[i]; i++)
		fprintf(stderr, " %s", argv[i]);
	fprintf(stderr, "%s%s\n", got ? ": " : "", err);
	return -EIO;
}

static int holder_slot[2] = { -1, -1 };

/* A child that made a network namespace and sleeps in it. */
static int make_holder(pid_t *ret)
{
	pid_t parent = getpid();
	int p[2], r = 0;
	pid_t c;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	c = fork();
	if (c < 0)
		return -errno;
	if (c == 0) {
		cleanup_child(parent);
		close(p[0]);
		r = unshare(CLONE_NEWNET) ? -errno : 0;
		if (write(p[1], &r, sizeof(r)) != sizeof(r) || r)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], &r, sizeof(r)) != sizeof(r))
		r = -EIO;
	close(p[0]);
	*ret = c;
	return r;
}

static void link_down(void)
{
	for (int i = 0; i < 2; i++) {
		if (holder[i] > 0) {
			kill(holder[i], SIGKILL);
			waitpid(holder[i], NULL, 0);
			holder[i] = 0;
		}
		cleanup_drop(holder_slot[i]);
		holder_slot[i] = -1;
	}
}

static int link_up(void)
{
	char peer_pid[16];
	int r;

	for (int i = 0; i < 2; i++) {
		r = make_holder(&holder[i]);
		if (holder[i] > 0)
			holder_slot[i] = cleanup_add_pid(holder[i]);
		if (r) {
			cli_error("bench migrate: cannot make a network namespace: %s", strerror(-r));
			return r;
		}
	}
	snprintf(peer_pid, sizeof(peer_pid), "%d", (int)holder[1]);
	const char *const cmds_a[][12] = {
		{ "ip", "link", "set", "lo", "up", NULL },
		{ "ip", "link", "add", "fl-mig-a", "type", "veth", "peer", "name", "fl-mig-b", "netns", peer_pid, NULL },
		{ "ip", "addr", "add", ADDR_SRC "/24", "dev", "fl-mig-a", NULL },
		{ "ip", "link", "set", "fl-mig-a", "up", NULL },
	};
	const char *const cmds_b[][12] = {
		{ "ip", "link", "set", "lo", "up", NULL },
		{ "ip", "addr", "add", ADDR_DST "/24", "dev", "fl-mig-b", NULL },
		{ "ip", "link", "set", "fl-mig-b", "up", NULL },
	};
	for (size_t i = 0; i < FL_ARRAY_SIZE(cmds_a); i++)
		if ((r = ns_run(holder[0], cmds_a[i], false)))
			return r;
	for (size_t i = 0; i < FL_ARRAY_SIZE(cmds_b); i++)
		if ((r = ns_run(holder[1], cmds_b[i], false)))
			return r;
	return 0;
}

/* tbf at LINK_RATE on both ends of the veth, or none. */
static int link_limit(bool on)
{
	for (int i = 0; i < 2; i++) {
		const char *dev = i ? "fl-mig-b" : "fl-mig-a";
		const char *const add[] = { "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", LINK_RATE,
					    "burst", TBF_BURST, "latency", TBF_LATENCY, NULL };
		const char *const del[] = { "tc", "qdisc", "del", "dev", dev, "root", NULL };
		int r;

		if (on && (r = ns_run(holder[i], add, false)))
			return r;
		if (!on)
			(void)ns_run(holder[i], del, true);	/* none there is fine */
	}
	return 0;
}

/* ---- sockets -------------------------------------------------------------- */

static int tcp_connect(const char *addr, int port, char role)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -errno;
	inet_pton(AF_INET, addr, &a.sin_addr);
	/* The veth may need a moment after it came up (neighbour discovery). */
	for (int i = 0; connect(fd, (struct sockaddr *)&a, sizeof(a)); i++) {
		int e = errno;

		close(fd);
		if (i >= 50 || (e != ECONNREFUSED && e != ENETUNREACH && e != EHOSTUNREACH))
			return -e;
		usleep(20000);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (write(fd, &role, 1) != 1) {
		close(fd);
		return -EIO;
	}
	return fd;
}

static int full_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int full_read(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The library's warnings and errors: why a run failed. */
static void log_warn(enum fl_log_level level, const char *msg, void *ctx)
{
	if (level <= FL_LOG_WARN)
		fprintf(stderr, "faultline: bench migrate: %s: %s\n", (const char *)ctx, msg);
}

/* ---- the source process -------------------------------------------------- */

struct app {
	uint8_t *mem;
	uint64_t size;
	pthread_t th[WRITERS];
	unsigned nwriters;
	_Atomic bool stop;
	bool paused;
	uint64_t paused_ns;	/* when quiesce(PAUSE) returned */
	uint64_t stop_req_ns;	/* when the writers were asked to stop */
};

static void *writer_main(void *arg)
{
	struct app *a = arg;
	uint64_t x = (uint64_t)(uintptr_t)pthread_self() | 1, pages = a->size / 4096;

	/* Random pages at full speed: no pause, no yield. */
	while (!atomic_load_explicit(&a->stop, memory_order_relaxed)) {
		uint64_t v = splitmix64(&x);
		((volatile uint64_t *)(void *)(a->mem + (v % pages) * 4096))[(v >> 40) % 512] = v;
	}
	return NULL;
}

static void app_pause(struct app *a)
{
	if (a->paused)
		return;
	atomic_store(&a->stop, true);
	for (unsigned i = 0; i < a->nwriters; i++)
		pthread_join(a->th[i], NULL);
	a->paused = true;
}

static int app_quiesce(enum fl_migrate_quiesce action, void *ctx)
{
	struct app *a = ctx;

	/* Resume only comes when the migration failed before switchover:
	 * the benchmark reports that failure and the writers stay stopped. */
	if (action == FL_MIGRATE_PAUSE) {
		if (!a->stop_req_ns)
			a->stop_req_ns = fl__now_ns();
		app_pause(a);
		a->paused_ns = fl__now_ns();
	}
	return 0;
}

/* Incompressible bytes in every page: no page is elided as zeros. */
static void fill_random(uint8_t *mem, uint64_t size)
{
	uint64_t x = 0x243F6A8885A308D3ull, *w = (uint64_t *)(void *)mem;

	for (uint64_t i = 0; i < size / 8; i++)
		w[i] = splitmix64(&x);
}

static double link_transfer(const char *addr, int port, uint64_t bytes)
{
	size_t chunk = 1u << 20;
	char *buf = malloc(chunk), ack;
	uint64_t t0, sent = 0;
	int fd = tcp_connect(addr, port, 'L');
	double mbps = -1;

	if (fd < 0 || !buf)
		goto out;
	memset(buf, 0xa5, chunk);
	t0 = fl__now_ns();
	if (full_write(fd, &bytes, sizeof(bytes)))
		goto out;
	while (sent < bytes) {
		size_t n = (size_t)FL_MIN((uint64_t)chunk, bytes - sent);
		if (full_write(fd, buf, n))
			goto out;
		sent += n;
	}
	/* The sink answers when it has everything: the link's time, not
	 * our socket buffer's. */
	if (full_read(fd, &ack, 1))
		goto out;
	mbps = (double)bytes * 8.0 / ((double)(fl__now_ns() - t0) / 1e9) / 1e6;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return mbps;
}

/*
 * The migration's two channels, made by the library (fl_migrate_connect:
 * bulk, then urgent) once the destination, told by a last probe
 * connection ('G', answered), has left its probe loop for
 * fl_migrate_accept(): the pair never mixes with a probe.
 */
static int migrate_connect(const char *addr, int port, int *ret_bulk, int *ret_urgent)
{
	char where[64], ack;
	int fd = tcp_connect(addr, port, 'G'), r;

	if (fd < 0)
		return fd;
	r = full_read(fd, &ack, 1);
	close(fd);
	if (r)
		return r;
	snprintf(where, sizeof(where), "%s:%d", addr, port);
	return fl_migrate_connect(where, 0, ret_bulk, ret_urgent);
}

static double ping_pong_us(const char *addr, int port)
{
	char msg[RTT_MSG];
	double v[RTT_REPS];
	int fd = tcp_connect(addr, port, 'E');

	if (fd < 0)
		return -1;
	memset(msg, 0x42, sizeof(msg));
	for (unsigned i = 0; i < RTT_REPS; i++) {
		uint64_t t0 = fl__now_ns();

		if (full_write(fd, msg, sizeof(msg)) || full_read(fd, msg, sizeof(msg))) {
			close(fd);
			return -1;
		}
		v[i] = (double)(fl__now_ns() - t0) / 1e3;
	}
	close(fd);
	return median_d(v, RTT_REPS);
}

/* Ping-pong on its own connection while the migration runs: the round
 * trip under load, through the same path as the idle one. */
struct pinger {
	int fd;
	_Atomic bool stop;
	double *us;
	size_t n, cap;
	pthread_t th;
	bool started;
};

static void *pinger_main(void *arg)
{
	struct pinger *pg = arg;
	char msg[RTT_MSG];

	memset(msg, 0x42, sizeof(msg));
	while (!atomic_load(&pg->stop) && pg->n < pg->cap) {
		uint64_t t0 = fl__now_ns();

		if (full_write(pg->fd, msg, sizeof(msg)) || full_read(pg->fd, msg, sizeof(msg)))
			break;
		pg->us[pg->n++] = (double)(fl__now_ns() - t0) / 1e3;
	}
	return NULL;
}

static void source_main(const struct run_params *p, int out)
{
	struct src_result res = { .err = 0 };
	struct app a = { .size = p->size };	/* nwriters: created */
	struct fl_migrate_range range;
	struct fl_migrate_source *src = NULL;
	int port = p->via_proxy ? PORT_PROXY : PORT_DST, bulk = -1, urgent = -1;
	uint64_t t_app_paused = 0;
	struct pinger pg = { .fd = -1, .cap = 1u << 16 };

	a.mem = mmap((void *)(uintptr_t)BASE, p->size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (a.mem == MAP_FAILED) {
		/* errno may be 0: an old kernel ignores NOREPLACE and maps elsewhere. */
		res.err = errno ? -errno : -EEXIST;
		goto out;
	}
	if (a.mem != (void *)(uintptr_t)BASE) {
		munmap(a.mem, p->size);	/* an old kernel's hint, not honoured */
		res.err = -EEXIST;
		goto out;
	}
	/* Huge pages make the fill fast; dirty tracking wants 4 KiB pages. */
	madvise(a.mem, p->size, p->nohuge ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
	fill_random(a.mem, p->size);
	if (p->link_bytes && (res.link_mbps = link_transfer(ADDR_DST, port, p->link_bytes)) < 0) {
		res.err = -EIO;
		goto out;
	}
	if (p->measure_rtt && (res.rtt_us = ping_pong_us(ADDR_DST, port)) < 0) {
		res.err = -EIO;
		goto out;
	}
	res.rtt_loaded_us = -1;
	if (p->measure_rtt) {
		pg.us = malloc(pg.cap * sizeof(double));
		pg.fd = tcp_connect(ADDR_DST, port, 'E');
		if (!pg.us || pg.fd < 0) {
			res.err = pg.fd < 0 ? pg.fd : -ENOMEM;
			goto out;
		}
	}
	for (unsigned i = 0; i < p->writers; i++) {
		if ((res.err = -pthread_create(&a.th[i], NULL, writer_main, &a)))
			goto out;
		a.nwriters++;	/* app_pause() joins only those */
	}
	if (a.nwriters)
		usleep(100000);	/* running, and dirtying, before the migration */
	if (p->pause_first) {
		a.stop_req_ns = fl__now_ns();
		app_pause(&a);
		t_app_paused = fl__now_ns();
	}
	if ((res.err = migrate_connect(ADDR_DST, port, &bulk, &urgent)))
		goto out;
	range = (struct fl_migrate_range){ a.mem, p->size, FL_MEM_ANON };
	res.err = fl_migrate_source_new(&(struct fl_migrate_source_opts){
		.sz = sizeof(struct fl_migrate_source_opts), .ranges = &range, .nranges = 1,
		.bulk_fd = bulk, .urgent_fd = urgent, .mode = p->mode, .max_rounds = p->max_rounds,
		.quiesce = app_quiesce, .quiesce_ctx = &a,
		.log = log_warn, .log_ctx = "source" }, &src);
	if (!res.err && pg.fd >= 0 && !pthread_create(&pg.th, NULL, pinger_main, &pg))
		pg.started = true;
	if (!res.err)
		res.err = fl_migrate_source_run(src);
	if (pg.started) {
		atomic_store(&pg.stop, true);
		pthread_join(pg.th, NULL);
		pg.started = false;
		if (pg.n)
			res.rtt_loaded_us = median_d(pg.us, pg.n);
	}
	res.st.sz = sizeof(res.st);
	if (src)
		fl_migrate_source_stats(src, &res.st);
	/* Stop-and-copy: the library's pause came after ours. */
	if (p->pause_first && a.paused_ns)
		res.pause_ns = a.paused_ns - t_app_paused;
	res.stop_req_ns = a.stop_req_ns;
out:
	app_pause(&a);
	fl_migrate_source_free(src);
	if (pg.fd >= 0)
		close(pg.fd);
	free(pg.us);
	if (bulk >= 0)
		close(bulk);
	if (urgent >= 0)
		close(urgent);
	_exit(write(out, &res, sizeof(res)) == sizeof(res) ? 0 : 1);
}

/* ---- the destination process --------------------------------------------- */

/* Access times below this many ns are counted per ns, the rest kept one
 * by one (faults: about one per page at most): every sample exact. */
#define FAST_NS 65536u

struct dest_app {
	uint64_t size;
	bool touch;
	pthread_t toucher;
	bool started;
	_Atomic bool stop;
	_Atomic uint64_t touches;
	uint64_t resume_ns;
	_Atomic uint64_t first_ns;	/* the end of the first access */
	uint64_t *fast, nfast;		/* FAST_NS counters */
	uint64_t *slow;
	size_t nslow, cap_slow;
	bool lost;			/* out of memory: samples missing */
};

static void *toucher_main(void *arg)
{
	struct dest_app *d = arg;
	uint64_t x = 0x9E3779B97F4A7C15ull, pages = d->size / 4096, sum = 0;

	/* The application at the destination: random pages, each read once
	 * faults when neither the push nor an earlier request brought it;
	 * every access timed. Without `touch`, one access: the first. */
	do {
		uint64_t t0 = fl__now_ns(), t1, dt;

		sum += *(volatile uint8_t *)(uintptr_t)(BASE + (splitmix64(&x) % pages) * 4096);
		t1 = fl__now_ns();
		dt = t1 - t0;
		if (!atomic_load_explicit(&d->first_ns, memory_order_relaxed))
			atomic_store(&d->first_ns, t1);
		atomic_fetch_add_explicit(&d->touches, 1, memory_order_relaxed);
		if (!d->touch)
			break;
		if (dt < FAST_NS) {
			d->fast[dt]++;
			d->nfast++;
			continue;
		}
		if (d->nslow == d->cap_slow) {
			size_t cap = d->cap_slow ? 2 * d->cap_slow : 4096;
			uint64_t *v = realloc(d->slow, cap * sizeof(*v));

			if (!v) {
				d->lost = true;
				continue;
			}
			d->slow = v;
			d->cap_slow = cap;
		}
		d->slow[d->nslow++] = dt;
	} while (!atomic_load(&d->stop));
	return (void *)(uintptr_t)sum;
}

/* Nearest rank over the toucher's samples (as quantile_u64); d->slow sorted. */
static uint64_t touch_quantile(const struct dest_app *d, double q)
{
	uint64_t n = d->nfast + d->nslow, rank, cum = 0;

	if (!n)
		return 0;
	rank = (uint64_t)ceil(q * (double)n);
	rank = FL_MAX(rank, 1ull);
	rank = FL_MIN(rank, n);
	if (rank > d->nfast)
		return d->slow[rank - d->nfast - 1];
	for (uint64_t i = 0; i < FAST_NS; i++)
		if ((cum += d->fast[i]) >= rank)
			return i;
	return FAST_NS;
}

static void dest_resume(const void *blob, size_t len, void *ctx)
{
	struct dest_app *d = ctx;

	(void)blob;
	(void)len;
	d->resume_ns = fl__now_ns();
	/* The application runs again: its first access (and, with touch,
	 * every one after) in a thread of its own, never in the library's. */
	if (!pthread_create(&d->toucher, NULL, toucher_main, d))
		d->started = true;
}

static void *echo_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[4096];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (full_write(fd, buf, (size_t)n))
			break;
	close(fd);
	return NULL;
}

static void sink(int fd)
{
	uint64_t want = 0, got = 0;
	char *buf = malloc(1u << 20), ack = 1;

	if (buf && !full_read(fd, &want, sizeof(want))) {
		while (got < want) {
			ssize_t n = read(fd, buf, 1u << 20);
			if (n <= 0)
				break;
			got += (uint64_t)n;
		}
		if (got == want)
			(void)!send(fd, &ack, 1, MSG_NOSIGNAL);
	}
	free(buf);
	close(fd);
}

static void dest_main(const struct run_params *p, int out, int ready)
{
	struct dst_result res = { .err = 0 };
	struct dest_app d = { .size = p->size, .touch = p->dest_touch };
	struct fl_migrate_dest *dst = NULL;
	struct relay *relay = NULL;
	int lfd = -1, bulk = -1, urgent = -1;
	bool listening = false;
	char one = 1, where[64];

	if (d.touch && !(d.fast = calloc(FAST_NS, sizeof(*d.fast)))) {
		res.err = -ENOMEM;
		goto out;
	}
	snprintf(where, sizeof(where), "%s:%d", p->via_proxy ? "127.0.0.1" : ADDR_DST, PORT_DST);
	if ((res.err = fl_migrate_listen(where, &lfd, NULL)))
		goto out;
	if (p->via_proxy) {
		struct relay_opts ro = { .delay_ns = p->delay_ns, .seed = 1 };

		relay_parse_addr(ADDR_DST ":7001", &ro.listen_addr, &ro.listen_len);
		relay_parse_addr("127.0.0.1:7000", &ro.to_addr, &ro.to_len);
		res.err = relay_new(&ro, &relay);
		if (!res.err)
			res.err = relay_start(relay);
		if (res.err)
			goto out;
	}
	if (write(ready, &one, 1) != 1)
		_exit(1);
	listening = true;
	/* The source's probe connections, each naming its role in one
	 * byte: the link probe (L), round trip probes (E), then G: answered,
	 * and the migration's pair follows (fl_migrate_accept). */
	for (char role = 0; role != 'G';) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };
		int fd, on = 1;
		pthread_t t;

		if (poll(&pfd, 1, 60000) != 1 || (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0 ||
		    read(fd, &role, 1) != 1) {
			res.err = -EIO;
			goto out;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
		if (role == 'G') {
			(void)!send(fd, &one, 1, MSG_NOSIGNAL);
			close(fd);
		} else if (role == 'L') {
			sink(fd);
		} else if (role == 'E' && !pthread_create(&t, NULL, echo_main, (void *)(intptr_t)fd)) {
			pthread_detach(t);
		} else {
			close(fd);
		}
	}
	if ((res.err = fl_migrate_accept(lfd, 60000, &bulk, &urgent)))
		goto out;
	res.err = fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = bulk, .urgent_fd = urgent,
		.resume = dest_resume, .resume_ctx = &d, .timeout_ms = 60000,
		.log = log_warn, .log_ctx = "destination" }, &dst);
	if (!res.err)
		res.err = fl_migrate_dest_start(dst);
	if (!res.err)
		res.err = fl_migrate_dest_wait(dst);
	atomic_store(&d.stop, true);
	/* A failed migration may leave an access waiting for ever: no join. */
	if (d.started && !res.err)
		pthread_join(d.toucher, NULL);
	res.st.sz = sizeof(res.st);
	if (dst)
		fl_migrate_dest_stats(dst, &res.st);
	res.touches = atomic_load(&d.touches);
	res.resume_ns = d.resume_ns;
	res.first_access_ns = atomic_load(&d.first_ns);
	if (d.touch && !res.err) {
		if (d.nslow)
			(void)quantile_u64(d.slow, d.nslow, 1.0);	/* sorts */
		res.touch_samples = d.lost ? 0 : d.nfast + d.nslow;
		res.touch_p50_ns = touch_quantile(&d, 0.50);
		res.touch_p99_ns = touch_quantile(&d, 0.99);
		res.touch_max_ns = touch_quantile(&d, 1.0);
		if (d.lost)
			res.err = -ENOMEM;
	}
out:
	fl_migrate_dest_free(dst);
	if (write(out, &res, sizeof(res)) != sizeof(res))
		_exit(1);
	/* The relay stays until the source is done: its delay line may still
	 * hold the source's last messages (DONE), and freeing it resets. */
	if (listening)
		(void)!read(ready, &one, 1);
	relay_free(relay);
	_exit(0);
}

/* ---- one run: both processes ------------------------------------------------ */

/* Fork a child into namespace `ns` running fn; *ret_fd reads its result. */
static pid_t spawn(int ns, int *ret_fd, int *ret_ready, const struct run_params *p, int *ret_slot)
{
	pid_t parent = getpid(), c;
	int res[2], rdy[2] = { -1, -1 };

	/* rdy: the destination says it listens; its end of file (the parent
	 * closes) says the source is done. */
	if (pipe2(res, O_CLOEXEC))
		return -errno;
	if (ret_ready && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, rdy)) {
		int e = -errno;
		close(res[0]);
		close(res[1]);
		return e;
	}
	fflush(stdout);
	c = fork();
	if (c < 0) {
		int e = -errno;
		close(res[0]);
		close(res[1]);
		if (rdy[0] >= 0) {
			close(rdy[0]);
			close(rdy[1]);
		}
		return e;
	}
	if (c == 0) {
		cleanup_child(parent);
		close(res[0]);
		if (rdy[0] >= 0)
			close(rdy[0]);
		if (enter_ns(holder[ns]))
			_exit(1);
		if (ns == 0)
			source_main(p, res[1]);
		dest_main(p, res[1], rdy[1]);
	}
	*ret_slot = cleanup_add_pid(c);
	close(res[1]);
	*ret_fd = res[0];
	if (ret_ready) {
		close(rdy[1]);
		*ret_ready = rdy[0];
	}
	return c;
}

/* Read a child's result, waiting at most timeout_ms. */
static int collect(int fd, void *buf, size_t len, unsigned timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t got = 0;

	while (got < len) {
		int r = poll(&pfd, 1, (int)timeout_ms);
		ssize_t n;

		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r < 0)
			continue;
		n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			return -EIO;
		got += (size_t)n;
	}
	return 0;
}

static void reap(pid_t pid, int slot, bool kill_it)
{
	if (pid <= 0)
		return;
	if (kill_it)
		kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cleanup_drop(slot);
}

static int run(const struct run_params *p, struct run_result *res, const char *what)
{
	/* Generous: 4 GiB over 1 Gbit/s is 35 s; a slow, busy machine more. */
	unsigned timeout_ms = cli_scaled_ms(600000);
	int dfd = -1, sfd = -1, rfd = -1, dslot = -1, sslot = -1, r;
	pid_t dpid, spid = -1;
	char c;

	memset(res, 0, sizeof(*res));
	dpid = spawn(1, &dfd, &rfd, p, &dslot);
	if (dpid < 0)
		return (int)dpid;
	r = collect(rfd, &c, 1, timeout_ms);
	if (!r) {
		spid = spawn(0, &sfd, NULL, p, &sslot);
		if (spid < 0)
			r = (int)spid;
	}
	if (!r)
		r = collect(sfd, &res->src, sizeof(res->src), timeout_ms);
	/* A source that failed may have left the destination waiting for
	 * a connection that never comes: it has nothing to say then. */
	if (!r && !res->src.err)
		r = collect(dfd, &res->dst, sizeof(res->dst), timeout_ms);
	else if (!r && collect(dfd, &res->dst, sizeof(res->dst), 2000))
		res->dst.err = -EIO;	/* nothing (or not all) said: not "ok" */
	reap(spid, sslot, r != 0);
	close(rfd);
	reap(dpid, dslot, r != 0 || res->src.err);
	close(dfd);
	if (sfd >= 0)
		close(sfd);
	if (!r && (res->src.err || res->dst.err)) {
		cli_error("bench migrate: %s: source %s, destination %s", what,
			  res->src.err ? strerror(-res->src.err) : "ok", res->dst.err ? strerror(-res->dst.err) : "ok");
		return -EIO;
	}
	if (r)
		cli_error("bench migrate: %s: %s", what, strerror(-r));
	return r;
}

/* ---- the parts -------------------------------------------------------------- */

struct results {
	uint64_t size_small, size_large;
	unsigned reps;		/* every part runs reps times: medians, min, max */
	/* (a) */
	struct stat3 down[2];	/* postcopy downtime, ms */
	struct stat3 stop[2];	/* stop-and-copy, ms */
	struct stat3 app_down[2], app_stop[2];	/* the application's, ms */
	double down_ms[2], stop_ms[2];
	/* (b) */
	struct stat3 p50, p99, max, rtt, rtt_loaded, touch_p50, touch_p99, touch_max;
	double p50_us, p99_us, max_us, rtt_us;
	uint64_t requests, touch_samples;	/* lower medians */
	/* (c) */
	uint64_t eff_size, payload, bytes_sent;
	struct stat3 migrate, link;
	double migrate_s, link_mbps;
	/* (d) */
	uint64_t d_size;
	uint64_t remainder_pages, remainder_min, remainder_max;
	uint64_t rounds, rounds_min, rounds_max;
	struct stat3 pre_down, post_down;
	double pre_down_ms, post_down_ms;
};

/*
 * What the user of the application feels, ms: from the moment the writers
 * were asked to stop at the source to the end of the destination
 * application's first access after resume (the resume callback's start
 * if it made none). Both processes read CLOCK_MONOTONIC on this host.
 */
static double app_downtime_ms(const struct run_result *rr)
{
	uint64_t end = rr->dst.first_access_ns ? rr->dst.first_access_ns : rr->dst.resume_ns;

	if (!rr->src.stop_req_ns || end < rr->src.stop_req_ns)
		return NAN;
	return (double)(end - rr->src.stop_req_ns) / 1e6;
}

/* Lower median (nearest rank), min and max of n integers; sorts v. */
static uint64_t med_u64(uint64_t *v, size_t n, uint64_t *ret_min, uint64_t *ret_max)
{
	uint64_t m = quantile_u64(v, n, 0.5);

	if (ret_min)
		*ret_min = v[0];
	if (ret_max)
		*ret_max = v[n - 1];
	return m;
}

/* reps values for each of `keys` metrics: v[key * reps + rep]. */
#define V(key, k) v[(size_t)(key) * out->reps + (k)]

/*
 * Postcopy at both sizes, and stop-and-copy of the same, alternating
 * (post 1g, post 4g, stop 1g, stop 4g, ...), reps times: the medians are
 * the result.
 */
static int part_a(struct results *out)
{
	uint64_t sizes[2] = { out->size_small, out->size_large };
	double *v = calloc(8 * (size_t)out->reps, sizeof(double));
	struct run_result rr;
	int r = v ? 0 : -ENOMEM;

	for (unsigned k = 0; k < out->reps && !r; k++) {
		for (int i = 0; i < 2 && !r; i++) {
			struct run_params post = { .size = sizes[i], .mode = FL_MIGRATE_POSTCOPY, .writers = WRITERS };

			r = run(&post, &rr, "(a) postcopy");
			V(i, k) = (double)rr.src.st.downtime_ns / 1e6;
			V(2 + i, k) = app_downtime_ms(&rr);
		}
		for (int i = 0; i < 2 && !r; i++) {
			struct run_params stop = { .size = sizes[i], .mode = FL_MIGRATE_PRECOPY, .max_rounds = 1,
						   .writers = WRITERS, .pause_first = true };

			r = run(&stop, &rr, "(a) stop-and-copy");
			V(4 + i, k) = (double)(rr.src.pause_ns + rr.src.st.downtime_ns) / 1e6;
			V(6 + i, k) = app_downtime_ms(&rr);
		}
	}
	for (int i = 0; i < 2 && !r; i++) {
		out->down[i] = stat_of(&V(i, 0), out->reps);
		out->app_down[i] = stat_of(&V(2 + i, 0), out->reps);
		out->stop[i] = stat_of(&V(4 + i, 0), out->reps);
		out->app_stop[i] = stat_of(&V(6 + i, 0), out->reps);
		out->down_ms[i] = out->down[i].med;
		out->stop_ms[i] = out->stop[i].med;
	}
	free(v);
	return r;
}

static int part_b(struct results *out)
{
	struct run_params p = { .size = out->size_small, .mode = FL_MIGRATE_POSTCOPY, .via_proxy = true,
				.delay_ns = 1000000, .measure_rtt = true, .dest_touch = true };
	double *v = calloc(8 * (size_t)out->reps, sizeof(double));
	uint64_t *req = calloc(2 * (size_t)out->reps, sizeof(uint64_t));
	struct run_result rr;
	int r = v && req ? 0 : -ENOMEM;

	for (unsigned k = 0; k < out->reps && !r; k++) {
		if ((r = run(&p, &rr, "(b) postcopy through the relay")))
			break;
		V(0, k) = (double)rr.dst.st.request_p50_ns / 1e3;
		V(1, k) = (double)rr.dst.st.request_p99_ns / 1e3;
		V(2, k) = (double)rr.dst.st.request_max_ns / 1e3;
		V(3, k) = rr.src.rtt_us;
		V(4, k) = rr.src.rtt_loaded_us >= 0 ? rr.src.rtt_loaded_us : NAN;
		V(5, k) = (double)rr.dst.touch_p50_ns / 1e3;
		V(6, k) = (double)rr.dst.touch_p99_ns / 1e3;
		V(7, k) = (double)rr.dst.touch_max_ns / 1e3;
		req[k] = rr.dst.st.requests;
		req[out->reps + k] = rr.dst.touch_samples;
	}
	if (!r) {
		struct stat3 *st[8] = { &out->p50, &out->p99, &out->max, &out->rtt, &out->rtt_loaded,
					&out->touch_p50, &out->touch_p99, &out->touch_max };

		for (int i = 0; i < 8; i++)
			*st[i] = stat_of(&V(i, 0), out->reps);
		/* A run whose loaded ping got no answer in time has none: the
		 * others' figures, not a NaN in the median. */
		size_t nl = 0;

		for (size_t k = 0; k < out->reps; k++)
			if (!isnan(V(4, k)))
				V(4, nl++) = V(4, k);
		out->rtt_loaded = stat_of(&V(4, 0), nl);
		out->p50_us = out->p50.med;
		out->p99_us = out->p99.med;
		out->max_us = out->max.med;
		out->rtt_us = out->rtt.med;
		out->requests = med_u64(req, out->reps, NULL, NULL);
		out->touch_samples = med_u64(req + out->reps, out->reps, NULL, NULL);
	}
	free(v);
	free(req);
	return r;
}

static int part_c(struct results *out, uint64_t link_bytes)
{
	struct run_params p = { .size = out->eff_size, .mode = FL_MIGRATE_POSTCOPY, .link_bytes = link_bytes };
	double *v = calloc(2 * (size_t)out->reps, sizeof(double));
	uint64_t *sent = calloc(out->reps, sizeof(uint64_t));
	struct run_result rr;
	int r = v && sent ? 0 : -ENOMEM;

	for (unsigned k = 0; k < out->reps && !r; k++) {
		if ((r = run(&p, &rr, "(c) 1 Gbit/s link")))
			break;
		/* The same pages every time: the payload does not vary. */
		out->payload = (rr.src.st.pages_sent - rr.src.st.zero_pages) * 4096;
		sent[k] = rr.src.st.bytes_sent;
		V(0, k) = (double)rr.src.st.total_ns / 1e9;
		V(1, k) = rr.src.link_mbps;
	}
	if (!r) {
		out->bytes_sent = med_u64(sent, out->reps, NULL, NULL);
		out->migrate = stat_of(&V(0, 0), out->reps);
		out->link = stat_of(&V(1, 0), out->reps);
		out->migrate_s = out->migrate.med;
		out->link_mbps = out->link.med;
	}
	free(v);
	free(sent);
	return r;
}

static int part_d(struct results *out)
{
	struct run_params pre = { .size = out->d_size, .mode = FL_MIGRATE_PRECOPY, .writers = WRITERS,
				  .nohuge = true };
	struct run_params post = pre;
	double *v = calloc(2 * (size_t)out->reps, sizeof(double));
	uint64_t *u = calloc(2 * (size_t)out->reps, sizeof(uint64_t));
	struct run_result rr;
	int r = v && u ? 0 : -ENOMEM;

	post.mode = FL_MIGRATE_POSTCOPY;
	for (unsigned k = 0; k < out->reps && !r; k++) {
		uint64_t rounds_pages = 0;

		if ((r = run(&pre, &rr, "(d) precopy")))
			break;
		u[k] = rr.src.st.rounds;
		for (unsigned i = 0; i < rr.src.st.rounds && i < FL_MIGRATE_MAX_ROUNDS; i++)
			rounds_pages += rr.src.st.pages_per_round[i];
		/* What the pause had to send: every page sent but those of the rounds. */
		u[out->reps + k] = rr.src.st.pages_sent - FL_MIN(rr.src.st.pages_sent, rounds_pages);
		V(0, k) = (double)rr.src.st.downtime_ns / 1e6;
		if ((r = run(&post, &rr, "(d) postcopy")))
			break;
		V(1, k) = (double)rr.src.st.downtime_ns / 1e6;
	}
	if (!r) {
		out->rounds = med_u64(u, out->reps, &out->rounds_min, &out->rounds_max);
		out->remainder_pages = med_u64(u + out->reps, out->reps, &out->remainder_min, &out->remainder_max);
		out->pre_down = stat_of(&V(0, 0), out->reps);
		out->post_down = stat_of(&V(1, 0), out->reps);
		out->pre_down_ms = out->pre_down.med;
		out->post_down_ms = out->post_down.med;
	}
	free(v);
	free(u);
	return r;
}

#undef V

static const char *verdict(bool met)
{
	return met ? "met" : "MISSED";
}

int bench_migrate_main(int argc, char **argv)
{
	bool json = false, quick = false, parts[4] = { true, true, true, true };
	struct results res = { .reps = 0 };
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "quick", no_argument, NULL, 'q' },
		{ "reps", required_argument, NULL, 'r' },
		{ "part", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	uint64_t link_bytes, n;
	int r = 0, c;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'q':
			quick = true;
			break;
		case 'r':
			if (fl__parse_uint(optarg, 1, 1000, &n))
				return cli_usage_error("bench migrate: --reps wants 1-1000");
			res.reps = (unsigned)n;
			break;
		case 'p':
			if (strlen(optarg) != 1 || optarg[0] < 'a' || optarg[0] > 'd')
				return cli_usage_error("bench migrate: --part wants a, b, c or d");
			for (int k = 0; k < 4; k++)
				parts[k] = k == optarg[0] - 'a';
			break;
		case 'h':
			fputs(usage, stdout);
			return EXIT_OK;
		case ':':
			return cli_usage_error("bench migrate: %s wants a value", argv[optind - 1]);
		default:
			return cli_usage_error("bench migrate: unknown option '%s' (see 'faultline bench migrate "
					       "--help')", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("bench migrate: unexpected argument '%s'", argv[optind]);
	if (!res.reps)
		res.reps = 3;
	res.size_small = quick ? 32ull << 20 : 1ull << 30;
	res.size_large = 4 * res.size_small;
	res.eff_size = quick ? 64ull << 20 : 4ull << 30;
	res.d_size = res.size_small;
	link_bytes = quick ? 16ull << 20 : 256ull << 20;
	r = link_up();
	if (!r && parts[0])
		r = link_limit(false);
	if (!r && parts[0])
		r = part_a(&res);
	if (!r && (parts[1] || parts[2] || parts[3]))
		r = link_limit(true);
	if (!r && parts[1])
		r = part_b(&res);
	if (!r && parts[2])
		r = part_c(&res, link_bytes);
	if (!r && parts[3])
		r = part_d(&res);
	link_down();
	if (r)
		return EXIT_ERR;

	double flat = res.down_ms[1] / res.down_ms[0];
	double ratio[2] = { res.down_ms[0] / res.stop_ms[0], res.down_ms[1] / res.stop_ms[1] };
	bool a_met = res.down_ms[0] <= GOAL_DOWNTIME_MS && res.down_ms[1] <= GOAL_DOWNTIME_MS &&
		     flat <= GOAL_FLAT && ratio[1] <= GOAL_RATIO;
	double goal_p50 = 3 * res.rtt_us + 100, goal_p99 = 5 * res.rtt_us;
	bool b_met = res.p50_us <= goal_p50 && res.p99_us <= goal_p99;
	double ideal_s = (double)res.payload / LINK_BPS;
	double eff = ideal_s / res.migrate_s;
	double eff_measured = (double)res.payload / (res.link_mbps * 1e6 / 8) / res.migrate_s;
	bool c_met = eff >= GOAL_EFFICIENCY;
	/* Converged: what the pause had to send fits in (a)'s downtime goal
	 * at the link's rate. */
	bool converged = (double)res.remainder_pages * 4096 <= LINK_BPS * GOAL_DOWNTIME_MS / 1e3;
	bool d_met = res.post_down_ms <= GOAL_DOWNTIME_MS;
	bool all_met = (!parts[0] || a_met) && (!parts[1] || b_met) && (!parts[2] || c_met) && (!parts[3] || d_met);

	if (json) {
		struct json j;

		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_bool(&j, "quick", quick);
		json_str(&j, "link", LINK_RATE " tbf burst " TBF_BURST " latency " TBF_LATENCY " on both veth ends");
		json_u64(&j, "reps", res.reps);	/* runs of every part */
		if (parts[0]) {
			json_u64(&j, "size_1g", res.size_small);
			json_u64(&j, "size_4g", res.size_large);
			json_stat(&j, "downtime_ms_1g", res.down[0], 3);
			json_stat(&j, "downtime_ms_4g", res.down[1], 3);
			json_stat(&j, "stopcopy_ms_1g", res.stop[0], 3);
			json_stat(&j, "stopcopy_ms_4g", res.stop[1], 3);
			json_stat(&j, "app_downtime_ms_1g", res.app_down[0], 3);
			json_stat(&j, "app_downtime_ms_4g", res.app_down[1], 3);
			json_stat(&j, "app_stopcopy_ms_1g", res.app_stop[0], 3);
			json_stat(&j, "app_stopcopy_ms_4g", res.app_stop[1], 3);
			json_num(&j, "downtime_flat", flat, 3);
			json_num(&j, "downtime_ratio", ratio[1], 5);
			json_num(&j, "downtime_ratio_1g", ratio[0], 5);
			json_num(&j, "downtime_ratio_4g", ratio[1], 5);
			json_num(&j, "goal_downtime_ms", GOAL_DOWNTIME_MS, 1);
			json_num(&j, "goal_flat", GOAL_FLAT, 2);
			json_num(&j, "goal_ratio", GOAL_RATIO, 2);
			json_bool(&j, "goal_a_met", a_met);
		}
		if (parts[1]) {
			json_u64(&j, "size_b", res.size_small);
			json_stat(&j, "request_p50_us", res.p50, 1);
			json_stat(&j, "request_p99_us", res.p99, 1);
			json_stat(&j, "request_max_us", res.max, 1);
			json_u64(&j, "requests", res.requests);
			json_stat(&j, "rtt_us", res.rtt, 1);
			json_stat(&j, "rtt_loaded_us", res.rtt_loaded, 1);
			json_stat(&j, "touch_p50_us", res.touch_p50, 3);
			json_stat(&j, "touch_p99_us", res.touch_p99, 3);
			json_stat(&j, "touch_max_us", res.touch_max, 1);
			json_u64(&j, "touches", res.touch_samples);
			json_num(&j, "goal_p50_us", goal_p50, 1);
			json_num(&j, "goal_p99_us", goal_p99, 1);
			json_bool(&j, "goal_b_met", b_met);
		}
		if (parts[2]) {
			json_u64(&j, "size_c", res.eff_size);
			json_u64(&j, "payload_bytes", res.payload);
			json_u64(&j, "bytes_sent", res.bytes_sent);
			json_stat(&j, "migrate_s", res.migrate, 3);
			json_num(&j, "link_nominal_mbps", LINK_BPS * 8 / 1e6, 0);
			json_stat(&j, "link_mbps", res.link, 1);
			json_num(&j, "efficiency", eff, 3);
			json_num(&j, "efficiency_measured", eff_measured, 3);
			json_num(&j, "goal_efficiency", GOAL_EFFICIENCY, 2);
			json_bool(&j, "goal_c_met", c_met);
		}
		if (parts[3]) {
			json_u64(&j, "size_d", res.d_size);
			json_u64(&j, "precopy_rounds", res.rounds);
			json_u64(&j, "precopy_rounds_min", res.rounds_min);
			json_u64(&j, "precopy_rounds_max", res.rounds_max);
			json_u64(&j, "precopy_remainder_pages", res.remainder_pages);
			json_u64(&j, "precopy_remainder_pages_min", res.remainder_min);
			json_u64(&j, "precopy_remainder_pages_max", res.remainder_max);
			json_u64(&j, "precopy_converged", converged);
			json_stat(&j, "precopy_downtime_ms", res.pre_down, 3);
			json_stat(&j, "postcopy_downtime_ms", res.post_down, 3);
			json_bool(&j, "goal_d_met", d_met);
		}
		json_bool(&j, "goal_met", all_met);
		json_end(&j);
		json_finish(&j);
		return EXIT_OK;
	}
	char s1[32], s2[32];

	printf("live migration between two network namespaces (veth)%s\n", quick ? ", --quick sizes" : "");
	if (parts[0]) {
		fmt_bytes(res.size_small, s1, sizeof(s1));
		fmt_bytes(res.size_large, s2, sizeof(s2));
		printf("(a) downtime, 2 writers until quiesce, veth unlimited (medians of %u):\n"
		       "    postcopy %s %.3f ms (%.3f-%.3f), %s %.3f ms (%.3f-%.3f) (goal <= %.0f ms): %s\n"
		       "    stop-and-copy %s %.1f ms, %s %.1f ms\n"
		       "    the application's (writers asked to stop -> first access at the destination done):\n"
		       "      postcopy %s %.3f ms (%.3f-%.3f), %s %.3f ms (%.3f-%.3f); stop-and-copy %s %.1f ms, %s %.1f ms\n"
		       "    downtime_flat %.2f (goal <= %.1f): %s\n"
		       "    downtime_ratio %.5f at %s, %.5f at %s (goal <= %.2f): %s\n",
		       res.reps, s1, res.down_ms[0], res.down[0].min, res.down[0].max, s2, res.down_ms[1],
		       res.down[1].min, res.down[1].max, GOAL_DOWNTIME_MS,
		       verdict(res.down_ms[0] <= GOAL_DOWNTIME_MS && res.down_ms[1] <= GOAL_DOWNTIME_MS), s1,
		       res.stop_ms[0], s2, res.stop_ms[1], s1, res.app_down[0].med, res.app_down[0].min,
		       res.app_down[0].max, s2, res.app_down[1].med, res.app_down[1].min, res.app_down[1].max, s1,
		       res.app_stop[0].med, s2, res.app_stop[1].med, flat, GOAL_FLAT, verdict(flat <= GOAL_FLAT), ratio[1], s2,
		       ratio[0], s1, GOAL_RATIO, verdict(ratio[1] <= GOAL_RATIO));
	}
	if (parts[1]) {
		fmt_bytes(res.size_small, s1, sizeof(s1));
		printf("(b) page requests during the push of %s, link %s + 1 ms each way (relay), medians of %u:\n"
		       "    rtt %.1f us; %llu requests: p50 %.1f us (goal <= %.1f): %s, p99 %.1f us (goal <= %.1f): "
		       "%s, max %.1f us\n", s1, LINK_RATE, res.reps, res.rtt_us, (unsigned long long)res.requests, res.p50_us,
		       goal_p50, verdict(res.p50_us <= goal_p50), res.p99_us, goal_p99,
		       verdict(res.p99_us <= goal_p99), res.max_us);
		printf("    the destination's own accesses (%llu, each timed): p50 %.3f us, p99 %.3f us, max %.1f us;\n"
		       "    rtt during the push %.1f us (idle %.1f us)\n", (unsigned long long)res.touch_samples,
		       res.touch_p50.med, res.touch_p99.med, res.touch_max.med, res.rtt_loaded.med, res.rtt_us);
	}
	if (parts[2]) {
		fmt_bytes(res.eff_size, s1, sizeof(s1));
		printf("(c) %s of incompressible pages over %s (medians of %u): %.2f s; link measured %.0f Mbit/s\n"
		       "    efficiency %.3f vs 1000 Mbit/s (goal >= %.2f): %s; %.3f vs the measured link\n", s1,
		       LINK_RATE, res.reps, res.migrate_s, res.link_mbps, eff, GOAL_EFFICIENCY, verdict(c_met), eff_measured);
	}
	if (parts[3]) {
		fmt_bytes(res.d_size, s1, sizeof(s1));
		printf("(d) 2 writers over %s, faster than the link (medians of %u): precopy %llu rounds, %llu pages left at the "
		       "pause (converged: %s), downtime %.1f ms;\n"
		       "    postcopy downtime %.3f ms (goal <= %.0f ms): %s\n", s1, res.reps, (unsigned long long)res.rounds,
		       (unsigned long long)res.remainder_pages, converged ? "yes" : "no", res.pre_down_ms,
		       res.post_down_ms, GOAL_DOWNTIME_MS, verdict(d_met));
	}
	printf("goals: %s\n", all_met ? "all met" : "some MISSED");
	return EXIT_OK;
}
