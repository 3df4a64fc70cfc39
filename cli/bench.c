// SPDX-License-Identifier: LGPL-2.1-or-later
/* faultline bench: dispatch to the benchmark programs in bench/. */
#include "cli.h"
#include "util.h"
#include "bench.h"

#include <stdio.h>
#include <string.h>

static const char bench_usage[] =
	"Usage: faultline bench <name> [<options>]\n"
	"\n"
	"Benchmarks that compare faultline with a minimal hand-written\n"
	"userfaultfd handler in the same run, alternating the two (A B A B ...)\n"
	"and reporting medians, min-max and ratios. Absolute times on VMs are\n"
	"context; the ratios are the result. Run benchmarks on a quiet machine.\n"
	"\n"
	"Benchmarks:\n"
	"  clone   copy-on-write clones: memory of 8 clones vs 8 copies, reset\n"
	"          rate vs fork(), cold start with a working set vs lazily\n"
	"  daemon  clients of faultlined vs in-process: per-fault latency, and\n"
	"          memory of 16 clients sharing one image's page cache\n"
	"  far     far memory vs the kernel's page cache: a file 4x the resident\n"
	"          limit through a far region and through mmap, each in a memory\n"
	"          cgroup; write-back vs pwrite; Redis Cluster as the far tier\n"
	"  fault   demand-fault service latency (p50/p99), same-CPU and cross-CPU\n"
	"          handler placement\n"
	"  fill    lazy restore throughput of a page-cached file: demand faults\n"
	"          plus background fill\n"
	"  kv      clients of a key-value server while it saves: live snapshot\n"
	"          (tracking armed / nothing armed), fork() saves, Redis BGSAVE\n"
	"  migrate live migration between two network namespaces (veth): postcopy\n"
	"          downtime vs stop-and-copy, page-request latency vs the round\n"
	"          trip, efficiency on a 1 Gbit/s link, a workload precopy cannot\n"
	"          converge on\n"
	"  restore eager vs lazy restore of an image: local, page server, Redis\n"
	"  space   address spaces: attach time of 1 GiB vs 64 GiB, switch vs a pipe\n"
	"          round trip, a graph attached vs loaded from a file, Pss of 8\n"
	"          attached processes\n"
	"  snapshot stall of saving running memory: fork() vs live COW and\n"
	"          precopy snapshots, writers running (needs ~2x the size in RAM)\n"
	"  watch   per-dirty-page cost of write watches vs mprotect + SIGSEGV,\n"
	"          of faultline's scan vs the raw PAGEMAP_SCAN ioctl, and of the\n"
	"          watch manager's add/remove and get over 1000 ranges\n"
	"\n"
	"Run 'faultline bench <name> --help' for a benchmark's options.\n";

struct bench {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct bench benches[] = {
	{ "clone", bench_clone_main },
	{ "daemon", bench_daemon_main },
	{ "far", bench_far_main },
	{ "fault", bench_fault_main },
	{ "fill", bench_fill_main },
	{ "kv", bench_kv_main },
	{ "migrate", bench_migrate_main },
	{ "restore", bench_restore_main },
	{ "snapshot", bench_snapshot_main },
	{ "space", bench_space_main },
	{ "watch", bench_watch_main },
};

int cmd_bench(int argc, char **argv)
{
	const char *name;

	if (argc < 2)
		return cli_usage_error("bench: no benchmark named (see 'faultline bench --help')");
	name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
		fputs(bench_usage, stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
		if (strcmp(name, benches[i].name) == 0)
			return benches[i].fn(argc - 1, argv + 1);
	return cli_usage_error("bench: unknown benchmark '%s' (see 'faultline bench --help')", name);
}
