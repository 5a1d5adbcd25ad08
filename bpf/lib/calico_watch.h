/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The watching heal's digest of Calico's services (ctctl_calico.h has the contract): every
 * staged frontend key looked up in the family's LPM trie, every staged backend key in its
 * backend map, each found value folded into a digest in order. `v6` is a compile-time
 * constant in each caller.
 */
#ifndef CTCTL_LIB_CALICO_WATCH_H
#define CTCTL_LIB_CALICO_WATCH_H

#include "ctctl_calico.h"

struct calico_watch_loop {
	void *map;
	__u32 start;
	__u32 found;
	__u64 h;
};

static __always_inline __u64 calico_mix(__u64 h, __u64 w)
{
	h = (h ^ w) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

/* Folds the `words` 32-bit words of `v` (or, for a key not found, a marker) into lc->h. */
static __always_inline void calico_watch_fold(struct calico_watch_loop *lc, const __u32 *v,
					      int words)
{
	int i;

	if (!v) {
		lc->h = calico_mix(lc->h, 0x6e6f6e65ULL);
		return;
	}
	lc->found++;
#pragma unroll
	for (i = 0; i < 5; i++)
		if (i < words)
			lc->h = calico_mix(lc->h, v[i]);
}

#define CALICO_WATCH_FE(name, words)                                                               \
	static long name(__u32 i, void *data)                                                      \
	{                                                                                          \
		struct calico_watch_loop *lc = data;                                               \
		__u32 slot = lc->start + i;                                                        \
		struct ctctl_calico_watch_key *k = bpf_map_lookup_elem(&watch_fe, &slot);          \
		if (!k)                                                                            \
			return 1;                                                                  \
		calico_watch_fold(lc, bpf_map_lookup_elem(lc->map, k->key), words);                \
		return 0;                                                                          \
	}

#define CALICO_WATCH_BE(name, words)                                                               \
	static long name(__u32 i, void *data)                                                      \
	{                                                                                          \
		struct calico_watch_loop *lc = data;                                               \
		__u32 slot = lc->start + i;                                                        \
		__u64 *k = bpf_map_lookup_elem(&watch_be, &slot);                                  \
		if (!k)                                                                            \
			return 1;                                                                  \
		calico_watch_fold(lc, bpf_map_lookup_elem(lc->map, k), words);                     \
		return 0;                                                                          \
	}

CALICO_WATCH_FE(calico_watch_fe_v4, CALICO_FE_VALUE_SIZE / 4)
CALICO_WATCH_FE(calico_watch_fe_v6, CALICO_FE_VALUE_SIZE / 4)
CALICO_WATCH_BE(calico_watch_be_v4, CALICO_V4_BE_VALUE_SIZE / 4)
CALICO_WATCH_BE(calico_watch_be_v6, CALICO_V6_BE_VALUE_SIZE / 4)

static __always_inline int calico_watch_run(void *fe, void *be, int v6)
{
	__u32 index = v6 ? 1 : 0;
	struct ctctl_calico_watch *w = bpf_map_lookup_elem(&watch_ctl, &index);
	struct calico_watch_loop lc = {.map = fe, .h = 0xcbf29ce484222325ULL};

	if (!w || w->fe_end < w->fe_start || w->fe_end > CTCTL_CALICO_WATCH_FE ||
	    w->be_end < w->be_start || w->be_end > CTCTL_CALICO_WATCH_BE)
		return 1;
	lc.start = w->fe_start;
	bpf_loop(w->fe_end - w->fe_start, v6 ? calico_watch_fe_v6 : calico_watch_fe_v4, &lc, 0);
	w->fe_digest = lc.h;
	w->fe_found = lc.found;
	if (!w->want_be)
		return 0;
	lc.map = be;
	lc.start = w->be_start;
	lc.found = 0;
	lc.h = 0xcbf29ce484222325ULL;
	bpf_loop(w->be_end - w->be_start, v6 ? calico_watch_be_v6 : calico_watch_be_v4, &lc, 0);
	w->be_digest = lc.h;
	w->be_found = lc.found;
	return 0;
}

#endif /* CTCTL_LIB_CALICO_WATCH_H */
