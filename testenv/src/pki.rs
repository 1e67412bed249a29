//! The control plane's own certificate authorities: one for serving, one for
//! client certificates, and a service-account signing key.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// Paths of the PEM files the apiserver and its clients need.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub client_ca_cert: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_public_key: PathBuf,
}

fn ca(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "barge-testenv");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

fn write(dir: &Path, name: &str, pem: &str) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    std::fs::write(&path, pem).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// Issues a client certificate: the apiserver reads the user name from the
/// common name and the groups from the organizations.
pub fn client_cert(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    user: &str,
    groups: &[&str],
) -> Result<(String, String), Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, user);
    for group in groups {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *group);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Everything generated for one control plane; the client CA is kept so tests
/// can issue certificates for other users (for example to test RBAC).
pub struct Authorities {
    pub files: Pki,
    pub client_ca: CertifiedIssuer<'static, KeyPair>,
}

/// Generates all certificates and keys into `dir`.
pub fn generate(dir: &Path) -> Result<Authorities, Error> {
    let serving_ca = ca("barge-testenv-serving-ca")?;
    let client_ca = ca("barge-testenv-client-ca")?;

    let mut serving =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    serving.distinguished_name = DistinguishedName::new();
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let serving_key = KeyPair::generate()?;
    let serving_cert = serving.signed_by(&serving_key, &serving_ca)?;

    let (admin_cert, admin_key) = client_cert(&client_ca, "admin", &["system:masters"])?;
    let sa_key = KeyPair::generate()?;

    let files = Pki {
        ca_cert: write(dir, "ca.crt", &serving_ca.pem())?,
        serving_cert: write(dir, "apiserver.crt", &serving_cert.pem())?,
        serving_key: write(dir, "apiserver.key", &serving_key.serialize_pem())?,
        client_ca_cert: write(dir, "client-ca.crt", &client_ca.pem())?,
        admin_cert: write(dir, "admin.crt", &admin_cert)?,
        admin_key: write(dir, "admin.key", &admin_key)?,
        sa_key: write(dir, "sa.key", &sa_key.serialize_pem())?,
        // The apiserver reads verification keys as PKIX public keys.
        sa_public_key: write(dir, "sa.pub", &sa_key.public_key_pem())?,
    };
    Ok(Authorities { files, client_ca })
}
