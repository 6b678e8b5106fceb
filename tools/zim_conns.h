/*  zim_conns.h: zim-bench conns, the connection-count benchmark. Opens N
    authenticated WebSocket connections from K loopback source addresses
    with a minimal epoll client (a few hundred bytes per connection, no
    library), spread over as many client processes as keep each under the
    20,000-fd limit, holds them with heartbeats and reports the connect
    rate, failures, drops and the gateway memory per connection.
*/
#ifndef ZIM_CONNS_H_INCLUDED
#define ZIM_CONNS_H_INCLUDED

#ifdef __cplusplus
extern "C" {
#endif

//  Mints a client token for uid. Caller owns return value; NULL on failure.
typedef char *(zim_conns_mint_fn) (void *arg, const char *uid);

//  Runs `zim-bench conns` with argv[0] = "conns" and its options, against
//  url (ws://HOST:PORT/PATH), tokens from mint. Returns the exit status.
int zim_conns_main (int argc, char **argv, const char *url, zim_conns_mint_fn *mint, void *arg);

//  The usage lines of conns.
extern const char *zim_conns_usage;

#ifdef __cplusplus
}
#endif
#endif
