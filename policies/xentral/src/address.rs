//! Who is vendor staff (XEN-DOMAIN), and agent identity.

use chaperone_sdk::Decision;

use crate::{Check, rule};

/// The vendor's own domain.
const DOMAIN: &str = "xentral.com";

/// Whether an address is vendor staff: exactly one `@`, something before
/// it, and exactly `xentral.com` after it (ASCII case-insensitively; no
/// trailing-dot normalisation, `+tags` kept).
pub(crate) fn is_vendor_staff(address: &str) -> bool {
    let mut parts = address.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None) => {
            !local.is_empty() && domain.eq_ignore_ascii_case(DOMAIN)
        }
        _ => false,
    }
}

/// Whether two addresses name the same agent: the whole address, compared
/// ASCII case-insensitively.
pub(crate) fn same_agent(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// XEN-DOMAIN: every invitation and every service account needs a
/// vendor-staff address.
pub(crate) fn xen_domain(address: &str) -> Check {
    if is_vendor_staff(address) {
        return Ok(());
    }
    Err(Decision::deny(
        rule::DOMAIN,
        format!("`{address}` is not an address at `{DOMAIN}`"),
    ))
}
