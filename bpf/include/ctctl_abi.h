/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ctctl map ABI: the one definition of every pinned map's key and value.
 *
 * Compiled into the BPF objects (bpf/ctctl.bpf.c) and into the C shim
 * (Sources/CLibBPF), so the datapath and ctctl can never disagree on a layout.
 * Every struct has a _Static_assert on its size; ctctl checks type, key size,
 * value size and CTCTL_ABI_VERSION when it opens a pin directory and refuses
 * maps that do not match. Bump CTCTL_ABI_VERSION on any change here.
 *
 * Byte order: addresses and ports are network byte order (as on the wire);
 * everything else is host byte order. docs/maps.md documents every field and
 * which side (datapath or ctctl) writes it.
 */
#ifndef CTCTL_ABI_H
#define CTCTL_ABI_H

#include <linux/types.h>

#define CTCTL_ABI_VERSION 2u
#define CTCTL_MAGIC 0x6374636cu /* "ctcl" */

/* Address families as stored in keys (not AF_*: those differ per OS). */
#define CTCTL_FAMILY_V4 4
#define CTCTL_FAMILY_V6 6

/* Default and limits. */
#define CTCTL_CT_DEFAULT_ENTRIES 524288u
#define CTCTL_NAT_FE_ENTRIES 16384u
#define CTCTL_NAT_BE_ENTRIES 262144u
#define CTCTL_MAX_BACKENDS 256u /* per service; bounds the datapath's membership loop */
#define CTCTL_ATTACH_ENTRIES 256u
#define CTCTL_STAGE_SLOTS 1024u /* entries checked per run of the stage program */

/* Pinned object names inside the pin directory. */
#define CTCTL_PIN_CT "ct"
#define CTCTL_PIN_NAT_FE "nat_fe"
#define CTCTL_PIN_NAT_BE "nat_be"
#define CTCTL_PIN_COUNTERS "counters"
#define CTCTL_PIN_ATTACH "attach"
#define CTCTL_PIN_STAGE "stage"
#define CTCTL_PIN_CONFIG "config"
#define CTCTL_PIN_STATE "state"
#define CTCTL_PIN_PROG_TC "prog_tc"
#define CTCTL_PIN_PROG_STAGE "prog_stage"

/* TC filter identity used for attach/detach (clsact ingress). */
#define CTCTL_TC_HANDLE 0xc7c7u
#define CTCTL_TC_PRIORITY 7u

/* ------------------------------------------------------------------------ */
/* Conntrack map "ct": BPF_MAP_TYPE_LRU_HASH, size set at load.              */
/*                                                                           */
/* One map for both families. An IPv4 address fills bytes 0..3 of the       */
/* 16-byte field, bytes 4..15 are zero; `family` tells which it is.          */
/* Every entry is keyed by the tuple of the packets it matches, as seen at   */
/* the node: a NAT flow has two entries (forward: client -> VIP, reverse:    */
/* backend -> client) pointing at each other; a normal flow has one entry    */
/* keyed by its original direction, and replies match it through the        */
/* reversed tuple.                                                           */
/* ------------------------------------------------------------------------ */

struct ctctl_ct_key {
	__u8 src[16]; /* network order */
	__u8 dst[16]; /* network order */
	__be16 sport; /* network order */
	__be16 dport; /* network order */
	__u8 proto;   /* IPPROTO_UDP, IPPROTO_TCP, ... */
	__u8 family;  /* CTCTL_FAMILY_V4 or CTCTL_FAMILY_V6 */
	__u16 pad;    /* always zero */
};
_Static_assert(sizeof(struct ctctl_ct_key) == 40, "ctctl_ct_key is 40 bytes");

enum ctctl_ct_type {
	CTCTL_CT_NORMAL = 0,  /* no translation */
	CTCTL_CT_NAT_FWD = 1, /* client -> VIP: rewrite destination to the backend */
	CTCTL_CT_NAT_REV = 2, /* backend -> client: rewrite source back to the VIP */
};

/* ctctl_ct_value.flags (datapath sets them with atomic OR). */
#define CTCTL_CT_F_FIN 0x1u	   /* TCP FIN seen: closing timeout applies */
#define CTCTL_CT_F_RST 0x2u	   /* TCP RST seen: closing timeout applies */
#define CTCTL_CT_F_SEEN_REPLY 0x4u /* a reply matched this normal entry */
#define CTCTL_CT_F_CONVERTED 0x8u  /* created by the epoch re-check (converted or re-balanced) */

struct ctctl_ct_value {
	__u64 created_ns;   /* bpf_ktime_get_ns() at creation; with `type`, the entry's identity */
	__u64 last_seen_ns; /* bpf_ktime_get_ns() of the last packet that matched */
	__u64 packets;	    /* packets that matched this entry */
	__u64 bytes;	    /* bytes (skb->len) that matched this entry */
	__u32 epoch;	    /* service epoch the entry was created (or last re-checked) under */
	__u32 flags;	    /* CTCTL_CT_F_* */
	__u8 type;	    /* enum ctctl_ct_type */
	__u8 svc_proto;	    /* NAT only: service protocol (same as key.proto) */
	__be16 nat_port;    /* NAT only: fwd = backend port, rev = VIP port */
	__be16 svc_port;    /* NAT only: service port */
	__u16 pad;	    /* always zero */
	__u8 nat_addr[16];  /* NAT only: fwd = backend address, rev = VIP */
	__u8 svc_addr[16];  /* NAT only: service VIP */
	struct ctctl_ct_key partner; /* NAT only: key of the other half of the pair */
};
_Static_assert(sizeof(struct ctctl_ct_value) == 120, "ctctl_ct_value is 120 bytes");

/* ------------------------------------------------------------------------ */
/* NAT frontend map "nat_fe": BPF_MAP_TYPE_HASH (no prealloc).               */
/* ------------------------------------------------------------------------ */

struct ctctl_fe_key {
	__u8 addr[16]; /* VIP, network order */
	__be16 port;   /* network order */
	__u8 proto;
	__u8 family;
};
_Static_assert(sizeof(struct ctctl_fe_key) == 20, "ctctl_fe_key is 20 bytes");

struct ctctl_fe_value {
	__u32 svc_id;	     /* key into nat_be, assigned by ctctl */
	__u32 backend_count; /* ordinals 0..backend_count-1 are valid in nat_be */
	__u32 flags;	     /* reserved, zero */
	__u32 pad;
};
_Static_assert(sizeof(struct ctctl_fe_value) == 16, "ctctl_fe_value is 16 bytes");

/* ------------------------------------------------------------------------ */
/* NAT backend map "nat_be": BPF_MAP_TYPE_HASH (no prealloc).                */
/* ------------------------------------------------------------------------ */

struct ctctl_be_key {
	__u32 svc_id;
	__u32 ordinal;
};
_Static_assert(sizeof(struct ctctl_be_key) == 8, "ctctl_be_key is 8 bytes");

struct ctctl_be_value {
	__u8 addr[16]; /* network order */
	__be16 port;   /* network order */
	__u8 family;
	__u8 pad;
	__u32 pad2;
};
_Static_assert(sizeof(struct ctctl_be_value) == 24, "ctctl_be_value is 24 bytes");

/* ------------------------------------------------------------------------ */
/* Dataplane configuration "config": the object's .rodata (one const        */
/* volatile global), set by `ctctl dataplane load` before load, then frozen. */
/* ------------------------------------------------------------------------ */

enum ctctl_timeout {
	CTCTL_TIMEOUT_UDP = 0,
	CTCTL_TIMEOUT_TCP = 1,
	CTCTL_TIMEOUT_TCP_CLOSING = 2, /* after FIN or RST */
	CTCTL_TIMEOUT_OTHER = 3,
	CTCTL_TIMEOUT_MAX = 4,
};

#define CTCTL_CFG_F_SERVICE_EPOCH 0x1u /* the epoch re-check (the fix) is on */

struct ctctl_config {
	__u32 magic;	   /* CTCTL_MAGIC */
	__u32 abi_version; /* CTCTL_ABI_VERSION */
	__u32 flags;	   /* CTCTL_CFG_F_* */
	__u32 pad;
	__u64 timeout_ns[CTCTL_TIMEOUT_MAX];
};
_Static_assert(sizeof(struct ctctl_config) == 48, "ctctl_config is 48 bytes");

/* ------------------------------------------------------------------------ */
/* Dataplane state "state": the object's .data (one global, mmap-able).     */
/* ------------------------------------------------------------------------ */

/* The service epoch is a sequence counter: every frontend or backend write
 * adds 1 before it starts (odd: a write is in progress) and 1 when it is done
 * (even: stable), atomically. A reader that does not hold the writers' lock
 * reads the epoch, the NAT maps, and the epoch again, and keeps the view only
 * if both reads are the same even number. The datapath stores the epoch it
 * read before its frontend lookup in every entry it creates and re-checks an
 * entry whose epoch differs (an entry made during a write is re-checked
 * after it). */
struct ctctl_state {
	__u32 epoch;	   /* service epoch (sequence counter, see above); starts at 2 */
	__u32 next_svc_id; /* next service id to hand out (ctctl, under the writers' lock) */
	__u64 loaded_at;   /* CLOCK_REALTIME seconds when loaded (ctctl) */
};
_Static_assert(sizeof(struct ctctl_state) == 16, "ctctl_state is 16 bytes");

/* ------------------------------------------------------------------------ */
/* Datapath counters "counters": BPF_MAP_TYPE_PERCPU_ARRAY, one entry.       */
/* ------------------------------------------------------------------------ */

/* Every counter: its enum name, its name in ctctl's output, what it counts.
 * ctctl's tables (stats, status, metrics, docs/maps.md) are generated from this
 * one list. Append only: a counter's slot is its position. */
#define CTCTL_COUNTERS(X)                                                                          \
	X(PACKETS, "packets", "IP packets parsed (UDP, TCP, ICMP errors)")                         \
	X(CT_HIT, "ct_hit", "conntrack hits (either direction)")                                   \
	X(CT_MISS, "ct_miss", "conntrack misses")                                                  \
	X(NAT_PAIR_CREATED, "nat_pair_created", "NAT forward+reverse pairs written on a miss")     \
	X(NORMAL_CREATED, "normal_created", "normal entries written on a miss")                    \
	X(EPOCH_RECHECK, "epoch_recheck", "hits whose entry epoch differed from the global one")   \
	X(FLOW_CONVERTED, "flow_converted",                                                        \
	  "normal entries turned into NAT flows by the re-check")                                  \
	X(FLOW_REBALANCED, "flow_rebalanced", "NAT flows moved to a live backend by the re-check") \
	X(FLOW_UNNATED, "flow_unnated", "NAT flows turned normal because their service is gone")   \
	X(EXPIRED_HIT, "expired_hit", "hits on idle-expired entries, treated as misses")           \
	X(REPLY_HIT, "reply_hit", "replies matched through a normal entry's reversed tuple")       \
	X(PASS_NOT_IP, "pass_not_ip", "passed untouched: not IPv4/IPv6")                           \
	X(PASS_NOT_TCP_UDP, "pass_not_tcp_udp", "passed untouched: another L4 protocol")           \
	X(PASS_FRAGMENT, "pass_fragment", "passed untouched: IPv4 fragment")                       \
	X(PASS_IP_OPTIONS, "pass_ip_options", "passed untouched: IPv4 header with options")        \
	X(PASS_IPV6_EXT, "pass_ipv6_ext", "passed untouched: IPv6 extension header")               \
	X(DROP_MALFORMED, "drop_malformed", "dropped: truncated or inconsistent headers")          \
	X(DROP_NO_BACKEND, "drop_no_backend", "dropped: the service has zero backends")            \
	X(DROP_BACKEND_MISSING, "drop_backend_missing",                                            \
	  "dropped: the frontend names a backend ordinal that is missing")                         \
	X(DROP_CT_WRITE, "drop_ct_write", "dropped: a NAT conntrack write failed")                 \
	X(DROP_REWRITE, "drop_rewrite", "dropped: a packet rewrite helper failed")                 \
	X(DROP_TOO_MANY_BACKENDS, "drop_too_many_backends",                                        \
	  "dropped: the frontend has more than CTCTL_MAX_BACKENDS backends")                       \
	X(PAIR_RACE_LOST, "pair_race_lost",                                                        \
	  "another CPU created the same NAT flow first: its pair was used")                        \
	X(REVERSE_RESTORED, "reverse_restored",                                                    \
	  "missing reverse halves restored on a forward hit")                                      \
	X(REVERSE_CONFLICT, "reverse_conflict",                                                    \
	  "a forward hit found its reverse key held by another NAT pair: left alone")              \
	X(ICMP_ERROR_TRANSLATED, "icmp_error_translated", "ICMP errors of NAT flows translated")   \
	X(PASS_ICMP_UNTRACKED, "pass_icmp_untracked",                                              \
	  "passed untouched: an ICMP error about a flow that is not NAT-ed")                       \
	X(PASS_ICMP_MALFORMED, "pass_icmp_malformed",                                              \
	  "passed untouched: an ICMP error with a truncated or malformed inner packet")            \
	X(TCP_REOPENED, "tcp_reopened",                                                            \
	  "a SYN on an entry whose connection had closed (FIN or RST): tracked as a new one")

enum ctctl_counter {
#define CTCTL_COUNTER_ENUM(id, name, help) CTCTL_CNT_##id,
	CTCTL_COUNTERS(CTCTL_COUNTER_ENUM)
#undef CTCTL_COUNTER_ENUM
		CTCTL_CNT_MAX,
};

#define CTCTL_COUNTER_SLOTS 32
struct ctctl_counters {
	__u64 c[CTCTL_COUNTER_SLOTS];
};
_Static_assert(sizeof(struct ctctl_counters) == 256, "ctctl_counters is 256 bytes");
_Static_assert(CTCTL_CNT_MAX <= CTCTL_COUNTER_SLOTS, "counters fit their slots");

/* ------------------------------------------------------------------------ */
/* Attachments "attach": BPF_MAP_TYPE_HASH written only by ctctl, so that    */
/* status lists where the dataplane is attached and unload can refuse.       */
/* ------------------------------------------------------------------------ */

struct ctctl_attach_key {
	char netns[64]; /* name under /run/netns, "" = ctctl's own namespace */
	char ifname[16];
};
_Static_assert(sizeof(struct ctctl_attach_key) == 80, "ctctl_attach_key is 80 bytes");

struct ctctl_attach_value {
	__u32 ifindex;
	__u32 prog_id;
	__u64 attached_at; /* CLOCK_REALTIME seconds */
};
_Static_assert(sizeof(struct ctctl_attach_value) == 16, "ctctl_attach_value is 16 bytes");

/* ------------------------------------------------------------------------ */
/* Stale rules: why an entry may be deleted. ctctl names every delete with    */
/* one, and prog_stage re-checks that it still holds, in the kernel, with the */
/* datapath's own functions (bpf/include/ctctl_rules.h), right before it      */
/* deletes. The order is the order a scan names them in.                      */
/* ------------------------------------------------------------------------ */

#define CTCTL_RULES(X)                                                                             \
	X(REQUESTED, "requested")   /* asked for by the user: identity check only */               \
	X(MISSED_NAT, "missed-nat") /* normal entry to a service with backends */                  \
	X(ORPHAN_NAT, "orphan-nat") /* NAT entry whose backend is no longer in its service */      \
	X(HALF_PAIR, "half-pair")   /* NAT entry whose partner is missing */                       \
	X(EXPIRED, "expired")	    /* idle past its timeout, its partner too */

enum ctctl_rule {
#define CTCTL_RULE_ENUM(id, name) CTCTL_RULE_##id,
	CTCTL_RULES(CTCTL_RULE_ENUM)
#undef CTCTL_RULE_ENUM
		CTCTL_RULE_MAX,
};

/* ------------------------------------------------------------------------ */
/* Stage "stage": BPF_MAP_TYPE_ARRAY (mmap-able), CTCTL_STAGE_SLOTS slots.   */
/* ctctl writes keys, the identity it saw and the rule it judged by, runs    */
/* prog_stage once through BPF_PROG_TEST_RUN, and reads each slot's result.  */
/* Users serialize on the writers' lock (flock on the pin directory).        */
/* ------------------------------------------------------------------------ */

enum ctctl_stage_op {
	/* Delete each entry if it still has the staged identity (type, created)
	 * and the staged rule still holds, and its partner if the partner still
	 * points back at it with the same created time. */
	CTCTL_STAGE_OP_DELETE = 1,
};

/* ctctl_stage_slot.result bits */
#define CTCTL_STAGE_R_MATCH 0x01u	    /* entry present with the staged identity */
#define CTCTL_STAGE_R_GONE 0x02u	    /* entry no longer present */
#define CTCTL_STAGE_R_CHANGED 0x04u	    /* present, but another identity: left alone */
#define CTCTL_STAGE_R_DELETED 0x08u	    /* entry deleted */
#define CTCTL_STAGE_R_PARTNER_OK 0x10u	    /* partner present and points back (same created) */
#define CTCTL_STAGE_R_PARTNER_DELETED 0x20u /* partner deleted with it */
#define CTCTL_STAGE_R_RULE_FAILED                                                                  \
	0x40u /* same identity, but the rule no longer holds: left alone */

struct ctctl_stage_slot {
	struct ctctl_ct_key key; /* in */
	__u64 created_ns;	 /* in: identity seen by the caller */
	__u8 type;		 /* in: identity seen by the caller */
	__u8 rule;		 /* in: enum ctctl_rule the caller judged by */
	__u8 result;		 /* out: CTCTL_STAGE_R_* */
	__u8 pad[5];
};
_Static_assert(sizeof(struct ctctl_stage_slot) == 56, "ctctl_stage_slot is 56 bytes");

/* Context of prog_stage (BPF_PROG_TEST_RUN ctx_in; copied back on return). */
struct ctctl_stage_ctx {
	__u32 op;      /* in: enum ctctl_stage_op */
	__u32 count;   /* in: slots 0..count-1 are staged */
	__u32 done;    /* out: slots processed */
	__u32 deleted; /* out: entries deleted, partners included */
};
_Static_assert(sizeof(struct ctctl_stage_ctx) == 16, "ctctl_stage_ctx is 16 bytes");

#endif /* CTCTL_ABI_H */
