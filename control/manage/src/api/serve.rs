//! The API's connections: accepted up to a cap, each given a deadline for its TLS handshake and
//! its request headers, served over HTTP/1.1, and closed within a grace period at shutdown
//! (an event stream never ends by itself, so shutdown cannot wait for it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::limits::Limits;

/// Open connections get this long to finish at shutdown.
const GRACE: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` (HTTPS when `tls` is given) until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        // A free slot first, so that a full server leaves new clients in the backlog.
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::warn!("API: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let tls = tls.clone();
        let closed = closed.clone();
        connections.spawn(async move {
            connection(stream, peer, app, tls, limits, closed).await;
            drop(slot);
        });
        // Reap finished connections so the set stays the size of the open ones.
        while connections.try_join_next().is_some() {}
    }
    let _ = closing.send(true);
    let _ = tokio::time::timeout(GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

/// One connection: TLS if configured, then HTTP/1.1 until the client leaves or shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    closed: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        Some(acceptor) => {
            let Ok(Ok(stream)) =
                tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await
            else {
                // Plain HTTP to the HTTPS port ends here, having been sent nothing.
                return;
            };
            http(TokioIo::new(stream), peer, app, limits, closed).await;
        }
        None => http(TokioIo::new(stream), peer, app, limits, closed).await,
    }
}

async fn http<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    mut closed: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Each request knows who sent it (a refused sign-in is logged with it).
    let app = tower::ServiceExt::map_request(app, move |mut r: Request<Incoming>| {
        r.extensions_mut().insert(ConnectInfo(peer));
        r
    });
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = closed.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
