//! The words every layer speaks about runs: whose and which they are
//! ([`TenantId`], [`ScriptId`], [`ExecutionId`]), what started one
//! ([`Trigger`]), where it is ([`ExecutionStatus`]) and why it failed
//! ([`FailureKind`]).
//!
//! Each is stored as its snake_case name in a text column, and decodes from
//! a row through `sqlx` (see [`text_column`]): a value the enum does not
//! know is a decode error naming the column's text, never a default. The
//! same names are the API's and the metrics' labels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sandbox::ErrorKind;

/// Declares an id: a string newtype stored as text and serialised as the
/// bare string. Ids the service makes are UUIDv7, so they sort by creation
/// time (the lists' cursors rely on it). An id that arrives from outside
/// (a URL path, a query's cursor) is taken as given: a malformed one names
/// no row, and the lookup answers "not found".
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new, time-ordered id.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant: the owner of scripts, executions, keys and limits.
    TenantId
);
id_type!(
    /// A script, unique across tenants (lookups still check the tenant).
    ScriptId
);
id_type!(
    /// One execution (one attempt of one run).
    ExecutionId
);

impl ExecutionId {
    /// The smallest id an execution created at `unix_ms` can have: every
    /// execution created before sorts below it (retention's cutoffs, the
    /// overview's window).
    pub fn lowest_at(unix_ms: i64) -> Self {
        let ms = u64::try_from(unix_ms).unwrap_or(0);
        Self(
            uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10])
                .into_uuid()
                .to_string(),
        )
    }
}

/// A name in a text column that the enum does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub text: String,
}

/// Stores an enum with `as_str` and `FromStr` as text, on any sqlx backend
/// whose strings are text: encodes `as_str()`, decodes through `FromStr`.
macro_rules! text_column {
    ($ty:ty) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<DB>>::decode(value)?;
                Ok(text.parse::<$ty>()?)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $ty
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<DB>>::encode(self.as_str(), buf)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Declares a text enum: its variants and their stored names, `as_str`,
/// `ALL`, `FromStr`, serde as the name, and the sqlx column impls.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored (and API) name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(text: &str) -> Result<Self, UnknownName> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, text: text.to_owned() }),
                }
            }
        }

        text_column!($name);
    };
}

named_enum!(
    /// What started a run.
    Trigger, "trigger" {
        /// `POST /api/scripts/{id}/run`, a retry through the API, or the dashboard.
        Manual = "manual",
        /// A cron occurrence, or one of its retries.
        Scheduled = "scheduled",
        /// A call to the script's webhook.
        Webhook = "webhook",
    }
);

named_enum!(
    /// Where an execution is. `queued` and `running` are open; the others
    /// are final, except that a `failed` scheduled run may be followed by a
    /// retry (a new `queued` row).
    ExecutionStatus, "execution status" {
        /// Accepted, waiting for a slot (or a retry waiting for `run_after`).
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        /// A scheduled run that failed after its last retry, or was cancelled.
        Dead = "dead",
    }
);

impl ExecutionStatus {
    /// Whether a run in this status may be retried through the API.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Failed | Self::Dead)
    }
}

named_enum!(
    /// Why a run failed: what the sandbox reports ([`ErrorKind`]), and what
    /// the service decides around it.
    FailureKind, "error kind" {
        CpuLimit = "cpu_limit",
        MemoryLimit = "memory_limit",
        Timeout = "timeout",
        OutputLimit = "output_limit",
        StackOverflow = "stack_overflow",
        JsError = "js_error",
        OutputError = "output_error",
        CompileError = "compile_error",
        /// The host failed (a bug, or resources exhausted); not the script.
        Internal = "internal",
        /// The node running it stopped sending heartbeats; another node
        /// closed the run.
        Abandoned = "abandoned",
        /// The node shut down before the run finished.
        Shutdown = "shutdown",
        /// The script was disabled or deleted before its retry ran.
        Cancelled = "cancelled",
        /// The tenant's fair share was full when the occurrence was due.
        TenantBusy = "tenant_busy",
    }
);

impl From<ErrorKind> for FailureKind {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::CpuLimit => Self::CpuLimit,
            ErrorKind::MemoryLimit => Self::MemoryLimit,
            ErrorKind::Timeout => Self::Timeout,
            ErrorKind::OutputLimit => Self::OutputLimit,
            ErrorKind::StackOverflow => Self::StackOverflow,
            ErrorKind::JsError => Self::JsError,
            ErrorKind::OutputError => Self::OutputError,
            ErrorKind::CompileError => Self::CompileError,
            ErrorKind::Internal => Self::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for &status in ExecutionStatus::ALL {
            assert_eq!(status.as_str().parse::<ExecutionStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::String(status.as_str().into())
            );
        }
        for &kind in FailureKind::ALL {
            assert_eq!(kind.as_str().parse::<FailureKind>(), Ok(kind));
        }
        for &trigger in Trigger::ALL {
            assert_eq!(trigger.as_str().parse::<Trigger>(), Ok(trigger));
        }
        let error = "Running".parse::<ExecutionStatus>().unwrap_err();
        assert_eq!(error.to_string(), "unknown execution status \"Running\"");
    }

    #[test]
    fn every_sandbox_error_kind_is_a_failure_kind_of_the_same_name() {
        use ErrorKind::*;
        for kind in [
            CpuLimit,
            MemoryLimit,
            Timeout,
            OutputLimit,
            StackOverflow,
            JsError,
            OutputError,
            CompileError,
            Internal,
        ] {
            assert_eq!(FailureKind::from(kind).as_str(), kind.as_str());
        }
    }
}
