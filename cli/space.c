// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * faultline space: persistent address spaces (<faultline/space.h>) from the
 * command line: create one, list them, describe one, commit, list its
 * versions, fork one, export a version as one image, remove one.
 */
#include "cli.h"
#include "util.h"
#include "fl-config.h"

#include <faultline/faultline.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char space_usage[] =
	"Usage: faultline space <command> [<args>]\n"
	"\n"
	"Persistent address spaces: a directory holding a manifest and one image\n"
	"per segment per version (see fl_space_new(3)).\n"
	"\n"
	"  create DIR --name NAME --segment NAME:BASE:SIZE[:hugetlb] [...] [--json]\n"
	"                         a new space of zero segments, committed as version 1\n"
	"                         (BASE in hex, SIZE with K/M/G/T)\n"
	"  ls [PARENT] [--json]   the spaces in PARENT (default: .)\n"
	"  info DIR [--json]      name, versions, segments and roots of the latest version\n"
	"  commit DIR [--json]    save the space as a new version\n"
	"  versions DIR [--json]  the version numbers\n"
	"  fork DIR NEWDIR [--name NAME] [--version N] [--json]\n"
	"                         a new space starting as a version of DIR\n"
	"  export DIR --to FILE|redis://HOST[:PORT][/PREFIX] [--version N] [--json]\n"
	"                         a version (default: the latest) as one image with no\n"
	"                         parent, one region per segment, for 'faultline serve'\n"
	"                         and 'faultline image push' (FILE must not exist); to\n"
	"                         Redis: written to $TMPDIR, pushed, removed\n"
	"  rm DIR                 remove a space (its manifest, images and directory)\n";

static void log_cb(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)ctx;
	if (level <= FL_LOG_ERROR)
		cli_error("%s", msg);
}

static bool has_flag(int argc, char **argv, const char *flag)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], flag))
			return true;
	return false;
}

static int open_space(const char *dir, struct fl_space **ret)
{
	struct fl_space_opts o = { .sz = sizeof(o), .log = log_cb };
	int r = fl_space_open(dir, &o, ret);

	if (r)
		cli_error("%s: cannot open the space: %s", dir, strerror(-r));
	return r;
}

static const char *mem_name(enum fl_mem_type mem)
{
	return mem == FL_MEM_HUGETLB ? "hugetlb" : "shmem";
}

static void info_json(struct json *j, const char *key, const char *dir, struct fl_space *sp)
{
	struct fl_space_info si = { .sz = sizeof(si) };
	uint64_t vs[256];
	int n;

	fl_space_info(sp, &si);
	n = fl_space_versions(sp, vs, 256);
	json_begin(j, key);
	json_str(j, "dir", dir);
	json_str(j, "name", si.name);
	json_u64(j, "version", si.version);
	json_begin_array(j, "versions");
	for (int i = 0; i < n && i < 256; i++)
		json_u64(j, NULL, vs[i]);
	json_end_array(j);
	json_u64(j, "roots", si.nroots);
	json_begin_array(j, "segments");
	for (unsigned i = 0; i < si.nsegments; i++) {
		struct fl_segment_info g = { .sz = sizeof(g) };
		char base[32];
		fl_space_segment_info(sp, i, &g);
		snprintf(base, sizeof(base), "0x%" PRIx64, g.base);
		json_begin(j, NULL);
		json_str(j, "name", g.name);
		json_str(j, "base", base);
		json_u64(j, "length", g.length);
		json_str(j, "mem", mem_name(g.mem));
		json_end(j);
	}
	json_end_array(j);
	json_end(j);
}

static void info_text(const char *dir, struct fl_space *sp)
{
	struct fl_space_info si = { .sz = sizeof(si) };
	char b[32];

	fl_space_info(sp, &si);
	printf("space %s (%s)\n", si.name, dir);
	printf("  version  %" PRIu64 " (%d in all)\n", si.version, fl_space_versions(sp, NULL, 0));
	printf("  roots    %u\n", si.nroots);
	for (unsigned i = 0; i < si.nsegments; i++) {
		struct fl_segment_info g = { .sz = sizeof(g) };
		fl_space_segment_info(sp, i, &g);
		printf("  segment  %-16s 0x%012" PRIx64 " %10s %s\n", g.name, g.base, fmt_bytes(g.length, b, sizeof(b)),
		       mem_name(g.mem));
	}
}

/* NAME:BASE:SIZE[:hugetlb] */
static int parse_segment(char *spec, struct fl_segment_opts *o)
{
	char *name = strtok(spec, ":"), *base = strtok(NULL, ":"), *size = strtok(NULL, ":"),
	     *mem = strtok(NULL, ":"), *end;

	if (!name || !base || !size || strtok(NULL, ":"))
		return -EINVAL;
	o->name = name;
	o->base = strtoull(base, &end, 16);
	if (*end || !*base)
		return -EINVAL;
	if (fl__parse_size(size, &o->length))
		return -EINVAL;
	if (!mem || !strcmp(mem, "shmem"))
		o->mem = FL_MEM_SHMEM;
	else if (!strcmp(mem, "hugetlb"))
		o->mem = FL_MEM_HUGETLB;
	else
		return -EINVAL;
	return 0;
}

static int remove_space_files(const char *dir);

static int space_create(int argc, char **argv)
{
	struct fl_space_opts o = { .sz = sizeof(o), .log = log_cb };
	struct fl_space *sp;
	bool json = false;
	int r, nseg = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--name") && i + 1 < argc)
			o.name = argv[++i];
		else if (!strcmp(argv[i], "--segment") && i + 1 < argc)
			i++, nseg++;
		else if (argv[i][0] == '-' || o.dir)
			return cli_usage_error("usage: faultline space create DIR --name NAME --segment "
					       "NAME:BASE:SIZE[:hugetlb] [...]");
		else
			o.dir = argv[i];
	}
	if (!o.dir || !o.name || !nseg)
		return cli_usage_error("space create needs DIR, --name and at least one --segment");
	r = fl_space_new(&o, &sp);
	if (r)
		return cli_fail(o.dir, r);
	for (int i = 1; i < argc && !r; i++) {
		struct fl_segment_opts so = { .sz = sizeof(so) };
		if (strcmp(argv[i], "--segment"))
			continue;
		char *spec = argv[++i];
		if (parse_segment(spec, &so)) {
			r = -EINVAL;
			cli_error("--segment %s: expected NAME:BASE:SIZE[:hugetlb] (BASE in hex)", spec);
			break;
		}
		r = fl_space_segment_add(sp, &so);
		r = r < 0 ? r : 0;
	}
	/* Segments reach the manifest with a version: commit the first. */
	if (!r)
		r = fl_space_commit(sp, NULL, NULL);
	if (r) {
		cli_error("%s: the space was not created: %s", o.dir, strerror(-r));
		fl_space_free(sp);
		/* Nothing of it is left: the manifest and any image. */
		remove_space_files(o.dir);
		rmdir(o.dir);
		return EXIT_ERR;
	}
	if (json) {
		struct json j;
		json_init(&j, stdout);
		info_json(&j, NULL, o.dir, sp);
		json_finish(&j);
	} else {
		info_text(o.dir, sp);
	}
	fl_space_free(sp);
	return EXIT_OK;
}

static int one_dir(int argc, char **argv, const char *usage, const char **ret_dir, bool *ret_json)
{
	*ret_dir = NULL;
	*ret_json = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			*ret_json = true;
		else if (argv[i][0] == '-' || *ret_dir)
			return cli_usage_error("usage: %s", usage);
		else
			*ret_dir = argv[i];
	}
	if (!*ret_dir)
		return cli_usage_error("usage: %s", usage);
	return EXIT_OK;
}

static int space_info(int argc, char **argv)
{
	struct fl_space *sp;
	const char *dir;
	bool json;
	int r = one_dir(argc, argv, "faultline space info DIR [--json]", &dir, &json);

	if (r)
		return r;
	if (open_space(dir, &sp))
		return EXIT_ERR;
	if (json) {
		struct json j;
		json_init(&j, stdout);
		info_json(&j, NULL, dir, sp);
		json_finish(&j);
	} else {
		info_text(dir, sp);
	}
	fl_space_free(sp);
	return EXIT_OK;
}

static int space_commit(int argc, char **argv)
{
	struct fl_space *sp;
	const char *dir;
	uint64_t v = 0;
	bool json;
	int r = one_dir(argc, argv, "faultline space commit DIR [--json]", &dir, &json);

	if (r)
		return r;
	if (open_space(dir, &sp))
		return EXIT_ERR;
	r = fl_space_commit(sp, NULL, &v);
	fl_space_free(sp);
	if (r)
		return cli_fail(dir, r);
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "dir", dir);
		json_u64(&j, "version", v);
		json_end(&j);
		json_finish(&j);
	} else {
		printf("%s: version %" PRIu64 "\n", dir, v);
	}
	return EXIT_OK;
}

static int space_versions(int argc, char **argv)
{
	struct fl_space *sp;
	const char *dir;
	uint64_t vs[4096];
	bool json;
	int n, r = one_dir(argc, argv, "faultline space versions DIR [--json]", &dir, &json);

	if (r)
		return r;
	if (open_space(dir, &sp))
		return EXIT_ERR;
	n = fl_space_versions(sp, vs, 4096);
	fl_space_free(sp);
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_begin_array(&j, "versions");
		for (int i = 0; i < n && i < 4096; i++)
			json_u64(&j, NULL, vs[i]);
		json_end_array(&j);
		json_end(&j);
		json_finish(&j);
	} else {
		for (int i = 0; i < n && i < 4096; i++)
			printf("%" PRIu64 "\n", vs[i]);
	}
	return EXIT_OK;
}

static int space_fork(int argc, char **argv)
{
	struct fl_space_opts o = { .sz = sizeof(o), .log = log_cb };
	const char *dir = NULL;
	struct fl_space *sp, *f;
	uint64_t version = 0;
	bool json = false;
	int r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--name") && i + 1 < argc) {
			o.name = argv[++i];
		} else if (!strcmp(argv[i], "--version") && i + 1 < argc) {
			if (fl__parse_uint(argv[++i], 1, UINT64_MAX, &version))
				return cli_usage_error("--version: a version number");
		} else if (argv[i][0] == '-' || (dir && o.dir)) {
			return cli_usage_error("usage: faultline space fork DIR NEWDIR [--name NAME] [--version N]");
		} else if (!dir) {
			dir = argv[i];
		} else {
			o.dir = argv[i];
		}
	}
	if (!dir || !o.dir)
		return cli_usage_error("space fork needs DIR and NEWDIR");
	if (open_space(dir, &sp))
		return EXIT_ERR;
	if (!o.name) {
		const char *slash = strrchr(o.dir, '/');
		o.name = slash && slash[1] ? slash + 1 : o.dir;
	}
	r = fl_space_fork(sp, version, &o, &f);
	fl_space_free(sp);
	if (r)
		return cli_fail(o.dir, r);
	if (json) {
		struct json j;
		json_init(&j, stdout);
		info_json(&j, NULL, o.dir, f);
		json_finish(&j);
	} else {
		info_text(o.dir, f);
	}
	fl_space_free(f);
	return EXIT_OK;
}

/* Describe the exported image as the tools that read it will see it: the
 * numbers come from the file, not from what export meant to write. */
static int export_report(const char *dir, const struct fl_space_info *si, uint64_t version, const char *path,
			 const char *url, bool json)
{
	struct fl_image_info ii = { .sz = sizeof(ii) };
	struct fl_image *img;
	struct json j;
	char b[32];
	int r = fl_image_open(path, 0, &img);

	if (!r)
		r = fl_image_info(img, &ii);
	if (r) {
		fl_image_close(img);
		return cli_fail(path, r);
	}
	if (json) {
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_str(&j, "space", si->name);
		json_str(&j, "dir", dir);
		json_u64(&j, "version", version);
		json_str(&j, "path", url ? url : path);
		if (url) {
			char idhex[2 * FL_IMAGE_ID_LEN + 1];
			fl_image_id_format(ii.id, idhex);
			json_str(&j, "image_id", idhex);
		}
		json_begin_array(&j, "segments");
	} else {
		printf("space %s (%s) version %" PRIu64 " -> %s\n", si->name, dir, version, url ? url : path);
	}
	for (unsigned i = 0; i < ii.nregions; i++) {
		struct fl_image_region ir = { .sz = sizeof(ir) };
		uint64_t data = 0, npages;
		char base[32];

		fl_image_region(img, i, &ir);
		npages = ir.length / 4096;
		for (uint64_t p = 0; p < npages; p++)
			data += fl_image_page_kind(img, i, p) == FL_PAGE_DATA;
		snprintf(base, sizeof(base), "0x%" PRIx64, ir.start);
		if (json) {
			json_begin(&j, NULL);
			json_str(&j, "name", ir.name);
			json_str(&j, "base", base);
			json_u64(&j, "length", ir.length);
			json_str(&j, "mem", mem_name((enum fl_mem_type)ir.mem));
			json_u64(&j, "pages", data);
			json_end(&j);
		} else {
			printf("  region %u  %-16s 0x%012" PRIx64 " %10s %-7s %" PRIu64 " data pages\n", i, ir.name,
			       ir.start, fmt_bytes(ir.length, b, sizeof(b)), mem_name((enum fl_mem_type)ir.mem), data);
		}
	}
	if (json) {
		json_end_array(&j);
		json_u64(&j, "bytes", ii.file_bytes);
		json_end(&j);
		json_finish(&j);
	} else {
		printf("  %s in the %s\n", fmt_bytes(ii.file_bytes, b, sizeof(b)), url ? "image pushed" : "file");
	}
	fl_image_close(img);
	return EXIT_OK;
}

/* Push the exported image `path` to Redis at `url`: 0 or EXIT_ERR. */
static int export_push(const char *path, const char *url)
{
	struct fl_redis_opts ro = { .sz = sizeof(ro), .url = url, .log = log_cb, .log_level = FL_LOG_ERROR };
	struct fl_image *img;
	int r = fl_image_open(path, 0, &img);

	if (!r) {
		r = fl_redis_push(img, &ro, NULL, NULL);
		fl_image_close(img);
	}
	if (r) {
		cli_error("%s: the export was not pushed: %s", url, strerror(-r));
		return EXIT_ERR;
	}
	return 0;
}

static int space_export(int argc, char **argv)
{
	struct fl_space_export_opts eo = { .sz = sizeof(eo) };
	struct fl_space_info si = { .sz = sizeof(si) };
	const char *dir = NULL, *to = NULL, *url = NULL;
	char tmpdir[4096], tmpfile[4200];
	struct fl_space *sp;
	uint64_t version = 0;
	bool json = false;
	int r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--to") && i + 1 < argc) {
			to = argv[++i];
		} else if (!strcmp(argv[i], "--version") && i + 1 < argc) {
			if (fl__parse_uint(argv[++i], 1, UINT64_MAX, &version))
				return cli_usage_error("--version: a version number");
		} else if (argv[i][0] == '-' || dir) {
			return cli_usage_error("usage: faultline space export DIR --to FILE|redis://HOST[:PORT][/PREFIX] "
					       "[--version N] [--json]");
		} else {
			dir = argv[i];
		}
	}
	if (!dir || !to)
		return cli_usage_error("space export needs DIR and --to FILE");
	if (!strncmp(to, "redis://", 8)) {
		const char *t = getenv("TMPDIR");
		if (!FL_HAVE_REDIS)
			return cli_not_built("space export --to redis://", "Redis", "redis");
		url = to;
		/* Redis takes an image file: one that nobody else names, removed
		 * whatever happens. */
		snprintf(tmpdir, sizeof(tmpdir), "%s/faultline-export-XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(tmpdir))
			return cli_fail(tmpdir, -errno);
		snprintf(tmpfile, sizeof(tmpfile), "%s/space.img", tmpdir);
		to = tmpfile;
	}
	if (open_space(dir, &sp)) {
		r = EXIT_ERR;
		goto out;
	}
	fl_space_info(sp, &si);
	if (!version)
		version = si.version;
	if (url)
		eo.flags |= FL_SPACE_EXPORT_NO_SYNC;	/* a scratch file */
	r = fl_space_export(sp, version, to, &eo);
	fl_space_free(sp);
	if (r == -ENOENT) {
		/* The library said which: the version, or a segment image. */
		cli_error("%s: version %" PRIu64 " not exported", dir, version);
		r = EXIT_ERR;
	} else if (r) {
		r = cli_fail(to, r);
	} else if (!url || !(r = export_push(to, url))) {
		r = export_report(dir, &si, version, to, url, json);
	}
out:
	if (url) {
		unlink(tmpfile);
		rmdir(tmpdir);
	}
	return r;
}

static bool is_space(const char *dir)
{
	char p[4096];
	struct stat st;

	int n = snprintf(p, sizeof(p), "%s/manifest", dir);

	return n > 0 && (size_t)n < sizeof(p) && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int space_ls(int argc, char **argv)
{
	const char *parent = ".";
	bool json = false, any = false;
	struct dirent *de;
	struct json j;
	DIR *d;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (argv[i][0] == '-')
			return cli_usage_error("usage: faultline space ls [PARENT] [--json]");
		else
			parent = argv[i];
	}
	d = opendir(parent);
	if (!d)
		return cli_fail(parent, -errno);
	if (json) {
		json_init(&j, stdout);
		json_begin(&j, NULL);
		json_begin_array(&j, "spaces");
	}
	while ((de = readdir(d))) {
		char p[4096];
		struct fl_space_opts o = { .sz = sizeof(o) };
		struct fl_space *sp;
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", parent, de->d_name);
		if (!is_space(p))
			continue;
		if (fl_space_open(p, &o, &sp)) {
			if (!json)
				printf("%-24s (does not open: see 'faultline space info %s')\n", de->d_name, p);
			continue;
		}
		any = true;
		if (json) {
			info_json(&j, NULL, p, sp);
		} else {
			struct fl_space_info si = { .sz = sizeof(si) };
			fl_space_info(sp, &si);
			printf("%-24s %-16s version %-6" PRIu64 " %u segments\n", de->d_name, si.name, si.version,
			       si.nsegments);
		}
		fl_space_free(sp);
	}
	closedir(d);
	if (json) {
		json_end_array(&j);
		json_end(&j);
		json_finish(&j);
	} else if (!any) {
		printf("no space in %s\n", parent);
	}
	return EXIT_OK;
}

/* What a space directory holds: its manifest (and a temporary one), images. */
static bool space_file(const char *name)
{
	size_t n = strlen(name);

	return !strcmp(name, "manifest") || !strncmp(name, ".manifest.", 10) ||
	       (n > 4 && !strcmp(name + n - 4, ".img")) || strstr(name, ".img.");
}

/* Remove dir's files if they are all a space's, then dir: 0 or -errno. */
static int remove_space_files(const char *dir)
{
	struct dirent *de;
	int r = 0;
	DIR *d = opendir(dir);

	if (!d)
		return -errno;
	while ((de = readdir(d)) && !r) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && !space_file(de->d_name)) {
			cli_error("%s: holds %s, which is not a space's: nothing removed", dir, de->d_name);
			r = -ENOTEMPTY;
		}
	}
	rewinddir(d);
	while (!r && (de = readdir(d))) {
		char p[4096];
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (unlink(p))
			r = -errno;
	}
	closedir(d);
	if (!r && rmdir(dir))
		r = -errno;
	return r;
}

/* Remove a space; a directory that does not open as one is left alone. */
static int space_rm(int argc, char **argv)
{
	struct fl_space *sp;
	int r;

	if (argc != 2 || argv[1][0] == '-')
		return cli_usage_error("usage: faultline space rm DIR");
	if (open_space(argv[1], &sp))
		return EXIT_ERR;
	fl_space_free(sp);
	r = remove_space_files(argv[1]);
	if (r == -ENOTEMPTY)
		return EXIT_ERR;
	if (r)
		return cli_fail(argv[1], r);
	return EXIT_OK;
}

int cmd_space(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (!sub)
		return cli_usage_error("space needs a command (see 'faultline space --help')");
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || has_flag(argc - 1, argv + 1, "--help"))
		return fputs(space_usage, stdout), EXIT_OK;
	if (!strcmp(sub, "create"))
		return space_create(argc - 1, argv + 1);
	if (!strcmp(sub, "ls"))
		return space_ls(argc - 1, argv + 1);
	if (!strcmp(sub, "info"))
		return space_info(argc - 1, argv + 1);
	if (!strcmp(sub, "commit"))
		return space_commit(argc - 1, argv + 1);
	if (!strcmp(sub, "versions"))
		return space_versions(argc - 1, argv + 1);
	if (!strcmp(sub, "fork"))
		return space_fork(argc - 1, argv + 1);
	if (!strcmp(sub, "export"))
		return space_export(argc - 1, argv + 1);
	if (!strcmp(sub, "rm"))
		return space_rm(argc - 1, argv + 1);
	return cli_usage_error("unknown space command '%s' (see 'faultline space --help')", sub);
}
