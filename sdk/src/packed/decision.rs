//! The decision as `evaluate-packed` returns it: its postcard encoding, in
//! the order the package declares fields, cases and enumerators (the host
//! decodes it with postcard). Written by hand, like the request's decoder:
//! no serde machinery in the module, and a few hundred fuel per decision.

use crate::{Decision, Effect, Origin, Verdict};

/// The encoding of `decision`.
pub fn encode(decision: &Decision) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(
        64 + decision.rule.len() + decision.message.len(),
    ));
    out.decision(decision);
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

    /// A case or enumerator index.
    fn tag(&mut self, index: u8) {
        self.0.push(index);
    }

    /// Zigzag.
    fn s64(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    fn string(&mut self, text: &str) {
        self.varint(text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
    }

    fn strings(&mut self, items: &[String]) {
        self.varint(items.len() as u64);
        for item in items {
            self.string(item);
        }
    }

    fn option_s64(&mut self, value: Option<i64>) {
        match value {
            None => self.0.push(0),
            Some(value) => {
                self.0.push(1);
                self.s64(value);
            }
        }
    }

    fn decision(&mut self, decision: &Decision) {
        self.tag(match decision.verdict {
            Verdict::Allow => 0,
            Verdict::Deny => 1,
        });
        self.string(&decision.rule);
        self.string(&decision.message);
        self.strings(&decision.rules);
        self.varint(decision.effects.len() as u64);
        for effect in &decision.effects {
            self.effect(effect);
        }
    }

    fn effect(&mut self, effect: &Effect) {
        match effect {
            Effect::CreateGrant(grant) => {
                self.tag(0);
                self.string(&grant.environment);
                match &grant.grantee {
                    None => self.0.push(0),
                    Some(grantee) => {
                        self.0.push(1);
                        self.string(grantee);
                    }
                }
                self.string(&grant.scope);
                self.option_s64(grant.expires_at);
                self.string(&grant.metadata);
            }
            Effect::UpdateGrant(update) => {
                self.tag(1);
                self.string(&update.id);
                self.string(&update.scope);
                self.option_s64(update.expires_at);
                self.string(&update.metadata);
            }
            Effect::RevokeGrant(id) => {
                self.tag(2);
                self.string(id);
            }
            Effect::CreateServiceAccount(account) => {
                self.tag(3);
                self.string(&account.agent_email);
                self.strings(&account.rights);
                self.tag(match account.origin {
                    Origin::Consent => 0,
                    Origin::Invite => 1,
                });
                self.string(&account.description);
            }
            Effect::SetServiceAccountRights(update) => {
                self.tag(4);
                self.string(&update.id);
                self.strings(&update.rights);
            }
            Effect::RemoveServiceAccount(id) => {
                self.tag(5);
                self.string(id);
            }
            Effect::SetSetting(setting) => {
                self.tag(6);
                self.string(&setting.key);
                self.string(&setting.value);
            }
            Effect::CreateInvitation(email) => {
                self.tag(7);
                self.string(email);
            }
            Effect::UseInvitation(id) => {
                self.tag(8);
                self.string(id);
            }
            Effect::PutEntry(entry) => {
                self.tag(9);
                self.string(&entry.key);
                self.string(&entry.value);
            }
            Effect::DeleteEntry(key) => {
                self.tag(10);
                self.string(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encode;
    use crate::{
        Decision, Effect, Entry, GrantUpdate, NewGrant, NewServiceAccount, Origin, RightsUpdate,
        Setting,
    };

    fn every_effect() -> Vec<Effect> {
        vec![
            Effect::CreateGrant(NewGrant {
                environment: "prod".into(),
                grantee: Some("sam@vendor.test".into()),
                scope: r#"{"level":"admin"}"#.into(),
                expires_at: Some(1_767_258_000_000),
                metadata: "null".into(),
            }),
            Effect::CreateGrant(NewGrant {
                environment: "sb".into(),
                grantee: None,
                scope: "{}".into(),
                expires_at: None,
                metadata: "{}".into(),
            }),
            Effect::UpdateGrant(GrantUpdate {
                id: "g1".into(),
                scope: "{}".into(),
                expires_at: Some(i64::MIN),
                metadata: "null".into(),
            }),
            Effect::RevokeGrant("g1".into()),
            Effect::CreateServiceAccount(NewServiceAccount {
                agent_email: "ann@xentral.com".into(),
                rights: vec!["admin".into(), "orders.*".into()],
                origin: Origin::Invite,
                description: "ü".repeat(100),
            }),
            Effect::SetServiceAccountRights(RightsUpdate {
                id: "sa1".into(),
                rights: vec![],
            }),
            Effect::RemoveServiceAccount("sa1".into()),
            Effect::SetSetting(Setting {
                key: "k".into(),
                value: "true".into(),
            }),
            Effect::CreateInvitation("ann@xentral.com".into()),
            Effect::UseInvitation("i1".into()),
            Effect::PutEntry(Entry {
                key: "pending/1".into(),
                value: r#"{"ticket":"T-1"}"#.into(),
            }),
            Effect::DeleteEntry("pending/1".into()),
        ]
    }

    #[test]
    fn encodes_as_postcard_does_for_every_case() {
        let mut decisions = vec![
            Decision::deny("R-1", ""),
            Decision::deny("R-1", "x".repeat(300)).with_rules(["A", "B"]),
            Decision::allow("R-2", "ok"),
        ];
        for effect in every_effect() {
            decisions.push(Decision::allow("R-3", "with one effect").with_effect(effect));
        }
        decisions.push(
            every_effect()
                .into_iter()
                .fold(Decision::allow("R-4", "all"), Decision::with_effect),
        );
        for decision in decisions {
            let expected = postcard::to_allocvec(&decision).unwrap_or_default();
            assert!(!expected.is_empty());
            assert_eq!(encode(&decision), expected, "{decision:?}");
        }
    }
}
