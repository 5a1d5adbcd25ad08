// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* ctctl's compare-and-delete for Calico's conntrack maps, and its watch of Calico's services:
 * thin entry points, logic in lib/calico_stage.h and lib/calico_watch.h, the contract in
 * include/ctctl_calico.h. Nothing here is pinned: ctctl loads this object with Calico's maps
 * in place of ct_v4/ct_v6 (a command that deletes) or fe_v4/fe_v6/be_v4/be_v6 (the watching
 * heal) through bpf_map__reuse_fd, and unloads it when it ends. */
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

/* The watch (ctctl_calico.h): Calico's frontend tries and backend maps, reused by fd like
 * the conntrack maps. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__uint(key_size, CALICO_V4_FE_KEY_SIZE);
	__uint(value_size, CALICO_FE_VALUE_SIZE);
} fe_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__uint(key_size, CALICO_V6_FE_KEY_SIZE);
	__uint(value_size, CALICO_FE_VALUE_SIZE);
} fe_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, CALICO_BE_KEY_SIZE);
	__uint(value_size, CALICO_V4_BE_VALUE_SIZE);
} be_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, CALICO_BE_KEY_SIZE);
	__uint(value_size, CALICO_V6_BE_VALUE_SIZE);
} be_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, CTCTL_CALICO_WATCH_FE);
	__type(key, __u32);
	__type(value, struct ctctl_calico_watch_key);
} watch_fe SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, CTCTL_CALICO_WATCH_BE);
	__type(key, __u32);
	__type(value, __u64);
} watch_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct ctctl_calico_watch);
} watch_ctl SEC(".maps");

#include "lib/calico_stage.h"
#include "lib/calico_watch.h"

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

SEC("tc")
int calico_watch_v4(struct __sk_buff *skb)
{
	return calico_watch_run(&fe_v4, &be_v4, 0);
}

SEC("tc")
int calico_watch_v6(struct __sk_buff *skb)
{
	return calico_watch_run(&fe_v6, &be_v6, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
