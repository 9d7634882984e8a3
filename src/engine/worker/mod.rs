//! Workers, by stage of a run's execution: [`dispatch`] claims due runs (or takes them
//! handed over at intake) and starts each on a task; [`execute`] runs the handler;
//! [`next`] decides, without I/O, what the run's next state is; [`apply`] records it
//! ([`ending`] holds what ending a run sets off); [`lease`] keeps the leases of runs in
//! flight alive; [`signals`] wakes idle workers when another process queues runs.

mod apply;
mod dispatch;
mod ending;
mod execute;
mod lease;
mod next;
mod signals;

pub(super) use dispatch::{Start, claim_one, dispatch_loop, executions, hand_over, reserve};
pub(super) use execute::execute;
pub(super) use lease::renew_loop;
pub(super) use signals::signal_loop;
