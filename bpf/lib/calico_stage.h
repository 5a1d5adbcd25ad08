/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Compare-and-delete on Calico's conntrack maps (ctctl_calico.h has the contract): each
 * staged entry is deleted only if it is still what ctctl judged, its NAT partner with it,
 * NAT_REV first. `v6` is a compile-time constant in each caller, so the offsets fold.
 */
#ifndef CTCTL_LIB_CALICO_STAGE_H
#define CTCTL_LIB_CALICO_STAGE_H

#include "ctctl_abi.h"
#include "ctctl_calico.h"

struct calico_stage_loop {
	void *ct;
	__u32 done;
	__u32 deleted;
};

static __always_inline int calico_bytes_equal(const __u8 *a, const __u8 *b, int n)
{
	int i;

#pragma unroll
	for (i = 0; i < 40; i++)
		if (i < n && a[i] != b[i])
			return 0;
	return 1;
}

static __always_inline __u64 calico_last_seen(const __u8 *v)
{
	return *(const __u64 *)(v + CALICO_CT_LAST_SEEN);
}

/* Is the entry at `pkey` (value `p`) the NAT partner of the staged entry? A NAT_FWD's partner
 * is the NAT_REV at its nat_rev_key; a NAT_REV's is a NAT_FWD whose nat_rev_key is this key. */
static __always_inline int calico_is_partner(const struct ctctl_calico_slot *s, const __u8 *p,
					     int v6)
{
	int ks = v6 ? CALICO_V6_CT_KEY_SIZE : CALICO_V4_CT_KEY_SIZE;

	if (!p)
		return 0;
	if (s->type == CALICO_CT_NAT_FWD)
		return p[CALICO_CT_TYPE] == CALICO_CT_NAT_REV;
	return p[CALICO_CT_TYPE] == CALICO_CT_NAT_FWD &&
	       calico_bytes_equal(p + CALICO_CT_NAT_REV_KEY, s->key, ks);
}

static __always_inline __u8 calico_stage_delete(struct ctctl_calico_slot *s,
						struct calico_stage_loop *lc, int v6)
{
	int ks = v6 ? CALICO_V6_CT_KEY_SIZE : CALICO_V4_CT_KEY_SIZE;
	int orig = v6 ? CALICO_V6_CT_ORIG_IP : CALICO_V4_CT_ORIG_IP;
	int orig_len = (v6 ? CALICO_V6_CT_ORIG_END : CALICO_V4_CT_ORIG_END) - orig;
	__u8 *v = bpf_map_lookup_elem(lc->ct, s->key);
	__u8 *p = NULL;
	int partner_ok = 0;
	__u8 r = CTCTL_STAGE_R_MATCH;

	if (!v)
		return CTCTL_STAGE_R_GONE;
	/* the identity: the same type, and a NAT entry's linkage unchanged */
	if (v[CALICO_CT_TYPE] != s->type)
		return CTCTL_STAGE_R_CHANGED;
	if (s->type == CALICO_CT_NAT_FWD &&
	    !calico_bytes_equal(v + CALICO_CT_NAT_REV_KEY, s->expect, ks))
		return CTCTL_STAGE_R_CHANGED;
	if (s->type == CALICO_CT_NAT_REV && !calico_bytes_equal(v + orig, s->expect, orig_len))
		return CTCTL_STAGE_R_CHANGED;

	if (s->flags & CTCTL_CALICO_SLOT_PARTNER) {
		p = bpf_map_lookup_elem(lc->ct, s->partner);
		partner_ok = calico_is_partner(s, p, v6);
	}
	if (!partner_ok && (s->flags & CTCTL_CALICO_SLOT_PARTNER2)) {
		p = bpf_map_lookup_elem(lc->ct, s->partner2);
		partner_ok = calico_is_partner(s, p, v6);
		if (partner_ok)
			__builtin_memcpy(s->partner, s->partner2, sizeof(s->partner));
	}
	if (partner_ok)
		r |= CTCTL_STAGE_R_PARTNER_OK;

	/* the rule, where the kernel can tell */
	switch (s->rule) {
	case CTCTL_RULE_HALF_PAIR:
		if (partner_ok)
			return r | CTCTL_STAGE_R_RULE_FAILED;
		break;
	case CTCTL_RULE_EXPIRED:
		/* a packet since the scan (on either half) makes it live again */
		if (calico_last_seen(v) != s->last_seen ||
		    (partner_ok && calico_last_seen(p) != s->partner_last_seen))
			return r | CTCTL_STAGE_R_RULE_FAILED;
		break;
	}

	/* a pair: the NAT_REV first, so that a NAT_REV is never left without its NAT_FWD */
	if (partner_ok && s->type == CALICO_CT_NAT_FWD) {
		if (bpf_map_delete_elem(lc->ct, s->partner) == 0) {
			r |= CTCTL_STAGE_R_PARTNER_DELETED;
			lc->deleted++;
		}
		if (bpf_map_delete_elem(lc->ct, s->key) == 0) {
			r |= CTCTL_STAGE_R_DELETED;
			lc->deleted++;
		}
		return r;
	}
	if (bpf_map_delete_elem(lc->ct, s->key) == 0) {
		r |= CTCTL_STAGE_R_DELETED;
		lc->deleted++;
	}
	if (partner_ok && bpf_map_delete_elem(lc->ct, s->partner) == 0) {
		r |= CTCTL_STAGE_R_PARTNER_DELETED;
		lc->deleted++;
	}
	return r;
}

#define CALICO_STAGE_ONE(name, v6)                                                                 \
	static long name(__u32 i, void *data)                                                      \
	{                                                                                          \
		struct calico_stage_loop *lc = data;                                               \
		struct ctctl_calico_slot *s = bpf_map_lookup_elem(&stage, &i);                     \
		if (!s)                                                                            \
			return 1;                                                                  \
		s->result = calico_stage_delete(s, lc, v6);                                        \
		lc->done++;                                                                        \
		return 0;                                                                          \
	}

CALICO_STAGE_ONE(calico_stage_one_v4, 0)
CALICO_STAGE_ONE(calico_stage_one_v6, 1)

static __always_inline int calico_stage_run(struct ctctl_stage_ctx *ctx, void *ct, int v6)
{
	struct calico_stage_loop lc = {.ct = ct};
	__u32 count = ctx->count;

	if (ctx->op != CTCTL_STAGE_OP_DELETE)
		return -1;
	if (count > CTCTL_CALICO_STAGE_SLOTS)
		count = CTCTL_CALICO_STAGE_SLOTS;
	bpf_loop(count, v6 ? calico_stage_one_v6 : calico_stage_one_v4, &lc, 0);
	ctx->done = lc.done;
	ctx->deleted = lc.deleted;
	return 0;
}

#endif /* CTCTL_LIB_CALICO_STAGE_H */
