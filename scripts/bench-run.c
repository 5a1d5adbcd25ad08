// Runs one command for `make bench` and prints "WALL_NS MAXRSS_KIB STATUS CPU_NS" (CPU:
// user + system time of the command, all its threads).
//
// Why a separate tiny program: at exec the kernel records the old address space's
// high-water mark into the child's ru_maxrss, and a child of posix_spawn (vfork) or
// fork starts with its parent's. Launched from here, that is this program's ~1 MiB,
// not the benchmark's, so ru_maxrss measures the command.
// Usage: bench-run STDOUT-FILE COMMAND [ARGS...]   (stderr goes to /dev/null)
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s STDOUT-FILE COMMAND [ARGS...]\n", argv[0]);
		return 2;
	}
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int null = open("/dev/null", O_WRONLY);
		if (out < 0 || null < 0)
			_exit(126);
		dup2(out, 1);
		dup2(null, 2);
		execvp(argv[2], argv + 2);
		_exit(127);
	}
	int status = 0;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0) {
		perror("wait4");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	long long ns = (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
	long long cpu = (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
			(long long)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
	printf("%lld %ld %d %lld\n", ns, ru.ru_maxrss,
	       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), cpu);
	return 0;
}
