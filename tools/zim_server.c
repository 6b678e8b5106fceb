/*  zim_server.c: zim-server, every node type in one process over inproc://.
    The embedded default a new user starts with.
*/
#include "tools/zim_node.h"

#include <czmq.h>

int main (int argc, char **argv)
{
    return zim_node_main ("zim-server", ZIM_ROLE_ALL, argc, argv);
}
