// SPDX-License-Identifier: GPL-2.0
/*
 * Token-bucket arithmetic of xt_smtplimit; see smtplimit_rate.h for the model,
 * the units and the ranges that keep every product below 2^63.
 */
#include <linux/netfilter/xt_smtplimit.h>
#include "smtplimit_rate.h"

const struct smtplimit_unit smtplimit_units[SMTPLIMIT_NUNITS] = {
	{ "second",	1 },
	{ "minute",	60 },
	{ "hour",	3600 },
	{ "day",	XT_SMTPLIMIT_SECONDS_PER_DAY },
};

/* The smallest shift with (hz << shift) >= 2^24; hz is at most 2^24. */
void smtplimit_clock_init(struct smtplimit_clock *clock, unsigned int hz)
{
	clock->shift = 0;
	while (((u64)hz << clock->shift) < (1ULL << 24))
		clock->shift++;
	clock->units_per_jiffy = 1ULL << clock->shift;
	clock->units_per_sec = (u64)hz << clock->shift;
}

/*
 * T = 86400 s / rate, rounded to the nearest unit: 86400 * units_per_sec is
 * below 2^42, and T >= 1677 units for rates up to 10000/s.
 */
void smtplimit_bucket_init(struct smtplimit_bucket *bucket,
			   const struct smtplimit_clock *clock, u32 rate,
			   u32 burst, bool strict)
{
	u64 day = (u64)XT_SMTPLIMIT_SECONDS_PER_DAY * clock->units_per_sec;

	bucket->interval = div64_u64(day + rate / 2, rate);
	bucket->tolerance = (u64)(burst - 1) * bucket->interval;
	bucket->slack = clock->units_per_jiffy < bucket->interval ?
			clock->units_per_jiffy : bucket->interval - 1;
	bucket->burst = burst;
	bucket->strict = strict;
}

/*
 * One attempt at @now. Returns true if it conforms, and then charges it. A
 * non-conforming attempt leaves @tat alone, or in strict mode adds T up to
 * a debt of 2 * burst * T = tolerance + (burst + 1) * T (never lowering a
 * longer ban).
 */
bool smtplimit_attempt(u64 *tat, u64 now, const struct smtplimit_bucket *bucket)
{
	s64 debt = (s64)(*tat - now);

	if (!smtplimit_may_pass(*tat, now, bucket)) {
		u64 floor = 2 * (u64)bucket->burst * bucket->interval;
		u64 next = debt + bucket->interval;

		if (bucket->strict && (u64)debt < floor)
			*tat = now + (next < floor ? next : floor);
		return false;
	}
	if (debt < -(s64)bucket->slack)
		*tat = now - bucket->slack;
	*tat += bucket->interval;
	return true;
}

/* The TAT of a ban at @now: 0 tokens, or no attempt for @seconds if not 0. */
u64 smtplimit_ban(u64 now, const struct smtplimit_bucket *bucket,
		  const struct smtplimit_clock *clock, u32 seconds)
{
	if (!seconds)
		return now + (u64)bucket->burst * bucket->interval;
	return now + seconds * clock->units_per_sec + bucket->tolerance;
}

/* @ms milliseconds in clock units: below 2^35 * 2^25, no overflow. */
u64 smtplimit_ms_units(const struct smtplimit_clock *clock, u64 ms)
{
	return div64_u64(ms * clock->units_per_sec, 1000);
}

/* The later of two TATs, wrap-safe. */
static u64 smtplimit_later(u64 a, u64 b)
{
	return (s64)(a - b) >= 0 ? a : b;
}

/*
 * ">ADDR S": no attempt passes for @ms from @now, and a later TAT already
 * there (a longer ban, a bigger debt) is kept.
 */
u64 smtplimit_ban_at_least(u64 tat, u64 now,
			   const struct smtplimit_bucket *bucket,
			   const struct smtplimit_clock *clock, u64 ms)
{
	return smtplimit_later(tat, now + smtplimit_ms_units(clock, ms) +
				    bucket->tolerance);
}

/* "~ADDR" on a ban: at most an empty bucket's debt, burst * T. */
u64 smtplimit_lift(u64 tat, u64 now, const struct smtplimit_bucket *bucket)
{
	u64 empty = now + (u64)bucket->burst * bucket->interval;

	return smtplimit_later(tat, empty) == tat ? empty : tat;
}

/*
 * "=ADDR S": the bucket full again no sooner than @ms from @now, capped at
 * the most debt the packet path can leave (burst * T, twice that strict);
 * a later TAT already there is kept.
 */
u64 smtplimit_set_full(u64 tat, u64 now, const struct smtplimit_bucket *bucket,
		       const struct smtplimit_clock *clock, u64 ms)
{
	u64 most = (u64)bucket->burst * bucket->interval * (bucket->strict ? 2 : 1);
	u64 debt = smtplimit_ms_units(clock, ms);

	return smtplimit_later(tat, now + (debt < most ? debt : most));
}

/* Whether an attempt at @now would conform: debt within the tolerance. */
bool smtplimit_may_pass(u64 tat, u64 now, const struct smtplimit_bucket *bucket)
{
	return (s64)(tat - now) <= (s64)bucket->tolerance;
}

static u64 units_to_seconds_up(u64 units, u64 units_per_sec)
{
	return div64_u64(units + units_per_sec - 1, units_per_sec);
}

/*
 * tokens = burst - debt / T, floored to thousandths: burst * 1000 minus
 * ceil(1000 * debt / T), split as q * T + r so that 1000 * r < 1000 * T
 * stays below 2^52.
 */
void smtplimit_view(u64 tat, u64 now, const struct smtplimit_bucket *bucket,
		    const struct smtplimit_clock *clock,
		    struct smtplimit_view *view)
{
	u64 t = bucket->interval, debt = smtplimit_debt(tat, now);
	u64 r, q = div64_u64_rem(debt, t, &r);
	u64 spent_milli = q * 1000 + div64_u64(r * 1000 + t - 1, t);

	view->tokens_milli = (s64)bucket->burst * 1000 - (s64)spent_milli;
	view->next_s = debt > bucket->tolerance ?
		units_to_seconds_up(debt - bucket->tolerance,
				    clock->units_per_sec) : 0;
	view->full_s = units_to_seconds_up(debt, clock->units_per_sec);
}

/*
 * The canonical form of @rate (attempts per day): the smallest unit in which
 * the count is whole, so 60/minute is 1/second and 3/day stays 3/day.
 */
const char *smtplimit_rate_split(u32 rate, u32 *count)
{
	unsigned int i;

	for (i = 0; i < SMTPLIMIT_NUNITS - 1; i++) {
		u32 per_day = XT_SMTPLIMIT_SECONDS_PER_DAY /
			      smtplimit_units[i].seconds;

		if (rate % per_day == 0) {
			*count = rate / per_day;
			return smtplimit_units[i].name;
		}
	}
	*count = rate;
	return smtplimit_units[SMTPLIMIT_NUNITS - 1].name;
}

static const char smtplimit_name_chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

/*
 * A table name names a proc file: 1..127 bytes of [A-Za-z0-9._-], NUL-ended
 * within @size bytes, not "." or "..". Returns 0, -EINVAL or -ENAMETOOLONG.
 */
int smtplimit_check_name(const char *name, size_t size)
{
	size_t len = strnlen(name, size);

	if (len >= size || len >= XT_SMTPLIMIT_NAME_LEN)
		return -ENAMETOOLONG;
	if (len == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	if (strspn(name, smtplimit_name_chars) != len)
		return -EINVAL;
	return 0;
}
