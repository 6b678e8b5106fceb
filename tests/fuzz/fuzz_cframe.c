/*  fuzz_cframe.c: a whole WebSocket message from a client, read as the
    gateway reads it: frames back to back until the bytes end or one is
    malformed (never a frame that is a well-formed map: that one is read to
    its end and refused for a field at most). Every frame that decodes must
    encode again to a frame that decodes to the same encoding, and print. The same bytes are then
   read as server frames (what the C SDK and the tests decode) the same way.
*/
#include "msg/zim_msg.h"
#include "msg/zim_text.h"
#include "tests/fuzz/zim_fuzz.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

//  Reads every frame of data as rec (a FRAMES record) like the gateway.
static void s_frames (const zim_record_t *rec, const uint8_t *data, size_t size)
{
    _Alignas(max_align_t) char f[ZIM_MSG_MAX_SIZE], g[ZIM_MSG_MAX_SIZE];
    zim_wr_t once, twice, text;
    zim_wr_init (&once);
    zim_wr_init (&twice);
    zim_wr_init (&text);
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    while (zim_rd_left (&rd) > 0) {
        //  A frame that is one well-formed map is never refused as
        //  malformed bytes, and is read to its end exactly.
        zim_rd_t whole = rd;
        bool map = zim_rd_peek (&whole) == ZIM_MP_MAP && zim_rd_skip (&whole, NULL) == 0;
        const char *why = NULL;
        int rc = zim_codec_unpack_frame (&rd, rec, f, &why);
        if (rc == ZIM_EMALFORMED) {
            assert (!map);
            break; //  the rest of the message is dropped
        }
        assert (map && rd.pos == whole.pos && (why == NULL) == (rc == 0));
        if (rc)
            continue; //  refused, but the next frame can still be read
        zim_wr_reset (&text);
        zim_text_record (&text, rec, f);
        //  The canonical encoding of what was read is read back the same.
        zim_wr_reset (&once);
        zim_codec_pack_frame (&once, rec, f);
        zim_rd_t again;
        zim_rd_init (&again, once.data, once.size);
        rc = zim_codec_unpack_frame (&again, rec, g, &why);
        assert (rc == 0 && zim_rd_left (&again) == 0);
        zim_wr_reset (&twice);
        zim_codec_pack_frame (&twice, rec, g);
        assert (twice.size == once.size && memcmp (twice.data, once.data, once.size) == 0);
        //  Lists inside (a page's messages) are read to their end.
        if (zim_codec_check (rec, f) == 0)
            assert (zim_codec_check (rec, g) == 0 && zim_codec_equal (rec, f, g));
    }
    zim_wr_free (&once);
    zim_wr_free (&twice);
    zim_wr_free (&text);
}

ZIM_FUZZ_TARGET (cframe)
{
    s_frames (&zim_rec_cframe, data, size);
    s_frames (&zim_rec_sframe, data, size);
    //  What a gateway log would print of it.
    zim_wr_t text;
    zim_wr_init (&text);
    zim_msg_text (&text, data, size);
    zim_wr_free (&text);
    //  The legacy entry point agrees on the first frame.
    zim_cframe_t f;
    const char *why;
    zim_rd_t rd, rd2;
    zim_rd_init (&rd, data, size);
    rd2 = rd;
    _Alignas(max_align_t) char g[ZIM_MSG_MAX_SIZE];
    int rc = zim_cframe_decode (&rd, &f, &why);
    int rc2 = zim_codec_unpack_frame (&rd2, &zim_rec_cframe, g, &why);
    assert ((rc == 0) == (rc2 == 0) && (rc == ZIM_ERR_MALFORMED) == (rc2 == ZIM_EMALFORMED));
    return 0;
}
