/*  zim_wal.c: the store's write-ahead log (see zim_wal.h).
 */
#include "store/zim_wal.h"
#include "store/zim_db.h"
#include "store/zim_key.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAGIC "ZWL1"
#define S_FILL (1 << 20) //  bytes of zeros written at a time when the file grows

struct _zim_wal_t {
    char *name;        //  node name for logs
    char *path;        //  DIR/wal
    int fd;            //  the file
    uint64_t capacity; //  its size
    uint64_t pos;      //  where the next record goes
    uint64_t lsn;      //  the last record's lsn
    uint8_t *buf;      //  a record being written or read
    size_t buf_alloc;  //  allocated
};

static uint32_t s_be32_get (const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void s_be32_put (uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint64_t zim_wal_sum (uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy (&w, p + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy (&w, p + i, len - i);
    h = (h ^ w ^ ((uint64_t)len << 56)) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 32);
}

//  The checksum of a record in buf whose payload is len bytes.
static uint64_t s_record_sum (const uint8_t *buf, size_t len)
{
    uint64_t h = zim_wal_sum (0x5A494D57414C3031ULL, buf + 8, 16);
    return zim_wal_sum (h, buf + ZIM_WAL_HEADER, len);
}

static void s_reserve (zim_wal_t *self, size_t size)
{
    if (size > self->buf_alloc) {
        self->buf_alloc = size * 2;
        free (self->buf);
        self->buf = zim_malloc (self->buf_alloc);
    }
}

//  pwrite of all of [p, p + len) at off. Returns 0 or an errno.
static int s_pwrite_all (int fd, const void *p, size_t len, uint64_t off)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t n = pwrite (fd, b, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO;
        b += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

//  Grows the file with zeros from size to capacity and syncs it and its
//  directory. Returns 0 or an errno.
static int s_fill (zim_wal_t *self, uint64_t size, const char *dir)
{
    uint8_t *zeros = zim_calloc (1, S_FILL);
    int rc = 0;
    for (uint64_t off = size; rc == 0 && off < self->capacity; off += S_FILL) {
        uint64_t left = self->capacity - off;
        rc = s_pwrite_all (self->fd, zeros, left < S_FILL ? (size_t)left : S_FILL, off);
    }
    free (zeros);
    if (rc == 0 && fsync (self->fd))
        rc = errno;
    if (rc == 0 && zim_db_sync_dir (dir))
        rc = errno ? errno : EIO;
    return rc;
}

zim_wal_t *zim_wal_open (const char *name, const char *dir, uint64_t capacity)
{
    zim_wal_t *self = zim_calloc (1, sizeof *self);
    self->name = zim_strdup (name);
    self->path = zsys_sprintf ("%s/wal", dir);
    self->fd = open (self->path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    struct stat st;
    int rc = self->fd < 0 || fstat (self->fd, &st) ? errno : 0;
    if (rc == 0) {
        uint64_t size = (uint64_t)st.st_size;
        //  A log larger than asked (capacity lowered) is kept whole: its
        //  records may be needed.
        self->capacity = size > capacity ? size : capacity;
        if (size < self->capacity)
            rc = s_fill (self, size, dir);
    }
    if (rc) {
        zsys_error ("%s: cannot make the write-ahead log %s (%s): check the path, its "
                    "permissions and free space",
                    name, self->path, strerror (rc));
        zim_wal_destroy (&self);
    }
    return self;
}

void zim_wal_destroy (zim_wal_t **self_p)
{
    zim_wal_t *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0)
        close (self->fd);
    free (self->name);
    zstr_free (&self->path);
    free (self->buf);
    free (self);
    *self_p = NULL;
}

//  pread of len bytes at off into buf. Returns 0, -1 at the end of the
//  file, or an errno.
static int s_pread_all (int fd, uint8_t *buf, size_t len, uint64_t off)
{
    while (len) {
        ssize_t n = pread (fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0)
            return -1;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

//  A payload: its size for msgs[0..n), writing it at p, and splitting one of
//  len bytes back into *msgs (allocated; the caller frees it) and *n (0 or
//  -1 if it does not hold together).
static size_t s_payload_size (const zim_str_t *msgs, size_t n)
{
    size_t len = 4;
    for (size_t i = 0; i < n; i++)
        len += 4 + msgs[i].len;
    return len;
}

static void s_payload_write (uint8_t *p, const zim_str_t *msgs, size_t n)
{
    s_be32_put (p, (uint32_t)n);
    p += 4;
    for (size_t i = 0; i < n; i++) {
        s_be32_put (p, (uint32_t)msgs[i].len);
        if (msgs[i].len)
            memcpy (p + 4, msgs[i].ptr, msgs[i].len);
        p += 4 + msgs[i].len;
    }
}

static int s_payload_split (const uint8_t *p, size_t len, zim_str_t **msgs, size_t *n)
{
    if (len < 4)
        return -1;
    size_t count = s_be32_get (p), off = 4;
    if (count > len / 4)
        return -1;
    *msgs = zim_calloc (count ? count : 1, sizeof **msgs);
    for (size_t i = 0; i < count; i++) {
        if (len - off < 4) {
            zim_free (msgs);
            return -1;
        }
        size_t m = s_be32_get (p + off);
        off += 4;
        if (m > len - off) {
            zim_free (msgs);
            return -1;
        }
        (*msgs)[i] = (zim_str_t){(const char *)p + off, m};
        off += m;
    }
    *n = count;
    return 0;
}

long zim_wal_replay (zim_wal_t *self, uint64_t after, zim_wal_fn *fn, void *arg)
{
    uint64_t pos = 0, lsn = after;
    long count = 0;
    int rc = 0;
    while (pos + ZIM_WAL_HEADER <= self->capacity) {
        uint8_t head[ZIM_WAL_HEADER];
        if ((rc = s_pread_all (self->fd, head, sizeof head, pos)))
            break;
        uint64_t len = s_be32_get (head + 4);
        if (memcmp (head, S_MAGIC, 4) || zim_be64_get (head + 8) != lsn + 1 ||
            len > self->capacity - pos - ZIM_WAL_HEADER)
            break;
        s_reserve (self, ZIM_WAL_HEADER + (size_t)len);
        memcpy (self->buf, head, sizeof head);
        if ((rc = s_pread_all (self->fd, self->buf + ZIM_WAL_HEADER, (size_t)len,
                               pos + ZIM_WAL_HEADER)))
            break;
        if (s_record_sum (self->buf, (size_t)len) != zim_be64_get (head + 24))
            break; //  torn or stale
        zim_str_t *msgs;
        size_t n;
        if (s_payload_split (self->buf + ZIM_WAL_HEADER, (size_t)len, &msgs, &n)) {
            zsys_warning ("%s: write-ahead log record %" PRIu64 " has a sound checksum but "
                          "does not hold together: the log ends before it",
                          self->name, lsn + 1);
            break;
        }
        int stop = fn (arg, lsn + 1, msgs, n);
        free (msgs);
        if (stop)
            return -1;
        lsn++;
        count++;
        pos += ZIM_WAL_HEADER + len;
    }
    if (rc > 0) {
        zsys_error ("%s: cannot read the write-ahead log %s (%s): check the disk", self->name,
                    self->path, strerror (rc));
        return -1;
    }
    self->pos = pos;
    self->lsn = lsn;
    return count;
}

int zim_wal_append (zim_wal_t *self, const zim_str_t *msgs, size_t n)
{
    uint64_t len = s_payload_size (msgs, n);
    if (n > UINT32_MAX || len > UINT32_MAX || ZIM_WAL_HEADER + len > self->capacity)
        return EFBIG;
    if (self->pos + ZIM_WAL_HEADER + len > self->capacity)
        return ENOSPC;
    s_reserve (self, ZIM_WAL_HEADER + (size_t)len);
    uint8_t *p = self->buf;
    memcpy (p, S_MAGIC, 4);
    s_be32_put (p + 4, (uint32_t)len);
    zim_be64_put (p + 8, self->lsn + 1);
    memset (p + 16, 0, 8);
    s_payload_write (p + ZIM_WAL_HEADER, msgs, n);
    zim_be64_put (p + 24, s_record_sum (p, (size_t)len));
    int rc = s_pwrite_all (self->fd, p, ZIM_WAL_HEADER + (size_t)len, self->pos);
    if (rc == 0 && fdatasync (self->fd))
        rc = errno ? errno : EIO;
    if (rc)
        return rc;
    self->pos += ZIM_WAL_HEADER + len;
    self->lsn++;
    return 0;
}

uint64_t zim_wal_lsn (zim_wal_t *self)
{
    return self->lsn;
}

uint64_t zim_wal_used (zim_wal_t *self)
{
    return self->pos;
}

void zim_wal_rewind (zim_wal_t *self)
{
    self->pos = 0;
}

//  -------------------------------------------------------------------------
//  Selftest

typedef struct {
    char got[8][32]; //  the first message of each record read
    uint64_t lsns[8];
    size_t count;
    size_t stop_at; //  stop when this many were read (0: never)
} s_test_t;

static int s_test_fn (void *arg, uint64_t lsn, const zim_str_t *msgs, size_t n)
{
    s_test_t *t = arg;
    if (t->stop_at && t->count == t->stop_at)
        return 1;
    assert (n >= 1 && t->count < 8);
    snprintf (t->got[t->count], sizeof t->got[0], "%.*s/%zu", (int)msgs[0].len, msgs[0].ptr, n);
    t->lsns[t->count++] = lsn;
    return 0;
}

//  Appends a record of two messages "<text>" and "x".
static int s_test_put (zim_wal_t *wal, const char *text)
{
    zim_str_t msgs[2] = {zim_str (text), zim_str ("x")};
    return zim_wal_append (wal, msgs, 2);
}

void zim_wal_test (bool verbose)
{
    char *dir = zim_db_test_dir ();
    char path[300];
    snprintf (path, sizeof path, "%s/wal", dir);

    //  A new log is its capacity of zeros, and holds nothing.
    zim_wal_t *wal = zim_wal_open ("test", dir, 4096);
    assert (wal);
    struct stat st;
    assert (stat (path, &st) == 0 && st.st_size == 4096);
    s_test_t t = {0};
    assert (zim_wal_replay (wal, 0, s_test_fn, &t) == 0 && zim_wal_lsn (wal) == 0);
    assert (s_test_put (wal, "one") == 0 && s_test_put (wal, "two") == 0);
    assert (s_test_put (wal, "three") == 0 && zim_wal_lsn (wal) == 3);
    uint64_t used = zim_wal_used (wal);
    assert (used == 3 * (ZIM_WAL_HEADER + 4 + 8 + 1) + 3 + 3 + 5);
    zim_wal_destroy (&wal);

    //  Reopened: the records come back in order, and appends go on after
    //  them; a replay can be stopped.
    wal = zim_wal_open ("test", dir, 4096);
    t = (s_test_t){0};
    assert (zim_wal_replay (wal, 0, s_test_fn, &t) == 3 && t.count == 3);
    assert (streq (t.got[0], "one/2") && streq (t.got[2], "three/2") && t.lsns[2] == 3);
    assert (zim_wal_lsn (wal) == 3 && zim_wal_used (wal) == used);
    t = (s_test_t){.stop_at = 1};
    assert (zim_wal_replay (wal, 0, s_test_fn, &t) == -1);
    //  Records after lsn 3 only: none (the first is lsn 1, before them).
    t = (s_test_t){0};
    assert (zim_wal_replay (wal, 3, s_test_fn, &t) == 0 && zim_wal_lsn (wal) == 3);
    assert (zim_wal_used (wal) == 0);
    zim_wal_destroy (&wal);

    //  A torn record (a byte of the second changed) ends the log there; the
    //  next append takes its place and its lsn.
    int fd = open (path, O_RDWR);
    assert (fd >= 0);
    uint8_t b;
    off_t at = (ZIM_WAL_HEADER + 4 + 8 + 1 + 3) + ZIM_WAL_HEADER + 6;
    assert (pread (fd, &b, 1, at) == 1);
    b ^= 0x40;
    assert (pwrite (fd, &b, 1, at) == 1);
    close (fd);
    wal = zim_wal_open ("test", dir, 4096);
    t = (s_test_t){0};
    assert (zim_wal_replay (wal, 0, s_test_fn, &t) == 1 && zim_wal_lsn (wal) == 1);
    assert (s_test_put (wal, "deux") == 0 && zim_wal_lsn (wal) == 2);
    zim_wal_destroy (&wal);
    wal = zim_wal_open ("test", dir, 4096);
    t = (s_test_t){0};
    assert (zim_wal_replay (wal, 0, s_test_fn, &t) == 2 && streq (t.got[1], "deux/2"));

    //  After a rewind the next record (lsn 3) goes at the start; the rest
    //  of the file is stale and not read.
    zim_wal_rewind (wal);
    assert (s_test_put (wal, "trois") == 0 && zim_wal_lsn (wal) == 3);
    zim_wal_destroy (&wal);
    wal = zim_wal_open ("test", dir, 4096);
    t = (s_test_t){0};
    assert (zim_wal_replay (wal, 2, s_test_fn, &t) == 1 && streq (t.got[0], "trois/2"));
    assert (t.lsns[0] == 3);
    t = (s_test_t){0};
    assert (zim_wal_replay (wal, 0, s_test_fn, &t) == 0);

    //  Full: ENOSPC until a rewind; a record larger than the file: EFBIG.
    assert (zim_wal_replay (wal, 2, s_test_fn, &t) == 1);
    char big[1500];
    memset (big, 'b', sizeof big - 1);
    big[sizeof big - 1] = 0;
    int rc = 0;
    for (int i = 0; i < 8 && rc == 0; i++)
        rc = s_test_put (wal, big);
    assert (rc == ENOSPC);
    zim_wal_rewind (wal);
    assert (s_test_put (wal, big) == 0);
    char *huge = zim_calloc (1, 5000);
    memset (huge, 'h', 4999);
    assert (s_test_put (wal, huge) == EFBIG);
    free (huge);
    zim_wal_destroy (&wal);

    //  A capacity below the file's size keeps the file whole.
    wal = zim_wal_open ("test", dir, 1024);
    assert (stat (path, &st) == 0 && st.st_size == 4096);
    zim_wal_destroy (&wal);

    //  The checksum sees a changed byte anywhere, and the length.
    uint8_t a[37] = {0};
    uint64_t h0 = zim_wal_sum (1, a, sizeof a);
    for (size_t i = 0; i < sizeof a; i++) {
        a[i] = 1;
        assert (zim_wal_sum (1, a, sizeof a) != h0);
        a[i] = 0;
    }
    assert (zim_wal_sum (1, a, sizeof a - 1) != h0);

    zim_db_test_rmtree (dir);
    free (dir);
    if (verbose)
        zsys_info ("wal: records, replay, torn tail, rewind, full");
}
