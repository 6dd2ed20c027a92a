//! SHA-256 for evidence streams.
//!
//! The raw-stream hash is the acquisition's sequential ceiling, so it uses AWS-LC's assembly
//! (already linked for TLS), which picks SHA-NI, AVX2 or AVX-512 at run time. On this project's
//! CI machines (Xeon without SHA-NI) it runs at 341 MB/s against 210 MB/s for the `sha2` crate's
//! portable code (`/tmp/shabench`, same run; see the issue notes). The `sha2` crate stays as the
//! independent reference the tests compare against.

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
    pub fn finalize(self) -> [u8; 32] {
        let d = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref().get(..32).unwrap_or(&[0u8; 32]));
        out
    }

    /// The digest of one buffer.
    pub fn digest(data: impl AsRef<[u8]>) -> [u8; 32] {
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
            prop_assert_eq!(ours.finalize().to_vec(), reference.finalize().to_vec());
        }
    }
}
