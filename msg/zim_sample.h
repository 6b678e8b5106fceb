/*  zim_sample.h: sample encodings of any record of the catalogue, whole or
    broken at one chosen place, written from the record's field table alone.
    The catalogue's selftest round-trips and breaks every kind with them
    (every field a wrong type, out of range or too long, dropped, an extra
    field), and the fuzz harnesses' seed corpus is made of them.

    Places ("sites") are numbered in writing order: every value written (a
    field, a list element, an argument) and every record (array or map)
    started. Run once without a fault to learn how many there are.
*/
#ifndef ZIM_SAMPLE_H_INCLUDED
#define ZIM_SAMPLE_H_INCLUDED

#include "msg/zim_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ZIM_FAULT_NONE = 0,
    ZIM_FAULT_TYPE,  //  a value of another msgpack type
    ZIM_FAULT_VALUE, //  the right type, out of range or too long, or a bad id
    ZIM_FAULT_DROP,  //  the value left out (arrays: only the last field)
    ZIM_FAULT_EXTRA, //  a record gets one more field (maps: an unknown key)
    ZIM_FAULTS
} zim_fault_t;

typedef struct {
    uint32_t seed;  //  varies values, list lengths and a frame's op
    int fault;      //  zim_fault_t
    int site;       //  where to apply it
    int sites;      //  out: how many sites there were
    bool applied;   //  out: the fault could be applied at site
    bool expect_ok; //  out: a strict decoder still accepts the result
} zim_sample_t;

//  Appends a sample encoding of rec (a kind with its code) to wr, broken
//  as s says.
void zim_sample_pack (zim_wr_t *wr, const zim_record_t *rec, zim_sample_t *s);

//  The name of a fault, for test messages.
const char *zim_sample_fault_name (int fault);

void zim_sample_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
