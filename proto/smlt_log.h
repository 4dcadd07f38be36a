/* smlt_log.h: level-checked, printf-checked logging for every daemon and tool.
 *
 * One line per event on stderr: "2026-11-24T04:51:59.123Z smlt-ps[1234] WARN shard 0: ...".
 * The level check happens before the arguments are evaluated, so log_debug() in a hot path
 * costs one compare when debug is off. Not for per-request logging at info level. */
#ifndef SMLT_LOG_H
#define SMLT_LOG_H

enum smlt_log_level { SMLT_LOG_ERROR = 0, SMLT_LOG_WARN, SMLT_LOG_INFO, SMLT_LOG_DEBUG };

extern int smlt_log_level_cur;

/* Sets the program name printed on each line (borrowed; keep it static) and the level. */
void smlt_log_init(const char *prog, int level);

/* Parses "error", "warn", "info", "debug" (or 0-3). Returns the level or -1. */
int smlt_log_parse_level(const char *s);

void smlt_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SMLT_LOG_AT(lvl, ...)                                                                      \
    do {                                                                                           \
        if ((lvl) <= smlt_log_level_cur)                                                           \
            smlt_log_write((lvl), __VA_ARGS__);                                                    \
    } while (0)
#define log_error(...) SMLT_LOG_AT(SMLT_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) SMLT_LOG_AT(SMLT_LOG_WARN, __VA_ARGS__)
#define log_info(...) SMLT_LOG_AT(SMLT_LOG_INFO, __VA_ARGS__)
#define log_debug(...) SMLT_LOG_AT(SMLT_LOG_DEBUG, __VA_ARGS__)

#endif
