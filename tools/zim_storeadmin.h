/*  zim_storeadmin.h: the admin verbs a store answers, for zimctl and the
    push bridge (tools/zim_push.c). The process shell of a node with a
    store (zim-server, zim-store) passes them on as backbone messages to
    its own store, over a DEALER to the store's endpoint (inproc in
    zim-server; in a cluster its tcp endpoint, with the cluster's CURVE
    keys like every backbone client), and waits for the answer:

        pushq                         {"depth","oldest",push_* counters}
        pushq take AFTER MAX          {"records":[...]} queued after qid AFTER
        pushq ack OUTCOME QID,QID...  {"removed":N}; OUTCOME is delivered,
                                      dropped or muted
        mute APP UID CONV UNTIL       {"moved":bool}: no push for UID's CONV
                                      until UNTIL (ms since the epoch; 0
                                      unmutes)
        groups create APP GROUP [group|channel] [U,U,...|-] [history]
        groups members APP GROUP ADD|- REMOVE|-
        groups get|delete|upgrade APP GROUP
        groups readers APP GROUP GSEQ  {"readers":N,...}: members whose read
                                      cursor reached message GSEQ (groups of
                                      at most 200; members on this shard)
                                      a GADMIN (store/zim_groups.h) and its
                                      JSON answer; refusals 4041-4043, 4001

    What a record holds is in store/zim_pushq.h; docs/OPERATIONS.md,
    "Offline push", has the whole flow.
*/
#ifndef ZIM_STOREADMIN_H_INCLUDED
#define ZIM_STOREADMIN_H_INCLUDED

#include "msg/zim_curve.h"
#include "msg/zim_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_storeadmin_t zim_storeadmin_t;

//  Connects to the store at endpoint (with curve's client keys when not
//  NULL). Caller owns return value; NULL if the socket cannot be made.
zim_storeadmin_t *zim_storeadmin_new (const char *endpoint, const zim_curve_t *curve);
void zim_storeadmin_destroy (zim_storeadmin_t **self_p);

//  Answers req if its verb is one of the above (a zim_adminsrv_verb_fn:
//  arg is the zim_storeadmin_t). Returns the result (caller owns), or
//  NULL with *code and text set: ZIM_ERR_UNKNOWN_OP for another verb,
//  ZIM_ERR_BAD_FIELD for wrong arguments, ZIM_ERR_UNAVAILABLE when the
//  store did not answer in time, ZIM_ERR_INTERNAL when it failed.
char *zim_storeadmin_verb (void *arg, const zim_admin_req_t *req, int *code, char *text,
                           size_t size);

//  Self test of this class.
void zim_storeadmin_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
