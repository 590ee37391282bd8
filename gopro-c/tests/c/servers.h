/* `gopro serve` processes the tests start, stop, kill and start again on
 * the same port. */
#ifndef GOPRO_TEST_SERVERS_H
#define GOPRO_TEST_SERVERS_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

struct server {
  const char *bin;
  const char *auth; /* --auth CREDENTIALS, or NULL */
  char addr[32];
  const char *read_timeout; /* --read-timeout, or NULL for the default */
  pid_t pid;
};

static inline void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A TCP socket bound to a free port of 127.0.0.1, whose "host:port" is
 * written to `addr`. */
static inline int bind_loopback(char *addr, size_t cap) {
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
  snprintf(addr, cap, "127.0.0.1:%d", ntohs(sa.sin_port));
  return fd;
}

/* A port nothing listens on now, for a server to take and take again. */
static inline void server_pick_port(struct server *s) {
  close(bind_loopback(s->addr, sizeof s->addr));
}

static inline int server_answers(const struct server *s) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
  CHECK(fd >= 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((uint16_t)atoi(strchr(s->addr, ':') + 1));
  ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  close(fd);
  return ok;
}

/* Starts `gopro serve` on the server's address and waits until it accepts. */
static inline void server_start(struct server *s) {
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 2);
    }
    const char *argv[12] = {"gopro", "serve", "--listen", s->addr, "--grace", "1s"};
    int n = 6;
    if (s->auth != NULL) {
      argv[n++] = "--auth";
      argv[n++] = s->auth;
    }
    if (s->read_timeout != NULL) {
      argv[n++] = "--read-timeout";
      argv[n++] = s->read_timeout;
    }
    argv[n] = NULL;
    execv(s->bin, (char *const *)argv);
    _exit(127);
  }
  s->pid = pid;
  for (int i = 0; i < 1000; i++) {
    if (server_answers(s)) {
      return;
    }
    sleep_ms(10);
  }
  fprintf(stderr, "gopro serve did not start on %s\n", s->addr);
  exit(1);
}

/* Starts a server on a port of its own, to be started again on it. */
static inline void server_open(struct server *s) {
  server_pick_port(s);
  server_start(s);
}

/* Stops the server without closing anything (SIGSTOP) and waits until it
 * has stopped: it takes bytes into its sockets and answers none. */
static inline void server_pause(struct server *s) {
  int status = 0;
  CHECK(kill(s->pid, SIGSTOP) == 0);
  CHECK(waitpid(s->pid, &status, WUNTRACED) == s->pid && WIFSTOPPED(status));
}

/* Sends `sig` (SIGTERM: a graceful stop with GOAWAY; SIGKILL) and reaps it. */
static inline void server_stop(struct server *s, int sig) {
  int status = 0;
  CHECK(s->pid > 0);
  CHECK(kill(s->pid, sig) == 0);
  CHECK(waitpid(s->pid, &status, 0) == s->pid);
  s->pid = 0;
}

#endif
