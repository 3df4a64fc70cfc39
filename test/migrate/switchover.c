// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * SWITCHOVER's two forms at the destination, from a hand-written source:
 * with the NONE_STALE flag (no bitmap: every page received stays), with a
 * bitmap (the pages it names, past the clear words, are discarded), and
 * the refusals of the flag's malformed uses.
 */
#include "mig-util.h"

#include <xxhash.h>

#define SW_ADDR 0x5d0000000000ull
#define SW_PAGES 200u
#define SW_KEEP 5u		/* sent, never stale */
#define SW_STALE 130u		/* sent; stale in the bitmap form (word 2) */

enum sw_case { SW_NONE_STALE, SW_BITMAP, SW_FLAG_WITH_BITMAP, SW_UNKNOWN_FLAG };

static void sw_resumed(const void *blob, size_t blob_len, void *ctx)
{
	T_ASSERT(blob_len == 3 && !memcmp(blob, "abc", 3), "blob of %zu bytes", blob_len);
	atomic_store((_Atomic bool *)ctx, true);
}

static void sw_log(enum fl_log_level level, const char *msg, void *ctx)
{
	(void)level;
	(void)msg;
	(void)ctx;
}

static void sw_write(int fd, const void *p, size_t n)
{
	T_ASSERT(write(fd, p, n) == (ssize_t)n);
}

static void sw_page(int fd, unsigned idx)
{
	uint8_t m[16 + 16 + M_BLK];

	m_hdr(m, 2, 16 + M_BLK);
	memset(m + 32, (int)(0x40 + idx % 64), M_BLK);
	m_put64(m + 16, SW_ADDR + (uint64_t)idx * M_BLK);
	m_put64(m + 24, XXH3_64bits(m + 32, M_BLK));
	sw_write(fd, m, sizeof(m));
}

static int test_switchover(void *arg)
{
	enum sw_case c = (enum sw_case)(uintptr_t)arg;
	bool flag = c != SW_BITMAP, bitmap = c == SW_BITMAP || c == SW_FLAG_WITH_BITMAP;
	size_t bitmap_len = (SW_PAGES + 7) / 8;
	uint8_t m[64 + 32 + 32 + 3], *mem = (uint8_t *)(uintptr_t)SW_ADDR;
	struct m_chans chan;
	int r;
	_Atomic bool resumed = false;
	struct fl_migrate_dest *dst;
	uint32_t flags;
	size_t n;

	m_chans_open(&chan);
	T_OK(fl_migrate_dest_new(&(struct fl_migrate_dest_opts){
		.sz = sizeof(struct fl_migrate_dest_opts), .bulk_fd = chan.bulk, .urgent_fd = chan.urgent,
		.resume = sw_resumed, .resume_ctx = &resumed, .timeout_ms = t_scaled_ms(2000), .log = sw_log }, &dst));
	T_OK(fl_migrate_dest_start(dst));
	for (uint32_t ch = 0; ch < 2; ch++) {
		m_hello(m, 42, ch, 0);
		sw_write(ch ? chan.peer_urgent : chan.peer_bulk, m, 32);
	}
	m_layout1(m, SW_ADDR, (uint64_t)SW_PAGES * M_BLK, FL_MEM_ANON, M_BLK);	/* one anonymous range */
	sw_write(chan.peer_bulk, m, 48);
	sw_page(chan.peer_bulk, SW_KEEP);
	sw_page(chan.peer_bulk, SW_STALE);

	flags = c == SW_UNKNOWN_FLAG ? 2 : flag ? 1 : 0;
	n = 16 + 16 + (bitmap ? bitmap_len : 0) + 3;
	_Static_assert(16 + 16 + (SW_PAGES + 7) / 8 + 3 <= sizeof(m), "SWITCHOVER with its bitmap fits in m");
	memset(m, 0, sizeof(m));
	m_hdr(m, 4, (uint32_t)(n - 16));
	m_put32(m + 12, flags);
	m_put64(m + 16, SW_PAGES);
	m_put64(m + 24, 3);
	if (bitmap)
		m[32 + SW_STALE / 8] |= (uint8_t)(1u << (SW_STALE % 8));
	memcpy(m + n - 3, "abc", 3);
	sw_write(chan.peer_bulk, m, n);

	if (c == SW_NONE_STALE || c == SW_BITMAP) {
		T_ASSERT(T_WAIT_FOR(atomic_load(&resumed), 10000), "never resumed");
		T_ASSERT(m_present(mem + SW_KEEP * M_BLK), "page %u gone at switchover", SW_KEEP);
		T_ASSERT_EQ(mem[SW_KEEP * M_BLK + 100], 0x40 + SW_KEEP % 64);
		if (c == SW_NONE_STALE)
			T_ASSERT(m_present(mem + SW_STALE * M_BLK), "NONE_STALE discarded page %u", SW_STALE);
		else
			T_ASSERT(!m_present(mem + SW_STALE * M_BLK), "stale page %u kept", SW_STALE);
		T_ASSERT(!m_present(mem + 7 * M_BLK), "page 7 present, never sent");
	} else {
		r = fl_migrate_dest_wait(dst);
		T_ASSERT_EQ(r, c == SW_UNKNOWN_FLAG ? -EPROTO : -EBADMSG);
		T_ASSERT(!atomic_load(&resumed), "resumed on a malformed SWITCHOVER");
	}
	fl_migrate_dest_free(dst);
	m_chans_close(&chan);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "none-stale", test_switchover, (void *)(uintptr_t)SW_NONE_STALE, 30, 0 },
	{ "stale-bitmap", test_switchover, (void *)(uintptr_t)SW_BITMAP, 30, 0 },
	{ "none-stale-with-bitmap", test_switchover, (void *)(uintptr_t)SW_FLAG_WITH_BITMAP, 30, 0 },
	{ "unknown-flag", test_switchover, (void *)(uintptr_t)SW_UNKNOWN_FLAG, 30, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
