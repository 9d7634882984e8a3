//! The write contract: how [`Store::write`](super::Store::write) runs a unit of work,
//! and when it answers.

use std::marker::PhantomData;

use futures::future::Shared;
use tokio::sync::oneshot;

use super::{Error, Result};

/// How `Store::write` runs `work` and when it answers.
///
/// Every write runs `work` against a [`StoreTx`](super::StoreTx) and keeps what it
/// wrote atomically: all of it or nothing. On SQLite one writer runs the writes that
/// arrive together one after another in a single transaction and commits them at once
/// (group commit); on PostgreSQL each write is a transaction of its own. Two choices
/// say how a write takes part in that.
///
/// **Isolation: what a failing `work` takes down with it.**
/// - [`Write::isolated`]: `work` runs in a savepoint of its own. When it returns `Err`,
///   its writes, and only its, are rolled back; the writes sharing its commit are kept.
///   For anything that can fail: business writes, transactional steps, operators'
///   actions. Only an isolated `work` may fail with an error of its own type
///   ([`Write::failing_with`]).
/// - [`Write::shared`]: no savepoint, which saves two statements per write on SQLite.
///   For the engine's bookkeeping: statements that fail only when the database does,
///   and that write nothing before an early `Err`. On SQLite a failure rolls back the
///   whole commit group: every write sharing the commit fails with it.
///
/// **Answer: when the caller hears back.**
/// - On durable commit (the default): `Ok` means the writes are committed and on disk.
/// - [`Write::answer_early`]: on SQLite, `Ok` as soon as `work` ran in the open commit
///   group, before that group commits, together with a [`Durability`] that resolves once
///   the commit is on disk, or reports that it failed and nothing of `work` was kept.
///   The caller's next write can then join the same commit instead of waiting for a
///   sync. [`Write::after`] orders it after the caller's previous early write: it runs
///   only if the commit of that [`Generation`] has not failed, so a run's writes are
///   never kept with a hole in the middle. PostgreSQL answers every write after its
///   commit and returns no `Durability`.
///
/// **Errors.** `Err` means nothing of `work` is kept, whether `work` failed or the
/// commit did; storage errors convert into the work's error type.
///
/// **What a crash can lose.** SQLite answers a commit only once the WAL is synced, and
/// PostgreSQL once its commit returned, so a write answered on commit survives any
/// crash, as does an early write whose `Durability` resolved. An early write whose
/// `Durability` has not resolved can be lost, and with it every later write ordered
/// after it: the WAL keeps a prefix of the commits. So nothing that leaves the process
/// (an HTTP answer, an outgoing call, a step's side effect) may rely on an early write
/// before its `Durability` resolves.
#[must_use = "a Write only describes a write; pass it to Store::write"]
pub struct Write<A = OnCommit, E = Error> {
    isolation: Isolation,
    answer: A,
    error: PhantomData<fn() -> E>,
}

/// Whether a write's work runs in a savepoint of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isolation {
    /// Its own savepoint: a failing `work` rolls back only itself.
    Savepoint,
    /// No savepoint: a failing `work` rolls back its whole commit group.
    Shared,
}

/// A write answered once its commit is durable (see [`Write`]).
#[derive(Debug, Clone, Copy)]
pub struct OnCommit;

/// A write answered once its work ran, before its commit is durable (see
/// [`Write::answer_early`]).
#[derive(Debug, Clone, Copy)]
pub struct AnswerEarly {
    after: Option<Generation>,
}

impl Write {
    /// `work` runs in a savepoint of its own: when it fails, only its writes are rolled
    /// back. Answered once committed and durable.
    pub fn isolated() -> Write {
        Write::new(Isolation::Savepoint)
    }

    /// `work` shares its commit group without a savepoint: for statements that fail
    /// only when the database does. A failure fails every write of the group.
    pub fn shared() -> Write {
        Write::new(Isolation::Shared)
    }

    fn new(isolation: Isolation) -> Write {
        Write {
            isolation,
            answer: OnCommit,
            error: PhantomData,
        }
    }
}

impl<A> Write<A> {
    /// Lets an isolated write's `work` fail with an error of its own type `E`, which
    /// storage errors convert into.
    pub fn failing_with<E: From<Error>>(self) -> Write<A, E> {
        debug_assert!(
            self.isolation == Isolation::Savepoint,
            "only an isolated write's work may fail of its own accord"
        );
        Write {
            isolation: self.isolation,
            answer: self.answer,
            error: PhantomData,
        }
    }
}

impl<E> Write<OnCommit, E> {
    /// Answers as soon as `work` ran, with a [`Durability`] to await before anything
    /// relies on the write outside the database.
    pub fn answer_early(self) -> Write<AnswerEarly, E> {
        Write {
            isolation: self.isolation,
            answer: AnswerEarly { after: None },
            error: PhantomData,
        }
    }
}

impl<E> Write<AnswerEarly, E> {
    /// Runs only if the commit of `generation` (the caller's previous early write) has
    /// not failed; `None` orders the write after nothing.
    pub fn after(mut self, generation: impl Into<Option<Generation>>) -> Self {
        self.answer.after = generation.into();
        self
    }
}

impl<A, E> Write<A, E> {
    pub(super) fn isolation(&self) -> Isolation {
        self.isolation
    }

    pub(super) fn answer(&self) -> &A {
        &self.answer
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::OnCommit {}
    impl Sealed for super::AnswerEarly {}
}

/// When a [`Write`] is answered, and what it answers besides `work`'s value.
pub trait Answer: sealed::Sealed + Send {
    /// What `Store::write` returns for a `work` that returned `T`.
    type Answered<T>;

    /// For an early answer: the generation it is ordered after.
    #[doc(hidden)]
    fn early(&self) -> Option<Option<Generation>>;

    #[doc(hidden)]
    fn answered<T>(value: T, durability: Option<Durability>) -> Self::Answered<T>;
}

impl Answer for OnCommit {
    /// The value alone: the write is durable.
    type Answered<T> = T;

    fn early(&self) -> Option<Option<Generation>> {
        None
    }

    fn answered<T>(value: T, _: Option<Durability>) -> T {
        value
    }
}

impl Answer for AnswerEarly {
    /// The value, and on SQLite the [`Durability`] of the commit it joined.
    type Answered<T> = (T, Option<Durability>);

    fn early(&self) -> Option<Option<Generation>> {
        Some(self.after)
    }

    fn answered<T>(value: T, durability: Option<Durability>) -> (T, Option<Durability>) {
        (value, durability)
    }
}

/// A commit group of SQLite's writer, counted from 1 as the writer starts them: what
/// an early write is ordered [`after`](Write::after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub(super) u64);

/// Resolves once the commit of an early-answered write is durable, or failed.
/// Clones wait for the same commit.
#[derive(Clone)]
pub struct Durability {
    generation: Generation,
    commit: Shared<oneshot::Receiver<std::result::Result<(), String>>>,
}

impl Durability {
    pub(super) fn new(
        generation: Generation,
        commit: Shared<oneshot::Receiver<std::result::Result<(), String>>>,
    ) -> Durability {
        Durability { generation, commit }
    }

    /// The commit group the write ran in: what a later write is ordered after.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Waits until the write's commit is on disk.
    pub async fn wait(self) -> Result<()> {
        match self.commit.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(Error::Transaction(msg)),
            Err(_) => Err(Error::Closed),
        }
    }
}
