// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Lock-free latency histogram: log2-linear buckets (8 sub-buckets per power
 * of two), so p50/p99 are within 12.5 % from 1 ns to hours, with relaxed
 * atomics only (handler threads add concurrently).
 */
#include "flutil.h"

#define SUB 8

static unsigned bucket_of(uint64_t ns)
{
	unsigned lg, sub, b;
	if (ns < SUB)
		return (unsigned)ns;
	lg = 63u - (unsigned)__builtin_clzll(ns);
	sub = (unsigned)(ns >> (lg - 3)) & (SUB - 1);
	b = (lg - 2) * SUB + sub;
	return b < FL_LAT_BUCKETS ? b : FL_LAT_BUCKETS - 1;
}

uint64_t fl__hist_bucket_upper(unsigned b)
{
	unsigned lg, sub;
	if (b < SUB)
		return b;
	lg = b / SUB + 2;
	sub = b % SUB;
	return ((uint64_t)(SUB + sub + 1) << (lg - 3)) - 1;
}

void fl__hist_add(struct fl__hist *h, uint64_t ns)
{
	uint64_t m;
	atomic_fetch_add_explicit(&h->bucket[bucket_of(ns)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, ns, memory_order_relaxed);
	m = atomic_load_explicit(&h->max, memory_order_relaxed);
	while (ns > m && !atomic_compare_exchange_weak_explicit(&h->max, &m, ns,
			memory_order_relaxed, memory_order_relaxed))
		;
}

uint64_t fl__hist_quantile(const struct fl__hist *h, double q)
{
	uint64_t total = atomic_load_explicit(&h->count, memory_order_relaxed);
	uint64_t want, seen = 0, max;
	if (!total)
		return 0;
	want = (uint64_t)(q * (double)total);
	if (want >= total)
		want = total - 1;
	max = atomic_load_explicit(&h->max, memory_order_relaxed);
	for (unsigned b = 0; b < FL_LAT_BUCKETS; b++) {
		seen += atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
		if (seen > want) {
			uint64_t up = fl__hist_bucket_upper(b);
			return up < max ? up : max;
		}
	}
	return max;
}

void fl__hist_merge(struct fl__hist *dst, const struct fl__hist *src)
{
	uint64_t m = atomic_load_explicit(&src->max, memory_order_relaxed);

	for (unsigned b = 0; b < FL_LAT_BUCKETS; b++)
		atomic_fetch_add_explicit(&dst->bucket[b], atomic_load_explicit(&src->bucket[b], memory_order_relaxed),
					  memory_order_relaxed);
	atomic_fetch_add_explicit(&dst->count, atomic_load_explicit(&src->count, memory_order_relaxed),
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&dst->sum, atomic_load_explicit(&src->sum, memory_order_relaxed),
				  memory_order_relaxed);
	if (m > atomic_load_explicit(&dst->max, memory_order_relaxed))
		atomic_store_explicit(&dst->max, m, memory_order_relaxed);
}
