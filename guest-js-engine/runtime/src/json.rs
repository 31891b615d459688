//! The run's `input` and `ctx` as JavaScript values.
//!
//! QuickJS's own `JSON.parse` makes every number a float64, and its integer
//! fast paths then never apply to numbers a script receives: fib(25) costs
//! 1.6 times the fuel when 25 comes from the input. Here integers that fit
//! in 32 bits become QuickJS integers; everything else is what `JSON.parse`
//! gives: other numbers as doubles, keys in document order as own
//! enumerable properties (`"__proto__"` included), the last of duplicate
//! keys winning.

use std::cell::RefCell;
use std::fmt;

use javy::quickjs::object::Property;
use javy::quickjs::{Array, Ctx, Error as JsError, Exception, Object, String as JsString, Value};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Parses `json` (which the host wrote, so it is valid) into a value.
pub fn parse<'js>(ctx: &Ctx<'js>, json: &str) -> Result<Value<'js>, JsError> {
    let failed = RefCell::new(None);
    let seed = Build {
        ctx,
        failed: &failed,
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    match seed
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
    {
        Ok(value) => Ok(value),
        // A QuickJS error (out of memory) is pending in the context as
        // it would be after `JSON.parse`.
        Err(error) => Err(failed.take().unwrap_or_else(|| {
            Exception::throw_syntax(ctx, &format!("the JSON is invalid: {error}"))
        })),
    }
}

/// Builds one value; a QuickJS error is kept in `failed` and reported to
/// serde as a custom error, which ends the parse.
#[derive(Clone, Copy)]
struct Build<'a, 'js> {
    ctx: &'a Ctx<'js>,
    failed: &'a RefCell<Option<JsError>>,
}

impl<'js> Build<'_, 'js> {
    fn js<T, E: serde::de::Error>(&self, result: Result<T, JsError>) -> Result<T, E> {
        result.map_err(|error| {
            *self.failed.borrow_mut() = Some(error);
            E::custom("QuickJS failed")
        })
    }
}

impl<'de, 'js> DeserializeSeed<'de> for Build<'_, 'js> {
    type Value = Value<'js>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value<'js>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 'js> Visitor<'de> for Build<'_, 'js> {
    type Value = Value<'js>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value<'js>, E> {
        Ok(Value::new_null(self.ctx.clone()))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value<'js>, E> {
        Ok(Value::new_bool(self.ctx.clone(), v))
    }

    /// `new_number` makes an integer of what fits in 32 bits, else a double.
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value<'js>, E> {
        Ok(Value::new_number(self.ctx.clone(), v as f64))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value<'js>, E> {
        Ok(Value::new_number(self.ctx.clone(), v as f64))
    }

    /// A number written with a fraction or an exponent stays a double, as
    /// `JSON.parse` makes it (`-0.0` included).
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value<'js>, E> {
        Ok(Value::new_float(self.ctx.clone(), v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value<'js>, E> {
        let string = self.js(JsString::from_str(self.ctx.clone(), v))?;
        Ok(string.into_value())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'js>, A::Error> {
        let array = self.js(Array::new(self.ctx.clone()))?;
        let mut index = 0;
        while let Some(item) = seq.next_element_seed(self)? {
            self.js(array.set(index, item))?;
            index += 1;
        }
        Ok(array.into_value())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'js>, A::Error> {
        let object = self.js(Object::new(self.ctx.clone()))?;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let value = map.next_value_seed(self)?;
            let property = Property::from(value).writable().enumerable().configurable();
            self.js(object.prop(key.as_ref(), property))?;
        }
        Ok(object.into_value())
    }
}
