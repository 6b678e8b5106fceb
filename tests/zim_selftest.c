/*  zim_selftest.c: runs every class's _test selftest, or the ones named
    on the command line (zim_selftest [-v] [mp codec sample text id ring msg admin shell
    token store router broker gateway]).
*/
#include <czmq.h>
#include <stdbool.h>
#include <string.h>

#include "msg/zim_mp.h"
#include "msg/zim_codec.h"
#include "msg/zim_sample.h"
#include "msg/zim_text.h"
#include "msg/zim_id.h"
#include "msg/zim_ring.h"
#include "msg/zim_msg.h"
#include "msg/zim_admin.h"
#include "msg/zim_shell.h"
#include "store/zim_store.h"
#include "router/zim_router.h"
#include "broker/zim_broker.h"
#include "gateway/zim_token.h"
#include "gateway/zim_gateway.h"

typedef struct {
    const char *name;           //  name to select it on the command line
    void (*test) (bool verbose); //  the selftest
} s_test_t;

static const s_test_t s_tests[] = {
    {"mp", zim_mp_test},         {"codec", zim_codec_test},   {"sample", zim_sample_test},
    {"text", zim_text_test},     {"id", zim_id_test},         {"ring", zim_ring_test},
    {"msg", zim_msg_test},       {"admin", zim_admin_test},       {"shell", zim_shell_test},       {"token", zim_token_test},
    {"store", zim_store_test},   {"router", zim_router_test}, {"broker", zim_broker_test},
    {"gateway", zim_gateway_test},
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
