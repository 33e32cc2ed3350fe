//! # haechi-datasets — labelled eKYC traffic
//!
//! No bank hands out its eKYC logs, so this crate makes traffic with known
//! attacks. [`generate`] turns a [`GenConfig`] (seed, days, customers,
//! scenarios and their strength) into events in the Haechi event contract,
//! sorted by event time, plus one [`Label`] per attack event. The same seed
//! gives the same bytes.
//!
//! Honest traffic carries the traps a bank really sees: hundreds of customers
//! behind one carrier NAT address, families sharing a phone, night-shift
//! customers, customers who change phones or travel, staff looking up a few
//! records at a time. Attacks ([`Attack`]) come as incidents with a start,
//! a duration and a label.
//!
//! [`score`] compares decisions with labels: the scoreboard rules and models
//! are judged by.

mod error;
mod eval;
mod generator;
mod honest;
mod attacks;
mod world;

pub use error::DatasetError;
pub use eval::{score, AttackScore, Scoreboard};
pub use generator::{generate, write_ndjson, Dataset, GenConfig, GeneratedEvent, Label, ScenarioSpec};
pub use attacks::Attack;
