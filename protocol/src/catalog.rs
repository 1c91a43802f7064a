//! Known instruction sets and backend configurations (pure data).

use std::f64::consts::PI;

use crate::backend::{
    BackendConfig, ColdAtomType, GateSpec, InstructionKind, InstructionSpec, ParamSpec,
};
use crate::job::WireOrder;

/// Default maximum shots per experiment.
pub const DEFAULT_MAX_SHOTS: u32 = 1_000_000;
/// Default maximum experiments per job.
pub const DEFAULT_MAX_EXPERIMENTS: u32 = 1000;
/// Largest number of atoms `load` accepts on `singlequdit`.
pub const SINGLEQUDIT_MAX_ATOMS: u32 = 500;

fn spec(
    name: &str,
    kind: InstructionKind,
    params: Vec<ParamSpec>,
    description: &str,
) -> InstructionSpec {
    InstructionSpec {
        name: name.to_string(),
        kind,
        params,
        coupling_map: vec![vec![0]],
        description: description.to_string(),
    }
}

/// The instruction schema of the `singlequdit` backend (a collective spin on wire 0).
pub fn singlequdit_instructions() -> Vec<InstructionSpec> {
    vec![
        spec(
            "rlx",
            InstructionKind::Gate,
            vec![ParamSpec::real("theta", 0.0, 2.0 * PI)],
            "Rotation exp(-i theta Lx) of the collective spin",
        ),
        spec(
            "rlz",
            InstructionKind::Gate,
            vec![ParamSpec::real("theta", 0.0, 2.0 * PI)],
            "Rotation exp(-i theta Lz) of the collective spin",
        ),
        spec(
            "rlz2",
            InstructionKind::Gate,
            vec![ParamSpec::real("theta", 0.0, 20.0 * PI)],
            "One-axis twisting exp(-i theta Lz^2) of the collective spin",
        ),
        spec(
            "load",
            InstructionKind::Load,
            vec![ParamSpec::integer(
                "n_atoms",
                1.0,
                f64::from(SINGLEQUDIT_MAX_ATOMS),
            )],
            "Loads n_atoms atoms into the trap (must be the first instruction)",
        ),
        spec(
            "measure",
            InstructionKind::Measure,
            vec![],
            "Measures the occupation number once per shot",
        ),
        spec(
            "barrier",
            InstructionKind::Barrier,
            vec![],
            "Scheduling barrier without physical effect",
        ),
    ]
}

/// A `singlequdit` backend configuration (spin, one wire, simulator) with the given identity
/// and limits. Design defaults: [`DEFAULT_MAX_SHOTS`], [`DEFAULT_MAX_EXPERIMENTS`].
pub fn singlequdit_config(
    backend_name: &str,
    display_name: &str,
    backend_version: &str,
    description: &str,
    max_shots: u32,
    max_experiments: u32,
) -> BackendConfig {
    let instructions = singlequdit_instructions();
    BackendConfig {
        backend_name: backend_name.to_string(),
        display_name: display_name.to_string(),
        backend_version: backend_version.to_string(),
        description: description.to_string(),
        cold_atom_type: ColdAtomType::Spin,
        n_qubits: 1,
        num_wires: 1,
        num_species: 1,
        wire_order: WireOrder::Sequential,
        max_shots,
        max_experiments,
        simulator: true,
        supported_instructions: instructions.iter().map(|i| i.name.clone()).collect(),
        gates: instructions
            .iter()
            .filter(|i| i.kind == InstructionKind::Gate)
            .map(GateSpec::from)
            .collect(),
        instructions,
    }
}
