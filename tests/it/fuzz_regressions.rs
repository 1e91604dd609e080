//! The fuzz targets' regression inputs, replayed in `cargo test`: every file
//! under `fuzz/regressions/<target>/` (each crashing or hanging input a
//! fuzzer found, and seeds worth keeping) goes through the target's own body
//! (`fuzz/src/lib.rs`, included here as it is), which panics exactly when
//! the target's property is broken. A target without inputs fails: the
//! replay must never pass by finding nothing (`docs/fuzzing.md`).

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod targets;

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions")
}

/// Replays every input of `target`; fails naming each input that broke
/// the property, and when there is none.
fn replay(target: &str) {
    let body = targets::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .unwrap_or_else(|| unreachable!("no fuzz target `{target}`"));
    let dir = regressions().join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| unreachable!("`{}`: {e}", dir.display()))
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| unreachable!("`{}`: {e}", dir.display()));
    inputs.retain(|path| path.is_file());
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "`{}` holds no input: every target keeps at least one",
        dir.display()
    );
    let mut broken = Vec::new();
    for path in &inputs {
        let data =
            std::fs::read(path).unwrap_or_else(|e| unreachable!("`{}`: {e}", path.display()));
        if let Err(payload) = std::panic::catch_unwind(|| body(&data)) {
            let why = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            broken.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(
        broken.is_empty(),
        "{} of {} inputs of `{target}` break its property:\n{}",
        broken.len(),
        inputs.len(),
        broken.join("\n")
    );
}

#[test]
fn every_regression_directory_names_a_target() {
    let dir = regressions();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| unreachable!("`{}`: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut known: Vec<String> = targets::TARGETS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    known.sort();
    assert_eq!(names, known, "fuzz/regressions/ has a directory per target");
}

#[test]
fn request_json() {
    replay("request_json");
}

#[test]
fn request_structured() {
    replay("request_structured");
}

#[test]
fn scenario() {
    replay("scenario");
}

#[test]
fn sdk_packed_request() {
    replay("sdk_packed_request");
}

#[test]
fn packed_decision() {
    replay("packed_decision");
}

#[test]
fn decision_structured() {
    replay("decision_structured");
}

#[test]
fn record() {
    replay("record");
}

#[test]
fn export() {
    replay("export");
}

#[test]
fn module() {
    replay("module");
}

/// Writes the seeds of `targets::seeds` to `fuzz/corpus/<target>/seed-*`
/// (`docs/fuzzing.md`).
#[test]
#[ignore = "writes fuzz/corpus: run it by name to refresh the seeds"]
fn write_seeds() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (target, name, bytes) in targets::seeds() {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| unreachable!("`{}`: {e}", dir.display()));
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, bytes).unwrap_or_else(|e| unreachable!("`{}`: {e}", path.display()));
    }
}
