//! Error kinds and exit codes. A `UserError` is bad input: one line on stderr naming the
//! problem and the fix, exit code 2. Anything else is an internal failure, exit code 1.
use std::fmt;

pub const EXIT_USAGE: i32 = 2;
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug)]
pub struct UserError(pub String);

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Bad input, reported as `probe: <message>` with exit code 2.
pub fn user(msg: impl Into<String>) -> anyhow::Error {
    UserError(msg.into()).into()
}

/// Exit code and one-line message for any error that reaches `main`.
pub fn report(err: &anyhow::Error) -> (i32, String) {
    match err.downcast_ref::<UserError>() {
        Some(u) => (EXIT_USAGE, u.0.clone()),
        None => (EXIT_FAILURE, format!("{err:#}")),
    }
}
