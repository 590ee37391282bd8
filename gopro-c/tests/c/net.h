/* Raw TCP connections to the loopback address, for the C tests that speak
 * bytes (HTTP, PROXY headers, bad frames) rather than through gopro. */
#ifndef GOPRO_TEST_NET_H
#define GOPRO_TEST_NET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"

/* A connection to 127.0.0.1:port from `source` (an IPv4 address of the
 * loopback network), or from any address if `source` is NULL. */
static inline int loopback_connect_from(const char *source, uint16_t port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  if (source != NULL) {
    CHECK(inet_pton(AF_INET, source, &sa.sin_addr) == 1);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  }
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
  return fd;
}

static inline int loopback_connect(uint16_t port) {
  return loopback_connect_from(NULL, port);
}

#endif
