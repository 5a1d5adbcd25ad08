/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Conntrack entries: keys, identity, expiry, creation of normal entries and NAT pairs. */
#ifndef CTCTL_LIB_CONNTRACK_H
#define CTCTL_LIB_CONNTRACK_H

#include "maps.h"
#include "parse.h"

static __always_inline int ctctl_key_eq(const struct ctctl_ct_key *a, const struct ctctl_ct_key *b)
{
	const __u64 *x = (const __u64 *)a;
	const __u64 *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

static __always_inline void ctctl_key_reverse(const struct ctctl_ct_key *k, struct ctctl_ct_key *r)
{
	__builtin_memcpy(r->src, k->dst, 16);
	__builtin_memcpy(r->dst, k->src, 16);
	r->sport = k->dport;
	r->dport = k->sport;
	r->proto = k->proto;
	r->family = k->family;
	r->pad = 0;
}

static __always_inline __u64 ctctl_timeout_ns(const struct ctctl_ct_value *v, __u8 proto)
{
	if (proto == IPPROTO_UDP)
		return ctctl_config.timeout_ns[CTCTL_TIMEOUT_UDP];
	if (proto == IPPROTO_TCP)
		return (v->flags & (CTCTL_CT_F_FIN | CTCTL_CT_F_RST))
			       ? ctctl_config.timeout_ns[CTCTL_TIMEOUT_TCP_CLOSING]
			       : ctctl_config.timeout_ns[CTCTL_TIMEOUT_TCP];
	return ctctl_config.timeout_ns[CTCTL_TIMEOUT_OTHER];
}

static __always_inline int ctctl_expired(const struct ctctl_ct_value *v, __u8 proto, __u64 now)
{
	__u64 last = v->last_seen_ns;

	/* another CPU may have stored a later time than our `now` */
	return now > last && now - last > ctctl_timeout_ns(v, proto);
}

/* A NAT pair is one flow: its halves are refreshed by different packets (the
 * forward half by the client, the reverse half by replies), so an idle half is
 * not expired while the other half of the same pair is fresh. Checked only on
 * the (rare) expired path. */
static __always_inline int ctctl_partner_fresh(const struct ctctl_ct_key *key,
					       const struct ctctl_ct_value *v, __u64 now)
{
	struct ctctl_ct_key partner = v->partner;
	struct ctctl_ct_value *pv = bpf_map_lookup_elem(&ct, &partner);

	return pv && pv->created_ns == v->created_ns && ctctl_key_eq(&pv->partner, key) &&
	       !ctctl_expired(pv, key->proto, now);
}

/* Account a packet to an entry. Stats are atomic; last_seen is a plain store. */
static __always_inline void ctctl_touch(struct ctctl_ct_value *v, const struct ctctl_pkt *p,
					__u32 len, __u64 now, __u32 extra_flags)
{
	__u32 want = p->tcp_flags | extra_flags;

	v->last_seen_ns = now;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, len);
	if (want && (v->flags & want) != want)
		__sync_fetch_and_or(&v->flags, want);
}

/* Delete the partner of a NAT entry, but only if it is still the other half of
 * the same pair (same created time, pointing back at `key`). */
static __always_inline void ctctl_delete_partner(const struct ctctl_ct_key *key, __u64 created,
						 const struct ctctl_ct_key *partner)
{
	struct ctctl_ct_value *pv = bpf_map_lookup_elem(&ct, partner);

	if (pv && pv->created_ns == created && ctctl_key_eq(&pv->partner, key))
		bpf_map_delete_elem(&ct, partner);
}

/* Write a normal entry for key, as a whole new value (never an in-place type
 * change). Returns 0 or a negative error. */
static __always_inline int ctctl_create_normal(const struct ctctl_ct_key *key, __u32 epoch,
					       __u64 now, __u32 len, __u32 flags)
{
	struct ctctl_ct_value *v = ctctl_scratch_get();

	if (!v)
		return -1;
	__builtin_memset(v, 0, sizeof(*v));
	v->created_ns = now;
	v->last_seen_ns = now;
	v->packets = 1;
	v->bytes = len;
	v->epoch = epoch;
	v->flags = flags;
	v->type = CTCTL_CT_NORMAL;
	return bpf_map_update_elem(&ct, key, v, BPF_ANY);
}

/* Write both halves of a NAT pair for the forward key `key` (client -> VIP)
 * to backend `be`: the reverse half first, so replies are translated as soon
 * as the first packet is delivered. Both with BPF_ANY: a late reply may have
 * left a normal entry on the reverse key. Both share one created time, which
 * is how each half recognises the other. Returns 0 or a negative error. */
static __always_inline int ctctl_create_pair(const struct ctctl_ct_key *key,
					     const struct ctctl_be_value *be, __u32 epoch,
					     __u64 now, __u32 len, __u32 flags)
{
	struct ctctl_ct_value *v = ctctl_scratch_get();
	struct ctctl_ct_key rkey = {};

	if (!v)
		return -1;
	__builtin_memcpy(rkey.src, be->addr, 16);
	__builtin_memcpy(rkey.dst, key->src, 16);
	rkey.sport = be->port;
	rkey.dport = key->sport;
	rkey.proto = key->proto;
	rkey.family = key->family;

	__builtin_memset(v, 0, sizeof(*v));
	v->created_ns = now;
	v->last_seen_ns = now;
	v->epoch = epoch;
	v->flags = flags;
	v->type = CTCTL_CT_NAT_REV;
	v->svc_proto = key->proto;
	v->svc_port = key->dport;
	__builtin_memcpy(v->svc_addr, key->dst, 16);
	v->nat_port = key->dport;
	__builtin_memcpy(v->nat_addr, key->dst, 16);
	v->partner = *key;
	if (bpf_map_update_elem(&ct, &rkey, v, BPF_ANY))
		return -1;

	v->type = CTCTL_CT_NAT_FWD;
	v->packets = 1;
	v->bytes = len;
	v->nat_port = be->port;
	__builtin_memcpy(v->nat_addr, be->addr, 16);
	v->partner = rkey;
	if (bpf_map_update_elem(&ct, key, v, BPF_ANY)) {
		bpf_map_delete_elem(&ct, &rkey);
		return -1;
	}
	return 0;
}

#endif /* CTCTL_LIB_CONNTRACK_H */
