//! Test fixtures: a fresh SoftHSM2 token per test, in the checkout's shared test token
//! directory (`SOFTHSM2_CONF`, set by `.cargo/config.toml`), and the faults tests inject.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use cryptoki::session::UserType;
use secrecy::SecretString;

use super::objects::create_kek;
use super::token::{context, find_token};
use super::{Pkcs11Settings, provision_token};

pub(crate) fn module() -> PathBuf {
    std::env::var_os("SIGVAULT_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

pub(crate) fn pin(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

/// Creates a new token with a unique label and returns settings to open it.
pub(crate) fn fresh_token(tag: &str) -> Pkcs11Settings {
    static N: AtomicU32 = AtomicU32::new(0);
    let conf = PathBuf::from(std::env::var_os("SOFTHSM2_CONF").expect("SOFTHSM2_CONF is set by .cargo/config.toml"));
    let token_dir = conf.parent().unwrap().join("tokens");
    super::softhsm::write_conf(&conf, &token_dir).unwrap_or(());
    let label = format!("u{}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), tag);
    let settings = Pkcs11Settings {
        module: module(),
        token_label: label.chars().take(32).collect(),
        pin: pin("user-pin-1234"),
        sessions: 2,
        call_timeout: super::DEFAULT_CALL_TIMEOUT,
    };
    provision_token(&settings, &pin("so-pin-1234")).unwrap();
    settings
}

/// Generates KEK `version` on the token, as a rotation would; providers opened afterwards
/// make it current.
pub(crate) fn add_kek_version(settings: &Pkcs11Settings, version: u32) {
    let ctx = context(&settings.module).unwrap();
    let slot = find_token(&ctx, &settings.token_label).unwrap().unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&settings.pin)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    create_kek(&session, version).unwrap();
}

/// Logs the token out, as an HSM reset does: login state belongs to the token, so every
/// pooled session of a provider on it loses its login and its session copies of the KEK.
/// A provider logs in again by itself afterwards.
pub(crate) fn log_the_token_out(settings: &Pkcs11Settings) {
    let ctx = context(&settings.module).unwrap();
    let slot = find_token(&ctx, &settings.token_label).unwrap().unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    session.logout().unwrap();
}

/// Makes the token stop answering a provider for good: its user PIN changes, then it is
/// logged out (as [`log_the_token_out`]), so the provider's sessions lose their login and
/// logging in again is refused.
pub(crate) fn take_the_token_away(settings: &Pkcs11Settings) {
    let ctx = context(&settings.module).unwrap();
    let slot = find_token(&ctx, &settings.token_label).unwrap().unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&settings.pin)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    session
        .set_pin(&settings.pin, &pin("a-pin-the-provider-does-not-know"))
        .unwrap();
    session.logout().unwrap();
}
