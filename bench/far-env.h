/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench far's surroundings (bench/far-env.c): the O_DIRECT file store its
 * far regions read from, memory cgroups (v1) for each side, and dropping a
 * file's page cache.
 */
#ifndef FL_BENCH_FAR_ENV_H
#define FL_BENCH_FAR_ENV_H

#include <faultline/store.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The library's file store reads with pread(2) through the page cache, which
 * would grow a second cache beside the region (charged to the same cgroup).
 * This store's context is a file opened O_DIRECT (fd, owned by the caller);
 * a request whose buffer, offset or length is not 4 KiB-aligned goes through
 * an aligned bounce buffer, counted in `bounced`. Writes and flush
 * (fdatasync) too; no destroy op: the caller frees the context after the
 * store's last reference.
 */
struct far_direct_store {
	int fd;
	_Atomic uint64_t bounced;
};
extern const struct fl_store_ops far_direct_ops;

/* The cgroup v1 memory controller is there and this process may make
 * cgroups in it. */
bool far_memcg_usable(void);
/*
 * Make <root>/faultline-bench-<owner>-<serial> with memory.limit_in_bytes =
 * limit, registered for cleanup (util.h; *ret_slot), its path in cg.
 * 0 or -errno.
 */
int far_memcg_create(char *cg, size_t len, pid_t owner, unsigned serial, uint64_t limit, int *ret_slot);
/* Move the calling process into cg. 0 or -errno. */
int far_memcg_join(const char *cg);
/* Its memory.usage_in_bytes now (0 when unreadable). */
uint64_t far_memcg_usage(const char *cg);
/* Read its peak usage and failure count (either may be NULL), then remove
 * it (retrying while a task that just exited leaves) and drop the slot. */
void far_memcg_remove(const char *cg, int slot, uint64_t *ret_peak, uint64_t *ret_failcnt);
/*
 * Cgroups of benchmarks that were interrupted: the cleanup handler kills
 * the child and removes its cgroup at once, which fails while the killed
 * child is still leaving. Removed by the next run, when the process named
 * in the cgroup's name is gone.
 */
void far_memcg_remove_stale(void);

/* The file's pages out of the page cache (fdatasync, POSIX_FADV_DONTNEED),
 * and every clean page of the machine (drop_caches) when root. */
void far_drop_cache(const char *path, bool root);

#endif
