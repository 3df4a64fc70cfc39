/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The bottom layer (lib/util): helpers every other layer, faultlined and the
 * faultline CLI share: option-struct copying, the logger, syscall wrappers
 * (full reads and writes, time, memfd, fd passing), latency histograms.
 * Includes nothing of the library's but the public headers.
 */
#ifndef FL_FLUTIL_H
#define FL_FLUTIL_H

#include <faultline/faultline.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <time.h>
#include <poll.h>
#include <string.h>
#include <sys/types.h>

#define FL_PAGE_SIZE 4096u
#define FL_HPAGE_SIZE (2u << 20)
#define FL_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define FL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FL_MAX(a, b) ((a) > (b) ? (a) : (b))

/*
 * Options structs (libbpf's OPTS_VALID, the kernel's copy_struct_from_user):
 * a caller sets `sz` to sizeof() of the struct it was compiled against.
 * fl__opts_copy() copies `src` (whose first member is that size_t sz) into
 * `dst`, this build's layout, and is the only way the library reads an
 * options struct; afterwards only the copy is used.
 *  - src NULL: dst zeroed (defaults), 0. Functions whose options are
 *    required reject NULL themselves, before calling this.
 *  - sz == 0 (or too small to hold sz itself): -EINVAL. A zero sz is
 *    almost always a forgotten initialiser, never an old caller.
 *  - sz smaller than ours (an older caller): the fields it lacks are zero.
 *  - sz larger (a newer caller): every byte past our struct must be zero,
 *    else -E2BIG: the caller set a field this build does not know, and
 *    silently ignoring it would do something other than what was asked.
 *    Sizes past FL_OPTS_MAX_SZ are -E2BIG without reading them.
 * On success dst->sz is sizeof(dst) (the copy is complete in our layout).
 */
#define FL_OPTS_MAX_SZ 4096u
int fl__opts_copy(void *dst, size_t dst_sz, const void *src);
#define FL_OPTS_COPY(dst, src) fl__opts_copy(&(dst), sizeof(dst), (src))

/*
 * The out direction (stats and info structs the caller passes with sz
 * set): copy min(caller's sz, ours) bytes of `src` to `dst`, zero the bytes
 * of a larger caller struct past ours (fields it knows and we do not read
 * as 0), and leave dst->sz as the caller set it. -EINVAL when dst is NULL
 * or its sz is 0; -E2BIG past FL_OPTS_MAX_SZ.
 */
int fl__opts_out(void *dst, const void *src, size_t src_sz);
#define FL_OPTS_OUT(dst, src) fl__opts_out((dst), &(src), sizeof(src))
/* Check an out struct's sz before doing the work of filling it. */
int fl__opts_out_check(const void *dst);

/* ---- log.c ------------------------------------------------------------- */
struct fl__logger {
	fl_log_fn fn;
	void *ctx;
	enum fl_log_level level;
};
__attribute__((format(printf, 3, 4)))
void fl__log(const struct fl__logger *lg, enum fl_log_level level, const char *fmt, ...);

/* ---- sys.c: thin syscall wrappers, -errno; with kernel/uffd.c and
 * kernel/pagemap.c the only code that reads errno ---------------------- */
int fl__mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **ret);
int fl__munmap(void *addr, size_t len);
/* Allocation for the engine's handler threads: mmap-backed, lock-free, so
 * a fork() elsewhere in the process cannot deadlock with them (sys.c).
 * fl__forksafe_calloc zeroes; fl__forksafe_realloc keeps the contents. */
void *fl__forksafe_calloc(size_t n, size_t size);
void *fl__forksafe_realloc(void *ptr, size_t size);
void fl__forksafe_free(void *ptr);
int fl__madvise(void *addr, size_t len, int advice);
int fl__mprotect(void *addr, size_t len, int prot);
int fl__mremap_fixed(void *old, size_t len, void *to);
int fl__memfd(const char *name, unsigned flags, size_t len, int *ret_fd);
int fl__pread_full(int fd, void *buf, size_t len, uint64_t off);
int fl__pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
int fl__fdatasync(int fd);
int fl__fstat_size(int fd, uint64_t *ret_size);
int fl__dup_cloexec(int fd, int *ret_fd);
int fl__eventfd(int *ret_fd);
int fl__eventfd_signal(int fd);
int fl__pidfd_open(pid_t pid, int *ret_fd);
int fl__poll(struct pollfd *fds, unsigned n, int timeout_ms);
struct epoll_event;
int fl__epoll_create(int *ret_fd);	/* close-on-exec */
int fl__epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout_ms);
int fl__tkill(pid_t tgid, pid_t tid, int sig);
int fl__open(const char *path, int flags, int *ret_fd);
int fl__close(int fd);
uint64_t fl__now_ns(void);
int fl__mkstemp(char *tmpl, int *ret_fd);
int fl__fallocate(int fd, uint64_t len);
int fl__ftruncate(int fd, uint64_t len);
/* fallocate(PUNCH_HOLE | KEEP_SIZE): drop [off, off + len) of a file's pages. */
int fl__punch_hole(int fd, uint64_t off, uint64_t len);
/* 1: fd was opened read-only (O_RDONLY, or O_PATH); 0: it may be written; -errno. */
int fl__fd_read_only(int fd);
int fl__fsync(int fd);
int fl__mkdir(const char *path, unsigned mode);
int fl__lseek(int fd, uint64_t off, int whence, uint64_t *ret_off);
int fl__unlink(const char *path);
int fl__rename_durable(const char *from, const char *to, bool sync_dir);
/* -EEXIST when `to` exists; never replaces it. On any error nothing is left at `to`. */
int fl__rename_noreplace_durable(const char *from, const char *to, bool sync_dir);
/* 1: something (a dangling symlink too) is at path; 0: nothing; -errno. */
int fl__path_exists(const char *path);
int fl__realpath(const char *path, char *out, size_t len);

/* fdpass.c: sendmsg of iov with `fd` as SCM_RIGHTS (none if < 0), EINTR
 * retried, no SIGPIPE. */
struct iovec;
struct msghdr;
int fl__send_fd(int sock, struct iovec *iov, int niov, int fd, size_t *ret_sent);
/* The first fd a received message carries (-1: none); extras are closed. */
int fl__cmsg_take_fd(struct msghdr *msg);
/* A connected unix socket of `type` (SOCK_SEQPACKET, SOCK_STREAM) to path,
 * close-on-exec; -ENAMETOOLONG when path does not fit sun_path. */
int fl__unix_connect(const char *path, int type, int *ret_fd);
/* A listening SOCK_STREAM unix socket (see fdpass.c for what it replaces),
 * its file given `mode` before listen(); non-blocking, close-on-exec. */
int fl__unix_listen(const char *path, unsigned mode, int backlog, int *ret_fd);
/*
 * Make room for a socket at path: nothing there (0), or a socket nobody
 * answers on (removed: 0). Refused and left alone: a directory -EISDIR,
 * anything else that is not a socket -EEXIST, a socket someone serves on
 * -EADDRINUSE. The probe never waits: a live listener with a full backlog
 * (EAGAIN) or of another socket type (EPROTOTYPE) counts as served.
 */
int fl__unix_path_clear(const char *path, int type);
int fl__unix_accept(int lfd, int *ret_fd);	/* non-blocking, close-on-exec */
/* recv/send that never block (nor raise SIGPIPE): bytes, or -errno. */
ssize_t fl__recv_nb(int fd, void *buf, size_t len);
ssize_t fl__send_nb(int fd, const void *buf, size_t len);
int fl__lstat_id(const char *path, uint64_t *ret_dev, uint64_t *ret_ino);

/* ---- parse.c: the command line's numbers (CLI and faultlined) -------- */
/* A byte count: a decimal number with an optional binary suffix (K, M, G,
 * T, optionally followed by "iB" or "B": "1G", "256M", "64KiB"). 0, or
 * -EINVAL / -ERANGE (it does not fit 64 bits). */
int fl__parse_size(const char *s, uint64_t *ret_bytes);
/* A decimal unsigned number in [min, max]: 0, or -EINVAL / -ERANGE. */
int fl__parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* ---- proc.c ---------------------------------------------------------- */
/* Pss (KiB) of process pid's mappings that overlap [start, start+len), or
 * map a file whose name contains `name` (when not NULL): what a region or a
 * clone really costs, its share of pages it shares included. */
int fl__pss_kib(pid_t pid, uint64_t start, uint64_t len, const char *name, uint64_t *ret_kib);
/* Is [addr, addr + len) of this process private anonymous memory
 * throughout, with no gap? (false when /proc cannot be read) */
bool fl__range_private_anon(uint64_t addr, uint64_t len);
/* Is every page of [addr, addr + len) mapped with at least `prot`
 * (PROT_* bits)? (false when /proc cannot be read) */
bool fl__range_has_prot(uint64_t addr, uint64_t len, int prot);

/* ---- hist.c ------------------------------------------------------------ */
struct fl__hist {
	_Atomic uint64_t bucket[FL_LAT_BUCKETS];
	_Atomic uint64_t count, sum, max;
};
void fl__hist_add(struct fl__hist *h, uint64_t ns);
uint64_t fl__hist_quantile(const struct fl__hist *h, double q);
/* The largest latency (ns) bucket b counts. */
uint64_t fl__hist_bucket_upper(unsigned b);
/* Add src's counts to dst (dst is not shared while it is summed). */
void fl__hist_merge(struct fl__hist *dst, const struct fl__hist *src);

/*
 * Summarised bitmaps: bits[] with sum[], one bit per word of bits that may
 * be non-zero, so that finding the set bits of a mostly clear map of
 * millions costs what is set, not the size (a write watch's dirty pages, a
 * clone's written pages). bits needs (n + 63) / 64 words, sum
 * (n + 4095) / 4096. Setting is lock-free; fl__sbit_next() may run beside
 * it (see there).
 */
static inline void fl__sbit_set(_Atomic uint64_t *bits, _Atomic uint64_t *sum, uint64_t i)
{
	/* The word first, then its summary bit. */
	atomic_fetch_or(&bits[i / 64], 1ull << (i % 64));
	atomic_fetch_or(&sum[i / 4096], 1ull << (i / 64 % 64));
}

/*
 * The first set bit in [i, end), or end. A summary bit whose word is zero
 * is cleared, then the word read again: a set that wrote the word before
 * the clear is seen by that second read (and the summary bit set again);
 * one after it sets the summary bit itself.
 */
static inline uint64_t fl__sbit_next(_Atomic uint64_t *bits, _Atomic uint64_t *sum, uint64_t i, uint64_t end)
{
	while (i < end) {
		uint64_t wi = i / 64, s = atomic_load(&sum[wi / 64]) >> (wi % 64), word;

		if (!s) {
			i = (wi / 64 + 1) * 4096;	/* the next summary word */
			continue;
		}
		wi += (uint64_t)__builtin_ctzll(s);
		if (wi * 64 > i)
			i = wi * 64;
		if (i >= end)
			break;
		word = atomic_load(&bits[wi]);
		if (!word) {
			atomic_fetch_and(&sum[wi / 64], ~(1ull << (wi % 64)));
			if (atomic_load(&bits[wi]))
				atomic_fetch_or(&sum[wi / 64], 1ull << (wi % 64));
			i = (wi + 1) * 64;
			continue;
		}
		word >>= i % 64;
		if (!word) {
			i = (wi + 1) * 64;
			continue;
		}
		i += (uint64_t)__builtin_ctzll(word);
		return i < end ? i : end;
	}
	return end;
}

#endif
