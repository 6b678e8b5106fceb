/*  zim_apigroups.h: groups and channels over the backend API (docs/API.md,
    "Groups"): POST /v1/groups, POST /v1/groups/ID/members, GET and DELETE
    /v1/groups/ID, POST /v1/groups/ID/upgrade. Each request is checked
    whole, then handed as the admin verb "groups" to the same function
    zimctl groups reaches (zim_storeadmin_verb on the node's own store): one
    code path, one GADMIN, one LMDB transaction, so nothing is half-applied.
    The store's refusals keep their wire codes (4041-4043, 4001) in the
    answer's "zim_code", with an HTTP status that fits (404, 409, 400).
*/
#ifndef ZIM_APIGROUPS_H_INCLUDED
#define ZIM_APIGROUPS_H_INCLUDED

#include "msg/zim_admin.h"
#include "tools/zim_adminsrv.h"

#include <jansson.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

//  True if path is one of this class's (/v1/groups...).
bool zim_apigroups_path (const char *path);

//  Answers method on path for app, with the request body doc (a JSON
//  object, or NULL for GET and DELETE), through the store's admin verb fn
//  (arg its argument; fn NULL: this node has no store, 503). Returns the
//  HTTP status; *json (caller owns) is the answer, or the error document
//  {"error":{"code","text"[,"zim_code"]}} when the status is not 200.
int zim_apigroups_handle (zim_adminsrv_verb_fn *fn, void *arg, const char *method, const char *path,
                          const char *app, json_t *doc, char **json);

//  Self test of this class.
void zim_apigroups_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
