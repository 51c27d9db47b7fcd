//! The error every service call returns; the HTTP layer maps each variant to a status code.

/// What went wrong, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{message}")]
    InvalidArgument { message: String },
    #[error("{message}")]
    Conflict { message: String },
    #[error("{message}")]
    Unavailable { message: String },
    /// The caller's token does not allow this.
    #[error("{message}")]
    Forbidden { message: String },
    /// A value beyond a configured size limit.
    #[error("{message}")]
    TooLarge { message: String },
    #[error("internal error while trying to {context}")]
    Internal {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error with its sources, `: `-separated, for logs and for messages that must carry the cause.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument { message: message.into() }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict { message: message.into() }
    }

    pub fn internal(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal { context: context.into(), source: Box::new(source) }
    }
}

impl From<gofer_storage::Error> for Error {
    fn from(e: gofer_storage::Error) -> Self {
        match e {
            gofer_storage::Error::NotFound { what } => Self::NotFound { what },
            gofer_storage::Error::Exists { what } => Self::Conflict { message: format!("{what} already exists") },
            gofer_storage::Error::Conflict { message } => Self::Conflict { message },
            gofer_storage::Error::Unavailable { context, source } => Self::Unavailable {
                message: format!(
                    "could not {context}: {source}; the database cannot take it now (if the disk of the data dir is \
                     full, free space there), try again"
                ),
            },
            gofer_storage::Error::Backend { context, source } => Self::Internal { context, source },
        }
    }
}

impl From<crate::extensions::Error> for Error {
    fn from(e: crate::extensions::Error) -> Self {
        use crate::extensions::Error as E;
        match e {
            E::Settings(message) | E::Refused { message, .. } => Self::InvalidArgument { message },
            E::Storage(e) => e.into(),
            other => Self::Unavailable { message: error_chain(&other) },
        }
    }
}
