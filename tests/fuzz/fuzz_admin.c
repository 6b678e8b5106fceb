/*  fuzz_admin.c: one frame to or from an admin endpoint: read as a
    request (what a node's admin socket reads from anyone who can connect)
    and as a reply (what zimctl reads). What decodes must encode again to
    something that decodes to the same.
*/
#include "msg/zim_admin.h"
#include "tests/fuzz/zim_fuzz.h"

#include <assert.h>
#include <string.h>

ZIM_FUZZ_TARGET (admin)
{
    zim_rd_t rd;
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_admin_req_t req, req2;
    zim_rd_init (&rd, data, size);
    if (zim_admin_req_decode (&rd, &req) == 0) {
        assert (req.nargs <= ZIM_ADMIN_MAX_ARGS);
        zim_admin_req_pack (&wr, &req);
        zim_rd_init (&rd, wr.data, wr.size);
        assert (zim_admin_req_decode (&rd, &req2) == 0);
        assert (zim_codec_equal (&zim_rec_admin_req, &req, &req2));
    }
    int code;
    zim_str_t text;
    zim_rd_init (&rd, data, size);
    if (zim_admin_reply_decode (&rd, &code, &text) == 0) {
        zim_wr_reset (&wr);
        zim_admin_reply_t m = {code, text};
        zim_admin_reply_pack (&wr, &m);
        int code2;
        zim_str_t text2;
        zim_rd_init (&rd, wr.data, wr.size);
        assert (zim_admin_reply_decode (&rd, &code2, &text2) == 0 && code2 == code);
        assert (text2.len == text.len && (!text.len || !memcmp (text.ptr, text2.ptr, text.len)));
    }
    zim_wr_free (&wr);
    return 0;
}
