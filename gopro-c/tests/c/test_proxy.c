/* The PROXY protocol through the C ABI: gopro_server_config_set_proxy_protocol
 * and the core's checks behind it, a C server whose handler reports
 * gopro_connection_peer and gopro_connection_local behind v1 and v2 headers
 * sent from raw sockets (a header and a frame in one write, as a balancer
 * sends them), refusals (no header, an invalid or late one, an address
 * that is not a trusted proxy), and the two counters of gopro_stats,
 * including for a caller whose struct predates them.
 * Usage: test_proxy */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "net.h"

#define CMD_WHO 17 /* answered "peer|local" as gopro_connection_* give them */

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int who(void *user_data, uint8_t command, const uint8_t *body, size_t body_len,
               gopro_reply *reply) {
  char peer[64], local[64], out[160];
  size_t n = 0;
  gopro_status st;
  (void)user_data;
  (void)command;
  (void)body;
  (void)body_len;
  st = gopro_connection_peer(peer, sizeof peer, &n);
  if (st == GOPRO_STATUS_OK) {
    st = gopro_connection_local(local, sizeof local, &n);
  }
  if (st != GOPRO_STATUS_OK) {
    gopro_reply_set_error(reply, "no connection information");
    return (int)st;
  }
  snprintf(out, sizeof out, "%s|%s", peer, local);
  return gopro_reply_set_body(reply, (const uint8_t *)out, strlen(out));
}

/* A server on a free port of 127.0.0.1 trusting `trusted`, with the
 * handler above and a read timeout of `read_timeout_ms`. */
static gopro_server *proxied_server(const char *trusted, uint64_t read_timeout_ms,
                                    uint16_t *port) {
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  OK(gopro_server_config_new(&config));
  OK(gopro_server_config_set_proxy_protocol(config, trusted));
  OK(gopro_server_config_set_read_timeout(config, read_timeout_ms));
  OK(gopro_server_config_set_grace(config, 500));
  OK(gopro_server_config_set_handler(config, CMD_WHO, who, NULL));
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_config_free(config);
  OK(gopro_server_port(server, port));
  return server;
}

static void write_all(int fd, const uint8_t *bytes, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, bytes, len);
    CHECK(n > 0);
    bytes += n;
    len -= (size_t)n;
  }
}

/* Writes what it can to a connection the server may already have closed:
 * a refused one. MSG_NOSIGNAL: no SIGPIPE if it has. */
static void write_refused(int fd, const void *bytes, size_t len) {
  (void)send(fd, bytes, len, MSG_NOSIGNAL);
}

/* Reads exactly `len` bytes; 0 if the connection ended first. */
static int read_exact(int fd, uint8_t *buf, size_t len) {
  while (len > 0) {
    ssize_t n = read(fd, buf, len);
    if (n <= 0) {
      return 0;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 1;
}

/* Sends `header` (len bytes) and a CMD_WHO frame in one write, and gives
 * the reply's body in `out`. */
static void ask(int fd, const uint8_t *header, size_t header_len, char *out, size_t cap) {
  uint8_t bytes[256], head[GOPRO_HEADER_LEN];
  size_t written = 0;
  uint8_t version = 0, command = 0;
  uint32_t length = 0;
  CHECK(header_len + GOPRO_HEADER_LEN <= sizeof bytes);
  if (header_len > 0) {
    memcpy(bytes, header, header_len);
  }
  OK(gopro_frame_encode(GOPRO_PROTOCOL_VERSION, CMD_WHO, NULL, 0, GOPRO_DEFAULT_MAX_BODY,
                        bytes + header_len, sizeof bytes - header_len, &written));
  write_all(fd, bytes, header_len + written);
  CHECK(read_exact(fd, head, sizeof head));
  OK(gopro_header_decode(head, sizeof head, &version, &command, &length));
  CHECK(command == CMD_WHO && length < cap);
  CHECK(read_exact(fd, (uint8_t *)out, length));
  out[length] = '\0';
}

static void expect_who(int fd, const uint8_t *header, size_t header_len, const char *want) {
  char got[128];
  ask(fd, header, header_len, got, sizeof got);
  if (strcmp(got, want) != 0) {
    fprintf(stderr, "the handler saw \"%s\", wanted \"%s\"\n", got, want);
    exit(1);
  }
}

/* The server closes the connection without sending a byte. */
static void expect_closed(int fd) {
  uint8_t byte;
  ssize_t n = read(fd, &byte, 1);
  CHECK(n <= 0); /* an end of stream, or a reset */
  close(fd);
}

/* A v2 header: signature, version 2 with `command` (0 LOCAL, 1 PROXY),
 * `family`, then `addresses`. */
static size_t v2(uint8_t *out, uint8_t command, uint8_t family, const uint8_t *addresses,
                 uint16_t len) {
  static const uint8_t signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  memcpy(out, signature, sizeof signature);
  out[12] = (uint8_t)(0x20 | command);
  out[13] = family;
  out[14] = (uint8_t)(len >> 8);
  out[15] = (uint8_t)(len & 0xFF);
  if (len > 0) {
    memcpy(out + 16, addresses, len);
  }
  return 16 + (size_t)len;
}

/* Waits until the counters reach `headers` and `refused` (the server
 * counts a connection as it handles it, not as the client sees it). */
static void settled(const gopro_server *server, uint64_t headers, uint64_t refused,
                    gopro_stats *stats) {
  for (int i = 0; i < 500; i++) {
    OK(gopro_server_stats(server, stats, sizeof *stats));
    if (stats->connections == 0 && stats->proxy_headers >= headers &&
        stats->errors_proxy >= refused) {
      break;
    }
    sleep_ms(10);
  }
  if (stats->proxy_headers != headers || stats->errors_proxy != refused) {
    fprintf(stderr, "proxy_headers %llu, errors_proxy %llu; wanted %llu and %llu\n",
            (unsigned long long)stats->proxy_headers,
            (unsigned long long)stats->errors_proxy, (unsigned long long)headers,
            (unsigned long long)refused);
    exit(1);
  }
}

static void test_setter(void) {
  gopro_server_config *config = NULL;
  gopro_server *server = NULL;
  OK(gopro_server_config_new(&config));
  EXPECT(gopro_server_config_set_proxy_protocol(NULL, "127.0.0.1"), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_server_config_set_proxy_protocol(config, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  /* The core's check refuses each with its message. */
  EXPECT(gopro_server_config_set_proxy_protocol(config, ""), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("invalid proxy_protocol: give at least one trusted proxy address or network");
  EXPECT(gopro_server_config_set_proxy_protocol(config, "10.0.0.0/33"),
         GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("invalid proxy_protocol: \"10.0.0.0/33\" is not an address or a network "
                 "(write 10.0.0.0/8 or 127.0.0.1)");
  EXPECT(gopro_server_config_set_proxy_protocol(config, "127.0.0.1/32,balancer.example"),
         GOPRO_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(check_last_error(), "\"balancer.example\"") != NULL);
  EXPECT(gopro_server_config_set_proxy_protocol(config, "127.0.0.1,"),
         GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_server_config_set_proxy_protocol(config, "127.0.0.\xff"),
         GOPRO_STATUS_INVALID_ARGUMENT);
  /* Single addresses, networks, IPv6, spaces after the commas. */
  OK(gopro_server_config_set_proxy_protocol(config, "127.0.0.1, 10.0.0.0/8, ::1, fd00::/8"));
  /* A refused value left the config as it was: it still starts. */
  OK(gopro_server_start("127.0.0.1:0", config, &server));
  gopro_server_free(server);
  gopro_server_config_free(config);
}

static void test_headers(void) {
  static const char v1_tcp4[] = "PROXY TCP4 203.0.113.7 198.51.100.1 51234 8888\r\n";
  static const char v1_tcp6[] = "PROXY TCP6 2001:db8::7 2001:db8::1 51235 8888\r\n";
  static const char v1_unknown[] = "PROXY UNKNOWN\r\n";
  /* 192.0.2.44:40000 to 10.0.0.1:8888, as HAProxy's send-proxy-v2 sends it. */
  static const uint8_t tcp4[12] = {192, 0, 2, 44, 10, 0, 0, 1, 0x9C, 0x40, 0x22, 0xB8};
  uint8_t header[64];
  size_t len;
  gopro_server *server;
  gopro_stats stats;
  uint16_t port = 0;
  char got[128], want[128];
  int fd;
  server = proxied_server("127.0.0.1/32", 5000, &port);

  fd = loopback_connect_from("127.0.0.1", port);
  expect_who(fd, (const uint8_t *)v1_tcp4, strlen(v1_tcp4),
             "203.0.113.7:51234|198.51.100.1:8888");
  /* More frames on the same connection: the header was read once. */
  expect_who(fd, NULL, 0, "203.0.113.7:51234|198.51.100.1:8888");
  close(fd);

  fd = loopback_connect_from("127.0.0.1", port);
  expect_who(fd, (const uint8_t *)v1_tcp6, strlen(v1_tcp6),
             "[2001:db8::7]:51235|[2001:db8::1]:8888");
  close(fd);

  fd = loopback_connect_from("127.0.0.1", port);
  len = v2(header, 1, 0x11, tcp4, sizeof tcp4);
  expect_who(fd, header, len, "192.0.2.44:40000|10.0.0.1:8888");
  close(fd);

  /* LOCAL (a balancer's health check) and UNKNOWN keep the connection's
   * own addresses. */
  fd = loopback_connect_from("127.0.0.1", port);
  {
    struct sockaddr_in sa;
    socklen_t sa_len = sizeof sa;
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &sa_len) == 0);
    snprintf(want, sizeof want, "127.0.0.1:%d|127.0.0.1:%d", ntohs(sa.sin_port), port);
  }
  len = v2(header, 0, 0x00, NULL, 0);
  ask(fd, header, len, got, sizeof got);
  CHECK(strcmp(got, want) == 0);
  close(fd);
  fd = loopback_connect_from("127.0.0.1", port);
  ask(fd, (const uint8_t *)v1_unknown, strlen(v1_unknown), got, sizeof got);
  CHECK(strncmp(got, "127.0.0.1:", 10) == 0);
  close(fd);

  /* Refused at once, without a reply: no header (a frame, longer than the
   * 15 bytes the server reads before it decides), an invalid one. */
  fd = loopback_connect_from("127.0.0.1", port);
  {
    uint8_t frame[64];
    size_t written = 0;
    OK(gopro_frame_encode(GOPRO_PROTOCOL_VERSION, GOPRO_COMMAND_MESSAGE,
                          (const uint8_t *)"no header here", 14, GOPRO_DEFAULT_MAX_BODY, frame,
                          sizeof frame, &written));
    write_refused(fd, frame, written);
  }
  expect_closed(fd);
  fd = loopback_connect_from("127.0.0.1", port);
  write_refused(fd, "PROXY TCP4 203.0.113.7\r\n", 24);
  expect_closed(fd);
  /* Still serving. */
  fd = loopback_connect_from("127.0.0.1", port);
  expect_who(fd, (const uint8_t *)v1_tcp4, strlen(v1_tcp4),
             "203.0.113.7:51234|198.51.100.1:8888");
  close(fd);

  OK(gopro_server_stop(server));
  settled(server, 6, 2, &stats);
  CHECK(stats.frames_in == 7 && stats.errors_protocol == 0);
  {
    /* A struct from before the PROXY counters (15 counters) gets those
     * only; the guard after it stays. */
    uint64_t older[16];
    memset(older, 0xAA, sizeof older);
    OK(gopro_server_stats(server, (gopro_stats *)(void *)older, 15 * sizeof(uint64_t)));
    CHECK(older[14] == stats.errors_tls && older[15] == 0xAAAAAAAAAAAAAAAAull);
    CHECK(older[2] == stats.frames_in);
  }
  CHECK(sizeof(gopro_stats) == 17 * sizeof(uint64_t));
  CHECK(offsetof(gopro_stats, proxy_headers) == 15 * sizeof(uint64_t));
  gopro_server_free(server);
}

/* Only trusted proxies may connect, header or not; a header must be whole
 * within the read timeout. */
static void test_refusals(void) {
  static const char v1_tcp4[] = "PROXY TCP4 203.0.113.7 198.51.100.1 51234 8888\r\n";
  gopro_server *server;
  gopro_stats stats;
  uint16_t port = 0;
  int fd;
  long started, waited;
  server = proxied_server("127.0.0.2", 300, &port);

  fd = loopback_connect_from("127.0.0.2", port);
  expect_who(fd, (const uint8_t *)v1_tcp4, strlen(v1_tcp4),
             "203.0.113.7:51234|198.51.100.1:8888");
  close(fd);

  /* 127.0.0.1 is not trusted: refused, whatever it sends. */
  fd = loopback_connect_from("127.0.0.1", port);
  write_refused(fd, v1_tcp4, strlen(v1_tcp4));
  expect_closed(fd);

  /* Half a header, then silence: closed at the read timeout. */
  fd = loopback_connect_from("127.0.0.2", port);
  write_all(fd, (const uint8_t *)"PROXY TCP4 ", 11);
  started = now_ms();
  expect_closed(fd);
  waited = now_ms() - started;
  CHECK(waited >= 250 && waited < 5000);

  OK(gopro_server_stop(server));
  settled(server, 1, 2, &stats);
  gopro_server_free(server);
}

int main(void) {
  test_setter();
  test_headers();
  test_refusals();
  printf("test_proxy: passed\n");
  return 0;
}
