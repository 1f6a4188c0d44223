//! minsheng's gRPC interface, generated from `proto/minsheng/v1/triage.proto`:
//! the messages, the clients (`intake_client::IntakeClient`…) and the
//! server traits (`intake_server::Intake`…).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Package `minsheng.v1`.
pub mod v1 {
    tonic::include_proto!("minsheng.v1");

    /// The encoded descriptor set of the package, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/minsheng_descriptor.bin"));
}
