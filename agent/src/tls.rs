//! Which certificate authorities the agent trusts for HTTPS to S3.
//!
//! The static agent runs on whatever distribution the suspect has, and sometimes in a minimal
//! chroot or container without a CA store, where a TLS handshake with S3 would fail. So: the
//! system store when there is one (it may hold a corporate proxy's CA; `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` are honoured), and the Mozilla roots bundled in the binary otherwise.

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, tls::rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine;

/// Where the trusted roots came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// The system's CA store (or `SSL_CERT_FILE` / `SSL_CERT_DIR`), with this many certificates.
    System(usize),
    /// No system store was found: the bundled Mozilla roots, this many.
    Bundled(usize),
}

impl std::fmt::Display for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::System(n) => write!(f, "{n} CA certificates from the system store"),
            Self::Bundled(n) => write!(
                f,
                "no system CA store found; {n} bundled Mozilla root certificates"
            ),
        }
    }
}

/// The trust store: system roots when `system_certs` > 0, bundled ones otherwise.
pub fn trust_store(system_certs: usize) -> (TrustStore, Roots) {
    if system_certs > 0 {
        return (
            TrustStore::empty().with_native_roots(true),
            Roots::System(system_certs),
        );
    }
    let mut store = TrustStore::empty().with_native_roots(false);
    for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        store.add_pem_certificate(pem(der.as_ref()));
    }
    (
        store,
        Roots::Bundled(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()),
    )
}

/// PEM text of a DER certificate (what the SDK's trust store takes).
fn pem(der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

/// The HTTPS client for every AWS call the agent makes (rustls with AWS-LC).
pub fn https_client() -> SharedHttpClient {
    let found = rustls_native_certs::load_native_certs().certs.len();
    let (store, roots) = trust_store(found);
    tracing::info!("TLS: trusting {roots}");
    let context = TlsContext::builder().with_trust_store(store).build();
    let builder = Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
    match context {
        Ok(ctx) => builder.tls_context(ctx).build_https(),
        Err(e) => {
            tracing::warn!("TLS: trust store rejected ({e}); using the SDK's default");
            builder.build_https()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn bundled_roots_survive_the_pem_round_trip() {
        let (_, roots) = trust_store(0);
        assert!(matches!(roots, Roots::Bundled(n) if n > 100));
        for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            let back = CertificateDer::from_pem_slice(&pem(der.as_ref()));
            assert!(back.is_ok_and(|c| c.as_ref() == der.as_ref()));
        }
    }

    #[test]
    fn system_store_wins_when_present() {
        assert_eq!(trust_store(3).1, Roots::System(3));
        assert!(trust_store(0).1.to_string().contains("no system CA store"));
    }
}
