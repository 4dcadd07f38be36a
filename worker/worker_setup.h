/* worker_setup.h: setting up a job's shards for a model spec, without the training engine.
 *
 * The coordinator, smlt-worker --setup and the benchmarks configure a job's shards with the
 * model's tensors and initializations. The tensors come from the spec alone (nn_spec.h), so
 * this links libsmlt and the spec module but neither OpenBLAS nor the engine. */
#ifndef WORKER_SETUP_H
#define WORKER_SETUP_H

#include <stddef.h>

#include "smlt_admin.h"

/* Sets up a job for model spec on the shards at addrs (comma-separated, in shard order) with
 * the admin token: builds the partition map from the spec's tensors and configures every
 * shard (smlt_job_setup()). Borrows everything for the call. Returns 0, SMLT_EINVAL (a bad
 * spec, with nn_spec_parse()'s message) or another negative code, with a message in err. */
int worker_setup_job(const char *addrs, const char *admin_token, const char *model_spec,
                     const struct smlt_job_conf *conf, char *err, size_t errlen);

#endif
