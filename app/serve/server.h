/* server.h — the state `fieldlm serve` shares between its modules, and the
 * interface between the HTTP glue (http.c, the only file that knows libmicrohttpd)
 * and the endpoints (endpoints.c): a request comes in as serve_http_req, an answer
 * goes out as serve_reply (a whole body, or a stream the glue reads until its end). */
#ifndef SERVE_SERVER_H
#define SERVE_SERVER_H
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fieldlm.h"
#include "metrics.h"
#include "slots.h"

typedef struct serve_stream serve_stream;

typedef struct {
    flm_handle *h;
    const char *model_id;       /* the name /v1/models lists (the model folder's or file's base name) */
    long long created;          /* when the server started (unix seconds) */
    int n_ctx;                  /* each slot's context */
    int n_vocab;
    serve_slots slots;
    serve_metrics metrics;
    const char *api_key;        /* NULL: no key needed */
    size_t max_body;            /* bytes */
    unsigned timeout_s;         /* idle connection timeout */
    unsigned max_connections;
    atomic_int stopping;        /* set on SIGINT/SIGTERM */
    atomic_ullong seed_counter; /* seeds for requests without one */
    /* streaming generations still running on their own threads */
    pthread_mutex_t workers_mu;
    pthread_cond_t workers_cv;
    int workers;
    void *daemon;               /* struct MHD_Daemon */
    int port;                   /* the port bound (after serve_http_start) */
} serve_server;

typedef struct {
    const char *method;
    const char *path;
    const char *body;
    size_t len;
    int fd;                     /* the client's socket: polled for a hang-up while generating */
} serve_http_req;

typedef struct {
    int status;
    const char *content_type;
    char *body;                 /* malloc'ed (the glue frees it) ... */
    const char *static_body;    /* ... or static */
    size_t len;
    int retry_after;            /* > 0: a Retry-After header (seconds) */
    serve_stream *stream;       /* non-NULL: the body is this stream (text/event-stream) */
    int close;                  /* the client vanished: close without answering */
} serve_reply;

/* endpoints.c */
void serve_handle(serve_server *srv, const serve_http_req *rq, serve_reply *out);
/* Fills out with OpenAI's error JSON. */
void serve_reply_error(serve_reply *out, int status, const char *message, const char *type, const char *param,
                       const char *code);
/* Blocks until the stream has bytes (copies at most max) or ends (returns -1). */
ssize_t serve_stream_read(serve_stream *st, char *buf, size_t max);
/* The client is gone or the answer is done: stops the generation and drops the reader's reference. */
void serve_stream_release(serve_stream *st);
/* Waits until no streaming generation runs any more. */
void serve_wait_workers(serve_server *srv);

/* http.c */
/* Binds host:port (port 0: any free port, srv->port gets it) and serves on libmicrohttpd's
 * threads. Returns 0, or -1 with a message in err. */
int serve_http_start(serve_server *srv, const char *host, int port, char *err, size_t errcap);
/* Stops accepting new connections. */
void serve_http_quiesce(serve_server *srv);
/* Closes every connection and joins the connection threads. */
void serve_http_stop(serve_server *srv);
/* Constant-time comparison of a presented secret with the expected one. */
int serve_secret_equal(const char *got, size_t got_len, const char *want, size_t want_len);

/* page.c (generated at build time from app/serve/chat.html) */
extern const unsigned char serve_page_html[];
extern const size_t serve_page_html_len;
#endif
