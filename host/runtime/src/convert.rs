//! The runtime's edge: the host's own types ([`chaperone_model`]) to and
//! from the types generated from the WIT package. Only the typed component
//! path (`evaluate`, `describe`) needs these; the packed path encodes the
//! host's types directly (`packed.rs`).

use chaperone_model as m;

use crate::wit as w;

fn plan(p: m::Plan) -> w::Plan {
    match p {
        m::Plan::Free => w::Plan::Free,
        m::Plan::Trial => w::Plan::Trial,
        m::Plan::Paid => w::Plan::Paid,
    }
}

fn environment_kind(k: m::EnvironmentKind) -> w::EnvironmentKind {
    match k {
        m::EnvironmentKind::Production => w::EnvironmentKind::Production,
        m::EnvironmentKind::Sandbox => w::EnvironmentKind::Sandbox,
    }
}

fn origin_to(o: m::Origin) -> w::Origin {
    match o {
        m::Origin::Consent => w::Origin::Consent,
        m::Origin::Invite => w::Origin::Invite,
    }
}

fn origin_from(o: w::Origin) -> m::Origin {
    match o {
        w::Origin::Consent => m::Origin::Consent,
        w::Origin::Invite => m::Origin::Invite,
    }
}

fn actor(a: &m::Actor) -> w::Actor {
    match a {
        m::Actor::User(id) => w::Actor::User(id.clone()),
        m::Actor::Agent(email) => w::Actor::Agent(email.clone()),
    }
}

fn setting_to(s: &m::Setting) -> w::Setting {
    w::Setting {
        key: s.key.clone(),
        value: s.value.clone(),
    }
}

fn setting_from(s: w::Setting) -> m::Setting {
    m::Setting {
        key: s.key,
        value: s.value,
    }
}

fn account(a: &m::Account) -> w::Account {
    w::Account {
        id: a.id.clone(),
        policy: a.policy.clone(),
        plan: plan(a.plan),
        environments: a
            .environments
            .iter()
            .map(|e| w::Environment {
                id: e.id.clone(),
                kind: environment_kind(e.kind),
                integrations: e.integrations.clone(),
            })
            .collect(),
        settings: a.settings.iter().map(setting_to).collect(),
        seat_limit: a.seat_limit,
        users: a
            .users
            .iter()
            .map(|u| w::User {
                id: u.id.clone(),
                email: u.email.clone(),
                role: u.role.clone(),
                access: u
                    .access
                    .iter()
                    .map(|e| w::AccessEntry {
                        integration: e.integration.clone(),
                        level: e.level.clone(),
                    })
                    .collect(),
                rights: u.rights.clone(),
            })
            .collect(),
        grants: a
            .grants
            .iter()
            .map(|g| w::Grant {
                id: g.id.clone(),
                environment: g.environment.clone(),
                granted_by: g.granted_by.clone(),
                grantee: g.grantee.clone(),
                scope: g.scope.clone(),
                expires_at: g.expires_at,
                created_at: g.created_at,
                metadata: g.metadata.clone(),
            })
            .collect(),
        service_accounts: a
            .service_accounts
            .iter()
            .map(|s| w::ServiceAccount {
                id: s.id.clone(),
                agent_email: s.agent_email.clone(),
                rights: s.rights.clone(),
                origin: origin_to(s.origin),
                description: s.description.clone(),
                created_by: actor(&s.created_by),
                created_at: s.created_at,
            })
            .collect(),
        invitations: a
            .invitations
            .iter()
            .map(|i| w::Invitation {
                id: i.id.clone(),
                email: i.email.clone(),
                invited_by: actor(&i.invited_by),
                created_at: i.created_at,
            })
            .collect(),
        entries: a
            .entries
            .iter()
            .map(|e| w::Entry {
                key: e.key.clone(),
                value: e.value.clone(),
            })
            .collect(),
    }
}

fn operation(o: &m::Operation) -> w::Operation {
    match o {
        m::Operation::SetSetting(s) => w::Operation::SetSetting(setting_to(s)),
        m::Operation::Grant(g) => w::Operation::Grant(w::GrantRequest {
            environment: g.environment.clone(),
            scope: g.scope.clone(),
            expires_in: g.expires_in.clone(),
        }),
        m::Operation::Modify(r) => w::Operation::Modify(w::ModifyRequest {
            grant: r.grant.clone(),
            scope: r.scope.clone(),
            expires_in: r.expires_in.clone(),
        }),
        m::Operation::Revoke(id) => w::Operation::Revoke(id.clone()),
        m::Operation::Invite(email) => w::Operation::Invite(email.clone()),
        m::Operation::CreateServiceAccount => w::Operation::CreateServiceAccount,
        m::Operation::SetRights(r) => w::Operation::SetRights(w::SetRightsRequest {
            service_account: r.service_account.clone(),
            rights: r.rights.clone(),
        }),
        m::Operation::RemoveServiceAccount(id) => w::Operation::RemoveServiceAccount(id.clone()),
        m::Operation::Act(a) => w::Operation::Act(w::Action {
            name: a.name.clone(),
            environment: a.environment.clone(),
            integration: a.integration.clone(),
        }),
        m::Operation::Custom(c) => w::Operation::Custom(w::CustomRequest {
            name: c.name.clone(),
            params: c.params.clone(),
        }),
    }
}

/// The request as the typed `evaluate` export takes it.
pub(crate) fn request(r: &m::Request) -> w::Request {
    w::Request {
        operation: operation(&r.operation),
        actor: actor(&r.actor),
        account: account(&r.account),
        now: r.now,
    }
}

fn effect(e: w::Effect) -> m::Effect {
    match e {
        w::Effect::CreateGrant(g) => m::Effect::CreateGrant(m::NewGrant {
            environment: g.environment,
            grantee: g.grantee,
            scope: g.scope,
            expires_at: g.expires_at,
            metadata: g.metadata,
        }),
        w::Effect::UpdateGrant(u) => m::Effect::UpdateGrant(m::GrantUpdate {
            id: u.id,
            scope: u.scope,
            expires_at: u.expires_at,
            metadata: u.metadata,
        }),
        w::Effect::RevokeGrant(id) => m::Effect::RevokeGrant(id),
        w::Effect::CreateServiceAccount(s) => {
            m::Effect::CreateServiceAccount(m::NewServiceAccount {
                agent_email: s.agent_email,
                rights: s.rights,
                origin: origin_from(s.origin),
                description: s.description,
            })
        }
        w::Effect::SetServiceAccountRights(r) => {
            m::Effect::SetServiceAccountRights(m::RightsUpdate {
                id: r.id,
                rights: r.rights,
            })
        }
        w::Effect::RemoveServiceAccount(id) => m::Effect::RemoveServiceAccount(id),
        w::Effect::SetSetting(s) => m::Effect::SetSetting(setting_from(s)),
        w::Effect::CreateInvitation(email) => m::Effect::CreateInvitation(email),
        w::Effect::UseInvitation(id) => m::Effect::UseInvitation(id),
        w::Effect::PutEntry(e) => m::Effect::PutEntry(m::Entry {
            key: e.key,
            value: e.value,
        }),
        w::Effect::DeleteEntry(key) => m::Effect::DeleteEntry(key),
    }
}

/// The decision the typed `evaluate` export returned, as the host's own.
pub(crate) fn decision(d: w::Decision) -> m::Decision {
    m::Decision {
        verdict: match d.verdict {
            w::Verdict::Allow => m::Verdict::Allow,
            w::Verdict::Deny => m::Verdict::Deny,
        },
        rule: d.rule,
        message: d.message,
        rules: d.rules,
        effects: d.effects.into_iter().map(effect).collect(),
    }
}

fn operation_kind(k: w::OperationKind) -> m::OperationKind {
    match k {
        w::OperationKind::SetSetting => m::OperationKind::SetSetting,
        w::OperationKind::Grant => m::OperationKind::Grant,
        w::OperationKind::Modify => m::OperationKind::Modify,
        w::OperationKind::Revoke => m::OperationKind::Revoke,
        w::OperationKind::Invite => m::OperationKind::Invite,
        w::OperationKind::CreateServiceAccount => m::OperationKind::CreateServiceAccount,
        w::OperationKind::SetRights => m::OperationKind::SetRights,
        w::OperationKind::RemoveServiceAccount => m::OperationKind::RemoveServiceAccount,
        w::OperationKind::Act => m::OperationKind::Act,
        w::OperationKind::Custom => m::OperationKind::Custom,
    }
}

/// What `describe()` returned, as the host's own.
pub(crate) fn description(d: w::Description) -> m::Description {
    m::Description {
        vendor: d.vendor,
        version: d.version,
        operations: d.operations.into_iter().map(operation_kind).collect(),
        custom_operations: d.custom_operations,
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::probe::sample_request;

    /// A decision's recorded `input` was the generated type's serde form
    /// before the host had types of its own; replay reads old records, so
    /// the two forms must be the same.
    #[test]
    fn the_host_request_serializes_as_the_generated_one() {
        for kind in m::OperationKind::ALL {
            let host = sample_request("celigo", kind, Some("approve"));
            let generated = request(&host);
            assert_eq!(
                serde_json::to_value(&host).unwrap(),
                serde_json::to_value(&generated).unwrap()
            );
            let back: m::Request =
                serde_json::from_value(serde_json::to_value(&generated).unwrap()).unwrap();
            assert_eq!(back, host);
        }
    }
}
