//! Reading secrets: hidden prompts on a terminal, lines from stdin otherwise.

use std::io::{BufRead, IsTerminal};

use zeroize::Zeroizing;

use super::ClientError;

/// Whether stdin is a terminal (prompts possible).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// A hidden prompt on the terminal.
pub fn prompt_secret(prompt: &str) -> Result<Zeroizing<String>, ClientError> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|e| {
            ClientError::Usage(format!(
                "cannot read a password from the terminal ({e}); pipe it on stdin instead"
            ))
        })
}

/// A visible prompt on the terminal.
pub fn prompt_line(prompt: &str) -> Result<String, ClientError> {
    eprint!("{prompt}");
    let mut s = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut s)
        .map_err(|e| ClientError::Usage(format!("cannot read from the terminal: {e}")))?;
    Ok(s.trim().to_string())
}

/// The next line of stdin, without its line ending.
pub fn stdin_line(what: &str) -> Result<Zeroizing<String>, ClientError> {
    let mut s = Zeroizing::new(String::new());
    let n = std::io::stdin()
        .lock()
        .read_line(&mut s)
        .map_err(|e| ClientError::Usage(format!("cannot read {what} from stdin: {e}")))?;
    if n == 0 {
        return Err(ClientError::Usage(format!(
            "stdin ended before {what} was given"
        )));
    }
    let trimmed = s.trim_end_matches(['\n', '\r']).len();
    s.truncate(trimmed);
    Ok(s)
}

/// A secret from stdin when it is not a terminal (or `from_stdin`), else a hidden prompt.
pub fn secret(
    prompt: &str,
    what: &str,
    from_stdin: bool,
) -> Result<Zeroizing<String>, ClientError> {
    if from_stdin || !interactive() {
        stdin_line(what)
    } else {
        prompt_secret(prompt)
    }
}

/// A new password: one line of stdin with `from_stdin`, else typed twice at a hidden prompt.
pub fn new_password(from_stdin: bool) -> Result<Zeroizing<String>, ClientError> {
    if from_stdin {
        return stdin_line("the password");
    }
    if !interactive() {
        return Err(ClientError::Usage(
            "stdin is not a terminal: pass --password-stdin and pipe the password in".into(),
        ));
    }
    let first = prompt_secret("New password: ")?;
    let again = prompt_secret("Repeat it: ")?;
    if first != again {
        return Err(ClientError::Usage(
            "the two passwords differ; nothing was changed".into(),
        ));
    }
    Ok(first)
}
