/* smltctl.c: the smltctl command: main, help, global flags, the state directory, and HTTP.
 *
 * See smltctl.h for the map of the command's files. This file owns everything the commands
 * share: the exit codes' meaning, finding the coordinator (--url, $SMLT_URL, or the local
 * cluster's STATE_DIR/cluster.json written by `smltctl up`), one libcurl request per call with
 * its failure put in plain words, and the mapping of the API's HTTP statuses to exit codes. */
#include "smltctl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "smlt_util.h"

/* ---- help ---------------------------------------------------------------------------------- */

static const char main_help[] =
    "usage: smltctl [--url URL] [--token T] [--json] COMMAND [ARGS]\n"
    "Run and watch SMLT-C training jobs on serverless function workers.\n"
    "\n"
    "Local cluster:\n"
    "  up                   start a local cluster (coordinator + embedded function runtime)\n"
    "  down                 stop it\n"
    "  demo                 up + train the Fashion-MNIST MLP to 88% + watch it\n"
    "Jobs:\n"
    "  submit SPEC.json     submit a job (or `-` for stdin, or flags); prints its id\n"
    "  status [JOB]         a table of jobs, or one job in detail\n"
    "  watch JOB            live progress until the job ends\n"
    "  cancel JOB           stop a job (its model so far is saved)\n"
    "  scale JOB --workers N --shards M   change a running job's fan-out\n"
    "  logs JOB [--tail N]  the job's log\n"
    "  model JOB -o FILE    download the job's saved model, check it and list its tensors\n"
    "  checkpoint JOB       save a running job's model now\n"
    "  dashboard            the dashboard's URL and how to log in to it\n"
    "  help COMMAND         help on one command (also: COMMAND --help)\n"
    "\n"
    "Global flags (before or after the command):\n"
    "  --url URL            the coordinator's API (default: the local cluster's; env SMLT_URL)\n"
    "  --token T            its admin token for submit/cancel/scale/checkpoint (default: the\n"
    "                       local cluster's; env SMLT_TOKEN)\n"
    "  --cacert FILE        CA certificates (PEM) to trust for an https:// coordinator\n"
    "                       (default: the system's; env SMLT_CACERT)\n"
    "  --cert F --key F     a client certificate and its key (PEM) for a coordinator that\n"
    "                       requires one (mutual TLS; env SMLT_CERT, SMLT_KEY)\n"
    "  --json               machine-readable output from the read commands\n"
    "\n"
    "Exit codes:\n"
    "  0  success (for watch and demo: the job succeeded)\n"
    "  1  error: the job failed, was canceled or stopped (budget), or the coordinator\n"
    "     refused the request\n"
    "  2  usage: a bad command line\n"
    "  3  not found: no such job\n"
    "  4  cannot reach the coordinator (or no local cluster is up)\n"
    "\n"
    "State: $SMLT_HOME (default ~/.smlt) holds cluster.json (URL, admin token, pid; mode 0600),\n"
    "the coordinator's log coordinator.log and its data directory data/ (journals, job logs,\n"
    "models).\n";

struct help_entry {
    const char *cmd;
    const char *text;
};

static const struct help_entry helps[] = {
    {"up", "usage: smltctl up [--concurrency N] [--keep-warm S] [--no-memory-limit]\n"
           "                  [--log-level L] [--platform P PLATFORM-OPTIONS]\n"
           "Start a local cluster: smlt-coordinator (found next to smltctl) in the background,\n"
           "detached, on 127.0.0.1 with a free port and a fresh random admin token. It runs jobs\n"
           "on its embedded local function runtime, or on the platform --platform names\n"
           "(lambda, openfaas, knative; jobs then name it as platform.kind). Its address, token\n"
           "and pid go to STATE_DIR/cluster.json (mode 0600), its log to\n"
           "STATE_DIR/coordinator.log, jobs to STATE_DIR/data. If a cluster is already up, says\n"
           "so and exits 0.\n"
           "  --concurrency N   function instances running at once (default 64)\n"
           "  --keep-warm S     seconds an idle instance is kept warm (default 60)\n"
           "  --no-memory-limit do not enforce the functions' memory size (RLIMIT_AS), e.g. for\n"
           "                    sanitizer builds\n"
           "  --log-level L     the coordinator's: error, warn, info (default), debug\n"
           "  --platform P, --function NAME, --gateway URL, --function-url URL, --region R,\n"
           "  --qualifier Q, --lambda-endpoint URL, --openfaas-async, --callback-url URL\n"
           "                    passed to smlt-coordinator as they are (see its --help)\n"},
    {"down", "usage: smltctl down\n"
             "Stop the local cluster started by `smltctl up` (SIGTERM to its pid, then SIGKILL\n"
             "after 15 s) and remove STATE_DIR/cluster.json. Running jobs are canceled with their\n"
             "models saved; the data directory and its history stay.\n"},
    {"demo", "usage: smltctl demo [--data DIR] [--max-epochs N] [--target ACC] [--platform P]\n"
             "Start the local cluster if it is not up, submit the Fashion-MNIST MLP\n"
             "(mlp:784-256-128-10, 4 function workers, 2 parameter-server shards, BSP, momentum)\n"
             "with a target test accuracy of 0.88, and watch it. The cluster keeps running: look\n"
             "at the job with `smltctl status`, stop the cluster with `smltctl down`.\n"
             "  --data DIR        the Fashion-MNIST IDX files (default " SMLTCTL_DEMO_DATA ")\n"
             "  --max-epochs N    bound on the epochs (default 30)\n"
             "  --target ACC      target test accuracy (default 0.88)\n"
             "  --platform P      the job's platform.kind, for a cluster whose workers run on P\n"
             "                    (`smltctl up --platform P ...`)\n"
             "Exits 0 if the job succeeded.\n"},
    {"submit",
     "usage: smltctl submit [SPEC.json | -] [flags] [--watch]\n"
     "Submit a job and print its id. The spec is a JSON object (see coordinator/coord_spec.h);\n"
     "`-` reads it from stdin. Flags set fields, over the file's:\n"
     "  --model SPEC          mlp:784-256-128-10, logreg:784-10, lenet5, ...\n"
     "  --data PATH           dataset directory, URL, csv:TRAIN[,TEST] or libsvm:...;\n"
     "                        relative paths are made absolute\n"
     "  --name NAME           a name for the job\n"
     "  --epochs N            epochs to train          --max-epochs N   bound with --target-accuracy\n"
     "  --target-accuracy A   stop at this test accuracy (0..1)\n"
     "  --workers N --shards M --batch B\n"
     "  --sync bsp|ssp|asp    --optimizer sgd|momentum|adam|adagrad   --lr X   --momentum X\n"
     "  --deadline D          finish within D (seconds, or 90s, 15m, 2h)\n"
     "  --budget USD          spend at most this many dollars\n"
     "  --time-limit D        the function time limit (platform.time_limit_s)\n"
     "  --platform P          where the workers run (platform.kind): the coordinator's own\n"
     "  --memory MB           the function memory size (platform.memory_mb)\n"
     "  --seed N\n"
     "  --label-column N|last CSV: the label's column, 0-based (default 0), or the last\n"
     "  --header auto|true|false  CSV: the first line is a header (default auto: when one\n"
     "                        of its fields is not a number)\n"
     "  --scale none|minmax|standard  rescale features by the training set's statistics,\n"
     "                        the test set by the same (default none)\n"
     "  --watch               watch the job after submitting it (exit code as `watch`)\n"
     "A refused spec prints the coordinator's reason (it names the field) and exits 1.\n"},
    {"status", "usage: smltctl status [JOB] [--json]\n"
               "Without JOB: a table of all jobs. With JOB: its details (progress, accuracy, cost\n"
               "and budget, time and deadline, invocations, epochs, recent events). --json prints\n"
               "the API's object (one job: state, epoch, test_accuracy, cost_usd, workers, shards,\n"
               "series, events, ...).\n"},
    {"watch", "usage: smltctl watch JOB [--interval S] [--json]\n"
              "Show a job's progress live until it ends: epoch, step, loss, accuracy, spend vs\n"
              "budget, time vs deadline, workers and shards, redrawn in place on a terminal and\n"
              "as plain lines otherwise (--json: one JSON object per change), then a summary.\n"
              "Exits 0 if the job succeeded, 1 if it failed, was canceled or was stopped (its\n"
              "budget ran out). Ctrl-C stops watching, not the job.\n"
              "  --interval S   seconds between polls (default 0.5)\n"},
    {"dashboard", "usage: smltctl dashboard [--show-token] [--json]\n"
                  "Print the URL of the coordinator's dashboard (its job list, live charts of a\n"
                  "job and the scheduler's decisions on them) and how to log in: the admin token\n"
                  "goes into the page's \"Admin token\" field, and stays in that browser tab.\n"
                  "  --show-token   print the admin token too (the local cluster's, or --token)\n"},
    {"cancel", "usage: smltctl cancel JOB\n"
               "Stop a job; its model so far is saved (fetch it with `smltctl model`).\n"},
    {"scale", "usage: smltctl scale JOB [--workers N] [--shards M]\n"
              "Manual override of a running job's worker and shard count.\n"},
    {"logs", "usage: smltctl logs JOB [--tail N]\n"
             "Print the job's log: the coordinator's decisions and the workers' output.\n"
             "  --tail N   the last N lines (default 200; 0: all)\n"},
    {"model", "usage: smltctl model JOB [-o FILE] [--json]\n"
              "Download the job's saved model (default FILE: JOB.smlt), check it (header, CRCs,\n"
              "sizes) and list its tensors. A running job's model is saved at its end or on\n"
              "`smltctl checkpoint JOB`.\n"},
    {"checkpoint", "usage: smltctl checkpoint JOB\n"
                   "Save a running job's current model now; prints where the coordinator put it.\n"},
    {NULL, NULL}};

const char *smltctl_help_text(const char *cmd)
{
    for (const struct help_entry *h = helps; h->cmd; h++)
        if (!strcmp(h->cmd, cmd))
            return h->text;
    return NULL;
}

/* ---- messages and parsing ------------------------------------------------------------------ */

void smltctl_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("smltctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int smltctl_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "smltctl%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    const char *h = cmd ? smltctl_help_text(cmd) : NULL;
    if (h) {
        size_t n = strcspn(h, "\n");
        fprintf(stderr, "%.*s\n", (int)n, h);
    }
    fprintf(stderr, "(see `smltctl %s%s--help`)\n", cmd ? cmd : "", cmd ? " " : "");
    return SMLTCTL_USAGE;
}

int smltctl_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n))
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n])
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "smltctl: %s needs a value\n", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

int smltctl_global_opt(struct smltctl *c, int argc, char **argv, int *i)
{
    const char *v;
    int r;
    if (!strcmp(argv[*i], "--json")) {
        c->json = 1;
        return 1;
    }
    if ((r = smltctl_opt(argc, argv, i, "--url", &v)) != 0) {
        if (r > 0)
            c->url_flag = v;
        return r;
    }
    if ((r = smltctl_opt(argc, argv, i, "--token", &v)) != 0) {
        if (r > 0)
            c->token_flag = v;
        return r;
    }
    if ((r = smltctl_opt(argc, argv, i, "--cacert", &v)) != 0) {
        if (r > 0)
            c->cacert_flag = v;
        return r;
    }
    if ((r = smltctl_opt(argc, argv, i, "--cert", &v)) != 0) {
        if (r > 0)
            c->cert_flag = v;
        return r;
    }
    if ((r = smltctl_opt(argc, argv, i, "--key", &v)) != 0) {
        if (r > 0)
            c->key_flag = v;
        return r;
    }
    return 0;
}

int smltctl_parse_long(const char *flag, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno) {
        smltctl_err("%s: want a whole number, got \"%s\"", flag, s);
        return SMLTCTL_USAGE;
    }
    if (v < lo || v > hi) {
        smltctl_err("%s: want %lld..%lld, got %lld", flag, lo, hi, v);
        return SMLTCTL_USAGE;
    }
    *out = v;
    return 0;
}

int smltctl_parse_double(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) {
        smltctl_err("%s: want a number, got \"%s\"", flag, s);
        return SMLTCTL_USAGE;
    }
    *out = v;
    return 0;
}

int smltctl_parse_duration(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mult = 1;
    if (end != s && *end && !end[1]) {
        switch (*end) {
        case 's': mult = 1; end++; break;
        case 'm': mult = 60; end++; break;
        case 'h': mult = 3600; end++; break;
        case 'd': mult = 86400; end++; break;
        default: break;
        }
    }
    if (!*s || *end || errno || !isfinite(v)) {
        smltctl_err("%s: want a duration such as 90, 90s, 15m or 2h, got \"%s\"", flag, s);
        return SMLTCTL_USAGE;
    }
    *out = v * mult;
    return 0;
}

/* ---- buffers and JSON ---------------------------------------------------------------------- */

void smltctl_buf_free(struct smltctl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int buf_add(struct smltctl_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

double smltctl_jnum(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

long long smltctl_jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : (long long)json_number_value(v);
}

const char *smltctl_jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

void smltctl_print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (s) {
        puts(s);
        free(s);
    }
}

/* ---- state directory and cluster.json -------------------------------------------------------- */

int smltctl_state_init(struct smltctl *c)
{
    const char *home = getenv("SMLT_HOME");
    if (home && *home) {
        snprintf(c->state_dir, sizeof c->state_dir, "%s", home);
        return 0;
    }
    const char *h = getenv("HOME");
    if (!h || !*h) {
        /* No $HOME (a service, `env -i`): the passwd entry's home; as a last resort /tmp. */
        struct passwd *pw = getpwuid(getuid());
        h = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
    }
    if (h)
        snprintf(c->state_dir, sizeof c->state_dir, "%s/.smlt", strcmp(h, "/") ? h : "");
    else
        snprintf(c->state_dir, sizeof c->state_dir, "/tmp/smlt-%u", (unsigned)getuid());
    return 0;
}

const char *smltctl_state_path(const struct smltctl *c, const char *name)
{
    static char buf[4][PATH_MAX + 64];
    static int slot;
    char *b = buf[slot++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", c->state_dir, name);
    return b;
}

int smltctl_cluster_read(const struct smltctl *c, struct smltctl_cluster *out)
{
    memset(out, 0, sizeof *out);
    const char *path = smltctl_state_path(c, "cluster.json");
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) {
        if (access(path, F_OK) != 0)
            return SMLTCTL_NOTFOUND;
        smltctl_err("%s is not readable JSON (%s); remove it, or run `smltctl down`", path,
                    je.text);
        return SMLTCTL_ERR;
    }
    const char *url = smltctl_jstr(o, "url");
    long long pid = smltctl_jint(o, "pid");
    if (!*url || pid <= 0 || strlen(url) >= sizeof out->url) {
        smltctl_err("%s lacks the coordinator's url or pid; remove it, or run `smltctl down`", path);
        json_decref(o);
        return SMLTCTL_ERR;
    }
    snprintf(out->url, sizeof out->url, "%s", url);
    snprintf(out->token, sizeof out->token, "%s", smltctl_jstr(o, "token"));
    out->pid = (pid_t)pid;
    snprintf(out->log, sizeof out->log, "%s", smltctl_jstr(o, "log"));
    snprintf(out->data_dir, sizeof out->data_dir, "%s", smltctl_jstr(o, "data_dir"));
    json_decref(o);
    return 0;
}

int smltctl_cluster_write(const struct smltctl *c, const struct smltctl_cluster *cl)
{
    const char *path = smltctl_state_path(c, "cluster.json");
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s}", "url", cl->url, "token", cl->token, "pid",
                          (json_int_t)cl->pid, "log", cl->log, "data_dir", cl->data_dir);
    char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    char *text = s ? malloc(strlen(s) + 2) : NULL;
    int ok = text != NULL;
    if (ok) {
        size_t n = strlen(s);
        memcpy(text, s, n);
        text[n] = '\n';
        /* Created 0600 from the start: the file holds the admin token. */
        ok = smlt_write_file_atomic(path, text, n + 1, 0600) == 0;
    }
    if (!ok)
        smltctl_err("cannot write %s: %s", path, strerror(errno));
    free(text);
    free(s);
    return ok ? 0 : SMLTCTL_ERR;
}

int smltctl_coordinator_alive(pid_t pid)
{
    if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH))
        return 0;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    if (!rp || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X')
        return 0; /* a zombie waiting for its parent to reap it has exited */
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0'; /* argv[0] is the first NUL-terminated string */
    const char *base = strrchr(buf, '/');
    base = base ? base + 1 : buf;
    return !strcmp(base, "smlt-coordinator");
}

/* ---- finding the coordinator --------------------------------------------------------------- */

static void trim_url(char *u)
{
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/')
        u[--n] = '\0';
    /* "--url http://host:port/api" is what `up` prints: accept it as the base too. */
    if (n >= 4 && !strcmp(u + n - 4, "/api"))
        u[n - 4] = '\0';
}

int smltctl_resolve(struct smltctl *c)
{
    if (c->resolved)
        return 0;
    struct smltctl_cluster cl;
    int have = smltctl_cluster_read(c, &cl) == 0;
    const char *url = c->url_flag ? c->url_flag : getenv("SMLT_URL");
    if (url && !*url)
        url = NULL;
    if (!url && !have) {
        smltctl_err("no coordinator to talk to: no local cluster is up (%s is missing) — start "
                    "one with `smltctl up`, or pass --url",
                    smltctl_state_path(c, "cluster.json"));
        return SMLTCTL_UNREACHABLE;
    }
    if (url) {
        if (strlen(url) >= sizeof c->url - 8) {
            smltctl_err("--url: too long");
            return SMLTCTL_USAGE;
        }
        snprintf(c->url, sizeof c->url, "%s%s", strstr(url, "://") ? "" : "http://", url);
    } else {
        snprintf(c->url, sizeof c->url, "%s", cl.url);
    }
    trim_url(c->url);
    const char *tok = c->token_flag ? c->token_flag : getenv("SMLT_TOKEN");
    if (tok && *tok) {
        snprintf(c->token, sizeof c->token, "%s", tok);
    } else if (have) {
        /* The cluster's token goes only to the cluster it belongs to. */
        char cu[SMLTCTL_URL_MAX];
        snprintf(cu, sizeof cu, "%s", cl.url);
        trim_url(cu);
        if (!strcmp(cu, c->url))
            snprintf(c->token, sizeof c->token, "%s", cl.token);
    }
    c->resolved = 1;
    return 0;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

struct xfer {
    CURL *h;
    struct smltctl_buf *out;
    FILE *to;
    int too_big, oom, write_err;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (x->to && code / 100 == 2) {
        if (fwrite(p, 1, n, x->to) != n) {
            x->write_err = errno ? errno : EIO;
            return 0;
        }
        return n;
    }
    if (!x->out)
        return n;
    if (x->out->len + n > SMLTCTL_MAX_BODY) {
        x->too_big = 1;
        return 0;
    }
    if (buf_add(x->out, p, n) != 0) {
        x->oom = 1;
        return 0;
    }
    return n;
}

static void lower_first(char *s)
{
    if (s[0] && isupper((unsigned char)s[0]) && !isupper((unsigned char)s[1]))
        s[0] = (char)tolower((unsigned char)s[0]);
}

int smltctl_http(struct smltctl *c, const char *method, const char *path, const char *body,
                 long timeout_s, long *status, struct smltctl_buf *out, FILE *to)
{
    char url[SMLTCTL_URL_MAX + 1024];
    snprintf(url, sizeof url, "%s%s", c->url, path);
    CURL *h = curl_easy_init();
    if (!h) {
        smltctl_err("cannot start an HTTP client (libcurl)");
        return SMLTCTL_ERR;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    struct xfer x = {.h = h, .out = out, .to = to};
    struct curl_slist *hdrs = NULL;
    char auth[SMLTCTL_TOKEN_MAX + 32];
    int is_post = !strcmp(method, "POST");
    /* Reads need the token too when the coordinator listens beyond loopback. */
    if (c->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (is_post) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s > 0 ? timeout_s : 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "smltctl/" SMLT_VERSION_STRING);
    /* A proxy from the environment must not get between us and a loopback coordinator. */
    curl_easy_setopt(h, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
    /* HTTPS: the CA that signed the coordinator's certificate (libcurl checks the name). */
    const char *ca = c->cacert_flag ? c->cacert_flag : getenv("SMLT_CACERT");
    if (ca && *ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    const char *crt = c->cert_flag ? c->cert_flag : getenv("SMLT_CERT");
    const char *key = c->key_flag ? c->key_flag : getenv("SMLT_KEY");
    if (crt && *crt) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, crt);
        if (key && *key)
            curl_easy_setopt(h, CURLOPT_SSLKEY, key);
    }
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    long os_errno = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (rc == CURLE_OK) {
        *status = code;
        return SMLTCTL_OK;
    }
    if (x.write_err) {
        smltctl_err("cannot write the download: %s", strerror(x.write_err));
        return SMLTCTL_ERR;
    }
    if (x.too_big || x.oom) {
        smltctl_err("the coordinator's answer to %s %s is %s", method, path,
                    x.too_big ? "too large" : "more than memory allows");
        return SMLTCTL_ERR;
    }
    char why[CURL_ERROR_SIZE + 64];
    const char *hint = " — is it up? try `smltctl up`";
    if (rc == CURLE_COULDNT_CONNECT && os_errno) {
        snprintf(why, sizeof why, "%s", strerror((int)os_errno));
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(why, sizeof why, "%s", errbuf[0] ? errbuf : "timed out");
        hint = " — it may be overloaded or stuck; see its log";
    } else if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT) {
        snprintf(why, sizeof why, "not a usable URL (%s)", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        hint = " — check --url";
    } else if (rc == CURLE_PEER_FAILED_VERIFICATION) {
        snprintf(why, sizeof why, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        hint = " — pass the CA that signed its certificate with --cacert (or SMLT_CACERT)";
    } else if (rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_SSL_CACERT_BADFILE) {
        snprintf(why, sizeof why, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        hint = rc == CURLE_SSL_CACERT_BADFILE ? " — check --cacert"
                                              : " — does it serve HTTPS? (an http:// URL if not)";
    } else if (rc == CURLE_GOT_NOTHING && !strncmp(c->url, "http://", 7)) {
        snprintf(why, sizeof why, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        hint = " — it may serve HTTPS: use an https:// URL (and --cacert)";
    } else {
        snprintf(why, sizeof why, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    }
    lower_first(why);
    if (c->quiet_http)
        return SMLTCTL_UNREACHABLE;
    smltctl_err("cannot reach the coordinator at %s: %s%s", c->url, why, hint);
    return SMLTCTL_UNREACHABLE;
}

int smltctl_api_quiet(struct smltctl *c, const char *method, const char *path, json_t *body,
                      json_t **resp, long *http_status, char *err, size_t errlen)
{
    if (resp)
        *resp = NULL;
    err[0] = '\0';
    *http_status = 0;
    int rc = smltctl_resolve(c);
    if (rc)
        return rc;
    char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct smltctl_buf out = {0};
    long status = 0;
    rc = smltctl_http(c, method, path, b, 60, &status, &out, NULL);
    free(b);
    if (rc) {
        smltctl_buf_free(&out);
        return rc;
    }
    *http_status = status;
    json_error_t je;
    json_t *o = out.data ? json_loadb(out.data, out.len, 0, &je) : NULL;
    if (status / 100 == 2) {
        if (!o && resp) {
            snprintf(err, errlen, "the coordinator's answer is not JSON");
            smltctl_buf_free(&out);
            return SMLTCTL_ERR;
        }
        smltctl_buf_free(&out);
        if (resp)
            *resp = o;
        else
            json_decref(o);
        return SMLTCTL_OK;
    }
    const char *msg = o ? json_string_value(json_object_get(o, "error")) : NULL;
    if (msg)
        snprintf(err, errlen, "%s", msg);
    else
        snprintf(err, errlen, "HTTP %ld%s%.200s", status, out.len ? ": " : "",
                 out.data ? out.data : "");
    json_decref(o);
    smltctl_buf_free(&out);
    return status == 404 ? SMLTCTL_NOTFOUND : SMLTCTL_ERR;
}

int smltctl_api(struct smltctl *c, const char *method, const char *path, json_t *body,
                json_t **resp, const char *what)
{
    char err[1024];
    long status = 0;
    int rc = smltctl_api_quiet(c, method, path, body, resp, &status, err, sizeof err);
    if (rc == SMLTCTL_OK || !status) {
        if (rc && err[0])
            smltctl_err("%s", err);
        return rc;
    }
    if (status == 404 && what)
        smltctl_err("no %s at %s (see `smltctl status`)", what, c->url);
    else if (status == 401)
        smltctl_err("the coordinator at %s refused the admin token (%s); use the cluster's own "
                    "token (STATE_DIR/cluster.json, written by `smltctl up`) or pass --token",
                    c->url, c->token[0] ? "wrong token" : "none was given");
    else
        smltctl_err("%s", err);
    return rc;
}

/* ---- main -------------------------------------------------------------------------------- */

struct command {
    const char *name;
    int (*fn)(struct smltctl *c, int argc, char **argv);
};

static const struct command commands[] = {
    {"up", smltctl_cmd_up},         {"down", smltctl_cmd_down},
    {"demo", smltctl_cmd_demo},     {"submit", smltctl_cmd_submit},
    {"status", smltctl_cmd_status}, {"watch", smltctl_cmd_watch},
    {"cancel", smltctl_cmd_cancel}, {"scale", smltctl_cmd_scale},
    {"logs", smltctl_cmd_logs},     {"model", smltctl_cmd_model},
    {"checkpoint", smltctl_cmd_checkpoint}, {"dashboard", smltctl_cmd_dashboard},
    {NULL, NULL}};

static int is_help(const char *a)
{
    return !strcmp(a, "--help") || !strcmp(a, "-h");
}

int main(int argc, char **argv)
{
    struct smltctl c = {0};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (is_help(argv[i])) {
            fputs(main_help, stdout);
            return SMLTCTL_OK;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("smltctl %s\n", SMLT_VERSION_STRING);
            return SMLTCTL_OK;
        }
        int r = smltctl_global_opt(&c, argc, argv, &i);
        if (r < 0)
            return SMLTCTL_USAGE;
        if (r == 0)
            return smltctl_usage_error(NULL, "unknown option %s", argv[i]);
    }
    if (i >= argc) {
        fputs(main_help, stderr);
        return SMLTCTL_USAGE;
    }
    const char *name = argv[i];
    if (!strcmp(name, "help")) {
        if (i + 1 >= argc) {
            fputs(main_help, stdout);
            return SMLTCTL_OK;
        }
        const char *h = smltctl_help_text(argv[i + 1]);
        if (!h)
            return smltctl_usage_error(NULL, "no command called \"%s\"", argv[i + 1]);
        fputs(h, stdout);
        return SMLTCTL_OK;
    }
    const struct command *cmd = NULL;
    for (const struct command *k = commands; k->name; k++)
        if (!strcmp(k->name, name))
            cmd = k;
    if (!cmd)
        return smltctl_usage_error(NULL, "no command called \"%s\"", name);
    for (int k = i + 1; k < argc; k++) {
        if (!strcmp(argv[k], "--"))
            break;
        if (is_help(argv[k])) {
            fputs(smltctl_help_text(name), stdout);
            return SMLTCTL_OK;
        }
    }
    smltctl_state_init(&c);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmd->fn(&c, argc - i - 1, argv + i + 1);
    curl_global_cleanup();
    return rc;
}
