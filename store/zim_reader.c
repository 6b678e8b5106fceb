/*  zim_reader.c: sync and history pages (see zim_reader.h). Entries are
    encoded one by one as they are read, so the byte bound is exact: an
    entry that would pass it ends the page, and the client asks again from
    the last entry it got.
*/
#include "store/zim_reader.h"
#include "store/zim_cursor.h"
#include "store/zim_inbox.h"
#include "store/zim_key.h"
#include "store/zim_msgrec.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

struct _zim_reader_t {
    const zim_dbs_t *dbs; //  the databases (borrowed)
    zim_wr_t entries;     //  the page's entries, encoded
    zim_wr_t one;         //  one entry, encoded
    uint32_t count;       //  entries in the page
    uint32_t limit;       //  entries allowed
    size_t budget;        //  bytes the entries may take
};

zim_reader_t *zim_reader_new (zim_db_t *db)
{
    zim_reader_t *self = zim_calloc (1, sizeof *self);
    self->dbs = zim_db_dbs (db);
    zim_wr_init (&self->entries);
    zim_wr_init (&self->one);
    return self;
}

void zim_reader_destroy (zim_reader_t **self_p)
{
    zim_reader_t *self = *self_p;
    if (!self)
        return;
    zim_wr_free (&self->entries);
    zim_wr_free (&self->one);
    free (self);
    *self_p = NULL;
}

//  Adds one entry to the page if it has room: the item limit, and the byte
//  budget unless the page is still empty. Returns false when it is full.
static bool s_add (zim_reader_t *self, const zim_item_t *item)
{
    if (self->count == self->limit)
        return false;
    zim_wr_reset (&self->one);
    zim_item_pack (&self->one, item);
    if (self->count > 0 && self->entries.size + self->one.size > self->budget)
        return false;
    zim_wr_raw (&self->entries, self->one.data, self->one.size);
    self->count++;
    return true;
}

//  Reads the record of the message whose id is at idb; returns 0, 1 for a
//  dangling entry (skipped rather than stalling the reader: it cannot
//  happen short of corruption), or an LMDB error.
static int s_record (zim_reader_t *self, MDB_txn *txn, const void *idb, zim_msgrec_t *rec)
{
    uint8_t key[8];
    memcpy (key, idb, 8);
    MDB_val rk = {8, key}, rv;
    int rc = mdb_get (txn, self->dbs->msgs, &rk, &rv);
    if (rc == MDB_NOTFOUND || (rc == 0 && zim_msgrec_parse (&rv, rec)))
        return 1;
    return rc;
}

//  Fills the page from the inbox of m->uid after seq m->from (or after the
//  device's cursor when m->from < 0). Returns 0 or an LMDB error.
static int s_sync (zim_reader_t *self, MDB_txn *txn, const zim_read_t *m, bool *more)
{
    uint64_t from = 0;
    int rc;
    if (m->from >= 0)
        from = (uint64_t)m->from;
    else if ((rc = zim_cursor_get (self->dbs, txn, m->app, m->uid, m->device, &from)))
        return rc;
    if (from == UINT64_MAX)
        return 0;
    zim_key_t prefix, start;
    zim_key_user (&prefix, m->app, m->uid);
    start = prefix;
    zim_key_u64 (&start, from + 1);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open (txn, self->dbs->inbox, &cur)))
        return rc;
    MDB_val k = zim_key_val (&start), v;
    rc = mdb_cursor_get (cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && zim_key_has_prefix (&k, &prefix, 8)) {
        zim_msgrec_t rec;
        int r = v.mv_size == 8 ? s_record (self, txn, v.mv_data, &rec) : 1;
        if (r > 1) {
            rc = r;
            break;
        }
        if (r == 0) {
            zim_item_t item = {zim_be64_get ((uint8_t *)k.mv_data + prefix.len),
                               zim_be64_get (v.mv_data),
                               rec.ts,
                               rec.from,
                               rec.to,
                               rec.body};
            if (!s_add (self, &item))
                break;
        }
        rc = mdb_cursor_get (cur, &k, &v, MDB_NEXT);
    }
    *more = rc == 0 && zim_key_has_prefix (&k, &prefix, 8);
    mdb_cursor_close (cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  Fills the page from the conversation of m->uid and m->peer, ids below
//  m->from (0: the newest), newest first. Returns 0 or an LMDB error.
static int s_history (zim_reader_t *self, MDB_txn *txn, const zim_read_t *m, bool *more)
{
    zim_key_t prefix, start;
    zim_key_conv (&prefix, m->app, m->uid, m->peer);
    start = prefix;
    zim_key_u64 (&start, m->from > 0 ? (uint64_t)m->from : UINT64_MAX);
    MDB_cursor *cur;
    int rc = mdb_cursor_open (txn, self->dbs->hist, &cur);
    if (rc)
        return rc;
    MDB_val k = zim_key_val (&start), v;
    rc = mdb_cursor_get (cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get (cur, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get (cur, &k, &v, MDB_LAST);
    while (rc == 0 && zim_key_has_prefix (&k, &prefix, 8)) {
        const uint8_t *idb = (const uint8_t *)k.mv_data + prefix.len;
        zim_msgrec_t rec;
        int r = s_record (self, txn, idb, &rec);
        if (r > 1) {
            rc = r;
            break;
        }
        if (r == 0) {
            zim_item_t item = {0, zim_be64_get (idb), rec.ts, rec.from, rec.to, rec.body};
            if (!s_add (self, &item))
                break;
        }
        rc = mdb_cursor_get (cur, &k, &v, MDB_PREV);
    }
    *more = rc == 0 && zim_key_has_prefix (&k, &prefix, 8);
    mdb_cursor_close (cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int zim_reader_page (zim_reader_t *self, MDB_txn *txn, const zim_read_t *m, uint64_t max_bytes,
                     zim_wr_t *out)
{
    self->limit = m->limit == 0                     ? ZIM_READER_LIMIT
                  : m->limit > ZIM_READER_LIMIT_MAX ? ZIM_READER_LIMIT_MAX
                                                    : (uint32_t)m->limit;
    //  The envelope can only be as long as it is with the most entries.
    zim_wr_reset (out);
    zim_page_begin (out, m->req, 0, true, self->limit);
    self->budget = max_bytes > out->size ? max_bytes - out->size : 0;
    self->count = 0;
    zim_wr_reset (&self->entries);
    bool more = false;
    int64_t status = 0;
    int rc = 0;
    if (!zim_uid_valid (m->app) || !zim_uid_valid (m->uid) ||
        (m->mode == ZIM_READ_HISTORY && !zim_uid_valid (m->peer)) ||
        (m->mode != ZIM_READ_SYNC && m->mode != ZIM_READ_HISTORY))
        status = ZIM_EVALUE;
    else if (m->mode == ZIM_READ_SYNC)
        rc = s_sync (self, txn, m, &more);
    else
        rc = s_history (self, txn, m, &more);
    if (rc)
        status = ZIM_ESTORE;
    if (status) {
        self->count = 0;
        more = false;
    }
    //  Encoding copied every value out of LMDB memory: the page outlives
    //  the read transaction.
    zim_wr_reset (out);
    zim_page_begin (out, m->req, status, more, self->count);
    if (self->count)
        zim_wr_raw (out, self->entries.data, self->entries.size);
    return rc;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Stores n messages from -> to with bin bodies of size bytes (byte i of
//  message k is k), ids from id0.
static void s_test_fill (zim_db_t *db, uint64_t id0, const char *from, const char *to, int n,
                         size_t size)
{
    zim_inbox_t *inbox = zim_inbox_new (db, NULL);
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    zim_inbox_begin (inbox, txn);
    zim_wr_t body;
    zim_wr_init (&body);
    char *blob = zim_malloc (size);
    for (int i = 0; i < n; i++) {
        char cid[32];
        snprintf (cid, sizeof cid, "%s-%d", from, i);
        memset (blob, i & 0xff, size);
        zim_wr_reset (&body);
        zim_wr_bin (&body, (zim_str_t){blob, size});
        zim_append_item_t it = {id0 + (uint64_t)i,      1,
                                zim_str ("demo"),       zim_str (from),
                                zim_str (to),           zim_str (cid),
                                {body.data, body.size}, ZIM_SIDE_BOTH};
        zim_appended_item_t res;
        assert (zim_inbox_append (inbox, &it, &res) == 0 && res.status == ZIM_APPEND_STORED);
    }
    assert (zim_inbox_finish (inbox) == 0 && mdb_txn_commit (txn) == 0);
    free (blob);
    zim_wr_free (&body);
    zim_inbox_destroy (&inbox);
}

//  Decodes the PAGE in out (borrowing it).
static void s_test_decode (zim_wr_t *out, zim_page_t *page)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, out->data, out->size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_PAGE);
    assert (zim_page_unpack (&rd, fields, page) == 0);
}

//  Reads a whole inbox (mode sync) or conversation (history) in pages of
//  at most max_bytes and limit; checks every page's size, that each
//  message comes once, in order, and whole. Returns the number of messages.
static size_t s_test_read_all (zim_reader_t *reader, MDB_txn *txn, uint64_t mode, const char *uid,
                               const char *peer, uint64_t limit, uint64_t max_bytes,
                               size_t msg_size, size_t *pages)
{
    zim_wr_t out;
    zim_wr_init (&out);
    size_t total = 0;
    uint64_t last = mode == ZIM_READ_SYNC ? 0 : UINT64_MAX;
    int64_t from = 0;
    *pages = 0;
    bool more = true;
    while (more) {
        zim_read_t m = {7,    mode,  zim_str ("demo"), zim_str (uid), zim_str ("phone"),
                        from, limit, zim_str (peer)};
        assert (zim_reader_page (reader, txn, &m, max_bytes, &out) == 0);
        zim_page_t page;
        s_test_decode (&out, &page);
        assert (page.status == 0 && page.req == 7);
        assert (page.nitems >= 1 || !page.more);
        assert (out.size <= max_bytes || page.nitems == 1);
        assert (page.nitems <= (limit ? limit : 100));
        for (uint32_t i = 0; i < page.nitems; i++) {
            zim_item_t item;
            assert (zim_item_unpack (&page.items, &item) == 0);
            uint64_t key = mode == ZIM_READ_SYNC ? item.seq : item.id;
            assert (mode == ZIM_READ_SYNC ? key == last + 1 : key < last);
            last = key;
            zim_rd_t brd;
            zim_str_t bin;
            zim_rd_init (&brd, item.body.ptr, item.body.len);
            assert (zim_rd_bin (&brd, &bin) == 0 && bin.len == msg_size);
            assert ((uint8_t)bin.ptr[0] == (uint8_t)bin.ptr[bin.len - 1]);
            total++;
        }
        assert (zim_rd_left (&page.items) == 0);
        more = page.more;
        from = (int64_t)last;
        (*pages)++;
    }
    zim_wr_free (&out);
    return total;
}

void zim_reader_test (bool verbose)
{
    char *dir;
    zim_db_t *db = zim_db_test_new (&dir, 64 << 20);
    zim_reader_t *reader = zim_reader_new (db);
    //  Backlogs: 600 x 4 KB for bob, 100 x 10 KB for dan, 5 x 64 KB for fay.
    s_test_fill (db, 1000, "ann", "bob", 600, 4000);
    s_test_fill (db, 5000, "cat", "dan", 100, 10000);
    s_test_fill (db, 9000, "eve", "fay", 5, 65536);
    int rc;
    MDB_txn *txn = zim_db_read_begin (db, &rc);
    assert (txn);
    size_t pages;
    uint64_t max = ZIM_READER_BYTES;
    assert (s_test_read_all (reader, txn, ZIM_READ_SYNC, "bob", "", 1000, max, 4000, &pages) ==
            600);
    assert (pages == 10); //  about 64 messages of 4 KB in 256 KiB
    assert (s_test_read_all (reader, txn, ZIM_READ_SYNC, "ann", "", 0, max, 4000, &pages) == 600);
    assert (pages == 10);
    assert (s_test_read_all (reader, txn, ZIM_READ_SYNC, "dan", "", 100, max, 10000, &pages) ==
            100);
    assert (pages == 4);
    assert (s_test_read_all (reader, txn, ZIM_READ_HISTORY, "bob", "ann", 1000, max, 4000,
                             &pages) == 600);
    assert (s_test_read_all (reader, txn, ZIM_READ_HISTORY, "dan", "cat", 30, max, 10000, &pages) ==
            100);
    assert (pages == 4);
    //  A message larger than the bound still makes a page, one at a time.
    assert (s_test_read_all (reader, txn, ZIM_READ_SYNC, "fay", "", 100, 16384, 65536, &pages) ==
            5);
    assert (pages == 5);
    assert (s_test_read_all (reader, txn, ZIM_READ_SYNC, "fay", "", 100, max, 65536, &pages) == 5);
    assert (pages == 2);

    //  The bound is the page's encoded length: a bound of exactly one
    //  page's length gives the same page; one byte less, a message fewer.
    zim_wr_t out;
    zim_wr_init (&out);
    zim_read_t m = {1, ZIM_READ_SYNC, zim_str ("demo"), zim_str ("bob"), zim_str ("p"), 0,
                    3, zim_str ("")};
    assert (zim_reader_page (reader, txn, &m, 1 << 20, &out) == 0);
    size_t three = out.size;
    assert (zim_reader_page (reader, txn, &m, three, &out) == 0 && out.size == three);
    assert (zim_reader_page (reader, txn, &m, three - 1, &out) == 0 && out.size < three);
    //  Bad reads answer ZIM_EVALUE with an empty page.
    m.uid = zim_str ("b:b");
    assert (zim_reader_page (reader, txn, &m, max, &out) == 0);
    zim_page_t page;
    s_test_decode (&out, &page);
    assert (page.status == ZIM_EVALUE && page.nitems == 0 && !page.more);
    zim_wr_free (&out);
    zim_db_read_end (db);

    zim_reader_destroy (&reader);
    zim_db_test_destroy (&db, &dir);
    if (verbose)
        zsys_info ("reader: pages bounded in messages and encoded bytes, read to the end");
}
