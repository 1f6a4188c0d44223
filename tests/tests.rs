//! minsheng's integration tests: one binary, a module per area.

mod it {
    pub mod audit_cli;
    pub mod cli;
    pub mod default_rules;
    pub mod distributed;
    pub mod engine;
    pub mod gencert;
    pub mod jetstream;
    pub mod rules_check;
    pub mod security;
    pub mod server;
    pub mod support;
}
