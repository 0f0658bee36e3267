#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Everything at once against xt_smtplimit, inside the test guest (4 vCPUs,
the debug kernel in `make check-kernels`), for --seconds (default 60):

- two server namespaces, one with iptables-legacy rules and one with
  iptables-nft rules, each sharing table "stress" (IPv4) and "stress6"
  (IPv6) between a UDP rule that pktgen floods and a TCP SYN rule;
- pktgen from random sources in 240.0.0.0/4 into both;
- tests/tools/send6 (AF_PACKET) from many /64s of 2001:db8::/32 into both;
- a reader per server re-reading every smtplimit proc file;
- a writer per server sending forget, ban and flush commands, and a second
  one sending only bans, as fast as it can: a ban must find a place even
  while every CPU evicts and a restore sweeps the table down to a lower
  maximum;
- a restore loop per server alternating two rulesets that keep the table
  names but change rate, burst, htable-max and strictness;
- a loop creating namespaces, adding smtplimit rules (legacy and nft in
  turn), reading and writing their tables, and deleting the namespaces with
  the rules in place.

Checked: every loop made progress, no command failed, no read showed more
entries than the table's maximum (the few bans written never fill one); at
the end each table's maximum is the largest htable-max of the rules of the
last ruleset restored, the set of rules naming it once the replaced ones are
destroyed (so the restores did change it), the table is within it, it kept
its counters through the restores (never recreated: its banned and flushes
are what the writers wrote), and judged every flood packet that reached the
server: passed + denied is what pktgen (IPv4) and send6 (IPv6) sent, less
what veth1 dropped (its backlog full), and at least half of it. Removing
the namespaces, the module and the kmemleak scan are
tests/stress/guest-stress's part.

    stress.py [--seconds N]

Prints the figures and "stress: N passed, N failed".
"""
import argparse
import os
import random
import sys
import threading
import time

from lib.netns import CLI_DEV, SRV4, SRV6, Pair, enter
from lib import proc
from lib.proc import Table
from lib.results import Results
from lib.run import sh
from lib.traffic import pktgen_setup, pktgen_start, pktgen_state, pktgen_stop, send6

# Two rulesets sharing the table names: the restore loop alternates them.
# B lowers htable-max (the table evicts down to it once A's rules are
# destroyed) and turns strict on.
RULES = {
    "A": ("--smtplimit 6/min --smtplimit-burst 1",
          "--smtplimit 2/h --smtplimit-burst 2"),
    "B": ("--smtplimit 30/min --smtplimit-burst 3 --smtplimit-htable-max 4096",
          "--smtplimit 1/min --smtplimit-burst 5 --smtplimit-htable-max 4096 "
          "--smtplimit-strict"),
}


def htable_max(which):
    """A table's maximum under ruleset @which alone: the largest htable-max
    of the rules naming it (65536 where a rule gives none)."""
    return max(int(o.split("--smtplimit-htable-max ")[1].split()[0])
               if "--smtplimit-htable-max " in o else 65536 for o in RULES[which])


def ruleset(which, v6=False):
    udp, tcp = RULES[which]
    name = "stress6" if v6 else "stress"
    return ("*filter\n:INPUT ACCEPT [0:0]\n"
            f"-A INPUT -p udp -m smtplimit --smtplimit-name {name} {udp} -j DROP\n"
            f"-A INPUT -p tcp --syn -m smtplimit --smtplimit-name {name} {tcp} -j ACCEPT\n"
            "-A INPUT -p udp -j DROP\nCOMMIT\n")


class Loop(threading.Thread):
    """One stress loop: step() until told to stop; counts rounds and keeps
    the first few unexpected errors."""

    def __init__(self, name, step, ns=None):
        super().__init__(name=name, daemon=True)
        self.step, self.ns = step, ns
        self.rounds, self.errors, self.detail = 0, 0, []
        self.stop = threading.Event()

    def fail(self, what):
        self.errors += 1
        if len(self.detail) < 5:
            self.detail.append(what)

    def run(self):
        if self.ns:
            enter(self.ns)
        while not self.stop.is_set():
            try:
                self.step(self)
            except Exception as e:  # noqa: BLE001 (every error is a finding)
                self.fail(f"{type(e).__name__}: {e}")
            self.rounds += 1


def proc_files():
    base = "/proc/thread-self/net"
    return [f"{base}/{d}/{n}" for d in ("ipt_smtplimit", "ip6t_smtplimit")
            if os.path.isdir(f"{base}/{d}") for n in os.listdir(f"{base}/{d}")]


class Reader:
    """Reads every table whole; an entry count above the maximum, a
    malformed line or a vanished table is an error."""

    def __init__(self):
        self.lines = 0
        self.tables = set()

    def __call__(self, loop):
        for path in proc_files():
            with open(path) as f:
                text = f.read()
            try:
                t = Table(text)
            except ValueError as e:
                loop.fail(f"{path}: {e}")
                continue
            n, m = t.entries()
            if n > m:
                loop.fail(f"{path}: entries {n}/{m}")
            self.lines += len(t.rows)
            self.tables.add(os.path.basename(path))


class Writer:
    """Forget, ban and flush commands (only bans if @bans_only), one write
    each; all must succeed. Counts the bans and flushes written to table
    "stress", which its header must show at the end if no restore
    recreated it."""

    def __init__(self, seed, bans_only=False):
        self.rnd = random.Random(seed)
        self.bans_only = bans_only
        self.by_kind = {}
        self.bans = self.flushes = 0

    def command(self):
        """(kind, table, text)"""
        r = self.rnd.random()
        host = self.rnd.randrange(1, 255)
        ban = ("ban", "ipt_smtplimit/stress", f"+198.51.100.{host} {host}\n")
        if self.bans_only:
            return ban
        if r < 0.02:
            return "flush", "ipt_smtplimit/stress", "/\n"
        if r < 0.4:
            return ban
        if r < 0.7:
            return "forget", "ipt_smtplimit/stress", f"-198.51.100.{host}\n"
        if r < 0.85:
            return "forget", "ipt_smtplimit/stress", f"-{self.rnd.randrange(240, 256)}.0.0.0/8\n"
        if r < 0.93:
            return "several", "ipt_smtplimit/stress", (f"-203.0.113.{host}\n"
                                                       f"+203.0.113.{host} 30\n")
        return "several6", "ip6t_smtplimit/stress6", (f"-2001:db8:{host:x}::/64\n"
                                                      f"+2001:db8:{host:x}::1 30\n/\n")

    def __call__(self, loop):
        kind, table, text = self.command()
        written, n = proc.write(f"/proc/thread-self/net/{table}", text.encode())
        if not written:
            loop.fail(f"{kind} {text!r}: {n}")
            return
        if n != len(text):
            loop.fail(f"{kind} {text!r}: wrote {n}")
            return
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if table.endswith("/stress"):
            lines = text.splitlines()
            self.bans += sum(l.startswith("+") for l in lines)
            self.flushes += lines.count("/")


class Restorer:
    """Alternates rulesets A and B, IPv4 and IPv6, on one backend; @last
    is the one restored last."""

    def __init__(self, env):
        self.env, self.n, self.last = env, 0, "A"

    def __call__(self, loop):
        which = self.last = "AB"[self.n % 2]
        self.n += 1
        for v6 in (False, True):
            r = self.env.restore(ruleset(which, v6), v6=v6, check=False)
            if r.returncode:
                loop.fail(f"{self.env.tool(v6, '-restore')} {which}: "
                          f"exit {r.returncode}: {r.stderr.strip()}")


class Churn:
    """A namespace with rules, its tables read and written, then deleted."""

    def __init__(self):
        self.n = 0

    def __call__(self, loop):
        self.n += 1
        ns = f"churn{self.n}"
        backend = ("legacy", "nft")[self.n % 2]
        sh(["ip", "netns", "add", ns])
        try:
            for tool, name in ((f"iptables-{backend}", "c4"), (f"ip6tables-{backend}", "c6")):
                sh(["ip", "netns", "exec", ns, tool, "-A", "INPUT", "-p", "tcp", "--syn",
                    "-m", "smtplimit", "--smtplimit-name", name, "--smtplimit", "3/min",
                    "-j", "ACCEPT"])
            sh(["ip", "netns", "exec", ns, "sh", "-ec",
                "cat /proc/net/ipt_smtplimit/c4 /proc/net/ip6t_smtplimit/c6 >/dev/null; "
                "echo '+192.0.2.7 60' > /proc/net/ipt_smtplimit/c4; "
                "echo '+2001:db8::7 60' > /proc/net/ip6t_smtplimit/c6"])
        finally:
            sh(["ip", "netns", "del", ns])


def veth_dropped(env):
    """Packets the client's veth1 dropped (the server's backlog full)."""
    out = env.ns(env.cli, "cat", f"/sys/class/net/{CLI_DEV}/statistics/tx_dropped").stdout
    return int(out)


class Send6:
    """Runs of tests/tools/send6 from 20,000 /64s."""

    def __init__(self, env, mac):
        self.env, self.mac, self.sent = env, mac, 0

    def __call__(self, loop):
        self.sent += send6(self.env.cli, self.mac, SRV6, 20000, 20000)["sent"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args()
    res = Results("stress")

    print(f"# stress: {a.seconds} s, {os.cpu_count()} CPUs, seed {a.seed}", flush=True)
    envs = [Pair("legacy"), Pair("nft")]
    loops = []
    try:
        macs = []
        for env in envs:
            for v6 in (False, True):
                env.restore(ruleset("A", v6), v6=v6)
            macs.append(env.mac())
        for i, env in enumerate(envs):
            # A random-source IPv4 flood from the client until stopped.
            pktgen_setup(env.cli, macs[i], SRV4, 0, "240.0.0.0", "255.255.255.254",
                         rnd=True, ratep=20000, thread=i % os.cpu_count())

        readers, writers, senders, restorers = [], [], [], []
        for i, env in enumerate(envs):
            readers.append(Reader())
            writers.append((Writer(a.seed + i), Writer(a.seed + 100 + i, bans_only=True)))
            senders.append(Send6(env, macs[i]))
            restorers.append(Restorer(env))
            loops += [Loop(f"read-{env.backend}", readers[-1], env.srv),
                      Loop(f"write-{env.backend}", writers[-1][0], env.srv),
                      Loop(f"ban-{env.backend}", writers[-1][1], env.srv),
                      Loop(f"restore-{env.backend}", restorers[-1]),
                      Loop(f"send6-{env.backend}", senders[-1])]
        churn = Churn()
        loops.append(Loop("netns-churn", churn))
        floods = [pktgen_start(env.cli) for env in envs]
        for loop in loops:
            loop.start()
        time.sleep(a.seconds)
        for loop in loops:
            loop.stop.set()
        for loop in loops:
            loop.join(timeout=300)
        # The floods go on a little under the last ruleset, so its
        # counters show them.
        time.sleep(2)
        for env in envs:
            pktgen_stop(env.cli)
        for p in floods:
            p.wait(timeout=120)
        time.sleep(1)   # the server's backlog drains

        for loop in loops:
            print(f"# {loop.name}: {loop.rounds} rounds, {loop.errors} errors"
                  + (f"; first: {loop.detail}" if loop.detail else ""), flush=True)
        pg = [pktgen_state(env.cli) for env in envs]
        for i, env in enumerate(envs):
            print(f"# {env.backend}: read {readers[i].lines} lines of "
                  f"{sorted(readers[i].tables)}; writes {writers[i][0].by_kind}; "
                  f"pktgen {pg[i]['sofar']} sent, {pg[i]['errors']} errors; "
                  f"send6 {senders[i].sent}; veth1 dropped {veth_dropped(env)}", flush=True)
            print(f"# {env.backend}: {env.proc('stress').header}", flush=True)
            print(f"# {env.backend}: {env.proc('stress6', v6=True).header}", flush=True)
        print(f"# namespaces created and deleted: {churn.n}", flush=True)

        for loop in loops:
            res.check(f"{loop.name}: stopped, made progress, no error",
                      not loop.is_alive() and loop.rounds > 0 and loop.errors == 0,
                      f"{loop.rounds} rounds, {loop.errors} errors {loop.detail}")
        for i, env in enumerate(envs):
            sent4 = pg[i]["sofar"] - pg[i]["errors"]
            sent6 = senders[i].sent
            res.check(f"{env.backend}: the IPv4 and IPv6 floods ran",
                      sent4 > 0 and sent6 > 0, f"pktgen {sent4}, send6 {sent6}")
            p, p6 = env.proc("stress"), env.proc("stress6", v6=True)
            # A restore keeps the table (its rules name it before the old
            # ones go): its counters show every ban and flush written.
            res.check(f"{env.backend}: table \"stress\" kept its counters through the restores",
                      (p.count("banned"), p.count("flushes"))
                      == (sum(w.bans for w in writers[i]), writers[i][0].flushes),
                      f"header banned {p.count('banned')} flushes {p.count('flushes')}, "
                      f"written {sum(w.bans for w in writers[i])} and {writers[i][0].flushes}")
            want = htable_max(restorers[i].last)
            # iptables-nft destroys the replaced rules in the background.
            end = time.monotonic() + 10
            while time.monotonic() < end and not all(
                    t.entries()[1] == want for t in (p, p6)):
                time.sleep(0.2)
                p, p6 = env.proc("stress"), env.proc("stress6", v6=True)
            for t in (p, p6):
                n, m = t.entries()
                res.check(f"{env.backend}: table \"{t.name}\" within the maximum of the "
                          f"last ruleset ({restorers[i].last})", n <= m and m == want,
                          f"entries {n}/{m}, want maximum {want}")
            # Every flood packet that reached the server was judged by the
            # UDP rule naming the table (passed + denied count since the
            # table was created, through the restores); nothing else sends
            # UDP there. The rest, veth1 dropped.
            judged4 = p.count("passed") + p.count("denied")
            judged6 = p6.count("passed") + p6.count("denied")
            dropped = veth_dropped(env)
            res.check(f"{env.backend}: the UDP rules judged every flood packet that arrived",
                      judged4 <= sent4 and judged6 <= sent6
                      and (sent4 - judged4) + (sent6 - judged6) <= dropped,
                      f"IPv4 {judged4} of {sent4}, IPv6 {judged6} of {sent6}, "
                      f"veth1 dropped {dropped}")
            res.check(f"{env.backend}: most of each flood arrived and was judged",
                      judged4 * 2 >= sent4 and judged6 * 2 >= sent6,
                      f"IPv4 {judged4} of {sent4}, IPv6 {judged6} of {sent6}")
    finally:
        for loop in loops:
            loop.stop.set()
        for env in envs:
            pktgen_stop(env.cli)
            env.close()
    return res.total()


if __name__ == "__main__":
    sys.exit(main())
