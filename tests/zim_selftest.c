/*  zim_selftest.c: runs every class's _test selftest, or the ones named
    on the command line (zim_selftest [-v] [NAME ...], names as in s_tests).
*/
#include <czmq.h>
#include <stdbool.h>
#include <string.h>

#include "msg/zim_mp.h"
#include "msg/zim_codec.h"
#include "msg/zim_sample.h"
#include "msg/zim_text.h"
#include "msg/zim_id.h"
#include "msg/zim_conv.h"
#include "msg/zim_ring.h"
#include "msg/zim_msg.h"
#include "msg/zim_admin.h"
#include "msg/zim_metrics.h"
#include "msg/zim_shell.h"
#include "msg/zim_curve.h"
#include "msg/zim_zap.h"
#include "store/zim_store.h"
#include "store/zim_storekit.h"
#include "store/zim_commit.h"
#include "store/zim_wal.h"
#include "store/zim_db.h"
#include "store/zim_key.h"
#include "store/zim_msgrec.h"
#include "store/zim_seqs.h"
#include "store/zim_txcache.h"
#include "store/zim_inbox.h"
#include "store/zim_idem.h"
#include "store/zim_cursor.h"
#include "store/zim_reader.h"
#include "store/zim_retention.h"
#include "store/zim_convs.h"
#include "store/zim_pushq.h"
#include "store/zim_receipts.h"
#include "store/zim_groups.h"
#include "broker/zim_gfan.h"
#include "broker/zim_slots.h"
#include "router/zim_router.h"
#include "router/zim_routes.h"
#include "router/zim_members.h"
#include "broker/zim_broker.h"
#include "broker/zim_deliver.h"
#include "broker/zim_notify.h"
#include "broker/zim_reads.h"
#include "broker/zim_sendq.h"
#include "broker/zim_sendqkit.h"
#include "broker/zim_shards.h"
#include "broker/zim_xshard.h"
#include "gateway/zim_apps.h"
#include "gateway/zim_token.h"
#include "gateway/zim_timers.h"
#include "gateway/zim_uvzmq.h"
#include "gateway/zim_listener.h"
#include "gateway/zim_tcp.h"
#include "gateway/zim_edge.h"
#include "gateway/zim_session.h"
#include "gateway/zim_sessions.h"
#include "gateway/zim_frames.h"
#include "gateway/zim_links.h"
#include "gateway/zim_http.h"
#include "gateway/zim_gateway.h"
#include "gateway/zim_rooms.h"
#include "gateway/zim_roomcast.h"
#include "gateway/zim_roompolicy.h"
#include "gateway/zim_roomusers.h"
#include "router/zim_roomtab.h"
#include "router/zim_usertab.h"
#include "tools/zim_apisrv.h"
#include "tools/zim_apibody.h"
#include "tools/zim_apihttp.h"
#include "tools/zim_apigroups.h"
#include "tools/zim_apipersist.h"
#include "sdk/c/zim_sdk_client.h"
#include "sdk/c/zim_sdk_conn.h"
#include "sdk/c/zim_sdk_frame.h"
#include "sdk/c/zim_sdk_inbox.h"
#include "sdk/c/zim_sdk_json.h"
#include "sdk/c/zim_sdk_loop.h"
#include "sdk/c/zim_sdk_outq.h"
#include "sdk/c/zim_sdk_reqs.h"
#include "sdk/c/zim_sdk_sendq.h"
#include "tools/zim_nodeconf.h"
#include "tools/zim_datadir.h"
#include "tools/zim_adminsrv.h"
#include "tools/zim_metricsrv.h"
#include "tools/zim_storeadmin.h"
#include "tools/zim_membership.h"
#include "tools/zim_node.h"
#include "tools/zim_workers.h"

typedef struct {
    const char *name;            //  name to select it on the command line
    void (*test) (bool verbose); //  the selftest
} s_test_t;

static const s_test_t s_tests[] = {
    {"mp", zim_mp_test},
    {"msg", zim_msg_test},
    {"cframe", zim_cframe_test},
    {"admin", zim_admin_test},
    {"metrics", zim_metrics_test},
    {"shell", zim_shell_test},
    {"key", zim_key_test},
    {"msgrec", zim_msgrec_test},
    {"db", zim_db_test},
    {"txcache", zim_txcache_test},
    {"seqs", zim_seqs_test},
    {"idem", zim_idem_test},
    {"inbox", zim_inbox_test},
    {"cursor", zim_cursor_test},
    {"reader", zim_reader_test},
    {"retention", zim_retention_test},
    {"convs", zim_convs_test},
    {"pushq", zim_pushq_test},
    {"receipts", zim_receipts_test},
    {"groups", zim_groups_test},
    {"slots", zim_slots_test},
    {"gfan", zim_gfan_test},
    {"wal", zim_wal_test},
    {"commit", zim_commit_test},
    {"storekit", zim_storekit_test},
    {"store", zim_store_test},
    {"router", zim_router_test},
    {"shards", zim_shards_test},
    {"deliver", zim_deliver_test},
    {"notify", zim_notify_test},
    {"reads", zim_reads_test},
    {"xshard", zim_xshard_test},
    {"sendqkit", zim_sendqkit_test},
    {"sendq", zim_sendq_test},
    {"broker", zim_broker_test},
    {"token", zim_token_test},
    {"codec", zim_codec_test},
    {"sample", zim_sample_test},
    {"text", zim_text_test},
    {"id", zim_id_test},
    {"conv", zim_conv_test},
    {"ring", zim_ring_test},
    {"gateway", zim_gateway_test},
    {"apps", zim_apps_test},
    {"timers", zim_timers_test},
    {"uvzmq", zim_uvzmq_test},
    {"listener", zim_listener_test},
    {"tcp", zim_tcp_test},
    {"edge", zim_edge_test},
    {"session", zim_session_test},
    {"sessions", zim_sessions_test},
    {"frames", zim_frames_test},
    {"links", zim_links_test},
    {"http", zim_http_test},
    {"sdk_loop", zim_sdk_loop_test},
    {"sdk_conn", zim_sdk_conn_test},
    {"sdk_outq", zim_sdk_outq_test},
    {"sdk_sendq", zim_sdk_sendq_test},
    {"sdk_reqs", zim_sdk_reqs_test},
    {"sdk_frame", zim_sdk_frame_test},
    {"sdk_inbox", zim_sdk_inbox_test},
    {"sdk_json", zim_sdk_json_test},
    {"client", zim_sdk_client_test},
    {"sdk_rooms", zim_sdk_rooms_test},
    {"sdk_chans", zim_sdk_chans_test},
    {"sdk_recv", zim_sdk_recv_test},
    {"curve", zim_curve_test},
    {"zap", zim_zap_test},
    {"routes", zim_routes_test},
    {"members", zim_members_test},
    {"nodeconf", zim_nodeconf_test},
    {"datadir", zim_datadir_test},
    {"adminsrv", zim_adminsrv_test},
    {"metricsrv", zim_metricsrv_test},
    {"storeadmin", zim_storeadmin_test},
    {"membership", zim_membership_test},
    {"node", zim_node_test},
    {"workers", zim_workers_test},
    //  rooms and live signals (issue 13)
    {"rooms", zim_rooms_test},
    {"roomcast", zim_roomcast_test},
    {"roompolicy", zim_roompolicy_test},
    {"roomusers", zim_roomusers_test},
    {"roomtab", zim_roomtab_test},
    {"usertab", zim_usertab_test},
    {"apisrv", zim_apisrv_test},
    {"apihttp", zim_apihttp_test},
    {"apibody", zim_apibody_test},
    {"apigroups", zim_apigroups_test},
    {"apipersist", zim_apipersist_test},
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
