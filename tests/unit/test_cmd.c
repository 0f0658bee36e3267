// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of the proc write's line syntax, kernel/smtplimit_cmd.c:
 * its address parser against glibc's inet_pton(3) on generated strings of
 * both families (the same answer and the same bytes for every one), and
 * each command's syntax, with the reason of each refusal.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netfilter/xt_smtplimit.h>
#include "tap.h"
#include "../../kernel/smtplimit_cmd.h"


/* xorshift64*: the same strings on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static unsigned int rnd(unsigned int n)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (unsigned int)((rng_state * 0x2545f4914f6cdd1dULL) >> 33) % n;
}

static void put(char *buf, size_t *n, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void put(char *buf, size_t *n, size_t size, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (*n >= size - 1)
		return;
	va_start(ap, fmt);
	w = vsnprintf(buf + *n, size - *n, fmt, ap);
	va_end(ap);
	if (w > 0)
		*n = *n + (size_t)w < size - 1 ? *n + (size_t)w : size - 1;
}

/* A dotted quad, more or less: 2..5 parts, some out of range or padded. */
static void gen4(char *buf, size_t *n, size_t size)
{
	unsigned int i, parts = rnd(8) ? 4 : 2 + rnd(4);

	for (i = 0; i < parts; i++) {
		unsigned int v = rnd(4) ? rnd(256) : rnd(1000);

		if (i)
			put(buf, n, size, rnd(40) ? "." : "..");
		if (!rnd(20))
			continue;	/* an empty part */
		put(buf, n, size, rnd(15) ? "%u" : "0%u", v);
	}
}

/* Groups, a "::" somewhere or not, an IPv4 tail or not, stray colons. */
static void gen6(char *buf, size_t *n, size_t size)
{
	unsigned int i, groups = rnd(10), gap = rnd(3) ? rnd(groups + 1) : 99;
	bool tail = !rnd(5);

	if (!rnd(30))
		put(buf, n, size, ":");
	for (i = 0; i < groups; i++) {
		unsigned int digits = rnd(12) ? 1 + rnd(4) : 5, d;

		if (i == gap)
			put(buf, n, size, "::");
		else if (i)
			put(buf, n, size, ":");
		for (d = 0; d < digits; d++)
			put(buf, n, size, "%c", "0123456789abcdefABCDEF"[rnd(22)]);
	}
	if (gap == groups)
		put(buf, n, size, "::");
	if (tail) {
		if (groups && gap != groups)
			put(buf, n, size, ":");
		gen4(buf, n, size);
	}
	if (!rnd(30))
		put(buf, n, size, ":");
}

/* Random bytes of an address's alphabet. */
static void gen_noise(char *buf, size_t *n, size_t size)
{
	static const char alphabet[] = "0123456789abcdefABCDEFgx:./ %-";
	unsigned int i, len = rnd(46);

	for (i = 0; i < len; i++)
		put(buf, n, size, "%c", alphabet[rnd(sizeof(alphabet) - 1)]);
}

/* One edit (replace, insert, delete a byte) of a well-formed address. */
static void gen_mutated(char *buf, size_t *n, size_t size, bool ipv4)
{
	static const char alphabet[] = "0123456789aAfF:.";
	unsigned char a[16];
	size_t len, pos;
	unsigned int i;

	for (i = 0; i < sizeof(a); i++)
		a[i] = rnd(3) ? 0 : rnd(256);
	inet_ntop(ipv4 ? AF_INET : AF_INET6, a, buf, size);
	len = strlen(buf);
	pos = rnd(len + 1);
	switch (rnd(3)) {
	case 0:
		if (pos < len)
			buf[pos] = alphabet[rnd(sizeof(alphabet) - 1)];
		break;
	case 1:
		memmove(buf + pos + 1, buf + pos, len - pos + 1);
		buf[pos] = alphabet[rnd(sizeof(alphabet) - 1)];
		break;
	default:
		if (pos < len)
			memmove(buf + pos, buf + pos + 1, len - pos);
		break;
	}
	*n = strlen(buf);
}

/* The parser and inet_pton agree on @s (NUL-terminated): answer and bytes. */
static bool agrees(bool ipv4, const char *s, unsigned int *valid)
{
	unsigned char want[16] = { 0 }, got[16] = { 0 };
	int ref = inet_pton(ipv4 ? AF_INET : AF_INET6, s, want);
	bool ours = smtplimit_addr_parse(ipv4, s, strlen(s), got);

	*valid += ref == 1;
	if ((ref == 1) != ours || (ours && memcmp(want, got, ipv4 ? 4 : 16))) {
		printf("# \"%s\" (%s): inet_pton %d, ours %d\n", s,
		       ipv4 ? "IPv4" : "IPv6", ref, ours);
		return false;
	}
	return true;
}

#define CASES 400000

static void test_addresses_against_inet_pton(void)
{
	static const char *const named[] = {
		"1:2:3:4:5:6:7::8", "1::2:3:4:5:6:7", "::1:2:3:4:5:6:7",
		"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "::",
		":::", "1:", ":1", "::1:", "1::2::3", "::ffff:192.0.2.1",
		"::192.0.2.1", "1:2:3:4:5:6:192.0.2.1", "1:2:3:4:5:6:7:192.0.2.1",
		"1:2:3:4:5::192.0.2.1", "::192.0.2.010", "02001:db8::1",
		"2001:DB8::1", "0000:0::", "192.0.2.1", "192.0.2.010",
		"192.0.2.256", "192.0.2", "192.0.2.1.", ".192.0.2.1", "0.0.0.0",
		"00.0.0.0", "1.2.3.4 ", " 1.2.3.4", "1.2.3.04", "", "::1.2.3",
		"::1.2.3.4.5", "1::1.2.3.4:5",
	};
	unsigned int i, kind, valid[2] = { 0 }, bad[2] = { 0 };
	char buf[160];
	size_t n;

	for (i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		bad[0] += !agrees(true, named[i], &valid[0]);
		bad[1] += !agrees(false, named[i], &valid[1]);
	}
	CHECK(!bad[0] && !bad[1], "%zu named strings: the same answers as inet_pton",
	      sizeof(named) / sizeof(named[0]));
	CHECK(!smtplimit_addr_parse(false, "1:2:3:4:5:6:7::8", 16, (__u8 *)buf) &&
	      smtplimit_addr_parse(false, "1::2:3:4:5:6:7", 14, (__u8 *)buf) &&
	      smtplimit_addr_parse(false, "::1:2:3:4:5:6:7", 15, (__u8 *)buf),
	      "eight groups and \"::\" refused, seven and \"::\" taken");

	for (kind = 0; kind < 2; kind++) {
		bool ipv4 = kind == 0;

		valid[kind] = 0;
		bad[kind] = 0;
		for (i = 0; i < CASES; i++) {
			n = 0;
			buf[0] = '\0';
			switch (i % 4) {
			case 0:
				gen_noise(buf, &n, sizeof(buf));
				break;
			case 1:
				gen_mutated(buf, &n, sizeof(buf), ipv4);
				break;
			default:
				if (ipv4)
					gen4(buf, &n, sizeof(buf));
				else
					gen6(buf, &n, sizeof(buf));
				break;
			}
			buf[n] = '\0';
			bad[kind] += !agrees(ipv4, buf, &valid[kind]) && bad[kind] < 20;
		}
		/* Both answers must be common, or the comparison proves little. */
		CHECK(!bad[kind] && valid[kind] > CASES / 10 &&
		      valid[kind] < CASES - CASES / 10,
		      "%s: %u generated strings, %u addresses: the same answers and bytes as inet_pton",
		      ipv4 ? "IPv4" : "IPv6", CASES, valid[kind]);
	}
}

struct line_case {
	bool ipv4;
	const char *line;
	const char *why;	/* NULL: taken */
	enum smtplimit_op op;
	const char *addr;	/* as inet_pton reads it */
	unsigned int len;
	unsigned long long ms;
};

static const struct line_case lines[] = {
	{ true, "/", NULL, SMTPLIMIT_FLUSH, NULL, 32, 0 },
	{ true, "{", NULL, SMTPLIMIT_BEGIN, NULL, 32, 0 },
	{ false, "}", NULL, SMTPLIMIT_COMMIT, NULL, 128, 0 },
	{ true, "-192.0.2.1", NULL, SMTPLIMIT_FORGET, "192.0.2.1", 32, 0 },
	{ true, "-192.0.2.1/24", NULL, SMTPLIMIT_FORGET, "192.0.2.1", 24, 0 },
	{ true, "-192.0.2.1/0", NULL, SMTPLIMIT_FORGET, "192.0.2.1", 0, 0 },
	{ true, "-192.0.2.1/00000000000000000000000000000000000000032", NULL,
	  SMTPLIMIT_FORGET, "192.0.2.1", 32, 0 },
	{ false, "-2001:db8:1::/48", NULL, SMTPLIMIT_FORGET, "2001:db8:1::", 48, 0 },
	{ false, "~2001:db8::5/128", NULL, SMTPLIMIT_UNBAN, "2001:db8::5", 128, 0 },
	{ true, "~192.0.2.1", NULL, SMTPLIMIT_UNBAN, "192.0.2.1", 32, 0 },
	{ true, "+192.0.2.1", NULL, SMTPLIMIT_BAN, "192.0.2.1", 32, 0 },
	{ true, "+192.0.2.1 60", NULL, SMTPLIMIT_BAN, "192.0.2.1", 32, 60000 },
	{ true, "+192.0.2.1 31536000", NULL, SMTPLIMIT_BAN, "192.0.2.1", 32,
	  31536000000ULL },
	{ true, "+192.0.2.1 0060", NULL, SMTPLIMIT_BAN, "192.0.2.1", 32, 60000 },
	{ true, ">192.0.2.1 60", NULL, SMTPLIMIT_BAN_AT_LEAST, "192.0.2.1", 32, 60000 },
	{ true, ">192.0.2.1 0.001", NULL, SMTPLIMIT_BAN_AT_LEAST, "192.0.2.1", 32, 1 },
	{ true, ">192.0.2.1 1.5", NULL, SMTPLIMIT_BAN_AT_LEAST, "192.0.2.1", 32, 1500 },
	{ true, ">192.0.2.1 1.25", NULL, SMTPLIMIT_BAN_AT_LEAST, "192.0.2.1", 32, 1250 },
	{ false, "=2001:db8::1 12.345", NULL, SMTPLIMIT_SET_FULL, "2001:db8::1", 128,
	  12345 },
	{ true, "=192.0.2.1 31536000.000", NULL, SMTPLIMIT_SET_FULL, "192.0.2.1", 32,
	  31536000000ULL },

	{ .ipv4 = true, .line = "", .why = "unknown command" },
	{ .ipv4 = true, .line = "*192.0.2.1", .why = "unknown command" },
	{ .ipv4 = true, .line = "192.0.2.1", .why = "unknown command" },
	{ .ipv4 = true, .line = " +192.0.2.1", .why = "unknown command" },
	{ .ipv4 = true, .line = "//", .why = "trailing characters" },
	{ .ipv4 = true, .line = "/ ", .why = "trailing characters" },
	{ .ipv4 = true, .line = "{ ", .why = "trailing characters" },
	{ .ipv4 = true, .line = "}}", .why = "trailing characters" },
	{ .ipv4 = true, .line = "+192.0.2", .why = "bad address" },
	{ .ipv4 = true, .line = "+192.0.2.256", .why = "bad address" },
	{ .ipv4 = true, .line = "+192.0.2.010", .why = "bad address" },
	{ .ipv4 = true, .line = "+2001:db8::1", .why = "bad address" },
	{ .ipv4 = false, .line = "+192.0.2.1", .why = "bad address" },
	{ .ipv4 = false, .line = "+02001:db8::1", .why = "bad address" },
	{ .ipv4 = false, .line = "-1:2:3:4:5:6:7::8", .why = "bad address" },
	{ .ipv4 = true, .line = "+ 192.0.2.1", .why = "bad address" },
	{ .ipv4 = true, .line = "-", .why = "bad address" },
	{ .ipv4 = true, .line = "-192.0.2.1/33", .why = "prefix too long" },
	{ .ipv4 = false, .line = "-2001:db8::/129", .why = "prefix too long" },
	{ .ipv4 = true, .line = "~192.0.2.1/999999999999999999999999", .why = "prefix too long" },
	{ .ipv4 = true, .line = "-192.0.2.1/", .why = "trailing characters" },
	{ .ipv4 = true, .line = "-192.0.2.1/-1", .why = "trailing characters" },
	{ .ipv4 = true, .line = "-192.0.2.1/+8", .why = "trailing characters" },
	{ .ipv4 = true, .line = "-192.0.2.1/8 ", .why = "trailing characters" },
	{ .ipv4 = true, .line = "-192.0.2.1 x", .why = "trailing characters" },
	{ .ipv4 = true, .line = "-192.0.2.1 8", .why = "trailing characters" },
	{ .ipv4 = true, .line = "+192.0.2.1/32", .why = "trailing characters" },
	{ .ipv4 = true, .line = "+192.0.2.1\r", .why = "bad address" },
	{ .ipv4 = true, .line = "+192.0.2.1 ", .why = "missing seconds" },
	{ .ipv4 = true, .line = ">192.0.2.1", .why = "missing seconds" },
	{ .ipv4 = true, .line = "=192.0.2.1", .why = "missing seconds" },
	{ .ipv4 = true, .line = "=192.0.2.1 ", .why = "missing seconds" },
	{ .ipv4 = true, .line = "+192.0.2.1  60", .why = "trailing characters" },
	{ .ipv4 = true, .line = "+192.0.2.1 60s", .why = "trailing characters" },
	{ .ipv4 = true, .line = "+192.0.2.1 +60", .why = "trailing characters" },
	{ .ipv4 = true, .line = "+192.0.2.1 60 ", .why = "trailing characters" },
	{ .ipv4 = true, .line = "+192.0.2.1 1.5", .why = "trailing characters" },
	{ .ipv4 = true, .line = ">192.0.2.1 1.", .why = "trailing characters" },
	{ .ipv4 = true, .line = ">192.0.2.1 .5", .why = "trailing characters" },
	{ .ipv4 = true, .line = ">192.0.2.1 1.2345", .why = "trailing characters" },
	{ .ipv4 = true, .line = ">192.0.2.1 1.5 ", .why = "trailing characters" },
	{ .ipv4 = true, .line = ">192.0.2.1 -1", .why = "trailing characters" },
	{ .ipv4 = true, .line = "+192.0.2.1 0", .why = "seconds out of range" },
	{ .ipv4 = true, .line = "+192.0.2.1 31536001", .why = "seconds out of range" },
	{ .ipv4 = true, .line = "+192.0.2.1 99999999999999999999999999", .why = "seconds out of range" },
	{ .ipv4 = true, .line = ">192.0.2.1 0", .why = "seconds out of range" },
	{ .ipv4 = true, .line = ">192.0.2.1 0.000", .why = "seconds out of range" },
	{ .ipv4 = true, .line = "=192.0.2.1 31536000.001", .why = "seconds out of range" },
	{ .ipv4 = true,
	  .line = "-0000000000000000000000000000000000000000000000000000000192.0.2.1",
	  .why = "line too long" },
};

static void test_lines(void)
{
	unsigned int i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		const struct line_case *c = &lines[i];
		unsigned char want[16] = { 0 };
		struct smtplimit_cmd cmd;
		const char *why = NULL;
		int err;

		err = smtplimit_cmd_parse(c->ipv4, c->line, strlen(c->line), &cmd, &why);
		if (c->why) {
			CHECK(err == -EINVAL && why && !strcmp(why, c->why),
			      "%s \"%s\" refused: %s (got %d, %s)", c->ipv4 ? "IPv4" : "IPv6",
			      c->line, c->why, err, why ? why : "no reason");
			continue;
		}
		if (c->addr)
			inet_pton(c->ipv4 ? AF_INET : AF_INET6, c->addr, want);
		CHECK(err == 0 && cmd.op == c->op && cmd.len == c->len &&
		      cmd.ms == c->ms && !memcmp(cmd.addr, want, sizeof(want)),
		      "%s \"%s\": op %u len %u ms %llu (got %d: op %u len %u ms %llu)",
		      c->ipv4 ? "IPv4" : "IPv6", c->line, c->op, c->len, c->ms, err,
		      cmd.op, cmd.len, (unsigned long long)cmd.ms);
	}
}

/* The length given is the line: what follows it is not read. */
static void test_lengths(void)
{
	struct smtplimit_cmd cmd;
	const char *why = NULL;
	char line[XT_SMTPLIMIT_LINE_MAX + 2];

	CHECK(!smtplimit_cmd_parse(true, "+192.0.2.1 60\n-junk", 13, &cmd, &why) &&
	      cmd.ms == 60000, "a line ends at its length, not at a NUL");
	CHECK(!smtplimit_cmd_parse(true, "/x", 1, &cmd, &why) &&
	      cmd.op == SMTPLIMIT_FLUSH, "bytes past the length are not read");
	memset(line, '0', sizeof(line));
	memcpy(line, "-192.0.2.1/", 11);
	memcpy(line + XT_SMTPLIMIT_LINE_MAX - 2, "32", 2);
	CHECK(!smtplimit_cmd_parse(true, line, XT_SMTPLIMIT_LINE_MAX, &cmd, &why) &&
	      cmd.len == 32, "a line of XT_SMTPLIMIT_LINE_MAX bytes is taken");
	memcpy(line + XT_SMTPLIMIT_LINE_MAX - 2, "032", 3);
	CHECK(smtplimit_cmd_parse(true, line, XT_SMTPLIMIT_LINE_MAX + 1, &cmd, &why) ==
	      -EINVAL && !strcmp(why, "line too long"), "one byte more is too long");
	CHECK(smtplimit_cmd_blank("", 0) && smtplimit_cmd_blank(" \t\r\v\f", 5) &&
	      !smtplimit_cmd_blank("  /", 3) && !smtplimit_cmd_blank("\xa0", 1),
	      "blank lines: ASCII white space only");
}

int main(void)
{
	test_addresses_against_inet_pton();
	test_lines();
	test_lengths();
	return tap_done("cmd");
}
