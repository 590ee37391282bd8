//! The Prometheus endpoint: `GET /metrics` on a port of its own, in the
//! Prometheus text format (0.0.4), made from the server's counters at each
//! scrape.
//!
//! Connections count as they always have (in locals, added to the shared
//! atomics once per batch); a scrape only reads those atomics, through
//! [`StatsHandle::snapshot`], and writes them out with `prometheus-client`'s
//! encoder. The HTTP side is hyper's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::accept_errors::AcceptErrors;
use super::stats::{StatsHandle, LATENCY_BOUNDS};

/// The one path served.
pub const METRICS_PATH: &str = "/metrics";

/// The limits of the metrics port
/// ([`ServerBuilder::metrics_max_scrapers`](super::ServerBuilder::metrics_max_scrapers),
/// [`metrics_header_timeout`](super::ServerBuilder::metrics_header_timeout)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections served at once; one beyond them is closed at once.
    pub max_scrapers: usize,
    /// Time a scraper has to send a request's headers, from its connection
    /// (or its previous response) on; then the connection is closed.
    pub header_timeout: Duration,
}

/// The registry a scrape is written from: one collector that reads the
/// server's counters.
pub(crate) fn registry(stats: StatsHandle) -> Registry {
    let mut registry = Registry::with_prefix("gopro");
    registry.register_collector(Box::new(ServerCollector(stats)));
    registry
}

/// The whole text of a scrape.
pub(crate) fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// Serves `/metrics` on `listener`, within `limits`, until the task is
/// dropped or aborted; the scrapes in progress end with it.
pub(crate) async fn serve(listener: TcpListener, registry: Registry, limits: Limits) {
    let registry = Arc::new(registry);
    let mut scrapes = JoinSet::new();
    // Out of file descriptors, the endpoint backs off and warns as the
    // server's listener does, not every few milliseconds.
    let mut accept_errors = AcceptErrors::new("metrics: ");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                accept_errors.succeeded();
                accepted
            }
            Err(e) => {
                tokio::time::sleep(accept_errors.failed(&e)).await;
                continue;
            }
        };
        while scrapes.try_join_next().is_some() {}
        if scrapes.len() >= limits.max_scrapers {
            warn!(%peer, "metrics: too many scrapes at once: closing");
            continue;
        }
        let registry = registry.clone();
        scrapes.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                std::future::ready(Ok::<_, Infallible>(respond(&request, &registry)))
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(%peer, "metrics: {e}");
            }
        });
    }
}

/// The answer to one request: the metrics at [`METRICS_PATH`], 404
/// elsewhere.
fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if request.uri().path() != METRICS_PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match render(registry) {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                ),
            );
            response
        }
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot write the metrics: {e}\n"),
        ),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Writes the server's counters as metric families at each scrape.
#[derive(Clone)]
struct ServerCollector(StatsHandle);

impl std::fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerCollector")
    }
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.snapshot();
        let e = &s.errors;
        let mut out = Out(&mut encoder);
        out.gauge(
            "connections_open",
            "Connections open now.",
            None,
            s.connections as u64,
        )?;
        out.counter(
            "connections_accepted",
            "Connections accepted.",
            None,
            s.connections_accepted,
        )?;
        out.counters(
            "connections_refused",
            "Connections refused, by reason (busy: the connection limit; proxy: no \
             valid PROXY header from a trusted address in time; tls: a failed, \
             late or non-TLS handshake on a TLS port).",
            None,
            "reason",
            &[("busy", e.busy), ("proxy", s.proxy_refused), ("tls", e.tls)],
        )?;
        out.counters(
            "frames_received",
            "Whole frames received, by command.",
            None,
            "command",
            &s.frames_in_by_command.labelled(),
        )?;
        out.counters(
            "frames_sent",
            "Frames sent (replies, ERROR and GOAWAY), by command.",
            None,
            "command",
            &s.frames_out_by_command.labelled(),
        )?;
        out.counter(
            "received",
            "Bytes of frames read (after TLS decryption).",
            Some(&Unit::Bytes),
            s.bytes_in,
        )?;
        out.counter(
            "sent",
            "Bytes of frames written (before TLS encryption).",
            Some(&Unit::Bytes),
            s.bytes_out,
        )?;
        out.counters("errors", "Errors, by kind.", None, "kind", &e.labelled())?;
        out.gauge(
            "memory_budget_used",
            "Bytes held for frames and replies against the memory budget.",
            Some(&Unit::Bytes),
            s.bytes_buffered as u64,
        )?;
        out.gauge(
            "memory_budget_limit",
            "The memory budget.",
            Some(&Unit::Bytes),
            s.memory_budget as u64,
        )?;
        out.counters(
            "tls_handshakes",
            "TLS handshakes, by result (failed: failed, late, or not TLS).",
            None,
            "result",
            &[("ok", s.tls_handshakes), ("failed", e.tls)],
        )?;
        out.counters(
            "proxy_headers",
            "PROXY protocol headers, by result.",
            None,
            "result",
            &[("ok", s.proxy_headers), ("refused", s.proxy_refused)],
        )?;
        out.counter(
            "goaways_sent",
            "GOAWAY frames sent (one per connection open at shutdown).",
            None,
            s.frames_out_by_command.goaway,
        )?;
        let latency = &s.handler_latency;
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .iter()
            .map(Duration::as_secs_f64)
            .chain([f64::INFINITY])
            .zip(latency.buckets)
            .collect();
        let mut metric = out.0.encode_descriptor(
            "handler_duration",
            "Time application handlers (commands 16-255) took.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(
            latency.sum.as_secs_f64(),
            latency.count,
            &buckets,
            None,
        )?;
        Ok(())
    }
}

/// Writes one metric family after another.
struct Out<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Out<'_, '_> {
    fn counter(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        value: u64,
    ) -> Result<(), std::fmt::Error> {
        self.single(name, help, unit, ConstCounter::new(value))
    }

    fn gauge(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        value: u64,
    ) -> Result<(), std::fmt::Error> {
        self.single(name, help, unit, ConstGauge::new(value))
    }

    /// A family of one metric without labels, of the metric's own type.
    fn single(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        metric: impl EncodeMetric,
    ) -> Result<(), std::fmt::Error> {
        let encoder = self
            .0
            .encode_descriptor(name, help, unit, metric.metric_type())?;
        metric.encode(encoder)
    }

    /// A counter family with one label.
    fn counters(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        label: &str,
        values: &[(&str, u64)],
    ) -> Result<(), std::fmt::Error> {
        let mut metric = self
            .0
            .encode_descriptor(name, help, unit, MetricType::Counter)?;
        for &(value, n) in values {
            let labels = [(label, value)];
            ConstCounter::new(n).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Where the metrics of a server are served, for the log line.
pub(crate) fn url(addr: SocketAddr) -> String {
    format!("http://{addr}{METRICS_PATH}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_serves_64_scrapes_at_once_and_gives_each_10_s_for_its_headers() {
        use crate::settings::{DefaultValue, ServerSetting};
        let limits = crate::server::ServerBuilder::new()
            .into_config()
            .metrics_limits;
        assert_eq!(
            limits,
            Limits {
                max_scrapers: 64,
                header_timeout: Duration::from_secs(10),
            }
        );
        assert!(matches!(
            ServerSetting::MetricsMaxScrapers.default_value(),
            DefaultValue::Count(64)
        ));
        assert!(matches!(
            ServerSetting::MetricsHeaderTimeout.default_value(),
            DefaultValue::Duration(d) if d == Duration::from_secs(10)
        ));
    }
}
