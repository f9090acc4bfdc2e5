/* outfile.c — the output-file discipline (see outfile.h): checks before any work,
 * a temporary file unique to the writer, fsync + rename, nothing left on failure. */
#include "base/outfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/common.h"

#define TMP_SUFFIX ".tmp"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* What fieldlm reads from a model or adapter folder (config, tokenizer, template,
 * generation config, index, weights). Packages (*.gguf) are never read from a folder,
 * so re-running `convert DIR -o DIR/x.gguf` stays allowed. */
static bool is_folder_input(const char *name) {
    return ends_with(name, ".json") || ends_with(name, ".safetensors") || ends_with(name, ".jinja") ||
           !strcmp(name, "merges.txt");
}

bool flm_outfile_is_model_file(const char *name) {
    return is_folder_input(name) || ends_with(name, ".gguf") || ends_with(name, ".bin") || ends_with(name, ".pt") ||
           ends_with(name, ".pth");
}

const char *flm_outfile_strerror(int err) {
    if (err == EFBIG) return "file too large: file size limit reached (ulimit -f)";
    return strerror(err);
}

/* The folder part of a path ("." when there is none), malloc'ed. */
static char *folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return flm_strdup(".");
    return flm_strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

/* The target checks: not a directory, nothing but a regular file, a folder that
 * exists and is writable. *st / *exists describe the target (links resolved). */
static int check_target(const char *out, struct stat *st, bool *exists) {
    *exists = false;
    if (!out || !*out) return flm_fail(FLM_ERR_ARG, "empty output path");
    if (ends_with(out, "/"))
        return flm_fail(FLM_ERR_ARG, "%s: the output must be a file name, not a folder", out);
    if (stat(out, st) == 0) {
        if (S_ISDIR(st->st_mode))
            return flm_fail(FLM_ERR_ARG, "%s: is a directory; give a file name for the output (for example %s/out.gguf)", out, out);
        if (!S_ISREG(st->st_mode))
            return flm_fail(FLM_ERR_ARG, "%s: exists and is not a regular file (a device, FIFO or socket); fieldlm only "
                            "replaces regular files", out);
        *exists = true;
    } else if (errno != ENOENT) {
        return flm_fail(FLM_ERR_IO, "%s: cannot write there: %s", out, strerror(errno));
    }
    char *dir = folder_of(out);
    if (!dir) return FLM_ERR_NOMEM;
    struct stat ds;
    int rc = FLM_OK;
    if (stat(dir, &ds) != 0)
        rc = flm_fail(FLM_ERR_IO, "%s: the folder %s does not exist", out, dir);
    else if (!S_ISDIR(ds.st_mode))
        rc = flm_fail(FLM_ERR_IO, "%s: %s is not a folder", out, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        rc = flm_fail(FLM_ERR_IO, "%s: the folder %s is not writable: %s", out, dir, strerror(errno));
    free(dir);
    return rc;
}

static bool same_file(const struct stat *a, const struct stat *b) { return a->st_dev == b->st_dev && a->st_ino == b->st_ino; }

/* Compares the target with every folder input in dir (and, when `nested`, with the
 * templates in dir/additional_chat_templates). Returns 1 and the colliding path in
 * *hit, 0 when none, or an error status. */
static int scan_folder(const struct stat *target, const char *dir, bool nested, char **hit) {
    DIR *d = opendir(dir);
    if (!d) return 0; /* unreadable: the command will fail reading it, before any write */
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        bool sub = nested && !strcmp(e->d_name, "additional_chat_templates");
        if (!sub && !is_folder_input(e->d_name)) continue;
        char *p = flm_path_join(dir, e->d_name);
        if (!p) { found = FLM_ERR_NOMEM; break; }
        struct stat st;
        if (sub) {
            found = scan_folder(target, p, false, hit);
        } else if (stat(p, &st) == 0 && same_file(&st, target)) {
            *hit = p;
            p = NULL;
            found = 1;
        }
        free(p);
    }
    closedir(d);
    return found;
}

int flm_outfile_check(const char *out_path, const char *const *inputs, size_t n_inputs) {
    struct stat target;
    bool exists;
    int rc = check_target(out_path, &target, &exists);
    if (rc || !exists) return rc; /* a file that does not exist yet is no input */
    for (size_t i = 0; i < n_inputs; i++) {
        struct stat in;
        if (!inputs[i] || stat(inputs[i], &in) != 0) continue;
        char *hit = NULL;
        int found = 0;
        if (S_ISDIR(in.st_mode)) {
            found = scan_folder(&target, inputs[i], true, &hit);
        } else if (same_file(&in, &target)) {
            hit = flm_strdup(inputs[i]);
            found = hit ? 1 : FLM_ERR_NOMEM;
        }
        if (found < 0) return found;
        if (found) {
            if (!strcmp(hit, out_path))
                rc = flm_fail(FLM_ERR_ARG, "%s: is an input of this command; writing there would destroy it "
                              "(choose another output path)", out_path);
            else
                rc = flm_fail(FLM_ERR_ARG, "%s: is the same file as %s, an input of this command; writing there would "
                              "destroy it (choose another output path)", out_path, hit);
            free(hit);
            return rc;
        }
    }
    return FLM_OK;
}

/* The process's umask, read without changing it (umask(2) would, for every thread). */
static mode_t current_umask(void) {
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return mask;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned int v;
        if (sscanf(line, "Umask: %o", &v) == 1) { mask = (mode_t)v; break; }
    }
    fclose(f);
    return mask;
}

static void outfile_free(flm_outfile *of) {
    free(of->path);
    free(of->tmp);
    of->path = of->tmp = NULL;
    of->fd = -1;
}

int flm_outfile_open(const char *out_path, flm_outfile *of) {
    memset(of, 0, sizeof *of);
    of->fd = -1;
    struct stat st;
    bool exists;
    int rc = check_target(out_path, &st, &exists);
    if (rc) return rc;
    size_t n = strlen(out_path);
    of->path = flm_strdup(out_path);
    of->tmp = flm_malloc(n + sizeof ".XXXXXX" TMP_SUFFIX);
    if (!of->path || !of->tmp) { outfile_free(of); return FLM_ERR_NOMEM; }
    memcpy(of->tmp, out_path, n);
    memcpy(of->tmp + n, ".XXXXXX" TMP_SUFFIX, sizeof ".XXXXXX" TMP_SUFFIX);
    of->fd = mkostemps(of->tmp, (int)strlen(TMP_SUFFIX), O_CLOEXEC);
    if (of->fd < 0) {
        rc = flm_fail(FLM_ERR_IO, "%s: cannot create a temporary file beside it: %s", out_path, strerror(errno));
        outfile_free(of);
        return rc;
    }
    /* mkstemp creates 0600; give the file the permissions a plain creat() would */
    if (fchmod(of->fd, 0666 & ~current_umask()) != 0) {
        rc = flm_fail(FLM_ERR_IO, "%s: chmod %s: %s", out_path, of->tmp, strerror(errno));
        flm_outfile_abort(of);
    }
    return rc;
}

int flm_outfile_write(flm_outfile *of, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t r = write(of->fd, p, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return flm_fail(FLM_ERR_IO, "%s: writing at offset %llu: %s", of->path, (unsigned long long)of->written,
                            r < 0 ? flm_outfile_strerror(errno) : "no progress");
        p += r;
        n -= (size_t)r;
        of->written += (uint64_t)r;
    }
    return FLM_OK;
}

static int fsync_folder(const char *path) {
    char *dir = folder_of(path);
    if (!dir) return FLM_ERR_NOMEM;
    int rc = FLM_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL && errno != EROFS))
        rc = flm_fail(FLM_ERR_IO, "%s: fsync of the folder %s: %s", path, dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return rc;
}

int flm_outfile_commit(flm_outfile *of) {
    if (!of->tmp) return flm_fail(FLM_ERR_ARG, "output file: commit without open");
    int rc = FLM_OK;
    if (fsync(of->fd) != 0) rc = flm_fail(FLM_ERR_IO, "%s: fsync: %s", of->path, flm_outfile_strerror(errno));
    int fd = of->fd;
    of->fd = -1;
    if (close(fd) != 0 && !rc) rc = flm_fail(FLM_ERR_IO, "%s: close: %s", of->path, flm_outfile_strerror(errno));
    /* the target may have changed since the check (a folder or FIFO made meanwhile) */
    struct stat st;
    bool exists;
    if (!rc) rc = check_target(of->path, &st, &exists);
    if (!rc && rename(of->tmp, of->path) != 0)
        rc = flm_fail(FLM_ERR_IO, "%s: rename from %s: %s", of->path, of->tmp, strerror(errno));
    if (rc) {
        unlink(of->tmp);
    } else if ((rc = fsync_folder(of->path))) {
        unlink(of->path); /* keep the promise: a failure leaves nothing */
    }
    outfile_free(of);
    return rc;
}

void flm_outfile_abort(flm_outfile *of) {
    if (!of || !of->tmp) return; /* closed, committed or never opened */
    if (of->fd >= 0) close(of->fd);
    unlink(of->tmp);
    outfile_free(of);
}
