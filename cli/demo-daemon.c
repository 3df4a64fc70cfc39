// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Part 5 of `faultline demo`: faultlined serving other processes. Eight
 * client processes restore one image through the daemon's shared template
 * (their total Pss beside eight private copies), then the same again while
 * the daemon is killed -9 and restarted: the clients resume their sessions
 * and every page they read is checked. The pieces are the ones `faultline
 * bench daemon` measures (bench/daemon.c).
 */
#include "bench.h"
#include "demo.h"
#include "util.h"

#include <stdio.h>

#define DEMO_DAEMON_CLIENTS 8

int demo_daemon(void)
{
	struct daemon_demo_result r;
	int status;

	printf("\nfaultlined, a daemon serving the faults of other processes:\n");
	fflush(stdout);
	status = daemon_demo(DEMO_DAEMON_CLIENTS, &r);
	if (status)
		return status;
	printf("  %d client processes each map a %.0f MiB image and read every page, served by faultlined:\n"
	       "    total Pss through the shared template  %8.1f MiB  (%.2fx one image, the daemon's share included)\n"
	       "    total Pss of %d private copies          %8.1f MiB\n"
	       "  the same with faultlined killed (-9) 40 ms after they attached, and started again:\n"
	       "    %u of %d clients resumed their session with the new daemon; every page read was right\n",
	       DEMO_DAEMON_CLIENTS, r.image_mib, r.tpl_pss_mib, r.tpl_pss_mib / r.image_mib, DEMO_DAEMON_CLIENTS,
	       r.copy_pss_mib, r.resumed, DEMO_DAEMON_CLIENTS);
	return EXIT_OK;
}
