/* What this machine can do at best, with nothing in the way, for the two costs hub cannot avoid:
 *
 *   ceilings files DIR N BYTES   creates N files of BYTES bytes in DIR, one thread, the way hub
 *                                writes problems_received/ (unnamed, then linked); prints files/s
 *   ceilings spawn N AT_ONCE CMD starts CMD N times, AT_ONCE at a time, with posix_spawn (as hub
 *                                does); prints completed runs/s
 *
 * bench/run compiles and runs it, so hub's figures stand next to the machine's own limits.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int files(const char *dir, long n, long size) {
    char *body = malloc(size);
    if (!body) return 1;
    memset(body, 'x', size);
    int folder = open(dir, O_DIRECTORY);
    if (folder < 0) { perror(dir); return 1; }
    double started = now();
    for (long i = 0; i < n; i++) {
        int fd = openat(folder, ".", O_TMPFILE | O_WRONLY, 0644);
        if (fd < 0) { perror("open"); return 1; }
        if (write(fd, body, size) != size) { perror("write"); return 1; }
        char from[64], name[64];
        snprintf(from, sizeof from, "/proc/self/fd/%d", fd);
        snprintf(name, sizeof name, "B-%ld-OPEN.json", i);
        if (linkat(AT_FDCWD, from, folder, name, AT_SYMLINK_FOLLOW) != 0) { perror("linkat"); return 1; }
        close(fd);
    }
    printf("%.0f\n", n / (now() - started));
    return 0;
}

static int spawn(long n, long at_once, char *cmd) {
    char *argv[] = {cmd, "x", NULL};
    long started = 0, running = 0;
    double t0 = now();
    while (started < n || running > 0) {
        while (running < at_once && started < n) {
            pid_t pid;
            if (posix_spawn(&pid, cmd, NULL, NULL, argv, environ) != 0) { perror(cmd); return 1; }
            started++;
            running++;
        }
        int status;
        if (wait(&status) < 0) { perror("wait"); return 1; }
        running--;
    }
    printf("%.0f\n", n / (now() - t0));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "files") == 0) return files(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc == 5 && strcmp(argv[1], "spawn") == 0) return spawn(atol(argv[2]), atol(argv[3]), argv[4]);
    fprintf(stderr, "usage: ceilings files DIR N BYTES | ceilings spawn N AT_ONCE CMD\n");
    return 2;
}
