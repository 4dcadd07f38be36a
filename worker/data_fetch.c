/* data_fetch.c: dataset files from a local directory, an HTTP(S) URL prefix or an S3 prefix
 * (s3://bucket/prefix: SigV4-signed GETs, credentials as the AWS SDKs find them: smlt_aws.h),
 * with an on-disk cache written atomically (temporary file + fsync + rename).
 *
 * Used by the worker's loading phase and by smlt-bench; the parsing is data_load.c's job.
 * libcurl's easy interface does the transfer, restricted to http and https (also across
 * redirects), with connect and low-speed timeouts and a size cap. Gzip IDX files are unpacked
 * once into the cache (data_fetch_unpacked()), so a cold worker reads plain bytes instead of
 * inflating tens of megabytes on every start. */
#include "data_fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data_load.h"
#include "data_set.h"
#include "smlt_aws.h"
#include "smlt_error.h"
#include "smlt_log.h"
#include "smlt_util.h"

#define FETCH_CONNECT_TIMEOUT_S 15L
#define FETCH_LOW_SPEED_BYTES 1024L
#define FETCH_LOW_SPEED_TIME_S 60L

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static int fetch_curl_rc;
static atomic_uint_fast64_t fetch_downloads;

static void fetch_init(void)
{
    fetch_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

uint64_t data_fetch_downloads(void)
{
    return (uint64_t)atomic_load(&fetch_downloads);
}

/* Length of s without trailing slashes (but at least 1 when s is not empty). */
static size_t trimmed_len(const char *s)
{
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/')
        n--;
    return n;
}

static int is_url(const char *s)
{
    return !strncmp(s, "http://", 7) || !strncmp(s, "https://", 8) || !strncmp(s, "s3://", 5);
}

/* Where libcurl finds the CAs it verifies HTTPS servers with: the file CURL_CA_BUNDLE or
 * SSL_CERT_FILE names, else libcurl's built-in default (Debian's bundle). libcurl reads neither
 * variable itself (the curl program does); the Lambda zip (deploy/lambda/package.sh) carries
 * Debian's bundle and points both at it, because the hosts' CAs are not where Debian's libcurl
 * looks. */
static void set_ca(CURL *h)
{
    const char *ca = getenv("CURL_CA_BUNDLE");
    if (!ca || !*ca)
        ca = getenv("SSL_CERT_FILE");
    if (ca && *ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
}

static size_t s3_sink(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct { char *p; size_t n; } *k = arg;
    size_t len = size * nmemb;
    if (k->n + len >= 65536)
        return 0;
    memcpy(k->p + k->n, ptr, len);
    k->n += len;
    return len;
}

/* How to sign an S3 GET: the SigV4 scope and the key pair, found once per call. */
struct s3_sign {
    char sigv4[96];
    struct smlt_aws_creds creds;
    char tok_hdr[2100];
};

/* Fetches the container endpoint's credentials with a plain GET (the worker may block). */
static int s3_container_creds(struct smlt_aws_creds *c, char *err, size_t errlen)
{
    char url[512], auth[1024], hdr[1100];
    if (!smlt_aws_container_endpoint(url, sizeof url, auth, sizeof auth)) {
        smlt_set_err(err, errlen, "s3: no AWS credentials: set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, a profile in ~/.aws/credentials, or "
                                  "the container credentials endpoint");
        return SMLT_EINVAL;
    }
    CURL *h = curl_easy_init();
    char body[65536];
    struct { char *p; size_t n; } sink = {body, 0};
    struct curl_slist *hl = NULL;
    if (auth[0]) {
        snprintf(hdr, sizeof hdr, "Authorization: %s", auth);
        hl = curl_slist_append(NULL, hdr);
    }
    long status = 0;
    CURLcode cc = CURLE_FAILED_INIT;
    if (h) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        set_ca(h);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s3_sink);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
        cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
    }
    curl_slist_free_all(hl);
    body[sink.n < sizeof body ? sink.n : sizeof body - 1] = '\0';
    char perr[256];
    if (cc != CURLE_OK || status != 200 || smlt_aws_parse_container(body, c, perr, sizeof perr)) {
        smlt_set_err(err, errlen, "s3: container credentials endpoint %s: %s", url,
                     cc != CURLE_OK ? curl_easy_strerror(cc) : status != 200 ? "HTTP error" : perr);
        return SMLT_EIO;
    }
    return 0;
}

/* The https URL of s3://bucket/prefix/name: path style under AWS_ENDPOINT_URL_S3 (or
 * AWS_ENDPOINT_URL) for S3-compatible stores, else the bucket's virtual host. */
static int s3_url(const char *source, const char *name, const char *region, char *url, size_t len)
{
    const char *bucket = source + 5, *slash = strchr(bucket, '/');
    int blen = slash ? (int)(slash - bucket) : (int)strlen(bucket);
    const char *prefix = slash ? slash + 1 : "";
    int plen = (int)trimmed_len(prefix);
    if (!prefix[0])
        plen = 0;
    const char *ep = getenv("AWS_ENDPOINT_URL_S3");
    if (!ep || !*ep)
        ep = getenv("AWS_ENDPOINT_URL");
    int n;
    if (ep && *ep)
        n = snprintf(url, len, "%.*s/%.*s/%.*s%s%s", (int)trimmed_len(ep), ep, blen, bucket, plen,
                     prefix, plen ? "/" : "", name);
    else
        n = snprintf(url, len, "https://%.*s.s3.%s.amazonaws.com/%.*s%s%s", blen, bucket, region,
                     plen, prefix, plen ? "/" : "", name);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

static int s3_sign_init(struct s3_sign *sg, char *region, size_t rlen, char *err, size_t errlen)
{
    smlt_aws_region(NULL, region, rlen);
    snprintf(sg->sigv4, sizeof sg->sigv4, "aws:amz:%s:s3", region);
    if (smlt_aws_static_creds(&sg->creds) != 0) {
        int rc = s3_container_creds(&sg->creds, err, errlen);
        if (rc)
            return rc;
    }
    snprintf(sg->tok_hdr, sizeof sg->tok_hdr, "x-amz-security-token: %s", sg->creds.session_token);
    return 0;
}


static int name_ok(const char *name)
{
    return name && *name && name[0] != '.' && !strchr(name, '/') && strlen(name) < 256;
}

/* FNV-1a, 64 bits: a stable, dependency-free name for a URL prefix. */
static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int data_fetch_cache_dir(const char *source, const char *cache_dir, char *out, size_t outlen)
{
    if (!source || !is_url(source) || !out)
        return SMLT_EINVAL;
    const char *root = cache_dir && *cache_dir ? cache_dir : getenv("SMLT_CACHE_DIR");
    if (!root || !*root)
        root = "/tmp/smlt-cache";
    int n = snprintf(out, outlen, "%.*s/%016llx", (int)trimmed_len(root), root,
                     (unsigned long long)fnv1a(source, trimmed_len(source)));
    return n < 0 || (size_t)n >= outlen ? SMLT_EINVAL : 0;
}

/* mkdir -p with mode 0755. Returns 0 or -1 with errno. */
static int mkdirs(const char *path)
{
    char tmp[DATA_FETCH_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(tmp, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

struct sink {
    FILE *f;
    uint64_t bytes;
    int too_big;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t len = size * nmemb;
    if (s->bytes + len > DATA_FETCH_MAX_BYTES) {
        s->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (fwrite(ptr, 1, len, s->f) != len)
        return 0;
    s->bytes += len;
    return len;
}

/* Downloads url to dst through a temporary file in the same directory; sg: sign it (S3). */
static int download(const char *url, const struct s3_sign *sg, const char *dst, char *err,
                    size_t errlen)
{
    struct curl_slist *hl = NULL;
    char tmp[DATA_FETCH_PATH_MAX];
    int rc = SMLT_EIO;
    CURL *c = NULL;
    struct sink s = {0};
    char cerr[CURL_ERROR_SIZE] = "";
    int fd = smlt_atomic_open(dst, 0644, tmp, sizeof tmp);
    if (fd < 0 && errno == ENAMETOOLONG) {
        smlt_set_err(err, errlen, "%s: path too long", dst);
        return SMLT_EINVAL;
    }
    if (fd < 0 || !(s.f = fdopen(fd, "wb"))) {
        smlt_set_err(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return SMLT_EIO;
    }
    if (!(c = curl_easy_init())) {
        smlt_set_err(err, errlen, "%s: curl_easy_init failed", url);
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    set_ca(c);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, FETCH_CONNECT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, FETCH_LOW_SPEED_BYTES);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, FETCH_LOW_SPEED_TIME_S);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)DATA_FETCH_MAX_BYTES);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "smlt-worker");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    if (sg) {
        /* S3 wants the payload's hash in a header (an empty body's for a GET), signed. */
        hl = curl_slist_append(hl, "x-amz-content-sha256: "
                                   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        if (sg->creds.session_token[0])
            hl = curl_slist_append(hl, sg->tok_hdr);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sg->sigv4);
        curl_easy_setopt(c, CURLOPT_USERNAME, sg->creds.access_key);
        curl_easy_setopt(c, CURLOPT_PASSWORD, sg->creds.secret_key);
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* a signature is for one host */
    }
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK) {
        if (s.too_big) {
            rc = SMLT_ETOOBIG;
            smlt_set_err(err, errlen, "%s: larger than %llu bytes", url,
                         (unsigned long long)DATA_FETCH_MAX_BYTES);
        } else if (cc == CURLE_HTTP_RETURNED_ERROR) {
            rc = status == 404 || status == 410 ? SMLT_ENOTFOUND : SMLT_EIO;
            smlt_set_err(err, errlen, "%s: HTTP %ld", url, status);
        } else {
            smlt_set_err(err, errlen, "%s: download failed: %s", url,
                         cerr[0] ? cerr : curl_easy_strerror(cc));
        }
        goto out;
    }
    curl_off_t clen = -1;
    if (curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen) == CURLE_OK &&
        clen >= 0 && (uint64_t)clen != s.bytes) {
        smlt_set_err(err, errlen, "%s: got %llu bytes, Content-Length said %lld", url,
                     (unsigned long long)s.bytes, (long long)clen);
        goto out;
    }
    if (fflush(s.f) != 0 || fsync(fileno(s.f)) != 0) {
        smlt_set_err(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (fclose(s.f) != 0) {
        s.f = NULL;
        smlt_set_err(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
        goto out;
    }
    s.f = NULL;
    if (smlt_atomic_rename(tmp, dst) < 0) {
        smlt_set_err(err, errlen, "%s: rename to %s failed: %s", tmp, dst, strerror(errno));
        goto out;
    }
    atomic_fetch_add(&fetch_downloads, 1);
    log_info("fetched %s (%llu bytes) into %s", url, (unsigned long long)s.bytes, dst);
    rc = 0;
out:
    if (c)
        curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    if (s.f)
        fclose(s.f);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int data_fetch_file(const char *source, const char *name, const char *cache_dir, char *out,
                    size_t outlen, char *err, size_t errlen)
{
    struct stat st;
    if (!source || !*source || !out || !outlen) {
        smlt_set_err(err, errlen, "data_fetch_file: missing argument");
        return SMLT_EINVAL;
    }
    if (!name_ok(name)) {
        smlt_set_err(err, errlen, "bad dataset file name '%s'", name ? name : "");
        return SMLT_EINVAL;
    }
    if (!strncmp(source, "file://", 7))
        source += 7;
    if (!is_url(source)) {
        if (strstr(source, "://")) {
            smlt_set_err(err, errlen,
                         "%s: unsupported scheme (expected a directory, http:// or "
                         "https://)",
                         source);
            return SMLT_EINVAL;
        }
        int n = snprintf(out, outlen, "%.*s/%s", (int)trimmed_len(source), source, name);
        if (n < 0 || (size_t)n >= outlen) {
            smlt_set_err(err, errlen, "%s/%s: path too long", source, name);
            return SMLT_EINVAL;
        }
        if (stat(out, &st) < 0) {
            int e = errno;
            smlt_set_err(err, errlen, "%s: %s", out, strerror(e));
            return e == ENOENT ? SMLT_ENOTFOUND : SMLT_EIO;
        }
        if (!S_ISREG(st.st_mode)) {
            smlt_set_err(err, errlen, "%s: not a regular file", out);
            return SMLT_EIO;
        }
        return 0;
    }
    char dir[DATA_FETCH_PATH_MAX], url[DATA_FETCH_PATH_MAX], region[64] = "";
    if (data_fetch_cache_dir(source, cache_dir, dir, sizeof dir) < 0) {
        smlt_set_err(err, errlen, "%s: cache path too long", source);
        return SMLT_EINVAL;
    }
    int s3 = !strncmp(source, "s3://", 5);
    if (s3)
        smlt_aws_region(NULL, region, sizeof region);
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    int u = s3 ? (s3_url(source, name, region, url, sizeof url) == 0 ? 1 : -1)
               : snprintf(url, sizeof url, "%.*s/%s", (int)trimmed_len(source), source, name);
    if (n < 0 || (size_t)n >= outlen || u < 0 || (size_t)u >= sizeof url) {
        smlt_set_err(err, errlen, "%s/%s: path too long", source, name);
        return SMLT_EINVAL;
    }
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
        log_debug("cache hit %s for %s", out, url);
        return 0;
    }
    if (mkdirs(dir) < 0) {
        smlt_set_err(err, errlen, "%s: cannot create cache directory: %s", dir, strerror(errno));
        return SMLT_EIO;
    }
    pthread_once(&fetch_once, fetch_init);
    if (fetch_curl_rc < 0) {
        smlt_set_err(err, errlen, "curl_global_init failed");
        return SMLT_EIO;
    }
    if (!s3)
        return download(url, NULL, out, err, errlen);
    struct s3_sign *sg = calloc(1, sizeof *sg);
    int rc = sg ? s3_sign_init(sg, region, sizeof region, err, errlen) : SMLT_ENOMEM;
    if (rc == 0)
        rc = download(url, sg, out, err, errlen);
    free(sg);
    return rc;
}

/* Inflates the gzip file src into dst through a temporary file renamed into place. Returns 0
 * or -1 (dst untouched). */
static int unpack_to(const char *src, const char *dst, uint64_t *bytes)
{
    char tmp[DATA_FETCH_PATH_MAX];
    enum { CHUNK = 1 << 17 };
    char *buf = malloc(CHUNK);
    gzFile in = buf ? gzopen(src, "rb") : NULL;
    int fd = in ? smlt_atomic_open(dst, 0644, tmp, sizeof tmp) : -1;
    FILE *out = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!out) {
        if (fd >= 0)
            smlt_atomic_abort(fd, tmp);
        if (in)
            gzclose(in);
        free(buf);
        return -1;
    }
    gzbuffer(in, CHUNK);
    int r, bad = 0;
    *bytes = 0;
    while ((r = gzread(in, buf, CHUNK)) > 0) {
        if (fwrite(buf, 1, (size_t)r, out) != (size_t)r) {
            bad = 1;
            break;
        }
        *bytes += (uint64_t)r;
        if (*bytes > DATA_FETCH_MAX_BYTES) {
            bad = 1;
            break;
        }
    }
    int zerr = Z_OK;
    gzerror(in, &zerr);
    /* A truncated stream reads as a short file with Z_BUF_ERROR: not a good copy. */
    bad |= r < 0 || (zerr != Z_OK && zerr != Z_STREAM_END) || !gzeof(in);
    gzclose(in);
    free(buf);
    bad |= fclose(out) != 0;
    if (bad || smlt_atomic_rename(tmp, dst) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int data_fetch_unpacked(const char *path, const char *cache_dir, char *out, size_t outlen)
{
    size_t len = path ? strlen(path) : 0;
    struct stat st;
    if (!out || !outlen || len < 4 || strcmp(path + len - 3, ".gz") || stat(path, &st) < 0 ||
        !S_ISREG(st.st_mode))
        goto keep;
    const char *root = cache_dir && *cache_dir ? cache_dir : getenv("SMLT_CACHE_DIR");
    if (!root || !*root)
        root = "/tmp/smlt-cache";
    /* The key names the file and its version: a changed source gets a new copy. */
    char id[DATA_FETCH_PATH_MAX + 64], dir[DATA_FETCH_PATH_MAX];
    int k = snprintf(id, sizeof id, "%s|%lld|%lld.%09ld", path, (long long)st.st_size,
                     (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (k < 0 || (size_t)k >= sizeof id)
        goto keep;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    k = snprintf(dir, sizeof dir, "%.*s/unpacked-%016llx", (int)trimmed_len(root), root,
                 (unsigned long long)fnv1a(id, (size_t)k));
    if (k < 0 || (size_t)k >= sizeof dir)
        goto keep;
    k = snprintf(out, outlen, "%s/%.*s", dir, (int)(strlen(base) - 3), base);
    if (k < 0 || (size_t)k >= outlen)
        goto keep;
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
        return 1;
    if (mkdirs(dir) < 0)
        goto keep;
    /* One process inflates, the others (cold workers starting together) wait for its copy:
     * on a small machine that is several times faster than each inflating its own. */
    char lock[DATA_FETCH_PATH_MAX + 8];
    snprintf(lock, sizeof lock, "%s/.lock", dir);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd >= 0)
        while (flock(lfd, LOCK_EX) < 0 && errno == EINTR)
            ;
    int made = 0;
    uint64_t bytes = 0;
    if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
        made = 1;
    else if (unpack_to(path, out, &bytes) == 0)
        made = 2;
    if (lfd >= 0)
        close(lfd); /* releases the lock */
    if (!made) {
        log_debug("could not unpack %s into %s; reading it compressed", path, dir);
        goto keep;
    }
    if (made == 2)
        log_debug("unpacked %s into %s (%llu bytes)", path, out, (unsigned long long)bytes);
    return made;
keep:
    if (out && outlen && path && snprintf(out, outlen, "%s", path) >= (int)outlen)
        return -1;
    return 0;
}

int data_fetch_idx(const char *source, const char *split, const char *cache_dir,
                   const struct data_load_opts *o, struct data_set **out, char *err,
                   size_t errlen)
{
    char names[2][128], paths[2][DATA_FETCH_PATH_MAX];
    static const char *kinds[2] = {"images-idx3", "labels-idx1"};
    if (!split || !name_ok(split) || strlen(split) > 64 || !out) {
        smlt_set_err(err, errlen, "bad dataset split '%s'", split ? split : "");
        return SMLT_EINVAL;
    }
    for (int k = 0; k < 2; k++) {
        snprintf(names[k], sizeof names[k], "%s-%s-ubyte.gz", split, kinds[k]);
        int rc = data_fetch_file(source, names[k], cache_dir, paths[k], sizeof paths[k], err,
                                 errlen);
        if (rc == SMLT_ENOTFOUND) {
            names[k][strlen(names[k]) - 3] = '\0'; /* the uncompressed name */
            char err2[512];
            rc = data_fetch_file(source, names[k], cache_dir, paths[k], sizeof paths[k], err2,
                                 sizeof err2);
            if (rc != SMLT_ENOTFOUND && rc < 0)
                smlt_set_err(err, errlen, "%s", err2);
        }
        if (rc < 0)
            return rc;
        char plain[DATA_FETCH_PATH_MAX];
        if (data_fetch_unpacked(paths[k], cache_dir, plain, sizeof plain) > 0)
            snprintf(paths[k], sizeof paths[k], "%s", plain);
    }
    return data_load_idx(paths[0], paths[1], o, out, err, errlen);
}
