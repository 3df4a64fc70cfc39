// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline serve: serve an image's pages over TCP (optionally TLS) to
 * remote lazy regions (fl_store_remote_new()), until SIGINT or SIGTERM.
 *
 * Prints "listening on HOST:PORT" on stdout once the socket is bound (the
 * port is the one the kernel chose when asked for port 0), so scripts can
 * read it; logs go to stderr.
 */
#include "cli.h"
#include "util.h"
#include "fl-config.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char serve_usage[] =
	"Usage: faultline serve IMAGE --listen ADDR:PORT [options]\n"
	"       faultline serve --writable FILE --listen ADDR:PORT [options]\n"
	"\n"
	"Serve the pages of IMAGE to remote lazy regions (the \"remote\" store of\n"
	"libfaultline) until interrupted. ADDR:PORT is an address of this host\n"
	"(\"127.0.0.1:7000\", \"[::1]:7000\", \":7000\" for every address); port 0\n"
	"picks a free port. Prints \"listening on ADDR:PORT\" once ready.\n"
	"\n"
	"With --writable, FILE is raw memory (not an image; its size a multiple of\n"
	"4096), served as one region that clients opened FL_REMOTE_WRITABLE may\n"
	"write (far memory); a flush from a client is an fdatasync of FILE.\n"
	"\n"
	"Options:\n"
	"  -l, --listen ADDR:PORT     where to listen (required)\n"
	"      --writable             serve FILE read-write (see above)\n"
	"      --max-clients N        clients served at once (default 64); the next\n"
	"                             one is refused (EBUSY)\n"
	"      --tls-psk ID:HEXKEY    TLS with a pre-shared key (16-64 bytes in hex)\n"
	"      --tls-psk-file FILE    the same, read from FILE (\"ID:HEXKEY\"), so the\n"
	"                             key does not show in the process list\n"
	"      --tls-cert CERT        TLS with this X.509 certificate chain (PEM)...\n"
	"      --tls-key KEY          ...and its private key (PEM)\n"
	"      --tls-ca CA            with --tls-cert: require client certificates\n"
	"                             signed by CA\n"
	"                             (the --tls-* options need a build with TLS:\n"
	"                             see 'faultline --version')\n"
	"      --bulk-rate RATE       cap background streaming at RATE bytes/s over\n"
	"                             all clients (e.g. 200M); demand faults are\n"
	"                             never throttled\n"
	"      --verify               check every page of IMAGE before serving\n"
	"  -v, --verbose              log connections (twice: debug messages)\n"
	"  -h, --help                 show this help\n"
	"\n"
	"Exit status: 0 after SIGINT/SIGTERM, 1 on an error, 2 on a usage error.\n";

static struct fl_server *volatile serving;

static void on_signal(int sig)
{
	(void)sig;
	/* fl_server_stop() only writes an eventfd: async-signal-safe. */
	if (serving)
		fl_server_stop(serving);
}

static void log_cb(enum fl_log_level level, const char *msg, void *ctx)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	(void)ctx;
	fprintf(stderr, "faultline serve: %s: %s\n", names[level <= FL_LOG_DEBUG ? level : FL_LOG_DEBUG], msg);
}

static int install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
		return -errno;
	/* A client that goes away mid-write must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/* A TLS file that cannot be read, named with its option. */
static int check_tls_file(const char *option, const char *path)
{
	struct stat st;
	int fd;

	if (!path)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_error("serve: %s %s: %s", option, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		cli_error("serve: %s %s: is a directory, not a PEM file", option, path);
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * A --listen host that does not resolve: the library folds that into
 * "cannot assign the address" (-EADDRNOTAVAIL), which points the user at
 * their interfaces rather than at a misspelt name.
 */
static int check_listen_host(const char *listen)
{
	const char *colon = strrchr(listen, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	char host[300];
	size_t len;
	int e;

	if (!colon)
		return 0;	/* the library says what is wrong with the form */
	len = (size_t)(colon - listen);
	if (len >= 2 && listen[0] == '[' && listen[len - 1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(len - 2), listen + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)len, listen);
	if (!host[0] || !strcmp(host, "*"))
		return 0;
	e = getaddrinfo(host, NULL, &hints, &ai);
	if (ai)
		freeaddrinfo(ai);
	if (e == EAI_NONAME || e == EAI_AGAIN || e == EAI_FAIL
#ifdef EAI_NODATA
	    || e == EAI_NODATA
#endif
	) {
		cli_error("serve: --listen %s: the host '%s' cannot be resolved (%s)", listen, host, gai_strerror(e));
		return -1;
	}
	return 0;
}

/*
 * --writable: FILE opened read-write as raw memory, served as one region.
 * Returns 0, or the exit status after saying what is wrong.
 */
static int serve_open_writable(const char *path, struct fl_server_opts *o, struct fl_store **ret_store,
			       struct fl_server **ret_srv)
{
	struct stat st;
	int fd, r;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		cli_error("serve: --writable %s: %s", path, strerror(errno));
		return EXIT_ERR;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size % 4096) {
		cli_error("serve: --writable %s: not a regular file whose size is a nonzero multiple of 4096", path);
		close(fd);
		return EXIT_ERR;
	}
	r = fl_store_file_new(fd, 0, 0, ret_store);
	close(fd);
	if (r) {
		cli_error("serve: --writable %s: %s", path, strerror(-r));
		return EXIT_ERR;
	}
	o->flags |= FL_SERVER_WRITABLE;
	r = fl_server_new_store(*ret_store, o, ret_srv);
	if (r) {
		if (r == -EINVAL && o->tls == FL_TLS_PSK)
			cli_error("serve: the pre-shared key must be 16 to 64 bytes of hex");
		else
			cli_error("serve: --listen %s: %s", o->listen, strerror(-r));
		*ret_store = fl_store_unref(*ret_store);
		return EXIT_ERR;
	}
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	enum { OPT_MAX_CLIENTS = 256, OPT_PSK, OPT_PSK_FILE, OPT_CERT, OPT_KEY, OPT_CA, OPT_RATE, OPT_VERIFY,
	       OPT_WRITABLE };
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
		{ "tls-psk", required_argument, NULL, OPT_PSK },
		{ "tls-psk-file", required_argument, NULL, OPT_PSK_FILE },
		{ "tls-cert", required_argument, NULL, OPT_CERT },
		{ "tls-key", required_argument, NULL, OPT_KEY },
		{ "tls-ca", required_argument, NULL, OPT_CA },
		{ "bulk-rate", required_argument, NULL, OPT_RATE },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "writable", no_argument, NULL, OPT_WRITABLE },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct fl_server_opts o = { .sz = sizeof(o), .log = log_cb, .log_level = FL_LOG_WARN };
	struct fl_server_stats st = { .sz = sizeof(st) };
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_image *img = NULL;
	struct fl_server *srv = NULL;
	char psk[512] = "", idhex[2 * FL_IMAGE_ID_LEN + 1], host[300];
	const char *image, *psk_file = NULL, *colon;
	bool verify = false, have_psk = false, writable = false;
	struct fl_store *store = NULL;
	uint64_t v;
	int c, r, verbose = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "l:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o.listen = optarg;
			break;
		case OPT_MAX_CLIENTS:
			if (fl__parse_uint(optarg, 1, 100000, &v))
				return cli_usage_error("serve: --max-clients wants a number from 1 to 100000, not '%s'",
						       optarg);
			o.max_clients = (unsigned)v;
			break;
		case OPT_PSK:
			snprintf(psk, sizeof(psk), "%s", optarg);
			have_psk = true;
			break;
		case OPT_PSK_FILE:
			psk_file = optarg;
			have_psk = true;
			break;
		case OPT_CERT:
			o.cert_file = optarg;
			break;
		case OPT_KEY:
			o.key_file = optarg;
			break;
		case OPT_CA:
			o.ca_file = optarg;
			break;
		case OPT_RATE:
			if (fl__parse_size(optarg, &v) || !v)
				return cli_usage_error("serve: --bulk-rate wants bytes/s such as 200M, not '%s'",
						       optarg);
			o.bulk_rate = v;
			break;
		case OPT_VERIFY:
			verify = true;
			break;
		case OPT_WRITABLE:
			writable = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			fputs(serve_usage, stdout);
			return EXIT_OK;
		default:
			return cli_usage_error("serve: unknown option '%s' (see 'faultline serve --help')",
					       argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error("serve: no image given (see 'faultline serve --help')");
	if (optind + 1 < argc)
		return cli_usage_error("serve: one image only ('%s' is extra)", argv[optind + 1]);
	image = argv[optind];
	if (!o.listen)
		return cli_usage_error("serve: --listen ADDR:PORT is required");
	if (writable && verify)
		return cli_usage_error("serve: --verify checks an image; --writable serves a raw file");
	if (have_psk && (o.cert_file || o.key_file))
		return cli_usage_error("serve: --tls-psk and --tls-cert exclude each other");
	if ((o.cert_file != NULL) != (o.key_file != NULL))
		return cli_usage_error("serve: --tls-cert and --tls-key go together");
	if (o.ca_file && !o.cert_file)
		return cli_usage_error("serve: --tls-ca needs --tls-cert");
	if (psk_file && psk[0])
		return cli_usage_error("serve: --tls-psk and --tls-psk-file exclude each other");
	if (psk_file) {
		r = psk_read_file(psk_file, psk, sizeof(psk));
		if (r) {
			cli_error("serve: %s: %s", psk_file, r == -EINVAL ? "empty" : strerror(-r));
			return EXIT_ERR;
		}
	}
	if (have_psk) {
		o.tls = FL_TLS_PSK;
		if (psk_split(psk, &o.psk_identity, &o.psk_key_hex))
			return cli_usage_error("serve: a pre-shared key is given as IDENTITY:HEXKEY");
	} else if (o.cert_file) {
		o.tls = FL_TLS_X509;
	}
	/* Each file named on its own: the library reports one errno for all. */
	if (check_tls_file("--tls-cert", o.cert_file) || check_tls_file("--tls-key", o.key_file) ||
	    check_tls_file("--tls-ca", o.ca_file))
		return EXIT_ERR;
	if (o.tls != FL_TLS_NONE && !FL_HAVE_TLS)
		return cli_not_built("serve", "TLS", "tls");
	if (check_listen_host(o.listen))
		return EXIT_ERR;
	o.log_level = verbose >= 2 ? FL_LOG_DEBUG : verbose ? FL_LOG_INFO : FL_LOG_WARN;

	if (writable) {
		r = serve_open_writable(image, &o, &store, &srv);
		if (r)
			return r;
		goto serving;
	}
	r = fl_image_open(image, verify ? FL_IMAGE_OPEN_VERIFY : 0, &img);
	if (r) {
		char label[4200];
		snprintf(label, sizeof(label), "serve: %s", image);
		cli_image_open_error(label, image, r);
		return EXIT_ERR;
	}
	r = fl_image_info(img, &info);
	if (!r)
		r = fl_server_new(img, &o, &srv);
	if (r) {
		if (r == -EINVAL && o.tls == FL_TLS_PSK)
			cli_error("serve: the pre-shared key must be 16 to 64 bytes of hex");
		else if (o.tls == FL_TLS_X509 && (r == -EBADMSG || r == -EACCES || r == -ENOENT))
			/* Read, but not a usable PEM certificate and matching key
			 * (the files themselves opened: check_tls_file). */
			cli_error("serve: --tls-cert %s / --tls-key %s%s%s: not a usable PEM certificate and "
				  "matching key (%s)", o.cert_file, o.key_file, o.ca_file ? " / --tls-ca " : "",
				  o.ca_file ? o.ca_file : "", strerror(-r));
		else
			cli_error("serve: --listen %s: %s", o.listen, strerror(-r));
		fl_image_close(img);
		return EXIT_ERR;
	}
serving:
	r = install_signals();
	if (r) {
		fl_server_free(srv);
		fl_image_close(img);
		fl_store_unref(store);
		return cli_fail("serve: sigaction", r);
	}
	serving = srv;
	colon = strrchr(o.listen, ':');
	snprintf(host, sizeof(host), "%.*s", (int)(colon - o.listen), o.listen);
	if (store) {
		fprintf(stderr, "faultline serve: %s: raw file, %llu bytes, writable%s\n", image,
			(unsigned long long)fl_store_size(store),
			o.tls == FL_TLS_PSK ? ", TLS (PSK)" : o.tls == FL_TLS_X509 ? ", TLS (X.509)" : "");
	} else {
		fl_image_id_format(info.id, idhex);
		fprintf(stderr, "faultline serve: %s: image %s, %u region(s)%s\n", image, idhex, info.nregions,
			o.tls == FL_TLS_PSK ? ", TLS (PSK)" : o.tls == FL_TLS_X509 ? ", TLS (X.509)" : "");
	}
	printf("listening on %s:%d\n", host[0] ? host : "*", fl_server_port(srv));
	fflush(stdout);

	r = fl_server_run(srv);
	serving = NULL;
	fl_server_stats(srv, &st);
	fprintf(stderr, "faultline serve: stopped: %llu connections (%llu refused), %llu requests "
		"(%llu urgent), %llu data + %llu zero pages, %llu errors\n",
		(unsigned long long)st.connections, (unsigned long long)st.refused,
		(unsigned long long)st.requests, (unsigned long long)st.requests_urgent,
		(unsigned long long)st.pages_data, (unsigned long long)st.pages_zero,
		(unsigned long long)st.errors);
	fl_server_free(srv);
	fl_image_close(img);
	if (store) {
		/* What clients wrote without flushing reaches the disk too. */
		int fr = fl_store_flush(store);
		if (fr)
			cli_error("serve: %s: fdatasync: %s", image, strerror(-fr));
		fl_store_unref(store);
		if (fr && !r)
			r = fr;
	}
	memset(psk, 0, sizeof(psk));
	if (r)
		return cli_fail("serve", r);
	return EXIT_OK;
}
