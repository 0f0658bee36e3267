# SPDX-License-Identifier: GPL-2.0
# Sourced by the scripts that run inside the test guest.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XTABLES_LIBDIR="$REPO/userspace:$(pkg-config --variable=xtlibdir xtables 2>/dev/null ||
	echo /usr/lib/x86_64-linux-gnu/xtables)"
export XTABLES_LIBDIR

# The netfilter modules the tests use, then the module built on the host.
smtplimit_load() {
	modprobe -a x_tables ip_tables ip6_tables nf_tables nft_compat \
		nf_conntrack xt_state xt_tcpudp ipt_REJECT ip6t_REJECT \
		iptable_filter ip6table_filter &&
		insmod "$REPO/xt_smtplimit.ko"
}
