/*
 * Pod sandbox process for k8slite/pause: holds the pod's namespaces open, sleeps until
 * told to stop, and reaps orphaned children when it is PID 1 of a shared PID namespace.
 *
 * As PID 1 the kernel drops every signal that has no handler, so SIGTERM and SIGINT get
 * explicit handlers; otherwise `docker stop` would wait out its grace period and SIGKILL.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "1.0"

static void on_stop(int sig)
{
    static const char msg[] = "pause: shutting down\n";
    (void)sig;
    /* Only async-signal-safe calls in a handler: write(2) and _exit(2). */
    (void)write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(0);
}

static void on_child(int sig)
{
    int saved = errno;
    (void)sig;
    /* One SIGCHLD may stand for many exits, so reap until none is left. */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    errno = saved;
}

static void handle(int sig, void (*fn)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) < 0) {
        perror("pause: sigaction");
        _exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        puts("k8slite pause " VERSION);
        return 0;
    }
    if (getpid() != 1)
        fputs("pause: warning: not PID 1, orphans of this pod are not reaped here\n", stderr);
    handle(SIGINT, on_stop, 0);
    handle(SIGTERM, on_stop, 0);
    handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART);
    for (;;)
        pause();
}
