// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench daemon: what serving clients from faultlined(8) costs and
 * saves, against the same work done in the client's own process.
 *
 * The benchmark starts its own faultlined (found as $FAULTLINED, else next
 * to this program, else in the build tree's daemon/ beside cli/, else on
 * $PATH) in a scratch directory under /tmp, with --socket DIR/sock and
 * --images DIR/images, writes its image there with the image writer (every
 * 8-byte word of it different: pattern_word()) and stops the daemon with
 * SIGTERM at the end.
 *
 * (a) per-fault latency: a client process maps 64 MiB of the image with
 *     FL_SOURCE_IMAGE, attaches, and first-touches every page in a random
 *     order, timing each touch (clock_gettime() around the read of the
 *     page's first word) in the faulting thread. The daemon runs with
 *     --max-inflight 1 (no prefetch: every touch is a fault) and --threads 1.
 *     The baseline process does the same over an in-process engine (one
 *     handler thread, no filler) and a region with FL_REGION_NO_PREFETCH
 *     over fl_image_store_new() of the same image. Blocks alternate daemon,
 *     in-process, ... for --reps rounds after one discarded warm-up round.
 *     Keys: daemon_p50_us, inproc_p50_us, ratio (median over pairs of
 *     daemon / in-process p50, goal <= 1.2), the p99s, ratio_p99, min/max.
 * (b) sharing: 16 client processes, all alive at once, each map the whole
 *     256 MiB image region with FL_SOURCE_TEMPLATE (the daemon's shared page
 *     cache, copy-on-write), attach and read every page (checking words of
 *     it against the pattern); the Pss of their mappings (/proc/PID/smaps),
 *     summed with the daemon's share of the template (its alias mapping), is
 *     clients_pss_mib, and pss_ratio = clients_pss_mib / image_mib
 *     (goal <= 1.2). The baseline in the same run: 16 clients of
 *     FL_SOURCE_IMAGE (private copies), copy_pss_mib. This daemon runs with
 *     its defaults.
 */
#include "bench.h"

/* util.h's JSON writer has a json_null() of its own, and so has jansson:
 * this file writes with the former (nulls as json_str(..., NULL)) and
 * parses with the latter. */
#define json_null cli_json_null_writer
#include "util.h"
#undef json_null
#include <jansson.h>

#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define MIB (1024.0 * 1024.0)
#define LAT_SIZE (64ull << 20)		/* (a): the mapped part of the image */
#define SHARE_SIZE (256ull << 20)	/* (b): the image */
#define SHARE_CLIENTS 16
#define DEFAULT_REPS 5
#define MAX_REPS 64
#define GOAL_RATIO 1.2
#define GOAL_PSS 1.2
#define IMAGE_NAME DENV_IMAGE_NAME

static const char daemon_usage[] =
	"Usage: faultline bench daemon [--json] [--reps N] [--part a|b]\n"
	"\n"
	"Clients served by faultlined against the same work in their own process.\n"
	"Starts its own faultlined ($FAULTLINED, else the one next to this program,\n"
	"else ../daemon/faultlined of the build tree, else $PATH) in a scratch\n"
	"directory under /tmp, and stops it at the end.\n"
	"\n"
	"(a) per-fault latency: a client maps 64 MiB of an image (FL_SOURCE_IMAGE)\n"
	"    and first-touches every page in a random order, one page per fault\n"
	"    (faultlined --max-inflight 1 --threads 1), timing each touch; the\n"
	"    baseline is an in-process engine with a FL_REGION_NO_PREFETCH region\n"
	"    over the same image. Keys daemon_p50_us, inproc_p50_us, ratio (median\n"
	"    over pairs of daemon / in-process p50, goal <= 1.2), p99s, ratio_p99.\n"
	"(b) sharing: 16 client processes, all alive, each read every page of one\n"
	"    256 MiB image through FL_SOURCE_TEMPLATE (the daemon's shared page\n"
	"    cache); the Pss of their mappings, summed with the daemon's share of\n"
	"    the template: clients_pss_mib, and\n"
	"    pss_ratio = clients_pss_mib / image_mib (goal <= 1.2). Baseline: 16\n"
	"    FL_SOURCE_IMAGE clients (private copies), copy_pss_mib.\n"
	"\n"
	"Runs alternate (A B A B ...); medians and min-max over --reps rounds\n"
	"(default 5).\n"
	"\n"
	"Options:\n"
	"  --part P     a, b or both (default both)\n"
	"  --reps N     rounds (1-64, default 5)\n"
	"  --json       print one JSON object\n"
	"  -h, --help   show this help\n";

/* ---- the scratch directory and the daemon ---------------------------------------- */

void denv_remove(struct denv *e)
{
	unlink(e->image);
	unlink(e->sock);
	unlink(e->log);
	rmdir(e->images);
	rmdir(e->dir);
	cleanup_drop(e->dir_slot);
	e->dir_slot = -1;
}

/* The daemon is gone (reaped): no longer one to kill when interrupted. */
static void daemon_gone(struct denv *e)
{
	e->pid = 0;
	cleanup_drop(e->pid_slot);
	e->pid_slot = -1;
}

/* In forked children: the parent cleans up, not them. */
static void child_signals(void)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
}

/* $FAULTLINED; faultlined next to this program; the build tree's
 * ../daemon/faultlined; $PATH. */
static int find_faultlined_path(char *out, size_t len)
{
	const char *env = getenv("FAULTLINED");
	char exe[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		if (!strchr(env, '/'))
			return bench_find_in_path(env, out, len) ? 0 : -ENOENT;
		if ((size_t)snprintf(out, len, "%s", env) >= len)
			return -ENAMETOOLONG;
		return bench_executable_at(out) ? 0 : -ENOENT;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;
		exe[n] = 0;
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			if ((size_t)snprintf(out, len, "%s/faultlined", exe) < len && bench_executable_at(out))
				return 0;
			if ((size_t)snprintf(out, len, "%s/../daemon/faultlined", exe) < len && bench_executable_at(out))
				return 0;
		}
	}
	return bench_find_in_path("faultlined", out, len) ? 0 : -ENOENT;
}

static int find_faultlined(char *out, size_t len)
{
	char *real;
	int r = find_faultlined_path(out, len);

	/* Shown in the report: without the build tree's "cli/../". */
	if (!r && (real = realpath(out, NULL))) {
		if (strlen(real) < len)
			memcpy(out, real, strlen(real) + 1);
		free(real);
	}
	return r;
}

static bool socket_ready(const char *path)
{
	int s;

	if (fl__unix_connect(path, SOCK_SEQPACKET, &s))
		return false;
	close(s);
	return true;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* The last line of the daemon's log, for an error message. */
static void log_tail(const struct denv *e, char *out, size_t len)
{
	char buf[4096];
	ssize_t n;
	int fd = open(e->log, O_RDONLY | O_CLOEXEC);
	char *end, *start;

	*out = 0;
	if (fd < 0)
		return;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	{
		struct stat st;
		if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof(buf) - 1)
			n = pread(fd, buf, sizeof(buf) - 1, st.st_size - (off_t)sizeof(buf) + 1);
	}
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	end = buf + n;
	while (end > buf && end[-1] == '\n')
		*--end = 0;
	start = strrchr(buf, '\n');
	start = start ? start + 1 : buf;
	n = (ssize_t)strlen(start);
	if ((size_t)n >= len)
		n = (ssize_t)len - 1;
	memcpy(out, start, (size_t)n);
	out[n] = 0;
}

void denv_stop(struct denv *e)
{
	int st;

	if (e->pid <= 0)
		return;
	kill(e->pid, SIGTERM);
	for (unsigned i = 0; i < cli_scaled_ms(5000) / 10; i++) {
		if (waitpid(e->pid, &st, WNOHANG) != 0)
			goto done;
		sleep_ms(10);
	}
	kill(e->pid, SIGKILL);
	waitpid(e->pid, &st, 0);
done:
	daemon_gone(e);
}

/* Start faultlined with extra arguments (NULL-terminated) and wait until it
 * accepts. Its log goes to DIR/faultlined.log. */
int denv_start(struct denv *e, const char *const *extra)
{
	const char *argv[16] = { e->faultlined, "--socket", e->sock, "--images", e->images };
	size_t n = 5;
	pid_t parent = getpid();
	uint64_t end = fl__now_ns() + cli_scaled_ms(10000) * 1000000ull;
	char tail[256];
	int st;

	for (; extra && *extra && n < 15; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	fflush(NULL);
	e->pid = fork();
	if (e->pid < 0) {
		e->pid = 0;
		return cli_fail("bench daemon: fork", -errno);
	}
	if (e->pid == 0) {
		int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		child_signals();
		/* Never outlive the benchmark. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		if (in >= 0)
			dup2(in, STDIN_FILENO);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	e->pid_slot = cleanup_add_pid(e->pid);
	while (!socket_ready(e->sock)) {
		if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
			daemon_gone(e);
			log_tail(e, tail, sizeof(tail));
			cli_error("bench daemon: %s exited before accepting (%s)", e->faultlined,
				  *tail ? tail : "no log");
			return EXIT_ERR;
		}
		if (fl__now_ns() > end) {
			denv_stop(e);
			cli_error("bench daemon: %s did not accept on %s in %u s", e->faultlined, e->sock,
				  cli_scaled_ms(10000) / 1000);
			return EXIT_ERR;
		}
		sleep_ms(5);
	}
	return 0;
}

/* One region of `size` bytes of pattern_word(), without zero pages. */
static int write_image(const char *path, uint64_t size)
{
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_NO_SYNC,
					   .creator = "faultline bench daemon" };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = size, .prot = PROT_READ | PROT_WRITE, .mem = FL_MEM_ANON,
				       .name = "bench" };
	const size_t chunk = 1u << 20;
	struct fl_image_writer *w = NULL;
	uint64_t *buf = malloc(chunk);
	struct progress prog;
	int r;

	if (!buf)
		return -ENOMEM;
	r = fl_image_writer_new(path, &wo, &w);
	if (!r) {
		r = fl_image_writer_add_region(w, &reg);
		r = r < 0 ? r : 0;
	}
	progress_begin(&prog, "writing the image", size, true);
	for (uint64_t off = 0; off < size && !r; off += chunk) {
		for (size_t i = 0; i < chunk / 8; i++)
			buf[i] = pattern_word(off + i * 8);
		r = fl_image_writer_put(w, 0, off / PAGE, chunk / PAGE, buf);
		progress_update(&prog, off + chunk, NULL);
	}
	progress_end(&prog, size, NULL);
	free(buf);
	if (r) {
		fl_image_writer_abort(w);
		return r;
	}
	return fl_image_writer_finish(w, NULL);
}

/* ---- (a) per-fault latency --------------------------------------------------------- */

/* What a block's child process reports, in shared memory. */
struct block_report {
	int err;			/* -errno, or 0 */
	char what[160];			/* where it failed */
	uint64_t bad_off, bad_val;	/* the first wrong word (bad_val unused when !mismatches) */
	uint64_t mismatches;
	uint64_t faults, resolved;	/* as the server counted them */
	uint64_t prefetched;		/* pages resolved ahead of a faulting page */
	double service_p50_us;		/* the server's own p50 (message read to resolve) */
};

struct lat_block {
	double p50_us, p99_us, service_p50_us;
};

/* First-touch the pages in perm's order, timing each; counts wrong words. */
static void touch_pages(const uint8_t *base, const uint32_t *perm, size_t n, uint64_t *samples,
			struct block_report *rep)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t off = (uint64_t)perm[i] * PAGE, t0, t1, v;

		t0 = fl__now_ns();
		v = *(const volatile uint64_t *)(base + off);
		t1 = fl__now_ns();
		samples[i] = t1 - t0;
		if (v != pattern_word(off) && !rep->mismatches++) {
			rep->bad_off = off;
			rep->bad_val = v;
		}
	}
}

/* The serving object of the client with this pid in a stats document. */
static int serving_of(const char *doc, pid_t pid, struct block_report *rep)
{
	json_t *root = json_loads(doc, 0, NULL), *c;
	int r = -ENOENT;
	size_t i;

	json_array_foreach(json_object_get(root, "clients"), i, c) {
		json_t *sv = json_object_get(c, "serving");
		if (json_integer_value(json_object_get(c, "pid")) != pid || !json_is_object(sv))
			continue;
		rep->faults = (uint64_t)json_integer_value(json_object_get(sv, "faults"));
		rep->resolved = (uint64_t)json_integer_value(json_object_get(sv, "pages_resolved"));
		rep->prefetched = rep->resolved > rep->faults ? rep->resolved - rep->faults : 0;
		rep->service_p50_us = json_number_value(json_object_get(sv, "lat_p50_us"));
		r = 0;
		break;
	}
	json_decref(root);
	return r;
}

static int daemon_block(const struct denv *e, const uint32_t *perm, size_t npages, uint64_t *samples,
			struct block_report *rep)
{
	/* The library's 10 s answer timeout and 5 s grace, scaled on a slow
	 * machine (FAULTLINE_TIMEOUT_SCALE). */
	struct fl_client_opts co = { .sz = sizeof(co), .socket = e->sock, .timeout_ms = cli_scaled_ms(10000),
				     .grace_ms = cli_scaled_ms(5000) };
	struct fl_client_map_opts mo = { .sz = sizeof(mo), .source = FL_SOURCE_IMAGE, .image = IMAGE_NAME,
					 .length = npages * PAGE };
	struct fl_client *c = NULL;
	char *doc = NULL;
	void *addr = NULL;
	int r;

	snprintf(rep->what, sizeof(rep->what), "fl_client_connect");
	r = fl_client_connect(&co, &c);
	if (!r) {
		snprintf(rep->what, sizeof(rep->what), "fl_client_map");
		r = fl_client_map(c, &mo, &addr);
	}
	if (!r) {
		snprintf(rep->what, sizeof(rep->what), "fl_client_attach");
		r = fl_client_attach(c);
	}
	if (!r) {
		touch_pages(addr, perm, npages, samples, rep);
		snprintf(rep->what, sizeof(rep->what), "fl_manager_stats");
		r = fl_manager_stats(e->sock, 0, &doc);
	}
	if (!r) {
		snprintf(rep->what, sizeof(rep->what), "this client in the daemon's stats");
		r = serving_of(doc, getpid(), rep);
		free(doc);
	}
	if (!r) {
		snprintf(rep->what, sizeof(rep->what), "fl_client_detach");
		r = fl_client_detach(c);
	}
	fl_client_free(c);
	return r;
}

static int inproc_block(const struct denv *e, const uint32_t *perm, size_t npages, uint64_t *samples,
			struct block_report *rep)
{
	struct fl_engine_opts eo = { .sz = sizeof(eo), .flags = FL_ENGINE_NO_FILLER, .threads = 1 };
	struct fl_region_opts ro = { .sz = sizeof(ro), .length = npages * PAGE, .mem = FL_MEM_ANON,
				     .mode = FL_MODE_MISSING, .flags = FL_REGION_NO_PREFETCH, .memfd = -1,
				     .name = "bench-daemon" };
	struct fl_region_stats st = { .sz = sizeof(st) };
	struct fl_engine *engine = NULL;
	struct fl_region *region = NULL;
	struct fl_image *img = NULL;
	struct fl_store *store = NULL;
	int r;

	snprintf(rep->what, sizeof(rep->what), "fl_image_open");
	r = fl_image_open(e->image, 0, &img);
	if (!r) {
		snprintf(rep->what, sizeof(rep->what), "fl_image_store_new");
		r = fl_image_store_new(img, 0, &store);
	}
	if (!r) {
		snprintf(rep->what, sizeof(rep->what), "fl_engine_new");
		r = fl_engine_new(&eo, &engine);
	}
	if (!r) {
		snprintf(rep->what, sizeof(rep->what), "fl_engine_start");
		r = fl_engine_start(engine);
	}
	if (!r) {
		ro.store = store;
		snprintf(rep->what, sizeof(rep->what), "fl_region_new");
		r = fl_region_new(engine, &ro, &region);
	}
	if (!r) {
		touch_pages(fl_region_addr(region), perm, npages, samples, rep);
		fl_region_stats(region, &st);
		rep->faults = st.faults_read + st.faults_write;
		rep->resolved = fl_region_resolved_pages(region);
		rep->prefetched = st.pages_prefetch;
		rep->service_p50_us = (double)st.lat_p50_ns / 1e3;
	}
	fl_region_free(region);
	fl_engine_free(engine);
	fl_store_unref(store);
	fl_image_close(img);
	return r;
}

/* One block in a fresh process (the client): samples and the report come
 * back through shared memory. */
static int run_block(const struct denv *e, bool through_daemon, const uint32_t *perm, size_t npages,
		     uint64_t *samples, struct block_report *rep, struct lat_block *out)
{
	const char *who = through_daemon ? "faultlined client" : "in-process engine";
	pid_t parent = getpid(), pid;
	int st;

	memset(rep, 0, sizeof(*rep));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return cli_fail("bench daemon: fork", -errno);
	if (pid == 0) {
		child_signals();
		cleanup_child(parent);
		rep->err = through_daemon ? daemon_block(e, perm, npages, samples, rep)
					  : inproc_block(e, perm, npages, samples, rep);
		_exit(rep->err ? 1 : 0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		if (rep->err)
			cli_error("bench daemon: %s: %s: %s", who, rep->what, strerror(-rep->err));
		else if (WIFSIGNALED(st))
			cli_error("bench daemon: %s: the client died of signal %d (%s)", who, WTERMSIG(st),
				  strsignal(WTERMSIG(st)));
		else
			cli_error("bench daemon: %s: the client failed", who);
		return EXIT_ERR;
	}
	if (rep->mismatches) {
		cli_error("bench daemon: %s: %llu pages with wrong bytes (first at offset %llu: 0x%016llx, want 0x%016llx)",
			  who, (unsigned long long)rep->mismatches, (unsigned long long)rep->bad_off,
			  (unsigned long long)rep->bad_val, (unsigned long long)pattern_word(rep->bad_off));
		return EXIT_ERR;
	}
	/* Every touch a fault, nothing resolved ahead of the faulting page
	 * (the resolved count may not include the last page yet). */
	if (rep->faults != npages || rep->prefetched) {
		cli_error("bench daemon: %s: expected %zu faults resolving one page each, saw %llu faults, %llu pages resolved",
			  who, npages, (unsigned long long)rep->faults, (unsigned long long)rep->resolved);
		return EXIT_ERR;
	}
	out->p50_us = (double)quantile_u64(samples, npages, 0.50) / 1e3;
	out->p99_us = (double)quantile_u64(samples, npages, 0.99) / 1e3;
	out->service_p50_us = rep->service_p50_us;
	return 0;
}

struct lat_result {
	size_t pages;
	unsigned n;
	double d50[MAX_REPS], d99[MAX_REPS], i50[MAX_REPS], i99[MAX_REPS], r50[MAX_REPS], r99[MAX_REPS];
	double dsvc[MAX_REPS], isvc[MAX_REPS];
};

static int part_latency(struct denv *e, unsigned reps, struct lat_result *res)
{
	static const char *const args[] = { "--max-inflight", "1", "--threads", "1", NULL };
	size_t npages = LAT_SIZE / PAGE;
	uint64_t *samples = MAP_FAILED, seed = 0xdae3;
	struct block_report *rep = MAP_FAILED;
	uint32_t *perm = malloc(npages * sizeof(*perm));
	struct progress prog;
	int status = EXIT_ERR;

	memset(res, 0, sizeof(*res));
	res->pages = npages;
	samples = mmap(NULL, npages * sizeof(*samples), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	rep = mmap(NULL, sizeof(*rep), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!perm || samples == MAP_FAILED || rep == MAP_FAILED) {
		cli_fail("bench daemon", -ENOMEM);
		goto out;
	}
	/* Present before the children write them: no fault of their own
	 * in the timed loop. */
	memset(samples, 0, npages * sizeof(*samples));
	for (size_t i = 0; i < npages; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = npages - 1; i > 0; i--) {
		size_t j = (size_t)(splitmix64(&seed) % (i + 1));
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	if (denv_start(e, args))
		goto out;
	/* Round 0 warms up (the daemon's image and store, page tables,
	 * caches) and is not counted. */
	progress_begin(&prog, "bench daemon (a)", reps + 1, false);
	for (unsigned round = 0; round <= reps; round++) {
		struct lat_block a, b;
		if (run_block(e, true, perm, npages, samples, rep, &a) ||
		    run_block(e, false, perm, npages, samples, rep, &b))
			goto out;
		progress_update(&prog, round + 1, NULL);
		if (round == 0)
			continue;
		res->d50[res->n] = a.p50_us;
		res->d99[res->n] = a.p99_us;
		res->dsvc[res->n] = a.service_p50_us;
		res->i50[res->n] = b.p50_us;
		res->i99[res->n] = b.p99_us;
		res->isvc[res->n] = b.service_p50_us;
		res->r50[res->n] = a.p50_us / b.p50_us;
		res->r99[res->n] = a.p99_us / b.p99_us;
		res->n++;
	}
	progress_end(&prog, reps + 1, NULL);
	status = 0;
out:
	denv_stop(e);
	if (samples != MAP_FAILED)
		munmap(samples, npages * sizeof(*samples));
	if (rep != MAP_FAILED)
		munmap(rep, sizeof(*rep));
	free(perm);
	return status;
}

/* ---- (b) sharing ------------------------------------------------------------------------ */

struct worker {
	pid_t pid;
	int to[2], from[2];
};

/* What a worker reports once it has read every page. */
struct share_report {
	int err;			/* -errno, or 0 */
	int step;			/* which call failed */
	uint64_t addr, len;
	uint64_t mismatches, bad_off, bad_val;
};

static const char *const share_steps[] = { "fl_client_connect", "fl_client_map", "fl_client_attach",
					   "reading the pages" };

static bool rd1(int fd, void *b, size_t n)
{
	return read(fd, b, n) == (ssize_t)n;
}

static bool wr1(int fd, const void *b, size_t n)
{
	return write(fd, b, n) == (ssize_t)n;
}

/* A worker: wait for the start, map and attach, read every page (checking
 * its first word, and one more word of every 16th page), report, wait to
 * be told to exit (EOF). */
static int share_worker(const struct denv *e, bool tpl, int in, int out, _Atomic unsigned *attached)
{
	/* The library's 10 s answer timeout and 5 s grace, scaled on a slow
	 * machine (FAULTLINE_TIMEOUT_SCALE). */
	struct fl_client_opts co = { .sz = sizeof(co), .socket = e->sock, .timeout_ms = cli_scaled_ms(10000),
				     .grace_ms = cli_scaled_ms(5000) };
	struct fl_client_map_opts mo = { .sz = sizeof(mo), .source = tpl ? FL_SOURCE_TEMPLATE : FL_SOURCE_IMAGE,
					 .image = IMAGE_NAME, .length = SHARE_SIZE };
	struct share_report rep = { 0 };
	struct fl_client *c = NULL;
	void *addr = NULL;
	char ch;

	if (!rd1(in, &ch, 1))
		return 1;
	rep.err = fl_client_connect(&co, &c);
	if (!rep.err) {
		rep.step = 1;
		rep.err = fl_client_map(c, &mo, &addr);
	}
	if (!rep.err) {
		rep.step = 2;
		rep.err = fl_client_attach(c);
	}
	if (!rep.err) {
		const uint8_t *m = addr;
		atomic_fetch_add(attached, 1);
		rep.step = 3;
		for (uint64_t off = 0; off < SHARE_SIZE; off += PAGE) {
			uint64_t page = off / PAGE, o[2] = { off, off + (page * 2654435761u % (PAGE / 8)) * 8 };
			for (unsigned k = 0; k < (page % 16 == 5 ? 2u : 1u); k++) {
				uint64_t v = *(const volatile uint64_t *)(m + o[k]);
				if (v != pattern_word(o[k]) && !rep.mismatches++) {
					rep.bad_off = o[k];
					rep.bad_val = v;
				}
			}
		}
		rep.addr = (uintptr_t)addr;
		rep.len = SHARE_SIZE;
	}
	wr1(out, &rep, sizeof(rep));
	rd1(in, &ch, 1);	/* EOF: the parent has measured */
	if (!rep.err)
		fl_client_detach(c);
	fl_client_free(c);
	return rep.err || rep.mismatches ? 1 : 0;
}


/* N clients at once, each reading the whole image; the sum of their
 * mappings' Pss (MiB) with all of them alive. */

/* kill_ms > 0: kill -9 the daemon that long after the clients start, and
 * start a new one: the clients' guards resume their sessions with it. */
static int share_round(struct denv *e, bool tpl, unsigned n, unsigned kill_ms, double *ret_mib)
{
	const char *who = tpl ? "FL_SOURCE_TEMPLATE" : "FL_SOURCE_IMAGE";
	struct share_report reps[SHARE_CLIENTS];
	struct worker w[SHARE_CLIENTS];
	unsigned started = 0;
	double total = 0;
	pid_t parent = getpid();
	int ret = 0, st;
	char c = 1;
	_Atomic unsigned *attached = mmap(NULL, sizeof(*attached), PROT_READ | PROT_WRITE,
					  MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (attached == MAP_FAILED)
		return cli_fail("bench daemon: mmap", -errno);
	*attached = 0;

	fflush(NULL);
	for (; started < n; started++) {
		struct worker *k = &w[started];
		if (pipe2(k->to, O_CLOEXEC) || pipe2(k->from, O_CLOEXEC)) {
			ret = cli_fail("bench daemon: pipe", -errno);
			goto out;
		}
		k->pid = fork();
		if (k->pid < 0) {
			ret = cli_fail("bench daemon: fork", -errno);
			close(k->to[0]);
			close(k->to[1]);
			close(k->from[0]);
			close(k->from[1]);
			goto out;
		}
		if (k->pid == 0) {
			child_signals();
			cleanup_child(parent);
			/* Not the other workers' pipes: their EOF is their exit. */
			for (unsigned i = 0; i < started; i++) {
				close(w[i].to[1]);
				close(w[i].from[0]);
			}
			close(k->to[1]);
			close(k->from[0]);
			_exit(share_worker(e, tpl, k->to[0], k->from[1], attached));
		}
		close(k->to[0]);
		close(k->from[1]);
	}
	/* All at once, as a pool of clients starting together would. */
	for (unsigned i = 0; i < n; i++)
		wr1(w[i].to[1], &c, 1);
	if (kill_ms && e->pid > 0) {
		/* Once every client is attached: then they all depend on it. */
		for (unsigned i = 0; i < cli_scaled_ms(10000) / 10 && atomic_load(attached) < n; i++)
			sleep_ms(10);
		sleep_ms(kill_ms);
		kill(e->pid, SIGKILL);
		waitpid(e->pid, &st, 0);
		daemon_gone(e);
		sleep_ms(100);
		if (denv_start(e, NULL)) {
			ret = EXIT_ERR;
			goto out;
		}
	}
	for (unsigned i = 0; i < n && !ret; i++) {
		struct share_report *rep = &reps[i];
		if (!rd1(w[i].from[0], rep, sizeof(*rep))) {
			cli_error("bench daemon: %s client %u (pid %d) died before reading every page", who, i,
				  (int)w[i].pid);
			ret = EXIT_ERR;
		} else if (rep->err) {
			cli_error("bench daemon: %s client %u: %s: %s", who, i, share_steps[rep->step],
				  strerror(-rep->err));
			ret = EXIT_ERR;
		} else if (rep->mismatches) {
			cli_error("bench daemon: %s client %u: %llu wrong words (first at offset %llu: 0x%016llx, want 0x%016llx)",
				  who, i, (unsigned long long)rep->mismatches, (unsigned long long)rep->bad_off,
				  (unsigned long long)rep->bad_val, (unsigned long long)pattern_word(rep->bad_off));
			ret = EXIT_ERR;
		}
	}
	/* Only once every client has read every page: a page's Pss depends on
	 * how many processes map it. */
	for (unsigned i = 0; i < n && !ret; i++)
		total += (double)mappings_pss(w[i].pid, reps[i].addr, reps[i].addr + reps[i].len, NULL) / MIB;
	/* The daemon maps a template's pages too (the alias it fills them
	 * through): its share is part of what the clients cost. */
	if (tpl && !ret)
		total += (double)mappings_pss(e->pid, 0, 0, "/memfd:") / MIB;
out:
	for (unsigned i = 0; i < started; i++) {
		close(w[i].to[1]);	/* EOF: exit */
		close(w[i].from[0]);
	}
	for (unsigned i = 0; i < started; i++)
		if (waitpid(w[i].pid, &st, 0) == w[i].pid && !ret && WIFSIGNALED(st)) {
			cli_error("bench daemon: %s client %u died of signal %d (%s)", who, i, WTERMSIG(st),
				  strsignal(WTERMSIG(st)));
			ret = EXIT_ERR;
		}
	munmap((void *)attached, sizeof(*attached));
	*ret_mib = total;
	return ret;
}

struct share_result {
	unsigned n;
	double tpl[MAX_REPS], copy[MAX_REPS];
};

static int part_share(struct denv *e, unsigned reps, struct share_result *res)
{
	struct progress prog;
	int status = EXIT_ERR;

	memset(res, 0, sizeof(*res));
	if (denv_start(e, NULL))
		return EXIT_ERR;
	progress_begin(&prog, "bench daemon (b)", reps, false);
	for (unsigned i = 0; i < reps; i++) {
		if (share_round(e, true, SHARE_CLIENTS, 0, &res->tpl[i]) ||
		    share_round(e, false, SHARE_CLIENTS, 0, &res->copy[i]))
			goto out;
		res->n++;
		progress_update(&prog, i + 1, NULL);
	}
	progress_end(&prog, reps, NULL);
	status = 0;
out:
	denv_stop(e);
	return status;
}

/* ---- output ------------------------------------------------------------------------------- */

static void print_json(const struct denv *e, unsigned reps, const struct lat_result *a,
		       const struct share_result *b)
{
	struct json j;

	json_init(&j, stdout);
	json_begin(&j, NULL);
	json_str(&j, "benchmark", "daemon");
	json_str(&j, "version", fl_version());
	json_str(&j, "faultlined", e->faultlined);
	json_u64(&j, "reps", reps);
	if (a) {
		struct stat3 r = stat_of(a->r50, a->n);
		json_u64(&j, "faults_per_block", a->pages);
		json_num(&j, "mapped_mib", (double)LAT_SIZE / MIB, 0);
		json_stat(&j, "daemon_p50_us", stat_of(a->d50, a->n), 2);
		json_stat(&j, "inproc_p50_us", stat_of(a->i50, a->n), 2);
		json_stat(&j, "ratio", r, 3);
		json_stat(&j, "daemon_p99_us", stat_of(a->d99, a->n), 2);
		json_stat(&j, "inproc_p99_us", stat_of(a->i99, a->n), 2);
		json_stat(&j, "ratio_p99", stat_of(a->r99, a->n), 3);
		json_num(&j, "daemon_service_p50_us", stat_of(a->dsvc, a->n).med, 2);
		json_num(&j, "inproc_service_p50_us", stat_of(a->isvc, a->n).med, 2);
		json_str(&j, "ratio_method", "median over A/B pairs of daemon/inproc p50");
		json_num(&j, "goal_ratio", GOAL_RATIO, 2);
		json_bool(&j, "goal_ratio_met", r.med <= GOAL_RATIO);
	} else {
		json_str(&j, "daemon_p50_us", NULL);
		json_str(&j, "inproc_p50_us", NULL);
		json_str(&j, "ratio", NULL);
		json_str(&j, "goal_ratio_met", NULL);
	}
	if (b) {
		struct stat3 t = stat_of(b->tpl, b->n), c = stat_of(b->copy, b->n);
		double image_mib = (double)SHARE_SIZE / MIB;
		json_u64(&j, "clients", SHARE_CLIENTS);
		json_num(&j, "image_mib", image_mib, 0);
		json_stat(&j, "clients_pss_mib", t, 1);
		json_stat(&j, "copy_pss_mib", c, 1);
		json_num(&j, "pss_ratio", t.med / image_mib, 3);
		json_num(&j, "copy_ratio", c.med / image_mib, 3);
		json_num(&j, "goal_pss_ratio", GOAL_PSS, 2);
		json_bool(&j, "goal_pss_met", t.med / image_mib <= GOAL_PSS);
	} else {
		json_str(&j, "clients_pss_mib", NULL);
		json_str(&j, "copy_pss_mib", NULL);
		json_str(&j, "image_mib", NULL);
		json_str(&j, "pss_ratio", NULL);
		json_str(&j, "goal_pss_met", NULL);
	}
	json_end(&j);
	json_finish(&j);
}

static void print_text(const struct denv *e, unsigned reps, const struct lat_result *a,
		       const struct share_result *b)
{
	printf("faultline bench daemon: %s, %u rounds, medians (min-max)\n", e->faultlined, reps);
	if (a) {
		struct stat3 d50 = stat_of(a->d50, a->n), d99 = stat_of(a->d99, a->n), i50 = stat_of(a->i50, a->n),
			     i99 = stat_of(a->i99, a->n), r50 = stat_of(a->r50, a->n), r99 = stat_of(a->r99, a->n);
		char s[6][40];
		snprintf(s[0], sizeof(s[0]), "%.1f (%.1f-%.1f)", d50.med, d50.min, d50.max);
		snprintf(s[1], sizeof(s[1]), "%.1f (%.1f-%.1f)", d99.med, d99.min, d99.max);
		snprintf(s[2], sizeof(s[2]), "%.1f (%.1f-%.1f)", i50.med, i50.min, i50.max);
		snprintf(s[3], sizeof(s[3]), "%.1f (%.1f-%.1f)", i99.med, i99.min, i99.max);
		snprintf(s[4], sizeof(s[4]), "%.3f (%.2f-%.2f)", r50.med, r50.min, r50.max);
		snprintf(s[5], sizeof(s[5]), "%.3f (%.2f-%.2f)", r99.med, r99.min, r99.max);
		printf("\n(a) per-fault latency: %zu first touches in random order of %.0f MiB, one page per fault\n",
		       a->pages, (double)LAT_SIZE / MIB);
		printf("    %-12s %-24s %-24s %s\n", "", "p50 us", "p99 us", "service p50 us");
		printf("    %-12s %-24s %-24s %.1f\n", "faultlined", s[0], s[1], stat_of(a->dsvc, a->n).med);
		printf("    %-12s %-24s %-24s %.1f\n", "in-process", s[2], s[3], stat_of(a->isvc, a->n).med);
		printf("    %-12s %-24s %s\n", "ratio", s[4], s[5]);
		printf("    goal: ratio (p50, daemon / in-process) <= %.1f: %s\n", GOAL_RATIO,
		       r50.med <= GOAL_RATIO ? "met" : "MISSED");
	}
	if (b) {
		struct stat3 t = stat_of(b->tpl, b->n), c = stat_of(b->copy, b->n);
		double image_mib = (double)SHARE_SIZE / MIB;
		printf("\n(b) %u clients of one %.0f MiB image, all alive, every page read: Pss of their mappings\n",
		       SHARE_CLIENTS, image_mib);
		printf("    FL_SOURCE_TEMPLATE (shared)   %8.1f MiB (%.1f-%.1f)   pss_ratio %.3f\n", t.med, t.min, t.max,
		       t.med / image_mib);
		printf("    FL_SOURCE_IMAGE (copies)      %8.1f MiB (%.1f-%.1f)   %.2fx the image\n", c.med, c.min,
		       c.max, c.med / image_mib);
		printf("    goal: pss_ratio <= %.1f: %s\n", GOAL_PSS, t.med / image_mib <= GOAL_PSS ? "met" : "MISSED");
	}
}

/* ---- the command ----------------------------------------------------------------------- */

/* The scratch directory, its image directory, and which faultlined. */
int denv_setup(struct denv *e)
{
	int r;

	memset(e, 0, sizeof(*e));
	r = find_faultlined(e->faultlined, sizeof(e->faultlined));
	if (r) {
		cli_error("faultlined not found (set $FAULTLINED to its path): %s", strerror(-r));
		return EXIT_ERR;
	}
	e->pid_slot = e->dir_slot = -1;
	r = scratch_dir("/tmp", "faultline-bench-daemon", e->dir, sizeof(e->dir), &e->dir_slot);
	if (r)
		return cli_fail("/tmp", r);
	snprintf(e->images, sizeof(e->images), "%s/images", e->dir);
	snprintf(e->sock, sizeof(e->sock), "%s/sock", e->dir);
	snprintf(e->log, sizeof(e->log), "%s/faultlined.log", e->dir);
	snprintf(e->image, sizeof(e->image), "%s/%s", e->images, IMAGE_NAME);
	if (mkdir(e->images, 0700)) {
		cli_fail("mkdir", -errno);
		denv_remove(e);
		return EXIT_ERR;
	}
	return 0;
}

int daemon_demo(unsigned n, struct daemon_demo_result *res)
{
	static struct denv env;
	int status = EXIT_ERR, r;

	memset(res, 0, sizeof(*res));
	if (denv_setup(&env))
		return EXIT_ERR;
	r = write_image(env.image, SHARE_SIZE);
	if (r) {
		cli_fail("demo: writing the image", r);
		goto out;
	}
	res->image_mib = (double)(SHARE_SIZE >> 20);
	if (denv_start(&env, NULL))
		goto out;
	if (share_round(&env, true, n, 0, &res->tpl_pss_mib) || share_round(&env, false, n, 0, &res->copy_pss_mib))
		goto out;
	/* Every client checks every page it reads: a resumed session that
	 * delivered a wrong or zero page fails the round. */
	if (share_round(&env, true, n, 40, &res->killed_pss_mib))
		goto out;
	{
		/* How many sessions the new daemon took over from the old. */
		char *doc = NULL, *p;
		if (fl_manager_stats(env.sock, 0, &doc) == 0 && (p = strstr(doc, "\"resumed\":")))
			res->resumed = (unsigned)strtoul(p + 10, NULL, 10);
		free(doc);
	}
	status = EXIT_OK;
out:
	denv_stop(&env);
	denv_remove(&env);
	return status;
}

int bench_daemon_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "reps", required_argument, NULL, 'r' },
		{ "part", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	static struct denv env;		/* reachable from the signal handler */
	static struct lat_result lat;
	static struct share_result share;
	uint64_t reps = DEFAULT_REPS, v;
	bool json = false, pa = true, pb = true;
	int c, r, status = EXIT_ERR;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'r':
			if (fl__parse_uint(optarg, 1, MAX_REPS, &v))
				return cli_usage_error("bench daemon: --reps wants 1-%d, not '%s'", MAX_REPS, optarg);
			reps = v;
			break;
		case 'p':
			pa = strchr(optarg, 'a') != NULL;
			pb = strchr(optarg, 'b') != NULL;
			if (!(pa || pb) || strspn(optarg, "ab,") != strlen(optarg))
				return cli_usage_error("bench daemon: --part wants a, b or a,b, not '%s'", optarg);
			break;
		case 'h':
			fputs(daemon_usage, stdout);
			return EXIT_OK;
		default:
			if (optopt && strchr("rp", optopt))
				return cli_usage_error("bench daemon: %s needs a value", argv[optind - 1]);
			return cli_usage_error("bench daemon: unknown option '%s' (see 'faultline bench daemon --help')",
					       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("bench daemon: unexpected argument '%s'", argv[optind]);

	if (denv_setup(&env))
		return EXIT_ERR;
	r = write_image(env.image, pb ? SHARE_SIZE : LAT_SIZE);
	if (r) {
		cli_fail("bench daemon: writing the image", r);
		goto out;
	}
	if (pa && part_latency(&env, (unsigned)reps, &lat))
		goto out;
	if (pb && part_share(&env, (unsigned)reps, &share))
		goto out;
	if (json)
		print_json(&env, (unsigned)reps, pa ? &lat : NULL, pb ? &share : NULL);
	else
		print_text(&env, (unsigned)reps, pa ? &lat : NULL, pb ? &share : NULL);
	status = EXIT_OK;
out:
	denv_stop(&env);
	denv_remove(&env);
	return status;
}
