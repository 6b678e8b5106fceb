/*  zim_rawws.h: a small blocking WebSocket client over a raw TCP socket,
    for tests only. Unlike the SDK it sends whatever it is told to, bad
    bytes included, and shows what the server really answered: the HTTP
    status of a refused upgrade, every frame, the close status.
*/
#ifndef ZIM_RAWWS_H_INCLUDED
#define ZIM_RAWWS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

//  WebSocket opcodes (RFC 6455).
#define ZIM_WS_CONT 0
#define ZIM_WS_TEXT 1
#define ZIM_WS_BINARY 2
#define ZIM_WS_CLOSE 8
#define ZIM_WS_PING 9
#define ZIM_WS_PONG 10

typedef struct zim_rawws_t zim_rawws_t;

//  Connects to host:port and asks to upgrade path_and_query (e.g.
//  "/ws?token=..."). Waits up to 5 s. Returns the connection on HTTP 101;
//  otherwise NULL with *http_status set to the status the server answered
//  (0 if it answered nothing or could not be reached). http_status may be
//  NULL.
zim_rawws_t *zim_rawws_connect (const char *host, int port, const char *path_and_query,
                                int *http_status);

//  Sends a plain HTTP GET of path_and_query to host:port with extra header
//  lines (each ending in "\r\n", or NULL) and reads the answer within 5 s.
//  Returns the status code (0 if none came); the body goes to body (size
//  bytes, NUL-terminated) if not NULL.
int zim_rawws_http_get (const char *host, int port, const char *path_and_query,
                        const char *headers, char *body, size_t size);

//  Sends one complete (FIN) frame with opcode, masked as a client must.
//  Returns 0 or -1 (write failed).
int zim_rawws_send (zim_rawws_t *self, int opcode, const void *data, size_t len);

//  Sends one frame with an explicit FIN bit, for fragmented messages
//  (first frame: opcode 1/2 with fin false, then ZIM_WS_CONT frames).
int zim_rawws_send_frame (zim_rawws_t *self, bool fin, int opcode, const void *data, size_t len);

//  Writes raw bytes to the socket, unframed (to test bad framing).
int zim_rawws_send_raw (zim_rawws_t *self, const void *data, size_t len);

//  Receives the next message within timeout_ms (0: only what has arrived
//  already): text, binary (fragments reassembled) or close (opcode 8, data =
//  the close payload: 2-byte status and reason). Server PINGs are answered with PONG and counted, not
//  returned; a close is answered with a close once. *data is
//  NUL-terminated, caller owns it (set only when returning 0).
//  Returns 0, -1 on timeout, -2 once the connection is closed (after the
//  close message was returned, or when the socket ended without one).
int zim_rawws_recv (zim_rawws_t *self, int timeout_ms, int *opcode, char **data, size_t *len);

//  The status of the close frame received, or -1 if none came (yet).
int zim_rawws_close_status (zim_rawws_t *self);

//  How many PINGs the server sent (and were answered) so far.
int zim_rawws_pings (zim_rawws_t *self);

//  Sends a close frame (if none was sent) and closes the socket.
void zim_rawws_destroy (zim_rawws_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
