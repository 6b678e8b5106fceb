/*  zim_storebench.c: the store's group commit alone, without sockets,
    actors or other processes: the p2p shape of zim-bench (senders s<i>
    writing to recipients r<i>, both sides stored) written as batches of
    one APPEND each through zim_commit, on a fresh LMDB environment. Says
    what a commit costs (time, and pages written, from /proc/self/io) so a
    change to the store's layout can be measured on a busy machine, where
    the whole server's latency cannot (docs/BENCHMARKS.md §12).
*/
#include "store/zim_commit.h"
#include "store/zim_db.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

//  What one run measures over its second half (the first fills the store).
typedef struct {
    double commit_us;     //  mean time of one zim_commit_write
    double p50_us;        //  its median
    double p99_us;        //  its 99th percentile
    double write_us;      //  mean time of mdb_txn_commit in it (write + fsync)
    double pages;         //  4 KiB pages written per commit (-1: unknown)
    double cpu_us;        //  CPU (user + system) per send
    uint64_t checkpoints; //  checkpoints of the log's window among them
    uint64_t measured;    //  commits measured
} s_result_t;

//  Bytes this process passed to write calls so far (wchar), or -1.
static int64_t s_wchar (void)
{
    FILE *f = fopen ("/proc/self/io", "r");
    if (!f)
        return -1;
    char line[128];
    int64_t w = -1;
    while (fgets (line, sizeof line, f))
        if (strncmp (line, "wchar:", 6) == 0)
            w = strtoll (line + 6, NULL, 10);
    fclose (f);
    return w;
}

//  CPU time of this process so far, µs.
static uint64_t s_cpu_us (void)
{
    struct rusage ru;
    getrusage (RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  Encodes into wr one APPEND of batch sends, send k of the run going from
//  <tag>-s<k mod pairs> to <tag>-r<k mod pairs>, ids from *id.
static void s_batch (zim_wr_t *wr, const char *tag, int pairs, int batch, uint64_t *k, uint64_t *id)
{
    char body[32] = {(char)0xc4, 30}; //  bin 8 of 30 bytes, as zim-bench sends
    memset (body + 2, 'x', 30);
    zim_append_begin (wr, 1, (uint32_t)batch);
    for (int i = 0; i < batch; i++, (*k)++) {
        char from[32], to[32], cid[48];
        int p = (int)(*k % (uint64_t)pairs);
        snprintf (from, sizeof from, "%s-s%d", tag, p);
        snprintf (to, sizeof to, "%s-r%d", tag, p);
        snprintf (cid, sizeof cid, "%s.%" PRIu64, tag, *k);
        zim_append_item_t it = {(*id)++,
                                1,
                                zim_str ("demo"),
                                zim_str (from),
                                zim_str (to),
                                zim_str (cid),
                                {body, sizeof body},
                                ZIM_SIDE_BOTH};
        zim_append_item_pack (wr, &it);
    }
}

//  Runs commits batches of batch sends over pairs pairs into dir. Returns 0,
//  or -1 if the store could not open or a send was not stored.
static int s_run (const char *dir, zim_fsync_t sync, int checkpoint_ms, int pairs, int batch,
                  int commits, s_result_t *out)
{
    zim_db_t *db = zim_db_new ("storebench", dir, sync, 1ULL << 32);
    if (!db)
        return -1;
    zim_commit_stats_t st;
    memset (&st, 0, sizeof st);
    zim_commit_t *commit = zim_commit_new (db, NULL, &st);
    if (zim_commit_recover (commit, (uint64_t)checkpoint_ms, 16ULL << 20)) {
        zim_commit_destroy (&commit);
        zim_db_destroy (&db);
        return -1;
    }
    zim_appended_item_t *res = zim_malloc ((size_t)batch * sizeof *res);
    uint64_t *times = zim_malloc ((size_t)commits * sizeof *times);
    uint64_t k = 0, id = 1000, sum = 0, write0 = 0, n = 0, cpu0 = 0, ckpt0 = 0;
    int64_t wchar0 = -1;
    int rc = 0;
    zim_wr_t wr;
    zim_wr_init (&wr);
    for (int c = 0; c < commits && rc == 0; c++) {
        if (c == commits / 2) {
            wchar0 = s_wchar ();
            write0 = st.write_us.sum;
            cpu0 = s_cpu_us ();
            ckpt0 = st.checkpoints;
        }
        zim_wr_reset (&wr);
        s_batch (&wr, "b609052", pairs, batch, &k, &id);
        zim_str_t msg = {(const char *)wr.data, wr.size};
        uint64_t t0 = zim_mono_us ();
        zim_commit_write (commit, &msg, 1, res);
        //  As the store's loop does: a window of checkpoint_ms is checkpointed.
        zim_commit_tick (commit, zim_mono_us () / 1000);
        uint64_t us = zim_mono_us () - t0;
        for (int i = 0; i < batch; i++)
            if (res[i].status != ZIM_APPEND_STORED) {
                fprintf (stderr, "zim-storebench: a send was not stored (status %d)\n",
                         (int)res[i].status);
                rc = -1;
                break;
            }
        if (c >= commits / 2) {
            times[n++] = us;
            sum += us;
        }
    }
    int64_t wchar1 = s_wchar ();
    uint64_t cpu1 = s_cpu_us ();
    if (rc == 0 && n > 0) {
        qsort (times, n, sizeof *times, s_cmp_u64);
        out->measured = n;
        out->commit_us = (double)sum / (double)n;
        out->p50_us = (double)times[(n - 1) / 2];
        out->p99_us = (double)times[(n * 99 - 1) / 100];
        out->write_us = (double)(st.write_us.sum - write0) / (double)n;
        out->pages = wchar0 < 0 || wchar1 < 0 ? -1 : (double)(wchar1 - wchar0) / 4096 / (double)n;
        out->cpu_us = (double)(cpu1 - cpu0) / (double)n / batch;
        out->checkpoints = st.checkpoints - ckpt0;
    }
    zim_wr_free (&wr);
    free (times);
    free (res);
    zim_commit_destroy (&commit);
    zim_db_destroy (&db);
    return rc;
}

static void s_usage (FILE *f)
{
    fprintf (f, "Usage: zim-storebench [--pairs N] [--batch B] [--commits C] [--sync MODE]\n"
                "                      [--checkpoint MS] [--dir DIR] [--json]\n"
                "C group commits of B sends each (50, 170, 600), round robin over N\n"
                "sender -> recipient pairs, into a fresh store in DIR (default: a new\n"
                "directory under $TMPDIR, removed afterwards; DIR must not exist).\n"
                "Prints, over the second half: time per commit (mean, p50, p99), the part\n"
                "of it in mdb_txn_commit (pages written and synced) and 4 KiB pages\n"
                "written per commit, CPU per send. --sync always|batch|none as zim-server's\n"
                "(batch); --checkpoint MS as store/checkpoint_ms (50: batches through the\n"
                "write-ahead log, the window checkpointed every MS; 0: an LMDB commit each).\n");
}

int main (int argc, char **argv)
{
    int pairs = 50, batch = 170, commits = 600, checkpoint_ms = 50;
    bool json = false;
    const char *dir = NULL;
    zim_fsync_t sync = ZIM_FSYNC_BATCH;
    static const struct option opts[] = {
        {"pairs", 1, NULL, 'p'},      {"batch", 1, NULL, 'b'}, {"commits", 1, NULL, 'c'},
        {"sync", 1, NULL, 's'},       {"dir", 1, NULL, 'd'},   {"json", 0, NULL, 'j'},
        {"checkpoint", 1, NULL, 'k'}, {"help", 0, NULL, 'h'},  {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long (argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'p')
            pairs = atoi (optarg);
        else if (o == 'b')
            batch = atoi (optarg);
        else if (o == 'c')
            commits = atoi (optarg);
        else if (o == 's' && zim_fsync_parse (optarg, &sync) == 0)
            ;
        else if (o == 'd')
            dir = optarg;
        else if (o == 'k')
            checkpoint_ms = atoi (optarg);
        else if (o == 'j')
            json = true;
        else if (o == 'h') {
            s_usage (stdout);
            return 0;
        } else {
            s_usage (stderr);
            return 2;
        }
    }
    if (optind < argc || pairs < 1 || batch < 1 || commits < 2 || checkpoint_ms < 0) {
        s_usage (stderr);
        return 2;
    }
    char *made = NULL;
    if (!dir) {
        const char *tmp = getenv ("TMPDIR");
        char path[512];
        snprintf (path, sizeof path, "%s/zim-storebench.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        made = zim_strdup (path);
        if (!mkdtemp (made)) {
            fprintf (stderr, "zim-storebench: cannot make %s: %s\n", made, strerror (errno));
            free (made);
            return 3;
        }
    } else if (zsys_file_exists (dir)) {
        fprintf (stderr, "zim-storebench: %s exists: give a new directory\n", dir);
        return 2;
    }
    zsys_init ();
    s_result_t r = {0};
    int rc = s_run (made ? made : dir, sync, checkpoint_ms, pairs, batch, commits, &r);
    if (made) {
        zim_db_test_rmtree (made);
        free (made);
    }
    if (rc)
        return 1;
    if (json)
        printf ("{\"pairs\":%d,\"batch\":%d,\"commits\":%d,\"sync\":\"%s\",\"checkpoint_ms\":%d,"
                "\"measured\":%" PRIu64 ",\"commit_us\":%.1f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
                "\"write_us\":%.1f,\"pages\":%.1f,\"cpu_us_per_send\":%.2f,\"checkpoints\":%" PRIu64
                "}\n",
                pairs, batch, commits, zim_fsync_name (sync), checkpoint_ms, r.measured,
                r.commit_us, r.p50_us, r.p99_us, r.write_us, r.pages, r.cpu_us, r.checkpoints);
    else
        printf ("%d pairs, %d sends per commit, %d commits (sync %s, checkpoint %d ms), the "
                "last %" PRIu64 ":\n  commit %.0f µs (p50 %.0f, p99 %.0f), of it the durable "
                "write %.0f µs; %.1f pages written per commit (%.2f per send); CPU %.2f µs per "
                "send; %" PRIu64 " checkpoints\n",
                pairs, batch, commits, zim_fsync_name (sync), checkpoint_ms, r.measured,
                r.commit_us, r.p50_us, r.p99_us, r.write_us, r.pages,
                r.pages < 0 ? -1 : r.pages / batch, r.cpu_us, r.checkpoints);
    return 0;
}
