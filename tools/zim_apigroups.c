/*  zim_apigroups.c: groups and channels over the backend API
    (zim_apigroups.h). A request becomes the argument list of the admin
    verb "groups" (tools/zim_storeadmin.h) and goes through the very
    function zimctl's requests reach.
*/
#include "tools/zim_apigroups.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <string.h>

#define S_MAX_MEMBERS 100000 //  members named in one request (a channel's limit)

bool zim_apigroups_path (const char *path)
{
    return strcmp (path, "/v1/groups") == 0 || strncmp (path, "/v1/groups/", 11) == 0;
}

//  An error document; returns status.
static int s_error (int status, const char *code, const char *text, int zim_code, char **json)
{
    json_t *err = json_pack ("{s:s, s:s}", "code", code, "text", text);
    if (zim_code)
        json_object_set_new (err, "zim_code", json_integer (zim_code));
    json_t *doc = json_pack ("{s:o}", "error", err);
    *json = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    return status;
}

//  The uids of array v (absent: none) joined by commas into *out ("-" if
//  none; caller frees). Returns 0, or -1 if v is not an array of user ids.
static int s_members (json_t *v, char **out)
{
    if (v && !json_is_array (v))
        return -1;
    size_t n = v ? json_array_size (v) : 0;
    if (n > S_MAX_MEMBERS)
        return -1;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *u = json_string_value (json_array_get (v, i));
        if (!u || !zim_uid_valid (zim_str (u)))
            return -1;
        len += strlen (u) + 1;
    }
    char *s = zim_malloc (len + 2);
    strcpy (s, n ? "" : "-");
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat (s + strlen (s), ",");
        strcat (s + strlen (s), json_string_value (json_array_get (v, i)));
    }
    *out = s;
    return 0;
}

//  The HTTP status and error code of a refusal with wire code.
static int s_status (int code, const char **name)
{
    switch (code) {
    case ZIM_ERR_NO_GROUP:
        *name = "no_group";
        return 404;
    case ZIM_ERR_GROUP_EXISTS:
        *name = "exists";
        return 409;
    case ZIM_ERR_GROUP_FULL:
        *name = "group_full";
        return 400;
    case ZIM_ERR_BAD_FIELD:
        *name = "bad_field";
        return 400;
    case ZIM_ERR_UNAVAILABLE:
    case ZIM_ERR_TIMEOUT:
        *name = "unavailable";
        return 503;
    default:
        *name = "internal";
        return 500;
    }
}

int zim_apigroups_handle (zim_adminsrv_verb_fn *fn, void *arg, const char *method, const char *path,
                          const char *app, json_t *doc, char **json)
{
    //  /v1/groups, /v1/groups/ID, /v1/groups/ID/members, /v1/groups/ID/upgrade
    char group[128] = "", what[32] = "";
    bool post = strcmp (method, "POST") == 0, get = strcmp (method, "GET") == 0,
         del = strcmp (method, "DELETE") == 0;
    const char *rest = path + strlen ("/v1/groups");
    if (*rest == '/') {
        rest++;
        size_t glen = strcspn (rest, "/");
        if (glen == 0 || glen >= sizeof group || strlen (rest + glen) >= sizeof what)
            return s_error (404, "not_found", "no such endpoint (docs/API.md)", 0, json);
        memcpy (group, rest, glen);
        snprintf (what, sizeof what, "%s", rest + glen);
        if (!zim_uid_valid (zim_str (group)))
            return s_error (400, "bad_field", "a group id is 1..64 of A-Z a-z 0-9 _ . @ -", 0,
                            json);
    }
    const char *op = NULL;
    bool ok_method = false;
    if (!*group)
        op = "create", ok_method = post;
    else if (!*what)
        op = get ? "get" : "delete", ok_method = get || del;
    else if (strcmp (what, "/members") == 0)
        op = "members", ok_method = post;
    else if (strcmp (what, "/upgrade") == 0)
        op = "upgrade", ok_method = post;
    else
        return s_error (404, "not_found", "no such endpoint (docs/API.md)", 0, json);
    if (!ok_method)
        return s_error (405, "method_not_allowed",
                        *group && !*what ? "use GET or DELETE" : "use POST", 0, json);
    if (post && !json_is_object (doc))
        return s_error (400, "bad_json", "the body must be a JSON object", 0, json);

    //  The verb's arguments, checked whole first.
    const char *args[6] = {op, app, group, NULL, NULL, NULL};
    size_t nargs = 3;
    char *a = NULL, *b = NULL;
    const char *bad = NULL;
    if (streq (op, "create")) {
        const char *id = json_string_value (json_object_get (doc, "group"));
        json_t *kind = json_object_get (doc, "kind"),
               *hist = json_object_get (doc, "history_for_new");
        if (!id || !zim_uid_valid (zim_str (id)) || strlen (id) >= sizeof group)
            bad = "group must be a group id (1..64 of A-Z a-z 0-9 _ . @ -)";
        else if (kind && (!json_is_string (kind) || (!streq (json_string_value (kind), "group") &&
                                                     !streq (json_string_value (kind), "channel"))))
            bad = "kind must be \"group\" or \"channel\"";
        else if (hist && !json_is_boolean (hist))
            bad = "history_for_new must be true or false";
        else if (s_members (json_object_get (doc, "members"), &a))
            bad = "members must be an array of user ids (at most 100000)";
        else {
            snprintf (group, sizeof group, "%s", id);
            args[3] = kind ? json_string_value (kind) : "group";
            args[4] = a;
            nargs = 5;
            if (json_is_true (hist))
                args[nargs++] = "history";
        }
    } else if (streq (op, "members")) {
        json_t *add = json_object_get (doc, "add"), *remove = json_object_get (doc, "remove");
        if (s_members (add, &a) || s_members (remove, &b))
            bad = "add and remove must be arrays of user ids (at most 100000)";
        else if (streq (a, "-") && streq (b, "-"))
            bad = "add or remove must name at least one user";
        else {
            args[3] = a;
            args[4] = b;
            nargs = 5;
        }
    }
    int status;
    if (bad)
        status = s_error (400, "bad_field", bad, 0, json);
    else if (!fn)
        status = s_error (503, "unavailable",
                          "this node has no store: use the API of the node whose store holds "
                          "the group",
                          0, json);
    else {
        zim_admin_req_t req;
        memset (&req, 0, sizeof req);
        req.verb = zim_str ("groups");
        for (size_t i = 0; i < nargs; i++)
            req.args[i] = zim_str (args[i]);
        req.nargs = (uint32_t)nargs;
        int code = 0;
        char text[512] = "";
        char *answer = fn (arg, &req, &code, text, sizeof text);
        if (answer) {
            *json = answer;
            status = 200;
        } else {
            const char *name;
            status = s_status (code, &name);
            status = s_error (status, name, text, code, json);
        }
    }
    free (a);
    free (b);
    return status;
}

//  -------------------------------------------------------------------------
//  Selftest: a fake store verb that records what it was asked.

static char s_test_asked[512];

static char *s_test_verb (void *arg, const zim_admin_req_t *req, int *code, char *text, size_t size)
{
    (void)arg;
    size_t len = 0;
    for (uint32_t i = 0; i < req->nargs; i++)
        len += (size_t)snprintf (s_test_asked + len, sizeof s_test_asked - len, "%s%.*s",
                                 i ? " " : "", (int)req->args[i].len, req->args[i].ptr);
    if (zim_str_eq (req->args[2], "taken")) {
        *code = ZIM_ERR_GROUP_EXISTS;
        snprintf (text, size, "the store refused it");
        return NULL;
    }
    *code = 0;
    return zim_strdup ("{\"ok\":true}");
}

void zim_apigroups_test (bool verbose)
{
    (void)verbose;
    char *json = NULL;
    json_t *doc = json_loads ("{\"group\":\"g1\",\"kind\":\"channel\",\"members\":[\"a\",\"b\"],"
                              "\"history_for_new\":true}",
                              0, NULL);
    assert (zim_apigroups_path ("/v1/groups") && zim_apigroups_path ("/v1/groups/x") &&
            !zim_apigroups_path ("/v1/groupsx"));
    assert (zim_apigroups_handle (s_test_verb, NULL, "POST", "/v1/groups", "demo", doc, &json) ==
            200);
    assert (streq (s_test_asked, "create demo g1 channel a,b history"));
    free (json);
    json_decref (doc);
    doc = json_loads ("{\"add\":[\"c\"]}", 0, NULL);
    assert (zim_apigroups_handle (s_test_verb, NULL, "POST", "/v1/groups/g1/members", "demo", doc,
                                  &json) == 200);
    assert (streq (s_test_asked, "members demo g1 c -"));
    free (json);
    json_decref (doc);
    assert (zim_apigroups_handle (s_test_verb, NULL, "GET", "/v1/groups/g1", "demo", NULL, &json) ==
                200 &&
            streq (s_test_asked, "get demo g1"));
    free (json);
    assert (zim_apigroups_handle (s_test_verb, NULL, "DELETE", "/v1/groups/g1", "demo", NULL,
                                  &json) == 200 &&
            streq (s_test_asked, "delete demo g1"));
    free (json);
    //  Refusals: nothing reaches the store.
    s_test_asked[0] = 0;
    doc = json_loads ("{\"add\":[\"c d\"]}", 0, NULL);
    assert (zim_apigroups_handle (s_test_verb, NULL, "POST", "/v1/groups/g1/members", "demo", doc,
                                  &json) == 400 &&
            strstr (json, "bad_field"));
    free (json);
    json_decref (doc);
    doc = json_loads ("{}", 0, NULL);
    assert (zim_apigroups_handle (s_test_verb, NULL, "POST", "/v1/groups/g1/members", "demo", doc,
                                  &json) == 400);
    free (json);
    assert (zim_apigroups_handle (s_test_verb, NULL, "POST", "/v1/groups", "demo", doc, &json) ==
            400);
    free (json);
    json_decref (doc);
    assert (zim_apigroups_handle (s_test_verb, NULL, "POST", "/v1/groups/g1", "demo", NULL,
                                  &json) == 405);
    free (json);
    assert (zim_apigroups_handle (s_test_verb, NULL, "GET", "/v1/groups/g1/other", "demo", NULL,
                                  &json) == 404);
    free (json);
    assert (zim_apigroups_handle (NULL, NULL, "GET", "/v1/groups/g1", "demo", NULL, &json) == 503);
    free (json);
    assert (s_test_asked[0] == 0);
    //  The store's refusal: its code kept.
    doc = json_object ();
    assert (zim_apigroups_handle (s_test_verb, NULL, "POST", "/v1/groups/taken/upgrade", "demo",
                                  doc, &json) == 409);
    json_decref (doc);
    assert (strstr (json, "\"zim_code\":4043") && strstr (json, "\"exists\""));
    free (json);
}
