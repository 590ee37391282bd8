/* Other programs the TLS test runs: servers it starts and stops (`gopro
 * serve`, the Go peer) and clients whose exit status and output it checks
 * (`gopro send`, openssl s_client, CPython's ssl). */
#ifndef GOPRO_TEST_SPAWN_H
#define GOPRO_TEST_SPAWN_H

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "servers.h"

/* Starts argv[0] with stdout and stderr sent to /dev/null. */
static inline pid_t spawn_quiet(const char *const *argv) {
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  return pid;
}

/* Starts a server process (argv, its address in `addr`) and waits until it
 * accepts connections. */
static inline pid_t spawn_server(const char *const *argv, const char *addr) {
  struct server probe;
  pid_t pid = spawn_quiet(argv);
  memset(&probe, 0, sizeof probe);
  snprintf(probe.addr, sizeof probe.addr, "%s", addr);
  for (int i = 0; i < 1000; i++) {
    if (server_answers(&probe)) {
      return pid;
    }
    sleep_ms(10);
  }
  fprintf(stderr, "%s did not start on %s\n", argv[0], addr);
  exit(1);
}

/* Stops a process started by spawn_* and reaps it. */
static inline void spawn_stop(pid_t pid) {
  int status = 0;
  CHECK(kill(pid, SIGTERM) == 0);
  CHECK(waitpid(pid, &status, 0) == pid);
}

/* Runs argv[0] to its end and gives its exit status (-1 if it did not
 * exit); what it writes to stdout (at most cap - 1 bytes, NUL-terminated)
 * is stored in `out` when not NULL. stderr is discarded. */
static inline int run_capture(const char *const *argv, char *out, size_t cap) {
  int fds[2];
  int status = 0;
  size_t used = 0;
  pid_t pid;
  CHECK(pipe(fds) == 0);
  pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    close(fds[0]);
    dup2(fds[1], 1);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 2);
    }
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(fds[1]);
  for (;;) {
    char chunk[512];
    ssize_t n = read(fds[0], chunk, sizeof chunk);
    if (n <= 0) {
      break;
    }
    if (out != NULL && used + 1 < cap) {
      size_t take = (size_t)n < cap - 1 - used ? (size_t)n : cap - 1 - used;
      memcpy(out + used, chunk, take);
      used += take;
    }
  }
  close(fds[0]);
  if (out != NULL && cap > 0) {
    out[used] = '\0';
  }
  CHECK(waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#endif
