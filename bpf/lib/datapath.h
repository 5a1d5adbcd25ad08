/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The packet path: conntrack first, NAT only on a miss (Calico's design, bug
 * included), plus the service-epoch re-check that repairs the bug on the next
 * packet when it is switched on at load.
 */
#ifndef CTCTL_LIB_DATAPATH_H
#define CTCTL_LIB_DATAPATH_H

#include "conntrack.h"
#include "icmp.h"
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

/* Translate a packet by the entry it matched: a forward half DNATs, a reverse
 * half rewrites the source back to the VIP, a normal entry passes. */
static __always_inline int ctctl_apply(struct __sk_buff *skb, const struct ctctl_pkt *p,
				       struct ctctl_counters *cnt, struct ctctl_ct_value *v,
				       __u64 now)
{
	ctctl_touch(v, p, skb->len, now, 0);
	if (v->type == CTCTL_CT_NAT_FWD)
		return ctctl_dnat(skb, p, cnt, v->nat_addr, v->nat_port);
	if (v->type == CTCTL_CT_NAT_REV && ctctl_rewrite(skb, p, 0, v->nat_addr, v->nat_port)) {
		cnt->c[CTCTL_CNT_DROP_REWRITE]++;
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

/* On a forward hit: is the reverse half still there? LRU eviction (or a
 * delete) can take it alone, and then every reply leaves untranslated, from the
 * backend's address, until something repairs the pair: restore it from the
 * forward half, on this packet. A normal entry on the reverse key (a reply that
 * came while the half was missing) or an old reverse half of this same flow is
 * replaced; a reverse half of another NAT flow (two services sharing a backend
 * and a client port) is left alone and counted.
 *
 * The check is a hash lookup, as costly as the hit's own (measured: +27% on a
 * forward hit), so it runs on the first packet after the flow was quiet for
 * CTCTL_REVERSE_CHECK_GAP_NS, where a reply is due, and on every
 * CTCTL_REVERSE_CHECK_EVERY-th packet of a busy flow. The lookup also keeps a
 * one-way flow's reverse half recently used, so LRU evicts it less. */
#define CTCTL_REVERSE_CHECK_GAP_NS 10000000ull /* 10 ms */
#define CTCTL_REVERSE_CHECK_EVERY 8
static __always_inline void ctctl_check_reverse(const struct ctctl_ct_key *key,
						const struct ctctl_ct_value *v,
						struct ctctl_counters *cnt, __u64 now)
{
#ifndef CTCTL_BENCH_NO_REVERSE_REPAIR
	if (now - v->last_seen_ns < CTCTL_REVERSE_CHECK_GAP_NS &&
	    (v->packets & (CTCTL_REVERSE_CHECK_EVERY - 1)))
		return;
	struct ctctl_ct_key rkey = v->partner;
	struct ctctl_ct_value *pv = bpf_map_lookup_elem(&ct, &rkey);

	if (pv) {
		if (ctctl_is_partner(pv, key, CTCTL_CT_NAT_FWD, v->created_ns))
			return;
		if (pv->type != CTCTL_CT_NORMAL &&
		    !(pv->type == CTCTL_CT_NAT_REV && ctctl_key_eq(&pv->partner, key))) {
			cnt->c[CTCTL_CNT_REVERSE_CONFLICT]++;
			return;
		}
		ctctl_delete_if(&rkey, pv->type, pv->created_ns);
	}
	if (ctctl_restore_reverse(key, v, now) == 0)
		cnt->c[CTCTL_CNT_REVERSE_RESTORED]++;
#endif
}

/* Another CPU created this flow's entry between our lookup and our insert
 * (BPF_NOEXIST failed): this packet goes by the winner's entry, as a hit. */
static __always_inline int ctctl_use_winner(struct __sk_buff *skb, const struct ctctl_pkt *p,
					    struct ctctl_counters *cnt, __u64 now)
{
	struct ctctl_ct_value *v = bpf_map_lookup_elem(&ct, &p->key);

	cnt->c[CTCTL_CNT_PAIR_RACE_LOST]++;
	if (!v) {
		/* and deleted again already: drop rather than guess */
		cnt->c[CTCTL_CNT_DROP_CT_WRITE]++;
		return TC_ACT_SHOT;
	}
	return ctctl_apply(skb, p, cnt, v, now);
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
	int err = ctctl_create_pair(&p->key, be, epoch, now, skb->len, flags);

	if (err == -CTCTL_EEXIST)
		return ctctl_use_winner(skb, p, cnt, now);
	if (err) {
		cnt->c[CTCTL_CNT_DROP_CT_WRITE]++;
		return TC_ACT_SHOT;
	}
	cnt->c[what]++;
	return ctctl_dnat(skb, p, cnt, be->addr, be->port);
}

/* A new normal flow (or a NAT flow turned normal): write its entry and pass. */
static __always_inline int ctctl_new_normal_flow(struct __sk_buff *skb, const struct ctctl_pkt *p,
						 struct ctctl_counters *cnt, __u32 epoch, __u64 now,
						 __u32 flags, enum ctctl_counter what)
{
	int err = ctctl_create_normal(&p->key, epoch, now, skb->len, flags);

	if (err == -CTCTL_EEXIST)
		return ctctl_use_winner(skb, p, cnt, now);
	if (err == 0)
		cnt->c[what]++;
	return TC_ACT_OK;
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
	return ctctl_new_normal_flow(skb, p, cnt, epoch, now, p->tcp_flags,
				     CTCTL_CNT_NORMAL_CREATED);
}

/* Epoch re-check of a normal entry: if its destination is now a service with
 * backends, the flow becomes a NAT flow right here (the normal entry deleted,
 * a new pair with a new created time). Otherwise its epoch is brought up to
 * date. */
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
	if (fe && ctctl_frontend_active(fe->backend_count)) {
		ctctl_delete_if(&p->key, CTCTL_CT_NORMAL, v->created_ns);
		return ctctl_new_nat_flow(skb, p, cnt, fe, epoch, now, CTCTL_CT_F_CONVERTED,
					  CTCTL_CNT_FLOW_CONVERTED);
	}
	WRITE_ONCE(v->epoch, epoch);
	ctctl_touch(v, p, skb->len, now, 0);
	return TC_ACT_OK;
}

/* Epoch re-check of a NAT forward entry: service gone -> the flow becomes
 * normal; backend no longer a member -> re-balanced to a live backend (the
 * forward half deleted, a new pair written, the old reverse half deleted);
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
	int verdict;

	cnt->c[CTCTL_CNT_EPOCH_RECHECK]++;
	if (fe && !ctctl_frontend_active(fe->backend_count))
		/* left as is: re-checked again once the service translates */
		return ctctl_drop_inactive(cnt, fe);
	if (fe && ctctl_backend_is_member(fe, v->nat_addr, v->nat_port, p->key.family)) {
		WRITE_ONCE(v->epoch, epoch);
		ctctl_check_reverse(&p->key, v, cnt, now);
		return ctctl_apply(skb, p, cnt, v, now);
	}
	ctctl_delete_if(&p->key, CTCTL_CT_NAT_FWD, old_created);
	if (!fe)
		verdict = ctctl_new_normal_flow(skb, p, cnt, epoch, now,
						p->tcp_flags | CTCTL_CT_F_CONVERTED,
						CTCTL_CNT_FLOW_UNNATED);
	else
		verdict = ctctl_new_nat_flow(skb, p, cnt, fe, epoch, now, CTCTL_CT_F_CONVERTED,
					     CTCTL_CNT_FLOW_REBALANCED);
	/* the old reverse half is another key (a CPU that lost the race deletes it too) */
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

	if (parsed == CTCTL_PARSE_ICMP)
		return ctctl_icmp(skb, &p, cnt);
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
		/* A SYN on the entry of a connection that closed (FIN or RST seen): a client
		 * reusing the same ports opens a new connection, which must not inherit the old
		 * one's closing state (and its short timeout). */
		int reopened = p.tcp_syn && v->type != CTCTL_CT_NAT_REV &&
			       (v->flags & (CTCTL_CT_F_FIN | CTCTL_CT_F_RST));

		if (reopened || ctctl_entry_expired(&p.key, v, now)) {
			__u8 type = v->type;
			__u64 created = v->created_ns;

			cnt->c[reopened ? CTCTL_CNT_TCP_REOPENED : CTCTL_CNT_EXPIRED_HIT]++;
			if (type == CTCTL_CT_NAT_FWD) {
				struct ctctl_ct_key partner = v->partner;

				ctctl_delete_partner(&p.key, created, &partner);
			}
			/* replaced as a new flow: deleted first, then written with BPF_NOEXIST */
			ctctl_delete_if(&p.key, type, created);
			return ctctl_miss(skb, &p, cnt, now);
		}
		cnt->c[CTCTL_CNT_CT_HIT]++;
		if (CTCTL_EPOCH_ON && v->type != CTCTL_CT_NAT_REV &&
		    v->epoch != READ_ONCE(ctctl_state.epoch))
			return v->type == CTCTL_CT_NAT_FWD
				       ? ctctl_recheck_fwd(skb, &p, cnt, v, now)
				       : ctctl_recheck_normal(skb, &p, cnt, v, now);
		if (v->type == CTCTL_CT_NAT_FWD)
			ctctl_check_reverse(&p.key, v, cnt, now);
		return ctctl_apply(skb, &p, cnt, v, now);
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
