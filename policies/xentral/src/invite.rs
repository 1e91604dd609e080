//! Inviting one agent (XEN-INVITE).

use chaperone_sdk::{Account, Actor, Decision, Effect};

use crate::address::xen_domain;
use crate::service_account::{xen_consent_to_invite, xen_one_account_to_invite};
use crate::who::xen_who;
use crate::{Check, rule};

/// `invite`: a customer admin (XEN-WHO), or under consent an agent with a
/// service account here (XEN-CONSENT), invites one vendor-staff address.
pub(crate) fn invite(account: &Account, actor: &Actor, email: &str) -> Check<Decision> {
    if let Actor::User(_) = actor {
        xen_who(account, actor)?;
    }
    xen_domain(email)?;
    xen_one_account_to_invite(account, email)?;
    let (rules, message) = match actor {
        Actor::Agent(agent) => {
            xen_consent_to_invite(account, agent)?;
            (
                [rule::DOMAIN, rule::ONE_ACCOUNT, rule::CONSENT],
                format!("agent `{agent}` invited `{email}` under consent"),
            )
        }
        Actor::User(id) => (
            [rule::WHO, rule::DOMAIN, rule::ONE_ACCOUNT],
            format!("user `{id}` invited `{email}`"),
        ),
    };
    Ok(Decision::allow(rule::INVITE, message)
        .with_rules(rules)
        .with_rules([rule::INVITE])
        .with_effect(Effect::CreateInvitation(email.to_owned())))
}
