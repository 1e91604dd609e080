//! Sample requests and the probes `chaperone policy check` runs on a module.

use serde::Serialize;

use crate::{EntryPoint, EvalError, Limits, LoadError, Runtime, RuntimeError};
use chaperone_model::{
    AccessEntry, Account, Action, Actor, CustomRequest, Decision, Entry, Environment,
    EnvironmentKind, Grant, GrantRequest, Invitation, ModifyRequest, Operation, OperationKind,
    Origin, Plan, Request, ServiceAccount, SetRightsRequest, Setting, User,
};

/// 2026-01-01T09:00:00Z.
pub const SAMPLE_NOW: i64 = 1_767_258_000_000;
const DAY: i64 = 86_400_000;

/// A realistic, mid-sized account: two environments, eight integrations,
/// six users, two grants, a service account, an invitation, settings.
pub fn sample_account(policy: &str) -> Account {
    let integrations = |prefix: &str| -> Vec<String> {
        [
            "amazon-orders",
            "hubspot-leads",
            "netsuite-invoices",
            "shopify-sync",
        ]
        .iter()
        .map(|i| format!("{prefix}{i}"))
        .collect()
    };
    let user = |id: &str, role: &str, access: &[(&str, &str)], rights: &[&str]| User {
        id: id.into(),
        email: format!("{id}@acme.test"),
        role: role.into(),
        access: access
            .iter()
            .map(|(integration, level)| AccessEntry {
                integration: (*integration).into(),
                level: (*level).into(),
            })
            .collect(),
        rights: rights.iter().map(|r| (*r).into()).collect(),
    };
    Account {
        id: "acme".into(),
        policy: policy.into(),
        plan: Plan::Paid,
        environments: vec![
            Environment {
                id: "prod".into(),
                kind: EnvironmentKind::Production,
                integrations: integrations(""),
            },
            Environment {
                id: "sandbox".into(),
                kind: EnvironmentKind::Sandbox,
                integrations: integrations("sbx-"),
            },
        ],
        settings: vec![
            Setting {
                key: "allow_non_admin_grants".into(),
                value: "true".into(),
            },
            Setting {
                key: "employee_access_consent".into(),
                value: "true".into(),
            },
        ],
        seat_limit: Some(10),
        users: vec![
            user("ada", "owner", &[], &["users.manage"]),
            user("ben", "admin", &[], &["users.manage", "orders.read"]),
            user(
                "cy",
                "manage",
                &[("shopify-sync", "manage"), ("hubspot-leads", "monitor")],
                &[],
            ),
            user(
                "dee",
                "monitor",
                &[("amazon-orders", "monitor")],
                &["orders.read"],
            ),
            user(
                "eve",
                "custom",
                &[("netsuite-invoices", "manage")],
                &["orders.read"],
            ),
            user("fay", "user", &[], &["orders.read", "invoices.read"]),
        ],
        grants: vec![
            Grant {
                id: "g-1".into(),
                environment: "prod".into(),
                granted_by: "ben".into(),
                grantee: None,
                scope: r#"{"level":"admin"}"#.into(),
                expires_at: Some(SAMPLE_NOW + 5 * DAY),
                created_at: SAMPLE_NOW - DAY,
                metadata: "null".into(),
            },
            Grant {
                id: "g-2".into(),
                environment: "prod".into(),
                granted_by: "cy".into(),
                grantee: None,
                scope: r#"{"integrations":{"shopify-sync":"manage"}}"#.into(),
                expires_at: Some(SAMPLE_NOW + 2 * DAY),
                created_at: SAMPLE_NOW - DAY,
                metadata: "null".into(),
            },
        ],
        service_accounts: vec![ServiceAccount {
            id: "sa-1".into(),
            agent_email: "jonas.weber@xentral.com".into(),
            rights: vec!["*".into()],
            origin: Origin::Consent,
            description: "Xentral Service account".into(),
            created_by: Actor::Agent("jonas.weber@xentral.com".into()),
            created_at: SAMPLE_NOW - DAY,
        }],
        invitations: vec![Invitation {
            id: "inv-1".into(),
            email: "mira.koch@xentral.com".into(),
            invited_by: Actor::User("ben".into()),
            created_at: SAMPLE_NOW - DAY,
        }],
        entries: vec![Entry {
            key: "note".into(),
            value: r#"{"ticket":"T-1"}"#.into(),
        }],
    }
}

/// A sample request for an operation kind, against [`sample_account`].
pub fn sample_request(policy: &str, kind: OperationKind, custom: Option<&str>) -> Request {
    let admin = || Actor::User("ben".into());
    let (operation, actor) = match kind {
        OperationKind::SetSetting => (
            Operation::SetSetting(Setting {
                key: "allow_non_admin_grants".into(),
                value: "false".into(),
            }),
            admin(),
        ),
        OperationKind::Grant => (
            Operation::Grant(GrantRequest {
                environment: "prod".into(),
                scope: r#"{"integrations":{"shopify-sync":"monitor","hubspot-leads":"manage"}}"#
                    .into(),
                expires_in: Some(r#"{"days":5}"#.into()),
            }),
            admin(),
        ),
        OperationKind::Modify => (
            Operation::Modify(ModifyRequest {
                grant: "g-2".into(),
                scope: None,
                expires_in: Some(r#"{"hours":12}"#.into()),
            }),
            admin(),
        ),
        OperationKind::Revoke => (Operation::Revoke("g-1".into()), admin()),
        OperationKind::Invite => (Operation::Invite("ann.schulz@xentral.com".into()), admin()),
        OperationKind::CreateServiceAccount => (
            Operation::CreateServiceAccount,
            Actor::Agent("mira.koch@xentral.com".into()),
        ),
        OperationKind::SetRights => (
            Operation::SetRights(SetRightsRequest {
                service_account: "sa-1".into(),
                rights: r#"["orders.*","invoices.read"]"#.into(),
            }),
            admin(),
        ),
        OperationKind::RemoveServiceAccount => {
            (Operation::RemoveServiceAccount("sa-1".into()), admin())
        }
        OperationKind::Act => (
            Operation::Act(Action {
                name: "flow.run".into(),
                environment: Some("prod".into()),
                integration: Some("shopify-sync".into()),
            }),
            Actor::Agent("sam.reyes@celigo.com".into()),
        ),
        OperationKind::Custom => (
            Operation::Custom(CustomRequest {
                name: custom.unwrap_or("custom").into(),
                params: r#"{"ticket":"T-1"}"#.into(),
            }),
            admin(),
        ),
    };
    Request {
        operation,
        actor,
        account: sample_account(policy),
        now: SAMPLE_NOW,
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// What was probed.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
    /// Fuel used, where an evaluation ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
}

/// Everything `policy check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The module's digest, when its bytes could be read.
    pub digest: String,
    /// The probes, in the order they ran.
    pub probes: Vec<Probe>,
}

impl CheckReport {
    /// Whether every probe passed.
    pub fn passed(&self) -> bool {
        self.probes.iter().all(|p| p.ok)
    }
}

/// How many times each operation is evaluated: every run must give the
/// same decision with the same fuel.
pub const RUNS: usize = 5;

/// Runs the probes: load (no imports, exports match, description valid),
/// each listed operation on a sample input [`RUNS`] times (the same output
/// and fuel each time: determinism), whether the decision's audit record
/// would fit (`record`, given by the host, which knows the record's
/// format: `None` when it fits, else why not), the same through `evaluate`
/// when the module also exports `evaluate-packed` (both entries must
/// agree), and a fuel-exhaustion probe (the module is stopped cleanly when
/// its fuel runs out).
pub fn check(
    bytes: &[u8],
    limits: &Limits,
    record: &dyn Fn(&Request, &Decision) -> Option<String>,
) -> Result<CheckReport, RuntimeError> {
    let runtime = Runtime::new(limits.clone())?;
    let mut report = CheckReport {
        digest: crate::ModuleDigest::of(bytes).to_hex(),
        probes: Vec::new(),
    };
    let mut push = |name: &str, ok: bool, detail: String, fuel_used: Option<u64>| {
        report.probes.push(Probe {
            name: name.into(),
            ok,
            detail,
            fuel_used,
        });
    };
    let module = match runtime.load(bytes) {
        Ok(module) => {
            push("imports", true, "imports nothing".into(), None);
            push(
                "exports",
                true,
                format!("exports {}", module.exports().join(", ")),
                None,
            );
            let d = module.description();
            push(
                "describe",
                true,
                format!(
                    "vendor `{}` version `{}`, {} operation{}",
                    d.vendor,
                    d.version,
                    d.operations.len(),
                    if d.operations.len() == 1 { "" } else { "s" }
                ),
                None,
            );
            module
        }
        Err(error) => {
            let name = match &error {
                LoadError::Imports(_) => "imports",
                LoadError::MissingExport(_) | LoadError::Interface(_) => "exports",
                LoadError::Describe(_) | LoadError::BadDescription(_) => "describe",
                _ => "load",
            };
            push(name, false, error.to_string(), None);
            return Ok(report);
        }
    };
    let description = module.description().clone();
    let mut least_fuel: Option<u64> = None;
    for kind in &description.operations {
        let customs: Vec<Option<&str>> = if *kind == OperationKind::Custom {
            description
                .custom_operations
                .iter()
                .map(|c| Some(c.as_str()))
                .collect()
        } else {
            vec![None]
        };
        for custom in customs {
            let request = sample_request(&description.vendor, *kind, custom);
            let name = format!("evaluate {}", operation_name(*kind, custom));
            let mut runs = (0..RUNS).map(|_| runtime.evaluate(&module, &request));
            let first = runs
                .next()
                .unwrap_or_else(|| runtime.evaluate(&module, &request));
            match first {
                Ok(a) => {
                    let same = runs.all(|b| {
                        b.is_ok_and(|b| b.decision == a.decision && b.fuel_used == a.fuel_used)
                    });
                    least_fuel = Some(least_fuel.map_or(a.fuel_used, |f| f.min(a.fuel_used)));
                    let detail = if same {
                        format!(
                            "{} `{}` {RUNS} times, identically",
                            chaperone_model::Verdict::name(a.decision.verdict),
                            a.decision.rule
                        )
                    } else {
                        "the same input gave different outputs: the module is not deterministic"
                            .into()
                    };
                    push(&name, same, detail, Some(a.fuel_used));
                    let (ok, detail) = match record(&request, &a.decision) {
                        None => (true, "its audit record fits".to_owned()),
                        Some(why) => (false, why),
                    };
                    push(
                        &format!("record {}", operation_name(*kind, custom)),
                        ok,
                        detail,
                        None,
                    );
                    if module.packed() {
                        let typed = runtime.evaluate_with(&module, &request, EntryPoint::Typed);
                        let (ok, detail) = match typed {
                            Ok(t) if t.decision == a.decision => (
                                true,
                                "`evaluate-packed` and `evaluate` decide identically".to_owned(),
                            ),
                            Ok(t) => (
                                false,
                                format!(
                                    "`evaluate-packed` decided {} `{}` but `evaluate` {} `{}`",
                                    chaperone_model::Verdict::name(a.decision.verdict),
                                    a.decision.rule,
                                    chaperone_model::Verdict::name(t.decision.verdict),
                                    t.decision.rule
                                ),
                            ),
                            Err(e) => (false, format!("`evaluate` failed: {e}")),
                        };
                        push(
                            &format!("packed {}", operation_name(*kind, custom)),
                            ok,
                            detail,
                            None,
                        );
                    }
                }
                Err(e) => push(&name, false, e.to_string(), None),
            }
        }
    }
    if let (Some(fuel), Some(kind)) = (least_fuel, description.operations.first()) {
        let starved = Limits {
            fuel: (fuel / 2).max(1),
            ..limits.clone()
        };
        let probe_runtime = Runtime::new(starved.clone())?;
        let request = sample_request(&description.vendor, *kind, None);
        let outcome = probe_runtime
            .load(bytes)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                probe_runtime
                    .evaluate(&m, &request)
                    .map_err(|e| e.to_string())
            });
        let (ok, detail) = match outcome {
            Err(detail) if detail == EvalError::FuelExhausted(starved.fuel).to_string() => {
                (true, format!("stopped cleanly with {} fuel", starved.fuel))
            }
            Err(detail) => (false, format!("expected fuel exhaustion, got: {detail}")),
            Ok(_) => (
                false,
                format!("still ran to completion with {} fuel", starved.fuel),
            ),
        };
        push("fuel exhaustion", ok, detail, None);
    }
    Ok(report)
}

/// The operation's name as the scenarios, the API and audit records spell
/// it: its kind's name, or `custom.<name>`.
pub fn operation_name(kind: OperationKind, custom: Option<&str>) -> String {
    match kind {
        OperationKind::Custom => format!(
            "{}{}",
            chaperone_model::CUSTOM_KIND_PREFIX,
            custom.unwrap_or("?")
        ),
        other => other.name().to_owned(),
    }
}
