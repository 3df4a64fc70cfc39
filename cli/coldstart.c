// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Cold starts with and without a working set (see coldstart.h), and the
 * `faultline image record` and `faultline image restore` commands.
 */
#include "coldstart.h"
#include "cli.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cold_ws_path(const char *image_path, char *out, size_t len)
{
	snprintf(out, len, "%s.ws", image_path);
}

const char *cold_ws_reason(int err)
{
	switch (err) {
	case -ENOENT:
		return "no such file";
	case -EPROTO:
		return "not a working-set file (or a newer version)";
	case -EBADMSG:
		return "corrupt (size, checksum or a page out of range)";
	case -ESTALE:
		return "recorded against another image or region (stale)";
	default:
		return strerror(-err);
	}
}

/* The workload's order: the first `n` pages of a seeded shuffle. */
static uint32_t *touch_order(uint64_t pages, uint64_t n, uint64_t seed)
{
	uint32_t *order = malloc(pages * sizeof(*order));
	uint64_t s = seed;

	if (!order)
		return NULL;
	for (uint64_t i = 0; i < pages; i++)
		order[i] = (uint32_t)i;
	for (uint64_t i = 0; i < n && i + 1 < pages; i++) {
		uint64_t j = i + splitmix64(&s) % (pages - i);
		uint32_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	return order;
}

static uint64_t verify_touched(const struct cold_opts *o, const uint8_t *mem, const uint32_t *order,
			       uint64_t n)
{
	uint8_t *buf = malloc(4096);
	uint64_t bad = 0, badpage;

	if (!buf)
		return n;
	for (uint64_t i = 0; i < n; i++) {
		if (fl_image_read(o->img, o->region, order[i], 1, buf, &badpage) ||
		    memcmp(buf, mem + (uint64_t)order[i] * 4096, 4096))
			bad++;
	}
	free(buf);
	return bad;
}

int cold_start(const struct cold_opts *o, struct cold_result *res)
{
	struct fl_engine_opts eo = { .sz = sizeof(eo), .flags = FL_ENGINE_NO_FILLER };
	struct fl_region_opts ro = { .sz = sizeof(ro), .mem = FL_MEM_ANON, .mode = FL_MODE_MISSING };
	struct fl_region_stats st = { .sz = sizeof(st) };
	struct fl_image_info info = { .sz = sizeof(info) };
	struct fl_image_region reg = { .sz = sizeof(reg) };
	struct fl_working_set *ws = NULL;
	struct fl_engine *engine = NULL;
	struct fl_region *region = NULL;
	struct fl_store *store = NULL;
	uint32_t *order = NULL;
	volatile uint64_t sink = 0;
	uint64_t t0;
	int r;

	memset(res, 0, sizeof(*res));
	r = fl_image_info(o->img, &info);
	if (!r)
		r = fl_image_region(o->img, o->region, &reg);
	if (r)
		return r;
	if (info.page_size != 4096)
		return -EOPNOTSUPP;
	res->pages = reg.length / 4096;
	res->touched = (uint64_t)(o->touch * (double)res->pages + 0.5);
	if (res->touched > res->pages)
		res->touched = res->pages;
	order = touch_order(res->pages, res->touched, o->seed);
	if (!order)
		return -ENOMEM;
	r = fl_image_store_new(o->img, o->region, &store);
	if (r)
		goto out;
	r = fl_engine_new(&eo, &engine);
	if (r)
		goto out;
	r = fl_engine_start(engine);
	if (r)
		goto out;
	ro.length = reg.length;
	ro.store = store;
	ro.name = "cold-start";

	t0 = fl__now_ns();
	if (o->ws_path) {
		res->ws_err = fl_working_set_load(o->ws_path, o->img, o->region, &ws);
		if (res->ws_err && !o->quiet)
			fprintf(stderr, "faultline: warning: %s: working set ignored: %s; restoring lazily\n",
				o->ws_path, cold_ws_reason(res->ws_err));
	}
	r = fl_region_new(engine, &ro, &region);
	if (r)
		goto out;
	if (o->record_path) {
		r = fl_region_record(region);
		if (r)
			goto out;
	}
	if (ws) {
		r = fl_region_replay(region, ws);
		if (r) {
			res->ws_err = r;
			if (!o->quiet)
				fprintf(stderr, "faultline: warning: %s: working set ignored: %s; restoring lazily\n",
					o->ws_path, cold_ws_reason(r));
		} else {
			res->ws_pages = fl_working_set_pages(ws);
		}
	}
	{
		const uint8_t *mem = fl_region_addr(region);
		for (uint64_t i = 0; i < res->touched; i++)
			sink += *(const volatile uint64_t *)(mem + (uint64_t)order[i] * 4096);
	}
	res->seconds = (double)(fl__now_ns() - t0) / 1e9;
	(void)sink;

	if (res->ws_pages) {
		int64_t n = fl_region_replay_wait(region);
		res->replayed = n > 0 ? (uint64_t)n : 0;
	}
	if (o->record_path) {
		struct fl_working_set *rec = NULL;
		r = fl_region_record_stop(region, &rec);
		if (!r) {
			res->recorded = fl_working_set_pages(rec);
			/* The library writes a temporary file and renames it; a
			 * signal in between would leave the temporary file. The
			 * save is short: the signal waits for it. */
			cleanup_block();
			r = fl_working_set_save(rec, o->record_path, o->img, o->region);
			cleanup_unblock();
		}
		fl_working_set_free(rec);
		if (r)
			goto out;
	}
	fl_region_stats(region, &st);
	res->faults = st.faults_read + st.faults_write + st.faults_minor;
	res->mismatches = verify_touched(o, fl_region_addr(region), order, res->touched);
out:
	fl_working_set_free(ws);
	fl_region_free(region);
	fl_engine_free(engine);
	fl_store_unref(store);
	free(order);
	return r;
}

/* ---- faultline image record / restore ---------------------------------------- */

static const char record_usage[] =
	"usage: faultline image record IMG [-o FILE] [--region N] [--touch PCT] [--seed N] [--json]";
static const char restore_usage[] =
	"usage: faultline image restore IMG [--working-set[=FILE]] [--region N] [--touch PCT] [--seed N] [--json]";

static int image_cold(int argc, char **argv, bool record)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "working-set", optional_argument, NULL, 'w' },
		{ "region", required_argument, NULL, 'r' },
		{ "touch", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct cold_opts o = { .touch = 1.0, .seed = 1 };
	struct cold_result res;
	char wsbuf[4096];
	const char *out = NULL, *wsarg = NULL;
	uint64_t v;
	bool json = false, use_ws = false;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (!record)
				return cli_usage_error("%s", restore_usage);
			out = optarg;
			break;
		case 'w':
			if (record)
				return cli_usage_error("%s", record_usage);
			use_ws = true;
			wsarg = optarg;
			break;
		case 'r':
			if (fl__parse_uint(optarg, 0, UINT32_MAX, &v))
				return cli_usage_error("--region: not a number: '%s'", optarg);
			o.region = (unsigned)v;
			break;
		case 't':
			if (fl__parse_uint(optarg, 1, 100, &v))
				return cli_usage_error("--touch: a percentage from 1 to 100: '%s'", optarg);
			o.touch = (double)v / 100.0;
			break;
		case 's':
			if (fl__parse_uint(optarg, 0, UINT64_MAX, &v))
				return cli_usage_error("--seed: not a number: '%s'", optarg);
			o.seed = v;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			printf("%s\n", record ? record_usage : restore_usage);
			return EXIT_OK;
		default:
			return cli_usage_error("%s", record ? record_usage : restore_usage);
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("%s", record ? record_usage : restore_usage);
	o.image_path = argv[optind];
	cold_ws_path(o.image_path, wsbuf, sizeof(wsbuf));
	if (record)
		o.record_path = out ? out : wsbuf;
	else if (use_ws)
		o.ws_path = wsarg ? wsarg : wsbuf;

	r = fl_image_open(o.image_path, 0, &o.img);
	if (r) {
		cli_image_open_error(o.image_path, o.image_path, r);
		return EXIT_ERR;
	}
	{
		struct fl_image_info info = { .sz = sizeof(info) };
		/* Said here: fl_image_region()'s -ENOENT would read as a missing file. */
		if (fl_image_info(o.img, &info) == 0 && o.region >= info.nregions) {
			cli_error("%s: no region %u (the image has %u: 0 to %u)", o.image_path, o.region,
				  info.nregions, info.nregions - 1);
			fl_image_close(o.img);
			return EXIT_ERR;
		}
	}
	r = cold_start(&o, &res);
	fl_image_close(o.img);
	if (r) {
		if (r == -EINVAL && o.region)
			cli_error("%s: no region %u", o.image_path, o.region);
		else if (r == -EOPNOTSUPP)
			cli_error("%s: only 4 KiB-page images can be restored here", o.image_path);
		else
			cli_fail(record ? "image record" : "image restore", r);
		return EXIT_ERR;
	}
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "image", o.image_path);
		json_u64(&j, "region", o.region);
		json_u64(&j, "pages", res.pages);
		json_u64(&j, "touched_pages", res.touched);
		json_u64(&j, "faults", res.faults);
		json_num(&j, "seconds", res.seconds, 6);
		json_u64(&j, "mismatches", res.mismatches);
		if (record) {
			json_str(&j, "working_set", o.record_path);
			json_u64(&j, "recorded_pages", res.recorded);
		} else {
			json_str(&j, "working_set", o.ws_path);
			json_bool(&j, "working_set_used", res.ws_pages > 0);
			json_str(&j, "working_set_ignored", res.ws_err ? cold_ws_reason(res.ws_err) : NULL);
			json_u64(&j, "working_set_pages", res.ws_pages);
			json_u64(&j, "replayed_pages", res.replayed);
		}
		json_end(&j);
		json_finish(&j);
	} else {
		char t[32];
		fmt_ns((uint64_t)(res.seconds * 1e9), t, sizeof(t));
		printf("%s: read %llu of %llu pages in %s with %llu demand faults\n", o.image_path,
		       (unsigned long long)res.touched, (unsigned long long)res.pages, t,
		       (unsigned long long)res.faults);
		if (record)
			printf("working set: %llu pages recorded in %s\n", (unsigned long long)res.recorded,
			       o.record_path);
		else if (res.ws_pages)
			printf("working set: %s, %llu pages, %llu installed ahead of the workload\n", o.ws_path,
			       (unsigned long long)res.ws_pages, (unsigned long long)res.replayed);
		printf("mismatches: %llu\n", (unsigned long long)res.mismatches);
	}
	return res.mismatches ? EXIT_ERR : EXIT_OK;
}

int cmd_image_record(int argc, char **argv)
{
	return image_cold(argc, argv, true);
}

int cmd_image_restore(int argc, char **argv)
{
	return image_cold(argc, argv, false);
}
