# SPDX-License-Identifier: GPL-2.0
"""The smtplimit proc file as the tests read it: the header line
("# NAME: key value key value ..."), the column line, then one row per
tracked source (source tokens next_s full_s passed denied ban). Header values
stay strings ("entries" is "N/MAX"); count() and entries() make numbers.
A file not of that form raises ValueError. write() is one write of
commands to it, whose result is the test."""
import errno
import os
import re
import time

COLUMNS = ["source", "tokens", "next_s", "full_s", "passed", "denied", "ban"]
_HEADER = re.compile(r"# (\S+): (.*)")


def parse_header(line):
    """(table name, {key: value}) of a header line."""
    m = _HEADER.match(line)
    if not m:
        raise ValueError(f"bad header {line!r}")
    words = m.group(2).split()
    return m.group(1), dict(zip(words[::2], words[1::2]))


def entries(header):
    """(entries, maximum) of a header dict."""
    n, m = header["entries"].split("/")
    return int(n), int(m)


def read_header(path):
    """The header of the proc file at @path, read alone (cheap while a
    table holds tens of thousands of rows)."""
    with open(path) as f:
        return parse_header(f.readline())[1]


class Table:
    """One read of a table's proc file: its header and its rows by source.
    @t: when the read began (default: now, for text just read)."""

    def __init__(self, text, t=None):
        self.time = time.monotonic() if t is None else t
        lines = text.splitlines()
        if not lines:
            raise ValueError("empty proc file")
        self.name, self.header = parse_header(lines[0])
        if len(lines) < 2 or lines[1].split()[1:] != COLUMNS:
            raise ValueError(f"bad column line {lines[1:2]!r}")
        self.rows = {}
        for line in lines[2:]:
            f = line.split()
            if len(f) != len(COLUMNS):
                raise ValueError(f"bad line {line!r}")
            self.rows[f[0]] = dict(tokens=float(f[1]), next_s=int(f[2]),
                                   full_s=int(f[3]), passed=int(f[4]),
                                   denied=int(f[5]), ban={"yes": True, "no": False}[f[6]])

    def count(self, key):
        return int(self.header[key])

    def entries(self):
        return entries(self.header)


def read(path):
    """A Table of the proc file at @path, timed from the start of the read:
    a read of a big table takes seconds under emulation."""
    t = time.monotonic()
    with open(path) as f:
        return Table(f.read(), t)


def write_each(path, chunks):
    """On one open file at @path, one write() of each of @chunks (bytes)
    in turn, every one tried: for each, (True, bytes written) or (False,
    the errno's name, such as "EINVAL"). A failed open is one outcome."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return [(False, errno.errorcode.get(e.errno, str(e.errno)))]
    outcomes = []
    try:
        for c in chunks:
            try:
                outcomes.append((True, os.write(fd, c)))
            except OSError as e:
                outcomes.append((False, errno.errorcode.get(e.errno, str(e.errno))))
    finally:
        os.close(fd)
    return outcomes


def write(path, data):
    """One write() of @data (bytes) to the proc file at @path, as an
    administrator's command would be: (True, bytes written) or (False,
    the errno's name, such as "EINVAL"), for the open or the write."""
    return write_each(path, [data])[0]
