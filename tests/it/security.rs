//! Who may call what: tokens, roles, limits and what the logs hold, on the
//! real server.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use minsheng_proto::v1 as pb;
use pb::audit_client::AuditClient;
use pb::dispatch_client::DispatchClient;
use pb::intake_client::IntakeClient;
use tonic::transport::Channel;
use tonic::{Code, Request};

use super::server::{Server, call, copy_dir, mini};

const TOKEN_110: &str = "token-of-the-110-system-0001";
const TEAM_TOKEN: &str = "token-of-team-330402008-0002";
const INSPECTOR: &str = "token-of-the-inspector-0003";
const FLOODER: &str = "token-of-a-flooding-client-04";

const CONFIG: &str = r#"
[[client]]
name = "hotline-110"
token_env = "TEST_TOKEN_110"
roles = ["intake:110"]

[[client]]
name = "team-330402008"
token_file = "team.token"
roles = ["consumer:township.330402008"]

[[client]]
name = "inspector"
token = "token-of-the-inspector-0003"
roles = ["auditor"]

[[client]]
name = "flooder"
token = "token-of-a-flooding-client-04"
roles = ["intake"]

[limits]
calls_per_second = 20
burst = 20
max_subscriptions = 2
"#;

/// A server with the clients above; its log (JSON, debug) in `dir/log`.
fn secured() -> (tempfile::TempDir, Server) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&mini(), &tmp.path().join("rules"));
    std::fs::write(tmp.path().join("minsheng.toml"), CONFIG).unwrap();
    std::fs::write(tmp.path().join("team.token"), format!("{TEAM_TOKEN}\n")).unwrap();
    let log = std::fs::File::create(tmp.path().join("log")).unwrap();
    let s = start_logged(tmp.path(), log);
    (tmp, s)
}

fn start_logged(dir: &Path, log: std::fs::File) -> Server {
    // Debug and JSON: the most the server ever writes of a call.
    Server::start_with_args(
        dir,
        &[("TEST_TOKEN_110", TOKEN_110), ("MINSHENG_LOG", "debug")],
        &["--log-format", "json"],
        Stdio::from(log),
    )
}

fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn channel(s: &Server) -> Channel {
    Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn audit_of(s: &Server, kind: &str) -> Vec<pb::AuditRecord> {
    let mut stream = AuditClient::new(channel(s).await)
        .query(bearer(
            pb::AuditQueryRequest {
                kind: kind.into(),
                ..Default::default()
            },
            INSPECTOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        out.push(r);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_valid_token_are_refused_and_recorded() {
    let (_tmp, s) = secured();
    let mut intake = IntakeClient::new(channel(&s).await);
    let none = intake
        .submit_call(call("a", pb::Hotline::Hotline110, "有人拿刀"))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let wrong = intake
        .submit_call(bearer(
            call("a", pb::Hotline::Hotline110, "有人拿刀"),
            "token-that-nobody-was-given-00",
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let ok = intake
        .submit_call(bearer(
            call("a", pb::Hotline::Hotline110, "有人拿刀"),
            TOKEN_110,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!ok.duplicate, "the refused calls left no ticket");
    let refused = audit_of(&s, "refused").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].actor.starts_with("unauthenticated 127.0.0.1:"));
    assert!(refused[1].detail.contains("unknown token"));
    let received = audit_of(&s, "received").await;
    assert_eq!(
        received[0].actor, "hotline-110",
        "the client's name is the actor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_only_its_own() {
    let (_tmp, s) = secured();
    let mut intake = IntakeClient::new(channel(&s).await);
    // The 110 system submits 110 calls, not 12345 ones.
    let denied = intake
        .submit_call(bearer(
            call("b", pb::Hotline::Hotline12345, "楼上现在在吵架"),
            TOKEN_110,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let placed = intake
        .submit_call(bearer(
            pb::Call {
                township_code: "330402008".into(),
                ..call("c", pb::Hotline::Hotline110, "楼上现在在吵架")
            },
            TOKEN_110,
        ))
        .await
        .unwrap()
        .into_inner();
    // A township team takes its own queue, and no other.
    let mut dispatch = DispatchClient::new(channel(&s).await);
    for other in ["township.330402009", "dispatch.police"] {
        let e = dispatch
            .subscribe(bearer(
                pb::SubscribeRequest {
                    queue: other.into(),
                    consumer: "team".into(),
                    lease_seconds: 0,
                },
                TEAM_TOKEN,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{other}: {e:?}");
    }
    let mut own = dispatch
        .subscribe(bearer(
            pb::SubscribeRequest {
                queue: "township.330402008".into(),
                consumer: "team".into(),
                lease_seconds: 0,
            },
            TEAM_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    let t = tokio::time::timeout(Duration::from_secs(10), own.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .ticket
        .unwrap();
    assert_eq!(t.id, placed.ticket_id);
    dispatch
        .ack(bearer(
            pb::AckRequest {
                ticket_id: t.id,
                consumer: "team".into(),
            },
            TEAM_TOKEN,
        ))
        .await
        .unwrap();
    // An auditor reads the log and submits nothing.
    let e = intake
        .submit_call(bearer(
            call("d", pb::Hotline::Hotline110, "有人拿刀"),
            INSPECTOR,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let v = AuditClient::new(channel(&s).await)
        .verify(bearer(pb::VerifyRequest {}, INSPECTOR))
        .await
        .unwrap()
        .into_inner();
    assert!(v.intact, "{v:?}");
    let e = AuditClient::new(channel(&s).await)
        .verify(bearer(pb::VerifyRequest {}, TOKEN_110))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let acked = audit_of(&s, "acked").await;
    assert_eq!(acked[0].actor, "team-330402008");

    // Two open subscriptions at most for one client (`own` is one).
    let subscribe = |consumer: &str| {
        let mut dispatch = dispatch.clone();
        let request = bearer(
            pb::SubscribeRequest {
                queue: "township.330402008".into(),
                consumer: consumer.into(),
                lease_seconds: 0,
            },
            TEAM_TOKEN,
        );
        async move { dispatch.subscribe(request).await }
    };
    let second = subscribe("team-2").await.unwrap();
    let third = subscribe("team-3").await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    drop((own, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_limited_and_another_still_gets_through() {
    let (_tmp, s) = secured();
    let ch = channel(&s).await;
    let mut flood = Vec::new();
    for i in 0..120 {
        let mut intake = IntakeClient::new(ch.clone());
        flood.push(tokio::spawn(async move {
            intake
                .submit_call(bearer(
                    call(&format!("f{i}"), pb::Hotline::App, "社保怎么交"),
                    FLOODER,
                ))
                .await
                .map(|_| ())
                .map_err(|e| e.code())
        }));
    }
    let mut intake = IntakeClient::new(ch.clone());
    for i in 0..10 {
        intake
            .submit_call(bearer(
                call(&format!("h{i}"), pb::Hotline::Hotline110, "有人拿刀"),
                TOKEN_110,
            ))
            .await
            .expect("another client's calls go through the flood");
    }
    let mut limited = 0;
    let mut passed = 0;
    for f in flood {
        match f.await.unwrap() {
            Ok(()) => passed += 1,
            Err(Code::ResourceExhausted) => limited += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(limited > 0, "the flood was not limited");
    assert!(passed >= 20, "its burst went through: {passed}");

    // A stream counts each of its calls against the rate too (opened
    // once the bucket has filled again).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls: Vec<pb::Call> = (0..80)
        .map(|i| call(&format!("s{i}"), pb::Hotline::App, "社保怎么交"))
        .collect();
    let mut answers = IntakeClient::new(ch)
        .stream_calls(bearer(tokio_stream::iter(calls), FLOODER))
        .await
        .unwrap()
        .into_inner();
    let mut exhausted = 0;
    while let Some(a) = answers.message().await.unwrap() {
        if let Some(pb::stream_calls_response::Result::Error(e)) = a.result {
            assert_eq!(e.code, Code::ResourceExhausted as i32, "{e:?}");
            exhausted += 1;
        }
    }
    assert!(exhausted > 0, "a stream went around the rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_full_number_or_token_reaches_the_log() {
    let (tmp, mut s) = secured();
    let mut intake = IntakeClient::new(channel(&s).await);
    for (i, text) in ["有人拿刀，我的电话13812345678", "楼上现在在吵架"]
        .iter()
        .enumerate()
    {
        intake
            .submit_call(bearer(
                call(&format!("n{i}"), pb::Hotline::Hotline110, text),
                TOKEN_110,
            ))
            .await
            .unwrap();
    }
    let bad = pb::Call {
        caller_number: "13812345678x".into(),
        ..call("n9", pb::Hotline::Hotline110, "有人拿刀")
    };
    let e = intake
        .submit_call(bearer(bad, TOKEN_110))
        .await
        .unwrap_err();
    assert!(!e.message().contains("13812345678"), "{e:?}");
    s.signal(libc::SIGTERM);
    let _ = s.child.wait();
    let log = std::fs::read_to_string(tmp.path().join("log")).unwrap();
    assert!(
        log.contains("\"call accepted\""),
        "the log is the debug one:\n{log}"
    );
    assert!(
        !log.contains("13812345678"),
        "a full number in the log:\n{log}"
    );
    for token in [TOKEN_110, TEAM_TOKEN, INSPECTOR, FLOODER] {
        assert!(!log.contains(token), "a token in the log");
    }
}

#[test]
fn plain_tcp_off_loopback_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&mini(), &tmp.path().join("rules"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minsheng"))
        .args(["serve", "--listen", "0.0.0.0:0", "--no-metrics"])
        .current_dir(tmp.path())
        .env_remove("MINSHENG_RULES")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain TCP only on loopback"), "{err}");
}

mod tls {
    //! The same over TLS, with client certificates (mutual TLS).

    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    fn gen_cert(out: &Path, clients: &[&str]) {
        let mut args = vec!["gen-cert", "--out", out.to_str().unwrap()];
        for c in clients {
            args.extend(["--client", c]);
        }
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_minsheng"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// A client certificate signed by the CA in `certs`, valid only in
    /// January 2020.
    fn expired(certs: &Path, name: &str) {
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(certs.join("ca.key")).unwrap()).unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "minsheng development CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let issuer = Issuer::new(ca, ca_key);
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 2, 1);
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(certs.join(format!("{name}-expired.pem")), cert.pem()).unwrap();
        std::fs::write(
            certs.join(format!("{name}-expired.key")),
            key.serialize_pem(),
        )
        .unwrap();
    }

    struct Tls {
        tmp: tempfile::TempDir,
        server: Server,
    }

    fn start() -> Tls {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        copy_dir(&mini(), &dir.join("rules"));
        gen_cert(&dir.join("certs"), &["team-330402008"]);
        gen_cert(&dir.join("foreign"), &["team-330402008"]);
        expired(&dir.join("certs"), "team-330402008");
        std::fs::write(
            dir.join("minsheng.toml"),
            format!(
                r#"
[tls]
cert = "certs/server.pem"
key = "certs/server.key"
client_ca = "certs/ca.pem"

[[client]]
name = "team-330402008"
cert_subject = "team-330402008"
roles = ["consumer:township.330402008"]

[[client]]
name = "hotline-110"
token = "{TOKEN_110}"
roles = ["intake:110"]
"#
            ),
        )
        .unwrap();
        let server = Server::start_with_args(dir, &[], &[], Stdio::inherit());
        Tls { tmp, server }
    }

    impl Tls {
        /// A TLS channel trusting the CA, with the client certificate
        /// `certs_dir/name.pem` when given.
        async fn channel(&self, identity: Option<(&str, &str)>) -> Result<Channel, String> {
            let dir = self.tmp.path();
            let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read("certs/ca.pem")))
                .domain_name("localhost");
            if let Some((cert, key)) = identity {
                tls = tls.identity(Identity::from_pem(read(cert), read(key)));
            }
            let endpoint = Endpoint::from_shared(format!("https://{}", self.server.addr))
                .unwrap()
                .tls_config(tls)
                .unwrap();
            // A handshake the server accepts can still fail to start on a
            // loaded 2-core machine (seen once in the whole suite): try
            // three times, and say so, before calling it a refusal.
            let mut last = String::new();
            for attempt in 1..=3 {
                match endpoint.connect().await {
                    Ok(channel) => return Ok(channel),
                    Err(e) => {
                        last = format!("{e:?}");
                        eprintln!("TLS connect attempt {attempt} failed: {last}");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
            Err(last)
        }
    }

    async fn subscribe(ch: Channel, queue: &str) -> Result<(), tonic::Status> {
        DispatchClient::new(ch)
            .subscribe(pb::SubscribeRequest {
                queue: queue.into(),
                consumer: "team".into(),
                lease_seconds: 0,
            })
            .await
            .map(|_| ())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_certificate_is_an_identity_with_its_roles() {
        let t = start();
        let team = t
            .channel(Some((
                "certs/team-330402008.pem",
                "certs/team-330402008.key",
            )))
            .await
            .unwrap();
        subscribe(team.clone(), "township.330402008")
            .await
            .expect("its own queue");
        let e = subscribe(team, "dispatch.police").await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

        // No certificate and no token: not known.
        let anonymous = t.channel(None).await.unwrap();
        let e = subscribe(anonymous.clone(), "township.330402008")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let wrong = IntakeClient::new(anonymous.clone())
            .submit_call(bearer(
                call("t0", pb::Hotline::Hotline110, "有人拿刀"),
                "token-that-nobody-was-given-00",
            ))
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
        // A token still identifies over TLS.
        IntakeClient::new(anonymous)
            .submit_call(bearer(
                call("t1", pb::Hotline::Hotline110, "有人拿刀"),
                TOKEN_110,
            ))
            .await
            .expect("a token over TLS");
    }

    /// A connection, or a first call on it, that fails.
    async fn refused(t: &Tls, identity: (&str, &str)) -> String {
        match t.channel(Some(identity)).await {
            Err(e) => e,
            Ok(ch) => match subscribe(ch, "township.330402008").await {
                Err(e) => format!("{e:?}"),
                Ok(()) => panic!("{identity:?} was let in"),
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn foreign_and_expired_certificates_are_refused() {
        let t = start();
        let foreign = refused(
            &t,
            ("foreign/team-330402008.pem", "foreign/team-330402008.key"),
        )
        .await;
        // Same name, another authority: its signature does not check out.
        // Refused in the handshake (the client sees the alert, a closed
        // connection or a broken pipe, as the timing falls), never by a
        // method.
        let handshake_refused = |e: &str| e.contains("Error(Transport");
        assert!(handshake_refused(&foreign), "{foreign}");
        let expired = refused(
            &t,
            (
                "certs/team-330402008-expired.pem",
                "certs/team-330402008-expired.key",
            ),
        )
        .await;
        assert!(handshake_refused(&expired), "{expired}");
        // Plain text on the TLS port gets nowhere either.
        let plain = Channel::from_shared(format!("http://{}", t.server.addr))
            .unwrap()
            .connect()
            .await;
        if let Ok(ch) = plain {
            let e = subscribe(ch, "township.330402008").await.unwrap_err();
            assert_ne!(e.code(), Code::Ok);
        }
        // And the right certificate still works after all that.
        let team = t
            .channel(Some((
                "certs/team-330402008.pem",
                "certs/team-330402008.key",
            )))
            .await
            .unwrap();
        subscribe(team, "township.330402008").await.unwrap();
    }
}

/// The `toml` blocks of README.md after a heading.
fn readme_toml_after(heading: &str) -> String {
    let readme = std::fs::read_to_string(super::support::root().join("README.md")).unwrap();
    let section = readme.split(heading).nth(1).expect("the heading");
    let block = section.split("```toml\n").nth(1).expect("a toml block");
    block.split("```").next().unwrap().to_owned()
}

#[test]
fn the_readme_configurations_are_valid() {
    for heading in ["## Serving", "## Several nodes", "## Running in production"] {
        let text = readme_toml_after(heading);
        if let Err(e) = minsheng_server::Config::parse("README.md", &text) {
            panic!("the README's configuration under {heading:?}: {e}");
        }
    }
    let production =
        minsheng_server::Config::parse("README.md", &readme_toml_after("## Running in production"))
            .unwrap();
    assert!(production.tls.is_some() && production.clients.len() >= 4);
}
