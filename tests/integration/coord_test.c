/* coord_test.c: see coord_test.h. */
#include "coord_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <zlib.h>

#include "smlt_proc.h"
#include "smlt_util.h"

int ct_quick(void)
{
    const char *q = getenv("SMLT_TEST_QUICK");
    return q && *q && strcmp(q, "0");
}

/* ---- the dataset subset ------------------------------------------------------------------- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Copies the first n records of the IDX file src (gzip or plain) into dst, with the count in
 * the header changed to n. */
static int idx_head(const char *src, const char *dst, unsigned n)
{
    int rc = -1;
    gzFile in = gzopen(src, "rb");
    FILE *out = fopen(dst, "wb");
    unsigned char hdr[4 + 4 * 4], *rec = NULL;
    if (!in || !out || gzread(in, hdr, 4) != 4 || hdr[0] || hdr[1] || hdr[2] != 8)
        goto out;
    int ndims = hdr[3];
    if (ndims < 1 || ndims > 4 || gzread(in, hdr + 4, (unsigned)(4 * ndims)) != 4 * ndims)
        goto out;
    uint32_t count = be32(hdr + 4);
    size_t recsz = 1;
    for (int i = 1; i < ndims; i++)
        recsz *= be32(hdr + 4 + 4 * i);
    if (n > count)
        n = count;
    hdr[4] = (unsigned char)(n >> 24);
    hdr[5] = (unsigned char)(n >> 16);
    hdr[6] = (unsigned char)(n >> 8);
    hdr[7] = (unsigned char)n;
    rec = malloc(recsz * n);
    if (!rec || fwrite(hdr, 1, 4 + 4 * (size_t)ndims, out) != 4 + 4 * (size_t)ndims)
        goto out;
    if (gzread(in, rec, (unsigned)(recsz * n)) != (int)(recsz * n) ||
        fwrite(rec, 1, recsz * n, out) != recsz * n)
        goto out;
    rc = 0;
out:
    free(rec);
    if (in)
        gzclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    return rc;
}

int ct_subset_dataset(char *dir, size_t dirlen, unsigned ntrain, unsigned ntest)
{
    snprintf(dir, dirlen, "/tmp/smlt-fmnist.XXXXXX");
    /* Readable by all, like the dataset it slices: containers of the worker image read it as
     * their own unprivileged user. */
    if (!mkdtemp(dir) || chmod(dir, 0755) != 0)
        return -1;
    static const char *names[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    for (int i = 0; i < 4; i++) {
        char src[512], dst[512];
        snprintf(src, sizeof src, "%s/%s.gz", CT_FMNIST, names[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[i]);
        if (idx_head(src, dst, i < 2 ? ntrain : ntest) != 0) {
            fprintf(stderr, "cannot make a Fashion-MNIST subset from %s\n", src);
            ct_rm_rf(dir);
            return -1;
        }
    }
    return 0;
}

void ct_rm_rf(const char *dir)
{
    if (strncmp(dir, "/tmp/", 5) || strstr(dir, ".."))
        return;
    DIR *d = opendir(dir);
    if (!d) {
        unlink(dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            ct_rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

void ct_note_dir(const char *root, const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/.dirs", root);
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s\n", dir);
        fclose(f);
    }
}

void ct_clean_noted(const char *root)
{
    char path[600], line[1024];
    snprintf(path, sizeof path, "%s/.dirs", root);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0])
            ct_rm_rf(line);
    }
    fclose(f);
    unlink(path);
}

/* ---- the coordinator ------------------------------------------------------------------------ */

int ct_coord_start(struct test_daemon *d, const char *data_dir, const char *const *extra)
{
    return ct_coord_start_env(d, data_dir, extra, NULL);
}

int ct_coord_start_env(struct test_daemon *d, const char *data_dir, const char *const *extra,
                       const char *const *env)
{
    const char *args[32];
    int n = 0;
    args[n++] = test_bin("smlt-coordinator");
    args[n++] = "--data-dir";
    args[n++] = data_dir;
    args[n++] = "--admin-token";
    args[n++] = CT_ADMIN;
    args[n++] = "--log-level";
    args[n++] = "warn";
#if defined(__SANITIZE_ADDRESS__)
    /* An ASan worker reserves terabytes of shadow address space: RLIMIT_AS would stop it. */
    args[n++] = "--no-memory-limit";
#endif
    for (int i = 0; extra && extra[i] && n < 30; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    int rc = test_daemon_start_argv(d, args, env, 600);
    /* data_dir's parent is the test's root: note the daemon's own directory there. */
    char root[512];
    snprintf(root, sizeof root, "%s", data_dir);
    char *slash = strrchr(root, '/');
    if (rc == 0 && slash && slash != root) {
        *slash = '\0';
        ct_note_dir(root, d->dir);
    }
    return rc;
}

void ct_fixture_setup(struct test_daemon *coord, const char *root, char *data_dir, size_t len)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    snprintf(data_dir, len, "%s/data.XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(data_dir));
    ck_assert_int_eq(ct_coord_start(coord, data_dir, NULL), 0);
}

void ct_fixture_teardown(struct test_daemon *coord, const char *data_dir)
{
    test_daemon_stop(coord);
    ct_rm_rf(data_dir);
}

int ct_running_with_progress(const json_t *job)
{
    return !strcmp(ct_str(job, "state"), "running") && ct_num(job, "step") >= 3;
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

struct body {
    char *p;
    size_t n;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    char *q = realloc(b->p, b->n + n + 1);
    if (!q)
        return 0;
    memcpy(q + b->n, p, n);
    b->p = q;
    b->n += n;
    q[b->n] = '\0';
    return n;
}

static const char *ct_cafile, *ct_cert, *ct_key; /* ct_use_tls() */

void ct_use_tls(const char *cafile, const char *cert, const char *key)
{
    ct_cafile = cafile;
    ct_cert = cert;
    ct_key = key;
}

long ct_http(int port, const char *method, const char *path, const char *token, const char *body,
             char **out)
{
    char url[1024], auth[256];
    snprintf(url, sizeof url, "http%s://127.0.0.1:%d%s", ct_cafile ? "s" : "", port, path);
    CURL *h = curl_easy_init();
    if (!h)
        return -1;
    struct body b = {0};
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (!strcmp(method, "POST")) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (ct_cafile)
        curl_easy_setopt(h, CURLOPT_CAINFO, ct_cafile);
    if (ct_cafile && ct_cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, ct_cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, ct_key);
    }
    long code = -1;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (out)
        *out = b.p ? b.p : strdup("");
    else
        free(b.p);
    return code;
}

long ct_http_json(int port, const char *method, const char *path, const char *token,
                  const char *body, json_t **json)
{
    char *out = NULL;
    long code = ct_http(port, method, path, token, body, &out);
    json_error_t je;
    *json = out ? json_loads(out, 0, &je) : NULL;
    free(out);
    return code;
}

char *ct_submit(int port, const char *spec, char *err, size_t errlen)
{
    json_t *o = NULL;
    long code = ct_http_json(port, "POST", "/api/jobs", CT_ADMIN, spec, &o);
    char *id = NULL;
    if (code == 201 && json_string_value(json_object_get(o, "id")))
        id = strdup(json_string_value(json_object_get(o, "id")));
    else
        snprintf(err, errlen, "HTTP %ld: %s", code, o ? ct_str(o, "error") : "(no JSON)");
    json_decref(o);
    return id;
}

int ct_job_over(const char *state)
{
    return !strcmp(state, "succeeded") || !strcmp(state, "failed") ||
           !strcmp(state, "canceled") || !strcmp(state, "interrupted") ||
           !strcmp(state, "stopped");
}

json_t *ct_wait_until(int port, const char *id, double timeout_s, int (*fn)(const json_t *job))
{
    char path[256];
    snprintf(path, sizeof path, "/api/jobs/%s", id);
    double end = smlt_now_mono() + timeout_s;
    json_t *j = NULL;
    for (;;) {
        json_decref(j);
        j = NULL;
        long code = ct_http_json(port, "GET", path, NULL, NULL, &j);
        if (code == 200 && j && (ct_job_over(ct_str(j, "state")) || (fn && fn(j))))
            return j;
        if (smlt_now_mono() > end)
            return j;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

json_t *ct_wait_job(int port, const char *id, double timeout_s)
{
    return ct_wait_until(port, id, timeout_s, NULL);
}

int ct_test_certs_make(char *dir, size_t dirlen)
{
    const char *src = getenv("SMLT_SOURCE_DIR");
    snprintf(dir, dirlen, "/tmp/smlt-test-certs.XXXXXX");
    if (!src || !mkdtemp(dir)) {
        fprintf(stderr, "test certificates: need SMLT_SOURCE_DIR and /tmp\n");
        return -1;
    }
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "'%s/tools/make-test-certs.sh' '%s' >/dev/null", src, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test certificates: %s failed\n", cmd);
        ct_rm_rf(dir);
        return -1;
    }
    return 0;
}

void ct_test_certs_remove(const char *dir)
{
    ct_rm_rf(dir);
}

void ct_each_step_once(const json_t *job, size_t shards)
{
    size_t i;
    json_t *st;
    long long v0 = -1;
    ck_assert_int_eq(json_array_size(json_object_get(job, "ps_stats")), shards);
    json_array_foreach(json_object_get(job, "ps_stats"), i, st)
    {
        long long v = (long long)ct_num(st, "version");
        if (v0 < 0)
            v0 = v;
        ck_assert_int_eq(v, v0);
        ck_assert_int_eq((long long)ct_num(st, "updates_applied"), v);
    }
    ck_assert_int_gt(v0, 0);
}

/* Submits spec through coord and waits up to timeout_s for it to end; asserts that it
 * succeeded (printing the coordinator's log when not) with test accuracy target or more.
 * Returns the job (a new reference). */
static json_t *job_to_success(struct test_daemon *coord, const char *spec, double timeout_s,
                              double target)
{
    char err[512];
    char *id = ct_submit(coord->port, spec, err, sizeof err);
    ck_assert_msg(id != NULL, "submit: %s", err);
    json_t *j = ct_wait_job(coord->port, id, timeout_s);
    free(id);
    ck_assert_ptr_nonnull(j);
    if (strcmp(ct_str(j, "state"), "succeeded"))
        test_daemon_dump_log(coord);
    ck_assert_msg(!strcmp(ct_str(j, "state"), "succeeded"), "%s: %s %s", ct_str(j, "state"),
                  ct_str(j, "error"), ct_str(j, "reason"));
    ck_assert_msg(ct_num(j, "test_accuracy") >= target, "test accuracy %.4f below %.2f",
                  ct_num(j, "test_accuracy"), target);
    return j;
}

json_t *ct_demo_job(struct test_daemon *coord, const char *platform, const char *quick_dataset)
{
    const int quick = ct_quick();
    const double target = quick ? 0.80 : 0.88;
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"name\": \"demo-%s\", \"model\": \"mlp:784-256-128-10\", \"dataset\": \"%s\", "
             "\"workers\": 4, \"shards\": 2, \"max_epochs\": %d, \"target_accuracy\": %.2f, "
             "\"optimizer\": {\"kind\": \"momentum\", \"lr\": 0.05}, "
             "\"platform\": {\"kind\": \"%s\", \"time_limit_s\": %d}}",
             platform, quick ? quick_dataset : CT_FMNIST, quick ? 10 : 30, target, platform,
             quick ? 1 : 4);
    json_t *j = job_to_success(coord, spec, 600, target);
    ct_each_step_once(j, 2);
    return j;
}

void ct_pool_start(struct test_daemon *coord, const char *data_dir, struct test_daemon *node,
                   int n, const char *mb, const char *const *node_extra)
{
    char root[300], pool[1024] = "", token_file[320];
    snprintf(root, sizeof root, "%s", data_dir);
    char *slash = strrchr(root, '/');
    if (slash)
        *slash = '\0';
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "node-%d", i);
        const char *args[32] = {"--node", "--admin-token", CT_POOL, "--memory-mb", mb, "--name",
                                name};
        int k = 7;
        for (int e = 0; node_extra && node_extra[e] && k < 31; e++)
            args[k++] = node_extra[e];
        args[k] = NULL;
        ck_assert_int_eq(test_daemon_start(&node[i], "smlt-ps", args, 600), 0);
        ct_note_dir(root, node[i].dir);
        size_t len = strlen(pool);
        snprintf(pool + len, sizeof pool - len, "%s%s", i ? "," : "", node[i].addr);
    }
    snprintf(token_file, sizeof token_file, "%s/pool-token", data_dir);
    FILE *f = fopen(token_file, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", CT_POOL);
    fclose(f);
    const char *extra[] = {"--ps-pool", pool, "--ps-pool-token-file", token_file, NULL};
    ck_assert_int_eq(ct_coord_start(coord, data_dir, extra), 0);
}

int ct_no_torch(const char *label)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    fprintf(stderr, "%s: SKIPPED in the sanitizer pass (no Python package in a sanitizer build; "
                    "the Release pass runs it)\n",
            label);
    return 1;
#else
    (void)label;
    return 0;
#endif
}

json_t *ct_torch_job(struct test_daemon *coord, const char *platform, const char *dataset,
                     int epochs, int time_limit_s)
{
    static const char *src =
        "import torch\n"
        "import smlt.data\n\n\n"
        "def model():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64),\n"
        "                               torch.nn.ReLU(), torch.nn.Linear(64, 10))\n\n\n"
        "def train_data(dataset):\n"
        "    return smlt.data.idx_split(dataset, 'train')\n\n\n"
        "def test_data(dataset):\n"
        "    return smlt.data.idx_split(dataset, 't10k')\n";
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:{s:s, s:f}, s:{s:s}}",
                             "model", "python:mlp.py", "model_source", src, "dataset", dataset,
                             "epochs", epochs, "workers", 2, "shards", 1, "batch_size", 64,
                             "optimizer", "kind", "momentum", "lr", 0.05, "platform", "kind",
                             platform);
    if (time_limit_s > 0)
        json_object_set_new(json_object_get(spec, "platform"), "time_limit_s",
                            json_integer(time_limit_s));
    char *body = json_dumps(spec, JSON_COMPACT);
    json_decref(spec);
    ck_assert_ptr_nonnull(body);
    json_t *j = job_to_success(coord, body, 400, 0.7);
    free(body);
    ct_each_step_once(j, 1);
    return j;
}

/* ---- /proc --------------------------------------------------------------------------------- */

int ct_children(pid_t ppid, const char *prog, const char *arg, pid_t *out, int max)
{
    pid_t all[256];
    int n = 0, k = smlt_proc_find(prog, ppid, NULL, NULL, all, 256);
    for (int i = 0; i < k && n < max; i++) {
        struct smlt_proc_info p;
        if (smlt_proc_info(all[i], &p) != 0)
            continue;
        /* `prog ARG` exactly: ARG the one argument after argv[0]. */
        if (arg && (p.argc != 2 || strcmp(p.args + strlen(p.args) + 1, arg)))
            continue;
        out[n++] = all[i];
    }
    return n;
}

double ct_num(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

const char *ct_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

int ct_main(const char *name, Suite *suite, char *root, size_t rootlen, char *dataset,
            size_t dslen, unsigned ntrain, unsigned ntest)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(root, rootlen, "/tmp/smlt-test-%s.XXXXXX", name);
    if (!mkdtemp(root))
        return 1;
    if (dataset && ct_subset_dataset(dataset, dslen, ntrain, ntest) != 0) {
        ct_rm_rf(root);
        fprintf(stderr, "test_%s: needs Fashion-MNIST in %s (Debian package "
                        "dataset-fashion-mnist)\n", name, CT_FMNIST);
        return 1;
    }
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (dataset)
        ct_rm_rf(dataset);
    ct_clean_noted(root);
    ct_rm_rf(root);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
