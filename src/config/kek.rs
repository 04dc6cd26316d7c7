//! `[kek]`: which provider holds the KEK, parsed into that provider's own settings type.
//! Secrets are never config values: the HSM PIN comes from `kek.pkcs11.pin_file` (or the
//! dev data dir) or `SIGVAULT_KEK__PKCS11__PIN`.

use std::path::Path;

#[cfg(feature = "kek-pkcs11")]
use secrecy::SecretString;

use super::raw::{RawKek, RawKekProvider};
use super::{ConfigError, Mode, Secrets, invalid};
#[cfg(feature = "kek-pkcs11")]
use super::{DevPaths, raw::RawPkcs11};
use crate::kek::KekSettings;
#[cfg(feature = "kek-pkcs11")]
use crate::kek::pkcs11::Pkcs11Settings;

/// The token label `sigvault dev` uses when `kek.pkcs11.token_label` is not set.
pub const DEV_TOKEN_LABEL: &str = "sigvault-dev";

/// The providers this build was compiled with (each behind its `kek-*` feature).
const PROVIDERS: &[&str] = &[
    #[cfg(feature = "kek-pkcs11")]
    "pkcs11",
    #[cfg(feature = "kek-aws-kms")]
    "aws-kms",
];

/// `[kek]`: the provider (`pkcs11` when unset) and its section.
pub(super) fn kek_settings(
    mode: Mode,
    raw: RawKek,
    data_dir: &Path,
    pin_env: Option<String>,
    secrets: Secrets,
) -> Result<KekSettings, ConfigError> {
    let raw = RawKekProvider {
        provider: raw.provider,
        pkcs11: raw.pkcs11,
        aws_kms: raw.aws_kms,
    };
    provider_settings(mode, raw, data_dir, pin_env, secrets)
}

/// `[kek.previous]`: the provider a migration moves records away from, opened to read them
/// only. Every value is explicit (no dev defaults, no PIN from the environment: that one is
/// `[kek]`'s); an error names the section.
pub(super) fn previous_settings(
    raw: Option<RawKekProvider>,
    data_dir: &Path,
    secrets: Secrets,
) -> Result<Option<KekSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    provider_settings(Mode::Serve, raw, data_dir, None, secrets)
        .map(Some)
        .map_err(|e| invalid("kek.previous", format!("{e} (in the [kek.previous] section)")))
}

fn provider_settings(
    mode: Mode,
    raw: RawKekProvider,
    data_dir: &Path,
    pin_env: Option<String>,
    secrets: Secrets,
) -> Result<KekSettings, ConfigError> {
    let provider = raw.provider.unwrap_or_else(|| "pkcs11".into());
    match provider.as_str() {
        #[cfg(feature = "kek-pkcs11")]
        "pkcs11" => Ok(KekSettings::Pkcs11(pkcs11_settings(
            mode,
            raw.pkcs11.unwrap_or_default(),
            data_dir,
            pin_env,
            secrets,
        )?)),
        #[cfg(feature = "kek-aws-kms")]
        "aws-kms" => Ok(KekSettings::AwsKms(aws_kms_settings(raw.aws_kms.unwrap_or_default())?)),
        _ => {
            // Only read by the provider sections this build has.
            let _ = (mode, raw.pkcs11, raw.aws_kms, data_dir, pin_env, secrets);
            Err(invalid(
                "kek.provider",
                format!(
                    "unknown provider `{provider}` (this build supports: {})",
                    PROVIDERS.join(", ")
                ),
            ))
        }
    }
}

/// `kek.rewrap_rate`: records a second the rewrap job moves, 1–100000.
pub(super) fn rewrap_rate(raw: Option<u32>) -> Result<u32, ConfigError> {
    let rate = raw.unwrap_or(crate::rewrap::DEFAULT_RATE);
    if !(1..=100_000).contains(&rate) {
        return Err(invalid(
            "kek.rewrap_rate",
            "must be between 1 and 100000 (records a second)",
        ));
    }
    Ok(rate)
}

/// `[kek.pkcs11]`; `sigvault dev` fills what is missing from its data dir and SoftHSM2.
#[cfg(feature = "kek-pkcs11")]
fn pkcs11_settings(
    mode: Mode,
    p: RawPkcs11,
    data_dir: &Path,
    pin_env: Option<String>,
    secrets: Secrets,
) -> Result<Pkcs11Settings, ConfigError> {
    let module = match (p.module, mode) {
        (Some(module), _) => module,
        (None, Mode::Dev) => crate::kek::pkcs11::softhsm::installed_module().ok_or_else(|| {
            invalid(
                "kek.pkcs11.module",
                "SoftHSM2 is not installed (no libsofthsm2.so found); run softhsm/install.sh",
            )
        })?,
        (None, Mode::Serve) => return Err(invalid("kek.pkcs11.module", "required: the path of the PKCS#11 module")),
    };
    let token_label = match (p.token_label, mode) {
        (Some(label), _) => label,
        (None, Mode::Dev) => DEV_TOKEN_LABEL.to_owned(),
        (None, Mode::Serve) => {
            return Err(invalid(
                "kek.pkcs11.token_label",
                "required: the label of the HSM token",
            ));
        }
    };
    if token_label.is_empty() || token_label.len() > 32 {
        return Err(invalid(
            "kek.pkcs11.token_label",
            "must be 1 to 32 bytes (the PKCS#11 label field)",
        ));
    }
    let read = |path: &Path| match secrets {
        Secrets::Read => read_pin(path),
        Secrets::Skip => Ok(String::new()),
    };
    let pin = match (pin_env, p.pin_file, mode) {
        (Some(pin), _, _) => pin,
        (None, Some(file), _) => read(&file)?,
        (None, None, Mode::Dev) => read(&DevPaths::new(data_dir).pin_file)?,
        (None, None, Mode::Serve) => {
            return Err(invalid(
                "kek.pkcs11.pin_file",
                "required (or set SIGVAULT_KEK__PKCS11__PIN): the HSM user PIN",
            ));
        }
    };
    let sessions = p.sessions.unwrap_or(4);
    if !(1..=64).contains(&sessions) {
        return Err(invalid("kek.pkcs11.sessions", "must be between 1 and 64"));
    }
    Ok(Pkcs11Settings {
        module,
        token_label,
        pin: SecretString::from(pin),
        sessions: sessions as usize,
        call_timeout: call_timeout(p.call_timeout.as_deref())?,
    })
}

/// `kek.pkcs11.call_timeout`: 100ms to 10m. The longest a request waits for the HSM before it
/// is answered 503 `KEK_UNAVAILABLE`; below 100 ms a busy but healthy HSM would look down.
#[cfg(feature = "kek-pkcs11")]
fn call_timeout(text: Option<&str>) -> Result<std::time::Duration, ConfigError> {
    use std::time::Duration;
    const KEY: &str = "kek.pkcs11.call_timeout";
    let timeout = super::sections::millis(KEY, text, crate::kek::pkcs11::DEFAULT_CALL_TIMEOUT)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&timeout) {
        return Err(invalid(KEY, "must be between 100ms and 10m"));
    }
    Ok(timeout)
}

#[cfg(feature = "kek-pkcs11")]
fn read_pin(path: &Path) -> Result<String, ConfigError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| invalid("kek.pkcs11.pin_file", format!("cannot read {}: {e}", path.display())))?,
    );
    let pin = text.trim_end_matches(['\n', '\r']).to_owned();
    if pin.is_empty() {
        return Err(invalid("kek.pkcs11.pin_file", format!("{} is empty", path.display())));
    }
    Ok(pin)
}

/// `[kek.aws_kms]`. Credentials are not settings: the AWS SDK's standard chain finds them
/// (environment, profile, web identity, ECS or EC2 role).
#[cfg(feature = "kek-aws-kms")]
fn aws_kms_settings(raw: super::raw::RawAwsKms) -> Result<crate::kek::aws_kms::AwsKmsSettings, ConfigError> {
    use std::time::Duration;

    use crate::kek::aws_kms::{AwsKmsSettings, DEFAULT_CALL_TIMEOUT, DEFAULT_MAX_CONCURRENCY};

    let key_id = raw
        .key_id
        .ok_or_else(|| invalid("kek.aws_kms.key_id", "required: the key's ARN, id or alias (alias/…)"))?;
    // KMS's own limit on a KeyId; printable ASCII only (ARNs, ids and aliases are).
    if key_id.is_empty() || key_id.len() > 2048 || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "kek.aws_kms.key_id",
            "must be 1 to 2048 printable ASCII characters: a key ARN, key id, alias or alias ARN",
        ));
    }
    let region = raw
        .region
        .ok_or_else(|| invalid("kek.aws_kms.region", "required: the key's AWS region (e.g. eu-west-1)"))?;
    if region.is_empty() || region.len() > 64 || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid(
            "kek.aws_kms.region",
            "must be an AWS region name such as eu-west-1",
        ));
    }
    if let Some(url) = &raw.endpoint_url {
        let ok = (url.starts_with("https://") || url.starts_with("http://"))
            && url.len() <= 2048
            && url.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(invalid(
                "kek.aws_kms.endpoint_url",
                "must be an http:// or https:// URL of a KMS-compatible endpoint",
            ));
        }
    }
    const TIMEOUT: &str = "kek.aws_kms.call_timeout";
    let call_timeout = super::sections::millis(TIMEOUT, raw.call_timeout.as_deref(), DEFAULT_CALL_TIMEOUT)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&call_timeout) {
        return Err(invalid(TIMEOUT, "must be between 100ms and 10m"));
    }
    let max_concurrency = raw.max_concurrency.map_or(DEFAULT_MAX_CONCURRENCY, |n| n as usize);
    if !(1..=1024).contains(&max_concurrency) {
        return Err(invalid("kek.aws_kms.max_concurrency", "must be between 1 and 1024"));
    }
    Ok(AwsKmsSettings {
        key_id,
        region,
        endpoint_url: raw.endpoint_url,
        call_timeout,
        max_concurrency,
    })
}
