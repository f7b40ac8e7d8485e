//! The JSON Schema of the config file (`tokengate schema`, shipped as
//! `config/tokengate.schema.json`): the shipped copy is what the binary generates, every example
//! config validates against it, and it refuses what the loader refuses (unknown keys, wrong
//! types, bad enum spellings and durations). The validator is a real one, Python's `jsonschema`
//! (`config/check-schema.py`); documents reach it as JSON converted by the YAML parser tokengate
//! itself uses, so both judge the same data.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tokengate::config::load_text;
use tokengate::config::raw::RawConfig;

const BIN: &str = env!("CARGO_BIN_EXE_tokengate");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SHIPPED: &str = "config/tokengate.schema.json";
const REGENERATE: &str = "cargo run -q -- schema > config/tokengate.schema.json";

/// Every tokengate config in the repository, with the `${NAME}` values it needs.
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    (
        "config/tokengate.example.yaml",
        &[("IDP_SECRET", "an idp secret of at least thirty-two bytes"), ("INTROSPECTION_CLIENT_SECRET", "s3cret")],
    ),
    (
        "config/demo.yaml",
        &[
            ("DEMO_LISTEN", "127.0.0.1:8080"),
            ("DEMO_UPSTREAM", "http://127.0.0.1:8081"),
            ("DEMO_ISSUER", "http://127.0.0.1:9400"),
        ],
    ),
    ("deploy/kustomize/base/tokengate.yaml", &[]),
    ("config/upstreams.yaml", &[]),
    ("config/tls.yaml", &[]),
    // One per identity provider (README "Your identity provider").
    (
        "config/idp/auth0.yaml",
        &[
            UPSTREAM,
            ("AUTH0_DOMAIN", "acme.eu.auth0.com"),
            ("AUTH0_AUDIENCE", "https://api.example.com"),
            ("AUTH0_JOBS_CLIENT_ID", "jobs"),
        ],
    ),
    (
        "config/idp/authelia.yaml",
        &[UPSTREAM, ("AUTHELIA_URL", "https://auth.example.com"), ("AUTHELIA_INTROSPECTION_SECRET", "s3cret")],
    ),
    (
        "config/idp/cognito.yaml",
        &[
            UPSTREAM,
            ("COGNITO_REGION", "eu-west-1"),
            ("COGNITO_USER_POOL_ID", "eu-west-1_AbC"),
            ("COGNITO_WEB_CLIENT_ID", "web"),
            ("COGNITO_JOBS_CLIENT_ID", "jobs"),
        ],
    ),
    (
        "config/idp/entra.yaml",
        &[
            UPSTREAM,
            ("ENTRA_API_CLIENT_ID", "00000000-0000-0000-0000-000000000001"),
            ("ENTRA_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("ENTRA_PARTNER_TENANT_ID", "11111111-86f1-41af-91ab-2d7cd011db47"),
        ],
    ),
    ("config/idp/google.yaml", &[UPSTREAM, ("GOOGLE_CLIENT_ID", "1234.apps.googleusercontent.com")]),
    ("config/idp/keycloak.yaml", &[UPSTREAM, ("KEYCLOAK_URL", "https://sso.example.com"), ("KEYCLOAK_REALM", "acme")]),
    (
        "config/idp/okta.yaml",
        &[
            UPSTREAM,
            ("OKTA_DOMAIN", "acme.okta.com"),
            ("OKTA_AUDIENCE", "api://default"),
            ("OKTA_INTROSPECTION_SECRET", "s3cret"),
        ],
    ),
    // The fuzzer's seeds name their variables in `#env NAME=VALUE` lines.
    ("fuzz/corpus/config_load/seed-full.yaml", &[]),
    ("fuzz/corpus/config_load/seed-minimal.yaml", &[]),
    ("fuzz/corpus/config_load/seed-env.yaml", &[]),
];

const UPSTREAM: (&str, &str) = ("UPSTREAM_URL", "http://127.0.0.1:8081");

/// YAML files under `config/` that are not tokengate configs.
const NOT_CONFIGS: &[(&str, &str)] = &[("config/dev-issuer.yaml", "the dev-issuer's own file format")];

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// `${NAME}` → value, `$$` → `$`, outside comment lines (tokengate does not substitute comments).
fn substitute(file: &str, text: &str, values: &[(&str, &str)]) -> String {
    let mut vars: HashMap<String, String> = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for line in text.lines() {
        if let Some((k, v)) = line.strip_prefix("#env ").and_then(|l| l.split_once('=')) {
            vars.insert(k.to_string(), v.to_string());
        }
    }
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
        } else {
            let mut rest = line;
            while let Some(at) = rest.find('$') {
                out.push_str(&rest[..at]);
                let tail = &rest[at..];
                if let Some(after) = tail.strip_prefix("$$") {
                    out.push('$');
                    rest = after;
                } else if let Some(end) = tail.strip_prefix("${").and_then(|t| t.find('}')) {
                    let name = &tail[2..2 + end];
                    let value = vars.get(name).unwrap_or_else(|| panic!("{file}: no test value for ${{{name}}}"));
                    out.push_str(value);
                    rest = &tail[3 + end..];
                } else {
                    out.push('$');
                    rest = &tail[1..];
                }
            }
            out.push_str(rest);
        }
        out.push('\n');
    }
    out
}

/// The document as tokengate's YAML parser reads it.
fn to_json(file: &str, yaml: &str) -> Value {
    serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The commented-out sections of the example (`#decision:`, `# protected_resource:`), uncommented:
/// they document keys too.
fn uncomment(text: &str, header: &str) -> String {
    let start = text.lines().position(|l| l == header).unwrap_or_else(|| panic!("no line {header:?}"));
    let prefix = &header[..header.find(|c: char| c.is_alphabetic()).unwrap()];
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for line in lines.iter_mut().skip(start) {
        match line.strip_prefix(prefix) {
            Some(yaml) if yaml.starts_with(' ') || yaml == &header[prefix.len()..] => *line = yaml.to_owned(),
            _ => break,
        }
    }
    lines.join("\n") + "\n"
}

struct Verdict {
    valid: bool,
    problems: Vec<String>,
}

/// Runs `config/check-schema.py` over the documents; `None` when it cannot run and
/// `TOKENGATE_TEST_ALLOW_MISSING_TOOLS=1` says to pass anyway.
fn check(name: &str, schema: &Path, docs: &BTreeMap<String, Value>) -> Option<BTreeMap<String, Verdict>> {
    let python = support::require_tool("python3", "Python 3")?;
    let dir = std::env::temp_dir().join(format!("tokengate-schema-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for (i, (label, doc)) in docs.iter().enumerate() {
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        paths.push((path, label.clone()));
    }
    let out = Command::new(python)
        .arg(Path::new(ROOT).join("config/check-schema.py"))
        .arg("--schema")
        .arg(schema)
        .args(paths.iter().map(|(p, _)| p))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0 | 1) => {}
        Some(3) => {
            support::missing_tool(
                "the Python module jsonschema",
                "it with `python3 -m pip install jsonschema==4.26.0` (.ci/run does)",
            );
            return None;
        }
        _ => panic!("config/check-schema.py failed ({}):\n{stdout}\n{stderr}", out.status),
    }
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(problem) = line.strip_prefix("  ") {
            verdicts.get_mut(current.as_ref().unwrap()).unwrap().problems.push(problem.to_owned());
            continue;
        }
        let (path, result) = line.rsplit_once(": ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
        let label = paths.iter().find(|(p, _)| p.to_str() == Some(path)).map(|(_, l)| l.clone()).unwrap();
        verdicts.insert(label.clone(), Verdict { valid: result == "valid", problems: Vec::new() });
        current = Some(label);
    }
    assert_eq!(verdicts.len(), docs.len(), "not every document was checked:\n{stdout}\n{stderr}");
    Some(verdicts)
}

fn shipped() -> PathBuf {
    Path::new(ROOT).join(SHIPPED)
}

/// The shipped schema is exactly what `tokengate schema` prints, so it cannot drift from the types.
#[test]
fn shipped_schema_is_what_the_binary_generates() {
    let out = Command::new(BIN).arg("schema").env_clear().output().unwrap();
    assert!(out.status.success(), "tokengate schema failed: {}", String::from_utf8_lossy(&out.stderr));
    let generated = String::from_utf8(out.stdout).unwrap();
    assert!(serde_json::from_str::<Value>(&generated).is_ok(), "tokengate schema printed no JSON");
    let shipped = read(SHIPPED);
    assert!(
        shipped == generated,
        "{SHIPPED} differs from what `tokengate schema` generates: the config types changed. \
         Regenerate it with `{REGENERATE}` and commit it."
    );
}

/// The example file points editors at the schema (yaml-language-server).
#[test]
fn example_names_the_schema_for_editors() {
    let example = read("config/tokengate.example.yaml");
    assert_eq!(example.lines().next(), Some("# yaml-language-server: $schema=./tokengate.schema.json"));
}

/// Every example config validates, including the example's commented-out sections.
#[test]
fn every_example_config_validates() {
    let listed: Vec<&str> = EXAMPLES.iter().map(|(f, _)| *f).chain(NOT_CONFIGS.iter().map(|(f, _)| *f)).collect();
    for dir in ["config", "config/idp"] {
        for entry in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".yaml") || name.ends_with(".yml") {
                let file = format!("{dir}/{name}");
                assert!(listed.contains(&file.as_str()), "{file} is neither checked here nor listed in NOT_CONFIGS");
            }
        }
    }
    let mut docs = BTreeMap::new();
    for (file, values) in EXAMPLES {
        let mut texts = vec![(file.to_string(), substitute(file, &read(file), values))];
        if *file == "config/tokengate.example.yaml" {
            let text = &texts[0].1;
            let all = uncomment(&uncomment(text, "#decision:"), "# protected_resource:");
            assert_ne!(&all, text);
            texts.push((format!("{file} (commented-out sections included)"), all));
        }
        for (label, text) in texts {
            // The loader's own parser accepts it: the schema is not checking a document tokengate refuses.
            serde_norway::from_str::<RawConfig>(&text).unwrap_or_else(|e| panic!("{label}: {e}"));
            docs.insert(label.clone(), to_json(&label, &text));
        }
    }
    let Some(verdicts) = check("examples", &shipped(), &docs) else { return };
    for (label, v) in &verdicts {
        assert!(v.valid, "{label} does not validate against {SHIPPED}:\n{}", v.problems.join("\n"));
    }
}

/// The example, then one change to it.
fn example_with(change: impl FnOnce(&mut Value)) -> Value {
    let (file, values) = EXAMPLES[0];
    let mut doc = to_json(file, &substitute(file, &read(file), values));
    change(&mut doc);
    doc
}

/// Broken documents fail, and each problem is named where it is; tokengate refuses each of them
/// too, so the schema is no stricter than the loader here.
#[test]
fn broken_configs_fail() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("unknown top-level key", example_with(|d| d["upstream_list"] = json!({})), "'upstream_list' was unexpected"),
        (
            "misspelt key in a section",
            example_with(|d| d["server"]["drain_dealy"] = json!("5s")),
            "'drain_dealy' was unexpected",
        ),
        (
            "misspelt key in a route",
            example_with(|d| d["routes"][0]["path_prefx"] = json!("/")),
            "at routes[0]: Additional properties are not allowed ('path_prefx'",
        ),
        (
            "wrong type",
            example_with(|d| d["server"]["max_connections"] = json!("many")),
            "at server.max_connections: 'many' is not of type",
        ),
        ("negative count", example_with(|d| d["server"]["max_connections"] = json!(-1)), "at server.max_connections"),
        ("list for a string", example_with(|d| d["realm"] = json!(["a"])), "at realm: ['a'] is not of type"),
        (
            "bad route auth",
            example_with(|d| d["routes"][0]["auth"] = json!("optional")),
            "at routes[0].auth: 'optional' is not one of ['none', 'required']",
        ),
        (
            "bad issuer mode",
            example_with(|d| d["issuers"][0]["mode"] = json!("opaque")),
            "at issuers[0].mode: 'opaque' is not one of",
        ),
        (
            "bad auth method",
            example_with(|d| d["issuers"][3]["introspection"]["auth_method"] = json!("basic")),
            "at issuers[3].introspection.auth_method: 'basic' is not one of",
        ),
        (
            "bad duration unit",
            example_with(|d| d["jwks"]["fetch_timeout"] = json!("5 parsecs")),
            "at jwks.fetch_timeout: '5 parsecs' is not valid here: A duration",
        ),
        (
            "duration without unit",
            example_with(|d| d["server"]["drain_delay"] = json!(5)),
            "at server.drain_delay: 5 is not of type 'string'",
        ),
        (
            "bad identity source",
            example_with(|d| d["identity"]["headers"]["X-User"] = json!("sub")),
            "at identity.headers.X-User: 'sub' is not valid here",
        ),
        (
            "claim test against a list",
            example_with(|d| d["routes"][1]["claims"][0]["equals"] = json!(["acme"])),
            "at routes[1].claims[0].equals",
        ),
    ];
    let env: HashMap<String, String> = HashMap::new();
    let base = serde_json::to_string(&example_with(|_| {})).unwrap();
    load_text(Path::new("example.yaml"), &base, &env).unwrap_or_else(|e| panic!("the unchanged example: {e}"));
    for (label, doc, _) in &cases {
        let text = serde_json::to_string(doc).unwrap();
        assert!(load_text(Path::new("broken.yaml"), &text, &env).is_err(), "tokengate accepts the {label} case");
    }
    let docs: BTreeMap<String, Value> = cases.iter().map(|(l, d, _)| (l.to_string(), d.clone())).collect();
    let Some(verdicts) = check("broken", &shipped(), &docs) else { return };
    for (label, _, expected) in &cases {
        let v = &verdicts[*label];
        assert!(!v.valid, "the {label} case validates against {SHIPPED}");
        assert!(
            v.problems.iter().any(|p| p.contains(expected)),
            "the {label} case: no problem says {expected:?}:\n{}",
            v.problems.join("\n")
        );
        assert_eq!(v.problems.len(), 1, "the {label} case: one change, one problem:\n{}", v.problems.join("\n"));
    }
}

/// The duration pattern says yes exactly where humantime (through humantime_serde) does.
#[test]
fn duration_pattern_agrees_with_humantime() {
    let samples = [
        "500ms",
        "5s",
        "1m 30s",
        "1m30s",
        "1h",
        "0s",
        "1.5s",
        "2 min",
        "3hours",
        "1d",
        "2w",
        "1M",
        "1y",
        "10µs",
        "7us",
        "100ns",
        "90 seconds",
        " 5s ",
        "5",
        "s",
        "",
        "5 parsecs",
        "-1s",
        "1.s",
        "1,5s",
        "five seconds",
        "5s!",
        "1 h 30",
        "5S",
        "1h 30",
        "+5s",
    ];
    let mut docs = BTreeMap::new();
    let mut humantime = BTreeMap::new();
    for sample in samples {
        let doc = json!({ "server": { "drain_delay": sample } });
        let accepted = serde_norway::from_str::<RawConfig>(&doc.to_string()).is_ok();
        humantime.insert(format!("{sample:?}"), accepted);
        docs.insert(format!("{sample:?}"), doc);
    }
    assert!(humantime.values().any(|&ok| ok) && humantime.values().any(|&ok| !ok));
    let Some(verdicts) = check("durations", &shipped(), &docs) else { return };
    for (sample, accepted) in humantime {
        assert_eq!(
            verdicts[&sample].valid, accepted,
            "duration {sample}: humantime says {accepted}, the schema differs"
        );
    }
}
