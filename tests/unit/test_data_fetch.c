/* test_data_fetch.c: dataset files from a local directory and over HTTP with the on-disk
 * cache. The HTTP tests fork a tiny HTTP/1.0 file server on 127.0.0.1, port 0 (the kernel
 * picks a free one), which logs every request path to a file; each test stops its server by
 * pid, and the server kills itself after 60 s in any case. Checked: a cold fetch downloads,
 * a warm one does not (not even with the server gone), the uncompressed-name fallback, 404,
 * a body shorter than its Content-Length, a refused connection, and that a failed download
 * leaves nothing in the cache. Unpacked copies: made once, found again, remade when the
 * source changes, never made from a truncated stream (whose error the parser then reports).
 * HTTPS: against `openssl s_server` with a certificate of the test's own, trusted only through
 * the CA bundle the environment names. */
#include <arpa/inet.h>
#include <check.h>
#include <jansson.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data_fetch.h"
#include "data_load.h"
#include "data_set.h"
#include "smlt_error.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smlt-test-data-fetch.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    /* Unpacked copies of local gzip files land under the test's directory. */
    setenv("SMLT_CACHE_DIR", tmpdir, 1);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

struct srv {
    pid_t pid;
    int port;
    char root[256];
    char log[300];
};

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0)
            return;
        p += w;
        len -= (size_t)w;
    }
}

/* Serves one request on c: GET /<prefix>/<name> maps to root/<name>. A name starting with
 * "short-" is sent with a Content-Length 100 bytes larger than the body. */
static void serve_one(const struct srv *s, int c)
{
    char req[8192];
    size_t len = 0;
    while (len < sizeof req - 1) {
        ssize_t r = read(c, req + len, sizeof req - 1 - len);
        if (r <= 0)
            return;
        len += (size_t)r;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    char path[1024];
    if (sscanf(req, "GET %1023s", path) != 1)
        return;
    int lf = open(s->log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (lf >= 0) {
        write_all(lf, path, strlen(path));
        write_all(lf, "\n", 1);
        close(lf);
    }
    char head[400]; /* the whole request head of the last request, for the S3 test */
    snprintf(head, sizeof head, "%s.head", s->log);
    lf = open(head, O_WRONLY | O_TRUNC | O_CREAT, 0644);
    if (lf >= 0) {
        write_all(lf, req, strlen(req));
        close(lf);
    }
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    char file[1400];
    snprintf(file, sizeof file, "%s/%s", s->root, name);
    int fd = strstr(name, "..") ? -1 : open(file, O_RDONLY);
    char hdr[256];
    if (fd < 0) {
        const char *nf = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        write_all(c, nf, strlen(nf));
        return;
    }
    struct stat st;
    fstat(fd, &st);
    long long clen = (long long)st.st_size + (strncmp(name, "short-", 6) ? 0 : 100);
    int n = snprintf(hdr, sizeof hdr, "HTTP/1.0 200 OK\r\nContent-Length: %lld\r\n"
                     "Connection: close\r\n\r\n", clen);
    write_all(c, hdr, (size_t)n);
    char buf[65536];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        write_all(c, buf, (size_t)r);
    close(fd);
}

static void srv_start(struct srv *s, const char *root)
{
    memset(s, 0, sizeof *s);
    snprintf(s->root, sizeof s->root, "%s", root);
    snprintf(s->log, sizeof s->log, "%s/requests.log", tmpdir);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    socklen_t al = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        /* Check's handlers (inherited through the test process) would turn our SIGTERM into
         * a kill of the whole test process group: restore the defaults. */
        signal(SIGTERM, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        alarm(60); /* watchdog: never outlive a stuck test */
        for (;;) {
            int c = accept(fd, NULL, NULL);
            if (c < 0) {
                if (errno == EINTR)
                    continue;
                _exit(1);
            }
            serve_one(s, c);
            close(c);
        }
    }
    close(fd);
}

static void srv_stop(struct srv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static int srv_requests(const struct srv *s)
{
    FILE *f = fopen(s->log, "r");
    if (!f)
        return 0;
    int n = 0, ch;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

/* Number of entries (other than . and ..) in dir, or -1 when it does not exist. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

START_TEST(local_directory)
{
    char path[DATA_FETCH_PATH_MAX], err[512];
    ck_assert_int_eq(data_fetch_file(FMNIST_DIR "/", "t10k-labels-idx1-ubyte.gz", NULL, path,
                                     sizeof path, err, sizeof err), 0);
    ck_assert_str_eq(path, FMNIST_DIR "/t10k-labels-idx1-ubyte.gz");
    ck_assert_int_eq(data_fetch_file("file://" FMNIST_DIR, "t10k-labels-idx1-ubyte.gz", NULL,
                                     path, sizeof path, err, sizeof err), 0);
    ck_assert_int_eq(data_fetch_file(FMNIST_DIR, "nope.gz", NULL, path, sizeof path, err,
                                     sizeof err), SMLT_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "nope.gz"));
    ck_assert_int_eq(data_fetch_file(FMNIST_DIR, "../etc/passwd", NULL, path, sizeof path, err,
                                     sizeof err), SMLT_EINVAL);
    ck_assert_int_eq(data_fetch_file(FMNIST_DIR, ".hidden", NULL, path, sizeof path, err,
                                     sizeof err), SMLT_EINVAL);
    ck_assert_int_eq(data_fetch_file("ftp://example/x", "a", NULL, path, sizeof path, err,
                                     sizeof err), SMLT_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "unsupported scheme"));
    ck_assert_int_eq(data_fetch_file(FMNIST_DIR, "t10k-labels-idx1-ubyte.gz", NULL, path, 10,
                                     err, sizeof err), SMLT_EINVAL);
    struct data_set *ds = NULL;
    ck_assert_msg(data_fetch_idx(FMNIST_DIR, "t10k", NULL, NULL, &ds, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(data_set_size(ds), 10000);
    data_set_free(ds);
    ck_assert_int_eq(data_fetch_idx(FMNIST_DIR, "valid", NULL, NULL, &ds, err, sizeof err),
                     SMLT_ENOTFOUND);
    ck_assert_int_eq(data_fetch_idx(FMNIST_DIR, "../x", NULL, NULL, &ds, err, sizeof err),
                     SMLT_EINVAL);
}
END_TEST

START_TEST(http_cold_then_warm)
{
    struct srv s;
    char url[128], cache[300], dir[DATA_FETCH_PATH_MAX], err[512];
    srv_start(&s, FMNIST_DIR);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/fmnist/", s.port);
    snprintf(cache, sizeof cache, "%s/cache", tmpdir);
    const uint64_t d0 = data_fetch_downloads();
    struct data_set *a = NULL, *b = NULL, *c = NULL, *local = NULL;
    ck_assert_msg(data_fetch_idx(url, "t10k", cache, NULL, &a, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_int_eq(data_fetch_downloads() - d0, 2);
    ck_assert_int_eq(srv_requests(&s), 2);
    /* The cache directory holds exactly the two files, no temporaries. */
    ck_assert_int_eq(data_fetch_cache_dir(url, cache, dir, sizeof dir), 0);
    ck_assert_int_eq(count_entries(dir), 2);
    /* warm: no request at all */
    ck_assert_msg(data_fetch_idx(url, "t10k", cache, NULL, &b, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_int_eq(srv_requests(&s), 2);
    ck_assert_int_eq(data_fetch_downloads() - d0, 2);
    /* and still none needed with the server gone */
    srv_stop(&s);
    ck_assert_msg(data_fetch_idx(url, "t10k", cache, NULL, &c, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_int_eq(data_fetch_idx(FMNIST_DIR, "t10k", NULL, NULL, &local, err, sizeof err),
                     0);
    ck_assert_int_eq(data_set_size(a), 10000);
    ck_assert_int_eq(memcmp(data_set_x(a), data_set_x(local), sizeof(float) * 10000 * 784), 0);
    ck_assert_int_eq(memcmp(data_set_y(c), data_set_y(local), sizeof(int32_t) * 10000), 0);
    /* an uncached file with the server gone: a clear error */
    char path[DATA_FETCH_PATH_MAX];
    ck_assert_int_eq(data_fetch_file(url, "train-labels-idx1-ubyte.gz", cache, path,
                                     sizeof path, err, sizeof err), SMLT_EIO);
    ck_assert_msg(strstr(err, "download failed") != NULL, "%s", err);
    ck_assert_int_eq(count_entries(dir), 2);
    data_set_free(a);
    data_set_free(b);
    data_set_free(c);
    data_set_free(local);
}
END_TEST

/* Writes a small valid IDX pair (uncompressed names) under dir. */
static void write_small_idx(const char *dir, const char *split)
{
    unsigned char img[16 + 3 * 4], lab[8 + 3];
    memset(img, 0, sizeof img);
    memset(lab, 0, sizeof lab);
    img[2] = 8;
    img[3] = 3;
    img[7] = 3;
    img[11] = 2;
    img[15] = 2;
    for (int i = 0; i < 12; i++)
        img[16 + i] = (unsigned char)(i * 20);
    lab[2] = 8;
    lab[3] = 1;
    lab[7] = 3;
    lab[8] = 0;
    lab[9] = 1;
    lab[10] = 2;
    char p[512];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, split);
    FILE *f = fopen(p, "wb");
    fwrite(img, 1, sizeof img, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte", dir, split);
    f = fopen(p, "wb");
    fwrite(lab, 1, sizeof lab, f);
    fclose(f);
}

START_TEST(http_fallback_404_and_short)
{
    struct srv s;
    char root[300], url[128], cache[300], dir[DATA_FETCH_PATH_MAX], err[512], path[4096];
    snprintf(root, sizeof root, "%s/www", tmpdir);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    write_small_idx(root, "mini");
    /* a file whose response claims 100 more bytes than it sends */
    char p[400];
    snprintf(p, sizeof p, "%s/short-file", root);
    FILE *f = fopen(p, "wb");
    fputs("0123456789", f);
    fclose(f);
    srv_start(&s, root);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/data", s.port);
    snprintf(cache, sizeof cache, "%s/cache", tmpdir);
    ck_assert_int_eq(data_fetch_cache_dir(url, cache, dir, sizeof dir), 0);

    /* .gz names are absent: 404 each, then the plain names */
    struct data_set *ds = NULL;
    ck_assert_msg(data_fetch_idx(url, "mini", cache, NULL, &ds, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_int_eq(data_set_size(ds), 3);
    ck_assert_int_eq(data_set_dim(ds), 4);
    ck_assert_int_eq(data_set_y(ds)[2], 2);
    ck_assert_int_eq(srv_requests(&s), 4);
    data_set_free(ds);

    ck_assert_int_eq(data_fetch_file(url, "missing.gz", cache, path, sizeof path, err,
                                     sizeof err), SMLT_ENOTFOUND);
    ck_assert_msg(strstr(err, "HTTP 404") != NULL, "%s", err);
    ck_assert_int_eq(data_fetch_file(url, "short-file", cache, path, sizeof path, err,
                                     sizeof err), SMLT_EIO);
    ck_assert_msg(strstr(err, "short-file") != NULL, "%s", err);
    /* neither left a file (or a temporary) behind */
    ck_assert_int_eq(count_entries(dir), 2);
    srv_stop(&s);
}
END_TEST

/* An HTTPS server of openssl's own (`openssl s_server -WWW`, serving dir's files) with a
 * self-signed certificate for 127.0.0.1 made in dir (cert.pem); returns its pid, the port in
 * *port. */
static pid_t tls_start(const char *dir, int *port)
{
    char cmd[1200], out[400];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '%s/key.pem' "
             "-out '%s/cert.pem' >/dev/null 2>&1",
             dir, dir);
    ck_assert_msg(system(cmd) == 0, "openssl req failed (is Debian's openssl installed?)");
    snprintf(out, sizeof out, "%s/s_server.out", dir);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || chdir(dir) != 0)
            _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        alarm(60);
        execlp("openssl", "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
               "cert.pem", "-key", "key.pem", "-WWW", (char *)NULL);
        _exit(127);
    }
    *port = 0;
    for (int t = 0; t < 100 && !*port; t++) {
        usleep(50 * 1000);
        FILE *f = fopen(out, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (!strncmp(line, "ACCEPT 127.0.0.1:", 17))
                *port = atoi(line + 17);
        if (f)
            fclose(f);
    }
    ck_assert_msg(*port > 0, "openssl s_server did not say its port");
    return pid;
}

/* HTTPS datasets: the server's certificate is verified, against the bundle CURL_CA_BUNDLE or
 * SSL_CERT_FILE names when set (the Lambda zip's way), else libcurl's default one, which does
 * not know this self-signed certificate. */
START_TEST(https_ca_bundle)
{
    char root[300], url[128], cache[300], err[512], path[4096], ca[400];
    snprintf(root, sizeof root, "%s/tls", tmpdir);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    write_small_idx(root, "mini");
    int port;
    pid_t pid = tls_start(root, &port);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/", port);
    snprintf(cache, sizeof cache, "%s/cache", tmpdir);
    snprintf(ca, sizeof ca, "%s/cert.pem", root);
    unsetenv("CURL_CA_BUNDLE");
    unsetenv("SSL_CERT_FILE");
    ck_assert_int_eq(data_fetch_file(url, "mini-labels-idx1-ubyte", cache, path, sizeof path,
                                     err, sizeof err), SMLT_EIO);
    ck_assert_msg(strstr(err, "certificate") != NULL, "%s", err);
    setenv("SSL_CERT_FILE", ca, 1);
    ck_assert_msg(data_fetch_file(url, "mini-labels-idx1-ubyte", cache, path, sizeof path, err,
                                  sizeof err) == 0, "%s", err);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 11);
    unsetenv("SSL_CERT_FILE");
    setenv("CURL_CA_BUNDLE", ca, 1);
    ck_assert_msg(data_fetch_file(url, "mini-images-idx3-ubyte", cache, path, sizeof path, err,
                                  sizeof err) == 0, "%s", err);
    unsetenv("CURL_CA_BUNDLE");
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}
END_TEST

START_TEST(cache_dir_choice)
{
    char dir[DATA_FETCH_PATH_MAX], dir2[DATA_FETCH_PATH_MAX];
    ck_assert_int_eq(data_fetch_cache_dir("http://h/x", "/c/", dir, sizeof dir), 0);
    ck_assert_int_eq(strncmp(dir, "/c/", 3), 0);
    ck_assert_int_eq(strlen(dir), 3 + 16);
    /* a trailing slash does not change the key; another URL does */
    ck_assert_int_eq(data_fetch_cache_dir("http://h/x/", "/c", dir2, sizeof dir2), 0);
    ck_assert_str_eq(dir, dir2);
    ck_assert_int_eq(data_fetch_cache_dir("http://h/y", "/c", dir2, sizeof dir2), 0);
    ck_assert_str_ne(dir, dir2);
    setenv("SMLT_CACHE_DIR", "/env/cache", 1);
    ck_assert_int_eq(data_fetch_cache_dir("https://h/x", NULL, dir, sizeof dir), 0);
    ck_assert_int_eq(strncmp(dir, "/env/cache/", 11), 0);
    unsetenv("SMLT_CACHE_DIR");
    ck_assert_int_eq(data_fetch_cache_dir("https://h/x", NULL, dir, sizeof dir), 0);
    ck_assert_int_eq(strncmp(dir, "/tmp/smlt-cache/", 16), 0);
    ck_assert_int_eq(data_fetch_cache_dir("/local/dir", NULL, dir, sizeof dir), SMLT_EINVAL);
    ck_assert_int_eq(data_fetch_cache_dir("http://h/x", "/c", dir, 8), SMLT_EINVAL);
    /* a cache root that cannot be created */
    char err[512], path[512];
    ck_assert_int_eq(data_fetch_file("http://127.0.0.1:1/x", "f", "/proc/nope", path,
                                     sizeof path, err, sizeof err), SMLT_EIO);
    ck_assert_ptr_nonnull(strstr(err, "cache directory"));
}
END_TEST

/* Copies src to dst byte for byte. */
static void copy_file(const char *src, const char *dst, size_t keep)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    ck_assert_ptr_nonnull(in);
    ck_assert_ptr_nonnull(out);
    char buf[65536];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0 && total < keep) {
        if (n > keep - total)
            n = keep - total;
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
        total += n;
    }
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

START_TEST(unpacked_copy)
{
    char src[512], cache[512], plain[DATA_FETCH_PATH_MAX], again[DATA_FETCH_PATH_MAX], err[512];
    snprintf(src, sizeof src, "%s/t10k-labels-idx1-ubyte.gz", tmpdir);
    snprintf(cache, sizeof cache, "%s/cache", tmpdir);
    copy_file(FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", src, (size_t)-1);
    /* made once: the IDX header's magic (labels: 0x00000801) and 8 + 10000 bytes */
    ck_assert_int_eq(data_fetch_unpacked(src, cache, plain, sizeof plain), 2);
    ck_assert_int_eq(strncmp(plain, cache, strlen(cache)), 0);
    ck_assert_ptr_nonnull(strstr(plain, "/t10k-labels-idx1-ubyte"));
    ck_assert_ptr_null(strstr(plain, ".gz"));
    struct stat st, st2;
    ck_assert_int_eq(stat(plain, &st), 0);
    ck_assert_int_eq(st.st_size, 8 + 10000);
    unsigned char head[4];
    FILE *f = fopen(plain, "rb");
    ck_assert_uint_eq(fread(head, 1, 4, f), 4);
    fclose(f);
    ck_assert(head[0] == 0 && head[1] == 0 && head[2] == 8 && head[3] == 1);
    /* found again, the same file (not rewritten) */
    ck_assert_int_eq(data_fetch_unpacked(src, cache, again, sizeof again), 1);
    ck_assert_str_eq(plain, again);
    ck_assert_int_eq(stat(again, &st2), 0);
    ck_assert_uint_eq(st.st_ino, st2.st_ino);
    /* a changed source (here shorter by one byte: a truncated stream) is not the same key,
     * and a truncated stream leaves no copy: the caller reads the original */
    copy_file(FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", src, 4000);
    ck_assert_int_eq(data_fetch_unpacked(src, cache, again, sizeof again), 0);
    ck_assert_str_eq(again, src);
    ck_assert_int_eq(count_entries(cache), 2); /* the first copy's and the empty new key's */
    struct data_set *ds = NULL;
    char lab[600];
    snprintf(lab, sizeof lab, "%s/t10k-images-idx3-ubyte.gz", tmpdir);
    copy_file(FMNIST_DIR "/t10k-images-idx3-ubyte.gz", lab, (size_t)-1);
    int rc = data_fetch_idx(tmpdir, "t10k", cache, NULL, &ds, err, sizeof err);
    ck_assert_int_lt(rc, 0);
    ck_assert_ptr_nonnull(strstr(err, "t10k-labels-idx1-ubyte.gz"));
    /* whole again: loads from the plain copies, the same set as from the gzip files */
    copy_file(FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", src, (size_t)-1);
    ck_assert_msg(data_fetch_idx(tmpdir, "t10k", cache, NULL, &ds, err, sizeof err) == 0, "%s",
                  err);
    struct data_set *ref = NULL;
    ck_assert_int_eq(data_load_idx(FMNIST_DIR "/t10k-images-idx3-ubyte.gz",
                                   FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", NULL, &ref, err,
                                   sizeof err), 0);
    ck_assert_uint_eq(data_set_size(ds), data_set_size(ref));
    ck_assert_int_eq(memcmp(data_set_y(ds), data_set_y(ref), data_set_size(ds) * sizeof(int32_t)),
                     0);
    ck_assert_int_eq(memcmp(data_set_x(ds), data_set_x(ref),
                            data_set_size(ds) * (size_t)data_set_dim(ds) * sizeof(float)),
                     0);
    data_set_free(ds);
    data_set_free(ref);
    /* not gzip: the path itself */
    ck_assert_int_eq(data_fetch_unpacked("/etc/hostname", cache, again, sizeof again), 0);
    ck_assert_str_eq(again, "/etc/hostname");
    ck_assert_int_eq(data_fetch_unpacked(src, cache, again, 5), -1);
}
END_TEST

/* The last request's head as JSON headers {name: value}. */
static json_t *last_headers(const struct srv *s)
{
    char path[400], buf[8192];
    snprintf(path, sizeof path, "%s.head", s->log);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    json_t *h = json_object();
    ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f)); /* the request line */
    while (fgets(buf, sizeof buf, f)) {
        char *colon = strchr(buf, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ')
            v++;
        v[strcspn(v, "\r\n")] = '\0';
        json_object_set_new(h, buf, json_string(v));
    }
    fclose(f);
    return h;
}

/* s3://bucket/prefix: a path-style GET under AWS_ENDPOINT_URL_S3, SigV4-signed for s3 with the
 * environment's keys (checked against botocore's signer, Debian python3-botocore); without
 * credentials it is refused with where they were looked for. */
START_TEST(s3_signed_get)
{
    ck_assert_msg(system("/usr/bin/python3 -c 'import botocore' 2>/dev/null") == 0,
                  "Debian's python3-botocore is missing (tools/test.sh installs it)");
    char root[300], cache[300], out[DATA_FETCH_PATH_MAX], err[512], ep[64];
    snprintf(root, sizeof root, "%s/s3root", tmpdir);
    snprintf(cache, sizeof cache, "%s/cache", tmpdir);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    write_small_idx(root, "train");
    struct srv s;
    srv_start(&s, root);
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", s.port);
    setenv("AWS_ENDPOINT_URL_S3", ep, 1);
    setenv("AWS_REGION", "eu-west-1", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
    unsetenv("AWS_SESSION_TOKEN");
    const char *name = "train-labels-idx1-ubyte";
    int rc = data_fetch_file("s3://my-bucket/fmnist/", name, cache, out, sizeof out, err,
                             sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    char want[400];
    snprintf(want, sizeof want, "%s/%s", root, name);
    struct stat a, b;
    ck_assert_int_eq(stat(out, &a), 0);
    ck_assert_int_eq(stat(want, &b), 0);
    ck_assert_int_eq(a.st_size, b.st_size);
    json_t *h = last_headers(&s);
    char url[300];
    snprintf(url, sizeof url, "%s/my-bucket/fmnist/%s", ep, name);
    json_t *o = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:s}", "method", "GET", "url", url,
                          "headers", h, "body", "", "access_key", "AKIDEXAMPLE", "secret_key",
                          "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "region", "eu-west-1",
                          "service", "s3");
    char jf[400], cmd[1400], line[512] = "";
    snprintf(jf, sizeof jf, "%s/sigv4.json", tmpdir);
    json_dump_file(o, jf, 0);
    json_decref(o);
    const char *src = getenv("SMLT_SOURCE_DIR");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/tools/sigv4_check.py < %s",
             src ? src : ".", jf);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    pclose(p);
    ck_assert_msg(!strncmp(line, "ok", 2), "SigV4 against botocore: %s", line);
    /* No credentials anywhere: refused, saying where to put them. */
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent", 1);
    rc = data_fetch_file("s3://my-bucket/fmnist", "train-images-idx3-ubyte", cache, out,
                         sizeof out, err, sizeof err);
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_nonnull(strstr(err, "no AWS credentials"));
    srv_stop(&s);
}
END_TEST

static Suite *data_fetch_suite(void)
{
    Suite *s = suite_create("data_fetch");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, local_directory);
    tcase_add_test(tc, http_cold_then_warm);
    tcase_add_test(tc, http_fallback_404_and_short);
    tcase_add_test(tc, cache_dir_choice);
    tcase_add_test(tc, unpacked_copy);
    tcase_add_test(tc, s3_signed_get);
    tcase_add_test(tc, https_ca_bundle);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(data_fetch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
