/* coord_dash.c: see coord_dash.h. */
#include "coord_dash.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && !strcmp(dot, ".html"))
        return "text/html; charset=utf-8";
    if (dot && !strcmp(dot, ".js"))
        return "text/javascript; charset=utf-8";
    if (dot && !strcmp(dot, ".css"))
        return "text/css; charset=utf-8";
    return "application/octet-stream";
}

static void headers(struct evhttp_request *req, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    /* Everything comes from this server; nothing is framed. (Chart.js sets inline styles.) */
    evhttp_add_header(h, "Content-Security-Policy",
                      "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                      "frame-ancestors 'none'");
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *msg)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evbuffer_add_printf(out, "%s\n", msg);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, code, reason, out);
}

/* Chart.js from its Debian package, sent from the file without copying it through us. */
static void serve_chartjs(struct evhttp_request *req)
{
    int fd = open(DASH_CHARTJS_PATH, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        reply_text(req, 404, "Not Found",
                   "Chart.js is not installed (" DASH_CHARTJS_PATH "): apt-get install "
                   "libjs-chart.js");
        return;
    }
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    if (evbuffer_add_file(out, fd, 0, st.st_size) != 0) {
        close(fd);
        reply_text(req, 500, "Error", "cannot read Chart.js");
        return;
    }
    headers(req, "text/javascript; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", out);
}

int coord_dash_serve(struct evhttp_request *req, const char *path, int is_get)
{
    const char *name = NULL;
    if (!strcmp(path, "/") || !strcmp(path, "/index.html"))
        name = "index.html";
    else if (!strncmp(path, "/dashboard/", 11))
        name = path + 11;
    else if (!strcmp(path, "/favicon.ico"))
        name = "";
    else
        return 0;
    if (!is_get) {
        reply_text(req, 405, "Method Not Allowed", "use GET");
        return 1;
    }
    if (!name[0]) {
        evhttp_send_reply(req, 204, "No Content", NULL); /* no icon, and no console error */
        return 1;
    }
    if (!strcmp(name, "chart.min.js")) {
        serve_chartjs(req);
        return 1;
    }
    for (const struct dash_asset *a = dash_assets; a->name; a++) {
        if (strcmp(a->name, name))
            continue;
        struct evbuffer *out = evhttp_request_get_output_buffer(req);
        evbuffer_add_reference(out, a->data, a->len, NULL, NULL);
        headers(req, content_type(a->name));
        evhttp_send_reply(req, 200, "OK", out);
        return 1;
    }
    reply_text(req, 404, "Not Found", "no such dashboard file");
    return 1;
}
