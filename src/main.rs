//! The `sigvault` command: parses arguments, then calls the library.

/// mimalloc instead of glibc's malloc: the request path allocates and frees many small
/// buffers on tokio's workers while the audit indexer frees them in batches on another
/// thread; glibc's arenas spent ≈ 15 % of a loaded server's CPU in malloc, free and
/// consolidation (bench/verify.sh under `perf record`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufWriter, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use secrecy::ExposeSecret;
use sigvault::admin::progress::{NoProgress, Progress, ProgressBar};
use sigvault::admin::{self, Location, OfflineVault, Verification};
use sigvault::client::commands;
use sigvault::client::output::Format;
use sigvault::config::{self, Mode, Overrides, Settings};
use sigvault::datadir::DataDirLock;
#[cfg(feature = "kek-pkcs11")]
use sigvault::datadir::StartGuard;
use sigvault::startup::{Application, chain};
use sigvault::store::AuditFilter;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Parser)]
#[command(
    name = "sigvault",
    version,
    about = "A vault for API signing secrets, backed by an HSM"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a complete single-node vault in one data dir: SoftHSM2 token, SQLite store.
    Dev {
        /// Address to listen on (default 127.0.0.1:8200).
        #[arg(long)]
        listen: Option<String>,
        /// Data directory (default .sigvault-dev), created on first start.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Config file; every missing key gets its embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run in production from a config file.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Prepare a production vault before its first `serve`: check the PKCS#11 module, find
    /// (or create) the token, create the KEK, the store and the system secrets, and print the
    /// root token once. Running it again changes nothing and says so.
    Init {
        #[arg(long)]
        config: PathBuf,
        /// File holding the token's security-officer PIN: lets `init` create the token when
        /// the module has a free slot (SoftHSM2 has). Without it the token must exist.
        #[arg(long, value_name = "FILE")]
        so_pin_file: Option<PathBuf>,
    },
    /// Inspect the audit trail offline: works while the vault is stopped.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The root of trust (KEK): status, rotation and retirement on a running vault
    /// (SIGVAULT_ADDR, SIGVAULT_TOKEN), and migration to another provider.
    Kek {
        #[command(subcommand)]
        command: KekCommand,
    },
    /// Work with the Cedar policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Signing and encryption keys on a running vault (SIGVAULT_ADDR, SIGVAULT_TOKEN).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Sign a message (--message, --file, or standard input) with a key: prints the
    /// signature (base64).
    Sign {
        /// The key's name.
        key: String,
        #[command(flatten)]
        input: InputArgs,
        /// Sign with this version (default: the latest).
        #[arg(long)]
        key_version: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify a signature (base64) of a message: exit 0 when it verifies, 1 when not.
    Verify {
        /// The key's name.
        key: String,
        /// The signature, base64.
        #[arg(long)]
        signature: String,
        #[command(flatten)]
        input: InputArgs,
        /// Check this version only (default: any from min_verify_version).
        #[arg(long)]
        key_version: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Encrypt a plaintext (--message, --file, or standard input) with an aes256-gcm key:
    /// prints the ciphertext.
    Encrypt {
        /// The key's name.
        key: String,
        #[command(flatten)]
        input: InputArgs,
        /// Associated data (text) the ciphertext is bound to.
        #[arg(long)]
        aad: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Decrypt a ciphertext: writes the plaintext's bytes to standard output.
    Decrypt {
        /// The key's name.
        key: String,
        /// The ciphertext (sigvault:v<N>:…); standard input when absent.
        #[arg(long)]
        ciphertext: Option<String>,
        /// Associated data (text) it was encrypted with.
        #[arg(long)]
        aad: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Caller tokens on a running vault.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// SigV4 credentials on a running vault.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
    /// Bearer API keys on a running vault.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
}

/// Where a command's data comes from: --message, --file (`-`: standard input), or
/// standard input.
#[derive(Args)]
struct InputArgs {
    /// The data, as text.
    #[arg(long, conflicts_with = "file")]
    message: Option<String>,
    /// A file holding the data (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key (POST /v1/keys).
    Create {
        name: String,
        /// hmac-sha256, hmac-sha384, hmac-sha512, aes256-gcm or aes256-kwp.
        #[arg(long, default_value = "hmac-sha256")]
        algorithm: String,
        #[arg(long)]
        key_size: Option<u32>,
        /// process (default) or hsm.
        #[arg(long)]
        boundary: Option<String>,
        #[arg(long)]
        exportable: bool,
        /// e.g. 90d.
        #[arg(long)]
        auto_rotate_period: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        /// KEY=VALUE, repeatable.
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List keys (GET /v1/keys).
    List {
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read a key (GET /v1/keys/NAME).
    Get {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a new version (POST /v1/keys/NAME/rotate).
    Rotate {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Schedule the key's deletion (DELETE /v1/keys/NAME).
    Delete {
        name: String,
        /// Days before destruction (default: the vault's).
        #[arg(long)]
        pending_days: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a caller token: printed once.
    Create {
        #[arg(long)]
        principal: String,
        /// Repeatable.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// e.g. 24h.
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a caller token by id.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum CredentialCommand {
    /// Create a SigV4 credential: its secret is printed once.
    Create {
        #[arg(long)]
        principal: String,
        /// The signer's groups (repeatable; default service).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List credentials.
    List {
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a credential inactive: its signatures are refused from now on.
    Deactivate {
        access_key_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create an API key: printed once.
    Create {
        #[arg(long)]
        principal: String,
        #[arg(long)]
        prefix: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        expires_at: Option<String>,
        #[arg(long)]
        remaining: Option<u64>,
        /// Repeatable.
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify an API key (--key-file, or standard input): exit 0 when valid, 1 when not.
    Verify {
        /// A file holding the key (`-` or absent: standard input; never an argument, which
        /// other users can read in the process list).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// Permissions the key must hold (repeatable).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issue a new key for an API key id; the old one keeps working for --grace-seconds.
    Reroll {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace_seconds: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum KekCommand {
    /// The current KEK, the sealed records under each KEK and the rewrap job
    /// (GET /v1/sys/kek).
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Print the vault's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a new KEK current (POST /v1/sys/kek/rotate), then follow the rewrap job with a
    /// progress bar and ETA until every record is under it.
    Rotate {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        follow: FollowArgs,
        /// Return once rotated, without following the rewrap job.
        #[arg(long)]
        no_wait: bool,
    },
    /// Follow the rewrap job until every record is under the current KEK (after a
    /// migration, or a rotation made elsewhere).
    Wait {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        follow: FollowArgs,
    },
    /// Retire a KEK that is not current and that no sealed record uses (POST
    /// /v1/sys/kek/retire): refused with the count of records still under it.
    Retire {
        #[command(flatten)]
        client: ClientArgs,
        /// The KEK to retire, as `sigvault kek status` lists it.
        kek_id: String,
    },
    /// Rewrite a `serve` config so that another provider becomes the root of trust: the
    /// target becomes [kek], the old provider [kek.previous] (readable until the rewrap job
    /// moved its records). Both are opened and self-tested first; the old file is kept as
    /// FILE.before-kek-migrate. Restart the vault (each node) to apply it.
    Migrate {
        /// The `serve` config file to rewrite.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A file with the target's [kek] section (a whole config file, or only that).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Only add the target as [kek.previous] (every node of a cluster learns to read it
        /// before any seals under it); run again without --stage to switch.
        #[arg(long)]
        stage: bool,
    },
}

/// Which running vault, and as whom: the token comes from SIGVAULT_TOKEN or --token-file
/// (never an argument, which other users can read in the process list).
#[derive(Args)]
struct ClientArgs {
    /// The vault's address (default http://127.0.0.1:8200).
    #[arg(long, env = "SIGVAULT_ADDR", value_name = "URL")]
    addr: Option<String>,
    /// A file whose first line is the token (when SIGVAULT_TOKEN is not set).
    #[arg(long, env = "SIGVAULT_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the vault's certificate (https:// addresses).
    #[arg(long, env = "SIGVAULT_CACERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// PEM file of a client certificate, for a vault that asks for one (with --client-key).
    #[arg(long, env = "SIGVAULT_CLIENT_CERT", value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, env = "SIGVAULT_CLIENT_KEY", value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// How to print the answer: table (for people) or json (the vault's answer).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

/// How to follow the rewrap job.
#[derive(Args)]
struct FollowArgs {
    /// Draw the progress bar on stderr even when it is not a terminal.
    #[arg(long)]
    progress: bool,
    /// Give up following after this many seconds (exit 1; the job goes on).
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    timeout: u64,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse every *.cedar file of DIR and validate it against DIR/schema.cedarschema (the
    /// built-in schema when absent). Exit 0 when the set is valid; 1 with one
    /// `file:line:column: problem` line per problem otherwise.
    Check {
        /// Policy directory (default: policies).
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the whole trail (store, event file, anchors). Exit 0 when it verifies, 1 with
    /// the first bad sequence number and why when it does not, 2 when it cannot be read.
    /// Offline by default; with --remote, asks a running vault (GET /v1/audit/verify).
    Verify {
        #[command(flatten)]
        vault: MaybeVaultArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Draw a progress bar on stderr even when it is not a terminal.
        #[arg(long)]
        progress: bool,
        /// Ask the running vault at SIGVAULT_ADDR instead of reading the trail offline.
        #[arg(long, conflicts_with_all = ["config", "data_dir", "progress"])]
        remote: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read events from a running vault (GET /v1/audit/events), newest filters first.
    Events {
        /// Only events at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only events before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Give up the N events of this node that the store holds past the end of the event
    /// file (acknowledged events the file and its anchor lost), recording the decision as an
    /// event of the trail. Run it on a stopped vault whose start refused, after `audit
    /// verify`; N must be the count the refusal names. Exit 0 when done, 2 when refused
    /// (nothing changed).
    AcceptTruncation {
        #[command(flatten)]
        vault: VaultArgs,
        /// How many events to give up (must match what is found).
        #[arg(long, value_name = "N")]
        events: u64,
    },
    /// Write audit events as JSON lines (the event file's records), in (node, seq) order.
    Export {
        #[command(flatten)]
        vault: MaybeVaultArgs,
        /// Only events at or after this time (RFC 3339).
        #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
        since: Option<OffsetDateTime>,
        /// Only events before this time (RFC 3339).
        #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
        until: Option<OffsetDateTime>,
        /// Write to FILE (it appears once complete) instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Draw a progress bar on stderr even when it is not a terminal.
        #[arg(long)]
        progress: bool,
    },
}

/// Which vault: one of the two.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct VaultArgs {
    /// A `serve` config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A `sigvault dev` data dir.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Which vault: at most one of the two (default: the `sigvault dev` data dir).
#[derive(Args)]
#[group(required = false, multiple = false)]
struct MaybeVaultArgs {
    /// A `serve` config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A `sigvault dev` data dir (default: the one `sigvault dev` uses, .sigvault-dev).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn location(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Location {
    match config {
        Some(file) => Location::Config(file),
        None => Location::DevDataDir(data_dir),
    }
}

fn rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("`{text}` is not an RFC 3339 time (e.g. 2026-01-31T00:00:00Z)"))
}

fn main() -> ExitCode {
    let cli = parse_args();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("sigvault: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The arguments, or exit 2 with one `sigvault: error:` line (help and version print as
/// usual).
fn parse_args() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            eprintln!("sigvault: error: {}", usage_error_line(&e));
            std::process::exit(2)
        }
    }
}

/// clap's message (its first paragraph) and the usage line, on one line.
fn usage_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let message = text
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message).to_owned();
    match text.lines().find_map(|line| line.strip_prefix("Usage: ")) {
        Some(usage) => format!("{message} (usage: {usage})"),
        None => message,
    }
}

/// What a `sigvault dev` start holds on to until it serves: its data dir's paths and the
/// undo of a failed first start.
#[cfg(feature = "kek-pkcs11")]
struct DevStart {
    paths: sigvault::config::DevPaths,
    guard: StartGuard,
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    // Before anything is created on disk or any secret is loaded.
    let hardening = sigvault::hardening::harden_process();
    let env: Vec<(String, String)> = std::env::vars().collect();
    #[cfg(feature = "kek-pkcs11")]
    let mut dev: Option<DevStart> = None;
    let (settings, mut lock): (Settings, DataDirLock) = match cli.command {
        Command::Audit { command } => return Ok(audit(command, env)),
        Command::Kek { command } => return Ok(kek(command, env)),
        Command::Key { command } => return Ok(api(ApiCall::Key(command), env)),
        Command::Sign {
            key,
            input,
            key_version,
            client,
        } => {
            return Ok(api(
                ApiCall::Sign {
                    key,
                    input,
                    key_version,
                    client,
                },
                env,
            ));
        }
        Command::Verify {
            key,
            signature,
            input,
            key_version,
            client,
        } => {
            return Ok(api(
                ApiCall::Verify {
                    key,
                    signature,
                    input,
                    key_version,
                    client,
                },
                env,
            ));
        }
        Command::Encrypt {
            key,
            input,
            aad,
            client,
        } => {
            return Ok(api(
                ApiCall::Encrypt {
                    key,
                    input,
                    aad,
                    client,
                },
                env,
            ));
        }
        Command::Decrypt {
            key,
            ciphertext,
            aad,
            client,
        } => {
            return Ok(api(
                ApiCall::Decrypt {
                    key,
                    ciphertext,
                    aad,
                    client,
                },
                env,
            ));
        }
        Command::Token { command } => return Ok(api(ApiCall::Token(command), env)),
        Command::Credential { command } => return Ok(api(ApiCall::Credential(command), env)),
        Command::Apikey { command } => return Ok(api(ApiCall::Apikey(command), env)),
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => return Ok(policy_check(&dir.unwrap_or_else(|| PathBuf::from("policies")))),
        #[cfg(not(feature = "kek-pkcs11"))]
        Command::Dev { .. } => return Err("this build has no `sigvault dev`: it needs the kek-pkcs11 feature".into()),
        #[cfg(feature = "kek-pkcs11")]
        Command::Dev {
            listen,
            data_dir,
            config,
        } => {
            let overrides = Overrides { listen, data_dir };
            let raw = config::merge(config.as_deref(), &env, &overrides).map_err(|e| e.to_string())?;
            // Every value is checked before the data dir is touched: a bad value leaves nothing.
            config::check(Mode::Dev, &raw, &env).map_err(|e| e.to_string())?;
            // So are the policies: a set that does not compile leaves nothing either.
            let policies_dir = raw.policies.as_ref().and_then(|p| p.dir.clone());
            sigvault::policy::load(policies_dir.as_deref()).map_err(|e| format!("policies: {e}"))?;
            let dir = config::data_dir_of(Mode::Dev, &raw);
            // Made (when missing) and locked before anything is written into it; a start
            // that fails before serving takes back what it made.
            let (guard, lock) = StartGuard::create_locked(&dir).map_err(|e| e.to_string())?;
            if !guard.was_empty() {
                sigvault::dev::check_complete(&raw).map_err(|e| e.to_string())?;
            }
            let paths = sigvault::dev::prepare(&raw).map_err(|e| e.to_string())?;
            // SAFETY: no other thread exists yet (the runtime starts below), so nothing can
            // read the environment concurrently. SoftHSM2 reads this in C_Initialize.
            unsafe { std::env::set_var("SOFTHSM2_CONF", &paths.softhsm_conf) };
            let settings = Settings::from_raw(Mode::Dev, raw, &env).map_err(|e| e.to_string())?;
            dev = Some(DevStart { paths, guard });
            (settings, lock)
        }
        #[cfg(feature = "kek-pkcs11")]
        Command::Init { config, so_pin_file } => return init(&config, so_pin_file.as_deref(), env),
        #[cfg(not(feature = "kek-pkcs11"))]
        Command::Init { .. } => return Err("this build has no `sigvault init`: it needs the kek-pkcs11 feature".into()),
        Command::Serve { config } => {
            let raw = config::merge(Some(&config), &env, &Overrides::default()).map_err(|e| e.to_string())?;
            let settings = Settings::from_raw(Mode::Serve, raw, &env).map_err(|e| e.to_string())?;
            let lock = DataDirLock::acquire(&settings.data_dir).map_err(|e| e.to_string())?;
            (settings, lock)
        }
    };
    let runtime = lock_store_and_start(&mut lock, &settings, env)?;
    runtime.block_on(async move {
        #[cfg(feature = "kek-pkcs11")]
        if let Some(dev) = &dev {
            sigvault::dev::ensure_dev_token(&settings, &dev.paths).map_err(|e| e.to_string())?;
        }
        let root_token_given = settings.root_token.is_some();
        let app = Application::build(settings).await.map_err(|e| chain(&e))?;
        // Registered before "listening on" is printed, so a stop right after it is graceful.
        let shutdown = shutdown_signal().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        if !hardening.core_dumps_disabled {
            tracing::warn!("could not disable core dumps");
        }
        if let Some(token) = &app.generated_root_token {
            // Shown exactly once, to the operator who started the vault; only its keyed
            // hash is stored.
            println!("root token: {}", token.expose_secret());
        }
        let address = format!("{}://{}", app.scheme(), app.local_addr());
        #[cfg(feature = "kek-pkcs11")]
        let dev_guard = match dev {
            Some(dev) => {
                let token_file = dev.paths.data_dir.join(sigvault::dev::ROOT_TOKEN_FILE);
                sigvault::dev::keep_root_token(&token_file, app.generated_root_token.as_ref(), root_token_given)
                    .map_err(|e| format!("{}: {e}", token_file.display()))?;
                // For a second shell to paste (before "listening on", which tools wait for).
                println!("{}", sigvault::dev::export_line(&address, &token_file));
                Some(dev.guard)
            }
            None => None,
        };
        #[cfg(not(feature = "kek-pkcs11"))]
        let _ = root_token_given;
        if let Some(metrics) = app.metrics_addr() {
            println!("metrics on http://{metrics}/metrics");
        }
        println!("listening on {address}");
        #[cfg(feature = "kek-pkcs11")]
        if let Some(guard) = dev_guard {
            guard.committed();
        }
        let served = app.run(shutdown).await.map_err(|e| chain(&e));
        drop(lock);
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "kek-pkcs11")]
/// `sigvault init`: exit 0 when the vault is ready (made now or before), 1 with one
/// `sigvault: error:` line otherwise.
fn init(
    config: &std::path::Path,
    so_pin_file: Option<&std::path::Path>,
    env: Vec<(String, String)>,
) -> Result<ExitCode, String> {
    let raw = config::merge(Some(config), &env, &Overrides::default()).map_err(|e| e.to_string())?;
    let settings = Settings::from_raw(Mode::Serve, raw, &env).map_err(|e| e.to_string())?;
    let so_pin = so_pin_file
        .map(|file| sigvault::dev::read_pin_file(file).map_err(|e| format!("--so-pin-file {}: {e}", file.display())))
        .transpose()?;
    let data_dir = settings.data_dir.clone();
    if !data_dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .map_err(|e| format!("data dir {}: cannot create it: {e}", data_dir.display()))?;
    }
    let mut lock = DataDirLock::acquire(&data_dir).map_err(|e| e.to_string())?;
    let runtime = lock_store_and_start(&mut lock, &settings, env)?;
    let report = runtime
        .block_on(sigvault::startup::init::init(settings, so_pin))
        .map_err(|e| chain(&e))?;
    drop(lock);
    println!("{}", report.root_of_trust);
    println!(
        "KEK, store, system secrets and audit trail: ready in {}",
        data_dir.display()
    );
    match &report.root_token {
        Some(root) => println!("root token: {}", root.expose_secret()),
        None => println!("root token: set before (not shown again); nothing was replaced"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The last steps before a vault is built: lock a SQLite store kept outside the data dir
/// (other stores are shared by design), forget the secrets read from the environment, start
/// logging and the runtime.
fn lock_store_and_start(
    lock: &mut DataDirLock,
    settings: &Settings,
    env: Vec<(String, String)>,
) -> Result<tokio::runtime::Runtime, String> {
    if let sigvault::store::StoreSettings::Sqlite { path } = &settings.store {
        lock.add_sqlite_store(path, &settings.data_dir)
            .map_err(|e| e.to_string())?;
    }
    forget_secret_env(env);
    init_logging(&settings.log_level, settings.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// `sigvault policy check DIR`: exit 0 when the set compiles, 1 with one
/// `file:line:column: problem` line per problem on stderr otherwise.
fn policy_check(dir: &std::path::Path) -> ExitCode {
    match sigvault::policy::load(Some(dir)) {
        Ok(policies) => {
            println!("{}: {} policies valid", dir.display(), policies.len());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for problem in &errors.0 {
                eprintln!("{problem}");
            }
            eprintln!("{}: {} problem(s); the set is not valid", dir.display(), errors.0.len());
            ExitCode::from(1)
        }
    }
}

/// `sigvault kek …`: exit 0 when done; otherwise one `sigvault: error:` line and the exit
/// code of [`sigvault::client::ClientError::exit_code`] (2 usage, 3 denied, 4 not found, 5
/// the vault failed or cannot be reached, 1 refused, e.g. a KEK still in use).
fn kek(command: KekCommand, env: Vec<(String, String)>) -> ExitCode {
    let token = env_token(&env);
    let runtime = match client_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let client = |args: ClientArgs| sigvault::client::Client::new(client_settings(args, token.clone()));
    let result: Result<(), (u8, String)> = runtime.block_on(async {
        let fail = |e: sigvault::client::ClientError| (e.exit_code(), e.to_string());
        match command {
            KekCommand::Status { client: args, json } => {
                let status = client(args).map_err(fail)?.get("/v1/sys/kek").await.map_err(fail)?;
                if json {
                    println!("{status}");
                } else {
                    print!("{}", kek_status_text(&status));
                }
                Ok(())
            }
            KekCommand::Rotate {
                client: args,
                follow,
                no_wait,
            } => {
                let client = client(args).map_err(fail)?;
                let rotated = client.post("/v1/sys/kek/rotate", None).await.map_err(fail)?;
                println!(
                    "rotated: {} → {}",
                    rotated["previous_kek_id"].as_str().unwrap_or("?"),
                    rotated["current_kek_id"].as_str().unwrap_or("?")
                );
                if no_wait {
                    return Ok(());
                }
                follow_rewrap(&client, &follow).await
            }
            KekCommand::Wait { client: args, follow } => {
                let client = client(args).map_err(fail)?;
                follow_rewrap(&client, &follow).await
            }
            KekCommand::Retire { client: args, kek_id } => {
                let body = serde_json::json!({ "kek_id": kek_id });
                let retired = client(args)
                    .map_err(fail)?
                    .post("/v1/sys/kek/retire", Some(&body))
                    .await
                    .map_err(fail)?;
                println!("retired {}", retired["retired_kek_id"].as_str().unwrap_or("?"));
                Ok(())
            }
            KekCommand::Migrate { config, to, stage } => {
                let migrated = admin::kek_migrate::kek_migrate(&config, &to, stage, &env)
                    .await
                    .map_err(|e| (e.exit_code(), chain(&e)))?;
                print_migrated(&config, &migrated);
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("sigvault: error: {message}");
            ExitCode::from(code)
        }
    }
}

fn print_migrated(config: &std::path::Path, m: &admin::kek_migrate::Migrated) {
    if m.staged {
        println!(
            "staged: {} now also names the target as [kek.previous]; records stay sealed under {}",
            config.display(),
            m.current_kek_id
        );
    } else {
        println!(
            "migrated: {} now names the target as [kek] (new records under {}) and the old provider as [kek.previous]",
            config.display(),
            m.current_kek_id
        );
        println!(
            "{} sealed records to move; restart the vault (each node), then follow with `sigvault kek wait`",
            m.records_to_move
        );
    }
    println!("KEKs readable: {}", m.kek_ids.join(", "));
    println!("the previous file is kept as {}", m.backup.display());
}

/// `GET /v1/sys/kek`'s answer, for a person.
fn kek_status_text(status: &serde_json::Value) -> String {
    let current = status["current_kek_id"].as_str().unwrap_or("?");
    let mut out = format!("current KEK: {current}\nrecords per KEK:\n");
    for row in status["records"].as_array().into_iter().flatten() {
        let id = row["kek_id"].as_str().unwrap_or("?");
        let mark = if id == current { " (current)" } else { "" };
        out.push_str(&format!("  {id}: {}{mark}\n", row["records"].as_u64().unwrap_or(0)));
    }
    let job = &status["rewrap"];
    out.push_str(&format!(
        "rewrap job: {} (moved {}, failed {})",
        job["state"].as_str().unwrap_or("?"),
        job["moved"].as_u64().unwrap_or(0),
        job["failed"].as_u64().unwrap_or(0)
    ));
    if let Some(error) = job["error"].as_str() {
        out.push_str(&format!(": {error}"));
    }
    out.push('\n');
    out
}

/// Sealed records not under the current KEK, per `GET /v1/sys/kek`.
fn records_left(status: &serde_json::Value) -> u64 {
    let current = status["current_kek_id"].as_str().unwrap_or_default();
    status["records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| row["kek_id"].as_str() != Some(current))
        .filter_map(|row| row["records"].as_u64())
        .sum()
}

/// How long `kek wait` watches records stay under older KEKs while the rewrap job is idle
/// before it gives up (the job looks again every minute, and right after a rotation).
const IDLE_GIVE_UP: std::time::Duration = std::time::Duration::from_secs(75);

/// Polls `GET /v1/sys/kek` once a second, drawing the records moved so far with an ETA,
/// until none is left under an older KEK (exit 1 if the job stays idle with records left,
/// which did not open).
async fn follow_rewrap(client: &sigvault::client::Client, follow: &FollowArgs) -> Result<(), (u8, String)> {
    let fail = |e: sigvault::client::ClientError| (e.exit_code(), e.to_string());
    let started = std::time::Instant::now();
    let deadline = started.checked_add(std::time::Duration::from_secs(follow.timeout));
    let mut progress: Box<dyn Progress + Send> = if follow.progress || std::io::stderr().is_terminal() {
        Box::new(ProgressBar::with_eta(std::io::stderr(), "records"))
    } else {
        Box::new(NoProgress)
    };
    let first = client.get("/v1/sys/kek").await.map_err(fail)?;
    let total = records_left(&first);
    let mut current = first["current_kek_id"].as_str().unwrap_or("?").to_owned();
    progress.start(total);
    let mut last_error: Option<String> = None;
    // Records left while the job says it has nothing to do: the ones it could not open.
    let mut idle_since: Option<(std::time::Instant, u64)> = None;
    loop {
        let status = client.get("/v1/sys/kek").await.map_err(fail)?;
        let left = records_left(&status);
        progress.advance_to(total.saturating_sub(left));
        if let Some(id) = status["current_kek_id"].as_str() {
            current = id.to_owned();
        }
        if left == 0 {
            progress.finish();
            println!("every sealed record is under {current}");
            return Ok(());
        }
        let error = status["rewrap"]["error"].as_str().map(str::to_owned);
        if error.is_some() && error != last_error {
            eprintln!(
                "the rewrap job stopped: {}; it tries again within a minute",
                error.as_deref().unwrap_or("")
            );
        }
        last_error = error;
        let idle = status["rewrap"]["state"].as_str() == Some("idle");
        idle_since = match idle_since {
            Some((since, was)) if idle && was == left => Some((since, was)),
            _ if idle => Some((std::time::Instant::now(), left)),
            _ => None,
        };
        if let Some((since, _)) = idle_since
            && since.elapsed() >= IDLE_GIVE_UP
        {
            progress.finish();
            return Err((
                1,
                format!(
                    "{left} sealed records stay under older KEKs and the rewrap job is idle: they did not open ({} failed in the last pass); see the vault's log",
                    status["rewrap"]["failed"].as_u64().unwrap_or(0)
                ),
            ));
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            progress.finish();
            return Err((
                1,
                format!(
                    "{left} sealed records are still not under {current} after {} s; the job goes on",
                    follow.timeout
                ),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// `sigvault audit …`: exit 0 when done (and the trail verifies), 1 when the trail does not
/// verify, 2 when the arguments are wrong or the vault cannot be opened.
fn audit(command: AuditCommand, env: Vec<(String, String)>) -> ExitCode {
    let command = match command {
        AuditCommand::Verify {
            remote: true, client, ..
        } => return api(ApiCall::AuditVerify { client }, env),
        AuditCommand::Events {
            since,
            until,
            principal,
            action,
            resource,
            limit,
            client,
        } => {
            let filter = commands::EventFilter {
                since,
                until,
                principal,
                action,
                resource,
                limit,
            };
            return api(ApiCall::AuditEvents { filter, client }, env);
        }
        other => other,
    };
    match run_audit(command, env) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("sigvault: error: {message}");
            ExitCode::from(2)
        }
    }
}

/// An audit command with its arguments checked.
enum AuditJob {
    Verify {
        json: bool,
    },
    Export {
        filter: AuditFilter,
        output: Option<PathBuf>,
    },
    AcceptTruncation {
        events: u64,
    },
}

/// Where the vault is, whether to force the progress bar, and what to do.
fn audit_job(command: AuditCommand) -> Result<(Location, bool, AuditJob), String> {
    Ok(match command {
        AuditCommand::Events { .. } => return Err("audit events asks a running vault".into()),
        AuditCommand::Verify {
            vault, json, progress, ..
        } => (
            location(vault.config, vault.data_dir),
            progress,
            AuditJob::Verify { json },
        ),
        AuditCommand::AcceptTruncation { vault, events } => (
            location(vault.config, vault.data_dir),
            false,
            AuditJob::AcceptTruncation { events },
        ),
        AuditCommand::Export {
            vault,
            since,
            until,
            output,
            progress,
        } => {
            let filter = admin::time_window(since, until).map_err(|e| chain(&e))?;
            (
                location(vault.config, vault.data_dir),
                progress,
                AuditJob::Export { filter, output },
            )
        }
    })
}

fn run_audit(command: AuditCommand, env: Vec<(String, String)>) -> Result<ExitCode, String> {
    let (location, force_progress, job) = audit_job(command)?;
    let (settings, dev_paths) = admin::settings(&location, &env).map_err(|e| chain(&e))?;
    // Reading works on a live vault; giving events up changes the trail, so the vault must
    // be stopped: the lock a serving vault holds refuses it.
    let _lock = match job {
        AuditJob::AcceptTruncation { .. } => Some(DataDirLock::acquire(&settings.data_dir).map_err(|e| e.to_string())?),
        _ => None,
    };
    if let Some(paths) = &dev_paths {
        // SAFETY: no other thread exists yet (the runtime starts below). SoftHSM2 reads
        // this in C_Initialize, as for `sigvault dev`.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &paths.softhsm_conf) };
    }
    forget_secret_env(env);
    init_logging("warn", sigvault::config::LogFormat::Text);
    let progress: Box<dyn Progress + Send> = if force_progress || std::io::stderr().is_terminal() {
        Box::new(ProgressBar::new(std::io::stderr(), "events"))
    } else {
        Box::new(NoProgress)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let vault = OfflineVault::open(settings).await.map_err(|e| chain(&e))?;
        match job {
            AuditJob::Verify { json } => verify(&vault, json, progress).await,
            AuditJob::Export { filter, output } => export(&vault, &filter, output, progress).await,
            AuditJob::AcceptTruncation { events } => {
                let accepted = admin::audit_accept_truncation(&vault, events)
                    .await
                    .map_err(|e| chain(&e))?;
                println!(
                    "gave up {} (sequence {} to {}) of node {}; the trail continues with event {}, which records it",
                    count_events(accepted.dropped),
                    accepted.kept + 1,
                    accepted.kept + accepted.dropped,
                    vault.settings().audit.node,
                    accepted.event_seq
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn verify(vault: &OfflineVault, json: bool, mut progress: Box<dyn Progress + Send>) -> Result<ExitCode, String> {
    let verification = admin::audit_verify(vault, progress.as_mut())
        .await
        .map_err(|e| chain(&e))?;
    print_verification(&verification, json);
    Ok(if verification.report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn export(
    vault: &OfflineVault,
    filter: &AuditFilter,
    output: Option<PathBuf>,
    mut progress: Box<dyn Progress + Send>,
) -> Result<ExitCode, String> {
    match output {
        Some(path) => {
            let written = admin::audit_export_to_file(vault.store(), filter, &path, progress.as_mut())
                .await
                .map_err(|e| chain(&e))?;
            println!("exported {} to {}", count_events(written), path.display());
        }
        None => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            admin::audit_export(vault.store(), filter, &mut out, progress.as_mut())
                .await
                .map_err(|e| chain(&e))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_verification(v: &Verification, json: bool) {
    if json {
        // A struct of strings, numbers and options always serialises.
        println!("{}", serde_json::to_string(v).unwrap_or_default());
        return;
    }
    if v.report.ok {
        let per_node: Vec<String> = v
            .nodes
            .iter()
            .map(|n| format!("node {}: {}", n.node, n.report.checked))
            .collect();
        println!(
            "audit trail ok: {} verified ({})",
            count_events(v.report.checked),
            per_node.join(", ")
        );
        if v.report.unanchored > 0 {
            println!(
                "({} past the last anchored head: being written while this ran, or anchors lost in a crash)",
                count_events(v.report.unanchored)
            );
        }
        return;
    }
    let seq = v.report.first_bad_seq.unwrap_or(0);
    println!(
        "audit trail FAILED at sequence {seq} of node {}: {}",
        v.node.as_deref().unwrap_or("?"),
        v.report.reason.as_deref().unwrap_or("no reason given")
    );
    println!("({} checked in the store)", count_events(v.report.checked));
}

fn count_events(n: u64) -> String {
    if n == 1 {
        "1 event".into()
    } else {
        format!("{n} events")
    }
}

/// The settings now own the secrets passed by environment (as zeroizing types): wipe the
/// copies read at start, overwrite the values where the kernel placed them, and remove the
/// variables, so they do not outlive startup in this process's memory, show in
/// `/proc/<pid>/environ` (which reads that original block, whatever `environ` points to
/// later) or reach child processes. `SIGVAULT_TOKEN` (a client's token, exported in the
/// shell that started the server) goes the same way: the server never uses it.
fn forget_secret_env(mut env: Vec<(String, String)>) {
    for (_, value) in &mut env {
        zeroize::Zeroize::zeroize(value);
    }
    // `SIGVAULT_RATELIMIT__REDIS_URL` may hold Redis's password, `SIGVAULT_STORE__URL`
    // PostgreSQL's.
    for name in [
        c"SIGVAULT_ROOT_TOKEN",
        c"SIGVAULT_KEK__PKCS11__PIN",
        c"SIGVAULT_RATELIMIT__REDIS_URL",
        c"SIGVAULT_STORE__URL",
        c"SIGVAULT_TOKEN",
    ] {
        // SAFETY: still single-threaded (the runtime has not started), so nothing else reads
        // or changes the environment. `getenv` returns the value's own bytes in the
        // environment block (writable, NUL-terminated; for a variable set at exec, the block
        // `/proc/<pid>/environ` shows): they are zeroed up to, not including, the NUL, then
        // the variable is removed.
        unsafe {
            let value = libc::getenv(name.as_ptr());
            if !value.is_null() {
                std::ptr::write_bytes(value, 0, libc::strlen(value));
            }
            if let Ok(name) = name.to_str() {
                std::env::remove_var(name);
            }
        }
    }
}

fn init_logging(level: &str, format: sigvault::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("sigvault={level},warn")));
    match format {
        // Colours only for a person at a terminal, never in a file or a journal.
        sigvault::config::LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        // One JSON object per line, the event's fields (request_id, …) at its top level,
        // for a log pipeline.
        sigvault::config::LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// A future that resolves on SIGINT or SIGTERM. The handlers are installed now, not when
/// the future is first polled.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// A command that asks a running vault (see `sigvault::client::commands`).
enum ApiCall {
    Key(KeyCommand),
    Sign {
        key: String,
        input: InputArgs,
        key_version: Option<u32>,
        client: ClientArgs,
    },
    Verify {
        key: String,
        signature: String,
        input: InputArgs,
        key_version: Option<u32>,
        client: ClientArgs,
    },
    Encrypt {
        key: String,
        input: InputArgs,
        aad: Option<String>,
        client: ClientArgs,
    },
    Decrypt {
        key: String,
        ciphertext: Option<String>,
        aad: Option<String>,
        client: ClientArgs,
    },
    Token(TokenCommand),
    Credential(CredentialCommand),
    Apikey(ApikeyCommand),
    AuditEvents {
        filter: commands::EventFilter,
        client: ClientArgs,
    },
    AuditVerify {
        client: ClientArgs,
    },
}

/// `SIGVAULT_TOKEN`, the client commands' token.
fn env_token(env: &[(String, String)]) -> Option<secrecy::SecretString> {
    env.iter()
        .find(|(k, _)| k == "SIGVAULT_TOKEN")
        .map(|(_, v)| secrecy::SecretString::from(v.clone()))
}

/// The runtime of a client command, or exit 5 when there is none.
fn client_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("sigvault: error: cannot start the async runtime: {e}");
            ExitCode::from(5)
        })
}

fn client_settings(args: ClientArgs, token: Option<secrecy::SecretString>) -> sigvault::client::ClientSettings {
    sigvault::client::ClientSettings {
        addr: args.addr,
        token,
        token_file: args.token_file,
        ca_cert: args.ca_cert,
        client_cert: args.client_cert.zip(args.client_key),
    }
}

fn input(args: InputArgs) -> commands::Input {
    commands::Input::from_options(args.message, args.file)
}

/// Runs one client command: prints its answer and exits 0, 1 when a verification it asked
/// for failed, or as the vault's error says (2 usage, 3 denied, 4 not found, 5 server or
/// unreachable) with one `sigvault: error: CODE (status): message` line.
fn api(call: ApiCall, env: Vec<(String, String)>) -> ExitCode {
    let token = env_token(&env);
    let runtime = match client_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let connect = |args: ClientArgs| {
        let format = Format::parse(&args.format).unwrap_or_default();
        sigvault::client::Client::new(client_settings(args, token.clone())).map(|c| (c, format))
    };
    let mut plaintext: Option<zeroize::Zeroizing<Vec<u8>>> = None;
    let result = runtime.block_on(async {
        match call {
            ApiCall::Key(command) => match command {
                KeyCommand::Create {
                    name,
                    algorithm,
                    key_size,
                    boundary,
                    exportable,
                    auto_rotate_period,
                    owner,
                    tags,
                    client,
                } => {
                    let (c, f) = connect(client)?;
                    let new = commands::NewKey {
                        algorithm,
                        key_size,
                        boundary,
                        exportable,
                        auto_rotate_period,
                        owner,
                        tags,
                    };
                    commands::key_create(&c, f, &name, new).await
                }
                KeyCommand::List { limit, client } => {
                    let (c, f) = connect(client)?;
                    commands::key_list(&c, f, limit).await
                }
                KeyCommand::Get { name, client } => {
                    let (c, f) = connect(client)?;
                    commands::key_get(&c, f, &name).await
                }
                KeyCommand::Rotate { name, client } => {
                    let (c, f) = connect(client)?;
                    commands::key_rotate(&c, f, &name).await
                }
                KeyCommand::Delete {
                    name,
                    pending_days,
                    client,
                } => {
                    let (c, f) = connect(client)?;
                    commands::key_delete(&c, f, &name, pending_days).await
                }
            },
            ApiCall::Sign {
                key,
                input: args,
                key_version,
                client,
            } => {
                let (c, f) = connect(client)?;
                commands::sign(&c, f, &key, &input(args), key_version).await
            }
            ApiCall::Verify {
                key,
                signature,
                input: args,
                key_version,
                client,
            } => {
                let (c, f) = connect(client)?;
                commands::verify(&c, f, &key, &input(args), &signature, key_version).await
            }
            ApiCall::Encrypt {
                key,
                input: args,
                aad,
                client,
            } => {
                let (c, f) = connect(client)?;
                commands::encrypt(&c, f, &key, &input(args), aad.as_deref()).await
            }
            ApiCall::Decrypt {
                key,
                ciphertext,
                aad,
                client,
            } => {
                let (c, f) = connect(client)?;
                let text = match ciphertext {
                    Some(t) => t,
                    None => String::from_utf8(commands::Input::Stdin.read()?.to_vec()).map_err(|_| {
                        sigvault::client::ClientError::Usage("the ciphertext on standard input is not text".into())
                    })?,
                };
                let (out, bytes) = commands::decrypt(&c, f, &key, &text, aad.as_deref()).await?;
                plaintext = Some(bytes);
                Ok(out)
            }
            ApiCall::Token(TokenCommand::Create {
                principal,
                groups,
                ttl,
                description,
                client,
            }) => {
                let (c, f) = connect(client)?;
                commands::token_create(&c, f, &principal, &groups, ttl.as_deref(), description.as_deref()).await
            }
            ApiCall::Token(TokenCommand::Revoke { id, client }) => {
                let (c, f) = connect(client)?;
                commands::token_revoke(&c, f, &id).await
            }
            ApiCall::Credential(CredentialCommand::Create {
                principal,
                groups,
                description,
                client,
            }) => {
                let (c, f) = connect(client)?;
                commands::credential_create(&c, f, &principal, &groups, description.as_deref()).await
            }
            ApiCall::Credential(CredentialCommand::List {
                principal,
                limit,
                client,
            }) => {
                let (c, f) = connect(client)?;
                commands::credential_list(&c, f, principal.as_deref(), limit).await
            }
            ApiCall::Credential(CredentialCommand::Deactivate { access_key_id, client }) => {
                let (c, f) = connect(client)?;
                commands::credential_deactivate(&c, f, &access_key_id).await
            }
            ApiCall::Apikey(ApikeyCommand::Create {
                principal,
                prefix,
                expires_at,
                remaining,
                permissions,
                client,
            }) => {
                let (c, f) = connect(client)?;
                let new = commands::NewApiKey {
                    principal,
                    prefix,
                    expires_at,
                    remaining,
                    permissions,
                };
                commands::apikey_create(&c, f, new).await
            }
            ApiCall::Apikey(ApikeyCommand::Verify {
                key_file,
                permissions,
                client,
            }) => {
                let (c, f) = connect(client)?;
                let key = commands::Input::from_options(None, key_file);
                commands::apikey_verify(&c, f, &key, &permissions).await
            }
            ApiCall::Apikey(ApikeyCommand::Reroll {
                id,
                grace_seconds,
                client,
            }) => {
                let (c, f) = connect(client)?;
                commands::apikey_reroll(&c, f, &id, grace_seconds).await
            }
            ApiCall::AuditEvents { filter, client } => {
                let (c, f) = connect(client)?;
                commands::audit_events(&c, f, filter).await
            }
            ApiCall::AuditVerify { client } => {
                let (c, f) = connect(client)?;
                commands::audit_verify(&c, f).await
            }
        }
    });
    match result {
        Ok(out) => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            let written = match &plaintext {
                Some(bytes) if !bytes.is_empty() => stdout.write_all(bytes),
                _ => stdout.write_all(out.text.as_bytes()),
            };
            if let Err(e) = written.and_then(|()| stdout.flush()) {
                eprintln!("sigvault: error: cannot write the answer: {e}");
                return ExitCode::from(5);
            }
            ExitCode::from(out.exit)
        }
        Err(e) => {
            eprintln!("sigvault: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
