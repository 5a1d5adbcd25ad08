// The floor for `make bench`: read every entry of a pinned BPF map with
// BPF_MAP_LOOKUP_BATCH, 8192 entries a call, and print how many there were.
// Nothing is decoded or printed per entry; no listing tool can read faster.
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s PINNED-MAP\n", argv[0]);
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
	const __u32 batch = 8192;
	void *keys = malloc((size_t)batch * info.key_size);
	void *values = malloc((size_t)batch * info.value_size);
	__u64 in = 0, out = 0, total = 0;
	void *in_batch = NULL;
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	for (;;) {
		__u32 count = batch;
		int err = bpf_map_lookup_batch(fd, in_batch, &out, keys, values, &count, &opts);
		total += count;
		if (err) {
			if (errno == ENOENT)
				break;
			perror("bpf_map_lookup_batch");
			return 1;
		}
		in = out;
		in_batch = &in;
	}
	printf("%llu\n", (unsigned long long)total);
	return 0;
}
