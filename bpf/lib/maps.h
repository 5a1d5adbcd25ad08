/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The dataplane's maps and globals (one translation unit: bpf/ctctl.bpf.c). */
#ifndef CTCTL_LIB_MAPS_H
#define CTCTL_LIB_MAPS_H

#include "ctctl_abi.h"

#define NSEC_PER_SEC 1000000000ull

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CTCTL_CT_DEFAULT_ENTRIES); /* set at load (--ct-size) */
	__type(key, struct ctctl_ct_key);
	__type(value, struct ctctl_ct_value);
} ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, CTCTL_NAT_FE_ENTRIES);
	__type(key, struct ctctl_fe_key);
	__type(value, struct ctctl_fe_value);
} nat_fe SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, CTCTL_NAT_BE_ENTRIES);
	__type(key, struct ctctl_be_key);
	__type(value, struct ctctl_be_value);
} nat_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ctctl_counters);
} counters SEC(".maps");

/* Written only by ctctl; declared here so that load creates it with the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, CTCTL_ATTACH_ENTRIES);
	__type(key, struct ctctl_attach_key);
	__type(value, struct ctctl_attach_value);
} attach SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, CTCTL_STAGE_SLOTS);
	__type(key, __u32);
	__type(value, struct ctctl_stage_slot);
} stage SEC(".maps");

/* Scratch space for building a conntrack value off the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ctctl_ct_value);
} scratch SEC(".maps");

/* Load-time knobs (.rodata, frozen): the verifier prunes what they switch off. */
const volatile struct ctctl_config ctctl_config = {
	.magic = CTCTL_MAGIC,
	.abi_version = CTCTL_ABI_VERSION,
	.flags = CTCTL_CFG_F_SERVICE_EPOCH,
	.timeout_ns =
		{
			[CTCTL_TIMEOUT_UDP] = 60 * NSEC_PER_SEC,
			[CTCTL_TIMEOUT_TCP] = 3600 * NSEC_PER_SEC,
			[CTCTL_TIMEOUT_TCP_CLOSING] = 30 * NSEC_PER_SEC,
			[CTCTL_TIMEOUT_OTHER] = 600 * NSEC_PER_SEC,
		},
};

/* Live state (.data, mmap-able): ctctl bumps the epoch with atomic adds (a
 * sequence counter: even when no write is in progress). */
struct ctctl_state ctctl_state = {
	.epoch = 2,
	.next_svc_id = 1,
};

#define CTCTL_EPOCH_ON (ctctl_config.flags & CTCTL_CFG_F_SERVICE_EPOCH)

static __always_inline struct ctctl_counters *ctctl_counters_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&counters, &zero);
}

static __always_inline struct ctctl_ct_value *ctctl_scratch_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

#endif /* CTCTL_LIB_MAPS_H */
