//! The official openvidu-node-client for the tests that drive it.

use std::path::{Path, PathBuf};

/// The pinned openvidu-node-client, installed with `npm ci` from the repository's
/// lockfile into the build's temporary directory (again only when the lockfile
/// changed); `None`, loudly, where `node` or `npm` is missing.
pub fn node_client() -> Option<PathBuf> {
    let found = |program: &str| {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !found("node") || !found("npm") {
        eprintln!(
            "\n\n*** SKIPPED: `node` and `npm` are needed to run the official \
             openvidu-node-client against Chorus; install Node.js to run this test ***\n\n"
        );
        return None;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openvidu-node");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openvidu-node");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::read(source.join("package-lock.json")).unwrap();
    let installed = std::fs::read(dir.join("package-lock.json")).ok();
    for file in [
        "package.json",
        "package-lock.json",
        "flow.js",
        "recording.js",
    ] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let client = dir.join("node_modules/openvidu-node-client/package.json");
    if installed.as_deref() != Some(&lock[..]) || !client.exists() {
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "npm ci failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let version: serde_json::Value =
        serde_json::from_slice(&std::fs::read(client).unwrap()).unwrap();
    assert_eq!(version["version"], "2.32.2");
    Some(dir)
}
