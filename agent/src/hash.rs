//! SHA-256 for evidence streams.
//!
//! The raw-stream hash is the acquisition's sequential ceiling, so it uses AWS-LC's assembly
//! (already linked for TLS), which picks SHA-NI, AVX2 or AVX-512 at run time. On a Xeon without
//! SHA-NI a one-off comparison (before `packaging/bench/hash.sh` existed) gave 341 MB/s against
//! 210 MB/s for the `sha2` crate's portable code; on a machine with SHA-NI both use it and tie
//! (`packaging/bench/hash.sh 512 3`, 2026-12-02: 1739 against 1738 MB/s). Rerun the script on
//! the target CPU before relying on either figure. The `sha2` crate stays as the independent
//! reference the tests compare against.

/// An incremental SHA-256.
pub struct Sha256(aws_lc_rs::digest::Context);

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

/// A finished SHA-256: its 32 bytes, as AWS-LC returned them (never copied into a buffer whose
/// length could disagree).
pub struct Digest(aws_lc_rs::digest::Digest);

impl AsRef<[u8]> for Digest {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({})", hex::encode(self))
    }
}

impl Sha256 {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: impl AsRef<[u8]>) {
        self.0.update(data.as_ref());
    }

    /// The digest.
    pub fn finalize(self) -> Digest {
        Digest(self.0.finish())
    }

    /// The digest of one buffer.
    pub fn digest(data: impl AsRef<[u8]>) -> Digest {
        let mut h = Self::new();
        h.update(data);
        h.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest;

    #[test]
    fn digests_are_32_bytes() {
        assert_eq!(Sha256::digest(b"").as_ref().len(), 32);
        assert_eq!(Sha256::new().finalize().as_ref().len(), 32);
    }

    #[test]
    fn known_answer() {
        assert_eq!(
            hex::encode(Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    proptest! {
        #[test]
        fn matches_the_reference_implementation(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut ours = Sha256::new();
            let mut reference = sha2::Sha256::new();
            for c in &chunks {
                ours.update(c);
                reference.update(c);
            }
            let (ours, reference) = (ours.finalize(), reference.finalize());
            prop_assert_eq!(ours.as_ref(), reference.as_slice());
        }
    }
}
