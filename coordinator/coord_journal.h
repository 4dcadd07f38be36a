/* coord_journal.h: each job's history on disk, so that it survives a coordinator restart.
 *
 * Layout: DATA_DIR/jobs/JOB_ID/journal.jsonl, one JSON object per line:
 *     {"t":1764000000123,"type":"state","state":"running"}
 * "t" is the wall clock in unix milliseconds and "type" names the record; the other members
 * are the caller's. The job's directory (coord_journal_dir()) also holds what the coordinator
 * keeps per job: the model file, worker logs. Directories are created 0700 and the journal
 * 0600: a spec may carry PS tokens.
 *
 * Writing: a record is one line written with one write(2) on an O_APPEND descriptor, so a
 * line is never interleaved with another writer's. Records of type "state" and those the
 * caller flags durable are fdatasync()ed before the call returns; the rest reach the disk when
 * the kernel flushes them (a crash may lose the last few, never a state change). Opening a
 * journal whose last line was cut by a crash ends that line first, so new records always start
 * on a line of their own.
 *
 * Reading: coord_journal_replay() hands every record to a callback in file order. A cut last
 * line (a crash mid-write) is skipped with a warning, and so is any corrupt line (bad JSON, no
 * "t" or "type", longer than COORD_JOURNAL_MAX_LINE), with its line number: one bad line never
 * loses the rest of the journal.
 *
 * Job ids are [A-Za-z0-9._-]{1,64} without "..", checked before any path is built. A journal
 * object is used by one thread at a time. */
#ifndef COORD_JOURNAL_H
#define COORD_JOURNAL_H

#include <stddef.h>

#include <jansson.h>

#define COORD_JOURNAL_MAX_ID 64
/* Longest record line accepted, written or read (the newline included). */
#define COORD_JOURNAL_MAX_LINE (1u << 20)
#define COORD_JOURNAL_FILE "journal.jsonl"

struct coord_journal;

/* Called with each record (rec is the whole object; borrowed for the call, do not keep it
 * without json_incref()) and its "type" (borrowed likewise). Returning nonzero stops. */
typedef int (*coord_journal_fn)(const char *type, json_t *rec, void *arg);

/* Returns 1 if id is a valid job id ([A-Za-z0-9._-]{1,64}, not containing ".."), else 0. */
int coord_journal_id_valid(const char *id);

/* Opens (creating DATA_DIR/jobs/JOB_ID/ and the journal as needed) the journal of job_id for
 * appending. Returns a journal to close with coord_journal_close(), or NULL with a message in
 * err (errlen bytes; may be NULL): a bad id, or the system call that failed. Borrows its
 * arguments for the call. */
struct coord_journal *coord_journal_open(const char *data_dir, const char *job_id, char *err,
                                         size_t errlen);

/* Appends one record of `type` (1..64 bytes) with the members of fields (a JSON object,
 * borrowed; NULL for none; it must not have "t" or "type"). Type "state" or durable != 0 also
 * fdatasync()s. Returns 0, SMLT_EINVAL (bad type or fields), SMLT_ETOOBIG (line longer than
 * COORD_JOURNAL_MAX_LINE), SMLT_ENOMEM or SMLT_ESYS (write or sync failed; logged with errno). */
int coord_journal_append(struct coord_journal *j, const char *type, json_t *fields, int durable);

/* Returns the job's directory, DATA_DIR/jobs/JOB_ID (borrowed; valid until close). */
const char *coord_journal_dir(const struct coord_journal *j);

/* Closes the journal and frees j. NULL is a no-op. */
void coord_journal_close(struct coord_journal *j);

/* Reads the journal of job_id and calls fn for each good record in order (see above for what
 * is skipped). Returns 0 after the last record, the callback's value if it returned nonzero,
 * SMLT_EINVAL for a bad id, SMLT_ENOTFOUND if the job has no journal, SMLT_ESYS if reading
 * failed. Never allocates more than COORD_JOURNAL_MAX_LINE plus one record. */
int coord_journal_replay(const char *data_dir, const char *job_id, coord_journal_fn fn,
                         void *arg);

/* Calls fn with the id of every job under DATA_DIR/jobs that has a journal, sorted by id
 * (strcmp). Entries that are not valid ids, not directories, or have no journal are skipped.
 * Returns 0 (also when DATA_DIR/jobs does not exist), fn's value if it returned nonzero,
 * SMLT_ESYS or SMLT_ENOMEM. */
int coord_journal_list(const char *data_dir, int (*fn)(const char *job_id, void *arg),
                       void *arg);

#endif
