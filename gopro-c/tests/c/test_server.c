/* The C server with C callbacks, tested with the C client in the same
 * process: handlers, the authenticator, the memory budget and the stats;
 * the C client against scripted fake servers (GOAWAY, protocol errors,
 * silence). With --serve, it then serves on a free port for other peers
 * (the Rust client): it prints "PORT n", serves until stdin closes, then
 * stops gracefully. Usage: test_server [--serve] */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "net.h"
#include "pipeline.h"
#include "reply.h"

#define CMD_ECHO 16
#define CMD_FAIL 17
#define CMD_SLOW 18
#define CMD_NESTED 19
#define CMD_NO_REASON 20

struct app {
  pthread_mutex_t lock;
  int calls;
  int nested_status; /* what a blocking call from inside a callback got */
};

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* Runs on the library's worker threads, possibly on two at once. */
static int handle(void *user_data, uint8_t command, const uint8_t *body, size_t body_len,
                  gopro_reply *reply) {
  struct app *app = (struct app *)user_data;
  pthread_mutex_lock(&app->lock);
  app->calls++;
  pthread_mutex_unlock(&app->lock);
  switch (command) {
  case CMD_ECHO: {
    uint8_t out[256];
    if (body_len + 2 > sizeof out) {
      gopro_reply_set_error(reply, "too long for this handler");
      return GOPRO_STATUS_INVALID_ARGUMENT;
    }
    out[0] = 'c';
    out[1] = ':';
    if (body_len > 0) memcpy(out + 2, body, body_len);
    return gopro_reply_set_body(reply, out, body_len + 2);
  }
  case CMD_FAIL:
    gopro_reply_set_error(reply, "no such thing");
    return GOPRO_STATUS_INVALID_ARGUMENT;
  case CMD_SLOW:
    sleep_ms(300);
    return gopro_reply_set_body(reply, (const uint8_t *)"slow", 4);
  case CMD_NESTED: {
    gopro_client *c = NULL;
    int st = gopro_client_connect("127.0.0.1:1", 0, 0, 0, &c);
    pthread_mutex_lock(&app->lock);
    app->nested_status = st;
    pthread_mutex_unlock(&app->lock);
    gopro_reply_set_command(reply, 21); /* answer with another command, empty body */
    return GOPRO_STATUS_OK;
  }
  case CMD_NO_REASON:
    return GOPRO_STATUS_TIMEOUT;
  default:
    return GOPRO_STATUS_OK; /* nothing sent back */
  }
}

/* Echoes any body, however large. */
static int echo_any(void *user_data, uint8_t command, const uint8_t *body, size_t body_len,
                    gopro_reply *reply) {
  (void)user_data;
  (void)command;
  return gopro_reply_set_body(reply, body, body_len);
}

static int authenticate(void *user_data, const uint8_t *credentials, size_t len,
                        gopro_reply *reply) {
  (void)user_data;
  if (len == 11 && memcmp(credentials, "user:secret", 11) == 0) {
    return GOPRO_STATUS_OK;
  }
  gopro_reply_set_error(reply, "bad credentials");
  return GOPRO_STATUS_INVALID_ARGUMENT;
}

/* Checks a reply (its version unread) and frees it. */
static void expect_reply(gopro_frame *reply, uint8_t command, const char *body) {
  check_reply(reply, command, body, NULL);
  gopro_frame_free(reply);
}

static gopro_server_config *app_config(struct app *app) {
  gopro_server_config *config = NULL;
  OK(gopro_server_config_new(&config));
  OK(gopro_server_config_set_read_timeout(config, 5000));
  OK(gopro_server_config_set_write_timeout(config, 5000));
  OK(gopro_server_config_set_max_body(config, 1024));
  OK(gopro_server_config_set_max_connections(config, 64));
  OK(gopro_server_config_set_grace(config, 2000));
  OK(gopro_server_config_set_prelogin_max_body(config, 512));
  OK(gopro_server_config_set_max_login_failures(config, 2));
  {
    int cmd;
    for (cmd = CMD_ECHO; cmd <= CMD_NO_REASON; cmd++) {
      OK(gopro_server_config_set_handler(config, (uint8_t)cmd, handle, app));
    }
  }
  return config;
}

static void address(char *buf, size_t cap, const gopro_server *server) {
  uint16_t port = 0;
  OK(gopro_server_port(server, &port));
  snprintf(buf, cap, "127.0.0.1:%u", (unsigned)port);
}

static void test_config_errors(void) {
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  OK(gopro_server_config_new(&config));
  EXPECT(gopro_server_config_new(NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_read_timeout(config, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_server_config_set_write_timeout(NULL, 5), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_max_connections(config, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_server_config_set_handler(config, GOPRO_COMMAND_ERROR, handle, NULL),
         GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_server_config_set_handler(config, 7, handle, NULL), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_server_config_set_handler(config, 16, NULL, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_authenticator(config, NULL, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_start(NULL, config, &server), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_start("127.0.0.1:0", config, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_start("256.0.0.1:0", config, &server), GOPRO_STATUS_BIND_FAILED);
  CHECK(server == NULL);
  EXPECT(gopro_server_port(NULL, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_stop(NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_reply_set_body(NULL, NULL, 0), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_reply_set_error(NULL, "x"), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_reply_set_command(NULL, 21), GOPRO_STATUS_NULL_ARGUMENT);
  /* NULL for the config of every setter. */
  EXPECT(gopro_server_config_set_read_timeout(NULL, 5), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `config` is NULL");
  EXPECT(gopro_server_config_set_max_body(NULL, 5), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_max_connections(NULL, 5), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_grace(NULL, 5), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_prelogin_max_body(NULL, 5), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_max_login_failures(NULL, 5), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_handler(NULL, 16, handle, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `config` is NULL");
  EXPECT(gopro_server_config_set_authenticator(NULL, authenticate, NULL),
         GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `config` is NULL");
  EXPECT(gopro_server_start("\xff\xfe:0", config, &server), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("argument `addr` is not UTF-8");
  CHECK(server == NULL);
  gopro_server_config_free(config);
  gopro_server_config_free(NULL);
  gopro_server_free(NULL);
}

static void test_app_server(void) {
  struct app app;
  gopro_server_config *config;
  gopro_server *server = NULL, *second = NULL;
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  char addr[64];
  memset(&app, 0, sizeof app);
  pthread_mutex_init(&app.lock, NULL);
  config = app_config(&app);
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config); /* the server has its own copy */
  address(addr, sizeof addr, server);

  /* The port is taken now. */
  EXPECT(gopro_server_start(addr, NULL, &second), GOPRO_STATUS_BIND_FAILED);

  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));
  OK(gopro_client_heartbeat(client));
  OK(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"hi", 2, &reply));
  expect_reply(reply, GOPRO_COMMAND_MESSAGE, "Server says: hi");
  OK(gopro_client_request(client, CMD_ECHO, (const uint8_t *)"hello", 5, &reply));
  expect_reply(reply, CMD_ECHO, "c:hello");
  OK(gopro_client_request(client, CMD_ECHO, NULL, 0, &reply));
  expect_reply(reply, CMD_ECHO, "c:");
  EXPECT(gopro_client_request(client, CMD_FAIL, NULL, 0, &reply), GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE("no such thing");
  EXPECT(gopro_client_request(client, CMD_NO_REASON, NULL, 0, &reply),
         GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE(gopro_status_str(GOPRO_STATUS_TIMEOUT));
  OK(gopro_client_request(client, CMD_NESTED, NULL, 0, &reply));
  expect_reply(reply, 21, "");
  CHECK(app.nested_status == GOPRO_STATUS_BLOCKING_IN_RUNTIME);
  check_log_status((int)app.nested_status);
  EXPECT(gopro_client_request(client, 99, NULL, 0, &reply), GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE("unknown command: 99");
  {
    uint8_t big[1025];
    memset(big, 'z', sizeof big);
    /* Over the server's limit of 1024: ERROR, then the server closes. */
    EXPECT(gopro_client_request(client, CMD_ECHO, big, sizeof big, &reply),
           GOPRO_STATUS_SERVER_ERROR);
    EXPECT_MESSAGE("frame body of 1025 bytes exceeds the limit of 1024 bytes");
  }
  gopro_client_free(client);

  /* Pipelined application requests, in order. */
  client = NULL;
  OK(gopro_client_connect(addr, 0, 0, 0, &client));
  check_pipeline(client, CMD_ECHO, 200, "", "c:");
  gopro_client_free(client);

  /* A call that runs out of time leaves the connection open; a server that
   * leaves its oldest request unanswered a tenth longer than the timeout
   * (the handler takes 300 ms) is given up, and the client is closed. */
  client = NULL;
  OK(gopro_client_connect(addr, 0, 100, 0, &client));
  EXPECT(gopro_client_request(client, CMD_SLOW, NULL, 0, &reply), GOPRO_STATUS_TIMEOUT);
  sleep_ms(150);
  EXPECT(gopro_client_heartbeat(client), GOPRO_STATUS_CLOSED);
  gopro_client_free(client);

  OK(gopro_server_stop(server));
  OK(gopro_server_stop(server));
  {
    uint16_t port;
    EXPECT(gopro_server_port(server, &port), GOPRO_STATUS_CLOSED);
  }
  gopro_server_free(server);
  CHECK(app.calls >= 200);
  pthread_mutex_destroy(&app.lock);
}

static void test_authenticator(void) {
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  char addr[64];
  OK(gopro_server_config_new(&config));
  OK(gopro_server_config_set_authenticator(config, authenticate, NULL));
  OK(gopro_server_config_set_handler(config, CMD_ECHO, handle, NULL));
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config);
  address(addr, sizeof addr, server);
  OK(gopro_client_connect(addr, 0, 0, 0, &client));
  OK(gopro_client_heartbeat(client)); /* allowed before login */
  EXPECT(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, NULL, 0, &reply),
         GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE("not authenticated");
  EXPECT(gopro_client_login(client, (const uint8_t *)"user:wrong", 10),
         GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE("login failed: bad credentials");
  OK(gopro_client_login(client, (const uint8_t *)"user:secret", 11));
  OK(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"in", 2, &reply));
  expect_reply(reply, GOPRO_COMMAND_MESSAGE, "Server says: in");
  gopro_client_free(client);
  gopro_server_free(server); /* stops it */
}

/* Polls the server's stats until `frames_in` and `frames_out` frames have
 * been counted, `accepted` connections accepted and all of them closed with
 * nothing left buffered (frames are counted per batch, and a connection is
 * counted closed once its task ends), or 5 s have passed. */
static void settled_stats(const gopro_server *server, uint64_t accepted, uint64_t frames_in,
                          uint64_t frames_out, gopro_stats *out) {
  int i;
  for (i = 0; i < 500; i++) {
    OK(gopro_server_stats(server, out, sizeof *out));
    if (out->connections == 0 && out->connections_accepted >= accepted &&
        out->frames_in >= frames_in && out->frames_out >= frames_out &&
        out->bytes_buffered == 0) {
      break;
    }
    sleep_ms(10);
  }
}

static void test_memory_budget(void) {
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  gopro_stats stats;
  uint8_t big[1024];
  char addr[64];
  int i;
  OK(gopro_server_config_new(&config));
  OK(gopro_server_config_set_max_body(config, 1024));
  OK(gopro_server_config_set_handler(config, CMD_ECHO, echo_any, NULL));
  EXPECT(gopro_server_config_set_memory_budget(NULL, 1032), GOPRO_STATUS_NULL_ARGUMENT);

  /* max_body + 7: accepted by the setter, refused when the server starts. */
  OK(gopro_server_config_set_memory_budget(config, 1024 + GOPRO_HEADER_LEN - 1));
  EXPECT(gopro_server_start("127.0.0.1:0", config, &server), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("invalid server setting: memory_budget (1031 bytes) must be at least "
                 "max_body + 8 (1032 bytes), or a frame of max_body could never be received");
  CHECK(server == NULL);

  /* max_body + 8: a frame of max_body fits, and its echo too, twice (the
   * budget is given back after each). */
  OK(gopro_server_config_set_memory_budget(config, 1024 + GOPRO_HEADER_LEN));
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config);
  OK(gopro_server_stats(server, &stats, sizeof stats));
  CHECK(stats.memory_budget == 1032);
  address(addr, sizeof addr, server);
  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));
  for (i = 0; i < 2; i++) {
    uint8_t c = 0;
    const uint8_t *b = NULL;
    size_t len = 0;
    memset(big, 'a' + i, sizeof big);
    OK(gopro_client_request(client, CMD_ECHO, big, sizeof big, &reply));
    OK(gopro_frame_get(reply, &c, NULL, &b, &len));
    CHECK(c == CMD_ECHO && len == sizeof big && memcmp(b, big, len) == 0);
    gopro_frame_free(reply);
  }
  gopro_client_free(client);
  settled_stats(server, 1, 2, 2, &stats);
  CHECK(stats.frames_in == 2 && stats.frames_out == 2);
  CHECK(stats.bytes_buffered == 0 && stats.errors_protocol == 0);
  gopro_server_free(server);
}

static void test_stats(void) {
  struct app app;
  gopro_server_config *config;
  gopro_server *server = NULL;
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  gopro_stats stats;
  char addr[64];
  uint16_t port = 0;
  memset(&app, 0, sizeof app);
  pthread_mutex_init(&app.lock, NULL);
  config = app_config(&app);
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config);
  address(addr, sizeof addr, server);
  OK(gopro_server_port(server, &port));

  EXPECT(gopro_server_stats(NULL, &stats, sizeof stats), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_stats(server, NULL, sizeof stats), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_server_stats(server, &stats, sizeof stats));
  CHECK(stats.connections == 0 && stats.connections_accepted == 0);
  CHECK(stats.frames_in == 0 && stats.frames_out == 0 && stats.bytes_buffered == 0);
  CHECK(stats.memory_budget == GOPRO_DEFAULT_MEMORY_BUDGET); /* the default */

  /* Three requests, one of them failed by its handler. */
  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));
  OK(gopro_client_heartbeat(client));
  OK(gopro_client_request(client, CMD_ECHO, (const uint8_t *)"x", 1, &reply));
  expect_reply(reply, CMD_ECHO, "c:x");
  EXPECT(gopro_client_request(client, CMD_FAIL, NULL, 0, &reply), GOPRO_STATUS_SERVER_ERROR);
  OK(gopro_server_stats(server, &stats, sizeof stats));
  CHECK(stats.connections_accepted == 1);
  gopro_client_free(client);

  /* Bad magic: the server answers ERROR and closes. */
  {
    uint8_t buf[256];
    int fd = loopback_connect(port);
    CHECK(write(fd, "XX\x01\x01\x00\x00\x00\x00", 8) == 8);
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
  }

  settled_stats(server, 2, 3, 4, &stats);
  CHECK(stats.connections == 0);
  CHECK(stats.connections_accepted == 2);
  CHECK(stats.frames_in == 3);
  CHECK(stats.frames_out == 4); /* 3 replies and the ERROR for the bad magic */
  CHECK(stats.bytes_buffered == 0);
  CHECK(stats.errors_protocol == 1);
  CHECK(stats.errors_handler == 1);
  CHECK(stats.errors_busy == 0 && stats.errors_login == 0);
  CHECK(stats.errors_read_timeout == 0 && stats.errors_write_timeout == 0);

  /* Still readable after the server has stopped: the final counts. */
  OK(gopro_server_stop(server));
  OK(gopro_server_stats(server, &stats, sizeof stats));
  CHECK(stats.connections == 0 && stats.connections_accepted == 2 && stats.frames_in == 3);
  gopro_server_free(server);
  pthread_mutex_destroy(&app.lock);
}

/* A scripted peer: accepts one connection, reads one frame, writes
 * `reply` (or closes at once if `close_after` is set), then waits for the
 * client to hang up. */
struct fake {
  int fd;
  uint16_t port;
  uint8_t reply[64];
  size_t reply_len;
  int close_after;
  pthread_t thread;
};

static int read_full(int fd, uint8_t *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = read(fd, buf + got, len - got);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static void *fake_run(void *arg) {
  struct fake *f = (struct fake *)arg;
  uint8_t head[GOPRO_HEADER_LEN], body[1024];
  uint8_t version, command;
  uint32_t length;
  int conn = accept(f->fd, NULL, NULL);
  CHECK(conn >= 0);
  CHECK(read_full(conn, head, sizeof head) == 0);
  OK(gopro_header_decode(head, sizeof head, &version, &command, &length));
  CHECK(length <= sizeof body && read_full(conn, body, length) == 0);
  if (!f->close_after) {
    if (f->reply_len > 0) CHECK(write(conn, f->reply, f->reply_len) == (ssize_t)f->reply_len);
    while (read(conn, body, sizeof body) > 0) {
    }
  }
  close(conn);
  close(f->fd);
  return NULL;
}

static void fake_start(struct fake *f) {
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  f->fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(f->fd >= 0);
  CHECK(bind(f->fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(listen(f->fd, 1) == 0);
  CHECK(getsockname(f->fd, (struct sockaddr *)&sa, &len) == 0);
  f->port = ntohs(sa.sin_port);
  CHECK(pthread_create(&f->thread, NULL, fake_run, f) == 0);
}

static gopro_client *fake_client(struct fake *f, uint32_t timeout_ms) {
  char addr[64];
  gopro_client *client = NULL;
  fake_start(f);
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)f->port);
  OK(gopro_client_connect(addr, 0, timeout_ms, 0, &client));
  return client;
}

static void fake_done(struct fake *f, gopro_client *client) {
  gopro_client_free(client);
  CHECK(pthread_join(f->thread, NULL) == 0);
}

static void test_fake_servers(void) {
  struct fake f;
  gopro_client *client;
  gopro_frame *reply = NULL;
  size_t in_flight = 0;

  /* GOAWAY: reported distinctly, with the reason; the request was not handled. */
  memset(&f, 0, sizeof f);
  OK(gopro_frame_encode(1, GOPRO_COMMAND_GOAWAY, (const uint8_t *)"maintenance", 11,
                        GOPRO_DEFAULT_MAX_BODY, f.reply, sizeof f.reply, &f.reply_len));
  client = fake_client(&f, 2000);
  EXPECT(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"a", 1, &reply),
         GOPRO_STATUS_GOAWAY);
  EXPECT_MESSAGE("maintenance");
  /* GOAWAY was the request's answer: nothing is left in flight. */
  OK(gopro_client_in_flight(client, &in_flight));
  CHECK(in_flight == 0);
  EXPECT(gopro_client_heartbeat(client), GOPRO_STATUS_GOAWAY);
  fake_done(&f, client);

  /* Bytes that are not GoPro. */
  memset(&f, 0, sizeof f);
  memcpy(f.reply, "\x47\x30\x01\x00\x00\x00\x00\x00", 8);
  f.reply_len = 8;
  client = fake_client(&f, 2000);
  EXPECT(gopro_client_request(client, 1, NULL, 0, &reply), GOPRO_STATUS_PROTOCOL_ERROR);
  fake_done(&f, client);

  /* A HEARTBEAT answered with something else. */
  memset(&f, 0, sizeof f);
  OK(gopro_frame_encode(1, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"x", 1, 64, f.reply,
                        sizeof f.reply, &f.reply_len));
  client = fake_client(&f, 2000);
  EXPECT(gopro_client_heartbeat(client), GOPRO_STATUS_UNEXPECTED_REPLY);
  fake_done(&f, client);

  /* Silence: a timeout. */
  memset(&f, 0, sizeof f);
  client = fake_client(&f, 150);
  EXPECT(gopro_client_request(client, 1, NULL, 0, &reply), GOPRO_STATUS_TIMEOUT);
  /* Unanswered for a tenth longer than the timeout: given up, and closed. */
  sleep_ms(100);
  EXPECT(gopro_client_request(client, 1, NULL, 0, &reply), GOPRO_STATUS_CLOSED);
  fake_done(&f, client);

  /* The server hangs up without a reply. */
  memset(&f, 0, sizeof f);
  f.close_after = 1;
  client = fake_client(&f, 2000);
  EXPECT(gopro_client_request(client, 1, NULL, 0, &reply), GOPRO_STATUS_CONNECTION_LOST);
  EXPECT(gopro_client_request(client, 1, NULL, 0, &reply), GOPRO_STATUS_CLOSED);
  fake_done(&f, client);
}

/* What the callbacks of test_callback_pointers did, through their user_data. */
struct probe {
  pthread_mutex_t lock;
  const char *secret; /* the only credentials the authenticator accepts */
  int logins;
  gopro_server *server;
  int stop_status, null_reply_status, null_body_status, null_reason_status;
  uint8_t seen[16];
  size_t seen_len;
};

/* Refuses with a status and no reason: the reason is the status's string. */
static int probe_authenticate(void *user_data, const uint8_t *credentials, size_t len,
                              gopro_reply *reply) {
  struct probe *p = (struct probe *)user_data;
  int ok;
  (void)reply;
  pthread_mutex_lock(&p->lock);
  p->logins++;
  ok = len == strlen(p->secret) && memcmp(credentials, p->secret, len) == 0;
  pthread_mutex_unlock(&p->lock);
  return ok ? GOPRO_STATUS_OK : GOPRO_STATUS_TIMEOUT;
}

/* NULL arguments and a blocking call from inside a handler; echoes the body,
 * or refuses an empty one with a reason that is not UTF-8. */
static int probe_handle(void *user_data, uint8_t command, const uint8_t *body, size_t body_len,
                        gopro_reply *reply) {
  struct probe *p = (struct probe *)user_data;
  pthread_mutex_lock(&p->lock);
  p->stop_status = gopro_server_stop(p->server);
  p->null_reply_status = gopro_reply_set_command(NULL, command);
  p->null_body_status = gopro_reply_set_body(reply, NULL, 3);
  p->null_reason_status = gopro_reply_set_error(reply, NULL);
  p->seen_len = body_len < sizeof p->seen ? body_len : sizeof p->seen;
  if (p->seen_len > 0) memcpy(p->seen, body, p->seen_len);
  pthread_mutex_unlock(&p->lock);
  if (body_len == 0) {
    gopro_reply_set_error(reply, "bad \xff byte");
    return GOPRO_STATUS_INVALID_ARGUMENT;
  }
  return gopro_reply_set_body(reply, body, body_len);
}

static void test_callback_pointers(void) {
  static const char secret[] = "user:secret";
  struct probe p;
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  char addr[64], want[128];
  uint8_t *credentials = malloc(sizeof secret - 1);
  uint16_t port = 99;
  CHECK(credentials != NULL);
  memcpy(credentials, secret, sizeof secret - 1);
  memset(&p, 0, sizeof p);
  pthread_mutex_init(&p.lock, NULL);
  p.secret = secret;
  OK(gopro_server_config_new(&config));
  OK(gopro_server_config_set_authenticator(config, probe_authenticate, &p));
  OK(gopro_server_config_set_handler(config, CMD_ECHO, probe_handle, &p));
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config);
  pthread_mutex_lock(&p.lock);
  p.server = server;
  pthread_mutex_unlock(&p.lock);
  EXPECT(gopro_server_port(server, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_port` is NULL");
  CHECK(port == 99);
  address(addr, sizeof addr, server);

  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));
  EXPECT(gopro_client_login(client, (const uint8_t *)"user:wrong", 10), GOPRO_STATUS_SERVER_ERROR);
  snprintf(want, sizeof want, "login failed: %s", gopro_status_str(GOPRO_STATUS_TIMEOUT));
  EXPECT_MESSAGE(want);
  OK(gopro_client_login(client, credentials, sizeof secret - 1));
  free(credentials);

  OK(gopro_client_request(client, CMD_ECHO, (const uint8_t *)"abc", 3, &reply));
  expect_reply(reply, CMD_ECHO, "abc");
  pthread_mutex_lock(&p.lock);
  CHECK(p.logins == 2);
  CHECK(p.stop_status == GOPRO_STATUS_BLOCKING_IN_RUNTIME);
  check_log_status((int)p.stop_status);
  CHECK(p.null_reply_status == GOPRO_STATUS_NULL_ARGUMENT);
  CHECK(p.null_body_status == GOPRO_STATUS_NULL_ARGUMENT);
  CHECK(p.null_reason_status == GOPRO_STATUS_NULL_ARGUMENT);
  CHECK(p.seen_len == 3 && memcmp(p.seen, "abc", 3) == 0);
  pthread_mutex_unlock(&p.lock);
  /* Invalid UTF-8 in the reason is replaced. */
  EXPECT(gopro_client_request(client, CMD_ECHO, NULL, 0, &reply), GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE("bad \xef\xbf\xbd byte");
  /* The stop from inside the handler was refused: still serving. */
  OK(gopro_client_heartbeat(client));
  gopro_client_free(client);
  gopro_server_free(server);
  pthread_mutex_destroy(&p.lock);
}

/* A NULL config: the defaults. */
static void test_default_config(void) {
  gopro_server *server = NULL;
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  char addr[64];
  OK(gopro_server_start("127.0.0.1:0", NULL, &server));
  address(addr, sizeof addr, server);
  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));
  OK(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"hi", 2, &reply));
  expect_reply(reply, GOPRO_COMMAND_MESSAGE, "Server says: hi");
  gopro_client_free(client);
  gopro_server_free(server);
}

/* gopro_stats as headers of other versions declare it. "An older header":
 * one counter fewer than the first version, which the library refuses. "A
 * newer header": two counters more than this library knows, which it
 * zeroes. Each with a guard byte after it that must stay untouched. */
struct stats_older {
  uint64_t counters[12];
};
struct stats_newer {
  gopro_stats known;
  uint64_t later_counters[2];
};

static void test_stats_sizes(void) {
  gopro_server *server = NULL;
  struct {
    struct stats_older stats;
    unsigned char guard;
  } older;
  struct {
    struct stats_newer stats;
    unsigned char guard;
  } newer;
  struct {
    gopro_stats stats;
    unsigned char guard;
  } current;
  OK(gopro_server_start("127.0.0.1:0", NULL, &server));

  memset(&older, 0xAA, sizeof older);
  EXPECT(gopro_server_stats(server, (gopro_stats *)(void *)&older.stats, sizeof older.stats),
         GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_server_stats(server, &current.stats, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  /* The first version of the struct had 13 counters. */
  EXPECT(gopro_server_stats(server, &current.stats, 13 * sizeof(uint64_t) - 1),
         GOPRO_STATUS_INVALID_ARGUMENT);
  {
    const unsigned char *p = (const unsigned char *)&older;
    size_t i;
    for (i = 0; i < sizeof older; i++) {
      CHECK(p[i] == 0xAA); /* nothing written, the guard included */
    }
  }

  memset(&current, 0xAA, sizeof current);
  OK(gopro_server_stats(server, &current.stats, sizeof current.stats));
  CHECK(current.stats.memory_budget == GOPRO_DEFAULT_MEMORY_BUDGET);
  CHECK(current.stats.errors_io == 0 && current.stats.connections == 0);
  CHECK(current.guard == 0xAA);

  memset(&newer, 0xAA, sizeof newer);
  OK(gopro_server_stats(server, &newer.stats.known, sizeof newer.stats));
  CHECK(newer.stats.known.memory_budget == GOPRO_DEFAULT_MEMORY_BUDGET);
  CHECK(newer.stats.known.errors_io == 0);
  CHECK(newer.stats.later_counters[0] == 0 && newer.stats.later_counters[1] == 0);
  CHECK(newer.guard == 0xAA);
  gopro_server_free(server);
}

/* A reply buffer of one byte: every reply is written on its own, and a
 * pipeline is still answered in order. raise_nofile_limit off is accepted. */
static void test_small_reply_buffer(void) {
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  gopro_client *client = NULL;
  char addr[64];
  OK(gopro_server_config_new(&config));
  EXPECT(gopro_server_config_set_max_buffered_replies(NULL, 1), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_raise_nofile_limit(NULL, false), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_server_config_set_max_buffered_replies(config, 1));
  OK(gopro_server_config_set_raise_nofile_limit(config, false));
  OK(gopro_server_config_set_handler(config, CMD_ECHO, echo_any, NULL));
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config);
  address(addr, sizeof addr, server);
  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));
  check_pipeline(client, GOPRO_COMMAND_MESSAGE, 300, "m", "Server says: ");
  check_pipeline(client, CMD_ECHO, 300, "e", "");
  gopro_client_free(client);
  gopro_server_free(server);
}

/* Answers with the server's name, its user data. */
static int whoami(void *user_data, uint8_t command, const uint8_t *body, size_t body_len,
                  gopro_reply *reply) {
  const char *name = (const char *)user_data;
  (void)command;
  (void)body;
  (void)body_len;
  return gopro_reply_set_body(reply, (const uint8_t *)name, strlen(name));
}

/* A server named `name` on `addr`, SO_REUSEPORT as `reuse_port` says;
 * returns the status of gopro_server_start. */
static gopro_status start_named(const char *addr, bool reuse_port, const char *name,
                                gopro_server **out) {
  gopro_server_config *config = NULL;
  gopro_status st;
  OK(gopro_server_config_new(&config));
  OK(gopro_server_config_set_reuse_port(config, reuse_port));
  OK(gopro_server_config_set_handler(config, CMD_ECHO, whoami, (void *)name));
  st = gopro_server_start(addr, config, out);
  gopro_server_config_free(config);
  return st;
}

/* Which server a new connection to `addr` reaches: 'a' or 'b'. */
static char answered_by(const char *addr) {
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  const uint8_t *body = NULL;
  size_t len = 0;
  uint8_t command = 0;
  char who;
  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));
  OK(gopro_client_request(client, CMD_ECHO, NULL, 0, &reply));
  OK(gopro_frame_get(reply, &command, NULL, &body, &len));
  CHECK(command == CMD_ECHO && len == 1);
  who = (char)body[0];
  gopro_frame_free(reply);
  gopro_client_free(client);
  return who;
}

/* SO_REUSEPORT: two servers on one port both get connections, and the
 * second serves alone once the first stops; without it on both, the second
 * bind fails. */
static void test_reuse_port(void) {
  gopro_server *a = NULL, *b = NULL, *refused = NULL;
  char addr[64];
  int seen_a = 0, seen_b = 0, i;
  EXPECT(gopro_server_config_set_reuse_port(NULL, true), GOPRO_STATUS_NULL_ARGUMENT);

  OK(start_named("127.0.0.1:0", false, "a", &a));
  address(addr, sizeof addr, a);
  EXPECT(start_named(addr, true, "b", &refused), GOPRO_STATUS_BIND_FAILED);
  CHECK(refused == NULL);
  gopro_server_free(a);

  a = NULL;
  OK(start_named("127.0.0.1:0", true, "a", &a));
  address(addr, sizeof addr, a);
  OK(start_named(addr, true, "b", &b));
  EXPECT(start_named(addr, false, "c", &refused), GOPRO_STATUS_BIND_FAILED);
  CHECK(refused == NULL);
  /* Linux picks a listener by a hash of each connection's address: 64
   * connections all reaching one of two has a chance of 2^-63. */
  for (i = 0; i < 64 && !(seen_a && seen_b); i++) {
    char who = answered_by(addr);
    CHECK(who == 'a' || who == 'b');
    seen_a |= who == 'a';
    seen_b |= who == 'b';
  }
  CHECK(seen_a && seen_b);
  OK(gopro_server_stop(a));
  for (i = 0; i < 8; i++) {
    CHECK(answered_by(addr) == 'b');
  }
  gopro_server_free(a);
  gopro_server_free(b);
}

static void serve_until_stdin_closes(void) {
  struct app app;
  gopro_server_config *config;
  gopro_server *server = NULL;
  uint16_t port = 0;
  char line[64];
  memset(&app, 0, sizeof app);
  pthread_mutex_init(&app.lock, NULL);
  config = app_config(&app);
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config);
  OK(gopro_server_port(server, &port));
  printf("PORT %u\n", (unsigned)port);
  fflush(stdout);
  while (fgets(line, sizeof line, stdin) != NULL) {
  }
  OK(gopro_server_stop(server));
  gopro_server_free(server);
  pthread_mutex_lock(&app.lock);
  printf("test_server: served %d application requests\n", app.calls);
  CHECK(app.calls > 0);
  pthread_mutex_unlock(&app.lock);
  pthread_mutex_destroy(&app.lock);
}

int main(int argc, char **argv) {
  test_config_errors();
  test_app_server();
  test_authenticator();
  test_memory_budget();
  test_stats();
  test_fake_servers();
  test_callback_pointers();
  test_default_config();
  test_stats_sizes();
  test_small_reply_buffer();
  test_reuse_port();
  printf("test_server: passed\n");
  fflush(stdout);
  if (argc > 1 && strcmp(argv[1], "--serve") == 0) {
    serve_until_stdin_closes();
  }
  return 0;
}
