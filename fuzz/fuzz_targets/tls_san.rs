//! The caller name of a client certificate (`tls::san`): its first URI subjectAltName, else
//! its first DNS name. It runs after webpki validated the chain, but x509-cert decodes the
//! whole certificate, so every DER byte is input.
//!
//! Input: DER, read both as a whole certificate and as the `GeneralNames` value of a
//! subjectAltName extension (reached far more often from random bytes). Properties: a name
//! is 1 to 2048 visible ASCII bytes, and it is read, never made up: it occurs in the input
//! (a DNS name in any case: it is lower-cased).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigvault::fuzzing::{san_principal_name, san_principal_of_general_names};

fn occurs_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

fuzz_target!(|data: &[u8]| {
    for name in [san_principal_name(data), san_principal_of_general_names(data)]
        .into_iter()
        .flatten()
    {
        assert!((1..=2048).contains(&name.len()), "{}", name.len());
        assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
        assert!(occurs_ignoring_case(data, name.as_bytes()), "{name:?}");
    }
});
