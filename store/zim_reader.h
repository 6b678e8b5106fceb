/*  zim_reader.h: READ answers. A sync reads one user's inbox from a seq
    (or from the device's cursor), oldest first; a history reads one peer
    conversation from an id, newest first. Each answer is one PAGE bounded
    twice: at most `limit` messages (0 means 100, capped at 1000), and at
    most max_page_bytes as encoded, the whole PAGE message with each entry's
    envelope counted, so the gateway can always queue it for the client.
    A page holds at least one message whatever its size, and `more` is true
    whenever anything was left out.
*/
#ifndef ZIM_READER_H_INCLUDED
#define ZIM_READER_H_INCLUDED

#include "store/zim_db.h"
#include "msg/zim_msg.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZIM_READER_LIMIT 100         //  messages of a page when READ limit is 0
#define ZIM_READER_LIMIT_MAX 1000    //  READ limits are capped here
#define ZIM_READER_BYTES (256 << 10) //  default max_page_bytes

typedef struct _zim_reader_t zim_reader_t;

//  Creates the reader of db. Caller owns return value.
zim_reader_t *zim_reader_new (zim_db_t *db);
//  Destroys it.
void zim_reader_destroy (zim_reader_t **self_p);

//  Encodes into out (reset first) the PAGE answering m from the read
//  transaction txn, at most max_bytes long unless its one message alone is
//  longer. A READ with an invalid app, uid or peer gets status ZIM_EVALUE.
//  @return 0, or an LMDB error (out then holds a PAGE with ZIM_ESTORE)
int zim_reader_page (zim_reader_t *self, MDB_txn *txn, const zim_read_t *m, uint64_t max_bytes,
                     zim_wr_t *out);

//  Self test of this class.
void zim_reader_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
