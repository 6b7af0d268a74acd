//! Certificates made in the test: a CA and leaf certificates for loopback, written as
//! PEM files the masters and clients read.

// Each test binary uses its own part of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority whose certificate is at [`Ca::cert`].
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: PathBuf,
    dir: PathBuf,
    name: String,
}

/// A leaf certificate's files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA called `name`, its certificate written under `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            cert: path,
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The CA certificate's file.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// A certificate for 127.0.0.1 and localhost, good for serving and for calling
    /// (mutual TLS), written as `<ca>-<leaf>.pem` and `<ca>-<leaf>.key`.
    pub fn issue(&self, leaf: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{leaf}.{}", self.name));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = Leaf {
            cert: self.dir.join(format!("{}-{leaf}.pem", self.name)),
            key: self.dir.join(format!("{}-{leaf}.key", self.name)),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

impl Leaf {
    /// Writes this leaf's certificate and key over `other`'s files (a rotation).
    pub fn replace(&self, other: &Leaf) {
        // Key first: a reload between the two writes fails (mismatch) and keeps the old.
        std::fs::copy(&self.key, &other.key).unwrap();
        std::fs::copy(&self.cert, &other.cert).unwrap();
    }
}
