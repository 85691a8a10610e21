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

/// A command-line error from clap as one line: its message (continuation lines, possible
/// values and tips joined on), then where the options are listed (`subcommand`: the one on
/// the command line, if any). clap's own text adds a usage block and a blank-line layout; bad
/// input gets one line here like everywhere else.
pub fn clap_error_line(rendered: &str, subcommand: Option<&str>) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let mut command = match subcommand {
        Some(sub) => format!("probe {sub}"),
        None => "probe".to_string(),
    };
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(usage) = line.strip_prefix("Usage:") {
            let words: Vec<&str> = usage.split_whitespace().take_while(|w| !w.starts_with(['[', '-', '<'])).collect();
            if !words.is_empty() {
                command = words.join(" ");
            }
        } else if !line.starts_with("For more information") {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    let mut message = String::new();
    for part in parts {
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') || part.starts_with('[') { " " } else { "; " });
        }
        message.push_str(part);
    }
    format!("{message}; see `{command} --help`")
}

#[cfg(test)]
mod tests {
    use super::clap_error_line;

    #[test]
    fn clap_errors_become_one_line() {
        let missing = "error: the following required arguments were not provided:\n  <--command <CMD ARGS>|--pid <PID>|BINARY>\n\nUsage: probe latency --func <FUNC> <--command <CMD ARGS>|--pid <PID>|BINARY>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            clap_error_line(missing, None),
            "the following required arguments were not provided: <--command <CMD ARGS>|--pid <PID>|BINARY>; \
             see `probe latency --help`"
        );
        let unit = "error: invalid value 's' for '--unit <UNIT>'\n  [possible values: ns, us, ms]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            clap_error_line(unit, Some("latency")),
            "invalid value 's' for '--unit <UNIT>' [possible values: ns, us, ms]; see `probe latency --help`"
        );
    }
}
