// SPDX-License-Identifier: GPL-2.0
/*
 * smtplimit(8)'s CrowdSec commands: crowdsec-bouncer, which applies the
 * LAPI's decisions to the tables (with its Go duration parser, a minimal
 * flat-JSON reader, and the state file of the decisions applied), and
 * offenders, the evidence a reporter sends. They read and write the tables
 * through smtplimit.c's proc file helpers (smtplimit.h); a bouncer's write
 * is checked with the kernel's own parser (kernel/smtplimit_cmd.c) first.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter/xt_smtplimit.h>

#include "smtplimit_cmd.h"
#include "smtplimit.h"

/* crowdsec-bouncer */

/*
 * Run by crowdsec-custom-bouncer with feed_via_stdin: true,
 * it reads the decisions, one JSON object a line, and applies them to the
 * named tables of this network namespace. A line of 0.0.15 is the LAPI's
 * decision plus "action": {"duration":"9m59.9s","id":7,"origin":"cscli",
 * "scenario":"...","scope":"Ip","type":"ban","value":"192.0.2.7",
 * "action":"add"} ("del" when it was deleted or expired). Each poll sends the
 * deletions first, then the new decisions; a start sends every active one,
 * and as deleted the expired ones of addresses that have no active one.
 *
 * A ban decision (scope Ip, or Range whose length is the table's srcmask:
 * exactly one key) is "ban at least until its end" (">ADDR SECONDS"), which
 * never shortens anything and so may be repeated: a restart of either
 * daemon re-sends decisions and changes nothing. The decisions applied are
 * kept by id in the state file (--state: "ID FAMILY ADDR END" lines, END in
 * seconds since the epoch), across restarts. The LAPI sends the deletion of
 * an address's ban only once no ban decision for it is left (it holds back
 * the deletion of one while another lasts), so one decision's end never
 * lifts another's ban; then the ban is lifted keeping the debt ("~ADDR"),
 * but only in a table where the ban ends no later than the latest of the
 * bouncer's decisions for it (plus LIFT_SLACK_S for the rounding of next_s):
 * a ban that outlasts them was written by someone else (by hand, fail2ban,
 * a restore) and is left alone. A decision that simply ends needs no lift:
 * its kernel ban ends with it.
 * Anything else (other types, scopes, simulated decisions, bad lines) is
 * logged and skipped; a refused write is logged, never fatal, so that one
 * bad decision does not stop the feed.
 */

#define LIFT_SLACK_S	2.0

struct decision {
	long long id;
	bool ipv4;
	char addr[INET6_ADDRSTRLEN];	/* canonical, as inet_ntop writes it */
	double end;			/* CLOCK_REALTIME seconds */
};

struct bouncer {
	char **tables;
	size_t ntables;
	const char *state;
	struct decision *d;
	size_t nd;
	bool dirty;		/* d changed since the state file was written */
};

static void cs_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cs_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsyslog(prio, fmt, ap);
	va_end(ap);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A Go time.Duration string ("1h2m3.5s", "-4m", "250ms", "0s"): seconds. */
static bool go_duration(const char *s, double *out)
{
	static const struct { const char *u; double mul; } units[] = {
		{ "ns", 1e-9 }, { "us", 1e-6 }, { "\xc2\xb5s", 1e-6 },
		{ "ms", 1e-3 }, { "s", 1 }, { "m", 60 }, { "h", 3600 },
	};
	double sign = 1, total = 0;
	size_t i;

	if (*s == '-' || *s == '+')
		sign = *s++ == '-' ? -1 : 1;
	if (!strcmp(s, "0")) {
		*out = 0;
		return true;
	}
	if (!*s)
		return false;
	while (*s) {
		char *end;
		double v;

		if (!isdigit((unsigned char)*s) && *s != '.')
			return false;
		v = strtod(s, &end);
		if (end == s)
			return false;
		s = end;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t n = strlen(units[i].u);

			/* "m" must not take the "m" of "ms" */
			if (!strncmp(s, units[i].u, n) &&
			    !(n == 1 && *s == 'm' && s[1] == 's'))
				break;
		}
		if (i == sizeof(units) / sizeof(units[0]))
			return false;
		total += v * units[i].mul;
		s += strlen(units[i].u);
	}
	*out = sign * total;
	return true;
}

/* A minimal reader for one flat JSON object: the members the bouncer uses. */
struct jfield {
	const char *name;
	char val[256];		/* strings decoded; numbers and literals as written */
	bool seen;
};

static const char *json_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	return p;
}

/* A string at @p (at its quote) into @buf (truncated, \u escapes as '?'). */
static const char *json_str(const char *p, char *buf, size_t size)
{
	size_t n = 0;

	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"') {
		char c = *p++;

		if (c == '\\') {
			c = *p++;
			switch (c) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u':
				for (int k = 0; k < 4; k++)
					if (!isxdigit((unsigned char)*p++))
						return NULL;
				c = '?';
				break;
			case '"': case '\\': case '/': break;
			default: return NULL;
			}
		}
		if (n + 1 < size)
			buf[n++] = c;
	}
	if (*p != '"')
		return NULL;
	if (size)
		buf[n] = '\0';
	return p + 1;
}

/* Skips any value (nested ones too); copies a scalar into @buf. */
static const char *json_value_at(const char *p, char *buf, size_t size, int depth)
{
	size_t n = 0;

	p = json_ws(p);
	if (*p == '"')
		return json_str(p, buf, size);
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';

		if (depth > 16)
			return NULL;
		p = json_ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				char key[8];

				p = json_str(json_ws(p), key, sizeof(key));
				if (!p || *(p = json_ws(p)) != ':')
					return NULL;
				p++;
			}
			p = json_value_at(p, NULL, 0, depth + 1);
			if (!p)
				return NULL;
			p = json_ws(p);
			if (*p == close)
				return p + 1;
			if (*p++ != ',')
				return NULL;
		}
	}
	while (*p && (isalnum((unsigned char)*p) || strchr("+-.", *p))) {
		if (n + 1 < size)
			buf[n++] = *p;
		p++;
	}
	if (!n && size)
		return NULL;
	if (size)
		buf[n] = '\0';
	return p;
}

static bool json_object(const char *p, struct jfield *f, size_t nf)
{
	p = json_ws(p);
	if (*p++ != '{')
		return false;
	p = json_ws(p);
	if (*p == '}')
		return true;
	for (;;) {
		char key[64];
		size_t i;

		p = json_str(json_ws(p), key, sizeof(key));
		if (!p || *(p = json_ws(p)) != ':')
			return false;
		for (i = 0; i < nf && strcmp(f[i].name, key); i++)
			;
		if (i < nf) {
			p = json_value_at(p + 1, f[i].val, sizeof(f[i].val), 0);
			f[i].seen = true;
		} else {
			char scratch[256];

			p = json_value_at(p + 1, scratch, sizeof(scratch), 0);
		}
		if (!p)
			return false;
		p = json_ws(p);
		if (*p == '}')
			return *json_ws(p + 1) == '\0';
		if (*p++ != ',')
			return false;
	}
}

static void state_save(struct bouncer *b)
{
	char tmp[4096];
	size_t i;
	FILE *f;

	b->dirty = false;
	if (!b->state)
		return;
	snprintf(tmp, sizeof(tmp), "%s.new", b->state);
	f = fopen(tmp, "we");
	if (!f) {
		cs_log(LOG_ERR, "state %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f, "# smtplimit crowdsec-bouncer: decision id, family, address, end (seconds since the epoch)\n");
	for (i = 0; i < b->nd; i++)
		fprintf(f, "%lld %d %s %.3f\n", b->d[i].id, b->d[i].ipv4 ? 4 : 6,
			b->d[i].addr, b->d[i].end);
	if (fflush(f) || fsync(fileno(f)) || fclose(f) || rename(tmp, b->state))
		cs_log(LOG_ERR, "state %s: %s", b->state, strerror(errno));
}

/* Forgets the decisions that have ended: their kernel bans ended with them. */
static void state_expire(struct bouncer *b, double now)
{
	size_t i, k = 0;

	for (i = 0; i < b->nd; i++)
		if (b->d[i].end > now)
			b->d[k++] = b->d[i];
	b->nd = k;
}

static void state_load(struct bouncer *b)
{
	char *line = NULL;
	size_t cap = 0;
	FILE *f;

	if (!b->state)
		return;
	f = fopen(b->state, "re");
	if (!f) {
		if (errno != ENOENT)
			die("state %s: %s", b->state, strerror(errno));
		return;
	}
	while (getline(&line, &cap, f) > 0) {
		struct decision d = {};
		unsigned char bin[16];
		int fam;

		if (line[0] == '#')
			continue;
		if (sscanf(line, "%lld %d %45s %lf", &d.id, &fam, d.addr, &d.end) != 4 ||
		    (fam != 4 && fam != 6) ||
		    inet_pton(fam == 4 ? AF_INET : AF_INET6, d.addr, bin) != 1)
			die("state %s: bad line \"%.*s\"", b->state,
			    (int)strcspn(line, "\n"), line);
		d.ipv4 = fam == 4;
		b->d = xrealloc(b->d, (b->nd + 1) * sizeof(*b->d));
		b->d[b->nd++] = d;
	}
	free(line);
	fclose(f);
	state_expire(b, now_s());
}

/* Writes one command line to a table; false (logged) if refused. */
static bool bouncer_write(const char *name, bool ipv4, const char *line)
{
	struct smtplimit_cmd cmd;
	const char *why = "invalid";
	char path[256], buf[128];
	int fd, n, err = 0;

	if (smtplimit_cmd_parse(ipv4, line, strlen(line), &cmd, &why)) {
		cs_log(LOG_ERR, "%s table %s: \"%s\" refused: %s", family(ipv4), name, line, why);
		return false;
	}
	n = snprintf(buf, sizeof(buf), "%s\n", line);
	proc_path(path, sizeof(path), name, ipv4);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, buf, n) != n)
		err = errno;
	if (fd >= 0 && close(fd) && !err)
		err = errno;
	if (err)
		cs_log(LOG_ERR, "%s table %s: \"%s\": %s", family(ipv4), name, line,
		       strerror(err));
	return !err;
}

/*
 * What a table says of @addr (canonical): its srcmask, and whether the entry
 * holding @addr is banned and its next_s. One pass over the proc file, that
 * keeps nothing (read_table keeps every row: this runs for as long as the
 * feed does). False (logged) if the file cannot be read or is not a table.
 */
struct lookup {
	int srcmask;
	bool banned;
	double next_s;
};

static bool table_lookup(const char *name, bool ipv4, const char *addr,
			 struct lookup *lk)
{
	int af = ipv4 ? AF_INET : AF_INET6, alen = ipv4 ? 4 : 16, cnext = -1, cban = -1;
	unsigned char want[16], have[16];
	char path[256], *line = NULL, **w;
	size_t cap = 0, lineno = 0, i;
	bool ok = false;
	FILE *f;

	memset(lk, 0, sizeof(*lk));
	lk->srcmask = -1;
	if (addr && inet_pton(af, addr, want) != 1)
		return false;
	proc_path(path, sizeof(path), name, ipv4);
	f = fopen(path, "re");
	if (!f) {
		cs_log(LOG_ERR, "%s: %s", path, strerror(errno));
		return false;
	}
	while (getline(&line, &cap, f) > 0) {
		size_t n = split(line, &w);

		lineno++;
		if (lineno == 1) {
			for (i = 2; i + 1 < n; i += 2)
				if (!strcmp(w[i], "srcmask") && is_uint(w[i + 1]))
					lk->srcmask = atoi(w[i + 1]);
			if (lk->srcmask < 0 || lk->srcmask > alen * 8 || !addr) {
				free(w);
				ok = lk->srcmask >= 0;
				break;
			}
			for (i = 0; i < (size_t)alen; i++) {
				int keep = lk->srcmask - (int)i * 8;

				want[i] &= keep >= 8 ? 0xff : keep <= 0 ? 0 : (0xff00 >> keep) & 0xff;
			}
		} else if (lineno == 2) {
			for (i = 1; i < n; i++) {
				if (!strcmp(w[i], "next_s"))
					cnext = (int)i - 1;
				if (!strcmp(w[i], "ban"))
					cban = (int)i - 1;
			}
			ok = cnext >= 0 && cban >= 0;
			if (!ok) {
				free(w);
				break;
			}
		} else if (n > (size_t)cnext && n > (size_t)cban) {
			w[0][strcspn(w[0], "/")] = '\0';
			if (inet_pton(af, w[0], have) == 1 && !memcmp(want, have, alen)) {
				lk->banned = is_yes(w[cban]);
				lk->next_s = atof(w[cnext]);
				free(w);
				break;
			}
		}
		free(w);
	}
	if (!ok)
		cs_log(LOG_ERR, "%s: not a table this command knows", path);
	free(line);
	fclose(f);
	return ok;
}

static void bouncer_ban(const struct bouncer *b, const struct decision *d, double now)
{
	double left = d->end - now;
	char line[128];
	size_t i;

	if (left > 31536000)
		left = 31536000;
	snprintf(line, sizeof(line), ">%s %.3f", d->addr, left < 0.001 ? 0.001 : left);
	for (i = 0; i < b->ntables; i++)
		if (table_exists(b->tables[i], d->ipv4) &&
		    bouncer_write(b->tables[i], d->ipv4, line))
			cs_log(LOG_INFO, "decision %lld: %s banned in %s table %s for %.0f s",
			       d->id, d->addr, family(d->ipv4), b->tables[i], left);
}

/* The last decision for @addr, ending at @end, is gone before its end. */
static void bouncer_lift(const struct bouncer *b, bool ipv4, const char *addr,
			 double end, double now)
{
	char line[128];
	size_t i;

	snprintf(line, sizeof(line), "~%s", addr);
	for (i = 0; i < b->ntables; i++) {
		struct lookup lk;

		if (!table_exists(b->tables[i], ipv4) ||
		    !table_lookup(b->tables[i], ipv4, addr, &lk) || !lk.banned)
			continue;	/* not banned (ended, or lifted by hand) */
		if (lk.next_s > end - now + LIFT_SLACK_S)
			cs_log(LOG_INFO, "%s: ban in %s table %s ends in %.0f s, after the bouncer's decisions: not ours, kept",
			       addr, family(ipv4), b->tables[i], lk.next_s);
		else if (bouncer_write(b->tables[i], ipv4, line))
			cs_log(LOG_INFO, "%s: last decision deleted: ban lifted in %s table %s, debt kept",
			       addr, family(ipv4), b->tables[i]);
	}
}

/*
 * The address a decision names, canonical, if it is one key of every table
 * of its family it would go to; false (logged) if not.
 */
static bool decision_addr(const struct bouncer *b, const char *scope,
			  const char *value, struct decision *d)
{
	unsigned char bin[16];
	char a[INET6_ADDRSTRLEN + 8];
	int len = -1;
	size_t i;

	if (strlen(value) >= sizeof(a))
		return false;
	memcpy(a, value, strlen(value) + 1);
	if (strchr(a, '/')) {
		char *end;

		len = (int)strtol(strchr(a, '/') + 1, &end, 10);
		if (*end || end == strchr(a, '/') + 1)
			return false;
		*strchr(a, '/') = '\0';
	}
	d->ipv4 = !strchr(a, ':');
	if (inet_pton(d->ipv4 ? AF_INET : AF_INET6, a, bin) != 1)
		return false;
	inet_ntop(d->ipv4 ? AF_INET : AF_INET6, bin, d->addr, sizeof(d->addr));
	if (!strcasecmp(scope, "ip"))
		return len < 0 || len == (d->ipv4 ? 32 : 128);
	if (strcasecmp(scope, "range") || len < 0)
		return false;
	for (i = 0; i < b->ntables; i++) {
		struct lookup lk;

		if (!table_exists(b->tables[i], d->ipv4) ||
		    !table_lookup(b->tables[i], d->ipv4, NULL, &lk))
			continue;
		if (lk.srcmask != len) {
			cs_log(LOG_WARNING, "range %s: not one key of %s table %s (srcmask %d): skipped",
			       value, family(d->ipv4), b->tables[i], lk.srcmask);
			return false;
		}
	}
	return true;
}

/*
 * A deletion, by value rather than by id: the LAPI (deduplicating, as it does
 * unless a bouncer asks otherwise) sends one only once no decision of that
 * type is left for the value, and none for a decision deleted while a longer
 * one holds. So every decision held for the address is over, those whose
 * deletion was never sent too.
 */
static void bouncer_del(struct bouncer *b, const char *type, const char *scope,
			const char *value, long long id, double now)
{
	struct decision d = {};
	bool found = false;
	double latest = 0;
	size_t i, k;

	if (strcmp(type, "ban") || !decision_addr(b, scope, value, &d))
		return;		/* never applied */
	for (i = k = 0; i < b->nd; i++) {
		if (b->d[i].ipv4 == d.ipv4 && !strcmp(b->d[i].addr, d.addr)) {
			if (b->d[i].end > latest)
				latest = b->d[i].end;
			found = true;
			continue;
		}
		b->d[k++] = b->d[i];
	}
	b->nd = k;
	if (!found)
		return;		/* never applied, or ended */
	b->dirty = true;
	cs_log(LOG_INFO, "decision %lld deleted: no decision left for %s", id, d.addr);
	bouncer_lift(b, d.ipv4, d.addr, latest, now);
}

static void bouncer_line(struct bouncer *b, const char *line)
{
	struct jfield f[] = {
		{ .name = "action" }, { .name = "id" }, { .name = "scope" },
		{ .name = "type" }, { .name = "value" }, { .name = "duration" },
		{ .name = "simulated" },
	};
	enum { ACTION, ID, SCOPE, TYPE, VALUE, DURATION, SIMULATED };
	double now = now_s(), dur;
	struct decision d = {};
	char *end;
	size_t i;

	if (!json_object(line, f, sizeof(f) / sizeof(f[0])) || !f[ACTION].seen ||
	    !f[ID].seen || !f[VALUE].seen || !f[SCOPE].seen) {
		cs_log(LOG_WARNING, "not a decision: %.200s", line);
		return;
	}
	d.id = strtoll(f[ID].val, &end, 10);
	if (*end) {
		cs_log(LOG_WARNING, "decision id \"%s\": not a number: skipped", f[ID].val);
		return;
	}
	state_expire(b, now);
	if (!strcmp(f[ACTION].val, "del")) {
		bouncer_del(b, f[TYPE].val, f[SCOPE].val, f[VALUE].val, d.id, now);
		return;
	}
	if (strcmp(f[ACTION].val, "add")) {
		cs_log(LOG_WARNING, "decision %lld: action \"%s\" unknown: skipped", d.id, f[ACTION].val);
		return;
	}
	if (strcmp(f[TYPE].val, "ban") || (f[SIMULATED].seen && !strcmp(f[SIMULATED].val, "true"))) {
		cs_log(LOG_INFO, "decision %lld: type \"%s\"%s: not a ban, skipped", d.id,
		       f[TYPE].val, f[SIMULATED].seen && !strcmp(f[SIMULATED].val, "true") ? " (simulated)" : "");
		return;
	}
	if (!decision_addr(b, f[SCOPE].val, f[VALUE].val, &d)) {
		cs_log(LOG_WARNING, "decision %lld: scope %s value %s: not one address of a table key: skipped",
		       d.id, f[SCOPE].val, f[VALUE].val);
		return;
	}
	if (!f[DURATION].seen || !go_duration(f[DURATION].val, &dur)) {
		cs_log(LOG_WARNING, "decision %lld: duration \"%s\": skipped", d.id, f[DURATION].val);
		return;
	}
	if (dur <= 0)
		return;		/* already over */
	d.end = now + dur;
	for (i = 0; i < b->nd && b->d[i].id != d.id; i++)
		;
	/*
	 * Sent again (a restart): the end is the latest this bouncer wrote,
	 * which the ban kept (">" never shortens), however late the first copy
	 * was read and so the later it ended.
	 */
	if (i < b->nd && b->d[i].end > d.end)
		d.end = b->d[i].end;
	if (i == b->nd) {
		b->d = xrealloc(b->d, (b->nd + 1) * sizeof(*b->d));
		b->nd++;
	}
	b->d[i] = d;
	b->dirty = true;
	bouncer_ban(b, &d, now);
}

/* Whether more of the feed can be read at once. */
static bool feed_waiting(void)
{
	struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

/*
 * The feed, a line at a time, to its end. The state file is written once
 * the lines read so far are applied and no more are waiting, not after each
 * line: at a start the LAPI sends every decision again (tens of thousands
 * with a blocklist), and a rewrite per decision would write the whole file
 * as many times. A bouncer killed in between has applied bans that its file
 * does not list yet: sent again at its restart, they are counted then; one
 * deleted meanwhile keeps its ban to its end, never lifted early.
 */
static void bouncer_feed(struct bouncer *b)
{
	static char buf[1 << 16];
	bool skipping = false;	/* in a line longer than buf */
	size_t len = 0;
	char *p, *nl;
	ssize_t r;

	for (;;) {
		r = read(STDIN_FILENO, buf + len, sizeof(buf) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		for (p = buf; (nl = memchr(p, '\n', len - (size_t)(p - buf))); p = nl + 1) {
			*nl = '\0';
			if (!skipping && *json_ws(p))
				bouncer_line(b, p);
			skipping = false;
		}
		len -= (size_t)(p - buf);
		memmove(buf, p, len);
		if (len == sizeof(buf) - 1) {
			cs_log(LOG_WARNING, "a line of over %zu bytes: skipped", len);
			len = 0;
			skipping = true;
		}
		if (b->dirty && !feed_waiting())
			state_save(b);
	}
	if (r < 0)
		cs_log(LOG_ERR, "the feed: %s", strerror(errno));
	buf[len] = '\0';
	if (!skipping && *json_ws(buf))
		bouncer_line(b, buf);
	if (b->dirty)
		state_save(b);
}

int cmd_crowdsec_bouncer(int argc, char **argv, const char *state)
{
	struct bouncer b = { .tables = argv, .ntables = argc, .state = state };
	size_t i;

	if (!argc)
		die("crowdsec-bouncer: no table named");
	for (i = 0; i < b.ntables; i++)
		if (!valid_name(b.tables[i]))
			die("bad table name \"%s\"", b.tables[i]);
	openlog("smtplimit-crowdsec", LOG_PID | LOG_PERROR, LOG_DAEMON);
	state_load(&b);
	cs_log(LOG_INFO, "started: %zu decisions in %s", b.nd, state ? state : "(no state file)");
	bouncer_feed(&b);
	cs_log(LOG_INFO, "end of the feed: %zu decisions held", b.nd);
	free(b.d);
	return 0;
}

/*
 * offenders: the evidence for a reporter (smtplimit-crowdsec-report). The
 * sources of the tables whose denied count is at least @min, that are no ban
 * (a ban is a decision already made), and that overlap no prefix of the
 * allowlist (a key holding an allowlisted address would ban it too), one a
 * line: "ADDR" for a key of one address, else "ADDR/LEN".
 */
struct prefix {
	bool ipv4;
	int len;
	unsigned char a[16];
};

static bool parse_prefix(const char *s, struct prefix *p)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;

	if (strlen(s) >= sizeof(buf))
		return false;
	memcpy(buf, s, strlen(s) + 1);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	p->ipv4 = !strchr(buf, ':');
	if (inet_pton(p->ipv4 ? AF_INET : AF_INET6, buf, p->a) != 1)
		return false;
	p->len = p->ipv4 ? 32 : 128;
	if (slash) {
		long l = strtol(slash + 1, &end, 10);

		if (*end || end == slash + 1 || l < 0 || l > p->len)
			return false;
		p->len = (int)l;
	}
	return true;
}

/* Whether @x and @y share an address: their first min(len) bits agree. */
static bool overlap(const struct prefix *x, const struct prefix *y)
{
	int bits = x->len < y->len ? x->len : y->len, i;

	if (x->ipv4 != y->ipv4)
		return false;
	for (i = 0; i < bits; i++)
		if (((x->a[i / 8] ^ y->a[i / 8]) >> (7 - i % 8)) & 1)
			return false;
	return true;
}

int cmd_offenders(int argc, char **argv, int fam, long min, const char *allow)
{
	struct prefix *ok = NULL, key;
	size_t nok = 0, cap = 0, n, i, r, k;
	char *line = NULL, addr[64];
	struct table *t;

	if (allow) {
		FILE *f = fopen(allow, "re");
		size_t lineno = 0;

		if (!f)
			die("allowlist %s: %s", allow, strerror(errno));
		while (getline(&line, &cap, f) > 0) {
			char *w = line + strspn(line, " \t");

			lineno++;
			w[strcspn(w, "# \t\n")] = '\0';
			if (!*w)
				continue;
			ok = xrealloc(ok, (nok + 1) * sizeof(*ok));
			if (!parse_prefix(w, &ok[nok++]))
				die("allowlist %s: line %zu: \"%s\" is no address or prefix",
				    allow, lineno, w);
		}
		fclose(f);
	}
	if (argc > 1)
		die("offenders [TABLE]: one table (both families) or all");
	n = select_tables(argc ? argv[0] : NULL, fam, &t);
	for (i = 0; i < n; i++) {
		const char *m = hdr_get(&t[i], "srcmask");

		for (r = 0; r < t[i].nrows; r++) {
			const char *src = row_get(&t[i], &t[i].rows[r], "source");
			const char *denied = row_get(&t[i], &t[i].rows[r], "denied");
			const char *ban = row_get(&t[i], &t[i].rows[r], "ban");

			if (!src || !denied || !is_uint(denied) || to_u64(denied) < (unsigned long long)min ||
			    (ban && is_yes(ban)) || !parse_prefix(src, &key))
				continue;
			for (k = 0; k < nok && !overlap(&key, &ok[k]); k++)
				;
			if (k < nok)
				continue;
			row_addr(addr, sizeof(addr), src);
			if (m && atoi(m) == (t[i].ipv4 ? 32 : 128))
				printf("%s\n", addr);
			else
				printf("%s/%d\n", addr, key.len);
		}
	}
	free(line);
	free(ok);
	return 0;
}
