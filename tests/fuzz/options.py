#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Fuzz the iptables extension's options: every option of -m smtplimit with
boundary and malformed values, repeated and unknown options, on
iptables-legacy and iptables-nft (and ip6tables for what differs by family),
in a network namespace of its own (the script unshares one).

Each case is one `iptables -A INPUT -m smtplimit ...` against a ruleset that
already holds an smtplimit rule with some tracked state. A case the plugin
(or libxtables) can judge must be refused with exit status 2 and a message
on stderr, and leave the ruleset, the tables and their state unchanged; a
valid one must be accepted, and is deleted again. Cases marked "any" (what
libxtables' number parser or getopt's prefix matching may take either way)
must be accepted or refused cleanly. Cases the kernel judges (a srcmask
conflict) must fail without changing anything.

    options.py [--cases N] [--seed S] [--backend legacy|nft|both]

N random mutations of valid values follow the fixed cases (default
$XT_FUZZ_CASES or 100), judged by an oracle written from README.md.
Prints "options: N passed, N failed".
"""
import argparse
import os
import random
import re
import socket
import subprocess
import sys
import time

from lib.netns import unshare
from lib.results import Results

OK, REFUSE, ANY, KERNEL = "ok", "refuse", "any", "kernel"
RATE_MAX = 10000 * 86400
UNITS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))
NAME_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def rate_ok(s):
    """The oracle for RATE, from README.md."""
    m = re.fullmatch(r"([0-9]+)(?:/(.*))?", s, re.S)
    if not m:
        return False
    count, unit = int(m.group(1)), m.group(2)
    secs = 1
    if unit is not None:
        found = [u for u in UNITS if unit and u[0].startswith(unit)]
        if not found:
            return False
        secs = found[0][1]
    per_day = count * (86400 // secs)
    return 1 <= per_day <= RATE_MAX


def name_ok(b):
    return 1 <= len(b) <= 127 and b not in (b".", b"..") and set(b) <= NAME_CHARS


def uint_ok(s, lo, hi):
    """A plain decimal number is judged exactly, with or without the "+" that
    strtoumax takes; libxtables refuses a "-" itself. Anything else its
    strtoumax (base 0, leading spaces) might read is "any"."""
    if re.fullmatch(r"\+?(?:[1-9][0-9]*|0)", s):
        return OK if lo <= int(s) <= hi else REFUSE
    if re.match(r"\s*-", s):
        return REFUSE
    if re.fullmatch(r"\s*\+?(0[xX][0-9a-fA-F]*|0[0-7]*|[0-9]+)", s):
        return ANY
    return REFUSE if not re.match(r"\s*\+?[0-9]", s) else ANY


def fixed_cases(v6):
    """(what, args, expectation); the base options are added unless given."""
    width = 128 if v6 else 32
    c = []
    rates = [("1/day", OK), ("1/d", OK), ("1/da", OK), ("2/h", OK), ("60/min", OK),
             ("10000/second", OK), ("10000", OK), ("10000/s", OK),
             ("600000/minute", OK), ("36000000/h", OK), ("864000000/day", OK),
             ("0002/h", OK),
             ("0", REFUSE), ("0/s", REFUSE), ("0/day", REFUSE), ("10001", REFUSE),
             ("10001/s", REFUSE), ("600001/min", REFUSE), ("36000001/h", REFUSE),
             ("864000001/day", REFUSE), ("4294967296/s", REFUSE),
             ("18446744073709551617/day", REFUSE), ("9" * 200 + "/s", REFUSE),
             ("9" * 5000, REFUSE), ("-1", REFUSE), ("-1/s", REFUSE), ("", REFUSE),
             ("/s", REFUSE), ("1/", REFUSE), ("1/x", REFUSE), ("1/secs", REFUSE),
             ("1/seconds", REFUSE), ("2/hr", REFUSE), ("2/hours", REFUSE),
             ("2/mn", REFUSE), ("2/ms", REFUSE), ("2/sec ", REFUSE), ("2/ day", REFUSE),
             ("2/H", REFUSE), ("2/Hour", REFUSE), ("2/dayy", REFUSE), ("2/daily", REFUSE),
             ("1 /s", REFUSE), (" 1/s", REFUSE), ("1.5/s", REFUSE), ("0x10/s", REFUSE),
             ("+1/s", REFUSE), ("1e3/s", REFUSE), ("a/s", REFUSE), ("1//s", REFUSE),
             ("1/s/s", REFUSE), ("1\n/s", REFUSE), ("1/s\n", REFUSE),
             ("\uff11/s", REFUSE), ("2/h" + "\x01", REFUSE)]
    for v, e in rates:
        c.append((f"--smtplimit {v!r}", ["--smtplimit", v], e))
    # The three rate options share one parser: a sample for the other two.
    for opt in ("--smtplimit-upto", "--smtplimit-above"):
        for v, e in rates[::6]:
            c.append((f"{opt} {v!r}", [opt, v], e))
    for v, e in [("1", OK), ("5", OK), ("1000000", OK), ("0", REFUSE),
                 ("1000001", REFUSE), ("-1", REFUSE), ("", REFUSE),
                 ("4294967296", REFUSE), ("4294967297", REFUSE),
                 ("99999999999999999999", REFUSE), ("9" * 300, REFUSE), ("1.5", REFUSE),
                 ("5 ", REFUSE), ("5k", REFUSE), ("five", REFUSE), ("5\n", REFUSE),
                 ("0x10", ANY), ("010", ANY), (" 5", ANY), ("+5", OK), (" -5", REFUSE),
                 ("+1000001", REFUSE)]:
        c.append((f"--smtplimit-burst {v!r}", ["--smtplimit-burst", v], e))
    for v, e in [("1", OK), ("65536", OK), ("16777216", OK), ("0", REFUSE),
                 ("16777217", REFUSE), ("-1", REFUSE), ("", REFUSE),
                 ("4294967296", REFUSE), ("1e6", REFUSE), ("1M", REFUSE), ("64k", REFUSE),
                 ("9" * 300, REFUSE), ("0x1000000", ANY)]:
        c.append((f"--smtplimit-htable-max {v!r}", ["--smtplimit-htable-max", v], e))
    for v, e in [("0", OK), (str(width), OK), ("24", OK), (str(width + 1), REFUSE),
                 ("255", REFUSE), ("256", REFUSE), ("-1", REFUSE), ("", REFUSE),
                 ("24.0", REFUSE), ("/24", REFUSE), ("24\n", REFUSE), ("9" * 300, REFUSE),
                 ("255.255.255.0", REFUSE if v6 else ANY), ("0x10", ANY)]:
        c.append((f"--smtplimit-srcmask {v!r}", ["--smtplimit-srcmask", v], e))
    names = [("a", OK), ("a" * 127, OK), ("a.b_c-D9", OK), ("...", OK), ("-x", ANY),
             ("", REFUSE), (".", REFUSE), ("..", REFUSE), ("a/b", REFUSE), ("/", REFUSE),
             ("../x", REFUSE), ("a\nb", REFUSE), ("a\n", REFUSE), ("a b", REFUSE),
             ("a\tb", REFUSE), ("a*", REFUSE), ("\u00e4", REFUSE), ("a" * 128, REFUSE),
             ("a" * 200, REFUSE), ("a" * 65536, REFUSE), ("%s%n", REFUSE),
             ("a\x7f", REFUSE)]
    for v, e in names:
        c.append((f"--smtplimit-name {v[:20]!r} ({len(v)} bytes)",
                  ["--smtplimit-name", v], e))
    c += [
        ("strict", ["--smtplimit-strict"], OK),
        ("strict with a value", ["--smtplimit-strict", "yes"], REFUSE),
        ("strict twice", ["--smtplimit-strict", "--smtplimit-strict"], REFUSE),
        ("burst twice", ["--smtplimit-burst", "5", "--smtplimit-burst", "6"], REFUSE),
        ("htable-max twice", ["--smtplimit-htable-max", "5", "--smtplimit-htable-max", "5"], REFUSE),
        ("srcmask twice", ["--smtplimit-srcmask", "8", "--smtplimit-srcmask", "8"], REFUSE),
        ("name twice", ["--smtplimit-name", "fzc", "--smtplimit-name", "fzc"], REFUSE),
        ("rate twice", ["--smtplimit", "2/h", "--smtplimit", "3/h"], REFUSE),
        ("upto and --smtplimit", ["--smtplimit", "2/h", "--smtplimit-upto", "2/h"], REFUSE),
        ("upto and above", ["--smtplimit-upto", "2/h", "--smtplimit-above", "2/h"], REFUSE),
        ("above and upto", ["--smtplimit-above", "2/h", "--smtplimit-upto", "2/h"], REFUSE),
        ("no rate", ["--smtplimit-name", "fzc", "NORATE"], REFUSE),
        ("no name", ["--smtplimit", "2/h", "NONAME"], REFUSE),
        ("nothing", ["NORATE", "NONAME"], REFUSE),
        ("option without value", ["--smtplimit-burst"], REFUSE),
        ("--opt=value", ["--smtplimit-burst=7"], OK),
        ("--smtplimit-foo", ["--smtplimit-foo", "1"], REFUSE),
        ("--smtplimit-mode", ["--smtplimit-mode", "srcip"], REFUSE),
        ("--smtplimit-htable-expire", ["--smtplimit-htable-expire", "1000"], REFUSE),
        ("--smtplimit-strictly", ["--smtplimit-strictly"], REFUSE),
        ("--smtplimit-name-x", ["--smtplimit-name-x", "a"], REFUSE),
        ("--smtplimit-", ["--smtplimit-", "1"], REFUSE),
        ("--smtplimit-s (ambiguous)", ["--smtplimit-s", "24"], REFUSE),
        ("--smtplimit-burs (a unique prefix)", ["--smtplimit-burs", "5"], ANY),
        ("--smtplimit-BURST", ["--smtplimit-BURST", "5"], REFUSE),
        ("stray argument", ["--smtplimit-burst", "5", "6"], REFUSE),
        # The kernel judges these: the table fz exists with the default srcmask.
        ("srcmask conflict", ["--smtplimit-name", "fz", "--smtplimit-srcmask", "8"], KERNEL),
    ]
    return c


def full_args(args):
    """Add the base name and rate unless the case gives (or drops) them."""
    a = [x for x in args if x not in ("NORATE", "NONAME")]
    has = lambda *opts: any(x.split("=")[0] in opts for x in a)
    if not has("--smtplimit", "--smtplimit-upto", "--smtplimit-above") and "NORATE" not in args:
        a += ["--smtplimit", "2/h"]
    if not has("--smtplimit-name") and "NONAME" not in args:
        a += ["--smtplimit-name", "fzc"]
    return a


def mutate(rng, s):
    alphabet = "0123456789/smhdaeconuty-+. \n\t\x01xX,:%"
    s = list(s)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        pos = rng.randint(0, len(s))
        if op == 0 or not s:
            s.insert(pos, rng.choice(alphabet))
        elif op == 1:
            del s[min(pos, len(s) - 1)]
        elif op == 2:
            s[min(pos, len(s) - 1)] = rng.choice(alphabet)
        else:
            s.insert(pos, rng.choice(["9" * rng.randint(5, 30), "/", "0", "-", "a" * 130]))
    return "".join(s)


def random_cases(rng, n, v6):
    width = 128 if v6 else 32
    out = []
    for _ in range(n):
        kind = rng.randrange(5)
        if kind == 0:
            v = mutate(rng, rng.choice(["2/h", "1/day", "10000/s", "60/minute", "5"]))
            opt = rng.choice(["--smtplimit", "--smtplimit-upto", "--smtplimit-above"])
            out.append((f"random {opt} {v!r}", [opt, v], OK if rate_ok(v) else REFUSE))
        elif kind == 1:
            v = mutate(rng, rng.choice(["fzc", "smtp_limit", "a.b-c"]))
            e = OK if name_ok(v.encode()) else REFUSE
            if v.startswith("-"):
                e = ANY
            out.append((f"random --smtplimit-name {v[:30]!r}", ["--smtplimit-name", v], e))
        elif kind == 2:
            v = mutate(rng, rng.choice(["5", "1000000", "1"]))
            out.append((f"random --smtplimit-burst {v!r}", ["--smtplimit-burst", v],
                        uint_ok(v, 1, 1000000)))
        elif kind == 3:
            v = mutate(rng, rng.choice(["65536", "16777216", "1"]))
            out.append((f"random --smtplimit-htable-max {v!r}",
                        ["--smtplimit-htable-max", v], uint_ok(v, 1, 16777216)))
        else:
            v = mutate(rng, rng.choice(["24", str(width), "0"]))
            out.append((f"random --smtplimit-srcmask {v!r}", ["--smtplimit-srcmask", v],
                        uint_ok(v, 0, width)))
    for i, (what, args, e) in enumerate(out):
        if args[0] != "--smtplimit-name" and e == OK:
            continue
        # A value that starts with "-" may be taken for an option by getopt.
        if args[1].startswith("-") and e == OK:
            out[i] = (what, args, ANY)
    return out


class Firewall:
    def __init__(self, backend, v6):
        self.tool = f"{'ip6tables' if v6 else 'iptables'}-{backend}"
        self.procdir = f"/proc/net/{'ip6t' if v6 else 'ipt'}_smtplimit"
        self.v6 = v6

    def run(self, *args, check=False):
        r = subprocess.run([self.tool, *args], capture_output=True)
        if check and r.returncode:
            raise RuntimeError(f"{self.tool} {args}: {r.returncode} {r.stderr!r}")
        return r

    def state(self):
        """What a refused command must not change: the rules, the tables and
        the header and sources of every table."""
        save = subprocess.run([self.tool + "-save"], capture_output=True, text=True).stdout
        # Without counters: iptables-legacy resets the policies' on -D.
        rules = [re.sub(r" \[\d+:\d+\]$", "", l) for l in save.splitlines()
                 if not l.startswith("#")]
        tables = {}
        for n in sorted(os.listdir(self.procdir)) if os.path.isdir(self.procdir) else []:
            with open(os.path.join(self.procdir, n)) as f:
                lines = f.read().splitlines()
            # full_s and tokens move with time: keep sources, counts, next_s sign
            rows = sorted((l.split()[0], l.split()[4], l.split()[5]) for l in lines[2:])
            tables[n] = (lines[0], rows)
        return rules, tables

    def setup(self):
        self.run("-F", "INPUT", check=True)
        self.run("-A", "INPUT", "-m", "smtplimit", "--smtplimit-name", "fz",
                 "--smtplimit", "2/h", "--smtplimit-burst", "3", check=True)
        # Some tracked state: packets on loopback judged by the rule.
        fam = socket.AF_INET6 if self.v6 else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        for _ in range(5):
            s.sendto(b"x", ("::1" if self.v6 else "127.0.0.1", 9))
        s.close()


def settled(fw, base):
    """The state, once it equals @base or 3 s have passed: nft destroys a
    deleted rule's table from a work queue, a little later."""
    for _ in range(30):
        now = fw.state()
        if now == base:
            break
        time.sleep(0.1)
    return now


def check_case(fw, args, expect, base):
    """('' if the case behaved, or why not; whether it was refused)."""
    cmd = ["-A", "INPUT", "-m", "smtplimit"] + full_args(args)
    r = fw.run(*cmd)
    err = r.stderr.decode(errors="replace").strip()
    if r.returncode < 0 or r.returncode > 4:
        return f"exit {r.returncode} (crash?): {err[:200]}", True
    if r.returncode == 0:
        after = fw.state()
        # Delete what was added, whatever it was, then compare with base.
        fw.run("-D", "INPUT", "2")
        if expect in (REFUSE, KERNEL):
            return f"accepted; saved as {after[0][-2:]}", False
        now = settled(fw, base)
        if now != base:
            return f"delete did not restore the state: {base} -> {now}", False
        return "", False
    if expect == OK:
        return f"refused with exit {r.returncode}: {err[:200]}", True
    if expect in (REFUSE, ANY) and r.returncode != 2:
        return f"refused with exit {r.returncode}, not 2: {err[:200]}", True
    if not err:
        return "refused without a message on stderr", True
    now = fw.state()
    if now != base:
        return f"ruleset or tables changed: {base} -> {now}", True
    return "", True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=int(os.environ.get("XT_FUZZ_CASES", 100)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("XT_FUZZ_SEED", 1)))
    ap.add_argument("--backend", default="both", choices=("legacy", "nft", "both"))
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    try:
        unshare()
    except OSError as e:
        print(f"options: {e}")
        return 2
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    rng = random.Random(a.seed)
    backends = ("legacy", "nft") if a.backend == "both" else (a.backend,)
    res = Results("options", quiet=not a.verbose)
    ran = refused = 0
    for backend in backends:
        for v6 in (False, True):
            fw = Firewall(backend, v6)
            fw.setup()
            base = fw.state()
            cases = fixed_cases(v6)
            if v6:	# on ip6tables: the family-dependent options
                cases = [c for c in cases if "srcmask" in c[0] or c[0] == "strict"]
            # random cases: mostly IPv4, a share for IPv6
            cases += random_cases(rng, a.cases // 4 if v6 else a.cases - a.cases // 4, v6)
            for what, args, expect in cases:
                why, was_refused = check_case(fw, args, expect, base)
                ran += 1
                refused += was_refused
                if not res.check(f"{fw.tool} {what} (expect {expect})", not why, why):
                    fw.setup()
                    base = fw.state()
            fw.run("-F", "INPUT")
            sys.stdout.flush()
    print(f"options: {ran} cases run, {refused} refused")
    return res.total()


if __name__ == "__main__":
    sys.exit(main())
