/* bench_cluster.c: see bench_cluster.h. */
#include "bench_cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "smlt_proc.h"

#define OUT_MAX (4u << 20)

int bench_cluster_ctl(struct bench_cluster *c, const char *const *args, char **out)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = c->ctl;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int p[2] = {-1, -1};
    if (out && pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        setenv("SMLT_HOME", c->home, 1);
        if (out) {
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
        } else {
            dup2(2, 1);
        }
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (out) {
        close(p[1]);
        size_t cap = 65536, len = 0;
        char *b = malloc(cap);
        while (b) {
            if (len + 4096 > cap && cap < OUT_MAX) {
                char *nb = realloc(b, cap * 2);
                if (!nb)
                    break;
                b = nb;
                cap *= 2;
            }
            ssize_t k = read(p[0], b + len, cap - len - 1);
            if (k <= 0)
                break;
            len += (size_t)k;
        }
        close(p[0]);
        if (b)
            b[len] = '\0';
        *out = b;
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int bench_cluster_up(struct bench_cluster *c)
{
    return bench_cluster_up_with(c, NULL);
}

int bench_cluster_up_with(struct bench_cluster *c, const char *const *extra)
{
    snprintf(c->home, sizeof c->home, "/tmp/smlt-bench-cluster.XXXXXX");
    if (!mkdtemp(c->home)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(c->ctl, sizeof c->ctl, "%s/smltctl", smlt_proc_self_dir());
    const char *args[24] = {"up"};
    for (int i = 0; extra && extra[i] && i < 22; i++)
        args[i + 1] = extra[i];
    if (bench_cluster_ctl(c, args, NULL) != 0) {
        fprintf(stderr, "smltctl up failed\n");
        bench_cluster_down(c);
        return -1;
    }
    return 0;
}

void bench_cluster_down(struct bench_cluster *c)
{
    const char *args[] = {"down", NULL};
    bench_cluster_ctl(c, args, NULL);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->home);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", c->home);
}

int bench_cluster_submit(struct bench_cluster *c, const char *spec, char *id, size_t idlen)
{
    char path[128];
    snprintf(path, sizeof path, "%s/spec.json", c->home);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(spec, f);
    fclose(f);
    char *out = NULL;
    const char *args[] = {"submit", path, NULL};
    int rc = bench_cluster_ctl(c, args, &out);
    if (rc == 0 && out)
        snprintf(id, idlen, "%.*s", (int)strcspn(out, "\r\n"), out);
    free(out);
    return rc == 0 ? 0 : -1;
}

json_t *bench_cluster_wait(struct bench_cluster *c, const char *id)
{
    const char *watch[] = {"watch", id, NULL};
    bench_cluster_ctl(c, watch, NULL);
    char *out = NULL;
    const char *status[] = {"status", id, "--json", NULL};
    if (bench_cluster_ctl(c, status, &out) != 0 || !out) {
        free(out);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    free(out);
    return j;
}

int bench_cluster_newest(struct bench_cluster *c, char *id, size_t idlen)
{
    char *out = NULL;
    const char *args[] = {"status", "--json", NULL};
    if (bench_cluster_ctl(c, args, &out) != 0 || !out) {
        free(out);
        return -1;
    }
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    free(out);
    json_t *jobs = json_is_array(j) ? j : json_object_get(j, "jobs");
    const char *best = NULL;
    for (size_t i = 0; i < json_array_size(jobs); i++) {
        const char *x = json_string_value(json_object_get(json_array_get(jobs, i), "id"));
        if (x && (!best || strcmp(x, best) > 0))
            best = x;
    }
    if (best)
        snprintf(id, idlen, "%s", best);
    json_decref(j);
    return best ? 0 : -1;
}

int bench_cluster_info(struct bench_cluster *c, char *url, size_t ulen, int *pid)
{
    char path[128];
    snprintf(path, sizeof path, "%s/cluster.json", c->home);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    const char *u = json_string_value(json_object_get(o, "url"));
    json_int_t p = json_integer_value(json_object_get(o, "pid"));
    int ok = u && p > 0;
    if (ok) {
        snprintf(url, ulen, "%s", u);
        *pid = (int)p;
    }
    json_decref(o);
    return ok ? 0 : -1;
}
