/*  zim_tkcluster.c: cluster node processes for the black-box tests (see
    zim_tkcluster.h).
*/
#include "tests/zim_tkcluster.h"
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>

//  Writes 64 random hex characters to path (mode 0600). Returns 0 or -1.
static int s_write_secret (const char *path)
{
    unsigned char raw[32];
    int fd = open ("/dev/urandom", O_RDONLY);
    if (fd < 0 || read (fd, raw, sizeof raw) != (ssize_t)sizeof raw) {
        if (fd >= 0)
            close (fd);
        return -1;
    }
    close (fd);
    char hex[66];
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf (hex + 2 * i, 3, "%02x", raw[i]);
    hex[64] = '\n';
    hex[65] = 0;
    fd = open (path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return -1;
    ssize_t n = write (fd, hex, 65);
    close (fd);
    return n == 65 ? 0 : -1;
}

//  Copies the value of "key=" in a ready line (up to a space) into buf.
static void s_ready_field (const char *line, const char *key, char *buf, size_t size)
{
    const char *p = strstr (line, key);
    if (!p || size == 0)
        return;
    p += strlen (key);
    size_t n = strcspn (p, " \n");
    if (n >= size)
        n = size - 1;
    memcpy (buf, p, n);
    buf[n] = 0;
}

void tk_node_log_tail (const tk_node_t *n, int lines)
{
    static char buf[1 << 20];
    ssize_t len = tk_read_file (n->log, buf, sizeof buf);
    if (len <= 0) {
        fprintf (stderr, "(%s: no log at %s)\n", n->name, n->log);
        return;
    }
    const char *p = buf + len;
    for (int seen = 0; p > buf && seen <= lines; p--)
        if (p[-1] == '\n')
            seen++;
    fprintf (stderr, "--- last lines of %s ---\n%s--- end of %s ---\n", n->log,
             p == buf ? buf : p + 1, n->name);
}

//  Picks new free ports for the node's endpoints.
static void s_node_ports (tk_node_t *n)
{
    snprintf (n->admin, sizeof n->admin, "tcp://127.0.0.1:%d", tk_free_port ());
    if (strcmp (n->program, "zim-gateway") == 0)
        n->ws_port = tk_free_port ();
    else
        snprintf (n->bind, sizeof n->bind, "tcp://127.0.0.1:%d", tk_free_port ());
}

//  One attempt to start the node. Returns 0, -1 (failed, said why) or -2
//  (an address was in use).
static int s_node_run (tk_cluster_t *c, tk_node_t *n)
{
    const char *dir = getenv ("ZIM_BIN");
    char program[512], port[16], node_id[16];
    snprintf (program, sizeof program, "%s/%s", dir && *dir ? dir : ".", n->program);
    snprintf (port, sizeof port, "%d", n->ws_port);
    snprintf (node_id, sizeof node_id, "%d", n->index);
    const char *argv[32] = {program, "--name", n->name, "--admin", n->admin, "--data", c->dir};
    int argc = 7;
    if (c->curve)
        argv[argc++] = "--curve";
    bool gateway = strcmp (n->program, "zim-gateway") == 0;
    if (!gateway) {
        argv[argc++] = "--bind";
        argv[argc++] = n->bind;
    }
    //  Every router (a router joins itself anyway).
    for (size_t i = 0; i < c->nnodes && argc < 24; i++) {
        tk_node_t *r = &c->nodes[i];
        if (r != n && strcmp (r->program, "zim-router") == 0) {
            argv[argc++] = "--router";
            argv[argc++] = r->bind;
        }
    }
    if (strcmp (n->program, "zim-broker") == 0) {
        argv[argc++] = "--node-id";
        argv[argc++] = node_id;
        argv[argc++] = "--config";
        argv[argc++] = c->broker_cfg;
    } else if (strcmp (n->program, "zim-store") == 0) {
        argv[argc++] = "--sync";
        argv[argc++] = "batch";
    } else if (gateway) {
        argv[argc++] = "--port";
        argv[argc++] = port;
        argv[argc++] = "--interface";
        argv[argc++] = "127.0.0.1";
        argv[argc++] = "--api"; //  the push API, on a free port
        argv[argc++] = "127.0.0.1:0";
    }
    argv[argc] = NULL;
    n->starts++;
    if (n->starts == 1)
        snprintf (n->log, sizeof n->log, "%.200s/%.40s.log", c->dir, n->name);
    else
        snprintf (n->log, sizeof n->log, "%.200s/%.40s-%d.log", c->dir, n->name, n->starts);
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
#ifdef __linux__
        //  A test that fails exits at once, without its teardown: the
        //  nodes must not outlive it.
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () != parent)
            _exit (1);
#endif
        tk_exec_logged (n->log, program, argv);
    }
    (void)parent;
    n->pid = pid;
    //  Wait for "PROGRAM ready: name=N bind=EP|ws=URL admin=EP ...".
    char needle[48];
    snprintf (needle, sizeof needle, "%s ready: ", n->program);
    static char buf[1 << 16];
    for (int waited = 0; waited < 15000; waited += 10) {
        if (tk_read_file (n->log, buf, sizeof buf) > 0) {
            char *ready = strstr (buf, needle);
            char *nl = ready ? strchr (ready, '\n') : NULL;
            if (ready && nl) {
                *nl = 0;
                s_ready_field (ready, " admin=", n->admin, sizeof n->admin);
                if (gateway) {
                    char ws[128] = "";
                    s_ready_field (ready, " ws=", ws, sizeof ws);
                    char *colon = strrchr (ws, ':');
                    n->ws_port = colon ? atoi (colon + 1) : 0;
                } else
                    s_ready_field (ready, " bind=", n->bind, sizeof n->bind);
                if (strcmp (n->program, "zim-router") == 0 && n->index == 1)
                    snprintf (c->router, sizeof c->router, "%s", n->bind);
                memset (&n->srv, 0, sizeof n->srv);
                n->srv.ws_port = n->ws_port;
                snprintf (n->srv.admin, sizeof n->srv.admin, "%s", n->admin);
                snprintf (n->srv.data, sizeof n->srv.data, "%s", c->dir);
                snprintf (n->srv.key, sizeof n->srv.key, "%s", c->key);
                snprintf (n->srv.log, sizeof n->srv.log, "%s", n->log);
                n->srv.curve = c->keys;
                if (gateway) {
                    char api[128] = "", path[300];
                    s_ready_field (ready, " api=", api, sizeof api);
                    char *colon = strrchr (api, ':');
                    n->srv.api_port = colon ? atoi (colon + 1) : 0;
                    snprintf (path, sizeof path, "%.200s/app-demo.apikey", c->dir);
                    if (tk_read_file (path, n->srv.apikey, sizeof n->srv.apikey) > 0)
                        n->srv.apikey[strcspn (n->srv.apikey, "\r\n")] = 0;
                }
                return 0;
            }
        }
        int status;
        if (waitpid (pid, &status, WNOHANG) == pid) {
            n->pid = 0;
            fprintf (stderr, "%s (%s) exited before its ready line\n", n->name, n->program);
            tk_node_log_tail (n, 30);
            return tk_read_file (n->log, buf, sizeof buf) > 0 && strstr (buf, "in use") ? -2 : -1;
        }
        usleep (10000);
    }
    fprintf (stderr, "%s (%s) logged no ready line in 15 s\n", n->name, n->program);
    tk_node_log_tail (n, 30);
    tk_node_stop (n, SIGKILL);
    return -1;
}

//  How many routers the cluster has.
static int s_cluster_routers (tk_cluster_t *c)
{
    int routers = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        routers += strcmp (c->nodes[i].program, "zim-router") == 0;
    return routers;
}

int tk_node_start (tk_cluster_t *c, tk_node_t *n)
{
    if (n->pid > 0)
        return 0;
    //  A port picked free may have been taken since: a node may move to
    //  others, but not a router that was up before or that other routers
    //  were already told about (every node connects to its endpoint).
    bool router = strcmp (n->program, "zim-router") == 0;
    bool may_move = !router || (n->starts == 0 && s_cluster_routers (c) == 1);
    if (n->starts == 0 && !n->admin[0])
        s_node_ports (n);
    int rc = s_node_run (c, n);
    for (int retry = 0; rc == -2 && retry < 3; retry++) {
        //  A router that must keep its bind endpoint may still move its
        //  admin endpoint: no other node knows it.
        fprintf (stderr, "%s: trying other ports%s\n", n->name, may_move ? "" : " (admin only)");
        if (may_move)
            s_node_ports (n);
        else
            snprintf (n->admin, sizeof n->admin, "tcp://127.0.0.1:%d", tk_free_port ());
        rc = s_node_run (c, n);
    }
    return rc == 0 ? 0 : -1;
}

void tk_node_stop (tk_node_t *n, int sig)
{
    tk_reap (&n->pid, sig);
}

zsock_t *tk_cluster_socket (tk_cluster_t *c, int type)
{
    return zim_curve_socket (c->curve ? c->node_keys : NULL, type, NULL, 64 << 20);
}

tk_node_t *tk_cluster_node (tk_cluster_t *c, const char *name)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (strcmp (c->nodes[i].name, name) == 0)
            return &c->nodes[i];
    return NULL;
}

//  Adds a node (not started) to the cluster.
static tk_node_t *s_cluster_add (tk_cluster_t *c, const char *program, const char *prefix,
                                 int index)
{
    if (c->nnodes == TK_CLUSTER_MAX)
        return NULL;
    tk_node_t *n = &c->nodes[c->nnodes++];
    memset (n, 0, sizeof *n);
    snprintf (n->program, sizeof n->program, "%s", program);
    snprintf (n->name, sizeof n->name, "%s-%d", prefix, index);
    n->index = index;
    return n;
}

char *tk_cluster_status (tk_cluster_t *c, const tk_node_t *n)
{
    char *text = NULL;
    int code = zim_admin_call_curve (n->admin, c->keys, c->key, 2000, "status", NULL, &text);
    if (code != 0) {
        free (text);
        return NULL;
    }
    return text;
}

//  True if the status JSON lists name as alive.
static bool s_status_alive (const char *json, const char *name)
{
    char needle[64];
    snprintf (needle, sizeof needle, "{\"name\":\"%s\"", name);
    const char *p = strstr (json, needle);
    if (!p)
        return false;
    const char *next = strstr (p + 1, "{\"name\":");
    const char *alive = strstr (p, "\"alive\":true");
    return alive && (!next || alive < next);
}

//  Waits until the maps of the running gateways are as expected, and stay
//  so for stable_ms.
static int s_cluster_wait (tk_cluster_t *c, int timeout_ms, int stable_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    int64_t since = -1; //  when the maps were first seen as expected
    char *json = NULL;
    const char *why = "no gateway answered";
    while (zclock_mono () < deadline) {
        bool whole = true, asked = false;
        for (size_t g = 0; g < c->nnodes && whole; g++) {
            tk_node_t *gw = &c->nodes[g];
            if (gw->pid <= 0 || strcmp (gw->program, "zim-gateway") != 0)
                continue;
            asked = true;
            free (json);
            json = tk_cluster_status (c, gw);
            if (!json) {
                whole = false;
                why = "a gateway's admin endpoint did not answer";
                break;
            }
            for (size_t i = 0; i < c->nnodes && whole; i++)
                if (s_status_alive (json, c->nodes[i].name) != (c->nodes[i].pid > 0)) {
                    whole = false;
                    why = c->nodes[i].name;
                }
        }
        if (whole && asked) {
            if (since < 0)
                since = zclock_mono ();
            if (zclock_mono () - since >= stable_ms) {
                free (json);
                return 0;
            }
        } else
            since = -1;
        usleep (50000);
    }
    fprintf (stderr, "cluster map not as expected after %d ms (first wrong: %s); last status: %s\n",
             timeout_ms, why, json ? json : "none");
    free (json);
    return -1;
}

int tk_cluster_wait (tk_cluster_t *c, int timeout_ms)
{
    //  After a kill or a restart a gateway may still show an old map (the
    //  previous router's, or one from before the member left): the maps
    //  must stay right for longer than the one-second MAP period.
    return s_cluster_wait (c, timeout_ms, 1500);
}

//  The work of tk_cluster_start.
static int s_cluster_start (tk_cluster_t *c, int routers, int stores, int brokers, int gateways)
{
    snprintf (c->dir, sizeof c->dir, "./tk-cluster-XXXXXX"); //  mkdtemp template
    if (!mkdtemp (c->dir))
        return -1;
    //  A failed check ends the forked test before its teardown: the data
    //  and logs stay for a look (make clean removes them).
    fprintf (stderr, "test cluster data and node logs in %s\n", c->dir);
    char path[400];
    snprintf (path, sizeof path, "%s/app-demo.secret", c->dir);
    if (s_write_secret (path))
        return -1;
    snprintf (path, sizeof path, "%s/admin.key", c->dir);
    if (s_write_secret (path) || tk_read_file (path, c->key, sizeof c->key) <= 0)
        return -1;
    c->key[strcspn (c->key, "\r\n")] = 0;
    if (c->curve) {
        //  As tools/cluster does: zimctl keygen DIR/curve.
        snprintf (path, sizeof path, "%s/curve", c->dir);
        if (zim_curve_keygen_cluster (path) < 0 || zim_curve_keygen_client (path, "admin") < 0 ||
            !(c->keys = zim_curve_load_client (path, "admin", false)) ||
            !(c->node_keys = zim_curve_load_node (path)))
            return -1;
    }
    //  The brokers know every shard from the start (broker/shards).
    snprintf (c->broker_cfg, sizeof c->broker_cfg, "%s/broker.cfg", c->dir);
    FILE *f = fopen (c->broker_cfg, "w");
    if (!f)
        return -1;
    fprintf (f, "broker\n    shards = \"");
    for (int i = 1; i <= stores; i++)
        fprintf (f, "%sstore-%d", i > 1 ? "," : "", i);
    fprintf (f, "\"\n");
    fclose (f);
    for (int i = 1; i <= routers; i++)
        s_cluster_add (c, "zim-router", "router", i);
    //  Each router is told about the others before they are up: their
    //  endpoints are picked now.
    for (size_t i = 0; i < c->nnodes; i++)
        s_node_ports (&c->nodes[i]);
    for (int i = 1; i <= stores; i++)
        s_cluster_add (c, "zim-store", "store", i);
    for (int i = 1; i <= brokers; i++)
        s_cluster_add (c, "zim-broker", "broker", i);
    for (int i = 1; i <= gateways; i++)
        s_cluster_add (c, "zim-gateway", "gw", i);
    for (size_t i = 0; i < c->nnodes; i++)
        if (tk_node_start (c, &c->nodes[i]))
            return -1;
    return s_cluster_wait (c, 10000, 0);
}

int tk_cluster_start (tk_cluster_t *c, int stores, int brokers, int gateways)
{
    return tk_cluster_start_with (c, 1, stores, brokers, gateways, TK_CLUSTER_CURVE);
}

int tk_cluster_start_routers (tk_cluster_t *c, int routers, int stores, int brokers, int gateways)
{
    return tk_cluster_start_with (c, routers, stores, brokers, gateways, TK_CLUSTER_CURVE);
}

int tk_cluster_start_with (tk_cluster_t *c, int routers, int stores, int brokers, int gateways,
                           bool curve)
{
    memset (c, 0, sizeof *c);
    c->curve = curve;
    if (routers >= 1 && routers + stores + brokers + gateways <= TK_CLUSTER_MAX &&
        s_cluster_start (c, routers, stores, brokers, gateways) == 0)
        return 0;
    //  The logs said why; the test's teardown will not run.
    tk_cluster_cleanup (c);
    return -1;
}

int tk_cluster_stop (tk_cluster_t *c)
{
    int problems = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i].pid > 0)
            kill (c->nodes[i].pid, SIGTERM);
    int64_t deadline = zclock_mono () + 5000;
    for (size_t i = 0; i < c->nnodes; i++) {
        tk_node_t *n = &c->nodes[i];
        if (n->pid <= 0)
            continue;
        int status = 0;
        pid_t rc;
        while ((rc = waitpid (n->pid, &status, WNOHANG)) == 0 && zclock_mono () < deadline)
            usleep (10000);
        if (rc == 0) {
            fprintf (stderr, "%s did not stop within 5 s of SIGTERM: killed\n", n->name);
            kill (n->pid, SIGKILL);
            waitpid (n->pid, &status, 0);
            tk_node_log_tail (n, 20);
            problems++;
        } else if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
            fprintf (stderr, "%s ended with %s %d after SIGTERM\n", n->name,
                     WIFEXITED (status) ? "exit status" : "signal",
                     WIFEXITED (status) ? WEXITSTATUS (status) : WTERMSIG (status));
            tk_node_log_tail (n, 20);
            problems++;
        }
        n->pid = 0;
    }
    //  Every log of every start.
    for (size_t i = 0; i < c->nnodes; i++) {
        tk_node_t *n = &c->nodes[i];
        for (int start = 1; start <= n->starts; start++) {
            char path[300];
            if (start == 1)
                snprintf (path, sizeof path, "%.200s/%.40s.log", c->dir, n->name);
            else
                snprintf (path, sizeof path, "%.200s/%.40s-%d.log", c->dir, n->name, start);
            problems += tk_log_reports (path);
        }
    }
    return problems;
}

void tk_cluster_cleanup (tk_cluster_t *c)
{
    for (size_t i = c->nnodes; i-- > 0;)
        tk_node_stop (&c->nodes[i], SIGKILL);
    zim_curve_destroy (&c->keys);
    zim_curve_destroy (&c->node_keys);
    if (getenv ("ZIM_KEEP")) {
        if (c->dir[0])
            fprintf (stderr, "ZIM_KEEP: cluster data and logs kept in %s\n", c->dir);
        return;
    }
    if (c->dir[0] && strncmp (c->dir, "./tk-cluster-", 13) == 0) {
        char cmd[300];
        snprintf (cmd, sizeof cmd, "rm -rf '%s'", c->dir);
        if (system (cmd) != 0)
            fprintf (stderr, "could not remove %s\n", c->dir);
    }
}
