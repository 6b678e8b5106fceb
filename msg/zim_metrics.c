/*  zim_metrics.c: histograms and the Prometheus text format (see
    zim_metrics.h).
*/
#include "msg/zim_metrics.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint64_t zim_histo_latency_us[ZIM_HISTO_LATENCY_N] = {
    100,   250,    500,    1000,   2500,    5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
const uint64_t zim_histo_sizes[ZIM_HISTO_SIZES_N] = {1,   2,   4,   8,    16,   32,   64,
                                                     128, 256, 512, 1024, 2048, 4096, 8192};

void zim_histo_init (zim_histo_t *self, const uint64_t *bounds, size_t nbounds)
{
    assert (nbounds <= ZIM_HISTO_BUCKETS);
    for (size_t i = 1; i < nbounds; i++)
        assert (bounds[i] > bounds[i - 1]);
    memset (self, 0, sizeof *self);
    self->bounds = bounds;
    self->nbounds = (uint32_t)nbounds;
}

//  -------------------------------------------------------------------------
//  Text

//  A growing string.
typedef struct {
    char *data;   //  NUL-terminated once anything was written
    size_t len;   //  bytes, without the NUL
    size_t alloc; //  room
} s_buf_t;

static void s_buf_add (s_buf_t *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->alloc) {
        b->alloc = (b->len + len + 1) * 2;
        if (b->alloc < 256)
            b->alloc = 256;
        b->data = zim_realloc (b->data, b->alloc);
    }
    memcpy (b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

static void s_buf_printf (s_buf_t *b, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static void s_buf_printf (s_buf_t *b, const char *format, ...)
{
    char small[512];
    va_list args;
    va_start (args, format);
    int n = vsnprintf (small, sizeof small, format, args);
    va_end (args);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        s_buf_add (b, small, (size_t)n);
        return;
    }
    char *big = zim_malloc ((size_t)n + 1);
    va_start (args, format);
    vsnprintf (big, (size_t)n + 1, format, args);
    va_end (args);
    s_buf_add (b, big, (size_t)n);
    free (big);
}

//  One family: its header and its sample lines.
typedef struct {
    char *name;      //  as in # TYPE (counters with _total)
    char *header;    //  "# HELP ...\n# TYPE ...\n"
    s_buf_t samples; //  sample lines
} s_family_t;

struct _zim_metrics_t {
    s_family_t *families; //  in order of first use
    size_t size;          //  in use
    size_t alloc;         //  room
};

zim_metrics_t *zim_metrics_new (void)
{
    return zim_calloc (1, sizeof (zim_metrics_t));
}

void zim_metrics_destroy (zim_metrics_t **self_p)
{
    zim_metrics_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->size; i++) {
        free (self->families[i].name);
        free (self->families[i].header);
        free (self->families[i].samples.data);
    }
    free (self->families);
    free (self);
    *self_p = NULL;
}

//  The family named name (len bytes), made with header if new (header
//  NULL: found only).
static s_family_t *s_family (zim_metrics_t *self, const char *name, size_t len, const char *header)
{
    for (size_t i = 0; i < self->size; i++)
        if (strlen (self->families[i].name) == len &&
            memcmp (self->families[i].name, name, len) == 0)
            return &self->families[i];
    if (!header)
        return NULL;
    if (self->size == self->alloc) {
        self->alloc = self->alloc ? self->alloc * 2 : 32;
        self->families = zim_realloc (self->families, self->alloc * sizeof *self->families);
    }
    s_family_t *f = &self->families[self->size++];
    memset (f, 0, sizeof *f);
    f->name = zim_malloc (len + 1);
    memcpy (f->name, name, len);
    f->name[len] = 0;
    f->header = zim_strdup (header);
    return f;
}

//  The family for a new sample: full name, type and help (escaped here).
static s_family_t *s_family_for (zim_metrics_t *self, const char *name, const char *type,
                                 const char *help)
{
    s_family_t *f = s_family (self, name, strlen (name), NULL);
    if (f)
        return f;
    s_buf_t h = {0};
    s_buf_printf (&h, "# HELP %s ", name);
    for (const char *s = help ? help : ""; *s; s++)
        if (*s == '\\')
            s_buf_add (&h, "\\\\", 2);
        else if (*s == '\n')
            s_buf_add (&h, "\\n", 2);
        else
            s_buf_add (&h, s, 1);
    s_buf_printf (&h, "\n# TYPE %s %s\n", name, type);
    f = s_family (self, name, strlen (name), h.data);
    free (h.data);
    return f;
}

//  "{labels}" or "" for a sample line.
static void s_sample (s_buf_t *b, const char *name, const char *suffix, const char *labels,
                      const char *extra)
{
    bool any = (labels && *labels) || extra;
    s_buf_printf (b, "%s%s%s%s%s%s%s ", name, suffix, any ? "{" : "", labels ? labels : "",
                  labels && *labels && extra ? "," : "", extra ? extra : "", any ? "}" : "");
}

void zim_metrics_counter (zim_metrics_t *self, const char *name, const char *help,
                          const char *labels, uint64_t value)
{
    char full[256];
    snprintf (full, sizeof full, "%s_total", name);
    s_family_t *f = s_family_for (self, full, "counter", help);
    s_sample (&f->samples, full, "", labels, NULL);
    s_buf_printf (&f->samples, "%" PRIu64 "\n", value);
}

//  A double as the format wants it.
static void s_value (s_buf_t *b, double v)
{
    if (v < 9e15 && v > -9e15 && v == (double)(int64_t)v)
        s_buf_printf (b, "%" PRId64 "\n", (int64_t)v);
    else
        s_buf_printf (b, "%.15g\n", v);
}

void zim_metrics_gauge (zim_metrics_t *self, const char *name, const char *help, const char *labels,
                        double value)
{
    s_family_t *f = s_family_for (self, name, "gauge", help);
    s_sample (&f->samples, name, "", labels, NULL);
    s_value (&f->samples, value);
}

void zim_metrics_histo (zim_metrics_t *self, const char *name, const char *help, const char *labels,
                        const zim_histo_t *histo, double scale)
{
    s_family_t *f = s_family_for (self, name, "histogram", help);
    uint64_t cum = 0;
    char le[64];
    for (uint32_t i = 0; i < histo->nbounds; i++) {
        cum += histo->counts[i];
        snprintf (le, sizeof le, "le=\"%g\"", (double)histo->bounds[i] * scale);
        s_sample (&f->samples, name, "_bucket", labels, le);
        s_buf_printf (&f->samples, "%" PRIu64 "\n", cum);
    }
    cum += histo->counts[histo->nbounds];
    s_sample (&f->samples, name, "_bucket", labels, "le=\"+Inf\"");
    s_buf_printf (&f->samples, "%" PRIu64 "\n", cum);
    s_sample (&f->samples, name, "_sum", labels, NULL);
    s_value (&f->samples, (double)histo->sum * scale);
    s_sample (&f->samples, name, "_count", labels, NULL);
    s_buf_printf (&f->samples, "%" PRIu64 "\n", histo->count);
}

char *zim_metrics_label (char *buf, size_t size, const char *name, const char *value)
{
    size_t n = (size_t)snprintf (buf, size, "%s=\"", name);
    for (const char *s = value; n < size && *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        size_t len = esc ? 2 : 1;
        if (n + len >= size)
            n = size;
        else {
            memcpy (buf + n, esc ? esc : s, len);
            n += len;
        }
    }
    if (n + 2 > size) {
        buf[0] = 0;
        return buf;
    }
    buf[n++] = '"';
    buf[n] = 0;
    return buf;
}

size_t zim_metrics_size (zim_metrics_t *self)
{
    return self->size;
}

char *zim_metrics_family (zim_metrics_t *self, size_t i)
{
    assert (i < self->size);
    s_family_t *f = &self->families[i];
    s_buf_t b = {0};
    s_buf_add (&b, f->header, strlen (f->header));
    if (f->samples.len)
        s_buf_add (&b, f->samples.data, f->samples.len);
    return b.data;
}

int zim_metrics_merge (zim_metrics_t *self, const char *text, size_t len)
{
    //  "# HELP name help\n# TYPE name type\n" then samples.
    const char *end = text + len;
    if (len < 7 || memcmp (text, "# HELP ", 7) != 0)
        return -1;
    const char *name = text + 7, *name_end = name;
    while (name_end < end && *name_end != ' ' && *name_end != '\n')
        name_end++;
    const char *nl = memchr (text, '\n', len);
    if (!nl || name_end == name || nl + 1 >= end)
        return -1;
    const char *type = nl + 1, *nl2 = memchr (type, '\n', (size_t)(end - type));
    size_t nlen = (size_t)(name_end - name);
    if (!nl2 || (size_t)(nl2 - type) < 8 + nlen || memcmp (type, "# TYPE ", 7) != 0 ||
        memcmp (type + 7, name, nlen) != 0 || type[7 + nlen] != ' ')
        return -1;
    size_t hlen = (size_t)(nl2 + 1 - text);
    s_family_t *f = s_family (self, name, nlen, NULL);
    if (!f) {
        char *header = zim_malloc (hlen + 1);
        memcpy (header, text, hlen);
        header[hlen] = 0;
        f = s_family (self, name, nlen, header);
        free (header);
    }
    if (len > hlen)
        s_buf_add (&f->samples, text + hlen, len - hlen);
    return 0;
}

char *zim_metrics_text (zim_metrics_t *self)
{
    s_buf_t b = {0};
    s_buf_add (&b, "", 0);
    for (size_t i = 0; i < self->size; i++) {
        s_family_t *f = &self->families[i];
        s_buf_add (&b, f->header, strlen (f->header));
        if (f->samples.len)
            s_buf_add (&b, f->samples.data, f->samples.len);
    }
    return b.data;
}

//  -------------------------------------------------------------------------
//  Selftest

void zim_metrics_test (bool verbose)
{
    //  Buckets: an observation lands in the first bound not below it.
    static const uint64_t bounds[] = {10, 100, 1000};
    zim_histo_t h;
    zim_histo_init (&h, bounds, 3);
    zim_histo_observe (&h, 0);
    zim_histo_observe (&h, 10);
    zim_histo_observe (&h, 11);
    zim_histo_observe (&h, 5000);
    zim_histo_observe_n (&h, 1000, 3);
    assert (h.counts[0] == 2 && h.counts[1] == 1 && h.counts[2] == 3 && h.counts[3] == 1);
    assert (h.count == 7 && h.sum == 0 + 10 + 11 + 5000 + 3000);
    zim_histo_t lat;
    zim_histo_init (&lat, zim_histo_latency_us, ZIM_HISTO_LATENCY_N);
    zim_histo_init (&lat, zim_histo_sizes, ZIM_HISTO_SIZES_N);

    char node1[64], node2[64], odd[64], tiny[8];
    zim_metrics_label (node1, sizeof node1, "node", "broker-1");
    zim_metrics_label (node2, sizeof node2, "node", "broker-2");
    assert (streq (node1, "node=\"broker-1\""));
    assert (streq (zim_metrics_label (odd, sizeof odd, "node", "a\"b\\c\nd"),
                   "node=\"a\\\"b\\\\c\\nd\""));
    assert (streq (zim_metrics_label (tiny, sizeof tiny, "node", "toolong"), ""));

    zim_metrics_t *m = zim_metrics_new ();
    zim_metrics_counter (m, "zim_broker_sends", "sends taken", node1, 5);
    zim_metrics_gauge (m, "zim_broker_inflight", "in flight\nnow \\", node1, 2);
    zim_metrics_histo (m, "zim_broker_ack_seconds", "send to ack", node1, &h, 1e-3);
    zim_metrics_counter (m, "zim_broker_sends", NULL, node2, 7);
    zim_metrics_gauge (m, "zim_up", "no labels", NULL, 0.5);
    assert (zim_metrics_size (m) == 4);
    char *text = zim_metrics_text (m);
    const char *expect = "# HELP zim_broker_sends_total sends taken\n"
                         "# TYPE zim_broker_sends_total counter\n"
                         "zim_broker_sends_total{node=\"broker-1\"} 5\n"
                         "zim_broker_sends_total{node=\"broker-2\"} 7\n"
                         "# HELP zim_broker_inflight in flight\\nnow \\\\\n"
                         "# TYPE zim_broker_inflight gauge\n"
                         "zim_broker_inflight{node=\"broker-1\"} 2\n"
                         "# HELP zim_broker_ack_seconds send to ack\n"
                         "# TYPE zim_broker_ack_seconds histogram\n"
                         "zim_broker_ack_seconds_bucket{node=\"broker-1\",le=\"0.01\"} 2\n"
                         "zim_broker_ack_seconds_bucket{node=\"broker-1\",le=\"0.1\"} 3\n"
                         "zim_broker_ack_seconds_bucket{node=\"broker-1\",le=\"1\"} 6\n"
                         "zim_broker_ack_seconds_bucket{node=\"broker-1\",le=\"+Inf\"} 7\n"
                         "zim_broker_ack_seconds_sum{node=\"broker-1\"} 8.021\n"
                         "zim_broker_ack_seconds_count{node=\"broker-1\"} 7\n"
                         "# HELP zim_up no labels\n"
                         "# TYPE zim_up gauge\n"
                         "zim_up 0.5\n";
    if (!streq (text, expect))
        fprintf (stderr, "got:\n%s\nexpected:\n%s\n", text, expect);
    assert (streq (text, expect));

    //  Merging family texts (as actors answer METRICS) regroups samples.
    zim_metrics_t *all = zim_metrics_new ();
    for (size_t i = 0; i < zim_metrics_size (m); i++) {
        char *family = zim_metrics_family (m, i);
        assert (zim_metrics_merge (all, family, strlen (family)) == 0);
        free (family);
    }
    zim_metrics_t *other = zim_metrics_new ();
    char node3[64];
    zim_metrics_label (node3, sizeof node3, "node", "broker-3");
    zim_metrics_counter (other, "zim_broker_sends", "ignored: known already", node3, 9);
    char *family = zim_metrics_family (other, 0);
    assert (zim_metrics_merge (all, family, strlen (family)) == 0);
    free (family);
    assert (zim_metrics_merge (all, "garbage", 7) == -1);
    assert (zim_metrics_merge (all, "# HELP x y\n", 11) == -1);
    assert (zim_metrics_merge (all, "# HELP x y\n# TYPE z gauge\nz 1\n", 26) == -1);
    assert (zim_metrics_size (all) == 4);
    char *merged = zim_metrics_text (all);
    assert (strncmp (merged, expect, 150) == 0);
    assert (strstr (merged, "zim_broker_sends_total{node=\"broker-2\"} 7\n"
                            "zim_broker_sends_total{node=\"broker-3\"} 9\n"
                            "# HELP zim_broker_inflight"));
    free (merged);
    free (text);
    zim_metrics_destroy (&other);
    zim_metrics_destroy (&all);
    zim_metrics_destroy (&m);
    zim_metrics_destroy (&m);
    if (verbose)
        printf ("metrics: buckets, text format, merge\n");
}
