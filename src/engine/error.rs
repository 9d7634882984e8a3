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
    /// A failure worth retrying (a timeout, a 5xx from an API…): the step is attempted again,
    /// with backoff, while the function's retries last. `?` on any error does the same.
    pub fn retriable(err: impl Into<BoxError>) -> StepError {
        StepError {
            retriable: true,
            source: err.into(),
        }
    }

    /// A failure that retrying cannot fix (bad input, a declined card…): the step is not
    /// attempted again and the run fails, starting its failure handlers.
    pub fn non_retriable(err: impl Into<BoxError>) -> StepError {
        StepError {
            retriable: false,
            source: err.into(),
        }
    }

    /// Whether the step may be attempted again (while the function's retries last).
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// The error the step failed with.
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
///
/// ```no_run
/// use paysteps::{Function, NonRetriable, Trigger};
///
/// let f = Function::new("parse", Trigger::event("app/order.created"), |ctx| async move {
///     let raw = ctx.event.data["amount"].as_str().unwrap_or_default().to_owned();
///     // A malformed amount will not parse any better on the next attempt.
///     ctx.step.run("parse amount", || async move { raw.parse::<i64>().non_retriable() }).await
/// });
/// ```
pub trait NonRetriable<T> {
    /// The `Err` value turned into a non-retriable [`StepError`]; `Ok` is kept.
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
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Two functions have the same id (a failure handler's id is `<id>.on_failure`);
    /// holds the id.
    #[error("function '{0}' is registered twice")]
    DuplicateFunction(String),
    /// A function's id is not one: it is empty.
    #[error("{0}")]
    InvalidFunctionId(crate::ids::IdError),
}
