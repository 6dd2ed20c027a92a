//! `fail`: any step's failure ends here: the instance is tagged `Error` with a short reason and
//! the responders are told what happened, including how far containment got.

use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::Result;
use crate::event::CaughtError;
use crate::model::{CASE_TAG, REASON_TAG, STATUS_TAG, Status, Subject, tag_value};
use crate::notify::notify;
use serde::Serialize;
use std::collections::BTreeMap;

/// What `fail` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The reason recorded in the tag.
    pub reason: String,
    /// Whether the tags were written (the instance may be gone).
    pub tagged: bool,
}

/// The error as a tag value (see [`tag_value`]).
pub fn tag_reason(error: &CaughtError) -> String {
    tag_value(&format!("{}: {}", error.error, error.message()))
}

/// Records the failure on the instance and notifies.
pub async fn fail<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    subject: &Subject,
    error: &CaughtError,
) -> Result<Failure> {
    let reason = tag_reason(error);
    let tags = BTreeMap::from([
        (STATUS_TAG.to_owned(), Status::Error.as_str().to_owned()),
        (REASON_TAG.to_owned(), reason.clone()),
        (CASE_TAG.to_owned(), case_id.to_owned()),
    ]);
    let tag_result = cloud.tag_instance(&subject.target, &tags).await;
    let partly_contained = error.message().contains("containment incomplete");
    let mut body = format!("{}\n\n{}", error.error, error.message());
    if partly_contained {
        body.push_str("\n\nWARNING: the instance is PARTLY contained (see the steps above). Finish containment by hand or tag it Contain to retry.");
    } else {
        body.push_str("\n\nThe instance is NOT contained. Decide now: tag it Contain to isolate it, or Analyze to try again.");
    }
    if let Err(e) = &tag_result {
        body.push_str(&format!("\n\nThe Error tag could not be written: {e}"));
    }
    notify(
        cloud,
        config,
        case_id,
        &subject.target,
        "investigation FAILED",
        &body,
    )
    .await?;
    Ok(Failure {
        reason,
        tagged: tag_result.is_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lambda_causes_are_unwrapped() {
        let e = CaughtError {
            error: "Airf.Failed".into(),
            cause: r#"{"errorType":"Airf.Failed","errorMessage":"instance i-1 not found; \"x\""}"#
                .into(),
        };
        assert_eq!(tag_reason(&e), "Airf.Failed: instance i-1 not found x");
    }

    proptest! {
        #[test]
        fn reasons_are_always_valid_tag_values(error in ".{0,50}", cause in ".{0,600}") {
            let r = tag_reason(&CaughtError { error, cause });
            prop_assert!(r.chars().count() <= 256);
            prop_assert!(r.chars().all(|c| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c)));
        }
    }
}
