//! `--serve ADDR`: the run's cumulative totals at `http://ADDR/metrics` in the Prometheus text
//! exposition format, for Prometheus to scrape (each host runs probe; Prometheus aggregates).
use super::metrics::{self, Totals};
use super::{Output, RefreshRequests};
use crate::error::user;
use crate::measure::Measure;
use crate::plan::Measured;
use anyhow::{Context, Result};
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::oneshot;

pub struct Serve<T> {
    /// Bound before attaching; handed to the server in `start`.
    listener: Option<TcpListener>,
    addr: SocketAddr,
    registry: Arc<Registry>,
    /// Cumulative since tracing began: Prometheus counters never go down.
    totals: Arc<Mutex<Vec<T>>>,
    /// Each scrape asks the tracing loop to drain the maps first, so it answers with the
    /// numbers as they are at that moment, not as of the last interval.
    refresh: UnboundedSender<oneshot::Sender<()>>,
    refresh_requests: Option<RefreshRequests>,
}

impl<T: Measure> Serve<T> {
    /// Binds `addr` now, so a bad or busy address is bad input with nothing attached.
    pub fn bind(
        addr: &str,
        slots: &[Measured],
        binary: &str,
        pid: Option<i32>,
        extra: &[(String, String)],
    ) -> Result<Serve<T>> {
        let listener = listen(addr).map_err(|e| {
            user(format!(
                "--serve {addr}: cannot listen there ({e}); give a free HOST:PORT, e.g. 127.0.0.1:9464 (or :9464 \
                 for every interface)"
            ))
        })?;
        listener.set_nonblocking(true).context("--serve: non-blocking socket")?;
        let addr = listener.local_addr().context("--serve: local address")?;
        let totals = Arc::new(Mutex::new(vec![T::EMPTY; slots.len()]));
        let mut registry = Registry::default();
        let labels = metrics::labels::<T>(slots, binary, pid, extra);
        let top = slots.iter().map(|m| m.top_values).max().unwrap_or(0);
        registry.register_collector(Box::new(Totals::new(labels, totals.clone(), top)));
        let (refresh, requests) = unbounded_channel();
        Ok(Serve {
            listener: Some(listener),
            addr,
            registry: Arc::new(registry),
            totals,
            refresh,
            refresh_requests: Some(requests),
        })
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        self.totals.lock().expect("no panic while holding the totals")
    }
}

impl<T: Measure> Output<T> for Serve<T> {
    fn start(&mut self) -> Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener.take().expect("started once"))?;
        let (registry, refresh) = (self.registry.clone(), self.refresh.clone());
        let app = Router::new().route("/metrics", get(move || scrape(registry.clone(), refresh.clone())));
        tokio::spawn(async move { axum::serve(listener, app).await });
        eprintln!("probe: serving metrics at http://{}/metrics", self.addr);
        Ok(())
    }

    fn interval(&mut self, _elapsed_s: f64, _values: &[T], totals: &[T]) -> Result<()> {
        self.totals().clone_from_slice(totals);
        Ok(())
    }

    fn finish(&mut self, _elapsed_s: f64, _last: &[T], totals: &[T]) -> Result<()> {
        self.totals().clone_from_slice(totals);
        Ok(())
    }

    fn refresh(&mut self, totals: &[T]) -> Result<()> {
        self.totals().clone_from_slice(totals);
        Ok(())
    }

    fn take_refresh_requests(&mut self) -> Option<RefreshRequests> {
        self.refresh_requests.take()
    }

    fn outlives_target(&self) -> bool {
        true
    }
}

/// Listens at `addr`; `:PORT` means every interface, as Prometheus and Go write it (IPv6 and
/// IPv4, or IPv4 alone where the host has no IPv6).
fn listen(addr: &str) -> std::io::Result<TcpListener> {
    match addr.strip_prefix(':') {
        Some(port) if !port.contains(':') => {
            TcpListener::bind(format!("[::]:{port}")).or_else(|_| TcpListener::bind(format!("0.0.0.0:{port}")))
        }
        _ => TcpListener::bind(addr),
    }
}

/// Answers a scrape: first has the tracing loop drain the maps into the totals. Once tracing
/// has ended nobody takes the request and the totals are already final.
async fn scrape(
    registry: Arc<Registry>,
    refresh: UnboundedSender<oneshot::Sender<()>>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let (done, drained) = oneshot::channel();
    if refresh.send(done).is_ok() {
        let _ = drained.await;
    }
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    ([(CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text)
}
