//! The durable store: run records, their history, and the cron journal.
//!
//! - [`run_store`]: the [`RunStore`] trait: create runs, record transitions,
//!   placement, launch, exit and events, list active runs for re-adoption,
//!   prune history.
//! - [`cron_journal`]: the [`CronJournal`] trait: one decision per (job,
//!   scheduled time), and each recurring job's cron state.
//! - [`dynamic_users`]: the [`DynamicUsers`] trait: the uid each job was
//!   given from the agent's `dynamic_users` range.
//! - [`sqlite`]: [`SqliteStore`], the traits on one SQLite file.
//! - [`arrays`]: the [`ArrayRuns`] trait: runs created together (an
//!   array's, labelled with their indices) and submitted jobs' texts.
//! - [`cluster_runs`]: the [`ClusterRuns`] trait: which local run each
//!   cluster binding became, and the job text it was bound with.
//! - [`lock`]: [`StateDirLock`], one agent per state directory.
//!
//! Run ids (`<job>-<seq>`) are made by [`crate::vocab::run_id()`]; the store
//! keeps the per-job sequence they are numbered by.
//!
//! The traits are what the agent uses; a cluster backend (etcd) can
//! implement them too.
//!
//! # Why SQLite in WAL mode
//!
//! The requirement is "kill -9 at any moment: nothing lost, nothing runs
//! twice". That needs atomic multi-record writes (a run's state together
//! with its history entry; a cron decision together with the run it starts)
//! and crash recovery that is proven, not written here.
//!
//! - Append-only JSON files would need their own framing, torn-write
//!   detection, compaction and fsync discipline, and every query (active
//!   runs, a job's history, pruning) becomes a scan or a hand-kept index.
//! - sled is unmaintained in its stable line; redb is sound but a key-value
//!   store: uniqueness of cron firings, cascading deletes and "newest N per
//!   job" would all be hand-built on top.
//! - SQLite gives transactions, constraints (the cron journal's primary key
//!   is what makes a double start impossible), indexes and an integrity
//!   check, in one file an operator can inspect with the `sqlite3` tool. It
//!   is compiled in (`bundled`), so no system library is needed.
//!
//! WAL rather than a rollback journal: readers (a CLI listing runs while the
//! agent works) do not block the writer, and a commit is one append to the
//! WAL instead of a journal write plus a database write.
//!
//! # Durability
//!
//! [`Durability::Process`] (the default) sets `synchronous=NORMAL`. A
//! commit then returns once its pages are written to the WAL file with
//! `write(2)`: they are in the kernel's page cache, which does not belong to
//! the process, so the commit survives the agent being killed at any point,
//! kill -9 included. What it does not survive is the *machine* going down
//! before the next checkpoint fsyncs the WAL: then the last commits may be
//! lost, though never half-applied, and the database stays consistent.
//!
//! That is the right default for a node agent: a power loss also kills every
//! job, so the runs whose last transitions were lost are dead either way and
//! are found so at re-adoption. The one thing that can repeat is a cron
//! firing whose "started" decision was lost: after the reboot the catch-up
//! policy may start it again. Where even that is unacceptable,
//! [`Durability::Machine`] (`synchronous=FULL`) fsyncs every commit, at the
//! cost of one fsync per state change.
//!
//! # Damage
//!
//! A missing database is created. A file that is not a database, fails
//! `integrity_check`, belongs to another application or has a newer schema
//! is refused with an error naming the file and what to do; it is never
//! deleted or rewritten, since it may be the only record of what runs on
//! the machine.

pub mod after_triggers;
pub mod arrays;
pub mod cluster_runs;
pub mod cron_journal;
pub mod dynamic_users;
pub mod error;
pub mod lock;
pub mod records;
pub mod run_store;
pub mod sqlite;

pub use after_triggers::AfterTriggers;
pub use arrays::{ArrayRuns, NewRuns, Submission};
pub use cluster_runs::{ClusterMapping, ClusterRuns, HandedBack, NewClusterRun};
pub use cron_journal::{
    CronDecision, CronJournal, Decided, FiringDecision, JournalEntry, JournalOutcome,
};
pub use dynamic_users::{DynamicUsers, UidAllocation};
pub use error::StoreError;
pub use lock::StateDirLock;
pub use records::{
    EventRecord, ExitInfo, JobVersion, LaunchInfo, Retention, RunDetail, RunRecord,
    TransitionRecord,
};
pub use run_store::{Alongside, RunStore};
pub use sqlite::{Durability, SqliteStore, StoreOptions};
