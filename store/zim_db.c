/*  zim_db.c: the store's LMDB environment (see zim_db.h).
 */
#include "store/zim_db.h"
#include "store/zim_key.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <string.h>
#include <unistd.h>

#define S_VERSION 1          //  layout version in meta
#define S_SYNC_INTERVAL 1000 //  ms between background syncs (sync = none)

struct _zim_db_t {
    char *name;         //  node name for logs
    char *dir;          //  environment directory
    zim_fsync_t sync;   //  fsync policy
    MDB_env *env;       //  the environment
    zim_dbs_t dbs;      //  its databases
    MDB_txn *rtxn;      //  read transaction, reset between drains
    MDB_txn *wtxn;      //  the group commit's open window, or NULL
    bool lost;          //  the window was lost: reads fail until it is back
    int (*checkpoint) (void *arg); //  closes the window
    void *checkpoint_arg;
    uint64_t map_size;  //  current map size in bytes
    uint64_t last_id;   //  greatest message id at open
    bool owed;          //  sync = none: committed since the last good sync
    uint64_t next_sync; //  mono ms of the next background sync
    int dir_syncs;      //  directories fsynced at open (selftest)
    //  The sync call; the selftest puts a failing one here.
    int (*sync_fn) (MDB_env *env, int force);
};

int zim_fsync_parse (const char *text, zim_fsync_t *mode)
{
    static const char *names[] = {"batch", "always", "none"};
    for (int i = 0; i < 3; i++)
        if (streq (text, names[i])) {
            *mode = (zim_fsync_t)i;
            return 0;
        }
    return -1;
}

const char *zim_fsync_name (zim_fsync_t mode)
{
    return mode == ZIM_FSYNC_BATCH ? "batch" : mode == ZIM_FSYNC_ALWAYS ? "always" : "none";
}

//  fsyncs a directory, so the entries made in it survive a crash. A
//  filesystem that cannot sync directories (EINVAL) is not an error.
//  Returns 0 or -1 with errno set.
int zim_db_sync_dir (const char *path)
{
    int fd = open (path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    int err = errno;
    close (fd);
    if (rc && err != EINVAL) {
        errno = err;
        return -1;
    }
    return 0;
}

//  Opens the databases, checks or writes the layout version and reads the
//  greatest message id, in txn. Returns 0, an LMDB error with *what naming
//  the step, or -1 for a store of another layout version.
static int s_open_dbs (zim_db_t *self, MDB_txn *txn, const char **what)
{
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{"msgs", &self->dbs.msgs}, {"inbox", &self->dbs.inbox},
               {"hist", &self->dbs.hist}, {"idem", &self->dbs.idem},
               {"seqs", &self->dbs.seqs}, {"cursors", &self->dbs.cursors},
               {"meta", &self->dbs.meta},
               {"cstate", &self->dbs.cstate}, {"cidx", &self->dbs.cidx},
               {"crecent", &self->dbs.crecent}, {"utotal", &self->dbs.utotal},
               {"pushk", &self->dbs.pushk}, {"pushq", &self->dbs.pushq},
               {"groups", &self->dbs.groups}, {"gmembers", &self->dbs.gmembers},
               {"ugroups", &self->dbs.ugroups}, {"glog", &self->dbs.glog},
               {"gjobs", &self->dbs.gjobs}, {"gfan", &self->dbs.gfan}};
    int rc = 0;
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        *what = dbs[i].name;
        if ((rc = mdb_dbi_open (txn, dbs[i].name, MDB_CREATE, dbs[i].dbi)))
            return rc;
    }
    *what = "meta";
    MDB_val k = {7, "version"}, v;
    uint8_t ver[8];
    rc = mdb_get (txn, self->dbs.meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        zim_be64_put (ver, S_VERSION);
        v = (MDB_val){8, ver};
        rc = mdb_put (txn, self->dbs.meta, &k, &v, 0);
    } else if (rc == 0 && (v.mv_size != 8 || zim_be64_get (v.mv_data) != S_VERSION))
        return -1;
    if (rc)
        return rc;
    *what = "msgs";
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open (txn, self->dbs.msgs, &cur)))
        return rc;
    rc = mdb_cursor_get (cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8)
        self->last_id = zim_be64_get (k.mv_data);
    mdb_cursor_close (cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  fsyncs the data directory (LMDB's files) and its parent (the directory
//  itself, if START made it). Returns 0 or -1 (errno set).
static int s_sync_dirs (zim_db_t *self)
{
    if (zim_db_sync_dir (self->dir))
        return -1;
    self->dir_syncs++;
    char *copy = zim_strdup (self->dir);
    int rc = zim_db_sync_dir (dirname (copy));
    free (copy);
    if (rc == 0)
        self->dir_syncs++;
    return rc;
}

zim_db_t *zim_db_new (const char *name, const char *dir, zim_fsync_t sync, uint64_t map_size)
{
    if (zsys_dir_create ("%s", dir)) {
        zsys_error ("%s: cannot create data directory %s: %s", name, dir, strerror (errno));
        return NULL;
    }
    zim_db_t *self = zim_calloc (1, sizeof *self);
    self->name = zim_strdup (name);
    self->dir = zim_strdup (dir);
    self->sync = sync;
    self->sync_fn = mdb_env_sync;
    unsigned flags = MDB_NOTLS;
    if (sync == ZIM_FSYNC_NONE)
        flags |= MDB_NOSYNC | MDB_NOMETASYNC;
    MDB_txn *txn = NULL;
    const char *what = "mdb_env_create";
    int rc = mdb_env_create (&self->env);
    if (rc == 0) {
        what = "mdb_env_set_maxdbs";
        rc = mdb_env_set_maxdbs (self->env, 32);
    }
    if (rc == 0) {
        what = "map_size";
        rc = mdb_env_set_mapsize (self->env, (size_t)map_size);
    }
    if (rc == 0) {
        what = "mdb_env_open";
        rc = mdb_env_open (self->env, dir, flags, 0640);
    }
    if (rc == 0) {
        what = "mdb_txn_begin";
        rc = mdb_txn_begin (self->env, NULL, 0, &txn);
    }
    if (rc == 0)
        rc = s_open_dbs (self, txn, &what);
    if (rc == 0) {
        what = "mdb_txn_commit";
        rc = mdb_txn_commit (txn);
        txn = NULL;
    }
    //  The commit above wrote the files; their directory entries are not
    //  durable until the directory is synced (with any sync policy: a lost
    //  data.mdb would lose every message acked afterwards).
    if (rc == 0 && s_sync_dirs (self)) {
        what = "fsync of the directory";
        rc = errno ? errno : EIO;
    }
    if (rc) {
        if (rc == -1)
            zsys_error ("%s: %s holds a store of another layout version: use the zim "
                        "version that wrote it",
                        name, dir);
        else
            zsys_error ("%s: cannot open the store in %s (%s: %s): check the path, its "
                        "permissions and free space",
                        name, dir, what, mdb_strerror (rc));
        if (txn)
            mdb_txn_abort (txn);
        if (self->env)
            mdb_env_close (self->env);
        self->env = NULL;
        zim_db_destroy (&self);
        return NULL;
    }
    MDB_envinfo info;
    mdb_env_info (self->env, &info);
    self->map_size = info.me_mapsize;
    self->next_sync = zim_mono_us () / 1000 + S_SYNC_INTERVAL;
    return self;
}

void zim_db_destroy (zim_db_t **self_p)
{
    zim_db_t *self = *self_p;
    if (!self)
        return;
    if (self->rtxn)
        mdb_txn_abort (self->rtxn);
    if (self->env)
        mdb_env_close (self->env);
    free (self->name);
    free (self->dir);
    free (self);
    *self_p = NULL;
}

MDB_env *zim_db_env (zim_db_t *self)
{
    return self->env;
}

const zim_dbs_t *zim_db_dbs (zim_db_t *self)
{
    return &self->dbs;
}

zim_fsync_t zim_db_sync_mode (zim_db_t *self)
{
    return self->sync;
}

uint64_t zim_db_last_id (zim_db_t *self)
{
    return self->last_id;
}

uint64_t zim_db_map_size (zim_db_t *self)
{
    return self->map_size;
}

uint64_t zim_db_map_used (zim_db_t *self)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info (self->env, &info);
    mdb_env_stat (self->env, &st);
    return (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
}

int zim_db_grow (zim_db_t *self)
{
    assert (!self->wtxn);
    if (self->rtxn) {
        mdb_txn_abort (self->rtxn);
        self->rtxn = NULL;
    }
    uint64_t size = self->map_size * 2;
    int rc = mdb_env_set_mapsize (self->env, (size_t)size);
    if (rc) {
        zsys_error ("%s: store full at map_size %" PRIu64 " and cannot grow it (%s): "
                    "raise store/map_size and restart",
                    self->name, self->map_size, mdb_strerror (rc));
        return -1;
    }
    MDB_envinfo info;
    mdb_env_info (self->env, &info);
    zsys_warning ("%s: store full at map_size %" PRIu64 ", grew it to %zu: raise "
                  "store/map_size to at least that",
                  self->name, self->map_size, info.me_mapsize);
    self->map_size = info.me_mapsize;
    return 0;
}

MDB_txn *zim_db_read_begin (zim_db_t *self, int *rc)
{
    if (self->wtxn || self->lost) {
        *rc = self->lost ? EIO : 0;
        return self->wtxn;
    }
    if (self->rtxn)
        *rc = mdb_txn_renew (self->rtxn);
    else
        *rc = mdb_txn_begin (self->env, NULL, MDB_RDONLY, &self->rtxn);
    if (*rc) {
        if (self->rtxn)
            mdb_txn_abort (self->rtxn);
        self->rtxn = NULL;
    }
    return self->rtxn;
}

void zim_db_read_end (zim_db_t *self)
{
    if (self->rtxn && !self->wtxn)
        mdb_txn_reset (self->rtxn);
}

void zim_db_set_window (zim_db_t *self, MDB_txn *txn, bool lost)
{
    self->wtxn = txn;
    self->lost = lost;
}

MDB_txn *zim_db_window (zim_db_t *self)
{
    return self->wtxn;
}

bool zim_db_window_lost (zim_db_t *self)
{
    return self->lost;
}

void zim_db_set_checkpointer (zim_db_t *self, int (*fn) (void *arg), void *arg)
{
    self->checkpoint = fn;
    self->checkpoint_arg = arg;
}

int zim_db_write_begin (zim_db_t *self, MDB_txn **txn)
{
    *txn = NULL;
    if (self->wtxn) {
        int rc = self->checkpoint ? self->checkpoint (self->checkpoint_arg) : EBUSY;
        if (rc)
            return rc;
        assert (!self->wtxn);
    }
    return mdb_txn_begin (self->env, NULL, 0, txn);
}

const char *zim_db_dir (zim_db_t *self)
{
    return self->dir;
}

void zim_db_wrote (zim_db_t *self)
{
    if (self->sync == ZIM_FSYNC_NONE)
        self->owed = true;
}

int zim_db_tick (zim_db_t *self, uint64_t now_ms)
{
    if (!self->owed || now_ms < self->next_sync)
        return 0;
    self->next_sync = now_ms + S_SYNC_INTERVAL;
    int rc = self->sync_fn (self->env, 1);
    if (rc) {
        //  Still owed: the next tick tries again.
        zsys_error ("%s: background sync of %s failed (%s): check the disk; trying again "
                    "in %d ms",
                    self->name, self->dir, mdb_strerror (rc), S_SYNC_INTERVAL);
        return -1;
    }
    self->owed = false;
    return 1;
}

uint64_t zim_db_due_ms (zim_db_t *self)
{
    return self->owed ? self->next_sync : UINT64_MAX;
}

int zim_db_sync (zim_db_t *self)
{
    int rc = self->sync_fn (self->env, 1);
    if (rc) {
        zsys_error ("%s: final sync of %s failed (%s): check the disk", self->name, self->dir,
                    mdb_strerror (rc));
        return -1;
    }
    self->owed = false;
    return 0;
}

char *zim_db_test_dir (void)
{
    char *dir = zim_strdup ("./selftest-store-XXXXXX");
    char *made = mkdtemp (dir);
    assert (made);
    return dir;
}

void zim_db_test_rmtree (const char *path)
{
    zdir_t *dir = zdir_new (path, NULL);
    if (dir) {
        zdir_remove (dir, true);
        zdir_destroy (&dir);
    }
    assert (!zsys_file_exists (path));
}

zim_db_t *zim_db_test_new (char **dir, uint64_t map_size)
{
    *dir = zim_db_test_dir ();
    zim_db_t *self = zim_db_new ("test", *dir, ZIM_FSYNC_NONE, map_size);
    assert (self);
    return self;
}

void zim_db_test_destroy (zim_db_t **self_p, char **dir)
{
    zim_db_destroy (self_p);
    zim_db_test_rmtree (*dir);
    zim_free (dir);
}

//  -------------------------------------------------------------------------
//  Selftest

//  A sync that fails like a broken disk.
static int s_test_sync_fails (MDB_env *env, int force)
{
    (void)env;
    (void)force;
    return EIO;
}

void zim_db_test (bool verbose)
{
    char *top = zim_db_test_dir ();
    char path[300];
    snprintf (path, sizeof path, "%s/nested/db", top);

    //  Opening makes the parents, the databases and the version, and syncs
    //  the directory and its parent.
    zim_db_t *db = zim_db_new ("test", path, ZIM_FSYNC_NONE, 1 << 20);
    assert (db);
    assert (db->dir_syncs == 2);
    assert (zim_db_last_id (db) == 0 && zim_db_map_size (db) == 1 << 20);
    assert (zim_db_map_used (db) > 0 && zim_db_sync_mode (db) == ZIM_FSYNC_NONE);
    const zim_dbs_t *dbs = zim_db_dbs (db);
    MDB_txn *txn;
    assert (mdb_txn_begin (zim_db_env (db), NULL, 0, &txn) == 0);
    uint8_t idb[8];
    zim_be64_put (idb, 42);
    MDB_val k = {8, idb}, v = {1, "x"};
    assert (mdb_put (txn, dbs->msgs, &k, &v, 0) == 0);
    assert (mdb_txn_commit (txn) == 0);
    zim_db_wrote (db);

    //  sync = none: a failed background sync stays owed and is tried again
    //  a second later until one succeeds.
    uint64_t now = zim_mono_us () / 1000;
    assert (zim_db_due_ms (db) != UINT64_MAX);
    db->sync_fn = s_test_sync_fails;
    assert (zim_db_tick (db, now + 1000) == -1);
    assert (zim_db_due_ms (db) == now + 2000);
    assert (zim_db_tick (db, now + 1500) == 0); //  not yet due again
    assert (zim_db_tick (db, now + 2000) == -1);
    db->sync_fn = mdb_env_sync;
    assert (zim_db_tick (db, now + 3000) == 1);
    assert (zim_db_due_ms (db) == UINT64_MAX && zim_db_tick (db, now + 9000) == 0);
    db->sync_fn = s_test_sync_fails;
    assert (zim_db_sync (db) == -1);
    db->sync_fn = mdb_env_sync;
    assert (zim_db_sync (db) == 0);

    //  The read transaction is reused; growing the map drops it.
    int rc;
    MDB_txn *rtxn = zim_db_read_begin (db, &rc);
    assert (rtxn && rc == 0);
    assert (mdb_get (rtxn, dbs->msgs, &k, &v) == 0 && v.mv_size == 1);
    zim_db_read_end (db);
    assert (zim_db_grow (db) == 0 && zim_db_map_size (db) == 2 << 20);
    rtxn = zim_db_read_begin (db, &rc);
    assert (rtxn && rc == 0);
    zim_db_read_end (db);
    zim_db_destroy (&db);
    zim_db_destroy (&db);

    //  Reopened: the greatest message id is known; batch syncs nothing here.
    db = zim_db_new ("test", path, ZIM_FSYNC_BATCH, 1 << 20);
    assert (db && zim_db_last_id (db) == 42);
    zim_db_wrote (db);
    assert (zim_db_due_ms (db) == UINT64_MAX);
    zim_db_destroy (&db);

    //  Another layout version, a file in the way: refused, logged.
    MDB_env *env;
    assert (mdb_env_create (&env) == 0 && mdb_env_set_maxdbs (env, 8) == 0);
    assert (mdb_env_open (env, path, MDB_NOTLS, 0640) == 0);
    MDB_dbi meta;
    assert (mdb_txn_begin (env, NULL, 0, &txn) == 0 && mdb_dbi_open (txn, "meta", 0, &meta) == 0);
    zim_be64_put (idb, 99);
    k = (MDB_val){7, "version"};
    v = (MDB_val){8, idb};
    assert (mdb_put (txn, meta, &k, &v, 0) == 0 && mdb_txn_commit (txn) == 0);
    mdb_env_close (env);
    assert (zim_db_new ("test", path, ZIM_FSYNC_BATCH, 1 << 20) == NULL);
    snprintf (path, sizeof path, "%s/file", top);
    FILE *file = fopen (path, "w");
    assert (file);
    fclose (file);
    snprintf (path, sizeof path, "%s/file/db", top);
    assert (zim_db_new ("test", path, ZIM_FSYNC_BATCH, 1 << 20) == NULL);

    zim_fsync_t mode;
    assert (zim_fsync_parse ("always", &mode) == 0 && mode == ZIM_FSYNC_ALWAYS);
    assert (zim_fsync_parse ("sometimes", &mode) == -1);
    assert (streq (zim_fsync_name (ZIM_FSYNC_NONE), "none"));
    zim_db_test_rmtree (top);
    free (top);
    if (verbose)
        zsys_info ("db: open, version, growth and background sync behave");
}
