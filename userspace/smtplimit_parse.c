// SPDX-License-Identifier: GPL-2.0
/*
 * Parsing of the iptables extension's values, kept apart from libxtables so
 * that the host unit tests link the same code.
 */
#include <errno.h>
#include <string.h>
#include <linux/netfilter/xt_smtplimit.h>
#include "../kernel/smtplimit_rate.h"
#include "smtplimit_parse.h"

/*
 * RATE is N or N/UNIT, N a decimal count from 1, UNIT any non-empty prefix of
 * second, minute, hour or day. Stores attempts per day.
 * Returns 0, -EINVAL for bad syntax or -ERANGE outside 1/day..10000/second.
 */
int smtplimit_parse_rate(const char *text, uint32_t *rate)
{
	const struct smtplimit_unit *unit = &smtplimit_units[0];
	const char *p = text;
	uint64_t count = 0;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		count = count * 10 + (uint64_t)(*p - '0');
		if (count > XT_SMTPLIMIT_RATE_MAX)
			count = (uint64_t)XT_SMTPLIMIT_RATE_MAX + 1;
	}
	if (*p == '/') {
		size_t len = strlen(++p);
		unsigned int i;

		unit = NULL;
		for (i = 0; len > 0 && i < SMTPLIMIT_NUNITS; i++)
			if (strncmp(p, smtplimit_units[i].name, len) == 0 &&
			    len <= strlen(smtplimit_units[i].name))
				unit = &smtplimit_units[i];
		if (!unit)
			return -EINVAL;
	} else if (*p != '\0') {
		return -EINVAL;
	}
	count *= XT_SMTPLIMIT_SECONDS_PER_DAY / unit->seconds;
	if (count < XT_SMTPLIMIT_RATE_MIN || count > XT_SMTPLIMIT_RATE_MAX)
		return -ERANGE;
	*rate = (uint32_t)count;
	return 0;
}
