//! The fuzz targets' seed corpora (`tests/fuzz/seeds/<target>/`) as ordinary
//! tests: every file goes through the same function its cargo-fuzz target
//! calls (`haechi_detector::fuzzing`), so CI runs them without cargo-fuzz or
//! nightly. A panic in any of them fails the test, naming the file.

use std::path::{Path, PathBuf};

use haechi_tests::repo_root;

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = repo_root().join("tests/fuzz/seeds").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Feed each file (and any `extra` inputs) to `entry`; report every file that panicked.
fn run(target: &str, entry: fn(&[u8]), extra: &[&Path]) {
    let mut files = seeds(target);
    assert!(files.len() >= 3, "{target}: expected a handful of seeds, found {}", files.len());
    files.extend(extra.iter().map(|p| p.to_path_buf()));
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: panicked on {failed:#?}");
}

#[test]
fn event_parse_corpus() {
    run("event_parse", haechi_detector::fuzzing::event_parse, &[]);
}

#[test]
fn rule_file_corpus() {
    // Also the rule pack as it is now, not only the copy in the corpus.
    run("rule_file", haechi_detector::fuzzing::rule_file, &[&repo_root().join("rules/default/ekyc.yaml")]);
}

#[test]
fn config_toml_corpus() {
    run("config_toml", haechi_detector::fuzzing::config_toml, &[]);
}

#[test]
fn model_file_corpus() {
    run("model_file", haechi_detector::fuzzing::model_file, &[]);
}

/// The seeds are real inputs: the valid ones are accepted, so the corpus
/// reaches past the first error path.
#[test]
fn the_valid_seeds_are_accepted() {
    let root = repo_root().join("tests/fuzz/seeds");
    for f in seeds("event_parse").iter().filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("valid-")) {
        let data = std::fs::read(f).unwrap();
        haechi_features::Event::parse(&data, 16 * 1024).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    let pack = std::fs::read_to_string(root.join("rule_file/default-ekyc.yaml")).unwrap();
    let catalog = haechi_features::FeatureCatalog::new(&haechi_features::FeatureConfig::default().validate().unwrap());
    haechi_rules::RuleSet::from_text("default-ekyc.yaml", &pack, &catalog).unwrap_or_else(|e| panic!("the seeded rule pack: {e}"));
    for f in ["readme-example.toml", "blocks-and-tokens.toml"] {
        haechi_detector::Config::parse(&std::fs::read_to_string(root.join("config_toml").join(f)).unwrap()).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    for (f, ok) in [("tiny-3-trees.json", true), ("tampered-threshold.json", false), ("future-version.json", false)] {
        let text = std::fs::read_to_string(root.join("model_file").join(f)).unwrap();
        assert_eq!(haechi_training::ModelFile::parse(&text).is_ok(), ok, "{f}");
    }
}
