/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet parsing: Ethernet, IPv4 (no options, not fragmented), IPv6 (no
 * extension headers), then UDP, TCP, or ICMP/ICMPv6 (icmp.h takes it from there). The result is the
 * conntrack key of the packet as seen, plus the offsets the rewrite needs. What is not parsed is
 * passed untouched or dropped, as docs/datapath.md lists; never translated.
 */
#ifndef CTCTL_LIB_PARSE_H
#define CTCTL_LIB_PARSE_H

#include "ctctl_abi.h"

enum ctctl_parse_result {
	CTCTL_PARSE_OK = 0,
	CTCTL_PARSE_PASS = 1, /* not ours: pass untouched, count the reason */
	CTCTL_PARSE_DROP = 2, /* malformed: drop, count the reason */
	CTCTL_PARSE_ICMP =
		3, /* ICMP or ICMPv6: key has the outer addresses, l4_off the ICMP header */
};

struct ctctl_pkt {
	struct ctctl_ct_key key; /* tuple as seen in this packet */
	__u32 l3_off;
	__u32 l4_off;
	__u32 csum_off; /* offset of the L4 checksum field */
	__u32 end;	/* just past the IP packet: bytes beyond (Ethernet padding) are not ours */
	__u8 tcp_flags; /* CTCTL_CT_F_FIN / CTCTL_CT_F_RST seen in this segment */
	__u8 tcp_syn;	/* a SYN without ACK: a connection opens */
};

/* Headers we read: Ethernet + IPv6 + TCP with no options is 74 bytes. */
#define CTCTL_PULL_LEN 74u

#define IPV4_FRAG_MASK 0x3fff /* MF flag and fragment offset */

static __always_inline int ctctl_is_ipv6_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:	  /* hop-by-hop */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		return 1;
	}
	return 0;
}

/* L4 header: the ports, the checksum offset and TCP flags. l4_len is what the
 * IP header says the L4 part is; the headers must fit in it and in the linear
 * data. */
static __always_inline int ctctl_parse_l4(struct __sk_buff *skb, struct ctctl_pkt *p, __u32 l4_len,
					  __u32 *reason)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (p->key.proto == IPPROTO_UDP) {
		struct udphdr *udp = data + p->l4_off;

		if ((void *)(udp + 1) > data_end || l4_len < sizeof(*udp)) {
			*reason = CTCTL_CNT_DROP_MALFORMED;
			return CTCTL_PARSE_DROP;
		}
		p->key.sport = udp->source;
		p->key.dport = udp->dest;
		p->csum_off = p->l4_off + offsetof(struct udphdr, check);
		return CTCTL_PARSE_OK;
	}

	struct tcphdr *tcp = data + p->l4_off;

	if ((void *)(tcp + 1) > data_end || l4_len < sizeof(*tcp) || tcp->doff < 5 ||
	    l4_len < (__u32)tcp->doff * 4) {
		*reason = CTCTL_CNT_DROP_MALFORMED;
		return CTCTL_PARSE_DROP;
	}
	p->key.sport = tcp->source;
	p->key.dport = tcp->dest;
	p->csum_off = p->l4_off + offsetof(struct tcphdr, check);
	if (tcp->fin)
		p->tcp_flags |= CTCTL_CT_F_FIN;
	if (tcp->rst)
		p->tcp_flags |= CTCTL_CT_F_RST;
	p->tcp_syn = tcp->syn && !tcp->ack;
	return CTCTL_PARSE_OK;
}

static __always_inline int ctctl_parse_v4(struct __sk_buff *skb, struct ctctl_pkt *p, __u32 *reason)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + p->l3_off;

	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5) {
		*reason = CTCTL_CNT_DROP_MALFORMED;
		return CTCTL_PARSE_DROP;
	}
	__u32 tot_len = bpf_ntohs(ip->tot_len);
	__u32 hdr_len = (__u32)ip->ihl * 4;

	if (tot_len < hdr_len || p->l3_off + tot_len > skb->len) {
		*reason = CTCTL_CNT_DROP_MALFORMED;
		return CTCTL_PARSE_DROP;
	}
	if (ip->ihl != 5) {
		*reason = CTCTL_CNT_PASS_IP_OPTIONS;
		return CTCTL_PARSE_PASS;
	}
	if (ip->frag_off & bpf_htons(IPV4_FRAG_MASK)) {
		*reason = CTCTL_CNT_PASS_FRAGMENT;
		return CTCTL_PARSE_PASS;
	}
	if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP &&
	    ip->protocol != IPPROTO_ICMP) {
		*reason = CTCTL_CNT_PASS_NOT_TCP_UDP;
		return CTCTL_PARSE_PASS;
	}
	p->key.family = CTCTL_FAMILY_V4;
	p->key.proto = ip->protocol;
	__builtin_memcpy(p->key.src, &ip->saddr, 4);
	__builtin_memcpy(p->key.dst, &ip->daddr, 4);
	p->l4_off = p->l3_off + sizeof(*ip);
	p->end = p->l3_off + tot_len;
	if (ip->protocol == IPPROTO_ICMP)
		return CTCTL_PARSE_ICMP;
	return ctctl_parse_l4(skb, p, tot_len - sizeof(*ip), reason);
}

static __always_inline int ctctl_parse_v6(struct __sk_buff *skb, struct ctctl_pkt *p, __u32 *reason)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + p->l3_off;

	if ((void *)(ip6 + 1) > data_end || ip6->version != 6) {
		*reason = CTCTL_CNT_DROP_MALFORMED;
		return CTCTL_PARSE_DROP;
	}
	__u32 payload_len = bpf_ntohs(ip6->payload_len);

	if (p->l3_off + sizeof(*ip6) + payload_len > skb->len) {
		*reason = CTCTL_CNT_DROP_MALFORMED;
		return CTCTL_PARSE_DROP;
	}
	if (ip6->nexthdr != IPPROTO_UDP && ip6->nexthdr != IPPROTO_TCP &&
	    ip6->nexthdr != IPPROTO_ICMPV6) {
		*reason = ctctl_is_ipv6_ext(ip6->nexthdr) ? CTCTL_CNT_PASS_IPV6_EXT
							  : CTCTL_CNT_PASS_NOT_TCP_UDP;
		return CTCTL_PARSE_PASS;
	}
	p->key.family = CTCTL_FAMILY_V6;
	p->key.proto = ip6->nexthdr;
	__builtin_memcpy(p->key.src, &ip6->saddr, 16);
	__builtin_memcpy(p->key.dst, &ip6->daddr, 16);
	p->l4_off = p->l3_off + sizeof(*ip6);
	p->end = p->l4_off + payload_len;
	if (ip6->nexthdr == IPPROTO_ICMPV6)
		return CTCTL_PARSE_ICMP;
	return ctctl_parse_l4(skb, p, payload_len, reason);
}

static __always_inline int ctctl_parse(struct __sk_buff *skb, struct ctctl_pkt *p, __u32 *reason)
{
	/* Headers may sit beyond the linear part of the skb: pull what we read. */
	__u32 want = skb->len < CTCTL_PULL_LEN ? skb->len : CTCTL_PULL_LEN;

	if ((void *)(long)skb->data + want > (void *)(long)skb->data_end)
		bpf_skb_pull_data(skb, want);

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end) {
		*reason = CTCTL_CNT_PASS_NOT_IP;
		return CTCTL_PARSE_PASS;
	}
	p->l3_off = sizeof(*eth);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return ctctl_parse_v4(skb, p, reason);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return ctctl_parse_v6(skb, p, reason);
	*reason = CTCTL_CNT_PASS_NOT_IP;
	return CTCTL_PARSE_PASS;
}

#endif /* CTCTL_LIB_PARSE_H */
