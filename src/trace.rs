//! The crate's diagnostics: `debug!`, `info!`, `warn!`, `error!` and `enter_span!`.
//!
//! With feature `tracing` they are `tracing`'s macros (`enter_span!` enters a span until the end
//! of the enclosing block). Without it the crate has no `tracing` dependency, and each expands to
//! a block behind `if false`: never run, so no argument is evaluated and nothing is formatted,
//! but every argument is still type-checked and counts as used, so a value computed only to be
//! logged raises no "unused" warning in a build without the feature.
//!
//! Call sites use the subset of `tracing`'s syntax that `consume_fields!` understands: fields
//! `name = value`, `name = %value`, `name = ?value`, `%name`, `?name` or `name`, then an
//! optional message literal with its format arguments. The levels (see `docs/ARCHITECTURE.md`,
//! "Diagnostics"): `error` for what loses durability or stops work, `warn` for what lost data or
//! refused a stale producer, `info` for what changed the log's shape, `debug` for routine steps.
//! Nothing is logged per record or per batch.

#[cfg(feature = "tracing")]
macro_rules! debug {
    ($($t:tt)+) => { ::tracing::debug!($($t)+) };
}

#[cfg(feature = "tracing")]
macro_rules! info {
    ($($t:tt)+) => { ::tracing::info!($($t)+) };
}

#[cfg(feature = "tracing")]
macro_rules! warn {
    ($($t:tt)+) => { ::tracing::warn!($($t)+) };
}

#[cfg(feature = "tracing")]
macro_rules! error {
    ($($t:tt)+) => { ::tracing::error!($($t)+) };
}

/// `enter_span!(INFO, "name", fields...)`: enters a span of that `tracing::Level` for the rest
/// of the enclosing block.
#[cfg(feature = "tracing")]
macro_rules! enter_span {
    ($level:ident, $name:literal $(, $($f:tt)*)?) => {
        let _span = ::tracing::span!(::tracing::Level::$level, $name $(, $($f)*)?).entered();
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! debug {
    ($($t:tt)+) => { if false { consume_fields!($($t)+); } };
}

#[cfg(not(feature = "tracing"))]
macro_rules! info {
    ($($t:tt)+) => { if false { consume_fields!($($t)+); } };
}

#[cfg(not(feature = "tracing"))]
macro_rules! warn {
    ($($t:tt)+) => { if false { consume_fields!($($t)+); } };
}

#[cfg(not(feature = "tracing"))]
macro_rules! error {
    ($($t:tt)+) => { if false { consume_fields!($($t)+); } };
}

#[cfg(not(feature = "tracing"))]
macro_rules! enter_span {
    ($level:ident, $name:literal $(, $($f:tt)*)?) => {
        if false { consume_fields!($($($f)*)?); }
    };
}

/// Borrows each field value and formats the message into nothing: code that type-checks the
/// arguments of a disabled diagnostic and is then never run (see the module docs).
#[cfg(not(feature = "tracing"))]
macro_rules! consume_fields {
    () => {};
    ($k:ident = % $v:expr $(, $($rest:tt)*)?) => {
        let _ = &$v;
        consume_fields!($($($rest)*)?);
    };
    ($k:ident = ? $v:expr $(, $($rest:tt)*)?) => {
        let _ = &$v;
        consume_fields!($($($rest)*)?);
    };
    ($k:ident = $v:expr $(, $($rest:tt)*)?) => {
        let _ = &$v;
        consume_fields!($($($rest)*)?);
    };
    (% $k:ident $(, $($rest:tt)*)?) => {
        let _ = &$k;
        consume_fields!($($($rest)*)?);
    };
    (? $k:ident $(, $($rest:tt)*)?) => {
        let _ = &$k;
        consume_fields!($($($rest)*)?);
    };
    ($k:ident $(, $($rest:tt)*)?) => {
        let _ = &$k;
        consume_fields!($($($rest)*)?);
    };
    ($msg:literal $(, $arg:expr)* $(,)?) => {
        let _ = format_args!($msg $(, $arg)*);
    };
}

/// Shows a list as its items' `Display`s separated by commas (`orders-0, orders-1` for
/// partitions), for a field: shorter to read than `Debug` of the structs.
pub(crate) struct Listed<I>(pub I);

impl<I> std::fmt::Display for Listed<I>
where
    I: IntoIterator + Clone,
    I::Item: std::fmt::Display,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, item) in self.0.clone().into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}
