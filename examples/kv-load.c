// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * kv-load: a load generator for kv-server. N connections send SET and GET
 * requests for random keys for a while; at the end it prints requests per
 * second and latency percentiles (p50, p99, max) — run it while the server
 * saves (BGSAVE) to see what a save costs the clients.
 *
 * Every value is "<key>:<counter>:<key>", so any value read back (or found
 * in a saved image) can be checked for tearing; --check fails on a
 * malformed value.
 *
 *   kv-load --port N [--conns N] [--seconds S] [--keys N] [--prefix P]
 *           [--set-pct N] [--bgsave-at S [--incr]]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define MAX_SAMPLES (1u << 20)

struct cfg {
	int port, conns, keys, set_pct;
	double seconds, bgsave_at;
	bool incr;
	const char *prefix;
};

struct worker {
	const struct cfg *c;
	pthread_t th;
	uint64_t *lat;
	size_t nlat;
	uint64_t ops, bad;
	int err;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int dial(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Send one request line, read one reply line. */
static int request(int fd, const char *req, char *reply, size_t len)
{
	size_t n = strlen(req), have = 0;

	if (write(fd, req, n) != (ssize_t)n)
		return -1;
	while (have < len - 1) {
		ssize_t r = read(fd, reply + have, 1);
		if (r <= 0)
			return -1;
		if (reply[have++] == '\n')
			break;
	}
	reply[have] = '\0';
	return 0;
}

/* "<key>:<n>:<key>" */
static bool well_formed(const char *key, const char *val)
{
	size_t kl = strlen(key);
	const char *p = val, *q;

	if (strncmp(p, key, kl) || p[kl] != ':')
		return false;
	p += kl + 1;
	q = strchr(p, ':');
	return q && q > p && !strncmp(q + 1, key, kl) && q[1 + kl] == '\n';
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct cfg *c = w->c;
	uint64_t x = (uint64_t)(uintptr_t)w ^ now_ns(), end = now_ns() + (uint64_t)(c->seconds * 1e9), counter = 0;
	char req[512], reply[512], key[64];
	int fd = dial(c->port);

	if (fd < 0) {
		w->err = errno;
		return NULL;
	}
	while (now_ns() < end) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		snprintf(key, sizeof(key), "%s%llu", c->prefix, (unsigned long long)(x % (uint64_t)c->keys));
		bool set = (int)((x >> 32) % 100) < c->set_pct;
		if (set)
			snprintf(req, sizeof(req), "SET %s %s:%llu:%s\n", key, key, (unsigned long long)++counter, key);
		else
			snprintf(req, sizeof(req), "GET %s\n", key);
		uint64_t t0 = now_ns();
		if (request(fd, req, reply, sizeof(reply))) {
			w->err = EPIPE;
			break;
		}
		if (w->nlat < MAX_SAMPLES)
			w->lat[w->nlat++] = now_ns() - t0;
		w->ops++;
		if (!set && reply[0] == '$' && !well_formed(key, reply + 1))
			w->bad++;
		if (set && strcmp(reply, "+OK\n"))
			w->bad++;
	}
	close(fd);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	struct cfg c = { .conns = 4, .keys = 100000, .set_pct = 50, .seconds = 5, .bgsave_at = -1, .prefix = "k" };
	struct worker w[MAX_CONNS] = { 0 };
	uint64_t ops = 0, bad = 0, *all;
	size_t nall = 0;
	double t;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			c.port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
			c.conns = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			c.seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--keys") && i + 1 < argc)
			c.keys = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--set-pct") && i + 1 < argc)
			c.set_pct = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
			c.prefix = argv[++i];
		else if (!strcmp(argv[i], "--bgsave-at") && i + 1 < argc)
			c.bgsave_at = atof(argv[++i]);
		else if (!strcmp(argv[i], "--incr"))
			c.incr = true;
		else {
			fprintf(stderr, "usage: kv-load --port N [--conns N] [--seconds S] [--keys N] [--prefix P]\n"
					"               [--set-pct N] [--bgsave-at S [--incr]]\n");
			return 2;
		}
	}
	if (c.port <= 0 || c.conns < 1 || c.conns > MAX_CONNS || c.keys < 1)
		return fprintf(stderr, "kv-load: bad --port, --conns (1-%d) or --keys\n", MAX_CONNS), 2;
	uint64_t t0 = now_ns();
	for (int i = 0; i < c.conns; i++) {
		w[i].c = &c;
		w[i].lat = malloc(MAX_SAMPLES * sizeof(uint64_t));
		if (!w[i].lat || pthread_create(&w[i].th, NULL, worker_main, &w[i]))
			return perror("kv-load"), 1;
	}
	if (c.bgsave_at >= 0) {
		char reply[512];
		int fd;
		struct timespec ts = { (time_t)c.bgsave_at, (long)((c.bgsave_at - (time_t)c.bgsave_at) * 1e9) };
		nanosleep(&ts, NULL);
		fd = dial(c.port);
		if (fd < 0 || request(fd, c.incr ? "BGSAVE INCR\n" : "BGSAVE\n", reply, sizeof(reply)))
			return perror("kv-load: BGSAVE"), 1;
		printf("kv-load: BGSAVE at %.1f s: %s", c.bgsave_at, reply);
		close(fd);
	}
	int failed = 0;
	for (int i = 0; i < c.conns; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].err && !failed)
			failed = fprintf(stderr, "kv-load: connection %d: %s\n", i, strerror(w[i].err)) | 1;
		ops += w[i].ops;
		bad += w[i].bad;
	}
	if (failed) {
		for (int i = 0; i < c.conns; i++)
			free(w[i].lat);
		return 1;
	}
	t = (double)(now_ns() - t0) / 1e9;
	all = malloc(ops * sizeof(uint64_t) + 1);
	for (int i = 0; i < c.conns; i++) {
		memcpy(all + nall, w[i].lat, w[i].nlat * sizeof(uint64_t));
		nall += w[i].nlat;
		free(w[i].lat);
	}
	qsort(all, nall, sizeof(uint64_t), cmp_u64);
	printf("kv-load: %llu requests in %.1f s: %.0f req/s; latency p50 %.0f us, p99 %.0f us, max %.0f us; "
	       "%llu bad replies\n",
	       (unsigned long long)ops, t, (double)ops / t, nall ? (double)all[nall / 2] / 1e3 : 0,
	       nall ? (double)all[nall * 99 / 100] / 1e3 : 0, nall ? (double)all[nall - 1] / 1e3 : 0,
	       (unsigned long long)bad);
	free(all);
	return bad ? 1 : 0;
}
