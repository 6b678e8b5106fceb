/*  zim_groups.c: the store's side of groups and channels (see
    zim_groups.h). Admin changes run in a nested transaction, so a refused
    one (a group too large, a bad uid in the list) leaves nothing behind
    while the rest of the group commit goes on.
*/
#include "store/zim_groups_int.h"
#include "store/zim_convs.h"
#include "store/zim_idem.h"
#include "store/zim_key.h"
#include "store/zim_msgrec.h"
#include "msg/zim_ring.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <jansson.h>
#include <string.h>

zim_groups_t *zim_groups_new (zim_db_t *db, zim_inbox_t *inbox, zim_shell_t *shell)
{
    zim_groups_t *self = zim_calloc (1, sizeof *self);
    self->db = db;
    self->dbs = zim_db_dbs (db);
    self->inbox = inbox;
    self->shell = shell;
    self->def_group = ZIM_GROUPS_MAX_GROUP;
    self->def_channel = ZIM_GROUPS_MAX_CHANNEL;
    self->def_behind = ZIM_GROUPS_MAX_BEHIND;
    self->limits = (zim_groups_limits_t){&self->def_group, &self->def_channel, &self->def_behind};
    zim_wr_init (&self->items);
    zim_wr_init (&self->list);
    zim_wr_init (&self->joins);
    zim_wr_init (&self->leaves);
    zim_wr_init (&self->entries);
    return self;
}

void zim_groups_destroy (zim_groups_t **self_p)
{
    zim_groups_t *self = *self_p;
    if (!self)
        return;
    free (self->names);
    free (self->members);
    free (self->seqs);
    zim_wr_free (&self->items);
    zim_wr_free (&self->list);
    zim_wr_free (&self->joins);
    zim_wr_free (&self->leaves);
    zim_wr_free (&self->entries);
    zim_ring_destroy (&self->ring);
    for (size_t i = 0; i < self->nshards; i++)
        free (self->shard_names[i]);
    free (self->shard_names);
    free (self->ring_names);
    free (self);
    *self_p = NULL;
}

void zim_groups_limits (zim_groups_t *self, const zim_groups_limits_t *limits)
{
    self->limits = *limits;
}

//  -------------------------------------------------------------------------
//  Records and keys

void zim_groups_gkey (zim_key_t *k, zim_str_t app, zim_str_t group)
{
    zim_key_user (k, app, group);
}

static void s_mkey (zim_key_t *k, zim_str_t app, zim_str_t group, zim_str_t uid)
{
    zim_key_user (k, app, group);
    zim_key_str (k, uid);
}

static void s_ukey (zim_key_t *k, zim_str_t app, zim_str_t uid, zim_str_t group)
{
    zim_key_user (k, app, uid);
    zim_key_str (k, group);
}

//  Reads the group's record; 0, MDB_NOTFOUND or an LMDB error.
int zim_groups_rec_get (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        zim_grec_t *g)
{
    zim_key_t k;
    zim_groups_gkey (&k, app, group);
    MDB_val kv = zim_key_val (&k), v;
    int rc = mdb_get (txn, dbs->groups, &kv, &v);
    if (rc)
        return rc;
    if (v.mv_size != 32)
        return MDB_CORRUPTED;
    const uint8_t *p = v.mv_data;
    *g = (zim_grec_t){zim_be64_get (p), zim_be64_get (p + 8), zim_be64_get (p + 16),
                      zim_be64_get (p + 24)};
    return 0;
}

int zim_groups_rec_put (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        const zim_grec_t *g)
{
    zim_key_t k;
    zim_groups_gkey (&k, app, group);
    uint8_t buf[32];
    zim_be64_put (buf, g->kind);
    zim_be64_put (buf + 8, g->flags);
    zim_be64_put (buf + 16, g->gseq);
    zim_be64_put (buf + 24, g->members);
    MDB_val kv = zim_key_val (&k), v = {32, buf};
    return mdb_put (txn, dbs->groups, &kv, &v, 0);
}

//  The member's join point into *joined; 0, MDB_NOTFOUND or an LMDB error.
int zim_groups_member_get (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                           zim_str_t uid, uint64_t *joined)
{
    zim_key_t k;
    s_mkey (&k, app, group, uid);
    MDB_val kv = zim_key_val (&k), v;
    int rc = mdb_get (txn, dbs->gmembers, &kv, &v);
    if (rc == 0)
        *joined = v.mv_size == 8 ? zim_be64_get (v.mv_data) : 0;
    return rc;
}

//  Adds (joined set) or removes (joined NULL) a member, by group and by
//  user; *changed tells whether it was not so already.
int zim_groups_member_set (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                           zim_str_t uid, const uint64_t *joined, bool *changed)
{
    zim_key_t mk, uk;
    s_mkey (&mk, app, group, uid);
    s_ukey (&uk, app, uid, group);
    MDB_val mkv = zim_key_val (&mk), ukv = zim_key_val (&uk);
    *changed = false;
    if (!joined) {
        int rc = mdb_del (txn, dbs->gmembers, &mkv, NULL);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc == 0)
            rc = mdb_del (txn, dbs->ugroups, &ukv, NULL);
        *changed = rc == 0;
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    uint8_t buf[8];
    zim_be64_put (buf, *joined);
    MDB_val v = {8, buf};
    int rc = mdb_put (txn, dbs->gmembers, &mkv, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return 0;
    if (rc == 0)
        rc = mdb_put (txn, dbs->ugroups, &ukv, &v, 0);
    *changed = rc == 0;
    return rc;
}

const char *zim_groups_kind_name (uint64_t kind)
{
    return kind == ZIM_GROUP_CHANNEL ? "channel" : "group";
}

//  Room for n members of a post.
void zim_groups_room (zim_groups_t *self, size_t n)
{
    if (n <= self->alloc)
        return;
    self->alloc = n * 2;
    self->names = zim_realloc (self->names, self->alloc * sizeof *self->names);
    self->members = zim_realloc (self->members, self->alloc * sizeof *self->members);
    self->seqs = zim_realloc (self->seqs, self->alloc * sizeof *self->seqs);
}

//  Copies the group's members into self->members; *n gets how many.
int zim_groups_members (zim_groups_t *self, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        size_t expect, size_t *n)
{
    zim_key_t prefix;
    zim_groups_gkey (&prefix, app, group);
    MDB_cursor *cur;
    int rc = mdb_cursor_open (txn, self->dbs->gmembers, &cur);
    if (rc)
        return rc;
    zim_groups_room (self, expect + 1);
    MDB_val k = zim_key_val (&prefix), v;
    *n = 0;
    rc = mdb_cursor_get (cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size > prefix.len && memcmp (k.mv_data, prefix.buf, prefix.len) == 0) {
        const uint8_t *p = (const uint8_t *)k.mv_data + prefix.len;
        size_t len = p[0];
        if (len == 0 || len > ZIM_ID_MAX || prefix.len + 1 + len != k.mv_size) {
            rc = MDB_CORRUPTED;
            break;
        }
        zim_groups_room (self, *n + 1);
        memcpy (self->names[*n], p + 1, len);
        self->members[*n] = (zim_str_t){NULL, len};
        (*n)++;
        rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close (cur);
    //  Views only now: names may have moved while it grew.
    for (size_t i = 0; i < *n; i++)
        self->members[i].ptr = self->names[i];
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  The ring over a comma-separated list of shard names (kept while the
//  list is the same); NULL for an empty list.
zim_ring_t *zim_groups_ring (zim_groups_t *self, zim_str_t names)
{
    if (names.len == 0)
        return NULL;
    if (self->ring_names && strlen (self->ring_names) == names.len &&
        memcmp (self->ring_names, names.ptr, names.len) == 0)
        return self->ring;
    zim_ring_destroy (&self->ring);
    for (size_t i = 0; i < self->nshards; i++)
        free (self->shard_names[i]);
    free (self->ring_names);
    self->ring_names = zim_str_dup (names);
    self->nshards = 0;
    self->shard_names = zim_realloc (self->shard_names, (names.len + 1) * sizeof (char *));
    char *copy = zim_str_dup (names), *save = NULL;
    for (char *tok = strtok_r (copy, ",", &save); tok; tok = strtok_r (NULL, ",", &save))
        self->shard_names[self->nshards++] = strdup (tok);
    free (copy);
    self->ring = zim_ring_new ((const char *const *)self->shard_names, self->nshards);
    return self->ring;
}

//  True if uid lives on the shard called shard by the ring (or there is
//  no ring: one shard).
bool zim_groups_local (zim_groups_t *self, zim_ring_t *ring, zim_str_t app, zim_str_t uid,
                       zim_str_t shard)
{
    if (!ring)
        return true;
    int i = zim_ring_lookup (ring, app, uid);
    return i >= 0 && zim_str_eq (shard, self->shard_names[i]);
}

//  -------------------------------------------------------------------------
//  Lists

int zim_groups_collect (void *arg, zim_str_t uid)
{
    zim_groups_t *self = (zim_groups_t *)arg;
    size_t n = self->nshards_tmp;
    zim_groups_room (self, n + 1);
    memcpy (self->names[n], uid.ptr, uid.len);
    self->members[n] = (zim_str_t){NULL, uid.len};
    self->nshards_tmp = n + 1;
    return 0;
}

int zim_groups_log_get (zim_groups_t *self, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        uint64_t gseq, uint64_t *id, zim_msgrec_t *rec)
{
    zim_key_t lk;
    zim_groups_gkey (&lk, app, group);
    zim_key_u64 (&lk, gseq);
    MDB_val lkv = zim_key_val (&lk), v, rv;
    int rc = mdb_get (txn, self->dbs->glog, &lkv, &v);
    if (rc)
        return rc;
    uint8_t idb[8];
    memcpy (idb, v.mv_data, 8);
    *id = zim_be64_get (idb);
    MDB_val rk = {8, idb};
    rc = mdb_get (txn, self->dbs->msgs, &rk, &rv);
    if (rc == 0 && zim_msgrec_parse (&rv, rec))
        rc = MDB_NOTFOUND; //  a corrupt record reads as gone
    return rc;
}

size_t zim_groups_place (zim_groups_t *self, zim_ring_t *ring, zim_str_t app, zim_str_t shard,
                         size_t n)
{
    size_t nlocal = 0;
    zim_wr_reset (&self->list);
    for (size_t i = 0; i < n; i++) {
        zim_str_t uid = self->members[i];
        if (zim_groups_local (self, ring, app, uid, shard)) {
            //  Swap into the local prefix (views into names stay valid).
            self->members[i] = self->members[nlocal];
            self->members[nlocal++] = uid;
        } else {
            if (self->list.size)
                zim_wr_raw (&self->list, ",", 1);
            zim_wr_raw (&self->list, uid.ptr, uid.len);
        }
    }
    return nlocal;
}

int zim_groups_logged (zim_groups_t *self, MDB_txn *txn, zim_str_t app, zim_str_t group,
                       zim_grec_t *g, uint64_t gseq, uint64_t id, size_t nlocal, size_t n)
{
    int rc = zim_groups_entries_put (self, txn, id, self->members, self->seqs, nlocal);
    if (rc)
        return rc;
    uint8_t idb[8];
    zim_be64_put (idb, id);
    if (nlocal < n) {
        MDB_val jk = {8, idb}, jv = {self->list.size, self->list.data};
        if ((rc = mdb_put (txn, self->dbs->gjobs, &jk, &jv, 0)))
            return rc;
        self->jobs++;
    }
    zim_key_t lk;
    zim_groups_gkey (&lk, app, group);
    zim_key_u64 (&lk, gseq);
    MDB_val lkv = zim_key_val (&lk), idv = {8, idb};
    if ((rc = mdb_put (txn, self->dbs->glog, &lkv, &idv, 0)))
        return rc;
    g->gseq = gseq;
    self->fanout += n;
    return zim_groups_rec_put (self->dbs, txn, app, group, g);
}

int zim_groups_entries_put (zim_groups_t *self, MDB_txn *txn, uint64_t id, const zim_str_t *members,
                            const uint64_t *seqs, size_t n)
{
    if (n == 0)
        return 0;
    zim_wr_reset (&self->entries);
    for (size_t i = 0; i < n; i++)
        zim_gmember_pack (&self->entries, &(zim_gmember_t){members[i], seqs[i]});
    uint8_t idb[8];
    zim_be64_put (idb, id);
    MDB_val k = {8, idb}, v = {self->entries.size, self->entries.data};
    return mdb_put (txn, self->dbs->gfan, &k, &v, 0);
}

//  Calls fn for each uid of a comma-separated list; stops at the first
//  error. Returns 0, ZIM_EVALUE for an entry that is not a uid, or fn's.
int zim_groups_each (zim_str_t list, int (*fn) (void *, zim_str_t), void *arg)
{
    size_t i = 0;
    while (i < list.len) {
        size_t j = i;
        while (j < list.len && list.ptr[j] != ',')
            j++;
        zim_str_t uid = {list.ptr + i, j - i};
        if (!zim_uid_valid (uid))
            return ZIM_EVALUE;
        int rc = fn (arg, uid);
        if (rc)
            return rc;
        i = j + 1;
    }
    return 0;
}

//  -------------------------------------------------------------------------
//  Dispatch

int zim_groups_apply (zim_groups_t *self, MDB_txn *txn, int kind, const void *m, zim_wr_t *out,
                      bool *wrote)
{
    *wrote = false;
    if (kind == ZIM_MSG_GPOST)
        return zim_groups_post (self, txn, (const zim_gpost_t *)m, out, wrote);
    if (kind == ZIM_MSG_GFAN)
        return zim_groups_fan (self, txn, (const zim_gfanout_t *)m, out, wrote);
    if (kind == ZIM_MSG_GDONE) {
        zim_wr_reset (out);
        return zim_groups_done (self, txn, (const zim_gdone_t *)m, wrote);
    }
    assert (kind == ZIM_MSG_GADMIN);
    return zim_groups_admin (self, txn, (const zim_gadmin_t *)m, out, wrote);
}

void zim_groups_failed (int kind, uint64_t req, zim_wr_t *out)
{
    zim_wr_reset (out);
    if (kind == ZIM_MSG_GPOST)
        zim_groups_posted (out, req, ZIM_ESTORE, 0, 0, 0, 0, 0, 0);
    else if (kind == ZIM_MSG_GFAN)
        zim_groups_fanned (out, req, ZIM_ESTORE, 0);
    else
        zim_gadmin_r_pack (out, &(zim_gadmin_r_t){req, ZIM_ESTORE, zim_str ("")});
}

void zim_groups_stats (zim_groups_t *self, json_t *stats)
{
    json_object_set_new (stats, "group_posts", json_integer ((json_int_t)self->posts));
    json_object_set_new (stats, "group_fanout", json_integer ((json_int_t)self->fanout));
    json_object_set_new (stats, "group_refused", json_integer ((json_int_t)self->refused));
    json_object_set_new (stats, "group_jobs", json_integer ((json_int_t)self->jobs));
    json_object_set_new (stats, "group_jobs_done", json_integer ((json_int_t)self->jobs_done));
    json_object_set_new (stats, "group_events", json_integer ((json_int_t)self->events));
}

//  -------------------------------------------------------------------------
//  Selftest

static bool s_test_history; //  the next create's history_for_new

//  The last seq of uid's inbox.
static uint64_t s_test_seq (zim_db_t *db, zim_inbox_t *inbox, const char *uid)
{
    MDB_txn *txn;
    uint64_t seq = 0;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    assert (zim_inbox_last_seq (inbox, zim_str ("demo"), zim_str (uid), &seq) == 0 || seq == 0);
    mdb_txn_abort (txn);
    return seq;
}

//  Applies one admin op in its own transaction; returns its status.
static int64_t s_test_admin (zim_groups_t *g, zim_db_t *db, zim_inbox_t *inbox, int op,
                             const char *group, uint64_t kind, const char *add, const char *remove,
                             char *json, size_t size)
{
    MDB_txn *txn;
    zim_wr_t out;
    zim_wr_init (&out);
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    zim_gadmin_t m = {7,    (uint64_t)op,   zim_str ("demo"), zim_str (group),
                      kind, s_test_history, zim_str (add),    zim_str (remove),
                      0};
    bool wrote;
    assert (zim_groups_apply (g, txn, ZIM_MSG_GADMIN, &m, &out, &wrote) == 0);
    assert (zim_inbox_finish (inbox) == 0 && mdb_txn_commit (txn) == 0);
    zim_inbox_committed (inbox);
    zim_rd_t rd;
    int k;
    uint32_t fields;
    zim_gadmin_r_t r;
    zim_rd_init (&rd, out.data, out.size);
    assert (zim_msg_kind (&rd, &k, &fields) == 0 && k == ZIM_MSG_GADMIN_R);
    assert (zim_gadmin_r_unpack (&rd, fields, &r) == 0 && r.req == 7);
    if (json)
        zim_str_copy (r.json, json, size);
    zim_wr_free (&out);
    return r.status;
}

//  Posts one message; returns the GPOSTED (members' seqs into seqs).
static zim_gposted_t s_test_post (zim_groups_t *g, zim_db_t *db, zim_inbox_t *inbox, uint64_t id,
                                  const char *from, const char *cid, const char *group,
                                  uint64_t *seqs)
{
    MDB_txn *txn;
    zim_wr_t out;
    zim_wr_init (&out);
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    zim_gpost_t m = {1,
                     id,
                     1000 + id,
                     zim_str ("demo"),
                     zim_str (from),
                     zim_str (cid),
                     zim_str (group),
                     {"\xa2hi", 3},
                     {NULL, 0},
                     {NULL, 0}};
    bool wrote;
    assert (zim_groups_apply (g, txn, ZIM_MSG_GPOST, &m, &out, &wrote) == 0);
    assert (zim_inbox_finish (inbox) == 0 && mdb_txn_commit (txn) == 0);
    zim_inbox_committed (inbox);
    zim_rd_t rd;
    int k;
    uint32_t fields;
    zim_gposted_t r;
    zim_rd_init (&rd, out.data, out.size);
    assert (zim_msg_kind (&rd, &k, &fields) == 0 && k == ZIM_MSG_GPOSTED);
    assert (zim_gposted_unpack (&rd, fields, &r) == 0);
    for (uint32_t i = 0; i < r.nmembers; i++) {
        zim_gmember_t gm;
        assert (zim_gmember_unpack (&r.members, &gm) == 0);
        if (seqs)
            seqs[i] = gm.seq;
    }
    zim_wr_free (&out);
    return r;
}

//  A GREAD from a read transaction; returns the answer's status, count
//  and reset.
static zim_gread_r_t s_test_read (zim_groups_t *g, zim_db_t *db, int mode, const char *uid,
                                  const char *group, uint64_t since, uint64_t limit)
{
    MDB_txn *txn;
    zim_wr_t out;
    zim_wr_init (&out);
    assert (mdb_txn_begin (zim_db_env (db), NULL, MDB_RDONLY, &txn) == 0);
    zim_gread_t m = {3,     (uint64_t)mode, zim_str ("demo"), zim_str (uid), zim_str (group),
                     since, limit};
    assert (zim_groups_read (g, txn, &m, 1 << 20, &out) == 0);
    mdb_txn_abort (txn);
    zim_rd_t rd;
    int k;
    uint32_t fields;
    zim_gread_r_t r;
    zim_rd_init (&rd, out.data, out.size);
    assert (zim_msg_kind (&rd, &k, &fields) == 0 && k == ZIM_MSG_GREAD_R);
    assert (zim_gread_r_unpack (&rd, fields, &r) == 0);
    zim_wr_free (&out);
    r.items = (zim_str_t){NULL, 0}; //  its bytes are gone
    return r;
}

void zim_groups_test (bool verbose)
{
    char *dir;
    zim_db_t *db = zim_db_test_new (&dir, 1 << 24);
    zim_inbox_t *inbox = zim_inbox_new (db, NULL);
    zim_groups_t *g = zim_groups_new (db, inbox, NULL);
    uint64_t max_group = 4, max_channel = 10, behind = 5;
    zim_groups_limits (g, &(zim_groups_limits_t){&max_group, &max_channel, &behind});
    char json[1024];

    //  Create, refusals: exists, bad uid, too large (nothing kept).
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_CREATE, "team", ZIM_GROUP_GROUP,
                          "alice,bob,carol", "", json, sizeof json) == 0);
    assert (strstr (json, "\"added\":3"));
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_CREATE, "team", 1, "x", "", NULL, 0) ==
            ZIM_EEXISTS);
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_MEMBERS, "team", 0, "dan,b:d", "", NULL, 0) ==
            ZIM_EVALUE);
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_MEMBERS, "team", 0, "dan,eve", "", NULL, 0) ==
            ZIM_EGROUPFULL);
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_GET, "team", 0, "", "", json, sizeof json) == 0);
    assert (strstr (json, "\"count\":3") && !strstr (json, "dan"));
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_GET, "none", 0, "", "", NULL, 0) ==
            ZIM_ENOGROUP);

    //  Posts: every member gets its own seq; the sender's is in the record.
    uint64_t seqs[8];
    zim_gposted_t r = s_test_post (g, db, inbox, 100, "alice", "c1", "team", seqs);
    assert (r.status == ZIM_APPEND_STORED && r.gseq == 1 && r.seq == 1 && r.nmembers == 3);
    assert (seqs[0] == 1 && seqs[1] == 1 && seqs[2] == 1);
    r = s_test_post (g, db, inbox, 101, "bob", "c1", "team", seqs);
    assert (r.status == ZIM_APPEND_STORED && r.gseq == 2 && r.seq == 2);
    //  The same cid again: the original, nobody listed.
    r = s_test_post (g, db, inbox, 102, "alice", "c1", "team", NULL);
    assert (r.status == ZIM_APPEND_DUPLICATE && r.id == 100 && r.gseq == 1 && r.seq == 1 &&
            r.nmembers == 0);
    //  A non-member, a missing group.
    assert (s_test_post (g, db, inbox, 103, "zed", "z1", "team", NULL).status == ZIM_ENOTMEMBER);
    assert (s_test_post (g, db, inbox, 104, "alice", "c9", "none", NULL).status == ZIM_ENOGROUP);
    //  Remove bob, add dan: two events in the log (the leave at gseq 3,
    //  reaching bob too; the join at 4, reaching dan first), then dan's
    //  first group message.
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_MEMBERS, "team", 0, "dan", "bob", json,
                          sizeof json) == 0);
    assert (strstr (json, "\"members\":3") && strstr (json, "\"gseq\":4"));
    r = s_test_post (g, db, inbox, 105, "carol", "k1", "team", seqs);
    assert (r.status == ZIM_APPEND_STORED && r.gseq == 5 && r.nmembers == 3);
    assert (seqs[0] == 2 && seqs[1] == 5 && seqs[2] == 5); //  dan, alice, carol (by key)
    assert (s_test_post (g, db, inbox, 106, "bob", "b2", "team", NULL).status == ZIM_ENOTMEMBER);
    assert (s_test_seq (db, inbox, "bob") == 3 && s_test_seq (db, inbox, "dan") == 2);
    //  A group's log is read from the join on: dan sees his join and one.
    zim_gread_r_t rr = s_test_read (g, db, ZIM_GREAD_LOG, "alice", "team", 0, 0);
    assert (rr.status == 0 && rr.count == 5);
    rr = s_test_read (g, db, ZIM_GREAD_LOG, "dan", "team", 0, 0);
    assert (rr.status == 0 && rr.count == 2);
    //  With history_for_new, a newcomer reads the whole log.
    s_test_history = true;
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_CREATE, "hist", ZIM_GROUP_GROUP, "alice", "",
                          NULL, 0) == 0);
    s_test_history = false;
    s_test_post (g, db, inbox, 110, "alice", "h1", "hist", NULL);
    s_test_post (g, db, inbox, 111, "alice", "h2", "hist", NULL);
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_MEMBERS, "hist", 0, "eve", "", NULL, 0) == 0);
    rr = s_test_read (g, db, ZIM_GREAD_LOG, "eve", "hist", 0, 0);
    assert (rr.status == 0 && rr.count == 3);
    assert (s_test_seq (db, inbox, "eve") == 1); //  the join event only

    //  Channels: upgrade, log reads from the join on, too far behind.
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_UPGRADE, "team", 0, "", "", json, sizeof json) ==
            0);
    for (uint64_t i = 0; i < 8; i++) {
        char cid[16];
        snprintf (cid, sizeof cid, "ch-%d", (int)i);
        r = s_test_post (g, db, inbox, 200 + i, "alice", cid, "team", NULL);
        assert (r.status == ZIM_APPEND_STORED && r.gseq == 6 + i && r.nmembers == 0 && r.seq == 0);
    }
    rr = s_test_read (g, db, ZIM_GREAD_LOG, "alice", "team", 10, 0);
    assert (rr.status == 0 && rr.count == 3 && !rr.reset && !rr.more);
    rr = s_test_read (g, db, ZIM_GREAD_LOG, "alice", "team", 0, 2);
    assert (rr.status == 0 && rr.count == 2 && rr.reset && !rr.more);
    rr = s_test_read (g, db, ZIM_GREAD_LOG, "dan", "team", 0, 100);
    assert (rr.status == 0 && rr.count == 10 && !rr.reset); //  joined after gseq 3: all of it
    //  A channel's events are in its log only (no inbox write).
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_MEMBERS, "team", 0, "", "dan", NULL, 0) == 0);
    assert (s_test_seq (db, inbox, "dan") == 2);
    rr = s_test_read (g, db, ZIM_GREAD_LOG, "alice", "team", 13, 0);
    assert (rr.status == 0 && rr.count == 1);
    //  The next post names dan (left since the last one), once.
    r = s_test_post (g, db, inbox, 220, "alice", "ch-x", "team", seqs);
    assert (r.status == ZIM_APPEND_STORED && r.gseq == 15 && r.nmembers == 1 && seqs[0] == 0);
    r = s_test_post (g, db, inbox, 221, "alice", "ch-y", "team", NULL);
    assert (r.status == ZIM_APPEND_STORED && r.nmembers == 0);
    assert (s_test_read (g, db, ZIM_GREAD_LOG, "bob", "team", 0, 0).status == ZIM_ENOTMEMBER);
    rr = s_test_read (g, db, ZIM_GREAD_LIST, "alice", "", 0, 0);
    assert (rr.status == 0 && rr.count == 2);
    assert (s_test_read (g, db, ZIM_GREAD_LIST, "bob", "", 0, 0).count == 0);
    //  Delete: the members go with it.
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_DELETE, "team", 0, "", "", NULL, 0) == 0);
    assert (s_test_read (g, db, ZIM_GREAD_LIST, "alice", "", 0, 0).count == 1); //  hist
    assert (s_test_post (g, db, inbox, 300, "alice", "d1", "team", NULL).status == ZIM_ENOGROUP);

    zim_groups_destroy (&g);
    zim_inbox_destroy (&inbox);
    zim_db_test_destroy (&db, &dir);
    if (verbose)
        zsys_info ("groups: membership, events, history_for_new, fan-out seqs, duplicates, "
                   "channels, reset");
}
