//! The Kubernetes package as CI checks it: `deploy/check` renders every overlay with
//! `kubectl kustomize`, validates it against each supported Kubernetes version's schemas
//! (kubernetes-validate, strict) and checks what no schema can (monitors, drain timings,
//! NetworkPolicy, security), breaking the manifests on purpose to prove each check fails.

mod support;

use std::process::Command;

#[test]
fn kubernetes_manifests_validate() {
    if support::require_tool("kubectl", "the kubectl of the machine image (Debian's is too old)").is_none() {
        return;
    }
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/check")).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "deploy/check failed:\n{stdout}\n{stderr}");
    for overlay in ["edge", "sidecar"] {
        assert!(stdout.contains(overlay), "{overlay} was not checked:\n{stdout}");
    }
}
