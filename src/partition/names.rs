//! Topic names, the partition directory names derived from them, and which files in a
//! partition directory are annals' own (what the log may remove as a leftover).
//!
//! A topic name becomes a path component (`<topic>-<partition>`), so it is validated with Kafka's
//! own rule before it ever touches the file system: 1-249 characters from `[a-zA-Z0-9._-]`, and
//! not `.` or `..`. That rules out `/`, NUL, `\`, whitespace and anything non-ASCII by
//! construction.

use crate::error::{Error, Result};
use crate::meta::{BOUNDS_FILE, CHECKPOINT_FILE};

/// Kafka's limit (`Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Suffix of partition directories of a deleted topic awaiting removal.
pub(crate) const DELETE_SUFFIX: &str = "-delete";

/// Checks a topic name against Kafka's rule.
///
/// ```
/// use annals::validate_topic_name;
/// assert!(validate_topic_name("orders.v2_eu-1").is_ok());
/// for bad in ["", ".", "..", "a/b", "a\0b", "naïve", "with space"] {
///     assert!(validate_topic_name(bad).is_err(), "{bad:?}");
/// }
/// ```
pub fn validate_topic_name(name: &str) -> Result<()> {
    let fail = |reason| {
        Err(Error::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return fail("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return fail("'.' and '..' are not allowed");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return fail("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// `orders` + 3 → `orders-3`.
pub(crate) fn partition_dir_name(topic: &str, partition: u32) -> String {
    format!("{topic}-{partition}")
}

/// Splits `orders-3` into (`orders`, 3) if it has the shape of a partition directory.
pub(crate) fn parse_partition_dir_name(name: &str) -> Option<(&str, u32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    validate_topic_name(topic).ok()?;
    Some((topic, partition.parse().ok()?))
}

/// Whether `name` is a file annals writes inside a partition directory.
pub(crate) fn is_partition_file(name: &str) -> bool {
    let segment_file = crate::segment::SEGMENT_FILE_EXTENSIONS
        .iter()
        .any(|ext| crate::segment::parse_file_name(name, ext).is_some());
    segment_file
        || super::swap::is_swap_protocol_file(name)
        || [CHECKPOINT_FILE, BOUNDS_FILE]
            .iter()
            .any(|f| name == *f || name == format!("{f}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rule() {
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        assert!(validate_topic_name("...").is_ok()); // Kafka allows it; only . and .. are paths
        for bad in [
            "a/b", "/", "a\\b", "a\0", "\u{0}", "tab\t", "é", "a:b", "a*b",
        ] {
            assert!(
                matches!(
                    validate_topic_name(bad),
                    Err(Error::InvalidTopicName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn partition_dirs_round_trip() {
        for (t, p) in [("orders", 0u32), ("a-1", 12), ("x.y_z", 9999)] {
            let name = partition_dir_name(t, p);
            assert_eq!(parse_partition_dir_name(&name), Some((t, p)));
        }
        assert_eq!(parse_partition_dir_name("orders"), None);
        assert_eq!(parse_partition_dir_name("orders-"), None);
        assert_eq!(parse_partition_dir_name("orders-1.123-delete"), None);
    }
}
