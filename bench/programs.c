// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Finding the programs a benchmark starts (faultlined, the example servers,
 * redis-server) the way a shell would, without running one.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool bench_executable_at(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

bool bench_find_in_path(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char *copy, *save = NULL;
	bool found = false;

	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	copy = strdup(path);
	if (!copy)
		return false;
	for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save))
		found = (size_t)snprintf(out, len, "%s/%s", *d ? d : ".", name) < len && bench_executable_at(out);
	free(copy);
	return found;
}
