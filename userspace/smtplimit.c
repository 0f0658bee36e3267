// SPDX-License-Identifier: GPL-2.0
/*
 * smtplimit(8): the administrator's command for xt_smtplimit's tables. It
 * owns nothing but what it prints: every table is read from, and changed
 * through, its proc file /proc/net/ip{,6}t_smtplimit/NAME, in the network
 * namespace of the task (after setns() for -n NETNS).
 *
 * The kernel answers a refused write with an errno alone, so each line
 * written is first checked with the kernel's own parser
 * (kernel/smtplimit_cmd.c), and a refusal names the line and the reason.
 * A command's lines go in one write(), which the kernel applies all or
 * nothing; a restore writes each table's lines inside a transaction
 * ("{" ... "}"), all or nothing per table however many writes it takes.
 *
 * The CrowdSec commands (crowdsec-bouncer, offenders) are in
 * smtplimit_crowdsec.c; what the two files share is declared in smtplimit.h.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter/xt_smtplimit.h>

#include "smtplimit_cmd.h"
#include "smtplimit.h"

#define PROC_DIR4	"/proc/net/ipt_smtplimit"
#define PROC_DIR6	"/proc/net/ip6t_smtplimit"
#define SAVE_MAGIC	"# smtplimit save at "

static const char *prog = "smtplimit";

void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		die("out of memory");
	return d;
}

/* Tables as the proc file shows them */

const char *family(bool ipv4)
{
	return ipv4 ? "ipv4" : "ipv6";
}

static const char *proc_dir(bool ipv4)
{
	return ipv4 ? PROC_DIR4 : PROC_DIR6;
}

bool valid_name(const char *n)
{
	size_t i, len = strlen(n);

	if (!len || len >= XT_SMTPLIMIT_NAME_LEN || !strcmp(n, ".") ||
	    !strcmp(n, ".."))
		return false;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && !strchr("._-", n[i]))
			return false;
	return true;
}

void proc_path(char *buf, size_t size, const char *name, bool ipv4)
{
	if (!valid_name(name))
		die("bad table name \"%s\"", name);
	snprintf(buf, size, "%s/%s", proc_dir(ipv4), name);
}

bool table_exists(const char *name, bool ipv4)
{
	char path[256];

	proc_path(path, sizeof(path), name, ipv4);
	return access(path, F_OK) == 0;
}

static void missing_table(const char *name, bool ipv4)
{
	die("no %s table \"%s\" in this network namespace (no rule names it, or xt_smtplimit is not loaded)",
	    family(ipv4), name);
}

/* Splits @s at runs of blanks, in place; the words' count. */
size_t split(char *s, char ***words)
{
	size_t n = 0;
	char *w;

	*words = NULL;
	for (w = strtok(s, " \t\n"); w; w = strtok(NULL, " \t\n")) {
		*words = xrealloc(*words, (n + 1) * sizeof(**words));
		(*words)[n++] = w;
	}
	return n;
}

const char *hdr_get(const struct table *t, const char *key)
{
	size_t i;

	for (i = 0; i < t->nhdr; i++)
		if (!strcmp(t->hdr[i].key, key))
			return t->hdr[i].val;
	return NULL;
}

static int col_index(const struct table *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->ncol; i++)
		if (!strcmp(t->col[i], name))
			return (int)i;
	return -1;
}

const char *row_get(const struct table *t, const struct row *r,
		    const char *name)
{
	int i = col_index(t, name);

	return i < 0 ? NULL : r->val[i];
}

/*
 * The proc file: "# NAME: key value key value ...", "# col col ...", then
 * one row of as many words per source. Anything else is an error: this
 * command and the module are of different versions.
 */
void read_table(struct table *t, const char *name, bool ipv4)
{
	char path[256], *line = NULL, **w;
	size_t cap = 0, i, lineno = 0;
	FILE *f;

	memset(t, 0, sizeof(*t));
	t->name = xstrdup(name);
	t->ipv4 = ipv4;
	proc_path(path, sizeof(path), name, ipv4);
	clock_gettime(CLOCK_REALTIME, &t->wall);
	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT)
			missing_table(name, ipv4);
		die("%s: %s", path, strerror(errno));
	}
	while (getline(&line, &cap, f) > 0) {
		char *copy = xstrdup(line);
		size_t n;

		lineno++;
		n = split(copy, &w);
		if (lineno == 1) {
			if (n < 2 || strcmp(w[0], "#") || n % 2 ||
			    w[1][strlen(w[1]) - 1] != ':')
				die("%s: line 1: not a table header", path);
			for (i = 2; i + 1 < n; i += 2) {
				t->hdr = xrealloc(t->hdr, (t->nhdr + 1) * sizeof(*t->hdr));
				t->hdr[t->nhdr].key = w[i];
				t->hdr[t->nhdr++].val = w[i + 1];
			}
		} else if (lineno == 2) {
			if (n < 2 || strcmp(w[0], "#"))
				die("%s: line 2: not a column line", path);
			t->col = w + 1;
			t->ncol = n - 1;
			w = NULL;
			if (col_index(t, "source") != 0 || col_index(t, "next_s") < 0 ||
			    col_index(t, "full_s") < 0)
				die("%s: line 2: unknown columns", path);
		} else {
			if (n != t->ncol)
				die("%s: line %zu: %zu values for %zu columns", path,
				    lineno, n, t->ncol);
			t->rows = xrealloc(t->rows, (t->nrows + 1) * sizeof(*t->rows));
			t->rows[t->nrows++].val = w;
			w = NULL;
		}
		free(w);
	}
	if (ferror(f))
		die("%s: %s", path, strerror(errno));
	if (lineno < 2)
		die("%s: no header", path);
	free(line);
	fclose(f);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The table names of one family, sorted; none if the module is not loaded. */
static size_t table_names(bool ipv4, char ***names)
{
	DIR *d = opendir(proc_dir(ipv4));
	struct dirent *e;
	size_t n = 0;

	*names = NULL;
	if (!d) {
		if (errno == ENOENT)
			return 0;
		die("%s: %s", proc_dir(ipv4), strerror(errno));
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		*names = xrealloc(*names, (n + 1) * sizeof(**names));
		(*names)[n++] = xstrdup(e->d_name);
	}
	closedir(d);
	qsort(*names, n, sizeof(**names), name_cmp);
	return n;
}

/*
 * The tables a reading command covers: @name (both families unless @fam
 * says one; missing in both is an error) or every table.
 */
size_t select_tables(const char *name, int fam, struct table **out)
{
	struct table *t = NULL;
	size_t n = 0, k, i;
	int v;

	for (v = 0; v < 2; v++) {
		bool ipv4 = v == 0;
		char **names;

		if ((fam == 4 && !ipv4) || (fam == 6 && ipv4))
			continue;
		if (name) {
			if (!table_exists(name, ipv4))
				continue;
			t = xrealloc(t, (n + 1) * sizeof(*t));
			read_table(&t[n++], name, ipv4);
			continue;
		}
		k = table_names(ipv4, &names);
		for (i = 0; i < k; i++) {
			t = xrealloc(t, (n + 1) * sizeof(*t));
			read_table(&t[n++], names[i], ipv4);
		}
	}
	if (name && !n) {
		if (fam)
			missing_table(name, fam == 4);
		die("no table \"%s\" in this network namespace (neither ipv4 nor ipv6)", name);
	}
	*out = t;
	return n;
}

/* Typed values: integers, decimals, yes/no, else strings */

bool is_uint(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

static bool is_decimal(const char *s)
{
	const char *dot;

	if (*s == '-')
		s++;
	dot = strchr(s, '.');
	if (!dot || dot == s || !dot[1])
		return is_uint(s);
	for (; *s; s++)
		if (s != dot && !isdigit((unsigned char)*s))
			return false;
	return true;
}

unsigned long long to_u64(const char *s)
{
	return s && is_uint(s) ? strtoull(s, NULL, 10) : 0;
}

bool is_yes(const char *s)
{
	return s && !strcmp(s, "yes");
}

/* Units: 1d2h3m4s, 29m58s, 0s */
static void duration(char *buf, size_t size, unsigned long long s)
{
	unsigned long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
	int n = 0;

	buf[0] = '\0';
	if (d)
		n += snprintf(buf + n, size - n, "%llud", d);
	if (h)
		n += snprintf(buf + n, size - n, "%lluh", h);
	if (m)
		n += snprintf(buf + n, size - n, "%llum", m);
	if (s % 60 || !s)
		snprintf(buf + n, size - n, "%llus", s % 60);
}

/* list */

#define LIST_COLS 6

static void list_table(const struct table *t)
{
	static const char *const title[LIST_COLS] = {
		"SOURCE", "TOKENS", "NEXT", "FULL", "PASSED", "DENIED"
	};
	char (*cell)[LIST_COLS][48];
	size_t width[LIST_COLS], i, c;
	const char *entries = hdr_get(t, "entries");

	printf("%s table %s: rate %s burst %s srcmask %s entries %s%s\n",
	       family(t->ipv4), t->name, hdr_get(t, "rate") ?: "?",
	       hdr_get(t, "burst") ?: "?", hdr_get(t, "srcmask") ?: "?",
	       entries ?: "?", is_yes(hdr_get(t, "strict")) ? " strict" : "");
	printf(" ");
	for (i = 0; i < t->nhdr; i++) {
		const char *k = t->hdr[i].key;

		if (strcmp(k, "rate") && strcmp(k, "burst") && strcmp(k, "srcmask") &&
		    strcmp(k, "entries") && strcmp(k, "strict"))
			printf(" %s %s", k, t->hdr[i].val);
	}
	printf("\n");
	if (!t->nrows)
		return;

	cell = xrealloc(NULL, (t->nrows + 1) * sizeof(*cell));
	for (c = 0; c < LIST_COLS; c++)
		snprintf(cell[0][c], sizeof(cell[0][c]), "%s", title[c]);
	for (i = 0; i < t->nrows; i++) {
		const struct row *r = &t->rows[i];
		unsigned long long next = to_u64(row_get(t, r, "next_s"));
		unsigned long long full = to_u64(row_get(t, r, "full_s"));
		char (*l)[48] = cell[i + 1], d[32];

		snprintf(l[0], sizeof(l[0]), "%s", row_get(t, r, "source"));
		snprintf(l[1], sizeof(l[1]), "%s", row_get(t, r, "tokens") ?: "-");
		duration(d, sizeof(d), next);
		if (is_yes(row_get(t, r, "ban")))
			snprintf(l[2], sizeof(l[2]), "banned, ends in %s", d);
		else if (next)
			snprintf(l[2], sizeof(l[2]), "next in %s", d);
		else
			snprintf(l[2], sizeof(l[2]), "next now");
		duration(d, sizeof(d), full);
		snprintf(l[3], sizeof(l[3]), "full in %s", d);
		snprintf(l[4], sizeof(l[4]), "%s", row_get(t, r, "passed") ?: "-");
		snprintf(l[5], sizeof(l[5]), "%s", row_get(t, r, "denied") ?: "-");
	}
	for (c = 0; c < LIST_COLS; c++) {
		width[c] = 0;
		for (i = 0; i <= t->nrows; i++)
			if (strlen(cell[i][c]) > width[c])
				width[c] = strlen(cell[i][c]);
	}
	for (i = 0; i <= t->nrows; i++) {
		printf(" ");
		for (c = 0; c < LIST_COLS; c++) {
			/* Text to the left, counts to the right. */
			if (c >= 4)
				printf(" %*s", (int)width[c], cell[i][c]);
			else
				printf(" %-*s", (int)width[c], cell[i][c]);
		}
		printf("\n");
	}
	free(cell);
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void json_value(const char *v)
{
	if (is_uint(v)) {
		/* No leading zeros in JSON: strip them. */
		printf("%llu", strtoull(v, NULL, 10));
	} else if (is_decimal(v)) {
		printf("%s", v);
	} else if (!strcmp(v, "yes") || !strcmp(v, "no")) {
		printf("%s", v[0] == 'y' ? "true" : "false");
	} else {
		json_string(v);
	}
}

static void json_table(const struct table *t)
{
	size_t i, c;

	printf("{\"name\":");
	json_string(t->name);
	printf(",\"family\":\"%s\",\"header\":{", family(t->ipv4));
	for (i = 0; i < t->nhdr; i++) {
		const char *k = t->hdr[i].key, *v = t->hdr[i].val, *slash;

		printf("%s", i ? "," : "");
		/* "entries N/MAX": two numbers, entries and maximum. */
		slash = strchr(v, '/');
		if (!strcmp(k, "entries") && slash) {
			printf("\"entries\":%llu,\"maximum\":%llu",
			       strtoull(v, NULL, 10), strtoull(slash + 1, NULL, 10));
			continue;
		}
		json_string(k);
		putchar(':');
		json_value(v);
	}
	printf("},\"entries\":[");
	for (i = 0; i < t->nrows; i++) {
		printf("%s{", i ? "," : "");
		for (c = 0; c < t->ncol; c++) {
			printf("%s", c ? "," : "");
			json_string(t->col[c]);
			putchar(':');
			if (c == 0)
				json_string(t->rows[i].val[c]);
			else
				json_value(t->rows[i].val[c]);
		}
		printf("}");
	}
	printf("]}");
}

static int cmd_list(int argc, char **argv, int fam, bool json)
{
	struct table *t;
	size_t n, i;

	if (argc > 1)
		die("list: one table at most");
	n = select_tables(argc ? argv[0] : NULL, fam, &t);
	if (json)
		printf("[");
	for (i = 0; i < n; i++) {
		if (json) {
			printf("%s", i ? ",\n" : "");
			json_table(&t[i]);
		} else {
			if (i)
				printf("\n");
			list_table(&t[i]);
		}
	}
	if (json)
		printf("]\n");
	return 0;
}

/* metrics: the Prometheus text format */

/* Header keys that are settings or gauges, not counters. */
static bool not_counter(const char *key)
{
	static const char *const keys[] = {
		"rate", "burst", "srcmask", "entries", "strict",
	};
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strcmp(key, keys[i]))
			return true;
	return false;
}

static void metric_samples(const struct table *t, size_t n, const char *metric,
			   const char *key, int part)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const char *v = hdr_get(&t[i], key);

		if (!v)
			continue;
		if (part >= 0) {	/* entries N/MAX: part 0 or 1 */
			const char *slash = strchr(v, '/');

			if (!slash)
				continue;
			v = part ? slash + 1 : v;
		}
		printf("%s{table=\"%s\",family=\"%s\"} %llu\n", metric, t[i].name,
		       family(t[i].ipv4), strtoull(v, NULL, 10));
	}
}

static int cmd_metrics(int argc, int fam)
{
	char **seen = NULL, metric[160];
	struct table *t;
	size_t n, i, k, nseen = 0, s;

	if (argc)
		die("metrics: no arguments");
	n = select_tables(NULL, fam, &t);
	printf("# HELP smtplimit_entries Sources the table tracks now.\n");
	printf("# TYPE smtplimit_entries gauge\n");
	metric_samples(t, n, "smtplimit_entries", "entries", 0);
	printf("# HELP smtplimit_maximum Sources the table may track.\n");
	printf("# TYPE smtplimit_maximum gauge\n");
	metric_samples(t, n, "smtplimit_maximum", "entries", 1);
	/* Every table's counters, each key once, in the order first met. */
	for (i = 0; i < n; i++) {
		for (k = 0; k < t[i].nhdr; k++) {
			const char *key = t[i].hdr[k].key;

			if (not_counter(key) || !is_uint(t[i].hdr[k].val))
				continue;
			for (s = 0; s < nseen && strcmp(seen[s], key); s++)
				;
			if (s < nseen)
				continue;
			seen = xrealloc(seen, (nseen + 1) * sizeof(*seen));
			seen[nseen++] = (char *)key;
			snprintf(metric, sizeof(metric), "smtplimit_%s_total", key);
			printf("# HELP %s The table header's counter \"%s\".\n", metric, key);
			printf("# TYPE %s counter\n", metric);
			metric_samples(t, n, metric, key, -1);
		}
	}
	free(seen);
	return 0;
}

/* Writing: each line checked by the kernel's parser, then written */

struct cmds {
	char *buf;
	size_t len;
	size_t nlines;
};

static void cmds_add(struct cmds *c, bool ipv4, const char *what,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void cmds_add(struct cmds *c, bool ipv4, const char *what,
		     const char *fmt, ...)
{
	struct smtplimit_cmd cmd;
	const char *why = "invalid";
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		die("%s: line too long", what);
	if (smtplimit_cmd_parse(ipv4, line, n, &cmd, &why))
		die("%s: \"%s\" refused for an %s table: %s", what, line,
		    family(ipv4), why);
	c->buf = xrealloc(c->buf, c->len + n + 2);
	memcpy(c->buf + c->len, line, n);
	c->len += n;
	c->buf[c->len++] = '\n';
	c->buf[c->len] = '\0';
	c->nlines++;
}

static void write_refused(const char *name, bool ipv4, int err,
			  const char *what)
{
	if (err == EPERM || err == EACCES)
		die("%s table \"%s\": %s: permission denied: changing a table needs CAP_NET_ADMIN in its network namespace's user namespace",
		    family(ipv4), name, what);
	if (err == ENOENT)
		missing_table(name, ipv4);
	if (err == EINVAL)
		die("%s table \"%s\": %s: the kernel refused it (EINVAL): a command this module does not know, or a transaction it could not take; nothing was applied",
		    family(ipv4), name, what);
	die("%s table \"%s\": %s: %s; nothing was applied", family(ipv4), name,
	    what, strerror(err));
}

/*
 * Writes @c to the table: in one write() if it fits, else in writes at
 * line boundaries (then @c must be a transaction, "{" first and "}" last,
 * for the kernel to apply it all or nothing).
 */
static void write_table(const char *name, bool ipv4, const struct cmds *c,
			const char *what)
{
	char path[256];
	size_t off = 0;
	int fd;

	proc_path(path, sizeof(path), name, ipv4);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		write_refused(name, ipv4, errno, what);
	while (off < c->len) {
		size_t n = c->len - off;
		ssize_t w;

		if (n > XT_SMTPLIMIT_WRITE_MAX) {
			n = XT_SMTPLIMIT_WRITE_MAX;
			while (n && c->buf[off + n - 1] != '\n')
				n--;
		}
		w = write(fd, c->buf + off, n);
		if (w < 0)
			write_refused(name, ipv4, errno, what);
		if ((size_t)w != n)
			die("%s table \"%s\": %s: short write", family(ipv4), name, what);
		off += n;
	}
	if (close(fd))
		write_refused(name, ipv4, errno, what);
}

static int cmd_change(const char *sub, int argc, char **argv, int fam,
		      bool forget, bool at_least)
{
	bool ipv4 = fam != 6;
	struct cmds c = {};
	const char *name;

	if (argc < 1)
		die("%s: no table named", sub);
	name = argv[0];
	if (!table_exists(name, ipv4))
		missing_table(name, ipv4);
	if (!strcmp(sub, "flush")) {
		if (argc != 1)
			die("flush TABLE: too many arguments");
		cmds_add(&c, ipv4, sub, "/");
	} else if (!strcmp(sub, "ban")) {
		if (argc < 2 || argc > 3)
			die("ban TABLE ADDR [SECONDS]");
		if (argc == 2)
			cmds_add(&c, ipv4, sub, "+%s", argv[1]);
		else
			cmds_add(&c, ipv4, sub, "%c%s %s", at_least ? '>' : '+',
				 argv[1], argv[2]);
	} else {
		if (argc != 2)
			die("unban TABLE ADDR[/LEN]");
		cmds_add(&c, ipv4, sub, "%c%s", forget ? '-' : '~', argv[1]);
	}
	write_table(name, ipv4, &c, sub);
	free(c.buf);
	return 0;
}

/* save and restore */

static void iso_time(char *buf, size_t size, time_t t)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool parse_iso(const char *s, time_t *t)
{
	struct tm tm = {};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);

	if (!end || *end)
		return false;
	*t = timegm(&tm);
	return *t != (time_t)-1;
}

/* The prefix of a row's source without its "/LEN": the kernel masks it. */
void row_addr(char *buf, size_t size, const char *source)
{
	snprintf(buf, size, "%.*s", (int)strcspn(source, "/"), source);
}

static int cmd_save(int argc, char **argv, int fam)
{
	struct timespec now;
	struct table *t = NULL;
	size_t n = 0, i, r;
	char when[32], addr[64];

	if (!argc) {
		n = select_tables(NULL, fam, &t);
	} else {
		for (int a = 0; a < argc; a++) {
			struct table *one;
			size_t k = select_tables(argv[a], fam, &one);

			t = xrealloc(t, (n + k) * sizeof(*t));
			memcpy(t + n, one, k * sizeof(*t));
			n += k;
			free(one);
		}
	}
	clock_gettime(CLOCK_REALTIME, &now);
	iso_time(when, sizeof(when), now.tv_sec);
	printf("%s%s\n", SAVE_MAGIC, when);
	printf("# Restore with smtplimit restore; each source's time is when its bucket is\n"
	       "# full again (full) or its ban ends (ban), UTC.\n");
	for (i = 0; i < n; i++) {
		/*
		 * Times are from the second the table's read began, rounded
		 * down, plus full_s (or next_s), which the module rounds up:
		 * the saved time is within a second of the true one.
		 */
		time_t base = t[i].wall.tv_sec;

		printf("table %s %s\n", t[i].name, family(t[i].ipv4));
		for (r = 0; r < t[i].nrows; r++) {
			const struct row *row = &t[i].rows[r];
			bool ban = is_yes(row_get(&t[i], row, "ban"));
			unsigned long long s = to_u64(row_get(&t[i], row,
							      ban ? "next_s" : "full_s"));

			if (!s)
				continue;
			row_addr(addr, sizeof(addr), row_get(&t[i], row, "source"));
			iso_time(when, sizeof(when), base + (time_t)s);
			printf("%s %s %s\n", ban ? "ban" : "full", addr, when);
		}
	}
	if (fflush(stdout) || ferror(stdout))
		die("save: writing: %s", strerror(errno));
	return 0;
}

struct saved {
	char *name;
	bool ipv4;
	char **addr;
	time_t *until;
	bool *ban;
	size_t n;
};

/*
 * The remaining seconds a restore grants: the saved time less now, but
 * never more than there was at save (until - saved), whatever the clock
 * did meanwhile; 0 for one already past.
 */
static double remaining(time_t until, time_t saved, const struct timespec *now)
{
	double from = now->tv_sec + now->tv_nsec / 1e9, r;

	if (from < (double)saved)
		from = saved;
	r = (double)until - from;
	return r > 0 ? r : 0;
}

static int cmd_restore(int argc, char **argv, double wait_s)
{
	const char *file = argc ? argv[0] : "-";
	char *line = NULL, **w;
	struct saved *tab = NULL, *cur = NULL;
	size_t cap = 0, ntab = 0, lineno = 0, i, k;
	time_t saved = 0;
	bool have_saved = false;
	struct timespec now, start;
	FILE *f;

	if (argc > 1)
		die("restore [FILE]: too many arguments");
	f = strcmp(file, "-") ? fopen(file, "re") : stdin;
	if (!f)
		die("%s: %s", file, strerror(errno));

	/* The whole file first: a bad line anywhere changes nothing. */
	while (getline(&line, &cap, f) > 0) {
		char *copy, what[64];
		size_t n;

		lineno++;
		line[strcspn(line, "\n")] = '\0';
		if (!strncmp(line, SAVE_MAGIC, strlen(SAVE_MAGIC))) {
			if (have_saved || !parse_iso(line + strlen(SAVE_MAGIC), &saved))
				die("%s:%zu: bad save time", file, lineno);
			have_saved = true;
			continue;
		}
		copy = xstrdup(line);
		n = split(copy, &w);
		if (!n || w[0][0] == '#') {
			free(w);
			free(copy);
			continue;
		}
		if (!have_saved)
			die("%s:%zu: no \"%sTIME\" line before the tables", file,
			    lineno, SAVE_MAGIC);
		if (!strcmp(w[0], "table")) {
			if (n != 3 || !valid_name(w[1]) ||
			    (strcmp(w[2], "ipv4") && strcmp(w[2], "ipv6")))
				die("%s:%zu: expected \"table NAME ipv4|ipv6\"", file, lineno);
			for (i = 0; i < ntab; i++)
				if (!strcmp(tab[i].name, w[1]) &&
				    tab[i].ipv4 == !strcmp(w[2], "ipv4"))
					die("%s:%zu: %s table %s a second time", file,
					    lineno, w[2], w[1]);
			tab = xrealloc(tab, (ntab + 1) * sizeof(*tab));
			cur = &tab[ntab++];
			memset(cur, 0, sizeof(*cur));
			cur->name = w[1];
			cur->ipv4 = !strcmp(w[2], "ipv4");
		} else if (!strcmp(w[0], "full") || !strcmp(w[0], "ban")) {
			struct smtplimit_cmd cmd;
			const char *why;
			char probe[96];
			time_t until;

			if (!cur)
				die("%s:%zu: a source before any table", file, lineno);
			if (n != 3)
				die("%s:%zu: expected \"%s ADDR TIME\"", file, lineno, w[0]);
			if (!parse_iso(w[2], &until))
				die("%s:%zu: bad time \"%s\" (YYYY-MM-DDTHH:MM:SSZ)", file,
				    lineno, w[2]);
			/* The address, by the kernel's parser, now. */
			snprintf(probe, sizeof(probe), "-%s", w[1]);
			if (smtplimit_cmd_parse(cur->ipv4, probe, strlen(probe), &cmd, &why))
				die("%s:%zu: \"%s\": %s for an %s table", file, lineno,
				    w[1], why, family(cur->ipv4));
			if (strchr(w[1], '/'))
				die("%s:%zu: \"%s\": an address, not a prefix", file,
				    lineno, w[1]);
			cur->addr = xrealloc(cur->addr, (cur->n + 1) * sizeof(char *));
			cur->until = xrealloc(cur->until, (cur->n + 1) * sizeof(time_t));
			cur->ban = xrealloc(cur->ban, (cur->n + 1) * sizeof(bool));
			cur->addr[cur->n] = w[1];
			cur->until[cur->n] = until;
			cur->ban[cur->n++] = w[0][0] == 'b';
		} else {
			snprintf(what, sizeof(what), "%s", w[0]);
			die("%s:%zu: unknown line \"%s\"", file, lineno, what);
		}
		free(w);
	}
	if (ferror(f))
		die("%s: %s", file, strerror(errno));
	if (!have_saved)
		die("%s: not a smtplimit save (no \"%sTIME\" line)", file, SAVE_MAGIC);

	/* Every table must exist, or come within --wait, before any is written. */
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (i = 0; i < ntab; i++) {
		while (!table_exists(tab[i].name, tab[i].ipv4)) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - start.tv_sec +
			    (now.tv_nsec - start.tv_nsec) / 1e9 >= wait_s) {
				if (wait_s > 0)
					fprintf(stderr, "%s: waited %gs\n", prog, wait_s);
				missing_table(tab[i].name, tab[i].ipv4);
			}
			usleep(200000);
		}
	}

	for (i = 0; i < ntab; i++) {
		struct cmds c = {};
		char what[200];

		snprintf(what, sizeof(what), "restore of %s", file);
		clock_gettime(CLOCK_REALTIME, &now);
		cmds_add(&c, tab[i].ipv4, what, "{");
		for (k = 0; k < tab[i].n; k++) {
			double r = remaining(tab[i].until[k], saved, &now);
			unsigned long long ms = (unsigned long long)ceil(r * 1000);

			if (!ms)
				continue;
			if (ms > XT_SMTPLIMIT_BAN_MAX * 1000ULL)
				ms = XT_SMTPLIMIT_BAN_MAX * 1000ULL;
			cmds_add(&c, tab[i].ipv4, what, "%c%s %llu.%03llu",
				 tab[i].ban[k] ? '>' : '=', tab[i].addr[k],
				 ms / 1000, ms % 1000);
		}
		cmds_add(&c, tab[i].ipv4, what, "}");
		write_table(tab[i].name, tab[i].ipv4, &c, what);
		free(c.buf);
	}
	return 0;
}

/* Options and dispatch */

static void usage(FILE *out, int status)
{
	fprintf(out,
		"usage: %s [-6] [-n NETNS] COMMAND ...\n"
		"  list [-j] [TABLE]                show tables (-j: JSON)\n"
		"  ban TABLE ADDR [SECONDS]         ban (--at-least: never shorten)\n"
		"  unban TABLE ADDR[/LEN]           lift bans, keep the debt (--forget: forget)\n"
		"  flush TABLE                      forget every source\n"
		"  save [TABLE...]                  print every table's state\n"
		"  restore [FILE] [--wait SECONDS]  put a save back\n"
		"  metrics                          Prometheus text format\n"
		"  offenders --min-denied N [--allow FILE] [TABLE]\n"
		"                                   sources denied N times, no ban, not allowed\n"
		"  crowdsec-bouncer [--state FILE] TABLE...\n"
		"                                   apply CrowdSec decisions read on stdin\n"
		"See smtplimit(8).\n", prog);
	exit(status);
}

static void enter_netns(const char *name)
{
	char path[4096];
	int fd;

	if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		die("bad network namespace name \"%s\"", name);
	snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("network namespace %s: %s: %s", name, path, strerror(errno));
	if (setns(fd, CLONE_NEWNET))
		die("network namespace %s: setns: %s%s", name, strerror(errno),
		    errno == EPERM ? " (needs CAP_SYS_ADMIN)" : "");
	close(fd);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ipv6", no_argument, NULL, '6' },
		{ "ipv4", no_argument, NULL, '4' },
		{ "netns", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "wait", required_argument, NULL, 'w' },
		{ "forget", no_argument, NULL, 'f' },
		{ "at-least", no_argument, NULL, 'a' },
		{ "state", required_argument, NULL, 's' },
		{ "min-denied", required_argument, NULL, 'm' },
		{ "allow", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	bool json = false, forget = false, at_least = false;
	const char *netns = NULL, *state = NULL, *allow = NULL, *sub;
	long min_denied = -1;
	double wait_s = 0;
	char *end;
	int fam = 0, o;

	while ((o = getopt_long(argc, argv, "46n:jh", opts, NULL)) != -1) {
		switch (o) {
		case '4':
		case '6':
			fam = o - '0';
			break;
		case 'n':
			netns = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'w':
			wait_s = strtod(optarg, &end);
			if (*end || end == optarg || !(wait_s >= 0) || wait_s > 86400)
				die("--wait: bad seconds \"%s\"", optarg);
			break;
		case 'f':
			forget = true;
			break;
		case 'a':
			at_least = true;
			break;
		case 's':
			state = optarg;
			break;
		case 'm':
			min_denied = strtol(optarg, &end, 10);
			if (*end || end == optarg || min_denied < 1)
				die("--min-denied: bad count \"%s\"", optarg);
			break;
		case 'A':
			allow = optarg;
			break;
		case 'h':
			usage(stdout, 0);
			break;
		default:
			usage(stderr, 2);
		}
	}
	argc -= optind;
	argv += optind;
	if (!argc)
		usage(stderr, 2);
	sub = argv[0];
	argc--;
	argv++;
	if (netns)
		enter_netns(netns);

	if (json && strcmp(sub, "list"))
		die("-j: for list only");
	if (forget && strcmp(sub, "unban"))
		die("--forget: for unban only");
	if (at_least && strcmp(sub, "ban"))
		die("--at-least: for ban only");
	if (wait_s && strcmp(sub, "restore"))
		die("--wait: for restore only");
	if (state && strcmp(sub, "crowdsec-bouncer"))
		die("--state: for crowdsec-bouncer only");
	if ((min_denied > 0 || allow) && strcmp(sub, "offenders"))
		die("--min-denied, --allow: for offenders only");
	if (!strcmp(sub, "offenders")) {
		if (min_denied < 1)
			die("offenders: --min-denied N needed");
		return cmd_offenders(argc, argv, fam, min_denied, allow);
	}
	if (!strcmp(sub, "crowdsec-bouncer")) {
		if (fam)
			die("crowdsec-bouncer: each decision says its family; no -4 or -6");
		return cmd_crowdsec_bouncer(argc, argv, state);
	}
	if (!strcmp(sub, "list"))
		return cmd_list(argc, argv, fam, json);
	if (!strcmp(sub, "metrics"))
		return cmd_metrics(argc, fam);
	if (!strcmp(sub, "save"))
		return cmd_save(argc, argv, fam);
	if (!strcmp(sub, "restore")) {
		if (fam)
			die("restore: the file says each table's family; no -4 or -6");
		return cmd_restore(argc, argv, wait_s);
	}
	if (!strcmp(sub, "ban") || !strcmp(sub, "unban") || !strcmp(sub, "flush"))
		return cmd_change(sub, argc, argv, fam, forget, at_least);
	fprintf(stderr, "%s: unknown command \"%s\"\n", prog, sub);
	usage(stderr, 2);
}
