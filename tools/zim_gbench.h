/*  zim_gbench.h: zim-bench group, the group and channel benchmark. Makes
    a group (or channel) of M members through the admin endpoint, connects
    S senders (members) and K other members, and has the senders send N
    messages each, closed-loop with a window. Reports acked messages per
    second and, for a group, durable member inbox writes per second (each
    ack comes after the message is in all M inboxes), send-to-deliver
    latency at the K connected members, and checks that those got every
    message once, each sender's in order, with gap-free seqs.
*/
#ifndef ZIM_GBENCH_H_INCLUDED
#define ZIM_GBENCH_H_INCLUDED

#ifdef __cplusplus
extern "C" {
#endif

//  Mints a client token for uid. Caller owns return value; NULL on failure.
typedef char *(zim_gbench_mint_fn) (void *arg, const char *uid);
//  Runs the admin verb groups with args (NULL-terminated); 0 or a code.
typedef int (zim_gbench_admin_fn) (void *arg, const char *const *args);

//  Runs `zim-bench group` with argv[0] = "group" and its options, against
//  url, users of app, tokens from mint, groups made through admin. Returns the exit
//  status (0 ok, 1 lost/duplicated/reordered, 2 usage, 3 setup).
int zim_gbench_main (int argc, char **argv, const char *url, const char *app,
                     zim_gbench_mint_fn *mint, zim_gbench_admin_fn *admin, void *arg);

//  The usage lines of group.
extern const char *zim_gbench_usage;

#ifdef __cplusplus
}
#endif
#endif
