//! Endpoint checks at build time: an endpoint is an `http://` or `https://` URL with a host, and
//! an error says what was given and what is expected.

/// Whether an endpoint is reached over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scheme {
    /// `http://`: plain text.
    Http,
    /// `https://`: TLS.
    Https,
}

/// Checks `url`, the endpoint named by `what` (e.g. "the traces endpoint"), and returns its
/// scheme.
pub(super) fn validate(url: &str, what: &str) -> Result<Scheme, String> {
    let expected = "expected a URL such as http://collector:4317 or https://collector:4317";
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{what} {url:?} has no scheme: {expected} (http:// for plain text, https:// for TLS)"
        ));
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(format!(
                "{what} {url:?} uses the scheme {other:?}, which OTLP does not: {expected}"
            ))
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{what} {url:?} has no host: {expected}"));
    }
    url.parse::<http::Uri>()
        .map_err(|e| format!("{what} {url:?} is not a valid URL ({e}): {expected}"))?;
    Ok(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_urls_pass() {
        assert_eq!(validate("http://127.0.0.1:4317", "e"), Ok(Scheme::Http));
        assert_eq!(
            validate("HTTPS://collector.example:443/v1/traces", "e"),
            Ok(Scheme::Https)
        );
    }

    #[test]
    fn errors_quote_what_was_given_and_say_what_is_expected() {
        let no_scheme = validate("collector:4317", "the endpoint").unwrap_err();
        assert!(
            no_scheme.starts_with("the endpoint \"collector:4317\" has no scheme"),
            "{no_scheme}"
        );
        assert!(no_scheme.contains("expected a URL such as http://collector:4317"));
        assert!(
            !no_scheme.contains("https://collector:4317\""),
            "no URL the user never wrote is quoted as theirs: {no_scheme}"
        );

        let ftp = validate("ftp://x", "the endpoint").unwrap_err();
        assert!(ftp.contains("\"ftp://x\" uses the scheme \"ftp\""), "{ftp}");

        let no_host = validate("http:///v1/traces", "the endpoint").unwrap_err();
        assert!(no_host.contains("has no host"), "{no_host}");

        let bad = validate("http://exa mple:4317", "the endpoint").unwrap_err();
        assert!(bad.contains("is not a valid URL"), "{bad}");
    }
}
