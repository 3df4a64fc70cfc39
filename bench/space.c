// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench space: address spaces (<faultline/space.h>).
 *
 *  (a) attach: a space of 4 segments / 1 GiB and one of a single 64 GiB
 *      segment, attached and detached alternately; attach_flat is the
 *      ratio of their attach times (attach costs O(segments), not O(bytes):
 *      goal <= 1.5, and attach_us_1g <= 100).
 *  (b) switch between two spaces of 4 segments at the same addresses, vs a
 *      pipe ping-pong round trip between two processes (the cost of
 *      handing work to another address space the classic way): ratio =
 *      switch_us / pipe_rtt_us, goal <= 1.0.
 */
#include "bench.h"
#include "util.h"

#include <faultline/faultline.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BASE 0x540000000000ull

static const char usage[] =
	"Usage: faultline bench space [--json] [--reps N] [--part a|b]\n"
	"\n"
	"(a) attach time of a 4-segment 1 GiB space vs a 64 GiB one;\n"
	"(b) switch between two 4-segment spaces vs a pipe round trip between\n"
	"two processes. Medians over N repetitions (default 50).\n";

static struct fl_space *make(const char *name, unsigned nseg, uint64_t seg_len)
{
	struct fl_space_opts o = { .sz = sizeof(o), .name = name };
	struct fl_space *sp;
	char n[16];

	if (fl_space_new(&o, &sp))
		return NULL;
	for (unsigned i = 0; i < nseg; i++) {
		struct fl_segment_opts so = { .sz = sizeof(so), .name = n, .base = BASE + i * (seg_len + (1ull << 30)),
					      .length = seg_len, .mem = FL_MEM_SHMEM };
		snprintf(n, sizeof(n), "s%u", i);
		if (fl_space_segment_add(sp, &so) < 0)
			return fl_space_free(sp);
	}
	return sp;
}

static int attach_us(struct fl_space *sp, double *ret)
{
	uint64_t t0 = fl__now_ns();
	int r = fl_space_attach(sp, NULL);

	*ret = (fl__now_ns() - t0) / 1e3;
	if (!r) {
		*(volatile char *)(uintptr_t)BASE = 1;	/* it is there */
		r = fl_space_detach(sp);
	}
	return r;
}

/* Median round trip (us) of one byte there and back between two processes. */
static double pipe_rtt_us(unsigned reps)
{
	int ab[2], ba[2];
	double *v = calloc(reps, sizeof(*v)), med;
	char c = 0;
	pid_t pid;

	if (!v || pipe(ab) || pipe(ba))
		return -1;
	pid = fork();
	if (pid == 0) {
		close(ab[1]);
		close(ba[0]);
		while (read(ab[0], &c, 1) == 1 && write(ba[1], &c, 1) == 1)
			;
		_exit(0);
	}
	close(ab[0]);
	close(ba[1]);
	for (unsigned i = 0; i < reps; i++) {
		uint64_t t0 = fl__now_ns();
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			break;
		v[i] = (fl__now_ns() - t0) / 1e3;
	}
	close(ab[1]);
	waitpid(pid, NULL, 0);
	close(ba[0]);
	med = stat_of(v, reps).med;
	free(v);
	return med;
}

int bench_space_main(int argc, char **argv)
{
	unsigned reps = 50;
	bool json = false, part_a = true, part_b = true;
	struct fl_space *s1g = NULL, *s64g = NULL, *a = NULL, *b = NULL;
	double *v1 = NULL, *v64 = NULL, *vs = NULL, *vp = NULL;
	int r = 0;

	for (int i = 1; i < argc; i++) {
		uint64_t n;
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			if (fl__parse_uint(argv[++i], 2, 100000, &n))
				return cli_usage_error("--reps: a number from 2");
			reps = (unsigned)n;
		} else if (!strcmp(argv[i], "--part") && i + 1 < argc) {
			i++;
			part_a = !strcmp(argv[i], "a");
			part_b = !strcmp(argv[i], "b");
			if (!part_a && !part_b)
				return cli_usage_error("--part: a or b");
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return EXIT_OK;
		} else {
			return cli_usage_error("unknown option '%s' (see 'faultline bench space --help')", argv[i]);
		}
	}
	v1 = calloc(reps, sizeof(double));
	v64 = calloc(reps, sizeof(double));
	vs = calloc(reps, sizeof(double));
	vp = calloc(reps, sizeof(double));
	if (!v1 || !v64 || !vs || !vp) {
		r = -ENOMEM;
		goto out;
	}
	struct stat3 st1 = { 0 }, st64 = { 0 }, sts = { 0 };
	double rtt = 0;
	if (part_a) {
		s1g = make("a1g", 4, 256ull << 20);
		s64g = make("a64g", 1, 64ull << 30);
		if (!s1g || !s64g) {
			r = -ENOMEM;
			goto out;
		}
		/* The first attach also starts the space's engine: not measured. */
		double warm;
		r = attach_us(s1g, &warm);
		if (!r)
			r = attach_us(s64g, &warm);
		for (unsigned i = 0; i < reps && !r; i++) {
			r = attach_us(s1g, &v1[i]);
			if (!r)
				r = attach_us(s64g, &v64[i]);
		}
		if (r)
			goto out;
		st1 = stat_of(v1, reps);
		st64 = stat_of(v64, reps);
	}
	if (part_b) {
		a = make("sa", 4, 16ull << 20);
		b = make("sb", 4, 16ull << 20);
		if (!a || !b) {
			r = -ENOMEM;
			goto out;
		}
		r = fl_space_attach(b, NULL);
		if (!r)
			r = fl_space_switch(b, a, NULL);	/* both engines started */
		for (unsigned i = 0; i < reps && !r; i++) {
			uint64_t t0 = fl__now_ns();
			r = fl_space_switch(i % 2 ? b : a, i % 2 ? a : b, NULL);
			vs[i] = (fl__now_ns() - t0) / 1e3;
			*(volatile char *)(uintptr_t)BASE = 1;
		}
		if (r)
			goto out;
		sts = stat_of(vs, reps);
		rtt = pipe_rtt_us(reps * 20);
	}
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_u64(&j, "reps", reps);
		if (part_a) {
			json_stat(&j, "attach_us_1g", st1, 1);
			json_stat(&j, "attach_us_64g", st64, 1);
			json_num(&j, "attach_flat", st64.med / st1.med, 3);
		}
		if (part_b) {
			json_stat(&j, "switch_us", sts, 1);
			json_num(&j, "pipe_rtt_us", rtt, 1);
			json_num(&j, "ratio", sts.med / rtt, 3);
		}
		json_end(&j);
		json_finish(&j);
	} else {
		if (part_a)
			printf("(a) attach: 4 segments / 1 GiB %.1f us (%.1f-%.1f), 1 segment / 64 GiB %.1f us "
			       "(%.1f-%.1f): flat %.2f (goal <= 1.5; 1 GiB goal <= 100 us)\n", st1.med, st1.min, st1.max,
			       st64.med, st64.min, st64.max, st64.med / st1.med);
		if (part_b)
			printf("(b) switch between two 4-segment spaces %.1f us (%.1f-%.1f), pipe round trip %.1f us: "
			       "ratio %.2f (goal <= 1.0)\n", sts.med, sts.min, sts.max, rtt, sts.med / rtt);
	}
out:
	fl_space_free(s1g);
	fl_space_free(s64g);
	fl_space_free(a);
	fl_space_free(b);
	free(v1);
	free(v64);
	free(vs);
	free(vp);
	if (r)
		return cli_fail("bench space", r);
	return EXIT_OK;
}
