/* smlt_aws.h: AWS credentials, found the way the AWS SDKs find them (the coordinator's lambda
 * backend, and s3:// datasets in the worker):
 *   1. the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN;
 *   2. the shared files: AWS_SHARED_CREDENTIALS_FILE (default ~/.aws/credentials), section
 *      [PROFILE], then AWS_CONFIG_FILE (default ~/.aws/config), section [profile PROFILE] (or
 *      [default]); PROFILE is AWS_PROFILE or "default";
 *   3. the container credentials endpoint: AWS_CONTAINER_CREDENTIALS_FULL_URI, or
 *      http://169.254.170.2 + AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, with the header
 *      Authorization: AWS_CONTAINER_AUTHORIZATION_TOKEN (or the contents of
 *      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE). Its answer is JSON {AccessKeyId,
 *      SecretAccessKey, Token, Expiration}, fetched by the caller (the coordinator without
 *      blocking its loop, through coord_curl; the worker with a plain GET).
 * The region: --region, else AWS_REGION, AWS_DEFAULT_REGION, the config file's region, else
 * us-east-1. */
#ifndef SMLT_AWS_H
#define SMLT_AWS_H

#include <stddef.h>

struct smlt_aws_creds {
    char access_key[128];
    char secret_key[128];
    char session_token[2048]; /* "" when none */
    double expires_unix;      /* 0: does not expire */
    char source[64];          /* "environment", "shared credentials file", "container endpoint" */
};

/* Where the container endpoint is, when the environment names one: its URL and the
 * Authorization header's value ("" for none). Returns 1 when it does, else 0. */
int smlt_aws_container_endpoint(char *url, size_t urllen, char *auth, size_t authlen);

/* The static sources (1 and 2). Returns 0 with *c filled, or -1 when neither has a key pair. */
int smlt_aws_static_creds(struct smlt_aws_creds *c);

/* Parses the container endpoint's JSON answer. Returns 0, or -1 with a message in err. */
int smlt_aws_parse_container(const char *json, struct smlt_aws_creds *c, char *err,
                              size_t errlen);

/* The region (see above) into out. */
void smlt_aws_region(const char *flag, char *out, size_t len);

/* Decodes base64 (standard alphabet, padding optional) into out (NUL-terminated). Returns the
 * decoded length, or -1 on a bad character or when out is too small. */
long smlt_base64_decode(const char *in, char *out, size_t outlen);

#endif
