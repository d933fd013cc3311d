//! Reading typed settings from environment variables, with errors that name the variable.

use std::{fmt, str::FromStr, time::Duration};

/// A setting that is present but unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it. Never contains the value of a secret.
    pub problem: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "environment variable {}: {}",
            self.variable, self.problem
        )
    }
}

impl std::error::Error for SettingError {}

/// The variable's value, or `default` when it is unset or empty.
pub fn text(variable: &'static str, default: &str) -> String {
    match std::env::var(variable) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => default.to_owned(),
    }
}

/// The variable parsed as `T`, or `default` when it is unset or empty.
pub fn parsed<T>(variable: &'static str, default: T) -> Result<T, SettingError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match std::env::var(variable) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e: T::Err| SettingError {
            variable,
            problem: format!("`{}` is not valid: {e}", v.trim()),
        }),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(_)) => Err(SettingError {
            variable,
            problem: "is not valid UTF-8".into(),
        }),
    }
}

/// A duration given in whole milliseconds, at least `min_ms`.
pub fn millis(
    variable: &'static str,
    default_ms: u64,
    min_ms: u64,
) -> Result<Duration, SettingError> {
    let ms: u64 = parsed(variable, default_ms)?;
    if ms < min_ms {
        return Err(SettingError {
            variable,
            problem: format!("{ms} ms is below the minimum of {min_ms} ms"),
        });
    }
    Ok(Duration::from_millis(ms))
}

/// A whole number within `range`.
pub fn bounded(
    variable: &'static str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, SettingError> {
    let n: u32 = parsed(variable, default)?;
    if !range.contains(&n) {
        return Err(SettingError {
            variable,
            problem: format!("{n} is outside {}..={}", range.start(), range.end()),
        });
    }
    Ok(n)
}
