//! `minsheng bench`: full classification against segmentation alone, on
//! the same texts, on one core; load time; peak resident memory.

use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use minsheng_classify::eval::read_corpus;
use minsheng_core::Call;

use crate::commands;

/// The calls of a JSONL corpus, or the rule set's example calls.
pub fn calls(
    classifier: &minsheng_classify::Classifier,
    corpus: Option<&Path>,
) -> anyhow::Result<Vec<Call>> {
    Ok(match corpus {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            read_corpus(&path.display().to_string(), &text)
                .into_iter()
                .map(|(_, c)| c.map(|c| c.call()))
                .collect::<Result<_, _>>()?
        }
        None => classifier
            .rules()
            .examples
            .iter()
            .map(|e| Call {
                id: None,
                hotline: e.hotline,
                text: e.text.clone(),
                location: e.location.clone(),
                township: None,
            })
            .collect(),
    })
}

pub fn run(dir: Option<&Path>, corpus: Option<&Path>, seconds: f64) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let classifier = commands::load(dir)?;
    let load = started.elapsed().as_secs_f64();

    let calls = calls(&classifier, corpus)?;
    anyhow::ensure!(!calls.is_empty(), "no calls to measure");
    let chars: usize = calls.iter().map(|c| c.text.chars().count()).sum();
    let source = corpus.map_or_else(
        || "the rule set's example calls".to_owned(),
        |p| p.display().to_string(),
    );

    let segmenter = classifier.segmenter();
    let seg = measure(seconds, || {
        for c in &calls {
            black_box(segmenter.cut(black_box(&c.text)));
        }
    });
    let norm = measure(seconds, || {
        for c in &calls {
            black_box(minsheng_classify::normalize(black_box(&c.text)));
        }
    });
    let full = measure(seconds, || {
        for c in &calls {
            black_box(classifier.classify(black_box(c)));
        }
    });
    let n = calls.len() as f64;
    println!(
        "corpus          {source}: {} calls, {:.1} characters a call",
        calls.len(),
        chars as f64 / n
    );
    println!(
        "load            {:.3} s (rules + dictionaries + gazetteer)",
        load
    );
    println!(
        "segmentation    {:>9.0} calls/s  ({:.1} µs a call)",
        n / seg,
        seg / n * 1e6
    );
    println!(
        "normalisation   {:>9.0} calls/s  ({:.1} µs a call, part of classification)",
        n / norm,
        norm / n * 1e6
    );
    println!(
        "classification  {:>9.0} calls/s  ({:.1} µs a call)",
        n / full,
        full / n * 1e6
    );
    println!(
        "ratio           {:.0} % of segmentation-alone throughput",
        seg / full * 100.0
    );
    match peak_rss_kib() {
        Some(kib) => println!("peak memory     {:.1} MiB resident", kib as f64 / 1024.0),
        None => println!("peak memory     unknown (no /proc/self/status)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds one pass of `f` takes: passes repeat until `budget` seconds
/// have gone by (after one warm-up pass); the mean is returned.
fn measure(budget: f64, mut f: impl FnMut()) -> f64 {
    f();
    let started = Instant::now();
    let mut passes = 0u32;
    while passes == 0 || started.elapsed().as_secs_f64() < budget {
        f();
        passes += 1;
    }
    started.elapsed().as_secs_f64() / f64::from(passes)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
