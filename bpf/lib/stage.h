/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Compare-and-delete for ctctl: for each staged conntrack key, check that the
 * entry still has the identity (type, created time) ctctl saw when it read it
 * and that the rule ctctl judged it by still holds, evaluated here with the
 * datapath's own functions; delete only then, together with its NAT partner
 * if the partner still points back at it. docs/heal.md states the guarantee
 * and its window.
 */
#ifndef CTCTL_LIB_STAGE_H
#define CTCTL_LIB_STAGE_H

#include "conntrack.h"
#include "nat.h"

struct ctctl_stage_loop {
	__u32 done;
	__u32 deleted;
};

/* Does the rule the caller judged entry `v` (under `key`) by still hold? */
static __always_inline int ctctl_stage_rule_holds(const struct ctctl_stage_slot *s,
						  const struct ctctl_ct_value *v,
						  const struct ctctl_ct_value *pv, int partner_ok)
{
	const struct ctctl_ct_key *key = &s->key;
	struct ctctl_fe_value *fe;
	__u64 now;

	switch (s->rule) {
	case CTCTL_RULE_REQUESTED:
		return 1;
	case CTCTL_RULE_MISSED_NAT:
		/* still a normal entry (the identity says so) to a service that translates */
		fe = ctctl_fe_lookup(key->dst, key->dport, key->proto, key->family);
		return fe && ctctl_frontend_active(fe->backend_count);
	case CTCTL_RULE_ORPHAN_NAT:
		/* the backend is no longer one of the service's backends */
		fe = ctctl_fe_lookup(v->svc_addr, v->svc_port, v->svc_proto, key->family);
		if (!fe)
			return 1;
		if (ctctl_frontend_over_limit(fe->backend_count))
			return 0; /* never judged: see ctctl_frontend_active */
		if (v->type == CTCTL_CT_NAT_FWD)
			return !ctctl_backend_is_member(fe, v->nat_addr, v->nat_port, key->family);
		return !ctctl_backend_is_member(fe, key->src, key->sport, key->family);
	case CTCTL_RULE_HALF_PAIR:
		return !partner_ok;
	case CTCTL_RULE_EXPIRED:
		/* ctctl_entry_expired, with the partner this run already looked up */
		now = bpf_ktime_get_ns();
		return ctctl_expired_entry(ctctl_idle(v, key->proto, now), v->type, partner_ok,
					   partner_ok && pv ? ctctl_idle(pv, key->proto, now) : 0);
	}
	return 0;
}

static __always_inline __u8 ctctl_stage_delete(struct ctctl_stage_slot *s,
					       struct ctctl_stage_loop *lc)
{
	struct ctctl_ct_value *v = bpf_map_lookup_elem(&ct, &s->key);

	if (!v)
		return CTCTL_STAGE_R_GONE;
	if (v->type != s->type || v->created_ns != s->created_ns)
		return CTCTL_STAGE_R_CHANGED;

	struct ctctl_ct_key partner = v->partner;
	struct ctctl_ct_value *pv = NULL;
	int partner_ok = 0;
	__u8 r = CTCTL_STAGE_R_MATCH;

	if (s->type != CTCTL_CT_NORMAL) {
		pv = bpf_map_lookup_elem(&ct, &partner);
		partner_ok = ctctl_is_partner(pv, &s->key, s->type, s->created_ns);
		if (partner_ok)
			r |= CTCTL_STAGE_R_PARTNER_OK;
	}
	if (!ctctl_stage_rule_holds(s, v, pv, partner_ok))
		return r | CTCTL_STAGE_R_RULE_FAILED;
	if (bpf_map_delete_elem(&ct, &s->key) == 0) {
		r |= CTCTL_STAGE_R_DELETED;
		lc->deleted++;
	}
	if (partner_ok && bpf_map_delete_elem(&ct, &partner) == 0) {
		r |= CTCTL_STAGE_R_PARTNER_DELETED;
		lc->deleted++;
	}
	return r;
}

static long ctctl_stage_one(__u32 i, void *data)
{
	struct ctctl_stage_loop *lc = data;
	struct ctctl_stage_slot *s = bpf_map_lookup_elem(&stage, &i);

	if (!s)
		return 1;
	s->result = ctctl_stage_delete(s, lc);
	lc->done++;
	return 0;
}

static __always_inline int ctctl_stage_run(struct ctctl_stage_ctx *ctx)
{
	struct ctctl_stage_loop lc = {};
	__u32 count = ctx->count;

	if (ctx->op != CTCTL_STAGE_OP_DELETE)
		return -1;
	if (count > CTCTL_STAGE_SLOTS)
		count = CTCTL_STAGE_SLOTS;
	bpf_loop(count, ctctl_stage_one, &lc, 0);
	ctx->done = lc.done;
	ctx->deleted = lc.deleted;
	return 0;
}

#endif /* CTCTL_LIB_STAGE_H */
