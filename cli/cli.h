/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The faultline command's subcommands. Each takes its own argv (argv[0] is
 * the subcommand's name) and returns the process exit code: 0 success,
 * 1 runtime error (one line on stderr), 2 usage error.
 */
#ifndef FL_CLI_H
#define FL_CLI_H

int cmd_check(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_image_push(int argc, char **argv);
int cmd_proxy(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_space(int argc, char **argv);
int cmd_stats(int argc, char **argv);

/*
 * Report why fl_image_open(path) failed with r, naming what failed: the
 * image (called `label` in the message), a directory given for it, or the
 * missing parent its header names (cli/image.c).
 */
void cli_image_open_error(const char *label, const char *path, int r);

#endif
