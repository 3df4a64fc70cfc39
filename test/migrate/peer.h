/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A migration between two processes, shared by the cases of options.c
 * (loopback) and netns.c (a veth pair between network namespaces): the
 * source process maps the memory, keeps 4 writer threads writing per-block
 * counters until quiesce, and sends a hash of every block taken at the
 * pause instant as the application blob; the destination (the calling
 * process) checks its memory against that instant, block by block, with
 * the application reading it while pages still arrive.
 */
#ifndef FL_TEST_MIGRATE_PEER_H
#define FL_TEST_MIGRATE_PEER_H

#include "harness.h"

#define MIG_BLK		4096u		/* the writers' unit, in every memory type */
#define MIG_WRITERS	4
#define MIG_MIXED	3		/* mig_case.mem: one anon, one shmem, one hugetlb range */
/* Where PLACE_RELOCATE puts a range: this far above the source's address. */
#define MIG_RELOCATE	(1ull << 40)

enum mig_place {
	PLACE_SAME,		/* no place callback: the source's addresses */
	PLACE_RELOCATE,		/* every range MIG_RELOCATE higher */
	PLACE_ANYWHERE,		/* place() returns NULL */
	PLACE_IN_USE,		/* range 1's new address is taken: -EEXIST */
	PLACE_MISALIGNED,	/* range 2 (hugetlb) 4 KiB off its page size: -EINVAL */
};

struct mig_case {
	enum fl_migrate_mode mode;
	int mem;			/* enum fl_mem_type, or MIG_MIXED */
	size_t len;			/* bytes per range */
	uint64_t addr;			/* the source's address */
	unsigned src_flags;		/* FL_MIGRATE_NO_PUSH */
	unsigned max_precopy_ms;
	unsigned max_rounds;
	bool kill_source;		/* postcopy: SIGKILL the source, expect SIGBUS */
	/* Rounds that never converge on their own: the writers write a set
	 * that shrinks by one block a round, and all of it every round (the
	 * source's log callback writes it at each round's end), so each
	 * round's written set is one smaller than the last: only the round
	 * or time limit stops them. */
	bool shrinking;
	bool move;			/* the destination asks for FL_MIGRATE_DEST_MOVE */
	bool cancel;			/* the source cancels once round 1 is sent: -ECANCELED */
	/* A page of the source's address (the end of range 0) taken at the
	 * destination: -EEXIST on both sides. */
	bool addr_taken;
	enum mig_place place;
	int expect;			/* the error both sides see (0: success) */
};

/* What the source measured, sent to the destination's process at its end. */
struct mig_report {
	unsigned rounds;
	uint64_t pause_ns;		/* run started -> quiesce(PAUSE) */
	uint64_t longest_round_ns;	/* between two "round N sent" */
	bool time_limit;		/* the source logged its precopy time limit */
};

/* The bytes of all the ranges in the layout. */
size_t mig_bytes(const struct mig_case *c);
/* Skip (or fail under strict) unless the kernel and the machine can run c;
 * takes the huge page lock for hugetlb. Before any fork. */
void mig_require(const struct mig_case *c);

/* Map len bytes of mem at addr (MAP_FIXED_NOREPLACE; shmem and hugetlb a
 * MAP_SHARED memfd), or fail the case. */
void *mig_map_at(uint64_t addr, enum fl_mem_type mem, size_t len);
/* A block's counter is in its first and last words (MIG_BLK bytes); between
 * them a byte is written, so a copy can catch the write half done. */
void mig_block_write(uint8_t *block);
/* Read a word: 1 when the read raised SIGBUS (in this thread), 0 when it
 * returned *ret_value. */
int mig_read_or_sigbus(const volatile uint64_t *addr, uint64_t *ret_value);

/* Listen on TCP on an IPv4 address ("127.0.0.1", "10.1.2.2"), an ephemeral port. */
void mig_listen(const char *ip, int *ret_fd, int *ret_port);

/* Listen on listen_ip, fork the source (after running before_source in the
 * child, when not NULL), connecting to listen_ip, and be the destination. */
int mig_run(const struct mig_case *c, const char *listen_ip, void (*before_source)(void *), void *arg,
	    struct mig_report *rep);

#endif
