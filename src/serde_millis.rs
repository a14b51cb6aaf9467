//! `#[serde(with = "crate::serde_millis")]` (and `serde_millis::option` for an
//! `Option<Duration>`) on a configured duration (feature `serde`): whole milliseconds as an
//! unsigned integer, as Kafka's `*.ms` settings and `topics.meta` keep them, so that a
//! configuration file reads `"segment_ms": 604800000` rather than serde's `{"secs", "nanos"}`.
//!
//! Both directions refuse what a configuration could not hold: reading, more than `i64::MAX`
//! milliseconds (the bound every configuration validates, [`MAX_DURATION`]); writing, that too
//! and a sub-millisecond part, which the file could not carry, so that what is written always
//! reads back equal instead of silently losing its microseconds.

use std::time::Duration;

use serde::{de, ser, Deserialize, Deserializer, Serialize, Serializer};

use crate::config::MAX_DURATION;

/// A duration that (de)serializes as whole milliseconds.
struct Millis(Duration);

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        if d > MAX_DURATION {
            return Err(ser::Error::custom(format_args!(
                "the duration {d:?} is more than i64::MAX milliseconds, the longest a \
                 configuration holds"
            )));
        }
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(ser::Error::custom(format_args!(
                "the duration {d:?} is not a whole number of milliseconds, which is how a \
                 configuration stores it"
            )));
        }
        // At most i64::MAX, checked above, so the narrowing is exact.
        s.serialize_u64(d.as_millis() as u64)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ms = u64::deserialize(d)?;
        if ms > MAX_DURATION.as_millis() as u64 {
            return Err(de::Error::invalid_value(
                de::Unexpected::Unsigned(ms),
                &"a duration in milliseconds of at most i64::MAX (9223372036854775807)",
            ));
        }
        Ok(Millis(Duration::from_millis(ms)))
    }
}

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    Millis(*d).serialize(s)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Millis::deserialize(d).map(|m| m.0)
}

/// The same for an `Option<Duration>`: `None` is `null` (and, under `#[serde(default)]`, a
/// field left out).
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(Millis).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<Millis>::deserialize(d).map(|m| m.map(|m| m.0))
    }
}
