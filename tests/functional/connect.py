#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Open TCP connections to a port and print one letter per attempt:
P (connected), R (refused: a reset) or T (timed out: dropped).

Each --src makes --count attempts, --interval seconds apart (back to back by
default); sources take turns, and one word of letters is printed per source.
With --duration, one source attempts back to back for that many seconds, and
the elapsed time follows its letters. With --times, a second line gives each
attempt's send as start,end in CLOCK_MONOTONIC seconds (the kernel judges
the SYN between the two), space-separated, sources in turn as the letters.

With --recv an attempt lasts until the server answers the connection too:
P when it reads the server's close (the server accepted it), R for a reset
at connect() or after, T when nothing comes within --timeout. Behind
SYNPROXY connect() completes against the proxy before the server is asked,
so only this tells served from refused; --times then gives how long the
client took to learn it."""
import argparse
import socket
import struct
import sys
import time


def attempt(src, dst, port, timeout, recv=False):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    # Close with a reset: no FIN exchange, no TIME_WAIT on either side.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect((dst, port))
        if recv:
            s.recv(1)  # b"" at the server's close; our listener sends nothing
        return "P"
    except (ConnectionRefusedError, ConnectionResetError):
        return "R"
    except (socket.timeout, TimeoutError):
        return "T"
    finally:
        s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--src", required=True, action="append")
    p.add_argument("--dst", required=True)
    p.add_argument("--port", type=int, default=25)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--interval", type=float, default=0)
    p.add_argument("--duration", type=float)
    p.add_argument("--timeout", type=float, default=0.5)
    p.add_argument("--times", action="store_true")
    p.add_argument("--recv", action="store_true")
    a = p.parse_args()
    times = []

    def timed(src):
        t0 = time.monotonic()
        letter = attempt(src, a.dst, a.port, a.timeout, a.recv)
        times.append(f"{t0:.6f},{time.monotonic():.6f}")
        return letter

    start = time.monotonic()
    if a.duration:
        out = []
        while time.monotonic() - start < a.duration:
            out.append(timed(a.src[0]))
        print("".join(out), f"{time.monotonic() - start:.3f}")
    else:
        words = {src: [] for src in a.src}
        for k in range(a.count):
            delay = start + k * a.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for src in a.src:
                words[src].append(timed(src))
        print(" ".join("".join(w) for w in words.values()))
    if a.times:
        print(" ".join(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
