//! Turns on a busy account: how decisions that find their account changed
//! are put in order, in one process, so that each is carried out after a
//! bounded wait instead of being refused.
//!
//! A decision is first made optimistically, in parallel with any other
//! (the store records it only if the account's state version is still the
//! one it was decided on). One that keeps finding the state changed (the
//! service says how often) **joins** its account's queue and from then on
//! decides only in its **turn** (a ticket lock: first come, first
//! served). While anyone has joined an account's queue, a decision that
//! would change the account's state joins it too instead of being written,
//! so that a decision in its turn is not overtaken by new ones. A decision
//! that changes the state keeps its turn until it is written, so the next
//! turn reads what it wrote; one that changes nothing gives its turn up
//! before it is written (it invalidates no other), unless it already found
//! the state changed after a turn.
//!
//! So a decision in its turn can find the state changed only by a change
//! the queue does not order: one decided before the account had a queue
//! (at most one per concurrent caller), a `sync` step, an expiry sweep, or
//! another process on the same store.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// The queues of the accounts that have one.
#[derive(Debug, Default)]
pub(crate) struct Gates {
    accounts: Mutex<HashMap<String, Queue>>,
}

/// One account's queue.
#[derive(Debug)]
struct Queue {
    /// How many [`Joined`] there are.
    joined: usize,
    gate: Arc<Gate>,
}

/// Whose turn it is on one account.
#[derive(Debug, Default)]
struct Gate {
    /// The ticket lock.
    tickets: Mutex<Tickets>,
    /// Signalled when a turn ends.
    turn_over: Condvar,
}

#[derive(Debug, Default)]
struct Tickets {
    /// The next ticket to hand out.
    next: u64,
    /// The ticket whose turn it is.
    serving: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gates {
    /// Whether anyone has joined `account`'s queue.
    pub(crate) fn busy(&self, account: &str) -> bool {
        lock(&self.accounts).contains_key(account)
    }

    /// Joins `account`'s queue until the returned value is dropped.
    pub(crate) fn join(self: &Arc<Self>, account: &str) -> Joined {
        let mut accounts = lock(&self.accounts);
        let queue = accounts.entry(account.to_owned()).or_insert_with(|| Queue {
            joined: 0,
            gate: Arc::default(),
        });
        queue.joined += 1;
        let gate = Arc::clone(&queue.gate);
        drop(accounts);
        Joined {
            gates: Arc::clone(self),
            account: account.to_owned(),
            gate,
        }
    }
}

/// A place in an account's queue.
#[derive(Debug)]
pub(crate) struct Joined {
    gates: Arc<Gates>,
    account: String,
    gate: Arc<Gate>,
}

impl Joined {
    /// Waits for this caller's turn; the turn lasts until the returned
    /// value is dropped.
    pub(crate) fn turn(&self) -> Turn {
        let mut tickets = lock(&self.gate.tickets);
        let ticket = tickets.next;
        tickets.next = tickets.next.wrapping_add(1);
        while tickets.serving != ticket {
            tickets = self
                .gate
                .turn_over
                .wait(tickets)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Turn {
            gate: Arc::clone(&self.gate),
        }
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        let mut accounts = lock(&self.gates.accounts);
        if let Some(queue) = accounts.get_mut(&self.account) {
            queue.joined = queue.joined.saturating_sub(1);
            if queue.joined == 0 {
                accounts.remove(&self.account);
            }
        }
    }
}

/// A caller's turn on an account.
#[derive(Debug)]
pub(crate) struct Turn {
    gate: Arc<Gate>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut tickets = lock(&self.gate.tickets);
        tickets.serving = tickets.serving.wrapping_add(1);
        drop(tickets);
        self.gate.turn_over.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_busy_while_anyone_has_joined_and_turns_are_first_come_first_served() {
        let gates = Arc::new(Gates::default());
        assert!(!gates.busy("acme"));
        let first = gates.join("acme");
        let second = gates.join("acme");
        assert!(gates.busy("acme") && !gates.busy("globex"));
        let order = Arc::new(Mutex::new(Vec::new()));
        let turn = first.turn();
        let waiter = {
            let order = Arc::clone(&order);
            std::thread::spawn(move || {
                let _turn = second.turn();
                lock(&order).push("second");
            })
        };
        lock(&order).push("first");
        drop(turn);
        assert!(waiter.join().is_ok());
        assert_eq!(*lock(&order), ["first", "second"]);
        assert!(gates.busy("acme"));
        drop(first);
        assert!(!gates.busy("acme"), "the last to leave removes the queue");
    }
}
