//! Offline licenses: a small JSON file whose terms are signed with Ed25519.
//!
//! ```json
//! {"terms":"{\"licensee\":\"ACME\",\"max_cores\":64,\"not_before\":1767225600,\"not_after\":1798761600}",
//!  "signature":"9f2c…"}
//! ```
//!
//! The terms travel as a string, so the signed bytes are exactly the bytes in the file
//! (no canonical-JSON question). Times are UNIX seconds. Keys and signatures are hex.
//! `chorus license keygen|sign|verify` make and check such files with the operator's
//! own key pair; masters verify them with the public key alone.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What a license grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// Who the license is for.
    pub licensee: String,
    /// Most CPU cores (masters and media nodes together) the cluster may run.
    pub max_cores: u32,
    /// Valid from (UNIX seconds).
    pub not_before: u64,
    /// Valid until (UNIX seconds).
    pub not_after: u64,
}

/// The file as stored.
#[derive(Debug, Serialize, Deserialize)]
struct SignedFile {
    terms: String,
    signature: String,
}

/// Why a license file is not acceptable; the message is what operators read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("malformed license file: {0}")]
    Malformed(String),
    #[error("the license signature does not verify with the configured public key")]
    BadSignature,
    #[error("the license is valid only from {0} (UNIX seconds)")]
    NotYetValid(u64),
    #[error("the license expired at {0} (UNIX seconds)")]
    Expired(u64),
    #[error("the cluster runs {running} cores, over the license's {max}")]
    TooManyCores { running: u64, max: u32 },
}

/// A new key pair from the OS's CSPRNG: (signing key, public key), both hex.
pub fn keygen() -> (String, String) {
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
    let signing = SigningKey::from_bytes(&secret);
    (
        hex(&signing.to_bytes()),
        hex(signing.verifying_key().as_bytes()),
    )
}

/// The public key of a hex signing key.
pub fn public_key_of(signing_key: &str) -> Result<String, Invalid> {
    Ok(hex(signing_key_from(signing_key)?
        .verifying_key()
        .as_bytes()))
}

/// Signs `terms` with the hex `signing_key`; returns the file's contents.
pub fn sign(terms: &Terms, signing_key: &str) -> Result<String, Invalid> {
    let key = signing_key_from(signing_key)?;
    let terms = serde_json::to_string(terms).map_err(|e| Invalid::Malformed(e.to_string()))?;
    let signature = key.sign(terms.as_bytes());
    let file = SignedFile {
        terms,
        signature: hex(&signature.to_bytes()),
    };
    serde_json::to_string_pretty(&file).map_err(|e| Invalid::Malformed(e.to_string()))
}

/// Checks the file's signature with the hex `public_key` and returns its terms.
pub fn verify(contents: &str, public_key: &str) -> Result<Terms, Invalid> {
    let file: SignedFile =
        serde_json::from_str(contents).map_err(|e| Invalid::Malformed(e.to_string()))?;
    let key = VerifyingKey::from_bytes(&fixed::<32>(public_key, "public key")?)
        .map_err(|e| Invalid::Malformed(format!("public key: {e}")))?;
    let signature = Signature::from_bytes(&fixed::<64>(&file.signature, "signature")?);
    key.verify(file.terms.as_bytes(), &signature)
        .map_err(|_| Invalid::BadSignature)?;
    serde_json::from_str(&file.terms).map_err(|e| Invalid::Malformed(format!("terms: {e}")))
}

/// Reads the license file at `path` and verifies it with `public_key`; the error is the
/// sentence an operator reads.
pub fn load(path: &std::path::Path, public_key: &str) -> Result<Terms, String> {
    let contents = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the license file {}: {e}", path.display()))?;
    verify(&contents, public_key).map_err(|e| e.to_string())
}

impl Terms {
    /// Whether the terms allow running `cores` cores at `now` (UNIX seconds).
    pub fn allow(&self, now: u64, cores: u64) -> Result<(), Invalid> {
        if now < self.not_before {
            return Err(Invalid::NotYetValid(self.not_before));
        }
        if now > self.not_after {
            return Err(Invalid::Expired(self.not_after));
        }
        if cores > u64::from(self.max_cores) {
            return Err(Invalid::TooManyCores {
                running: cores,
                max: self.max_cores,
            });
        }
        Ok(())
    }
}

fn signing_key_from(hex_key: &str) -> Result<SigningKey, Invalid> {
    Ok(SigningKey::from_bytes(&fixed::<32>(
        hex_key,
        "signing key",
    )?))
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly `N` bytes from hex, or an error naming `what`.
fn fixed<const N: usize>(text: &str, what: &str) -> Result<[u8; N], Invalid> {
    let text = text.trim();
    let malformed = || Invalid::Malformed(format!("{what} must be {} hex digits", 2 * N));
    if text.len() != 2 * N || !text.is_ascii() {
        return Err(malformed());
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| malformed())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Terms {
        Terms {
            licensee: "ACME".into(),
            max_cores: 16,
            not_before: 1_000,
            not_after: 2_000,
        }
    }

    #[test]
    fn a_signed_file_verifies_and_allows_within_its_terms() {
        let (secret, public) = keygen();
        assert_eq!(public_key_of(&secret).unwrap(), public);
        let file = sign(&terms(), &secret).unwrap();
        let read = verify(&file, &public).unwrap();
        assert_eq!(read, terms());
        assert_eq!(read.allow(1_500, 16), Ok(()));
        assert_eq!(read.allow(999, 1), Err(Invalid::NotYetValid(1_000)));
        assert_eq!(read.allow(2_001, 1), Err(Invalid::Expired(2_000)));
        assert_eq!(
            read.allow(1_500, 17),
            Err(Invalid::TooManyCores {
                running: 17,
                max: 16
            })
        );
    }

    #[test]
    fn tampering_or_another_key_fails_the_signature() {
        let (secret, public) = keygen();
        let file = sign(&terms(), &secret).unwrap();
        // Raise the core limit inside the signed terms, leaving the signature as it is.
        let tampered = file.replace(r#"max_cores\":16"#, r#"max_cores\":1600"#);
        assert_ne!(tampered, file);
        assert_eq!(verify(&tampered, &public), Err(Invalid::BadSignature));
        let (_, other) = keygen();
        assert_eq!(verify(&file, &other), Err(Invalid::BadSignature));
    }

    #[test]
    fn malformed_inputs_are_named() {
        let (secret, public) = keygen();
        assert!(matches!(verify("{", &public), Err(Invalid::Malformed(_))));
        let file = sign(&terms(), &secret).unwrap();
        let Err(Invalid::Malformed(why)) = verify(&file, "abc") else {
            panic!("a short key must be refused");
        };
        assert!(why.contains("public key"), "{why}");
        assert!(matches!(sign(&terms(), "zz"), Err(Invalid::Malformed(_))));
    }
}
