//! Notifications: a plain-text message for the incident topic (e-mail, tickets) and an AWS
//! Chatbot custom notification for the chat topic (Slack).

use crate::cloud::Cloud;
use crate::config::Config;
use crate::error::Result;
use crate::model::Target;
use serde_json::json;

/// SNS subjects are at most 100 printable ASCII characters.
fn subject_line(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    clean.chars().take(100).collect()
}

/// Publishes `title` and `body` to the incident topic, and to the chat topic when configured.
pub async fn notify<C: Cloud>(
    cloud: &C,
    config: &Config,
    case_id: &str,
    target: &Target,
    title: &str,
    body: &str,
) -> Result<()> {
    let subject = subject_line(&format!("airf {case_id}: {title}"));
    let text = format!(
        "{title}\n\ncase:     {case_id}\ninstance: {}\naccount:  {}\nregion:   {}\n\n{body}\n",
        target.instance_id, target.account, target.region
    );
    cloud
        .publish(&config.incident_topic_arn, &subject, &text)
        .await?;
    if !config.chat_topic_arn.is_empty() {
        let chat = json!({
            "version": "1.0",
            "source": "custom",
            "content": {
                "textType": "client-markdown",
                "title": subject,
                "description": format!("`{}` in {} / {}\n{body}", target.instance_id, target.account, target.region),
            },
            "metadata": { "additionalContext": { "case": case_id, "instance": target.instance_id } }
        });
        cloud
            .publish(&config.chat_topic_arn, &subject, &chat.to_string())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_short_printable_ascii() {
        let s = subject_line(&format!("a\nb{}", "x".repeat(300)));
        assert_eq!(s.len(), 100);
        assert!(s.starts_with("a?b"));
    }
}
