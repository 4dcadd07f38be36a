/* coord_shards.c: see coord_shards.h. */
#include "coord_shards.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coord_pool.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_proc.h"
#include "smlt_util.h"

void coord_random_hex(char *buf, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[128];
    size_t need = (n + 1) / 2;
    if (need > sizeof raw)
        need = sizeof raw;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, raw, need) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)need) {
        /* No urandom: still unique per process and time, not secret. Logged loudly. */
        log_error("cannot read /dev/urandom; tokens are weak");
        uint64_t x = (uint64_t)smlt_now_mono() * 1000003u ^ (uint64_t)getpid() << 32;
        for (size_t i = 0; i < need; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            raw[i] = (unsigned char)(x >> 56);
        }
    }
    size_t i;
    for (i = 0; i < n && i / 2 < need; i++)
        buf[i] = hex[(raw[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    buf[i] = '\0';
}

/* Where local shards listen, and the host their addresses name (what workers and the
 * coordinator dial): loopback unless coord_shards_set_hosts() says otherwise. */
static char bind_host[64] = "127.0.0.1";
static char adv_host[18] = "127.0.0.1"; /* "host:port" fits an address (24) */

int coord_shards_set_hosts(const char *bind, const char *adv, char *err, size_t errlen)
{
    if (!bind || !*bind)
        bind = "127.0.0.1";
    if (!adv || !*adv)
        adv = strcmp(bind, "0.0.0.0") && strcmp(bind, "::") ? bind : "127.0.0.1";
    /* An address is "host:port" in 23 bytes (coord_shards.h): an IP address or a short name. */
    if (strlen(adv) + 6 > 23 || strlen(bind) + 2 > sizeof bind_host || strchr(adv, ',') ||
        strchr(adv, ' ')) {
        snprintf(err, errlen, "shards' advertised host '%s': at most 17 characters (an IP "
                              "address or a short name), no commas",
                 adv);
        return SMLT_EINVAL;
    }
    snprintf(bind_host, sizeof bind_host, "%s", bind);
    snprintf(adv_host, sizeof adv_host, "%s", adv);
    return 0;
}

/* TLS of the local shards (coord_shards_set_tls()): absolute paths; cert "" for none. */
static char tls_cert[4096], tls_key[4096], tls_ca[4096];
static int tls_verify;

int coord_shards_set_tls(const char *cert, const char *key, const char *ca, int verify_client,
                         char *err, size_t errlen)
{
    tls_cert[0] = tls_key[0] = tls_ca[0] = '\0';
    tls_verify = 0;
    if (!cert)
        return 0;
    const char *in[] = {cert, key, ca};
    char *out[] = {tls_cert, tls_key, tls_ca};
    for (int i = 0; i < 3; i++) {
        if (in[i] && !realpath(in[i], out[i])) {
            snprintf(err, errlen, "%s: %s", in[i], strerror(errno));
            tls_cert[0] = '\0';
            return SMLT_EINVAL;
        }
    }
    tls_verify = verify_client;
    return 0;
}

/* Reads the metrics port a shard just started wrote (before its data port, so it is there),
 * into its maddr or bmaddr. Metrics are not needed to train: a shard without is logged. */
static void read_metrics_port(struct coord_shards *s, uint32_t i, int backup, pid_t pid,
                              const char *mpf)
{
    char *a = backup ? s->bmaddr[i] : s->maddr[i];
    int port = smlt_proc_wait_port(pid, mpf, 1000);
    if (port > 0)
        snprintf(a, sizeof s->maddr[i], "%s:%hu", adv_host, (unsigned short)port);
    else
        a[0] = '\0';
    if (port <= 0)
        log_warn("%s %u (pid %d) wrote no metrics port to %s", backup ? "backup of shard" : "shard",
                 i, (int)pid, mpf);
}

/* Starts the process of shard i and waits for its port. Returns the port (> 0), or a
 * negative code with a message in err. */
static int spawn_one(struct coord_shards *s, uint32_t i, int backup, const char *ps_bin,
                     const char *dir, char *err, size_t errlen)
{
    char log[1024], id[16], pf[1024], mpf[1040];
    snprintf(log, sizeof log, "%s/shards.log", dir);
    snprintf(id, sizeof id, "%u", i);
    snprintf(pf, sizeof pf, "%s/%s%u.port", dir, backup ? "backup" : "shard", i);
    snprintf(mpf, sizeof mpf, "%s/%s%u.metrics.port", dir, backup ? "backup" : "shard", i);
    unlink(pf);
    unlink(mpf);
    /* The tokens go through the environment: a command line is readable by every local user
     * (/proc/PID/cmdline), the environment only by the owner. */
    char tok_env[128], adm_env[128];
    snprintf(tok_env, sizeof tok_env, "SMLT_TOKEN=%s", s->token);
    snprintf(adm_env, sizeof adm_env, "SMLT_ADMIN_TOKEN=%s", s->admin_token);
    const char *env[] = {tok_env, adm_env, NULL};
    char nic[16];
    snprintf(nic, sizeof nic, "%u", s->nic_mbps);
    /* Shards are persistent nodes: they outlive a coordinator that dies, so that its next run
     * adopts them (coord_resume.c); one that nobody adopts exits on its own. */
    char listen[80];
    snprintf(listen, sizeof listen, "%s:0", bind_host);
    const char *argv[32] = {ps_bin, "--shard", id, "--listen", listen, "--port-file", pf,
                            "--log-level", "info", "--nic-mbps", nic, "--orphan-exit",
                            COORD_SHARDS_ORPHAN_EXIT_S, "--metrics-listen", listen,
                            "--metrics-port-file", mpf};
    int na = 17;
    if (tls_cert[0]) {
        argv[na++] = "--tls-cert";
        argv[na++] = tls_cert;
        argv[na++] = "--tls-key";
        argv[na++] = tls_key;
        if (tls_ca[0]) {
            argv[na++] = "--tls-ca";
            argv[na++] = tls_ca;
        }
        if (tls_verify)
            argv[na++] = "--tls-verify-client";
    }
    argv[na] = NULL;
    struct smlt_proc_opts o = {.log_path = log, .die_with_parent = 0, .env = env};
    pid_t pid = smlt_proc_spawn(argv, &o);
    if (pid <= 0) {
        snprintf(err, errlen, "cannot start %s: %s", ps_bin, strerror(errno));
        return SMLT_ESYS;
    }
    (backup ? s->bpid : s->pid)[i] = pid;
    int port = smlt_proc_wait_port(pid, pf, 10000);
    if (port <= 0) {
        snprintf(err, errlen, "%s %u did not start (see %s)", backup ? "backup of shard" : "shard",
                 i, log);
        smlt_proc_stop(pid, 1000);
        (backup ? s->bpid : s->pid)[i] = 0;
        return port < 0 ? port : SMLT_EIO;
    }
    read_metrics_port(s, i, backup, pid, mpf);
    return port;
}

/* Starts shards s->n .. n-1. */
static int start_more(struct coord_shards *s, uint32_t n, const char *ps_bin, const char *dir,
                      char *err, size_t errlen)
{
    size_t off = strlen(s->addrs);
    for (uint32_t i = s->n; i < n; i++) {
        int port = spawn_one(s, i, 0, ps_bin, dir, err, errlen);
        if (port <= 0)
            return port;
        s->n = i + 1;
        off += (size_t)snprintf(s->addrs + off, sizeof s->addrs - off, "%s%s:%d",
                                i ? "," : "", adv_host, port);
    }
    return 0;
}

void coord_shards_addr(const struct coord_shards *s, uint32_t i, char *out, size_t len)
{
    const char *a = s->addrs;
    for (uint32_t k = 0; k < i && a; k++) {
        a = strchr(a, ',');
        a = a ? a + 1 : NULL;
    }
    size_t l = a ? strcspn(a, ",") : 0;
    if (l >= len)
        l = len - 1;
    memcpy(out, a ? a : "", l);
    out[l] = '\0';
}

/* Sets shard i's address in s->addrs. */
static void set_addr(struct coord_shards *s, uint32_t i, const char *addr)
{
    char tmp[sizeof s->addrs], *save = NULL;
    snprintf(tmp, sizeof tmp, "%s", s->addrs);
    size_t off = 0;
    uint32_t k = 0;
    s->addrs[0] = '\0';
    for (char *a = strtok_r(tmp, ",", &save); a; a = strtok_r(NULL, ",", &save), k++)
        off += (size_t)snprintf(s->addrs + off, sizeof s->addrs - off, "%s%s", k ? "," : "",
                                k == i ? addr : a);
}


/* ---- the pool ---------------------------------------------------------------------------- */

static struct coord_pool *the_pool;

void coord_shards_set_pool(struct coord_pool *pool)
{
    the_pool = pool;
}

struct coord_pool *coord_shards_pool(void)
{
    return the_pool;
}

/* This job's shards and backups per pool node. */
static void pool_load(const struct coord_shards *s, uint32_t *load)
{
    memset(load, 0, COORD_POOL_MAX * sizeof *load);
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->node[i] >= 0 && s->node[i] < COORD_POOL_MAX)
            load[s->node[i]]++;
        if (s->bnode[i] >= 0 && s->bnode[i] < COORD_POOL_MAX)
            load[s->bnode[i]]++;
    }
}

/* Places shard i (or its backup) on a node other than avoid: its address into out, its node
 * and the node's boot id into *node, *boot, and a NodeHost queued. */
static int pool_place(struct coord_shards *s, uint32_t i, int backup, int avoid, char *out,
                      int *node, uint64_t *boot, char *err, size_t errlen)
{
    uint32_t load[COORD_POOL_MAX];
    pool_load(s, load);
    int k = coord_pool_place(the_pool, s->mem_bytes, load, avoid, err, errlen);
    if (k < 0)
        return SMLT_ENOMEM;
    struct coord_admin_host *h = realloc(s->hosting, (s->nhosting + 1) * sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return SMLT_ENOMEM;
    }
    s->hosting = h;
    h = &s->hosting[s->nhosting++];
    memset(h, 0, sizeof *h);
    coord_pool_addr(the_pool, k, h->node, sizeof h->node);
    snprintf(h->route, sizeof h->route, "%.24s.%u.%u", s->job, i, ++s->gen);
    snprintf(h->job, sizeof h->job, "%s", s->job);
    h->shard = i;
    h->backup = backup;
    h->memory_bytes = s->mem_bytes;
    snprintf(out, COORD_ADDR_LEN, "%s/%s", h->node, h->route);
    *node = k;
    coord_pool_state(the_pool, k, boot);
    return 0;
}

/* Drops the shard at addr on node k (nothing when it is gone). */
static void pool_drop(int k, const char *addr)
{
    const char *route = strchr(addr, '/');
    if (the_pool && k >= 0 && route)
        coord_pool_drop(the_pool, k, route + 1);
}

/* Drops shard i (the primary) from its node. */
static void pool_drop_shard(const struct coord_shards *s, uint32_t i)
{
    char a[COORD_ADDR_LEN];
    coord_shards_addr(s, i, a, sizeof a);
    pool_drop(s->node[i], a);
}

/* Shard i and its backup leave their nodes for good (a shrink, the job's end). */
static void pool_release(struct coord_shards *s, uint32_t i)
{
    pool_drop_shard(s, i);
    s->node[i] = -1;
    if (coord_shards_has_backup(s, i))
        coord_shards_forget_backup(s, i);
}

int coord_shards_start_pool(struct coord_shards *s, uint32_t n, const char *job,
                            uint64_t mem_bytes, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!the_pool) {
        snprintf(err, errlen, "no PS pool");
        return SMLT_EINVAL;
    }
    if (n == 0 || n > COORD_SHARDS_MAX) {
        snprintf(err, errlen, "shards: %u outside 1..%u", n, COORD_SHARDS_MAX);
        return SMLT_EINVAL;
    }
    s->local = s->pool = 1;
    snprintf(s->job, sizeof s->job, "%s", job);
    s->mem_bytes = mem_bytes;
    for (uint32_t i = 0; i < COORD_SHARDS_MAX; i++)
        s->node[i] = s->bnode[i] = -1;
    coord_random_hex(s->token, 32);
    coord_random_hex(s->admin_token, 32);
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        char a[COORD_ADDR_LEN];
        int rc = pool_place(s, i, 0, -1, a, &s->node[i], &s->boot[i], err, errlen);
        if (rc) {
            coord_shards_stop(s);
            return rc;
        }
        s->n = i + 1;
        off += (size_t)snprintf(s->addrs + off, sizeof s->addrs - off, "%s%s", i ? "," : "", a);
    }
    s->started = smlt_now_mono();
    return 0;
}

void coord_shards_take_hosting(struct coord_shards *s, struct coord_admin_host **hosts,
                               uint32_t *n)
{
    *hosts = s->hosting;
    *n = s->nhosting;
    s->hosting = NULL;
    s->nhosting = 0;
}

/* The pool node of address a ("host:port/route"), added to the pool if new. */
static int node_of(const char *a)
{
    char hp[COORD_ADDR_LEN];
    size_t l = strcspn(a, "/");
    if (!the_pool || !a[l] || l >= sizeof hp)
        return -1;
    memcpy(hp, a, l);
    hp[l] = '\0';
    return coord_pool_find(the_pool, hp);
}

void coord_shards_pool_adopt(struct coord_shards *s)
{
    char tmp[sizeof s->addrs], *save = NULL;
    snprintf(tmp, sizeof tmp, "%s", s->addrs);
    uint32_t k = 0;
    for (char *a = strtok_r(tmp, ",", &save); a && k < COORD_SHARDS_MAX;
         a = strtok_r(NULL, ",", &save), k++)
        s->node[k] = node_of(a);
    for (uint32_t i = 0; i < s->n; i++)
        s->bnode[i] = s->baddr[i][0] ? node_of(s->baddr[i]) : -1;
    for (uint32_t i = s->n; i < COORD_SHARDS_MAX; i++)
        s->node[i] = s->bnode[i] = -1;
}

/* A pool shard on node k placed when the node's boot id was *boot is there. */
static int pool_up(int k, uint64_t *boot)
{
    if (!the_pool || k < 0)
        return 0;
    uint64_t now = 0;
    int st = coord_pool_state(the_pool, k, &now);
    if (st == COORD_NODE_DOWN)
        return 0;
    if (st == COORD_NODE_UP && *boot && now != *boot)
        return 0; /* it restarted: what it held is gone */
    if (st == COORD_NODE_UP && !*boot)
        *boot = now;
    return 1;
}

int coord_shards_up(const struct coord_shards *s, uint32_t i, int backup)
{
    if (!s->local || i >= s->n)
        return 0;
    if (s->pool) {
        uint64_t b = backup ? s->bboot[i] : s->boot[i];
        return !(backup ? 0 : s->lost[i]) && pool_up(backup ? s->bnode[i] : s->node[i], &b);
    }
    pid_t p = backup ? s->bpid[i] : s->pid[i];
    return p > 0 && smlt_proc_alive(p);
}

int coord_shards_has_backup(const struct coord_shards *s, uint32_t i)
{
    return s->pool ? s->bnode[i] >= 0 : s->bpid[i] > 0;
}

void coord_shards_forget_backup(struct coord_shards *s, uint32_t i)
{
    if (s->pool)
        pool_drop(s->bnode[i], s->baddr[i]);
    s->bpid[i] = 0;
    s->bnode[i] = -1;
    s->baddr[i][0] = '\0';
    s->bmaddr[i][0] = '\0';
}

void coord_shards_kill(struct coord_shards *s, uint32_t i)
{
    if (!s->pool) {
        if (s->pid[i] > 0)
            kill(s->pid[i], SIGKILL);
        return;
    }
    pool_drop_shard(s, i);
    s->lost[i] = 1;
}

int coord_shards_start_backup(struct coord_shards *s, uint32_t i, const char *ps_bin,
                              const char *dir, char *err, size_t errlen)
{
    if (!s->local || i >= s->n) {
        snprintf(err, errlen, "shard %u: not a local shard of this job", i);
        return SMLT_EINVAL;
    }
    if (s->pool) /* never on its primary's node */
        return pool_place(s, i, 1, s->node[i], s->baddr[i], &s->bnode[i], &s->bboot[i], err,
                          errlen);
    int port = spawn_one(s, i, 1, ps_bin, dir, err, errlen);
    if (port <= 0)
        return port;
    snprintf(s->baddr[i], sizeof s->baddr[i], "%s:%hu", adv_host, (unsigned short)port);
    return 0;
}

void coord_shards_promote(struct coord_shards *s, uint32_t i)
{
    s->pid[i] = s->bpid[i];
    s->node[i] = s->bnode[i];
    s->boot[i] = s->bboot[i];
    s->lost[i] = 0;
    s->bnode[i] = -1;
    set_addr(s, i, s->baddr[i]);
    memcpy(s->maddr[i], s->bmaddr[i], sizeof s->maddr[i]);
    s->bpid[i] = 0;
    s->baddr[i][0] = '\0';
    s->bmaddr[i][0] = '\0';
}

int coord_shards_check_backups(struct coord_shards *s)
{
    for (uint32_t i = 0; i < s->n && s->local && s->replicas > 1; i++) {
        if (coord_shards_has_backup(s, i) && !coord_shards_up(s, i, 1)) {
            s->dead_pid = s->bpid[i];
            coord_shards_forget_backup(s, i);
            return (int)i;
        }
    }
    return -1;
}

uint32_t coord_shards_nodes(const struct coord_shards *s)
{
    uint32_t n = s->n;
    for (uint32_t i = 0; i < s->n && s->local; i++)
        n += coord_shards_has_backup(s, i);
    return n;
}

int coord_shards_replace(struct coord_shards *s, uint32_t i, const char *ps_bin, const char *dir,
                         char *err, size_t errlen)
{
    if (!s->local || i >= s->n) {
        snprintf(err, errlen, "shard %u: not a local shard of this job", i);
        return SMLT_EINVAL;
    }
    if (s->pool) {
        char a[COORD_ADDR_LEN];
        pool_drop_shard(s, i); /* (a node that is down is not asked) */
        int old = s->node[i];
        s->node[i] = -1;
        /* Not where its backup is, and if it can be helped, not where it was. */
        int rc = pool_place(s, i, 0, s->bnode[i] >= 0 ? s->bnode[i] : old, a, &s->node[i],
                            &s->boot[i], err, errlen);
        if (rc && s->bnode[i] < 0)
            rc = pool_place(s, i, 0, -1, a, &s->node[i], &s->boot[i], err, errlen);
        if (rc)
            return rc;
        s->lost[i] = 0;
        set_addr(s, i, a);
        return 0;
    }
    if (s->pid[i] > 0)
        smlt_proc_stop(s->pid[i], 1000);
    int port = spawn_one(s, i, 0, ps_bin, dir, err, errlen);
    if (port <= 0)
        return port;
    char a[24];
    snprintf(a, sizeof a, "%s:%hu", adv_host, (unsigned short)port);
    set_addr(s, i, a);
    return 0;
}

int coord_shards_start(struct coord_shards *s, uint32_t n, uint32_t nic_mbps, const char *ps_bin,
                       const char *dir, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->nic_mbps = nic_mbps;
    if (n == 0 || n > COORD_SHARDS_MAX) {
        snprintf(err, errlen, "shards: %u outside 1..%u", n, COORD_SHARDS_MAX);
        return SMLT_EINVAL;
    }
    s->local = 1;
    coord_random_hex(s->token, 32);
    coord_random_hex(s->admin_token, 32);
    int rc = start_more(s, n, ps_bin, dir, err, errlen);
    if (rc)
        return rc;
    s->started = smlt_now_mono();
    return 0;
}

int coord_shards_grow(struct coord_shards *s, uint32_t n, const char *ps_bin, const char *dir,
                      char *err, size_t errlen)
{
    if (!s->local || n > COORD_SHARDS_MAX || n <= s->n) {
        snprintf(err, errlen, "cannot grow %s shards from %u to %u", s->local ? "local" : "external",
                 s->n, n);
        return SMLT_EINVAL;
    }
    if (s->pool) {
        size_t off = strlen(s->addrs);
        for (uint32_t i = s->n; i < n; i++) {
            char a[COORD_ADDR_LEN];
            int rc = pool_place(s, i, 0, -1, a, &s->node[i], &s->boot[i], err, errlen);
            if (rc)
                return rc;
            s->lost[i] = 0;
            s->n = i + 1;
            off += (size_t)snprintf(s->addrs + off, sizeof s->addrs - off, ",%s", a);
        }
        return 0;
    }
    return start_more(s, n, ps_bin, dir, err, errlen);
}

void coord_shards_shrink(struct coord_shards *s, uint32_t n)
{
    if (!s->local || n >= s->n)
        return;
    for (uint32_t i = n; i < s->n; i++) {
        if (s->pool)
            pool_release(s, i);
        if (s->pid[i] > 0)
            smlt_proc_stop(s->pid[i], 3000);
        s->pid[i] = 0;
        s->maddr[i][0] = '\0';
    }
    s->n = n;
    coord_shards_addrs(s, n, s->addrs, sizeof s->addrs);
}

void coord_shards_addrs(const struct coord_shards *s, uint32_t n, char *out, size_t len)
{
    char tmp[sizeof s->addrs];
    snprintf(tmp, sizeof tmp, "%s", s->addrs);
    size_t off = 0;
    out[0] = '\0';
    char *save = NULL;
    uint32_t k = 0;
    for (char *a = strtok_r(tmp, ",", &save); a && k < n; a = strtok_r(NULL, ",", &save), k++)
        off += (size_t)snprintf(out + off, len - off, "%s%s", k ? "," : "", a);
}

int coord_shards_external(struct coord_shards *s, const char *addrs, const char *token,
                          const char *admin_token, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!addrs || !token || strlen(addrs) >= sizeof s->addrs || strlen(token) >= sizeof s->token ||
        (admin_token && strlen(admin_token) >= sizeof s->admin_token)) {
        snprintf(err, errlen, "ps: addresses and a token (at most 64 characters) are required");
        return SMLT_EINVAL;
    }
    snprintf(s->addrs, sizeof s->addrs, "%s", addrs);
    snprintf(s->token, sizeof s->token, "%s", token);
    snprintf(s->admin_token, sizeof s->admin_token, "%s", admin_token ? admin_token : token);
    s->n = 1;
    for (const char *p = addrs; *p; p++)
        s->n += *p == ',';
    s->started = smlt_now_mono();
    return 0;
}

int coord_shards_check(struct coord_shards *s)
{
    for (uint32_t i = 0; i < s->n && s->pool; i++) {
        if (s->node[i] >= 0 && !coord_shards_up(s, i, 0)) {
            s->dead_pid = 0;
            return (int)i;
        }
    }
    for (uint32_t i = 0; i < s->n && s->local && !s->pool; i++) {
        if (s->pid[i] > 0 && !smlt_proc_alive(s->pid[i])) {
            s->dead_pid = s->pid[i];
            s->pid[i] = 0;
            return (int)i;
        }
    }
    return -1;
}

void coord_shards_stop(struct coord_shards *s)
{
    if (!s->local)
        return;
    for (uint32_t i = 0; i < s->n && s->pool; i++) {
        pool_release(s, i);
    }
    free(s->hosting);
    s->hosting = NULL;
    s->nhosting = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->pid[i] > 0)
            smlt_proc_stop(s->pid[i], 3000);
        s->pid[i] = 0;
        if (s->bpid[i] > 0)
            smlt_proc_stop(s->bpid[i], 3000);
        s->bpid[i] = 0;
    }
}
