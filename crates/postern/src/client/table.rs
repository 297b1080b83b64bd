//! Plain-text tables and the `-o table|json|yaml` switch.

use serde_json::Value;

use super::ClientError;

/// Output format of listing commands.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Aligned columns.
    #[default]
    Table,
    /// Pretty JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Prints `v` as JSON or YAML (not for [`Output::Table`], which callers lay out).
pub fn print_structured(v: &Value, out: Output) -> Result<(), ClientError> {
    let text = match out {
        Output::Yaml => serde_yaml::to_string(v)
            .map_err(|e| ClientError::Failed(format!("cannot encode YAML: {e}")))?,
        _ => {
            serde_json::to_string_pretty(v)
                .map_err(|e| ClientError::Failed(format!("cannot encode JSON: {e}")))?
                + "\n"
        }
    };
    print!("{text}");
    Ok(())
}

/// A cell from a JSON value: strings bare, arrays joined by commas, null empty, whitespace
/// runs (newlines in statements) collapsed, cut to `max` characters.
pub fn cell(v: &Value, max: usize) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| cell(x, usize::MAX))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    truncate(&s.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

/// `s` cut to `max` characters, with `…` marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Renders rows under headers, columns separated by two spaces, no trailing blanks.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_and_alignment() {
        assert_eq!(cell(&json!(["a", "b"]), 10), "a,b");
        assert_eq!(cell(&json!(null), 10), "");
        assert_eq!(cell(&json!(5432), 10), "5432");
        assert_eq!(cell(&json!("select 1\n  from t"), 100), "select 1 from t");
        assert_eq!(cell(&json!("abcdefgh"), 5), "abcd…");
        let t = render(
            &["NAME", "ROLES"],
            &[
                vec!["alice".into(), "dba".into()],
                vec!["bo".into(), String::new()],
            ],
        );
        assert_eq!(t, "NAME   ROLES\nalice  dba\nbo\n");
    }
}
