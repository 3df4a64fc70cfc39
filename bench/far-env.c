// SPDX-License-Identifier: LGPL-2.1-or-later
/* bench far's O_DIRECT store, memory cgroups and cache dropping (far-env.h). */
#include "far-env.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096u
#define CG_ROOT "/sys/fs/cgroup/memory"

/* ---- the O_DIRECT file store ------------------------------------------------ */

static int direct_io(struct far_direct_store *d, void *buf, size_t len, uint64_t off, bool write)
{
	void *bounce;
	int r;

	if (((uintptr_t)buf | len | off) % PAGE == 0)
		return write ? fl__pwrite_full(d->fd, buf, len, off) : fl__pread_full(d->fd, buf, len, off);
	/* Unaligned: whole pages around the request, through a bounce buffer. */
	{
		uint64_t a = off / PAGE * PAGE, e = (off + len + PAGE - 1) / PAGE * PAGE;
		if (posix_memalign(&bounce, PAGE, e - a))
			return -ENOMEM;
		atomic_fetch_add(&d->bounced, 1);
		/* A write of whole pages from an unaligned buffer reads nothing. */
		r = write && a == off && e == off + len ? 0 : fl__pread_full(d->fd, bounce, e - a, a);
		if (!r && write) {
			memcpy((uint8_t *)bounce + (off - a), buf, len);
			r = fl__pwrite_full(d->fd, bounce, e - a, a);
		} else if (!r) {
			memcpy(buf, (uint8_t *)bounce + (off - a), len);
		}
		free(bounce);
	}
	return r;
}

static int direct_read(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	int err = 0;
	for (unsigned i = 0; i < n; i++) {
		iov[i].result = direct_io(ctx, iov[i].buf, iov[i].len, iov[i].offset, false);
		if (iov[i].result && !err)
			err = iov[i].result;
	}
	return err;
}

/* Each request gets its result (fl_store_write(3)). */
static int direct_write(void *ctx, struct fl_store_iov *iov, unsigned n)
{
	int err = 0;
	for (unsigned i = 0; i < n; i++) {
		iov[i].result = direct_io(ctx, iov[i].buf, iov[i].len, iov[i].offset, true);
		if (iov[i].result && !err)
			err = iov[i].result;
	}
	return err;
}

static int direct_flush(void *ctx)
{
	struct far_direct_store *d = ctx;
	return fl__fdatasync(d->fd);
}

const struct fl_store_ops far_direct_ops = {
	.sz = sizeof(struct fl_store_ops),
	.version = FL_STORE_OPS_VERSION,
	.name = "file-direct",
	.read = direct_read,
	.write = direct_write,
	.flush = direct_flush,
};

/* ---- memory cgroups (v1) -------------------------------------------------- */

static int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static uint64_t read_u64_file(const char *path)
{
	FILE *f = fopen(path, "re");
	unsigned long long v = 0;
	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

bool far_memcg_usable(void)
{
	return access(CG_ROOT "/memory.limit_in_bytes", F_OK) == 0 && access(CG_ROOT, W_OK) == 0;
}

int far_memcg_create(char *cg, size_t len, pid_t owner, unsigned serial, uint64_t limit, int *ret_slot)
{
	char path[300], val[32];
	int slot;

	snprintf(cg, len, CG_ROOT "/faultline-bench-%d-%u", (int)owner, serial);
	cleanup_block();
	if (mkdir(cg, 0755) && errno != EEXIST) {
		int e = -errno;
		cleanup_unblock();
		cg[0] = '\0';
		return e;
	}
	/* Interrupted: the child is killed, then the cgroup removed. */
	slot = cleanup_add_dir(cg);
	cleanup_unblock();
	snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", cg);
	snprintf(val, sizeof(val), "%llu", (unsigned long long)limit);
	if (write_file(path, val)) {
		rmdir(cg);
		cleanup_drop(slot);
		cg[0] = '\0';
		return -EIO;
	}
	*ret_slot = slot;
	return 0;
}

int far_memcg_join(const char *cg)
{
	char path[300], val[32];

	snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
	snprintf(val, sizeof(val), "%d", (int)getpid());
	return write_file(path, val);
}

uint64_t far_memcg_usage(const char *cg)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/memory.usage_in_bytes", cg);
	return read_u64_file(path);
}

void far_memcg_remove(const char *cg, int slot, uint64_t *ret_peak, uint64_t *ret_failcnt)
{
	char path[300];

	if (ret_peak) {
		snprintf(path, sizeof(path), "%s/memory.max_usage_in_bytes", cg);
		*ret_peak = read_u64_file(path);
	}
	if (ret_failcnt) {
		snprintf(path, sizeof(path), "%s/memory.failcnt", cg);
		*ret_failcnt = read_u64_file(path);
	}
	/* v1 removes a cgroup with only page cache charged (moved to the
	 * parent); a task that just exited may take a moment to leave. */
	for (int i = 0; i < 100 && rmdir(cg) && errno == EBUSY; i++)
		usleep(10000);
	cleanup_drop(slot);
}

void far_memcg_remove_stale(void)
{
	DIR *d = opendir(CG_ROOT);
	struct dirent *de;

	while (d && (de = readdir(d))) {
		char path[300];
		unsigned n;
		int pid;
		if (sscanf(de->d_name, "faultline-bench-%d-%u", &pid, &n) != 2 || pid <= 0 ||
		    kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), CG_ROOT "/%s", de->d_name);
		rmdir(path);
	}
	if (d)
		closedir(d);
}

/* ---- caches --------------------------------------------------------------- */

void far_drop_cache(const char *path, bool root)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	if (root)
		write_file("/proc/sys/vm/drop_caches", "1");
}
