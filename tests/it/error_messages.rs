//! Error messages read as one sentence: no runs of spaces left over from wrapping the source.

use annals::Error;

#[test]
fn stale_generation_message_has_no_run_of_spaces() {
    let e = Error::StaleGeneration {
        group: "billing".into(),
        generation: 1,
        current: 2,
    };
    let text = e.to_string();
    assert!(!text.contains("  "), "{text:?}");
    assert!(text.contains("the group is at generation 2"), "{text:?}");
}
