//! Test-only: the one proptest configuration of the unit tests. Seeds of
//! past failures are kept next to the test's source file
//! (`<file>.proptest-regressions`), never in a `proptest-regressions/`
//! directory at the top of the repository (proptest's default). Owns no
//! test; must never be compiled outside `cfg(test)`.

use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases` cases, seeds of failures beside the source file.
pub(crate) fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}
