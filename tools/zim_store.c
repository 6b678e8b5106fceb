/*  zim_store.c: zim-store, one cluster node (docs/OPERATIONS.md, "Running a
    cluster"): the store actor over tcp://, joined to the cluster's routers.
*/
#include "tools/zim_node.h"

#include <czmq.h>

int main (int argc, char **argv)
{
    return zim_node_main ("zim-store", ZIM_ROLE_STORE, argc, argv);
}
