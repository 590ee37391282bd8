// The header as C++17: RAII over the handles, the codec, and a C++ server
// callback (a lambda without captures) answering the C client.
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "check.hpp"
#include "gopro.h"

template <typename T, void (*Free)(T *)>
struct Deleter {
  void operator()(T *p) const { Free(p); }
};
using Decoder = std::unique_ptr<gopro_decoder, Deleter<gopro_decoder, gopro_decoder_free>>;
using Client = std::unique_ptr<gopro_client, Deleter<gopro_client, gopro_client_free>>;
using Server = std::unique_ptr<gopro_server, Deleter<gopro_server, gopro_server_free>>;
using Config =
    std::unique_ptr<gopro_server_config, Deleter<gopro_server_config, gopro_server_config_free>>;
using Frame = std::unique_ptr<gopro_frame, Deleter<gopro_frame, gopro_frame_free>>;

static void codec() {
  const std::string body = "Hello TCP World!";
  std::vector<uint8_t> wire(GOPRO_HEADER_LEN + body.size());
  size_t written = 0;
  REQUIRE(gopro_frame_encode(GOPRO_PROTOCOL_VERSION, GOPRO_COMMAND_MESSAGE,
                             reinterpret_cast<const uint8_t *>(body.data()), body.size(),
                             GOPRO_DEFAULT_MAX_BODY, wire.data(), wire.size(),
                             &written) == GOPRO_STATUS_OK);
  gopro_decoder *raw = nullptr;
  REQUIRE(gopro_decoder_new(GOPRO_DEFAULT_MAX_BODY, GOPRO_ANY_VERSION, &raw) == GOPRO_STATUS_OK);
  Decoder decoder(raw);
  // Byte by byte: a frame appears only when its last byte arrives.
  for (size_t i = 0; i < wire.size(); i++) {
    uint8_t command = 0;
    const uint8_t *out = nullptr;
    size_t len = 0;
    REQUIRE(gopro_decoder_next(decoder.get(), &command, nullptr, &out, &len) ==
            GOPRO_STATUS_NEED_MORE);
    REQUIRE(gopro_decoder_feed(decoder.get(), &wire[i], 1) == GOPRO_STATUS_OK);
  }
  uint8_t command = 0;
  const uint8_t *out = nullptr;
  size_t len = 0;
  REQUIRE(gopro_decoder_next(decoder.get(), &command, nullptr, &out, &len) == GOPRO_STATUS_OK);
  REQUIRE(command == GOPRO_COMMAND_MESSAGE);
  REQUIRE(std::string(reinterpret_cast<const char *>(out), len) == body);
}

static void server_and_client() {
  gopro_server_config *raw_config = nullptr;
  REQUIRE(gopro_server_config_new(&raw_config) == GOPRO_STATUS_OK);
  Config config(raw_config);
  auto upper = [](void *, uint8_t, const uint8_t *body, size_t len, gopro_reply *reply) -> int {
    std::string s(reinterpret_cast<const char *>(body), len);
    for (auto &c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return gopro_reply_set_body(reply, reinterpret_cast<const uint8_t *>(s.data()), s.size());
  };
  REQUIRE(gopro_server_config_set_handler(config.get(), 200, upper, nullptr) == GOPRO_STATUS_OK);
  gopro_server *raw_server = nullptr;
  REQUIRE(gopro_server_start("127.0.0.1:0", config.get(), &raw_server) == GOPRO_STATUS_OK);
  Server server(raw_server);
  uint16_t port = 0;
  REQUIRE(gopro_server_port(server.get(), &port) == GOPRO_STATUS_OK);
  const std::string addr = "127.0.0.1:" + std::to_string(port);

  gopro_client *raw_client = nullptr;
  REQUIRE(gopro_client_connect(addr.c_str(), 0, 5000, 0, &raw_client) == GOPRO_STATUS_OK);
  Client client(raw_client);
  gopro_frame *raw_reply = nullptr;
  REQUIRE(gopro_client_request(client.get(), 200, reinterpret_cast<const uint8_t *>("shout"), 5,
                               &raw_reply) == GOPRO_STATUS_OK);
  Frame reply(raw_reply);
  uint8_t command = 0;
  const uint8_t *body = nullptr;
  size_t len = 0;
  REQUIRE(gopro_frame_get(reply.get(), &command, nullptr, &body, &len) == GOPRO_STATUS_OK);
  REQUIRE(command == 200);
  REQUIRE(std::string(reinterpret_cast<const char *>(body), len) == "SHOUT");
}

int main() {
  codec();
  server_and_client();
  std::printf("test_cpp: passed\n");
  return 0;
}
