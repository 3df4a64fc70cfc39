// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline stats: what a running faultlined(8) is doing, from its STATS
 * document (fl_manager_stats(3)): the daemon's counters, one line per
 * client, the daemon-wide fault latency histogram and the forked children
 * not claimed yet. --json prints the document as the daemon sent it.
 */
#include "cli.h"

/* util.h's JSON writer has a json_null() of its own; jansson's is the one
 * this file uses (the writer is not used here). */
#define json_null cli_json_null_writer
#include "util.h"
#undef json_null

#include <faultline/faultline.h>

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SOCKET "/run/faultlined/faultlined.sock"
#define MIB (1024.0 * 1024.0)
#define BAR_WIDTH 40

static const char stats_usage[] =
	"Usage: faultline stats [--socket PATH] [--json]\n"
	"\n"
	"Show what a running faultlined is doing: the daemon's counters (clients,\n"
	"faults, uffd events, refused sessions, bad messages, resumed sessions,\n"
	"fault service latency), one line per client (ranges, memory served,\n"
	"faults, pages resolved and poisoned, latency, time its threads spent\n"
	"blocked in faults), the daemon-wide latency histogram and the forked\n"
	"children no process has claimed yet.\n"
	"\n"
	"Options:\n"
	"  -s, --socket PATH   the daemon's socket (default $FAULTLINED_SOCKET, else\n"
	"                      " DEFAULT_SOCKET ")\n"
	"      --json          print the daemon's JSON document as it is (one line)\n"
	"  -h, --help          show this help\n"
	"\n"
	"Exit status: 0 success, 1 error (no daemon, refused...), 2 usage error.\n";

/* ---- reading the document ----------------------------------------------------- */

static double num(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : 0;
}

static long long integer(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		return (long long)json_integer_value(v);
	return json_is_real(v) ? (long long)json_real_value(v) : 0;
}

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "?";
}

/* A duration in microseconds, short: "12.3", "456", "7890". */
static const char *fmt_us(double us, char *buf, size_t len)
{
	if (us < 100)
		snprintf(buf, len, "%.1f", us);
	else
		snprintf(buf, len, "%.0f", us);
	return buf;
}

static void fmt_uptime(double s, char *buf, size_t len)
{
	unsigned long long t = (unsigned long long)s;

	if (s < 60)
		snprintf(buf, len, "%.1f s", s);
	else if (t < 3600)
		snprintf(buf, len, "%llum %02llus", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, len, "%lluh %02llum", t / 3600, t / 60 % 60);
	else
		snprintf(buf, len, "%llud %02lluh", t / 86400, t / 3600 % 24);
}

/* ---- printing ------------------------------------------------------------------ */

static void print_daemon(const json_t *d)
{
	char up[32], p50[16], p99[16];

	fmt_uptime(num(d, "uptime_s"), up, sizeof(up));
	/* Percentiles of no sample are not 0.0 µs. */
	if (!integer(d, "faults_timed")) {
		snprintf(p50, sizeof(p50), "-");
		snprintf(p99, sizeof(p99), "-");
	} else {
		fmt_us(num(d, "lat_p50_us"), p50, sizeof(p50));
		fmt_us(num(d, "lat_p99_us"), p99, sizeof(p99));
	}
	printf("faultlined %s  pid %lld  up %s  clients %lld  faults %lld  p50 %s µs  p99 %s µs\n",
	       str(d, "version"), integer(d, "pid"), up, integer(d, "clients"), integer(d, "faults"), p50, p99);
	printf("  events: fork %lld  remap %lld  remove %lld  unmap %lld   refused %lld  bad messages %lld"
	       "  resumed %lld\n",
	       integer(d, "events_fork"), integer(d, "events_remap"), integer(d, "events_remove"),
	       integer(d, "events_unmap"), integer(d, "refused"), integer(d, "bad_messages"),
	       integer(d, "resumed"));
}

/* The serving columns of a client or unclaimed fork ("-" when no space). */
static void print_serving(const json_t *sv)
{
	char a[16], b[16], c[16];

	if (!json_is_object(sv)) {
		printf(" %8s %10s %10s %8s %7s %7s %7s %10s", "-", "-", "-", "-", "-", "-", "-", "-");
		return;
	}
	printf(" %8.1f %10lld %10lld %8lld %7s %7s %7s %10.1f", num(sv, "bytes") / MIB, integer(sv, "faults"),
	       integer(sv, "pages_resolved"), integer(sv, "pages_poisoned"),
	       fmt_us(num(sv, "lat_p50_us"), a, sizeof(a)), fmt_us(num(sv, "lat_p99_us"), b, sizeof(b)),
	       fmt_us(num(sv, "lat_max_us"), c, sizeof(c)), num(sv, "blocked_ms"));
}

static void print_serving_header(void)
{
	/* One more byte for the two of 'µ': the columns are 7 wide. */
	printf(" %8s %10s %10s %8s %8s %8s %8s %10s", "MiB", "faults", "resolved", "poisoned", "p50 µs",
	       "p99 µs", "max µs", "blocked ms");
}

static void print_clients(const json_t *clients)
{
	size_t i;
	json_t *c;

	if (!json_array_size(clients)) {
		printf("\nno clients\n");
		return;
	}
	printf("\n%6s %8s %6s %-11s %6s", "id", "pid", "uid", "kind", "ranges");
	print_serving_header();
	printf("\n");
	json_array_foreach(clients, i, c) {
		const json_t *sv = json_object_get(c, "serving");
		printf("%6lld %8lld %6lld %-11s %6lld", integer(c, "id"), integer(c, "pid"), integer(c, "uid"),
		       str(c, "kind"), integer(c, "ranges"));
		print_serving(sv);
		if (json_object_get(c, "forked_from"))
			printf("  fork of %lld", integer(c, "forked_from"));
		if (json_is_object(sv) && json_is_true(json_object_get(sv, "dead")))
			printf("  (dead)");
		printf("\n");
	}
}

static void print_forks(const json_t *forks)
{
	size_t i;
	json_t *f;

	if (!json_array_size(forks))
		return;
	printf("\nunclaimed forks: %zu\n%-13s", json_array_size(forks), "forked from");
	print_serving_header();
	printf("\n");
	json_array_foreach(forks, i, f) {
		printf("%-13lld", integer(f, "forked_from"));
		print_serving(json_object_get(f, "serving"));
		printf("\n");
	}
}

/*
 * The daemon-wide histogram: the daemon's log2-linear buckets (8 per power
 * of two) merged into one row per power of two, from the first non-empty
 * one to the last, each "≤ upper µs  count  bar".
 */
static void print_histogram(const json_t *hist, long long faults)
{
	uint64_t rows[65] = { 0 }, max = 0, total = 0;
	int lo = 65, hi = -1;
	size_t i;
	json_t *pair;

	json_array_foreach(hist, i, pair) {
		json_int_t upper = json_integer_value(json_array_get(pair, 0));
		json_int_t count = json_integer_value(json_array_get(pair, 1));
		int k = 0;
		if (upper < 0 || count <= 0)
			continue;
		/* The smallest k with upper < 2^k. */
		while (k < 64 && (uint64_t)upper >> k)
			k++;
		rows[k] += (uint64_t)count;
		total += (uint64_t)count;
		if (k < lo)
			lo = k;
		if (k > hi)
			hi = k;
	}
	if (!total) {
		if (faults > 0)
			printf("\nno fault latency recorded: the %lld faults were outside every served range\n",
			       faults);
		else
			printf("\nno faults served yet\n");
		return;
	}
	for (int k = lo; k <= hi; k++)
		if (rows[k] > max)
			max = rows[k];
	/* Every client since the daemon started, detached ones too. */
	printf("\nfault service latency, all clients since the start (%llu faults):\n", (unsigned long long)total);
	for (int k = lo; k <= hi; k++) {
		double upper_us = (k >= 64 ? 18446744073709551615.0 : (double)(1ull << k)) / 1e3;
		char up[32], bar[BAR_WIDTH + 1];
		unsigned n = (unsigned)((rows[k] * BAR_WIDTH + max - 1) / max);
		if (upper_us < 10)
			snprintf(up, sizeof(up), "%.2f", upper_us);
		else if (upper_us < 1000)
			snprintf(up, sizeof(up), "%.1f", upper_us);
		else
			snprintf(up, sizeof(up), "%.0f", upper_us);
		memset(bar, '#', n);
		bar[n] = 0;
		printf("  ≤ %9s µs %10llu  %s\n", up, (unsigned long long)rows[k], bar);
	}
}

/* ---- the command ------------------------------------------------------------------ */

static int stats_error(const char *sock, int err)
{
	switch (-err) {
	case ENOENT:
	case ECONNREFUSED:
		cli_error("stats: %s: no daemon there (%s)", sock, strerror(-err));
		break;
	case EPERM:
		cli_error("stats: %s: the daemon refuses this user (%s)", sock, strerror(-err));
		break;
	case EPROTONOSUPPORT:
		cli_error("stats: %s: the daemon speaks another protocol version (%s)", sock, strerror(-err));
		break;
	case ETIMEDOUT:
		cli_error("stats: %s: the daemon did not answer (%s)", sock, strerror(-err));
		break;
	case ENAMETOOLONG:
		cli_error("stats: %s: socket path too long", sock);
		break;
	default:
		cli_error("stats: %s: %s", sock, strerror(-err));
	}
	return EXIT_ERR;
}

int cmd_stats(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *sock = getenv("FAULTLINED_SOCKET");
	json_t *root, *daemon;
	json_error_t jerr;
	bool json = false;
	char *doc = NULL;
	int c, r;

	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!*optarg)
				return cli_usage_error("stats: --socket wants a path");
			sock = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(stats_usage, stdout);
			return EXIT_OK;
		default:
			if (optopt == 's')
				return cli_usage_error("stats: %s needs a value", argv[optind - 1]);
			return cli_usage_error("stats: unknown option '%s' (see 'faultline stats --help')",
					       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("stats: unexpected argument '%s'", argv[optind]);

	/* 0 would be the library's 10 s per reply; the CLI's deadlines scale. */
	r = fl_manager_stats(sock, cli_scaled_ms(10000), &doc);
	if (r)
		return stats_error(sock, r);
	if (json) {
		/* As the daemon sent it: one line. */
		fputs(doc, stdout);
		if (!*doc || doc[strlen(doc) - 1] != '\n')
			fputc('\n', stdout);
		free(doc);
		return fflush(stdout) ? cli_fail("stats: writing the output", -errno) : EXIT_OK;
	}
	root = json_loads(doc, 0, &jerr);
	free(doc);
	daemon = json_object_get(root, "daemon");
	if (!json_is_object(daemon)) {
		cli_error("stats: %s: the reply is not a stats document (%s)", sock,
			  root ? "no \"daemon\" object" : jerr.text);
		json_decref(root);
		return EXIT_ERR;
	}
	print_daemon(daemon);
	print_clients(json_object_get(root, "clients"));
	print_histogram(json_object_get(daemon, "latency_hist_ns"), integer(daemon, "faults"));
	print_forks(json_object_get(root, "unclaimed_forks"));
	json_decref(root);
	return fflush(stdout) ? cli_fail("stats: writing the output", -errno) : EXIT_OK;
}
