//! The `sigvault` command: parses arguments, then calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use sigvault::config::{self, Mode, Overrides, Settings};
use sigvault::startup::{Application, chain};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sigvault: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    // Before anything is created on disk or any secret is loaded.
    let hardening = sigvault::hardening::harden_process();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let (settings, dev_paths) = match cli.command {
        Command::Dev {
            listen,
            data_dir,
            config,
        } => {
            let overrides = Overrides { listen, data_dir };
            let raw = config::merge(config.as_deref(), &env, &overrides).map_err(|e| e.to_string())?;
            // Every value is checked before the data dir is touched: a bad value leaves nothing.
            config::check(Mode::Dev, &raw, &env).map_err(|e| e.to_string())?;
            let paths = sigvault::dev::prepare(&raw).map_err(|e| e.to_string())?;
            // SAFETY: no other thread exists yet (the runtime starts below), so nothing can
            // read the environment concurrently. SoftHSM2 reads this in C_Initialize.
            unsafe { std::env::set_var("SOFTHSM2_CONF", &paths.softhsm_conf) };
            let settings = Settings::from_raw(Mode::Dev, raw, &env).map_err(|e| e.to_string())?;
            (settings, Some(paths))
        }
        Command::Serve { config } => {
            let raw = config::merge(Some(&config), &env, &Overrides::default()).map_err(|e| e.to_string())?;
            (
                Settings::from_raw(Mode::Serve, raw, &env).map_err(|e| e.to_string())?,
                None,
            )
        }
    };
    forget_secret_env(env);
    init_logging(&settings.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        if let Some(paths) = &dev_paths {
            sigvault::dev::ensure_dev_token(&settings, paths).map_err(|e| e.to_string())?;
        }
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
        println!("listening on http://{}", app.local_addr());
        app.run(shutdown).await.map_err(|e| chain(&e))
    })
}

/// The settings now own the secrets passed by environment (as zeroizing types): wipe the
/// copies read at start and remove the variables, so they do not outlive startup in this
/// process's memory or reach child processes.
fn forget_secret_env(mut env: Vec<(String, String)>) {
    for (_, value) in &mut env {
        zeroize::Zeroize::zeroize(value);
    }
    for name in ["SIGVAULT_ROOT_TOKEN", "SIGVAULT_KEK__PKCS11__PIN"] {
        // SAFETY: still single-threaded (the runtime has not started), so no concurrent
        // reader of the environment exists.
        unsafe { std::env::remove_var(name) };
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGVAULT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("sigvault={level},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
