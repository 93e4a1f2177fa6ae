use tributary_config::SourceConfig;
use tributary_postgres::ConnectParams;

use crate::PipelineError;

/// Connection parameters of a source, with its password secret resolved.
pub fn connect_params(source: &SourceConfig) -> Result<ConnectParams, PipelineError> {
    let password = match &source.connection.password {
        Some(secret) => Some(secret.resolve().map_err(|e| PipelineError::Fatal {
            source_name: source.name.clone(),
            message: format!("config key `sources.connection.password`: {e}"),
        })?),
        None => None,
    };
    Ok(ConnectParams::from_config(
        &source.connection,
        password,
        format!("tributary-{}", source.name),
    ))
}
