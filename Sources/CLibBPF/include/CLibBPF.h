/*
 * CLibBPF: the C boundary between ctctl's Swift code and libbpf.
 *
 * Only what Swift cannot call directly lives here: libbpf calls that take
 * LIBBPF_OPTS structs (a macro), the variadic print callback, atomics on
 * mmap-ed map memory, and the ABI's name tables (X-macros). The rules in
 * ctctl_rules.h are static inline C that Swift calls as they are: the same
 * code the datapath runs. Everything else (bpf_map_lookup_elem, bpf_object__load,
 * ...) Swift calls on libbpf itself.
 *
 * Contract: every int-returning function returns 0 (or an fd, where said) on
 * success and a negative errno on failure; it never sets a meaningful errno
 * for the caller to read. Pointers are non-null unless marked _Nullable.
 */
#ifndef CLIBBPF_H
#define CLIBBPF_H

#include <stdint.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "ctctl_abi.h"
#include "ctctl_rules.h"
#include "ctctl_calico.h"

#pragma clang assume_nonnull begin

/* libbpf's messages: 0 keeps only the last few in memory (for error details),
 * 1 also prints warnings to stderr, 2 prints debug output too. */
void CLibBPF_set_log_level(int level);

/* The last libbpf messages (verifier log tail included), newest last, up to
 * `size` bytes with a terminating NUL. Cleared by CLibBPF_clear_log. */
void CLibBPF_copy_log(char *buf, uint32_t size);
void CLibBPF_clear_log(void);

/* BPF_OBJ_GET with BPF_F_RDONLY when read_only: returns an fd or -errno. */
int CLibBPF_obj_get(const char *path, int read_only);

/* BPF_MAP_LOOKUP_BATCH: `count` is in (buffer capacity) and out (entries
 * copied). Returns 0, -ENOENT at the end of the map (count may be > 0), or
 * another -errno. in_batch is NULL for the first call. */
int CLibBPF_map_lookup_batch(int fd, void *_Nullable in_batch, void *out_batch, void *keys,
			     void *values, uint32_t *count);

/* BPF_MAP_UPDATE_BATCH: writes `count` key/value pairs; on return `count` is
 * how many were written. Returns 0 or -errno. */
int CLibBPF_map_update_batch(int fd, const void *keys, const void *values, uint32_t *count,
			     uint64_t flags);

/* BPF_PROG_TEST_RUN. data_* and ctx_* may be NULL with zero sizes (a syscall
 * program takes only ctx_in, which receives what the program wrote back).
 * data_out_size is in (capacity) and out (length). Returns 0 or -errno. */
int CLibBPF_prog_test_run(int prog_fd, const void *_Nullable data_in, uint32_t data_size,
			  void *_Nullable data_out, uint32_t *_Nullable data_out_size,
			  void *_Nullable ctx_in, uint32_t ctx_size, int repeat, uint32_t *retval,
			  uint32_t *duration_ns);

/* TC clsact ingress on ifindex in the calling thread's network namespace,
 * filter handle CTCTL_TC_HANDLE / priority CTCTL_TC_PRIORITY.
 * attach creates the clsact qdisc if missing (*created_qdisc = 1 then) and
 * replaces an existing ctctl filter. Returns 0 or -errno. */
int CLibBPF_tc_attach(int ifindex, int prog_fd, uint32_t *prog_id, int *created_qdisc);
int CLibBPF_tc_detach(int ifindex);
/* 0 with *prog_id set if ctctl's filter is attached, -ENOENT if not. */
int CLibBPF_tc_query(int ifindex, uint32_t *prog_id);

/* 1 if `path` is on a BPF filesystem (statfs f_type BPF_FS_MAGIC), 0 if on
 * another filesystem, or -errno. */
int CLibBPF_is_bpffs(const char *path);

/* ---- BTF: checking another dataplane's map layout by its own type information. ---- */

/* Loads the kernel BTF object `id` (BPF_BTF_GET_FD_BY_ID: needs CAP_SYS_ADMIN). Returns a
 * handle, or NULL with *err = -errno. Free it with CLibBPF_btf_free. */
void *_Nullable CLibBPF_btf_load(uint32_t id, int *err);
void CLibBPF_btf_free(void *btf);

/* The name of type `id`, past typedefs and qualifiers ("" if anonymous); NULL if there is
 * no such type. */
const char *_Nullable CLibBPF_btf_type_name(void *btf, uint32_t id);

/* The size in bytes of struct or union `name`, or -ENOENT. */
int CLibBPF_btf_struct_size(void *btf, const char *name);

/* Member `member` of struct `name`, looked for through anonymous struct and union members:
 * its offset from the start of the struct in bits, and its size in bits (the bitfield size,
 * or the type's). Returns 0, or -ENOENT if there is no such struct or member. */
int CLibBPF_btf_member(void *btf, const char *name, const char *member, uint32_t *bit_offset,
		       uint32_t *bit_size);

/* The ids of the maps program `prog_id` uses (BPF_PROG_GET_FD_BY_ID: CAP_SYS_ADMIN). Writes
 * up to `cap` ids and returns how many the program has, or -errno. */
int CLibBPF_prog_map_ids(uint32_t prog_id, uint32_t *ids, uint32_t cap);

/* BPF_PROG_GET_NEXT_ID. Returns 0 (next in *next), -ENOENT after the last, or -errno. */
int CLibBPF_prog_next_id(uint32_t start, uint32_t *next);

/* The ids of the BPF programs attached to interface `ifindex` (in the caller's network
 * namespace) at TC: clsact filters (ingress and egress, by a netlink dump) and TCX links.
 * Writes up to `cap` ids; returns how many were found, or -errno. */
int CLibBPF_tc_attached_prog_ids(int ifindex, uint32_t *ids, uint32_t cap);

/* The name of BPF program `id` (15 characters at most; BPF_PROG_GET_FD_BY_ID needs
 * CAP_SYS_ADMIN) into `name` (16 bytes). Returns 0 or -errno. */
int CLibBPF_prog_name(uint32_t id, char *name);

/* A new map like map `fd` (type, key and value size, flags, name, BTF) with `max_entries`
 * entries: what a control plane does to resize a map (benchmarks). Returns an fd or -errno. */
int CLibBPF_map_create_like(int fd, uint32_t max_entries);

/* The CPUs this process may run on (sched_getaffinity), or -errno. */
int CLibBPF_affinity_cpus(void);

/* setns(fd, CLONE_NEWNET) for the calling thread. Returns 0 or -errno. */
int CLibBPF_setns_net(int fd);

/* The ABI's name tables (ctctl_abi.h X-macros), so ctctl's output can never
 * drift from the header: the name and help of counter `i`, the name of rule
 * `i`; NULL past the end. */
const char *_Nullable CLibBPF_counter_name(uint32_t i);
const char *_Nullable CLibBPF_counter_help(uint32_t i);
const char *_Nullable CLibBPF_rule_name(uint32_t i);

/* Why shimmed: Swift has no prefetch. Inline, so it costs one instruction. */
static inline void CLibBPF_prefetch_write(const void *ptr)
{
	__builtin_prefetch(ptr, 1, 3);
}

/* Sequentially consistent atomics on shared (mmap-ed) map memory. */
uint32_t CLibBPF_atomic_add_u32(uint32_t *ptr, uint32_t value);
uint32_t CLibBPF_atomic_load_u32(const uint32_t *ptr);

#pragma clang assume_nonnull end

#endif /* CLIBBPF_H */
