//! Endpoint checks at build time: an endpoint is an `http://` or `https://` URL with a host, and
//! an error says what was given and what is expected. And the credentials an endpoint may
//! carry (`http://user:password@host`), hidden wherever an endpoint is shown: the effective
//! configuration, `Debug`, warnings and errors, with the values of its query parameters
//! (`?api_key=…`) and its fragment. Requests still go to the URL as given. Where a URL is
//! ambiguous (an `@` that may end a password or sit in a query value), it hides too much
//! rather than too little.

/// Whether an endpoint is reached over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scheme {
    /// `http://`: plain text.
    Http,
    /// `https://`: TLS.
    Https,
}

/// What stands for a password (or a user name given alone, often a token) in a URL shown.
const HIDDEN: &str = "***";

/// `url` as it may be shown: its user information hidden, `user:***@host` (`***@host` for a
/// user name alone, which is often a token), and the value of every query parameter
/// (`?api_key=***`: some services take their key there). A URL without a scheme is read from
/// its start.
pub(super) fn redact(url: &str) -> String {
    match split_scheme(url) {
        Some((scheme, rest)) => format!("{scheme}://{}", redact_after_scheme(rest, false)),
        None => redact_after_scheme(url, false),
    }
}

/// What follows a URL's `scheme://`, with its user information and query values hidden.
/// `in_text`: the URL is quoted in a message, and the punctuation after it is kept as it is.
fn redact_after_scheme(rest: &str, in_text: bool) -> String {
    // In a message, the punctuation that follows a URL (`(http://…):`, `"http://…",`) is not
    // part of it.
    let (rest, after) = if in_text {
        rest.split_at(rest.len() - trailing_punctuation(rest))
    } else {
        (rest, "")
    };
    // The user information ends at the last `@` (a password may hold an unescaped `@`, `/`,
    // `?` or `#`, which a well-formed URL would have percent-encoded): this hides too much
    // rather than too little when a path or a query holds an `@`.
    let Some(at) = rest.rfind('@') else {
        return format!("{}{after}", hide_query_values(rest));
    };
    let user_info = hide_user_info(&rest[..at]);
    let host_on = &rest[at + 1..];
    let host_on = if rest[..at].contains('?') {
        // The `@` may be a query value's (`?key=abc@def`): what follows it, up to the next
        // parameter, is hidden as a value too.
        let end = host_on.find(['&', '#']).unwrap_or(host_on.len());
        format!("{HIDDEN}{}", hide_params(&host_on[end..]))
    } else {
        hide_query_values(host_on)
    };
    format!("{user_info}@{host_on}{after}")
}

/// How many bytes at the end of a URL quoted in a message are the message's punctuation: a
/// closing bracket or quote, then a `:`, `,`, `.` or `;` (`(http://…):`). At most these two,
/// so that the end of a query value is not shown.
fn trailing_punctuation(url: &str) -> usize {
    let b = url.as_bytes();
    let mut n = 0;
    if b.len() > n && matches!(b[b.len() - 1 - n], b':' | b',' | b'.' | b';') {
        n += 1;
    }
    if b.len() > n && matches!(b[b.len() - 1 - n], b')' | b']' | b'"' | b'\'' | b'`' | b'>') {
        n += 1;
    }
    n
}

/// `url` with the value of each query parameter shown as `***` (a parameter without a value,
/// which may be a token, as `***` whole), and its fragment (never sent; it may be the end of a
/// value holding a `#`) as `#***`.
fn hide_query_values(url: &str) -> String {
    match url.find(['?', '#']) {
        Some(q) if url[q..].starts_with('?') => {
            format!("{}?{}", &url[..q], hide_params(&url[q + 1..]))
        }
        Some(q) => format!("{}{}", &url[..q], hide_params(&url[q..])),
        None => url.to_owned(),
    }
}

/// Query parameters (`a=1&b=2#fragment`) with their values and the fragment hidden.
fn hide_params(query: &str) -> String {
    let end = query.find('#').unwrap_or(query.len());
    let fragment = if query.len() > end + 1 {
        format!("#{HIDDEN}")
    } else {
        query[end..].to_owned()
    };
    let hidden: Vec<String> = query[..end]
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, "")) => format!("{name}="),
            Some((name, _)) => format!("{name}={HIDDEN}"),
            None if param.is_empty() => String::new(),
            None => HIDDEN.to_owned(),
        })
        .collect();
    format!("{}{fragment}", hidden.join("&"))
}

/// `text` (an error message, a chain of them) with the user information and query values of
/// every URL in it hidden as [`redact`] does: the HTTP client quotes the URL it failed to
/// reach.
pub(super) fn redact_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        // A URL in text runs on to the next space: a password or a query value the HTTP
        // client quotes may hold a quote, a `'`, a backtick or an angle bracket (the `url`
        // crate leaves some as they are). What follows the URL up to the space hides too much
        // rather than too little; the punctuation at its end is kept.
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        out.push_str(&redact_after_scheme(&after[..end], true));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `user:password` as `user:***`, `token` and `token:` as `***`.
fn hide_user_info(user_info: &str) -> String {
    match user_info.split_once(':') {
        // The user name is shown only when it surely is one. With an empty password, it is the
        // credential (`key:@host`, as HTTP Basic authentication with an API key is written).
        // Where the `@` that ends the user information is in doubt (another `@`, a `/`, `?` or
        // `#` before it), the `:` may be a port's or a query value's, and what precedes it a
        // token: all is hidden.
        // (A password of tabs, newlines or spaces alone is empty: URL parsers drop them.)
        Some((user, password))
            if !password
                .trim_matches(|c: char| c.is_ascii_whitespace())
                .is_empty()
                && !user_info.contains(['@', '/', '?', '#']) =>
        {
            format!("{user}:{HIDDEN}")
        }
        None if user_info.is_empty() => String::new(),
        _ => HIDDEN.to_owned(),
    }
}

/// Checks `url`, the endpoint named by `what` (e.g. "the traces endpoint"), and returns its
/// scheme. The error quotes the URL with its credentials hidden.
pub(super) fn validate(url: &str, what: &str) -> Result<Scheme, String> {
    let expected = "expected a URL such as http://collector:4317 or https://collector:4317";
    // Checked as given; quoted with its credentials hidden.
    let (given, shown) = (url, redact(url));
    let url = shown.as_str();
    let Some((scheme, rest)) = split_scheme(given) else {
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
    // Read by the parser the HTTP client reads it with when it sends: what it refuses (a port
    // that is not a number, a host that is not one), every export would fail on. Its errors
    // quote nothing of the URL.
    let percent_encode = if rest[authority.len()..].contains('@') {
        " (a `/`, `?` or `#` in a user name or password must be percent-encoded)"
    } else {
        ""
    };
    let parsed = url::Url::parse(given).map_err(|e| {
        format!("{what} {url:?} is not a valid URL ({e}){percent_encode}: {expected}")
    })?;
    if parsed.port() == Some(0) {
        return Err(format!(
            "{what} {url:?} has port 0, which cannot be connected to: {expected}"
        ));
    }
    given
        .parse::<http::Uri>()
        .map_err(|e| format!("{what} {url:?} is not a valid URL ({e}): {expected}"))?;
    Ok(scheme)
}

/// `url`'s scheme and what follows `://`, when it starts with a scheme (letters, then
/// letters, digits, `+`, `-` or `.`): a `://` further on (in a query value, say) is not one.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
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
    fn credentials_are_hidden_in_urls_and_in_text() {
        assert_eq!(
            redact("http://user:s3cr3t@collector:4318/v1/traces"),
            "http://user:***@collector:4318/v1/traces"
        );
        assert_eq!(redact("https://tok3n@collector"), "https://***@collector");
        assert_eq!(
            redact("user:s3cr3t@collector:4317"),
            "user:***@collector:4317"
        );
        assert_eq!(redact("http://us:pa@ss/w@rd@host"), "http://***@host");
        assert_eq!(redact("http://collector:4317"), "http://collector:4317");
        assert_eq!(
            redact_in("url (http://o'brien:pa's3cr3t@127.0.0.1:9/v1/traces): refused"),
            "url (http://o'brien:***@127.0.0.1:9/v1/traces): refused"
        );
        let text = "export failed (error sending request for url \
                    (http://user:s3cr3t@127.0.0.1:9/v1/traces): connect); then \
                    \"https://k3y@other:443\" and http://plain:80/x";
        assert_eq!(
            redact_in(text),
            "export failed (error sending request for url \
             (http://user:***@127.0.0.1:9/v1/traces): connect); then \
             \"https://***@other:443\" and http://plain:80/x"
        );
    }

    #[test]
    fn query_values_are_hidden_in_urls_and_in_text() {
        assert_eq!(
            redact("http://collector:4318/otlp/v1/traces?api_key=s3cr3t&region=eu"),
            "http://collector:4318/otlp/v1/traces?api_key=***&region=***"
        );
        assert_eq!(redact("http://h/?s3cr3t#frag"), "http://h/?***#***");
        assert_eq!(redact("http://h/?a=&&b"), "http://h/?a=&&***");
        assert_eq!(
            redact("http://u:p4ss@h/x?k=s3cr3t"),
            "http://u:***@h/x?k=***"
        );
        assert_eq!(
            redact_in("error sending request for url (http://h:9/v1/logs?key=s3cr3t): refused"),
            "error sending request for url (http://h:9/v1/logs?key=***): refused"
        );
        // Nothing of a query value holding an `@` or a `)` shows (found by an adversary:
        // `http://h:***@s3cr3t`, `?key=***)3t`). An `@` after a `?` may also end a password
        // holding a `?`: what precedes it is hidden too.
        assert_eq!(
            redact("http://127.0.0.1:14399/otlp?api_key=abc@s3cr3t"),
            "http://***@***"
        );
        assert_eq!(
            redact("http://h:1/x?a=1&key=abc@s3cr3t&b=2#f"),
            "http://***@***&b=***#***"
        );
        assert_eq!(redact("http://u:p@ss@h/x?k=a@b"), "http://***@***");
        // A `#` or `?` in a password (not percent-encoded) hides it too (found by an
        // adversary: the password was shown once `@` was looked for before them only).
        assert_eq!(redact("http://user:pa#ss@h:4318"), "http://***@h:4318");
        assert_eq!(redact("http://user:pa?ss@h:4318"), "http://***@***");
        assert_eq!(
            redact("http://user:pa/v1/traces#ss@h:4318"),
            "http://***@h:4318"
        );
        // A token before the host, with an `@` later (in the path or a query value): its `:`
        // is the port's, not a password's (found by an adversary: the token was shown).
        for url in [
            "http://tok3n@127.0.0.1:9/otlp?key=x@y",
            "http://tok3n@127.0.0.1:9/a@b/otlp",
            "http://tok3n@[::1]:9/otlp?key=x@y",
            "http://127.0.0.1/otlp?key=abctok3n:def@ghi",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("tok3n"), "{url} shown as {shown}");
            let shown = redact_in(&format!("failed (error for url ({url})): refused"));
            assert!(!shown.contains("tok3n"), "{url} shown as {shown}");
        }
        // The end of a query value is not taken for a message's punctuation.
        assert_eq!(
            redact_in("url (http://h:9/x?key=abc:).,;): refused"),
            "url (http://h:9/x?key=***): refused"
        );
        // Anything a query value may hold in a message: the URL runs on to the next space.
        assert_eq!(
            redact_in("failed (http://h:9/otlp?api_key=abc`s3cr3t\"<x>'y): refused"),
            "failed (http://h:9/otlp?api_key=***): refused"
        );
        assert_eq!(
            redact_in("url (http://h:9/v1/logs?key=ab)3t@s3cr3t): refused"),
            "url (http://***@***): refused"
        );
    }

    /// Secrets in every place a URL holds them (a password, a token given as the user name, a
    /// query value), wrapped in the characters that confuse a reader of URLs, never show in
    /// what `redact` or `redact_in` return.
    #[test]
    fn no_secret_shows_whatever_surrounds_it() {
        const SECRET: &str = "Zq9Zq9";
        const HOSTILE: &[u8] = b"@:/?#&=)(`'\"<>.,;![]%+ ";
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let noise = |next: &mut dyn FnMut(usize) -> usize| -> String {
            (0..next(4))
                .map(|_| match next(3) {
                    0 => char::from(HOSTILE[next(HOSTILE.len())]),
                    _ => char::from(b'a' + next(26) as u8),
                })
                .collect()
        };
        for case in 0..20_000 {
            let wrapped = format!("{}{SECRET}{}", noise(&mut next), noise(&mut next));
            let user_info = match next(5) {
                0 => format!("user:{wrapped}@"),
                // A token: a user name alone (with a `:`, it is a user name and a password),
                // or with an empty password.
                1 => format!("{}@", wrapped.replace(':', "x")),
                2 => format!("{}:@", wrapped.replace(':', "x")),
                3 => format!("u{}:p@", noise(&mut next)),
                _ => String::new(),
            };
            let host = ["h", "127.0.0.1", "[::1]"][next(3)];
            let port = [":4318", "", ":"][next(3)];
            let path = format!("/{}", noise(&mut next));
            let query = match (user_info.contains(SECRET), next(3)) {
                // (A raw `&` would end the value: what follows is another parameter.)
                (false, _) => format!(
                    "?a=1&key={}&b={}",
                    wrapped.replace('&', "x"),
                    noise(&mut next)
                ),
                (true, 0) => String::new(),
                (true, _) => format!("?k={}", noise(&mut next)),
            };
            let url = format!("http://{user_info}{host}{port}{path}{query}");
            let shown = redact(&url);
            assert!(
                !shown.contains(SECRET),
                "case {case}: {url:?} shown as {shown:?}"
            );
            // A URL the HTTP client quotes holds no space (it is refused, or percent-encoded).
            if url.contains(' ') {
                continue;
            }
            let text = format!("error sending request for url ({url}): refused");
            let shown = redact_in(&text);
            assert!(
                !shown.contains(SECRET),
                "case {case}: {text:?} shown as {shown:?}"
            );
        }
    }

    #[test]
    fn an_invalid_endpoint_is_quoted_without_its_credentials() {
        for url in [
            "user:s3cr3t@collector:4317",
            "ftp://user:s3cr3t@collector",
            "http://user:s3cr3t@",
            "http://user:s3cr3t@exa mple:4317",
        ] {
            let e = validate(url, "the endpoint").unwrap_err();
            assert!(!e.contains("s3cr3t") && e.contains("user:***@"), "{e}");
        }
        assert!(validate("http://user:s3cr3t@collector:4317", "e").is_ok());
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

        // What the HTTP client would refuse at every export (found by adversaries): a port
        // that is not a number from 1 to 65535, no host, brackets without an IPv6 address, an
        // IPv4 address out of range, a host whose last label is a number, a bad IDNA name.
        for (url, why) in [
            ("http://collector:abc", "invalid port"),
            ("http://collector:99999", "invalid port"),
            ("http://[::1]:x", "invalid port"),
            ("http://127.0.0.1:4318[]", "invalid port"),
            ("http://localhost:[::1]", "invalid port"),
            ("http://c:0/x", "port 0"),
            ("http://:9", "empty host"),
            ("http://u:p@:9", "empty host"),
            ("http://[::1]x", "invalid"),
            ("http://[127.0.0.1]:9", "invalid IPv6"),
            ("http://[fe80::1%eth0]:9", "invalid IPv6"),
            ("http://10.0.0.300:4318", "invalid IPv4"),
            ("http://collector.1:4318", "invalid IPv4"),
            ("http://xn--a:4318", "international domain name"),
        ] {
            let e = validate(url, "the endpoint").unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
        for url in [
            "http://collector:4318",
            "http://[::1]:4317/v1",
            "http://[::1]",
            "http://c:/x",
        ] {
            assert!(validate(url, "e").is_ok(), "{url}");
        }
        // A `#` in a password: the URL's authority ends there, so "pa" reads as the port.
        for url in [
            "http://user:pa#ss@collector:4318",
            "http://user:pw[]#x@127.0.0.1:9",
        ] {
            let e = validate(url, "the endpoint").unwrap_err();
            assert!(e.contains("percent-encoded") && !e.contains("pa#ss"), "{e}");
        }
        // A `://` in a query value is not the end of a scheme: the error quotes no value.
        let e = validate("http:/v1/traces?api_key=s3cr3t&to=https://a/cb", "e").unwrap_err();
        assert!(e.contains("has no scheme") && !e.contains("s3cr3t"), "{e}");
        // A token with an empty password is the credential (found by an adversary).
        assert_eq!(redact("http://sk_live_s3cr3t:@h:9/x"), "http://***@h:9/x");
        assert_eq!(redact("http://s3cr3t:\n@h:9/x"), "http://***@h:9/x");
    }
}
