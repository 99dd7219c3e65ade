//! `rediss://` through rustls against a real `redis-server --tls-port`
//! with certificates made by the test: a CA file, mutual TLS, the insecure
//! switch, and a wrong CA or a missing client certificate refused with a
//! clear error.

use crate::support::topology::{TestCerts, TlsRedis};

use super::AppEnv;

fn tls_env(server: &TlsRedis, certs: &TestCerts, client_cert: bool) -> AppEnv {
    let mut env = vec![
        ("REDIS_URL", server.url()),
        (
            "RT_REDIS_TLS_CA_FILE",
            certs.file("ca.pem").display().to_string(),
        ),
    ];
    if client_cert {
        env.push((
            "RT_REDIS_TLS_CERT_FILE",
            certs.file("client.pem").display().to_string(),
        ));
        env.push((
            "RT_REDIS_TLS_KEY_FILE",
            certs.file("client.key").display().to_string(),
        ));
    }
    AppEnv::new(&env)
}

#[test]
fn every_program_works_over_mutual_tls() {
    let certs = TestCerts::generate();
    let server = TlsRedis::start(&certs, true);
    let app = tls_env(&server, &certs, true);
    app.exercise_every_program();
    // The application knew only the TLS port (REDIS_URL is rediss://):
    // the tasks it ran are on the server.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("redis_tasks:task:*")
        .query(&mut server.proc.client())
        .expect("KEYS");
    assert!(keys.len() >= 3, "{keys:?}");
}

#[test]
fn a_server_requiring_a_client_certificate_refuses_a_client_without_one() {
    let certs = TestCerts::generate();
    let server = TlsRedis::start(&certs, true);
    let app = tls_env(&server, &certs, false);
    let out = app.admin(&["info"]).fails();
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_clearly() {
    let certs = TestCerts::generate();
    let server = TlsRedis::start(&certs, false);
    let app = AppEnv::new(&[
        ("REDIS_URL", server.url()),
        (
            "RT_REDIS_TLS_CA_FILE",
            certs.file("other-ca.pem").display().to_string(),
        ),
    ]);
    let out = app.admin(&["enqueue", "noop"]).fails();
    assert!(
        out.stderr
            .contains("the server's certificate is not signed by a trusted CA"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("redis_tls_ca_file"), "{}", out.stderr);
    // Without any CA file the system roots do not know the test CA either.
    let app = AppEnv::new(&[("REDIS_URL", server.url())]);
    let out = app.admin(&["info"]).fails();
    assert!(
        out.stderr.contains("not signed by a trusted CA"),
        "{}",
        out.stderr
    );
    // Nothing was written.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut server.proc.client())
        .expect("KEYS");
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn the_insecure_switch_connects_without_checks_and_warns() {
    let certs = TestCerts::generate();
    let server = TlsRedis::start(&certs, false);
    let app = AppEnv::new(&[
        ("REDIS_URL", server.url()),
        ("RT_REDIS_TLS_INSECURE", "true".to_owned()),
    ]);
    let id = app.admin(&["enqueue", "noop"]).stdout();
    let mut worker = app.start(&["worker", "--burst"], "", &[]);
    assert_eq!(worker.wait_exit(super::WAIT), Some(0), "{}", worker.log());
    let log = worker.log();
    assert!(log.contains("NOT checked"), "{log}");
    assert!(log.contains("testing only"), "{log}");
    super::wait_status(
        &app.store(),
        &id,
        redis_tasks::protocol::TaskStatus::Finished,
    );
}

#[test]
fn tls_settings_without_a_tls_url_are_refused() {
    let app = AppEnv::new(&[
        ("REDIS_URL", "redis://127.0.0.1:1".to_owned()),
        ("RT_REDIS_TLS_CA_FILE", "/nonexistent/ca.pem".to_owned()),
    ]);
    let out = app.admin(&["info"]).fails();
    assert!(out.stderr.contains("rediss://"), "{}", out.stderr);
    let app = AppEnv::new(&[
        ("REDIS_URL", "rediss://127.0.0.1:1".to_owned()),
        ("RT_REDIS_TLS_CA_FILE", "/nonexistent/ca.pem".to_owned()),
    ]);
    let out = app.admin(&["info"]).fails();
    assert!(
        out.stderr.contains("/nonexistent/ca.pem") && out.stderr.contains("redis_tls_ca_file"),
        "{}",
        out.stderr
    );
}
