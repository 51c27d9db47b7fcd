//! The services behind every API route, one module per resource; each adds methods to [`crate::Gofer`].

mod deployments;
mod exec;
pub use exec::Session;
mod extensions;
mod namespaces;
mod objects;
mod pipelines;
mod runs;
mod secrets;
mod subscriptions;
mod system;
