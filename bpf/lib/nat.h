/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* NAT frontends and backends: lookup, backend choice, membership. */
#ifndef CTCTL_LIB_NAT_H
#define CTCTL_LIB_NAT_H

#include "maps.h"

static __always_inline struct ctctl_fe_value *ctctl_fe_lookup(const __u8 *addr, __be16 port,
							      __u8 proto, __u8 family)
{
	struct ctctl_fe_key fk = {};

	__builtin_memcpy(fk.addr, addr, 16);
	fk.port = port;
	fk.proto = proto;
	fk.family = family;
	return bpf_map_lookup_elem(&nat_fe, &fk);
}

static __always_inline __u32 ctctl_rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* A stable hash of the whole tuple (MurmurHash3 x86_32 over ten words), so a
 * flow always picks the same backend while the backend set is unchanged. */
static __always_inline __u32 ctctl_hash_key(const struct ctctl_ct_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0x63746374;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*k) / 4); i++) {
		__u32 x = w[i] * 0xcc9e2d51;

		x = ctctl_rotl32(x, 15) * 0x1b873593;
		h ^= x;
		h = ctctl_rotl32(h, 13) * 5 + 0xe6546b64;
	}
	h ^= sizeof(*k);
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* The backend for this flow, or NULL if the frontend names an ordinal that is
 * missing (a control-plane bug the counters report). */
static __always_inline struct ctctl_be_value *ctctl_pick_backend(const struct ctctl_fe_value *fe,
								 const struct ctctl_ct_key *key)
{
	struct ctctl_be_key bk = {
		.svc_id = fe->svc_id,
		.ordinal = ctctl_hash_key(key) % fe->backend_count,
	};
	return bpf_map_lookup_elem(&nat_be, &bk);
}

struct ctctl_member_ctx {
	__u32 svc_id;
	__be16 port;
	__u8 family;
	__u8 found;
	__u8 addr[16];
};

static long ctctl_member_cb(__u32 ordinal, void *data)
{
	struct ctctl_member_ctx *m = data;
	struct ctctl_be_key bk = {.svc_id = m->svc_id, .ordinal = ordinal};
	struct ctctl_be_value *be = bpf_map_lookup_elem(&nat_be, &bk);

	if (be && be->port == m->port && be->family == m->family &&
	    __builtin_memcmp(be->addr, m->addr, 16) == 0) {
		m->found = 1;
		return 1;
	}
	return 0;
}

/* Is addr:port still one of the service's backends? Runs only on an epoch
 * re-check, never on the plain hit path. */
static __always_inline int ctctl_backend_is_member(const struct ctctl_fe_value *fe,
						   const __u8 *addr, __be16 port, __u8 family)
{
	struct ctctl_member_ctx m = {.svc_id = fe->svc_id, .port = port, .family = family};
	__u32 n = fe->backend_count;

	__builtin_memcpy(m.addr, addr, 16);
	if (n > CTCTL_MAX_BACKENDS)
		n = CTCTL_MAX_BACKENDS;
	bpf_loop(n, ctctl_member_cb, &m, 0);
	return m.found;
}

#endif /* CTCTL_LIB_NAT_H */
