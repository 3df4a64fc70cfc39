// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Thin system-call wrappers that turn errno into -errno, so that the rest of
 * the library never reads errno (uffd.c and pagemap.c do the same for their
 * ioctls).
 */
#include "flutil.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

int fl__mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **ret)
{
	void *p = mmap(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED)
		return -errno;
	*ret = p;
	return 0;
}

int fl__munmap(void *addr, size_t len)
{
	return munmap(addr, len) ? -errno : 0;
}

/*
 * Fork-safe allocation. glibc's fork() holds every malloc arena lock while
 * the kernel copies the address space, and the kernel waits, with
 * UFFD_FEATURE_EVENT_FORK, until a handler has read the FORK event. A
 * handler thread that calls malloc() then waits for the fork, which waits
 * for it: both hang. Whatever the handler threads allocate comes from
 * mmap(2) instead, which takes no userspace lock. A 64-byte header keeps
 * the mapping's length.
 */
#define FS_HDR 64u

void *fl__forksafe_calloc(size_t n, size_t size)
{
	size_t len;
	uint8_t *p;

	if (size && n > (SIZE_MAX - FS_HDR) / size)
		return NULL;
	len = (n * size + FS_HDR + 4095) / 4096 * 4096;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	*(size_t *)(void *)p = len;
	return p + FS_HDR;
}

void *fl__forksafe_realloc(void *ptr, size_t size)
{
	uint8_t *base, *np;
	size_t len, nlen;

	if (!ptr)
		return fl__forksafe_calloc(1, size);
	if (size > SIZE_MAX - FS_HDR - 4096)
		return NULL;
	base = (uint8_t *)ptr - FS_HDR;
	len = *(size_t *)(void *)base;
	nlen = (size + FS_HDR + 4095) / 4096 * 4096;
	if (nlen <= len)
		return ptr;
	np = mremap(base, len, nlen, MREMAP_MAYMOVE);
	if (np == MAP_FAILED)
		return NULL;
	*(size_t *)(void *)np = nlen;
	return np + FS_HDR;
}

void fl__forksafe_free(void *ptr)
{
	uint8_t *base;

	if (!ptr)
		return;
	base = (uint8_t *)ptr - FS_HDR;
	munmap(base, *(size_t *)(void *)base);
}

int fl__madvise(void *addr, size_t len, int advice)
{
	return madvise(addr, len, advice) ? -errno : 0;
}

int fl__mprotect(void *addr, size_t len, int prot)
{
	return mprotect(addr, len, prot) ? -errno : 0;
}

/* Move [old, old + len) to exactly `to`, replacing what was there (spaces:
 * a switch moves a registered mapping over the old one). */
int fl__mremap_fixed(void *old, size_t len, void *to)
{
	void *p = mremap(old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	if (p == MAP_FAILED)
		return -errno;
	return p == to ? 0 : -EFAULT;
}

int fl__memfd(const char *name, unsigned flags, size_t len, int *ret_fd)
{
	int fd = memfd_create(name, flags | MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (len && ftruncate(fd, (off_t)len)) {
		int r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int fl__pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ERANGE; /* short file: never pretend the rest is zeros */
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int fl__pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int fl__fdatasync(int fd)
{
	return fdatasync(fd) ? -errno : 0;
}

int fl__fstat_size(int fd, uint64_t *ret_size)
{
	struct stat st;
	if (fstat(fd, &st))
		return -errno;
	*ret_size = (uint64_t)st.st_size;
	return 0;
}

int fl__dup_cloexec(int fd, int *ret_fd)
{
	int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (n < 0)
		return -errno;
	*ret_fd = n;
	return 0;
}

int fl__eventfd(int *ret_fd)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int fl__eventfd_signal(int fd)
{
	uint64_t one = 1;
	return write(fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

int fl__pidfd_open(pid_t pid, int *ret_fd)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -errno;
	*ret_fd = (int)fd;
	return 0;
}

int fl__poll(struct pollfd *fds, unsigned n, int timeout_ms)
{
	int r = poll(fds, n, timeout_ms);
	return r < 0 ? -errno : r;
}

int fl__epoll_create(int *ret_fd)
{
	int fd = epoll_create1(EPOLL_CLOEXEC);

	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int fl__epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout_ms)
{
	int r = epoll_wait(epfd, evs, max, timeout_ms);
	return r < 0 ? -errno : r;
}

int fl__tkill(pid_t tgid, pid_t tid, int sig)
{
	long r = tgid > 0 ? syscall(SYS_tgkill, tgid, tid, sig) : syscall(SYS_tkill, tid, sig);
	return r ? -errno : 0;
}

int fl__open(const char *path, int flags, int *ret_fd)
{
	int fd = open(path, flags | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int fl__close(int fd)
{
	if (fd < 0)
		return 0;
	return close(fd) ? -errno : 0;
}

uint64_t fl__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int fl__mkstemp(char *tmpl, int *ret_fd)
{
	int fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int fl__fallocate(int fd, uint64_t len)
{
	int r = posix_fallocate(fd, 0, (off_t)len);
	/* Filesystems without fallocate just don't reserve. */
	if (r == EOPNOTSUPP || r == EINVAL)
		return 0;
	return -r;
}

int fl__ftruncate(int fd, uint64_t len)
{
	return ftruncate(fd, (off_t)len) ? -errno : 0;
}

int fl__punch_hole(int fd, uint64_t off, uint64_t len)
{
	return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ? -errno : 0;
}

int fl__fd_read_only(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	return (fl & O_ACCMODE) == O_RDONLY || (fl & O_PATH);
}

int fl__fsync(int fd)
{
	return fsync(fd) ? -errno : 0;
}

/* lseek(2) with SEEK_DATA / SEEK_HOLE: -ENXIO past the last data. */
int fl__lseek(int fd, uint64_t off, int whence, uint64_t *ret_off)
{
	off_t r = lseek(fd, (off_t)off, whence);

	if (r < 0)
		return -errno;
	*ret_off = (uint64_t)r;
	return 0;
}

int fl__mkdir(const char *path, unsigned mode)
{
	return mkdir(path, (mode_t)mode) ? -errno : 0;
}

int fl__unlink(const char *path)
{
	return unlink(path) ? -errno : 0;
}

/* fsync(2) the directory holding `path`: a rename in it is durable then. */
static int sync_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int dfd, r = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fsync(dfd))
		r = -errno;
	close(dfd);
	return r;
}

int fl__rename_durable(const char *from, const char *to, bool sync_dir)
{
	if (rename(from, to))
		return -errno;
	return sync_dir ? sync_parent(to) : 0;
}

/*
 * rename(2) that never replaces: renameat2(RENAME_NOREPLACE) where the
 * filesystem has it, else link(2) + unlink(2) (both refuse an existing
 * target atomically; a plain check-then-rename would race a writer).
 * All or nothing: when the directory cannot be synced after the rename,
 * the file is taken back out of `to` (which did not exist before), so an
 * error never leaves a file there that the caller believes absent.
 */
int fl__rename_noreplace_durable(const char *from, const char *to, bool sync_dir)
{
	int r;

	if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE)) {
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
		if (link(from, to))
			return -errno;
		unlink(from);
	}
	r = sync_dir ? sync_parent(to) : 0;
	if (r)
		unlink(to);
	return r;
}

/* Does anything (a dangling symlink too) exist at path? 0: no; 1: yes. */
int fl__path_exists(const char *path)
{
	struct stat st;

	if (!lstat(path, &st))
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

int fl__realpath(const char *path, char *out, size_t len)
{
	char buf[PATH_MAX];
	if (!realpath(path, buf))
		return -errno;
	if (strlen(buf) >= len)
		return -ENAMETOOLONG;
	memcpy(out, buf, strlen(buf) + 1);
	return 0;
}
