use std::error::Error as StdError;
use std::fmt;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a step attempt failed. Any error converts into a retriable one with `?`;
/// mark an error that retrying cannot fix with [`StepError::non_retriable`] or
/// [`NonRetriable::non_retriable`].
pub struct StepError {
    retriable: bool,
    source: BoxError,
}

impl StepError {
    pub fn retriable(err: impl Into<BoxError>) -> StepError {
        StepError {
            retriable: true,
            source: err.into(),
        }
    }

    pub fn non_retriable(err: impl Into<BoxError>) -> StepError {
        StepError {
            retriable: false,
            source: err.into(),
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    pub fn source(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self.source.as_ref()
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for StepError {
    fn from(err: E) -> Self {
        StepError::retriable(err)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        let mut cause = self.source.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepError")
            .field("retriable", &self.retriable)
            .field("error", &self.to_string())
            .finish()
    }
}

/// Marks the error of a `Result` as one that retrying cannot fix.
pub trait NonRetriable<T> {
    fn non_retriable(self) -> Result<T, StepError>;
}

impl<T, E: Into<BoxError>> NonRetriable<T> for Result<T, E> {
    fn non_retriable(self) -> Result<T, StepError> {
        self.map_err(StepError::non_retriable)
    }
}

/// Errors of the engine's own operations.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("function '{0}' is registered twice")]
    DuplicateFunction(String),
}
