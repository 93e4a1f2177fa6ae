use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use tributary_config::NatsConfig;

use crate::NatsError;

/// Connects with the configured authentication and TLS. Fails fast (naming the servers)
/// when none answers, so that start-up reports an unreachable NATS instead of hanging.
pub async fn connect(cfg: &NatsConfig, client_name: &str) -> Result<Client, NatsError> {
    let servers = cfg.servers.join(", ");
    let config_err = |key: &str, message: String| NatsError::Config {
        key: key.to_string(),
        message,
    };
    let mut opts = ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .client_capacity(65_536)
        .max_reconnects(None::<usize>);
    if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
        let password = password
            .resolve()
            .map_err(|e| config_err("nats.password", e.to_string()))?;
        opts = opts.user_and_password(user.clone(), password);
    }
    if let Some(token) = &cfg.token {
        let token = token
            .resolve()
            .map_err(|e| config_err("nats.token", e.to_string()))?;
        opts = opts.token(token);
    }
    if let Some(seed) = &cfg.nkey_seed {
        let seed = seed
            .resolve()
            .map_err(|e| config_err("nats.nkey_seed", e.to_string()))?;
        opts = opts.nkey(seed);
    }
    if let Some(path) = &cfg.credentials_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| config_err("nats.credentials_file", format!("{path}: {e}")))?;
    }
    if let Some(tls) = &cfg.tls {
        if let Some(ca) = &tls.ca_file {
            if !std::path::Path::new(ca).exists() {
                return Err(config_err(
                    "nats.tls.ca_file",
                    format!("{ca} does not exist"),
                ));
            }
            opts = opts.add_root_certificates(PathBuf::from(ca));
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(c), Some(k)) => {
                opts = opts.add_client_certificate(PathBuf::from(c), PathBuf::from(k))
            }
            (None, None) => {}
            _ => {
                return Err(config_err(
                    "nats.tls.cert_file",
                    "cert_file and key_file go together".into(),
                ))
            }
        }
        opts = opts.require_tls(tls.required || tls.ca_file.is_some());
    }
    let addrs: Vec<async_nats::ServerAddr> = cfg
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse()
                .map_err(|e| config_err(&format!("nats.servers[{i}]"), format!("{s:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    opts.connect(addrs)
        .await
        .map_err(|source| NatsError::Connect { servers, source })
}
