// The floor for `make bench`: read every entry of a pinned BPF hash map with
// BPF_MAP_LOOKUP_BATCH, 8192 entries a call, and print how many there were.
// Nothing is decoded or printed per entry; no listing tool can read faster.
//
// With THREADS > 1 (the two-thread floor), each thread reads its own range of the
// map's buckets (max_entries rounded up to a power of two). A call copies whole
// buckets and returns the next non-empty bucket it did not copy, which may lie past
// the range: then the thread asks again for less, down to exactly one bucket (the
// smallest count without ENOSPC), and keeps that bucket if its cursor came from the
// kernel (so the bucket is at or before the range's end) or if its keys differ from
// the first bucket at or after the next range's start. The map must not change
// while it is read. Usage: bench-floor PINNED-MAP [THREADS]
#include <bpf/bpf.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 8192u

struct range {
	int fd;
	__u32 key_size, value_size;
	__u32 start, end, total;
	void *keys, *values, *probe_keys, *probe_values;
	unsigned long long count;
	int err;
};

// One call from bucket `in`: the count read, the next bucket in *next; 1 at the
// map's end, -1 on ENOSPC, -2 on another error.
static int call(struct range *r, __u32 in, __u32 want, void *keys, void *values, __u32 *count,
		__u32 *next)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	__u32 out = in;
	*count = want;
	if (!bpf_map_lookup_batch(r->fd, &in, &out, keys, values, count, &opts)) {
		*next = out;
		return 0;
	}
	if (errno == ENOENT) {
		*next = out;
		return 1;
	}
	*count = 0;
	return errno == ENOSPC ? -1 : -2;
}

// Exactly one bucket: the first non-empty one at or after `in`.
static int one_bucket(struct range *r, __u32 in, void *keys, void *values, __u32 *count,
		      __u32 *next)
{
	for (__u32 want = 1; want <= BATCH; want++) {
		int rc = call(r, in, want, keys, values, count, next);
		if (rc != -1)
			return rc;
	}
	return -2;
}

static void *read_range(void *arg)
{
	struct range *r = arg;
	__u32 pos = r->start, want = BATCH, count, next;
	int from_kernel = 0;
	while (pos < r->end) {
		if (want >= 16) {
			int rc = call(r, pos, want, r->keys, r->values, &count, &next);
			if (rc == -1) {
				want = 1;
				continue;
			}
			if (rc == -2)
				goto fail;
			if ((rc == 1 && r->end == r->total) || (rc == 0 && next <= r->end)) {
				r->count += count;
				if (rc == 1)
					return NULL;
				pos = next;
				from_kernel = 1;
				continue;
			}
			if (count == 0)
				return NULL;
			want /= 4;
			continue;
		}
		int rc = one_bucket(r, pos, r->keys, r->values, &count, &next);
		if (rc == -2)
			goto fail;
		if (count == 0)
			return NULL;
		int mine = from_kernel || (rc == 0 && next <= r->end) || r->end == r->total;
		if (!mine) {
			__u32 pcount, pnext;
			if (one_bucket(r, r->end, r->probe_keys, r->probe_values, &pcount,
				       &pnext) == -2)
				goto fail;
			mine = pcount == 0 || memcmp(r->keys, r->probe_keys, r->key_size) != 0;
		}
		if (!mine)
			return NULL;
		r->count += count;
		if (rc == 1 || next >= r->end)
			return NULL;
		pos = next;
		from_kernel = 1;
	}
	return NULL;
fail:
	r->err = errno ? errno : EIO;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s PINNED-MAP [THREADS]\n", argv[0]);
		return 2;
	}
	int threads = argc == 3 ? atoi(argv[2]) : 1;
	if (threads < 1 || threads > 64) {
		fprintf(stderr, "bad THREADS: 1 to 64\n");
		return 2;
	}
	int fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		perror("bpf_obj_get");
		return 1;
	}
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		perror("bpf_obj_get_info_by_fd");
		return 1;
	}
	__u32 total = 1;
	while (total < info.max_entries)
		total <<= 1;
	struct range ranges[64];
	pthread_t tids[64];
	for (int i = 0; i < threads; i++) {
		struct range *r = &ranges[i];
		memset(r, 0, sizeof(*r));
		r->fd = fd;
		r->key_size = info.key_size;
		r->value_size = info.value_size;
		r->total = total;
		r->start = (__u32)((__u64)total * i / threads);
		r->end = (__u32)((__u64)total * (i + 1) / threads);
		r->keys = malloc((size_t)BATCH * info.key_size);
		r->values = malloc((size_t)BATCH * info.value_size);
		r->probe_keys = malloc((size_t)BATCH * info.key_size);
		r->probe_values = malloc((size_t)BATCH * info.value_size);
		if (!r->keys || !r->values || !r->probe_keys || !r->probe_values) {
			perror("malloc");
			return 1;
		}
	}
	// range 0 on this thread; with one thread it is the plain loop over the whole map
	for (int i = 1; i < threads; i++)
		if (pthread_create(&tids[i], NULL, read_range, &ranges[i])) {
			perror("pthread_create");
			return 1;
		}
	read_range(&ranges[0]);
	unsigned long long sum = 0;
	for (int i = 0; i < threads; i++) {
		if (i > 0)
			pthread_join(tids[i], NULL);
		if (ranges[i].err) {
			fprintf(stderr, "bpf_map_lookup_batch: %s\n", strerror(ranges[i].err));
			return 1;
		}
		sum += ranges[i].count;
	}
	printf("%llu\n", sum);
	return 0;
}
