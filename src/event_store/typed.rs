//! Typed events (feature `serde`): application types in and out of the store as JSON, with
//! their schema version stored beside them and an upcasting hook for old versions.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::event::{NewEvent, RecordedEvent};
use super::{AppendResult, EventStore, ExpectedVersion};
use crate::error::{Error, Result};

/// An application's event type, stored as JSON.
///
/// ```
/// # fn main() -> annals::Result<()> {
/// use annals::{DomainEvent, EventStore, EventStoreConfig, ExpectedVersion, Log};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum Account {
///     Opened { owner: String },
///     // Version 2 renamed `amount` to `cents`.
///     Deposited { cents: u64 },
/// }
///
/// impl DomainEvent for Account {
///     const SCHEMA_VERSION: u32 = 2;
///     fn event_type(&self) -> &'static str {
///         match self {
///             Account::Opened { .. } => "Opened",
///             Account::Deposited { .. } => "Deposited",
///         }
///     }
///     fn upcast(event_type: &str, version: u32, mut json: serde_json::Value)
///         -> Result<serde_json::Value, String> {
///         if event_type == "Deposited" && version < 2 {
///             let body = &mut json["Deposited"];
///             body["cents"] = body["amount"].take();
///         }
///         Ok(json)
///     }
/// }
///
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path())?;
/// let store = EventStore::open(&log, "bank", EventStoreConfig::default())?;
/// store.append_typed("acc-1", ExpectedVersion::NoStream,
///     &[Account::Opened { owner: "ann".into() }, Account::Deposited { cents: 5 }])?;
/// let events = store.read_stream("acc-1", 0, 10)?;
/// assert_eq!(events[1].event_type, "Deposited");
/// assert_eq!(events[1].decode::<Account>()?, Account::Deposited { cents: 5 });
/// # Ok(()) }
/// ```
pub trait DomainEvent: Serialize + DeserializeOwned {
    /// The schema version written with new events. Default 1.
    const SCHEMA_VERSION: u32 = 1;

    /// The event type stored with the event (and shown by tools), such as the variant's name.
    fn event_type(&self) -> &'static str;

    /// Turns the JSON of an event stored under an older schema `version` (`0`: stored
    /// without a version, by untyped code) into the current schema's. Default: unchanged.
    fn upcast(
        event_type: &str,
        version: u32,
        json: serde_json::Value,
    ) -> std::result::Result<serde_json::Value, String> {
        let _ = (event_type, version);
        Ok(json)
    }
}

impl NewEvent {
    /// `event` as JSON, with its type and [`DomainEvent::SCHEMA_VERSION`].
    ///
    /// Errors: [`Error::InvalidArgument`] if serde cannot encode it.
    pub fn typed<T: DomainEvent>(event: &T) -> Result<NewEvent> {
        let data = serde_json::to_vec(event).map_err(|e| {
            Error::InvalidArgument(format!(
                "could not encode a {} event as JSON: {e}",
                event.event_type()
            ))
        })?;
        let mut e = NewEvent::new(event.event_type(), data);
        e.schema_version = Some(T::SCHEMA_VERSION);
        Ok(e)
    }
}

impl RecordedEvent {
    /// Decodes the event's JSON data as `T`, upcasting it first if it was stored under an
    /// older schema version.
    ///
    /// Errors: [`Error::EventDecode`] naming the stream and version.
    pub fn decode<T: DomainEvent>(&self) -> Result<T> {
        let fail = |reason: String| Error::EventDecode {
            stream: self.stream.clone(),
            version: self.version,
            reason,
        };
        let stored = self.schema_version.unwrap_or(0);
        if stored > T::SCHEMA_VERSION {
            return Err(fail(format!(
                "stored under schema version {stored}, newer than this program's {}",
                T::SCHEMA_VERSION
            )));
        }
        if stored == T::SCHEMA_VERSION {
            return serde_json::from_slice(&self.data).map_err(|e| fail(e.to_string()));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&self.data).map_err(|e| fail(e.to_string()))?;
        let json = T::upcast(&self.event_type, stored, json).map_err(fail)?;
        serde_json::from_value(json).map_err(|e| fail(e.to_string()))
    }
}

impl EventStore {
    /// [`append`](Self::append) of typed events, each stored as JSON with its type and schema
    /// version.
    ///
    /// Errors: as `append`, and [`Error::InvalidArgument`] for an event serde cannot encode.
    pub fn append_typed<T: DomainEvent>(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[T],
    ) -> Result<AppendResult> {
        let events: Vec<NewEvent> = events.iter().map(NewEvent::typed).collect::<Result<_>>()?;
        self.append(stream, expected, &events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_store::EventPosition;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Renamed {
        cents: u64,
    }

    impl DomainEvent for Renamed {
        const SCHEMA_VERSION: u32 = 2;
        fn event_type(&self) -> &'static str {
            "Renamed"
        }
        fn upcast(
            _: &str,
            version: u32,
            mut json: serde_json::Value,
        ) -> std::result::Result<serde_json::Value, String> {
            match version {
                1 => {
                    json["cents"] = json["amount"].take();
                    Ok(json)
                }
                v => Err(format!("no upcaster from version {v}")),
            }
        }
    }

    fn recorded(data: &str, schema_version: Option<u32>) -> RecordedEvent {
        RecordedEvent {
            stream: "s".into(),
            version: 3,
            event_type: "Renamed".into(),
            data: bytes::Bytes::copy_from_slice(data.as_bytes()),
            metadata: bytes::Bytes::new(),
            id: uuid::Uuid::nil(),
            timestamp: 0,
            position: EventPosition {
                partition: 0,
                offset: 0,
            },
            schema_version,
        }
    }

    #[test]
    fn current_old_newer_and_broken_events() {
        let current = recorded(r#"{"cents":5}"#, Some(2));
        assert_eq!(current.decode::<Renamed>().unwrap(), Renamed { cents: 5 });
        let old = recorded(r#"{"amount":7}"#, Some(1));
        assert_eq!(old.decode::<Renamed>().unwrap(), Renamed { cents: 7 });
        let untyped = recorded(r#"{"amount":7}"#, None);
        let err = untyped.decode::<Renamed>().unwrap_err().to_string();
        assert!(err.contains("no upcaster from version 0"), "{err}");
        let newer = recorded(r#"{"cents":5}"#, Some(3));
        let err = newer.decode::<Renamed>().unwrap_err().to_string();
        assert!(err.contains("newer than this program's 2"), "{err}");
        let broken = recorded("{not json", Some(2));
        assert!(matches!(
            broken.decode::<Renamed>(),
            Err(Error::EventDecode { version: 3, .. })
        ));
    }

    #[test]
    fn typed_events_carry_their_type_and_schema() {
        let e = NewEvent::typed(&Renamed { cents: 1 }).unwrap();
        assert_eq!(e.event_type(), "Renamed");
        assert_eq!(e.schema_version, Some(2));
        assert_eq!(&e.data[..], br#"{"cents":1}"#);
    }
}
