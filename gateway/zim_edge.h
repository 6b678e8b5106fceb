/*  zim_edge.h: what every part of one gateway shares: its settings (the
    table the actor shell reads SET with), its STATS counters, the apps it
    accepts tokens for, its sessions and backbone links, and the encode
    buffers. It is the gateway actor's state as the shell sees it (like
    nginx's ngx_cycle_t); the loop itself lives in zim_gateway.c.

    Private to gateway/: the other folders see the actor (zim_gateway.h).
*/
#ifndef ZIM_EDGE_H_INCLUDED
#define ZIM_EDGE_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#include "gateway/zim_apps.h"
#include "gateway/zim_token.h"
#include "msg/zim_mp.h"
#include "msg/zim_shell.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_sessions_t zim_sessions_t;
typedef struct _zim_links_t zim_links_t;
typedef struct _zim_rooms_t zim_rooms_t;
struct _zim_session_t;

typedef struct {
    zim_shell_t *shell; //  pipe commands, node name, peer warnings, sockets
    void *loop;         //  the actor's event loop state (zim_gateway.c)

    //  Settings (zim_edge_settings; docs/OPERATIONS.md)
    uint64_t port;               //  client port (0: ephemeral); the real one after START
    char *iface;                 //  listen address, NULL = all
    char *www;                   //  static files for HTTP GET, NULL = none
    bool dev_tokens;             //  /dev/token wanted (the process shell's dev defaults)
    bool reuse_port;             //  share the port with other processes (SO_REUSEPORT)
    int64_t tcp_port;            //  raw TCP client port (zim_tcp.h): -1 off, 0 ephemeral
    int64_t tls_port;            //  WSS port beside port: -1 none (then port is WSS if TLS)
    char *tls_cert;              //  PEM certificate (chain) file: TLS on; NULL = plain only
    char *tls_key;               //  its PEM private key file
    uint64_t max_frame;          //  largest client message, bytes
    uint64_t idle_timeout_ms;    //  close after this long without input (0: never)
    uint64_t ping_interval_s;    //  WebSocket PING interval (0: none)
    uint64_t send_rate;          //  sends per second per connection
    uint64_t send_burst;         //  send bucket size
    uint64_t read_rate;          //  syncs and history reads per second per connection
    uint64_t read_burst;         //  read bucket size
    uint64_t max_reads_inflight; //  reads per connection not yet answered
    uint64_t max_pending;        //  live output bytes queued before a 4090 cut
    uint64_t auth_timeout_ms;    //  an unauthenticated connection closes after this
    uint64_t max_auth_failures;  //  failed auth frames before a 4015 close
    uint64_t max_conns_per_user; //  connections of one user on this gateway
    uint64_t token_leeway_s;     //  clock skew allowed on exp and nbf
    //  rooms and signals (zim_rooms)
    uint64_t max_rooms_per_conn; //  rooms one connection may be in
    uint64_t signal_rate;        //  signals per second per connection
    uint64_t signal_burst;       //  signal bucket size
    uint64_t broadcast_rate;     //  push to all: connections per second (per app: app_broadcast_rate)

    //  Parts
    zim_apps_t *apps;         //  the apps and their token keys
    zim_sessions_t *sessions; //  the client connections
    zim_links_t *links;       //  brokers, routers, maps, presence
    zim_rooms_t *rooms;       //  rooms of the connections, live signals
    zim_wr_t wr;              //  encode buffer: backbone messages
    zim_wr_t fr;              //  encode buffer: client frames
    //  WebSocket sessions with output to write at the end of this loop
    //  turn (zim_session_flush_all): an intrusive list through them.
    struct _zim_session_t *flush_list;

    //  Counters (zim_edge_counters: STATS). connections and authed are
    //  gauges kept here because everything else counts here too.
    uint64_t connections;                      //  open WebSocket sessions
    uint64_t authed;                           //  of which authenticated
    uint64_t frames_in;                        //  client frames decoded
    uint64_t frames_out;                       //  frames queued to clients
    uint64_t writes;                           //  WebSocket messages written
    uint64_t write_requests;                   //  writable callbacks asked of lws
    uint64_t sends;                            //  sends forwarded
    uint64_t reads;                            //  syncs and history reads forwarded
    uint64_t errors_sent;                      //  error frames to clients
    uint64_t bad_frames;                       //  undecodable or invalid client frames
    uint64_t rate_limited;                     //  sends refused with 4029
    uint64_t reads_rate_limited;               //  reads refused with 4029
    uint64_t reads_too_many;                   //  reads refused with 4028
    uint64_t idle_closed;                      //  closed with 4080
    uint64_t slow_consumer_drops;              //  closed with 4090
    uint64_t auth_failures;                    //  tokens refused, every reason
    uint64_t auth_timeouts;                    //  closed with 4014
    uint64_t ping_timeouts;                    //  hung up: PINGs unanswered
    uint64_t auth_failures_closed;             //  closed with 4015
    uint64_t too_many_conns;                   //  refused with 4031
    uint64_t too_large;                        //  closed with 4002
    uint64_t unavailable;                      //  answered 5030 (broker unreachable)
    uint64_t bad_messages;                     //  undecodable backbone messages
    uint64_t out_gone;                         //  OUT entries for a connection not held
    uint64_t out_closing;                      //  frames for a closing connection, dropped
    uint64_t presence_dropped;                 //  PRESENCE a router queue did not take
    uint64_t reannounces;                      //  every session announced again to a router
    uint64_t http_requests;                    //  plain HTTP requests
    uint64_t dev_tokens_served;                //  /dev/token answers
    uint64_t dev_tokens_refused;               //  /dev/token refused (404)
    uint64_t token_refused[ZIM_TOKEN_REASONS]; //  tokens refused, by reason
    //  rooms and signals (zim_rooms)
    uint64_t room_joins;      //  joins
    uint64_t room_leaves;     //  leaves
    uint64_t room_refused;    //  join/leave/publish refused (4050-4054)
    uint64_t room_publishes;  //  publishes forwarded to a router
    uint64_t room_deliveries; //  room frames queued to connections
    uint64_t room_dropped;    //  room frames dropped: the connection was slow
    uint64_t signals;         //  signals forwarded to a router
    uint64_t signals_refused; //  signals refused (4004, 4055)
    uint64_t broadcasts;      //  pushes to all started
    uint64_t broadcasts_dropped; //  pushes to all dropped (too many being paced)
    uint64_t broadcast_deliveries; //  their frames queued to connections
} zim_edge_t;

//  The settings and counters tables, for the actor's zim_shell_class_t.
extern const zim_setting_t zim_edge_settings[];
extern const zim_counter_t zim_edge_counters[];
//  The counters that are levels (connections, authed), for metrics.
extern const char *const zim_edge_gauges[];

//  Creates the shared state with the default settings, its apps, sessions
//  and links, and its shell over pipe (NULL in selftests) with class cls
//  (NULL: the tables alone, no hooks). Caller owns return value.
zim_edge_t *zim_edge_new (zsock_t *pipe, const zim_shell_class_t *cls);
//  Destroys sessions, links, apps and the shell.
void zim_edge_destroy (zim_edge_t **self_p);

//  Verifies a token as the gateway does: counted, and logged with its
//  reason and who (the peer's address or connection). Returns 0 or the
//  wire error code; app and uid (ZIM_ID_MAX + 1 bytes each) on success.
int zim_edge_verify_token (zim_edge_t *self, const char *token, size_t len, const char *who,
                           char *app, char *uid);

//  The monotonic clock in ms, for every timer of the gateway.
int64_t zim_edge_now_ms (void);

//  Self test of this class.
void zim_edge_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
