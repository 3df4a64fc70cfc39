// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline proxy: a TCP relay that injects delay, loss stalls, a rate
 * limit and cuts, to rehearse a migration (or any TCP service) over a bad
 * link on one host. The relay itself is cli/relay.c (bench migrate runs it
 * in-process); this file is the command: options, signals, the report.
 */
#include "cli.h"
#include "relay.h"
#include "util.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static const char usage[] =
	"Usage: faultline proxy --listen ADDR:PORT --to ADDR:PORT [--delay-ms N]\n"
	"                       [--loss PCT] [--rate BYTES] [--cut-after BYTES]\n"
	"\n"
	"Relay every connection accepted on --listen (port 0: any free port) to\n"
	"--to, both ways, injecting faults:\n"
	"  --delay-ms N       hold each chunk N ms in each direction (latency only:\n"
	"                     throughput is not capped)\n"
	"  --loss PCT         with probability PCT % per chunk, the chunk and all\n"
	"                     after it wait 200 ms more (a TCP retransmission stall)\n"
	"  --rate BYTES       bytes per second per direction (K, M, G suffixes)\n"
	"  --cut-after BYTES  reset a connection once BYTES were relayed (both ways)\n"
	"Prints 'proxy listening on ADDR:PORT'. SIGUSR1 resets every open\n"
	"connection on both sides; later ones are relayed again. SIGTERM or\n"
	"SIGINT stops and prints what was relayed.\n";

int cmd_proxy(int argc, char **argv)
{
	struct relay_opts o = { .seed = 0x5eed };
	bool have_listen = false, have_to = false;
	struct relay_stats st;
	struct sockaddr_storage local;
	struct relay *relay;
	sigset_t sigs;
	char buf[128];
	int sfd, r;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t n;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			return EXIT_OK;
		}
		if (!v)
			return cli_usage_error("proxy: %s needs a value (see 'faultline proxy --help')", a);
		i++;
		if (!strcmp(a, "--listen")) {
			if (relay_parse_addr(v, &o.listen_addr, &o.listen_len))
				return cli_usage_error("proxy: --listen: ADDR:PORT wanted, not '%s'", v);
			have_listen = true;
		} else if (!strcmp(a, "--to")) {
			if (relay_parse_addr(v, &o.to_addr, &o.to_len))
				return cli_usage_error("proxy: --to: ADDR:PORT wanted, not '%s'", v);
			struct sockaddr_in *in = (struct sockaddr_in *)&o.to_addr;
			if (!in->sin_port)
				return cli_usage_error("proxy: --to: port 0 cannot be connected to");
			have_to = true;
		} else if (!strcmp(a, "--delay-ms")) {
			if (fl__parse_uint(v, 0, 3600000, &n))
				return cli_usage_error("proxy: --delay-ms: milliseconds from 0 to 3600000, not '%s'", v);
			o.delay_ns = n * 1000000ull;
		} else if (!strcmp(a, "--loss")) {
			char *end;
			errno = 0;
			o.loss_pct = strtod(v, &end);
			if (errno || end == v || *end || !(o.loss_pct >= 0 && o.loss_pct <= 100))
				return cli_usage_error("proxy: --loss: a percentage from 0 to 100, not '%s'", v);
		} else if (!strcmp(a, "--rate")) {
			if (fl__parse_size(v, &o.rate) || !o.rate)
				return cli_usage_error("proxy: --rate: bytes per second (K, M, G), not '%s'", v);
		} else if (!strcmp(a, "--cut-after")) {
			if (fl__parse_size(v, &o.cut_after) || !o.cut_after)
				return cli_usage_error("proxy: --cut-after: a byte count (K, M, G), not '%s'", v);
		} else {
			return cli_usage_error("proxy: unknown option '%s' (see 'faultline proxy --help')", a);
		}
	}
	if (!have_listen || !have_to)
		return cli_usage_error("proxy: --listen and --to are required (see 'faultline proxy --help')");
	/* Signals are read from a signalfd by this thread: blocked before any
	 * relay thread starts, so every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		return cli_fail("proxy: signalfd", -errno);
	r = relay_new(&o, &relay);
	if (r) {
		cli_error("proxy: cannot listen on %s: %s", relay_format_addr(&o.listen_addr, buf, sizeof(buf)),
			  strerror(-r));
		return EXIT_ERR;
	}
	r = relay_start(relay);
	if (r) {
		relay_free(relay);
		return cli_fail("proxy: start", r);
	}
	relay_local(relay, &local);
	printf("proxy listening on %s\n", relay_format_addr(&local, buf, sizeof(buf)));
	fflush(stdout);
	for (;;) {
		struct signalfd_siginfo si;

		if (read(sfd, &si, sizeof(si)) != sizeof(si)) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (si.ssi_signo != SIGUSR1)
			break;
		fprintf(stderr, "faultline: proxy: SIGUSR1: %u connections reset\n", relay_cut(relay));
	}
	relay_stats(relay, &st);
	relay_free(relay);
	close(sfd);
	printf("proxy: %llu connections, %llu bytes relayed to %s, %llu back, %llu cut, %llu stalls, "
	       "%llu refused by the target\n", (unsigned long long)st.connections,
	       (unsigned long long)st.bytes_up, relay_format_addr(&o.to_addr, buf, sizeof(buf)),
	       (unsigned long long)st.bytes_down, (unsigned long long)st.cuts, (unsigned long long)st.stalls,
	       (unsigned long long)st.refused);
	return EXIT_OK;
}
