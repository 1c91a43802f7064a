//! shotline protocol: the data exchanged between clients and the gateway.
//!
//! Pure data: job and result types, backend configurations, job validation with field paths,
//! request/response messages and length-prefixed msgpack framing helpers. No I/O.

#![deny(missing_docs)]

pub mod backend;
pub mod catalog;
pub mod error;
pub mod job;
pub mod limits;
pub mod result;
pub mod validate;
pub mod value;
pub mod wire;

pub use backend::{
    BackendConfig, ColdAtomType, GateSpec, InstructionKind, InstructionSpec, ParamSpec,
};
pub use catalog::{
    singlequdit_config, singlequdit_instructions, DEFAULT_MAX_EXPERIMENTS, DEFAULT_MAX_SHOTS,
};
pub use error::{ErrorCode, ValidationError, ValidationReport, MAX_REPORTED_ERRORS};
pub use job::{Experiment, Instruction, Job, WireOrder};
pub use limits::{check_options, JobLimits};
pub use result::{
    ExperimentData, ExperimentHeader, ExperimentResult, JobResult, JobStatus, LatenessStamp,
    StatusRecord, TimingSummary, UnknownStatus,
};
pub use validate::{validate_job, validate_job_within, EXPERIMENT_FIELDS};
pub use value::Value;
pub use wire::{
    codes, decode_body, encode_frame, extend_frame_body, frame_len, BackendStatus, BackendSummary,
    CardStatus, DeviceStatus, ErrorBody, FrameError, Request, Response, ALPN, DEFAULT_MAX_FRAME,
    FRAME_HEADER_LEN, MAX_DECODE_DEPTH, PROTOCOL_VERSION,
};
