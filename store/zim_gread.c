/*  zim_gread.c: GREAD, the read side of groups (part of zim_groups, see
    zim_groups.h): a group's log after a gseq (csync), the reader's groups,
    and the unfinished fan-out jobs the brokers poll for.
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
//  GREAD

void zim_groups_read_r (zim_wr_t *out, uint64_t req, int64_t status, bool more, bool reset,
                        const zim_wr_t *items, uint64_t count, uint64_t kind)
{
    zim_wr_reset (out);
    zim_str_t bin = {items ? (const char *)items->data : "", items ? items->size : 0};
    zim_gread_r_pack (out, &(zim_gread_r_t){req, status, more, reset, bin, count, kind});
}

//  The group's or channel's log after since (from the member's join on),
//  as sitem maps in self->items.
static int s_log (zim_groups_t *self, MDB_txn *txn, const zim_gread_t *m, uint64_t max_bytes,
                  zim_wr_t *out)
{
    zim_grec_t g;
    uint64_t joined;
    int rc = zim_groups_rec_get (self->dbs, txn, m->app, m->group, &g);
    if (rc == 0)
        rc = zim_groups_member_get (self->dbs, txn, m->app, m->group, m->uid, &joined);
    if (rc == MDB_NOTFOUND) {
        bool nogroup = zim_groups_rec_get (self->dbs, txn, m->app, m->group, &g) != 0;
        zim_groups_read_r (out, m->req, nogroup ? ZIM_ENOGROUP : ZIM_ENOTMEMBER, false, false, NULL,
                           0, 0);
        return 0;
    }
    if (rc)
        return rc;
    //  A group's log too: its messages are in the inboxes, but the log is
    //  how a member reads what came before its join (history_for_new),
    //  or a page of the group's own order.
    uint64_t limit = m->limit ? m->limit : ZIM_GROUPS_READ_LIMIT;
    limit = limit > ZIM_GROUPS_READ_LIMIT_MAX ? ZIM_GROUPS_READ_LIMIT_MAX : limit;
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
        uint64_t id;
        zim_msgrec_t rec;
        rc = zim_groups_log_get (self, txn, m->app, m->group, gseq, &id, &rec);
        if (rc == MDB_NOTFOUND)
            continue; //  purged by retention
        if (rc)
            return rc;
        size_t before = self->items.size;
        zim_sitem_pack (&self->items,
                        &(zim_sitem_t){0, id, rec.from, m->group, conv, rec.body, rec.ts, m->group,
                                       gseq, zim_group_event (m->group, rec.from)});
        if (self->items.size > room && count > 0) {
            self->items.size = before;
            break;
        }
        count++;
    }
    zim_groups_read_r (out, m->req, 0, gseq <= g.gseq, reset, &self->items, count, g.kind);
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
        if (count == ZIM_GROUPS_LIST_MAX) {
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
        zim_grec_t g;
        int r = zim_groups_rec_get (self->dbs, txn, m->app, group, &g);
        if (r == 0) {
            zim_sgroup_pack (&self->items,
                             &(zim_sgroup_t){group, zim_str (zim_groups_kind_name (g.kind)), g.gseq,
                                             joined, g.members});
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
    zim_groups_read_r (out, m->req, 0, more, false, &self->items, count, 0);
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
    uint64_t count = 0, limit = m->limit ? m->limit : ZIM_GROUPS_READ_LIMIT;
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
        //  A membership event's job is due at once: no broker carries it
        //  (the admin endpoint wrote it), the poll does.
        if (r == 0 && zim_msgrec_parse (&rv, &rec) == 0 && rec.to.len > 2 &&
            (rec.ts < m->since || (rec.from.len && rec.from.ptr[0] == '$'))) {
            zim_gjob_pack (&self->items, &(zim_gjob_t){zim_be64_get (idb),
                                                       rec.ts,
                                                       rec.app,
                                                       rec.from,
                                                       rec.cid,
                                                       {rec.to.ptr + 2, rec.to.len - 2},
                                                       rec.to_seq,
                                                       rec.body,
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
    zim_groups_read_r (out, m->req, 0, more, false, &self->items, count, 0);
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
        zim_groups_read_r (out, m->req, ZIM_ESTORE, false, false, NULL, 0, 0);
    return rc == ZIM_ESTORE ? 0 : rc;
}
