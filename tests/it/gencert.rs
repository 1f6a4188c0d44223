//! `minsheng gen-cert`: the files it writes, and a chain that verifies.

use std::fs;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

use super::support::{minsheng, stderr, stdout};

/// Runs `gen-cert` into `out`, with `extra` flags.
fn gen_cert(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["gen-cert", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    minsheng(&args)
}

fn cert(dir: &Path, name: &str) -> CertificateDer<'static> {
    let pem = fs::read(dir.join(name)).unwrap();
    CertificateDer::from_pem_slice(&pem).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// Verifies `leaf` against the CA of `dir` for `usage`.
fn verify(dir: &Path, leaf: &CertificateDer<'_>, usage: KeyUsage) -> Result<(), webpki::Error> {
    let ca = cert(dir, "ca.pem");
    let anchors = [anchor_from_trusted_cert(&ca).unwrap()];
    let leaf = EndEntityCert::try_from(leaf).unwrap();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        UnixTime::now(),
        usage,
        None,
        None,
    )
    .map(|_| ())
}

#[test]
fn writes_a_ca_a_server_and_clients_that_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let out = gen_cert(
        &dir,
        &[
            "--host",
            "triage.example.org",
            "--host",
            "10.1.2.3",
            "--client",
            "110-cad",
            "--days",
            "30",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for name in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "110-cad.pem",
        "110-cad.key",
    ] {
        let path = dir.join(name);
        assert!(path.is_file(), "{name} missing");
        assert!(
            text.contains(&path.display().to_string()),
            "{name} not reported:\n{text}"
        );
    }
    let server_pem = dir.join("server.pem").display().to_string();
    assert!(text.contains(&format!("cert = \"{server_pem}\"")), "{text}");
    assert!(text.contains("client_ca = "), "{text}");

    let ca = fs::read_to_string(dir.join("ca.pem")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert!(
        fs::read_to_string(dir.join("ca.key"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    #[cfg(unix)]
    for key in ["ca.key", "server.key", "110-cad.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}: {mode:o}");
    }

    // The server certificate: signed by the CA, for serving, for its names.
    let server = cert(&dir, "server.pem");
    verify(&dir, &server, KeyUsage::server_auth()).unwrap();
    assert!(verify(&dir, &server, KeyUsage::client_auth()).is_err());
    let ee = EndEntityCert::try_from(&server).unwrap();
    for name in ["localhost", "127.0.0.1", "triage.example.org", "10.1.2.3"] {
        let sn = ServerName::try_from(name).unwrap();
        ee.verify_is_valid_for_subject_name(&sn)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let other = ServerName::try_from("elsewhere.example.org").unwrap();
    assert!(ee.verify_is_valid_for_subject_name(&other).is_err());

    // The client certificate: signed by the CA, for client auth, named.
    let client = cert(&dir, "110-cad.pem");
    verify(&dir, &client, KeyUsage::client_auth()).unwrap();
    assert!(verify(&dir, &client, KeyUsage::server_auth()).is_err());
    assert!(
        client.windows(7).any(|w| w == b"110-cad"),
        "the client name is not in its certificate"
    );
}

#[test]
fn keeps_an_existing_ca_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let first = gen_cert(dir, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let (ca, key) = (
        fs::read(dir.join("ca.pem")).unwrap(),
        fs::read(dir.join("ca.key")).unwrap(),
    );

    let again = gen_cert(dir, &[]);
    assert_eq!(again.status.code(), Some(2), "{}", stdout(&again));
    let err = stderr(&again);
    assert!(err.contains("ca.pem") && err.contains("--force"), "{err}");
    assert_eq!(fs::read(dir.join("ca.pem")).unwrap(), ca);
    assert_eq!(fs::read(dir.join("ca.key")).unwrap(), key);

    let forced = gen_cert(dir, &["--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(fs::read(dir.join("ca.key")).unwrap(), key);
    // The new server certificate is signed by the new CA.
    verify(dir, &cert(dir, "server.pem"), KeyUsage::server_auth()).unwrap();
}

#[test]
fn refuses_client_names_that_are_not_plain_file_names() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["../escape", "ca", ".hidden", ""] {
        let out = gen_cert(tmp.path(), &["--client", name]);
        assert_eq!(out.status.code(), Some(2), "{name:?}");
        assert!(stderr(&out).contains("client name"), "{}", stderr(&out));
    }
    assert!(!tmp.path().join("ca.pem").exists());
}
