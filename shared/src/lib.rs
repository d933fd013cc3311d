//! The delivery-report model shared by `ingest` and `processor`.
//!
//! Data flows through this crate once per report: ingest hands the request's raw fields to
//! [`parse::parse_report`], which returns a validated [`Report`] or every reason it is not
//! one; the report travels on the queue as [`Report::to_envelope_json`]; the processor
//! decodes it with [`Report::from_envelope_json`] and orders reports of one message by
//! [`Report::truth_key`]. [`amqp`] declares the broker topology both services rely on, and
//! [`env`] reads typed settings from the environment. [`bounds`] limits what a request may
//! carry at all, before any of it is parsed or kept.

pub mod amqp;
pub mod backoff;
pub mod bounds;
pub mod env;
pub mod error_body;
pub mod parse;
pub mod quarantine;
pub mod report;
pub mod rules;
pub mod status;
pub mod time;

pub use parse::{parse_report, FieldError, InvalidReport, ParseContext};
pub use report::{MsgId, PhoneNumber, Report, SenderId, StatusAt, StatusAtSource, TruthKey};
pub use rules::Rules;
pub use status::Status;
pub use time::GatewayZone;

/// The log filter both services use when `RUST_LOG` is unset: `info`, without the broker
/// client's per-span noise, and without its dump of returned messages, which would put
/// phone numbers in the log (a returned message is reported by the caller instead).
pub const DEFAULT_LOG_FILTER: &str = "info,tracing::span=warn,lapin::returned_messages=error";
