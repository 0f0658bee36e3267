#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Fuzz the proc write protocol of /proc/net/ip{,6}t_smtplimit/NAME against
tables with live traffic (UDP from 16 sources of 198.51.100.0/24, judged by
the rule as fast as the guest sends).

Sequential phase: CASES writes of random bytes, overlong lines, NULs, writes
around 128 KiB and valid-looking commands with random mutations, each on its
own open file, judged by an oracle written from README.md and inet_pton(3)
(accepted exactly when every line a newline ends is valid and what follows
the last newline is no longer than a line, unless blank; that rest is
dropped at close, counted by the header's cut); a case it could not judge
fails. After each rejected write the
table's sources outside the live range (banned ones in 203.0.113.0/24, whose
entries nothing else touches) and the counters forgotten/banned/flushes
must be unchanged: the same comparison as test_smtplimit.py's
expect_same_state, restricted to what the traffic does not move.

Concurrent phase: 4 writer threads (2 sending valid writes that spare
203.0.113.0/24, 2 sending invalid writes that name it), a reader, and a
thread replacing the rule with other rates, for a few seconds; then every
static source must be intact.

    procwrite.py [--backend legacy|nft] [--cases N] [--seed S]

Prints "procwrite: N passed, N failed".
"""
import argparse
import ipaddress
import os
import random
import re
import subprocess
import sys
import threading
import time

from lib import proc
from lib.netns import Pair, enter
from lib.results import Results

LIVE = [f"198.51.100.{i}" for i in range(1, 17)]
STATIC4 = [f"203.0.113.{i}" for i in range(1, 41)]
STATIC6 = [f"2001:db8:77:{i:x}::1" for i in range(1, 21)]
BAN_MAX = 31536000
# What the kernel's isspace() takes (lib/ctype.c): a line of only these is
# blank. 0xa0 is Latin-1's no-break space, a space there.
SPACE = b" \t\n\v\f\r\xa0"

TRAFFIC = r"""
import socket, sys, time
socks = []
for a in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a, 0))
    socks.append(s)
while True:
    for s in socks:
        try:
            s.sendto(b"x", ("192.0.2.1", 9))
        except OSError:
            pass
    time.sleep(0.002)
"""


# The oracle: True (valid) or False (invalid), for every write.

def addr_ok(text, v6):
    """ADDR as inet_pton(3) takes it (README.md): ipaddress's parsers are
    as strict (no leading zero in a dotted part, IPv4 only as the last 32
    bits of an IPv6 address), once scope ids ("%eth0") are ruled out."""
    if v6:
        if not re.fullmatch(rb"[0-9a-fA-F:.]+", text):
            return False
        try:
            ipaddress.IPv6Address(text.decode())
            return True
        except ValueError:
            return False
    if not re.fullmatch(rb"[0-9]+(\.[0-9]+){3}", text):
        return False
    return all(p == b"0" or not p.startswith(b"0") and int(p) <= 255
               for p in text.split(b"."))


def line_ok(line, v6):
    if line.strip(SPACE) == b"":
        return True     # blank: ignored
    if len(line) > 64:
        return False
    if line == b"/":
        return True
    if line[:1] == b"-":
        m = re.fullmatch(rb"-([^/]*)(?:/([0-9]+))?", line)
        if not m:
            return False
        a = addr_ok(m.group(1), v6)
        if m.group(2) is not None and int(m.group(2)) > (128 if v6 else 32):
            return False
        return a
    if line[:1] == b"+":
        m = re.fullmatch(rb"\+([^ ]*)(?: ([0-9]+))?", line)
        if not m:
            return False
        a = addr_ok(m.group(1), v6)
        if m.group(2) is not None and not 1 <= int(m.group(2)) <= BAN_MAX:
            return False
        return a
    return False


def tail(data):
    """What follows the last newline: a line not yet a command, kept for the
    next write on the open file (here, none: it is dropped at close)."""
    return data.rsplit(b"\n", 1)[-1]


def write_ok(data, v6):
    """Every line a newline ends is valid; the line after the last one is
    held, so it may be anything but too long (unless blank). An empty write
    succeeds and changes nothing."""
    if len(data) > 128 * 1024 or b"\0" in data:
        return False
    *lines, rest = data.split(b"\n")
    return all(line_ok(l, v6) for l in lines) and \
        (len(rest) <= 64 or rest.strip(SPACE) == b"")


def cut(data):
    """Whether an accepted write, alone on its open file, leaves a line the
    close drops and counts in the header's cut."""
    return tail(data).strip(SPACE) != b""


# Generators

def rand_addr(rng, v6, pools=("doc", "live", "static")):
    pool = rng.choice(pools)
    if v6:
        if pool == "static":
            return rng.choice(STATIC6)
        return f"2001:db8:{rng.randrange(1, 0xffff):x}::{rng.randrange(1, 0xffff):x}"
    if pool == "static":
        return rng.choice(STATIC4)
    if pool == "live":
        return rng.choice(LIVE)
    return f"192.0.2.{rng.randrange(256)}"


def gen_cmd(rng, v6, safe=False):
    pools = ("doc", "live") if safe else ("doc", "live", "static")
    a = rand_addr(rng, v6, pools)
    k = rng.randrange(6 if safe else 7)
    if k == 0:
        return f"-{a}"
    if k == 1:
        lo = 8 if safe else 0
        return f"-{a}/{rng.randint(lo, 128 if v6 else 32)}"
    if k == 2:
        return f"+{a}"
    if k == 3:
        return f"+{a} {rng.choice([1, 60, 3600, BAN_MAX, rng.randint(1, BAN_MAX)])}"
    if k == 4:
        return ""
    if k == 5:
        return "  "
    return "/"


def mutate(rng, data):
    alphabet = b"0123456789./-+ :\n\x00abcdefx\r\t"
    d = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        pos = rng.randint(0, len(d))
        if op == 0 or not d:
            d[pos:pos] = bytes([rng.choice(alphabet)])
        elif op == 1:
            del d[min(pos, len(d) - 1)]
        elif op == 2:
            d[min(pos, len(d) - 1)] = rng.choice(alphabet)
        elif op == 3:
            d[pos:pos] = rng.choice([b"0" * rng.randint(1, 70), b" 0", b"/33", b"/129",
                                     b" 31536001", b" 0", b"::1", b"1.2.3.4", b"\n/\n"])
        else:
            d[min(pos, len(d) - 1)] = rng.randrange(256)
    return bytes(d)


def gen_write(rng, v6):
    k = rng.randrange(10)
    if k == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    if k == 1:	# overlong lines, and sizes around the limits
        n = rng.choice([63, 64, 65, 66, 200, 4096, 70000])
        pad = rng.choice([b"a", b"0", b" "])
        if pad == b"0":
            return b"+" + b"0" * (n - 12) + b"203.0.113.1\n"
        return pad * n + b"\n"
    if k == 2:	# NULs
        d = "\n".join(gen_cmd(rng, v6) for _ in range(rng.randint(1, 4))).encode()
        p = rng.randint(0, len(d))
        return d[:p] + b"\0" * rng.randint(1, 3) + d[p:]
    if k == 3:	# around 128 KiB
        line = b"+192.0.2.9\n"
        n = 131072 // len(line) + rng.choice([-1, 0, 1, 2])
        d = line * n
        if rng.randrange(2):
            d += rng.choice([b"", b"x", b"+192.0.2.9"])
        return d
    d = "\n".join(gen_cmd(rng, v6) for _ in range(rng.randint(1, 5)))
    if rng.randrange(3):
        d += "\n"
    d = d.encode()
    return mutate(rng, d) if rng.randrange(10) < 7 else d


# The table's state, read and written from this process (in the server's
# network namespace).

class Table:
    def __init__(self, v6):
        self.v6 = v6
        self.path = f"/proc/thread-self/net/{'ip6t' if v6 else 'ipt'}_smtplimit/fz"

    def read(self):
        return proc.read(self.path)

    def write(self, data):
        """(True, n) or (False, errno name)."""
        return proc.write(self.path, data)

    def static(self):
        return STATIC6 if self.v6 else STATIC4

    def refill(self):
        """Ban for an hour again the static sources that are not tracked
        any more, or whose bucket a fuzz case left full within ten minutes
        (GC would free them in the middle of a phase)."""
        rows = self.read().rows
        lines = [f"+{a} 3600\n" for a in self.static()
                 if rows.get(f"{a}/{128 if self.v6 else 32}", {}).get("full_s", 0) < 600]
        if len(rows) < 8 or lines:
            self.write("".join(lines).encode())


def live_row(key):
    return key.startswith("198.51.100.")


def same_state(a, b):
    """expect_same_state of test_smtplimit.py without what the live traffic
    moves: '' or what differs."""
    ra = {k: v for k, v in a.rows.items() if not live_row(k)}
    rb = {k: v for k, v in b.rows.items() if not live_row(k)}
    if rb.keys() - ra.keys():
        return f"sources {sorted(rb.keys() - ra.keys())} appeared"
    # An entry whose bucket is full within seconds may go by GC meanwhile.
    gone = [k for k in ra.keys() - rb.keys() if ra[k]["full_s"] > 3]
    if gone:
        return f"sources {sorted(gone)} went"
    ra = {k: v for k, v in ra.items() if k in rb}
    for k in ra:
        x, y = ra[k], rb[k]
        if (x["passed"], x["denied"]) != (y["passed"], y["denied"]) or \
                abs(x["full_s"] - y["full_s"] - (b.time - a.time)) > 2:
            return f"{k}: {x} -> {y}"
    for k in ("forgotten", "banned", "flushes"):
        if a.header[k] != b.header[k]:
            return f"{k}: {a.header[k]} -> {b.header[k]}"
    n, m = b.entries()
    if n > m:
        return f"entries {n} over the maximum {m}"
    return ""


def sequential(tables, rng, cases, log):
    passed = failed = refused = 0
    for i in range(cases):
        t = tables[1] if rng.randrange(5) == 0 else tables[0]
        if i % 20 == 0:
            t.refill()
        data = gen_write(rng, t.v6)
        want = write_ok(data, t.v6)
        before = t.read()
        ok, got = t.write(data)
        after = t.read()
        why = ""
        if ok and got != len(data):
            why = f"short write {got} of {len(data)}"
        if ok and after.count("cut") - before.count("cut") != cut(data):
            why = why or f"cut {before.header['cut']} -> {after.header['cut']}, " \
                         f"the rest {tail(data)[:70]!r} {'is' if cut(data) else 'is not'} a cut line"
        if not ok and after.header["cut"] != before.header["cut"]:
            why = why or f"cut {before.header['cut']} -> {after.header['cut']} for a refused write"
        if not ok:
            refused += 1
            if got not in ("EINVAL",):
                why = f"error {got}"
            why = why or same_state(before, after)
        if not isinstance(want, bool):     # not a pass: fix the oracle
            why = why or f"the oracle gave no verdict ({want!r})"
        elif want != ok:
            why = why or f"{'accepted' if ok else 'refused (' + got + ')'}, oracle says {'valid' if want else 'invalid'}"
        if why:
            failed += 1
            log(f"not ok - write {data[:120]!r}{'...' if len(data) > 120 else ''} "
                f"({len(data)} bytes, {'v6' if t.v6 else 'v4'}): {why}")
        else:
            passed += 1
    log(f"# sequential: {cases} writes, {refused} refused")
    return passed, failed, refused


def concurrent(tables, rng, seconds, backend, log):
    stop = threading.Event()
    problems = []
    counts = {"writes": 0, "refused": 0, "reads": 0, "replaces": 0}
    lock = threading.Lock()
    t4 = tables[0]
    t4.refill()
    tables[1].refill()
    start = {t.v6: t.read() for t in tables}

    def note(k, n=1):
        with lock:
            counts[k] += n

    def valid_writer(seed):
        r = random.Random(seed)
        while not stop.is_set():
            t = tables[r.randrange(2)]
            d = "".join(gen_cmd(r, t.v6, safe=True) + "\n"
                        for _ in range(r.randint(1, 8))).encode()
            ok, got = t.write(d)
            note("writes")
            if not ok:
                note("refused")
                problems.append(f"valid write {d!r} refused: {got}")

    def invalid_writer(seed):
        r = random.Random(seed)
        while not stop.is_set():
            t = tables[r.randrange(2)]
            good = [f"-{a}" for a in r.sample(t.static(), 3)] + ["/"]
            bad = r.choice([b"*1.2.3.4", b"-" + b"0" * 70, b"+203.0.113.1 0",
                            b"+203.0.113.1 31536001", b"-203.0.113.1/33",
                            b"+2001:db8::1" if not t.v6 else b"+192.0.2.1",
                            b"/ ", b"\0", bytes(r.randrange(1, 256) for _ in range(8)) + b"\x00"])
            lines = [x.encode() for x in good]
            lines.insert(r.randint(0, len(lines)), bad)
            d = b"\n".join(lines) + b"\n"
            if write_ok(d, t.v6) is not False:
                continue
            ok, got = t.write(d)
            note("writes")
            note("refused", not ok)
            if ok or got != "EINVAL":
                problems.append(f"invalid write {d!r}: {'accepted' if ok else got}")

    def reader():
        while not stop.is_set():
            for t in tables:
                try:
                    p = t.read()
                    n, m = p.entries()
                    if n > m:
                        problems.append(f"entries {n}/{m}")
                except Exception as e:  # a parse error is a finding
                    problems.append(f"read: {e!r}")
                note("reads")

    def replacer():
        k = 0
        while not stop.is_set():
            rate = ("50/s", "100/s", "2/h")[k % 3]
            r = subprocess.run([f"iptables-{backend}", "-R", "INPUT", "1", "-m", "smtplimit",
                                "--smtplimit-name", "fz", "--smtplimit", rate,
                                "--smtplimit-burst", "5", "-j", "ACCEPT"],
                               capture_output=True, text=True)
            if r.returncode:
                problems.append(f"iptables -R: {r.stderr.strip()}")
            note("replaces")
            k += 1
            time.sleep(0.3)

    threads = [threading.Thread(target=valid_writer, args=(rng.random(),)) for _ in range(2)]
    threads += [threading.Thread(target=invalid_writer, args=(rng.random(),)) for _ in range(2)]
    threads += [threading.Thread(target=reader), threading.Thread(target=replacer)]
    for th in threads:
        th.start()
    time.sleep(seconds)
    stop.set()
    for th in threads:
        th.join()
    passed = failed = 0
    for t in tables:
        end = t.read()
        a, b = start[t.v6], end
        # The static sources: untouched by the valid writers, and every
        # invalid write that named them failed whole.
        for key, row in a.rows.items():
            if key.split("/")[0] not in t.static():
                continue
            other = b.rows.get(key)
            if other is None or (row["passed"], row["denied"]) != (other["passed"], other["denied"]):
                problems.append(f"{'v6' if t.v6 else 'v4'} static {key}: {row} -> {other}")
        if b.header["flushes"] != a.header["flushes"]:
            problems.append(f"flushes {a.header['flushes']} -> {b.header['flushes']}")
    for p in problems[:20]:
        log(f"not ok - concurrent: {p}")
    if problems:
        failed += 1
    else:
        passed += 1
    log(f"# concurrent: {seconds} s, {counts['writes']} writes ({counts['refused']} refused), "
        f"{counts['reads']} reads, {counts['replaces']} rule replacements, "
        f"{len(problems)} problems")
    return passed, failed, counts["writes"], counts["refused"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="legacy", choices=("legacy", "nft"))
    ap.add_argument("--cases", type=int, default=int(os.environ.get("XT_FUZZ_CASES", 300)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("XT_FUZZ_SEED", 1)))
    ap.add_argument("--seconds", type=float)
    a = ap.parse_args()
    rng = random.Random(a.seed)

    def log(s):
        print(s, flush=True)

    env = Pair(a.backend)
    traffic = None
    try:
        for v6 in (False, True):
            env.ipt("-A", "INPUT", "-m", "smtplimit", "--smtplimit-name", "fz",
                    "--smtplimit", "50/s", "--smtplimit-burst", "5", "-j", "ACCEPT", v6=v6)
        for addr in LIVE:
            env.client_addr(addr)
        traffic = subprocess.Popen(["ip", "netns", "exec", env.cli, "python3", "-c",
                                    TRAFFIC, *LIVE])
        enter(env.srv)
        tables = [Table(False), Table(True)]
        time.sleep(0.5)
        if not any(live_row(k) for k in tables[0].read().rows):
            log("# note: no live source seen in the table yet")
        p1, f1, refused = sequential(tables, rng, a.cases, log)
        secs = a.seconds if a.seconds is not None else min(60, max(5, a.cases / 100))
        p2, f2, writes, refused2 = concurrent(tables, rng, secs, a.backend, log)
    finally:
        if traffic:
            traffic.kill()
            traffic.wait()
        env.close()
    log(f"procwrite {a.backend}: {a.cases + writes} cases run "
        f"({a.cases} sequential, {writes} concurrent), {refused + refused2} refused")
    res = Results(f"procwrite {a.backend}")
    res.add(p1 + p2, f1 + f2)
    return res.total()


if __name__ == "__main__":
    sys.exit(main())
