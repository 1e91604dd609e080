//! The request as `evaluate-packed` takes it: the postcard encoding
//! (<https://postcard.jamesmunns.com/wire-format>) of the WIT `request`,
//! fields, cases and enumerators in the order the package declares them.
//!
//! Written by hand rather than through serde: this runs on every evaluation
//! and serde's path cost four times as much (~0.7 µs for a Celigo-sized
//! request). The tests check it byte for byte against postcard's encoder;
//! the SDK's decoder (`chaperone_sdk`'s `packed` module) is its mirror.

use chaperone_model::{
    Account, Actor, Decision, Environment, EnvironmentKind, Grant, Invitation, Operation, Origin,
    Plan, Request, ServiceAccount, User,
};

/// Decodes what `evaluate-packed` returned: the postcard encoding of a
/// `decision` and nothing after it (postcard's own decoder: it refuses
/// lengths beyond the bytes before allocating).
pub fn decode_decision(bytes: &[u8]) -> Result<Decision, String> {
    match postcard::take_from_bytes::<Decision>(bytes) {
        Ok((decision, [])) => Ok(decision),
        Ok((_, rest)) => Err(format!(
            "`evaluate-packed` returned {} bytes after the decision",
            rest.len()
        )),
        Err(e) => Err(format!(
            "`evaluate-packed` returned {} bytes that are not a decision: {e}",
            bytes.len()
        )),
    }
}

/// The encoding of `request`.
pub fn encode(request: &Request) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(4096));
    out.request(request);
    out.0
}

struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            // The low seven bits, with the continuation bit.
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn len(&mut self, len: usize) {
        self.varint(len as u64);
    }

    fn u32(&mut self, value: u32) {
        self.varint(u64::from(value));
    }

    /// Zigzag.
    fn s64(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    fn string(&mut self, text: &str) {
        self.len(text.len());
        self.0.extend_from_slice(text.as_bytes());
    }

    fn option<T>(&mut self, value: Option<T>, some: impl FnOnce(&mut Self, T)) {
        match value {
            None => self.0.push(0),
            Some(value) => {
                self.0.push(1);
                some(self, value);
            }
        }
    }

    fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.len(items.len());
        for value in items {
            item(self, value);
        }
    }

    fn opt_string(&mut self, value: Option<&String>) {
        self.option(value, |w, s| w.string(s));
    }

    fn request(&mut self, request: &Request) {
        self.operation(&request.operation);
        self.actor(&request.actor);
        self.account(&request.account);
        self.s64(request.now);
    }

    fn operation(&mut self, operation: &Operation) {
        match operation {
            Operation::SetSetting(setting) => {
                self.u32(0);
                self.string(&setting.key);
                self.string(&setting.value);
            }
            Operation::Grant(grant) => {
                self.u32(1);
                self.string(&grant.environment);
                self.string(&grant.scope);
                self.opt_string(grant.expires_in.as_ref());
            }
            Operation::Modify(modify) => {
                self.u32(2);
                self.string(&modify.grant);
                self.opt_string(modify.scope.as_ref());
                self.opt_string(modify.expires_in.as_ref());
            }
            Operation::Revoke(id) => {
                self.u32(3);
                self.string(id);
            }
            Operation::Invite(email) => {
                self.u32(4);
                self.string(email);
            }
            Operation::CreateServiceAccount => self.u32(5),
            Operation::SetRights(set) => {
                self.u32(6);
                self.string(&set.service_account);
                self.string(&set.rights);
            }
            Operation::RemoveServiceAccount(id) => {
                self.u32(7);
                self.string(id);
            }
            Operation::Act(action) => {
                self.u32(8);
                self.string(&action.name);
                self.opt_string(action.environment.as_ref());
                self.opt_string(action.integration.as_ref());
            }
            Operation::Custom(custom) => {
                self.u32(9);
                self.string(&custom.name);
                self.string(&custom.params);
            }
        }
    }

    fn actor(&mut self, actor: &Actor) {
        match actor {
            Actor::User(id) => {
                self.u32(0);
                self.string(id);
            }
            Actor::Agent(email) => {
                self.u32(1);
                self.string(email);
            }
        }
    }

    fn account(&mut self, account: &Account) {
        self.string(&account.id);
        self.string(&account.policy);
        self.u32(match account.plan {
            Plan::Free => 0,
            Plan::Trial => 1,
            Plan::Paid => 2,
        });
        self.list(&account.environments, Self::environment);
        self.list(&account.settings, |w, s| {
            w.string(&s.key);
            w.string(&s.value);
        });
        self.option(account.seat_limit, Self::u32);
        self.list(&account.users, Self::user);
        self.list(&account.grants, Self::grant);
        self.list(&account.service_accounts, Self::service_account);
        self.list(&account.invitations, Self::invitation);
        self.list(&account.entries, |w, e| {
            w.string(&e.key);
            w.string(&e.value);
        });
    }

    fn environment(&mut self, environment: &Environment) {
        self.string(&environment.id);
        self.u32(match environment.kind {
            EnvironmentKind::Production => 0,
            EnvironmentKind::Sandbox => 1,
        });
        self.list(&environment.integrations, |w, i| w.string(i));
    }

    fn user(&mut self, user: &User) {
        self.string(&user.id);
        self.string(&user.email);
        self.string(&user.role);
        self.list(&user.access, |w, a| {
            w.string(&a.integration);
            w.string(&a.level);
        });
        self.list(&user.rights, |w, r| w.string(r));
    }

    fn grant(&mut self, grant: &Grant) {
        self.string(&grant.id);
        self.string(&grant.environment);
        self.string(&grant.granted_by);
        self.opt_string(grant.grantee.as_ref());
        self.string(&grant.scope);
        self.option(grant.expires_at, Self::s64);
        self.s64(grant.created_at);
        self.string(&grant.metadata);
    }

    fn service_account(&mut self, account: &ServiceAccount) {
        self.string(&account.id);
        self.string(&account.agent_email);
        self.list(&account.rights, |w, r| w.string(r));
        self.origin(account.origin);
        self.string(&account.description);
        self.actor(&account.created_by);
        self.s64(account.created_at);
    }

    fn origin(&mut self, origin: Origin) {
        self.u32(match origin {
            Origin::Consent => 0,
            Origin::Invite => 1,
        });
    }

    fn invitation(&mut self, invitation: &Invitation) {
        self.string(&invitation.id);
        self.string(&invitation.email);
        self.actor(&invitation.invited_by);
        self.s64(invitation.created_at);
    }
}

#[cfg(test)]
mod tests {
    use super::encode;
    use crate::probe::sample_request;
    use chaperone_model::{
        Actor, CustomRequest, GrantRequest, Invitation, ModifyRequest, Operation, OperationKind,
        Origin, Plan, ServiceAccount, SetRightsRequest,
    };

    /// The `i`th value, cycling.
    fn pick<T: Copy>(values: &[T], i: usize) -> T {
        values
            .iter()
            .cycle()
            .nth(i)
            .copied()
            .unwrap_or_else(|| unreachable!("no values"))
    }

    #[test]
    fn matches_postcard_byte_for_byte_on_every_case() {
        let mut operations = vec![
            Operation::Grant(GrantRequest {
                environment: "prod".into(),
                scope: "{}".into(),
                expires_in: None,
            }),
            Operation::Modify(ModifyRequest {
                grant: "g".into(),
                scope: None,
                expires_in: Some("5.0".into()),
            }),
            Operation::Revoke("g".into()),
            Operation::Invite("a@xentral.com".into()),
            Operation::CreateServiceAccount,
            Operation::SetRights(SetRightsRequest {
                service_account: "sa".into(),
                rights: "[]".into(),
            }),
            Operation::RemoveServiceAccount("sa".into()),
            Operation::Custom(CustomRequest {
                name: "approve".into(),
                params: "{\"ticket\":\"ü\"}".into(),
            }),
        ];
        for kind in [OperationKind::SetSetting, OperationKind::Act] {
            operations.push(sample_request("celigo", kind, None).operation);
        }
        for (i, operation) in operations.into_iter().enumerate() {
            let mut request = sample_request("xentral", OperationKind::Act, None);
            request.operation = operation;
            request.now = pick(&[i64::MIN, -1, 0, 1, i64::MAX], i);
            request.actor = if i % 2 == 0 {
                Actor::User("ben".into())
            } else {
                Actor::Agent("agent@xentral.com".into())
            };
            request.account.plan = pick(&[Plan::Free, Plan::Trial, Plan::Paid], i);
            request.account.seat_limit = pick(&[None, Some(0), Some(u32::MAX)], i);
            request.account.service_accounts.push(ServiceAccount {
                id: "sa".into(),
                agent_email: "x@xentral.com".into(),
                rights: vec!["admin".into(); i],
                origin: pick(&[Origin::Consent, Origin::Invite], i),
                description: "d".repeat(200 * i),
                created_by: request.actor.clone(),
                created_at: -(i as i64),
            });
            request.account.invitations.push(Invitation {
                id: "i".into(),
                email: "x@xentral.com".into(),
                invited_by: Actor::Agent("q".into()),
                created_at: 1 << 40,
            });
            let expected = postcard::to_allocvec(&request).unwrap_or_default();
            assert!(!expected.is_empty());
            assert_eq!(encode(&request), expected, "case {i}");
        }
        for vendor in ["celigo", "xentral"] {
            for kind in [OperationKind::Grant, OperationKind::Act] {
                let request = sample_request(vendor, kind, None);
                let expected = postcard::to_allocvec(&request).unwrap_or_default();
                assert_eq!(encode(&request), expected, "{vendor} {kind:?}");
            }
        }
    }
}
