//! A problem found in the configuration, with where it is.
//!
//! `fieldgate check` and a reload both collect every problem before they
//! report, so a technician fixes a whole file in one pass.

use std::fmt;
use std::path::PathBuf;

/// How bad a problem is. Warnings never change the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Something worth knowing; the config is still used.
    Warning,
    /// The config cannot be used.
    Error,
}

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a TOML file (`None` when the key is absent from the file,
    /// e.g. a required field that is missing from an inline table).
    Toml {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: Option<usize>,
    },
    /// A cell of a CSV tag map.
    Csv {
        /// The file.
        file: PathBuf,
        /// 1-based line (the header is line 1).
        line: usize,
        /// The column's header, when the problem is in one cell.
        column: Option<String>,
    },
    /// An environment variable that overrides the file.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A file that the config names but that could not be read.
    File {
        /// The file.
        file: PathBuf,
    },
}

impl Origin {
    fn sort_key(&self) -> (u8, String, usize) {
        match self {
            Origin::Env { var } => (0, var.clone(), 0),
            Origin::Toml { file, line } => (1, file.display().to_string(), line.unwrap_or(0)),
            Origin::File { file } => (1, file.display().to_string(), 0),
            Origin::Csv { file, line, .. } => (2, file.display().to_string(), *line),
        }
    }
}

/// One problem: where, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file and line (or variable).
    pub origin: Origin,
    /// Field path in the config, like `devices[2].tags[5].address`.
    pub field: String,
    /// What is wrong, and where useful how to fix it.
    pub message: String,
    /// The devices a problem written in a template shows up in, in the
    /// order found (empty for a problem of one element): a template used
    /// by 200 devices reports one problem at the template, naming them.
    pub instances: Vec<String>,
}

impl Problem {
    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: ")?;
        match &self.origin {
            Origin::Toml { file, line } => {
                write!(f, "{}", file.display())?;
                if let Some(line) = line {
                    write!(f, ":{line}")?;
                }
                write!(f, ": {}: ", self.field)?;
            }
            Origin::Csv { file, line, column } => {
                write!(f, "{}:{line}: ", file.display())?;
                if let Some(column) = column {
                    write!(f, "column {column}: ")?;
                }
                write!(f, "({}) ", self.field)?;
            }
            Origin::Env { var } => write!(f, "environment {var}: {}: ", self.field)?,
            Origin::File { file } => write!(f, "{}: {}: ", file.display(), self.field)?,
        }
        f.write_str(&self.message)?;
        if !self.instances.is_empty() {
            write!(f, " (in {})", instance_list(&self.instances))?;
        }
        Ok(())
    }
}

/// How many instances a problem names before "and N more".
const INSTANCES_SHOWN: usize = 3;

/// `pump1`, `pump1 and pump2`, `pump1, pump2, pump3 and 197 more`.
fn instance_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        _ if names.len() <= INSTANCES_SHOWN + 1 => {
            let (last, first) = names.split_last().unwrap_or((&names[0], &[]));
            format!("{} and {last}", first.join(", "))
        }
        _ => format!(
            "{} and {} more",
            names[..INSTANCES_SHOWN].join(", "),
            names.len() - INSTANCES_SHOWN
        ),
    }
}

/// Every problem found in one load, errors and warnings together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// True when at least one problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Problem::is_error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|p| p.is_error()).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.0.len() - self.error_count()
    }

    /// Orders problems by file and line (environment first), keeping the
    /// order in which they were found among equals.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|a| a.origin.sort_key());
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| !p.is_error())
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
