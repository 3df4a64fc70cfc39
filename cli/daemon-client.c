// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline daemon map: a client of faultlined(8), so the daemon can be
 * tried without writing C. Connects (fl_client_connect), maps an image
 * region through the daemon (FL_SOURCE_IMAGE, or FL_SOURCE_TEMPLATE: the
 * daemon's shared page cache), attaches, touches every page, optionally
 * compares every page with the image read here, detaches and reports.
 *
 * The image is named as the daemon names it, relative to its image
 * directory; this command also opens DIR/NAME itself (--images DIR, the
 * daemon's default otherwise) because the mapping's length is the region's
 * and the client API does not return it, and for --verify.
 */
#include "cli.h"
#include "cli-client.h"
#include "touch.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DEFAULT_IMAGES "/var/lib/faultlined/images"

static const char daemon_usage[] =
	"Usage: faultline daemon map IMAGE [options]\n"
	"\n"
	"A client of a running faultlined: map region N of IMAGE through the\n"
	"daemon, attach (the daemon now serves its faults), touch every page,\n"
	"detach, and report pages, time and the first access's latency. IMAGE is\n"
	"named as the daemon names it, relative to its image directory; it is\n"
	"also opened here (DIR/IMAGE) for the region's length and for --verify.\n"
	"A page the daemon cannot deliver is reported (exit 1), never read as\n"
	"zeros.\n"
	"\n"
	"Options:\n"
	"  -s, --socket PATH   the daemon's socket (default $FAULTLINED_SOCKET, else\n"
	"                      /run/faultlined/faultlined.sock)\n"
	"      --images DIR    the daemon's image directory (default " DEFAULT_IMAGES ")\n"
	"      --region N      the region (default 0)\n"
	"      --template      map through the daemon's shared page cache (clients\n"
	"                      share the physical pages) instead of a private copy\n"
	"      --verify        compare every page with the image read here\n"
	"      --timeout MS    per request to the daemon (default 10000, times\n"
	"                      FAULTLINE_TIMEOUT_SCALE)\n"
	"      --json          the report as JSON\n"
	"  -h, --help          show this help\n"
	"\n"
	"Exit status: 0 mapped and checked, 1 error or a bad page, 2 usage error.\n";

static const char *connect_reason(int r)
{
	switch (r) {
	case -ENOENT:
	case -ECONNREFUSED:
		return "no daemon there";
	case -ENOTSOCK:
		return "not a socket";
	case -EPERM:
		return "the daemon refuses this user";
	case -EPROTONOSUPPORT:
		return "the daemon speaks another protocol version";
	case -ETIMEDOUT:
		return "the daemon did not answer in time";
	default:
		return strerror(-r);
	}
}

static const char *map_reason(int r)
{
	switch (r) {
	case -ENOENT:
		return "the daemon has no such image (names are relative to its image directory)";
	case -EACCES:
		return "a name outside the daemon's image directory (give it relative to that)";
	case -ERANGE:
		return "no such region in the daemon's copy of the image";
	case -EDQUOT:
		return "over the daemon's per-client limits";
	case -EBADMSG:
		return "the daemon finds the image corrupt";
	default:
		return strerror(-r);
	}
}

static int daemon_map(int argc, char **argv)
{
	enum { O_IMAGES = 256, O_REGION, O_TEMPLATE, O_VERIFY, O_TIMEOUT, O_JSON };
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "images", required_argument, NULL, O_IMAGES },
		{ "region", required_argument, NULL, O_REGION },
		{ "template", no_argument, NULL, O_TEMPLATE },
		{ "verify", no_argument, NULL, O_VERIFY },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct fl_client_opts co = { .sz = sizeof(co), .timeout_ms = cli_scaled_ms(10000) };
	struct fl_client_map_opts mo = { .sz = sizeof(mo), .source = FL_SOURCE_IMAGE };
	struct fl_image_region reg = { .sz = sizeof(reg) };
	struct fl_client *client = NULL;
	struct fl_image *img = NULL;
	struct touch_result tr = { 0 };
	const char *images = DEFAULT_IMAGES, *name;
	char path[4096], t1[32], t2[32], t3[32], sz[32];
	uint8_t *bad_map = NULL;
	void *addr = NULL;
	uint64_t v, mismatches = 0, t0, attach_ns = 0;
	bool verify = false, json = false;
	pid_t dpid = 0;
	int c, r, ret = EXIT_ERR;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":s:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': co.socket = optarg; break;
		case O_IMAGES: images = optarg; break;
		case O_REGION:
			if (fl__parse_uint(optarg, 0, 65535, &v))
				return cli_usage_error("daemon map: --region: not a region number: '%s'", optarg);
			mo.region = (unsigned)v;
			break;
		case O_TEMPLATE: mo.source = FL_SOURCE_TEMPLATE; break;
		case O_VERIFY: verify = true; break;
		case O_TIMEOUT:
			if (fl__parse_uint(optarg, 1, 3600000, &v))
				return cli_usage_error("daemon map: --timeout wants milliseconds from 1 to 3600000, not '%s'",
						       optarg);
			co.timeout_ms = (unsigned)v;
			break;
		case O_JSON: json = true; break;
		case 'h': fputs(daemon_usage, stdout); return EXIT_OK;
		case ':': return cli_usage_error("daemon map: %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_error("daemon map: unknown option '%s' (see 'faultline daemon --help')",
					       argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error("daemon map: no image given (see 'faultline daemon --help')");
	if (optind + 1 < argc)
		return cli_usage_error("daemon map: one image only ('%s' is extra)", argv[optind + 1]);
	name = argv[optind];
	mo.image = name;
	/* The daemon would refuse these (-EACCES); say why before connecting. */
	if (name[0] == '/')
		return cli_usage_error("daemon map: '%s': images are named relative to the daemon's image directory",
				       name);
	snprintf(path, sizeof(path), "%s/%s", images, name);
	r = fl_image_open(path, 0, &img);
	if (r) {
		cli_image_open_error(path, path, r);
		goto out;
	}
	if (fl_image_region(img, mo.region, &reg)) {
		r = -ERANGE;
		cli_error("daemon map: %s: no region %u", path, mo.region);
		goto out;
	}
	mo.length = reg.length;
	bad_map = calloc(reg.length / 4096 + 1, 1);
	if (!bad_map) {
		cli_fail("daemon map", -ENOMEM);
		goto out;
	}

	r = fl_client_connect(&co, &client);
	if (r) {
		const char *sock = co.socket ? co.socket : getenv("FAULTLINED_SOCKET");
		cli_error("daemon map: %s: %s", sock && sock[0] ? sock : "/run/faultlined/faultlined.sock",
			  connect_reason(r));
		goto out;
	}
	dpid = fl_client_daemon_pid(client);
	r = fl_client_map(client, &mo, &addr);
	if (r) {
		cli_error("daemon map: %s: %s", name, map_reason(r));
		goto out;
	}
	t0 = fl__now_ns();
	r = fl_client_attach(client);
	attach_ns = fl__now_ns() - t0;
	if (r) {
		cli_error("daemon map: attach: %s", r == -EOPNOTSUPP ? "the kernel lacks a userfaultfd feature the daemon needs"
			  : r == -EDQUOT ? "over the daemon's per-client limits" : strerror(-r));
		goto out;
	}
	touch_pages(addr, reg.length / 4096, 4096, bad_map, &tr);
	if (verify) {
		int64_t m = compare_pages(img, mo.region, addr, tr.pages, bad_map);
		if (m < 0) {
			r = (int)m;
			cli_fail("daemon map: comparing", r);
			goto out;
		}
		mismatches = (uint64_t)m;
	}
	r = fl_client_detach(client);
	if (r) {
		cli_error("daemon map: detach: %s", strerror(-r));
		goto out;
	}

	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "image", name);
		json_u64(&j, "region", mo.region);
		json_str(&j, "source", mo.source == FL_SOURCE_TEMPLATE ? "template" : "image");
		json_u64(&j, "daemon_pid", (uint64_t)dpid);
		json_u64(&j, "bytes", reg.length);
		json_u64(&j, "pages", tr.pages);
		json_u64(&j, "pages_ok", tr.pages - tr.bad);
		json_u64(&j, "pages_bad", tr.bad);
		json_num(&j, "attach_seconds", (double)attach_ns / 1e9, 6);
		json_num(&j, "seconds", (double)tr.ns / 1e9, 6);
		json_num(&j, "first_access_us", (double)tr.first_access_ns / 1e3, 1);
		json_bool(&j, "verified", verify);
		if (verify)
			json_u64(&j, "mismatches", mismatches);
		else
			json_null(&j, "mismatches");
		json_end(&j);
		json_finish(&j);
	} else {
		fmt_ns(tr.ns, t1, sizeof(t1));
		fmt_ns(tr.first_access_ns, t2, sizeof(t2));
		fmt_ns(attach_ns, t3, sizeof(t3));
		fmt_bytes(reg.length, sz, sizeof(sz));
		printf("%s region %u (%s) through faultlined pid %d as %s, attached in %s\n", name, mo.region, sz,
		       (int)dpid, mo.source == FL_SOURCE_TEMPLATE ? "a template (shared page cache)" : "a private copy",
		       t3);
		printf("touched %llu of %llu pages in %s, first access %s; detached\n",
		       (unsigned long long)(tr.pages - tr.bad), (unsigned long long)tr.pages, t1, t2);
		if (verify)
			printf("compared with %s: %llu mismatches\n", path, (unsigned long long)mismatches);
	}
	if (tr.bad)
		cli_error("daemon map: %s: %llu of %llu pages were not delivered (first: page %llu): the daemon "
			  "failed them closed (SIGBUS), corrupt or unreadable", name, (unsigned long long)tr.bad,
			  (unsigned long long)tr.pages, (unsigned long long)tr.first_bad);
	if (mismatches)
		cli_error("daemon map: %s: %llu pages differ from %s", name, (unsigned long long)mismatches, path);
	ret = tr.bad || mismatches ? EXIT_ERR : EXIT_OK;
out:
	/* On an error before detach, the daemon poisons what it had not
	 * delivered when the session goes; nothing here touches it again. */
	fl_client_free(client);
	if (addr)
		munmap(addr, reg.length);
	fl_image_close(img);
	free(bad_map);
	return ret;
}

int cmd_daemon(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (!sub)
		return cli_usage_error("daemon needs a command (see 'faultline daemon --help')");
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h"))
		return fputs(daemon_usage, stdout), EXIT_OK;
	if (!strcmp(sub, "map"))
		return daemon_map(argc - 1, argv + 1);
	return cli_usage_error("unknown daemon command '%s' (see 'faultline daemon --help')", sub);
}
