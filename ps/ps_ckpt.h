/* ps_ckpt.h: shard checkpoint files: one file per shard per checkpoint, written atomically,
 * every part CRC32-checked, the float arrays lz4-compressed where that pays.
 *
 * A checkpoint holds what a shard needs to continue exactly where it was: its id and key range,
 * the job's packed PartitionMap and name, the parameters, each optimizer state array and the
 * optimizer's step count (Adam's t), version and clock, and the exactly-once tables (every
 * rank's last counted and last applied step). ps_shard.c takes them off the data path (a copy
 * on the apply thread, the write on a writer thread); this module only writes and reads files.
 *
 * Files live in DIR/shard-<id>/ckpt-<step>.smltck. All integers are little-endian.
 *
 *    0  magic "SMLTCKPT"        8  format version (u32, 1)   12  flags (u32, 0)
 *   16  shard id (u32)         20  state arrays (u32, <= PS_CKPT_MAX_STATE)
 *   24  step (u64)             32  lo (u64)                 40  hi (u64)
 *   48  ranks (u32)            52  packed map length (u32)  56  file length (u64)
 *   64  job name length (u32)  68  optimizer (u32, enum smlt_optim)
 *   72  version (u64)          80  clock (u64)              88  updates (u64: Adam's t)
 *   96  reserved (u32, 0)     100  header CRC32 of bytes 0..99
 *  104  meta: last_counted[ranks], last_applied[ranks] (u64; UINT64_MAX: none), job name,
 *       packed PartitionMap; then its CRC32 (u32)
 *       then 1 + state arrays float arrays of hi - lo floats (parameters first), each cut in
 *       blocks of PS_CKPT_BLOCK floats (the last shorter): stored length (u32; equal to the
 *       block's raw bytes: stored raw, shorter: one lz4 block), CRC32 (u32) of the stored
 *       length's 4 bytes and the stored bytes, then the stored bytes.
 *  The file ends exactly after the last block.
 *
 * Every byte is under a CRC, so any single-byte change is detected. The reader checks each
 * count against proto/smlt_limits.h and every size against the file's length before it
 * allocates anything; an lz4 block is refused if it claims more than PS_CKPT_MAX_RATIO times
 * its stored size, so the largest allocation is bounded by the file's own size. */
#ifndef PS_CKPT_H
#define PS_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define PS_CKPT_MAGIC "SMLTCKPT"
#define PS_CKPT_FORMAT 1u
#define PS_CKPT_HDR_LEN 104u
#define PS_CKPT_MAX_STATE 4u
#define PS_CKPT_BLOCK (1u << 20) /* floats per block: 4 MiB */
#define PS_CKPT_MAX_RATIO 256u   /* lz4 cannot expand a block by more than this */
#define PS_CKPT_DEFAULT_KEEP 3u

/* One checkpoint. For ps_ckpt_write() every pointer is borrowed; from ps_ckpt_read() and
 * ps_ckpt_parse() the whole struct is owned and freed with ps_ckpt_free(). */
struct ps_ckpt {
    uint32_t shard;
    uint64_t step; /* the shard's version when it was taken */
    uint64_t lo, hi;
    uint64_t version, clock, updates;
    uint32_t optim;  /* enum smlt_optim */
    uint32_t nstate; /* optimizer state arrays */
    uint32_t nranks;
    uint64_t *last_counted, *last_applied; /* nranks each */
    char *job;                             /* NUL-terminated, may be "" */
    uint8_t *map_pb;                       /* packed smlt.PartitionMap */
    size_t map_len;
    float *params; /* hi - lo floats */
    float *state;  /* nstate arrays of hi - lo floats, back to back */
};

/* Writes c to DIR/shard-<c->shard>/ckpt-<c->step>.smltck (creating both directories), through
 * a temporary file, fsync, rename and a directory fsync: a reader sees the whole file or none.
 * *bytes (if non-NULL) gets the file's size. Returns 0, SMLT_EINVAL (bad counts) or SMLT_ESYS
 * with a message in err. Borrows c. Thread-safe (touches nothing shared). */
int ps_ckpt_write(const char *dir, const struct ps_ckpt *c, uint64_t *bytes, char *err,
                  size_t errlen);

/* Decodes a checkpoint held in memory (borrowed buf of len bytes): every check described above.
 * Returns 0 and a new checkpoint in *out, or SMLT_ECORRUPT / SMLT_ETOOBIG / SMLT_ENOMEM with a
 * message in err naming the part that is wrong. Never reads outside buf. */
int ps_ckpt_parse(const void *buf, size_t len, struct ps_ckpt **out, char *err, size_t errlen);

/* Reads and decodes the file at path (as ps_ckpt_parse()); SMLT_ENOTFOUND / SMLT_ESYS when it
 * cannot be read. */
int ps_ckpt_read(const char *path, struct ps_ckpt **out, char *err, size_t errlen);

void ps_ckpt_free(struct ps_ckpt *c);

/* Formats DIR/shard-<id>/ckpt-<step>.smltck into out. Returns 0 or SMLT_ETOOBIG. */
int ps_ckpt_path(char *out, size_t len, const char *dir, uint32_t shard, uint64_t step);

/* Lists the steps of the checkpoint files of shard id in dir, newest first, without reading
 * them: *steps is malloc'd (free() it; NULL when *n is 0). A missing directory is an empty
 * list. Returns 0, SMLT_ENOMEM or SMLT_ESYS. */
int ps_ckpt_list(const char *dir, uint32_t shard, uint64_t **steps, size_t *n);

/* Deletes all but the newest keep checkpoints of shard id (keep 0: PS_CKPT_DEFAULT_KEEP).
 * Returns how many were deleted, or a negative code. */
int ps_ckpt_prune(const char *dir, uint32_t shard, uint32_t keep);

/* Finds and reads a checkpoint of shard id: step 0 means the newest one that reads back valid,
 * any other step exactly that one. Corrupt or truncated files on the way are skipped and each
 * is logged and described in report (reportlen bytes, "; "-separated; may be NULL), and
 * *corrupt (if non-NULL) counts them. Returns 0 and *out, SMLT_ENOTFOUND (none valid, or not
 * that step), or the read error of an explicit step, with a message in err. */
int ps_ckpt_find(const char *dir, uint32_t shard, uint64_t step, struct ps_ckpt **out,
                 char *report, size_t reportlen, uint32_t *corrupt, char *err, size_t errlen);

/* Checks every checkpoint file of shard id (reads each whole: CRCs and sizes): *steps gets
 * the valid steps, newest first (malloc'd, free() it), *n their count; corrupt ones are
 * reported as in ps_ckpt_find(). Returns 0 or a negative code. */
int ps_ckpt_valid_steps(const char *dir, uint32_t shard, uint64_t **steps, size_t *n,
                        char *report, size_t reportlen, uint32_t *corrupt);

#endif
