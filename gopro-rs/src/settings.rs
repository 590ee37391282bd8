//! Every setting of the server and the client: its name, its default, and
//! the rules a value must follow.
//!
//! The rules live here once. [`ServerBuilder::bind`](crate::server::ServerBuilder::bind)
//! and [`ClientBuilder::connect`](crate::client::ClientBuilder::connect) call
//! [`ServerBuilder::validate`](crate::server::ServerBuilder::validate) and
//! [`ClientBuilder::validate`](crate::client::ClientBuilder::validate); the C
//! and Python layers call the same functions (a C setter checks the one
//! setting it changed with `check`) and report the [`ConfigError`] they
//! return, so a rule and its message are never written twice.
//!
//! The lists [`ServerSetting::ALL`] and [`ClientSetting::ALL`] are what the
//! bindings are checked against: a test fails if a language lacks a setting.

use std::time::Duration;

use crate::Command;

/// Why a setting was refused. Every variant names the setting, so that a
/// caller can tell which argument to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A time limit of zero (nothing could ever finish within it).
    #[error("{setting} must be longer than zero")]
    ZeroDuration {
        /// The setting's name, as in [`ServerSetting::name`].
        setting: &'static str,
    },
    /// A count below its minimum.
    #[error("{setting} must be at least {min}, not {value}")]
    TooSmall {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value allowed.
        min: u64,
    },
    /// A memory budget that could never hold a frame of `max_body`.
    #[error("memory_budget ({budget} bytes) must be at least max_body + 8 ({needed} bytes), or a frame of max_body could never be received")]
    MemoryBudgetTooSmall {
        /// The budget given.
        budget: usize,
        /// `max_body` + 8.
        needed: usize,
    },
    /// A handler for a command that cannot have one: LOGIN (the
    /// authenticator's), ERROR, GOAWAY and the reserved codes 5–15.
    #[error("cannot register a handler for command {command}: use 16-255, HEARTBEAT or MESSAGE{}",
        if *command == Command::LOGIN { " (LOGIN goes to the authenticator)" } else { "" })]
    NotHandleable {
        /// The command asked for.
        command: Command,
    },
    /// A value that is not of the setting's form (e.g. a network that is
    /// not a CIDR).
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong, and what to write instead.
        reason: String,
    },
}

impl ConfigError {
    /// The name of the setting refused, as in [`ServerSetting::name`] and
    /// [`ClientSetting::name`].
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigError::ZeroDuration { setting }
            | ConfigError::TooSmall { setting, .. }
            | ConfigError::Invalid { setting, .. } => setting,
            ConfigError::MemoryBudgetTooSmall { .. } => ServerSetting::MemoryBudget.name(),
            ConfigError::NotHandleable { .. } => ServerSetting::Handler.name(),
        }
    }
}

/// A setting's default, as a value a binding or a document can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// A time limit.
    Duration(Duration),
    /// A size in bytes.
    Bytes(usize),
    /// A count.
    Count(u64),
    /// On or off.
    Bool(bool),
    /// An address or other text.
    Text(&'static str),
    /// Not set unless asked for (e.g. no authenticator, no keep-alive).
    Off,
}

impl std::fmt::Display for DefaultValue {
    /// The form the README's settings table uses: `60s`, `250ms`,
    /// `10485760`, `on`/`off`, the text itself, or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DefaultValue::Duration(d) if d.subsec_millis() == 0 => write!(f, "{}s", d.as_secs()),
            DefaultValue::Duration(d) => write!(f, "{}ms", d.as_millis()),
            DefaultValue::Bytes(n) => write!(f, "{n}"),
            DefaultValue::Count(n) => write!(f, "{n}"),
            DefaultValue::Bool(true) => f.write_str("on"),
            DefaultValue::Bool(false) => f.write_str("off"),
            DefaultValue::Text(t) => f.write_str(t),
            DefaultValue::Off => f.write_str("none"),
        }
    }
}

macro_rules! settings {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal => $default:expr,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every setting, in the order the documentation lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The setting's name: the Rust builder method and the Python
            /// keyword argument (C: `gopro_<thing>_config_set_<name>` or a
            /// parameter of that name).
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The setting's default.
            pub const fn default_value(self) -> DefaultValue {
                match self {
                    $($name::$variant => $default,)*
                }
            }
        }
    };
}

settings! {
    /// A setting of [`ServerBuilder`](crate::server::ServerBuilder).
    ServerSetting {
        /// [`listen`](crate::server::ServerBuilder::listen)
        Listen = "listen" => DefaultValue::Text(crate::server::DEFAULT_LISTEN),
        /// [`reuse_port`](crate::server::ServerBuilder::reuse_port)
        ReusePort = "reuse_port" => DefaultValue::Bool(crate::server::DEFAULT_REUSE_PORT),
        /// [`read_timeout`](crate::server::ServerBuilder::read_timeout)
        ReadTimeout = "read_timeout" => DefaultValue::Duration(crate::server::DEFAULT_READ_TIMEOUT),
        /// [`write_timeout`](crate::server::ServerBuilder::write_timeout)
        WriteTimeout = "write_timeout" => DefaultValue::Duration(crate::server::DEFAULT_WRITE_TIMEOUT),
        /// [`max_body`](crate::server::ServerBuilder::max_body)
        MaxBody = "max_body" => DefaultValue::Bytes(crate::DEFAULT_MAX_BODY),
        /// [`max_connections`](crate::server::ServerBuilder::max_connections)
        MaxConnections = "max_connections" => DefaultValue::Count(crate::server::DEFAULT_MAX_CONNECTIONS as u64),
        /// [`grace`](crate::server::ServerBuilder::grace)
        Grace = "grace" => DefaultValue::Duration(crate::server::DEFAULT_GRACE),
        /// [`prelogin_max_body`](crate::server::ServerBuilder::prelogin_max_body)
        PreloginMaxBody = "prelogin_max_body" => DefaultValue::Bytes(crate::server::DEFAULT_PRELOGIN_MAX_BODY),
        /// [`max_login_failures`](crate::server::ServerBuilder::max_login_failures)
        MaxLoginFailures = "max_login_failures" => DefaultValue::Count(crate::server::DEFAULT_MAX_LOGIN_FAILURES as u64),
        /// [`max_buffered_replies`](crate::server::ServerBuilder::max_buffered_replies)
        MaxBufferedReplies = "max_buffered_replies" => DefaultValue::Bytes(crate::server::DEFAULT_MAX_BUFFERED_REPLIES),
        /// [`memory_budget`](crate::server::ServerBuilder::memory_budget)
        MemoryBudget = "memory_budget" => DefaultValue::Bytes(crate::server::DEFAULT_MEMORY_BUDGET),
        /// [`raise_nofile_limit`](crate::server::ServerBuilder::raise_nofile_limit)
        RaiseNofileLimit = "raise_nofile_limit" => DefaultValue::Bool(crate::server::DEFAULT_RAISE_NOFILE_LIMIT),
        /// [`handler`](crate::server::ServerBuilder::handler)
        Handler = "handler" => DefaultValue::Off,
        /// [`authenticator`](crate::server::ServerBuilder::authenticator)
        Authenticator = "authenticator" => DefaultValue::Off,
        /// [`tls`](crate::server::ServerBuilder::tls)
        Tls = "tls" => DefaultValue::Off,
        /// [`tls_handshake_timeout`](crate::server::ServerBuilder::tls_handshake_timeout)
        TlsHandshakeTimeout = "tls_handshake_timeout" => DefaultValue::Duration(crate::server::DEFAULT_TLS_HANDSHAKE_TIMEOUT),
        /// [`proxy_protocol`](crate::server::ServerBuilder::proxy_protocol)
        ProxyProtocol = "proxy_protocol" => DefaultValue::Off,
        /// [`metrics_listen`](crate::server::ServerBuilder::metrics_listen)
        MetricsListen = "metrics_listen" => DefaultValue::Off,
        /// [`metrics_max_scrapers`](crate::server::ServerBuilder::metrics_max_scrapers)
        MetricsMaxScrapers = "metrics_max_scrapers" => DefaultValue::Count(crate::server::DEFAULT_METRICS_MAX_SCRAPERS as u64),
        /// [`metrics_header_timeout`](crate::server::ServerBuilder::metrics_header_timeout)
        MetricsHeaderTimeout = "metrics_header_timeout" => DefaultValue::Duration(crate::server::DEFAULT_METRICS_HEADER_TIMEOUT),
    }
}

settings! {
    /// A setting of [`ClientBuilder`](crate::client::ClientBuilder).
    ClientSetting {
        /// [`connect_timeout`](crate::client::ClientBuilder::connect_timeout)
        ConnectTimeout = "connect_timeout" => DefaultValue::Duration(crate::client::DEFAULT_CONNECT_TIMEOUT),
        /// [`timeout`](crate::client::ClientBuilder::timeout)
        Timeout = "timeout" => DefaultValue::Duration(crate::client::DEFAULT_TIMEOUT),
        /// [`max_body`](crate::client::ClientBuilder::max_body)
        MaxBody = "max_body" => DefaultValue::Bytes(crate::DEFAULT_MAX_BODY),
        /// [`keep_alive`](crate::client::ClientBuilder::keep_alive)
        KeepAlive = "keep_alive" => DefaultValue::Off,
        /// [`max_in_flight`](crate::client::ClientBuilder::max_in_flight)
        MaxInFlight = "max_in_flight" => DefaultValue::Count(crate::client::DEFAULT_MAX_IN_FLIGHT as u64),
        /// [`max_queued_bytes`](crate::client::ClientBuilder::max_queued_bytes)
        MaxQueuedBytes = "max_queued_bytes" => DefaultValue::Bytes(crate::client::DEFAULT_MAX_QUEUED_BYTES),
        /// [`reconnect`](crate::client::ClientBuilder::reconnect)
        Reconnect = "reconnect" => DefaultValue::Bool(false),
        /// [`reconnect_delay`](crate::client::ClientBuilder::reconnect_delay)
        ReconnectDelay = "reconnect_delay" => DefaultValue::Duration(crate::client::DEFAULT_RECONNECT_DELAY),
        /// [`reconnect_max_delay`](crate::client::ClientBuilder::reconnect_max_delay)
        ReconnectMaxDelay = "reconnect_max_delay" => DefaultValue::Duration(crate::client::DEFAULT_RECONNECT_MAX_DELAY),
        /// [`login`](crate::client::ClientBuilder::login)
        Login = "login" => DefaultValue::Off,
        /// [`repeatable`](crate::client::ClientBuilder::repeatable)
        Repeatable = "repeatable" => DefaultValue::Off,
        /// [`tls`](crate::client::ClientBuilder::tls)
        Tls = "tls" => DefaultValue::Off,
    }
}

/// A time limit must be longer than zero.
pub(crate) fn positive(setting: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::ZeroDuration { setting });
    }
    Ok(())
}

/// A time limit must be at least `min` (another setting's value).
pub(crate) fn at_least_duration(
    setting: &'static str,
    d: Duration,
    min: Duration,
) -> Result<(), ConfigError> {
    if d < min {
        return Err(ConfigError::TooSmall {
            setting,
            value: d.as_millis() as u64,
            min: min.as_millis() as u64,
        });
    }
    Ok(())
}

/// A count must be at least `min`.
pub(crate) fn at_least(setting: &'static str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::TooSmall {
            setting,
            value,
            min,
        });
    }
    Ok(())
}

/// Whether frames with `command` may go to an application handler.
pub fn check_handler_command(command: Command) -> Result<(), ConfigError> {
    if command.is_application() || command == Command::HEARTBEAT || command == Command::MESSAGE {
        Ok(())
    } else {
        Err(ConfigError::NotHandleable { command })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_defaults_print() {
        let mut names: Vec<_> = ServerSetting::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ServerSetting::ALL.len());
        assert_eq!(
            ServerSetting::ReadTimeout.default_value().to_string(),
            "60s"
        );
        assert_eq!(
            ServerSetting::MaxBody.default_value().to_string(),
            "10485760"
        );
        assert_eq!(
            DefaultValue::Duration(Duration::from_millis(250)).to_string(),
            "250ms"
        );
        assert_eq!(ClientSetting::KeepAlive.default_value().to_string(), "none");
    }

    #[test]
    fn handler_commands() {
        for code in 0..=255u8 {
            let ok = check_handler_command(Command(code)).is_ok();
            assert_eq!(ok, code <= 1 || code >= 16, "command {code}");
        }
        let e = check_handler_command(Command::LOGIN).unwrap_err();
        assert!(
            e.to_string().contains("use 16-255, HEARTBEAT or MESSAGE"),
            "{e}"
        );
    }
}
