/*  zim_groups_int.h: what the parts of zim_groups share (zim_groups.c:
    records, members, placement; zim_gpost.c: GPOST, GFAN, GDONE;
    zim_gadmin.c: GADMIN and the membership events; zim_gread.c: GREAD).
    Private to store/zim_g*.c: nothing else includes it.
*/
#ifndef ZIM_GROUPS_INT_H_INCLUDED
#define ZIM_GROUPS_INT_H_INCLUDED

#include "store/zim_groups.h"
#include "store/zim_key.h"
#include "store/zim_msgrec.h"
#include "msg/zim_ring.h"

#define ZIM_GROUPS_READ_LIMIT 100      //  csync messages per page by default
#define ZIM_GROUPS_READ_LIMIT_MAX 1000 //  and at most
#define ZIM_GROUPS_LIST_MAX 1000       //  groups in a list answer, at most
#define ZIM_GROUPS_FLAG_HISTORY 1      //  flags: new members read the earlier log
#define ZIM_GROUPS_READERS_MAX 200     //  read counts for groups up to this size

//  A group's record (the value of groups).
typedef struct {
    uint64_t kind;    //  ZIM_GROUP_GROUP or _CHANNEL
    uint64_t flags;   //  ZIM_GROUPS_FLAG_*
    uint64_t gseq;    //  the head of its log
    uint64_t members; //  how many
} zim_grec_t;

struct _zim_groups_t {
    zim_db_t *db;               //  the environment (borrowed)
    const zim_dbs_t *dbs;       //  its databases
    zim_inbox_t *inbox;         //  member inbox writes (borrowed)
    zim_shell_t *shell;         //  warnings, or NULL (borrowed)
    zim_groups_limits_t limits; //  the store's settings, or the defaults
    uint64_t def_group;         //  the defaults
    uint64_t def_channel;       //
    uint64_t def_behind;        //
    char (*names)[ZIM_ID_MAX];  //  member uids of one post, copied
    zim_str_t *members;         //  views of them
    uint64_t *seqs;             //  their new seqs
    size_t alloc;               //  room in the three
    zim_wr_t items;             //  a read's entries
    zim_wr_t list;              //  a job's remote uids, comma-separated
    char *ring_names;           //  the shard names the ring was made of
    zim_ring_t *ring;           //  placement of members on shards
    char **shard_names;         //  the ring's names, in its order
    size_t nshards;             //  how many
    size_t nshards_tmp;         //  uids collected by s_collect
    char shard[ZIM_ID_MAX + 1]; //  this shard's name, as the last GPOST said ("": none yet)
    zim_wr_t joins;             //  uids a MEMBERS op added, comma-separated (its event)
    zim_wr_t leaves;            //  uids it removed
    zim_wr_t entries;           //  a post's inbox entries (gmembers), for gfan
    uint64_t event_ms;          //  event id generator: millisecond of the last id
    uint64_t event_seq;         //  and the counter within it
    uint64_t events;            //  membership events written
    uint64_t jobs;              //  fan-out jobs recorded (members on other shards)
    uint64_t jobs_done;         //  jobs finished
    uint64_t posts;             //  group messages stored
    uint64_t fanout;            //  member inbox entries written
    uint64_t refused;           //  posts refused (no group, not a member, conflict)
};

//  The group's key: [app][group].
void zim_groups_gkey (zim_key_t *k, zim_str_t app, zim_str_t group);
//  Reads the group's record; 0, MDB_NOTFOUND or an LMDB error.
int zim_groups_rec_get (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        zim_grec_t *g);
//  Writes the group's record; 0 or an LMDB error.
int zim_groups_rec_put (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        const zim_grec_t *g);
//  The member's join point into *joined; 0, MDB_NOTFOUND or an LMDB error.
int zim_groups_member_get (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                           zim_str_t uid, uint64_t *joined);
//  Adds (joined set) or removes (joined NULL) a member, by group and by
//  user; *changed tells whether it was not so already.
int zim_groups_member_set (const zim_dbs_t *dbs, MDB_txn *txn, zim_str_t app, zim_str_t group,
                           zim_str_t uid, const uint64_t *joined, bool *changed);
//  "group" or "channel".
const char *zim_groups_kind_name (uint64_t kind);
//  Room for n members in self->names, members and seqs.
void zim_groups_room (zim_groups_t *self, size_t n);
//  Copies the group's members into self->members; *n gets how many.
int zim_groups_members (zim_groups_t *self, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        size_t expect, size_t *n);
//  The ring over a comma-separated list of shard names (kept while the
//  list is the same); NULL for an empty list.
zim_ring_t *zim_groups_ring (zim_groups_t *self, zim_str_t names);
//  True if uid lives on the shard called shard by the ring (or there is
//  no ring: one shard).
bool zim_groups_local (zim_groups_t *self, zim_ring_t *ring, zim_str_t app, zim_str_t uid,
                       zim_str_t shard);
//  A zim_groups_each callback: appends uid to self->names and
//  self->members[self->nshards_tmp++] (views fixed by the caller, once
//  the names stopped moving). Returns 0.
int zim_groups_collect (void *arg, zim_str_t uid);
//  The message at gseq of the group's log: its id and record (views valid
//  until the next write in txn). 0, MDB_NOTFOUND (no entry, or its record
//  is gone or corrupt: purged by retention) or an LMDB error.
int zim_groups_log_get (zim_groups_t *self, MDB_txn *txn, zim_str_t app, zim_str_t group,
                        uint64_t gseq, uint64_t *id, zim_msgrec_t *rec);
//  Places self->members[0..n) on shards: those of this shard (shard, by
//  ring; all without one) moved first, the others' uids comma-separated
//  into self->list. Returns how many are local.
size_t zim_groups_place (zim_groups_t *self, zim_ring_t *ring, zim_str_t app, zim_str_t shard,
                         size_t n);
//  After a message (id) took gseq and its local members' inbox entries
//  (self->members and seqs [0..nlocal), placed by zim_groups_place): the
//  list of those entries, the job for the other n - nlocal, the log entry,
//  and the group's record g with its new head. 0 or an LMDB error.
int zim_groups_logged (zim_groups_t *self, MDB_txn *txn, zim_str_t app, zim_str_t group,
                       zim_grec_t *g, uint64_t gseq, uint64_t id, size_t nlocal, size_t n);
//  Keeps the inbox entries a group message (id) took on this shard:
//  members[0..n) with seqs, as gmembers in gfan (retention finds them
//  there, zim_retention.c). 0 or an LMDB error.
int zim_groups_entries_put (zim_groups_t *self, MDB_txn *txn, uint64_t id, const zim_str_t *members,
                            const uint64_t *seqs, size_t n);
//  Calls fn for each uid of a comma-separated list; stops at the first
//  error. Returns 0, ZIM_EVALUE for an entry that is not a uid, or fn's.
int zim_groups_each (zim_str_t list, int (*fn) (void *, zim_str_t), void *arg);

//  The answers (zim_gpost.c, zim_gread.c): reset out, then the frame.
void zim_groups_posted (zim_wr_t *out, uint64_t req, int64_t status, uint64_t id, uint64_t ts,
                        uint64_t seq, uint64_t gseq, uint64_t kind, uint32_t n);
void zim_groups_fanned (zim_wr_t *out, uint64_t req, int64_t status, uint32_t n);
void zim_groups_read_r (zim_wr_t *out, uint64_t req, int64_t status, bool more, bool reset,
                        const zim_wr_t *items, uint64_t count, uint64_t kind);

//  The ops, in txn (see zim_groups.h); 0 or an LMDB error.
int zim_groups_post (zim_groups_t *self, MDB_txn *txn, const zim_gpost_t *m, zim_wr_t *out,
                     bool *wrote);
int zim_groups_fan (zim_groups_t *self, MDB_txn *txn, const zim_gfanout_t *m, zim_wr_t *out,
                    bool *wrote);
int zim_groups_done (zim_groups_t *self, MDB_txn *txn, const zim_gdone_t *m, bool *wrote);
//  Writes the membership events of the MEMBERS op m (self->joins,
//  self->leaves) in txn, after the op's nested transaction committed;
//  *gseq gets the group's head. 0 or an LMDB error.
int zim_groups_events (zim_groups_t *self, MDB_txn *txn, const zim_gadmin_t *m, uint64_t *gseq);
int zim_groups_admin (zim_groups_t *self, MDB_txn *txn, const zim_gadmin_t *m, zim_wr_t *out,
                      bool *wrote);

#endif
