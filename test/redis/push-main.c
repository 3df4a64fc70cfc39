// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * A stand-in for `faultline image push` while the subcommand is tested on
 * its own: argv[1] is "push", the rest are its arguments.
 */
#include <stdio.h>

int cmd_image_push(int argc, char **argv);

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs("usage: redis-push-cli push [options] IMAGE URL\n", stderr);
		return 2;
	}
	return cmd_image_push(argc - 1, argv + 1);
}
