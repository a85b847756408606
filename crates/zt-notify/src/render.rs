//! What each kind of destination receives: the generic webhook's JSON and signature, a Slack
//! incoming webhook's Block Kit message, a Teams workflow's Adaptive Card envelope, an
//! e-mail's subject and text. Everything a person reads comes from [`Summary`].

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::message::{EventType, Message};

/// Items a message lists at most (a digest's total counts them all).
pub const LIST_CAP: usize = 20;

/// The generic webhook body: `{id, type, company_id, occurred_at, data}`.
pub fn webhook_body(m: &Message) -> Vec<u8> {
    serde_json::to_vec(m).unwrap_or_default()
}

/// `ZeroTrace-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, unix: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// One line of a message: a vulnerability, a host or a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub link: Option<String>,
}

/// What a person reads, whatever the destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub title: String,
    pub lines: Vec<Line>,
    /// Items beyond the listed ones.
    pub more: usize,
}

fn s<'a>(item: &'a Map<String, Value>, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or("")
}

fn n(item: &Map<String, Value>, key: &str) -> u64 {
    item.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn line(event: EventType, item: &Map<String, Value>) -> Line {
    let link = item.get("link").and_then(Value::as_str).map(str::to_string);
    let text = if event.is_about_vulnerability() {
        let hosts = n(item, "host_count");
        let kev = if item.get("kev").and_then(Value::as_bool) == Some(true) {
            " · KEV"
        } else {
            ""
        };
        let packages: Vec<&str> = item
            .get("packages")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let on = if packages.is_empty() {
            String::new()
        } else {
            format!(" in {}", packages.join(", "))
        };
        format!(
            "{} ({}{kev}) on {hosts} host{}{on}",
            s(item, "vuln_id"),
            s(item, "severity").to_uppercase(),
            if hosts == 1 { "" } else { "s" },
        )
    } else {
        match event {
            EventType::AgentStale => format!(
                "{} has not reported since {}",
                s(item, "hostname"),
                s(item, "last_seen_at")
            ),
            EventType::ReportFailed => format!(
                "report {} of {} failed: {}",
                s(item, "report_id"),
                s(item, "hostname"),
                s(item, "error")
            ),
            EventType::FeedStale => format!(
                "feed {} last updated {}",
                s(item, "source"),
                s(item, "last_success_at")
            ),
            _ => serde_json::to_string(item).unwrap_or_default(),
        }
    };
    Line { text, link }
}

pub fn summary(m: &Message) -> Summary {
    let items = m.items();
    let sample = if m.data.get("sample").and_then(Value::as_bool) == Some(true) {
        " (test message)"
    } else {
        ""
    };
    let title = if m.is_digest() {
        format!(
            "{}: {} in the last digest{sample}",
            m.event.title(),
            items.len()
        )
    } else {
        let first = items
            .first()
            .map(|i| line(m.event, i).text)
            .unwrap_or_default();
        format!("{}{sample}: {first}", m.event.title())
    };
    Summary {
        title,
        lines: items
            .iter()
            .take(LIST_CAP)
            .map(|i| line(m.event, i))
            .collect(),
        more: items.len().saturating_sub(LIST_CAP),
    }
}

/// A Slack incoming-webhook message: `text` (the notification's fallback) and Block Kit
/// `blocks` (a header, a section per item with a link, a context line with the ids).
pub fn slack(m: &Message) -> Value {
    let sm = summary(m);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&sm.title, 150), "emoji": false},
    })];
    for l in &sm.lines {
        let text = match &l.link {
            Some(url) => format!("<{url}|{}>", slack_escape(&l.text)),
            None => slack_escape(&l.text),
        };
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, 3000)}}),
        );
    }
    if sm.more > 0 {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("… and {} more", sm.more)}}));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("ZeroTrace · {} · delivery {}", m.event, m.id)}],
    }));
    json!({"text": sm.title, "blocks": blocks})
}

/// A Teams workflow ("Post to a channel when a webhook request is received") message: the
/// `message` envelope with one Adaptive Card attachment.
pub fn teams(m: &Message) -> Value {
    let sm = summary(m);
    let mut body = vec![json!({
        "type": "TextBlock", "text": sm.title, "weight": "Bolder", "size": "Medium", "wrap": true,
    })];
    for l in &sm.lines {
        let text = match &l.link {
            Some(url) => format!("[{}]({url})", l.text),
            None => l.text.clone(),
        };
        body.push(json!({"type": "TextBlock", "text": text, "wrap": true}));
    }
    if sm.more > 0 {
        body.push(json!({"type": "TextBlock", "text": format!("… and {} more", sm.more), "isSubtle": true}));
    }
    body.push(json!({
        "type": "FactSet",
        "facts": [{"title": "Event", "value": m.event.as_str()}, {"title": "Delivery", "value": m.id.to_string()}],
    }));
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(url) = sm.lines.iter().find_map(|l| l.link.clone()) {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open in ZeroTrace", "url": url}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// An e-mail's subject and plain-text body.
pub fn email(m: &Message) -> (String, String) {
    let sm = summary(m);
    let mut body = String::new();
    body.push_str(&sm.title);
    body.push_str("\n\n");
    for l in &sm.lines {
        body.push_str("- ");
        body.push_str(&l.text);
        if let Some(url) = &l.link {
            body.push_str("\n  ");
            body.push_str(url);
        }
        body.push('\n');
    }
    if sm.more > 0 {
        body.push_str(&format!("… and {} more\n", sm.more));
    }
    body.push_str(&format!(
        "\nEvent: {}\nDelivery: {}\nCompany: {}\n",
        m.event, m.id, m.company_id
    ));
    (format!("[ZeroTrace] {}", truncate(&sm.title, 200)), body)
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn message(data: Value) -> Message {
        Message {
            id: Uuid::from_u128(7),
            event: EventType::FindingOpened,
            company_id: Uuid::from_u128(1),
            occurred_at: chrono::Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap(),
            data: data.as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // Computed independently:
        // `printf '1.what do ya want for nothing?' | openssl dgst -sha256 -hmac Jefe`.
        let sig = signature("Jefe", 1, b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "t=1,v1=a9049465ce89cfb8e9aac62333abda66f80e3403f51f57f6bae3c3a4485eca38"
        );
    }

    #[test]
    fn a_vulnerability_line_names_hosts_severity_and_packages() {
        let m = message(
            json!({"vuln_id": "CVE-2024-3094", "severity": "critical", "kev": true,
            "host_count": 10000, "packages": ["xz-utils 5.6.0"], "link": "https://zt.example/c/1/vulns/CVE-2024-3094"}),
        );
        let sm = summary(&m);
        assert_eq!(
            sm.lines[0].text,
            "CVE-2024-3094 (CRITICAL · KEV) on 10000 hosts in xz-utils 5.6.0"
        );
        assert_eq!(
            sm.title,
            "New vulnerability: CVE-2024-3094 (CRITICAL · KEV) on 10000 hosts in xz-utils 5.6.0"
        );
        let (subject, body) = email(&m);
        assert!(subject.starts_with("[ZeroTrace] New vulnerability: CVE-2024-3094"));
        assert!(body.contains("https://zt.example/c/1/vulns/CVE-2024-3094"));
    }

    #[test]
    fn a_digest_lists_at_most_the_cap_and_counts_the_rest() {
        let items: Vec<Value> = (0..25)
            .map(|i| json!({"vuln_id": format!("CVE-2026-{i:04}"), "severity": "high", "host_count": 1}))
            .collect();
        let m = message(json!({"items": items}));
        let sm = summary(&m);
        assert_eq!(sm.lines.len(), LIST_CAP);
        assert_eq!(sm.more, 5);
        assert_eq!(sm.title, "New vulnerability: 25 in the last digest");
        let slack = slack(&m);
        let blocks = slack["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 1 + LIST_CAP + 1 + 1);
    }
}
