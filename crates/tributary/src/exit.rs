//! The exit codes of the binary, so that scripts and orchestrators can tell a configuration
//! to fix from a dependency to wait for and from a check that failed (docs/operations.md,
//! "Exit codes").

use std::error::Error;
use std::fmt;

/// What kind of failure ended the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The configuration file is missing, does not parse or does not validate: 3.
    Config,
    /// PostgreSQL, NATS or the running bridge could not be reached (in time): 4.
    Unreachable,
    /// The command ran and a check it makes failed (`preflight`): 5.
    CheckFailed,
}

impl Kind {
    pub fn code(self) -> u8 {
        match self {
            Kind::Config => 3,
            Kind::Unreachable => 4,
            Kind::CheckFailed => 5,
        }
    }
}

/// An error with its kind; it reads exactly as the error it wraps.
#[derive(Debug)]
pub struct Classified {
    kind: Kind,
    inner: anyhow::Error,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl Error for Classified {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.inner.source()
    }
}

pub fn classify(kind: Kind, e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        kind,
        inner: e.into(),
    })
}

pub fn config(e: impl Into<anyhow::Error>) -> anyhow::Error {
    classify(Kind::Config, e)
}

pub fn unreachable(e: impl Into<anyhow::Error>) -> anyhow::Error {
    classify(Kind::Unreachable, e)
}

pub fn check_failed(e: impl Into<anyhow::Error>) -> anyhow::Error {
    classify(Kind::CheckFailed, e)
}

/// The process exit code for `e`: its kind's, 3 for any configuration error in its chain,
/// otherwise 1.
pub fn code(e: &anyhow::Error) -> u8 {
    if let Some(c) = e.downcast_ref::<Classified>() {
        return c.kind.code();
    }
    if e.chain().any(|c| c.is::<tributary_config::ConfigError>()) {
        return Kind::Config.code();
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_the_text_is_kept() {
        let e = unreachable(anyhow::anyhow!("NATS at nats://x:4222: connection refused"));
        assert_eq!(code(&e), 4);
        assert_eq!(e.to_string(), "NATS at nats://x:4222: connection refused");
        assert_eq!(code(&config(anyhow::anyhow!("config key `a`: bad"))), 3);
        assert_eq!(code(&check_failed(anyhow::anyhow!("2 checks failed"))), 5);
        assert_eq!(code(&anyhow::anyhow!("anything else")), 1);
        let parse = tributary_config::parse("not toml [").map(|_| ());
        let e = anyhow::Error::from(parse.expect_err("invalid")).context("loading");
        assert_eq!(code(&e), 3);
    }
}
