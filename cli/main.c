// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline: the command-line tool. Dispatches to one subcommand per file
 * (check.c, bench.c, demo.c, stats.c...).
 *
 * Exit status: 0 success, 1 runtime error (one line on stderr), 2 usage
 * error.
 */
#include "cli.h"
#include "cli-client.h"
#include "util.h"

#include <faultline/faultline.h>

#include <stdio.h>
#include <string.h>

static const char usage_text[] =
	"Usage: faultline [--help] [--version] <command> [<args>]\n"
	"\n"
	"Userspace control of virtual memory through Linux userfaultfd.\n"
	"\n"
	"Commands:\n"
	"  check          show which userfaultfd features the running kernel offers\n"
	"  bench NAME     benchmarks, each against a baseline in the same run:\n"
	"                 clone, daemon, far, fault, fill, kv, migrate, restore,\n"
	"                 snapshot, space, watch\n"
	"                 (see 'faultline bench --help')\n"
	"  daemon map     a client of faultlined: map an image through it and check it\n"
	"  demo           lazily restore a memory image and verify every byte\n"
	"  image          create, inspect, verify, diff, export and push images;\n"
	"                 restore one locally or --from tcp:// (serve) or redis://\n"
	"  proxy          a TCP relay that injects delay, loss stalls, a rate limit\n"
	"                 and cuts (rehearse a migration over a bad link)\n"
	"  migrate        start, watch and cancel a live migration of a program\n"
	"                 through its control socket\n"
	"  serve          serve an image's pages to remote lazy regions over TCP/TLS\n"
	"  space          persistent address spaces: create, ls, info, commit, versions,\n"
	"                 fork, rm\n"
	"  stats          show a running faultlined's clients, faults and latency\n"
	"\n"
	"Run 'faultline <command> --help' for a command's options.\n"
	"\n"
	"Exit status: 0 success, 1 error, 2 usage error.\n";

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
	{ "check", cmd_check },
	{ "daemon", cmd_daemon },
	{ "bench", cmd_bench },
	{ "demo", cmd_demo },
	{ "image", cmd_image },
	{ "proxy", cmd_proxy },
	{ "migrate", cmd_migrate },
	{ "serve", cmd_serve },
	{ "space", cmd_space },
	{ "stats", cmd_stats },
};

int main(int argc, char **argv)
{
	const char *name;

	if (argc < 2)
		return cli_usage_error("no command given (see 'faultline --help')");
	name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
	    strcmp(name, "help") == 0) {
		fputs(usage_text, stdout);
		return EXIT_OK;
	}
	if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
		/* The program's version, and the library's it runs with. */
		printf("faultline %d.%d.%d (libfaultline %s)\n", FL_VERSION_MAJOR, FL_VERSION_MINOR,
		       FL_VERSION_PATCH, fl_version());
		/* What a user asks next when a subcommand says "built without". */
		printf("optional parts:");
		for (size_t i = 0; i < FL_ARRAY_SIZE(cli_parts); i++)
			printf(" %s%s", cli_parts[i].built ? "+" : "-", cli_parts[i].option);
		printf("\n");
		return EXIT_OK;
	}
	if (name[0] == '-')
		return cli_usage_error("unknown option '%s' (see 'faultline --help')", name);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(name, commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	return cli_usage_error("unknown command '%s' (see 'faultline --help')", name);
}
