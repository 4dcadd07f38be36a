/* test_coord_spec.c: Check suite for coordinator/coord_spec.c (defaults, every refusal naming
 * its field, datasets of each kind and their dataset_options, ps addresses, canonical JSON round
 * trips, job conf).
 *
 * Specs and messages are written with ' for " and ` for ', and @FM@ / @TMP@ for the Fashion-MNIST directory and a
 * scratch directory, expanded before parsing. The scratch directory holds an IDX directory
 * (empty files: the parser only checks they exist), CSV files and a directory without data. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord_spec.h"
#include "smlt_error.h"

static char tmpdir[256];
static char fm_dir[512];

static void touch(const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("1,2\n", f);
    fclose(f);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_coord_spec.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    char path[512];
    snprintf(path, sizeof path, "%s/idx", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/nodata", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/nolabels", tmpdir);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    touch("idx/train-images-idx3-ubyte");
    touch("idx/train-labels-idx1-ubyte.gz");
    touch("nolabels/train-images-idx3-ubyte.gz");
    touch("train.csv");
    touch("test.csv");
    /* The real dataset if installed, else our stand-in. */
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) == 0)
        snprintf(fm_dir, sizeof fm_dir, "/usr/share/datasets/fashion-mnist");
    else
        snprintf(fm_dir, sizeof fm_dir, "%s/idx", tmpdir);
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Returns the template with ' -> " and @FM@ / @TMP@ expanded (one of three static buffers,
 * used in turn, so a spec and its expected message can be expanded together). */
static const char *expand(const char *t)
{
    static char bufs[3][32768];
    static int next;
    char *buf = bufs[next];
    next = (next + 1) % 3;
    const size_t bufsz = sizeof bufs[0];
    size_t o = 0;
    for (const char *p = t; *p && o < bufsz - 600;) {
        if (!strncmp(p, "@FM@", 4)) {
            o += (size_t)snprintf(buf + o, bufsz - o, "%s", fm_dir);
            p += 4;
        } else if (!strncmp(p, "@TMP@", 5)) {
            o += (size_t)snprintf(buf + o, bufsz - o, "%s", tmpdir);
            p += 5;
        } else {
            buf[o++] = *p == '\'' ? '"' : *p == '`' ? '\'' : *p;
            p++;
        }
    }
    buf[o] = 0;
    return buf;
}

static void parse_ok(const char *tmpl, struct coord_spec *s)
{
    char err[512] = "";
    const char *json = expand(tmpl);
    int rc = coord_spec_parse(json, strlen(json), s, err, sizeof err);
    ck_assert_msg(rc == 0, "refused %s: %s", json, err);
}

/* Asserts the spec is refused with code and a message containing want. */
static void parse_fails_rc(const char *tmpl, const char *want, int code)
{
    char err[512] = "";
    struct coord_spec s;
    const char *json = expand(tmpl);
    int rc = coord_spec_parse(json, strlen(json), &s, err, sizeof err);
    ck_assert_msg(rc == code, "%s: rc %d, want %d (%s)", json, rc, code, err);
    ck_assert_msg(strstr(err, expand(want)) != NULL, "%s\n  said: %s\n  want: %s", json, err,
                  expand(want));
    ck_assert_uint_eq(s.workers, 0); /* zeroed on failure */
    ck_assert_int_eq(s.name[0], 0);
}

static void parse_fails(const char *tmpl, const char *want)
{
    parse_fails_rc(tmpl, want, SMLT_EINVAL);
}

/* Canonical JSON parses back to the same struct, and its own canonical form is identical. */
static void round_trip(const struct coord_spec *s)
{
    json_t *j = coord_spec_to_json(s);
    ck_assert_ptr_nonnull(j);
    char *text = json_dumps(j, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    struct coord_spec back;
    char err[512] = "";
    int rc = coord_spec_parse(text, strlen(text), &back, err, sizeof err);
    ck_assert_msg(rc == 0, "canonical spec refused: %s\n%s", err, text);
    ck_assert_msg(memcmp(s, &back, sizeof back) == 0, "round trip changed the spec: %s", text);
    json_t *j2 = coord_spec_to_json(&back);
    ck_assert(json_equal(j, j2));
    free(text);
    json_decref(j);
    json_decref(j2);
}

#define MIN_SPEC "{'model':'mlp:784-128-10','dataset':'@FM@','epochs':3"

START_TEST(defaults)
{
    struct coord_spec s;
    parse_ok(MIN_SPEC "}", &s);
    ck_assert_str_eq(s.name, "mlp-784-128-10");
    ck_assert_str_eq(s.model, "mlp:784-128-10");
    ck_assert_uint_eq(s.model_params, 784 * 128 + 128 + 128 * 10 + 10);
    ck_assert_str_eq(s.dataset, fm_dir);
    ck_assert_str_eq(s.cache_dir, "");
    ck_assert_int_eq(s.sync, SMLT_SYNC_BSP);
    ck_assert_uint_eq(s.staleness, 0);
    ck_assert_int_eq(s.optimizer.kind, SMLT_OPT_MOMENTUM);
    ck_assert(s.optimizer.lr == 0.05);
    ck_assert(s.optimizer.momentum == 0.9);
    ck_assert_int_eq(s.optimizer.nesterov, 0);
    ck_assert(s.optimizer.beta1 == 0.9 && s.optimizer.beta2 == 0.999);
    ck_assert(s.optimizer.eps == 1e-8);
    ck_assert(s.optimizer.weight_decay == 0.0);
    ck_assert_int_eq(s.optimizer.decoupled, 0);
    ck_assert_uint_eq(s.batch_size, 64);
    ck_assert_uint_eq(s.epochs, 3);
    ck_assert(s.target_accuracy == 0.0);
    ck_assert_uint_eq(s.max_epochs, 3);
    ck_assert_uint_eq(s.workers, 4);
    ck_assert_uint_eq(s.min_workers, 1);
    ck_assert_uint_eq(s.max_workers, 16);
    ck_assert_uint_eq(s.shards, 2);
    ck_assert_uint_eq(s.max_shards, 8);
    ck_assert(s.deadline_s == 0.0 && s.budget_usd == 0.0);
    ck_assert_int_eq(s.platform.kind, COORD_PLATFORM_LOCAL);
    ck_assert_uint_eq(s.platform.memory_mb, 1769);
    ck_assert_uint_eq(s.platform.time_limit_s, 900);
    ck_assert_uint_eq(s.platform.concurrency, 1000);
    ck_assert_str_eq(s.platform.region, "us-east-1");
    ck_assert_uint_eq(s.platform.ps_nic_mbps, 0);
    struct coord_spec nic;
    parse_ok(MIN_SPEC ",'platform':{'ps_nic_mbps':2000}}", &nic);
    ck_assert_uint_eq(nic.platform.ps_nic_mbps, 2000);
    ck_assert_int_eq(s.statistical_efficiency, 0);
    struct coord_spec se;
    parse_ok(MIN_SPEC ",'statistical_efficiency':true}", &se);
    ck_assert_int_eq(se.statistical_efficiency, 1);
    json_t *sej = coord_spec_to_json(&se);
    ck_assert(json_is_true(json_object_get(sej, "statistical_efficiency")));
    json_decref(sej);
    ck_assert_int_eq(s.platform.arch, COORD_ARCH_X86_64);
    ck_assert(s.prices.gb_s == COORD_PRICE_GB_S_X86_64);
    ck_assert(s.prices.request == COORD_PRICE_REQUEST);
    ck_assert(s.prices.ps_node_hour == COORD_PRICE_PS_NODE_HOUR);
    ck_assert_str_eq(s.ps.addrs, "");
    ck_assert_uint_eq(s.seed, 1);
    ck_assert_uint_eq(s.evaluate_every_epochs, 1);
    round_trip(&s);

    /* The canonical form spells the defaults out and leaves out what does not apply. */
    json_t *j = coord_spec_to_json(&s);
    ck_assert_str_eq(json_string_value(json_object_get(j, "sync")), "bsp");
    ck_assert_ptr_null(json_object_get(j, "staleness"));
    ck_assert_ptr_null(json_object_get(j, "max_epochs"));
    ck_assert_ptr_null(json_object_get(j, "target_accuracy"));
    ck_assert_ptr_null(json_object_get(j, "deadline_s"));
    ck_assert_ptr_null(json_object_get(j, "budget_usd"));
    ck_assert_ptr_null(json_object_get(j, "ps"));
    json_t *opt = json_object_get(j, "optimizer");
    ck_assert_str_eq(json_string_value(json_object_get(opt, "kind")), "momentum");
    ck_assert_ptr_nonnull(json_object_get(opt, "momentum"));
    ck_assert_ptr_null(json_object_get(opt, "beta1"));
    ck_assert_ptr_null(json_object_get(opt, "eps"));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "platform"),
                                                        "memory_mb")),
                     1769);
    json_decref(j);
}
END_TEST

START_TEST(everything_given)
{
    struct coord_spec s;
    parse_ok("{'name':'fmnist lenet','model':'lenet5','dataset':'@FM@','cache_dir':'/var/cache/x',"
             "'sync':'ssp','staleness':5,"
             "'optimizer':{'kind':'adam','lr':0.001,'beta1':0.8,'beta2':0.99,'eps':1e-7,"
             "'weight_decay':0.0001,'decoupled':true},"
             "'batch_size':128,'epochs':20,'target_accuracy':0.9,"
             "'workers':10,'min_workers':2,'max_workers':40,'shards':4,'max_shards':16,"
             "'deadline_s':7200,'budget_usd':5.5,"
             "'platform':{'kind':'lambda','memory_mb':3008,'time_limit_s':600,'concurrency':500,"
             "'region':'eu-west-1','arch':'arm64'},"
             "'prices':{'gb_s':0.00002,'request':0,'ps_node_hour':0.05},"
             "'seed':42,'evaluate_every_epochs':2}",
             &s);
    ck_assert_str_eq(s.name, "fmnist lenet");
    ck_assert_str_eq(s.model, "lenet5");
    ck_assert_str_eq(s.cache_dir, "/var/cache/x");
    ck_assert_int_eq(s.sync, SMLT_SYNC_SSP);
    ck_assert_uint_eq(s.staleness, 5);
    ck_assert_int_eq(s.optimizer.kind, SMLT_OPT_ADAM);
    ck_assert(s.optimizer.lr == 0.001 && s.optimizer.beta1 == 0.8 && s.optimizer.beta2 == 0.99);
    ck_assert(s.optimizer.eps == 1e-7 && s.optimizer.weight_decay == 0.0001);
    ck_assert_int_eq(s.optimizer.decoupled, 1);
    ck_assert_uint_eq(s.batch_size, 128);
    ck_assert_uint_eq(s.epochs, 20);
    ck_assert(s.target_accuracy == 0.9);
    ck_assert_uint_eq(s.max_epochs, 20);
    ck_assert_uint_eq(s.workers, 10);
    ck_assert_uint_eq(s.min_workers, 2);
    ck_assert_uint_eq(s.max_workers, 40);
    ck_assert_uint_eq(s.shards, 4);
    ck_assert_uint_eq(s.max_shards, 16);
    ck_assert(s.deadline_s == 7200.0 && s.budget_usd == 5.5);
    ck_assert_int_eq(s.platform.kind, COORD_PLATFORM_LAMBDA);
    ck_assert_uint_eq(s.platform.memory_mb, 3008);
    ck_assert_uint_eq(s.platform.time_limit_s, 600);
    ck_assert_uint_eq(s.platform.concurrency, 500);
    ck_assert_str_eq(s.platform.region, "eu-west-1");
    ck_assert_int_eq(s.platform.arch, COORD_ARCH_ARM64);
    ck_assert(s.prices.gb_s == 0.00002 && s.prices.request == 0.0 &&
              s.prices.ps_node_hour == 0.05);
    ck_assert_uint_eq(s.seed, 42);
    ck_assert_uint_eq(s.evaluate_every_epochs, 2);
    round_trip(&s);

    struct smlt_job_conf conf;
    coord_spec_job_conf(&s, &conf);
    ck_assert_ptr_eq(conf.job, s.name);
    ck_assert_int_eq(conf.sync, SMLT_SYNC_SSP);
    ck_assert_uint_eq(conf.workers, 10);
    ck_assert_uint_eq(conf.staleness, 5);
    ck_assert_int_eq(conf.optim, SMLT_OPT_ADAM);
    ck_assert(conf.lr == 0.001f && conf.beta1 == 0.8f && conf.beta2 == 0.99f);
    ck_assert(conf.eps == 1e-7f && conf.weight_decay == 0.0001f);
    ck_assert_int_eq(conf.decoupled, 1);
    ck_assert_uint_eq(conf.seed, 42);
    ck_assert_uint_eq(conf.map_version, 0);
}
END_TEST

START_TEST(valid_variants)
{
    static const char *const specs[] = {
        /* sync and staleness */
        MIN_SPEC ",'sync':'ssp'}",
        MIN_SPEC ",'sync':'ssp','staleness':0}",
        MIN_SPEC ",'sync':'asp'}",
        /* stopping rules */
        "{'model':'logreg:784-10','dataset':'@FM@','target_accuracy':0.85}",
        "{'model':'logreg:784-10','dataset':'@FM@','target_accuracy':1,'max_epochs':20}",
        MIN_SPEC ",'target_accuracy':0.5}",
        /* deadline and budget together */
        MIN_SPEC ",'deadline_s':0.5,'budget_usd':0.01}",
        /* datasets of every kind */
        "{'model':'mlp:4-3-2','dataset':'@TMP@/idx','epochs':1}",
        "{'model':'mlp:4-3-2','dataset':'file://@TMP@/idx','epochs':1}",
        "{'model':'mlp:4-3-2','dataset':'csv:@TMP@/train.csv','epochs':1}",
        "{'model':'mlp:4-3-2','dataset':'csv:@TMP@/train.csv,@TMP@/test.csv','epochs':1}",
        "{'model':'mlp:4-3-2','dataset':'libsvm:@TMP@/train.csv','epochs':1}",
        "{'model':'mlp:4-3-2','dataset':'http://example.org/fmnist','epochs':1}",
        "{'model':'mlp:4-3-2','dataset':'https://data.example.org:8443/a/b/','epochs':1}",
        "{'model':'mlp:4-3-2','dataset':'http://[::1]:8080/d','epochs':1}",
        "{'model':'mlp:4-3-2','dataset':'http://127.0.0.1','epochs':1}",
        "{'model':'mlp:4-3-2','dataset':'s3://my-bucket.example/fmnist/','epochs':1}",
        /* optimizers */
        MIN_SPEC ",'optimizer':{'kind':'sgd','lr':0.1,'weight_decay':0.0005}}",
        MIN_SPEC ",'optimizer':{'kind':'momentum','momentum':0,'nesterov':true}}",
        MIN_SPEC ",'optimizer':{'kind':'adagrad','eps':1e-10}}",
        MIN_SPEC ",'optimizer':{'kind':'adam'}}",
        MIN_SPEC ",'optimizer':{}}",
        /* platform bounds */
        MIN_SPEC ",'platform':{'memory_mb':128,'time_limit_s':1,'concurrency':1},'workers':1}",
        MIN_SPEC ",'platform':{'memory_mb':10240,'time_limit_s':900,'concurrency':10000}}",
        MIN_SPEC ",'platform':{'kind':'openfaas'}}",
        MIN_SPEC ",'platform':{'kind':'knative','arch':'arm64'}}",
        MIN_SPEC ",'platform':{'concurrency':2}}",
        /* workers and shards at their limits */
        MIN_SPEC ",'workers':4096,'platform':{'concurrency':10000}}",
        MIN_SPEC ",'workers':1,'min_workers':1,'max_workers':1}",
        MIN_SPEC ",'shards':256}",
        MIN_SPEC ",'shards':1,'max_shards':1}",
        /* external shards */
        MIN_SPEC ",'ps':{'addrs':'10.0.0.1:4000,10.0.0.2:4000','token':'t0k'}}",
        MIN_SPEC ",'ps':{'addrs':'ps-0.ps:4000,ps-1.ps:4000,[::1]:4002','token':'a',"
                 "'admin_token':'b'},'shards':3}",
        /* seeds */
        MIN_SPEC ",'seed':0}",
        MIN_SPEC ",'seed':9223372036854775807}",
        MIN_SPEC ",'seed':'18446744073709551615'}",
        MIN_SPEC ",'seed':'7'}",
        /* nulls are "not given" */
        MIN_SPEC ",'deadline_s':null,'budget_usd':null,'staleness':null,'optimizer':null}",
        /* model options and batch bounds */
        "{'model':'mlp:784-256-128-10:dropout=0.2','dataset':'@FM@','epochs':1,'batch_size':1}",
        MIN_SPEC ",'batch_size':65536,'evaluate_every_epochs':10000}",
        "{'model':'mlp:4-3-2','dataset':'@FM@','epochs':10000}",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        struct coord_spec s;
        parse_ok(specs[i], &s);
        round_trip(&s);
    }
}
END_TEST

START_TEST(derived_values)
{
    struct coord_spec s;
    parse_ok(MIN_SPEC ",'sync':'ssp'}", &s);
    ck_assert_uint_eq(s.staleness, 2);
    parse_ok("{'model':'logreg:784-10','dataset':'@FM@','target_accuracy':0.85}", &s);
    ck_assert_uint_eq(s.epochs, 0);
    ck_assert_uint_eq(s.max_epochs, 50);
    ck_assert_str_eq(s.name, "logreg-784-10");
    parse_ok("{'model':'logreg:784-10','dataset':'@FM@','target_accuracy':1,'max_epochs':20}",
             &s);
    ck_assert_uint_eq(s.max_epochs, 20);
    /* Defaults follow a small concurrency. */
    parse_ok(MIN_SPEC ",'platform':{'concurrency':2}}", &s);
    ck_assert_uint_eq(s.workers, 2);
    ck_assert_uint_eq(s.max_workers, 2);
    parse_ok(MIN_SPEC ",'workers':2000,'platform':{'concurrency':10000}}", &s);
    ck_assert_uint_eq(s.max_workers, 4096);
    /* Shards from ps.addrs, and max_shards follows them. */
    parse_ok(MIN_SPEC ",'ps':{'addrs':'a:1,b:2','token':'t'}}", &s);
    ck_assert_uint_eq(s.shards, 2);
    ck_assert_uint_eq(s.max_shards, 2);
    ck_assert_str_eq(s.ps.token, "t");
    parse_ok(MIN_SPEC ",'shards':12}", &s);
    ck_assert_uint_eq(s.max_shards, 12);
    /* Prices: arm64 defaults, then a partial override. */
    parse_ok(MIN_SPEC ",'platform':{'arch':'arm64'},'prices':{'gb_s':0.00001}}", &s);
    ck_assert(s.prices.gb_s == 0.00001);
    ck_assert(s.prices.request == COORD_PRICE_REQUEST);
    ck_assert(s.prices.ps_node_hour == COORD_PRICE_PS_NODE_HOUR);
    parse_ok(MIN_SPEC ",'platform':{'arch':'arm64'}}", &s);
    ck_assert(s.prices.gb_s == COORD_PRICE_GB_S_ARM64);
    /* The whole uint64 range of seeds, through a string. */
    parse_ok(MIN_SPEC ",'seed':'18446744073709551615'}", &s);
    ck_assert_uint_eq(s.seed, UINT64_MAX);
    json_t *j = coord_spec_to_json(&s);
    ck_assert_str_eq(json_string_value(json_object_get(j, "seed")), "18446744073709551615");
    json_decref(j);
    /* Model canonicalised. */
    parse_ok("{'model':'mlp:784-256-128-10:dropout=0.2','dataset':'@FM@','epochs':1}", &s);
    ck_assert_str_eq(s.name, "mlp-784-256-128-10-dropout-0.2");
}
END_TEST

START_TEST(errors_name_the_field)
{
    static const struct {
        const char *spec, *want;
    } cases[] = {
        /* the brief's examples */
        {MIN_SPEC ",'budget_usd':-3}", "budget_usd: must be > 0 (got -3)"},
        {MIN_SPEC ",'budget_usd':0}", "budget_usd: must be > 0 (got 0)"},
        {"{'model':'mlp:foo','dataset':'@FM@','epochs':1}", "model: bad layer size `foo` in `mlp:foo`"},
        {"{'model':'foo:1-2','dataset':'@FM@','epochs':1}", "model: unknown model `foo`"},
        {"{'model':'mlp:784-128-10','dataset':'/nope','epochs':1}", "dataset: /nope: no such directory"},
        {"{'model':'mlp:784-128-10','dataset':'@FM@'}", "epochs: give epochs or target_accuracy"},
        {MIN_SPEC ",'staleness':3}", "staleness: only meaningful with sync 'ssp'"},
        {MIN_SPEC ",'sync':'asp','staleness':3}", "staleness: only meaningful with sync 'ssp'"},
        {MIN_SPEC ",'platform':{'memory_mb':64}}", "platform.memory_mb: 64 is outside 128..10240"},
        {MIN_SPEC ",'platform':{'memory_mb':10241}}", "platform.memory_mb: 10241 is outside"},
        {MIN_SPEC ",'frobnicate':1}", "frobnicate: unknown field"},
        /* JSON itself */
        {"{'model':", "spec: invalid JSON at line 1, column"},
        {"{'model':'a',\n'model':'b'}", "spec: invalid JSON at line 2"},
        {"[1,2]", "spec: must be a JSON object (got an array)"},
        {"'mlp'", "spec: invalid JSON"},
        {"{}", "model: required"},
        {"{'model':'mlp:4-3-2','epochs':1}", "dataset: required"},
        /* unknown fields, with suggestions */
        {MIN_SPEC ",'bach_size':3}", "bach_size: unknown field (did you mean 'batch_size'?)"},
        {MIN_SPEC ",'memory_mb':3}", "memory_mb: unknown field (did you mean 'platform.memory_mb'?)"},
        {MIN_SPEC ",'optimizer':{'lrr':0.1}}", "optimizer.lrr: unknown field (did you mean 'optimizer.lr'?)"},
        {MIN_SPEC ",'platform':{'memory':512}}", "platform.memory: unknown field (did you mean 'platform.memory_mb'?)"},
        {MIN_SPEC ",'budget':5}", "budget: unknown field (did you mean 'budget_usd'?)"},
        {MIN_SPEC ",'optimizer':{'learning_rate':0.1}}", "optimizer.learning_rate: unknown field (did you mean 'optimizer.lr'?)"},
        {MIN_SPEC ",'lr':0.1}", "lr: unknown field (did you mean 'optimizer.lr'?)"},
        {MIN_SPEC ",'xyzzy':0.1}", "xyzzy: unknown field"},
        {MIN_SPEC ",'prices':{'gbs':1}}", "prices.gbs: unknown field (did you mean 'prices.gb_s'?)"},
        {MIN_SPEC ",'ps':{'addr':'a:1','token':'t'}}", "ps.addr: unknown field (did you mean 'ps.addrs'?)"},
        {"{'Model':'mlp:4-3-2','dataset':'@FM@','epochs':1}", "Model: unknown field (did you mean 'model'?)"},
        /* types */
        {MIN_SPEC ",'batch_size':'64'}", "batch_size: must be an integer in 1..65536 (got '64')"},
        {MIN_SPEC ",'batch_size':64.5}", "batch_size: must be an integer in 1..65536 (got 64.5)"},
        {MIN_SPEC ",'batch_size':0}", "batch_size: must be an integer in 1..65536 (got 0)"},
        {MIN_SPEC ",'batch_size':65537}", "batch_size: must be an integer in 1..65536 (got 65537)"},
        {"{'model':3,'dataset':'@FM@','epochs':1}", "model: must be a string (got 3)"},
        {"{'model':'mlp:4-3-2','dataset':['a'],'epochs':1}", "dataset: must be a string (got an array)"},
        {MIN_SPEC ",'name':true}", "name: must be a string (got true)"},
        {MIN_SPEC ",'name':''}", "name: must not be empty"},
        {MIN_SPEC ",'name':'a\\nb'}", "name: must not contain control characters"},
        {MIN_SPEC ",'cache_dir':5}", "cache_dir: must be a string (got 5)"},
        {MIN_SPEC ",'sync':'bsp2'}", "sync: must be one of 'bsp', 'ssp', 'asp' (got 'bsp2')"},
        {MIN_SPEC ",'sync':1}", "sync: must be one of"},
        {MIN_SPEC ",'sync':'ssp','staleness':-1}", "staleness: must be an integer in 0..1000000 (got -1)"},
        {"{'model':'mlp:4-3-2','dataset':'@FM@','epochs':0}", "epochs: must be an integer in 1..10000 (got 0)"},
        {"{'model':'mlp:4-3-2','dataset':'@FM@','epochs':10001}", "epochs: must be an integer in 1..10000"},
        {MIN_SPEC ",'target_accuracy':1.5}", "target_accuracy: must be a number in (0, 1] (got 1.5)"},
        {MIN_SPEC ",'target_accuracy':0}", "target_accuracy: must be a number in (0, 1] (got 0)"},
        {MIN_SPEC ",'max_epochs':5}", "max_epochs: only meaningful without epochs"},
        {"{'model':'mlp:4-3-2','dataset':'@FM@','target_accuracy':0.5,'max_epochs':0}", "max_epochs: must be an integer in 1..10000 (got 0)"},
        {MIN_SPEC ",'deadline_s':0}", "deadline_s: must be a number in (0, 31536000] (got 0)"},
        {MIN_SPEC ",'deadline_s':'1h'}", "deadline_s: must be a number in (0, 31536000] (got '1h')"},
        {MIN_SPEC ",'deadline_s':1e10}", "deadline_s: must be a number in (0, 31536000] (got 10000000000)"},
        {MIN_SPEC ",'budget_usd':'5'}", "budget_usd: must be a number in (0, 1000000000] (got '5')"},
        {MIN_SPEC ",'evaluate_every_epochs':0}", "evaluate_every_epochs: must be an integer in 1..10000 (got 0)"},
        {MIN_SPEC ",'seed':-1}", "seed: must be an integer >= 0 or a decimal string of one (got -1)"},
        {MIN_SPEC ",'seed':'abc'}", "seed: must be an integer >= 0"},
        {MIN_SPEC ",'seed':''}", "seed: must be an integer >= 0"},
        {MIN_SPEC ",'seed':'18446744073709551616'}", "seed: 18446744073709551616 is more than 2^64 - 1"},
        {MIN_SPEC ",'seed':1.5}", "seed: must be an integer >= 0"},
        /* optimizer */
        {MIN_SPEC ",'optimizer':'adam'}", "optimizer: must be an object (got 'adam')"},
        {MIN_SPEC ",'optimizer':{'kind':'rmsprop'}}", "optimizer.kind: must be one of 'sgd', 'momentum', 'adam', 'adagrad' (got 'rmsprop')"},
        {MIN_SPEC ",'optimizer':{'lr':-1}}", "optimizer.lr: must be a number > 0 (got -1)"},
        {MIN_SPEC ",'optimizer':{'lr':0}}", "optimizer.lr: must be a number > 0 (got 0)"},
        {MIN_SPEC ",'optimizer':{'lr':'0.1'}}", "optimizer.lr: must be a number > 0 (got '0.1')"},
        {MIN_SPEC ",'optimizer':{'lr':1e-50}}", "optimizer.lr: 1e-50 is out of float32 range"},
        {MIN_SPEC ",'optimizer':{'lr':1e300}}", "optimizer.lr: 1e+300 is out of float32 range"},
        {MIN_SPEC ",'optimizer':{'momentum':1}}", "optimizer.momentum: must be a number in [0, 1) (got 1)"},
        {MIN_SPEC ",'optimizer':{'momentum':-0.1}}", "optimizer.momentum: must be a number in [0, 1) (got -0.1)"},
        {MIN_SPEC ",'optimizer':{'nesterov':'yes'}}", "optimizer.nesterov: must be true or false (got 'yes')"},
        {MIN_SPEC ",'optimizer':{'kind':'adam','beta1':1}}", "optimizer.beta1: must be a number in [0, 1) (got 1)"},
        {MIN_SPEC ",'optimizer':{'kind':'adam','beta2':1.5}}", "optimizer.beta2: must be a number in [0, 1)"},
        {MIN_SPEC ",'optimizer':{'kind':'adam','eps':0}}", "optimizer.eps: must be a number > 0 (got 0)"},
        {MIN_SPEC ",'optimizer':{'weight_decay':-1}}", "optimizer.weight_decay: must be a number >= 0 (got -1)"},
        {MIN_SPEC ",'optimizer':{'decoupled':1}}", "optimizer.decoupled: must be true or false (got 1)"},
        {MIN_SPEC ",'optimizer':{'kind':'sgd','beta1':0.9}}", "optimizer.beta1: only meaningful with kind 'adam' (kind is 'sgd')"},
        {MIN_SPEC ",'optimizer':{'kind':'adam','momentum':0.9}}", "optimizer.momentum: only meaningful with kind 'momentum'"},
        {MIN_SPEC ",'optimizer':{'nesterov':true,'kind':'sgd'}}", "optimizer.nesterov: only meaningful with kind 'momentum'"},
        {MIN_SPEC ",'optimizer':{'eps':1e-6}}", "optimizer.eps: only meaningful with kind 'adam' or 'adagrad'"},
        {MIN_SPEC ",'optimizer':{'kind':'adagrad','decoupled':true}}", "optimizer.decoupled: only meaningful with kind 'adam'"},
        /* platform */
        {MIN_SPEC ",'platform':'local'}", "platform: must be an object (got 'local')"},
        {MIN_SPEC ",'platform':{'kind':'azure'}}", "platform.kind: must be one of 'local', 'lambda', 'openfaas', 'knative' (got 'azure')"},
        {MIN_SPEC ",'platform':{'memory_mb':'1769'}}", "platform.memory_mb: must be an integer in 128..10240 (got '1769')"},
        {MIN_SPEC ",'platform':{'time_limit_s':901}}", "platform.time_limit_s: must be an integer in 1..900 (got 901)"},
        {MIN_SPEC ",'platform':{'time_limit_s':0}}", "platform.time_limit_s: must be an integer in 1..900 (got 0)"},
        {MIN_SPEC ",'platform':{'concurrency':0}}", "platform.concurrency: must be an integer in 1..10000 (got 0)"},
        {MIN_SPEC ",'platform':{'concurrency':10001}}", "platform.concurrency: must be an integer in 1..10000"},
        {MIN_SPEC ",'platform':{'region':'US East'}}", "platform.region: `US East` must be lower-case"},
        {MIN_SPEC ",'platform':{'arch':'riscv64'}}", "platform.arch: must be one of 'x86_64', 'arm64' (got 'riscv64')"},
        {MIN_SPEC ",'platform':{'ps_nic_mbps':400001}}", "platform.ps_nic_mbps: must be an integer in 0..400000 (got 400001)"},
        {MIN_SPEC ",'platform':{'kind':'lambda','ps_nic_mbps':1000}}", "platform.ps_nic_mbps: only the local platform"},
        {MIN_SPEC ",'platform':{'ps_nic_mbps':1000},'ps':{'addrs':'a:1','token':'t'}}", "platform.ps_nic_mbps: the shards of ps.addrs run elsewhere"},
        {"{'model':'mlp:784-15000-15000-10','dataset':'@FM@','epochs':3}", "model: 236940010 parameters need at least 1808 MB in each worker"},
        {"{'model':'mlp:784-15000-15000-10','dataset':'@FM@','epochs':3,'platform':{'memory_mb':1769}}", "platform.memory_mb is 1769"},
        {MIN_SPEC ",'statistical_efficiency':1}", "statistical_efficiency: must be true or false (got 1)"},
        {MIN_SPEC ",'sync':'asp','statistical_efficiency':true}", "statistical_efficiency: needs sync \"bsp\""},
        /* prices */
        {MIN_SPEC ",'prices':{'gb_s':-1}}", "prices.gb_s: must be a number >= 0 (got -1)"},
        {MIN_SPEC ",'prices':{'request':'free'}}", "prices.request: must be a number >= 0 (got 'free')"},
        {MIN_SPEC ",'prices':{'ps_node_hour':-0.01}}", "prices.ps_node_hour: must be a number >= 0"},
        {MIN_SPEC ",'prices':3}", "prices: must be an object (got 3)"},
        /* workers and shards */
        {MIN_SPEC ",'workers':2000}", "workers: 2000 is more than platform.concurrency (1000)"},
        {MIN_SPEC ",'workers':0}", "workers: must be an integer in 1..4096 (got 0)"},
        {MIN_SPEC ",'workers':4097,'platform':{'concurrency':10000}}", "workers: must be an integer in 1..4096 (got 4097)"},
        {MIN_SPEC ",'min_workers':8}", "min_workers: 8 is more than workers (4)"},
        {MIN_SPEC ",'max_workers':2}", "max_workers: 2 is less than workers (4)"},
        {MIN_SPEC ",'max_workers':2000}", "max_workers: 2000 is more than platform.concurrency (1000)"},
        {MIN_SPEC ",'min_workers':0}", "min_workers: must be an integer in 1..4096 (got 0)"},
        {MIN_SPEC ",'shards':0}", "shards: must be an integer in 1..256 (got 0)"},
        {MIN_SPEC ",'shards':257}", "shards: must be an integer in 1..256 (got 257)"},
        {MIN_SPEC ",'shards':4,'max_shards':2}", "max_shards: 2 is less than shards (4)"},
        {MIN_SPEC ",'max_shards':300}", "max_shards: must be an integer in 1..256 (got 300)"},
        /* external shards */
        {MIN_SPEC ",'ps':{'addrs':'a:1,b:2','token':'t'},'shards':3}", "shards: 3, but ps.addrs names 2 shards"},
        {MIN_SPEC ",'ps':{'addrs':'a:1','token':'t'},'shards':2}", "shards: 2, but ps.addrs names 1 shard"},
        {MIN_SPEC ",'ps':{'addrs':'foo','token':'t'}}", "ps.addrs: `foo` is not host:port"},
        {MIN_SPEC ",'ps':{'addrs':'a:1,,b:2','token':'t'}}", "ps.addrs: empty address"},
        {MIN_SPEC ",'ps':{'addrs':'a:1,','token':'t'}}", "ps.addrs: empty address"},
        {MIN_SPEC ",'ps':{'addrs':'a:0','token':'t'}}", "ps.addrs: `a:0` is not host:port"},
        {MIN_SPEC ",'ps':{'addrs':'a:65536','token':'t'}}", "ps.addrs: `a:65536` is not host:port"},
        {MIN_SPEC ",'ps':{'addrs':'a:12x','token':'t'}}", "ps.addrs: `a:12x` is not host:port"},
        {MIN_SPEC ",'ps':{'addrs':':80','token':'t'}}", "ps.addrs: `:80` is not host:port"},
        {MIN_SPEC ",'ps':{'addrs':'[::1:80','token':'t'}}", "ps.addrs: `[::1:80` is not host:port"},
        {MIN_SPEC ",'ps':{'token':'t'}}", "ps.addrs: required"},
        {MIN_SPEC ",'ps':{'addrs':'a:1'}}", "ps.token: required"},
        {MIN_SPEC ",'ps':{'addrs':'a:1','token':''}}", "ps.token: must not be empty"},
        {MIN_SPEC ",'ps':{'addrs':'a:1','token':7}}", "ps.token: must be a string (got 7)"},
        /* datasets */
        {"{'model':'mlp:4-3-2','dataset':'@TMP@/nodata','epochs':1}", "dataset: @TMP@/nodata: no train-images-idx3-ubyte(.gz) in it"},
        {"{'model':'mlp:4-3-2','dataset':'@TMP@/nolabels','epochs':1}", "dataset: @TMP@/nolabels: no train-labels-idx1-ubyte(.gz) in it"},
        {"{'model':'mlp:4-3-2','dataset':'@TMP@/train.csv','epochs':1}", "dataset: @TMP@/train.csv: not a directory"},
        {"{'model':'mlp:4-3-2','dataset':'file:///nope','epochs':1}", "dataset: /nope: no such directory"},
        {"{'model':'mlp:4-3-2','dataset':'csv:/nope.csv','epochs':1}", "dataset: /nope.csv: no such file"},
        {"{'model':'mlp:4-3-2','dataset':'csv:@TMP@/train.csv,/nope.csv','epochs':1}", "dataset: /nope.csv: no such file"},
        {"{'model':'mlp:4-3-2','dataset':'csv:@TMP@','epochs':1}", "dataset: @TMP@: is a directory"},
        {"{'model':'mlp:4-3-2','dataset':'csv:','epochs':1}", "dataset: `csv:` must be csv:TRAIN or csv:TRAIN,TEST"},
        {"{'model':'mlp:4-3-2','dataset':'libsvm:a,b,c','epochs':1}", "dataset: `libsvm:a,b,c` must be libsvm:TRAIN or"},
        {"{'model':'mlp:4-3-2','dataset':'csv:a,','epochs':1}", "must be csv:TRAIN or csv:TRAIN,TEST"},
        {"{'model':'mlp:4-3-2','dataset':'http://','epochs':1}", "dataset: `http://`: the URL has no host"},
        {"{'model':'mlp:4-3-2','dataset':'https://h:99999/x','epochs':1}", "dataset: `https://h:99999/x`: bad port"},
        {"{'model':'mlp:4-3-2','dataset':'http://h:/x','epochs':1}", "bad port"},
        {"{'model':'mlp:4-3-2','dataset':'http://h x/','epochs':1}", "a URL must not contain spaces"},
        {"{'model':'mlp:4-3-2','dataset':'http://h?x','epochs':1}", "bad character `?` after the host"},
        {"{'model':'mlp:4-3-2','dataset':'s3://B_ad/x','epochs':1}", "the bucket must be 3-63 characters"},
        {"{'model':'mlp:4-3-2','dataset':'s3://ab','epochs':1}", "the bucket must be 3-63 characters"},
        {"{'model':'mlp:4-3-2','dataset':'s3://bucket/a b','epochs':1}", "no spaces in an S3 prefix"},
        {"{'model':'mlp:4-3-2','dataset':'ftp://h/x','epochs':1}", "dataset: unsupported scheme `ftp`"},
        /* contradictions between sections */
        {MIN_SPEC ",'platform':{'concurrency':2},'workers':3}", "workers: 3 is more than platform.concurrency (2)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        parse_fails(cases[i].spec, cases[i].want);
}
END_TEST

START_TEST(sizes_and_lengths)
{
    char err[256];
    struct coord_spec s;
    /* Empty and oversized input. */
    ck_assert_int_eq(coord_spec_parse("", 0, &s, err, sizeof err), SMLT_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "spec: empty"));
    ck_assert_int_eq(coord_spec_parse(NULL, 10, &s, err, sizeof err), SMLT_EINVAL);
    size_t big = COORD_SPEC_MAX_JSON + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    ck_assert_int_eq(coord_spec_parse(huge, big, &s, err, sizeof err), SMLT_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err, "at most 65536"));
    free(huge);
    /* len bounds the input: bytes after it are never read. */
    const char *json = expand(MIN_SPEC "}garbage");
    ck_assert_int_eq(coord_spec_parse(json, strlen(json) - 7, &s, err, sizeof err), 0);
    /* No err buffer is fine. */
    ck_assert_int_eq(coord_spec_parse("[]", 2, &s, NULL, 0), SMLT_EINVAL);
    /* A short err buffer is filled, cut and terminated. */
    char tiny[8];
    ck_assert_int_eq(coord_spec_parse("{}", 2, &s, tiny, sizeof tiny), SMLT_EINVAL);
    ck_assert_str_eq(tiny, "model: ");
    /* Strings longer than their fields. */
    char buf[4096];
    char name[200];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    snprintf(buf, sizeof buf, MIN_SPEC ",'name':'%s'}", name);
    parse_fails(buf, "name: too long (199 bytes, at most 127)");
    char model[300];
    memset(model, '1', sizeof model - 1);
    memcpy(model, "mlp:", 4);
    model[sizeof model - 1] = 0;
    snprintf(buf, sizeof buf, "{'model':'%s','dataset':'@FM@','epochs':1}", model);
    parse_fails(buf, "model: too long (299 bytes, at most 255)");
    /* 257 addresses. */
    char addrs[8192] = "";
    for (int i = 0; i < 257; i++)
        snprintf(addrs + strlen(addrs), sizeof addrs - strlen(addrs), "%sh%d:1", i ? "," : "", i);
    static char big_spec[16384];
    snprintf(big_spec, sizeof big_spec, MIN_SPEC ",'ps':{'addrs':'%s','token':'t'}}", addrs);
    parse_fails(big_spec, "ps.addrs: more than 256 addresses");
    /* A long unknown key is cut in the message. */
    char key[300];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = 0;
    snprintf(buf, sizeof buf, MIN_SPEC ",'%s':1}", key);
    parse_fails(buf, "kkk...: unknown field");
}
END_TEST

START_TEST(redacted_json)
{
    struct coord_spec s;
    parse_ok(MIN_SPEC ",'ps':{'addrs':'a:1','token':'secret','admin_token':'root'}}", &s);
    json_t *full = coord_spec_to_json(&s);
    json_t *red = coord_spec_to_json_redacted(&s);
    json_t *ps = json_object_get(full, "ps");
    ck_assert_str_eq(json_string_value(json_object_get(ps, "token")), "secret");
    ck_assert_str_eq(json_string_value(json_object_get(ps, "admin_token")), "root");
    ps = json_object_get(red, "ps");
    ck_assert_str_eq(json_string_value(json_object_get(ps, "token")), "***");
    ck_assert_str_eq(json_string_value(json_object_get(ps, "admin_token")), "***");
    ck_assert_str_eq(json_string_value(json_object_get(ps, "addrs")), "a:1");
    char *text = json_dumps(red, 0);
    ck_assert_ptr_null(strstr(text, "secret"));
    ck_assert_ptr_null(strstr(text, "root"));
    free(text);
    json_decref(full);
    json_decref(red);
    /* Without ps there is nothing to hide. */
    parse_ok(MIN_SPEC "}", &s);
    red = coord_spec_to_json_redacted(&s);
    full = coord_spec_to_json(&s);
    ck_assert(json_equal(red, full));
    json_decref(full);
    json_decref(red);
}
END_TEST

START_TEST(enum_names)
{
    ck_assert_str_eq(coord_spec_sync_name(SMLT_SYNC_ASP), "asp");
    ck_assert_str_eq(coord_spec_sync_name(7), "?");
    ck_assert_str_eq(coord_spec_optim_name(SMLT_OPT_ADAGRAD), "adagrad");
    ck_assert_str_eq(coord_spec_optim_name(-1), "?");
    ck_assert_str_eq(coord_spec_platform_name(COORD_PLATFORM_KNATIVE), "knative");
    ck_assert_str_eq(coord_spec_arch_name(COORD_ARCH_ARM64), "arm64");
    ck_assert_str_eq(coord_spec_scale_name(2), "standard");
    ck_assert_str_eq(coord_spec_scale_name(3), "?");
}
END_TEST

/* checkpoint: on by default (every 30 s, 3 kept), every_steps or every_s, false turns it off. */
START_TEST(checkpoint)
{
    struct coord_spec s;
    parse_ok(MIN_SPEC "}", &s);
    ck_assert(s.checkpoint.every_s == 30 && s.checkpoint.every_steps == 0 && s.checkpoint.keep == 3);
    round_trip(&s);
    parse_ok(MIN_SPEC ",'checkpoint':{'every_steps':50,'keep':5}}", &s);
    ck_assert(s.checkpoint.every_steps == 50 && s.checkpoint.every_s == 0 && s.checkpoint.keep == 5);
    round_trip(&s);
    parse_ok(MIN_SPEC ",'checkpoint':{'every_s':2.5}}", &s);
    ck_assert(s.checkpoint.every_s == 2.5 && s.checkpoint.keep == 3);
    round_trip(&s);
    parse_ok(MIN_SPEC ",'checkpoint':false}", &s);
    ck_assert(s.checkpoint.every_s == 0 && s.checkpoint.every_steps == 0);
    round_trip(&s);
    parse_ok(MIN_SPEC ",'checkpoint':{'every_steps':0}}", &s);
    ck_assert(s.checkpoint.every_s == 0 && s.checkpoint.every_steps == 0);
    parse_fails(MIN_SPEC ",'checkpoint':{'every_steps':5,'every_s':3}}",
                "checkpoint: give every_steps or every_s, not both");
    parse_fails(MIN_SPEC ",'checkpoint':{'every_s':0}}", "checkpoint.every_s: must be");
    parse_fails(MIN_SPEC ",'checkpoint':{'keep':0}}", "checkpoint.keep: must be");
    parse_fails(MIN_SPEC ",'checkpoint':{'every':5}}", "checkpoint.every");
    parse_fails(MIN_SPEC ",'checkpoint':true}", "checkpoint: must be an object");
}
END_TEST

/* ps.replicas: 2 for local shards (the shard count is pinned), refused with external ones. */
START_TEST(replicas)
{
    struct coord_spec s;
    parse_ok(MIN_SPEC "}", &s);
    ck_assert_uint_eq(s.ps.replicas, 1);
    parse_ok(MIN_SPEC ",'shards':3,'ps':{'replicas':2}}", &s);
    ck_assert_uint_eq(s.ps.replicas, 2);
    ck_assert_uint_eq(s.max_shards, 3);
    ck_assert_int_eq(s.ps.addrs[0], 0);
    round_trip(&s);
    parse_fails(MIN_SPEC ",'ps':{'replicas':3}}", "ps.replicas: must be");
    parse_fails(MIN_SPEC ",'shards':2,'max_shards':4,'ps':{'replicas':2}}",
                "max_shards: must equal shards with ps.replicas 2");
    parse_fails(MIN_SPEC ",'ps':{'replicas':2,'addrs':'127.0.0.1:5','token':'t'}}",
                "ps.replicas: 2 needs local shards");
}
END_TEST

START_TEST(dataset_options)
{
    /* Defaults: today's loader (label in column 0, header detected, no scaling). */
    struct coord_spec s;
    parse_ok("{'model':'mlp:4-3-2','dataset':'csv:@TMP@/train.csv','epochs':1}", &s);
    ck_assert_int_eq(s.dataset_options.label_column, 0);
    ck_assert_int_eq(s.dataset_options.header, 0);
    ck_assert_int_eq(s.dataset_options.scale, 0);
    json_t *j = coord_spec_to_json(&s);
    json_t *d = json_object_get(j, "dataset_options");
    ck_assert_int_eq(json_integer_value(json_object_get(d, "label_column")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(d, "header")), "auto");
    ck_assert_str_eq(json_string_value(json_object_get(d, "scale")), "none");
    json_decref(j);
    round_trip(&s);
    /* Given: each value, and the canonical form keeps it. */
    parse_ok("{'model':'mlp:4-3-2','dataset':'csv:@TMP@/train.csv,@TMP@/test.csv','epochs':1,"
             "'dataset_options':{'label_column':'last','header':true,'scale':'standard'}}", &s);
    ck_assert_int_eq(s.dataset_options.label_column, -1);
    ck_assert_int_eq(s.dataset_options.header, 1);
    ck_assert_int_eq(s.dataset_options.scale, 2);
    j = coord_spec_to_json(&s);
    d = json_object_get(j, "dataset_options");
    ck_assert_str_eq(json_string_value(json_object_get(d, "label_column")), "last");
    ck_assert(json_is_true(json_object_get(d, "header")));
    ck_assert_str_eq(json_string_value(json_object_get(d, "scale")), "standard");
    json_decref(j);
    round_trip(&s);
    parse_ok("{'model':'mlp:4-3-2','dataset':'csv:@TMP@/train.csv','epochs':1,"
             "'dataset_options':{'label_column':7,'header':false,'scale':'minmax'}}", &s);
    ck_assert_int_eq(s.dataset_options.label_column, 7);
    ck_assert_int_eq(s.dataset_options.header, 2);
    ck_assert_int_eq(s.dataset_options.scale, 1);
    round_trip(&s);
    parse_ok("{'model':'mlp:4-3-2','dataset':'csv:@TMP@/train.csv','epochs':1,"
             "'dataset_options':{'header':'auto','label_column':null}}", &s);
    ck_assert_int_eq(s.dataset_options.header, 0);
    ck_assert_int_eq(s.dataset_options.label_column, 0);
    /* Scaling applies to any dataset; the CSV options are left out of other kinds. */
    parse_ok(MIN_SPEC ",'dataset_options':{'scale':'standard'}}", &s);
    ck_assert_int_eq(s.dataset_options.scale, 2);
    j = coord_spec_to_json(&s);
    d = json_object_get(j, "dataset_options");
    ck_assert_ptr_null(json_object_get(d, "label_column"));
    ck_assert_ptr_null(json_object_get(d, "header"));
    json_decref(j);
    round_trip(&s);
    parse_ok("{'model':'mlp:4-3-2','dataset':'libsvm:@TMP@/train.csv','epochs':1,"
             "'dataset_options':{'scale':'minmax'}}", &s);
    round_trip(&s);

    /* Refusals name the field. */
#define CSV_SPEC "{'model':'mlp:4-3-2','dataset':'csv:@TMP@/train.csv','epochs':1,"
    static const struct {
        const char *spec, *want;
    } bad[] = {
        {CSV_SPEC "'dataset_options':{'label_column':-1}}",
         "dataset_options.label_column: must be an integer in 0..16777216 or 'last' (got -1)"},
        {CSV_SPEC "'dataset_options':{'label_column':16777217}}",
         "dataset_options.label_column: must be an integer"},
        {CSV_SPEC "'dataset_options':{'label_column':'first'}}",
         "dataset_options.label_column: must be an integer in 0..16777216 or 'last' (got "
         "'first')"},
        {CSV_SPEC "'dataset_options':{'label_column':1.5}}",
         "dataset_options.label_column: must be"},
        {CSV_SPEC "'dataset_options':{'header':'true'}}",
         "dataset_options.header: must be 'auto', true or false (got 'true')"},
        {CSV_SPEC "'dataset_options':{'header':1}}", "dataset_options.header: must be"},
        {CSV_SPEC "'dataset_options':{'scale':'max'}}",
         "dataset_options.scale: must be one of 'none', 'minmax', 'standard' (got 'max')"},
        {CSV_SPEC "'dataset_options':{'scale':true}}", "dataset_options.scale: must be one of"},
        {CSV_SPEC "'dataset_options':{'label_colum':1}}",
         "dataset_options.label_colum: unknown field (did you mean "
         "'dataset_options.label_column'?)"},
        {CSV_SPEC "'dataset_options':'last'}", "dataset_options: must be an object"},
        {CSV_SPEC "'label_column':'last'}",
         "label_column: unknown field (did you mean 'dataset_options.label_column'?)"},
        {MIN_SPEC ",'dataset_options':{'label_column':3}}",
         "dataset_options.label_column: only meaningful with a csv: dataset"},
        {"{'model':'mlp:4-3-2','dataset':'libsvm:@TMP@/train.csv','epochs':1,"
         "'dataset_options':{'header':false}}",
         "dataset_options.header: only meaningful with a csv: dataset"},
    };
#undef CSV_SPEC
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        parse_fails(bad[i].spec, bad[i].want);
}
END_TEST

/* A torch job: "python:FILE.py" with its text as model_source; the dataset is the file's to
 * read; the canonical form leaves the text out (the coordinator keeps it as the job's file). */
START_TEST(python_models)
{
    struct coord_spec s;
    char err[512] = "";
    const char *ok = expand("{'model':'python:cnn.py','model_source':'def model(): pass','dataset':"
                            "'anything the file reads','epochs':2}");
    ck_assert_msg(coord_spec_parse(ok, strlen(ok), &s, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(s.model, "python:cnn.py");
    ck_assert_uint_eq(s.model_params, 0);
    ck_assert(coord_spec_is_python(s.model));
    ck_assert(!coord_spec_is_python("mlp:784-10"));
    round_trip(&s);
    json_t *j = coord_spec_to_json(&s);
    ck_assert_ptr_null(json_object_get(j, "model_source"));
    json_decref(j);
    parse_fails("{'model':'python:cnn','dataset':'x','epochs':1}",
                "model: \"python:cnn\": a torch job names its training file as python:FILE.py");
    parse_fails("{'model':'python:dir/.py','dataset':'x','epochs':1}", "python:FILE.py");
    parse_fails("{'model':'python:a.py','model_source':3,'dataset':'x','epochs':1}",
                "model_source: must be the training file");
    parse_fails("{'model':'python:a.py','model_source':'','dataset':'x','epochs':1}",
                "model_source: empty");
    parse_fails(MIN_SPEC ",'model_source':'x = 1'}", "model_source: only with a \"python:FILE.py\" model");
    /* too long: 48 KiB + 1 of text */
    size_t n = COORD_SPEC_SOURCE_MAX + 1;
    char *big = malloc(n + 200);
    int k = snprintf(big, 200, "{\"model\":\"python:a.py\",\"dataset\":\"x\",\"epochs\":1,"
                               "\"model_source\":\"");
    memset(big + k, 'x', n);
    strcpy(big + k + n, "\"}");
    ck_assert_int_eq(coord_spec_parse(big, strlen(big), &s, err, sizeof err), SMLT_EINVAL);
    ck_assert_msg(strstr(err, "model_source: 49153 bytes, at most 49152"), "%s", err);
    free(big);
}
END_TEST

static Suite *coord_spec_suite(void)
{
    Suite *s = suite_create("coord_spec");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, everything_given);
    tcase_add_test(tc, valid_variants);
    tcase_add_test(tc, derived_values);
    tcase_add_test(tc, errors_name_the_field);
    tcase_add_test(tc, sizes_and_lengths);
    tcase_add_test(tc, redacted_json);
    tcase_add_test(tc, enum_names);
    tcase_add_test(tc, dataset_options);
    tcase_add_test(tc, checkpoint);
    tcase_add_test(tc, replicas);
    tcase_add_test(tc, python_models);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(coord_spec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
