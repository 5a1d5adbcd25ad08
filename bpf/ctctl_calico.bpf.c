// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* ctctl's compare-and-delete for Calico's conntrack maps: thin entry points, logic in
 * lib/calico_stage.h, the contract in include/ctctl_calico.h. Nothing here is pinned: ctctl
 * loads this object for one command, with Calico's conntrack maps in place of ct_v4 and
 * ct_v6 (bpf_map__reuse_fd), and unloads it when the command ends. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ctctl_abi.h"
#include "ctctl_calico.h"

/* Replaced by Calico's own maps (type, size and flags come from them); a family Calico
 * does not run keeps this one-entry placeholder. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__uint(key_size, CALICO_V4_CT_KEY_SIZE);
	__uint(value_size, CALICO_V4_CT_VALUE_SIZE);
} ct_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__uint(key_size, CALICO_V6_CT_KEY_SIZE);
	__uint(value_size, CALICO_V6_CT_VALUE_SIZE);
} ct_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, CTCTL_CALICO_STAGE_SLOTS);
	__type(key, __u32);
	__type(value, struct ctctl_calico_slot);
} stage SEC(".maps");

#include "lib/calico_stage.h"

SEC("syscall")
int calico_stage_v4(struct ctctl_stage_ctx *ctx)
{
	return calico_stage_run(ctx, &ct_v4, 0);
}

SEC("syscall")
int calico_stage_v6(struct ctctl_stage_ctx *ctx)
{
	return calico_stage_run(ctx, &ct_v6, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
