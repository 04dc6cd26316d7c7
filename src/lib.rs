//! sigvault: a vault for API signing secrets.
//!
//! HMAC signing keys are generated or imported here, stored only as AES-256-GCM ciphertext
//! under per-version data keys (DEKs) that are themselves wrapped by a key-encryption key
//! (KEK) held in a PKCS#11 HSM. Services ask sigvault over HTTP to sign and verify; the
//! secret never leaves the process except to the caller who imported it.
//!
//! Module map (see `docs/ARCHITECTURE.md` for the design):
//! - [`config`]: TOML + `SIGVAULT_*` environment → each module's own settings, gathered in
//!   [`config::Settings`]; used only by `main`, [`startup`], [`dev`] and [`admin`].
//! - [`kek`]: KEK providers behind one interface ([`kek::open`] builds them; PKCS#11 behind
//!   the default `kek-pkcs11` feature) and the [`kek::Keyring`] that seals and opens records.
//! - [`envelope`]: pure AES-256-GCM sealing with the record AAD; no I/O.
//! - [`model`]: the vocabulary the store and the domain share (typed records' enums, the
//!   audit event's data); no I/O.
//! - [`store`]: persistence of metadata and sealed records, one interface per concern
//!   (SQLite and PostgreSQL behind the default `store-sqlite` and `store-postgres` features);
//!   `health` probes it for the API.
//! - [`keys`]: signing keys, versions, rotation, the unwrapped-secret cache.
//! - [`apikeys`]: bearer API keys (format and checksum, keyed hashes, the verify pipeline,
//!   rate limits).
//! - [`sigv4`]: pure AWS Signature V4 verification (canonical request, string to sign,
//!   signing key, time window); no I/O, no key lookup.
//! - [`credentials`]: SigV4 access keys (sealed secrets, activity, verification with
//!   cached derived keys) over the pure [`sigv4`] canonicalisation and signature checks.
//! - [`fingerprint`]: the caller fingerprints credentials and API keys are used from (what
//!   is known, new or blocked on this node), shared by both.
//! - [`integrity`]: the KEK-sealed key that tags the store's protected rows (a row a
//!   database writer edited is refused), and the report of refused rows.
//! - [`ratelimit`]: where the API-key and failed-authentication limits count: this node's
//!   memory, or Redis shared by every node (behind the default `ratelimit-redis` feature).
//! - [`auth`]: who is calling (the bootstrap root token, client certificates) and the
//!   keyed-hash pepper.
//! - [`api`]: warp filters and handlers; [`startup`] wires everything and serves HTTP.
//! - [`tls`]: the server's rustls configuration and the client-certificate principal.
//! - [`policy`], [`audit`], [`report`]: Cedar decisions, the MAC-chained trail, the
//!   compliance report.
//!
//! The library never panics on input: `unwrap`, `expect`, `panic!` and slice indexing are
//! denied outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
#![forbid(unsafe_op_in_unsafe_fn)]
// What nothing outside the crate can name is `pub(crate)`, so `pub` means "used by the
// binary or the black-box tests".
#![warn(unreachable_pub)]
// A build without every backend (`--no-default-features`) only proves the seams compile; what
// only a backend reads is dead there.
#![cfg_attr(not(all(feature = "kek-pkcs11", feature = "store-sqlite")), allow(dead_code))]

pub mod admin;
pub mod api;
pub mod apikeys;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod datadir;
#[cfg(feature = "kek-pkcs11")]
pub mod dev;
pub mod envelope;
pub mod error;
pub mod fingerprint;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod hardening;
pub(crate) mod health;
pub mod integrity;
pub mod kek;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod ratelimit;
pub mod report;
pub mod rewrap;
pub(crate) mod secret;
pub mod sigv4;
pub mod startup;
pub mod store;
pub mod system_secret;
pub mod timefmt;
pub mod tls;

#[cfg(test)]
mod envelope_vectors;
#[cfg(test)]
mod testvectors;

/// A boxed, sendable future: the return type of the async methods of the provider and
/// store interfaces, which must be usable as trait objects.
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
