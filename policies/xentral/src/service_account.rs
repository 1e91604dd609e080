//! Creating, limiting and removing service accounts, and the rules about
//! them that invitations share (XEN-ONE-ACCOUNT, XEN-CONSENT).

use chaperone_sdk::{
    Account, Actor, Decision, Effect, NewServiceAccount, Origin, RightsUpdate, ServiceAccount,
    SetRightsRequest,
};

use crate::address::{same_agent, xen_domain};
use crate::rights::{ALL, xen_rights_list};
use crate::who::xen_who;
use crate::{CONSENT_SETTING, Check, rule};

/// The description every service account carries (XEN-MARK).
pub(crate) const MARK: &str = "Xentral Service account";

/// `create_service_account`: the asking agent creates (or, with an
/// invitation, accepts) its own service account, with rights `*`, whatever
/// the seat limit. An unused invitation for its address is used up.
pub(crate) fn create(account: &Account, actor: &Actor) -> Check<Decision> {
    let agent = match actor {
        Actor::Agent(agent) => agent,
        Actor::User(id) => {
            return Err(Decision::deny(
                rule::DOMAIN,
                format!(
                    "user `{id}` is not vendor staff; agents create their own service accounts"
                ),
            ));
        }
    };
    xen_domain(agent)?;
    xen_one_account(account, agent)?;
    let origin = xen_consent_to_create(account, agent)?;
    let (decided_by, message) = match origin {
        Origin::Invite => (
            rule::INVITE,
            format!("agent `{agent}` accepted its invitation"),
        ),
        Origin::Consent => (
            rule::CONSENT,
            format!("agent `{agent}` created a service account under consent"),
        ),
    };
    let mut decision = Decision::allow(decided_by, message)
        .with_rules([
            rule::DOMAIN,
            rule::ONE_ACCOUNT,
            decided_by,
            rule::DEFAULT_RIGHTS,
            rule::SEATS,
            rule::NO_EXPIRY,
            rule::MARK,
        ])
        .with_effect(Effect::CreateServiceAccount(NewServiceAccount {
            agent_email: agent.clone(),
            rights: vec![ALL.into()],
            origin,
            description: MARK.into(),
        }));
    for invitation in account
        .invitations
        .iter()
        .filter(|i| same_agent(&i.email, agent))
    {
        decision = decision.with_effect(Effect::UseInvitation(invitation.id.clone()));
    }
    Ok(decision)
}

/// `set_rights`: a customer admin limits or widens a service account's
/// rights.
pub(crate) fn set_rights(
    account: &Account,
    actor: &Actor,
    request: &SetRightsRequest,
) -> Check<Decision> {
    xen_who(account, actor)?;
    let rights = xen_rights_list(&request.rights)?;
    let service_account = xen_no_account(account, &request.service_account)?;
    let message = format!("rights of service account `{}` set", service_account.id);
    Ok(Decision::allow(rule::RIGHTS, message)
        .with_rules([rule::WHO, rule::RIGHTS])
        .with_effect(Effect::SetServiceAccountRights(RightsUpdate {
            id: service_account.id.clone(),
            rights,
        })))
}

/// `remove_service_account`: a customer admin removes any service account.
pub(crate) fn remove(account: &Account, actor: &Actor, id: &str) -> Check<Decision> {
    xen_who(account, actor)?;
    let service_account = xen_no_account(account, id)?;
    let message = format!(
        "service account `{}` of `{}` removed",
        service_account.id, service_account.agent_email
    );
    Ok(Decision::allow(rule::REMOVE, message)
        .with_rules([rule::WHO, rule::REMOVE])
        .with_effect(Effect::RemoveServiceAccount(service_account.id.clone())))
}

/// The agent's active service accounts in this instance.
pub(crate) fn service_accounts_of<'a>(
    account: &'a Account,
    agent: &'a str,
) -> impl Iterator<Item = &'a ServiceAccount> {
    account
        .service_accounts
        .iter()
        .filter(move |s| same_agent(&s.agent_email, agent))
}

/// XEN-ONE-ACCOUNT for a new service account: the agent has none active
/// here yet.
fn xen_one_account(account: &Account, agent: &str) -> Check {
    match service_accounts_of(account, agent).next() {
        None => Ok(()),
        Some(existing) => Err(Decision::deny(
            rule::ONE_ACCOUNT,
            format!(
                "agent `{agent}` already has service account `{}` here",
                existing.id
            ),
        )),
    }
}

/// XEN-ONE-ACCOUNT for an invitation: the address has neither an unused
/// invitation nor an active service account here.
pub(crate) fn xen_one_account_to_invite(account: &Account, email: &str) -> Check {
    if account
        .invitations
        .iter()
        .any(|i| same_agent(&i.email, email))
    {
        return Err(Decision::deny(
            rule::ONE_ACCOUNT,
            format!("`{email}` already has an unused invitation here"),
        ));
    }
    if service_accounts_of(account, email).next().is_some() {
        return Err(Decision::deny(
            rule::ONE_ACCOUNT,
            format!("`{email}` already has a service account here"),
        ));
    }
    Ok(())
}

/// XEN-CONSENT (or XEN-INVITE) for a new service account: an unused
/// invitation for the address, or consent. Returns the origin: `invite`
/// whenever an invitation is there to use.
fn xen_consent_to_create(account: &Account, agent: &str) -> Check<Origin> {
    if account
        .invitations
        .iter()
        .any(|i| same_agent(&i.email, agent))
    {
        return Ok(Origin::Invite);
    }
    if account.setting_is_true(CONSENT_SETTING) {
        return Ok(Origin::Consent);
    }
    Err(Decision::deny(
        rule::CONSENT,
        format!("without consent or an invitation, `{agent}` cannot create a service account"),
    ))
}

/// XEN-CONSENT for an agent's invitation: consent is on and the inviting
/// agent has an active service account here.
pub(crate) fn xen_consent_to_invite(account: &Account, agent: &str) -> Check {
    if !account.setting_is_true(CONSENT_SETTING) {
        return Err(Decision::deny(
            rule::CONSENT,
            "without consent, agents cannot invite",
        ));
    }
    if service_accounts_of(account, agent).next().is_none() {
        return Err(Decision::deny(
            rule::CONSENT,
            format!("agent `{agent}` has no service account here to invite from"),
        ));
    }
    Ok(())
}

/// XEN-NO-ACCOUNT for a named service account: it is active here.
fn xen_no_account<'a>(account: &'a Account, id: &str) -> Check<&'a ServiceAccount> {
    account.service_account(id).ok_or_else(|| {
        Decision::deny(
            rule::NO_ACCOUNT,
            format!("service account `{id}` is not active"),
        )
    })
}
