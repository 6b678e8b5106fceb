/*  zim_http.c: HTTP beside the WebSocket (see zim_http.h).
 */
#include "gateway/zim_http.h"
#include "msg/zim_metrics.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <ctype.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <sys/stat.h>

//  A demo token's lifetime.
#define S_DEV_TOKEN_TTL (24 * 3600)

const char *zim_http_query_arg (struct lws *wsi, const char *name, char *buf, int size)
{
    char frag[ZIM_TOKEN_MAX + 256];
    size_t nlen = strlen (name);
    for (int n = 0;; n++) {
        //  Fails on a fragment longer than frag: that ends the search.
        int len = lws_hdr_copy_fragment (wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, n);
        if (len < 0)
            return NULL;
        if ((size_t)len >= nlen && memcmp (frag, name, nlen) == 0) {
            if (len - (int)nlen >= size)
                return NULL;
            memcpy (buf, frag + nlen, (size_t)len - nlen + 1);
            return buf;
        }
    }
}

//  Answers a small HTTP response. Returns what the callback should return.
static int s_reply (struct lws *wsi, unsigned int status, const char *type, const char *body)
{
    size_t blen = strlen (body);
    uint8_t buf[LWS_PRE + 2048];
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers (wsi, status, type, (lws_filepos_t)blen, &p, end) ||
        lws_add_http_header_by_token (wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                      (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header (wsi, start, &p, end))
        return -1;
    uint8_t *out = (uint8_t *)zim_malloc (LWS_PRE + blen + 1);
    memcpy (out + LWS_PRE, body, blen);
    int rc = lws_write (wsi, out + LWS_PRE, blen, LWS_WRITE_HTTP_FINAL);
    free (out);
    if (rc < 0)
        return -1;
    return lws_http_transaction_completed (wsi) ? -1 : 0;
}

//  True if addr is a loopback address (or name).
static bool s_loopback (const char *addr)
{
    return addr && (strncmp (addr, "127.", 4) == 0 || streq (addr, "::1") ||
                    streq (addr, "localhost") || strncmp (addr, "::ffff:127.", 11) == 0);
}

//  The peer's address into buf.
static const char *s_peer (struct lws *wsi, char *buf, size_t size)
{
    buf[0] = 0;
    lws_get_peer_simple (wsi, buf, size);
    return buf;
}

//  The proxy header the request carries, or NULL if none.
static const char *s_proxy_header (struct lws *wsi)
{
    if (lws_hdr_total_length (wsi, WSI_TOKEN_X_FORWARDED_FOR) > 0)
        return "X-Forwarded-For";
    if (lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_X_REAL_IP) > 0)
        return "X-Real-IP";
    if (lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_VIA) > 0)
        return "Via";
    //  Headers libwebsockets does not know are kept by their name as sent.
    static const char *custom[] = {"forwarded:",        "Forwarded:",         "x-forwarded-host:",
                                   "X-Forwarded-Host:", "x-forwarded-proto:", "X-Forwarded-Proto:"};
    for (size_t i = 0; i < sizeof custom / sizeof custom[0]; i++)
        if (lws_hdr_custom_length (wsi, custom[i], (int)strlen (custom[i])) >= 0)
            return custom[i];
    return NULL;
}

//  Why /dev/token must not answer this request, or NULL if it may.
static const char *s_dev_refusal (zim_edge_t *edge, struct lws *wsi)
{
    char addr[64];
    const zim_app_t *demo = zim_apps_lookup (edge->apps, zim_str ("demo"));
    if (!edge->dev_tokens)
        return NULL; //  not switched on: a plain 404, nothing to log
    if (!demo || !zim_app_secret (demo) || zim_apps_size (edge->apps) != 1)
        return "apps are configured (dev tokens are for the demo defaults only)";
    if (!s_loopback (edge->iface))
        return "the gateway does not listen on a loopback interface";
    if (!s_loopback (s_peer (wsi, addr, sizeof addr)))
        return "the client is not on this machine";
    const char *proxy = s_proxy_header (wsi);
    return proxy ? "the request came through a proxy" : NULL;
}

//  GET /dev/token?uid=U: a token for U in the app "demo" (see zim_http.h).
static int s_dev_token (zim_edge_t *edge, struct lws *wsi)
{
    const char *refusal = s_dev_refusal (edge, wsi);
    if (!edge->dev_tokens || refusal) {
        edge->dev_tokens_refused++;
        if (refusal) {
            char addr[64];
            zim_shell_warn (edge->shell, "/dev/token for %s refused (404): %s",
                            s_peer (wsi, addr, sizeof addr), refusal);
        }
        return s_reply (wsi, 404, "text/plain", "not found\n");
    }
    char buf[128];
    const char *uid = zim_http_query_arg (wsi, "uid=", buf, sizeof buf);
    if (!uid || !zim_uid_valid (zim_str (uid)))
        return s_reply (wsi, 400, "text/plain",
                        "uid must be 1..64 characters of A-Z a-z 0-9 _ . @ -\n");
    const zim_app_t *demo = zim_apps_lookup (edge->apps, zim_str ("demo"));
    char *token =
        zim_token_sign (zim_app_secret (demo), "demo", uid, zim_now_ms () / 1000 + S_DEV_TOKEN_TTL);
    json_t *answer = json_pack ("{s:s, s:s, s:s}", "app", "demo", "uid", uid, "token", token);
    char *body = json_dumps (answer, JSON_COMPACT);
    json_decref (answer);
    free (token);
    edge->dev_tokens_served++;
    int rc = s_reply (wsi, 200, "application/json", body);
    free (body);
    return rc;
}

//  GET /metrics: this gateway's counters, gauges and histograms in the
//  Prometheus text format (msg/zim_metrics.h).
static int s_metrics (zim_edge_t *edge, struct lws *wsi)
{
    zim_metrics_t *m = zim_metrics_new ();
    zim_shell_metrics (edge->shell, m);
    char *text = zim_metrics_text (m);
    zim_metrics_destroy (&m);
    int rc = s_reply (wsi, 200, ZIM_METRICS_CONTENT_TYPE, text);
    free (text);
    return rc;
}

//  The content type for a file name, or NULL for one not served.
static const char *s_mime (const char *path)
{
    const char *dot = strrchr (path, '.');
    static const char *types[][2] = {{".html", "text/html; charset=utf-8"},
                                     {".js", "text/javascript; charset=utf-8"},
                                     {".mjs", "text/javascript; charset=utf-8"},
                                     {".css", "text/css; charset=utf-8"},
                                     {".json", "application/json"},
                                     {".map", "application/json"},
                                     {".svg", "image/svg+xml"},
                                     {".png", "image/png"},
                                     {".ico", "image/x-icon"},
                                     {".txt", "text/plain; charset=utf-8"}};
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (streq (dot, types[i][0]))
                return types[i][1];
    return NULL;
}

//  True for the paths served from www: plain names only, no "..", no
//  hidden files, no odd characters.
static bool s_path_ok (const char *uri)
{
    bool ok = uri[0] == '/' && !strstr (uri, "..") && !strstr (uri, "/.");
    for (const char *s = uri; ok && *s; s++)
        ok = isalnum ((unsigned char)*s) || strchr ("/._-", *s);
    return ok;
}

//  Serves a file of the www directory, or 404.
static int s_file (zim_edge_t *edge, struct lws *wsi, const char *uri)
{
    if (!edge->www)
        return streq (uri, "/")
                   ? s_reply (wsi, 200, "text/plain", "zim gateway: WebSocket at /ws\n")
                   : s_reply (wsi, 404, "text/plain", "not found\n");
    if (streq (uri, "/"))
        uri = "/index.html";
    const char *mime = s_mime (uri);
    char path[1024];
    struct stat st;
    if (!mime || !s_path_ok (uri) ||
        snprintf (path, sizeof path, "%s%s", edge->www, uri) >= (int)sizeof path ||
        stat (path, &st) || !S_ISREG (st.st_mode))
        return s_reply (wsi, 404, "text/plain", "not found\n");
    int n = lws_serve_http_file (wsi, path, mime, NULL, 0);
    if (n < 0 || (n > 0 && lws_http_transaction_completed (wsi)))
        return -1;
    return 0;
}

int zim_http_request (zim_edge_t *edge, struct lws *wsi, const char *uri)
{
    edge->http_requests++;
    if (lws_hdr_total_length (wsi, WSI_TOKEN_GET_URI) <= 0)
        return s_reply (wsi, 405, "text/plain", "only GET\n");
    if (streq (uri, "/healthz"))
        return s_reply (wsi, 200, "text/plain", "ok\n");
    if (streq (uri, "/dev/token"))
        return s_dev_token (edge, wsi);
    if (streq (uri, "/metrics"))
        return s_metrics (edge, wsi);
    if (streq (uri, "/ws"))
        return s_reply (wsi, 426, "text/plain", "this is a WebSocket endpoint\n");
    return s_file (edge, wsi, uri);
}

int zim_http_confirm_upgrade (zim_edge_t *edge, struct lws *wsi)
{
    char uri[256] = "", buf[ZIM_TOKEN_MAX + 16], dbuf[128], addr[64];
    lws_hdr_copy (wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    if (!streq (uri, "/ws")) {
        lws_return_http_status (wsi, 404, NULL);
        return 1;
    }
    const char *device = zim_http_query_arg (wsi, "device=", dbuf, sizeof dbuf);
    if (device && !zim_cid_valid (zim_str (device))) {
        zim_shell_warn (edge->shell, "upgrade from %s refused: bad device name",
                        s_peer (wsi, addr, sizeof addr));
        lws_return_http_status (wsi, 400, "device must be 1..64 printable characters");
        return 1;
    }
    const char *token = zim_http_query_arg (wsi, "token=", buf, sizeof buf);
    if (token) {
        char who[96], text[64];
        snprintf (who, sizeof who, "upgrade from %s", s_peer (wsi, addr, sizeof addr));
        int rc = zim_edge_verify_token (edge, token, strlen (token), who, NULL, NULL);
        if (rc) {
            snprintf (text, sizeof text, "%d %s", rc, zim_strerror (rc));
            lws_return_http_status (wsi, 403, text);
            return 1;
        }
    }
    return 0;
}

void zim_http_test (bool verbose)
{
    (void)verbose;
    assert (streq (s_mime ("/a/index.html"), "text/html; charset=utf-8"));
    assert (streq (s_mime ("/app.js"), "text/javascript; charset=utf-8"));
    assert (s_mime ("/secret.key") == NULL && s_mime ("/noext") == NULL);
    assert (s_path_ok ("/index.html") && s_path_ok ("/a/b-c_d.js"));
    assert (!s_path_ok ("/../etc/passwd") && !s_path_ok ("/.git/config"));
    assert (!s_path_ok ("/a b.html") && !s_path_ok ("index.html") && !s_path_ok ("/a%2e.js"));
    assert (s_loopback ("127.0.0.1") && s_loopback ("127.1.2.3") && s_loopback ("::1"));
    assert (s_loopback ("localhost") && s_loopback ("::ffff:127.0.0.1"));
    assert (!s_loopback ("0.0.0.0") && !s_loopback ("10.0.0.1") && !s_loopback (NULL));
}
