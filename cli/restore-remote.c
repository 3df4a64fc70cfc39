// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline image restore --from URL: restore an image region lazily from a
 * page server (tcp://HOST:PORT, `faultline serve`) or from Redis
 * (redis://HOST[:PORT][/PREFIX], `faultline image push`), touch every page,
 * and report what it took. Without --from, `image restore IMG` is the local
 * cold start of coldstart.c, unchanged.
 *
 * Every page is checked by the store on the way in (the page server's and
 * Redis's per-page XXH3 checksums); a page that fails is poisoned, so its
 * touch raises SIGBUS, which is counted and reported: a bad page is never
 * written to -o FILE, and never as zeros.
 */
#include "cli.h"
#include "cli-client.h"
#include "coldstart.h"
#include "far-stats.h"
#include "touch.h"
#include "util.h"
#include "fl-config.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char restore_help[] =
	"Usage: faultline image restore IMG [--working-set[=FILE]] [--region N] [--touch PCT]\n"
	"                               [--seed N] [--json]\n"
	"       faultline image restore --from URL [IMG] [--region N] [-o FILE] [options]\n"
	"\n"
	"With IMG only: restore a local image lazily, read PCT % of its pages in a\n"
	"fixed order (replaying a recorded working set first with --working-set),\n"
	"and check them against the image.\n"
	"\n"
	"With --from: restore region N of a remote image lazily, touch every page\n"
	"in order and report pages, time and the first access's latency. Each page\n"
	"is checked by the store's checksum on the way in; a page that fails is\n"
	"reported (exit 1), never delivered as zeros. With IMG, every page is also\n"
	"compared with IMG's.\n"
	"\n"
	"  --from tcp://HOST:PORT            a page server ('faultline serve')\n"
	"  --from redis://HOST[:PORT][/PREFIX]\n"
	"                                    an image pushed with 'faultline image push'\n"
	"  -o, --output FILE                 write the restored bytes to FILE (atomically;\n"
	"                                    not written when a page is bad or differs)\n"
	"      --region N                    the region (default 0)\n"
	"      --timeout MS                  fail a page after MS ms without it (default 5000,\n"
	"                                    times FAULTLINE_TIMEOUT_SCALE)\n"
	"      --tls-psk ID:HEXKEY           tcp: TLS with a pre-shared key\n"
	"      --tls-psk-file FILE           the same, read from FILE\n"
	"      --tls                         tcp: TLS with X.509, the server checked against\n"
	"                                    the system's CAs\n"
	"      --tls-ca CA                   ... against CA instead (implies --tls)\n"
	"      --tls-cert CERT --tls-key KEY a client certificate (implies --tls)\n"
	"      --tls-server-name NAME        the name the server's certificate must carry\n"
	"                                    (default HOST; \"\" checks the chain only)\n"
	"      --json                        the report as JSON\n"
	"  (TLS needs a build with TLS, Redis one with Redis: see 'faultline --version')\n"
	"\n"
	"Exit status: 0 restored and checked, 1 error or a bad page, 2 usage error.\n";

struct remote_log {
	char last[512];		/* the library's last warning or error, for the failure message */
};

static void remote_log_cb(enum fl_log_level level, const char *msg, void *ctx)
{
	struct remote_log *rl = ctx;

	if (level <= FL_LOG_WARN)
		snprintf(rl->last, sizeof(rl->last), "%s", msg);
}

enum remote_kind { REMOTE_TCP, REMOTE_REDIS };

/*
 * tcp://HOST:PORT into "HOST:PORT" for fl_remote_opts.addr. The library
 * would refuse a bad address too, but only after a connection attempt and
 * with -EINVAL that also means other things: a usage error is said here.
 */
static int parse_tcp_url(const char *url, char *addr, size_t len)
{
	const char *hp = url + strlen("tcp://"), *colon, *p;
	uint64_t port;

	if (hp[0] == '[') {
		const char *close = strchr(hp, ']');
		if (!close || close == hp + 1 || close[1] != ':')
			return -EINVAL;
		colon = close + 1;
	} else {
		colon = strrchr(hp, ':');
		if (!colon || colon == hp || memchr(hp, ':', (size_t)(colon - hp)))
			return -EINVAL;
	}
	for (p = hp; p < colon; p++)
		if (*p == '/' || *p == ' ' || *p == '@')
			return -EINVAL;
	if (fl__parse_uint(colon + 1, 1, 65535, &port))
		return -EINVAL;
	if ((size_t)snprintf(addr, len, "%s", hp) >= len)
		return -EINVAL;
	return 0;
}

/* Why the store could not be opened, in the words a user needs. */
static const char *open_reason(enum remote_kind kind, int r)
{
	switch (r) {
	case -ECONNREFUSED:
		return kind == REMOTE_TCP ? "connection refused (no page server there?)"
					  : "connection refused (no Redis server there?)";
	case -EHOSTUNREACH:
	case -ENETUNREACH:
		return "host unreachable";
	case -ETIMEDOUT:
		return "no answer in time (host unreachable, or not a server)";
	case -EACCES:
		return "TLS credentials refused (key, identity or certificate)";
	case -EBUSY:
		return "the server is serving its maximum number of clients";
	case -EPROTO:
		return kind == REMOTE_TCP ? "not a faultline page server (or TLS on one side only)"
					  : "the server refused a command (not Redis?)";
	case -ECONNRESET:
		return "the server closed the connection (TLS on one side only, or the wrong kind of TLS?)";
	case -EPROTONOSUPPORT:
		return "the page server speaks another protocol version";
	case -ESTALE:
		return "the prefix holds another image";
	case -EBADMSG:
		return "the image description is corrupt";
	default:
		return strerror(-r);
	}
}

struct remote_report {
	const char *url;
	const char *reference;		/* IMG, or NULL */
	const char *output;		/* -o FILE, or NULL */
	bool written;			/* ... and it was written (every page good) */
	unsigned region;
	uint64_t length;
	uint8_t id[FL_IMAGE_ID_LEN];
	bool have_id;
	struct touch_result touch;
	struct fl_region_stats rs;
	uint64_t mismatches;
	uint64_t store_requests, store_bad, store_reconnects, store_timeouts;
	double setup_s;			/* connect and handshake */
};

static void print_report(const struct remote_report *rep, bool json)
{
	char idhex[2 * FL_IMAGE_ID_LEN + 1] = "", t1[32], t2[32], t3[32], sz[32], rate[32];
	double secs = (double)rep->touch.ns / 1e9;
	uint64_t good = rep->touch.pages - rep->touch.bad;

	if (rep->have_id)
		fl_image_id_format(rep->id, idhex);
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "from", rep->url);
		json_str(&j, "image_id", rep->have_id ? idhex : NULL);
		json_u64(&j, "region", rep->region);
		json_u64(&j, "bytes", rep->length);
		json_u64(&j, "pages", rep->touch.pages);
		json_u64(&j, "pages_ok", good);
		json_u64(&j, "pages_bad", rep->touch.bad);
		if (rep->touch.bad)
			json_u64(&j, "first_bad_page", rep->touch.first_bad);
		else
			json_null(&j, "first_bad_page");
		json_num(&j, "connect_seconds", rep->setup_s, 6);
		json_num(&j, "seconds", secs, 6);
		json_num(&j, "first_access_us", (double)rep->touch.first_access_ns / 1e3, 1);
		json_u64(&j, "faults", rep->rs.faults_read + rep->rs.faults_write);
		json_u64(&j, "pages_copy", rep->rs.pages_copy);
		json_u64(&j, "pages_zero", rep->rs.pages_zero);
		json_u64(&j, "pages_prefetch", rep->rs.pages_prefetch);
		json_u64(&j, "pages_poisoned", rep->rs.pages_poisoned);
		json_u64(&j, "huge_moves", rep->rs.huge_moves);
		json_u64(&j, "pages_moved", rep->rs.pages_moved);
		json_u64(&j, "fault_p50_us", rep->rs.lat_p50_ns / 1000);
		json_u64(&j, "fault_p99_us", rep->rs.lat_p99_ns / 1000);
		far_stats_json(&j, "far", &rep->rs, false);
		json_u64(&j, "store_requests", rep->store_requests);
		json_u64(&j, "store_bad_responses", rep->store_bad);
		json_u64(&j, "store_reconnects", rep->store_reconnects);
		json_u64(&j, "store_timeouts", rep->store_timeouts);
		json_str(&j, "compared_with", rep->reference);
		if (rep->reference)
			json_u64(&j, "mismatches", rep->mismatches);
		else
			json_null(&j, "mismatches");
		json_str(&j, "output", rep->written ? rep->output : NULL);
		json_end(&j);
		json_finish(&j);
		return;
	}
	fmt_ns(rep->touch.ns, t1, sizeof(t1));
	fmt_ns(rep->touch.first_access_ns, t2, sizeof(t2));
	fmt_ns((uint64_t)(rep->setup_s * 1e9), t3, sizeof(t3));
	fmt_bytes(rep->length, sz, sizeof(sz));
	fmt_bytes(secs > 0 ? (uint64_t)((double)rep->length / secs) : 0, rate, sizeof(rate));
	printf("%s: region %u%s%s, %s, connected in %s\n", rep->url, rep->region, rep->have_id ? " of image " : "",
	       idhex, sz, t3);
	printf("restored %llu of %llu pages in %s (%s/s), first access %s, %llu demand faults, %llu pages prefetched\n",
	       (unsigned long long)good, (unsigned long long)rep->touch.pages, t1, rate, t2,
	       (unsigned long long)(rep->rs.faults_read + rep->rs.faults_write),
	       (unsigned long long)rep->rs.pages_prefetch);
	if (rep->rs.huge_moves || rep->rs.pages_moved)
		printf("placed by UFFDIO_MOVE: %llu 2 MiB huge pages, %llu 4 KiB pages\n",
		       (unsigned long long)rep->rs.huge_moves, (unsigned long long)rep->rs.pages_moved);
	far_stats_print(stdout, &rep->rs, 4096, "", 0, false);
	printf("checked: every page by the store's checksum%s%s\n", rep->reference ? ", and compared with " : "",
	       rep->reference ? rep->reference : "");
	if (rep->reference)
		printf("mismatches: %llu\n", (unsigned long long)rep->mismatches);
	if (rep->written)
		printf("wrote %s to %s\n", sz, rep->output);
}

static int restore_remote(int argc, char **argv)
{
	enum { O_REGION = 256, O_TIMEOUT, O_PSK, O_PSK_FILE, O_TLS, O_CA, O_CERT, O_KEY, O_NAME, O_JSON, O_FROM };
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, O_FROM },
		{ "output", required_argument, NULL, 'o' },
		{ "region", required_argument, NULL, O_REGION },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "tls-psk", required_argument, NULL, O_PSK },
		{ "tls-psk-file", required_argument, NULL, O_PSK_FILE },
		{ "tls", no_argument, NULL, O_TLS },
		{ "tls-ca", required_argument, NULL, O_CA },
		{ "tls-cert", required_argument, NULL, O_CERT },
		{ "tls-key", required_argument, NULL, O_KEY },
		{ "tls-server-name", required_argument, NULL, O_NAME },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct remote_log rl = { .last = "" };
	/* The library's 5 s default, times FAULTLINE_TIMEOUT_SCALE; --timeout is taken as given. */
	struct fl_remote_opts ro = { .sz = sizeof(ro), .log = remote_log_cb, .log_ctx = &rl,
				     .log_level = FL_LOG_WARN, .timeout_ms = cli_scaled_ms(5000) };
	struct fl_redis_opts rdo = { .sz = sizeof(rdo), .log = remote_log_cb, .log_ctx = &rl,
				     .log_level = FL_LOG_WARN, .timeout_ms = cli_scaled_ms(5000) };
	struct fl_engine_opts eo = { .sz = sizeof(eo), .flags = FL_ENGINE_NO_FILLER };
	struct fl_region_opts rgo = { .sz = sizeof(rgo), .mem = FL_MEM_ANON, .mode = FL_MODE_MISSING,
				      .memfd = -1, .name = "restore" };
	struct remote_report rep = { .rs = { .sz = sizeof(rep.rs) } };
	struct fl_engine *engine = NULL;
	struct fl_region *region = NULL;
	struct fl_store *store = NULL;
	struct fl_image *ref = NULL;
	enum remote_kind kind;
	char addr[512], psk[512] = "";
	const char *url = NULL, *psk_file = NULL;
	uint8_t *bad_map = NULL;
	bool json = false, tls_x509 = false, have_psk = false;
	uint64_t v, t0;
	int c, r, ret = EXIT_ERR;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
		switch (c) {
		case O_FROM: url = optarg; break;
		case 'o': rep.output = optarg; break;
		case O_REGION:
			if (fl__parse_uint(optarg, 0, 65535, &v))
				return cli_usage_error("image restore: --region: not a region number: '%s'", optarg);
			rep.region = (unsigned)v;
			break;
		case O_TIMEOUT:
			if (fl__parse_uint(optarg, 1, 3600000, &v))
				return cli_usage_error("image restore: --timeout wants milliseconds from 1 to 3600000, not '%s'",
						       optarg);
			ro.timeout_ms = rdo.timeout_ms = (unsigned)v;
			break;
		case O_PSK:
			if (psk[0] || psk_file)
				return cli_usage_error("image restore: one pre-shared key only");
			snprintf(psk, sizeof(psk), "%s", optarg);
			have_psk = true;
			break;
		case O_PSK_FILE:
			if (psk[0] || psk_file)
				return cli_usage_error("image restore: one pre-shared key only");
			psk_file = optarg;
			have_psk = true;
			break;
		case O_TLS: tls_x509 = true; break;
		case O_CA: ro.ca_file = optarg; tls_x509 = true; break;
		case O_CERT: ro.cert_file = optarg; tls_x509 = true; break;
		case O_KEY: ro.key_file = optarg; tls_x509 = true; break;
		case O_NAME: ro.server_name = optarg; tls_x509 = true; break;
		case O_JSON: json = true; break;
		case 'h': fputs(restore_help, stdout); return EXIT_OK;
		case ':':
			return cli_usage_error("image restore: %s needs a value", argv[optind - 1]);
		default:
			return cli_usage_error("image restore: unknown option '%s' (see 'faultline image restore --help')",
					       argv[optind - 1]);
		}
	}
	if (optind + 1 < argc)
		return cli_usage_error("image restore: one image only ('%s' is extra)", argv[optind + 1]);
	rep.reference = optind < argc ? argv[optind] : NULL;
	rep.url = url;
	if (!strncmp(url, "tcp://", 6)) {
		kind = REMOTE_TCP;
		if (parse_tcp_url(url, addr, sizeof(addr)))
			return cli_usage_error("image restore: bad URL '%s' (want tcp://HOST:PORT)", url);
		ro.addr = addr;
		ro.region = rep.region;
	} else if (!strncmp(url, "redis://", 8)) {
		kind = REMOTE_REDIS;
		if (have_psk || tls_x509)
			return cli_usage_error("image restore: the --tls options are for tcp:// (Redis is spoken in the clear)");
		rdo.url = url;
		rdo.region = rep.region;
	} else {
		return cli_usage_error("image restore: bad URL '%s' (want tcp://HOST:PORT or redis://HOST[:PORT][/PREFIX])",
				       url);
	}
	if (have_psk && tls_x509)
		return cli_usage_error("image restore: a pre-shared key and X.509 exclude each other");
	if ((ro.cert_file != NULL) != (ro.key_file != NULL))
		return cli_usage_error("image restore: --tls-cert and --tls-key go together");
	if (psk_file) {
		r = psk_read_file(psk_file, psk, sizeof(psk));
		if (r) {
			cli_error("image restore: %s: %s", psk_file, r == -EINVAL ? "empty" : strerror(-r));
			return EXIT_ERR;
		}
	}
	if (have_psk) {
		if (psk_split(psk, &ro.psk_identity, &ro.psk_key_hex))
			return cli_usage_error("image restore: a pre-shared key is given as IDENTITY:HEXKEY");
		ro.tls = FL_TLS_PSK;
	} else if (tls_x509) {
		ro.tls = FL_TLS_X509;
	}
	/* After the usage checks: a malformed command is a usage error in every build. */
	if (kind == REMOTE_REDIS && !FL_HAVE_REDIS)
		return cli_not_built("image restore --from redis://", "Redis", "redis");
	if ((have_psk || tls_x509) && !FL_HAVE_TLS)
		return cli_not_built("image restore --tls", "TLS", "tls");

	if (rep.reference) {
		r = fl_image_open(rep.reference, 0, &ref);
		if (r) {
			cli_image_open_error(rep.reference, rep.reference, r);
			return EXIT_ERR;
		}
	}

	t0 = fl__now_ns();
	r = kind == REMOTE_TCP ? fl_store_remote_new(&ro, &store) : fl_store_redis_new(&rdo, &store);
	rep.setup_s = (double)(fl__now_ns() - t0) / 1e9;
	memset(psk, 0, sizeof(psk));
	if (r == -EINVAL && kind == REMOTE_REDIS) {
		fl_image_close(ref);
		return cli_usage_error("image restore: bad URL '%s' (want redis://HOST[:PORT][/PREFIX]; a prefix "
				       "has no spaces or braces)", url);
	}
	if (r) {
		if (r == -ENOENT && kind == REMOTE_TCP)
			cli_error("image restore: %s: the served image has no region %u", url, rep.region);
		else if (r == -ENOENT)
			cli_error("image restore: %s: no image under that prefix, or no region %u", url, rep.region);
		else if (r == -EINVAL && ro.tls == FL_TLS_PSK)
			cli_error("image restore: the pre-shared key must be 16 to 64 bytes of hex");
		else
			cli_error("image restore: %s: %s%s%s%s", url, open_reason(kind, r), rl.last[0] ? " (" : "",
				  rl.last, rl.last[0] ? ")" : "");
		goto out;
	}
	if (kind == REMOTE_TCP) {
		struct fl_remote_stats st = { .sz = sizeof(st) };
		if (!fl_store_ctl(store, FL_REMOTE_CTL_STATS, &st)) {
			memcpy(rep.id, st.image_id, FL_IMAGE_ID_LEN);
			rep.have_id = true;
			if (st.page_size != 4096) {
				cli_error("image restore: %s: only 4 KiB-page images can be restored here", url);
				goto out;
			}
		}
	} else if (fl_redis_regions(&rdo, NULL, 0, rep.id) >= 0) {
		rep.have_id = true;
	}
	rep.length = fl_store_size(store);
	if (ref) {
		struct fl_image_region reg = { .sz = sizeof(reg) };
		if (fl_image_region(ref, rep.region, &reg) || reg.length != rep.length) {
			cli_error("image restore: %s: region %u is not the remote one's size (%llu bytes)",
				  rep.reference, rep.region, (unsigned long long)rep.length);
			goto out;
		}
	}
	bad_map = calloc(rep.length / 4096 + 1, 1);
	if (!bad_map) {
		cli_fail("image restore", -ENOMEM);
		goto out;
	}
	r = fl_engine_new(&eo, &engine);
	if (!r)
		r = fl_engine_start(engine);
	if (!r) {
		rgo.length = rep.length;
		rgo.store = store;
		r = fl_region_new(engine, &rgo, &region);
	}
	if (r) {
		cli_fail("image restore: a lazy region", r);
		goto out;
	}
	touch_pages(fl_region_addr(region), rep.length / 4096, 4096, bad_map, &rep.touch);
	fl_region_stats(region, &rep.rs);
	if (kind == REMOTE_TCP) {
		struct fl_remote_stats st = { .sz = sizeof(st) };
		if (!fl_store_ctl(store, FL_REMOTE_CTL_STATS, &st)) {
			rep.store_requests = st.requests;
			rep.store_bad = st.bad_responses;
			rep.store_reconnects = st.reconnects;
			rep.store_timeouts = st.timeouts;
		}
	} else {
		struct fl_redis_stats st = { .sz = sizeof(st) };
		if (!fl_store_ctl(store, FL_REDIS_CTL_STATS, &st)) {
			rep.store_requests = st.commands;
			rep.store_bad = st.bad_values + st.missing;
			rep.store_reconnects = st.io_errors;	/* each dropped connection is reopened */
			rep.store_timeouts = st.timeouts;
		}
	}
	if (ref) {
		int64_t m = compare_pages(ref, rep.region, fl_region_addr(region), rep.touch.pages, bad_map);
		if (m < 0) {
			r = (int)m;
			cli_fail("image restore: comparing", r);
			goto out;
		}
		rep.mismatches = (uint64_t)m;
	}
	if (rep.touch.bad) {
		cli_error("image restore: %s: %llu of %llu pages could not be delivered (first: page %llu): "
			  "corrupt or unreadable at the source%s%s%s; %s", url,
			  (unsigned long long)rep.touch.bad, (unsigned long long)rep.touch.pages,
			  (unsigned long long)rep.touch.first_bad, rl.last[0] ? " (" : "", rl.last,
			  rl.last[0] ? ")" : "", rep.output ? "nothing written" : "they read as SIGBUS, not zeros");
	} else if (rep.output && !rep.mismatches) {
		r = write_atomically(rep.output, fl_region_addr(region), rep.length);
		if (r) {
			cli_fail(rep.output, r);
			goto out;
		}
		rep.written = true;
	}
	print_report(&rep, json);
	if (rep.mismatches)
		cli_error("image restore: %llu pages differ from %s", (unsigned long long)rep.mismatches,
			  rep.reference);
	ret = rep.touch.bad || rep.mismatches ? EXIT_ERR : EXIT_OK;
out:
	fl_region_free(region);
	fl_engine_free(engine);
	fl_store_unref(store);
	fl_image_close(ref);
	free(bad_map);
	return ret;
}

int cmd_image_restore_any(int argc, char **argv)
{
	/* --help describes both forms; --from picks the remote one. Scanned
	 * here so the local form's parser stays as it was. */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(restore_help, stdout);
			return EXIT_OK;
		}
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--from") || !strncmp(argv[i], "--from=", 7))
			return restore_remote(argc, argv);
	}
	return cmd_image_restore(argc, argv);
}
