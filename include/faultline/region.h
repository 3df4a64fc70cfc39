/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Lazy regions: a range of memory whose missing pages come from a store on
 * first touch.
 *
 * A region's memory is anonymous (MAP_PRIVATE|MAP_ANONYMOUS), shmem (a memfd
 * mapped MAP_SHARED), or hugetlbfs (a MFD_HUGETLB memfd; needs reserved huge
 * pages). MISSING regions are resolved with UFFDIO_COPY (ZEROPAGE for runs
 * of 16 or more zero source pages, or a request that is all zeros: a short
 * zero run inside data is cheaper to copy than to split into ioctls); MINOR regions (shmem and hugetlbfs only) fill the memfd's
 * page cache atomically through a private alias mapping and map it with
 * UFFDIO_CONTINUE.
 *
 * Fail closed: a page that cannot be delivered (store error, range beyond
 * the store) is poisoned with UFFDIO_POISON so the faulting access gets
 * SIGBUS; without POISON the faulting thread is sent SIGBUS with tgkill(2).
 * A region is never filled with zeros that the store did not say are zeros.
 */
#ifndef FAULTLINE_REGION_H
#define FAULTLINE_REGION_H

#include <faultline/common.h>
#include <faultline/store.h>
#include <faultline/engine.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fl_region;

enum fl_mem_type {
	FL_MEM_ANON = 0,
	FL_MEM_SHMEM = 1,
	FL_MEM_HUGETLB = 2,
};

enum fl_region_mode {
	FL_MODE_MISSING = 0,	/* register MISSING; resolve with COPY/ZEROPAGE */
	FL_MODE_MINOR = 1,	/* shmem/hugetlb: register MISSING|MINOR; resolve with CONTINUE */
};

/* Region flags. */
#define FL_REGION_NO_PREFETCH	(1u << 0)	/* resolve exactly the faulting page */
#define FL_REGION_BACKGROUND	(1u << 1)	/* background-fill the rest of the region */
#define FL_REGION_PRIVATE	(1u << 2)	/* MINOR: map the memfd MAP_PRIVATE (clones) */
#define FL_REGION_FOREIGN	(1u << 3)	/* memory lives in an adopted space; addr given, not mapped here */
#define FL_REGION_NO_THP	(1u << 4)	/* anon: MADV_NOHUGEPAGE */
#define FL_REGION_MEMFD	(1u << 5)	/* shmem/hugetlb: use opts.memfd instead of creating one */
#define FL_REGION_NO_HUGE_FILL	(1u << 6)	/* anon: no 2 MiB fills by UFFDIO_MOVE (4 KiB COPY only) */
#define FL_REGION_WRITEBACK	(1u << 7)	/* far memory: write dirty pages back to the store */

/*
 * Far memory: which resident pages are evicted first when a region with a
 * resident limit (resident_max) is over its high mark.
 *  - FL_EVICT_AUTO: the measured best, today FL_EVICT_2Q.
 *  - FL_EVICT_FIFO: in the order pages came in (the baseline).
 *  - FL_EVICT_2Q: new pages wait in a FIFO probation queue; a page that
 *    faults again soon after it was evicted (a refault), or that is seen
 *    in use again (a first write, a MINOR re-fault), is promoted to a
 *    protected queue evicted in CLOCK order.
 */
enum fl_evict_policy {
	FL_EVICT_AUTO = 0,
	FL_EVICT_FIFO = 1,
	FL_EVICT_2Q = 2,
};

struct fl_region_opts {
	size_t sz;			/* sizeof(struct fl_region_opts) */
	size_t length;			/* bytes; rounded up to the page (or huge page) size */
	enum fl_mem_type mem;
	enum fl_region_mode mode;
	unsigned flags;			/* FL_REGION_* */
	void *addr;			/* NULL: anywhere; else MAP_FIXED_NOREPLACE (or the foreign address) */
	struct fl_store *store;		/* NULL: a zero store. The region takes a reference. */
	uint64_t store_offset;		/* store byte that backs the region's first byte */
	unsigned prefetch_max;		/* max pages resolved per fault; 0 = 256 (1 MiB) */
	unsigned fill_batch;		/* pages per background-fill step; 0 = 512 (2 MiB) */
	int memfd;			/* with FL_REGION_MEMFD: this memfd's page cache is the memory (dup'ed) */
	int space;			/* FL_REGION_FOREIGN: space id from fl_engine_adopt() */
	const char *name;		/* for logs and stats; copied */
	/*
	 * Far memory (see "Far memory" in fl_region_new(3)). resident_max > 0
	 * bounds the region's resident set: when more than resident_max bytes
	 * are mapped, cold pages are evicted until resident_low is reached.
	 * Clean pages are dropped (the store has them); with
	 * FL_REGION_WRITEBACK dirty pages are written to the store first and
	 * dropped only once the store acknowledged them; without it they stay
	 * resident. A failed write-back keeps the page resident and dirty.
	 * FL_REGION_WRITEBACK without resident_max: write-back (flush,
	 * writeback_rate) without a limit. Needs write-protect faults
	 * (Linux 5.7; shmem/hugetlb 5.19; FL_MODE_MINOR 6.4): -EOPNOTSUPP
	 * without; -EROFS for write-back over a store that cannot write;
	 * -EINVAL with FL_REGION_BACKGROUND/FOREIGN/PRIVATE/MEMFD.
	 */
	uint64_t resident_max;		/* high mark, bytes; 0: no limit (no eviction) */
	uint64_t resident_low;		/* low mark, bytes; 0: resident_max * 7 / 8 */
	uint64_t writeback_rate;	/* background write-back, bytes/s; 0: only on eviction and flush */
	enum fl_evict_policy evict_policy;
};

/*
 * Map the memory (unless FOREIGN), register it with the engine's uffd, and
 * add it to the engine's dispatch index. Returns -EINVAL on bad options
 * (MINOR with anonymous memory, unaligned addr), -ENOMEM when huge pages are
 * not reserved, -EOPNOTSUPP when the kernel lacks the mode for that memory.
 */
FL_API int fl_region_new(struct fl_engine *engine,
			 const struct fl_region_opts *opts,
			 struct fl_region **ret_region);
/*
 * Remove from the engine, unregister and unmap. Pages not yet resolved are
 * simply discarded with the mapping. Must not race with threads touching it.
 */
FL_API struct fl_region *fl_region_free(struct fl_region *region);

FL_API void *fl_region_addr(const struct fl_region *region);
FL_API size_t fl_region_length(const struct fl_region *region);
FL_API size_t fl_region_page_size(const struct fl_region *region);
/* The memfd behind a SHMEM/HUGETLB region (-1 for anonymous). */
FL_API int fl_region_memfd(const struct fl_region *region);

/*
 * Resolve [offset, offset+len) now (as if prefetched), waiting for the
 * store. Pages already present are skipped. Returns 0 or -errno (failed
 * pages are poisoned).
 */
FL_API int fl_region_populate(struct fl_region *region, uint64_t offset,
			      size_t len);
/* Number of pages resolved so far (by faults, prefetch, or the filler). */
FL_API uint64_t fl_region_resolved_pages(const struct fl_region *region);

/*
 * Far memory: write every page that is dirty at the call to the store and
 * make it durable (fl_store_flush()), like msync(MS_SYNC). When it returns
 * 0, the store holds each such page as it was at the call or later. A
 * page whose write fails stays resident and dirty; the first error is
 * returned (-EIO, -ENOSPC, ... from the store). -EOPNOTSUPP: the region
 * was made without FL_REGION_WRITEBACK.
 */
FL_API int fl_region_flush(struct fl_region *region);

/* fl_region_advise() advice (one at a time). */
#define FL_ADVISE_WILLNEED	(1u << 0)	/* bring the range in now */
#define FL_ADVISE_DONTNEED	(1u << 1)	/* evict the range now (writing dirty pages back) */
#define FL_ADVISE_COLD		(1u << 2)	/* evict these first when over the limit */
#define FL_ADVISE_SEQUENTIAL	(1u << 3)	/* read ahead; pages behind the reader are cold */

/*
 * Tell a far-memory region how [offset, offset + len) will be used.
 * Returns 0 or -errno: -EINVAL (range, unknown or several advice bits),
 * -EOPNOTSUPP (not a far-memory region), -EDEADLK (DONTNEED on an
 * anonymous region of an embedded engine), an error from the store for
 * WILLNEED/DONTNEED (pages that could not be written back stay resident).
 * Thread-safe; WILLNEED and DONTNEED wait for a write-back in flight.
 */
FL_API int fl_region_advise(struct fl_region *region, uint64_t offset, size_t len,
			    unsigned advice);


struct fl_region_stats {
	size_t sz;			/* sizeof(struct fl_region_stats) */
	/* faults by kind */
	uint64_t faults_read;		/* MISSING, read access */
	uint64_t faults_write;		/* MISSING, write access */
	uint64_t faults_minor;
	uint64_t faults_wp;		/* a tracking clone's first writes (fl_clone_reset(3)) */
	/* pages by resolve method */
	uint64_t pages_copy;		/* installed holding store data */
	uint64_t pages_zero;		/* installed holding zeros (ZEROPAGE, or copied with
					 * data around them, or copied alone from a memory
					 * store; hugetlb: COPY of zeros) */
	uint64_t pages_continue;	/* MINOR: mapped with UFFDIO_CONTINUE (data came in
					 * through pages_copy/pages_zero into the page cache) */
	uint64_t pages_prefetch;	/* resolved ahead of the faulting page */
	uint64_t pages_background;	/* resolved by the background filler */
	uint64_t pages_poisoned;	/* failed closed */
	uint64_t pages_exist;		/* EEXIST: someone else resolved first */
	uint64_t bytes_read;		/* bytes the store delivered (not ranges it
					 * reported as zeros) */
	uint64_t store_errors;
	/* service latency: message read to resolve, nanoseconds */
	uint64_t lat_count;
	uint64_t lat_p50_ns, lat_p99_ns, lat_max_ns;
	/* sum of service latency over faults: time faulting threads spent blocked
	 * after the handler saw the fault (the kernel queueing before the read
	 * is not visible to userspace) */
	uint64_t blocked_ns;
	uint64_t pages_replayed;	/* installed by a working-set replay (fl_region_replay(3)) */
	/* huge fills (anonymous regions, UFFDIO_MOVE) */
	uint64_t huge_moves;		/* 2 MiB chunks moved in as one huge page (PMD) */
	uint64_t pages_moved;		/* 4 KiB pages moved in one by one */
	/* far memory (resident_max) */
	uint64_t resident_pages;	/* mapped now (every region: fl_region_resolved_pages()) */
	uint64_t resident_peak;		/* most pages mapped at once */
	uint64_t dirty_pages;		/* written since their last write-back */
	uint64_t pages_evicted_clean;	/* dropped without a write (the store had them) */
	uint64_t pages_evicted_dirty;	/* written back, then dropped */
	uint64_t pages_written_back;	/* page writes the store acknowledged */
	uint64_t bytes_written;
	uint64_t writeback_errors;	/* page writes that failed: those pages stayed resident */
	uint64_t refaults;		/* faults on pages evicted before */
};
FL_API int fl_region_stats(const struct fl_region *region,
			   struct fl_region_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
