//! tokengate: a reverse proxy that admits only requests carrying a valid OAuth 2.0 bearer token.
//!
//! One request flows in one direction: accept (`server`) → route (`proxy::route`) → extract the
//! token (`auth::extract`) → authenticate (`auth`) → authorize (`auth::policy`) → rewrite headers
//! (`proxy::headers`) → forward (`proxy::forward`) → record (`metrics`). Every refusal is turned
//! into an HTTP response in exactly one place: `respond`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod canon;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod decide;
pub mod decision;
pub mod demo;
pub mod dev_issuer;
pub mod framing;
pub mod metrics;
pub mod proxy;
pub mod respond;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod tls;
