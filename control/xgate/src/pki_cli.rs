//! `xgate pki ...`: a small certificate authority for IKEv2, for a test or a small deployment:
//! a CA, the server's certificate, client certificates, and revocation by a CRL. Everything
//! lives in one directory (default /etc/xgate/pki): `ca.pem`/`ca.key`, `server.pem`/
//! `server.key`, `clients/<name>.pem`/`.key`, `issued.txt` (serial, name, identity),
//! `revoked.txt` and `crl.pem`. Keys are ECDSA P-256, or RSA 2048 with --rsa; written 0600.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::create_file;

/// id-kp-ipsecIKE (RFC 4945), as rcgen takes an OID.
const IPSEC_IKE: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 3, 17];

/// Where and how keys are made.
#[derive(Args)]
pub struct PkiArgs {
    /// The CA's directory.
    #[arg(long, default_value = "/etc/xgate/pki")]
    dir: PathBuf,
    /// RSA 2048 keys instead of ECDSA P-256.
    #[arg(long)]
    rsa: bool,
    /// Days the certificate is valid from now.
    #[arg(long)]
    days: Option<u32>,
    /// The last day it is valid (YYYY-MM-DD), instead of --days.
    #[arg(long, conflicts_with = "days")]
    expires: Option<String>,
    /// Overwrite files that exist.
    #[arg(long)]
    force: bool,
}

/// What to make.
#[derive(Subcommand)]
pub enum PkiAction {
    /// Make the CA (ca.pem, ca.key).
    Ca {
        /// The CA's common name.
        #[arg(long, default_value = "xgate CA")]
        name: String,
        #[command(flatten)]
        args: PkiArgs,
    },
    /// Issue the server's certificate (server.pem, server.key) for its identity.
    Server {
        /// The server's identity as clients know it: a host name or an address.
        identity: String,
        #[command(flatten)]
        args: PkiArgs,
    },
    /// Issue a client certificate (clients/NAME.pem, clients/NAME.key).
    Client {
        /// The user's name (the file names).
        name: String,
        /// The identity it names (default: the name): an e-mail address, a host name or an
        /// address, as the client sends it.
        #[arg(long)]
        identity: Option<String>,
        #[command(flatten)]
        args: PkiArgs,
    },
    /// Revoke every certificate issued to NAME and write crl.pem.
    Revoke {
        /// The name given at `xgate pki client` (or "server").
        name: String,
        /// The CA's directory.
        #[arg(long, default_value = "/etc/xgate/pki")]
        dir: PathBuf,
    },
}

/// Runs `action`.
pub fn run(action: PkiAction) -> Result<()> {
    match action {
        PkiAction::Ca { name, args } => make_ca(&name, &args),
        PkiAction::Server { identity, args } => {
            let (cert, key) = (args.dir.join("server.pem"), args.dir.join("server.key"));
            issue(&args, ("server", &identity), (&cert, &key), true)?;
            println!(
                "[ike]\nidentity = \"{identity}\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\n\
                 ca = \"{}\"",
                cert.display(),
                key.display(),
                args.dir.join("ca.pem").display()
            );
            Ok(())
        }
        PkiAction::Client {
            name,
            identity,
            args,
        } => {
            check_name(&name)?;
            let identity = identity.unwrap_or_else(|| name.clone());
            let clients = args.dir.join("clients");
            let (cert, key) = (
                clients.join(format!("{name}.pem")),
                clients.join(format!("{name}.key")),
            );
            issue(&args, (&name, &identity), (&cert, &key), false)?;
            println!(
                "{}\n{}\nstrongSwan: copy it to x509/{name}.pem, the key to private/{name}.key \
                 and {} to x509ca/",
                cert.display(),
                key.display(),
                args.dir.join("ca.pem").display()
            );
            Ok(())
        }
        PkiAction::Revoke { name, dir } => revoke(&name, &dir),
    }
}

/// Refuses a client name that is not a plain file name, or that `revoke` would confuse
/// with the server.
fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if !plain || name == "server" {
        bail!(
            "{name:?} cannot name a client: use 1 to 64 letters, digits, '.', '_', '-' or '@' \
             (not starting with '.'), and not \"server\""
        );
    }
    Ok(())
}

fn key_for(args: &PkiArgs) -> Result<KeyPair> {
    let alg = if args.rsa {
        &rcgen::PKCS_RSA_SHA256
    } else {
        &rcgen::PKCS_ECDSA_P256_SHA256
    };
    KeyPair::generate_for(alg).context("making a key")
}

/// The validity window: from an hour ago (clocks differ; a day before an end already past)
/// to --expires or now + --days.
fn window(args: &PkiArgs, default_days: u32) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let now = OffsetDateTime::now_utc();
    let until = match &args.expires {
        None => now + Duration::days(i64::from(args.days.unwrap_or(default_days))),
        Some(text) => {
            let parts: Vec<&str> = text.split('-').collect();
            let parsed = match parts.as_slice() {
                [y, m, d] => (y.parse::<i32>(), m.parse::<u8>(), d.parse::<u8>()),
                _ => bail!("--expires {text:?}: write the date as YYYY-MM-DD"),
            };
            let (Ok(y), Ok(m), Ok(d)) = parsed else {
                bail!("--expires {text:?}: write the date as YYYY-MM-DD");
            };
            let month = time::Month::try_from(m)
                .map_err(|_| anyhow!("--expires {text:?}: there is no month {m}"))?;
            let date = time::Date::from_calendar_date(y, month, d)
                .map_err(|e| anyhow!("--expires {text:?}: {e}"))?;
            date.midnight().assume_utc() + Duration::days(1) - Duration::seconds(1)
        }
    };
    if until <= now {
        eprintln!("warning: the certificate expires in the past: every peer will refuse it");
    }
    Ok((
        (now - Duration::hours(1)).min(until - Duration::days(1)),
        until,
    ))
}

fn write(path: &Path, text: &str, mode: u32, force: bool) -> Result<()> {
    create_file(path, mode, force)?
        .write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn make_ca(name: &str, args: &PkiArgs) -> Result<()> {
    let key = key_for(args)?;
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (p.not_before, p.not_after) = window(args, 3650)?;
    p.serial_number = Some(random_serial());
    let cert = p.self_signed(&key).context("signing the CA certificate")?;
    let (cert_path, key_path) = (args.dir.join("ca.pem"), args.dir.join("ca.key"));
    write(&key_path, &key.serialize_pem(), 0o600, args.force)?;
    write(&cert_path, &cert.pem(), 0o644, args.force)?;
    println!("{}\n{}", cert_path.display(), key_path.display());
    Ok(())
}

/// The CA in `dir`, to sign with.
fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>> {
    let read = |f: &str| {
        let path = dir.join(f);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: make the CA first with `xgate pki ca --dir {}`",
                path.display(),
                dir.display()
            )
        })
    };
    let key = KeyPair::from_pem(&read("ca.key")?).context("ca.key")?;
    Issuer::from_ca_cert_pem(&read("ca.pem")?, key).context("ca.pem")
}

fn random_serial() -> SerialNumber {
    let mut raw = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
    raw[0] &= 0x7f; // a positive INTEGER
    raw[0] |= 0x01; // and no leading zero to strip
    SerialNumber::from_slice(&raw)
}

/// The subjectAltName of an identity, typed as the ike crate reads it.
fn san(identity: &str) -> Result<SanType> {
    ike::Identity::check_text(identity)
        .map_err(|why| anyhow!("{identity:?} is not an identity ({why})"))?;
    let bare = identity.strip_prefix('@').unwrap_or(identity);
    Ok(match identity.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) if identity.contains('@') && !identity.starts_with('@') => {
            SanType::Rfc822Name(bare.try_into().context("an e-mail address")?)
        }
        Err(_) => SanType::DnsName(bare.try_into().context("a host name")?),
    })
}

fn issue(
    args: &PkiArgs,
    (name, identity): (&str, &str),
    (cert_path, key_path): (&Path, &Path),
    server: bool,
) -> Result<()> {
    let ca = load_ca(&args.dir)?;
    let key = key_for(args)?;
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, identity);
    p.subject_alt_names = vec![san(identity)?];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let role = if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    };
    p.extended_key_usages = vec![role, ExtendedKeyUsagePurpose::Other(IPSEC_IKE.to_vec())];
    (p.not_before, p.not_after) = window(args, if server { 825 } else { 365 })?;
    let serial = random_serial();
    p.serial_number = Some(serial.clone());
    let cert = p.signed_by(&key, &ca).context("signing the certificate")?;
    write(key_path, &key.serialize_pem(), 0o600, args.force)?;
    write(cert_path, &cert.pem(), 0o644, args.force)?;
    let mut issued = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.dir.join("issued.txt"))
        .context("issued.txt")?;
    writeln!(issued, "{}\t{name}\t{identity}", hex(&serial))?;
    Ok(())
}

fn hex(serial: &SerialNumber) -> String {
    serial.to_bytes().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn revoke(name: &str, dir: &Path) -> Result<()> {
    let ca = load_ca(dir)?;
    let issued = std::fs::read_to_string(dir.join("issued.txt")).unwrap_or_default();
    let serials: Vec<&str> = issued
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let serial = f.next()?;
            (f.next()? == name).then_some(serial)
        })
        .collect();
    if serials.is_empty() {
        bail!(
            "no certificate was issued to {name:?} by the CA in {}",
            dir.display()
        );
    }
    let revoked_path = dir.join("revoked.txt");
    let mut revoked = std::fs::read_to_string(&revoked_path).unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    for s in &serials {
        if !revoked.lines().any(|l| l.split('\t').next() == Some(s)) {
            let _ = writeln!(revoked, "{s}\t{}", now.unix_timestamp());
        }
    }
    let mut entries = Vec::new();
    for line in revoked.lines() {
        let mut f = line.split('\t');
        let (Some(serial), Some(when)) = (f.next().and_then(unhex), f.next()) else {
            bail!("{}: unreadable line {line:?}", revoked_path.display());
        };
        let when: i64 = when.parse().context("revoked.txt: a time")?;
        entries.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: OffsetDateTime::from_unix_timestamp(when)?,
            reason_code: None,
            invalidity_date: None,
        });
    }
    let crl = CertificateRevocationListParams {
        this_update: now - Duration::hours(1),
        next_update: now + Duration::days(365),
        crl_number: SerialNumber::from(now.unix_timestamp().max(1) as u64),
        issuing_distribution_point: None,
        revoked_certs: entries,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca)
    .context("signing the CRL")?;
    std::fs::write(&revoked_path, revoked).context("revoked.txt")?;
    // Written beside and renamed over: a running xgate never reads half a CRL.
    let crl_path = dir.join("crl.pem");
    let fresh = dir.join("crl.pem.new");
    write(&fresh, &crl.pem().context("the CRL")?, 0o644, true)?;
    std::fs::rename(&fresh, &crl_path).with_context(|| format!("{}", crl_path.display()))?;
    println!(
        "revoked {} certificate(s) of {name}; {} lists them: with [ike] crl = \"{}\", a \
         running xgate reads it again within seconds",
        serials.len(),
        crl_path.display(),
        crl_path.display()
    );
    Ok(())
}
