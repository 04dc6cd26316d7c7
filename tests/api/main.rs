#![recursion_limit = "256"]
//! Black-box tests of sigvault through its HTTP API and its binary, in ONE test binary
//! (one link, shared helpers). Every test gets its own SoftHSM2 token and data dir.

mod apikeys;
mod approvals;
mod audit;
mod audit_cli;
mod authz;
mod callers;
mod cli;
mod cluster;
mod cluster_processes;
mod compat;
mod compose;
mod connections;
mod datadir;
mod dump;
mod helpers;
mod hsm_faults;
mod init;
mod integrity;
mod kek_cli;
mod kek_migrate;
mod kek_rewrap_kill;
mod kek_rotation;
mod keys;
mod kms;
mod observability;
mod openapi;
mod readme_tour;
mod report;
mod root_token;
mod schemathesis;
mod sigv4;
mod startup;
mod store_outage;
mod tls;
mod vectors;
