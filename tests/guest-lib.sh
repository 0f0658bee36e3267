# SPDX-License-Identifier: GPL-2.0
# Sourced by the scripts that run inside the test guest.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XTABLES_LIBDIR="$REPO/userspace:$(pkg-config --variable=xtlibdir xtables 2>/dev/null ||
	echo /usr/lib/x86_64-linux-gnu/xtables)"
export XTABLES_LIBDIR

# The netfilter modules the tests use, then the module built on the host
# ($XT_MODULE, for a build against another kernel). A kernel without a module
# tree (the debug kernel) has them built in; a missing one fails the tests.
netfilter_load() {
	local m
	for m in x_tables ip_tables ip6_tables nf_tables nft_compat \
		nf_conntrack xt_state xt_tcpudp ipt_REJECT ip6t_REJECT \
		iptable_filter ip6table_filter; do
		[[ ! -d /lib/modules/$(uname -r) ]] || modprobe "$m" || [[ -d /sys/module/$m ]] || return 1
	done
}

smtplimit_load() {
	netfilter_load && insmod "${XT_MODULE:-$REPO/xt_smtplimit.ko}"
}
