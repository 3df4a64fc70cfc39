// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The userfaultfd kernel interface. Every resolving ioctl goes through
 * resolve_range(), which is the one implementation of the error table in
 * kernel-facts.md: partial progress is advanced and retried here, and every
 * errno is given its single meaning before it leaves this file.
 */
#include "kernel.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int create_syscall(int oflags, bool user_mode_only, int *ret_fd)
{
	int fd = (int)syscall(SYS_userfaultfd, oflags | (user_mode_only ? UFFD_USER_MODE_ONLY : 0));
	if (fd < 0)
		return errno == ENOSYS ? -EOPNOTSUPP : -errno;
	*ret_fd = fd;
	return 0;
}

static int create_dev(int oflags, int *ret_fd)
{
	int dev, fd, r;

	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return errno == ENOENT ? -EOPNOTSUPP : -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, oflags);
	r = fd < 0 ? -errno : 0;
	close(dev);
	if (r)
		return r == -ENOTTY ? -EOPNOTSUPP : r;
	*ret_fd = fd;
	return 0;
}

int fl_uffd_create(unsigned flags, int *ret_fd)
{
	int oflags = 0, r;
	bool umo = flags & FL_UFFD_USER_MODE_ONLY;

	if (!ret_fd || (flags & ~(FL_UFFD_CLOEXEC | FL_UFFD_NONBLOCK | FL_UFFD_USER_MODE_ONLY |
				  FL_UFFD_USE_DEV | FL_UFFD_USE_SYSCALL)))
		return -EINVAL;
	if ((flags & FL_UFFD_USE_DEV) && (flags & (FL_UFFD_USE_SYSCALL | FL_UFFD_USER_MODE_ONLY)))
		return -EINVAL;
	if (flags & FL_UFFD_CLOEXEC)
		oflags |= O_CLOEXEC;
	if (flags & FL_UFFD_NONBLOCK)
		oflags |= O_NONBLOCK;

	if (flags & FL_UFFD_USE_DEV) {
		if (fl_features_masked() & FL_FEATURE_BIT(FL_FEATURE_DEV_USERFAULTFD))
			return -EOPNOTSUPP;
		return create_dev(oflags, ret_fd);
	}
	if ((flags & FL_UFFD_USE_SYSCALL) || umo)
		return create_syscall(oflags, umo, ret_fd);

	r = create_syscall(oflags, false, ret_fd);
	if (r != -EPERM && r != -EOPNOTSUPP)
		return r;
	if (!(fl_features_masked() & FL_FEATURE_BIT(FL_FEATURE_DEV_USERFAULTFD))) {
		int r2 = create_dev(oflags, ret_fd);
		if (r2 == 0)
			return 0;
	}
	if (r == -EPERM)
		return create_syscall(oflags, true, ret_fd);
	return r;
}

int fl_uffd_api(int uffd, uint64_t features, uint64_t *ret_features, uint64_t *ret_ioctls)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	uint64_t masked = fl_features_to_uffd(fl_features_masked());

	if (features & masked)
		return -EOPNOTSUPP;
	if (ioctl(uffd, UFFDIO_API, &api)) {
		int e = errno;
		/* EINVAL both for "already called" and "feature unknown":
		 * tell them apart with the probe. */
		if (e == EINVAL && (features & ~fl_features_to_uffd(fl_features())) != 0)
			return -EOPNOTSUPP;
		return -e;
	}
	if (ret_features)
		*ret_features = api.features & ~masked;
	if (ret_ioctls)
		*ret_ioctls = api.ioctls;
	return 0;
}

int fl_uffd_register(int uffd, void *addr, size_t len, unsigned modes, uint64_t *ret_ioctls)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
	};

	if (!modes || (modes & ~(FL_REG_MISSING | FL_REG_WP | FL_REG_MINOR)))
		return -EINVAL;
	if (modes & FL_REG_MISSING)
		reg.mode |= UFFDIO_REGISTER_MODE_MISSING;
	if (modes & FL_REG_WP)
		reg.mode |= UFFDIO_REGISTER_MODE_WP;
	if (modes & FL_REG_MINOR)
		reg.mode |= UFFDIO_REGISTER_MODE_MINOR;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	if (ret_ioctls) {
		uint64_t ioctls = reg.ioctls;
		if (fl_features_masked() & FL_FEATURE_BIT(FL_FEATURE_IOCTL_POISON))
			ioctls &= ~(1ull << _UFFDIO_POISON);
		if (fl_features_masked() & FL_FEATURE_BIT(FL_FEATURE_IOCTL_MOVE))
			ioctls &= ~(1ull << _UFFDIO_MOVE);
		*ret_ioctls = ioctls;
	}
	return 0;
}

int fl_uffd_unregister(int uffd, void *addr, size_t len)
{
	struct uffdio_range range = { .start = (uintptr_t)addr, .len = len };
	return ioctl(uffd, UFFDIO_UNREGISTER, &range) ? -errno : 0;
}

enum resolve_op { OP_COPY, OP_ZEROPAGE, OP_CONTINUE, OP_POISON, OP_MOVE };

/* Issue one ioctl; returns 0 or errno, and the kernel's progress field. */
static int resolve_once(int uffd, enum resolve_op op, uint64_t dst, uint64_t src,
			uint64_t len, uint64_t mode, int64_t *progress)
{
	int r;

	switch (op) {
	case OP_COPY: {
		struct uffdio_copy a = { .dst = dst, .src = src, .len = len, .mode = mode };
		r = ioctl(uffd, UFFDIO_COPY, &a) ? errno : 0;
		*progress = a.copy;
		break;
	}
	case OP_ZEROPAGE: {
		struct uffdio_zeropage a = { .range = { dst, len }, .mode = mode };
		r = ioctl(uffd, UFFDIO_ZEROPAGE, &a) ? errno : 0;
		*progress = a.zeropage;
		break;
	}
	case OP_CONTINUE: {
		struct uffdio_continue a = { .range = { dst, len }, .mode = mode };
		r = ioctl(uffd, UFFDIO_CONTINUE, &a) ? errno : 0;
		*progress = a.mapped;
		break;
	}
	case OP_POISON: {
		struct uffdio_poison a = { .range = { dst, len }, .mode = mode };
		r = ioctl(uffd, UFFDIO_POISON, &a) ? errno : 0;
		*progress = a.updated;
		break;
	}
	case OP_MOVE: {
		struct uffdio_move a = { .dst = dst, .src = src, .len = len, .mode = mode };
		r = ioctl(uffd, UFFDIO_MOVE, &a) ? errno : 0;
		*progress = a.move;
		break;
	}
	default:
		return EINVAL;
	}
	if (r == 0)
		*progress = (int64_t)len;
	return r;
}

/* The error table (kernel-facts.md), implemented once. */
static int resolve_range(int uffd, enum resolve_op op, uint64_t dst, uint64_t src,
			 uint64_t len, uint64_t mode, size_t *ret_done)
{
	uint64_t done = 0;
	int err = 0;

	if (ret_done)
		*ret_done = 0;
	if (!len)
		return -EINVAL;
	while (done < len) {
		int64_t progress = 0;

		err = resolve_once(uffd, op, dst + done, src ? src + done : 0,
				   len - done, mode, &progress);
		if (progress > 0)
			done += (uint64_t)progress;
		if (!err)
			continue;
		/* EAGAIN with progress: the mm changed under us or a page was
		 * found mid-range; advance and retry what is left. */
		if (err == EAGAIN && progress > 0)
			continue;
		break;
	}
	if (ret_done)
		*ret_done = (size_t)done;
	if (done >= len)
		return 0;
	switch (err) {
	case ENOSPC:		/* 4.11-4.13: the mm is gone */
		return -ESRCH;
	case ENOTTY:		/* ioctl unknown to this kernel */
		return -EOPNOTSUPP;
	default:
		return -err;
	}
}

int fl_uffd_copy(int uffd, void *dst, const void *src, size_t len, unsigned flags, size_t *ret_done)
{
	uint64_t mode = 0;
	if (ret_done)
		*ret_done = 0;
	if (flags & ~(FL_DONTWAKE | FL_MODE_WP))
		return -EINVAL;
	if (flags & FL_DONTWAKE)
		mode |= UFFDIO_COPY_MODE_DONTWAKE;
	if (flags & FL_MODE_WP)
		mode |= UFFDIO_COPY_MODE_WP;
	return resolve_range(uffd, OP_COPY, (uintptr_t)dst, (uintptr_t)src, len, mode, ret_done);
}

int fl_uffd_zeropage(int uffd, void *dst, size_t len, unsigned flags, size_t *ret_done)
{
	if (ret_done)
		*ret_done = 0;
	if (flags & ~FL_DONTWAKE)
		return -EINVAL;
	return resolve_range(uffd, OP_ZEROPAGE, (uintptr_t)dst, 0, len,
			     (flags & FL_DONTWAKE) ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0, ret_done);
}

int fl_uffd_continue(int uffd, void *dst, size_t len, unsigned flags, size_t *ret_done)
{
	uint64_t mode = 0;
	int r;
	if (ret_done)
		*ret_done = 0;
	if (flags & ~(FL_DONTWAKE | FL_MODE_WP))
		return -EINVAL;
	if (flags & FL_DONTWAKE)
		mode |= UFFDIO_CONTINUE_MODE_DONTWAKE;
	if (flags & FL_MODE_WP) {
		if (fl_features_masked() & FL_FEATURE_BIT(FL_FEATURE_CONTINUE_MODE_WP))
			return -EOPNOTSUPP;
		mode |= UFFDIO_CONTINUE_MODE_WP;
	}
	r = resolve_range(uffd, OP_CONTINUE, (uintptr_t)dst, 0, len, mode, ret_done);
	/* Before 6.4 the kernel rejects the mode bit with EINVAL: that is
	 * "the kernel lacks this", which faultline spells -EOPNOTSUPP. */
	if (r == -EINVAL && (flags & FL_MODE_WP) && !fl_feature_has(FL_FEATURE_CONTINUE_MODE_WP))
		r = -EOPNOTSUPP;
	return r;
}

int fl_uffd_poison(int uffd, void *dst, size_t len, unsigned flags, size_t *ret_done)
{
	if (ret_done)
		*ret_done = 0;
	if (flags & ~FL_DONTWAKE)
		return -EINVAL;
	if (fl_features_masked() & (FL_FEATURE_BIT(FL_FEATURE_POISON) | FL_FEATURE_BIT(FL_FEATURE_IOCTL_POISON))) {
		if (ret_done)
			*ret_done = 0;
		return -EOPNOTSUPP;
	}
	return resolve_range(uffd, OP_POISON, (uintptr_t)dst, 0, len,
			     (flags & FL_DONTWAKE) ? UFFDIO_POISON_MODE_DONTWAKE : 0, ret_done);
}

/*
 * Poison [start, end) in as few ioctls as the kernel allows: a page found
 * present (EEXIST) or no longer mapped (ENOENT) is skipped, the rest of the
 * run goes on in one call. hugetlbfs takes huge pages only: an unaligned
 * start there (after a present huge page) moves to the next huge page.
 */
int fl__uffd_poison_run(int uffd, uint64_t start, uint64_t end, int64_t *total)
{
	uint64_t psz = FL_PAGE_SIZE;

	while (start < end) {
		size_t done = 0;
		int r = fl_uffd_poison(uffd, (void *)(uintptr_t)start, end - start, 0, &done);
		*total += (int64_t)(done / psz);
		start += done;
		if (r == 0)
			break;
		if (r == -EINVAL && psz == FL_PAGE_SIZE && end % FL_HPAGE_SIZE == 0) {
			/* hugetlbfs takes huge pages only; an unaligned start is
			 * inside a huge page just found present (EEXIST). */
			psz = FL_HPAGE_SIZE;
			start = (start + FL_HPAGE_SIZE - 1) & ~(uint64_t)(FL_HPAGE_SIZE - 1);
			continue;
		}
		/* EEXIST: present. ENOENT: no longer mapped here (munmap,
		 * mremap): nothing there can read zeros. Skip the page. */
		if (r != -EEXIST && r != -ENOENT)
			return r;
		start += psz;
	}
	return 0;
}

int fl_uffd_move(int uffd, void *dst, void *src, size_t len, unsigned flags, size_t *ret_done)
{
	uint64_t mode = 0;
	if (ret_done)
		*ret_done = 0;
	if (flags & ~(FL_DONTWAKE | FL_ALLOW_SRC_HOLES))
		return -EINVAL;
	if (fl_features_masked() & (FL_FEATURE_BIT(FL_FEATURE_MOVE) | FL_FEATURE_BIT(FL_FEATURE_IOCTL_MOVE))) {
		if (ret_done)
			*ret_done = 0;
		return -EOPNOTSUPP;
	}
	if (flags & FL_DONTWAKE)
		mode |= UFFDIO_MOVE_MODE_DONTWAKE;
	if (flags & FL_ALLOW_SRC_HOLES)
		mode |= UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES;
	return resolve_range(uffd, OP_MOVE, (uintptr_t)dst, (uintptr_t)src, len, mode, ret_done);
}

int fl_uffd_writeprotect(int uffd, void *addr, size_t len, unsigned flags)
{
	struct uffdio_writeprotect wp = { .range = { (uintptr_t)addr, len } };
	if (flags & ~(FL_WP_PROTECT | FL_DONTWAKE))
		return -EINVAL;
	if (flags & FL_WP_PROTECT)
		wp.mode |= UFFDIO_WRITEPROTECT_MODE_WP;
	if (flags & FL_DONTWAKE)
		wp.mode |= UFFDIO_WRITEPROTECT_MODE_DONTWAKE;
	/* WRITEPROTECT has no progress field: EAGAIN means the mm is changing
	 * (an event is queued); the caller processes events and retries. */
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp)) {
		int e = errno;
		return e == ENOTTY ? -EOPNOTSUPP : e == ENOSPC ? -ESRCH : -e;
	}
	return 0;
}

int fl_uffd_wake(int uffd, void *addr, size_t len)
{
	struct uffdio_range range = { (uintptr_t)addr, len };
	return ioctl(uffd, UFFDIO_WAKE, &range) ? -errno : 0;
}

int fl_uffd_read(int uffd, struct uffd_msg *msgs, unsigned max)
{
	ssize_t n;
	if (!max)
		return -EINVAL;
	n = read(uffd, msgs, (size_t)max * sizeof(*msgs));
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	if ((size_t)n % sizeof(*msgs))
		return -EIO;
	return (int)((size_t)n / sizeof(*msgs));
}

const char *fl_msg_event_name(const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT: return "pagefault";
	case UFFD_EVENT_FORK: return "fork";
	case UFFD_EVENT_REMAP: return "remap";
	case UFFD_EVENT_REMOVE: return "remove";
	case UFFD_EVENT_UNMAP: return "unmap";
	}
	return "unknown";
}
