use std::path::PathBuf;
use std::time::Duration;

use tributary_config::{SourceConfig, SslMode};
use tributary_postgres::{ConnectParams, TlsMode};

use crate::PipelineError;

/// Connection parameters of a source, with its password secret resolved.
pub fn connect_params(source: &SourceConfig) -> Result<ConnectParams, PipelineError> {
    let c = &source.connection;
    let password = match &c.password {
        Some(secret) => Some(secret.resolve().map_err(|e| PipelineError::Fatal {
            source_name: source.name.clone(),
            message: format!("config key `sources.connection.password`: {e}"),
        })?),
        None => None,
    };
    Ok(ConnectParams {
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
        application_name: format!("tributary-{}", source.name),
    })
}
