//! TLS in front of the embedded broker: a test PKI made with rcgen and a
//! TLS-terminating proxy (tokio-rustls) that forwards the plain MQTT bytes
//! to a rumqttd listener. Optionally it requires client certificates
//! signed by a given CA (mutual TLS).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A test certificate authority.
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate (what a `ca_file` holds).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth, "test broker")
    }

    /// A client certificate for mutual TLS.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(&[], ExtendedKeyUsagePurpose::ClientAuth, name)
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, cn: &str) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A TLS-terminating proxy; dropping it stops accepting.
pub struct TlsProxy {
    addr: SocketAddr,
    /// Every failed handshake, as the server saw it.
    pub handshake_errors: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsProxy {
    /// Serves TLS with `server` on a free loopback port and forwards to
    /// `upstream`; with `client_ca`, a client certificate signed by it is
    /// required.
    pub async fn start(
        upstream: SocketAddr,
        server: &Issued,
        client_ca: Option<&TestCa>,
    ) -> TlsProxy {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("server chain");
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("server key");
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
                    roots.add(cert.expect("client CA")).expect("add client CA");
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS proxy");
        let addr = listener.local_addr().expect("TLS proxy address");
        let handshake_errors = Arc::new(Mutex::new(Vec::new()));
        let errors = handshake_errors.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let errors = errors.clone();
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            return;
                        }
                    };
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy {
            addr,
            handshake_errors,
            task,
        }
    }

    /// Where the gateway connects.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Failed handshakes so far.
    pub fn failed_handshakes(&self) -> Vec<String> {
        self.handshake_errors.lock().unwrap().clone()
    }
}
