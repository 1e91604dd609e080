//! What a module's output must satisfy beyond its WIT types.
//!
//! A decision that breaks these is a policy failure (fail closed), never
//! something the host applies: every effect must name an object of the
//! request's own account, sizes are bounded, and a deny changes nothing.

use chaperone_model::{Decision, Description, Effect, Request, Verdict};

/// The longest rule id.
pub const MAX_RULE_LEN: usize = 64;
/// The longest message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The most effects one decision may carry.
pub const MAX_EFFECTS: usize = 64;
/// The most rules an allow may list.
pub const MAX_RULES: usize = 32;
/// The most custom operations a module may describe.
pub const MAX_CUSTOM_OPERATIONS: usize = 1024;
/// The longest JSON document or string in an effect, in bytes.
pub const MAX_VALUE_LEN: usize = 64 << 10;
/// The most a decision may cost, counted as [`decision_cost`] counts: about
/// the host memory it takes. Decoding stops as soon as a decision is over
/// it, so a module cannot make the host allocate more than this for its
/// answer; a decision within every other limit is well under it unless it
/// fills many effects to their limits.
pub const MAX_DECISION_BYTES: usize = 16 << 20;
/// What each string of a decision costs beyond its bytes (a `String`).
pub const STRING_COST: usize = 24;
/// What each effect of a decision costs beyond its strings.
pub const EFFECT_COST: usize = 128;
/// What a decision costs beyond its strings and effects.
pub const DECISION_COST: usize = 128;

/// The cost of a decision: [`DECISION_COST`], [`EFFECT_COST`] per effect,
/// and each string's bytes plus [`STRING_COST`].
pub fn decision_cost(decision: &Decision) -> usize {
    let text = |s: &String| STRING_COST.saturating_add(s.len());
    let texts = |items: &[String]| items.iter().map(text).fold(0usize, usize::saturating_add);
    let effect = |effect: &Effect| {
        let strings = match effect {
            Effect::CreateGrant(g) => {
                text(&g.environment)
                    + g.grantee.as_ref().map_or(0, text)
                    + text(&g.scope)
                    + text(&g.metadata)
            }
            Effect::UpdateGrant(u) => text(&u.id) + text(&u.scope) + text(&u.metadata),
            Effect::CreateServiceAccount(s) => text(&s.agent_email)
                .saturating_add(texts(&s.rights))
                .saturating_add(text(&s.description)),
            Effect::SetServiceAccountRights(u) => text(&u.id).saturating_add(texts(&u.rights)),
            Effect::SetSetting(s) => text(&s.key) + text(&s.value),
            Effect::PutEntry(e) => text(&e.key) + text(&e.value),
            Effect::RevokeGrant(id)
            | Effect::RemoveServiceAccount(id)
            | Effect::CreateInvitation(id)
            | Effect::UseInvitation(id)
            | Effect::DeleteEntry(id) => text(id),
        };
        EFFECT_COST.saturating_add(strings)
    };
    DECISION_COST
        .saturating_add(text(&decision.rule))
        .saturating_add(text(&decision.message))
        .saturating_add(texts(&decision.rules))
        .saturating_add(
            decision
                .effects
                .iter()
                .map(effect)
                .fold(0, usize::saturating_add),
        )
}

/// The refusal of a decision over [`MAX_DECISION_BYTES`], the same
/// whichever way it was decoded.
pub fn over_budget() -> String {
    format!(
        "the decision costs more than {MAX_DECISION_BYTES} bytes (each string its bytes plus {STRING_COST}, each effect {EFFECT_COST})"
    )
}

/// Checks a module's self-description.
pub fn check_description(description: &Description) -> Result<(), String> {
    check_identifier("vendor id", &description.vendor)?;
    if description.version.is_empty() || description.version.len() > MAX_RULE_LEN {
        return Err(format!(
            "version must be 1 to {MAX_RULE_LEN} bytes, got {}",
            description.version.len()
        ));
    }
    if description.operations.is_empty() {
        return Err("it lists no operations".into());
    }
    if description.custom_operations.len() > MAX_CUSTOM_OPERATIONS {
        return Err(format!(
            "{} custom operations; the limit is {MAX_CUSTOM_OPERATIONS}",
            description.custom_operations.len()
        ));
    }
    for name in &description.custom_operations {
        check_identifier("custom operation", name)?;
    }
    Ok(())
}

/// Whether `id` is among `ids`, the account's active objects of one kind.
fn known<'a>(
    mut ids: impl Iterator<Item = &'a str>,
    what: &str,
    id: &str,
    account: &str,
) -> Result<(), String> {
    if ids.any(|known| known == id) {
        return Ok(());
    }
    Err(format!(
        "an effect names {what} `{}`, which is not an active object of account `{}`",
        clip(id),
        clip(account)
    ))
}

/// Checks a decision against the contract and the request it answers.
pub fn check_decision(decision: &Decision, request: &Request) -> Result<(), String> {
    check_rule(&decision.rule)?;
    if decision.message.len() > MAX_MESSAGE_LEN {
        return Err(format!(
            "the message is {} bytes; the limit is {MAX_MESSAGE_LEN}",
            decision.message.len()
        ));
    }
    if decision.rules.len() > MAX_RULES {
        return Err(format!(
            "{} rules listed; the limit is {MAX_RULES}",
            decision.rules.len()
        ));
    }
    for rule in &decision.rules {
        check_rule(rule)?;
    }
    if decision.verdict == Verdict::Deny && !decision.effects.is_empty() {
        return Err(format!(
            "a deny carries {} effects; a deny changes nothing",
            decision.effects.len()
        ));
    }
    if decision.effects.len() > MAX_EFFECTS {
        return Err(format!(
            "{} effects; the limit is {MAX_EFFECTS}",
            decision.effects.len()
        ));
    }
    if decision_cost(decision) > MAX_DECISION_BYTES {
        return Err(over_budget());
    }
    let account = &request.account;
    // At most MAX_EFFECTS lookups: a scan of the snapshot is cheaper than
    // building sets for every decision.
    let grants = || account.grants.iter().map(|g| g.id.as_str());
    let service_accounts = || account.service_accounts.iter().map(|s| s.id.as_str());
    let invitations = || account.invitations.iter().map(|i| i.id.as_str());
    for effect in &decision.effects {
        match effect {
            Effect::CreateGrant(grant) => {
                if environment_named(account, &grant.environment).is_none() {
                    return Err(format!(
                        "an effect creates a grant on environment `{}`, which account `{}` does not have",
                        clip(&grant.environment),
                        clip(&account.id)
                    ));
                }
                check_json("grant scope", &grant.scope)?;
                check_json("grant metadata", &grant.metadata)?;
                if let Some(grantee) = &grant.grantee {
                    check_text("grantee", grantee)?;
                }
            }
            Effect::UpdateGrant(update) => {
                known(grants(), "grant", &update.id, &account.id)?;
                check_json("grant scope", &update.scope)?;
                check_json("grant metadata", &update.metadata)?;
            }
            Effect::RevokeGrant(id) => known(grants(), "grant", id, &account.id)?,
            Effect::CreateServiceAccount(new) => {
                check_text("agent email", &new.agent_email)?;
                check_text("description", &new.description)?;
                check_rights(&new.rights)?;
            }
            Effect::SetServiceAccountRights(update) => {
                known(
                    service_accounts(),
                    "service account",
                    &update.id,
                    &account.id,
                )?;
                check_rights(&update.rights)?;
            }
            Effect::RemoveServiceAccount(id) => {
                known(service_accounts(), "service account", id, &account.id)?
            }
            Effect::SetSetting(setting) => {
                check_text("setting key", &setting.key)?;
                check_json("setting value", &setting.value)?;
            }
            Effect::CreateInvitation(email) => check_text("invited email", email)?,
            Effect::UseInvitation(id) => known(invitations(), "invitation", id, &account.id)?,
            Effect::PutEntry(entry) => {
                check_text("entry key", &entry.key)?;
                check_json("entry value", &entry.value)?;
            }
            Effect::DeleteEntry(key) => {
                if !account.entries.iter().any(|e| &e.key == key) {
                    return Err(format!(
                        "an effect deletes entry `{}`, which does not exist",
                        clip(key)
                    ));
                }
            }
        }
    }
    Ok(())
}

fn environment_named<'a>(
    account: &'a chaperone_model::Account,
    id: &str,
) -> Option<&'a chaperone_model::Environment> {
    account.environments.iter().find(|e| e.id == id)
}

fn check_rule(rule: &str) -> Result<(), String> {
    let ok = !rule.is_empty()
        && rule.len() <= MAX_RULE_LEN
        && rule
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "rule id `{}` is not 1 to {MAX_RULE_LEN} letters, digits, `-`, `_` or `.`",
            clip(rule)
        ))
    }
}

fn check_identifier(what: &str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_RULE_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` is not 1 to {MAX_RULE_LEN} lowercase letters, digits, `-` or `_`",
            clip(id)
        ))
    }
}

fn check_text(what: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_VALUE_LEN {
        return Err(format!(
            "the {what} is {} bytes; the limit is {MAX_VALUE_LEN}",
            text.len()
        ));
    }
    Ok(())
}

fn check_json(what: &str, text: &str) -> Result<(), String> {
    check_text(what, text)?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| format!("the {what} is not valid JSON: {e}"))
}

/// A rights list is the caller's own (a customer admin may set any list),
/// so it is bounded as one value: its names together, not how many.
fn check_rights(rights: &[String]) -> Result<(), String> {
    let total: usize = rights.iter().map(String::len).sum();
    if total > MAX_VALUE_LEN {
        return Err(format!(
            "the rights' names are {total} bytes together; the limit is {MAX_VALUE_LEN}"
        ));
    }
    Ok(())
}

/// At most 64 characters of untrusted text in an error message.
fn clip(text: &str) -> String {
    let mut clipped: String = text.chars().take(64).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_are_bounded_by_their_size_not_their_number() {
        let many: Vec<String> = (0..5000).map(|i| format!("r{i}.read")).collect();
        assert!(check_rights(&many).is_ok());
        let exact = vec!["x".repeat(MAX_VALUE_LEN / 2); 2];
        assert!(check_rights(&exact).is_ok());
        let over = vec!["x".repeat(MAX_VALUE_LEN / 2 + 1); 2];
        let error = check_rights(&over).err();
        assert_eq!(
            error.as_deref(),
            Some("the rights' names are 65538 bytes together; the limit is 65536")
        );
    }
}
