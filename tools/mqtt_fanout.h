/*  mqtt_fanout.h: mqtt-bench fanout, N QoS 0 subscribers of one topic and
    a paced publisher: the Mosquitto side of tools/bench-compare --room.
*/
#ifndef MQTT_FANOUT_H_INCLUDED
#define MQTT_FANOUT_H_INCLUDED

//  Runs `mqtt-bench fanout` (argv[0] "fanout") against the broker at
//  host (IPv4) and port. Returns the exit status: 0 every delivery made,
//  1 something missing, duplicated or out of order, 2 usage, 3 setup.
int mqtt_fanout_main (int argc, char **argv, const char *host, int port);

//  The usage lines of fanout.
extern const char *mqtt_fanout_usage;

#endif
