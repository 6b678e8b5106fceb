/*  zim_fanwire.c: the bytes on the wire of the fan-out benchmarks (see
    zim_fanwire.h).
*/
#include "tools/zim_fanwire.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

//  Writes all of buf to the socket, waiting for room up to a second.
int zim_fanwire_write_all (int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = send (fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll (&pfd, 1, 1000) <= 0)
                return -1;
        } else
            return -1;
    }
    return 0;
}

//  Sends a WebSocket client frame (masked with a zero key: clients must
//  mask, any key will do, and zero costs nothing).
int zim_fanwire_ws_send (int fd, int op, const uint8_t *payload, size_t len)
{
    uint8_t stackbuf[512];
    size_t need = 14 + len;
    uint8_t *f = need <= sizeof stackbuf ? stackbuf : malloc (need);
    if (!f)
        return -1;
    size_t h = 0;
    f[h++] = (uint8_t)(0x80 | op);
    if (len < 126)
        f[h++] = (uint8_t)(0x80 | len);
    else if (len < 65536) {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t)(len >> 8);
        f[h++] = (uint8_t)len;
    } else {
        f[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            f[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memset (f + h, 0, 4);
    h += 4;
    memcpy (f + h, payload, len);
    int rc = zim_fanwire_write_all (fd, f, h + len);
    if (f != stackbuf)
        free (f);
    return rc;
}

//  Appends a msgpack str to p; returns the bytes written.
size_t zim_fanwire_mp_str (uint8_t *p, const char *s)
{
    size_t len = strlen (s), h = 0;
    if (len < 32)
        p[h++] = (uint8_t)(0xa0 | len);
    else {
        p[h++] = 0xd9;
        p[h++] = (uint8_t)len;
    }
    memcpy (p + h, s, len);
    return h + len;
}

//  Bytes of a msgpack value's header and payload at p, or NULL if it runs
//  past end. Sets *s/*len to a str's or bin's bytes when asked.
const uint8_t *zim_fanwire_mp_skip (const uint8_t *p, const uint8_t *end, int depth,
                                    const uint8_t **s, uint32_t *slen)
{
    if (p >= end || depth > 32)
        return NULL;
    uint8_t t = *p++;
    uint64_t n = 0, items = 0;
    size_t w = 0; //  width of a length field
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
        return p;
    if ((t & 0xf0) == 0x80)
        items = 2 * (uint64_t)(t & 0x0f);
    else if ((t & 0xf0) == 0x90)
        items = t & 0x0f;
    else if ((t & 0xe0) == 0xa0)
        n = t & 0x1f;
    else
        switch (t) {
        case 0xc4:
        case 0xd9:
            w = 1;
            break;
        case 0xc5:
        case 0xda:
            w = 2;
            break;
        case 0xc6:
        case 0xdb:
            w = 4;
            break;
        case 0xcc:
        case 0xd0:
            return p + 1 <= end ? p + 1 : NULL;
        case 0xcd:
        case 0xd1:
            return p + 2 <= end ? p + 2 : NULL;
        case 0xca:
        case 0xce:
        case 0xd2:
            return p + 4 <= end ? p + 4 : NULL;
        case 0xcb:
        case 0xcf:
        case 0xd3:
            return p + 8 <= end ? p + 8 : NULL;
        case 0xd4:
            return p + 2 <= end ? p + 2 : NULL;
        case 0xd5:
            return p + 3 <= end ? p + 3 : NULL;
        case 0xd6:
            return p + 5 <= end ? p + 5 : NULL;
        case 0xd7:
            return p + 9 <= end ? p + 9 : NULL;
        case 0xd8:
            return p + 17 <= end ? p + 17 : NULL;
        case 0xc7:
        case 0xc8:
        case 0xc9: {
            size_t lw = t == 0xc7 ? 1 : t == 0xc8 ? 2 : 4;
            if (p + lw > end)
                return NULL;
            for (size_t i = 0; i < lw; i++)
                n = n << 8 | p[i];
            p += lw + 1; //  and the type byte
            return p <= end && (uint64_t)(end - p) >= n ? p + n : NULL;
        }
        case 0xdc:
        case 0xde:
        case 0xdd:
        case 0xdf: {
            size_t lw = t == 0xdc || t == 0xde ? 2 : 4;
            if (p + lw > end)
                return NULL;
            for (size_t i = 0; i < lw; i++)
                items = items << 8 | p[i];
            p += lw;
            if (t >= 0xde)
                items *= 2;
            break;
        }
        default:
            return NULL; //  0xc1
        }
    if (w) {
        if (p + w > end)
            return NULL;
        for (size_t i = 0; i < w; i++)
            n = n << 8 | p[i];
        p += w;
    }
    if (items) {
        for (uint64_t i = 0; i < items && p; i++)
            p = zim_fanwire_mp_skip (p, end, depth + 1, NULL, NULL);
        return p;
    }
    if ((uint64_t)(end - p) < n)
        return NULL;
    if (s) {
        *s = p;
        *slen = (uint32_t)n;
    }
    return p + n;
}

int zim_fanwire_ws_upgrade (int fd, const char *path, const char *token, uint32_t n,
                            const char *host, int port)
{
    char req[5000];
    int len = snprintf (req, sizeof req,
                        "GET %s?token=%s&device=f%u HTTP/1.1\r\nHost: %s:%d\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n",
                        path, token, n, host, port);
    if (len < 0 || len >= (int)sizeof req)
        return -1;
    return zim_fanwire_write_all (fd, (const uint8_t *)req, (size_t)len);
}

int zim_fanwire_ws_publish (int fd, const char *room, const uint8_t *body, size_t len,
                            uint8_t *frame)
{
    size_t n = 0;
    frame[n++] = 0x83;
    n += zim_fanwire_mp_str (frame + n, "op");
    n += zim_fanwire_mp_str (frame + n, "publish");
    n += zim_fanwire_mp_str (frame + n, "room");
    n += zim_fanwire_mp_str (frame + n, room);
    n += zim_fanwire_mp_str (frame + n, "body");
    memcpy (frame + n, body, len);
    return zim_fanwire_ws_send (fd, 0x2, frame, n + len);
}

int zim_fanwire_ws_frame (const uint8_t *buf, size_t len, uint64_t max, bool *fin, int *op,
                          size_t *hlen, uint64_t *plen)
{
    if (len < 2)
        return 0;
    if (buf[1] & 0x80)
        return -1; //  servers do not mask
    *fin = buf[0] & 0x80;
    *op = buf[0] & 0x0f;
    uint64_t pl = buf[1] & 0x7f;
    size_t h = 2;
    if (pl == 126) {
        if (len < 4)
            return 0;
        pl = (uint64_t)buf[2] << 8 | buf[3];
        h = 4;
    } else if (pl == 127) {
        if (len < 10)
            return 0;
        pl = 0;
        for (int i = 0; i < 8; i++)
            pl = pl << 8 | buf[2 + i];
        h = 10;
    }
    if (pl > max)
        return -1;
    *hlen = h;
    *plen = pl;
    return len - h >= pl ? 1 : 0;
}

int zim_fanwire_mqtt_connect (int fd, const char *id)
{
    static const uint8_t vh[] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0};
    size_t idlen = strlen (id), h = 0;
    uint8_t f[128];
    if (idlen > 100)
        return -1;
    f[h++] = 0x10;
    f[h++] = (uint8_t)(sizeof vh + 2 + idlen);
    memcpy (f + h, vh, sizeof vh);
    h += sizeof vh;
    f[h++] = 0;
    f[h++] = (uint8_t)idlen;
    memcpy (f + h, id, idlen);
    return zim_fanwire_write_all (fd, f, h + idlen);
}

int zim_fanwire_mqtt_subscribe (int fd, const char *topic)
{
    size_t tl = strlen (topic), h = 0;
    uint8_t f[128];
    if (tl > 100)
        return -1;
    f[h++] = 0x82;
    f[h++] = (uint8_t)(2 + 2 + tl + 1); //  under 128
    f[h++] = 0;
    f[h++] = 1;
    f[h++] = (uint8_t)(tl >> 8);
    f[h++] = (uint8_t)tl;
    memcpy (f + h, topic, tl);
    h += tl;
    f[h++] = 0; //  QoS 0
    return zim_fanwire_write_all (fd, f, h);
}

int zim_fanwire_mqtt_publish (int fd, const char *topic, const uint8_t *body, size_t len,
                              uint8_t *frame)
{
    size_t tl = strlen (topic), rem = 2 + tl + len, n = 0;
    frame[n++] = 0x30; //  PUBLISH, QoS 0
    do {
        uint8_t d = rem % 128;
        rem /= 128;
        frame[n++] = rem ? d | 0x80 : d;
    } while (rem);
    frame[n++] = (uint8_t)(tl >> 8);
    frame[n++] = (uint8_t)tl;
    memcpy (frame + n, topic, tl);
    n += tl;
    memcpy (frame + n, body, len);
    return zim_fanwire_write_all (fd, frame, n + len);
}

int zim_fanwire_mqtt_packet (const uint8_t *buf, size_t len, uint64_t max, size_t *hlen,
                             size_t *rem)
{
    size_t h = 1, r = 0;
    for (unsigned shift = 0; h < len && h <= 4; shift += 7) {
        uint8_t d = buf[h++];
        r |= (size_t)(d & 0x7f) << shift;
        if (!(d & 0x80)) {
            if (r > max)
                return -1;
            *hlen = h;
            *rem = r;
            return len - h >= r ? 1 : 0;
        }
    }
    return h > 4 ? -1 : 0;
}
