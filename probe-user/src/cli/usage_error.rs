//! Command-line mistakes as one line each: clap's complaint, or the function named without
//! `--func` that clap cannot see.
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

/// A command line that names its function without `--func` (`probe latency getCommand -p
/// 123`): the word is read as the program to trace, and clap's complaint (a conflict with -p,
/// or --func missing) does not say what went wrong. `args` follow the command's name.
pub fn forgotten_func(cli: &clap::Command, command: &str, args: &[String]) -> Option<String> {
    let command_def = cli.find_subcommand(command)?;
    command_def.get_arguments().find(|a| a.get_long() == Some("func"))?;
    let takes_value = |name: &str| {
        command_def.get_arguments().any(|a| {
            let named = a.get_long() == Some(name) || (name.len() == 1 && a.get_short() == name.chars().next());
            named && a.get_action().takes_values()
        })
    };
    let mut words: Vec<usize> = Vec::new();
    let mut targets = 0;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            words.extend(i + 1..args.len());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            if name == "func" {
                return None;
            }
            targets += usize::from(name == "pid" || name == "command");
            i += usize::from(!long.contains('=') && takes_value(name));
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let last = short.chars().last().unwrap_or_default().to_string();
            targets += usize::from(short.contains(['p', 'c']));
            i += usize::from(takes_value(&last));
        } else {
            words.push(i);
        }
        i += 1;
    }
    // One word with -p or -c, or two words: the function is the one that is no file (the
    // first when both are, or neither).
    if words.is_empty() || words.len() + targets < 2 {
        return None;
    }
    let is_file = |i: &usize| std::path::Path::new(&args[*i]).exists();
    let first = words.iter().copied().find(|i| !is_file(i)).unwrap_or(words[0]);
    let mut fixed: Vec<String> = vec!["probe".into(), command.into()];
    for (n, arg) in args.iter().enumerate() {
        if n == first {
            fixed.push("--func".into());
        }
        fixed.push(arg.clone());
    }
    let fixed = shlex::try_join(fixed.iter().map(String::as_str)).unwrap_or_else(|_| fixed.join(" "));
    Some(format!("`{}` is read as the program to trace; name the function with --func: `{fixed}`", args[first]))
}

#[cfg(test)]
mod tests {
    use super::{clap_error_line, forgotten_func};

    #[test]
    fn a_function_named_without_func_is_pointed_out() {
        let cli = super::super::command();
        let args = |s: &str| -> Vec<String> { s.split(' ').map(str::to_string).collect() };
        assert_eq!(
            forgotten_func(&cli, "latency", &args("getCommand -p 123")).unwrap(),
            "`getCommand` is read as the program to trace; name the function with --func: \
             `probe latency --func getCommand -p 123`"
        );
        assert!(forgotten_func(&cli, "latency", &args("-d 5 getCommand /usr/bin/redis-server"))
            .unwrap()
            .ends_with("`probe latency -d 5 --func getCommand /usr/bin/redis-server`"));
        assert!(forgotten_func(&cli, "argdist", &args("--arg 0 ToString -c ./app")).is_some());
        // The program first, then the function: the word that is no file is the function.
        assert!(forgotten_func(&cli, "latency", &args("/bin/sh main"))
            .unwrap()
            .ends_with("`probe latency /bin/sh --func main`"));
        // --func given, or only the program: clap's own message says what is missing.
        assert_eq!(forgotten_func(&cli, "latency", &args("--func f -p 1 extra")), None);
        assert_eq!(forgotten_func(&cli, "latency", &args("/usr/bin/app")), None);
        assert_eq!(forgotten_func(&cli, "list", &args("/usr/bin/app f")), None);
    }

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
