#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Write standard input to a file and print the outcome of each write():
"OK N" or "ERR <errno name>".

    procwrite.py PATH            one write() of all the input
    procwrite.py PATH SIZE...    on one open file, a write() of each SIZE
                                 bytes in turn, then one of the rest if any;
                                 every write is tried, a line each

A failed open prints one ERR line."""
import errno
import os
import sys

data = sys.stdin.buffer.read()
sizes = [int(a) for a in sys.argv[2:]]
chunks = []
at = 0
for n in sizes:
    chunks.append(data[at:at + n])
    at += n
if at < len(data) or not sizes:
    chunks.append(data[at:])
try:
    fd = os.open(sys.argv[1], os.O_WRONLY)
except OSError as e:
    print("ERR", errno.errorcode[e.errno])
    sys.exit(0)
for c in chunks:
    try:
        print("OK", os.write(fd, c), flush=True)
    except OSError as e:
        print("ERR", errno.errorcode[e.errno], flush=True)
os.close(fd)
