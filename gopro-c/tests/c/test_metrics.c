/* The C server's Prometheus endpoint (gopro_server_config_set_metrics_listen,
 * gopro_server_metrics_port): scraped over a plain socket after known
 * traffic, its lines checked exactly; and its limits
 * (gopro_server_config_set_metrics_max_scrapers, _set_metrics_header_timeout)
 * at their boundary. Usage: test_metrics */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "net.h"

#define CMD_ECHO 16

static int echo(void *user_data, uint8_t command, const uint8_t *body, size_t body_len,
                gopro_reply *reply) {
  (void)user_data;
  (void)command;
  return gopro_reply_set_body(reply, body, body_len);
}

/* GET `path` from 127.0.0.1:port; the whole response, NUL-terminated, in
 * `buf`. */
static void http_get(uint16_t port, const char *path, char *buf, size_t cap) {
  char request[256];
  size_t got = 0;
  ssize_t n;
  int len;
  int fd = loopback_connect(port);
  len = snprintf(request, sizeof request,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
  CHECK(len > 0 && (size_t)len < sizeof request);
  CHECK(write(fd, request, (size_t)len) == len);
  while ((n = read(fd, buf + got, cap - 1 - got)) > 0) {
    got += (size_t)n;
    CHECK(got < cap - 1); /* the buffer is large enough for a whole scrape */
  }
  CHECK(n == 0);
  buf[got] = '\0';
  close(fd);
}

/* The response has this line, whole. */
static void expect_line(const char *response, const char *line) {
  const char *at = response;
  size_t len = strlen(line);
  while ((at = strstr(at, line)) != NULL) {
    if ((at == response || at[-1] == '\n') && at[len] == '\n') {
      return;
    }
    at += len;
  }
  fprintf(stderr, "no line \"%s\" in:\n%s\n", line, response);
  exit(1);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Reads until the peer closes (or resets), 8 s at most; the bytes read. */
static size_t until_closed(int fd) {
  char buf[4096];
  size_t got = 0;
  ssize_t n;
  struct timeval limit = {8, 0};
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) == 0);
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    got += (size_t)n;
  }
  CHECK(n == 0 || errno == ECONNRESET); /* not the 8 s limit */
  return got;
}

/* One scrape at most, 1 s for its headers: a second connection is closed
 * at once, and the first, half a request head in, at the timeout. (1 s,
 * not less: these tests also run under valgrind.) */
static void limits(void) {
  static const char half_head[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  uint16_t port = 0;
  double started, after;
  int first, second;

  OK(gopro_server_config_new(&config));
  EXPECT(gopro_server_config_set_metrics_max_scrapers(config, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_server_config_set_metrics_header_timeout(config, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_server_config_set_metrics_max_scrapers(NULL, 1), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_metrics_header_timeout(NULL, 1), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_server_config_set_metrics_listen(config, "127.0.0.1:0"));
  OK(gopro_server_config_set_metrics_max_scrapers(config, 1));
  OK(gopro_server_config_set_metrics_header_timeout(config, 1000));
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config);
  OK(gopro_server_metrics_port(server, &port));

  started = now_ms();
  first = loopback_connect(port);
  CHECK(write(first, half_head, sizeof half_head - 1) == (ssize_t)(sizeof half_head - 1));
  second = loopback_connect(port);
  CHECK(until_closed(second) == 0);
  after = now_ms() - started;
  CHECK(after < 800); /* at once, not at the header timeout */
  close(second);
  CHECK(until_closed(first) == 0);
  after = now_ms() - started;
  if (after < 1000 || after > 6000) {
    fprintf(stderr, "half a head closed after %.0f ms; the header timeout is 1000 ms\n", after);
    exit(1);
  }
  close(first);
  OK(gopro_server_stop(server));
  gopro_server_free(server);
}

int main(void) {
  static char response[64 * 1024];
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  gopro_server *other = NULL;
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  uint16_t port = 0;
  uint16_t metrics_port = 0;
  char addr[64];

  OK(gopro_server_config_new(&config));
  EXPECT(gopro_server_config_set_metrics_listen(config, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_metrics_listen(NULL, "127.0.0.1:0"),
         GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_server_config_set_metrics_listen(config, "127.0.0.1:0"));
  OK(gopro_server_config_set_handler(config, CMD_ECHO, echo, NULL));
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  OK(gopro_server_port(server, &port));
  EXPECT(gopro_server_metrics_port(NULL, &metrics_port), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_metrics_port(server, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_server_metrics_port(server, &metrics_port));
  CHECK(metrics_port != 0 && metrics_port != port);

  /* 2 HEARTBEATs, 1 MESSAGE, 1 application command. */
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));
  OK(gopro_client_heartbeat(client));
  OK(gopro_client_heartbeat(client));
  OK(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"hi", 2, &reply));
  gopro_frame_free(reply);
  OK(gopro_client_request(client, CMD_ECHO, (const uint8_t *)"abc", 3, &reply));
  gopro_frame_free(reply);

  http_get(metrics_port, "/metrics", response, sizeof response);
  CHECK(strncmp(response, "HTTP/1.1 200 ", 13) == 0);
  expect_line(response, "gopro_connections_open 1");
  expect_line(response, "gopro_connections_accepted_total 1");
  expect_line(response, "gopro_frames_received_total{command=\"heartbeat\"} 2");
  expect_line(response, "gopro_frames_received_total{command=\"message\"} 1");
  expect_line(response, "gopro_frames_received_total{command=\"application\"} 1");
  expect_line(response, "gopro_frames_sent_total{command=\"message\"} 1");
  expect_line(response, "gopro_frames_sent_total{command=\"application\"} 1");
  /* 2 heartbeats (8 bytes), "hi" (10), "abc" (11). */
  expect_line(response, "gopro_received_bytes_total 37");
  expect_line(response, "gopro_handler_duration_seconds_count 1");
  expect_line(response, "# TYPE gopro_handler_duration_seconds histogram");
  http_get(metrics_port, "/", response, sizeof response);
  CHECK(strncmp(response, "HTTP/1.1 404 ", 13) == 0);
  gopro_client_free(client);

  /* The metrics address taken: the second server does not start. */
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)metrics_port);
  OK(gopro_server_config_set_metrics_listen(config, addr));
  EXPECT(gopro_server_start("127.0.0.1:0", config, &other), GOPRO_STATUS_BIND_FAILED);
  CHECK(other == NULL);
  gopro_server_config_free(config);

  OK(gopro_server_stop(server));
  EXPECT(gopro_server_metrics_port(server, &metrics_port), GOPRO_STATUS_CLOSED);
  gopro_server_free(server);

  /* Without the setting: port 0. */
  OK(gopro_server_start("127.0.0.1:0", NULL, &server));
  OK(gopro_server_metrics_port(server, &metrics_port));
  CHECK(metrics_port == 0);
  gopro_server_free(server);
  limits();
  printf("test_metrics: passed\n");
  return 0;
}
