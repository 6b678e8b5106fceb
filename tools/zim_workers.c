/*  zim_workers.c: worker processes of one gateway node (see zim_workers.h).
 */
#include "tools/zim_workers.h"
#include "msg/zim_util.h"
#include "tools/zim_nodeconf.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_MAX_WORKERS 64

static bool s_sharing;                 //  this process is a worker
static volatile sig_atomic_t s_signal; //  the supervisor got SIGTERM/SIGINT

bool zim_workers_sharing (void)
{
    return s_sharing;
}

//  Parses a worker count: 1..S_MAX_WORKERS or "auto" (one per core).
static int s_count (const char *s)
{
    if (strcmp (s, "auto") == 0) {
        long n = sysconf (_SC_NPROCESSORS_ONLN);
        return n < 1 ? 1 : n > S_MAX_WORKERS ? S_MAX_WORKERS : (int)n;
    }
    uint64_t v;
    if (zim_parse_u64 (s, &v) || v < 1 || v > S_MAX_WORKERS)
        return 0;
    return (int)v;
}

int zim_workers_take (int *argc, char **argv)
{
    int n = 1;
    for (int i = 1; i < *argc; i++) {
        int used = 0;
        if (strcmp (argv[i], "--workers") == 0) {
            n = i + 1 < *argc ? s_count (argv[i + 1]) : 0;
            used = i + 1 < *argc ? 2 : 1;
        } else if (strncmp (argv[i], "--workers=", 10) == 0) {
            n = s_count (argv[i] + 10);
            used = 1;
        } else if (strcmp (argv[i], "--") == 0)
            break;
        if (used) {
            memmove (argv + i, argv + i + used, (size_t)(*argc - i - used + 1) * sizeof *argv);
            *argc -= used;
            i--;
            if (!n)
                return 0;
        }
    }
    return n;
}

//  A free TCP port on iface (NULL or "*": any), or -1.
static int s_free_port (const char *iface)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (iface && *iface && strcmp (iface, "*") != 0 && inet_pton (AF_INET, iface, &sa.sin_addr) != 1)
        sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind (fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname (fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs (sa.sin_port);
    close (fd);
    return port;
}

static void s_on_signal (int sig)
{
    s_signal = sig;
}

int zim_workers_run (const char *program, int roles, int n, int argc, char **argv,
                     zim_workers_main_fn *main_fn)
{
    if (roles != ZIM_ROLE_GATEWAY) {
        fprintf (stderr, "%s: --workers is for zim-gateway (a gateway node of a cluster)\n",
                 program);
        return 2;
    }
    //  The node's name and port, as the worker itself would read them.
    zim_nodeconf_t *conf = zim_nodeconf_new (program, roles);
    int rc = zim_nodeconf_parse (conf, argc, argv);
    if (rc) {
        zim_nodeconf_destroy (&conf);
        return rc > 0 ? 0 : 2;
    }
    char name[64], port[16];
    snprintf (name, sizeof name, "%s",
              zim_nodeconf_get (conf, "server/name", zim_nodeconf_default_name (conf)));
    snprintf (port, sizeof port, "%s", zim_nodeconf_get (conf, "server/port", "7700"));
    if (strcmp (port, "0") == 0) {
        //  Every worker must bind the same port: pick it here.
        int p = s_free_port (zim_nodeconf_get (conf, "server/interface", NULL));
        if (p < 0) {
            fprintf (stderr, "%s: no free port for the workers\n", program);
            zim_nodeconf_destroy (&conf);
            return 1;
        }
        snprintf (port, sizeof port, "%d", p);
    }
    //  The same for the WSS and raw TCP ports (gateway/tls_port, tcp_port).
    const char *keys[2] = {"gateway/tls_port", "gateway/tcp_port"};
    const char *opts[2] = {"--tls-port", "--tcp"};
    char more[2][16] = {"", ""};
    for (int i = 0; i < 2; i++)
        if (streq (zim_nodeconf_get (conf, keys[i], "off"), "0")) {
            int p = s_free_port (zim_nodeconf_get (conf, "server/interface", NULL));
            if (p >= 0 && (p == atoi (port) || (i == 1 && p == atoi (more[0]))))
                p = s_free_port (zim_nodeconf_get (conf, "server/interface", NULL));
            if (p < 0 || p == atoi (port) || (i == 1 && p == atoi (more[0]))) {
                fprintf (stderr, "%s: no free port for the workers\n", program);
                zim_nodeconf_destroy (&conf);
                return 1;
            }
            snprintf (more[i], sizeof more[i], "%d", p);
        }
    //  Metrics: each worker its own port, worker K on PORT+K (port 0: each
    //  picks one); the same port for all could not be bound twice.
    char metrics[128] = "";
    snprintf (metrics, sizeof metrics, "%s", zim_nodeconf_get (conf, "server/metrics", ""));
    char *colon = strrchr (metrics, ':');
    int metrics_port = colon ? atoi (colon + 1) : 0;
    zim_nodeconf_destroy (&conf);

    //  No SA_RESTART: the signal must interrupt waitpid.
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    pid_t pids[S_MAX_WORKERS];
    int nargc = argc + 13;
    for (int k = 0; k < n; k++) {
        fflush (NULL);
        pids[k] = fork ();
        if (pids[k] < 0) {
            fprintf (stderr, "%s: cannot fork worker %d: %s\n", program, k, strerror (errno));
            n = k;
            s_signal = SIGTERM;
            break;
        }
        if (pids[k] == 0) {
            signal (SIGTERM, SIG_DFL);
            signal (SIGINT, SIG_DFL);
            s_sharing = true;
            char wname[80];
            snprintf (wname, sizeof wname, "%s.w%d", name, k);
            char **wargv = (char **)zim_calloc ((size_t)nargc + 1, sizeof *wargv);
            int w = 0;
            for (int i = 0; i < argc; i++)
                wargv[w++] = argv[i];
            wargv[w++] = (char *)"--name";
            wargv[w++] = wname;
            wargv[w++] = (char *)"--port";
            wargv[w++] = port;
            for (int i = 0; i < 2; i++)
                if (*more[i]) {
                    wargv[w++] = (char *)opts[i];
                    wargv[w++] = more[i];
                }
            char wmetrics[160];
            if (k > 0 && metrics_port > 0) {
                snprintf (wmetrics, sizeof wmetrics, "%.*s:%d", (int)(colon - metrics), metrics,
                          metrics_port + k);
                wargv[w++] = (char *)"--metrics";
                wargv[w++] = wmetrics;
            }
            if (k > 0) { //  one admin endpoint per node: worker 0's
                wargv[w++] = (char *)"--admin";
                wargv[w++] = (char *)"";
            }
            wargv[w] = NULL;
            int status = main_fn (program, roles, w, wargv);
            free (wargv);
            fflush (NULL);
            _exit (status);
        }
    }
    fprintf (stderr, "%s: %d workers of %s on port %s\n", program, n, name, port);
    //  Wait for them; a signal goes on to every worker still running, and
    //  so does the end of any one of them (the node is down as a whole).
    int running = n, status = 0;
    bool stopping = false;
    while (running > 0) {
        int st;
        pid_t pid = waitpid (-1, &st, 0);
        if (pid > 0) {
            for (int k = 0; k < n; k++)
                if (pids[k] == pid) {
                    pids[k] = 0;
                    running--;
                    int code = WIFEXITED (st) ? WEXITSTATUS (st) : 1;
                    if (code > status)
                        status = code;
                }
        }
        if ((s_signal || pid > 0) && !stopping) {
            stopping = true;
            for (int k = 0; k < n; k++)
                if (pids[k])
                    kill (pids[k], SIGTERM);
        }
    }
    return status;
}

void zim_workers_test (bool verbose)
{
    (void)verbose;
    char a0[] = "zim-gateway", a1[] = "--workers", a2[] = "3", a3[] = "-p", a4[] = "0",
         a5[] = "--workers=auto";
    char *argv[] = {a0, a1, a2, a3, a4, NULL};
    int argc = 5;
    assert (zim_workers_take (&argc, argv) == 3);
    assert (argc == 3 && strcmp (argv[1], "-p") == 0 && strcmp (argv[2], "0") == 0 && !argv[3]);
    char *argv2[] = {a0, a5, NULL};
    argc = 2;
    assert (zim_workers_take (&argc, argv2) >= 1 && argc == 1);
    char b2[] = "65";
    char *argv3[] = {a0, a1, b2, NULL};
    argc = 3;
    assert (zim_workers_take (&argc, argv3) == 0);
    char *argv4[] = {a0, a3, a4, NULL};
    argc = 3;
    assert (zim_workers_take (&argc, argv4) == 1 && argc == 3);
    assert (!zim_workers_sharing ());
    assert (s_free_port ("127.0.0.1") > 0);
}
