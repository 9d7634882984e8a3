//! Database URLs: which database they name, and how they may be shown (without their
//! password).

use std::path::Path;

/// What a password is shown as.
const HIDDEN: &str = "***";

/// The SQLite file `url` names (`sqlite://path`, `sqlite:path` or a plain path), or
/// `None` for a PostgreSQL URL.
pub fn sqlite_path(url: &str) -> Option<&Path> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    Some(Path::new(path))
}

/// `url` with its password replaced by `***`, wherever a URL or an error about it is
/// shown (`postgres://user:***@host/db`). The password of the user-info part is hidden,
/// and so is the value of every `password=` parameter (`?password=…`, or a
/// `key=value` connection string). A password with unescaped `@`, `/`, `?` or `#` is
/// still hidden whole: the user-info is taken to end at the last `@` of the text, which
/// at worst hides more than the password. Other text is returned unchanged.
pub fn redact_url(url: &str) -> String {
    redact_parameters(&redact_user_info(url))
}

fn redact_user_info(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let user_info = &rest[..at];
    let Some(colon) = user_info.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:{HIDDEN}{}",
        &url[..scheme_end + 3],
        &user_info[..colon],
        &rest[at..]
    )
}

fn redact_parameters(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = find_ignore_case(rest, KEY) {
        let value_start = found + KEY.len();
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        let value_end = value
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
            .unwrap_or(value.len());
        if value_end > 0 {
            out.push_str(HIDDEN);
        }
        rest = &value[value_end..];
    }
    out.push_str(rest);
    out
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_and_the_rest_is_kept() {
        for (url, shown) in [
            (
                "postgres://user:s3cret@db.internal:5432/paysteps",
                "postgres://user:***@db.internal:5432/paysteps",
            ),
            (
                "postgresql://user:s3cret@host/db?options[search_path]=t_1&sslmode=require",
                "postgresql://user:***@host/db?options[search_path]=t_1&sslmode=require",
            ),
            (
                "postgres://user:p@ss/w?rd#x@host/db",
                "postgres://user:***@host/db",
            ),
            (
                "postgres://user@host/db?password=s3cret&sslpassword=k3y",
                "postgres://user@host/db?password=***&sslpassword=***",
            ),
            (
                "host=db user=paysteps PASSWORD=s3cret dbname=x",
                "host=db user=paysteps PASSWORD=*** dbname=x",
            ),
            ("postgres://user@host/db", "postgres://user@host/db"),
            ("postgres://host/db", "postgres://host/db"),
            ("paysteps.db", "paysteps.db"),
            (
                "sqlite:///tmp/a:b/paysteps.db",
                "sqlite:///tmp/a:b/paysteps.db",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn no_form_leaks_the_password() {
        for url in [
            "postgres://u:s3cret@h/d",
            "postgres://u:s3cret@",
            "postgres://:s3cret@h",
            "postgres://u:s3c?ret@h/d",
            "postgres://u:s3c#ret@h/d?a=b",
            "x?password=s3cret",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("s3c"), "{url} shown as {shown}");
        }
    }
}
