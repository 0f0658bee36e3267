#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Host unit tests of the GCRA oracle tests/lib/gcra.py: its arithmetic is
kernel/smtplimit_rate.c's, and its bounds accept the rate asked for while
refusing what a limiter at 1.5x or 2x the rate, or one blocking everything,
would let pass. Prints ok lines and "N passed, N failed"."""
import os
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lib import gcra  # noqa: E402

passed = failed = 0


def ok(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
    print(f"{'ok' if cond else 'not ok'} {passed + failed} - {what}")


def spaced(n, step, send=0.002):
    """n attempts step seconds apart, each taking @send seconds."""
    return [(i * step, i * step + send) for i in range(n)]


def main():
    ok(gcra.parse_rate("2/s") == 172800 and gcra.parse_rate("2/h") == 48 and
       gcra.parse_rate("1/d") == 1 and gcra.parse_rate("5") == 432000, "parse_rate")
    b = gcra.Bucket("2/s", 1, hz=250)
    # HZ 250: shift 17, 2^17 units a jiffy; T = 86400 * 250 * 2^17 / 172800.
    ok(b.units_per_jiffy == 1 << 17 and b.interval == 250 * (1 << 17) // 2 and
       b.slack == 1 << 17 and b.tolerance == 0, "2/s at HZ 250: units and T")
    b = gcra.Bucket("1/d", 1000000, hz=1000)
    ok(b.units_per_sec == 1000 << 15 and b.interval == 86400 * (1000 << 15) and
       2 * b.burst * b.interval < 1 << 63, "1/day burst 1e6 at HZ 1000: no overflow")
    b = gcra.Bucket("10000/s", 1, hz=250)
    ok(b.replay([0] * 100) == 1 and b.replay([0] * 50 + [1] * 50) == 2,
       "burst < rate/HZ: at most burst per jiffy")
    b = gcra.Bucket("10000/s", 40, hz=250)
    # T rounds 0.025 jiffy up to 3277 units: one jiffy in 400 passes 39.
    ok(b.replay([j for j in range(250) for _ in range(60)]) == 40 * 250 - 1,
       "burst = rate/HZ: the rate, 40 a jiffy")

    # The strict-off rate check of test_smtplimit: 2/s, burst 1, 15 every 0.2 s.
    att = spaced(15, 0.2)
    lo, hi = gcra.bounds("2/s", 1, att)
    ok((lo, hi) == (5, 5), f"2/s every 0.2 s: bounds {lo, hi}, want (5, 5)")
    for wrong in ("3/s", "4/s"):  # a limiter at 1.5x and 2x the rate
        got = gcra.bounds(wrong, 1, att)[0]
        ok(gcra.check("2/s", 1, att, got) is not None, f"{wrong} limiter ({got} passed) refused")
    ok(gcra.check("2/s", 1, att, 0) is not None, "a limiter blocking all refused")
    ok(gcra.check("2/s", 1, att, 15) is not None, "no limiter refused")
    # Each send taking up to 30 ms and stamped anywhere in it: still 5 to 6.
    lo, hi = gcra.bounds("2/s", 1, spaced(15, 0.2, 0.03))
    ok(lo >= 5 and hi <= 6, f"slow sends widen the bounds by a pass at most: {lo, hi}")

    # fast_rate: 20/s burst 10, back to back for 4 s.
    att = spaced(1300, 0.003, 0.0025)
    lo, hi = gcra.bounds("20/s", 10, att)
    ok(87 <= lo <= hi <= 89, f"20/s burst 10 for 3.9 s: bounds {lo, hi}")
    ok(gcra.check("20/s", 10, att, gcra.bounds("30/s", 10, att)[0]) is not None,
       "a limiter at 30/s refused")
    ok(gcra.check("20/s", 10, att, 10) is not None, "a limiter passing only the burst refused")

    # Strict: retrying every 0.2 s at 2/s never gets past the first; every
    # 0.7 s, every attempt passes; tokens floor at -burst.
    ok(gcra.bounds("2/s", 1, spaced(15, 0.2), strict=True) == (1, 1), "strict, fast retries")
    ok(gcra.bounds("2/s", 1, spaced(6, 0.7), strict=True) == (6, 6), "strict, slow retries")
    ok(gcra.check("2/s", 1, spaced(15, 0.2), 5, strict=True) is not None,
       "strict: a limiter that is not strict refused")
    b = gcra.Bucket("1/min", 1, strict=True)
    tat = 0
    for _ in range(4):
        tat = b.attempt(tat, 0)[1]
    ok(b.tokens_milli(tat, 0) == -1000, "strict 1/min: tokens floor at -1")
    b = gcra.Bucket("1/d", 1000000, strict=True)
    tat, n = 0, 0
    for _ in range(3):
        p, tat = b.attempt(tat, 0)
        n += p
    ok(n == 3 and b.tokens_milli(tat, 0) == 999997000, "1/day burst 1e6: 999997 tokens")
    ok(b.tokens_milli(tat, b.interval // 2) == 999997500, "... and half a day later 999997.5")

    # The seed scenario: 2/h burst 2, six attempts back to back: 2 pass.
    att = spaced(6, 0.01)
    ok(gcra.bounds("2/h", 2, att) == (2, 2), "seed: 2/h burst 2")
    ok(gcra.check("2/h", 2, att, 3) is not None and gcra.check("2/h", 2, att, 0) is not None,
       "seed: 3 or 0 refused")
    print(f"gcra: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
