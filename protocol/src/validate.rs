//! Validation of a client's raw job against a backend's published schema.
//!
//! Every error of a job is reported (capped at [`crate::MAX_REPORTED_ERRORS`]), one per
//! offending thing, each with a field path:
//! - `job`: the whole job (not a map, empty, too many experiments, bad experiment names);
//! - `<name>`: an experiment; `<name>.<field>`: one of its fields; an experiment whose name is
//!   unusable (empty, not a string) is located as `job[<index>]` instead;
//! - `<name>.instructions[i]`: an instruction; `.name`, `.wires[j]`, `.params[j]` name the three
//!   positions of its `[name, wires, params]` triple.

use std::collections::HashSet;

use crate::backend::{BackendConfig, InstructionKind, InstructionSpec};
use crate::error::{ErrorCode, ValidationError, ValidationReport};
use crate::job::{Experiment, Instruction, Job, WireOrder};
use crate::limits::JobLimits;
use crate::value::Value;

/// Field names an experiment may contain.
pub const EXPERIMENT_FIELDS: [&str; 5] =
    ["instructions", "num_wires", "shots", "wire_order", "seed"];

/// Checks `job` against `backend` and returns the typed job, or every error found.
///
/// `wire_order` and `seed` are optional (defaults: the backend's wire order, no seed;
/// a nil seed counts as absent). Any problem with `seed` is reported as `INVALID_SEED`.
pub fn validate_job(job: &Value, backend: &BackendConfig) -> Result<Job, ValidationReport> {
    validate_job_within(job, backend, &JobLimits::default())
}

/// [`validate_job`] with the server's size limits: experiment names at most
/// `limits.max_experiment_name_bytes` long (`INVALID_EXPERIMENT_NAME`, located `job[<index>]`), and at most
/// `limits.max_shots_per_job` shots over all experiments (`TOO_MANY_SHOTS`, located `job`).
pub fn validate_job_within(
    job: &Value,
    backend: &BackendConfig,
    limits: &JobLimits,
) -> Result<Job, ValidationReport> {
    let mut v = Validator {
        backend,
        limits,
        report: ValidationReport::default(),
    };
    let typed = v.job(job);
    if let Some(j) = &typed {
        let total = j.total_shots();
        if total > limits.max_shots_per_job {
            v.err(
                ErrorCode::TooManyShots,
                "job",
                format!(
                    "the job has {total} shots over its experiments; a job may have at most {} \
                     (limits.max_shots_per_job)",
                    limits.max_shots_per_job
                ),
                Some(total.to_string()),
                Some(limits.max_shots_per_job.to_string()),
            );
        }
    }
    match typed {
        Some(job) if v.report.is_empty() => Ok(job),
        _ => Err(v.report),
    }
}

struct Validator<'a> {
    backend: &'a BackendConfig,
    limits: &'a JobLimits,
    report: ValidationReport,
}

fn fmt_range(min: impl std::fmt::Display, max: impl std::fmt::Display) -> String {
    format!("[{min}, {max}]")
}

impl Validator<'_> {
    fn err(
        &mut self,
        code: ErrorCode,
        path: &str,
        message: String,
        value: Option<String>,
        limit: Option<String>,
    ) {
        self.report.push(ValidationError {
            code,
            path: path.to_string(),
            message,
            value,
            limit,
        });
    }

    fn type_err(&mut self, path: &str, expected: &str, got: &Value) {
        self.err(
            ErrorCode::InvalidType,
            path,
            format!("expected {expected}, got {}", got.type_name()),
            Some(got.short()),
            None,
        );
    }

    fn job(&mut self, job: &Value) -> Option<Job> {
        let Some(entries) = job.as_map() else {
            self.type_err("job", "a map of experiment name to experiment", job);
            return None;
        };
        if entries.is_empty() {
            self.err(
                ErrorCode::EmptyJob,
                "job",
                "the job contains no experiments".to_string(),
                None,
                Some(fmt_range(1, self.backend.max_experiments)),
            );
            return None;
        }
        let max = self.backend.max_experiments;
        if entries.len() > max as usize {
            self.err(
                ErrorCode::TooManyExperiments,
                "job",
                format!(
                    "the job has {} experiments, backend {} accepts at most {max}",
                    entries.len(),
                    self.backend.backend_name
                ),
                Some(entries.len().to_string()),
                Some(max.to_string()),
            );
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut experiments = Vec::with_capacity(entries.len().min(max as usize));
        let mut all_ok = true;
        for (index, (key, exp)) in entries.iter().enumerate() {
            let name = match key {
                Value::Str(s) if s.is_empty() => {
                    self.err(
                        ErrorCode::InvalidExperimentName,
                        "job",
                        "experiment names must be non-empty strings".to_string(),
                        Some(key.short()),
                        None,
                    );
                    None
                }
                Value::Str(s) if s.len() > self.limits.max_experiment_name_bytes => {
                    let max = self.limits.max_experiment_name_bytes;
                    self.err(
                        ErrorCode::InvalidExperimentName,
                        &format!("job[{index}]"),
                        format!(
                            "experiment name of {} bytes; names may be at most {max} bytes \
                             (limits.max_experiment_name_bytes)",
                            s.len()
                        ),
                        Some(key.short()),
                        Some(max.to_string()),
                    );
                    all_ok = false;
                    continue;
                }
                Value::Str(s) => Some(s.as_str()),
                other => {
                    self.type_err("job", "experiment names to be strings", other);
                    None
                }
            };
            // An experiment without a usable name is located by its position in the job.
            let fallback;
            let path = match name {
                Some(n) => n,
                None => {
                    fallback = format!("job[{index}]");
                    fallback.as_str()
                }
            };
            if let Some(n) = name {
                if !seen.insert(n) {
                    self.err(
                        ErrorCode::DuplicateExperiment,
                        n,
                        format!("experiment name {n:?} is used more than once"),
                        Some(key.short()),
                        None,
                    );
                    all_ok = false;
                    continue;
                }
            }
            let typed = self.experiment(path, exp);
            match (name, typed) {
                (Some(n), Some(e)) => experiments.push((n.to_string(), e)),
                _ => all_ok = false,
            }
        }
        all_ok.then_some(Job { experiments })
    }

    fn experiment(&mut self, path: &str, exp: &Value) -> Option<Experiment> {
        let Some(entries) = exp.as_map() else {
            self.type_err(path, "an experiment map", exp);
            return None;
        };
        let mut fields: [Option<&Value>; 5] = [None; 5];
        for (key, value) in entries {
            let Some(k) = key.as_str() else {
                self.err(
                    ErrorCode::UnknownField,
                    path,
                    format!("field names must be strings, got {}", key.type_name()),
                    Some(key.short()),
                    Some(EXPERIMENT_FIELDS.join(", ")),
                );
                continue;
            };
            let field_path = format!("{path}.{k}");
            match EXPERIMENT_FIELDS.iter().position(|f| *f == k) {
                Some(i) if fields[i].is_some() => self.err(
                    ErrorCode::DuplicateField,
                    &field_path,
                    format!("field {k:?} appears more than once"),
                    None,
                    None,
                ),
                Some(i) => fields[i] = Some(value),
                None => self.err(
                    ErrorCode::UnknownField,
                    &field_path,
                    format!(
                        "unknown field {k:?}; allowed fields: {}",
                        EXPERIMENT_FIELDS.join(", ")
                    ),
                    None,
                    Some(EXPERIMENT_FIELDS.join(", ")),
                ),
            }
        }
        let [instructions, num_wires, shots, wire_order, seed] = fields;
        let num_wires = self.num_wires(path, num_wires);
        let shots = self.shots(path, shots);
        let wire_order = self.wire_order(path, wire_order);
        let seed = self.seed(path, seed);
        let wire_bound = num_wires.unwrap_or(self.backend.num_wires);
        let instructions = self.instructions(path, instructions, wire_bound);
        Some(Experiment {
            instructions: instructions?,
            num_wires: num_wires?,
            shots: shots?,
            wire_order: wire_order?,
            seed: seed?,
        })
    }

    /// Reads a required integer field; `None` after reporting when absent or not an integer.
    fn required_int<'v>(&mut self, path: &str, v: Option<&'v Value>) -> Option<&'v Value> {
        match v {
            None => {
                self.err(
                    ErrorCode::MissingField,
                    path,
                    format!("required field {path:?} is missing"),
                    None,
                    None,
                );
                None
            }
            Some(v) if v.is_integer() => Some(v),
            Some(v) => {
                self.type_err(path, "an integer", v);
                None
            }
        }
    }

    fn num_wires(&mut self, exp: &str, v: Option<&Value>) -> Option<u32> {
        let path = format!("{exp}.num_wires");
        let v = self.required_int(&path, v)?;
        let max = self.backend.num_wires;
        match v.as_u64() {
            Some(n) if n >= 1 && n <= u64::from(max) => u32::try_from(n).ok(),
            _ => {
                self.err(
                    ErrorCode::NumWiresOutOfRange,
                    &path,
                    format!(
                        "num_wires must be between 1 and {max} for backend {}",
                        self.backend.backend_name
                    ),
                    Some(v.short()),
                    Some(fmt_range(1, max)),
                );
                None
            }
        }
    }

    fn shots(&mut self, exp: &str, v: Option<&Value>) -> Option<u32> {
        let path = format!("{exp}.shots");
        let v = self.required_int(&path, v)?;
        let max = self.backend.max_shots;
        match v.as_u64() {
            Some(n) if n >= 1 && n <= u64::from(max) => u32::try_from(n).ok(),
            _ => {
                self.err(
                    ErrorCode::ShotsOutOfRange,
                    &path,
                    format!(
                        "shots must be between 1 and {max} for backend {}",
                        self.backend.backend_name
                    ),
                    Some(v.short()),
                    Some(fmt_range(1, max)),
                );
                None
            }
        }
    }

    fn wire_order(&mut self, exp: &str, v: Option<&Value>) -> Option<WireOrder> {
        let expected = self.backend.wire_order;
        let Some(v) = v else {
            return Some(expected);
        };
        let path = format!("{exp}.wire_order");
        let Some(s) = v.as_str() else {
            self.type_err(&path, "a string", v);
            return None;
        };
        // With one species the two orders list the wires the same way: either spelling means the backend's
        // order (the cold-atom ecosystem's clients send `interleaved` to single-species backends).
        let one_species = self.backend.num_species <= 1;
        match WireOrder::parse(s) {
            Some(order) if order == expected || one_species => return Some(expected),
            _ => {}
        }
        let allowed = if one_species {
            "sequential, interleaved (the same with one species)".to_string()
        } else {
            expected.as_str().to_string()
        };
        self.err(
            ErrorCode::WireOrderMismatch,
            &path,
            format!(
                "backend {} uses wire_order {:?}; allowed values: {allowed}",
                self.backend.backend_name,
                expected.as_str(),
            ),
            Some(v.short()),
            Some(allowed),
        );
        None
    }

    /// `Some(seed)` when valid (absent or nil is `Some(None)`).
    fn seed(&mut self, exp: &str, v: Option<&Value>) -> Option<Option<u64>> {
        match v {
            None | Some(Value::Nil) => Some(None),
            Some(v) => match v.as_u64() {
                Some(s) => Some(Some(s)),
                None => {
                    self.err(
                        ErrorCode::InvalidSeed,
                        &format!("{exp}.seed"),
                        format!(
                            "seed must be an integer in [0, {}], got {} {}",
                            u64::MAX,
                            v.type_name(),
                            v.short()
                        ),
                        Some(v.short()),
                        Some(fmt_range(0, u64::MAX)),
                    );
                    None
                }
            },
        }
    }

    fn instructions(
        &mut self,
        exp: &str,
        v: Option<&Value>,
        num_wires: u32,
    ) -> Option<Vec<Instruction>> {
        let path = format!("{exp}.instructions");
        let Some(v) = v else {
            self.err(
                ErrorCode::MissingField,
                &path,
                format!("required field {path:?} is missing"),
                None,
                None,
            );
            return None;
        };
        let Some(items) = v.as_array() else {
            self.type_err(&path, "an array of instructions", v);
            return None;
        };
        if items.is_empty() {
            self.err(
                ErrorCode::EmptyInstructions,
                &path,
                "an experiment needs at least one instruction (and a measure)".to_string(),
                None,
                None,
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut all_ok = true;
        let mut measured = false;
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let (typed, kind) = self.instruction(&ipath, item, num_wires);
            match kind {
                Some(InstructionKind::Load) if i != 0 => {
                    all_ok = false;
                    self.err(
                        ErrorCode::LoadNotFirst,
                        &ipath,
                        "load must be the first instruction".to_string(),
                        None,
                        None,
                    );
                }
                Some(k @ (InstructionKind::Gate | InstructionKind::Load)) if measured => {
                    all_ok = false;
                    self.err(
                        ErrorCode::GateAfterMeasure,
                        &ipath,
                        format!(
                            "a {} cannot follow a measure; only barrier and measure may",
                            kind_name(k)
                        ),
                        None,
                        None,
                    );
                }
                Some(InstructionKind::Measure) => measured = true,
                _ => {}
            }
            match typed {
                Some(t) => out.push(t),
                None => all_ok = false,
            }
        }
        if !measured {
            self.err(
                ErrorCode::MissingMeasure,
                &path,
                "the experiment has no measure instruction".to_string(),
                None,
                None,
            );
            return None;
        }
        all_ok.then_some(out)
    }

    /// Checks one instruction. Returns the typed instruction when valid, and its kind whenever
    /// its name is known (so ordering rules still apply to otherwise faulty instructions).
    fn instruction(
        &mut self,
        path: &str,
        item: &Value,
        num_wires: u32,
    ) -> (Option<Instruction>, Option<InstructionKind>) {
        const SHAPE: &str = "an instruction must be [name, [wires...], [params...]]";
        let triple = match item.as_array() {
            Some([name, wires, params]) => (name, wires, params),
            _ => {
                self.err(
                    ErrorCode::MalformedInstruction,
                    path,
                    format!("{SHAPE}, got {}", describe_shape(item)),
                    Some(item.short()),
                    None,
                );
                return (None, None);
            }
        };
        let (name, wires, params) = triple;
        let Some(name) = name.as_str() else {
            self.err(
                ErrorCode::MalformedInstruction,
                &format!("{path}.name"),
                format!(
                    "{SHAPE}; the name must be a string, got {}",
                    name.type_name()
                ),
                Some(name.short()),
                None,
            );
            return (None, None);
        };
        let backend = self.backend;
        let Some(spec) = backend.instruction(name) else {
            self.err(
                ErrorCode::UnknownInstruction,
                &format!("{path}.name"),
                format!(
                    "backend {} has no instruction {name:?}; allowed: {}",
                    backend.backend_name,
                    backend.supported_instructions.join(", ")
                ),
                Some(Value::from(name).short()),
                Some(backend.supported_instructions.join(", ")),
            );
            return (None, None);
        };
        let kind = Some(spec.kind);
        let wires = self.wires(path, wires, spec, num_wires);
        let params = self.params(path, params, spec);
        match (wires, params) {
            (Some(wires), Some(params)) => (
                Some(Instruction {
                    name: name.to_string(),
                    wires,
                    params,
                }),
                kind,
            ),
            _ => (None, kind),
        }
    }

    fn wires(
        &mut self,
        path: &str,
        v: &Value,
        spec: &InstructionSpec,
        num_wires: u32,
    ) -> Option<Vec<u32>> {
        let wpath = format!("{path}.wires");
        let Some(items) = v.as_array() else {
            self.err(
                ErrorCode::MalformedInstruction,
                &wpath,
                format!(
                    "wires must be an array of non-negative integers, got {}",
                    v.type_name()
                ),
                Some(v.short()),
                None,
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (j, w) in items.iter().enumerate() {
            let jpath = format!("{wpath}[{j}]");
            match w.as_u64() {
                None => {
                    ok = false;
                    self.err(
                        ErrorCode::MalformedInstruction,
                        &jpath,
                        format!(
                            "a wire must be a non-negative integer, got {}",
                            w.type_name()
                        ),
                        Some(w.short()),
                        None,
                    );
                }
                Some(n) if n >= u64::from(num_wires) => {
                    ok = false;
                    self.err(
                        ErrorCode::WireOutOfRange,
                        &jpath,
                        format!("wire {n} does not exist; the experiment has {num_wires} wire(s)"),
                        Some(n.to_string()),
                        Some(fmt_range(0, num_wires.saturating_sub(1))),
                    );
                }
                Some(n) => out.push(u32::try_from(n).ok()?),
            }
        }
        if !ok {
            return None;
        }
        if !spec.coupling_map.contains(&out) {
            self.err(
                ErrorCode::WiresNotInCouplingMap,
                &wpath,
                format!(
                    "instruction {:?} cannot act on wires {out:?}; allowed wire lists: {:?}",
                    spec.name, spec.coupling_map
                ),
                Some(v.short()),
                Some(format!("{:?}", spec.coupling_map)),
            );
            return None;
        }
        Some(out)
    }

    fn params(&mut self, path: &str, v: &Value, spec: &InstructionSpec) -> Option<Vec<f64>> {
        let ppath = format!("{path}.params");
        let Some(items) = v.as_array() else {
            self.err(
                ErrorCode::MalformedInstruction,
                &ppath,
                format!("params must be an array of numbers, got {}", v.type_name()),
                Some(v.short()),
                None,
            );
            return None;
        };
        if items.len() != spec.params.len() {
            let names: Vec<&str> = spec.params.iter().map(|p| p.name.as_str()).collect();
            self.err(
                ErrorCode::WrongParamCount,
                &ppath,
                format!(
                    "instruction {:?} takes {} param(s) [{}], got {}",
                    spec.name,
                    spec.params.len(),
                    names.join(", "),
                    items.len()
                ),
                Some(items.len().to_string()),
                Some(spec.params.len().to_string()),
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (j, (p, ps)) in items.iter().zip(&spec.params).enumerate() {
            let jpath = format!("{ppath}[{j}]");
            let Some(x) = p.as_f64() else {
                ok = false;
                self.err(
                    ErrorCode::MalformedInstruction,
                    &jpath,
                    format!(
                        "param {:?} must be a number, got {}",
                        ps.name,
                        p.type_name()
                    ),
                    Some(p.short()),
                    None,
                );
                continue;
            };
            let (code, message, limit) = if !x.is_finite() {
                (
                    ErrorCode::ParamNotFinite,
                    format!("param {:?} must be a finite number", ps.name),
                    None,
                )
            } else if x < ps.min || x > ps.max {
                (
                    ErrorCode::ParamOutOfRange,
                    format!(
                        "param {:?} of {:?} must be within [{}, {}]",
                        ps.name, spec.name, ps.min, ps.max
                    ),
                    Some(fmt_range(ps.min, ps.max)),
                )
            } else if ps.integer && x.fract() != 0.0 {
                (
                    ErrorCode::ParamNotInteger,
                    format!(
                        "param {:?} of {:?} must be a whole number",
                        ps.name, spec.name
                    ),
                    None,
                )
            } else {
                out.push(x);
                continue;
            };
            ok = false;
            self.err(code, &jpath, message, Some(p.short()), limit);
        }
        ok.then_some(out)
    }
}

fn kind_name(kind: InstructionKind) -> &'static str {
    match kind {
        InstructionKind::Gate => "gate",
        InstructionKind::Load => "load",
        InstructionKind::Measure => "measure",
        InstructionKind::Barrier => "barrier",
    }
}

fn describe_shape(v: &Value) -> String {
    match v.as_array() {
        Some(a) => format!("an array of {} element(s)", a.len()),
        None => v.type_name().to_string(),
    }
}
