//! Lines of the audit event file (`{"event":{…},"mac":"…"}`) and of the anchor file
//! (`node seq mac-hex`), as recovery, verification and the store read them.
//!
//! Input: one line, without its newline. Properties: the sequence number the store reads
//! from a line's first bytes is the one the parser reads; a parsed event written again is
//! serde's encoding of it, holds the members the store's row filter looks for, and parses
//! back to the same event and MAC; a parsed anchor written again parses back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigvault::audit::sink::anchor_line;
use sigvault::fuzzing::{audit_line_seq, audit_parse_anchor, audit_parse_line, audit_string_member};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let seq = audit_line_seq(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some((node, head)) = audit_parse_anchor(text) {
        let line = anchor_line(&node, &head);
        let again = audit_parse_anchor(line.strip_suffix('\n').expect("a line ends in a newline"));
        assert_eq!(again, Some((node, head)), "{line:?}");
    }
    let Ok((event, mac)) = audit_parse_line(text) else {
        return;
    };
    if let Some(seq) = seq {
        assert_eq!(seq, event.seq, "the store and the parser read the same number");
    }
    assert_eq!(event.canonical(), serde_json::to_vec(&event).expect("serialises"));
    let line = event.line(&mac);
    assert_eq!(audit_line_seq(&line), Some(event.seq));
    for (name, value) in [
        ("principal", &event.principal),
        ("action", &event.action),
        ("resource", &event.resource),
    ] {
        assert!(contains(&line, &audit_string_member(name, value)), "{name}");
    }
    let written = std::str::from_utf8(&line).expect("UTF-8");
    let written = written.strip_suffix('\n').expect("a line ends in a newline");
    let (again, again_mac) = audit_parse_line(written).expect("a written line parses");
    assert_eq!(again, event);
    assert_eq!(again_mac, mac);
});
