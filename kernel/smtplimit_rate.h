/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Token-bucket arithmetic of xt_smtplimit, as GCRA (the generic cell rate
 * algorithm). Free of kernel-only dependencies: the module, the iptables
 * extension and the host unit tests compile the same smtplimit_rate.c.
 *
 * Time is counted in clock units of 2^-shift jiffy, shift chosen from HZ so
 * that one second is between 2^24 and 2^25 units. A source's whole state is
 * its theoretical arrival time (TAT) in those units: the time at which its
 * bucket will be full again. It does not depend on rate or burst, so rules
 * with different parameters can share it and a reload keeps it.
 *
 * With emission interval T = 1/rate and tolerance (burst - 1) * T, an attempt
 * conforms when TAT - now <= tolerance, and then TAT = max(TAT, now - slack)
 * + T. The slack is the jiffy clock's granularity: an attempt seen at jiffy
 * j came at some time in it, so a bucket that became full up to one jiffy
 * ago is charged from then and the long-run rate loses nothing to rounding.
 * Capped below T, the slack never lets a full bucket pass more than burst
 * attempts at once. The long run is exact (to the rounding of T) whenever
 * burst >= rate / HZ: below that, a jiffy can pass no more than burst
 * attempts, and the rate delivered is burst * HZ.
 *
 * Strict: a denied attempt costs T too, up to a debt of 2 * burst * T
 * (tokens floor at -burst), so a source retrying faster than the rate never
 * gets through until it backs off.
 *
 * Bans set the debt directly: "+ADDR" leaves burst * T (0 tokens, the next
 * attempt may pass after T), "+ADDR SECONDS" SECONDS + tolerance (no attempt
 * passes for SECONDS). ">ADDR S" keeps the later of that and the TAT there
 * (never shortens); "~ADDR" lifts a ban to at most burst * T, the debt of
 * an empty bucket; "=ADDR S" keeps the later of now + S (the bucket full
 * again in S) and the TAT there, S capped at the most a rule lets a source
 * owe without a ban: burst * T, 2 * burst * T when strict.
 *
 * The same file validates table names, which both sides must agree on.
 *
 * Range: a debt never exceeds 2 * burst * T <= 2 * 10^6 * 86400 s * 2^25
 * units < 2^63, so differences fit in s64 and are compared wrap-safe.
 * Precision: T >= 2^24 / 10000 > 1677 units, so rounding T to a whole unit
 * errs by less than 0.03% over the long run.
 */
#ifndef _SMTPLIMIT_RATE_H
#define _SMTPLIMIT_RATE_H

#ifdef __KERNEL__
#include <linux/errno.h>
#include <linux/math64.h>
#include <linux/string.h>
#include <linux/types.h>
#else
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <linux/types.h>
typedef __u64 u64;
typedef __s64 s64;
typedef __u32 u32;

static inline u64 div64_u64(u64 dividend, u64 divisor)
{
	return dividend / divisor;
}

static inline u64 div64_u64_rem(u64 dividend, u64 divisor, u64 *remainder)
{
	*remainder = dividend % divisor;
	return dividend / divisor;
}
#endif

struct smtplimit_unit {
	const char *name;	/* accepted as any prefix: "h", "ho", "hour" */
	u32 seconds;
};

/* second, minute, hour, day: the units of a rate, smallest first */
#define SMTPLIMIT_NUNITS 4
extern const struct smtplimit_unit smtplimit_units[SMTPLIMIT_NUNITS];

/* What the proc file shows of one source under one rule's rate and burst. */
struct smtplimit_view {
	s64 tokens_milli;	/* tokens in thousandths, floored */
	u64 next_s;		/* seconds until it may pass, rounded up */
	u64 full_s;		/* seconds until its bucket is full */
};

/* The clock: a unit is 2^-shift jiffy, with shift from HZ. */
struct smtplimit_clock {
	unsigned int shift;
	u64 units_per_jiffy;	/* 2^shift */
	u64 units_per_sec;	/* HZ << shift, within [2^24, 2^25) */
};

/* A rule's bucket, derived once from its rate and burst. */
struct smtplimit_bucket {
	u64 interval;		/* T: clock units per attempt at the rate */
	u64 tolerance;		/* (burst - 1) * T: how far TAT may lead now */
	u64 slack;		/* min(1 jiffy, T - 1): how far it may lag */
	u32 burst;
	bool strict;		/* denied attempts cost T, up to 2 * burst * T */
};

void smtplimit_clock_init(struct smtplimit_clock *clock, unsigned int hz);
void smtplimit_bucket_init(struct smtplimit_bucket *bucket,
			   const struct smtplimit_clock *clock, u32 rate,
			   u32 burst, bool strict);
u64 smtplimit_ban(u64 now, const struct smtplimit_bucket *bucket,
		  const struct smtplimit_clock *clock, u32 seconds);
u64 smtplimit_ms_units(const struct smtplimit_clock *clock, u64 ms);
u64 smtplimit_ban_at_least(u64 tat, u64 now,
			   const struct smtplimit_bucket *bucket,
			   const struct smtplimit_clock *clock, u64 ms);
u64 smtplimit_lift(u64 tat, u64 now, const struct smtplimit_bucket *bucket);
u64 smtplimit_set_full(u64 tat, u64 now, const struct smtplimit_bucket *bucket,
		       const struct smtplimit_clock *clock, u64 ms);
bool smtplimit_may_pass(u64 tat, u64 now,
			const struct smtplimit_bucket *bucket);
bool smtplimit_attempt(u64 *tat, u64 now, const struct smtplimit_bucket *bucket);
void smtplimit_view(u64 tat, u64 now, const struct smtplimit_bucket *bucket,
		    const struct smtplimit_clock *clock,
		    struct smtplimit_view *view);
const char *smtplimit_rate_split(u32 rate, u32 *count);
int smtplimit_check_name(const char *name, size_t size);

/* Debt in clock units: 0 when the bucket is full. */
static inline u64 smtplimit_debt(u64 tat, u64 now)
{
	s64 debt = (s64)(tat - now);

	return debt > 0 ? debt : 0;
}

/* A full bucket is the same as no entry at all. */
static inline bool smtplimit_is_full(u64 tat, u64 now)
{
	return (s64)(tat - now) <= 0;
}

#endif /* _SMTPLIMIT_RATE_H */
