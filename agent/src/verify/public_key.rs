//! The public key countersignatures are checked with: a PEM file or the KMS key itself.
//!
//! airf signs with one kind of key only (KMS `ECC_NIST_P256`, `ECDSA_SHA_256`), so anything else
//! is refused by name rather than failing later as a signature that "does not verify": an RSA
//! key, another curve, a private key given where the public half belongs.

use std::path::Path;

use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::der::Decode;
use p256::pkcs8::{DecodePublicKey, ObjectIdentifier, SubjectPublicKeyInfoRef};
use tokio::runtime::Handle;

use crate::s3_client::S3Options;

/// A key to check countersignatures with, and where it came from (for the report).
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// The P-256 public key.
    pub key: VerifyingKey,
    /// `file KEY.pem` or `KMS key ARN`.
    pub source: String,
}

/// Why no key could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The option names something that is not an ECDSA P-256 public key: a usage error.
    #[error("{0}")]
    Unusable(String),
    /// The key could not be read or fetched: verify could not run.
    #[error("{0}")]
    Unavailable(String),
}

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Names a key algorithm or curve people will recognise.
fn oid_name(oid: &ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".into(),
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.3.132.0.34" => "NIST P-384".into(),
        "1.3.132.0.35" => "NIST P-521".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        other => format!("OID {other}"),
    }
}

/// Reads a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
pub fn from_pem(pem: &[u8], source: &str) -> Result<VerifyingKey, KeyError> {
    let unusable = |why: String| KeyError::Unusable(format!("{source}: {why}"));
    let (label, der) = p256::pkcs8::der::pem::decode_vec(pem).map_err(|e| {
        unusable(format!(
            "not a PEM public key ({e}); give the SubjectPublicKeyInfo PEM that `openssl ec -pubout` writes"
        ))
    })?;
    if label.contains("PRIVATE KEY") {
        return Err(unusable(
            "this is a private key; give its public half (`openssl ec -in KEY -pubout`)".into(),
        ));
    }
    if label != "PUBLIC KEY" {
        return Err(unusable(format!(
            "a PEM {label:?}, not a \"PUBLIC KEY\" (SubjectPublicKeyInfo)"
        )));
    }
    from_spki_der(&der).map_err(unusable)
}

/// Reads a DER SubjectPublicKeyInfo (what KMS GetPublicKey returns).
fn from_spki_der(der: &[u8]) -> Result<VerifyingKey, String> {
    let spki = SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    let wrong = |what: String| {
        format!(
            "{what} key, but airf countersignatures are ECDSA on NIST P-256 (KMS key spec ECC_NIST_P256)"
        )
    };
    if spki.algorithm.oid != EC_PUBLIC_KEY {
        return Err(wrong(format!("an {}", oid_name(&spki.algorithm.oid))));
    }
    match spki.algorithm.parameters_oid() {
        Ok(curve) if curve == PRIME256V1 => {}
        Ok(curve) => return Err(wrong(format!("an EC {}", oid_name(&curve)))),
        Err(_) => return Err(wrong("an EC key without a named curve: not a P-256".into())),
    }
    VerifyingKey::from_public_key_der(der).map_err(|e| format!("not a valid P-256 point: {e}"))
}

/// Reads a PEM file.
pub fn from_pem_file(path: &Path) -> Result<PublicKey, KeyError> {
    let source = format!("file {}", path.display());
    let pem = std::fs::read(path)
        .map_err(|e| KeyError::Unusable(format!("cannot read --public-key {source}: {e}")))?;
    Ok(PublicKey {
        key: from_pem(&pem, &source)?,
        source,
    })
}

/// Builds a KMS client with the same settings (region, endpoint, retries, TLS) as the S3 one.
pub async fn kms_client(opts: &S3Options) -> aws_sdk_kms::Client {
    let shared = crate::s3_client::sdk_config(opts).await;
    let mut config = aws_sdk_kms::config::Builder::from(&shared);
    if shared.region().is_none() {
        config = config.region(aws_config::Region::new("us-east-1"));
    }
    aws_sdk_kms::Client::from_conf(config.build())
}

/// Refuses a KMS key that cannot have made airf's countersignatures.
fn check_kms_key(
    key: &str,
    spec: Option<&str>,
    usage: Option<&str>,
    algorithms: &[&str],
) -> Result<(), KeyError> {
    let refuse = |why: String| {
        KeyError::Unusable(format!(
            "--public-key-kms {key}: {why}; airf countersignatures come from an ECC_NIST_P256 SIGN_VERIFY key with ECDSA_SHA_256"
        ))
    };
    if spec != Some("ECC_NIST_P256") {
        return Err(refuse(format!(
            "key spec {}",
            spec.unwrap_or("(not reported)")
        )));
    }
    if usage.is_some_and(|u| u != "SIGN_VERIFY") {
        return Err(refuse(format!("key usage {}", usage.unwrap_or_default())));
    }
    if !algorithms.contains(&airf_evidence::custody::SIGNING_ALGORITHM) {
        return Err(refuse(format!("signing algorithms {algorithms:?}")));
    }
    Ok(())
}

fn describe_kms<E, R>(key: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let fix = match err {
        SdkError::ServiceError(se) => match se.err().code() {
            Some("AccessDeniedException") => {
                "; the credentials in use need kms:GetPublicKey on that key (the signing key's policy must allow this principal)"
            }
            Some("NotFoundException" | "InvalidArnException") => {
                "; check the key ARN and --region (the key lives in the Security account)"
            }
            _ => "",
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            "; check the network, --endpoint-url / AWS_ENDPOINT_URL(_KMS) and --region"
        }
        _ => "",
    };
    format!(
        "KMS GetPublicKey on {key} failed: {}{fix}",
        DisplayErrorContext(err)
    )
}

/// The key spec. KeySpec is the current field; some servers (moto 5) send only the deprecated
/// CustomerMasterKeySpec, which names the same specs.
#[expect(
    deprecated,
    reason = "the deprecated field is read only when KeySpec is absent"
)]
fn key_spec(out: &aws_sdk_kms::operation::get_public_key::GetPublicKeyOutput) -> Option<&str> {
    out.key_spec()
        .map(|s| s.as_str())
        .or_else(|| out.customer_master_key_spec().map(|s| s.as_str()))
}

/// Fetches the public half of the KMS key `key` (kms:GetPublicKey).
pub fn from_kms(
    client: &aws_sdk_kms::Client,
    rt: &Handle,
    key: &str,
) -> Result<PublicKey, KeyError> {
    let out = rt
        .block_on(client.get_public_key().key_id(key).send())
        .map_err(|e| KeyError::Unavailable(describe_kms(key, &e)))?;
    let spec = key_spec(&out);
    let algorithms: Vec<&str> = out
        .signing_algorithms()
        .iter()
        .map(|a| a.as_str())
        .collect();
    check_kms_key(key, spec, out.key_usage().map(|u| u.as_str()), &algorithms)?;
    let der = out.public_key().ok_or_else(|| {
        KeyError::Unavailable(format!("KMS GetPublicKey on {key} returned no key"))
    })?;
    let key_id = out.key_id().unwrap_or(key);
    Ok(PublicKey {
        key: from_spki_der(der.as_ref())
            .map_err(|e| KeyError::Unusable(format!("--public-key-kms {key}: {e}")))?,
        source: format!("KMS key {key_id}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_p256_public_key_is_read() {
        let from_signing = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = p256::pkcs8::EncodePublicKey::to_public_key_pem(
            from_signing.verifying_key(),
            p256::pkcs8::LineEnding::LF,
        )
        .unwrap();
        assert_eq!(
            from_pem(pem.as_bytes(), "t").unwrap(),
            *from_signing.verifying_key()
        );
    }

    #[test]
    fn other_keys_are_refused_by_name() {
        // Made with `openssl genrsa 1024 | openssl rsa -pubout`, `openssl ecparam -name
        // secp384r1 -genkey | openssl ec -pubout` and `openssl genpkey -algorithm ed25519 |
        // openssl pkey -pubout`.
        let rsa = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDPxCbTe/N7TDMLnghWJ4dc5IXV
dmoUL860K7AS6AYwwFDVZxnA1siEutALNfGoqpFzf2SITg2gsEtyxuyKi5ekna56
+uYXp0/QroWT2TyOhbBSQRmRkYdufmnBffoMC8OR0lLBKmEMN1DDn4pSZLbJPIP3
VqllJ7AnzMEKfXUjYQIDAQAB
-----END PUBLIC KEY-----
";
        let p384 = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEJHZBM7DXjR6kZ1KB/Jc81DViYojFxO1Y
2wlxOUA1xx6oYgsWCpq4FZbOPwPc5WrgbjuT9/O3HLpooZsXtB8bA5BgOtmy+txY
sC0pNzsLXLjSfVnG6Xo/vE4n9cn5C+wV
-----END PUBLIC KEY-----
";
        let ed25519 = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEArbY8JXzNyaDxkfIhPw6V9SHphcRO5rWCxlg4UHlwCPY=
-----END PUBLIC KEY-----
";
        for (pem, named) in [
            (rsa, "an RSA key"),
            (p384, "an EC NIST P-384 key"),
            (ed25519, "an Ed25519 key"),
        ] {
            let e = from_pem(pem.as_bytes(), "k.pem").unwrap_err();
            assert!(
                matches!(&e, KeyError::Unusable(m) if m.contains(named) && m.contains("P-256")),
                "{e}"
            );
        }

        let private = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let e = from_pem(private.as_bytes(), "k.pem").unwrap_err();
        assert!(
            e.to_string().contains("private key") && e.to_string().contains("-pubout"),
            "{e}"
        );

        let e = from_pem(b"not pem", "x").unwrap_err();
        assert!(e.to_string().contains("not a PEM public key"), "{e}");
    }

    #[test]
    fn kms_keys_of_another_kind_are_refused() {
        assert!(
            check_kms_key(
                "k",
                Some("ECC_NIST_P256"),
                Some("SIGN_VERIFY"),
                &["ECDSA_SHA_256"]
            )
            .is_ok()
        );
        for (spec, usage, algs) in [
            (
                Some("RSA_2048"),
                Some("SIGN_VERIFY"),
                vec!["RSASSA_PSS_SHA_256"],
            ),
            (
                Some("ECC_NIST_P384"),
                Some("SIGN_VERIFY"),
                vec!["ECDSA_SHA_384"],
            ),
            (Some("SYMMETRIC_DEFAULT"), Some("ENCRYPT_DECRYPT"), vec![]),
            (None, None, vec![]),
        ] {
            let e = check_kms_key("k", spec, usage, &algs).unwrap_err();
            assert!(
                matches!(&e, KeyError::Unusable(m) if m.contains("ECC_NIST_P256")),
                "{e}"
            );
        }
    }
}
