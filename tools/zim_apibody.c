/*  zim_apibody.c: request bodies of the backend API (zim_apibody.h). */
#include "tools/zim_apibody.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <string.h>
#include <strings.h>

bool zim_apibody_is_msgpack (const char *type)
{
    return type && strncasecmp (type, "application/msgpack", 19) == 0;
}

//  One msgpack value of rd as JSON, or NULL (refused or cut short).
static json_t *s_mp_to_json (zim_rd_t *rd, int depth)
{
    if (depth > ZIM_APIBODY_DEPTH)
        return NULL;
    switch (zim_rd_peek (rd)) {
    case ZIM_MP_NIL:
        return zim_rd_nil (rd) ? NULL : json_null ();
    case ZIM_MP_BOOL: {
        bool b;
        return zim_rd_bool (rd, &b) ? NULL : json_boolean (b);
    }
    case ZIM_MP_UINT:
    case ZIM_MP_INT: {
        int64_t v;
        return zim_rd_int (rd, &v) ? NULL : json_integer ((json_int_t)v);
    }
    case ZIM_MP_FLOAT: {
        zim_str_t raw;
        if (zim_rd_skip (rd, &raw))
            return NULL;
        const uint8_t *b = (const uint8_t *)raw.ptr;
        uint64_t bits = 0;
        for (size_t i = 1; i < raw.len; i++)
            bits = bits << 8 | b[i];
        if (raw.len == 5) {
            uint32_t f32 = (uint32_t)bits;
            float f;
            memcpy (&f, &f32, sizeof f);
            return json_real ((double)f);
        }
        double d;
        memcpy (&d, &bits, sizeof d);
        return json_real (d);
    }
    case ZIM_MP_STR: {
        zim_str_t s;
        return zim_rd_str (rd, &s) ? NULL : json_stringn (s.ptr, s.len);
    }
    case ZIM_MP_ARRAY: {
        uint32_t n;
        if (zim_rd_array (rd, &n))
            return NULL;
        json_t *a = json_array ();
        for (uint32_t i = 0; i < n; i++) {
            json_t *x = s_mp_to_json (rd, depth + 1);
            if (!x || json_array_append_new (a, x)) {
                json_decref (a);
                return NULL;
            }
        }
        return a;
    }
    case ZIM_MP_MAP: {
        uint32_t n;
        if (zim_rd_map (rd, &n))
            return NULL;
        json_t *m = json_object ();
        for (uint32_t i = 0; i < n; i++) {
            zim_str_t k;
            char key[256];
            json_t *x = NULL;
            if (zim_rd_str (rd, &k) || zim_str_copy (k, key, sizeof key) ||
                !(x = s_mp_to_json (rd, depth + 1)) || json_object_set_new (m, key, x)) {
                json_decref (m);
                return NULL;
            }
        }
        return m;
    }
    default:
        return NULL; //  bin, ext, the end
    }
}

json_t *zim_apibody_load (const char *type, const char *body, size_t len, const char **why)
{
    if (zim_apibody_is_msgpack (type)) {
        zim_rd_t rd;
        zim_rd_init (&rd, body, len);
        json_t *doc = zim_rd_peek (&rd) == ZIM_MP_MAP ? s_mp_to_json (&rd, 0) : NULL;
        if (!doc || zim_rd_left (&rd)) {
            json_decref (doc);
            *why = "the body must be exactly one msgpack map (string keys; no bin or ext)";
            return NULL;
        }
        return doc;
    }
    json_t *doc = json_loadb (body, len, 0, NULL);
    if (!json_is_object (doc)) {
        json_decref (doc);
        *why = "the body must be a JSON object";
        return NULL;
    }
    return doc;
}

int zim_apibody_raw (const char *body, size_t len, const char *key, zim_str_t *raw)
{
    zim_rd_t rd;
    uint32_t n;
    zim_rd_init (&rd, body, len);
    if (zim_rd_peek (&rd) != ZIM_MP_MAP || zim_rd_map (&rd, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        zim_str_t k, v;
        if (zim_rd_str (&rd, &k) || zim_rd_skip (&rd, &v))
            return -1;
        if (zim_str_eq (k, key)) {
            *raw = v;
            return 0;
        }
    }
    return -1;
}

static int s_to_mp (zim_wr_t *wr, json_t *v, int depth)
{
    if (depth > ZIM_APIBODY_DEPTH)
        return -1;
    switch (json_typeof (v)) {
    case JSON_OBJECT: {
        zim_wr_map (wr, (uint32_t)json_object_size (v));
        const char *k;
        json_t *x;
        json_object_foreach (v, k, x)
        {
            zim_wr_cstr (wr, k);
            if (s_to_mp (wr, x, depth + 1))
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        zim_wr_array (wr, (uint32_t)json_array_size (v));
        size_t i;
        json_t *x;
        json_array_foreach (v, i, x) if (s_to_mp (wr, x, depth + 1)) return -1;
        return 0;
    }
    case JSON_STRING:
        zim_wr_str (wr, (zim_str_t){json_string_value (v), json_string_length (v)});
        return 0;
    case JSON_INTEGER:
        if (json_integer_value (v) >= 0)
            zim_wr_uint (wr, (uint64_t)json_integer_value (v));
        else
            zim_wr_int (wr, (int64_t)json_integer_value (v));
        return 0;
    case JSON_REAL: {
        double d = json_real_value (v);
        uint64_t bits;
        memcpy (&bits, &d, sizeof bits);
        uint8_t b[9] = {0xcb};
        for (int i = 0; i < 8; i++)
            b[1 + i] = (uint8_t)(bits >> (56 - 8 * i));
        zim_wr_raw (wr, b, sizeof b);
        return 0;
    }
    case JSON_TRUE:
        zim_wr_bool (wr, true);
        return 0;
    case JSON_FALSE:
        zim_wr_bool (wr, false);
        return 0;
    default:
        zim_wr_nil (wr);
        return 0;
    }
}

int zim_apibody_to_mp (zim_wr_t *wr, json_t *v)
{
    return s_to_mp (wr, v, 0);
}

void zim_apibody_test (bool verbose)
{
    (void)verbose;
    const char *why = NULL;
    //  The same fields either way; a float survives the round trip.
    json_t *in = json_loads (
        "{\"users\":[\"a\",\"b\"],\"data\":{\"x\":-1,\"y\":1.5,\"z\":[true,null]}}", 0, NULL);
    zim_wr_t wr;
    zim_wr_init (&wr);
    assert (zim_apibody_to_mp (&wr, in) == 0);
    json_t *out = zim_apibody_load ("application/msgpack", (const char *)wr.data, wr.size, &why);
    assert (out && json_equal (in, out));
    zim_str_t raw;
    assert (zim_apibody_raw ((const char *)wr.data, wr.size, "data", &raw) == 0 && raw.len > 5);
    assert (zim_apibody_raw ((const char *)wr.data, wr.size, "nope", &raw) == -1);
    json_decref (out);
    //  Refused: trailing bytes, not a map, a bin, JSON that is no object.
    zim_wr_raw (&wr, "\xc0", 1);
    assert (!zim_apibody_load ("application/msgpack", (const char *)wr.data, wr.size, &why));
    assert (strstr (why, "msgpack"));
    assert (!zim_apibody_load ("application/msgpack", "\xa2hi", 3, &why));
    assert (!zim_apibody_load ("application/msgpack", "\x81\xa1x\xc4\x01z", 6, &why));
    assert (!zim_apibody_load ("application/json", "[1]", 3, &why));
    assert (!zim_apibody_load (NULL, "{", 1, &why));
    out = zim_apibody_load (NULL, "{\"a\":1}", 7, &why);
    assert (json_is_object (out));
    json_decref (out);
    //  Too deep.
    json_t *deep = json_array ();
    for (int i = 0; i < ZIM_APIBODY_DEPTH + 2; i++)
        deep = json_pack ("[o]", deep);
    zim_wr_reset (&wr);
    assert (zim_apibody_to_mp (&wr, deep) == -1);
    json_decref (deep);
    json_decref (in);
    zim_wr_free (&wr);
}
