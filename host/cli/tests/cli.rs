//! The `chaperone` binary, driven as a user would: one test binary for
//! every subcommand, so it links once.

#[path = "cli/audit.rs"]
mod audit_cli;
#[path = "cli/policy.rs"]
mod policy_cli;
#[path = "cli/readme.rs"]
mod readme_cli;
#[path = "cli/serve.rs"]
mod serve_cli;
#[path = "cli/webhook.rs"]
mod webhook_cli;

mod conformance_cli {
    //! `chaperone conformance run`: output lines, the summary line, exit
    //! codes, `--json`, `--store`, `--policy`.
    #![expect(
        clippy::indexing_slicing,
        reason = "JSON values: a missing key indexes to null, which the assertion reports"
    )]

    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    use serde_json::{Value, json};

    fn chaperone(args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_chaperone"))
            .args(args)
            .output();
        assert!(output.is_ok(), "{output:?}");
        output.unwrap_or_else(|_| unreachable!())
    }

    fn stdout(output: &Output) -> String {
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn stderr(output: &Output) -> String {
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn scenario(name: &str, decision: &str) -> Value {
        json!({
            "name": name,
            "rules": ["CEL-WHO"],
            "start": "2026-01-01T09:00:00Z",
            "steps": [
                {"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
                 "environments": [{"id": "prod", "kind": "production"}]},
                {"op": "user", "account": "acme", "id": "ada", "email": "ada@acme.test", "role": "admin"},
                {"op": "grant", "account": "acme", "actor": "ada", "environment": "prod",
                 "scope": {"level": "admin"}, "expires_in": {"days": 5}, "as": "g1",
                 "expect": {"decision": decision}},
                {"op": "audit", "account": "acme", "expect": {"verify": "ok", "records": {"grant": 1}}}
            ]
        })
    }

    /// A temporary folder with scenario files in it.
    fn folder(files: &[(&str, Value)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir();
        assert!(dir.is_ok(), "{dir:?}");
        let dir = dir.unwrap_or_else(|_| unreachable!());
        for (name, value) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                assert!(std::fs::create_dir_all(parent).is_ok());
            }
            assert!(std::fs::write(&path, value.to_string()).is_ok());
        }
        dir
    }

    fn arg(path: &Path) -> &str {
        path.to_str().unwrap_or_default()
    }

    #[test]
    fn all_passing_exits_0_with_the_summary_last() {
        let dir = folder(&[
            ("b.json", scenario("second", "allow")),
            ("nested/a.json", scenario("first", "allow")),
            ("notes.txt", json!("not a scenario")),
        ]);
        let output = chaperone(&["conformance", "run", arg(dir.path())]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}{}",
            stdout(&output),
            stderr(&output)
        );
        let out = stdout(&output);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines, ["ok second", "ok first", "2 passed, 0 failed"]);
    }

    #[test]
    fn a_failing_scenario_exits_1_and_names_step_expected_and_got() {
        let dir = folder(&[
            ("a.json", scenario("fine", "allow")),
            ("b.json", scenario("wrong", "deny")),
        ]);
        let output = chaperone(&["conformance", "run", arg(dir.path())]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}{}",
            stdout(&output),
            stderr(&output)
        );
        let out = stdout(&output);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines.first(), Some(&"ok fine"));
        let failed = lines.get(1).copied().unwrap_or_default();
        assert!(failed.starts_with("FAILED wrong ("), "{failed}");
        assert!(failed.contains("b.json"), "{failed}");
        assert!(
            failed.contains(
                r#"step 2 (grant): expected {"decision":"deny"}, got {"decision":"allow""#
            ),
            "{failed}"
        );
        assert_eq!(lines.last(), Some(&"1 passed, 1 failed"));
    }

    #[test]
    fn a_broken_file_counts_as_failed_with_its_step_and_field() {
        let broken = json!({"name": "broken", "steps": [
            {"op": "account", "id": "acme", "policy": "celigo", "plan": "paid",
             "environments": [{"id": "prod", "kind": "production"}]},
            {"op": "user", "account": "acme", "id": "ada", "email": "ada@acme.test", "role": "admin"},
            {"op": "grant", "account": "acme", "actor": "ada", "scope": {"level": "admin"},
             "expires_in": {"days": 5}}
        ]});
        let dir = folder(&[("broken.json", broken)]);
        std::fs::write(dir.path().join("cut.json"), "{\"name\": ").unwrap_or_default();
        let output = chaperone(&["conformance", "run", arg(dir.path())]);
        assert_eq!(output.status.code(), Some(1));
        let out = stdout(&output);
        assert!(
            out.contains("step 2 (grant), field `environment`: is missing"),
            "{out}"
        );
        assert!(out.contains("cut.json: invalid JSON at line 1"), "{out}");
        assert!(out.ends_with("0 passed, 2 failed\n"), "{out}");
    }

    #[test]
    fn a_missing_path_or_bad_flag_exits_2() {
        let output = chaperone(&["conformance", "run", "/no/such/scenarios"]);
        assert_eq!(output.status.code(), Some(2));
        assert!(
            stderr(&output).contains("/no/such/scenarios"),
            "{}",
            stderr(&output)
        );

        let dir = folder(&[("a.json", scenario("fine", "allow"))]);
        let output = chaperone(&["conformance", "run", arg(dir.path()), "--policy", "celigo"]);
        assert_eq!(output.status.code(), Some(2));
        let output = chaperone(&[
            "conformance",
            "run",
            arg(dir.path()),
            "--policy",
            "celigo=/no/such.wasm",
        ]);
        assert_eq!(output.status.code(), Some(2));
        let output = chaperone(&["conformance", "run"]);
        assert_eq!(output.status.code(), Some(2));
    }

    #[test]
    fn json_prints_one_object_per_scenario_and_the_summary_on_stderr() {
        let dir = folder(&[
            ("a.json", scenario("fine", "allow")),
            ("b.json", scenario("wrong", "deny")),
        ]);
        let output = chaperone(&["conformance", "run", "--json", arg(dir.path())]);
        assert_eq!(output.status.code(), Some(1));
        let out = stdout(&output);
        let objects: Vec<Value> = out
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or(Value::Null))
            .collect();
        assert_eq!(objects.len(), 2, "{out}");
        assert_eq!(objects.first().map(|o| o["ok"].clone()), Some(json!(true)));
        let failed = objects.get(1).cloned().unwrap_or(Value::Null);
        assert_eq!(failed["name"], json!("wrong"));
        assert_eq!(failed["failure"]["step"], json!(2));
        assert_eq!(failed["failure"]["kind"], json!("mismatch"));
        assert_eq!(failed["failure"]["expected"], json!({"decision": "deny"}));
        assert_eq!(failed["failure"]["got"]["decision"], json!("allow"));
        assert!(
            stderr(&output).lines().any(|l| l == "1 passed, 1 failed"),
            "{}",
            stderr(&output)
        );
    }

    #[test]
    fn store_keeps_each_scenarios_store_by_file_stem() {
        let dir = folder(&[("first.json", scenario("fine", "allow"))]);
        let stores: PathBuf = dir.path().join("stores");
        let output = chaperone(&[
            "conformance",
            "run",
            arg(&dir.path().join("first.json")),
            "--store",
            arg(&stores),
        ]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}{}",
            stdout(&output),
            stderr(&output)
        );
        let db = stores.join("first.db");
        assert!(db.is_file());
        let verify = chaperone(&["audit", "verify", "--db", arg(&db)]);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "{}{}",
            stdout(&verify),
            stderr(&verify)
        );
    }
}
