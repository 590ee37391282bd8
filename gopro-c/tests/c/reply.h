/* Reading a reply frame, shared by the client and server tests. */
#ifndef GOPRO_TEST_REPLY_H
#define GOPRO_TEST_REPLY_H

#include "check.h"

/* `reply` must be a frame of `command` whose body is the string `body`. Its
 * version is stored in `*out_version`; NULL leaves it unread (and checks
 * that gopro_frame_get takes NULL there). */
static inline void check_reply(const gopro_frame *reply, uint8_t command, const char *body,
                               uint8_t *out_version) {
  uint8_t c = 0;
  const uint8_t *b = NULL;
  size_t len = 0;
  OK(gopro_frame_get(reply, &c, out_version, &b, &len));
  CHECK(c == command);
  CHECK(len == strlen(body) && (len == 0 || memcmp(b, body, len) == 0));
}

/* A MESSAGE `body` answered "Server says: " + body (by `gopro serve`). */
static inline void check_message(gopro_client *client, const char *body) {
  gopro_frame *reply = NULL;
  char want[256];
  snprintf(want, sizeof want, "Server says: %s", body);
  OK(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)body, strlen(body),
                          &reply));
  check_reply(reply, GOPRO_COMMAND_MESSAGE, want, NULL);
  gopro_frame_free(reply);
}

#endif
