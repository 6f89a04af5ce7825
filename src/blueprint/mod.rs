//! Blueprints: YAML rendered with tera from typed inputs, validated with file:line:col locations.
//!
//! YAML is read with serde-saphyr (serde_yaml is deprecated upstream; serde-saphyr is maintained,
//! panic-free on hostile input, reports line/column on errors and rejects duplicate keys), and its
//! re-exported granit parser gives the location index used for semantic errors.

mod cluster;
mod groups;
mod inputs;
mod load;
pub mod model;
pub mod problem;
mod render;
mod sections;
pub(crate) mod values;
mod workloads;
mod yaml_index;

pub use load::{load, load_recorded, load_str};
pub use model::*;
pub use problem::{Problem, Problems};
pub use render::{outputs_context, render_document, render_template};
