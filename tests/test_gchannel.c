/*  test_gchannel.c: black-box tests of channels and group events against
    a real zim-server process, over real WebSockets and its admin endpoint:
    channels (csync from the join on, the too-far-behind answer with
    reset), joins and leaves as events in the log and the inboxes with
    history_for_new off and on for both kinds, a channel's live messages
    (an online member gets them in the channel's room after its csync, an
    offline one by csync, a removed one no more). Groups: tests/test_groups.c.
*/
#include "msg/zim_msg.h"
#include "tests/zim_groupkit.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

static void s_setup (void)
{
    gk_start ("tk-gchannel.cfg");
}

//  Sends {"op":"csync","group":group,"since":since,"limit":limit,"rid":rid}.
static void s_csync (tk_client_t *c, const char *group, uint64_t since, uint64_t limit,
                     uint64_t rid)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 5);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "csync");
    zim_wr_cstr (&wr, "group");
    zim_wr_cstr (&wr, group);
    zim_wr_cstr (&wr, "since");
    zim_wr_uint (&wr, since);
    zim_wr_cstr (&wr, "limit");
    zim_wr_uint (&wr, limit);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, rid);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

START_TEST (test_channel_sync_and_reset)
{
    char out[4096];
    ck_assert_int_eq (
        gk_admin (out, sizeof out, "create", "demo", "news", "channel", "hana,ivan", NULL), 0);
    tk_client_t *hana = tk_login_ok (&gk_srv, "hana", "phone");
    tk_client_t *ivan = tk_login_ok (&gk_srv, "ivan", "phone");
    tk_frame_t f;
    //  30 posts: stored once, acked with the gseq (no inbox seq).
    for (int i = 0; i < 30; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "n%d", i);
        snprintf (body, sizeof body, "news %d", i);
        gk_gsend_ack (hana, "news", cid, body, &f);
        gk_gfields_t g;
        gk_fields (&f, &g);
        ck_assert_uint_eq (g.gseq, (uint64_t)i + 1);
        ck_assert_uint_eq (f.seq, 0);
    }
    //  No copy in the inbox: ivan's sync is empty.
    ck_assert_int_eq (tk_sync (ivan, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (ivan, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 0);
    //  15 behind: the page after gseq 15, in order, no reset.
    s_csync (ivan, "news", 15, 100, 2);
    ck_assert_int_eq (tk_expect (ivan, "page", 10000, &f), 0);
    gk_gfields_t g;
    gk_fields (&f, &g);
    ck_assert_uint_eq (f.rid, 2);
    ck_assert_uint_eq (f.nmsgs, 15);
    ck_assert (!g.reset && !f.more);
    ck_assert_str_eq (f.bodies[0], "news 15");
    ck_assert_str_eq (f.bodies[14], "news 29");
    //  A page at a time: more.
    s_csync (ivan, "news", 15, 10, 3);
    ck_assert_int_eq (tk_expect (ivan, "page", 10000, &f), 0);
    ck_assert (f.nmsgs == 10 && f.more);
    //  30 behind (more than csync_max_behind 20): the newest page, reset.
    s_csync (ivan, "news", 0, 5, 4);
    ck_assert_int_eq (tk_expect (ivan, "page", 10000, &f), 0);
    gk_fields (&f, &g);
    ck_assert (g.reset);
    ck_assert_uint_eq (f.nmsgs, 5);
    ck_assert_str_eq (f.bodies[0], "news 25");
    //  A newcomer reads from its join on: its join event, then what follows.
    ck_assert_int_eq (gk_admin (out, sizeof out, "members", "demo", "news", "jon", "-", NULL), 0);
    tk_client_t *jon = tk_login_ok (&gk_srv, "jon", "phone");
    s_csync (jon, "news", 0, 100, 5);
    ck_assert_int_eq (tk_expect (jon, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    gk_gsend_ack (hana, "news", "n30", "news 30", &f);
    gk_fields (&f, &g);
    ck_assert_uint_eq (g.gseq, 32); //  31: jon's join
    s_csync (jon, "news", 0, 100, 6);
    ck_assert_int_eq (tk_expect (jon, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 2);
    ck_assert_str_eq (f.bodies[1], "news 30");
    //  A non-member, a missing channel, a group: errors naming the rid.
    tk_client_t *kai = tk_login_ok (&gk_srv, "kai", "phone");
    s_csync (kai, "news", 0, 100, 7);
    ck_assert_int_eq (tk_expect (kai, "error", 10000, &f), 0);
    ck_assert (f.code == ZIM_ERR_NOT_MEMBER && f.rid == 7);
    s_csync (kai, "nothing", 0, 100, 8);
    ck_assert_int_eq (tk_expect (kai, "error", 10000, &f), 0);
    ck_assert (f.code == ZIM_ERR_NO_GROUP && f.rid == 8);
    ck_assert_int_eq (gk_admin (out, sizeof out, "create", "demo", "chat", "group", "kai", NULL),
                      0);
    s_csync (kai, "chat", 0, 100, 9); //  a group's log reads too (empty yet)
    ck_assert_int_eq (tk_expect (kai, "page", 10000, &f), 0);
    ck_assert (f.nmsgs == 0 && f.rid == 9);
    //  A group upgraded to a channel: its messages from then on are read
    //  with csync; never back.
    ck_assert_int_eq (gk_admin (out, sizeof out, "upgrade", "demo", "chat", NULL, NULL, NULL), 0);
    gk_gsend_ack (kai, "chat", "c1", "now a channel", &f);
    gk_fields (&f, &g);
    ck_assert_uint_eq (g.gseq, 1);
    s_csync (kai, "chat", 0, 100, 10);
    ck_assert_int_eq (tk_expect (kai, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    tk_close (&hana);
    tk_close (&ivan);
    tk_close (&jon);
    tk_close (&kai);
}
END_TEST

START_TEST (test_group_events_and_history)
{
    char out[4096], users[256];
    tk_frame_t f;
    //  A group without history_for_new: amy and ben talk, then ben leaves
    //  and cat joins (one admin op: the leave, then the join).
    ck_assert_int_eq (
        gk_admin (out, sizeof out, "create", "demo", "club", "group", "amy,ben", NULL), 0);
    tk_client_t *amy = tk_login_ok (&gk_srv, "amy", "phone");
    gk_gsend_ack (amy, "club", "a1", "one", &f);
    gk_gsend_ack (amy, "club", "a2", "two", &f);
    ck_assert_int_eq (gk_admin (out, sizeof out, "members", "demo", "club", "cat", "ben", NULL), 0);
    ck_assert_msg (strstr (out, "\"gseq\":4"), "%s", out);
    //  amy's inbox: the two messages, the leave (3) and the join (4).
    ck_assert_int_eq (tk_sync (amy, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (amy, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 4);
    ck_assert_int_eq (gk_events (&f, NULL, users, sizeof users), 2);
    ck_assert_int_eq (gk_events (&f, "leave", users, sizeof users), 1);
    ck_assert (strstr (users, "ben"));
    ck_assert_int_eq (gk_events (&f, "join", users, sizeof users), 1);
    ck_assert (strstr (users, "cat"));
    ck_assert_uint_eq (f.seqs[3], 4);
    //  ben learns he left: his inbox ends with the leave.
    tk_client_t *ben = tk_login_ok (&gk_srv, "ben", "phone");
    ck_assert_int_eq (tk_sync (ben, 0, 100, 2), 0);
    ck_assert_int_eq (tk_expect (ben, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 3);
    ck_assert_int_eq (gk_events (&f, "leave", users, sizeof users), 1);
    ck_assert_int_eq (gk_events (&f, "join", users, sizeof users), 0);
    //  cat: its join, nothing from before, in the inbox and in the log.
    tk_client_t *cat = tk_login_ok (&gk_srv, "cat", "phone");
    ck_assert_int_eq (tk_sync (cat, 0, 100, 3), 0);
    ck_assert_int_eq (tk_expect (cat, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    ck_assert_int_eq (gk_events (&f, "join", users, sizeof users), 1);
    s_csync (cat, "club", 0, 100, 4);
    ck_assert_int_eq (tk_expect (cat, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    ck_assert_int_eq (gk_events (&f, "join", users, sizeof users), 1);
    //  The next message reaches cat live with seq 2, gseq 5.
    gk_gsend_ack (amy, "club", "a3", "three", &f);
    gk_expect_msg (cat, "amy", "club", 2, "three");

    //  With history_for_new: the newcomer reads the log from the start
    //  (a group and a channel alike).
    const char *kinds[] = {"group", "channel"};
    for (int k = 0; k < 2; k++) {
        char name[16], cid[16];
        snprintf (name, sizeof name, "open%d", k);
        snprintf (cid, sizeof cid, "h%d", k);
        ck_assert_int_eq (
            gk_admin (out, sizeof out, "create", "demo", name, kinds[k], "amy", "history"), 0);
        gk_gsend_ack (amy, name, cid, "before", &f);
        ck_assert_int_eq (gk_admin (out, sizeof out, "members", "demo", name, "dov", "-", NULL), 0);
        tk_client_t *dov = tk_login_ok (&gk_srv, "dov", "phone");
        s_csync (dov, name, 0, 100, 5);
        ck_assert_int_eq (tk_expect (dov, "page", 10000, &f), 0);
        ck_assert_uint_eq (f.nmsgs, 2);
        ck_assert_str_eq (f.bodies[0], "before");
        ck_assert_int_eq (gk_events (&f, "join", users, sizeof users), 1);
        tk_close (&dov);
    }
    tk_close (&amy);
    tk_close (&ben);
    tk_close (&cat);
}
END_TEST

//  Expects a channel's live message on c: a `room` frame of room
//  "g:GROUP" whose body is the message map (gseq and a string body).
static void s_expect_live (tk_client_t *c, const char *group, uint64_t gseq, const char *body)
{
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "room", 10000, &f), 0);
    zim_rd_t rd, brd;
    zim_sframe_t m;
    zim_sitem_t it;
    const char *why;
    char room[80];
    zim_rd_init (&rd, f.raw, f.raw_len);
    ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
    snprintf (room, sizeof room, "g:%s", group);
    ck_assert (zim_str_eq (m.room, room));
    zim_rd_init (&brd, m.body.ptr, m.body.len);
    ck_assert_int_eq (zim_sitem_unpack (&brd, &it), 0);
    ck_assert (zim_str_eq (it.group, group) && zim_str_eq (it.conv, room) && it.gseq == gseq);
    zim_str_t text;
    zim_rd_init (&brd, it.body.ptr, it.body.len);
    ck_assert (zim_rd_str (&brd, &text) == 0 && zim_str_eq (text, body));
}

//  1 if frame f names room.
static int s_room_is (const tk_frame_t *f, const char *room)
{
    zim_rd_t rd;
    zim_sframe_t m;
    const char *why;
    zim_rd_init (&rd, f->raw, f->raw_len);
    ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
    return zim_str_eq (m.room, room) ? 1 : 0;
}

//  Sends {"op":"join","room":room,"rid":rid}.
static void s_join (tk_client_t *c, const char *room, uint64_t rid)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "join");
    zim_wr_cstr (&wr, "room");
    zim_wr_cstr (&wr, room);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, rid);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

START_TEST (test_channel_live)
{
    char out[4096];
    tk_frame_t f;
    ck_assert_int_eq (
        gk_admin (out, sizeof out, "create", "demo", "live", "channel", "lia,max,ned", NULL), 0);
    tk_client_t *lia = tk_login_ok (&gk_srv, "lia", "phone");
    tk_client_t *max = tk_login_ok (&gk_srv, "max", "phone");
    //  max reads the channel: his connections join its live room.
    s_csync (max, "live", 0, 100, 1);
    ck_assert_int_eq (tk_expect (max, "page", 10000, &f), 0);
    ck_assert_int_eq (tk_expect (max, "joined", 10000, &f), 0);
    ck_assert_int_eq (s_room_is (&f, "g:live"), 1);
    //  lia sends: max (online) gets it live, with its gseq; ned (offline)
    //  finds it with csync.
    gk_gsend_ack (lia, "live", "l1", "hello", &f);
    s_expect_live (max, "live", 1, "hello");
    tk_client_t *ned = tk_login_ok (&gk_srv, "ned", "phone");
    s_csync (ned, "live", 0, 100, 2);
    ck_assert_int_eq (tk_expect (ned, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    ck_assert_str_eq (f.bodies[0], "hello");
    ck_assert_int_eq (tk_expect (ned, "joined", 10000, &f), 0);
    //  Nobody joins or publishes in a channel's room by hand.
    tk_client_t *oz = tk_login_ok (&gk_srv, "oz", "phone");
    s_join (oz, "g:live", 3);
    ck_assert_int_eq (tk_expect (oz, "error", 10000, &f), 0);
    ck_assert (f.code == ZIM_ERR_ROOM_DENIED && f.rid == 3);
    //  A non-member's csync is refused and joins nothing.
    s_csync (oz, "live", 0, 100, 4);
    ck_assert_int_eq (tk_expect (oz, "error", 10000, &f), 0);
    ck_assert (f.code == ZIM_ERR_NOT_MEMBER && f.rid == 4);
    //  max is removed: his connections leave the room before the next
    //  message goes there; ned gets it, max does not.
    ck_assert_int_eq (gk_admin (out, sizeof out, "members", "demo", "live", "-", "max", NULL), 0);
    gk_gsend_ack (lia, "live", "l2", "after", &f);
    ck_assert_int_eq (tk_expect (max, "left", 10000, &f), 0);
    ck_assert_int_eq (s_room_is (&f, "g:live"), 1);
    s_expect_live (ned, "live", 3, "after"); //  2: max's leave
    ck_assert_int_eq (tk_expect (max, "room", 300, &f), -1);
    ck_assert_int_eq (tk_expect (oz, "room", 300, &f), -1);
    tk_close (&lia);
    tk_close (&max);
    tk_close (&ned);
    tk_close (&oz);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("gchannel");
    TCase *tc = tcase_create ("gchannel");
    tcase_set_timeout (tc, 240);
    tcase_add_checked_fixture (tc, s_setup, gk_teardown);
    tcase_add_test (tc, test_channel_sync_and_reset);
    tcase_add_test (tc, test_group_events_and_history);
    tcase_add_test (tc, test_channel_live);
    suite_add_tcase (s, tc);
    return tk_run (s);
}
