/*  zim_mp.h: strict msgpack reader and buffered writer shared by every codec.

    The reader is a cursor over a borrowed buffer: every read checks the
    bytes it needs against the end of the buffer and fails with -1 instead of
    reading past it, and strings come back as borrowed views, so decoding
    allocates nothing. The writer appends msgpack's smallest encoding of each
    value to a growable buffer (byte for byte what msgpack-c's packer writes:
    the selftest compares them) and inserts already-encoded values raw
    (message bodies are forwarded byte for byte, never re-encoded).

    Why not msgpack-c's own unpacker and packer: msgpack_unpack_next builds
    a tree of msgpack_object in a zone (an allocation per message, strings
    copied or pointing into a buffer the zone must outlive) and recurses on
    nesting, where the codecs want borrowed views of the frame they were
    handed, no allocation per message, an iterative skip that a deep value
    cannot overflow, and a check of every declared length against the bytes
    left before anything is read. msgpack-c's packer writes through a
    callback per value (a call through a pointer for every header and every
    string), which the hot path cannot afford: the fast paths here are
    inline and write into reserved room. Measured with valgrind's callgrind
    on msg/zim-msg-bench (docs/ARCHITECTURE.md, "The message catalogue").
*/
#ifndef ZIM_MP_H_INCLUDED
#define ZIM_MP_H_INCLUDED

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

//  A borrowed byte range: a string, a bin, or the raw bytes of one value.
typedef struct {
    const char *ptr; //  first byte, not NUL-terminated; NULL when absent
    size_t len;      //  length in bytes
} zim_str_t;

//  Makes a view of a NUL-terminated C string.
static inline zim_str_t zim_str (const char *s)
{
    zim_str_t v = {s, s ? strlen (s) : 0};
    return v;
}

//  True if the view holds exactly the C string s.
static inline bool zim_str_eq (zim_str_t v, const char *s)
{
    size_t n = strlen (s);
    return v.len == n && (n == 0 || memcmp (v.ptr, s, n) == 0);
}

//  Returns a fresh NUL-terminated copy. Caller owns return value.
char *zim_str_dup (zim_str_t v);

//  Copies the view into buf (size bytes) with a NUL; -1 if it does not fit.
int zim_str_copy (zim_str_t v, char *buf, size_t size);

//  The type of the next value, as far as the reader cares.
typedef enum {
    ZIM_MP_NONE = 0, //  end of buffer or a reserved byte (0xc1)
    ZIM_MP_NIL,
    ZIM_MP_BOOL,
    ZIM_MP_UINT, //  positive integer, any width
    ZIM_MP_INT,  //  negative integer, any width
    ZIM_MP_FLOAT,
    ZIM_MP_STR,
    ZIM_MP_BIN,
    ZIM_MP_ARRAY,
    ZIM_MP_MAP,
    ZIM_MP_EXT
} zim_mp_type_t;

//  Reader cursor. Fields are public so that a decoder can save and restore
//  a position; never move pos by hand.
typedef struct {
    const uint8_t *pos; //  next byte to read
    const uint8_t *end; //  one past the last byte
} zim_rd_t;

void zim_rd_init (zim_rd_t *rd, const void *data, size_t size);
//  Bytes not yet read.
size_t zim_rd_left (const zim_rd_t *rd);
//  The type of the next value, without consuming it.
zim_mp_type_t zim_rd_peek (const zim_rd_t *rd);
//  Each reader consumes one value of its type and returns 0, or returns -1
//  and leaves the cursor where it was when the next value is of another type,
//  out of range, or truncated.
int zim_rd_nil (zim_rd_t *rd);
int zim_rd_bool (zim_rd_t *rd, bool *out);
static inline int zim_rd_uint (zim_rd_t *rd, uint64_t *out); //  any non-negative integer
int zim_rd_int (zim_rd_t *rd, int64_t *out);                 //  any integer within int64
static inline int zim_rd_str (zim_rd_t *rd, zim_str_t *out);
int zim_rd_bin (zim_rd_t *rd, zim_str_t *out);
static inline int zim_rd_array (zim_rd_t *rd, uint32_t *count);
int zim_rd_map (zim_rd_t *rd, uint32_t *count);
//  Consumes one whole value of any type and, if raw is not NULL, returns the
//  exact bytes it spanned. Iterative, so deep nesting cannot exhaust the
//  stack, and every declared length is checked against the bytes left.
int zim_rd_skip (zim_rd_t *rd, zim_str_t *raw);

//  Writer: a growable buffer. Out of memory aborts (zim_realloc).
typedef struct {
    char *data;   //  encoded bytes so far
    size_t size;  //  bytes used
    size_t alloc; //  bytes allocated
} zim_wr_t;

void zim_wr_init (zim_wr_t *wr);
//  Frees the buffer; the writer may be initialised again.
void zim_wr_free (zim_wr_t *wr);
//  Forgets the content but keeps the allocation, for reuse.
void zim_wr_reset (zim_wr_t *wr);
static inline void zim_wr_nil (zim_wr_t *wr);
static inline void zim_wr_bool (zim_wr_t *wr, bool v);
static inline void zim_wr_uint (zim_wr_t *wr, uint64_t v);
static inline void zim_wr_int (zim_wr_t *wr, int64_t v);
static inline void zim_wr_str (zim_wr_t *wr, zim_str_t v);
void zim_wr_cstr (zim_wr_t *wr, const char *s);
static inline void zim_wr_bin (zim_wr_t *wr, zim_str_t v);
static inline void zim_wr_array (zim_wr_t *wr, uint32_t count);
static inline void zim_wr_map (zim_wr_t *wr, uint32_t count);
//  Appends bytes that already are one or more encoded values.
void zim_wr_raw (zim_wr_t *wr, const void *data, size_t size);

void zim_mp_test (bool verbose);

//  -------------------------------------------------------------------------
//  The inline fast paths. Readers take the common encodings here and leave
//  the rest (and every failure) to the full readers in zim_mp.c.

int zim_rd_uint_any (zim_rd_t *rd, uint64_t *out);
int zim_rd_str_any (zim_rd_t *rd, zim_str_t *out);
int zim_rd_array_any (zim_rd_t *rd, uint32_t *count);
//  Makes room for n more bytes (the slow half of zim_wr_room).
void zim_wr_grow (zim_wr_t *wr, size_t n);

//  The big-endian integer of 1, 2, 4 or 8 bytes at p.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ZIM_MP_BE16(v) (v)
#define ZIM_MP_BE32(v) (v)
#define ZIM_MP_BE64(v) (v)
#else
#define ZIM_MP_BE16(v) __builtin_bswap16 (v)
#define ZIM_MP_BE32(v) __builtin_bswap32 (v)
#define ZIM_MP_BE64(v) __builtin_bswap64 (v)
#endif

static inline uint64_t zim_mp_get (const uint8_t *p, int bytes)
{
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;
    switch (bytes) {
    case 1:
        return p[0];
    case 2:
        memcpy (&v16, p, 2);
        return ZIM_MP_BE16 (v16);
    case 4:
        memcpy (&v32, p, 4);
        return ZIM_MP_BE32 (v32);
    default:
        memcpy (&v64, p, 8);
        return ZIM_MP_BE64 (v64);
    }
}

//  Stores v as a big-endian integer of 1, 2, 4 or 8 bytes at p.
static inline void zim_mp_put (uint8_t *p, uint64_t v, int bytes)
{
    uint16_t v16;
    uint32_t v32;
    switch (bytes) {
    case 1:
        p[0] = (uint8_t)v;
        break;
    case 2:
        v16 = ZIM_MP_BE16 ((uint16_t)v);
        memcpy (p, &v16, 2);
        break;
    case 4:
        v32 = ZIM_MP_BE32 ((uint32_t)v);
        memcpy (p, &v32, 4);
        break;
    default:
        v = ZIM_MP_BE64 (v);
        memcpy (p, &v, 8);
        break;
    }
}

static inline int zim_rd_uint (zim_rd_t *rd, uint64_t *out)
{
    const uint8_t *p = rd->pos;
    size_t left = (size_t)(rd->end - p);
    if (left > 0) {
        uint8_t b = *p;
        if (b <= 0x7f) {
            *out = b;
            rd->pos = p + 1;
            return 0;
        }
        if (b >= 0xcc && b <= 0xcf) {
            int bytes = 1 << (b - 0xcc);
            if (left > (size_t)bytes) {
                *out = zim_mp_get (p + 1, bytes);
                rd->pos = p + 1 + bytes;
                return 0;
            }
        }
    }
    return zim_rd_uint_any (rd, out);
}

static inline int zim_rd_str (zim_rd_t *rd, zim_str_t *out)
{
    //  A fixstr whose bytes are all there.
    const uint8_t *p = rd->pos;
    bool fix = p < rd->end && (*p & 0xe0) == 0xa0;
    size_t len = fix ? (size_t)(*p & 0x1f) : 0;
    if (fix && len < (size_t)(rd->end - p)) {
        *out = (zim_str_t){(const char *)p + 1, len};
        rd->pos = p + 1 + len;
        return 0;
    }
    return zim_rd_str_any (rd, out);
}

static inline int zim_rd_array (zim_rd_t *rd, uint32_t *count)
{
    const uint8_t *p = rd->pos;
    size_t left = (size_t)(rd->end - p);
    //  Every element takes a byte at least: a count beyond that is a lie.
    if (left > 0 && (*p & 0xf0) == 0x90 && (size_t)(*p & 0x0f) < left) {
        *count = *p & 0x0f;
        rd->pos = p + 1;
        return 0;
    }
    return zim_rd_array_any (rd, count);
}

//  Room for n more bytes at the end of wr.
static inline uint8_t *zim_wr_room (zim_wr_t *wr, size_t n)
{
    if (wr->alloc - wr->size < n)
        zim_wr_grow (wr, n);
    return (uint8_t *)wr->data + wr->size;
}

static inline void zim_wr_nil (zim_wr_t *wr)
{
    *zim_wr_room (wr, 1) = 0xc0;
    wr->size++;
}

static inline void zim_wr_bool (zim_wr_t *wr, bool v)
{
    *zim_wr_room (wr, 1) = v ? 0xc3 : 0xc2;
    wr->size++;
}

static inline void zim_wr_uint (zim_wr_t *wr, uint64_t v)
{
    uint8_t *p = zim_wr_room (wr, 9);
    if (v <= 0x7f) {
        p[0] = (uint8_t)v;
        wr->size += 1;
        return;
    }
    int bytes = v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
    p[0] = (uint8_t)(bytes == 1 ? 0xcc : bytes == 2 ? 0xcd : bytes == 4 ? 0xce : 0xcf);
    zim_mp_put (p + 1, v, bytes);
    wr->size += 1 + (size_t)bytes;
}

static inline void zim_wr_int (zim_wr_t *wr, int64_t v)
{
    if (v >= 0) {
        zim_wr_uint (wr, (uint64_t)v);
        return;
    }
    uint8_t *p = zim_wr_room (wr, 9);
    if (v >= -32) {
        p[0] = (uint8_t)v;
        wr->size += 1;
        return;
    }
    int bytes = v >= INT8_MIN ? 1 : v >= INT16_MIN ? 2 : v >= INT32_MIN ? 4 : 8;
    p[0] = (uint8_t)(bytes == 1 ? 0xd0 : bytes == 2 ? 0xd1 : bytes == 4 ? 0xd2 : 0xd3);
    zim_mp_put (p + 1, (uint64_t)v, bytes);
    wr->size += 1 + (size_t)bytes;
}

//  A str, bin, array or map header: the fix form for n up to fix_max (none
//  when fix is 0), then 8 (when h8 is not 0), 16 or 32 bits of length.
static inline void zim_wr_header (zim_wr_t *wr, size_t n, size_t fix_max, uint8_t fix, uint8_t h8,
                                  uint8_t h16, uint8_t h32, size_t more)
{
    uint8_t *p = zim_wr_room (wr, 5 + more);
    if (fix && n <= fix_max) {
        p[0] = (uint8_t)(fix | n);
        wr->size += 1;
    } else if (h8 && n <= 0xff) {
        p[0] = h8;
        p[1] = (uint8_t)n;
        wr->size += 2;
    } else if (n <= 0xffff) {
        p[0] = h16;
        zim_mp_put (p + 1, n, 2);
        wr->size += 3;
    } else {
        p[0] = h32;
        zim_mp_put (p + 1, n, 4);
        wr->size += 5;
    }
}

static inline void zim_wr_str (zim_wr_t *wr, zim_str_t v)
{
    zim_wr_header (wr, v.len, 31, 0xa0, 0xd9, 0xda, 0xdb, v.len);
    if (v.len)
        memcpy (wr->data + wr->size, v.ptr, v.len);
    wr->size += v.len;
}

static inline void zim_wr_bin (zim_wr_t *wr, zim_str_t v)
{
    zim_wr_header (wr, v.len, 0, 0, 0xc4, 0xc5, 0xc6, v.len);
    if (v.len)
        memcpy (wr->data + wr->size, v.ptr, v.len);
    wr->size += v.len;
}

static inline void zim_wr_array (zim_wr_t *wr, uint32_t count)
{
    zim_wr_header (wr, count, 15, 0x90, 0, 0xdc, 0xdd, 0);
}

static inline void zim_wr_map (zim_wr_t *wr, uint32_t count)
{
    zim_wr_header (wr, count, 15, 0x80, 0, 0xde, 0xdf, 0);
}

#ifdef __cplusplus
}
#endif
#endif
