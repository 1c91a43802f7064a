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

    /// Validates `config` for a runtime with these models: [`Config::validate_with_models`] (an unknown
    /// model is reported with the registered names), then each model's own checks of its sections.
    pub fn check(&self, config: &Config) -> Result<(), Vec<ConfigIssue>> {
        self.check_with_drivers(config, &shotline_config::DriverCatalog::builtin())
    }

    /// [`ModelRegistry::check`] for a runtime whose devices may also name the drivers of `drivers`.
    pub fn check_with_drivers(
        &self,
        config: &Config,
        drivers: &shotline_config::DriverCatalog,
    ) -> Result<(), Vec<ConfigIssue>> {
        config.validate_with_plugins(drivers, &self.names())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use shotline_config::{parse_str, ModelName, SIM_YAML};

    #[test]
    fn the_builtin_registry_serves_sim_yaml_and_names_its_models_for_an_unknown_one() {
        let r = ModelRegistry::builtin();
        assert_eq!(r.names(), shotline_config::BUILTIN_MODELS);
        let mut config = parse_str(SIM_YAML, "sim.yaml").unwrap();
        assert_eq!(r.check(&config), Ok(()));
        config.backends[0].model = ModelName::new("rydberg");
        let issues = r.check(&config).unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "backends[0].model");
        assert_eq!(
            issues[0].message,
            "unknown model \"rydberg\"; registered models: singlequdit"
        );
    }

    #[test]
    fn a_name_is_registered_once_and_must_be_usable_in_a_config() {
        struct Named(&'static str);
        impl BackendModel for Named {
            fn name(&self) -> &str {
                self.0
            }
            fn summary(&self) -> &str {
                "test"
            }
            fn publish(
                &self,
                s: &shotline_config::BackendSection,
            ) -> shotline_protocol::BackendConfig {
                crate::singlequdit::publish(s)
            }
            fn compile(
                &self,
                _: &shotline_config::BackendSection,
                _: &shotline_protocol::Experiment,
            ) -> Result<Vec<shotline_hal::timeline::DeviceTimeline>, crate::CompileError>
            {
                Ok(vec![])
            }
            fn sim_world(
                &self,
                _: &shotline_config::BackendSection,
            ) -> shotline_hal::sim::SimWorld {
                shotline_hal::sim::SimWorld::new(1)
            }
            fn sim_coupling(
                &self,
                _: &shotline_config::BackendSection,
                _: &str,
            ) -> shotline_hal::sim::Coupling {
                shotline_hal::sim::Coupling::None
            }
            fn calibration(
                &self,
                _: &shotline_config::BackendSection,
            ) -> Vec<crate::CalibrationParam> {
                vec![]
            }
        }
        let mut r = ModelRegistry::builtin();
        assert_eq!(
            r.register(Arc::new(Named("singlequdit"))),
            Err(RegistryError::Duplicate("singlequdit".into()))
        );
        assert_eq!(
            r.register(Arc::new(Named("Lab Model"))),
            Err(RegistryError::InvalidName("Lab Model".into()))
        );
        assert_eq!(r.register(Arc::new(Named("lab"))), Ok(()));
        assert_eq!(r.names(), vec!["lab", "singlequdit"]);
        assert!(r.get("lab").is_some());
    }
}
