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
