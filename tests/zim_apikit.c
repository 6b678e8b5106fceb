/*  zim_apikit.c: what the push API tests share (see zim_apikit.h).
 */
#include "tests/zim_apikit.h"
#include "msg/zim_msg.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tk_server_t ak_srv;
CURL *ak_curl;

void ak_setup (void)
{
    ck_assert_int_eq (tk_server_start (&ak_srv, NULL, NULL), 0);
    ck_assert_int_gt (ak_srv.api_port, 0);
    ck_assert_int_ge (strlen (ak_srv.apikey), 16);
    ak_curl = curl_easy_init ();
    ck_assert_ptr_nonnull (ak_curl);
}

void ak_teardown (void)
{
    curl_easy_cleanup (ak_curl);
    tk_server_stop (&ak_srv, SIGTERM);
    //  The server's log: what ASan, LSan and UBSan found (sanitizer builds).
    int found = tk_log_reports (ak_srv.log);
    tk_server_cleanup (&ak_srv);
    ck_assert_int_eq (found, 0);
}

size_t ak_collect (char *ptr, size_t size, size_t n, void *arg)
{
    ak_buf_t *b = (ak_buf_t *)arg;
    b->data = realloc (b->data, b->len + size * n + 1);
    memcpy (b->data + b->len, ptr, size * n);
    b->len += size * n;
    b->data[b->len] = 0;
    return size * n;
}

//  Calls method path with body (NULL: none) and key (NULL: no
//  Authorization); returns the status, *doc the JSON answer (or NULL).
long ak_call_typed (const char *method, const char *path, const char *body, size_t blen,
                    const char *type, const char *key, json_t **doc)
{
    char url[512], auth[300], ctype[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", ak_srv.api_port, path);
    struct curl_slist *headers = NULL;
    if (key) {
        snprintf (auth, sizeof auth, "Authorization: Bearer %s", key);
        headers = curl_slist_append (headers, auth);
    }
    snprintf (ctype, sizeof ctype, "Content-Type: %s", type);
    headers = curl_slist_append (headers, ctype);
    ak_buf_t b = {NULL, 0};
    curl_easy_reset (ak_curl);
    curl_easy_setopt (ak_curl, CURLOPT_URL, url);
    curl_easy_setopt (ak_curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (ak_curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (ak_curl, CURLOPT_WRITEFUNCTION, ak_collect);
    curl_easy_setopt (ak_curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt (ak_curl, CURLOPT_TIMEOUT, 20L);
    if (body) {
        curl_easy_setopt (ak_curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt (ak_curl, CURLOPT_POSTFIELDSIZE, (long)blen);
    }
    CURLcode rc = curl_easy_perform (ak_curl);
    ck_assert_msg (rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror (rc));
    long status = 0;
    curl_easy_getinfo (ak_curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all (headers);
    *doc = b.data ? json_loads (b.data, 0, NULL) : NULL;
    if (getenv ("ZIM_API_DEBUG"))
        fprintf (stderr, "%s %s -> %ld %s\n", method, path, 0L, b.data ? b.data : "(none)");
    ck_assert_msg (*doc, "%s %s: the answer is not JSON: %s", method, path, b.data ? b.data : "");
    free (b.data);
    return status;
}

long ak_call (const char *method, const char *path, const char *body, json_t **doc)
{
    return ak_call_typed (method, path, body, body ? strlen (body) : 0, "application/json",
                          ak_srv.apikey, doc);
}

//  Expects a refusal with status and error code.
void ak_refused (long status, json_t **doc_p, long want, const char *code)
{
    json_t *doc = *doc_p;
    char *text = json_dumps (doc, JSON_COMPACT);
    ck_assert_msg (status == want && json_object_get (doc, "error"), "%ld %s, not %ld %s", status,
                   text, want, code);
    free (text);
    json_t *err = json_object_get (doc, "error");
    ck_assert_str_eq (json_string_value (json_object_get (err, "code")), code);
    ck_assert (json_string_length (json_object_get (err, "text")) > 0);
    json_decref (doc);
}

//  Sends {"op":op,"room":room} (join, leave) and waits for the answer.
void ak_join (tk_client_t *c, const char *room)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "join");
    zim_wr_cstr (&wr, "room");
    zim_wr_cstr (&wr, room);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "joined", 10000, &f), 0);
}

//  The next frame of c with op; its body's bytes into body (size).
void ak_expect_body (tk_client_t *c, const char *op, const char *body, size_t size)
{
    tk_frame_t f;
    ck_assert_msg (tk_expect (c, op, 10000, &f) == 0, "no %s frame (a body of %zu bytes)", op,
                   size);
    zim_rd_t rd;
    zim_sframe_t m;
    const char *why;
    zim_rd_init (&rd, f.raw, f.raw_len);
    ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
    ck_assert_msg (m.body.len == size && memcmp (m.body.ptr, body, size) == 0,
                   "%s: another body (%zu bytes)", op, m.body.len);
    ck_assert (m.ts > 1700000000000ULL);
    ck_assert_ptr_null (m.from.ptr); //  the backend pushed: no from
}

//  Pings c; no frame with op may come before the pong.
void ak_nothing (tk_client_t *c, const char *op)
{
    tk_ping (c);
    tk_frame_t f;
    do {
        ck_assert_int_eq (tk_recv (c, 10000, &f), 0);
        ck_assert_msg (strcmp (f.op, op), "an unexpected %s frame", op);
    } while (strcmp (f.op, "pong"));
}

//  Expects a refusal of the groups endpoints: status, code and the store's
//  wire code (0: none).
void ak_group_refused (long status, json_t **doc_p, long want, const char *code, int zim)
{
    json_t *err = json_object_get (*doc_p, "error");
    ck_assert_int_eq (json_integer_value (json_object_get (err, "zim_code")), zim);
    ak_refused (status, doc_p, want, code);
}
