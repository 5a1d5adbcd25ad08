/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Calico's eBPF conntrack and NAT map layouts, as ctctl reads and repairs them: byte offsets
 * of the fields ctctl uses, for IPv4 and IPv6. The one definition, shared by ctctl's
 * compare-and-delete program for Calico's maps (bpf/calico_stage.bpf.c) and the Swift side
 * (Sources/ConntrackKit/Layouts/Calico, through the shim), where maps with BTF are checked
 * against it member by member at open.
 *
 * Where IPv4 and IPv6 differ there are two constants, CALICO_V4_* and CALICO_V6_*.
 *
 * These are facts about Calico (projectcalico/calico felix/bpf-gpl conntrack_types.h,
 * nat_types.h, routes.h at v3.29.7 and 87c15906), measured with ../shared/calico/calico-lab
 * `layout`; no Calico code is in this file.
 */
#ifndef CTCTL_CALICO_H
#define CTCTL_CALICO_H

#include <linux/types.h>

/* ---- struct calico_ct_key ---- */
#define CALICO_V4_CT_KEY_SIZE 16
#define CALICO_V6_CT_KEY_SIZE 40
#define CALICO_CT_KEY_PROTO 0  /* u32, host order */
#define CALICO_CT_KEY_ADDR_A 4 /* network order */
#define CALICO_V4_CT_KEY_ADDR_B 8
#define CALICO_V6_CT_KEY_ADDR_B 20
#define CALICO_V4_CT_KEY_PORT_A 12 /* u16, host order */
#define CALICO_V6_CT_KEY_PORT_A 36
#define CALICO_V4_CT_KEY_PORT_B 14
#define CALICO_V6_CT_KEY_PORT_B 38

/* ---- struct calico_ct_value ---- */
#define CALICO_V4_CT_VALUE_SIZE 88
#define CALICO_V6_CT_VALUE_SIZE 128
#define CALICO_CT_WORD0 0     /* u64: created (v3.29) or rst_seen (v3.30 on) */
#define CALICO_CT_LAST_SEEN 8 /* u64, CLOCK_MONOTONIC ns */
#define CALICO_CT_TYPE 16     /* u8 */
#define CALICO_CT_FLAGS 17    /* u8: flag bits 0-7 */
#define CALICO_CT_FLAGS3 18   /* u8: bits 16-23 (v3.30 on; padding before) */
#define CALICO_CT_FLAGS4 19   /* u8: bits 24-31 (v3.30 on; padding before) */
#define CALICO_CT_FLAGS2 23   /* u8: bits 8-15 */
#define CALICO_CT_LEG_AB 24   /* struct calico_ct_leg (NORMAL, NAT_REV) */
#define CALICO_CT_LEG_BA 48
#define CALICO_CT_TUN_IP 72	/* NAT_REV */
#define CALICO_V4_CT_ORIG_IP 76 /* NAT_REV: the VIP */
#define CALICO_V6_CT_ORIG_IP 88
#define CALICO_V4_CT_ORIG_PORT 80 /* u16, host order */
#define CALICO_V6_CT_ORIG_PORT 104
#define CALICO_V4_CT_ORIG_SPORT 82
#define CALICO_V6_CT_ORIG_SPORT 106
#define CALICO_V4_CT_ORIG_SIP 84
#define CALICO_V6_CT_ORIG_SIP 108
#define CALICO_V4_CT_ORIG_END 88 /* end of orig_sip */
#define CALICO_V6_CT_ORIG_END 124
#define CALICO_CT_NAT_REV_KEY 24  /* NAT_FWD: the NAT_REV's key (union with the legs) */
#define CALICO_V4_CT_NAT_SPORT 40 /* NAT_FWD: u16 */
#define CALICO_V6_CT_NAT_SPORT 64

/* ---- struct calico_ct_leg (24 bytes) ---- */
#define CALICO_LEG_SIZE 24
#define CALICO_LEG_BYTES 0    /* u64 */
#define CALICO_LEG_PACKETS 8  /* u32 */
#define CALICO_LEG_SEQNO 12   /* u32 */
#define CALICO_LEG_BITS 16    /* u32 bitfield word */
#define CALICO_LEG_IFINDEX 20 /* u32 */

/* ---- NAT frontend (LPM trie), backend, routes ---- */
#define CALICO_V4_FE_KEY_SIZE 16
#define CALICO_V6_FE_KEY_SIZE 40
#define CALICO_FE_VALUE_SIZE 20
#define CALICO_V4_FE_PORT 8
#define CALICO_V6_FE_PORT 20
#define CALICO_V4_FE_PROTO 10
#define CALICO_V6_FE_PROTO 22
#define CALICO_V4_FE_SADDR 11
#define CALICO_V6_FE_SADDR 23
#define CALICO_V4_FE_PREFIX_NO_SOURCE 56
#define CALICO_V6_FE_PREFIX_NO_SOURCE 152
#define CALICO_V4_FE_PREFIX_FULL 88
#define CALICO_V6_FE_PREFIX_FULL 280
#define CALICO_BE_KEY_SIZE 8
#define CALICO_V4_BE_VALUE_SIZE 8
#define CALICO_V6_BE_VALUE_SIZE 20
#define CALICO_V4_BE_PORT 4
#define CALICO_V6_BE_PORT 16
#define CALICO_V4_RT_KEY_SIZE 8
#define CALICO_V6_RT_KEY_SIZE 20
#define CALICO_V4_RT_VALUE_SIZE 8
#define CALICO_V6_RT_VALUE_SIZE 20

/* entry types */
#define CALICO_CT_NORMAL 0
#define CALICO_CT_NAT_FWD 1
#define CALICO_CT_NAT_REV 2

/* ---- ctctl's compare-and-delete on Calico's conntrack maps (bpf/ctctl_calico.bpf.c) ----
 *
 * ctctl stages up to CTCTL_CALICO_STAGE_SLOTS entries in the (unpinned) array map `stage`
 * and runs the program of the family (calico_stage_v4/_v6, over Calico's own conntrack map,
 * reused by fd) once through BPF_PROG_TEST_RUN with a struct ctctl_stage_ctx (ctctl_abi.h).
 * For each slot the program deletes the entry only if it is still the entry ctctl judged:
 * the same type and NAT linkage (a NAT_FWD's nat_rev_key, a NAT_REV's original addresses),
 * and the rule still holds where the kernel can tell (half-pair: the partner still missing;
 * expired: last_seen unchanged). A NAT pair goes NAT_REV first, so a NAT_REV is never left
 * alone. Results use CTCTL_STAGE_R_* (ctctl_abi.h). The frontend a missed-nat or orphan-nat
 * verdict depends on is re-checked by ctctl right before the run: an LPM trie cannot be
 * used from this (sleepable) program. */
#define CTCTL_CALICO_STAGE_SLOTS 256u

/* ctctl_calico_slot.flags */
#define CTCTL_CALICO_SLOT_PARTNER 0x1u	/* `partner` holds the NAT partner's key */
#define CTCTL_CALICO_SLOT_PARTNER2 0x2u /* `partner2` holds another key it may have */

struct ctctl_calico_slot {
	__u8 key[40];	   /* the entry's key as stored (16 bytes used for IPv4) */
	__u8 partner[40];  /* its NAT partner's key (CTCTL_CALICO_SLOT_PARTNER) */
	__u8 partner2[40]; /* a NAT_REV's NAT_FWD with source port 0 (Calico's port-conflict path)
			    */
	__u8 expect[40];   /* NAT_FWD: its nat_rev_key; NAT_REV: orig_ip .. orig_sip */
	__u64 last_seen;   /* the entry's last_seen as judged (expired) */
	__u64 partner_last_seen; /* its partner's (expired) */
	__u8 type;		 /* CALICO_CT_* as judged */
	__u8 rule;		 /* enum ctctl_rule it was judged by (ctctl_abi.h) */
	__u8 flags;		 /* CTCTL_CALICO_SLOT_* */
	__u8 result;		 /* out: CTCTL_STAGE_R_* */
	__u8 pad[4];
};
_Static_assert(sizeof(struct ctctl_calico_slot) == 184, "ctctl_calico_slot is 184 bytes");

/* ---- ctctl's watch of Calico's services (the watching heal) ----
 *
 * Calico's maps have no service epoch, and a batch read of an LPM trie costs the kernel a
 * key walk, an allocation and a lookup per key. So the watching heal reads the frontends and
 * backends in full only when something changed, and in between, every poll, stages the keys
 * it last read (frontend keys in `watch_fe`, backend keys {id, ordinal} in `watch_be`, both
 * unpinned arrays) and runs calico_watch_v4/_v6 (TC programs, through BPF_PROG_TEST_RUN with a
 * dummy frame; a TC program may use an LPM trie, a sleepable syscall program may not). The
 * program looks up each staged key in Calico's map of the family (reused by fd) and folds
 * whether it was found, and its value, into a digest, in order. Slots [fe_start, fe_end) and
 * [be_start, be_end) of the arrays are the family's; the digests come back in its
 * ctctl_calico_watch (array `watch_ctl`, index 0 IPv4, 1 IPv6). A key added to a trie is not
 * among the staged keys: ctctl sees it by the trie's size (its fdinfo `memlock`, which counts
 * entries from Linux 6.4 on). */
#define CTCTL_CALICO_WATCH_FE 65536u
#define CTCTL_CALICO_WATCH_BE 262144u

struct ctctl_calico_watch_key {
	__u8 key[40]; /* a frontend key as Calico stores it (16 bytes used for IPv4) */
};

struct ctctl_calico_watch {
	__u32 fe_start;
	__u32 fe_end;
	__u32 be_start;
	__u32 be_end;
	__u64 fe_digest; /* out */
	__u64 be_digest; /* out; only when want_be */
	__u32 fe_found;	 /* out */
	__u32 be_found;	 /* out */
	__u32 want_be;
	__u32 pad;
};
_Static_assert(sizeof(struct ctctl_calico_watch) == 48, "ctctl_calico_watch is 48 bytes");

#endif
