//! HTTPS on hub's own listener: a CA and certificates made here with openssl, a real TLS client
//! that checks the chain, renewal by reload, and pairs `hub check-config` refuses.

use std::path::Path;

use serde_json::json;

use crate::postgres::pg::certs::{issue, make_ca};
use crate::support::{self, config_with, hub_command, Hub};

fn trusting(dir: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .build()
        .unwrap()
}

/// The certificate a new connection is served, as DER.
async fn served(dir: &Path, hub: &Hub) -> Vec<u8> {
    let r = trusting(dir).get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    info.peer_certificate().unwrap().to_vec()
}

async fn reload(dir: &Path, hub: &Hub) -> reqwest::Response {
    trusting(dir)
        .post(hub.url("/-/reload"))
        .basic_auth(support::USER, Some(support::PASSWORD))
        .send()
        .await
        .unwrap()
}

fn install(dir: &Path, name: &str) {
    std::fs::copy(dir.join(format!("{name}.crt")), dir.join("server.crt")).unwrap();
    std::fs::copy(dir.join(format!("{name}.key")), dir.join("server.key")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hub_serves_https_and_takes_a_renewed_certificate_at_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d);
    issue(d, "first", None);
    install(d, "first");
    let config =
        config_with(json!({"webhook": {"tls": {"cert": "server.crt", "key": "server.key"}}}));
    let hub = Hub::start_in(d, &config, &[]);
    assert!(
        hub.base_url.starts_with("https://127.0.0.1:"),
        "{}",
        hub.base_url
    );

    // Plain HTTP sent to the HTTPS port is told so, in an answer it can read; nothing is stored.
    let plain = hub.base_url.replacen("https://", "http://", 1);
    let r = support::client()
        .post(format!("{plain}/"))
        .basic_auth(support::USER, Some(support::PASSWORD))
        .header("content-type", "application/json")
        .body(json!({"State": "OPEN", "ProblemID": "T-0", "PID": "pid-T-0"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let said = r.text().await.unwrap();
    assert!(
        said.contains("https_required") && said.contains("https://"),
        "{said}"
    );
    assert!(!d.join("problems_received/T-0-OPEN.json").exists());

    // A notification over HTTPS, the chain checked against the test's CA.
    let body = json!({"State": "OPEN", "ProblemID": "T-1", "PID": "pid-T-1"}).to_string();
    let r = trusting(d)
        .post(hub.url("/"))
        .basic_auth(support::USER, Some(support::PASSWORD))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        served(d, &hub).await,
        std::fs::read(d.join("first.der")).unwrap()
    );

    // A client that does not trust the CA gets no answer, plain HTTP the hint; all are counted.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(true)
        .build()
        .unwrap();
    assert!(untrusting.get(hub.url("/healthz")).send().await.is_err());
    let plain = hub.url("/healthz").replacen("https://", "http://", 1);
    assert_eq!(
        support::client().get(&plain).send().await.unwrap().status(),
        400
    );
    support::eventually("handshakes counted", async || {
        let text = trusting(d)
            .get(hub.url("/metrics"))
            .basic_auth(support::USER, Some(support::PASSWORD))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("hub_connections_refused_total{reason=\"tls_handshake\"} 3")
    })
    .await;

    // Renewed in place: the next connection gets the new certificate, without a restart.
    issue(d, "second", None);
    install(d, "second");
    let answer = reload(d, &hub).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        served(d, &hub).await,
        std::fs::read(d.join("second.der")).unwrap()
    );

    // An expired one put in its place is refused, and the second one goes on being served.
    issue(d, "expired", Some(("20200101000000Z", "20210101000000Z")));
    install(d, "expired");
    let answer = reload(d, &hub).await;
    let said = support::expect_error(answer, 500, "reload_failed").await;
    assert!(
        said["detail"]
            .as_str()
            .unwrap()
            .contains("expired on 2021-01-01"),
        "{said}"
    );
    assert_eq!(
        served(d, &hub).await,
        std::fs::read(d.join("second.der")).unwrap()
    );
}

#[test]
fn check_config_refuses_a_pair_no_sender_would_accept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d);
    issue(d, "good", None);
    issue(d, "other", None);
    issue(d, "expired", Some(("20200101000000Z", "20210101000000Z")));
    issue(d, "later", Some(("20900101000000Z", "20910101000000Z")));
    std::fs::write(
        d.join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64 $(touch x)\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (tls, says) in [
        (json!({"cert": "good.crt", "key": "good.key"}), ""),
        (
            json!({"cert": "expired.crt", "key": "expired.key"}),
            "the certificate expired on 2021-01-01",
        ),
        (
            json!({"cert": "later.crt", "key": "later.key"}),
            "is not valid before 2090-01-01",
        ),
        (
            json!({"cert": "good.crt", "key": "other.key"}),
            "other.key is not the key of the certificate",
        ),
        (
            json!({"cert": "missing.crt", "key": "good.key"}),
            "cannot read",
        ),
        (
            json!({"cert": "garbage.pem", "key": "good.key"}),
            "garbage.pem",
        ),
        (
            json!({"cert": "good.key", "key": "good.key"}),
            "holds no certificate",
        ),
        // Read with a cap: an endless file is an error at once, not a read without end.
        (
            json!({"cert": "good.crt", "key": "/dev/zero"}),
            "cannot read /dev/zero: larger than 1 MiB",
        ),
        (
            json!({"cert": "/dev/zero", "key": "good.key"}),
            "cannot read /dev/zero: larger than 1 MiB",
        ),
        (json!({"cert": "good.crt"}), "webhook.tls.key: required"),
        (
            json!({"cert": "good.crt", "key": "good.key", "ca": "x"}),
            "webhook.tls.ca",
        ),
    ] {
        let config = config_with(json!({"webhook": {"tls": tls}}));
        std::fs::write(d.join("config.json"), config.to_string()).unwrap();
        let out = hub_command(d).arg("check-config").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if says.is_empty() {
            assert!(out.status.success(), "{tls}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{tls}: {err}");
            assert!(err.contains(says), "{tls}: {err}");
        }
    }
    assert!(!d.join("x").exists());
    // The store's CA file too, with its key path.
    for (ca, says) in [
        (
            "/dev/zero",
            "store.ca_file: cannot read /dev/zero: larger than 1 MiB",
        ),
        ("good.key", "store.ca_file: "),
        ("ca.crt", ""),
    ] {
        let config = config_with(json!({"store": {"url": "postgres://hub@db/hub", "ca_file": ca}}));
        std::fs::write(d.join("config.json"), config.to_string()).unwrap();
        let out = hub_command(d).arg("check-config").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if says.is_empty() {
            assert!(out.status.success(), "{ca}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{ca}: {err}");
            assert!(err.contains(says), "{ca}: {err}");
        }
    }
}
