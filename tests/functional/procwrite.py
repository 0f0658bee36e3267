#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Write standard input to a file and print the outcome of each write():
"OK N" or "ERR <errno name>" (lib.proc.write_each; tests/ on PYTHONPATH).
A program of its own, so that test_smtplimit.py can run it in a namespace
and without capabilities.

    procwrite.py PATH            one write() of all the input
    procwrite.py PATH SIZE...    on one open file, a write() of each SIZE
                                 bytes in turn, then one of the rest if any;
                                 every write is tried, a line each

A failed open prints one ERR line."""
import sys

from lib import proc

data = sys.stdin.buffer.read()
chunks = []
at = 0
for n in (int(a) for a in sys.argv[2:]):
    chunks.append(data[at:at + n])
    at += n
if at < len(data) or not chunks:
    chunks.append(data[at:])
for ok, got in proc.write_each(sys.argv[1], chunks):
    print("OK" if ok else "ERR", got, flush=True)
