// SPDX-License-Identifier: GPL-2.0
/*
 * send6: an AF_PACKET flood of IPv6/UDP frames from many sources, for the
 * bench (pktgen in 6.1 has a single IPv6 source). Source i (0 <= i < NSRC)
 * is PREFIX:i::1, one per /64: with PREFIX 2001:db8:0, 2001:db8:0:i::1.
 *
 *   send6 IFNAME DST_MAC DST_IP6 COUNT NSRC
 *
 * Sends COUNT frames, cycling through the sources in order, in batches
 * with sendmmsg(), and prints "sent N usec U pps P".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define PAYLOAD 18	/* 14 + 40 + 8 + 18 = 80-byte frames */
#define FRAME (sizeof(struct ether_header) + sizeof(struct ip6_hdr) + \
	       sizeof(struct udphdr) + PAYLOAD)

static uint32_t sum16(const void *p, size_t len, uint32_t sum)
{
	const uint8_t *b = p;

	while (len > 1) {
		sum += (uint32_t)b[0] << 8 | b[1];
		b += 2;
		len -= 2;
	}
	if (len)
		sum += (uint32_t)b[0] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void build(uint8_t *f, const uint8_t *dmac, const uint8_t *smac,
		  const struct in6_addr *dst, unsigned int i)
{
	struct ether_header *eth = (struct ether_header *)f;
	struct ip6_hdr *ip6 = (struct ip6_hdr *)(eth + 1);
	struct udphdr *udp = (struct udphdr *)(ip6 + 1);
	uint8_t *payload = (uint8_t *)(udp + 1);
	uint16_t ulen = sizeof(*udp) + PAYLOAD, csum;
	uint32_t sum;

	memset(f, 0, FRAME);
	memcpy(eth->ether_dhost, dmac, ETH_ALEN);
	memcpy(eth->ether_shost, smac, ETH_ALEN);
	eth->ether_type = htons(ETH_P_IPV6);
	ip6->ip6_flow = htonl(6u << 28);
	ip6->ip6_plen = htons(ulen);
	ip6->ip6_nxt = IPPROTO_UDP;
	ip6->ip6_hlim = 64;
	/* 2001:db8:0:i::1 */
	ip6->ip6_src.s6_addr[0] = 0x20;
	ip6->ip6_src.s6_addr[1] = 0x01;
	ip6->ip6_src.s6_addr[2] = 0x0d;
	ip6->ip6_src.s6_addr[3] = 0xb8;
	ip6->ip6_src.s6_addr[6] = (uint8_t)(i >> 8);
	ip6->ip6_src.s6_addr[7] = (uint8_t)i;
	ip6->ip6_src.s6_addr[15] = 1;
	ip6->ip6_dst = *dst;
	udp->source = htons(9);
	udp->dest = htons(9);
	udp->len = htons(ulen);
	memset(payload, 0x5a, PAYLOAD);
	sum = sum16(&ip6->ip6_src, 32, 0);
	sum += ulen + IPPROTO_UDP;
	sum = sum16(udp, ulen, sum);
	csum = fold(sum);
	udp->check = htons(csum ? csum : 0xffff);
}

int main(int argc, char **argv)
{
	uint8_t dmac[ETH_ALEN], smac[ETH_ALEN] = { 0x02, 0, 0, 0, 0, 0x02 };
	static uint8_t frames[BATCH][FRAME];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_ll sll;
	struct in6_addr dst;
	struct timespec t0, t1;
	unsigned long count, nsrc, sent = 0, next = 0;
	unsigned int ifindex, k;
	double usec;
	int fd, one = 1;

	if (argc != 6) {
		fprintf(stderr, "usage: send6 IFNAME DST_MAC DST_IP6 COUNT NSRC\n");
		return 2;
	}
	ifindex = if_nametoindex(argv[1]);
	if (!ifindex ||
	    sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dmac[0], &dmac[1],
		   &dmac[2], &dmac[3], &dmac[4], &dmac[5]) != 6 ||
	    inet_pton(AF_INET6, argv[3], &dst) != 1) {
		fprintf(stderr, "send6: bad interface, MAC or address\n");
		return 2;
	}
	count = strtoul(argv[4], NULL, 0);
	nsrc = strtoul(argv[5], NULL, 0);
	if (!count || !nsrc || nsrc > 65536) {
		fprintf(stderr, "send6: COUNT >= 1, 1 <= NSRC <= 65536\n");
		return 2;
	}
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0) {
		perror("send6: socket");
		return 1;
	}
	/* Straight to the driver, as pktgen does. */
	if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)))
		perror("send6: PACKET_QDISC_BYPASS (ignored)");
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_ifindex = (int)ifindex;
	sll.sll_halen = ETH_ALEN;
	memcpy(sll.sll_addr, dmac, ETH_ALEN);
	memset(msgs, 0, sizeof(msgs));
	for (k = 0; k < BATCH; k++) {
		iov[k].iov_base = frames[k];
		iov[k].iov_len = FRAME;
		msgs[k].msg_hdr.msg_iov = &iov[k];
		msgs[k].msg_hdr.msg_iovlen = 1;
		msgs[k].msg_hdr.msg_name = &sll;
		msgs[k].msg_hdr.msg_namelen = sizeof(sll);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (sent < count) {
		unsigned int n = count - sent < BATCH ? (unsigned int)(count - sent) : BATCH;
		int r;

		for (k = 0; k < n; k++) {
			build(frames[k], dmac, smac, &dst, (unsigned int)next);
			next = (next + 1) % nsrc;
		}
		r = sendmmsg(fd, msgs, n, 0);
		if (r < 0) {
			if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR)
				continue;
			perror("send6: sendmmsg");
			return 1;
		}
		sent += (unsigned long)r;
		if ((unsigned int)r < n)	/* resend the rest with new frames */
			next = (next + nsrc - (n - (unsigned int)r) % nsrc) % nsrc;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	usec = (double)(t1.tv_sec - t0.tv_sec) * 1e6 +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
	printf("sent %lu usec %.0f pps %.0f\n", sent, usec, (double)sent * 1e6 / usec);
	close(fd);
	return 0;
}
