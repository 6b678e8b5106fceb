/*  zim_fanwire.h: the bytes on the wire of the fan-out benchmarks
    (tools/zim_fanout): WebSocket client frames and zim's msgpack maps, and
    the few MQTT 3.1.1 packets a QoS 0 subscriber and publisher need. No
    state: each function encodes to, or decodes from, a buffer or socket.
*/
#ifndef ZIM_FANWIRE_H_INCLUDED
#define ZIM_FANWIRE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Bytes zim_fanwire_ws_publish and _mqtt_publish need in their frame
//  buffer beyond the body (a room or topic of up to 128 bytes).
#define ZIM_FANWIRE_OVERHEAD 300

//  Writes all of buf to the (non-blocking) socket fd, waiting for room up
//  to a second at a time. Returns 0, or -1 if the socket failed.
int zim_fanwire_write_all (int fd, const uint8_t *buf, size_t len);
//  Sends a WebSocket client frame of opcode op (masked with a zero key).
//  Returns 0 or -1.
int zim_fanwire_ws_send (int fd, int op, const uint8_t *payload, size_t len);
//  Sends the HTTP upgrade for path with the token (and device "f<n>") in
//  the query. Returns 0 or -1.
int zim_fanwire_ws_upgrade (int fd, const char *path, const char *token, uint32_t n,
                            const char *host, int port);
//  Sends {"op":"publish","room":room,"body":<body>} (body: one msgpack
//  value) in one frame, built in frame (len + ZIM_FANWIRE_OVERHEAD bytes).
int zim_fanwire_ws_publish (int fd, const char *room, const uint8_t *body, size_t len,
                            uint8_t *frame);
//  Looks at a server frame at buf: 1 when all of it is there (sets fin,
//  op, the header's length hlen and the payload's plen), 0 when more bytes
//  are needed, -1 if it is masked or its payload is over max.
int zim_fanwire_ws_frame (const uint8_t *buf, size_t len, uint64_t max, bool *fin, int *op,
                          size_t *hlen, uint64_t *plen);
//  Writes a msgpack str of s (under 256 bytes) at p; returns its length.
size_t zim_fanwire_mp_str (uint8_t *p, const char *s);
//  Skips one msgpack value at p (nested at most 32 deep); returns the byte
//  after it, or NULL if it is malformed or runs past end. For a str or bin,
//  sets *s and *slen to its bytes when s is not NULL.
const uint8_t *zim_fanwire_mp_skip (const uint8_t *p, const uint8_t *end, int depth,
                                    const uint8_t **s, uint32_t *slen);

//  MQTT: CONNECT with a clean session, keepalive off, client id id.
int zim_fanwire_mqtt_connect (int fd, const char *id);
//  MQTT: SUBSCRIBE to topic at QoS 0, packet id 1.
int zim_fanwire_mqtt_subscribe (int fd, const char *topic);
//  MQTT: PUBLISH body to topic at QoS 0, built in frame (len +
//  ZIM_FANWIRE_OVERHEAD bytes).
int zim_fanwire_mqtt_publish (int fd, const char *topic, const uint8_t *body, size_t len,
                              uint8_t *frame);
//  Looks at an MQTT packet at buf: 1 when all of it is there (sets the
//  fixed header's length hlen and the remaining length rem), 0 when more
//  bytes are needed, -1 if its length is malformed or over max.
int zim_fanwire_mqtt_packet (const uint8_t *buf, size_t len, uint64_t max, size_t *hlen,
                             size_t *rem);

#ifdef __cplusplus
}
#endif
#endif
