//! The client's settings, checked once, and `connect`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use super::connect::open;
use super::driver::{Driver, State};
use super::limits::Limits;
use super::pipeline::{CommandSet, Pipeline, PipelineConfig};
use super::{Client, ClientError, Shared};
use crate::settings::{self, ClientSetting, ConfigError};
use crate::tls::ClientTls;
use crate::{Command, DEFAULT_MAX_BODY};

/// The default time allowed to connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time allowed for each call, and for the server to answer the
/// oldest request before the connection is given up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default bound on requests in flight on one connection.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// The default bound on the bytes of the requests in flight on one connection.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
/// The default wait before the first reconnection attempt after the first
/// one (which is at once); each later wait doubles, with jitter.
pub const DEFAULT_RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// The default longest wait between reconnection attempts.
pub const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);

/// Configures a [`Client`].
///
/// | setting | default |
/// |---|---|
/// | [`connect_timeout`](Self::connect_timeout) | 10 s |
/// | [`timeout`](Self::timeout) | 30 s for each call |
/// | [`max_body`](Self::max_body) | 10 MiB, for requests and replies |
/// | [`keep_alive`](Self::keep_alive) | off |
/// | [`max_in_flight`](Self::max_in_flight) | 1,024 requests |
/// | [`max_queued_bytes`](Self::max_queued_bytes) | 16 MiB |
/// | [`reconnect`](Self::reconnect) | off |
/// | [`reconnect_delay`](Self::reconnect_delay) | 100 ms, doubling |
/// | [`reconnect_max_delay`](Self::reconnect_max_delay) | 2 s |
/// | [`login`](Self::login) | none |
/// | [`tls`](Self::tls) | off: plaintext |
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    connect_timeout: Duration,
    timeout: Duration,
    max_body: usize,
    keep_alive: Option<Duration>,
    max_in_flight: usize,
    max_queued_bytes: usize,
    reconnect: bool,
    reconnect_delay: Duration,
    reconnect_max_delay: Duration,
    login: Option<Bytes>,
    repeatable: CommandSet,
    tls: Option<ClientTls>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            keep_alive: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            reconnect: false,
            reconnect_delay: DEFAULT_RECONNECT_DELAY,
            reconnect_max_delay: DEFAULT_RECONNECT_MAX_DELAY,
            login: None,
            repeatable: CommandSet::default(),
            tls: None,
        }
    }
}

impl ClientBuilder {
    /// Time allowed to connect (each address, each attempt).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for each call: a call still waiting then fails with
    /// [`ClientError::Timeout`], and its reply, if it comes, is discarded.
    /// The server has a tenth longer to answer the oldest request: a server
    /// silent for that long is given up ([`ClientError::Lost`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest body sent or accepted.
    pub fn max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// Sends a HEARTBEAT whenever the connection has been idle for
    /// `interval`; choose it below the server's read timeout.
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = Some(interval);
        self
    }

    /// At most this many requests unanswered at once; more callers wait.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests;
        self
    }

    /// At most this many bytes of requests unanswered at once (a request
    /// larger than that goes alone); more callers wait.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// Reconnects after the connection is lost, with exponential back-off
    /// and jitter ([`reconnect_delay`](Self::reconnect_delay)). Requests
    /// the server left unanswered with a GOAWAY are sent again on the new
    /// connection; those lost otherwise fail with [`ClientError::Lost`]
    /// unless their command is [`repeatable`](Self::repeatable).
    pub fn reconnect(mut self, on: bool) -> Self {
        self.reconnect = on;
        self
    }

    /// The wait before the second reconnection attempt (the first is at
    /// once): about `first` (half to all of it, at random); each later wait
    /// is twice as long, up to [`reconnect_max_delay`](Self::reconnect_max_delay).
    pub fn reconnect_delay(mut self, first: Duration) -> Self {
        self.reconnect_delay = first;
        self
    }

    /// The longest wait between reconnection attempts.
    pub fn reconnect_max_delay(mut self, max: Duration) -> Self {
        self.reconnect_max_delay = max;
        self
    }

    /// Credentials sent as LOGIN first on every connection, before anything
    /// else; [`connect`](Self::connect) fails if the first is refused.
    pub fn login(mut self, credentials: impl Into<Bytes>) -> Self {
        self.login = Some(credentials.into());
        self
    }

    /// A command safe to send again after a connection was lost before its
    /// reply (HEARTBEAT always is).
    pub fn repeatable(mut self, command: impl Into<Command>) -> Self {
        self.repeatable.insert(command.into());
        self
    }

    /// Speaks TLS on every connection (and reconnection), verifying the
    /// server's certificate against `tls`'s roots; the handshake counts in
    /// the connect timeout.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Checks one setting against its rule (see [`crate::settings`]).
    pub fn check(&self, setting: ClientSetting) -> Result<(), ConfigError> {
        match setting {
            ClientSetting::ConnectTimeout => {
                settings::positive(setting.name(), self.connect_timeout)
            }
            ClientSetting::Timeout => settings::positive(setting.name(), self.timeout),
            ClientSetting::KeepAlive => self.keep_alive.map_or(Ok(()), |interval| {
                settings::positive(setting.name(), interval)
            }),
            ClientSetting::MaxInFlight => {
                settings::at_least(setting.name(), self.max_in_flight as u64, 1)
            }
            ClientSetting::MaxQueuedBytes => settings::at_least(
                setting.name(),
                self.max_queued_bytes as u64,
                crate::HEADER_LEN as u64,
            ),
            ClientSetting::ReconnectDelay => {
                settings::positive(setting.name(), self.reconnect_delay)
            }
            ClientSetting::ReconnectMaxDelay => settings::at_least_duration(
                setting.name(),
                self.reconnect_max_delay,
                self.reconnect_delay,
            ),
            ClientSetting::Login => match &self.login {
                Some(credentials) if credentials.len() > self.max_body => {
                    Err(ConfigError::TooSmall {
                        setting: ClientSetting::MaxBody.name(),
                        value: self.max_body as u64,
                        min: credentials.len() as u64,
                    })
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Checks every setting: the rules [`connect`](Self::connect) applies.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ClientSetting::ALL.iter().try_for_each(|&s| self.check(s))
    }

    /// The settings, checked, for a driver of its own over
    /// [`Socket`](super::socket::Socket) and [`Pipeline`] (the asyncio
    /// client, which runs on the event loop itself).
    pub fn settings<A: AsRef<str>>(
        &self,
        addrs: impl IntoIterator<Item = A>,
    ) -> Result<ClientSettings, ClientError> {
        self.validate()?;
        let addrs: Arc<[String]> = addrs.into_iter().map(|a| a.as_ref().to_string()).collect();
        if addrs.is_empty() {
            return Err(ConfigError::TooSmall {
                setting: "addresses",
                value: 0,
                min: 1,
            }
            .into());
        }
        Ok(ClientSettings {
            addrs,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            keep_alive: self.keep_alive,
            max_in_flight: self.max_in_flight,
            max_queued_bytes: self.max_queued_bytes,
            reconnect: self
                .reconnect
                .then_some((self.reconnect_delay, self.reconnect_max_delay)),
            login: self.login.clone(),
            tls: self.tls.clone(),
            pipeline: PipelineConfig {
                max_body: self.max_body,
                resend: self.reconnect,
                // Sent by `Socket::open` before the socket is handed over.
                login: None,
                repeatable: self.repeatable,
            },
        })
    }

    /// Connects to `addr` (`host:port`). Fails with [`ClientError::Config`]
    /// on an invalid setting.
    pub async fn connect(self, addr: &str) -> Result<Client, ClientError> {
        self.connect_any([addr]).await
    }

    /// Connects to the first of `addrs` that answers; on reconnecting, tries
    /// the next ones in turn (failover without a balancer). Host names are
    /// resolved at each attempt.
    pub async fn connect_any<A: AsRef<str>>(
        self,
        addrs: impl IntoIterator<Item = A>,
    ) -> Result<Client, ClientError> {
        let settings = self.settings(addrs)?;
        let (stream, index) = open(
            &settings.addrs,
            0,
            settings.connect_timeout,
            settings.tls.as_ref(),
        )
        .await?;
        // This client's pipeline sends the LOGIN itself, first on every
        // connection.
        let pipeline = Pipeline::new(PipelineConfig {
            login: self.login.clone(),
            ..settings.pipeline.clone()
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(State::default());
        let (ready, is_ready) = oneshot::channel();
        let driver = Driver::new(pipeline, rx, Arc::clone(&state), settings, ready);
        let ended = Finished(Arc::clone(&state));
        tokio::spawn(async move {
            driver.run(stream, index).await;
            // The driver and its buffers are gone once `run` returns.
            drop(ended);
        });
        let client = Client::new(Shared {
            tx,
            limits: Limits::new(self.max_in_flight, self.max_queued_bytes),
            state,
            timeout: self.timeout,
            max_body: self.max_body,
        });
        // The first LOGIN's answer (at once without credentials).
        match timeout(self.timeout, is_ready).await {
            Ok(Ok(Ok(()))) => Ok(client),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(client.ended_error()),
            Err(_) => Err(ClientError::Timeout {
                waiting_to: "log in",
                after: self.timeout,
            }),
        }
    }
}

/// A client's settings, checked ([`ClientBuilder::settings`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientSettings {
    /// The addresses, tried in turn.
    pub addrs: Arc<[String]>,
    /// The limit for one connection attempt (TLS handshake and LOGIN included).
    pub connect_timeout: Duration,
    /// How long a call waits.
    pub timeout: Duration,
    /// The keep-alive interval, if any.
    pub keep_alive: Option<Duration>,
    /// Requests in flight at most.
    pub max_in_flight: usize,
    /// Bytes queued at most.
    pub max_queued_bytes: usize,
    /// The first and largest waits between reconnection attempts, when the
    /// client reconnects.
    pub reconnect: Option<(Duration, Duration)>,
    /// Credentials sent as LOGIN first on every connection.
    pub login: Option<Bytes>,
    /// TLS, when the client speaks it.
    pub tls: Option<ClientTls>,
    /// The pipeline's settings.
    pub pipeline: PipelineConfig,
}

impl ClientSettings {
    /// How long the oldest unanswered request may wait before the server is
    /// taken as gone: a little over the call timeout, so that the caller
    /// hears of its own timeout first.
    pub fn response_timeout(&self) -> Duration {
        response_timeout(self.timeout)
    }
}

/// See [`ClientSettings::response_timeout`].
pub(super) fn response_timeout(timeout: Duration) -> Duration {
    timeout + timeout / 10
}

/// Marks the connection task as ended when dropped: after `run` returns,
/// or if the task panics (then calls made later fail instead of waiting).
struct Finished(Arc<State>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.close();
        self.0.set_finished();
    }
}
