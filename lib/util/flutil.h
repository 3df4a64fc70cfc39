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

/* Copy an options struct the caller may have compiled against an older (smaller) layout. */
#define FL_OPTS_COPY(dst, src)                                                \
	do {                                                                  \
		memset(&(dst), 0, sizeof(dst));                               \
		if (src) {                                                    \
			size_t _n = (src)->sz < sizeof(dst) ? (src)->sz : sizeof(dst); \
			memcpy(&(dst), (src), _n);                            \
		}                                                             \
	} while (0)

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
int fl__fsync(int fd);
int fl__unlink(const char *path);
int fl__rename_durable(const char *from, const char *to, bool sync_dir);
int fl__realpath(const char *path, char *out, size_t len);

/* fdpass.c: sendmsg of iov with `fd` as SCM_RIGHTS (none if < 0), EINTR
 * retried, no SIGPIPE. */
struct iovec;
struct msghdr;
int fl__send_fd(int sock, struct iovec *iov, int niov, int fd, size_t *ret_sent);
/* The first fd a received message carries (-1: none); extras are closed. */
int fl__cmsg_take_fd(struct msghdr *msg);

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

#endif
