/*  zim_gadmin.c: GADMIN, the membership side of groups (part of
    zim_groups, see zim_groups.h). Admin changes run in a nested
    transaction, so a refused one (a group too large, a bad uid in the
    list) leaves nothing behind while the rest of the group commit goes on.
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

//  -------------------------------------------------------------------------
//  GADMIN

#define S_ID_EPOCH_MS 1704067200000ULL //  the broker's message ids (zim_sendq.c)
#define S_EVENT_NODE 1023              //  the node field of the store's event ids
#define S_EVENT_TRIES 64               //  ids tried before giving up (each taken)

//  The next event id: the broker's id layout with node 1023, so that it
//  sorts by time with the messages; one taken already is skipped.
static uint64_t s_event_id (zim_groups_t *self)
{
    uint64_t now = zim_now_ms ();
    if (now > self->event_ms) {
        self->event_ms = now;
        self->event_seq = 0;
    } else if (++self->event_seq >= 4096) {
        self->event_ms++;
        self->event_seq = 0;
    }
    return ((self->event_ms - S_ID_EPOCH_MS) << 22) | ((uint64_t)S_EVENT_NODE << 12) |
           self->event_seq;
}

//  True if uid is in the comma-separated list.
static bool s_listed (const zim_wr_t *list, zim_str_t uid)
{
    const char *p = (const char *)list->data, *end = p + list->size;
    while (p < end) {
        const char *q = memchr (p, ',', (size_t)(end - p));
        size_t len = (size_t)((q ? q : end) - p);
        if (len == uid.len && memcmp (p, uid.ptr, len) == 0)
            return true;
        p += len + 1;
    }
    return false;
}

//  Writes one event ("$join" or "$leave" with body {"users": [...]}) at
//  the head of the group's log, and for a group into the inboxes of its
//  members (and of those who left, for a leave), those on other shards
//  left to a job like a message's. 0 or an LMDB error.
static int s_event (zim_groups_t *self, MDB_txn *txn, const zim_gadmin_t *m, zim_grec_t *g,
                    bool join, const zim_wr_t *users)
{
    size_t n = 0;
    int rc;
    if (g->kind == ZIM_GROUP_GROUP) {
        if ((rc = zim_groups_members (self, txn, m->app, m->group, g->members, &n)))
            return rc;
        //  A leave reaches the members before the op and those who left.
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            if (join || !s_listed (&self->joins, self->members[i])) {
                if (kept != i)
                    memcpy (self->names[kept], self->names[i], self->members[i].len);
                self->members[kept++].len = self->members[i].len;
            }
        self->nshards_tmp = kept;
        if (!join)
            zim_groups_each ((zim_str_t){(const char *)users->data, users->size},
                             zim_groups_collect, self);
        n = self->nshards_tmp;
        for (size_t i = 0; i < n; i++)
            self->members[i].ptr = self->names[i];
    }
    //  Placement as the last GPOST told it (one shard before any).
    zim_ring_t *ring = self->shard[0] ? self->ring : NULL;
    zim_str_t shard = zim_str (self->shard);
    size_t nlocal = zim_groups_place (self, ring, m->app, shard, n);
    //  The body: {"users": [uid, ...]}.
    zim_wr_t body;
    zim_wr_init (&body);
    uint32_t count = 0;
    for (size_t i = 0; i < users->size; i++)
        count += ((const char *)users->data)[i] == ',';
    zim_wr_map (&body, 1);
    zim_wr_cstr (&body, "users");
    zim_wr_array (&body, count + 1);
    const char *p = (const char *)users->data, *end = p + users->size;
    while (p < end) {
        const char *q = memchr (p, ',', (size_t)(end - p));
        size_t len = (size_t)((q ? q : end) - p);
        zim_wr_str (&body, (zim_str_t){p, len});
        p += len + 1;
    }
    char convb[2 + ZIM_ID_MAX];
    memcpy (convb, "g:", 2);
    memcpy (convb + 2, m->group.ptr, m->group.len);
    zim_str_t from = zim_str (join ? "$join" : "$leave");
    uint64_t gseq = g->gseq + 1, from_seq, id = 0;
    rc = ZIM_EVALUE;
    for (int i = 0; i < S_EVENT_TRIES && rc == ZIM_EVALUE; i++) {
        id = s_event_id (self);
        zim_append_item_t it = {id,
                                zim_now_ms (),
                                m->app,
                                from,
                                {convb, 2 + m->group.len},
                                from,
                                {(const char *)body.data, body.size},
                                ZIM_SIDE_BOTH};
        rc = zim_inbox_group (self->inbox, &it, gseq, self->members, nlocal, self->seqs, &from_seq,
                              false);
    }
    zim_wr_free (&body);
    if (rc)
        return rc == ZIM_EVALUE ? MDB_KEYEXIST : rc;
    self->events++;
    return zim_groups_logged (self, txn, m->app, m->group, g, gseq, id, nlocal, n);
}

int zim_groups_events (zim_groups_t *self, MDB_txn *txn, const zim_gadmin_t *m, uint64_t *gseq)
{
    zim_grec_t g;
    int rc = zim_groups_rec_get (self->dbs, txn, m->app, m->group, &g);
    if (rc == 0 && self->leaves.size)
        rc = s_event (self, txn, m, &g, false, &self->leaves);
    if (rc == 0 && self->joins.size)
        rc = s_event (self, txn, m, &g, true, &self->joins);
    *gseq = g.gseq;
    return rc;
}

//  One membership change being applied.
typedef struct {
    const zim_dbs_t *dbs;
    MDB_txn *txn;
    const zim_gadmin_t *m;
    uint64_t joined; //  the join point of those added
    bool add;        //  adding or removing
    uint64_t count;  //  members changed
    zim_wr_t *names; //  those changed, comma-separated (NULL: not kept)
} s_change_t;

static int s_change_one (void *arg, zim_str_t uid)
{
    s_change_t *c = (s_change_t *)arg;
    bool changed;
    int rc = zim_groups_member_set (c->dbs, c->txn, c->m->app, c->m->group, uid,
                                    c->add ? &c->joined : NULL, &changed);
    c->count += changed;
    if (changed && c->names) {
        if (c->names->size)
            zim_wr_raw (c->names, ",", 1);
        zim_wr_raw (c->names, uid.ptr, uid.len);
    }
    return rc;
}

//  The JSON document of a group, its members listed.
static char *s_describe (zim_groups_t *self, MDB_txn *txn, const zim_gadmin_t *m,
                         const zim_grec_t *g, int *rc)
{
    size_t n = 0;
    *rc = zim_groups_members (self, txn, m->app, m->group, g->members, &n);
    if (*rc)
        return NULL;
    json_t *list = json_array ();
    for (size_t i = 0; i < n; i++)
        json_array_append_new (list, json_stringn (self->members[i].ptr, self->members[i].len));
    json_t *doc = json_pack ("{s:s%,s:s,s:I,s:I,s:b,s:o}", "group", m->group.ptr, m->group.len,
                             "kind", zim_groups_kind_name (g->kind), "gseq", (json_int_t)g->gseq,
                             "count", (json_int_t)n, "history_for_new",
                             (g->flags & ZIM_GROUPS_FLAG_HISTORY) != 0, "members", list);
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
    zim_grec_t g;
    *status = 0;
    *text = NULL;
    int rc = zim_groups_rec_get (self->dbs, txn, m->app, m->group, &g);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    bool exists = rc == 0;
    if (m->op == ZIM_GADMIN_CREATE) {
        if (exists) {
            *status = ZIM_EEXISTS;
            return 0;
        }
        g = (zim_grec_t){m->kind == ZIM_GROUP_CHANNEL ? ZIM_GROUP_CHANNEL : ZIM_GROUP_GROUP,
                         m->history_for_new ? ZIM_GROUPS_FLAG_HISTORY : 0, 0, 0};
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
        if (g.kind != ZIM_GROUP_GROUP || g.members > ZIM_GROUPS_READERS_MAX || !m->gseq ||
            m->gseq > g.gseq) {
            *status = ZIM_EVALUE;
            return 0;
        }
        if ((rc = zim_groups_members (self, txn, m->app, m->group, g.members, &n)))
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
        if ((rc = zim_groups_members (self, txn, m->app, m->group, g.members, &n)))
            return rc;
        s_change_t c = {self->dbs, txn, m, 0, false, 0, NULL};
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = s_change_one (&c, self->members[i]);
        zim_key_t k;
        zim_groups_gkey (&k, m->app, m->group);
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
        if (!was && (rc = zim_groups_rec_put (self->dbs, txn, m->app, m->group, &g)))
            return rc;
        *text = zsys_sprintf ("{\"kind\":\"channel\",\"upgraded\":%s}", was ? "false" : "true");
        return 0;
    }
    if (m->op != ZIM_GADMIN_CREATE && m->op != ZIM_GADMIN_MEMBERS) {
        *status = ZIM_EVALUE;
        return 0;
    }
    //  Create or members: removals, then additions joining at the head
    //  (or before the whole log with history_for_new). A MEMBERS op's
    //  changes become events in the log after it (zim_groups_events):
    //  the leave first, then the join, which those added read.
    bool events = m->op == ZIM_GADMIN_MEMBERS;
    zim_wr_reset (&self->joins);
    zim_wr_reset (&self->leaves);
    s_change_t c = {self->dbs, txn, m, 0, false, 0, events ? &self->leaves : NULL};
    rc = zim_groups_each (m->remove, s_change_one, &c);
    uint64_t removed = c.count;
    c.add = true;
    c.count = 0;
    c.names = events ? &self->joins : NULL;
    if (!(g.flags & ZIM_GROUPS_FLAG_HISTORY))
        c.joined = g.gseq + (events && removed ? 1 : 0);
    if (rc == 0)
        rc = zim_groups_each (m->add, s_change_one, &c);
    if (rc == ZIM_EVALUE) {
        *status = ZIM_EVALUE;
        return 0;
    }
    if (rc)
        return rc;
    g.members = g.members + c.count - removed;
    uint64_t limit =
        g.kind == ZIM_GROUP_CHANNEL ? *self->limits.max_channel : *self->limits.max_group;
    if (g.members > limit) {
        *status = ZIM_EGROUPFULL;
        return 0;
    }
    if ((rc = zim_groups_rec_put (self->dbs, txn, m->app, m->group, &g)))
        return rc;
    *text = zsys_sprintf ("{\"group\":\"%.*s\",\"kind\":\"%s\",\"added\":%" PRIu64
                          ",\"removed\":%" PRIu64 ",\"members\":%" PRIu64 ",\"gseq\":%" PRIu64 "}",
                          (int)m->group.len, m->group.ptr, zim_groups_kind_name (g.kind), c.count,
                          removed, g.members,
                          g.gseq + (events && removed ? 1 : 0) + (events && c.count ? 1 : 0));
    return 0;
}

int zim_groups_admin (zim_groups_t *self, MDB_txn *txn, const zim_gadmin_t *m, zim_wr_t *out,
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
    else if ((rc = mdb_txn_commit (child)) == 0) {
        *wrote = true;
        uint64_t gseq;
        if (m->op == ZIM_GADMIN_MEMBERS)
            rc = zim_groups_events (self, txn, m, &gseq);
    }
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
