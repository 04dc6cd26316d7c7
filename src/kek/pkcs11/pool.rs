//! The session pool and the token's health: which sessions are idle, which of them belong to
//! the token as it was before it last failed, and whether the HSM is failing right now.
//!
//! A call whose module answer says the session or the token is gone or no longer logged in
//! ([`Pkcs11Error::breaks_session`]: a device removed or in error, a token reset, an invalid
//! session or object handle) discards its session and every idle one: the pool's generation
//! moves on, so sessions leased before the failure are closed when they come back instead of
//! being reused. The next call opens a session again — finding the token by its label, logging
//! in if the token lost its login, finding the KEK versions and copying them into the session
//! ([`Pool::open_session`]) — so the vault recovers without a restart. While the HSM keeps
//! failing, one call a [`RETRY_INTERVAL`] tries it; the others fail at once
//! ([`Pkcs11Error::Down`]) instead of each queuing for a module that does not answer. A PIN the
//! token refuses on such a login is never tried again ([`Pkcs11Error::LoginRefused`]): a real
//! HSM locks the PIN after a few wrong attempts.
//!
//! The pool must never hold its lock across a C call: a module that hangs would take every
//! caller with it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use secrecy::SecretString;

use super::error::{Pkcs11Error, call};
use super::objects::{PooledSession, find_kek_objects};
use super::token::find_token;

/// How long calls fail at once after the HSM failed, before one call tries it again.
pub(super) const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The pooled sessions of one token and what the pool knows of the token's health.
pub(super) struct Pool {
    ctx: Pkcs11,
    token_label: String,
    /// Kept for the process's life: logging in again after a token reset needs it.
    pin: SecretString,
    /// Idle sessions kept at most; more come back only after hung calls were given up on.
    size: usize,
    state: Mutex<State>,
}

struct State {
    idle: Vec<Idle>,
    /// Moves on each time the token is found broken; a session of an older generation is
    /// never used again.
    generation: u64,
    outage: Option<Outage>,
    /// The token refused the PIN when the pool logged in again: never tried again.
    login_refused: bool,
}

struct Idle {
    session: PooledSession,
    generation: u64,
}

/// The HSM is failing: since when, and when a call may try it again.
struct Outage {
    since: Instant,
    next_try: Instant,
}

/// What a call and the one who waits for it share: whether the waiter gave up on it (its
/// session is then closed, not pooled, once the call returns) and the permit the call holds
/// while it runs (see `Pkcs11Kek::with_session`).
pub(super) struct Handoff<P> {
    abandoned: AtomicBool,
    pub(super) permit: Mutex<Option<P>>,
}

impl<P> Handoff<P> {
    pub(super) fn new(permit: P) -> Self {
        Self {
            abandoned: AtomicBool::new(false),
            permit: Mutex::new(Some(permit)),
        }
    }

    pub(super) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }
}

impl Pool {
    /// A pool holding `sessions` (opened, logged in, with their KEK copies) as idle.
    pub(super) fn new(ctx: Pkcs11, token_label: String, pin: SecretString, sessions: Vec<PooledSession>) -> Self {
        let size = sessions.len().max(1);
        let idle = sessions
            .into_iter()
            .map(|session| Idle { session, generation: 0 })
            .collect();
        Self {
            ctx,
            token_label,
            pin,
            size,
            state: Mutex::new(State {
                idle,
                generation: 0,
                outage: None,
                login_refused: false,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go to the HSM now. During an outage one call per
    /// [`RETRY_INTERVAL`] may (it is the one that finds out whether the HSM is back); the
    /// others fail at once.
    pub(super) fn admit(&self) -> Result<(), Pkcs11Error> {
        let mut state = self.state();
        if state.login_refused {
            return Err(Pkcs11Error::LoginRefused {
                label: self.token_label.clone(),
            });
        }
        if let Some(outage) = state.outage.as_mut() {
            let now = Instant::now();
            if now < outage.next_try {
                return Err(Pkcs11Error::Down {
                    failing_for: now.saturating_duration_since(outage.since),
                });
            }
            outage.next_try = now + RETRY_INTERVAL;
        }
        Ok(())
    }

    /// Runs `op` on a session: an idle one of the current generation, else one opened now.
    /// Called on a blocking thread.
    pub(super) fn run<T, P>(
        &self,
        handoff: &Handoff<P>,
        op: impl FnOnce(&PooledSession) -> Result<T, Pkcs11Error>,
    ) -> Result<T, Pkcs11Error> {
        let (session, generation) = self.take()?;
        let result = op(&session);
        match &result {
            Err(e) if e.breaks_session() => {
                self.broken(generation, e);
                // Dropping closes it; a module that already dropped it answers with an error
                // that cryptoki ignores.
                drop(session);
            }
            _ => self.give_back(session, generation, handoff.abandoned()),
        }
        result
    }

    fn take(&self) -> Result<(PooledSession, u64), Pkcs11Error> {
        let (idle, generation) = {
            let mut state = self.state();
            (state.idle.pop(), state.generation)
        };
        if let Some(idle) = idle {
            // Idle sessions are of the current generation: a failure drains them all.
            return Ok((idle.session, idle.generation));
        }
        match self.open_session() {
            Ok(session) => Ok((session, generation)),
            Err(source) => {
                let refused = matches!(source, Pkcs11Error::PinIncorrect { .. } | Pkcs11Error::PinLocked { .. });
                let err = Pkcs11Error::Reopen {
                    label: self.token_label.clone(),
                    source: Box::new(source),
                };
                let mut state = self.state();
                if refused {
                    tracing::error!(error = %crate::error::chain(&err), "the HSM refused the PIN; sigvault will not log in again until restarted");
                    state.login_refused = true;
                }
                self.failing(&mut state, &err);
                Err(err)
            }
        }
    }

    /// Opens a session on the token (found again by its label: a token that was removed may
    /// come back in another slot), logs in when the token is not logged in, and copies every
    /// KEK version it finds into the session. Never creates a KEK.
    fn open_session(&self) -> Result<PooledSession, Pkcs11Error> {
        let slot = find_token(&self.ctx, &self.token_label)?.ok_or_else(|| Pkcs11Error::TokenNotFound {
            label: self.token_label.clone(),
        })?;
        let session = self.ctx.open_rw_session(slot).map_err(call("opening a session"))?;
        log_in(&session, &self.pin, &self.token_label)?;
        let keks = find_kek_objects(&session)?;
        PooledSession::new(session, &keks)
    }

    fn give_back(&self, session: PooledSession, generation: u64, abandoned: bool) {
        let mut state = self.state();
        if generation == state.generation {
            if let Some(outage) = state.outage.take() {
                tracing::info!(
                    failed_for_ms = outage.since.elapsed().as_millis() as u64,
                    "the HSM answers again"
                );
            }
            // A call given up on is not trusted with another: its session goes.
            if !abandoned && state.idle.len() < self.size {
                state.idle.push(Idle { session, generation });
                return;
            }
        }
        drop(state);
        drop(session);
    }

    /// A session of `generation` broke with `err`: every session of that generation goes.
    fn broken(&self, generation: u64, err: &Pkcs11Error) {
        let stale = {
            let mut state = self.state();
            self.failing(&mut state, err);
            if generation != state.generation {
                return;
            }
            state.generation += 1;
            std::mem::take(&mut state.idle)
        };
        // Closed here, outside the lock.
        drop(stale);
    }

    /// The token's KEK versions changed (a rotation, a retirement): every session opened
    /// before goes (idle ones now, busy ones when given back), so each session of the pool
    /// holds copies of exactly the versions on the token. Not a failure.
    pub(super) fn renew(&self) {
        let stale = {
            let mut state = self.state();
            state.generation += 1;
            std::mem::take(&mut state.idle)
        };
        drop(stale);
    }

    /// A call was given up on after the call timeout: the HSM counts as failing.
    pub(super) fn timed_out(&self, err: &Pkcs11Error) {
        let mut state = self.state();
        self.failing(&mut state, err);
    }

    fn failing(&self, state: &mut State, err: &Pkcs11Error) {
        if state.outage.is_none() {
            tracing::warn!(token = %self.token_label, error = %crate::error::chain(err), "the HSM is failing; sessions will be reopened");
            let now = Instant::now();
            // The first call after the failure tries again at once (a reset token is back
            // by then); later ones wait for their turn in `admit`.
            state.outage = Some(Outage {
                since: now,
                next_try: now,
            });
        }
    }
}

/// Logs `session` in as the user unless the token already is (login state belongs to the
/// token, so one login serves every session of the process).
pub(super) fn log_in(session: &Session, pin: &SecretString, label: &str) -> Result<(), Pkcs11Error> {
    let info = session.get_session_info().map_err(call("reading the session state"))?;
    if matches!(info.session_state(), SessionState::RoUser | SessionState::RwUser) {
        return Ok(());
    }
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(Pkcs11Error::PinIncorrect {
            label: label.to_owned(),
        }),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Pkcs11Error::PinLocked {
            label: label.to_owned(),
        }),
        Err(source) => Err(call("logging in")(source)),
    }
}
