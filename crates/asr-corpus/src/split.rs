//! Split names (`train-clean-100`, `dev`, `cv-valid-test`, ...) mapped to their role.

use serde::{Deserialize, Serialize};

/// What a split is for. Leakage and speaker-overlap checks compare roles, not names, so
/// `train-clean-100` and `train-other-500` are both training data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitRole {
    /// Training data.
    Train,
    /// Development / validation data.
    Dev,
    /// Test data.
    Test,
}

impl SplitRole {
    /// The role of a split name: the last `train`, `dev` or `test` token of the name
    /// (tokens split on `-`, `_`, `.` and spaces, any case) wins, so `cv-valid-train` is
    /// training data although it contains "valid"; without such a token `valid`,
    /// `validation` and `val` mean dev and `eval` means test. `None` for other names.
    pub fn of(split: &str) -> Option<SplitRole> {
        let lower = split.to_ascii_lowercase();
        let tokens: Vec<&str> = lower
            .split(['-', '_', '.', ' '])
            .filter(|t| !t.is_empty())
            .collect();
        let exact = tokens.iter().rev().find_map(|t| match *t {
            "train" | "training" => Some(SplitRole::Train),
            "dev" => Some(SplitRole::Dev),
            "test" => Some(SplitRole::Test),
            _ => None,
        });
        exact.or_else(|| {
            tokens.iter().rev().find_map(|t| match *t {
                "valid" | "validation" | "val" => Some(SplitRole::Dev),
                "eval" => Some(SplitRole::Test),
                _ => None,
            })
        })
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitRole::Train => "train",
            SplitRole::Dev => "dev",
            SplitRole::Test => "test",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SplitRole::{self, *};

    #[test]
    fn roles_of_common_split_names() {
        for (name, role) in [
            ("train-clean-100", Some(Train)),
            ("train-other-500", Some(Train)),
            ("dev-clean", Some(Dev)),
            ("test-other", Some(Test)),
            ("cv-valid-train", Some(Train)),
            ("cv-valid-dev", Some(Dev)),
            ("cv-valid-test", Some(Test)),
            ("validation", Some(Dev)),
            ("TEST", Some(Test)),
            ("validated", None),
            ("other", None),
            ("", None),
        ] {
            assert_eq!(SplitRole::of(name), role, "{name}");
        }
    }
}
