//! What the application plugs into the server: command handlers and the
//! LOGIN authenticator.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::Frame;

/// A boxed, sendable future, the return type of the object-safe traits below.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler sends back for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send nothing.
    None,
    /// Send this body with the request's command.
    Body(Bytes),
    /// Send this frame.
    Frame(Frame),
}

impl From<Bytes> for Reply {
    fn from(body: Bytes) -> Self {
        Reply::Body(body)
    }
}

impl From<Vec<u8>> for Reply {
    fn from(body: Vec<u8>) -> Self {
        Reply::Body(body.into())
    }
}

impl From<&'static [u8]> for Reply {
    fn from(body: &'static [u8]) -> Self {
        Reply::Body(Bytes::from_static(body))
    }
}

impl From<&'static str> for Reply {
    fn from(body: &'static str) -> Self {
        Reply::Body(Bytes::from_static(body.as_bytes()))
    }
}

impl From<String> for Reply {
    fn from(body: String) -> Self {
        Reply::Body(body.into())
    }
}

impl From<Frame> for Reply {
    fn from(frame: Frame) -> Self {
        Reply::Frame(frame)
    }
}

impl From<()> for Reply {
    fn from(_: ()) -> Self {
        Reply::None
    }
}

impl<T: Into<Reply>> From<Option<T>> for Reply {
    fn from(reply: Option<T>) -> Self {
        reply.map_or(Reply::None, Into::into)
    }
}

/// Handles the frames of one command code. A failure becomes an ERROR reply
/// carrying its message; the connection stays open.
///
/// Any `Fn(Frame) -> impl Future<Output = Result<R, E>>` is a handler, where
/// `R: Into<Reply>` and `E: Display`:
///
/// ```
/// use gopro::server::Server;
/// use gopro::Frame;
///
/// let builder = Server::builder().handler(16, |frame: Frame| async move {
///     Ok::<_, std::convert::Infallible>(frame.body) // echo with the same command
/// });
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one frame; the error is the reason sent back in an ERROR frame.
    fn call(&self, frame: Frame) -> BoxFuture<Result<Reply, String>>;

    /// Handles a frame whose body is still in the connection's read buffer,
    /// without waiting if it can. The default copies the body into a
    /// [`Frame`] for [`call`](Self::call); a handler that usually answers
    /// at once (a language binding calling into its interpreter) overrides
    /// it to spare that copy and the boxed future.
    fn call_inline(&self, command: crate::Command, body: &[u8]) -> Inline {
        Inline::Wait(self.call(Frame::new(command, Bytes::copy_from_slice(body))))
    }
}

/// What [`Handler::call_inline`] came to.
pub enum Inline {
    /// The handler's answer.
    Done(Result<Reply, String>),
    /// The answer to await (it may be ready at once).
    Wait(BoxFuture<Result<Reply, String>>),
}

impl<F, Fut, R, E> Handler for F
where
    F: Fn(Frame) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: Into<Reply>,
    E: Display,
{
    fn call(&self, frame: Frame) -> BoxFuture<Result<Reply, String>> {
        let fut = self(frame);
        Box::pin(async move { fut.await.map(Into::into).map_err(|e| e.to_string()) })
    }
}

/// Decides whether the credentials of a LOGIN are good. `Err` carries the
/// reason sent back in the ERROR frame.
///
/// Any `Fn(Bytes) -> impl Future<Output = Result<(), E>>` with `E: Display`
/// is an authenticator.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks one LOGIN body.
    fn authenticate(&self, credentials: Bytes) -> BoxFuture<Result<(), String>>;
}

impl<F, Fut, E> Authenticator for F
where
    F: Fn(Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display,
{
    fn authenticate(&self, credentials: Bytes) -> BoxFuture<Result<(), String>> {
        let fut = self(credentials);
        Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
    }
}
