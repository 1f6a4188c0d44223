//! Running the example calls that rule files carry.

use minsheng_core::{Call, Decision};
use minsheng_rules::{Example, ExpectedTownship, Location};

use crate::Classifier;

/// An example call that went somewhere it must not.
#[derive(Debug)]
pub struct Failure<'a> {
    /// The example.
    pub example: &'a Example,
    /// What went wrong, in words.
    pub problem: String,
    /// The decision, for its explanation.
    pub decision: Decision,
}

impl Failure<'_> {
    /// Where the example was written.
    pub fn location(&self) -> &Location {
        &self.example.location_in_file
    }
}

/// Runs every example of the classifier's rule set; returns the failures.
pub fn run(classifier: &Classifier) -> (usize, Vec<Failure<'_>>) {
    let rules = classifier.rules();
    let mut failures = Vec::new();
    for example in &rules.examples {
        let call = Call {
            id: None,
            hotline: example.hotline,
            text: example.text.clone(),
            location: example.location.clone(),
            township: None,
        };
        let decision = classifier.classify(&call);
        let mut problems = Vec::new();
        if let Some(expect) = example.expect {
            let want = &rules.destinations[expect].name;
            if &decision.destination != want {
                problems.push(format!("expected {want}, went to {}", decision.destination));
            }
        }
        for &n in &example.not {
            let unwanted = &rules.destinations[n].name;
            if &decision.destination == unwanted {
                problems.push(format!("must not go to {unwanted}"));
            }
        }
        match (&example.township, &decision.township) {
            (Some(ExpectedTownship::Code(want)), Some(got)) if &got.code != want => {
                problems.push(format!(
                    "expected township {want}, resolved {} ({})",
                    got.code, got.name
                ));
            }
            (Some(ExpectedTownship::Code(want)), None) => {
                problems.push(format!("expected township {want}, resolved none"));
            }
            (Some(ExpectedTownship::Unassigned), Some(got)) => {
                problems.push(format!(
                    "expected no township, resolved {} ({})",
                    got.code, got.name
                ));
            }
            _ => {}
        }
        if !problems.is_empty() {
            failures.push(Failure {
                example,
                problem: problems.join("; "),
                decision,
            });
        }
    }
    (rules.examples.len(), failures)
}
