/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers for the Redis store tests (header-only; every program includes it
 * once): start and stop real redis-server processes on loopback ports, build
 * a 3-primary Redis Cluster with `redis-cli --cluster create`, move slots
 * between its nodes, make pattern images, push them, and lazily restore
 * regions from them.
 *
 * Cleanup, whatever happens: every server is started by the case's process
 * (the harness runs each case in a forked child that leads its own process
 * group), stays in that process group, and has PR_SET_PDEATHSIG = SIGKILL
 * (set by setpriv(1) before it execs the server); the case process has it
 * too, towards the harness. So the harness's kill(-case, SIGKILL) after
 * every case, a case timeout, or the test program itself being killed all
 * stop the servers. Their directories live under one temporary root that
 * main() removes when the cases are done.
 */
#ifndef FL_TEST_REDIS_RTEST_H
#define FL_TEST_REDIS_RTEST_H

#include "util.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#define R_FN static __attribute__((unused))

struct r_server {
	pid_t pid;
	int port;
	bool cluster;
	bool aof;		/* appendonly yes, appendfsync always: acknowledged writes survive SIGKILL */
	int replica_of;		/* a port: start as that server's replica; 0: a primary */
	char dir[400];
};

/* ---- the temporary root ------------------------------------------------ */

static char r_root_dir[256];

/*
 * Before t_main(): a root for every server directory (removed by
 * r_root_remove()), named after this process. Roots left by test programs
 * that were killed (their pid is gone) are removed first.
 */
R_FN void r_root_create(void)
{
	char prefix[64];
	DIR *d = opendir("/tmp");
	struct dirent *de;

	while (d && (de = readdir(d))) {
		int pid;
		char path[300];
		if (sscanf(de->d_name, "fl-redis-test-%d-", &pid) != 1 || pid <= 0 ||
		    kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "/tmp/%s", de->d_name);
		if (t_rmtree(path) != 0)
			fprintf(stderr, "# could not remove /tmp/%s\n", de->d_name);
	}
	if (d)
		closedir(d);
	snprintf(prefix, sizeof(prefix), "/tmp/fl-redis-test-%d", (int)getpid());
	t_tmpdir(r_root_dir, sizeof(r_root_dir), prefix);
}

R_FN void r_root_remove(void)
{
	if (!r_root_dir[0])
		return;
	if (t_rmtree(r_root_dir) != 0)
		fprintf(stderr, "# could not remove %s\n", r_root_dir);
}

/* t_main() with the programs' scratch root created before and removed after. */
R_FN int r_main(int argc, char **argv, const struct t_case *cases, size_t n)
{
	int r;

	r_root_create();
	r = t_main(argc, argv, cases, n);
	r_root_remove();
	return r;
}

/* ---- programs ---------------------------------------------------------- */

R_FN bool r_have_prog(const char *name)
{
	const char *path = getenv("PATH");
	char buf[1024];
	if (!path)
		path = "/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name);
		if (access(buf, X_OK) == 0)
			return true;
		path += n;
		if (*path)
			path++;
	}
	return false;
}

/*
 * Start of every case that runs servers: skip without them (fail under
 * FAULTLINE_REQUIRE_FEATURES=all or =kernel: a missing tool is not the
 * kernel's doing); die with the harness.
 */
R_FN void r_require(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if ((!r_have_prog("redis-server") || !r_have_prog("redis-cli")) && t_strict())
		t_fail_at(__FILE__, __LINE__, "redis-server",
			  " redis-server or redis-cli not installed (Debian: apt-get install redis-server)");
	if (!r_have_prog("redis-server") || !r_have_prog("redis-cli"))
		t_skip("redis-server or redis-cli not installed (Debian: apt-get install redis-server)");
	signal(SIGPIPE, SIG_IGN);	/* the tests' own hiredis admin connections */
}

/* ---- admin connections -------------------------------------------------- */

R_FN redisContext *r_conn_port(int port, unsigned timeout_ms)
{
	struct timeval tv;

	timeout_ms = t_scaled_ms(timeout_ms);
	tv = (struct timeval){ .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	if (c && c->err) {
		redisFree(c);
		return NULL;
	}
	if (c)
		redisSetTimeout(c, (struct timeval){ .tv_sec = 30 });
	return c;
}

/* Run a command on a server (printf-style, hiredis format); asserts a reply. Caller frees. */
__attribute__((unused)) static redisReply *r_cmd(const struct r_server *s, const char *fmt, ...)
{
	redisContext *c = r_conn_port(s->port, 5000);
	redisReply *rep;
	va_list ap;

	T_ASSERT(c, "connect to redis on port %d", s->port);
	va_start(ap, fmt);
	rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	T_ASSERT(rep, "redis port %d: %s: %s", s->port, fmt, c->errstr);
	redisFree(c);
	return rep;
}

/* The same with argv (binary-safe values). */
R_FN redisReply *r_cmd_argv(const struct r_server *s, int argc, const char **argv, const size_t *lens)
{
	redisContext *c = r_conn_port(s->port, 5000);
	redisReply *rep;
	T_ASSERT(c, "connect to redis on port %d", s->port);
	rep = redisCommandArgv(c, argc, argv, lens);
	T_ASSERT(rep, "redis port %d: %s: %s", s->port, argv[0], c->errstr);
	redisFree(c);
	return rep;
}

/* A command that must answer +OK (or a status). */
#define R_STATUS(s, ...)                                                                        \
	do {                                                                                \
		redisReply *_r = r_cmd((s), __VA_ARGS__);                                   \
		T_ASSERT(_r->type == REDIS_REPLY_STATUS, "%s: %s", #__VA_ARGS__,           \
			 _r->type == REDIS_REPLY_ERROR ? _r->str : "not a status reply");   \
		freeReplyObject(_r);                                                        \
	} while (0)

R_FN long long r_int(const struct r_server *s, const char *cmd)
{
	redisReply *r = r_cmd(s, cmd);
	long long v;
	T_ASSERT(r->type == REDIS_REPLY_INTEGER, "%s: not an integer", cmd);
	v = r->integer;
	freeReplyObject(r);
	return v;
}

/* PING answers PONG (not LOADING). */
R_FN bool r_ping(int port)
{
	redisContext *c = r_conn_port(port, 500);
	redisReply *r;
	bool ok;
	if (!c)
		return false;
	r = redisCommand(c, "PING");
	ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return ok;
}

/* ---- servers ------------------------------------------------------------- */

R_FN bool r_port_free(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	bool ok;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

/* A free port whose cluster bus port (+10000) is free too. */
R_FN int r_pick_port(void)
{
	static unsigned seed;
	if (!seed)
		seed = (unsigned)getpid() * 2654435761u ^ (unsigned)t_now_ns();
	for (int i = 0; i < 1000; i++) {
		int port = 20000 + (int)(rand_r(&seed) % 30000);
		if (r_port_free(port) && r_port_free(port + 10000))
			return port;
	}
	t_fail_at(__FILE__, __LINE__, "free port", "no free loopback port found");
}

/*
 * Start a program with posix_spawn (vfork-style: the address space is not
 * copied, so a case with lazy regions and a busy fault handler can start
 * servers without a fork event or a copy of its uffd ranges), stdout and
 * stderr to `log`, in `cwd`. Through setpriv(1), when present, the program
 * gets PR_SET_PDEATHSIG = SIGKILL: it dies with this process.
 */
R_FN pid_t r_spawnp(const char *const *argv, const char *log, const char *cwd)
{
	extern char **environ;
	const char *args[64];
	posix_spawn_file_actions_t fa;
	unsigned n = 0;
	pid_t pid;
	int r;

	if (r_have_prog("setpriv")) {
		args[n++] = "setpriv";
		args[n++] = "--pdeathsig";
		args[n++] = "KILL";
		args[n++] = "--";
	}
	for (unsigned i = 0; argv[i]; i++) {
		T_ASSERT(n < 63);
		args[n++] = argv[i];
	}
	args[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	if (cwd)
		posix_spawn_file_actions_addchdir_np(&fa, cwd);
	fflush(NULL);
	r = posix_spawnp(&pid, args[0], &fa, NULL, (char *const *)args, environ);
	posix_spawn_file_actions_destroy(&fa);
	T_ASSERT(r == 0, "posix_spawnp %s: %s", args[0], strerror(r));
	return pid;
}

R_FN pid_t r_spawn(const struct r_server *s)
{
	char port[16], log[600];
	const char *argv[40] = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
				 "--appendonly", "no", "--dir", s->dir, "--dbfilename", "dump.rdb",
				 "--protected-mode", "no", "--daemonize", "no" };
	unsigned n = 17;

	static char primary[16];

	snprintf(port, sizeof(port), "%d", s->port);
	snprintf(log, sizeof(log), "%s/redis.log", s->dir);
	if (s->aof) {
		argv[8] = "yes";
		argv[n++] = "--appendfsync";
		argv[n++] = "always";
	}
	if (s->replica_of) {
		snprintf(primary, sizeof(primary), "%d", s->replica_of);
		argv[n++] = "--replicaof";
		argv[n++] = "127.0.0.1";
		argv[n++] = primary;
	}
	if (s->cluster) {
		static const char *const cl[] = { "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
						  "--cluster-node-timeout", "5000",
						  "--cluster-require-full-coverage", "no", NULL };
		for (unsigned i = 0; cl[i]; i++)
			argv[n++] = cl[i];
	}
	argv[n] = NULL;
	return r_spawnp(argv, log, s->dir);
}

/* Wait until the server answers PING; false if it exited (port taken) or 15 s passed. */
R_FN bool r_wait_ready(struct r_server *s)
{
	uint64_t end = t_deadline_ms(15000);
	while (t_now_ns() < end) {
		int status;
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			return false;
		}
		if (r_ping(s->port))
			return true;
		t_sleep_ms(20);
	}
	return false;
}

/* Start a server (cluster-enabled or not) on a free loopback port, in a fresh directory. */
R_FN void r_start_ext(struct r_server *s, bool cluster, bool aof, int replica_of)
{
	static int seq;
	memset(s, 0, sizeof(*s));
	s->cluster = cluster;
	s->aof = aof;
	s->replica_of = replica_of;
	snprintf(s->dir, sizeof(s->dir), "%s/%d-%d", r_root_dir[0] ? r_root_dir : "/tmp", (int)getpid(), seq++);
	T_ASSERT(mkdir(s->dir, 0755) == 0, "mkdir %s: %s", s->dir, strerror(errno));
	for (int attempt = 0; attempt < 5; attempt++) {
		s->port = r_pick_port();
		s->pid = r_spawn(s);
		if (r_wait_ready(s))
			return;
		if (s->pid) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
			s->pid = 0;
		}
	}
	t_fail_at(__FILE__, __LINE__, "redis-server starts", "see %s/redis.log", s->dir);
}

R_FN void r_start(struct r_server *s, bool cluster)
{
	r_start_ext(s, cluster, false, 0);
}

/* SIGKILL: the server vanishes mid-whatever (no shutdown, no save). */
R_FN void r_kill(struct r_server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

/* Start again on the same port and directory (loads dump.rdb if one was saved). */
R_FN void r_restart(struct r_server *s)
{
	for (int attempt = 0; attempt < 50; attempt++) {
		s->pid = r_spawn(s);
		if (r_wait_ready(s))
			return;
		if (s->pid) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
			s->pid = 0;
		}
		t_sleep_ms(t_scaled_ms(100));	/* the old socket may linger a moment */
	}
	t_fail_at(__FILE__, __LINE__, "redis-server restarts", "port %d, see %s/redis.log", s->port, s->dir);
}

R_FN void r_url(char *buf, size_t len, const struct r_server *s, const char *prefix)
{
	snprintf(buf, len, "redis://127.0.0.1:%d/%s", s->port, prefix);
}

/* ---- a 3-primary cluster --------------------------------------------------- */

#define R_NODES 3

/* Node id (CLUSTER MYID). */
R_FN void r_node_id(const struct r_server *s, char *out, size_t len)
{
	redisReply *r = r_cmd(s, "CLUSTER MYID");
	T_ASSERT(r->type == REDIS_REPLY_STRING);
	snprintf(out, len, "%s", r->str);
	freeReplyObject(r);
}

/* Does every node report cluster_state:ok and the same 3-range slot map? */
R_FN bool r_cluster_ready(const struct r_server *s, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		redisReply *r = r_cmd(&s[i], "CLUSTER INFO");
		bool ok = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") &&
			  strstr(r->str, "cluster_known_nodes:3");
		freeReplyObject(r);
		if (!ok)
			return false;
	}
	return true;
}

R_FN void r_cluster_wait(const struct r_server *s, unsigned n)
{
	uint64_t end = t_deadline_ms(30000);
	while (!r_cluster_ready(s, n)) {
		T_ASSERT(t_now_ns() < end, "cluster did not become ready in 30 s");
		t_sleep_ms(50);
	}
}

/* Three cluster-enabled servers joined by redis-cli --cluster create (replicas 0). */
R_FN void r_cluster_start(struct r_server *s)
{
	char addr[R_NODES][32], log[600];
	pid_t pid;
	int status;
	uint64_t end;

	for (unsigned i = 0; i < R_NODES; i++) {
		r_start(&s[i], true);
		snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", s[i].port);
	}
	snprintf(log, sizeof(log), "%s/cluster-create.log", s[0].dir);
	{
		const char *argv[] = { "redis-cli", "--cluster", "create", addr[0], addr[1], addr[2],
				       "--cluster-replicas", "0", "--cluster-yes", NULL };
		pid = r_spawnp(argv, log, NULL);
	}
	end = t_deadline_ms(60000);
	while (waitpid(pid, &status, WNOHANG) != pid) {
		if (t_now_ns() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			t_fail_at(__FILE__, __LINE__, "redis-cli --cluster create", "timed out, see %s", log);
		}
		t_sleep_ms(20);
	}
	T_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "redis-cli --cluster create failed, see %s", log);
	r_cluster_wait(s, R_NODES);
}

/* Index of the node that owns `slot`, asking node `ask`. */
R_FN int r_slot_owner(const struct r_server *s, unsigned ask, unsigned slot)
{
	redisReply *r = r_cmd(&s[ask], "CLUSTER SLOTS");
	int owner = -1;
	T_ASSERT(r->type == REDIS_REPLY_ARRAY);
	for (size_t i = 0; i < r->elements; i++) {
		redisReply *e = r->element[i];
		if ((unsigned)e->element[0]->integer <= slot && slot <= (unsigned)e->element[1]->integer) {
			int port = (int)e->element[2]->element[1]->integer;
			for (unsigned k = 0; k < R_NODES; k++)
				if (s[k].port == port)
					owner = (int)k;
		}
	}
	freeReplyObject(r);
	T_ASSERT(owner >= 0, "slot %u has no owner", slot);
	return owner;
}

/* MIGRATE up to `max` keys of `slot` from src to dst; returns how many moved. */
R_FN unsigned r_migrate_keys(const struct r_server *src, const struct r_server *dst, unsigned slot, unsigned max)
{
	redisReply *keys = r_cmd(src, "CLUSTER GETKEYSINSLOT %u %u", slot, max);
	const char **argv;
	size_t *lens, n;
	char port[16];
	redisReply *r;

	T_ASSERT(keys->type == REDIS_REPLY_ARRAY);
	n = keys->elements;
	if (!n) {
		freeReplyObject(keys);
		return 0;
	}
	argv = calloc(n + 8, sizeof(*argv));
	lens = calloc(n + 8, sizeof(*lens));
	T_ASSERT(argv && lens);
	snprintf(port, sizeof(port), "%d", dst->port);
	argv[0] = "MIGRATE";
	argv[1] = "127.0.0.1";
	argv[2] = port;
	argv[3] = "";
	argv[4] = "0";
	argv[5] = "10000";
	argv[6] = "KEYS";
	for (int i = 0; i < 7; i++)
		lens[i] = strlen(argv[i]);
	for (size_t i = 0; i < n; i++) {
		argv[7 + i] = keys->element[i]->str;
		lens[7 + i] = keys->element[i]->len;
	}
	r = r_cmd_argv(src, (int)(n + 7), argv, lens);
	T_ASSERT(r->type == REDIS_REPLY_STATUS, "MIGRATE: %s", r->type == REDIS_REPLY_ERROR ? r->str : "?");
	freeReplyObject(r);
	freeReplyObject(keys);
	free(argv);
	free(lens);
	return (unsigned)n;
}

/* Put `slot` in migration from node src to node dst (IMPORTING on dst, MIGRATING on src). */
R_FN void r_slot_migrating(const struct r_server *s, unsigned src, unsigned dst, unsigned slot)
{
	char src_id[64], dst_id[64];
	r_node_id(&s[src], src_id, sizeof(src_id));
	r_node_id(&s[dst], dst_id, sizeof(dst_id));
	R_STATUS(&s[dst], "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id);
	R_STATUS(&s[src], "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id);
}

/* End a migration: every node learns that dst owns the slot (target first, as redis-cli does). */
R_FN void r_slot_assign(const struct r_server *s, unsigned dst, unsigned slot)
{
	char dst_id[64];
	r_node_id(&s[dst], dst_id, sizeof(dst_id));
	R_STATUS(&s[dst], "CLUSTER SETSLOT %u NODE %s", slot, dst_id);
	for (unsigned i = 0; i < R_NODES; i++)
		if (i != dst && s[i].pid)
			R_STATUS(&s[i], "CLUSTER SETSLOT %u NODE %s", slot, dst_id);
}

/* Move a whole slot with its keys from its owner to node dst. */
R_FN void r_move_slot(const struct r_server *s, unsigned slot, unsigned dst)
{
	unsigned src = (unsigned)r_slot_owner(s, 0, slot);
	if (src == dst)
		return;
	r_slot_migrating(s, src, dst, slot);
	while (r_migrate_keys(&s[src], &s[dst], slot, 100))
		;
	r_slot_assign(s, dst, slot);
}

/* ---- images ---------------------------------------------------------------- */

#define R_PAGE ((size_t)4096)
#define R_MAX_REGIONS 4

/*
 * A test image: region r is the pattern of seed (seed + r), except that
 * every page p with p % 7 == 3 is zero (ZERO in the image) and pages listed
 * in absent[] of region 0 are never written (ABSENT).
 */
struct r_image {
	char path[600];
	unsigned nregions;
	size_t len[R_MAX_REGIONS];
	uint8_t *expect[R_MAX_REGIONS];
	uint8_t id[FL_IMAGE_ID_LEN];
	struct fl_image *img;
};

R_FN bool r_page_absent(const uint64_t *absent, unsigned nabsent, uint64_t page)
{
	for (unsigned i = 0; i < nabsent; i++)
		if (absent[i] == page)
			return true;
	return false;
}

R_FN void r_image_make(struct r_image *im, const char *name, unsigned nregions, const size_t *lens, uint32_t seed,
		       const uint64_t *absent, unsigned nabsent)
{
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_NO_SYNC, .creator = "redis test" };
	struct fl_image_writer *w = NULL;

	memset(im, 0, sizeof(*im));
	T_ASSERT(nregions <= R_MAX_REGIONS);
	snprintf(im->path, sizeof(im->path), "%s/%s-%d.img", r_root_dir[0] ? r_root_dir : "/tmp", name, (int)getpid());
	im->nregions = nregions;
	T_OK(fl_image_writer_new(im->path, &wo, &w));
	for (unsigned r = 0; r < nregions; r++) {
		struct fl_image_region reg = { .sz = sizeof(reg), .start = 0x10000000ull * (r + 1), .length = lens[r],
					       .prot = 3, .mem = FL_MEM_ANON };
		snprintf(reg.name, sizeof(reg.name), "region-%u", r);
		im->len[r] = lens[r];
		im->expect[r] = u_image(lens[r], 0, seed + r);
		for (size_t p = 3; p < lens[r] / R_PAGE; p += 7)
			memset(im->expect[r] + p * R_PAGE, 0, R_PAGE);
		T_ASSERT(fl_image_writer_add_region(w, &reg) == (int)r);
	}
	for (unsigned r = 0; r < nregions; r++) {
		size_t np = lens[r] / R_PAGE;
		for (size_t p = 0; p < np; p++) {
			if (r == 0 && r_page_absent(absent, nabsent, p))
				continue;
			T_OK(fl_image_writer_put(w, r, p, 1, im->expect[r] + p * R_PAGE));
		}
	}
	T_OK(fl_image_writer_finish(w, im->id));
	T_OK(fl_image_open(im->path, 0, &im->img));
}

R_FN struct fl_redis_opts r_opts(const char *url, unsigned region, unsigned timeout_ms)
{
	struct fl_redis_opts o = { .sz = sizeof(o), .url = url, .region = region, .timeout_ms = timeout_ms,
				   .log = t_log_cb, .log_level = u_log_level() };
	return o;
}

R_FN void r_push(const struct r_image *im, const char *url)
{
	struct fl_redis_opts o = r_opts(url, 0, t_scaled_ms(10000));
	int r = fl_redis_push(im->img, &o, NULL, NULL);
	T_ASSERT(r == 0, "fl_redis_push(%s): %d (%s)", url, r, strerror(-r));
}

R_FN struct fl_store *r_store(const char *url, unsigned region, unsigned timeout_ms)
{
	struct fl_redis_opts o = r_opts(url, region, timeout_ms);
	struct fl_store *st = NULL;
	int r = fl_store_redis_new(&o, &st);
	T_ASSERT(r == 0 && st, "fl_store_redis_new(%s, region %u): %d (%s)", url, region, r, strerror(-r));
	return st;
}

R_FN struct fl_redis_stats r_stats(struct fl_store *st)
{
	struct fl_redis_stats rs = { .sz = sizeof(rs) };
	T_OK(fl_store_ctl(st, FL_REDIS_CTL_STATS, &rs));
	return rs;
}

R_FN void r_log_stats(const char *what, const struct fl_redis_stats *s)
{
	t_log("%s: %s, %u node(s), commands %llu, pages %llu, moved %llu, ask %llu, tryagain %llu, "
	      "refreshes %llu, connects %llu, connect errors %llu, io errors %llu, timeouts %llu, "
	      "bad %llu, missing %llu", what, s->cluster ? "cluster" : "single", s->nodes,
	      (unsigned long long)s->commands, (unsigned long long)s->pages_read,
	      (unsigned long long)s->moved, (unsigned long long)s->ask, (unsigned long long)s->tryagain,
	      (unsigned long long)s->map_refreshes, (unsigned long long)s->connects,
	      (unsigned long long)s->connect_errors, (unsigned long long)s->io_errors,
	      (unsigned long long)s->timeouts, (unsigned long long)s->bad_values,
	      (unsigned long long)s->missing);
}

/* A lazy anonymous region over a Redis store. */
struct r_lazy {
	struct fl_engine *e;
	struct fl_store *st;
	struct fl_region *reg;
	uint8_t *base;
	size_t len;
};

R_FN void r_lazy_open(struct r_lazy *l, const char *url, unsigned region, unsigned timeout_ms,
		      unsigned threads, unsigned rflags)
{
	static const struct u_cfg anon = { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING };
	memset(l, 0, sizeof(*l));
	l->st = r_store(url, region, timeout_ms);
	l->len = (size_t)fl_store_size(l->st);
	l->e = u_engine(0, threads);
	l->reg = u_region(l->e, &anon, l->len, l->st, rflags);
	l->base = fl_region_addr(l->reg);
}

R_FN void r_lazy_close(struct r_lazy *l)
{
	fl_region_free(l->reg);
	fl_engine_free(l->e);
	fl_store_unref(l->st);
	memset(l, 0, sizeof(*l));
}

/* The key of a page, as the store names it. */
R_FN void r_page_key(char *out, size_t len, const char *prefix, const uint8_t id[FL_IMAGE_ID_LEN], unsigned region,
		     uint64_t page)
{
	char hex[2 * FL_IMAGE_ID_LEN + 1];
	fl_image_id_format(id, hex);
	snprintf(out, len, "%s:{%s:%u:%llu}:%llu", prefix, hex, region, (unsigned long long)(page / 512),
		 (unsigned long long)page);
}

#endif
