// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Fuzz target: faultlined's Firecracker handshake (daemon/checks.c
 * fld_fc_mappings): the JSON array of guest memory mappings a VMM sends,
 * parsed and checked against the size of the guest memory file, all before
 * the daemon adopts the VM's uffd.
 *
 * Input: [memory-file size selector][JSON]. Whatever is accepted must be
 * what the daemon may serve without checking again: 1..64 mappings, each
 * of 4 KiB or 2 MiB pages, non-empty, aligned to its pages, not wrapping
 * the address space, inside the memory file, no two overlapping; and each
 * must carry the numbers the JSON says (jansson, read again by the oracle).
 */
#include "faultlined.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                 \
	do {                                                                                        \
		if (!(cond)) {                                                                      \
			fprintf(stderr, "fuzz-firecracker: invariant failed: %s (line %d)\n", #cond, \
				__LINE__);                                                          \
			abort();                                                                    \
		}                                                                                   \
	} while (0)

static const uint64_t mem_sizes[8] = {
	0, 4096, 2u << 20, 64u << 20, 1ull << 30, 1ull << 40, UINT64_MAX - 4095, UINT64_MAX,
};

static unsigned long n_accepted, n_refused;

static uint64_t json_u64(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	CHECK(json_is_integer(v) && json_integer_value(v) >= 0);
	return (uint64_t)json_integer_value(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fld_fc_mapping maps[FLD_FC_MAX_MAPPINGS];
	char why[160] = "";
	uint64_t mem;
	size_t n = 0;
	json_t *root;
	int r;

	if (size < 1)
		return 0;
	mem = mem_sizes[data[0] % 8];
	r = fld_fc_mappings((const char *)data + 1, size - 1, mem, maps, &n, why, sizeof(why));
	if (r) {
		CHECK(r == -EBADMSG || r == -EINVAL || r == -ERANGE);
		CHECK(why[0]);		/* the daemon logs why a VM was refused */
		n_refused++;
		return 0;
	}
	n_accepted++;
	CHECK(n >= 1 && n <= FLD_FC_MAX_MAPPINGS);
	for (size_t i = 0; i < n; i++) {
		const struct fld_fc_mapping *m = &maps[i];
		CHECK(m->page_size == 4096 || m->page_size == (2u << 20));
		CHECK(m->size && m->base % m->page_size == 0 && m->size % m->page_size == 0 &&
		      m->offset % m->page_size == 0);
		CHECK(m->base + m->size > m->base);
		CHECK(m->offset <= mem && m->size <= mem - m->offset);
		for (size_t j = 0; j < i; j++)
			CHECK(m->base >= maps[j].base + maps[j].size || maps[j].base >= m->base + m->size);
	}
	root = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
	CHECK(root && json_is_array(root) && json_array_size(root) == n);
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(root, i);
		CHECK(json_is_object(o));
		CHECK(json_u64(o, "base_host_virt_addr") == maps[i].base);
		CHECK(json_u64(o, "size") == maps[i].size);
		CHECK(json_u64(o, "offset") == maps[i].offset);
		if (json_object_get(o, "page_size") && json_is_integer(json_object_get(o, "page_size")) &&
		    json_integer_value(json_object_get(o, "page_size")) >= 0)
			CHECK(json_u64(o, "page_size") == maps[i].page_size);
		else
			CHECK(json_u64(o, "page_size_kib") * 1024 == maps[i].page_size);
	}
	json_decref(root);
	return 0;
}

#ifdef FL_FUZZ_STANDALONE
/* ---- a driver for compilers without libFuzzer ------------------------------ */

#include "standalone.h"

static const char *const handshakes[] = {
	/* Firecracker's own: one mapping, and two (a gap below 4 GiB) */
	"[{\"base_host_virt_addr\":140230000000000,\"size\":134217728,\"offset\":0,\"page_size\":4096}]",
	"[{\"base_host_virt_addr\":139872000000000,\"size\":2097152,\"offset\":0,\"page_size\":4096},"
	"{\"base_host_virt_addr\":139872004194304,\"size\":4194304,\"offset\":2097152,\"page_size\":4096}]",
	/* older releases: page_size_kib; huge pages */
	"[{\"base_host_virt_addr\":140000002097152,\"size\":4194304,\"offset\":0,\"page_size_kib\":4}]",
	"[{\"base_host_virt_addr\":140000006291456,\"size\":4194304,\"offset\":2097152,\"page_size\":2097152}]",
	/* refused: overlapping, misaligned, past the file, duplicate keys, not an array */
	"[{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096},"
	"{\"base_host_virt_addr\":8192,\"size\":4096,\"offset\":0,\"page_size\":4096}]",
	"[{\"base_host_virt_addr\":4097,\"size\":4096,\"offset\":0,\"page_size\":4096}]",
	"[{\"base_host_virt_addr\":18446744073709547520,\"size\":8192,\"offset\":0,\"page_size\":4096}]",
	"[{\"base_host_virt_addr\":4096,\"size\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096}]",
	"{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096}",
};
#define NSEEDS (sizeof(handshakes) / sizeof(handshakes[0]))

static struct fz_input seeds[NSEEDS];
static const unsigned nseeds = NSEEDS;

static void make_seeds(void)
{
	for (unsigned s = 0; s < NSEEDS; s++) {
		seeds[s].b[0] = (uint8_t)(3 + s % 3);	/* 64 MiB .. 1 TiB of guest memory */
		seeds[s].n = 1 + strlen(handshakes[s]);
		memcpy(seeds[s].b + 1, handshakes[s], seeds[s].n - 1);
	}
}

static void finish(unsigned long iterations)
{
	fprintf(stderr, "# %lu mutated handshakes: %lu accepted, %lu refused\n", iterations, n_accepted, n_refused);
	if (!n_accepted || !n_refused)
		exit(1);	/* a run that reaches one side only tests nothing */
}

static const uint8_t interesting[] = { '0', '1', '2', '4', '9', '-', '"', ',', ':', '[', ']', '{', '}', 'e', '.' };
static const struct fz_dict dict = { interesting, sizeof(interesting), NULL, 0, NULL, 0 };

int main(int argc, char **argv)
{
	return fz_main(argc, argv, "firecracker", seeds, &nseeds, make_seeds, &dict, finish);
}
#endif
