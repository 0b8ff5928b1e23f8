//! The configuration in force ([`GuardrailSource`]): a file re-read when its
//! modification time changes, keeping the last good configuration when the new one is
//! invalid, or none (deny-all).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use super::rules::GuardrailConfig;
use crate::{Error, Result};

/// The configuration in force: a file re-read when it changes, or none (deny-all).
#[derive(Debug)]
pub struct GuardrailSource {
    path: Option<PathBuf>,
    state: RwLock<(Option<SystemTime>, Arc<GuardrailConfig>)>,
}

fn modified(path: &Path) -> Result<SystemTime> {
    Ok(std::fs::metadata(path)?.modified()?)
}

impl GuardrailSource {
    /// No configuration: every binding is denied, never reloaded.
    pub fn unconfigured() -> Self {
        Self::fixed(GuardrailConfig::unconfigured())
    }

    /// A configuration given in code (tests, embedding).
    pub fn fixed(config: GuardrailConfig) -> Self {
        GuardrailSource {
            path: None,
            state: RwLock::new((None, Arc::new(config))),
        }
    }

    /// Reads the file; a missing or invalid file is an error (the operator does not
    /// start without the guardrails it was told to use).
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let mtime = modified(&path)?;
        let config = GuardrailConfig::parse(&std::fs::read_to_string(&path)?)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(GuardrailSource {
            path: Some(path),
            state: RwLock::new((Some(mtime), Arc::new(config))),
        })
    }

    pub fn is_file(&self) -> bool {
        self.path.is_some()
    }

    pub fn current(&self) -> Arc<GuardrailConfig> {
        // Readers and the reloader never panic while holding the lock; a poisoned
        // lock still holds a complete configuration.
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Re-reads the file when its modification time changed; true when the configuration
    /// in force changed. An unreadable or invalid file keeps the previous configuration.
    pub fn reload(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let mtime = match modified(path) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "guardrail configuration unreadable; keeping the previous one");
                return false;
            }
        };
        if self.state.read().unwrap_or_else(|e| e.into_inner()).0 == Some(mtime) {
            return false;
        }
        let parsed = std::fs::read_to_string(path)
            .map_err(Error::from)
            .and_then(|t| GuardrailConfig::parse(&t));
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.0 = Some(mtime);
        match parsed {
            Ok(c) if *state.1 != c => {
                tracing::info!(path = %path.display(), rules = c.rules.len(), "guardrail configuration reloaded");
                state.1 = Arc::new(c);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "guardrail configuration invalid; keeping the previous one");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_reloaded_when_it_changes_and_bad_versions_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("guardrails.yaml");
        std::fs::write(&path, "rules: [{name: a, namespaces: [x]}]").expect("write");
        let src = GuardrailSource::from_file(&path).expect("load");
        assert_eq!(src.current().rules[0].name, "a");
        let bump = |text: &str, secs: u64| {
            std::fs::write(&path, text).expect("write");
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .expect("mtime");
        };
        bump("rules: [{name: b, namespaces: [x]}]", 1_000);
        assert!(src.reload());
        assert_eq!(src.current().rules[0].name, "b");
        assert!(!src.reload(), "unchanged file");
        bump("rules: [{name: c}]", 2_000);
        assert!(!src.reload());
        assert_eq!(src.current().rules[0].name, "b", "invalid file ignored");
        assert!(GuardrailSource::from_file(dir.path().join("missing.yaml")).is_err());
    }
}
