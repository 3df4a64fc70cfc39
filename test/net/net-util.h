/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers for the page-server tests (header-only, included once per
 * program): pattern images on disk, a page server in a thread or in a
 * separate process (spawned, so killing it is a real server crash), remote
 * stores, and test certificates made with certtool.
 */
#ifndef FL_TEST_NET_UTIL_H
#define FL_TEST_NET_UTIL_H

#include "util.h"

#include <spawn.h>
#include <sys/stat.h>

extern char **environ;

#define N_MIB ((size_t)1 << 20)

/* ---- images ------------------------------------------------------------------ */

/* Is page p of a test image all zeros? (single zero pages and a 64-page run) */
U_FN bool n_zero_page(size_t p)
{
	return p % 13 == 5 || (p % 4096) / 64 == 7;
}

/* The expected bytes of a region: the pattern of `seed`, with the zero pages cleared. */
U_FN uint8_t *n_expect(size_t len, uint32_t seed)
{
	uint8_t *b = u_image(len, 0, seed);
	for (size_t p = 0; p < len / U_PAGE; p++)
		if (n_zero_page(p))
			memset(b + p * U_PAGE, 0, U_PAGE);
	return b;
}

/*
 * Write an image with `nregions` regions of `len` bytes each; region i holds
 * n_expect(len, seed + i). `absent_from` (region 0 only) leaves the pages from
 * that page on unwritten (absent); pass SIZE_MAX for none.
 */
U_FN void n_write_image(const char *path, unsigned nregions, size_t len, uint32_t seed, size_t absent_from)
{
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC, .creator = "net test" };
	struct fl_image_writer *w = NULL;

	T_OK(fl_image_writer_new(path, &o, &w));
	for (unsigned i = 0; i < nregions; i++) {
		struct fl_image_region rg = { .sz = sizeof(rg), .start = 0x10000000ull * (i + 1), .length = len, .prot = 3 };
		snprintf(rg.name, sizeof(rg.name), "region%u", i);
		T_ASSERT(fl_image_writer_add_region(w, &rg) == (int)i);
	}
	for (unsigned i = 0; i < nregions; i++) {
		uint8_t *b = n_expect(len, seed + i);
		size_t pages = len / U_PAGE;
		if (i == 0 && absent_from < pages)
			pages = absent_from;
		for (size_t p = 0; p < pages; p += 256) {
			size_t k = pages - p < 256 ? pages - p : 256;
			T_OK(fl_image_writer_put(w, i, p, k, b + p * U_PAGE));
		}
		munmap(b, len);
	}
	T_OK(fl_image_writer_finish(w, NULL));
}

/* ---- servers -------------------------------------------------------------------- */

struct n_server {
	struct fl_image *img;
	struct fl_server *srv;
	pthread_t tid;
	int port;
	char addr[64];
	int run_result;
};

U_FN void *n_server_main(void *arg)
{
	struct n_server *s = arg;
	s->run_result = fl_server_run(s->srv);
	return NULL;
}

/* Serve `path` from a thread of this process. opts may be NULL (plain, defaults). */
U_FN void n_server_start(struct n_server *s, const char *path, const struct fl_server_opts *opts)
{
	struct fl_server_opts o = { .sz = sizeof(o), .listen = "127.0.0.1:0" };

	if (opts)
		o = *opts;
	if (!o.listen)
		o.listen = "127.0.0.1:0";
	if (!o.log) {
		o.log = t_log_cb;
		o.log_level = u_log_level();
	}
	memset(s, 0, sizeof(*s));
	T_OK(fl_image_open(path, 0, &s->img));
	T_OK(fl_server_new(s->img, &o, &s->srv));
	s->port = fl_server_port(s->srv);
	T_ASSERT(s->port > 0);
	snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", s->port);
	T_ASSERT(pthread_create(&s->tid, NULL, n_server_main, s) == 0);
}

U_FN void n_server_stop(struct n_server *s)
{
	T_OK(fl_server_stop(s->srv));
	pthread_join(s->tid, NULL);
	T_ASSERT(s->run_result == 0, "fl_server_run: %d", s->run_result);
	fl_server_free(s->srv);
	fl_image_close(s->img);
	s->srv = NULL;
}

/*
 * A server in its own process: this program re-executed with
 * "--serve IMAGE ADDR [BULK_RATE]" (posix_spawn shares the address space
 * until exec, so an engine running here sees no fork). Returns its pid;
 * *ret_port gets the port it listens on.
 */
U_FN pid_t n_spawn_server(const char *image, const char *listen, uint64_t bulk_rate, int *ret_port)
{
	char exe[4096], rate[32], line[64];
	char *argv[] = { exe, (char *)"--serve", (char *)image, (char *)listen, rate, NULL };
	posix_spawn_file_actions_t fa;
	int pfd[2], port = 0;
	ssize_t n, got = 0;
	pid_t pid;

	/* /proc/self/exe, not its path: a rebuild may replace the file. */
	snprintf(exe, sizeof(exe), "/proc/self/exe");
	snprintf(rate, sizeof(rate), "%llu", (unsigned long long)bulk_rate);
	T_ASSERT(pipe(pfd) == 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addclose(&fa, pfd[0]);
	n = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
	T_ASSERT(n == 0, "posix_spawn: %s", strerror((int)n));
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	/* The child prints its port once it listens. */
	while (got < (ssize_t)sizeof(line) - 1) {
		n = read(pfd[0], line + got, 1);
		if (n <= 0 || line[got] == '\n')
			break;
		got++;
	}
	line[got] = '\0';
	close(pfd[0]);
	port = atoi(line);
	T_ASSERT(port > 0, "spawned server did not start (\"%s\")", line);
	*ret_port = port;
	return pid;
}

U_FN void n_kill(pid_t pid)
{
	int st;
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

/* In main(), first: the spawned server's body. */
U_FN void n_serve_main(int argc, char **argv)
{
	struct fl_server_opts o = { .sz = sizeof(o) };
	struct fl_image *img;
	struct fl_server *srv;
	int r;

	if (argc < 5 || strcmp(argv[1], "--serve") != 0)
		return;
	o.listen = argv[3];
	o.bulk_rate = strtoull(argv[4], NULL, 10);
	o.log = t_log_cb;
	o.log_level = u_log_level();
	r = fl_image_open(argv[2], 0, &img);
	if (!r)
		r = fl_server_new(img, &o, &srv);
	/* Restarting on the port of a killed server: it is free at once
	 * (SO_REUSEADDR), but retry briefly anyway. */
	for (int i = 0; r == -EADDRINUSE && i < 50; i++) {
		t_sleep_ms(20);
		r = fl_server_new(img, &o, &srv);
	}
	if (r) {
		printf("error %d\n", r);
		exit(1);
	}
	printf("%d\n", fl_server_port(srv));
	fflush(stdout);
	exit(fl_server_run(srv) ? 1 : 0);
}

/* ---- clients ------------------------------------------------------------------- */

U_FN struct fl_remote_opts n_ropts(const char *addr, unsigned region)
{
	struct fl_remote_opts o = {
		.sz = sizeof(o), .addr = addr, .region = region, .log = t_log_cb, .log_level = u_log_level(),
		/* the library's default (5 s), stretched on a slow machine: a TLS
		 * handshake under TCG takes seconds */
		.timeout_ms = t_scaled_ms(5000),
	};
	return o;
}

U_FN struct fl_store *n_remote(const struct fl_remote_opts *o)
{
	struct fl_store *s = NULL;
	int r = fl_store_remote_new(o, &s);
	T_ASSERT(r == 0 && s, "fl_store_remote_new(%s): %d (%s)", o->addr, r, strerror(-r));
	return s;
}

U_FN struct fl_remote_stats n_rstats(struct fl_store *s)
{
	struct fl_remote_stats st = { .sz = sizeof(st) };
	T_OK(fl_store_ctl(s, FL_REMOTE_CTL_STATS, &st));
	return st;
}

U_FN void n_log_rstats(const char *what, struct fl_store *s)
{
	struct fl_remote_stats st = n_rstats(s);
	t_log("%s: requests %llu (urgent %llu), bytes %llu, connects %llu, reconnects %llu, resent %llu, "
	      "bad %llu, timeouts %llu, read-ahead %llu (used %llu)", what, (unsigned long long)st.requests,
	      (unsigned long long)st.requests_urgent, (unsigned long long)st.bytes_received,
	      (unsigned long long)st.connects, (unsigned long long)st.reconnects, (unsigned long long)st.resent,
	      (unsigned long long)st.bad_responses, (unsigned long long)st.timeouts,
	      (unsigned long long)st.readahead, (unsigned long long)st.readahead_hits);
}

static const struct u_cfg n_anon = { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING };

#endif
