//! Reading and compiling a policy set: every `*.cedar` file parsed and validated against
//! the schema (strict mode), every problem located by `file:line:column`, policy ids from
//! `@id("…")` or `<file>#<n>`.

use std::path::Path;
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

use super::Policies;

/// The schema's file name inside a policy directory.
pub const SCHEMA_FILE: &str = "schema.cedarschema";
/// Largest policy or schema file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most policy files in a directory.
const MAX_FILES: usize = 256;

const BUILTIN_SCHEMA: &str = include_str!("../../policies/schema.cedarschema");
const BUILTIN_POLICIES: &[(&str, &str)] = &[
    ("admin.cedar", include_str!("../../policies/admin.cedar")),
    ("auditor.cedar", include_str!("../../policies/auditor.cedar")),
    ("common.cedar", include_str!("../../policies/common.cedar")),
    ("custodian.cedar", include_str!("../../policies/custodian.cedar")),
    ("service.cedar", include_str!("../../policies/service.cedar")),
];

/// One problem of a policy set, located in its file (line and column from 1; 0 when the
/// problem is the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

/// Why a policy set was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct PolicyErrors(pub Vec<Problem>);

impl PolicyErrors {
    fn one(file: &str, message: impl Into<String>) -> Self {
        Self(vec![Problem {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
        }])
    }
}

/// The texts a policy set is compiled from, with the names problems are reported under.
#[derive(Debug, Clone)]
pub struct PolicySource {
    schema: (String, String),
    files: Vec<(String, String)>,
}

impl PolicySource {
    /// The policies shipped in `policies/`, compiled into the binary.
    pub(crate) fn builtin() -> Self {
        Self {
            schema: (format!("(built-in) {SCHEMA_FILE}"), BUILTIN_SCHEMA.to_owned()),
            files: BUILTIN_POLICIES
                .iter()
                .map(|(name, text)| (format!("(built-in) {name}"), (*text).to_owned()))
                .collect(),
        }
    }

    /// Reads `dir/*.cedar` (in name order) and `dir/schema.cedarschema` (the built-in
    /// schema when absent).
    pub fn read_dir(dir: &Path) -> Result<Self, PolicyErrors> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| PolicyErrors::one(&shown, e.to_string()))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| PolicyErrors::one(&shown, e.to_string()))?.path();
            if path.extension().is_some_and(|x| x == "cedar") && path.is_file() {
                paths.push(path);
            }
        }
        if paths.len() > MAX_FILES {
            return Err(PolicyErrors::one(&shown, format!("more than {MAX_FILES} policy files")));
        }
        paths.sort();
        let schema_path = dir.join(SCHEMA_FILE);
        let schema = if schema_path.exists() {
            (schema_path.display().to_string(), read_limited(&schema_path)?)
        } else {
            (format!("(built-in) {SCHEMA_FILE}"), BUILTIN_SCHEMA.to_owned())
        };
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            files.push((path.display().to_string(), read_limited(&path)?));
        }
        Ok(Self { schema, files })
    }
}

fn read_limited(path: &Path) -> Result<String, PolicyErrors> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| PolicyErrors::one(&shown, e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(PolicyErrors::one(&shown, format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    std::fs::read_to_string(path).map_err(|e| PolicyErrors::one(&shown, e.to_string()))
}

/// Line and column (from 1) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A problem from a Cedar diagnostic: located at its first label, with its help text.
fn problem(file: &str, text: &str, diagnostic: &dyn Diagnostic) -> Problem {
    let offset = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = offset.map_or((1, 1), |o| line_col(text, o));
    let mut message = diagnostic.to_string();
    if let Some(help) = diagnostic.help() {
        message.push_str(&format!(" ({help})"));
    }
    Problem {
        file: file.to_owned(),
        line,
        column,
        message: message.replace('\n', " "),
    }
}

/// Parses and validates every file; all problems at once, or the compiled set.
pub fn compile(source: &PolicySource) -> Result<Policies, PolicyErrors> {
    let (schema_name, schema_text) = &source.schema;
    let schema = match Schema::from_cedarschema_str(schema_text) {
        Ok((schema, _warnings)) => schema,
        Err(e) => return Err(PolicyErrors(vec![problem(schema_name, schema_text, &e)])),
    };
    let validator = Validator::new(schema);
    let mut problems = Vec::new();
    let mut set = PolicySet::new();
    let mut ids = Vec::new();
    for (file, text) in &source.files {
        let Some(file_set) = compile_file(file, text, &ids, &mut problems) else {
            continue;
        };
        let result = validator.validate(&file_set, ValidationMode::Strict);
        let before = problems.len();
        problems.extend(result.validation_errors().map(|e| problem(file, text, e)));
        if problems.len() > before {
            continue;
        }
        for policy in file_set.policies() {
            ids.push(policy.id().to_string());
            if let Err(e) = set.add(policy.clone()) {
                problems.push(whole_file_problem(file, e.to_string()));
            }
        }
    }
    if problems.is_empty() {
        Ok(Policies::new(set, ids))
    } else {
        Err(PolicyErrors(problems))
    }
}

/// A problem that has no better position than its file.
fn whole_file_problem(file: &str, message: String) -> Problem {
    Problem {
        file: file.to_owned(),
        line: 0,
        column: 0,
        message,
    }
}

/// Parses one file into its policies, each re-identified in file order (`@id` when given,
/// else `<file>#<n>`); `None` (with the problems pushed) when it does not parse. An id that
/// an earlier file (`taken`) or this file already uses is a problem.
fn compile_file(file: &str, text: &str, taken: &[String], problems: &mut Vec<Problem>) -> Option<PolicySet> {
    let parsed = match PolicySet::from_str(text) {
        Ok(parsed) => parsed,
        Err(errors) => {
            problems.extend(errors.iter().map(|e| problem(file, text, e)));
            return None;
        }
    };
    if parsed.templates().next().is_some() {
        problems.push(whole_file_problem(
            file,
            "policy templates (with ?principal / ?resource slots) are not supported".into(),
        ));
        return None;
    }
    let mut in_file: Vec<_> = parsed.policies().collect();
    in_file.sort_by_key(|p| {
        p.id()
            .to_string()
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(0)
    });
    let base = Path::new(file)
        .file_name()
        .map_or_else(|| file.to_owned(), |n| n.to_string_lossy().into_owned());
    let mut file_set = PolicySet::new();
    for (n, policy) in in_file.into_iter().enumerate() {
        let id = policy
            .annotation("id")
            .filter(|a| !a.is_empty())
            .map_or_else(|| format!("{base}#{}", n + 1), str::to_owned);
        if taken.contains(&id) || file_set.policy(&PolicyId::new(&id)).is_some() {
            let (line, column) = policy
                .to_string()
                .lines()
                .next()
                .and_then(|first| text.find(first.trim()))
                .map_or((0, 0), |o| line_col(text, o));
            problems.push(Problem {
                file: file.to_owned(),
                line,
                column,
                message: format!("policy id `{id}` is used twice"),
            });
            continue;
        }
        if let Err(e) = file_set.add(policy.new_id(PolicyId::new(&id))) {
            problems.push(whole_file_problem(file, e.to_string()));
        }
    }
    Some(file_set)
}

/// Loads the directory (or the built-in set when `None`).
pub fn load(dir: Option<&Path>) -> Result<Policies, PolicyErrors> {
    let source = match dir {
        Some(dir) => PolicySource::read_dir(dir)?,
        None => PolicySource::builtin(),
    };
    compile(&source)
}
