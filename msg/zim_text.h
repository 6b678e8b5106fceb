/*  zim_text.h: the debug printer. Renders msgpack values, and records
    decoded by the codec engine, as one line of readable text for logs,
    tests and the fuzz harnesses: JSON-like values (bins as hex, long
    strings and lists cut short), records as NAME{field=value ...} with the
    field names of the catalogue.
*/
#ifndef ZIM_TEXT_H_INCLUDED
#define ZIM_TEXT_H_INCLUDED

#include "msg/zim_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Appends every msgpack value in data, back to back and separated by
//  spaces, to out; where the bytes stop making sense it appends
//  " !malformed" and stops. Nesting deeper than 16 prints as "...".
void zim_text_value (zim_wr_t *out, const void *data, size_t size);

//  Appends m, decoded (or built) as rec, to out: a kind as
//  TITLE{field=value ...}, other records as {...}, a frame as op{...}.
//  Lists are read element by element (the first 16; an element that does
//  not decode prints as !error and ends the list).
void zim_text_record (zim_wr_t *out, const zim_record_t *rec, const void *m);

//  Appends s as a quoted string (escaped, cut at 200 bytes).
void zim_text_str (zim_wr_t *out, zim_str_t s);

//  Appends a NUL and returns out's text; out->size stays without the NUL.
const char *zim_text_cstr (zim_wr_t *out);

void zim_text_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
