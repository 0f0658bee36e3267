# SPDX-License-Identifier: GPL-2.0
"""Kernel memory figures for the flood test and the bench, read inside the
test guest: what a table costs shows in Slab, VmallocUsed and Percpu."""
import os
import time


def meminfo():
    """(Slab + VmallocUsed + Percpu, every /proc/meminfo field), in bytes,
    after dropping clean caches so that only what is in use counts."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    time.sleep(1)
    m = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            m[k] = int(v.split()[0]) * 1024
    return m["Slab"] + m["VmallocUsed"] + m["Percpu"], m


def vmalloc_by_caller():
    """Bytes of vmalloc by allocating function (rhashtable's bucket arrays,
    when kmalloc cannot have them, come from bucket_table_alloc)."""
    out = {}
    with open("/proc/vmallocinfo") as f:
        for line in f:
            w = line.split()
            caller = w[2].split("+")[0] if len(w) > 2 and "=" not in w[2] else "?"
            out[caller] = out.get(caller, 0) + int(w[1])
    return out
