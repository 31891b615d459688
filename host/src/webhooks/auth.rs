//! Webhook authentication, checked before any sandbox starts: a bearer
//! token, or an HMAC-SHA256 signature in GitHub's, Stripe's or the Standard
//! Webhooks scheme. Every comparison is constant-time, and timestamped
//! schemes refuse requests more than [`TOLERANCE_SECS`] from now.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AuthType, WebhookAuth};
use crate::settings::standard_webhooks_key;

/// Replay window of the timestamped schemes (Stripe, Standard Webhooks).
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Why a request was refused; the message is the 401's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

fn refused(message: impl Into<String>) -> Refused {
    Refused(message.into())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Refused> {
    headers
        .get(name)
        .ok_or_else(|| refused(format!("missing {name} header")))?
        .to_str()
        .map_err(|_| refused(format!("{name} header is not text")))
}

/// Checks `headers` and `body` against the script's auth settings at Unix
/// time `now`.
pub fn verify(
    auth: &WebhookAuth,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Refused> {
    let secret = auth.secret.as_deref().unwrap_or_default();
    // A scheme with a secret never runs with an empty one: an HMAC with an
    // empty key is one anybody can make.
    if auth.kind != AuthType::None && secret.is_empty() {
        return Err(refused("the script's webhook secret is not set"));
    }
    match auth.kind {
        AuthType::None => Ok(()),
        AuthType::Bearer => {
            let value = header(headers, "authorization")?;
            let token = value
                .strip_prefix("Bearer ")
                .ok_or_else(|| refused("Authorization must be Bearer <token>"))?;
            // Hashes first, so the comparison takes as long whatever the lengths.
            let given = Sha256::digest(token.trim().as_bytes());
            let expected = Sha256::digest(secret.as_bytes());
            if bool::from(given.ct_eq(&expected)) {
                Ok(())
            } else {
                Err(refused("invalid bearer token"))
            }
        }
        AuthType::HmacGithub => {
            let value = header(headers, "x-hub-signature-256")?;
            let hex_sig = value
                .strip_prefix("sha256=")
                .ok_or_else(|| refused("X-Hub-Signature-256 must be sha256=<hex>"))?;
            let signature =
                hex::decode(hex_sig).map_err(|_| refused("X-Hub-Signature-256 is not hex"))?;
            check_mac(secret.as_bytes(), &[body], &signature)
        }
        AuthType::HmacStripe => {
            let value = header(headers, "stripe-signature")?;
            let mut timestamp = None;
            let mut signatures = Vec::new();
            for part in value.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
                    Some(("v1", sig)) => signatures.push(sig),
                    _ => {}
                }
            }
            let timestamp =
                timestamp.ok_or_else(|| refused("Stripe-Signature has no valid t= timestamp"))?;
            check_fresh(timestamp, now)?;
            if signatures.is_empty() {
                return Err(refused("Stripe-Signature has no v1= signature"));
            }
            let prefix = format!("{timestamp}.");
            any_matches(&signatures, |sig| {
                let signature = hex::decode(sig).ok()?;
                Some(check_mac(
                    secret.as_bytes(),
                    &[prefix.as_bytes(), body],
                    &signature,
                ))
            })
        }
        AuthType::StandardWebhooks => {
            let id = header(headers, "webhook-id")?;
            let timestamp_text = header(headers, "webhook-timestamp")?;
            let timestamp = timestamp_text
                .parse::<i64>()
                .map_err(|_| refused("webhook-timestamp is not a number"))?;
            check_fresh(timestamp, now)?;
            let value = header(headers, "webhook-signature")?;
            let key = standard_webhooks_key(secret)
                .map_err(|_| refused("the script's webhook secret is not valid"))?;
            let prefix = format!("{id}.{timestamp_text}.");
            let entries: Vec<&str> = value
                .split(' ')
                .filter_map(|entry| entry.strip_prefix("v1,"))
                .collect();
            if entries.is_empty() {
                return Err(refused("webhook-signature has no v1,<base64> entry"));
            }
            any_matches(&entries, |sig| {
                let signature = BASE64.decode(sig).ok()?;
                Some(check_mac(&key, &[prefix.as_bytes(), body], &signature))
            })
        }
    }
}

/// Ok when any candidate verifies; each is checked (no early exit on the
/// first malformed one).
fn any_matches<'a>(
    candidates: &[&'a str],
    check: impl Fn(&'a str) -> Option<Result<(), Refused>>,
) -> Result<(), Refused> {
    let mut ok = false;
    for candidate in candidates {
        ok |= matches!(check(candidate), Some(Ok(())));
    }
    if ok {
        Ok(())
    } else {
        Err(refused("signature does not match"))
    }
}

/// HMAC-SHA256 of the concatenated `parts`, compared in constant time.
fn check_mac(key: &[u8], parts: &[&[u8]], signature: &[u8]) -> Result<(), Refused> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(signature)
        .map_err(|_| refused("signature does not match"))
}

fn check_fresh(timestamp: i64, now: i64) -> Result<(), Refused> {
    // Checked: a timestamp near i64::MIN or MAX must not wrap into the window.
    let fresh = now
        .checked_sub(timestamp)
        .and_then(i64::checked_abs)
        .is_some_and(|age| age <= TOLERANCE_SECS);
    if !fresh {
        return Err(refused(format!(
            "signature timestamp {timestamp} is more than {TOLERANCE_SECS} s from now"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(kind: AuthType, secret: &str) -> WebhookAuth {
        WebhookAuth {
            kind,
            secret: Some(secret.into()),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn githubs_documented_example_verifies() {
        // From GitHub's "Validating webhook deliveries".
        let github = auth(AuthType::HmacGithub, "It's a Secret to Everybody");
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("x-hub-signature-256", good)]);
        assert_eq!(verify(&github, &h, b"Hello, World!", 0), Ok(()));
        assert!(verify(&github, &h, b"Hello, World?", 0).is_err());
        assert!(verify(&github, &HeaderMap::new(), b"Hello, World!", 0).is_err());
    }

    #[test]
    fn the_standard_webhooks_example_verifies_within_its_window() {
        // The example of the Standard Webhooks specification.
        let standard = auth(
            AuthType::StandardWebhooks,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(verify(&standard, &h, body, 1_614_265_330 + 299), Ok(()));
        let late = verify(&standard, &h, body, 1_614_265_330 + 301).unwrap_err();
        assert!(late.0.contains("300 s"), "{late:?}");
        assert!(verify(&standard, &h, b"{}", 1_614_265_330).is_err());
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let bearer = auth(AuthType::Bearer, "s3cret");
        let ok = headers(&[("authorization", "Bearer s3cret")]);
        assert_eq!(verify(&bearer, &ok, b"", 0), Ok(()));
        for bad in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret"] {
            let h = headers(&[("authorization", bad)]);
            assert!(verify(&bearer, &h, b"", 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn standard_webhooks_secrets_must_be_base64() {
        assert!(standard_webhooks_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(standard_webhooks_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(standard_webhooks_key("whsec_not base64!").is_err());
        assert!(standard_webhooks_key("whsec_").is_err());
    }

    #[test]
    fn timestamps_far_from_now_are_stale_without_overflowing() {
        // A valid signature over a timestamp 2^63 s in the past: the age does
        // not fit an i64, and must not wrap into the window.
        let stripe = auth(AuthType::HmacStripe, "whsec_test");
        let now = 1_700_000_000_i64;
        for t in [i64::MIN, now.wrapping_sub(i64::MAX), i64::MAX] {
            let mut mac = HmacSha256::new_from_slice(b"whsec_test").unwrap();
            mac.update(format!("{t}.").as_bytes());
            mac.update(b"{}");
            let sig = hex::encode(mac.finalize().into_bytes());
            let h = headers(&[("stripe-signature", &format!("t={t},v1={sig}"))]);
            let refused = verify(&stripe, &h, b"{}", now).unwrap_err();
            assert!(refused.0.contains("from now"), "{t}: {refused:?}");
        }
        assert!(check_fresh(now - TOLERANCE_SECS, now).is_ok());
        assert!(check_fresh(now + TOLERANCE_SECS + 1, now).is_err());
    }

    #[test]
    fn schemes_with_a_secret_refuse_an_empty_one() {
        let body = b"Hello, World!";
        // HMAC-SHA256 of the body under the empty key.
        let mut mac = HmacSha256::new_from_slice(b"").unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        for secret in [None, Some(String::new())] {
            let github = WebhookAuth {
                kind: AuthType::HmacGithub,
                secret: secret.clone(),
            };
            let h = headers(&[("x-hub-signature-256", &sig)]);
            let refused = verify(&github, &h, body, 0).unwrap_err();
            assert!(refused.0.contains("secret is not set"), "{refused:?}");
            let bearer = WebhookAuth {
                kind: AuthType::Bearer,
                secret,
            };
            let h = headers(&[("authorization", "Bearer ")]);
            assert!(verify(&bearer, &h, b"", 0).is_err());
        }
    }
}
