//! Controller errors and the Lambda error types the workflow's Retry and Catch match on.

use lambda_runtime::Diagnostic;

/// How the workflow should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The input is wrong; retrying cannot help. Nothing was changed.
    BadInput,
    /// Not done yet (instance not SSM-managed yet, command still running): the workflow retries
    /// with back-off.
    Pending,
    /// AWS throttled or had a transient fault: the workflow retries with back-off.
    Transient,
    /// A real failure: the workflow goes to its error state.
    Failed,
}

impl Kind {
    /// The `errorType` the Lambda returns; `controller/workflow/*.asl.json` matches these names.
    pub fn error_type(self) -> &'static str {
        match self {
            Kind::BadInput => "Airf.BadInput",
            Kind::Pending => "Airf.Pending",
            Kind::Transient => "Airf.Transient",
            Kind::Failed => "Airf.Failed",
        }
    }
}

/// A controller failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event or task input is not one the controller accepts.
    #[error("rejected input: {0}")]
    BadInput(String),
    /// Configuration (environment variables) is missing or wrong.
    #[error(
        "configuration: {0}; set it in the controller's environment (packaging/cloudformation/3-security.yaml)"
    )]
    Config(String),
    /// Waiting for something that will happen later.
    #[error("{0}")]
    Pending(String),
    /// An AWS call failed.
    #[error("{operation} failed: {message}")]
    Aws {
        /// API operation, e.g. `ec2:CreateTags`.
        operation: &'static str,
        /// What the service said.
        message: String,
        /// Whether retrying may succeed (throttling, 5xx, timeouts).
        retryable: bool,
    },
    /// The instance or evidence is not in a state the step can work with.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The workflow's view of this error.
    pub fn kind(&self) -> Kind {
        match self {
            Error::BadInput(_) => Kind::BadInput,
            Error::Config(_) | Error::Failed(_) => Kind::Failed,
            Error::Pending(_) => Kind::Pending,
            Error::Aws {
                retryable: true, ..
            } => Kind::Transient,
            Error::Aws { .. } => Kind::Failed,
        }
    }

    /// A rejected-input error.
    pub fn bad_input(msg: impl Into<String>) -> Self {
        Error::BadInput(msg.into())
    }

    /// A failed step.
    pub fn failed(msg: impl Into<String>) -> Self {
        Error::Failed(msg.into())
    }
}

impl From<Error> for Diagnostic {
    fn from(e: Error) -> Self {
        Diagnostic {
            error_type: e.kind().error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// Result alias for the controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_and_final_errors_have_distinct_lambda_types() {
        let throttled = Error::Aws {
            operation: "ec2:CreateTags",
            message: "Throttling".into(),
            retryable: true,
        };
        let denied = Error::Aws {
            operation: "ec2:CreateTags",
            message: "AccessDenied".into(),
            retryable: false,
        };
        assert_eq!(Diagnostic::from(throttled).error_type, "Airf.Transient");
        assert_eq!(Diagnostic::from(denied).error_type, "Airf.Failed");
        assert_eq!(
            Diagnostic::from(Error::Pending("x".into())).error_type,
            "Airf.Pending"
        );
        assert_eq!(
            Diagnostic::from(Error::bad_input("x")).error_type,
            "Airf.BadInput"
        );
        assert_eq!(
            Diagnostic::from(Error::Config("x".into())).error_type,
            "Airf.Failed"
        );
    }
}
