/* mapfile.c — mmap wrapper. */
#include "base/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"

int flm_map_open(const char *path, flm_map *m) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return flm_fail(FLM_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return flm_fail(FLM_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return flm_fail(FLM_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return flm_fail(FLM_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd); /* the mapping stays valid */
    return FLM_OK;
}

void flm_map_close(flm_map *m) {
    if (m->data) munmap((void *)m->data, m->size);
    memset(m, 0, sizeof *m);
}

void flm_map_release(const void *p, size_t n) {
    if (!p || !n) return;
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    uintptr_t a = (uintptr_t)p & ~((uintptr_t)ps - 1);
    uintptr_t b = ((uintptr_t)p + n + (uintptr_t)ps - 1) & ~((uintptr_t)ps - 1);
    madvise((void *)a, b - a, MADV_DONTNEED);
}
