// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The manifest of a persistent space: a text file, one record per line,
 * ending with the XXH3-64 of every byte before that last line:
 *
 *   faultline-space 1
 *   name NAME
 *   version N                           (one block per version, in order)
 *   segment NAME BASE LENGTH MEM IMAGE  (BASE hex; MEM shmem|hugetlb; IMAGE
 *                                        the rest of the line: a path
 *                                        relative to the directory, or absolute)
 *   root NAME VALUE                     (VALUE hex)
 *   xxh3 HEX
 *
 * Text, so that an operator can read it; checksummed, so that a torn or
 * edited file is refused rather than half-read. It is replaced with
 * write-to-temporary + fsync + rename, so a crash leaves the old one.
 */
#include "space-internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

#define MANIFEST "manifest"
#define MANIFEST_MAX (64u << 20)
#define FORMAT 1

void fl__manifest_clear(struct fl__manifest *man)
{
	for (unsigned i = 0; i < man->nversions; i++)
		free(man->versions[i].segs);
	free(man->versions);
	man->versions = NULL;
	man->nversions = 0;
}

int fl__manifest_add_version(struct fl__manifest *man, const struct fl__version *v)
{
	struct fl__version *vs = realloc(man->versions, (man->nversions + 1) * sizeof(*vs));
	struct fl__version *nv;

	if (!vs)
		return -ENOMEM;
	man->versions = vs;
	nv = &vs[man->nversions];
	*nv = *v;
	nv->segs = calloc(v->nsegs ? v->nsegs : 1, sizeof(*nv->segs));
	if (!nv->segs)
		return -ENOMEM;
	memcpy(nv->segs, v->segs, v->nsegs * sizeof(*nv->segs));
	man->nversions++;
	return 0;
}

const struct fl__version *fl__manifest_find(const struct fl__manifest *man, uint64_t number)
{
	for (unsigned i = 0; i < man->nversions; i++)
		if (man->versions[i].number == number)
			return &man->versions[i];
	return NULL;
}

static const char *mem_name(enum fl_mem_type mem)
{
	return mem == FL_MEM_HUGETLB ? "hugetlb" : "shmem";
}

/* A growing text buffer. */
struct text {
	char *buf;
	size_t len, cap;
	int err;
};

__attribute__((format(printf, 2, 3)))
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->err)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->err = -EINVAL;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = (t->cap + (size_t)n + 1) * 2;
		char *b = realloc(t->buf, cap);
		if (!b) {
			t->err = -ENOMEM;
			return;
		}
		t->buf = b;
		t->cap = cap;
	}
}

int fl__manifest_write(const char *dir, const struct fl__manifest *man, bool sync, const struct fl__logger *log)
{
	struct text t = { 0 };
	char tmp[PATH_MAX], path[PATH_MAX];
	int fd = -1, ret;

	put(&t, "faultline-space %d\nname %s\n", FORMAT, man->name);
	for (unsigned i = 0; i < man->nversions; i++) {
		const struct fl__version *v = &man->versions[i];
		put(&t, "version %" PRIu64 "\n", v->number);
		for (unsigned k = 0; k < v->nsegs; k++)
			put(&t, "segment %s %" PRIx64 " %" PRIu64 " %s %s\n", v->segs[k].name, v->segs[k].base,
			    v->segs[k].length, mem_name(v->segs[k].mem), v->segs[k].image);
		for (unsigned k = 0; k < v->nroots; k++)
			put(&t, "root %s %" PRIx64 "\n", v->roots[k].name, v->roots[k].value);
	}
	if (!t.err)
		put(&t, "xxh3 %016" PRIx64 "\n", (uint64_t)XXH3_64bits(t.buf, t.len));
	ret = t.err;
	if (ret)
		goto out;
	snprintf(path, sizeof(path), "%s/" MANIFEST, dir);
	snprintf(tmp, sizeof(tmp), "%s/." MANIFEST ".XXXXXX", dir);
	ret = fl__mkstemp(tmp, &fd);
	if (ret) {
		fl__log(log, FL_LOG_ERROR, "%s: cannot create a temporary manifest: %s", dir, strerror(-ret));
		goto out;
	}
	ret = fl__pwrite_full(fd, t.buf, t.len, 0);
	if (!ret && sync)
		ret = fl__fsync(fd);
	fl__close(fd);
	if (!ret)
		ret = fl__rename_durable(tmp, path, sync);
	if (ret) {
		fl__log(log, FL_LOG_ERROR, "%s: cannot write the manifest: %s", dir, strerror(-ret));
		fl__unlink(tmp);
	}
out:
	free(t.buf);
	return ret;
}

/* A whole field as a number (no sign, no spaces, no overflow). */
static bool parse_u64(const char *s, unsigned base, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else
			return false;
		if (d >= base || v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	*ret = v;
	return true;
}

/* Split `line` at spaces into at most n fields; the last takes the rest. */
static unsigned split(char *line, char **f, unsigned n)
{
	unsigned k = 0;

	while (k < n && *line) {
		f[k++] = line;
		if (k == n)
			break;
		char *sp = strchr(line, ' ');
		if (!sp)
			break;
		*sp = 0;
		line = sp + 1;
	}
	return k;
}

static int bad(const struct fl__logger *log, const char *dir, unsigned lineno, const char *why)
{
	fl__log(log, FL_LOG_ERROR, "%s/" MANIFEST ": line %u: %s", dir, lineno, why);
	return -EBADMSG;
}

static int parse(char *text, const char *dir, const struct fl__logger *log, struct fl__manifest *man)
{
	struct fl__version cur = { 0 };
	bool in_version = false, have_name = false;
	unsigned lineno = 0;
	char *save = NULL, *line;
	int ret = 0;

	for (line = strtok_r(text, "\n", &save); line && !ret; line = strtok_r(NULL, "\n", &save)) {
		char *f[6];
		unsigned n;

		lineno++;
		if (lineno == 1) {
			uint64_t fmt;
			n = split(line, f, 2);
			if (n != 2 || strcmp(f[0], "faultline-space") || !parse_u64(f[1], 10, &fmt))
				return bad(log, dir, lineno, "not a faultline space manifest");
			if (fmt != FORMAT) {
				fl__log(log, FL_LOG_ERROR, "%s/" MANIFEST ": format %" PRIu64 ", this build reads %d",
					dir, fmt, FORMAT);
				return -EPROTONOSUPPORT;
			}
			continue;
		}
		n = split(line, f, 6);
		if (n == 2 && !strcmp(f[0], "name") && fl__space_name_ok(f[1]) && !have_name) {
			snprintf(man->name, sizeof(man->name), "%s", f[1]);
			have_name = true;
		} else if (n == 2 && !strcmp(f[0], "version") && have_name) {
			uint64_t number = 0;
			if (!parse_u64(f[1], 10, &number) || number == 0 ||
			    (man->nversions && number <= man->versions[man->nversions - 1].number) ||
			    (in_version && number <= cur.number))
				ret = bad(log, dir, lineno, "bad version number");
			if (!ret && in_version)
				ret = fl__manifest_add_version(man, &cur);
			free(cur.segs);
			cur = (struct fl__version){ .number = number };
			in_version = true;
		} else if (n == 6 && !strcmp(f[0], "segment") && in_version) {
			struct fl__mseg ms = { 0 }, *segs;
			if (!fl__space_name_ok(f[1]) || !parse_u64(f[2], 16, &ms.base) ||
			    !parse_u64(f[3], 10, &ms.length) || (strcmp(f[4], "shmem") && strcmp(f[4], "hugetlb")) ||
			    !*f[5] || strlen(f[5]) >= sizeof(ms.image))
				return free(cur.segs), bad(log, dir, lineno, "bad segment record");
			snprintf(ms.name, sizeof(ms.name), "%s", f[1]);
			ms.mem = strcmp(f[4], "hugetlb") ? FL_MEM_SHMEM : FL_MEM_HUGETLB;
			snprintf(ms.image, sizeof(ms.image), "%s", f[5]);
			segs = realloc(cur.segs, (cur.nsegs + 1) * sizeof(*segs));
			if (!segs)
				return free(cur.segs), -ENOMEM;
			cur.segs = segs;
			cur.segs[cur.nsegs++] = ms;
		} else if (n == 3 && !strcmp(f[0], "root") && in_version) {
			uint64_t v;
			if (!fl__space_name_ok(f[1]) || !parse_u64(f[2], 16, &v) || cur.nroots == FL_SPACE_ROOTS_MAX)
				return free(cur.segs), bad(log, dir, lineno, "bad root record");
			snprintf(cur.roots[cur.nroots].name, sizeof(cur.roots[0].name), "%s", f[1]);
			cur.roots[cur.nroots++].value = v;
		} else {
			return free(cur.segs), bad(log, dir, lineno, "unknown or misplaced record");
		}
	}
	if (!ret && in_version)
		ret = fl__manifest_add_version(man, &cur);
	free(cur.segs);
	if (!ret && !have_name)
		ret = bad(log, dir, lineno, "no name");
	return ret;
}

int fl__manifest_read(const char *dir, const struct fl__logger *log, struct fl__manifest *ret_man)
{
	struct fl__manifest man = { 0 };
	char path[PATH_MAX], *text = NULL, *last, *nl;
	uint64_t size, sum;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/" MANIFEST, dir);
	ret = fl__open(path, O_RDONLY | O_CLOEXEC, &fd);
	if (ret) {
		fl__log(log, FL_LOG_ERROR, "%s: cannot open: %s", path, strerror(-ret));
		return ret;
	}
	ret = fl__fstat_size(fd, &size);
	if (!ret && (size == 0 || size > MANIFEST_MAX)) {
		fl__log(log, FL_LOG_ERROR, "%s: %s", path, size ? "too large" : "empty (truncated)");
		ret = -EBADMSG;
	}
	if (!ret && !(text = malloc(size + 1)))
		ret = -ENOMEM;
	if (!ret)
		ret = fl__pread_full(fd, text, size, 0);
	fl__close(fd);
	if (ret)
		goto out;
	text[size] = 0;
	/* The format first: another format may check itself another way. */
	if (!strncmp(text, "faultline-space ", 16)) {
		uint64_t fmt = 0;
		char *end = strchr(text, '\n');
		if (end) {
			*end = 0;
			if (parse_u64(text + 16, 10, &fmt) && fmt != FORMAT) {
				fl__log(log, FL_LOG_ERROR, "%s: format %" PRIu64 ", this build reads %d", path, fmt,
					FORMAT);
				ret = -EPROTONOSUPPORT;
				goto out;
			}
			*end = '\n';
		}
	}
	/* The checksum line covers everything before it. */
	if (text[size - 1] != '\n' || strlen(text) != size) {
		ret = bad(log, dir, 0, "truncated (no final checksum line)");
		goto out;
	}
	text[size - 1] = 0;
	nl = strrchr(text, '\n');
	last = nl ? nl + 1 : text;
	if (strncmp(last, "xxh3 ", 5) || !parse_u64(last + 5, 16, &sum)) {
		ret = bad(log, dir, 0, "truncated (no final checksum line)");
		goto out;
	}
	if (sum != (uint64_t)XXH3_64bits(text, (size_t)(last - text))) {
		ret = bad(log, dir, 0, "checksum mismatch (corrupt)");
		goto out;
	}
	*last = 0;
	ret = parse(text, dir, log, &man);
out:
	free(text);
	if (ret)
		fl__manifest_clear(&man);
	else
		*ret_man = man;
	return ret;
}
