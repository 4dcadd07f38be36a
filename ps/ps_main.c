/* ps_main.c: smlt-ps, one parameter-server shard per process, or with --node a PS node that
 * hosts the shards of many jobs on one port (ps_node.h).
 *
 * Listens, writes its bound port to --port-file if asked (tests bind port 0), and serves
 * until SIGINT/SIGTERM or an admin Shutdown request. With --metrics-listen it also serves
 * GET /metrics for Prometheus (ps_http.c) on the same event loop. A job is set up on it over
 * the wire (Configure), by the coordinator or smlt-bench. With --tls-cert and --tls-key every
 * connection is TLS (its own to a backup too, trusting --tls-ca and presenting the same
 * certificate for mutual TLS); the metrics endpoint stays plain HTTP. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <event2/event.h>

#include "ps_http.h"
#include "ps_node.h"
#include "ps_server.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_tls.h"
#include "smlt_util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smlt-ps [options]\n"
            "       smlt-ps --node --memory-mb N --admin-token-file FILE [options]\n"
            "Serve one shard of a parameter server, or (--node) the shards of many jobs that a\n"
            "coordinator's pool places on this node, on one port.\n\n"
            "  --node                 be a PS node: shards come and go by the coordinator's\n"
            "                         NodeHost / NodeDrop, authenticated with the pool token\n"
            "  --memory-mb N          (--node) memory the node may reserve for shards; a shard\n"
            "                         that does not fit is refused with a message (default 1024)\n"
            "  --admin-token-file FILE  read the admin token (with --node: the pool token) from\n"
            "                         FILE\n"
            "  --name NAME            (--node) the node's name in the coordinator's view\n"
            "                         (default: the host name)\n"
            "  --listen HOST:PORT     address to listen on (default 127.0.0.1:7000; port 0 picks one)\n"
            "  --shard N              this shard's id in the partition map (default 0)\n"
            "  --token TOKEN          the job token clients must present (or env SMLT_TOKEN)\n"
            "  --token-file FILE      read the job token from FILE\n"
            "  --admin-token TOKEN    token for configuration requests (or env SMLT_ADMIN_TOKEN);\n"
            "                         without one, the job token may configure\n"
            "  --port-file FILE       write the bound port to FILE once listening\n"
            "  --metrics-listen HOST:PORT  serve GET /metrics (Prometheus text) there (port 0\n"
            "                         picks one; default: no metrics endpoint)\n"
            "  --metrics-port-file FILE  write the metrics port to FILE (before --port-file's)\n"
            "  --max-conns N          connection limit (default %u)\n"
            "  --nic-mbps N           emulate a network card of N Mbit/s each way over all\n"
            "                         connections (a small node's; default: no limit)\n"
            "  --orphan-exit S        once the process that started it has exited, exit after S\n"
            "                         seconds with no connection (a local shard outlives its\n"
            "                         coordinator so that a restarted one can adopt it; default:\n"
            "                         never)\n"
            "  --checkpoint-dir DIR   where jobs that name no directory keep shard checkpoints\n"
            "                         (DIR/shard-<id>/ckpt-<step>.smltck) and restore from\n"
            "  --tls-cert FILE        serve TLS with this certificate (PEM, chain leaf first);\n"
            "                         with it, every connection is TLS (default: plain TCP)\n"
            "  --tls-key FILE         the certificate's private key (PEM)\n"
            "  --tls-ca FILE          CA certificates (PEM): trusted for the backup this shard\n"
            "                         dials, and for clients with --tls-verify-client\n"
            "  --tls-verify-client    mutual TLS: refuse clients without a certificate that\n"
            "                         --tls-ca signs\n"
            "  --log-level LEVEL      error, warn, info (default) or debug\n"
            "  --help                 this text\n"
            "  --version              print the version\n",
            SMLT_MAX_CONNS);
}

static int write_port_file(const char *path, int port)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%d\n", port);
    return smlt_write_file_atomic(path, text, (size_t)n, 0);
}

/* --orphan-exit: the parent it started with, and since when the shard has had no connection
 * after that parent went away. */
struct orphan {
    double after_s;
    pid_t parent;
    double idle_since; /* 0: a connection is open, or the parent is there */
    struct ps_server *srv;
    struct event_base *base;
};

static void on_orphan_tick(evutil_socket_t fd, short what, void *arg)
{
    struct orphan *o = arg;
    if (getppid() == o->parent || ps_server_connections(o->srv) > 0) {
        o->idle_since = 0;
        return;
    }
    double t = smlt_now_mono();
    if (o->idle_since == 0) {
        o->idle_since = t;
        log_info("the process that started this shard (pid %d) has exited; exiting after %.0f s "
                 "with no connection",
                 (int)o->parent, o->after_s);
    } else if (t - o->idle_since >= o->after_s) {
        log_info("no connection for %.0f s since its parent exited: shutting down", o->after_s);
        event_base_loopexit(o->base, NULL);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    log_info("signal %d: shutting down", (int)sig);
    event_base_loopexit(arg, NULL);
}

/* What the command line asks for. */
struct ps_opts {
    struct ps_server_conf conf;
    double orphan_after_s;
    const char *port_file, *metrics_listen, *metrics_port_file;
    char *token; /* read from --token-file (freed at exit) */
    char *admin_token; /* read from --admin-token-file (freed at exit) */
    int node;           /* --node */
    unsigned long memory_mb;
    const char *name;
    int level;
    struct smlt_tls_conf tls; /* --tls-*: cert and key given, every connection is TLS */
};

/* Parses a whole number in lo..hi for --flag. Returns 0, or prints why and returns -1. */
static int parse_ulong(const char *flag, const char *arg, unsigned long lo, unsigned long hi,
                       const char *unit, unsigned long *out)
{
    char *end;
    unsigned long v = strtoul(arg, &end, 10);
    if (*end || !*arg || *arg == '-' || v < lo || v > hi) {
        fprintf(stderr, "smlt-ps: --%s: want %lu..%lu%s, got \"%s\"\n", flag, lo, hi, unit, arg);
        return -1;
    }
    *out = v;
    return 0;
}

/* --FLAG FILE: the token in FILE into *owned (freed at exit), and *use. Returns 0, or 2 (said
 * why). */
static int read_token(const char *flag, const char *path, char **owned, const char **use)
{
    free(*owned);
    *owned = smlt_token_read(path);
    if (!*owned) {
        fprintf(stderr, "smlt-ps: --%s: cannot read %s\n", flag, path);
        return 2;
    }
    *use = *owned;
    return 0;
}

/* Takes one option. Returns 0, 1 to exit 0 (--help, --version) or 2 to exit 2 (said why). */
static int take_opt(int c, const char *arg, struct ps_opts *o)
{
    unsigned long v;
    switch (c) {
    case 'l': o->conf.listen = arg; return 0;
    case 't': o->conf.token = arg; return 0;
    case 'a': o->conf.admin_token = arg; return 0;
    case 'p': o->port_file = arg; return 0;
    case 'M': o->metrics_listen = arg; return 0;
    case 'P': o->metrics_port_file = arg; return 0;
    case 's':
        if (parse_ulong("shard", arg, 0, SMLT_MAX_SHARDS - 1, "", &v))
            return 2;
        o->conf.shard = (uint32_t)v;
        return 0;
    case 'T':
        return read_token("token-file", arg, &o->token, &o->conf.token);
    case 'm':
        if (parse_ulong("max-conns", arg, 1, SMLT_MAX_CONNS, "", &v))
            return 2;
        o->conf.max_conns = (uint32_t)v;
        return 0;
    case 'n':
        if (parse_ulong("nic-mbps", arg, 0, 400000, " (Mbit/s)", &v))
            return 2;
        o->conf.nic_bytes_per_s = (uint64_t)v * 1000000 / 8;
        return 0;
    case 'o':
        if (parse_ulong("orphan-exit", arg, 1, 86400 * 30, " (seconds)", &v))
            return 2;
        o->orphan_after_s = (double)v;
        return 0;
    case 'c':
        if (strlen(arg) >= 512) {
            fprintf(stderr, "smlt-ps: --checkpoint-dir: at most 511 bytes\n");
            return 2;
        }
        o->conf.checkpoint_dir = arg;
        return 0;
    case 'N': o->node = 1; return 0;
    case 'E': o->name = arg; return 0;
    case 'G':
        if (parse_ulong("memory-mb", arg, 1, 1ul << 22, " (MiB)", &v))
            return 2;
        o->memory_mb = v;
        return 0;
    case 'F':
        return read_token("admin-token-file", arg, &o->admin_token, &o->conf.admin_token);
    case 'C': o->tls.cert = arg; return 0;
    case 'K': o->tls.key = arg; return 0;
    case 'A': o->tls.ca = arg; return 0;
    case 'Y': o->tls.verify_client = 1; return 0;
    case 'L':
        o->level = smlt_log_parse_level(arg);
        if (o->level >= 0)
            return 0;
        fprintf(stderr, "smlt-ps: --log-level: want error, warn, info or debug\n");
        return 2;
    case 'h':
        usage(stdout);
        return 1;
    case 'V':
        printf("smlt-ps %s\n", SMLT_VERSION_STRING);
        return 1;
    default:
        usage(stderr);
        return 2;
    }
}

/* Parses the command line into o. Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, struct ps_opts *o)
{
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'},    {"shard", required_argument, 0, 's'},
        {"token", required_argument, 0, 't'},     {"token-file", required_argument, 0, 'T'},
        {"admin-token", required_argument, 0, 'a'}, {"port-file", required_argument, 0, 'p'},
        {"max-conns", required_argument, 0, 'm'}, {"log-level", required_argument, 0, 'L'},
        {"nic-mbps", required_argument, 0, 'n'},  {"orphan-exit", required_argument, 0, 'o'},
        {"checkpoint-dir", required_argument, 0, 'c'},
        {"metrics-listen", required_argument, 0, 'M'},
        {"metrics-port-file", required_argument, 0, 'P'},
        {"tls-cert", required_argument, 0, 'C'},  {"tls-key", required_argument, 0, 'K'},
        {"tls-ca", required_argument, 0, 'A'},    {"tls-verify-client", no_argument, 0, 'Y'},
        {"node", no_argument, 0, 'N'},            {"memory-mb", required_argument, 0, 'G'},
        {"admin-token-file", required_argument, 0, 'F'}, {"name", required_argument, 0, 'E'},
        {"help", no_argument, 0, 'h'},            {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    o->conf.listen = "127.0.0.1:7000";
    o->conf.token = getenv("SMLT_TOKEN");
    o->conf.admin_token = getenv("SMLT_ADMIN_TOKEN");
    o->level = SMLT_LOG_INFO;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = take_opt(c, optarg, o);
        if (rc)
            return rc == 1 ? 0 : 2;
    }
    if (optind < argc) {
        fprintf(stderr, "smlt-ps: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (o->metrics_port_file && !o->metrics_listen) {
        fprintf(stderr, "smlt-ps: --metrics-port-file needs --metrics-listen\n");
        return 2;
    }
    if (o->node && (!o->conf.admin_token || !o->conf.admin_token[0])) {
        fprintf(stderr, "smlt-ps: --node needs the pool token (--admin-token-file, --admin-token "
                        "or env SMLT_ADMIN_TOKEN)\n");
        return 2;
    }
    if (!o->node && (o->memory_mb || o->name)) {
        fprintf(stderr, "smlt-ps: --memory-mb and --name go with --node\n");
        return 2;
    }
    if (!o->tls.cert != !o->tls.key || ((o->tls.ca || o->tls.verify_client) && !o->tls.cert)) {
        fprintf(stderr, "smlt-ps: TLS needs both --tls-cert and --tls-key (--tls-ca and "
                        "--tls-verify-client go with them)\n");
        return 2;
    }
    return -1;
}

/* The TLS contexts of --tls-*: the server's, and the client's for its backup connections
 * (trusting --tls-ca, or the system's CAs; presenting the same certificate, which mutual TLS
 * between shards needs). Returns 0, or SMLT_EINVAL with a message in err. */
static int make_tls(struct ps_opts *o, char *err, size_t errlen)
{
    int rc = smlt_tls_server_new(&o->conf.tls, &o->tls, err, errlen);
    if (rc)
        return rc;
    struct smlt_tls_conf cc = {.cert = o->tls.cert, .key = o->tls.key, .ca = o->tls.ca};
    return smlt_tls_client_new(&o->conf.tls_client, &cc, err, errlen);
}

/* Starts the metrics endpoint (if asked) and writes the port files, the metrics port first:
 * whoever waits for --port-file finds both. Returns 0, or -1 (logged). */
static int start_endpoints(const struct ps_opts *o, struct event_base *base,
                           struct ps_server *srv, struct ps_http **http)
{
    char err[256] = "";
    if (o->metrics_listen) {
        *http = ps_http_new(base, srv, o->metrics_listen, err, sizeof err);
        if (!*http) {
            log_error("%s", err);
            return -1;
        }
        log_info("shard %u: metrics on port %d (GET /metrics)", o->conf.shard,
                 ps_http_port(*http));
        if (o->metrics_port_file && write_port_file(o->metrics_port_file, ps_http_port(*http))) {
            log_error("cannot write port file %s", o->metrics_port_file);
            return -1;
        }
    }
    if (o->port_file && write_port_file(o->port_file, ps_server_port(srv)) != 0) {
        log_error("cannot write port file %s", o->port_file);
        return -1;
    }
    return 0;
}

/* Runs the loop until SIGINT or SIGTERM (or whatever else exits it). */
static void dispatch_until_signal(struct event_base *base)
{
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    event_base_dispatch(base);
    event_free(sigint);
    event_free(sigterm);
}

/* Runs the loop until a signal, a Shutdown or the orphan timer ends it. */
static void serve(const struct ps_opts *o, struct event_base *base, struct ps_server *srv)
{
    struct orphan orphan = {.after_s = o->orphan_after_s};
    struct event *orphan_ev = NULL;
    if (orphan.after_s > 0) {
        orphan.parent = getppid();
        orphan.srv = srv;
        orphan.base = base;
        orphan_ev = event_new(base, -1, EV_PERSIST, on_orphan_tick, &orphan);
        struct timeval sec = {1, 0};
        event_add(orphan_ev, &sec);
    }
    dispatch_until_signal(base);
    if (orphan_ev)
        event_free(orphan_ev);
}

/* --node: serves until SIGINT / SIGTERM. Returns the exit code. */
static int run_node(const struct ps_opts *o, struct event_base *base)
{
    char err[512] = "";
    struct ps_node_conf nc = {
        .listen = o->conf.listen,
        .name = o->name,
        .token = o->conf.admin_token,
        .capacity_bytes = (uint64_t)(o->memory_mb ? o->memory_mb : 1024) << 20,
        .checkpoint_dir = o->conf.checkpoint_dir,
        .max_conns = o->conf.max_conns,
        .tls = o->conf.tls,
        .tls_client = o->conf.tls_client,
    };
    struct ps_node *n = ps_node_new(base, &nc, err, sizeof err);
    if (!n) {
        log_error("%s", err);
        return 1;
    }
    int rc = 1;
    log_info("node listening on port %d, %llu MiB for shards%s", ps_node_port(n),
             (unsigned long long)(nc.capacity_bytes >> 20),
             !nc.tls ? "" : o->tls.verify_client ? " (TLS, client certificates required)"
                                                 : " (TLS)");
    if (o->metrics_listen) {
        int mp = ps_node_http(n, o->metrics_listen, err, sizeof err);
        if (mp < 0) {
            log_error("%s", err);
            goto out;
        }
        log_info("node: /healthz and /metrics on port %d", mp);
        if (o->metrics_port_file && write_port_file(o->metrics_port_file, mp) != 0) {
            log_error("cannot write port file %s", o->metrics_port_file);
            goto out;
        }
    }
    if (o->port_file && write_port_file(o->port_file, ps_node_port(n)) != 0) {
        log_error("cannot write port file %s", o->port_file);
        goto out;
    }
    dispatch_until_signal(base);
    rc = 0;
out:
    ps_node_free(n);
    return rc;
}

int main(int argc, char **argv)
{
    struct ps_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) {
        free(o.token);
        return rc;
    }
    smlt_log_init("smlt-ps", o.level);
    signal(SIGPIPE, SIG_IGN);
    /* The apply thread is the shard's one math thread; OpenBLAS must not fan out behind it. */
    openblas_set_num_threads(1);

    rc = 1;
    struct ps_server *srv = NULL;
    struct ps_http *http = NULL;
    struct event_base *base = event_base_new();
    if (!base) {
        log_error("cannot create the event loop");
        goto out;
    }
    char err[512] = "";
    if (o.tls.cert && make_tls(&o, err, sizeof err) != 0) {
        log_error("%s", err);
        goto out;
    }
    if (o.node) {
        rc = run_node(&o, base);
        goto out;
    }
    srv = ps_server_new(base, &o.conf, err, sizeof err);
    if (!srv) {
        log_error("%s", err);
        goto out;
    }
    log_info("shard %u listening on port %d%s", o.conf.shard, ps_server_port(srv),
             !o.conf.tls ? "" : o.tls.verify_client ? " (TLS, client certificates required)"
                                                    : " (TLS)");
    if (o.conf.nic_bytes_per_s)
        log_info("shard %u: emulated network card of %.0f Mbit/s each way", o.conf.shard,
                 (double)o.conf.nic_bytes_per_s * 8 / 1e6);
    if (start_endpoints(&o, base, srv, &http) != 0)
        goto out;
    serve(&o, base, srv);
    rc = 0;
out:
    ps_http_free(http); /* before the server whose counters it reads */
    if (srv)
        ps_server_free(srv);
    if (base)
        event_base_free(base);
    smlt_tls_free(o.conf.tls);
    smlt_tls_free(o.conf.tls_client);
    free(o.token);
    free(o.admin_token);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
