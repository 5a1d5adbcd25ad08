/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The packet path: conntrack first, NAT only on a miss (Calico's design, bug
 * included), plus the service-epoch re-check that repairs the bug on the next
 * packet when it is switched on at load.
 */
#ifndef CTCTL_LIB_DATAPATH_H
#define CTCTL_LIB_DATAPATH_H

#include "conntrack.h"
#include "nat.h"
#include "rewrite.h"

static __always_inline int ctctl_dnat(struct __sk_buff *skb, const struct ctctl_pkt *p,
				      struct ctctl_counters *cnt, const __u8 *addr, __be16 port)
{
	if (ctctl_rewrite(skb, p, 1, addr, port)) {
		cnt->c[CTCTL_CNT_DROP_REWRITE]++;
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

/* A new NAT flow to frontend fe: pick a backend, write the pair, DNAT. */
static __always_inline int ctctl_new_nat_flow(struct __sk_buff *skb, const struct ctctl_pkt *p,
					      struct ctctl_counters *cnt,
					      const struct ctctl_fe_value *fe, __u32 epoch,
					      __u64 now, __u32 flags, enum ctctl_counter what)
{
	struct ctctl_be_value *be = ctctl_pick_backend(fe, &p->key);

	if (!be) {
		cnt->c[CTCTL_CNT_DROP_BACKEND_MISSING]++;
		return TC_ACT_SHOT;
	}
	if (ctctl_create_pair(&p->key, be, epoch, now, skb->len, flags)) {
		cnt->c[CTCTL_CNT_DROP_CT_WRITE]++;
		return TC_ACT_SHOT;
	}
	cnt->c[what]++;
	return ctctl_dnat(skb, p, cnt, be->addr, be->port);
}

/* A frontend that does not translate (ctctl_frontend_active): zero backends,
 * or more than the datapath's membership check covers. */
static __always_inline int ctctl_drop_inactive(struct ctctl_counters *cnt,
					       const struct ctctl_fe_value *fe)
{
	if (ctctl_frontend_over_limit(fe->backend_count))
		cnt->c[CTCTL_CNT_DROP_TOO_MANY_BACKENDS]++;
	else
		cnt->c[CTCTL_CNT_DROP_NO_BACKEND]++;
	return TC_ACT_SHOT;
}

static __always_inline int ctctl_miss(struct __sk_buff *skb, const struct ctctl_pkt *p,
				      struct ctctl_counters *cnt, __u64 now)
{
	/* The epoch is read before the frontend lookup: an entry created after a
	 * lookup that just missed a concurrent frontend write then carries the
	 * old epoch and is re-checked on its next packet. */
	__u32 epoch = READ_ONCE(ctctl_state.epoch);
	struct ctctl_fe_value *fe =
		ctctl_fe_lookup(p->key.dst, p->key.dport, p->key.proto, p->key.family);

	cnt->c[CTCTL_CNT_CT_MISS]++;
	if (fe) {
		if (!ctctl_frontend_active(fe->backend_count))
			return ctctl_drop_inactive(cnt, fe);
		return ctctl_new_nat_flow(skb, p, cnt, fe, epoch, now, 0,
					  CTCTL_CNT_NAT_PAIR_CREATED);
	}
	if (ctctl_create_normal(&p->key, epoch, now, skb->len, p->tcp_flags) == 0)
		cnt->c[CTCTL_CNT_NORMAL_CREATED]++;
	return TC_ACT_OK;
}

/* Epoch re-check of a normal entry: if its destination is now a service with
 * backends, the flow becomes a NAT flow right here (new entries, new created
 * time). Otherwise its epoch is brought up to date. */
static __always_inline int ctctl_recheck_normal(struct __sk_buff *skb, const struct ctctl_pkt *p,
						struct ctctl_counters *cnt,
						struct ctctl_ct_value *v, __u64 now)
{
	__u32 epoch = READ_ONCE(ctctl_state.epoch);
	struct ctctl_fe_value *fe =
		ctctl_fe_lookup(p->key.dst, p->key.dport, p->key.proto, p->key.family);

	cnt->c[CTCTL_CNT_EPOCH_RECHECK]++;
	if (fe && ctctl_frontend_over_limit(fe->backend_count))
		return ctctl_drop_inactive(cnt, fe);
	if (fe && ctctl_frontend_active(fe->backend_count))
		return ctctl_new_nat_flow(skb, p, cnt, fe, epoch, now, CTCTL_CT_F_CONVERTED,
					  CTCTL_CNT_FLOW_CONVERTED);
	WRITE_ONCE(v->epoch, epoch);
	ctctl_touch(v, p, skb->len, now, 0);
	return TC_ACT_OK;
}

/* Epoch re-check of a NAT forward entry: service gone -> the flow becomes
 * normal; backend no longer a member -> re-balanced to a live backend;
 * otherwise the epoch is brought up to date and the entry applied. */
static __always_inline int ctctl_recheck_fwd(struct __sk_buff *skb, const struct ctctl_pkt *p,
					     struct ctctl_counters *cnt, struct ctctl_ct_value *v,
					     __u64 now)
{
	__u32 epoch = READ_ONCE(ctctl_state.epoch);
	struct ctctl_fe_value *fe =
		ctctl_fe_lookup(v->svc_addr, v->svc_port, v->svc_proto, p->key.family);
	struct ctctl_ct_key old_partner = v->partner;
	__u64 old_created = v->created_ns;

	cnt->c[CTCTL_CNT_EPOCH_RECHECK]++;
	if (!fe) {
		if (ctctl_create_normal(&p->key, epoch, now, skb->len,
					p->tcp_flags | CTCTL_CT_F_CONVERTED))
			return TC_ACT_OK;
		ctctl_delete_partner(&p->key, old_created, &old_partner);
		cnt->c[CTCTL_CNT_FLOW_UNNATED]++;
		return TC_ACT_OK;
	}
	if (!ctctl_frontend_active(fe->backend_count))
		/* left as is: re-checked again once the service translates */
		return ctctl_drop_inactive(cnt, fe);
	if (ctctl_backend_is_member(fe, v->nat_addr, v->nat_port, p->key.family)) {
		WRITE_ONCE(v->epoch, epoch);
		ctctl_touch(v, p, skb->len, now, 0);
		return ctctl_dnat(skb, p, cnt, v->nat_addr, v->nat_port);
	}
	int verdict = ctctl_new_nat_flow(skb, p, cnt, fe, epoch, now, CTCTL_CT_F_CONVERTED,
					 CTCTL_CNT_FLOW_REBALANCED);
	/* the new pair overwrote the forward half; the old reverse half is another key */
	ctctl_delete_partner(&p->key, old_created, &old_partner);
	return verdict;
}

static __always_inline int ctctl_handle(struct __sk_buff *skb)
{
	struct ctctl_counters *cnt = ctctl_counters_get();
	struct ctctl_pkt p = {};
	__u32 reason = 0;

	if (!cnt)
		return TC_ACT_OK;
	int parsed = ctctl_parse(skb, &p, &reason);

	if (parsed != CTCTL_PARSE_OK) {
		if (reason < CTCTL_COUNTER_SLOTS)
			cnt->c[reason]++;
		return parsed == CTCTL_PARSE_DROP ? TC_ACT_SHOT : TC_ACT_OK;
	}
	cnt->c[CTCTL_CNT_PACKETS]++;

	__u64 now = bpf_ktime_get_ns();
#ifdef CTCTL_TEST_HOOKS
	/* Test build only (never installed): the first lookup misses, as when another CPU
	 * creates the same flow between this CPU's lookup and its insert. */
	struct ctctl_ct_value *v = NULL;
#else
	struct ctctl_ct_value *v = bpf_map_lookup_elem(&ct, &p.key);
#endif

	if (v) {
		if (ctctl_entry_expired(&p.key, v, now)) {
			cnt->c[CTCTL_CNT_EXPIRED_HIT]++;
			if (v->type == CTCTL_CT_NAT_FWD) {
				struct ctctl_ct_key partner = v->partner;

				ctctl_delete_partner(&p.key, v->created_ns, &partner);
			}
			return ctctl_miss(skb, &p, cnt, now);
		}
		cnt->c[CTCTL_CNT_CT_HIT]++;
		switch (v->type) {
		case CTCTL_CT_NAT_FWD:
			if (CTCTL_EPOCH_ON && v->epoch != READ_ONCE(ctctl_state.epoch))
				return ctctl_recheck_fwd(skb, &p, cnt, v, now);
			ctctl_touch(v, &p, skb->len, now, 0);
			return ctctl_dnat(skb, &p, cnt, v->nat_addr, v->nat_port);
		case CTCTL_CT_NAT_REV:
			ctctl_touch(v, &p, skb->len, now, 0);
			if (ctctl_rewrite(skb, &p, 0, v->nat_addr, v->nat_port)) {
				cnt->c[CTCTL_CNT_DROP_REWRITE]++;
				return TC_ACT_SHOT;
			}
			return TC_ACT_OK;
		default:
			if (CTCTL_EPOCH_ON && v->epoch != READ_ONCE(ctctl_state.epoch))
				return ctctl_recheck_normal(skb, &p, cnt, v, now);
			ctctl_touch(v, &p, skb->len, now, 0);
			return TC_ACT_OK;
		}
	}

	/* A reply of a normal flow matches that flow's entry through the reversed tuple. */
	struct ctctl_ct_key rkey;

	ctctl_key_reverse(&p.key, &rkey);
	v = bpf_map_lookup_elem(&ct, &rkey);
	if (v && v->type == CTCTL_CT_NORMAL && !ctctl_idle(v, p.key.proto, now)) {
		cnt->c[CTCTL_CNT_CT_HIT]++;
		cnt->c[CTCTL_CNT_REPLY_HIT]++;
		ctctl_touch(v, &p, skb->len, now, CTCTL_CT_F_SEEN_REPLY);
		return TC_ACT_OK;
	}
	return ctctl_miss(skb, &p, cnt, now);
}

#endif /* CTCTL_LIB_DATAPATH_H */
