//! Integration tests: the real binary against fake GitHub and Slack servers and the moto
//! EC2 emulator. One crate, so it is linked once.

mod app;
mod beyond;
mod budget;
mod capacity;
mod check;
mod compare;
mod config;
mod cost;
mod daemon;
mod erased;
mod faults;
mod job;
mod launch;
mod look;
mod metrics;
mod once;
mod parse;
mod prices;
mod proxy;
mod pulls;
mod repeats;
mod results;
mod retry;
mod rounds;
mod runs;
mod secrets;
mod shared;
mod status;
mod stops;
mod util;
