# SPDX-License-Identifier: GPL-2.0
"""What the functional test scripts of tests/functional share (test_smtplimit,
test_admin, test_crowdsec): expect() and poll(), the Env each test gets (a
server and a client namespace, with proc writes from a program of their
own), the module they load, and limit_rules(), the seed's limit as two
rules."""
import os
import time

from lib.traffic import PY, Smtp

FUNCTIONAL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "functional")
MODULE = os.environ.get("XT_MODULE") or os.path.join(FUNCTIONAL, "../../xt_smtplimit.ko")


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def poll(fn, seconds=5.0, step=0.1):
    """fn() until true or the time is up; returns its last value."""
    end = time.monotonic() + seconds
    while True:
        v = fn()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


class Env(Smtp):
    """lib.traffic's Smtp (a server and a client namespace, rules in the
    server's, a listener on port 25) and a write to a table's proc file
    from a separate program, which may run under a prefix (setpriv)."""

    def write(self, name, data, v6=False, prefix=()):
        """One write() to the table's proc file: "OK N" or "ERR ENAME"."""
        if isinstance(data, str):
            data = data.encode()
        return self.ns(self.srv, *prefix, PY, f"{FUNCTIONAL}/procwrite.py",
                       self.proc_path(name, v6), input=data, text=False
                       ).stdout.decode().strip()


LIMIT = ["-p", "tcp", "--dport", "25", "--syn", "-m", "smtplimit"]
RESET = ["-j", "REJECT", "--reject-with", "tcp-reset"]


def limit_rules(env, *opts, name="smtp_limit", v6=False, above=False):
    """The limit as ACCEPT within it and a reset for the rest (upto), or a
    reset above it and ACCEPT for the rest (above)."""
    o = list(opts) + ["--smtplimit-name", name]
    if above:
        env.ipt("-A", "INPUT", *LIMIT, *o, *RESET, v6=v6)
        env.ipt("-A", "INPUT", "-p", "tcp", "--dport", "25", "-j", "ACCEPT", v6=v6)
    else:
        env.ipt("-A", "INPUT", *LIMIT, *o, "-j", "ACCEPT", v6=v6)
        env.ipt("-A", "INPUT", "-p", "tcp", "--dport", "25", "--syn", *RESET, v6=v6)
