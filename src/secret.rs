//! Tokens and secrets are compared in one way only: in constant time.
//!
//! A `==` on a token or a client secret is a timing oracle: how long the comparison takes shows
//! how much of a guess matched. Clippy cannot see that, so these types make the safe way the
//! only way. `Digest` (SHA-256 of a token or secret, the key of every token cache) has an `Eq`
//! that is constant-time and no way out to its bytes except a short prefix for log correlation;
//! `KeptToken` (a token kept whole, per connection) has no `Eq` at all, only `matches`, which
//! is constant-time. Neither shows its contents in `Debug`. The test at the end fails if a
//! constant-time primitive or a derived comparison appears anywhere else in `src/`.

use std::hash::{Hash, Hasher};

use aws_lc_rs::{constant_time, digest};

/// SHA-256 of a token or secret: a collision would be an authentication bypass, so never a
/// fast hash (the `Hash` impl only spreads the digest over a table's buckets).
#[derive(Clone, Copy)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of(bytes: impl AsRef<[u8]>) -> Digest {
        let d = digest::digest(&digest::SHA256, bytes.as_ref());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Digest(out)
    }

    /// The first 4 bytes in hex: enough to correlate log lines, useless for replay.
    pub fn short_hex(&self) -> String {
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Digest) -> bool {
        constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl Eq for Digest {}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // A prefix is plenty for bucket spreading; equality still compares all 32 bytes.
        state.write(&self.0[..8]);
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest(..)")
    }
}

/// A token kept whole to recognise it when it comes again (see `token_cache::LastToken`).
pub struct KeptToken(Box<str>);

impl KeptToken {
    pub fn new(token: &str) -> KeptToken {
        KeptToken(token.into())
    }

    /// Whether `presented` is this token, compared in full and in constant time (a length
    /// mismatch returns at once: the length of a bearer token is not a secret).
    pub fn matches(&self, presented: &str) -> bool {
        constant_time::verify_slices_are_equal(self.0.as_bytes(), presented.as_bytes()).is_ok()
    }
}

impl std::fmt::Debug for KeptToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;

    #[test]
    fn digests_equal_only_for_the_same_bytes() {
        assert_eq!(Digest::of(b"abc"), Digest::of(b"abc"));
        assert_ne!(Digest::of(b"abc"), Digest::of(b"abd"));
        // Same first 8 bytes of digest are vanishingly unlikely; equality must look past them anyway.
        let mut a = Digest::of(b"abc");
        a.0[31] ^= 1;
        assert_ne!(a, Digest::of(b"abc"));
        let set: HashSet<Digest> = [Digest::of(b"x"), Digest::of(b"y"), Digest::of(b"x")].into();
        assert_eq!(set.len(), 2);
    }

    /// Different digests hash apart: a hash that ignored them would put every cached token in
    /// one bucket, and a flood of tokens would make each lookup a scan.
    #[test]
    fn digests_spread_over_buckets() {
        use std::hash::BuildHasher;
        let state = std::collections::hash_map::RandomState::new();
        let hashes: HashSet<u64> = (0..64).map(|i| state.hash_one(Digest::of(format!("token-{i}")))).collect();
        assert_eq!(hashes.len(), 64);
    }

    #[test]
    fn short_hex_is_the_digest_prefix() {
        // SHA-256("abc") = ba7816bf 8f01cfea …
        assert_eq!(Digest::of(b"abc").short_hex(), "ba7816bf");
    }

    #[test]
    fn kept_token_matches_only_itself() {
        let kept = KeptToken::new("eyJ.token.sig");
        assert!(kept.matches("eyJ.token.sig"));
        for other in ["eyJ.token.sih", "eyJ.token.si", "eyJ.token.sig.", ""] {
            assert!(!kept.matches(other), "{other:?}");
        }
    }

    #[test]
    fn debug_never_shows_contents() {
        assert_eq!(format!("{:?}", KeptToken::new("secret-token")), "KeptToken(..)");
        assert_eq!(format!("{:?}", Digest::of(b"secret-token")), "Digest(..)");
    }

    /// The guard for the rule above: constant-time primitives are used here and nowhere else
    /// (so every comparison of a token or secret goes through these types), and these types
    /// never derive a comparison.
    #[test]
    fn only_this_module_compares_secrets() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        visit(&root, &mut |path, text| {
            if path.ends_with("secret.rs") {
                return;
            }
            for (i, line) in text.lines().enumerate() {
                if line.contains("constant_time") || line.contains("verify_slices_are_equal") {
                    offenders.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        });
        assert!(offenders.is_empty(), "compare tokens and secrets through crate::secret:\n{}", offenders.join("\n"));

        let own = include_str!("secret.rs");
        let derives: Vec<_> =
            own.lines().filter(|l| l.trim_start().starts_with("#[derive") && l.contains("Eq")).collect();
        assert!(derives.is_empty(), "a derived comparison is not constant-time: {derives:?}");
    }

    fn visit(dir: &Path, f: &mut impl FnMut(&Path, &str)) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, f);
            } else if path.extension().is_some_and(|e| e == "rs") {
                f(&path, &std::fs::read_to_string(&path).unwrap());
            }
        }
    }
}
