/* worker_setup.c: a job's shards set up from a model spec (worker_setup.h). */
#include "worker_setup.h"

#include <stdint.h>
#include <stdlib.h>

#include "nn_spec.h"
#include "smlt_util.h"

int worker_setup_job(const char *addrs, const char *admin_token, const char *model_spec,
                     const struct smlt_job_conf *conf, char *err, size_t errlen)
{
    struct nn_spec *sp = malloc(sizeof *sp);
    if (!sp) {
        smlt_set_err(err, errlen, "out of memory");
        return SMLT_ENOMEM;
    }
    int rc = nn_spec_parse(sp, model_spec, err, errlen);
    if (rc == 0) {
        struct smlt_tensor_def defs[NN_SPEC_MAX_TENSORS];
        uint64_t shapes[NN_SPEC_MAX_TENSORS * NN_SPEC_MAX_DIMS];
        int n = nn_spec_tensor_defs(sp, defs, shapes);
        struct smlt_client_opts o = {.token = admin_token, .admin = 1, .timeout_ms = 60000};
        struct smlt_client *c = NULL;
        rc = smlt_job_setup(&c, addrs, &o, defs, (size_t)n, conf, err, errlen);
        smlt_client_close(c);
    }
    free(sp);
    return rc;
}
