/* fuzz_file.h: hands fuzzer input to the dataset loaders, which read files by path, without
 * touching the disk: the bytes go into a memfd and the loader opens /proc/self/fd/N (a fresh
 * open of the same in-memory file, reading from offset 0). One memfd per slot, reused for
 * every input. */
#ifndef FUZZ_FILE_H
#define FUZZ_FILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Replaces the contents of memfd `slot` (0..3) with data[0, n) and writes its path into
 * path (room for 64 bytes). Aborts when the memfd cannot be made: a broken harness must not
 * pass as a quiet fuzzer. */
static inline void fuzz_file_put(int slot, const uint8_t *data, size_t n, char *path)
{
    static int fds[4] = {-1, -1, -1, -1};
    if (fds[slot] < 0 && (fds[slot] = memfd_create("smlt-fuzz", MFD_CLOEXEC)) < 0)
        abort();
    int fd = fds[slot];
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
        abort();
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w <= 0)
            abort();
        data += w;
        n -= (size_t)w;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
}

#endif
