/* smlt_aws.c: see smlt_aws.h. */
#include "smlt_aws.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static void copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    size_t k = 0;
    while (s[k] && isspace((unsigned char)s[k]))
        k++;
    memmove(s, s + k, strlen(s + k) + 1);
}

/* Reads key's value from section [sect] of an INI-style AWS file. Returns 1 when found. */
static int ini_get(const char *path, const char *sect, const char *key, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int in = 0, found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        trim(line);
        if (line[0] == '#' || line[0] == ';' || !line[0])
            continue;
        if (line[0] == '[') {
            char *end = strchr(line, ']');
            if (end)
                *end = '\0';
            char *name = line + 1;
            trim(name);
            in = !strcmp(name, sect);
            continue;
        }
        char *eq = strchr(line, '=');
        if (!in || !eq)
            continue;
        *eq = '\0';
        char *k = line, *v = eq + 1;
        trim(k);
        trim(v);
        if (!strcmp(k, key)) {
            copy(out, len, v);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

static void aws_file(const char *var, const char *def, char *out, size_t len)
{
    const char *p = env(var), *home = env("HOME");
    if (p)
        copy(out, len, p);
    else
        snprintf(out, len, "%s/.aws/%s", home ? home : "", def);
}

int smlt_aws_static_creds(struct smlt_aws_creds *c)
{
    memset(c, 0, sizeof *c);
    if (env("AWS_ACCESS_KEY_ID") && env("AWS_SECRET_ACCESS_KEY")) {
        copy(c->access_key, sizeof c->access_key, env("AWS_ACCESS_KEY_ID"));
        copy(c->secret_key, sizeof c->secret_key, env("AWS_SECRET_ACCESS_KEY"));
        copy(c->session_token, sizeof c->session_token, env("AWS_SESSION_TOKEN"));
        copy(c->source, sizeof c->source, "environment");
        return 0;
    }
    const char *profile = env("AWS_PROFILE") ? env("AWS_PROFILE") : "default";
    char path[1024], sect[300];
    aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", path, sizeof path);
    snprintf(sect, sizeof sect, "%s", profile);
    for (int pass = 0; pass < 2; pass++) {
        if (ini_get(path, sect, "aws_access_key_id", c->access_key, sizeof c->access_key) &&
            ini_get(path, sect, "aws_secret_access_key", c->secret_key, sizeof c->secret_key)) {
            ini_get(path, sect, "aws_session_token", c->session_token, sizeof c->session_token);
            copy(c->source, sizeof c->source, pass ? "shared config file" : "shared credentials file");
            return 0;
        }
        aws_file("AWS_CONFIG_FILE", "config", path, sizeof path);
        if (strcmp(profile, "default"))
            snprintf(sect, sizeof sect, "profile %s", profile);
    }
    memset(c, 0, sizeof *c);
    return -1;
}

int smlt_aws_container_endpoint(char *url, size_t urllen, char *auth, size_t authlen)
{
    auth[0] = '\0';
    if (env("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
        copy(url, urllen, env("AWS_CONTAINER_CREDENTIALS_FULL_URI"));
    else if (env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
        snprintf(url, urllen, "http://169.254.170.2%s", env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"));
    else
        return 0;
    if (env("AWS_CONTAINER_AUTHORIZATION_TOKEN")) {
        copy(auth, authlen, env("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
    } else if (env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")) {
        FILE *f = fopen(env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"), "r");
        if (f) {
            if (!fgets(auth, (int)authlen, f))
                auth[0] = '\0';
            fclose(f);
            trim(auth);
        }
    }
    return 1;
}

int smlt_aws_parse_container(const char *json, struct smlt_aws_creds *c, char *err,
                              size_t errlen)
{
    memset(c, 0, sizeof *c);
    json_t *o = json_loads(json, 0, NULL);
    const char *ak = json_string_value(json_object_get(o, "AccessKeyId"));
    const char *sk = json_string_value(json_object_get(o, "SecretAccessKey"));
    const char *tok = json_string_value(json_object_get(o, "Token"));
    const char *exp = json_string_value(json_object_get(o, "Expiration"));
    if (!ak || !sk || strlen(ak) >= sizeof c->access_key || strlen(sk) >= sizeof c->secret_key ||
        (tok && strlen(tok) >= sizeof c->session_token)) {
        snprintf(err, errlen, "the container credentials endpoint's answer has no usable "
                              "AccessKeyId and SecretAccessKey");
        json_decref(o);
        return -1;
    }
    copy(c->access_key, sizeof c->access_key, ak);
    copy(c->secret_key, sizeof c->secret_key, sk);
    copy(c->session_token, sizeof c->session_token, tok);
    copy(c->source, sizeof c->source, "container endpoint");
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (exp && strptime(exp, "%Y-%m-%dT%H:%M:%S", &tm))
        c->expires_unix = (double)timegm(&tm);
    json_decref(o);
    return 0;
}

void smlt_aws_region(const char *flag, char *out, size_t len)
{
    const char *r = flag && *flag ? flag : env("AWS_REGION") ? env("AWS_REGION")
                                                              : env("AWS_DEFAULT_REGION");
    if (r) {
        copy(out, len, r);
        return;
    }
    char path[1024], sect[300];
    const char *profile = env("AWS_PROFILE") ? env("AWS_PROFILE") : "default";
    aws_file("AWS_CONFIG_FILE", "config", path, sizeof path);
    snprintf(sect, sizeof sect, strcmp(profile, "default") ? "profile %s" : "%s", profile);
    if (!ini_get(path, sect, "region", out, len))
        copy(out, len, "us-east-1");
}

static int b64_value(int ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

long smlt_base64_decode(const char *in, char *out, size_t outlen)
{
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (const char *p = in; *p && *p != '='; p++) {
        if (isspace((unsigned char)*p))
            continue;
        int v = b64_value((unsigned char)*p);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 >= outlen)
                return -1;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (outlen)
        out[n] = '\0';
    return (long)n;
}
