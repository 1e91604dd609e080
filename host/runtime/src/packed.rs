//! The request as `evaluate-packed` takes it: the postcard encoding
//! (<https://postcard.jamesmunns.com/wire-format>) of the WIT `request`,
//! fields, cases and enumerators in the order the package declares them.
//!
//! Written by hand rather than through serde: this runs on every evaluation
//! and serde's path cost four times as much (~0.7 µs for a Celigo-sized
//! request). The tests check it byte for byte against postcard's encoder;
//! the SDK's decoder (`chaperone_sdk`'s `packed` module) is its mirror.

use chaperone_model::{
    Account, Actor, Decision, Effect, Entry, Environment, EnvironmentKind, Grant, GrantUpdate,
    Invitation, NewGrant, NewServiceAccount, Operation, Origin, Plan, Request, RightsUpdate,
    ServiceAccount, Setting, User, Verdict,
};

use crate::contract::{
    self, MAX_DECISION_BYTES, MAX_EFFECTS, MAX_MESSAGE_LEN, MAX_RULE_LEN, MAX_RULES, MAX_VALUE_LEN,
};

/// Why a packed decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The bytes are not a decision.
    #[error("{0}")]
    Malformed(String),
    /// The decision breaks a limit of the contract (found while decoding).
    #[error("{0}")]
    Contract(String),
}

impl From<Refusal> for crate::EvalError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Malformed(detail) => crate::EvalError::BadOutput(detail),
            Refusal::Contract(detail) => crate::EvalError::Contract(detail),
        }
    }
}

/// Decodes what `evaluate-packed` returned: the postcard encoding of a
/// `decision` and nothing after it. Every bound of the contract that can be
/// known from a length is checked before what it bounds is read: a string's
/// length before it is copied, a list's before any of its items, and the
/// whole decision's cost ([`contract::decision_cost`]) as it grows; so a
/// decision over a limit costs at most the limit to refuse.
pub fn decode_decision(bytes: &[u8]) -> Result<Decision, Refusal> {
    if bytes.len() > MAX_DECISION_BYTES {
        return Err(Refusal::Contract(contract::over_budget()));
    }
    let mut reader = Reader {
        bytes,
        cost: contract::DECISION_COST,
    };
    let decision = reader.decision().map_err(|refusal| match refusal {
        Refusal::Malformed(e) => Refusal::Malformed(format!(
            "`evaluate-packed` returned {} bytes that are not a decision: {e}",
            bytes.len()
        )),
        limit => limit,
    })?;
    if !reader.bytes.is_empty() {
        return Err(Refusal::Malformed(format!(
            "`evaluate-packed` returned {} bytes after the decision",
            reader.bytes.len()
        )));
    }
    Ok(decision)
}

fn malformed(detail: impl Into<String>) -> Refusal {
    Refusal::Malformed(detail.into())
}

/// Reads a decision, charging what it allocates against
/// [`MAX_DECISION_BYTES`] before allocating it.
struct Reader<'a> {
    bytes: &'a [u8],
    /// The cost of what was read so far.
    cost: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Refusal> {
        let (&first, rest) = self
            .bytes
            .split_first()
            .ok_or_else(|| malformed("it ends early"))?;
        self.bytes = rest;
        Ok(first)
    }

    /// A LEB128 varint of at most 64 bits, in its shortest form or not
    /// (postcard's decoder accepts both; so does this one).
    fn varint(&mut self) -> Result<u64, Refusal> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(malformed("a varint overflows 64 bits"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("a varint is longer than 10 bytes"))
    }

    fn u32(&mut self) -> Result<u32, Refusal> {
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| malformed(format!("{value} does not fit 32 bits")))
    }

    /// Zigzag.
    fn s64(&mut self) -> Result<i64, Refusal> {
        let value = self.varint()?;
        // Undoes the zigzag: the low bit is the sign.
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    fn charge(&mut self, cost: usize) -> Result<(), Refusal> {
        self.cost = self.cost.saturating_add(cost);
        if self.cost > MAX_DECISION_BYTES {
            return Err(Refusal::Contract(contract::over_budget()));
        }
        Ok(())
    }

    /// A list's length, refused over `max` before any item is read.
    fn count(&mut self, what: &str, max: usize) -> Result<usize, Refusal> {
        let count = self.varint()?;
        match usize::try_from(count) {
            Ok(count) if count <= max => Ok(count),
            _ => Err(Refusal::Contract(format!(
                "{count} {what}; the limit is {max}"
            ))),
        }
    }

    /// A string of at most `max` bytes, refused by its length before a
    /// byte of it is copied.
    fn string(&mut self, what: &str, max: usize) -> Result<String, Refusal> {
        let len = self.varint()?;
        let len = match usize::try_from(len) {
            Ok(len) if len <= max => len,
            _ => {
                return Err(Refusal::Contract(format!(
                    "the {what} is {len} bytes; the limit is {max}"
                )));
            }
        };
        self.charge(contract::STRING_COST.saturating_add(len))?;
        if len > self.bytes.len() {
            return Err(malformed(format!(
                "the {what} is {len} bytes, but only {} follow",
                self.bytes.len()
            )));
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        std::str::from_utf8(text)
            .map(str::to_owned)
            .map_err(|e| malformed(format!("the {what} is not UTF-8: {e}")))
    }

    fn option<T>(
        &mut self,
        what: &str,
        some: impl FnOnce(&mut Self) -> Result<T, Refusal>,
    ) -> Result<Option<T>, Refusal> {
        match self.byte()? {
            0 => Ok(None),
            1 => some(self).map(Some),
            tag => Err(malformed(format!("the {what} has option tag {tag}"))),
        }
    }

    fn decision(&mut self) -> Result<Decision, Refusal> {
        let verdict = match self.u32()? {
            0 => Verdict::Allow,
            1 => Verdict::Deny,
            other => {
                return Err(malformed(format!(
                    "verdict {other} is not allow (0) or deny (1)"
                )));
            }
        };
        let rule = self.string("rule id", MAX_RULE_LEN)?;
        let message = self.string("message", MAX_MESSAGE_LEN)?;
        let count = self.count("rules listed", MAX_RULES)?;
        let mut rules = Vec::with_capacity(count);
        for _ in 0..count {
            rules.push(self.string("listed rule id", MAX_RULE_LEN)?);
        }
        let count = self.count("effects", MAX_EFFECTS)?;
        let mut effects = Vec::with_capacity(count);
        for _ in 0..count {
            self.charge(contract::EFFECT_COST)?;
            effects.push(self.effect()?);
        }
        Ok(Decision {
            verdict,
            rule,
            message,
            rules,
            effects,
        })
    }

    fn text(&mut self, what: &str) -> Result<String, Refusal> {
        self.string(what, MAX_VALUE_LEN)
    }

    fn rights(&mut self) -> Result<Vec<String>, Refusal> {
        // A name costs its bytes and a string's share: a count whose empty
        // names alone would take the decision over is refused before the
        // list is allocated. The names' total size is the contract's check.
        let count = self.count("rights", MAX_DECISION_BYTES / contract::STRING_COST)?;
        if self
            .cost
            .saturating_add(count.saturating_mul(contract::STRING_COST))
            > MAX_DECISION_BYTES
        {
            return Err(Refusal::Contract(contract::over_budget()));
        }
        let mut rights = Vec::with_capacity(count);
        for _ in 0..count {
            rights.push(self.text("right")?);
        }
        Ok(rights)
    }

    fn effect(&mut self) -> Result<Effect, Refusal> {
        Ok(match self.u32()? {
            0 => Effect::CreateGrant(NewGrant {
                environment: self.text("grant's environment")?,
                grantee: self.option("grantee", |r| r.text("grantee"))?,
                scope: self.text("grant scope")?,
                expires_at: self.option("grant expiry", Reader::s64)?,
                metadata: self.text("grant metadata")?,
            }),
            1 => Effect::UpdateGrant(GrantUpdate {
                id: self.text("grant id")?,
                scope: self.text("grant scope")?,
                expires_at: self.option("grant expiry", Reader::s64)?,
                metadata: self.text("grant metadata")?,
            }),
            2 => Effect::RevokeGrant(self.text("grant id")?),
            3 => Effect::CreateServiceAccount(NewServiceAccount {
                agent_email: self.text("agent email")?,
                rights: self.rights()?,
                origin: match self.u32()? {
                    0 => Origin::Consent,
                    1 => Origin::Invite,
                    other => {
                        return Err(malformed(format!(
                            "origin {other} is not consent or invite"
                        )));
                    }
                },
                description: self.text("description")?,
            }),
            4 => Effect::SetServiceAccountRights(RightsUpdate {
                id: self.text("service account id")?,
                rights: self.rights()?,
            }),
            5 => Effect::RemoveServiceAccount(self.text("service account id")?),
            6 => Effect::SetSetting(Setting {
                key: self.text("setting key")?,
                value: self.text("setting value")?,
            }),
            7 => Effect::CreateInvitation(self.text("invited email")?),
            8 => Effect::UseInvitation(self.text("invitation id")?),
            9 => Effect::PutEntry(Entry {
                key: self.text("entry key")?,
                value: self.text("entry value")?,
            }),
            10 => Effect::DeleteEntry(self.text("entry key")?),
            other => {
                return Err(malformed(format!(
                    "effect {other} is not one the interface defines"
                )));
            }
        })
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
    use super::{Refusal, decode_decision, encode};
    use crate::contract::{self, MAX_DECISION_BYTES, decision_cost};
    use crate::probe::sample_request;
    use chaperone_model::{
        Actor, CustomRequest, GrantRequest, Invitation, ModifyRequest, Operation, OperationKind,
        Origin, Plan, ServiceAccount, SetRightsRequest,
    };
    use chaperone_model::{
        Decision, Effect, Entry, GrantUpdate, NewGrant, NewServiceAccount, RightsUpdate, Setting,
        Verdict,
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

    fn every_effect() -> Vec<Effect> {
        vec![
            Effect::CreateGrant(NewGrant {
                environment: "prod".into(),
                grantee: Some("ü@x".into()),
                scope: "{}".into(),
                expires_at: Some(-5),
                metadata: "null".into(),
            }),
            Effect::CreateGrant(NewGrant {
                environment: "e".into(),
                grantee: None,
                scope: "[]".into(),
                expires_at: None,
                metadata: "{}".into(),
            }),
            Effect::UpdateGrant(GrantUpdate {
                id: "g".into(),
                scope: "1".into(),
                expires_at: Some(i64::MAX),
                metadata: "2".into(),
            }),
            Effect::RevokeGrant("g".into()),
            Effect::CreateServiceAccount(NewServiceAccount {
                agent_email: "a@b".into(),
                rights: vec!["x".into(), String::new()],
                origin: chaperone_model::Origin::Invite,
                description: "d".repeat(300),
            }),
            Effect::SetServiceAccountRights(RightsUpdate {
                id: "sa".into(),
                rights: vec![],
            }),
            Effect::RemoveServiceAccount("sa".into()),
            Effect::SetSetting(Setting {
                key: "k".into(),
                value: "true".into(),
            }),
            Effect::CreateInvitation("i@x".into()),
            Effect::UseInvitation("i".into()),
            Effect::PutEntry(Entry {
                key: "k".into(),
                value: "\"v\"".into(),
            }),
            Effect::DeleteEntry("k".into()),
        ]
    }

    fn decision(effects: Vec<Effect>) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            rule: "R-1".into(),
            message: "m".repeat(200),
            rules: vec!["A".into(), "B.c".into()],
            effects,
        }
    }

    fn packed(decision: &Decision) -> Vec<u8> {
        postcard::to_allocvec(decision).unwrap_or_default()
    }

    #[test]
    fn decodes_what_postcard_encodes() {
        let mut cases = vec![decision(every_effect()), decision(vec![])];
        cases.push(Decision {
            verdict: Verdict::Deny,
            rule: "D".into(),
            message: String::new(),
            rules: vec![],
            effects: vec![],
        });
        for effect in every_effect() {
            cases.push(decision(vec![effect]));
        }
        for case in cases {
            let bytes = packed(&case);
            assert_eq!(decode_decision(&bytes).ok(), Some(case.clone()));
            // Every strict prefix is refused as malformed, never a panic.
            for end in 0..bytes.len() {
                let prefix = bytes.get(..end).unwrap_or_default();
                assert!(
                    matches!(decode_decision(prefix), Err(Refusal::Malformed(_))),
                    "{case:?} cut at {end}"
                );
            }
        }
    }

    /// The decoder's running cost is `decision_cost`: a decision exactly at
    /// the limit decodes, one byte more is refused, with the message the
    /// contract gives a decision it did not decode.
    #[test]
    fn the_decoders_cost_is_the_contracts() {
        // Within the count limits, long lists of rights reach the budget.
        let rights = |n: usize| {
            decision(vec![Effect::SetServiceAccountRights(RightsUpdate {
                id: "sa".into(),
                rights: vec![String::new(); n],
            })])
        };
        let names = (MAX_DECISION_BYTES - decision_cost(&rights(0))) / contract::STRING_COST;
        let at_limit = rights(names);
        let remainder = MAX_DECISION_BYTES - decision_cost(&at_limit);
        let mut exact = at_limit.clone();
        if let Some(Effect::SetServiceAccountRights(update)) = exact.effects.first_mut()
            && let Some(first) = update.rights.first_mut()
        {
            *first = "r".repeat(remainder);
        }
        assert_eq!(decision_cost(&exact), MAX_DECISION_BYTES);
        assert_eq!(decode_decision(&packed(&exact)).ok(), Some(exact.clone()));
        let mut over = exact.clone();
        over.message.push('!');
        assert_eq!(decision_cost(&over), MAX_DECISION_BYTES + 1);
        let refused = decode_decision(&packed(&over)).err();
        assert!(
            matches!(&refused, Some(Refusal::Contract(m)) if *m == contract::over_budget()),
            "{refused:?}"
        );
        let request =
            crate::probe::sample_request("celigo", chaperone_model::OperationKind::Act, None);
        assert_eq!(
            contract::check_decision(&over, &request).err(),
            Some(contract::over_budget())
        );
    }
}
