//! The rule set that serves, and its hot reload: a new set is checked in
//! full before it is swapped in, atomically; a bad one leaves the old one
//! serving and its errors are reported with file:line:col.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use minsheng_classify::Classifier;
use minsheng_rules::{Severity, SourceFile};

/// Where the rules come from.
#[derive(Debug, Clone)]
pub enum RuleSource {
    /// A rule directory, read again on every reload.
    Dir(PathBuf),
    /// A fixed set of files (the set built into the binary).
    BuiltIn(Vec<Arc<SourceFile>>),
}

impl RuleSource {
    fn describe(&self) -> String {
        match self {
            RuleSource::Dir(dir) => dir.display().to_string(),
            RuleSource::BuiltIn(_) => "built-in".into(),
        }
    }

    fn files(&self) -> Result<Vec<Arc<SourceFile>>, ReloadError> {
        match self {
            RuleSource::Dir(dir) => {
                minsheng_rules::read_dir(dir).map_err(|e| ReloadError::Read(e.to_string()))
            }
            RuleSource::BuiltIn(files) => Ok(files.clone()),
        }
    }
}

/// A rule set that could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The directory or a file could not be read.
    #[error("reading the rules: {0}")]
    Read(String),
    /// The rules have errors; each is rendered with file:line:col.
    #[error("the rule set has {} error(s); the old rules keep serving:\n{}", .0.len(), .0.join("\n"))]
    Invalid(Vec<String>),
    /// The rules are built into the binary: there is nothing to reload.
    #[error("the built-in rule set serves; there is no rule directory to reload")]
    BuiltIn,
}

/// A loaded rule set and what the services need of it.
#[derive(Debug)]
pub struct Loaded {
    /// The classifier built from it.
    pub classifier: Classifier,
    /// Every queue a ticket can be in.
    pub queues: HashSet<String>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Its warnings, rendered.
    pub warnings: Vec<String>,
}

/// The outcome of a good reload.
#[derive(Debug)]
pub struct Reloaded {
    /// The set now serving.
    pub loaded: Arc<Loaded>,
    /// False when the files had not changed (nothing was swapped).
    pub changed: bool,
}

/// The serving rule set.
#[derive(Debug)]
pub struct Rules {
    current: RwLock<Arc<Loaded>>,
    source: RuleSource,
    reloading: tokio::sync::Mutex<()>,
}

fn build(source: &RuleSource, unless_version: Option<&str>) -> Result<Option<Loaded>, ReloadError> {
    let checked = minsheng_rules::compile(source.files()?);
    let render = |sev: Severity| {
        checked
            .diagnostics
            .iter()
            .filter(|d| d.severity() == sev)
            .map(|d| d.render())
            .collect::<Vec<_>>()
    };
    let Some(rule_set) = checked.rule_set else {
        return Err(ReloadError::Invalid(render(Severity::Error)));
    };
    if unless_version == Some(rule_set.version.as_str()) {
        return Ok(None);
    }
    let warnings = render(Severity::Warning);
    let classifier = Classifier::new(rule_set)
        .map_err(|e| ReloadError::Invalid(e.diagnostics.iter().map(|d| d.render()).collect()))?;
    let queues = classifier.queues().into_iter().collect();
    Ok(Some(Loaded {
        classifier,
        queues,
        loaded_at: SystemTime::now(),
        warnings,
    }))
}

impl Rules {
    /// Loads the first rule set; fails if it has errors.
    pub fn load(source: RuleSource) -> Result<Rules, ReloadError> {
        let loaded = build(&source, None)?.expect("a first load always builds");
        Ok(Rules {
            current: RwLock::new(Arc::new(loaded)),
            source,
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The set serving now. A caller keeps it for the whole call, so a
    /// reload in between never mixes two versions in one decision.
    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where the rules come from, for people.
    pub fn source(&self) -> String {
        self.source.describe()
    }

    /// Reads, checks and builds the rules again and swaps them in if they
    /// are good and changed. `trigger` says what asked (logged).
    pub async fn reload(self: &Arc<Self>, trigger: &str) -> Result<Reloaded, ReloadError> {
        if matches!(self.source, RuleSource::BuiltIn(_)) {
            return Err(ReloadError::BuiltIn);
        }
        let _one_at_a_time = self.reloading.lock().await;
        let this = self.clone();
        let version = self.current().classifier.rules().version.clone();
        let built = tokio::task::spawn_blocking(move || build(&this.source, Some(&version)))
            .await
            .map_err(|e| ReloadError::Read(format!("the reload task failed: {e}")))?;
        match built {
            Ok(Some(loaded)) => {
                let loaded = Arc::new(loaded);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded.clone();
                metrics::counter!("minsheng_rule_reloads_total", "result" => "loaded").increment(1);
                tracing::info!(
                    trigger,
                    version = loaded.classifier.rules().short_version(),
                    rules = loaded.classifier.rules().rules.len(),
                    "rules reloaded"
                );
                Ok(Reloaded {
                    loaded,
                    changed: true,
                })
            }
            Ok(None) => {
                metrics::counter!("minsheng_rule_reloads_total", "result" => "unchanged")
                    .increment(1);
                tracing::debug!(trigger, "rules unchanged");
                Ok(Reloaded {
                    loaded: self.current(),
                    changed: false,
                })
            }
            Err(e) => {
                metrics::counter!("minsheng_rule_reloads_total", "result" => "rejected")
                    .increment(1);
                tracing::error!(trigger, error = %e, "rules reload rejected");
                Err(e)
            }
        }
    }
}
