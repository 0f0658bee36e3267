/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the two files of smtplimit(8) share: smtplimit.c (the admin command,
 * its proc file readers and writers, main's dispatch) defines all of it but
 * the two CrowdSec commands, which smtplimit_crowdsec.c defines.
 */
#ifndef _SMTPLIMIT_H
#define _SMTPLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Tables as the proc file shows them */

struct kv {
	char *key;
	char *val;
};

/* One row: the values of the column line's names, in its order. */
struct row {
	char **val;
};

struct table {
	char *name;
	bool ipv4;
	struct timespec wall;		/* CLOCK_REALTIME as the read began */
	struct kv *hdr;
	size_t nhdr;
	char **col;
	size_t ncol;
	struct row *rows;
	size_t nrows;
};

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void *xrealloc(void *p, size_t n);

const char *family(bool ipv4);
bool valid_name(const char *n);
void proc_path(char *buf, size_t size, const char *name, bool ipv4);
bool table_exists(const char *name, bool ipv4);
size_t split(char *s, char ***words);
const char *hdr_get(const struct table *t, const char *key);
const char *row_get(const struct table *t, const struct row *r,
		    const char *name);
void read_table(struct table *t, const char *name, bool ipv4);
size_t select_tables(const char *name, int fam, struct table **out);
void row_addr(char *buf, size_t size, const char *source);

bool is_uint(const char *s);
unsigned long long to_u64(const char *s);
bool is_yes(const char *s);

/* smtplimit_crowdsec.c */
int cmd_crowdsec_bouncer(int argc, char **argv, const char *state);
int cmd_offenders(int argc, char **argv, int fam, long min, const char *allow);

#endif
