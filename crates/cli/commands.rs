//! The subcommands: load rules, call the classifier, print.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use minsheng_classify::Classifier;
use minsheng_classify::eval::{Evaluation, read_corpus};
use minsheng_core::{Call, Hotline, MAX_TEXT_BYTES, check_text};
use minsheng_rules::{Diagnostic, Severity, SourceFile};

use crate::embedded;
use crate::render;

/// The files of a rule directory, or of the built-in set when `dir` is
/// `None`.
pub fn rule_files(dir: Option<&Path>) -> anyhow::Result<Vec<Arc<SourceFile>>> {
    match dir {
        Some(dir) => Ok(minsheng_rules::read_dir(dir)?),
        None => embedded::FILES
            .iter()
            .map(|(name, bytes)| {
                minsheng_rules::from_bytes(&format!("rules/{name}"), bytes.to_vec())
                    .map_err(anyhow::Error::from)
            })
            .collect(),
    }
}

/// The directory `rules check`/`rules test` use when none is given:
/// `./rules` when it exists, else the built-in set.
fn default_dir(dir: Option<&Path>) -> Option<PathBuf> {
    dir.map(Path::to_path_buf)
        .or_else(|| Path::new("rules").is_dir().then(|| PathBuf::from("rules")))
}

/// Compiles the rules and builds the classifier; on any error prints every
/// diagnostic and fails.
pub fn load(dir: Option<&Path>) -> anyhow::Result<Classifier> {
    let checked = minsheng_rules::compile(rule_files(dir)?);
    let Some(rule_set) = checked.rule_set else {
        print_diagnostics(&checked.diagnostics);
        bail!("the rule set has errors; `minsheng rules check` lists them");
    };
    Classifier::new(rule_set).map_err(|e| {
        print_diagnostics(&e.diagnostics);
        anyhow::anyhow!("the rule set has errors; `minsheng rules check` lists them")
    })
}

fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{}", d.render());
    }
}

pub fn classify_one(
    dir: Option<&Path>,
    text: String,
    hotline: Hotline,
    location: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Err(problem) = check_text(&text, MAX_TEXT_BYTES) {
        bail!("the call's text: {problem}");
    }
    let classifier = load(dir)?;
    let call = Call {
        id: None,
        hotline,
        text,
        location,
        township: None,
    };
    let decision = classifier.classify(&call);
    if json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        print!("{}", render::decision(&decision, classifier.rules()));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn classify_file(dir: Option<&Path>, path: &Path, skip_bad: bool) -> anyhow::Result<ExitCode> {
    let classifier = load(dir)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.display().to_string();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut bad = 0;
    for (line, parsed) in read_corpus(&shown, &text) {
        match parsed {
            Ok(c) => {
                serde_json::to_writer(&mut out, &classifier.classify(&c.call()))?;
            }
            Err(e) => {
                // Keep the output aligned with the input: one line per call.
                bad += 1;
                eprintln!("error: {e}");
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({ "line": line, "error": e.to_string() }),
                )?;
            }
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    if bad > 0 && skip_bad {
        eprintln!(
            "warning: {bad} line(s) of {shown} could not be read; each has an error object in the output (--skip-bad)"
        );
    } else if bad > 0 {
        eprintln!(
            "error: {bad} line(s) of {shown} could not be read; each has an error object in the output (--skip-bad to accept that)"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rules_check(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let dir = default_dir(dir);
    let files = match rule_files(dir.as_deref()) {
        Ok(files) => files,
        // A file that is not text is a problem in the rules, like any
        // other: named with its place, exit 1.
        Err(e) => match e.downcast_ref::<minsheng_rules::LoadError>() {
            Some(not_text @ minsheng_rules::LoadError::NotUtf8 { .. }) => {
                eprintln!("error: {not_text}");
                return Ok(ExitCode::FAILURE);
            }
            _ => return Err(e),
        },
    };
    let dictionaries: Vec<_> = files
        .iter()
        .filter(|f| minsheng_rules::is_dictionary(f))
        .cloned()
        .collect();
    let checked = minsheng_rules::compile(files);
    let mut diags = checked.diagnostics.clone();
    let mut rule_count = None;
    if let Some(rule_set) = checked.rule_set {
        rule_count = Some((
            rule_set.rules.len(),
            rule_set.lists.len(),
            rule_set.examples.len(),
        ));
        match Classifier::new(rule_set) {
            Ok(classifier) => diags.extend(classifier.lint()),
            Err(e) => diags.extend(e.diagnostics),
        }
    } else if let Err(errors) = minsheng_classify::Segmenter::new(&dictionaries, &[]) {
        // The rules did not compile, but dictionary problems are still worth
        // reporting in the same run.
        diags.extend(errors);
    }
    print_diagnostics(&diags);
    let errors = diags
        .iter()
        .filter(|d| d.severity() == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    let shown = dir.map_or_else(
        || "the built-in rule set".to_owned(),
        |d| d.display().to_string(),
    );
    match (errors, rule_count) {
        (0, Some((rules, lists, examples))) => {
            println!(
                "{shown}: {rules} rules, {lists} lists, {examples} examples: ok, {warnings} warning(s)"
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            println!("{shown}: {errors} error(s), {warnings} warning(s)");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub fn rules_test(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let dir = default_dir(dir);
    let classifier = load(dir.as_deref())?;
    let (total, failures) = minsheng_classify::examples::run(&classifier);
    for f in &failures {
        println!("FAIL {}: {}", f.location(), f.problem);
        println!("     {}", f.example.text);
        print!("{}", render::indent(&render::why(&f.decision), 5));
    }
    println!(
        "{} passed, {} failed",
        total - failures.len(),
        failures.len()
    );
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn eval(
    dir: Option<&Path>,
    corpus: &Path,
    json: bool,
    misses: bool,
    skip_bad: bool,
) -> anyhow::Result<ExitCode> {
    let classifier = load(dir)?;
    let text = std::fs::read_to_string(corpus)
        .with_context(|| format!("cannot read {}", corpus.display()))?;
    let rules = classifier.rules();
    let shown = corpus.display().to_string();
    let mut calls = Vec::new();
    let mut bad = Vec::new();
    for (line, parsed) in read_corpus(&shown, &text) {
        let c = match parsed {
            Ok(c) => c,
            Err(e) => {
                bad.push(e.to_string());
                continue;
            }
        };
        let Some(expected) = c.expected.clone() else {
            bad.push(format!(
                "{shown}:{line}: call {} has no `expected`: eval needs labelled calls",
                c.id.as_deref().unwrap_or("?")
            ));
            continue;
        };
        if rules.destination_index(&expected.destination).is_none() {
            bad.push(format!(
                "{shown}:{line}: call {} expects unknown destination `{}`",
                c.id.as_deref().unwrap_or("?"),
                expected.destination
            ));
            continue;
        }
        calls.push((c.call(), expected));
    }
    // Every bad line is named, not only the first.
    let level = if skip_bad { "warning" } else { "error" };
    for e in &bad {
        eprintln!("{level}: {e}");
    }
    if !bad.is_empty() && !skip_bad {
        bail!(
            "{} line(s) of {shown} cannot be measured; fix them, or pass --skip-bad to measure the other {}",
            bad.len(),
            calls.len()
        );
    }
    if calls.is_empty() {
        bail!("{shown} holds no labelled call to measure");
    }
    let started = Instant::now();
    let decisions: Vec<_> = calls.iter().map(|(c, _)| classifier.classify(c)).collect();
    let seconds = started.elapsed().as_secs_f64();
    let names = rules.destinations.iter().map(|d| d.name.clone()).collect();
    let per_township = rules
        .destinations
        .iter()
        .find(|d| d.per_township)
        .map(|d| d.name.clone());
    let mut evaluation = Evaluation::new(names, per_township);
    // A miss: the wrong destination, or the wrong township where the
    // expected one is known.
    let mut wrong = Vec::new();
    for ((call, expected), decision) in calls.iter().zip(&decisions) {
        let right = evaluation.record(expected, decision);
        let got_township = decision.township.as_ref().map(|t| &t.code);
        let township_wrong = expected
            .township
            .as_ref()
            .is_some_and(|want| got_township != Some(want));
        if !right || township_wrong {
            wrong.push((call, expected, decision, township_wrong));
        }
    }
    let mut report = evaluation.report(seconds);
    report.skipped = bad.len();
    if json {
        // One object: with --misses, the misses are a key of it.
        let mut value = serde_json::to_value(&report)?;
        if misses {
            let list: Vec<_> = wrong
                .iter()
                .map(|(call, expected, decision, _)| {
                    serde_json::json!({
                        "id": call.id,
                        "hotline": call.hotline,
                        "text": call.text,
                        "location": call.location,
                        "expected": {
                            "destination": expected.destination,
                            "township": expected.township,
                        },
                        "decision": decision,
                    })
                })
                .collect();
            value["misses"] = serde_json::Value::Array(list);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render::report(&report, rules));
    if misses {
        println!("\nmisses ({}):", wrong.len());
        for (call, expected, decision, township_wrong) in wrong {
            let township = match (&expected.township, township_wrong) {
                (Some(want), true) => format!(
                    "; township expected {want}, got {}",
                    decision
                        .township
                        .as_ref()
                        .map_or_else(|| "unassigned".to_owned(), |t| t.code.to_string())
                ),
                _ => String::new(),
            };
            println!(
                "\n{} [{}] expected {}, got {}{}{township}",
                call.id.as_deref().unwrap_or("?"),
                call.hotline,
                expected.destination,
                decision.destination,
                if decision.needs_review {
                    " (needs review)"
                } else {
                    ""
                }
            );
            println!("  text: {}", call.text);
            if let Some(l) = &call.location {
                println!("  location: {l}");
            }
            print!("{}", render::indent(&render::why(decision), 2));
        }
    }
    Ok(ExitCode::SUCCESS)
}
