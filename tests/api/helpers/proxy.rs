//! A TCP proxy between a vault and its database that a test can cut: [`CutProxy::cut`]
//! closes every connection through it and refuses new ones (as a database that went away
//! does), [`CutProxy::restore`] lets connections through again. Bytes are copied as they
//! come; nothing is read or changed.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct CutProxy {
    pub addr: SocketAddr,
    /// `true` while cut.
    state: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(watch::channel(false).0);
        let accepting = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *accepting.borrow() {
                    drop(client);
                    continue;
                }
                tokio::spawn(forward(client, upstream, accepting.subscribe()));
            }
        });
        Self { addr, state, task }
    }

    /// Closes every connection and refuses new ones until [`CutProxy::restore`].
    pub fn cut(&self) {
        self.state.send_replace(true);
    }

    pub fn restore(&self) {
        self.state.send_replace(false);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
    // Dropping both ends closes them: the vault sees its connection reset.
}
