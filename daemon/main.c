// SPDX-License-Identifier: LGPL-2.1-or-later
/* faultlined: command line (see faultlined(8)). */
#include "faultlined.h"
#include "flutil.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef FLD_HAVE_SYSTEMD
#define FLD_HAVE_SYSTEMD_CHAR '+'
#else
#define FLD_HAVE_SYSTEMD_CHAR '-'
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: faultlined [options]\n"
		"  --socket PATH            manager socket (default /run/faultlined/faultlined.sock)\n"
		"  --images DIR             images are named relative to DIR (default /var/lib/faultlined/images)\n"
		"  --spaces DIR             shared address spaces are directories in DIR, made if missing\n"
		"                           (default /var/lib/faultlined/spaces)\n"
		"  --allow-uid UID          allow clients of this uid (repeatable; default: root and ours)\n"
		"  --max-clients N          sessions at once (default 1024)\n"
		"  --max-ranges N           ranges (and sources) per client (default 256)\n"
		"  --max-memory SIZE        address space served per client, e.g. 64G (default: no limit)\n"
		"  --max-inflight PAGES     pages resolved per fault, per client (default 256)\n"
		"  --threads N              fault-service threads (default 2)\n"
		"  --firecracker-socket PATH  accept Firecracker's snapshot-restore handshake there\n"
		"  --mem-file FILE          the guest memory file Firecracker clients are served from\n"
		"  --state-dir DIR          where a restarted daemon finds the Firecracker VMs to re-take\n"
		"                           (default: the Firecracker socket's directory)\n"
		"  --supervise              run under a supervisor that restarts the daemon when it dies\n"
		"  --max-restarts N         supervisor: give up after N deaths in 60 s (default 5)\n"
		"  --ready-fd N             write READY=1 to fd N and close it once clients can connect\n"
		"  --pid-file PATH          write the pid to signal there once ready (removed at exit)\n"
		"                           (under systemd: sd_notify READY=1, and socket activation)\n"
		"  -v, --verbose            more log lines (repeat for the engine's)\n"
		"  -h, --help, --version\n");
}

/* The CLI's parsers (lib/util), for unsigned options. */
static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret)
{
	uint64_t v;
	int r = fl__parse_uint(s, min, max, &v);

	if (!r)
		*ret = (unsigned)v;
	return r;
}

int main(int argc, char **argv)
{
	enum { O_SOCKET = 256, O_IMAGES, O_ALLOW, O_MAXC, O_MAXR, O_MAXM, O_MAXI, O_THREADS, O_FC, O_MEM,
	       O_SUPERVISE, O_RESTARTS, O_STATE, O_VERSION, O_READY_FD, O_PID_FILE, O_SPACES };
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "images", required_argument, NULL, O_IMAGES },
		{ "allow-uid", required_argument, NULL, O_ALLOW },
		{ "max-clients", required_argument, NULL, O_MAXC },
		{ "max-ranges", required_argument, NULL, O_MAXR },
		{ "max-memory", required_argument, NULL, O_MAXM },
		{ "max-inflight", required_argument, NULL, O_MAXI },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "firecracker-socket", required_argument, NULL, O_FC },
		{ "mem-file", required_argument, NULL, O_MEM },
		{ "supervise", no_argument, NULL, O_SUPERVISE },
		{ "max-restarts", required_argument, NULL, O_RESTARTS },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "ready-fd", required_argument, NULL, O_READY_FD },
		{ "pid-file", required_argument, NULL, O_PID_FILE },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, O_VERSION },
		{ "spaces", required_argument, NULL, O_SPACES },
		{ 0 },
	};
	struct fld_config cfg = {
		.socket = "/run/faultlined/faultlined.sock", .images = "/var/lib/faultlined/images",
		.spaces = "/var/lib/faultlined/spaces",
		.max_clients = 1024, .max_ranges = 256, .max_inflight = 256, .threads = 2,
		.max_restarts = 5, .restart_window_s = 60, .listen_fd = -1, .fc_listen_fd = -1,
		.ready_fd = -1,
	};
	bool socket_given = false, images_given = false, spaces_given = false;
	char *state_dir = NULL;
	unsigned v;
	int c, r;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		r = 0;
		switch (c) {
		case O_SOCKET: cfg.socket = optarg; socket_given = true; break;
		case O_IMAGES: cfg.images = optarg; images_given = true; break;
		case O_SPACES: cfg.spaces = optarg; spaces_given = true; break;
		case O_ALLOW:
			if (cfg.nallowed == FLD_MAX_ALLOWED_UIDS || parse_uint(optarg, 0, ~0u - 1, &v))
				r = -EINVAL;
			else
				cfg.allowed_uids[cfg.nallowed++] = (uid_t)v;
			break;
		case O_MAXC: r = parse_uint(optarg, 1, 1u << 20, &cfg.max_clients); break;
		case O_MAXR: r = parse_uint(optarg, 1, FL_MGR_MAX_RANGES, &cfg.max_ranges); break;
		case O_MAXM: r = fl__parse_size(optarg, &cfg.max_bytes); break;
		case O_MAXI: r = parse_uint(optarg, 1, 4096, &cfg.max_inflight); break;
		case O_THREADS: r = parse_uint(optarg, 1, 64, &cfg.threads); break;
		case O_FC: cfg.fc_socket = optarg; break;
		case O_MEM: cfg.mem_file = optarg; break;
		case O_SUPERVISE: cfg.supervise = true; break;
		case O_RESTARTS: r = parse_uint(optarg, 0, 1000, &cfg.max_restarts); break;
		case O_STATE: cfg.state_dir = optarg; break;
		case O_READY_FD:
			r = parse_uint(optarg, 0, 1u << 30, &v);
			if (!r && (v <= 2 || fcntl((int)v, F_SETFD, FD_CLOEXEC)))
				r = -EBADF;	/* not an open fd of ours (0-2 are the log's) */
			cfg.ready_fd = r ? -1 : (int)v;
			break;
		case O_PID_FILE: cfg.pid_file = optarg; break;
		case 'v': fld_verbose++; break;
		case 'h': usage(stdout); return 0;
		case O_VERSION:
			/* What was built in: tests and scripts decide from it. */
			printf("faultlined %s (%csystemd)\n", fl_version(), FLD_HAVE_SYSTEMD_CHAR);
			return 0;
		default: usage(stderr); return 2;
		}
		if (r) {
			fprintf(stderr, "faultlined: bad value for --%s: '%s'\n", opts[c - O_SOCKET].name, optarg);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "faultlined: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!!cfg.fc_socket != !!cfg.mem_file) {
		fprintf(stderr, "faultlined: --firecracker-socket and --mem-file go together\n");
		return 2;
	}
	if (images_given) {
		/* Said at start, not at a client's first open: a typo here
		 * would otherwise fail every client with ENOENT. */
		struct stat st;
		if (stat(cfg.images, &st)) {
			fprintf(stderr, "faultlined: --images %s: %s\n", cfg.images, strerror(errno));
			return 2;
		}
		if (!S_ISDIR(st.st_mode)) {
			fprintf(stderr, "faultlined: --images %s: not a directory\n", cfg.images);
			return 2;
		}
	}
	if (spaces_given) {
		/* Made if missing (its parent must exist), like a fresh
		 * install's: a space is made in it with `faultline space create`. */
		struct stat st;
		if (mkdir(cfg.spaces, 0755) && errno != EEXIST) {
			fprintf(stderr, "faultlined: --spaces %s: %s\n", cfg.spaces, strerror(errno));
			return 2;
		}
		if (stat(cfg.spaces, &st) || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "faultlined: --spaces %s: not a directory\n", cfg.spaces);
			return 2;
		}
	}
	if (fld_ready_activation(&cfg))
		return 2;
	if (cfg.fc_socket && !socket_given && cfg.listen_fd < 0)
		cfg.socket = NULL;	/* Firecracker only, unless asked (or handed) both */
	if (cfg.fc_socket && !cfg.state_dir) {
		state_dir = strdup(cfg.fc_socket);
		cfg.state_dir = state_dir ? dirname(state_dir) : NULL;
	}
	if (cfg.supervise)
		r = fld_supervise(&cfg, argc, argv);
	else {
		struct fld d = { .cfg = cfg };
		r = fld_run(&d);
	}
	free(state_dir);
	if (r) {
		fprintf(stderr, "faultlined: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}
