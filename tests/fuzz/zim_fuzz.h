/*  zim_fuzz.h: one way to write a fuzz harness for two builds.

        ZIM_FUZZ_TARGET (name)
        {
            ... use data[0..size) ...
            return 0;
        }

    Built by `make fuzz` (clang, -DZIM_FUZZ_LIBFUZZER) the target is
    libFuzzer's LLVMFuzzerTestOneInput, one program per harness. Built by
    `make check` (any compiler) every harness registers itself with the
    replay program (tests/fuzz/replay.c), which runs the corpus in the repo
    through each of them. A harness aborts (assert) on a finding; never
    leaks, never reads outside data.
*/
#ifndef ZIM_FUZZ_H_INCLUDED
#define ZIM_FUZZ_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#ifdef ZIM_FUZZ_LIBFUZZER
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
#define ZIM_FUZZ_TARGET(name) int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
#else
typedef int (*zim_fuzz_fn_t) (const uint8_t *data, size_t size);
//  Adds a harness to the replay program's list (called before main).
void zim_fuzz_register (const char *name, zim_fuzz_fn_t fn);
#define ZIM_FUZZ_TARGET(name)                                                                      \
    static int s_fuzz_##name (const uint8_t *data, size_t size);                                   \
    __attribute__ ((constructor)) static void s_fuzz_register_##name (void)                        \
    {                                                                                              \
        zim_fuzz_register (#name, s_fuzz_##name);                                                  \
    }                                                                                              \
    static int s_fuzz_##name (const uint8_t *data, size_t size)
#endif

#endif
