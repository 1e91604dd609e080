//! Native tests: at least one per rule of `RULES.md`, named after it.

use chaperone_sdk::testing::{
    AccountBuilder, assert_allowed, assert_denied, assert_effects, at, by_agent, by_user, grant,
    op, request, user,
};
use chaperone_sdk::time::{DAY, HOUR};
use chaperone_sdk::{
    Account, Actor, Decision, Effect, Entry, Grant, NewGrant, Operation, OperationKind, Policy,
    Timestamp,
};

use crate::pending::{Level, Pending};
use crate::{Module, rule};

mod scenarios;

const SAM: &str = "sam@ticketed.example";
const KIM: &str = "kim@ticketed.example";

/// A paid account with a production and a sandbox environment, an owner
/// (`ada`), an admin (`ben`) and a plain user (`cy`).
fn acme() -> AccountBuilder {
    AccountBuilder::new("acme", "ticketed")
        .paid()
        .production("prod")
        .sandbox("staging")
        .user(user("ada", "owner"))
        .user(user("ben", "admin"))
        .user(user("cy", "member"))
}

fn evaluate(
    operation: Operation,
    actor: Actor,
    account: impl Into<Account>,
    now: Timestamp,
) -> Decision {
    Module::evaluate(&request(operation, actor, account, now))
}

fn request_access(params: &str) -> Operation {
    op::custom("request-access", params)
}

fn approve(agent: &str, ticket: &str) -> Operation {
    op::custom(
        "approve",
        &format!(r#"{{"agent":"{agent}","ticket":"{ticket}"}}"#),
    )
}

fn deny_request(agent: &str, ticket: &str) -> Operation {
    op::custom(
        "deny-request",
        &format!(r#"{{"agent":"{agent}","ticket":"{ticket}"}}"#),
    )
}

/// A pending request of `agent` for `ticket`: 4 hours of `read` on `prod`,
/// asked at `requested_at`.
fn pending(agent: &str, ticket: &str, requested_at: Timestamp) -> Pending {
    Pending {
        agent: agent.to_ascii_lowercase(),
        ticket: ticket.into(),
        environment: "prod".into(),
        level: Level::Read,
        hours: 4,
        requested_at,
    }
}

/// Adds a pending request to an account as its entry.
fn with_pending(account: AccountBuilder, request: &Pending) -> AccountBuilder {
    account.entry(&request.key(), &request.to_json())
}

/// An active grant for `agent` on `environment` with `level`, approved by
/// `ben` for `HD-1234`.
fn ticket_grant(id: &str, environment: &str, agent: &str, level: &str) -> Grant {
    grant(id, environment, "ben")
        .grantee(agent)
        .scope(&format!(r#"{{"level":"{level}"}}"#))
        .expires_at(at(1, 9))
        .metadata(r#"{"approved_by":"ben","ticket":"HD-1234"}"#)
        .into()
}

fn params(ticket: &str, environment: &str, scope: &str, hours: &str) -> String {
    format!(r#"{{"ticket":{ticket},"environment":{environment},"scope":{scope},"hours":{hours}}}"#)
}

fn read_4h() -> Operation {
    request_access(&params(
        r#""HD-1234""#,
        r#""prod""#,
        r#"{"level":"read"}"#,
        "4",
    ))
}

/// Applies an allowed decision's effects to an account, as the host would
/// (grants get ids `g-1`, `g-2`, ... and are created by `by`).
fn apply(account: &mut Account, decision: &Decision, by: &str, now: Timestamp) {
    assert_allowed(decision);
    for effect in &decision.effects {
        match effect {
            Effect::PutEntry(entry) => {
                account.entries.retain(|e| e.key != entry.key);
                account.entries.push(entry.clone());
            }
            Effect::DeleteEntry(key) => {
                let before = account.entries.len();
                account.entries.retain(|e| e.key != *key);
                assert_eq!(before - 1, account.entries.len(), "no entry `{key}`");
            }
            Effect::CreateGrant(new) => account.grants.push(Grant {
                id: format!("g-{}", account.grants.len() + 1),
                environment: new.environment.clone(),
                granted_by: by.into(),
                grantee: new.grantee.clone(),
                scope: new.scope.clone(),
                expires_at: new.expires_at,
                created_at: now,
                metadata: new.metadata.clone(),
            }),
            Effect::RevokeGrant(id) => account.grants.retain(|g| g.id != *id),
            other => unreachable!("the ticketed policy never asks for {other:?}"),
        }
    }
    account.entries.sort_by(|a, b| a.key.cmp(&b.key));
}

/// The entry a decision's first effect puts, if that is what it does.
fn put_entry(decision: &Decision) -> Option<&Entry> {
    match decision.effects.first() {
        Some(Effect::PutEntry(entry)) => Some(entry),
        _ => None,
    }
}

/// The grant a decision's first effect creates, if that is what it does.
fn new_grant(decision: &Decision) -> Option<&NewGrant> {
    match decision.effects.first() {
        Some(Effect::CreateGrant(new)) => Some(new),
        _ => None,
    }
}

#[test]
fn describe_names_vendor_operations_and_custom_operations() {
    let d = Module::describe();
    assert_eq!(d.vendor, "ticketed");
    assert_eq!(d.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        format!("{:?}", d.operations),
        format!(
            "{:?}",
            [
                OperationKind::Custom,
                OperationKind::Revoke,
                OperationKind::Act
            ]
        )
    );
    assert_eq!(
        d.custom_operations,
        ["request-access", "approve", "deny-request"]
    );
}

#[test]
fn lifecycle_request_approve_act_revoke() {
    let mut account = acme().build();
    let asked = evaluate(read_4h(), by_agent(SAM), account.clone(), at(0, 9));
    apply(&mut account, &asked, SAM, at(0, 9));
    assert_eq!(account.entries.len(), 1);

    let approved = evaluate(
        approve(SAM, "HD-1234"),
        by_user("ben"),
        account.clone(),
        at(0, 10),
    );
    apply(&mut account, &approved, "ben", at(0, 10));
    assert!(account.entries.is_empty());
    assert_eq!(account.grants.len(), 1);

    let read = op::act("ticket.read", Some("prod"), None);
    let allowed = evaluate(read.clone(), by_agent(SAM), account.clone(), at(0, 11));
    assert_allowed(&allowed);
    assert_eq!(allowed.rule, rule::LEVEL);
    assert!(allowed.message.contains("`HD-1234`"), "{}", allowed.message);
    let write = op::act("ticket.update", Some("prod"), None);
    assert_denied(
        &evaluate(write, by_agent(SAM), account.clone(), at(0, 11)),
        rule::LEVEL,
    );

    let revoked = evaluate(
        op::revoke("g-1"),
        by_user("ada"),
        account.clone(),
        at(0, 12),
    );
    apply(&mut account, &revoked, "ada", at(0, 12));
    assert_denied(
        &evaluate(read, by_agent(SAM), account, at(0, 13)),
        rule::NO_GRANT,
    );
}

#[test]
fn domain_accepts_staff_addresses_in_any_case() {
    let decision = evaluate(
        read_4h(),
        by_agent("Sam@TICKETED.Example"),
        acme(),
        at(0, 9),
    );
    assert_allowed(&decision);
    assert_eq!(
        put_entry(&decision).map(|e| e.key.as_str()),
        Some("request:sam@ticketed.example:HD-1234")
    );
}

#[test]
fn domain_refuses_lookalike_addresses() {
    let long = format!("{}@ticketed.example", "a".repeat(240));
    for address in [
        "sam@ticketed.example.evil.io",
        "sam@evilticketed.example",
        "sam@sub.ticketed.example",
        "sam@ticketed.exampl",
        "sam@ticketed.example.",
        "@ticketed.example",
        "sam@kim@ticketed.example",
        "sam.ticketed.example",
        long.as_str(),
    ] {
        assert_denied(
            &evaluate(read_4h(), by_agent(address), acme(), at(0, 9)),
            rule::DOMAIN,
        );
    }
}

#[test]
fn domain_refuses_customer_users() {
    assert_denied(
        &evaluate(read_4h(), by_user("ada"), acme(), at(0, 9)),
        rule::DOMAIN,
    );
}

#[test]
fn approver_owner_and_admin_may_approve() {
    for approver in ["ada", "ben"] {
        let account = with_pending(acme(), &pending(SAM, "HD-1234", at(0, 9)));
        let decision = evaluate(
            approve(SAM, "HD-1234"),
            by_user(approver),
            account,
            at(0, 10),
        );
        assert_allowed(&decision);
        assert_eq!(decision.rule, rule::APPROVE);
    }
}

#[test]
fn approver_refuses_other_roles_unknown_users_and_agents() {
    let account = with_pending(acme(), &pending(SAM, "HD-1234", at(0, 9)))
        .grant(ticket_grant("g-1", "prod", SAM, "read"));
    for actor in [by_user("cy"), by_user("zed"), by_agent(SAM), by_agent(KIM)] {
        for operation in [
            approve(SAM, "HD-1234"),
            deny_request(SAM, "HD-1234"),
            op::revoke("g-1"),
        ] {
            assert_denied(
                &evaluate(operation, actor.clone(), account.clone(), at(0, 10)),
                rule::APPROVER,
            );
        }
    }
}

#[test]
fn params_are_an_object_without_unknown_fields() {
    for text in [
        "[]",
        "not json",
        "null",
        r#""HD-1234""#,
        r#"{"ticket":"HD-1234","environment":"prod","scope":{"level":"read"},"hour":4}"#,
    ] {
        assert_denied(
            &evaluate(request_access(text), by_agent(SAM), acme(), at(0, 9)),
            rule::PARAMS,
        );
    }
}

#[test]
fn params_approve_and_deny_need_agent_and_ticket_strings() {
    let account = with_pending(acme(), &pending(SAM, "HD-1234", at(0, 9)));
    for name in ["approve", "deny-request"] {
        for text in [
            r#"{"ticket":"HD-1234"}"#,
            r#"{"agent":"sam@ticketed.example"}"#,
            r#"{"agent":"sam@ticketed.example","ticket":1234}"#,
            r#"{"agent":["sam@ticketed.example"],"ticket":"HD-1234"}"#,
            r#"{"agent":"sam@ticketed.example","ticket":"HD-1234","hours":2}"#,
        ] {
            assert_denied(
                &evaluate(
                    op::custom(name, text),
                    by_user("ben"),
                    account.clone(),
                    at(0, 10),
                ),
                rule::PARAMS,
            );
        }
    }
}

#[test]
fn ticket_is_required_and_well_formed() {
    let scope = r#"{"level":"read"}"#;
    for ticket in [
        r#""hd-1234""#,
        r#""HD-""#,
        r#""HD-0012""#,
        r#""HD-12a""#,
        r#""HD- 12""#,
        r#""1234""#,
        "1234",
        r#""HD-1234567890""#,
        "null",
    ] {
        let operation = request_access(&params(ticket, r#""prod""#, scope, "4"));
        assert_denied(
            &evaluate(operation, by_agent(SAM), acme(), at(0, 9)),
            rule::TICKET,
        );
    }
    let missing = request_access(r#"{"environment":"prod","scope":{"level":"read"},"hours":4}"#);
    assert_denied(
        &evaluate(missing, by_agent(SAM), acme(), at(0, 9)),
        rule::TICKET,
    );
    for ticket in [r#""HD-1""#, r#""HD-123456789""#] {
        let operation = request_access(&params(ticket, r#""prod""#, scope, "4"));
        assert_allowed(&evaluate(operation, by_agent(SAM), acme(), at(0, 9)));
    }
}

#[test]
fn env_request_names_an_environment_of_the_account() {
    let scope = r#"{"level":"read"}"#;
    for environment in [r#""qa""#, r#""PROD""#, "1", r#"["prod"]"#] {
        let operation = request_access(&params(r#""HD-1234""#, environment, scope, "4"));
        assert_denied(
            &evaluate(operation, by_agent(SAM), acme(), at(0, 9)),
            rule::ENV,
        );
    }
    let missing = request_access(r#"{"ticket":"HD-1234","scope":{"level":"read"},"hours":4}"#);
    assert_denied(
        &evaluate(missing, by_agent(SAM), acme(), at(0, 9)),
        rule::ENV,
    );
    let sandbox = request_access(&params(r#""HD-1234""#, r#""staging""#, scope, "4"));
    assert_allowed(&evaluate(sandbox, by_agent(SAM), acme(), at(0, 9)));
}

#[test]
fn env_approval_needs_the_environment_still_there() {
    let mut request = pending(SAM, "HD-1234", at(0, 9));
    request.environment = "legacy".into();
    let account = with_pending(acme(), &request);
    assert_denied(
        &evaluate(
            approve(SAM, "HD-1234"),
            by_user("ben"),
            account.clone(),
            at(0, 10),
        ),
        rule::ENV,
    );
    // It can still be turned down.
    assert_allowed(&evaluate(
        deny_request(SAM, "HD-1234"),
        by_user("ben"),
        account,
        at(0, 10),
    ));
}

#[test]
fn env_grant_covers_only_its_environment() {
    let account = acme().grant(ticket_grant("g-1", "prod", SAM, "write"));
    for environment in [Some("staging"), Some("qa"), None] {
        let action = op::act("ticket.update", environment, None);
        assert_denied(
            &evaluate(action, by_agent(SAM), account.clone(), at(0, 10)),
            rule::ENV,
        );
    }
    let action = op::act("ticket.update", Some("prod"), None);
    assert_allowed(&evaluate(action, by_agent(SAM), account, at(0, 10)));
}

#[test]
fn scope_is_read_or_write() {
    for scope in [
        r#"{"level":"admin"}"#,
        r#"{"level":"READ"}"#,
        r#"{"level":"read","integrations":{}}"#,
        r#"{}"#,
        r#""read""#,
        "null",
    ] {
        let operation = request_access(&params(r#""HD-1234""#, r#""prod""#, scope, "4"));
        assert_denied(
            &evaluate(operation, by_agent(SAM), acme(), at(0, 9)),
            rule::SCOPE,
        );
    }
    let missing = request_access(r#"{"ticket":"HD-1234","environment":"prod","hours":4}"#);
    assert_denied(
        &evaluate(missing, by_agent(SAM), acme(), at(0, 9)),
        rule::SCOPE,
    );
    let write = request_access(&params(
        r#""HD-1234""#,
        r#""prod""#,
        r#"{"level":"write"}"#,
        "4",
    ));
    assert_allowed(&evaluate(write, by_agent(SAM), acme(), at(0, 9)));
}

#[test]
fn hours_are_a_whole_number_from_1_to_72() {
    let scope = r#"{"level":"read"}"#;
    for hours in [
        "73",
        "0",
        "-1",
        "5.0",
        "5e0",
        r#""5""#,
        "null",
        "99999999999999999999",
    ] {
        let operation = request_access(&params(r#""HD-1234""#, r#""prod""#, scope, hours));
        assert_denied(
            &evaluate(operation, by_agent(SAM), acme(), at(0, 9)),
            rule::HOURS,
        );
    }
    let missing =
        request_access(r#"{"ticket":"HD-1234","environment":"prod","scope":{"level":"read"}}"#);
    assert_denied(
        &evaluate(missing, by_agent(SAM), acme(), at(0, 9)),
        rule::HOURS,
    );
    for hours in ["1", "72"] {
        let operation = request_access(&params(r#""HD-1234""#, r#""prod""#, scope, hours));
        assert_allowed(&evaluate(operation, by_agent(SAM), acme(), at(0, 9)));
    }
}

#[test]
fn hours_count_from_the_approval_and_are_checked_again() {
    let mut request = pending(SAM, "HD-1234", at(0, 9));
    request.hours = 72;
    let account = with_pending(acme(), &request);
    let decision = evaluate(approve(SAM, "HD-1234"), by_user("ben"), account, at(2, 9));
    assert_allowed(&decision);
    assert_eq!(
        new_grant(&decision).and_then(|g| g.expires_at),
        Some(at(2, 9) + 72 * HOUR)
    );

    // A stored request beyond today's cap (say, from an older module
    // version) is not approved.
    request.hours = 96;
    let account = with_pending(acme(), &request);
    assert_denied(
        &evaluate(approve(SAM, "HD-1234"), by_user("ben"), account, at(0, 10)),
        rule::HOURS,
    );
}

#[test]
fn pending_request_is_kept_as_an_entry() {
    let decision = evaluate(read_4h(), by_agent(SAM), acme(), at(0, 9));
    assert_allowed(&decision);
    assert_eq!(decision.rule, rule::PENDING);
    assert_effects(
        &decision,
        &[Effect::PutEntry(Entry {
            key: "request:sam@ticketed.example:HD-1234".into(),
            value: format!(
                r#"{{"agent":"sam@ticketed.example","environment":"prod","hours":4,"requested_at":{},"scope":{{"level":"read"}},"ticket":"HD-1234"}}"#,
                at(0, 9)
            ),
        })],
    );
}

#[test]
fn pending_one_request_per_agent_and_ticket() {
    let account = with_pending(acme(), &pending(SAM, "HD-1234", at(0, 9)));
    for agent in [SAM, "SAM@ticketed.example"] {
        assert_denied(
            &evaluate(read_4h(), by_agent(agent), account.clone(), at(0, 10)),
            rule::PENDING,
        );
    }
    // Another agent may ask for the same ticket.
    assert_allowed(&evaluate(read_4h(), by_agent(KIM), account, at(0, 10)));
}

#[test]
fn pending_at_most_three_per_agent() {
    let mut account = acme();
    for ticket in ["HD-1", "HD-2", "HD-3"] {
        account = with_pending(account, &pending(SAM, ticket, at(0, 9)));
    }
    assert_denied(
        &evaluate(read_4h(), by_agent(SAM), account.clone(), at(0, 10)),
        rule::PENDING,
    );
    // The limit is per agent.
    assert_allowed(&evaluate(read_4h(), by_agent(KIM), account, at(0, 10)));

    let mut account = acme();
    for ticket in ["HD-1", "HD-2"] {
        account = with_pending(account, &pending(SAM, ticket, at(0, 9)));
    }
    account = with_pending(account, &pending(KIM, "HD-3", at(0, 9)));
    assert_allowed(&evaluate(read_4h(), by_agent(SAM), account, at(0, 10)));
}

#[test]
fn pending_stale_requests_do_not_count_and_are_replaced() {
    let mut account = acme();
    for ticket in ["HD-1", "HD-2", "HD-1234"] {
        account = with_pending(account, &pending(SAM, ticket, at(0, 9)));
    }
    let decision = evaluate(read_4h(), by_agent(SAM), account, at(7, 9));
    assert_allowed(&decision);
    let entry = put_entry(&decision);
    assert_eq!(
        entry.map(|e| e.key.as_str()),
        Some("request:sam@ticketed.example:HD-1234")
    );
    assert_eq!(
        entry
            .and_then(|e| Pending::from_json(&e.value))
            .map(|p| p.requested_at),
        Some(at(7, 9))
    );
}

#[test]
fn approve_creates_a_grant_for_the_agent_and_removes_the_request() {
    let mut request = pending(SAM, "HD-1234", at(0, 9));
    request.level = Level::Write;
    request.environment = "staging".into();
    let account = with_pending(acme(), &request);
    // The agent's address is matched case-insensitively.
    let decision = evaluate(
        approve("Sam@Ticketed.Example", "HD-1234"),
        by_user("ada"),
        account,
        at(0, 10),
    );
    assert_allowed(&decision);
    assert_eq!(decision.rule, rule::APPROVE);
    assert_effects(
        &decision,
        &[
            Effect::CreateGrant(NewGrant {
                environment: "staging".into(),
                grantee: Some(SAM.into()),
                scope: r#"{"level":"write"}"#.into(),
                expires_at: Some(at(0, 14)),
                metadata: r#"{"approved_by":"ada","ticket":"HD-1234"}"#.into(),
            }),
            Effect::DeleteEntry("request:sam@ticketed.example:HD-1234".into()),
        ],
    );
}

#[test]
fn approve_needs_a_pending_request() {
    let account = with_pending(acme(), &pending(SAM, "HD-1234", at(0, 9)));
    for (agent, ticket) in [(KIM, "HD-1234"), (SAM, "HD-999"), (SAM, "hd-1234")] {
        assert_denied(
            &evaluate(
                approve(agent, ticket),
                by_user("ben"),
                account.clone(),
                at(0, 10),
            ),
            rule::APPROVE,
        );
    }
    // An entry under the right key that this module did not write.
    let forged = acme().entry("request:sam@ticketed.example:HD-1234", r#"{"hours":4}"#);
    assert_denied(
        &evaluate(approve(SAM, "HD-1234"), by_user("ben"), forged, at(0, 10)),
        rule::APPROVE,
    );
}

#[test]
fn approve_deny_request_removes_the_pending_request() {
    let account = with_pending(acme(), &pending(SAM, "HD-1234", at(0, 9)));
    let decision = evaluate(
        deny_request(SAM, "HD-1234"),
        by_user("ben"),
        account,
        at(0, 10),
    );
    assert_allowed(&decision);
    assert_eq!(decision.rule, rule::APPROVE);
    assert_effects(
        &decision,
        &[Effect::DeleteEntry(
            "request:sam@ticketed.example:HD-1234".into(),
        )],
    );
    assert_denied(
        &evaluate(
            deny_request(SAM, "HD-1234"),
            by_user("ben"),
            acme(),
            at(0, 10),
        ),
        rule::APPROVE,
    );
}

#[test]
fn stale_request_is_not_approved_but_can_be_denied() {
    let account = with_pending(acme(), &pending(SAM, "HD-1234", at(0, 9)));
    let just_in_time = at(7, 9) - 1;
    assert_allowed(&evaluate(
        approve(SAM, "HD-1234"),
        by_user("ben"),
        account.clone(),
        just_in_time,
    ));
    assert_denied(
        &evaluate(
            approve(SAM, "HD-1234"),
            by_user("ben"),
            account.clone(),
            at(7, 9),
        ),
        rule::STALE,
    );
    assert_allowed(&evaluate(
        deny_request(SAM, "HD-1234"),
        by_user("ben"),
        account,
        at(30, 9),
    ));
    assert_eq!(at(7, 9) - at(0, 9), 7 * DAY);
}

#[test]
fn revoke_by_an_admin_revokes_an_active_grant() {
    let account = acme().grant(ticket_grant("g-1", "prod", SAM, "read"));
    let decision = evaluate(op::revoke("g-1"), by_user("ben"), account, at(0, 10));
    assert_allowed(&decision);
    assert_eq!(decision.rule, rule::REVOKE);
    assert!(
        decision.message.contains("`HD-1234`"),
        "{}",
        decision.message
    );
    assert_effects(&decision, &[Effect::RevokeGrant("g-1".into())]);
}

#[test]
fn revoke_refuses_a_grant_that_is_not_active() {
    let account = acme().grant(ticket_grant("g-1", "prod", SAM, "read"));
    assert_denied(
        &evaluate(op::revoke("g-2"), by_user("ben"), account, at(0, 10)),
        rule::REVOKE,
    );
}

#[test]
fn perms_agents_never_change_users() {
    let account = acme().grant(ticket_grant("g-1", "prod", SAM, "write"));
    for name in ["users.update", "users.permissions.read", "users.delete"] {
        assert_denied(
            &evaluate(
                op::act(name, Some("prod"), None),
                by_agent(SAM),
                account.clone(),
                at(0, 10),
            ),
            rule::PERMS,
        );
    }
    // Checked first: even without a grant.
    assert_denied(
        &evaluate(
            op::act("users.update", Some("prod"), None),
            by_agent(KIM),
            account.clone(),
            at(0, 10),
        ),
        rule::PERMS,
    );
    for name in ["users.read", "usersx.update", "users"] {
        assert_allowed(&evaluate(
            op::act(name, Some("prod"), None),
            by_agent(SAM),
            account.clone(),
            at(0, 10),
        ));
    }
}

#[test]
fn no_grant_without_a_grant_of_ones_own() {
    let read = op::act("ticket.read", Some("prod"), None);
    assert_denied(
        &evaluate(read.clone(), by_agent(SAM), acme(), at(0, 10)),
        rule::NO_GRANT,
    );
    let others = acme()
        .grant(ticket_grant("g-1", "prod", KIM, "write"))
        .grant(grant("g-2", "prod", "ben").scope(r#"{"level":"write"}"#));
    assert_denied(
        &evaluate(read.clone(), by_agent(SAM), others.clone(), at(0, 10)),
        rule::NO_GRANT,
    );
    assert_denied(
        &evaluate(read, by_user("ben"), others, at(0, 10)),
        rule::NO_GRANT,
    );
}

#[test]
fn no_grant_grantee_is_compared_case_insensitively() {
    let account = acme().grant(ticket_grant("g-1", "prod", "Sam@Ticketed.Example", "read"));
    assert_allowed(&evaluate(
        op::act("ticket.read", Some("prod"), None),
        by_agent("SAM@TICKETED.EXAMPLE"),
        account,
        at(0, 10),
    ));
}

#[test]
fn level_read_allows_only_reads() {
    let account = acme().grant(ticket_grant("g-1", "prod", SAM, "read"));
    assert_allowed(&evaluate(
        op::act("ticket.read", Some("prod"), Some("mail")),
        by_agent(SAM),
        account.clone(),
        at(0, 10),
    ));
    for name in ["ticket.update", "ticket.reader", "read"] {
        assert_denied(
            &evaluate(
                op::act(name, Some("prod"), None),
                by_agent(SAM),
                account.clone(),
                at(0, 10),
            ),
            rule::LEVEL,
        );
    }
}

#[test]
fn level_write_allows_any_other_action_under_any_covering_grant() {
    let account = acme()
        .grant(ticket_grant("g-1", "prod", SAM, "read"))
        .grant(ticket_grant("g-2", "prod", SAM, "write"));
    let decision = evaluate(
        op::act("ticket.close", Some("prod"), None),
        by_agent(SAM),
        account,
        at(0, 10),
    );
    assert_allowed(&decision);
    assert!(decision.message.contains("`g-2`"), "{}", decision.message);
    assert!(decision.effects.is_empty());
}

#[test]
fn level_unreadable_scope_allows_nothing() {
    let account = acme().grant(
        grant("g-1", "prod", "ben")
            .grantee(SAM)
            .scope(r#"{"level":"admin"}"#),
    );
    assert_denied(
        &evaluate(
            op::act("ticket.read", Some("prod"), None),
            by_agent(SAM),
            account,
            at(0, 10),
        ),
        rule::LEVEL,
    );
}

#[test]
fn unsupported_operations_are_refused() {
    let grant_op = op::grant("prod", r#"{"level":"read"}"#, Some(r#"{"hours":4}"#));
    assert_denied(
        &evaluate(grant_op, by_user("ben"), acme(), at(0, 9)),
        rule::UNSUPPORTED,
    );
    assert_denied(
        &evaluate(op::custom("extend", "{}"), by_user("ben"), acme(), at(0, 9)),
        rule::UNSUPPORTED,
    );
}

#[test]
fn messages_quote_long_input_cut_short() {
    let address = format!("{}@evil.example", "x".repeat(10_000));
    let decision = evaluate(read_4h(), by_agent(&address), acme(), at(0, 9));
    assert_denied(&decision, rule::DOMAIN);
    assert!(decision.message.len() < 200, "{}", decision.message);
    assert_eq!(decision.message, decision.message.to_lowercase());
}
