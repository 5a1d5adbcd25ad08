/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP errors about NAT flows, translated like the packets they quote, as
 * Calico and Cilium do: otherwise the client's socket never learns of the
 * error (no ECONNREFUSED) and path-MTU discovery black-holes.
 *
 * An ICMP error (IPv4 destination unreachable, time exceeded, parameter
 * problem; ICMPv6 destination unreachable, packet too big, time exceeded,
 * parameter problem) quotes the IP header and the first 8 bytes of the packet
 * that caused it. The reverse of that quoted tuple is the key of the entry
 * that translated the packet:
 *
 * - a NAT reverse half (backend -> client): the quoted packet went client ->
 *   backend after DNAT, and the error (from the backend, or a router beyond
 *   the node) goes to the client. The quoted destination becomes the VIP
 *   again, and an outer source that is the backend becomes the VIP.
 * - a NAT forward half (client -> VIP): the quoted packet was a reply, VIP ->
 *   client after the reverse rewrite, and the error (from a router between
 *   the node and the client) is addressed to the VIP. The quoted source
 *   becomes the backend again, and the outer destination the backend.
 *
 * Checksums: the quoted IPv4 header checksum and the quoted L4 checksum (UDP
 * when it is not zero; TCP when the quote reaches it) are updated
 * incrementally (RFC 1624), the ICMP checksum by the difference of every byte
 * changed in its payload, plus the pseudo-header for ICMPv6 when the outer
 * address changes, and the outer IPv4 header checksum. What was right stays
 * right, what was wrong stays wrong. An error with a truncated or malformed
 * quote passes untouched and is counted; an error about a flow that is not
 * NAT-ed passes untouched. Entries are not refreshed by errors.
 */
#ifndef CTCTL_LIB_ICMP_H
#define CTCTL_LIB_ICMP_H

#include "conntrack.h"

#define CTCTL_IPPROTO_ICMP 1
#define CTCTL_IPPROTO_ICMPV6 58

/* The quote ctctl reads: the inner IP header and the first 8 bytes of L4. */
#define CTCTL_QUOTE_V4 28
#define CTCTL_QUOTE_V6 48

static __always_inline int ctctl_icmp_is_error(__u8 family, __u8 type)
{
	if (family == CTCTL_FAMILY_V4)
		return type == 3 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

static __always_inline __u16 ctctl_csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* RFC 1624, eqn. 3: the checksum `hc` (as stored) after the 16-bit words
 * old[0..n) of what it covers became new[0..n). Byte order does not matter as
 * long as all words are read the same way. */
static __always_inline __u16 ctctl_csum_update(__u16 hc, const __u16 *old, const __u16 *new, int n)
{
	__u32 s = (__u16)~hc;

#pragma unroll
	for (int i = 0; i < 9; i++) {
		if (i < n) {
			s += (__u16)~old[i];
			s += new[i];
		}
	}
	return (__u16)~ctctl_csum_fold(s);
}

/* What to rewrite in the quote and the outer header. */
struct ctctl_icmp_nat {
	__u8 addr[16];	     /* new quoted address (v4: first 4 bytes) */
	__be16 port;	     /* new quoted port */
	__u8 quoted_dst;     /* 1: the quoted destination changes (reverse half); 0: the source */
	__u8 outer_dst;	     /* 1: the outer destination may change; 0: the outer source */
	__u8 outer_from[16]; /* the outer address that is rewritten, if it is this one */
};

/* An error's buffers, off the 512-byte stack (the packet path is deep already). */
struct ctctl_icmp_scratch {
	__u8 old[CTCTL_QUOTE_V6]; /* the quote as it came */
	__u8 q[CTCTL_QUOTE_V6];	  /* the quote rewritten */
	__u8 tcp_old[4];	  /* the quoted TCP checksum and urgent pointer */
	__u8 tcp_new[4];
	struct ctctl_ct_key key;
	struct ctctl_icmp_nat n;
	__u16 oldw[9]; /* the 16-bit words that change (checksum updates) */
	__u16 neww[9];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ctctl_icmp_scratch);
} icmp_scratch SEC(".maps");

/* Rewrites the quote in x->q (the IP header and 8 bytes of L4, which starts at
 * `l4`): the address and port, the IPv4 header checksum and the quoted L4
 * checksum; x->tcp_new: the 4-byte window at the quoted TCP checksum, when the
 * quote reaches it (has_tcp). */
static __always_inline void ctctl_icmp_rewrite_quote(struct ctctl_icmp_scratch *x, __u8 family,
						     __u32 l4, int has_tcp)
{
	const struct ctctl_icmp_nat *n = &x->n;
	__u8 *q = x->q;
	__u32 aoff =
		family == CTCTL_FAMILY_V4 ? (n->quoted_dst ? 16 : 12) : (n->quoted_dst ? 24 : 8);
	__u32 poff = l4 + (n->quoted_dst ? 2 : 0);
	__u8 proto = family == CTCTL_FAMILY_V4 ? q[9] : q[6];
	int words;

	/* the words that change: the address (2 or 8 words), then the port */
	__builtin_memcpy(x->oldw, q + aoff, 16);
	__builtin_memcpy(x->neww, n->addr, 16);
	if (family == CTCTL_FAMILY_V4) {
		/* the IPv4 header checksum covers the addresses only */
		__u16 hc;

		__builtin_memcpy(&hc, q + 10, 2);
		hc = ctctl_csum_update(hc, x->oldw, x->neww, 2);
		__builtin_memcpy(q + 10, &hc, 2);
		__builtin_memcpy(&x->oldw[2], q + poff, 2);
		x->neww[2] = n->port;
		words = 3;
	} else {
		__builtin_memcpy(&x->oldw[8], q + poff, 2);
		x->neww[8] = n->port;
		words = 9;
	}
	/* the quoted L4 checksum covers the pseudo-header addresses and the port */
	if (proto == CTCTL_PROTO_UDP) {
		__u16 lc;

		__builtin_memcpy(&lc, q + l4 + 6, 2);
		if (lc || family == CTCTL_FAMILY_V6) {
			lc = ctctl_csum_update(lc, x->oldw, x->neww, words);
			if (!lc)
				lc = 0xffff;
			__builtin_memcpy(q + l4 + 6, &lc, 2);
		}
	} else if (has_tcp) {
		__u16 tc;

		__builtin_memcpy(&tc, x->tcp_new, 2);
		tc = ctctl_csum_update(tc, x->oldw, x->neww, words);
		__builtin_memcpy(x->tcp_new, &tc, 2);
	}
	if (family == CTCTL_FAMILY_V4)
		__builtin_memcpy(q + aoff, n->addr, 4);
	else
		__builtin_memcpy(q + aoff, n->addr, 16);
	__builtin_memcpy(q + poff, &n->port, 2);
}

/* Rewrites the outer address `off` (alen bytes) from n->outer_from to n->addr
 * if it holds that address; the IPv4 header checksum, or for ICMPv6 the
 * pseudo-header in the ICMPv6 checksum. Returns 0 or a negative error. */
static __always_inline int ctctl_icmp_rewrite_outer(struct __sk_buff *skb,
						    const struct ctctl_pkt *p,
						    const struct ctctl_icmp_nat *n)
{
	const __u8 *outer = n->outer_dst ? p->key.dst : p->key.src;
	__u32 csum_off = p->l4_off + 2;

	if (p->key.family == CTCTL_FAMILY_V4) {
		__be32 from, to;

		__builtin_memcpy(&from, outer, 4);
		__builtin_memcpy(&to, n->addr, 4);
		if (__builtin_memcmp(outer, n->outer_from, 4) != 0 || from == to)
			return 0;
		__u32 off = p->l3_off + (n->outer_dst ? offsetof(struct iphdr, daddr)
						      : offsetof(struct iphdr, saddr));

		if (bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check), from, to,
					sizeof(to)))
			return -1;
		return bpf_skb_store_bytes(skb, off, &to, sizeof(to), 0);
	}
	__be32 from[4], to[4];

	__builtin_memcpy(from, outer, 16);
	__builtin_memcpy(to, n->addr, 16);
	if (__builtin_memcmp(outer, n->outer_from, 16) != 0)
		return 0;
	__u32 off = p->l3_off + (n->outer_dst ? offsetof(struct ipv6hdr, daddr)
					      : offsetof(struct ipv6hdr, saddr));
	__s64 diff = bpf_csum_diff(from, sizeof(from), to, sizeof(to), 0);

	if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR))
		return -1;
	return bpf_skb_store_bytes(skb, off, to, sizeof(to), 0);
}

/* An ICMP or ICMPv6 packet: translate it if it is an error about a NAT flow.
 * A function of its own (a BPF-to-BPF call), its buffers in a per-CPU map. */
static __attribute__((noinline)) int ctctl_icmp(struct __sk_buff *skb, const struct ctctl_pkt *p,
						struct ctctl_counters *cnt)
{
	__u32 zero = 0;
	struct ctctl_icmp_scratch *x = bpf_map_lookup_elem(&icmp_scratch, &zero);
	__u32 qoff = p->l4_off + 8; /* the quote follows the 8-byte ICMP header */
	int v4 = p->key.family == CTCTL_FAMILY_V4;
	__u32 l4 = v4 ? 20 : 40;
	__u8 type;
	__u8 proto;

	if (!x)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, p->l4_off, &type, 1) ||
	    !ctctl_icmp_is_error(p->key.family, type)) {
		cnt->c[CTCTL_CNT_PASS_NOT_TCP_UDP]++;
		return TC_ACT_OK;
	}
	cnt->c[CTCTL_CNT_PACKETS]++;
	/* the quote must lie within the IP packet, not in the frame's padding after it */
	if (qoff + (v4 ? CTCTL_QUOTE_V4 : CTCTL_QUOTE_V6) > p->end ||
	    (v4 ? bpf_skb_load_bytes(skb, qoff, x->old, CTCTL_QUOTE_V4)
		: bpf_skb_load_bytes(skb, qoff, x->old, CTCTL_QUOTE_V6)))
		goto malformed;

	/* the quote: one IP header without options or extension headers, UDP or TCP, and
	 * not a later fragment (which carries no L4 header). Its reverse is the key. */
	__builtin_memset(&x->key, 0, sizeof(x->key));
	if (v4) {
		if (x->old[0] != 0x45 || (((__u16)x->old[6] << 8 | x->old[7]) & 0x1fff))
			goto malformed;
		proto = x->old[9];
		__builtin_memcpy(x->key.src, x->old + 16, 4);
		__builtin_memcpy(x->key.dst, x->old + 12, 4);
	} else {
		if ((x->old[0] >> 4) != 6)
			goto malformed;
		proto = x->old[6];
		__builtin_memcpy(x->key.src, x->old + 24, 16);
		__builtin_memcpy(x->key.dst, x->old + 8, 16);
	}
	if (proto != CTCTL_PROTO_UDP && proto != CTCTL_PROTO_TCP) {
		cnt->c[CTCTL_CNT_PASS_ICMP_UNTRACKED]++; /* never NAT-ed */
		return TC_ACT_OK;
	}
	x->key.proto = proto;
	x->key.family = p->key.family;
	__builtin_memcpy(&x->key.sport, x->old + l4 + 2, 2);
	__builtin_memcpy(&x->key.dport, x->old + l4, 2);

	struct ctctl_ct_value *v = bpf_map_lookup_elem(&ct, &x->key);

	if (!v || v->type == CTCTL_CT_NORMAL) {
		cnt->c[CTCTL_CNT_PASS_ICMP_UNTRACKED]++;
		return TC_ACT_OK;
	}
	__builtin_memset(&x->n, 0, sizeof(x->n));
	__builtin_memcpy(x->n.addr, v->nat_addr, 16);
	x->n.port = v->nat_port;
	if (v->type == CTCTL_CT_NAT_REV) {
		/* quoted client -> backend: the destination becomes the VIP; an error
		 * from the backend itself comes from the VIP */
		x->n.quoted_dst = 1;
		x->n.outer_dst = 0;
		__builtin_memcpy(x->n.outer_from, x->key.src, 16);
	} else {
		/* quoted VIP -> client (a reply): the source becomes the backend, and the
		 * error, addressed to the VIP, goes to the backend */
		x->n.quoted_dst = 0;
		x->n.outer_dst = 1;
		__builtin_memcpy(x->n.outer_from, x->key.dst, 16);
	}

	__u32 tcp_off = qoff + l4 + 16;
	int has_tcp = proto == CTCTL_PROTO_TCP && tcp_off + 4 <= p->end &&
		      !bpf_skb_load_bytes(skb, tcp_off, x->tcp_old, 4);

	__builtin_memcpy(x->q, x->old, sizeof(x->q));
	__builtin_memcpy(x->tcp_new, x->tcp_old, 4);
	ctctl_icmp_rewrite_quote(x, p->key.family, l4, has_tcp);

	/* the ICMP checksum covers its whole payload: add what changed in the quote */
	__s64 diff = v4 ? bpf_csum_diff((__be32 *)x->old, CTCTL_QUOTE_V4, (__be32 *)x->q,
					CTCTL_QUOTE_V4, 0)
			: bpf_csum_diff((__be32 *)x->old, CTCTL_QUOTE_V6, (__be32 *)x->q,
					CTCTL_QUOTE_V6, 0);

	if (diff < 0)
		goto rewrite_failed;
	if (has_tcp) {
		diff = bpf_csum_diff((__be32 *)x->tcp_old, 4, (__be32 *)x->tcp_new, 4, (__u32)diff);
		if (diff < 0 || bpf_skb_store_bytes(skb, tcp_off, x->tcp_new, 4, 0))
			goto rewrite_failed;
	}
	if ((v4 ? bpf_skb_store_bytes(skb, qoff, x->q, CTCTL_QUOTE_V4, 0)
		: bpf_skb_store_bytes(skb, qoff, x->q, CTCTL_QUOTE_V6, 0)) ||
	    bpf_l4_csum_replace(skb, p->l4_off + 2, 0, diff, 0) ||
	    ctctl_icmp_rewrite_outer(skb, p, &x->n))
		goto rewrite_failed;
	cnt->c[CTCTL_CNT_ICMP_ERROR_TRANSLATED]++;
	return TC_ACT_OK;

malformed:
	cnt->c[CTCTL_CNT_PASS_ICMP_MALFORMED]++;
	return TC_ACT_OK;
rewrite_failed:
	cnt->c[CTCTL_CNT_DROP_REWRITE]++;
	return TC_ACT_SHOT;
}

#endif /* CTCTL_LIB_ICMP_H */
