/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Cold starts: restore an image region lazily, run a workload that reads a
 * fixed fraction of its pages in a fixed (seeded) order, and say how many
 * demand faults it took and how long. Optionally record the first-touch
 * order as a working set, or replay one. Behind `faultline image record`,
 * `faultline image restore`, `faultline bench clone` (part c) and the demo.
 */
#ifndef FL_CLI_COLDSTART_H
#define FL_CLI_COLDSTART_H

#include <faultline/faultline.h>

#include <stdbool.h>
#include <stdint.h>

struct cold_opts {
	struct fl_image *img;
	const char *image_path;		/* for messages */
	unsigned region;
	double touch;			/* fraction of the pages the workload reads (0, 1] */
	uint64_t seed;			/* the order */
	const char *ws_path;		/* replay this working set (NULL: plain lazy) */
	const char *record_path;	/* record the first touches here (NULL: no) */
	bool quiet;			/* no warnings on stderr (the caller reports) */
};

struct cold_result {
	uint64_t pages, touched;	/* region pages, pages the workload read */
	uint64_t faults;		/* demand faults */
	uint64_t replayed;		/* pages the replay installed */
	uint64_t ws_pages;		/* pages in the working set used (0: none) */
	uint64_t recorded;		/* pages recorded */
	uint64_t mismatches;		/* touched pages that differ from the image */
	double seconds;			/* region creation to the workload's last read */
	int ws_err;			/* < 0: the working set was ignored (why) */
};

/* The default working-set path for an image: IMAGE.ws. */
void cold_ws_path(const char *image_path, char *out, size_t len);
/* Run a cold start. Returns 0, or -errno for a failure to restore. */
int cold_start(const struct cold_opts *o, struct cold_result *res);
/* The warning for a working set that was ignored. */
const char *cold_ws_reason(int err);

int cmd_image_record(int argc, char **argv);
int cmd_image_restore(int argc, char **argv);

#endif
