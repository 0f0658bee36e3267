/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Private to the module: the tables, their entries and the functions of
 * smtplimit_table.c and smtplimit_places.c that the match (xt_smtplimit.c),
 * the proc file (smtplimit_proc.c, smtplimit_write.c) and each other call.
 * The module-wide state lives in xt_smtplimit.c.
 *
 * Locking:
 * - smtplimit_mutex (xt_smtplimit.c) guards each netns's table and dying
 *   lists, each table's rule list and the proc directories. Checkentry,
 *   destroy and the netns exit take it; the smtplimit_table_*() calls below
 *   that change the table list or a table's rules run under it. Packets,
 *   proc reads and proc writes never take it. It is global, so nothing that
 *   waits for readers or walks a whole table on its way out runs under it:
 *   a destroyed table is only unlinked there, and torn down on
 *   smtplimit_wq (smtplimit_table_unlink()).
 * - Lookups are lockless, under RCU: an entry is freed a grace period after
 *   it is unhashed. smtplimit_walk() holds RCU only, dropped between batches,
 *   and no bucket lock across entries.
 * - smtplimit_entry.lock (spin_lock_bh) guards an entry's tat, passed,
 *   denied, dead, banned and held (set and cleared by the table's proc
 *   writer, under write_mutex too). Lockless reads of them (eviction sampling, the
 *   place counts) are hints, rechecked under the lock before anything is
 *   changed; the one that sets dead unhashes the entry.
 * - smtplimit_table.rule_lock guards the table's rate and bucket, so that
 *   a proc reader sees the two of one rule.
 * - smtplimit_table.write_mutex serialises the table's proc writes.
 * - smtplimit_table.snap_mutex guards snap, the read copy readers share
 *   (smtplimit_proc.c): one copy is built at a time. A reader's reference
 *   keeps a copy, the cache's or one it replaced, until that reader is done.
 * - A place is one unit of smtplimit_table.count and of
 *   smtplimit_net.entries, both atomic, and in a table of a non-initial
 *   user namespace (smtplimit_table.userns) of smtplimit_userns_entries
 *   too: it is reserved in all or none before an entry is inserted, and
 *   given back in all when one is unhashed.
 */
#ifndef _SMTPLIMIT_TABLE_H
#define _SMTPLIMIT_TABLE_H

#include <linux/atomic.h>
#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/rhashtable.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/workqueue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/xt_smtplimit.h>
#include <linux/in6.h>

#include "smtplimit_mutant.h"
#include "smtplimit_rate.h"

union smtplimit_addr {
	__be32 ip;
	struct in6_addr ip6;
};

/*
 * One tracked source. Once dead, its state is never read again under its
 * lock, so the rcu_head that frees it can share the state's memory: readers
 * that still hold the entry take the lock and find it dead, and lockless
 * reads of tat (smtplimit_tat_hint()) are hints rechecked under the lock.
 * An IPv4 entry is 36 bytes, 40 in its cache (smtplimit_caches_create()
 * asserts it).
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
	spinlock_t lock;		/* tat, passed, denied, dead, banned, held */
	bool dead;			/* being unhashed: charge nothing more */
	bool banned;			/* by "+ADDR SECONDS": not evicted
					 * until it may pass again
					 */
	bool held;			/* by a proc write being applied:
					 * never unhashed, see
					 * smtplimit_entry_kill()
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
	u64 banned;			/* entries set by "+" and ">" */
	u64 flushes;			/* "/" commands */
	u64 cut;			/* unterminated lines dropped at close */
	u64 aborted;			/* transactions dropped before "}" */
};

struct smtplimit_net {
	struct hlist_head tables;		/* smtplimit_mutex */
	struct hlist_head dying;		/* smtplimit_mutex: destroyed
						 * tables whose proc file still
						 * holds the name
						 */
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
	struct work_struct teardown;	/* on smtplimit_wq, once unlinked */
	struct proc_dir_entry *dir;	/* set at unlink: the directory its
					 * teardown removes the file from, or
					 * NULL after the netns exit removed it
					 */
	struct smtplimit_stats __percpu *stats;
	struct mem_cgroup *memcg;	/* its creator's, charged for entries;
					 * NULL in the initial user namespace
					 */
	bool userns;			/* of a non-initial user namespace:
					 * userns_max_entries and the
					 * userns_total_entries cap apply
					 */
	struct mutex write_mutex;	/* one proc write at a time */
	struct mutex snap_mutex;	/* snap, and one build at a time */
	struct smtplimit_snap *snap;	/* the newest read copy, or NULL */
	atomic_t snap_gen;		/* bumped after each proc write */
	atomic_t snaps;			/* read copies not yet freed */
	atomic_t count;			/* entries, full ones not yet collected too */
	u32 max;			/* most entries: the largest of the
					 * rules' (smtplimit_table_follow_rules);
					 * count exceeds it while only bans
					 * that hold are left above it
					 */
	u64 tolerance;			/* the table's rule's: a ban holds
					 * while the debt is beyond it
					 */
	spinlock_t rule_lock;		/* rate, bucket */
	u32 rate;			/* the table's rule's, for proc */
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

/* Which entries smtplimit_entry_kill() may unhash. */
enum smtplimit_kill {
	SMTPLIMIT_KILL_FULL,		/* only one whose bucket is full */
	SMTPLIMIT_KILL_EVICT,		/* any but one a ban holds */
	SMTPLIMIT_KILL_ANY,		/* any: a forget or flush */
};

/* Which entries a sweep unhashes. */
struct smtplimit_sweep {
	u64 now;
	bool owing_too;			/* owing entries too, bans included */
	const union smtplimit_addr *prefix;	/* if set, only within it: */
	const union smtplimit_addr *mask;	/* prefix is masked with it */
	unsigned int killed;		/* out: how many were unhashed */
};

/* Module-wide, in xt_smtplimit.c: set at load from HZ, the units of every TAT. */
extern struct smtplimit_clock smtplimit_clock;
/* Module-wide, in xt_smtplimit.c: the netns_max_entries parameter. */
extern unsigned int smtplimit_netns_max_entries;
/* Module-wide, in xt_smtplimit.c: the caps of non-initial user namespaces. */
extern unsigned int smtplimit_userns_max_entries;
extern unsigned int smtplimit_userns_total_entries;
extern atomic_t smtplimit_userns_entries;	/* places taken under the latter */
/* Module-wide, in xt_smtplimit.c: the proc_snapshot_ms parameter. */
extern unsigned int smtplimit_proc_snapshot_ms;
/* In smtplimit_proc.c: the operations of each table's proc file. */
extern const struct proc_ops smtplimit_proc_ops;
/* In smtplimit_proc.c: drop the table's read copy, its proc file gone. */
void smtplimit_proc_table_exit(struct smtplimit_table *t);

/* Module-wide, in xt_smtplimit.c: see Locking above. */
extern struct mutex smtplimit_mutex;

/*
 * A lockless read of e->tat, a hint for choosing an entry that is then
 * rechecked under e->lock (eviction sampling, the sweeps' walks). The read
 * races with two writers: the packet path's and the proc write's stores
 * under e->lock, and, once the entry is dead, call_rcu()'s stores of its
 * rcu_head into the same memory. Both are benign: a torn or stale value
 * only makes a worse choice, and a dead entry is skipped (READ_ONCE(dead))
 * or refused by smtplimit_entry_kill() under the lock, so the value read is
 * never acted upon unchecked. data_race() tells KCSAN so.
 */
static inline u64 smtplimit_tat_hint(const struct smtplimit_entry *e)
{
	/* A racy hint, as above: benign, and never acted upon unchecked. */
	return data_race(READ_ONCE(e->tat));
}

/* Now in clock units; wraps after 2^64 units, which every use tolerates. */
static inline u64 smtplimit_now(void)
{
	u64 jiffies_now = get_jiffies_64();

	return jiffies_now << smtplimit_clock.shift;
}

static inline bool smtplimit_is_ipv4(const struct smtplimit_table *t)
{
	return t->family == NFPROTO_IPV4;
}

/*
 * A ban keeps its entry from eviction while the debt is beyond @tolerance.
 * Eviction (smtplimit_places.c) asks it of lockless hints, and
 * smtplimit_entry_kill() again under e->lock.
 */
static inline bool smtplimit_ban_holds(const struct smtplimit_entry *e,
				       u64 debt, u64 tolerance)
{
	return READ_ONCE(e->banned) && debt > tolerance;
}

/*
 * Module load and unload: the entry caches and smtplimit_wq, the workqueue
 * of table teardowns; the destroy drains smtplimit_wq and waits for RCU
 * frees.
 */
int smtplimit_caches_create(void);
void smtplimit_caches_destroy(void);
/* Wait for every teardown queued so far (a netns exit, before its dirs go). */
void smtplimit_teardowns_flush(void);

/* The entry of @key, dead or not. Under RCU. */
struct smtplimit_entry *smtplimit_lookup(struct smtplimit_table *t,
					 const union smtplimit_addr *key);
/* The entry of @key unless it is dead. Under RCU. */
struct smtplimit_entry *smtplimit_lookup_live(struct smtplimit_table *t,
					      const union smtplimit_addr *key);
/* Call @visit on each entry until it returns false. May sleep. */
void smtplimit_walk(struct smtplimit_table *t,
		    bool (*visit)(struct smtplimit_table *t,
				  struct smtplimit_entry *e, void *arg),
		    void *arg);

/* An entry's memory for table @t, charged to its memcg, with no place yet. */
struct smtplimit_entry *smtplimit_entry_alloc(const struct smtplimit_table *t,
					      gfp_t gfp);
/* Free an entry from smtplimit_entry_alloc() that was never inserted. */
void smtplimit_entry_free_unused(const struct smtplimit_table *t,
				 struct smtplimit_entry *e);
/* Insert @e, which holds a place; returns it, the one there first, or NULL. */
struct smtplimit_entry *smtplimit_entry_insert(struct smtplimit_table *t,
					       struct smtplimit_entry *e,
					       const union smtplimit_addr *key,
					       u64 tat, bool banned);
/* A packet's new source, in a place free or evicted; NULL if none. Under RCU. */
struct smtplimit_entry *smtplimit_entry_create(struct smtplimit_table *t,
					       const union smtplimit_addr *key,
					       u64 now);
/* Unhash @e if @how allows and not dead; the caller frees its place. */
bool smtplimit_entry_kill(struct smtplimit_table *t, struct smtplimit_entry *e,
			  u64 now, enum smtplimit_kill how);

/*
 * In smtplimit_places.c: the places entries hold, and eviction.
 *
 * Take a place for a new entry, evicting one from a sample at a maximum;
 * false if none could be had. Under RCU: smtplimit_entry_create() calls it.
 */
bool smtplimit_place_take(struct smtplimit_table *t, u64 now);
/* Give back the place of an entry unhashed, or one taken and not used. */
void smtplimit_place_release(struct smtplimit_table *t);
/* Take a place, evicting if need be, walking the whole table: may sleep. */
bool smtplimit_place_take_sleeping_walk(struct smtplimit_table *t, u64 now);
/* Whether @need places can be had without evicting a ban. May sleep. */
bool smtplimit_places_available(struct smtplimit_table *t, unsigned int need,
				u64 now);
/*
 * Evict down to t->max, the fullest buckets first, never a ban that holds:
 * smtplimit_table_follow_rules() after lowering it. May sleep.
 */
void smtplimit_trim(struct smtplimit_table *t);

/* The mask of a prefix of @len bits over @words 32-bit words. */
void smtplimit_prefix_mask(unsigned int len, unsigned int words, __be32 *mask);
/* Unhash the entries @sw selects, giving back their places; how many. */
unsigned int smtplimit_sweep(struct smtplimit_table *t,
			     struct smtplimit_sweep *sw);

/* The table's rule's rate, and its bucket in @bucket. */
u32 smtplimit_table_rate(struct smtplimit_table *t,
			 struct smtplimit_bucket *bucket);
/* The table of @family named @name in @sn, or NULL. Under smtplimit_mutex. */
struct smtplimit_table *smtplimit_table_find(struct smtplimit_net *sn,
					     u8 family, const char *name);
/* A new table with its proc file, in @sn of @net. Under smtplimit_mutex. */
struct smtplimit_table *
smtplimit_table_create(struct smtplimit_net *sn, struct net *net, u8 family,
		       const struct xt_smtplimit_mtinfo *info);
/*
 * Derive the table's parameters from the set t->rules; only @may_lower
 * (destroy) lowers the maximum, evicting down to it. Under smtplimit_mutex.
 */
void smtplimit_table_follow_rules(struct smtplimit_table *t, bool may_lower);
/*
 * Checkentry, before creating a table named @name: wait until no dying
 * table of @sn holds that proc name; -EINTR if a signal came first. Under
 * smtplimit_mutex, which it drops while it waits.
 */
int smtplimit_table_wait_name(struct smtplimit_net *sn, u8 family,
			      const char *name);
/*
 * A table with no rule left, after a grace period: unlink it from its netns
 * and queue its teardown. Under smtplimit_mutex, and quick: it waits for
 * nothing. Returns the table if the caller must instead call
 * smtplimit_table_free() once it has dropped the mutex (the netns is exiting).
 */
struct smtplimit_table *smtplimit_table_unlink(struct smtplimit_table *t);
/* Free an unlinked table with no proc file. Not under smtplimit_mutex. */
void smtplimit_table_free(struct smtplimit_table *t);

#endif /* _SMTPLIMIT_TABLE_H */
