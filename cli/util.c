// SPDX-License-Identifier: LGPL-2.1-or-later
/* Helpers shared by the faultline subcommands (see util.h). */
#include "util.h"
#include "fl-config.h"

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------- */

static void verror(const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One line: a message must never break the "one line on stderr" rule. */
	for (char *c = msg; *c; c++)
		if (*c == '\n')
			*c = ' ';
	fflush(stdout);
	fprintf(stderr, "faultline: %s\n", msg);
}

void cli_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(fmt, ap);
	va_end(ap);
	return EXIT_USAGE;
}

int cli_fail(const char *what, int err)
{
	cli_error("%s: %s", what, strerror(err < 0 ? -err : err));
	return EXIT_ERR;
}

int cli_not_built(const char *what, const char *part, const char *option)
{
	cli_error("%s: built without %s support (-D%s=disabled)", what, part, option);
	return EXIT_ERR;
}

/* The CLI links the library it was built with, so its fl-config.h is the library's. */
const struct cli_part cli_parts[3] = {
	{ "TLS", "tls", "GnuTLS", FL_HAVE_TLS },
	{ "Redis", "redis", "hiredis", FL_HAVE_REDIS },
	{ "LZ4", "lz4", "liblz4", FL_HAVE_LZ4 },
};

/* ---- parsing ------------------------------------------------------------ */

const char *fmt_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	unsigned u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
	else if (v == (double)(uint64_t)v)
		snprintf(buf, len, "%.0f %s", v, units[u]);
	else
		snprintf(buf, len, "%.1f %s", v, units[u]);
	return buf;
}

/* ---- time and samples ------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

uint64_t quantile_u64(uint64_t *samples, size_t n, double q)
{
	size_t rank;

	if (!n)
		return 0;
	qsort(samples, n, sizeof(*samples), cmp_u64);
	/* Nearest rank: the smallest sample with at least q*n samples <= it. */
	rank = (size_t)ceil(q * (double)n);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return samples[rank - 1];
}

double median_d(double *v, size_t n)
{
	if (!n)
		return NAN;
	qsort(v, n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double min_d(const double *v, size_t n)
{
	double m = n ? v[0] : NAN;
	for (size_t i = 1; i < n; i++)
		if (v[i] < m)
			m = v[i];
	return m;
}

double max_d(const double *v, size_t n)
{
	double m = n ? v[0] : NAN;
	for (size_t i = 1; i < n; i++)
		if (v[i] > m)
			m = v[i];
	return m;
}

struct stat3 stat_of(const double *v, size_t n)
{
	struct stat3 s = { NAN, NAN, NAN };
	double *tmp;

	if (!n)
		return s;
	tmp = malloc(n * sizeof(*tmp));
	s.min = min_d(v, n);
	s.max = max_d(v, n);
	if (tmp) {
		memcpy(tmp, v, n * sizeof(*tmp));
		s.med = median_d(tmp, n);
		free(tmp);
	}
	return s;
}

/* ---- JSON ----------------------------------------------------------------- */

void json_init(struct json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->first[0] = true;
}

static void json_escaped(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		switch (*c) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\t': fputs("\\t", f); break;
		case '\r': fputs("\\r", f); break;
		default:
			if (*c < 0x20)
				fprintf(f, "\\u%04x", *c);
			else
				fputc(*c, f);
		}
	}
	fputc('"', f);
}

/* Comma, newline, indentation and the key of the next member. */
static void json_member(struct json *j, const char *key)
{
	if (j->depth > 0) {
		if (!j->first[j->depth])
			fputc(',', j->f);
		fputc('\n', j->f);
		for (int i = 0; i < j->depth; i++)
			fputs("  ", j->f);
	}
	j->first[j->depth] = false;
	if (key) {
		json_escaped(j->f, key);
		fputs(": ", j->f);
	}
}

static void json_open(struct json *j, const char *key, char c)
{
	json_member(j, key);
	fputc(c, j->f);
	if (j->depth < (int)(sizeof(j->first) / sizeof(j->first[0])) - 1)
		j->depth++;
	j->first[j->depth] = true;
}

static void json_close(struct json *j, char c)
{
	bool empty = j->first[j->depth];

	if (j->depth > 0)
		j->depth--;
	if (!empty) {
		fputc('\n', j->f);
		for (int i = 0; i < j->depth; i++)
			fputs("  ", j->f);
	}
	fputc(c, j->f);
}

void json_begin(struct json *j, const char *key)
{
	json_open(j, key, '{');
}

void json_begin_array(struct json *j, const char *key)
{
	json_open(j, key, '[');
}

void json_end(struct json *j)
{
	json_close(j, '}');
}

void json_end_array(struct json *j)
{
	json_close(j, ']');
}

void json_str(struct json *j, const char *key, const char *val)
{
	json_member(j, key);
	if (val)
		json_escaped(j->f, val);
	else
		fputs("null", j->f);
}

void json_u64(struct json *j, const char *key, uint64_t val)
{
	json_member(j, key);
	fprintf(j->f, "%llu", (unsigned long long)val);
}

void json_i64(struct json *j, const char *key, int64_t val)
{
	json_member(j, key);
	fprintf(j->f, "%lld", (long long)val);
}

void json_num(struct json *j, const char *key, double val, int decimals)
{
	json_member(j, key);
	if (isfinite(val))
		fprintf(j->f, "%.*f", decimals, val);
	else
		fputs("null", j->f);
}

void json_bool(struct json *j, const char *key, bool val)
{
	json_member(j, key);
	fputs(val ? "true" : "false", j->f);
}

void json_null(struct json *j, const char *key)
{
	json_member(j, key);
	fputs("null", j->f);
}

void json_stat(struct json *j, const char *key, struct stat3 s, int decimals)
{
	char k[128];

	json_num(j, key, s.med, decimals);
	snprintf(k, sizeof(k), "%s_min", key);
	json_num(j, k, s.min, decimals);
	snprintf(k, sizeof(k), "%s_max", key);
	json_num(j, k, s.max, decimals);
}

void json_finish(struct json *j)
{
	fputc('\n', j->f);
	fflush(j->f);
}

/* ---- progress ----------------------------------------------------------- */

#define BAR_WIDTH 30

void progress_begin(struct progress *p, const char *label, uint64_t total, bool bytes)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	p->total = total ? total : 1;
	p->bytes = bytes;
	p->tty = isatty(STDERR_FILENO) == 1;
	p->start_ns = fl__now_ns();
}

static void progress_draw(struct progress *p, uint64_t done, const char *extra)
{
	char bar[BAR_WIDTH + 1], a[32], b[32];
	unsigned fill;
	double frac;

	if (done > p->total)
		done = p->total;
	frac = (double)done / (double)p->total;
	fill = (unsigned)(frac * BAR_WIDTH);
	for (unsigned i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[BAR_WIDTH] = '\0';
	if (p->bytes) {
		fmt_bytes(done, a, sizeof(a));
		fmt_bytes(p->total, b, sizeof(b));
	} else {
		snprintf(a, sizeof(a), "%llu", (unsigned long long)done);
		snprintf(b, sizeof(b), "%llu", (unsigned long long)p->total);
	}
	/* \r to redraw in place, ESC[K to clear what a longer line left. */
	fprintf(stderr, "\r%-16s [%s] %3u%%  %s / %s%s%s\033[K", p->label, bar,
		(unsigned)(frac * 100), a, b, extra ? "  " : "", extra ? extra : "");
	fflush(stderr);
	p->drawn = true;
}

void progress_update(struct progress *p, uint64_t done, const char *extra)
{
	uint64_t t;

	if (!p->tty)
		return;
	t = fl__now_ns();
	if (p->drawn && t - p->last_draw_ns < 100000000ull)
		return;
	p->last_draw_ns = t;
	progress_draw(p, done, extra);
}

void progress_end(struct progress *p, uint64_t done, const char *extra)
{
	if (!p->tty)
		return;
	progress_draw(p, done, extra);
	fputc('\n', stderr);
	fflush(stderr);
}

/* ---- CPUs ------------------------------------------------------------------ */

int allowed_cpus(int *cpus, int max)
{
	cpu_set_t set;
	int n = 0;

	if (sched_getaffinity(0, sizeof(set), &set))
		return -errno;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &set))
			continue;
		if (n < max)
			cpus[n] = c;
		n++;
	}
	return n;
}

int pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

/* ---- files ------------------------------------------------------------ */

uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t proc_kb(const char *file, const char *key)
{
	FILE *f = fopen(file, "re");
	char line[256];
	unsigned long long v = 0;
	size_t kl = strlen(key);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && sscanf(line + kl, ": %llu", &v) == 1)
			break;
	fclose(f);
	return (uint64_t)v * 1024;
}

const char *temp_dir(void)
{
	const char *d = getenv("TMPDIR");
	return d && *d ? d : "/var/tmp";
}

/*
 * Interrupt cleanup. A fixed table, so the handler touches no allocator and
 * calls only async-signal-safe functions (unlink, rmdir, kill, getdents64,
 * write, _exit). A slot's text is written before it is armed and the
 * handler reads armed slots only; registration blocks the signals, so a
 * slot is never read half written.
 */
#define CLEANUP_SLOTS 32

enum cleanup_kind { CLEANUP_NONE, CLEANUP_FILE, CLEANUP_DIR, CLEANUP_PID };

static struct {
	volatile sig_atomic_t armed;
	enum cleanup_kind kind;
	pid_t pid;
	char path[4096];
} cleanup_slots[CLEANUP_SLOTS];
static volatile pid_t cleanup_owner;	/* the process that registered: not its forked children */
static const int cleanup_signals[] = { SIGINT, SIGTERM, SIGHUP };

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/*
 * Remove a directory and what it holds, a few levels deep (scratch
 * directories hold files and the odd subdirectory). Only system calls:
 * opendir() allocates, getdents64 does not. Paths are joined with
 * *at() calls, so nothing is formatted.
 */
static void remove_tree_at(int parent_fd, const char *name, int depth)
{
	char buf[4096] __attribute__((aligned(8)));
	long n;
	int fd;

	if (unlinkat(parent_fd, name, 0) == 0)
		return;
	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	/* Bounded: an entry that cannot be removed is read again each pass. */
	for (int pass = 0; depth > 0 && pass < 64 && (n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0; pass++) {
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(void *)(buf + off);

			off += d->d_reclen;
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
				continue;
			/* Whatever d_type says (DT_UNKNOWN on some filesystems):
			 * a file is unlinked, a directory emptied first. */
			remove_tree_at(fd, d->d_name, depth - 1);
		}
		/* Entries were removed under the cursor: read from the start. */
		lseek(fd, 0, SEEK_SET);
		if (n < (long)sizeof(buf) / 2)
			break;
	}
	close(fd);
	unlinkat(parent_fd, name, AT_REMOVEDIR);
}

static void cleanup_run(void)
{
	/* Processes first: a worker may still be writing into a directory. */
	for (int i = 0; i < CLEANUP_SLOTS; i++)
		if (cleanup_slots[i].armed && cleanup_slots[i].kind == CLEANUP_PID)
			kill(cleanup_slots[i].pid, SIGKILL);
	for (int i = 0; i < CLEANUP_SLOTS; i++)
		if (cleanup_slots[i].armed && cleanup_slots[i].kind == CLEANUP_FILE)
			unlink(cleanup_slots[i].path);
	for (int i = CLEANUP_SLOTS - 1; i >= 0; i--)
		if (cleanup_slots[i].armed && cleanup_slots[i].kind == CLEANUP_DIR)
			remove_tree_at(AT_FDCWD, cleanup_slots[i].path, 4);
}

static void cleanup_finish(int sig)
{
	cleanup_run();
	/* Leave a terminal progress line ended. */
	if (isatty(STDERR_FILENO) == 1 && write(STDERR_FILENO, "\n", 1) < 0)
		(void)0;
	_exit(128 + sig);
}

/*
 * Between cleanup_block() and cleanup_unblock() a signal is held: blocking
 * it in the calling thread is not enough, since the kernel may deliver a
 * process-wide signal to any other thread (an engine's handler threads).
 * Such a thread notes it and returns; cleanup_unblock() acts on it. The
 * second look at `cleanup_deferring` closes the race with unblock: either
 * unblock sees the note, or the handler sees the section over and acts
 * itself (both acting is harmless: removing twice, one _exit wins).
 */
static volatile sig_atomic_t cleanup_deferring, cleanup_pending;

static void cleanup_handler(int sig)
{
	/* A forked child inherits the handler: the parent cleans up, not it. */
	if (getpid() != cleanup_owner)
		_exit(128 + sig);
	if (cleanup_deferring) {
		cleanup_pending = sig;
		if (cleanup_deferring)
			return;
	}
	cleanup_finish(sig);
}

static void cleanup_install(void);

static void block_signals(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(cleanup_signals) / sizeof(cleanup_signals[0]); i++)
		sigaddset(&set, cleanup_signals[i]);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

void cleanup_block(void)
{
	block_signals(NULL);
	cleanup_install();
	cleanup_deferring = 1;
}

void cleanup_unblock(void)
{
	sigset_t set;

	cleanup_deferring = 0;
	if (cleanup_pending && getpid() == cleanup_owner)
		cleanup_finish(cleanup_pending);
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(cleanup_signals) / sizeof(cleanup_signals[0]); i++)
		sigaddset(&set, cleanup_signals[i]);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* Install the handler, once per process (again in a forked child that
 * registers its own); called with the signals blocked. */
static void cleanup_install(void)
{
	static bool installed;
	struct sigaction sa, prev;

	if (installed && cleanup_owner == getpid())
		return;
	if (installed) {
		/* A forked child registering its own: what it inherited is the
		 * parent's to remove, not its. */
		for (int i = 0; i < CLEANUP_SLOTS; i++)
			cleanup_slots[i].armed = 0;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = cleanup_handler;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(cleanup_signals) / sizeof(cleanup_signals[0]); i++)
		sigaddset(&sa.sa_mask, cleanup_signals[i]);
	cleanup_owner = getpid();
	for (size_t i = 0; i < sizeof(cleanup_signals) / sizeof(cleanup_signals[0]); i++) {
		/* A signal ignored when we were started (nohup, a shell's
		 * background job) stays ignored: it will not stop us. */
		if (sigaction(cleanup_signals[i], NULL, &prev) == 0 && prev.sa_handler == SIG_IGN)
			continue;
		sigaction(cleanup_signals[i], &sa, NULL);
	}
	installed = true;
}

static int cleanup_add(enum cleanup_kind kind, const char *path, pid_t pid)
{
	sigset_t old;
	int slot = -ENOSPC;

	if (path && strlen(path) >= sizeof(cleanup_slots[0].path))
		return -ENAMETOOLONG;
	block_signals(&old);
	cleanup_install();
	for (int i = 0; i < CLEANUP_SLOTS; i++) {
		if (cleanup_slots[i].armed)
			continue;
		cleanup_slots[i].kind = kind;
		cleanup_slots[i].pid = pid;
		snprintf(cleanup_slots[i].path, sizeof(cleanup_slots[i].path), "%s", path ? path : "");
		cleanup_slots[i].armed = 1;
		slot = i;
		break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return slot;
}

int cleanup_add_file(const char *path)
{
	return cleanup_add(CLEANUP_FILE, path, 0);
}

int cleanup_add_dir(const char *dir)
{
	return cleanup_add(CLEANUP_DIR, dir, 0);
}

int cleanup_add_pid(pid_t pid)
{
	return pid > 0 ? cleanup_add(CLEANUP_PID, NULL, pid) : -EINVAL;
}

void cleanup_drop(int slot)
{
	if (slot >= 0 && slot < CLEANUP_SLOTS)
		cleanup_slots[slot].armed = 0;
}

void cleanup_child(pid_t parent)
{
	/* The parent's files and processes are the parent's to clean up. */
	for (int i = 0; i < CLEANUP_SLOTS; i++)
		cleanup_slots[i].armed = 0;
	/* SIGKILL: a worker that handles or blocks SIGTERM must not linger. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* The parent died before the line above: nothing would kill us. */
	if (getppid() != parent)
		_exit(127);
}

/* ---- test patterns ------------------------------------------------------ */

int write_pattern_file(int fd, uint64_t size, bool zero_pages, const char *label)
{
	const size_t chunk = 4u << 20;
	struct progress prog;
	uint64_t *buf;
	int r = 0;

	buf = malloc(chunk);
	if (!buf)
		return -ENOMEM;
	progress_begin(&prog, label, size, true);
	for (uint64_t off = 0; off < size && !r; off += chunk) {
		size_t len = size - off < chunk ? (size_t)(size - off) : chunk;

		for (size_t i = 0; i < len / 8; i++)
			buf[i] = pattern_expected(off + i * 8, zero_pages);
		r = fl__pwrite_full(fd, buf, len, off);
		progress_update(&prog, off + len, NULL);
	}
	if (!r)
		progress_end(&prog, size, NULL);
	else if (prog.drawn)
		fputc('\n', stderr);
	free(buf);
	return r;
}

void fmt_ns(uint64_t ns, char *buf, size_t len)
{
	if (ns < 10000)
		snprintf(buf, len, "%.2f us", (double)ns / 1e3);
	else if (ns < 10000000)
		snprintf(buf, len, "%.0f us", (double)ns / 1e3);
	else if (ns < 1000000000ull)
		snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
}

int atomic_file_open(struct atomic_file *af, const char *path)
{
	const char *slash = strrchr(path, '/');
	mode_t mask = umask(0);
	int n, r = 0;

	umask(mask);
	if (slash)
		n = snprintf(af->tmp, sizeof(af->tmp), "%.*s/.%s.tmp.XXXXXX", (int)(slash - path), path, slash + 1);
	else
		n = snprintf(af->tmp, sizeof(af->tmp), ".%s.tmp.XXXXXX", path);
	if (n < 0 || (size_t)n >= sizeof(af->tmp))
		return -ENAMETOOLONG;
	af->slot = -1;
	/* Made and registered with signals held: no moment where an
	 * interrupt would leave it behind. */
	cleanup_block();
	af->fd = mkostemp(af->tmp, O_CLOEXEC);
	if (af->fd < 0)
		r = -errno;
	else
		af->slot = cleanup_add_file(af->tmp);
	cleanup_unblock();
	/* Unregistered, an interrupt would leave it behind: refused. */
	if (!r && af->slot < 0)
		r = af->slot;
	else if (!r && fchmod(af->fd, 0644 & ~mask))
		r = -errno;
	if (af->fd >= 0 && r) {
		close(af->fd);
		unlink(af->tmp);
		cleanup_drop(af->slot);
	}
	return r;
}

int atomic_file_commit(struct atomic_file *af, const char *path, int err)
{
	if (close(af->fd) && !err)
		err = -errno;
	if (!err && rename(af->tmp, path))
		err = -errno;
	if (err)
		unlink(af->tmp);
	cleanup_drop(af->slot);
	return err;
}

int psk_split(char *spec, const char **ret_id, const char **ret_key)
{
	char *colon = strrchr(spec, ':');

	if (!colon || colon == spec || !colon[1])
		return -EINVAL;
	*colon = '\0';
	*ret_id = spec;
	*ret_key = colon + 1;
	return 0;
}

int psk_read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	bool ok;

	if (!f)
		return -errno;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	if (!ok)
		return -EINVAL;
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

int scratch_dir(const char *parent, const char *name, char *dir, size_t len, int *ret_slot)
{
	int n = snprintf(dir, len, "%s/%s-XXXXXX", parent, name), r = 0;

	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	cleanup_block();
	if (!mkdtemp(dir))
		r = -errno;
	else
		*ret_slot = cleanup_add_dir(dir);
	cleanup_unblock();
	return r;
}

double cli_timeout_scale(void)
{
	const char *v = getenv("FAULTLINE_TIMEOUT_SCALE");
	char *end;
	double d;

	if (!v || !*v)
		return 1;
	errno = 0;
	d = strtod(v, &end);
	return errno || *end || !(d >= 1) || d > 1000 ? 1 : d;
}

unsigned cli_scaled_ms(unsigned ms)
{
	double v = (double)ms * cli_timeout_scale();

	return v >= 4294967295.0 ? 4294967295u : (unsigned)(v + 0.999);
}
