//! A TCP proxy between a vault and its database that a test can break: [`CutProxy::cut`]
//! closes every connection through it and refuses new ones (as a database that went away
//! does), [`CutProxy::stall`] keeps every connection open but passes no more bytes either way
//! (as a network partition that drops packets does), [`CutProxy::restore`] lets connections
//! through again (those stalled are closed). Bytes are copied as they come; nothing is read
//! or changed.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Cut,
    Stalled,
}

pub struct CutProxy {
    pub addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mode = Arc::new(watch::channel(Mode::Open).0);
        let accepting = Arc::clone(&mode);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let now = *accepting.borrow();
                match now {
                    Mode::Cut => drop(client),
                    Mode::Stalled => {
                        tokio::spawn(hold(client, accepting.subscribe()));
                    }
                    Mode::Open => {
                        tokio::spawn(forward(client, upstream, accepting.subscribe()));
                    }
                }
            }
        });
        Self { addr, mode, task }
    }

    /// Closes every connection and refuses new ones until [`CutProxy::restore`].
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Keeps every connection (and every new one) open without passing a byte, until
    /// [`CutProxy::restore`] or [`CutProxy::cut`] closes them.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    pub fn restore(&self) {
        self.mode.send_replace(Mode::Open);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let broken = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        broken = mode.wait_for(|m| *m != Mode::Open) => broken.map(|m| *m).unwrap_or(Mode::Cut),
    };
    if broken == Mode::Stalled {
        // Both ends stay open, silent, until the stall ends.
        let _ = mode.wait_for(|m| *m != Mode::Stalled).await;
    }
    // Dropping both ends closes them: the vault sees its connection reset.
}

/// A connection accepted while stalled: held open, silent, until the stall ends.
async fn hold(client: TcpStream, mut mode: watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m != Mode::Stalled).await;
    drop(client);
}
