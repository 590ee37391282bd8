// A server with a C++ handler and a client asking it, in one process,
// through gopro.hpp: exits 0 only if the reply and the ERROR are right.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

#include <gopro.hpp>

int main() {
  try {
    gopro::ServerConfig config;
    config.handler(16, [](std::uint8_t, std::string_view body) {
      if (body.empty()) {
        throw std::invalid_argument("empty");
      }
      return "got " + std::string(body);
    });
    gopro::Server server = gopro::Server::start("127.0.0.1:0", config);
    gopro::Client client = gopro::Client::connect("127.0.0.1:" + std::to_string(server.port()));
    if (client.request(16, "cmake").body() != "got cmake") {
      std::fprintf(stderr, "server: wrong reply\n");
      return 1;
    }
    try {
      client.request(16, "");
      std::fprintf(stderr, "server: no ERROR for an empty body\n");
      return 1;
    } catch (const gopro::Error &e) {
      if (e.status() != GOPRO_STATUS_SERVER_ERROR || std::string_view(e.what()) != "empty") {
        throw;
      }
    }
    std::printf("server: libgopro %s\n", std::string(gopro::version()).c_str());
  } catch (const gopro::Error &e) {
    std::fprintf(stderr, "server: %s (status %d)\n", e.what(), static_cast<int>(e.status()));
    return 1;
  }
  return 0;
}
