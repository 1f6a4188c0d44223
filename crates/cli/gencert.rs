//! `minsheng gen-cert`: a development certificate authority, a server
//! certificate and client certificates, for trying TLS and mutual TLS on
//! the gRPC port. Not for production: the CA key sits next to the
//! certificates it signs.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The common name of the certificate authority.
const CA_NAME: &str = "minsheng development CA";
/// The common name of the server certificate.
const SERVER_NAME: &str = "minsheng server";
/// The names the server certificate always carries.
const SERVER_SANS: [&str; 2] = ["localhost", "127.0.0.1"];
/// How far certificates are backdated, for clocks that run a little behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// What `minsheng gen-cert` makes.
#[derive(Debug)]
pub struct Request {
    /// The directory to write into (created if missing).
    pub out: PathBuf,
    /// Names and addresses the server certificate is valid for, besides
    /// `localhost` and `127.0.0.1`.
    pub hosts: Vec<String>,
    /// One client certificate per name: `NAME.pem` and `NAME.key`.
    pub clients: Vec<String>,
    /// Days the certificates are valid from now.
    pub days: u32,
    /// Replace an existing CA.
    pub force: bool,
}

/// A certificate and its key, as PEM, with the file stem they go to.
struct Issued {
    stem: String,
    cert: String,
    key: String,
}

pub fn run(r: &Request) -> anyhow::Result<ExitCode> {
    check_clients(&r.clients)?;
    let (ca_pem, ca_key) = (r.out.join("ca.pem"), r.out.join("ca.key"));
    if !r.force {
        for path in [&ca_pem, &ca_key] {
            if path.exists() {
                bail!(
                    "{} exists; pass --force to replace the CA (and every certificate it signed)",
                    path.display()
                );
            }
        }
    }

    let now = rcgen::date_time_ymd(1970, 1, 1)
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?;
    let not_before = now - BACKDATE;
    let not_after = now + Duration::from_secs(u64::from(r.days) * 86_400);
    let validity = |params: &mut CertificateParams| {
        params.not_before = not_before;
        params.not_after = not_after;
    };

    // The authority: self-signed, and may sign end certificates only.
    let mut params = CertificateParams::default();
    validity(&mut params);
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().context("generating the CA key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the CA certificate")?;
    let ca = Issued {
        stem: "ca".into(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    let issuer = Issuer::new(params, key);

    // The server: every name it answers to, as DNS or IP alternative names.
    let mut sans: Vec<String> = SERVER_SANS.iter().map(|s| s.to_string()).collect();
    for host in &r.hosts {
        if host.is_empty() {
            bail!("--host needs a name or an address");
        }
        if !sans.contains(host) {
            sans.push(host.clone());
        }
    }
    let mut params = CertificateParams::new(sans)
        .context("a --host is neither an IP address nor an ASCII DNS name")?;
    validity(&mut params);
    params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = leaf("server", params, &issuer)?;

    // The clients: the common name is who they are.
    let mut issued = vec![ca, server];
    for name in &r.clients {
        let mut params = CertificateParams::default();
        validity(&mut params);
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        issued.push(leaf(name, params, &issuer)?);
    }

    fs::create_dir_all(&r.out).with_context(|| format!("creating {}", r.out.display()))?;
    for i in &issued {
        let cert = r.out.join(format!("{}.pem", i.stem));
        fs::write(&cert, &i.cert).with_context(|| format!("writing {}", cert.display()))?;
        println!("wrote {}", cert.display());
        let key = r.out.join(format!("{}.key", i.stem));
        write_private(&key, &i.key).with_context(|| format!("writing {}", key.display()))?;
        println!("wrote {}", key.display());
    }

    let path = |name: &str| toml_string(&r.out.join(name).display().to_string());
    println!();
    println!("For mutual TLS on the gRPC port, in minsheng.toml:");
    println!("  [tls]");
    println!("  cert = {}", path("server.pem"));
    println!("  key = {}", path("server.key"));
    println!("  client_ca = {}", path("ca.pem"));
    for name in &r.clients {
        println!(
            "The client presenting {name}.pem and {name}.key is the [[client]] with cert_subject = {}.",
            toml_string(name)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// An end certificate signed by the CA, with a fresh key.
fn leaf(
    stem: &str,
    mut params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> anyhow::Result<Issued> {
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().with_context(|| format!("generating the {stem} key"))?;
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("signing the {stem} certificate"))?;
    Ok(Issued {
        stem: stem.into(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Client names become file names: plain ones only, each once, and none
/// that would replace the CA's or the server's files.
fn check_clients(names: &[String]) -> anyhow::Result<()> {
    let mut seen = BTreeSet::new();
    for name in names {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            bail!("client name {name:?}: use letters, digits, '-', '_' and '.' (not first)");
        }
        if name == "ca" || name == "server" {
            bail!("client name {name:?} would replace the {name}.pem of the same directory");
        }
        if !seen.insert(name) {
            bail!("client name {name:?} is given twice");
        }
    }
    Ok(())
}

/// Writes a private key readable by its owner alone (on Unix: mode 0600,
/// also when the file already exists).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
