//! Key aliases and status words taught at run time, on top of the built-in ones.
//!
//! When a gateway turns out to use a key or a status word the built-in tables do not know,
//! the operator teaches it through `FIELD_ALIASES` and `STATUS_ALIASES` instead of waiting
//! for a release; quarantined reports can then be replayed under the new rules.

use crate::{
    env::SettingError,
    parse::{fold_key, Field},
    status::Status,
};

/// Extra aliases, checked after the built-in tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    keys: Vec<(String, Field)>,
    statuses: Vec<(String, Status)>,
}

impl Rules {
    /// Reads `FIELD_ALIASES` (`field=key,...`, with field one of `msgid`, `mno`, `sid`,
    /// `status`, `datetime`, `err`) and `STATUS_ALIASES` (`word=status,...`, with status a
    /// canonical status name).
    pub fn from_env() -> Result<Rules, SettingError> {
        let fields = std::env::var("FIELD_ALIASES").unwrap_or_default();
        let statuses = std::env::var("STATUS_ALIASES").unwrap_or_default();
        Rules::parse(&fields, &statuses)
    }

    /// Builds rules from the two variables' texts.
    pub fn parse(field_aliases: &str, status_aliases: &str) -> Result<Rules, SettingError> {
        let mut rules = Rules::default();
        for (name, key) in pairs("FIELD_ALIASES", field_aliases)? {
            let field = Field::from_name(&name).ok_or_else(|| SettingError {
                variable: "FIELD_ALIASES",
                problem: format!("`{name}` is not one of msgid, mno, sid, status, datetime, err"),
            })?;
            rules.keys.push((fold_key(&key), field));
        }
        for (word, name) in pairs("STATUS_ALIASES", status_aliases)? {
            let status =
                Status::from_canonical(&name.to_ascii_lowercase()).ok_or_else(|| SettingError {
                    variable: "STATUS_ALIASES",
                    problem: format!("`{name}` is not a canonical status name"),
                })?;
            rules.statuses.push((fold_key(&word), status));
        }
        Ok(rules)
    }

    /// The field a request key stands for, built-in aliases first.
    pub fn field_for(&self, key: &str) -> Option<Field> {
        let folded = fold_key(key);
        Field::for_folded(&folded).or_else(|| {
            self.keys
                .iter()
                .find(|(k, _)| *k == folded)
                .map(|(_, f)| *f)
        })
    }

    /// The status a gateway's word stands for, built-in words first.
    pub fn status_for(&self, word: &str) -> Option<Status> {
        Status::from_gateway(word).or_else(|| {
            let folded = fold_key(word.trim());
            self.statuses
                .iter()
                .find(|(w, _)| *w == folded)
                .map(|(_, s)| *s)
        })
    }
}

fn pairs(variable: &'static str, text: &str) -> Result<Vec<(String, String)>, SettingError> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
                Ok((a.trim().to_owned(), b.trim().to_owned()))
            }
            _ => Err(SettingError {
                variable,
                problem: format!("`{item}` is not of the form name=value"),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taught_aliases_extend_the_built_in_tables() {
        let rules = Rules::parse("msgid=ref, mno=Phone_No", "SENT=enroute").unwrap();

        assert_eq!(rules.field_for("REF"), Some(Field::MsgId));
        assert_eq!(rules.field_for("phone-no"), Some(Field::Recipient));
        assert_eq!(rules.field_for("msisdn"), Some(Field::Recipient));
        assert_eq!(rules.status_for("sent"), Some(Status::Enroute));
        assert_eq!(rules.status_for("DELIVRD"), Some(Status::Delivered));
        assert!(Rules::parse("colour=x", "").is_err());
        assert!(Rules::parse("", "sent=maybe").is_err());
        assert!(Rules::parse("msgid", "").is_err());
    }
}
