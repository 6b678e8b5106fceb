/*  fuzz_config.c: a config file as a node program reads it: its text
    through zim_nodeconf_load (what -c FILE does once the file is read:
    czmq's ZPL reader), then zim_nodeconf_parse (the checks before start),
    for zim-server and each cluster node program (first byte). A config that parses leaves only values the nodes can run with:
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
    static bool quiet;
    if (!quiet) {
        //  czmq logs every syntax error it finds: not wanted here.
        zsys_set_logstream (NULL);
        quiet = true;
    }
    if (size < 1)
        return 0;
    int which = data[0] % 5;
    zim_nodeconf_t *conf = zim_nodeconf_new (programs[which].program, programs[which].roles);
    int rc = zim_nodeconf_load (conf, (const char *)data + 1, size - 1);
    if (rc == 0) {
        char *argv[] = {(char *)programs[which].program, NULL};
        rc = zim_nodeconf_parse (conf, 1, argv);
        assert (rc == 0 || rc == -1);
    }
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
