//! Certificates for tests, made with openssl: a CA, and certificates for 127.0.0.1 it signs, valid
//! now or within given dates (expired or future ones, for what must be refused).

use std::path::Path;
use std::process::Command;

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CA_CONFIG: &str = "[ca]\ndefault_ca = c\n[c]\ndatabase = index\nnew_certs_dir = .\n\
serial = serial\nunique_subject = no\ndefault_md = sha256\npolicy = p\nx509_extensions = ext\n\
[p]\ncommonName = supplied\n[ext]\nsubjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n";

const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA (`ca.crt`, `ca.key`) in `dir` that signs what [`issue`] makes.
pub fn make_ca(dir: &Path) {
    std::fs::write(dir.join("ca.cnf"), CA_CONFIG).unwrap();
    std::fs::write(dir.join("index"), "").unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    let subject = ["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"];
    let args = [
        &["req", "-x509"][..],
        &EC_KEY,
        &subject,
        &["-subj", "/CN=hub test CA"],
    ];
    openssl(dir, &args.concat());
}

/// `NAME.crt` and `NAME.key` for 127.0.0.1, signed by the CA in `dir`, valid within `dates`
/// (openssl's `YYYYMMDDHHMMSSZ`) or for two days from now; also `NAME.der`.
pub fn issue(dir: &Path, name: &str, dates: Option<(&str, &str)>) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    let request = ["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"];
    openssl(dir, &[&["req", "-new"][..], &EC_KEY, &request].concat());
    let mut args = vec![
        "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key",
        "-in", &csr, "-out", &crt,
    ];
    match dates {
        Some((start, end)) => args.extend(["-startdate", start, "-enddate", end]),
        None => args.extend(["-days", "2"]),
    }
    openssl(dir, &args);
    let der = format!("{name}.der");
    openssl(dir, &["x509", "-in", &crt, "-outform", "der", "-out", &der]);
}
