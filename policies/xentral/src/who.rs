//! Who counts as a customer admin (XEN-WHO).

use chaperone_sdk::{Account, Actor, Decision, User};

use crate::{Check, rule};

/// The customer right that makes a user a customer admin.
const USERS_MANAGE: &str = "users.manage";

/// XEN-WHO: the actor is a customer user with role `admin` or the exact
/// right `users.manage`. Consent, invitations, rights and removals need one.
pub(crate) fn xen_who<'a>(account: &'a Account, actor: &Actor) -> Check<&'a User> {
    let id = match actor {
        Actor::User(id) => id,
        Actor::Agent(email) => {
            return Err(Decision::deny(
                rule::WHO,
                format!("agent `{email}` is not a customer admin"),
            ));
        }
    };
    match account.user(id) {
        Some(user) if user.role == "admin" || user.has_right(USERS_MANAGE) => Ok(user),
        Some(user) => Err(Decision::deny(
            rule::WHO,
            format!(
                "user `{}` is neither an `admin` nor holds `{USERS_MANAGE}`",
                user.id
            ),
        )),
        None => Err(Decision::deny(
            rule::WHO,
            format!("`{id}` is not a user of this account"),
        )),
    }
}
