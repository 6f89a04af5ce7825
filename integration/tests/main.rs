//! flotilla's integration tests: one binary, real peers (a private dockerd started by
//! `integration/testbed.sh`, node containers running real sshd and dockerd).

mod common;
mod crash_recovery;
mod docker_swarm;
mod ec2;
mod fault_matrix;
mod gc;
mod heal_scale;
mod kubernetes;
mod manager;
mod mesos;
mod openstack;
mod serve;
mod state_backends;
mod static_hosts;
mod trust;
mod validate_table;
mod workloads;
