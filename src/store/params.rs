//! Placeholders generated as arguments are bound, so that a statement's text and its
//! arguments are written in one place and their order cannot drift apart.

use super::Arg;

/// A statement's arguments: binding one answers its placeholder, `$n`.
#[derive(Debug, Default)]
pub(super) struct Params {
    args: Vec<Arg>,
}

impl Params {
    /// Adds an argument and answers its placeholder.
    pub(super) fn bind(&mut self, value: impl Into<Arg>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    /// The arguments, in placeholder order.
    pub(super) fn into_args(self) -> Vec<Arg> {
        self.args
    }
}

/// The columns of a row being inserted, each listed with its value: a bound argument
/// or an SQL expression.
#[derive(Debug, Default, Clone)]
pub(super) struct Columns {
    names: Vec<&'static str>,
    values: Vec<String>,
}

impl Columns {
    /// Adds `name` with the SQL expression `value` (a placeholder already bound, a
    /// literal, a column of another table).
    pub(super) fn value(mut self, name: &'static str, value: impl Into<String>) -> Columns {
        self.names.push(name);
        self.values.push(value.into());
        self
    }

    /// Adds `name` with `value` bound as a new argument of `params`.
    pub(super) fn bind(
        self,
        params: &mut Params,
        name: &'static str,
        value: impl Into<Arg>,
    ) -> Columns {
        let placeholder = params.bind(value);
        self.value(name, placeholder)
    }

    /// The SQL expression given for `name`.
    pub(super) fn get(&self, name: &str) -> &str {
        let i = self
            .names
            .iter()
            .position(|n| *n == name)
            .expect("a statement reads only the columns it lists");
        &self.values[i]
    }

    /// The column names, for `INSERT INTO t (…)`.
    pub(super) fn names(&self) -> String {
        self.names.join(", ")
    }

    /// The values in column order, for `VALUES (…)` or `SELECT …`.
    pub(super) fn values(&self) -> String {
        self.values.join(", ")
    }
}

/// The numbers of the placeholders `sql` reads, each once, in ascending order.
#[cfg(test)]
pub(super) fn placeholders(sql: &str) -> Vec<usize> {
    let mut found: Vec<usize> = sql
        .split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// Asserts that `sql` reads exactly its arguments: `$1` to `$n` for `n` arguments,
/// each at least once.
#[cfg(test)]
pub(super) fn assert_matches_args(sql: &str, args: &[Arg]) {
    let expected: Vec<usize> = (1..=args.len()).collect();
    assert_eq!(
        placeholders(sql),
        expected,
        "placeholders of {sql} against {} arguments",
        args.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_keep_names_and_values_together() {
        let mut params = Params::default();
        let id = params.bind("ev_1");
        let row = Columns::default()
            .value("id", &id)
            .value("dedupe_key", "NULL")
            .bind(&mut params, "name", "stripe/invoice.paid")
            .bind(&mut params, "ts", 7_i64);
        assert_eq!(row.names(), "id, dedupe_key, name, ts");
        assert_eq!(row.values(), "$1, NULL, $2, $3");
        assert_eq!(row.get("name"), "$2");
        let sql = format!(
            "INSERT INTO events ({}) VALUES ({})",
            row.names(),
            row.values()
        );
        assert_matches_args(&sql, &params.into_args());
    }

    #[test]
    fn placeholders_are_read_once_each() {
        assert_eq!(placeholders("$1, $10, $2, $1::text"), vec![1, 2, 10]);
    }
}
