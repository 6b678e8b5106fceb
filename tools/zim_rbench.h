/*  zim_rbench.h: zim-bench room and zim-bench push, the live fan-out
    benchmarks. room: N connections in one room (spread over client
    processes, tools/zim_fanout), a publisher publishing M stamped messages
    at R msgs/s (client `publish` by default, or the backend API's
    POST /v1/push/rooms); push: N online users and backend pushes over HTTP
    keep-alive (POST /v1/push/users, K users per request) at R user pushes
    a second. Both report deliveries per second, publish-to-delivery
    latency from each message's scheduled time, what the clients missed
    and what the gateways dropped (their metrics).
*/
#ifndef ZIM_RBENCH_H_INCLUDED
#define ZIM_RBENCH_H_INCLUDED

#ifdef __cplusplus
extern "C" {
#endif

//  Mints a client token for uid. Caller owns return value; NULL on failure.
typedef char *(zim_rbench_mint_fn)(void *arg, const char *uid);

//  Runs `zim-bench room` (argv[0] "room") or `zim-bench push` (argv[0]
//  "push") against url (ws://IPV4:PORT/PATH) with users of app. Returns the
//  exit status: 0 every delivery made and nothing dropped, 1 something
//  missing, duplicated, out of order, dropped or refused, 2 usage, 3 setup.
int zim_rbench_main (int argc, char **argv, const char *url, const char *app,
                     zim_rbench_mint_fn *mint, void *arg);

//  The usage lines of room and push.
extern const char *zim_rbench_usage;

#ifdef __cplusplus
}
#endif
#endif
