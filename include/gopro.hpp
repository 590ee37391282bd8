/*
 * gopro.hpp: a header-only C++17 API over gopro.h, the C ABI of gopro.
 *
 * Handles are move-only RAII objects (freed by their destructor; a
 * moved-from handle may be destroyed or assigned to, and its other calls
 * throw gopro::Error with GOPRO_STATUS_NULL_ARGUMENT). Failures throw
 * gopro::Error, which carries the C status and the library's message (for
 * an ERROR or GOAWAY from a server, exactly its reason). Bytes go in and
 * out as std::string_view / std::string. Everything here is a thin layer:
 * defaults and validation stay in the library.
 *
 * Link against libgopro (so or a), as for gopro.h; with CMake,
 * find_package(gopro CONFIG) and target gopro::gopro or gopro::gopro_static.
 */
#ifndef GOPRO_HPP
#define GOPRO_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "gopro.h"

namespace gopro {

/* SPEC §3's commands. */
inline constexpr std::uint8_t HEARTBEAT = GOPRO_COMMAND_HEARTBEAT;
inline constexpr std::uint8_t MESSAGE = GOPRO_COMMAND_MESSAGE;
inline constexpr std::uint8_t LOGIN = GOPRO_COMMAND_LOGIN;
inline constexpr std::uint8_t ERROR = GOPRO_COMMAND_ERROR;
inline constexpr std::uint8_t GOAWAY = GOPRO_COMMAND_GOAWAY;
/* The first command code free for applications (16–255). */
inline constexpr std::uint8_t FIRST_APPLICATION = GOPRO_COMMAND_FIRST_APPLICATION;

inline constexpr std::size_t HEADER_LEN = GOPRO_HEADER_LEN;
inline constexpr std::uint8_t PROTOCOL_VERSION = GOPRO_PROTOCOL_VERSION;
/* For Decoder: accept frames of any version. */
inline constexpr std::int32_t ANY_VERSION = GOPRO_ANY_VERSION;
inline constexpr std::size_t DEFAULT_MAX_BODY = GOPRO_DEFAULT_MAX_BODY;

/* The library's version, e.g. "0.1.0". */
inline std::string_view version() noexcept { return gopro_version(); }

/* A static English description of a status. */
inline std::string_view status_str(gopro_status status) noexcept {
  return gopro_status_str(static_cast<int>(status));
}

/* Every failure of this API: the C status, and in what() the library's
 * message for it (a server's ERROR or GOAWAY: exactly its reason). */
class Error : public std::runtime_error {
 public:
  Error(gopro_status status, const std::string &message)
      : std::runtime_error(message), status_(status) {}
  explicit Error(gopro_status status) : Error(status, std::string(status_str(status))) {}

  gopro_status status() const noexcept { return status_; }

 private:
  gopro_status status_;
};

namespace detail {

/* The message of the last failed call on this thread. */
inline std::optional<std::string> last_error_message() {
  std::size_t len = 0;
  if (gopro_last_error_message(nullptr, 0, &len) != GOPRO_STATUS_OK) {
    return std::nullopt;
  }
  std::string message(len + 1, '\0');
  if (gopro_last_error_message(message.data(), message.size(), &len) != GOPRO_STATUS_OK) {
    return std::nullopt;
  }
  message.resize(len);
  return message;
}

/* The Error of a call that just returned `status`, with its message, read
 * at once on the calling thread before another call replaces it. (Every
 * failure leaves one; a server's reason is kept even when empty.) */
inline Error error(gopro_status status) {
  std::optional<std::string> message = last_error_message();
  if (!message) {
    return Error(status);
  }
  return Error(status, *message);
}

inline void check(gopro_status status) {
  if (status != GOPRO_STATUS_OK) {
    throw error(status);
  }
}

inline const std::uint8_t *bytes(std::string_view s) noexcept {
  return reinterpret_cast<const std::uint8_t *>(s.data());
}

inline std::string_view view(const std::uint8_t *p, std::size_t len) noexcept {
  // The library hands out NULL for an empty body.
  return len == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char *>(p), len);
}

/* Milliseconds for the C setters; a negative duration has no meaning
 * there and would wrap to a huge one. */
inline std::uint64_t millis(std::chrono::milliseconds d) {
  if (d.count() < 0) {
    throw Error(GOPRO_STATUS_INVALID_ARGUMENT, "a duration must not be negative");
  }
  return static_cast<std::uint64_t>(d.count());
}

template <typename T, void (*Free)(T *)>
struct Deleter {
  void operator()(T *p) const noexcept { Free(p); }
};

template <typename T, void (*Free)(T *)>
using Handle = std::unique_ptr<T, Deleter<T, Free>>;

}  // namespace detail

/* A frame: command, version and body, owned (a copy of what the decoder or
 * the client handed out, so it outlives them). */
class Frame {
 public:
  Frame(std::uint8_t command, std::string body, std::uint8_t version = PROTOCOL_VERSION)
      : body_(std::move(body)), command_(command), version_(version) {}

  std::uint8_t command() const noexcept { return command_; }
  std::uint8_t version() const noexcept { return version_; }
  std::string_view body() const noexcept { return body_; }
  /* Moves the body out. */
  std::string take_body() && noexcept { return std::move(body_); }

 private:
  std::string body_;
  std::uint8_t command_;
  std::uint8_t version_;
};

/* The wire bytes of a frame: the 8-byte header, then `body`. A body over
 * `max_body` throws GOPRO_STATUS_BODY_TOO_LARGE. */
inline std::string encode(std::uint8_t command, std::string_view body,
                          std::size_t max_body = DEFAULT_MAX_BODY,
                          std::uint8_t version = PROTOCOL_VERSION) {
  std::string out(HEADER_LEN + body.size(), '\0');
  std::size_t written = 0;
  detail::check(gopro_frame_encode(version, command, detail::bytes(body), body.size(), max_body,
                                   reinterpret_cast<std::uint8_t *>(out.data()), out.size(),
                                   &written));
  out.resize(written);
  return out;
}

inline std::string encode(const Frame &frame, std::size_t max_body = DEFAULT_MAX_BODY) {
  return encode(frame.command(), frame.body(), max_body, frame.version());
}

/* A sans-IO decoder over a byte stream: feed it bytes in pieces of any
 * size, take whole frames out. One thread at a time. */
class Decoder {
 public:
  /* Bodies over `max_body` are refused on their header alone;
   * `required_version` 0–255 refuses other versions (ANY_VERSION: none). */
  explicit Decoder(std::size_t max_body = DEFAULT_MAX_BODY,
                   std::int32_t required_version = ANY_VERSION) {
    gopro_decoder *raw = nullptr;
    detail::check(gopro_decoder_new(max_body, required_version, &raw));
    decoder_.reset(raw);
  }

  /* Appends bytes (copied). After a decoding error, throws it again. */
  void feed(std::string_view bytes) {
    detail::check(gopro_decoder_feed(decoder_.get(), detail::bytes(bytes), bytes.size()));
  }

  /* The next whole frame, or nullopt until more bytes are fed. Throws
   * Error (GOPRO_STATUS_BAD_MAGIC, _BODY_TOO_LARGE, _UNSUPPORTED_VERSION)
   * when the stream cannot be trusted, and again on every later call. */
  std::optional<Frame> next() {
    std::uint8_t command = 0;
    std::uint8_t version = 0;
    const std::uint8_t *body = nullptr;
    std::size_t len = 0;
    gopro_status status = gopro_decoder_next(decoder_.get(), &command, &version, &body, &len);
    if (status == GOPRO_STATUS_NEED_MORE) {
      return std::nullopt;
    }
    detail::check(status);
    return Frame(command, std::string(detail::view(body, len)), version);
  }

  /* The stream has ended: throws GOPRO_STATUS_UNEXPECTED_EOF if part of
   * a frame (or a frame not taken) is left. */
  void finish() { detail::check(gopro_decoder_finish(decoder_.get())); }

  gopro_decoder *handle() const noexcept { return decoder_.get(); }

 private:
  detail::Handle<gopro_decoder, gopro_decoder_free> decoder_;
};

#if defined(GOPRO_RUNTIME)

using ClientStats = gopro_client_counters;
using ServerStats = gopro_stats;

namespace detail {

inline Frame to_frame(const gopro_frame *frame) {
  std::uint8_t command = 0;
  std::uint8_t version = 0;
  const std::uint8_t *body = nullptr;
  std::size_t len = 0;
  check(gopro_frame_get(frame, &command, &version, &body, &len));
  return Frame(command, std::string(view(body, len)), version);
}

/* Takes a reply the caller owns. */
inline Frame take_frame(gopro_frame *raw) {
  Handle<gopro_frame, gopro_frame_free> frame(raw);
  return to_frame(frame.get());
}

}  // namespace detail

/* The outcome of a request made with Client::submit: its reply, or the
 * Error the blocking call would have thrown. */
class Outcome {
 public:
  explicit Outcome(Frame reply) : reply_(std::move(reply)) {}
  explicit Outcome(Error error) : error_(std::move(error)) {}

  bool ok() const noexcept { return reply_.has_value(); }
  gopro_status status() const noexcept { return error_ ? error_->status() : GOPRO_STATUS_OK; }
  /* The failure, or nullptr. */
  const Error *error() const noexcept { return error_ ? &*error_ : nullptr; }
  /* The reply; throws the Error if the request failed. */
  const Frame &reply() const & {
    if (error_) {
      throw *error_;
    }
    return *reply_;
  }
  Frame reply() && {
    if (error_) {
      throw *error_;
    }
    return std::move(*reply_);
  }

 private:
  std::optional<Frame> reply_;
  std::optional<Error> error_;
};

/* Whether a TLS server with a CA requires client certificates. */
enum class ClientAuth : int {
  Required = GOPRO_TLS_CLIENT_AUTH_REQUIRED,
  Optional = GOPRO_TLS_CLIENT_AUTH_OPTIONAL,
};

/* TLS settings for a ClientConfig or a ServerConfig (gopro_tls_config):
 * a CA (a client's only roots, else the system's; a server's CA for client
 * certificates), a certificate and key (a server's, or a client's for
 * mutual TLS), a server name (clients), the client-auth mode (servers).
 * Each setter has the library read and check what it is given at once and
 * throws Error (GOPRO_STATUS_TLS_CONFIG, naming the file) if it is refused;
 * the configs given it copy it, so it may go away afterwards. */
class TlsConfig {
 public:
  TlsConfig() {
    gopro_tls_config *raw = nullptr;
    detail::check(gopro_tls_config_new(&raw));
    config_.reset(raw);
  }

  /* The CA certificates in a PEM file. */
  TlsConfig &ca_file(const std::string &path) {
    detail::check(gopro_tls_config_set_ca_file(config_.get(), path.c_str()));
    return *this;
  }
  TlsConfig &ca_pem(std::string_view pem) {
    detail::check(gopro_tls_config_set_ca_pem(config_.get(), detail::bytes(pem), pem.size()));
    return *this;
  }
  /* A certificate chain (leaf first) and its key, in PEM files. */
  TlsConfig &cert_files(const std::string &cert, const std::string &key) {
    detail::check(gopro_tls_config_set_cert_files(config_.get(), cert.c_str(), key.c_str()));
    return *this;
  }
  TlsConfig &cert_pem(std::string_view cert, std::string_view key) {
    detail::check(gopro_tls_config_set_cert_pem(config_.get(), detail::bytes(cert), cert.size(),
                                                detail::bytes(key), key.size()));
    return *this;
  }
  /* The name the server's certificate must carry (and the SNI sent). */
  TlsConfig &server_name(const std::string &name) {
    detail::check(gopro_tls_config_set_server_name(config_.get(), name.c_str()));
    return *this;
  }
  TlsConfig &client_auth(ClientAuth mode) {
    detail::check(gopro_tls_config_set_client_auth(config_.get(), static_cast<int>(mode)));
    return *this;
  }

  const gopro_tls_config *handle() const noexcept { return config_.get(); }

 private:
  detail::Handle<gopro_tls_config, gopro_tls_config_free> config_;
};

/* Inside a handler or authenticator: the connection it serves. A value the
 * connection lacks is empty (tls_version without TLS, the client's names
 * without a client certificate). Outside a callback, throws Error
 * GOPRO_STATUS_NOT_IN_CALLBACK. */
struct ConnectionInfo {
  std::string peer;                /* "127.0.0.1:50000" */
  std::string local;               /* the server's address */
  std::string tls_version;         /* "TLSv1.3", "TLSv1.2" or empty */
  std::string tls_server_name;     /* the SNI the client sent */
  std::string client_subject;      /* "CN=device-42, O=Acme" */
  std::string client_common_name;  /* "device-42" */
};

namespace detail {

using ConnectionGetter = gopro_status (*)(char *, std::size_t, std::size_t *);

inline std::string connection_value(ConnectionGetter get) {
  std::size_t len = 0;
  check(get(nullptr, 0, &len));
  std::string value(len + 1, '\0');
  check(get(value.data(), value.size(), &len));
  value.resize(len);
  return value;
}

}  // namespace detail

inline ConnectionInfo connection_info() {
  ConnectionInfo info;
  info.peer = detail::connection_value(gopro_connection_peer);
  info.local = detail::connection_value(gopro_connection_local);
  info.tls_version = detail::connection_value(gopro_connection_tls_version);
  info.tls_server_name = detail::connection_value(gopro_connection_tls_server_name);
  info.client_subject = detail::connection_value(gopro_connection_client_subject);
  info.client_common_name = detail::connection_value(gopro_connection_client_common_name);
  return info;
}

/* Client settings, with the library's defaults until set. Each setter
 * hands the value to the library at once and throws Error
 * (GOPRO_STATUS_INVALID_ARGUMENT) if it is refused. */
class ClientConfig {
 public:
  ClientConfig() {
    gopro_client_config *raw = nullptr;
    detail::check(gopro_client_config_new(&raw));
    config_.reset(raw);
  }

  /* A server address, "host:port"; several give failover, in order. */
  ClientConfig &address(const std::string &addr) {
    detail::check(gopro_client_config_add_address(config_.get(), addr.c_str()));
    return *this;
  }
  ClientConfig &connect_timeout(std::chrono::milliseconds d) {
    detail::check(gopro_client_config_set_connect_timeout(config_.get(), detail::millis(d)));
    return *this;
  }
  /* Time allowed for every call (waiting for room, writing, the reply). */
  ClientConfig &timeout(std::chrono::milliseconds d) {
    detail::check(gopro_client_config_set_timeout(config_.get(), detail::millis(d)));
    return *this;
  }
  ClientConfig &max_body(std::size_t bytes) {
    detail::check(gopro_client_config_set_max_body(config_.get(), bytes));
    return *this;
  }
  /* A HEARTBEAT whenever the connection has been quiet this long. */
  ClientConfig &keep_alive(std::chrono::milliseconds d) {
    detail::check(gopro_client_config_set_keep_alive(config_.get(), detail::millis(d)));
    return *this;
  }
  ClientConfig &max_in_flight(std::size_t requests) {
    detail::check(gopro_client_config_set_max_in_flight(config_.get(), requests));
    return *this;
  }
  ClientConfig &max_queued_bytes(std::size_t bytes) {
    detail::check(gopro_client_config_set_max_queued_bytes(config_.get(), bytes));
    return *this;
  }
  ClientConfig &reconnect(bool on = true) {
    detail::check(gopro_client_config_set_reconnect(config_.get(), on));
    return *this;
  }
  ClientConfig &reconnect_delay(std::chrono::milliseconds d) {
    detail::check(gopro_client_config_set_reconnect_delay(config_.get(), detail::millis(d)));
    return *this;
  }
  ClientConfig &reconnect_max_delay(std::chrono::milliseconds d) {
    detail::check(gopro_client_config_set_reconnect_max_delay(config_.get(), detail::millis(d)));
    return *this;
  }
  /* Credentials sent as LOGIN first on every connection. */
  ClientConfig &login(std::string_view credentials) {
    detail::check(gopro_client_config_set_login(config_.get(), detail::bytes(credentials),
                                                credentials.size()));
    return *this;
  }
  /* Requests of `command` may be sent again after a lost connection. */
  ClientConfig &repeatable(std::uint8_t command) {
    detail::check(gopro_client_config_add_repeatable(config_.get(), command));
    return *this;
  }
  /* TLS on every connection; a failed handshake makes Client::connect
   * throw GOPRO_STATUS_TLS_HANDSHAKE. */
  ClientConfig &tls(const TlsConfig &tls) {
    detail::check(gopro_client_config_set_tls(config_.get(), tls.handle()));
    return *this;
  }

  const gopro_client_config *handle() const noexcept { return config_.get(); }

 private:
  detail::Handle<gopro_client_config, gopro_client_config_free> config_;
};

/* A connection to a GoPro server. The const members may be called from any
 * number of threads at once (their requests share the connection);
 * send/flush/recv are one pipeline, for one thread. No blocking call from
 * a server handler or a completion callback (GOPRO_STATUS_BLOCKING_IN_RUNTIME). */
class Client {
 public:
  /* Connects to `addr` ("host:port") with the default settings. */
  static Client connect(const std::string &addr) {
    gopro_client *raw = nullptr;
    detail::check(gopro_client_connect(addr.c_str(), 0, 0, 0, &raw));
    return Client(raw);
  }

  /* Connects to the first address of `config` that answers (and logs in
   * if it says so). The config may be reused or destroyed afterwards. */
  static Client connect(const ClientConfig &config) {
    gopro_client *raw = nullptr;
    detail::check(gopro_client_connect_with(config.handle(), &raw));
    return Client(raw);
  }

  /* One request and its reply. An ERROR reply throws
   * GOPRO_STATUS_SERVER_ERROR with the server's reason as what(). */
  Frame request(std::uint8_t command, std::string_view body) const {
    gopro_frame *reply = nullptr;
    detail::check(
        gopro_client_request(client_.get(), command, detail::bytes(body), body.size(), &reply));
    return detail::take_frame(reply);
  }

  void heartbeat() const { detail::check(gopro_client_heartbeat(client_.get())); }

  /* Throws GOPRO_STATUS_SERVER_ERROR with the reason if refused. */
  void login(std::string_view credentials) const {
    detail::check(
        gopro_client_login(client_.get(), detail::bytes(credentials), credentials.size()));
  }

  /* Sends a request without waiting; `callback(gopro::Outcome)` runs once,
   * on a library thread, with its reply or failure. It must be short, must
   * not block, and must not throw: an exception escaping it ends the
   * program (std::terminate), as one escaping a std::thread would. If this
   * throws, nothing was sent and the callback is not called. */
  template <typename F>
  void submit(std::uint8_t command, std::string_view body, F callback) const {
    using C = Completion<std::decay_t<F>>;
    auto completion = std::make_unique<C>(C{std::move(callback)});
    detail::check(gopro_client_submit(client_.get(), command, detail::bytes(body), body.size(),
                                      &C::call, completion.get()));
    completion.release();  // the library calls C::call exactly once, which frees it
  }

  /* Sends a request without waiting; the future gets its reply or Error. */
  std::future<Frame> submit(std::uint8_t command, std::string_view body) const {
    std::promise<Frame> promise;
    std::future<Frame> future = promise.get_future();
    submit(command, body, [promise = std::move(promise)](Outcome outcome) mutable {
      if (outcome.ok()) {
        promise.set_value(std::move(outcome).reply());
      } else {
        promise.set_exception(std::make_exception_ptr(*outcome.error()));
      }
    });
    return future;
  }

  /* Pipelining: queue a request; its reply comes, in order, from recv(). */
  void send(std::uint8_t command, std::string_view body) {
    detail::check(gopro_client_send(client_.get(), command, detail::bytes(body), body.size()));
  }
  void flush() { detail::check(gopro_client_flush(client_.get())); }
  Frame recv() {
    gopro_frame *reply = nullptr;
    detail::check(gopro_client_recv(client_.get(), &reply));
    return detail::take_frame(reply);
  }
  std::size_t in_flight() const {
    std::size_t n = 0;
    detail::check(gopro_client_in_flight(client_.get(), &n));
    return n;
  }

  ClientStats stats() const {
    ClientStats stats{};
    detail::check(gopro_client_stats(client_.get(), &stats, sizeof stats));
    return stats;
  }

  /* Closes the connection: waiting calls and later ones fail with
   * GOPRO_STATUS_CLOSED; returns once every owed callback has run. Const
   * so that another thread may close a client others are waiting on. */
  void close() const { detail::check(gopro_client_close(client_.get())); }

  gopro_client *handle() const noexcept { return client_.get(); }

 private:
  explicit Client(gopro_client *client) : client_(client) {}

  template <typename F>
  struct Completion {
    F f;
    // noexcept: nothing may unwind into the library.
    static void call(void *user_data, gopro_status status, const gopro_frame *reply) noexcept {
      std::unique_ptr<Completion> self(static_cast<Completion *>(user_data));
      if (status == GOPRO_STATUS_OK) {
        self->f(Outcome(detail::to_frame(reply)));
      } else {
        self->f(Outcome(detail::error(status)));
      }
    }
  };

  detail::Handle<gopro_client, gopro_client_free> client_;
};

namespace detail {

/* A handler's answer: a body (anything a string_view can be made from) for
 * the request's command, or a whole Frame for another command. */
template <typename R>
gopro_status set_reply(gopro_reply *reply, const R &result) {
  if constexpr (std::is_same_v<R, Frame>) {
    gopro_status status = gopro_reply_set_command(reply, result.command());
    if (status != GOPRO_STATUS_OK) {
      return status;
    }
    return gopro_reply_set_body(reply, bytes(result.body()), result.body().size());
  } else {
    static_assert(std::is_convertible_v<const R &, std::string_view>,
                  "a gopro handler returns std::string (or anything a std::string_view can be "
                  "made from), or gopro::Frame");
    std::string_view body = result;
    return gopro_reply_set_body(reply, bytes(body), body.size());
  }
}

/* Not a gopro_status: the library then sends the reason set on the reply
 * (or its default, if setting it failed). */
inline constexpr int FAILED = -1;

/* Turns whatever a handler or authenticator throws into the reason of an
 * ERROR: nothing may unwind into the library. */
inline int refuse(gopro_reply *reply) noexcept {
  try {
    throw;
  } catch (const Error &e) {
    gopro_reply_set_error(reply, e.what());
    return e.status() == GOPRO_STATUS_OK ? FAILED : static_cast<int>(e.status());
  } catch (const std::exception &e) {
    gopro_reply_set_error(reply, e.what());
  } catch (...) {
    gopro_reply_set_error(reply, "unknown C++ exception");
  }
  return FAILED;
}

template <typename F>
struct HandlerCall {
  static int call(void *user_data, std::uint8_t command, const std::uint8_t *body,
                  std::size_t len, gopro_reply *reply) noexcept {
    try {
      const F &f = *static_cast<const F *>(user_data);
      const auto result = f(command, view(body, len));
      return static_cast<int>(set_reply(reply, result));
    } catch (...) {
      return refuse(reply);
    }
  }
};

template <typename F>
struct AuthenticatorCall {
  static int call(void *user_data, const std::uint8_t *credentials, std::size_t len,
                  gopro_reply *reply) noexcept {
    try {
      const F &f = *static_cast<const F *>(user_data);
      return f(view(credentials, len)) ? static_cast<int>(GOPRO_STATUS_OK) : FAILED;
    } catch (...) {
      return refuse(reply);
    }
  }
};

}  // namespace detail

/* Server settings, with the library's defaults until set, and the C++
 * handlers. A Server started with it shares ownership of the handlers, so
 * the config may be destroyed, changed or reused once the server runs. */
class ServerConfig {
 public:
  ServerConfig() {
    gopro_server_config *raw = nullptr;
    detail::check(gopro_server_config_new(&raw));
    config_.reset(raw);
  }

  /* Answers requests of `command` (16–255; HEARTBEAT and MESSAGE may be
   * overridden) with `f(command, body)`: a std::string (or anything a
   * std::string_view can be made from) is the reply body, a gopro::Frame a
   * reply with its own command. An exception thrown by `f` is answered
   * with ERROR, its what() the reason. `f` runs on the library's threads,
   * several at once, through a const reference: it must be thread-safe. */
  template <typename F>
  ServerConfig &handler(std::uint8_t command, F f) {
    using Fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<const Fn &, std::uint8_t, std::string_view>,
                  "a gopro handler is callable (const) as f(std::uint8_t, std::string_view)");
    auto callable = std::make_shared<const Fn>(std::move(f));
    detail::check(gopro_server_config_set_handler(config_.get(), command,
                                                  &detail::HandlerCall<Fn>::call,
                                                  const_cast<Fn *>(callable.get())));
    callables_[command] = std::move(callable);
    return *this;
  }

  /* Requires a LOGIN accepted by `f(credentials) -> bool` before any
   * command but HEARTBEAT and LOGIN. false refuses with "login refused";
   * an exception refuses with its what(). Threads: as for handler. */
  template <typename F>
  ServerConfig &authenticator(F f) {
    using Fn = std::decay_t<F>;
    static_assert(std::is_invocable_r_v<bool, const Fn &, std::string_view>,
                  "a gopro authenticator is callable (const) as f(std::string_view) -> bool");
    auto callable = std::make_shared<const Fn>(std::move(f));
    detail::check(gopro_server_config_set_authenticator(config_.get(),
                                                        &detail::AuthenticatorCall<Fn>::call,
                                                        const_cast<Fn *>(callable.get())));
    callables_[AUTHENTICATOR] = std::move(callable);
    return *this;
  }

  ServerConfig &read_timeout(std::chrono::milliseconds d) {
    detail::check(gopro_server_config_set_read_timeout(config_.get(), detail::millis(d)));
    return *this;
  }
  ServerConfig &write_timeout(std::chrono::milliseconds d) {
    detail::check(gopro_server_config_set_write_timeout(config_.get(), detail::millis(d)));
    return *this;
  }
  ServerConfig &max_body(std::size_t bytes) {
    detail::check(gopro_server_config_set_max_body(config_.get(), bytes));
    return *this;
  }
  ServerConfig &max_connections(std::size_t n) {
    detail::check(gopro_server_config_set_max_connections(config_.get(), n));
    return *this;
  }
  ServerConfig &grace(std::chrono::milliseconds d) {
    detail::check(gopro_server_config_set_grace(config_.get(), detail::millis(d)));
    return *this;
  }
  ServerConfig &prelogin_max_body(std::size_t bytes) {
    detail::check(gopro_server_config_set_prelogin_max_body(config_.get(), bytes));
    return *this;
  }
  ServerConfig &max_login_failures(std::uint32_t n) {
    detail::check(gopro_server_config_set_max_login_failures(config_.get(), n));
    return *this;
  }
  ServerConfig &memory_budget(std::size_t bytes) {
    detail::check(gopro_server_config_set_memory_budget(config_.get(), bytes));
    return *this;
  }
  ServerConfig &max_buffered_replies(std::size_t bytes) {
    detail::check(gopro_server_config_set_max_buffered_replies(config_.get(), bytes));
    return *this;
  }
  ServerConfig &raise_nofile_limit(bool raise) {
    detail::check(gopro_server_config_set_raise_nofile_limit(config_.get(), raise));
    return *this;
  }
  /* SO_REUSEPORT: several servers, each with it on, may listen on one port. */
  ServerConfig &reuse_port(bool on) {
    detail::check(gopro_server_config_set_reuse_port(config_.get(), on));
    return *this;
  }
  /* TLS on every connection; `tls` needs a certificate and key. */
  ServerConfig &tls(const TlsConfig &tls) {
    detail::check(gopro_server_config_set_tls(config_.get(), tls.handle()));
    return *this;
  }
  ServerConfig &tls_handshake_timeout(std::chrono::milliseconds d) {
    detail::check(gopro_server_config_set_tls_handshake_timeout(config_.get(), detail::millis(d)));
    return *this;
  }
  /* Behind a balancer speaking the PROXY protocol: only the trusted
   * proxies, a comma-separated list of addresses or networks
   * ("127.0.0.1/32,10.0.0.0/8"), may connect, each connection starting
   * with a PROXY header; connection_info().peer is the client it names. */
  ServerConfig &proxy_protocol(std::string_view trusted) {
    // The C call takes a NUL-terminated string: a NUL inside would cut the
    // list short unseen.
    if (trusted.find('\0') != std::string_view::npos) {
      throw Error(GOPRO_STATUS_INVALID_ARGUMENT, "proxy_protocol: the list contains a NUL byte");
    }
    const std::string copy(trusted);
    detail::check(gopro_server_config_set_proxy_protocol(config_.get(), copy.c_str()));
    return *this;
  }
  /* Prometheus metrics at http://addr/metrics ("host:port"; port 0 picks
   * a free one, Server::metrics_port tells which). */
  ServerConfig &metrics_listen(std::string_view addr) {
    if (addr.find('\0') != std::string_view::npos) {
      throw Error(GOPRO_STATUS_INVALID_ARGUMENT, "metrics_listen: the address contains a NUL byte");
    }
    const std::string copy(addr);
    detail::check(gopro_server_config_set_metrics_listen(config_.get(), copy.c_str()));
    return *this;
  }
  /* Scrapes served at once; one more is closed at once. */
  ServerConfig &metrics_max_scrapers(std::size_t max) {
    detail::check(gopro_server_config_set_metrics_max_scrapers(config_.get(), max));
    return *this;
  }
  /* The time a scraper has to send its request's headers. */
  ServerConfig &metrics_header_timeout(std::chrono::milliseconds d) {
    detail::check(gopro_server_config_set_metrics_header_timeout(config_.get(), detail::millis(d)));
    return *this;
  }

  const gopro_server_config *handle() const noexcept { return config_.get(); }

 private:
  friend class Server;
  // The authenticator's key, apart from the commands 0–255.
  static constexpr int AUTHENTICATOR = -1;

  detail::Handle<gopro_server_config, gopro_server_config_free> config_;
  // What the C config's user_data pointers point to, by command.
  std::map<int, std::shared_ptr<const void>> callables_;
};

/* A running server, serving on the library's threads until stop() or its
 * destruction (both graceful: SPEC §6). Not from one of its handlers. */
class Server {
 public:
  /* Listens on `addr` ("host:port"; port 0 picks one, see port()). */
  static Server start(const std::string &addr, const ServerConfig &config) {
    // Taken before the server starts, so its handlers outlive it.
    std::vector<std::shared_ptr<const void>> callables;
    callables.reserve(config.callables_.size());
    for (const auto &entry : config.callables_) {
      callables.push_back(entry.second);
    }
    gopro_server *raw = nullptr;
    detail::check(gopro_server_start(addr.c_str(), config.handle(), &raw));
    return Server(raw, std::move(callables));
  }

  /* With the default settings: HEARTBEAT and MESSAGE echoed, any LOGIN. */
  static Server start(const std::string &addr) {
    gopro_server *raw = nullptr;
    detail::check(gopro_server_start(addr.c_str(), nullptr, &raw));
    return Server(raw, {});
  }

  Server(Server &&) noexcept = default;
  /* Stops and frees the server held before, then releases its handlers. */
  Server &operator=(Server &&other) noexcept {
    if (this == &other) {
      return *this;
    }
    Server old(std::move(*this));
    server_ = std::move(other.server_);
    callables_ = std::move(other.callables_);
    return *this;
  }
  ~Server() { server_.reset(); }  // first the server, then what its handlers use

  /* The port listened on; GOPRO_STATUS_CLOSED once stopped. */
  std::uint16_t port() const {
    std::uint16_t port = 0;
    detail::check(gopro_server_port(server_.get(), &port));
    return port;
  }
  /* The port the metrics are served on (ServerConfig::metrics_listen),
   * 0 without metrics; GOPRO_STATUS_CLOSED once stopped. */
  std::uint16_t metrics_port() const {
    std::uint16_t port = 0;
    detail::check(gopro_server_metrics_port(server_.get(), &port));
    return port;
  }

  /* Counters now (also after stop(): the final ones). */
  ServerStats stats() const {
    ServerStats stats{};
    detail::check(gopro_server_stats(server_.get(), &stats, sizeof stats));
    return stats;
  }

  /* Reads the certificate and key files again, for new connections; on
   * failure throws GOPRO_STATUS_TLS_CONFIG and the old certificate stays. */
  void reload_tls() const { detail::check(gopro_server_reload_tls(server_.get())); }
  /* Uses this certificate chain and key (PEM) for new connections. */
  void reload_tls_pem(std::string_view cert, std::string_view key) const {
    detail::check(gopro_server_reload_tls_pem(server_.get(), detail::bytes(cert), cert.size(),
                                              detail::bytes(key), key.size()));
  }

  /* Stops gracefully and waits: no handler runs after it returns. Stopping
   * twice is fine. */
  void stop() { detail::check(gopro_server_stop(server_.get())); }

  gopro_server *handle() const noexcept { return server_.get(); }

 private:
  Server(gopro_server *server, std::vector<std::shared_ptr<const void>> callables)
      : callables_(std::move(callables)), server_(server) {}

  // Declared before server_ so that, should the destructor's explicit
  // order ever be lost, members are still destroyed server first.
  std::vector<std::shared_ptr<const void>> callables_;
  detail::Handle<gopro_server, gopro_server_free> server_;
};

#endif /* GOPRO_RUNTIME */

}  // namespace gopro

#endif /* GOPRO_HPP */
