/* ps_main.c: smlt-ps, one parameter-server shard per process.
 *
 * Listens, writes its bound port to --port-file if asked (tests bind port 0), and serves
 * until SIGINT/SIGTERM or an admin Shutdown request. A job is set up on it over the wire
 * (Configure), by the coordinator or smlt-bench. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <event2/event.h>

#include "ps_server.h"
#include "smlt_error.h"
#include "smlt_limits.h"
#include "smlt_log.h"
#include "smlt_util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: smlt-ps [options]\n"
            "Serve one shard of a parameter server.\n\n"
            "  --listen HOST:PORT     address to listen on (default 127.0.0.1:7000; port 0 picks one)\n"
            "  --shard N              this shard's id in the partition map (default 0)\n"
            "  --token TOKEN          the job token clients must present (or env SMLT_TOKEN)\n"
            "  --token-file FILE      read the job token from FILE\n"
            "  --admin-token TOKEN    token for configuration requests (or env SMLT_ADMIN_TOKEN);\n"
            "                         without one, the job token may configure\n"
            "  --port-file FILE       write the bound port to FILE once listening\n"
            "  --max-conns N          connection limit (default %u)\n"
            "  --nic-mbps N           emulate a network card of N Mbit/s each way over all\n"
            "                         connections (a small node's; default: no limit)\n"
            "  --orphan-exit S        once the process that started it has exited, exit after S\n"
            "                         seconds with no connection (a local shard outlives its\n"
            "                         coordinator so that a restarted one can adopt it; default:\n"
            "                         never)\n"
            "  --checkpoint-dir DIR   where jobs that name no directory keep shard checkpoints\n"
            "                         (DIR/shard-<id>/ckpt-<step>.smltck) and restore from\n"
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'},    {"shard", required_argument, 0, 's'},
        {"token", required_argument, 0, 't'},     {"token-file", required_argument, 0, 'T'},
        {"admin-token", required_argument, 0, 'a'}, {"port-file", required_argument, 0, 'p'},
        {"max-conns", required_argument, 0, 'm'}, {"log-level", required_argument, 0, 'L'},
        {"nic-mbps", required_argument, 0, 'n'},  {"orphan-exit", required_argument, 0, 'o'},
        {"checkpoint-dir", required_argument, 0, 'c'},
        {"help", no_argument, 0, 'h'},            {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    struct ps_server_conf conf = {.listen = "127.0.0.1:7000"};
    struct orphan orphan = {0};
    const char *port_file = NULL;
    char *token = NULL;
    int level = SMLT_LOG_INFO;
    int c;
    conf.token = getenv("SMLT_TOKEN");
    conf.admin_token = getenv("SMLT_ADMIN_TOKEN");
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'l':
            conf.listen = optarg;
            break;
        case 's': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v >= SMLT_MAX_SHARDS) {
                fprintf(stderr, "smlt-ps: --shard: want 0..%u, got \"%s\"\n", SMLT_MAX_SHARDS - 1,
                        optarg);
                return 2;
            }
            conf.shard = (uint32_t)v;
            break;
        }
        case 't':
            conf.token = optarg;
            break;
        case 'T':
            free(token);
            token = smlt_token_read(optarg);
            if (!token) {
                fprintf(stderr, "smlt-ps: --token-file: cannot read %s\n", optarg);
                return 2;
            }
            conf.token = token;
            break;
        case 'a':
            conf.admin_token = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'm': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > SMLT_MAX_CONNS) {
                fprintf(stderr, "smlt-ps: --max-conns: want 1..%u\n", SMLT_MAX_CONNS);
                return 2;
            }
            conf.max_conns = (uint32_t)v;
            break;
        }
        case 'n': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || !*optarg || v > 400000) {
                fprintf(stderr, "smlt-ps: --nic-mbps: want 0..400000 (Mbit/s), got \"%s\"\n",
                        optarg);
                return 2;
            }
            conf.nic_bytes_per_s = (uint64_t)v * 1000000 / 8;
            break;
        }
        case 'o': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || !*optarg || v < 1 || v > 86400 * 30) {
                fprintf(stderr, "smlt-ps: --orphan-exit: want 1..2592000 (seconds), got \"%s\"\n",
                        optarg);
                return 2;
            }
            orphan.after_s = (double)v;
            break;
        }
        case 'c':
            if (strlen(optarg) >= 512) {
                fprintf(stderr, "smlt-ps: --checkpoint-dir: at most 511 bytes\n");
                return 2;
            }
            conf.checkpoint_dir = optarg;
            break;
        case 'L':
            level = smlt_log_parse_level(optarg);
            if (level < 0) {
                fprintf(stderr, "smlt-ps: --log-level: want error, warn, info or debug\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("smlt-ps %s\n", SMLT_VERSION_STRING);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "smlt-ps: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    smlt_log_init("smlt-ps", level);
    signal(SIGPIPE, SIG_IGN);
    /* The apply thread is the shard's one math thread; OpenBLAS must not fan out behind it. */
    openblas_set_num_threads(1);

    struct event_base *base = event_base_new();
    if (!base) {
        log_error("cannot create the event loop");
        return 1;
    }
    char err[256] = "";
    struct ps_server *srv = ps_server_new(base, &conf, err, sizeof err);
    if (!srv) {
        log_error("%s", err);
        event_base_free(base);
        return 1;
    }
    log_info("shard %u listening on port %d", conf.shard, ps_server_port(srv));
    if (conf.nic_bytes_per_s)
        log_info("shard %u: emulated network card of %.0f Mbit/s each way", conf.shard,
                 (double)conf.nic_bytes_per_s * 8 / 1e6);
    if (port_file && write_port_file(port_file, ps_server_port(srv)) != 0) {
        log_error("cannot write port file %s", port_file);
        ps_server_free(srv);
        event_base_free(base);
        return 1;
    }
    struct event *orphan_ev = NULL;
    if (orphan.after_s > 0) {
        orphan.parent = getppid();
        orphan.srv = srv;
        orphan.base = base;
        orphan_ev = event_new(base, -1, EV_PERSIST, on_orphan_tick, &orphan);
        struct timeval sec = {1, 0};
        event_add(orphan_ev, &sec);
    }
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    event_add(sigint, NULL);
    event_add(sigterm, NULL);
    event_base_dispatch(base);
    event_free(sigint);
    event_free(sigterm);
    if (orphan_ev)
        event_free(orphan_ev);
    ps_server_free(srv);
    event_base_free(base);
    free(token);
    log_info("stopped");
    return 0;
}
