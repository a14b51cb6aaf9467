//! [`Payload`]: what the bytes of a record's key, value and header values can be given as.

use std::borrow::Cow;

use bytes::Bytes;

/// The bytes of a record's key, value or header value, from what a caller holds.
///
/// Owned buffers (`Bytes`, `Vec<u8>`, `String`, `Box<[u8]>`) become the record's bytes without
/// a copy; borrowed data (`&[u8]`, `&str`, `&String`, `&Vec<u8>`, byte arrays) is copied, so a
/// record can be built from a request body or a `&String` key that does not live for
/// `'static`. For static data without a copy, pass `Bytes::from_static`.
///
/// ```
/// use annals::{Bytes, Record};
/// fn outbox_record(body: &[u8], id: &String) -> Record {
///     Record::new(body).key(id).header("type", "OrderPlaced")
/// }
/// let r = outbox_record(br#"{"total":12}"#, &"order-7".to_string());
/// assert_eq!(r.key.as_deref(), Some(&b"order-7"[..]));
/// let shared = Bytes::from_static(b"no copy");
/// assert_eq!(Record::new(shared.clone()).value, Some(shared));
/// ```
pub trait Payload {
    /// The bytes, copied only if borrowed.
    fn into_payload(self) -> Bytes;
}

impl Payload for Bytes {
    fn into_payload(self) -> Bytes {
        self
    }
}

impl Payload for &Bytes {
    /// A reference count, not a copy.
    fn into_payload(self) -> Bytes {
        self.clone()
    }
}

impl Payload for Vec<u8> {
    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}

impl Payload for String {
    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}

impl Payload for Box<[u8]> {
    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}

impl Payload for &[u8] {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl Payload for &str {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl Payload for &String {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl Payload for &Vec<u8> {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> Payload for [u8; N] {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(&self)
    }
}

impl<const N: usize> Payload for &[u8; N] {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl Payload for Cow<'_, [u8]> {
    fn into_payload(self) -> Bytes {
        match self {
            Cow::Borrowed(b) => b.into_payload(),
            Cow::Owned(v) => v.into_payload(),
        }
    }
}

impl Payload for Cow<'_, str> {
    fn into_payload(self) -> Bytes {
        match self {
            Cow::Borrowed(s) => s.into_payload(),
            Cow::Owned(s) => s.into_payload(),
        }
    }
}
