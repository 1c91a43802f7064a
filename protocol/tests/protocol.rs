//! Integration tests of the `shotline-protocol` crate (one binary, several modules in
//! `tests/protocol/`).

#[path = "protocol/common.rs"]
mod common;
#[path = "protocol/model.rs"]
mod model;
#[path = "protocol/order.rs"]
mod order;
#[path = "protocol/props.rs"]
mod props;
#[path = "protocol/validation.rs"]
mod validation;
#[path = "protocol/wire.rs"]
mod wire;
