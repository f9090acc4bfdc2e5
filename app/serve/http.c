/* http.c — the HTTP glue on libmicrohttpd (the only file that knows it): one thread
 * per connection, the request body collected up to --max-body (413 beyond, from the
 * Content-Length header before reading when it is given), the API key checked in
 * constant time (401), connections idle or still sending their request closed after
 * --timeout seconds (libmicrohttpd's idle timeout and a watchdog, see conn_watch), answers and
 * SSE streams written, metrics counted per endpoint and status. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

typedef struct {
    char *body;
    size_t len, cap;
    int too_big;
    int answered;          /* a response was queued already (401/413 early) */
} conn_ctx;

/* The request clock (--timeout for a whole request, not only for idleness): libmicrohttpd's
 * connection timeout restarts at every byte, so a client sending its headers a byte a second
 * (slowloris) would hold a connection, and its thread, for ever. Each connection is watched from
 * when it starts waiting for a request until that request has fully arrived; a watchdog thread
 * shuts down the socket of one still sending after --timeout seconds (libmicrohttpd then closes
 * it). A connection is in the list from its STARTED to its CLOSED notification, which comes
 * before libmicrohttpd closes the socket, so the descriptor shut down is always this one's. */
typedef struct conn_watch {
    int fd;
    int receiving;              /* 1: waiting for or receiving a request */
    double since;               /* when it began, CLOCK_MONOTONIC seconds */
    struct conn_watch *prev, *next;
} conn_watch;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running, stop;
    unsigned timeout_s;
    conn_watch *head;
} g_watch = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *watchdog(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_watch.mu);
    while (!g_watch.stop) {
        double now = mono_now();
        for (conn_watch *w = g_watch.head; w; w = w->next)
            if (w->receiving && now - w->since > (double)g_watch.timeout_s) {
                shutdown(w->fd, SHUT_RDWR);
                w->receiving = 0;
            }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&g_watch.cv, &g_watch.mu, &until);
    }
    pthread_mutex_unlock(&g_watch.mu);
    return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_watch *w = calloc(1, sizeof *w);
        *socket_context = w;
        if (!w || !ci) return;
        w->fd = ci->connect_fd;
        w->receiving = 1;
        w->since = mono_now();
        pthread_mutex_lock(&g_watch.mu);
        w->next = g_watch.head;
        if (g_watch.head) g_watch.head->prev = w;
        g_watch.head = w;
        pthread_mutex_unlock(&g_watch.mu);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_watch *w = *socket_context;
        *socket_context = NULL;
        if (!w) return;
        pthread_mutex_lock(&g_watch.mu);
        if (w->prev) w->prev->next = w->next;
        else if (g_watch.head == w) g_watch.head = w->next;
        if (w->next) w->next->prev = w->prev;
        pthread_mutex_unlock(&g_watch.mu);
        free(w);
    }
}

/* receiving = 1: the connection waits for its next request (the clock restarts); 0: it arrived. */
static void watch_set(struct MHD_Connection *c, int receiving) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_watch *w = ci ? ci->socket_context : NULL;
    if (!w) return;
    pthread_mutex_lock(&g_watch.mu);
    w->receiving = receiving;
    w->since = mono_now();
    pthread_mutex_unlock(&g_watch.mu);
}

int serve_secret_equal(const char *got, size_t got_len, const char *want, size_t want_len) {
    /* the time depends on the expected key's length only, never on where they differ */
    unsigned char diff = (unsigned char)(got_len != want_len);
    for (size_t i = 0; i < want_len; i++) diff |= (unsigned char)((i < got_len ? (unsigned char)got[i] : 0) ^ (unsigned char)want[i]);
    return diff == 0;
}

static enum MHD_Result send_reply(serve_server *srv, struct MHD_Connection *c, const char *path, serve_reply *r);

static void stream_free(void *cls) { serve_stream_release(cls); }

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    ssize_t n = serve_stream_read(cls, buf, max);
    return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

static enum MHD_Result send_reply(serve_server *srv, struct MHD_Connection *c, const char *path, serve_reply *r) {
    struct MHD_Response *resp;
    if (r->stream) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, r->stream, stream_free);
        if (!resp) { serve_stream_release(r->stream); return MHD_NO; }
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    } else if (r->body) {
        resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
        if (!resp) { free(r->body); return MHD_NO; }
    } else {
        resp = MHD_create_response_from_buffer(r->len, (void *)r->static_body, MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
    }
    if (r->content_type) MHD_add_response_header(resp, "Content-Type", r->content_type);
    if (r->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", r->retry_after);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    serve_metrics_request(&srv->metrics, serve_metrics_endpoint(path), r->status);
    return ok;
}

static enum MHD_Result send_error(serve_server *srv, struct MHD_Connection *c, const char *path, int status,
                                  const char *msg, const char *code) {
    serve_reply r;
    memset(&r, 0, sizeof r);
    serve_reply_error(&r, status, msg, NULL, NULL, code);
    return send_reply(srv, c, path, &r);
}

/* The page and the health check are open; everything else needs the key when one is set. */
static int needs_key(const char *path) {
    return strcmp(path, "/") && strcmp(path, "/index.html") && strcmp(path, "/health");
}

static int key_ok(serve_server *srv, struct MHD_Connection *c) {
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    size_t want = strlen(srv->api_key);
    if (!a || strncasecmp(a, "Bearer ", 7)) {
        serve_secret_equal("", 0, srv->api_key, want); /* the same work either way */
        return 0;
    }
    a += 7;
    while (*a == ' ') a++;
    size_t n = strlen(a);
    while (n && a[n - 1] == ' ') n--;
    return serve_secret_equal(a, n, srv->api_key, want);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    serve_server *srv = cls;
    conn_ctx *x = *con_cls;
    if (!x) {
        if (!(x = calloc(1, sizeof *x))) return MHD_NO;
        *con_cls = x;
        if (srv->api_key && needs_key(url) && !key_ok(srv, c)) {
            x->answered = 1;
            return send_error(srv, c, url, 401, "a valid API key is required: send 'Authorization: Bearer KEY' (the "
                                                "server was started with --api-key)", "invalid_api_key");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || end == cl || n > srv->max_body) {
                char msg[200];
                snprintf(msg, sizeof msg, "the request body is larger than this server's limit of %zu bytes (--max-body)",
                         srv->max_body);
                x->answered = 1;
                return send_error(srv, c, url, 413, msg, "request_too_large");
            }
        }
        return MHD_YES;
    }
    if (x->answered) { *upload_size = 0; return MHD_YES; }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (x->too_big) return MHD_YES;
        if (x->len + n > srv->max_body) {
            x->too_big = 1;
            free(x->body);
            x->body = NULL;
            x->len = x->cap = 0;
            return MHD_YES;
        }
        if (x->len + n + 1 > x->cap) {
            size_t cap = (x->len + n + 1) * 2;
            if (cap > srv->max_body + 1) cap = srv->max_body + 1;
            char *b = realloc(x->body, cap);
            if (!b) { x->too_big = 1; return MHD_YES; }
            x->body = b;
            x->cap = cap;
        }
        memcpy(x->body + x->len, upload, n);
        x->len += n;
        return MHD_YES;
    }
    watch_set(c, 0); /* the whole request arrived */
    if (x->too_big) {
        char msg[200];
        snprintf(msg, sizeof msg, "the request body is larger than this server's limit of %zu bytes (--max-body)", srv->max_body);
        x->answered = 1;
        return send_error(srv, c, url, 413, msg, "request_too_large");
    }
    if (atomic_load(&srv->stopping) && strcmp(url, "/health")) {
        x->answered = 1;
        serve_reply r;
        memset(&r, 0, sizeof r);
        serve_reply_error(&r, 503, "the server is shutting down", "server_error", NULL, "server_shutting_down");
        return send_reply(srv, c, url, &r);
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    serve_http_req rq = {.method = method, .path = url, .body = x->body ? x->body : "", .len = x->len,
                         .fd = ci ? ci->connect_fd : -1};
    serve_reply r;
    serve_handle(srv, &rq, &r);
    x->answered = 1;
    if (r.close) {
        serve_metrics_request(&srv->metrics, serve_metrics_endpoint(url), 499);
        return MHD_NO;
    }
    return send_reply(srv, c, url, &r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls; (void)toe;
    watch_set(c, 1); /* kept alive: the clock runs for the next request */
    conn_ctx *x = *con_cls;
    if (!x) return;
    free(x->body);
    free(x);
    *con_cls = NULL;
}

static void quiet_log(void *cls, const char *fmt, va_list ap) { (void)cls; (void)fmt; (void)ap; }

int serve_http_start(serve_server *srv, const char *host, int port, char *err, size_t errcap) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g || !ai) {
        snprintf(err, errcap, "cannot resolve --host '%s': %s", host, gai_strerror(g));
        return -1;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)srv->timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)srv->max_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_EXTERNAL_LOGGER, quiet_log, NULL,
        MHD_OPTION_END);
    int e = errno;
    freeaddrinfo(ai);
    if (!d) {
        snprintf(err, errcap, "cannot listen on %s:%d: %s", host, port, e ? strerror(e) : "libmicrohttpd refused to start");
        return -1;
    }
    g_watch.timeout_s = srv->timeout_s;
    g_watch.stop = 0;
    g_watch.running = pthread_create(&g_watch.thread, NULL, watchdog, NULL) == 0;
    if (!g_watch.running) {
        MHD_stop_daemon(d);
        snprintf(err, errcap, "cannot start the request-timeout thread");
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : port;
    srv->daemon = d;
    return 0;
}

void serve_http_quiesce(serve_server *srv) {
    if (!srv->daemon) return;
    MHD_socket s = MHD_quiesce_daemon(srv->daemon);
    if (s != MHD_INVALID_SOCKET) close(s);
}

void serve_http_stop(serve_server *srv) {
    if (!srv->daemon) return;
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    if (g_watch.running) {
        pthread_mutex_lock(&g_watch.mu);
        g_watch.stop = 1;
        pthread_cond_signal(&g_watch.cv);
        pthread_mutex_unlock(&g_watch.mu);
        pthread_join(g_watch.thread, NULL);
        g_watch.running = 0;
    }
}
