//! docs/COMPLIANCE.md tells auditors which test proves each PSD2, PCI DSS and NIST row. This
//! keeps it honest: every row names at least one test, and every test it names exists —
//! a renamed or deleted scenario fails here instead of leaving a dangling claim.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, into: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(read(&path));
        }
    }
}

/// Whether a reference names something that exists: `file.rs::scenario` (a scenario of
/// `tests/api/file.rs`), `module::tests::name` (a unit test somewhere in `src/`), or a
/// browser spec `tests/e2e/…`.
fn resolves(reference: &str, sources: &[String]) -> bool {
    if reference.starts_with("tests/") {
        return Path::new(ROOT).join(reference).is_file();
    }
    let Some((left, name)) = reference.rsplit_once("::") else {
        return false;
    };
    let defines = |text: &str| text.contains(&format!("fn {name}("));
    match left.strip_suffix(".rs") {
        Some(file) => {
            let path = Path::new(ROOT).join("tests/api").join(format!("{file}.rs"));
            path.is_file() && defines(&read(&path))
        }
        None => sources.iter().any(|s| defines(s)),
    }
}

#[test]
fn every_compliance_row_names_tests_that_exist() {
    let map = read(&Path::new(ROOT).join("docs/COMPLIANCE.md"));
    let mut sources = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut sources);
    let mut rows = 0;
    let mut problems = Vec::new();
    for line in map.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        let last = cells.last().copied().unwrap_or_default().trim();
        // Table headers and separators.
        if last == "Test" || last == "Test here" || last.starts_with("---") {
            continue;
        }
        rows += 1;
        let references: Vec<&str> = last
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|r| r.contains("::") || r.starts_with("tests/"))
            .collect();
        if references.is_empty() {
            problems.push(format!("no test named: {line}"));
        }
        for reference in references {
            if !resolves(reference, &sources) {
                problems.push(format!("no such test: {reference}"));
            }
        }
    }
    assert!(
        rows >= 40,
        "only {rows} rows found: is the table format still `| … |`?"
    );
    assert!(
        problems.is_empty(),
        "docs/COMPLIANCE.md:\n{}",
        problems.join("\n")
    );
}
