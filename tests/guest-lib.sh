# SPDX-License-Identifier: GPL-2.0
# Sourced by the scripts that run inside the test guest.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XTABLES_LIBDIR="$REPO/userspace:$(pkg-config --variable=xtlibdir xtables 2>/dev/null ||
	echo /usr/lib/x86_64-linux-gnu/xtables)"
export XTABLES_LIBDIR
# The Python tests import the test library (tests/lib) as `lib`.
PYTHONPATH="$REPO/tests${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH

# The netfilter modules the tests use (SYNPROXY, CT, raw and nat for the
# SYNPROXY tests), then the module built on the host
# ($XT_MODULE, for a build against another kernel). A kernel without a module
# tree (the debug kernel) has them built in; a missing one fails the tests.
netfilter_load() {
	local m
	for m in x_tables ip_tables ip6_tables nf_tables nft_compat \
		nf_conntrack xt_state xt_tcpudp ipt_REJECT ip6t_REJECT \
		iptable_filter ip6table_filter \
		nf_synproxy_core ipt_SYNPROXY ip6t_SYNPROXY xt_CT xt_conntrack \
		iptable_raw ip6table_raw nf_nat xt_nat iptable_nat ip6table_nat \
		nft_chain_nat; do
		[[ ! -d /lib/modules/$(uname -r) ]] || modprobe "$m" || [[ -d /sys/module/$m ]] || return 1
	done
}

smtplimit_load() {
	netfilter_load && insmod "${XT_MODULE:-$REPO/xt_smtplimit.ko}"
}

# pktgen, for the floods of tests/lib/traffic.py (built in on the debug kernel).
pktgen_load() {
	[[ -d /proc/net/pktgen ]] || modprobe pktgen
}

# rmmod xt_smtplimit once nothing uses it: rules leave with their namespace,
# and nf_tables and netns cleanup run from work queues.
rmmod_when_free() {
	local _
	for _ in $(seq 50); do
		rmmod xt_smtplimit 2>/dev/null && return 0
		sleep 0.2
	done
	lsmod | grep xt_smtplimit
	return 1
}

# On a kernel with kmemleak (the debug kernel): kmemleak_reset forgets what
# is unreferenced so far (boot's own), kmemleak_clean fails on anything
# unreferenced since. kmemleak skips objects younger than 5 s, and one freed
# by RCU or a work queue may look unreferenced once: scan twice, then read.
KMEMLEAK=/sys/kernel/debug/kmemleak
kmemleak_reset() {
	[[ ! -e $KMEMLEAK ]] && return 0
	# Kept apart: the console, which is checked for reports, must not have them.
	echo scan >"$KMEMLEAK" && cat "$KMEMLEAK" >>"${XT_VM_OUT:-/tmp}/kmemleak-boot.txt" &&
		echo clear >"$KMEMLEAK"
}
kmemleak_clean() {
	local leaks
	echo scan >"$KMEMLEAK" && sleep 6 && echo scan >"$KMEMLEAK" || return 1
	leaks=$(cat "$KMEMLEAK") || return 1
	[[ -z $leaks ]] && return 0
	echo "$leaks"
	return 1
}
