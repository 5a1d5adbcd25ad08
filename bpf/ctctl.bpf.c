// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The ctctl reference dataplane: thin entry points, logic in lib/. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef READ_ONCE
#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))
#endif

#include "lib/datapath.h"
#include "lib/stage.h"

/* TC clsact ingress on every interface the dataplane serves. */
SEC("tc")
int ctctl_tc(struct __sk_buff *skb)
{
	return ctctl_handle(skb);
}

/* Run by ctctl through BPF_PROG_TEST_RUN (ctx_in only): check-and-delete or
 * probe the slots staged in the `stage` map. */
SEC("syscall")
int ctctl_stage(struct ctctl_stage_ctx *ctx)
{
	return ctctl_stage_run(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
