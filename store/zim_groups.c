/*  zim_groups.c: the store's side of groups and channels (see
    zim_groups.h). Admin changes run in a nested transaction, so a refused
    one (a group too large, a bad uid in the list) leaves nothing behind
    while the rest of the group commit goes on.
*/
#include "store/zim_groups.h"
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

#define S_READ_LIMIT 100      //  csync messages per page by default
#define S_READ_LIMIT_MAX 1000 //  and at most
#define S_LIST_MAX 1000       //  groups in a list answer, at most
#define S_FLAG_HISTORY 1      //  flags: new members read the earlier log
#define S_READERS_MAX 200     //  read counts for groups up to this size

//  A group's record (the value of groups).
typedef struct {
    uint64_t kind;    //  ZIM_GROUP_GROUP or _CHANNEL
    uint64_t flags;   //  S_FLAG_*
    uint64_t gseq;    //  the head of its log
    uint64_t members; //  how many
} s_group_t;

struct _zim_groups_t {
    zim_db_t *db;                //  the environment (borrowed)
    const zim_dbs_t *dbs;        //  its databases
    zim_inbox_t *inbox;          //  member inbox writes (borrowed)
    zim_shell_t *shell;          //  warnings, or NULL (borrowed)
    zim_groups_limits_t limits;  //  the store's settings, or the defaults
    uint64_t def_group;          //  the defaults
    uint64_t def_channel;        //
    uint64_t def_behind;         //
    char (*names)[ZIM_ID_MAX];   //  member uids of one post, copied
    zim_str_t *members;          //  views of them
    uint64_t *seqs;              //  their new seqs
    size_t alloc;                //  room in the three
    zim_wr_t items;              //  a read's entries
    zim_wr_t list;               //  a job's remote uids, comma-separated
    char *ring_names;            //  the shard names the ring was made of
    zim_ring_t *ring;            //  placement of members on shards
    char **shard_names;          //  the ring's names, in its order
    size_t nshards;              //  how many
    size_t nshards_tmp;          //  uids collected by s_collect
    uint64_t jobs;               //  fan-out jobs recorded (members on other shards)
    uint64_t jobs_done;          //  jobs finished
    uint64_t posts;              //  group messages stored
    uint64_t fanout;             //  member inbox entries written
    uint64_t refused;            //  posts refused (no group, not a member, conflict)
};

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

static void s_gkey (zim_key_t *k, zim_str_t app, zim_str_t group)
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
static int s_group_get (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        s_group_t *g)
{
    zim_key_t k;
    s_gkey (&k, app, group);
    MDB_val kv = zim_key_val (&k), v;
    int rc = mdb_get (txn, dbs->groups, &kv, &v);
    if (rc)
        return rc;
    if (v.mv_size != 32)
        return MDB_CORRUPTED;
    const uint8_t *p = v.mv_data;
    *g = (s_group_t){zim_be64_get (p), zim_be64_get (p + 8), zim_be64_get (p + 16),
                     zim_be64_get (p + 24)};
    return 0;
}

static int s_group_put (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        const s_group_t *g)
{
    zim_key_t k;
    s_gkey (&k, app, group);
    uint8_t buf[32];
    zim_be64_put (buf, g->kind);
    zim_be64_put (buf + 8, g->flags);
    zim_be64_put (buf + 16, g->gseq);
    zim_be64_put (buf + 24, g->members);
    MDB_val kv = zim_key_val (&k), v = {32, buf};
    return mdb_put (txn, dbs->groups, &kv, &v, 0);
}

//  The member's join point into *joined; 0, MDB_NOTFOUND or an LMDB error.
static int s_member_get (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
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
static int s_member_set (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
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

static const char *s_kind_name (uint64_t kind)
{
    return kind == ZIM_GROUP_CHANNEL ? "channel" : "group";
}

//  -------------------------------------------------------------------------
//  GPOST

static void s_posted (zim_wr_t *out, uint64_t req, int64_t status, uint64_t id, uint64_t ts,
                      uint64_t seq, uint64_t gseq, uint64_t kind, uint32_t n)
{
    zim_wr_reset (out);
    zim_gposted_pack (out,
                      &(zim_gposted_t){req, status, id, ts, seq, gseq, kind, {NULL, NULL}, n});
}

//  Room for n members of a post.
static void s_room (zim_groups_t *self, size_t n)
{
    if (n <= self->alloc)
        return;
    self->alloc = n * 2;
    self->names = zim_realloc (self->names, self->alloc * sizeof *self->names);
    self->members = zim_realloc (self->members, self->alloc * sizeof *self->members);
    self->seqs = zim_realloc (self->seqs, self->alloc * sizeof *self->seqs);
}

//  Copies the group's members into self->members; *n gets how many.
static int s_members (zim_groups_t *self, MDB_txn *txn, zim_str_t app, zim_str_t group,
                      size_t expect, size_t *n)
{
    zim_key_t prefix;
    s_gkey (&prefix, app, group);
    MDB_cursor *cur;
    int rc = mdb_cursor_open (txn, self->dbs->gmembers, &cur);
    if (rc)
        return rc;
    s_room (self, expect + 1);
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
        s_room (self, *n + 1);
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
static zim_ring_t *s_ring (zim_groups_t *self, zim_str_t names)
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
static bool s_local (zim_groups_t *self, zim_ring_t *ring, zim_str_t app, zim_str_t uid,
                     zim_str_t shard)
{
    if (!ring)
        return true;
    int i = zim_ring_lookup (ring, app, uid);
    return i >= 0 && zim_str_eq (shard, self->shard_names[i]);
}

//  Lists a job's remote members (comma-separated uids) as gmembers with
//  seq 0 into out; returns how many.
static uint32_t s_remote_pack (zim_str_t list, zim_wr_t *out)
{
    uint32_t n = 0;
    size_t i = 0;
    while (i < list.len) {
        size_t j = i;
        while (j < list.len && list.ptr[j] != ',')
            j++;
        if (out)
            zim_gmember_pack (out, &(zim_gmember_t){{list.ptr + i, j - i}, 0});
        n++;
        i = j + 1;
    }
    return n;
}

//  The job of message id (its remote uids), or a NULL view.
static int s_job_get (const zim_dbs_t *dbs, MDB_txn *txn, uint64_t id, zim_str_t *list)
{
    uint8_t idb[8];
    zim_be64_put (idb, id);
    MDB_val k = {8, idb}, v;
    int rc = mdb_get (txn, dbs->gjobs, &k, &v);
    *list = rc == 0 ? (zim_str_t){v.mv_data, v.mv_size} : (zim_str_t){NULL, 0};
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int s_post (zim_groups_t *self, MDB_txn *txn, const zim_gpost_t *m, zim_wr_t *out,
                   bool *wrote)
{
    char convb[2 + ZIM_ID_MAX];
    memcpy (convb, "g:", 2);
    memcpy (convb + 2, m->group.ptr, m->group.len);
    zim_str_t conv = {convb, 2 + m->group.len};
    zim_append_item_t it = {m->id,  m->ts,   m->app,  m->from,
                            conv,   m->cid,  m->body, ZIM_SIDE_BOTH};
    zim_idem_t found;
    zim_appended_item_t res;
    int rc = zim_idem_check (self->dbs, txn, &it, &found, &res);
    if (rc)
        return rc;
    if (found == ZIM_IDEM_SAME) {
        //  The original; with its job's members again while it is not
        //  done (the retry finishes it).
        zim_str_t list;
        if ((rc = s_job_get (self->dbs, txn, res.id, &list)))
            return rc;
        uint32_t n = s_remote_pack (list, NULL);
        s_posted (out, m->req, ZIM_APPEND_DUPLICATE, res.id, res.ts, res.from_seq, res.to_seq,
                  ZIM_GROUP_GROUP, n);
        s_remote_pack (list, out);
        return 0;
    }
    if (found == ZIM_IDEM_CONFLICT) {
        self->refused++;
        s_posted (out, m->req, ZIM_APPEND_CONFLICT, 0, 0, 0, 0, 0, 0);
        return 0;
    }
    s_group_t g;
    uint64_t joined;
    rc = s_group_get (self->dbs, txn, m->app, m->group, &g);
    if (rc == 0)
        rc = s_member_get (self->dbs, txn, m->app, m->group, m->from, &joined);
    if (rc == MDB_NOTFOUND) {
        self->refused++;
        int64_t status = s_group_get (self->dbs, txn, m->app, m->group, &g) ? ZIM_ENOGROUP
                                                                             : ZIM_ENOTMEMBER;
        s_posted (out, m->req, status, 0, 0, 0, 0, 0, 0);
        return 0;
    }
    if (rc)
        return rc;
    size_t n = 0;
    if (g.kind == ZIM_GROUP_GROUP && (rc = s_members (self, txn, m->app, m->group, g.members, &n)))
        return rc;
    //  Members on other shards (a cluster): a job, in this transaction,
    //  for the broker to finish; the local ones first in the list.
    zim_ring_t *ring = s_ring (self, m->shards);
    size_t nlocal = 0;
    zim_wr_reset (&self->list);
    for (size_t i = 0; i < n; i++) {
        zim_str_t uid = self->members[i];
        if (s_local (self, ring, m->app, uid, m->shard)) {
            //  Swap into the local prefix (views into names stay valid).
            self->members[i] = self->members[nlocal];
            self->members[nlocal++] = uid;
        } else {
            if (self->list.size)
                zim_wr_raw (&self->list, ",", 1);
            zim_wr_raw (&self->list, uid.ptr, uid.len);
        }
    }
    uint64_t gseq = g.gseq + 1, from_seq;
    rc = zim_inbox_group (self->inbox, &it, gseq, self->members, nlocal, self->seqs, &from_seq,
                          true);
    if (rc == ZIM_EVALUE) {
        self->refused++;
        s_posted (out, m->req, ZIM_EVALUE, 0, 0, 0, 0, 0, 0);
        return 0;
    }
    if (rc)
        return rc;
    if (nlocal < n) {
        uint8_t jb[8];
        zim_be64_put (jb, m->id);
        MDB_val jk = {8, jb}, jv = {self->list.size, self->list.data};
        if ((rc = mdb_put (txn, self->dbs->gjobs, &jk, &jv, 0)))
            return rc;
        self->jobs++;
    }
    zim_key_t lk;
    s_gkey (&lk, m->app, m->group);
    zim_key_u64 (&lk, gseq);
    uint8_t idb[8];
    zim_be64_put (idb, m->id);
    MDB_val lkv = zim_key_val (&lk), idv = {8, idb};
    if ((rc = mdb_put (txn, self->dbs->glog, &lkv, &idv, 0)))
        return rc;
    g.gseq = gseq;
    if ((rc = s_group_put (self->dbs, txn, m->app, m->group, &g)))
        return rc;
    *wrote = true;
    self->posts++;
    self->fanout += n;
    s_posted (out, m->req, ZIM_APPEND_STORED, m->id, m->ts, from_seq, gseq, g.kind, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        zim_gmember_pack (out, &(zim_gmember_t){self->members[i], i < nlocal ? self->seqs[i] : 0});
    return 0;
}

//  -------------------------------------------------------------------------
//  GFAN and GDONE: a job's part on a member's shard, and its end

static int s_each (zim_str_t list, int (*fn) (void *, zim_str_t), void *arg);

//  Collects the uids of a comma-separated list into self->members.
static int s_collect (void *arg, zim_str_t uid)
{
    zim_groups_t *self = (zim_groups_t *)arg;
    size_t n = self->nshards_tmp;
    s_room (self, n + 1);
    memcpy (self->names[n], uid.ptr, uid.len);
    self->members[n] = (zim_str_t){NULL, uid.len};
    self->nshards_tmp = n + 1;
    return 0;
}

static void s_fanned (zim_wr_t *out, uint64_t req, int64_t status, uint32_t n)
{
    zim_wr_reset (out);
    zim_gfanned_pack (out, &(zim_gfanned_t){req, status, {NULL, NULL}, n});
}

static int s_fan (zim_groups_t *self, MDB_txn *txn, const zim_gfanout_t *m, zim_wr_t *out,
                  bool *wrote)
{
    uint8_t idb[8];
    zim_be64_put (idb, m->id);
    MDB_val k = {8, idb}, v;
    //  Done before (the record is here): the same answer again.
    int rc = mdb_get (txn, self->dbs->gfan, &k, &v);
    if (rc == 0) {
        zim_rd_t rd;
        uint32_t count = 0;
        zim_rd_init (&rd, v.mv_data, v.mv_size);
        zim_gmember_t gm;
        while (zim_rd_left (&rd) && zim_gmember_unpack (&rd, &gm) == 0)
            count++;
        s_fanned (out, m->req, ZIM_APPEND_DUPLICATE, count);
        zim_wr_raw (out, v.mv_data, v.mv_size);
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    self->nshards_tmp = 0;
    if (s_each (m->members, s_collect, self)) {
        s_fanned (out, m->req, ZIM_EVALUE, 0);
        return 0;
    }
    size_t n = self->nshards_tmp;
    for (size_t i = 0; i < n; i++)
        self->members[i].ptr = self->names[i];
    char convb[2 + ZIM_ID_MAX];
    memcpy (convb, "g:", 2);
    memcpy (convb + 2, m->group.ptr, m->group.len);
    zim_append_item_t it = {m->id, m->ts, m->app, m->from, {convb, 2 + m->group.len},
                            m->cid, m->body, ZIM_SIDE_BOTH};
    uint64_t from_seq;
    rc = zim_inbox_group (self->inbox, &it, m->gseq, self->members, n, self->seqs, &from_seq,
                          false);
    if (rc == ZIM_EVALUE) {
        s_fanned (out, m->req, ZIM_EVALUE, 0);
        return 0;
    }
    if (rc)
        return rc;
    zim_wr_reset (&self->list);
    for (size_t i = 0; i < n; i++)
        zim_gmember_pack (&self->list, &(zim_gmember_t){self->members[i], self->seqs[i]});
    MDB_val fv = {self->list.size, self->list.data};
    if ((rc = mdb_put (txn, self->dbs->gfan, &k, &fv, 0)))
        return rc;
    *wrote = true;
    self->fanout += n;
    s_fanned (out, m->req, ZIM_APPEND_STORED, (uint32_t)n);
    zim_wr_raw (out, self->list.data, self->list.size);
    return 0;
}

//  The job of a message is done: forget it, and keep the sender's seq in
//  the record (a later retry's ack names it).
static int s_done (zim_groups_t *self, MDB_txn *txn, const zim_gdone_t *m, bool *wrote)
{
    uint8_t idb[8];
    zim_be64_put (idb, m->id);
    MDB_val k = {8, idb}, v;
    int rc = mdb_del (txn, self->dbs->gjobs, &k, NULL);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    self->jobs_done++;
    *wrote = true;
    if (m->seq && (rc = mdb_get (txn, self->dbs->msgs, &k, &v)) == 0 && v.mv_size >= 24) {
        //  from_seq is the record's second 8 bytes (zim_msgrec.h).
        uint8_t *copy = zim_malloc (v.mv_size);
        memcpy (copy, v.mv_data, v.mv_size);
        zim_be64_put (copy + 8, m->seq);
        MDB_val nv = {v.mv_size, copy};
        rc = mdb_put (txn, self->dbs->msgs, &k, &nv, 0);
        free (copy);
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  -------------------------------------------------------------------------
//  GADMIN

//  Calls fn for each uid of a comma-separated list; stops at the first
//  error. Returns 0, ZIM_EVALUE for an entry that is not a uid, or fn's.
static int s_each (zim_str_t list, int (*fn) (void *, zim_str_t), void *arg)
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

//  One membership change being applied.
typedef struct {
    const zim_dbs_t *dbs;
    MDB_txn *txn;
    const zim_gadmin_t *m;
    uint64_t joined; //  the join point of those added
    bool add;        //  adding or removing
    uint64_t count;  //  members changed
} s_change_t;

static int s_change_one (void *arg, zim_str_t uid)
{
    s_change_t *c = (s_change_t *)arg;
    bool changed;
    int rc = s_member_set (c->dbs, c->txn, c->m->app, c->m->group, uid, c->add ? &c->joined : NULL,
                           &changed);
    c->count += changed;
    return rc;
}

//  The JSON document of a group, its members listed.
static char *s_describe (zim_groups_t *self, MDB_txn *txn, const zim_gadmin_t *m,
                         const s_group_t *g, int *rc)
{
    size_t n = 0;
    *rc = s_members (self, txn, m->app, m->group, g->members, &n);
    if (*rc)
        return NULL;
    json_t *list = json_array ();
    for (size_t i = 0; i < n; i++)
        json_array_append_new (list, json_stringn (self->members[i].ptr, self->members[i].len));
    json_t *doc = json_pack ("{s:s%,s:s,s:I,s:I,s:b,s:o}", "group", m->group.ptr, m->group.len,
                             "kind", s_kind_name (g->kind), "gseq", (json_int_t)g->gseq, "count",
                             (json_int_t)n, "history_for_new", (g->flags & S_FLAG_HISTORY) != 0,
                             "members", list);
    char *text = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    return text;
}

//  Applies one admin op in txn (a nested transaction). Returns 0 with
//  *status (0 or a refusal) and *text (the answer, caller frees), or an
//  LMDB error.
static int s_admin_op (zim_groups_t *self, MDB_txn *txn, const zim_gadmin_t *m, int64_t *status,
                       char **text)
{
    s_group_t g;
    *status = 0;
    *text = NULL;
    int rc = s_group_get (self->dbs, txn, m->app, m->group, &g);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    bool exists = rc == 0;
    if (m->op == ZIM_GADMIN_CREATE) {
        if (exists) {
            *status = ZIM_EEXISTS;
            return 0;
        }
        g = (s_group_t){m->kind == ZIM_GROUP_CHANNEL ? ZIM_GROUP_CHANNEL : ZIM_GROUP_GROUP,
                        m->history_for_new ? S_FLAG_HISTORY : 0, 0, 0};
    } else if (!exists) {
        *status = ZIM_ENOGROUP;
        return 0;
    }
    if (m->op == ZIM_GADMIN_GET) {
        *text = s_describe (self, txn, m, &g, &rc);
        return rc;
    }
    if (m->op == ZIM_GADMIN_READERS) {
        //  Members (on this shard) whose read cursor reached the message.
        size_t n = 0;
        if (g.kind != ZIM_GROUP_GROUP || g.members > S_READERS_MAX || !m->gseq ||
            m->gseq > g.gseq) {
            *status = ZIM_EVALUE;
            return 0;
        }
        if ((rc = s_members (self, txn, m->app, m->group, g.members, &n)))
            return rc;
        char convb[2 + ZIM_ID_MAX];
        memcpy (convb, "g:", 2);
        memcpy (convb + 2, m->group.ptr, m->group.len);
        uint64_t count = 0;
        rc = zim_convs_readers (self->dbs, txn, m->app, (zim_str_t){convb, 2 + m->group.len},
                                self->members, n, m->gseq, &count);
        *text = zsys_sprintf ("{\"group\":\"%.*s\",\"gseq\":%" PRIu64 ",\"readers\":%" PRIu64
                              ",\"members\":%zu}",
                              (int)m->group.len, m->group.ptr, m->gseq, count, n);
        return rc;
    }
    if (m->op == ZIM_GADMIN_DELETE) {
        size_t n = 0;
        if ((rc = s_members (self, txn, m->app, m->group, g.members, &n)))
            return rc;
        s_change_t c = {self->dbs, txn, m, 0, false, 0};
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = s_change_one (&c, self->members[i]);
        zim_key_t k;
        s_gkey (&k, m->app, m->group);
        MDB_val kv = zim_key_val (&k);
        if (rc == 0)
            rc = mdb_del (txn, self->dbs->groups, &kv, NULL);
        //  Its log goes too (the messages stay in the members' inboxes).
        for (uint64_t gseq = 1; rc == 0 && gseq <= g.gseq; gseq++) {
            zim_key_t lk = k;
            zim_key_u64 (&lk, gseq);
            MDB_val lkv = zim_key_val (&lk);
            rc = mdb_del (txn, self->dbs->glog, &lkv, NULL);
            rc = rc == MDB_NOTFOUND ? 0 : rc;
        }
        *text = zsys_sprintf ("{\"deleted\":true,\"members\":%zu}", n);
        return rc;
    }
    if (m->op == ZIM_GADMIN_UPGRADE) {
        bool was = g.kind == ZIM_GROUP_CHANNEL;
        g.kind = ZIM_GROUP_CHANNEL;
        if (!was && (rc = s_group_put (self->dbs, txn, m->app, m->group, &g)))
            return rc;
        *text = zsys_sprintf ("{\"kind\":\"channel\",\"upgraded\":%s}", was ? "false" : "true");
        return 0;
    }
    if (m->op != ZIM_GADMIN_CREATE && m->op != ZIM_GADMIN_MEMBERS) {
        *status = ZIM_EVALUE;
        return 0;
    }
    //  Create or members: removals, then additions joining at the head
    //  (or before the whole log with history_for_new).
    s_change_t c = {self->dbs, txn, m, (g.flags & S_FLAG_HISTORY) ? 0 : g.gseq, false, 0};
    rc = s_each (m->remove, s_change_one, &c);
    uint64_t removed = c.count;
    c.add = true;
    c.count = 0;
    if (rc == 0)
        rc = s_each (m->add, s_change_one, &c);
    if (rc == ZIM_EVALUE) {
        *status = ZIM_EVALUE;
        return 0;
    }
    if (rc)
        return rc;
    g.members = g.members + c.count - removed;
    uint64_t limit = g.kind == ZIM_GROUP_CHANNEL ? *self->limits.max_channel
                                                 : *self->limits.max_group;
    if (g.members > limit) {
        *status = ZIM_EGROUPFULL;
        return 0;
    }
    if ((rc = s_group_put (self->dbs, txn, m->app, m->group, &g)))
        return rc;
    *text = zsys_sprintf ("{\"group\":\"%.*s\",\"kind\":\"%s\",\"added\":%" PRIu64
                          ",\"removed\":%" PRIu64 ",\"members\":%" PRIu64 ",\"gseq\":%" PRIu64 "}",
                          (int)m->group.len, m->group.ptr, s_kind_name (g.kind), c.count, removed,
                          g.members, g.gseq);
    return 0;
}

static int s_admin (zim_groups_t *self, MDB_txn *txn, const zim_gadmin_t *m, zim_wr_t *out,
                    bool *wrote)
{
    MDB_txn *child;
    int rc = mdb_txn_begin (zim_db_env (self->db), txn, 0, &child);
    if (rc)
        return rc;
    int64_t status;
    char *text;
    rc = s_admin_op (self, child, m, &status, &text);
    if (rc || status || m->op == ZIM_GADMIN_GET || m->op == ZIM_GADMIN_READERS)
        mdb_txn_abort (child);
    else if ((rc = mdb_txn_commit (child)) == 0)
        *wrote = true;
    if (rc == 0) {
        zim_wr_reset (out);
        zim_gadmin_r_pack (out, &(zim_gadmin_r_t){m->req, status, zim_str (text ? text : "")});
        if (status && self->shell)
            zim_shell_warn (self->shell, "group admin op %d on %.*s refused: %s", (int)m->op,
                            (int)m->group.len, m->group.ptr, zim_strerror ((int)status));
    }
    free (text);
    return rc;
}

int zim_groups_apply (zim_groups_t *self, MDB_txn *txn, int kind, const void *m, zim_wr_t *out,
                      bool *wrote)
{
    *wrote = false;
    if (kind == ZIM_MSG_GPOST)
        return s_post (self, txn, (const zim_gpost_t *)m, out, wrote);
    if (kind == ZIM_MSG_GFAN)
        return s_fan (self, txn, (const zim_gfanout_t *)m, out, wrote);
    if (kind == ZIM_MSG_GDONE) {
        zim_wr_reset (out);
        return s_done (self, txn, (const zim_gdone_t *)m, wrote);
    }
    assert (kind == ZIM_MSG_GADMIN);
    return s_admin (self, txn, (const zim_gadmin_t *)m, out, wrote);
}

void zim_groups_failed (int kind, uint64_t req, zim_wr_t *out)
{
    zim_wr_reset (out);
    if (kind == ZIM_MSG_GPOST)
        s_posted (out, req, ZIM_ESTORE, 0, 0, 0, 0, 0, 0);
    else if (kind == ZIM_MSG_GFAN)
        s_fanned (out, req, ZIM_ESTORE, 0);
    else
        zim_gadmin_r_pack (out, &(zim_gadmin_r_t){req, ZIM_ESTORE, zim_str ("")});
}

//  -------------------------------------------------------------------------
//  GREAD

static void s_read_r (zim_wr_t *out, uint64_t req, int64_t status, bool more, bool reset,
                      const zim_wr_t *items, uint64_t count)
{
    zim_wr_reset (out);
    zim_str_t bin = {items ? (const char *)items->data : "", items ? items->size : 0};
    zim_gread_r_pack (out, &(zim_gread_r_t){req, status, more, reset, bin, count});
}

//  The channel's log after since (from the member's join on), as sitem
//  maps in self->items.
static int s_log (zim_groups_t *self, MDB_txn *txn, const zim_gread_t *m, uint64_t max_bytes,
                  zim_wr_t *out)
{
    s_group_t g;
    uint64_t joined;
    int rc = s_group_get (self->dbs, txn, m->app, m->group, &g);
    if (rc == 0)
        rc = s_member_get (self->dbs, txn, m->app, m->group, m->uid, &joined);
    if (rc == MDB_NOTFOUND) {
        bool nogroup = s_group_get (self->dbs, txn, m->app, m->group, &g) != 0;
        s_read_r (out, m->req, nogroup ? ZIM_ENOGROUP : ZIM_ENOTMEMBER, false, false, NULL, 0);
        return 0;
    }
    if (rc)
        return rc;
    if (g.kind != ZIM_GROUP_CHANNEL) {
        s_read_r (out, m->req, ZIM_ENOTCHANNEL, false, false, NULL, 0);
        return 0;
    }
    uint64_t limit = m->limit ? m->limit : S_READ_LIMIT;
    limit = limit > S_READ_LIMIT_MAX ? S_READ_LIMIT_MAX : limit;
    uint64_t from = m->since > joined ? m->since : joined;
    bool reset = false;
    if (g.gseq > from && g.gseq - from > *self->limits.max_behind) {
        //  Too far behind: the newest page, and say so.
        uint64_t newest = g.gseq > limit ? g.gseq - limit : 0;
        if (newest > from) {
            from = newest;
            reset = true;
        }
    }
    char convb[2 + ZIM_ID_MAX];
    memcpy (convb, "g:", 2);
    memcpy (convb + 2, m->group.ptr, m->group.len);
    zim_str_t conv = {convb, 2 + m->group.len};
    zim_wr_reset (&self->items);
    uint64_t count = 0;
    size_t room = max_bytes > 128 ? max_bytes - 128 : max_bytes;
    uint64_t gseq = from + 1;
    for (; gseq <= g.gseq && count < limit; gseq++) {
        zim_key_t lk;
        s_gkey (&lk, m->app, m->group);
        zim_key_u64 (&lk, gseq);
        MDB_val lkv = zim_key_val (&lk), v, rv;
        rc = mdb_get (txn, self->dbs->glog, &lkv, &v);
        if (rc == MDB_NOTFOUND)
            continue; //  purged by retention
        if (rc)
            return rc;
        uint8_t idb[8];
        memcpy (idb, v.mv_data, 8);
        MDB_val rk = {8, idb};
        zim_msgrec_t rec;
        rc = mdb_get (txn, self->dbs->msgs, &rk, &rv);
        if (rc == MDB_NOTFOUND || (rc == 0 && zim_msgrec_parse (&rv, &rec)))
            continue;
        if (rc)
            return rc;
        size_t before = self->items.size;
        zim_sitem_pack (&self->items, &(zim_sitem_t){0, zim_be64_get (idb), rec.from, m->group,
                                                     conv, rec.body, rec.ts, m->group, gseq});
        if (self->items.size > room && count > 0) {
            self->items.size = before;
            break;
        }
        count++;
    }
    s_read_r (out, m->req, 0, gseq <= g.gseq, reset, &self->items, count);
    return 0;
}

//  The reader's groups as sgroup maps.
static int s_list (zim_groups_t *self, MDB_txn *txn, const zim_gread_t *m, zim_wr_t *out)
{
    zim_key_t prefix;
    zim_key_user (&prefix, m->app, m->uid);
    MDB_cursor *cur;
    int rc = mdb_cursor_open (txn, self->dbs->ugroups, &cur);
    if (rc)
        return rc;
    zim_wr_reset (&self->items);
    uint64_t count = 0;
    MDB_val k = zim_key_val (&prefix), v;
    rc = mdb_cursor_get (cur, &k, &v, MDB_SET_RANGE);
    bool more = false;
    while (rc == 0 && k.mv_size > prefix.len && memcmp (k.mv_data, prefix.buf, prefix.len) == 0) {
        if (count == S_LIST_MAX) {
            more = true;
            break;
        }
        const uint8_t *p = (const uint8_t *)k.mv_data + prefix.len;
        zim_str_t group = {(const char *)p + 1, p[0]};
        uint64_t joined = v.mv_size == 8 ? zim_be64_get (v.mv_data) : 0;
        char gbuf[ZIM_ID_MAX];
        if (group.len == 0 || group.len > ZIM_ID_MAX)
            break;
        memcpy (gbuf, group.ptr, group.len);
        group.ptr = gbuf;
        s_group_t g;
        int r = s_group_get (self->dbs, txn, m->app, group, &g);
        if (r == 0) {
            zim_sgroup_pack (&self->items,
                             &(zim_sgroup_t){group, zim_str (s_kind_name (g.kind)), g.gseq, joined,
                                             g.members});
            count++;
        } else if (r != MDB_NOTFOUND) {
            rc = r;
            break;
        }
        rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close (cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    s_read_r (out, m->req, 0, more, false, &self->items, count);
    return 0;
}

//  Unfinished jobs of messages older than m->since (ms), as gjob records.
static int s_jobs (zim_groups_t *self, MDB_txn *txn, const zim_gread_t *m, uint64_t max_bytes,
                   zim_wr_t *out)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open (txn, self->dbs->gjobs, &cur);
    if (rc)
        return rc;
    zim_wr_reset (&self->items);
    uint64_t count = 0, limit = m->limit ? m->limit : S_READ_LIMIT;
    MDB_val k, v;
    bool more = false;
    rc = mdb_cursor_get (cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (count == limit || self->items.size > max_bytes / 2) {
            more = true;
            break;
        }
        MDB_val rv;
        zim_msgrec_t rec;
        uint8_t idb[8];
        memcpy (idb, k.mv_data, 8);
        MDB_val rk = {8, idb};
        int r = k.mv_size == 8 ? mdb_get (txn, self->dbs->msgs, &rk, &rv) : MDB_NOTFOUND;
        if (r == 0 && zim_msgrec_parse (&rv, &rec) == 0 && rec.ts < m->since && rec.to.len > 2) {
            zim_gjob_pack (&self->items,
                           &(zim_gjob_t){zim_be64_get (idb), rec.ts, rec.app, rec.from, rec.cid,
                                         {rec.to.ptr + 2, rec.to.len - 2}, rec.to_seq, rec.body,
                                         {v.mv_data, v.mv_size}});
            count++;
        } else if (r && r != MDB_NOTFOUND) {
            rc = r;
            break;
        }
        rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close (cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    s_read_r (out, m->req, 0, more, false, &self->items, count);
    return 0;
}

int zim_groups_read (zim_groups_t *self, MDB_txn *txn, const zim_gread_t *m, uint64_t max_bytes,
                     zim_wr_t *out)
{
    int rc = txn ? (m->mode == ZIM_GREAD_LOG    ? s_log (self, txn, m, max_bytes, out)
                    : m->mode == ZIM_GREAD_JOBS ? s_jobs (self, txn, m, max_bytes, out)
                                                : s_list (self, txn, m, out))
                 : ZIM_ESTORE;
    if (rc)
        s_read_r (out, m->req, ZIM_ESTORE, false, false, NULL, 0);
    return rc == ZIM_ESTORE ? 0 : rc;
}

void zim_groups_stats (zim_groups_t *self, json_t *stats)
{
    json_object_set_new (stats, "group_posts", json_integer ((json_int_t)self->posts));
    json_object_set_new (stats, "group_fanout", json_integer ((json_int_t)self->fanout));
    json_object_set_new (stats, "group_refused", json_integer ((json_int_t)self->refused));
    json_object_set_new (stats, "group_jobs", json_integer ((json_int_t)self->jobs));
    json_object_set_new (stats, "group_jobs_done", json_integer ((json_int_t)self->jobs_done));
}

//  -------------------------------------------------------------------------
//  Selftest

//  Applies one admin op in its own transaction; returns its status.
static int64_t s_test_admin (zim_groups_t *g, zim_db_t *db, zim_inbox_t *inbox, int op,
                             const char *group, uint64_t kind, const char *add,
                             const char *remove, char *json, size_t size)
{
    MDB_txn *txn;
    zim_wr_t out;
    zim_wr_init (&out);
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    zim_gadmin_t m = {7,    (uint64_t)op,  zim_str ("demo"), zim_str (group),
                      kind, false,         zim_str (add),    zim_str (remove), 0};
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
    zim_gpost_t m = {1,   id,   1000 + id, zim_str ("demo"), zim_str (from), zim_str (cid),
                     zim_str (group), {"\xa2hi", 3}, {NULL, 0}, {NULL, 0}};
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
    //  Remove bob, add dan: dan's first group message is the next one.
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_MEMBERS, "team", 0, "dan", "bob", json,
                          sizeof json) == 0);
    assert (strstr (json, "\"members\":3"));
    r = s_test_post (g, db, inbox, 105, "carol", "k1", "team", seqs);
    assert (r.status == ZIM_APPEND_STORED && r.gseq == 3 && r.nmembers == 3);
    assert (s_test_post (g, db, inbox, 106, "bob", "b2", "team", NULL).status == ZIM_ENOTMEMBER);

    //  Channels: upgrade, log reads from the join on, too far behind.
    assert (s_test_read (g, db, ZIM_GREAD_LOG, "alice", "team", 0, 0).status == ZIM_ENOTCHANNEL);
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_UPGRADE, "team", 0, "", "", json,
                          sizeof json) == 0);
    for (uint64_t i = 0; i < 8; i++) {
        char cid[16];
        snprintf (cid, sizeof cid, "ch-%d", (int)i);
        r = s_test_post (g, db, inbox, 200 + i, "alice", cid, "team", NULL);
        assert (r.status == ZIM_APPEND_STORED && r.gseq == 4 + i && r.nmembers == 0 && r.seq == 0);
    }
    zim_gread_r_t rr = s_test_read (g, db, ZIM_GREAD_LOG, "alice", "team", 8, 0);
    assert (rr.status == 0 && rr.count == 3 && !rr.reset && !rr.more);
    rr = s_test_read (g, db, ZIM_GREAD_LOG, "alice", "team", 0, 2);
    assert (rr.status == 0 && rr.count == 2 && rr.reset && !rr.more);
    rr = s_test_read (g, db, ZIM_GREAD_LOG, "dan", "team", 0, 100);
    assert (rr.status == 0 && rr.count == 9 && !rr.reset); //  joined after gseq 2: all of it
    assert (s_test_read (g, db, ZIM_GREAD_LOG, "bob", "team", 0, 0).status == ZIM_ENOTMEMBER);
    rr = s_test_read (g, db, ZIM_GREAD_LIST, "alice", "", 0, 0);
    assert (rr.status == 0 && rr.count == 1);
    assert (s_test_read (g, db, ZIM_GREAD_LIST, "bob", "", 0, 0).count == 0);
    //  Delete: the members go with it.
    assert (s_test_admin (g, db, inbox, ZIM_GADMIN_DELETE, "team", 0, "", "", NULL, 0) == 0);
    assert (s_test_read (g, db, ZIM_GREAD_LIST, "alice", "", 0, 0).count == 0);
    assert (s_test_post (g, db, inbox, 300, "alice", "d1", "team", NULL).status == ZIM_ENOGROUP);

    zim_groups_destroy (&g);
    zim_inbox_destroy (&inbox);
    zim_db_test_destroy (&db, &dir);
    if (verbose)
        zsys_info ("groups: membership, fan-out seqs, duplicates, channels, reset");
}
