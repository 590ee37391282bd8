// A GoPro server with a C++ handler, and a client asking it in the same
// process. Prints the reply to command 16, then the ERROR the handler
// raises for an empty body.
//   c++ -std=c++17 server.cpp $(pkg-config --cflags --libs gopro) -o server
#include <cctype>
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
        throw std::invalid_argument("nothing to shout");  // the client gets ERROR
      }
      std::string out(body);
      for (char &c : out) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      }
      return out;
    });
    gopro::Server server = gopro::Server::start("127.0.0.1:0", config);

    gopro::Client client = gopro::Client::connect("127.0.0.1:" + std::to_string(server.port()));
    gopro::Frame reply = client.request(16, "hello");
    std::printf("%u %.*s\n", unsigned(reply.command()), int(reply.body().size()),
                reply.body().data());
    try {
      client.request(16, "");
    } catch (const gopro::Error &e) {
      if (e.status() != GOPRO_STATUS_SERVER_ERROR) {
        throw;
      }
      std::printf("ERROR %s\n", e.what());
    }
    server.stop();  // graceful; the destructor would do it too
  } catch (const gopro::Error &e) {
    std::fprintf(stderr, "server: %s (status %d)\n", e.what(), int(e.status()));
    return 1;
  }
  return 0;
}
