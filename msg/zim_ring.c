/*  zim_ring.c: the consistent hash ring of store shards (zim_ring.h).
 */
#include "msg/zim_ring.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#define S_RING_POINTS 64

typedef struct {
    uint64_t point; //  position on the ring
    int shard;      //  index into the caller's shard list
} s_point_t;

struct zim_ring_t {
    s_point_t *points; //  sorted by point
    size_t npoints;    //  64 per shard
};

static uint64_t s_fnv (uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

#define S_FNV_BASIS 0xcbf29ce484222325ULL

uint64_t zim_user_hash (zim_str_t app, zim_str_t uid)
{
    uint64_t h = s_fnv (S_FNV_BASIS, app.ptr, app.len);
    h = s_fnv (h, "", 1);
    return s_fnv (h, uid.ptr, uid.len);
}

//  Mixes the bits of h, so that nearby FNV values spread over the ring.
static uint64_t s_mix (uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static int s_point_cmp (const void *a, const void *b)
{
    const s_point_t *x = (const s_point_t *)a, *y = (const s_point_t *)b;
    if (x->point != y->point)
        return x->point < y->point ? -1 : 1;
    return x->shard - y->shard;
}

zim_ring_t *zim_ring_new (const char *const *shards, size_t nshards)
{
    zim_ring_t *self = (zim_ring_t *)zim_calloc (1, sizeof (zim_ring_t));
    self->points = (s_point_t *)zim_calloc (nshards * S_RING_POINTS + 1, sizeof (s_point_t));
    for (size_t i = 0; i < nshards; i++)
        for (int v = 0; v < S_RING_POINTS; v++) {
            char label[128];
            int len = snprintf (label, sizeof label, "%s#%d", shards[i], v);
            s_point_t *pt = &self->points[self->npoints++];
            pt->point = s_mix (s_fnv (S_FNV_BASIS, label, (size_t)len));
            pt->shard = (int)i;
        }
    qsort (self->points, self->npoints, sizeof (s_point_t), s_point_cmp);
    return self;
}

void zim_ring_destroy (zim_ring_t **self_p)
{
    if (!*self_p)
        return;
    free ((*self_p)->points);
    free (*self_p);
    *self_p = NULL;
}

int zim_ring_lookup (const zim_ring_t *self, zim_str_t app, zim_str_t uid)
{
    if (!self || self->npoints == 0)
        return -1;
    uint64_t h = s_mix (zim_user_hash (app, uid));
    //  The first point at or after h, wrapping around.
    size_t lo = 0, hi = self->npoints;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->points[mid].point < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return self->points[lo == self->npoints ? 0 : lo].shard;
}

void zim_ring_test (bool verbose)
{
    //  The ring: the same placement whatever the order of the names; a new
    //  shard takes about its share of users, all moved to it; spread is fair.
    const char *two[] = {"store-1", "store-2"}, *owt[] = {"store-2", "store-1"};
    const char *three[] = {"store-1", "store-2", "store-3"};
    zim_ring_t *r2 = zim_ring_new (two, 2), *r2b = zim_ring_new (owt, 2);
    zim_ring_t *r3 = zim_ring_new (three, 3);
    int count[3] = {0, 0, 0}, moved = 0;
    for (int i = 0; i < 3000; i++) {
        char uid[32];
        snprintf (uid, sizeof uid, "user%d", i);
        int a = zim_ring_lookup (r2, zim_str ("demo"), zim_str (uid));
        int b = zim_ring_lookup (r2b, zim_str ("demo"), zim_str (uid));
        int n3 = zim_ring_lookup (r3, zim_str ("demo"), zim_str (uid));
        assert (a >= 0 && a < 2 && strcmp (two[a], owt[b]) == 0);
        count[a]++;
        if (strcmp (three[n3], two[a]) != 0) {
            assert (n3 == 2); //  only ever to the new shard
            moved++;
        }
    }
    assert (count[0] > 1000 && count[1] > 1000);
    assert (moved > 600 && moved < 1400);
    assert (zim_ring_lookup (NULL, zim_str ("demo"), zim_str ("x")) == -1);
    zim_ring_destroy (&r2);
    zim_ring_destroy (&r2b);
    zim_ring_destroy (&r3);
    if (verbose)
        printf ("(ring ok) ");
}
