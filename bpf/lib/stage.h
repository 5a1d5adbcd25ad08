/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Compare-and-delete for ctctl: check staged conntrack keys against the
 * identity (type, created time) ctctl saw when it read them, and delete only
 * those that still match, together with their NAT partner if the partner still
 * points back at them. docs/heal.md states the guarantee and its window.
 */
#ifndef CTCTL_LIB_STAGE_H
#define CTCTL_LIB_STAGE_H

#include "conntrack.h"

struct ctctl_stage_loop {
	__u32 op;
	__u32 done;
	__u32 deleted;
};

static __always_inline __u8 ctctl_partner_type(__u8 type)
{
	return type == CTCTL_CT_NAT_FWD ? CTCTL_CT_NAT_REV : CTCTL_CT_NAT_FWD;
}

/* Is `pv` the other half of the pair whose half `key` has type `type` and created time `created`?
 */
static __always_inline int ctctl_is_partner(const struct ctctl_ct_value *pv,
					    const struct ctctl_ct_key *key, __u8 type,
					    __u64 created)
{
	return pv && pv->created_ns == created && pv->type == ctctl_partner_type(type) &&
	       ctctl_key_eq(&pv->partner, key);
}

static __always_inline __u8 ctctl_stage_probe(struct ctctl_stage_slot *s)
{
	if (s->type == CTCTL_CT_NORMAL)
		return 0;
	struct ctctl_ct_value *pv = bpf_map_lookup_elem(&ct, &s->partner);

	if (!ctctl_is_partner(pv, &s->key, s->type, s->created_ns))
		return 0;
	s->partner_last_seen_ns = pv->last_seen_ns;
	return CTCTL_STAGE_R_PARTNER_OK;
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
	int partner_ok = 0;
	__u8 r = CTCTL_STAGE_R_MATCH;

	if (s->type != CTCTL_CT_NORMAL) {
		partner_ok = ctctl_is_partner(bpf_map_lookup_elem(&ct, &partner), &s->key, s->type,
					      s->created_ns);
		if (partner_ok)
			r |= CTCTL_STAGE_R_PARTNER_OK;
	}
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
	s->result =
		lc->op == CTCTL_STAGE_OP_PROBE ? ctctl_stage_probe(s) : ctctl_stage_delete(s, lc);
	lc->done++;
	return 0;
}

static __always_inline int ctctl_stage_run(struct ctctl_stage_ctx *ctx)
{
	struct ctctl_stage_loop lc = {.op = ctx->op};
	__u32 count = ctx->count;

	if (ctx->op != CTCTL_STAGE_OP_DELETE && ctx->op != CTCTL_STAGE_OP_PROBE)
		return -1;
	if (count > CTCTL_STAGE_SLOTS)
		count = CTCTL_STAGE_SLOTS;
	bpf_loop(count, ctctl_stage_one, &lc, 0);
	ctx->done = lc.done;
	ctx->deleted = lc.deleted;
	return 0;
}

#endif /* CTCTL_LIB_STAGE_H */
