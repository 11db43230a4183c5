//! A conformance harness in Rust for the routing level of Lite LLM (spec chapters 1 and 2),
//! written from the spec text alone, standard library only. It speaks the JSON-lines protocol of
//! spec chapter 11 (CONF-4) on stdin/stdout:
//!
//!     lite-llm conform --impl "cmd:target/release/rust_router" --levels routing
//!
//! Every float operation is one IEEE-754 binary32 or binary64 operation, round to nearest even;
//! Rust never contracts a * b + c into a fused multiply-add (OVW-2.2) and has no fast-math.

mod cexp;
mod config;
mod json;
mod npy;
mod ops;
mod protocol;
mod quantize;
mod router;
mod seeds;

/// A rejection with an error code of HSER-10.1 and a message naming the offending value.
#[derive(Debug)]
pub struct Reject {
    pub code: &'static str,
    pub message: String,
}

impl Reject {
    pub fn new(code: &'static str, message: String) -> Reject {
        Reject { code, message }
    }
}

/// How a run request can end other than with outputs (CONF-4.5).
#[derive(Debug)]
pub enum Failure {
    Rejected(Reject),
    Skipped(String),
    Errored(String),
}

impl From<Reject> for Failure {
    fn from(r: Reject) -> Failure {
        Failure::Rejected(r)
    }
}

fn main() {
    std::process::exit(protocol::serve());
}
