//! A script's structured settings, and how they are read back from storage.
//!
//! The store keeps `limits`, `rate_limit`, `webhook_auth` and
//! `webhook_methods` as JSON text. Reading them back is strict: a value that
//! does not decode, or decodes to something the API would never have
//! accepted (an HMAC scheme without a secret, a lowercase method), is a
//! [`Misconfigured`] error, never a default. Every run and every webhook call
//! decodes the settings first, so a damaged row fails closed: the script
//! does not run, and an operator sees why in the log.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::model::{ScriptId, Trigger};
use crate::sandbox::LimitOverrides;
use crate::secrets::validate_name;
use crate::store::ScriptRecord;

/// A script's `rate_limit`: calls per second, and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rps: u32,
    pub burst: u32,
}

/// A script's `webhook_auth.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthType {
    None,
    Bearer,
    HmacGithub,
    HmacStripe,
    StandardWebhooks,
}

/// A script's `webhook_auth`; the secret is stored, never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookAuth {
    #[serde(rename = "type")]
    pub kind: AuthType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookAuth {
    /// Whether the settings can authenticate anything: every scheme but
    /// `none` needs a secret, and Standard Webhooks a base64 one.
    pub fn check(&self) -> Result<(), String> {
        let secret = self.secret.as_deref().unwrap_or_default();
        match self.kind {
            AuthType::None => Ok(()),
            _ if secret.is_empty() => Err("the secret is empty".into()),
            AuthType::StandardWebhooks => standard_webhooks_key(secret).map(|_| ()),
            // Sent as `Authorization: Bearer <token>`, which is read as
            // text: a token outside printable ASCII could never match.
            AuthType::Bearer
                if !secret.bytes().all(|b| (0x20..0x7f).contains(&b))
                    || secret.trim() != secret =>
            {
                Err("a bearer token must be printable ASCII, without spaces at either end".into())
            }
            _ => Ok(()),
        }
    }
}

impl RateLimit {
    pub fn check(&self) -> Result<(), String> {
        if self.rps == 0 || self.burst == 0 {
            return Err("rps and burst must be at least 1".into());
        }
        Ok(())
    }
}

/// Whether `method` is an HTTP method name as scripts restrict them to
/// (uppercase letters).
pub fn valid_method(method: &str) -> bool {
    !method.is_empty() && method.len() <= 20 && method.bytes().all(|b| b.is_ascii_uppercase())
}

/// A stored setting that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored {field} of script {script_id} is invalid: {why}")]
pub struct Misconfigured {
    pub script_id: ScriptId,
    pub field: &'static str,
    pub why: String,
}

/// A script's settings, decoded: its limits, and its trigger with what
/// that trigger needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSettings {
    pub limits: LimitOverrides,
    pub trigger: ScriptTrigger,
    /// Names of the tenant's secrets the script may read.
    pub secrets: Vec<String>,
    /// Plain variables, by name.
    pub vars: BTreeMap<String, String>,
}

/// When a script runs, carrying its own data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptTrigger {
    /// Through the API (or the dashboard) only.
    Manual,
    /// On a cron schedule (checked to parse), in `timezone` unless the
    /// expression names its own zone.
    Scheduled {
        schedule: String,
        timezone: Option<String>,
    },
    /// On calls to its webhook.
    Webhook(WebhookSettings),
}

/// What a webhook script's calls are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub path: String,
    pub auth: Option<WebhookAuth>,
    /// Methods the webhook answers; `None` (or empty) for all.
    pub methods: Option<Vec<String>>,
    /// `None`: the listener's default.
    pub rate_limit: Option<RateLimit>,
}

impl ScriptSettings {
    /// Decodes every setting of `script`, whatever its trigger uses; the
    /// first that fails is the error.
    pub fn decode(script: &ScriptRecord) -> Result<Self, Misconfigured> {
        let limits = limits(script)?;
        let (secrets, vars) = (secrets(script)?, vars(script)?);
        let (rate_limit, auth, methods) = (
            rate_limit(script)?,
            webhook_auth(script)?,
            webhook_methods(script)?,
        );
        let missing = |field: &'static str, why: &str| Misconfigured {
            script_id: script.id.clone(),
            field,
            why: why.into(),
        };
        let trigger = match script.trigger_type {
            Trigger::Manual => ScriptTrigger::Manual,
            Trigger::Scheduled => {
                let schedule = script
                    .schedule
                    .clone()
                    .ok_or_else(|| missing("schedule", "a scheduled script has none"))?;
                crate::cron::parse(&schedule)
                    .map_err(|why| missing("schedule", &why.to_string()))?;
                ScriptTrigger::Scheduled {
                    schedule,
                    timezone: script.timezone.clone(),
                }
            }
            Trigger::Webhook => ScriptTrigger::Webhook(WebhookSettings {
                path: script
                    .webhook_path
                    .clone()
                    .ok_or_else(|| missing("webhook_path", "a webhook script has none"))?,
                auth,
                methods,
                rate_limit,
            }),
        };
        Ok(Self {
            limits,
            trigger,
            secrets,
            vars,
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    script: &ScriptRecord,
    field: &'static str,
    text: &str,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, Misconfigured> {
    let misconfigured = |why: String| Misconfigured {
        script_id: script.id.clone(),
        field,
        why,
    };
    let value: T = serde_json::from_str(text).map_err(|e| misconfigured(e.to_string()))?;
    check(&value).map_err(misconfigured)?;
    Ok(value)
}

/// The stored `limits` (`{}` when none are set).
pub fn limits(script: &ScriptRecord) -> Result<LimitOverrides, Misconfigured> {
    decode(script, "limits", &script.limits, |_| Ok(()))
}

/// The stored `secrets`: the names of the tenant's secrets the script may
/// read (`[]` when none).
pub fn secrets(script: &ScriptRecord) -> Result<Vec<String>, Misconfigured> {
    decode(script, "secrets", &script.secrets, |names: &Vec<String>| {
        names.iter().try_for_each(|name| validate_name(name))
    })
}

/// The stored `vars`: plain variables by name (`{}` when none).
pub fn vars(script: &ScriptRecord) -> Result<BTreeMap<String, String>, Misconfigured> {
    decode(
        script,
        "vars",
        &script.vars,
        |vars: &BTreeMap<String, String>| vars.keys().try_for_each(|name| validate_name(name)),
    )
}

/// The stored `rate_limit`; SQL NULL is none, anything else must decode
/// (the text `null` included).
pub fn rate_limit(script: &ScriptRecord) -> Result<Option<RateLimit>, Misconfigured> {
    script
        .rate_limit
        .as_deref()
        .map(|text| decode(script, "rate_limit", text, RateLimit::check))
        .transpose()
}

/// The stored `webhook_auth`; SQL NULL is none.
pub fn webhook_auth(script: &ScriptRecord) -> Result<Option<WebhookAuth>, Misconfigured> {
    script
        .webhook_auth
        .as_deref()
        .map(|text| decode(script, "webhook_auth", text, WebhookAuth::check))
        .transpose()
}

/// The stored `webhook_methods`; SQL NULL is none.
pub fn webhook_methods(script: &ScriptRecord) -> Result<Option<Vec<String>>, Misconfigured> {
    script
        .webhook_methods
        .as_deref()
        .map(|text| {
            decode(
                script,
                "webhook_methods",
                text,
                |methods: &Vec<String>| match methods.iter().find(|m| !valid_method(m)) {
                    Some(bad) => Err(format!("{bad:?} is not an HTTP method")),
                    None => Ok(()),
                },
            )
        })
        .transpose()
}

/// The key of a Standard Webhooks secret: base64 after `whsec_` (the prefix
/// may be left out).
pub fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    match BASE64.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err("a standard-webhooks secret is whsec_ followed by base64".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> ScriptRecord {
        ScriptRecord {
            id: "s1".into(),
            tenant_id: "t1".into(),
            name: "n".into(),
            source: String::new(),
            language: crate::typescript::Language::JavaScript,
            version: 1,
            trigger_type: Trigger::Webhook,
            schedule: None,
            timezone: None,
            webhook_path: Some("/h".into()),
            enabled: true,
            limits: "{}".into(),
            rate_limit: None,
            webhook_auth: None,
            webhook_methods: None,
            secrets: "[]".into(),
            vars: "{}".into(),
            max_retries: 0,
            retry_delay_ms: 1000,
            next_run_at: None,
            last_executed_at: None,
            created_at: 0,
            updated_at: 0,
            retention_max_age_ms: None,
            retention_max_per_script: None,
        }
    }

    #[test]
    fn a_bearer_token_must_be_printable_ascii() {
        let auth = |secret: &str| WebhookAuth {
            kind: AuthType::Bearer,
            secret: Some(secret.into()),
        };
        assert!(auth("s3cr3t-token_1").check().is_ok());
        for bad in ["\u{fffd}\u{fffd}", " padded", "tab\t", "caf\u{e9}"] {
            let why = auth(bad).check().unwrap_err();
            assert!(why.contains("printable ASCII"), "{bad:?}: {why}");
        }
    }

    #[test]
    fn good_settings_decode() {
        let mut s = script();
        s.limits = r#"{"fuel": 1000}"#.into();
        s.rate_limit = Some(r#"{"rps": 5, "burst": 9}"#.into());
        s.webhook_auth = Some(r#"{"type": "bearer", "secret": "t"}"#.into());
        s.webhook_methods = Some(r#"["POST"]"#.into());
        let settings = ScriptSettings::decode(&s).unwrap();
        assert_eq!(settings.limits.fuel, Some(1000));
        let ScriptTrigger::Webhook(hook) = settings.trigger else {
            panic!("a webhook script decodes to a webhook trigger");
        };
        assert_eq!(hook.path, "/h");
        assert_eq!(hook.rate_limit, Some(RateLimit { rps: 5, burst: 9 }));
        assert_eq!(hook.auth.unwrap().kind, AuthType::Bearer);
        assert_eq!(hook.methods.unwrap(), ["POST"]);
        let plain = ScriptSettings::decode(&script()).unwrap();
        assert!(matches!(
            plain.trigger,
            ScriptTrigger::Webhook(WebhookSettings { auth: None, .. })
        ));
    }

    #[test]
    fn a_trigger_without_its_data_is_misconfigured() {
        let mut s = script();
        s.webhook_path = None;
        assert_eq!(
            ScriptSettings::decode(&s).unwrap_err().field,
            "webhook_path"
        );
        s.trigger_type = Trigger::Scheduled;
        assert_eq!(ScriptSettings::decode(&s).unwrap_err().field, "schedule");
        s.schedule = Some("61 * * * *".into());
        assert_eq!(ScriptSettings::decode(&s).unwrap_err().field, "schedule");
        s.schedule = Some("@hourly".into());
        s.timezone = Some("Europe/Paris".into());
        assert_eq!(
            ScriptSettings::decode(&s).unwrap().trigger,
            ScriptTrigger::Scheduled {
                schedule: "@hourly".into(),
                timezone: Some("Europe/Paris".into()),
            }
        );
    }

    #[test]
    fn undecodable_auth_fails_closed() {
        for bad in [
            r#"{"type": "bearer", "secret": "t", "extra": 1}"#,
            r#"{"type": "Bearer", "secret": "t"}"#,
            r#"{"type": "bearer", "secret": "t""#,
            "",
            "null",
            "[]",
            r#"{"type": "basic", "secret": "t"}"#,
            r#"{"type": "hmac-github"}"#,
            r#"{"type": "hmac-stripe", "secret": ""}"#,
            r#"{"type": "standard-webhooks", "secret": "whsec_!!"}"#,
        ] {
            let mut s = script();
            s.webhook_auth = Some(bad.into());
            let error = ScriptSettings::decode(&s).unwrap_err();
            assert_eq!(error.field, "webhook_auth", "{bad}");
            assert_eq!(error.script_id.as_str(), "s1");
        }
    }

    #[test]
    fn undecodable_methods_limits_and_rates_fail_closed() {
        type Set = fn(&mut ScriptRecord, &str);
        let cases: [(&str, Set); 3] = [
            ("webhook_methods", |s, v| s.webhook_methods = Some(v.into())),
            ("limits", |s, v| s.limits = v.into()),
            ("rate_limit", |s, v| s.rate_limit = Some(v.into())),
        ];
        for (field, set) in cases {
            for bad in [
                "",
                "null",
                "[",
                r#"["post"]"#,
                r#"{"rps": 0, "burst": 1}"#,
                "{\"x\":1}",
            ] {
                let mut s = script();
                set(&mut s, bad);
                // `["post"]` is only wrong for methods; the others are wrong
                // for every field.
                match ScriptSettings::decode(&s) {
                    Err(error) => assert_eq!(error.field, field, "{field} {bad}"),
                    Ok(_) => panic!("{field} = {bad:?} decoded"),
                }
            }
        }
    }
}
