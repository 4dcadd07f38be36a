/* worker_main.c: smlt-worker. As a function bootstrap it serves invocations in one of three
 * platform modes: --invoke (the local runtime's pipe, worker_invoke.h), the Lambda Runtime API
 * (--lambda, or no arguments at all with $AWS_LAMBDA_RUNTIME_API set: installed as a custom
 * runtime's `bootstrap`; worker_lambda.h) and --http (OpenFaaS, Knative; worker_http.h). Started
 * by hand or by a script, it trains one rank of a job through the parameter server and prints
 * progress per epoch. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "data_set.h"
#include "nn_model.h"
#include "smlt_admin.h"
#include "smlt_client_int.h"
#include "smlt_log.h"
#include "smlt_tls.h"
#include "smlt_util.h"
#include "worker_http.h"
#include "worker_invoke.h"
#include "worker_lambda.h"
#include "worker_py.h"
#include "worker_train.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smlt-worker --ps ADDRS --token T --model SPEC --data SRC --rank R --workers N [options]\n"
            "Train one rank of a job through smlt-ps shards.\n\n"
            "  --ps ADDRS          shard addresses, host:port,... (any one is enough without --setup)\n"
            "  --token T           the job token\n"
            "  --model SPEC        mlp:784-256-128-10, lenet5, logreg:784-10, ...\n"
            "  --data SRC          dataset directory or URL with the IDX files, or csv:F[,T] / libsvm:F[,T]\n"
            "  --label-column N|last  CSV: the label's column, 0-based (default 0), or the last\n"
            "  --header auto|true|false  CSV: a header line (default auto: skipped when a field\n"
            "                      of the first line is not a number)\n"
            "  --scale none|minmax|standard  rescale features by the training set's statistics,\n"
            "                      the test set by the same (default none)\n"
            "  --rank R --workers N  this worker's rank and the job's worker count\n"
            "  --batch B           batch size per worker (default 64)\n"
            "  --epochs E          epochs to train (default 1)\n"
            "  --sync MODE         bsp (default), ssp or asp\n"
            "  --staleness K       SSP bound (default 2)\n"
            "  --seed S            data shuffling and initialization seed (default 1)\n"
            "  --setup             set the job up on the shards first (needs --admin-token); with\n"
            "                      it: --optim sgd|momentum|adam|adagrad, --lr, --momentum,\n"
            "                      --weight-decay, --nesterov\n"
            "  --admin-token T     admin token of the shards (default: the job token)\n"
            "  --no-eval           do not evaluate on the test set at epoch ends\n"
            "  --eval-every S      also evaluate every S steps (reported as \"eval\" events with\n"
            "                      the training time so far, evaluation and setup excluded)\n"
            "  --lr-decay-epochs E --lr-decay F\n"
            "                      rank 0 multiplies the job's learning rate (--lr) by F every E\n"
            "                      epochs on the shards (default F 0.1; shards without --admin-token)\n"
            "  --cache-dir DIR     cache for datasets fetched over HTTP\n"
            "  --log-level LEVEL   error, warn, info (default), debug\n"
            "  --json              print one JSON object per epoch and one at the end\n"
            "  --tls-ca FILE       the shards speak TLS: verify them with these CA certificates\n"
            "                      (PEM; env SMLT_TLS_CA)\n"
            "  --tls-cert F --tls-key F  a client certificate for shards that require one\n"
            "                      (mutual TLS; env SMLT_TLS_CERT, SMLT_TLS_KEY)\n"
            "  --tls               TLS with the system's CAs (implied by the options above)\n"
            "\n       smlt-worker --invoke\n"
            "Serve function invocations: one JSON line per invocation on stdin, one JSON response\n"
            "line per invocation on stdout (the coordinator's local runtime starts it so).\n"
            "\n       smlt-worker --lambda   (or no arguments, with AWS_LAMBDA_RUNTIME_API set)\n"
            "Serve the Lambda Runtime API at $AWS_LAMBDA_RUNTIME_API: a custom runtime's\n"
            "bootstrap. $SMLT_LOG_LEVEL sets the log level.\n"
            "\n       smlt-worker --http [--listen HOST:PORT] [--max-inflight N] [--port-file F]\n"
            "Serve invocations over HTTP (OpenFaaS, Knative): POST / with the payload, GET\n"
            "/_/health and /_/ready; on --listen, else 0.0.0.0:$PORT, else 127.0.0.1:8080.\n"
            "\nIn every invocation mode TLS follows the invocation (\"tls\", \"tls_ca\"); the\n"
            "environment adds SMLT_TLS_CA (a CA file) and SMLT_TLS_CERT / SMLT_TLS_KEY (a client\n"
            "certificate for mutual TLS).\n");
}

struct progress_ctx {
    int json;
    uint32_t rank;
    int64_t last_epoch;
    double t0;
    uint64_t steps_at_epoch;
    uint64_t last_eval_step;
    int every;
};

static int on_progress(const struct worker_report *r, void *arg)
{
    struct progress_ctx *p = arg;
    if (r->eval_epoch > p->last_epoch) {
        p->last_epoch = r->eval_epoch;
        double el = smlt_now_mono() - p->t0;
        if (p->json)
            printf("{\"event\":\"epoch\",\"rank\":%u,\"epoch\":%lld,\"step\":%llu,\"train_loss\":%.5f,"
                   "\"test_accuracy\":%.5f,\"test_loss\":%.5f,\"elapsed_s\":%.3f,\"compute_s\":%.3f,"
                   "\"comm_s\":%.3f}\n",
                   p->rank, (long long)r->eval_epoch, (unsigned long long)r->next_step, r->loss,
                   r->test_acc, r->test_loss, el, r->compute_s, r->comm_s);
        else
            printf("rank %u epoch %lld: step %llu, train loss %.4f, test accuracy %.2f%%, %.1f s "
                   "(compute %.1f s, communication %.1f s)\n",
                   p->rank, (long long)r->eval_epoch, (unsigned long long)r->next_step, r->loss,
                   100 * r->test_acc, el, r->compute_s, r->comm_s);
        fflush(stdout);
    }
    if (p->every && r->eval_step > p->last_eval_step) {
        /* Training time as the PyTorch peers measure it: without evaluation and setup. */
        p->last_eval_step = r->eval_step;
        double train_s = r->elapsed_s - r->init_s - r->eval_s;
        if (p->json)
            printf("{\"event\":\"eval\",\"rank\":%u,\"step\":%llu,\"test_accuracy\":%.5f,"
                   "\"test_loss\":%.5f,\"train_s\":%.4f,\"compute_s\":%.4f,\"comm_s\":%.4f}\n",
                   p->rank, (unsigned long long)r->eval_step, r->test_acc, r->test_loss, train_s,
                   r->compute_s, r->comm_s);
        else
            printf("rank %u step %llu: test accuracy %.2f%% after %.2f s of training\n", p->rank,
                   (unsigned long long)r->eval_step, 100 * r->test_acc, train_s);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"ps", required_argument, 0, 'p'},        {"token", required_argument, 0, 't'},
        {"model", required_argument, 0, 'm'},     {"data", required_argument, 0, 'd'},
        {"rank", required_argument, 0, 'r'},      {"workers", required_argument, 0, 'w'},
        {"batch", required_argument, 0, 'b'},     {"epochs", required_argument, 0, 'e'},
        {"sync", required_argument, 0, 's'},      {"staleness", required_argument, 0, 'k'},
        {"seed", required_argument, 0, 'S'},      {"setup", no_argument, 0, 'U'},
        {"admin-token", required_argument, 0, 'a'}, {"optim", required_argument, 0, 'o'},
        {"lr", required_argument, 0, 'l'},        {"momentum", required_argument, 0, 'M'},
        {"weight-decay", required_argument, 0, 'W'}, {"nesterov", no_argument, 0, 'N'},
        {"no-eval", no_argument, 0, 'E'},         {"cache-dir", required_argument, 0, 'c'},
        {"log-level", required_argument, 0, 'L'}, {"json", no_argument, 0, 'j'},
        {"eval-every", required_argument, 0, 'V'},
        {"lr-decay-epochs", required_argument, 0, 'D'}, {"lr-decay", required_argument, 0, 'F'},
        {"label-column", required_argument, 0, 'C'}, {"header", required_argument, 0, 'H'},
        {"scale", required_argument, 0, 'X'},
        {"tls", no_argument, 0, 'T'},             {"tls-ca", required_argument, 0, 'A'},
        {"tls-cert", required_argument, 0, 'R'},  {"tls-key", required_argument, 0, 'K'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    struct worker_task t = {.batch = 64, .sync = SMLT_SYNC_BSP, .staleness = 2, .seed = 1,
                            .workers = 1, .evaluate = 1};
    int epochs = 1, setup = 0, json = 0, level = SMLT_LOG_INFO;
    uint64_t decay_epochs = 0;
    const char *admin = NULL;
    struct smlt_job_conf jc;
    smlt_job_conf_default(&jc);
    jc.lr = 0.1f;
    if (argc == 2 && !strcmp(argv[1], "--invoke"))
        return worker_invoke_main();
    if ((argc == 2 && !strcmp(argv[1], "--lambda")) ||
        (argc == 1 && getenv("AWS_LAMBDA_RUNTIME_API")))
        return worker_lambda_main(NULL);
    if (argc >= 2 && !strcmp(argv[1], "--http"))
        return worker_http_main(argc, argv);
    t.tls.ca = getenv("SMLT_TLS_CA");
    t.tls.cert = getenv("SMLT_TLS_CERT");
    t.tls.key = getenv("SMLT_TLS_KEY");
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'p': t.ps_addrs = optarg; break;
        case 't': t.token = optarg; break;
        case 'm': t.model = optarg; break;
        case 'd': t.data = optarg; break;
        case 'r': t.rank = (uint32_t)atoi(optarg); break;
        case 'w': t.workers = (uint32_t)atoi(optarg); break;
        case 'b': t.batch = atoi(optarg); break;
        case 'e': epochs = atoi(optarg); break;
        case 's': {
            enum smlt_sync m;
            if (smlt_enum_sync_parse(optarg, &m)) {
                fprintf(stderr, "smlt-worker: --sync: want bsp, ssp or asp\n");
                return 2;
            }
            t.sync = (int)m;
            break;
        }
        case 'k': t.staleness = (uint32_t)atoi(optarg); break;
        case 'S': t.seed = strtoull(optarg, NULL, 10); break;
        case 'U': setup = 1; break;
        case 'a': admin = optarg; break;
        case 'o': {
            enum smlt_optim k;
            if (smlt_enum_optim_parse(optarg, &k)) {
                fprintf(stderr, "smlt-worker: --optim: want sgd, momentum, adam or adagrad\n");
                return 2;
            }
            jc.optim = (int)k;
            break;
        }
        case 'l': jc.lr = strtof(optarg, NULL); break;
        case 'M': jc.momentum = strtof(optarg, NULL); break;
        case 'W': jc.weight_decay = strtof(optarg, NULL); break;
        case 'N': jc.nesterov = 1; break;
        case 'E': t.evaluate = 0; break;
        case 'V': t.eval_every = strtoull(optarg, NULL, 10); break;
        case 'D': decay_epochs = strtoull(optarg, NULL, 10); break;
        case 'F': t.lr_decay = strtof(optarg, NULL); break;
        case 'c': t.cache_dir = optarg; break;
        case 'C': case 'H': case 'X': {
            char derr[160];
            const char *key = c == 'C' ? "label_column" : c == 'H' ? "header" : "scale";
            if (worker_data_opts_set(&t.data_opts, key, optarg, derr, sizeof derr)) {
                fprintf(stderr, "smlt-worker: %s\n", derr);
                return 2;
            }
            break;
        }
        case 'L':
            level = smlt_log_parse_level(optarg);
            if (level < 0) { fprintf(stderr, "smlt-worker: --log-level: bad level\n"); return 2; }
            break;
        case 'j': json = 1; break;
        case 'T': t.tls.on = 1; break;
        case 'A': t.tls.ca = optarg; break;
        case 'R': t.tls.cert = optarg; break;
        case 'K': t.tls.key = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!t.ps_addrs || !t.token || !t.model || !t.data || t.workers < 1 || t.rank >= t.workers ||
        t.batch < 1 || epochs < 1) {
        fprintf(stderr, "smlt-worker: --ps, --token, --model, --data are required, and rank < workers, "
                        "batch >= 1, epochs >= 1\n");
        usage(stderr);
        return 2;
    }
    smlt_log_init("smlt-worker", level);
    openblas_set_num_threads(1);
    char err[512];
    if (t.tls.on || t.tls.ca || t.tls.cert || t.tls.key) {
        /* TLS for every client of this run: the job setup's too. */
        struct smlt_tls *tls = NULL;
        struct smlt_tls_conf tc = {.ca = t.tls.ca, .cert = t.tls.cert, .key = t.tls.key};
        if (smlt_tls_client_new(&tls, &tc, err, sizeof err) != 0) {
            fprintf(stderr, "smlt-worker: TLS: %s\n", err);
            return 2;
        }
        smlt_client_set_default_tls(tls);
        smlt_tls_free(tls);
        t.tls.on = 1;
    }
    if (setup) {
        jc.job = "manual";
        jc.sync = t.sync;
        jc.workers = t.workers;
        jc.staleness = t.staleness;
        jc.seed = t.seed;
        int rc = !strncmp(t.model, "python:", 7)
                     ? worker_setup_python(t.ps_addrs, admin ? admin : t.token, t.model + 7, &jc,
                                           NULL, err, sizeof err)
                     : worker_setup_job(t.ps_addrs, admin ? admin : t.token, t.model, &jc, err,
                                        sizeof err);
        if (rc) {
            fprintf(stderr, "smlt-worker: setup: %s\n", err);
            return 1;
        }
    }
    if (!strncmp(t.model, "python:", 7)) {
        /* By hand, a torch job's ranks are the smlt package's (worker/python/examples/
         * ps_only.py); through the coordinator, this bootstrap runs them. */
        if (setup)
            return 0;
        fprintf(stderr, "smlt-worker: a python: model trains through the coordinator, or by hand "
                        "with the smlt package (worker/python/examples/ps_only.py); --setup "
                        "sets up its shards\n");
        return 2;
    }
    /* Size the job in steps from the data: load it once here (the run below reuses it). */
    struct worker *w = worker_new();
    struct data_set *train = NULL, *test = NULL;
    if (!w || worker_load_data(t.data, t.cache_dir, &t.data_opts, &train, &test, err,
                                  sizeof err)) {
        fprintf(stderr, "smlt-worker: %s\n", err);
        return 1;
    }
    uint64_t spe = worker_steps_per_epoch(data_set_size(train), t.workers, t.batch);
    data_set_free(train);
    data_set_free(test);
    t.total_steps = spe * (uint64_t)epochs;
    t.lr = jc.lr;
    t.lr_decay_step = decay_epochs * spe;
    if (t.lr_decay_step && t.lr_decay == 0.0f)
        t.lr_decay = 0.1f;
    struct progress_ctx p = {.json = json, .rank = t.rank, .last_epoch = -1, .t0 = smlt_now_mono(),
                             .every = t.eval_every > 0};
    struct worker_report r;
    int rc = worker_run(w, &t, &r, on_progress, &p);
    if (rc) {
        fprintf(stderr, "smlt-worker: rank %u: %s\n", t.rank, r.err);
        worker_free(w);
        return 1;
    }
    double sps = r.elapsed_s > 0 ? (double)r.samples / r.elapsed_s : 0;
    if (json)
        printf("{\"event\":\"done\",\"rank\":%u,\"steps\":%llu,\"samples\":%llu,\"train_loss\":%.5f,"
               "\"test_accuracy\":%.5f,\"elapsed_s\":%.3f,\"init_s\":%.3f,\"compute_s\":%.3f,"
               "\"comm_s\":%.3f,\"eval_s\":%.3f,\"samples_per_s\":%.1f}\n",
               t.rank, (unsigned long long)r.steps, (unsigned long long)r.samples, r.loss,
               r.test_acc, r.elapsed_s, r.init_s, r.compute_s, r.comm_s, r.eval_s, sps);
    else
        printf("rank %u done: %llu steps, %llu samples in %.1f s (%.0f samples/s; init %.2f s, "
               "compute %.1f s, communication %.1f s, eval %.1f s), last test accuracy %.2f%%\n",
               t.rank, (unsigned long long)r.steps, (unsigned long long)r.samples, r.elapsed_s, sps,
               r.init_s, r.compute_s, r.comm_s, r.eval_s, 100 * r.test_acc);
    worker_free(w);
    return 0;
}
