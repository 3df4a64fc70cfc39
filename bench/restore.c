// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline bench restore: restoring a memory image of mixed zero and data
 * pages, eagerly (read the whole image into memory) and lazily from the
 * local image, from the page server over loopback, and from Redis.
 * Eager, lazy-local and lazy through faultlined (started by the benchmark,
 * bench/daemon.c's denv, serving the same image file with FL_SOURCE_IMAGE)
 * alternate (A B C A B C ...); the ratios are medians of the same run.
 */
#include "bench.h"
#include "fl-config.h"
#include "redis-local.h"
#include "util.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u

static const char restore_usage[] =
	"Usage: faultline bench restore [--json] [--size BYTES] [--rounds N] [--no-remote] [--no-redis]\n"
	"                               [--no-daemon]\n"
	"\n"
	"Restore an image of SIZE bytes (default 1G; every 16th page and a 2 MiB run\n"
	"per 128 MiB are zero) eagerly and lazily (local image, page server over\n"
	"loopback, Redis when redis-server is installed and the build has Redis),\n"
	"touching every page, and lazily through faultlined (FL_SOURCE_IMAGE, a\n"
	"daemon the benchmark starts: $FAULTLINED, else next to this program, else\n"
	"the build tree's, else $PATH) from the same image file.\n"
	"Keys: eager_s, lazy_first_access_us, lazy_full_s, daemon_full_s,\n"
	"remote_full_s, redis_full_s, lazy_full_ratio (lazy/eager), lazy_huge_fraction\n"
	"(of the lazy image, placed as 2 MiB huge pages by UFFDIO_MOVE), daemon_ratio\n"
	"(median over rounds of lazy/daemon, goal <= 1.0), remote_ratio\n"
	"(remote/lazy, goal <= 1.5),\n"
	"write_gbps, lz4_ratio, lz4_decode_ns_per_page (null in a build without LZ4).\n";

static volatile uint64_t sink;

/* Touch one byte per page; returns the wall time of the whole walk. */
static uint64_t touch_all(const uint8_t *p, uint64_t len)
{
	uint64_t t0 = fl__now_ns(), acc = 0;
	for (uint64_t off = 0; off < len; off += PAGE)
		acc += p[off];
	sink = acc;
	return fl__now_ns() - t0;
}

static int write_image(const char *path, uint64_t size, bool lz4, double *ret_gbps)
{
	struct fl_image_writer_opts o = { .sz = sizeof(o), .flags = FL_IMAGE_NO_SYNC | (lz4 ? FL_IMAGE_LZ4 : 0),
					  .creator = "faultline bench restore" };
	struct fl_image_region reg = { .sz = sizeof(reg), .length = size, .prot = 3, .name = "bench" };
	struct fl_image_writer *w;
	uint8_t *buf = malloc(2u << 20);
	uint64_t t = 0;
	int r;

	if (!buf)
		return -ENOMEM;
	r = fl_image_writer_new(path, &o, &w);
	if (r) {
		free(buf);
		return r;
	}
	r = fl_image_writer_add_region(w, &reg);
	for (uint64_t off = 0; r >= 0 && off < size; off += 2u << 20) {
		uint64_t t0;
		for (size_t i = 0; i < (2u << 20); i += 8) {
			uint64_t v = pattern_expected(off + i, true);
			if (lz4 && (i % PAGE) < PAGE / 2)
				v = 0x0101010101010101ull; /* half of each page compresses */
			memcpy(buf + i, &v, 8);
		}
		t0 = fl__now_ns();
		r = fl_image_writer_put(w, 0, off / PAGE, (2u << 20) / PAGE, buf);
		t += fl__now_ns() - t0;
	}
	free(buf);
	if (r < 0) {
		fl_image_writer_abort(w);
		return r;
	}
	{
		uint64_t t0 = fl__now_ns();
		r = fl_image_writer_finish(w, NULL);
		t += fl__now_ns() - t0;
	}
	if (ret_gbps)
		*ret_gbps = (double)size / (double)t;
	return r;
}

static int eager(struct fl_image *img, uint64_t size, double *ret_s)
{
	uint64_t t0 = fl__now_ns();
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int r;
	if (p == MAP_FAILED)
		return -errno;
	/* The strongest eager baseline: THP makes first touches cheap. */
	madvise(p, size, MADV_HUGEPAGE);
	r = fl_image_restore(img, 0, p);
	touch_all(p, size);
	*ret_s = (double)(fl__now_ns() - t0) / 1e9;
	munmap(p, size);
	return r;
}

/* Lazy restore from `store` in this process, with the default options (the
 * embedded default must not be the slow path): time to first access and to
 * every page touched. */
static int lazy(struct fl_store *store, uint64_t size, double *ret_first_us, double *ret_full_s,
		double *ret_huge_fraction)
{
	struct fl_region_stats st = { .sz = sizeof(st) };
	struct fl_engine_opts eo = { .sz = sizeof(eo) };
	/* The embedded default: default engine and region options. */
	struct fl_region_opts ro = { .sz = sizeof(ro), .length = size, .store = store };
	struct fl_engine *e;
	struct fl_region *rg;
	uint64_t t0;
	const volatile uint8_t *p;
	int r;

	/* An application's engine is running before it restores: the clock
	 * starts at the region (the restore), not at engine start-up. */
	r = fl_engine_new(&eo, &e);
	if (r)
		return r;
	r = fl_engine_start(e);
	t0 = fl__now_ns();
	if (!r)
		r = fl_region_new(e, &ro, &rg);
	if (r) {
		fl_engine_free(e);
		return r;
	}
	p = fl_region_addr(rg);
	sink = p[0];
	*ret_first_us = (double)(fl__now_ns() - t0) / 1e3;
	touch_all((const uint8_t *)p, size);
	*ret_full_s = (double)(fl__now_ns() - t0) / 1e9;
	/* Every byte is checked outside the timed part (a sample per page). */
	for (uint64_t off = 0; off < size; off += PAGE + 8) {
		uint64_t v;
		memcpy(&v, (const uint8_t *)p + (off & ~7ull), 8);
		if (v != pattern_expected(off & ~7ull, true)) {
			cli_error("bench restore: wrong data at offset %llu", (unsigned long long)off);
			r = -EIO;
			break;
		}
	}
	/* How much of the image came in as whole huge pages (UFFDIO_MOVE
	 * of a THP into an empty PMD; 0 without MOVE or THP). */
	if (ret_huge_fraction && fl_region_stats(rg, &st) == 0)
		*ret_huge_fraction = (double)st.huge_moves * (2u << 20) / (double)size;
	fl_engine_free(e);
	return r;
}

/*
 * The same lazy restore through faultlined: map the image with
 * FL_SOURCE_IMAGE and attach (the clock starts there, as lazy()'s starts at
 * the region), touch every page, check, detach.
 */
static int through_daemon(const struct denv *env, uint64_t size, double *ret_full_s)
{
	struct fl_client_opts co = { .sz = sizeof(co), .socket = env->sock };
	struct fl_client_map_opts mo = { .sz = sizeof(mo), .source = FL_SOURCE_IMAGE, .image = DENV_IMAGE_NAME,
					  .length = size };
	struct fl_client *c = NULL;
	const uint8_t *p = NULL;
	void *addr = NULL;
	uint64_t t0;
	int r;

	r = fl_client_connect(&co, &c);
	t0 = fl__now_ns();
	if (!r)
		r = fl_client_map(c, &mo, &addr);
	if (!r)
		r = fl_client_attach(c);
	if (!r) {
		p = addr;
		touch_all(p, size);
		*ret_full_s = (double)(fl__now_ns() - t0) / 1e9;
		for (uint64_t off = 0; off < size; off += PAGE + 8) {
			uint64_t v;
			memcpy(&v, p + (off & ~7ull), 8);
			if (v != pattern_expected(off & ~7ull, true)) {
				cli_error("bench restore: through faultlined: wrong data at offset %llu",
					  (unsigned long long)off);
				r = -EIO;
				break;
			}
		}
	}
	if (c) {
		int d = fl_client_detach(c);
		if (!r && d)
			r = d;
		fl_client_free(c);
	}
	/* The mapping is the application's: fl_client_free() leaves it. */
	if (addr)
		munmap(addr, size);
	return r;
}

static void *server_thread(void *arg)
{
	fl_server_run(arg);
	return NULL;
}

int bench_restore_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "size", required_argument, NULL, 's' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "no-remote", no_argument, NULL, 'R' },
		{ "no-redis", no_argument, NULL, 'D' },
		{ "no-daemon", no_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t size = 1ull << 30, rounds = 3;
	bool json = false, remote = true, redis = true, daemon = true;
	double eager_s[16], first_us[16], lazy_s[16], huge_frac[16] = { 0 }, daemon_s[16] = { 0 }, dratio[16] = { 0 }, remote_s[4] = { 0 }, redis_s[4] = { 0 }, tmp_first;
	double write_gbps = 0, lz4_ratio = 0, lz4_ns = 0, plain_ns = 0;
	unsigned nremote = 0, nredis = 0, ndaemon = 0;
	struct denv env = { .pid_slot = -1, .dir_slot = -1 };
	bool have_env = false;
	char dir[256], path[300], lzpath[300];
	struct fl_image *img = NULL;
	int c, r, dir_slot;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 's':
			if (fl__parse_size(optarg, &size) || size < (4u << 20) || size % (2u << 20))
				return cli_usage_error("bench restore: --size must be a multiple of 2 MiB, at least 4 MiB");
			break;
		case 'r':
			if (fl__parse_uint(optarg, 1, 16, &rounds))
				return cli_usage_error("bench restore: --rounds must be 1..16");
			break;
		case 'R': remote = false; break;
		case 'D': redis = false; break;
		case 'M': daemon = false; break;
		case 'h': fputs(restore_usage, stdout); return EXIT_OK;
		default: return EXIT_USAGE;
		}
	}
	/* The images, and the library's temporary files, live in it. */
	r = scratch_dir(temp_dir(), "fl-bench-restore", dir, sizeof(dir), &dir_slot);
	if (r)
		return cli_fail(temp_dir(), r);
	snprintf(path, sizeof(path), "%s/bench.img", dir);
	/* With faultlined, the image is written where the daemon finds it. */
	if (daemon) {
		if (denv_setup(&env) == 0) {
			have_env = true;
			snprintf(path, sizeof(path), "%s", env.image);
		} else {
			daemon = false;
		}
	}
	snprintf(lzpath, sizeof(lzpath), "%s/lz4.img", dir);

	r = write_image(path, size, false, &write_gbps);
	if (!r)
		r = fl_image_open(path, 0, &img);
	if (!r && daemon && denv_start(&env, NULL)) {
		cli_error("bench restore: faultlined did not start: daemon_full_s not measured");
		daemon = false;
	}
	if (r)
		goto out;
	/* A: eager, B: lazy from the local image, C: lazy through faultlined,
	 * alternated. */
	for (unsigned i = 0; i < rounds && !r; i++) {
		struct fl_store *st;
		r = eager(img, size, &eager_s[i]);
		if (!r)
			r = fl_image_store_new(img, 0, &st);
		if (!r) {
			r = lazy(st, size, &first_us[i], &lazy_s[i], &huge_frac[i]);
			fl_store_unref(st);
		}
		if (!r && daemon) {
			r = through_daemon(&env, size, &daemon_s[ndaemon]);
			/* Per round: the two ran back to back, so a machine
			 * getting slower or faster between rounds cancels. */
			if (!r)
				dratio[ndaemon] = lazy_s[i] / daemon_s[ndaemon];
			ndaemon += !r;
		}
		if (!json)
			fprintf(stderr, "# round %u: eager %.3f s, lazy %.3f s (first access %.0f us), faultlined %.3f s\n",
				i, eager_s[i], lazy_s[i], first_us[i], daemon && ndaemon ? daemon_s[ndaemon - 1] : 0.0);
	}
	if (have_env)
		denv_stop(&env);
	if (r)
		goto out;

	if (remote) {
		struct fl_server_opts so = { .sz = sizeof(so), .listen = "127.0.0.1:0" };
		struct fl_server *srv;
		pthread_t th;
		r = fl_server_new(img, &so, &srv);
		if (!r && pthread_create(&th, NULL, server_thread, srv) == 0) {
			char addr[64];
			snprintf(addr, sizeof(addr), "127.0.0.1:%d", fl_server_port(srv));
			for (unsigned i = 0; i < 2 && !r; i++) {
				struct fl_remote_opts ro = { .sz = sizeof(ro), .addr = addr };
				struct fl_store *st;
				r = fl_store_remote_new(&ro, &st);
				if (!r) {
					r = lazy(st, size, &tmp_first, &remote_s[nremote], NULL);
					fl_store_unref(st);
					nremote += !r;
				}
			}
			fl_server_stop(srv);
			pthread_join(th, NULL);
			fl_server_free(srv);
		}
		if (r) {
			cli_fail("bench restore: page server", r);
			r = 0;
		}
	}
	if (redis && FL_HAVE_REDIS && redis_local_available()) {
		struct redis_local rl;
		r = redis_local_start(&rl, "bench");
		if (!r) {
			struct fl_redis_opts ro = { .sz = sizeof(ro), .url = rl.url };
			r = fl_redis_push(img, &ro, NULL, NULL);
			for (unsigned i = 0; i < 2 && !r; i++) {
				struct fl_store *st;
				r = fl_store_redis_new(&ro, &st);
				if (!r) {
					r = lazy(st, size, &tmp_first, &redis_s[nredis], NULL);
					fl_store_unref(st);
					nredis += !r;
				}
			}
			redis_local_stop(&rl);
		}
		if (r) {
			cli_fail("bench restore: redis", r);
			r = 0;
		}
	}

	/* LZ4: ratio and decode cost per page against uncompressed reads. */
	if (FL_HAVE_LZ4) {
		uint64_t lsize = size < (256ull << 20) ? size : (256ull << 20);
		struct fl_image *lz;
		struct fl_image_info info = { .sz = sizeof(info) };
		uint8_t *buf = malloc(2u << 20);
		r = write_image(lzpath, lsize, true, NULL);
		if (!r)
			r = fl_image_open(lzpath, 0, &lz);
		if (!r && buf) {
			uint64_t t0;
			fl_image_info(lz, &info);
			lz4_ratio = info.pages_data ? (double)info.data_bytes / (double)(info.pages_data * PAGE) : 0;
			t0 = fl__now_ns();
			for (uint64_t off = 0; off < lsize; off += 2u << 20)
				fl_image_read(lz, 0, off / PAGE, (2u << 20) / PAGE, buf, NULL);
			lz4_ns = (double)(fl__now_ns() - t0) / (double)(lsize / PAGE);
			t0 = fl__now_ns();
			for (uint64_t off = 0; off < lsize; off += 2u << 20)
				fl_image_read(img, 0, off / PAGE, (2u << 20) / PAGE, buf, NULL);
			plain_ns = (double)(fl__now_ns() - t0) / (double)(lsize / PAGE);
			fl_image_close(lz);
		}
		free(buf);
		unlink(lzpath);
		r = 0;
	}

	{
		struct stat3 se = stat_of(eager_s, rounds), sf = stat_of(first_us, rounds),
			     sl = stat_of(lazy_s, rounds), sh = stat_of(huge_frac, rounds);
		struct stat3 sr = stat_of(remote_s, nremote ? nremote : 1), sd = stat_of(redis_s, nredis ? nredis : 1);
		struct stat3 sm = stat_of(daemon_s, ndaemon ? ndaemon : 1), sdr = stat_of(dratio, ndaemon ? ndaemon : 1);
		char b[32];
		if (json) {
			struct json j;
			json_init(&j, stdout);
			json_begin(&j, NULL);
			json_u64(&j, "size_bytes", size);
			json_u64(&j, "rounds", rounds);
			json_stat(&j, "eager_s", se, 4);
			json_stat(&j, "lazy_first_access_us", sf, 1);
			json_stat(&j, "lazy_full_s", sl, 4);
			if (ndaemon)
				json_stat(&j, "daemon_full_s", sm, 4);
			else
				json_null(&j, "daemon_full_s");
			if (nremote)
				json_stat(&j, "remote_full_s", sr, 4);
			else
				json_null(&j, "remote_full_s");
			if (nredis)
				json_stat(&j, "redis_full_s", sd, 4);
			else
				json_null(&j, "redis_full_s");
			json_num(&j, "lazy_full_ratio", sl.med / se.med, 3);
			json_num(&j, "lazy_huge_fraction", sh.med, 3);
			if (ndaemon)
				json_stat(&j, "daemon_ratio", sdr, 3);
			else
				json_null(&j, "daemon_ratio");
			if (nremote)
				json_num(&j, "remote_ratio", sr.med / sl.med, 3);
			else
				json_null(&j, "remote_ratio");
			json_num(&j, "write_gbps", write_gbps, 3);
			if (FL_HAVE_LZ4) {
				json_num(&j, "lz4_ratio", lz4_ratio, 3);
				json_num(&j, "lz4_decode_ns_per_page", lz4_ns, 1);
				json_num(&j, "plain_read_ns_per_page", plain_ns, 1);
			} else {
				json_null(&j, "lz4_ratio");
				json_null(&j, "lz4_decode_ns_per_page");
				json_null(&j, "plain_read_ns_per_page");
			}
			json_end(&j);
			json_finish(&j);
		} else {
			printf("restore of a %s image (medians of %llu rounds, eager and lazy alternated)\n",
			       fmt_bytes(size, b, sizeof(b)), (unsigned long long)rounds);
			printf("  eager (read all, then touch)   %8.3f s\n", se.med);
			printf("  lazy, local image: first access %8.0f us, every page %.3f s (ratio %.2f)\n",
			       sf.med, sl.med, sl.med / se.med);
			printf("                     placed as 2 MiB huge pages (UFFDIO_MOVE) %.0f %%\n", sh.med * 100);
			if (ndaemon)
				printf("  lazy, through faultlined        every page %.3f s (local / faultlined %.2f)\n",
				       sm.med, sdr.med);
			if (nremote)
				printf("  lazy, page server (loopback)    every page %.3f s (%.2f x local)\n", sr.med,
				       sr.med / sl.med);
			if (nredis)
				printf("  lazy, Redis (loopback)          every page %.3f s (%.2f x local)\n", sd.med,
				       sd.med / sl.med);
			printf("  image writing                   %.2f GB/s (uncompressed, page cache)\n", write_gbps);
			if (FL_HAVE_LZ4)
				printf("  LZ4: stored/raw %.2f, read+decode %.0f ns/page vs %.0f ns/page uncompressed\n",
				       lz4_ratio, lz4_ns, plain_ns);
			else
				printf("  LZ4: not measured, built without LZ4 support (-Dlz4=disabled)\n");
		}
	}
out:
	fl_image_close(img);
	unlink(path);
	if (have_env) {
		denv_stop(&env);
		denv_remove(&env);
	}
	rmdir(dir);
	cleanup_drop(dir_slot);
	return r ? cli_fail("bench restore", r) : EXIT_OK;
}
