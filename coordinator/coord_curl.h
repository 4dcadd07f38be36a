/* coord_curl.h: outbound HTTP(S) for the coordinator's platform backends, without blocking its
 * event loop: a libcurl multi handle driven by libevent (curl tells which sockets to watch and
 * when to wake it; libevent tells curl what happened).
 *
 * A request is a method, a URL, headers, an optional body and a timeout; its callback gets the
 * HTTP status (0 when no response came), the response body and the response headers the caller
 * asked to keep, and curl's error text. AWS SigV4 signing is libcurl's (CURLOPT_AWS_SIGV4).
 * Single-threaded: call from the loop's thread; callbacks come from it, never from inside
 * coord_curl_request(). */
#ifndef COORD_CURL_H
#define COORD_CURL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

struct coord_curl;

#define COORD_CURL_MAX_KEEP 4 /* response headers a request may keep */

struct coord_curl_resp {
    long status;            /* HTTP status, 0 when the request failed before an answer */
    const char *body;       /* NUL-terminated (borrowed for the callback) */
    size_t body_len;
    const char *keep[COORD_CURL_MAX_KEEP]; /* the values of the headers asked for, or NULL */
    const char *error;      /* curl's words when status is 0 ("" otherwise) */
    int timed_out;          /* the request's own timeout ended it */
    double total_s;         /* from the start of the transfer to its end */
};

typedef void (*coord_curl_fn)(const struct coord_curl_resp *r, void *arg);

struct coord_curl_req {
    const char *method;      /* "GET", "POST" */
    const char *url;
    const char *const *headers; /* "Name: value" strings, NULL-terminated (may be NULL) */
    const char *body;        /* copied; NULL for none */
    size_t body_len;
    long timeout_ms;         /* the whole transfer (0: none) */
    const char *keep[COORD_CURL_MAX_KEEP]; /* response header names to keep (case-insensitive) */
    /* AWS SigV4 ("aws:amz:REGION:SERVICE") with the key pair; NULL: not signed */
    const char *sigv4;
    const char *access_key, *secret_key;
    size_t max_body;         /* a longer response body fails the request (0: 4 MiB) */
};

struct coord_curl *coord_curl_new(struct event_base *base);

/* Starts a request. Returns its id (> 0), or 0 when it could not be started (then fn is never
 * called). */
uint64_t coord_curl_request(struct coord_curl *cc, const struct coord_curl_req *req,
                            coord_curl_fn fn, void *arg);

/* Abandons a request: its callback is not called. Returns 0, or -1 when it is not running. */
int coord_curl_cancel(struct coord_curl *cc, uint64_t id);

/* Requests running now. */
unsigned coord_curl_running(const struct coord_curl *cc);

/* Abandons every request (no callbacks) and frees cc. */
void coord_curl_free(struct coord_curl *cc);

#endif
