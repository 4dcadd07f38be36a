/* bench_train.c: `smlt-bench train`: samples/s of compute-only training (gather a shuffled
 * batch, forward, backward, local SGD step) for the MLP and LeNet-5 on Fashion-MNIST, beside
 * PyTorch on the CPU with the same models, batch size and thread count, run by
 * tools/peer_torch_fmnist.py in the same invocation.
 *
 * Our side is timed two ways: "fused" (nn_model_train_step: each layer's SGD update is
 * written by its backward pass, the gradient array is never materialized) and "grads+sgd"
 * (nn_model_train_batch then nn_model_sgd, what a worker does before pushing gradients to the
 * parameter server). Both do the same arithmetic as PyTorch's forward/backward/optimizer step.
 * Each side runs warm-up steps and then --reps timed runs of --batches steps; the median run
 * is reported (this machine is shared and noisy). The peer's OpenBLAS uses the same
 * OPENBLAS_CORETYPE as ours: the environment's, unchanged.
 *
 * Then the same model through the parameter server: one worker (the worker's own loop,
 * worker_run(): gradient, then one BSP push+pull of the whole model per step) through 1 and
 * 2 local smlt-ps shards applying the same plain SGD (bench_train_ps.c), reported as
 * ps_samples_per_s with the per-step split into compute and communication.
 * `smlt-bench train --accuracy` is the time-to-accuracy mode (bench_train_ps.c);
 * `smlt-bench train --torch` the torch binding's benchmark (bench_train_torch.c). */
#include "bench_train.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data_fetch.h"
#include "data_set.h"
#include "nn_model.h"
#include "smlt_util.h"

#define BENCH_MAX_REPS 100
#define BENCH_MAX_PS_RUNS 4

struct bench_opts {
    int do_mlp, do_cnn;
    const char *mlp_spec, *cnn_spec;
    int batch, batches_mlp, batches_cnn, warmup, reps, threads, rounds;
    float lr;
    const char *data;
    const char *script;
    const char *python;
    int json, torch;
    int ps_shards[BENCH_MAX_PS_RUNS], nps; /* shard counts for the runs through the PS */
};

struct bench_result {
    double fused, split;   /* median samples/s */
    double fused_best, split_best;
    double loss;
    double torch, torch_best; /* 0 when not run */
    size_t params;
    struct bench_ps_rate ps[BENCH_MAX_PS_RUNS];
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smlt-bench train [options]\n"
            "  --model mlp|cnn|all   models to run (default all)\n"
            "  --mlp-spec SPEC       MLP spec (default mlp:784-256-128-10)\n"
            "  --cnn-spec SPEC       CNN spec (default lenet5)\n"
            "  --batch N             batch size (default 64)\n"
            "  --batches N           timed steps per run (default mlp 400, cnn 100)\n"
            "  --warmup N            untimed steps first (default 20)\n"
            "  --reps N              timed runs, the median is reported (default 5)\n"
            "  --rounds N            alternate ours and torch N times (default 1)\n"
            "  --threads N           OpenBLAS threads on both sides (default 1)\n"
            "  --lr X                SGD learning rate (default 0.05)\n"
            "  --data DIR|URL        Fashion-MNIST source (default "
            "/usr/share/datasets/fashion-mnist)\n"
            "  --no-torch            skip the PyTorch peer\n"
            "  --ps-shards N[,N]     also train through a local PS with N shards, one worker\n"
            "                        (default 1,2; needs smlt-ps next to smlt-bench)\n"
            "  --no-ps               compute only\n"
            "  --torch-script PATH   the peer script (default: tools/peer_torch_fmnist.py under\n"
            "                        $SMLT_SOURCE_DIR, beside the binary, or the source tree)\n"
            "  --python PATH         interpreter for the peer (default /usr/bin/python3)\n"
            "  --json                one JSON object per model on stdout\n"
            "\n       smlt-bench train --accuracy [options]   (--accuracy --help for its options)\n"
            "Time to a test accuracy: 2 smlt-worker processes and 2 shards (BSP) vs PyTorch DDP.\n"
            "\n       smlt-bench train --torch [options]      (--torch --help for its options)\n"
            "The torch binding: a torch training file through the shards vs PyTorch DDP (time to\n"
            "accuracy), and smlt.Client.sync from Python vs smlt_sync from C (cost per step).\n");
}

/* Parses a positive int option value in [lo, hi]. */
static int opt_int(const char *name, const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "smlt-bench train: %s needs an integer in [%d, %d], got '%s'\n", name,
                lo, hi, v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_opts(int argc, char **argv, struct bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->do_mlp = o->do_cnn = 1;
    o->mlp_spec = "mlp:784-256-128-10";
    o->cnn_spec = "lenet5";
    o->batch = 64;
    o->batches_mlp = 400;
    o->batches_cnn = 100;
    o->warmup = 20;
    o->reps = 5;
    o->rounds = 1;
    o->threads = 1;
    o->lr = 0.05f;
    o->data = "/usr/share/datasets/fashion-mnist";
    o->python = "/usr/bin/python3";
    o->torch = 1;
    o->ps_shards[0] = 1;
    o->ps_shards[1] = 2;
    o->nps = 2;
    int batches = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        char key[64];
        const char *eq = strchr(a, '=');
        if (eq && (size_t)(eq - a) < sizeof key) {
            memcpy(key, a, (size_t)(eq - a));
            key[eq - a] = '\0';
            val = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", a);
        }
        /* flags without a value */
        if (!strcmp(key, "--help") || !strcmp(key, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(key, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(key, "--no-torch")) {
            o->torch = 0;
            continue;
        }
        if (!strcmp(key, "--no-ps")) {
            o->nps = 0;
            continue;
        }
        static const char *valued[] = {"--model", "--mlp-spec", "--cnn-spec", "--batch",
                                       "--batches", "--warmup", "--reps", "--rounds",
                                       "--threads", "--lr", "--data", "--torch-script",
                                       "--python", "--ps-shards"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
            known |= !strcmp(key, valued[k]);
        if (!known) {
            fprintf(stderr, "smlt-bench train: unknown option '%s'\n", key);
            usage(stderr);
            return -1;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "smlt-bench train: %s needs a value\n", key);
                return -1;
            }
            val = argv[++i];
        }
        int rc = 0;
        if (!strcmp(key, "--model")) {
            o->do_mlp = !strcmp(val, "mlp") || !strcmp(val, "all");
            o->do_cnn = !strcmp(val, "cnn") || !strcmp(val, "all");
            if (!o->do_mlp && !o->do_cnn) {
                fprintf(stderr, "smlt-bench train: --model mlp, cnn or all, not '%s'\n", val);
                return -1;
            }
        } else if (!strcmp(key, "--mlp-spec")) {
            o->mlp_spec = val;
        } else if (!strcmp(key, "--cnn-spec")) {
            o->cnn_spec = val;
        } else if (!strcmp(key, "--batch")) {
            rc = opt_int(key, val, 1, 65536, &o->batch);
        } else if (!strcmp(key, "--batches")) {
            rc = opt_int(key, val, 1, 1 << 24, &batches);
        } else if (!strcmp(key, "--warmup")) {
            rc = opt_int(key, val, 0, 1 << 24, &o->warmup);
        } else if (!strcmp(key, "--reps")) {
            rc = opt_int(key, val, 1, BENCH_MAX_REPS, &o->reps);
        } else if (!strcmp(key, "--rounds")) {
            rc = opt_int(key, val, 1, 20, &o->rounds);
        } else if (!strcmp(key, "--threads")) {
            rc = opt_int(key, val, 1, 1024, &o->threads);
        } else if (!strcmp(key, "--lr")) {
            char *end;
            o->lr = strtof(val, &end);
            if (*end || !(o->lr > 0.0f && o->lr < 100.0f)) {
                fprintf(stderr, "smlt-bench train: bad --lr '%s'\n", val);
                return -1;
            }
        } else if (!strcmp(key, "--data")) {
            o->data = val;
        } else if (!strcmp(key, "--torch-script")) {
            o->script = val;
        } else if (!strcmp(key, "--python")) {
            o->python = val;
        } else if (!strcmp(key, "--ps-shards")) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", val);
            o->nps = 0;
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && rc == 0;
                 tok = strtok_r(NULL, ",", &save)) {
                if (o->nps == BENCH_MAX_PS_RUNS) {
                    fprintf(stderr, "smlt-bench train: at most %d shard counts\n",
                            BENCH_MAX_PS_RUNS);
                    return -1;
                }
                rc = opt_int(key, tok, 1, 8, &o->ps_shards[o->nps++]);
            }
        } else {
            fprintf(stderr, "smlt-bench train: unknown option '%s'\n", key);
            usage(stderr);
            return -1;
        }
        if (rc < 0)
            return -1;
    }
    if (batches)
        o->batches_mlp = o->batches_cnn = batches;
    return 0;
}

/* Finds the peer script: the flag, $SMLT_SOURCE_DIR/tools, beside the binary (build/bin ->
 * ../../tools or ../tools), then the source tree this was built from. */
static const char *find_script(const struct bench_opts *o, char *buf, size_t len)
{
    if (o->script)
        return access(o->script, R_OK) == 0 ? o->script : NULL;
    const char *rel = "peer_torch_fmnist.py";
    const char *src = getenv("SMLT_SOURCE_DIR");
    if (src && *src) {
        snprintf(buf, len, "%s/tools/%s", src, rel);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            const char *ups[] = {"/../../tools/", "/../tools/", "/"};
            for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) {
                snprintf(buf, len, "%s%s%s", exe, ups[i], rel);
                if (access(buf, R_OK) == 0)
                    return buf;
            }
        }
    }
#ifdef SMLT_SOURCE_DIR_DEFAULT
    snprintf(buf, len, "%s/tools/%s", SMLT_SOURCE_DIR_DEFAULT, rel);
    if (access(buf, R_OK) == 0)
        return buf;
#endif
    return NULL;
}

/* Runs the peer for one model and reads its JSON line. Returns 0 and fills the rates, or -1. */
static int run_torch(const struct bench_opts *o, const char *script, const char *model,
                     int batches, double *median_sps, double *best_sps)
{
    char nb[16], bs[16], wu[16], rp[16], th[16], lr[32];
    snprintf(nb, sizeof nb, "%d", batches);
    snprintf(bs, sizeof bs, "%d", o->batch);
    snprintf(wu, sizeof wu, "%d", o->warmup);
    snprintf(rp, sizeof rp, "%d", o->reps);
    snprintf(th, sizeof th, "%d", o->threads);
    snprintf(lr, sizeof lr, "%g", (double)o->lr);
    char *args[] = {(char *)o->python, (char *)script, "--model", (char *)model, "--batch", bs,
                    "--batches", nb, "--warmup", wu, "--reps", rp, "--threads", th, "--lr", lr,
                    "--data", (char *)o->data, "--json", NULL};
    int fds[2];
    if (pipe(fds) < 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(o->python, args);
        fprintf(stderr, "smlt-bench train: cannot run %s: %s\n", o->python, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[4096];
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *m = strstr(line, "\"samples_per_s\":");
        const char *b = strstr(line, "\"best_samples_per_s\":");
        if (m && b) {
            *median_sps = strtod(m + strlen("\"samples_per_s\":"), NULL);
            *best_sps = strtod(b + strlen("\"best_samples_per_s\":"), NULL);
            found = 1;
        }
    }
    if (f)
        fclose(f);
    else
        close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!found || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "smlt-bench train: the PyTorch peer (%s %s --model %s) failed\n",
                o->python, script, model);
        return -1;
    }
    return 0;
}

/* Times our side: warm-up, then reps runs of batches steps, fused or split. */
static int run_ours(struct nn_model *m, struct data_set_iter *it, const struct bench_opts *o,
                    int batches, int fused, double *rates, double *last_loss)
{
    const int d = nn_model_input_dim(m);
    float *x = malloc(sizeof(float) * (size_t)o->batch * (size_t)d);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)o->batch);
    if (!x || !y) {
        free(x);
        free(y);
        return -1;
    }
    double lsum = 0;
    for (int r = -1; r < o->reps; r++) {
        const int steps = r < 0 ? o->warmup : batches;
        long samples = 0;
        lsum = 0;
        double t0 = smlt_now_mono();
        for (int s = 0; s < steps; s++) {
            int n = data_set_iter_next(it, x, y, NULL);
            float loss = 0;
            int rc = n < 0 ? n
                     : fused ? nn_model_train_step(m, x, y, n, o->lr, &loss)
                             : nn_model_train_batch(m, x, y, n, &loss);
            if (rc < 0) {
                free(x);
                free(y);
                return -1;
            }
            if (!fused)
                nn_model_sgd(m, o->lr);
            samples += n;
            lsum += loss;
        }
        double dt = smlt_now_mono() - t0;
        if (r >= 0)
            rates[r] = (double)samples / dt;
    }
    *last_loss = lsum / batches;
    free(x);
    free(y);
    return 0;
}

static int bench_model(const struct bench_opts *o, const char *spec, const char *peer_model,
                       int batches, const struct data_set *train, const char *script,
                       struct bench_result *res)
{
    char err[256];
    struct nn_model *m = nn_model_new(spec, o->batch, err, sizeof err);
    if (!m) {
        fprintf(stderr, "smlt-bench train: %s\n", err);
        return -1;
    }
    if (nn_model_input_dim(m) != data_set_dim(train) ||
        nn_model_num_classes(m) < data_set_num_classes(train)) {
        fprintf(stderr, "smlt-bench train: model %s does not fit the data (%d features, %d "
                "classes)\n", spec, data_set_dim(train), data_set_num_classes(train));
        nn_model_free(m);
        return -1;
    }
    struct data_set_iter *it = data_set_iter_new(train, 0, 1, 1, o->batch, 0);
    if (!it) {
        nn_model_free(m);
        return -1;
    }
    memset(res, 0, sizeof *res);
    res->params = nn_model_num_params(m);
    const int nr = o->reps * o->rounds;
    double *fr = calloc((size_t)nr, sizeof(double)), *sr = calloc((size_t)nr, sizeof(double));
    double *tr = calloc((size_t)o->rounds, sizeof(double));
    double *tb = calloc((size_t)o->rounds, sizeof(double));
    int rc = fr && sr && tr && tb ? 0 : -1;
    nn_model_init_params(m, 1);
    for (int round = 0; round < o->rounds && rc == 0; round++) {
        rc = run_ours(m, it, o, batches, 1, fr + round * o->reps, &res->loss);
        if (rc == 0)
            rc = run_ours(m, it, o, batches, 0, sr + round * o->reps, &res->loss);
        if (rc == 0 && script)
            rc = run_torch(o, script, peer_model, batches, &tr[round], &tb[round]);
    }
    if (rc == 0) {
        for (int i = 0; i < nr; i++) {
            res->fused_best = fr[i] > res->fused_best ? fr[i] : res->fused_best;
            res->split_best = sr[i] > res->split_best ? sr[i] : res->split_best;
        }
        res->fused = median(fr, nr);
        res->split = median(sr, nr);
        if (script) {
            for (int i = 0; i < o->rounds; i++)
                res->torch_best = tb[i] > res->torch_best ? tb[i] : res->torch_best;
            res->torch = median(tr, o->rounds);
        }
    }
    free(fr);
    free(sr);
    free(tr);
    free(tb);
    data_set_iter_free(it);
    nn_model_free(m);
    for (int k = 0; k < o->nps && rc == 0; k++) {
        struct bench_ps_rate_opts po = {.spec = spec, .data = o->data, .batch = o->batch,
                                        .shards = o->ps_shards[k], .warmup = o->warmup,
                                        .batches = batches, .reps = o->reps, .lr = o->lr};
        if (bench_train_ps_rate(&po, &res->ps[k]) != 0) {
            fprintf(stderr, "smlt-bench train: %s through %d shard(s) failed\n", spec,
                    o->ps_shards[k]);
            rc = -1;
        }
    }
    return rc;
}

static void print_result(const struct bench_opts *o, const char *name, const char *spec,
                         const struct bench_result *r)
{
    const char *core = getenv("OPENBLAS_CORETYPE");
    if (o->json) {
        printf("{\"model\":\"%s\",\"spec\":\"%s\",\"threads\":%d,\"batch\":%d,\"params\":%zu,"
               "\"samples_per_s\":%.1f,\"best_samples_per_s\":%.1f,"
               "\"split_samples_per_s\":%.1f,\"split_best_samples_per_s\":%.1f,", name, spec,
               o->threads, o->batch, r->params, r->fused, r->fused_best, r->split,
               r->split_best);
        if (r->torch > 0)
            printf("\"torch_samples_per_s\":%.1f,\"torch_best_samples_per_s\":%.1f,"
                   "\"ratio\":%.3f,\"split_ratio\":%.3f,", r->torch, r->torch_best,
                   r->fused / r->torch, r->split / r->torch);
        else
            printf("\"torch_samples_per_s\":null,\"ratio\":null,\"split_ratio\":null,");
        if (o->nps > 0) {
            printf("\"ps_samples_per_s\":%.1f,\"ps_shards\":%d,\"ps_ratio\":%.3f,\"ps_runs\":[",
                   r->ps[0].samples_per_s, o->ps_shards[0],
                   r->split > 0 ? r->ps[0].samples_per_s / r->split : 0);
            for (int k = 0; k < o->nps; k++)
                printf("%s{\"shards\":%d,\"samples_per_s\":%.1f,\"best_samples_per_s\":%.1f,"
                       "\"compute_ms_per_step\":%.4f,\"comm_ms_per_step\":%.4f}",
                       k ? "," : "", o->ps_shards[k], r->ps[k].samples_per_s, r->ps[k].best,
                       r->ps[k].compute_ms, r->ps[k].comm_ms);
            printf("],");
        } else {
            printf("\"ps_samples_per_s\":null,");
        }
        printf("\"loss\":%.4f,\"openblas_coretype\":\"%s\"}\n", r->loss, core ? core : "");
    } else {
        printf("%-20s %8zu %12.0f %12.0f ", spec, r->params, r->fused, r->split);
        if (r->torch > 0)
            printf("%12.0f %7.2fx %7.2fx", r->torch, r->fused / r->torch, r->split / r->torch);
        else
            printf("%12s %8s %8s", "-", "-", "-");
        for (int k = 0; k < o->nps; k++)
            printf(" %12.0f", r->ps[k].samples_per_s);
        printf("\n");
        for (int k = 0; k < o->nps; k++)
            printf("%-20s through %d shard(s): %.3f ms compute + %.3f ms push/pull per step "
                   "(%.2fx of grads+sgd)\n", "", o->ps_shards[k], r->ps[k].compute_ms,
                   r->ps[k].comm_ms, r->split > 0 ? r->ps[k].samples_per_s / r->split : 0);
    }
    fflush(stdout);
}

int bench_train_main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--accuracy"))
            return bench_train_accuracy_main(argc, argv);
        else if (!strcmp(argv[i], "--torch"))
            return bench_train_torch_main(argc, argv);
    struct bench_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    char sbuf[PATH_MAX + 64];
    const char *script = NULL;
    if (o.torch) {
        script = find_script(&o, sbuf, sizeof sbuf);
        if (!script) {
            fprintf(stderr, "smlt-bench train: cannot find peer_torch_fmnist.py (use "
                    "--torch-script PATH, set SMLT_SOURCE_DIR, or --no-torch)\n");
            return 1;
        }
    }
    openblas_set_num_threads(o.threads);
    char err[512];
    struct data_set *train = NULL;
    double t0 = smlt_now_mono();
    if (data_fetch_idx(o.data, "train", NULL, NULL, &train, err, sizeof err) < 0) {
        fprintf(stderr, "smlt-bench train: %s\n", err);
        return 1;
    }
    const char *core = getenv("OPENBLAS_CORETYPE");
    if (!o.json) {
        printf("smlt-bench train: Fashion-MNIST %zu samples (loaded in %.2f s), batch %d, %d "
               "thread(s), OPENBLAS_CORETYPE=%s, lr %g\n", data_set_size(train),
               smlt_now_mono() - t0, o.batch, o.threads, core ? core : "(unset)", (double)o.lr);
        printf("samples/s: median of %d run(s) x %d round(s) after %d warm-up steps; fused = "
               "SGD written by backward, grads+sgd = gradient array then SGD\n", o.reps,
               o.rounds, o.warmup);
        printf("%-20s %8s %12s %12s %12s %8s %8s", "model", "params", "smlt fused",
               "grads+sgd", "torch", "ratio", "ratio2");
        for (int k = 0; k < o.nps; k++) {
            char h[32];
            snprintf(h, sizeof h, "PS %d shard%s", o.ps_shards[k], o.ps_shards[k] > 1 ? "s" : "");
            printf(" %12s", h);
        }
        printf("\n");
    }
    int failed = 0;
    struct bench_result r;
    if (o.do_mlp) {
        if (bench_model(&o, o.mlp_spec, "mlp", o.batches_mlp, train, script, &r) == 0)
            print_result(&o, "mlp", o.mlp_spec, &r);
        else
            failed = 1;
    }
    if (o.do_cnn) {
        if (bench_model(&o, o.cnn_spec, "cnn", o.batches_cnn, train, script, &r) == 0)
            print_result(&o, "cnn", o.cnn_spec, &r);
        else
            failed = 1;
    }
    data_set_free(train);
    return failed;
}
