// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * space-graph: a pointer-rich graph in a persistent address space
 * (<faultline/space.h>), used by other processes with no loading step.
 *
 *  1. Build: a space with one segment at a fixed address holds a graph of
 *     nodes whose edges are plain pointers (default 1 GiB); the root node
 *     is a named root; the space is committed (version 1) and freed.
 *  2. Query: a second process opens the space, attaches it read-only and
 *     answers a breadth-first search from the root at once: attaching maps
 *     nothing and reads nothing; the pages the search touches come from
 *     the image on first touch. The same search over a flat file would
 *     first read and rebuild the whole graph.
 *  3. Share: two processes attach the space at once, shared; one marks the
 *     nodes it reaches, the other sees the marks (the same page cache).
 *
 * Usage: space-graph [--size BYTES] [--dir DIR] [--depth N]
 * Build against an installed faultline:
 *	cc space-graph.c $(pkg-config --cflags --libs faultline) -o space-graph
 * Exit: 0 when every check held, 1 on a mismatch or an error, 77 when the
 * kernel does not allow userfaultfd (or MINOR faults on shmem) here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <faultline/faultline.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BASE 0x500000000000ull	/* the graph's address, in every process */
#define DEGREE 7

struct node {
	uint64_t id;
	uint64_t mark;			/* step 3: set by the writer */
	struct node *edge[DEGREE];	/* plain pointers into the segment */
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void say_error(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level == FL_LOG_ERROR)
		fprintf(stderr, "space-graph: %s\n", msg);
}

static int fail(const char *what, int r)
{
	fprintf(stderr, "space-graph: %s: %s\n", what, strerror(-r));
	return r == -EOPNOTSUPP || r == -EPERM ? 77 : 1;
}

/* Breadth-first search to `depth` hops from root: nodes reached, and
 * with `mark` set, their mark field written. */
static uint64_t bfs(struct node *root, uint64_t nodes, unsigned depth, uint64_t mark, uint64_t *ret_sum)
{
	struct node **queue = malloc(sizeof(*queue) * 1000000);
	uint8_t *seen = calloc(nodes / 8 + 1, 1);
	size_t head = 0, tail = 0, level_end;
	uint64_t reached = 0, sum = 0;

	if (!queue || !seen)
		exit(1);
	queue[tail++] = root;
	seen[root->id / 8] |= 1 << (root->id % 8);
	for (unsigned d = 0; d <= depth && head < tail; d++) {
		level_end = tail;
		while (head < level_end) {
			struct node *n = queue[head++];
			reached++;
			sum += n->id;
			if (mark)
				n->mark = mark;
			for (int e = 0; e < DEGREE && d < depth && tail < 1000000; e++) {
				struct node *m = n->edge[e];
				if (!(seen[m->id / 8] & (1 << (m->id % 8)))) {
					seen[m->id / 8] |= 1 << (m->id % 8);
					queue[tail++] = m;
				}
			}
		}
	}
	free(queue);
	free(seen);
	*ret_sum = sum;
	return reached;
}

static struct fl_space *open_space(const char *dir)
{
	struct fl_space_opts o = { .sz = sizeof(o), .flags = FL_SPACE_NO_SYNC, .log = say_error };
	struct fl_space *sp;
	int r = fl_space_open(dir, &o, &sp);

	if (r)
		exit(fail("open", r));
	return sp;
}

/* Step 2, in a process that never saw the graph. */
static int query(const char *dir, unsigned depth, uint64_t want_reached, uint64_t want_sum)
{
	struct fl_attach_opts ao = { .sz = sizeof(ao), .flags = FL_ATTACH_RDONLY };
	double t0 = now_ms(), t1, t2;
	struct fl_space *sp = open_space(dir);
	struct node *root;
	uint64_t *nodes, reached, sum;
	int r;

	r = fl_space_attach(sp, &ao);
	if (r)
		return fail("attach", r);
	t1 = now_ms();
	if (fl_space_root_get(sp, "root", (void **)&root) || fl_space_root_get(sp, "nodes", (void **)&nodes))
		return fail("root", -ENOENT);
	reached = bfs(root, *nodes, depth, 0, &sum);
	t2 = now_ms();
	printf("query: open + attach %.2f ms, first BFS (%u hops, %llu nodes) %.2f ms: no loading step\n",
	       t1 - t0, depth, (unsigned long long)reached, t2 - t1);
	fl_space_free(sp);
	fflush(stdout);
	return reached == want_reached && sum == want_sum ? 0 : 1;
}

int main(int argc, char **argv)
{
	uint64_t size = 1ull << 30, x = 0x9e3779b97f4a7c15ull, n, reached, sum, seen_sum;
	const char *dir = NULL;
	unsigned depth = 4;
	char tmp[] = "/tmp/space-graph-XXXXXX", path[4200];
	struct fl_space *sp;
	struct node *g;
	double t0;
	int r, st, pipefd[2];
	pid_t pid;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			char *end;
			size = strtoull(argv[++i], &end, 0);
			size <<= *end == 'G' ? 30 : *end == 'M' ? 20 : 0;
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--depth") && i + 1 < argc) {
			depth = (unsigned)atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: space-graph [--size BYTES[M|G]] [--dir DIR] [--depth N]\n");
			return 2;
		}
	}
	size = (size + (2u << 20) - 1) / (2u << 20) * (2u << 20);
	n = size / sizeof(struct node);
	if (!dir) {
		if (!mkdtemp(tmp))
			return fail("mkdtemp", -errno);
		snprintf(path, sizeof(path), "%s/graph", tmp);
		dir = path;
	}

	/* 1. Build and commit. */
	struct fl_space_opts so = { .sz = sizeof(so), .name = "graph", .dir = dir, .flags = FL_SPACE_NO_SYNC,
				    .log = say_error };
	struct fl_segment_opts go = { .sz = sizeof(go), .name = "nodes", .base = BASE, .length = size,
				      .mem = FL_MEM_SHMEM };
	r = fl_space_new(&so, &sp);
	if (!r)
		r = fl_space_segment_add(sp, &go);
	if (r >= 0)
		r = fl_space_attach(sp, NULL);
	if (r)
		return fail("create", r);
	t0 = now_ms();
	g = (struct node *)(uintptr_t)BASE;
	for (uint64_t i = 0; i < n; i++) {
		g[i].id = i;
		for (int e = 0; e < DEGREE; e++)
			g[i].edge[e] = &g[next(&x) % n];
	}
	/* The node count lives in the space too, in the node past the last. */
	uint64_t *count = (uint64_t *)&g[n - 1].mark;
	*count = n;
	fl_space_root_set(sp, "root", &g[0]);
	fl_space_root_set(sp, "nodes", count);
	reached = bfs(&g[0], n, depth, 0, &sum);
	printf("build: %llu nodes (%llu MiB) in %.0f ms; BFS %u hops from the root reaches %llu\n",
	       (unsigned long long)n, (unsigned long long)(size >> 20), now_ms() - t0, depth,
	       (unsigned long long)reached);
	t0 = now_ms();
	r = fl_space_commit(sp, NULL, NULL);
	if (r)
		return fail("commit", r);
	printf("commit: version 1 in %.0f ms\n", now_ms() - t0);
	fl_space_free(sp);

	/* 2. Another process queries it at once. */
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(query(dir, depth, reached, sum));
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		return fprintf(stderr, "space-graph: the query process failed\n"), 1;

	/* 3. Two processes attached at once: the child marks, the parent sees. */
	sp = open_space(dir);
	if (pipe(pipefd))
		return fail("pipe", -errno);
	pid = fork();
	if (pid == 0) {
		struct node *root;
		char c = 1;
		if (fl_space_attach(sp, NULL) || fl_space_root_get(sp, "root", (void **)&root))
			_exit(1);
		bfs(root, n, 2, 0xfeed, &seen_sum);
		_exit(write(pipefd[1], &c, 1) == 1 ? 0 : 1);
	}
	r = fl_space_attach(sp, NULL);
	if (r)
		return fail("attach", r);
	char c;
	if (read(pipefd[0], &c, 1) != 1 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		return fprintf(stderr, "space-graph: the writing process failed\n"), 1;
	uint64_t marked = 0;
	for (int e = 0; e < DEGREE; e++)
		marked += g[0].edge[e]->mark == 0xfeed;
	printf("share: the other process marked the root's neighbours; this one sees %llu of %d marked\n",
	       (unsigned long long)marked, DEGREE);
	fl_space_free(sp);
	if (dir == path) {
		char cmd[4300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
		if (system(cmd))
			fprintf(stderr, "space-graph: could not remove %s\n", tmp);
	}
	return marked == DEGREE && g != NULL ? 0 : 1;
}
