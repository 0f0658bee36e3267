# SPDX-License-Identifier: GPL-2.0
"""Test traffic. The floods: pktgen (IPv4, from one source or a range, in
order or at random) and tests/tools/send6 (IPv6, from many /64s,
AF_PACKET), both straight to the driver of the client's veth1, addressed
to the server's veth0 MAC, UDP to the discard port 9. pktgen needs its
module loaded (pktgen_load in tests/guest-lib.sh) and runs on the kpktgend
threads of the client's namespace; send6 needs `make test-tools`.
TCP: Smtp, a Pair whose server accepts on port 25 and whose client
connects from a given source (tests/functional/listener.py, connect.py)."""
import os
import re
import subprocess

from lib.netns import CLI_DEV, SRV4, SRV6, Pair
from lib.run import CommandFailed, ns

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PY = "/usr/bin/python3"
PKTGEN = "/proc/net/pktgen"
SEND6 = os.path.join(TESTS, "tools", "send6")


def pktgen_script(mac, dst, count, src_min, src_max, rnd=False, ratep=None,
                  thread=0, dev=CLI_DEV):
    """Shell commands (for sh -e) that give @dev alone to kpktgend_@thread
    and set a flood of @count packets (0: until stopped) at @ratep pps
    (None: as fast as it goes) from @src_min..@src_max (@rnd: at random)."""
    pg = PKTGEN
    # rem_device_all, like start, only waits 125 ms for the thread: wait
    # until the device is really gone before adding it again.
    cmds = [f"echo rem_device_all > {pg}/kpktgend_{thread}",
            f"while [ -e {pg}/{dev} ]; do sleep 0.1; done",
            f"echo add_device {dev} > {pg}/kpktgend_{thread}"]
    params = [f"count {count}", "clone_skb 0", "pkt_size 60", "delay 0",
              f"dst {dst}", f"dst_mac {mac}", "udp_src_min 9", "udp_src_max 9",
              "udp_dst_min 9", "udp_dst_max 9", f"src_min {src_min}", f"src_max {src_max}",
              "flag IPSRC_RND" if rnd else "flag !IPSRC_RND"]
    if ratep is not None:
        params.append(f"ratep {ratep}")
    cmds += [f"echo '{p}' > {pg}/{dev}" for p in params]
    return "\n".join(cmds)


def pktgen_setup(cli, mac, dst, count, src_min, src_max, **kw):
    """pktgen_script() run in namespace @cli."""
    ns(cli, "sh", "-ec", pktgen_script(mac, dst, count, src_min, src_max, **kw))


def pktgen_start(cli):
    """Start every device set up in @cli; the process ends with the run
    (its count reached, or pktgen_stop)."""
    return subprocess.Popen(["ip", "netns", "exec", cli, "sh", "-c",
                             f"echo start > {PKTGEN}/pgctrl"])


def pktgen_stop(cli):
    ns(cli, "sh", "-c", f"echo stop > {PKTGEN}/pgctrl", check=False)


def pktgen_parse(text):
    """A pktgen device file: sofar and errors (counted so far), result (the
    Result line, "" before the first run ends) and, after a run that ended
    OK, sent, usec and pps."""
    m = re.search(r"pkts-sofar: (\d+)\s+errors: (\d+)", text)
    r = dict(sofar=int(m.group(1)), errors=int(m.group(2))) if m else dict(sofar=0, errors=0)
    m = re.search(r"Result: (.*)", text)
    r["result"] = m.group(1) if m else ""
    m = re.search(r"Result: OK: (\d+)\(.*?usec, (\d+) .*?(\d+)pps", text, re.S)
    if m:
        usec, sent = int(m.group(1)), int(m.group(2))
        r.update(sent=sent, usec=usec, pps=sent * 1e6 / usec)
    return r


def pktgen_state(cli, dev=CLI_DEV):
    """pktgen_parse() of @dev's file in @cli; zeros if it cannot be read."""
    return pktgen_parse(ns(cli, "cat", f"{PKTGEN}/{dev}", check=False).stdout)


def pktgen_run(cli, mac, dst, count, src_min, src_max, prefix=(), **kw):
    """One whole run of pktgen_script()'s flood, under @prefix (a command
    such as perf record): {sent, usec, pps, errors}."""
    pg, dev = PKTGEN, kw.get("dev", CLI_DEV)
    # "start" may return before the run ends (its 125 ms wait for the
    # thread can lapse on a busy TCG host): wait for the result.
    script = "\n".join([pktgen_script(mac, dst, count, src_min, src_max, **kw),
                        f"echo start > {pg}/pgctrl",
                        f"while ! grep -q 'Result: OK' {pg}/{dev}; do sleep 0.2; done",
                        f"cat {pg}/{dev}"])
    out = ns(cli, *prefix, "sh", "-ec", script).stdout
    r = pktgen_parse(out)
    if "sent" not in r:
        raise RuntimeError(f"pktgen: no result in {out!r}")
    return dict(sent=r["sent"], usec=r["usec"], pps=r["pps"], errors=r["errors"])


def send6(cli, mac, dst, count, nsrc, dev=CLI_DEV):
    """@count packets from @nsrc sources in distinct /64s of 2001:db8::/32,
    sent from @cli's @dev: {sent, usec, pps, errors}."""
    r = ns(cli, SEND6, dev, mac, dst, str(count), str(nsrc), check=False)
    m = re.match(r"sent (\d+) usec (\d+) pps", r.stdout)
    if r.returncode or not m:
        raise RuntimeError(f"send6 exit {r.returncode}: {(r.stderr or r.stdout).strip()}")
    sent, usec = int(m.group(1)), int(m.group(2))
    return dict(sent=sent, usec=usec, pps=sent * 1e6 / max(usec, 1), errors=0)


class Smtp(Pair):
    """A Pair whose server accepts TCP connections on port 25 (and closes
    them), IPv4 and IPv6, and whose client connects from any source."""

    def __init__(self, backend="legacy", srv=None, cli=None):
        super().__init__(backend, srv, cli)
        self.listener = subprocess.Popen(
            ["ip", "netns", "exec", self.srv, PY, f"{TESTS}/functional/listener.py"],
            stdout=subprocess.PIPE, text=True)
        if self.listener.stdout.readline().strip() != "listening":
            self.close()
            raise CommandFailed("listener did not start")

    def close(self):
        self.listener.kill()
        self.listener.wait()
        super().close()

    def connect(self, src, count=1, timeout=0.5):
        """Letters per attempt: P passed, R reset, T dropped."""
        self.client_addr(src)
        dst = SRV6 if ":" in src else SRV4
        return self.ns(self.cli, PY, f"{TESTS}/functional/connect.py", "--src", src,
                       "--dst", dst, "--count", str(count),
                       "--timeout", str(timeout)).stdout.strip()

    def connect_each(self, srcs):
        """One attempt from each of @srcs (one family), in one client run:
        a word of letters each."""
        for a in srcs:
            self.client_addr(a)
        dst = SRV6 if ":" in srcs[0] else SRV4
        return self.ns(self.cli, PY, f"{TESTS}/functional/connect.py",
                       *[f"--src={a}" for a in srcs], "--dst", dst).stdout.split()

    def attempts(self, src, *how, timeout=0.5):
        """Letters and each attempt's (start, end) send time, for the GCRA
        oracle (lib.gcra): @how is --count N [--interval S], --duration S
        or another connect.py option choosing the attempts."""
        self.client_addr(src)
        dst = SRV6 if ":" in src else SRV4
        out = self.ns(self.cli, PY, f"{TESTS}/functional/connect.py", "--src", src,
                      "--dst", dst, *how, "--timeout", str(timeout),
                      "--times").stdout.splitlines()
        letters = out[0].split()[0]
        times = [tuple(float(t) for t in w.split(",")) for w in out[1].split()]
        if len(letters) != len(times):
            raise CommandFailed(f"connect.py: {len(letters)} letters, {len(times)} times")
        return letters, times

    def connect_for(self, src, seconds):
        """Attempts back to back for @seconds: (letters, elapsed s)."""
        self.client_addr(src)
        dst = SRV6 if ":" in src else SRV4
        letters, elapsed = self.ns(self.cli, PY, f"{TESTS}/functional/connect.py",
                                   "--src", src, "--dst", dst, "--duration", str(seconds),
                                   "--timeout", "0.5").stdout.split()
        return letters, float(elapsed)
