//! HTTPS served by the server itself (`--tls-cert`, `--tls-key`): rustls with the aws-lc-rs
//! provider, a certificate that can be reloaded while the server runs (SIGHUP), and a listener
//! that hands axum connections whose handshake is done.
//!
//! Handshakes run in tasks of their own, so a slow or silent client never holds up the accept
//! loop; each connection takes the certificate current when it arrived.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate file {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the private key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the certificate {cert} and the key {key} cannot serve TLS: {reason}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The server's certificate chain and key, as files, and the configuration loaded from them.
/// Cloning shares it: [`TlsCertificate::reload`] on any clone changes what new connections get.
#[derive(Clone)]
pub struct TlsCertificate {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<ArcSwap<rustls::ServerConfig>>,
}

/// What was loaded, for the log.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Certificates in the chain (the server's first).
    pub chain: usize,
}

impl TlsCertificate {
    /// Loads `cert` (PEM: the server's certificate first, then intermediates) and `key` (PEM:
    /// PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<TlsCertificate, TlsError> {
        let (config, _) = load_config(cert, key)?;
        Ok(TlsCertificate {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: Arc::new(ArcSwap::from_pointee(config)),
        })
    }

    /// Reads the files again. New connections get the new certificate; on an error the one
    /// loaded before stays in use.
    pub fn reload(&self) -> Result<Loaded, TlsError> {
        let (config, chain) = load_config(&self.cert, &self.key)?;
        self.current.store(Arc::new(config));
        Ok(Loaded { chain })
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// Serves TLS on `tcp`.
    pub fn listener(&self, tcp: TcpListener) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        // Completed handshakes wait here for axum to take them.
        let (tx, rx) = mpsc::channel(64);
        let current = self.current.clone();
        let accept = tokio::spawn(accept_loop(tcp, current, tx));
        Ok(TlsListener {
            rx,
            local,
            accept: accept.abort_handle(),
        })
    }
}

/// The configuration, and the length of the certificate chain.
fn load_config(cert: &Path, key: &Path) -> Result<(rustls::ServerConfig, usize), TlsError> {
    let cert_err = |reason: String| TlsError::Certificate {
        path: cert.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block in the file".into()));
    }
    let chain_len = chain.len();
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY block in the file".into()
            }
            other => other.to_string(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config_err = |reason: String| TlsError::Config {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err(e.to_string()))?
        .with_no_client_auth()
        // Checks that the key belongs to the certificate.
        .with_single_cert(chain, private_key)
        .map_err(|e| config_err(e.to_string()))?;
    // axum serves HTTP/1.1 (its http2 feature is off).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, chain_len))
}

async fn accept_loop(
    tcp: TcpListener,
    current: Arc<ArcSwap<rustls::ServerConfig>>,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: axum's own loop waits the same way.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            // The server stopped taking connections.
            _ = tx.closed() => return,
        };
        let acceptor = TlsAcceptor::from(current.load_full());
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                // Plain HTTP on the HTTPS port, an unknown CA on the client's side, a scanner:
                // the client's problem, not the server's.
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Connections with their TLS handshake done, for `axum::serve`.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept: tokio::task::AbortHandle,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
