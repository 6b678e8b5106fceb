/*  zim_broker.c: zim-broker, one cluster node (docs/OPERATIONS.md, "Running a
    cluster"): the broker actor over tcp://, joined to the cluster's routers.
*/
#include "tools/zim_node.h"

#include <czmq.h>

int main (int argc, char **argv)
{
    return zim_node_main ("zim-broker", ZIM_ROLE_BROKER, argc, argv);
}
