//! [`ModelRegistry`]: the models a runtime knows, by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use shotline_config::{Config, ConfigIssue};

use crate::BackendModel;

/// Why a model could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two models with one name.
    #[error("a model named \"{0}\" is already registered")]
    Duplicate(String),
    /// A name a configuration could not use.
    #[error("invalid model name \"{0}\": use 1 to 32 characters from a-z, 0-9, _ and -")]
    InvalidName(String),
}

/// The models a runtime knows, by name (cheap to clone).
#[derive(Clone)]
pub struct ModelRegistry {
    models: BTreeMap<String, Arc<dyn BackendModel>>,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.models.keys()).finish()
    }
}

impl Default for ModelRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl ModelRegistry {
    /// No models at all.
    pub fn empty() -> Self {
        Self {
            models: BTreeMap::new(),
        }
    }

    /// The built-in models: `singlequdit`.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.models.insert(
            crate::singlequdit::NAME.to_owned(),
            Arc::new(crate::singlequdit::SingleQudit),
        );
        r
    }

    /// Adds `model`; its name must be new and usable in a configuration.
    pub fn register(&mut self, model: Arc<dyn BackendModel>) -> Result<(), RegistryError> {
        let name = model.name().to_owned();
        if !valid_name(&name) {
            return Err(RegistryError::InvalidName(name));
        }
        if self.models.contains_key(&name) {
            return Err(RegistryError::Duplicate(name));
        }
        self.models.insert(name, model);
        Ok(())
    }

    /// The model named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn BackendModel>> {
        self.models.get(name).cloned()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }

    /// Checks that every backend of `config` names a registered model and passes that model's own checks
    /// of its section. An unknown model is reported with the registered names.
    pub fn check(&self, config: &Config) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        for (i, section) in config.backends.iter().enumerate() {
            let path = format!("backends[{i}]");
            match self.get(section.model.as_str()) {
                None => issues.push(ConfigIssue::new(
                    format!("{path}.model"),
                    format!(
                        "unknown model \"{}\"; registered models: {}",
                        section.model,
                        self.names().join(", ")
                    ),
                )),
                Some(model) => {
                    for (at, message) in model.check_section(section) {
                        issues.push(ConfigIssue::new(format!("{path}.{at}"), message));
                    }
                }
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(issues)
        }
    }
}
