/*  zim_router.c: zim-router, one cluster node (docs/OPERATIONS.md, "Running a
    cluster"): the router actor over tcp://, joined to the cluster's routers.
*/
#include "tools/zim_node.h"

#include <czmq.h>

int main (int argc, char **argv)
{
    return zim_node_main ("zim-router", ZIM_ROLE_ROUTER, argc, argv);
}
