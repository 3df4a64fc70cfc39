// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline check: what the running kernel offers, probed at run time (never
 * from the build machine's headers), and what faultline uses each feature
 * for. Also the system settings that decide what works: the kernel release,
 * vm.unprivileged_userfaultfd, reserved hugetlb pages, transparent huge
 * pages, and the FAULTLINE_MASK_FEATURES mask.
 */
#include "cli.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static const char check_usage[] =
	"Usage: faultline check [--json]\n"
	"\n"
	"Probe the running kernel's userfaultfd features and show, for each one,\n"
	"the first Linux version that has it, whether it is supported, missing,\n"
	"or masked by FAULTLINE_MASK_FEATURES, and what faultline uses it for.\n"
	"Also shows the kernel release, how userfaultfd may be created here,\n"
	"vm.unprivileged_userfaultfd, reserved hugetlb pages, the THP mode, and\n"
	"which optional parts (TLS, Redis, LZ4) this build has, and which\n"
	"capabilities run in fallback mode with the features in use.\n"
	"\n"
	"Options:\n"
	"  --json     print one JSON object instead of the table\n"
	"  -h, --help show this help\n"
	"\n"
	"Exit status: 0; 1 when userfaultfd cannot be used at all or\n"
	"FAULTLINE_MASK_FEATURES cannot be parsed (the report is printed anyway,\n"
	"and the problem is named on stderr); 2 on a usage error.\n";

struct sysinfo_fl {
	struct utsname uts;
	long unprivileged_uffd;		/* -1: no such sysctl */
	long huge_total, huge_free, huge_kb;	/* -1: unknown */
	char thp[32];			/* the [selected] THP mode, or "" */
};

/* First line of a small file, without the newline; false if unreadable. */
static bool read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	bool ok;

	if (!f)
		return false;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	if (ok)
		buf[strcspn(buf, "\n")] = '\0';
	return ok;
}

static void gather_system(struct sysinfo_fl *s)
{
	char line[256];
	FILE *f;

	memset(s, 0, sizeof(*s));
	if (uname(&s->uts))
		strcpy(s->uts.release, "unknown");
	s->unprivileged_uffd = -1;
	if (read_line("/proc/sys/vm/unprivileged_userfaultfd", line, sizeof(line)))
		s->unprivileged_uffd = strtol(line, NULL, 10);
	s->huge_total = s->huge_free = s->huge_kb = -1;
	f = fopen("/proc/meminfo", "re");
	if (f) {
		while (fgets(line, sizeof(line), f)) {
			long v;
			if (sscanf(line, "HugePages_Total: %ld", &v) == 1)
				s->huge_total = v;
			else if (sscanf(line, "HugePages_Free: %ld", &v) == 1)
				s->huge_free = v;
			else if (sscanf(line, "Hugepagesize: %ld kB", &v) == 1)
				s->huge_kb = v;
		}
		fclose(f);
	}
	if (read_line("/sys/kernel/mm/transparent_hugepage/enabled", line, sizeof(line))) {
		char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
		if (a && b && (size_t)(b - a - 1) < sizeof(s->thp)) {
			memcpy(s->thp, a + 1, (size_t)(b - a - 1));
			s->thp[b - a - 1] = '\0';
		}
	}
}

/*
 * The first token of a FAULTLINE_MASK_FEATURES value that does not parse
 * (the library only says "invalid"), copied to buf.
 */
static void bad_mask_token(const char *spec, char *buf, size_t len)
{
	snprintf(buf, len, "%s", spec);
	while (*spec) {
		size_t n = strcspn(spec, ", ");
		char tok[64];
		uint64_t m;

		if (n == 0) {
			spec++;
			continue;
		}
		if (n >= sizeof(tok)) {
			snprintf(buf, len, "%.*s", (int)n, spec);
			return;
		}
		memcpy(tok, spec, n);
		tok[n] = '\0';
		if (fl_features_parse(tok, &m) < 0) {
			snprintf(buf, len, "%s", tok);
			return;
		}
		spec += n;
	}
}

/*
 * What the kernel itself offers: fl_features_probe() applies the mask, so
 * probe once with the variable out of the way. The CLI is single-threaded
 * here, so touching the environment is safe.
 */
static int probe_unmasked(uint64_t *ret)
{
	const char *env = getenv("FAULTLINE_MASK_FEATURES");
	char *saved = env ? strdup(env) : NULL;
	int r;

	if (env && !saved)
		return -ENOMEM;
	if (saved)
		unsetenv("FAULTLINE_MASK_FEATURES");
	r = fl_features_probe(ret);
	if (saved) {
		setenv("FAULTLINE_MASK_FEATURES", saved, 1);
		free(saved);
	}
	return r;
}

/*
 * What each capability runs on with the features in use (fl_features():
 * the kernel's, less FAULTLINE_MASK_FEATURES), the rows of the table in
 * README.md and faultline(7). `fallback`: a backend the capability uses
 * only because a newer feature is missing (or masked), and which features.
 */
struct capability {
	const char *name;
	const char *backend;
	bool fallback, unavailable;
	uint64_t lacking;	/* feature set whose absence makes it a fallback */
};

#define HAS(f) ((feats & FL_FEATURE_BIT(FL_FEATURE_##f)) != 0)
#define BIT(f) FL_FEATURE_BIT(FL_FEATURE_##f)
static size_t capabilities(uint64_t feats, struct capability *c)
{
	size_t n = 0;
	uint64_t want;

	/* Native either way: huge fills are a speed-up, not a capability. */
	c[n++] = (struct capability){ "lazy regions (MISSING)",
				      HAS(MOVE) && HAS(IOCTL_MOVE) ?
				      "UFFDIO_COPY / ZEROPAGE on first touch; anon: 2 MiB chunks by UFFDIO_MOVE" :
				      "UFFDIO_COPY / ZEROPAGE on first touch" };
	want = BIT(MINOR_SHMEM) | BIT(MINOR_HUGETLBFS);
	c[n++] = (feats & want) == want ?
		(struct capability){ "MINOR regions (memfd, hugetlbfs)", "page cache + UFFDIO_CONTINUE" } :
		(struct capability){ "MINOR regions (memfd, hugetlbfs)", "unavailable: MISSING regions only",
				     .unavailable = true, .lacking = want & ~feats };
	want = BIT(WP_ASYNC) | BIT(WP_UNPOPULATED) | BIT(PAGEMAP_SCAN);
	if ((feats & want) == want)
		c[n++] = (struct capability){ "write watches", "WP_ASYNC + PAGEMAP_SCAN" };
	else if (HAS(WP) && HAS(EVENT_REMOVE))
		c[n++] = (struct capability){ "write watches",
					      HAS(WP_UNPOPULATED) ? "synchronous uffd WP faults" :
					      "synchronous uffd WP faults (+ MISSING for never-populated anon pages)",
					      .fallback = true, .lacking = want & ~feats };
	else
		c[n++] = (struct capability){ "write watches", "mprotect + SIGSEGV", .fallback = true,
					      .lacking = (want | BIT(WP) | BIT(EVENT_REMOVE)) & ~feats };
	c[n++] = HAS(WP) ?
		(struct capability){ "live snapshots",
				     HAS(WP_UNPOPULATED) ? "synchronous uffd WP (copy before write)" :
				     "synchronous uffd WP (copy before write; "
				     "+ MISSING for never-populated anon pages)",
				     .fallback = !HAS(WP_UNPOPULATED), .lacking = BIT(WP_UNPOPULATED) & ~feats } :
		(struct capability){ "live snapshots", "mprotect + SIGSEGV watch (precopy)", .fallback = true,
				     .lacking = BIT(WP) };
	/* Without CONTINUE_MODE_WP (6.4) a clone cannot track its first writes: a reset scans. */
	if ((feats & want) == want && HAS(CONTINUE_MODE_WP))
		c[n++] = (struct capability){ "clones and resets",
					      "CONTINUE clones tracking first writes; resets by PAGEMAP_SCAN / async watch" };
	else if ((feats & want) == want)
		c[n++] = (struct capability){ "clones and resets",
					      "CONTINUE clones, no first-write tracking: resets scan (PAGEMAP_SCAN / async watch)",
					      .fallback = true, .lacking = BIT(CONTINUE_MODE_WP) };
	else
		c[n++] = (struct capability){ "clones and resets",
					      HAS(CONTINUE_MODE_WP) ?
					      "CONTINUE clones; resets by /proc/pid/pagemap reads / synchronous watch" :
					      "CONTINUE clones, no first-write tracking; resets by /proc/pid/pagemap reads / "
					      "synchronous watch",
					      .fallback = true, .lacking = (want | BIT(CONTINUE_MODE_WP)) & ~feats };
	if (HAS(POISON) && HAS(IOCTL_POISON))
		c[n++] = (struct capability){ "poison on failure", "UFFDIO_POISON: SIGBUS at the access" };
	else
		c[n++] = (struct capability){ "poison on failure",
					      HAS(THREAD_ID) ? "SIGBUS sent to the faulting thread (tgkill)" :
							       "SIGBUS sent to the process",
					      .fallback = true,
					      .lacking = (BIT(POISON) | BIT(IOCTL_POISON)) & ~feats };
	c[n++] = HAS(MOVE) && HAS(IOCTL_MOVE) ?
		(struct capability){ "UFFDIO_MOVE", "fl_uffd_move()" } :
		(struct capability){ "UFFDIO_MOVE", "unavailable: -EOPNOTSUPP, pages are copied",
				     .unavailable = true, .lacking = (BIT(MOVE) | BIT(IOCTL_MOVE)) & ~feats };
	c[n++] = (struct capability){ "working sets", "first-touch faults recorded, replayed in batches" };
	c[n++] = HAS(POISON) && HAS(IOCTL_POISON) && HAS(PAGEMAP_SCAN) ?
		(struct capability){ "faultlined", "guard poisons what is absent (PAGEMAP_SCAN)" } :
		(struct capability){ "faultlined",
				     HAS(POISON) && HAS(IOCTL_POISON) ? "guard poisons what is absent (pagemap reads)" :
				     "guard stops the client with SIGBUS",
				     .fallback = true,
				     .lacking = (BIT(POISON) | BIT(IOCTL_POISON) | BIT(PAGEMAP_SCAN)) & ~feats };
	return n;
}
#undef HAS
#undef BIT

/* "poison,ioctl_poison": the names of a feature set. */
static void feature_list(uint64_t set, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned f = 0; f < 64 && off < len; f++)
		if (set & FL_FEATURE_BIT(f))
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
						fl_feature_name((enum fl_feature)f));
}

enum feat_status { FEAT_SUPPORTED, FEAT_MISSING, FEAT_MASKED };

static const char *const status_names[] = { "supported", "missing", "masked" };

int cmd_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *mask_env = getenv("FAULTLINE_MASK_FEATURES");
	char bad_token[128] = "", hex[32];
	uint64_t kernel = 0, masked = 0, parsed;
	int nfeatures = 0, probe_err, counts[3] = { 0 }, c, status = EXIT_OK;
	struct capability caps[16];
	size_t ncaps, nfallback = 0;
	char names[256];
	bool json = false, mask_ok = true, have_syscall, have_dev;
	struct sysinfo_fl sys;

	opterr = 0;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(check_usage, stdout);
			return EXIT_OK;
		default:
			return cli_usage_error("check: unknown option '%s' (see 'faultline check --help')",
					       argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("check: unexpected argument '%s'", argv[optind]);

	gather_system(&sys);
	if (mask_env && fl_features_parse(mask_env, &parsed) < 0) {
		mask_ok = false;
		bad_mask_token(mask_env, bad_token, sizeof(bad_token));
	}
	masked = fl_features_masked();
	probe_err = probe_unmasked(&kernel);
	if (probe_err)
		kernel = 0;
	while (fl_feature_name((enum fl_feature)nfeatures))
		nfeatures++;
	have_syscall = (kernel & FL_FEATURE_BIT(FL_FEATURE_SYSCALL)) != 0;
	/* What the library will use: the kernel's features less the mask. */
	ncaps = capabilities(kernel & ~masked, caps);
	for (size_t i = 0; i < ncaps; i++)
		nfallback += caps[i].fallback || caps[i].unavailable;
	have_dev = (kernel & FL_FEATURE_BIT(FL_FEATURE_DEV_USERFAULTFD)) != 0;

	if (json) {
		struct json j;

		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "version", fl_version());
		json_str(&j, "kernel", sys.uts.release);
		json_str(&j, "machine", sys.uts.machine);
		json_bool(&j, "userfaultfd", probe_err == 0);
		json_str(&j, "userfaultfd_error", probe_err ? strerror(-probe_err) : NULL);
		json_bool(&j, "syscall", have_syscall);
		json_bool(&j, "dev_userfaultfd", have_dev);
		json_bool(&j, "user_mode_only", !probe_err && !have_syscall && !have_dev);
		if (sys.unprivileged_uffd >= 0)
			json_i64(&j, "unprivileged_userfaultfd", sys.unprivileged_uffd);
		else
			json_null(&j, "unprivileged_userfaultfd");
		json_begin(&j, "hugetlb");
		json_i64(&j, "page_kib", sys.huge_kb);
		json_i64(&j, "total", sys.huge_total);
		json_i64(&j, "free", sys.huge_free);
		json_bool(&j, "reserved", sys.huge_total > 0);
		json_end(&j);
		json_str(&j, "thp", sys.thp[0] ? sys.thp : NULL);
		json_begin(&j, "mask");
		json_str(&j, "env", mask_env);
		json_bool(&j, "valid", mask_ok);
		json_str(&j, "error", mask_ok ? NULL : "unknown feature name");
		json_str(&j, "bad_token", mask_ok ? NULL : bad_token);
		snprintf(hex, sizeof(hex), "0x%" PRIx64, masked);
		json_str(&j, "masked", hex);
		json_end(&j);
		json_begin_array(&j, "features");
		for (int i = 0; i < nfeatures; i++) {
			enum fl_feature f = (enum fl_feature)i;
			bool has = (kernel & FL_FEATURE_BIT(f)) != 0, is_masked = (masked & FL_FEATURE_BIT(f)) != 0;
			enum feat_status st = !has ? FEAT_MISSING : is_masked ? FEAT_MASKED : FEAT_SUPPORTED;

			counts[st]++;
			json_begin(&j, NULL);
			json_str(&j, "name", fl_feature_name(f));
			json_i64(&j, "id", i);
			/* null for faultline's own features: not a UFFDIO_API bit */
			snprintf(hex, sizeof(hex), "0x%" PRIx64, fl_feature_uffd_bit(f));
			json_str(&j, "uffd_bit", fl_feature_uffd_bit(f) ? hex : NULL);
			json_str(&j, "since", fl_feature_since(f));
			json_str(&j, "status", status_names[st]);
			json_bool(&j, "kernel", has);
			json_bool(&j, "masked", is_masked);
			json_str(&j, "used_for", fl_feature_purpose(f));
			json_end(&j);
		}
		json_end_array(&j);
		json_u64(&j, "supported", (uint64_t)counts[FEAT_SUPPORTED]);
		json_u64(&j, "missing", (uint64_t)counts[FEAT_MISSING]);
		json_u64(&j, "masked_count", (uint64_t)counts[FEAT_MASKED]);
		/* Which capabilities run on a fallback (or not at all) here. */
		json_begin_array(&j, "capabilities");
		for (size_t i = 0; i < ncaps; i++) {
			json_begin(&j, NULL);
			json_str(&j, "name", caps[i].name);
			json_str(&j, "backend", caps[i].backend);
			json_str(&j, "mode", caps[i].unavailable ? "unavailable" :
					     caps[i].fallback ? "fallback" : "native");
			feature_list(caps[i].lacking, names, sizeof(names));
			json_str(&j, "lacking", caps[i].lacking ? names : NULL);
			json_end(&j);
		}
		json_end_array(&j);
		json_begin_array(&j, "fallbacks");
		for (size_t i = 0; i < ncaps; i++)
			if (caps[i].fallback || caps[i].unavailable)
				json_str(&j, NULL, caps[i].name);
		json_end_array(&j);
		json_begin(&j, "built_with");
		for (size_t i = 0; i < FL_ARRAY_SIZE(cli_parts); i++)
			json_bool(&j, cli_parts[i].option, cli_parts[i].built);
		json_end(&j);
		json_end(&j);
		json_finish(&j);
	} else {
		printf("faultline %s on Linux %s (%s)\n", fl_version(), sys.uts.release, sys.uts.machine);
		if (probe_err)
			printf("userfaultfd:                 unavailable (%s)\n", strerror(-probe_err));
		else if (have_syscall || have_dev)
			printf("userfaultfd:                 available (%s%s%s)\n",
			       have_syscall ? "userfaultfd(2)" : "", have_syscall && have_dev ? ", " : "",
			       have_dev ? "/dev/userfaultfd" : "");
		else
			printf("userfaultfd:                 user-mode faults only (kernel-mode faults, e.g. read(2) into lazy memory, fail with EFAULT)\n");
		if (sys.unprivileged_uffd >= 0)
			printf("vm.unprivileged_userfaultfd: %ld\n", sys.unprivileged_uffd);
		else
			printf("vm.unprivileged_userfaultfd: (no such sysctl)\n");
		if (sys.huge_total > 0)
			printf("hugetlb pages:               %ld reserved (%ld free) of %ld KiB\n",
			       sys.huge_total, sys.huge_free, sys.huge_kb);
		else if (sys.huge_total == 0)
			printf("hugetlb pages:               none reserved (hugetlb regions need vm.nr_hugepages > 0)\n");
		else
			printf("hugetlb pages:               unknown\n");
		printf("transparent huge pages:      %s\n", sys.thp[0] ? sys.thp : "unknown");
		printf("optional parts built in:    ");
		for (size_t i = 0; i < FL_ARRAY_SIZE(cli_parts); i++)
			printf(" %s (%s) %s%s", cli_parts[i].name, cli_parts[i].library,
			       cli_parts[i].built ? "yes" : "no", i + 1 < FL_ARRAY_SIZE(cli_parts) ? "," : "\n");
		if (!mask_env)
			printf("FAULTLINE_MASK_FEATURES:     unset\n");
		else if (mask_ok)
			printf("FAULTLINE_MASK_FEATURES:     \"%s\" (mask 0x%" PRIx64 ")\n", mask_env, masked);
		else
			printf("error: FAULTLINE_MASK_FEATURES=\"%s\": unknown feature '%s'; nothing is masked\n",
			       mask_env, bad_token);
		printf("\n%-20s %-6s %-10s %s\n", "FEATURE", "SINCE", "STATUS", "USED FOR");
		for (int i = 0; i < nfeatures; i++) {
			enum fl_feature f = (enum fl_feature)i;
			bool has = (kernel & FL_FEATURE_BIT(f)) != 0, is_masked = (masked & FL_FEATURE_BIT(f)) != 0;
			enum feat_status st = !has ? FEAT_MISSING : is_masked ? FEAT_MASKED : FEAT_SUPPORTED;

			counts[st]++;
			printf("%-20s %-6s %-10s %s\n", fl_feature_name(f), fl_feature_since(f), status_names[st],
			       fl_feature_purpose(f));
		}
		printf("\n%d features: %d supported, %d missing, %d masked\n", nfeatures,
		       counts[FEAT_SUPPORTED], counts[FEAT_MISSING], counts[FEAT_MASKED]);
		printf("\n%-34s %-11s %s\n", "CAPABILITY", "MODE", "BACKEND");
		for (size_t i = 0; i < ncaps; i++) {
			feature_list(caps[i].lacking, names, sizeof(names));
			printf("%-34s %-11s %s%s%s%s\n", caps[i].name,
			       caps[i].unavailable ? "unavailable" : caps[i].fallback ? "fallback" : "native",
			       caps[i].backend, caps[i].lacking ? " (lacks " : "", caps[i].lacking ? names : "",
			       caps[i].lacking ? ")" : "");
		}
		if (nfallback)
			printf("\n%zu of %zu capabilities run in fallback mode (or not at all) on this kernel%s\n",
			       nfallback, ncaps, masked ? " with FAULTLINE_MASK_FEATURES" : "");
		else
			printf("\nevery capability runs on its native backend\n");
	}
	fflush(stdout);
	if (!mask_ok) {
		cli_error("check: FAULTLINE_MASK_FEATURES=\"%s\": unknown feature '%s'", mask_env, bad_token);
		status = EXIT_ERR;
	}
	if (probe_err) {
		cli_error("check: userfaultfd cannot be used: %s", strerror(-probe_err));
		status = EXIT_ERR;
	}
	return status;
}
