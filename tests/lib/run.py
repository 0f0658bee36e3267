# SPDX-License-Identifier: GPL-2.0
"""Running commands for the tests: sh() runs one and captures its output,
ns() runs one in a named network namespace (ip netns exec). A command that
fails raises CommandFailed unless check=False."""
import subprocess


class CommandFailed(AssertionError):
    """A command exited non-zero. An AssertionError: to a test, a command
    that should have worked and did not is a failed expectation."""


def sh(cmd, check=True, **kw):
    """Run @cmd (a list) with its output captured, as text unless
    text=False; the CompletedProcess."""
    kw.setdefault("text", True)
    r = subprocess.run(list(cmd), capture_output=True, **kw)
    if check and r.returncode != 0:
        why = r.stderr or r.stdout or ""
        if isinstance(why, bytes):
            why = why.decode(errors="replace")
        raise CommandFailed(f"{' '.join(cmd)} exited {r.returncode}: {why.strip()}")
    return r


def ns(name, *cmd, check=True, **kw):
    """sh() in network namespace @name."""
    return sh(["ip", "netns", "exec", name, *cmd], check=check, **kw)
