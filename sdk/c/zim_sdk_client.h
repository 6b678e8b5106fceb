/*  zim_sdk_client.h: what libzimclient's client class (zim_client.c)
    declares beyond the public zim_client.h: its own selftest. The public
    zim_client_test runs every selftest of the SDK; tests/zim_selftest runs
    them one by one.
*/
#ifndef ZIM_SDK_CLIENT_H_INCLUDED
#define ZIM_SDK_CLIENT_H_INCLUDED

#include "sdk/c/zim_client.h"

//  Selftest of the client class alone (frames fed by hand, refused
//  connections, a client destroyed inside its callback).
void zim_sdk_client_test (bool verbose);

#endif
