/* data_set.h: an in-memory labelled dataset and a worker's deterministic view of it.
 *
 * A data_set holds n samples as one row-major float matrix (n x dim) and n int32 labels in
 * [0, num_classes). Loaders (data_load.h) fill one; the training loop reads batches through a
 * data_set_iter:
 *
 *   - partition: worker `part` of `nparts` gets a fixed block of a seeded permutation of all
 *     rows, so partitions are disjoint, cover the set, and are balanced even when the file is
 *     sorted by label;
 *   - shuffle: each epoch the partition is reshuffled (Fisher-Yates driven by the counter RNG
 *     of smlt_rand.h keyed by seed, part, nparts and epoch), so (part, nparts, seed, epoch)
 *     always yields the same batches on any machine;
 *   - cursor: (epoch, batch within the epoch), two integers; a replacement worker that seeks
 *     to its predecessor's cursor continues with exactly the batches it would have seen.
 *
 * Not thread-safe; a data_set may be shared read-only by several iterators. */
#ifndef DATA_SET_H
#define DATA_SET_H

#include <stddef.h>
#include <stdint.h>

/* Largest dataset accepted: rows are indexed with uint32 and rows * dim floats are capped
 * at 4 Gi elements (16 GiB). */
#define DATA_SET_MAX_ROWS 0xfffffffeu
#define DATA_SET_MAX_ELEMS ((uint64_t)1 << 32)
#define DATA_SET_MAX_DIM (1 << 24)
#define DATA_SET_MAX_CLASSES 65536

/* data_set_iter_new() flags. */
#define DATA_SET_DROP_LAST 1  /* skip the last partial batch of each epoch */

struct data_set;
struct data_set_iter;

/* Returns a new set of n rows of dim floats (all zero) and n labels (zero), or NULL on bad
 * sizes (n > DATA_SET_MAX_ROWS, dim or num_classes out of range, n * dim too big) or out of
 * memory. Free with data_set_free(). n may be 0. */
struct data_set *data_set_new(size_t n, int dim, int num_classes);

/* Returns a set made from caller arrays: Takes x (n * dim floats, malloc'd) and y (n labels,
 * malloc'd), which data_set_free() will free, also when this fails (returns NULL). Labels are
 * not checked here: see data_set_check(). */
struct data_set *data_set_wrap(size_t n, int dim, int num_classes, float *x, int32_t *y);

/* Allocates n bytes for a feature matrix that the caller will fill (and data_set_wrap() will
 * take): large matrices are backed by transparent huge pages where the kernel allows, because
 * first-touching fresh 4 KiB pages costs about 11 us each on the machines we run on (a 188 MB
 * Fashion-MNIST matrix: 0.5 s of a cold start). Free with free(). NULL on out of memory. */
void *data_set_alloc(size_t n);

/* Returns a set whose features are bytes, each read as byte * scale (images: 1/255): a
 * quarter of the memory of floats and nothing to convert up front (a cold worker starts
 * faster). Takes x8 (n * dim bytes) and y (n labels), malloc'd, also on failure. */
struct data_set *data_set_wrap_u8(size_t n, int dim, int num_classes, uint8_t *x8, float scale,
                                  int32_t *y);

/* Writes rows [first, first + n) as floats to out (n * dim floats). */
void data_set_rows(const struct data_set *ds, size_t first, size_t n, float *out);

/* Frees ds and its arrays. NULL is a no-op. */
void data_set_free(struct data_set *ds);

size_t data_set_size(const struct data_set *ds);
int data_set_dim(const struct data_set *ds);
int data_set_num_classes(const struct data_set *ds);

/* Returns the feature matrix (n x dim, row-major) / label array; borrowed, valid until
 * data_set_free(). For a byte set (data_set_wrap_u8()) the float matrix is made on the first
 * call (NULL if that runs out of memory): readers of batches use data_set_rows() instead. The
 * mutable versions are for loaders. */
const float *data_set_x(const struct data_set *ds);
const int32_t *data_set_y(const struct data_set *ds);
float *data_set_x_mut(struct data_set *ds);
int32_t *data_set_y_mut(struct data_set *ds);

/* Returns 0 when every label is in [0, num_classes), else -SMLT_ERANGE (and the first bad row
 * in *bad_row when bad_row is not NULL). */
int data_set_check(const struct data_set *ds, size_t *bad_row);

/* Feature scaling (data_set_scale()). */
enum data_set_scaling {
    DATA_SET_SCALE_NONE = 0,
    DATA_SET_SCALE_MINMAX = 1,   /* (x - min) / (max - min): the training set into [0, 1] */
    DATA_SET_SCALE_STANDARD = 2  /* (x - mean) / std (population std): mean 0, variance 1 */
};

/* Rescales each feature of train by statistics of train alone (per feature, in double), and
 * test (NULL: none) by the same shift and factor, so no figure of the test set leaks into
 * training. A constant feature keeps factor 1, as scikit-learn's scalers do. A byte set
 * becomes a float set (4x the memory). Returns 0, or -SMLT_EINVAL (unknown kind, test's dim
 * differs) / -SMLT_ENOMEM; on failure the values of neither set have changed. */
int data_set_scale(struct data_set *train, struct data_set *test, int kind);

/* Returns a new set with copies of rows [first, first + n) (clamped to the set), or NULL. */
struct data_set *data_set_slice(const struct data_set *ds, size_t first, size_t n);

/* Returns an iterator over partition part of nparts (0 <= part < nparts) with batches of
 * batch rows, or NULL on bad arguments (empty partition, batch < 1) or out of memory. Borrows
 * ds until data_set_iter_free(). The cursor starts at (0, 0). */
struct data_set_iter *data_set_iter_new(const struct data_set *ds, int part, int nparts,
                                        uint64_t seed, int batch, int flags);

/* Frees it. NULL is a no-op. */
void data_set_iter_free(struct data_set_iter *it);

/* Returns the number of rows in this partition. */
size_t data_set_iter_part_size(const struct data_set_iter *it);

/* Returns the batches in one epoch of this partition (the last one may be partial unless
 * DATA_SET_DROP_LAST). */
int64_t data_set_iter_batches_per_epoch(const struct data_set_iter *it);

/* Fills the cursor: the epoch and the batch within it that data_set_iter_next() returns
 * next. Either pointer may be NULL. */
void data_set_iter_cursor(const struct data_set_iter *it, int64_t *epoch, int64_t *batch);

/* Moves the cursor to (epoch, batch). batch == batches_per_epoch means the start of the next
 * epoch. Returns 0 or -SMLT_EINVAL (negative values, batch past the end). */
int data_set_iter_seek(struct data_set_iter *it, int64_t epoch, int64_t batch);

/* Copies the batch at the cursor into x (rows x dim floats) and y (rows labels), writes the
 * row numbers into idx unless NULL, and advances the cursor (to the next epoch after the last
 * batch). All three must hold the iterator's batch size. Returns the number of rows (>= 1)
 * or a negative SMLT_E* code. */
int data_set_iter_next(struct data_set_iter *it, float *x, int32_t *y, uint32_t *idx);

/* Writes the row numbers of batch b of the given epoch into idx (batch size entries) without
 * moving the cursor. Returns the number of rows or -SMLT_EINVAL. */
int data_set_iter_batch_rows(struct data_set_iter *it, int64_t epoch, int64_t b, uint32_t *idx);

#endif
