/*  zim_selftest.c: runs every class's _test selftest, or the ones named
    on the command line (zim_selftest [-v] [mp msg store router broker gateway token]).
*/
#include <czmq.h>
#include <stdbool.h>
#include <string.h>

#include "msg/zim_mp.h"
#include "msg/zim_msg.h"
#include "msg/zim_admin.h"
#include "msg/zim_shell.h"
#include "msg/zim_curve.h"
#include "msg/zim_zap.h"
#include "store/zim_store.h"
#include "router/zim_router.h"
#include "router/zim_routes.h"
#include "router/zim_members.h"
#include "broker/zim_broker.h"
#include "gateway/zim_token.h"
#include "gateway/zim_gateway.h"
#include "tools/zim_nodeconf.h"
#include "tools/zim_datadir.h"
#include "tools/zim_adminsrv.h"
#include "tools/zim_membership.h"
#include "tools/zim_node.h"

typedef struct {
    const char *name;           //  name to select it on the command line
    void (*test) (bool verbose); //  the selftest
} s_test_t;

static const s_test_t s_tests[] = {
    {"mp", zim_mp_test},         {"msg", zim_msg_test},       {"admin", zim_admin_test},       {"shell", zim_shell_test}, {"curve", zim_curve_test}, {"zap", zim_zap_test},       {"token", zim_token_test},
    {"store", zim_store_test},   {"routes", zim_routes_test},  {"members", zim_members_test}, {"router", zim_router_test}, {"broker", zim_broker_test},
    {"gateway", zim_gateway_test}, {"nodeconf", zim_nodeconf_test}, {"datadir", zim_datadir_test},
    {"adminsrv", zim_adminsrv_test}, {"membership", zim_membership_test}, {"node", zim_node_test},
};

int main (int argc, char **argv)
{
    bool verbose = false;
    int first = 1;
    if (argc > 1 && strcmp (argv[1], "-v") == 0) {
        verbose = true;
        first = 2;
    }
    zsys_init ();
    int run = 0;
    for (size_t i = 0; i < sizeof s_tests / sizeof s_tests[0]; i++) {
        bool wanted = first >= argc;
        for (int a = first; a < argc; a++)
            if (strcmp (argv[a], s_tests[i].name) == 0)
                wanted = true;
        if (!wanted)
            continue;
        printf (" * %s: ", s_tests[i].name);
        fflush (stdout);
        s_tests[i].test (verbose);
        printf ("OK\n");
        run++;
    }
    printf ("%d passed, 0 failed\n", run);
    return run > 0 ? 0 : 1;
}
