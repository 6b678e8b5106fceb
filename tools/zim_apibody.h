/*  zim_apibody.h: request bodies of the backend API (docs/API.md,
    "Bodies"): a JSON object, or with Content-Type: application/msgpack one
    msgpack map with the same fields (string keys; str, integers, floats,
    booleans, nil, arrays and maps as values; bin and ext refused). The
    other way too: a JSON value as msgpack (a push's data).
*/
#ifndef ZIM_APIBODY_H_INCLUDED
#define ZIM_APIBODY_H_INCLUDED

#include "msg/zim_mp.h"

#include <jansson.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Values nest at most this deep.
#define ZIM_APIBODY_DEPTH 32

//  True if type (a Content-Type value, or NULL) names msgpack.
bool zim_apibody_is_msgpack (const char *type);

//  The body as a JSON object, from JSON or (type msgpack) a msgpack map.
//  Returns the object (caller owns), or NULL with *why set (a static text;
//  one that names msgpack for a msgpack body).
json_t *zim_apibody_load (const char *type, const char *body, size_t len, const char **why);

//  The bytes of top-level key's value in the msgpack map body, into *raw
//  (a view into body). Returns 0, or -1 if absent or body is no map.
int zim_apibody_raw (const char *body, size_t len, const char *key, zim_str_t *raw);

//  Writes a JSON value as msgpack; -1 if nested deeper than
//  ZIM_APIBODY_DEPTH.
int zim_apibody_to_mp (zim_wr_t *wr, json_t *v);

//  Self test of this class.
void zim_apibody_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
