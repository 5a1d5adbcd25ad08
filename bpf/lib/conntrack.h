/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Conntrack entries: keys, identity, expiry, creation of normal entries and NAT pairs. */
#ifndef CTCTL_LIB_CONNTRACK_H
#define CTCTL_LIB_CONNTRACK_H

#include "ctctl_rules.h"
#include "maps.h"
#include "parse.h"

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

/* The idle timeout of this entry, by its own protocol and flags (ctctl_rules.h). */
static __always_inline __u64 ctctl_timeout_ns(const struct ctctl_ct_value *v, __u8 proto)
{
	return ctctl_config
		.timeout_ns[ctctl_timeout_index(proto, v->flags) & (CTCTL_TIMEOUT_MAX - 1)];
}

static __always_inline int ctctl_idle(const struct ctctl_ct_value *v, __u8 proto, __u64 now)
{
	return ctctl_idle_past(v->last_seen_ns, now, ctctl_timeout_ns(v, proto));
}

/* Has the entry `v` under `key` expired (ctctl_expired_entry)? Each half of a
 * NAT pair is judged by its own timeout; the partner is looked up only when
 * this half is idle, which is rare on the packet path. The datapath treats a
 * hit on an expired entry as a miss, and prog_stage re-checks `expired` with
 * this same function before it deletes. */
static __always_inline int ctctl_entry_expired(const struct ctctl_ct_key *key,
					       const struct ctctl_ct_value *v, __u64 now)
{
	if (!ctctl_idle(v, key->proto, now))
		return 0;
	if (v->type == CTCTL_CT_NORMAL)
		return 1;
	struct ctctl_ct_key partner = v->partner;
	struct ctctl_ct_value *pv = bpf_map_lookup_elem(&ct, &partner);
	int partner_ok = ctctl_is_partner(pv, key, v->type, v->created_ns);

	return ctctl_expired_entry(1, v->type, partner_ok,
				   partner_ok && pv ? ctctl_idle(pv, key->proto, now) : 0);
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

/* Delete the reverse half of the NAT forward entry `key`, but only if it is
 * still the other half of the same pair (ctctl_is_partner). */
static __always_inline void ctctl_delete_partner(const struct ctctl_ct_key *key, __u64 created,
						 const struct ctctl_ct_key *partner)
{
	struct ctctl_ct_value *pv = bpf_map_lookup_elem(&ct, partner);

	if (ctctl_is_partner(pv, key, CTCTL_CT_NAT_FWD, created))
		bpf_map_delete_elem(&ct, partner);
}

/* Delete the entry under `key` if it is still the entry with this identity
 * (another CPU may have replaced it since it was read). */
static __always_inline void ctctl_delete_if(const struct ctctl_ct_key *key, __u8 type,
					    __u64 created)
{
	struct ctctl_ct_value *cur = bpf_map_lookup_elem(&ct, key);

	if (cur && cur->type == type && cur->created_ns == created)
		bpf_map_delete_elem(&ct, key);
}

/* bpf_map_update_elem with BPF_NOEXIST on a key that exists */
#define CTCTL_EEXIST 17

/* Write a normal entry for key, as a whole new value (never an in-place type
 * change), only if the key is free: -CTCTL_EEXIST if another CPU wrote it
 * first (the caller then uses that entry). Returns 0 or a negative error. */
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
	return bpf_map_update_elem(&ct, key, v, BPF_NOEXIST);
}

/* Write both halves of a NAT pair for the forward key `key` (client -> VIP)
 * to backend `be`. The forward half decides a race: it is written first, with
 * BPF_NOEXIST, and a CPU that finds it taken writes nothing (-CTCTL_EEXIST: the
 * caller uses the winner's pair), so two CPUs missing on the same new flow can
 * never leave halves of two different pairs. Only the winner writes the
 * reverse half, with BPF_ANY: a late reply may have left a normal entry on
 * that key. Both halves share one created time, which is how each recognises
 * the other. A path that replaces an existing forward half deletes it first
 * (ctctl_delete_if). Returns 0 or a negative error. */
static __always_inline int ctctl_create_pair(const struct ctctl_ct_key *key,
					     const struct ctctl_be_value *be, __u32 epoch,
					     __u64 now, __u32 len, __u32 flags)
{
	struct ctctl_ct_value *v = ctctl_scratch_get();
	struct ctctl_ct_key rkey = {};
	int err;

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
	v->packets = 1;
	v->bytes = len;
	v->epoch = epoch;
	v->flags = flags;
	v->type = CTCTL_CT_NAT_FWD;
	v->svc_proto = key->proto;
	v->svc_port = key->dport;
	__builtin_memcpy(v->svc_addr, key->dst, 16);
	v->nat_port = be->port;
	__builtin_memcpy(v->nat_addr, be->addr, 16);
	v->partner = rkey;
	err = bpf_map_update_elem(&ct, key, v, BPF_NOEXIST);
	if (err)
		return err;

	v->type = CTCTL_CT_NAT_REV;
	v->packets = 0;
	v->bytes = 0;
	v->nat_port = key->dport;
	__builtin_memcpy(v->nat_addr, key->dst, 16);
	v->partner = *key;
	if (bpf_map_update_elem(&ct, &rkey, v, BPF_ANY)) {
		ctctl_delete_if(key, CTCTL_CT_NAT_FWD, now);
		return -1;
	}
	return 0;
}

/* Write the reverse half of the forward half `v` (under `key`) again: the same
 * pair, the same created time, as if create_pair had just written it. Only if
 * the reverse key is free (BPF_NOEXIST): another CPU may restore it too. */
static __always_inline int ctctl_restore_reverse(const struct ctctl_ct_key *key,
						 const struct ctctl_ct_value *v, __u64 now)
{
	struct ctctl_ct_value *r = ctctl_scratch_get();
	struct ctctl_ct_key rkey = v->partner;

	if (!r)
		return -1;
	*r = *v;
	r->type = CTCTL_CT_NAT_REV;
	r->last_seen_ns = now;
	r->packets = 0;
	r->bytes = 0;
	r->flags = 0;
	r->nat_port = v->svc_port;
	__builtin_memcpy(r->nat_addr, v->svc_addr, 16);
	r->partner = *key;
	return bpf_map_update_elem(&ct, &rkey, r, BPF_NOEXIST);
}

#endif /* CTCTL_LIB_CONNTRACK_H */
