// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline image: create, info, verify, diff, export, push.
 */
#include "cli.h"
#include "util.h"
#include "fl-config.h"
#include "coldstart.h"
#include "cli-client.h"

#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u

static const char image_usage[] =
	"Usage: faultline image <command> [<args>]\n"
	"\n"
	"  create OUT (--from FILE | --pattern SIZE) [--zero-pages] [--lz4] [--parent IMG]\n"
	"                 write an image of FILE's bytes (padded with zeros to a page)\n"
	"                 or of a synthetic pattern of SIZE bytes (--lz4 needs a\n"
	"                 build with LZ4: see 'faultline --version')\n"
	"  info IMG [--json]      header, regions, page counts and the parent chain\n"
	"  verify IMG             check every checksum (exit 1 when corrupt)\n"
	"  diff A B               compare two images page by page (exit 0 same, 1 differ)\n"
	"  export IMG [--region N] [-o FILE]\n"
	"                 write a region's raw bytes (default: region 0, stdout)\n"
	"  push IMG redis://HOST:PORT/PREFIX\n"
	"                 upload an image to Redis or a Redis Cluster\n"
	"  record IMG [-o FILE] [--region N] [--touch PCT] [--seed N] [--json]\n"
	"                 restore lazily, read PCT % of the pages in a fixed order, and\n"
	"                 record the first touches as a working set (default IMG.ws)\n"
	"  restore IMG [--working-set[=FILE]] [--region N] [--touch PCT] [--seed N] [--json]\n"
	"                 the same cold start, replaying a recorded working set first;\n"
	"                 a missing, corrupt or stale one is ignored with a warning\n"
	"  restore --from URL [IMG] [--region N] [-o FILE] [--json] [TLS options]\n"
	"                 restore from a page server (tcp://HOST:PORT) or Redis\n"
	"                 (redis://HOST[:PORT][/PREFIX]), touch and check every page\n"
	"\n"
	"Exit status: 0 success, 1 error (or corrupt, or different), 2 usage error.\n";

/* Each subcommand's own help ('faultline image SUB --help'). */
static const struct {
	const char *name, *text;
} image_help[] = {
	{ "create",
	  "Usage: faultline image create OUT (--from FILE | --pattern SIZE) [options]\n"
	  "\n"
	  "Write an image of FILE's bytes (padded with zeros to a page), or of a\n"
	  "synthetic pattern of SIZE bytes (K, M, G, T suffixes). The image is\n"
	  "written to a temporary file and renamed into place when complete.\n"
	  "\n"
	  "  --zero-pages   with --pattern: make some pages zero (they are elided)\n"
	  "  --lz4          compress pages with LZ4\n"
	  "  --parent IMG   an incremental image: only the pages that differ from IMG\n" },
	{ "info",
	  "Usage: faultline image info IMG [--json]\n"
	  "\n"
	  "Print an image's header, regions, page counts and its parent chain.\n" },
	{ "verify",
	  "Usage: faultline image verify IMG\n"
	  "\n"
	  "Check every page's checksum, and the parent chain's. Exit 1 when\n"
	  "anything is corrupt.\n" },
	{ "diff",
	  "Usage: faultline image diff A B\n"
	  "\n"
	  "Compare two images page by page. Exit 0 when they hold the same bytes,\n"
	  "1 when they differ.\n" },
	{ "export",
	  "Usage: faultline image export IMG [--region N] [-o FILE]\n"
	  "\n"
	  "Write a region's raw bytes (default: region 0) to FILE or stdout.\n" },
};

static int sub_help(const char *name)
{
	for (size_t i = 0; i < sizeof(image_help) / sizeof(image_help[0]); i++) {
		if (!strcmp(image_help[i].name, name)) {
			fputs(image_help[i].text, stdout);
			return EXIT_OK;
		}
	}
	fputs(image_usage, stdout);
	return EXIT_OK;
}

static void progress_cb(uint64_t done, uint64_t total, void *ctx)
{
	struct progress *p = ctx;
	if (!p->total)
		progress_begin(p, p->label, total, false);
	progress_update(p, done, NULL);
}

/*
 * Why an image did not open, naming what failed: the image itself, or the
 * parent its header names (fl_image_open() reports both with one errno).
 * `label` is how the image is named in the message (its path, or
 * "--parent PATH").
 */
void cli_image_open_error(const char *label, const char *path, int r)
{
	struct stat st;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		cli_error("%s: is a directory, not an image", label);
		return;
	}
	if (r == -ENOENT && stat(path, &st) == 0) {
		/* The image is there: the missing file is an image in its parent
		 * chain. Walk it, one header at a time, to the first one missing. */
		char cur[4096], next[4096];
		snprintf(cur, sizeof(cur), "%s", path);
		for (unsigned depth = 1; depth <= 64; depth++) {
			struct fl_image_info info = { .sz = sizeof(info) };
			struct fl_image *img;
			const char *slash = strrchr(cur, '/');

			if (fl_image_open(cur, FL_IMAGE_OPEN_NO_PARENT, &img))
				break;
			fl_image_info(img, &info);
			fl_image_close(img);
			if (!info.parent_path[0])
				break;
			/* Recorded relative to the child's directory. */
			if (info.parent_path[0] == '/' || !slash)
				snprintf(next, sizeof(next), "%s", info.parent_path);
			else
				snprintf(next, sizeof(next), "%.*s/%s", (int)(slash - cur), cur, info.parent_path);
			if (stat(next, &st) != 0) {
				if (depth == 1)
					cli_error("%s: its parent image %s is missing (No such file or directory)",
						  label, next);
				else
					cli_error("%s: %s, an image in its parent chain (%u levels up), is missing "
						  "(No such file or directory)", label, next, depth);
				return;
			}
			snprintf(cur, sizeof(cur), "%s", next);
		}
	}
	switch (r) {
	case -EBADMSG:
		cli_error("%s: corrupt image (a checksum or the structure is wrong)", label);
		break;
	case -EPROTO:
		cli_error("%s: not a faultline image, or an unsupported version", label);
		break;
	case -ESTALE:
		cli_error("%s: its parent image does not match the one it was made from", label);
		break;
	default:
		cli_fail(label, r);
	}
}

static int open_image(const char *path, unsigned flags, struct fl_image **ret)
{
	int r = fl_image_open(path, flags, ret);
	if (r)
		cli_image_open_error(path, path, r);
	return r;
}

/*
 * Refuse a size this machine cannot write before anything is allocated or
 * reserved: the writer keeps the page index in memory (24 bytes a page)
 * and reserves the whole image on disk up front.
 */
static int check_create_fits(const char *out, uint64_t length)
{
	uint64_t pages = length / PAGE, index_bytes = pages * 24;
	uint64_t need = length + index_bytes + 4 * PAGE, phys, avail;
	long np = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
	char dir[4096], a[32], b[32], c[32];
	const char *slash = strrchr(out, '/');
	struct statvfs sv;

	phys = np > 0 && ps > 0 ? (uint64_t)np * (uint64_t)ps : UINT64_MAX;
	if (index_bytes > phys / 2) {
		cli_error("%s: an image of %s needs a page index of %s in memory, more than half of this "
			  "machine's %s", out, fmt_bytes(length, a, sizeof(a)), fmt_bytes(index_bytes, b, sizeof(b)),
			  fmt_bytes(phys, c, sizeof(c)));
		return EXIT_ERR;
	}
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == out)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - out), out);
	if (statvfs(dir, &sv) == 0) {
		avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
		if (need > avail) {
			cli_error("%s: an image of %s does not fit: %s free on the filesystem of %s", out,
				  fmt_bytes(length, a, sizeof(a)), fmt_bytes(avail, b, sizeof(b)), dir);
			return EXIT_ERR;
		}
	}
	return EXIT_OK;
}

/* ---- create ----------------------------------------------------------- */

static int image_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "pattern", required_argument, NULL, 'p' },
		{ "zero-pages", no_argument, NULL, 'z' },
		{ "lz4", no_argument, NULL, 'c' },
		{ "parent", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *from = NULL, *parent = NULL, *out;
	uint64_t size = 0, done = 0;
	bool zero_pages = false, lz4 = false;
	struct fl_image_writer_opts wo = { .sz = sizeof(wo), .creator = "faultline image create" };
	struct fl_image_region reg = { .sz = sizeof(reg), .prot = 3, .mem = 0 };
	struct fl_image_writer *w;
	struct fl_image *pimg = NULL;
	struct progress prog;
	uint8_t *buf, pbuf[PAGE];
	uint8_t id[FL_IMAGE_ID_LEN];
	char idstr[2 * FL_IMAGE_ID_LEN + 1];
	int c, fd = -1, r, tmp_slot = -1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': from = optarg; break;
		case 'p':
			if (fl__parse_size(optarg, &size) || !size)
				return cli_usage_error("bad --pattern size '%s'", optarg);
			break;
		case 'z': zero_pages = true; break;
		case 'c': lz4 = true; break;
		case 'P': parent = optarg; break;
		case 'h': return sub_help("create");
		default: return EXIT_USAGE;
		}
	}
	if (lz4 && !FL_HAVE_LZ4)
		return cli_not_built("image create --lz4", "LZ4", "lz4");
	if (optind + 1 != argc)
		return cli_usage_error("image create needs one output path");
	if (!!from == !!size)
		return cli_usage_error("image create needs exactly one of --from FILE and --pattern SIZE");
	out = argv[optind];
	if (from) {
		struct stat st;
		fd = open(from, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st)) {
			r = -errno;
			if (fd >= 0)
				close(fd);
			return cli_fail(from, r);
		}
		if (S_ISDIR(st.st_mode)) {
			close(fd);
			cli_error("%s: is a directory (--from wants a file)", from);
			return EXIT_ERR;
		}
		size = (uint64_t)st.st_size;
		if (!size) {
			close(fd);
			cli_error("%s: empty file", from);
			return EXIT_ERR;
		}
		snprintf(reg.name, sizeof(reg.name), "%s", from);
	} else {
		snprintf(reg.name, sizeof(reg.name), "pattern");
	}
	if (size > UINT64_MAX - PAGE) {
		if (fd >= 0)
			close(fd);
		cli_error("%s: %llu bytes: more than an image can describe", out, (unsigned long long)size);
		return EXIT_ERR;
	}
	reg.length = (size + PAGE - 1) / PAGE * PAGE;
	wo.flags = lz4 ? FL_IMAGE_LZ4 : 0;
	wo.parent = parent;
	if (parent) {
		/* The parent's own faults, named as the parent's, not the output's. */
		struct fl_image_region preg = { .sz = sizeof(preg) };
		char label[4200], a[32], b[32];

		snprintf(label, sizeof(label), "--parent %s", parent);
		r = fl_image_open(parent, 0, &pimg);
		if (r) {
			cli_image_open_error(label, parent, r);
			goto fail_early;
		}
		r = fl_image_region(pimg, 0, &preg);
		if (r || preg.length != reg.length) {
			cli_error("%s: its layout (region 0 of %s) does not match the new image (%s): an "
				  "incremental image needs a parent of the same size", label,
				  r ? "none" : fmt_bytes(preg.length, a, sizeof(a)), fmt_bytes(reg.length, b, sizeof(b)));
			goto fail_early;
		}
	}
	/* Interrupted from here on, the writer's temporary file is removed:
	 * signals wait until its path is registered. */
	cleanup_block();
	r = fl_image_writer_new(out, &wo, &w);
	if (r == 0)
		tmp_slot = cleanup_add_file(fl_image_writer_temp_path(w));
	cleanup_unblock();
	if (r) {
		cli_fail(out, r);
		goto fail_early;
	}
	r = fl_image_writer_add_region(w, &reg);
	if (r == -EFBIG) {
		char a[32];
		cli_error("%s: an image of %s has more pages than the image format describes", out,
			  fmt_bytes(reg.length, a, sizeof(a)));
		goto fail_writer;
	}
	if (r >= 0 && check_create_fits(out, reg.length))
		goto fail_writer;
	buf = malloc(2u << 20);
	if (!buf)
		r = -ENOMEM;
	prog.label = "writing";
	progress_begin(&prog, "writing", reg.length, true);
	while (r >= 0 && done < reg.length) {
		size_t chunk = (size_t)(reg.length - done < (2u << 20) ? reg.length - done : (2u << 20));
		if (from) {
			size_t want = (size_t)(size - done < chunk ? size - done : chunk);
			memset(buf, 0, chunk);
			r = fl__pread_full(fd, buf, want, done);
			if (r < 0) {
				/* The input failed, not the output. */
				progress_end(&prog, done, NULL);
				cli_fail(from, r);
				goto fail_input;
			}
		} else {
			for (size_t i = 0; i < chunk; i += 8) {
				uint64_t v = pattern_expected(done + i, zero_pages);
				memcpy(buf + i, &v, 8);
			}
		}
		if (r >= 0 && pimg) {
			/* Incremental: only the pages that differ from the parent. */
			for (size_t pg = 0; r >= 0 && pg < chunk / PAGE; pg++) {
				int pr = fl_image_read(pimg, 0, done / PAGE + pg, 1, pbuf, NULL);
				if (pr || memcmp(pbuf, buf + pg * PAGE, PAGE))
					r = fl_image_writer_put(w, 0, done / PAGE + pg, 1, buf + pg * PAGE);
			}
		} else if (r >= 0) {
			r = fl_image_writer_put(w, 0, done / PAGE, chunk / PAGE, buf);
		}
		done += chunk;
		progress_update(&prog, done, NULL);
	}
	progress_end(&prog, done, NULL);
	free(buf);
	fl_image_close(pimg);
	if (fd >= 0)
		close(fd);
	if (r < 0) {
		fl_image_writer_abort(w);
		cleanup_drop(tmp_slot);
		return cli_fail(out, r);
	}
	r = fl_image_writer_finish(w, id);
	cleanup_drop(tmp_slot);
	if (r)
		return cli_fail(out, r);
	fl_image_id_format(id, idstr);
	printf("%s: %llu bytes, id %s\n", out, (unsigned long long)reg.length, idstr);
	return EXIT_OK;

fail_input:
	free(buf);
fail_writer:
	fl_image_writer_abort(w);
	cleanup_drop(tmp_slot);
fail_early:
	fl_image_close(pimg);
	if (fd >= 0)
		close(fd);
	return EXIT_ERR;
}

/* ---- info -------------------------------------------------------------- */

static void print_info_text(const struct fl_image *img, const char *path, unsigned level)
{
	struct fl_image_info info = { .sz = sizeof(info) };
	char id[33], pid[33], b1[32], b2[32], when[64];
	time_t t;
	struct tm tm;

	fl_image_info(img, &info);
	fl_image_id_format(info.id, id);
	fl_image_id_format(info.parent_id, pid);
	t = (time_t)(info.created_ns / 1000000000ull);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("%*simage %s\n", level * 2, "", path);
	printf("%*s  id        %s\n", level * 2, "", id);
	printf("%*s  version   %u, page size %u%s\n", level * 2, "", info.version, info.page_size,
	       info.pages_lz4 ? ", LZ4" : "");
	printf("%*s  created   %s by %s\n", level * 2, "", when, info.creator);
	printf("%*s  file      %s, page data %s\n", level * 2, "", fmt_bytes(info.file_bytes, b1, sizeof(b1)),
	       fmt_bytes(info.data_bytes, b2, sizeof(b2)));
	printf("%*s  pages     %llu: %llu data (%llu LZ4), %llu zero, %llu absent\n", level * 2, "",
	       (unsigned long long)info.pages_total, (unsigned long long)info.pages_data,
	       (unsigned long long)info.pages_lz4, (unsigned long long)info.pages_zero,
	       (unsigned long long)info.pages_absent);
	for (unsigned i = 0; i < info.nregions; i++) {
		struct fl_image_region r = { .sz = sizeof(r) };
		fl_image_region(img, i, &r);
		printf("%*s  region %u  %-16s start 0x%llx length %s prot %c%c%c %s\n", level * 2, "", i, r.name,
		       (unsigned long long)r.start, fmt_bytes(r.length, b1, sizeof(b1)),
		       r.prot & 1 ? 'r' : '-', r.prot & 2 ? 'w' : '-', r.prot & 4 ? 'x' : '-',
		       r.mem == 0 ? "anon" : r.mem == 1 ? "shmem" : "hugetlb");
	}
	if (info.chain_depth) {
		printf("%*s  parent    %s (id %s), chain depth %u\n", level * 2, "", info.parent_path, pid,
		       info.chain_depth);
		print_info_text(fl_image_parent(img), info.parent_path, level + 1);
	}
}

static void print_info_json(struct json *j, const char *key, const struct fl_image *img, const char *path)
{
	struct fl_image_info info = { .sz = sizeof(info) };
	char id[33], pid[33];

	fl_image_info(img, &info);
	fl_image_id_format(info.id, id);
	fl_image_id_format(info.parent_id, pid);
	json_begin(j, key);
	json_str(j, "path", path);
	json_str(j, "id", id);
	json_u64(j, "version", info.version);
	json_u64(j, "page_size", info.page_size);
	json_u64(j, "created_ns", info.created_ns);
	json_str(j, "creator", info.creator);
	json_u64(j, "file_bytes", info.file_bytes);
	json_u64(j, "data_bytes", info.data_bytes);
	json_u64(j, "pages_total", info.pages_total);
	json_u64(j, "pages_data", info.pages_data);
	json_u64(j, "pages_zero", info.pages_zero);
	json_u64(j, "pages_absent", info.pages_absent);
	json_u64(j, "pages_lz4", info.pages_lz4);
	json_u64(j, "chain_depth", info.chain_depth);
	json_begin_array(j, "regions");
	for (unsigned i = 0; i < info.nregions; i++) {
		struct fl_image_region r = { .sz = sizeof(r) };
		fl_image_region(img, i, &r);
		json_begin(j, NULL);
		json_str(j, "name", r.name);
		json_u64(j, "start", r.start);
		json_u64(j, "length", r.length);
		json_u64(j, "prot", r.prot);
		json_str(j, "mem", r.mem == 0 ? "anon" : r.mem == 1 ? "shmem" : "hugetlb");
		json_end(j);
	}
	json_end_array(j);
	if (info.chain_depth) {
		json_str(j, "parent_id", pid);
		print_info_json(j, "parent", fl_image_parent(img), info.parent_path);
	} else {
		json_null(j, "parent");
	}
	json_end(j);
}

static int image_info(int argc, char **argv)
{
	bool json = false;
	const char *path = NULL;
	struct fl_image *img;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return sub_help("info");
		else if (argv[i][0] == '-' || path)
			return cli_usage_error("usage: faultline image info IMG [--json]");
		else
			path = argv[i];
	}
	if (!path)
		return cli_usage_error("image info needs an image path");
	if (open_image(path, 0, &img))
		return EXIT_ERR;
	if (json) {
		struct json j;
		json_init(&j, stdout);
		print_info_json(&j, NULL, img, path);
		json_finish(&j);
	} else {
		print_info_text(img, path, 0);
	}
	fl_image_close(img);
	return EXIT_OK;
}

/* ---- verify -------------------------------------------------------------- */

static int image_verify(int argc, char **argv)
{
	struct fl_image *img;
	struct progress prog = { .label = "verifying" };
	uint64_t bad = 0;
	int r;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
		return sub_help("verify");
	if (argc != 2 || argv[1][0] == '-')
		return cli_usage_error("usage: faultline image verify IMG");
	if (open_image(argv[1], 0, &img))
		return EXIT_ERR;
	r = fl_image_verify(img, &bad, progress_cb, &prog);
	if (prog.total)
		progress_end(&prog, prog.total, NULL);
	fl_image_close(img);
	if (r == -EBADMSG) {
		cli_error("%s: corrupt: %llu page(s) fail their checksum", argv[1], (unsigned long long)bad);
		return EXIT_ERR;
	}
	if (r)
		return cli_fail(argv[1], r);
	printf("%s: ok\n", argv[1]);
	return EXIT_OK;
}

/* ---- diff --------------------------------------------------------------- */

static int image_diff(int argc, char **argv)
{
	struct fl_image *a, *b;
	struct fl_image_info ia = { .sz = sizeof(ia) }, ib = { .sz = sizeof(ib) };
	uint64_t differ = 0, total = 0, corrupt = 0;
	uint8_t *pa, *pb;
	int ret = EXIT_OK;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
		return sub_help("diff");
	if (argc != 3)
		return cli_usage_error("usage: faultline image diff A B");
	if (open_image(argv[1], 0, &a))
		return EXIT_ERR;
	if (open_image(argv[2], 0, &b)) {
		fl_image_close(a);
		return EXIT_ERR;
	}
	fl_image_info(a, &ia);
	fl_image_info(b, &ib);
	/* No shortcut on equal content ids: a damaged copy keeps its
	 * original's id. Every page is read, so every checksum is checked. */
	if (ia.nregions != ib.nregions) {
		printf("different layout: %u regions vs %u\n", ia.nregions, ib.nregions);
		ret = EXIT_ERR;
		goto out;
	}
	pa = malloc(PAGE);
	pb = malloc(PAGE);
	for (unsigned r = 0; r < ia.nregions && pa && pb; r++) {
		struct fl_image_region ra = { .sz = sizeof(ra) }, rb = { .sz = sizeof(rb) };
		uint64_t shown = 0;
		fl_image_region(a, r, &ra);
		fl_image_region(b, r, &rb);
		if (ra.length != rb.length) {
			printf("region %u: length %llu vs %llu\n", r, (unsigned long long)ra.length,
			       (unsigned long long)rb.length);
			ret = EXIT_ERR;
			continue;
		}
		for (uint64_t p = 0; p < ra.length / PAGE; p++) {
			int ea = fl_image_read(a, r, p, 1, pa, NULL);
			int eb = fl_image_read(b, r, p, 1, pb, NULL);
			total++;
			if (ea || eb) {
				if (ea != eb || ea != -ENOENT) {
					printf("region %u page %llu: %s in %s\n", r, (unsigned long long)p,
					       (ea ? ea : eb) == -EBADMSG ? "corrupt (bad checksum)" : "unreadable",
					       ea && eb ? "both" : ea ? argv[1] : argv[2]);
					differ++;
					corrupt++;
				}
				continue;
			}
			if (memcmp(pa, pb, PAGE)) {
				if (shown++ < 16)
					printf("region %u page %llu differs\n", r, (unsigned long long)p);
				differ++;
			}
		}
	}
	if (!pa || !pb) {
		cli_fail("image diff", -ENOMEM);
		ret = EXIT_ERR;
	} else if (!differ && ret == EXIT_OK) {
		printf("identical: %llu pages, every one read and checked%s\n", (unsigned long long)total,
		       memcmp(ia.id, ib.id, FL_IMAGE_ID_LEN) ? "" : " (same content id)");
	} else {
		printf("%llu of %llu pages differ%s\n", (unsigned long long)differ, (unsigned long long)total,
		       corrupt ? " (unreadable or corrupt pages count as different)" : "");
	}
	free(pa);
	free(pb);
	if (differ)
		ret = EXIT_ERR;
out:
	fl_image_close(a);
	fl_image_close(b);
	return ret;
}

/* ---- export ------------------------------------------------------------- */

static int image_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "region", required_argument, NULL, 'r' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *out = NULL;
	uint64_t region = 0;
	struct fl_image *img;
	struct fl_image_region reg = { .sz = sizeof(reg) };
	struct progress prog;
	uint8_t *buf;
	struct atomic_file af;
	bool atomic = false;
	int c, fd = STDOUT_FILENO, r = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (fl__parse_uint(optarg, 0, 65535, &region))
				return cli_usage_error("bad --region '%s'", optarg);
			break;
		case 'o': out = optarg; break;
		case 'h': return sub_help("export");
		default: return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("usage: faultline image export IMG [--region N] [-o FILE]");
	if (open_image(argv[optind], 0, &img))
		return EXIT_ERR;
	if (fl_image_region(img, (unsigned)region, &reg)) {
		fl_image_close(img);
		cli_error("%s: no region %llu", argv[optind], (unsigned long long)region);
		return EXIT_ERR;
	}
	if (out) {
		struct stat st;

		if (stat(out, &st) == 0 && !S_ISREG(st.st_mode)) {
			/* A device or a pipe (-o /dev/null): written as it is,
			 * never renamed over. */
			fd = open(out, O_WRONLY | O_CLOEXEC);
		} else {
			/* A temporary file beside it, renamed over it when every
			 * page was read and written (atomic_file). */
			r = atomic_file_open(&af, out);
			if (r) {
				fl_image_close(img);
				return cli_fail(out, r);
			}
			fd = af.fd;
			atomic = true;
		}
		if (fd < 0) {
			r = -errno;
			fl_image_close(img);
			return cli_fail(out, r);
		}
	}
	buf = malloc(2u << 20);
	progress_begin(&prog, "exporting", reg.length, true);
	for (uint64_t off = 0; buf && off < reg.length && !r; off += 2u << 20) {
		size_t chunk = (size_t)(reg.length - off < (2u << 20) ? reg.length - off : (2u << 20));
		uint64_t bad = 0;
		r = fl_image_read(img, (unsigned)region, off / PAGE, chunk / PAGE, buf, &bad);
		if (r) {
			cli_error("%s: page %llu: %s", argv[optind], (unsigned long long)bad,
				  r == -EBADMSG ? "corrupt" : r == -ENOENT ? "absent from the image" : strerror(-r));
			break;
		}
		for (size_t done = 0; done < chunk;) {
			ssize_t n = write(fd, buf + done, chunk - done);
			if (n <= 0) {
				r = n < 0 ? -errno : -EIO;
				cli_fail(out ? out : "stdout", r);
				break;
			}
			done += (size_t)n;
		}
		progress_update(&prog, off + chunk, NULL);
	}
	if (!buf && !r) {
		r = -ENOMEM;
		cli_fail("image export", r);
	}
	progress_end(&prog, reg.length, NULL);
	free(buf);
	if (atomic) {
		int w = atomic_file_commit(&af, out, r);
		if (w && !r) {
			r = w;
			cli_fail(out, r);
		}
	} else if (out && close(fd) && !r) {
		r = -errno;
		cli_fail(out, r);
	}
	fl_image_close(img);
	return r ? EXIT_ERR : EXIT_OK;
}

int cmd_image(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (!sub)
		return cli_usage_error("image needs a command (see 'faultline image --help')");
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0)
		return fputs(image_usage, stdout), EXIT_OK;
	if (strcmp(sub, "create") == 0)
		return image_create(argc - 1, argv + 1);
	if (strcmp(sub, "info") == 0)
		return image_info(argc - 1, argv + 1);
	if (strcmp(sub, "verify") == 0)
		return image_verify(argc - 1, argv + 1);
	if (strcmp(sub, "diff") == 0)
		return image_diff(argc - 1, argv + 1);
	if (strcmp(sub, "export") == 0)
		return image_export(argc - 1, argv + 1);
	if (strcmp(sub, "push") == 0)
		return cmd_image_push(argc - 1, argv + 1);
	if (strcmp(sub, "record") == 0)
		return cmd_image_record(argc - 1, argv + 1);
	if (strcmp(sub, "restore") == 0)
		return cmd_image_restore_any(argc - 1, argv + 1);
	return cli_usage_error("unknown image command '%s' (see 'faultline image --help')", sub);
}
