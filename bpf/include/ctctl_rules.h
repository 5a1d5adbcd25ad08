/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ctctl's rules: the one definition of when an entry has expired, which entry
 * is the partner of a NAT half, and when a frontend translates.
 *
 * Pure functions over the ABI types, compiled into the BPF datapath, into the
 * stage program that re-checks every delete, and into ctctl itself (through
 * the C shim, which Swift calls directly): the datapath, the delete re-check
 * and ctctl's judge run the same code, so they can never disagree.
 */
#ifndef CTCTL_RULES_H
#define CTCTL_RULES_H

#include "ctctl_abi.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define CTCTL_PROTO_TCP 6
#define CTCTL_PROTO_UDP 17

/* Which idle timeout applies to an entry of protocol `proto` with `flags`
 * (enum ctctl_timeout): each half of a NAT pair by its own flags. */
static __always_inline __u32 ctctl_timeout_index(__u8 proto, __u32 flags)
{
	if (proto == CTCTL_PROTO_UDP)
		return CTCTL_TIMEOUT_UDP;
	if (proto == CTCTL_PROTO_TCP)
		return (flags & (CTCTL_CT_F_FIN | CTCTL_CT_F_RST)) ? CTCTL_TIMEOUT_TCP_CLOSING
								   : CTCTL_TIMEOUT_TCP;
	return CTCTL_TIMEOUT_OTHER;
}

/* Idle for longer than `timeout` at `now`. Another CPU may have stored a later
 * last-seen than our `now`: that is not idle. */
static __always_inline int ctctl_idle_past(__u64 last_seen, __u64 now, __u64 timeout)
{
	return now > last_seen && now - last_seen > timeout;
}

static __always_inline int ctctl_key_eq(const struct ctctl_ct_key *a, const struct ctctl_ct_key *b)
{
#ifdef __bpf__
	const __u64 *x = (const __u64 *)a;
	const __u64 *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
#else
	return __builtin_memcmp(a, b, sizeof(*a)) == 0;
#endif
}

static __always_inline __u8 ctctl_partner_type(__u8 type)
{
	return type == CTCTL_CT_NAT_FWD ? CTCTL_CT_NAT_REV : CTCTL_CT_NAT_FWD;
}

/* Is `pv` (the value found under a NAT half's partner key) the other half of
 * the pair whose half `key` has type `type` and created time `created`? The
 * other type, the same created time, and pointing back at `key`. */
static __always_inline int ctctl_is_partner(const struct ctctl_ct_value *pv,
					    const struct ctctl_ct_key *key, __u8 type,
					    __u64 created)
{
	return pv && type != CTCTL_CT_NORMAL && pv->created_ns == created &&
	       pv->type == ctctl_partner_type(type) && ctctl_key_eq(&pv->partner, key);
}

/* A NAT pair is one flow: its halves are refreshed by different packets (the
 * forward half by the client, the reverse half by replies), so a half that is
 * idle past its own timeout is still live while its partner is live by its
 * own. An entry is expired when it is idle past its timeout and it is not a
 * NAT half whose intact partner is live. The datapath treats a hit on such an
 * entry as a miss; ctctl calls it `expired`. */
static __always_inline int ctctl_expired_entry(int self_idle, __u8 type, int partner_ok,
					       int partner_idle)
{
	return self_idle && !(type != CTCTL_CT_NORMAL && partner_ok && !partner_idle);
}

/* Does a frontend with `backend_count` backends translate a new flow? Zero
 * backends drops; more than CTCTL_MAX_BACKENDS is refused (dropped and
 * counted) because the membership check is bounded by that number. */
static __always_inline int ctctl_frontend_active(__u32 backend_count)
{
	return backend_count > 0 && backend_count <= CTCTL_MAX_BACKENDS;
}

static __always_inline int ctctl_frontend_over_limit(__u32 backend_count)
{
	return backend_count > CTCTL_MAX_BACKENDS;
}

#endif /* CTCTL_RULES_H */
