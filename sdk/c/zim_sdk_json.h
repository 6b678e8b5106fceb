/*  zim_sdk_json.h: msgpack to JSON, private to libzimclient; the functions
    themselves (zim_body_to_json, zim_json_string) are public, declared in
    zim_client.h.
*/
#ifndef ZIM_SDK_JSON_H_INCLUDED
#define ZIM_SDK_JSON_H_INCLUDED

#include "sdk/c/zim_client.h"

//  Selftest.
void zim_sdk_json_test (bool verbose);

#endif
