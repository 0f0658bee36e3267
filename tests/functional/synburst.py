#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Send COUNT TCP SYNs from SRC to DST:PORT back to back on a raw socket,
each from another source port, and print each send's start,end in
CLOCK_MONOTONIC seconds, space-separated. A connect() costs more than a
jiffy in a guest; these leave within a few, which is what a test of the
per-jiffy limit needs. The answers are left to the kernel (it resets them).

    synburst.py SRC DST PORT COUNT
"""
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def syn(src, dst, sport, dport):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, sport * 7919, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
    return hdr[:16] + struct.pack("!H", checksum(pseudo + hdr)) + hdr[18:]


def main():
    src, dst, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.bind((src, 0))
    packets = [syn(src, dst, 20000 + i, port) for i in range(count)]
    times = []
    for p in packets:
        t0 = time.monotonic()
        s.sendto(p, (dst, 0))
        times.append(f"{t0:.6f},{time.monotonic():.6f}")
    print(" ".join(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
