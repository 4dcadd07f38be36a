/* sim_bo.h: a Bayesian-optimisation scheduler in the style of SMLT's (arXiv 2205.01853): a
 * Gaussian process over the configuration space, fitted to the objective measured at the
 * configurations the job has run, and a lower-confidence-bound acquisition that picks the next
 * configuration to run. smlt-sim runs it beside our model-based scheduler as a baseline; it
 * is not used by the coordinator.
 *
 * Only the math lives here: points are in [0, 1]^SIM_BO_DIM, the objective is to be minimised,
 * and the caller supplies both. */
#ifndef SIM_BO_H
#define SIM_BO_H

#define SIM_BO_DIM 3
#define SIM_BO_MAX_OBS 64

/* Returns the index of the candidate with the lowest mean - kappa * sd under a GP (squared
 * exponential kernel of length `len`, noise variance `noise` on standardized values) fitted to
 * the n observations (x[i], y[i]); the candidates already observed are not excluded. n = 0
 * returns -1. n is capped at SIM_BO_MAX_OBS (the most recent ones are used). */
int sim_bo_suggest(const double (*x)[SIM_BO_DIM], const double *y, int n,
                   const double (*cand)[SIM_BO_DIM], int n_cand, double len, double noise,
                   double kappa);

#endif
