//! The control file: which calls fail, with which return code, or hang. Its path is in
//! `PKCS11_FAULT_CONTROL`; it is read again on every intercepted call, so whoever writes it
//! (a test, from another process) commands the faults of a running module. No variable, or
//! no file, means no faults.
//!
//! One rule a line, `#` starts a comment:
//!
//! ```text
//! C_UnwrapKey CKR_DEVICE_REMOVED   # C_UnwrapKey fails with that code
//! C_Login     CKR_USER_NOT_LOGGED_IN
//! *           hang                  # every other intercepted call waits until cleared
//! ```
//!
//! A rule naming the function wins over `*`. A code is a name from [`NAMED_CODES`] or a
//! number (`0x32`). Writers should replace the file whole (write, then rename) so a call
//! never reads half a rule.

use std::path::Path;

use crate::ck::{NAMED_CODES, Rv};

/// What a rule does to the calls it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fail with this return code (after doing what the failure means; see `fault::enact`).
    Fail(Rv),
    /// Wait until no rule says `hang` for the call any more, then do what the file says.
    Hang,
}

/// Which functions a rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Matches {
    Function(String),
    Every,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    matches: Matches,
    action: Action,
}

/// The rules of one reading of the control file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// A line the module cannot obey.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "control file line {}: {}", self.line, self.reason)
    }
}

impl Rules {
    /// Parses a control file's text.
    pub fn parse(text: &str) -> Result<Rules, ParseError> {
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fail = |reason: String| ParseError {
                line: index + 1,
                reason,
            };
            let mut words = line.split_whitespace();
            let (Some(function), Some(action), None) = (words.next(), words.next(), words.next()) else {
                return Err(fail(format!("expected `<function|*> <code|hang>`, found `{line}`")));
            };
            let matches = match function {
                "*" => Matches::Every,
                name if name.starts_with("C_") => Matches::Function(name.to_owned()),
                other => return Err(fail(format!("`{other}` is not a C_ function or `*`"))),
            };
            let action = match action {
                "hang" => Action::Hang,
                code => {
                    Action::Fail(parse_code(code).ok_or_else(|| fail(format!("`{code}` is not a known CKR code")))?)
                }
            };
            rules.push(Rule { matches, action });
        }
        Ok(Rules { rules })
    }

    /// What to do with a call of `function`: a rule naming it, else a `*` rule, else
    /// nothing (forward it).
    pub fn action_for(&self, function: &str) -> Option<Action> {
        let named = self.rules.iter().find(|rule| match &rule.matches {
            Matches::Function(name) => name == function,
            Matches::Every => false,
        });
        named
            .or_else(|| self.rules.iter().find(|rule| rule.matches == Matches::Every))
            .map(|rule| rule.action)
    }
}

fn parse_code(text: &str) -> Option<Rv> {
    if let Some(hex) = text.strip_prefix("0x") {
        return Rv::from_str_radix(hex, 16).ok();
    }
    NAMED_CODES.iter().find(|(name, _)| *name == text).map(|(_, rv)| *rv)
}

/// Reads the control file at `path` now: no file is no rules.
pub fn read(path: &Path) -> Result<Rules, ParseError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Rules::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Rules::default()),
        Err(e) => Err(ParseError {
            line: 0,
            reason: format!("cannot read {}: {e}", path.display()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ck::{CKR_DEVICE_REMOVED, CKR_USER_NOT_LOGGED_IN};

    #[test]
    fn a_rule_naming_the_function_wins_over_the_rule_for_every_function() {
        let rules = Rules::parse("* hang\n  C_UnwrapKey   CKR_DEVICE_REMOVED  # the unwrap path\n").unwrap();
        assert_eq!(rules.action_for("C_UnwrapKey"), Some(Action::Fail(CKR_DEVICE_REMOVED)));
        assert_eq!(rules.action_for("C_WrapKey"), Some(Action::Hang));
    }

    #[test]
    fn an_empty_file_or_one_of_comments_forwards_every_call() {
        for text in ["", "\n\n", "# nothing yet\n   # still nothing"] {
            let rules = Rules::parse(text).unwrap();
            assert_eq!(rules.action_for("C_UnwrapKey"), None, "{text:?}");
        }
    }

    #[test]
    fn a_code_is_named_or_given_as_a_hexadecimal_number() {
        let rules = Rules::parse("C_Login 0x101\nC_Logout CKR_USER_NOT_LOGGED_IN").unwrap();
        assert_eq!(rules.action_for("C_Login"), Some(Action::Fail(CKR_USER_NOT_LOGGED_IN)));
        assert_eq!(rules.action_for("C_Logout"), Some(Action::Fail(CKR_USER_NOT_LOGGED_IN)));
    }

    #[test]
    fn a_line_the_module_cannot_obey_is_named_by_its_number() {
        for (text, line) in [
            ("C_UnwrapKey", 1),
            ("# ok\nC_UnwrapKey CKR_NO_SUCH_CODE", 2),
            ("UnwrapKey hang", 1),
            ("C_UnwrapKey hang now", 1),
            ("\n\nC_Login 0xZZ", 3),
        ] {
            let err = Rules::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }

    #[test]
    fn a_missing_control_file_means_no_faults() {
        let rules = read(Path::new("/nonexistent/pkcs11-fault.control")).unwrap();
        assert_eq!(rules, Rules::default());
    }
}
