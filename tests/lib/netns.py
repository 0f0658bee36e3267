# SPDX-License-Identifier: GPL-2.0
"""Network namespaces for the tests: the documentation addresses, a server
and a client namespace joined by veth (veth_pair, and Pair, which also
holds the rules of one iptables backend in the server), entering a named
namespace from this process (enter) or a new one (unshare), and a chain's
packet counters (counters)."""
import ctypes
import os

from lib.proc import Table
from lib.run import ns, sh

SRV4, CLI4 = "192.0.2.1", "192.0.2.2"
SRV6, CLI6 = "2001:db8::1", "2001:db8::2"
# The server's veth0 faces the client's veth1.
SRV_DEV, CLI_DEV = "veth0", "veth1"

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


def enter(name):
    """Move the calling thread into namespace @name (a process's other
    threads stay; threads started later follow). /proc/thread-self/net
    then shows the namespace's proc files."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _LIBC.setns(fd, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def unshare():
    """Move the calling thread into a new network namespace of its own."""
    if _LIBC.unshare(CLONE_NEWNET):
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")


def veth_pair(srv, cli, srv_addrs=(f"{SRV4}/24", f"{SRV6}/64"),
              cli_addrs=(f"{CLI4}/24", f"{CLI6}/64")):
    """Namespaces @srv and @cli with lo up, joined by veth0 (in @srv) and
    veth1 (in @cli), both up with their addresses (IPv6 ones without
    duplicate address detection, usable at once)."""
    for n in (srv, cli):
        sh(["ip", "netns", "add", n])
        ns(n, "ip", "link", "set", "lo", "up")
    sh(["ip", "link", "add", SRV_DEV, "netns", srv, "type", "veth",
        "peer", "name", CLI_DEV, "netns", cli])
    for n, dev, addrs in ((srv, SRV_DEV, srv_addrs), (cli, CLI_DEV, cli_addrs)):
        for a in addrs:
            ns(n, "ip", "addr", "add", a, "dev", dev, *(["nodad"] if ":" in a else []))
    for n, dev in ((srv, SRV_DEV), (cli, CLI_DEV)):
        ns(n, "ip", "link", "set", dev, "up")


def counters(name, tool, chain="INPUT"):
    """Packet counts of @chain's rules in namespace @name, in order, as
    @tool (iptables-legacy, ip6tables-nft, ...) lists them."""
    out = ns(name, tool, "-L", chain, "-n", "-v", "-x").stdout.splitlines()[2:]
    return [int(l.split()[0]) for l in out if l.strip()]


class Pair:
    """A server and a client namespace (veth_pair) with the addresses
    above; rules go into the server's with iptables-@backend. The server
    routes 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32 to the
    client, which may take addresses there (client_addr). Names are
    srvN/cliN unless given (a given name is cleared first)."""

    serial = 0

    def __init__(self, backend="legacy", srv=None, cli=None):
        Pair.serial += 1
        self.backend = backend
        self.srv = srv or f"srv{Pair.serial}"
        self.cli = cli or f"cli{Pair.serial}"
        for n in (srv, cli):
            if n:
                sh(["ip", "netns", "del", n], check=False)
        veth_pair(self.srv, self.cli)
        for net in ("198.51.100.0/24", "203.0.113.0/24"):
            self.ns(self.srv, "ip", "route", "add", net, "dev", SRV_DEV)
        self.ns(self.srv, "ip", "-6", "route", "add", "2001:db8::/32", "dev", SRV_DEV)
        self.ns(self.cli, "ip", "-6", "route", "add", "2001:db8::/32", "dev", CLI_DEV)
        self.addrs = set()

    def close(self):
        for n in (self.srv, self.cli):
            sh(["ip", "netns", "del", n], check=False)

    def ns(self, name, *cmd, check=True, **kw):
        return ns(name, *cmd, check=check, **kw)

    def mac(self):
        """The server's veth0 address: where the floods are sent."""
        return self.ns(self.srv, "cat", f"/sys/class/net/{SRV_DEV}/address").stdout.strip()

    def client_addr(self, addr):
        """Give the client @addr (once)."""
        if addr in self.addrs or addr in (CLI4, CLI6):
            return
        if ":" in addr:
            self.ns(self.cli, "ip", "addr", "add", f"{addr}/128", "dev", CLI_DEV, "nodad")
        else:
            self.ns(self.cli, "ip", "addr", "add", f"{addr}/32", "dev", CLI_DEV)
        self.addrs.add(addr)

    def tool(self, v6=False, what=""):
        return f"{'ip6tables' if v6 else 'iptables'}-{self.backend}{what}"

    def ipt(self, *args, v6=False, check=True):
        return self.ns(self.srv, self.tool(v6), *args, check=check)

    def save(self, v6=False):
        return self.ns(self.srv, self.tool(v6, "-save")).stdout

    def rules(self, v6=False):
        """The saved ruleset without its comments (which carry a date)."""
        return [l for l in self.save(v6).splitlines() if not l.startswith("#")]

    def restore(self, text, v6=False, check=True):
        return self.ns(self.srv, self.tool(v6, "-restore"), input=text, check=check)

    def counters(self, chain="INPUT", v6=False):
        """Packet counts of the server chain's rules, in order."""
        return counters(self.srv, self.tool(v6), chain)

    def proc_path(self, name, v6=False):
        return f"/proc/net/{'ip6t' if v6 else 'ipt'}_smtplimit/{name}"

    def proc(self, name, v6=False):
        """One read of the server's table @name (a lib.proc.Table)."""
        return Table(self.ns(self.srv, "cat", self.proc_path(name, v6)).stdout)

    def proc_exists(self, name, v6=False):
        return self.ns(self.srv, "test", "-e", self.proc_path(name, v6),
                       check=False).returncode == 0
