//! The `--route SOURCE[:DESTINATION]` argument of `relay` and `mirror`: one topic read, one
//! written, the destination named like the source unless given.
//!
//! Neither annals nor Kafka topic names can hold a `:`, so one colon separates the two names
//! without any quoting. Whether each name is a valid topic name is left to annals-kafka's
//! configuration check, which names the rule broken.

/// One topic copied to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The topic read.
    pub source: String,
    /// The topic written.
    pub destination: String,
}

/// Parses `SOURCE` or `SOURCE:DESTINATION` (clap's value parser, so a bad route is a usage
/// error that quotes it).
pub fn parse(text: &str) -> Result<Route, String> {
    let mut parts = text.split(':');
    let source = parts.next().unwrap_or_default();
    let destination = parts.next();
    if parts.next().is_some() {
        return Err(
            "a route has at most one ':', between the topic read and the topic written".into(),
        );
    }
    if source.is_empty() {
        return Err("the topic to read, before any ':', is empty".into());
    }
    let destination = match destination {
        None => source,
        Some("") => {
            return Err(
                "the topic to write, after ':', is empty (leave out the ':' to keep the name)"
                    .into(),
            )
        }
        Some(d) => d,
    };
    Ok(Route {
        source: source.to_string(),
        destination: destination.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(source: &str, destination: &str) -> Route {
        Route {
            source: source.into(),
            destination: destination.into(),
        }
    }

    #[test]
    fn the_destination_defaults_to_the_source() {
        assert_eq!(parse("orders"), Ok(route("orders", "orders")));
        assert_eq!(parse("orders:orders-v2"), Ok(route("orders", "orders-v2")));
    }

    #[test]
    fn empty_parts_and_extra_colons_are_refused_with_the_reason() {
        for (text, why) in [
            ("", "topic to read, before any ':', is empty"),
            (":b", "topic to read, before any ':', is empty"),
            ("a:", "topic to write, after ':', is empty"),
            ("a:b:c", "at most one ':'"),
            ("a::", "at most one ':'"),
            ("::", "at most one ':'"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
