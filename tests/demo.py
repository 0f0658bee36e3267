#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""make demo (inside the guest): the seed's SMTP attack against a server
namespace, once without a limit and once with the seed's hashlimit rule
ported to smtplimit. Time is scaled so that the demo takes a minute."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "functional"))
from test_smtplimit import Env, Proc, HERE, PY, SRV4  # noqa: E402

SCALE = 180                      # one hour of the seed is 20 s here
RATE, BURST = "6/minute", "2"    # the seed's 2/hour, burst 2, scaled
ATTACKER = "192.0.2.212"
BOTNET = [f"198.51.100.{i}" for i in range(10, 40)]
MTA = "203.0.113.25"
CLIENTS = [
    # name, sources, attempts per source, seconds between them
    (f"dictionary attacker {ATTACKER}", [ATTACKER], 60, 0.33),
    (f"botnet, {len(BOTNET)} hosts in 198.51.100.0/24", BOTNET, 3, 0),
    (f"legitimate MTA {MTA}", [MTA], 3, 9),
]


def attack(env):
    """All clients at once; letters per source (P connected, T dropped)."""
    procs = []
    for _, sources, count, interval in CLIENTS:
        for src in sources:
            env.client_addr(src)
        args = [a for s in sources for a in ("--src", s)]
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", env.cli, PY, f"{HERE}/connect.py", *args,
             "--dst", SRV4, "--count", str(count), "--interval", str(interval),
             "--timeout", "0.3"], stdout=subprocess.PIPE, text=True))
    return [p.communicate()[0].split() for p in procs]


def report(title, results):
    print(f"\n{title}")
    print(f"  {'client':<44} {'attempts':>8} {'connected':>9} {'dropped':>8}")
    for (name, *_), words in zip(CLIENTS, results):
        letters = "".join(words)
        print(f"  {name:<44} {len(letters):>8} {letters.count('P'):>9} "
              f"{len(letters) - letters.count('P'):>8}")


def main():
    env = Env("legacy")
    try:
        print(f"The seed's attack on port 25, time scaled {SCALE}x: its 2/hour "
              f"is {RATE} here, and 20 s stand for an hour.")
        report("Round 1: no limit", attack(env))

        rule = ["-p", "tcp", "--dport", "25", "-m", "state", "--state", "NEW"]
        env.ipt("-A", "INPUT", *rule, "-m", "smtplimit", "--smtplimit-name",
                "smtp_limit", "--smtplimit", RATE, "--smtplimit-burst", BURST,
                "-j", "ACCEPT")
        env.ipt("-A", "INPUT", *rule, "-j", "DROP")
        print("\nRound 2, the same traffic, with:\n  " + "\n  ".join(
            l for l in env.save().splitlines() if l.startswith("-A")))
        report("Round 2: xt_smtplimit", attack(env))

        text = env.ns(env.srv, "cat", env.proc_path("smtp_limit")).stdout
        lines = text.splitlines()
        rows = sorted(lines[2:], key=lambda l: -int(l.split()[5]))
        print("\n/proc/net/ipt_smtplimit/smtp_limit, top 10 sources by denied:")
        print("\n".join(["  " + l for l in lines[:2] + rows[:10]]))
        p = Proc(text)
        print(f"\n{p.count('passed')} attempts passed and {p.count('denied')} "
              f"were dropped; {len(p.rows)} sources are tracked.")
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
