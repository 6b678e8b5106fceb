/*  zimctl.c: the admin command line. Talks to a node's admin endpoint over
    ZeroMQ; holds no secret of its own (tokens are signed by the server).
*/
#include "config.h"
#include "msg/zim_admin.h"
#include "msg/zim_curve.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <czmq.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>

static void s_usage (FILE *out)
{
    fprintf (out,
             "Usage: zimctl [-e ENDPOINT] [-k KEY] [-t MS] [--keys DIR] COMMAND [ARGS]\n"
             "\n"
             "Administers a running zim node over its admin endpoint.\n"
             "\n"
             "Commands:\n"
             "  token --app APP --uid UID [--ttl SECONDS]\n"
             "        print a client token for UID in APP, signed by the server\n"
             "        (default ttl 3600 s)\n"
             "  status [--json]\n"
             "        print every node, its role, address, whether it is alive, and\n"
             "        its counters (--json: one JSON document)\n"
             "  pushq [--json]\n"
             "        print the offline-push queue of the store behind the endpoint:\n"
             "        its depth, its oldest record and its counters\n"
             "  mute --app APP --uid UID --conv CONV [--until MS | --off]\n"
             "        no push for UID's conversation CONV until MS (ms since the\n"
             "        epoch; default: for ever); --off unmutes\n"
             "  push users|rooms|all [TARGETS] --app APP --data JSON\n"
             "        push data (any JSON) live: to every connection of the users\n"
             "        (TARGETS: alice,bob), to every connection in the rooms (once\n"
             "        per connection), or to every connection of APP (docs/API.md);\n"
             "        users with --persist [--id ID]: stored in each user's inbox, the\n"
             "        answer gives each user's seq, a retry with the same ID stores once\n"
             "  online --app APP USERS\n"
             "        the devices online of each user (USERS: alice,bob)\n"
             "  rooms --app APP [NAME] [--top N]\n"
             "        one room's connections, or the N rooms with most (10)\n"
             "  groups create --app APP --group GROUP [--channel] [--members U,U,...]\n"
             "         [--history]\n"
             "        a group (write fan-out, up to store/max_group_size members) or a\n"
             "        channel (read fan-out); --history: new members read earlier\n"
             "        messages (channels)\n"
             "  groups add|remove --app APP --group GROUP --members U,U,...\n"
             "  groups get|delete|upgrade --app APP --group GROUP\n"
             "        the group and its members; delete it; make it a channel\n"
             "  groups readers --app APP --group GROUP --gseq N\n"
             "        how many members read message N (groups of at most 200)\n"
             "  keygen [--client NAME] DIR\n"
             "        make the CURVE keys of a cluster in DIR (kept if there): the\n"
             "        cluster key pair every node holds (cluster.cert_secret) and\n"
             "        its public key (cluster.cert), and the admin client key pair\n"
             "        (admin.cert_secret; clients/admin.cert allows it on the admin\n"
             "        endpoints). --client NAME makes only a client key pair NAME\n"
             "\n"
             "Options:\n"
             "  -e, --endpoint ENDPOINT  admin endpoint (default %s)\n"
             "  -k, --key KEY            admin key (default: $ZIM_ADMIN_KEY, else the\n"
             "                           file $ZIM_DATA/admin.key or ./zim-data/admin.key)\n"
             "  -t, --timeout MS         how long to wait for the answer (default 5000)\n"
             "      --keys DIR           CURVE keys (zimctl keygen) for a node that uses\n"
             "                           CURVE (default: $ZIM_KEYS, else $ZIM_DATA/curve\n"
             "                           or ./zim-data/curve if it holds cluster.cert)\n"
             "      --client NAME        the client key pair to use (default admin)\n"
             "  -h, --help               this text\n"
             "\n"
             "Exit status: 0 success, 1 the server refused, 2 usage, 3 no answer.\n"
             "\n"
             "Examples:\n"
             "  zimctl token --app demo --uid alice\n"
             "  zimctl -e tcp://10.0.0.5:7710 -k \"$KEY\" status --json\n"
             "  zimctl keygen /etc/zim/curve\n",
             ZIM_ADMIN_ENDPOINT);
}

//  Takes --keys and --client, which may come before or after the command;
//  false for any other option.
static bool s_curve_option (int c, const char **keys, const char **client)
{
    if (c == 'K')
        *keys = optarg;
    else if (c == 'L')
        *client = optarg;
    return c == 'K' || c == 'L';
}

//  zimctl keygen [--client NAME] DIR: exit status 0 (made or kept), 1
//  (could not write), 2 (usage).
static int s_keygen (int argc, char **argv, const char *client)
{
    if (argc != 1) {
        fprintf (stderr, "zimctl: keygen needs one directory. Try 'zimctl --help'.\n");
        return 2;
    }
    const char *dir = argv[0];
    if (client && !zim_uid_valid (zim_str (client))) {
        fprintf (stderr, "zimctl: bad client name '%s' (1-64 of A-Za-z0-9_.@-)\n", client);
        return 2;
    }
    int made = 0;
    if (!client) {
        made = zim_curve_keygen_cluster (dir);
        if (made < 0)
            return 1;
        printf ("%s %s/cluster.cert and %s/cluster.cert_secret (the nodes' key pair)\n",
                made ? "made" : "kept", dir, dir);
    }
    const char *name = client ? client : "admin";
    made = zim_curve_keygen_client (dir, name);
    if (made < 0)
        return 1;
    printf ("%s %s/%s.cert_secret (client %s) and %s/clients/%s.cert (allows it on the admin "
            "endpoint)\n",
            made ? "made" : "kept", dir, name, name, dir, name);
    return 0;
}

//  Prints a pushq answer for people: depth, oldest record, counters.
static void s_print_pushq (const char *text)
{
    json_t *o = json_loads (text, 0, NULL);
    json_t *oldest = json_object_get (o, "oldest");
    printf ("push queue: %" PRId64 " records\n",
            (int64_t)json_integer_value (json_object_get (o, "depth")));
    if (json_is_object (oldest)) {
        int64_t ts = (int64_t)json_integer_value (json_object_get (oldest, "ts"));
        printf ("oldest: qid %" PRId64 ", %s in %s from %s, seq %" PRId64 ", %" PRId64
                " message(s), %" PRId64 " s old\n",
                (int64_t)json_integer_value (json_object_get (oldest, "qid")),
                json_string_value (json_object_get (oldest, "uid")),
                json_string_value (json_object_get (oldest, "conv")),
                json_string_value (json_object_get (oldest, "from")),
                (int64_t)json_integer_value (json_object_get (oldest, "seq")),
                (int64_t)json_integer_value (json_object_get (oldest, "count")),
                ((int64_t)zim_now_ms () - ts) / 1000);
    }
    const char *key;
    json_t *value;
    bool first = true;
    json_object_foreach (o, key,
                         value) if (json_is_integer (value) && strncmp (key, "push_", 5) == 0)
    {
        printf ("%s%s=%" PRId64, first ? "" : " ", key, (int64_t)json_integer_value (value));
        first = false;
    }
    printf ("\n");
    json_decref (o);
}

int main (int argc, char **argv)
{
    static const struct option options[] = {{"endpoint", required_argument, NULL, 'e'},
                                            {"key", required_argument, NULL, 'k'},
                                            {"timeout", required_argument, NULL, 't'},
                                            {"help", no_argument, NULL, 'h'},
                                            {"app", required_argument, NULL, 'A'},
                                            {"uid", required_argument, NULL, 'U'},
                                            {"ttl", required_argument, NULL, 'T'},
                                            {"json", no_argument, NULL, 'J'},
                                            {"version", no_argument, NULL, 'V'},
                                            {"keys", required_argument, NULL, 'K'},
                                            {"client", required_argument, NULL, 'L'},
                                            {"conv", required_argument, NULL, 'C'},
                                            {"until", required_argument, NULL, 'W'},
                                            {"off", no_argument, NULL, 'O'},
                                            {"data", required_argument, NULL, 'D'},
                                            {"top", required_argument, NULL, 'P'},
                                            {"group", required_argument, NULL, 'G'},
                                            {"members", required_argument, NULL, 'M'},
                                            {"channel", no_argument, NULL, 'H'},
                                            {"history", no_argument, NULL, 'Y'},
                                            {"gseq", required_argument, NULL, 'Q'},
                                            {"persist", no_argument, NULL, 'R'},
                                            {"id", required_argument, NULL, 'I'},
                                            {NULL, 0, NULL, 0}};
    const char *endpoint = ZIM_ADMIN_ENDPOINT, *key = NULL, *app = NULL, *uid = NULL, *ttl = "3600",
               *keys = NULL, *client = NULL, *conv = NULL, *until = "18446744073709551615";
    const char *data = NULL, *top = "10";
    const char *group = NULL, *members = "-", *gseq = NULL;
    bool channel = false, history = false, persist = false;
    const char *push_id = NULL;
    uint64_t timeout = 5000;
    bool json = false;
    int c;
    //  "+" stops at the command; its own options are parsed after it.
    while ((c = getopt_long (argc, argv, "+e:k:t:h", options, NULL)) != -1) {
        switch (c) {
        case 'e':
            endpoint = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 't':
            if (zim_parse_u64 (optarg, &timeout) || timeout == 0 || timeout > 600000) {
                fprintf (stderr, "zimctl: bad timeout '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h':
            s_usage (stdout);
            return 0;
        case 'V':
            printf ("zimctl %s\n", PACKAGE_VERSION);
            return 0;
        default:
            if (s_curve_option (c, &keys, &client))
                break;
            fprintf (stderr, "Try 'zimctl --help'.\n");
            return 2;
        }
    }
    if (optind >= argc) {
        s_usage (stderr);
        return 2;
    }
    const char *command = argv[optind];
    argc -= optind;
    argv += optind;
    optind = 1;
    //  groups SUBCOMMAND: taken before its options (parsing stays in
    //  order, as the "+" above set it).
    const char *sub = NULL;
    if (streq (command, "groups") && argc > 1 && argv[1][0] != '-') {
        sub = argv[1];
        argc--;
        argv++;
    }
    //  push, online and rooms take positional arguments among the options.
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    bool live = streq (command, "push") || streq (command, "online") || streq (command, "rooms");
    while (true) {
        c = getopt_long (argc, argv, "h", options, NULL);
        if (c == -1) {
            if (live && optind < argc && npos < 2) {
                pos[npos++] = argv[optind++];
                continue;
            }
            break;
        }
        switch (c) {
        case 'A':
            app = optarg;
            break;
        case 'U':
            uid = optarg;
            break;
        case 'T':
            ttl = optarg;
            break;
        case 'J':
            json = true;
            break;
        case 'C':
            conv = optarg;
            break;
        case 'W':
            until = optarg;
            break;
        case 'O':
            until = "0";
            break;
        case 'D':
            data = optarg;
            break;
        case 'P':
            top = optarg;
            break;
        case 'G':
            group = optarg;
            break;
        case 'M':
            members = optarg;
            break;
        case 'H':
            channel = true;
            break;
        case 'Y':
            history = true;
            break;
        case 'Q':
            gseq = optarg;
            break;
        case 'R':
            persist = true;
            break;
        case 'I':
            push_id = optarg;
            break;
        case 'h':
            s_usage (stdout);
            return 0;
        default:
            if (s_curve_option (c, &keys, &client))
                break;
            fprintf (stderr, "Try 'zimctl --help'.\n");
            return 2;
        }
    }
    if (streq (command, "keygen"))
        return s_keygen (argc - optind, argv + optind, client);
    if (optind < argc) {
        fprintf (stderr, "zimctl: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char *owned_key = key ? NULL : zim_admin_key_default ();
    if (!key)
        key = owned_key;
    if (!key) {
        fprintf (stderr, "zimctl: no admin key: use -k, $ZIM_ADMIN_KEY or run next to "
                         "./zim-data/admin.key\n");
        return 2;
    }
    const char *args[7] = {NULL}; //  up to six and the NULL that ends them
    const char *verb = command;
    if (streq (command, "token")) {
        if (!app || !uid) {
            fprintf (stderr, "zimctl: token needs --app and --uid\n");
            free (owned_key);
            return 2;
        }
        args[0] = app;
        args[1] = uid;
        args[2] = ttl;
    } else if (streq (command, "status")) {
        if (!json)
            args[0] = "text";
    } else if (streq (command, "mute")) {
        if (!app || !uid || !conv) {
            fprintf (stderr, "zimctl: mute needs --app, --uid and --conv\n");
            free (owned_key);
            return 2;
        }
        args[0] = app;
        args[1] = uid;
        args[2] = conv;
        args[3] = until;
    } else if (streq (command, "push")) {
        bool all = pos[0] && streq (pos[0], "all");
        if (!app || !data || !pos[0] || (!all && !pos[1])) {
            fprintf (stderr, "zimctl: push users|rooms TARGETS or push all, with --app and "
                             "--data JSON\n");
            free (owned_key);
            return 2;
        }
        args[0] = app;
        args[1] = pos[0];
        args[2] = all ? "" : pos[1];
        args[3] = data;
        //  Stored in each user's inbox (docs/API.md, "Persisted pushes").
        if (persist) {
            args[4] = "persist";
            args[5] = push_id;
        }
    } else if (streq (command, "online")) {
        if (!app || !pos[0]) {
            fprintf (stderr, "zimctl: online needs --app and USERS (alice,bob)\n");
            free (owned_key);
            return 2;
        }
        args[0] = app;
        args[1] = pos[0];
    } else if (streq (command, "rooms")) {
        if (!app) {
            fprintf (stderr, "zimctl: rooms needs --app\n");
            free (owned_key);
            return 2;
        }
        args[0] = app;
        args[1] = pos[0] ? pos[0] : "";
        args[2] = top;
    } else if (streq (command, "groups")) {
        //  groups SUB --app APP --group GROUP ... (tools/zim_storeadmin.h)
        bool add = sub && streq (sub, "add"), remove = sub && streq (sub, "remove");
        bool plain = sub && (streq (sub, "get") || streq (sub, "delete") || streq (sub, "upgrade"));
        bool readers = sub && streq (sub, "readers");
        if (!app || !group || (readers && !gseq) ||
            !(add || remove || plain || readers || (sub && streq (sub, "create")))) {
            fprintf (stderr, "zimctl: groups create|add|remove|get|delete|upgrade|readers needs "
                             "--app and --group (readers: --gseq)\n");
            free (owned_key);
            return 2;
        }
        args[0] = add || remove ? "members" : sub;
        args[1] = app;
        args[2] = group;
        if (add || remove) {
            args[3] = add ? members : "-";
            args[4] = add ? "-" : members;
        } else if (readers)
            args[3] = gseq;
        else if (!plain) {
            args[3] = channel ? "channel" : "group";
            args[4] = members;
            args[5] = history ? "history" : NULL;
        }
    } else if (!streq (command, "pushq")) {
        fprintf (stderr, "zimctl: unknown command '%s'. Try 'zimctl --help'.\n", command);
        free (owned_key);
        return 2;
    }
    //  CURVE keys: given, or found where the admin key is looked for.
    char *owned_keys = keys ? NULL : zim_admin_keys_default ();
    if (!keys)
        keys = owned_keys;
    zim_curve_t *curve = NULL;
    if (keys) {
        curve = zim_curve_load_client (keys, client ? client : "admin", false);
        if (!curve) {
            fprintf (stderr, "zimctl: no usable CURVE client keys in %s (zimctl keygen)\n", keys);
            free (owned_key);
            free (owned_keys);
            return 2;
        }
    }
    char *text = NULL;
    int code = zim_admin_call_curve (endpoint, curve, key, (int)timeout, verb, args, &text);
    zim_curve_destroy (&curve);
    free (owned_keys);
    free (owned_key);
    if (code == 0 && streq (command, "pushq") && !json) {
        s_print_pushq (text);
        free (text);
        return 0;
    }
    if (code == 0) {
        size_t len = strlen (text);
        printf ("%s%s", text, len && text[len - 1] == '\n' ? "" : "\n");
        free (text);
        return 0;
    }
    fprintf (stderr, "zimctl: %s (%d)\n", text ? text : zim_strerror (code), code);
    free (text);
    return code == ZIM_ERR_UNAVAILABLE ? 3 : 1;
}
