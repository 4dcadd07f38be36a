/* coord_main.c: smlt-coordinator, the daemon that owns jobs.
 *
 * Serves the JSON API over HTTP (127.0.0.1 by default; mutating calls need the admin token) and
 * the worker RPC, runs jobs on the embedded local function runtime, and keeps every job's
 * journal under --data-dir so their history survives a restart. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "coord.h"
#include "coord_http.h"
#include "coord_shards.h"
#include "smlt_log.h"
#include "smlt_proc.h"
#include "smlt_util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smlt-coordinator [options]\n"
            "Run training jobs on function workers with a sharded parameter server.\n\n"
            "  --listen HOST:PORT      HTTP API (default 127.0.0.1:8080; port 0 picks one)\n"
            "  --rpc-listen HOST:PORT  worker RPC (default 127.0.0.1:0)\n"
            "  --data-dir DIR          journals, logs and models of jobs (default /tmp/smlt-data)\n"
            "  --admin-token T         token for mutating API calls (or env SMLT_ADMIN_TOKEN)\n"
            "  --admin-token-file F    read it from F; without any, one is generated and written\n"
            "                          to DATA_DIR/admin-token (mode 0600)\n"
            "  --bin-dir DIR           where smlt-ps and smlt-worker are (default: next to this)\n"
            "  --concurrency N         local runtime: instances running at once (default 64)\n"
            "  --keep-warm S           local runtime: seconds an idle instance is kept (default 60)\n"
            "  --no-memory-limit       local runtime: do not enforce the functions' memory size\n"
            "  --platform P            where workers run: local (default, the embedded runtime),\n"
            "                          openfaas, knative or lambda\n"
            "  --function NAME         openfaas, lambda: the worker function's name\n"
            "  --gateway URL           openfaas: the gateway (POST URL/function/NAME)\n"
            "  --openfaas-async        openfaas: invoke asynchronously (POST\n"
            "                          URL/async-function/NAME), answered by callback\n"
            "  --callback-url URL      openfaas async: this API's base URL as the gateway's\n"
            "                          queue-worker reaches it (default: http://--listen's\n"
            "                          address, unless that is a wildcard)\n"
            "  --function-url URL      knative: the worker service's URL\n"
            "  --region R              lambda: the AWS region (default AWS_REGION, ~/.aws/config)\n"
            "  --qualifier Q           lambda: the version or alias to invoke\n"
            "  --lambda-endpoint URL   lambda: the Invoke API's base URL (emulators)\n"
            "  --rpc-advertise H:P     the worker RPC address workers dial (default: where it\n"
            "                          listens; set it when workers run elsewhere)\n"
            "  --ps-listen-host H      local shards listen on H (default 127.0.0.1)\n"
            "  --ps-advertise-host H   and workers dial them at H (default: the listen host)\n"
            "  --ps-pool NODES         place shards on PS nodes (smlt-ps --node) instead of\n"
            "                          starting them: host:port,... or dns:NAME:PORT (every\n"
            "                          address NAME resolves to: a headless Service)\n"
            "  --ps-pool-token-file F  the pool token the nodes were started with (or env\n"
            "                          SMLT_POOL_TOKEN)\n"
            "  --tls-cert FILE         TLS everywhere: the API (HTTPS), the worker RPC, the local\n"
            "                          shards (the same certificate) and the calls to them\n"
            "  --tls-key FILE          the certificate's private key (PEM)\n"
            "  --tls-ca FILE           CA certificates that sign the shards' certificates (and\n"
            "                          clients', with --tls-verify-client); workers get them in\n"
            "                          their invocations\n"
            "  --tls-verify-client     mutual TLS: clients of the API, the RPC and the shards\n"
            "                          need a certificate --tls-ca signs (workers:\n"
            "                          SMLT_TLS_CERT/KEY)\n"
            "  --port-file FILE        write the HTTP port to FILE once listening\n"
            "  --log-level LEVEL       error, warn, info (default), debug\n"
            "  --help, --version\n");
}

/* Writes text and a newline to path atomically, created with the given mode bits. */
static int write_file(const char *path, const char *text, mode_t mode)
{
    size_t n = strlen(text);
    char *line = malloc(n + 2);
    if (!line)
        return -1;
    memcpy(line, text, n);
    line[n] = '\n';
    int rc = smlt_write_file_atomic(path, line, n + 1, (unsigned)mode);
    free(line);
    return rc;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    log_info("signal %d: shutting down", (int)sig);
    event_base_loopexit(arg, NULL);
}

/* The command line, and the admin token it or the environment gives. */
struct options {
    const char *listen, *port_file;
    char *token; /* owned; NULL when none was given */
    char *pool_token; /* owned: --ps-pool-token-file's */
    struct coord_conf conf;
    int level;
};

/* Fills o from the environment and argv. Returns -1 to go on, else the exit status: 0 after
 * --help or --version, 2 for a bad command line (said on stderr). */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option lo[] = {
        {"listen", required_argument, 0, 'l'},    {"rpc-listen", required_argument, 0, 'r'},
        {"data-dir", required_argument, 0, 'd'},  {"admin-token", required_argument, 0, 'a'},
        {"admin-token-file", required_argument, 0, 'A'}, {"bin-dir", required_argument, 0, 'b'},
        {"concurrency", required_argument, 0, 'c'}, {"keep-warm", required_argument, 0, 'k'},
        {"no-memory-limit", no_argument, 0, 'M'}, {"port-file", required_argument, 0, 'p'},
        {"log-level", required_argument, 0, 'L'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {"platform", required_argument, 0, 'P'},
        {"function", required_argument, 0, 'F'},  {"gateway", required_argument, 0, 'G'},
        {"function-url", required_argument, 0, 'U'}, {"region", required_argument, 0, 'R'},
        {"qualifier", required_argument, 0, 'Q'}, {"lambda-endpoint", required_argument, 0, 'E'},
        {"rpc-advertise", required_argument, 0, 'v'}, {"ps-listen-host", required_argument, 0, 'H'},
        {"ps-advertise-host", required_argument, 0, 'J'},
        {"openfaas-async", no_argument, 0, 'S'},  {"callback-url", required_argument, 0, 'C'},
        {"tls-cert", required_argument, 0, 1000}, {"tls-key", required_argument, 0, 1001},
        {"tls-ca", required_argument, 0, 1002},   {"tls-verify-client", no_argument, 0, 1003},
        {"ps-pool", required_argument, 0, 1004},  {"ps-pool-token-file", required_argument, 0, 1005},
        {0, 0, 0, 0}};
    *o = (struct options){
        .listen = "127.0.0.1:8080",
        .token = getenv("SMLT_ADMIN_TOKEN") ? strdup(getenv("SMLT_ADMIN_TOKEN")) : NULL,
        .conf = {.data_dir = "/tmp/smlt-data", .bin_dir = smlt_proc_self_dir()},
        .level = SMLT_LOG_INFO};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'l': o->listen = optarg; break;
        case 'r': o->conf.rpc_listen = optarg; break;
        case 'd': o->conf.data_dir = optarg; break;
        case 'a':
            free(o->token);
            o->token = strdup(optarg);
            break;
        case 'A':
            free(o->token);
            o->token = smlt_token_read(optarg);
            if (!o->token) {
                fprintf(stderr, "smlt-coordinator: --admin-token-file: cannot read %s\n", optarg);
                return 2;
            }
            break;
        case 'b': o->conf.bin_dir = optarg; break;
        case 'c': {
            long v = atol(optarg);
            if (v < 1 || v > 10000) {
                fprintf(stderr, "smlt-coordinator: --concurrency: want 1..10000\n");
                return 2;
            }
            o->conf.concurrency = (unsigned)v;
            break;
        }
        case 'k': o->conf.keep_warm_s = atof(optarg); break;
        case 'M': o->conf.no_memory_limit = 1; break;
        case 'p': o->port_file = optarg; break;
        case 'P': o->conf.platform = optarg; break;
        case 'F': o->conf.function = optarg; break;
        case 'G': o->conf.gateway = optarg; break;
        case 'U': o->conf.function_url = optarg; break;
        case 'R': o->conf.region = optarg; break;
        case 'Q': o->conf.qualifier = optarg; break;
        case 'E': o->conf.lambda_endpoint = optarg; break;
        case 'v': o->conf.rpc_advertise = optarg; break;
        case 'H': o->conf.ps_listen_host = optarg; break;
        case 'J': o->conf.ps_advertise_host = optarg; break;
        case 'S': o->conf.openfaas_async = 1; break;
        case 'C': o->conf.callback_url = optarg; break;
        case 1000: o->conf.tls_cert = optarg; break;
        case 1001: o->conf.tls_key = optarg; break;
        case 1002: o->conf.tls_ca = optarg; break;
        case 1003: o->conf.tls_verify_client = 1; break;
        case 1004: o->conf.ps_pool = optarg; break;
        case 1005:
            free(o->pool_token);
            o->pool_token = smlt_token_read(optarg);
            if (!o->pool_token) {
                fprintf(stderr, "smlt-coordinator: --ps-pool-token-file: cannot read %s\n",
                        optarg);
                return 2;
            }
            o->conf.ps_pool_token = o->pool_token;
            break;
        case 'L':
            o->level = smlt_log_parse_level(optarg);
            if (o->level < 0) {
                fprintf(stderr, "smlt-coordinator: --log-level: want error, warn, info or debug\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("smlt-coordinator %s\n", SMLT_VERSION_STRING); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "smlt-coordinator: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (o->conf.ps_pool && !o->conf.ps_pool_token)
        o->conf.ps_pool_token = getenv("SMLT_POOL_TOKEN");
    if (o->conf.ps_pool && (!o->conf.ps_pool_token || !o->conf.ps_pool_token[0])) {
        fprintf(stderr, "smlt-coordinator: --ps-pool needs the pool token "
                        "(--ps-pool-token-file or env SMLT_POOL_TOKEN)\n");
        return 2;
    }
    return -1;
}

/* Without a token on the command line or in the environment: the one in DATA_DIR/admin-token,
 * generated and written there (mode 0600) on the first start. Returns 0, or -1 (logged). */
static int load_admin_token(struct options *o)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/admin-token", o->conf.data_dir);
    o->token = smlt_token_read(path);
    if (o->token)
        return 0;
    char t[65];
    coord_random_hex(t, 32);
    o->token = strdup(t);
    if (write_file(path, o->token, 0600) != 0) {
        log_error("cannot write %s", path);
        return -1;
    }
    log_info("generated an admin token in %s", path);
    return 0;
}

/* Starts the coordinator and its HTTP API, writes the port file and runs the loop until
 * SIGINT or SIGTERM. Returns the exit status. */
static int serve(const struct options *o)
{
    /* The admin queues' threads wake their clients' loops from this thread. */
    evthread_use_pthreads();
    struct event_base *base = event_base_new();
    char err[512] = "";
    struct coord *co = base ? coord_new(base, &o->conf, err, sizeof err) : NULL;
    if (!co) {
        log_error("%s", err[0] ? err : "cannot start");
        if (base)
            event_base_free(base);
        return 1;
    }
    struct coord_http *http = coord_http_new(base, co, o->listen, o->token, err, sizeof err);
    if (!http) {
        log_error("%s", err);
        coord_free(co);
        event_base_free(base);
        return 1;
    }
    if (o->conf.openfaas_async && !o->conf.callback_url &&
        coord_set_callback_base(co, o->listen, coord_http_port(http), err, sizeof err) != 0) {
        log_error("%s", err);
        coord_http_free(http);
        coord_free(co);
        return 1;
    }
    if (coord_tls_server(co))
        coord_http_set_tls(http, coord_tls_server(co));
    log_info("API on http%s://%s:%d/api, worker RPC on %s%s, data in %s",
             coord_tls_server(co) ? "s" : "",
             strncmp(o->listen, "0.0.0.0", 7) ? "127.0.0.1" : "0.0.0.0", coord_http_port(http),
             coord_rpc_address(co), coord_tls_server(co) ? " (TLS)" : "", o->conf.data_dir);
    if (o->port_file) {
        char p[32];
        snprintf(p, sizeof p, "%d", coord_http_port(http));
        if (write_file(o->port_file, p, 0644) != 0) {
            log_error("cannot write %s", o->port_file);
            coord_http_free(http);
            coord_free(co);
            return 1;
        }
    }
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    event_base_dispatch(base);
    coord_http_free(http);
    coord_free(co);
    event_free(sigint);
    event_free(sigterm);
    event_base_free(base);
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) {
        free(o.token);
        free(o.pool_token);
        return rc;
    }
    smlt_log_init("smlt-coordinator", o.level);
    signal(SIGPIPE, SIG_IGN);
    if (mkdir(o.conf.data_dir, 0755) != 0 && errno != EEXIST) {
        log_error("cannot create %s: %s", o.conf.data_dir, strerror(errno));
        return 1;
    }
    if (!o.token && load_admin_token(&o) != 0)
        return 1;
    rc = serve(&o);
    free(o.token);
    free(o.pool_token);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
