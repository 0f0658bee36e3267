#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Send COUNT TCP SYNs from each SRC to DST:PORT back to back on a raw
socket, each from another source port, and print each send's start,end in
CLOCK_MONOTONIC seconds, space-separated. A connect() costs more than a
jiffy in a guest; these leave within a few, which is what a test of the
per-jiffy limit needs. The answers are left to the kernel (it resets them).

    synburst.py SRC[,SRC...] DST PORT COUNT

The packets carry their own IP header (IPPROTO_RAW), so a SRC need not be
an address of this host: that is how the tests forge a victim's SYNs, or
SYNs from hundreds of sources, that no handshake follows. Sources take
turns; IPv4 or IPv6 as DST is written.
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


def syn(family, src, dst, sport, dport):
    """The IP header (the kernel fills in IPv4's checksum and id) and a SYN."""
    s, d = socket.inet_pton(family, src), socket.inet_pton(family, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, sport * 7919, 0, 5 << 4, 0x02, 64240, 0, 0)
    if family == socket.AF_INET:
        pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp))
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0) + s + d
    else:
        pseudo = s + d + struct.pack("!IxxxB", len(tcp), 6)
        ip = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + s + d
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    return ip + tcp


def main():
    srcs, dst, port, count = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    packets = [syn(family, src, dst, 20000 + i, port)
               for i in range(count) for src in srcs]
    times = []
    for p in packets:
        t0 = time.monotonic()
        s.sendto(p, (dst, 0))
        times.append(f"{t0:.6f},{time.monotonic():.6f}")
    print(" ".join(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
