/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small helpers shared by the faultline subcommands: error reporting, number
 * and size parsing, a JSON writer, a progress bar, timing, statistics over
 * samples, CPU pinning and temporary files.
 */
#ifndef FL_CLI_UTIL_H
#define FL_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Full reads and writes (fl__pread_full, fl__pwrite_full), fl__now_ns():
 * the library's internal utility layer, shared with faultlined. */
#include "flutil.h"

/* Exit codes of the faultline command. */
#define EXIT_OK 0
#define EXIT_ERR 1	/* a runtime error: one line on stderr */
#define EXIT_USAGE 2	/* a usage error: one line on stderr */

/*
 * Print "faultline: <message>" as one line on stderr. Errors are reported
 * where they happen; callers then return EXIT_ERR (or EXIT_USAGE).
 */
__attribute__((format(printf, 1, 2)))
void cli_error(const char *fmt, ...);
/* The same, for a usage error: returns EXIT_USAGE. */
__attribute__((format(printf, 1, 2)))
int cli_usage_error(const char *fmt, ...);
/* A library error: "faultline: <what>: <strerror(-err)>"; returns EXIT_ERR. */
int cli_fail(const char *what, int err);
/*
 * FAULTLINE_TIMEOUT_SCALE (a number from 1 to 1000, default 1; anything
 * else counts as 1): the factor the CLI's default deadlines are multiplied
 * by on a slow machine (the demo's client timeout and waits, `daemon map`
 * without --timeout), the same variable the test suite reads.
 */
double cli_timeout_scale(void);
/* ms times cli_timeout_scale(), rounded up. */
unsigned cli_scaled_ms(unsigned ms);
/*
 * A part this build left out: "faultline: <what>: built without <part>
 * support (-D<option>=disabled)"; returns EXIT_ERR.
 */
int cli_not_built(const char *what, const char *part, const char *option);

/* The optional parts of this build (fl-config.h), for --version and check. */
struct cli_part {
	const char *name;	/* "TLS", "Redis", "LZ4" */
	const char *option;	/* the Meson option: "tls", "redis", "lz4" */
	const char *library;	/* what it is built on: "GnuTLS", ... */
	bool built;
};
extern const struct cli_part cli_parts[3];

/* Sizes and numbers: fl__parse_size() and fl__parse_uint() (lib/util). */
/* Format a byte count as "1.0 GiB", "256 MiB", "12 KiB" into buf. */
const char *fmt_bytes(uint64_t bytes, char *buf, size_t len);

/* ---- time ---------------------------------------------------------------- */

/* A duration for people: "12.34 us", "567 us", "8.9 ms", "1.23 s". */
void fmt_ns(uint64_t ns, char *buf, size_t len);

/* ---- samples --------------------------------------------------------------- */

/* Sort a sample array in place and return the q-quantile (nearest rank). */
uint64_t quantile_u64(uint64_t *samples, size_t n, double q);
/* Median of doubles (sorts in place; mean of the two middle values). */
double median_d(double *v, size_t n);
double min_d(const double *v, size_t n);
double max_d(const double *v, size_t n);

/* Median, min and max of n values (the input is left as it is). */
struct stat3 {
	double med, min, max;
};
struct stat3 stat_of(const double *v, size_t n);

/* ---- JSON ----------------------------------------------------------------- */

/*
 * A minimal streaming JSON writer: objects and arrays nest, commas and
 * indentation are handled here. Keys are NULL inside arrays.
 */
struct json {
	FILE *f;
	int depth;
	bool first[16];		/* no member written yet at this depth */
};
void json_init(struct json *j, FILE *f);
void json_begin(struct json *j, const char *key);	/* object */
void json_begin_array(struct json *j, const char *key);
void json_end(struct json *j);				/* object */
void json_end_array(struct json *j);
void json_str(struct json *j, const char *key, const char *val);	/* NULL -> null */
void json_u64(struct json *j, const char *key, uint64_t val);
void json_i64(struct json *j, const char *key, int64_t val);
/* A number with `decimals` digits after the point (NaN and inf -> null). */
void json_num(struct json *j, const char *key, double val, int decimals);
void json_bool(struct json *j, const char *key, bool val);
void json_null(struct json *j, const char *key);
/* key, key_min and key_max from a stat3. */
void json_stat(struct json *j, const char *key, struct stat3 s, int decimals);
/* Finish the document (a trailing newline). */
void json_finish(struct json *j);

/* ---- progress ----------------------------------------------------------- */

/*
 * A progress bar on stderr. It draws (at most ~10 times a second) only when
 * stderr is a terminal; otherwise it prints nothing, so logs and pipes stay
 * clean.
 */
struct progress {
	const char *label;
	uint64_t total;
	uint64_t start_ns, last_draw_ns;
	bool tty, drawn;
	bool bytes;		/* show done/total as sizes, else as counts */
};
void progress_begin(struct progress *p, const char *label, uint64_t total, bool bytes);
/* `extra`: optional short text shown after the numbers (NULL for none). */
void progress_update(struct progress *p, uint64_t done, const char *extra);
/* Draw the final state and end the line (only if anything was drawn). */
void progress_end(struct progress *p, uint64_t done, const char *extra);

/* ---- CPUs ------------------------------------------------------------------ */

/*
 * The CPUs this process may run on, in ascending order: writes up to `max`
 * of them to cpus and returns how many there are in all.
 */
int allowed_cpus(int *cpus, int max);
/* Pin the calling thread to one CPU. Returns 0 or -errno. */
int pin_self(int cpu);

/* ---- files ------------------------------------------------------------ */

/* The directory for temporary files: $TMPDIR if set and non-empty, else /var/tmp. */
const char *temp_dir(void);
/* A kB field ("Pss", "VmRSS"...) of a /proc file such as
 * /proc/<pid>/smaps_rollup or status, in bytes; 0 when absent. */
uint64_t proc_kb(const char *file, const char *key);
/* A fast seeded pseudo-random sequence (SplitMix64) for workloads and
 * benchmark data: the same seed gives the same sequence. */
uint64_t splitmix64(uint64_t *state);

/*
 * Cleanup when interrupted. Everything the command makes on disk, and the
 * processes it starts, is registered here while it exists: if SIGINT,
 * SIGTERM or SIGHUP stops the command, the handler (installed at the first
 * registration) kills the registered processes, removes the files, then
 * the directories with whatever they hold (a few levels deep, deepest
 * first), and exits with 128 + the signal number. Each call returns a slot
 * (>= 0, or -ENOSPC when 32 are in use, -ENAMETOOLONG) that
 * cleanup_drop() disarms once the thing is gone or is the command's result
 * (cleanup_drop accepts a negative slot). Forked children inherit the
 * handler but never clean up: the process that registered does. A signal
 * that was ignored when the command started (nohup, a background job of a
 * shell without job control) is left ignored.
 */
#include <sys/types.h>
int cleanup_add_file(const char *path);
int cleanup_add_dir(const char *dir);
int cleanup_add_pid(pid_t pid);
void cleanup_drop(int slot);
/*
 * Hold off SIGINT, SIGTERM and SIGHUP (in every thread: one that receives
 * it notes it) between making a file and registering it, or around a
 * short write-then-rename, where a signal would leave a file behind; the
 * signal takes effect in cleanup_unblock(). Not nested; one thread at a
 * time.
 */
void cleanup_block(void);
void cleanup_unblock(void);
/*
 * In a forked child, first thing: die (SIGKILL) when the parent does, so
 * an interrupted command leaves no orphan. `parent` is getpid() read
 * before fork(); a parent already gone ends the child at once.
 */
void cleanup_child(pid_t parent);

/*
 * A scratch directory "<parent>/<name>-XXXXXX",
 * made and registered for cleanup with signals held: an interrupted
 * command removes it whole, with what it holds. 0 with the path in dir and
 * the cleanup slot in *ret_slot, or -errno.
 */
int scratch_dir(const char *parent, const char *name, char *dir, size_t len, int *ret_slot);

/* TLS pre-shared keys as the CLI takes them (serve, image restore --from):
 * "IDENTITY:HEXKEY" split in place at the last ':' (-EINVAL when either part
 * is empty), and the first line of a key file (-EINVAL when empty). */
int psk_split(char *spec, const char **ret_id, const char **ret_key);
int psk_read_file(const char *path, char *buf, size_t len);

/*
 * Writing a file whole or not at all: a hidden temporary file beside
 * `path` (".NAME.tmp.XXXXXX", mode 0644 less the umask), registered for
 * cleanup; the result is renamed over `path` only when everything was
 * written, so an error or a signal leaves no partial output and an older
 * file at that path as it was.
 */
struct atomic_file {
	char tmp[4200];
	int fd;
	int slot;
};
/* 0, or -errno (nothing is left behind). */
int atomic_file_open(struct atomic_file *af, const char *path);
/* Close; rename over `path` when err is 0, else remove. Returns err, or the
 * -errno of the close or rename. */
int atomic_file_commit(struct atomic_file *af, const char *path, int err);


/* ---- test patterns ------------------------------------------------------ */

/*
 * The 8-byte word at byte offset `off` (a multiple of 8) of a pattern
 * image. Every word differs, so a page delivered at the wrong offset (or
 * half written) does not match.
 */
static inline uint64_t pattern_word(uint64_t off)
{
	return ((off >> 3) + 1) * 0x9E3779B97F4A7C15ull ^ 0xA5A5A5A5A5A5A5A5ull;
}

/*
 * With zero pages: page 7 of every 16, and a 2 MiB run (512 pages) in
 * every 128 MiB, are all zeros, so images have both single zero pages and
 * long runs of them.
 */
static inline bool pattern_page_is_zero(uint64_t page)
{
	return page % 16 == 7 || (page / 512) % 64 == 13;
}

static inline uint64_t pattern_expected(uint64_t off, bool zero_pages)
{
	return zero_pages && pattern_page_is_zero(off / 4096) ? 0 : pattern_word(off);
}

/*
 * Write `size` bytes of the pattern (size a multiple of 4096) to fd from
 * offset 0, with a progress bar labelled `label`. Returns 0 or -errno.
 */
int write_pattern_file(int fd, uint64_t size, bool zero_pages, const char *label);

#endif
