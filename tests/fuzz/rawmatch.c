// SPDX-License-Identifier: GPL-2.0
/*
 * A test-only iptables extension for the fuzzers: registers "smtplimit" with
 * one option, --smtplimit-raw HEX, whose bytes become the match data as they
 * are (the kernel-private priv pointer included), so that corrupted match
 * data reaches the kernel through iptables-nft (nft_compat) too. Built as
 * tests/fuzz/xtraw/libxt_smtplimit.so; never install it.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <xtables.h>
#include <linux/netfilter/xt_smtplimit.h>

#define INFO_SIZE sizeof(struct xt_smtplimit_mtinfo)

static const struct xt_option_entry raw_opts[] = {
	{.name = "smtplimit-raw", .id = 0, .type = XTTYPE_STRING,
	 .flags = XTOPT_MAND},
	XTOPT_TABLEEND,
};

static void raw_help(void)
{
	printf("smtplimit (raw test plugin) options:\n"
	       "  --smtplimit-raw HEX    the match data, %zu bytes in hex\n",
	       INFO_SIZE);
}

static void raw_parse(struct xt_option_call *cb)
{
	unsigned char *data = cb->data;
	size_t i;

	xtables_option_parse(cb);
	if (strlen(cb->arg) != 2 * INFO_SIZE)
		xtables_error(PARAMETER_PROBLEM, "smtplimit-raw: want %zu hex bytes",
			      INFO_SIZE);
	for (i = 0; i < INFO_SIZE; i++) {
		unsigned int byte;

		if (sscanf(cb->arg + 2 * i, "%2x", &byte) != 1)
			xtables_error(PARAMETER_PROBLEM, "smtplimit-raw: bad hex");
		data[i] = (unsigned char)byte;
	}
}

static void raw_save(const void *ip __attribute__((unused)),
		     const struct xt_entry_match *m)
{
	size_t i;

	printf(" --smtplimit-raw ");
	for (i = 0; i < INFO_SIZE; i++)
		printf("%02x", m->data[i]);
}

static void raw_print(const void *ip, const struct xt_entry_match *m,
		      int numeric __attribute__((unused)))
{
	raw_save(ip, m);
}

static struct xtables_match raw_mt_reg = {
	.version	= XTABLES_VERSION,
	.name		= "smtplimit",
	.revision	= 0,
	.family		= NFPROTO_UNSPEC,
	.size		= XT_ALIGN(INFO_SIZE),
	.userspacesize	= offsetof(struct xt_smtplimit_mtinfo, priv),
	.help		= raw_help,
	.x6_parse	= raw_parse,
	.x6_options	= raw_opts,
	.print		= raw_print,
	.save		= raw_save,
};

static __attribute__((constructor)) void raw_mt_ldr(void)
{
	xtables_register_match(&raw_mt_reg);
}
