// SPDX-License-Identifier: GPL-2.0
/*
 * xt_smtplimit: limit new connections per source address, e.g. to SMTP.
 *
 * Each table tracks sources (addresses masked to a prefix) in an rhashtable;
 * a source's whole state is the GCRA theoretical arrival time described in
 * smtplimit_rate.h. Rules name a table and bring their own rate and burst, so
 * the committed ruleset decides and a reload keeps every source's state.
 * The state is readable under /proc/net/ipt_smtplimit/<name> and
 * /proc/net/ip6t_smtplimit/<name>.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/capability.h>
#include <linux/ctype.h>
#include <linux/inet.h>
#include <linux/inetdevice.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/random.h>
#include <linux/rhashtable.h>
#include <linux/seq_file.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter/xt_smtplimit.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "compat.h"
#include "smtplimit_rate.h"

MODULE_LICENSE("GPL");
MODULE_AUTHOR("xt_smtplimit developers");
MODULE_DESCRIPTION("Xtables: per-source limit of new connections, with readable state");
MODULE_VERSION(XT_SMTPLIMIT_VERSION);
MODULE_ALIAS("ipt_smtplimit");
MODULE_ALIAS("ip6t_smtplimit");

static unsigned int netns_max_entries __read_mostly = 4194304;
module_param(netns_max_entries, uint, 0644);
MODULE_PARM_DESC(netns_max_entries,
		 "most sources tracked by all tables of one network namespace together (default 4194304)");

#define SMTPLIMIT_GC_INTERVAL	(2 * HZ)
#define SMTPLIMIT_EVICT_SAMPLE	8	/* entries compared per eviction */
#define SMTPLIMIT_EVICT_BUCKETS	4096	/* most buckets visited for them */
#define SMTPLIMIT_PLACE_TRIES	3	/* evictions tried for one place */
#define SMTPLIMIT_WALK_BATCH	1024	/* entries walked between reschedules */

/* Set at load from HZ: the units of every TAT. */
static struct smtplimit_clock smtplimit_clock __read_mostly;

union smtplimit_addr {
	__be32 ip;
	struct in6_addr ip6;
};

/*
 * One tracked source. Once dead, its state is never read again under its
 * lock, so the rcu_head that frees it can share the state's memory: readers
 * that still hold the entry take the lock and find it dead, and lockless
 * reads of tat (eviction sampling, the proc walk) are hints rechecked under
 * the lock.
 */
struct smtplimit_entry {
	struct rhash_head node;		/* in smtplimit_table.ht */
	union {
		struct {
			u64 tat;	/* theoretical arrival time, clock units */
			u32 passed;	/* attempts that conformed */
			u32 denied;	/* attempts that did not */
		};
		struct rcu_head rcu;	/* once dead: the deferred free */
	};
	spinlock_t lock;		/* tat, passed, denied, dead, banned */
	bool dead;			/* being unhashed: charge nothing more */
	bool banned;			/* by "+ADDR SECONDS": not evicted
					 * until it may pass again
					 */
	union smtplimit_addr addr;	/* the key; last, so that IPv4 entries
					 * are allocated without the IPv6 tail
					 */
};

/* Per-CPU counters since the table was created, summed by proc reads. */
struct smtplimit_stats {
	u64 passed;			/* attempts that conformed */
	u64 denied;			/* attempts that did not */
	u64 evicted;			/* entries dropped for room */
	u64 untracked;			/* attempts judged with no entry */
	u64 created;			/* entries created */
	u64 gc_freed;			/* full entries freed by the GC */
	u64 forgotten;			/* entries removed by "-" and "/" */
	u64 banned;			/* entries set by "+" */
	u64 flushes;			/* "/" commands */
};

struct smtplimit_net {
	struct hlist_head tables;		/* smtplimit_mutex */
	struct proc_dir_entry *proc_dir[2];	/* ipt_, ip6t_; NULL after exit */
	atomic_t entries;			/* in all tables of the netns */
};

/* A named table, shared by every rule of its netns and family naming it. */
struct smtplimit_table {
	struct rhashtable ht;		/* tracked sources by masked address */
	struct hlist_node node;		/* in smtplimit_net.tables */
	struct list_head rules;		/* xt_smtplimit_priv, oldest first */
	struct smtplimit_net *sn;
	struct net *net;		/* whose admin may write the proc file */
	struct proc_dir_entry *pde;
	struct delayed_work gc_work;
	struct smtplimit_stats __percpu *stats;
	struct mutex write_mutex;	/* one proc write at a time */
	atomic_t count;			/* entries, full ones not yet collected too */
	u32 max;			/* most entries, from the newest rule */
	u64 tolerance;			/* the newest rule's: a ban holds
					 * while the debt is beyond it
					 */
	spinlock_t newest_lock;		/* rate, bucket */
	u32 rate;			/* the newest rule's, for proc */
	struct smtplimit_bucket bucket;
	u8 family;
	u8 srcmask;
	union smtplimit_addr mask;	/* srcmask as an address mask */
	char name[XT_SMTPLIMIT_NAME_LEN];
};

/* What a rule keeps of its own: the rate math done once, at checkentry. */
struct xt_smtplimit_priv {
	struct smtplimit_table *table;
	struct list_head node;		/* in smtplimit_table.rules */
	struct smtplimit_bucket bucket;	/* from rate, burst and strict */
	u32 rate;
	u32 max;
};

static unsigned int smtplimit_net_id __read_mostly;
static struct kmem_cache *smtplimit_cache4 __read_mostly;
static struct kmem_cache *smtplimit_cache6 __read_mostly;

/* Table lists, rule lists and proc directories. Never taken by proc reads. */
static DEFINE_MUTEX(smtplimit_mutex);

static const struct rhashtable_params smtplimit_params4 = {
	.head_offset = offsetof(struct smtplimit_entry, node),
	.key_offset = offsetof(struct smtplimit_entry, addr),
	.key_len = sizeof(__be32),
	.automatic_shrinking = true,
};

static const struct rhashtable_params smtplimit_params6 = {
	.head_offset = offsetof(struct smtplimit_entry, node),
	.key_offset = offsetof(struct smtplimit_entry, addr),
	.key_len = sizeof(struct in6_addr),
	.automatic_shrinking = true,
};

static struct smtplimit_net *smtplimit_pernet(struct net *net)
{
	return net_generic(net, smtplimit_net_id);
}

static unsigned int smtplimit_family_index(u8 family)
{
	return family == NFPROTO_IPV6;
}

/* Now in clock units; wraps after 2^64 units, which every use tolerates. */
static u64 smtplimit_now(void)
{
	u64 jiffies_now = get_jiffies_64();

	return jiffies_now << smtplimit_clock.shift;
}

static bool smtplimit_is_ipv4(const struct smtplimit_table *t)
{
	return t->family == NFPROTO_IPV4;
}

static struct kmem_cache *smtplimit_cache(const struct smtplimit_table *t)
{
	return smtplimit_is_ipv4(t) ? smtplimit_cache4 : smtplimit_cache6;
}

/* Reserve a place below @limit; false if there is none. */
static bool smtplimit_inc_below(atomic_t *v, unsigned int limit)
{
	int old = atomic_read(v);

	do {
		if ((unsigned int)old >= limit)
			return false;
	} while (!atomic_try_cmpxchg(v, &old, old + 1));
	return true;
}

static void smtplimit_release_place(struct smtplimit_table *t)
{
	atomic_dec(&t->count);
	atomic_dec(&t->sn->entries);
}

/* The mask of a prefix of @len bits over @words 32-bit words. */
static void smtplimit_prefix_mask(unsigned int len, unsigned int words,
				  __be32 *mask)
{
	unsigned int i;

	for (i = 0; i < words; i++, len = len > 32 ? len - 32 : 0)
		mask[i] = inet_make_mask(min(len, 32U));
}

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
}

static struct smtplimit_entry *
smtplimit_lookup(struct smtplimit_table *t, const union smtplimit_addr *key)
{
	if (smtplimit_is_ipv4(t))
		return rhashtable_lookup(&t->ht, key, smtplimit_params4);
	return rhashtable_lookup(&t->ht, key, smtplimit_params6);
}

static struct smtplimit_entry *
smtplimit_insert(struct smtplimit_table *t, struct smtplimit_entry *e)
{
	if (smtplimit_is_ipv4(t))
		return rhashtable_lookup_get_insert_fast(&t->ht, &e->node,
							 smtplimit_params4);
	return rhashtable_lookup_get_insert_fast(&t->ht, &e->node,
						 smtplimit_params6);
}

static void smtplimit_free4_rcu(struct rcu_head *head)
{
	kmem_cache_free(smtplimit_cache4,
			container_of(head, struct smtplimit_entry, rcu));
}

static void smtplimit_free6_rcu(struct rcu_head *head)
{
	kmem_cache_free(smtplimit_cache6,
			container_of(head, struct smtplimit_entry, rcu));
}

/*
 * Unhash @e, if it is full or @even_if_owing, and free it after a grace
 * period. Marking it dead under its lock first means exactly one caller
 * unhashes it, and no attempt is charged to an entry on its way out.
 * The caller accounts for the place it held.
 */
static bool smtplimit_entry_kill(struct smtplimit_table *t,
				 struct smtplimit_entry *e, u64 now,
				 bool even_if_owing)
{
	bool take;
	int err;

	spin_lock_bh(&e->lock);
	take = !e->dead && (even_if_owing || smtplimit_is_full(e->tat, now));
	if (take)
		e->dead = true;
	spin_unlock_bh(&e->lock);
	if (!take)
		return false;

	if (smtplimit_is_ipv4(t))
		err = rhashtable_remove_fast(&t->ht, &e->node, smtplimit_params4);
	else
		err = rhashtable_remove_fast(&t->ht, &e->node, smtplimit_params6);
	WARN_ON_ONCE(err);
	call_rcu(&e->rcu, smtplimit_is_ipv4(t) ? smtplimit_free4_rcu :
						 smtplimit_free6_rcu);
	return true;
}

/*
 * Call @visit on each entry of the table until it returns false. Only RCU
 * is held, and it is dropped every SMTPLIMIT_WALK_BATCH entries, so the
 * caller must be free to sleep; no bucket lock is held across entries. A
 * walk meets every entry present throughout at least once, some twice: see
 * the proc read.
 */
static void smtplimit_walk(struct smtplimit_table *t,
			   bool (*visit)(struct smtplimit_table *t,
					 struct smtplimit_entry *e, void *arg),
			   void *arg)
{
	struct rhashtable_iter iter;
	struct smtplimit_entry *e;
	unsigned int walked = 0;

	rhashtable_walk_enter(&t->ht, &iter);
	rhashtable_walk_start(&iter);
	while ((e = rhashtable_walk_next(&iter))) {
		if (IS_ERR(e))		/* -EAGAIN: resized, the walk goes on */
			continue;
		if (!visit(t, e, arg))
			break;
		if (++walked % SMTPLIMIT_WALK_BATCH == 0) {
			rhashtable_walk_stop(&iter);
			cond_resched();
			rhashtable_walk_start(&iter);
		}
	}
	rhashtable_walk_stop(&iter);
	rhashtable_walk_exit(&iter);
}

/* A ban keeps its entry from eviction while the debt is beyond @tolerance. */
static bool smtplimit_ban_holds(const struct smtplimit_entry *e, u64 debt,
				u64 tolerance)
{
	return READ_ONCE(e->banned) && debt > tolerance;
}

/* Evict @e, unless someone else killed it first. */
static bool smtplimit_evict_entry(struct smtplimit_table *t,
				  struct smtplimit_entry *e, u64 now)
{
	if (!smtplimit_entry_kill(t, e, now, true))
		return false;
	this_cpu_inc(t->stats->evicted);
	return true;
}

/*
 * Unhash, out of a sample of at least SMTPLIMIT_EVICT_SAMPLE entries from a
 * random run of buckets, the one whose bucket will be full soonest; banned
 * sources are never taken. Its place in the table and netns counts passes to
 * the caller. Called under RCU.
 *
 * rhashtable keeps between 3/8 and 3/4 of an entry per bucket, so a few
 * dozen buckets give the sample. Until it has shrunk after the maximum was
 * lowered, or when the netns cap rather than the table's own maximum is
 * reached, the table can be far sparser: the run is then long enough to
 * expect twice the sample, up to SMTPLIMIT_EVICT_BUCKETS buckets. During a
 * resize, entries move from the bucket table to its future one: the sample
 * goes on there.
 */
static bool smtplimit_evict(struct smtplimit_table *t, u64 now)
{
	u64 tolerance = READ_ONCE(t->tolerance);
	const struct bucket_table *tbl = rht_dereference_rcu(t->ht.tbl, &t->ht);
	unsigned int count = max_t(int, atomic_read(&t->count), 1);
	struct smtplimit_entry *e, *victim = NULL;
	unsigned int i, run, seen = 0, start;
	u64 debt, best = U64_MAX;
	struct rhash_head *pos;

	for (; tbl && seen < SMTPLIMIT_EVICT_SAMPLE;
	     tbl = rht_dereference_rcu(tbl->future_tbl, &t->ht)) {
		run = div_u64(2ULL * SMTPLIMIT_EVICT_SAMPLE * tbl->size, count);
		run = max_t(unsigned int, run, 4 * SMTPLIMIT_EVICT_SAMPLE);
		run = min3(run, tbl->size, (unsigned int)SMTPLIMIT_EVICT_BUCKETS);
		start = get_random_u32();
		for (i = 0; i < run && seen < SMTPLIMIT_EVICT_SAMPLE; i++) {
			rht_for_each_entry_rcu(e, pos, tbl,
					       (start + i) & (tbl->size - 1), node) {
				seen++;
				debt = smtplimit_debt(READ_ONCE(e->tat), now);
				if (smtplimit_ban_holds(e, debt, tolerance))
					continue;
				if (debt < best && !READ_ONCE(e->dead)) {
					best = debt;
					victim = e;
				}
			}
		}
	}
	return victim && smtplimit_evict_entry(t, victim, now);
}

/* Reserve a place in the table and netns counts, in both or neither. */
static bool smtplimit_place_free(struct smtplimit_table *t)
{
	if (!smtplimit_inc_below(&t->count, READ_ONCE(t->max)))
		return false;
	if (smtplimit_inc_below(&t->sn->entries, READ_ONCE(netns_max_entries)))
		return true;
	atomic_dec(&t->count);
	return false;
}

/*
 * Reserve a place for a new entry in the table and the netns counts; at a
 * maximum, evict an entry and take its place. An eviction fails when its
 * victim is killed first by someone else (GC, a forget or flush written to
 * the proc file), which gives a place back, or when its sample meets no
 * entry, as while a sweep down to a lowered maximum empties the table from
 * its first bucket on: then try again, a few times. Called under RCU.
 */
static bool smtplimit_take_place(struct smtplimit_table *t, u64 now)
{
	unsigned int tries;

	for (tries = 0; tries < SMTPLIMIT_PLACE_TRIES; tries++)
		if (smtplimit_place_free(t) || smtplimit_evict(t, now))
			return true;
	return false;
}

struct smtplimit_place_walk {
	u64 now;
	u64 tolerance;
	bool got;			/* a place, free or evicted */
};

static bool smtplimit_place_visit(struct smtplimit_table *t,
				  struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_place_walk *pw = arg;
	u64 debt = smtplimit_debt(READ_ONCE(e->tat), pw->now);

	pw->got = smtplimit_place_free(t) ||
		  (!smtplimit_ban_holds(e, debt, pw->tolerance) &&
		   smtplimit_evict_entry(t, e, pw->now));
	return !pw->got;
}

/*
 * A place for a source banned through the proc file. Sampled evictions can
 * all fail while an entry that no ban holds remains (see above); a writer
 * may sleep, so it then walks the whole table for one. It fails only when
 * the walk finds none: every entry is held by a ban. Called without RCU
 * held.
 */
static bool smtplimit_take_place_sure(struct smtplimit_table *t, u64 now)
{
	struct smtplimit_place_walk pw = {
		.now = now, .tolerance = READ_ONCE(t->tolerance),
	};

	rcu_read_lock();
	pw.got = smtplimit_take_place(t, now);
	rcu_read_unlock();
	if (!pw.got)
		smtplimit_walk(t, smtplimit_place_visit, &pw);
	return pw.got || smtplimit_place_free(t);
}

struct smtplimit_place_count {
	u64 now;
	u64 tolerance;
	unsigned int found;		/* free places and entries no ban holds */
	unsigned int need;
};

static bool smtplimit_place_count_visit(struct smtplimit_table *t,
					struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_place_count *pc = arg;
	u64 debt = smtplimit_debt(READ_ONCE(e->tat), pc->now);

	if (!READ_ONCE(e->dead) && !smtplimit_ban_holds(e, debt, pc->tolerance))
		pc->found++;
	return pc->found < pc->need;
}

/*
 * Whether @need places can be had without evicting a ban: free ones, then
 * entries no ban holds (each frees a place in the table and the netns
 * counts alike). Asked before anything is evicted, so that a write refused
 * with -ENOSPC has evicted nothing. Writers to a table are serialised and a
 * packet only trades an entry no ban holds for another, so the answer holds
 * while places are taken unless the maximum is lowered meanwhile, another
 * table of the netns takes the last of its cap, or a resize shows the walk
 * an entry twice. Called without RCU held.
 */
static bool smtplimit_places_exist(struct smtplimit_table *t,
				   unsigned int need, u64 now)
{
	int table = READ_ONCE(t->max) - atomic_read(&t->count);
	int netns = READ_ONCE(netns_max_entries) -
		    atomic_read(&t->sn->entries);
	struct smtplimit_place_count pc = {
		.now = now, .tolerance = READ_ONCE(t->tolerance), .need = need,
		.found = max(min(table, netns), 0),
	};

	if (pc.found < need)
		smtplimit_walk(t, smtplimit_place_count_visit, &pc);
	return pc.found >= need;
}

/*
 * Insert @e, allocated with a place taken for it, as the source @key with
 * debt until @tat, @banned or not. Returns @e, or the entry another CPU
 * inserted for the same source first (then @e is freed and its place given
 * back), or NULL when the table had no memory.
 */
static struct smtplimit_entry *
smtplimit_entry_insert(struct smtplimit_table *t, struct smtplimit_entry *e,
		       const union smtplimit_addr *key, u64 tat, bool banned)
{
	struct smtplimit_entry *old;

	spin_lock_init(&e->lock);
	e->tat = tat;
	e->passed = 0;
	e->denied = 0;
	e->dead = false;
	e->banned = banned;
	if (smtplimit_is_ipv4(t))
		e->addr.ip = key->ip;
	else
		e->addr.ip6 = key->ip6;

	old = smtplimit_insert(t, e);
	if (!old) {
		this_cpu_inc(t->stats->created);
		return e;
	}
	/* e was never seen: free it at once. */
	kmem_cache_free(smtplimit_cache(t), e);
	smtplimit_release_place(t);
	return IS_ERR(old) ? NULL : old;
}

/*
 * Track a new source, with a full bucket, in place of an evicted one when
 * the table or the netns is at its maximum. NULL when no place or memory
 * could be had: the caller then judges the attempt untracked.
 */
static struct smtplimit_entry *
smtplimit_entry_create(struct smtplimit_table *t,
		       const union smtplimit_addr *key, u64 now)
{
	struct smtplimit_entry *e;

	e = kmem_cache_alloc(smtplimit_cache(t), GFP_ATOMIC | __GFP_NOWARN);
	if (!e)
		return NULL;
	if (!smtplimit_take_place(t, now)) {
		kmem_cache_free(smtplimit_cache(t), e);
		return NULL;
	}
	return smtplimit_entry_insert(t, e, key, now, false);
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
			pass = smtplimit_attempt(&e->tat, now, &priv->bucket);
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

/* Which entries a sweep unhashes. */
struct smtplimit_sweep {
	u64 now;
	bool any;			/* owing ones too, not only full ones */
	bool to_max;			/* stop once down to the maximum */
	const union smtplimit_addr *prefix;	/* if set, only within it: */
	const union smtplimit_addr *mask;	/* prefix is masked with it */
	unsigned int killed;		/* out: how many were unhashed */
};

static bool smtplimit_in_prefix(const struct smtplimit_table *t,
				const union smtplimit_addr *addr,
				const struct smtplimit_sweep *sw)
{
	unsigned int i, words = smtplimit_is_ipv4(t) ? 1 : 4;

	for (i = 0; i < words; i++)
		if ((addr->ip6.s6_addr32[i] & sw->mask->ip6.s6_addr32[i]) !=
		    sw->prefix->ip6.s6_addr32[i])
			return false;
	return true;
}

static bool smtplimit_sweep_visit(struct smtplimit_table *t,
				  struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_sweep *sw = arg;

	if (sw->to_max && atomic_read(&t->count) <= READ_ONCE(t->max))
		return false;
	if ((!sw->prefix || smtplimit_in_prefix(t, &e->addr, sw)) &&
	    smtplimit_entry_kill(t, e, sw->now, sw->any)) {
		smtplimit_release_place(t);
		sw->killed++;
	}
	return true;
}

/* Unhash the entries @sw selects; returns how many. */
static unsigned int smtplimit_sweep(struct smtplimit_table *t,
				    struct smtplimit_sweep *sw)
{
	sw->killed = 0;
	smtplimit_walk(t, smtplimit_sweep_visit, sw);
	return sw->killed;
}

static void smtplimit_gc(struct work_struct *work)
{
	struct smtplimit_table *t =
		container_of(work, struct smtplimit_table, gc_work.work);
	struct smtplimit_sweep full = { .now = smtplimit_now() };

	this_cpu_add(t->stats->gc_freed, smtplimit_sweep(t, &full));
	queue_delayed_work(system_power_efficient_wq, &t->gc_work,
			   SMTPLIMIT_GC_INTERVAL);
}

/* The newest rule's rate and bucket, consistent with each other. */
static u32 smtplimit_table_newest(struct smtplimit_table *t,
				  struct smtplimit_bucket *bucket)
{
	u32 rate;

	spin_lock_bh(&t->newest_lock);
	rate = t->rate;
	*bucket = t->bucket;
	spin_unlock_bh(&t->newest_lock);
	return rate;
}

/*
 * proc: one file per table. Reading position 0 copies the live entries into
 * a private array sorted by address, and the read lists that copy: each
 * source once, all figures against one now, however slowly the reader goes.
 * The copy is not atomic: an entry created while it goes may be in it, an
 * entry freed meanwhile may still be.
 *
 * An rhashtable walk meets every entry present throughout at least once,
 * some twice: it starts over from the first bucket when the table is
 * resized under it, and one stopped to reschedule next to an entry that is
 * then unlinked may meet a neighbour again. Listing straight from the walk
 * would show those sources twice; the copy keeps everything the walk met
 * (starting it over would lose entries not yet moved to the new table),
 * and the sort puts each repeat next to its twin, to be dropped.
 * A table of N sources costs a reader N rows of memory while it is open,
 * charged to the reader and freed when it reaches the end.
 */

struct smtplimit_row {
	union smtplimit_addr addr;	/* zero past the table's key length */
	u64 tat;
	u32 passed;
	u32 denied;
};

struct smtplimit_seq {
	struct smtplimit_table *table;
	struct smtplimit_row *rows;	/* sorted, no address twice */
	u32 nrows;
	u32 live;			/* the header's count of entries */
	u64 now;			/* the moment the rows were copied */
	struct smtplimit_bucket bucket;	/* the header's rate and burst */
	u32 rate;
	u32 max;
};

/* Gives the copy back; the next read of position 0 takes a new one. */
static void smtplimit_seq_free(struct smtplimit_seq *s)
{
	kvfree(s->rows);
	s->rows = NULL;
	s->nrows = 0;
}

static int smtplimit_row_cmp(const void *a, const void *b)
{
	const struct smtplimit_row *ra = a, *rb = b;

	return memcmp(&ra->addr, &rb->addr, sizeof(ra->addr));
}

/*
 * The entries neither full nor dead at @now, copied into @rows. More than
 * @room of them means entries were created faster than the walk went, or a
 * resize made it meet them twice.
 */
struct smtplimit_copy {
	struct smtplimit_row *rows;
	u32 room;
	u32 n;				/* rows filled */
	u64 now;
	bool overflow;			/* met more than @room */
};

static bool smtplimit_copy_visit(struct smtplimit_table *t,
				 struct smtplimit_entry *e, void *arg)
{
	struct smtplimit_copy *c = arg;
	struct smtplimit_row *row;

	spin_lock_bh(&e->lock);
	if (!e->dead && !smtplimit_is_full(e->tat, c->now)) {
		if (c->n == c->room) {
			c->overflow = true;
		} else {
			row = &c->rows[c->n++];
			memset(&row->addr, 0, sizeof(row->addr));
			memcpy(&row->addr, &e->addr, t->ht.p.key_len);
			row->tat = e->tat;
			row->passed = e->passed;
			row->denied = e->denied;
		}
	}
	spin_unlock_bh(&e->lock);
	return !c->overflow;
}

/* Position 0: the header's figures and the rows, all from one now. */
static int smtplimit_seq_snapshot(struct smtplimit_seq *s)
{
	struct smtplimit_table *t = s->table;
	struct smtplimit_copy c = {};
	struct smtplimit_row *rows;
	u32 i, n;

	smtplimit_seq_free(s);
	s->now = smtplimit_now();
	s->rate = smtplimit_table_newest(t, &s->bucket);
	s->max = READ_ONCE(t->max);

	/* Live entries hold places, so count bounds them but for a race. */
	c.room = atomic_read(&t->count);
	c.room += c.room / 8 + 64;
	c.now = s->now;
	for (;;) {
		c.rows = kvmalloc_array(c.room, sizeof(*c.rows),
					GFP_KERNEL_ACCOUNT);
		if (!c.rows)
			return -ENOMEM;
		c.n = 0;
		c.overflow = false;
		smtplimit_walk(t, smtplimit_copy_visit, &c);
		if (!c.overflow)
			break;
		kvfree(c.rows);
		if (c.room > XT_SMTPLIMIT_HTABLE_MAX_LIMIT)
			return -EBUSY;	/* the table would not hold still */
		c.room *= 2;
	}

	rows = c.rows;
	sort(rows, c.n, sizeof(*rows), smtplimit_row_cmp, NULL);
	for (i = 0, n = 0; i < c.n; i++)
		if (n == 0 || smtplimit_row_cmp(&rows[n - 1], &rows[i]))
			rows[n++] = rows[i];
	s->rows = rows;
	s->nrows = n;
	/*
	 * A source evicted while the copy went on may be listed with the one
	 * that took its place; the table never held more than its places.
	 */
	s->live = min_t(u32, n, atomic_read(&t->count));
	return 0;
}

static void *smtplimit_seq_start(struct seq_file *m, loff_t *pos)
{
	struct smtplimit_seq *s = m->private;
	int err;

	if (*pos == 0) {
		err = smtplimit_seq_snapshot(s);
		return err ? ERR_PTR(err) : SEQ_START_TOKEN;
	}
	if (*pos <= s->nrows)
		return &s->rows[*pos - 1];
	smtplimit_seq_free(s);	/* the end */
	return NULL;
}

static void *smtplimit_seq_next(struct seq_file *m, void *v, loff_t *pos)
{
	struct smtplimit_seq *s = m->private;

	++*pos;
	return *pos <= s->nrows ? &s->rows[*pos - 1] : NULL;
}

static void smtplimit_seq_stop(struct seq_file *m, void *v)
{
}

static void smtplimit_seq_header(struct seq_file *m, struct smtplimit_seq *s)
{
	struct smtplimit_table *t = s->table;
	struct smtplimit_stats sum = {};
	const char *unit;
	u32 count;
	int cpu;

	for_each_possible_cpu(cpu) {
		const struct smtplimit_stats *st = per_cpu_ptr(t->stats, cpu);

		sum.passed += READ_ONCE(st->passed);
		sum.denied += READ_ONCE(st->denied);
		sum.evicted += READ_ONCE(st->evicted);
		sum.untracked += READ_ONCE(st->untracked);
		sum.created += READ_ONCE(st->created);
		sum.gc_freed += READ_ONCE(st->gc_freed);
		sum.forgotten += READ_ONCE(st->forgotten);
		sum.banned += READ_ONCE(st->banned);
		sum.flushes += READ_ONCE(st->flushes);
	}
	unit = smtplimit_rate_split(s->rate, &count);
	seq_printf(m, "# %s: rate %u/%s burst %u srcmask %u entries %u/%u",
		   t->name, count, unit, s->bucket.burst, t->srcmask, s->live,
		   s->max);
	seq_printf(m, " passed %llu denied %llu evicted %llu untracked %llu",
		   sum.passed, sum.denied, sum.evicted, sum.untracked);
	seq_printf(m, " strict %s created %llu gc_freed %llu forgotten %llu banned %llu flushes %llu\n",
		   s->bucket.strict ? "yes" : "no", sum.created, sum.gc_freed,
		   sum.forgotten, sum.banned, sum.flushes);
	seq_printf(m, "# %-38s %-9s %-8s %-8s %-8s %s\n",
		   "source", "tokens", "next_s", "full_s", "passed", "denied");
}

static int smtplimit_seq_show(struct seq_file *m, void *v)
{
	struct smtplimit_seq *s = m->private;
	const struct smtplimit_row *row = v;
	struct smtplimit_view view;
	char source[INET6_ADDRSTRLEN + 5], tokens[24];
	u64 whole;
	u32 milli;

	if (v == SEQ_START_TOKEN) {
		smtplimit_seq_header(m, s);
		return 0;
	}
	if (smtplimit_is_ipv4(s->table))
		snprintf(source, sizeof(source), "%pI4/%u", &row->addr.ip,
			 s->table->srcmask);
	else
		snprintf(source, sizeof(source), "%pI6c/%u", &row->addr.ip6,
			 s->table->srcmask);
	smtplimit_view(row->tat, s->now, &s->bucket, &smtplimit_clock, &view);
	whole = div_u64_rem(abs(view.tokens_milli), 1000, &milli);
	snprintf(tokens, sizeof(tokens), "%s%llu.%03u",
		 view.tokens_milli < 0 ? "-" : "", whole, milli);
	seq_printf(m, "%-40s %-9s %-8llu %-8llu %-8u %u\n", source, tokens,
		   view.next_s, view.full_s, row->passed, row->denied);
	return 0;
}

static const struct seq_operations smtplimit_seq_ops = {
	.start = smtplimit_seq_start,
	.next = smtplimit_seq_next,
	.stop = smtplimit_seq_stop,
	.show = smtplimit_seq_show,
};

static int smtplimit_proc_open(struct inode *inode, struct file *file)
{
	struct smtplimit_seq *s;

	s = __seq_open_private(file, &smtplimit_seq_ops, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->table = pde_data(inode);
	return 0;
}

static int smtplimit_proc_release(struct inode *inode, struct file *file)
{
	struct seq_file *m = file->private_data;
	struct smtplimit_seq *s = m->private;

	smtplimit_seq_free(s);
	return seq_release_private(inode, file);
}

/*
 * proc writes: one command a line, "-ADDR[/LEN]" forgets the sources within
 * a prefix, "+ADDR[ SECONDS]" bans one, "/" flushes the table. A write is
 * parsed, validated and given its memory before anything is applied.
 */

enum smtplimit_op {
	SMTPLIMIT_FORGET,
	SMTPLIMIT_BAN,
	SMTPLIMIT_FLUSH,
};

struct smtplimit_cmd {
	union smtplimit_addr addr;	/* as written, host bits too */
	u32 seconds;			/* of a ban; 0: just empty the bucket */
	u8 op;				/* enum smtplimit_op */
	u8 len;				/* prefix length of a forget */
};

/*
 * in4_pton() and in6_pton() take more than inet_pton(3) does: leading zeros
 * in a dotted part ("192.0.2.010", which inet_aton(3) reads as octal, so as
 * 192.0.2.8) and hex groups of more than four digits ("02001:db8::1"). Refuse
 * both, so that an address written here means what it means to every other
 * tool. Each run of digits is decimal if a dot touches it, else hex.
 */
static bool smtplimit_addr_as_inet_pton(const char *p, size_t len)
{
	size_t i, start;

	for (i = 0; i < len; i = start + 1) {
		for (start = i; start < len && isxdigit(p[start]); start++)
			;
		if (start == i)
			continue;
		if ((i > 0 && p[i - 1] == '.') || (start < len && p[start] == '.')) {
			if (p[i] == '0' && start - i > 1)
				return false;
		} else if (start - i > 4) {
			return false;
		}
	}
	return true;
}

static int smtplimit_parse_cmd(const struct smtplimit_table *t,
			       const char *line, struct smtplimit_cmd *cmd)
{
	unsigned int width = smtplimit_is_ipv4(t) ? 32 : 128;
	const char *p = line + 1, *end;
	size_t len;
	int ok;

	memset(cmd, 0, sizeof(*cmd));
	if (strcmp(line, "/") == 0) {
		cmd->op = SMTPLIMIT_FLUSH;
		return 0;
	}
	if (line[0] == '-')
		cmd->op = SMTPLIMIT_FORGET;
	else if (line[0] == '+')
		cmd->op = SMTPLIMIT_BAN;
	else
		return -EINVAL;

	len = strcspn(p, cmd->op == SMTPLIMIT_FORGET ? "/" : " ");
	if (smtplimit_is_ipv4(t))
		ok = in4_pton(p, len, (u8 *)&cmd->addr.ip, -1, &end);
	else
		ok = in6_pton(p, len, cmd->addr.ip6.s6_addr, -1, &end);
	if (!ok || end != p + len || !smtplimit_addr_as_inet_pton(p, len))
		return -EINVAL;
	p += len;
	cmd->len = width;
	if (*p == '\0')
		return 0;
	/* One separator, then digits only: kstrto*() would take "+" too. */
	if (!isdigit(p[1]))
		return -EINVAL;
	if (cmd->op == SMTPLIMIT_FORGET)
		return kstrtou8(p + 1, 10, &cmd->len) || cmd->len > width ?
		       -EINVAL : 0;
	if (kstrtou32(p + 1, 10, &cmd->seconds) || !cmd->seconds ||
	    cmd->seconds > XT_SMTPLIMIT_BAN_MAX)
		return -EINVAL;
	return 0;
}

/* Split @buf (NUL-ended, no other NUL) into commands; -EINVAL on any bad line. */
static int smtplimit_parse_write(const struct smtplimit_table *t, char *buf,
				 struct smtplimit_cmd *cmds, unsigned int *n)
{
	char *line, *next;

	*n = 0;
	for (line = buf; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (!*skip_spaces(line))
			continue;
		if (strlen(line) > XT_SMTPLIMIT_LINE_MAX ||
		    smtplimit_parse_cmd(t, line, &cmds[*n]))
			return -EINVAL;
		(*n)++;
	}
	return 0;
}

/* @addr masked to the table's srcmask: the key of the entry holding it. */
static void smtplimit_cmd_key(const struct smtplimit_table *t,
			      const struct smtplimit_cmd *cmd,
			      union smtplimit_addr *key)
{
	unsigned int i;

	for (i = 0; i < (smtplimit_is_ipv4(t) ? 1 : 4); i++)
		key->ip6.s6_addr32[i] = cmd->addr.ip6.s6_addr32[i] &
					t->mask.ip6.s6_addr32[i];
}

static struct smtplimit_entry *
smtplimit_lookup_live(struct smtplimit_table *t, const union smtplimit_addr *key)
{
	struct smtplimit_entry *e = smtplimit_lookup(t, key);

	return e && !READ_ONCE(e->dead) ? e : NULL;
}

static unsigned int smtplimit_forget(struct smtplimit_table *t,
				     const struct smtplimit_cmd *cmd, u64 now)
{
	union smtplimit_addr key = {}, mask = {};
	struct smtplimit_sweep within = { .now = now, .any = true,
					  .prefix = &key, .mask = &mask };
	struct smtplimit_entry *e;
	unsigned int i, killed = 0;

	if (cmd->len >= t->srcmask) {
		/* At most one entry holds the address. */
		smtplimit_cmd_key(t, cmd, &key);
		rcu_read_lock();
		e = smtplimit_lookup(t, &key);
		if (e && smtplimit_entry_kill(t, e, now, true)) {
			smtplimit_release_place(t);
			killed = 1;
		}
		rcu_read_unlock();
		return killed;
	}
	smtplimit_prefix_mask(cmd->len, 4, mask.ip6.s6_addr32);
	for (i = 0; i < 4; i++)
		key.ip6.s6_addr32[i] = cmd->addr.ip6.s6_addr32[i] &
				       mask.ip6.s6_addr32[i];
	return smtplimit_sweep(t, &within);
}

/*
 * Set the ban's debt on the source's entry, or create one with it from
 * @spare and a place already taken for it (*places), or one taken now if
 * the entry died since. -ENOMEM if the table had no memory for it, -ENOSPC
 * if it is full of bans. Called without RCU held: it may sleep.
 */
static int smtplimit_ban_one(struct smtplimit_table *t,
			     const struct smtplimit_cmd *cmd,
			     const struct smtplimit_bucket *bucket, u64 now,
			     struct smtplimit_entry **spare,
			     unsigned int *places)
{
	u64 tat = smtplimit_ban(now, bucket, &smtplimit_clock, cmd->seconds);
	struct smtplimit_entry *e, *fresh;
	bool banned = cmd->seconds != 0;
	union smtplimit_addr key;
	bool done = false;

	smtplimit_cmd_key(t, cmd, &key);
	for (;;) {
		rcu_read_lock();
		e = smtplimit_lookup_live(t, &key);
		if (e) {
			spin_lock_bh(&e->lock);
			done = !e->dead;
			if (done) {
				e->tat = tat;
				e->banned = banned;
			}
			spin_unlock_bh(&e->lock);
		}
		rcu_read_unlock();
		if (done)
			break;
		if (e)			/* died meanwhile: look again */
			continue;

		/* Spent already: the entry it lost a race to died since. */
		if (!*spare)
			*spare = kmem_cache_alloc(smtplimit_cache(t), GFP_KERNEL);
		if (!*spare)
			return -ENOMEM;
		if (*places)
			(*places)--;
		else if (!smtplimit_take_place_sure(t, now))
			return -ENOSPC;
		fresh = *spare;
		*spare = NULL;
		e = smtplimit_entry_insert(t, fresh, &key, tat, banned);
		if (!e)
			return -ENOMEM;
		if (e == fresh)
			break;
		/*
		 * A packet's entry for the source came first: set the ban on
		 * it. One found dying is unhashed by its killer next; let it.
		 */
		cond_resched();
	}
	this_cpu_inc(t->stats->banned);
	return 0;
}

/*
 * Take a place for each ban of a source not tracked yet: all or none, and
 * none evicted unless all can be had.
 */
static int smtplimit_take_places(struct smtplimit_table *t,
				 const struct smtplimit_cmd *cmds,
				 unsigned int n, u64 now, unsigned int *places)
{
	unsigned int i, need = 0;
	union smtplimit_addr key;
	bool tracked;

	*places = 0;
	for (i = 0; i < n; i++) {
		if (cmds[i].op != SMTPLIMIT_BAN)
			continue;
		smtplimit_cmd_key(t, &cmds[i], &key);
		rcu_read_lock();
		tracked = smtplimit_lookup_live(t, &key);
		rcu_read_unlock();
		need += !tracked;
	}
	if (!smtplimit_places_exist(t, need, now))
		return -ENOSPC;
	for (; *places < need; (*places)++) {
		if (!smtplimit_take_place_sure(t, now)) {
			for (; *places; (*places)--)
				smtplimit_release_place(t);
			return -ENOSPC;
		}
	}
	return 0;
}

static int smtplimit_apply(struct smtplimit_table *t,
			   const struct smtplimit_cmd *cmds, unsigned int n,
			   struct smtplimit_entry **spares)
{
	struct smtplimit_sweep all = { .any = true };
	struct smtplimit_bucket bucket;
	unsigned int i, places;
	u64 now = smtplimit_now();
	int err;

	smtplimit_table_newest(t, &bucket);
	err = smtplimit_take_places(t, cmds, n, now, &places);
	for (i = 0; i < n && !err; i++) {
		switch (cmds[i].op) {
		case SMTPLIMIT_FLUSH:
			all.now = now;
			this_cpu_add(t->stats->forgotten, smtplimit_sweep(t, &all));
			this_cpu_inc(t->stats->flushes);
			break;
		case SMTPLIMIT_FORGET:
			this_cpu_add(t->stats->forgotten,
				     smtplimit_forget(t, &cmds[i], now));
			break;
		case SMTPLIMIT_BAN:
			err = smtplimit_ban_one(t, &cmds[i], &bucket, now,
						spares++, &places);
			break;
		}
	}
	for (; places; places--)
		smtplimit_release_place(t);
	return err;
}

static ssize_t smtplimit_proc_write(struct file *file, const char __user *input,
				    size_t size, loff_t *loff)
{
	struct smtplimit_table *t = pde_data(file_inode(file));
	struct smtplimit_entry **spares = NULL;
	struct smtplimit_cmd *cmds = NULL;
	unsigned int i, n, bans = 0;
	char *buf;
	int err;

	if (!file_ns_capable(file, t->net->user_ns, CAP_NET_ADMIN))
		return -EPERM;
	if (size > XT_SMTPLIMIT_WRITE_MAX)
		return -EINVAL;
	buf = kvmalloc(size + 1, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	err = -EFAULT;
	if (copy_from_user(buf, input, size))
		goto out;
	buf[size] = '\0';
	err = -EINVAL;
	if (memchr(buf, '\0', size))
		goto out;

	/* At most one command per byte pair: a line and its newline. */
	err = -ENOMEM;
	cmds = kvcalloc(size / 2 + 1, sizeof(*cmds), GFP_KERNEL);
	if (!cmds)
		goto out;
	err = smtplimit_parse_write(t, buf, cmds, &n);
	if (err)
		goto out;
	for (i = 0; i < n; i++)
		bans += cmds[i].op == SMTPLIMIT_BAN;
	err = -ENOMEM;
	spares = kvcalloc(bans, sizeof(*spares), GFP_KERNEL);
	if (!spares)
		goto out;
	for (i = 0; i < bans; i++) {
		spares[i] = kmem_cache_alloc(smtplimit_cache(t), GFP_KERNEL);
		if (!spares[i])
			goto out;
	}

	mutex_lock(&t->write_mutex);
	err = smtplimit_apply(t, cmds, n, spares);
	mutex_unlock(&t->write_mutex);
out:
	for (i = 0; spares && i < bans; i++)
		if (spares[i])
			kmem_cache_free(smtplimit_cache(t), spares[i]);
	kvfree(spares);
	kvfree(cmds);
	kvfree(buf);
	return err ? err : size;
}

static const struct proc_ops smtplimit_proc_ops = {
	.proc_open = smtplimit_proc_open,
	.proc_read = seq_read,
	.proc_write = smtplimit_proc_write,
	.proc_lseek = seq_lseek,
	.proc_release = smtplimit_proc_release,
};

/* Tables */

static struct smtplimit_table *
smtplimit_table_find(struct smtplimit_net *sn, u8 family, const char *name)
{
	struct smtplimit_table *t;

	hlist_for_each_entry(t, &sn->tables, node)
		if (t->family == family && strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/*
 * The newest rule's rate, burst and maximum apply to the table; a lower
 * maximum frees full entries first, then evicts any, down to it.
 */
static void smtplimit_table_follow_newest(struct smtplimit_table *t)
{
	const struct xt_smtplimit_priv *newest =
		list_last_entry(&t->rules, struct xt_smtplimit_priv, node);
	struct smtplimit_sweep full = { .now = smtplimit_now() };
	struct smtplimit_sweep to_max = { .now = full.now, .any = true,
					  .to_max = true };

	spin_lock_bh(&t->newest_lock);
	t->rate = newest->rate;
	t->bucket = newest->bucket;
	spin_unlock_bh(&t->newest_lock);
	WRITE_ONCE(t->tolerance, newest->bucket.tolerance);
	WRITE_ONCE(t->max, newest->max);
	if (atomic_read(&t->count) > newest->max)
		this_cpu_add(t->stats->gc_freed, smtplimit_sweep(t, &full));
	if (atomic_read(&t->count) > newest->max)
		this_cpu_add(t->stats->evicted, smtplimit_sweep(t, &to_max));
}

static struct smtplimit_table *
smtplimit_table_create(struct net *net, u8 family,
		       const struct xt_smtplimit_mtinfo *info)
{
	struct smtplimit_net *sn = smtplimit_pernet(net);
	struct proc_dir_entry *dir = sn->proc_dir[smtplimit_family_index(family)];
	kuid_t uid = make_kuid(net->user_ns, 0);
	kgid_t gid = make_kgid(net->user_ns, 0);
	struct smtplimit_table *t;
	int err = -ENOMEM;

	if (!dir)
		return ERR_PTR(-ENOENT);
	t = kzalloc(sizeof(*t), GFP_KERNEL_ACCOUNT);
	if (!t)
		return ERR_PTR(-ENOMEM);
	t->stats = alloc_percpu(struct smtplimit_stats);
	if (!t->stats)
		goto free_table;
	err = rhashtable_init(&t->ht, family == NFPROTO_IPV4 ?
				      &smtplimit_params4 : &smtplimit_params6);
	if (err)
		goto free_stats;

	INIT_LIST_HEAD(&t->rules);
	INIT_DEFERRABLE_WORK(&t->gc_work, smtplimit_gc);
	mutex_init(&t->write_mutex);
	spin_lock_init(&t->newest_lock);
	t->sn = sn;
	t->net = net;
	t->family = family;
	t->srcmask = info->srcmask;
	smtplimit_prefix_mask(info->srcmask, family == NFPROTO_IPV4 ? 1 : 4,
			      t->mask.ip6.s6_addr32);
	strscpy(t->name, info->name, sizeof(t->name));

	t->pde = proc_create_data(t->name, 0644, dir, &smtplimit_proc_ops, t);
	if (!t->pde) {
		err = -ENOMEM;
		goto destroy_ht;
	}
	if (uid_valid(uid) && gid_valid(gid))
		proc_set_user(t->pde, uid, gid);

	hlist_add_head(&t->node, &sn->tables);
	queue_delayed_work(system_power_efficient_wq, &t->gc_work,
			   SMTPLIMIT_GC_INTERVAL);
	return t;

destroy_ht:
	rhashtable_destroy(&t->ht);
free_stats:
	free_percpu(t->stats);
free_table:
	kfree(t);
	return ERR_PTR(err);
}

static void smtplimit_entry_free(void *ptr, void *cache)
{
	kmem_cache_free(cache, ptr);
}

/*
 * The last rule is gone, after a grace period: no packet can reach the table.
 * Its proc file goes first (that waits for readers), then the GC.
 */
static void smtplimit_table_destroy(struct smtplimit_table *t)
{
	struct proc_dir_entry *dir =
		t->sn->proc_dir[smtplimit_family_index(t->family)];

	hlist_del(&t->node);
	if (dir)
		remove_proc_entry(t->name, dir);
	cancel_delayed_work_sync(&t->gc_work);
	atomic_sub(atomic_read(&t->count), &t->sn->entries);
	rhashtable_free_and_destroy(&t->ht, smtplimit_entry_free,
				    smtplimit_cache(t));
	free_percpu(t->stats);
	mutex_destroy(&t->write_mutex);
	kfree(t);
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
	if (t && t->srcmask != info->srcmask) {
		pr_info_ratelimited("%s: table exists with srcmask %u, rule asks for %u\n",
				    info->name, t->srcmask, info->srcmask);
		err = -EEXIST;
		goto unlock;
	}
	if (!t) {
		t = smtplimit_table_create(par->net, par->family, info);
		if (IS_ERR(t)) {
			err = PTR_ERR(t);
			goto unlock;
		}
	}
	priv->table = t;
	list_add_tail(&priv->node, &t->rules);
	smtplimit_table_follow_newest(t);
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
	struct smtplimit_table *t = priv->table;

	mutex_lock(&smtplimit_mutex);
	list_del(&priv->node);
	if (list_empty(&t->rules))
		smtplimit_table_destroy(t);
	else
		smtplimit_table_follow_newest(t);
	mutex_unlock(&smtplimit_mutex);
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
 * Rules can outlive this: the iptables and nf_tables pernet exits may run
 * after ours. Their tables then find the directories gone and skip them.
 */
static void __net_exit smtplimit_net_exit(struct net *net)
{
	struct smtplimit_net *sn = smtplimit_pernet(net);

	mutex_lock(&smtplimit_mutex);
	remove_proc_subtree("ipt_smtplimit", net->proc_net);
	sn->proc_dir[0] = NULL;
#if IS_ENABLED(CONFIG_IP6_NF_IPTABLES)
	remove_proc_subtree("ip6t_smtplimit", net->proc_net);
	sn->proc_dir[1] = NULL;
#endif
	mutex_unlock(&smtplimit_mutex);
}

static struct pernet_operations smtplimit_net_ops = {
	.init	= smtplimit_net_init,
	.exit	= smtplimit_net_exit,
	.id	= &smtplimit_net_id,
	.size	= sizeof(struct smtplimit_net),
};

static int __init smtplimit_mt_init(void)
{
	int err = -ENOMEM;

	smtplimit_clock_init(&smtplimit_clock, HZ);

	smtplimit_cache4 = kmem_cache_create("xt_smtplimit_ipv4",
					     offsetof(struct smtplimit_entry, addr) +
					     sizeof(__be32), 0, 0, NULL);
	if (!smtplimit_cache4)
		return err;
	smtplimit_cache6 = kmem_cache_create("xt_smtplimit_ipv6",
					     sizeof(struct smtplimit_entry),
					     0, 0, NULL);
	if (!smtplimit_cache6)
		goto destroy_cache4;
	err = register_pernet_subsys(&smtplimit_net_ops);
	if (err)
		goto destroy_cache6;
	err = xt_register_matches(smtplimit_mt_reg,
				  ARRAY_SIZE(smtplimit_mt_reg));
	if (err)
		goto unregister_pernet;
	return 0;

unregister_pernet:
	unregister_pernet_subsys(&smtplimit_net_ops);
destroy_cache6:
	kmem_cache_destroy(smtplimit_cache6);
destroy_cache4:
	kmem_cache_destroy(smtplimit_cache4);
	return err;
}

static void __exit smtplimit_mt_exit(void)
{
	xt_unregister_matches(smtplimit_mt_reg, ARRAY_SIZE(smtplimit_mt_reg));
	unregister_pernet_subsys(&smtplimit_net_ops);
	rcu_barrier();		/* smtplimit_free*_rcu still pending */
	kmem_cache_destroy(smtplimit_cache6);
	kmem_cache_destroy(smtplimit_cache4);
}

module_init(smtplimit_mt_init);
module_exit(smtplimit_mt_exit);
