//! MQTT connection options: broker address, client id, keep-alive,
//! persistent session, credentials, Last Will, packet size limits and TLS.
//!
//! # TLS
//!
//! rustls with the *ring* provider (rumqttc's default TLS feature pulls in
//! `aws-lc`, a slow C build that is hard to cross-compile, so it is off). The provider is passed explicitly to the client config
//! and also installed as the process default once ([`install_crypto_provider`]),
//! so a crate that enables aws-lc elsewhere cannot make the first connect
//! panic.
//!
//! * `ca_file` set: only the CA certificate(s) in that PEM file are trusted.
//! * `ca_file` not set: the system trust store. `rustls-native-certs` is not a
//!   direct dependency, so the system bundle is read as a PEM file: the file
//!   named by `SSL_CERT_FILE` if set, else the first that exists of
//!   [`SYSTEM_CA_BUNDLES`] (Debian/Ubuntu/Alpine, Fedora/RHEL, openSUSE,
//!   macOS/BSD). None found is an error at start-up that names the paths tried:
//!   set `ca_file` then.
//! * `cert_file` + `key_file`: mutual TLS; the key (PKCS#8, PKCS#1 or SEC1
//!   PEM) comes as a [`Secret`](crate::config::Secret) and is handed to
//!   rustls only.
//!
//! Files are read and checked when the options are built, so a missing or
//! malformed file is reported once, at start-up, with its path, instead of
//! on every reconnect.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::forwarder::ForwarderConfig;
use crate::config::{MqttConfig, TlsConfig};
use crate::contract::status;
use crate::store::StoreError;

/// PEM bundles tried, in order, when TLS is on without a `ca_file`.
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Packet ids rumqttc may use, for a window of `max_inflight` messages.
///
/// rumqttc numbers publishes and subscribes 1, 2, …, `inflight`, 1, …; with
/// about twice the window there, a packet id comes round again only long
/// after its message was acknowledged, so the forwarder's guard against
/// reusing an id still in flight (see [`forwarder`](super::forwarder))
/// practically never has to hold anything back.
pub fn packet_id_space(max_inflight: u16) -> u16 {
    max_inflight.saturating_mul(2).saturating_add(8)
}

/// What went wrong in the MQTT part, before or outside a connection.
/// Connection errors are not here: the forwarder retries those forever.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// TLS could not be set up (unreadable or invalid CA, certificate or key).
    #[error("TLS: {0}")]
    Tls(String),
    /// The outbox failed in a way the forwarder cannot carry on from.
    #[error("outbox: {0}")]
    Store(#[from] StoreError),
}

/// Installs rustls' *ring* provider as the process default, once; "already
/// installed" (by us or by someone else) is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The rumqttc options of the forwarder: MQTT 3.1.1, persistent session
/// (`clean_session = false`) under the configured client id, manual acks
/// for inbound messages (the forwarder acknowledges one once it is
/// handled: unacknowledged, the session's broker sends it again on the
/// next connection), keep-alive and credentials, `max_packet_size` both
/// ways, the retained `offline` Last Will on the status topic, and TLS
/// when configured.
pub fn mqtt_options(cfg: &ForwarderConfig) -> Result<MqttOptions, MqttError> {
    let mut options = session_options(&cfg.mqtt)?;
    options.set_inflight(packet_id_space(cfg.mqtt.max_inflight.max(1)));
    let will = status::offline(&cfg.status_info(), None);
    options.set_last_will(LastWill::new(
        cfg.topics.status(),
        will,
        QoS::AtLeastOnce,
        true,
    ));
    Ok(options)
}

/// The options every fieldgate session shares (the forwarder's and
/// `fieldgate bridge`'s): `[mqtt]`'s broker, client id, keep-alive,
/// credentials, packet sizes and TLS, a persistent session (inbound
/// messages queued while away) and manual acknowledgements (a message is
/// acknowledged once what it asks is committed).
pub fn session_options(mqtt: &MqttConfig) -> Result<MqttOptions, MqttError> {
    let mut options = MqttOptions::new(mqtt.client_id.clone(), mqtt.host.clone(), mqtt.port);
    options.set_keep_alive(keep_alive(mqtt));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    let max = usize::try_from(mqtt.max_packet_size).unwrap_or(usize::MAX);
    options.set_max_packet_size(max, max);
    if let Some(user) = &mqtt.username {
        let password = mqtt
            .password
            .as_ref()
            .map(|p| p.expose_str())
            .unwrap_or_default();
        options.set_credentials(user.clone(), password);
    }
    if let Some(tls) = &mqtt.tls {
        let config = tls_client_config(tls)?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(options)
}

/// Whole seconds (MQTT counts keep-alive in seconds; rumqttc refuses less
/// than one).
fn keep_alive(mqtt: &MqttConfig) -> std::time::Duration {
    std::time::Duration::from_secs(mqtt.keep_alive.as_secs().clamp(1, u64::from(u16::MAX)))
}

/// The rustls client config for `[mqtt.tls]`.
pub fn tls_client_config(tls: &TlsConfig) -> Result<ClientConfig, MqttError> {
    install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &tls.ca_file {
        Some(path) => roots_from(path)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(format!("protocol versions: {e}")))?
        .with_root_certificates(roots);
    match (&tls.cert_file, &tls.key) {
        (Some(cert_file), Some(key)) => {
            let chain = read_certs(cert_file)?;
            let key = PrivateKeyDer::from_pem_slice(key.expose()).map_err(|e| {
                MqttError::Tls(format!(
                    "client key (key_file for {}): no usable PEM private key: {e}",
                    cert_file.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                MqttError::Tls(format!(
                    "client certificate {} and its key do not go together: {e}",
                    cert_file.display()
                ))
            })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(MqttError::Tls(
            "mutual TLS needs both cert_file and key_file (or neither)".into(),
        )),
    }
}

fn roots_from(path: &Path) -> Result<RootCertStore, MqttError> {
    let certs = read_certs(path)?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(MqttError::Tls(format!(
            "{}: none of its {ignored} certificate(s) is a usable CA certificate",
            path.display()
        )));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, MqttError> {
    let mut tried: Vec<PathBuf> = Vec::new();
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        tried.push(PathBuf::from(file));
    }
    tried.extend(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from));
    match tried.iter().find(|p| p.is_file()) {
        Some(path) => roots_from(path),
        None => Err(MqttError::Tls(format!(
            "no ca_file given and no system CA bundle found (tried {}); set [mqtt.tls] ca_file",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttError> {
    let pem = std::fs::read(path)
        .map_err(|e| MqttError::Tls(format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MqttError::Tls(format!("{}: invalid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(MqttError::Tls(format!(
            "{}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_persistent_and_inbound_acks_are_manual() {
        let cfg = ForwarderConfig {
            mqtt: crate::config::MqttConfig {
                host: "localhost".into(),
                port: 1883,
                client_id: "fg-pump-hall".into(),
                username: None,
                password: None,
                tls: None,
                topic_prefix: "fieldgate".into(),
                qos: crate::config::Qos::AtLeastOnce,
                keep_alive: std::time::Duration::from_secs(30),
                max_inflight: 10,
                live_share: 0.5,
                per_tag_topics: false,
                max_packet_size: 1 << 20,
            },
            topics: crate::contract::Topics::new("fieldgate", "s", "gw"),
            config_hash: "h".into(),
            started: std::time::SystemTime::UNIX_EPOCH,
            store: None,
        };
        let options = mqtt_options(&cfg).unwrap();
        assert!(!options.clean_session(), "the broker keeps the session");
        assert_eq!(options.client_id(), "fg-pump-hall", "under a stable id");
        assert!(options.manual_acks(), "inbound acked once handled");
    }

    #[test]
    fn id_space_is_larger_than_the_window() {
        assert_eq!(packet_id_space(100), 208);
        assert_eq!(packet_id_space(1), 10);
        assert_eq!(packet_id_space(u16::MAX), u16::MAX);
    }

    #[test]
    fn without_ca_file_the_system_bundle_is_used() {
        let tls = TlsConfig {
            ca_file: None,
            cert_file: None,
            key: None,
        };
        let bundle = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from))
            .any(|p| p.is_file());
        match tls_client_config(&tls) {
            Ok(_) => assert!(bundle),
            Err(e) => assert!(!bundle && e.to_string().contains("ca_file"), "{e}"),
        }
    }

    #[test]
    fn tls_errors_name_the_file() {
        let tls = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            cert_file: None,
            key: None,
        };
        let err = tls_client_config(&tls).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");

        let dir = std::env::temp_dir().join(format!("fieldgate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"not a certificate\n").unwrap();
        let tls = TlsConfig {
            ca_file: Some(empty.clone()),
            cert_file: None,
            key: None,
        };
        let err = tls_client_config(&tls).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
