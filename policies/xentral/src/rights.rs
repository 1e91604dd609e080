//! Service account rights (XEN-RIGHTS).

use chaperone_sdk::Decision;
use chaperone_sdk::json::{self, Value};

use crate::{Check, rule};

/// The right that covers everything.
pub(crate) const ALL: &str = "*";

/// Whether one right covers the action `name`: `*`, the name itself, or
/// the name's prefix before its last dot followed by `.*` (`orders.*`
/// covers `orders.read`, not `orders.items.read`; a name without a dot is
/// covered only by `*` or itself).
pub(crate) fn covers(right: &str, name: &str) -> bool {
    right == ALL
        || right == name
        || name
            .rsplit_once('.')
            .is_some_and(|(prefix, _)| right.strip_suffix(".*") == Some(prefix))
}

/// XEN-RIGHTS for an action: some right covers it.
pub(crate) fn xen_rights_cover(rights: &[String], name: &str) -> Check {
    if rights.iter().any(|right| covers(right, name)) {
        return Ok(());
    }
    Err(Decision::deny(
        rule::RIGHTS,
        format!("the service account's rights do not cover `{name}`"),
    ))
}

/// XEN-RIGHTS for new rights: a JSON list of strings.
pub(crate) fn xen_rights_list(text: &str) -> Check<Vec<String>> {
    let not_a_list = || {
        Decision::deny(
            rule::RIGHTS,
            format!("rights must be a list of strings, not `{text}`"),
        )
    };
    let Some(Value::Array(items)) = json::parse(text) else {
        return Err(not_a_list());
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(right) => Ok(right),
            _ => Err(not_a_list()),
        })
        .collect()
}
