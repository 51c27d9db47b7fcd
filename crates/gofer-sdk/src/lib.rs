//! The Gofer SDK: build pipeline configs in Rust instead of YAML.
//!
//! A pipeline program builds a [`config::Pipeline`] and calls [`config::Pipeline::finish`], which validates it and
//! prints it as JSON on stdout. `gofer pipeline deploy <dir>` runs the program and registers what it printed.
//!
//! ```no_run
//! use gofer_sdk::config::{Pipeline, RequiredParentStatus, Task};
//!
//! Pipeline::new("hello", "Hello pipeline")
//!     .tasks(vec![
//!         Task::new("greet", "busybox:latest").command(vec!["echo".into(), "hello".into()]),
//!         Task::new("after", "busybox:latest")
//!             .depends_on("greet", RequiredParentStatus::Success)
//!             .script("echo greeted"),
//!     ])
//!     .finish()
//!     .unwrap();
//! ```

pub mod config;
mod dag;
mod strategy;
