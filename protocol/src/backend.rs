//! What a backend publishes: its configuration and the schema of its instructions.

use serde::{Deserialize, Serialize};

use crate::job::WireOrder;

/// The kind of cold-atom system a backend models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColdAtomType {
    /// Fermionic atoms.
    Fermion,
    /// Bosonic atoms.
    Boson,
    /// Collective spins.
    Spin,
    /// Several species of different kinds.
    Mixed,
}

/// The role of an instruction, used for ordering rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstructionKind {
    /// A unitary operation.
    Gate,
    /// Loads atoms; only allowed as the first instruction.
    Load,
    /// A measurement; only barriers and further measurements may follow it.
    Measure,
    /// A scheduling barrier with no physical effect.
    Barrier,
}

/// The allowed range of one instruction parameter (inclusive bounds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Parameter name, e.g. `theta`.
    pub name: String,
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
    /// Whether the value must be a whole number.
    pub integer: bool,
}

impl ParamSpec {
    /// A real-valued parameter in `[min, max]`.
    pub fn real(name: impl Into<String>, min: f64, max: f64) -> Self {
        ParamSpec {
            name: name.into(),
            min,
            max,
            integer: false,
        }
    }

    /// A whole-number parameter in `[min, max]`.
    pub fn integer(name: impl Into<String>, min: f64, max: f64) -> Self {
        ParamSpec {
            name: name.into(),
            min,
            max,
            integer: true,
        }
    }
}

/// The full schema of one instruction, used by the validator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstructionSpec {
    /// Instruction name as used in jobs.
    pub name: String,
    /// Its role.
    pub kind: InstructionKind,
    /// Its parameters, in order; the count is fixed.
    pub params: Vec<ParamSpec>,
    /// Allowed wire lists: an instruction's wires must equal one entry.
    pub coupling_map: Vec<Vec<u32>>,
    /// Human description.
    pub description: String,
}

/// A gate as described in the qiskit-cold-atom compatible backend configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSpec {
    /// Gate name.
    pub name: String,
    /// Parameter names.
    pub parameters: Vec<String>,
    /// Allowed wire lists.
    pub coupling_map: Vec<Vec<u32>>,
    /// Human description.
    pub description: String,
}

impl From<&InstructionSpec> for GateSpec {
    fn from(spec: &InstructionSpec) -> Self {
        GateSpec {
            name: spec.name.clone(),
            parameters: spec.params.iter().map(|p| p.name.clone()).collect(),
            coupling_map: spec.coupling_map.clone(),
            description: spec.description.clone(),
        }
    }
}

/// A backend's published configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendConfig {
    /// Stable identifier, e.g. `singlequdit`.
    pub backend_name: String,
    /// Human name.
    pub display_name: String,
    /// Version of the backend's configuration/model.
    pub backend_version: String,
    /// Human description.
    pub description: String,
    /// Kind of system.
    pub cold_atom_type: ColdAtomType,
    /// Number of qubits/qudits (ecosystem compatibility).
    pub n_qubits: u32,
    /// Number of wires a job may use.
    pub num_wires: u32,
    /// Number of atomic species.
    pub num_species: u32,
    /// Wire order jobs must use.
    pub wire_order: WireOrder,
    /// Maximum shots per experiment.
    pub max_shots: u32,
    /// Maximum experiments per job.
    pub max_experiments: u32,
    /// Whether this is a simulator.
    pub simulator: bool,
    /// Names of every supported instruction.
    pub supported_instructions: Vec<String>,
    /// The gate-kind instructions, in the ecosystem's format.
    pub gates: Vec<GateSpec>,
    /// Full instruction schema used by the validator (shotline extension).
    pub instructions: Vec<InstructionSpec>,
}

impl BackendConfig {
    /// The schema of the instruction named `name`.
    pub fn instruction(&self, name: &str) -> Option<&InstructionSpec> {
        self.instructions.iter().find(|i| i.name == name)
    }
}
