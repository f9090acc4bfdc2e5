/* mapfile.h — read-only memory mapping of whole files. Weights are used in place
 * from the mapping; nothing is copied. */
#ifndef FLM_MAPFILE_H
#define FLM_MAPFILE_H
#include <stddef.h>

typedef struct {
    const unsigned char *data; /* NULL for an empty file */
    size_t size;
} flm_map;

/* Maps path read-only. Errors name the file. */
int flm_map_open(const char *path, flm_map *m);
void flm_map_close(flm_map *m);



/* Tells the kernel the pages covering [p, p+n) of a read-only mapping are not needed
 * any more (they are dropped from this process's resident set and re-read on next
 * use). Used by the converter to keep its memory at one tensor. */
void flm_map_release(const void *p, size_t n);
#endif
