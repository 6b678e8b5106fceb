/*  fuzz_config.c: a config file as a node program reads it
    (zim_nodeconf_parse with -c FILE: czmq's ZPL reader, then the checks
    before start), for zim-server and each cluster node program (first
    byte). A config that parses leaves only values the nodes can run with:
    a port, a sync mode, a broker count and a curve flag in range, no
    dev_tokens; every node of its tree has a name.
*/
#include "msg/zim_util.h"
#include "tests/fuzz/zim_fuzz.h"
#include "tools/zim_nodeconf.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_path[64];

static void s_cleanup (void)
{
    unlink (s_path);
}

//  Every node of the tree has a name; counts them.
static size_t s_walk (zconfig_t *node, int depth)
{
    assert (depth < 1000);
    size_t n = 0;
    for (; node; node = zconfig_next (node)) {
        assert (zconfig_name (node));
        n += 1 + s_walk (zconfig_child (node), depth + 1);
    }
    return n;
}

ZIM_FUZZ_TARGET (config)
{
    static const struct {
        const char *program;
        int roles;
    } programs[] = {{"zim-server", ZIM_ROLE_ALL},
                    {"zim-gateway", ZIM_ROLE_GATEWAY},
                    {"zim-broker", ZIM_ROLE_BROKER},
                    {"zim-router", ZIM_ROLE_ROUTER},
                    {"zim-store", ZIM_ROLE_STORE}};
    if (!*s_path) {
        snprintf (s_path, sizeof s_path, "/tmp/zim-fuzz-config-%d.cfg", (int)getpid ());
        atexit (s_cleanup);
    }
    if (size < 1)
        return 0;
    int which = data[0] % 5;
    FILE *f = fopen (s_path, "wb");
    assert (f);
    assert (fwrite (data + 1, 1, size - 1, f) == size - 1);
    assert (fclose (f) == 0);

    zim_nodeconf_t *conf = zim_nodeconf_new (programs[which].program, programs[which].roles);
    char *argv[] = {(char *)programs[which].program, "-c", s_path, NULL};
    int rc = zim_nodeconf_parse (conf, 3, argv);
    assert (rc == 0 || rc == -1);
    if (rc == 0) {
        const char *sync = zim_nodeconf_get (conf, "store/sync", "batch");
        assert (streq (sync, "always") || streq (sync, "batch") || streq (sync, "none"));
        uint64_t n;
        assert (zim_parse_u64 (zim_nodeconf_get (conf, "server/port", "7700"), &n) == 0 &&
                n <= 65535);
        assert (zim_parse_u64 (zim_nodeconf_get (conf, "server/brokers", "1"), &n) == 0 &&
                n >= 1 && n <= ZIM_MAX_BROKERS);
        const char *curve = zim_nodeconf_get (conf, "curve/enabled", "0");
        assert (streq (curve, "0") || streq (curve, "1"));
        assert (!zconfig_locate (zim_nodeconf_tree (conf), "gateway/dev_tokens"));
        s_walk (zim_nodeconf_tree (conf), 0);
    }
    zim_nodeconf_destroy (&conf);
    return 0;
}
