/*  zim_workers.c: worker processes of one gateway node (see zim_workers.h).
 */
#include "tools/zim_workers.h"
#include "msg/zim_util.h"
#include "tools/zim_nodeconf.h"

#include <arpa/inet.h>
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_MAX_WORKERS 64

static bool s_sharing;                 //  this process is a worker
static volatile sig_atomic_t s_signal; //  the supervisor got SIGTERM/SIGINT
static char s_dir[128];                //  zim-server's backbone directory, or ""
static pid_t s_pids[S_MAX_WORKERS];    //  the workers; 0 once reaped
static int s_n;                        //  workers this supervisor watches
static int s_status;                   //  the worst exit status of a worker
static char s_program[64];             //  for log lines
static char s_name[64];                //  the node's name; workers are NAME.wK

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
    if (iface && *iface && strcmp (iface, "*") != 0 &&
        inet_pton (AF_INET, iface, &sa.sin_addr) != 1)
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

//  Removes the backbone directory and what is left in it (the ipc files).
static void s_dir_remove (void)
{
    if (!*s_dir)
        return;
    DIR *d = opendir (s_dir);
    struct dirent *e;
    while (d && (e = readdir (d))) {
        char path[sizeof s_dir + 260];
        if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0) {
            snprintf (path, sizeof path, "%s/%s", s_dir, e->d_name);
            unlink (path);
        }
    }
    if (d)
        closedir (d);
    if (rmdir (s_dir))
        fprintf (stderr, "%s: cannot remove %s: %s\n", s_program, s_dir, strerror (errno));
    s_dir[0] = 0;
}

//  Records how worker k ended (st from waitpid). An end nobody asked for
//  takes the node down: said in a line an operator can act on.
static void s_ended (int k, int st, bool asked)
{
    int code = WIFEXITED (st) ? WEXITSTATUS (st) : 1;
    if (!asked) {
        char how[96];
        if (WIFSIGNALED (st))
            snprintf (how, sizeof how, "was killed by signal %d (%s)", WTERMSIG (st),
                      strsignal (WTERMSIG (st)));
        else
            snprintf (how, sizeof how, "exited with status %d", code);
        fprintf (stderr,
                 "%s: worker %d (%s.w%d, pid %d) %s: stopping the whole node; its clients "
                 "were cut off. See that worker's log lines above for why, then restart %s\n",
                 s_program, k, s_name, k, (int)s_pids[k], how, s_program);
        if (code < 1)
            code = 1;
    }
    if (code > s_status)
        s_status = code;
    s_pids[k] = 0;
}

int zim_workers_backbone (const char *name, char *buf, size_t size)
{
    if (!*s_dir)
        return -1;
    snprintf (buf, size, "ipc://%s/%s", s_dir, name);
    return 0;
}

int zim_workers_await (int nbrokers, int timeout_ms)
{
    if (!*s_dir)
        return 0;
    for (int waited = 0; !zsys_interrupted; waited += 20) {
        int missing = 0;
        for (int i = 0; i <= nbrokers; i++) {
            char path[sizeof s_dir + 32];
            snprintf (path, sizeof path, i ? "%s/broker-%d" : "%s/router", s_dir, i);
            missing += access (path, F_OK) != 0;
        }
        if (!missing)
            return 0;
        if (waited >= timeout_ms) {
            zsys_error ("%s: the supervisor's router and brokers are not up after %d s", s_program,
                        timeout_ms / 1000);
            return -1;
        }
        usleep (20000);
    }
    return -1;
}

bool zim_workers_lost (void)
{
    if (s_signal)
        return true;
    for (int k = 0; k < s_n; k++) {
        int st;
        if (s_pids[k] > 0 && waitpid (s_pids[k], &st, WNOHANG) == s_pids[k]) {
            s_ended (k, st, false);
            return true;
        }
    }
    return false;
}

int zim_workers_stop (void)
{
    if (!s_n)
        return s_status ? 1 : 0;
    for (int k = 0; k < s_n; k++)
        if (s_pids[k] > 0)
            kill (s_pids[k], SIGTERM);
    //  Up to 10 s for them to close their connections, then SIGKILL.
    for (int waited = 0, running = 1; running; waited++) {
        running = 0;
        for (int k = 0; k < s_n; k++) {
            int st;
            if (s_pids[k] > 0 && waitpid (s_pids[k], &st, WNOHANG) == s_pids[k])
                s_ended (k, st, true);
            else if (s_pids[k] > 0) {
                running++;
                if (waited == 500) {
                    fprintf (stderr, "%s: worker %d (pid %d) did not stop in 10 s: killed\n",
                             s_program, k, (int)s_pids[k]);
                    kill (s_pids[k], SIGKILL);
                }
            }
        }
        if (running)
            usleep (20000);
    }
    s_n = 0;
    return s_status ? 1 : 0;
}

//  Copies argv into v, then --port port and the WSS and raw TCP ports
//  picked (more: "" if not). Returns the count; v has room for 6 more.
static int s_args (char **v, int argc, char **argv, char *port, char more[2][16])
{
    static const char *opts[2] = {"--tls-port", "--tcp"};
    int w = 0;
    for (int i = 0; i < argc; i++)
        v[w++] = argv[i];
    v[w++] = (char *)"--port";
    v[w++] = port;
    for (int i = 0; i < 2; i++)
        if (*more[i]) {
            v[w++] = (char *)opts[i];
            v[w++] = more[i];
        }
    return w;
}

int zim_workers_run (const char *program, int roles, int n, int argc, char **argv,
                     zim_workers_main_fn *main_fn)
{
    bool server = roles == ZIM_ROLE_ALL; //  zim-server: workers + supervisor
    if (roles != ZIM_ROLE_GATEWAY && !server) {
        fprintf (stderr, "%s: --workers is for zim-server and zim-gateway\n", program);
        return 2;
    }
    snprintf (s_program, sizeof s_program, "%s", program);
    //  The node's name and port, as the worker itself would read them.
    zim_nodeconf_t *conf = zim_nodeconf_new (program, roles);
    int rc = zim_nodeconf_parse (conf, argc, argv);
    if (rc) {
        zim_nodeconf_destroy (&conf);
        return rc > 0 ? 0 : 2;
    }
    char port[16];
    //  zim-server's one gateway is gw-1; its workers gw-1.w0, gw-1.w1, ...
    snprintf (s_name, sizeof s_name, "%s",
              server ? "gw-1"
                     : zim_nodeconf_get (conf, "server/name", zim_nodeconf_default_name (conf)));
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
    //  picks one); the same port for all could not be bound twice. In
    //  zim-server the supervisor keeps PORT, worker K has PORT+1+K.
    char metrics[128] = "";
    snprintf (metrics, sizeof metrics, "%s", zim_nodeconf_get (conf, "server/metrics", ""));
    char *colon = strrchr (metrics, ':');
    int metrics_port = colon ? atoi (colon + 1) : 0;
    zim_nodeconf_destroy (&conf);
    //  zim-server: the backbone's private directory, before any fork.
    char router[sizeof s_dir + 16] = "";
    if (server) {
        const char *tmp = getenv ("TMPDIR");
        snprintf (s_dir, sizeof s_dir, "%s/zim-server-XXXXXX",
                  tmp && *tmp && strlen (tmp) < 64 ? tmp : "/tmp");
        if (!mkdtemp (s_dir)) { //  mode 0700, whatever the umask
            fprintf (stderr, "%s: cannot make the backbone directory %s: %s\n", program, s_dir,
                     strerror (errno));
            s_dir[0] = 0;
            return 1;
        }
        zim_workers_backbone ("router", router, sizeof router);
    }

    //  No SA_RESTART: the signal must interrupt waitpid.
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    int nargc = argc + 17;
    pid_t supervisor = getpid ();
    for (int k = 0; k < n; k++) {
        fflush (NULL);
        s_pids[k] = fork ();
        if (s_pids[k] < 0) {
            fprintf (stderr, "%s: cannot fork worker %d: %s\n", program, k, strerror (errno));
            n = k;
            s_signal = SIGTERM;
            break;
        }
        if (s_pids[k] == 0) {
            signal (SIGTERM, SIG_DFL);
            signal (SIGINT, SIG_DFL);
            //  A supervisor that dies (SIGKILL, a crash) takes its workers
            //  with it: none is left holding the port, orphaned.
            prctl (PR_SET_PDEATHSIG, SIGTERM);
            if (getppid () != supervisor)
                _exit (1);
            s_sharing = true;
            s_n = 0; //  a worker supervises nothing
            char wname[80];
            snprintf (wname, sizeof wname, "%s.w%d", s_name, k);
            char **wargv = (char **)zim_calloc ((size_t)nargc + 1, sizeof *wargv);
            int w = s_args (wargv, argc, argv, port, more);
            wargv[w++] = (char *)"--name";
            wargv[w++] = wname;
            char wmetrics[160];
            int offset = server ? k + 1 : k;
            if (offset > 0 && metrics_port > 0) {
                snprintf (wmetrics, sizeof wmetrics, "%.*s:%d", (int)(colon - metrics), metrics,
                          metrics_port + offset);
                wargv[w++] = (char *)"--metrics";
                wargv[w++] = wmetrics;
            }
            if (offset > 0) { //  one admin endpoint per node: worker 0's, or the supervisor's
                wargv[w++] = (char *)"--admin";
                wargv[w++] = (char *)"";
            }
            if (server) { //  the API is the supervisor's; the router is on the backbone
                wargv[w++] = (char *)"--api";
                wargv[w++] = (char *)"none";
                wargv[w++] = (char *)"--router";
                wargv[w++] = router;
            }
            wargv[w] = NULL;
            int status = main_fn (program, server ? ZIM_ROLE_GATEWAY : roles, w, wargv);
            free (wargv);
            fflush (NULL);
            exit (status); //  not _exit: atexit runs (zsys shutdown, LeakSanitizer)
        }
    }
    s_n = n;
    fprintf (stderr, "%s: %d workers of %s on port %s%s%s\n", program, n, s_name, port,
             server ? ", backbone in " : "", s_dir);
    if (server) {
        //  The supervisor runs the rest, told the ports the workers bind.
        char **pargv = (char **)zim_calloc ((size_t)argc + 7, sizeof *pargv);
        int w = s_args (pargv, argc, argv, port, more);
        rc = s_signal ? 0 : main_fn (program, roles, w, pargv);
        free (pargv);
        int status = zim_workers_stop ();
        s_dir_remove ();
        return rc ? rc : status;
    }
    //  Wait for them; a signal goes on to every worker still running, and
    //  so does the end of any one of them (the node is down as a whole).
    int running = n;
    bool stopping = false;
    while (running > 0) {
        int st;
        pid_t pid = waitpid (-1, &st, 0);
        for (int k = 0; pid > 0 && k < n; k++)
            if (s_pids[k] == pid) {
                s_ended (k, st, stopping || s_signal);
                running--;
            }
        if ((s_signal || pid > 0) && !stopping) {
            stopping = true;
            for (int k = 0; k < n; k++)
                if (s_pids[k])
                    kill (s_pids[k], SIGTERM);
        }
    }
    s_n = 0;
    return s_status;
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
    //  Not a zim-server with workers: no backbone, nothing to watch.
    char ep[64];
    assert (zim_workers_backbone ("router", ep, sizeof ep) == -1);
    assert (!zim_workers_lost ());
    assert (zim_workers_stop () == 0);
    assert (zim_workers_await (1, 0) == 0);
    assert (s_free_port ("127.0.0.1") > 0);
}
