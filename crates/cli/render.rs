//! Text a person reads: decisions, explanations, evaluation reports.

use std::fmt::Write;

use minsheng_classify::eval::Report;
use minsheng_core::Decision;
use minsheng_rules::RuleSet;

/// The whole decision, for a call-taker or a rule author.
pub fn decision(d: &Decision, rules: &RuleSet) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "destination  {} ({}), confidence {:.2}",
        d.destination, d.urgency, d.confidence
    );
    let _ = writeln!(s, "queue        {}", d.queue);
    match &d.township {
        Some(t) => {
            let source = match t.source {
                minsheng_core::PlaceSource::Location => "location",
                minsheng_core::PlaceSource::Text => "text",
                minsheng_core::PlaceSource::Operator => "operator system",
            };
            let _ = writeln!(
                s,
                "township     {} {} ({}), from the {source}: {}",
                t.code, t.name, t.district, t.matched
            );
        }
        None => {
            let _ = writeln!(s, "township     unassigned");
        }
    }
    if let Some(t) = &d.transfer {
        let _ = writeln!(s, "transfer     {}", t.label);
    }
    let _ = writeln!(
        s,
        "review       {}",
        if d.needs_review { "NEEDS REVIEW" } else { "no" }
    );
    let _ = writeln!(
        s,
        "rules        {} ({} rules)",
        &d.rules_version[..12],
        rules.rules.len()
    );
    let _ = writeln!(s, "text         {}", d.normalized_text);
    let _ = writeln!(s, "tokens       {}", d.tokens.join(" / "));
    s.push_str(&why(d));
    s
}

/// Scores, fired rules with their spans, and negated hits.
pub fn why(d: &Decision) -> String {
    let mut s = String::new();
    let scores: Vec<String> = d
        .scores
        .iter()
        .map(|x| format!("{} {}/{}", x.destination, x.score, x.threshold))
        .collect();
    let _ = writeln!(s, "scores       {}", scores.join(" · "));
    if d.fired.is_empty() {
        let _ = writeln!(
            s,
            "fired        nothing: sent to {} for review",
            d.destination
        );
    }
    for f in &d.fired {
        let _ = writeln!(
            s,
            "fired        {} → {} {:+} [{}, {}]{}",
            f.id,
            f.destination,
            f.weight,
            f.category,
            f.urgency,
            if f.review { " review" } else { "" }
        );
        for m in &f.matches {
            let term = if m.condition == m.term {
                String::new()
            } else {
                format!(" ({})", m.term)
            };
            let _ = writeln!(
                s,
                "               {}{term}: “{}” at {}..{}",
                m.condition, m.text, m.start, m.end
            );
        }
    }
    for n in &d.negated {
        let _ = writeln!(
            s,
            "negated      “{}” at {} (by “{}”)",
            n.text, n.start, n.negator
        );
    }
    s
}

/// Indents every line.
pub fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// An evaluation report as tables.
pub fn report(r: &Report, rules: &RuleSet) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "calls {}  accuracy {:.4} ({}/{})  township {:.4} ({}/{}; township calls {:.4})  needs review {}  {} calls/s",
        r.total,
        r.accuracy,
        r.correct,
        r.total,
        r.township_accuracy,
        r.township_correct,
        r.township_total,
        r.township_accuracy_on_township_calls,
        r.needs_review,
        r.calls_per_second
    );
    if r.skipped > 0 {
        let _ = writeln!(s, "skipped {} bad line(s) (--skip-bad)", r.skipped);
    }
    let names: Vec<&str> = rules.destinations.iter().map(|d| d.name.as_str()).collect();
    let _ = writeln!(
        s,
        "\n{:<15} {:>9} {:>7} {:>7} {:>8}",
        "destination", "precision", "recall", "f1", "support"
    );
    for name in &names {
        if let Some(m) = r.per_destination.get(*name) {
            let _ = writeln!(
                s,
                "{:<15} {:>9.4} {:>7.4} {:>7.4} {:>8}",
                name, m.precision, m.recall, m.f1, m.support
            );
        }
    }
    let _ = writeln!(s, "\nconfusion (rows: expected, columns: predicted)");
    let _ = write!(s, "{:<15}", "");
    for name in &names {
        let _ = write!(s, " {:>13}", name);
    }
    s.push('\n');
    for e in &names {
        let _ = write!(s, "{:<15}", e);
        for p in &names {
            let n = r
                .confusion
                .get(*e)
                .and_then(|row| row.get(*p))
                .copied()
                .unwrap_or(0);
            let _ = write!(s, " {:>13}", n);
        }
        s.push('\n');
    }
    s
}
