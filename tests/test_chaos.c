/*  test_chaos.c: crash durability under fire. Starts zim-server (--sync
    batch), lets several senders chat over real WebSockets with many sends
    in flight, kill -9s the server at a random moment, restarts it on the
    same data dir, and lets the senders retry every unacked send with its
    cid; N times. Then every send is retried until acked, and the store is
    read back through sync: every acked message must be in its sender's
    inbox (at the acked seq) and its recipient's, exactly once, and every
    user's seqs must run 1..n with no gap (../shared/BRIEF.md, guarantees
    1 to 3).

    ZIM_CHAOS_KILLS (default 5) sets N; ZIM_CHAOS_SEED the random seed
    (printed, so a failing run can be repeated); ZIM_CHAOS_SYNC the server's
    fsync policy (batch). docs/TESTING.md, "Crash chaos", has the 100-kill
    run and its result.
*/
#include "msg/zim_msg.h"
#include "tests/zim_testkit.h"

#include <check.h>
#include <glob.h>
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_SENDERS 4 //  users who send (and receive from each other)
#define S_READERS 3 //  users who only receive
#define S_USERS (S_SENDERS + S_READERS)
#define S_WINDOW 32 //  sends in flight per sender

//  One send of a sender.
typedef struct {
    int to;       //  recipient: index in s_users
    int round;    //  server life it was last sent in (0: never sent)
    bool acked;   //  an ack came back
    uint64_t id;  //  its id, from the ack
    uint64_t seq; //  the sender's seq, from the ack
} s_send_t;

//  One user: its connection and, for senders, its sends.
typedef struct {
    char uid[16];    //  s0.., r0..
    tk_client_t *c;  //  connection of this server life, or NULL
    s_send_t *sends; //  sends, index = cid number
    size_t nsends;   //  made so far
    size_t alloc;    //  allocated
    size_t inflight; //  sent in this life without an answer yet
    size_t next;     //  first send that may need a resend
    uint64_t *inbox; //  after the run: the ids of its inbox by seq - 1
    size_t ninbox;   //  their number
} s_user_t;

static s_user_t s_users[S_USERS];
static tk_server_t s_srv;
static uint64_t s_resends, s_errors;
static uint64_t s_stored_before; //  retries answered with an id minted in an earlier life
static uint64_t s_life_ms;       //  wall clock ms when this server life began

//  Message ids carry their minting time: ms since 2024-01-01, shifted by 22
//  (docs/ARCHITECTURE.md, "The send flow").
#define S_ID_EPOCH_MS 1704067200000ULL

//  A random number in [0, n).
static unsigned s_rand (unsigned n)
{
    return (unsigned)(rand () % (int)n);
}

//  The cid of send k of sender u.
static void s_cid (int u, size_t k, char *buf, size_t size)
{
    snprintf (buf, size, "%.15s-%zu", s_users[u].uid, k);
}

//  Connects every sender to the server of this life. Readers stay
//  offline: their messages wait in their inboxes.
static void s_connect_all (void)
{
    for (int u = 0; u < S_SENDERS; u++) {
        s_users[u].c = tk_login (&s_srv, s_users[u].uid, "phone");
        ck_assert_ptr_nonnull (s_users[u].c);
        s_users[u].inflight = 0;
    }
}

static void s_close_all (void)
{
    for (int u = 0; u < S_USERS; u++)
        tk_close (&s_users[u].c);
}

//  Handles one frame a sender received.
static void s_handle (int u, const tk_frame_t *f)
{
    s_user_t *user = &s_users[u];
    if (strcmp (f->op, "ack") && strcmp (f->op, "error"))
        return; //  live messages, auth_ok: not what this test counts
    const char *dash = strrchr (f->cid, '-');
    ck_assert_msg (dash, "%s: %s without a cid of ours: '%s'", user->uid, f->op, f->cid);
    size_t k = strtoul (dash + 1, NULL, 10);
    ck_assert_uint_lt (k, user->nsends);
    s_send_t *s = &user->sends[k];
    if (user->inflight)
        user->inflight--;
    if (!strcmp (f->op, "error")) {
        //  Retryable (5030/5040/5000 around a restart): sent again in the
        //  next life. A conflict (4009) would be a bug: the words are
        //  always the same.
        ck_assert_msg (f->code >= 5000, "%s: error %d for %s: %s", user->uid, (int)f->code, f->cid,
                       f->text);
        s_errors++;
        return;
    }
    if (s->acked) {
        //  Answered twice (sent in two lives): the same message both times.
        ck_assert_uint_eq (s->id, f->id);
        ck_assert_uint_eq (s->seq, f->seq);
        return;
    }
    if ((f->id >> 22) + S_ID_EPOCH_MS < s_life_ms)
        s_stored_before++; //  stored before a crash, its ack lost: a duplicate
    s->acked = true;
    s->id = f->id;
    s->seq = f->seq;
}

//  Sends sender u's next send, if its window and budget allow: first the
//  sends of earlier lives that got no ack, then new ones. Returns false if
//  there was nothing to send.
static bool s_send_next (int u, int round, bool fresh_ok, zim_wr_t *wr)
{
    s_user_t *user = &s_users[u];
    if (user->inflight >= S_WINDOW)
        return false;
    while (user->next < user->nsends &&
           (user->sends[user->next].acked || user->sends[user->next].round == round))
        user->next++;
    size_t k = user->next;
    if (k < user->nsends)
        s_resends++;
    else {
        if (!fresh_ok)
            return false;
        if (user->nsends == user->alloc) {
            user->alloc = user->alloc ? user->alloc * 2 : 1024;
            user->sends = realloc (user->sends, user->alloc * sizeof *user->sends);
            ck_assert_ptr_nonnull (user->sends);
        }
        //  Mostly to a reader, every fourth to the next sender.
        s_send_t *s = &user->sends[user->nsends++];
        *s = (s_send_t){k % 4 == 3 ? (u + 1) % S_SENDERS : S_SENDERS + (int)((u + k) % S_READERS),
                        0, false, 0, 0};
    }
    user->sends[k].round = round;
    char cid[32];
    s_cid (u, k, cid, sizeof cid);
    //  The body is the cid: a retry carries the same words.
    tk_enc_send (wr, s_users[user->sends[k].to].uid, cid, cid);
    user->inflight++;
    return true;
}

//  One pass over the senders: fill each window (in one WebSocket message),
//  then read what came back for up to wait_ms of silence. Stops as soon as
//  the deadline (mono ms) has passed, even with sends just written: returns
//  true then.
static bool s_pump (int round, bool fresh_ok, int wait_ms, int64_t deadline)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    bool passed = false;
    for (int u = 0; u < S_SENDERS && !passed; u++) {
        if (!s_users[u].c || tk_closed (s_users[u].c))
            continue;
        while (s_send_next (u, round, fresh_ok, &wr))
            ;
        if (wr.size)
            tk_send_wr (s_users[u].c, &wr); //  fails once the server is gone
        zim_wr_reset (&wr);
        passed = zclock_mono () >= deadline;
    }
    for (int u = 0; u < S_SENDERS && !passed; u++) {
        tk_frame_t f;
        while (s_users[u].c && !passed) {
            int64_t left = deadline - zclock_mono ();
            passed = left <= 0;
            if (passed || tk_recv (s_users[u].c, left < wait_ms ? (int)left : wait_ms, &f))
                break;
            s_handle (u, &f);
        }
    }
    zim_wr_free (&wr);
    return passed;
}

//  Reads the whole inbox of user u through sync into user->inbox.
static void s_read_inbox (int u)
{
    s_user_t *user = &s_users[u];
    tk_client_t *c = tk_login (&s_srv, user->uid, "check");
    ck_assert_ptr_nonnull (c);
    tk_frame_t *f = malloc (sizeof *f);
    ck_assert_ptr_nonnull (f);
    size_t alloc = 1024;
    user->inbox = malloc (alloc * sizeof (uint64_t));
    user->ninbox = 0;
    for (bool more = true; more;) {
        ck_assert_int_eq (tk_sync (c, (int64_t)user->ninbox, 1000, 7), 0);
        ck_assert_int_eq (tk_expect (c, "page", 10000, f), 0);
        ck_assert_uint_le (f->nmsgs, 1000);
        for (uint32_t i = 0; i < f->nmsgs; i++) {
            //  Seqs run 1..n with no gap.
            ck_assert_msg (f->seqs[i] == user->ninbox + 1, "%s: seq %llu after %zu", user->uid,
                           (unsigned long long)f->seqs[i], user->ninbox);
            if (user->ninbox == alloc) {
                alloc *= 2;
                user->inbox = realloc (user->inbox, alloc * sizeof (uint64_t));
            }
            user->inbox[user->ninbox++] = f->ids[i];
        }
        more = f->more;
        ck_assert (f->nmsgs > 0 || !more);
    }
    free (f);
    tk_close (&c);
}

static int s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  Checks the property: every acked send once in both inboxes, nothing
//  else in any inbox.
static size_t s_check (void)
{
    size_t expected[S_USERS] = {0}, acked = 0;
    for (int u = 0; u < S_USERS; u++)
        s_read_inbox (u);
    //  Each sender's inbox holds each of its sends at the acked seq.
    for (int u = 0; u < S_SENDERS; u++)
        for (size_t k = 0; k < s_users[u].nsends; k++) {
            s_send_t *s = &s_users[u].sends[k];
            ck_assert_msg (s->acked, "%s-%zu never acked", s_users[u].uid, k);
            ck_assert_uint_ge (s->seq, 1);
            ck_assert_uint_le (s->seq, s_users[u].ninbox);
            ck_assert_msg (s_users[u].inbox[s->seq - 1] == s->id,
                           "%s-%zu: acked as seq %llu, id %llu; that seq holds %llu",
                           s_users[u].uid, k, (unsigned long long)s->seq, (unsigned long long)s->id,
                           (unsigned long long)s_users[u].inbox[s->seq - 1]);
            expected[u]++;
            expected[s->to]++;
            acked++;
        }
    //  Each recipient's inbox holds each send to it once, and nothing else:
    //  its ids are distinct, every send to it is among them, and there are
    //  exactly as many as sends from and to the user.
    for (int u = 0; u < S_USERS; u++) {
        s_user_t *user = &s_users[u];
        ck_assert_msg (user->ninbox == expected[u], "%s: %zu messages in the inbox, %zu expected",
                       user->uid, user->ninbox, expected[u]);
        qsort (user->inbox, user->ninbox, sizeof (uint64_t), s_cmp_u64);
        for (size_t i = 1; i < user->ninbox; i++)
            ck_assert_msg (user->inbox[i] != user->inbox[i - 1], "%s: id %llu twice", user->uid,
                           (unsigned long long)user->inbox[i]);
    }
    for (int u = 0; u < S_SENDERS; u++)
        for (size_t k = 0; k < s_users[u].nsends; k++) {
            s_send_t *s = &s_users[u].sends[k];
            s_user_t *to = &s_users[s->to];
            ck_assert_msg (bsearch (&s->id, to->inbox, to->ninbox, sizeof (uint64_t), s_cmp_u64),
                           "%s-%zu (id %llu) missing from %s's inbox", s_users[u].uid, k,
                           (unsigned long long)s->id, to->uid);
        }
    return acked;
}

//  Fails if a log of any of the server's lives shows a sanitizer report.
static void s_check_logs (const char *data)
{
    char pattern[300];
    snprintf (pattern, sizeof pattern, "%s/server-*.log", data);
    glob_t logs;
    if (glob (pattern, 0, NULL, &logs))
        return;
    for (size_t i = 0; i < logs.gl_pathc; i++) {
        FILE *log = fopen (logs.gl_pathv[i], "r");
        char line[1024];
        while (log && fgets (line, sizeof line, log))
            ck_assert_msg (!strstr (line, "Sanitizer") && !strstr (line, "runtime error"), "%s: %s",
                           logs.gl_pathv[i], line);
        if (log)
            fclose (log);
    }
    globfree (&logs);
}

static int s_kills (void)
{
    const char *env = getenv ("ZIM_CHAOS_KILLS");
    int n = env ? atoi (env) : 5;
    return n > 0 ? n : 5;
}

START_TEST (test_kill9_at_random_moments)
{
    int kills = s_kills ();
    const char *seed_env = getenv ("ZIM_CHAOS_SEED");
    unsigned seed = seed_env ? (unsigned)strtoul (seed_env, NULL, 10) : (unsigned)getpid ();
    srand (seed);
    const char *sync = getenv ("ZIM_CHAOS_SYNC");
    const char *extra[] = {"--sync", sync ? sync : "batch", NULL};
    printf ("chaos: %d kills, seed %u (ZIM_CHAOS_SEED=%u to repeat), sync %s\n", kills, seed, seed,
            extra[1]);
    fflush (stdout);
    signal (SIGPIPE, SIG_IGN);
    for (int u = 0; u < S_USERS; u++)
        snprintf (s_users[u].uid, sizeof s_users[u].uid, u < S_SENDERS ? "s%d" : "r%d",
                  u < S_SENDERS ? u : u - S_SENDERS);
    int64_t started = zclock_mono ();
    char data[256] = "";
    for (int round = 1; round <= kills + 1; round++) {
        ck_assert_int_eq (tk_server_start (&s_srv, round == 1 ? NULL : data, extra), 0);
        snprintf (data, sizeof data, "%s", s_srv.data);
        s_life_ms = (uint64_t)zclock_time ();
        s_connect_all ();
        if (round <= kills) {
            //  Traffic until a random moment, then the crash.
            int64_t deadline = zclock_mono () + 2 + s_rand (150);
            while (!s_pump (round, true, 1, deadline))
                ;
            tk_server_stop (&s_srv, SIGKILL);
            s_close_all ();
            continue;
        }
        //  The last life: every send retried until acked, nothing new.
        int64_t deadline = zclock_mono () + 60000;
        bool done = false;
        while (!done && zclock_mono () < deadline) {
            s_pump (round, false, 5, deadline);
            done = true;
            for (int u = 0; u < S_SENDERS; u++) {
                s_users[u].next = 0;
                for (size_t k = 0; k < s_users[u].nsends; k++)
                    if (!s_users[u].sends[k].acked) {
                        done = false;
                        //  An error answer ends its life's try: try again.
                        if (s_users[u].inflight == 0)
                            s_users[u].sends[k].round = 0;
                    }
            }
        }
        ck_assert_msg (done, "some sends were never acked within 60 s");
    }
    s_close_all ();
    size_t acked = s_check ();
    tk_server_stop (&s_srv, SIGTERM);
    s_check_logs (data);
    printf ("chaos: %d kill -9s in %.1f s: %zu messages acked; %llu sends retried after a "
            "crash, %llu of them stored before it (answered as duplicates); %llu retryable "
            "errors. Each acked message is once in both inboxes and every user's seqs run "
            "1..n\n",
            kills, (double)(zclock_mono () - started) / 1000.0, acked,
            (unsigned long long)s_resends, (unsigned long long)s_stored_before,
            (unsigned long long)s_errors);
    for (int u = 0; u < S_USERS; u++) {
        free (s_users[u].sends);
        free (s_users[u].inbox);
    }
    tk_server_cleanup (&s_srv);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("chaos");
    TCase *tc = tcase_create ("chaos");
    tcase_set_timeout (tc, 120 + 10 * s_kills ());
    tcase_add_test (tc, test_kill9_at_random_moments);
    suite_add_tcase (s, tc);
    SRunner *sr = srunner_create (s);
    srunner_set_fork_status (sr, CK_FORK);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
