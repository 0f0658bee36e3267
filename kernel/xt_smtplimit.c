// SPDX-License-Identifier: GPL-2.0
/*
 * xt_smtplimit: limit new connections per source address, e.g. to SMTP.
 *
 * Each table tracks sources (addresses masked to a prefix) in an rhashtable;
 * a source's whole state is the GCRA theoretical arrival time described in
 * smtplimit_rate.h. Rules name a table and bring their own rate and burst, so
 * the committed ruleset decides and a reload keeps every source's state.
 * The state is readable under /proc/net/ipt_smtplimit/<name> and
 * /proc/net/ip6t_smtplimit/<name> (smtplimit_proc.c), which take commands
 * written to them (smtplimit_write.c).
 *
 * This file owns the module: its parameters and clock, the match on the
 * packet path, checkentry and destroy, the per-netns state and load and
 * unload. The tables are in smtplimit_table.c.
 *
 * Locking: the match runs in softirq under RCU and takes only an entry's
 * lock. Checkentry, destroy and the netns exit hold smtplimit_mutex, which
 * guards the table and rule lists and the proc directories, and never wait
 * under it for a table's teardown (the full rules are in smtplimit_table.h).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter/xt_smtplimit.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "smtplimit_table.h"

MODULE_LICENSE("GPL");
MODULE_AUTHOR("xt_smtplimit developers");
MODULE_DESCRIPTION("Xtables: per-source limit of new connections, with readable state");
MODULE_VERSION(XT_SMTPLIMIT_VERSION);
MODULE_ALIAS("ipt_smtplimit");
MODULE_ALIAS("ip6t_smtplimit");
#if SMTPLIMIT_MUTANT
MODULE_INFO(smtplimit_mutant, __stringify(SMTPLIMIT_MUTANT));
#endif

/* Module parameters */

unsigned int smtplimit_netns_max_entries __read_mostly = 4194304;
module_param_named(netns_max_entries, smtplimit_netns_max_entries, uint, 0644);
MODULE_PARM_DESC(netns_max_entries,
		 "most sources tracked by all tables of one network namespace together (default 4194304)");

/*
 * The tables of network namespaces owned by a user namespace other than the
 * initial one: any local user can create those, as many as it likes.
 */
unsigned int smtplimit_userns_max_entries __read_mostly = 65536;
module_param_named(userns_max_entries, smtplimit_userns_max_entries, uint,
		   0644);
MODULE_PARM_DESC(userns_max_entries,
		 "most sources one table of a non-initial user namespace tracks: a larger htable-max is clamped to it (default 65536)");

/* 0 at load: sized from RAM by smtplimit_userns_total_init(). */
unsigned int smtplimit_userns_total_entries __read_mostly;
module_param_named(userns_total_entries, smtplimit_userns_total_entries, uint,
		   0644);
MODULE_PARM_DESC(userns_total_entries,
		 "most sources tracked by all tables of non-initial user namespaces together (default: one per 8 KiB of RAM)");

/* Places taken in the tables of non-initial user namespaces. */
atomic_t smtplimit_userns_entries = ATOMIC_INIT(0);

unsigned int smtplimit_proc_snapshot_ms __read_mostly = 1000;
module_param_named(proc_snapshot_ms, smtplimit_proc_snapshot_ms, uint, 0644);
MODULE_PARM_DESC(proc_snapshot_ms,
		 "how long the readers of a proc file share one copy of its table, in ms (default 1000)");

/* Set at load from HZ: the units of every TAT. */
struct smtplimit_clock smtplimit_clock __read_mostly;

static unsigned int smtplimit_net_id __read_mostly;

/* Table lists, rule lists and proc directories. Never taken by proc reads. */
DEFINE_MUTEX(smtplimit_mutex);

static struct smtplimit_net *smtplimit_pernet(struct net *net)
{
	return net_generic(net, smtplimit_net_id);
}

/* The match */

static void smtplimit_key(const struct smtplimit_table *t,
			  const struct sk_buff *skb, union smtplimit_addr *key)
{
	const __be32 *src;
	unsigned int i;

	if (smtplimit_is_ipv4(t)) {
		key->ip = ip_hdr(skb)->saddr & t->mask.ip;
		return;
	}
	src = ipv6_hdr(skb)->saddr.s6_addr32;
	for (i = 0; i < 4; i++)
		key->ip6.s6_addr32[i] = src[i] & t->mask.ip6.s6_addr32[i];
	if (SMTPLIMIT_MUTANT_IS(7))
		key->ip6 = ipv6_hdr(skb)->saddr;
}

/*
 * The attempt of a mutant build (smtplimit_mutant.h): 1, 2 and 6 fault the
 * rule's bucket, 4 judges a banned source as a fresh one. Under e->lock.
 */
static bool smtplimit_mutant_attempt(struct smtplimit_entry *e, u64 now,
				     const struct smtplimit_bucket *rule)
{
	struct smtplimit_bucket bucket = *rule;
	u64 fresh = now;

	if (SMTPLIMIT_MUTANT_IS(1)) {
		bucket.interval /= 2;
		bucket.tolerance /= 2;
		bucket.slack = min(bucket.slack, bucket.interval - 1);
	}
	if (SMTPLIMIT_MUTANT_IS(2))
		bucket.tolerance += bucket.interval;
	if (SMTPLIMIT_MUTANT_IS(6))
		bucket.strict = false;
	if (SMTPLIMIT_MUTANT_IS(4) && e->banned)
		return smtplimit_attempt(&fresh, now, &bucket);
	return smtplimit_attempt(&e->tat, now, &bucket);
}

static bool smtplimit_mt(const struct sk_buff *skb, struct xt_action_param *par)
{
	const struct xt_smtplimit_mtinfo *info = par->matchinfo;
	const struct xt_smtplimit_priv *priv = info->priv;
	struct smtplimit_table *t = priv->table;
	union smtplimit_addr key;
	struct smtplimit_entry *e;
	u64 now = smtplimit_now();
	unsigned int tries;
	bool pass = true;

	smtplimit_key(t, skb, &key);
	/* An entry found dead is being unhashed: one more lookup creates anew. */
	for (tries = 0; tries < 2; tries++) {
		e = smtplimit_lookup(t, &key);
		if (!e)
			e = smtplimit_entry_create(t, &key, now);
		if (!e)
			break;
		spin_lock_bh(&e->lock);
		if (likely(!e->dead)) {
			if (SMTPLIMIT_MUTANT)
				pass = smtplimit_mutant_attempt(e, now,
								&priv->bucket);
			else
				pass = smtplimit_attempt(&e->tat, now,
							 &priv->bucket);
			if (pass)
				e->passed++;
			else
				e->denied++;
			spin_unlock_bh(&e->lock);
			goto judged;
		}
		spin_unlock_bh(&e->lock);
	}
	/* Untracked: judged as a fresh source, whose full bucket passes. */
	this_cpu_inc(t->stats->untracked);
judged:
	if (pass)
		this_cpu_inc(t->stats->passed);
	else
		this_cpu_inc(t->stats->denied);
	return pass ^ !!(info->flags & XT_SMTPLIMIT_F_ABOVE);
}

/* Rules */

static int smtplimit_mt_check_info(const struct xt_mtchk_param *par,
				   const struct xt_smtplimit_mtinfo *info)
{
	unsigned int width = par->family == NFPROTO_IPV4 ? 32 : 128;
	int err;

	err = smtplimit_check_name(info->name, sizeof(info->name));
	if (err == -ENAMETOOLONG) {
		pr_info_ratelimited("table name longer than %u bytes\n",
				    XT_SMTPLIMIT_NAME_LEN - 1);
		return err;
	}
	if (err) {
		pr_info_ratelimited("table name empty, \".\", \"..\" or not of [A-Za-z0-9._-]\n");
		return err;
	}
	if (info->flags & ~XT_SMTPLIMIT_F_ALL || info->reserved) {
		pr_info_ratelimited("%s: unknown flags 0x%x or reserved 0x%x\n",
				    info->name, info->flags, info->reserved);
		return -EINVAL;
	}
	if (info->rate < XT_SMTPLIMIT_RATE_MIN ||
	    info->rate > XT_SMTPLIMIT_RATE_MAX) {
		pr_info_ratelimited("%s: rate %u per day outside %u..%u (1/day..10000/second)\n",
				    info->name, info->rate,
				    XT_SMTPLIMIT_RATE_MIN, XT_SMTPLIMIT_RATE_MAX);
		return -ERANGE;
	}
	if (info->burst < XT_SMTPLIMIT_BURST_MIN ||
	    info->burst > XT_SMTPLIMIT_BURST_MAX) {
		pr_info_ratelimited("%s: burst %u outside %u..%u\n", info->name,
				    info->burst, XT_SMTPLIMIT_BURST_MIN,
				    XT_SMTPLIMIT_BURST_MAX);
		return -ERANGE;
	}
	if (info->htable_max < 1 ||
	    info->htable_max > XT_SMTPLIMIT_HTABLE_MAX_LIMIT) {
		pr_info_ratelimited("%s: htable-max %u outside 1..%u\n",
				    info->name, info->htable_max,
				    XT_SMTPLIMIT_HTABLE_MAX_LIMIT);
		return -ERANGE;
	}
	if (info->srcmask > width) {
		pr_info_ratelimited("%s: srcmask %u outside 0..%u\n", info->name,
				    info->srcmask, width);
		return -ERANGE;
	}
	return 0;
}

static int smtplimit_mt_check(const struct xt_mtchk_param *par)
{
	struct xt_smtplimit_mtinfo *info = par->matchinfo;
	struct smtplimit_net *sn = smtplimit_pernet(par->net);
	struct xt_smtplimit_priv *priv;
	struct smtplimit_table *t;
	int err;

	err = smtplimit_mt_check_info(par, info);
	if (err)
		return err;

	priv = kzalloc(sizeof(*priv), GFP_KERNEL_ACCOUNT);
	if (!priv)
		return -ENOMEM;
	smtplimit_bucket_init(&priv->bucket, &smtplimit_clock, info->rate,
			      info->burst, info->flags & XT_SMTPLIMIT_F_STRICT);
	priv->rate = info->rate;
	priv->max = info->htable_max;

	mutex_lock(&smtplimit_mutex);
	t = smtplimit_table_find(sn, par->family, info->name);
	if (!t) {	/* a destroyed one may still hold the proc name */
		err = smtplimit_table_wait_name(sn, par->family, info->name);
		if (err)
			goto unlock;
		t = smtplimit_table_find(sn, par->family, info->name);
	}
	if (t && t->srcmask != info->srcmask) {
		pr_info_ratelimited("%s: table exists with srcmask %u, rule asks for %u\n",
				    info->name, t->srcmask, info->srcmask);
		err = -EEXIST;
		goto unlock;
	}
	if (!t) {
		t = smtplimit_table_create(sn, par->net, par->family, info);
		if (IS_ERR(t)) {
			err = PTR_ERR(t);
			goto unlock;
		}
	}
	priv->table = t;
	list_add_tail(&priv->node, &t->rules);
	smtplimit_table_follow_rules(t, false);
	info->priv = priv;
unlock:
	mutex_unlock(&smtplimit_mutex);
	if (err)
		kfree(priv);
	return err;
}

static void smtplimit_mt_destroy(const struct xt_mtdtor_param *par)
{
	const struct xt_smtplimit_mtinfo *info = par->matchinfo;
	struct xt_smtplimit_priv *priv = info->priv;
	struct smtplimit_table *t = priv->table, *gone = NULL;

	mutex_lock(&smtplimit_mutex);
	list_del(&priv->node);
	if (list_empty(&t->rules))
		gone = smtplimit_table_unlink(t);
	else
		smtplimit_table_follow_rules(t, true);
	mutex_unlock(&smtplimit_mutex);
	if (gone)
		smtplimit_table_free(gone);
	kfree(priv);
}

static struct xt_match smtplimit_mt_reg[] __read_mostly = {
	{
		.name		= "smtplimit",
		.revision	= 0,
		.family		= NFPROTO_IPV4,
		.match		= smtplimit_mt,
		.matchsize	= sizeof(struct xt_smtplimit_mtinfo),
		.usersize	= offsetof(struct xt_smtplimit_mtinfo, priv),
		.checkentry	= smtplimit_mt_check,
		.destroy	= smtplimit_mt_destroy,
		.me		= THIS_MODULE,
	},
#if IS_ENABLED(CONFIG_IP6_NF_IPTABLES)
	{
		.name		= "smtplimit",
		.revision	= 0,
		.family		= NFPROTO_IPV6,
		.match		= smtplimit_mt,
		.matchsize	= sizeof(struct xt_smtplimit_mtinfo),
		.usersize	= offsetof(struct xt_smtplimit_mtinfo, priv),
		.checkentry	= smtplimit_mt_check,
		.destroy	= smtplimit_mt_destroy,
		.me		= THIS_MODULE,
	},
#endif
};

/* Network namespaces */

static int __net_init smtplimit_net_init(struct net *net)
{
	struct smtplimit_net *sn = smtplimit_pernet(net);

	INIT_HLIST_HEAD(&sn->tables);
	INIT_HLIST_HEAD(&sn->dying);
	atomic_set(&sn->entries, 0);
	sn->proc_dir[0] = proc_mkdir("ipt_smtplimit", net->proc_net);
	if (!sn->proc_dir[0])
		return -ENOMEM;
#if IS_ENABLED(CONFIG_IP6_NF_IPTABLES)
	sn->proc_dir[1] = proc_mkdir("ip6t_smtplimit", net->proc_net);
	if (!sn->proc_dir[1]) {
		remove_proc_entry("ipt_smtplimit", net->proc_net);
		return -ENOMEM;
	}
#endif
	return 0;
}

/*
 * Rules can outlive smtplimit_net_exit(): the iptables and nf_tables pernet
 * exits may run after ours. Their tables then find the directories gone
 * and are freed by their destroy, outside the mutex. The teardowns queued
 * before hold the directories and sn: they are waited for, outside the
 * mutex too, before the directories go. Once proc_dir is NULL, nothing else
 * touches the directories.
 */
static void __net_exit smtplimit_net_exit(struct net *net)
{
	struct smtplimit_net *sn = smtplimit_pernet(net);

	mutex_lock(&smtplimit_mutex);
	sn->proc_dir[0] = NULL;
	sn->proc_dir[1] = NULL;
	mutex_unlock(&smtplimit_mutex);
	smtplimit_teardowns_flush();
	WARN_ON_ONCE(!hlist_empty(&sn->dying));
	remove_proc_subtree("ipt_smtplimit", net->proc_net);
#if IS_ENABLED(CONFIG_IP6_NF_IPTABLES)
	remove_proc_subtree("ip6t_smtplimit", net->proc_net);
#endif
}

static struct pernet_operations smtplimit_net_ops = {
	.init	= smtplimit_net_init,
	.exit	= smtplimit_net_exit,
	.id	= &smtplimit_net_id,
	.size	= sizeof(struct smtplimit_net),
};

/*
 * One entry per 8 KiB of RAM: at 128 B an entry at most (its slab object
 * and its share of the bucket array), a 64th of RAM; 131072 entries on
 * 1 GiB, 3145728 on 24 GiB.
 */
static void __init smtplimit_userns_total_init(void)
{
	u64 entries = ((u64)totalram_pages() << PAGE_SHIFT) >> 13;

	if (!smtplimit_userns_total_entries)
		smtplimit_userns_total_entries = min_t(u64, entries, INT_MAX);
}

static int __init smtplimit_mt_init(void)
{
	int err;

	if (SMTPLIMIT_MUTANT)
		pr_warn("built with mutant %d, for tests only\n",
			SMTPLIMIT_MUTANT);
	smtplimit_clock_init(&smtplimit_clock, HZ);
	smtplimit_userns_total_init();

	err = smtplimit_caches_create();
	if (err)
		return err;
	err = register_pernet_subsys(&smtplimit_net_ops);
	if (err)
		goto destroy_caches;
	err = xt_register_matches(smtplimit_mt_reg,
				  ARRAY_SIZE(smtplimit_mt_reg));
	if (err)
		goto unregister_pernet;
	return 0;

unregister_pernet:
	unregister_pernet_subsys(&smtplimit_net_ops);
destroy_caches:
	smtplimit_caches_destroy();
	return err;
}

static void __exit smtplimit_mt_exit(void)
{
	xt_unregister_matches(smtplimit_mt_reg, ARRAY_SIZE(smtplimit_mt_reg));
	unregister_pernet_subsys(&smtplimit_net_ops);
	smtplimit_caches_destroy();
}

module_init(smtplimit_mt_init);
module_exit(smtplimit_mt_exit);
