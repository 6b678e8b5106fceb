/*  test_cluster_order.c: order across two store shards when a second write
    fails (issue 10, "smaller ones"). A message from a user on one shard to
    a user on another is written on the sender's shard, then on the
    recipient's. When the second write fails, the recipient's inbox must
    still take the sender's messages in the order the sender's inbox did,
    whatever order the client retries them in. zim-router, two zim-store
    shards, a zim-broker and a zim-gateway as separate processes, spoken to
    over real WebSockets; the recipient's shard is killed and restarted.
*/
#include "msg/zim_msg.h"
#include "tests/zim_testkit.h"

#include <check.h>
#include <signal.h>
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

//  A user name starting with prefix that lives on shard (0 or 1).
static void s_pick (const char *prefix, int shard, char *uid, size_t size)
{
    zim_ring_t *ring = zim_ring_new (s_shard_names, 2);
    for (int i = 0; i < 1000; i++) {
        snprintf (uid, size, "%s%d", prefix, i);
        if (zim_ring_lookup (ring, zim_str ("demo"), zim_str (uid)) == shard)
            break;
    }
    zim_ring_destroy (&ring);
}

static tk_client_t *s_login (const char *uid)
{
    tk_client_t *c = tk_login (&tk_cluster_node (&cl, "gw-1")->srv, uid, "phone");
    ck_assert_ptr_nonnull (c);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "auth_ok", 5000, &f), 0);
    return c;
}

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
    Suite *s = suite_create ("cluster_order");
    TCase *tc = tcase_create ("cluster_order");
    tcase_set_timeout (tc, 120);
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
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
