//! Notifications without a database or an HTTP server: what a message is ([`Message`]), how
//! each kind of destination receives it (a signed generic webhook, a Slack incoming webhook, a
//! Microsoft Teams workflow with an Adaptive Card, an e-mail over SMTP), the guard that keeps
//! destinations off loopback, link-local and private networks, and the sealing of destination
//! secrets at rest. The store keeps the outbox; the server's dispatcher calls [`Sender`].

pub mod guard;
pub mod message;
pub mod render;
pub mod seal;
pub mod send;

pub use guard::{check_url, AddressPolicy, GuardError};
pub use message::{Destination, DestinationKind, EventType, Message};
pub use seal::{SealError, SecretKey};
pub use send::{Attempt, Sender, SenderConfig, EXCERPT_BYTES};
