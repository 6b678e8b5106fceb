/*  zim_groupkit.c: what the groups and channels tests share (see
    zim_groupkit.h).
*/
#include "tests/zim_groupkit.h"
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tk_server_t gk_srv;

void gk_start (const char *cfg)
{
    const char *extra[] = {"-c", cfg, NULL};
    FILE *file = fopen (cfg, "w");
    ck_assert_ptr_nonnull (file);
    //  A channel reader more than 20 behind gets the newest page.
    fprintf (file, "store\n    csync_max_behind = 20\n");
    fclose (file);
    ck_assert_int_eq (tk_server_start (&gk_srv, NULL, extra), 0);
}

void gk_teardown (void)
{
    tk_server_stop (&gk_srv, SIGTERM);
    int problems = tk_log_reports (gk_srv.log);
    tk_server_cleanup (&gk_srv);
    ck_assert_msg (problems == 0, "zim-server logged %d sanitizer report(s)", problems);
}

//  Runs the groups admin verb; returns its code, the answer into out.
int gk_admin (char *out, size_t size, const char *a0, const char *a1, const char *a2,
              const char *a3, const char *a4, const char *a5)
{
    const char *args[] = {a0, a1, a2, a3, a4, a5, NULL};
    char *text = NULL;
    int code = zim_admin_call (gk_srv.admin, gk_srv.key, 10000, "groups", args, &text);
    if (out)
        snprintf (out, size, "%s", text ? text : "");
    free (text);
    return code;
}

//  Encodes {"op":"send","group":group,"cid":cid,"body":text} into wr.
void gk_enc_gsend (zim_wr_t *wr, const char *group, const char *cid, const char *text)
{
    tk_enc_send_at (wr, "group", group, cid, text);
}

void gk_gsend (tk_client_t *c, const char *group, const char *cid, const char *text)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    gk_enc_gsend (&wr, group, cid, text);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

void gk_fields (const tk_frame_t *f, gk_gfields_t *g)
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
void gk_answer (tk_client_t *c, tk_frame_t *f)
{
    do
        ck_assert_int_eq (tk_recv (c, 10000, f), 0);
    while (strcmp (f->op, "ack") && strcmp (f->op, "error"));
}

//  Sends and expects an ack; returns it.
void gk_gsend_ack (tk_client_t *c, const char *group, const char *cid, const char *text,
                   tk_frame_t *f)
{
    gk_gsend (c, group, cid, text);
    gk_answer (c, f);
    ck_assert_msg (strcmp (f->op, "ack") == 0, "%s: error %lld %s", cid, (long long)f->code,
                   f->text);
    ck_assert_str_eq (f->cid, cid);
}

//  Expects a group msg on c: from, group, seq and body.
void gk_expect_msg (tk_client_t *c, const char *from, const char *group, uint64_t seq,
                    const char *body)
{
    tk_frame_t f;
    gk_gfields_t g;
    char conv[80];
    ck_assert_int_eq (tk_expect (c, "msg", 10000, &f), 0);
    gk_fields (&f, &g);
    snprintf (conv, sizeof conv, "g:%s", group);
    ck_assert_str_eq (f.from, from);
    ck_assert_str_eq (f.to, group);
    ck_assert_str_eq (g.group, group);
    ck_assert_str_eq (g.conv, conv);
    ck_assert_uint_eq (f.seq, seq);
    ck_assert_str_eq (f.body, body);
}

//  The entries of a page: how many have event ev (NULL: none), and the
//  users of the last such event's body into users.
int gk_events (const tk_frame_t *f, const char *ev, char *users, size_t size)
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
