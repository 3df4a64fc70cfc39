/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A private redis-server on a loopback port, for the demo and benchmarks. */
#ifndef FL_CLI_REDIS_LOCAL_H
#define FL_CLI_REDIS_LOCAL_H

#include <stdbool.h>
#include <sys/types.h>

struct redis_local {
	pid_t pid;
	int port;
	int pid_slot, dir_slot;	/* killed and removed if interrupted (util.h) */
	char dir[256];
	char url[128];		/* redis://127.0.0.1:PORT/PREFIX */
};

/* True when redis-server is installed. */
bool redis_local_available(void);
/* Start one (no persistence) in a temp dir; waits until it answers. 0 or -errno. */
int redis_local_start(struct redis_local *r, const char *prefix);
/*
 * A Redis Cluster of n (3..8) primaries, no replicas: n cluster-enabled
 * servers joined with `redis-cli --cluster create`; returns once every node
 * reports cluster_state:ok. Each node's url names itself. 0 or -errno
 * (-EPROTO: the create failed); on failure nothing is left running.
 */
int redis_local_cluster_start(struct redis_local *nodes, unsigned n, const char *prefix);
/* Stop it and remove its directory. */
void redis_local_stop(struct redis_local *r);

#endif
