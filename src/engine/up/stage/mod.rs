//! One file per stage, each `pub async fn run(cx: &mut Ctx<'_>) -> Result<()>`; the order lives
//! in `super::stages`.

pub mod cluster;
pub mod connect;
pub mod containers;
pub mod docker;
pub mod machines;
pub mod manager;
pub mod outputs;
pub mod preload;
pub mod scale_in;
pub mod services;
pub mod start;
