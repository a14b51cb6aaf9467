//! Where the tests, examples and command-line runs find the Kafka broker: [`BOOTSTRAP_ENV`],
//! checked to be a `host:port` list, and an error that says how to start one when it is not.

use std::ffi::OsString;

/// The environment variable holding the Kafka bootstrap address the tests (and later the relay's
/// examples) connect to, as librdkafka's `bootstrap.servers` takes it: `host:port[,host:port]`.
pub const BOOTSTRAP_ENV: &str = "ANNALS_KAFKA_BOOTSTRAP";

/// How to get a broker, as every [`BrokerMissing`] message ends.
const HOW_TO_START: &str = "start one from the repository root with \
    `bash kafka/scripts/broker start` (needs Java 17+ and Maven; it prints \
    bootstrap=127.0.0.1:<port>), then `export ANNALS_KAFKA_BOOTSTRAP=127.0.0.1:<port>` \
    (or `export ANNALS_KAFKA_BOOTSTRAP=$(cat target/kafka-broker/run/bootstrap)`); \
    `bash kafka/scripts/broker stop` stops it";

/// No usable broker address in [`BOOTSTRAP_ENV`]. The message says how to start a broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerMissing {
    /// The variable is not set (or set to nothing).
    #[error("{BOOTSTRAP_ENV} is not set: these tests need a real Kafka broker; {HOW_TO_START}")]
    Unset,
    /// The variable is set to something that is not a `host:port` list.
    #[error("{BOOTSTRAP_ENV}={value:?} is not a Kafka bootstrap address ({why}); it takes host:port[,host:port...]; {HOW_TO_START}")]
    Malformed {
        /// The variable's value, lossily decoded if it was not UTF-8.
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

/// The Kafka bootstrap address in [`BOOTSTRAP_ENV`], checked to be a `host:port` list; when it
/// is unset or unusable, an error whose message says how to start a broker with
/// `kafka/scripts/broker`. Surrounding whitespace is ignored.
pub fn broker_from_env() -> Result<String, BrokerMissing> {
    bootstrap_from(std::env::var_os(BOOTSTRAP_ENV))
}

fn bootstrap_from(value: Option<OsString>) -> Result<String, BrokerMissing> {
    let raw = value.ok_or(BrokerMissing::Unset)?;
    let malformed = |why: String| BrokerMissing::Malformed {
        value: raw.to_string_lossy().into_owned(),
        why,
    };
    let text = raw.to_str().ok_or_else(|| malformed("not UTF-8".into()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(BrokerMissing::Unset);
    }
    for server in text.split(',') {
        let server = server.trim();
        // The port follows the last ':', so a bracketed IPv6 host keeps its own colons.
        let Some((host, port)) = server.rsplit_once(':') else {
            return Err(malformed(format!("{server:?} has no :port")));
        };
        if host.is_empty() {
            return Err(malformed(format!("{server:?} has no host")));
        }
        // A name, an IPv4 address or a bracketed IPv6 one; this also catches a pasted
        // `bootstrap=127.0.0.1:<port>` line of the broker script.
        let host_char = |c: char| c.is_ascii_alphanumeric() || ".-_[]:".contains(c);
        if !host.chars().all(host_char) {
            return Err(malformed(format!("{host:?} is not a host name or address")));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(malformed(format!("{port:?} in {server:?} is not a port"))),
        }
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(s: &str) -> Result<String, BrokerMissing> {
        bootstrap_from(Some(OsString::from(s)))
    }

    #[test]
    fn unset_or_empty_says_how_to_start_a_broker() {
        for missing in [bootstrap_from(None), from(""), from("  ")] {
            let err = missing.unwrap_err();
            assert_eq!(err, BrokerMissing::Unset);
            let msg = err.to_string();
            assert!(
                msg.starts_with("ANNALS_KAFKA_BOOTSTRAP is not set"),
                "{msg}"
            );
            assert!(msg.contains("bash kafka/scripts/broker start"), "{msg}");
            assert!(msg.contains("export ANNALS_KAFKA_BOOTSTRAP="), "{msg}");
        }
    }

    #[test]
    fn host_port_lists_are_taken_as_given() {
        assert_eq!(from("127.0.0.1:9092").unwrap(), "127.0.0.1:9092");
        assert_eq!(from(" 127.0.0.1:9092\n").unwrap(), "127.0.0.1:9092");
        assert_eq!(from("a:1,b:2").unwrap(), "a:1,b:2");
        assert_eq!(from("[::1]:9092").unwrap(), "[::1]:9092");
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_reason() {
        for (value, why) in [
            ("127.0.0.1", "has no :port"),
            (":9092", "has no host"),
            ("localhost:x", "is not a port"),
            ("localhost:0", "is not a port"),
            ("localhost:70000", "is not a port"),
            ("a:1,", "has no :port"),
            ("127.0.0.1:", "is not a port"),
            ("bootstrap=127.0.0.1:9092", "is not a host name or address"),
            ("kafka://127.0.0.1:9092", "is not a host name or address"),
        ] {
            let msg = from(value).unwrap_err().to_string();
            assert!(msg.contains(why), "{value:?}: {msg}");
            assert!(msg.contains("bash kafka/scripts/broker start"), "{msg}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStringExt;
        let err = bootstrap_from(Some(OsString::from_vec(vec![0xff, b':', b'1']))).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
