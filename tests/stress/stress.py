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
entries than the table's maximum, and the tables kept their state through
the restores (never recreated). Removing the namespaces, the module and the
kmemleak scan are tests/stress/guest-stress's part.

    stress.py [--seconds N]

Prints the figures and "stress: N passed, N failed".
"""
import argparse
import ctypes
import errno
import os
import random
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "functional"))
from test_smtplimit import Env, SRV4, SRV6, sh  # noqa: E402

SEND6 = os.path.join(HERE, "..", "tools", "send6")
CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)

# Two rulesets sharing the table names: the restore loop alternates them.
# B lowers htable-max (the table evicts down to it) and turns strict on.
RULES = {
    "A": ("--smtplimit 6/min --smtplimit-burst 1",
          "--smtplimit 2/h --smtplimit-burst 2"),
    "B": ("--smtplimit 30/min --smtplimit-burst 3 --smtplimit-htable-max 4096",
          "--smtplimit 1/min --smtplimit-burst 5 --smtplimit-htable-max 4096 "
          "--smtplimit-strict"),
}


def ruleset(which, v6=False):
    udp, tcp = RULES[which]
    name = "stress6" if v6 else "stress"
    return ("*filter\n:INPUT ACCEPT [0:0]\n"
            f"-A INPUT -p udp -m smtplimit --smtplimit-name {name} {udp} -j DROP\n"
            f"-A INPUT -p tcp --syn -m smtplimit --smtplimit-name {name} {tcp} -j ACCEPT\n"
            "-A INPUT -p udp -j DROP\nCOMMIT\n")


def enter(ns):
    """Move the calling thread into namespace @ns (/proc/thread-self/net
    then shows its proc files)."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if LIBC.setns(fd, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


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
            lines = text.splitlines()
            m = re.search(r" entries (\d+)/(\d+) ", lines[0]) if lines else None
            if not m or len(lines) < 2:
                loop.fail(f"{path}: bad header {lines[:1]}")
                continue
            if int(m.group(1)) > int(m.group(2)):
                loop.fail(f"{path}: {m.group(0).strip()}")
            for line in lines[2:]:
                if len(line.split()) != 6:
                    loop.fail(f"{path}: bad line {line!r}")
                    break
            self.lines += len(lines) - 2
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
        fd = os.open(f"/proc/thread-self/net/{table}", os.O_WRONLY)
        try:
            n = os.write(fd, text.encode())
        except OSError as e:
            loop.fail(f"{kind} {text!r}: {errno.errorcode.get(e.errno, e.errno)}")
            return
        finally:
            os.close(fd)
        if n != len(text):
            loop.fail(f"{kind} {text!r}: wrote {n}")
            return
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if table.endswith("/stress"):
            lines = text.splitlines()
            self.bans += sum(l.startswith("+") for l in lines)
            self.flushes += lines.count("/")


class Restorer:
    """Alternates rulesets A and B, IPv4 and IPv6, on one backend."""

    def __init__(self, env):
        self.env, self.n = env, 0

    def __call__(self, loop):
        which = "AB"[self.n % 2]
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


def pktgen(env, cmd):
    return env.ns(env.cli, "sh", "-c", cmd, check=False)


def pktgen_setup(env, thread, mac):
    """A random-source IPv4 flood from @env's client, on kpktgend_@thread."""
    pg = "/proc/net/pktgen"
    cmds = [f"echo 'add_device veth1' > {pg}/kpktgend_{thread}"]
    for c in ("count 0", "clone_skb 0", "pkt_size 60", "delay 0", "ratep 20000",
              f"dst {SRV4}", f"dst_mac {mac}", "udp_dst_min 9", "udp_dst_max 9",
              "src_min 240.0.0.0", "src_max 255.255.255.254", "flag IPSRC_RND"):
        cmds.append(f"echo '{c}' > {pg}/veth1")
    r = pktgen(env, "set -e\n" + "\n".join(cmds))
    if r.returncode:
        raise RuntimeError(f"pktgen setup in {env.cli}: {r.stderr.strip()}")


def pktgen_sent(env):
    out = pktgen(env, "cat /proc/net/pktgen/veth1").stdout
    m = re.search(r"pkts-sofar: (\d+)\s+errors: (\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


class Send6:
    """Runs of tests/tools/send6 from 20,000 /64s."""

    def __init__(self, env, mac):
        self.env, self.mac, self.sent = env, mac, 0

    def __call__(self, loop):
        r = self.env.ns(self.env.cli, SEND6, "veth1", self.mac, SRV6, "20000", "20000",
                        check=False)
        m = re.match(r"sent (\d+) ", r.stdout)
        if r.returncode or not m:
            loop.fail(f"send6 exit {r.returncode}: {r.stderr.strip()}")
            return
        self.sent += int(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args()
    results = []

    def check(name, ok, detail=""):
        results.append(bool(ok))
        print(f"{'ok' if ok else 'not ok'} {len(results)} - {name}"
              + (f": {detail}" if detail else ""), flush=True)

    print(f"# stress: {a.seconds} s, {os.cpu_count()} CPUs, seed {a.seed}", flush=True)
    envs = [Env("legacy"), Env("nft")]
    loops = []
    try:
        macs = []
        for env in envs:
            for v6 in (False, True):
                env.restore(ruleset("A", v6), v6=v6)
            macs.append(env.ns(env.srv, "cat", "/sys/class/net/veth0/address").stdout.strip())
        for i, env in enumerate(envs):
            pktgen_setup(env, i % os.cpu_count(), macs[i])

        readers, writers, senders = [], [], []
        for i, env in enumerate(envs):
            readers.append(Reader())
            writers.append((Writer(a.seed + i), Writer(a.seed + 100 + i, bans_only=True)))
            senders.append(Send6(env, macs[i]))
            loops += [Loop(f"read-{env.backend}", readers[-1], env.srv),
                      Loop(f"write-{env.backend}", writers[-1][0], env.srv),
                      Loop(f"ban-{env.backend}", writers[-1][1], env.srv),
                      Loop(f"restore-{env.backend}", Restorer(env)),
                      Loop(f"send6-{env.backend}", senders[-1])]
        churn = Churn()
        loops.append(Loop("netns-churn", churn))
        floods = [subprocess.Popen(["ip", "netns", "exec", env.cli, "sh", "-c",
                                    "echo start > /proc/net/pktgen/pgctrl"])
                  for env in envs]
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
            pktgen(env, "echo stop > /proc/net/pktgen/pgctrl")
        for p in floods:
            p.wait(timeout=120)

        for loop in loops:
            print(f"# {loop.name}: {loop.rounds} rounds, {loop.errors} errors"
                  + (f"; first: {loop.detail}" if loop.detail else ""), flush=True)
        for i, env in enumerate(envs):
            print(f"# {env.backend}: read {readers[i].lines} lines of "
                  f"{sorted(readers[i].tables)}; writes {writers[i][0].by_kind}; "
                  f"pktgen {pktgen_sent(env)} (sent, errors); send6 {senders[i].sent}",
                  flush=True)
            print(f"# {env.backend}: {env.proc('stress').header}", flush=True)
        print(f"# namespaces created and deleted: {churn.n}", flush=True)

        for loop in loops:
            check(f"{loop.name}: stopped, made progress, no error",
                  not loop.is_alive() and loop.rounds > 0 and loop.errors == 0,
                  f"{loop.rounds} rounds, {loop.errors} errors {loop.detail}")
        for i, env in enumerate(envs):
            sent = pktgen_sent(env)[0]
            check(f"{env.backend}: the IPv4 and IPv6 floods ran",
                  sent > 0 and senders[i].sent > 0, f"pktgen {sent}, send6 {senders[i].sent}")
            p = env.proc("stress")
            # A restore keeps the table (its rules name it before the old
            # ones go): its counters show every ban and flush written.
            check(f"{env.backend}: table \"stress\" kept its counters through the restores",
                  (p.count("banned"), p.count("flushes"))
                  == (sum(w.bans for w in writers[i]), writers[i][0].flushes),
                  f"header banned {p.count('banned')} flushes {p.count('flushes')}, "
                  f"written {sum(w.bans for w in writers[i])} and {writers[i][0].flushes}")
            judged = sum(env.counters()[r] for r in (0, 2))
            check(f"{env.backend}: the IPv4 UDP rules judged the flood", judged > 0,
                  f"{judged} packets")
    finally:
        for loop in loops:
            loop.stop.set()
        for env in envs:
            pktgen(env, "echo stop > /proc/net/pktgen/pgctrl")
            env.close()
    failed = results.count(False)
    print(f"stress: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
