// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench space: address spaces (<faultline/space.h>).
 *
 *  (a) attach: a space of 4 segments / 1 GiB and one of a single 64 GiB
 *      segment, attached and detached alternately; attach_flat is the
 *      ratio of their attach times (attach costs O(segments), not O(bytes):
 *      goal <= 1.5, and attach_us_1g <= 100).
 *  (b) switch between two spaces of 4 segments at the same addresses, vs a
 *      pipe ping-pong round trip between two processes (the cost of
 *      handing work to another address space the classic way): ratio =
 *      switch_us / pipe_rtt_us, goal <= 1.0.
 *  (c) a pointer-rich graph (default 1 GiB) committed in a persistent
 *      space: a new process opens, attaches and answers a BFS query from
 *      the root, vs a process that reads the same graph from a flat file
 *      (an edge list) and rebuilds it in memory first: speedup =
 *      load_first_query_ms / attach_first_query_ms, goal >= 100; and a
 *      whole-graph traversal once everything is in memory, attached vs
 *      rebuilt: traverse_ratio, goal <= 1.3.
 *  (d) 8 processes attached to one 1 GiB space, every page read: the Pss
 *      of all their mappings of it over its size, pss_ratio, goal <= 1.1;
 *      in-process (the workers inherit the space) and through faultlined
 *      (pss_ratio_daemon: 8 clients, the daemon's share included).
 */
#include "bench.h"
#include "util.h"

#include <faultline/faultline.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BASE 0x540000000000ull

static const char usage[] =
	"Usage: faultline bench space [--json] [--reps N] [--part a|b|c|d] [--size BYTES]\n"
	"\n"
	"(a) attach time of a 4-segment 1 GiB space vs a 64 GiB one;\n"
	"(b) switch between two 4-segment spaces vs a pipe round trip between\n"
	"two processes (medians over N repetitions, default 50);\n"
	"(c) a pointer-rich graph of --size (default 1G): attach + first query\n"
	"vs reading and rebuilding it from a flat file, and a full traversal;\n"
	"(d) Pss of 8 processes attached to one --size space, in-process and\n"
	"through faultlined (started by the benchmark, as in bench daemon).\n"
	"Scratch files go to $TMPDIR (default /var/tmp).\n";

static struct fl_space *make(const char *name, unsigned nseg, uint64_t seg_len)
{
	struct fl_space_opts o = { .sz = sizeof(o), .name = name };
	struct fl_space *sp;
	char n[16];

	if (fl_space_new(&o, &sp))
		return NULL;
	for (unsigned i = 0; i < nseg; i++) {
		struct fl_segment_opts so = { .sz = sizeof(so), .name = n, .base = BASE + i * (seg_len + (1ull << 30)),
					      .length = seg_len, .mem = FL_MEM_SHMEM };
		snprintf(n, sizeof(n), "s%u", i);
		if (fl_space_segment_add(sp, &so) < 0)
			return fl_space_free(sp);
	}
	return sp;
}

static int attach_us(struct fl_space *sp, double *ret)
{
	uint64_t t0 = fl__now_ns();
	int r = fl_space_attach(sp, NULL);

	*ret = (fl__now_ns() - t0) / 1e3;
	if (!r) {
		*(volatile char *)(uintptr_t)BASE = 1;	/* it is there */
		r = fl_space_detach(sp);
	}
	return r;
}

/* Median round trip (us) of one byte there and back between two processes. */
static double pipe_rtt_us(unsigned reps)
{
	int ab[2], ba[2];
	double *v = calloc(reps, sizeof(*v)), med;
	char c = 0;
	pid_t pid;

	if (!v || pipe(ab) || pipe(ba))
		return -1;
	pid = fork();
	if (pid == 0) {
		close(ab[1]);
		close(ba[0]);
		while (read(ab[0], &c, 1) == 1 && write(ba[1], &c, 1) == 1)
			;
		_exit(0);
	}
	close(ab[0]);
	close(ba[1]);
	for (unsigned i = 0; i < reps; i++) {
		uint64_t t0 = fl__now_ns();
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			break;
		v[i] = (fl__now_ns() - t0) / 1e3;
	}
	close(ab[1]);
	waitpid(pid, NULL, 0);
	close(ba[0]);
	med = stat_of(v, reps).med;
	free(v);
	return med;
}


/* ---- (c) a graph --------------------------------------------------------- */

#define GBASE 0x560000000000ull
#define DEGREE 7
#define QUERY_DEPTH 4

struct gnode {
	uint64_t id;
	struct gnode *edge[DEGREE];
};

static uint64_t xs(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* BFS from root to `depth` hops (UINT32_MAX: all): nodes reached. */
static uint64_t gbfs(struct gnode *root, uint64_t n, unsigned depth)
{
	struct gnode **q = malloc(n * sizeof(*q));
	uint8_t *seen = calloc(n / 8 + 1, 1);
	uint64_t head = 0, tail = 0;

	if (!q || !seen) {
		free(q);
		free(seen);
		return 0;
	}
	q[tail++] = root;
	seen[root->id / 8] |= (uint8_t)(1 << (root->id % 8));
	for (unsigned d = 0; d <= depth && head < tail; d++) {
		uint64_t end = tail;
		while (head < end) {
			struct gnode *g = q[head++];
			for (int e = 0; e < DEGREE && d < depth; e++) {
				struct gnode *m = g->edge[e];
				if (!(seen[m->id / 8] & (1 << (m->id % 8)))) {
					seen[m->id / 8] |= (uint8_t)(1 << (m->id % 8));
					q[tail++] = m;
				}
			}
		}
	}
	free(q);
	free(seen);
	return tail;
}

/* The graph's edges as node numbers: what a flat file holds. */
static void gbuild(struct gnode *g, uint64_t n, uint32_t *flat)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (uint64_t i = 0; i < n; i++) {
		g[i].id = i;
		for (int e = 0; e < DEGREE; e++) {
			uint64_t t = xs(&x) % n;
			g[i].edge[e] = &g[t];
			flat[i * DEGREE + e] = (uint32_t)t;
		}
	}
}

struct gresult {
	double attach_first_ms, load_first_ms, traverse_space_ms, traverse_heap_ms;
	uint64_t reached_space, reached_heap;
};

/* In a fresh process: open + attach + first query, then a full traversal. */
static void query_space(const char *dir, int out)
{
	struct fl_attach_opts ao = { .sz = sizeof(ao), .flags = FL_ATTACH_RDONLY };
	struct gresult r = { 0 };
	uint64_t t0 = fl__now_ns(), *count;
	struct fl_space_opts o = { .sz = sizeof(o) };
	struct fl_space *sp;
	struct gnode *root;

	if (fl_space_open(dir, &o, &sp) || fl_space_attach(sp, &ao) || fl_space_root_get(sp, "root", (void **)&root) ||
	    fl_space_root_get(sp, "count", (void **)&count))
		_exit(1);
	r.reached_space = gbfs(root, *count, QUERY_DEPTH);
	r.attach_first_ms = (fl__now_ns() - t0) / 1e6;
	gbfs(root, *count, UINT32_MAX);	/* every page in */
	t0 = fl__now_ns();
	gbfs(root, *count, UINT32_MAX);
	r.traverse_space_ms = (fl__now_ns() - t0) / 1e6;
	_exit(write(out, &r, sizeof(r)) == sizeof(r) ? 0 : 1);
}

/* In a fresh process: read the flat file, rebuild, first query, full traversal. */
static void query_flat(const char *path, uint64_t n, int out)
{
	struct gresult r = { 0 };
	uint64_t t0 = fl__now_ns();
	uint32_t *flat = malloc(n * DEGREE * sizeof(uint32_t));
	struct gnode *g = malloc(n * sizeof(*g));
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (!flat || !g || fd < 0 || fl__pread_full(fd, flat, n * DEGREE * sizeof(uint32_t), 0))
		_exit(1);
	close(fd);
	for (uint64_t i = 0; i < n; i++) {
		g[i].id = i;
		for (int e = 0; e < DEGREE; e++)
			g[i].edge[e] = &g[flat[i * DEGREE + e]];
	}
	r.reached_heap = gbfs(&g[0], n, QUERY_DEPTH);
	r.load_first_ms = (fl__now_ns() - t0) / 1e6;
	gbfs(&g[0], n, UINT32_MAX);
	t0 = fl__now_ns();
	gbfs(&g[0], n, UINT32_MAX);
	r.traverse_heap_ms = (fl__now_ns() - t0) / 1e6;
	_exit(write(out, &r, sizeof(r)) == sizeof(r) ? 0 : 1);
}

static int run_child(void (*fn)(const char *, int), const char *arg, struct gresult *res)
{
	int p[2], st;
	pid_t pid;

	if (pipe(p))
		return -errno;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(p[0]);
		fn(arg, p[1]);
	}
	close(p[1]);
	struct gresult r;
	ssize_t got = read(p[0], &r, sizeof(r));
	close(p[0]);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) || got != sizeof(r))
		return -EIO;
	if (r.attach_first_ms) {
		res->attach_first_ms = r.attach_first_ms;
		res->traverse_space_ms = r.traverse_space_ms;
		res->reached_space = r.reached_space;
	} else {
		res->load_first_ms = r.load_first_ms;
		res->traverse_heap_ms = r.traverse_heap_ms;
		res->reached_heap = r.reached_heap;
	}
	return 0;
}

static uint64_t flat_nodes;
static void query_flat_arg(const char *path, int out)
{
	query_flat(path, flat_nodes, out);
}

static int graph_part(uint64_t size, struct gresult *res)
{
	char dir[4096], sdir[4200], fpath[4200];
	struct fl_space_opts so = { .sz = sizeof(so), .name = "graph", .dir = sdir, .flags = FL_SPACE_NO_SYNC };
	struct fl_segment_opts go = { .sz = sizeof(go), .name = "nodes", .base = GBASE, .mem = FL_MEM_SHMEM };
	uint64_t n;
	uint32_t *flat = NULL;
	struct fl_space *sp = NULL;
	int r, slot = -1, fd;

	size = (size + (2u << 20) - 1) / (2u << 20) * (2u << 20);
	n = size / sizeof(struct gnode) - 1;	/* the last slot holds the count */
	go.length = size;
	r = scratch_dir(temp_dir(), "fl-bench-space", dir, sizeof(dir), &slot);
	if (r)
		return r;
	snprintf(sdir, sizeof(sdir), "%s/graph", dir);
	snprintf(fpath, sizeof(fpath), "%s/graph.edges", dir);
	flat = malloc(n * DEGREE * sizeof(uint32_t));
	r = flat ? fl_space_new(&so, &sp) : -ENOMEM;
	if (!r)
		r = fl_space_segment_add(sp, &go);
	if (r >= 0)
		r = fl_space_attach(sp, NULL);
	if (!r) {
		struct gnode *g = (struct gnode *)(uintptr_t)GBASE;
		uint64_t *count = (uint64_t *)&g[n];
		gbuild(g, n, flat);
		*count = n;
		fl_space_root_set(sp, "root", &g[0]);
		fl_space_root_set(sp, "count", count);
		r = fl_space_commit(sp, NULL, NULL);
	}
	sp = fl_space_free(sp);
	if (!r) {
		fd = open(fpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		r = fd < 0 ? -errno : fl__pwrite_full(fd, flat, n * DEGREE * sizeof(uint32_t), 0);
		if (fd >= 0)
			close(fd);
	}
	free(flat);
	flat_nodes = n;
	/* Both read files in the page cache (just written): the same footing. */
	if (!r)
		r = run_child(query_space, sdir, res);
	if (!r)
		r = run_child(query_flat_arg, fpath, res);
	if (!r && (res->reached_space != res->reached_heap || !res->reached_space))
		r = -EBADMSG;	/* the two graphs answered differently */
	{
		char f[4300];
		snprintf(f, sizeof(f), "%s/manifest", sdir);
		unlink(f);
		snprintf(f, sizeof(f), "%s/nodes.v1.img", sdir);
		unlink(f);
		rmdir(sdir);
		unlink(fpath);
		rmdir(dir);
	}
	cleanup_drop(slot);
	return r;
}

/* ---- (d) Pss of 8 attached processes --------------------------------------- */

#define PSS_PROCS 8

/*
 * A worker of part (d), once attached: the first writes every page, each
 * reads every page, says so on `ready` and stays until `go` closes (so its
 * mappings are measured while all of them hold the pages).
 */
static void pss_worker(unsigned i, uint64_t size, int ready, int go)
{
	volatile uint8_t *m = (volatile uint8_t *)(uintptr_t)GBASE;
	uint64_t sum = 0;
	char c;

	for (uint64_t off = 0; off < size; off += 4096) {
		if (i == 0)
			m[off] = (uint8_t)(off >> 12);
		sum += m[off];
	}
	c = (char)sum;
	if (write(ready, &c, 1) != 1)
		_exit(1);
	(void)!read(go, &c, 1);
	_exit(0);
}

static int pss_part(uint64_t size, double *ret_ratio, double *ret_mib)
{
	struct fl_space_opts so = { .sz = sizeof(so), .name = "pss" };
	struct fl_segment_opts go = { .sz = sizeof(go), .name = "fl-bench-pss", .base = GBASE, .length = size,
				      .mem = FL_MEM_SHMEM };
	int ready[2], go_pipe[2], r;
	pid_t pids[PSS_PROCS];
	struct fl_space *sp;
	uint64_t pss = 0;
	char c;

	r = fl_space_new(&so, &sp);
	if (!r)
		r = fl_space_segment_add(sp, &go);
	if (r < 0)
		return r;
	if (pipe(ready) || pipe(go_pipe))
		return -errno;
	fflush(stdout);
	/* The workers inherit the space (its page cache) before attaching. */
	for (unsigned i = 0; i < PSS_PROCS; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(ready[0]);
			close(go_pipe[1]);
			if (fl_space_attach(sp, NULL))
				_exit(1);
			pss_worker(i, size, ready[1], go_pipe[0]);
		}
	}
	close(ready[1]);
	close(go_pipe[0]);
	for (unsigned i = 0; i < PSS_PROCS; i++)
		if (read(ready[0], &c, 1) != 1)
			r = -EIO;
	for (unsigned i = 0; i < PSS_PROCS && !r; i++)
		pss += mappings_pss(pids[i], GBASE, GBASE + size, "memfd:fl-bench-pss");
	close(go_pipe[1]);
	for (unsigned i = 0; i < PSS_PROCS; i++)
		waitpid(pids[i], NULL, 0);
	close(ready[0]);
	fl_space_free(sp);
	*ret_mib = pss / 1048576.0;
	*ret_ratio = (double)pss / (double)size;
	return r;
}

/*
 * The same through faultlined (fl_client_space_attach(3)): 8 client
 * processes attach one persistent space the daemon owns, read-write and
 * shared; the first writes every page, all read every page. The Pss is
 * that of the clients' mappings plus the daemon's mappings of the
 * segment's page cache (its fill alias), over the space's size.
 */
static int pss_daemon_part(uint64_t size, double *ret_ratio, double *ret_mib)
{
	struct fl_segment_opts go = { .sz = sizeof(go), .name = "fl-bench-pssd", .base = GBASE, .length = size,
				      .mem = FL_MEM_SHMEM };
	char spaces[160], sdir[200];
	struct fl_space_opts so = { .sz = sizeof(so), .name = "pssd", .dir = sdir, .flags = FL_SPACE_NO_SYNC };
	const char *extra[] = { "--spaces", spaces, NULL };
	int ready[2] = { -1, -1 }, go_pipe[2] = { -1, -1 }, r;
	pid_t pids[PSS_PROCS] = { 0 };
	struct fl_space *sp = NULL;
	struct denv e;
	uint64_t pss = 0;
	char c;

	r = denv_setup(&e);
	if (r)
		return r;
	snprintf(spaces, sizeof(spaces), "%s/spaces", e.dir);
	snprintf(sdir, sizeof(sdir), "%s/pssd", spaces);
	r = mkdir(spaces, 0700) ? -errno : 0;
	if (!r)
		r = fl_space_new(&so, &sp);
	if (!r)
		r = fl_space_segment_add(sp, &go);
	if (r >= 0)
		r = fl_space_commit(sp, NULL, NULL);
	sp = fl_space_free(sp);
	if (!r)
		r = denv_start(&e, extra);
	if (!r && (pipe(ready) || pipe(go_pipe)))
		r = -errno;
	fflush(stdout);
	for (unsigned i = 0; i < PSS_PROCS && !r; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			r = -errno;
			pids[i] = 0;
			break;
		}
		if (pids[i] == 0) {
			struct fl_client_opts co = { .sz = sizeof(co), .socket = e.sock };
			struct fl_client *cl;

			close(ready[0]);
			close(go_pipe[1]);
			if (fl_client_connect(&co, &cl) || fl_client_attach(cl) ||
			    fl_client_space_attach(cl, "pssd", NULL))
				_exit(1);
			pss_worker(i, size, ready[1], go_pipe[0]);
		}
	}
	if (ready[1] >= 0)
		close(ready[1]);
	if (go_pipe[0] >= 0)
		close(go_pipe[0]);
	for (unsigned i = 0; i < PSS_PROCS && !r; i++)
		if (read(ready[0], &c, 1) != 1)
			r = -EIO;
	for (unsigned i = 0; i < PSS_PROCS && !r; i++)
		pss += mappings_pss(pids[i], GBASE, GBASE + size, NULL);
	if (!r)	/* faultlined names a shared segment's page cache fl-space:NAME:INDEX */
		pss += mappings_pss(e.pid, 0, 0, "memfd:fl-space:pssd:");
	if (go_pipe[1] >= 0)
		close(go_pipe[1]);
	for (unsigned i = 0; i < PSS_PROCS; i++)
		if (pids[i] > 0)
			waitpid(pids[i], NULL, 0);
	if (ready[0] >= 0)
		close(ready[0]);
	denv_stop(&e);
	{
		char f[300];
		snprintf(f, sizeof(f), "%s/manifest", sdir);
		unlink(f);
		snprintf(f, sizeof(f), "%s/fl-bench-pssd.v1.img", sdir);
		unlink(f);
		rmdir(sdir);
		rmdir(spaces);
	}
	denv_remove(&e);
	*ret_mib = pss / 1048576.0;
	*ret_ratio = (double)pss / (double)size;
	return r;
}

int bench_space_main(int argc, char **argv)
{
	unsigned reps = 50;
	uint64_t size = 1ull << 30;
	bool json = false, part_a = true, part_b = true, part_c = true, part_d = true;
	struct fl_space *s1g = NULL, *s64g = NULL, *a = NULL, *b = NULL;
	double *v1 = NULL, *v64 = NULL, *vs = NULL, *vp = NULL;
	int r = 0;

	for (int i = 1; i < argc; i++) {
		uint64_t n;
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			if (fl__parse_uint(argv[++i], 2, 100000, &n))
				return cli_usage_error("--reps: a number from 2");
			reps = (unsigned)n;
		} else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			if (fl__parse_size(argv[++i], &size) || size < (4u << 20))
				return cli_usage_error("--size: a size of at least 4M");
		} else if (!strcmp(argv[i], "--part") && i + 1 < argc) {
			i++;
			part_a = !strcmp(argv[i], "a");
			part_b = !strcmp(argv[i], "b");
			part_c = !strcmp(argv[i], "c");
			part_d = !strcmp(argv[i], "d");
			if (!part_a && !part_b && !part_c && !part_d)
				return cli_usage_error("--part: a, b, c or d");
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return EXIT_OK;
		} else {
			return cli_usage_error("unknown option '%s' (see 'faultline bench space --help')", argv[i]);
		}
	}
	v1 = calloc(reps, sizeof(double));
	v64 = calloc(reps, sizeof(double));
	vs = calloc(reps, sizeof(double));
	vp = calloc(reps, sizeof(double));
	if (!v1 || !v64 || !vs || !vp) {
		r = -ENOMEM;
		goto out;
	}
	struct stat3 st1 = { 0 }, st64 = { 0 }, sts = { 0 };
	struct gresult gr = { 0 };
	double rtt = 0, pss_ratio = 0, pss_mib = 0, pssd_ratio = 0, pssd_mib = 0;
	bool no_switch = false;
	if (part_a) {
		s1g = make("a1g", 4, 256ull << 20);
		s64g = make("a64g", 1, 64ull << 30);
		if (!s1g || !s64g) {
			r = -ENOMEM;
			goto out;
		}
		/* The first attach also starts the space's engine: not measured. */
		double warm;
		r = attach_us(s1g, &warm);
		if (!r)
			r = attach_us(s64g, &warm);
		for (unsigned i = 0; i < reps && !r; i++) {
			r = attach_us(s1g, &v1[i]);
			if (!r)
				r = attach_us(s64g, &v64[i]);
		}
		if (r)
			goto out;
		st1 = stat_of(v1, reps);
		st64 = stat_of(v64, reps);
	}
	if (part_b) {
		a = make("sa", 4, 16ull << 20);
		b = make("sb", 4, 16ull << 20);
		if (!a || !b) {
			r = -ENOMEM;
			goto out;
		}
		r = fl_space_attach(b, NULL);
		if (!r)
			r = fl_space_switch(b, a, NULL);	/* both engines started */
		if (r == -EOPNOTSUPP) {
			/* Linux 6.1 (or masked): no UFFDIO_POISON, no switch. */
			no_switch = true;
			r = fl_space_detach(b);
		}
		for (unsigned i = 0; i < reps && !r && !no_switch; i++) {
			uint64_t t0 = fl__now_ns();
			r = fl_space_switch(i % 2 ? b : a, i % 2 ? a : b, NULL);
			vs[i] = (fl__now_ns() - t0) / 1e3;
			*(volatile char *)(uintptr_t)BASE = 1;
		}
		if (r)
			goto out;
		if (!no_switch)
			sts = stat_of(vs, reps);
		rtt = pipe_rtt_us(reps * 20);
		a = fl_space_free(a);
		b = fl_space_free(b);
	}
	if (part_c && (r = graph_part(size, &gr)))
		goto out;
	if (part_d && (r = pss_part(size, &pss_ratio, &pss_mib)))
		goto out;
	if (part_d && (r = pss_daemon_part(size, &pssd_ratio, &pssd_mib)))
		goto out;
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_u64(&j, "reps", reps);
		if (part_a) {
			json_stat(&j, "attach_us_1g", st1, 1);
			json_stat(&j, "attach_us_64g", st64, 1);
			json_num(&j, "attach_flat", st64.med / st1.med, 3);
		}
		if (part_b && no_switch) {
			json_null(&j, "switch_us");
			json_str(&j, "switch_unavailable", "the kernel lacks UFFDIO_POISON (Linux 6.6)");
			json_num(&j, "pipe_rtt_us", rtt, 1);
			json_null(&j, "ratio");
		} else if (part_b) {
			json_stat(&j, "switch_us", sts, 1);
			json_num(&j, "pipe_rtt_us", rtt, 1);
			json_num(&j, "ratio", sts.med / rtt, 3);
		}
		if (part_c || part_d)
			json_u64(&j, "size", size);
		if (part_c) {
			json_num(&j, "attach_first_query_ms", gr.attach_first_ms, 2);
			json_num(&j, "load_first_query_ms", gr.load_first_ms, 2);
			json_num(&j, "speedup", gr.load_first_ms / gr.attach_first_ms, 1);
			json_num(&j, "traverse_space_ms", gr.traverse_space_ms, 1);
			json_num(&j, "traverse_heap_ms", gr.traverse_heap_ms, 1);
			json_num(&j, "traverse_ratio", gr.traverse_space_ms / gr.traverse_heap_ms, 3);
			json_u64(&j, "query_nodes", gr.reached_space);
		}
		if (part_d) {
			json_num(&j, "pss_mib", pss_mib, 1);
			json_num(&j, "pss_ratio", pss_ratio, 3);
			json_num(&j, "pss_mib_daemon", pssd_mib, 1);
			json_num(&j, "pss_ratio_daemon", pssd_ratio, 3);
		}
		json_end(&j);
		json_finish(&j);
	} else {
		if (part_a)
			printf("(a) attach: 4 segments / 1 GiB %.1f us (%.1f-%.1f), 1 segment / 64 GiB %.1f us "
			       "(%.1f-%.1f): flat %.2f (goal <= 1.5; 1 GiB goal <= 100 us)\n", st1.med, st1.min, st1.max,
			       st64.med, st64.min, st64.max, st64.med / st1.med);
		if (part_b && no_switch)
			printf("(b) switch: unavailable, the kernel lacks UFFDIO_POISON (Linux 6.6); pipe round trip "
			       "%.1f us\n", rtt);
		else if (part_b)
			printf("(b) switch between two 4-segment spaces %.1f us (%.1f-%.1f), pipe round trip %.1f us: "
			       "ratio %.2f (goal <= 1.0)\n", sts.med, sts.min, sts.max, rtt, sts.med / rtt);
		if (part_c)
			printf("(c) graph of %llu MiB: attach + first query (%llu nodes) %.2f ms vs read + rebuild + "
			       "query %.2f ms: speedup %.1f (goal >= 100); full traversal %.1f ms vs %.1f ms: "
			       "traverse_ratio %.2f (goal <= 1.3)\n", (unsigned long long)(size >> 20),
			       (unsigned long long)gr.reached_space, gr.attach_first_ms, gr.load_first_ms,
			       gr.load_first_ms / gr.attach_first_ms, gr.traverse_space_ms, gr.traverse_heap_ms,
			       gr.traverse_space_ms / gr.traverse_heap_ms);
		if (part_d)
			printf("(d) %d processes attached to one %llu MiB space, every page read: Pss %.1f MiB, "
			       "pss_ratio %.3f (goal <= 1.1)\n", PSS_PROCS, (unsigned long long)(size >> 20), pss_mib,
			       pss_ratio);
		if (part_d)
			printf("(d) the same through faultlined (fl_client_space_attach), the daemon's share "
			       "included: Pss %.1f MiB, pss_ratio_daemon %.3f (goal <= 1.1)\n", pssd_mib, pssd_ratio);
	}
out:
	fl_space_free(s1g);
	fl_space_free(s64g);
	fl_space_free(a);
	fl_space_free(b);
	free(v1);
	free(v64);
	free(vs);
	free(vp);
	if (r)
		return cli_fail("bench space", r);
	return EXIT_OK;
}
