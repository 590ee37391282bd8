/* Assertions shared by the C tests: every call's status is checked, and the
 * statuses reached are logged so that scripts/test-c.sh can verify each one
 * is reached on purpose somewhere. */
#ifndef GOPRO_TEST_CHECK_H
#define GOPRO_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gopro.h"

static inline void check_log_status(int status) {
  static int logged[64];
  const char *path = getenv("GOPRO_TEST_STATUS_LOG");
  FILE *f;
  if (path == NULL || status < 0 || status >= 64 || logged[status]) {
    return;
  }
  logged[status] = 1;
  f = fopen(path, "a");
  if (f != NULL) {
    fprintf(f, "%d\n", status);
    fclose(f);
  }
}

static inline const char *check_last_error(void) {
  static char message[1024];
  size_t len = 0;
  if (gopro_last_error_message(message, sizeof message, &len) != GOPRO_STATUS_OK) {
    return "(message too long)";
  }
  return message;
}

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define EXPECT(call, want)                                                     \
  do {                                                                         \
    gopro_status got_ = (call);                                                \
    check_log_status((int)got_);                                               \
    if (got_ != (want)) {                                                      \
      fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %s; last error: %s\n", \
              __FILE__, __LINE__, #call, (int)got_, gopro_status_str((int)got_), \
              #want, check_last_error());                                      \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define OK(call) EXPECT(call, GOPRO_STATUS_OK)

/* The last error message must be exactly `want`. */
#define EXPECT_MESSAGE(want)                                                   \
  do {                                                                         \
    const char *got_m_ = check_last_error();                                   \
    if (strcmp(got_m_, (want)) != 0) {                                         \
      fprintf(stderr, "%s:%d: last error is \"%s\", wanted \"%s\"\n",          \
              __FILE__, __LINE__, got_m_, (want));                             \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#endif
