/*  zim_retention.h: the retention purge. Messages older than the retention
    period go, oldest first (ids are time-ordered, so they are at the front
    of msgs), each with its inbox entries, its history entry and its
    idempotency key, all located from its record without a scan. Seq
    counters stay, so a user's seqs never restart.
*/
#ifndef ZIM_RETENTION_H_INCLUDED
#define ZIM_RETENTION_H_INCLUDED

#include "store/zim_db.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Deletes, in one write transaction, up to max messages whose ts is below
//  cutoff_ms, and sets *purged to how many. A corrupt record found on the
//  way is deleted too (and counted).
//  @return 0 or an LMDB error (nothing deleted)
int zim_retention_purge (zim_db_t *db, uint64_t cutoff_ms, size_t max, size_t *purged);

//  Self test of this class.
void zim_retention_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
