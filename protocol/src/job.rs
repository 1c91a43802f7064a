//! The typed job: what the validator produces from a client's raw [`crate::Value`].

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One instruction; serialises as the 3-array `[name, wires, params]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    from = "(String, Vec<u32>, Vec<f64>)",
    into = "(String, Vec<u32>, Vec<f64>)"
)]
pub struct Instruction {
    /// Instruction name, e.g. `rlx`.
    pub name: String,
    /// Wires the instruction acts on.
    pub wires: Vec<u32>,
    /// Numeric parameters.
    pub params: Vec<f64>,
}

impl Instruction {
    /// Builds an instruction.
    pub fn new(name: impl Into<String>, wires: Vec<u32>, params: Vec<f64>) -> Self {
        Instruction {
            name: name.into(),
            wires,
            params,
        }
    }
}

impl From<(String, Vec<u32>, Vec<f64>)> for Instruction {
    fn from((name, wires, params): (String, Vec<u32>, Vec<f64>)) -> Self {
        Instruction {
            name,
            wires,
            params,
        }
    }
}

impl From<Instruction> for (String, Vec<u32>, Vec<f64>) {
    fn from(i: Instruction) -> Self {
        (i.name, i.wires, i.params)
    }
}

/// How the wires of several species are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireOrder {
    /// All wires of species 0, then species 1, ...
    Sequential,
    /// Species alternate wire by wire.
    Interleaved,
}

impl WireOrder {
    /// The wire name: `sequential` or `interleaved`.
    pub fn as_str(self) -> &'static str {
        match self {
            WireOrder::Sequential => "sequential",
            WireOrder::Interleaved => "interleaved",
        }
    }

    /// Parses `sequential` / `interleaved`.
    pub fn parse(s: &str) -> Option<WireOrder> {
        match s {
            "sequential" => Some(WireOrder::Sequential),
            "interleaved" => Some(WireOrder::Interleaved),
            _ => None,
        }
    }
}

impl fmt::Display for WireOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One experiment of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// The instructions, in execution order.
    pub instructions: Vec<Instruction>,
    /// Number of wires used.
    pub num_wires: u32,
    /// Number of shots.
    pub shots: u32,
    /// Wire ordering convention.
    pub wire_order: WireOrder,
    /// RNG seed; `None` lets the server choose (and record) one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// A validated job: experiments in submission order. Serialises as a map name -> experiment,
/// keeping that order (also when deserialised).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Job {
    /// `(name, experiment)` pairs in submission order.
    pub experiments: Vec<(String, Experiment)>,
}

impl Job {
    /// The experiment named `name`.
    pub fn experiment(&self, name: &str) -> Option<&Experiment> {
        self.experiments
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
    }

    /// Total number of shots over all experiments.
    pub fn total_shots(&self) -> u64 {
        self.experiments
            .iter()
            .map(|(_, e)| u64::from(e.shots))
            .sum()
    }
}

impl Serialize for Job {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.experiments.len()))?;
        for (name, exp) in &self.experiments {
            map.serialize_entry(name, exp)?;
        }
        map.end()
    }
}

struct JobVisitor;

impl<'de> Visitor<'de> for JobVisitor {
    type Value = Job;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of experiment name to experiment")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Job, A::Error> {
        let mut experiments: Vec<(String, Experiment)> = Vec::new();
        let mut seen = HashSet::new();
        while let Some((name, exp)) = map.next_entry::<String, Experiment>()? {
            if !seen.insert(name.clone()) {
                return Err(de::Error::custom(format!(
                    "duplicate experiment name {name:?}"
                )));
            }
            experiments.push((name, exp));
        }
        Ok(Job { experiments })
    }
}

impl<'de> Deserialize<'de> for Job {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(JobVisitor)
    }
}
