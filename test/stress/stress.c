// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Stress, in the spirit of the kernel's uffd-stress: 8 threads bounce
 * 16384 lazily served pages between them, each incrementing its own counter
 * in every page, while the background filler and prefetch race the demand
 * faults. Every round re-creates the region from a store image of the
 * previous round's memory, so every page goes through a lazy fault (or the
 * filler) again, and the counters must come out exact: each thread checks
 * its counter before every increment, and all counters and the rest of every
 * page are checked after every round.
 */
#include "util.h"

#define NPAGES 16384
#define LEN ((size_t)NPAGES * U_PAGE)
#define NTHREADS 8
#define SLOTS 16		/* counters at the start of every page */
#define HDR (SLOTS * sizeof(uint64_t))
#define ROUNDS 5
#define PASSES 3

struct scfg {
	struct u_cfg mem;
	enum fl_placement placement;
	unsigned ethreads;
	unsigned rflags;
};

struct worker {
	pthread_t tid;
	unsigned id, round;
	uint8_t *base;
	const uint8_t *image0;
	pthread_barrier_t *bar;
	unsigned seed;
	long bad_count, bad_tail;	/* first bad page, or -1 */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint32_t *perm = u_perm(NPAGES, U_RANDOM, w->seed);

	w->bad_count = w->bad_tail = -1;
	pthread_barrier_wait(w->bar);
	for (unsigned pass = 0; pass < PASSES; pass++) {
		uint64_t want = (uint64_t)(w->round - 1) * PASSES + pass;
		for (size_t i = 0; i < NPAGES; i++) {
			size_t p = perm[i];
			uint8_t *page = w->base + p * U_PAGE;
			volatile uint64_t *ctr = (volatile uint64_t *)(void *)page + w->id;
			if (*ctr != want && w->bad_count < 0)
				w->bad_count = (long)p;
			*ctr = *ctr + 1;
			/* On the first touch this round, the page came lazily from the image. */
			if (pass == 0 && w->bad_tail < 0 &&
			    memcmp(page + HDR, w->image0 + p * U_PAGE + HDR, U_PAGE - HDR) != 0)
				w->bad_tail = (long)p;
		}
		u_shuffle(perm, NPAGES, &w->seed);
	}
	free(perm);
	return NULL;
}

static int c_stress(void *arg)
{
	const struct scfg *sc = arg;
	struct fl_engine_opts eo = { .sz = sizeof(eo), .threads = sc->ethreads, .placement = sc->placement };
	struct fl_engine *e;
	uint8_t *image0, *image;
	uint64_t t_start = t_now_ns();

	u_require_cfg(&sc->mem, LEN);
	e = u_engine_opts(&eo);
	/* Round 0's image: zero counters, a pattern after them, every 16th page all zeros. */
	image0 = u_image(LEN, 0, 0x57e55);
	for (size_t p = 0; p < NPAGES; p++) {
		if (p % 16 == 5)
			memset(image0 + p * U_PAGE, 0, U_PAGE);
		else
			memset(image0 + p * U_PAGE, 0, HDR);
	}
	image = u_image(LEN, 0, 0);
	memcpy(image, image0, LEN);

	for (unsigned round = 1; round <= ROUNDS; round++) {
		struct fl_store *store = u_mem_store(image, LEN);
		struct fl_region_opts ro = u_ropts(&sc->mem, LEN, store, FL_REGION_BACKGROUND | sc->rflags);
		struct fl_region *r;
		struct fl_region_stats st;
		struct worker w[NTHREADS];
		pthread_barrier_t bar;
		uint8_t *base, *next;

		ro.fill_batch = 64;
		r = u_region_opts(e, &ro);
		base = fl_region_addr(r);
		pthread_barrier_init(&bar, NULL, NTHREADS);
		for (unsigned i = 0; i < NTHREADS; i++) {
			w[i] = (struct worker){ .id = i, .round = round, .base = base, .image0 = image0,
						.bar = &bar, .seed = round * 1000u + i };
			T_ASSERT(pthread_create(&w[i].tid, NULL, worker_main, &w[i]) == 0);
		}
		for (unsigned i = 0; i < NTHREADS; i++)
			pthread_join(w[i].tid, NULL);
		pthread_barrier_destroy(&bar);
		for (unsigned i = 0; i < NTHREADS; i++) {
			T_ASSERT(w[i].bad_count < 0, "round %u thread %u: page %ld had a wrong counter", round, i,
				 w[i].bad_count);
			T_ASSERT(w[i].bad_tail < 0, "round %u thread %u: page %ld served wrong bytes", round, i,
				 w[i].bad_tail);
		}
		/* Every counter exact, every byte after them intact. */
		for (size_t p = 0; p < NPAGES; p++) {
			const uint64_t *ctr = (const uint64_t *)(const void *)(base + p * U_PAGE);
			for (unsigned k = 0; k < SLOTS; k++) {
				uint64_t want = k < NTHREADS ? (uint64_t)round * PASSES : 0;
				T_ASSERT(ctr[k] == want, "round %u page %zu slot %u: %llu, want %llu", round, p, k,
					 (unsigned long long)ctr[k], (unsigned long long)want);
			}
			T_ASSERT(memcmp(base + p * U_PAGE + HDR, image0 + p * U_PAGE + HDR, U_PAGE - HDR) == 0,
				 "round %u page %zu: bytes after the counters differ", round, p);
		}
		st = u_rstats_settled(r);
		u_log_rstats(sc->mem.name, &st);
		T_ASSERT_EQ(fl_region_resolved_pages(r), NPAGES);
		T_ASSERT_EQ(st.pages_poisoned, 0);
		T_ASSERT_EQ(st.store_errors, 0);
		T_ASSERT_EQ(st.lat_count, u_faults(&st));
		/* The next round starts from this round's memory. */
		next = u_image(LEN, 0, 0);
		memcpy(next, base, LEN);
		fl_region_free(r);
		fl_store_unref(store);
		munmap(image, LEN);
		image = next;
	}
	t_log("%s: %u rounds in %.1f s", sc->mem.name, ROUNDS, (double)(t_now_ns() - t_start) / 1e9);
	munmap(image, LEN);
	munmap(image0, LEN);
	fl_engine_free(e);
	return T_PASS;
}

static const struct scfg s_anon = { { "anon-missing", FL_MEM_ANON, FL_MODE_MISSING }, FL_PLACE_ANY, 2, 0 };
static const struct scfg s_shmem = { { "shmem-missing", FL_MEM_SHMEM, FL_MODE_MISSING }, FL_PLACE_ANY, 2, 0 };
static const struct scfg s_minor = { { "shmem-minor", FL_MEM_SHMEM, FL_MODE_MINOR }, FL_PLACE_ANY, 2, 0 };
static const struct scfg s_percpu = { { "anon-per-cpu", FL_MEM_ANON, FL_MODE_MISSING }, FL_PLACE_PER_CPU, 0, 0 };
static const struct scfg s_noprefetch = { { "anon-no-prefetch", FL_MEM_ANON, FL_MODE_MISSING }, FL_PLACE_ANY, 3,
					  FL_REGION_NO_PREFETCH };

static const struct t_case cases[] = {
	{ "anon", c_stress, (void *)&s_anon, 120 },
	{ "shmem", c_stress, (void *)&s_shmem, 120, U_NEEDS_SHMEM },
	{ "shmem-minor", c_stress, (void *)&s_minor, 120, U_NEEDS_SHMEM_MINOR },
	{ "anon-per-cpu", c_stress, (void *)&s_percpu, 120 },
	{ "anon-no-prefetch-3handlers", c_stress, (void *)&s_noprefetch, 120 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
