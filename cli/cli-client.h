/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The CLI's client side: `faultline image restore --from URL` (a page
 * server or Redis, restore-remote.c) and `faultline daemon` (a client of
 * faultlined, daemon-client.c).
 */
#ifndef FL_CLI_CLIENT_H
#define FL_CLI_CLIENT_H

/*
 * `faultline image restore`: with --from, a restore from a remote store;
 * without, the local cold start of coldstart.c, unchanged.
 */
int cmd_image_restore_any(int argc, char **argv);
int cmd_daemon(int argc, char **argv);

#endif
