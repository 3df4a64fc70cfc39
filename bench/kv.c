// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench kv: what a server's clients pay while it saves itself,
 * measured from where they sit.
 *
 * examples/kv-server is started with its data already in memory (--prefill:
 * a key per two slots, every page populated) and driven by examples/kv-load
 * (8 connections, 100 % SET by default), first with no save running, then
 * while one BGSAVE runs (kv-load --until-saved: the requests that started
 * between the BGSAVE and its completion are counted on their own). Servers:
 *
 *  live       kv-server with its write watch armed (--track auto: the
 *             asynchronous watch where the kernel has it) and live-snapshot
 *             saves;
 *  untracked  the same binary with nothing armed (--track none): the
 *             baseline of what incremental tracking costs with no save
 *             running (only its nosave figures are measured);
 *  fork       the same binary with --fork-save;
 *  redis      redis-server with the same number of keys (DEBUG POPULATE),
 *             saving with its fork-based BGSAVE (when installed).
 *
 * Goals (issue 16): live nosave_rps >= 0.95 x untracked nosave_rps; during
 * a save, live save_rps >= 0.9 x its nosave_rps and live save_p99_us <= the
 * fork server's save_p99_us, at every size; live save_max_us <= 0.1 x the
 * fork server's at 4 GiB (judged at the largest size of 4 GiB or more; a
 * run without one does not meet the goals).
 */
#include "bench.h"
#include "util.h"

#include <faultline/faultline.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZES 4
#define MAX_REPS 16
#define GOAL_IDLE 0.95
#define GOAL_SAVE_RPS 0.9
#define GOAL_MAX 0.1

static const char kv_usage[] =
	"Usage: faultline bench kv [--json] [--sizes LIST] [--seconds S] [--conns N]\n"
	"                          [--reps N] [--no-redis] [--track T] [--save-nice N]\n"
	"\n"
	"Clients of a key-value server that saves itself: examples/kv-server with\n"
	"live snapshots (tracking armed), the same with nothing armed, the same with\n"
	"fork() saves, and redis-server's BGSAVE (when installed), each holding its\n"
	"data and driven by examples/kv-load (100 % SET), with no save running and\n"
	"during one save. For each size and server: nosave_rps, nosave_p99_us,\n"
	"save_rps, save_p99_us, save_max_us, save_s; idle_ratio (tracking armed /\n"
	"nothing armed) and goal_met (issue 16's goals).\n"
	"\n"
	"Finds kv-server and kv-load as $KV_SERVER / $KV_LOAD, else in the build\n"
	"tree's examples/ beside this program, else on $PATH; redis-server on $PATH.\n"
	"\n"
	"Options:\n"
	"  --sizes LIST   data sizes (default 1G,4G; 16M or more)\n"
	"  --seconds S    length of each load without a save (1-600, default 5);\n"
	"                 a load with a save runs at least this long, and until\n"
	"                 the save is done\n"
	"  --conns N      client connections (1-64, default 8)\n"
	"  --reps N       repetitions, servers alternating (1-16, default 1);\n"
	"                 figures are medians\n"
	"  --no-redis     skip redis-server\n"
	"  --track T      the live server's tracking: auto (default), async or\n"
	"                 sync (copy-before-write saves; what a 6.1 kernel has)\n"
	"  --save-nice N  the live server's saving threads' nice (default:\n"
	"                 kv-server's, 0)\n"
	"  --json         print one JSON object\n";

enum { SRV_LIVE, SRV_UNTRACKED, SRV_FORK, SRV_REDIS, NR_SRV };
static const char *const srv_name[NR_SRV] = { "live", "untracked", "fork", "redis" };

struct load_result {
	double rps, p99_us, max_us;
	double save_rps, save_p99_us, save_max_us, save_s;
};

struct kvenv {
	char dir[4096];
	char server[PATH_MAX], load[PATH_MAX], redis[PATH_MAX];
	unsigned conns;
	double seconds;
	char tracking[16];		/* what the live server reported */
	const char *track;		/* --track: kv-server's for the live server */
	const char *save_nice;		/* --save-nice, or NULL: kv-server's default */
};

/* $ENV; the build tree's examples/ (this program is cli/faultline there); $PATH. */
static int find_example(const char *env, const char *name, char *out, size_t len)
{
	const char *e = getenv(env);
	char exe[PATH_MAX];
	ssize_t n;

	if (e && *e)
		return (size_t)snprintf(out, len, "%s", e) < len && bench_executable_at(out) ? 0 : -ENOENT;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *slash;
		exe[n] = 0;
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			if ((size_t)snprintf(out, len, "%s/../examples/%s", exe, name) < len && bench_executable_at(out))
				return 0;
		}
	}
	return bench_find_in_path(name, out, len) ? 0 : -ENOENT;
}

/* A free loopback port for redis-server: bind to 0, read it, let it go. */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ret;

	if (fd < 0)
		return -errno;
	ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(fd, (struct sockaddr *)&sa, &sl) ? -errno
													: ntohs(sa.sin_port);
	close(fd);
	return ret;
}

static int dial(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The scratch directory is flat: the servers' output, images, dump.rdb. */
static void remove_scratch(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dirfd(d), de->d_name, 0);
	if (d)
		closedir(d);
	rmdir(dir);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Run argv with stdout and stderr into `out` (a file); returns the pid. */
static pid_t spawn(char *const argv[], const char *out)
{
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		cleanup_child(parent);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	buf[0] = 0;
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	return 0;
}

static void stop_server(pid_t pid, int slot)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cleanup_drop(slot);
}

/*
 * Start one server holding `keys` keys; its port in *ret_port. The prefill
 * can take a while at 4 GiB: up to 10 minutes.
 */
static int start_server(struct kvenv *e, int which, uint64_t size, uint64_t keys, pid_t *ret_pid, int *ret_slot,
			int *ret_port)
{
	char out[4200], arena[32], nkeys[32], buf[8192], port[16];
	char *argv[24];
	int a = 0;
	pid_t pid;

	snprintf(out, sizeof(out), "%s/%s.out", e->dir, srv_name[which]);
	snprintf(arena, sizeof(arena), "%llu", (unsigned long long)size);
	snprintf(nkeys, sizeof(nkeys), "%llu", (unsigned long long)keys);
	if (which == SRV_REDIS) {
		int p = free_port();
		if (p < 0)
			return p;
		snprintf(port, sizeof(port), "%d", p);
		argv[a++] = e->redis;
		argv[a++] = "--port";
		argv[a++] = port;
		argv[a++] = "--bind";
		argv[a++] = "127.0.0.1";
		argv[a++] = "--save";
		argv[a++] = "";
		argv[a++] = "--appendonly";
		argv[a++] = "no";
		argv[a++] = "--dir";
		argv[a++] = e->dir;
		argv[a++] = "--rdbcompression";
		argv[a++] = "no";
		argv[a++] = "--enable-debug-command";
		argv[a++] = "yes";
		argv[a] = NULL;
		*ret_port = p;
	} else {
		argv[a++] = e->server;
		argv[a++] = "--port";
		argv[a++] = "0";
		argv[a++] = "--arena";
		argv[a++] = arena;
		argv[a++] = "--dir";
		argv[a++] = e->dir;
		argv[a++] = "--prefill";
		argv[a++] = nkeys;
		if (which == SRV_FORK)
			argv[a++] = "--fork-save";
		argv[a++] = "--track";
		argv[a++] = which == SRV_LIVE ? (char *)e->track : "none";
		if (which == SRV_LIVE && e->save_nice) {
			argv[a++] = "--save-nice";
			argv[a++] = (char *)e->save_nice;
		}
		argv[a] = NULL;
	}
	/* The last server's output must not be read as this one's. */
	unlink(out);
	pid = spawn(argv, out);
	if (pid < 0)
		return -errno;
	*ret_slot = cleanup_add_pid(pid);
	*ret_pid = pid;
	for (int i = 0; i < 6000; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			cleanup_drop(*ret_slot);
			read_file(out, buf, sizeof(buf));
			fprintf(stderr, "bench kv: %s exited: %s\n", argv[0], buf);
			return -ECHILD;
		}
		read_file(out, buf, sizeof(buf));
		if (which != SRV_REDIS) {
			char *l = strstr(buf, "listening on 127.0.0.1:");
			if (l && strchr(l, '\n')) {
				char *t = strstr(l, "tracking ");
				*ret_port = atoi(l + strlen("listening on 127.0.0.1:"));
				if (which == SRV_LIVE && t)
					sscanf(t + strlen("tracking "), "%15s", e->tracking);
				return 0;
			}
		} else if (strstr(buf, "Ready to accept connections")) {
			return 0;
		}
		sleep_ms(100);
	}
	stop_server(pid, *ret_slot);
	return -ETIMEDOUT;
}

/* Run kv-load to completion; its result line parsed into r. */
static int run_load(struct kvenv *e, int port, uint64_t keys, bool redis, bool save, struct load_result *r)
{
	char out[4200], sport[16], skeys[32], sconns[16], ssec[32], buf[16384];
	char *argv[24];
	int a = 0, st, slot;
	pid_t pid;

	snprintf(out, sizeof(out), "%s/load.out", e->dir);
	snprintf(sport, sizeof(sport), "%d", port);
	snprintf(skeys, sizeof(skeys), "%llu", (unsigned long long)keys);
	snprintf(sconns, sizeof(sconns), "%u", e->conns);
	snprintf(ssec, sizeof(ssec), "%g", e->seconds);
	argv[a++] = e->load;
	argv[a++] = "--port";
	argv[a++] = sport;
	argv[a++] = "--conns";
	argv[a++] = sconns;
	argv[a++] = "--set-pct";
	argv[a++] = "100";
	argv[a++] = "--keys";
	argv[a++] = skeys;
	argv[a++] = "--seconds";
	argv[a++] = ssec;
	argv[a++] = "--prefix";
	argv[a++] = redis ? "k:" : "k";	/* DEBUG POPULATE names keys "k:N" */
	if (redis)
		argv[a++] = "--redis";
	if (save) {
		argv[a++] = "--bgsave-at";
		argv[a++] = "0.5";
		argv[a++] = "--until-saved";
	}
	argv[a] = NULL;
	pid = spawn(argv, out);
	if (pid < 0)
		return -errno;
	slot = cleanup_add_pid(pid);
	waitpid(pid, &st, 0);
	cleanup_drop(slot);
	read_file(out, buf, sizeof(buf));
	char *l = strstr(buf, "kv-load-result ");
	*r = (struct load_result){ 0 };
	if (!WIFEXITED(st) || WEXITSTATUS(st) || !l ||
	    sscanf(l, "kv-load-result rps=%lf p50_us=%*f p99_us=%lf max_us=%lf", &r->rps, &r->p99_us, &r->max_us) != 3) {
		fprintf(stderr, "bench kv: kv-load against %s failed: %s\n", redis ? "redis-server" : "kv-server", buf);
		return -EIO;
	}
	if (save) {
		char *p = strstr(l, " save_s=");
		if (!p || sscanf(p, " save_s=%lf save_n=%*u save_rps=%lf save_p50_us=%*f save_p99_us=%lf save_max_us=%lf",
				 &r->save_s, &r->save_rps, &r->save_p99_us, &r->save_max_us) != 4) {
			fprintf(stderr, "bench kv: kv-load reported no save: %s\n", buf);
			return -EIO;
		}
	}
	return 0;
}

/* Redis: DEBUG POPULATE keys k:0 .. k:<n-1>, 400-byte values (about 2x
 * 256 bytes per key in memory, as kv-server's arena at half load). */
static int redis_populate(int port, uint64_t keys)
{
	char cmd[128], reply[256];
	int fd, ret = -EIO;
	ssize_t n;

	fd = dial(port);
	if (fd < 0)
		return -ECONNREFUSED;
	snprintf(cmd, sizeof(cmd), "DEBUG POPULATE %llu k 400\r\n", (unsigned long long)keys);
	if (write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd) && (n = read(fd, reply, sizeof(reply) - 1)) > 0) {
		reply[n] = 0;
		ret = strncmp(reply, "+OK", 3) ? -EIO : 0;
		if (ret)
			fprintf(stderr, "bench kv: redis DEBUG POPULATE: %s", reply);
	}
	close(fd);
	return ret;
}

/* One server: start, a load without a save, one with (not for untracked). */
static int measure(struct kvenv *e, int which, uint64_t size, uint64_t keys, struct load_result *r)
{
	pid_t pid = -1;
	int slot = -1, port = 0, ret;
	struct load_result s;

	ret = start_server(e, which, size, keys, &pid, &slot, &port);
	if (ret)
		return ret;
	if (which == SRV_REDIS)
		ret = redis_populate(port, keys);
	if (!ret)
		ret = run_load(e, port, keys, which == SRV_REDIS, false, r);
	if (!ret && which != SRV_UNTRACKED) {
		ret = run_load(e, port, keys, which == SRV_REDIS, true, &s);
		r->save_rps = s.save_rps;
		r->save_p99_us = s.save_p99_us;
		r->save_max_us = s.save_max_us;
		r->save_s = s.save_s;
	}
	stop_server(pid, slot);
	return ret;
}

static int parse_sizes(const char *s, uint64_t *v, int max)
{
	char buf[128], *save = NULL, *tok;
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
		if (fl__parse_size(tok, &v[n]) || v[n] < (16u << 20))
			return -1;
		v[n] = v[n] / (2u << 20) * (2u << 20);
		n++;
	}
	return n ? n : -1;
}

static void size_key(uint64_t size, char *key, size_t len)
{
	if (size % (1ull << 30) == 0)
		snprintf(key, len, "%llug", (unsigned long long)(size >> 30));
	else
		snprintf(key, len, "%llum", (unsigned long long)(size >> 20));
}

static double med(struct load_result *r, unsigned n, size_t off)
{
	double v[MAX_REPS];

	for (unsigned i = 0; i < n; i++)
		v[i] = *(double *)((char *)&r[i] + off);
	return median_d(v, n);
}

int bench_kv_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "sizes", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "conns", required_argument, NULL, 'c' },
		{ "reps", required_argument, NULL, 'r' },
		{ "no-redis", no_argument, NULL, 'R' },
		{ "track", required_argument, NULL, 't' },
		{ "save-nice", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	static struct kvenv e = { .conns = 8, .seconds = 5, .track = "auto" };
	uint64_t sizes[MAX_SIZES] = { 1ull << 30, 4ull << 30 }, v, reps = 1;
	int nsizes = 2, c, ret = 0, dir_slot;
	bool json = false, no_redis = false, have_redis, goal_met = true, max_judged = false;
	struct json j;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 's':
			nsizes = parse_sizes(optarg, sizes, MAX_SIZES);
			if (nsizes < 0)
				return cli_usage_error("bench kv: --sizes wants sizes of 16M or more, like 1G,4G");
			break;
		case 'S':
			if (fl__parse_uint(optarg, 1, 600, &v))
				return cli_usage_error("bench kv: --seconds wants 1-600");
			e.seconds = (double)v;
			break;
		case 'c':
			if (fl__parse_uint(optarg, 1, 64, &v))
				return cli_usage_error("bench kv: --conns wants 1-64");
			e.conns = (unsigned)v;
			break;
		case 'r':
			if (fl__parse_uint(optarg, 1, MAX_REPS, &v))
				return cli_usage_error("bench kv: --reps wants 1-%d", MAX_REPS);
			reps = v;
			break;
		case 'R':
			no_redis = true;
			break;
		case 't':
			if (strcmp(optarg, "auto") && strcmp(optarg, "async") && strcmp(optarg, "sync"))
				return cli_usage_error("bench kv: --track wants auto, async or sync");
			e.track = optarg;
			break;
		case 'n':
			if (fl__parse_uint(optarg, 0, 19, &v))
				return cli_usage_error("bench kv: --save-nice wants 0-19");
			e.save_nice = optarg;
			break;
		case 'h':
			fputs(kv_usage, stdout);
			return EXIT_OK;
		default:
			return cli_usage_error("bench kv: unknown option '%s'", argv[optind - 1]);
		}
	}
	if (find_example("KV_SERVER", "kv-server", e.server, sizeof(e.server)) ||
	    find_example("KV_LOAD", "kv-load", e.load, sizeof(e.load))) {
		fprintf(stderr, "bench kv: kv-server and kv-load not found (build the examples, or set $KV_SERVER "
				"and $KV_LOAD)\n");
		return EXIT_ERR;
	}
	have_redis = !no_redis && bench_find_in_path("redis-server", e.redis, sizeof(e.redis));
	/* The servers' images and Redis's dump go here; an interrupted run
	 * removes it whole (and kills the servers). */
	ret = scratch_dir(temp_dir(), "faultline-bench-kv", e.dir, sizeof(e.dir), &dir_slot);
	if (ret)
		return cli_fail(temp_dir(), ret);
	if (json) {
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "benchmark", "kv");
		json_str(&j, "version", fl_version());
		json_u64(&j, "conns", e.conns);
		json_u64(&j, "set_pct", 100);
		json_num(&j, "seconds", e.seconds, 0);
		json_u64(&j, "reps", reps);
		json_bool(&j, "redis", have_redis);
		json_str(&j, "track", e.track);
		json_str(&j, "save_nice", e.save_nice ? e.save_nice : "0");
	} else {
		printf("bench kv: %u connections, 100 %% SET, %g s loads, %llu reps%s\n", e.conns, e.seconds,
		       (unsigned long long)reps, have_redis ? "" : " (no redis-server)");
	}
	for (int si = 0; si < nsizes && !ret; si++) {
		/* Half the arena's 256-byte slots: every page holds keys. */
		uint64_t keys = sizes[si] / 512;
		struct load_result res[NR_SRV][MAX_REPS];
		struct load_result m[NR_SRV] = { 0 };
		char key[32];

		for (unsigned rep = 0; rep < reps && !ret; rep++)
			for (int w = 0; w < NR_SRV && !ret; w++) {
				/* Alternate the order from one rep to the next. */
				int which = rep % 2 ? NR_SRV - 1 - w : w;
				if (which == SRV_REDIS && !have_redis)
					continue;
				ret = measure(&e, which, sizes[si], keys, &res[which][rep]);
			}
		if (ret)
			break;
		for (int w = 0; w < NR_SRV; w++) {
			if (w == SRV_REDIS && !have_redis)
				continue;
			m[w].rps = med(res[w], (unsigned)reps, offsetof(struct load_result, rps));
			m[w].p99_us = med(res[w], (unsigned)reps, offsetof(struct load_result, p99_us));
			m[w].max_us = med(res[w], (unsigned)reps, offsetof(struct load_result, max_us));
			m[w].save_rps = med(res[w], (unsigned)reps, offsetof(struct load_result, save_rps));
			m[w].save_p99_us = med(res[w], (unsigned)reps, offsetof(struct load_result, save_p99_us));
			m[w].save_max_us = med(res[w], (unsigned)reps, offsetof(struct load_result, save_max_us));
			m[w].save_s = med(res[w], (unsigned)reps, offsetof(struct load_result, save_s));
		}
		double idle = m[SRV_LIVE].rps / m[SRV_UNTRACKED].rps;
		double save_ratio = m[SRV_LIVE].save_rps / m[SRV_LIVE].rps;
		double p99_ratio = m[SRV_LIVE].save_p99_us / m[SRV_FORK].save_p99_us;
		double max_ratio = m[SRV_LIVE].save_max_us / m[SRV_FORK].save_max_us;
		bool g_idle = idle >= GOAL_IDLE, g_save = save_ratio >= GOAL_SAVE_RPS, g_p99 = p99_ratio <= 1.0;
		bool judge_max = sizes[si] >= (4ull << 30) && (si == nsizes - 1 || sizes[si + 1] < sizes[si]);
		bool g_max = max_ratio <= GOAL_MAX;

		goal_met = goal_met && g_idle && g_save && g_p99 && (!judge_max || g_max);
		max_judged = max_judged || judge_max;
		size_key(sizes[si], key, sizeof(key));
		if (json) {
			json_begin(&j, key);
			json_u64(&j, "size", sizes[si]);
			json_u64(&j, "keys", keys);
			json_str(&j, "tracking", e.tracking);
			for (int w = 0; w < NR_SRV; w++) {
				if (w == SRV_REDIS && !have_redis) {
					json_null(&j, srv_name[w]);
					continue;
				}
				json_begin(&j, srv_name[w]);
				json_num(&j, "nosave_rps", m[w].rps, 0);
				json_num(&j, "nosave_p99_us", m[w].p99_us, 0);
				/* The noise floor of save_max_us on a shared machine. */
				json_num(&j, "nosave_max_us", m[w].max_us, 0);
				if (w != SRV_UNTRACKED) {
					json_num(&j, "save_rps", m[w].save_rps, 0);
					json_num(&j, "save_p99_us", m[w].save_p99_us, 0);
					json_num(&j, "save_max_us", m[w].save_max_us, 0);
					json_num(&j, "save_s", m[w].save_s, 3);
				}
				json_end(&j);
			}
			json_num(&j, "idle_ratio", idle, 3);
			json_num(&j, "save_rps_ratio", save_ratio, 3);
			json_num(&j, "save_p99_vs_fork", p99_ratio, 3);
			json_num(&j, "save_max_vs_fork", max_ratio, 3);
			json_bool(&j, "goal_idle", g_idle);
			json_bool(&j, "goal_save_rps", g_save);
			json_bool(&j, "goal_save_p99", g_p99);
			if (judge_max)
				json_bool(&j, "goal_save_max", g_max);
			else
				json_null(&j, "goal_save_max");
			json_end(&j);
		} else {
			printf("%s (%llu keys), live tracking %s:\n", key, (unsigned long long)keys, e.tracking);
			printf("  %-10s %11s %14s %14s %9s %12s %12s %7s\n", "server", "nosave_rps", "nosave_p99_us",
			       "nosave_max_us", "save_rps", "save_p99_us", "save_max_us", "save_s");
			for (int w = 0; w < NR_SRV; w++) {
				if (w == SRV_REDIS && !have_redis)
					continue;
				if (w == SRV_UNTRACKED)
					printf("  %-10s %11.0f %14.0f %14.0f\n", srv_name[w], m[w].rps, m[w].p99_us,
					       m[w].max_us);
				else
					printf("  %-10s %11.0f %14.0f %14.0f %9.0f %12.0f %12.0f %7.2f\n", srv_name[w],
					       m[w].rps, m[w].p99_us, m[w].max_us, m[w].save_rps, m[w].save_p99_us,
					       m[w].save_max_us, m[w].save_s);
			}
			printf("  idle_ratio %.3f (goal >= %.2f), save_rps_ratio %.3f (goal >= %.2f), "
			       "save p99 vs fork %.3f (goal <= 1), save max vs fork %.3f (goal <= %.1f%s)\n",
			       idle, GOAL_IDLE, save_ratio, GOAL_SAVE_RPS, p99_ratio, max_ratio, GOAL_MAX,
			       judge_max ? "" : ", judged at 4 GiB only");
		}
	}
	/* A run without a 4 GiB size cannot show the worst-request goal. */
	goal_met = goal_met && max_judged && !ret;
	if (json) {
		json_bool(&j, "goal_met", goal_met);
		json_end(&j);
		json_finish(&j);
	} else if (!ret) {
		printf("goal_met %s%s\n", goal_met ? "true" : "false", max_judged ? "" : " (no size of 4 GiB or more)");
	}
	/* The scratch directory goes with what the servers left in it. */
	remove_scratch(e.dir);
	cleanup_drop(dir_slot);
	return ret ? cli_fail("bench kv", ret) : EXIT_OK;
}
