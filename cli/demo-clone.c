// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Part 4 of `faultline demo`: copy-on-write clones of the demo's memory.
 * Eight worker processes clone one image and read all of it (total Pss
 * beside eight private copies), a clone's reset loop beside fork(), and a
 * cold start with and without a recorded working set. The pieces are the
 * ones `faultline bench clone` measures (bench/clone.c, cli/coldstart.c).
 */
#include "bench.h"
#include "coldstart.h"
#include "demo.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define DEMO_CLONES 8
#define SHARE_MAX (256ull << 20)
#define RESET_K 100

int demo_clones(const uint8_t *src, uint64_t size, const char *dir)
{
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .flags = FL_IMAGE_NO_SYNC, .creator = "faultline demo" };
	struct fl_range range = { (uintptr_t)src, size };
	uint64_t share = size < SHARE_MAX ? size : SHARE_MAX;
	struct cold_opts o = { .touch = 0.2, .seed = 3, .quiet = true };
	struct cold_result lazy, rec, ws;
	char path[4300], wspath[4400];
	double cl, cp, ml, mp, rs, fk;
	int r;

	snprintf(path, sizeof(path), "%s/demo-clone.img", dir);
	cold_ws_path(path, wspath, sizeof(wspath));
	/* In the demo's scratch directory, removed whole if interrupted. */
	r = fl_image_write_ranges(path, &range, 1, &wo);
	if (r)
		return cli_fail("demo: writing the clone image", r);
	printf("\ncopy-on-write clones of that memory:\n");

	/* The demo process is big: its workers share much of it, so what
	 * counts is the Pss of the clones' own mappings. */
	r = clone_share(path, share, DEMO_CLONES, false, &cl, &ml);
	if (!r)
		r = clone_share(path, share, DEMO_CLONES, true, &cp, &mp);
	if (r)
		goto out;
	printf("  %d worker processes each clone the first %llu MiB and read every page:\n"
	       "    total Pss of %d clones    %8.1f MiB  (%.2fx one image: they share the template)\n"
	       "    total Pss of %d copies    %8.1f MiB  (each restored into its own memory)\n",
	       DEMO_CLONES, (unsigned long long)(share >> 20), DEMO_CLONES, ml, ml / (double)(share >> 20),
	       DEMO_CLONES, mp);

	r = clone_reset_rates(path, size, RESET_K, 1, 0.5, &rs, &fk);
	if (r)
		goto out;
	printf("  a %llu MiB clone that writes %d pages per iteration:\n"
	       "    reset to the template  %9.1f per second\n"
	       "    fork() + exit + wait   %9.1f per second  (reset is %.1fx faster)\n",
	       (unsigned long long)(size >> 20), RESET_K, rs, fk, rs / fk);

	r = fl_image_open(path, 0, &o.img);
	if (r)
		goto out;
	o.image_path = path;
	o.record_path = wspath;
	r = cold_start(&o, &rec);
	o.record_path = NULL;
	if (!r)
		r = cold_start(&o, &lazy);
	o.ws_path = wspath;
	if (!r)
		r = cold_start(&o, &ws);
	fl_image_close(o.img);
	if (r)
		goto out;
	{
		char a[32], b[32];
		fmt_ns((uint64_t)(lazy.seconds * 1e9), a, sizeof(a));
		fmt_ns((uint64_t)(ws.seconds * 1e9), b, sizeof(b));
		printf("  a cold start that reads 20%% of the image (%llu pages) in a fixed order:\n"
		       "    lazy restore           %8llu demand faults  %10s\n"
		       "    with the working set   %8llu demand faults  %10s  (%llu pages recorded once, replayed)\n",
		       (unsigned long long)lazy.touched, (unsigned long long)lazy.faults, a,
		       (unsigned long long)ws.faults, b, (unsigned long long)rec.recorded);
		if (lazy.mismatches || ws.mismatches || ws.ws_err) {
			cli_error("demo: the cold starts read wrong bytes (%llu, %llu) or the working set was refused",
				  (unsigned long long)lazy.mismatches, (unsigned long long)ws.mismatches);
			r = -EIO;
		}
	}
out:
	unlink(wspath);
	unlink(path);
	if (r)
		return cli_fail("demo: clones", r);
	return 0;
}
