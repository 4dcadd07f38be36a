/* data_fetch.h: finds a dataset's files in a local directory or fetches them over HTTP(S)
 * into an on-disk cache.
 *
 * A dataset source is either a local directory, an http:// or https:// URL prefix under
 * which the files live (file:// URLs name a directory), or an S3 prefix, s3://BUCKET/PREFIX:
 * its objects are fetched with SigV4-signed GETs (service s3, the region and credentials as
 * the AWS SDKs find them: proto/smlt_aws.h), from the bucket's virtual host, or path-style
 * under AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL) for S3-compatible stores. Presigned HTTPS
 * URLs are plain URLs. Fetched files go to
 *   <cache root>/<16 hex digits of a hash of the URL prefix>/<file name>
 * where the cache root is the cache_dir argument, else $SMLT_CACHE_DIR, else
 * /tmp/smlt-cache. A file is downloaded to a temporary name in the same directory and renamed
 * into place only when complete, so a reader never sees a partial file and a warm function
 * instance (or any later process on the machine) finds it and does not fetch again.
 *
 * These calls block (file I/O and libcurl's easy interface): use them in the worker's loading
 * phase, not on an event loop thread. They are thread-safe. */
#ifndef DATA_FETCH_H
#define DATA_FETCH_H

#include <stddef.h>
#include <stdint.h>

struct data_set;
struct data_load_opts;

/* Largest file fetched (4 GiB); longest path built. */
#define DATA_FETCH_MAX_BYTES ((uint64_t)4 << 30)
#define DATA_FETCH_PATH_MAX 4096

/* Writes to out (outlen bytes) the local path of file name under source: source/name for a
 * directory (the file must exist), the cached copy for a URL, downloading it first when it is
 * not in the cache. name is a plain file name (no '/', not starting with '.'). Borrows every
 * argument for the call. cache_dir may be NULL. Returns 0, -SMLT_ENOTFOUND (no such file or
 * HTTP 404), -SMLT_EIO (network, HTTP or file error), -SMLT_ETOOBIG, -SMLT_EINVAL (bad
 * source or name) with a message in err. */
int data_fetch_file(const char *source, const char *name, const char *cache_dir, char *out,
                    size_t outlen, char *err, size_t errlen);

/* Loads the IDX pair of split ("train", "t10k") from source: <split>-images-idx3-ubyte.gz and
 * <split>-labels-idx1-ubyte.gz, or the same names without .gz when those are absent, through
 * data_fetch_file(), data_fetch_unpacked() and data_load_idx(o). Stores a new set in *out (free it with
 * data_set_free()). Returns 0 or a negative SMLT_E* code with a message in err. */
int data_fetch_idx(const char *source, const char *split, const char *cache_dir,
                   const struct data_load_opts *o, struct data_set **out, char *err,
                   size_t errlen);

/* The plain copy of a gzip file (path ending in .gz): inflated once into
 *   <cache root>/unpacked-<16 hex digits of a hash of path, size and mtime>/<name without .gz>
 * through a temporary file renamed into place, found there by every later call while the
 * source is unchanged. Writes its path to out and returns 1 (found) or 2 (just made). When
 * path is not gzip, or the copy cannot be made (a corrupt stream, no room), writes path itself
 * and returns 0: the caller reads the original and its parser reports what is wrong. -1 when
 * path does not fit in out. */
int data_fetch_unpacked(const char *path, const char *cache_dir, char *out, size_t outlen);

/* Writes the cache directory used for a URL source to out. Returns 0 or -SMLT_EINVAL (not a
 * URL, or the path does not fit). */
int data_fetch_cache_dir(const char *source, const char *cache_dir, char *out, size_t outlen);

/* Returns how many files this process has downloaded (successfully) so far. */
uint64_t data_fetch_downloads(void);

#endif
