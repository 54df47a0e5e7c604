//! The `/metrics` endpoint: a small hyper HTTP/1.1 server on a thread of its own, so a scrape
//! is answered even while the reader is busy draining a flood of events.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result};
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;

use super::Exposition;

/// Binds `--metrics ADDR` before tracing starts: a port in use or an address this machine
/// does not have is said at once, naming the flag.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("--metrics {addr}: cannot listen there"))?;
    listener.set_nonblocking(true).context("--metrics: making the listener non-blocking")?;
    Ok(listener)
}

/// Serves `/metrics` on `listener` until the process exits.
pub fn serve(listener: std::net::TcpListener, registry: Arc<Registry>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("--metrics: starting the server's runtime")?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                if let Err(err) = accept_loop(listener, registry).await {
                    tracing::warn!("--metrics: the server stopped: {err:#}");
                }
            });
        })
        .context("--metrics: starting the server's thread")?;
    Ok(())
}

async fn accept_loop(listener: std::net::TcpListener, registry: Arc<Registry>) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of fds and the like: that connection is lost, the server goes on.
            Err(err) => {
                tracing::debug!("--metrics: accept: {err}");
                continue;
            }
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, Arc::clone(&registry)));
            if let Err(err) =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!("--metrics: connection from {peer}: {err}");
            }
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let accept = req.headers().get(ACCEPT).and_then(|a| a.to_str().ok());
            let format = Exposition::from_accept(accept);
            (StatusCode::OK, format.content_type(), super::encode(&registry, format))
        }
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET /metrics\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "wsltrace serves its metrics on /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    Ok(response)
}
