/* coord_replica.c: replicated shards (spec "ps": {"replicas": 2}; issue 11 item 3).
 *
 * Every local shard gets a backup process, which its primary builds from its own range and
 * then keeps in step: the primary acknowledges a worker's push only once the backup holds it
 * (smlt_set_backup(), ps/ps_server.c). So when a primary dies no acknowledged step is lost:
 *   - the coordinator promotes the backup (smlt_promote(): the map at the next version names
 *     the backup's address for that shard, every shard gets it, and clients that still talk
 *     to the dead primary refresh their map and carry on), with no rollback and no
 *     re-invocation: the running workers retry their step against the promoted backup;
 *   - then it starts a new backup process and has the new primary build it, so the shard is
 *     replicated again.
 * A backup that dies is replaced the same way. A "failover" event records it. Checkpoints go
 * on as well (the promoted primary writes them from then on).
 * When a primary and its backup are both lost, nothing can be promoted: the job restores the
 * checkpoints (coord_recover.c), which configures every primary again and so drops every
 * backup; job_replicas_rebuild() then builds each one again from its restored primary (a new
 * process where the old one is gone) before the ranks go on. */
#include "coord_int.h"

#include <stdio.h>
#include <string.h>

#include "smlt_error.h"
#include "smlt_proc.h"

static void replica_next(struct coord_job *j);

static void on_backup_set(struct coord_job *j, const struct coord_admin_res *res)
{
    uint32_t i = j->rp_shard;
    if (res->rc) {
        char msg[900];
        snprintf(msg, sizeof msg, "shard %u: building its backup at %s: %s", i,
                 j->shards.baddr[i], res->err);
        if (j->rp_done) {
            /* A job already running goes on without the backup, and says so. */
            job_event(j, "failover", "%s; the shard runs without a backup", msg);
            j->rp_pending = 0;
            return;
        }
        j->rp_pending = 0;
        job_finish(j, JOB_FAILED, msg);
        return;
    }
    job_log(j, "shard %u: backup at %s (pid %d) in sync", i, j->shards.baddr[i],
            (int)j->shards.bpid[i]);
    j->rp_shard++;
    replica_next(j);
}

/* Builds the backups of shards rp_shard.. that have none, one at a time (the admin queue runs
 * them in order), then calls rp_then. */
static void replica_next(struct coord_job *j)
{
    while (j->rp_shard < j->shards.n && coord_shards_has_backup(&j->shards, j->rp_shard) &&
           j->shards.baddr[j->rp_shard][0] && j->rp_built[j->rp_shard])
        j->rp_shard++;
    if (j->rp_shard >= j->shards.n) {
        j->rp_pending = 0;
        job_journal_shards(j);
        void (*then)(struct coord_job *) = j->rp_then;
        j->rp_then = NULL;
        if (then)
            then(j);
        return;
    }
    uint32_t i = j->rp_shard;
    char err[512] = "";
    if (!coord_shards_has_backup(&j->shards, i) &&
        coord_shards_start_backup(&j->shards, i, j->c->ps_bin, j->dir, err, sizeof err) != 0) {
        struct coord_admin_res res = {.op = COORD_ADMIN_SET_BACKUP, .rc = SMLT_ESYS};
        snprintf(res.err, sizeof res.err, "%s", err);
        on_backup_set(j, &res);
        return;
    }
    j->rp_built[i] = 1;
    struct coord_admin_req req = {.op = COORD_ADMIN_SET_BACKUP, .shard = i, .timeout_ms = 60000};
    snprintf(req.new_addrs, sizeof req.new_addrs, "%s", j->shards.baddr[i]);
    job_call(j, &req, on_backup_set);
}

void job_replicas_build(struct coord_job *j, void (*then)(struct coord_job *j))
{
    if (j->shards.replicas < 2 || !j->shards.local) {
        if (then)
            then(j);
        return;
    }
    memset(j->rp_built, 0, sizeof j->rp_built);
    for (uint32_t i = 0; i < j->shards.n; i++)
        j->rp_built[i] = coord_shards_has_backup(&j->shards, i) && j->rp_done; /* running ones stay */
    j->rp_pending = 1;
    j->rp_shard = 0;
    j->rp_then = then;
    replica_next(j);
}

static void after_failover(struct coord_job *j)
{
    job_log(j, "every shard has a backup again");
}

static void on_promoted(struct coord_job *j, const struct coord_admin_res *res)
{
    uint32_t i = j->rp_shard;
    if (res->rc) {
        char msg[900];
        snprintf(msg, sizeof msg, "parameter-server shard %u exited and its backup at %s could not "
                                  "take over: %s",
                 i, j->shards.baddr[i], res->err);
        j->recovering = 0;
        job_finish(j, JOB_FAILED, msg);
        return;
    }
    char was[COORD_ADDR_LEN];
    snprintf(was, sizeof was, "%s", j->shards.baddr[i]);
    pid_t bpid = j->shards.bpid[i];
    coord_shards_promote(&j->shards, i);
    j->map_version++;
    j->recovering = 0;
    if (j->shards.pool)
        job_event(j, "failover",
                  "parameter-server shard %u was lost with its PS node at step %llu; its backup "
                  "(%s) took over with every acknowledged step: 0 steps lost; a new backup is "
                  "being built",
                  i, (unsigned long long)j->step, was);
    else
        job_event(j, "failover",
                  "parameter-server shard %u (pid %d) exited at step %llu; its backup (pid %d, "
                  "%s) took over with every acknowledged step: 0 steps lost; a new backup is "
                  "being built",
                  i, (int)j->rc_pid, (unsigned long long)j->step, (int)bpid, was);
    job_journal_shards(j);
    job_replicas_build(j, after_failover);
}

int job_failover(struct coord_job *j, uint32_t shard, pid_t pid)
{
    if (j->shards.replicas < 2 || !j->shards.local || shard >= j->shards.n ||
        !coord_shards_has_backup(&j->shards, shard) || !j->shards.baddr[shard][0] ||
        j->rp_pending)
        return -1;
    if (!coord_shards_up(&j->shards, shard, 1)) {
        /* Primary and backup both gone: nothing to promote; the checkpoints restore it
         * (coord_recover.c), and the backups are built again after. */
        job_log(j, "shard %u (pid %d) exited and so did its backup (pid %d)", shard, (int)pid,
                (int)j->shards.bpid[shard]);
        coord_shards_forget_backup(&j->shards, shard);
        return -1;
    }
    j->recovering = 1; /* the phases wait while the map changes */
    j->rc_pid = pid;
    j->rp_shard = shard;
    job_log(j, "shard %u (pid %d) exited: promoting its backup at %s", shard, (int)pid,
            j->shards.baddr[shard]);
    struct coord_admin_req req = {.op = COORD_ADMIN_PROMOTE, .shard = shard, .timeout_ms = 60000};
    snprintf(req.new_addrs, sizeof req.new_addrs, "%s", j->shards.baddr[shard]);
    job_call(j, &req, on_promoted);
    return 0;
}

static void after_rebuild(struct coord_job *j)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < j->shards.n; i++)
        n += coord_shards_has_backup(&j->shards, i);
    job_event(j, "replicas", "after the restore, %u of %u shards have a backup in sync again", n,
              j->shards.n);
    void (*then)(struct coord_job *) = j->rp_after;
    j->rp_after = NULL;
    if (then)
        then(j);
}

void job_replicas_rebuild(struct coord_job *j, void (*then)(struct coord_job *j))
{
    if (j->shards.replicas < 2 || !j->shards.local) {
        if (then)
            then(j);
        return;
    }
    for (uint32_t i = 0; i < j->shards.n; i++) {
        if (coord_shards_has_backup(&j->shards, i) && !coord_shards_up(&j->shards, i, 1)) {
            job_log(j, "the backup of shard %u (pid %d) is gone: starting a new one", i,
                    (int)j->shards.bpid[i]);
            coord_shards_forget_backup(&j->shards, i);
        }
    }
    memset(j->rp_built, 0, sizeof j->rp_built); /* every one: the primaries dropped them */
    j->rp_pending = 1;
    j->rp_shard = 0;
    j->rp_after = then;
    j->rp_then = after_rebuild;
    replica_next(j);
}

void job_backup_lost(struct coord_job *j, uint32_t shard, pid_t pid)
{
    job_event(j, "failover", "the backup of shard %u (pid %d) exited: building a new one", shard,
              (int)pid);
    if (!j->rp_pending)
        job_replicas_build(j, after_failover);
}
