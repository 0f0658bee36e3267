// SPDX-License-Identifier: GPL-2.0
/*
 * The syntax of a proc write's lines; see smtplimit_cmd.h for the commands.
 * Pure functions of their arguments, no allocation, no locks: the module,
 * the admin command and the host unit tests build this same file.
 *
 * The address parser is its own, not in4_pton()/in6_pton(): those take more
 * than inet_pton(3) does (leading zeros in a dotted part, hex groups of five
 * digits, eight groups and a "::"), and an address written here must mean
 * what it means to every other tool. It follows glibc's inet_pton4() and
 * inet_pton6() step by step; tests/unit/test_cmd.c compares the two on many
 * generated strings.
 */
#ifdef __KERNEL__
#include <linux/errno.h>
#include <linux/string.h>
#else
#include <errno.h>
#include <string.h>
#endif
#include <linux/netfilter/xt_smtplimit.h>
#include "smtplimit_cmd.h"

static bool smtplimit_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int smtplimit_hex_value(char c)
{
	if (smtplimit_is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* glibc's inet_pton4(): four decimal parts, no leading zero, each <= 255. */
static bool smtplimit_addr4(const char *s, const char *end, __u8 *dst)
{
	__u8 tmp[4], *tp = tmp;
	bool saw_digit = false;
	unsigned int octets = 0;

	*tp = 0;
	while (s < end) {
		char ch = *s++;

		if (smtplimit_is_digit(ch)) {
			unsigned int val = *tp * 10 + (ch - '0');

			if (saw_digit && *tp == 0)
				return false;
			if (val > 255)
				return false;
			*tp = val;
			if (!saw_digit) {
				if (++octets > 4)
					return false;
				saw_digit = true;
			}
		} else if (ch == '.' && saw_digit) {
			if (octets == 4)
				return false;
			*++tp = 0;
			saw_digit = false;
		} else {
			return false;
		}
	}
	if (octets < 4)
		return false;
	memcpy(dst, tmp, sizeof(tmp));
	return true;
}

/*
 * glibc's inet_pton6(): groups of one to four hex digits, one "::" standing
 * for at least one zero group, an IPv4 tail in place of the last two groups.
 */
static bool smtplimit_addr6(const char *s, const char *end, __u8 *dst)
{
	__u8 tmp[16], *tp = tmp, *endp = tmp + 16, *colonp = NULL;
	unsigned int digits = 0, val = 0;
	const char *curtok;

	memset(tmp, 0, sizeof(tmp));
	if (s == end)
		return false;
	/* A leading ':' must be the start of "::". */
	if (*s == ':') {
		++s;
		if (s == end || *s != ':')
			return false;
	}
	curtok = s;
	while (s < end) {
		char ch = *s++;
		int digit = smtplimit_hex_value(ch);

		if (digit >= 0) {
			if (digits == 4)
				return false;
			val = val << 4 | digit;
			digits++;
			continue;
		}
		if (ch == ':') {
			curtok = s;
			if (!digits) {
				if (colonp)
					return false;
				colonp = tp;
				continue;
			} else if (s == end) {
				return false;	/* a trailing single ':' */
			}
			if (tp + 2 > endp)
				return false;
			*tp++ = val >> 8;
			*tp++ = val & 0xff;
			digits = 0;
			val = 0;
			continue;
		}
		if (ch == '.' && tp + 4 <= endp &&
		    smtplimit_addr4(curtok, end, tp)) {
			tp += 4;
			digits = 0;
			break;		/* the IPv4 tail took the rest */
		}
		return false;
	}
	if (digits) {
		if (tp + 2 > endp)
			return false;
		*tp++ = val >> 8;
		*tp++ = val & 0xff;
	}
	if (colonp) {
		size_t n = tp - colonp;

		/* "::" must stand for at least one group. */
		if (tp == endp)
			return false;
		memmove(endp - n, colonp, n);
		memset(colonp, 0, endp - n - colonp);
		tp = endp;
	}
	if (tp != endp)
		return false;
	memcpy(dst, tmp, sizeof(tmp));
	return true;
}

bool smtplimit_addr_parse(bool ipv4, const char *s, size_t len, __u8 *addr)
{
	return ipv4 ? smtplimit_addr4(s, s + len, addr) :
		      smtplimit_addr6(s, s + len, addr);
}

bool smtplimit_cmd_blank(const char *line, size_t len)
{
	for (; len; line++, len--)
		if (!memchr(" \t\n\v\f\r", *line, 6))
			return false;
	return true;
}

/*
 * Decimal digits from *@p, at least one: their value, saturated at @cap + 1
 * so that no run of digits overflows and any beyond @cap is refused.
 */
static bool smtplimit_digits(const char **p, const char *end, __u64 cap,
			     __u64 *val)
{
	const char *s = *p;

	*val = 0;
	for (; s < end && smtplimit_is_digit(*s); s++) {
		*val = *val * 10 + (*s - '0');
		if (*val > cap)
			*val = cap + 1;
	}
	if (s == *p)
		return false;
	*p = s;
	return true;
}

/* " S[.fff]" in milliseconds, 0 < ms <= XT_SMTPLIMIT_BAN_MAX s. */
static int smtplimit_parse_ms(const char **p, const char *end, bool fraction,
			      __u64 *ms, const char **why)
{
	const __u64 max = (__u64)XT_SMTPLIMIT_BAN_MAX * 1000;
	const char *s = *p;
	__u64 secs;

	if (s == end || (*s == ' ' && s + 1 == end)) {
		*why = "missing seconds";
		return -EINVAL;
	}
	if (*s++ != ' ' || !smtplimit_digits(&s, end, XT_SMTPLIMIT_BAN_MAX,
					     &secs)) {
		*why = "trailing characters";
		return -EINVAL;
	}
	*ms = secs * 1000;
	if (fraction && s < end && *s == '.' && s + 1 < end &&
	    smtplimit_is_digit(s[1])) {
		unsigned int i, scale = 100;

		s++;
		for (i = 0; i < 3 && s < end && smtplimit_is_digit(*s); i++) {
			*ms += (*s++ - '0') * scale;
			scale /= 10;
		}
	}
	if (s != end) {
		*why = "trailing characters";
		return -EINVAL;
	}
	if (!*ms || *ms > max) {
		*why = "seconds out of range";
		return -EINVAL;
	}
	*p = s;
	return 0;
}

int smtplimit_cmd_parse(bool ipv4, const char *line, size_t len,
			struct smtplimit_cmd *cmd, const char **why)
{
	const unsigned int width = ipv4 ? 32 : 128;
	const char *end = line + len, *p, *a;
	bool prefix;
	__u64 val;

	memset(cmd, 0, sizeof(*cmd));
	cmd->len = width;
	if (len > XT_SMTPLIMIT_LINE_MAX) {
		*why = "line too long";
		return -EINVAL;
	}
	switch (len ? line[0] : '\0') {
	case '/':
		cmd->op = SMTPLIMIT_FLUSH;
		break;
	case '{':
		cmd->op = SMTPLIMIT_BEGIN;
		break;
	case '}':
		cmd->op = SMTPLIMIT_COMMIT;
		break;
	case '-':
		cmd->op = SMTPLIMIT_FORGET;
		break;
	case '+':
		cmd->op = SMTPLIMIT_BAN;
		break;
	case '>':
		cmd->op = SMTPLIMIT_BAN_AT_LEAST;
		break;
	case '~':
		cmd->op = SMTPLIMIT_UNBAN;
		break;
	case '=':
		cmd->op = SMTPLIMIT_SET_FULL;
		break;
	default:
		*why = "unknown command";
		return -EINVAL;
	}
	p = line + 1;
	if (cmd->op == SMTPLIMIT_FLUSH || cmd->op == SMTPLIMIT_BEGIN ||
	    cmd->op == SMTPLIMIT_COMMIT) {
		if (p != end) {
			*why = "trailing characters";
			return -EINVAL;
		}
		return 0;
	}

	/* The address runs to the first ' ' or '/', or to the end. */
	prefix = cmd->op == SMTPLIMIT_FORGET || cmd->op == SMTPLIMIT_UNBAN;
	for (a = p; p < end && *p != ' ' && *p != '/'; p++)
		;
	if (!smtplimit_addr_parse(ipv4, a, p - a, cmd->addr)) {
		*why = "bad address";
		return -EINVAL;
	}

	if (prefix) {
		if (p == end)
			return 0;
		if (*p != '/') {
			*why = "trailing characters";
			return -EINVAL;
		}
		p++;
		if (!smtplimit_digits(&p, end, width, &val) || p != end) {
			*why = "trailing characters";
			return -EINVAL;
		}
		if (val > width) {
			*why = "prefix too long";
			return -EINVAL;
		}
		cmd->len = val;
		return 0;
	}

	/* "+ADDR" alone empties the bucket; the others need their time. */
	if (cmd->op == SMTPLIMIT_BAN && p == end)
		return 0;
	return smtplimit_parse_ms(&p, end, cmd->op != SMTPLIMIT_BAN, &cmd->ms,
				  why);
}
