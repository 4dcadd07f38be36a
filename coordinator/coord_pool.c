/* coord_pool.c: see coord_pool.h. */
#include "coord_pool.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <arpa/inet.h>

#include "smlt_client_int.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_util.h"

#define POLL_MS 1000
#define POLL_TIMEOUT_MS 1500
#define DNS_EVERY_S 5.0
#define DOWN_AFTER 2 /* failed polls in a row */

struct drop_req {
    int idx;
    char route[48];
    struct drop_req *next;
};

struct node {
    struct coord_pool_node v;
    uint32_t fails;
    double last_ok;         /* CLOCK_MONOTONIC; 0: never */
    uint64_t pending;       /* bytes placed since its last answer */
};

struct coord_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stopping;
    char *spec, *token;
    char dns_name[256], dns_port[8]; /* "dns:NAME:PORT"; "" for a list */
    double dns_at;
    struct node nodes[COORD_POOL_MAX];
    uint32_t n;
    struct drop_req *drops;
};

/* Adds addr if new (under mu). Returns its index or -1. */
static int add_locked(struct coord_pool *p, const char *addr)
{
    for (uint32_t i = 0; i < p->n; i++)
        if (!strcmp(p->nodes[i].v.addr, addr))
            return (int)i;
    if (p->n >= COORD_POOL_MAX || strlen(addr) >= sizeof p->nodes[0].v.addr)
        return -1;
    struct node *nd = &p->nodes[p->n];
    memset(nd, 0, sizeof *nd);
    snprintf(nd->v.addr, sizeof nd->v.addr, "%s", addr);
    nd->v.state = COORD_NODE_CONNECTING;
    nd->v.since_ok_s = -1;
    if (p->started)
        log_info("PS pool: node %s added", addr);
    return (int)p->n++;
}

/* Resolves the DNS name to every address it has, adding the new ones. Returns how many
 * addresses it had, or -1 with a message in err. Not under mu (getaddrinfo blocks). */
static int resolve(struct coord_pool *p, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(p->dns_name, p->dns_port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", p->dns_name, gai_strerror(rc));
        return -1;
    }
    int count = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        char host[NI_MAXHOST], addr[NI_MAXHOST + 16];
        const void *src = a->ai_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
        if (!inet_ntop(a->ai_family, src, host, sizeof host))
            continue;
        /* A StatefulSet's pod behind a headless Service has a name of its own under the
         * Service's (its PTR record: smlt-ps-0.smlt-ps.NS.svc.cluster.local): that name is
         * what the node's certificate can name, so it is the address when there is one. */
        char ptr[NI_MAXHOST];
        size_t nl = strlen(p->dns_name), pl;
        if (getnameinfo(a->ai_addr, a->ai_addrlen, ptr, sizeof ptr, NULL, 0, NI_NAMEREQD) == 0 &&
            (pl = strlen(ptr)) > nl + 1 && ptr[pl - nl - 1] == '.' &&
            !strcasecmp(ptr + pl - nl, p->dns_name) && pl + 8 < sizeof host)
            snprintf(host, sizeof host, "%s", ptr);
        if (a->ai_family == AF_INET6 && !strchr(host, '.'))
            snprintf(addr, sizeof addr, "[%s]:%s", host, p->dns_port);
        else
            snprintf(addr, sizeof addr, "%s:%s", host, p->dns_port);
        pthread_mutex_lock(&p->mu);
        add_locked(p, addr);
        pthread_mutex_unlock(&p->mu);
        count++;
    }
    freeaddrinfo(res);
    return count;
}

/* Polls node i once (not under mu) and records what it said. */
static void poll_one(struct coord_pool *p, uint32_t i)
{
    char addr[72], err[512] = "";
    pthread_mutex_lock(&p->mu);
    snprintf(addr, sizeof addr, "%s", p->nodes[i].v.addr);
    pthread_mutex_unlock(&p->mu);
    struct smlt_node_info info;
    int rc = smlt_node_stats(addr, p->token, POLL_TIMEOUT_MS, &info, err, sizeof err);
    pthread_mutex_lock(&p->mu);
    struct node *nd = &p->nodes[i];
    double now = smlt_now_mono();
    int was = nd->v.state;
    if (rc == 0) {
        if (nd->v.boot_id && nd->v.boot_id != info.boot_id)
            log_warn("PS pool: node %s (%s) restarted: the shards it held are lost", addr,
                     info.node);
        snprintf(nd->v.name, sizeof nd->v.name, "%s", info.node);
        nd->v.state = COORD_NODE_UP;
        nd->v.boot_id = info.boot_id;
        nd->v.capacity_bytes = info.capacity_bytes;
        nd->v.used_bytes = info.used_bytes;
        nd->v.refused = info.refused;
        nd->v.shards = info.nshards;
        nd->v.metrics_port = info.metrics_port;
        nd->v.configured = nd->v.connections = 0;
        for (uint32_t k = 0; k < info.nshards; k++) {
            nd->v.configured += info.shards[k].configured != 0;
            nd->v.connections += info.shards[k].connections;
        }
        nd->v.err[0] = '\0';
        nd->fails = 0;
        nd->last_ok = now;
        nd->pending = 0;
        if (was != COORD_NODE_UP)
            log_info("PS pool: node %s (%s) is up: %llu of %llu MiB reserved, %u shards", addr,
                     info.node, (unsigned long long)(info.used_bytes >> 20),
                     (unsigned long long)(info.capacity_bytes >> 20), info.nshards);
        smlt_node_info_free(&info);
    } else {
        snprintf(nd->v.err, sizeof nd->v.err, "%s", err);
        if (++nd->fails >= DOWN_AFTER && was != COORD_NODE_DOWN) {
            nd->v.state = COORD_NODE_DOWN;
            log_warn("PS pool: node %s (%s) is down: %s", addr, nd->v.name, err);
        }
    }
    pthread_mutex_unlock(&p->mu);
}

static void poll_all(struct coord_pool *p)
{
    if (p->dns_name[0] && smlt_now_mono() - p->dns_at >= DNS_EVERY_S) {
        char err[300];
        p->dns_at = smlt_now_mono();
        if (resolve(p, err, sizeof err) < 0)
            log_warn("PS pool: %s", err);
    }
    pthread_mutex_lock(&p->mu);
    uint32_t n = p->n;
    pthread_mutex_unlock(&p->mu);
    for (uint32_t i = 0; i < n; i++)
        poll_one(p, i);
}

/* Sends the queued drops (not under mu). Returns 1 if there were any. */
static int run_drops(struct coord_pool *p)
{
    pthread_mutex_lock(&p->mu);
    struct drop_req *d = p->drops;
    p->drops = NULL;
    pthread_mutex_unlock(&p->mu);
    int any = d != NULL;
    while (d) {
        struct drop_req *next = d->next;
        char addr[72], err[512] = "";
        coord_pool_addr(p, d->idx, addr, sizeof addr);
        int state = coord_pool_state(p, d->idx, NULL);
        if (state != COORD_NODE_DOWN &&
            smlt_node_drop(addr, p->token, d->route, POLL_TIMEOUT_MS, err, sizeof err) != 0)
            log_info("PS pool: dropping %s on %s: %s", d->route, addr, err);
        free(d);
        d = next;
    }
    return any;
}

static void *monitor(void *arg)
{
    struct coord_pool *p = arg;
    for (;;) {
        run_drops(p);
        pthread_mutex_lock(&p->mu);
        if (p->stopping) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)POLL_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        while (!p->stopping && !p->drops &&
               pthread_cond_timedwait(&p->cv, &p->mu, &ts) != ETIMEDOUT)
            ;
        int stop = p->stopping, drops = p->drops != NULL;
        pthread_mutex_unlock(&p->mu);
        if (stop) {
            run_drops(p);
            break;
        }
        if (!drops)
            poll_all(p);
    }
    return NULL;
}

int coord_pool_new(struct coord_pool **out, const char *spec, const char *token, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (!spec || !*spec || !token || !*token) {
        snprintf(err, errlen, "--ps-pool needs nodes and the pool token (--ps-pool-token-file)");
        return SMLT_EINVAL;
    }
    struct coord_pool *p = calloc(1, sizeof *p);
    if (!p)
        return SMLT_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->spec = strdup(spec);
    p->token = strdup(token);
    if (!p->spec || !p->token) {
        coord_pool_free(p);
        return SMLT_ENOMEM;
    }
    if (!strncmp(spec, "dns:", 4)) {
        const char *name = spec + 4, *colon = strrchr(name, ':');
        if (!colon || colon == name || (size_t)(colon - name) >= sizeof p->dns_name ||
            strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof p->dns_port ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
            snprintf(err, errlen, "--ps-pool %s: want dns:NAME:PORT", spec);
            coord_pool_free(p);
            return SMLT_EINVAL;
        }
        memcpy(p->dns_name, name, (size_t)(colon - name));
        snprintf(p->dns_port, sizeof p->dns_port, "%s", colon + 1);
        p->dns_at = smlt_now_mono();
        if (resolve(p, err, errlen) < 0) {
            /* Pods may not be there yet: the monitor resolves again. */
            log_warn("PS pool: %s; trying again every %.0f s", err, DNS_EVERY_S);
            err[0] = '\0';
        }
    } else {
        char *copy = strdup(spec), *save = NULL;
        for (char *a = copy ? strtok_r(copy, ",", &save) : NULL; a; a = strtok_r(NULL, ",", &save)) {
            if (!strchr(a, ':') || strchr(a, '/') || add_locked(p, a) < 0) {
                snprintf(err, errlen, "--ps-pool: bad node address \"%.80s\" (want host:port, at "
                                      "most %d nodes)",
                         a, COORD_POOL_MAX);
                free(copy);
                coord_pool_free(p);
                return SMLT_EINVAL;
            }
        }
        free(copy);
        if (p->n == 0) {
            snprintf(err, errlen, "--ps-pool: no node in \"%s\"", spec);
            coord_pool_free(p);
            return SMLT_EINVAL;
        }
    }
    poll_all(p);
    if (pthread_create(&p->thread, NULL, monitor, p) != 0) {
        snprintf(err, errlen, "cannot start the pool's monitor thread");
        coord_pool_free(p);
        return SMLT_ESYS;
    }
    p->started = 1;
    uint32_t up = 0;
    for (uint32_t i = 0; i < p->n; i++)
        up += p->nodes[i].v.state == COORD_NODE_UP;
    log_info("PS pool %s: %u nodes, %u up", spec, p->n, up);
    *out = p;
    return 0;
}

void coord_pool_free(struct coord_pool *p)
{
    if (!p)
        return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stopping = 1;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    while (p->drops) {
        struct drop_req *d = p->drops;
        p->drops = d->next;
        free(d);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->spec);
    free(p->token);
    free(p);
}

const char *coord_pool_token(const struct coord_pool *p)
{
    return p->token;
}

const char *coord_pool_spec(const struct coord_pool *p)
{
    return p->spec;
}

uint32_t coord_pool_nodes(struct coord_pool *p, struct coord_pool_node *out, uint32_t max)
{
    pthread_mutex_lock(&p->mu);
    double now = smlt_now_mono();
    for (uint32_t i = 0; i < p->n && i < max; i++) {
        out[i] = p->nodes[i].v;
        out[i].since_ok_s = p->nodes[i].last_ok > 0 ? now - p->nodes[i].last_ok : -1;
    }
    uint32_t n = p->n;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int coord_pool_find(struct coord_pool *p, const char *addr)
{
    pthread_mutex_lock(&p->mu);
    int i = add_locked(p, addr);
    pthread_mutex_unlock(&p->mu);
    return i;
}

void coord_pool_addr(struct coord_pool *p, int idx, char *out, size_t len)
{
    pthread_mutex_lock(&p->mu);
    snprintf(out, len, "%s", idx >= 0 && (uint32_t)idx < p->n ? p->nodes[idx].v.addr : "");
    pthread_mutex_unlock(&p->mu);
}

int coord_pool_state(struct coord_pool *p, int idx, uint64_t *boot_id)
{
    pthread_mutex_lock(&p->mu);
    int ok = idx >= 0 && (uint32_t)idx < p->n;
    int st = ok ? p->nodes[idx].v.state : COORD_NODE_DOWN;
    if (boot_id)
        *boot_id = ok ? p->nodes[idx].v.boot_id : 0;
    pthread_mutex_unlock(&p->mu);
    return st;
}

int coord_pool_place(struct coord_pool *p, uint64_t bytes, const uint32_t *load, int avoid,
                     char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    int best = -1;
    uint64_t best_free = 0;
    uint32_t up = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        struct node *nd = &p->nodes[i];
        if (nd->v.state != COORD_NODE_UP || (int)i == avoid)
            continue;
        up++;
        uint64_t taken = nd->v.used_bytes + nd->pending;
        uint64_t free_b = nd->v.capacity_bytes > taken ? nd->v.capacity_bytes - taken : 0;
        if (free_b < bytes)
            continue;
        uint32_t l = load ? load[i] : 0, bl = best >= 0 && load ? load[best] : 0;
        if (best < 0 || l < bl || (l == bl && free_b > best_free)) {
            best = (int)i;
            best_free = free_b;
        }
    }
    if (best >= 0) {
        p->nodes[best].pending += bytes;
    } else {
        snprintf(err, errlen, "no PS node can take a shard of %llu MiB: %u of %u nodes up%s%s",
                 (unsigned long long)((bytes + (1u << 20) - 1) >> 20), up, p->n,
                 avoid >= 0 ? ", not counting the one its primary is on" : "",
                 up ? ", none with that much memory free" : "");
    }
    pthread_mutex_unlock(&p->mu);
    return best;
}

void coord_pool_drop(struct coord_pool *p, int idx, const char *route)
{
    struct drop_req *d = calloc(1, sizeof *d);
    if (!d || idx < 0)
        return (void)free(d);
    d->idx = idx;
    snprintf(d->route, sizeof d->route, "%s", route);
    pthread_mutex_lock(&p->mu);
    d->next = p->drops;
    p->drops = d;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
