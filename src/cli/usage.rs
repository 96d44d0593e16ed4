//! Usage errors: what clap's message leaves out (where a bad value came from, where a run option goes) and
//! what it must not show (the value of an option that may hold a password).

/// Options whose value may hold a password: clap's message would echo it.
const SECRET_VALUED: &[&str] = &["--pushgateway"];

/// For a bad value of a [`SECRET_VALUED`] option, clap's message without the value (its own redacts it).
fn without_secret_value(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    let long = arg.split_whitespace().next()?;
    if e.kind() != ErrorKind::ValueValidation || !SECRET_VALUED.contains(&long) {
        return None;
    }
    let why = std::error::Error::source(e).map_or_else(|| "invalid value".to_owned(), ToString::to_string);
    Some(format!("invalid value for '{arg}': {why}"))
}

/// What to print for a usage error: clap's message as it is, followed by a note, or other words instead.
#[derive(Debug, PartialEq, Eq)]
pub enum Usage {
    AsIs,
    After(String),
    Instead(String),
}

/// What to print for clap's error `e` (`error: ` and `note: ` go in front of the words). A bad value of a
/// secret-valued option (`--pushgateway`) is said without the value.
pub fn explain(e: &clap::Error) -> Usage {
    match without_secret_value(e) {
        Some(message) => Usage::Instead(message),
        None => usage_note(e).unwrap_or(Usage::AsIs),
    }
}

/// What clap's message leaves out: which environment variable a bad value came from, and where run options go
/// when they were given before the command (clap would suggest `--version`).
fn usage_note(e: &clap::Error) -> Option<Usage> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return None,
    };
    let long = arg.split_whitespace().next()?.trim_start_matches("--").to_string();
    let cmd = super::Cli::command();
    let diff = cmd.find_subcommand("diff")?;
    let run_arg = diff.get_arguments().find(|a| a.get_long() == Some(long.as_str()))?;
    match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let var = run_arg.get_env()?.to_string_lossy().into_owned();
            let on_command_line =
                std::env::args().any(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
            (!on_command_line && std::env::var_os(&var).is_some())
                .then(|| Usage::After(format!("the value of --{long} came from the environment variable {var}")))
        }
        ErrorKind::UnknownArgument if cmd.get_arguments().all(|a| a.get_long() != Some(long.as_str())) => {
            Some(Usage::Instead(format!(
                "--{long} is an option of `diff` and `reconcile`: put it after the command, e.g. `clbsync diff --{long} ...`"
            )))
        }
        _ => None,
    }
}
