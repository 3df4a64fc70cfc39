// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline image push: upload an image to Redis (a single server or a
 * Redis Cluster) for lazy restore with fl_store_redis_new(3).
 */
#include "cli.h"
#include "util.h"
#include "fl-config.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>


static const char push_usage[] =
	"Usage: faultline image push [options] IMAGE redis://HOST[:PORT][/PREFIX]\n"
	"\n"
	"Upload every region of IMAGE (with its parent chain resolved) to Redis,\n"
	"one key per page under PREFIX (default \"faultline\"), pipelined, one MSET\n"
	"per 2 MiB chunk; the image description is written last. Works against a\n"
	"single redis-server and a Redis Cluster (detected; keys of a chunk share\n"
	"a hash slot). Restore lazily from it with fl_store_redis_new(3). Needs a\n"
	"build with Redis support (see 'faultline --version').\n"
	"\n"
	"Options:\n"
	"  --timeout MS   give up on a server that does not answer for MS\n"
	"                 milliseconds, reconnecting meanwhile (default 5000,\n"
	"                 times FAULTLINE_TIMEOUT_SCALE)\n"
	"  --cluster      fail unless the server is a Redis Cluster\n"
	"  -q, --quiet    print nothing on success\n"
	"  -v, --verbose  print the library's log on stderr\n"
	"  -h, --help     show this help\n"
	"\n"
	"Exit status: 0 pushed, 1 error, 2 usage error.\n";

struct push_log {
	bool verbose;
	char last[512];		/* the last error or warning, for the one-line failure message */
};

static void push_log_cb(enum fl_log_level level, const char *msg, void *ctx)
{
	struct push_log *pl = ctx;
	if (level <= FL_LOG_WARN)
		snprintf(pl->last, sizeof(pl->last), "%s", msg);
	if (pl->verbose)
		fprintf(stderr, "faultline: %s\n", msg);
}

struct push_progress {
	struct progress bar;
	bool started;
};

static void push_progress_cb(uint64_t done, uint64_t total, void *ctx)
{
	struct push_progress *pp = ctx;
	if (!pp->started) {
		progress_begin(&pp->bar, "push", total * 4096, true);
		pp->started = true;
	}
	progress_update(&pp->bar, done * 4096, NULL);
}

int cmd_image_push(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "cluster", no_argument, NULL, 'c' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct push_log pl = { 0 };
	struct push_progress pp = { 0 };
	/* The library's 5 s default, times FAULTLINE_TIMEOUT_SCALE; --timeout is taken as given. */
	struct fl_redis_opts o = { .sz = sizeof(o), .log = push_log_cb, .log_ctx = &pl,
				   .log_level = FL_LOG_WARN, .timeout_ms = cli_scaled_ms(5000) };
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_image *img = NULL;
	const char *path, *url;
	bool quiet = false;
	char idhex[2 * FL_IMAGE_ID_LEN + 1], size[32], rate[32];
	uint64_t v, t0, ns, bytes;
	int c, r;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "qvh", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (fl__parse_uint(optarg, 1, 3600000, &v))
				return cli_usage_error("image push: --timeout wants milliseconds from 1 to 3600000, not '%s'",
						       optarg);
			o.timeout_ms = (unsigned)v;
			break;
		case 'c':
			o.cluster = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'v':
			pl.verbose = true;
			o.log_level = FL_LOG_INFO;
			break;
		case 'h':
			fputs(push_usage, stdout);
			return EXIT_OK;
		default:
			if (optopt == 't')
				return cli_usage_error("image push: %s needs a value", argv[optind - 1]);
			return cli_usage_error("image push: unknown option '%s' (see 'faultline image push --help')",
					       argv[optind - 1]);
		}
	}
	if (!FL_HAVE_REDIS)
		return cli_not_built("image push", "Redis", "redis");
	if (argc - optind != 2)
		return cli_usage_error("image push: wants IMAGE and redis://HOST[:PORT][/PREFIX] (see 'faultline image push --help')");
	path = argv[optind];
	url = argv[optind + 1];
	if (strncmp(url, "redis://", 8) != 0)
		return cli_usage_error("image push: '%s' is not a redis://HOST[:PORT][/PREFIX] URL", url);
	o.url = url;

	r = fl_image_open(path, 0, &img);
	if (r < 0) {
		cli_error("image push: %s: %s", path, r == -EPROTO ? "not a faultline image" : strerror(-r));
		return EXIT_ERR;
	}
	fl_image_info(img, &info);
	fl_image_id_format(info.id, idhex);

	t0 = fl__now_ns();
	r = fl_redis_push(img, &o, quiet ? NULL : push_progress_cb, &pp);
	ns = fl__now_ns() - t0;
	if (pp.started)
		progress_end(&pp.bar, r ? 0 : info.pages_total * 4096, NULL);
	fl_image_close(img);
	if (r == -EINVAL) {
		return cli_usage_error("image push: bad URL '%s' (want redis://HOST[:PORT][/PREFIX]; a prefix "
				       "has no spaces or braces)", url);
	}
	if (r < 0) {
		char why[96];
		if (r == -ETIMEDOUT)
			snprintf(why, sizeof(why), "no answer within %u ms", o.timeout_ms);
		else
			snprintf(why, sizeof(why), "%s", strerror(-r));
		cli_error("image push: %s: %s%s%s%s", url, why, pl.last[0] ? " (" : "", pl.last,
			  pl.last[0] ? ")" : "");
		return EXIT_ERR;
	}
	if (!quiet) {
		bytes = info.pages_total * 4096;
		fmt_bytes(bytes, size, sizeof(size));
		fmt_bytes(ns ? (uint64_t)((double)bytes * 1e9 / (double)ns) : 0, rate, sizeof(rate));
		printf("pushed image %s (%u region%s, %s) to %s in %.2f s (%s/s)\n", idhex, info.nregions,
		       info.nregions == 1 ? "" : "s", size, url, (double)ns / 1e9, rate);
	}
	return EXIT_OK;
}
