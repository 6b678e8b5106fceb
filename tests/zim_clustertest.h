/*  zim_clustertest.h: what the cluster black-box tests share: the test
    cluster, logins, counters from the cluster status, senders that retry as
    a client must, receiving devices that deduplicate by seq, and inbox
    checks (tests/test_cluster.c, tests/test_cluster_stall.c).
*/
#ifndef ZIM_CLUSTERTEST_H_INCLUDED
#define ZIM_CLUSTERTEST_H_INCLUDED

#include "tests/zim_testkit.h"

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  The cluster of the running test case.
extern tk_cluster_t ct_cl;
//  Its store shards' names.
extern const char *const ct_shard_names[];

//  Messages a sender can have out.
#define CT_MAX_OUT 4096

//  One message a sender wants acked.
typedef struct {
    char to[32];      //  recipient
    char cid[32];     //  client id, also the body
    int64_t first_ms; //  first send
    int64_t sent_ms;  //  last (re)send
    int64_t retry_ms; //  resend at this time after an error (0: none)
    bool acked;       //  ack received
    uint64_t id, seq; //  from the ack
} ct_out_t;

//  A sending client.
typedef struct {
    tk_client_t *c;       //  its connection
    char uid[32];         //  user
    int index;            //  in the cids: "m<index>.<n>"
    ct_out_t *out;        //  messages, CT_MAX_OUT
    int n;                //  how many created
    int unacked;          //  how many not acked yet
    int64_t next_ms;      //  next new message (steady stream)
    int errors, timeouts; //  5030/5040 answers, resends after silence
    int resends;          //  all resends
    int64_t max_ack_ms;   //  longest first send -> ack
    char gw[16];          //  its gateway
    char last_error[160]; //  the last error frame, for failure messages
} ct_sender_t;

//  A receiving client.
typedef struct {
    tk_client_t *c;       //  its connection
    char uid[32];         //  user
    char label[48];       //  uid/device@gw for messages
    uint64_t *ids;        //  ids[seq]: the message delivered with seq (0: none yet)
    size_t cap;           //  size of ids
    uint64_t max_seq;     //  highest seq seen
    size_t frames;        //  msg frames received, repeats included
    size_t repeats;       //  msg frames with a seq seen before (dropped)
    char gw[16];          //  its gateway
    char last_error[160]; //  the last error frame, for failure messages
} ct_device_t;

//  Check fixture: a cluster of 1 router, 2 stores, 2 brokers, 2 gateways.
void ct_setup (void);

//  Check fixture: a cluster of 1 router, 2 stores, 1 broker, 1 gateway.
void ct_setup_shards (void);

//  Check fixture: stops every node cleanly and looks for sanitizer reports.
void ct_teardown (void);

//  The node called name (the test fails if there is none).
tk_node_t *ct_node (const char *name);

//  Fails the test if the server closed c: says with which close status and
//  last error frame, and shows the end of the gateway's log.
void ct_check_open (tk_client_t *c, const char *label, const char *gw, const char *last_error);

//  An authenticated client of uid/device on gateway gw.
tk_client_t *ct_login (const char *gw, const char *uid, const char *device);

//  The counter field of node name in a status JSON (its last heartbeat's
//  stats), or -1 if the node or the field is not there.
long ct_stat (const char *json, const char *name, const char *field);

//  Waits until router holds n routes (as its counters in gw-1's map say:
//  up to 2 s old): a device is reachable live only once its route is
//  there, which is after its auth_ok. Returns how long it waited (ms).
int64_t ct_wait_routes_on (const char *router, int n, int timeout_ms);

//  ct_wait_routes_on router-1, within 10 s.
void ct_wait_routes (int n);

//  The shard index (0: store-1) of uid, as every broker computes it.
int ct_shard_of (const char *uid);

//  The broker index (0: broker-1) of sender uid while both brokers live.
int ct_broker_of (const char *uid);

//  Picks the first uid "prefixN" on the wanted shard and broker (-1: any).
void ct_pick (const char *prefix, int shard, int broker, char *uid, size_t size);

//  qsort order of uint64_t.
int ct_cmp_u64 (const void *a, const void *b);

//  A sender: uid logged in on gw as device "phone"; index names its cids.
void ct_sender_init (ct_sender_t *s, int index, const char *gw, const char *uid);

//  Closes the sender and frees its messages.
void ct_sender_destroy (ct_sender_t *s);

//  Queues one more message to to and sends it.
ct_out_t *ct_sender_add (ct_sender_t *s, const char *to);

//  Takes every frame the sender has now; resends what is due.
void ct_sender_pump (ct_sender_t *s);

//  Sends n messages to to (cids prefix1..prefixN), pipelined, and waits
//  until all are acked, retrying. The sender must have no other traffic.
void ct_send_all (ct_sender_t *s, const char *to, int n, int timeout_ms);

//  The seqs of the sender's acks, sorted; each send must be acked. Caller
//  frees.
uint64_t *ct_sender_acked_seqs (ct_sender_t *s);

//  Every ack of the sender names a distinct seq of its inbox, 1..n: nothing
//  was stored twice.
void ct_sender_check_seqs (ct_sender_t *s);

//  A receiving device: uid/device logged in on gw.
void ct_device_init (ct_device_t *d, const char *gw, const char *uid, const char *device);

//  Closes the device and frees what it recorded.
void ct_device_destroy (ct_device_t *d);

//  Records one delivery: a seq seen before must carry the same message.
void ct_device_take (ct_device_t *d, const tk_frame_t *f);

//  Takes the device's msg frames for up to timeout_ms (1: what is there).
void ct_device_pump (ct_device_t *d, int timeout_ms);

//  True if the device got a message with this id live.
bool ct_device_has (const ct_device_t *d, uint64_t id);

//  Reads uid's whole inbox through client c by sync pages from seq 0: the
//  seqs must be 1..n without a gap. Returns n; *ids_p gets ids by seq-1
//  (caller frees).
size_t ct_inbox (tk_client_t *c, const char *label, uint64_t **ids_p);

//  The acked ids of the senders' messages to or from uid, sorted. Returns
//  the count.
size_t ct_acked_to (ct_sender_t *senders, int ns, const char *uid, uint64_t **ids_p);

//  uid's inbox (read by sync through c) holds exactly the acked messages
//  of the senders to or from uid, each once, at seqs 1..n.
void ct_check_inbox (tk_client_t *c, const char *uid, ct_sender_t *senders, int ns);

//  Pumps the senders (a steady stream if produce: one new message per
//  sender every 10 ms, at most 32 unacked each, to the recipients in
//  turn) and the devices for duration_ms.
void ct_stream (ct_sender_t *senders, int ns, ct_device_t *devices, int nd, const char *const *to,
                int nto, bool produce, int duration_ms);

//  Stops producing and pumps until every send is acked.
void ct_drain (ct_sender_t *senders, int ns, ct_device_t *devices, int nd, int timeout_ms);

//  Sends from s to to, one message every 300 ms, until d receives one of
//  them live; returns how long after since (monotonic ms) that was, or -1
//  if none did within timeout_ms of since.
int64_t ct_live_again (ct_sender_t *s, const char *to, ct_device_t *d, int64_t since,
                       int timeout_ms);

//  Adds test to suite s as a case of its own (so that CK_RUN_CASE=NAME
//  runs it alone), with setup and ct_teardown around it, 120 s at most.
void ct_add_with (Suite *s, const TTest *test, SFun setup);

#endif
