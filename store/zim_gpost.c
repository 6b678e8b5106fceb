/*  zim_gpost.c: the write side of group messages (part of zim_groups, see
    zim_groups.h): GPOST (the log entry, the local members' inbox entries
    and the job for the others), GFAN (a job's part on a member's shard)
    and GDONE (the job's end).
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

#define S_EVENTS_BACK 64 //  log entries a channel post looks back at for leaves

//  -------------------------------------------------------------------------
//  GPOST

void zim_groups_posted (zim_wr_t *out, uint64_t req, int64_t status, uint64_t id, uint64_t ts,
                        uint64_t seq, uint64_t gseq, uint64_t kind, uint32_t n)
{
    zim_wr_reset (out);
    zim_gposted_pack (out, &(zim_gposted_t){req, status, id, ts, seq, gseq, kind, {NULL, NULL}, n});
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

//  The users of the leave events right before gseq in the group's log
//  (back to its previous message, at most S_EVENTS_BACK entries), as
//  gmembers with seq 0 into self->list; *n gets how many.
static int s_left_since (zim_groups_t *self, MDB_txn *txn, const zim_gpost_t *m, uint64_t gseq,
                         uint32_t *n)
{
    for (uint64_t back = 1; back <= S_EVENTS_BACK && back < gseq; back++) {
        uint64_t id;
        zim_msgrec_t rec;
        int rc = zim_groups_log_get (self, txn, m->app, m->group, gseq - back, &id, &rec);
        if (rc == MDB_NOTFOUND)
            return 0; //  purged: older than any live room
        if (rc)
            return rc;
        if (!zim_str_eq (rec.from, "$leave")) {
            if (rec.from.len && rec.from.ptr[0] == '$')
                continue; //  a join
            return 0;     //  the previous message
        }
        //  {"users": [uid, ...]} (zim_gadmin.c wrote it).
        zim_rd_t rd;
        uint32_t count, users;
        zim_str_t key, uid;
        zim_rd_init (&rd, rec.body.ptr, rec.body.len);
        if (zim_rd_map (&rd, &count) || count != 1 || zim_rd_str (&rd, &key) ||
            zim_rd_array (&rd, &users))
            continue;
        for (uint32_t i = 0; i < users && zim_rd_str (&rd, &uid) == 0; i++) {
            zim_gmember_pack (&self->list, &(zim_gmember_t){uid, 0});
            (*n)++;
        }
    }
    return 0;
}

int zim_groups_post (zim_groups_t *self, MDB_txn *txn, const zim_gpost_t *m, zim_wr_t *out,
                     bool *wrote)
{
    char convb[2 + ZIM_ID_MAX];
    memcpy (convb, "g:", 2);
    memcpy (convb + 2, m->group.ptr, m->group.len);
    zim_str_t conv = {convb, 2 + m->group.len};
    zim_append_item_t it = {m->id, m->ts, m->app, m->from, conv, m->cid, m->body, ZIM_SIDE_BOTH};
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
        zim_groups_posted (out, m->req, ZIM_APPEND_DUPLICATE, res.id, res.ts, res.from_seq,
                           res.to_seq, ZIM_GROUP_GROUP, n);
        s_remote_pack (list, out);
        return 0;
    }
    if (found == ZIM_IDEM_CONFLICT) {
        self->refused++;
        zim_groups_posted (out, m->req, ZIM_APPEND_CONFLICT, 0, 0, 0, 0, 0, 0);
        return 0;
    }
    zim_grec_t g;
    uint64_t joined;
    rc = zim_groups_rec_get (self->dbs, txn, m->app, m->group, &g);
    if (rc == 0)
        rc = zim_groups_member_get (self->dbs, txn, m->app, m->group, m->from, &joined);
    if (rc == MDB_NOTFOUND) {
        self->refused++;
        int64_t status = zim_groups_rec_get (self->dbs, txn, m->app, m->group, &g) ? ZIM_ENOGROUP
                                                                                   : ZIM_ENOTMEMBER;
        zim_groups_posted (out, m->req, status, 0, 0, 0, 0, 0, 0);
        return 0;
    }
    if (rc)
        return rc;
    size_t n = 0;
    if (g.kind == ZIM_GROUP_GROUP &&
        (rc = zim_groups_members (self, txn, m->app, m->group, g.members, &n)))
        return rc;
    //  Members on other shards (a cluster): a job, in this transaction,
    //  for the broker to finish; the local ones first in the list.
    zim_ring_t *ring = zim_groups_ring (self, m->shards);
    //  Kept for membership events (a GADMIN does not name the shards).
    if (m->shard.len && m->shard.len < sizeof self->shard)
        zim_str_copy (m->shard, self->shard, sizeof self->shard);
    size_t nlocal = zim_groups_place (self, ring, m->app, m->shard, n);
    uint64_t gseq = g.gseq + 1, from_seq;
    rc = zim_inbox_group (self->inbox, &it, gseq, self->members, nlocal, self->seqs, &from_seq,
                          true);
    if (rc == ZIM_EVALUE) {
        self->refused++;
        zim_groups_posted (out, m->req, ZIM_EVALUE, 0, 0, 0, 0, 0, 0);
        return 0;
    }
    if (rc)
        return rc;
    if ((rc = zim_groups_logged (self, txn, m->app, m->group, &g, gseq, m->id, nlocal, n)))
        return rc;
    *wrote = true;
    self->posts++;
    if (g.kind == ZIM_GROUP_CHANNEL) {
        //  Those who left since the channel's last message: the broker
        //  takes them out of its live room before this message goes there.
        uint32_t left = 0;
        zim_wr_reset (&self->list);
        if ((rc = s_left_since (self, txn, m, gseq, &left)))
            return rc;
        zim_groups_posted (out, m->req, ZIM_APPEND_STORED, m->id, m->ts, from_seq, gseq, g.kind,
                           left);
        zim_wr_raw (out, self->list.data, self->list.size);
        return 0;
    }
    zim_groups_posted (out, m->req, ZIM_APPEND_STORED, m->id, m->ts, from_seq, gseq, g.kind,
                       (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        zim_gmember_pack (out, &(zim_gmember_t){self->members[i], i < nlocal ? self->seqs[i] : 0});
    return 0;
}

//  -------------------------------------------------------------------------
//  GFAN and GDONE: a job's part on a member's shard, and its end

void zim_groups_fanned (zim_wr_t *out, uint64_t req, int64_t status, uint32_t n)
{
    zim_wr_reset (out);
    zim_gfanned_pack (out, &(zim_gfanned_t){req, status, {NULL, NULL}, n});
}

int zim_groups_fan (zim_groups_t *self, MDB_txn *txn, const zim_gfanout_t *m, zim_wr_t *out,
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
        zim_groups_fanned (out, m->req, ZIM_APPEND_DUPLICATE, count);
        zim_wr_raw (out, v.mv_data, v.mv_size);
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    self->nshards_tmp = 0;
    if (zim_groups_each (m->members, zim_groups_collect, self)) {
        zim_groups_fanned (out, m->req, ZIM_EVALUE, 0);
        return 0;
    }
    size_t n = self->nshards_tmp;
    for (size_t i = 0; i < n; i++)
        self->members[i].ptr = self->names[i];
    char convb[2 + ZIM_ID_MAX];
    memcpy (convb, "g:", 2);
    memcpy (convb + 2, m->group.ptr, m->group.len);
    zim_append_item_t it = {m->id,  m->ts,   m->app,       m->from, {convb, 2 + m->group.len},
                            m->cid, m->body, ZIM_SIDE_BOTH};
    uint64_t from_seq;
    rc =
        zim_inbox_group (self->inbox, &it, m->gseq, self->members, n, self->seqs, &from_seq, false);
    if (rc == ZIM_EVALUE) {
        zim_groups_fanned (out, m->req, ZIM_EVALUE, 0);
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
    zim_groups_fanned (out, m->req, ZIM_APPEND_STORED, (uint32_t)n);
    zim_wr_raw (out, self->list.data, self->list.size);
    return 0;
}

//  The job of a message is done: forget it, and keep the sender's seq in
//  the record (a later retry's ack names it).
int zim_groups_done (zim_groups_t *self, MDB_txn *txn, const zim_gdone_t *m, bool *wrote)
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
