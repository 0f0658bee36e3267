// SPDX-License-Identifier: GPL-2.0
/*
 * iptables extension for xt_smtplimit: per-source limit of new connections.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xtables.h>
#include <linux/netfilter/xt_smtplimit.h>
#include "../kernel/smtplimit_rate.h"
#include "smtplimit_parse.h"

enum {
	O_UPTO = 0,
	O_ABOVE,
	O_BURST,
	O_NAME,
	O_SRCMASK,
	O_HTABLE_MAX,
	O_STRICT,
	F_UPTO = 1 << O_UPTO,
	F_ABOVE = 1 << O_ABOVE,
};

#define s struct xt_smtplimit_mtinfo
static const struct xt_option_entry smtplimit_mt_opts[] = {
	{.name = "smtplimit-upto", .id = O_UPTO, .excl = F_ABOVE,
	 .type = XTTYPE_STRING},
	{.name = "smtplimit", .id = O_UPTO, .excl = F_ABOVE,
	 .type = XTTYPE_STRING},
	{.name = "smtplimit-above", .id = O_ABOVE, .excl = F_UPTO,
	 .type = XTTYPE_STRING},
	{.name = "smtplimit-burst", .id = O_BURST, .type = XTTYPE_UINT32,
	 .min = XT_SMTPLIMIT_BURST_MIN, .max = XT_SMTPLIMIT_BURST_MAX,
	 .flags = XTOPT_PUT, XTOPT_POINTER(s, burst)},
	{.name = "smtplimit-name", .id = O_NAME, .type = XTTYPE_STRING,
	 .flags = XTOPT_MAND},
	{.name = "smtplimit-srcmask", .id = O_SRCMASK, .type = XTTYPE_PLEN},
	{.name = "smtplimit-htable-max", .id = O_HTABLE_MAX,
	 .type = XTTYPE_UINT32, .min = 1, .max = XT_SMTPLIMIT_HTABLE_MAX_LIMIT,
	 .flags = XTOPT_PUT, XTOPT_POINTER(s, htable_max)},
	{.name = "smtplimit-strict", .id = O_STRICT, .type = XTTYPE_NONE},
	XTOPT_TABLEEND,
};
#undef s

static void smtplimit_mt_help(void)
{
	printf(
"smtplimit match options:\n"
"  --smtplimit-upto RATE       match while a source is within RATE\n"
"  --smtplimit RATE            the same\n"
"  --smtplimit-above RATE      match once a source is over RATE\n"
"                              RATE: N[/second|/minute|/hour|/day], any\n"
"                              prefix of the unit, 1/day to 10000/second\n"
"  --smtplimit-burst N         attempts a full bucket allows (default %u,\n"
"                              up to %u)\n"
"  --smtplimit-name NAME       table name, shared by rules naming it\n"
"                              (required; /proc/net/ipt_smtplimit/NAME)\n"
"  --smtplimit-srcmask LEN     group sources by prefix (default 32, IPv6 64)\n"
"  --smtplimit-htable-max N    most sources tracked (default %u, up to %u)\n"
"  --smtplimit-strict          denied attempts cost a token too: a source\n"
"                              retrying faster than RATE never passes\n"
"                              (use with -j REJECT --reject-with tcp-reset)\n",
	       XT_SMTPLIMIT_BURST_DEFAULT, XT_SMTPLIMIT_BURST_MAX,
	       XT_SMTPLIMIT_HTABLE_MAX_DEFAULT, XT_SMTPLIMIT_HTABLE_MAX_LIMIT);
}

static void smtplimit_mt_init(struct xt_entry_match *m, unsigned int srcmask)
{
	struct xt_smtplimit_mtinfo *info = (void *)m->data;

	info->burst = XT_SMTPLIMIT_BURST_DEFAULT;
	info->htable_max = XT_SMTPLIMIT_HTABLE_MAX_DEFAULT;
	info->srcmask = srcmask;
}

static void smtplimit_mt4_init(struct xt_entry_match *m)
{
	smtplimit_mt_init(m, XT_SMTPLIMIT_SRCMASK_IPV4);
}

static void smtplimit_mt6_init(struct xt_entry_match *m)
{
	smtplimit_mt_init(m, XT_SMTPLIMIT_SRCMASK_IPV6);
}

static void smtplimit_parse_rate_option(struct xt_option_call *cb,
					struct xt_smtplimit_mtinfo *info)
{
	int err = smtplimit_parse_rate(cb->arg, &info->rate);

	if (err == -ERANGE)
		xtables_error(PARAMETER_PROBLEM,
			      "smtplimit: rate \"%s\" for --%s is out of range: 1/day to 10000/second",
			      cb->arg, cb->entry->name);
	if (err)
		xtables_error(PARAMETER_PROBLEM,
			      "smtplimit: bad rate \"%s\" for --%s: want N or N/UNIT, UNIT a prefix of second, minute, hour or day",
			      cb->arg, cb->entry->name);
}

static void smtplimit_mt_parse(struct xt_option_call *cb, unsigned int width)
{
	struct xt_smtplimit_mtinfo *info = cb->data;
	int err;

	xtables_option_parse(cb);
	switch (cb->entry->id) {
	case O_UPTO:
		smtplimit_parse_rate_option(cb, info);
		info->flags &= ~XT_SMTPLIMIT_F_ABOVE;
		break;
	case O_ABOVE:
		smtplimit_parse_rate_option(cb, info);
		info->flags |= XT_SMTPLIMIT_F_ABOVE;
		break;
	case O_NAME:
		err = smtplimit_check_name(cb->arg, strlen(cb->arg) + 1);
		if (err == -ENAMETOOLONG)
			xtables_error(PARAMETER_PROBLEM,
				      "smtplimit: --smtplimit-name is longer than %u bytes",
				      XT_SMTPLIMIT_NAME_LEN - 1);
		if (err)
			xtables_error(PARAMETER_PROBLEM,
				      "smtplimit: --smtplimit-name \"%s\" must be 1 to %u characters of A-Z a-z 0-9 . _ - and not \".\" or \"..\"",
				      cb->arg, XT_SMTPLIMIT_NAME_LEN - 1);
		strcpy(info->name, cb->arg);
		break;
	case O_STRICT:
		info->flags |= XT_SMTPLIMIT_F_STRICT;
		break;
	case O_SRCMASK:
		if (cb->val.hlen > width)
			xtables_error(PARAMETER_PROBLEM,
				      "smtplimit: --smtplimit-srcmask %u is out of range 0-%u",
				      cb->val.hlen, width);
		info->srcmask = cb->val.hlen;
		break;
	}
}

static void smtplimit_mt4_parse(struct xt_option_call *cb)
{
	smtplimit_mt_parse(cb, 32);
}

static void smtplimit_mt6_parse(struct xt_option_call *cb)
{
	smtplimit_mt_parse(cb, 128);
}

static void smtplimit_mt_check(struct xt_fcheck_call *cb)
{
	if (!(cb->xflags & (F_UPTO | F_ABOVE)))
		xtables_error(PARAMETER_PROBLEM,
			      "smtplimit: --smtplimit-upto or --smtplimit-above is required");
}

static void smtplimit_print_rate(uint32_t rate)
{
	uint32_t count;
	const char *unit = smtplimit_rate_split(rate, &count);

	printf("%u/%s", count, unit);
}

static void smtplimit_mt_print(const struct xt_smtplimit_mtinfo *info,
			       unsigned int default_srcmask)
{
	printf(" smtplimit: %s ",
	       info->flags & XT_SMTPLIMIT_F_ABOVE ? "above" : "up to");
	smtplimit_print_rate(info->rate);
	printf(" burst %u", info->burst);
	if (info->flags & XT_SMTPLIMIT_F_STRICT)
		printf(" strict");
	if (info->srcmask != default_srcmask)
		printf(" srcmask %u", info->srcmask);
	if (info->htable_max != XT_SMTPLIMIT_HTABLE_MAX_DEFAULT)
		printf(" htable-max %u", info->htable_max);
	printf(" name %s", info->name);
}

static void smtplimit_mt4_print(const void *ip __attribute__((unused)),
				const struct xt_entry_match *m,
				int numeric __attribute__((unused)))
{
	smtplimit_mt_print((const void *)m->data, XT_SMTPLIMIT_SRCMASK_IPV4);
}

static void smtplimit_mt6_print(const void *ip __attribute__((unused)),
				const struct xt_entry_match *m,
				int numeric __attribute__((unused)))
{
	smtplimit_mt_print((const void *)m->data, XT_SMTPLIMIT_SRCMASK_IPV6);
}

static void smtplimit_mt_save(const struct xt_smtplimit_mtinfo *info,
			      unsigned int default_srcmask)
{
	printf(" --smtplimit-%s ",
	       info->flags & XT_SMTPLIMIT_F_ABOVE ? "above" : "upto");
	smtplimit_print_rate(info->rate);
	printf(" --smtplimit-burst %u", info->burst);
	if (info->flags & XT_SMTPLIMIT_F_STRICT)
		printf(" --smtplimit-strict");
	if (info->srcmask != default_srcmask)
		printf(" --smtplimit-srcmask %u", info->srcmask);
	if (info->htable_max != XT_SMTPLIMIT_HTABLE_MAX_DEFAULT)
		printf(" --smtplimit-htable-max %u", info->htable_max);
	printf(" --smtplimit-name %s", info->name);
}

static void smtplimit_mt4_save(const void *ip __attribute__((unused)),
			       const struct xt_entry_match *m)
{
	smtplimit_mt_save((const void *)m->data, XT_SMTPLIMIT_SRCMASK_IPV4);
}

static void smtplimit_mt6_save(const void *ip __attribute__((unused)),
			       const struct xt_entry_match *m)
{
	smtplimit_mt_save((const void *)m->data, XT_SMTPLIMIT_SRCMASK_IPV6);
}

/*
 * The nearest nftables rule: a meter keyed by the masked source with a limit,
 * its entries timing out when a drained bucket would be full again. Token
 * state, strict mode and bans do not carry over; forget and flush become
 * "nft delete element" and "nft flush set" (see the man page).
 */
static int smtplimit_mt_xlate(struct xt_xlate *xl,
			      const struct xt_smtplimit_mtinfo *info,
			      unsigned int width)
{
	uint64_t refill = ((uint64_t)info->burst * XT_SMTPLIMIT_SECONDS_PER_DAY +
			   info->rate - 1) / info->rate;
	uint32_t count;
	const char *unit = smtplimit_rate_split(info->rate, &count);

	xt_xlate_add(xl, "meter %s { %s saddr", info->name,
		     width == 32 ? "ip" : "ip6");
	if (info->srcmask != width) {
		char mask[INET6_ADDRSTRLEN];
		uint32_t words[4] = {};
		unsigned int i;

		for (i = 0; i < info->srcmask; i++)
			words[i / 32] |= 1U << (31 - i % 32);
		for (i = 0; i < 4; i++)
			words[i] = htonl(words[i]);
		inet_ntop(width == 32 ? AF_INET : AF_INET6, words, mask,
			  sizeof(mask));
		xt_xlate_add(xl, " and %s", mask);
	}
	xt_xlate_add(xl, " timeout %llus limit rate %s%u/%s burst %u packets }",
		     (unsigned long long)refill,
		     info->flags & XT_SMTPLIMIT_F_ABOVE ? "over " : "",
		     count, unit, info->burst);
	if (info->flags & XT_SMTPLIMIT_F_STRICT)
		xt_xlate_add_comment(xl, "\"smtplimit-strict not translated\"");
	return 1;
}

static int smtplimit_mt4_xlate(struct xt_xlate *xl,
			       const struct xt_xlate_mt_params *params)
{
	return smtplimit_mt_xlate(xl, (const void *)params->match->data, 32);
}

static int smtplimit_mt6_xlate(struct xt_xlate *xl,
			       const struct xt_xlate_mt_params *params)
{
	return smtplimit_mt_xlate(xl, (const void *)params->match->data, 128);
}

static struct xtables_match smtplimit_mt_reg[] = {
	{
		.version	= XTABLES_VERSION,
		.name		= "smtplimit",
		.revision	= 0,
		.family		= NFPROTO_IPV4,
		.size		= XT_ALIGN(sizeof(struct xt_smtplimit_mtinfo)),
		.userspacesize	= offsetof(struct xt_smtplimit_mtinfo, priv),
		.help		= smtplimit_mt_help,
		.init		= smtplimit_mt4_init,
		.x6_parse	= smtplimit_mt4_parse,
		.x6_fcheck	= smtplimit_mt_check,
		.x6_options	= smtplimit_mt_opts,
		.print		= smtplimit_mt4_print,
		.save		= smtplimit_mt4_save,
		.xlate		= smtplimit_mt4_xlate,
	},
	{
		.version	= XTABLES_VERSION,
		.name		= "smtplimit",
		.revision	= 0,
		.family		= NFPROTO_IPV6,
		.size		= XT_ALIGN(sizeof(struct xt_smtplimit_mtinfo)),
		.userspacesize	= offsetof(struct xt_smtplimit_mtinfo, priv),
		.help		= smtplimit_mt_help,
		.init		= smtplimit_mt6_init,
		.x6_parse	= smtplimit_mt6_parse,
		.x6_fcheck	= smtplimit_mt_check,
		.x6_options	= smtplimit_mt_opts,
		.print		= smtplimit_mt6_print,
		.save		= smtplimit_mt6_save,
		.xlate		= smtplimit_mt6_xlate,
	},
};

static __attribute__((constructor)) void smtplimit_mt_ldr(void)
{
	xtables_register_matches(smtplimit_mt_reg,
				 sizeof(smtplimit_mt_reg) /
				 sizeof(smtplimit_mt_reg[0]));
}
