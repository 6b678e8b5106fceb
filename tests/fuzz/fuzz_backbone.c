/*  fuzz_backbone.c: one ZeroMQ frame from another node, any kind of the
    catalogue: dispatched on its kind, every field and every element of
    every list (lists of lists too) decoded, nothing after. What decodes
    must encode again, decode to the same values and encode to the same
    bytes, and print.
*/
#include "msg/zim_msg.h"
#include "msg/zim_text.h"
#include "tests/fuzz/zim_fuzz.h"

#include <assert.h>
#include <string.h>

ZIM_FUZZ_TARGET (backbone)
{
    _Alignas(max_align_t) char m[ZIM_MSG_MAX_SIZE], m2[ZIM_MSG_MAX_SIZE];
    zim_wr_t text;
    zim_wr_init (&text);
    zim_msg_text (&text, data, size);
    zim_wr_free (&text);
    const zim_record_t *rec;
    if (zim_msg_unpack (data, size, &rec, m))
        return 0;
    zim_wr_t once, twice;
    zim_wr_init (&once);
    zim_wr_init (&twice);
    zim_codec_pack (&once, rec, m);
    const zim_record_t *rec2;
    int rc = zim_msg_unpack (once.data, once.size, &rec2, m2);
    assert (rc == 0 && rec2 == rec && zim_codec_equal (rec, m, m2));
    zim_codec_pack (&twice, rec, m2);
    assert (twice.size == once.size && memcmp (twice.data, once.data, once.size) == 0);
    zim_wr_free (&once);
    zim_wr_free (&twice);
    return 0;
}
