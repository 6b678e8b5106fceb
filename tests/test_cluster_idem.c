/*  test_cluster_idem.c: retries with a cid in a cluster, where a message
    between users on two store shards is written twice: the sender's shard
    first, which fixes its id, then the recipient's. A cid reused for
    another recipient or body is refused by the sender's shard (the first
    write) and never reaches the second recipient's shard (issue 10 #2); a
    true retry completes and answers from what is stored. When the second
    write fails, the recipient's inbox still takes the sender's messages in
    the order the sender's inbox did, whatever order the client retries
    them in (issue 10, "smaller ones"). zim-router, two zim-store shards, a
    zim-broker and a zim-gateway as separate processes, spoken to over real
    WebSockets; the recipient's shard is killed and restarted.
*/
#include "msg/zim_msg.h"
#include "tests/zim_testkit.h"

#include <check.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static tk_cluster_t cl;
static const char *const s_shard_names[] = {"store-1", "store-2"};

static void s_setup (void)
{
    ck_assert_int_eq (tk_cluster_start (&cl, 2, 1, 1), 0);
}

static void s_teardown (void)
{
    int problems = tk_cluster_stop (&cl);
    tk_cluster_cleanup (&cl);
    ck_assert_msg (problems == 0, "%d node(s) did not stop cleanly or logged a sanitizer report",
                   problems);
}

//  The shard (0 or 1) of a user of the demo app.
static int s_shard_of (const char *uid)
{
    zim_ring_t *ring = zim_ring_new (s_shard_names, 2);
    int shard = zim_ring_lookup (ring, zim_str ("demo"), zim_str (uid));
    zim_ring_destroy (&ring);
    return shard;
}

//  A user name starting with prefix that lives on shard.
static void s_pick (const char *prefix, int shard, char *uid, size_t size)
{
    for (int i = 0; i < 1000; i++) {
        snprintf (uid, size, "%s%d", prefix, i);
        if (s_shard_of (uid) == shard)
            return;
    }
    ck_abort_msg ("no user on shard %d", shard);
}

static tk_client_t *s_login (const char *uid)
{
    tk_node_t *gw = tk_cluster_node (&cl, "gw-1");
    tk_client_t *c = tk_login (&gw->srv, uid, "phone");
    ck_assert_ptr_nonnull (c);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "auth_ok", 5000, &f), 0);
    return c;
}

//  True if a shard's LMDB holds a message record under id (mdb_dump from
//  lmdb-utils prints each key of the msgs database as a hex line).
static bool s_shard_has (int shard, uint64_t id)
{
    char cmd[600], key[32], line[8192];
    snprintf (cmd, sizeof cmd, "mdb_dump -s msgs '%s/%s' 2>&1", cl.dir, s_shard_names[shard]);
    snprintf (key, sizeof key, " %016" PRIx64 "\n", id);
    FILE *p = popen (cmd, "r");
    ck_assert_ptr_nonnull (p);
    bool found = false, data = false;
    while (fgets (line, sizeof line, p)) {
        data = data || strncmp (line, "HEADER=END", 10) == 0;
        found = found || strcmp (line, key) == 0;
    }
    int rc = pclose (p);
    ck_assert_msg (data && rc == 0, "'%s' failed (exit %d): mdb_dump from lmdb-utils is needed",
                   cmd, rc);
    return found;
}

//  mdb_dump, another process, sees a shard's LMDB file as of its last
//  checkpoint (store/checkpoint_ms, 50 ms; the write-ahead log holds the
//  rest). Waits (up to 10 s) for id to be there.
static bool s_shard_gets (int shard, uint64_t id)
{
    for (int i = 0; i < 200; i++) {
        if (s_shard_has (shard, id))
            return true;
        zclock_sleep (50);
    }
    return false;
}

//  Waits for the checkpoints of anything written so far, before a check
//  that something is not there (a checkpoint follows a write by 50 ms).
static void s_settle (void)
{
    zclock_sleep (400);
}

//  Waits (up to 5 s) for the router to know n connections.
static void s_wait_routes (int n)
{
    for (int i = 0; i < 100; i++) {
        char *json = tk_cluster_status (&cl, tk_cluster_node (&cl, "router-1"));
        const char *at = json ? strstr (json, "\"routes\":") : NULL;
        bool ok = at && atoi (at + 9) >= n;
        free (json);
        if (ok)
            return;
        usleep (50000);
    }
    ck_abort_msg ("the router never had %d routes", n);
}

START_TEST (test_reused_cid_never_reaches_the_second_shard)
{
    char alice[32], bob[32], carol[32], dave[32];
    s_pick ("alice", 0, alice, sizeof alice);
    s_pick ("bob", 0, bob, sizeof bob);
    s_pick ("carol", 1, carol, sizeof carol);
    s_pick ("dave", 1, dave, sizeof dave);
    tk_client_t *a = s_login (alice), *b = s_login (bob), *c = s_login (carol);
    tk_client_t *d = s_login (dave);
    s_wait_routes (4);
    tk_frame_t f;

    //  x2 to bob, on alice's shard: acked, delivered, stored there only.
    ck_assert_int_eq (tk_send_text (a, bob, "x2", "for bob"), 0);
    ck_assert_int_eq (tk_expect (a, "ack", 5000, &f), 0);
    uint64_t id = f.id;
    ck_assert_int_eq (tk_expect (b, "msg", 5000, &f), 0);
    ck_assert_uint_eq (f.id, id);
    ck_assert (s_shard_gets (0, id));
    s_settle ();
    ck_assert (!s_shard_has (1, id));

    //  x2 again to carol with another body: the sender's shard refuses it
    //  (4009), so the second write never runs.
    ck_assert_int_eq (tk_send_text (a, carol, "x2", "for carol"), 0);
    ck_assert_int_eq (tk_recv (a, 5000, &f), 0);
    ck_assert_msg (strcmp (f.op, "error") == 0 && f.code == ZIM_ERR_CID_CONFLICT,
                   "a reused cid got %s %lld, not error 4009", f.op, (long long)f.code);
    ck_assert_str_eq (f.cid, "x2");
    ck_assert_msg (tk_recv (c, 500, &f) == -1, "carol got %s seq %llu", f.op,
                   (unsigned long long)f.seq);
    //  carol's shard has nothing under x2's id: her inbox is empty, and
    //  her next message is her seq 1.
    s_settle ();
    ck_assert_msg (!s_shard_has (1, id), "the reused send was stored on carol's shard");
    ck_assert_int_eq (tk_sync (c, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (c, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 0);
    ck_assert_int_eq (tk_send_text (d, carol, "d1", "from dave"), 0);
    ck_assert_int_eq (tk_expect (d, "ack", 5000, &f), 0);
    ck_assert_int_eq (tk_expect (c, "msg", 5000, &f), 0);
    ck_assert_uint_eq (f.seq, 1);
    ck_assert_str_eq (f.body, "from dave");

    //  A true retry of x2 still gets the original ack and bob's copy again.
    ck_assert_int_eq (tk_send_text (a, bob, "x2", "for bob"), 0);
    ck_assert_int_eq (tk_expect (a, "ack", 5000, &f), 0);
    ck_assert_uint_eq (f.id, id);
    ck_assert_int_eq (tk_expect (b, "msg", 5000, &f), 0);
    ck_assert_uint_eq (f.id, id);
    ck_assert_str_eq (f.body, "for bob");
    tk_close (&a);
    tk_close (&b);
    tk_close (&c);
    tk_close (&d);
}
END_TEST

//  Sends once and returns the answer (ack or error) to it.
static tk_frame_t s_try (tk_client_t *c, const char *to, const char *cid)
{
    tk_frame_t f;
    ck_assert_int_eq (tk_send_text (c, to, cid, cid), 0);
    while (true) {
        ck_assert_msg (tk_recv (c, 10000, &f) == 0, "no answer to %s", cid);
        if ((strcmp (f.op, "ack") == 0 || strcmp (f.op, "error") == 0) && strcmp (f.cid, cid) == 0)
            return f;
    }
}

//  Sends with the same cid until acked (a client's retries), up to 30 s.
static void s_until_acked (tk_client_t *c, const char *to, const char *cid)
{
    for (int i = 0; i < 60; i++) {
        tk_frame_t f = s_try (c, to, cid);
        if (strcmp (f.op, "ack") == 0)
            return;
        ck_assert_msg (f.code == ZIM_ERR_UNAVAILABLE || f.code == ZIM_ERR_TIMEOUT, "%s: error %lld",
                       cid, (long long)f.code);
        usleep (500000);
    }
    ck_abort_msg ("%s was never acked", cid);
}

//  The bodies of c's inbox, in seq order, joined with spaces.
static void s_inbox (tk_client_t *c, char *out, size_t size)
{
    tk_frame_t f;
    ck_assert_int_eq (tk_sync (c, 0, 100, 99), 0);
    while (true) {
        ck_assert_int_eq (tk_recv (c, 5000, &f), 0);
        if (strcmp (f.op, "page") == 0 && f.rid == 99)
            break;
    }
    *out = 0;
    for (uint32_t i = 0; i < f.nmsgs && i < 64; i++) {
        strncat (out, f.bodies[i], size - strlen (out) - 2);
        strncat (out, " ", size - strlen (out) - 1);
    }
}

START_TEST (test_failed_second_write_keeps_recipient_order)
{
    char alice[32], bob[32];
    s_pick ("alice", 0, alice, sizeof alice);
    s_pick ("bob", 1, bob, sizeof bob);
    tk_client_t *a = s_login (alice), *b = s_login (bob);
    s_until_acked (a, bob, "m1");

    //  bob's shard dies: m2 is stored in alice's inbox, but not in bob's.
    tk_node_t *store = tk_cluster_node (&cl, s_shard_names[1]);
    tk_node_stop (store, SIGKILL);
    usleep (500000);
    tk_frame_t f = s_try (a, bob, "m2");
    ck_assert_str_eq (f.op, "error");
    f = s_try (a, bob, "m3");
    ck_assert_str_eq (f.op, "error");

    //  It comes back; the client retries m3 before m2.
    ck_assert_int_eq (tk_node_start (&cl, store), 0);
    s_until_acked (a, bob, "m3");
    s_until_acked (a, bob, "m2");

    char mine[512], theirs[512];
    s_inbox (a, mine, sizeof mine);
    s_inbox (b, theirs, sizeof theirs);
    ck_assert_str_eq (mine, "m1 m2 m3 ");
    ck_assert_msg (strcmp (theirs, mine) == 0, "alice's inbox is '%s', bob's '%s'", mine, theirs);
    tk_close (&a);
    tk_close (&b);
}
END_TEST

static Suite *s_suite (void)
{
    Suite *s = suite_create ("cluster_idem");
    TCase *tc = tcase_create ("cluster_idem");
    tcase_set_timeout (tc, 120);
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_reused_cid_never_reaches_the_second_shard);
    tcase_add_test (tc, test_failed_second_write_keeps_recipient_order);
    suite_add_tcase (s, tc);
    return s;
}

int main (void)
{
    SRunner *sr = srunner_create (s_suite ());
    srunner_set_fork_status (sr, CK_FORK);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
