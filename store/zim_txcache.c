/*  zim_txcache.c: a write transaction's cache of values by key (see
    zim_txcache.h). Slots are a header and the value, back to back.
*/
#include "store/zim_txcache.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

//  What precedes each value in a slot.
typedef struct {
    uint64_t hash;    //  FNV-1a of the key
    uint32_t gen;     //  in use when equal to the table's generation
    uint32_t key_off; //  key bytes in keys
    uint16_t key_len; //  key length
} s_head_t;

struct _zim_txcache_t {
    size_t value_size; //  bytes of a value
    size_t stride;     //  bytes of a slot, a multiple of 8
    uint8_t *tab;      //  cap slots
    size_t cap;        //  a power of two (0 before first use)
    uint32_t *used;    //  slots in use this generation, in order of adding
    size_t nused;      //  entries in used
    uint32_t gen;      //  current generation
    uint8_t *keys;     //  key bytes of the entries
    size_t keys_size;  //  bytes used
    size_t keys_alloc; //  bytes allocated
};

static uint64_t s_hash (const uint8_t *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static s_head_t *s_slot (zim_txcache_t *self, uint8_t *tab, size_t i)
{
    return (s_head_t *)(tab + i * self->stride);
}

zim_txcache_t *zim_txcache_new (size_t value_size)
{
    zim_txcache_t *self = zim_calloc (1, sizeof *self);
    self->value_size = value_size;
    self->stride = (sizeof (s_head_t) + value_size + 7) & ~(size_t)7;
    self->gen = 1;
    return self;
}

void zim_txcache_destroy (zim_txcache_t **self_p)
{
    zim_txcache_t *self = *self_p;
    if (!self)
        return;
    free (self->tab);
    free (self->used);
    free (self->keys);
    free (self);
    *self_p = NULL;
}

void zim_txcache_reset (zim_txcache_t *self)
{
    if (++self->gen == 0) {
        memset (self->tab, 0, self->cap * self->stride);
        self->gen = 1;
    }
    self->nused = 0;
    self->keys_size = 0;
}

void zim_txcache_reserve (zim_txcache_t *self, size_t n)
{
    if ((self->nused + n) * 2 <= self->cap)
        return;
    size_t cap = self->cap ? self->cap * 2 : 1024;
    while ((self->nused + n) * 2 > cap)
        cap *= 2;
    uint8_t *tab = zim_calloc (cap, self->stride);
    uint32_t *used = zim_calloc (cap, sizeof *used);
    for (size_t u = 0; u < self->nused; u++) {
        s_head_t *e = s_slot (self, self->tab, self->used[u]);
        size_t i = e->hash & (cap - 1);
        while (s_slot (self, tab, i)->gen == self->gen)
            i = (i + 1) & (cap - 1);
        memcpy (s_slot (self, tab, i), e, self->stride);
        used[u] = (uint32_t)i;
    }
    free (self->tab);
    free (self->used);
    self->tab = tab;
    self->used = used;
    self->cap = cap;
}

void *zim_txcache_find (zim_txcache_t *self, const void *key, size_t len, size_t *slot)
{
    assert (self->nused * 2 < self->cap && len <= UINT16_MAX);
    uint64_t h = s_hash (key, len);
    size_t i = h & (self->cap - 1);
    s_head_t *e;
    while ((e = s_slot (self, self->tab, i))->gen == self->gen) {
        if (e->hash == h && e->key_len == len && memcmp (self->keys + e->key_off, key, len) == 0) {
            *slot = i;
            return e + 1;
        }
        i = (i + 1) & (self->cap - 1);
    }
    *slot = i;
    return NULL;
}

void *zim_txcache_add (zim_txcache_t *self, size_t slot, const void *key, size_t len)
{
    if (self->keys_size + len > self->keys_alloc) {
        self->keys_alloc = (self->keys_alloc + len) * 2;
        self->keys = zim_realloc (self->keys, self->keys_alloc);
    }
    memcpy (self->keys + self->keys_size, key, len);
    s_head_t *e = s_slot (self, self->tab, slot);
    memset (e, 0, self->stride);
    *e = (s_head_t){s_hash (key, len), self->gen, (uint32_t)self->keys_size, (uint16_t)len};
    self->keys_size += len;
    self->used[self->nused++] = (uint32_t)slot;
    return e + 1;
}

void *zim_txcache_value (zim_txcache_t *self, size_t slot)
{
    return s_slot (self, self->tab, slot) + 1;
}

size_t zim_txcache_size (zim_txcache_t *self)
{
    return self->nused;
}

void *zim_txcache_at (zim_txcache_t *self, size_t i, const void **key, size_t *len)
{
    s_head_t *e = s_slot (self, self->tab, self->used[i]);
    *key = self->keys + e->key_off;
    *len = e->key_len;
    return e + 1;
}

//  -------------------------------------------------------------------------
//  Selftest

void zim_txcache_test (bool verbose)
{
    zim_txcache_t *cache = zim_txcache_new (12);
    //  3,000 keys, more than the first table holds: each is found again
    //  after the table grew, with its value.
    for (int round = 0; round < 2; round++) {
        for (uint32_t k = 0; k < 3000; k++) {
            char key[16];
            int len = snprintf (key, sizeof key, "key-%u", k);
            size_t slot;
            zim_txcache_reserve (cache, 1);
            uint32_t *v = zim_txcache_find (cache, key, (size_t)len, &slot);
            if (round == 0) {
                assert (!v);
                v = zim_txcache_add (cache, slot, key, (size_t)len);
                assert (v[0] == 0 && v[1] == 0 && v[2] == 0);
                v[0] = k;
            } else
                assert (v && v[0] == k);
        }
    }
    assert (zim_txcache_size (cache) == 3000);
    const void *key;
    size_t len;
    uint32_t *v = zim_txcache_at (cache, 2999, &key, &len);
    assert (v[0] == 2999 && len == 8 && memcmp (key, "key-2999", 8) == 0);
    //  A new transaction: nothing is there any more.
    zim_txcache_reset (cache);
    size_t slot;
    zim_txcache_reserve (cache, 1);
    assert (zim_txcache_size (cache) == 0 && !zim_txcache_find (cache, "key-1", 5, &slot));
    zim_txcache_destroy (&cache);
    zim_txcache_destroy (&cache);
    if (verbose)
        zsys_info ("txcache: values found across growth, gone with a new transaction");
}
