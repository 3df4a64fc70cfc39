// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * lazy-file: map a file lazily. Pages are read from the file only when the
 * program first touches them, by faultline's handler thread.
 *
 * The example writes a temporary file with a known pattern, opens a file
 * store over it, creates an anonymous MISSING region backed by that store,
 * and checks every byte it reads through the region against the pattern.
 *
 * Build against an installed faultline:
 *	cc lazy-file.c $(pkg-config --cflags --libs faultline) -o lazy-file
 *
 * Exit: 0 when every byte matched, 1 on a mismatch or an error, 77 when the
 * kernel (or its configuration) does not allow userfaultfd here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <faultline/faultline.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_PAGES 64

/* Byte `pos` of the file. Varies within and across pages, so a page
 * delivered at the wrong offset does not match. */
static uint8_t pattern_byte(uint64_t pos)
{
	return (uint8_t)((pos >> 12) * 37 + pos * 7 + 1);
}

/* Create a temporary file (name written to `path`) of `len` pattern bytes. */
static int write_pattern_file(char *path, size_t len)
{
	uint8_t buf[4096];
	size_t done = 0;
	int fd;

	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	while (done < len) {
		size_t chunk = len - done;
		ssize_t n;

		if (chunk > sizeof(buf))
			chunk = sizeof(buf);

		for (size_t i = 0; i < chunk; i++)
			buf[i] = pattern_byte(done + i);
		n = pwrite(fd, buf, chunk, (off_t)done);
		if (n < 0) {
			int err = -errno;

			close(fd);
			unlink(path);
			return err;
		}
		done += (size_t)n;
	}
	close(fd);
	return 0;
}

int main(void)
{
	char path[] = "/tmp/faultline-lazy-file.XXXXXX";
	size_t page_size = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = FILE_PAGES * page_size;
	struct fl_engine_opts engine_opts = { .sz = sizeof(engine_opts) };
	struct fl_region_opts region_opts = { .sz = sizeof(region_opts) };
	struct fl_region_stats stats = { .sz = sizeof(stats) };
	struct fl_engine *engine = NULL;
	struct fl_region *region = NULL;
	struct fl_store *store = NULL;
	const uint8_t *mem;
	int status = 1;
	int r;

	r = write_pattern_file(path, len);
	if (r < 0) {
		fprintf(stderr, "lazy-file: temporary file: %s\n",
			strerror(-r));
		return 1;
	}

	r = fl_engine_new(&engine_opts, &engine);
	if (r < 0) {
		fprintf(stderr, "lazy-file: fl_engine_new: %s\n", strerror(-r));
		if (r == -EOPNOTSUPP || r == -EPERM)
			status = 77;
		goto out;
	}
	r = fl_engine_start(engine);
	if (r < 0) {
		fprintf(stderr, "lazy-file: fl_engine_start: %s\n",
			strerror(-r));
		goto out;
	}

	r = fl_store_file_open(path, &store);
	if (r < 0) {
		fprintf(stderr, "lazy-file: fl_store_file_open: %s\n",
			strerror(-r));
		goto out;
	}

	region_opts.length = len;
	region_opts.mem = FL_MEM_ANON;
	region_opts.mode = FL_MODE_MISSING;
	region_opts.store = store;
	region_opts.memfd = -1;
	region_opts.name = "lazy-file";
	r = fl_region_new(engine, &region_opts, &region);
	if (r < 0) {
		fprintf(stderr, "lazy-file: fl_region_new: %s\n", strerror(-r));
		goto out;
	}

	/* Every first touch below is a page fault that the engine resolves
	 * from the file. */
	mem = fl_region_addr(region);
	for (size_t i = 0; i < len; i++) {
		if (mem[i] != pattern_byte(i)) {
			fprintf(stderr,
				"lazy-file: byte %zu is 0x%02x, expected 0x%02x\n",
				i, mem[i], pattern_byte(i));
			goto out;
		}
	}

	/* The bytes must have come through the fault handler, not from
	 * memory that was somehow already populated. */
	r = fl_region_stats(region, &stats);
	if (r < 0) {
		fprintf(stderr, "lazy-file: fl_region_stats: %s\n",
			strerror(-r));
		goto out;
	}
	if (stats.faults_read == 0) {
		fprintf(stderr, "lazy-file: no read fault was reported\n");
		goto out;
	}

	printf("lazy-file: read %zu bytes through faultline %s: %llu faults, "
	       "%llu pages resolved, all bytes match\n",
	       len, fl_version(), (unsigned long long)stats.faults_read,
	       (unsigned long long)fl_region_resolved_pages(region));
	status = 0;
out:
	fl_region_free(region);
	/* The region held its own reference; this drops ours. */
	fl_store_unref(store);
	fl_engine_free(engine);
	unlink(path);
	return status;
}
