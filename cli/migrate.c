// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline migrate: drive and watch a live migration of a running program
 * through the control socket it embeds (fl_migrate_ctl_new(3)): start one,
 * show its status, watch it to the end with a progress bar, cancel it.
 * The socket speaks one request line and one reply line per connection.
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
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* watch's exit status for a cancelled migration (0 done, 1 failed). */
#define EXIT_CANCELLED 3
#define BAR_WIDTH 30
#define MAX_FIELDS 64

static const char migrate_usage[] =
	"Usage: faultline migrate <command> --control PATH [<options>]\n"
	"\n"
	"Drive and watch a live migration of a running program through the\n"
	"control socket it embeds (fl_migrate_ctl_new(3)).\n"
	"\n"
	"  start --control PATH [--to HOST:PORT] [--mode precopy|postcopy|hybrid]\n"
	"                        start migrating to HOST:PORT (default: where the\n"
	"                        program is configured to go), mode hybrid by default\n"
	"  status --control PATH [--json]\n"
	"                        state, progress and statistics of its migration\n"
	"  watch --control PATH [--json] [--interval MS]\n"
	"                        follow it to its end: a progress bar on a terminal,\n"
	"                        a line (--json: an object) every MS ms (default 500)\n"
	"  cancel --control PATH  cancel it (before switchover only)\n"
	"\n"
	"Exit status: 0 success (watch: the migration is done), 1 error (watch: it\n"
	"failed), 2 usage error, 3 watch: it was cancelled.\n";

struct reply {
	char line[FL_MIGRATE_CTL_LINE_MAX * 8];
	unsigned n;
	const char *key[MAX_FIELDS], *val[MAX_FIELDS];
};

static const char *get(const struct reply *r, const char *key)
{
	for (unsigned i = 0; i < r->n; i++)
		if (!strcmp(r->key[i], key))
			return r->val[i];
	return NULL;
}

static uint64_t get_u64(const struct reply *r, const char *key)
{
	const char *v = get(r, key);

	return v ? strtoull(v, NULL, 10) : 0;
}

static bool is_integer(const char *s)
{
	if (*s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Why the socket cannot be reached, as the operator needs to hear it. */
static int connect_error(const char *path, int err)
{
	struct stat sb;

	if (err == -ECONNREFUSED && stat(path, &sb) == 0 && !S_ISSOCK(sb.st_mode))
		cli_error("migrate: %s: not a socket", path);
	else if (err == -ENOENT)
		cli_error("migrate: %s: no such control socket", path);
	else if (err == -ECONNREFUSED)
		cli_error("migrate: %s: nobody listens on this socket (the program is gone?)", path);
	else if (err == -EACCES || err == -EPERM)
		cli_error("migrate: %s: permission denied (a control socket is for its owner only)", path);
	else if (err == -ENAMETOOLONG)
		cli_error("migrate: %s: socket path too long", path);
	else
		cli_error("migrate: %s: %s", path, strerror(-err));
	return EXIT_ERR;
}

/* Split "ok k=v k=v" into fields; false when it is not that shape. */
static bool parse_ok(struct reply *r)
{
	char *save = NULL, *tok;

	r->n = 0;
	tok = strtok_r(r->line, " ", &save);
	if (!tok || strcmp(tok, "ok"))
		return false;
	while ((tok = strtok_r(NULL, " ", &save)) && r->n < MAX_FIELDS) {
		char *eq = strchr(tok, '=');

		if (!eq || eq == tok)
			return false;
		*eq = 0;
		r->key[r->n] = tok;
		r->val[r->n++] = eq + 1;
	}
	return true;
}

/*
 * One request and its reply. 0 with the fields parsed; EXIT_ERR after
 * saying why: the socket, an error reply (its text), or a peer that does
 * not speak the protocol. *ret_errno: the error reply's number, 0 if none.
 */
static int exchange(const char *path, const char *what, const char *line, struct reply *r, int *ret_errno)
{
	uint64_t deadline = fl__now_ns() + cli_scaled_ms(10000) * 1000000ull;
	size_t got = 0;
	int fd, err;

	if (ret_errno)
		*ret_errno = 0;
	err = fl__unix_connect(path, SOCK_STREAM, &fd);
	if (err)
		return connect_error(path, err);
	if (send(fd, line, strlen(line), MSG_NOSIGNAL) != (ssize_t)strlen(line)) {
		cli_error("migrate: %s: cannot send the request: %s", path, strerror(errno));
		close(fd);
		return EXIT_ERR;
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = (int64_t)(deadline - fl__now_ns()) / 1000000;
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			cli_error("migrate: %s: no reply: not a faultline migration control socket?", path);
			close(fd);
			return EXIT_ERR;
		}
		n = read(fd, r->line + got, sizeof(r->line) - 1 - got);
		if (n <= 0 || memchr(r->line + got, '\n', (size_t)n) || got + (size_t)n == sizeof(r->line) - 1) {
			got += n > 0 ? (size_t)n : 0;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	r->line[got] = 0;
	if (!got || r->line[got - 1] != '\n') {
		cli_error("migrate: %s: not a faultline migration control socket (%s)", path,
			  got ? "a reply that is not one line" : "it closed without a reply");
		return EXIT_ERR;
	}
	r->line[got - 1] = 0;
	if (!strncmp(r->line, "error ", 6)) {
		char *end;
		long e = strtol(r->line + 6, &end, 10);

		if (end != r->line + 6 && e < 0 && *end == ' ') {
			if (ret_errno)
				*ret_errno = (int)e;
			cli_error("migrate: %s: %s (%s)", what, end + 1, strerror((int)-e));
			return EXIT_ERR;
		}
	}
	if (!parse_ok(r)) {
		cli_error("migrate: %s: not a faultline migration control socket (the reply: \"%.60s\")", path,
			  r->line);
		return EXIT_ERR;
	}
	return 0;
}

static int status_of(const char *path, struct reply *r)
{
	int rc = exchange(path, "status", "status\n", r, NULL);

	if (!rc && (!get(r, "state") || !get(r, "role"))) {
		cli_error("migrate: %s: not a faultline migration control socket (no state in the reply)", path);
		return EXIT_ERR;
	}
	return rc;
}

/* Every field, numbers as numbers; an error's text beside its number. */
static json_t *status_json(const struct reply *r)
{
	json_t *o = json_object();

	for (unsigned i = 0; i < r->n; i++)
		json_object_set_new(o, r->key[i], is_integer(r->val[i]) ? json_integer(strtoll(r->val[i], NULL, 10))
									: json_string(r->val[i]));
	if (get(r, "error") && strcmp(get(r, "error"), "0"))
		json_object_set_new(o, "error_text", json_string(strerror(-atoi(get(r, "error")))));
	return o;
}

static int print_json(json_t *o, size_t flags)
{
	char *s = json_dumps(o, flags | JSON_PRESERVE_ORDER);

	json_decref(o);
	if (!s)
		return cli_fail("migrate: JSON output", -ENOMEM);
	puts(s);
	free(s);
	return fflush(stdout) ? cli_fail("migrate: writing the output", -errno) : EXIT_OK;
}

static const char *const shown[] = {
	"proto", "role", "state", "mode", "pages_total", "pages_remaining", "rounds", "pages_sent", "bytes_sent",
	"zero_pages", "requests", "pushed", "pages_received", "downtime_ns", "total_ns", "request_p50_ns",
	"request_p99_ns", "request_max_ns", "error",
};

static void print_status(const struct reply *r)
{
	char a[32], b[32], c[32];
	int err = atoi(get(r, "error") ? get(r, "error") : "0");

	printf("migration  %s (%s%s%s)\n", get(r, "state"), get(r, "role"), get(r, "mode") ? ", " : "",
	       get(r, "mode") ? get(r, "mode") : "");
	printf("  pages      %" PRIu64 " remaining of %" PRIu64 "\n", get_u64(r, "pages_remaining"),
	       get_u64(r, "pages_total"));
	printf("  rounds     %" PRIu64 "\n", get_u64(r, "rounds"));
	printf("  sent       %" PRIu64 " pages (%" PRIu64 " zero), %s\n", get_u64(r, "pages_sent"),
	       get_u64(r, "zero_pages"), fmt_bytes(get_u64(r, "bytes_sent"), a, sizeof(a)));
	if (get_u64(r, "pages_received"))
		printf("  received   %" PRIu64 " pages\n", get_u64(r, "pages_received"));
	fmt_ns(get_u64(r, "request_p50_ns"), a, sizeof(a));
	fmt_ns(get_u64(r, "request_p99_ns"), b, sizeof(b));
	fmt_ns(get_u64(r, "request_max_ns"), c, sizeof(c));
	printf("  requests   %" PRIu64 " (latency p50 %s, p99 %s, max %s)\n", get_u64(r, "requests"), a, b, c);
	printf("  pushed     %" PRIu64 " pages\n", get_u64(r, "pushed"));
	fmt_ns(get_u64(r, "downtime_ns"), a, sizeof(a));
	printf("  downtime   %s\n", get_u64(r, "downtime_ns") ? a : "-");
	fmt_ns(get_u64(r, "total_ns"), a, sizeof(a));
	printf("  total      %s\n", get_u64(r, "total_ns") ? a : "-");
	if (err)
		printf("  error      %s (%d)\n", strerror(-err), err);
	/* Fields added after this program was built. */
	for (unsigned i = 0; i < r->n; i++) {
		bool known = false;

		for (size_t k = 0; k < FL_ARRAY_SIZE(shown); k++)
			known |= !strcmp(r->key[i], shown[k]);
		if (!known)
			printf("  %-10s %s\n", r->key[i], r->val[i]);
	}
}

static bool final_state(const char *s)
{
	return !strcmp(s, "done") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
}

/* The end of a watch: a summary, and the exit status for the state. */
static int watch_end(const struct reply *r, bool json)
{
	const char *state = get(r, "state");
	char a[32], b[32], c[32];
	int err = atoi(get(r, "error") ? get(r, "error") : "0");

	if (!strcmp(state, "failed")) {
		cli_error("migrate: the migration failed: %s (%d)", err ? strerror(-err) : "unknown error", err);
		return EXIT_ERR;
	}
	if (!strcmp(state, "cancelled")) {
		if (!json)
			printf("cancelled: the program runs on at the source\n");
		return EXIT_CANCELLED;
	}
	if (!json) {
		fmt_ns(get_u64(r, "total_ns"), a, sizeof(a));
		fmt_ns(get_u64(r, "downtime_ns"), b, sizeof(b));
		printf("done in %s, downtime %s, %s sent\n", a, get_u64(r, "downtime_ns") ? b : "-",
		       fmt_bytes(get_u64(r, "bytes_sent"), c, sizeof(c)));
	}
	return EXIT_OK;
}

static void draw(const struct reply *r, bool tty, double rate)
{
	uint64_t total = get_u64(r, "pages_total"), left = get_u64(r, "pages_remaining");
	uint64_t done = total > left ? total - left : 0;
	double pct = total ? 100.0 * (double)done / (double)total : 0;
	char bar[BAR_WIDTH + 1], rb[32], extra[64] = "";
	unsigned fill = (unsigned)(pct * BAR_WIDTH / 100);

	fmt_bytes((uint64_t)rate, rb, sizeof(rb));
	if (get_u64(r, "downtime_ns")) {
		char d[32];

		fmt_ns(get_u64(r, "downtime_ns"), d, sizeof(d));
		snprintf(extra, sizeof(extra), "  downtime %s", d);
	} else if (!strcmp(get(r, "state"), "precopy") && !strcmp(get(r, "role"), "source") && tty) {
		/* The bar starts over each round: say which. */
		snprintf(extra, sizeof(extra), "  round %" PRIu64, get_u64(r, "rounds") + 1);
	}
	if (!tty) {
		printf("%s %" PRIu64 "/%" PRIu64 " pages %.0f%% %s/s round %" PRIu64 "%s\n", get(r, "state"), done,
		       total, pct, rb, get_u64(r, "rounds"), extra);
		return;
	}
	memset(bar, '#', fill);
	memset(bar + fill, '.', BAR_WIDTH - fill);
	bar[BAR_WIDTH] = 0;
	/* \033[K: clear what a longer line left. */
	printf("\r%-10s [%s] %" PRIu64 "/%" PRIu64 " %3.0f%% %s/s%s\033[K", get(r, "state"), bar, done, total,
	       pct, rb, extra);
}

static int watch(const char *path, bool json, unsigned interval_ms)
{
	bool tty = !json && isatty(STDOUT_FILENO), drawn = false, seen = false;
	uint64_t last_bytes = 0, last_ns = 0;
	char last_state[32] = "";
	struct reply r;
	int rc;

	for (bool first = true;; first = false) {
		uint64_t now, bytes;
		double rate = 0;

		rc = status_of(path, &r);
		if (rc) {
			if (!first && (!strcmp(last_state, "switchover") || !strcmp(last_state, "postcopy")))
				cli_error("migrate: %s: the program went away in %s: the destination may be running "
					  "the application; ask it (faultline migrate status on its socket)",
					  path, last_state);
			else if (!first)
				cli_error("migrate: %s: the program went away before the migration ended", path);
			break;
		}
		/* A program detaches its migration before freeing it: nothing
		 * to wait for any more (an idle status forever otherwise). */
		if (strcmp(get(&r, "role"), "none"))
			seen = true;
		else if (seen) {
			if (drawn)
				putchar('\n');
			cli_error("migrate: %s: the program detached its migration (last seen: %s)", path,
				  last_state);
			return EXIT_ERR;
		}
		snprintf(last_state, sizeof(last_state), "%s", get(&r, "state"));
		now = fl__now_ns();
		bytes = get_u64(&r, "bytes_sent");
		if (last_ns && now > last_ns && bytes >= last_bytes)
			rate = (double)(bytes - last_bytes) * 1e9 / (double)(now - last_ns);
		last_ns = now;
		last_bytes = bytes;
		if (json) {
			rc = print_json(status_json(&r), JSON_COMPACT);
			if (rc)
				return rc;
		} else {
			draw(&r, tty, rate);
			drawn = tty;
			fflush(stdout);
		}
		if (final_state(get(&r, "state"))) {
			if (drawn)
				putchar('\n');
			return watch_end(&r, json);
		}
		/* The switchover lasts milliseconds and a source may exit soon
		 * after it: look again soon, whatever the interval. */
		usleep((!strcmp(last_state, "switchover") ? FL_MIN(interval_ms, 100u) : interval_ms) * 1000u);
	}
	if (drawn)
		putchar('\n');
	return EXIT_ERR;
}

int cmd_migrate(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "control", required_argument, NULL, 'c' },
		{ "to", required_argument, NULL, 't' },
		{ "mode", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "interval", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *cmd, *control = NULL, *to = NULL, *mode = NULL, *interval_s = NULL;
	bool json = false;
	uint64_t interval = 500;
	struct reply r;
	char line[FL_MIGRATE_CTL_LINE_MAX * 2];
	int c, rc;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		if (argc < 2)
			return cli_usage_error("migrate: which command? (see 'faultline migrate --help')");
		fputs(migrate_usage, stdout);
		return EXIT_OK;
	}
	cmd = argv[1];
	if (strcmp(cmd, "start") && strcmp(cmd, "status") && strcmp(cmd, "watch") && strcmp(cmd, "cancel"))
		return cli_usage_error("migrate: unknown command '%s' (see 'faultline migrate --help')", cmd);
	opterr = 0;
	optind = 0;
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			control = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'm':
			mode = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'i':
			interval_s = optarg;
			break;
		case 'h':
			fputs(migrate_usage, stdout);
			return EXIT_OK;
		default:
			if (optopt)
				return cli_usage_error("migrate %s: %s needs a value", cmd, argv[optind - 1]);
			return cli_usage_error("migrate %s: unknown option '%s' (see 'faultline migrate --help')",
					       cmd, argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("migrate %s: unexpected argument '%s'", cmd, argv[optind]);
	if (!control || !*control)
		return cli_usage_error("migrate %s: --control PATH is required (the program's control socket)",
				       cmd);
	/* Options that mean nothing to the command are mistakes, not noise. */
	if ((to || mode) && strcmp(cmd, "start"))
		return cli_usage_error("migrate %s: --to and --mode are for 'start'", cmd);
	if (json && strcmp(cmd, "status") && strcmp(cmd, "watch"))
		return cli_usage_error("migrate %s: --json is for 'status' and 'watch'", cmd);
	if (interval_s && strcmp(cmd, "watch"))
		return cli_usage_error("migrate %s: --interval is for 'watch'", cmd);
	if (interval_s && fl__parse_uint(interval_s, 10, 3600000, &interval))
		return cli_usage_error("migrate watch: --interval wants milliseconds from 10 to 3600000, not '%s'",
				       interval_s);
	if (!strcmp(cmd, "start")) {
		if (!mode)
			mode = "hybrid";
		if (strcmp(mode, "precopy") && strcmp(mode, "postcopy") && strcmp(mode, "hybrid"))
			return cli_usage_error("migrate start: --mode is precopy, postcopy or hybrid, not '%s'",
					       mode);
		if (to && (!*to || strchr(to, ' ') || strchr(to, '\n') || !strchr(to, ':')))
			return cli_usage_error("migrate start: --to wants HOST:PORT, not '%s'", to);
		snprintf(line, sizeof(line), "start %s %s\n", to ? to : "-", mode);
		rc = exchange(control, "start", line, &r, NULL);
		if (!rc)
			printf("started: %s migration to %s\n", mode, to ? to : "the program's destination");
		return rc;
	}
	if (!strcmp(cmd, "cancel")) {
		rc = exchange(control, "cancel", "cancel\n", &r, NULL);
		if (!rc)
			printf("cancel requested: the migration stops before switchover, the program runs on\n");
		return rc;
	}
	if (!strcmp(cmd, "watch"))
		return watch(control, json, (unsigned)interval);
	rc = status_of(control, &r);
	if (rc)
		return rc;
	if (json)
		return print_json(status_json(&r), JSON_INDENT(2));
	print_status(&r);
	return fflush(stdout) ? cli_fail("migrate: writing the output", -errno) : EXIT_OK;
}
