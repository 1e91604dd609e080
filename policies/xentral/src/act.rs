//! What an agent may do in the instance: (1) it needs an active service
//! account here (XEN-NO-ACCOUNT); (2) that account's rights must cover the
//! action (XEN-RIGHTS).

use chaperone_sdk::{Account, Action, Actor, Decision};

use crate::rights::xen_rights_cover;
use crate::service_account::service_accounts_of;
use crate::{Check, rule};

/// `act`: decide one agent action.
pub(crate) fn act(account: &Account, actor: &Actor, action: &Action) -> Check<Decision> {
    let agent = xen_no_account(account, actor)?;
    let mut denied = None;
    for service_account in service_accounts_of(account, agent) {
        match xen_rights_cover(&service_account.rights, &action.name) {
            Ok(()) => {
                // `concat`, not `format!`: in a fresh instance the
                // formatting machinery's first indirect calls are slow.
                let message = [
                    "service account `",
                    &service_account.id,
                    "` allows `",
                    &action.name,
                    "`",
                ]
                .concat();
                return Ok(Decision::allow(rule::RIGHTS, message)
                    .with_rules([rule::NO_ACCOUNT, rule::RIGHTS]));
            }
            Err(denial) => {
                denied.get_or_insert(denial);
            }
        }
    }
    Err(denied.unwrap_or_else(no_account))
}

/// XEN-NO-ACCOUNT: the actor is an agent with an active service account
/// here; returns its address.
fn xen_no_account<'a>(account: &Account, actor: &'a Actor) -> Check<&'a str> {
    match actor {
        Actor::Agent(agent) if service_accounts_of(account, agent).next().is_some() => Ok(agent),
        _ => Err(no_account()),
    }
}

fn no_account() -> Decision {
    Decision::deny(
        rule::NO_ACCOUNT,
        "the agent has no active service account in this instance",
    )
}
