//! The `TOKENGATE_*` variable of every scalar setting, derived from the `raw` types themselves.
//!
//! A probing `Deserializer` walks `RawConfig` the way serde would and reports, for a key path,
//! what the type asks for there: a section (its field list), a list, a map or a scalar. From that
//! the table of variables is built once: a setting added to `raw.rs` gets its variable with no
//! change here. Naming:
//!
//! - a top-level scalar `key` → `TOKENGATE_KEY`;
//! - a scalar `key` of section `section` → `TOKENGATE_SECTION_KEY`;
//! - a scalar `key` of the single issuer (`issuers[0]`) → `TOKENGATE_ISSUER_KEY`, and of its
//!   sub-section `sub` (`introspection`) → `TOKENGATE_SUB_KEY`;
//! - except the keys in `SHORT`, which keep their short name (one variable per key, never two).
//!
//! Lists of scalars are settable (space- or comma-separated); lists of sections (`issuers`,
//! `routes`, `claims`) and maps (`identity.headers`) are file-only.

use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

use super::raw::{RawConfig, RawIssuer};

/// Which part of the config a variable writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A key of the document (`server.shutdown_grace`).
    Global,
    /// A key of the single issuer (`issuers[0].leeway`); the single-issuer rules apply.
    Issuer,
}

/// What a variable's value must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// One string, number, boolean or duration: whatever the field's type accepts.
    Scalar,
    /// One of these words.
    Word(&'static [&'static str]),
    /// A space- or comma-separated list of scalars.
    List,
}

/// One `TOKENGATE_*` variable and the config key it sets.
#[derive(Debug, Clone)]
pub struct Setting {
    pub var: String,
    pub scope: Scope,
    /// Key path under the document (`Global`) or under `issuers[0]` (`Issuer`).
    pub path: Vec<&'static str>,
    pub kind: Kind,
    /// Holds a secret: it has a `_FILE` variant and its value is never shown.
    pub secret: bool,
}

impl Setting {
    /// The key as errors name it: `server.shutdown_grace`, `issuers[0].introspection.timeout`.
    pub fn field(&self) -> String {
        match self.scope {
            Scope::Global => self.path.join("."),
            Scope::Issuer => format!("issuers[0].{}", self.path.join(".")),
        }
    }

    /// `X_FILE`, for a secret.
    pub fn file_var(&self) -> Option<String> {
        self.secret.then(|| format!("{}{FILE_SUFFIX}", self.var))
    }
}

/// The suffix of the variable naming a file that holds a secret.
pub const FILE_SUFFIX: &str = "_FILE";

/// Keys whose variable has a short name of its own (the one-issuer sidecar's), rather than the
/// generated one. Documented in `config/sidecar-env.md`.
pub const SHORT: &[(&str, Scope, &str)] = &[
    ("TOKENGATE_UPSTREAM", Scope::Global, "upstream.url"),
    ("TOKENGATE_ISSUER", Scope::Issuer, "issuer"),
    ("TOKENGATE_JWKS_URI", Scope::Issuer, "jwks_uri"),
    ("TOKENGATE_AUDIENCE", Scope::Issuer, "audiences"),
    ("TOKENGATE_AUDIENCE_CHECK", Scope::Issuer, "audience_check"),
    ("TOKENGATE_ALGORITHMS", Scope::Issuer, "algorithms"),
    ("TOKENGATE_INTROSPECTION_URI", Scope::Issuer, "introspection.endpoint"),
    ("TOKENGATE_CLIENT_ID", Scope::Issuer, "introspection.client_id"),
    ("TOKENGATE_CLIENT_SECRET", Scope::Issuer, "introspection.client_secret"),
];

/// Keys of type `raw::OneOrMany` (serde's untagged enums look free-form to the probe).
const ONE_OR_MANY: &[&str] = &["client_id_claim", "scope_claim", "roles_claim"];

/// A key holds a secret when its name says so; `print` redacts the same keys.
fn is_secret(key: &str) -> bool {
    key == "secret" || key.ends_with("_secret") || key.contains("password") || key.ends_with("private_key")
}

/// Every variable, in the order of the keys in `raw.rs`.
pub fn settings() -> &'static [Setting] {
    static TABLE: OnceLock<Vec<Setting>> = OnceLock::new();
    TABLE.get_or_init(build)
}

fn build() -> Vec<Setting> {
    let mut out = Vec::new();
    walk::<RawConfig>(Scope::Global, &mut Vec::new(), &mut out);
    walk::<RawIssuer>(Scope::Issuer, &mut Vec::new(), &mut out);
    out
}

/// Adds a setting for every scalar (or list of scalars) under `prefix` of `T`, recursing into
/// sections.
fn walk<T: DeserializeOwned>(scope: Scope, prefix: &mut Vec<&'static str>, out: &mut Vec<Setting>) {
    let Shape::Struct(fields) = shape::<T>(&path_of(prefix)) else { unreachable!("{} is a section", prefix.join(".")) };
    for &key in fields {
        prefix.push(key);
        let path = path_of(prefix);
        let kind = match shape::<T>(&path) {
            Shape::Scalar => Some(Kind::Scalar),
            Shape::Enum(words) => Some(Kind::Word(words)),
            Shape::Seq => {
                let mut element = path.clone();
                element.push(Seg::Element);
                matches!(shape::<T>(&element), Shape::Scalar | Shape::Enum(_)).then_some(Kind::List)
            }
            Shape::Struct(_) => {
                walk::<T>(scope, prefix, out);
                None
            }
            // A string or a list (`raw::OneOrMany`): a list, from the environment.
            Shape::Any if ONE_OR_MANY.contains(&key) => Some(Kind::List),
            // Maps and free-form values (`identity.headers`, claim values) are file-only.
            Shape::Map | Shape::Any => None,
        };
        if let Some(kind) = kind {
            out.push(Setting { var: name(scope, prefix), scope, path: prefix.clone(), kind, secret: is_secret(key) });
        }
        prefix.pop();
    }
}

fn name(scope: Scope, path: &[&str]) -> String {
    let dotted = path.join(".");
    if let Some((short, ..)) = SHORT.iter().find(|(_, s, key)| *s == scope && *key == dotted) {
        return short.to_string();
    }
    let words: Vec<&str> = match (scope, path) {
        (Scope::Issuer, [key]) => vec!["issuer", key],
        _ => path.to_vec(),
    };
    format!("TOKENGATE_{}", words.join("_").to_ascii_uppercase())
}

fn path_of(keys: &[&'static str]) -> Vec<Seg> {
    keys.iter().map(|k| Seg::Field(k)).collect()
}

/// One step of a probe: into a section's key, or into a list's element.
#[derive(Debug, Clone, Copy)]
enum Seg {
    Field(&'static str),
    Element,
}

/// What a type asks the deserializer for at some key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Struct(&'static [&'static str]),
    Seq,
    Map,
    Enum(&'static [&'static str]),
    Scalar,
    /// `deserialize_any`: a self-describing value such as `serde_json::Value`.
    Any,
}

fn shape<T: DeserializeOwned>(path: &[Seg]) -> Shape {
    match T::deserialize(Probe(path)) {
        Err(ProbeError::Found(shape)) => shape,
        Err(ProbeError::Other(m)) => panic!("probing {path:?}: {m}"),
        Ok(_) => panic!("probing {path:?}: nothing was asked for"),
    }
}

/// Not a failure: how the probe reports what it found, through serde's error path.
#[derive(Debug)]
enum ProbeError {
    Found(Shape),
    Other(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        ProbeError::Other(msg.to_string())
    }
}

/// Follows `0` down the type; at its end, reports what the type asks for.
struct Probe<'a>(&'a [Seg]);

macro_rules! scalars {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
            Err(ProbeError::Found(Shape::Scalar))
        })*
    };
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    scalars!(deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128 deserialize_f32
        deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_identifier deserialize_ignored_any);

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Found(Shape::Any))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Found(Shape::Scalar))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, ProbeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        match self.0 {
            [Seg::Element, rest @ ..] => visitor.visit_seq(OneElement(Some(Probe(rest)))),
            _ => Err(ProbeError::Found(Shape::Seq)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Found(Shape::Map))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        match self.0 {
            [] => Err(ProbeError::Found(Shape::Struct(fields))),
            [Seg::Field(key), rest @ ..] => visitor.visit_map(OneKey(Some((key, Probe(rest))))),
            [Seg::Element, ..] => Err(ProbeError::Other("a section has no elements".into())),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeError> {
        Err(ProbeError::Found(Shape::Enum(variants)))
    }
}

/// A section with one key, whose value is probed further.
struct OneKey<'a>(Option<(&'static str, Probe<'a>)>);

impl<'de> MapAccess<'de> for OneKey<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, ProbeError> {
        match &self.0 {
            Some((key, _)) => seed.deserialize((*key).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ProbeError> {
        let (_, probe) = self.0.take().ok_or_else(|| ProbeError::Other("no value".into()))?;
        seed.deserialize(probe)
    }
}

/// A list with one element, probed further.
struct OneElement<'a>(Option<Probe<'a>>);

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = ProbeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, ProbeError> {
        self.0.take().map(|probe| seed.deserialize(probe)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn find(var: &str) -> &'static Setting {
        settings().iter().find(|s| s.var == var).unwrap_or_else(|| panic!("{var} is not generated"))
    }

    /// The probe sees the raw types as serde does.
    #[test]
    fn shapes() {
        let f = |keys: &[&'static str]| shape::<RawConfig>(&path_of(keys));
        assert!(matches!(f(&[]), Shape::Struct(fields) if fields.contains(&"server")));
        assert_eq!(f(&["server", "shutdown_grace"]), Shape::Scalar);
        assert_eq!(f(&["trusted_proxies"]), Shape::Seq);
        assert_eq!(f(&["identity", "headers"]), Shape::Map);
        assert_eq!(f(&["paths", "encoded_slashes"]), Shape::Enum(&["refuse", "keep"]));
        let claim = [Seg::Field("routes"), Seg::Element, Seg::Field("claims"), Seg::Element, Seg::Field("equals")];
        assert_eq!(shape::<RawConfig>(&claim), Shape::Any);
    }

    /// Scalars of every section get `TOKENGATE_SECTION_KEY`; the single issuer's get
    /// `TOKENGATE_ISSUER_KEY` and its introspection's `TOKENGATE_INTROSPECTION_KEY`.
    #[test]
    fn names_and_fields() {
        let cases = [
            ("TOKENGATE_LISTEN", "listen", Kind::Scalar),
            ("TOKENGATE_REALM", "realm", Kind::Scalar),
            ("TOKENGATE_SERVER_SHUTDOWN_GRACE", "server.shutdown_grace", Kind::Scalar),
            ("TOKENGATE_JWKS_FETCH_TIMEOUT", "jwks.fetch_timeout", Kind::Scalar),
            ("TOKENGATE_TOKEN_CACHE_MAX_ENTRIES", "token_cache.max_entries", Kind::Scalar),
            ("TOKENGATE_TOKENS_MAX_BYTES", "tokens.max_bytes", Kind::Scalar),
            ("TOKENGATE_IDENTITY_FORWARD_AUTHORIZATION", "identity.forward_authorization", Kind::Scalar),
            ("TOKENGATE_TRUSTED_PROXIES", "trusted_proxies", Kind::List),
            ("TOKENGATE_DECISION_TRUSTED_PEERS", "decision.trusted_peers", Kind::List),
            ("TOKENGATE_PATHS_ENCODED_SLASHES", "paths.encoded_slashes", Kind::Word(&["refuse", "keep"])),
            ("TOKENGATE_UPSTREAM", "upstream.url", Kind::Scalar),
            ("TOKENGATE_ISSUER", "issuers[0].issuer", Kind::Scalar),
            ("TOKENGATE_ISSUER_LEEWAY", "issuers[0].leeway", Kind::Scalar),
            ("TOKENGATE_ISSUER_HMAC_SECRET", "issuers[0].hmac_secret", Kind::Scalar),
            ("TOKENGATE_AUDIENCE", "issuers[0].audiences", Kind::List),
            ("TOKENGATE_INTROSPECTION_URI", "issuers[0].introspection.endpoint", Kind::Scalar),
            ("TOKENGATE_CLIENT_SECRET", "issuers[0].introspection.client_secret", Kind::Scalar),
            ("TOKENGATE_INTROSPECTION_TIMEOUT", "issuers[0].introspection.timeout", Kind::Scalar),
        ];
        for (var, field, kind) in cases {
            let s = find(var);
            assert_eq!((s.field(), &s.kind), (field.to_string(), &kind), "{var}");
        }
        assert!(matches!(find("TOKENGATE_INTROSPECTION_AUTH_METHOD").kind, Kind::Word(w) if w.len() == 2));
    }

    /// One variable per key: no generated name where a short one exists, every short name
    /// names a real key, and file-only keys get none.
    #[test]
    fn one_variable_per_key() {
        let vars: Vec<&str> = settings().iter().map(|s| s.var.as_str()).collect();
        for gone in ["TOKENGATE_UPSTREAM_URL", "TOKENGATE_ISSUER_ISSUER", "TOKENGATE_INTROSPECTION_ENDPOINT"] {
            assert!(!vars.contains(&gone), "{gone}");
        }
        for (short, ..) in SHORT {
            assert!(vars.contains(short), "{short} names no key of the raw types");
        }
        for file_only in ["TOKENGATE_ISSUERS", "TOKENGATE_ROUTES", "TOKENGATE_IDENTITY_HEADERS"] {
            assert!(!vars.iter().any(|v| v.starts_with(file_only)), "{file_only}");
        }
        let fields: HashSet<String> = settings().iter().map(Setting::field).collect();
        assert_eq!(fields.len(), settings().len(), "two variables set one key");
    }

    /// Every name, with the `_FILE` names, is distinct, and none looks like a Kubernetes
    /// service link (those are ignored) or a `_FILE` name of something else.
    #[test]
    fn names_never_collide() {
        let mut all: Vec<String> = settings().iter().map(|s| s.var.clone()).collect();
        all.extend(settings().iter().filter_map(Setting::file_var));
        let unique: HashSet<&String> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "{all:?}");
        for s in settings() {
            assert!(!s.var.starts_with("TOKENGATE_SERVICE_") && !s.var.starts_with("TOKENGATE_PORT"), "{}", s.var);
            assert!(!s.var.ends_with(FILE_SUFFIX), "{}", s.var);
        }
    }

    /// A key added to a section gets its variable with no change here (the drain work adds
    /// `server.drain_delay`, a humantime duration, next to `shutdown_grace`).
    #[test]
    fn new_keys_get_a_variable() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            server: Option<Server>,
        }
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Server {
            #[serde(with = "humantime_serde", default)]
            drain_delay: Option<std::time::Duration>,
            new_secret: Option<String>,
        }
        let mut out = Vec::new();
        walk::<Doc>(Scope::Global, &mut Vec::new(), &mut out);
        let got: Vec<(&str, String, bool)> = out.iter().map(|s| (s.var.as_str(), s.field(), s.secret)).collect();
        assert_eq!(
            got,
            [
                ("TOKENGATE_SERVER_DRAIN_DELAY", "server.drain_delay".to_string(), false),
                ("TOKENGATE_SERVER_NEW_SECRET", "server.new_secret".to_string(), true),
            ]
        );
    }

    /// Exactly the two secrets of today are secrets; a new `*_secret` key would be one too.
    #[test]
    fn secrets() {
        let secret: Vec<String> = settings().iter().filter(|s| s.secret).map(Setting::field).collect();
        assert_eq!(secret, ["issuers[0].hmac_secret", "issuers[0].introspection.client_secret"]);
        assert_eq!(find("TOKENGATE_CLIENT_SECRET").file_var().as_deref(), Some("TOKENGATE_CLIENT_SECRET_FILE"));
        assert_eq!(find("TOKENGATE_CLIENT_ID").file_var(), None);
        assert!(is_secret("key_password") && !is_secret("secretary") && !is_secret("client_id"));
    }
}
