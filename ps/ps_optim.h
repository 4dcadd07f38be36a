/* ps_optim.h: the optimizers a shard applies to its key range: SGD, momentum (optionally
 * Nesterov), Adam (optionally with decoupled weight decay, i.e. AdamW) and AdaGrad.
 *
 * One update reads the current parameters (src), the aggregated gradient and the optimizer
 * state, and writes the new parameters to dst, which may be src (in place) or another buffer
 * (out of place: the shard keeps serving pulls from src while the update runs). The loops are
 * fused, one pass over memory, written so the compiler vectorizes them; gradient accumulation
 * uses OpenBLAS saxpy. Pure functions of their arguments: safe on any thread. */
#ifndef PS_OPTIM_H
#define PS_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "smlt_enum.h" /* enum smlt_optim */


struct ps_optim_conf {
    enum smlt_optim kind;
    float lr;
    float momentum;
    int nesterov;
    float beta1, beta2, eps;
    float weight_decay;
    int decoupled; /* Adam: AdamW-style decay (lr * wd * w) instead of L2 in the gradient */
};

/* Sets c to the defaults: SGD, lr 0.01, momentum 0.9, betas 0.9/0.999, eps 1e-8, no decay. */
void ps_optim_conf_default(struct ps_optim_conf *c);

/* Returns the number of state floats kept per parameter: 0 (SGD), 1 (momentum, AdaGrad),
 * 2 (Adam). The state of n parameters is that many arrays of n floats, back to back. */
int ps_optim_state_per_param(enum smlt_optim k);

/* Returns 0 if c is usable, else SMLT_EINVAL with a message in err naming the field. */
int ps_optim_conf_check(const struct ps_optim_conf *c, char *err, size_t errlen);

/* Applies one update to n parameters. grad is the summed gradient; it is multiplied by scale
 * (1/number of contributions for an average) before use. t is this update's 1-based count
 * (Adam's bias correction). state: ps_optim_state_per_param() arrays of n floats (the first at
 * state, the next at state + n), updated in place. dst may be exactly src or exactly grad (no
 * partial overlap); state must not alias the others. Borrows everything for the call. */
void ps_optim_apply(const struct ps_optim_conf *c, uint64_t t, float *dst, const float *src,
                    const float *grad, float scale, float *state, size_t n);

/* acc[i] += g[i] for n elements (OpenBLAS saxpy). */
void ps_optim_accumulate(float *acc, const float *g, size_t n);

/* Sum of squares of x[0..n) in double (cblas_sdot in chunks). */
double ps_optim_sumsq(const float *x, size_t n);


#endif
