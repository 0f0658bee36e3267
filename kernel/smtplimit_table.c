// SPDX-License-Identifier: GPL-2.0
/*
 * The tables of xt_smtplimit: their entries' memory, lookups and walks,
 * entries' insertion and removal, sweeps (by the GC, a lowered maximum, a
 * forget or flush), and tables' creation, rules and destruction. The places
 * entries hold in the table and shared counts, and eviction, are in
 * smtplimit_places.c. The functions the other files call are declared in
 * smtplimit_table.h, with the locking rules.
 *
 * Context: the packet path (smtplimit_entry_create(), smtplimit_lookup())
 * runs in softirq under RCU and may not sleep; everything that walks the
 * whole table (smtplimit_walk(), so the sweeps) runs in process context
 * without RCU held and may sleep.
 */

#include <linux/inetdevice.h>
#include <linux/memcontrol.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/user_namespace.h>
#include <linux/wait.h>
#include <net/net_namespace.h>

#include "smtplimit_table.h"

/* Entry memory */

#define SMTPLIMIT_GC_INTERVAL	(2 * HZ)
#define SMTPLIMIT_WALK_BATCH	1024	/* entries walked between reschedules */

static struct kmem_cache *smtplimit_cache4 __read_mostly;
static struct kmem_cache *smtplimit_cache6 __read_mostly;
/* Table teardowns: their own, so that a netns exit and rmmod can wait for them. */
static struct workqueue_struct *smtplimit_wq __read_mostly;

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

static unsigned int smtplimit_family_index(u8 family)
{
	return family == NFPROTO_IPV6;
}

static struct kmem_cache *smtplimit_cache(const struct smtplimit_table *t)
{
	return smtplimit_is_ipv4(t) ? smtplimit_cache4 : smtplimit_cache6;
}

int smtplimit_caches_create(void)
{
	/* The rcu_head shares tat's memory rather than growing the entry. */
	BUILD_BUG_ON(sizeof(spinlock_t) == 4 &&
		     offsetof(struct smtplimit_entry, addr) + sizeof(__be32) > 40);
	smtplimit_wq = alloc_workqueue("xt_smtplimit", WQ_UNBOUND, 0);
	if (!smtplimit_wq)
		return -ENOMEM;
	smtplimit_cache4 = kmem_cache_create("xt_smtplimit_ipv4",
					     offsetof(struct smtplimit_entry, addr) +
					     sizeof(__be32), 0, 0, NULL);
	if (!smtplimit_cache4)
		goto destroy_wq;
	smtplimit_cache6 = kmem_cache_create("xt_smtplimit_ipv6",
					     sizeof(struct smtplimit_entry),
					     0, 0, NULL);
	if (!smtplimit_cache6)
		goto destroy_cache4;
	return 0;

destroy_cache4:
	kmem_cache_destroy(smtplimit_cache4);
destroy_wq:
	destroy_workqueue(smtplimit_wq);
	return -ENOMEM;
}

void smtplimit_caches_destroy(void)
{
	destroy_workqueue(smtplimit_wq);	/* teardowns still queued */
	rcu_barrier();		/* smtplimit_free*_rcu still pending */
	kmem_cache_destroy(smtplimit_cache6);
	kmem_cache_destroy(smtplimit_cache4);
}

/*
 * Entries of a table of a non-initial user namespace are charged to the
 * memory cgroup of the process that created the table, whoever's packet or
 * write makes them: in softirq there is no current task to charge, so the
 * memcg saved at creation is made the active one around the allocation.
 * The slab uncharges an entry when it is freed.
 */
struct smtplimit_entry *smtplimit_entry_alloc(const struct smtplimit_table *t,
					      gfp_t gfp)
{
	struct smtplimit_entry *e;
	struct mem_cgroup *old;

	if (!t->memcg || SMTPLIMIT_MUTANT_IS(18))
		return kmem_cache_alloc(smtplimit_cache(t), gfp);
	old = set_active_memcg(t->memcg);
	e = kmem_cache_alloc(smtplimit_cache(t), gfp | __GFP_ACCOUNT);
	set_active_memcg(old);
	return e;
}

void smtplimit_entry_free_unused(const struct smtplimit_table *t,
				 struct smtplimit_entry *e)
{
	kmem_cache_free(smtplimit_cache(t), e);
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

/* Lookup */

struct smtplimit_entry *
smtplimit_lookup(struct smtplimit_table *t, const union smtplimit_addr *key)
{
	if (smtplimit_is_ipv4(t))
		return rhashtable_lookup(&t->ht, key, smtplimit_params4);
	return rhashtable_lookup(&t->ht, key, smtplimit_params6);
}

struct smtplimit_entry *
smtplimit_lookup_live(struct smtplimit_table *t, const union smtplimit_addr *key)
{
	struct smtplimit_entry *e = smtplimit_lookup(t, key);

	return e && !READ_ONCE(e->dead) ? e : NULL;
}

/*
 * Call @visit on each entry of the table until it returns false. Only RCU
 * is held, and it is dropped every SMTPLIMIT_WALK_BATCH entries, so the
 * caller must be free to sleep; no bucket lock is held across entries. A
 * walk meets every entry present throughout at least once, some twice: see
 * the proc read.
 */
void smtplimit_walk(struct smtplimit_table *t,
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

/* Entries */

/* The mask of a prefix of @len bits over @words 32-bit words. */
void smtplimit_prefix_mask(unsigned int len, unsigned int words,
			   __be32 *mask)
{
	unsigned int i;

	for (i = 0; i < words; i++, len = len > 32 ? len - 32 : 0)
		mask[i] = inet_make_mask(min(len, 32U));
}

static struct smtplimit_entry *
smtplimit_ht_insert(struct smtplimit_table *t, struct smtplimit_entry *e)
{
	if (smtplimit_is_ipv4(t))
		return rhashtable_lookup_get_insert_fast(&t->ht, &e->node,
							 smtplimit_params4);
	return rhashtable_lookup_get_insert_fast(&t->ht, &e->node,
						 smtplimit_params6);
}

/*
 * Insert @e, allocated with a place taken for it, as the source @key with
 * debt until @tat, @banned or not, held as the caller set e->held. Returns
 * @e, or the entry another CPU inserted for the same source first (then @e
 * is freed and its place given back), or NULL when the table had no memory.
 */
struct smtplimit_entry *
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

	old = smtplimit_ht_insert(t, e);
	if (!old) {
		this_cpu_inc(t->stats->created);
		return e;
	}
	/* @e was never visible to anyone: free it at once. */
	kmem_cache_free(smtplimit_cache(t), e);
	smtplimit_place_release(t);
	return IS_ERR(old) ? NULL : old;
}

/*
 * Unhash @e, if @how allows (see enum smtplimit_kill), and free it after a
 * grace period. Marking it dead under its lock first means exactly one
 * caller unhashes it, and no attempt is charged to an entry on its way out;
 * a ban is checked there too, as the lockless reads that chose @e are only
 * hints. The caller accounts for the place it held.
 */
bool smtplimit_entry_kill(struct smtplimit_table *t,
			  struct smtplimit_entry *e, u64 now,
			  enum smtplimit_kill how)
{
	bool take;
	int err;

	spin_lock_bh(&e->lock);
	switch (how) {
	case SMTPLIMIT_KILL_FULL:
		take = smtplimit_is_full(e->tat, now);
		break;
	case SMTPLIMIT_KILL_EVICT:
		take = !smtplimit_ban_holds(e, smtplimit_debt(e->tat, now),
					    READ_ONCE(t->tolerance));
		break;
	default:
		take = true;
		break;
	}
	/* A proc write holds its entries until it is done (smtplimit_write.c). */
	take = take && !e->dead && !e->held;
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
 * Track a new source, with a full bucket, in place of an evicted one when
 * the table or the netns is at its maximum. NULL when no place or memory
 * could be had: the caller then judges the attempt untracked.
 */
struct smtplimit_entry *
smtplimit_entry_create(struct smtplimit_table *t,
		       const union smtplimit_addr *key, u64 now)
{
	struct smtplimit_entry *e;

	e = smtplimit_entry_alloc(t, GFP_ATOMIC | __GFP_NOWARN);
	if (!e)
		return NULL;
	if (!smtplimit_place_take(t, now)) {
		kmem_cache_free(smtplimit_cache(t), e);
		return NULL;
	}
	e->held = false;
	return smtplimit_entry_insert(t, e, key, now, false);
}

/* Sweeps and GC */

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

	if ((!sw->prefix || smtplimit_in_prefix(t, &e->addr, sw)) &&
	    smtplimit_entry_kill(t, e, sw->now, sw->owing_too ?
				 SMTPLIMIT_KILL_ANY : SMTPLIMIT_KILL_FULL)) {
		smtplimit_place_release(t);
		sw->killed++;
	}
	return true;
}

/* Unhash the entries @sw selects; returns how many. */
unsigned int smtplimit_sweep(struct smtplimit_table *t,
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

	if (!SMTPLIMIT_MUTANT_IS(8))
		this_cpu_add(t->stats->gc_freed, smtplimit_sweep(t, &full));
	queue_delayed_work(system_power_efficient_wq, &t->gc_work,
			   SMTPLIMIT_GC_INTERVAL);
}

/* Tables */

struct smtplimit_table *
smtplimit_table_find(struct smtplimit_net *sn, u8 family, const char *name)
{
	struct smtplimit_table *t;

	hlist_for_each_entry(t, &sn->tables, node)
		if (t->family == family && strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* The table's rule's rate and bucket, consistent with each other. */
u32 smtplimit_table_rate(struct smtplimit_table *t,
			 struct smtplimit_bucket *bucket)
{
	u32 rate;

	spin_lock_bh(&t->rule_lock);
	rate = t->rate;
	*bucket = t->bucket;
	spin_unlock_bh(&t->rule_lock);
	return rate;
}

/*
 * Whether rule @a is stricter than @b: a lower rate, then a smaller burst,
 * then strict. A total order on what makes a bucket, so that the table's
 * rule does not depend on the order of its rules.
 */
static bool smtplimit_rule_stricter(const struct xt_smtplimit_priv *a,
				    const struct xt_smtplimit_priv *b)
{
	if (a->rate != b->rate)
		return a->rate < b->rate;
	if (a->bucket.burst != b->bucket.burst)
		return a->bucket.burst < b->bucket.burst;
	return a->bucket.strict && !b->bucket.strict;
}

/*
 * The table's parameters follow the set of its rules, whatever their order:
 * the strictest rule's rate, burst and strictness (the header's, and those
 * of "+ADDR"), and the largest maximum. There is no commit hook: checkentry
 * adds rules that an abort then destroys, and destroy runs after a commit
 * or an abort on both backends. So only destroy (@may_lower) lowers the
 * maximum and evicts down to it, full entries first; checkentry only raises
 * it. An aborted or refused change so leaves the parameters as they were
 * once its rules are destroyed, and has evicted nothing.
 */
void smtplimit_table_follow_rules(struct smtplimit_table *t, bool may_lower)
{
	const struct xt_smtplimit_priv *p, *rule = NULL;
	struct smtplimit_sweep full = { .now = smtplimit_now() };
	u32 most = 0;

	list_for_each_entry(p, &t->rules, node) {
		most = max(most, p->max);
		if (!rule || smtplimit_rule_stricter(p, rule))
			rule = p;
	}
	if (SMTPLIMIT_MUTANT_IS(11) && !may_lower) {
		/* The newest rule's maximum, at once, as before. */
		most = list_last_entry(&t->rules, struct xt_smtplimit_priv,
				       node)->max;
		may_lower = true;
	}
	/* Clamped, not refused: a host's ruleset loads in a container too. */
	if (t->userns && !SMTPLIMIT_MUTANT_IS(14))
		most = min(most, READ_ONCE(smtplimit_userns_max_entries));
	spin_lock_bh(&t->rule_lock);
	t->rate = rule->rate;
	t->bucket = rule->bucket;
	spin_unlock_bh(&t->rule_lock);
	WRITE_ONCE(t->tolerance, rule->bucket.tolerance);
	if (!may_lower) {
		WRITE_ONCE(t->max, max(t->max, most));
		return;
	}
	WRITE_ONCE(t->max, most);
	if (atomic_read(&t->count) > most)
		this_cpu_add(t->stats->gc_freed, smtplimit_sweep(t, &full));
	if (atomic_read(&t->count) > most)
		smtplimit_trim(t);
}

struct smtplimit_table *
smtplimit_table_create(struct smtplimit_net *sn, struct net *net, u8 family,
		       const struct xt_smtplimit_mtinfo *info)
{
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
	mutex_init(&t->snap_mutex);
	spin_lock_init(&t->rule_lock);
	t->sn = sn;
	t->net = net;
	t->userns = net->user_ns != &init_user_ns;
	if (t->userns)
		t->memcg = get_mem_cgroup_from_mm(current->mm);
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
	mem_cgroup_put(t->memcg);
	rhashtable_destroy(&t->ht);
free_stats:
	free_percpu(t->stats);
free_table:
	kfree(t);
	return ERR_PTR(err);
}

static void smtplimit_entry_free_at_destroy(void *ptr, void *cache)
{
	kmem_cache_free(cache, ptr);
}

/*
 * Teardown. smtplimit_mutex is global and, on iptables-nft, every rule's
 * checkentry first waits for the one work item running the destroys of all
 * namespaces (nft_compat_wait_for_destructors()), so a destroy must wait for
 * nothing: it only unlinks the table. The table's proc name must stay taken
 * until its file is gone, or a new table of that name in the same netns
 * would fail to create its file (the race of xt_hashlimit's "unregister proc
 * file before releasing mutex"): the unlinked table waits on sn->dying, and
 * checkentry of a new table of its name waits for it there. Removing the
 * file waits for its readers, so it is done, and the table freed, by
 * smtplimit_table_teardown() on smtplimit_wq. The netns exit flushes
 * smtplimit_wq before it removes the directories, so a teardown's dir and sn
 * outlive it.
 */
static DECLARE_WAIT_QUEUE_HEAD(smtplimit_name_freed);
static unsigned long smtplimit_names_freed;	/* smtplimit_mutex; names freed */

static bool smtplimit_dying(struct smtplimit_net *sn, u8 family,
			    const char *name)
{
	struct smtplimit_table *t;

	hlist_for_each_entry(t, &sn->dying, node)
		if (t->family == family && strcmp(t->name, name) == 0)
			return true;
	return false;
}

int smtplimit_table_wait_name(struct smtplimit_net *sn, u8 family,
			      const char *name)
{
	unsigned long freed;
	int err;

	while (smtplimit_dying(sn, family, name)) {
		freed = smtplimit_names_freed;
		mutex_unlock(&smtplimit_mutex);
		/* A reader may hold the old file for long: let iptables go. */
		err = wait_event_interruptible(smtplimit_name_freed,
					       READ_ONCE(smtplimit_names_freed) != freed);
		mutex_lock(&smtplimit_mutex);
		if (err)
			return -EINTR;
	}
	return 0;
}

void smtplimit_table_free(struct smtplimit_table *t)
{
	smtplimit_proc_table_exit(t);	/* its file is gone: no reader to come */
	cancel_delayed_work_sync(&t->gc_work);
	atomic_sub(atomic_read(&t->count), &t->sn->entries);
	if (t->userns)
		atomic_sub(atomic_read(&t->count), &smtplimit_userns_entries);
	rhashtable_free_and_destroy(&t->ht, smtplimit_entry_free_at_destroy,
				    smtplimit_cache(t));
	free_percpu(t->stats);
	mem_cgroup_put(t->memcg);
	mutex_destroy(&t->write_mutex);
	mutex_destroy(&t->snap_mutex);
	kfree(t);
}

/* On smtplimit_wq: the proc file (waiting for its readers), then the rest. */
static void smtplimit_table_teardown(struct work_struct *work)
{
	struct smtplimit_table *t =
		container_of(work, struct smtplimit_table, teardown);

	/* Mutant 16: the whole teardown under the global mutex again. */
	if (SMTPLIMIT_MUTANT_IS(16))
		mutex_lock(&smtplimit_mutex);
	remove_proc_entry(t->name, t->dir);
	if (!SMTPLIMIT_MUTANT_IS(16))
		mutex_lock(&smtplimit_mutex);
	hlist_del(&t->node);
	WRITE_ONCE(smtplimit_names_freed, smtplimit_names_freed + 1);
	if (!SMTPLIMIT_MUTANT_IS(16))
		mutex_unlock(&smtplimit_mutex);
	wake_up_all(&smtplimit_name_freed);
	smtplimit_table_free(t);
	if (SMTPLIMIT_MUTANT_IS(16))
		mutex_unlock(&smtplimit_mutex);
}

struct smtplimit_table *smtplimit_table_unlink(struct smtplimit_table *t)
{
	hlist_del(&t->node);
	t->dir = t->sn->proc_dir[smtplimit_family_index(t->family)];
	if (!t->dir)		/* the netns exit removed the file */
		return t;
	hlist_add_head(&t->node, &t->sn->dying);
	INIT_WORK(&t->teardown, smtplimit_table_teardown);
	queue_work(smtplimit_wq, &t->teardown);
	return NULL;
}

void smtplimit_teardowns_flush(void)
{
	flush_workqueue(smtplimit_wq);
}
