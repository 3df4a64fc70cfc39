// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Far memory: which resident page to evict next (FIFO, 2Q).
 *
 * userfaultfd shows us first touches, first writes after a write-back
 * (write-protect faults) and fills of pages evicted before; it never shows
 * a read hit. So the policy works on those events only, each O(1):
 *
 *  FIFO  pages leave in the order they came in.
 *  2Q    a new page goes to a probation FIFO (A1in, a quarter of the
 *        budget). A page filled again while its eviction is still in the
 *        ghost history (A1out, the last budget/2 evictions) was evicted
 *        too early: it goes to the protected queue (Am), evicted in CLOCK
 *        order (a referenced page gets a second chance). A first write
 *        sets a page's referenced bit; an A1in page referenced when it
 *        reaches the head is promoted instead of evicted.
 *
 * Pages advised cold (FL_ADVISE_COLD, pages behind a sequential reader)
 * wait in a list of their own, evicted before anything else.
 *
 * Sampling (MINOR regions, fl__far_policy_sample()): a page's mapping can
 * be zapped while the page cache keeps it, and its next access is a MINOR
 * fault: an access bit we can clear. Then a page enters Am referenced,
 * and the CLOCK hand that gives a page its second chance also hands it to
 * far.c to zap: if it is not touched again before the hand comes back,
 * it goes.
 *
 * Not thread-safe: far.c holds its policy lock around every call.
 */
#include "region-internal.h"

#include <stdlib.h>

#define NIL UINT32_MAX

enum { Q_NONE, Q_COLD, Q_A1IN, Q_AM, Q_COUNT };

struct queue {
	uint32_t head, tail;
	uint64_t n;
};

struct fl__far_policy {
	enum fl_evict_policy kind;
	uint64_t npages;
	uint64_t a1in_max;		/* A1in's share of the budget */
	uint32_t ghost_cap;		/* evictions A1out remembers */
	uint32_t *next, *prev;		/* intrusive lists, per page */
	uint8_t *where;			/* Q_* */
	uint8_t *ref;			/* referenced since queued (2Q) */
	uint32_t *ghost;		/* eviction sequence number; 0: never */
	uint32_t ghost_seq;
	struct queue q[Q_COUNT];
	/* sampling: pages given a second chance, for far.c to zap */
	uint64_t *samples;
	size_t nsamples, samples_cap;
};

static void q_push(struct fl__far_policy *p, int qi, uint32_t x)
{
	struct queue *q = &p->q[qi];

	p->where[x] = (uint8_t)qi;
	p->next[x] = NIL;
	p->prev[x] = q->tail;
	if (q->tail != NIL)
		p->next[q->tail] = x;
	else
		q->head = x;
	q->tail = x;
	q->n++;
}

static void q_unlink(struct fl__far_policy *p, uint32_t x)
{
	struct queue *q = &p->q[p->where[x]];

	if (p->prev[x] != NIL)
		p->next[p->prev[x]] = p->next[x];
	else
		q->head = p->next[x];
	if (p->next[x] != NIL)
		p->prev[p->next[x]] = p->prev[x];
	else
		q->tail = p->prev[x];
	q->n--;
	p->where[x] = Q_NONE;
}

struct fl__far_policy *fl__far_policy_new(uint64_t npages, uint64_t budget, enum fl_evict_policy kind)
{
	struct fl__far_policy *p;

	if (npages >= NIL)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->kind = kind == FL_EVICT_AUTO ? FL_EVICT_2Q : kind;
	p->npages = npages;
	p->a1in_max = budget / 4 ? budget / 4 : 1;
	p->ghost_cap = (uint32_t)FL_MIN(budget / 2 ? budget / 2 : 1, NIL / 2);
	p->next = malloc(npages * sizeof(*p->next));
	p->prev = malloc(npages * sizeof(*p->prev));
	p->where = calloc(npages, 1);
	p->ref = calloc(npages, 1);
	p->ghost = calloc(npages, sizeof(*p->ghost));
	if (!p->next || !p->prev || !p->where || !p->ref || !p->ghost) {
		fl__far_policy_free(p);
		return NULL;
	}
	for (int i = 0; i < Q_COUNT; i++)
		p->q[i] = (struct queue){ NIL, NIL, 0 };
	p->ghost_seq = 1;
	return p;
}

void fl__far_policy_free(struct fl__far_policy *p)
{
	if (!p)
		return;
	free(p->next);
	free(p->prev);
	free(p->where);
	free(p->ref);
	free(p->ghost);
	free(p->samples);
	free(p);
}

static bool in_ghost(const struct fl__far_policy *p, uint32_t x)
{
	return p->ghost[x] && p->ghost_seq - p->ghost[x] <= p->ghost_cap;
}

void fl__far_policy_insert(struct fl__far_policy *p, uint64_t page, bool hot)
{
	uint32_t x = (uint32_t)page;

	if (page >= p->npages)
		return;
	if (p->where[x] != Q_NONE) {
		p->ref[x] = 1;
		return;
	}
	p->ref[x] = 0;
	if (p->kind == FL_EVICT_2Q && (hot || in_ghost(p, x))) {
		p->ghost[x] = 0;
		p->ref[x] = p->samples != NULL;	/* just used: its access bit is set */
		q_push(p, Q_AM, x);
	} else {
		q_push(p, Q_A1IN, x);
	}
}

void fl__far_policy_touch(struct fl__far_policy *p, uint64_t page)
{
	if (page < p->npages && p->where[page] != Q_NONE)
		p->ref[page] = 1;
}

void fl__far_policy_remove(struct fl__far_policy *p, uint64_t page)
{
	if (page < p->npages && p->where[page] != Q_NONE)
		q_unlink(p, (uint32_t)page);
}

void fl__far_policy_cold(struct fl__far_policy *p, uint64_t page)
{
	if (page >= p->npages || p->where[page] == Q_NONE || p->where[page] == Q_COLD)
		return;
	q_unlink(p, (uint32_t)page);
	p->ref[page] = 0;
	q_push(p, Q_COLD, (uint32_t)page);
}

void fl__far_policy_evicted(struct fl__far_policy *p, uint64_t page)
{
	if (page >= p->npages)
		return;
	if (++p->ghost_seq == 0)
		p->ghost_seq = 1;	/* wrapped: a stale entry may look recent once, harmless */
	p->ghost[page] = p->ghost_seq;
}

uint64_t fl__far_policy_victim(struct fl__far_policy *p)
{
	uint32_t x;

	if (p->q[Q_COLD].n) {
		x = p->q[Q_COLD].head;
		q_unlink(p, x);
		return x;
	}
	if (p->kind == FL_EVICT_FIFO) {
		x = p->q[Q_A1IN].head;
		if (x == NIL)
			return UINT64_MAX;
		q_unlink(p, x);
		return x;
	}
	/* Each turn either returns or clears a referenced bit: it ends
	 * within two passes over the queues. */
	for (;;) {
		bool from_a1in = p->q[Q_A1IN].n && (p->q[Q_A1IN].n > p->a1in_max || !p->q[Q_AM].n);

		if (from_a1in) {
			x = p->q[Q_A1IN].head;
			q_unlink(p, x);
			if (p->ref[x]) {
				/* Used again while on probation: protect it. */
				p->ref[x] = 0;
				q_push(p, Q_AM, x);
				continue;
			}
			return x;
		}
		x = p->q[Q_AM].head;
		if (x == NIL)
			return UINT64_MAX;
		q_unlink(p, x);
		if (p->ref[x]) {
			p->ref[x] = 0;
			q_push(p, Q_AM, x);
			if (p->samples && p->nsamples < p->samples_cap)
				p->samples[p->nsamples++] = x;	/* clear its access bit */
			continue;
		}
		return x;
	}
}

int fl__far_policy_sample(struct fl__far_policy *p, size_t cap)
{
	if (p->kind != FL_EVICT_2Q || !cap)
		return 0;
	p->samples = calloc(cap, sizeof(*p->samples));
	if (!p->samples)
		return -ENOMEM;
	p->samples_cap = cap;
	return 0;
}

size_t fl__far_policy_take_samples(struct fl__far_policy *p, uint64_t *out, size_t max)
{
	size_t n = FL_MIN(p->nsamples, max);

	if (n)
		memcpy(out, p->samples, n * sizeof(*out));
	p->nsamples = 0;
	return n;
}
