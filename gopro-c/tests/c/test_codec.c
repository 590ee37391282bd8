/* The codec's edges, each status reached on purpose: NULL pointers,
 * too-small buffers, oversized frames, bad input, messages. Codec only. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

static void test_version(void) {
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", GOPRO_VERSION_MAJOR, GOPRO_VERSION_MINOR,
           GOPRO_VERSION_PATCH);
  CHECK(strcmp(gopro_version(), want) == 0);
}

static void test_status_str(void) {
  int s;
  for (s = 0; s <= GOPRO_STATUS_PANIC; s++) {
    CHECK(gopro_status_str(s) != NULL && strlen(gopro_status_str(s)) > 0);
    CHECK(strcmp(gopro_status_str(s), "unknown status") != 0);
  }
  CHECK(strcmp(gopro_status_str(-1), "unknown status") == 0);
  CHECK(strcmp(gopro_status_str(1000), "unknown status") == 0);
  CHECK(strcmp(gopro_status_str(GOPRO_STATUS_OK), "ok") == 0);
}

static void test_header(void) {
  uint8_t buf[16];
  size_t written = 99;
  uint8_t version = 7, command = 7;
  uint32_t length = 7;
  static const uint8_t hello_header[8] = {0x47, 0x4F, 0x01, 0x01, 0x00, 0x00, 0x00, 0x10};
  static const uint8_t bad[8] = {0x47, 0x30, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00};

  OK(gopro_header_encode(GOPRO_PROTOCOL_VERSION, GOPRO_COMMAND_MESSAGE, 16, buf, sizeof buf,
                         &written));
  CHECK(written == 8 && memcmp(buf, hello_header, 8) == 0);
  /* Big-endian on every host: 0x01020304 is 01 02 03 04. */
  OK(gopro_header_encode(1, 200, 0x01020304u, buf, 8, &written));
  CHECK(buf[3] == 200 && buf[4] == 1 && buf[5] == 2 && buf[6] == 3 && buf[7] == 4);

  written = 99;
  memset(buf, 0xAA, sizeof buf);
  EXPECT(gopro_header_encode(1, 1, 16, buf, 7, &written), GOPRO_STATUS_BUFFER_TOO_SMALL);
  CHECK(written == 99 && buf[0] == 0xAA); /* nothing written on failure */
  EXPECT(gopro_header_encode(1, 1, 16, NULL, 8, &written), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_header_encode(1, 1, 16, buf, 8, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_written` is NULL");

  OK(gopro_header_decode(hello_header, 8, &version, &command, &length));
  CHECK(version == 1 && command == 1 && length == 16);
  version = 7;
  EXPECT(gopro_header_decode(hello_header, 7, &version, &command, &length),
         GOPRO_STATUS_NEED_MORE);
  EXPECT(gopro_header_decode(bad, 8, &version, &command, &length), GOPRO_STATUS_BAD_MAGIC);
  CHECK(version == 7);
  EXPECT(gopro_header_decode(NULL, 8, &version, &command, &length), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_header_decode(hello_header, 8, &version, NULL, &length),
         GOPRO_STATUS_NULL_ARGUMENT);
}

static void test_frame_encode(void) {
  uint8_t buf[64];
  size_t written = 0;
  const char *body = "Hello TCP World!";
  OK(gopro_frame_encode(1, GOPRO_COMMAND_MESSAGE, (const uint8_t *)body, 16,
                        GOPRO_DEFAULT_MAX_BODY, buf, sizeof buf, &written));
  CHECK(written == 24 && buf[7] == 16 && memcmp(buf + 8, body, 16) == 0);
  /* An empty body may be NULL. */
  OK(gopro_frame_encode(1, GOPRO_COMMAND_HEARTBEAT, NULL, 0, 0, buf, 8, &written));
  CHECK(written == 8);
  written = 99;
  EXPECT(gopro_frame_encode(1, 1, (const uint8_t *)body, 16, 16, buf, 23, &written),
         GOPRO_STATUS_BUFFER_TOO_SMALL);
  EXPECT(gopro_frame_encode(1, 1, (const uint8_t *)body, 16, 15, buf, sizeof buf, &written),
         GOPRO_STATUS_BODY_TOO_LARGE);
  CHECK(written == 99);
  EXPECT(gopro_frame_encode(1, 1, NULL, 16, 16, buf, sizeof buf, &written),
         GOPRO_STATUS_NULL_ARGUMENT);
}

static void test_decoder(void) {
  gopro_decoder *d = NULL;
  uint8_t command = 0, version = 0;
  const uint8_t *body = NULL;
  size_t len = 0;
  /* 10 MiB + 1 announced: refused on the header alone. */
  static const uint8_t too_big[8] = {0x47, 0x4F, 0x01, 0x01, 0x00, 0xA0, 0x00, 0x01};
  static const uint8_t part[5] = {0x47, 0x4F, 0x01, 0x00, 0x00};

  EXPECT(gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, 256, &d), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, -2, &d), GOPRO_STATUS_INVALID_ARGUMENT);
  CHECK(d == NULL);
  EXPECT(gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, GOPRO_ANY_VERSION, NULL),
         GOPRO_STATUS_NULL_ARGUMENT);

  OK(gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, GOPRO_ANY_VERSION, &d));
  EXPECT(gopro_decoder_next(d, &command, &version, &body, &len), GOPRO_STATUS_NEED_MORE);
  OK(gopro_decoder_finish(d)); /* nothing buffered: a clean end */
  OK(gopro_decoder_feed(d, NULL, 0));
  EXPECT(gopro_decoder_feed(d, NULL, 3), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_decoder_feed(NULL, part, 3), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_decoder_next(NULL, &command, &version, &body, &len), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_decoder_next(d, NULL, &version, &body, &len), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_decoder_next(d, &command, &version, NULL, &len), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_decoder_next(d, &command, &version, &body, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_decoder_finish(NULL), GOPRO_STATUS_NULL_ARGUMENT);

  OK(gopro_decoder_feed(d, part, sizeof part));
  EXPECT(gopro_decoder_next(d, &command, &version, &body, &len), GOPRO_STATUS_NEED_MORE);
  EXPECT(gopro_decoder_finish(d), GOPRO_STATUS_UNEXPECTED_EOF);
  gopro_decoder_free(d);

  d = NULL;
  OK(gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, GOPRO_ANY_VERSION, &d));
  OK(gopro_decoder_feed(d, too_big, sizeof too_big));
  command = 42;
  EXPECT(gopro_decoder_next(d, &command, &version, &body, &len), GOPRO_STATUS_BODY_TOO_LARGE);
  EXPECT_MESSAGE("frame body of 10485761 bytes exceeds the limit of 10485760 bytes");
  CHECK(command == 42);
  EXPECT(gopro_decoder_finish(d), GOPRO_STATUS_BODY_TOO_LARGE);
  gopro_decoder_free(d);
  gopro_decoder_free(NULL);
}

static void test_messages(void) {
  char small[4];
  char big[256];
  size_t len = 0, needed = 0;
  gopro_decoder *d = NULL;
  EXPECT(gopro_decoder_new(0, GOPRO_ANY_VERSION, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_last_error_message(NULL, 0, &needed));
  CHECK(needed == strlen("argument `out` is NULL"));
  EXPECT(gopro_last_error_message(small, sizeof small, &len), GOPRO_STATUS_BUFFER_TOO_SMALL);
  EXPECT(gopro_last_error_message(big, needed, &len), GOPRO_STATUS_BUFFER_TOO_SMALL);
  /* A failing gopro_last_error_message keeps the message it could not copy. */
  OK(gopro_last_error_message(big, needed + 1, &len));
  CHECK(len == needed && strcmp(big, "argument `out` is NULL") == 0);
  EXPECT(gopro_last_error_message(big, sizeof big, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_last_error_message(NULL, 5, &len), GOPRO_STATUS_NULL_ARGUMENT);
  /* A successful call leaves the message alone. */
  OK(gopro_decoder_new(0, GOPRO_ANY_VERSION, &d));
  EXPECT_MESSAGE("argument `out` is NULL");
  gopro_decoder_free(d);
}

/* Many frames per call: the same frames as one at a time. */
static void test_decoder_next_many(void) {
  gopro_decoder *d = NULL;
  gopro_frame_view views[2];
  size_t count = 0, written = 0, at = 0;
  uint8_t wire[64];
  static const uint8_t bad[8] = {0x47, 0x30, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00};

  OK(gopro_frame_encode(1, GOPRO_COMMAND_MESSAGE, (const uint8_t *)"ab", 2,
                        GOPRO_DEFAULT_MAX_BODY, wire, sizeof wire, &written));
  at += written;
  OK(gopro_frame_encode(1, GOPRO_COMMAND_HEARTBEAT, NULL, 0, GOPRO_DEFAULT_MAX_BODY,
                        wire + at, sizeof wire - at, &written));
  at += written;
  OK(gopro_frame_encode(1, 17, (const uint8_t *)"xyz", 3, GOPRO_DEFAULT_MAX_BODY, wire + at,
                        sizeof wire - at, &written));
  at += written;

  OK(gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, GOPRO_ANY_VERSION, &d));
  EXPECT(gopro_decoder_next_many(d, views, 2, &count), GOPRO_STATUS_NEED_MORE);
  EXPECT(gopro_decoder_next_many(d, NULL, 2, &count), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_decoder_next_many(d, views, 0, &count), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT(gopro_decoder_next_many(d, views, 2, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_decoder_next_many(NULL, views, 2, &count), GOPRO_STATUS_NULL_ARGUMENT);
  /* Three frames and the first 5 bytes of a fourth (a copy of the first). */
  OK(gopro_decoder_feed(d, wire, at));
  OK(gopro_decoder_feed(d, wire, 5));
  OK(gopro_decoder_next_many(d, views, 2, &count));
  CHECK(count == 2);
  CHECK(views[0].command == GOPRO_COMMAND_MESSAGE && views[0].version == 1);
  CHECK(views[0].body_len == 2 && memcmp(views[0].body, "ab", 2) == 0);
  CHECK(views[1].command == GOPRO_COMMAND_HEARTBEAT && views[1].body_len == 0 &&
        views[1].body == NULL);
  OK(gopro_decoder_next_many(d, views, 2, &count));
  CHECK(count == 1);
  CHECK(views[0].command == 17 && views[0].body_len == 3 && memcmp(views[0].body, "xyz", 3) == 0);
  EXPECT(gopro_decoder_next_many(d, views, 2, &count), GOPRO_STATUS_NEED_MORE);
  /* The rest of the fourth frame, then bad magic: the frame first, the error next. */
  OK(gopro_decoder_feed(d, wire + 5, 5));
  OK(gopro_decoder_feed(d, bad, sizeof bad));
  OK(gopro_decoder_next_many(d, views, 2, &count));
  CHECK(count == 1 && views[0].body_len == 2 && memcmp(views[0].body, "ab", 2) == 0);
  EXPECT(gopro_decoder_next_many(d, views, 2, &count), GOPRO_STATUS_BAD_MAGIC);
  gopro_decoder_free(d);
}

/* The caller's pointers at their exact sizes, on the heap, so that ASan and
 * Valgrind see any byte read or written past a length or capacity; every
 * out-parameter NULL on its own; optional out-parameters NULL on success. */
static void test_caller_buffers(void) {
  static const char text[] = "exact";
  const size_t n = sizeof text - 1;
  uint8_t *body = malloc(n), *head = malloc(GOPRO_HEADER_LEN), *wire = malloc(GOPRO_HEADER_LEN + n);
  uint8_t *twice = malloc(2 * (GOPRO_HEADER_LEN + n));
  gopro_frame_view *views = malloc(sizeof *views); /* room for exactly one */
  gopro_decoder *d = NULL;
  uint8_t version = 7, command = 7;
  uint32_t length = 7;
  const uint8_t *out = NULL;
  size_t written = 99, count = 0, len = 0, needed = 0;
  char *message;
  CHECK(body != NULL && head != NULL && wire != NULL && twice != NULL && views != NULL);
  memcpy(body, text, n);

  OK(gopro_header_encode(1, GOPRO_COMMAND_MESSAGE, (uint32_t)n, head, GOPRO_HEADER_LEN, &written));
  CHECK(written == GOPRO_HEADER_LEN);
  EXPECT(gopro_header_encode(1, 1, 0, head, 0, &written), GOPRO_STATUS_BUFFER_TOO_SMALL);
  OK(gopro_header_decode(head, GOPRO_HEADER_LEN, &version, &command, &length));
  CHECK(version == 1 && command == GOPRO_COMMAND_MESSAGE && length == n);
  version = command = 7;
  length = 7;
  EXPECT(gopro_header_decode(head, GOPRO_HEADER_LEN, NULL, &command, &length),
         GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_version` is NULL");
  EXPECT(gopro_header_decode(head, GOPRO_HEADER_LEN, &version, &command, NULL),
         GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_length` is NULL");
  CHECK(version == 7 && command == 7 && length == 7);
  EXPECT(gopro_header_decode(NULL, 0, &version, &command, &length), GOPRO_STATUS_NEED_MORE);

  written = 99;
  OK(gopro_frame_encode(1, GOPRO_COMMAND_MESSAGE, body, n, n, wire, GOPRO_HEADER_LEN + n,
                        &written));
  CHECK(written == GOPRO_HEADER_LEN + n && memcmp(wire, head, GOPRO_HEADER_LEN) == 0 &&
        memcmp(wire + GOPRO_HEADER_LEN, text, n) == 0);
  written = 99;
  EXPECT(gopro_frame_encode(1, 1, body, n, n, NULL, GOPRO_HEADER_LEN + n, &written),
         GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `buf` is NULL");
  EXPECT(gopro_frame_encode(1, 1, body, n, n, wire, GOPRO_HEADER_LEN + n, NULL),
         GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_written` is NULL");
  EXPECT(gopro_frame_encode(1, 1, NULL, 0, 0, wire, 0, &written), GOPRO_STATUS_BUFFER_TOO_SMALL);
  CHECK(written == 99);
  memcpy(twice, wire, GOPRO_HEADER_LEN + n);
  memcpy(twice + GOPRO_HEADER_LEN + n, wire, GOPRO_HEADER_LEN + n);

  /* The decoder copies what it is fed: the caller's buffers are freed at once. */
  OK(gopro_decoder_new(n, GOPRO_ANY_VERSION, &d));
  OK(gopro_decoder_feed(d, wire, GOPRO_HEADER_LEN + n));
  free(wire);
  wire = NULL;
  command = 0;
  OK(gopro_decoder_next(d, &command, NULL, &out, &len));
  CHECK(command == GOPRO_COMMAND_MESSAGE && len == n && memcmp(out, text, n) == 0);
  OK(gopro_decoder_feed(d, twice, 2 * (GOPRO_HEADER_LEN + n)));
  free(twice);
  twice = NULL;
  /* Two frames buffered, room for one view: only one is written. */
  OK(gopro_decoder_next_many(d, views, 1, &count));
  CHECK(count == 1 && views[0].command == GOPRO_COMMAND_MESSAGE && views[0].version == 1);
  CHECK(views[0].body_len == n && memcmp(views[0].body, text, n) == 0);
  OK(gopro_decoder_next_many(d, views, 1, &count));
  CHECK(count == 1 && views[0].body_len == n && memcmp(views[0].body, text, n) == 0);
  EXPECT(gopro_decoder_next_many(d, views, 1, &count), GOPRO_STATUS_NEED_MORE);
  OK(gopro_decoder_finish(d));
  gopro_decoder_free(d);

  /* The last error message into a buffer of exactly its length + 1. */
  EXPECT(gopro_decoder_feed(NULL, body, n), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_last_error_message(NULL, 0, &needed));
  message = malloc(needed + 1);
  CHECK(message != NULL);
  OK(gopro_last_error_message(message, needed + 1, &len));
  CHECK(len == needed && strcmp(message, "argument `decoder` is NULL") == 0);
  free(message);
  free(views);
  free(head);
  free(body);
}

/* GOPRO_DEFAULT_MAX_BODY is the protocol's limit: a body of exactly that
 * size is encoded with it as the limit, one byte more is refused. */
static void test_default_max_body(void) {
  size_t cap = GOPRO_HEADER_LEN + GOPRO_DEFAULT_MAX_BODY + 1;
  uint8_t *body = calloc(GOPRO_DEFAULT_MAX_BODY + 1, 1);
  uint8_t *wire = malloc(cap);
  size_t written = 0;
  CHECK(body != NULL && wire != NULL);
  CHECK(GOPRO_DEFAULT_MAX_BODY == 10u * 1024 * 1024);
  OK(gopro_frame_encode(1, GOPRO_COMMAND_MESSAGE, body, GOPRO_DEFAULT_MAX_BODY,
                        GOPRO_DEFAULT_MAX_BODY, wire, cap, &written));
  CHECK(written == GOPRO_HEADER_LEN + GOPRO_DEFAULT_MAX_BODY);
  EXPECT(gopro_frame_encode(1, GOPRO_COMMAND_MESSAGE, body, GOPRO_DEFAULT_MAX_BODY + 1,
                            GOPRO_DEFAULT_MAX_BODY, wire, cap, &written),
         GOPRO_STATUS_BODY_TOO_LARGE);
  /* One byte short of the whole frame: nothing written. */
  wire[0] = 0xAA;
  EXPECT(gopro_frame_encode(1, GOPRO_COMMAND_MESSAGE, body, GOPRO_DEFAULT_MAX_BODY,
                            GOPRO_DEFAULT_MAX_BODY, wire, cap - 2, &written),
         GOPRO_STATUS_BUFFER_TOO_SMALL);
  CHECK(wire[0] == 0xAA && written == GOPRO_HEADER_LEN + GOPRO_DEFAULT_MAX_BODY);
  free(wire);
  free(body);
}

int main(void) {
  test_version();
  test_status_str();
  test_header();
  test_frame_encode();
  test_decoder();
  test_decoder_next_many();
  test_messages();
  test_caller_buffers();
  test_default_max_body();
  printf("test_codec: passed\n");
  return 0;
}
