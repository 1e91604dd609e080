//! The conformance runner through the library: the project's own scenarios
//! pass, every rule id is exercised by one, broken scenario files are
//! reported with their file, step and field, a wrong expectation fails, each
//! scenario gets a fresh store, and `--policy` swaps a vendor's module.
#![expect(
    clippy::indexing_slicing,
    reason = "JSON values: a missing key indexes to null, which the assertion reports"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chaperone::conformance::{Options, Problem, Report, Runner, find_scenarios, summary};
use serde_json::{Value, json};

/// `tests/` (this crate's directory).
fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn policy(vendor: &str, path: &str) -> (String, Vec<u8>) {
    let bytes = std::fs::read(path);
    assert!(bytes.is_ok(), "cannot read `{path}`: {bytes:?}");
    (vendor.to_string(), bytes.unwrap_or_default())
}

fn hostile() -> (String, Vec<u8>) {
    policy("hostile", chaperone_tests::HOSTILE_WASM)
}

fn run_all(paths: &[PathBuf], options: Options) -> Vec<Report> {
    let files = find_scenarios(paths);
    assert!(files.is_ok(), "{files:?}");
    let mut runner = Runner::new(options);
    files
        .unwrap_or_default()
        .iter()
        .map(|file| runner.run_file(file))
        .collect()
}

fn failures(reports: &[Report]) -> String {
    reports
        .iter()
        .filter(|r| !r.passed())
        .map(Report::line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs one scenario given as JSON.
fn run_json(name: &str, scenario: &Value) -> Report {
    Runner::new(Options::default()).run_text(Path::new(name), &scenario.to_string())
}

#[test]
fn the_projects_own_scenarios_all_pass() {
    let reports = run_all(&[tests_dir().join("scenarios")], Options::default());
    assert!(reports.len() >= 40, "only {} scenarios", reports.len());
    let failed = failures(&reports);
    assert!(failed.is_empty(), "{}\n{failed}", summary(&reports));
}

#[test]
fn a_module_that_fails_is_denied_and_audited_with_the_policy_override() {
    let dir = tests_dir().join("scenarios-hostile");
    let reports = run_all(
        std::slice::from_ref(&dir),
        Options {
            policies: vec![hostile()],
            ..Options::default()
        },
    );
    assert!(!reports.is_empty());
    let failed = failures(&reports);
    assert!(failed.is_empty(), "{failed}");

    // Without the override no module answers for `hostile`: each scenario
    // fails, and says why.
    let reports = run_all(&[dir], Options::default());
    assert!(reports.iter().all(|r| !r.passed()), "{reports:?}");
    for report in &reports {
        assert!(report.line().contains("hostile"), "{}", report.line());
    }
}

#[test]
fn the_public_scenarios_pass_when_present() {
    let public = tests_dir().join("../../shared/conformance");
    if !public.is_dir() {
        eprintln!(
            "no public scenarios at `{}`; nothing to run",
            public.display()
        );
        return;
    }
    let reports = run_all(&[public], Options::default());
    assert!(!reports.is_empty());
    let failed = failures(&reports);
    assert!(failed.is_empty(), "{}\n{failed}", summary(&reports));
}

/// Every rule id of RULES.md.
const RULE_IDS: &[&str] = &[
    "HOST-AUDIT",
    "HOST-FAIL-CLOSED",
    "HOST-EXPIRY",
    "HOST-ISOLATION",
    "HOST-REPLAY",
    "HOST-REVOKED",
    "HOST-UNSUPPORTED",
    "CEL-PLAN",
    "CEL-WHO",
    "CEL-SETTING",
    "CEL-LEVEL",
    "CEL-EXPIRY",
    "CEL-NONADMIN-SCOPE",
    "CEL-CURRENT-ACCESS",
    "CEL-ENV",
    "CEL-MULTIENV",
    "CEL-PERMS",
    "CEL-ACTION",
    "CEL-CHANGE",
    "CEL-NO-GRANT",
    "XEN-WHO",
    "XEN-SETTING",
    "XEN-DOMAIN",
    "XEN-ONE-ACCOUNT",
    "XEN-CONSENT",
    "XEN-INVITE",
    "XEN-DEFAULT-RIGHTS",
    "XEN-RIGHTS",
    "XEN-SEATS",
    "XEN-NO-EXPIRY",
    "XEN-REVOKE-CONSENT",
    "XEN-REMOVE",
    "XEN-MARK",
    "XEN-NO-ACCOUNT",
];

/// The rule ids a denial can name, and the id that names a HOST-FAIL-CLOSED
/// denial.
const DENIAL_IDS: &[&str] = &[
    "HOST-ISOLATION",
    "HOST-UNSUPPORTED",
    "HOST-POLICY-ERROR",
    "CEL-PLAN",
    "CEL-WHO",
    "CEL-SETTING",
    "CEL-LEVEL",
    "CEL-EXPIRY",
    "CEL-NONADMIN-SCOPE",
    "CEL-CURRENT-ACCESS",
    "CEL-ENV",
    "CEL-MULTIENV",
    "CEL-PERMS",
    "CEL-ACTION",
    "CEL-CHANGE",
    "CEL-NO-GRANT",
    "XEN-WHO",
    "XEN-SETTING",
    "XEN-DOMAIN",
    "XEN-ONE-ACCOUNT",
    "XEN-CONSENT",
    "XEN-RIGHTS",
    "XEN-NO-ACCOUNT",
];

#[test]
fn every_rule_id_is_named_by_a_scenario_and_every_denial_is_expected_by_one() {
    let files = find_scenarios(&[
        tests_dir().join("scenarios"),
        tests_dir().join("scenarios-hostile"),
    ]);
    assert!(files.is_ok(), "{files:?}");
    let mut named: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut expected_rules = BTreeSet::new();
    for file in files.unwrap_or_default() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let scenario: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        for rule in scenario["rules"].as_array().into_iter().flatten() {
            named
                .entry(rule.as_str().unwrap_or_default().to_string())
                .or_default()
                .push(file.display().to_string());
        }
        for step in scenario["steps"].as_array().into_iter().flatten() {
            if let Some(rule) = step["expect"]["rule"].as_str() {
                expected_rules.insert(rule.to_string());
            }
        }
    }
    let unnamed: Vec<&&str> = RULE_IDS
        .iter()
        .filter(|id| !named.contains_key(**id))
        .collect();
    assert!(unnamed.is_empty(), "no scenario names {unnamed:?}");
    let unknown: Vec<&String> = named
        .keys()
        .filter(|id| !RULE_IDS.contains(&id.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "scenarios name ids RULES.md does not have: {unknown:?}"
    );
    let unexpected: Vec<&&str> = DENIAL_IDS
        .iter()
        .filter(|id| !expected_rules.contains(**id))
        .collect();
    assert!(
        unexpected.is_empty(),
        "no scenario expects a denial naming {unexpected:?}"
    );
}

#[test]
fn broken_scenarios_are_reported_with_file_step_and_field() {
    // file stem → (step index, field) the report must name.
    let cases: BTreeMap<&str, (Option<usize>, Option<&str>)> = BTreeMap::from([
        ("account-changes-policy", (Some(2), Some("policy"))),
        ("action-name-wrong-type", (Some(2), Some("action.name"))),
        ("as-on-act", (Some(2), Some("as"))),
        ("audit-unknown-account", (Some(2), Some("account"))),
        ("expectation-typo", (Some(2), Some("expect.decison"))),
        ("invalid-json", (None, None)),
        ("missing-field", (Some(2), Some("environment"))),
        ("name-bound-twice", (Some(3), Some("as"))),
        ("name-never-bound", (Some(3), Some("grant"))),
        ("name-of-wrong-kind", (Some(3), Some("service_account"))),
        ("not-a-scenario", (None, Some("scenario"))),
        ("remove-unknown-user", (Some(2), Some("id"))),
        ("time-backwards", (Some(2), Some("at"))),
        ("undefined-name", (Some(3), Some("grant"))),
        ("unknown-op", (Some(2), Some("op"))),
        ("wrong-type", (Some(3), Some("environment"))),
    ]);
    let reports = run_all(&[tests_dir().join("scenarios-broken")], Options::default());
    let stems: BTreeSet<String> = reports
        .iter()
        .filter_map(|r| r.file.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let listed: BTreeSet<String> = cases.keys().map(|s| (*s).to_string()).collect();
    assert_eq!(stems, listed, "every broken file has a case here");
    assert!(summary(&reports).ends_with(&format!("0 passed, {} failed", cases.len())));

    for report in &reports {
        let stem = report
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((step, field)) = cases.get(stem.as_str()).copied() else {
            unreachable!("{stem} has no case")
        };
        let line = report.line();
        let Some(failure) = &report.failure else {
            unreachable!("{stem} passed: {line}")
        };
        assert!(line.starts_with("FAILED "), "{line}");
        assert!(
            line.contains(&report.file.display().to_string()),
            "the file is named: {line}"
        );
        assert_eq!(failure.step, step, "{line}");
        let Problem::Scenario {
            field: found,
            detail,
        } = &failure.problem
        else {
            unreachable!("{stem} is not reported as an error in the scenario: {line}")
        };
        assert_eq!(found.as_deref(), field, "{line}");
        assert!(!detail.is_empty());
        if let Some(step) = step {
            assert!(
                line.contains(&format!("step {step}")),
                "the step is named: {line}"
            );
        }
        if let Some(field) = field {
            assert!(
                line.contains(&format!("field `{field}`")),
                "the field is named: {line}"
            );
        }
        let json = report.to_json();
        assert_eq!(json["ok"], json!(false));
        assert_eq!(json["failure"]["kind"], json!("scenario"), "{json}");
        assert_eq!(json["failure"]["step"], json!(step), "{json}");
        assert_eq!(json["failure"]["field"], json!(field), "{json}");
    }
    let invalid = reports
        .iter()
        .find(|r| r.file.ends_with("invalid-json.json"))
        .map(Report::line);
    assert!(
        invalid
            .as_deref()
            .is_some_and(|l| l.contains("invalid JSON at line")),
        "{invalid:?}"
    );
}

fn celigo_steps() -> Vec<Value> {
    vec![
        json!({"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
               "environments": [{"id": "prod", "kind": "production"}]}),
        json!({"op": "user", "account": "acme", "id": "ada", "email": "ada@acme.test", "role": "admin"}),
        json!({"op": "integration", "account": "acme", "environment": "prod", "id": "sync"}),
    ]
}

fn scenario_with(extra: Vec<Value>) -> Value {
    let mut steps = celigo_steps();
    steps.extend(extra);
    json!({"name": "n", "start": "2026-01-01T09:00:00Z", "steps": steps})
}

#[test]
fn a_wrong_expectation_fails_naming_the_step_what_was_expected_and_what_came_back() {
    let grant = json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
                       "scope": {"level": "admin"}, "expires_in": {"days": 5}, "as": "g1"});
    let mut wrong_decision = grant.clone();
    wrong_decision["expect"] = json!({"decision": "deny", "rule": "CEL-WHO"});
    let mut wrong_expiry = grant.clone();
    wrong_expiry["expect"] = json!({"decision": "allow", "expires_at": "2026-01-07T09:00:00Z"});
    let act = json!({"op": "act", "account": "acme", "agent": "sam@celigo.com",
                     "action": {"name": "flow.read", "environment": "prod"},
                     "expect": {"decision": "allow", "rule": "CEL-NOPE"}});
    let audit =
        json!({"op": "audit", "account": "acme", "expect": {"records": {"sync": 3, "act": 2}}});

    let cases = [
        (
            vec![wrong_decision],
            3,
            json!({"decision": "deny", "rule": "CEL-WHO"}),
            json!("allow"),
        ),
        (
            vec![wrong_expiry],
            3,
            json!({"decision": "allow", "expires_at": "2026-01-07T09:00:00Z"}),
            json!("allow"),
        ),
        (
            vec![grant.clone(), act.clone()],
            4,
            json!({"decision": "allow", "rule": "CEL-NOPE"}),
            json!("allow"),
        ),
    ];
    for (steps, step, expected, got_decision) in cases {
        let report = run_json("wrong.json", &scenario_with(steps));
        let line = report.line();
        let Some(failure) = &report.failure else {
            unreachable!("passed: {line}")
        };
        assert_eq!(failure.step, Some(step), "{line}");
        let Problem::Mismatch {
            expected: found,
            got,
        } = &failure.problem
        else {
            unreachable!("not a mismatch: {line}")
        };
        assert_eq!(found, &expected, "{line}");
        assert_eq!(got["decision"], got_decision, "{line}");
        assert!(line.starts_with("FAILED n (wrong.json): step "), "{line}");
        assert!(
            line.contains("expected {") && line.contains(", got {"),
            "{line}"
        );
        assert_eq!(report.steps_passed, step);
    }

    let report = run_json("wrong.json", &scenario_with(vec![grant.clone(), audit]));
    let Some(failure) = &report.failure else {
        unreachable!("passed: {}", report.line())
    };
    let Problem::Mismatch { got, .. } = &failure.problem else {
        unreachable!("{}", report.line())
    };
    assert_eq!(
        got["records"],
        json!({"sync": 3, "act": 0}),
        "{}",
        report.line()
    );
    assert_eq!(got["verify"], json!("ok"));
    assert_eq!(failure.step, Some(4));

    // The same scenario with the right expectations passes.
    let mut right = grant;
    right["expect"] = json!({"decision": "allow", "expires_at": "2026-01-06T10:00:00+01:00"});
    let audit = json!({"op": "audit", "account": "acme",
                       "expect": {"verify": "ok", "records": {"sync": 3, "grant": 1, "act": 0}}});
    let report = run_json("right.json", &scenario_with(vec![right, audit]));
    assert!(report.passed(), "{}", report.line());
    assert_eq!(report.line(), "ok n");
}

#[test]
fn names_resolve_to_ids_across_accounts_and_only_allowed_steps_bind() {
    let mut steps = celigo_steps();
    steps.extend([
        json!({"op": "account", "id": "other", "policy": "celigo", "plan": "paid",
               "environments": [{"id": "prod", "kind": "production"}]}),
        json!({"op": "user", "account": "other", "id": "olu", "email": "olu@other.test", "role": "admin"}),
        // Denied: binds nothing, so the name can be bound again below.
        json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
               "scope": {"level": "admin"}, "as": "g", "expect": {"decision": "deny"}}),
        json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
               "scope": {"level": "admin"}, "expires_in": {"hours": 1}, "as": "g",
               "expect": {"decision": "allow"}}),
        json!({"op": "revoke", "account": "other", "actor": "olu", "grant": "g",
               "expect": {"decision": "deny", "rule": "HOST-ISOLATION"}}),
        json!({"op": "revoke", "account": "acme", "actor": "ada", "grant": "g",
               "expect": {"decision": "allow"}}),
        json!({"op": "audit", "expect": {"verify": "ok", "records": {"revoke": 2, "grant": 2}}}),
    ]);
    let report = run_json("names.json", &json!({"name": "names", "steps": steps}));
    assert!(report.passed(), "{}", report.line());
}

#[test]
fn each_scenario_runs_on_a_fresh_store_which_store_dir_keeps() {
    let dir = tempfile::tempdir();
    assert!(dir.is_ok(), "{dir:?}");
    let Ok(dir) = dir else { return };
    let scenario = scenario_with(vec![json!({"op": "audit", "account": "acme",
                                             "expect": {"verify": "ok", "records": {"sync": 3}}})]);
    let mut runner = Runner::new(Options {
        store_dir: Some(dir.path().join("stores")),
        ..Options::default()
    });
    for _ in 0..2 {
        let report = runner.run_text(Path::new("suite/acme.json"), &scenario.to_string());
        assert!(report.passed(), "{}", report.line());
    }
    let first = dir.path().join("stores/acme.db");
    let second = dir.path().join("stores/acme-2.db");
    assert!(first.is_file() && second.is_file());

    // A new runner starts over: the same store path, emptied first.
    let mut runner = Runner::new(Options {
        store_dir: Some(dir.path().join("stores")),
        ..Options::default()
    });
    let report = runner.run_text(Path::new("acme.json"), &scenario.to_string());
    assert!(report.passed(), "{}", report.line());
    assert_eq!(report.store.as_deref(), Some(first.as_path()));
}

#[test]
fn the_policy_option_makes_accounts_that_name_an_id_use_that_module() {
    let scenarios = tests_dir().join("../examples/ticketed/scenarios");
    let reports = run_all(
        std::slice::from_ref(&scenarios),
        Options {
            policies: vec![policy("ticketed", chaperone_tests::TICKETED_WASM)],
            ..Options::default()
        },
    );
    assert!(!reports.is_empty());
    let failed = failures(&reports);
    assert!(failed.is_empty(), "{failed}");

    let reports = run_all(&[scenarios], Options::default());
    assert!(
        reports.iter().all(|r| !r.passed()),
        "no `ticketed` module without the option"
    );

    // The override also replaces a built-in module: a celigo account run
    // by the hostile module answers as that module does.
    let scenario = scenario_with(vec![
        json!({"op": "act", "account": "acme", "agent": "sam@celigo.com",
               "action": {"name": "flow.read", "environment": "prod"},
               "expect": {"decision": "allow", "rule": "HOSTILE-OK"}}),
        json!({"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
               "scope": {"level": "admin"}, "expires_in": {"days": 1},
               "expect": {"decision": "deny", "rule": "HOST-UNSUPPORTED"}}),
    ]);
    let (_, bytes) = hostile();
    let mut runner = Runner::new(Options {
        policies: vec![("celigo".to_string(), bytes)],
        ..Options::default()
    });
    let report = runner.run_text(Path::new("override.json"), &scenario.to_string());
    assert!(report.passed(), "{}", report.line());
    let report = run_json("builtin.json", &scenario);
    assert!(
        !report.passed(),
        "the built-in celigo module denies without a grant"
    );
}
