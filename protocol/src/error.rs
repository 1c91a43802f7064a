//! Validation errors: stable codes, field paths and a capped report.

use std::fmt;

use serde::{Deserialize, Serialize};

/// At most this many errors are listed in a [`ValidationReport`]; `total` counts all.
pub const MAX_REPORTED_ERRORS: usize = 50;

/// Stable machine-readable validation error codes (serialised SCREAMING_SNAKE_CASE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// A field has the wrong type (message names expected and got).
    InvalidType,
    /// A required field is absent.
    MissingField,
    /// A field that is not allowed (see `limit` for the allowed names).
    UnknownField,
    /// The same field appears twice in one map.
    DuplicateField,
    /// The job has no experiments.
    EmptyJob,
    /// More experiments than the backend's `max_experiments`.
    TooManyExperiments,
    /// Two experiments share a name.
    DuplicateExperiment,
    /// An experiment name is empty.
    InvalidExperimentName,
    /// `shots` outside `1..=max_shots`.
    ShotsOutOfRange,
    /// `num_wires` outside `1..=backend.num_wires`.
    NumWiresOutOfRange,
    /// `wire_order` differs from the backend's.
    WireOrderMismatch,
    /// `seed` is not an unsigned 64-bit integer.
    InvalidSeed,
    /// An instruction is not `[string, [non-negative ints], [numbers]]`.
    MalformedInstruction,
    /// The backend has no instruction of that name (`limit` lists the allowed names).
    UnknownInstruction,
    /// A wire index >= `num_wires`.
    WireOutOfRange,
    /// The wires list is not an entry of the instruction's coupling map.
    WiresNotInCouplingMap,
    /// The number of params differs from the instruction's schema.
    WrongParamCount,
    /// A param outside its `[min, max]`.
    ParamOutOfRange,
    /// A whole-number param has a fractional part.
    ParamNotInteger,
    /// A param is NaN or infinite.
    ParamNotFinite,
    /// The experiment has no `measure`.
    MissingMeasure,
    /// A gate or load after the first `measure`.
    GateAfterMeasure,
    /// A `load` that is not the first instruction.
    LoadNotFirst,
    /// The experiment has no instructions.
    EmptyInstructions,
    /// A string (experiment name, tag, `qobj_id`, idempotency key) longer than its limit in bytes.
    ValueTooLong,
    /// More tags than `limits.max_tags`.
    TooManyTags,
    /// The job's shots, summed over its experiments, exceed `limits.max_shots_per_job`.
    TooManyShots,
    /// The job's planned apparatus time (shots x compiled shot duration) exceeds `limits.max_job_duration_s`.
    JobTooLong,
    /// The job's result could be larger than the largest answer a client can read (`limits.max_response_bytes`).
    ResultTooLarge,
}

impl ErrorCode {
    /// The stable string form, e.g. `SHOTS_OUT_OF_RANGE`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidType => "INVALID_TYPE",
            MissingField => "MISSING_FIELD",
            UnknownField => "UNKNOWN_FIELD",
            DuplicateField => "DUPLICATE_FIELD",
            EmptyJob => "EMPTY_JOB",
            TooManyExperiments => "TOO_MANY_EXPERIMENTS",
            DuplicateExperiment => "DUPLICATE_EXPERIMENT",
            InvalidExperimentName => "INVALID_EXPERIMENT_NAME",
            ShotsOutOfRange => "SHOTS_OUT_OF_RANGE",
            NumWiresOutOfRange => "NUM_WIRES_OUT_OF_RANGE",
            WireOrderMismatch => "WIRE_ORDER_MISMATCH",
            InvalidSeed => "INVALID_SEED",
            MalformedInstruction => "MALFORMED_INSTRUCTION",
            UnknownInstruction => "UNKNOWN_INSTRUCTION",
            WireOutOfRange => "WIRE_OUT_OF_RANGE",
            WiresNotInCouplingMap => "WIRES_NOT_IN_COUPLING_MAP",
            WrongParamCount => "WRONG_PARAM_COUNT",
            ParamOutOfRange => "PARAM_OUT_OF_RANGE",
            ParamNotInteger => "PARAM_NOT_INTEGER",
            ParamNotFinite => "PARAM_NOT_FINITE",
            MissingMeasure => "MISSING_MEASURE",
            GateAfterMeasure => "GATE_AFTER_MEASURE",
            LoadNotFirst => "LOAD_NOT_FIRST",
            EmptyInstructions => "EMPTY_INSTRUCTIONS",
            ValueTooLong => "VALUE_TOO_LONG",
            TooManyTags => "TOO_MANY_TAGS",
            TooManyShots => "TOO_MANY_SHOTS",
            JobTooLong => "JOB_TOO_LONG",
            ResultTooLarge => "RESULT_TOO_LARGE",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validation error, located by a field path such as
/// `experiment_0.instructions[2].params[0]` (`job` for the whole job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationError {
    /// Stable code.
    pub code: ErrorCode,
    /// Field path of the offending thing.
    pub path: String,
    /// Human explanation.
    pub message: String,
    /// Short rendering of the offending value, when there is one.
    #[serde(default)]
    pub value: Option<String>,
    /// The limit or allowed values that were violated, when there are some.
    #[serde(default)]
    pub limit: Option<String>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "job"
        } else {
            &self.path
        };
        write!(f, "{path}: {}: {}", self.code, self.message)?;
        match (&self.value, &self.limit) {
            (Some(v), Some(l)) => write!(f, " (value: {v}, limit: {l})"),
            (Some(v), None) => write!(f, " (value: {v})"),
            (None, Some(l)) => write!(f, " (limit: {l})"),
            (None, None) => Ok(()),
        }
    }
}

/// All errors of a job: the first [`MAX_REPORTED_ERRORS`] plus the total count.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The first errors found, in document order.
    pub errors: Vec<ValidationError>,
    /// How many errors were found in total.
    pub total: usize,
}

impl ValidationReport {
    /// Records an error (kept only while fewer than [`MAX_REPORTED_ERRORS`] are listed).
    pub fn push(&mut self, error: ValidationError) {
        self.total += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(error);
        }
    }

    /// Whether no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.total == 1 { "error" } else { "errors" };
        write!(f, "{} {noun}:", self.total)?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        let hidden = self.total.saturating_sub(self.errors.len());
        if hidden > 0 {
            write!(f, "\n  ... and {hidden} more")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationReport {}
