/*  zim_rawws.c: blocking WebSocket client over a raw TCP socket for tests
    (see zim_rawws.h). Small on purpose: one connection, poll() for
    timeouts, one growing input buffer.
*/
#include "tests/zim_rawws.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_MESSAGE (64u << 20) //  refuse to buffer more than this

struct zim_rawws_t {
    int fd;              //  the TCP socket, -1 once closed
    uint8_t *in;         //  bytes received, not yet parsed
    size_t in_len;       //  bytes in in
    size_t in_size;      //  allocated size of in
    bool eof;            //  the peer closed or the socket failed
    uint8_t *frag;       //  fragments of the message being reassembled
    size_t frag_len;     //  bytes in frag
    int frag_opcode;     //  its opcode, 0 when none is under way
    bool close_sent;     //  we sent a close frame
    bool close_seen;     //  a close frame was returned to the caller
    int close_status;    //  its status, -1 if none
    int pings;           //  server pings answered
    uint32_t mask_seed;  //  for masking keys (need not be secret in tests)
};

//  Current monotonic time in ms.
static int64_t s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Writes all of data; 0 or -1.
static int s_write_all (int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send (fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

//  Reads what is available within timeout_ms into self->in. Returns 1 if
//  bytes came, 0 on timeout, -1 at end of stream or error (eof set).
static int s_fill (zim_rawws_t *self, int timeout_ms)
{
    if (self->eof || self->fd < 0)
        return -1;
    struct pollfd pfd = {self->fd, POLLIN, 0};
    int rc = poll (&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms);
    if (rc < 0 && errno == EINTR)
        return 0;
    if (rc == 0)
        return 0;
    if (self->in_size - self->in_len < 65536) {
        self->in_size = self->in_size * 2 + 65536;
        self->in = realloc (self->in, self->in_size);
        if (!self->in)
            abort ();
    }
    ssize_t n = recv (self->fd, self->in + self->in_len, self->in_size - self->in_len - 1, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        self->eof = true;
        return -1;
    }
    self->in_len += (size_t) n;
    return 1;
}

//  Builds and writes one masked client frame.
static int s_send_frame (zim_rawws_t *self, bool fin, int opcode, const void *data, size_t len)
{
    if (self->fd < 0)
        return -1;
    uint8_t *buf = malloc (len + 14);
    if (!buf)
        abort ();
    size_t h = 0;
    buf[h++] = (uint8_t) ((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126)
        buf[h++] = (uint8_t) (0x80 | len);
    else if (len < 65536) {
        buf[h++] = 0x80 | 126;
        buf[h++] = (uint8_t) (len >> 8);
        buf[h++] = (uint8_t) len;
    }
    else {
        buf[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            buf[h++] = (uint8_t) ((uint64_t) len >> (8 * i));
    }
    self->mask_seed = self->mask_seed * 1103515245u + 12345u;
    uint8_t mask[4] = {(uint8_t) (self->mask_seed >> 24), (uint8_t) (self->mask_seed >> 16),
                       (uint8_t) (self->mask_seed >> 8), (uint8_t) self->mask_seed};
    memcpy (buf + h, mask, 4);
    h += 4;
    const uint8_t *src = data;
    for (size_t i = 0; i < len; i++)
        buf[h + i] = src[i] ^ mask[i & 3];
    int rc = s_write_all (self->fd, buf, h + len);
    free (buf);
    return rc;
}

//  Base64 of data into out (size >= 4 * ceil(len / 3) + 1).
static void s_base64 (const uint8_t *data, size_t len, char *out)
{
    EVP_EncodeBlock ((unsigned char *) out, data, (int) len);
}

//  Finds header name (case-insensitive) in a response head; copies its
//  value into buf. Returns 0 or -1.
static int s_header (const char *head, const char *name, char *buf, size_t size)
{
    size_t nlen = strlen (name);
    for (const char *line = strstr (head, "\r\n"); line; line = strstr (line, "\r\n")) {
        line += 2;
        if (strncasecmp (line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            size_t n = strcspn (v, "\r\n");
            if (n >= size)
                return -1;
            memcpy (buf, v, n);
            buf[n] = 0;
            return 0;
        }
    }
    return -1;
}

//  Opens a TCP connection with a timeout; returns the fd or -1.
static int s_tcp_connect (const char *host, int port, int timeout_ms)
{
    char service[16];
    snprintf (service, sizeof service, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset (&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo (host, service, &hints, &res) != 0 || !res)
        return -1;
    int fd = socket (res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd >= 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect (fd, res->ai_addr, res->ai_addrlen) != 0) {
            close (fd);
            fd = -1;
        }
    }
    freeaddrinfo (res);
    if (fd >= 0) {
        int one = 1;
        setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

int zim_rawws_http_get (const char *host, int port, const char *path_and_query,
                        const char *headers, char *body, size_t size)
{
    if (body && size)
        body[0] = 0;
    int fd = s_tcp_connect (host, port, 5000);
    if (fd < 0)
        return 0;
    char req[8192];
    int len = snprintf (req, sizeof req,
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%sConnection: close\r\n\r\n",
                        path_and_query, host, port, headers ? headers : "");
    char buf[16384];
    size_t got = 0;
    if (len > 0 && (size_t) len < sizeof req && s_write_all (fd, req, (size_t) len) == 0) {
        int64_t deadline = s_now_ms () + 5000;
        while (got < sizeof buf - 1) {
            struct pollfd pfd = {fd, POLLIN, 0};
            int left = (int) (deadline - s_now_ms ());
            if (left <= 0 || poll (&pfd, 1, left) <= 0)
                break;
            ssize_t n = recv (fd, buf + got, sizeof buf - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t) n;
        }
    }
    close (fd);
    buf[got] = 0;
    int status = 0;
    if (sscanf (buf, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    char *start = strstr (buf, "\r\n\r\n");
    if (body && size && start)
        snprintf (body, size, "%s", start + 4);
    return status;
}

zim_rawws_t *zim_rawws_connect (const char *host, int port, const char *path_and_query,
                                int *http_status)
{
    if (http_status)
        *http_status = 0;
    int fd = s_tcp_connect (host, port, 5000);
    if (fd < 0)
        return NULL;
    zim_rawws_t *self = calloc (1, sizeof *self);
    if (!self)
        abort ();
    self->fd = fd;
    self->close_status = -1;
    self->mask_seed = (uint32_t) s_now_ms () ^ (uint32_t) getpid () ^ (uint32_t) (uintptr_t) self;

    uint8_t key_bytes[16];
    for (size_t i = 0; i < sizeof key_bytes; i++) {
        self->mask_seed = self->mask_seed * 1103515245u + 12345u;
        key_bytes[i] = (uint8_t) (self->mask_seed >> 16);
    }
    char key[32];
    s_base64 (key_bytes, sizeof key_bytes, key);
    size_t req_size = strlen (path_and_query) + strlen (host) + 256;
    char *req = malloc (req_size);
    if (!req)
        abort ();
    int req_len = snprintf (req, req_size,
                            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n",
                            path_and_query, host, port, key);
    int rc = s_write_all (fd, req, (size_t) req_len);
    free (req);
    if (rc)
        goto failed;

    //  Read the response head; what follows it is already WebSocket data.
    int64_t deadline = s_now_ms () + 5000;
    char *end = NULL;
    while (!end) {
        int left = (int) (deadline - s_now_ms ());
        if (left <= 0 || s_fill (self, left) < 0)
            goto failed;
        if (self->in_len > 0) {
            self->in[self->in_len] = 0; //  s_fill keeps spare room
            end = strstr ((char *) self->in, "\r\n\r\n");
        }
        if (!end && self->in_len > 16384)
            goto failed;
    }
    *end = 0;
    size_t head_len = (size_t) (end + 4 - (char *) self->in);
    int status = 0;
    if (sscanf ((char *) self->in, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    if (http_status)
        *http_status = status;
    if (status != 101)
        goto failed;
    char accept[64], expect[64];
    char concat[128];
    snprintf (concat, sizeof concat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned int sha_len = 0;
    EVP_Digest (concat, strlen (concat), sha, &sha_len, EVP_sha1 (), NULL);
    s_base64 (sha, sha_len, expect);
    if (s_header ((char *) self->in, "Sec-WebSocket-Accept", accept, sizeof accept) ||
        strcmp (accept, expect) != 0) {
        fprintf (stderr, "rawws: bad Sec-WebSocket-Accept\n");
        goto failed;
    }
    memmove (self->in, self->in + head_len, self->in_len - head_len);
    self->in_len -= head_len;
    return self;

failed:
    close (self->fd);
    free (self->in);
    free (self);
    return NULL;
}

int zim_rawws_send (zim_rawws_t *self, int opcode, const void *data, size_t len)
{
    return s_send_frame (self, true, opcode, data, len);
}

int zim_rawws_send_frame (zim_rawws_t *self, bool fin, int opcode, const void *data, size_t len)
{
    return s_send_frame (self, fin, opcode, data, len);
}

int zim_rawws_send_raw (zim_rawws_t *self, const void *data, size_t len)
{
    return self->fd < 0 ? -1 : s_write_all (self->fd, data, len);
}

//  Returns a malloc'd NUL-terminated copy of len bytes.
static char *s_dup (const void *data, size_t len)
{
    char *copy = malloc (len + 1);
    if (!copy)
        abort ();
    if (len)
        memcpy (copy, data, len);
    copy[len] = 0;
    return copy;
}

int zim_rawws_recv (zim_rawws_t *self, int timeout_ms, int *opcode, char **data, size_t *len)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    bool filled = false; //  a timeout of 0 still reads what has arrived
    while (true) {
        if (self->close_seen)
            return -2;
        //  One whole frame in the buffer?
        if (self->in_len >= 2) {
            uint8_t *p = self->in;
            bool fin = p[0] & 0x80;
            int op = p[0] & 0x0f;
            bool masked = p[1] & 0x80;
            uint64_t plen = p[1] & 0x7f;
            size_t h = 2;
            if (plen == 126) {
                plen = self->in_len >= 4 ? (uint64_t) p[2] << 8 | p[3] : UINT64_MAX;
                h = 4;
            }
            else if (plen == 127) {
                if (self->in_len >= 10) {
                    plen = 0;
                    for (int i = 0; i < 8; i++)
                        plen = plen << 8 | p[2 + i];
                }
                else
                    plen = UINT64_MAX;
                h = 10;
            }
            if (plen != UINT64_MAX && plen > S_MAX_MESSAGE) {
                fprintf (stderr, "rawws: frame of %llu bytes refused\n", (unsigned long long) plen);
                self->eof = true;
                return -2;
            }
            if (masked)
                h += 4;
            if (plen != UINT64_MAX && self->in_len >= h + plen) {
                uint8_t *payload = p + h;
                if (masked)
                    for (uint64_t i = 0; i < plen; i++)
                        payload[i] ^= p[h - 4 + (i & 3)];
                int rc = 1; //  1: keep going; 0: a message is ready
                if (op == ZIM_WS_PING) {
                    self->pings++;
                    s_send_frame (self, true, ZIM_WS_PONG, payload, plen);
                }
                else if (op == ZIM_WS_PONG)
                    ;
                else if (op == ZIM_WS_CLOSE) {
                    self->close_status = plen >= 2 ? payload[0] << 8 | payload[1] : 1005;
                    if (!self->close_sent) {
                        s_send_frame (self, true, ZIM_WS_CLOSE, payload, plen >= 2 ? 2 : 0);
                        self->close_sent = true;
                    }
                    self->close_seen = true;
                    *opcode = ZIM_WS_CLOSE;
                    *data = s_dup (payload, plen);
                    *len = plen;
                    rc = 0;
                }
                else if (op == ZIM_WS_CONT || !fin) {
                    if (op != ZIM_WS_CONT)
                        self->frag_opcode = op;
                    if (self->frag_len + plen > S_MAX_MESSAGE) {
                        self->eof = true;
                        return -2;
                    }
                    self->frag = realloc (self->frag, self->frag_len + plen + 1);
                    if (!self->frag)
                        abort ();
                    memcpy (self->frag + self->frag_len, payload, plen);
                    self->frag_len += plen;
                    if (fin) {
                        *opcode = self->frag_opcode;
                        self->frag[self->frag_len] = 0;
                        *data = (char *) self->frag;
                        *len = self->frag_len;
                        self->frag = NULL;
                        self->frag_len = 0;
                        self->frag_opcode = 0;
                        rc = 0;
                    }
                }
                else {
                    *opcode = op;
                    *data = s_dup (payload, plen);
                    *len = plen;
                    rc = 0;
                }
                size_t used = h + plen;
                memmove (self->in, self->in + used, self->in_len - used);
                self->in_len -= used;
                if (rc == 0)
                    return 0;
                continue;
            }
        }
        if (self->eof)
            return -2;
        int left = (int) (deadline - s_now_ms ());
        if (left < 0 || (left == 0 && filled))
            return -1;
        int got = s_fill (self, left);
        if (got < 0 && self->in_len == 0)
            return -2;
        filled = true;
        if (got == 0 && left == 0)
            return -1;
    }
}

int zim_rawws_close_status (zim_rawws_t *self)
{
    return self->close_status;
}

int zim_rawws_pings (zim_rawws_t *self)
{
    return self->pings;
}

void zim_rawws_destroy (zim_rawws_t **self_p)
{
    zim_rawws_t *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0) {
        if (!self->close_sent && !self->eof) {
            uint8_t status[2] = {0x03, 0xe8}; //  1000 normal closure
            s_send_frame (self, true, ZIM_WS_CLOSE, status, 2);
        }
        close (self->fd);
    }
    free (self->in);
    free (self->frag);
    free (self);
    *self_p = NULL;
}
