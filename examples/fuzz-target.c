// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-target: persistent-mode fuzzing with a reset point.
 *
 * The target owns a big heap (an "arena", 256 MiB by default) that it fills
 * once, expensively: a bump allocator and a chained hash table holding
 * hundreds of thousands of deterministic entries. Each input is a small
 * script that mutates the table (set, del, grow, touch) and reads it (get,
 * count); its result is a 64-bit output hash. Inputs leave state behind
 * (entries, allocator offset, an input counter), so without a reset the
 * second run of an input sees what the first one did.
 *
 * After initialisation the target sets a reset point on the arena
 * (fl_reset_point_new()); after every input, fl_reset_point_reset() copies
 * back exactly the pages the input wrote. Forking a process per input would
 * copy the page tables of the whole arena every time; a reset costs what
 * the input touched.
 *
 * What is reset: the arena, nothing else. All the target's mutable state
 * lives there; the only global, the arena's address, is written once
 * before the reset point is set. State outside registered ranges (globals
 * in .data/.bss, malloc'ed memory, file descriptors, threads) is not reset:
 * a real target must keep it out of the loop or register it too.
 *
 * Input: lines of "CMD ARGS" (anything else is ignored):
 *	set KEY VALUE	insert or overwrite (VALUE: the rest of the line)
 *	del KEY		delete
 *	get KEY		fold the value into the output
 *	count		fold the number of entries into the output
 *	grow N		insert N new entries (many fresh pages)
 *	touch N SEED	overwrite the values of N initial entries chosen by SEED
 *			(pages all over the arena)
 * The deliberate bug: an input starting with "FLCRASH" calls abort().
 *
 * Three ways to build it:
 *  - AFL++ persistent mode: afl-cc (afl-clang-fast) defines
 *    __AFL_FUZZ_TESTCASE_LEN. The arena is filled before __AFL_INIT() (the
 *    deferred fork server forks after it, so every child starts with it
 *    filled) and the reset point is set after it, in the child: a write
 *    watch belongs to the process that made it.
 *	afl-cc -O2 fuzz-target.c $(pkg-config --cflags --libs faultline) -o fuzz-target
 *	afl-fuzz -i in -o out -- ./fuzz-target
 *  - libFuzzer: -DFUZZ_LIBFUZZER; LLVMFuzzerInitialize() fills the arena
 *    and sets the reset point, LLVMFuzzerTestOneInput() runs and resets.
 *	clang -O2 -fsanitize=fuzzer -DFUZZ_LIBFUZZER fuzz-target.c $(pkg-config ...)
 *  - Neither: a standalone persistent loop (what meson builds):
 *	fuzz-target [--heap MIB] [--iterations N] [--check] [--no-reset] FILE|DIR...
 *    runs every input N times in one process, resetting after each run.
 *    --check compares the whole arena with a copy taken after
 *    initialisation after every reset, checks that each input's output is
 *    the same in every round, and that it equals the output of a process
 *    that never ran anything else (a child forked right after
 *    initialisation, before the first input). --no-reset leaves the resets
 *    out, to show what goes wrong (the check then fails).
 *    Exit: 0 ok, 1 a check failed (or an error), 2 usage.
 *
 * The heap size: --heap MIB (standalone, AFL++) or FUZZ_HEAP_MIB. Under
 * AFL++, FUZZ_NO_RESET=1 runs without the reset point (a baseline for
 * bench/fuzz.sh, which compares the two).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <faultline/clone.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEAP_MIB_DEFAULT	256
#define HEAP_MIB_MIN		4
#define HEAP_MIB_MAX		(1u << 20)
#define ARENA_MAGIC		0x31305a5a55464c46ull	/* "FLFUZZ01" */
#define KEY_MAX			64
#define VALUE_MAX		4096
#define COUNT_MAX		100000		/* grow and touch */
#define INIT_FILL_PERCENT	60		/* of the arena, by the initial entries */

/* ---- the target: an arena with a bump allocator and a hash table -------- */

/* Offsets, not pointers: the output must not depend on where the arena is
 * mapped. Offset 0 (the header) means "none". */
struct arena {
	uint64_t magic;
	uint64_t size;		/* bytes, header included */
	uint64_t bump;		/* first free byte */
	uint64_t buckets;	/* the bucket array (uint64_t offsets) */
	uint64_t nbuckets;	/* a power of two */
	uint64_t entries;	/* live entries */
	uint64_t init_entries;	/* "k%08x", made at initialisation */
	uint64_t grown;		/* "g%08x", made by grow so far */
	uint64_t inputs;	/* inputs run */
};

struct entry {
	uint64_t next;		/* next entry of the bucket */
	uint32_t klen, vlen, vcap, pad;
	uint8_t data[];		/* the key, then vcap bytes for the value */
};

/* The arena's address: written once, before the reset point is set. */
static struct arena *arena;

static void *at(uint64_t off)
{
	return (uint8_t *)arena + off;
}

static uint64_t alloc(size_t n)
{
	uint64_t off;

	n = (n + 7) & ~(size_t)7;
	if (n > arena->size - arena->bump)
		return 0;
	off = arena->bump;
	arena->bump += n;
	return off;
}

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t hash_bytes(const void *p, size_t n, uint64_t h)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * FNV_PRIME;
	return h;
}

static uint64_t fold(uint64_t h, uint64_t v)
{
	return hash_bytes(&v, sizeof(v), h);
}

static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t r = splitmix(&seed);
		memcpy(p + i, &r, n - i < 8 ? n - i : 8);
	}
}

/* The link (bucket slot or ->next) that points at KEY's entry, or the
 * chain's terminating 0. */
static uint64_t *find_link(const void *key, size_t klen)
{
	uint64_t *link = (uint64_t *)at(arena->buckets) +
			 (hash_bytes(key, klen, FNV_OFFSET) & (arena->nbuckets - 1));

	while (*link) {
		struct entry *e = at(*link);

		if (e->klen == klen && !memcmp(e->data, key, klen))
			break;
		link = &e->next;
	}
	return link;
}

static struct entry *lookup(const void *key, size_t klen)
{
	uint64_t off = *find_link(key, klen);

	return off ? at(off) : NULL;
}

/* Insert or overwrite. Returns false when the arena is full. */
static bool put(const void *key, size_t klen, const void *val, size_t vlen)
{
	uint64_t *link = find_link(key, klen), off;
	struct entry *e = *link ? at(*link) : NULL;
	size_t vcap;

	if (e && e->vcap >= vlen) {
		memcpy(e->data + klen, val, vlen);
		e->vlen = (uint32_t)vlen;
		return true;
	}
	vcap = vlen < 16 ? 16 : vlen;
	off = alloc(sizeof(struct entry) + klen + vcap);
	if (!off)
		return false;
	/* The old entry (if any) is abandoned: a bump allocator does not free. */
	struct entry *n = at(off);
	n->next = e ? e->next : 0;
	n->klen = (uint32_t)klen;
	n->vlen = (uint32_t)vlen;
	n->vcap = (uint32_t)vcap;
	memcpy(n->data, key, klen);
	memcpy(n->data + klen, val, vlen);
	*link = off;
	if (!e)
		arena->entries++;
	return true;
}

static bool del(const void *key, size_t klen)
{
	uint64_t *link = find_link(key, klen);
	struct entry *e;

	if (!*link)
		return false;
	e = at(*link);
	*link = e->next;
	memset(e->data, 0xdd, e->klen + e->vcap);
	arena->entries--;
	return true;
}

/* Map and fill the arena: the expensive initialisation a persistent-mode
 * fuzzer pays once instead of once per input. Deterministic: every process
 * ends with the same bytes. */
static int arena_init(size_t size)
{
	uint64_t seed = 42, nbuckets = 1;
	void *p;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	arena = p;
	while (nbuckets < size / 512)
		nbuckets <<= 1;
	arena->magic = ARENA_MAGIC;
	arena->size = size;
	arena->bump = sizeof(struct arena);
	arena->nbuckets = nbuckets;
	arena->buckets = alloc(nbuckets * sizeof(uint64_t));
	while (arena->bump < size / 100 * INIT_FILL_PERCENT) {
		uint8_t val[512];
		char key[16];
		int klen = snprintf(key, sizeof(key), "k%08" PRIx64, arena->init_entries);
		size_t vlen = 32 + splitmix(&seed) % 480;

		fill_random(val, vlen, splitmix(&seed));
		if (!put(key, (size_t)klen, val, vlen))
			break;
		arena->init_entries++;
	}
	return 0;
}

/* ---- one input --------------------------------------------------------- */

static bool is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The next space-separated word of [*p, end). */
static size_t word(const uint8_t **p, const uint8_t *end, const uint8_t **ret_word)
{
	const uint8_t *s = *p, *w;

	while (s < end && is_space(*s))
		s++;
	w = s;
	while (s < end && !is_space(*s))
		s++;
	*p = s;
	*ret_word = w;
	return (size_t)(s - w);
}

static uint64_t number(const uint8_t *w, size_t n, uint64_t max)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n && w[i] >= '0' && w[i] <= '9'; i++) {
		v = v * 10 + (w[i] - '0');
		if (v > max)
			return max;
	}
	return v;
}

static bool is_cmd(const uint8_t *w, size_t n, const char *cmd)
{
	return n == strlen(cmd) && !memcmp(w, cmd, n);
}

static uint64_t run_line(const uint8_t *p, const uint8_t *end, uint64_t out)
{
	const uint8_t *cmd, *key, *arg;
	size_t clen = word(&p, end, &cmd), klen, alen;

	if (is_cmd(cmd, clen, "count"))
		return fold(out, arena->entries);
	klen = word(&p, end, &key);
	if (!klen || klen > KEY_MAX)
		return fold(out, 'E');
	if (is_cmd(cmd, clen, "set")) {
		/* The value is the rest of the line after one separator. */
		if (p < end)
			p++;
		alen = (size_t)(end - p);
		if (alen > VALUE_MAX)
			alen = VALUE_MAX;
		return fold(out, put(key, klen, p, alen) ? 'S' : 'F');
	}
	if (is_cmd(cmd, clen, "del"))
		return fold(out, del(key, klen) ? 'D' : 'N');
	if (is_cmd(cmd, clen, "get")) {
		struct entry *e = lookup(key, klen);

		return e ? hash_bytes(e->data + e->klen, e->vlen, fold(out, e->vlen)) : fold(out, 'N');
	}
	if (is_cmd(cmd, clen, "grow")) {
		uint64_t n = number(key, klen, COUNT_MAX), done = 0;

		for (; done < n; done++) {
			uint8_t val[200];
			char k[16];
			int len = snprintf(k, sizeof(k), "g%08" PRIx64, arena->grown);

			fill_random(val, sizeof(val), arena->grown);
			if (!put(k, (size_t)len, val, sizeof(val)))
				break;
			arena->grown++;
		}
		return fold(out, done);
	}
	if (is_cmd(cmd, clen, "touch")) {
		uint64_t n = number(key, klen, COUNT_MAX), seed, found = 0;

		alen = word(&p, end, &arg);
		seed = number(arg, alen, UINT64_MAX / 10);
		for (uint64_t i = 0; i < n && arena->init_entries; i++) {
			char k[16];
			int len = snprintf(k, sizeof(k), "k%08" PRIx64, splitmix(&seed) % arena->init_entries);
			struct entry *e = lookup(k, (size_t)len);

			if (e) {
				fill_random(e->data + e->klen, e->vlen, seed);
				found++;
			}
		}
		return fold(out, found);
	}
	return out;
}

/* Run one input against the arena; its output hash. */
static uint64_t run_input(const uint8_t *buf, size_t len)
{
	const uint8_t *p = buf, *end = buf + len;
	uint64_t out = FNV_OFFSET;

	/* The deliberate bug, byte by byte so that coverage leads a fuzzer to it. */
	if (len >= 7 && buf[0] == 'F' && buf[1] == 'L' && buf[2] == 'C' && buf[3] == 'R' &&
	    buf[4] == 'A' && buf[5] == 'S' && buf[6] == 'H')
		abort();
	arena->inputs++;
	while (p < end) {
		const uint8_t *eol = memchr(p, '\n', (size_t)(end - p));

		if (!eol)
			eol = end;
		out = run_line(p, eol, out);
		p = eol + 1;
	}
	out = fold(out, arena->entries);
	out = fold(out, arena->bump);
	return fold(out, arena->inputs);
}

/* The heap size in bytes from --heap's value or FUZZ_HEAP_MIB (NULL: the
 * default); 0 when out of range. */
static size_t heap_bytes(const char *mib)
{
	char *end;
	unsigned long v;

	if (!mib)
		mib = getenv("FUZZ_HEAP_MIB");
	if (!mib || !*mib)
		return (size_t)HEAP_MIB_DEFAULT << 20;
	errno = 0;
	v = strtoul(mib, &end, 10);
	if (errno || *end || v < HEAP_MIB_MIN || v > HEAP_MIB_MAX)
		return 0;
	return (size_t)v << 20;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "fuzz-target: %s: %s\n", what, strerror(err));
	exit(1);
}

#if defined(__AFL_FUZZ_TESTCASE_LEN)
/* ---- AFL++ persistent mode --------------------------------------------- */

__AFL_FUZZ_INIT();

int main(int argc, char **argv)
{
	struct fl_reset_point *point = NULL;
	volatile uint64_t sink = 0;
	unsigned char *buf;
	bool no_reset;
	size_t size;
	int ret;

	size = heap_bytes(argc > 2 && !strcmp(argv[1], "--heap") ? argv[2] : NULL);
	if (!size) {
		fprintf(stderr, "fuzz-target: heap size out of range (%u..%u MiB)\n", HEAP_MIB_MIN, HEAP_MIB_MAX);
		return 2;
	}
	ret = arena_init(size);
	if (ret)
		die("arena", -ret);
#ifdef __AFL_HAVE_MANUAL_CONTROL
	__AFL_INIT();
#endif
	/* In the forked child: the watch behind the reset point is this
	 * process's. It costs a copy of the arena once per child, that is
	 * once per __AFL_LOOP count of inputs. FUZZ_NO_RESET=1 leaves the
	 * resets out (what bench/fuzz.sh compares with: inputs then see what
	 * earlier ones left, and AFL's stability drops). */
	no_reset = getenv("FUZZ_NO_RESET") && !strcmp(getenv("FUZZ_NO_RESET"), "1");
	if (!no_reset) {
		ret = fl_reset_point_new(arena, size, &point);
		if (ret)
			die("fl_reset_point_new", -ret);
	}
	buf = __AFL_FUZZ_TESTCASE_BUF;	/* after __AFL_INIT, before __AFL_LOOP */
	while (__AFL_LOOP(10000)) {
		size_t len = __AFL_FUZZ_TESTCASE_LEN;

		sink = sink ^ run_input(buf, len);
		ret = no_reset ? 0 : fl_reset_point_reset(point, NULL);
		if (ret)
			die("fl_reset_point_reset", -ret);
	}
	fl_reset_point_free(point);
	return 0;
}

#elif defined(FUZZ_LIBFUZZER)
/* ---- libFuzzer ---------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fl_reset_point *point;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	size_t size = heap_bytes(NULL);
	int ret;

	(void)argc;
	(void)argv;
	if (!size) {
		fprintf(stderr, "fuzz-target: FUZZ_HEAP_MIB out of range (%u..%u)\n", HEAP_MIB_MIN, HEAP_MIB_MAX);
		exit(2);
	}
	ret = arena_init(size);
	if (ret)
		die("arena", -ret);
	ret = fl_reset_point_new(arena, size, &point);
	if (ret)
		die("fl_reset_point_new", -ret);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	volatile uint64_t sink = run_input(data, size);
	int ret = fl_reset_point_reset(point, NULL);

	(void)sink;
	if (ret)
		die("fl_reset_point_reset", -ret);
	return 0;
}

#else
/* ---- the standalone persistent loop ------------------------------------ */

#include <getopt.h>

#define INPUT_MAX (16u << 20)
#define CHECK_REPORTS_MAX 5	/* failures printed in full */

struct input {
	char *path;
	uint8_t *data;
	size_t len;
	uint64_t out;		/* of the latest run */
	uint64_t fresh_out;	/* in a process that ran nothing else */
	int fresh_status;	/* 0, or the signal that killed that process */
	uint64_t pages_reset, pages_reset_max, reset_ns;
};

struct inputs {
	struct input *v;
	size_t n, cap;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: fuzz-target [--heap MIB] [--iterations N] [--check] [--no-reset] FILE|DIR...\n"
		   "  Runs every input N times (default 1) in one process, with a reset after each run.\n"
		   "  --heap MIB     arena size (default %u, or FUZZ_HEAP_MIB)\n"
		   "  --check        after every reset, compare the arena with its state after\n"
		   "                 initialisation; compare outputs across rounds and with a fresh process\n"
		   "  --no-reset     do not reset (to show what a missing reset leaves behind)\n"
		   "Exit: 0 ok, 1 a check failed, 2 usage.\n", HEAP_MIB_DEFAULT);
}

static int load_file(struct inputs *in, const char *path)
{
	struct input *it;
	struct stat st;
	size_t n = 0;
	FILE *f;
	int err = 0;

	if (in->n == in->cap) {
		size_t cap = in->cap ? in->cap * 2 : 16;
		struct input *v = realloc(in->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		in->v = v;
		in->cap = cap;
	}
	it = &in->v[in->n];
	memset(it, 0, sizeof(*it));
	f = fopen(path, "rb");
	if (!f)
		return -errno;
	if (fstat(fileno(f), &st))
		err = errno;
	else if (st.st_size > INPUT_MAX)
		err = EFBIG;
	else if (!(it->path = strdup(path)) || !(it->data = malloc((size_t)st.st_size + 1)))
		err = ENOMEM;
	else if ((n = fread(it->data, 1, (size_t)st.st_size, f)) != (size_t)st.st_size)
		err = EIO;
	fclose(f);
	if (err) {
		free(it->path);
		free(it->data);
		return -err;
	}
	it->len = n;
	in->n++;
	return 0;
}

static int skip_dot(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* A file, or every regular file of a directory in name order. */
static int load_path(struct inputs *in, const char *path)
{
	struct dirent **names;
	struct stat st;
	int n, ret = 0;

	if (stat(path, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return load_file(in, path);
	n = scandir(path, &names, skip_dot, alphasort);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		char *p;

		if (!ret && asprintf(&p, "%s/%s", path, names[i]->d_name) >= 0) {
			if (!stat(p, &st) && S_ISREG(st.st_mode))
				ret = load_file(in, p);
			free(p);
		}
		free(names[i]);
	}
	free(names);
	return ret;
}

/* Each input's output in a child forked before any input ran: a process
 * whose only history is the initialisation, as a fresh one's would be,
 * without paying the initialisation again. Called before the reset point
 * exists, so the children have no watch. */
static void run_fresh(struct inputs *in)
{
	for (size_t i = 0; i < in->n; i++) {
		struct input *it = &in->v[i];
		int fds[2], status;
		pid_t pid;

		it->fresh_status = -1;
		if (pipe(fds))
			die("pipe", errno);
		fflush(NULL);
		pid = fork();
		if (pid < 0)
			die("fork", errno);
		if (pid == 0) {
			uint64_t out = run_input(it->data, it->len);

			_exit(write(fds[1], &out, sizeof(out)) == sizeof(out) ? 0 : 1);
		}
		close(fds[1]);
		if (read(fds[0], &it->fresh_out, sizeof(it->fresh_out)) != sizeof(it->fresh_out))
			it->fresh_out = 0;
		close(fds[0]);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(status))
			it->fresh_status = WTERMSIG(status);
		else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			it->fresh_status = 0;
	}
}

/* Pages of the arena that differ from the pristine copy. */
static uint64_t pages_differing(const uint8_t *pristine, size_t size)
{
	const uint8_t *a = (const uint8_t *)arena;
	size_t psz = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t n = 0;

	if (!memcmp(a, pristine, size))
		return 0;
	for (size_t off = 0; off < size; off += psz)
		n += memcmp(a + off, pristine + off, psz) != 0;
	return n;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "heap", required_argument, NULL, 'H' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "check", no_argument, NULL, 'c' },
		{ "no-reset", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *heap_arg = NULL;
	unsigned long iterations = 1;
	bool check = false, reset = true;
	struct inputs in = { 0 };
	struct fl_reset_point *point = NULL;
	uint8_t *pristine = NULL;
	uint64_t failures = 0, runs = 0, run_ns = 0, resets = 0, reset_ns = 0;
	uint64_t pages_reset = 0, pages_reset_max = 0;
	size_t size;
	char *end;
	int opt, ret;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'H':
			heap_arg = optarg;
			break;
		case 'n':
			errno = 0;
			iterations = strtoul(optarg, &end, 10);
			if (errno || *end || !iterations || iterations > 100000000) {
				fprintf(stderr, "fuzz-target: --iterations: 1..100000000\n");
				return 2;
			}
			break;
		case 'c':
			check = true;
			break;
		case 'R':
			reset = false;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind == argc) {
		usage(stderr);
		return 2;
	}
	size = heap_bytes(heap_arg);
	if (!size) {
		fprintf(stderr, "fuzz-target: heap size out of range (%u..%u MiB)\n", HEAP_MIB_MIN, HEAP_MIB_MAX);
		return 2;
	}
	for (int i = optind; i < argc; i++) {
		ret = load_path(&in, argv[i]);
		if (ret) {
			fprintf(stderr, "fuzz-target: %s: %s\n", argv[i], strerror(-ret));
			return 2;
		}
	}
	if (!in.n) {
		fprintf(stderr, "fuzz-target: no input files\n");
		return 2;
	}

	uint64_t t0 = now_ns();
	ret = arena_init(size);
	if (ret)
		die("arena", -ret);
	printf("init: %zu MiB arena, %" PRIu64 " entries, %.3f s\n", size >> 20, arena->init_entries,
	       (double)(now_ns() - t0) / 1e9);
	if (check) {
		pristine = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (pristine == MAP_FAILED)
			die("mmap", errno);
		memcpy(pristine, arena, size);
		run_fresh(&in);
	}
	if (reset) {
		ret = fl_reset_point_new(arena, size, &point);
		if (ret)
			die("fl_reset_point_new", -ret);
	}

	/* Rounds: every input once per round, so each run follows the others. */
	for (unsigned long round = 0; round < iterations; round++) {
		for (size_t i = 0; i < in.n; i++) {
			struct input *it = &in.v[i];
			struct fl_reset_stats st = { .sz = sizeof(st) };
			uint64_t t = now_ns(), out;

			out = run_input(it->data, it->len);
			run_ns += now_ns() - t;
			if (reset) {
				ret = fl_reset_point_reset(point, &st);
				if (ret)
					die("fl_reset_point_reset", -ret);
				resets++;
				reset_ns += st.ns;
				it->reset_ns += st.ns;
				pages_reset += st.pages_copied;
				it->pages_reset += st.pages_copied;
				if (st.pages_copied > pages_reset_max)
					pages_reset_max = st.pages_copied;
				if (st.pages_copied > it->pages_reset_max)
					it->pages_reset_max = st.pages_copied;
			}
			runs++;
			if (check && round && out != it->out) {
				if (failures++ < CHECK_REPORTS_MAX)
					printf("check: %s: output %016" PRIx64 " in round %lu, %016" PRIx64
					       " in the one before\n", it->path, out, round + 1, it->out);
			}
			it->out = out;
			if (check) {
				uint64_t bad = pages_differing(pristine, size);

				if (bad && failures++ < CHECK_REPORTS_MAX)
					printf("check: after %s (round %lu): %" PRIu64
					       " pages of the arena differ from the state after init\n",
					       it->path, round + 1, bad);
			}
		}
	}

	for (size_t i = 0; i < in.n; i++) {
		struct input *it = &in.v[i];

		printf("input %s: output %016" PRIx64, it->path, it->out);
		if (reset)
			printf(" (%.1f pages reset/run, max %" PRIu64 ", %.1f us/reset)",
			       (double)it->pages_reset / iterations, it->pages_reset_max,
			       (double)it->reset_ns / iterations / 1e3);
		printf("\n");
		if (!check)
			continue;
		if (it->fresh_status) {
			failures++;
			printf("check: %s: the fresh process %s\n", it->path,
			       it->fresh_status > 0 ? strsignal(it->fresh_status) : "failed");
		} else if (it->fresh_out != it->out) {
			failures++;
			printf("check: %s: output %016" PRIx64 " in a fresh process, %016" PRIx64
			       " after %lu persistent runs\n", it->path, it->fresh_out, it->out, iterations);
		}
	}
	printf("runs: %" PRIu64 " (%zu inputs x %lu rounds) in %.3f s: %.0f inputs/s\n", runs, in.n, iterations,
	       (double)(run_ns + reset_ns) / 1e9, (double)runs / ((double)(run_ns + reset_ns) / 1e9 + 1e-9));
	if (reset)
		printf("reset: %" PRIu64 " resets, %.1f pages reset/input (max %" PRIu64 "), %.1f us/reset\n",
		       resets, (double)pages_reset / (double)resets, pages_reset_max,
		       (double)reset_ns / (double)resets / 1e3);
	else
		printf("reset: off (--no-reset)\n");
	if (check)
		printf("check: %s (%" PRIu64 " failures)\n", failures ? "FAILED" : "ok", failures);

	fl_reset_point_free(point);
	if (pristine)
		munmap(pristine, size);
	munmap(arena, size);
	for (size_t i = 0; i < in.n; i++) {
		free(in.v[i].path);
		free(in.v[i].data);
	}
	free(in.v);
	return failures ? 1 : 0;
}
#endif
