/* The capture a test call chain (chain.c) leaves: the innermost function's registers, a copy of the stack
   from its rsp up to the trampoline's rsp before its call (fc_cfi_saved_sp), and every return address the
   chain's functions saw (__builtin_return_address: the truth the CFI unwind is compared with). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fc_cfi_capture {
  uint64_t rip, rsp, rbp; /* in the innermost function, at the capture */
  uint64_t ra[4];         /* ra[0]: the innermost function's return address, ra[3]: the outermost's */
  uint64_t top;           /* fc_cfi_saved_sp at the capture */
  uint8_t* stack;         /* receives [rsp, top) */
  size_t stack_cap, stack_len;
};

typedef int (*fc_cfi_fn)(struct fc_cfi_capture*);

/* trampoline.S: stores rsp in fc_cfi_saved_sp right before `call *fn`, so the chain's outermost CFA is
   known without CFI. */
extern uint64_t fc_cfi_saved_sp;
int fc_cfi_run(fc_cfi_fn fn, struct fc_cfi_capture* cap);

/* chain.c, compiled twice: prefix fp_ (-fno-omit-frame-pointer) and nofp_ (-fomit-frame-pointer).
   top -> mid -> inner -> leaf; fp_top_nocfi -> fc_cfi_nocfi (assembly without CFI) -> fp_leaf. */
int fp_top(struct fc_cfi_capture*);
int fp_mid(struct fc_cfi_capture*, int);
int fp_inner(struct fc_cfi_capture*, int);
int fp_leaf(struct fc_cfi_capture*);
int fp_top_nocfi(struct fc_cfi_capture*);
int fc_cfi_nocfi(struct fc_cfi_capture*, fc_cfi_fn);
int nofp_top(struct fc_cfi_capture*);
int nofp_mid(struct fc_cfi_capture*, int);
int nofp_inner(struct fc_cfi_capture*, int);
int nofp_leaf(struct fc_cfi_capture*);

#ifdef __cplusplus
}
#endif
