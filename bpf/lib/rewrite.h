/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Address and port rewrites with incremental checksum updates. IPv4 updates
 * the header checksum too; IPv6 has none. The L4 checksum covers the
 * pseudo-header (BPF_F_PSEUDO_HDR for address words, not for ports). UDP may
 * carry a zero checksum (IPv4: "none"); BPF_F_MARK_MANGLED_0 leaves it zero and
 * writes 0xffff when a result would be zero.
 */
#ifndef CTCTL_LIB_REWRITE_H
#define CTCTL_LIB_REWRITE_H

#include "parse.h"

static __always_inline __u64 ctctl_l4_csum_flags(const struct ctctl_pkt *p)
{
	return p->key.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* Rewrite the destination (dst = 1) or source (dst = 0) address and port of
 * the packet from what p->key says to addr/port. Returns 0 or a negative
 * error; on error the packet must be dropped. */
static __always_inline int ctctl_rewrite(struct __sk_buff *skb, const struct ctctl_pkt *p, int dst,
					 const __u8 *addr, __be16 port)
{
	__u64 l4_flags = ctctl_l4_csum_flags(p);
	const __u8 *old_addr = dst ? p->key.dst : p->key.src;
	__be16 old_port = dst ? p->key.dport : p->key.sport;
	/* source/dest port are the first two 16-bit words of both UDP and TCP */
	__u32 port_off = p->l4_off + (dst ? 2 : 0);

	if (p->key.family == CTCTL_FAMILY_V4) {
		__u32 addr_off = p->l3_off + (dst ? offsetof(struct iphdr, daddr)
						  : offsetof(struct iphdr, saddr));
		__be32 from, to;

		__builtin_memcpy(&from, old_addr, 4);
		__builtin_memcpy(&to, addr, 4);
		if (from != to) {
			if (bpf_l4_csum_replace(skb, p->csum_off, from, to,
						BPF_F_PSEUDO_HDR | l4_flags | sizeof(to)))
				return -1;
			if (bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check),
						from, to, sizeof(to)))
				return -1;
			if (bpf_skb_store_bytes(skb, addr_off, &to, sizeof(to), 0))
				return -1;
		}
	} else {
		__u32 addr_off = p->l3_off + (dst ? offsetof(struct ipv6hdr, daddr)
						  : offsetof(struct ipv6hdr, saddr));
		__be32 from[4], to[4];

		__builtin_memcpy(from, old_addr, 16);
		__builtin_memcpy(to, addr, 16);
		__s64 diff = bpf_csum_diff(from, sizeof(from), to, sizeof(to), 0);

		if (diff < 0)
			return -1;
		if (bpf_l4_csum_replace(skb, p->csum_off, 0, diff, BPF_F_PSEUDO_HDR | l4_flags))
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, to, sizeof(to), 0))
			return -1;
	}
	if (old_port != port) {
		if (bpf_l4_csum_replace(skb, p->csum_off, old_port, port, l4_flags | sizeof(port)))
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &port, sizeof(port), 0))
			return -1;
	}
	return 0;
}

#endif /* CTCTL_LIB_REWRITE_H */
