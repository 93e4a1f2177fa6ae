//! Connection parameters shared by the replication connection and the control plane.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::PgError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not verified.
    Prefer,
    /// TLS or fail; the certificate is not verified.
    Require,
    /// TLS, certificate chain verified against the root certificates.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

/// Where and how to connect. `Debug` never shows the password.
#[derive(Clone)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub tls: TlsMode,
    pub root_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Used as `application_name`, visible in `pg_stat_replication` / `pg_stat_activity`.
    pub application_name: String,
}

impl std::fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectParams")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ConnectParams {
    /// The parameters of a `[sources.connection]`-shaped block, with its password already
    /// resolved (the caller names the key when that fails).
    pub fn from_config(
        c: &tributary_config::ConnectionConfig,
        password: Option<String>,
        application_name: impl Into<String>,
    ) -> Self {
        use tributary_config::SslMode;
        ConnectParams {
            host: c.host.clone(),
            port: c.port,
            user: c.user.clone(),
            password,
            dbname: c.dbname.clone(),
            tls: match c.sslmode {
                SslMode::Disable => TlsMode::Disable,
                SslMode::Prefer => TlsMode::Prefer,
                SslMode::Require => TlsMode::Require,
                SslMode::VerifyCa => TlsMode::VerifyCa,
                SslMode::VerifyFull => TlsMode::VerifyFull,
            },
            root_cert: c.sslrootcert.as_ref().map(PathBuf::from),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            application_name: application_name.into(),
        }
    }

    /// `host:port/dbname`, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }

    pub(crate) fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, PgError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PgError::Tls(e.to_string()))?;
        let config = match self.tls {
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let mut roots = rustls::RootCertStore::empty();
                match &self.root_cert {
                    Some(path) => {
                        let pem = std::fs::read(path).map_err(|e| {
                            PgError::Tls(format!("cannot read sslrootcert {}: {e}", path.display()))
                        })?;
                        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                            let cert = cert.map_err(|e| {
                                PgError::Tls(format!("bad certificate in {}: {e}", path.display()))
                            })?;
                            roots
                                .add(cert)
                                .map_err(|e| PgError::Tls(format!("{}: {e}", path.display())))?;
                        }
                    }
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                if self.tls == TlsMode::VerifyCa {
                    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
                        .build()
                        .map_err(|e| PgError::Tls(e.to_string()))?;
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(tls_verify::NoHostname(
                            verifier,
                        )))
                        .with_no_client_auth()
                } else {
                    builder.with_root_certificates(roots).with_no_client_auth()
                }
            }
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(tls_verify::AcceptAny))
                .with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

mod tls_verify {
    //! `require` / `prefer` encrypt without verifying (libpq's semantics); `verify-ca` checks
    //! the chain but not the host name.
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, Error, SignatureScheme};
    use std::sync::Arc;

    #[derive(Debug)]
    pub struct AcceptAny;

    fn schemes() -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            schemes()
        }
    }

    #[derive(Debug)]
    pub struct NoHostname(pub Arc<rustls::client::WebPkiServerVerifier>);

    impl ServerCertVerifier for NoHostname {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match self
                .0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Err(Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
                | Err(Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}
