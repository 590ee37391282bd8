//! `gopro check`: a conformance checker for any GoPro server.
//!
//! Runs the cases of SPEC.md over real sockets, one fresh connection per
//! case, each within a time limit so that a server that does not answer
//! gives FAIL rather than a hang. Requests are written as raw bytes (many
//! cases send what no well-behaved client would) and replies are read with
//! the crate's decoder.
//!
//! Each case is `core` (what the article's reference server does: header,
//! HEARTBEAT and MESSAGE echoes, fragmentation, pipelining, refusing bad
//! magic and bodies over the limit, the read deadline) or `ext` (what
//! SPEC.md adds or tightens: LOGIN "OK", ERROR frames, the version check,
//! the reply limit, pre-login rules, the write deadline).
//!
//! The files: [`args`] (the command line and what it says of the server),
//! [`runner`] (running the cases and the report), [`conn`] (a raw
//! connection that sends bytes and reads frames) and [`cases`] (the cases,
//! a file per theme).

mod args;
mod cases;
mod conn;
mod runner;

pub(crate) use args::CheckArgs;
pub(crate) use runner::run;
