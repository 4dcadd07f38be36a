/* data_load.h: dataset file parsers (IDX, CSV, LIBSVM) that validate everything they read.
 *
 * Every file may be plain or gzip-compressed (read through zlib, which passes plain files
 * through), so the IDX files exactly as Debian's dataset-fashion-mnist ships them load as is.
 * A malformed file (truncated, wrong magic, images and labels that disagree, a label out of
 * range, a ragged CSV row, a bad LIBSVM token, a non-finite value) gives a negative SMLT_E*
 * code and a message in err naming the file and the line or byte offset; never a crash, and
 * nothing is allocated from a count in the file before it is checked against the limits in
 * data_set.h. Pixels of IDX images are scaled to [0, 1] floats.
 *
 * These functions block on file I/O; call them from the worker's loading phase, not from an
 * event loop. */
#ifndef DATA_LOAD_H
#define DATA_LOAD_H

#include <stddef.h>

struct data_set;

/* Longest text line accepted (CSV and LIBSVM): 64 MiB. */
#define DATA_LOAD_MAX_LINE (64u << 20)

/* CSV header lines (data_load_opts.header). */
enum data_load_header {
    DATA_LOAD_HEADER_AUTO = 0, /* the first line is a header when a field is not a number */
    DATA_LOAD_HEADER_YES = 1,  /* skip the first line */
    DATA_LOAD_HEADER_NO = 2    /* every line is a row */
};

struct data_load_opts {
    int num_classes;  /* labels must lie in [0, num_classes); 0: max label + 1 (at least 2) */
    int dim;          /* features per row: LIBSVM densifies to dim (0: largest index seen);
                       * CSV and IDX check it when nonzero */
    int label_col;    /* CSV: column holding the label, 0-based; -1 for the last column */
    int header;       /* CSV: enum data_load_header */
    float scale;      /* CSV and LIBSVM: features are multiplied by scale (0 means 1) */
    size_t max_rows;  /* read at most this many rows (0: all) */
    int train;        /* a training set: refuse labels that are all one class (a label read
                       * from the wrong column trains a one-class model that scores 100%) */
};

/* Fills o with the defaults: num_classes 0, dim 0, label_col 0, header auto, scale 1,
 * max_rows 0, train 0. */
void data_load_opts_init(struct data_load_opts *o);

/* Loads an IDX images file (unsigned bytes, N x d1 x d2 ... dims) and an IDX labels file
 * (N unsigned bytes) into a new set of N rows of d1*d2*... floats in [0, 1]. o may be NULL
 * (defaults; num_classes 0 infers it). On success stores the set in *out (Returns: free it
 * with data_set_free()) and returns 0; otherwise returns -SMLT_ECORRUPT (format),
 * -SMLT_EIO / -SMLT_ENOTFOUND (file), -SMLT_ETOOBIG, -SMLT_ERANGE (label) or -SMLT_ENOMEM
 * with a message in err. */
int data_load_idx(const char *images_path, const char *labels_path,
                  const struct data_load_opts *o, struct data_set **out, char *err,
                  size_t errlen);

/* Loads a CSV file: one row per line, comma-separated numbers, the label in column
 * o->label_col (an integer), every other column a feature. Blank lines are skipped.
 * Returns as data_load_idx(). */
int data_load_csv(const char *path, const struct data_load_opts *o, struct data_set **out,
                  char *err, size_t errlen);

/* Loads a LIBSVM file: "label idx:val idx:val ..." per line with 1-based, strictly
 * increasing indices, densified to o->dim features (0: the largest index). Labels are
 * integers; a binary file labelled -1/+1 is mapped to 0/1. Returns as data_load_idx(). */
int data_load_libsvm(const char *path, const struct data_load_opts *o, struct data_set **out,
                     char *err, size_t errlen);

#endif
