// The C++17 API (include/gopro.hpp): the codec, the client against
// `gopro serve` processes this test starts, and a server with C++ handlers.
// Usage: test_hpp GOPRO_BIN
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "check.hpp"
#include "gopro.hpp"
#include "servers.h"

using namespace std::chrono_literals;
using namespace std::string_view_literals;

static_assert(std::is_same_v<decltype(gopro::HEARTBEAT), const std::uint8_t>);
static_assert(gopro::HEARTBEAT == 0 && gopro::MESSAGE == 1 && gopro::LOGIN == 2 &&
              gopro::ERROR == 3 && gopro::GOAWAY == 4);
static_assert(std::is_base_of_v<std::runtime_error, gopro::Error>);
// Move-only handles.
static_assert(!std::is_copy_constructible_v<gopro::Decoder> &&
              std::is_nothrow_move_constructible_v<gopro::Decoder>);
static_assert(!std::is_copy_constructible_v<gopro::Client> &&
              std::is_nothrow_move_constructible_v<gopro::Client>);
static_assert(!std::is_copy_constructible_v<gopro::Server> &&
              std::is_nothrow_move_assignable_v<gopro::Server>);
static_assert(!std::is_copy_constructible_v<gopro::ServerConfig>);

static const std::string HELLO = "Hello TCP World!";

static void test_encode() {
  // SPEC §7's worked examples, byte for byte.
  REQUIRE(gopro::encode(gopro::HEARTBEAT, "") == "\x47\x4F\x01\x00\x00\x00\x00\x00"sv);
  REQUIRE(gopro::encode(gopro::MESSAGE, HELLO) ==
          std::string("\x47\x4F\x01\x01\x00\x00\x00\x10"sv) + HELLO);
  const std::string big(300, 'x');
  REQUIRE(gopro::encode(200, big).substr(0, 8) == "\x47\x4F\x01\xC8\x00\x00\x01\x2C"sv);
  REQUIRE(gopro::encode(gopro::Frame(7, "ab", 9)) == "\x47\x4F\x09\x07\x00\x00\x00\x02" "ab"sv);
  // The limit is inclusive.
  REQUIRE(gopro::encode(gopro::MESSAGE, "1234", 4).size() == 12);
  std::string what = THROWS(gopro::encode(gopro::MESSAGE, "12345", 4),
                            GOPRO_STATUS_BODY_TOO_LARGE);
  REQUIRE(what.find('5') != std::string::npos && what.find('4') != std::string::npos);
}

static void test_decoder() {
  const std::string stream = gopro::encode(gopro::HEARTBEAT, "") +
                             gopro::encode(gopro::MESSAGE, HELLO) + gopro::encode(250, "z");
  // Split in two at every byte: the same three frames come out.
  for (std::size_t cut = 0; cut <= stream.size(); cut++) {
    gopro::Decoder decoder;
    std::vector<gopro::Frame> frames;
    for (std::string_view piece : {std::string_view(stream).substr(0, cut),
                                   std::string_view(stream).substr(cut)}) {
      decoder.feed(piece);
      while (auto frame = decoder.next()) {
        frames.push_back(std::move(*frame));
      }
    }
    REQUIRE(frames.size() == 3);
    REQUIRE(frames[0].command() == gopro::HEARTBEAT && frames[0].body().empty());
    REQUIRE(frames[1].command() == gopro::MESSAGE && frames[1].body() == HELLO);
    REQUIRE(frames[1].version() == gopro::PROTOCOL_VERSION);
    REQUIRE(frames[2].command() == 250 && frames[2].body() == "z");
    decoder.finish();
  }
  // Byte by byte: nothing until the last byte; the frame owns its body
  // (the decoder's buffer moves on).
  gopro::Decoder decoder;
  const std::string one = gopro::encode(gopro::MESSAGE, HELLO);
  for (std::size_t i = 0; i + 1 < one.size(); i++) {
    decoder.feed(one.substr(i, 1));
    REQUIRE(!decoder.next().has_value());
  }
  decoder.feed(one.substr(one.size() - 1));
  std::optional<gopro::Frame> frame = decoder.next();
  REQUIRE(frame.has_value());
  decoder.feed(gopro::encode(gopro::MESSAGE, std::string(100, 'q')));
  REQUIRE(decoder.next()->body() == std::string(100, 'q'));
  REQUIRE(frame->body() == HELLO);
  // Half a frame left: the end of the stream is an error.
  decoder.feed(one.substr(0, 5));
  THROWS(decoder.finish(), GOPRO_STATUS_UNEXPECTED_EOF);
}

static void test_decoder_errors() {
  // A body limit of 16: 16 bytes pass, a header announcing 17 is refused.
  gopro::Decoder small(16);
  small.feed(gopro::encode(16, std::string(16, 'a')));
  REQUIRE(small.next()->body().size() == 16);
  small.feed(gopro::encode(16, std::string(17, 'a'), 17).substr(0, 8));
  std::string what = THROWS(small.next(), GOPRO_STATUS_BODY_TOO_LARGE);
  REQUIRE(what.find("17") != std::string::npos);
  // The error sticks, also for feed.
  THROWS(small.next(), GOPRO_STATUS_BODY_TOO_LARGE);
  THROWS(small.feed("more"), GOPRO_STATUS_BODY_TOO_LARGE);

  gopro::Decoder magic;
  magic.feed("GET / HTTP/1.1\r\n");
  THROWS(magic.next(), GOPRO_STATUS_BAD_MAGIC);

  gopro::Decoder v1(gopro::DEFAULT_MAX_BODY, 1);
  v1.feed(gopro::encode(gopro::MESSAGE, "x", gopro::DEFAULT_MAX_BODY, 2));
  THROWS(v1.next(), GOPRO_STATUS_UNSUPPORTED_VERSION);
  THROWS(gopro::Decoder(16, 256), GOPRO_STATUS_INVALID_ARGUMENT);

  // A gopro::Error is caught as a std::runtime_error too.
  bool caught = false;
  try {
    gopro::Decoder d(1);
    d.feed(gopro::encode(1, "xy"));
    d.next();
  } catch (const std::runtime_error &e) {
    caught = std::string(e.what()).find("2") != std::string::npos;
  }
  REQUIRE(caught);

  // A moved-from decoder: calls throw, destruction is safe.
  gopro::Decoder from;
  gopro::Decoder to(std::move(from));
  to.feed(gopro::encode(gopro::HEARTBEAT, ""));
  REQUIRE(to.next()->command() == gopro::HEARTBEAT);
  THROWS(from.feed("x"), GOPRO_STATUS_NULL_ARGUMENT);
}

static void test_client(const char *bin) {
  struct server plain = {};
  plain.bin = bin;
  server_open(&plain);
  const std::string addr = plain.addr;

  gopro::Client client = gopro::Client::connect(addr);
  gopro::Frame reply = client.request(gopro::MESSAGE, HELLO);
  REQUIRE(reply.command() == gopro::MESSAGE);
  REQUIRE(reply.body() == "Server says: " + HELLO);
  client.heartbeat();
  client.login("anyone"); // no --auth: every LOGIN succeeds
  // An ERROR reply: its reason is what(); the connection stays usable.
  std::string what = THROWS(client.request(200, "x"), GOPRO_STATUS_SERVER_ERROR);
  REQUIRE(what == "unknown command: 200");
  REQUIRE(client.request(gopro::MESSAGE, "").body() == "Server says: ");

  // Completions: a callback, and a future.
  std::promise<std::string> got;
  client.submit(gopro::MESSAGE, "cb", [&got](gopro::Outcome outcome) {
    got.set_value(outcome.ok() ? std::string(outcome.reply().body()) : "failed");
  });
  REQUIRE(got.get_future().get() == "Server says: cb");
  std::future<gopro::Frame> future = client.submit(gopro::MESSAGE, "fut");
  REQUIRE(future.get().body() == "Server says: fut");
  std::future<gopro::Frame> refused = client.submit(201, "x");
  REQUIRE(THROWS(refused.get(), GOPRO_STATUS_SERVER_ERROR) == "unknown command: 201");
  std::promise<gopro_status> failed;
  client.submit(202, "x", [&failed](gopro::Outcome outcome) {
    failed.set_value(outcome.ok() ? GOPRO_STATUS_OK : outcome.error()->status());
  });
  REQUIRE(failed.get_future().get() == GOPRO_STATUS_SERVER_ERROR);

  // The pipeline: replies in order.
  client.send(gopro::MESSAGE, "1");
  client.send(gopro::MESSAGE, "2");
  REQUIRE(client.in_flight() == 2);
  client.flush();
  REQUIRE(client.recv().body() == "Server says: 1");
  REQUIRE(client.recv().body() == "Server says: 2");
  THROWS(client.recv(), GOPRO_STATUS_NOTHING_IN_FLIGHT);

  gopro::ClientStats stats = client.stats();
  // 5 requests, heartbeat, login, 4 submitted, 2 sent; ERRORs are replies.
  REQUIRE(stats.requests == 11 && stats.replies == 11);

  // Moved-from: calls throw, the moved-to handle works, both destroyed.
  gopro::Client moved = std::move(client);
  THROWS(client.heartbeat(), GOPRO_STATUS_NULL_ARGUMENT);
  moved.heartbeat();
  gopro::Client other = gopro::Client::connect(addr);
  other = std::move(moved); // frees the client `other` held
  other.heartbeat();
  other.close();
  THROWS(other.heartbeat(), GOPRO_STATUS_CLOSED);

  // Settings: refused values and a failed connection throw.
  gopro::ClientConfig config;
  THROWS(config.max_in_flight(0), GOPRO_STATUS_INVALID_ARGUMENT);
  THROWS(config.timeout(-1ms), GOPRO_STATUS_INVALID_ARGUMENT);
  THROWS(gopro::Client::connect(config), GOPRO_STATUS_INVALID_ARGUMENT); // no address
  gopro::ClientConfig nowhere;
  nowhere.address("not an address").connect_timeout(2s);
  THROWS(gopro::Client::connect(nowhere), GOPRO_STATUS_CONNECT_FAILED);
  server_stop(&plain, SIGTERM);
  THROWS(gopro::Client::connect(addr), GOPRO_STATUS_CONNECT_FAILED);
}

static void test_login(const char *bin) {
  struct server guarded = {};
  guarded.bin = bin;
  guarded.auth = "secret";
  server_open(&guarded);
  const std::string addr = guarded.addr;

  gopro::Client client = gopro::Client::connect(addr);
  REQUIRE(THROWS(client.request(gopro::MESSAGE, "x"), GOPRO_STATUS_SERVER_ERROR) ==
          "not authenticated");
  THROWS(client.login("wrong"), GOPRO_STATUS_SERVER_ERROR);
  client.login("secret");
  REQUIRE(client.request(gopro::MESSAGE, "in").body() == "Server says: in");

  // The config's login goes first on the connection; a wrong one fails it.
  gopro::ClientConfig config;
  config.address(addr).login("secret").timeout(5s).connect_timeout(2s).max_in_flight(4);
  gopro::Client logged = gopro::Client::connect(config);
  REQUIRE(logged.request(gopro::MESSAGE, "cfg").body() == "Server says: cfg");
  gopro::ClientConfig wrong;
  wrong.address(addr).login("nope");
  THROWS(gopro::Client::connect(wrong), GOPRO_STATUS_SERVER_ERROR);
  server_stop(&guarded, SIGTERM);
}

// A handler's state that counts its own copies: the server must keep the
// callable alive exactly as long as it runs.
struct Upper {
  std::shared_ptr<std::atomic<int>> calls;
  std::string prefix;
  std::string operator()(std::uint8_t command, std::string_view body) const {
    calls->fetch_add(1);
    std::string out = prefix + std::to_string(command) + ":";
    for (char c : body) {
      out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return out;
  }
};

static void test_server() {
  auto calls = std::make_shared<std::atomic<int>>(0);
  std::optional<gopro::Server> server;
  {
    gopro::ServerConfig config;
    config.handler(16, Upper{calls, "cpp "})
        .handler(17,
                 [](std::uint8_t, std::string_view body) -> std::string {
                   throw std::runtime_error("no widget named " + std::string(body));
                 })
        .handler(18,
                 [](std::uint8_t, std::string_view) -> std::string {
                   throw gopro::Error(GOPRO_STATUS_INVALID_ARGUMENT, "bad request");
                 })
        .handler(19, [](std::uint8_t, std::string_view) -> std::string { throw 42; })
        .handler(20,
                 [](std::uint8_t, std::string_view body) {
                   return gopro::Frame(21, std::string(body) + "!");
                 })
        .handler(gopro::MESSAGE, [](std::uint8_t, std::string_view) { return "mine"; })
        .max_body(1024)
        .grace(1s);
    THROWS(config.handler(gopro::LOGIN, Upper{calls, ""}), GOPRO_STATUS_INVALID_ARGUMENT);
    THROWS(config.max_connections(0), GOPRO_STATUS_INVALID_ARGUMENT);
    server = gopro::Server::start("127.0.0.1:0", config);
    // The config is gone with its last handle on the callable...
  }
  // ...but the server holds one: Upper lives as long as the server.
  REQUIRE(calls.use_count() == 2);
  const std::uint16_t port = server->port();
  REQUIRE(port != 0);
  const std::string addr = "127.0.0.1:" + std::to_string(port);

  gopro::Client client = gopro::Client::connect(addr);
  gopro::Frame reply = client.request(16, "shout");
  REQUIRE(reply.command() == 16 && reply.body() == "cpp 16:SHOUT");
  REQUIRE(client.request(16, "").body() == "cpp 16:");
  REQUIRE(calls->load() == 2);
  REQUIRE(THROWS(client.request(17, "w1"), GOPRO_STATUS_SERVER_ERROR) == "no widget named w1");
  REQUIRE(THROWS(client.request(18, ""), GOPRO_STATUS_SERVER_ERROR) == "bad request");
  REQUIRE(THROWS(client.request(19, ""), GOPRO_STATUS_SERVER_ERROR) == "unknown C++ exception");
  gopro::Frame other = client.request(20, "hey");
  REQUIRE(other.command() == 21 && other.body() == "hey!");
  REQUIRE(client.request(gopro::MESSAGE, "x").body() == "mine");
  client.heartbeat(); // the connection survived every ERROR
  {
    // Over the server's body limit: refused before the handler, and the
    // connection closed after the ERROR (a protocol error).
    gopro::Client big = gopro::Client::connect(addr);
    THROWS(big.request(16, std::string(1025, 'a')), GOPRO_STATUS_SERVER_ERROR);
    REQUIRE(calls->load() == 2);
  }

  // Moving the server: the moved-from handle throws and is destroyed
  // safely; the moved-to one serves on.
  gopro::Server moved = std::move(*server);
  THROWS(server->port(), GOPRO_STATUS_NULL_ARGUMENT);
  THROWS(server->stop(), GOPRO_STATUS_NULL_ARGUMENT);
  server.reset();
  REQUIRE(moved.port() == port);
  REQUIRE(client.request(16, "moved").body() == "cpp 16:MOVED");

  // stop(): graceful, final, repeatable; the callable is kept until the
  // handle goes.
  moved.stop();
  THROWS(moved.port(), GOPRO_STATUS_CLOSED);
  moved.stop();
  // The final counts: 9 frames of `client`, 3 handler failures (17, 18,
  // 19), one protocol error (the oversized body).
  gopro::ServerStats stats = moved.stats();
  REQUIRE(stats.frames_in == 9);
  REQUIRE(stats.errors_handler == 3);
  REQUIRE(stats.errors_protocol == 1);
  // The client saw the GOAWAY: later requests get it, with its reason.
  THROWS(client.request(16, "after"), GOPRO_STATUS_GOAWAY);
  THROWS(gopro::Client::connect(addr), GOPRO_STATUS_CONNECT_FAILED);
  REQUIRE(calls.use_count() == 2);
  // Assigning over a server stops it and then releases its handlers.
  // (The config and its servers share one Upper.)
  std::optional<gopro::Server> replacement;
  {
    gopro::ServerConfig second;
    second.handler(16, Upper{calls, "2 "}).reuse_port(true);
    replacement = gopro::Server::start("127.0.0.1:0", second);
    // SO_REUSEPORT on both: a twin binds the same port; without it, no.
    std::string same = "127.0.0.1:" + std::to_string(replacement->port());
    gopro::Server twin = gopro::Server::start(same, second);
    THROWS(gopro::Server::start(same), GOPRO_STATUS_BIND_FAILED);
  }
  REQUIRE(calls.use_count() == 3);
  moved = std::move(*replacement);
  REQUIRE(calls.use_count() == 2); // the first server's Upper is gone
  replacement.reset();
  gopro::Client again = gopro::Client::connect("127.0.0.1:" + std::to_string(moved.port()));
  REQUIRE(again.request(16, "b").body() == "2 16:B");
  again.close();
  moved = gopro::Server::start("127.0.0.1:0");
  REQUIRE(calls.use_count() == 1); // and so is the second's
}

static void test_authenticator() {
  gopro::ServerConfig config;
  config.authenticator([](std::string_view credentials) {
    if (credentials == "boom") {
      throw std::runtime_error("authenticator is down");
    }
    return credentials == "pw";
  });
  gopro::Server server = gopro::Server::start("127.0.0.1:0", config);
  gopro::Client client = gopro::Client::connect("127.0.0.1:" + std::to_string(server.port()));
  REQUIRE(THROWS(client.request(gopro::MESSAGE, "x"), GOPRO_STATUS_SERVER_ERROR) ==
          "not authenticated");
  REQUIRE(THROWS(client.login("no"), GOPRO_STATUS_SERVER_ERROR) ==
          "login failed: login refused");
  REQUIRE(THROWS(client.login("boom"), GOPRO_STATUS_SERVER_ERROR) ==
          "login failed: authenticator is down");
  client.login("pw");
  REQUIRE(client.request(gopro::MESSAGE, "x").body() == "Server says: x");
  REQUIRE(server.stats().errors_login == 2);
}

// Behind a PROXY-protocol balancer: the setter refuses what the core
// refuses, and a handler's connection_info().peer is the header's client.
static void test_proxy_protocol() {
  gopro::ServerConfig config;
  REQUIRE(THROWS(config.proxy_protocol("10.0.0.0/33"), GOPRO_STATUS_INVALID_ARGUMENT)
              .find("\"10.0.0.0/33\" is not an address or a network") != std::string::npos);
  REQUIRE(THROWS(config.proxy_protocol(""), GOPRO_STATUS_INVALID_ARGUMENT)
              .find("at least one") != std::string::npos);
  // A NUL inside would have cut the list short: refused, not truncated.
  THROWS(config.proxy_protocol("127.0.0.1\0garbage"sv), GOPRO_STATUS_INVALID_ARGUMENT);
  config.proxy_protocol("127.0.0.1/32,10.0.0.0/8"sv.substr(0, 12)) // a view, not NUL-ended
      .handler(17, [](std::uint8_t, std::string_view) { return gopro::connection_info().peer; });
  gopro::Server server = gopro::Server::start("127.0.0.1:0", config);

  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(server.port());
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0);
  const std::string bytes =
      "PROXY TCP4 203.0.113.7 198.51.100.1 51234 8888\r\n" + gopro::encode(17, "");
  REQUIRE(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  gopro::Decoder decoder;
  std::optional<gopro::Frame> reply;
  char buf[256];
  while (!(reply = decoder.next())) {
    const ssize_t n = read(fd, buf, sizeof buf);
    REQUIRE(n > 0);
    decoder.feed(std::string_view(buf, static_cast<std::size_t>(n)));
  }
  close(fd);
  REQUIRE(reply->command() == 17 && reply->body() == "203.0.113.7:51234");
  server.stop();
  REQUIRE(server.stats().proxy_headers == 1 && server.stats().errors_proxy == 0);
}

// The metrics settings: refused values throw, and the port the metrics
// are served on is known (0 without metrics). What the port serves, and
// its limits at their boundary, are test_metrics.c's.
static void test_metrics() {
  gopro::ServerConfig config;
  THROWS(config.metrics_max_scrapers(0), GOPRO_STATUS_INVALID_ARGUMENT);
  THROWS(config.metrics_header_timeout(0ms), GOPRO_STATUS_INVALID_ARGUMENT);
  THROWS(config.metrics_listen(std::string_view("127.0.0.1:0\0x", 13)),
         GOPRO_STATUS_INVALID_ARGUMENT);
  config.metrics_listen("127.0.0.1:0").metrics_max_scrapers(1).metrics_header_timeout(2s);
  gopro::Server server = gopro::Server::start("127.0.0.1:0", config);
  const std::uint16_t metrics = server.metrics_port();
  REQUIRE(metrics != 0 && metrics != server.port());
  server.stop();
  THROWS(server.metrics_port(), GOPRO_STATUS_CLOSED);
  gopro::Server plain = gopro::Server::start("127.0.0.1:0");
  REQUIRE(plain.metrics_port() == 0);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s GOPRO_BIN\n", argv[0]);
    return 2;
  }
  REQUIRE(gopro::version() == std::to_string(GOPRO_VERSION_MAJOR) + "." +
                                  std::to_string(GOPRO_VERSION_MINOR) + "." +
                                  std::to_string(GOPRO_VERSION_PATCH));
  REQUIRE(gopro::status_str(GOPRO_STATUS_TIMEOUT) == gopro_status_str(GOPRO_STATUS_TIMEOUT));
  test_encode();
  test_decoder();
  test_decoder_errors();
  test_client(argv[1]);
  test_login(argv[1]);
  test_server();
  test_authenticator();
  test_proxy_protocol();
  test_metrics();
  std::printf("test_hpp: passed\n");
  return 0;
}
