//! Connections of the chat simulators that a call can reset: the listener
//! hands every accepted socket a switch, and each request carries it (as
//! axum connect info), so the recording layer can let the API apply a call
//! and then drop the connection without an answer, as a load balancer or a
//! crashed API node does. The client sees a transport error, never a status.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A TCP listener whose connections can be reset from a request.
pub(crate) struct ResettableListener(pub(crate) TcpListener);

impl Listener for ResettableListener {
    type Io = ResettableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.0).await;
        let reset = CancellationToken::new();
        let io = ResettableIo { killed: Box::pin(reset.clone().cancelled_owned()), tcp, reset };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The switch of one connection, found in every request's extensions as
/// `ConnectInfo<ConnReset>`.
#[derive(Debug, Clone)]
pub(crate) struct ConnReset(CancellationToken);

impl ConnReset {
    /// From now on the connection fails every read and write; the server
    /// then drops it, and the zero linger set here makes that an RST.
    pub(crate) fn reset(&self) {
        self.0.cancel();
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for ConnReset {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        ConnReset(stream.io().reset.clone())
    }
}

pub(crate) struct ResettableIo {
    tcp: TcpStream,
    reset: CancellationToken,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl ResettableIo {
    fn failed(&self) -> Option<io::Error> {
        if !self.reset.is_cancelled() {
            return None;
        }
        // A zero linger never blocks the close (only a positive one does):
        // the kernel discards unsent data and answers with RST.
        let _ = self.tcp.set_zero_linger();
        Some(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by fault injection"))
    }
}

impl AsyncRead for ResettableIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // Polling the cancellation also registers this reader's waker, so a
        // server waiting on the socket wakes up when the reset is asked for.
        if self.killed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.failed().unwrap_or_else(|| io::ErrorKind::ConnectionReset.into())));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = self.failed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.failed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.failed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.failed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
