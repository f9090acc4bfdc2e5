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

#endif
