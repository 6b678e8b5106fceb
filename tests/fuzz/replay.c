/*  replay.c: the fuzz harnesses without a fuzzer. Runs every file of the
    seed corpus through every harness (make check, both builds), or writes
    the seeds.
        zim-fuzz-replay [DIR|FILE ...]   replay (default: the corpus in
                                         $srcdir/tests/fuzz/corpus, all of it)
        zim-fuzz-replay --seed DIR       write DIR/<harness>/<name> seeds:
                                         samples of every catalogue record
                                         (tests/fuzz/corpus is made so)
    A finding aborts with the harness and the file named first.
*/
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "msg/zim_sample.h"
#include "tests/fuzz/zim_fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_HARNESSES_MAX 16

static struct {
    const char *name;
    zim_fuzz_fn_t fn;
} s_harness[S_HARNESSES_MAX];
static int s_nharness;
static int s_files;
static char s_current[4200]; //  "harness: path" being run, for a crash report

//  On a crash (an assert, a sanitizer with abort_on_error) names the input.
static void s_on_crash (int sig)
{
    static const char head[] = "\nzim-fuzz-replay: crashed on ";
    (void)!write (2, head, sizeof head - 1);
    (void)!write (2, s_current, strlen (s_current));
    (void)!write (2, "\n", 1);
    signal (sig, SIG_DFL);
    raise (sig);
}

void zim_fuzz_register (const char *name, zim_fuzz_fn_t fn)
{
    if (s_nharness == S_HARNESSES_MAX) {
        fprintf (stderr, "zim-fuzz-replay: more than %d harnesses\n", S_HARNESSES_MAX);
        exit (2);
    }
    s_harness[s_nharness].name = name;
    s_harness[s_nharness].fn = fn;
    s_nharness++;
}

//  Runs one file through every harness. Returns 0 or -1 if unreadable.
static int s_replay_file (const char *path)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return -1;
    uint8_t *data = NULL;
    size_t size = 0, alloc = 0;
    for (;;) {
        if (size == alloc) {
            alloc = alloc ? 2 * alloc : 4096;
            data = realloc (data, alloc);
            if (!data)
                abort ();
        }
        size_t n = fread (data + size, 1, alloc - size, f);
        if (n == 0)
            break;
        size += n;
    }
    fclose (f);
    for (int h = 0; h < s_nharness; h++) {
        snprintf (s_current, sizeof s_current, "%s: %s", s_harness[h].name, path);
        //  An exact-size copy, so that ASan sees a read past the end.
        uint8_t *copy = malloc (size ? size : 1);
        if (!copy)
            abort ();
        if (size)
            memcpy (copy, data, size);
        s_harness[h].fn (copy, size);
        free (copy);
    }
    free (data);
    s_files++;
    return 0;
}

//  Replays a file or every file under a directory.
static int s_replay (const char *path)
{
    struct stat st;
    if (stat (path, &st)) {
        fprintf (stderr, "zim-fuzz-replay: %s: %s\n", path, strerror (errno));
        return -1;
    }
    if (!S_ISDIR (st.st_mode))
        return s_replay_file (path);
    DIR *dir = opendir (path);
    if (!dir)
        return -1;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir (dir)) && rc == 0) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf (sub, sizeof sub, "%s/%s", path, e->d_name);
        rc = s_replay (sub);
    }
    closedir (dir);
    return rc;
}

//  Writes bytes to dir/harness/name.
static void s_write (const char *dir, const char *harness, const char *name, const void *data,
                     size_t size)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/%s", dir, harness);
    mkdir (path, 0755);
    snprintf (path, sizeof path, "%s/%s/%s", dir, harness, name);
    FILE *f = fopen (path, "wb");
    if (!f || fwrite (data, 1, size, f) != size) {
        fprintf (stderr, "zim-fuzz-replay: cannot write %s\n", path);
        exit (2);
    }
    fclose (f);
}

//  Writes seeds: two good samples of every record, one broken at each kind
//  of fault; client frames also three to a message.
static void s_seed (const char *dir)
{
    mkdir (dir, 0755);
    zim_wr_t wr, all;
    zim_wr_init (&wr);
    zim_wr_init (&all);
    for (size_t r = 0; r < zim_catalog_size; r++) {
        const zim_record_t *rec = zim_catalog[r];
        const char *harness = rec->shape == ZIM_SHAPE_FRAMES     ? "cframe"
                              : rec->code == ZIM_MSG_ADMIN       ? "admin"
                              : rec->code == ZIM_MSG_ADMIN_REPLY ? "admin"
                              : rec->code >= 0                   ? "backbone"
                                                                 : NULL;
        if (!harness)
            continue; //  list elements are seeded inside their kinds
        uint32_t seeds = rec->shape == ZIM_SHAPE_FRAMES ? rec->nops : 2;
        for (uint32_t seed = 0; seed < seeds; seed++)
            for (int fault = ZIM_FAULT_NONE; fault < ZIM_FAULTS; fault++) {
                if (fault && seed % 2)
                    continue;
                zim_sample_t s = {seed, fault, 0, 0, false, false};
                if (fault) {
                    //  Learn the sites, then break one in the middle.
                    zim_sample_t probe = {seed, ZIM_FAULT_NONE, -1, 0, false, false};
                    zim_wr_reset (&wr);
                    zim_sample_pack (&wr, rec, &probe);
                    s.site = probe.sites / 2;
                }
                zim_wr_reset (&wr);
                zim_sample_pack (&wr, rec, &s);
                if (fault && !s.applied)
                    continue;
                char name[128], variant[32];
                if (rec->shape == ZIM_SHAPE_FRAMES)
                    snprintf (variant, sizeof variant, "%s", rec->ops[seed % rec->nops].name);
                else
                    snprintf (variant, sizeof variant, "%u", seed);
                snprintf (name, sizeof name, "%s-%s%s%s", rec->name, variant, fault ? "-" : "",
                          fault ? zim_sample_fault_name (fault) : "");
                for (char *c = name; *c; c++)
                    if (*c == ' ')
                        *c = '_';
                s_write (dir, harness, name, wr.data, wr.size);
                if (rec->shape == ZIM_SHAPE_FRAMES && fault == ZIM_FAULT_NONE)
                    zim_wr_raw (&all, wr.data, wr.size);
            }
    }
    s_write (dir, "cframe", "every-op-one-message", all.data, all.size);
    zim_wr_free (&wr);
    zim_wr_free (&all);
}

int main (int argc, char **argv)
{
    if (argc == 3 && strcmp (argv[1], "--seed") == 0) {
        s_seed (argv[2]);
        return 0;
    }
    signal (SIGABRT, s_on_crash);
    signal (SIGSEGV, s_on_crash);
    int rc = 0;
    if (argc > 1)
        for (int i = 1; i < argc && rc == 0; i++)
            rc = s_replay (argv[i]);
    else {
        const char *srcdir = getenv ("srcdir");
        char path[4096];
        snprintf (path, sizeof path, "%s/tests/fuzz/corpus", srcdir ? srcdir : ".");
        rc = s_replay (path);
    }
    printf ("%d files through %d harnesses: %s\n", s_files, s_nharness, rc ? "unreadable" : "ok");
    return rc || s_files == 0 ? 1 : 0;
}
