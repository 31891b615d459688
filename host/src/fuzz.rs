//! Properties of the code that reads untrusted text: cron expressions,
//! webhook signature headers, webhook requests, `fetch` URLs and the
//! configuration. Each function takes arbitrary bytes, decodes them into
//! an input, runs the code, and answers `Err` naming the property that
//! broke (a panic breaks one too).
//!
//! Two drivers call them: the coverage-guided fuzz targets in `fuzz/`
//! (libFuzzer through `cargo fuzz`, run for as long as one likes, seeded
//! from `fuzz/corpus/`), and the property tests below, which run in every
//! `cargo test` with the seed corpora and generated inputs.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use base64::Engine;
use hmac::{Hmac, Mac};

use crate::cron::{self, Location, Time};
use crate::sandbox::FetchConfig;
use crate::sandbox::fetch::{is_internal, url_policy};
use crate::settings::{AuthType, WebhookAuth, standard_webhooks_key};
use crate::webhooks::{auth, request_input};

/// Splits `data` at 0xff bytes into at most `n` pieces (missing ones are
/// empty).
fn pieces(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = data.splitn(n, |b| *b == 0xff).collect();
    parts.resize(n, &[]);
    parts
}

/// An instant between 1970 and 2100 from the first 8 bytes of `data`.
fn instant(data: &[u8]) -> i64 {
    let mut bytes = [0u8; 8];
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    (u64::from_le_bytes(bytes) % 4_102_444_800) as i64
}

/// Cron: an expression (after 8 bytes of start time) parses or is refused
/// without panicking; when it parses, its next activations are strictly
/// after the start and each other, and (for expressions without a zone of
/// their own) each matches the expression.
pub fn cron_next(data: &[u8]) -> Result<(), String> {
    let after = instant(data);
    let expr = String::from_utf8_lossy(data.get(8..).unwrap_or_default());
    let Ok(schedule) = cron::parse(&expr) else {
        return Ok(());
    };
    let start = Time::new(after, 0, Location::Utc);
    let mut previous = start;
    for next in schedule.upcoming(start, 3) {
        if next.unix() <= previous.unix() {
            return Err(format!(
                "{expr:?}: {} is not after {}",
                next.to_rfc3339(),
                previous.to_rfc3339()
            ));
        }
        if schedule.location.is_none() && !schedule.matches(next) {
            return Err(format!(
                "{expr:?}: {} does not match the expression",
                next.to_rfc3339()
            ));
        }
        previous = next;
    }
    Ok(())
}

type HmacSha256 = Hmac<sha2::Sha256>;

fn hmac_of(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Webhook auth: arbitrary `Authorization`, `X-Hub-Signature-256`,
/// `Stripe-Signature` and Standard Webhooks headers never make `verify`
/// panic, and are accepted only when they carry the right signature: a
/// call signed as each scheme says is accepted, and the same call with
/// one byte of the body changed is refused.
pub fn webhook_auth(data: &[u8]) -> Result<(), String> {
    let [kind, secret, value, id, stamp, body] = pieces(data, 6)[..] else {
        unreachable!("six pieces")
    };
    let kinds = [
        AuthType::None,
        AuthType::Bearer,
        AuthType::HmacGithub,
        AuthType::HmacStripe,
        AuthType::StandardWebhooks,
    ];
    let kind = kinds[usize::from(kind.first().copied().unwrap_or(0)) % kinds.len()];
    let secret = String::from_utf8_lossy(secret).into_owned();
    let config = WebhookAuth {
        kind,
        secret: Some(secret.clone()),
    };
    let now = 1_700_000_000;

    // Arbitrary headers: any answer but a panic, and no acceptance of an
    // HMAC scheme without the key.
    let mut headers = HeaderMap::new();
    for name in [
        "authorization",
        "x-hub-signature-256",
        "stripe-signature",
        "webhook-signature",
    ] {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    for (name, v) in [("webhook-id", id), ("webhook-timestamp", stamp)] {
        if let Ok(v) = HeaderValue::from_bytes(v) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let verdict = auth::verify(&config, &headers, body, now);
    if verdict.is_ok() && kind == AuthType::HmacGithub {
        let mac = hmac_of(secret.as_bytes(), &[body]);
        let expected = format!("sha256={}", hex::encode(mac));
        if value.to_ascii_lowercase() != expected.as_bytes() {
            return Err(format!(
                "a GitHub signature {value:?} that is not the HMAC was accepted"
            ));
        }
    }

    // A call signed right is accepted; with the body changed, refused.
    let stamp = now.to_string();
    let signed = |body: &[u8]| -> Option<HeaderMap> {
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: String| {
            headers.insert(HeaderName::from_static(name), value.parse().ok()?);
            Some(())
        };
        match kind {
            AuthType::None => {}
            AuthType::Bearer => set("authorization", format!("Bearer {}", secret.trim()))?,
            AuthType::HmacGithub => set(
                "x-hub-signature-256",
                format!(
                    "sha256={}",
                    hex::encode(hmac_of(secret.as_bytes(), &[body]))
                ),
            )?,
            AuthType::HmacStripe => {
                let prefix = format!("{stamp}.");
                let mac = hmac_of(secret.as_bytes(), &[prefix.as_bytes(), body]);
                set(
                    "stripe-signature",
                    format!("t={stamp},v1={}", hex::encode(mac)),
                )?
            }
            AuthType::StandardWebhooks => {
                let key = standard_webhooks_key(&secret).ok()?;
                let prefix = format!("msg_1.{stamp}.");
                let mac = hmac_of(&key, &[prefix.as_bytes(), body]);
                let encoded = base64::engine::general_purpose::STANDARD.encode(mac);
                set("webhook-id", "msg_1".into())?;
                set("webhook-timestamp", stamp.clone())?;
                set("webhook-signature", format!("v1,{encoded}"))?
            }
        }
        Some(headers)
    };
    // Settings the API refuses never reach `verify`.
    if config.check().is_err() {
        return Ok(());
    }
    let Some(good) = signed(body) else {
        return Ok(()); // a secret no header can carry, or not a valid key
    };
    if let Err(why) = auth::verify(&config, &good, body, now) {
        return Err(format!(
            "{kind:?}: a rightly signed call was refused: {why:?}"
        ));
    }
    if matches!(
        kind,
        AuthType::HmacGithub | AuthType::HmacStripe | AuthType::StandardWebhooks
    ) {
        let mut changed = body.to_vec();
        match changed.first_mut() {
            Some(first) => *first ^= 1,
            None => changed.push(b'x'),
        }
        if auth::verify(&config, &good, &changed, now).is_ok() {
            return Err(format!(
                "{kind:?}: a signature was accepted for another body"
            ));
        }
    }
    Ok(())
}

/// The webhook request → script input path: any method, URI, headers and
/// body become an object with exactly `method`, `url`, `path`, `headers`,
/// `query` and `body`; a JSON body under a JSON content type arrives
/// parsed, any other non-empty body as text; `Authorization` is hidden
/// when asked.
pub fn webhook_input(data: &[u8]) -> Result<(), String> {
    let [method, uri, name, value, content_type, body] = pieces(data, 6)[..] else {
        unreachable!("six pieces")
    };
    let method = Method::from_bytes(method).unwrap_or(Method::POST);
    let uri: Uri = std::str::from_utf8(uri)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| Uri::from_static("/hook"));
    let mut headers = HeaderMap::new();
    if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
        headers.append(name.clone(), value.clone());
        headers.append(name, value);
    }
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert(axum::http::header::CONTENT_TYPE, value);
    }
    headers.insert(
        axum::http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer hidden-token"),
    );
    let input = request_input(
        &method,
        "https://x/acme/hook",
        "/hook",
        &uri,
        &headers,
        body,
        true,
    );
    let object = input.as_object().ok_or("the input is not an object")?;
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let expected = ["body", "headers", "method", "path", "query", "url"];
    if keys != expected {
        return Err(format!("input keys {keys:?}, expected {expected:?}"));
    }
    if object["method"] != method.as_str() {
        return Err(format!("method {} became {}", method, object["method"]));
    }
    if object["headers"]["authorization"] != "[redacted]" {
        return Err("Authorization reached the script".into());
    }
    // Checked where the content type is plainly JSON or plainly not.
    let declared = headers.get(axum::http::header::CONTENT_TYPE);
    let json_type = declared.is_some_and(|v| v == "application/json");
    let other_type = declared.is_none_or(|v| {
        !v.as_bytes()
            .to_ascii_lowercase()
            .windows(4)
            .any(|w| w == b"json")
    });
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    let expected_body = if body.is_empty() {
        Some(serde_json::Value::Null)
    } else if let (true, Some(value)) = (json_type, parsed) {
        Some(value)
    } else if other_type || json_type {
        Some(serde_json::Value::String(
            String::from_utf8_lossy(body).into_owned(),
        ))
    } else {
        None
    };
    if expected_body.is_some_and(|expected| object["body"] != expected) {
        return Err(format!(
            "body {:?} became {}",
            String::from_utf8_lossy(body),
            object["body"]
        ));
    }
    Ok(())
}

/// The `fetch` address policy: any URL text gets a decision without
/// panicking; an IP literal in loopback, private or link-local space, in
/// any spelling (IPv4, IPv4-mapped or -compatible IPv6, NAT64), is refused
/// unless allow-listed; an IPv6 form that carries an IPv4 address is
/// judged as that address.
pub fn fetch_policy(data: &[u8]) -> Result<(), String> {
    let config = FetchConfig::default();
    let text = String::from_utf8_lossy(data.get(4..).unwrap_or_default());
    let _ = url_policy(&config, &text);
    let _ = url_policy(&config, &format!("http://{text}/"));

    let mut octets = [0u8; 4];
    let n = data.len().min(4);
    octets[..n].copy_from_slice(&data[..n]);
    let v4 = std::net::Ipv4Addr::from(octets);
    let internal = is_internal(v4.into());
    for v6 in [
        v4.to_ipv6_mapped(),
        v4.to_ipv6_compatible(),
        std::net::Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(u32::from(v4))),
    ] {
        if v4.is_unspecified() && v6.segments()[5] == 0 {
            continue; // ::, the IPv6 unspecified address itself
        }
        if is_internal(v6.into()) != internal {
            return Err(format!("{v4} and {v6} are judged differently"));
        }
    }
    let must_refuse = v4.is_loopback() || v4.is_private() || v4.is_link_local();
    if must_refuse {
        if !internal {
            return Err(format!("{v4} is not refused"));
        }
        for url in [
            format!("http://{v4}/"),
            format!("http://[{}]/", v4.to_ipv6_mapped()),
        ] {
            if url_policy(&config, &url).is_ok() {
                return Err(format!("{url} may be fetched"));
            }
        }
        let allowed = FetchConfig {
            allow: vec![v4.to_string()],
            ..FetchConfig::default()
        };
        if let Err(why) = url_policy(&allowed, &format!("http://{v4}/")) {
            return Err(format!("{v4} is refused although allow-listed: {why}"));
        }
    }
    Ok(())
}

/// The configuration: any TOML text is read into a valid configuration or
/// refused with an error, never a panic; a configuration read back from
/// its own serialisation is the same.
pub fn config(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = crate::config::Config::parse(&text, std::iter::empty()) else {
        return Ok(());
    };
    let again = toml::to_string(&config).map_err(|e| format!("serialising: {e}"))?;
    let reread = crate::config::Config::parse(&again, std::iter::empty())
        .map_err(|e| format!("its own serialisation is refused: {e:#}\n{again}"))?;
    if reread != config {
        return Err(format!("read back differently:\n{again}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The fuzz targets' properties on their seed corpora (every file of
    //! `fuzz/corpus/<target>/`) and on generated inputs.

    use super::*;
    use proptest::prelude::*;

    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds in {}", dir.display());
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    fn holds_on_seeds(target: &str, property: fn(&[u8]) -> Result<(), String>) {
        for seed in seeds(target) {
            if let Err(why) = property(&seed) {
                panic!("{target} seed {:?}: {why}", String::from_utf8_lossy(&seed));
            }
        }
    }

    #[test]
    fn the_seed_corpora_hold() {
        holds_on_seeds("cron", cron_next);
        holds_on_seeds("webhook_auth", webhook_auth);
        holds_on_seeds("webhook_input", webhook_input);
        holds_on_seeds("fetch_policy", fetch_policy);
        holds_on_seeds("config", config);
    }

    /// Cron-like text: fields of numbers, names, `*`, `?`, ranges, steps
    /// and lists, sometimes with a zone or a descriptor.
    fn cron_text() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            "[0-9]{1,2}",
            Just("*".to_owned()),
            Just("?".to_owned()),
            "(jan|feb|dec|mon|sun|sat|FRI)",
            "[0-9]{1,2}-[0-9]{1,2}",
            "[0-9*]{1,2}/[0-9]{1,2}",
            "[0-9]{1,2}-[0-9]{1,2}/[0-9]{1,2}",
        ];
        let field = prop::collection::vec(atom, 1..3).prop_map(|v| v.join(","));
        let fields = prop::collection::vec(field, 4..7).prop_map(|v| v.join(" "));
        prop_oneof![
            4 => fields.clone(),
            1 => fields.prop_map(|f| format!("CRON_TZ=Europe/Paris {f}")),
            1 => "@(yearly|monthly|weekly|daily|hourly|every [0-9]{1,3}(s|m|h|ms))",
            1 => "\\PC{0,24}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn cron_expressions_keep_the_next_activation_property(
            after in 0u64..4_102_444_800,
            expr in cron_text(),
        ) {
            let mut data = after.to_le_bytes().to_vec();
            data.extend_from_slice(expr.as_bytes());
            prop_assert_eq!(cron_next(&data), Ok(()));
        }

        #[test]
        fn webhook_auth_accepts_only_the_right_signature(data in prop::collection::vec(any::<u8>(), 0..256)) {
            prop_assert_eq!(webhook_auth(&data), Ok(()));
        }

        #[test]
        fn signed_calls_verify_for_every_scheme(kind in 0u8..5, secret in "[a-zA-Z0-9]{1,40}", body in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut data = vec![kind, 0xff];
            data.extend_from_slice(secret.as_bytes());
            data.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
            data.extend_from_slice(&body);
            prop_assert_eq!(webhook_auth(&data), Ok(()));
        }

        #[test]
        fn webhook_requests_become_inputs(data in prop::collection::vec(any::<u8>(), 0..256)) {
            prop_assert_eq!(webhook_input(&data), Ok(()));
        }

        #[test]
        fn json_bodies_arrive_parsed(body in "\\{\"[a-z]{1,8}\": [0-9]{1,5}\\}") {
            let mut data = b"POST\xff/hook?a=1\xffx-test\xff1\xffapplication/json\xff".to_vec();
            data.extend_from_slice(body.as_bytes());
            prop_assert_eq!(webhook_input(&data), Ok(()));
        }

        #[test]
        fn fetch_decisions_hold_for_every_address(data in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(fetch_policy(&data), Ok(()));
        }

        #[test]
        fn config_text_is_read_or_refused(text in "(\\[(sandbox|fetch|database|retention)\\]\n)?([a-z_]{1,12} = (\"[a-z0-9:/._]{0,12}\"|[0-9]{1,6}|true|false)\n){0,4}") {
            prop_assert_eq!(config(text.as_bytes()), Ok(()));
        }
    }
}
