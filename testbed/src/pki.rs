//! `xgate pki` run for the tests, the bench and the loadtest: a CA, server and client
//! certificates made by xgate's own small CA in a directory of theirs.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Runs `XGATE pki ARGS --dir DIR`; its stderr in the error when it fails.
pub fn xgate_pki(xgate: &Path, dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(xgate)
        .arg("pki")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .context("running xgate pki")?;
    if !out.status.success() {
        bail!(
            "xgate pki {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Issues client certificate `name` for `identity` with `xgate pki` in `dir` (whose CA is
/// made) and loads it as the `ike` initiator's credentials: its key and certificate, the CA,
/// and `server` as the identity the server's certificate must name.
pub fn issue_client(
    xgate: &Path,
    dir: &Path,
    (name, identity): (&str, &str),
    server: &str,
) -> Result<std::sync::Arc<ike::ClientCerts>> {
    xgate_pki(xgate, dir, &["client", name, "--identity", identity])?;
    let read =
        |file: &Path| std::fs::read(file).with_context(|| format!("reading {}", file.display()));
    let clients = dir.join("clients");
    let pem = read(&clients.join(format!("{name}.pem")))?;
    let key = read(&clients.join(format!("{name}.key")))?;
    let rng = ring::rand::SystemRandom::new();
    let own = ike::Credential::from_pem(&pem, &key, &rng)
        .map_err(|e| anyhow::anyhow!("{name}'s certificate: {e}"))?;
    let trust = ike::TrustStore::from_pem(&read(&dir.join("ca.pem"))?, None)
        .map_err(|e| anyhow::anyhow!("the CA in {}: {e}", dir.display()))?;
    let unix_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(std::sync::Arc::new(ike::ClientCerts {
        own,
        trust,
        server: ike::Identity::from_text(server),
        unix_secs,
    }))
}
