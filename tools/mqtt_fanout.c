/*  mqtt_fanout.c: mqtt-bench fanout, the MQTT side of tools/bench-compare's
    room mode: N subscribers of one topic at QoS 0 (tools/zim_fanout's
    client processes, as zim-bench room uses), one publisher publishing M
    stamped messages at R msgs/s at QoS 0. Prints zim-bench room's figures
    and JSON keys: deliveries/s from the first scheduled publish to the
    last delivery, p50/p99 from each message's scheduled time, missing.
*/
#include "tools/mqtt_fanout.h"
#include "tools/zim_benchkit.h"
#include "tools/zim_fanout.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>

const char *mqtt_fanout_usage =
    "fanout: N subscribers of one topic at QoS 0 over client processes, one\n"
    "publisher publishing M messages at R msgs/s at QoS 0, each stamped with its\n"
    "scheduled time (the shape of zim-bench room). Options:\n"
    "  --subscribers N  subscribers (default 1000; --members is the same)\n"
    "  --rate R         messages/s published (default 100)\n"
    "  --messages M     messages (default 200)\n"
    "  --procs P        client processes (default one per 5,000 subscribers)\n"
    "  --sources K      loopback source addresses (default 4)\n"
    "  --size B         payload bytes, at least 16 (default 32)\n"
    "  --timeout S      seconds to wait for deliveries after the last publish (30)\n"
    "  --json           one JSON line with zim-bench room's keys\n";

static volatile sig_atomic_t s_interrupted = 0;

static void s_on_signal (int sig)
{
    (void)sig;
    s_interrupted = 1;
}

static double s_cpu_all (void)
{
    struct rusage ru;
    getrusage (RUSAGE_CHILDREN, &ru);
    return zim_benchkit_cpu_s () + (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int mqtt_fanout_main (int argc, char **argv, const char *host, int port)
{
    static const struct option options[] = {{"subscribers", required_argument, NULL, 'N'},
                                            {"members", required_argument, NULL, 'N'},
                                            {"rate", required_argument, NULL, 'R'},
                                            {"messages", required_argument, NULL, 'M'},
                                            {"procs", required_argument, NULL, 'P'},
                                            {"sources", required_argument, NULL, 's'},
                                            {"size", required_argument, NULL, 'S'},
                                            {"timeout", required_argument, NULL, 'T'},
                                            {"json", no_argument, NULL, 'J'},
                                            {NULL, 0, NULL, 0}};
    uint32_t members = 1000, rate = 100, messages = 200, procs = 0, sources = 4, size = 32;
    uint32_t timeout_s = 30;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long (argc, argv, "", options, NULL)) != -1) {
        uint32_t *field = c == 'N'   ? &members
                          : c == 'R' ? &rate
                          : c == 'M' ? &messages
                          : c == 'P' ? &procs
                          : c == 's' ? &sources
                          : c == 'S' ? &size
                          : c == 'T' ? &timeout_s
                                     : NULL;
        if (c == 'J')
            json = true;
        else if (!field || zim_benchkit_parse_num (optarg, c == 's' ? 254 : 100000000, field)) {
            fprintf (stderr, "mqtt-bench: bad fanout option. Try 'mqtt-bench --help'.\n");
            return 2;
        }
    }
    if (optind != argc || size < ZIM_BENCHKIT_STAMP || size > 60000) {
        fprintf (stderr, "mqtt-bench: fanout takes options only; --size 16..60000\n");
        return 2;
    }
    if (!procs)
        procs = (members + 4999) / 5000;
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
    uint32_t rnd = 0;
    if (getrandom (&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
        rnd = (uint32_t)zim_benchkit_now_us ();
    char topic[64];
    snprintf (topic, sizeof topic, "mqtt-bench/fanout/%06x", rnd & 0xffffff);
    zim_fanout_config_t cfg = {.proto = ZIM_FANOUT_MQTT,
                               .host = host,
                               .port = port,
                               .count = members,
                               .procs = procs,
                               .sources = sources,
                               .room = topic,
                               .messages = messages};
    uint64_t t0 = zim_benchkit_now_us ();
    zim_fanout_t *fan = zim_fanout_new (&cfg);
    int status = fan ? 0 : 3;
    uint64_t up = fan ? zim_fanout_wait_ready (fan, 120000) : 0;
    if (status == 0 && up < members) {
        fprintf (stderr, "mqtt-bench: only %" PRIu64 " of %u subscribers came up\n", up, members);
        status = 3;
    }
    uint64_t t_ready = zim_benchkit_now_us ();
    zim_fanout_pub_t *pub = status ? NULL : zim_fanout_pub_new (&cfg, NULL, 10000);
    if (status == 0 && !pub)
        status = 3;
    uint64_t expect = (uint64_t)members * messages, sent = 0, t_start = 0, t_end = 0;
    zim_benchkit_hist_t behind;
    memset (&behind, 0, sizeof behind);
    uint8_t body[60000];
    memset (body, 'x', sizeof body);
    double cpu0 = s_cpu_all ();
    if (status == 0) {
        t_start = zim_benchkit_now_us () + 1000;
        uint64_t deadline = 0;
        while (!s_interrupted) {
            uint64_t now = zim_benchkit_now_us ();
            while (sent < messages) {
                uint64_t due = t_start + (uint64_t)((double)sent * 1e6 / rate);
                if (due > now)
                    break;
                zim_benchkit_stamp (body, due, 0, (uint32_t)sent);
                if (zim_fanout_pub_send (pub, body, size)) {
                    fprintf (stderr, "mqtt-bench: the publisher's connection is gone\n");
                    messages = (uint32_t)sent;
                    break;
                }
                zim_benchkit_hist_add (&behind, now - due);
                sent++;
            }
            if (sent == messages && !deadline) {
                t_end = zim_benchkit_now_us ();
                deadline = t_end + (uint64_t)timeout_s * 1000000;
            }
            if (deadline && (zim_fanout_delivered (fan) >= expect || now > deadline))
                break;
            if (zim_fanout_dead (fan)) {
                status = 3;
                break;
            }
            uint64_t next =
                sent < messages ? t_start + (uint64_t)((double)sent * 1e6 / rate) : now + 1000;
            int wait_ms = next > now + 1000 ? 1 : 0;
            zim_fanout_pub_poll (pub, wait_ms);
            now = zim_benchkit_now_us ();
            if (!wait_ms && next > now && next - now < 1000)
                zim_benchkit_sleep_us (next - now);
        }
    }
    zim_fanout_result_t r;
    memset (&r, 0, sizeof r);
    if (fan)
        zim_fanout_stop (fan, &r);
    double cpu = s_cpu_all () - cpu0;
    if (status == 0) {
        uint64_t missing = expect > r.delivered ? expect - r.delivered : 0;
        double secs = r.t_last > t_start ? (double)(r.t_last - t_start) / 1e6 : 0;
        double drate = secs > 0 ? (double)r.delivered / secs : 0;
        double p50 = zim_benchkit_hist_pct_ms (&r.hist, 50);
        double p99 = zim_benchkit_hist_pct_ms (&r.hist, 99);
        double pmax = zim_benchkit_hist_pct_ms (&r.hist, 100);
        double b99 = zim_benchkit_hist_pct_ms (&behind, 99);
        if (json)
            printf ("{\"scenario\":\"fanout\",\"members\":%u,\"rate\":%u,\"messages\":%u,"
                    "\"size\":%u,\"procs\":%u,\"sent\":%" PRIu64 ",\"expected\":%" PRIu64
                    ",\"delivered\":%" PRIu64 ",\"missing\":%" PRIu64 ",\"duplicates\":%" PRIu64
                    ",\"out_of_order\":%" PRIu64 ",\"unexpected\":%" PRIu64 ",\"closed\":%" PRIu64
                    ",\"elapsed_s\":%.3f,\"deliveries_per_s\":%.1f,\"p50_ms\":%.3f,"
                    "\"p99_ms\":%.3f,\"max_ms\":%.3f,\"behind_p99_ms\":%.3f,"
                    "\"client_cpu_s\":%.3f,\"connect_s\":%.3f}\n",
                    members, rate, messages, size, procs, sent, expect, r.delivered, missing,
                    r.duplicates, r.out_of_order, r.unexpected, r.closed, secs, drate, p50, p99,
                    pmax, b99, cpu, (double)(t_ready - t0) / 1e6);
        else {
            printf ("mqtt-bench fanout: %u subscribers of one topic (QoS 0), %u messages at %u "
                    "msgs/s, %u-byte payloads, %s port %d\n",
                    members, messages, rate, size, host, port);
            printf ("  setup      %.2f s to connect and subscribe %u connections (%u client "
                    "processes)\n",
                    (double)(t_ready - t0) / 1e6, members, procs);
            printf ("  published  %" PRIu64 " in %.3f s; behind schedule p99 %.2f ms\n", sent,
                    t_end > t_start ? (double)(t_end - t_start) / 1e6 : 0, b99);
            printf ("  delivered  %" PRIu64 " of %" PRIu64 " deliveries in %.3f s: %.0f "
                    "deliveries/s\n",
                    r.delivered, expect, secs, drate);
            printf ("  latency    p50 %.2f ms, p99 %.2f ms, max %.2f ms (scheduled publish to "
                    "delivery)\n",
                    p50, p99, pmax);
            printf ("  problems   %" PRIu64 " missing (fewest on one connection %" PRIu64
                    " of %u), %" PRIu64 " closed, %" PRIu64 " duplicates, %" PRIu64
                    " out of order, %" PRIu64 " unexpected\n",
                    missing, r.min_conn, messages, r.closed, r.duplicates, r.out_of_order,
                    r.unexpected);
            printf ("  client     %.2f s CPU (%.2f us per delivery)\n", cpu,
                    r.delivered ? cpu * 1e6 / (double)r.delivered : 0);
        }
        if (missing || r.duplicates || r.out_of_order || r.unexpected || r.closed)
            status = 1;
    }
    zim_fanout_pub_destroy (&pub);
    zim_fanout_destroy (&fan);
    return status;
}
