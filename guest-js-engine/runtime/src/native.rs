//! Native functions that `prelude.js` wraps into the script globals. Each one
//! forwards to a host import of the WIT world; the host decides policy and
//! its refusals come back as JavaScript exceptions.

use javy::quickjs::{
    ArrayBuffer, Ctx, Exception, Function, Object, Result, TypedArray, Value, function::Opt,
};

use crate::scriptbox::sandbox::{cache, clock, db, http, log, random};

fn throw(ctx: &Ctx<'_>, message: String) -> javy::quickjs::Error {
    Exception::throw_message(ctx, &message)
}

fn bytes_of(value: &Value<'_>) -> Option<Vec<u8>> {
    if let Some(s) = value.as_string() {
        return s.to_string().ok().map(String::into_bytes);
    }
    let object = value.as_object()?;
    if let Some(array) = TypedArray::<u8>::from_object(object.clone()).ok() {
        return array.as_bytes().map(<[u8]>::to_vec);
    }
    ArrayBuffer::from_object(object.clone()).and_then(|b| b.as_bytes().map(<[u8]>::to_vec))
}

/// The object passed to `prelude.js` as `host`.
pub fn host_object<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>> {
    let host = Object::new(ctx.clone())?;

    host.set(
        "log",
        Function::new(ctx.clone(), |level: i32, message: String| {
            let level = match level {
                0 => log::Level::Debug,
                2 => log::Level::Warn,
                3 => log::Level::Error,
                _ => log::Level::Info,
            };
            log::write(level, &message);
        })?,
    )?;

    host.set(
        "fetch",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             method: String,
             url: String,
             headers: Vec<Vec<String>>,
             body: Opt<Value<'js>>|
             -> Result<Object<'js>> {
                let headers = headers
                    .into_iter()
                    .filter_map(|mut pair| {
                        let value = pair.pop()?;
                        let name = pair.pop()?;
                        Some((name, value))
                    })
                    .collect();
                let body = body.0.as_ref().and_then(bytes_of);
                let request = http::Request {
                    method,
                    url,
                    headers,
                    body,
                };
                let response = http::fetch(&request).map_err(|e| throw(&ctx, e))?;
                let reply = Object::new(ctx.clone())?;
                reply.set("status", response.status)?;
                let pairs: Vec<Vec<String>> = response
                    .headers
                    .into_iter()
                    .map(|(name, value)| vec![name, value])
                    .collect();
                reply.set("headers", pairs)?;
                reply.set("body", ArrayBuffer::new(ctx.clone(), response.body)?)?;
                Ok(reply)
            },
        )?,
    )?;

    host.set(
        "dbGet",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, key: String| -> Result<Option<String>> {
                db::get(&key).map_err(|e| throw(&ctx, e))
            },
        )?,
    )?;
    host.set(
        "dbSet",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, key: String, value: String| -> Result<()> {
                db::set(&key, &value).map_err(|e| throw(&ctx, e))
            },
        )?,
    )?;
    host.set(
        "dbDelete",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, key: String| -> Result<bool> {
            db::delete(&key).map_err(|e| throw(&ctx, e))
        })?,
    )?;
    host.set(
        "dbList",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, prefix: String| -> Result<Vec<String>> {
                db::list_keys(&prefix).map_err(|e| throw(&ctx, e))
            },
        )?,
    )?;

    host.set(
        "cacheGet",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, key: String| -> Result<Option<String>> {
                cache::get(&key).map_err(|e| throw(&ctx, e))
            },
        )?,
    )?;
    host.set(
        "cacheSet",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, key: String, value: String, ttl_ms: Option<f64>| -> Result<()> {
                let ttl = match ttl_ms {
                    Some(ms) if !(ms.is_finite() && ms > 0.0) => {
                        return Err(throw(
                            &ctx,
                            format!("ttlMs must be a positive number of milliseconds, got {ms}"),
                        ));
                    }
                    Some(ms) => Some(ms as u64),
                    None => None,
                };
                cache::set(&key, &value, ttl).map_err(|e| throw(&ctx, e))
            },
        )?,
    )?;
    host.set(
        "cacheDelete",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, key: String| -> Result<bool> {
            cache::delete(&key).map_err(|e| throw(&ctx, e))
        })?,
    )?;

    host.set(
        "now",
        Function::new(ctx.clone(), || clock::now_ms() as f64)?,
    )?;

    host.set(
        "randomUUID",
        Function::new(ctx.clone(), |ctx: Ctx<'js>| -> Result<String> {
            let bytes: [u8; 16] = random::fill(16)
                .try_into()
                .map_err(|_| throw(&ctx, "no randomness: the host gave too few bytes".into()))?;
            Ok(format_uuid_v4(bytes))
        })?,
    )?;

    Ok(host)
}

/// RFC 9562 version 4: random bits with the version and variant set.
fn format_uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
