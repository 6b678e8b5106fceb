/*  zim_mp.h: strict msgpack reader and buffered writer shared by every codec.

    The reader is a cursor over a borrowed buffer: every read checks the
    bytes it needs against the end of the buffer and fails with -1 instead of
    reading past it, and strings come back as borrowed views, so decoding
    allocates nothing. The writer wraps msgpack-c's packer over a growable
    buffer and adds raw insertion of already-encoded values (message bodies
    are forwarded byte for byte, never re-encoded).
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
int zim_rd_uint (zim_rd_t *rd, uint64_t *out); //  any non-negative integer
int zim_rd_int (zim_rd_t *rd, int64_t *out);   //  any integer within int64
int zim_rd_str (zim_rd_t *rd, zim_str_t *out);
int zim_rd_bin (zim_rd_t *rd, zim_str_t *out);
int zim_rd_array (zim_rd_t *rd, uint32_t *count);
int zim_rd_map (zim_rd_t *rd, uint32_t *count);
//  Consumes one whole value of any type and, if raw is not NULL, returns the
//  exact bytes it spanned. Iterative, so deep nesting cannot exhaust the
//  stack, and every declared length is checked against the bytes left.
int zim_rd_skip (zim_rd_t *rd, zim_str_t *raw);

//  Writer: a growable buffer plus msgpack-c's packer writing into it.
//  Out of memory aborts (msgpack-c's sbuffer returns an error that we turn
//  into an abort in zim_wr_init's write callback).
typedef struct {
    char *data;           //  encoded bytes so far
    size_t size;          //  bytes used
    size_t alloc;         //  bytes allocated
    msgpack_packer pk;    //  packer that appends to data
} zim_wr_t;

void zim_wr_init (zim_wr_t *wr);
//  Frees the buffer; the writer may be initialised again.
void zim_wr_free (zim_wr_t *wr);
//  Forgets the content but keeps the allocation, for reuse.
void zim_wr_reset (zim_wr_t *wr);
void zim_wr_nil (zim_wr_t *wr);
void zim_wr_bool (zim_wr_t *wr, bool v);
void zim_wr_uint (zim_wr_t *wr, uint64_t v);
void zim_wr_int (zim_wr_t *wr, int64_t v);
void zim_wr_str (zim_wr_t *wr, zim_str_t v);
void zim_wr_cstr (zim_wr_t *wr, const char *s);
void zim_wr_bin (zim_wr_t *wr, zim_str_t v);
void zim_wr_array (zim_wr_t *wr, uint32_t count);
void zim_wr_map (zim_wr_t *wr, uint32_t count);
//  Appends bytes that already are one or more encoded values.
void zim_wr_raw (zim_wr_t *wr, const void *data, size_t size);

void zim_mp_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
