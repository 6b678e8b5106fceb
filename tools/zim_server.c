/*  zim_server.c: zim-server, every node type in one process over inproc://.
    The embedded default a new user starts with.
*/
#include "tools/zim_node.h"

#include <czmq.h>

int main (int argc, char **argv)
{
    zsys_init ();
    zim_node_t *node = zim_node_new ("zim-server", ZIM_ROLE_ALL);
    int rc = zim_node_configure (node, argc, argv);
    if (rc != 0) {
        zim_node_destroy (&node);
        return rc > 0 ? 0 : 2;
    }
    if (zim_node_start (node)) {
        zim_node_destroy (&node);
        return 1;
    }
    zim_node_run (node);
    zim_node_destroy (&node);
    return 0;
}
