/* coord_dash.h: the coordinator's dashboard, served at / by the HTTP API (coord_http.c).
 *
 * The dashboard is plain HTML, CSS and JavaScript (coordinator/dashboard/), embedded in the
 * daemon at build time (dashboard/embed.cmake), with no bundler and nothing from the internet.
 * It polls the JSON API and draws with Chart.js, which is served from Debian's libjs-chart.js
 * (DASH_CHARTJS_PATH). The token never goes into a URL: the page keeps it in the tab's
 * sessionStorage and sends it as "Authorization: Bearer". */
#ifndef COORD_DASH_H
#define COORD_DASH_H

#include <stddef.h>

struct evhttp_request;

#define DASH_CHARTJS_PATH "/usr/share/javascript/chart.js/chart.min.js"

struct dash_asset {
    const char *name;          /* file name under dashboard/ */
    const unsigned char *data; /* NUL-terminated */
    size_t len;
};

/* The embedded files, ended by a NULL name (dash_assets.c, generated). */
extern const struct dash_asset dash_assets[];

/* Answers GET / and GET /dashboard/NAME (the embedded files and chart.min.js). Returns 1 when
 * path is the dashboard's (the request is answered), else 0. */
int coord_dash_serve(struct evhttp_request *req, const char *path, int is_get);

#endif
