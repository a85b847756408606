//! HTTPS served by `zerotrace server --tls-cert --tls-key` itself, with a private CA made in
//! the test (rcgen): the real agent binary enrolls and reports over it when told the CA
//! (`ZEROTRACE_CA_CERT`) and refuses the server when not; plain HTTP gets no answer on the
//! port; SIGHUP makes new connections get a renewed certificate, and a broken one leaves the
//! last good certificate in use. Bad files at start are refused naming the file.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use zt_testkit::ServerProcess;

mod common;
use common::{agent_bin, agent_host_root, bin, create_company, get_json};

const ADMIN: &str = "zto_tls-operator-token-0123456789abcdef";

/// A private certificate authority.
fn new_ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ZeroTrace test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A server certificate for localhost and 127.0.0.1 signed by `ca`: (cert PEM, key PEM, DER).
fn new_leaf(ca: &Issuer<'static, KeyPair>) -> (String, String, Vec<u8>) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// Replaces a file the way certificate tools do (a new file renamed over the old one).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .tls_info(true)
        // Every probe is a new connection, so it sees the certificate current now.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The leaf certificate a new connection is served.
async fn served_certificate(http: &reqwest::Client, url: &str) -> Vec<u8> {
    let response = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert!(response.status().is_success());
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("the TLS connection's peer certificate")
        .to_vec()
}

fn hup(server: &ServerProcess) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `zerotrace-agent --once` against `url`, collecting from a small Debian host.
fn run_agent(dir: &Path, url: &str, secret: &str, ca: Option<&Path>) -> Output {
    let mut cmd = Command::new(agent_bin());
    cmd.args(["--once", "--server", url, "--enroll-secret", secret])
        .arg("--state-dir")
        .arg(dir.join("agent-state"))
        .arg("--root")
        .arg(agent_host_root(dir))
        .env_remove("ZEROTRACE_CA_CERT")
        .env("ZEROTRACE_AGENT_LOG", "info");
    if let Some(ca) = ca {
        cmd.env("ZEROTRACE_CA_CERT", ca);
    }
    cmd.output().unwrap()
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reports_over_https_and_the_certificate_reloads_on_sighup() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, ca) = new_ca();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let (cert_pem, key_pem, first_der) = new_leaf(&ca);
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &cert_pem).unwrap();
    std::fs::write(&key_file, &key_pem).unwrap();

    let data = dir.path().join("data");
    let server = ServerProcess::start(
        bin(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "server",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN)],
        dir.path(),
        "server",
    )
    .expect("server starts");
    let url = server.url.clone();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let http = https_client(&ca_pem);
    assert_eq!(served_certificate(&http, &url).await, first_der);
    let company = create_company(&http, &url, ADMIN, "Acme").await;
    let secret = company["enroll_secret"].as_str().unwrap().to_string();
    let company_id = company["id"].as_str().unwrap().to_string();

    // Without the private CA the agent does not trust the server, and sends nothing.
    let out = run_agent(dir.path(), &url, &secret, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("certificate")
            || stderr.contains("UnknownIssuer")
            || stderr.contains("tls"),
        "{stderr}"
    );
    let agents = get_json(
        &http,
        &format!("{url}/api/v1/companies/{company_id}/agents"),
        ADMIN,
    )
    .await;
    assert_eq!(
        agents["items"].as_array().map(Vec::len),
        Some(0),
        "{agents}"
    );

    // With it (ZEROTRACE_CA_CERT, as the package's agent.env sets it) it enrolls and reports.
    let out = run_agent(dir.path(), &url, &secret, Some(&ca_file));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agents_url = format!("{url}/api/v1/companies/{company_id}/agents");
    wait_until(
        "the report to be processed",
        Duration::from_secs(60),
        || {
            let (http, agents_url) = (http.clone(), agents_url.clone());
            async move {
                let agents: Value = get_json(&http, &agents_url, ADMIN).await;
                agents["items"]
                    .as_array()
                    .is_some_and(|a| a.len() == 1 && a[0]["apps"].as_u64().unwrap_or(0) > 0)
            }
        },
    )
    .await;

    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(url.replace("https://", "http://") + "/healthz")
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.as_ref().unwrap().status().is_success(),
        "{plain:?}"
    );

    // A renewed certificate (new key, same CA) written over the files: SIGHUP, and new
    // connections get it.
    let (cert_pem, key_pem, second_der) = new_leaf(&ca);
    assert_ne!(first_der, second_der);
    replace(&key_file, &key_pem);
    replace(&cert_file, &cert_pem);
    hup(&server);
    wait_until("the renewed certificate", Duration::from_secs(20), || {
        let (http, url, second_der) = (http.clone(), url.clone(), second_der.clone());
        async move { served_certificate(&http, &url).await == second_der }
    })
    .await;

    // A broken renewal: the error is logged and the last good certificate stays in use.
    replace(&cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n");
    hup(&server);
    wait_until(
        "the refused reload in the log",
        Duration::from_secs(20),
        || {
            let log = server.stderr();
            async move { log.contains("TLS certificate not reloaded") }
        },
    )
    .await;
    assert_eq!(served_certificate(&http, &url).await, second_der);
    let out = run_agent(dir.path(), &url, &secret, Some(&ca_file));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.stderr().contains("TLS certificate reloaded"));
}

#[test]
fn bad_certificate_files_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ca) = new_ca();
    let (cert_pem, key_pem, _) = new_leaf(&ca);
    let (_, other_key, _) = new_leaf(&ca);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let wrong_key = dir.path().join("other-key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    std::fs::write(&wrong_key, &other_key).unwrap();
    let start = |cert: &Path, key: &Path| -> String {
        let out = Command::new(bin())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["server", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The key where the certificate belongs.
    let err = start(&key, &key);
    assert!(
        err.contains("certificate file")
            && err.contains("key.pem")
            && err.contains("no CERTIFICATE"),
        "{err}"
    );
    // A missing key file.
    let err = start(&cert, &dir.path().join("missing.pem"));
    assert!(
        err.contains("private key file") && err.contains("missing.pem"),
        "{err}"
    );
    // A key that does not belong to the certificate.
    let err = start(&cert, &wrong_key);
    assert!(
        err.contains("cert.pem") && err.contains("other-key.pem"),
        "{err}"
    );
    // One without the other.
    let out = Command::new(bin())
        .args(["server", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_server_without_tls_survives_sighup() {
    // systemctl reload sends SIGHUP to every unit; its default action would end the process.
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        bin(),
        &[
            "--data-dir",
            dir.path().to_str().unwrap(),
            "server",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN)],
        dir.path(),
        "plain",
    )
    .unwrap();
    hup(&server);
    std::thread::sleep(Duration::from_millis(500));
    let health = reqwest::blocking::get(format!("{}/healthz", server.url)).unwrap();
    assert!(health.status().is_success());
    assert!(server.stderr().contains("no TLS certificate to reload"));
}
