/*  zim_groupkit.h: what the groups and channels tests share
    (tests/test_groups.c, tests/test_gchannel.c): a zim-server per test
    case, the groups admin verb, group sends and their answers, and the
    group fields and events of the frames that come back.
*/
#ifndef ZIM_GROUPKIT_H_INCLUDED
#define ZIM_GROUPKIT_H_INCLUDED

#include "tests/zim_testkit.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  The server of the running test case.
extern tk_server_t gk_srv;

//  Starts gk_srv with config file cfg (written here, in the build tree;
//  one name per test program): csync_max_behind 20.
void gk_start (const char *cfg);
//  Check fixture: stops gk_srv cleanly; fails on a sanitizer report in its
//  log.
void gk_teardown (void);

//  Runs the groups admin verb with up to six arguments (NULL ends them);
//  returns its code, the answer into out (if not NULL).
int gk_admin (char *out, size_t size, const char *a0, const char *a1, const char *a2,
              const char *a3, const char *a4, const char *a5);

//  Encodes {"op":"send","group":group,"cid":cid,"body":text} into wr.
void gk_enc_gsend (zim_wr_t *wr, const char *group, const char *cid, const char *text);
//  Sends it on c now.
void gk_gsend (tk_client_t *c, const char *group, const char *cid, const char *text);
//  Waits for the answer to a send: an ack or an error.
void gk_answer (tk_client_t *c, tk_frame_t *f);
//  Sends and expects an ack for cid, into f.
void gk_gsend_ack (tk_client_t *c, const char *group, const char *cid, const char *text,
                   tk_frame_t *f);

//  The group fields of a frame.
typedef struct {
    char group[72], conv[140]; //  the group, and its conversation "g:GROUP"
    uint64_t gseq;             //  the message's place in the group's log
    bool reset;                //  a csync page that skipped to the newest
    uint32_t ngroups;          //  a convs page: how many groups it lists
} gk_gfields_t;

//  Decodes the group fields of f into g.
void gk_fields (const tk_frame_t *f, gk_gfields_t *g);

//  Expects a group msg on c: from, group, seq and body.
void gk_expect_msg (tk_client_t *c, const char *from, const char *group, uint64_t seq,
                    const char *body);

//  The entries of a page: how many have event ev (NULL: none), and the
//  users of the last such event's body into users.
int gk_events (const tk_frame_t *f, const char *ev, char *users, size_t size);

#endif
