/* The C client against `gopro serve` (the Rust server).
 * Usage: test_client HOST:PORT */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "pipeline.h"
#include "reply.h"

static void expect_reply(gopro_frame *reply, uint8_t command, const char *body) {
  uint8_t v = 0;
  check_reply(reply, command, body, &v);
  CHECK(v == GOPRO_PROTOCOL_VERSION);
}

/* Every pointer argument NULL on its own, on a live client: refused before
 * anything is sent, and the client stays usable. Then the caller's buffers at
 * their exact sizes on the heap, freed as soon as the call returns (the body
 * is copied), and a reply's body read until gopro_frame_free. */
static void test_pointers(const char *addr) {
  static const char text[] = "exact";
  const size_t n = sizeof text - 1;
  gopro_client *client = NULL;
  gopro_frame *reply = NULL, *first = NULL;
  size_t in_flight = 99, len = 99;
  uint8_t command = 99, version = 99;
  const uint8_t *body = (const uint8_t *)"untouched";
  uint8_t *heap = malloc(n);
  CHECK(heap != NULL);
  memcpy(heap, text, n);

  EXPECT(gopro_client_connect("\xff\xfe:1", 1000, 0, 0, &client), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("argument `addr` is not UTF-8");
  CHECK(client == NULL);
  OK(gopro_client_connect(addr, 2000, 5000, 0, &client));

  EXPECT(gopro_client_request(NULL, 1, heap, n, &reply), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `client` is NULL");
  EXPECT(gopro_client_request(client, 1, NULL, n, &reply), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `body` is NULL");
  EXPECT(gopro_client_request(client, 1, heap, n, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_reply` is NULL");
  CHECK(reply == NULL);
  EXPECT(gopro_client_login(client, NULL, n), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `credentials` is NULL");
  EXPECT(gopro_client_send(NULL, 1, heap, n), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_send(client, 1, NULL, n), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `body` is NULL");
  EXPECT(gopro_client_flush(NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_recv(NULL, &reply), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_recv(client, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_reply` is NULL");
  EXPECT(gopro_client_in_flight(NULL, &in_flight), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_in_flight(client, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out` is NULL");
  CHECK(in_flight == 99);
  OK(gopro_client_in_flight(client, &in_flight));
  CHECK(in_flight == 0); /* nothing was queued by the refused calls */

  /* Bodies and credentials from exact-size heap buffers, freed after the call. */
  OK(gopro_client_login(client, heap, n));
  OK(gopro_client_request(client, GOPRO_COMMAND_HEARTBEAT, heap, n, &first));
  OK(gopro_client_send(client, GOPRO_COMMAND_MESSAGE, heap, n));
  free(heap);
  heap = NULL;
  OK(gopro_client_recv(client, &reply));
  /* Each frame's body stays valid until that frame is freed. */
  OK(gopro_frame_get(first, &command, &version, &body, &len));
  CHECK(command == GOPRO_COMMAND_HEARTBEAT && version == GOPRO_PROTOCOL_VERSION);
  CHECK(len == n && memcmp(body, text, n) == 0);
  gopro_frame_free(first);
  command = version = 99;
  len = 99;
  body = (const uint8_t *)"untouched";
  EXPECT(gopro_frame_get(reply, NULL, &version, &body, &len), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_command` is NULL");
  EXPECT(gopro_frame_get(reply, &command, &version, NULL, &len), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_body` is NULL");
  EXPECT(gopro_frame_get(reply, &command, &version, &body, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT_MESSAGE("argument `out_body_len` is NULL");
  CHECK(command == 99 && version == 99 && len == 99);
  CHECK(strcmp((const char *)body, "untouched") == 0);
  OK(gopro_frame_get(reply, &command, NULL, &body, &len));
  CHECK(command == GOPRO_COMMAND_MESSAGE && len == 13 + n);
  CHECK(memcmp(body, "Server says: exact", len) == 0);
  gopro_frame_free(reply);

  /* An empty reply body is a NULL pointer and a length of 0. */
  reply = NULL;
  OK(gopro_client_request(client, GOPRO_COMMAND_HEARTBEAT, NULL, 0, &reply));
  OK(gopro_frame_get(reply, &command, &version, &body, &len));
  CHECK(command == GOPRO_COMMAND_HEARTBEAT && body == NULL && len == 0);
  gopro_frame_free(reply);
  gopro_client_free(client);
}

/* Settings through a gopro_client_config: the core's rules refuse a bad value
 * at once and leave the config as it was; a client connects with them. */
static void test_config(const char *addr) {
  gopro_client_config *config = NULL;
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  uint8_t big[33];
  memset(big, 'z', sizeof big);

  EXPECT(gopro_client_config_new(NULL), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_client_config_new(&config));
  EXPECT(gopro_client_config_set_timeout(NULL, 1), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_config_set_timeout(config, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("timeout must be longer than zero");
  EXPECT(gopro_client_config_set_connect_timeout(config, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("connect_timeout must be longer than zero");
  EXPECT(gopro_client_config_set_keep_alive(config, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("keep_alive must be longer than zero");
  /* The smallest values allowed. */
  OK(gopro_client_config_set_timeout(config, 5000));
  OK(gopro_client_config_set_connect_timeout(config, 1));
  OK(gopro_client_config_set_connect_timeout(config, 2000));
  OK(gopro_client_config_set_keep_alive(config, 1));
  OK(gopro_client_config_set_keep_alive(config, 60000));
  OK(gopro_client_config_set_max_body(config, 32));

  /* The concurrency and reconnection settings at their boundaries. */
  EXPECT(gopro_client_config_set_max_in_flight(config, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("max_in_flight must be at least 1, not 0");
  OK(gopro_client_config_set_max_in_flight(config, 1));
  OK(gopro_client_config_set_max_in_flight(config, GOPRO_DEFAULT_MAX_IN_FLIGHT));
  EXPECT(gopro_client_config_set_max_queued_bytes(config, GOPRO_HEADER_LEN - 1),
         GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("max_queued_bytes must be at least 8, not 7");
  OK(gopro_client_config_set_max_queued_bytes(config, GOPRO_HEADER_LEN));
  OK(gopro_client_config_set_max_queued_bytes(config, GOPRO_DEFAULT_MAX_QUEUED_BYTES));
  EXPECT(gopro_client_config_set_reconnect_delay(config, 0), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("reconnect_delay must be longer than zero");
  OK(gopro_client_config_set_reconnect_delay(config, 1));
  OK(gopro_client_config_set_reconnect_delay(config, 50));
  EXPECT(gopro_client_config_set_reconnect_max_delay(config, 49), GOPRO_STATUS_INVALID_ARGUMENT);
  OK(gopro_client_config_set_reconnect_max_delay(config, 50));
  OK(gopro_client_config_set_reconnect(config, true));
  OK(gopro_client_config_set_reconnect(config, false));
  OK(gopro_client_config_add_repeatable(config, 16));
  EXPECT(gopro_client_config_set_login(config, NULL, 1), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_config_set_login(NULL, big, 1), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_config_add_address(config, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_config_add_address(NULL, addr), GOPRO_STATUS_NULL_ARGUMENT);

  /* No address yet. */
  EXPECT(gopro_client_connect_with(config, &client), GOPRO_STATUS_INVALID_ARGUMENT);
  EXPECT_MESSAGE("invalid client setting: addresses must be at least 1, not 0");
  EXPECT(gopro_client_connect_with(NULL, &client), GOPRO_STATUS_NULL_ARGUMENT);
  OK(gopro_client_config_add_address(config, "127.0.0.1:1"));
  EXPECT(gopro_client_connect_with(config, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_connect_with(config, &client), GOPRO_STATUS_CONNECT_FAILED);
  CHECK(client == NULL);
  /* Nothing listens on the first address: the second answers. */
  OK(gopro_client_config_add_address(config, addr));
  OK(gopro_client_connect_with(config, &client));
  gopro_client_config_free(config); /* the client keeps a copy */
  OK(gopro_client_heartbeat(client));
  /* The body limit of the config: 32 goes, 33 is refused before sending. */
  EXPECT(gopro_client_send(client, GOPRO_COMMAND_HEARTBEAT, big, sizeof big),
         GOPRO_STATUS_BODY_TOO_LARGE);
  OK(gopro_client_send(client, GOPRO_COMMAND_HEARTBEAT, big, sizeof big - 1));
  OK(gopro_client_recv(client, &reply));
  gopro_frame_free(reply);
  gopro_client_free(client);

  /* Credentials over the body limit are refused at once. */
  OK(gopro_client_config_new(&config));
  OK(gopro_client_config_set_max_body(config, 4));
  EXPECT(gopro_client_config_set_login(config, big, 5), GOPRO_STATUS_INVALID_ARGUMENT);
  OK(gopro_client_config_set_login(config, big, 4));
  OK(gopro_client_config_add_address(config, addr));
  client = NULL;
  OK(gopro_client_connect_with(config, &client)); /* `gopro serve` takes any login */
  OK(gopro_client_heartbeat(client));
  gopro_client_free(client);
  gopro_client_config_free(config);
  gopro_client_config_free(NULL);
}

int main(int argc, char **argv) {
  gopro_client *client = NULL;
  gopro_frame *reply = NULL;
  size_t in_flight = 99;
  const char *hello = "Hello TCP World!";
  if (argc != 2) {
    fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
    return 2;
  }

  EXPECT(gopro_client_connect(NULL, 0, 0, 0, &client), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_connect(argv[1], 0, 0, 0, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  /* Port 1 on localhost: nothing listens there. */
  EXPECT(gopro_client_connect("127.0.0.1:1", 1000, 0, 0, &client), GOPRO_STATUS_CONNECT_FAILED);
  EXPECT(gopro_client_connect("not an address", 1000, 0, 0, &client),
         GOPRO_STATUS_CONNECT_FAILED);
  CHECK(client == NULL);

  OK(gopro_client_connect(argv[1], 2000, 5000, 64, &client));
  OK(gopro_client_heartbeat(client));
  OK(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, (const uint8_t *)hello, strlen(hello),
                          &reply));
  expect_reply(reply, GOPRO_COMMAND_MESSAGE, "Server says: Hello TCP World!");
  gopro_frame_free(reply);
  reply = NULL;
  /* No authenticator on `gopro serve`: every login succeeds. */
  OK(gopro_client_login(client, (const uint8_t *)"user:secret", 11));

  /* An unknown command gets ERROR; the reason is the server's, exactly. */
  EXPECT(gopro_client_request(client, 42, NULL, 0, &reply), GOPRO_STATUS_SERVER_ERROR);
  EXPECT_MESSAGE("unknown command: 42");
  CHECK(reply == NULL);
  OK(gopro_client_heartbeat(client)); /* still usable */

  /* Over the client's limit (64 here): refused before sending. */
  {
    uint8_t big[65];
    memset(big, 'x', sizeof big);
    EXPECT(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, big, sizeof big, &reply),
           GOPRO_STATUS_BODY_TOO_LARGE);
    EXPECT(gopro_client_send(client, GOPRO_COMMAND_MESSAGE, big, sizeof big),
           GOPRO_STATUS_BODY_TOO_LARGE);
  }

  /* Pipelining: 500 sends, then the replies in order. */
  EXPECT(gopro_client_recv(client, &reply), GOPRO_STATUS_NOTHING_IN_FLIGHT);
  check_pipeline(client, GOPRO_COMMAND_MESSAGE, 500, "msg-", "Server says: ");

  /* The reply is over the client's limit of 64: a protocol error that
   * closes the connection. */
  {
    uint8_t body[60];
    memset(body, 'y', sizeof body);
    EXPECT(gopro_client_request(client, GOPRO_COMMAND_MESSAGE, body, sizeof body, &reply),
           GOPRO_STATUS_PROTOCOL_ERROR);
    /* Later calls say why the connection ended. */
    EXPECT(gopro_client_heartbeat(client), GOPRO_STATUS_PROTOCOL_ERROR);
  }
  gopro_client_free(client);

  /* Use after close. */
  client = NULL;
  OK(gopro_client_connect(argv[1], 0, 0, 0, &client));
  OK(gopro_client_close(client));
  OK(gopro_client_close(client));
  EXPECT(gopro_client_heartbeat(client), GOPRO_STATUS_CLOSED);
  EXPECT(gopro_client_request(client, 1, NULL, 0, &reply), GOPRO_STATUS_CLOSED);
  EXPECT(gopro_client_send(client, 1, NULL, 0), GOPRO_STATUS_CLOSED);
  EXPECT(gopro_client_flush(client), GOPRO_STATUS_CLOSED);
  EXPECT(gopro_client_recv(client, &reply), GOPRO_STATUS_CLOSED);
  OK(gopro_client_in_flight(client, &in_flight));
  CHECK(in_flight == 0);
  gopro_client_free(client);

  /* NULL handles. */
  EXPECT(gopro_client_heartbeat(NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_close(NULL), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_client_login(NULL, NULL, 0), GOPRO_STATUS_NULL_ARGUMENT);
  EXPECT(gopro_frame_get(NULL, NULL, NULL, NULL, NULL), GOPRO_STATUS_NULL_ARGUMENT);
  gopro_client_free(NULL);
  gopro_frame_free(NULL);

  test_pointers(argv[1]);
  test_config(argv[1]);
  printf("test_client: passed\n");
  return 0;
}
