#define _GNU_SOURCE
#include "CLibBPF.h"

#include <bpf/btf.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sched.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- libbpf messages: kept in a small ring for error details. ---- */

#define LOG_CAP 8192
static char log_buf[LOG_CAP];
static size_t log_len;
static int log_level;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_append(const char *msg, size_t n)
{
	if (n >= LOG_CAP) {
		msg += n - (LOG_CAP - 1);
		n = LOG_CAP - 1;
	}
	if (log_len + n >= LOG_CAP) {
		size_t drop = log_len + n - (LOG_CAP - 1);
		memmove(log_buf, log_buf + drop, log_len - drop);
		log_len -= drop;
	}
	memcpy(log_buf + log_len, msg, n);
	log_len += n;
	log_buf[log_len] = '\0';
}

/* Why shimmed: libbpf's print callback is variadic (va_list). */
static int print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char line[1024];
	va_list copy;
	va_copy(copy, args);
	int n = vsnprintf(line, sizeof(line), fmt, copy);
	va_end(copy);
	if (n < 0)
		return 0;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	pthread_mutex_lock(&log_lock);
	log_append(line, (size_t)n);
	pthread_mutex_unlock(&log_lock);
	if ((level == LIBBPF_WARN && log_level >= 1) || log_level >= 2)
		fputs(line, stderr);
	return n;
}

void CLibBPF_set_log_level(int level)
{
	log_level = level;
	libbpf_set_print(print_fn);
}

void CLibBPF_copy_log(char *buf, uint32_t size)
{
	if (size == 0)
		return;
	pthread_mutex_lock(&log_lock);
	size_t n = log_len < size - 1 ? log_len : size - 1;
	memcpy(buf, log_buf + (log_len - n), n);
	buf[n] = '\0';
	pthread_mutex_unlock(&log_lock);
}

void CLibBPF_clear_log(void)
{
	pthread_mutex_lock(&log_lock);
	log_len = 0;
	log_buf[0] = '\0';
	pthread_mutex_unlock(&log_lock);
}

/* libbpf 1.x low-level calls return a negative errno; normalise the rare
 * -1-with-errno case so callers see one convention. */
static int neg_err(int ret)
{
	if (ret >= 0)
		return ret;
	if (ret == -1 && errno > 0)
		return -errno;
	return ret;
}

/* Why shimmed: bpf_obj_get_opts takes a LIBBPF_OPTS struct. */
int CLibBPF_obj_get(const char *path, int read_only)
{
	LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = read_only ? BPF_F_RDONLY : 0);
	return neg_err(bpf_obj_get_opts(path, &opts));
}

/* Why shimmed: batch calls take a LIBBPF_OPTS struct. */
int CLibBPF_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
			     uint32_t *count)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	return neg_err(bpf_map_lookup_batch(fd, in_batch, out_batch, keys, values, count, &opts));
}

int CLibBPF_map_update_batch(int fd, const void *keys, const void *values, uint32_t *count,
			     uint64_t flags)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags);
	return neg_err(bpf_map_update_batch(fd, keys, values, count, &opts));
}

/* Why shimmed: bpf_prog_test_run_opts takes a LIBBPF_OPTS struct. */
int CLibBPF_prog_test_run(int prog_fd, const void *data_in, uint32_t data_size, void *data_out,
			  uint32_t *data_out_size, void *ctx_in, uint32_t ctx_size, int repeat,
			  uint32_t *retval, uint32_t *duration_ns)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data_in, .data_size_in = data_size,
		    .data_out = data_out, .data_size_out = data_out_size ? *data_out_size : 0,
		    .ctx_in = ctx_in, .ctx_size_in = ctx_size, .repeat = repeat);
	int ret = neg_err(bpf_prog_test_run_opts(prog_fd, &opts));
	if (ret < 0)
		return ret;
	if (data_out_size)
		*data_out_size = opts.data_size_out;
	*retval = opts.retval;
	*duration_ns = opts.duration;
	return 0;
}

/* Why shimmed: the bpf_tc_* API takes LIBBPF_OPTS structs. */
int CLibBPF_tc_attach(int ifindex, int prog_fd, uint32_t *prog_id, int *created_qdisc)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CTCTL_TC_HANDLE, .priority = CTCTL_TC_PRIORITY,
		    .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);

	int ret = bpf_tc_hook_create(&hook);
	if (ret == 0)
		*created_qdisc = 1;
	else if (ret == -EEXIST)
		*created_qdisc = 0;
	else
		return neg_err(ret);
	ret = neg_err(bpf_tc_attach(&hook, &opts));
	if (ret < 0)
		return ret;
	*prog_id = opts.prog_id;
	return 0;
}

int CLibBPF_tc_detach(int ifindex)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CTCTL_TC_HANDLE, .priority = CTCTL_TC_PRIORITY);
	return neg_err(bpf_tc_detach(&hook, &opts));
}

int CLibBPF_tc_query(int ifindex, uint32_t *prog_id)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = CTCTL_TC_HANDLE, .priority = CTCTL_TC_PRIORITY);
	int ret = neg_err(bpf_tc_query(&hook, &opts));
	if (ret < 0)
		return ret;
	*prog_id = opts.prog_id;
	return 0;
}

/* Why shimmed: Swift has no atomics over a raw pointer without another package. */
uint32_t CLibBPF_atomic_add_u32(uint32_t *ptr, uint32_t value)
{
	return __atomic_add_fetch(ptr, value, __ATOMIC_SEQ_CST);
}

uint32_t CLibBPF_atomic_load_u32(const uint32_t *ptr)
{
	return __atomic_load_n(ptr, __ATOMIC_SEQ_CST);
}

/* Why shimmed: setns() is declared only under _GNU_SOURCE, which Swift's Glibc lacks. */
int CLibBPF_setns_net(int fd)
{
	return setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno;
}

/* Why shimmed: statfs() (sys/vfs.h) is not exported by Swift's Glibc module. */
int CLibBPF_is_bpffs(const char *path)
{
	struct statfs fs;
	if (statfs(path, &fs) != 0)
		return -errno;
	return fs.f_type == BPF_FS_MAGIC ? 1 : 0;
}

/* Why shimmed: the tables are X-macros in the ABI header; Swift cannot expand them. */
#define NAME_OF(id, name, ...) name,
#define HELP_OF(id, name, help) help,
static const char *const counter_names[] = {CTCTL_COUNTERS(NAME_OF)};
static const char *const counter_helps[] = {CTCTL_COUNTERS(HELP_OF)};
static const char *const rule_names[] = {CTCTL_RULES(NAME_OF)};
_Static_assert(sizeof(counter_names) / sizeof(counter_names[0]) == CTCTL_CNT_MAX, "every counter");
_Static_assert(sizeof(rule_names) / sizeof(rule_names[0]) == CTCTL_RULE_MAX, "every rule");

const char *CLibBPF_counter_name(uint32_t i)
{
	return i < CTCTL_CNT_MAX ? counter_names[i] : NULL;
}

const char *CLibBPF_counter_help(uint32_t i)
{
	return i < CTCTL_CNT_MAX ? counter_helps[i] : NULL;
}

const char *CLibBPF_rule_name(uint32_t i)
{
	return i < CTCTL_RULE_MAX ? rule_names[i] : NULL;
}

/* ---- BTF ---- */

void *_Nullable CLibBPF_btf_load(uint32_t id, int *err)
{
	struct btf *btf = btf__load_from_kernel_by_id(id);

	if (!btf) {
		*err = -errno;
		return NULL;
	}
	*err = 0;
	return btf;
}

void CLibBPF_btf_free(void *btf)
{
	btf__free(btf);
}

const char *_Nullable CLibBPF_btf_type_name(void *btf, uint32_t id)
{
	int resolved = btf__resolve_type(btf, id);
	const struct btf_type *t;

	if (resolved < 0)
		return NULL;
	t = btf__type_by_id(btf, resolved);
	if (!t)
		return NULL;
	return btf__name_by_offset(btf, t->name_off);
}

static const struct btf_type *composite_named(void *btf, const char *name)
{
	int id = btf__find_by_name_kind(btf, name, BTF_KIND_STRUCT);

	if (id < 0)
		id = btf__find_by_name_kind(btf, name, BTF_KIND_UNION);
	if (id < 0)
		return NULL;
	return btf__type_by_id(btf, id);
}

int CLibBPF_btf_struct_size(void *btf, const char *name)
{
	const struct btf_type *t = composite_named(btf, name);

	return t ? (int)t->size : -ENOENT;
}

static int find_member(void *btf, const struct btf_type *t, const char *member, uint32_t base,
		       uint32_t *bit_offset, uint32_t *bit_size)
{
	const struct btf_member *m = btf_members(t);
	int i;

	for (i = 0; i < btf_vlen(t); i++, m++) {
		const char *name = btf__name_by_offset(btf, m->name_off);
		uint32_t off = base + btf_member_bit_offset(t, i);
		int type_id = btf__resolve_type(btf, m->type);
		const struct btf_type *mt = type_id < 0 ? NULL : btf__type_by_id(btf, type_id);

		if (name && strcmp(name, member) == 0) {
			uint32_t bits = btf_member_bitfield_size(t, i);
			long size = btf__resolve_size(btf, m->type);

			*bit_offset = off;
			*bit_size = bits ? bits : (size > 0 ? (uint32_t)size * 8 : 0);
			return 0;
		}
		if ((!name || !*name) && mt && btf_is_composite(mt) &&
		    find_member(btf, mt, member, off, bit_offset, bit_size) == 0)
			return 0;
	}
	return -ENOENT;
}

int CLibBPF_btf_member(void *btf, const char *name, const char *member, uint32_t *bit_offset,
		       uint32_t *bit_size)
{
	const struct btf_type *t = composite_named(btf, name);

	if (!t)
		return -ENOENT;
	return find_member(btf, t, member, 0, bit_offset, bit_size);
}

int CLibBPF_prog_map_ids(uint32_t prog_id, uint32_t *ids, uint32_t cap)
{
	struct bpf_prog_info info;
	uint32_t len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(prog_id);
	int err;

	if (fd < 0)
		return -errno;
	memset(&info, 0, sizeof(info));
	info.nr_map_ids = cap;
	info.map_ids = (uint64_t)(uintptr_t)ids;
	err = bpf_obj_get_info_by_fd(fd, &info, &len);
	err = err ? -errno : (int)info.nr_map_ids;
	close(fd);
	return err;
}

int CLibBPF_prog_next_id(uint32_t start, uint32_t *next)
{
	return neg_err(bpf_prog_get_next_id(start, next));
}

int CLibBPF_map_create_like(int fd, uint32_t max_entries)
{
	struct bpf_map_info info;
	uint32_t len = sizeof(info);
	int btf_fd = -1, ret;

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	if (info.btf_id) {
		btf_fd = bpf_btf_get_fd_by_id(info.btf_id);
		if (btf_fd < 0)
			return -errno;
	}
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = info.map_flags,
		    .btf_fd = btf_fd > 0 ? btf_fd : 0, .btf_key_type_id = info.btf_key_type_id,
		    .btf_value_type_id = info.btf_value_type_id);
	ret = bpf_map_create(info.type, info.name, info.key_size, info.value_size, max_entries,
			     &opts);
	if (ret < 0)
		ret = -errno;
	if (btf_fd >= 0)
		close(btf_fd);
	return ret;
}

/* ---- what else is attached to an interface ---- */

static void add_id(uint32_t *ids, uint32_t cap, uint32_t *n, uint32_t id)
{
	uint32_t i;

	for (i = 0; i < *n && i < cap; i++)
		if (ids[i] == id)
			return;
	if (*n < cap)
		ids[*n] = id;
	(*n)++;
}

/* One RTM_GETTFILTER dump of `parent`; the ids of its BPF filters' programs. */
static int tc_dump_bpf(int ifindex, uint32_t parent, uint32_t *ids, uint32_t cap, uint32_t *n)
{
	struct {
		struct nlmsghdr nh;
		struct tcmsg tc;
	} req;
	char buf[16384];
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	int ret = 0;

	if (fd < 0)
		return -errno;
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct tcmsg));
	req.nh.nlmsg_type = RTM_GETTFILTER;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = 1;
	req.tc.tcm_family = AF_UNSPEC;
	req.tc.tcm_ifindex = ifindex;
	req.tc.tcm_parent = parent;
	if (send(fd, &req, req.nh.nlmsg_len, 0) < 0) {
		ret = -errno;
		goto out;
	}
	for (;;) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *nh;

		if (len < 0) {
			ret = -errno;
			goto out;
		}
		for (nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)len);
		     nh = NLMSG_NEXT(nh, len)) {
			struct tcmsg *tc = NLMSG_DATA(nh);
			struct rtattr *a;
			int alen;

			if (nh->nlmsg_type == NLMSG_DONE)
				goto out;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(nh);
				/* no clsact qdisc: nothing attached there */
				ret = e->error == -EINVAL || e->error == -ENOENT ? 0 : e->error;
				goto out;
			}
			alen = nh->nlmsg_len - NLMSG_LENGTH(sizeof(*tc));
			for (a = (struct rtattr *)((char *)tc + NLMSG_ALIGN(sizeof(*tc)));
			     RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
				struct rtattr *o;
				int olen;

				if (a->rta_type != TCA_OPTIONS)
					continue;
				olen = RTA_PAYLOAD(a);
				for (o = RTA_DATA(a); RTA_OK(o, olen); o = RTA_NEXT(o, olen))
					if (o->rta_type == TCA_BPF_ID && RTA_PAYLOAD(o) >= 4)
						add_id(ids, cap, n, *(uint32_t *)RTA_DATA(o));
			}
		}
	}
out:
	close(fd);
	return ret;
}

int CLibBPF_tc_attached_prog_ids(int ifindex, uint32_t *ids, uint32_t cap)
{
	const uint32_t parents[] = {TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS),
				    TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)};
	/* BPF_TCX_INGRESS and BPF_TCX_EGRESS (Linux 6.6; older uapi headers lack them) */
	const int tcx[] = {46, 47};
	uint32_t n = 0;
	int i, err;

	for (i = 0; i < 2; i++) {
		err = tc_dump_bpf(ifindex, parents[i], ids, cap, &n);
		if (err)
			return err;
	}
	for (i = 0; i < 2; i++) {
		uint32_t progs[64], count = 64, flags = 0, j;

		/* a kernel without TCX answers EINVAL: nothing attached that way */
		if (bpf_prog_query(ifindex, tcx[i], 0, &flags, progs, &count))
			continue;
		for (j = 0; j < count && j < 64; j++)
			add_id(ids, cap, &n, progs[j]);
	}
	return (int)n;
}

int CLibBPF_prog_name(uint32_t id, char *name)
{
	struct bpf_prog_info info;
	uint32_t len = sizeof(info);
	int fd = bpf_prog_get_fd_by_id(id);
	int err;

	if (fd < 0)
		return -errno;
	memset(&info, 0, sizeof(info));
	err = bpf_obj_get_info_by_fd(fd, &info, &len) ? -errno : 0;
	close(fd);
	if (!err)
		memcpy(name, info.name, sizeof(info.name));
	return err;
}

int CLibBPF_affinity_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set))
		return -errno;
	return CPU_COUNT(&set);
}
