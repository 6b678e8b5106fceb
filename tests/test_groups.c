/*  test_groups.c: black-box tests of groups and channels against a real
    zim-server process, over real WebSockets and its admin endpoint: a
    group chat among three users with one offline (live copies with each
    member's own seq, the offline member's sync and push record), the
    refusals (not a member 4040, no group 4041, too large 4042, exists
    4043, to and group 4001, cid conflict 4009) and an idempotent retry,
    kill -9 of zim-server during fan-outs into a 500-member group (every
    member has each acked message exactly once, in one order, no gap),
    channels (csync from the join on, the too-far-behind answer with
    reset) and the groups list, joins and leaves as events in the log and
    the inboxes with history_for_new off and on for both kinds, a
    channel's live messages (an online member gets them in the channel's
    room after its csync, an offline one by csync, a removed one no more),
    and zimctl groups.
*/
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "msg/zim_ring.h"
#include "tests/zim_testkit.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MEMBERS 500 //  the big group: the sender and 499 others
#define S_SENDS 300   //  messages sent into it around the kill

static tk_server_t srv;

static void s_setup (void)
{
    const char *extra[] = {"-c", "tk-groups.cfg", NULL};
    FILE *cfg = fopen ("tk-groups.cfg", "w");
    ck_assert_ptr_nonnull (cfg);
    //  A channel reader more than 20 behind gets the newest page.
    fprintf (cfg, "store\n    csync_max_behind = 20\n");
    fclose (cfg);
    ck_assert_int_eq (tk_server_start (&srv, NULL, extra), 0);
}

//  Stops the server cleanly and counts sanitizer reports in its log (an
//  ASan+UBSan build says so in a line; LeakSanitizer at the clean exit).
static void s_teardown (void)
{
    tk_server_stop (&srv, SIGTERM);
    static const char *const reports[] = {"AddressSanitizer", "LeakSanitizer", "runtime error:"};
    int problems = 0;
    FILE *f = fopen (srv.log, "r");
    char line[1024];
    while (f && fgets (line, sizeof line, f))
        for (size_t r = 0; r < sizeof reports / sizeof reports[0]; r++)
            if (strstr (line, reports[r])) {
                fprintf (stderr, "%s: %s", srv.log, line);
                problems++;
            }
    if (f)
        fclose (f);
    tk_server_cleanup (&srv);
    ck_assert_msg (problems == 0, "zim-server logged %d sanitizer report(s)", problems);
}

static tk_client_t *s_login (const char *uid, const char *device)
{
    tk_client_t *c = tk_login (&srv, uid, device);
    ck_assert_ptr_nonnull (c);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "auth_ok", 5000, &f), 0);
    return c;
}

//  Runs the groups admin verb; returns its code, the answer into out.
static int s_admin (char *out, size_t size, const char *a0, const char *a1, const char *a2,
                    const char *a3, const char *a4, const char *a5)
{
    const char *args[] = {a0, a1, a2, a3, a4, a5, NULL};
    char *text = NULL;
    int code = zim_admin_call (srv.admin, srv.key, 10000, "groups", args, &text);
    if (out)
        snprintf (out, size, "%s", text ? text : "");
    free (text);
    return code;
}

//  Encodes {"op":"send","group":group,"cid":cid,"body":text} into wr.
static void s_enc_gsend (zim_wr_t *wr, const char *group, const char *cid, const char *text)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "send");
    zim_wr_cstr (wr, "group");
    zim_wr_cstr (wr, group);
    zim_wr_cstr (wr, "cid");
    zim_wr_cstr (wr, cid);
    zim_wr_cstr (wr, "body");
    zim_wr_cstr (wr, text);
}

static void s_gsend (tk_client_t *c, const char *group, const char *cid, const char *text)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    s_enc_gsend (&wr, group, cid, text);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

//  The group fields of a frame.
typedef struct {
    char group[72], conv[140];
    uint64_t gseq;
    bool reset;
    uint32_t ngroups;
} s_gfields_t;

static void s_fields (const tk_frame_t *f, s_gfields_t *g)
{
    zim_rd_t rd;
    zim_sframe_t m;
    const char *why;
    zim_rd_init (&rd, f->raw, f->raw_len);
    ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
    memset (g, 0, sizeof *g);
    zim_str_copy (m.group, g->group, sizeof g->group);
    zim_str_copy (m.conv, g->conv, sizeof g->conv);
    g->gseq = m.gseq;
    g->reset = m.reset;
    g->ngroups = m.ngroups;
}

//  Waits for the answer to a send: an ack or an error.
static void s_answer (tk_client_t *c, tk_frame_t *f)
{
    do
        ck_assert_int_eq (tk_recv (c, 10000, f), 0);
    while (strcmp (f->op, "ack") && strcmp (f->op, "error"));
}

//  Sends and expects an ack; returns it.
static void s_gsend_ack (tk_client_t *c, const char *group, const char *cid, const char *text,
                         tk_frame_t *f)
{
    s_gsend (c, group, cid, text);
    s_answer (c, f);
    ck_assert_msg (strcmp (f->op, "ack") == 0, "%s: error %lld %s", cid, (long long)f->code,
                   f->text);
    ck_assert_str_eq (f->cid, cid);
}

//  Sends and expects error code.
static void s_gsend_refused (tk_client_t *c, const char *group, const char *cid, const char *text,
                             int code)
{
    tk_frame_t f;
    s_gsend (c, group, cid, text);
    s_answer (c, &f);
    ck_assert_str_eq (f.op, "error");
    ck_assert_int_eq (f.code, code);
    ck_assert_str_eq (f.cid, cid);
}

//  Expects a group msg on c: from, group, seq and body.
static void s_expect_msg (tk_client_t *c, const char *from, const char *group, uint64_t seq,
                          const char *body)
{
    tk_frame_t f;
    s_gfields_t g;
    char conv[80];
    ck_assert_int_eq (tk_expect (c, "msg", 10000, &f), 0);
    s_fields (&f, &g);
    snprintf (conv, sizeof conv, "g:%s", group);
    ck_assert_str_eq (f.from, from);
    ck_assert_str_eq (f.to, group);
    ck_assert_str_eq (g.group, group);
    ck_assert_str_eq (g.conv, conv);
    ck_assert_uint_eq (f.seq, seq);
    ck_assert_str_eq (f.body, body);
}

START_TEST (test_group_chat_one_offline)
{
    char out[4096];
    ck_assert_int_eq (s_admin (out, sizeof out, "create", "demo", "team", "group",
                               "alice,bob,carol", NULL),
                      0);
    ck_assert (strstr (out, "\"added\":3"));
    tk_client_t *phone = s_login ("alice", "phone");
    tk_client_t *laptop = s_login ("alice", "laptop");
    tk_client_t *bob = s_login ("bob", "phone");
    //  bob has a 1:1 message first: group seqs are each member's own.
    ck_assert_int_eq (tk_send_text (bob, "alice", "b0", "hi alice"), 0);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (bob, "ack", 10000, &f), 0);
    ck_assert_int_eq (tk_expect (phone, "msg", 10000, &f), 0);
    ck_assert_int_eq (tk_expect (laptop, "msg", 10000, &f), 0);

    //  alice writes three: acked with her seq and the gseq; bob gets each
    //  with his seq, alice's laptop with hers, carol is offline.
    for (int i = 0; i < 3; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "a%d", i);
        snprintf (body, sizeof body, "hello %d", i);
        s_gsend_ack (phone, "team", cid, body, &f);
        s_gfields_t g;
        s_fields (&f, &g);
        ck_assert_uint_eq (f.seq, (uint64_t)i + 2);
        ck_assert_uint_eq (g.gseq, (uint64_t)i + 1);
        s_expect_msg (bob, "alice", "team", (uint64_t)i + 2, body);
        s_expect_msg (laptop, "alice", "team", (uint64_t)i + 2, body);
    }
    //  The sender's own connection gets no copy of its message.
    ck_assert_int_eq (tk_expect (phone, "msg", 300, &f), -1);
    //  bob answers: gseq 4.
    s_gsend_ack (bob, "team", "b1", "hi all", &f);
    s_gfields_t g;
    s_fields (&f, &g);
    ck_assert_uint_eq (g.gseq, 4);
    s_expect_msg (phone, "bob", "team", 5, "hi all");

    //  carol was offline: one push record for the group conversation
    //  (coalesced), and her sync has all four in order.
    //  (the broker queues push records after the live copies: wait for it)
    char *text = NULL;
    for (int i = 0; i < 250; i++) {
        free (text);
        text = NULL;
        ck_assert_int_eq (zim_admin_call (srv.admin, srv.key, 5000, "pushq", NULL, &text), 0);
        if (strstr (text, "\"depth\":1"))
            break;
        usleep (20000);
    }
    ck_assert_msg (strstr (text, "\"depth\":1"), "%s", text);
    free (text);
    tk_client_t *carol = s_login ("carol", "phone");
    ck_assert_int_eq (tk_sync (carol, 0, 100, 7), 0);
    ck_assert_int_eq (tk_expect (carol, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 4);
    ck_assert (!f.more);
    for (uint32_t i = 0; i < 4; i++)
        ck_assert_uint_eq (f.seqs[i], i + 1);
    ck_assert_str_eq (f.bodies[0], "hello 0");
    ck_assert_str_eq (f.bodies[3], "hi all");

    //  Read counts: carol read all four (her seq 4), bob up to his seq 3
    //  (gseq 2).
    zim_wr_t rw;
    zim_wr_init (&rw);
    zim_wr_map (&rw, 3);
    zim_wr_cstr (&rw, "op");
    zim_wr_cstr (&rw, "read");
    zim_wr_cstr (&rw, "conv");
    zim_wr_cstr (&rw, "g:team");
    zim_wr_cstr (&rw, "seq");
    zim_wr_uint (&rw, 4);
    ck_assert_int_eq (tk_send_wr (carol, &rw), 0);
    ck_assert_int_eq (tk_expect (carol, "receipt", 10000, &f), 0);
    zim_wr_map (&rw, 3);
    zim_wr_cstr (&rw, "op");
    zim_wr_cstr (&rw, "read");
    zim_wr_cstr (&rw, "conv");
    zim_wr_cstr (&rw, "g:team");
    zim_wr_cstr (&rw, "seq");
    zim_wr_uint (&rw, 3);
    ck_assert_int_eq (tk_send_wr (bob, &rw), 0);
    ck_assert_int_eq (tk_expect (bob, "receipt", 10000, &f), 0);
    zim_wr_free (&rw);
    ck_assert_int_eq (s_admin (out, sizeof out, "readers", "demo", "team", "2", NULL, NULL), 0);
    ck_assert_msg (strstr (out, "\"readers\":2,"), "%s", out);
    ck_assert_int_eq (s_admin (out, sizeof out, "readers", "demo", "team", "4", NULL, NULL), 0);
    ck_assert_msg (strstr (out, "\"readers\":1,"), "%s", out);
    ck_assert_int_eq (s_admin (out, sizeof out, "readers", "demo", "team", "9", NULL, NULL),
                      ZIM_ERR_BAD_FIELD);

    //  The conversation list has the group: bob's unread is what he has
    //  not read of the others' messages (gseq 3; his own gseq 4 is not).
    zim_wr_init (&rw);
    zim_wr_map (&rw, 2);
    zim_wr_cstr (&rw, "op");
    zim_wr_cstr (&rw, "convs");
    zim_wr_cstr (&rw, "rid");
    zim_wr_uint (&rw, 11);
    ck_assert_int_eq (tk_send_wr (bob, &rw), 0);
    zim_wr_free (&rw);
    ck_assert_int_eq (tk_expect (bob, "convs", 10000, &f), 0);
    {
        zim_rd_t rd;
        zim_sframe_t m;
        const char *why;
        zim_rd_init (&rd, f.raw, f.raw_len);
        ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
        bool found = false;
        for (uint32_t i = 0; i < m.nconvs; i++) {
            zim_sconv_t cv;
            ck_assert_int_eq (zim_sconv_unpack (&m.convs, &cv), 0);
            if (zim_str_eq (cv.conv, "g:team")) {
                found = true;
                ck_assert_uint_eq (cv.unread, 1);
                ck_assert_uint_eq (cv.seq, 5);
                ck_assert (zim_str_eq (cv.from, "bob"));
            }
        }
        ck_assert (found);
    }

    //  groups: carol's list has the group with its head.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "groups");
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 9);
    ck_assert_int_eq (tk_send_wr (carol, &wr), 0);
    zim_wr_free (&wr);
    ck_assert_int_eq (tk_expect (carol, "groups", 10000, &f), 0);
    s_fields (&f, &g);
    ck_assert_uint_eq (f.rid, 9);
    ck_assert_uint_eq (g.ngroups, 1);
    ck_assert (strstr ((const char *)f.raw, "team") || memmem (f.raw, f.raw_len, "team", 4));

    tk_close (&phone);
    tk_close (&laptop);
    tk_close (&bob);
    tk_close (&carol);
}
END_TEST

START_TEST (test_group_refusals_and_retry)
{
    char out[8192];
    ck_assert_int_eq (s_admin (out, sizeof out, "create", "demo", "ops", "group", "erin,fay", NULL),
                      0);
    ck_assert_int_eq (s_admin (out, sizeof out, "create", "demo", "ops", "group", "x", NULL),
                      ZIM_ERR_GROUP_EXISTS);
    ck_assert_int_eq (s_admin (out, sizeof out, "members", "demo", "nope", "x", "-", NULL),
                      ZIM_ERR_NO_GROUP);
    ck_assert_int_eq (s_admin (out, sizeof out, "members", "demo", "ops", "ok,not:valid", "-",
                               NULL),
                      ZIM_ERR_BAD_FIELD);
    //  501 members: too large, and nothing of it kept.
    char list[4096] = "";
    for (int i = 0; i <= 500; i++) {
        char one[8];
        snprintf (one, sizeof one, "%sm%03d", i ? "," : "", i);
        strcat (list, one);
    }
    ck_assert_int_eq (s_admin (out, sizeof out, "create", "demo", "huge", "group", list, NULL),
                      ZIM_ERR_GROUP_FULL);
    ck_assert_int_eq (s_admin (out, sizeof out, "get", "demo", "huge", NULL, NULL, NULL),
                      ZIM_ERR_NO_GROUP);

    tk_client_t *erin = s_login ("erin", "phone");
    tk_client_t *fay = s_login ("fay", "phone");
    tk_client_t *gus = s_login ("gus", "phone");
    s_gsend_refused (gus, "ops", "g1", "let me in", ZIM_ERR_NOT_MEMBER);
    s_gsend_refused (erin, "nope", "e0", "anyone?", ZIM_ERR_NO_GROUP);
    //  Both to and group: 4001.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 5);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "group");
    zim_wr_cstr (&wr, "ops");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "fay");
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "e9");
    zim_wr_cstr (&wr, "body");
    zim_wr_cstr (&wr, "x");
    ck_assert_int_eq (tk_send_wr (erin, &wr), 0);
    zim_wr_free (&wr);
    tk_frame_t f, again;
    s_answer (erin, &f);
    ck_assert_str_eq (f.op, "error");
    ck_assert_int_eq (f.code, ZIM_ERR_BAD_FIELD);

    //  A retry with the same cid: the same ack, fay gets it once.
    s_gsend_ack (erin, "ops", "e1", "standup at 10", &f);
    s_expect_msg (fay, "erin", "ops", 1, "standup at 10");
    s_gsend_ack (erin, "ops", "e1", "standup at 10", &again);
    ck_assert_uint_eq (again.id, f.id);
    ck_assert_uint_eq (again.seq, f.seq);
    ck_assert_int_eq (tk_expect (fay, "msg", 500, &again), -1);
    //  The same cid with another body: a conflict.
    s_gsend_refused (erin, "ops", "e1", "standup at 11", ZIM_ERR_CID_CONFLICT);

    //  Removed: refused from then on; gus added: gets what follows only.
    ck_assert_int_eq (s_admin (out, sizeof out, "members", "demo", "ops", "gus", "fay", NULL), 0);
    ck_assert_msg (strstr (out, "\"added\":1") && strstr (out, "\"removed\":1"), "%s", out);
    s_gsend_refused (fay, "ops", "f1", "still here?", ZIM_ERR_NOT_MEMBER);
    s_gsend_ack (erin, "ops", "e2", "welcome gus", &f);
    s_expect_msg (gus, "erin", "ops", 2, "welcome gus"); //  1: his join event
    ck_assert_int_eq (s_admin (out, sizeof out, "get", "demo", "ops", NULL, NULL, NULL), 0);
    ck_assert_msg (strstr (out, "\"count\":2") && strstr (out, "\"erin\"") &&
                       strstr (out, "\"gus\"") && !strstr (out, "\"fay\""),
                   "%s", out);
    //  Deleted: gone for everyone.
    ck_assert_int_eq (s_admin (out, sizeof out, "delete", "demo", "ops", NULL, NULL, NULL), 0);
    s_gsend_refused (erin, "ops", "e3", "hello?", ZIM_ERR_NO_GROUP);
    tk_close (&erin);
    tk_close (&fay);
    tk_close (&gus);
}
END_TEST

//  One member's inbox: every message of ids[0..n) exactly once, in that
//  order, seqs 1..n with no gap.
static void s_check_member (const char *uid, const uint64_t *ids, int n)
{
    tk_client_t *c = s_login (uid, "check");
    tk_frame_t f;
    ck_assert_int_eq (tk_sync (c, 0, 1000, 1), 0);
    ck_assert_int_eq (tk_expect (c, "page", 10000, &f), 0);
    ck_assert_msg ((int)f.nmsgs == n && !f.more, "%s has %u messages, not %d", uid, f.nmsgs, n);
    for (int i = 0; i < n; i++) {
        ck_assert_uint_eq (f.seqs[i], (uint64_t)i + 1);
        ck_assert_msg (f.ids[i] == ids[i], "%s: message %d is %llu, not %llu", uid, i,
                       (unsigned long long)f.ids[i], (unsigned long long)ids[i]);
    }
    tk_close (&c);
}

START_TEST (test_group_kill9_during_fanout)
{
    //  "sender" and 499 others.
    char list[4096] = "sender";
    for (int i = 1; i < S_MEMBERS; i++) {
        char one[8];
        snprintf (one, sizeof one, ",m%03d", i);
        strcat (list, one);
    }
    char out[256];
    ck_assert_int_eq (s_admin (out, sizeof out, "create", "demo", "big", "group", list, NULL), 0);
    ck_assert_msg (strstr (out, "\"members\":500"), "%s", out);

    //  All sends pipelined; the server is killed once a third are acked.
    tk_client_t *c = s_login ("sender", "phone");
    zim_wr_t wr;
    zim_wr_init (&wr);
    for (int i = 0; i < S_SENDS; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "k%d", i);
        snprintf (body, sizeof body, "m %d", i);
        s_enc_gsend (&wr, "big", cid, body);
        if ((i + 1) % 20 == 0)
            ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    }
    zim_wr_free (&wr);
    uint64_t acked[S_SENDS] = {0};
    int nacked = 0;
    tk_frame_t f;
    while (nacked < S_SENDS / 3 && tk_recv (c, 10000, &f) == 0)
        if (strcmp (f.op, "ack") == 0) {
            int i = atoi (f.cid + 1);
            ck_assert (i >= 0 && i < S_SENDS);
            acked[i] = f.id;
            nacked++;
        }
    ck_assert_int_ge (nacked, S_SENDS / 3);
    tk_server_stop (&srv, SIGKILL);
    tk_close (&c);

    //  Restart on the same data; send everything again with the same cids.
    const char *extra[] = {"-c", "tk-groups.cfg", NULL};
    char data[256];
    snprintf (data, sizeof data, "%s", srv.data);
    ck_assert_int_eq (tk_server_start (&srv, data, extra), 0);
    c = s_login ("sender", "phone");
    uint64_t ids[S_SENDS];
    for (int i = 0; i < S_SENDS; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "k%d", i);
        snprintf (body, sizeof body, "m %d", i);
        s_gsend_ack (c, "big", cid, body, &f);
        s_gfields_t g;
        s_fields (&f, &g);
        ids[i] = f.id;
        //  An ack from before the kill names the same message.
        ck_assert (!acked[i] || acked[i] == f.id);
        ck_assert_uint_eq (f.seq, (uint64_t)i + 1);
        ck_assert_uint_eq (g.gseq, (uint64_t)i + 1);
    }
    tk_close (&c);
    //  Every member: each message once, in send order, no gap.
    s_check_member ("sender", ids, S_SENDS);
    for (int i = 1; i < S_MEMBERS; i++) {
        char uid[8];
        snprintf (uid, sizeof uid, "m%03d", i);
        s_check_member (uid, ids, S_SENDS);
    }
}
END_TEST

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
    ck_assert_int_eq (s_admin (out, sizeof out, "create", "demo", "news", "channel",
                               "hana,ivan", NULL),
                      0);
    tk_client_t *hana = s_login ("hana", "phone");
    tk_client_t *ivan = s_login ("ivan", "phone");
    tk_frame_t f;
    //  30 posts: stored once, acked with the gseq (no inbox seq).
    for (int i = 0; i < 30; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "n%d", i);
        snprintf (body, sizeof body, "news %d", i);
        s_gsend_ack (hana, "news", cid, body, &f);
        s_gfields_t g;
        s_fields (&f, &g);
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
    s_gfields_t g;
    s_fields (&f, &g);
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
    s_fields (&f, &g);
    ck_assert (g.reset);
    ck_assert_uint_eq (f.nmsgs, 5);
    ck_assert_str_eq (f.bodies[0], "news 25");
    //  A newcomer reads from its join on: its join event, then what follows.
    ck_assert_int_eq (s_admin (out, sizeof out, "members", "demo", "news", "jon", "-", NULL), 0);
    tk_client_t *jon = s_login ("jon", "phone");
    s_csync (jon, "news", 0, 100, 5);
    ck_assert_int_eq (tk_expect (jon, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    s_gsend_ack (hana, "news", "n30", "news 30", &f);
    s_fields (&f, &g);
    ck_assert_uint_eq (g.gseq, 32); //  31: jon's join
    s_csync (jon, "news", 0, 100, 6);
    ck_assert_int_eq (tk_expect (jon, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 2);
    ck_assert_str_eq (f.bodies[1], "news 30");
    //  A non-member, a missing channel, a group: errors naming the rid.
    tk_client_t *kai = s_login ("kai", "phone");
    s_csync (kai, "news", 0, 100, 7);
    ck_assert_int_eq (tk_expect (kai, "error", 10000, &f), 0);
    ck_assert (f.code == ZIM_ERR_NOT_MEMBER && f.rid == 7);
    s_csync (kai, "nothing", 0, 100, 8);
    ck_assert_int_eq (tk_expect (kai, "error", 10000, &f), 0);
    ck_assert (f.code == ZIM_ERR_NO_GROUP && f.rid == 8);
    ck_assert_int_eq (s_admin (out, sizeof out, "create", "demo", "chat", "group", "kai", NULL), 0);
    s_csync (kai, "chat", 0, 100, 9); //  a group's log reads too (empty yet)
    ck_assert_int_eq (tk_expect (kai, "page", 10000, &f), 0);
    ck_assert (f.nmsgs == 0 && f.rid == 9);
    //  A group upgraded to a channel: its messages from then on are read
    //  with csync; never back.
    ck_assert_int_eq (s_admin (out, sizeof out, "upgrade", "demo", "chat", NULL, NULL, NULL), 0);
    s_gsend_ack (kai, "chat", "c1", "now a channel", &f);
    s_fields (&f, &g);
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

//  The entries of a page: how many have event ev (NULL: none), and the
//  users of the last such event's body into users.
static int s_events (const tk_frame_t *f, const char *ev, char *users, size_t size)
{
    zim_rd_t rd;
    zim_sframe_t m;
    const char *why;
    zim_rd_init (&rd, f->raw, f->raw_len);
    ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
    int n = 0;
    for (uint32_t i = 0; i < m.nmsgs; i++) {
        zim_sitem_t it;
        ck_assert_int_eq (zim_sitem_unpack (&m.msgs, &it), 0);
        bool match = ev ? zim_str_eq (it.event, ev) : it.event.ptr == NULL;
        if (match && ev) {
            //  {"users": [...]}: the from is "$" + the event.
            ck_assert (it.from.len == strlen (ev) + 1 && it.from.ptr[0] == '$');
            snprintf (users, size, "%.*s", (int)it.body.len, it.body.ptr);
        }
        n += match;
    }
    return n;
}

START_TEST (test_group_events_and_history)
{
    char out[4096], users[256];
    tk_frame_t f;
    //  A group without history_for_new: amy and ben talk, then ben leaves
    //  and cat joins (one admin op: the leave, then the join).
    ck_assert_int_eq (s_admin (out, sizeof out, "create", "demo", "club", "group", "amy,ben", NULL),
                      0);
    tk_client_t *amy = s_login ("amy", "phone");
    s_gsend_ack (amy, "club", "a1", "one", &f);
    s_gsend_ack (amy, "club", "a2", "two", &f);
    ck_assert_int_eq (s_admin (out, sizeof out, "members", "demo", "club", "cat", "ben", NULL), 0);
    ck_assert_msg (strstr (out, "\"gseq\":4"), "%s", out);
    //  amy's inbox: the two messages, the leave (3) and the join (4).
    ck_assert_int_eq (tk_sync (amy, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (amy, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 4);
    ck_assert_int_eq (s_events (&f, NULL, users, sizeof users), 2);
    ck_assert_int_eq (s_events (&f, "leave", users, sizeof users), 1);
    ck_assert (strstr (users, "ben"));
    ck_assert_int_eq (s_events (&f, "join", users, sizeof users), 1);
    ck_assert (strstr (users, "cat"));
    ck_assert_uint_eq (f.seqs[3], 4);
    //  ben learns he left: his inbox ends with the leave.
    tk_client_t *ben = s_login ("ben", "phone");
    ck_assert_int_eq (tk_sync (ben, 0, 100, 2), 0);
    ck_assert_int_eq (tk_expect (ben, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 3);
    ck_assert_int_eq (s_events (&f, "leave", users, sizeof users), 1);
    ck_assert_int_eq (s_events (&f, "join", users, sizeof users), 0);
    //  cat: its join, nothing from before, in the inbox and in the log.
    tk_client_t *cat = s_login ("cat", "phone");
    ck_assert_int_eq (tk_sync (cat, 0, 100, 3), 0);
    ck_assert_int_eq (tk_expect (cat, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    ck_assert_int_eq (s_events (&f, "join", users, sizeof users), 1);
    s_csync (cat, "club", 0, 100, 4);
    ck_assert_int_eq (tk_expect (cat, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    ck_assert_int_eq (s_events (&f, "join", users, sizeof users), 1);
    //  The next message reaches cat live with seq 2, gseq 5.
    s_gsend_ack (amy, "club", "a3", "three", &f);
    s_expect_msg (cat, "amy", "club", 2, "three");

    //  With history_for_new: the newcomer reads the log from the start
    //  (a group and a channel alike).
    const char *kinds[] = {"group", "channel"};
    for (int k = 0; k < 2; k++) {
        char name[16], cid[16];
        snprintf (name, sizeof name, "open%d", k);
        snprintf (cid, sizeof cid, "h%d", k);
        ck_assert_int_eq (
            s_admin (out, sizeof out, "create", "demo", name, kinds[k], "amy", "history"), 0);
        s_gsend_ack (amy, name, cid, "before", &f);
        ck_assert_int_eq (s_admin (out, sizeof out, "members", "demo", name, "dov", "-", NULL), 0);
        tk_client_t *dov = s_login ("dov", "phone");
        s_csync (dov, name, 0, 100, 5);
        ck_assert_int_eq (tk_expect (dov, "page", 10000, &f), 0);
        ck_assert_uint_eq (f.nmsgs, 2);
        ck_assert_str_eq (f.bodies[0], "before");
        ck_assert_int_eq (s_events (&f, "join", users, sizeof users), 1);
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
    ck_assert_int_eq (s_admin (out, sizeof out, "create", "demo", "live", "channel",
                               "lia,max,ned", NULL),
                      0);
    tk_client_t *lia = s_login ("lia", "phone");
    tk_client_t *max = s_login ("max", "phone");
    //  max reads the channel: his connections join its live room.
    s_csync (max, "live", 0, 100, 1);
    ck_assert_int_eq (tk_expect (max, "page", 10000, &f), 0);
    ck_assert_int_eq (tk_expect (max, "joined", 10000, &f), 0);
    ck_assert_int_eq (s_room_is (&f, "g:live"), 1);
    //  lia sends: max (online) gets it live, with its gseq; ned (offline)
    //  finds it with csync.
    s_gsend_ack (lia, "live", "l1", "hello", &f);
    s_expect_live (max, "live", 1, "hello");
    tk_client_t *ned = s_login ("ned", "phone");
    s_csync (ned, "live", 0, 100, 2);
    ck_assert_int_eq (tk_expect (ned, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    ck_assert_str_eq (f.bodies[0], "hello");
    ck_assert_int_eq (tk_expect (ned, "joined", 10000, &f), 0);
    //  Nobody joins or publishes in a channel's room by hand.
    tk_client_t *oz = s_login ("oz", "phone");
    s_join (oz, "g:live", 3);
    ck_assert_int_eq (tk_expect (oz, "error", 10000, &f), 0);
    ck_assert (f.code == ZIM_ERR_ROOM_DENIED && f.rid == 3);
    //  A non-member's csync is refused and joins nothing.
    s_csync (oz, "live", 0, 100, 4);
    ck_assert_int_eq (tk_expect (oz, "error", 10000, &f), 0);
    ck_assert (f.code == ZIM_ERR_NOT_MEMBER && f.rid == 4);
    //  max is removed: his connections leave the room before the next
    //  message goes there; ned gets it, max does not.
    ck_assert_int_eq (s_admin (out, sizeof out, "members", "demo", "live", "-", "max", NULL), 0);
    s_gsend_ack (lia, "live", "l2", "after", &f);
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

START_TEST (test_zimctl_groups)
{
    char cmd[1024], out[4096];
    const char *bin = getenv ("ZIMCTL") ? getenv ("ZIMCTL") : "./zimctl";
    snprintf (cmd, sizeof cmd,
              "%s -e %s -k %s groups create --app demo --group crew --members lea,max 2>&1 && "
              "%s -e %s -k %s groups add --app demo --group crew --members ned 2>&1 && "
              "%s -e %s -k %s groups get --app demo --group crew 2>&1",
              bin, srv.admin, srv.key, bin, srv.admin, srv.key, bin, srv.admin, srv.key);
    FILE *p = popen (cmd, "r");
    size_t n = fread (out, 1, sizeof out - 1, p);
    out[n] = 0;
    ck_assert_int_eq (pclose (p), 0);
    ck_assert_msg (strstr (out, "\"members\":[\"lea\",\"max\",\"ned\"]"), "%s", out);
    ck_assert_msg (strstr (out, "\"added\":1"), "%s", out);
    snprintf (cmd, sizeof cmd, "%s -e %s -k %s groups get --app demo --group none 2>&1", bin,
              srv.admin, srv.key);
    p = popen (cmd, "r");
    n = fread (out, 1, sizeof out - 1, p);
    out[n] = 0;
    ck_assert_int_eq (WEXITSTATUS (pclose (p)), 1);
    ck_assert_msg (strstr (out, "4041"), "%s", out);
}
END_TEST

//  -------------------------------------------------------------------------
//  A cluster of two store shards: a group whose members live on both.

static tk_cluster_t cl;

static void s_cluster_setup (void)
{
    ck_assert_int_eq (tk_cluster_start (&cl, 2, 1, 1), 0);
}

static void s_cluster_teardown (void)
{
    int problems = tk_cluster_stop (&cl);
    tk_cluster_cleanup (&cl);
    ck_assert_msg (problems == 0, "%d node(s) did not stop cleanly or logged a sanitizer report",
                   problems);
}

//  A name prefix+N whose key (key_prefix + name) lands on shard.
static void s_pick (const char *key_prefix, const char *prefix, int shard, char *out, size_t size)
{
    const char *names[] = {"store-1", "store-2"};
    zim_ring_t *ring = zim_ring_new (names, 2);
    for (int i = 0; i < 1000; i++) {
        char key[80];
        snprintf (out, size, "%s%d", prefix, i);
        snprintf (key, sizeof key, "%s%s", key_prefix, out);
        if (zim_ring_lookup (ring, zim_str ("demo"), zim_str (key)) == shard)
            break;
    }
    zim_ring_destroy (&ring);
}

static tk_client_t *s_cluster_login (const char *uid)
{
    tk_client_t *c = tk_login (&tk_cluster_node (&cl, "gw-1")->srv, uid, "phone");
    ck_assert_ptr_nonnull (c);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "auth_ok", 5000, &f), 0);
    return c;
}

//  Sends to a group until acked, retrying 5030 with the same cid (a node
//  that has not seen the whole map yet, a shard that is down).
static void s_cluster_gsend (tk_client_t *c, const char *group, const char *cid, const char *text,
                             tk_frame_t *f)
{
    for (int tries = 0;; tries++) {
        s_gsend (c, group, cid, text);
        s_answer (c, f);
        if (strcmp (f->op, "ack") == 0)
            return;
        ck_assert_msg ((f->code == ZIM_ERR_UNAVAILABLE || f->code == ZIM_ERR_TIMEOUT) && tries < 100,
                       "%s: error %lld", cid, (long long)f->code);
        usleep (100000);
    }
}

//  The sync page of uid (from 0) into f.
static void s_cluster_sync (const char *uid, tk_frame_t *f)
{
    tk_client_t *c = s_cluster_login (uid);
    ck_assert_int_eq (tk_sync (c, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (c, "page", 10000, f), 0);
    tk_close (&c);
}

START_TEST (test_group_across_shards)
{
    //  The group on shard 1 (store-1); a and d there, b and c on store-2.
    char group[32], a[32], b[32], c[32], d[32], list[160], out[1024];
    s_pick ("g:", "crew", 0, group, sizeof group);
    s_pick ("", "a", 0, a, sizeof a);
    s_pick ("", "b", 1, b, sizeof b);
    s_pick ("", "c", 1, c, sizeof c);
    s_pick ("", "d", 0, d, sizeof d);
    snprintf (list, sizeof list, "%s,%s,%s,%s", a, b, c, d);
    tk_node_t *s1 = tk_cluster_node (&cl, "store-1"), *s2 = tk_cluster_node (&cl, "store-2");
    const char *args[] = {"create", "demo", group, "group", list, NULL};
    char *text = NULL;
    ck_assert_int_eq (zim_admin_call_curve (s1->admin, cl.keys, cl.key, 5000, "groups", args, &text),
                      0);
    free (text);

    //  a (store-1) sends five: b (store-2) gets each live with its seq.
    tk_client_t *ca = s_cluster_login (a), *cb = s_cluster_login (b);
    tk_frame_t f;
    for (int i = 0; i < 5; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "x%d", i);
        snprintf (body, sizeof body, "x %d", i);
        s_cluster_gsend (ca, group, cid, body, &f);
        ck_assert_uint_eq (f.seq, (uint64_t)i + 1);
        s_expect_msg (cb, a, group, (uint64_t)i + 1, body);
    }
    //  b answers from store-2: its ack names its own seq, a gets it.
    s_cluster_gsend (cb, group, "y0", "y 0", &f);
    s_gfields_t g;
    s_fields (&f, &g);
    ck_assert_uint_eq (f.seq, 6);
    ck_assert_uint_eq (g.gseq, 6);
    s_expect_msg (ca, b, group, 6, "y 0");
    //  c (offline, store-2) and d (store-1): all six in order from their
    //  own shards.
    s_cluster_sync (c, &f);
    ck_assert_uint_eq (f.nmsgs, 6);
    ck_assert_str_eq (f.bodies[0], "x 0");
    ck_assert_str_eq (f.bodies[5], "y 0");
    s_cluster_sync (d, &f);
    ck_assert_uint_eq (f.nmsgs, 6);
    ck_assert_uint_eq (f.seqs[5], 6);

    //  store-2 dies: a's send is stored on store-1 with its job, and
    //  cannot finish (5030). store-2 comes back: a broker's poll finishes
    //  the job without any retry; the retry then finds it done.
    tk_close (&cb);
    tk_node_stop (s2, SIGKILL);
    s_gsend (ca, group, "z0", "z 0");
    s_answer (ca, &f);
    ck_assert_str_eq (f.op, "error");
    ck_assert (f.code == ZIM_ERR_UNAVAILABLE || f.code == ZIM_ERR_TIMEOUT);
    ck_assert_int_eq (tk_node_start (&cl, s2), 0);
    ck_assert_int_eq (tk_cluster_wait (&cl, 20000), 0);
    bool done = false;
    for (int i = 0; i < 300 && !done; i++) {
        s_cluster_sync (c, &f);
        done = f.nmsgs == 7;
        if (!done)
            usleep (100000);
    }
    ck_assert_msg (done, "the job was not finished: c has %u messages", f.nmsgs);
    ck_assert_str_eq (f.bodies[6], "z 0");
    ck_assert_uint_eq (f.seqs[6], 7);
    uint64_t id = f.ids[6];
    s_cluster_gsend (ca, group, "z0", "z 0", &f);
    ck_assert_uint_eq (f.id, id);
    s_fields (&f, &g);
    ck_assert_uint_eq (g.gseq, 7);
    ck_assert_uint_eq (f.seq, 7);
    s_cluster_sync (b, &f);
    ck_assert_uint_eq (f.nmsgs, 7);
    ck_assert_uint_eq (f.ids[6], id);
    //  e (store-2) joins through store-1's admin endpoint: the join event
    //  reaches e's inbox on store-2 by the brokers' job poll (no broker
    //  wrote it), and b's (store-2, a member) too.
    char e[32];
    s_pick ("", "e", 1, e, sizeof e);
    const char *add[] = {"members", "demo", group, e, "-", NULL};
    ck_assert_int_eq (zim_admin_call_curve (s1->admin, cl.keys, cl.key, 5000, "groups", add, &text),
                      0);
    free (text);
    done = false;
    for (int i = 0; i < 300 && !done; i++) {
        s_cluster_sync (e, &f);
        done = f.nmsgs == 1;
        if (!done)
            usleep (100000);
    }
    ck_assert_msg (done, "the join event did not reach %s on store-2", e);
    ck_assert_uint_eq (f.seqs[0], 1);
    char users[128];
    tk_client_t *ce = s_cluster_login (e);
    ck_assert_int_eq (tk_sync (ce, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (ce, "page", 10000, &f), 0);
    ck_assert_int_eq (s_events (&f, "join", users, sizeof users), 1);
    ck_assert (strstr (users, e));
    tk_close (&ce);
    ce = s_cluster_login (b);
    ck_assert_int_eq (tk_sync (ce, 0, 100, 2), 0);
    ck_assert_int_eq (tk_expect (ce, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 8);
    ck_assert_int_eq (s_events (&f, "join", users, sizeof users), 1);
    tk_close (&ce);
    (void)out;
    tk_close (&ca);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("groups");
    TCase *tc = tcase_create ("groups");
    tcase_set_timeout (tc, 240);
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_group_chat_one_offline);
    tcase_add_test (tc, test_group_refusals_and_retry);
    tcase_add_test (tc, test_group_kill9_during_fanout);
    tcase_add_test (tc, test_channel_sync_and_reset);
    tcase_add_test (tc, test_group_events_and_history);
    tcase_add_test (tc, test_channel_live);
    tcase_add_test (tc, test_zimctl_groups);
    suite_add_tcase (s, tc);
    TCase *tcc = tcase_create ("cluster");
    tcase_set_timeout (tcc, 180);
    tcase_add_checked_fixture (tcc, s_cluster_setup, s_cluster_teardown);
    tcase_add_test (tcc, test_group_across_shards);
    suite_add_tcase (s, tcc);
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
