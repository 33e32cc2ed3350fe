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
//! The structure of the world is itself a setting ([`WorldSpec`]):
//! [`WorldSpec::fixed`] is the one world the generator always played, and
//! [`WorldSpec::random`] draws the NAT layout, field presence, timing, shared
//! places, honest failures, staff work and the share of evasive attacks from
//! a world seed, so rules can be tuned on some worlds and measured on others.
//!
//! [`score`] compares decisions with labels: the scoreboard rules and models
//! are judged by.

mod error;
mod eval;
mod generator;
mod honest;
mod spec;
mod attacks;
mod evasive;
mod world;

pub use error::DatasetError;
pub use eval::{insiders, score, AttackScore, ScoredEvent, Scoreboard};
pub use generator::{generate, write_ndjson, Dataset, GenConfig, GeneratedEvent, Label, ScenarioSpec};
pub use attacks::Attack;
pub use spec::{AbroadSpec, FailureSpec, FieldSpec, NatLayout, NatSpec, PeopleSpec, Presence, RhythmSpec, SharedSpec, StaffSpec, TimingSpec, WorldSpec};
