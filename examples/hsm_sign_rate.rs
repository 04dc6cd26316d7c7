//! The raw rate of `C_Sign` with `CKM_SHA256_HMAC` on a PKCS#11 token: what an hsm-boundary
//! verification could at best reach through the HSM, measured without sigvault in the way
//! (bench/resident.sh prints it beside the vault's own figures).
//!
//!   hsm_sign_rate MODULE TOKEN_LABEL SECONDS [MESSAGE_BYTES] [THREADS]
//!
//! The user PIN comes from the environment (`HSM_PIN`), never argv. Each thread opens its own
//! session, generates a 32-byte generic secret session key (sensitive, not extractable) and
//! signs one random message in a loop for SECONDS; the line `C_SIGN_PER_S N` is the total.

use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, module, label, seconds, rest @ ..] = args.as_slice() else {
        return Err("usage: hsm_sign_rate MODULE TOKEN_LABEL SECONDS [MESSAGE_BYTES] [THREADS]".into());
    };
    let seconds: u64 = seconds.parse()?;
    let message_bytes: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(256);
    let threads: usize = rest.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let pin = std::env::var("HSM_PIN").map_err(|_| "HSM_PIN is not set")?;

    let ctx = Pkcs11::new(module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = ctx
        .get_slots_with_initialized_token()?
        .into_iter()
        .find(|slot| {
            ctx.get_token_info(*slot)
                .map(|info| info.label().trim_end() == label)
                .unwrap_or(false)
        })
        .ok_or("no token with that label")?;
    let login = ctx.open_rw_session(slot)?;
    login.login(UserType::User, Some(&AuthPin::new(pin.into())))?;

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<u64, cryptoki::error::Error> {
                    let session = ctx.open_rw_session(slot)?;
                    let key = session.generate_key(
                        &Mechanism::GenericSecretKeyGen,
                        &[
                            Attribute::Class(ObjectClass::SECRET_KEY),
                            Attribute::KeyType(KeyType::GENERIC_SECRET),
                            Attribute::Token(false),
                            Attribute::Sensitive(true),
                            Attribute::Extractable(false),
                            Attribute::Sign(true),
                            Attribute::ValueLen(32.into()),
                        ],
                    )?;
                    let message = vec![0x5a; message_bytes];
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        for _ in 0..64 {
                            session.sign(&Mechanism::Sha256Hmac, key, &message)?;
                        }
                        n += 64;
                    }
                    Ok(n)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "a worker panicked"))
            .collect::<Vec<_>>()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut total = 0u64;
    for count in counts {
        total += count??;
    }
    println!("C_SIGN_PER_S {:.0}", total as f64 / elapsed);
    Ok(())
}
