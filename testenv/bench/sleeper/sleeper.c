/* sleeper N PROGRAM [ARGS...]: starts N idle child processes (each waits in
 * pause(2) until a signal ends it), then becomes PROGRAM. The idle shape of
 * `make bench` ("one app with N idle child processes") uses it in front of
 * the test app: the children cost a few pages each, where a Go child would
 * cost a megabyte. Built statically by the benchmark (clang, libc.a). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: sleeper N PROGRAM [ARGS...]\n");
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("sleeper: fork");
			return 1;
		}
		if (pid == 0) {
			for (;;)
				pause();
		}
	}
	execv(argv[2], argv + 2);
	perror("sleeper: exec");
	return 1;
}
