/*  zim_nodeconf.h: a node program's options and config. Reads the command
    line and the config file it names (ZPL, docs/OPERATIONS.md), lays the
    command line over the file, checks what can be checked before start,
    and hands each actor its config section as SET commands.
*/
#ifndef ZIM_NODECONF_H_INCLUDED
#define ZIM_NODECONF_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Roles a node runs; zim-server runs them all.
#define ZIM_ROLE_GATEWAY 1
#define ZIM_ROLE_BROKER 2
#define ZIM_ROLE_ROUTER 4
#define ZIM_ROLE_STORE 8
#define ZIM_ROLE_ALL 15

//  Broker actors zim-server can run.
#define ZIM_MAX_BROKERS 16

typedef struct _zim_nodeconf_t zim_nodeconf_t;

//  Creates the config of a program running roles. Caller owns return value.
zim_nodeconf_t *zim_nodeconf_new (const char *program, int roles);
void zim_nodeconf_destroy (zim_nodeconf_t **self_p);

//  Parses the command line (and the config file it names). Returns 0 to go
//  on, 1 when it printed --help or --version (exit 0), -1 on a usage error
//  or a config that cannot run (printed to stderr; exit 2).
int zim_nodeconf_parse (zim_nodeconf_t *self, int argc, char **argv);

//  Takes a config file's text (ZPL) as the config, as -c FILE does;
//  zim_nodeconf_parse then lays its command line over it and checks the
//  result. Returns 0, or -1 if the text is not ZPL.
int zim_nodeconf_load (zim_nodeconf_t *self, const char *text, size_t len);

//  The value at path ("section/key"), or def.
const char *zim_nodeconf_get (zim_nodeconf_t *self, const char *path, const char *def);
//  The config tree (borrowed).
zconfig_t *zim_nodeconf_tree (zim_nodeconf_t *self);
//  Sends SET key value to actor for every key of one section.
void zim_nodeconf_apply (zim_nodeconf_t *self, zactor_t *actor, const char *section);

//  The program name, its roles, whether it is one cluster node (not
//  zim-server), and its default node name (gw-1, broker-1, ...).
const char *zim_nodeconf_program (zim_nodeconf_t *self);
int zim_nodeconf_roles (zim_nodeconf_t *self);
bool zim_nodeconf_cluster (zim_nodeconf_t *self);
const char *zim_nodeconf_default_name (zim_nodeconf_t *self);

//  Prints --help.
void zim_nodeconf_usage (zim_nodeconf_t *self, FILE *out);

//  Self test of this class.
void zim_nodeconf_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
